# -*- test-case-name: tests.test_control,tests.test_commands -*-
"""
The command front: L{Controller}, the one API through which the KNX bridge,
the web page and the Smart Energy Manager steer charging points. It checks
each command against the domain and hands it to the part that owns it, and
announces every command that ends not accepted (L{CommandRefused}), so each
adapter can tell again what really holds.
"""

import functools
import inspect

from xxterocpp.control.chargingprofiles import schedule_periods
from xxterocpp.control.keys import is_key_change
from xxterocpp.control.limits import clamp
from xxterocpp.control.parts import Parts
from xxterocpp.control.security import SecurityCommands
from xxterocpp.control.sender import done
from xxterocpp.domain.events import CommandRefused
from xxterocpp.ocpp import messages as m


class UnknownChargingPoint(LookupError):
    """
    No such charger id (or connector) in the configuration.
    """


def _announced(command):
    """
    A command method whose result, when not accepted, is announced as
    L{CommandRefused} (naming the method, its C{charger_id} and its
    C{connector}; connector 0 or none: the whole charger).
    """
    signature = inspect.signature(command)

    @functools.wraps(command)
    def announced(self, *args, **kwargs):
        d = command(self, *args, **kwargs)
        arguments = signature.bind(self, *args, **kwargs)
        arguments.apply_defaults()
        charger_id = arguments.arguments["charger_id"]
        connector = arguments.arguments.get("connector") or None

        def outcome(result):
            if not result.accepted:
                self.central.emit(CommandRefused(charger_id, connector, command.__name__))
            return result

        return d.addCallback(outcome)

    return announced


class Controller:
    """
    Commands per charging point (charger id, connector).

    Every method returning a Deferred never fails it for charger-side
    problems: they come back as a L{xxterocpp.control.sender.CommandResult}.
    Unknown charger ids raise L{UnknownChargingPoint} synchronously. The
    security commands of a charger are its L{security}'s.

    The composition root subscribes L{observe} to the central system's
    events, which the parts (L{xxterocpp.control.parts.Parts}) follow.

    A start, a stop or a change of availability the charger accepts is
    pending in the domain (L{xxterocpp.domain.accepted}) until the charger
    shows it did it, for as long as L{waits} allow.

    Every command that ends not accepted (refused here or by the charger,
    failed, timed out, the charger offline) is announced as
    L{CommandRefused} through the central system, whichever adapter sent it.
    """

    def __init__(self, central, clock):
        """
        @param central: the L{xxterocpp.domain.central.CentralSystem}.
        @param clock: an C{IReactorTime}.
        """
        self.central = central
        self.clock = clock
        self._parts = Parts(central, clock)
        self._sender = self._parts.sender
        self._limits = self._parts.limits
        #: The L{xxterocpp.control.remote.Waits} for what chargers accepted.
        self.waits = self._parts.waits
        #: The L{SecurityCommands}: keys, security profiles, certificates.
        self.security = SecurityCommands(self._parts, self._charger)

    @property
    def boot_wait(self):
        """
        Seconds before a never-booted charger gets
        TriggerMessage(BootNotification).
        """
        return self._parts.setup.boot_wait

    @boot_wait.setter
    def boot_wait(self, seconds):
        self._parts.setup.boot_wait = seconds

    # -- plumbing --------------------------------------------------------

    def observe(self, event):
        """
        Run the parts' handlers of a domain event, in their order (the
        composition root subscribes this to the central system).
        """
        self._parts.observe(event)

    def _point(self, charger_id, connector):
        point = self.central.config.charger(charger_id, connector)
        if point is None or charger_id not in self.central.chargers:
            raise UnknownChargingPoint(f"no charging point {charger_id!r} connector {connector}")
        return point

    def _charger(self, charger_id):
        charger = self.central.chargers.get(charger_id)
        if charger is None:
            raise UnknownChargingPoint(f"no charger {charger_id!r}")
        return charger

    def learned(self, charger_id):
        """
        @return: what the central system learned by trial about a charger
            (L{xxterocpp.control.parts.Parts.learned}).
        """
        return self._parts.learned(self._charger(charger_id).id)

    def shutdown(self):
        """
        Cancel the timers and send nothing more (the service stops).
        """
        self._parts.stop()

    # -- OCPP calls ------------------------------------------------------

    def call(self, charger_id, request):
        """
        Send any CS->CP request message and wait for the answer. A
        ChangeConfiguration of the AuthorizationKey is a key rotation
        (L{SecurityCommands.change_authorization_key}).

        @param request: a C{...Request} instance of L{m.ACTIONS}.
        @return: a Deferred firing with a L{CommandResult} whose C{response}
            is the decoded response message (None without an answer).
        """
        return self._route(self._charger(charger_id), request)

    def send(self, charger_id, action, payload):
        """
        Send any CS->CP OCPP 1.6 action with a JSON payload; the result's
        C{response} is the charger's JSON answer. A payload that does not
        validate gives C{CommandResult(False, "Invalid", reason)}. A
        ChangeConfiguration of the AuthorizationKey is a key rotation.
        """
        return self._sender.send(self._charger(charger_id), action, payload, self._route)

    def _route(self, charger, request):
        if is_key_change(request):
            return self._parts.keys.route(charger, request)
        return self._sender.call(charger, request)

    # -- commands --------------------------------------------------------

    @_announced
    def start(self, charger_id, connector=1, id_tag=None, smart=False, charging_profile=None):
        """
        RemoteStartTransaction with C{id_tag} (default: the point's
        remote_tag, or its smart_tag when C{smart}), refused while the point
        is unavailable or reserved
        (L{xxterocpp.control.remote.RemoteSessions.start}).

        @param charging_profile: optional C{ChargingProfile} (purpose
            TxProfile, no transactionId) for the new transaction; for the
            smart_tag, by default 0 A until the session is planned.
        """
        point = self._point(charger_id, connector)
        return self._parts.remote.start(self.central.chargers[charger_id], point, id_tag, smart,
                                        charging_profile)

    @_announced
    def stop(self, charger_id, connector=1):
        """
        RemoteStopTransaction of the running transaction (a connector of a
        charger with C{finishing-recovery} is watched afterwards).
        """
        self._point(charger_id, connector)
        return self._parts.remote.stop(self.central.chargers[charger_id], connector)

    @_announced
    def pause(self, charger_id, connector=1):
        """
        Limit to 0 A, keeping the transaction (chargers that cannot restart
        without replugging); a charger with C{pause-ends-session} has its
        session stopped instead, and started again by L{resume}.
        """
        return self._limits.pause(self._point(charger_id, connector))

    @_announced
    def resume(self, charger_id, connector=1):
        """
        Back to the limit in force before the pause.
        """
        return self._limits.resume(self._point(charger_id, connector))

    @_announced
    def set_limit(self, charger_id, connector, amps):
        """
        Set the current limit (A, clamped to 0 or 6..max_current, one
        decimal) with the charging-profile cascade; coalesced. It overrides
        a pause: a new value replaces whatever limit held before. While the
        Smart Energy Manager steers the point, it caps its limit
        (L{own_limit}).
        """
        return self._limits.set(self._point(charger_id, connector), amps)

    @_announced
    def normal(self, charger_id, connector=1):
        """
        Limit back to normal_current.
        """
        point = self._point(charger_id, connector)
        return self._limits.set(point, point.normal_current, "normal")

    @_announced
    def fast(self, charger_id, connector=1):
        """
        Limit to max_current.
        """
        point = self._point(charger_id, connector)
        return self._limits.set(point, point.max_current, "fast")

    def limit(self, charger_id, connector=1):
        """
        @return: the effective current limit in force (A), or None
            (L{xxterocpp.control.limits.Limits.in_force}).
        """
        return self._limits.in_force(self._point(charger_id, connector))

    def mode(self, charger_id, connector=1):
        """
        @return: the Normal/Fast mode in force, C{"normal"} or C{"fast"}
            (L{xxterocpp.control.limits.Limits.mode}), or None while no
            limit is known to be in force
            (L{xxterocpp.domain.events.ModeChanged} follows it).
        """
        return self._limits.mode(self._point(charger_id, connector))

    def own_limit(self, charger_id, connector=1):
        """
        @return: the point's own limit (A): set, normal, fast or paused
            (normal_current until one is set); it holds when the Smart
            Energy Manager does not steer the point, and caps it when it does.
        """
        return self._limits.own(self._point(charger_id, connector))

    def steer(self, charger_id, connector, amps):
        """
        The Smart Energy Manager's limit (A) for a point, instead of its own
        (L{own_limit}, never above it), until L{release}.
        """
        return self._limits.steer(self._point(charger_id, connector), amps)

    def release(self, charger_id, connector):
        """
        End the steering: the point's own limit is put in force again.
        """
        return self._limits.release(self._point(charger_id, connector))

    def observe_limits(self, observer):
        """
        Call C{observer(charger_id, connector)} when the own limit of a
        steered point changes (L{set_limit}, normal, fast, pause, resume).
        """
        self._limits.observers.append(observer)

    #: L{xxterocpp.control.limits.clamp}: C{clamp(point, amps)}.
    clamp = staticmethod(clamp)

    def set_schedule(self, charger_id, connector, transaction_id, start, periods):
        """
        Put a Smart Energy Manager plan in force: an Absolute TxProfile of
        the transaction at the charger's top stack level, from C{start} (an
        aware datetime), of C{periods} (C{(offset, amps)} pairs: seconds
        from C{start}, A per phase; the first offset is 0)
        (L{xxterocpp.control.chargingprofiles.plan_profile}).

        @return: a Deferred firing with a L{CommandResult}.
        """
        point = self._point(charger_id, connector)
        return self._limits.set_schedule(self.central.chargers[charger_id], point,
                                         transaction_id, start, periods)

    def schedule_periods(self, charger_id):
        """
        @return: how many periods one schedule (L{set_schedule}) may have
            at the charger.
        """
        return schedule_periods(self._charger(charger_id))

    @_announced
    def reserve(self, charger_id, connector=1, id_tag=None, expiry=None):
        """
        ReserveNow (persistent reservationId) until C{expiry}; without one
        the reservation holds until it is freed (L{Reservations}).

        @param id_tag: default: the point's remote_tag.
        @param expiry: an aware datetime, or None.
        """
        point = self._point(charger_id, connector)
        return self._parts.reservations.reserve(self.central.chargers[charger_id], connector,
                                                id_tag or point.remote_tag, expiry)

    @_announced
    def free(self, charger_id, connector=1):
        """
        CancelReservation of the point's reservation.
        """
        self._point(charger_id, connector)
        reservation = self.central.chargers[charger_id].connector(connector).reservation
        if reservation is None:
            return done("not reserved")
        return self._parts.reservations.free(self.central.chargers[charger_id], connector,
                                             reservation)

    @_announced
    def set_availability(self, charger_id, connector, available):
        """
        ChangeAvailability Operative/Inoperative (Scheduled counts as
        accepted, and is pending until the session ends). Connector 0 is the
        whole charger.
        """
        if connector != 0:
            self._point(charger_id, connector)
        d = self._sender.call(self._charger(charger_id), m.ChangeAvailabilityRequest(
            connector_id=connector, type="Operative" if available else "Inoperative"))
        return d.addCallback(self._availability_answered, charger_id, connector, available)

    def _availability_answered(self, result, charger_id, connector, available):
        if result.accepted:
            self.central.accepted.availability_accepted(
                charger_id, connector, available, result.status == "Scheduled",
                self.waits.availability)
        return result

    @_announced
    def unlock(self, charger_id, connector=1):
        """
        UnlockConnector.
        """
        self._point(charger_id, connector)
        return self._sender.call(self.central.chargers[charger_id],
                                 m.UnlockConnectorRequest(connector_id=connector))

    @_announced
    def reset(self, charger_id, hard=False):
        """
        Reset Soft (or Hard).
        """
        return self._sender.call(self._charger(charger_id),
                                 m.ResetRequest(type="Hard" if hard else "Soft"))

    def sync_local_list(self, charger_id):
        """
        Bring the charger's local authorization list in step with the tag
        registry (only for chargers with LocalAuthListManagement);
        coalesced.

        @return: a Deferred firing with a L{CommandResult}.
        """
        self._charger(charger_id)
        return self._parts.local_list.sync(charger_id)
