"""
Unit tests for L{xxterocpp.upstream.outbox}: one charger's queue towards
its back office, with in-memory tables.
"""

import gc
import tracemalloc
from datetime import datetime, timedelta, timezone
from itertools import count

from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from tests.upstream_memory import ForgettingTables, MemoryTables, UpstreamTestCase
from xxterocpp.store.upstream import DEAD_LETTERS_KEPT, QueuedRecord
from xxterocpp.upstream import outbox as outbox_module
from xxterocpp.upstream import room as room_module
from xxterocpp.upstream.outbox import MAX_FAILURES, MAX_QUEUED, MAX_QUEUED_BYTES, Outbox
from xxterocpp.upstream.room import MESSAGE_OVERHEAD, Budget, cost

T0 = datetime(2030, 6, 1, 12, 0, tzinfo=timezone.utc)


def meter(seconds, value=None):
    """
    A MeterValues payload sampled C{seconds} after T0.
    """
    at = (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return {"connectorId": 1, "transactionId": 7, "meterValue": [
        {"timestamp": at, "sampledValue": [{"value": str(value or seconds)}]}]}


class OutboxTests(SynchronousTestCase):

    def setUp(self):
        self.tables = MemoryTables()
        self.seq = count(1)
        self.outbox = self.make()

    def make(self):
        return Outbox("CP1", self.tables, lambda: next(self.seq), lambda: T0)

    def values(self):
        return [m.payload["meterValue"][0]["sampledValue"][0]["value"]
                for m in self.outbox.messages if m.action == "MeterValues"]

    def test_forwards_what_started_there(self):
        """
        Messages of a transaction go upstream only when its start did (or
        will), including a start that became a dead letter.
        """
        self.assertFalse(self.outbox.forwards(7))
        self.outbox.add("StartTransaction", 7, {"idTag": "A"})
        self.assertTrue(self.outbox.forwards(7))
        start = self.outbox.head()
        self.outbox.dead(start, "refused")
        self.assertTrue(self.outbox.forwards(7))
        self.outbox.add("StartTransaction", 8, {"idTag": "A"})
        self.outbox.delivered(self.outbox.head(), 900001, "Accepted")
        self.assertTrue(self.outbox.forwards(8))
        self.assertEqual((self.outbox.remote_id(8), self.outbox.local_id(900001)), (900001, 8))

    def test_stored_as_queued(self):
        """
        Each message is written to the tables when queued, and leaves them
        when delivered.
        """
        self.outbox.add("StartTransaction", 7, {"idTag": "A"})
        self.outbox.add("MeterValues", 7, meter(0))
        self.assertEqual([r.action for r in self.tables.queue.values()],
                         ["StartTransaction", "MeterValues"])
        self.outbox.delivered(self.outbox.head(), 900001, "Accepted")
        self.assertEqual([r.action for r in self.tables.queue.values()], ["MeterValues"])
        self.assertEqual(self.tables.ids[7].remote_id, 900001)

    def test_thinning(self):
        """
        Thinned: the first, one per interval, the last.
        """
        self.outbox.add("StartTransaction", 7, {})
        for seconds in (0, 10, 59, 60, 61, 130, 150):
            self.outbox.add("MeterValues", 7, meter(seconds), thin_interval=60)
        self.assertEqual(self.values(), ["0", "60", "130", "150"])
        self.assertEqual(len(self.tables.queue), 5)
        self.assertEqual(
            [r.payload["meterValue"][0]["sampledValue"][0]["value"]
             for r in self.tables.queue.values() if r.action == "MeterValues"],
            ["0", "60", "130", "150"])

    def test_no_thinning_while_connected(self):
        """
        Without an interval (the back office is there) every value is kept.
        """
        for seconds in (0, 10, 20):
            self.outbox.add("MeterValues", 7, meter(seconds))
        self.assertEqual(self.values(), ["0", "10", "20"])

    def test_thinning_stops_at_other_messages(self):
        """
        A message of the transaction after its meter values (its stop) is
        never thinned away, and values after it are kept.
        """
        self.outbox.add("MeterValues", 7, meter(0), thin_interval=60)
        self.outbox.add("MeterValues", 7, meter(10), thin_interval=60)
        self.outbox.add("StopTransaction", 7, {"transactionId": 7})
        self.outbox.add("MeterValues", 7, meter(20), thin_interval=60)
        self.assertEqual([m.action for m in self.outbox.messages],
                         ["MeterValues", "MeterValues", "StopTransaction", "MeterValues"])

    def test_thinning_per_transaction(self):
        """
        Another transaction's values do not thin this one's.
        """
        self.outbox.add("MeterValues", 7, meter(0), thin_interval=60)
        other = dict(meter(5), transactionId=8)
        self.outbox.add("MeterValues", 8, other, thin_interval=60)
        self.outbox.add("MeterValues", 7, meter(10), thin_interval=60)
        self.outbox.add("MeterValues", 7, meter(20), thin_interval=60)
        self.assertEqual([(m.transaction_id, m.payload["meterValue"][0]["sampledValue"][0]
                           ["value"]) for m in self.outbox.messages],
                         [(7, "0"), (8, "5"), (7, "20")])

    def test_failures_then_dead_letter(self):
        """
        L{MAX_FAILURES} CALLERRORs make a dead letter.
        """
        self.outbox.add("StartTransaction", 7, {})
        start = self.outbox.head()
        for _ in range(MAX_FAILURES - 1):
            self.assertFalse(self.outbox.failed(start, "InternalError"))
        self.assertEqual(self.tables.queue[start.seq].failures, MAX_FAILURES - 1)
        self.assertTrue(self.outbox.failed(start, "InternalError"))
        self.assertEqual(self.outbox.depth, 0)
        self.assertEqual(self.outbox.dead_letter_count, 1)
        self.assertEqual(list(self.tables.dead), [start.seq])

    def test_restored(self):
        """
        A new outbox takes over what the tables kept.
        """
        self.outbox.add("StartTransaction", 7, {"idTag": "A"})
        self.outbox.add("MeterValues", 7, meter(0))
        self.outbox.add("StartTransaction", 8, {"idTag": "B"})
        self.outbox.delivered(self.outbox.head(), 900001, "Accepted")
        state = self.tables.load()
        restored = self.make()
        restored.restore(state.queue, state.dead_letters, 0, state.ids)
        self.assertEqual([(m.action, m.transaction_id) for m in restored.messages],
                         [("MeterValues", 7), ("StartTransaction", 8)])
        self.assertTrue(restored.forwards(8))
        self.assertEqual(restored.remote_id(7), 900001)


class CapTests(SynchronousTestCase):
    """
    The queue of a back office that is away is capped in count and bytes
    (L{MAX_QUEUED}, L{MAX_QUEUED_BYTES}), in memory and in the tables; at
    the cap MeterValues give way first, transactions are kept, and one
    line says so (docs/upstream.md#queue).
    """

    def setUp(self):
        self.tables = MemoryTables()
        self.seq = count(1)
        self.outbox = Outbox("CP1", self.tables, lambda: next(self.seq), lambda: T0)
        self.logs = self.enterContext(capturedLogs())

    def lines(self, word):
        return [formatEvent(e) for e in self.logs if word in formatEvent(e)]

    def test_meter_values_give_way(self):
        """
        A start, then MeterValues (never thinned: each its own interval)
        beyond the cap: the count stays at the cap, the start and the
        newest values are kept, the tables hold what memory does, one line.
        """
        self.outbox.add("StartTransaction", 7, {"idTag": "A"})
        for i in range(MAX_QUEUED + 500):
            self.outbox.add("MeterValues", 7, meter(60 * i), thin_interval=60)
        self.assertEqual(self.outbox.depth, MAX_QUEUED)
        self.assertEqual(self.outbox.head().action, "StartTransaction")
        self.assertEqual(self.outbox.messages[-1].payload, meter(60 * (MAX_QUEUED + 499)))
        self.assertEqual(len(self.tables.queue), MAX_QUEUED)
        self.assertEqual(self.outbox.room.dropped, 501)
        self.assertEqual(len(self.lines("at its cap")), 1)
        self.assertTrue(self.outbox.forwards(7))

    def test_starts_only_cannot_defeat_the_cap(self):
        """
        A charger sending only StartTransactions (never thinned): beyond
        the cap they are not queued (their transactions stay local), the
        queue holds MAX_QUEUED; the stop of a queued start is still queued.
        """
        for tx in range(MAX_QUEUED + 300):
            self.outbox.add("StartTransaction", tx, {"idTag": "A", "n": tx})
        self.assertEqual(self.outbox.depth, MAX_QUEUED)
        self.assertFalse(self.outbox.forwards(MAX_QUEUED + 1))
        self.assertTrue(self.outbox.forwards(5))
        self.outbox.add("StopTransaction", 5, {"transactionId": 5, "meterStop": 10,
                                               "transactionData": [{"x": "y" * 100}]})
        self.assertEqual(self.outbox.depth, MAX_QUEUED + 1)
        stop = self.outbox.messages[-1]
        self.assertEqual(stop.payload, {"transactionId": 5, "meterStop": 10})
        self.assertEqual(len(self.tables.queue), MAX_QUEUED + 1)
        self.assertEqual(len(self.lines("at its cap")), 1)

    def test_bytes(self):
        """
        Large MeterValues (60 KiB each) are capped by their bytes long
        before their count; the bytes counted are those of the queue.
        """
        big = "9" * 60 * 1024
        self.outbox.add("StartTransaction", 7, {"idTag": "A"})
        for i in range(200):
            self.outbox.add("MeterValues", 7, meter(60 * i, big + str(i)), thin_interval=60)
        self.assertLessEqual(self.outbox.room.bytes, MAX_QUEUED_BYTES)
        self.assertLess(self.outbox.depth, 200)
        self.assertEqual(self.outbox.room.bytes, sum(m.size for m in self.outbox.messages))
        self.assertEqual(self.outbox.head().action, "StartTransaction")
        # delivered, thinned and dead letters keep the count right
        self.outbox.delivered(self.outbox.head(), 900001, "Accepted")
        self.outbox.dead(self.outbox.head(), "refused")
        self.assertEqual(self.outbox.room.bytes, sum(m.size for m in self.outbox.messages))

    def test_room_again(self):
        """
        Once delivered below the cap, a line says so with the count dropped.
        """
        self.patch(room_module, "MAX_QUEUED", 10)
        for tx in range(15):
            self.outbox.add("StartTransaction", tx, {})
        for _ in range(5):
            self.outbox.delivered(self.outbox.head(), 1, "Accepted")
        self.outbox.add("StartTransaction", 99, {})
        self.assertEqual(len(self.lines("room again")), 1)
        self.assertIn("5 messages dropped", self.lines("room again")[0])

    def test_dead_letter_count_capped(self):
        """
        The dead letters in memory are the newest 100; the count stops at
        what the tables keep, with one line.
        """
        self.patch(outbox_module, "DEAD_LETTERS_KEPT", 20)
        for tx in range(50):
            self.outbox.add("StartTransaction", tx, {})
            self.outbox.dead(self.outbox.head(), "refused")
        self.assertEqual(self.outbox.dead_letter_count, 20)
        self.assertLessEqual(len(self.outbox.dead_letters), 100)
        self.assertEqual(len(self.lines("dead letters kept")), 1)
        self.assertGreater(DEAD_LETTERS_KEPT, 20)


def sampled(seconds):
    """
    A MeterValues of five sampled values (energy, three currents, power).
    """
    payload = meter(seconds, 1000 + seconds)
    payload["meterValue"][0]["sampledValue"] = [
        {"value": str(1000 + seconds), "context": "Sample.Periodic",
         "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
        *({"value": "16.0", "measurand": "Current.Import", "phase": phase, "unit": "A"}
          for phase in ("L1", "L2", "L3")),
        {"value": "11040", "measurand": "Power.Active.Import", "unit": "W"}]
    return payload


class GlobalBoundTests(SynchronousTestCase):
    """
    All chargers' queues together stay within one L{Budget} of memory
    (L{MAX_MEMORY}); at it the oldest MeterValues of the charger with the
    most queued give way, never a head, one sent or a transaction's stop;
    one line when reached, one when below 90 % again
    (docs/upstream.md#queue).
    """

    def setUp(self):
        self.tables = MemoryTables()
        self.seq = count(1)
        self.budget = Budget(limit=20_000)
        self.logs = self.enterContext(capturedLogs())
        self.a, self.b, self.c = (
            Outbox(name, self.tables, lambda: next(self.seq), lambda: T0, self.budget)
            for name in ("A", "B", "C"))

    def lines(self, word):
        return [formatEvent(e) for e in self.logs if word in formatEvent(e)]

    def values(self, outbox):
        return [m.payload["meterValue"][0]["sampledValue"][0]["value"]
                for m in outbox.messages if m.action == "MeterValues"]

    def test_most_queued_gives_way(self):
        """
        A with 30 MeterValues (its second sent), B with 10: C's values
        beyond the bound take the room of A's oldest; B's, the heads and
        the one sent stay; the tables hold what memory does.
        """
        for outbox, tx, n in ((self.a, 1, 30), (self.b, 2, 10)):
            outbox.add("StartTransaction", tx, {"idTag": "A"})
            for i in range(n):
                outbox.add("MeterValues", tx, meter(60 * i))
        self.a.messages[1].sent = True
        self.c.add("StartTransaction", 3, {"idTag": "A"})
        i = 0
        while not self.budget.dropped:
            self.c.add("MeterValues", 3, meter(60 * i))
            i += 1
        for j in range(i, i + 5):
            self.c.add("MeterValues", 3, meter(60 * j))
        self.assertLessEqual(self.budget.used, self.budget.limit)
        self.assertEqual(self.budget.used, sum(cost(m) for o in (self.a, self.b, self.c)
                                               for m in o.messages))
        self.assertEqual(self.budget.dropped, 6)
        self.assertEqual(self.a.room.dropped, 6)
        # The sent one (0 s), then its values from the 7th on.
        self.assertEqual(self.values(self.a), [str(60 * k) for k in (0, *range(7, 30))])
        self.assertEqual(self.a.head().action, "StartTransaction")
        self.assertEqual(self.values(self.b), [str(60 * k) for k in range(10)])
        self.assertEqual(len(self.values(self.c)), i + 5)
        self.assertEqual(len(self.tables.queue), sum(o.depth for o in (self.a, self.b, self.c)))
        self.assertEqual(len(self.lines("are at their bound of memory")), 1)
        self.assertEqual(self.lines("room again"), [])

    def test_next_largest_when_none_left(self):
        """
        A charger with the most queued but no MeterValues that may go: the
        next one's give way.
        """
        for tx in range(20):
            self.a.add("StartTransaction", tx, {"idTag": "A", "n": "x" * 200})
        self.b.add("StartTransaction", 99, {"idTag": "A"})
        i = 0
        while not self.budget.dropped:
            self.b.add("MeterValues", 99, meter(60 * i))
            i += 1
        self.assertEqual(self.a.depth, 20)
        self.assertEqual(self.values(self.b), [str(60 * k) for k in range(1, i)])
        self.assertLessEqual(self.budget.used, self.budget.limit)

    def test_transactions_at_the_bound(self):
        """
        Only transactions queued: beyond the bound a new start stays local
        (not forwarded), a MeterValues is not queued, the stop of a queued
        start is queued without its transactionData; below 90 % again one
        line says so.
        """
        tx = 0
        while not self.budget.dropped:
            (self.a if tx % 2 else self.b).add("StartTransaction", tx, {"idTag": "A"})
            tx += 1
        self.assertFalse(self.b.forwards(tx - 1))
        self.c.add("StartTransaction", 1000, {"idTag": "A"})
        self.c.add("MeterValues", 1, meter(0))
        self.assertEqual(self.c.depth, 0)
        self.a.add("StopTransaction", 1, {"transactionId": 1, "meterStop": 10,
                                          "transactionData": [{"x": "y" * 100}]})
        stop = self.a.messages[-1]
        self.assertEqual(stop.payload, {"transactionId": 1, "meterStop": 10})
        self.assertEqual(len(self.lines("are at their bound of memory")), 1)
        self.assertEqual(self.budget.dropped, 3)
        while self.budget.used >= self.budget.limit * 0.9:
            self.b.delivered(self.b.head(), 1, "Accepted")
        self.b.delivered(self.b.head(), 1, "Accepted")
        self.a.add("StartTransaction", 2000, {"idTag": "A"})
        self.assertTrue(self.a.forwards(2000))
        [line] = self.lines("room again")
        self.assertIn("3 messages dropped", line)
        self.assertEqual(len(self.lines("are at their bound of memory")), 1)

    def test_restored_within_the_bound(self):
        """
        Queues restored beyond the bound (kept under another) are brought
        within it, the charger with the most queued giving way, in the
        tables too.
        """
        for tx, outbox, n in ((1, self.a, 40), (2, self.b, 5)):
            outbox.add("StartTransaction", tx, {"idTag": "A"})
            for i in range(n):
                outbox.add("MeterValues", tx, meter(60 * i))
        state = self.tables.load()
        budget = Budget(limit=12_000)
        restored = {}
        for name in ("A", "B"):
            restored[name] = Outbox(name, self.tables, lambda: next(self.seq), lambda: T0, budget)
            restored[name].restore([r for r in state.queue if r.charger_id == name], [], 0, [])
        self.assertLessEqual(budget.used, 12_000)
        self.assertEqual(self.values(restored["B"]), [str(60 * k) for k in range(5)])
        self.assertEqual(self.values(restored["A"])[-1], str(60 * 39))
        self.assertLess(restored["A"].depth, 41)
        self.assertEqual(sorted(self.tables.queue),
                         sorted(m.seq for o in restored.values() for m in o.messages))


class MemoryTests(SynchronousTestCase):
    """
    What a queued message costs in memory, by tracemalloc: within what
    the budget counts for it (L{MESSAGE_OVERHEAD}).
    """

    def test_cost_of_queued_meter_values(self):
        """
        5,000 MeterValues of five sampled values take no more memory than
        the budget counts, under 1 kB each (parsed dicts took 3.2 kB).
        """
        payloads = [sampled(60 * i) for i in range(MAX_QUEUED)]
        seq = count(1)
        budget = Budget()
        outbox = Outbox("CP1", ForgettingTables(), lambda: next(seq),
                        lambda: datetime.now(timezone.utc), budget)
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        before = tracemalloc.take_snapshot()
        for payload in payloads:
            outbox.add("MeterValues", 7, payload)
        after = tracemalloc.take_snapshot()
        traced = sum(s.size_diff for s in after.compare_to(before, "filename"))
        self.assertEqual(outbox.depth, MAX_QUEUED)
        self.assertLessEqual(traced, budget.used)
        self.assertLess(traced / MAX_QUEUED, 1000)
        self.assertEqual(budget.used, outbox.room.bytes + MAX_QUEUED * MESSAGE_OVERHEAD)


class RestartTests(UpstreamTestCase):
    """
    The queues restored by the service at its start (L{Upstream}).
    """

    def setUp(self):
        # Each test builds the service itself, from what it put in the stores.
        self.stores()

    def test_dropped_at_the_restart_let_go(self):
        """
        Messages kept beyond the bound of memory, dropped when restored, are
        not held on to afterwards by what the store loaded: the service's
        memory is within the bound after a restart too.
        """
        self.tables.enqueue(QueuedRecord(1, "CP1", "StartTransaction", 7, {"idTag": "A"},
                                         T0, 0, None))
        for i in range(40):
            self.tables.enqueue(QueuedRecord(2 + i, "CP1", "MeterValues", 7, sampled(60 * i),
                                             T0, 0, None))
        self.patch(room_module, "MAX_MEMORY", 12_000)
        self.build()
        dropped = {args[0] for name, args in self.tables.writes if name == "dropped"}
        self.assertGreater(len(dropped), 10)
        self.assertLessEqual(self.upstream._budget.used, 12_000)
        gc.collect()
        held = [o for o in gc.get_objects() if isinstance(o, QueuedRecord)]
        self.assertEqual([r.seq for r in held if r.seq in dropped], [])


class DeadLetterMemoryTests(SynchronousTestCase):
    """
    What the dead letters kept in memory cost (L{Outbox.dead_letters}).
    """

    def test_dead_letters_in_memory_without_their_payloads(self):
        """
        The dead letters kept in memory (the newest 100, for the page) hold
        no payload: 100 MeterValues of five sampled values made dead letters
        took 3.2 kB each as parsed dicts, outside the bound of memory.
        """
        tables = MemoryTables()
        seq = count(1)
        outbox = Outbox("CP1", tables, lambda: next(seq), lambda: T0, Budget())
        outbox.add("StartTransaction", 7, {"idTag": "A"})
        for i in range(100):
            outbox.add("MeterValues", 7, sampled(60 * i))
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        before = tracemalloc.take_snapshot()
        while outbox.depth > 1:
            outbox.dead(outbox.messages[1], "refused for good")
        # What the tables keep is the file's, not the outbox's memory.
        tables.dead.clear()
        tables.writes.clear()
        gc.collect()
        after = tracemalloc.take_snapshot()
        traced = sum(s.size_diff for s in after.compare_to(before, "filename"))
        self.assertEqual(len(outbox.dead_letters), 100)
        self.assertEqual(outbox.summary()["dead_letters"], 100)
        self.assertLess(traced, 100 * 500)
