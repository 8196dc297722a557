"""
Tests of when the back office's queue gives a message up and how it gets
it back (docs/upstream.md#queue): a CALLERROR saying the message is wrong
makes a dead letter at once, other failures are retried for hours while the
queue behind is thinned, and the installer queues dead letters again
(L{xxterocpp.upstream.outbox.Outbox.requeue}, C{POST
/api/chargers/{id}/upstream/requeue}). Against the in-memory back office on
a fake clock, and on a real state database.
"""

import json
import os
from datetime import datetime, timezone

from twisted.internet import defer, reactor, task
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from tests.test_control import ScriptedCharger
from tests.test_storage_faults import fill_up, mount
from tests.test_upstream_attacks import RealStoreTestCase, stop_payload
from tests.test_upstream_backoffice import eventually
from tests.test_web_routes import RoutesTestCase
from tests.upstream_memory import UpstreamTestCase
from xxterocpp.ocpp import messages as m
from xxterocpp.store.upstream import DeadLetterRecord, UpstreamStore
from xxterocpp.upstream import delivery, outbox
from xxterocpp.web.api import web_site

#: A 2.0.1 spelling the back office may send, read as FormationViolation.
FORMAT_VIOLATION = "FormatViolation"


def meter(tx, at, value):
    return {"connectorId": 1, "transactionId": tx, "meterValue": [
        {"timestamp": at, "sampledValue": [{"value": str(value)}]}]}


def minutes(n):
    """
    @return: the ISO time C{n} minutes after the sessions' start.
    """
    return f"2030-06-01T{12 + n // 60:02d}:{n % 60:02d}:00Z"


class DeadLetterTestCase(UpstreamTestCase):

    def dead(self):
        """
        @return: C{(action, transaction id)} of the dead letters kept.
        """
        return [(r.action, r.transaction_id) for _, r in sorted(self.tables.dead.items())]

    def delivered(self):
        """
        @return: the transaction messages the back office got, with its ids.
        """
        return [(a, p.get("transactionId")) for a, p in self.office.calls
                if a in outbox.QUEUED_ACTIONS]


class PolicyTests(DeadLetterTestCase):
    """
    Which failures give a message up, and when.
    """

    def test_wrong_message_is_a_dead_letter_at_once(self):
        """
        Each code saying the message is wrong (or an action the back office
        does not take), in either spelling: one attempt, a dead letter,
        and the queue goes on at once.
        """
        self.connect()
        codes = sorted(outbox.REFUSED_FOR_GOOD) + [FORMAT_VIOLATION]
        for i, code in enumerate(codes):
            self.office.errors["StartTransaction"] = 1
            self.office.error_codes["StartTransaction"] = code
            with capturedLogs() as logged:
                tx = self.start(at=minutes(i))
                self.turns()
            self.assertEqual(self.dead()[-1], ("StartTransaction", tx))
            self.assertIn("refused for good: " + m.normalize_error_code(code),
                          self.tables.dead[max(self.tables.dead)].error)
            self.assertIn(f"the back office did not take StartTransaction", "".join(
                formatEvent(e) for e in logged))
        self.assertEqual(len(self.office.payloads("StartTransaction")), len(codes))
        self.assertEqual(self.uplink.outbox.depth, 0)
        self.assertEqual(self.upstream.status()["CP1"]["dead_letters"], len(codes))
        # The next session goes through without waiting for a retry.
        tx = self.start(at=minutes(len(codes)))
        self.assertEqual(self.uplink.outbox.remote_id(tx), 900001)

    def test_back_office_restarting_for_an_hour_loses_nothing(self):
        """
        InternalError for an hour (a back office restarting its database):
        nothing is a dead letter; once it answers, the session goes in
        order, its meter values thinned to the first, one a minute and the
        last while the queue stood still.
        """
        self.connect()
        self.office.errors["StartTransaction"] = 10 ** 6
        tx = self.start()
        for tick in range(1, 6 * 60):
            self.clock.advance(10)
            self.answer("MeterValues", meter(tx, f"2030-06-01T12:{tick // 6:02d}:"
                                                 f"{tick % 6 * 10:02d}Z", tick))
        self.answer("StopTransaction", stop_payload(tx))
        attempts = len(self.office.payloads("StartTransaction"))
        self.assertGreater(attempts, 10)
        self.assertLess(attempts, outbox.MAX_FAILURES)
        self.assertEqual(self.tables.dead, {})
        # One a minute, the first and the last: not the 359 it sent.
        self.assertLessEqual(self.uplink.outbox.depth, 1 + 60 + 1 + 1)
        self.office.errors.clear()
        self.clock.advance(delivery.RETRY[1])
        self.turns(2000)
        self.assertEqual(self.uplink.outbox.depth, 0)
        self.assertEqual(self.tables.dead, {})
        actions = [a for a, _ in self.delivered()]
        self.assertEqual(actions[:attempts + 2],
                         ["StartTransaction"] * (attempts + 1) + ["MeterValues"])
        self.assertEqual(actions[-1], "StopTransaction")
        self.assertEqual(set(actions[attempts + 1:-1]), {"MeterValues"})
        values = [int(p["meterValue"][0]["sampledValue"][0]["value"])
                  for p in self.office.payloads("MeterValues")]
        self.assertEqual(values, sorted(values))
        self.assertEqual((values[0], values[-1]), (1, 359))
        self.assertEqual({t for a, t in self.delivered()[attempts + 1:]}, {900001})

    def test_given_up_after_hours(self):
        """
        A back office that never takes the message: it becomes a dead
        letter after L{outbox.MAX_FAILURES} attempts, more than 5 hours
        after the first (the pause grows to 5 minutes).
        """
        self.connect()
        self.office.errors["StartTransaction"] = 10 ** 6
        began = self.clock.seconds()
        tx = self.start()
        while not self.tables.dead:
            self.clock.advance(delivery.RETRY[1])
            self.turns()
        self.assertEqual(len(self.office.payloads("StartTransaction")), outbox.MAX_FAILURES)
        self.assertGreater(self.clock.seconds() - began, 5 * 3600)
        self.assertEqual(self.dead(), [("StartTransaction", tx)])
        self.assertIn(f"{outbox.MAX_FAILURES} failed attempts, the last: InternalError",
                      self.tables.dead[min(self.tables.dead)].error)

    def test_unanswered_attempts_count_too(self):
        """
        No answer in time is a failed attempt like an InternalError: a back
        office that answers its heartbeats but never a StartTransaction
        gets it given up as well, not retried for ever.
        """
        self.connect()
        self.office.silent.add("StartTransaction")
        tx = self.start()
        while not self.tables.dead:
            self.clock.advance(delivery.RETRY[1])
            self.turns()
        self.assertEqual(len(self.office.payloads("StartTransaction")), outbox.MAX_FAILURES)
        self.assertEqual(self.dead(), [("StartTransaction", tx)])
        self.assertIn("no answer within the call timeout",
                      self.tables.dead[min(self.tables.dead)].error)

    def test_answer_without_transaction_id_is_retried(self):
        """
        A StartTransaction answer without a transactionId is the back
        office's fault, not the message's: retried, and taken once it
        gives one.
        """
        self.connect()
        self.office.silent.add("StartTransaction")
        tx = self.start()
        for attempt in range(2):
            ours = self.link._ours
            ours.text_received(json.dumps([3, ours._outstanding[0],
                                           {"idTagInfo": {"status": "Accepted"}}]))
            self.turns()
            self.assertIsNone(self.uplink.outbox.remote_id(tx))
            if attempt == 1:
                self.office.silent.clear()
            self.clock.advance(delivery.RETRY[1])
            self.turns()
        self.assertEqual(len(self.office.payloads("StartTransaction")), 3)
        self.assertEqual(self.tables.dead, {})
        self.assertEqual(self.uplink.outbox.remote_id(tx), 900001)


class ThinningTests(DeadLetterTestCase):
    """
    MeterValues thinned while the queue stands still never replace one the
    back office may have got.
    """

    def test_late_answer_to_a_thinned_message(self):
        """
        The latest value so far (b) goes out when the back office comes
        back, gets no answer in time, and c comes while it waits for its
        retry; b's late answer takes b, and c still goes.
        """
        held = []
        dispatch = self.office._dispatch

        def slow(action, request):
            response = dispatch(action, request)
            if action == "MeterValues" and request.meter_value[0].sampled_value[0].value == "b":
                d = defer.Deferred()
                held.append((d, response))
                return d
            return response

        self.office._dispatch = slow
        self.connect()
        self.link.drop("gone")
        tx = self.start()
        self.answer("MeterValues", meter(tx, minutes(1), "a"))
        self.answer("MeterValues", meter(tx, "2030-06-01T12:01:10Z", "b"))
        self.assertEqual(self.uplink.outbox.depth, 3)
        self.link.connect()
        self.turns()
        self.assertEqual(len(held), 1)
        self.clock.advance(30)
        self.turns()
        self.assertTrue(self.uplink.delivery.stalled)
        self.answer("MeterValues", meter(tx, "2030-06-01T12:01:20Z", "c"))
        d, response = held[0]
        d.callback(response)
        self.turns()
        self.clock.advance(delivery.RETRY[1])
        self.turns()
        values = [p["meterValue"][0]["sampledValue"][0]["value"]
                  for p in self.office.payloads("MeterValues")]
        self.assertEqual(values, ["a", "b", "c"])
        self.assertEqual(self.uplink.outbox.depth, 0)


class RequeueTests(DeadLetterTestCase):
    """
    Dead letters queued again by the installer.
    """

    def requeue(self):
        return self.successResultOf(self.upstream.requeue("CP1"))

    def test_queued_again_in_their_order(self):
        """
        A session refused for good (its start, and so its stop), then the
        back office away while another starts: queued again, the old
        session goes first, in order, then the new one; nothing is dead
        any more.
        """
        self.connect()
        self.office.errors["StartTransaction"] = 1
        self.office.error_codes["StartTransaction"] = m.PROPERTY_CONSTRAINT_VIOLATION
        first = self.start()
        self.answer("StopTransaction", stop_payload(first))
        self.assertEqual(self.dead(), [("StartTransaction", first),
                                       ("StopTransaction", first)])
        self.link.drop("gone")
        second = self.start(at="2030-06-01T13:00:00Z")
        self.office.calls.clear()
        with capturedLogs() as logged:
            self.assertEqual(self.requeue(), (2, 0))
        self.assertIn("CP1: 2 dead letters queued again for the back office",
                      [formatEvent(e) for e in logged])
        self.assertEqual([(m.action, m.transaction_id) for m in self.uplink.outbox.messages],
                         [("StartTransaction", first), ("StopTransaction", first),
                          ("StartTransaction", second)])
        self.assertEqual([(r.action, r.failures) for _, r in sorted(self.tables.queue.items())],
                         [("StartTransaction", 0), ("StopTransaction", 0),
                          ("StartTransaction", 0)])
        status = self.upstream.status()["CP1"]
        self.assertEqual((status["queue_depth"], status["dead_letters"],
                          status["recent_dead_letters"]), (3, 0, []))
        self.link.connect()
        self.turns(200)
        self.assertEqual(self.delivered(), [("StartTransaction", None),
                                            ("StopTransaction", 900001),
                                            ("StartTransaction", None)])
        self.assertEqual((self.uplink.outbox.remote_id(first),
                          self.uplink.outbox.remote_id(second)), (900001, 900002))
        self.assertEqual((self.tables.queue, self.tables.dead), ({}, {}))

    def test_sent_at_once_when_connected(self):
        """
        With the back office there, the dead letters go out at once, not
        after the pause of an earlier failure.
        """
        self.connect()
        self.office.errors["StartTransaction"] = outbox.MAX_FAILURES
        tx = self.start()
        while not self.tables.dead:
            self.clock.advance(delivery.RETRY[1])
            self.turns()
        self.assertEqual(self.requeue(), (1, 0))
        self.turns()
        self.assertEqual(self.uplink.outbox.remote_id(tx), 900001)

    def test_survives_a_restart(self):
        self.connect()
        self.office.errors["StartTransaction"] = 1
        self.office.error_codes["StartTransaction"] = m.NOT_SUPPORTED
        tx = self.start()
        self.link.drop("gone")
        self.assertEqual(self.requeue(), (1, 0))
        self.shutdown()
        self.build()
        self.assertEqual([(m.action, m.transaction_id) for m in self.uplink.outbox.messages],
                         [("StartTransaction", tx)])
        self.office.calls.clear()
        self.connect(boot=False)
        self.assertEqual(self.delivered(), [("StartTransaction", None)])
        self.assertEqual(self.uplink.outbox.remote_id(tx), 900001)

    def test_nothing_to_queue_again(self):
        self.connect()
        self.assertEqual(self.requeue(), (0, 0))
        self.assertRaises(KeyError, self.upstream.requeue, "OTHER")

    def test_a_batch_at_a_time(self):
        """
        At most L{outbox.REQUEUE_BATCH} per request, the oldest first; the
        answer says how many are left.
        """
        self.patch(outbox, "REQUEUE_BATCH", 2)
        self.connect()
        self.link.drop("gone")
        for seq in (11, 12, 13):
            self.tables.dead[seq] = DeadLetterRecord(
                seq, "CP1", "MeterValues", None, {}, self.central.now(), self.central.now(),
                "refused for good: NotImplemented")
        self.shutdown()
        self.build()
        self.assertEqual(self.requeue(), (2, 1))
        self.assertEqual([m.seq for m in self.uplink.outbox.messages], [11, 12])
        self.assertEqual(self.requeue(), (1, 0))
        self.assertEqual([m.seq for m in self.uplink.outbox.messages], [11, 12, 13])

    def test_late_answer_to_a_message_behind_the_dead_letters(self):
        """
        A message times out, dead letters are queued before it and one of
        them goes out, then the late answer to the first comes: it is
        taken (the message is not sent a second time), and so is the
        dead letter's answer.
        """
        held = []
        dispatch = self.office._dispatch

        def slow(action, request):
            response = dispatch(action, request)
            if action != "StartTransaction":
                return response
            d = defer.Deferred()
            held.append((d, response))
            return d

        self.office._dispatch = slow
        self.connect()
        self.office.errors["StartTransaction"] = 1
        self.office.error_codes["StartTransaction"] = m.NOT_IMPLEMENTED
        first = self.start()
        second = self.start(at="2030-06-01T13:00:00Z")
        self.clock.advance(30)
        self.turns()
        self.assertEqual(self.requeue(), (1, 0))
        self.turns()
        self.assertEqual(len(held), 2)
        with capturedLogs() as logged:
            for d, response in held:
                d.callback(response)
                self.turns()
        self.assertEqual(self.uplink.outbox.depth, 0)
        self.assertEqual((self.uplink.outbox.remote_id(first),
                          self.uplink.outbox.remote_id(second)), (900002, 900001))
        self.assertEqual(len(self.office.payloads("StartTransaction")), 3)
        self.assertEqual([formatEvent(e) for e in logged if "twice" in formatEvent(e)], [])


class RealStoreRequeueTests(RealStoreTestCase):
    """
    Dead letters in the state database, queued again and kept across a
    restart.
    """

    @defer.inlineCallbacks
    def test_moved_back_into_the_queue(self):
        store = self.open()
        uplink = self.build(store)
        uplink.link.up = False
        ScriptedCharger(self.central, reactor)
        yield self.send("BootNotification", {"chargePointVendor": "Acme",
                                             "chargePointModel": "Wallbox 11"})
        start = yield self.send("StartTransaction", {
            "connectorId": 1, "idTag": "GOOD", "meterStart": 1000,
            "timestamp": "2030-06-01T12:00:00Z"})
        tx = start["transactionId"]
        yield self.send("StopTransaction", stop_payload(tx))
        for message in list(uplink.outbox.messages):
            uplink.outbox.failed(message, "FormationViolation: no", for_good=True)
        self.assertEqual(len((yield self.rows(store, "upstream_dead_letters"))), 2)
        first, second = yield defer.gatherResults([self.upstream.requeue("CP1"),
                                                   self.upstream.requeue("CP1")])
        # The second came while the first was under way.
        self.assertEqual((first, second), ((2, 0), (None, 2)))
        self.assertEqual((yield self.rows(store, "upstream_dead_letters")), [])
        rows = yield self.rows(store, "upstream_queue")
        self.assertEqual([(r[2], r[3], r[6], r[7]) for r in rows],
                         [("StartTransaction", tx, 0, "refused for good: FormationViolation: no"),
                          ("StopTransaction", tx, 0, "refused for good: FormationViolation: no")])
        self.upstream.stopService()
        yield store.close()
        store = self.open()
        uplink = self.build(store)
        self.assertEqual([m.action for m in uplink.outbox.messages],
                         ["StartTransaction", "StopTransaction"])
        self.assertEqual(uplink.outbox.dead_letter_count, 0)
        ScriptedCharger(self.central, reactor)
        yield eventually(lambda: uplink.outbox.depth == 0)
        self.assertEqual([a for a in self.office.actions() if a in outbox.QUEUED_ACTIONS],
                         ["StartTransaction", "StopTransaction"])
        self.assertEqual(self.office.payloads("StopTransaction")[0]["transactionId"], 900001)
        tables = UpstreamStore(store)
        self.assertEqual((yield tables.dead_letters("CP1", 10)), [])


class LargeDeadLettersTests(RealStoreTestCase):
    """
    Dead letters of large MeterValues (a charger may send 64 KiB ones).
    """

    @defer.inlineCallbacks
    def test_queued_again_by_their_bytes(self):
        """
        50 dead MeterValues of some 70 kB: a re-queue takes as many as fit
        in L{outbox.REQUEUE_BYTES} (it took all 50 at once, and a thousand
        of them held 320 MB), the next the following ones, until all are
        queued, in their order.
        """
        store = self.open()
        tables = UpstreamStore(store)
        now = datetime(2030, 6, 1, tzinfo=timezone.utc)
        payload = meter(5, "2030-06-01T12:00:00Z", 1)
        payload["meterValue"][0]["sampledValue"] *= 4000
        size = len(json.dumps(payload).encode())
        self.assertGreater(size, 60_000)
        for seq in range(1, 51):
            tables.dead_letter(DeadLetterRecord(seq, "CP1", "MeterValues", 5, payload, now,
                                                now, "refused for good: FormationViolation"))
        yield store.close()
        store = self.open()
        uplink = self.build(store)
        uplink.link.up = False
        per_request = -(-outbox.REQUEUE_BYTES // size)
        self.assertLess(per_request, 50)
        answers = []
        while not answers or answers[-1][1]:
            answers.append((yield self.upstream.requeue("CP1")))
        self.assertEqual(answers[0], (per_request, 50 - per_request))
        self.assertEqual(sum(n for n, _ in answers), 50)
        self.assertEqual([m.seq for m in uplink.outbox.messages], list(range(1, 51)))
        self.assertEqual((yield self.rows(store, "upstream_dead_letters")), [])


class FullDiskRequeueTests(RealStoreTestCase):
    """
    Dead letters queued again while the state database cannot commit (a
    tmpfs of its own, filled up).
    """

    @defer.inlineCallbacks
    def setUp(self):
        super().setUp()
        self.mount = os.path.abspath(self.mktemp())
        os.makedirs(self.mount)
        yield mount(self, "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", self.mount)
        self.path = os.path.join(self.mount, "state.sqlite3")

    @defer.inlineCallbacks
    def test_queued_again_twice_while_commits_fail(self):
        """
        A StartTransaction refused for good; the disk fills up; it is
        queued again, and the back office takes it at once. Its move back
        to the queue is not committed: the file still has it as a dead
        letter. A second re-queue finds none to queue (it sent the start a
        second time: a second session at the back office, one per click).
        Once there is room, the file has neither the dead letter nor the
        queued row.
        """
        store = self.open()
        uplink = self.build(store)
        ScriptedCharger(self.central, reactor)
        yield self.send("BootNotification", {"chargePointVendor": "Acme",
                                             "chargePointModel": "Wallbox 11"})
        self.office.errors["StartTransaction"] = 1
        self.office.error_codes["StartTransaction"] = m.NOT_IMPLEMENTED
        start = yield self.send("StartTransaction", {
            "connectorId": 1, "idTag": "GOOD", "meterStart": 1000,
            "timestamp": "2030-06-01T12:00:00Z"})
        yield eventually(lambda: uplink.outbox.dead_letter_count == 1)
        filler = fill_up(self.mount)
        for n in range(100):
            if store._batches._failing:
                break
            store.put_setting("test", f"filler {n}", "x" * 1000)
            yield task.deferLater(reactor, 0.02, lambda: None)
        self.assertTrue(store._batches._failing)
        self.assertEqual((yield self.upstream.requeue("CP1")), (1, 0))
        yield eventually(lambda: uplink.outbox.depth == 0)
        self.assertEqual((yield self.upstream.requeue("CP1")), (0, 0))
        yield task.deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(len(self.office.payloads("StartTransaction")), 2)
        self.assertEqual(uplink.outbox.remote_id(start["transactionId"]), 900001)
        os.unlink(filler)
        yield eventually(lambda: not store._batches._failing and not store._batches._pending)
        self.assertEqual((yield self.rows(store, "upstream_dead_letters")), [])
        self.assertEqual((yield self.rows(store, "upstream_queue")), [])


class RequeueRouteTests(DeadLetterTestCase):
    """
    C{POST /api/chargers/{id}/upstream/requeue}.
    """

    request = RoutesTestCase.request

    def setUp(self):
        super().setUp()
        self.site = web_site(self.central, self.controller, self.store, lambda: None,
                             self.clock, upstream=lambda: self.upstream)

    def test_requeue(self):
        self.connect()
        self.office.errors["StartTransaction"] = 1
        self.office.error_codes["StartTransaction"] = m.TYPE_CONSTRAINT_VIOLATION
        tx = self.start()
        self.assertEqual(self.upstream.status()["CP1"]["dead_letters"], 1)
        response = self.request("POST", "/api/chargers/CP1/upstream/requeue")
        self.assertEqual(response.code, 200, response.body)
        self.assertEqual(response.json, {"charger_id": "CP1", "requeued": 1, "dead_letters": 0})
        self.turns()
        self.assertEqual(self.uplink.outbox.remote_id(tx), 900001)

    def test_no_back_office(self):
        response = self.request("POST", "/api/chargers/OTHER/upstream/requeue")
        self.assertEqual(response.code, 404, response.body)
        self.assertIn("OTHER has no queue for a back office", response.json["error"])
        response = self.request("GET", "/api/chargers/CP1/upstream/requeue")
        self.assertEqual(response.code, 405)


class WithoutUpstreamTests(RoutesTestCase, SynchronousTestCase):

    def test_no_back_offices_at_all(self):
        response = self.request("POST", "/api/chargers/CP1/upstream/requeue")
        self.assertEqual(response.code, 404, response.body)
