"""
Hostile and unlucky sequences against the back office adapter
(L{xxterocpp.upstream}): a back office that reuses transactionIds, answers
late, drops the connection at the worst moment, floods us with CALLs or
tries to reach what is the controller's (its keys, its profiles, its
limits); a charger that comes and goes; a queue of thousands after a
restart, a full disk, a charger taken out of the configuration. In memory
on a clock (L{tests.upstream_memory}), the link and the store on loopback
and in a real SQLite file; both stacks.
"""

import json

import attr
from twisted.internet import defer
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from tests.test_rpc import SessionHarness
from tests.test_upstream_relay import RelayTestCase, limits, profile
from tests.upstream_memory import UpstreamTestCase
from xxterocpp.ocpp import messages as m
from xxterocpp.ocpp.rpc import CallError, CallTimeout
from xxterocpp.upstream import outbox, uplink


def stop_payload(tx, meter=2000, at="2030-06-01T12:02:00Z"):
    return {"transactionId": tx, "meterStop": meter, "timestamp": at, "reason": "Local"}


class LateBackOfficeMixin:
    """
    A back office that answers the actions in C{self.delays} only after
    that many seconds (after our call timeout, say).
    """

    def delayed(self):
        self.delays = {}
        dispatch = self.office._dispatch

        def slow(action, request):
            delay = self.delays.get(action)
            if delay is None:
                return dispatch(action, request)
            d = defer.Deferred()
            self.clock.callLater(delay, lambda: d.callback(dispatch(action, request)))
            return d

        self.office._dispatch = slow


def warned(events, text):
    """
    @return: whether one of the captured C{events} is a warning whose
        text holds C{text}.
    """
    return any(e["log_level"] == LogLevel.warn and text in formatEvent(e) for e in events)


class TwoPointsTestCase(UpstreamTestCase):
    """
    CP1 with two charging points, forwarded as before.
    """

    @staticmethod
    def config(*args, **kwargs):
        config = UpstreamTestCase.config(*args, **kwargs)
        cp1 = config.chargers[0]
        return attr.evolve(config, chargers=(
            cp1, attr.evolve(cp1, connector=2)) + config.chargers[1:])


class TransactionIdTests(TwoPointsTestCase):
    """
    The back office's transactionIds, as it answers them.
    """

    def test_reused_remote_id_flagged(self):
        """
        A back office that gives a second session the transactionId of one
        still running: both are flagged (page, API) and a warning is
        logged; its RemoteStopTransaction of that id stops the newer one,
        the one it gave the id last.
        """
        self.office.tags = {"GOOD": "Accepted"}
        charger = self.connect()
        first = self.start()
        self.office.next_transaction_id = 900001
        with capturedLogs() as events:
            second = self.start(connector=2)
        self.assertEqual((self.uplink.outbox.remote_id(first),
                          self.uplink.outbox.remote_id(second)), (900001, 900001))
        sessions = self.upstream.status()["CP1"]["sessions"]
        self.assertEqual([(s["transaction_id"], s["flagged"]) for s in sessions],
                         [(first, True), (second, True)])
        self.assertTrue(warned(events, "900001"))
        stop = self.office.call(m.RemoteStopTransactionRequest(transaction_id=900001))
        self.turns()
        self.assertEqual(self.successResultOf(stop).status, "Accepted")
        self.assertEqual(charger.payloads("RemoteStopTransaction"), [{"transactionId": second}])

    def test_start_answer_without_transaction_id(self):
        """
        A StartTransaction answer without a transactionId (read leniently)
        is no answer the id map can keep: counted like a CALLERROR, the
        start stays queued (and in the tables) until it is a dead letter,
        with its stop.
        """
        self.connect()
        self.office.silent.add("StartTransaction")
        tx = self.start()
        self.answer("StopTransaction", stop_payload(tx))
        for attempt in range(outbox.MAX_FAILURES):
            ours = self.link._ours
            unique_id = ours._outstanding[0]
            ours.text_received(json.dumps([3, unique_id, {"idTagInfo": {"status": "Accepted"}}]))
            self.turns()
            self.assertIsNone(self.uplink.outbox.remote_id(tx))
            if attempt < outbox.MAX_FAILURES - 1:
                self.assertEqual([r.action for r in self.tables.queue.values()],
                                 ["StartTransaction", "StopTransaction"])
                self.clock.advance(uplink.RETRY[1])
                self.turns()
        self.assertEqual(self.tables.queue, {})
        self.assertNotIn(tx, self.tables.ids)
        self.assertEqual([(r.action, r.transaction_id) for r in self.tables.dead.values()],
                         [("StartTransaction", tx), ("StopTransaction", tx)])
        self.assertIn("no transactionId", self.tables.dead[min(self.tables.dead)].error)
        self.assertEqual(self.office.payloads("StopTransaction"), [])


class LateAnswerSessionTests(SynchronousTestCase):
    """
    L{OcppSession.call}'s C{late}: the answer that comes after the timeout.
    """

    def test_late_answer_handed_over(self):
        """
        The answer to a timed-out CALL goes to its C{late}, once, also while
        the next CALL waits for its own; once a later CALL timed out, the
        earlier one's answer is dropped.
        """
        h = SessionHarness()
        late = []
        answer = {"currentTime": "2026-01-02T03:04:05Z"}
        first = h.session.call(m.HeartbeatRequest(), late=late.append)
        first_id = h.last()[1]
        h.clock.advance(30)
        self.failureResultOf(first, CallTimeout)
        second = h.session.call(m.HeartbeatRequest())
        second_id = h.last()[1]
        h.receive([3, first_id, answer])
        h.receive([3, first_id, answer])
        self.assertEqual([type(r) for r in late], [m.HeartbeatResponse])
        h.receive([3, second_id, answer])
        self.assertIsInstance(self.successResultOf(second), m.HeartbeatResponse)
        third = h.session.call(m.HeartbeatRequest(), late=late.append)
        third_id = h.last()[1]
        h.clock.advance(30)
        fourth = h.session.call(m.HeartbeatRequest())
        h.clock.advance(30)
        h.receive([4, third_id, "InternalError", "late", {}])
        self.failureResultOf(third, CallTimeout)
        self.failureResultOf(fourth, CallTimeout)
        self.assertEqual(len(late), 1)


class LateAnswerTests(LateBackOfficeMixin, UpstreamTestCase):
    """
    A back office slower than the call timeout.
    """

    def setUp(self):
        super().setUp()
        self.delayed()

    def test_late_answer_taken(self):
        """
        The back office answers the StartTransaction after the call timeout,
        before it was sent again: its answer is taken, it is not sent a
        second time (which would be a second transaction there).
        """
        self.connect()
        self.delays["StartTransaction"] = 31
        tx = self.start()
        self.clock.advance(30)
        self.turns()
        self.clock.advance(1)
        self.turns()
        self.clock.advance(uplink.RETRY[1])
        self.turns()
        self.assertEqual(len(self.office.payloads("StartTransaction")), 1)
        self.assertEqual(self.uplink.outbox.remote_id(tx), 900001)
        self.assertEqual(self.uplink.outbox.depth, 0)

    def test_always_slower_than_the_timeout(self):
        """
        A back office that always answers after the call timeout, also after
        the StartTransaction was sent again: it gets it twice at most (one
        transaction of its own too many, logged), the first answer holds,
        and the queue goes on.
        """
        self.connect()
        self.delays["StartTransaction"] = 45
        tx = self.start()
        with capturedLogs() as events:
            for _ in range(20):
                self.clock.advance(5)
                self.turns()
            self.answer("StopTransaction", stop_payload(tx))
            for _ in range(20):
                self.clock.advance(5)
                self.turns()
        self.assertEqual(len(self.office.payloads("StartTransaction")), 2)
        self.assertEqual(self.uplink.outbox.remote_id(tx), 900001)
        self.assertEqual(self.office.payloads("StopTransaction")[0]["transactionId"], 900001)
        self.assertEqual(self.uplink.outbox.depth, 0)
        self.assertTrue(warned(events, "900002"))


class DroppedConnectionTests(UpstreamTestCase):
    """
    The back office drops the connection after it got a StartTransaction,
    before it answered.
    """

    def test_sent_again_after_the_reconnect(self):
        """
        The start is sent again on the next connection: at least once, so
        a back office that had kept the first has it twice (docs/upstream.md
        says so); the id of the answer that came is used.
        """
        self.connect()
        self.office.silent.add("StartTransaction")
        tx = self.start()
        self.assertEqual(len(self.office.payloads("StartTransaction")), 1)
        self.link.drop("dropped by the back office")
        self.office.silent.clear()
        self.link.connect()
        self.turns()
        self.assertEqual(len(self.office.payloads("StartTransaction")), 2)
        self.assertEqual(self.uplink.outbox.remote_id(tx), 900001)
