# -*- test-case-name: tests.test_control -*-
"""
The way out to the chargers: every CS->CP call of the control model goes
through L{Sender}, which turns the charger's answer, a timeout, a charger
offline and a CALLERROR into a L{CommandResult}.
"""

import attr
from twisted.internet import defer
from twisted.logger import Logger

from xxterocpp.ocpp import messages as m
from xxterocpp.ocpp.rpc import CallError, CallTimeout, NotConnected, Superseded

#: The status words meaning the charger did, or will do, what was asked:
#: Scheduled (ChangeAvailability during a transaction), RebootRequired
#: (ChangeConfiguration), AcceptedCanceled (GetLog replacing an upload).
ACCEPTED = frozenset({"Accepted", "Unlocked", "Scheduled", "RebootRequired", "AcceptedCanceled"})

#: Statuses after which asking the same charger again is pointless now.
SILENT = frozenset({"Timeout", "NotConnected", "Busy"})

#: How many of our calls may wait for a charger behind the one it has not
#: answered yet; the next is refused (C{"Busy"}). A charger that takes its
#: call timeout for each call, under a KNX or web flood of commands, keeps
#: this many queued, not thousands (docs/architecture.md#bounds).
MAX_WAITING_CALLS = 16

#: The calls of which a newer one takes the place of the one still queued
#: (not sent): what the charger is to do is the newer (a KNX object written
#: on/off/on while the charger is slow), by action and what it concerns.
_KINDS = {
    "ChangeAvailability": "connector_id",
    "RemoteStartTransaction": "connector_id",
    "RemoteStopTransaction": "transaction_id",
    "UnlockConnector": "connector_id",
    "Reset": None,
}


def _kind(action, request):
    """
    @return: what a queued call of C{request} is replaced by (the same
        action for the same connector or transaction), or None.
    """
    if action not in _KINDS:
        return None
    field = _KINDS[action]
    return (action, None if field is None else getattr(request, field, None))


@attr.s(frozen=True)
class CommandResult:
    """
    The outcome of a command.

    @ivar accepted: True when the charger accepted (or nothing had to be done).
    @ivar status: the charger's status word (C{"Accepted"}, C{"Rejected"},
        C{"Unlocked"}, C{"Scheduled"}, ...) or one of C{"NotConnected"}
        (charger offline), C{"Timeout"} (no answer within call_timeout),
        C{"CallError"} (the charger answered with a CALLERROR; detail has the
        code), C{"Busy"} (L{MAX_WAITING_CALLS} wait for it already: not
        sent), C{"Superseded"} (a newer call of its kind took its place
        before it was sent), C{"Refused"} (the central system refused: unavailable,
        reserved, no transaction to stop, ...),
        C{"Invalid"} (a raw request that does not validate, or an
        AuthorizationKey that is none).
    @ivar detail: a sentence for people.
    @ivar response: the decoded OCPP response (for C{send}: its JSON dict).
    """

    accepted = attr.ib()
    status = attr.ib()
    detail = attr.ib(default="")
    response = attr.ib(default=None)


def refused(detail):
    """
    @return: a Deferred of the central system's refusal, for C{detail}.
    """
    return defer.succeed(CommandResult(False, "Refused", detail))


def done(detail):
    """
    @return: a Deferred of success without a call (nothing had to be done).
    """
    return defer.succeed(CommandResult(True, "Accepted", detail))


def invalid(detail):
    """
    @return: a Deferred of the refusal of a request that does not validate.
    """
    return defer.succeed(CommandResult(False, "Invalid", detail))


class Sender:
    """
    Sends CS->CP requests on a charger's session.

    @ivar running: False once the service stops: nothing more is sent.
    """

    log = Logger()

    def __init__(self):
        self.running = True

    def stop(self):
        """
        Send nothing more (the service stops).
        """
        self.running = False

    def connected(self, charger):
        """
        @return: whether a call to C{charger} would go out now.
        """
        return charger.session is not None and self.running

    @defer.inlineCallbacks
    def call(self, charger, request, bounded=True):
        """
        Send a request and wait for the answer.

        @param charger: the L{xxterocpp.domain.model.Charger}.
        @param request: a C{...Request} instance of L{m.ACTIONS}.
        @param bounded: False for a call that is queued even beyond
            L{MAX_WAITING_CALLS}: the service's own calls that cannot pile
            up, which a flood of commands must not turn away (the set-up
            after a boot, a few calls one after the other; a limit put in
            force, a Smart Energy Manager plan and the local list kept in
            step, each one run at a time per connector or charger:
            L{xxterocpp.control.coalesce}).
        @return: a Deferred firing with a L{CommandResult} whose C{response}
            is the decoded response message (None without an answer); it
            never fails for charger-side problems.
        """
        action = type(request).__name__[: -len("Request")]
        if not self.connected(charger):
            return CommandResult(False, "NotConnected", f"{charger.id} is not connected")
        kind = _kind(action, request)
        session = charger.session
        if bounded and session.waiting >= MAX_WAITING_CALLS and not (
                kind is not None and session.queued(kind)):
            charger.chatter(self.log, "warn", session.seconds(),
                            "{id}: {action} not sent: {n} calls wait for the charger already",
                            id=charger.id, action=action, n=session.waiting)
            return CommandResult(False, "Busy", f"{action}: {session.waiting} calls wait for"
                                 f" {charger.id} already")
        try:
            response = yield session.call(request, kind=kind)
        except Superseded as e:
            return CommandResult(False, "Superseded", f"{action}: {e}")
        except CallTimeout as e:
            return CommandResult(False, "Timeout", f"{action}: {e}")
        except NotConnected as e:
            return CommandResult(False, "NotConnected", f"{action}: {e}")
        except CallError as e:
            self.log.info("{id}: {action} answered with CALLERROR {error}", id=charger.id,
                          action=action, error=str(e))
            return CommandResult(False, "CallError", f"{action}: {e}", None)
        if not m.is_message(response) or "status" not in m.field_names(type(response)):
            return CommandResult(True, "Accepted", action, response)
        # A lenient decode leaves a missing or unknown status None.
        status = response.status or "Rejected"
        if status not in ACCEPTED:
            self.log.info("{id}: {action} {status}", id=charger.id, action=action, status=status)
        return CommandResult(status in ACCEPTED, status, f"{action}: {status}", response)

    def send(self, charger, action, payload, route):
        """
        Send any CS->CP OCPP 1.6 action with a JSON payload; the result's
        C{response} is the charger's JSON answer. A payload that does not
        validate gives C{CommandResult(False, "Invalid", reason)}.

        @param route: C{route(charger, request)} sends the decoded request:
            L{call}, or the controller's bookkeeping for requests it keeps
            books on (the AuthorizationKey).
        """
        spec = m.ACTIONS.get(action)
        if spec is None or spec.direction == m.CP_TO_CS:
            return invalid(f"{action!r} is not an action the central system sends")
        try:
            request, _ = m.decode(spec.request, payload)
        except m.ValidationError as e:
            return invalid(f"{e.code}: {e.message}")
        d = route(charger, request)
        d.addCallback(lambda r: r if r.response is None
                      else attr.evolve(r, response=m.encode(r.response)))
        return d
