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

import attr

from xxterocpp.control.certificates import Certificates
from xxterocpp.control.finishing import FinishingRecovery
from xxterocpp.control.keys import KeyRotation, check_key, is_key_change
from xxterocpp.control.limits import Limits, clamp, schedule_periods, start_profile
from xxterocpp.control.locallist import LocalList
from xxterocpp.control.meterwatch import MeterWatch
from xxterocpp.control.profiles import ProfileRaise
from xxterocpp.control.reservations import Reservations
from xxterocpp.control.sender import Sender, done, refused
from xxterocpp.control.setup import SetUp
from xxterocpp.domain.events import (
    CertificateIssued,
    ChargerBooted,
    ChargerConnected,
    ChargerDisconnected,
    CommandRefused,
    MeterChanged,
    StateLoaded,
    StatusChanged,
    TagsChanged,
    TransactionStarted,
    TransactionStopped,
)
from xxterocpp.domain.keys import new_authorization_key
from xxterocpp.domain.model import casefold
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
    Unknown charger ids raise L{UnknownChargingPoint} synchronously.

    The controller observes the central system's events (L{observe}, which
    the composition root subscribes): after each BootNotification it sets
    the charger up (L{SetUp}) and sends the reservations held until freed
    again (L{Reservations}), it follows the tag registry (L{LocalList}), new
    transactions (L{Limits}, L{Reservations}) and connectors that lost their
    reservation.

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
        self._sender = Sender()
        self._limits = Limits(central, self._sender, self._save)
        self._local_list = LocalList(central, self._sender, self._save)
        self._reservations = Reservations(central, self._sender, self._save, clock)
        self._keys = KeyRotation(central, self._sender)
        self._certificates = Certificates(central, clock, self._sender)
        self._profiles = ProfileRaise(central, self._sender)
        self._setup = SetUp(central, clock, self._sender, self._limits, self._local_list,
                            self._save)
        self._meter_watch = MeterWatch(central, clock, self._sender)
        self._finishing = FinishingRecovery(central, clock, self._sender)
        # The handlers of each event, in the order they run.
        self._handlers = {
            StateLoaded: (self._loaded,),
            ChargerConnected: (self._setup.connected,),
            ChargerDisconnected: (self._setup.disconnected,),
            ChargerBooted: (self._setup.booted, self._reservations.booted),
            StatusChanged: (self._reservations.status_changed, self._finishing.status_changed),
            TagsChanged: (self._local_list.tags_changed,),
            MeterChanged: (self._meter_watch.meter_changed,),
            TransactionStarted: (self._limits.transaction_started,
                                 self._reservations.transaction_started,
                                 self._meter_watch.transaction_started),
            TransactionStopped: (self._limits.transaction_stopped,
                                 self._meter_watch.transaction_stopped),
            CertificateIssued: (self._certificates.issued,),
        }
        self._restore(None)

    @property
    def boot_wait(self):
        """
        Seconds before a never-booted charger gets
        TriggerMessage(BootNotification).
        """
        return self._setup.boot_wait

    @boot_wait.setter
    def boot_wait(self, seconds):
        self._setup.boot_wait = seconds

    # -- plumbing --------------------------------------------------------

    def observe(self, event):
        """
        Run the handlers of a domain event, in their order (the composition
        root subscribes this to the central system).
        """
        for handler in self._handlers.get(type(event), ()):
            handler(event)

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

    def _connector(self, charger_id, connector):
        self._point(charger_id, connector)
        return self.central.chargers[charger_id].connector(connector)

    def _save(self, scope, key, value):
        if not self._sender.running:
            # Answers arriving while the service stops: the store is closing.
            return
        d = self.central.store.put_setting(scope, key, value)
        # The store logs and retries failed writes itself.
        d.addErrback(lambda failure: None)

    def _restore(self, event):
        """
        Take over the persisted control state (reservation ids, limits, what
        worked per charger, local list versions).
        """
        parts = (self._limits, self._local_list, self._reservations, self._setup)
        for (scope, key), value in self.central.settings.items():
            if (scope, key) == ("central", "reservation_id"):
                self._reservations.restore_last_id(value)
            elif scope in self.central.chargers:
                for part in parts:
                    part.restore(scope, key, value)

    def _loaded(self, event):
        self._restore(event)
        # The service runs: from now on certificates are renewed on time.
        self._certificates.start()

    def learned(self, charger_id):
        """
        What the central system learned by trial about a charger, kept
        across restarts: C{{"profile": the profile kind that took its last
        limit (purpose, kind, stack, unit) or None, "measurands": ...,
        "read_only": ...}} (L{xxterocpp.control.setup.SetUp.learned}; both
        None before its first set-up).
        """
        strategy = self._limits.strategy(self._charger(charger_id).id)
        found = self._setup.learned(charger_id) or {"measurands": None, "read_only": None}
        return {"profile": None if strategy is None else attr.asdict(strategy), **found}

    def shutdown(self):
        """
        Cancel the timers and send nothing more (the service stops).
        """
        self._sender.stop()
        self._setup.stop()
        self._reservations.stop()
        self._certificates.stop()
        self._meter_watch.stop()
        self._finishing.stop()

    # -- OCPP calls ------------------------------------------------------

    def call(self, charger_id, request):
        """
        Send any CS->CP request message and wait for the answer. A
        ChangeConfiguration of the AuthorizationKey is a key rotation
        (L{change_authorization_key}).

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
            return self._keys.route(charger, request)
        return self._sender.call(charger, request)

    def change_authorization_key(self, charger_id, key=None):
        """
        Rotate a charger's AuthorizationKey (security white paper A01) with
        ChangeConfiguration. Accepted: only the new key is accepted from now
        on, also after a restart; Rejected, NotSupported or a CALLERROR: the
        old one stays. Without an answer both are accepted until the charger
        connects with one of them, so a lost answer cannot lock it out.

        @param key: the new key, by default 20 random bytes as 40 hex digits.
        @raise ValueError: for a key that is not 16..20 bytes.
        @raise UnknownChargingPoint: for an unknown charger.
        @return: a Deferred firing with the charger's status word, or
            C{"NotConnected"}, C{"Timeout"}, C{"CallError"}.
        """
        key = new_authorization_key() if key is None else key
        check_key(key)
        d = self._keys.change(self._charger(charger_id), key)
        return d.addCallback(lambda result: result.status)

    # -- security (white paper A02, A03, A05) -----------------------------

    def raise_security_profile(self, charger_id, profile):
        """
        Raise the charger's security profile
        (L{xxterocpp.control.profiles.ProfileRaise.raise_to}): refused when
        it is not higher or what it needs is missing (a key for 1 and 2, TLS
        for 2 and 3, a client certificate for 3).

        @return: a Deferred firing with a L{CommandResult}.
        """
        return self._profiles.raise_to(self._charger(charger_id), profile)

    def renew_certificate(self, charger_id):
        """
        Ask the charger for a certificate signing request
        (ExtendedTriggerMessage SignChargePointCertificate); the signed
        certificate follows with CertificateSigned.
        """
        return self._certificates.renew(self._charger(charger_id))

    def install_root_certificate(self, charger_id):
        """
        InstallCertificate of the controller's root (C{[ocpp]
        root_certificate}) as the charger's CentralSystemRootCertificate.
        """
        charger = self._charger(charger_id)
        path = self.central.config.ocpp.root_certificate
        try:
            # A small local file, read when asked: it may have been renewed.
            with open(path, encoding="ascii") as f:
                pem = f.read()
        except (OSError, UnicodeDecodeError) as e:
            return refused(f"cannot read [ocpp] root_certificate {path!r}"
                           f" ({getattr(e, 'strerror', None) or e})")
        return self._certificates.install_root(charger, pem)

    # -- commands --------------------------------------------------------

    @_announced
    def start(self, charger_id, connector=1, id_tag=None, smart=False, charging_profile=None):
        """
        RemoteStartTransaction with C{id_tag} (default: the point's
        remote_tag, or its smart_tag when C{smart}). Refused while
        unavailable (L{xxterocpp.domain.central.CentralSystem.point_status})
        or reserved: no charging may start then, unless the start names the
        reservation's own tag (the point's remote_tag and smart_tag name
        none: they are what KNX and the page start with).

        @param charging_profile: optional C{ChargingProfile} (purpose
            TxProfile, no transactionId) for the new transaction; for the
            smart_tag, by default 0 A until the session is planned
            (L{xxterocpp.control.limits.start_profile}).
        """
        point = self._point(charger_id, connector)
        c = self.central.chargers[charger_id].connector(connector)
        names_a_tag = id_tag is not None and casefold(id_tag) not in (
            casefold(point.remote_tag), casefold(point.smart_tag))
        if id_tag is None:
            id_tag = point.smart_tag if smart else point.remote_tag
        if not id_tag:
            return refused("no smart_tag is configured for this charging point")
        status, _ = self.central.point_status(charger_id, connector)
        if status in ("Unavailable", "Faulted"):
            return refused(f"the charging point is {status}")
        reservation = c.reservation
        if reservation is not None and reservation.holds(self.central.now()) and not (
                names_a_tag and reservation.admits(id_tag)):
            return refused("the charging point is reserved")
        if c.transaction is not None and c.transaction.running and c.transaction.accepted:
            return done("already charging")
        if charging_profile is None:
            charging_profile = start_profile(self.central.chargers[charger_id], point, id_tag,
                                             self.central.now())
        return self._sender.call(self.central.chargers[charger_id], m.RemoteStartTransactionRequest(
            connector_id=connector, id_tag=id_tag, charging_profile=charging_profile))

    @_announced
    def stop(self, charger_id, connector=1):
        """
        RemoteStopTransaction of the running transaction (a connector of a
        charger with C{finishing-recovery} is watched afterwards).
        """
        tx = self._connector(charger_id, connector).transaction
        if tx is None or not tx.running:
            return refused("no transaction to stop")
        d = self._sender.call(self.central.chargers[charger_id],
                              m.RemoteStopTransactionRequest(transaction_id=tx.id))
        return d.addCallback(self._finishing.stop_answered, charger_id, connector)

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
            limit is known to be in force;
            L{xxterocpp.domain.events.ModeChanged} follows its
            changes.
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
        the transaction at the charger's top stack level
        (L{xxterocpp.control.limits.plan_profile}).

        @param start: when the schedule starts (an aware datetime).
        @param periods: C{(offset, amps)} pairs: seconds from C{start}, A
            per phase; the first offset is 0.
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
        return self._reservations.reserve(self.central.chargers[charger_id], connector,
                                          id_tag or point.remote_tag, expiry)

    @_announced
    def free(self, charger_id, connector=1):
        """
        CancelReservation of the point's reservation.
        """
        reservation = self._connector(charger_id, connector).reservation
        if reservation is None:
            return done("not reserved")
        return self._reservations.free(self.central.chargers[charger_id], connector, reservation)

    @_announced
    def set_availability(self, charger_id, connector, available):
        """
        ChangeAvailability Operative/Inoperative (Scheduled counts as
        accepted). Connector 0 is the whole charger.
        """
        if connector != 0:
            self._point(charger_id, connector)
        return self._sender.call(self._charger(charger_id), m.ChangeAvailabilityRequest(
            connector_id=connector, type="Operative" if available else "Inoperative"))

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
        return self._local_list.sync(charger_id)
