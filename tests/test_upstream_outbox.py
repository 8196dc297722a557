"""
Unit tests for L{xxterocpp.upstream.outbox}: one charger's queue towards
its back office, with in-memory tables.
"""

from datetime import datetime, timedelta, timezone
from itertools import count

from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from tests.upstream_memory import MemoryTables
from xxterocpp.store.upstream import DEAD_LETTERS_KEPT
from xxterocpp.upstream import outbox as outbox_module
from xxterocpp.upstream.outbox import MAX_FAILURES, MAX_QUEUED, MAX_QUEUED_BYTES, Outbox

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
        self.assertEqual(self.outbox.dropped, 501)
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
        self.assertLessEqual(self.outbox.bytes, MAX_QUEUED_BYTES)
        self.assertLess(self.outbox.depth, 200)
        self.assertEqual(self.outbox.bytes, sum(m.size for m in self.outbox.messages))
        self.assertEqual(self.outbox.head().action, "StartTransaction")
        # delivered, thinned and dead letters keep the count right
        self.outbox.delivered(self.outbox.head(), 900001, "Accepted")
        self.outbox.dead(self.outbox.head(), "refused")
        self.assertEqual(self.outbox.bytes, sum(m.size for m in self.outbox.messages))

    def test_room_again(self):
        """
        Once delivered below the cap, a line says so with the count dropped.
        """
        self.patch(outbox_module, "MAX_QUEUED", 10)
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
