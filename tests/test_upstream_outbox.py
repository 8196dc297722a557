"""
Unit tests for L{xxterocpp.upstream.outbox}: one charger's queue towards
its back office, with in-memory tables.
"""

from datetime import datetime, timedelta, timezone
from itertools import count

from twisted.trial.unittest import SynchronousTestCase

from tests.upstream_memory import MemoryTables
from xxterocpp.upstream.outbox import MAX_FAILURES, Outbox

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
