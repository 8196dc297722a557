# -*- test-case-name: tests.test_control -*-
"""
The control model: the one domain-level API through which the KNX bridge,
the web page and the Smart Energy Manager steer charging points. Each
command turns into OCPP calls to the charger and returns its answer.

Besides the commands, the L{Controller} looks after every charger on its
own: after each BootNotification it reads the configuration, sets the
measurands and the sample interval, re-applies the current limit in force
and brings the local authorization list up to date; a charger that connects
for the first time without booting is asked to (TriggerMessage).
"""

from datetime import datetime, timedelta

import attr
from twisted.internet import defer
from twisted.logger import Logger

from xxterocpp.ocpp import messages as m
from xxterocpp.ocpp.handlers import id_tag_info
from xxterocpp.ocpp.rpc import CallError, CallTimeout, NotConnected
from xxterocpp.domain.events import (
    ChargerBooted,
    ChargerConnected,
    ChargerDisconnected,
    StateLoaded,
    TagsChanged,
    TransactionStarted,
)
from xxterocpp.domain.model import Reservation

#: The status words meaning the charger did, or will do, what was asked:
#: Scheduled (ChangeAvailability during a transaction), RebootRequired
#: (ChangeConfiguration), AcceptedCanceled (GetLog replacing an upload).
ACCEPTED = frozenset({"Accepted", "Unlocked", "Scheduled", "RebootRequired", "AcceptedCanceled"})

#: Statuses after which asking the same charger again is pointless now.
SILENT = frozenset({"Timeout", "NotConnected"})

#: Seconds a reservation lasts unless the command says otherwise.
RESERVATION_EXPIRY = 3600

#: Seconds a connected charger that never booted gets before it is asked
#: for its BootNotification (quirk 8: Wallbox Pulsar Pro FW 6.x never sends
#: it; evcc waits 5 s too).
BOOT_WAIT = 5.0

#: The measurands the central system needs (SPEC §3, KNX energy/current).
MEASURANDS = (
    "Energy.Active.Import.Register",
    "Current.Import",
    "Power.Active.Import",
    "Current.Offered",
)
_ALL_MEASURANDS = ",".join(MEASURANDS)

#: MeterValueSampleInterval in s: the KNX current object changes at most
#: this often while charging.
SAMPLE_INTERVAL = 60

# Chargers whose post-boot set-up runs at the same time; the others wait
# their turn. A controller reboot brings every charger back at once: without
# a bound, a thousand set-ups in flight pile up calls and pending Deferreds
# (and leave the allocator fragmented long after, bench/run.py scenario 2).
SETUP_CONCURRENCY = 32

#: IEC 61851-1: below 6 A the control pilot no longer allows charging, so a
#: positive limit is at least this (SPEC §3: 0 or 6 .. max_current).
MIN_CURRENT = 6.0

#: Nominal phase voltage to turn a limit in A into W (evcc does the same).
VOLTAGE = 230

#: The charging profile combinations tried in order when a charger rejects
#: the one before (quirk 35): purpose (at the connector, or at connector 0
#: for ChargePointMaxProfile) and kind; each is tried at the highest stack
#: level and at 0 (ABB, Wallbox accept 0 only), in the units the charger
#: allows. TxProfile needs a running transaction.
CASCADE = (
    ("TxDefaultProfile", "Absolute"),
    ("TxDefaultProfile", "Relative"),
    ("ChargePointMaxProfile", "Absolute"),
    ("ChargePointMaxProfile", "Relative"),
    ("TxProfile", "Absolute"),
    ("TxProfile", "Relative"),
)

#: chargingProfileId per purpose (plus the connector): resending the same
#: id replaces the profile instead of piling new ones up (OCPP 1.6 §3.13.2).
#: The Smart Energy Manager's TxProfile is 9100 + connector
#: (L{xxterocpp.smart.manager.PROFILE_ID_BASE}), at the top stack level; a
#: TxProfile of this cascade goes one level below it.
PROFILE_IDS = {"ChargePointMaxProfile": 100, "TxDefaultProfile": 200, "TxProfile": 300}


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
        reserved for another tag, no transaction to stop, ...),
        C{"Invalid"} (L{Controller.send}: the payload does not validate).
    @ivar detail: a sentence for people.
    @ivar response: the decoded OCPP response (for C{send}: its JSON dict).
    """

    accepted = attr.ib()
    status = attr.ib()
    detail = attr.ib(default="")
    response = attr.ib(default=None)


def _refused(detail):
    return defer.succeed(CommandResult(False, "Refused", detail))


def _done(detail):
    return defer.succeed(CommandResult(True, "Accepted", detail))


@attr.s(frozen=True)
class ProfileStrategy:
    """
    One way of setting a current limit that a charger accepts; remembered
    per charger (setting C{limit_strategy}).

    @ivar purpose: the chargingProfilePurpose.
    @ivar kind: C{"Absolute"} (startSchedule in the past) or C{"Relative"}.
    @ivar stack: C{"max"} (C{ChargeProfileMaxStackLevel}) or C{"zero"}.
    @ivar unit: C{"A"} or C{"W"}.
    """

    purpose = attr.ib()
    kind = attr.ib()
    stack = attr.ib()
    unit = attr.ib()


@attr.s(slots=True)
class _PointLimit:
    """
    The limit a charging point should have.

    @ivar wanted: the limit in A to keep in force (None: normal_current).
    @ivar paused_from: the limit before L{Controller.pause}, while paused.
    """

    wanted = attr.ib(default=None)
    paused_from = attr.ib(default=None)


class _Coalesced:
    """
    Run an action for whoever asks; requests arriving while it runs are
    served by one more run (quirks 14, 39: reboot loops and fast limit
    changes must not pile up calls on a slow charger).
    """

    log = Logger()
    __slots__ = ("_action", "_running", "_waiters", "_table", "_key")

    def __init__(self, action, table=None, key=None):
        self._action = action
        self._running = False
        self._waiters = []
        # Idle, it leaves C{table} (no per-charger object kept between runs).
        self._table, self._key = table, key

    def request(self):
        """
        @return: a Deferred firing with the result of the next run that
            starts after this request.
        """
        d = defer.Deferred()
        self._waiters.append(d)
        if not self._running:
            self._run()
        return d

    @defer.inlineCallbacks
    def _run(self):
        self._running = True
        while self._waiters:
            waiters, self._waiters = self._waiters, []
            try:
                result = yield self._action()
            except Exception as e:
                # A bug here must not wedge the queue of this charger.
                self.log.failure("a control action failed")
                result = CommandResult(False, "Error", str(e))
            for d in waiters:
                d.callback(result)
        self._running = False
        if self._table is not None and self._table.get(self._key) is self:
            del self._table[self._key]


def _coalesced(table, key, action):
    """
    @return: a Deferred of the next run of C{action} coalesced under C{key}.
    """
    run = table.get(key)
    if run is None:
        run = table[key] = _Coalesced(action, table, key)
    return run.request()


_STRATEGIES = {}


def _shared_strategy(strategy):
    """
    @return: one L{ProfileStrategy} object per distinct strategy, however
        many chargers remember it.
    """
    return _STRATEGIES.setdefault(strategy, strategy)


def _csl(entry):
    """
    @return: the items of a comma-separated configuration value.
    """
    if entry is None or not entry.value:
        return []
    return [item.strip() for item in entry.value.split(",") if item.strip()]


def _int(entry, default):
    try:
        return int(entry.value)
    except (AttributeError, TypeError, ValueError):
        return default


def _units(configuration):
    """
    @return: the charging rate units a charger allows, preferred first.
        Quirk 20: some say C{power} or C{W} instead of C{Power}.
    """
    words = {"current": "A", "a": "A", "power": "W", "w": "W"}
    allowed = _csl(configuration.get("ChargingScheduleAllowedChargingRateUnit"))
    units = [words[w.lower()] for w in allowed if w.lower() in words]
    return tuple(dict.fromkeys(units)) or ("A",)


class Controller:
    """
    Commands per charging point (charger id, connector).

    Every method returning a Deferred never fails it for charger-side
    problems: they come back as a L{CommandResult}. Unknown charger ids raise
    L{UnknownChargingPoint} synchronously.

    The controller observes the central system's events itself.

    @ivar boot_wait: seconds before a never-booted charger gets
        TriggerMessage(BootNotification).
    """

    log = Logger()

    def __init__(self, central, clock):
        self.central = central
        self.clock = clock
        self.boot_wait = BOOT_WAIT
        self._limits = {}
        self._limit_runs = {}
        # Post-boot set-ups: charger ids waiting their turn (in boot order),
        # those running, and those booted again while running (one more run).
        self._setup_queue = {}
        self._setups_running = set()
        self._setups_again = set()
        self._starting_setups = False
        self._list_syncs = {}
        self._strategies = {}
        self._local_lists = {}
        self._boot_timers = {}
        self._reservation_id = 0
        self._running = True
        self._handlers = {
            StateLoaded: self._restore,
            ChargerConnected: self._connected,
            ChargerDisconnected: self._disconnected,
            ChargerBooted: self._booted,
            TagsChanged: self._tags_changed,
            TransactionStarted: self._transaction_started,
        }
        central.subscribe(self._observe)
        self._restore(None)

    # -- plumbing --------------------------------------------------------

    def _observe(self, event):
        handler = self._handlers.get(type(event))
        if handler is not None:
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

    def _save(self, scope, key, value):
        if not self._running:
            # Answers arriving while the service stops: the store is closing.
            return
        d = self.central.store.put_setting(scope, key, value)
        # The store logs and retries failed writes itself.
        d.addErrback(lambda failure: None)

    def _limit_state(self, charger_id, connector):
        return self._limits.setdefault((charger_id, connector), _PointLimit())

    def _restore(self, event):
        """
        Take over the persisted control state (reservation ids, limits, what
        worked per charger, local list versions).
        """
        for (scope, key), value in self.central.settings.items():
            if (scope, key) == ("central", "reservation_id"):
                self._reservation_id = value
            elif scope not in self.central.chargers:
                continue
            elif key == "limit_strategy":
                self._strategies[scope] = _shared_strategy(ProfileStrategy(**value))
            elif key == "local_list":
                self._local_lists[scope] = value
            elif key.startswith("limit/"):
                self._limits[(scope, int(key[6:]))] = _PointLimit(**value)
            elif key.startswith("reservation/") and value is not None:
                reservation = Reservation(value["id"], value["id_tag"],
                                          datetime.fromisoformat(value["expiry"]))
                if reservation.holds(self.central.now()):
                    self.central.reserved(scope, int(key[12:]), reservation)

    # -- OCPP calls ------------------------------------------------------

    def call(self, charger_id, request):
        """
        Send any CS->CP request message and wait for the answer.

        @param request: a C{...Request} instance of L{m.ACTIONS}.
        @return: a Deferred firing with a L{CommandResult} whose C{response}
            is the decoded response message (None without an answer).
        """
        return self._call(self._charger(charger_id), request)

    @defer.inlineCallbacks
    def _call(self, charger, request):
        action = type(request).__name__[: -len("Request")]
        session = charger.session
        if session is None or not self._running:
            return CommandResult(False, "NotConnected", f"{charger.id} is not connected")
        try:
            response = yield session.call(request)
        except CallTimeout as e:
            return CommandResult(False, "Timeout", f"{action}: {e}")
        except NotConnected as e:
            return CommandResult(False, "NotConnected", f"{action}: {e}")
        except CallError as e:
            self.log.info("{id}: {action} answered with CALLERROR {error}", id=charger.id,
                          action=action, error=str(e))
            return CommandResult(False, "CallError", f"{action}: {e}", None)
        if not attr.has(type(response)) or "status" not in attr.fields_dict(type(response)):
            return CommandResult(True, "Accepted", action, response)
        # A lenient decode leaves a missing or unknown status None.
        status = response.status or "Rejected"
        if status not in ACCEPTED:
            self.log.info("{id}: {action} {status}", id=charger.id, action=action, status=status)
        return CommandResult(status in ACCEPTED, status, f"{action}: {status}", response)

    def send(self, charger_id, action, payload):
        """
        Send any CS->CP OCPP 1.6 action with a JSON payload; the result's
        C{response} is the charger's JSON answer. A payload that does not
        validate gives C{CommandResult(False, "Invalid", reason)}.
        """
        charger = self._charger(charger_id)
        spec = m.ACTIONS.get(action)
        if spec is None or spec.direction == m.CP_TO_CS:
            return defer.succeed(CommandResult(
                False, "Invalid", f"{action!r} is not an action the central system sends"))
        try:
            request, warnings = m.decode(spec.request, payload)
        except m.ValidationError as e:
            return defer.succeed(CommandResult(False, "Invalid", f"{e.code}: {e.message}"))
        d = self._call(charger, request)
        d.addCallback(lambda r: r if r.response is None
                      else attr.evolve(r, response=m.encode(r.response)))
        return d

    # -- commands --------------------------------------------------------

    def start(self, charger_id, connector=1, id_tag=None, smart=False, charging_profile=None):
        """
        RemoteStartTransaction with C{id_tag} (default: the point's
        remote_tag, or its smart_tag when C{smart}). Refused while
        unavailable or reserved for another tag (manual §3: no charging can
        start while the charger is reserved or unavailable).

        @param charging_profile: optional C{ChargingProfile} (purpose
            TxProfile, no transactionId) for the new transaction.
        """
        point = self._point(charger_id, connector)
        charger = self.central.chargers[charger_id]
        c = charger.connector(connector)
        if id_tag is None:
            id_tag = point.smart_tag if smart else point.remote_tag
        if not id_tag:
            return _refused("no smart_tag is configured for this charging point")
        if c.status in ("Unavailable", "Faulted"):
            return _refused(f"the charging point is {c.status}")
        if (c.reservation is not None and c.reservation.holds(self.central.now())
                and not c.reservation.admits(id_tag)):
            return _refused("the charging point is reserved for another tag")
        if c.transaction is not None and c.transaction.running:
            return _done("already charging")
        return self._call(charger, m.RemoteStartTransactionRequest(
            connector_id=connector, id_tag=id_tag, charging_profile=charging_profile))

    def stop(self, charger_id, connector=1):
        """
        RemoteStopTransaction of the running transaction.
        """
        self._point(charger_id, connector)
        tx = self.central.chargers[charger_id].connector(connector).transaction
        if tx is None or not tx.running:
            return _refused("no transaction to stop")
        return self._call(self.central.chargers[charger_id],
                          m.RemoteStopTransactionRequest(transaction_id=tx.id))

    def pause(self, charger_id, connector=1):
        """
        Limit to 0 A, keeping the transaction (chargers that cannot restart
        without replugging).
        """
        point = self._point(charger_id, connector)
        state = self._limit_state(charger_id, connector)
        if state.paused_from is None:
            state.paused_from = self._wanted(point)
        state.wanted = 0.0
        return self._limit_changed(point)

    def resume(self, charger_id, connector=1):
        """
        Back to the limit in force before the pause.
        """
        point = self._point(charger_id, connector)
        state = self._limit_state(charger_id, connector)
        if state.paused_from is None:
            return _done("not paused")
        state.wanted, state.paused_from = state.paused_from, None
        return self._limit_changed(point)

    def set_limit(self, charger_id, connector, amps):
        """
        Set the current limit (A, clamped to 0 or 6..max_current, one
        decimal) with the charging-profile cascade; coalesced. It overrides
        a pause (manual §3: a received value overrides the previous limit).
        """
        point = self._point(charger_id, connector)
        state = self._limit_state(charger_id, connector)
        state.wanted, state.paused_from = self.clamp(point, amps), None
        return self._limit_changed(point)

    def normal(self, charger_id, connector=1):
        """
        Limit back to normal_current.
        """
        return self.set_limit(charger_id, connector,
                              self._point(charger_id, connector).normal_current)

    def fast(self, charger_id, connector=1):
        """
        Limit to max_current.
        """
        return self.set_limit(charger_id, connector,
                              self._point(charger_id, connector).max_current)

    def reserve(self, charger_id, connector=1, id_tag=None, expiry=None):
        """
        ReserveNow (persistent reservationId; expiry default
        L{RESERVATION_EXPIRY} from now).

        @param id_tag: default: the point's remote_tag.
        @param expiry: an aware datetime, or None.
        """
        point = self._point(charger_id, connector)
        if expiry is None:
            expiry = self.central.now() + timedelta(seconds=RESERVATION_EXPIRY)
        # Counted and saved before sending: a reused id would replace an
        # older reservation at the charger (OCPP 1.6 §5.13).
        self._reservation_id += 1
        self._save("central", "reservation_id", self._reservation_id)
        reservation = Reservation(self._reservation_id, id_tag or point.remote_tag, expiry)
        d = self._call(self.central.chargers[charger_id], m.ReserveNowRequest(
            connector_id=connector, expiry_date=expiry, id_tag=reservation.id_tag,
            reservation_id=reservation.id))

        def answered(result):
            if result.accepted:
                self._reserved(charger_id, connector, reservation)
            return result

        return d.addCallback(answered)

    def _reserved(self, charger_id, connector, reservation):
        self.central.reserved(charger_id, connector, reservation)
        self._save(charger_id, f"reservation/{connector}", None if reservation is None else {
            "id": reservation.id, "id_tag": reservation.id_tag,
            "expiry": reservation.expiry.isoformat()})

    def free(self, charger_id, connector=1):
        """
        CancelReservation of the point's reservation.
        """
        self._point(charger_id, connector)
        reservation = self.central.chargers[charger_id].connector(connector).reservation
        if reservation is None:
            return _done("not reserved")
        d = self._call(self.central.chargers[charger_id],
                       m.CancelReservationRequest(reservation_id=reservation.id))

        def answered(result):
            if result.accepted or result.status == "Rejected":
                # Rejected: the charger does not know the id (any more).
                self._reserved(charger_id, connector, None)
            return result

        return d.addCallback(answered)

    def set_availability(self, charger_id, connector, available):
        """
        ChangeAvailability Operative/Inoperative (Scheduled counts as
        accepted). Connector 0 is the whole charger.
        """
        if connector != 0:
            self._point(charger_id, connector)
        return self._call(self._charger(charger_id), m.ChangeAvailabilityRequest(
            connector_id=connector, type="Operative" if available else "Inoperative"))

    def unlock(self, charger_id, connector=1):
        """
        UnlockConnector.
        """
        self._point(charger_id, connector)
        return self._call(self.central.chargers[charger_id],
                          m.UnlockConnectorRequest(connector_id=connector))

    def reset(self, charger_id, hard=False):
        """
        Reset Soft (or Hard).
        """
        return self._call(self._charger(charger_id),
                          m.ResetRequest(type="Hard" if hard else "Soft"))

    def limit(self, charger_id, connector=1):
        """
        @return: the effective current limit in force (A), or None.
        """
        self._point(charger_id, connector)
        return self.central.chargers[charger_id].connector(connector).limit

    # -- the current limit -----------------------------------------------

    @staticmethod
    def clamp(point, amps):
        """
        @return: C{amps} as a limit the point can have: 0, or 6 ..
            max_current, with one decimal (SPEC §3).
        """
        amps = round(float(amps), 1)
        if amps <= 0:
            return 0.0
        return min(max(amps, MIN_CURRENT), point.max_current)

    def _wanted(self, point):
        wanted = self._limit_state(point.id, point.connector).wanted
        return self.clamp(point, point.normal_current if wanted is None else wanted)

    def _limit_changed(self, point):
        state = self._limit_state(point.id, point.connector)
        self._save(point.id, f"limit/{point.connector}", attr.asdict(state))
        return self._push_limit(point)

    def _push_limit(self, point):
        key = (point.id, point.connector)
        return _coalesced(self._limit_runs, key, lambda: self._apply_limit(*key))

    def _candidates(self, charger, transaction):
        """
        @return: the L{ProfileStrategy}s to try, the remembered one first.
        """
        max_level = _int(charger.configuration.get("ChargeProfileMaxStackLevel"), 0)
        stacks = ("max", "zero") if max_level > 0 else ("zero",)
        candidates = [
            ProfileStrategy(purpose, kind, stack, unit)
            for purpose, kind in CASCADE
            if purpose != "TxProfile" or transaction is not None
            for stack in stacks
            for unit in _units(charger.configuration)
        ]
        remembered = self._strategies.get(charger.id)
        if remembered in candidates:
            candidates.remove(remembered)
            candidates.insert(0, remembered)
        return candidates

    def _profile(self, charger, point, strategy, transaction):
        """
        @return: the SetChargingProfile request of C{strategy} for the
            point's wanted limit.
        """
        amps = self._wanted(point)
        connector = point.connector
        if strategy.purpose == "ChargePointMaxProfile":
            # It limits the whole charger (OCPP 1.6 §3.13.1): the sum of its
            # points' limits.
            connector = 0
            amps = sum(self._wanted(p) for p in self.central.config.charging_points(charger.id))
        limit = amps if strategy.unit == "A" else round(amps * VOLTAGE * point.phases, 1)
        schedule = m.ChargingSchedule(
            charging_rate_unit=strategy.unit,
            charging_schedule_period=(m.ChargingSchedulePeriod(start_period=0, limit=limit),),
            # OCPP 1.6 §3.13.4: in the past, so the profile holds at once.
            start_schedule=(self.central.now() - timedelta(minutes=1)
                            if strategy.kind == "Absolute" else None),
        )
        level = (_int(charger.configuration.get("ChargeProfileMaxStackLevel"), 0)
                 if strategy.stack == "max" else 0)
        if strategy.purpose == "TxProfile":
            # The top level belongs to the Smart Energy Manager's plan (its
            # TxProfile, chargingProfileId 9100 + connector): one below, the
            # two never replace each other and the plan wins while it runs.
            level = max(0, level - 1)
        return m.SetChargingProfileRequest(connector_id=connector, cs_charging_profiles=m.ChargingProfile(
            charging_profile_id=PROFILE_IDS[strategy.purpose] + connector,
            transaction_id=transaction.id if strategy.purpose == "TxProfile" else None,
            stack_level=level,
            charging_profile_purpose=strategy.purpose,
            charging_profile_kind=strategy.kind,
            charging_schedule=schedule,
        ))

    @defer.inlineCallbacks
    def _apply_limit(self, charger_id, connector):
        """
        Put the wanted limit of a point in force, walking L{CASCADE} from
        what worked last time.
        """
        charger = self.central.chargers.get(charger_id)
        point = self.central.config.charger(charger_id, connector)
        if charger is None or point is None:
            return CommandResult(False, "Refused", "no longer configured")
        if charger.session is None:
            return CommandResult(False, "NotConnected",
                                 f"{charger_id} is not connected; the limit is applied when it boots")
        tx = charger.connector(connector).transaction
        tx = tx if tx is not None and tx.running else None
        result = None
        for strategy in self._candidates(charger, tx):
            amps = self._wanted(point)
            result = yield self._call(charger, self._profile(charger, point, strategy, tx))
            if result.accepted:
                if self._strategies.get(charger_id) != strategy:
                    self.log.info("{id}: current limits work as {strategy}", id=charger_id,
                                  strategy=strategy)
                    self._strategies[charger_id] = _shared_strategy(strategy)
                    self._save(charger_id, "limit_strategy", attr.asdict(strategy))
                self.central.limit_in_force(charger_id, connector, amps)
                return result
            if result.status in SILENT:
                # Do not walk the cascade through timeouts.
                return result
        self.log.warn("{id}: no charging profile was accepted for connector {connector}: "
                      "{detail}", id=charger_id, connector=connector, detail=result.detail)
        return result

    def shutdown(self):
        """
        Cancel the timers and send nothing more (the service stops).
        """
        self._running = False
        for charger_id in list(self._boot_timers):
            self._cancel_boot_timer(charger_id)

    # -- after the boot ----------------------------------------------------

    def _connected(self, event):
        charger = self.central.chargers.get(event.charger_id)
        self._cancel_boot_timer(event.charger_id)
        if charger is None:
            return
        if not charger.boot:
            self._boot_timers[charger.id] = self.clock.callLater(
                self.boot_wait, self._trigger_boot, charger)

    def _disconnected(self, event):
        self._cancel_boot_timer(event.charger_id)

    def _cancel_boot_timer(self, charger_id):
        timer = self._boot_timers.pop(charger_id, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _trigger_boot(self, charger):
        # Quirk 8; not for chargers that booted before (quirk 9:
        # TriggerMessage(BootNotification) crashes some), whose registration
        # survives reconnects.
        del self._boot_timers[charger.id]
        self.log.info("{id}: no BootNotification within {wait} s, asking for one",
                      id=charger.id, wait=self.boot_wait)
        self._call(charger, m.TriggerMessageRequest(requested_message="BootNotification"))

    def _booted(self, event):
        self._cancel_boot_timer(event.charger_id)
        self._queue_setup(event.charger_id)

    def _queue_setup(self, charger_id):
        # A charger waiting costs one dict entry, not a chain of Deferreds;
        # a boot during its set-up (quirk 14, reboot loops) is served by one
        # more run afterwards, however many boots came.
        if charger_id in self._setups_running:
            self._setups_again.add(charger_id)
        else:
            self._setup_queue[charger_id] = None
            self._next_setups()

    def _next_setups(self):
        # Not re-entrant: a set-up that ends at once (its charger gone, the
        # service stopping) calls back in here; the loop below then starts
        # the next one instead of a recursion as deep as the queue.
        if self._starting_setups:
            return
        self._starting_setups = True
        try:
            while self._setup_queue and len(self._setups_running) < SETUP_CONCURRENCY:
                charger_id = next(iter(self._setup_queue))
                del self._setup_queue[charger_id]
                self._setups_running.add(charger_id)
                d = self._configure(charger_id)
                d.addErrback(lambda f, charger_id=charger_id: self.log.failure(
                    "{id}: the set-up after the boot failed", f, id=charger_id))
                d.addBoth(self._setup_done, charger_id)
        finally:
            self._starting_setups = False

    def _setup_done(self, _, charger_id):
        self._setups_running.discard(charger_id)
        if charger_id in self._setups_again:
            self._setups_again.discard(charger_id)
            self._setup_queue[charger_id] = None
        self._next_setups()

    @defer.inlineCallbacks
    def _configure(self, charger_id):
        """
        What follows every BootNotification (SPEC §3; quirks 14, 40:
        chargers forget limits and settings when they reboot).
        """
        charger = self.central.chargers.get(charger_id)
        if charger is None:
            return None
        result = yield self._call(charger, m.GetConfigurationRequest())
        if result.response is not None:
            charger.configuration = {kv.key: kv for kv in result.response.configuration_key or ()
                                     if kv is not None}
        yield self._configure_measurands(charger)
        yield self._configure_sample_interval(charger)
        for point in self.central.config.charging_points(charger_id):
            yield self._push_limit(point)
        return (yield self.sync_local_list(charger_id))

    @defer.inlineCallbacks
    def _change(self, charger, key, value):
        result = yield self._call(charger, m.ChangeConfigurationRequest(key=key, value=value))
        if result.accepted:
            charger.configuration[key] = m.KeyValue(key=key, readonly=False, value=value)
        return result

    @defer.inlineCallbacks
    def _configure_measurands(self, charger):
        key = "MeterValuesSampledData"
        entry = charger.configuration.get(key)
        if entry is not None and entry.readonly or set(MEASURANDS) <= set(_csl(entry)):
            return None
        room = _int(charger.configuration.get(key + "MaxLength"), len(MEASURANDS))
        if room >= len(MEASURANDS):
            result = yield self._change(charger, key, _ALL_MEASURANDS)
            if result.accepted or result.status in SILENT:
                return result
        # Quirk 21: the whole list rejected (one unsupported measurand
        # rejects it all, OCPP 1.6 §3.16.4) but single values accepted.
        accepted = []
        for measurand in MEASURANDS:
            if len(accepted) >= room:
                break
            result = yield self._change(charger, key, ",".join(accepted + [measurand]))
            if result.accepted:
                accepted.append(measurand)
            elif result.status in SILENT:
                break
        self.log.info("{id}: measurands {measurands}", id=charger.id,
                      measurands=",".join(accepted) or "unchanged")
        return None

    def _configure_sample_interval(self, charger):
        key = "MeterValueSampleInterval"
        entry = charger.configuration.get(key)
        if entry is not None and (entry.readonly or _int(entry, None) == SAMPLE_INTERVAL):
            return defer.succeed(None)
        return self._change(charger, key, str(SAMPLE_INTERVAL))

    def _transaction_started(self, event):
        tx = event.transaction
        strategy = self._strategies.get(tx.charger_id)
        point = self.central.config.charger(tx.charger_id, tx.connector)
        if point is not None and strategy is not None and strategy.purpose == "TxProfile":
            # A TxProfile dies with its transaction: the new one needs it.
            self._push_limit(point)

    # -- the local authorization list ---------------------------------------

    def _tags_changed(self, event):
        for charger_id, charger in self.central.chargers.items():
            if charger.connected and charger.configuration:
                self.sync_local_list(charger_id)

    def sync_local_list(self, charger_id):
        """
        Bring the charger's local authorization list in step with the tag
        registry (only for chargers with LocalAuthListManagement);
        coalesced.

        @return: a Deferred firing with a L{CommandResult}.
        """
        self._charger(charger_id)
        return _coalesced(self._list_syncs, charger_id,
                          lambda: self._sync_local_list(charger_id))

    def _local_entries(self, charger_id):
        """
        @return: C{{idTag: IdTagInfo JSON}}: the registry as this charger's
            C{allowed_tags} see it.
        """
        return {tag.id: m.encode(id_tag_info(self.central.authorize(charger_id, None, tag.id)))
                for tag in self.central.tags.all()}

    @defer.inlineCallbacks
    def _sync_local_list(self, charger_id):
        charger = self.central.chargers.get(charger_id)
        if charger is None:
            return CommandResult(False, "Refused", "no longer configured")
        profiles = _csl(charger.configuration.get("SupportedFeatureProfiles"))
        if "LocalAuthListManagement" not in profiles:
            return CommandResult(True, "Accepted", "no local authorization list")
        result = yield self._call(charger, m.GetLocalListVersionRequest())
        if not result.accepted:
            return result
        version = result.response.list_version
        if version is None or version < 0:
            return CommandResult(True, "Accepted", "no local authorization list")
        entries = self._local_entries(charger_id)
        known = self._local_lists.get(charger_id)
        if known is not None and known["version"] == version:
            old = known["entries"]
            changes = [m.AuthorizationData(id_tag=tag, id_tag_info=None) for tag in old
                       if tag not in entries]
            changes += [self._authorization(tag, info) for tag, info in entries.items()
                        if old.get(tag) != info]
            if not changes:
                return CommandResult(True, "Accepted", "local authorization list up to date")
            result = yield self._send_list(charger, version + 1, "Differential", changes, entries)
            if result.accepted or result.status in SILENT or result.status == "NotSupported":
                return result
            # VersionMismatch or Failed: start again from a full list.
        full = [self._authorization(tag, info) for tag, info in entries.items()]
        top = max(version, known["version"] if known else 0)
        return (yield self._send_list(charger, top + 1, "Full", full, entries))

    @staticmethod
    def _authorization(tag, info):
        return m.AuthorizationData(id_tag=tag, id_tag_info=m.decode(m.IdTagInfo, info)[0])

    @defer.inlineCallbacks
    def _send_list(self, charger, version, update_type, data, entries):
        result = yield self._call(charger, m.SendLocalListRequest(
            list_version=version, update_type=update_type, local_authorization_list=tuple(data)))
        if result.accepted:
            self._local_lists[charger.id] = {"version": version, "entries": entries}
            self._save(charger.id, "local_list", self._local_lists[charger.id])
        return result
