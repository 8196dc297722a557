"""
The back office's queue and the flash write budget (README, "Why so few
writes"; docs/upstream.md#queue), on a real state database: MeterValues
forwarded to a back office that answers cost no commit of their own (their
row and its delivery are lazy writes that meet in memory), while
StartTransaction and StopTransaction are committed before the charger's
answer and their delivery at once; a crash loses at most the MeterValues
of the last lazy delay, never a start or a stop.

The store's lazy writes wait on a L{Clock} of their own here: they are
committed only with another commit (or when a test advances it), so what
is counted does not depend on how fast the machine is.
"""

import json
import os
import shutil

from twisted.internet import defer, reactor
from twisted.internet.task import Clock

from tests.test_control import ScriptedCharger
from tests.test_upstream_attacks import RealStoreTestCase, stop_payload
from tests.test_upstream_backoffice import eventually
from tests.upstream_memory import HeldTables, UpstreamTestCase
from xxterocpp.control import SAMPLE_INTERVAL
from xxterocpp.ocpp import messages as m
from xxterocpp.store import LAZY_WRITE_DELAY, Store

BOOT = {"chargePointVendor": "Acme", "chargePointModel": "Wallbox 11"}


def at(seconds):
    """
    @return: the ISO time C{seconds} after the sessions' start.
    """
    hours, rest = divmod(int(seconds), 3600)
    return f"2030-06-01T{12 + hours:02d}:{rest // 60:02d}:{rest % 60:02d}Z"


def meter(tx, seconds, value):
    return {"connectorId": 1, "transactionId": tx, "meterValue": [
        {"timestamp": at(seconds), "sampledValue": [{"value": str(value)}]}]}


def start_payload(seconds=0, meter_start=1000):
    return {"connectorId": 1, "idTag": "GOOD", "meterStart": meter_start,
            "timestamp": at(seconds)}


def value(payload):
    return payload["meterValue"][0]["sampledValue"][0]["value"]


class QueueWritesTestCase(RealStoreTestCase):
    """
    L{RealStoreTestCase} with the store's lazy writes on L{lazy_clock}, and
    the rows inserted into C{upstream_queue} counted in the worker thread.
    """

    def setUp(self):
        super().setUp()
        self.lazy_clock = Clock()
        self.inserted = []

    def open(self):
        store = Store(self.path, reactor, clock=self.lazy_clock)
        store.open()
        self.addCleanup(store.close)
        return store

    def count_inserts(self, store):
        """
        Count, in L{inserted}, the C{(seq, action)} of every row the store
        inserts into the queue from now on (a temporary trigger, on this
        connection only).
        """

        def install():
            db = store._worker.db
            db.create_function("queue_insert", 2, lambda seq, action: self.inserted.append(
                (seq, action)))
            db.execute("CREATE TEMP TRIGGER count_queue_inserts AFTER INSERT ON upstream_queue"
                       " BEGIN SELECT queue_insert(NEW.seq, NEW.action); END")

        return store._batches.read(install)

    @defer.inlineCallbacks
    def committed(self, store):
        """
        Wait until the writes that are not lazy are committed.
        """
        yield store._batches.read(lambda: None)
        yield eventually(lambda: store._batches._inflight is None, step=0.01)

    @defer.inlineCallbacks
    def connected(self, store):
        """
        @return: CP1's uplink, the charger connected and booted and the
            back office accepting it.
        """
        uplink = self.build(store)
        ScriptedCharger(self.central, reactor)
        yield self.send("BootNotification", BOOT)
        yield eventually(lambda: uplink.accepted, step=0.01)
        return uplink

    @defer.inlineCallbacks
    def delivered(self, uplink, action, payload):
        """
        A CALL of the charger, answered, then delivered to the back office.

        @return: the charger's answer.
        """
        answer = yield self.send(action, payload)
        yield eventually(lambda: uplink.outbox.depth == 0, step=0.01)
        return answer

    @defer.inlineCallbacks
    def crashed(self, store):
        """
        Copy the state database as a crash would leave it now: what is
        committed, not the lazy writes still in memory (the copy is made in
        the worker thread, between two commits).

        @return: the path of the copy.
        """
        copy = os.path.abspath(self.mktemp())

        def snapshot():
            for suffix in ("", "-wal"):
                if os.path.exists(store.path + suffix):
                    shutil.copyfile(store.path + suffix, copy + suffix)

        yield self.committed(store)
        yield store._batches.read(snapshot)
        return copy


class BudgetTests(QueueWritesTestCase):
    """
    What a charging hour forwarded to an answering back office costs.
    """

    @defer.inlineCallbacks
    def test_an_hour_of_meter_values_makes_no_commit(self):
        """
        An hour of MeterValues, one a minute, each delivered before the
        next: no commit, and none of their rows reaches the file; the
        session's start and stop are a commit each, and so is the delivery
        of each (the id map, and what tells that the stop arrived).
        """
        store = self.open()
        uplink = yield self.connected(store)
        yield self.count_inserts(store)
        yield self.committed(store)
        before = store.commits
        start = yield self.delivered(uplink, "StartTransaction", start_payload())
        tx = start["transactionId"]
        yield self.committed(store)
        self.assertEqual(store.commits, before + 2)
        self.assertEqual(uplink.outbox.remote_id(tx), 900001)
        hour = store.commits
        for minute in range(1, 61):
            yield self.delivered(uplink, "MeterValues", meter(tx, 60 * minute, 1000 + minute))
        yield self.committed(store)
        self.assertEqual(store.commits, hour)
        self.assertEqual([value(p) for p in self.office.payloads("MeterValues")],
                         [str(1000 + minute) for minute in range(1, 61)])
        self.assertEqual({p["transactionId"] for p in self.office.payloads("MeterValues")},
                         {900001})
        yield self.delivered(uplink, "StopTransaction", stop_payload(tx, 1060, at(3660)))
        yield self.committed(store)
        self.assertEqual(store.commits, hour + 2)
        # The stop took the lazy writes along: nothing is left to commit.
        self.assertEqual(store._batches._pending, {})
        self.lazy_clock.advance(LAZY_WRITE_DELAY)
        yield self.committed(store)
        self.assertEqual(store.commits, hour + 2)
        self.assertEqual([action for seq, action in self.inserted],
                         ["StartTransaction", "StopTransaction"])
        self.assertEqual((yield self.rows(store, "upstream_queue")), [])
        self.assertEqual([row[:3] for row in (yield self.rows(store, "upstream_transactions"))],
                         [(tx, "CP1", 900001)])

    @defer.inlineCallbacks
    def test_meter_values_answered_before_their_commit(self):
        """
        The charger's MeterValues is answered, and sent to the back office,
        while its row still waits in memory; the lazy delay commits what the
        back office has not answered yet.
        """
        store = self.open()
        uplink = yield self.connected(store)
        start = yield self.delivered(uplink, "StartTransaction", start_payload())
        tx = start["transactionId"]
        yield self.committed(store)
        yield self.count_inserts(store)
        self.office.silent.add("MeterValues")
        before = store.commits
        answer = yield self.send("MeterValues", meter(tx, 60, 1100))
        self.assertEqual(answer, {})
        yield eventually(lambda: self.office.payloads("MeterValues"), step=0.01)
        self.assertEqual(store.commits, before)
        self.assertEqual((yield self.rows(store, "upstream_queue")), [])
        self.lazy_clock.advance(LAZY_WRITE_DELAY)
        yield eventually(lambda: store.commits == before + 1, step=0.01)
        self.assertEqual([row[2] for row in (yield self.rows(store, "upstream_queue"))],
                         ["MeterValues"])
        self.assertEqual([action for seq, action in self.inserted], ["MeterValues"])

    @defer.inlineCallbacks
    def test_meter_values_refused_kept_as_dead_letter(self):
        """
        A MeterValues the back office refuses for good before its row was
        committed is a dead letter in the file all the same (from memory),
        and queued again goes to the back office and leaves the file.
        """
        store = self.open()
        uplink = yield self.connected(store)
        tx = (yield self.delivered(uplink, "StartTransaction", start_payload()))["transactionId"]
        yield self.committed(store)
        yield self.count_inserts(store)
        self.office.errors["MeterValues"] = 1
        self.office.error_codes["MeterValues"] = m.FORMATION_VIOLATION
        yield self.delivered(uplink, "MeterValues", meter(tx, 60, 1100))
        yield self.committed(store)
        self.assertEqual(self.inserted, [])
        dead = yield self.rows(store, "upstream_dead_letters")
        self.assertEqual([(row[2], row[3], row[7]) for row in dead],
                         [("MeterValues", tx, "refused for good: FormationViolation:"
                                              " injected for MeterValues")])
        self.assertEqual(value(json.loads(dead[0][4])), "1100")
        self.assertEqual((yield self.upstream.requeue("CP1")), (1, 0))
        yield eventually(lambda: uplink.outbox.depth == 0, step=0.01)
        yield self.committed(store)
        self.assertEqual([value(p) for p in self.office.payloads("MeterValues")],
                         ["1100", "1100"])
        self.assertEqual((yield self.rows(store, "upstream_dead_letters")), [])
        # Back in the file's queue (committed), its delivery lazy.
        self.assertEqual([row[2] for row in (yield self.rows(store, "upstream_queue"))],
                         ["MeterValues"])
        commits = store.commits
        self.lazy_clock.advance(LAZY_WRITE_DELAY)
        yield eventually(lambda: store.commits == commits + 1, step=0.01)
        self.assertEqual((yield self.rows(store, "upstream_queue")), [])


class CrashTests(QueueWritesTestCase):
    """
    The state database as a crash leaves it, read by a new service.
    """

    @defer.inlineCallbacks
    def restarted(self, path):
        """
        @return: CP1's uplink of a service started on the database at
            C{path}, its charger connected and its back office away.
        """
        self.upstream.stopService()
        self.path = path
        self.lazy_clock = Clock()
        store = self.open()
        uplink = self.build(store)
        uplink.link.up = False
        ScriptedCharger(self.central, reactor)
        yield self.committed(store)
        return uplink

    @defer.inlineCallbacks
    def test_loses_at_most_the_lazy_meter_values(self):
        """
        A session delivered while the back office answered, a second queued
        (and thinned) while it is away and stopped, a third started and
        sending MeterValues: the crash loses the third's MeterValues, which
        were only in memory, and nothing else; the back office then gets
        the second session and the third's start, in order, each once.
        """
        store = self.open()
        uplink = yield self.connected(store)
        first = (yield self.delivered(uplink, "StartTransaction", start_payload()))
        first = first["transactionId"]
        for minute in (1, 2):
            yield self.delivered(uplink, "MeterValues", meter(first, 60 * minute, 1000 + minute))
        yield self.delivered(uplink, "StopTransaction", stop_payload(first, 1002, at(180)))

        uplink.link.drop("gone")
        uplink.link.up = False
        second = (yield self.send("StartTransaction", start_payload(600, 2000)))["transactionId"]
        # Thinned to the first, one a sample interval and the latest: the
        # second's row is replaced, lazily, by the third's values, then the
        # fourth's (an interval after the first).
        interval = SAMPLE_INTERVAL
        for seconds, energy in ((0, 2000), (interval - 20, 2100), (interval - 10, 2200),
                                (interval + 1, 2300), (interval + 10, 2400)):
            yield self.send("MeterValues", meter(second, 600 + seconds, energy))
        yield self.send("StopTransaction", stop_payload(second, 2500, at(900)))
        third = (yield self.send("StartTransaction", start_payload(1200, 3000)))
        third = third["transactionId"]
        for minute in (1, 2, 3):
            yield self.send("MeterValues", meter(third, 1200 + 60 * minute, 3000 + minute))
        kept = [(m.action, m.transaction_id) for m in uplink.outbox.messages]
        self.assertEqual(kept[-3:], [("MeterValues", third)] * 3)
        copy = yield self.crashed(store)

        uplink = yield self.restarted(copy)
        self.assertEqual([(m.action, m.transaction_id) for m in uplink.outbox.messages],
                         kept[:-3])
        self.assertEqual([m.action for m in uplink.outbox.messages],
                         ["StartTransaction", "MeterValues", "MeterValues", "MeterValues",
                          "StopTransaction", "StartTransaction"])
        self.assertEqual([value(m.payload) for m in uplink.outbox.messages
                          if m.action == "MeterValues"], ["2000", "2300", "2400"])
        self.assertEqual(uplink.outbox.remote_id(first), 900001)
        self.assertEqual(self.central.book.get(third).running, True)
        self.assertEqual(self.central.book.get(second).running, False)
        self.office.calls.clear()
        uplink.link.up = True
        uplink.link.connect()
        yield eventually(lambda: uplink.outbox.depth == 0, step=0.01)
        self.assertEqual(
            [(a, p.get("transactionId")) for a, p in self.office.calls
             if a in ("StartTransaction", "MeterValues", "StopTransaction")],
            [("StartTransaction", None), ("MeterValues", 900002), ("MeterValues", 900002),
             ("MeterValues", 900002), ("StopTransaction", 900002), ("StartTransaction", None)])
        self.assertEqual(uplink.outbox.remote_id(third), 900003)

    @defer.inlineCallbacks
    def test_start_and_stop_answered_are_kept(self):
        """
        A crash right after the charger got the answer to its
        StartTransaction, and after its StopTransaction: each is in the
        file, queued for the back office (away).
        """
        store = self.open()
        uplink = yield self.connected(store)
        uplink.link.drop("gone")
        uplink.link.up = False
        tx = (yield self.send("StartTransaction", start_payload()))["transactionId"]
        started = yield self.crashed(store)
        yield self.send("StopTransaction", stop_payload(tx, 1500, at(600)))
        stopped = yield self.crashed(store)
        uplink = yield self.restarted(started)
        self.assertEqual([(m.action, m.transaction_id) for m in uplink.outbox.messages],
                         [("StartTransaction", tx)])
        uplink = yield self.restarted(stopped)
        self.assertEqual([(m.action, m.transaction_id) for m in uplink.outbox.messages],
                         [("StartTransaction", tx), ("StopTransaction", tx)])



class SendingTests(UpstreamTestCase):
    """
    When a queued message goes to the back office: a lazy one at once, any
    other once its commit is done.
    """

    def setUp(self):
        super().setUp()
        self.shutdown()
        self.tables = HeldTables()
        self.build()

    def test_meter_values_neither_wait_nor_overtake(self):
        """
        A MeterValues is answered and sent while its commit is still to
        come; a StartTransaction whose commit is still to come is neither
        answered nor sent, not even when a MeterValues queued behind it
        would go; once committed it goes, then the MeterValues.
        """
        self.connect()
        tx = self.start()
        self.tables.holding = True
        self.assertEqual(self.answer("MeterValues", meter(tx, 60, 1100)), {})
        self.assertEqual(self.tables.lazy, ["MeterValues"])
        self.assertEqual([value(p) for p in self.office.payloads("MeterValues")], ["1100"])
        self.office.calls.clear()
        answered = self.send("StartTransaction", dict(start_payload(120), connectorId=2))
        self.turns()
        self.assertNoResult(answered)
        second = self.uplink.outbox.messages[-1].transaction_id
        self.assertEqual(self.answer("MeterValues", meter(tx, 180, 1200)), {})
        self.assertEqual(self.office.actions(), [])
        self.tables.held.pop().callback(None)
        self.turns()
        self.assertEqual(self.successResultOf(answered)["transactionId"], second)
        self.assertEqual(self.office.actions(), ["StartTransaction", "MeterValues"])
        self.assertEqual(self.uplink.outbox.depth, 0)
