"""
The back office end to end: the real service, simulated chargers and a
test back office built on the PyPI C{ocpp} package's central-system side
(L{tests.backoffice}), all on loopback. PyPI stack only: Debian packages
neither C{ocpp} nor a recent C{websockets}.
"""

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase

from tests.backoffice import SKIP_REASON, backoffice_available, start_backoffice
from tests.service import LOOPBACK_CONFIG, start_service, write_config
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
    from datetime import datetime, timedelta, timezone

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
        from tests.service import ServiceProcess, kill_on_cleanup

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
        from xxterocpp.upstream import outbox, uplink

        self.patch(uplink, "RETRY", (0.05, 0.1))
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
        from xxterocpp.upstream import uplink

        self.patch(uplink, "AUTHORIZE_WAIT", 0.5)
        yield self.start(offline="accept")
        self.office.slow["Authorize"] = 1.5
        cp = yield self.charger()
        yield eventually(lambda: self.uplink.accepted)
        late = yield cp.authorize("LATE")
        self.assertEqual(late["idTagInfo"]["status"], "Accepted")
        yield eventually(lambda: self.uplink.knows("LATE"))
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
