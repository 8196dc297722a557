"""
The budget of the rows a charger's transactions add to the store
(L{xxterocpp.domain.book}, docs/ocpp.md#start-budget): StartTransactions
per connector, StopTransactions of unknown transactions per charger. In
the domain on a fake clock, and the real service on loopback.
"""

from datetime import timedelta

from twisted.internet import defer
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import TestCase

from tests.service import reopen_store, start_service, write_config
from tests.sim import connect_charger
from tests.test_domain import CONFIG, T0, DomainTestCase
from xxterocpp.config import parse_config
from xxterocpp.domain.book import (
    KEPT_BELOW, ORPHAN_BURST, ORPHAN_INTERVAL, START_BURST, START_INTERVAL, UNBOOKED)
from xxterocpp.domain.central import CentralSystem
from xxterocpp.domain.events import TransactionStopped
from xxterocpp.domain.tags import Authorization


class StartBudgetTests(DomainTestCase):
    """
    Through L{CentralSystem.start_transaction} and C{stop_transaction}, the
    clock standing still unless moved.
    """

    def test_a_backlog_of_old_sessions_is_booked_whole(self):
        """
        A charger back from a month offline uploads 500 sessions at once
        (start, stop, start, ...; their times spread over the month): every
        one is booked and closed, none refused, no orphan stop.
        """
        ids = []
        for i in range(500):
            at = T0 - timedelta(days=30) + timedelta(hours=i)
            tx_id, authorization = self.start(meter=1000 * i, at=at)
            self.assertEqual(authorization, Authorization("Accepted"))
            ids.append(tx_id)
            self.stop(tx_id, meter=1000 * i + 500, at=at + timedelta(minutes=30))
        self.assertEqual(ids, list(range(42, 542)))
        self.assertEqual(len(self.store.written("insert_transaction")), 500)
        self.assertEqual(len(self.store.written("stop_transaction")), 500)
        self.assertEqual(self.store.written("record_orphan_stop"), [])
        self.assertEqual(self.central.book.budget.refused_starts, 0)

    def test_starts_beyond_the_burst_are_refused_unbooked(self):
        """
        A charger in a loop: the first L{START_BURST} starts at a connector
        are booked (each closing the one before), the next ones answered
        ConcurrentTx with transactionId 0 and booked nowhere; the last
        booked session is closed by the first refused start all the same.
        One log line while they go on; after L{START_INTERVAL} s one more
        is booked.
        """
        with capturedLogs() as events:
            for i in range(START_BURST):
                self.assertNotEqual(self.start(meter=i, at=T0 + timedelta(seconds=i))[0],
                                    UNBOOKED)
            last = self.charger.connectors[1].transaction
            self.assertTrue(last.running)
            refused = [self.start(meter=START_BURST + i, at=T0 + timedelta(hours=1, seconds=i))
                       for i in range(50)]
        self.assertEqual(set(refused), {(UNBOOKED, Authorization("ConcurrentTx"))})
        self.assertEqual(len(self.store.written("insert_transaction")), START_BURST)
        self.assertFalse(last.running)
        self.assertEqual((last.meter_stop, last.stop_reason), (START_BURST, "Other"))
        self.assertEqual(self.of_type(TransactionStopped)[-1].transaction, last)
        self.assertIsNone(self.charger.connectors[1].transaction)
        self.assertEqual(self.central.book.budget.refused_starts, 50)
        lines = [formatEvent(e) for e in events if "beyond" in formatEvent(e)]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("CP1", lines[0])
        self.assertIn("connector 1", lines[0])
        self.clock.advance(START_INTERVAL)
        self.assertEqual(self.start(meter=5000, at=T0 + timedelta(hours=2))[0],
                         42 + START_BURST)
        self.assertEqual(self.start(meter=5001, at=T0 + timedelta(hours=2, seconds=1))[0],
                         UNBOOKED)

    def exhaust(self, connector=1):
        for i in range(START_BURST):
            self.start(connector=connector, meter=i, at=T0 + timedelta(seconds=i))

    def test_a_refused_start_keeps_a_worse_verdict(self):
        """
        Beyond the budget, a tag that is not accepted keeps its own verdict
        (Invalid); only an accepted one becomes ConcurrentTx.
        """
        self.exhaust()
        self.assertEqual(self.start(tag="UNLISTED", meter=1, at=T0 + timedelta(hours=1)),
                         (UNBOOKED, Authorization("Invalid")))

    def test_a_retried_start_is_answered_beyond_the_budget(self):
        """
        The last booked start, retried once the budget is spent (its answer
        got lost), gets its id again: a retry books nothing and costs
        nothing.
        """
        self.exhaust()
        last = self.charger.connectors[1].transaction
        self.assertEqual(self.start(meter=START_BURST - 1,
                                    at=T0 + timedelta(seconds=START_BURST - 1)),
                         (last.id, Authorization("Accepted")))
        self.assertTrue(last.running)
        self.assertEqual(self.central.book.budget.refused_starts, 0)

    def test_each_connector_has_its_own(self):
        """
        Connector 1 spent: connector 2 books still.
        """
        self.exhaust(connector=1)
        tx_id, authorization = self.start(connector=2, tag="LATER", meter=7,
                                          at=T0 + timedelta(hours=1))
        self.assertEqual((tx_id, authorization.status), (42 + START_BURST, "Accepted"))
        self.assertEqual(len(self.store.written("insert_transaction")), START_BURST + 1)

    def test_connectors_that_are_no_charging_point_share_one(self):
        """
        A charger may name connectors up to its NumberOfConnectors (32
        until it told, up to 255): those that are no configured charging
        point (3 and up here) share one budget, so that naming more of
        them books no more rows. Connector 1 books still.
        """
        with capturedLogs() as events:
            for i in range(START_BURST):
                tx_id, _ = self.start(connector=3 + i % 30, meter=i,
                                      at=T0 + timedelta(seconds=i))
                self.assertNotEqual(tx_id, UNBOOKED)
            self.assertEqual(self.start(connector=32, meter=1, at=T0 + timedelta(hours=1))[0],
                             UNBOOKED)
        self.assertEqual(len(self.store.written("insert_transaction")), START_BURST)
        [line] = [formatEvent(e) for e in events if "beyond" in formatEvent(e)]
        self.assertIn("connectors that are no charging point (the last: 32)", line)
        self.assertNotEqual(self.start(connector=1, meter=2, at=T0 + timedelta(hours=2))[0],
                            UNBOOKED)

    def restart(self):
        """
        A new central system on the same store, as after a restart.
        """
        self.central = CentralSystem(parse_config(CONFIG), self.store, self.clock)
        self.central.load()
        self.charger = self.central.chargers["CP1"]

    def test_kept_across_a_restart(self):
        """
        Spent, then the service restarts (or crashes, and systemd starts it
        again: 5 s later, for ever): the budget is not full again, each
        start's level went lazily with its row's commit. Down for ten
        minutes, it has ten starts more. Connector 2 and the orphan stops
        keep theirs.
        """
        self.exhaust()
        self.assertIn(("CP1", "row_budget/start/1"), self.store.lazy_settings)
        self.restart()
        self.assertEqual(self.start(meter=1, at=T0 + timedelta(hours=1))[0], UNBOOKED)
        self.clock.advance(10 * START_INTERVAL)
        self.restart()
        booked = [self.start(meter=i, at=T0 + timedelta(hours=2, seconds=i))[0]
                  for i in range(11)]
        self.assertNotIn(UNBOOKED, booked[:10])
        self.assertEqual(booked[10], UNBOOKED)
        self.assertNotEqual(self.start(connector=2, meter=1, at=T0 + timedelta(hours=3))[0],
                            UNBOOKED)
        self.assertIsNone(self.stop(10_000, meter=1, at=T0))
        self.assertEqual(len(self.store.written("record_orphan_stop")), 1)

    def test_a_real_connectors_sessions_write_no_budget(self):
        """
        Sessions an hour apart (and a backlog of ten at once): the budget
        is never more than L{KEPT_BELOW} short of full, nothing of it is
        written.
        """
        for i in range(KEPT_BELOW + 5):
            tx_id, _ = self.start(meter=i, at=T0 + timedelta(hours=i))
            self.stop(tx_id, meter=i + 1, at=T0 + timedelta(hours=i, minutes=30))
            self.clock.advance(0 if i < KEPT_BELOW - 1 else 3600)
        self.assertEqual([k for k in self.store.lazy_settings if "budget" in k[1]], [])

    def test_orphan_stops_kept_across_a_restart(self):
        for i in range(ORPHAN_BURST):
            self.stop(10_000 + i, meter=i, at=T0)
        self.restart()
        self.stop(99_999, meter=1, at=T0)
        self.assertEqual(len(self.store.written("record_orphan_stop")), ORPHAN_BURST)
        self.assertEqual(self.central.book.budget.unrecorded_stops, 1)

    def test_stop_of_a_refused_start(self):
        """
        The charger's StopTransaction of a refused start (transactionId 0)
        is acknowledged and recorded as an orphan stop.
        """
        self.exhaust()
        self.start(meter=1, at=T0 + timedelta(hours=1))
        self.assertIsNone(self.stop(UNBOOKED, meter=5, at=T0 + timedelta(hours=2)))
        [orphan] = self.store.written("record_orphan_stop")
        self.assertEqual(orphan[:3], ("CP1", UNBOOKED, 5))

    def test_orphan_stops_beyond_the_budget_are_counted_not_recorded(self):
        """
        StopTransactions of transactions never started: L{ORPHAN_BURST}
        recorded, the next ones acknowledged and counted, one log line;
        after L{ORPHAN_INTERVAL} s one more is recorded.
        """
        with capturedLogs() as events:
            for i in range(ORPHAN_BURST + 30):
                self.assertIsNone(self.stop(10_000 + i, meter=i, at=T0))
        self.assertEqual(len(self.store.written("record_orphan_stop")), ORPHAN_BURST)
        self.assertEqual(self.central.book.budget.unrecorded_stops, 30)
        lines = [formatEvent(e) for e in events if "not recorded" in formatEvent(e)]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("CP1", lines[0])
        self.clock.advance(ORPHAN_INTERVAL)
        self.stop(99_999, meter=1, at=T0)
        self.assertEqual(len(self.store.written("record_orphan_stop")), ORPHAN_BURST + 1)
        # The sessions of the charger are booked as ever.
        tx_id, _ = self.start(meter=1, at=T0 + timedelta(hours=3))
        self.stop(tx_id, meter=2, at=T0 + timedelta(hours=4))
        self.assertEqual(len(self.store.written("stop_transaction")), 1)


class LoopingChargerTests(TestCase):
    """
    The real service on loopback, a charger sending StartTransactions in a
    loop.
    """

    timeout = 120

    @defer.inlineCallbacks
    def test_starts_beyond_the_burst_on_the_wire(self):
        """
        1,050 StartTransactions at connector 1 (a new meterStart each),
        sent at once: L{START_BURST} answered with their ids, the others
        with transactionId 0 and ConcurrentTx; their StopTransaction is
        acknowledged; the database holds L{START_BURST} transactions.
        Another charger starts and stops its session meanwhile. Started
        again, the service does not fill the budget again.
        """
        path = write_config(self)
        service = yield start_service(self, path)
        cp = yield connect_charger(service.url, "CP1")
        self.addCleanup(cp.close)
        yield cp.boot()
        twin = yield connect_charger(service.url, "TWIN")
        self.addCleanup(twin.close)
        answers = yield defer.gatherResults([
            cp.call("StartTransaction", {
                "connectorId": 1, "idTag": "04A1B2C3", "meterStart": i,
                "timestamp": f"2026-01-01T{i // 3600:02}:{i // 60 % 60:02}:{i % 60:02}Z"},
                timeout=60)
            for i in range(START_BURST + 50)])
        ids = [a["transactionId"] for a in answers]
        self.assertEqual(len(set(ids[:START_BURST])), START_BURST)
        self.assertNotIn(UNBOOKED, ids[:START_BURST])
        self.assertEqual({(a["transactionId"], a["idTagInfo"]["status"])
                          for a in answers[START_BURST:]}, {(UNBOOKED, "ConcurrentTx")})
        self.assertEqual((yield cp.stop_transaction(UNBOOKED, 60)), {})
        started = yield twin.start_transaction(1, "04A1B2C3", 0)
        self.assertEqual(started["idTagInfo"]["status"], "Accepted")
        yield twin.stop_transaction(started["transactionId"], 10)
        yield service.stopService()
        # Started again on the same file: the budget is still spent.
        service = yield start_service(self, path)
        cp = yield connect_charger(service.url, "CP1")
        self.addCleanup(cp.close)
        again = yield cp.start_transaction(1, "04A1B2C3", 10_000)
        self.assertEqual((again["transactionId"], again["idTagInfo"]["status"]),
                         (UNBOOKED, "ConcurrentTx"))
        yield service.stopService()
        rows = reopen_store(self).load_recent_transactions(5000)
        self.assertEqual(len([r for r in rows if r.charger_id == "CP1"]), START_BURST)
        self.assertEqual(len([r for r in rows if r.charger_id == "TWIN"]), 1)
