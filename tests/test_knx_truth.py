"""
Acceptance tests of "every group object tells the truth, also when things
go wrong": the whole service in-process, a real bus-less knxd, simulated
chargers that refuse, time out, drop off and fault, and a second knxd
client that writes what a push button would and sees what a visualisation
would.

The tests assert what is on the bus, in what order and with which values:
a feedback must arrive after the outcome it reports; "at once" and "within
a second" are only bounds of waits (L{PROMPT}), never measured.

Skipped when knxd is not installed (C{apt-get install knxd}).
"""

import re
from datetime import datetime, timedelta, timezone

from twisted.internet import defer, reactor, task
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import TestCase

from tests.knxdtest import LinkWatcher, connect_peer, start_knxd
from tests.knxtruth import (
    NEW_OBJECTS, PROMPT, TWELVE_OBJECTS, Bus, address, api, configuration, float32, int32,
    smart_values, uint8,
)
from tests.service import set_up_over, start_service, write_config
from tests.sim import connect_charger, timestamp_seconds
from xxterocpp.control.sender import MAX_WAITING_CALLS
from xxterocpp.knx.dpt import TimeOfDay, lookup

#: The call timeout of L{configuration} (s).
CALL_TIMEOUT = 1.0

#: C{[knx] offline_after} of the offline tests (s).
OFFLINE_AFTER = 1.0

#: C{[ocpp] reservation_expiry} of the reservation renewal test (s).
RESERVATION_EXPIRY = 2.0

#: The twelve objects that send (and answer reads).
SENDING = ("status", "error_code", "charging", "availability", "energy", "start_time",
           "end_time", "current", "max_current")

#: The status numbers on the bus (DPT 5.010), as the README's table has them.
AVAILABLE, PREPARING, CHARGING, RESERVED, UNAVAILABLE, FAULTED = (
    uint8(0), uint8(1), uint8(2), uint8(6), uint8(7), uint8(8))

#: CP1's currents: normal 16 A, fast 32 A.
NORMAL, FAST = 16.0, 32.0


class TruthTestCase(TestCase):
    """
    knxd, a bus peer and the service running L{configuration}.

    @cvar objects: the group objects CP1 and NEVER link.
    @cvar knx: lines added to C{[knx]}.
    @cvar ocpp: lines added to C{[ocpp]}.
    @cvar cheap_now: L{None} for no C{[smart]} table, else whether its
        tariff is cheap now (L{smart_values}).
    """

    objects = TWELVE_OBJECTS
    knx = ()
    ocpp = ()
    cheap_now = None

    @defer.inlineCallbacks
    def setUp(self):
        self.knxd = yield start_knxd(self)
        self.peer = yield connect_peer(self, self.knxd)
        self.bus = Bus(self.peer)
        smart = {} if self.cheap_now is None else smart_values(self.cheap_now)
        text = configuration(self.objects, knx=self.knx, ocpp=self.ocpp, smart=bool(smart))
        self.config_path = write_config(self, text, knxd=self.knxd.endpoint, **smart)
        yield self.start()

    @defer.inlineCallbacks
    def start(self):
        """
        Start (or start again) the service on the test's configuration and
        state database, and wait for its knxd link.
        """
        self.service = yield start_service(self, self.config_path)
        yield LinkWatcher(self.service.knx_link).wait(True)

    # -- chargers --------------------------------------------------------------

    @defer.inlineCallbacks
    def connect(self, identity="CP1"):
        """
        Open a simulated charger's connection (no BootNotification yet).
        """
        cp = yield connect_charger(self.service.url, identity)
        self.addCleanup(cp.close)
        return cp

    @defer.inlineCallbacks
    def boot(self, cp, connectors=(1,), limit=None):
        """
        Boot C{cp} and report its connectors Available; then a barrier, so
        the test's window starts after what the connection put on the bus.

        @param limit: wait for the set-up's first charging profile too (for
            a charger that accepts them: its limit then is in force); by
            default when one is due: a point whose normal current is below
            its maximum (at its maximum it gets no profile nobody asked for).
        """
        yield cp.boot()
        if limit is None:
            point = self.service.central.config.charger(cp.identity, connectors[0])
            limit = point is not None and point.normal_current < point.max_current
        if limit:
            yield cp.wait_for_call("SetChargingProfile", timeout=PROMPT)
        for connector in connectors:
            yield cp.status(connector, "Available")
        yield self.bus.barrier(address("status", cp.identity, connectors[0]))
        return cp

    @defer.inlineCallbacks
    def charger(self, identity="CP1", connectors=(1,)):
        """
        A connected, booted charger, its connectors Available.
        """
        cp = yield self.connect(identity)
        yield self.boot(cp, connectors)
        return cp

    @defer.inlineCallbacks
    def set_up(self, cp, timeout=PROMPT):
        """
        Wait until the set-up after C{cp}'s boot is over (its last call
        answered): a test counting the calls from now on counts none of
        it, however slow the machine.
        """
        for _ in range(int(timeout / 0.01)):
            if set_up_over(self.service, cp.identity):
                return
            yield task.deferLater(reactor, 0.01, lambda: None)
        self.fail(f"{cp.identity}'s set-up not over within {timeout} s")

    @defer.inlineCallbacks
    def session(self, cp, tag="04A1B2C3", meter_start=1000, connector=1):
        """
        An RFID session: Preparing, an accepted StartTransaction, Charging.

        @return: the transactionId.
        """
        yield cp.status(connector, "Preparing")
        answer = yield cp.start_transaction(connector, tag, meter_start)
        self.assertEqual(answer["idTagInfo"]["status"], "Accepted", f"start with {tag}")
        yield cp.status(connector, "Charging")
        return answer["transactionId"]

    @defer.inlineCallbacks
    def profiles_until(self, cp, condition, timeout=PROMPT):
        """
        Wait for charging profiles until C{condition(cp)} holds.
        """
        while not condition(cp):
            yield cp.wait_for_call("SetChargingProfile", timeout)
            # the simulator takes the profile after the waiters have seen it
            yield task.deferLater(reactor, 0, lambda: None)

    @defer.inlineCallbacks
    def calls_since(self, cp, since=0):
        """
        The actions C{cp} received since its C{since}th CALL, up to what the
        writes to the bus so far made the service send: an unlock written
        now reaches the charger after all of it.
        """
        self.bus.write(address("unlock", cp.identity), 1)
        yield cp.wait_for_call("UnlockConnector", timeout=PROMPT)
        return [name for name, _ in cp.calls_received[since:]]

    # -- the bus -----------------------------------------------------------------

    def expect(self, name, payload, charger="CP1", connector=1, kind="write", timeout=PROMPT):
        """
        Wait for the next C{kind} telegram of object C{name} in the bus
        window and check its payload.

        @return: a Deferred firing with the L{Telegram}.
        """
        dst = address(name, charger, connector)

        def check(telegram):
            self.assertEqual(telegram.payload, payload, f"{kind} of {name} ({dst})")
            return telegram

        return self.bus.next(dst, kind, timeout).addCallback(check)

    def sent(self, name, start=None, charger="CP1", connector=1):
        """
        @return: the payloads written to object C{name} since C{start}
            (default: the window's start).
        """
        return self.bus.since(start, address(name, charger, connector))

    @defer.inlineCallbacks
    def answers(self, names, charger="CP1", connector=1):
        """
        Read each object of C{names}.

        @return: C{{name: the payload of its answer, or None}}.
        """
        start = self.bus.mark()
        for name in names:
            self.bus.read(address(name, charger, connector))
        yield self.bus.barrier(address("status", charger, connector), pending=names.count("status"))
        result = {}
        for name in names:
            responses = self.bus.since(start, address(name, charger, connector), "response")
            result[name] = responses[0] if responses else None
        return result

    @defer.inlineCallbacks
    def status_json(self, charger_id):
        """
        @return: C{GET /api/status}'s entry of C{charger_id}.
        """
        code, body = yield api(self.service, "GET", "/api/status")
        self.assertEqual(code, 200)
        [charger] = [c for c in body["chargers"] if c["id"] == charger_id]
        return charger


def has_tx_profile(cp):
    """
    @return: whether C{cp} has a TxProfile (the smart plan) in force.
    """
    return any(installed.profile.get("chargingProfilePurpose") == "TxProfile"
               for installed in cp.charging_profiles.values())


def connector_json(charger, number):
    [connector] = [c for c in charger["connectors"] if c["connector"] == number]
    return connector


class FeedbackTests(TruthTestCase):
    """
    Case 1 / rule "Feedback": a refused, failed or timed-out command sends
    back the actual value of every send object it concerns, after the
    outcome, also when the bus already had that value.
    """

    @defer.inlineCallbacks
    def written_then_answered(self, cp, name, value, action, answer):
        """
        Write C{value} to object C{name}; hold the C{action} CALL it makes
        until a barrier has taken everything the service sent before, then
        answer it with C{answer}: what follows in the window came after the
        outcome.
        """
        cp.never_answer(action)
        self.bus.write(address(name), value)
        unique_id, _ = yield cp.wait_for_call(action, timeout=PROMPT)
        yield self.bus.barrier(address("status"))
        cp.reply(unique_id, answer)

    @defer.inlineCallbacks
    def test_rejected_start_sends_charging_back(self):
        cp = yield self.charger()
        yield self.written_then_answered(cp, "charging", 1, "RemoteStartTransaction",
                                         {"status": "Rejected"})
        yield self.expect("charging", 0)

    @defer.inlineCallbacks
    def test_start_while_offline_sends_charging_back(self):
        cp = yield self.charger()
        yield cp.close()
        yield self.bus.barrier(address("status"))
        self.bus.write(address("charging"), 1)
        yield self.expect("charging", 0)

    @defer.inlineCallbacks
    def test_start_timeout_sends_charging_back(self):
        cp = yield self.charger()
        cp.never_answer("RemoteStartTransaction")
        self.bus.write(address("charging"), 1)
        yield cp.wait_for_call("RemoteStartTransaction", timeout=PROMPT)
        yield self.bus.barrier(address("status"))
        yield self.expect("charging", 0, timeout=CALL_TIMEOUT + PROMPT)

    @defer.inlineCallbacks
    def test_rejected_stop_sends_charging_back(self):
        """
        The charger keeps charging: the bus gets 1 again.
        """
        cp = yield self.charger()
        yield self.session(cp)
        yield self.bus.barrier(address("status"))
        yield self.written_then_answered(cp, "charging", 0, "RemoteStopTransaction",
                                         {"status": "Rejected"})
        yield self.expect("charging", 1)

    @defer.inlineCallbacks
    def test_rejected_availability_sends_availability_back(self):
        cp = yield self.charger()
        yield self.written_then_answered(cp, "availability", 0, "ChangeAvailability",
                                         {"status": "Rejected"})
        yield self.expect("availability", 1)

    @defer.inlineCallbacks
    def test_max_current_without_smart_charging_sends_the_unchanged_limit(self):
        """
        No charging profile can change this charger's limit: the write is
        answered with the limit the bus showed before (if it showed one),
        never with the value asked for.
        """
        cp = yield self.connect()
        cp.without_smart_charging()
        yield self.boot(cp, limit=False)
        before = self.sent("max_current", start=0)
        self.bus.write(address("max_current"), float32(10.0))
        echo = yield self.bus.next(address("max_current"))
        self.assertNotEqual(echo.payload, float32(10.0))
        if before:
            self.assertEqual(echo.payload, before[-1])

    @defer.inlineCallbacks
    def test_rejected_max_current_sends_the_limit_in_force(self):
        cp = yield self.charger()
        self.assertEqual(cp.limit_in_force(1), NORMAL)
        cp.refuse_profiles()
        self.bus.write(address("max_current"), float32(10.0))
        yield self.expect("max_current", float32(NORMAL))
        self.assertEqual(cp.limit_in_force(1), NORMAL)

    @defer.inlineCallbacks
    def test_rejected_api_start_sends_charging_again(self):
        """
        The page's Start button (the API) refused by the charger: the bus
        gets the charging object again.
        """
        cp = yield self.charger()
        cp.refuse("RemoteStartTransaction")
        code, body = yield api(self.service, "POST", "/api/chargers/CP1/start", {})
        self.assertEqual((code, body.get("status")), (409, "Rejected"))
        yield self.expect("charging", 0)


class BusyTests(TruthTestCase):
    """
    A KNX write while the calls waiting for the charger are at their bound
    (L{MAX_WAITING_CALLS}: it is refused "Busy", not sent): the bus gets
    the actual value back, as for any refusal.
    """

    @defer.inlineCallbacks
    def setUp(self):
        # A call timeout no queue drains within: the bound holds all along.
        self.knxd = yield start_knxd(self)
        self.peer = yield connect_peer(self, self.knxd)
        self.bus = Bus(self.peer)
        text = configuration(self.objects).replace("call_timeout = 1", "call_timeout = 60")
        self.config_path = write_config(self, text, knxd=self.knxd.endpoint)
        yield self.start()

    @defer.inlineCallbacks
    def test_a_write_at_the_bound_sends_the_value_back(self):
        cp = yield self.charger()
        yield self.set_up(cp)
        cp.never_answer("DataTransfer")
        controller = self.service.controller
        waiting = [controller.send("CP1", "DataTransfer", {"vendorId": f"v{i}"})
                   for i in range(MAX_WAITING_CALLS + 1)]
        yield cp.wait_for_call("DataTransfer", timeout=PROMPT)
        self.assertEqual(self.service.central.chargers["CP1"].session.waiting,
                         MAX_WAITING_CALLS)
        yield self.bus.barrier(address("status"))
        with capturedLogs() as logs:
            self.bus.write(address("availability"), 0)
            yield self.expect("availability", 1)
        self.assertNotIn("ChangeAvailability", [name for name, _ in cp.calls_received])
        self.assertTrue([e for e in logs if "Busy" in formatEvent(e)])
        for d in waiting:
            self.assertNoResult(d)


class RefusedSessionTests(TruthTestCase):
    """
    Case 2 / rule "Refused sessions": a StartTransaction answered Blocked,
    Expired or Invalid starts nothing on the bus.
    """

    @defer.inlineCallbacks
    def test_refused_sessions_do_not_count(self):
        cp = yield self.charger()
        start = self.bus.start
        for tag, verdict in (("BLOCKED1", "Blocked"), ("OLDTAG", "Expired"), ("NOSUCH", "Invalid")):
            yield cp.status(1, "Preparing")
            answer = yield cp.start_transaction(1, tag, 1000)
            self.assertEqual(answer["idTagInfo"]["status"], verdict, tag)
            yield self.bus.barrier(address("status"))
            # the charger ends what it was refused
            yield cp.stop_transaction(answer["transactionId"], 1000, reason="DeAuthorized")
            yield cp.status(1, "Available")
        yield self.bus.barrier(address("status"))
        self.assertEqual((self.sent("charging", start), self.sent("start_time", start)), ([], []))


class ReservationTests(TruthTestCase):
    """
    Case 3 / rule "Reservation": no start through KNX, the page or the API
    while the connector is reserved, unless an API start names the
    reservation's own tag; a KNX reservation is re-sent after a reboot.
    """

    @defer.inlineCallbacks
    def reserved(self, cp):
        """
        Reserve CP1 through KNX; the charger accepts and reports Reserved.
        """
        self.bus.write(address("reserve"), 1)
        _, call = yield cp.wait_for_call("ReserveNow", timeout=PROMPT)
        yield cp.status(1, "Reserved")
        yield self.expect("status", RESERVED)
        yield self.bus.barrier(address("status"))
        return call

    @defer.inlineCallbacks
    def test_knx_reservation_refuses_knx_start(self):
        """
        No RemoteStartTransaction reaches the charger, and the refused
        start is sent back as 0.
        """
        cp = yield self.charger()
        yield self.reserved(cp)
        self.bus.write(address("charging"), 1)
        self.assertNotIn("RemoteStartTransaction", (yield self.calls_since(cp)))
        yield self.expect("charging", 0)

    @defer.inlineCallbacks
    def test_knx_reservation_refuses_page_start(self):
        cp = yield self.charger()
        yield self.reserved(cp)
        code, body = yield api(self.service, "POST", "/api/chargers/CP1/start", {})
        self.assertEqual(code, 409, body)
        self.assertNotIn("RemoteStartTransaction", (yield self.calls_since(cp)))

    @defer.inlineCallbacks
    def test_api_reservation_admits_its_own_tag_only(self):
        cp = yield self.charger()
        code, body = yield api(self.service, "POST", "/api/chargers/CP1/reserve",
                               {"id_tag": "04A1B2C3"})
        self.assertEqual(code, 200, body)
        yield cp.status(1, "Reserved")
        self.bus.write(address("charging"), 1)
        self.assertNotIn("RemoteStartTransaction", (yield self.calls_since(cp)))
        code, body = yield api(self.service, "POST", "/api/chargers/CP1/start", {})
        self.assertEqual(code, 409, body)
        code, body = yield api(self.service, "POST", "/api/chargers/CP1/start",
                               {"id_tag": "04A1B2C3"})
        self.assertEqual(code, 200, body)
        _, call = yield cp.wait_for_call("RemoteStartTransaction", timeout=PROMPT)
        self.assertEqual(call["idTag"], "04A1B2C3")

    @defer.inlineCallbacks
    def test_api_reservation_with_expiry_ends_then(self):
        """
        Not renewed: once its expiry has passed, a KNX start goes through.
        """
        cp = yield self.charger()
        expiry = reactor.seconds() + 1.5
        code, body = yield api(self.service, "POST", "/api/chargers/CP1/reserve", {
            "id_tag": "04A1B2C3", "expiry": datetime.fromtimestamp(expiry, timezone.utc).isoformat()})
        self.assertEqual(code, 200, body)
        yield cp.status(1, "Reserved")
        yield task.deferLater(reactor, expiry - reactor.seconds() + 0.2, lambda: None)
        # the charger lets it lapse
        yield cp.status(1, "Available")
        self.bus.write(address("charging"), 1)
        yield cp.wait_for_call("RemoteStartTransaction", timeout=PROMPT)
        self.assertEqual([name for name, _ in cp.calls_received].count("ReserveNow"), 1)

    @defer.inlineCallbacks
    def test_reservation_sent_again_after_reboot(self):
        cp = yield self.charger()
        first = yield self.reserved(cp)
        yield cp.close()
        cp = yield self.connect()
        yield cp.boot()
        _, again = yield cp.wait_for_call("ReserveNow", timeout=PROMPT)
        self.assertEqual((again["connectorId"], again["idTag"]), (first["connectorId"], first["idTag"]))
        self.assertGreater(timestamp_seconds(again["expiryDate"]), reactor.seconds())


class ReservationExpiryTests(TruthTestCase):
    """
    Rule "Reservation": a KNX reservation holds until it is freed, though
    each ReserveNow holds on the charger for C{[ocpp] reservation_expiry}
    seconds only.
    """

    ocpp = (f"reservation_expiry = {RESERVATION_EXPIRY:g}",)

    @defer.inlineCallbacks
    def test_reservation_outlives_the_chargers_expiry(self):
        cp = yield self.charger()
        self.bus.write(address("reserve"), 1)
        _, first = yield cp.wait_for_call("ReserveNow", timeout=PROMPT)
        yield cp.status(1, "Reserved")
        expiry = timestamp_seconds(first["expiryDate"])
        self.assertLessEqual(expiry, reactor.seconds() + RESERVATION_EXPIRY + 1,
                             "the ReserveNow holds for [ocpp] reservation_expiry")
        _, renewal = yield cp.wait_for_call("ReserveNow", timeout=RESERVATION_EXPIRY + PROMPT)
        # By the service's own clock (its expiryDate less the hold), not by
        # when the renewal reached the charger on a slow machine.
        self.assertLess(timestamp_seconds(renewal["expiryDate"]) - RESERVATION_EXPIRY, expiry,
                        "renewed before the charger lets it lapse")
        self.assertEqual((renewal["connectorId"], renewal["idTag"]), (1, first["idTag"]))
        self.assertGreater(timestamp_seconds(renewal["expiryDate"]), expiry)
        # past the first ReserveNow's expiry the connector is still reserved
        yield task.deferLater(reactor, max(0.0, expiry - reactor.seconds()) + 0.2, lambda: None)
        self.bus.write(address("charging"), 1)
        calls = yield self.calls_since(cp)
        self.assertNotIn("RemoteStartTransaction", calls)
        self.assertNotIn("CancelReservation", calls)


class OfflineTests(TruthTestCase):
    """
    Case 4 / rule "Offline": C{online} goes to 0 at once, C{status} 7 and
    C{availability} 0 after C{[knx] offline_after}; the rest keeps its
    values; everything is up to date again when the charger is back.
    """

    objects = TWELVE_OBJECTS + NEW_OBJECTS
    knx = (f"offline_after = {OFFLINE_AFTER:g}",)

    @defer.inlineCallbacks
    def charging_then_offline(self):
        """
        A charging CP1 drops off the network and stays away.

        @return: the transactionId and where the window started before.
        """
        cp = yield self.charger()
        tx = yield self.session(cp)
        yield cp.meter_values(1, tx, energy_wh=3000, currents=[NORMAL] * 3)
        yield self.expect("current", float32(NORMAL))
        start = yield self.bus.barrier(address("status"))
        yield cp.close()
        online = yield self.expect("online", 0)
        status = yield self.expect("status", UNAVAILABLE, timeout=OFFLINE_AFTER + PROMPT)
        yield self.expect("availability", 0)
        self.assertLess(self.bus.index(online), self.bus.index(status), "online 0 first")
        return tx, start

    @defer.inlineCallbacks
    def test_disconnect_online_at_once_then_unavailable(self):
        """
        The page and the API say the same as the bus.
        """
        tx, start = yield self.charging_then_offline()
        yield self.bus.barrier(address("status"))
        kept = ("charging", "error_code", "energy", "start_time", "end_time", "current",
                "max_current", "plugged", "power", "meter", "session_energy", "fast")
        self.assertEqual({name: self.sent(name, start) for name in kept},
                         {name: [] for name in kept})
        charger = yield self.status_json("CP1")
        connector = connector_json(charger, 1)
        self.assertEqual((charger["connected"], connector["status"], connector["available"]),
                         (False, "Unavailable", False))

    @defer.inlineCallbacks
    def test_reconnect_brings_every_object_up_to_date(self):
        tx, _ = yield self.charging_then_offline()
        yield self.bus.barrier(address("status"))
        cp = yield self.connect()
        yield cp.boot()
        yield cp.status(1, "Charging")
        yield cp.meter_values(1, tx, energy_wh=3500, currents=[10.0] * 3)
        yield self.expect("online", 1)
        yield self.expect("status", CHARGING)
        yield self.expect("availability", 1)
        yield self.expect("current", float32(10.0))
        names = ("online", "status", "availability", "charging", "current", "plugged")
        self.assertEqual((yield self.answers(names)), dict(
            online=1, status=CHARGING, availability=1, charging=1, current=float32(10.0),
            plugged=1))

    @defer.inlineCallbacks
    def test_restart_counts_from_the_last_contact(self):
        """
        Connected and charging when the service stops, and the service is
        down for longer than offline_after: from the restart on its status
        is 7, not its last status for another offline_after.
        """
        cp = yield self.charger()
        yield self.session(cp)
        yield self.service.stopService()
        yield cp.wait_closed()
        yield task.deferLater(reactor, OFFLINE_AFTER + 0.2, lambda: None)
        start = self.bus.mark()
        yield self.start()
        self.assertTrue(self.service.central.chargers["CP1"].offline)
        yield self.expect("status", UNAVAILABLE)
        yield self.bus.barrier(address("status"))
        self.assertEqual((self.sent("status", start), self.sent("availability", start)),
                         ([UNAVAILABLE], [0]))
        self.assertEqual((yield self.answers(["online", "charging"])),
                         {"online": 0, "charging": 1})

    @defer.inlineCallbacks
    def test_back_within_offline_after_stays_available(self):
        cp = yield self.charger()
        start = self.bus.start
        yield cp.close()
        yield self.expect("online", 0)
        cp = yield self.connect()
        yield cp.status(1, "Available")
        yield self.expect("online", 1)
        # longer than offline_after since the disconnection
        yield task.deferLater(reactor, OFFLINE_AFTER + 0.5, lambda: None)
        yield self.bus.barrier(address("status"))
        self.assertNotIn(UNAVAILABLE, self.sent("status", start))
        self.assertNotIn(0, self.sent("availability", start))


class ConnectorZeroTests(TruthTestCase):
    """
    Case 4 / rule "Offline": a status of connector 0 that is Unavailable or
    Faulted applies to every connector until connector 0 reports otherwise;
    the page and the API agree.
    """

    @defer.inlineCallbacks
    def twin(self):
        cp = yield self.connect("TWIN")
        # at its maximum (16 A) from the start: no charging profile is sent
        yield self.boot(cp, connectors=(1, 2), limit=False)
        yield cp.status(2, "Preparing")
        yield self.expect("status", PREPARING, "TWIN", 2)
        return cp

    @defer.inlineCallbacks
    def test_connector_0_faulted_faults_every_connector(self):
        cp = yield self.twin()
        yield cp.status(0, "Faulted", "GroundFailure")
        for connector in (1, 2):
            yield self.expect("status", FAULTED, "TWIN", connector)
            yield self.expect("availability", 0, "TWIN", connector)
        charger = yield self.status_json("TWIN")
        self.assertEqual(
            [(connector_json(charger, n)["status"], connector_json(charger, n)["available"])
             for n in (1, 2)],
            [("Faulted", False)] * 2)
        code, page = yield api(self.service, "GET", "/")
        self.assertEqual(code, 200)
        [section] = re.findall(r'<section[^>]*id="charger-TWIN".*?</section>', page, re.S)
        # what the page says, not the OCPP frames or KNX objects it folds away
        words = re.sub(r"<details.*?</details>", "", section, flags=re.S)
        self.assertGreaterEqual(words.lower().count("faulted"), 2, words)
        self.assertIsNone(re.search(r"\boperative\b", words), words)

        yield cp.status(0, "Available")
        yield self.expect("status", AVAILABLE, "TWIN", 1)
        yield self.expect("status", PREPARING, "TWIN", 2)
        for connector in (1, 2):
            yield self.expect("availability", 1, "TWIN", connector)

    @defer.inlineCallbacks
    def test_connector_0_unavailable_makes_every_connector_unavailable(self):
        cp = yield self.twin()
        yield cp.status(0, "Unavailable")
        for connector in (1, 2):
            yield self.expect("status", UNAVAILABLE, "TWIN", connector)
            yield self.expect("availability", 0, "TWIN", connector)


class FirstStartTests(TruthTestCase):
    """
    Case 5 / rule "Never seen, never said": nothing is written for a
    charger that never connected, and reads of its objects go unanswered.
    """

    @defer.inlineCallbacks
    def test_never_connected_charger_says_nothing(self):
        for name in SENDING:
            self.bus.read(address(name, "NEVER"))
        # commands it cannot carry out send nothing back either
        self.bus.write(address("charging", "NEVER"), 1)
        self.bus.write(address("max_current", "NEVER"), float32(10.0))
        # CP1's barrier: whatever the service sent for NEVER has arrived
        yield self.charger()
        self.assertEqual(
            self.bus.any_since(0, [address(name, "NEVER") for name in TWELVE_OBJECTS]), [])


class RestartTests(TruthTestCase):
    """
    Case 6 / rule "Never seen, never said": after a restart every send
    object of a known charger answers a read with its last value, the last
    session's energy, start and end time included.
    """

    @defer.inlineCallbacks
    def test_restart_answers_reads_with_the_last_values(self):
        """
        The session's start and end time are the controller's when their
        messages arrived; after the restart the session's own ones
        (docs/knx-objects.md#start_time, #end_time): the charger's
        timestamps, whole seconds minutes ago here, so that the two
        differ and neither falls on a second's edge (the bus carries
        whole seconds; the controller's own time, a few milliseconds after
        the charger's, sometimes was the next second).
        """
        now = datetime.now(timezone.utc).replace(microsecond=0)
        started, stopped = now - timedelta(minutes=10), now - timedelta(minutes=1)
        cp = yield self.charger()
        yield cp.status(1, "Preparing")
        answer = yield cp.start_transaction(1, "04A1B2C3", 1000, timestamp=started)
        self.assertEqual(answer["idTagInfo"]["status"], "Accepted")
        tx = answer["transactionId"]
        yield cp.status(1, "Charging")
        yield cp.meter_values(1, tx, energy_wh=3000, currents=[NORMAL] * 3)
        yield cp.stop_transaction(tx, 13345, timestamp=stopped)
        yield cp.status(1, "Finishing")
        yield self.bus.next(address("end_time"))
        yield self.bus.barrier(address("status"))
        last = {name: self.sent(name, 0)[-1] for name in SENDING if self.sent(name, 0)}
        self.assertLessEqual({"energy", "start_time", "end_time"}, set(last))

        yield self.service.stopService()
        yield self.start()
        tz = self.service.knx_bridge.tz
        own = {name: lookup("10.001").encode(TimeOfDay.from_datetime(when, tz))
               for name, when in (("start_time", started), ("end_time", stopped))}
        self.assertNotEqual(own["end_time"], last["end_time"])
        self.assertEqual((yield self.answers(sorted(last))), dict(last, **own))


class SmartTestCase(TruthTestCase):
    """
    The service with a C{[smart]} table and a Smart Energy Manager that
    plans a session at once, not 5 s after its StartTransaction.
    """

    @defer.inlineCallbacks
    def start(self):
        yield super().start()
        self.service.smart.start_delay = 0.1


class SmartLimitTests(SmartTestCase):
    """
    Case 7 / rule "Smart sessions and limits", with a plan that waits for
    the cheap hours (0 A now).
    """

    cheap_now = False

    @defer.inlineCallbacks
    def test_limit_after_smart_session_on_profile_refusing_charger(self):
        """
        The plan went out as a 0 A limit; after the session the limit in
        force is the one before it, and the next RFID session never gets 0 A.
        """
        cp = yield self.connect()
        cp.refuse_profiles("TxProfile")
        yield self.boot(cp)
        self.assertEqual(cp.limit_in_force(1), NORMAL)
        tx = yield self.session(cp, tag="SMARTTAG")
        yield self.profiles_until(cp, lambda cp: cp.limit_in_force(1) == 0.0)

        yield self.bus.barrier(address("status"))
        yield cp.stop_transaction(tx, 1000)
        yield cp.status(1, "Available")
        yield self.expect("max_current", float32(NORMAL))
        self.assertEqual(cp.limit_in_force(1), NORMAL)

        calls = len(cp.calls_received)
        yield self.session(cp)
        self.assertEqual(cp.limit_in_force(1), NORMAL)
        yield self.bus.barrier(address("status"))
        limits = [period["limit"]
                  for action, call in cp.calls_received[calls:] if action == "SetChargingProfile"
                  for period in call["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"]]
        self.assertNotIn(0.0, limits)
        self.assertEqual(cp.limit_in_force(1), NORMAL)
        self.assertEqual((yield self.answers(["max_current"])), {"max_current": float32(NORMAL)})

    @defer.inlineCallbacks
    def test_smart_start_never_draws_more_than_the_plan(self):
        """
        A smart start from the page: from the moment its transaction runs,
        the charger's limit is the plan's (nothing now).
        """
        cp = yield self.charger()
        code, body = yield api(self.service, "POST", "/api/chargers/CP1/start", {"smart": True})
        self.assertEqual(code, 200, body)
        _, call = yield cp.wait_for_call("RemoteStartTransaction", timeout=PROMPT)
        self.assertEqual(call["idTag"], "SMARTTAG")
        yield cp.status(1, "Preparing")
        answer = yield cp.start_transaction(1, "SMARTTAG", 1000)
        self.assertEqual(answer["idTagInfo"]["status"], "Accepted")
        self.assertEqual(cp.limit_in_force(1), 0.0)


class SmartCapTests(SmartTestCase):
    """
    Rule "Smart sessions and limits", with a plan that charges at once.
    """

    cheap_now = True

    @defer.inlineCallbacks
    def test_max_current_during_smart_session_caps_the_plan(self):
        """
        When the bus says 10 A, no more than 10 A is in force on the
        charger, now or later in the plan (departure included).
        """
        cp = yield self.charger()
        yield self.session(cp, tag="SMARTTAG")
        yield self.profiles_until(cp, has_tx_profile)
        self.assertGreater(cp.limit_in_force(1), 10.0, "the plan charges at once")
        self.bus.write(address("max_current"), float32(10.0))
        yield self.expect("max_current", float32(10.0))
        now = reactor.seconds()
        in_force = [cp.limit_in_force(1, at=now + hours * 3600) for hours in (0, 1, 3, 7)]
        self.assertTrue(all(amps is not None and amps <= 10.0 for amps in in_force), in_force)


class NewObjectTests(TruthTestCase):
    """
    The new group objects: each sent on change and answering reads.
    """

    objects = TWELVE_OBJECTS + NEW_OBJECTS

    @defer.inlineCallbacks
    def test_new_objects_of_a_never_connected_charger_say_nothing(self):
        for name in ("online", "plugged", "power", "meter", "session_energy", "fast"):
            self.bus.read(address(name, "NEVER"))
        self.bus.write(address("fast", "NEVER"), 1)
        yield self.charger()
        self.assertEqual(
            self.bus.any_since(0, [address(name, "NEVER") for name in NEW_OBJECTS]), [])

    @defer.inlineCallbacks
    def test_online(self):
        cp = yield self.connect()
        yield self.expect("online", 1)
        yield self.boot(cp)
        self.assertEqual((yield self.answers(["online"])), {"online": 1})
        yield cp.close()
        yield self.expect("online", 0)
        self.assertEqual((yield self.answers(["online"])), {"online": 0})

    @defer.inlineCallbacks
    def test_plugged(self):
        """
        1 in Preparing, Charging, SuspendedEV, SuspendedEVSE and Finishing;
        sent on change only.
        """
        cp = yield self.charger()
        start = self.bus.start
        for status in ("Preparing", "Charging", "SuspendedEV", "SuspendedEVSE", "Finishing",
                       "Available", "Reserved", "Preparing", "Faulted", "Unavailable"):
            yield cp.status(1, status)
        yield self.bus.barrier(address("status"))
        self.assertEqual(self.sent("plugged", start), [1, 0, 1, 0])
        self.assertEqual((yield self.answers(["plugged"])), {"plugged": 0})

    @defer.inlineCallbacks
    def test_power(self):
        """
        W, from Power.Active.Import or else current x 230 V x phases, on
        change of more than 100 W, 0 when not charging.
        """
        cp = yield self.charger()
        tx = yield self.session(cp)
        start = yield self.bus.barrier(address("status"))
        yield cp.meter_values(1, tx, currents=[NORMAL] * 3)  # 16 A x 230 V x 3
        for watts in (7000, 7100, 7150):
            yield cp.meter_values(1, tx, power_w=watts)
        yield self.bus.barrier(address("status"))
        self.assertEqual(self.sent("power", start), [float32(11040), float32(7000), float32(7150)])
        self.assertEqual((yield self.answers(["power"])), {"power": float32(7150)})
        yield cp.stop_transaction(tx, 5000)
        yield cp.status(1, "Finishing")
        yield self.expect("power", float32(0))

    @defer.inlineCallbacks
    def test_meter(self):
        """
        The energy register in Wh, on change of at least 100 Wh.
        """
        cp = yield self.charger()
        start = self.bus.start
        for wh in (10000, 10099, 10100, 10150, 10250):
            yield cp.meter_values(1, energy_wh=wh)
        yield self.bus.barrier(address("status"))
        self.assertEqual(self.sent("meter", start), [int32(10000), int32(10100), int32(10250)])
        self.assertEqual((yield self.answers(["meter"])), {"meter": int32(10250)})

    @defer.inlineCallbacks
    def test_session_energy(self):
        """
        0 at the start, then on change of at least 100 Wh; a refused session
        does not touch it.
        """
        cp = yield self.charger()
        start = self.bus.start
        tx = yield self.session(cp, meter_start=10000)
        for wh in (10050, 10100, 10150, 10250):
            yield cp.meter_values(1, tx, energy_wh=wh)
        yield self.bus.barrier(address("status"))
        self.assertEqual(self.sent("session_energy", start), [int32(0), int32(100), int32(250)])
        self.assertEqual((yield self.answers(["session_energy"])), {"session_energy": int32(250)})
        yield cp.stop_transaction(tx, 10250)
        yield cp.status(1, "Available")
        start = yield self.bus.barrier(address("status"))
        yield cp.status(1, "Preparing")
        answer = yield cp.start_transaction(1, "BLOCKED1", 10250)
        self.assertEqual(answer["idTagInfo"]["status"], "Blocked")
        yield self.bus.barrier(address("status"))
        self.assertEqual(self.sent("session_energy", start), [])

    @defer.inlineCallbacks
    def test_fast(self):
        """
        1 = max_current, 0 = normal_current, from the bus or the page's
        buttons; the object sends the mode in force, also after a refusal.
        """
        cp = yield self.charger()
        self.assertEqual((yield self.answers(["fast"])), {"fast": 0})
        self.bus.write(address("fast"), 1)
        yield self.profiles_until(cp, lambda cp: cp.limit_in_force(1) == FAST)
        yield self.expect("fast", 1)
        yield self.expect("max_current", float32(FAST))
        self.assertEqual((yield self.answers(["fast"])), {"fast": 1})

        code, body = yield api(self.service, "POST", "/api/chargers/CP1/normal", {})
        self.assertEqual(code, 200, body)
        yield self.expect("fast", 0)
        self.assertEqual(cp.limit_in_force(1), NORMAL)

        cp.refuse_profiles()
        yield self.bus.barrier(address("status"))
        self.bus.write(address("fast"), 1)
        yield self.expect("fast", 0)
        self.assertEqual(cp.limit_in_force(1), NORMAL)

    @defer.inlineCallbacks
    def test_fast_nonsense_is_logged_and_ignored(self):
        """
        C{fast} = 2 or a value of the wrong length: one log line each,
        nothing sent to the charger.
        """
        fast = address("fast")
        with capturedLogs() as events:
            cp = yield self.charger()
            yield self.set_up(cp)
            calls = len(cp.calls_received)
            self.bus.write(fast, 2)
            self.bus.write(fast, b"\x01\x02")
            sent = yield self.calls_since(cp, calls)
        self.assertEqual(sent, ["UnlockConnector"])
        serious = (LogLevel.warn, LogLevel.error, LogLevel.critical)
        lines = [formatEvent(e) for e in events
                 if e.get("log_level") in serious and fast in formatEvent(e)]
        self.assertEqual(len(lines), 2, lines)
