"""
Tests of L{xxterocpp.domain.accepted}: what a charger accepted stays
pending until its report shows it did it, or is said not to be done once
the wait is over; a limit it accepted and does not keep to (Current.Offered
above it) is not the limit in force. The real central system, controller
and OCPP session against a L{ScriptedCharger} on a fake clock (the harness
of L{tests.test_control}); the bridge's side against the fakes of
L{tests.test_bridge}.

The same on a real bus with the whole service: L{tests.test_knx_accepted}.
"""

import json

from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from tests.test_bridge import NEW_CONFIG, BridgeTestCase, transaction
from tests.test_control import CONFIG, ControllerHarness
from xxterocpp.control.remote import MAX_CONNECTION_TIMEOUT
from xxterocpp.domain.accepted import OFFERED_TOLERANCE, SETTLE, Pending
from xxterocpp.domain.events import CommandIneffective, CommandPending
from xxterocpp.domain.meter import MeterReading
from xxterocpp.knx.knxd import READ, RESPONSE, WRITE

#: CP1 (16 A normal, 32 A fast) and a two-connector TWIN.
TWO_CHARGERS = CONFIG.replace("max_chargers = 2", "max_chargers = 3") + """
[[charger]]
id = "TWIN"
max_current = 16

[[charger]]
id = "TWIN"
connector = 2
max_current = 16
"""


def warnings(events):
    return [formatEvent(e) for e in events if e.get("log_level") == LogLevel.warn]


class AcceptedTestCase(ControllerHarness, SynchronousTestCase):
    config = TWO_CHARGERS

    def setUp(self):
        super().setUp()
        self.logs = self.enterContext(capturedLogs())

    def frame(self, cp, action, payload):
        cp.session.text_received(json.dumps([2, action[:4] + str(len(cp.frames)), action, payload]))
        self.clock.advance(0)

    def start_transaction(self, cp, connector=1, tag="GOOD"):
        self.frame(cp, "StartTransaction", {"connectorId": connector, "idTag": tag,
                                            "meterStart": 0, "timestamp": "2026-01-01T00:00:00Z"})

    def status(self, cp, status, connector=1):
        self.frame(cp, "StatusNotification", {"connectorId": connector, "errorCode": "NoError",
                                              "status": status})

    def running(self, charger_id="CP1", connector=1):
        tx = self.central.chargers[charger_id].connector(connector).transaction
        return tx if tx is not None and tx.running else None

    def stop_transaction(self, cp, tx_id):
        self.frame(cp, "StopTransaction", {"transactionId": tx_id, "meterStop": 100,
                                           "timestamp": "2026-01-01T01:00:00Z"})

    def of_type(self, kind):
        return [e for e in self.events if isinstance(e, kind)]

    def pending(self, charger_id="CP1", connector=1):
        return [(p.command, p.until is not None) for p in self.central.pending(charger_id,
                                                                              connector)]


class RemoteStartTests(AcceptedTestCase):

    def test_accepted_start_waits_for_the_connection_timeout(self):
        """
        No ConnectionTimeOut reported: 60 s and the margin; then one log
        line and L{CommandIneffective}.
        """
        self.connect()
        self.assertTrue(self.result(self.controller.start("CP1")).accepted)
        self.assertEqual((self.pending(), self.of_type(CommandPending)),
                         ([("start", True)], [CommandPending("CP1", 1, "start")]))
        waits = self.controller.waits
        self.clock.advance(waits.connection_timeout + waits.start_margin - 0.1)
        self.assertEqual((self.of_type(CommandIneffective), warnings(self.logs)), ([], []))
        self.clock.advance(0.1)
        [ineffective] = self.of_type(CommandIneffective)
        self.assertEqual((ineffective.charger_id, ineffective.connector, ineffective.command),
                         ("CP1", 1, "start"))
        [line] = warnings(self.logs)
        self.assertIn("CP1/1: the charger accepted a remote start but did not start", line)
        self.assertEqual(self.pending(), [])

    def test_the_chargers_connection_timeout(self):
        cp = ControllerHarness.connect(self, boot=False)
        cp.configuration["ConnectionTimeOut"] = "20"
        cp.boot()
        self.settle()
        self.result(self.controller.start("CP1"))
        self.clock.advance(20 + self.controller.waits.start_margin - 0.1)
        self.assertEqual(self.of_type(CommandIneffective), [])
        self.clock.advance(0.1)
        self.assertEqual(len(self.of_type(CommandIneffective)), 1)

    def test_a_connection_timeout_beyond_belief(self):
        """
        A charger that reports a ConnectionTimeOut of a day: the start is
        awaited for L{MAX_CONNECTION_TIMEOUT} (and the margin), not a day
        of C{charging} 1 on the bus without a session.
        """
        cp = ControllerHarness.connect(self, boot=False)
        cp.configuration["ConnectionTimeOut"] = "86400"
        cp.boot()
        self.settle()
        self.assertTrue(self.result(self.controller.start("CP1")).accepted)
        self.clock.advance(MAX_CONNECTION_TIMEOUT + self.controller.waits.start_margin - 0.1)
        self.assertEqual(self.of_type(CommandIneffective), [])
        self.clock.advance(0.1)
        self.assertEqual(len(self.of_type(CommandIneffective)), 1)
        self.assertEqual(self.pending(), [])

    def test_a_connection_timeout_no_timer_can_hold(self):
        """
        ConnectionTimeOut of twenty digits (no float holds it) or of 10^12 s
        (beyond the year 9999): no number of 32 bits, so the default. The
        accepted start is pending and its wait ends; the command's result
        is the charger's Accepted (it failed with an OverflowError, and the
        second left a wait without an end).
        """
        for value in ("9" * 20, str(10 ** 12)):
            cp = ControllerHarness.connect(self, boot=False)
            cp.configuration["ConnectionTimeOut"] = value
            cp.boot()
            self.settle()
            self.assertTrue(self.result(self.controller.start("CP1")).accepted)
            self.assertEqual(self.pending(), [("start", True)])
            waits = self.controller.waits
            self.clock.advance(waits.connection_timeout + waits.start_margin)
            self.assertEqual(self.pending(), [])
        self.assertEqual(len(self.of_type(CommandIneffective)), 2)

    def test_start_transaction_ends_the_wait(self):
        cp = self.connect()
        self.result(self.controller.start("CP1"))
        self.start_transaction(cp)
        self.assertEqual(self.pending(), [])
        self.clock.advance(3600)
        self.assertEqual((self.of_type(CommandIneffective), warnings(self.logs)), ([], []))

    def test_start_transaction_before_the_answer(self):
        """
        The charger sends its StartTransaction before it answers: nothing
        is pending.
        """
        cp = self.connect()
        cp.answers["RemoteStartTransaction"] = None
        d = self.controller.start("CP1")
        [(unique_id, _, _)] = [c for c in cp.calls if c[1] == "RemoteStartTransaction"]
        self.start_transaction(cp)
        cp.answer(unique_id, {"status": "Accepted"})
        self.assertTrue(self.result(d).accepted)
        self.assertEqual((self.pending(), self.of_type(CommandPending)), ([], []))

    def test_a_refused_start_is_not_pending(self):
        cp = self.connect()
        cp.answers["RemoteStartTransaction"] = {"status": "Rejected"}
        self.result(self.controller.start("CP1"))
        self.assertEqual((self.pending(), self.of_type(CommandPending)), ([], []))

    def test_stop_ends_a_pending_start(self):
        """
        Nothing runs: the stop is refused, and the start is no longer
        awaited.
        """
        self.connect()
        self.result(self.controller.start("CP1"))
        self.assertEqual(self.result(self.controller.stop("CP1")).status, "Refused")
        self.assertEqual(self.pending(), [])
        self.clock.advance(3600)
        self.assertEqual(self.of_type(CommandIneffective), [])


class RemoteStopTests(AcceptedTestCase):

    def test_accepted_stop_without_stop_transaction(self):
        cp = self.connect()
        self.start_transaction(cp)
        tx = self.running()
        self.assertTrue(self.result(self.controller.stop("CP1")).accepted)
        self.assertEqual(self.pending(), [("stop", True)])
        self.clock.advance(self.controller.waits.stop)
        self.assertEqual(self.of_type(CommandIneffective),
                         [CommandIneffective("CP1", 1, "stop", self.of_type(
                             CommandIneffective)[0].detail)])
        [line] = warnings(self.logs)
        self.assertIn(f"did not stop transaction {tx.id} within 30 s", line)
        self.assertIs(self.running(), tx)

    def test_stop_transaction_ends_the_wait(self):
        cp = self.connect()
        self.start_transaction(cp)
        tx = self.running()
        self.result(self.controller.stop("CP1"))
        self.stop_transaction(cp, tx.id)
        self.assertEqual(self.pending(), [])
        self.clock.advance(3600)
        self.assertEqual(self.of_type(CommandIneffective), [])


class AvailabilityTests(AcceptedTestCase):

    def test_accepted_and_done(self):
        cp = self.connect()
        self.status(cp, "Available")
        self.result(self.controller.set_availability("CP1", 1, False))
        self.assertEqual(self.pending(), [("availability", True)])
        self.status(cp, "Unavailable")
        self.assertEqual(self.pending(), [])
        self.clock.advance(3600)
        self.assertEqual(self.of_type(CommandIneffective), [])

    def test_nothing_to_change(self):
        """
        Operative while Available: no status will come, none is awaited.
        """
        cp = self.connect()
        self.status(cp, "Available")
        self.result(self.controller.set_availability("CP1", 1, True))
        self.assertEqual((self.pending(), self.of_type(CommandPending)), ([], []))

    def test_accepted_and_not_done(self):
        """
        Accepted is no pending news for the bus (the status is due at
        once); after the wait, one line says what the connector still is.
        """
        cp = self.connect()
        self.status(cp, "Available")
        self.result(self.controller.set_availability("CP1", 1, False))
        self.assertEqual(self.of_type(CommandPending), [])
        self.clock.advance(self.controller.waits.availability)
        self.assertEqual([(e.connector, e.command) for e in self.of_type(CommandIneffective)],
                         [(1, "availability")])
        [line] = warnings(self.logs)
        self.assertIn("CP1/1: the charger accepted to make it inoperative but it is still "
                      "Available after 30 s", line)

    def test_scheduled_waits_for_the_session(self):
        cp = self.connect()
        cp.answers["ChangeAvailability"] = {"status": "Scheduled"}
        self.status(cp, "Charging")
        self.start_transaction(cp)
        self.result(self.controller.set_availability("CP1", 1, False))
        self.assertEqual(self.pending(), [("availability", False)])
        self.assertEqual(self.of_type(CommandPending), [CommandPending("CP1", 1, "availability")])
        self.clock.advance(3600)
        self.assertEqual(self.of_type(CommandIneffective), [])
        self.stop_transaction(cp, self.running().id)
        self.assertEqual(self.pending(), [("availability", True)])
        self.status(cp, "Unavailable")
        self.assertEqual(self.pending(), [])

    def test_scheduled_and_nothing_after_the_session(self):
        cp = self.connect()
        cp.answers["ChangeAvailability"] = {"status": "Scheduled"}
        self.status(cp, "Charging")
        self.start_transaction(cp)
        self.result(self.controller.set_availability("CP1", 1, False))
        self.stop_transaction(cp, self.running().id)
        self.status(cp, "Finishing")
        self.clock.advance(self.controller.waits.availability)
        self.assertEqual(len(self.of_type(CommandIneffective)), 1)
        self.assertIn("inoperative (Scheduled) but it is still Finishing", warnings(self.logs)[0])

    def test_whole_charger(self):
        """
        Connector 0: done once every connector counts as the change asked
        (connector 0's Unavailable holds for all of them).
        """
        cp = self.connect(charger_id="TWIN")
        for n in (1, 2):
            self.status(cp, "Available", n)
        self.result(self.controller.set_availability("TWIN", 0, False))
        self.assertEqual(self.pending("TWIN", 0), [("availability", True)])
        self.status(cp, "Unavailable", 1)
        self.assertEqual(len(self.pending("TWIN", 0)), 1)
        self.status(cp, "Unavailable", 0)
        self.assertEqual(self.pending("TWIN", 0), [])


class LimitTests(AcceptedTestCase):
    """
    Current.Offered above the limit the charger accepted, while it offers.
    """

    def offered(self, amps, charger_id="CP1", connector=1):
        self.central.book.meter_values(charger_id, connector, None,
                                       MeterReading(None, current_offered=amps))

    def charging(self):
        cp = self.connect()
        self.settle()
        self.status(cp, "Charging")
        self.assertEqual(self.controller.limit("CP1"), 16.0)
        return cp

    def test_not_kept_to(self):
        self.charging()
        self.clock.advance(SETTLE)
        self.offered(16.0 + OFFERED_TOLERANCE)
        self.assertEqual(self.of_type(CommandIneffective), [])
        self.result(self.controller.set_limit("CP1", 1, 10))
        self.assertEqual(self.controller.limit("CP1"), 10.0)
        # sampled before the charger took it, perhaps
        self.offered(16.0)
        self.assertEqual(self.controller.limit("CP1"), 10.0)
        self.clock.advance(SETTLE)
        self.offered(16.0)
        self.assertEqual((self.controller.limit("CP1"), self.controller.mode("CP1")),
                         (16.0, "normal"))
        self.assertEqual(self.of_type(CommandIneffective), [CommandIneffective(
            "CP1", 1, "limit", "accepted a limit of 10 A but offers 16 A")])
        self.offered(20.0)
        self.assertEqual((self.controller.limit("CP1"), len(warnings(self.logs))), (20.0, 1))
        self.offered(10.0)
        self.assertEqual((self.controller.limit("CP1"), len(self.of_type(CommandIneffective))),
                         (10.0, 1))

    def test_only_while_it_offers(self):
        cp = self.charging()
        self.clock.advance(SETTLE)
        for status in ("Preparing", "SuspendedEVSE", "Finishing"):
            self.status(cp, status)
            self.offered(32.0)
        self.assertEqual((self.controller.limit("CP1"), self.of_type(CommandIneffective)),
                         (16.0, []))
        self.status(cp, "SuspendedEV")
        self.offered(32.0)
        self.assertEqual(self.controller.limit("CP1"), 32.0)

    def test_a_new_limit_starts_afresh(self):
        self.charging()
        self.clock.advance(SETTLE)
        self.offered(32.0)
        self.assertEqual(self.controller.limit("CP1"), 32.0)
        self.result(self.controller.fast("CP1"))
        self.assertEqual(self.central.accepted.offered_above("CP1", 1), None)
        self.assertEqual((self.controller.limit("CP1"), self.controller.mode("CP1")),
                         (32.0, "fast"))

    def test_share_of_the_whole_charger(self):
        """
        A limit taken as a share of the charger's (ChargePointMaxProfile):
        one car may be offered the sum.
        """
        cp = self.connect(charger_id="TWIN")
        self.status(cp, "Charging", 1)
        for n in (1, 2):
            self.central.limit_in_force("TWIN", n, 10.0, whole_charger=True)
        self.clock.advance(SETTLE)
        self.offered(20.0, "TWIN")
        self.assertIsNone(self.central.accepted.offered_above("TWIN", 1))
        self.offered(21.0, "TWIN")
        self.assertEqual(self.central.accepted.offered_above("TWIN", 1), 21.0)


class BridgeTests(BridgeTestCase):
    """
    The bridge's side: C{charging} counts a pending start or stop, and
    L{CommandPending} and L{CommandIneffective} write the objects the
    command concerns, also when the bus had that value.
    """

    config_text = NEW_CONFIG

    def pending(self, command, connector=1):
        self.central.pending_commands[("CP1", connector)] = [
            Pending(command, "CP1", connector, None, 30.0)]

    def test_pending_start(self):
        self.pending("start")
        self.central.emit(CommandPending("CP1", 1, "start"))
        self.assertEqual(self.link.take(), [(WRITE, "1/0/2", 1)])
        self.link.receive("1/0/2", READ, None)
        self.assertEqual(self.link.take(), [(RESPONSE, "1/0/2", 1)])
        self.central.pending_commands.clear()
        self.central.emit(CommandIneffective("CP1", 1, "start", "no start"))
        self.assertEqual(self.link.take(), [(WRITE, "1/0/2", 0)])

    def test_pending_stop(self):
        self.start(transaction())
        self.link.take()
        self.pending("stop")
        self.central.emit(CommandPending("CP1", 1, "stop"))
        self.assertEqual(self.link.take(), [(WRITE, "1/0/2", 0)])
        self.central.pending_commands.clear()
        self.central.emit(CommandIneffective("CP1", 1, "stop", "no stop"))
        self.assertEqual(self.link.take(), [(WRITE, "1/0/2", 1)])

    def test_pending_start_then_the_session(self):
        self.pending("start")
        self.central.emit(CommandPending("CP1", 1, "start"))
        self.link.take()
        self.central.pending_commands.clear()
        self.start(transaction())
        self.assertNotIn("1/0/2", [dst for kind, dst, value in self.link.take()])

    def test_scheduled_availability_writes_what_holds(self):
        """
        The bus had 0 from a switch; the connector is still operative.
        """
        self.status("Charging")
        self.link.take()
        self.central.emit(CommandPending("CP1", 1, "availability"))
        self.assertEqual(self.link.take(), [(WRITE, "1/0/4", 1)])
        self.central.emit(CommandIneffective("CP1", None, "availability", "no status"))
        self.assertEqual(self.link.take(), [(WRITE, "1/0/4", 1)])

    def test_limit_not_kept_to(self):
        self.controller.limits[("CP1", 1)] = 16.0
        self.controller.modes[("CP1", 1)] = "normal"
        self.central.emit(CommandIneffective("CP1", 1, "limit", "offers 16 A"))
        self.assertEqual(sorted(dst for kind, dst, value in self.link.take()),
                         ["1/0/10", "1/1/5"])
