# -*- test-case-name: tests.test_rpc,tests.test_upstream_attacks -*-
"""
The OCPP-J RPC framework (OCPP-J 1.6 §4): CALL / CALLRESULT / CALLERROR frames
over one WebSocket, independent of the WebSocket library.

An L{OcppSession} owns one conversation: it validates incoming CALLs against
the schemas of L{xxterocpp.ocpp.messages}, hands them to a dispatcher, answers
them, and sends our own CALLs one at a time (how, and how it times them
out, is L{xxterocpp.ocpp.outgoing}'s). What it does with a peer's frames
that are not right, and the log lines about them, is
L{xxterocpp.ocpp.complaints}'s.
"""

import json

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from xxterocpp.ocpp import messages as m
from xxterocpp.ocpp.complaints import Complaints, listed, quoted
from xxterocpp.ocpp.messages import CALL, CALLERROR, CALLRESULT
# The failures of our own calls are re-exported: callers import this module.
from xxterocpp.ocpp.outgoing import CallTimeout, NotConnected, Outgoing, Superseded  # noqa: F401

#: OCPP-J §4.1.4: message ids are at most 36 characters (a GUID).
MAX_ID_LENGTH = 36

#: OCPP 1.6 §4.7, §4.10: StopTransaction and MeterValues must always be
#: acknowledged, whatever their content, or the charger retries forever or
#: (Ocular LTE, lbbrhzn/ocpp#2030) keeps charging. They are decoded leniently.
ALWAYS_ACKNOWLEDGED = frozenset({"StopTransaction", "MeterValues"})

#: The deepest nesting of arrays and objects a frame may have. OCPP 1.6's
#: deepest (a SetChargingProfile period) is 6 levels; deeper frames are
#: refused before anything (a repr, a walk over the kept frames) recurses
#: as deep.
MAX_DEPTH = 64

class CallError(Exception):
    """
    A CALLERROR: received from the peer for one of our calls, or raised by a
    handler to answer a CALL with one.

    @ivar code: the CALLERROR code (2.0.1 spellings normalised to 1.6).
    @ivar description: the error description.
    @ivar details: the errorDetails object.
    """

    def __init__(self, code, description="", details=None):
        super().__init__(code, description)
        self.code = code
        self.description = description
        self.details = details or {}

    def __str__(self):
        return f"{self.code}: {self.description}" if self.description else self.code


def nesting_depth(value):
    """
    @return: how deep lists and dicts nest in the parsed JSON C{value}
        (C{0} for a scalar), without recursion.
    """
    depth = 0
    level = [value] if type(value) in _CONTAINERS else []
    while level:
        depth += 1
        level = [item for container in level
                 for item in (container.values() if type(container) is dict else container)
                 if type(item) in _CONTAINERS]
    return depth


_CONTAINERS = frozenset({list, dict})


def _shown(text):
    # A CALLERROR's texts are only shown (log, commands' results): a lone
    # surrogate, which no UTF-8 output can take, becomes "?".
    return text.encode("utf-8", "replace").decode("utf-8") if m.has_lone_surrogate(text) else text


#: json.dumps(frame, separators=(",", ":"), ensure_ascii=False), without
#: building a new encoder for every frame.
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
#: The same encoder's spelling of one string (C, no list walk).
_dumps_str = json.encoder.encode_basestring


class OcppSession(Outgoing, Complaints):
    """
    One OCPP-J conversation; its own CALLs are its L{Outgoing}'s, what it
    says of its peer's frames that are not right is its L{Complaints}'.

    @ivar identity: the charger identity (for log lines).
    @ivar warnings: how many tolerated schema problems the charger sent.
    @ivar lenient_answers: whether the charger's answers are taken even
        when they are no JSON object, or no JSON at all (for a charger with
        C{lenient-answers}, docs/quirks.md#lenient-answers); what was
        tolerated in its answers is then logged once per connection.
    """

    log = Logger()

    def __init__(self, identity, send, dispatch, clock, call_timeout,
                 frame_observer=None, id_factory=None, close=None, accepts=m.CP_TO_CS,
                 lines=None, held=None):
        """
        @param send: called with each outgoing frame as C{str}.
        @param dispatch: C{dispatch(action, request)} returns the response
            message (or a Deferred of it) for a CALL from the charger; it may
            raise L{CallError} to answer with a CALLERROR.
        @param clock: an L{IReactorTime} for call timeouts.
        @param call_timeout: seconds to wait for each answer.
        @param frame_observer: optional C{f(direction, text)} seeing every
            frame, C{direction} being C{"in"} or C{"out"}.
        @param id_factory: optional zero-argument callable giving message ids.
        @param close: optional zero-argument callable closing the connection.
        @param accepts: the direction of the CALLs the peer may send:
            L{m.CP_TO_CS} when we are the central system (the peer is a
            charger), L{m.CS_TO_CP} when we speak as a charger to a back
            office.
        @param lines: optional C{lines(now)}, the budget of the log lines
            the peer's frames cause (L{xxterocpp.domain.model.Charger.line_due}:
            the charger's, over all its connections): None for a line held
            back, else how many were held back before it. By default the
            session has a L{LineBudget} of its own.
        @param held: optional zero-argument callable, for how many seconds
            so far the connection's frames were not read
            (L{xxterocpp.ocpp.budget.FrameBudget.held_seconds}): a call's
            timeout does not count them, its answer may wait among them.
        """
        self.identity = identity
        if lines is not None:
            self._line_due = lines
        self._held = held
        self._send = send
        self._close = close
        self._dispatch = dispatch
        self._accepts = accepts
        self._clock = clock
        self.call_timeout = call_timeout
        self._observe = frame_observer
        self._counter = 0
        # None: our own counter (a bound method of the session kept in it
        # would be a reference cycle, the session freed only by the cyclic
        # garbage collector).
        self._id_factory = id_factory
        # A list, not a deque: rarely more than one entry, and an empty
        # deque costs 600 bytes per connected charger.
        self._queue = []
        self._outstanding = None
        # (unique id, action, handler) of the last timed-out CALL that
        # takes a late answer (L{call}).
        self._late = None
        # The ids of CALLs being answered later (a dict: an empty set costs
        # 216 bytes per connected charger, an empty dict 64).
        self._handling = {}
        self.open = True
        self.warnings = 0
        self.lenient_answers = False
        self._lenience_logged = False

    def seconds(self):
        """
        @return: the time now by the session's clock (seconds).
        """
        return self._clock.seconds()

    # -- frames out (our own CALLs: Outgoing) ---------------------------

    def _write(self, frame):
        self._write_text(_dumps(frame))

    def _write_text(self, text):
        if self._observe is not None:
            self._observe("out", text)
        self._send(text)

    # -- incoming -------------------------------------------------------

    def text_received(self, text):
        """
        Handle one WebSocket text message from the charger.
        """
        if self._observe is not None:
            self._observe("in", text)
        try:
            frame = json.loads(text)
        except ValueError:
            if not (self.lenient_answers and self._salvaged(text)):
                self._malformed(text, "not valid JSON")
            return
        except RecursionError:
            # json.loads recurses once per level: a few thousand are too many.
            self._malformed(text, f"nested deeper than {MAX_DEPTH} levels")
            return
        # Only a frame with many brackets can nest too deeply; counting them
        # costs a fraction of a microsecond, the walk is left to those few.
        if text.count("[") + text.count("{") > MAX_DEPTH and nesting_depth(frame) > MAX_DEPTH:
            self._malformed(text, f"nested deeper than {MAX_DEPTH} levels")
            return
        if not isinstance(frame, list) or not frame:
            self._malformed(text, "not a JSON array")
            return
        kind = frame[0]
        if kind == CALL:
            self._call_received(frame, text)
        elif kind in (CALLRESULT, CALLERROR):
            self._answer_received(frame)
        else:
            # OCPP-J §4.1.3: an unknown MessageTypeId is ignored.
            self.complain("info", "ignored a frame of unknown type {kind}", kind=quoted(kind))

    def _call_received(self, frame, text):
        if len(frame) != 4 or not isinstance(frame[1], str) or not isinstance(frame[2], str):
            self._malformed(text, "a CALL is [2, id, action, payload]")
            return
        _, unique_id, action, payload = frame
        if len(unique_id) > MAX_ID_LENGTH:
            self._reply_error(unique_id, m.FORMATION_VIOLATION,
                              f"message id longer than {MAX_ID_LENGTH} characters")
            return
        if not unique_id.isascii() and m.has_lone_surrogate(unique_id):
            # An answer must repeat the id, and this one cannot be sent.
            self._malformed(text, "the message id is not Unicode text")
            return
        if unique_id in self._handling:
            self._reply_error(unique_id, m.PROTOCOL_ERROR,
                              "a call with this id is being handled already")
            return
        spec = m.ACTIONS.get(action)
        if spec is None:
            self._reply_error(unique_id, m.NOT_IMPLEMENTED, f"unknown action {action!r}")
            return
        if spec.direction not in (self._accepts, m.BOTH):
            self._reply_error(unique_id, m.NOT_SUPPORTED, f"{action} is sent by the "
                              + ("central system, not by a charger" if self._accepts == m.CP_TO_CS
                                 else "charger, not by a central system"))
            return
        lenient = action in ALWAYS_ACKNOWLEDGED
        try:
            request, warnings = m.decode(spec.request, payload, lenient=lenient)
        except m.ValidationError as e:
            self.complain("warn", "{action} refused with {code}: {message}", action=action,
                           code=e.code, message=e.message)
            self._reply_error(unique_id, e.code, e.message)
            return
        if warnings:
            self.warnings += len(warnings)
            self.complain("info", "{action} tolerated: {warnings}", action=action,
                           warnings=listed(warnings))
        try:
            response = self._dispatch(action, request)
        except Exception:
            self._reply_failure(Failure(), unique_id, action)
            return
        if not isinstance(response, defer.Deferred):
            # The common case, answered at once: no Deferred round trip
            # (a tenth of the CPU of a MeterValues call).
            try:
                self._reply_result(response, unique_id, spec)
            except Exception:
                self._reply_failure(Failure(), unique_id, action)
            return
        self._handling[unique_id] = None
        response.addCallbacks(self._reply_result, self._reply_failure,
                              callbackArgs=(unique_id, spec), errbackArgs=(unique_id, action))
        response.addBoth(self._handled, unique_id)

    def _handled(self, ignored, unique_id):
        self._handling.pop(unique_id, None)

    def _reply_result(self, response, unique_id, spec):
        if not self.open:
            return
        if type(response) is not spec.response:
            raise TypeError(f"handler of {spec.name} returned {type(response).__name__}")
        payload = m.encode(response)
        # What _dumps([CALLRESULT, unique_id, payload]) gives, without the
        # encoder's walk over the frame (most answers are empty).
        text = "{}" if type(payload) is dict and not payload else _dumps(payload)
        self._write_text("[3," + _dumps_str(unique_id) + "," + text + "]")

    def _reply_failure(self, failure, unique_id, action):
        if failure.check(CallError):
            self._reply_error(unique_id, failure.value.code, failure.value.description)
            return
        # Within the budget too: a fault a frame can trigger, a frame can
        # trigger a hundred times a second.
        self.complain("failure", "handling {action} failed", failure=failure, action=action)
        self._reply_error(unique_id, m.INTERNAL_ERROR, "the central system failed to process it")

    def _reply_error(self, unique_id, code, description):
        if self.open:
            self._write([CALLERROR, unique_id, code, description, {}])

    def _answer_received(self, frame):
        unique_id = frame[1] if len(frame) > 1 else None
        if self._outstanding is None or self._outstanding[0] != unique_id:
            if self._late is not None and self._late[0] == unique_id:
                _, action, late = self._late
                self._late = None
                late(self._result(action, frame))
                return
            # OCPP-J §4.1.4; typically the late answer of a timed-out call.
            self.complain("info", "dropped an answer to unknown message id {id}",
                           id=quoted(unique_id))
            return
        action, d = self._finish_outstanding()
        result = self._result(action, frame)
        self._send_next()
        if isinstance(result, Failure):
            d.errback(result)
        else:
            d.callback(result)

    def _result(self, action, frame):
        """
        @return: the decoded response of a CALLRESULT or CALLERROR C{frame}
            to a CALL of C{action}, or a L{Failure} of a L{CallError}.
        """
        spec = m.ACTIONS[action]
        if frame[0] == CALLRESULT:
            if len(frame) != 3:
                result = Failure(CallError(m.FORMATION_VIOLATION, "malformed CALLRESULT"))
            else:
                payload, taken = frame[2], []
                if self.lenient_answers and type(payload) is not dict:
                    payload, taken = {}, [f"no JSON object ({payload!r:.40}), read as {{}}"]
                try:
                    # Lenient: a charger's sloppy answer (Grizzl-E FW 5) is
                    # still better than none; missing fields become None.
                    result, warnings = m.decode(spec.response, payload, lenient=True)
                except m.ValidationError as e:
                    result = Failure(CallError(e.code, e.message))
                else:
                    if warnings or taken:
                        self._tolerated(action, taken + warnings)
        else:
            code = frame[2] if len(frame) > 2 and isinstance(frame[2], str) else m.GENERIC_ERROR
            description = frame[3] if len(frame) > 3 and isinstance(frame[3], str) else ""
            code, description = _shown(code), _shown(description)
            details = frame[4] if len(frame) > 4 and isinstance(frame[4], dict) else {}
            result = Failure(CallError(m.normalize_error_code(code), description, details))
        return result

    def close(self):
        """
        Close the connection (a newer one replaced it, or the charger was
        removed from the configuration).
        """
        if self._close is not None and self.open:
            self._close()

    def connection_lost(self):
        """
        The WebSocket is gone: fail every queued and outstanding call.
        """
        self.open = False
        self._fail_calls()
