"""
Tests of what the domain says each connector counts as, and of what it
remembers across a restart: L{CentralSystem.point_status} (a charger
offline, connector 0 for the whole charger), refused sessions,
L{Charger.ever_connected}, L{CentralSystem.last_session} and the limit in
force. Plain values, a fake clock, a store in memory that survives into the
next L{CentralSystem}.
"""

from datetime import timedelta

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.fakes import FakeSession, MemoryStore
from tests.test_domain import T0
from xxterocpp.config import parse_config
from xxterocpp.domain.central import CentralSystem
from xxterocpp.domain.events import (
    ChargerConnected, StatusChanged, TransactionStarted, TransactionStopped,
)
from xxterocpp.domain.model import Reservation

CONFIG = """
[ocpp]
max_chargers = 2

[knx]
offline_after = 30

[[tag]]
id = "GOOD"

[[tag]]
id = "BAD"
status = "Blocked"

[[charger]]
id = "CP1"
max_current = 16

[[charger]]
id = "CP1"
connector = 2
max_current = 16

[[charger]]
id = "CP2"
max_current = 16
"""


class StateTestCase(SynchronousTestCase):
    """
    A L{CentralSystem} on L{CONFIG}, its events collected; L{restart} builds
    the next one on the same store.
    """

    config = CONFIG

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(T0.timestamp())
        self.store = MemoryStore()
        self.restart()

    def restart(self):
        self.central = CentralSystem(parse_config(self.config), self.store, self.clock)
        self.central.load()
        self.events = []
        self.central.subscribe(self.events.append)
        self.charger = self.central.chargers["CP1"]

    def connect(self, charger_id="CP1"):
        session = FakeSession()
        self.central.connections.connected(charger_id, session, "127.0.0.1")
        return session

    def start(self, connector=1, tag="GOOD", meter=100):
        """
        @return: C{(transaction_id, authorization)}.
        """
        return self.successResultOf(defer.maybeDeferred(
            self.central.start_transaction, "CP1", connector, tag, meter,
            self.central.now()))

    def stop(self, transaction_id, meter):
        self.successResultOf(self.central.stop_transaction(
            "CP1", transaction_id, meter, self.central.now(), "Local"))

    def status_events(self):
        return [e for e in self.events if isinstance(e, StatusChanged)]


class PointStatusTests(StateTestCase):
    """
    L{CentralSystem.point_status}: what a connector counts as for the bus,
    the page and the API alike.
    """

    def test_own_status_until_connector_0_faults(self):
        """
        Nothing before a report; then the connector's own status, until
        connector 0 reports Faulted or Unavailable: that holds for every
        connector, error code included, until connector 0 reports
        otherwise; each change of connector 0 is one L{StatusChanged} of
        the whole charger.
        """
        central = self.central
        self.assertEqual(central.point_status("CP1", 1), (None, None))
        central.reports.status_reported("CP1", 1, "Available")
        central.reports.status_reported("CP1", 2, "Preparing")
        self.assertEqual(central.point_status("CP1", 1), ("Available", "NoError"))
        central.reports.status_reported("CP1", None, "Faulted", "GroundFailure")
        self.assertEqual([central.point_status("CP1", n) for n in (1, 2)],
                         [("Faulted", "GroundFailure")] * 2)
        central.reports.status_reported("CP1", None, "Unavailable")
        self.assertEqual(central.point_status("CP1", 2), ("Unavailable", "NoError"))
        central.reports.status_reported("CP1", None, "Available")
        self.assertEqual([central.point_status("CP1", n) for n in (1, 2)],
                         [("Available", "NoError"), ("Preparing", "NoError")])
        self.assertEqual(self.status_events(), [
            StatusChanged("CP1", 1), StatusChanged("CP1", 2)] + [StatusChanged("CP1", None)] * 3)

    def test_unknown_charger_has_no_status(self):
        self.assertEqual(self.central.point_status("NOPE", 1), (None, None))

    def test_offline_after_the_configured_time(self):
        """
        Disconnected: not offline at once; after C{[knx] offline_after}
        seconds offline, every connector Unavailable, one L{StatusChanged}
        of the whole charger; back: online again, another one, after
        L{ChargerConnected}.
        """
        session = self.connect()
        self.central.reports.status_reported("CP1", 1, "Charging")
        self.central.connections.disconnected("CP1", session)
        self.clock.advance(29.9)
        self.assertEqual((self.charger.offline, self.central.point_status("CP1", 1)),
                         (False, ("Charging", "NoError")))
        del self.events[:]
        self.clock.advance(0.1)
        self.assertTrue(self.charger.offline)
        self.assertEqual([self.central.point_status("CP1", n) for n in (1, 2)],
                         [("Unavailable", "NoError")] * 2)
        self.assertEqual(self.central.point_status("CP2", 1), (None, None))
        self.assertEqual(self.events, [StatusChanged("CP1", None)])
        del self.events[:]
        self.connect()
        self.assertFalse(self.charger.offline)
        self.assertEqual(self.central.point_status("CP1", 1), ("Charging", "NoError"))
        self.assertEqual(self.events, [ChargerConnected("CP1"), StatusChanged("CP1", None)])

    def test_back_in_time_is_never_offline(self):
        """
        A reconnect within offline_after cancels the timer: no event.
        """
        self.central.connections.disconnected("CP1", self.connect())
        self.clock.advance(10)
        self.connect()
        self.clock.advance(60)
        self.assertFalse(self.charger.offline)
        self.assertEqual(self.status_events(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_offline_wins_over_connector_0(self):
        self.central.reports.status_reported("CP1", None, "Faulted", "GroundFailure")
        self.central.connections.disconnected("CP1", self.connect())
        self.clock.advance(30)
        self.assertEqual(self.central.point_status("CP1", 1), ("Unavailable", "NoError"))

    def test_zero_offline_after_is_the_next_turn(self):
        self.config = CONFIG.replace("offline_after = 30", "offline_after = 0")
        self.restart()
        self.central.connections.disconnected("CP1", self.connect())
        self.assertFalse(self.charger.offline)
        self.clock.advance(0)
        self.assertTrue(self.charger.offline)

    def test_shutdown_cancels_and_arms_no_timer(self):
        self.central.connections.disconnected("CP1", self.connect())
        self.central.shutdown()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.central.connections.disconnected("CP2", self.connect("CP2"))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_removed_charger_loses_its_timer(self):
        self.central.connections.disconnected("CP2", self.connect("CP2"))
        self.central.reconfigure(parse_config(CONFIG.split('[[charger]]\nid = "CP2"')[0]))
        self.assertEqual(self.clock.getDelayedCalls(), [])


class RefusedSessionTests(StateTestCase):
    """
    A session whose StartTransaction was not answered Accepted runs at the
    charger until it stops it, but counts for nothing.
    """

    def test_refused_session_is_told_apart(self):
        """
        It is booked and announced like any other (observers can tell it
        apart by L{Transaction.accepted}), and ends no reservation.
        """
        reservation = Reservation(1, "GOOD", T0 + timedelta(hours=1))
        self.central.reports.reserved("CP1", 1, reservation)
        tx_id, authorization = self.start(tag="BAD")
        self.assertEqual(authorization.status, "Blocked")
        [started] = [e.transaction for e in self.events if isinstance(e, TransactionStarted)]
        self.assertEqual((started.id, started.accepted), (tx_id, False))
        self.assertIs(self.charger.connectors[1].reservation, reservation)
        self.start(tag="GOOD")
        self.assertTrue(self.charger.connectors[1].transaction.accepted)
        self.assertIsNone(self.charger.connectors[1].reservation)

    def test_a_refused_session_is_no_concurrent_one(self):
        """
        GOOD refused ConcurrentTx at connector 2 (it charges at 1): once it
        stopped at 1, it may start at 1 again although the refused session
        at 2 still runs.
        """
        first, _ = self.start(connector=1)
        self.assertEqual(self.start(connector=2)[1].status, "ConcurrentTx")
        self.stop(first, 500)
        self.clock.advance(60)
        self.assertEqual(self.start(connector=1)[1].status, "Accepted")

    def test_last_session_is_the_last_accepted_one(self):
        """
        The last stopped accepted session of each connector; a refused one
        stopped after it does not replace it.
        """
        self.assertIsNone(self.central.last_session("CP1", 1))
        tx_id, _ = self.start(meter=100)
        self.assertIsNone(self.central.last_session("CP1", 1))
        self.clock.advance(3600)
        self.stop(tx_id, 5100)
        refused, _ = self.start(tag="BAD", meter=5100)
        self.stop(refused, 5100)
        last = self.central.last_session("CP1", 1)
        self.assertEqual((last.id, last.energy_wh, last.stop_time),
                         (tx_id, 5000, T0 + timedelta(hours=1)))
        self.assertIsNone(self.central.last_session("CP1", 2))
        self.assertEqual(len([e for e in self.events if isinstance(e, TransactionStopped)]), 2)


class RestartTests(StateTestCase):
    """
    What the domain knows again after a restart.
    """

    def test_ever_connected_is_remembered(self):
        """
        Only a charger that connected once, ever, is known: after a restart
        it waits offline_after for its connection like one that just
        dropped; one never seen gets no timer.
        """
        self.assertFalse(self.charger.ever_connected)
        self.connect()
        self.assertTrue(self.charger.ever_connected)
        self.assertEqual(self.store.settings, {("CP1", "seen"): True,
                                               ("CP1", "contact"): {"since": T0.isoformat()}})
        self.connect()
        self.restart()
        self.assertEqual((self.charger.ever_connected,
                          self.central.chargers["CP2"].ever_connected), (True, False))
        [timer] = self.clock.getDelayedCalls()
        self.assertEqual(timer.getTime(), self.clock.seconds() + 30)
        self.clock.advance(30)
        self.assertEqual((self.charger.offline, self.central.chargers["CP2"].offline),
                         (True, False))

    def test_a_charger_added_by_a_reload_is_known_again(self):
        """
        A charger configured again by a reload is what the store knew of
        it.
        """
        self.connect("CP2")
        self.config = CONFIG.split('[[charger]]\nid = "CP2"')[0]
        self.restart()
        self.central.reconfigure(parse_config(CONFIG))
        self.assertTrue(self.central.chargers["CP2"].ever_connected)
        # its offline timer (CP1 never connected: none)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_connector_0_status_survives(self):
        self.central.reports.status_reported("CP1", 1, "Available")
        self.central.reports.status_reported("CP1", None, "Faulted", "GroundFailure")
        self.restart()
        self.assertEqual(self.central.point_status("CP1", 1), ("Faulted", "GroundFailure"))
        self.assertEqual(set(self.charger.connectors), {1, 2})

    def test_last_session_survives(self):
        tx_id, _ = self.start(meter=1000)
        self.stop(tx_id, 13345)
        refused, _ = self.start(tag="BAD", meter=13345)
        self.stop(refused, 13345)
        self.restart()
        last = self.central.last_session("CP1", 1)
        self.assertEqual((last.id, last.start_time, last.stop_time, last.energy_wh),
                         (tx_id, T0, T0, 12345))

    def test_limit_in_force_survives(self):
        """
        The charger keeps its limit while we restart: it is known again.
        """
        self.central.limit_in_force("CP1", 2, 10.0)
        self.restart()
        self.assertEqual((self.charger.connectors[1].limit, self.charger.connectors[2].limit),
                         (None, 10.0))


class LastContactTests(StateTestCase):
    """
    C{[knx] offline_after} (30 s here) runs from a charger's last contact,
    also across a restart: the store keeps when its connection opened and
    when it ended, one write each, none per frame.
    """

    def disconnect(self, session, charger_id="CP1"):
        self.central.connections.disconnected(charger_id, session)

    def stop(self):
        """
        The service stops (the connections end with it).
        """
        self.central.shutdown()

    def offline_timer(self):
        [timer] = self.clock.getDelayedCalls()
        return timer.getTime() - self.clock.seconds()

    def contact_writes(self):
        return [value for scope, key, value in self.store.written("put_setting")
                if key == "contact"]

    def test_away_before_the_restart_counts(self):
        self.disconnect(self.connect())
        self.clock.advance(20)
        self.stop()
        self.restart()
        self.assertEqual((self.offline_timer(), self.charger.disconnected_since), (10, T0))
        self.clock.advance(10)
        self.assertTrue(self.charger.offline)
        self.assertEqual(self.status_events(), [StatusChanged("CP1", None)])

    def test_away_for_longer_is_offline_at_once(self):
        """
        Offline as the state is loaded, before anybody publishes it: no
        timer, no event.
        """
        self.disconnect(self.connect())
        self.clock.advance(45)
        self.restart()
        self.assertEqual((self.charger.offline, self.clock.getDelayedCalls()), (True, []))
        self.assertEqual(self.central.point_status("CP1", 1), ("Unavailable", "NoError"))
        self.assertEqual(self.store.settings[("CP1", "offline")], True)
        self.restart()
        self.assertTrue(self.charger.offline)

    def test_connected_when_the_service_stopped(self):
        """
        Its last contact was the stop (the time kept at the stop); the
        store says so once, so a second restart does not count from its own
        stop.
        """
        self.connect()
        self.clock.advance(5)
        self.stop()
        self.clock.advance(20)
        self.restart()
        self.assertEqual(self.offline_timer(), 10)
        self.assertEqual(self.charger.disconnected_since, T0 + timedelta(seconds=5))
        self.assertEqual(self.contact_writes()[-1],
                         {"left": (T0 + timedelta(seconds=5)).isoformat()})
        self.clock.advance(3)
        self.stop()
        self.restart()
        self.assertEqual(self.offline_timer(), 7)

    def test_connected_at_a_crash(self):
        """
        No stop: nothing newer than the connection's start is kept (the
        trusted time is written every ten minutes only).
        """
        self.connect()
        self.clock.advance(10)
        self.restart()
        self.assertEqual(self.offline_timer(), 20)

    def test_a_store_of_an_older_version(self):
        """
        Nothing kept of the last contact: offline_after from the start.
        """
        self.store.settings = {("CP1", "seen"): True}
        self.clock.advance(3600)
        self.restart()
        self.assertEqual((self.offline_timer(), self.charger.disconnected_since), (30, None))

    def test_a_clock_that_is_wrong_after_the_restart(self):
        """
        The system clock reads 1970: the time since the last contact is
        known up to the stop only (the time kept then), so offline_after
        may be longer than from the last contact, never longer than all
        of it.
        """
        self.disconnect(self.connect())
        self.clock.advance(10)
        self.stop()
        self.central = CentralSystem(parse_config(self.config), self.store, self.clock,
                                     wall=lambda: 0.0)
        self.central.load()
        self.assertFalse(self.central.time.ok)
        # away for the 10 s until the stop, as far as it can be known
        self.assertEqual(self.offline_timer(), 20)

    def test_one_write_per_connection_and_end(self):
        """
        A connection and its end are one write each; frames, a replacing
        connection and the end of the replaced one write nothing.
        """
        first = self.connect()
        for n in range(1000):
            self.central.connections.frame("CP1", "in", "[2,\"%d\",\"Heartbeat\",{}]" % n)
            self.clock.advance(1)
        second = self.connect()
        self.disconnect(first)
        self.disconnect(second)
        self.assertEqual(self.contact_writes(), [
            {"since": T0.isoformat()}, {"left": (T0 + timedelta(seconds=1000)).isoformat()}])
