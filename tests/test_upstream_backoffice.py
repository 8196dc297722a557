"""
The back office end to end: the real service, simulated chargers and a
test back office built on the PyPI C{ocpp} package's central-system side
(L{tests.backoffice}), all on loopback. PyPI stack only: Debian packages
neither C{ocpp} nor a recent C{websockets}.
"""

from datetime import datetime, timedelta, timezone

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase

from tests.backoffice import SKIP_REASON, backoffice_available, start_backoffice
from tests.service import (
    LOOPBACK_CONFIG, ServiceProcess, kill_on_cleanup, start_service, write_config)
from tests.sim import connect_charger

#: CP1 has a back office, TWIN has none; tags as in the other tests.
UPSTREAM_CONFIG = LOOPBACK_CONFIG + """
[[tag]]
id = "04A1B2C3"

[[tag]]
id = "BLOCKED1"
status = "Blocked"

[[charger]]
id = "CP1"
max_current = 32
normal_current = 16
allowed_tags = ["04A1B2C3"]

[charger.upstream]
url = "{backoffice}"
identity = "{identity}"
password = "{upstream_password}"
offline_authorization = "{offline}"
allow_reset = {allow_reset}
stop_refused = {stop_refused}

[[charger]]
id = "TWIN"
max_current = 16
"""


def upstream_config(testcase, backoffice, identity="HOME-CP1", upstream_password="",
                    offline="local", allow_reset="false", stop_refused="false", **values):
    """
    Write the configuration of a service whose CP1 is forwarded to
    C{backoffice} (a URL).
    """
    return write_config(testcase, UPSTREAM_CONFIG, backoffice=backoffice, identity=identity,
                        upstream_password=upstream_password, offline=offline,
                        allow_reset=allow_reset, stop_refused=stop_refused, **values)


def sleep(seconds):
    return task.deferLater(reactor, seconds, lambda: None)


@defer.inlineCallbacks
def eventually(check, timeout=10.0, step=0.05):
    """
    Wait until C{check()} is true (bounded).
    """
    for _ in range(int(timeout / step)):
        if check():
            return
        yield sleep(step)
    raise AssertionError(f"{check} never held")


class BackOfficeTestCase(TestCase):
    """
    A service whose CP1 is forwarded to a running test back office.
    """

    if not backoffice_available():
        skip = SKIP_REASON

    timeout = 60

    @defer.inlineCallbacks
    def start(self, **config):
        self.office = yield start_backoffice(self)
        self.service = yield start_service(self, upstream_config(self, self.office.url, **config))
        self.uplink = self.service.upstream.uplinks["CP1"]
        self.uplink.link.backoff = (0.1, 0.5)

    @defer.inlineCallbacks
    def charger(self, identity="CP1", boot=True):
        charger = yield connect_charger(self.service.url, identity)
        self.addCleanup(charger.close)
        if boot:
            yield charger.boot(vendor="Acme", model="Wallbox 11", firmwareVersion="1.2.3",
                               chargePointSerialNumber="SN-77")
        return charger


class SessionTests(BackOfficeTestCase):
    """
    A session while the back office is up.
    """

    @defer.inlineCallbacks
    def test_boot_is_the_chargers_own(self):
        """
        The back office gets the charger's own BootNotification under the
        configured identity, then each connector's status.
        """
        yield self.start()
        cp = yield self.charger(boot=False)
        yield cp.status(1, "Available")
        yield cp.boot(vendor="Acme", model="Wallbox 11", firmwareVersion="1.2.3")
        yield self.office.wait_for_call("StatusNotification", "HOME-CP1")
        (boot,) = self.office.calls("HOME-CP1", "BootNotification")
        self.assertEqual(boot, {"chargePointVendor": "Acme", "chargePointModel": "Wallbox 11",
                                "firmwareVersion": "1.2.3"})
        (status,) = self.office.calls("HOME-CP1", "StatusNotification")
        self.assertEqual((status["connectorId"], status["status"]), (1, "Available"))
        self.assertEqual(self.uplink.registration, "Accepted")

    @defer.inlineCallbacks
    def test_session_ids_mapped(self):
        """
        The charger gets our transactionId, the back office its own, for the
        start, the meter values and the stop.
        """
        yield self.start()
        cp = yield self.charger()
        yield eventually(lambda: self.uplink.accepted)
        start = yield cp.start_transaction(1, "04A1B2C3", 1000)
        ours = start["transactionId"]
        self.assertLess(ours, 900000)
        self.assertEqual(start["idTagInfo"]["status"], "Accepted")
        yield cp.meter_values(1, ours, energy_wh=1500)
        yield cp.stop_transaction(ours, 2500, reason="EVDisconnected")
        yield self.office.wait_for_call("StopTransaction", "HOME-CP1")
        (mv,) = self.office.calls("HOME-CP1", "MeterValues")
        (stop,) = self.office.calls("HOME-CP1", "StopTransaction")
        self.assertEqual(mv["transactionId"], 900001)
        self.assertEqual(stop["transactionId"], 900001)
        self.assertEqual((stop["meterStop"], stop["reason"]), (2500, "EVDisconnected"))
        yield eventually(lambda: self.uplink.outbox.depth == 0)
        self.assertEqual(self.uplink.outbox.remote_id(ours), 900001)
        self.assertEqual(self.service.upstream.status()["CP1"]["sessions"], [
            {"transaction_id": ours, "remote_id": 900001, "status": "Invalid",
             "flagged": True}])


def _at(seconds):
    """
    A timestamp C{seconds} after a fixed instant.
    """
    t0 = datetime(2030, 6, 1, 12, 0, tzinfo=timezone.utc)
    return (t0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class OfflineTests(TestCase):
    """
    A session while the back office is down, the service SIGKILLed and
    restarted, the back office back.
    """

    if not backoffice_available():
        skip = SKIP_REASON

    timeout = 120

    @defer.inlineCallbacks
    def test_session_while_down_survives_sigkill(self):
        """
        Start, meter values and stop made while the back office is down
        reach it after a SIGKILL and a restart of the service: in order,
        with its own transactionId, exactly once; the meter values thinned
        to the first, one per sample interval and the last.
        """
        office = yield start_backoffice(self)
        yield office.stop()
        service = ServiceProcess(upstream_config(self, office.url))
        kill_on_cleanup(self, service)
        yield service.start()
        cp = yield connect_charger(service.url, "CP1")
        yield cp.boot(vendor="Acme", model="Wallbox 11")
        yield cp.status(1, "Charging")
        start = yield cp.start_transaction(1, "04A1B2C3", 1000, timestamp=_at(0))
        ours = start["transactionId"]
        for offset, energy in ((10, 1100), (20, 1200), (70, 1700), (80, 1800)):
            yield cp.meter_values(1, ours, energy_wh=energy, timestamp=_at(offset))
        yield cp.stop_transaction(ours, 1900, timestamp=_at(90), reason="Local")
        yield service.signal("KILL")
        yield cp.wait_closed()

        yield office.start()
        yield service.start()
        cp = yield connect_charger(service.url, "CP1")
        self.addCleanup(cp.close)
        yield office.wait_for_call("StopTransaction", "HOME-CP1")
        actions = [a for a in office.actions("HOME-CP1") if a not in ("StatusNotification",)]
        self.assertEqual(actions, ["BootNotification", "StartTransaction", "MeterValues",
                                   "MeterValues", "MeterValues", "StopTransaction"])
        (boot,) = office.calls("HOME-CP1", "BootNotification")
        self.assertEqual(boot["chargePointVendor"], "Acme")
        (start,) = office.calls("HOME-CP1", "StartTransaction")
        self.assertEqual((start["idTag"], start["meterStart"]), ("04A1B2C3", 1000))
        values = office.calls("HOME-CP1", "MeterValues")
        self.assertEqual({mv["transactionId"] for mv in values}, {900001})
        self.assertEqual([mv["meterValue"][0]["timestamp"] for mv in values],
                         [_at(10), _at(70), _at(80)])
        (stop,) = office.calls("HOME-CP1", "StopTransaction")
        self.assertEqual((stop["transactionId"], stop["meterStop"]), (900001, 1900))
        yield cp.close()
        yield service.stop()
        self.assertNotIn(b"Traceback", service.output)
        self.assertNotIn(b"Unhandled", service.output)


def _answered(office, action):
    """
    @return: whether the back office answered a CALL of C{action}.
    """
    ids = {f[1] for i, d, f in office.frames if d == "in" and f[0] == 2 and f[2] == action}
    return any(d == "out" and f[0] in (3, 4) and f[1] in ids for i, d, f in office.frames)


class RegistrationTests(BackOfficeTestCase):
    """
    The BootNotification upstream.
    """

    @defer.inlineCallbacks
    def test_pending_then_accepted(self):
        """
        While the back office answers Pending nothing else goes there; the
        boot is sent again after its interval, and once Accepted the
        statuses and the queue follow.
        """
        yield self.start()
        self.office.boot_answers = [("Pending", 1)]
        cp = yield self.charger()
        yield eventually(lambda: self.uplink.registration == "Pending")
        yield cp.status(1, "Preparing")
        start = yield cp.start_transaction(1, "04A1B2C3", 1000)
        self.assertEqual(start["idTagInfo"]["status"], "Accepted")
        self.assertEqual(self.office.actions("HOME-CP1"), ["BootNotification"])
        yield self.office.wait_for_call("StartTransaction", "HOME-CP1")
        actions = self.office.actions("HOME-CP1")
        self.assertEqual(actions[:2], ["BootNotification", "BootNotification"])
        self.assertEqual(set(actions[2:]), {"StatusNotification", "StartTransaction"})
        self.assertEqual(self.uplink.registration, "Accepted")

    @defer.inlineCallbacks
    def test_rejected_sends_nothing_else(self):
        """
        Rejected: only the boot is sent again, after the interval.
        """
        yield self.start()
        self.office.boot_answers = [("Rejected", 1), ("Rejected", 1)]
        cp = yield self.charger()
        yield cp.status(1, "Available")
        yield self.office.wait_for_call("BootNotification", "HOME-CP1", count=3)
        yield self.office.wait_for_call("StatusNotification", "HOME-CP1")
        actions = self.office.actions("HOME-CP1")
        self.assertEqual(actions[:3], ["BootNotification"] * 3)

    @defer.inlineCallbacks
    def test_credentials_are_the_controllers(self):
        """
        The controller's key at the back office goes in the Basic-auth
        header of the back office identity; a refused connection is retried
        with backoff and the error is shown.
        """
        yield self.start(upstream_password="controller-key")
        self.office.passwords["HOME-CP1"] = "another-key"
        cp = yield self.charger()
        yield eventually(lambda: self.uplink.link.attempts >= 2)
        self.assertIn("401", self.uplink.link.last_error)
        self.assertIn(self.service.upstream.status()["CP1"]["link"], ("waiting", "connecting"))
        self.office.passwords["HOME-CP1"] = "controller-key"
        yield eventually(lambda: self.uplink.accepted)
        self.assertIn("Basic SE9NRS1DUDE6Y29udHJvbGxlci1rZXk=", self.office.authorizations)
        yield cp.close()


class ChargerAnsweredTests(BackOfficeTestCase):
    """
    The charger is answered by the controller, whatever the back office
    does.
    """

    @defer.inlineCallbacks
    def test_slow_back_office_does_not_hold_the_charger(self):
        """
        The charger's StartTransaction is answered before the back office
        answered the forwarded one.
        """
        yield self.start()
        self.office.slow["StartTransaction"] = 2
        cp = yield self.charger()
        yield eventually(lambda: self.uplink.accepted)
        start = yield cp.start_transaction(1, "04A1B2C3", 1000)
        self.assertLess(start["transactionId"], 900000)
        self.assertFalse(_answered(self.office, "StartTransaction"))
        yield eventually(lambda: self.uplink.outbox.depth == 0)

    @defer.inlineCallbacks
    def test_dropped_connection_queue_goes_on(self):
        """
        The back office drops the connection in the middle of a session: it
        is connected again, booted again, and gets the rest in order.
        """
        yield self.start()
        cp = yield self.charger()
        yield eventually(lambda: self.uplink.accepted)
        start = yield cp.start_transaction(1, "04A1B2C3", 1000)
        yield eventually(lambda: self.uplink.outbox.depth == 0)
        yield self.office.drop("HOME-CP1")
        yield cp.meter_values(1, start["transactionId"], energy_wh=1500)
        yield cp.stop_transaction(start["transactionId"], 2000)
        yield self.office.wait_for_call("StopTransaction", "HOME-CP1")
        actions = [a for a in self.office.actions("HOME-CP1") if a != "StatusNotification"]
        self.assertEqual(actions, ["BootNotification", "StartTransaction", "BootNotification",
                                   "MeterValues", "StopTransaction"])
        self.assertEqual(self.office.calls("HOME-CP1", "StopTransaction")[0]["transactionId"],
                         900001)

    @defer.inlineCallbacks
    def test_callerrors_make_dead_letters(self):
        """
        A StartTransaction the back office keeps refusing becomes a dead
        letter, and so do its meter values and stop; the next session goes
        through.
        """
        from xxterocpp.upstream import delivery, outbox

        self.patch(delivery, "RETRY", (0.05, 0.1))
        self.patch(outbox, "MAX_FAILURES", 5)
        yield self.start()
        self.office.errors["StartTransaction"] = outbox.MAX_FAILURES
        cp = yield self.charger()
        yield eventually(lambda: self.uplink.accepted)
        first = yield cp.start_transaction(1, "04A1B2C3", 1000)
        yield cp.stop_transaction(first["transactionId"], 2000)
        second = yield cp.start_transaction(1, "04A1B2C3", 2000)
        yield self.office.wait_for_call("StartTransaction", "HOME-CP1",
                                        count=outbox.MAX_FAILURES + 1)
        yield eventually(lambda: self.uplink.outbox.depth == 0)
        status = self.service.upstream.status()["CP1"]
        self.assertEqual(status["dead_letters"], 2)
        self.assertEqual([(d["action"], d["transaction_id"])
                          for d in status["recent_dead_letters"]],
                         [("StartTransaction", first["transactionId"]),
                          ("StopTransaction", first["transactionId"])])
        self.assertEqual(self.uplink.outbox.remote_id(second["transactionId"]), 900001)
        self.assertEqual(self.office.calls("HOME-CP1", "StopTransaction"), [])


class TagTests(BackOfficeTestCase):
    """
    A tag the controller does not know is the back office's to decide.
    """

    @defer.inlineCallbacks
    def test_unknown_tag_decided_by_back_office(self):
        """
        Unknown tags are asked upstream and its verdict is kept; tags the
        controller accepts or refuses (Blocked) are never asked.
        """
        yield self.start()
        self.office.tags = {"VISITOR": "Accepted", "BLOCKED1": "Accepted"}
        cp = yield self.charger()
        yield eventually(lambda: self.uplink.accepted)
        visitor = yield cp.authorize("VISITOR")
        stranger = yield cp.authorize("STRANGER")
        blocked = yield cp.authorize("BLOCKED1")
        known = yield cp.authorize("04A1B2C3")
        self.assertEqual([r["idTagInfo"]["status"] for r in (visitor, stranger, blocked, known)],
                         ["Accepted", "Invalid", "Blocked", "Accepted"])
        start = yield cp.start_transaction(1, "VISITOR", 0)
        self.assertEqual(start["idTagInfo"]["status"], "Accepted")
        self.assertEqual([c["idTag"] for c in self.office.calls("HOME-CP1", "Authorize")],
                         ["VISITOR", "STRANGER"])

    @defer.inlineCallbacks
    def test_late_answer_then_offline_rule(self):
        """
        A back office that does not answer in time leaves the tag to the
        offline rule; its late verdict is kept for the next time.
        """
        from xxterocpp.upstream import verdicts

        self.patch(verdicts, "AUTHORIZE_WAIT", 0.5)
        yield self.start(offline="accept")
        self.office.slow["Authorize"] = 1.5
        cp = yield self.charger()
        yield eventually(lambda: self.uplink.accepted)
        late = yield cp.authorize("LATE")
        self.assertEqual(late["idTagInfo"]["status"], "Accepted")
        yield eventually(lambda: self.uplink.verdicts.knows("LATE"))
        again = yield cp.authorize("LATE")
        self.assertEqual(again["idTagInfo"]["status"], "Invalid")

    @defer.inlineCallbacks
    def test_offline_rule_while_away(self):
        """
        While the back office is away an unknown tag gets the configured
        offline rule without waiting.
        """
        yield self.start(offline="reject")
        yield self.office.stop()
        cp = yield self.charger()
        auth = yield cp.authorize("STRANGER")
        self.assertEqual(auth["idTagInfo"]["status"], "Invalid")
        self.assertEqual(self.office.calls(), [])


class CommandTests(BackOfficeTestCase):
    """
    The back office's commands: relayed with ids mapped, or intercepted.
    """

    @defer.inlineCallbacks
    def ready(self, **config):
        yield self.start(**config)
        cp = yield self.charger()
        yield eventually(lambda: self.uplink.accepted)
        return cp

    @defer.inlineCallbacks
    def test_remote_start_and_stop(self):
        """
        RemoteStartTransaction reaches the charger through the controller;
        the tag it names is accepted when the charger starts; the
        RemoteStopTransaction of the back office's id stops ours.
        """
        from ocpp.v16 import call

        cp = yield self.ready()
        answer = yield self.office.call("HOME-CP1", call.RemoteStartTransaction(
            id_tag="FLEET7", connector_id=1))
        self.assertEqual(answer.status, "Accepted")
        _, relayed = yield cp.wait_for_call("RemoteStartTransaction")
        self.assertEqual(relayed, {"connectorId": 1, "idTag": "FLEET7"})
        start = yield cp.start_transaction(1, "FLEET7", 0)
        self.assertEqual(start["idTagInfo"]["status"], "Accepted")
        self.assertEqual(self.office.calls("HOME-CP1", "Authorize"), [])
        yield eventually(lambda: self.uplink.outbox.remote_id(start["transactionId"]))
        answer = yield self.office.call("HOME-CP1", call.RemoteStopTransaction(
            transaction_id=900001))
        self.assertEqual(answer.status, "Accepted")
        _, relayed = yield cp.wait_for_call("RemoteStopTransaction")
        self.assertEqual(relayed, {"transactionId": start["transactionId"]})
        unknown = yield self.office.call("HOME-CP1", call.RemoteStopTransaction(
            transaction_id=start["transactionId"]))
        self.assertEqual(unknown.status, "Rejected")

    @defer.inlineCallbacks
    def test_remote_start_follows_local_rules(self):
        """
        A RemoteStartTransaction on an unavailable point is refused by the
        controller and never reaches the charger.
        """
        from ocpp.v16 import call

        cp = yield self.ready()
        yield cp.status(1, "Unavailable")
        answer = yield self.office.call("HOME-CP1", call.RemoteStartTransaction(id_tag="FLEET7"))
        self.assertEqual(answer.status, "Rejected")
        self.assertNotIn("RemoteStartTransaction", [a for a, p in cp.calls_received])

    @defer.inlineCallbacks
    def test_relayed_commands(self):
        """
        UnlockConnector, ChangeAvailability, DataTransfer, TriggerMessage of
        MeterValues, GetDiagnostics (and its status notification) reach the
        charger and their answers the back office.
        """
        from ocpp.v16 import call

        cp = yield self.ready()
        unlock = yield self.office.call("HOME-CP1", call.UnlockConnector(connector_id=1))
        self.assertEqual(unlock.status, "Unlocked")
        availability = yield self.office.call("HOME-CP1", call.ChangeAvailability(
            connector_id=1, type="Inoperative"))
        self.assertEqual(availability.status, "Accepted")
        transfer = yield self.office.call("HOME-CP1", call.DataTransfer(vendor_id="acme"))
        self.assertEqual(transfer.status, "UnknownVendorId")
        trigger = yield self.office.call("HOME-CP1", call.TriggerMessage(
            requested_message="MeterValues", connector_id=1))
        self.assertEqual(trigger.status, "Accepted")
        diagnostics = yield self.office.call("HOME-CP1", call.GetDiagnostics(
            location="ftp://bo.example/"))
        self.assertEqual(diagnostics.file_name, "diagnostics.log")
        yield cp.call("DiagnosticsStatusNotification", {"status": "Uploaded"})
        yield self.office.wait_for_call("DiagnosticsStatusNotification", "HOME-CP1")
        got = [(a, p) for a, p in cp.calls_received if a in (
            "UnlockConnector", "ChangeAvailability", "DataTransfer", "TriggerMessage",
            "GetDiagnostics")]
        self.assertEqual(got, [
            ("UnlockConnector", {"connectorId": 1}),
            ("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"}),
            ("DataTransfer", {"vendorId": "acme"}),
            ("TriggerMessage", {"requestedMessage": "MeterValues", "connectorId": 1}),
            ("GetDiagnostics", {"location": "ftp://bo.example/"}),
        ])

    @defer.inlineCallbacks
    def test_trigger_boot_and_status_answered_as_the_charger(self):
        """
        TriggerMessage of BootNotification or StatusNotification is done by
        the controller as the charger: the charger is not bothered.
        """
        from ocpp.v16 import call

        cp = yield self.ready()
        yield cp.status(1, "Available")
        for requested in ("BootNotification", "StatusNotification"):
            answer = yield self.office.call("HOME-CP1", call.TriggerMessage(
                requested_message=requested))
            self.assertEqual(answer.status, "Accepted")
        yield self.office.wait_for_call("BootNotification", "HOME-CP1", count=2)
        yield self.office.wait_for_call("StatusNotification", "HOME-CP1", count=3)
        self.assertNotIn("TriggerMessage", [a for a, p in cp.calls_received])

    @defer.inlineCallbacks
    def test_reservation_ids_mapped(self):
        """
        ReserveNow gets our reservationId at the charger; the charger's
        StartTransaction on it reaches the back office with its own id, and
        its CancelReservation cancels ours.
        """
        from ocpp.v16 import call

        cp = yield self.ready()
        answer = yield self.office.call("HOME-CP1", call.ReserveNow(
            connector_id=1, expiry_date="2099-01-01T00:00:00Z", id_tag="FLEET7",
            reservation_id=4711))
        self.assertEqual(answer.status, "Accepted")
        _, reserve = yield cp.wait_for_call("ReserveNow")
        ours = reserve["reservationId"]
        self.assertNotEqual(ours, 4711)
        cancel = yield self.office.call("HOME-CP1", call.CancelReservation(reservation_id=4711))
        self.assertEqual(cancel.status, "Accepted")
        _, cancelled = yield cp.wait_for_call("CancelReservation")
        self.assertEqual(cancelled, {"reservationId": ours})
        yield self.office.call("HOME-CP1", call.ReserveNow(
            connector_id=1, expiry_date="2099-01-01T00:00:00Z", id_tag="FLEET7",
            reservation_id=4712))
        _, reserve = yield cp.wait_for_call("ReserveNow")
        yield cp.start_transaction(1, "FLEET7", 0, reservation_id=reserve["reservationId"])
        yield self.office.wait_for_call("StartTransaction", "HOME-CP1")
        (start,) = self.office.calls("HOME-CP1", "StartTransaction")
        self.assertEqual(start["reservationId"], 4712)

    @defer.inlineCallbacks
    def test_reset_only_when_allowed(self):
        """
        Reset is refused unless allow_reset; then it is relayed.
        """
        from ocpp.v16 import call

        cp = yield self.ready()
        answer = yield self.office.call("HOME-CP1", call.Reset(type="Soft"))
        self.assertEqual(answer.status, "Rejected")
        self.assertNotIn("Reset", [a for a, p in cp.calls_received])

    @defer.inlineCallbacks
    def test_reset_allowed(self):
        """
        With allow_reset the back office's Reset reaches the charger.
        """
        from ocpp.v16 import call

        cp = yield self.ready(allow_reset="true")
        answer = yield self.office.call("HOME-CP1", call.Reset(type="Hard"))
        self.assertEqual(answer.status, "Accepted")
        _, reset = yield cp.wait_for_call("Reset")
        self.assertEqual(reset, {"type": "Hard"})

    @defer.inlineCallbacks
    def test_intercepted_configuration(self):
        """
        The back office's AuthorizationKey is adopted for the next
        connection (and kept); HeartbeatInterval and MeterValueSampleInterval
        are kept for it; URL-like keys and SecurityProfile are refused; none
        of these reaches the charger; other keys are relayed.
        """
        from ocpp.v16 import call

        cp = yield self.ready()
        answers = []
        for key, value in (("AuthorizationKey", "new-key-from-bo-0001"),
                           ("HeartbeatInterval", "42"), ("MeterValueSampleInterval", "900"),
                           ("CentralSystemURL", "ws://evil.example/"),
                           ("SecurityProfile", "0"), ("ConnectionTimeOut", "90")):
            answer = yield self.office.call("HOME-CP1", call.ChangeConfiguration(
                key=key, value=value))
            answers.append(answer.status)
        self.assertEqual(answers, ["Accepted", "Accepted", "Accepted", "Rejected", "Rejected",
                                   "Accepted"])
        changed = [p["key"] for a, p in cp.calls_received if a == "ChangeConfiguration"]
        self.assertNotIn("AuthorizationKey", changed)
        self.assertNotIn("HeartbeatInterval", changed)
        self.assertNotIn("CentralSystemURL", changed)
        self.assertIn("ConnectionTimeOut", changed)
        config = yield self.office.call("HOME-CP1", call.GetConfiguration(
            key=["HeartbeatInterval", "MeterValueSampleInterval", "ConnectionTimeOut"]))
        self.assertEqual({kv["key"]: kv["value"] for kv in config.configuration_key},
                         {"HeartbeatInterval": "42", "MeterValueSampleInterval": "900",
                          "ConnectionTimeOut": "90"})
        self.assertEqual(self.uplink.heartbeat_interval, 300)
        self.office.passwords["HOME-CP1"] = "new-key-from-bo-0001"
        yield self.office.drop("HOME-CP1")
        yield self.office.wait_for_call("BootNotification", "HOME-CP1", count=2)
        self.assertEqual(self.office.authorizations[-1],
                         "Basic SE9NRS1DUDE6bmV3LWtleS1mcm9tLWJvLTAwMDE=")
        self.assertEqual(self.service.central.settings[("CP1", "upstream/authorization_key")],
                         "new-key-from-bo-0001")

    @defer.inlineCallbacks
    def test_local_list_merged_as_back_office_tags(self):
        """
        SendLocalList is merged into the tag registry (a tag the controller
        has stays its own), GetLocalListVersion tells its version, and the
        charger keeps getting the controller's list.
        """
        from ocpp.v16 import call

        cp = yield self.ready()
        answer = yield self.office.call("HOME-CP1", call.SendLocalList(
            list_version=7, update_type="Full", local_authorization_list=[
                {"idTag": "FLEETCARD", "idTagInfo": {"status": "Accepted"}},
                {"idTag": "04A1B2C3", "idTagInfo": {"status": "Blocked"}},
                {"idTag": "LOST", "idTagInfo": {"status": "Blocked"}}]))
        self.assertEqual(answer.status, "Accepted")
        version = yield self.office.call("HOME-CP1", call.GetLocalListVersion())
        self.assertEqual(version.list_version, 7)
        tags = self.service.central.tags
        self.assertEqual(tags.get("FLEETCARD").status, "Accepted")
        self.assertEqual(tags.get("04A1B2C3").status, "Accepted")
        self.assertEqual(tags.get("LOST").status, "Blocked")
        self.assertEqual(self.service.upstream.status()["CP1"]["tags"], ["FLEETCARD", "LOST"])
        self.assertNotIn("SendLocalList", [a for a, p in cp.calls_received
                                           if p.get("listVersion") == 7])
        lost = yield cp.authorize("LOST")
        self.assertEqual(lost["idTagInfo"]["status"], "Blocked")
        yield self.office.call("HOME-CP1", call.SendLocalList(
            list_version=8, update_type="Differential", local_authorization_list=[
                {"idTag": "LOST"}]))
        self.assertIsNone(tags.get("LOST"))

    @defer.inlineCallbacks
    def test_profile_capped_to_the_building_limit(self):
        """
        A SetChargingProfile above the limit in force is relayed capped; one
        on the controller's profile id or stack level is refused; the back
        office clears only its own profiles.
        """
        from ocpp.v16 import call

        cp = yield self.ready()
        yield eventually(lambda: self.service.central.chargers["CP1"].connector(1).limit == 16)

        def profile(profile_id, level, limit, unit="A"):
            return call.SetChargingProfile(connector_id=1, cs_charging_profiles={
                "chargingProfileId": profile_id, "stackLevel": level,
                "chargingProfilePurpose": "TxDefaultProfile",
                "chargingProfileKind": "Absolute", "chargingSchedule": {
                    "startSchedule": "2030-01-01T00:00:00Z", "chargingRateUnit": unit,
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit},
                                               {"startPeriod": 3600, "limit": 8}]}})

        capped = yield self.office.call("HOME-CP1", profile(7, 5, 32))
        watts = yield self.office.call("HOME-CP1", profile(8, 6, 22000, "W"))
        by_id = yield self.office.call("HOME-CP1", profile(201, 5, 10))
        by_level = yield self.office.call("HOME-CP1", profile(9, 10, 10))
        self.assertEqual([a.status for a in (capped, watts, by_id, by_level)],
                         ["Accepted", "Accepted", "Rejected", "Rejected"])
        sent = [p for a, p in cp.calls_received if a == "SetChargingProfile"
                and p["csChargingProfiles"]["chargingProfileId"] in (7, 8)]
        limits = [[period["limit"] for period in
                   p["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"]]
                  for p in sent]
        self.assertEqual(limits, [[16.0, 8.0], [11040.0, 8.0]])
        theirs = yield self.office.call("HOME-CP1", call.ClearChargingProfile(id=7))
        ours = yield self.office.call("HOME-CP1", call.ClearChargingProfile(id=201))
        self.assertEqual((theirs.status, ours.status), ("Accepted", "Unknown"))
        cleared = [p for a, p in cp.calls_received if a == "ClearChargingProfile"]
        self.assertEqual(cleared, [{"id": 7}])
