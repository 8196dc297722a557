"""
Tests for L{xxterocpp.store}.

The store runs SQL in a real thread against a real SQLite file, so these
tests use the global reactor (a fake one cannot receive C{callFromThread}),
and a L{Clock} only where a retry delay would otherwise make a test wait.
"""

import os
import re
import shutil
import sqlite3
import stat
import sys
from datetime import datetime, timedelta, timezone

import attr

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.internet.error import ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase

from xxterocpp.store import (
    LAZY_WRITE_DELAY,
    MAX_IDENTITY_LENGTH,
    MAX_UNKNOWN_CHARGERS,
    MIGRATIONS,
    ConnectorStatusRecord,
    Store,
    StoreError,
    TagRecord,
    TransactionRecord,
)
from xxterocpp.store._worker import CACHE_KIB

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=timezone.utc)
HERE = os.path.dirname(os.path.abspath(__file__))


def store_events(events):
    """
    @return: the events among C{events} that the store logged.
    """
    return [event for event in events if event.get("log_namespace") == "xxterocpp.store"]


@inlineCallbacks
def refused(store, seconds=30):
    """
    Wait (polling, at most C{seconds}) until a commit of C{store} failed
    and its writes wait for the retry.
    """
    for _ in range(int(seconds / 0.01)):
        if store._batches._failing:
            return
        yield task.deferLater(reactor, 0.01, lambda: None)
    raise AssertionError(f"no commit failed within {seconds} s")


def started(tx_id, charger_id="CP1", start_time=T0, meter_start=1000):
    """
    A freshly started transaction.
    """
    return TransactionRecord(
        tx_id, charger_id, 1, "04A1B2C3", start_time, meter_start, None,
        "Accepted", f"{charger_id}/{tx_id}",
    )


class EnergyTests(SynchronousTestCase):
    def test_energy_of_stopped_transaction(self):
        """
        A stopped transaction's energy is meterStop - meterStart.
        """
        rec = started(1, meter_start=1000)
        self.assertIsNone(rec.energy_wh)
        self.assertEqual(
            attr.evolve(rec, meter_stop=1500, last_meter_wh=9999.0).energy_wh, 500
        )

    def test_energy_of_open_transaction_and_meter_reset(self):
        """
        An open transaction counts up to the last reading; a meter that went
        backwards gives 0, not negative energy.
        """
        rec = started(1, meter_start=1000)
        self.assertEqual(attr.evolve(rec, last_meter_wh=1250.5).energy_wh, 250.5)
        self.assertEqual(attr.evolve(rec, meter_stop=10).energy_wh, 0)


class StoreTestCase(TestCase):
    def makeStore(self, path=None, **kwargs):
        """
        Open a store, closed again when the test ends.
        """
        store = Store(path or self.path, reactor, **kwargs)
        store.open()
        self.addCleanup(store.close)
        return store

    @inlineCallbacks
    def restart(self, store):
        """
        Close C{store} and open a new one on the same file, as after a
        restart of the service.
        """
        yield store.close()
        return self.makeStore(store.path)

    def setUp(self):
        self.path = os.path.join(self.mktemp(), "state", "state.sqlite3")

    def connect(self):
        """
        @return: a connection of the test's own to the database file, which
            no store may have open meanwhile: it holds the file exclusively.
        """
        db = sqlite3.connect(self.path)
        self.addCleanup(db.close)
        return db

    def inWorker(self, store, sql):
        """
        @return: a L{Deferred} firing with the rows of C{sql}, run on the
            open store's own connection.
        """
        return store._read(lambda: store._db.execute(sql).fetchall())


class SchemaTests(StoreTestCase):
    @inlineCallbacks
    def test_open_creates_directory_and_versioned_schema(self):
        """
        The first open creates the missing directory and the schema, in WAL
        mode, with C{user_version} at the latest migration.
        """
        store = self.makeStore()
        yield store.close()
        db = self.connect()
        self.assertEqual(
            db.execute("PRAGMA user_version").fetchone()[0], len(MIGRATIONS)
        )
        self.assertEqual(db.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        self.assertTrue(
            {"transactions", "meta", "orphan_stops", "connector_status",
             "unknown_chargers", "settings", "tags"} <= tables
        )

    @inlineCallbacks
    def test_new_file_is_laid_out_for_few_page_writes(self):
        """
        A new file has 1 KiB pages, no index that only start-up reads, and
        statuses and settings in their primary key's b-tree; while the
        store has it open, no other connection can, and there is no -shm
        file.
        """
        store = self.makeStore()
        yield store.put_setting("CP1", "limit", 16)
        self.assertFalse(os.path.exists(self.path + "-shm"))
        other = sqlite3.connect(self.path, timeout=0)
        self.addCleanup(other.close)
        self.assertRaises(sqlite3.OperationalError, other.execute,
                          "SELECT * FROM settings")
        yield store.close()
        db = self.connect()
        self.assertEqual(db.execute("PRAGMA page_size").fetchone()[0], 1024)
        indexes = [r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index'")]
        self.assertEqual(indexes, ["sqlite_autoindex_meta_1", "transactions_by_start",
                                   "sqlite_autoindex_unknown_chargers_1",
                                   "sqlite_autoindex_tags_1", "upstream_queue_by_charger",
                                   "upstream_transactions_by_charger"])

    @inlineCallbacks
    def test_page_cache_is_small_and_bounded(self):
        """
        The connection's page cache is bounded to L{CACHE_KIB}, far below
        SQLite's default of 2,000 KiB, which a growing file would fill
        with pages no commit touches again.
        """
        store = self.makeStore()
        [(size,)] = yield self.inWorker(store, "PRAGMA cache_size")
        self.assertEqual(size, -CACHE_KIB)
        self.assertLessEqual(CACHE_KIB, 256)

    @inlineCallbacks
    def test_version_1_file_is_migrated_with_its_rows(self):
        """
        A file of schema version 1 (4 KiB pages, as SQLite makes them) keeps
        its statuses, settings and transactions through the migration.
        """
        os.makedirs(os.path.dirname(self.path))
        db = sqlite3.connect(self.path, isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        for statement in MIGRATIONS[0]:
            db.execute(statement)
        db.execute("PRAGMA user_version = 1")
        db.execute("INSERT INTO connector_status VALUES"
                   " ('CP1', 1, 'Charging', 'NoError', NULL, '2024-05-01T08:00:00.000000Z')")
        db.execute("INSERT INTO settings VALUES ('CP1', 'limit', '16')")
        db.close()
        store = self.makeStore()
        yield store.insert_transaction(started(1))
        self.assertEqual(store.load_connector_status(), [
            ConnectorStatusRecord("CP1", 1, "Charging", "NoError", None, T0)])
        self.assertEqual(store.load_settings(), {("CP1", "limit"): 16})
        self.assertEqual([r.id for r in store.load_open_transactions()], [1])
        [(version,)] = yield self.inWorker(store, "PRAGMA user_version")
        self.assertEqual(version, len(MIGRATIONS))

    @inlineCallbacks
    def test_reopen_keeps_data(self):
        """
        Opening an existing file migrates nothing and keeps its content.
        """
        store = self.makeStore()
        yield store.put_setting("CP1", "limit", 16.0)
        store = yield self.restart(store)
        self.assertEqual(store.load_settings(), {("CP1", "limit"): 16.0})

    @inlineCallbacks
    def test_newer_schema_is_refused(self):
        """
        A file written by a newer version is not touched: open() says so.
        """
        yield self.makeStore().close()
        db = sqlite3.connect(self.path)
        db.execute("PRAGMA user_version = 99")
        db.close()
        error = self.assertRaises(StoreError, Store(self.path, reactor).open)
        self.assertIn("newer", str(error))
        self.assertIn(self.path, str(error))

    def test_directory_at_the_path_is_refused(self):
        """
        A directory where the file should be is left alone, and open() says
        what is in the way (not that the directory is not writable).
        """
        os.makedirs(os.path.join(self.path, "inside"))
        error = self.assertRaises(StoreError, Store(self.path, reactor).open)
        self.assertIn(f"{self.path} is a directory", str(error))
        self.assertEqual(os.listdir(self.path), ["inside"])

    @inlineCallbacks
    def test_version_1_gets_the_uncertain_time_column(self):
        """
        A file of schema version 1 is brought up to date: its transactions
        are not marked C{time_uncertain}.
        """
        os.makedirs(os.path.dirname(self.path))
        db = sqlite3.connect(self.path, isolation_level=None)
        for statement in MIGRATIONS[0]:
            db.execute(statement)
        db.execute("PRAGMA user_version = 1")
        db.execute(
            "INSERT INTO transactions (id, charger_id, connector, id_tag, start_time,"
            " meter_start, start_status, dedup_key) VALUES"
            " (3, 'CP1', 1, 'TAG', '2024-05-01T18:00:00.000000Z', 0, 'Accepted', 'k')")
        db.close()
        store = self.makeStore()
        [rec] = store.load_open_transactions()
        self.assertEqual((rec.id, rec.time_uncertain), (3, False))
        yield store.close()
        self.assertEqual(
            self.connect().execute("PRAGMA user_version").fetchone()[0], len(MIGRATIONS))


class TransactionTests(StoreTestCase):
    @inlineCallbacks
    def test_time_uncertain_is_kept(self):
        """
        A transaction marked C{time_uncertain} at its start, or at its stop,
        stays marked after a restart.
        """
        store = self.makeStore()
        store.insert_transaction(attr.evolve(started(1), time_uncertain=True))
        store.insert_transaction(started(2))
        store.stop_transaction(1, 1100, T0 + timedelta(hours=1), "Local", None)
        yield store.stop_transaction(2, 1100, T0 + timedelta(hours=1), "Local", None, True)
        store = yield self.restart(store)
        self.assertEqual(sorted((r.id, r.time_uncertain)
                                for r in store.load_recent_transactions()),
                         [(1, True), (2, True)])

    @inlineCallbacks
    def test_inserted_transaction_is_open_after_restart(self):
        """
        Once insert_transaction's Deferred fired, a restarted store loads the
        transaction as open.
        """
        store = self.makeStore()
        yield store.insert_transaction(started(7))
        store = yield self.restart(store)
        self.assertEqual(store.load_open_transactions(), [started(7)])
        self.assertEqual(store.load_open_transactions()[0].start_time, T0)

    @inlineCallbacks
    def test_stopped_transaction_is_history(self):
        """
        A stopped transaction is no longer open and knows its energy.
        """
        store = self.makeStore()
        store.insert_transaction(started(1, meter_start=1000))
        store.update_meter(1, 3000.0, T0 + timedelta(minutes=30))
        yield store.stop_transaction(
            1, 4200, T0 + timedelta(hours=1), "EVDisconnected", "04A1B2C3"
        )
        store = yield self.restart(store)
        self.assertEqual(store.load_open_transactions(), [])
        [rec] = store.load_recent_transactions()
        self.assertEqual(rec.energy_wh, 3200)
        self.assertEqual(
            (rec.stop_time, rec.stop_reason, rec.stop_id_tag, rec.last_meter_wh),
            (T0 + timedelta(hours=1), "EVDisconnected", "04A1B2C3", 3000.0),
        )

    @inlineCallbacks
    def test_stop_of_unknown_or_stopped_transaction_is_kept(self):
        """
        Stops that match no open transaction are recorded as orphans, both
        when the domain says so and when the store finds out itself.
        """
        store = self.makeStore()
        store.insert_transaction(started(1))
        store.stop_transaction(1, 1500, T0, "Local", None)
        store.stop_transaction(1, 1600, T0, "Local", None)
        yield store.record_orphan_stop(
            "CP2", 99, 500, T0, None, T0, "unknown transaction"
        )
        orphans = yield store.query_orphan_stops(10)
        self.assertEqual(
            [(o.charger_id, o.transaction_id, o.meter_stop, o.note) for o in orphans],
            [("CP2", 99, 500, "unknown transaction"),
             ("CP1", 1, 1600,
              "stop_transaction for a transaction not open in the store")],
        )
        [rec] = yield store.query_transactions()
        self.assertEqual(rec.meter_stop, 1500)

    @inlineCallbacks
    def test_last_transaction_id_survives_restart_and_deletion(self):
        """
        The highest id handed out is remembered even when history is deleted,
        so an id is never handed out twice.
        """
        store = self.makeStore()
        self.assertEqual(store.last_transaction_id(), 0)
        yield gatherResults(
            [store.insert_transaction(started(n)) for n in (5, 41, 7)]
        )
        yield store.close()
        db = sqlite3.connect(self.path)
        with db:
            db.execute("DELETE FROM transactions")
        db.close()
        store = self.makeStore()
        self.assertEqual(store.load_recent_transactions(), [])
        self.assertEqual(store.last_transaction_id(), 41)

    @inlineCallbacks
    def test_duplicate_id_is_rejected_alone(self):
        """
        A write that can never succeed fails with StoreError; the writes
        batched with it are committed anyway.
        """
        store = self.makeStore()
        yield store.insert_transaction(started(1))
        before = store.commits
        captured = self.enterContext(capturedLogs())
        duplicate = store.insert_transaction(started(1, charger_id="CP2"))
        other = store.insert_transaction(started(2))
        yield self.assertFailure(duplicate, StoreError)
        yield other
        self.assertEqual([r.id for r in store.load_open_transactions()], [1, 2])
        self.assertEqual(len(store_events(captured)), 1)
        self.assertEqual(store.commits, before + 1)

    @inlineCallbacks
    def test_rejected_transaction_id_is_never_handed_out_again(self):
        """
        A transaction whose row the database rejects (a meterStart beyond
        SQLite's INTEGER) still uses up its id: the counter is committed
        by the time the write fails, and a restarted store does not hand
        the id out again.
        """
        store = self.makeStore()
        yield store.insert_transaction(started(3))
        rejected = store.insert_transaction(started(4, meter_start=2**63))
        yield self.assertFailure(rejected, StoreError)
        self.assertEqual((yield self.inWorker(store, "SELECT value FROM meta")), [(4,)])
        store = yield self.restart(store)
        self.assertEqual(store.last_transaction_id(), 4)
        self.assertEqual([r.id for r in store.load_open_transactions()], [3])

    @inlineCallbacks
    def test_last_transaction_id_covers_stored_ids(self):
        """
        A stored transaction's id counts as handed out even where the
        counter says less (a file edited by hand).
        """
        store = self.makeStore()
        yield store.insert_transaction(started(12))
        yield store.close()
        db = sqlite3.connect(self.path)
        with db:
            db.execute("UPDATE meta SET value = 0")
        db.close()
        store = self.makeStore()
        self.assertEqual(store.last_transaction_id(), 12)

    @inlineCallbacks
    def test_query_transactions_filters_and_order(self):
        """
        query_transactions returns newest first, filtered by charger and by a
        half-open start-time window, and sees writes queued before it.
        """
        store = self.makeStore()
        for n in range(1, 7):
            store.insert_transaction(
                started(n, "CP1" if n % 2 else "CP2", T0 + timedelta(hours=n))
            )
        every = yield store.query_transactions()
        self.assertEqual([r.id for r in every], [6, 5, 4, 3, 2, 1])
        cp1 = yield store.query_transactions(charger_id="CP1")
        self.assertEqual([r.id for r in cp1], [5, 3, 1])
        window = yield store.query_transactions(
            since=T0 + timedelta(hours=2), until=T0 + timedelta(hours=5)
        )
        self.assertEqual([r.id for r in window], [4, 3, 2])
        latest = yield store.query_transactions(charger_id="CP2", limit=2)
        self.assertEqual([r.id for r in latest], [6, 4])
        # An offset is the same instant: the window still matches.
        local = timezone(timedelta(hours=2))
        same = yield store.query_transactions(
            since=(T0 + timedelta(hours=6)).astimezone(local)
        )
        self.assertEqual([r.id for r in same], [6])

    def test_naive_datetime_is_refused_at_once(self):
        """
        A datetime without zone is a caller bug, raised before anything is
        queued.
        """
        store = self.makeStore()
        self.assertRaises(
            ValueError, store.update_meter, 1, 10.0, datetime(2024, 5, 1)
        )


class BatchingTests(StoreTestCase):
    @inlineCallbacks
    def test_one_commit_per_reactor_turn_latest_value_wins(self):
        """
        200 meter and 200 status updates made in one reactor turn are one
        commit, and only the latest value per key is stored.
        """
        clock = task.Clock()
        store = self.makeStore(clock=clock)
        yield store.insert_transaction(started(1))
        before = store.commits
        writes = []
        for n in range(200):
            at = T0 + timedelta(seconds=n)
            writes.append(store.update_meter(1, 1000.0 + n, at))
            writes.append(
                store.save_connector_status(
                    "CP1", 1, ("Charging", "SuspendedEV")[n % 2], "NoError", None, at
                )
            )
        clock.advance(LAZY_WRITE_DELAY)
        yield gatherResults(writes)
        self.assertEqual(store.commits, before + 1)
        store = yield self.restart(store)
        [rec] = store.load_open_transactions()
        self.assertEqual(
            (rec.last_meter_wh, rec.last_meter_time),
            (1199.0, T0 + timedelta(seconds=199)),
        )
        self.assertEqual(
            store.load_connector_status(),
            [ConnectorStatusRecord(
                "CP1", 1, "SuspendedEV", "NoError", None, T0 + timedelta(seconds=199)
            )],
        )

    @inlineCallbacks
    def test_writes_during_a_flush_go_to_the_next_batch(self):
        """
        A write made while a batch is being committed waits for the next
        batch, and its Deferred fires only when that one is committed.
        """
        store = self.makeStore()
        before = store.commits
        first = store.put_setting("CP1", "a", 1)
        # Runs after the store's own callLater(0): the first batch is away.
        yield task.deferLater(reactor, 0, lambda: None)
        second = store.put_setting("CP1", "b", 2)
        yield first
        self.assertEqual(store.commits, before + 1)
        self.assertFalse(second.called)
        yield second
        self.assertEqual(store.commits, before + 2)

    @inlineCallbacks
    def test_lazy_writes_wait_for_the_delay(self):
        """
        Meter readings, statuses, unknown chargers' attempts and lazy
        settings are committed together once the lazy delay has passed
        since the last commit, not before.
        """
        clock = task.Clock()
        store = self.makeStore(clock=clock)
        yield store.insert_transaction(started(1))
        before = store.commits
        lazy = [
            store.update_meter(1, 1500.0, T0),
            store.save_connector_status("CP1", 1, "Charging", "NoError", None, T0),
            store.record_unknown_attempts("SN999", "10.0.0.5", T0, T0, 1),
            store.put_setting("central", "trusted_time", T0.isoformat(), lazy=True),
        ]
        clock.advance(LAZY_WRITE_DELAY - 1)
        yield task.deferLater(reactor, 0.05, lambda: None)
        self.assertEqual((store.commits, [d.called for d in lazy]), (before, [False] * 4))
        clock.advance(1)
        yield gatherResults(lazy)
        self.assertEqual(store.commits, before + 1)

    @inlineCallbacks
    def test_a_lone_chargers_readings_are_two_commits_an_hour(self):
        """
        A charger charging alone for six hours, a meter reading every 60 s
        and the trusted time every 10 minutes: at most two commits an hour
        (each costs at least a 4 KiB page of the file system; the write
        budget of README, Performance, scenario 6 has room for two), and
        the last reading committed by the lazy delay after it.
        """
        clock = task.Clock()
        store = self.makeStore(clock=clock)
        yield store.insert_transaction(started(1))
        before = store.commits
        hours = 6
        for minute in range(1, 60 * hours + 1):
            clock.advance(60)
            at = T0 + timedelta(minutes=minute)
            store.update_meter(1, 1000.0 + minute, at)
            if minute % 10 == 0:
                store.put_setting("central", "trusted_time", at.isoformat(), lazy=True)
            # Whatever batch the clock started is committed before the
            # next minute.
            yield store._batches.read(lambda: None)
        self.assertLessEqual(store.commits - before, 2 * hours)
        clock.advance(LAZY_WRITE_DELAY)
        yield store._batches.read(lambda: None)
        store = yield self.restart(store)
        [rec] = store.load_open_transactions()
        self.assertEqual(rec.last_meter_wh, 1000.0 + 60 * hours)

    @inlineCallbacks
    def test_lazy_writes_go_with_the_next_commit(self):
        """
        A write that is not lazy takes the lazy ones queued before it into
        its commit: a StopTransaction and the transaction's last meter
        reading are one commit.
        """
        clock = task.Clock()
        store = self.makeStore(clock=clock)
        yield store.insert_transaction(started(1))
        before = store.commits
        meter = store.update_meter(1, 4100.0, T0 + timedelta(minutes=59))
        yield store.stop_transaction(1, 4200, T0 + timedelta(hours=1), "Local", None)
        self.assertTrue(meter.called)
        self.assertEqual(store.commits, before + 1)
        clock.advance(LAZY_WRITE_DELAY)
        self.assertEqual(store.commits, before + 1)
        store = yield self.restart(store)
        [rec] = store.load_recent_transactions()
        self.assertEqual((rec.last_meter_wh, rec.meter_stop), (4100.0, 4200))

    @inlineCallbacks
    def test_unchanged_status_and_meter_are_not_written_again(self):
        """
        A StatusNotification that changes nothing (status, error code and
        info as stored, also after a restart) and a reading equal to the
        last one queue nothing: the stored status and reading keep the time
        since when they hold.
        """
        store = self.makeStore()
        yield store.insert_transaction(started(1))
        store.save_connector_status("CP1", 1, "Charging", "NoError", None, T0)
        yield store.close()
        clock = task.Clock()
        store = self.makeStore(clock=clock)
        store.load_connector_status()
        before = store.commits
        later = T0 + timedelta(minutes=10)
        yield store.save_connector_status("CP1", 1, "Charging", "NoError", None, later)
        changed = store.save_connector_status("CP1", 1, "Charging", "NoError", "cable", later)
        reading = store.update_meter(1, 2500.0, later)
        same = store.update_meter(1, 2500.0, later + timedelta(minutes=1))
        clock.advance(LAZY_WRITE_DELAY)
        yield gatherResults([changed, reading, same])
        self.assertEqual(store.commits, before + 1)
        store = yield self.restart(store)
        [status] = store.load_connector_status()
        self.assertEqual((status.info, status.at), ("cable", later))
        [rec] = store.load_open_transactions()
        self.assertEqual((rec.last_meter_wh, rec.last_meter_time), (2500.0, later))

    @inlineCallbacks
    def test_reads_see_lazy_meter_readings_without_a_commit(self):
        """
        query_transactions shows the latest reading of an open transaction
        although it is not committed yet, and makes no commit for it.
        """
        clock = task.Clock()
        store = self.makeStore(clock=clock)
        yield store.insert_transaction(started(1))
        before = store.commits
        store.update_meter(1, 1234.5, T0 + timedelta(minutes=5))
        [rec] = yield store.query_transactions()
        self.assertEqual(
            (rec.last_meter_wh, rec.last_meter_time, rec.energy_wh),
            (1234.5, T0 + timedelta(minutes=5), 234.5),
        )
        self.assertEqual(store.commits, before)

    @inlineCallbacks
    def test_close_commits_what_is_queued(self):
        """
        close() commits writes made just before it, lazy ones too; later
        writes fail.
        """
        store = self.makeStore(clock=task.Clock())
        written = store.put_tag("04A1B2C3", "Accepted")
        status = store.save_connector_status("CP1", 1, "Faulted", "GroundFailure", None, T0)
        yield store.close()
        yield gatherResults([written, status])
        yield self.assertFailure(store.delete_tag("04A1B2C3"), StoreError)
        store = self.makeStore()
        self.assertEqual(
            store.load_tags(), [TagRecord("04A1B2C3", "Accepted", None, None)]
        )
        self.assertEqual([s.status for s in store.load_connector_status()], ["Faulted"])


class RegistryTests(StoreTestCase):
    @inlineCallbacks
    def test_unknown_charger_attempts_are_counted(self):
        """
        Each write adds its attempts; the first sighting is kept, the last
        one and its address are updated.
        """
        clock = task.Clock()
        store = self.makeStore(clock=clock)
        store.record_unknown_attempts("SN999", "10.0.0.5", T0, T0, 1)
        store.record_unknown_attempts(
            "SN999", "10.0.0.6", T0, T0 + timedelta(minutes=1), 1)
        # Committed in between: the attempts after it count on.
        clock.advance(LAZY_WRITE_DELAY)
        store.record_unknown_attempts("SN1", "10.0.0.7", T0, T0, 1)
        store.record_unknown_attempts(
            "SN999", "10.0.0.8", T0 + timedelta(minutes=1), T0 + timedelta(minutes=2), 5
        )
        store = yield self.restart(store)
        [sn999, sn1] = store.load_unknown_chargers()
        self.assertEqual(
            (sn999.identity, sn999.address, sn999.first_seen, sn999.last_seen,
             sn999.count),
            ("SN999", "10.0.0.8", T0, T0 + timedelta(minutes=2), 7),
        )
        self.assertEqual((sn1.identity, sn1.count), ("SN1", 1))

    @inlineCallbacks
    def test_unknown_chargers_are_bounded(self):
        """
        A flood of made-up identities keeps only the latest seen in the
        table, and the file stops growing; a too long identity is not
        stored at all.
        """
        store = self.makeStore()
        padding = "x" * 200
        sizes = []
        for batch in range(4):
            for n in range(batch * 100, batch * 100 + 100):
                store.record_unknown_attempts(
                    f"{n:03d}{padding}", "10.0.0.5", T0, T0 + timedelta(seconds=n), 1
                )
            store = yield self.restart(store)
            sizes.append(os.path.getsize(self.path))
        self.assertEqual(MAX_UNKNOWN_CHARGERS, 100)
        self.assertEqual(
            [r.identity for r in store.load_unknown_chargers()],
            [f"{n:03d}{padding}" for n in range(399, 299, -1)],
        )
        # 300 more rows would take twice 300 identities (table and index).
        self.assertLess(sizes[-1] - sizes[0], 100 * len(padding))
        self.assertEqual(MAX_IDENTITY_LENGTH, 255)
        later = T0 + timedelta(hours=1)
        yield self.assertFailure(
            store.record_unknown_attempts("A" * 256, "10.0.0.5", later, later, 1),
            StoreError
        )
        store.record_unknown_attempts("B" * 255, "10.0.0.5", later, later, 1)
        store = yield self.restart(store)
        [latest] = store.load_unknown_chargers()[:1]
        self.assertEqual((latest.identity, latest.last_seen), ("B" * 255, later))

    @inlineCallbacks
    def test_settings_round_trip(self):
        """
        Settings keep their JSON value per (scope, key); the last write of a
        key wins, deleted ones are gone; unserialisable values fail at once.
        """
        store = self.makeStore()
        store.put_setting("CP1", "limit", 10)
        store.put_setting("CP1", "limit", 16.5)
        store.put_setting("CP1", "profile", {"kind": "Absolute", "stack": [0, 1]})
        store.put_setting("CP2", "limit", None)
        store.put_setting("CP2", "gone", True)
        yield store.delete_setting("CP2", "gone")
        self.assertRaises(TypeError, store.put_setting, "CP1", "x", object())
        store = yield self.restart(store)
        self.assertEqual(
            store.load_settings(),
            {("CP1", "limit"): 16.5,
             ("CP1", "profile"): {"kind": "Absolute", "stack": [0, 1]},
             ("CP2", "limit"): None},
        )

    @inlineCallbacks
    def test_tags_round_trip(self):
        """
        API-managed tags are stored, replaced and deleted.
        """
        store = self.makeStore()
        expiry = datetime(2030, 1, 1, tzinfo=timezone.utc)
        store.put_tag("04A1B2C3", "Accepted", expiry, "FAMILY")
        store.put_tag("DEADBEEF", "Accepted")
        store.put_tag("DEADBEEF", "Blocked")
        store.put_tag("CAFE", "Expired")
        yield store.delete_tag("CAFE")
        store = yield self.restart(store)
        self.assertEqual(
            store.load_tags(),
            [TagRecord("04A1B2C3", "Accepted", expiry, "FAMILY"),
             TagRecord("DEADBEEF", "Blocked", None, None)],
        )


class PermissionTests(StoreTestCase):
    def setUp(self):
        super().setUp()
        self.addCleanup(os.umask, os.umask(0o022))

    def assertPrivate(self, *suffixes):
        """
        The database file and its files with these suffixes are readable
        and writable by their owner only.
        """
        for suffix in ("",) + suffixes:
            mode = stat.S_IMODE(os.stat(self.path + suffix).st_mode)
            self.assertEqual(oct(mode), oct(0o600), suffix)

    @inlineCallbacks
    def test_new_database_is_private(self):
        """
        With umask 022, the database, its -wal file, and a file rebuilt
        after a deletion are all created with mode 0600.
        """
        store = self.makeStore()
        yield store.put_setting("CP1", "authorization_key", "0123456789abcdef")
        self.assertPrivate("-wal")
        os.unlink(self.path)
        yield store.put_setting("CP1", "limit", 16)
        self.assertPrivate("-wal")

    @inlineCallbacks
    def test_existing_database_is_made_private(self):
        """
        An existing database whose files others may read (and the -wal and
        -shm files another program left) is narrowed to 0600 at open.
        """
        yield self.makeStore().close()
        os.chmod(self.path, 0o644)
        db = sqlite3.connect(self.path)
        with db:
            db.execute("INSERT INTO settings VALUES ('CP1', 'limit', '6')")
        db.close()
        for suffix in ("-wal", "-shm"):
            with open(self.path + suffix, "wb"):
                pass
            os.chmod(self.path + suffix, 0o644)
        store = self.makeStore()
        self.assertPrivate("-wal", "-shm")
        self.assertEqual(store.load_settings(), {("CP1", "limit"): 6})


class DamageTests(StoreTestCase):
    def test_damaged_file_is_moved_aside_with_its_log(self):
        """
        A file that is not a database goes aside with its -wal under one
        timestamped name; the fresh file works, and one error line says
        where the old one is.
        """
        os.makedirs(os.path.dirname(self.path))
        for suffix, content in (("", b"garbage" * 1000), ("-wal", b"old log")):
            with open(self.path + suffix, "wb") as f:
                f.write(content)
        captured = self.enterContext(capturedLogs())
        store = self.makeStore()
        [old] = [name for name in os.listdir(os.path.dirname(self.path))
                 if name.startswith("state.sqlite3.corrupt-") and not name.endswith("-wal")]
        old = os.path.join(os.path.dirname(self.path), old)
        with open(old + "-wal", "rb") as f:
            self.assertEqual(f.read(), b"old log")
        [line] = store_events(captured)
        self.assertEqual(line["log_level"], LogLevel.error)
        self.assertIn(f"moved it aside to {old}", formatEvent(line))
        self.assertEqual(store.last_transaction_id(), 0)

    @inlineCallbacks
    def test_locked_file_is_not_damaged(self):
        """
        A file another program holds is refused with StoreError, as before:
        being busy says nothing about its content, so nothing moves.
        """
        yield self.makeStore().close()
        other = sqlite3.connect(self.path, isolation_level=None)
        self.addCleanup(other.close)
        other.execute("PRAGMA locking_mode = EXCLUSIVE")
        other.execute("BEGIN EXCLUSIVE")
        error = self.assertRaises(StoreError, Store(self.path, reactor, busy_timeout=0).open)
        self.assertIn("locked", str(error))
        self.assertEqual(
            [n for n in os.listdir(os.path.dirname(self.path)) if "corrupt" in n], [])


class _Child(ProcessProtocol):
    """
    Watches the crash child: C{committed} fires when it says so, C{ended}
    when it is gone.
    """

    def __init__(self):
        self.output = b""
        self.committed = Deferred()
        self.ended = Deferred()

    def outReceived(self, data):
        self.output += data
        if b"committed" in self.output and not self.committed.called:
            self.committed.callback(None)

    errReceived = outReceived

    def processEnded(self, reason):
        if not self.committed.called:
            self.committed.errback(
                AssertionError(f"child ended early: {self.output.decode()!r}")
            )
        self.ended.callback(reason.value)


class FailureTests(StoreTestCase):
    timeout = 60

    @inlineCallbacks
    def test_committed_transactions_survive_sigkill(self):
        """
        A process killed with SIGKILL in the middle of a meter value storm
        and of further inserts loses none of the transactions it had seen
        committed, and hands none of their ids out again.
        """
        os.makedirs(os.path.dirname(self.path))
        child = _Child()
        reactor.spawnProcess(
            child,
            sys.executable,
            [sys.executable, os.path.join(HERE, "store_crash_child.py"), self.path],
            env=dict(os.environ, PYTHONPATH=os.path.dirname(HERE)),
        )
        yield child.committed
        # Let the storm run a little so the kill hits a batch in flight.
        yield task.deferLater(reactor, 0.3, lambda: None)
        child.transport.signalProcess("KILL")
        ended = yield child.ended
        self.assertIsInstance(ended, ProcessTerminated)
        self.assertEqual(ended.signal, 9)
        store = self.makeStore()
        inserted = [int(n) for n in re.findall(rb"inserted (\d+)", child.output)]
        self.assertTrue(inserted)
        stored = {r.id for r in store.load_open_transactions()}
        self.assertLessEqual(set(range(1, 51)) | set(inserted), stored)
        self.assertGreaterEqual(store.last_transaction_id(), max(stored))
        self.assertEqual((yield self.inWorker(store, "PRAGMA integrity_check")), [("ok",)])

    @inlineCallbacks
    def test_read_only_database_keeps_writes_and_retries(self):
        """
        While the database refuses writes, their Deferreds wait (nothing is
        reported committed that is not), one line is logged for the whole
        outage, reads still work; once writable again the retry commits
        everything, the Deferreds fire and one line says so.
        """
        clock = task.Clock()
        store = self.makeStore(clock=clock)
        captured = self.enterContext(capturedLogs())

        def query_only(on):
            # Run in the worker: the connection belongs to that thread. As
            # root, chmod cannot make a file read-only; SQLite's own switch
            # fails the commit the same way ("attempt to write a readonly
            # database").
            store._db.execute(f"PRAGMA query_only = {on}")

        yield store._read(query_only, "ON")
        inserted = store.insert_transaction(started(1))
        yield refused(store)
        # A write made while waiting for the retry waits with it.
        waiting = store.update_meter(1, 1500.0, T0)
        for _ in range(3):
            clock.advance(60)
            yield store.query_transactions()
        self.assertEqual((inserted.called, waiting.called), (False, False))
        [line] = store_events(captured)
        self.assertEqual(line["log_level"], LogLevel.error)
        self.assertIn(self.path, formatEvent(line))
        self.assertIn("readonly", formatEvent(line))
        self.assertIn("Free disk space", formatEvent(line))

        yield store._read(query_only, "OFF")
        last = store.put_setting("CP1", "limit", 6.0)
        clock.advance(60)
        yield gatherResults([inserted, waiting, last])
        events = store_events(captured)
        self.assertEqual(len(events), 2, [formatEvent(e) for e in events])
        self.assertIn("work again", formatEvent(events[1]))
        store = yield self.restart(store)
        [rec] = store.load_open_transactions()
        self.assertEqual((rec.id, rec.last_meter_wh), (1, 1500.0))
        self.assertEqual(store.load_settings(), {("CP1", "limit"): 6.0})
        logged = store_events(captured)
        self.assertEqual(len(logged), 2, [formatEvent(e) for e in logged])

    @inlineCallbacks
    def test_close_while_failing_fails_the_waiting_writes(self):
        """
        A store closed while the database still refuses writes says how
        many are lost and fails their Deferreds, so that nobody waits
        forever.
        """
        store = self.makeStore(clock=task.Clock())
        yield store._read(lambda: store._db.execute("PRAGMA query_only = ON"))
        inserted = store.insert_transaction(started(1))
        yield refused(store)
        captured = self.enterContext(capturedLogs())
        yield store.close()
        yield self.assertFailure(inserted, StoreError)
        self.assertIn("lost", formatEvent(store_events(captured)[-1]))

    @inlineCallbacks
    def test_deleted_database_file_is_rebuilt(self):
        """
        Deleting the file while the service runs loses nothing: the next
        batch rebuilds it from the open connection and says so.
        """
        store = self.makeStore()
        yield store.insert_transaction(started(1))
        captured = self.enterContext(capturedLogs())
        os.unlink(self.path)
        yield store.insert_transaction(started(2))
        [line] = store_events(captured)
        self.assertIn("deleted", formatEvent(line))
        store = yield self.restart(store)
        self.assertEqual([r.id for r in store.load_open_transactions()], [1, 2])
        self.assertEqual(store.last_transaction_id(), 2)

    @inlineCallbacks
    def test_deleted_database_directory_is_rebuilt(self):
        """
        Deleting the database's whole directory (rm -rf) loses nothing
        either: the directory is made again and the file rebuilt from the
        open connection, the only copy left of what was committed.
        """
        store = self.makeStore()
        yield store.insert_transaction(started(1))
        shutil.rmtree(os.path.dirname(self.path))
        yield store.insert_transaction(started(2))
        store = yield self.restart(store)
        self.assertEqual([r.id for r in store.load_open_transactions()], [1, 2])

    @inlineCallbacks
    def test_failed_rebuild_keeps_the_connection(self):
        """
        A deleted file that cannot be rebuilt yet (a plain file stands
        where its directory was) is retried like any failed commit; the
        open connection is kept meanwhile, and once the way is clear the
        rebuilt file has everything.
        """
        clock = task.Clock()
        store = self.makeStore(clock=clock)
        yield store.insert_transaction(started(1))
        directory = os.path.dirname(self.path)
        shutil.rmtree(directory)
        with open(directory, "w") as f:
            f.write("in the way\n")
        captured = self.enterContext(capturedLogs())
        inserted = store.insert_transaction(started(2))
        for _ in range(3):
            clock.advance(60)
            yield store.query_transactions()
        self.assertNoResult(inserted)
        [line] = store_events(captured)
        self.assertIn("cannot commit", formatEvent(line))
        os.unlink(directory)
        clock.advance(60)
        yield inserted
        store = yield self.restart(store)
        self.assertEqual([r.id for r in store.load_open_transactions()], [1, 2])
        self.assertEqual([n for n in os.listdir(directory) if "rebuilt" in n], [])

    @inlineCallbacks
    def test_replaced_database_file_is_adopted(self):
        """
        A file replaced while the service runs (an older backup restored) is
        used as it is from the next batch on, without the old file's WAL
        replayed into it, and the ids handed out meanwhile are never handed
        out again.
        """
        store = self.makeStore()
        yield store.insert_transaction(started(1))

        def backup():
            copy = sqlite3.connect(self.path + ".backup")
            try:
                store._db.backup(copy)
            finally:
                copy.close()

        yield store._read(backup)
        yield gatherResults([store.insert_transaction(started(n)) for n in (2, 3)])
        captured = self.enterContext(capturedLogs())
        os.replace(self.path + ".backup", self.path)
        yield store.put_setting("CP1", "limit", 16)
        [line] = store_events(captured)
        self.assertIn("replaced", formatEvent(line))
        store = yield self.restart(store)
        self.assertEqual([r.id for r in store.load_open_transactions()], [1])
        self.assertEqual(store.load_settings(), {("CP1", "limit"): 16})
        self.assertEqual(store.last_transaction_id(), 3)
        self.assertEqual((yield self.inWorker(store, "PRAGMA integrity_check")), [("ok",)])
