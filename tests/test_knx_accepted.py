"""
Acceptance tests of "every group object tells the truth" for commands a
charger accepts and then does not carry out: a remote start that no
StartTransaction follows, a remote stop that no StopTransaction follows, a
change of availability whose status never comes (or is Scheduled), a
charging profile the charger accepts and does not apply (its
Current.Offered says so), an unlock.

The whole service in-process, a real bus-less knxd and a simulated charger
scripted to misbehave, on the harness of L{tests.test_knx_truth}. The
controller's waits are shortened (C{controller.waits}); "at once" is only a
bound of a wait (L{PROMPT}), never measured.

Skipped when knxd is not installed (C{apt-get install knxd}).
"""

from twisted.internet import defer, reactor, task
from twisted.logger import LogLevel, capturedLogs, formatEvent

from tests.knxtruth import NEW_OBJECTS, PROMPT, TWELVE_OBJECTS, address, api, float32, int32
from tests.sim import ConfigurationKey
from tests.test_knx_truth import CHARGING, NORMAL, UNAVAILABLE, TruthTestCase, connector_json

#: The ConnectionTimeOut the scripted charger reports (s).
CONNECTION_TIMEOUT = 1

#: The controller's waits in these tests (s): past the ConnectionTimeOut,
#: for a StopTransaction, for the status a ChangeAvailability asked for.
SHORT = 0.5


def warnings(events, text):
    """
    @return: the warning (or worse) lines among C{events} that contain C{text}.
    """
    lines = [formatEvent(e) for e in events
             if e.get("log_level") in (LogLevel.warn, LogLevel.error, LogLevel.critical)]
    return [line for line in lines if text in line]


class AcceptedTestCase(TruthTestCase):
    """
    The service with short waits, CP1 reporting a ConnectionTimeOut of
    L{CONNECTION_TIMEOUT}.
    """

    objects = TWELVE_OBJECTS + NEW_OBJECTS

    @defer.inlineCallbacks
    def start(self):
        yield super().start()
        waits = self.service.controller.waits
        waits.start_margin = waits.stop = waits.availability = SHORT

    @defer.inlineCallbacks
    def charger(self, identity="CP1", connectors=(1,)):
        cp = yield self.connect(identity)
        cp.configuration["ConnectionTimeOut"] = ConfigurationKey(str(CONNECTION_TIMEOUT))
        yield self.boot(cp, connectors)
        return cp

    @defer.inlineCallbacks
    def pending(self):
        """
        @return: what C{GET /api/status} says is pending at CP1/1.
        """
        return connector_json((yield self.status_json("CP1")), 1)["pending"]

    def later(self, seconds):
        return task.deferLater(reactor, seconds, lambda: None)


class RemoteStartTests(AcceptedTestCase):
    """
    RemoteStartTransaction Accepted: C{charging} is 1 from the acceptance
    until the StartTransaction, or back to 0 when none came within the
    charger's ConnectionTimeOut and the margin.
    """

    @defer.inlineCallbacks
    def test_accepted_start_without_a_session_sends_charging_back(self):
        cp = yield self.charger()
        with capturedLogs() as events:
            self.bus.write(address("charging"), 1)
            yield cp.wait_for_call("RemoteStartTransaction", timeout=PROMPT)
            yield self.expect("charging", 1)
            self.assertEqual((yield self.answers(["charging"])), {"charging": 1})
            [pending] = yield self.pending()
            self.assertEqual((pending["command"], pending["scheduled"]), ("start", False))
            yield self.expect("charging", 0, timeout=CONNECTION_TIMEOUT + SHORT + PROMPT)
        self.assertEqual(len(warnings(events, "did not start")), 1, warnings(events, "CP1"))
        self.assertEqual((yield self.answers(["charging"])), {"charging": 0})
        self.assertEqual((yield self.pending()), [])

    @defer.inlineCallbacks
    def test_page_start_shows_the_start_then_the_session(self):
        """
        Started from the page: the bus hears of it at the acceptance; the
        StartTransaction changes nothing more, and no 0 follows.
        """
        cp = yield self.charger()
        start = self.bus.start
        code, body = yield api(self.service, "POST", "/api/chargers/CP1/start", {})
        self.assertEqual(code, 200, body)
        yield self.expect("charging", 1)
        yield self.session(cp, tag="KNXTAG")
        yield self.later(CONNECTION_TIMEOUT + SHORT + 0.5)
        yield self.bus.barrier(address("status"))
        self.assertEqual(self.sent("charging", start), [1])
        self.assertEqual((yield self.pending()), [])

    @defer.inlineCallbacks
    def test_stop_while_a_start_is_pending_ends_it(self):
        """
        Nothing to stop yet: the stop is refused, the start forgotten, the
        bus gets 0.
        """
        cp = yield self.charger()
        self.bus.write(address("charging"), 1)
        yield cp.wait_for_call("RemoteStartTransaction", timeout=PROMPT)
        yield self.expect("charging", 1)
        self.bus.write(address("charging"), 0)
        yield self.expect("charging", 0)
        self.assertEqual((yield self.pending()), [])


class RemoteStopTests(AcceptedTestCase):
    """
    RemoteStopTransaction Accepted: C{charging} is 0 from the acceptance,
    and 1 again when no StopTransaction came within the wait.
    """

    @defer.inlineCallbacks
    def test_accepted_stop_without_a_stop_sends_charging_back(self):
        cp = yield self.charger()
        yield self.session(cp)
        yield self.bus.barrier(address("status"))
        with capturedLogs() as events:
            self.bus.write(address("charging"), 0)
            yield cp.wait_for_call("RemoteStopTransaction", timeout=PROMPT)
            yield self.expect("charging", 0)
            yield self.expect("charging", 1, timeout=SHORT + PROMPT)
        self.assertEqual(len(warnings(events, "did not stop")), 1, warnings(events, "CP1"))
        self.assertEqual((yield self.answers(["charging", "status"])),
                         {"charging": 1, "status": CHARGING})

    @defer.inlineCallbacks
    def test_accepted_stop_then_the_stop(self):
        cp = yield self.charger()
        tx = yield self.session(cp)
        start = yield self.bus.barrier(address("status"))
        self.bus.write(address("charging"), 0)
        yield cp.wait_for_call("RemoteStopTransaction", timeout=PROMPT)
        yield self.expect("charging", 0)
        yield cp.stop_transaction(tx, 5000, reason="Remote")
        yield self.expect("energy", int32(4000))
        yield self.later(SHORT + 0.5)
        yield self.bus.barrier(address("status"))
        self.assertEqual(self.sent("charging", start), [0])


class AvailabilityTests(AcceptedTestCase):
    """
    ChangeAvailability: Accepted and the status follows, Accepted and it
    does not, Scheduled (pending until the status comes).
    """

    @defer.inlineCallbacks
    def test_accepted_without_the_status_sends_availability_back(self):
        cp = yield self.charger()
        with capturedLogs() as events:
            self.bus.write(address("availability"), 0)
            yield cp.wait_for_call("ChangeAvailability", timeout=PROMPT)
            yield self.expect("availability", 1, timeout=SHORT + PROMPT)
        self.assertEqual(len(warnings(events, "still Available")), 1, warnings(events, "CP1"))
        self.assertEqual((yield self.pending()), [])

    @defer.inlineCallbacks
    def test_accepted_and_the_status_follows(self):
        cp = yield self.charger()
        start = self.bus.start
        self.bus.write(address("availability"), 0)
        yield cp.wait_for_call("ChangeAvailability", timeout=PROMPT)
        yield cp.status(1, "Unavailable")
        yield self.expect("availability", 0)
        yield self.later(SHORT + 0.5)
        yield self.bus.barrier(address("status"))
        self.assertEqual(self.sent("availability", start), [0])

    @defer.inlineCallbacks
    def test_scheduled_is_pending_until_the_status_comes(self):
        """
        During a session: the bus is told at once that the connector is
        still operative; it becomes inoperative with the status, after the
        session.
        """
        cp = yield self.charger()
        cp.refuse("ChangeAvailability", "Scheduled")
        tx = yield self.session(cp)
        yield self.bus.barrier(address("status"))
        self.bus.write(address("availability"), 0)
        yield cp.wait_for_call("ChangeAvailability", timeout=PROMPT)
        yield self.expect("availability", 1)
        [pending] = yield self.pending()
        self.assertEqual((pending["command"], pending["operative"], pending["scheduled"]),
                         ("availability", False, True))
        charger = yield self.status_json("CP1")
        self.assertIs(connector_json(charger, 1)["available"], True)
        code, page = yield api(self.service, "GET", "/")
        self.assertIn("operative (inoperative after the session)", page)
        # longer than the wait: Scheduled waits for the session's end
        yield self.later(SHORT + 0.5)
        self.assertEqual(len((yield self.pending())), 1)
        yield cp.stop_transaction(tx, 5000)
        yield cp.status(1, "Unavailable")
        yield self.expect("status", UNAVAILABLE)
        yield self.expect("availability", 0)
        self.assertEqual((yield self.pending()), [])

    @defer.inlineCallbacks
    def test_scheduled_and_no_status_after_the_session(self):
        cp = yield self.charger()
        cp.refuse("ChangeAvailability", "Scheduled")
        tx = yield self.session(cp)
        yield self.bus.barrier(address("status"))
        self.bus.write(address("availability"), 0)
        yield self.expect("availability", 1)
        with capturedLogs() as events:
            yield cp.stop_transaction(tx, 5000)
            yield cp.status(1, "Finishing")
            yield self.expect("availability", 1, timeout=SHORT + PROMPT)
        self.assertEqual(len(warnings(events, "still Finishing")), 1, warnings(events, "CP1"))
        self.assertEqual((yield self.pending()), [])


class LimitTests(AcceptedTestCase):
    """
    SetChargingProfile Accepted, and the charger offers the car another
    current than the limit (Current.Offered): max_current tells what it
    offers.
    """

    @defer.inlineCallbacks
    def start(self):
        yield super().start()
        self.service.central.accepted.settle = 0.0

    @defer.inlineCallbacks
    def test_accepted_limit_the_charger_does_not_apply(self):
        cp = yield self.charger()
        tx = yield self.session(cp)
        yield cp.meter_values(1, tx, offered=NORMAL)
        yield self.bus.barrier(address("status"))
        self.bus.write(address("max_current"), float32(10.0))
        yield self.expect("max_current", float32(10.0))
        # the limit in force and the echo of the write
        yield self.bus.barrier(address("status"))
        with capturedLogs() as events:
            # it keeps offering the old limit
            yield cp.meter_values(1, tx, offered=NORMAL)
            yield self.expect("max_current", float32(NORMAL))
            yield cp.meter_values(1, tx, offered=NORMAL)
        self.assertEqual(len(warnings(events, "offers 16 A")), 1, warnings(events, "CP1"))
        self.assertEqual((yield self.answers(["max_current", "fast"])),
                         {"max_current": float32(NORMAL), "fast": 0})
        charger = yield self.status_json("CP1")
        self.assertEqual(connector_json(charger, 1)["limit_a"], NORMAL)
        # late, but it applies it after all
        yield cp.meter_values(1, tx, offered=10.0)
        yield self.expect("max_current", float32(10.0))

    @defer.inlineCallbacks
    def test_offering_less_than_the_limit_is_no_contradiction(self):
        """
        A limit is a maximum: a cable or a hot charger offers less.
        """
        cp = yield self.charger()
        tx = yield self.session(cp)
        start = yield self.bus.barrier(address("status"))
        yield cp.meter_values(1, tx, offered=6.0)
        yield self.bus.barrier(address("status"))
        self.assertEqual(self.sent("max_current", start), [])
        self.assertEqual((yield self.answers(["max_current"])), {"max_current": float32(NORMAL)})

    @defer.inlineCallbacks
    def test_offered_is_judged_only_while_it_offers(self):
        """
        Before a car takes current (Preparing), what a charger reports as
        offered says nothing of its limit.
        """
        cp = yield self.charger()
        start = self.bus.start
        yield cp.status(1, "Preparing")
        yield cp.meter_values(1, offered=32.0)
        yield self.bus.barrier(address("status"))
        self.assertEqual(self.sent("max_current", start), [])


class UnlockTests(AcceptedTestCase):
    """
    UnlockConnector has no send object: an Unlocked answer changes nothing
    the bus shows; a session the unlock did not end still counts.
    """

    @defer.inlineCallbacks
    def test_unlocked_during_a_session_that_goes_on(self):
        cp = yield self.charger()
        yield self.session(cp)
        start = yield self.bus.barrier(address("status"))
        self.bus.write(address("unlock"), 1)
        yield cp.wait_for_call("UnlockConnector", timeout=PROMPT)
        # a second unlock goes out once the first one's answer is handled
        yield self.calls_since(cp)
        yield self.bus.barrier(address("status"))
        self.assertEqual(self.sent("charging", start), [])
        self.assertEqual((yield self.answers(["charging", "status", "plugged"])),
                         {"charging": 1, "status": CHARGING, "plugged": 1})
