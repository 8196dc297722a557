# -*- test-case-name: tests.test_rpc,tests.test_control -*-
"""
Our own CALLs on an L{xxterocpp.ocpp.rpc.OcppSession} (L{Outgoing}): sent
one at a time (OCPP-J §4.1.1: a side should not send a CALL before the
previous one was answered or timed out), the others waiting in a queue
where a newer one of the same kind takes the place of the older; each
sent one timed out after the call timeout, not counting the seconds the
connection's frames were not read; a late answer taken for the last one
timed out.
"""

from twisted.internet import defer

from xxterocpp.ocpp import messages as m
from xxterocpp.ocpp.messages import CALL

_REQUEST_ACTIONS = {action.request: name for name, action in m.ACTIONS.items()}


class CallTimeout(Exception):
    """
    The charger did not answer our CALL within the call timeout.
    """

    def __str__(self):
        return "no answer within the call timeout"


class NotConnected(Exception):
    """
    The connection went away before the CALL was answered (or sent).
    """

    def __str__(self):
        return "charger not connected"


class Superseded(Exception):
    """
    A newer CALL of the same kind took this one's place in the queue
    before it was sent (L{Outgoing.call}).
    """

    def __str__(self):
        return "replaced by a newer one before it was sent"


class Outgoing:
    """
    The part of an L{xxterocpp.ocpp.rpc.OcppSession} that sends our own
    CALLs; its state is the session's (set in its C{__init__}: C{_queue},
    the waiting calls; C{_outstanding}, the one sent; C{_late}; C{_clock},
    C{call_timeout}, C{_held}, C{_id_factory}, C{_counter}, C{open}), as
    are the frames it writes and its log lines (C{log}, C{identity}). The
    answers come from the session's C{_answer_received}.
    """

    __slots__ = ()

    def _next_id(self):
        self._counter += 1
        return str(self._counter)

    @property
    def waiting(self):
        """
        How many of our CALLs wait behind the outstanding one.
        """
        return len(self._queue)

    def queued(self, kind):
        """
        @return: whether a CALL of C{kind} waits in the queue (not sent).
        """
        return any(queued[4] == kind for queued in self._queue)

    def call(self, request, late=None, kind=None):
        """
        Send a CALL (queued behind the outstanding one).

        @param request: a C{...Request} message instance.
        @param late: optional C{late(result)}, called with the decoded
            response (or a L{Failure} of a L{xxterocpp.ocpp.rpc.CallError})
            when the answer comes after the call timed out, while no later
            CALL timed out waiting for one of its own (a peer slower than
            the timeout).
        @param kind: optional hashable: a CALL of the same C{kind} still
            queued (not sent) gives way to this one, in its place; its
            Deferred fails with L{Superseded}.
        @return: a Deferred firing with the decoded response message, or
            failing with L{xxterocpp.ocpp.rpc.CallError}, L{CallTimeout},
            L{NotConnected} or L{Superseded}.
        """
        action = _REQUEST_ACTIONS[type(request)]
        d = defer.Deferred()
        if not self.open:
            d.errback(NotConnected())
            return d
        entry = (action, request, d, late, kind)
        if kind is not None:
            for i, queued in enumerate(self._queue):
                if queued[4] == kind:
                    self._queue[i] = entry
                    queued[2].errback(Superseded())
                    return d
        self._queue.append(entry)
        self._send_next()
        return d

    def _send_next(self):
        if self._outstanding is not None or not self._queue or not self.open:
            return
        action, request, d, late, _ = self._queue.pop(0)
        unique_id = self._next_id() if self._id_factory is None else self._id_factory()
        timer = self._clock.callLater(self.call_timeout, self._timed_out, unique_id)
        held = self._held() if self._held is not None else 0.0
        self._outstanding = (unique_id, action, d, timer, late, held)
        self._write([CALL, unique_id, action, m.encode(request)])

    def _finish_outstanding(self):
        unique_id, action, d, timer, late, held = self._outstanding
        self._outstanding = None
        if timer.active():
            timer.cancel()
        return action, d

    def _timed_out(self, unique_id):
        if self._outstanding is None or self._outstanding[0] != unique_id:
            return
        if self._held is not None:
            # The connection's frames were not read for some of the wait
            # (it sent more than its frame budget): the answer may be among
            # them. The wait is made longer by as much; a connection held
            # for long is closed (FLOOD_SECONDS), failing the call.
            held = self._held()
            longer = held - self._outstanding[5]
            if longer > 0:
                unique_id, action, d, timer, late, _ = self._outstanding
                timer = self._clock.callLater(longer, self._timed_out, unique_id)
                self._outstanding = (unique_id, action, d, timer, late, held)
                return
        late = self._outstanding[4]
        action, d = self._finish_outstanding()
        self._late = None if late is None else (unique_id, action, late)
        self.log.warn("{identity}: {action} got no answer within {timeout} s",
                      identity=self.identity, action=action, timeout=self.call_timeout)
        self._send_next()
        d.errback(CallTimeout())

    def _fail_calls(self):
        """
        Fail every queued and outstanding call with L{NotConnected} (the
        connection is gone).
        """
        self._late = None
        pending = []
        if self._outstanding is not None:
            pending.append(self._finish_outstanding()[1])
        while self._queue:
            pending.append(self._queue.pop(0)[2])
        for d in pending:
            d.errback(NotConnected())
