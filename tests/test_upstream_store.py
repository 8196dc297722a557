"""
Tests for L{xxterocpp.store.upstream}: the back office's tables in a real
SQLite file, through the store's own batches (global reactor, as in
L{tests.test_store}).
"""

import json
import sqlite3
from datetime import datetime, timedelta, timezone

import attr
from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.trial.unittest import TestCase

from xxterocpp.store import MIGRATIONS, Store, TransactionRecord
from xxterocpp.store import upstream as upstream_module
from xxterocpp.store.upstream import (
    DEAD_LETTER_BYTES, DEAD_LETTERS_KEPT, ID_MAP_KEPT, DeadLetterRecord, IdMapRecord,
    QueuedRecord, UpstreamStore)
from xxterocpp.upstream.outbox import Outbox
from xxterocpp.upstream.room import MESSAGE_OVERHEAD, Budget

T0 = datetime(2030, 6, 1, 12, 0, tzinfo=timezone.utc)


def queued(seq, action="MeterValues", charger_id="CP1", tx=1, payload=None):
    return QueuedRecord(seq, charger_id, action, tx, payload or {"seq": seq}, T0)


class UpstreamStoreTests(TestCase):
    """
    Queue, dead letters and id map survive a reopen of the file.
    """

    def setUp(self):
        self.path = self.mktemp()
        self.store = self.open()

    def open(self):
        store = Store(self.path, reactor)
        store.open()
        self.addCleanup(store.close)
        return store

    @inlineCallbacks
    def reopened(self):
        yield self.store.close()
        self.store = self.open()
        return UpstreamStore(self.store).load()

    @inlineCallbacks
    def test_migration_adds_the_tables(self):
        """
        The latest schema has the three tables.
        """
        # The service holds the file exclusively while it runs.
        yield self.store.close()
        db = sqlite3.connect(self.path)
        self.addCleanup(db.close)
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        self.assertTrue({"upstream_queue", "upstream_dead_letters",
                         "upstream_transactions"} <= names)
        self.assertEqual(db.execute("PRAGMA user_version").fetchone()[0], len(MIGRATIONS))

    @inlineCallbacks
    def test_queue_in_order(self):
        """
        Queued messages come back in order, per charger, with their payload
        as JSON text and the newer payload a replace gave.
        """
        tables = UpstreamStore(self.store)
        yield gatherResults([
            tables.enqueue(queued(1, "StartTransaction", tx=7, payload={"idTag": "A"})),
            tables.enqueue(queued(2, tx=7)),
            tables.enqueue(queued(3, charger_id="TWIN", tx=8)),
            tables.replace(queued(2, tx=7, payload={"meterValue": [{"x": 1}]})),
            tables.replace(attr.evolve(queued(1, "StartTransaction", tx=7, payload={"idTag": "A"}),
                                       failures=2, last_error="InternalError: busy")),
        ])
        state = yield self.reopened()
        # As text, parsed only when sent.
        self.assertEqual({type(r.payload) for r in state.queue}, {str})
        self.assertEqual([attr.evolve(r, payload=json.loads(r.payload)) for r in state.queue], [
            QueuedRecord(1, "CP1", "StartTransaction", 7, {"idTag": "A"}, T0, 2,
                         "InternalError: busy"),
            QueuedRecord(2, "CP1", "MeterValues", 7, {"meterValue": [{"x": 1}]}, T0),
            QueuedRecord(3, "TWIN", "MeterValues", 8, {"seq": 3}, T0)])
        self.assertEqual(state.last_seq, 3)

    @inlineCallbacks
    def test_delivered_start_maps_the_ids(self):
        """
        A delivered StartTransaction leaves the queue and its id map entry
        is in the same commit.
        """
        tables = UpstreamStore(self.store)
        yield tables.enqueue(queued(1, "StartTransaction", tx=7))
        yield tables.delivered(1, IdMapRecord(7, "CP1", 900001, "Accepted", T0))
        state = yield self.reopened()
        self.assertEqual(state.queue, [])
        self.assertEqual(state.ids, [IdMapRecord(7, "CP1", 900001, "Accepted", T0)])

    @inlineCallbacks
    def test_in_the_commit_of_the_transaction(self):
        """
        A message queued with its transaction row is committed with it
        (one batch).
        """
        tables = UpstreamStore(self.store)
        commits = self.store.commits
        yield gatherResults([
            self.store.insert_transaction(TransactionRecord(
                7, "CP1", 1, "A", T0, 0, None, "Accepted", "k")),
            tables.enqueue(queued(1, "StartTransaction", tx=7))])
        self.assertEqual(self.store.commits, commits + 1)

    @inlineCallbacks
    def test_dead_letters_kept(self):
        """
        A dead letter leaves the queue and is kept with its error; the
        highest seq counts dead letters too.
        """
        tables = UpstreamStore(self.store)
        yield tables.enqueue(queued(5, "StopTransaction"))
        yield tables.dead_letter(DeadLetterRecord(
            5, "CP1", "StopTransaction", 1, {"seq": 5}, T0, T0 + timedelta(minutes=1),
            "5 CALLERRORs"))
        state = yield self.reopened()
        self.assertEqual(state.queue, [])
        self.assertEqual(state.dead_letters, [DeadLetterRecord(
            5, "CP1", "StopTransaction", 1, {"seq": 5}, T0, T0 + timedelta(minutes=1),
            "5 CALLERRORs")])
        self.assertEqual(state.dead_letter_counts, {"CP1": 1})
        self.assertEqual(state.last_seq, 5)

    def dead(self, tables, seq, charger_id="CP1", payload=None):
        payload = payload or {"seq": seq}
        return gatherResults([
            tables.enqueue(queued(seq, "MeterValues", charger_id, payload=payload)),
            tables.dead_letter(DeadLetterRecord(seq, charger_id, "MeterValues", 1, payload, T0,
                                                T0, "refused"))])

    @inlineCallbacks
    def test_dead_letters_bounded_in_count(self):
        """
        Of a charger's dead letters the file keeps the newest
        L{DEAD_LETTERS_KEPT}; another charger's are not touched.
        """
        self.patch(upstream_module, "DEAD_LETTERS_KEPT", 30)
        tables = UpstreamStore(self.store)
        yield gatherResults([self.dead(tables, seq) for seq in range(1, 51)])
        yield self.dead(tables, 100, "TWIN")
        state = yield self.reopened()
        self.assertEqual(state.dead_letter_counts, {"CP1": 30, "TWIN": 1})
        self.assertEqual([d.seq for d in state.dead_letters if d.charger_id == "CP1"][-1], 50)
        self.assertEqual(min(d.seq for d in state.dead_letters if d.charger_id == "CP1"), 21)
        self.assertGreaterEqual(DEAD_LETTERS_KEPT, 1000)

    @inlineCallbacks
    def test_dead_letters_bounded_in_bytes(self):
        """
        Dead letters of 100 KiB: the file keeps the newest whose payloads
        take L{DEAD_LETTER_BYTES} together (and always the new one).
        """
        tables = UpstreamStore(self.store)
        big = "x" * 100 * 1024
        n = DEAD_LETTER_BYTES // len(big) + 20
        for seq in range(1, n + 1):
            yield self.dead(tables, seq, payload={"v": big})
        yield self.store.close()
        db = sqlite3.connect(self.path)
        self.addCleanup(db.close)
        ((rows, total, newest),) = db.execute(
            "SELECT count(*), sum(length(CAST(payload AS BLOB))), max(seq)"
            " FROM upstream_dead_letters").fetchall()
        self.assertLessEqual(total, DEAD_LETTER_BYTES + len(big) + 20)
        self.assertLess(rows, n - 15)
        self.assertEqual(newest, n)
        self.assertEqual(db.execute("SELECT count(*) FROM upstream_queue").fetchone()[0], 0)

    @inlineCallbacks
    def test_dropped_leaves_the_file(self):
        """
        A message dropped at the queue's cap leaves the table, also lazily.
        """
        tables = UpstreamStore(self.store)
        yield tables.enqueue(queued(1, "StartTransaction"))
        # (lazy: committed with the next commit, here the drop of 1, or at
        # the close)
        tables.enqueue(queued(2), lazy=True)
        tables.dropped(2, lazy=True)
        yield tables.dropped(1)
        state = yield self.reopened()
        self.assertEqual(state.queue, [])

    @inlineCallbacks
    def test_id_map_bounded_per_charger(self):
        """
        Only the newest L{ID_MAP_KEPT} entries of a charger are kept.
        """
        tables = UpstreamStore(self.store)
        writes = []
        for tx in range(1, ID_MAP_KEPT + 6):
            writes.append(tables.enqueue(queued(tx, "StartTransaction", tx=tx)))
            writes.append(tables.delivered(tx, IdMapRecord(tx, "CP1", 900000 + tx, "Accepted",
                                                           T0)))
        writes.append(tables.enqueue(queued(999, "StartTransaction", "TWIN", tx=999)))
        writes.append(tables.delivered(999, IdMapRecord(999, "TWIN", 1, "Accepted", T0)))
        yield gatherResults(writes)
        state = yield self.reopened()
        cp1 = [i.transaction_id for i in state.ids if i.charger_id == "CP1"]
        self.assertEqual(cp1, list(range(6, ID_MAP_KEPT + 6)))
        self.assertEqual([i.transaction_id for i in state.ids if i.charger_id == "TWIN"], [999])

    @inlineCallbacks
    def test_global_bound_in_the_file(self):
        """
        Two chargers' queues kept beyond a bound of memory for all (under
        another): restored, the oldest MeterValues of the one with the
        most queued give way, in the file too; what comes after a restart
        stays within the bound, its start never dropped.
        """
        tables = UpstreamStore(self.store)
        writes, seq = [], 0
        for charger_id, n in (("CP1", 60), ("CP2", 10)):
            seq += 1
            writes.append(tables.enqueue(queued(seq, "StartTransaction", charger_id,
                                                payload={"idTag": "A"})))
            for i in range(n):
                seq += 1
                writes.append(tables.enqueue(queued(seq, charger_id=charger_id,
                                                    payload={"n": i, "v": "x" * 100})))
        yield gatherResults(writes)
        state = yield self.reopened()
        seqs = iter(range(seq + 1, seq + 1000))
        budget = Budget(limit=20_000)
        outboxes = {}
        for charger_id in ("CP1", "CP2"):
            outbox = outboxes[charger_id] = Outbox(
                charger_id, UpstreamStore(self.store), lambda: next(seqs), lambda: T0, budget)
            outbox.restore([r for r in state.queue if r.charger_id == charger_id], [], 0, [])
        self.assertLessEqual(budget.used, 20_000)
        for i in range(5):
            outboxes["CP2"].add("MeterValues", 1, {"n": 100 + i, "v": "x" * 100})
        self.assertLessEqual(budget.used, 20_000)
        state = yield self.reopened()
        kept = {c: [r for r in state.queue if r.charger_id == c] for c in ("CP1", "CP2")}
        self.assertEqual([r.seq for r in state.queue],
                         sorted(m.seq for o in outboxes.values() for m in o.messages))
        self.assertLessEqual(sum(len(r.payload) + MESSAGE_OVERHEAD for r in state.queue),
                             20_000)
        self.assertEqual([r.action for r in kept["CP1"][:1]], ["StartTransaction"])
        self.assertEqual([r.action for r in kept["CP2"][:1]], ["StartTransaction"])
        # CP1 had the most, and has still: its oldest went, at the restart
        # and for CP2's new ones; CP2 kept all it had.
        cp1 = [json.loads(r.payload)["n"] for r in kept["CP1"][1:]]
        self.assertEqual(cp1, list(range(60 - len(cp1), 60)))
        self.assertGreater(len(cp1), 16)
        self.assertEqual([json.loads(r.payload)["n"] for r in kept["CP2"][1:]],
                         [*range(10), *range(100, 105)])

    def test_bad_payload_refused_at_once(self):
        """
        A payload that is not JSON is refused in the caller's stack.
        """
        tables = UpstreamStore(self.store)
        self.assertRaises(TypeError, tables.enqueue, queued(1, payload={"x": object()}))
