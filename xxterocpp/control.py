# -*- test-case-name: tests.test_control -*-
"""
The control model: the one domain-level API through which the KNX bridge,
the web page and the Smart Energy Manager steer charging points. Each
command turns into OCPP calls to the charger and returns its answer.

INTERFACE SKELETON: signatures and semantics are fixed; the bodies are
being written (issue "Steering chargers").
"""

import attr


class UnknownChargingPoint(LookupError):
    """
    No such charger id (or connector) in the configuration.
    """


@attr.s(frozen=True)
class CommandResult:
    """
    The outcome of a command.

    @ivar accepted: True when the charger accepted (or nothing had to be done).
    @ivar status: the charger's status word (C{"Accepted"}, C{"Rejected"},
        C{"Unlocked"}, C{"Scheduled"}, ...) or one of C{"NotConnected"}
        (charger offline), C{"Timeout"} (no answer within call_timeout),
        C{"CallError"} (the charger answered with a CALLERROR; detail has the
        code), C{"Refused"} (the central system refused: unavailable,
        reserved for another tag, no transaction to stop, ...).
    @ivar detail: a sentence for people.
    @ivar response: the decoded OCPP response (for C{send}: its JSON dict).
    """

    accepted = attr.ib()
    status = attr.ib()
    detail = attr.ib(default="")
    response = attr.ib(default=None)


class Controller:
    """
    Commands per charging point (charger id, connector).

    Every method returning a Deferred never fails it for charger-side
    problems: they come back as a L{CommandResult}. Unknown charger ids raise
    L{UnknownChargingPoint} synchronously.
    """

    def __init__(self, central, clock):
        self.central = central
        self.clock = clock

    def start(self, charger_id, connector=1, id_tag=None, smart=False):
        """
        RemoteStartTransaction with C{id_tag} (default: the point's
        remote_tag). Refused while unavailable or reserved for another tag.
        """
        raise NotImplementedError

    def stop(self, charger_id, connector=1):
        """
        RemoteStopTransaction of the running transaction.
        """
        raise NotImplementedError

    def pause(self, charger_id, connector=1):
        """
        Limit to 0 A, keeping the transaction (chargers that cannot restart
        without replugging).
        """
        raise NotImplementedError

    def resume(self, charger_id, connector=1):
        """
        Back to the limit in force before the pause.
        """
        raise NotImplementedError

    def set_limit(self, charger_id, connector, amps):
        """
        Set the current limit (A, clamped to 0 or 6..max_current, one
        decimal) with the charging-profile cascade; coalesced.
        """
        raise NotImplementedError

    def normal(self, charger_id, connector=1):
        """
        Limit back to normal_current.
        """
        raise NotImplementedError

    def fast(self, charger_id, connector=1):
        """
        Limit to max_current.
        """
        raise NotImplementedError

    def reserve(self, charger_id, connector=1, id_tag=None, expiry=None):
        """
        ReserveNow (persistent reservationId; expiry default from config).
        """
        raise NotImplementedError

    def free(self, charger_id, connector=1):
        """
        CancelReservation.
        """
        raise NotImplementedError

    def set_availability(self, charger_id, connector, available):
        """
        ChangeAvailability Operative/Inoperative (Scheduled counts as
        accepted).
        """
        raise NotImplementedError

    def unlock(self, charger_id, connector=1):
        """
        UnlockConnector.
        """
        raise NotImplementedError

    def reset(self, charger_id, hard=False):
        """
        Reset Soft (or Hard).
        """
        raise NotImplementedError

    def send(self, charger_id, action, payload):
        """
        Send any CS->CP OCPP 1.6 action with a JSON payload; the result's
        C{response} is the charger's JSON answer. A payload that does not
        validate gives C{CommandResult(False, "Invalid", reason)}.
        """
        raise NotImplementedError

    def limit(self, charger_id, connector=1):
        """
        @return: the effective current limit in force (A), or None.
        """
        raise NotImplementedError
