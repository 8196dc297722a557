# -*- test-case-name: tests.test_limits,tests.test_commands,tests.test_setup -*-
"""
Where a current limit becomes a SetChargingProfile: the limit each charging
point should have (its own: set, normal, fast, paused and resumed, with
its Normal/Fast mode; or the Smart Energy Manager's while it steers the
point), put in force by walking the cascade of profile kinds
(L{xxterocpp.control.chargingprofiles}) until the charger accepts one, and
the Smart Energy Manager's schedules.
"""

from datetime import timedelta

import attr
from twisted.internet import defer
from twisted.logger import Logger

from xxterocpp.control.chargingprofiles import (
    Cascade, in_steps, limit_profile, plan_profile, sendable,
)
from xxterocpp.control.coalesce import coalesced
from xxterocpp.control.configuration import lacks_profile
from xxterocpp.control.electrical import MIN_CURRENT
from xxterocpp.control.sender import SILENT, CommandResult, done
from xxterocpp.domain.events import ModeChanged
from xxterocpp.ocpp import messages as m


@attr.s(slots=True)
class _PointLimit:
    """
    The limit a charging point should have.

    @ivar wanted: the point's own limit in A (None: normal_current); set,
        normal, fast, pause and resume change it.
    @ivar paused_from: the own limit before L{Limits.pause}, while paused.
    @ivar mode: C{"normal"} or C{"fast"} when C{wanted} was asked for as
        that mode, else None.
    @ivar steered: the Smart Energy Manager's limit in A while it steers the
        point (a smart session's plan, a share of the site limit), else
        None: it holds instead of the own limit, never above it, and the
        own limit comes back with L{Limits.release}.
    @ivar stopped_tag: the idTag of the session stopped instead of a 0 A
        limit (C{pause-ends-session}), to start again with once the limit
        is back; else None.
    """

    wanted = attr.ib(default=None)
    paused_from = attr.ib(default=None)
    mode = attr.ib(default=None)
    steered = attr.ib(default=None)
    stopped_tag = attr.ib(default=None)


#: Connector states with a car plugged in and no session running.
_PLUGGED = frozenset({"Preparing", "Finishing", "SuspendedEV", "SuspendedEVSE"})


def clamp(point, amps):
    """
    @return: C{amps} as a limit the point can have: 0, or 6 ..
        max_current, with one decimal.
    """
    amps = round(float(amps), 1)
    if amps <= 0:
        return 0.0
    return min(max(amps, MIN_CURRENT), point.max_current)


def is_smart(point, id_tag):
    """
    @return: whether C{id_tag} is the point's C{smart_tag}: its sessions
        belong to the Smart Energy Manager.
    """
    return bool(point.smart_tag) and bool(id_tag) and (
        id_tag.casefold() == point.smart_tag.casefold())


def start_profile(charger, point, id_tag, now):
    """
    The charging profile of a RemoteStartTransaction: for the smart tag, the
    plan's TxProfile at 0 A (L{sendable}: the least current for a charger
    with C{pause-ends-session}). The plan itself can only follow once the
    charger knows the transactionId; until then the session draws nothing
    (or that least current). The plan, with the same id and stack level,
    replaces it.

    @param now: the aware time now.
    @return: a C{ChargingProfile}, or None for other tags.
    """
    if not is_smart(point, id_tag):
        return None
    # A minute back, so it holds at once (like the cascade's).
    request = plan_profile(charger, point, None, now - timedelta(minutes=1), ((0, 0.0),))
    return request.cs_charging_profiles


class Limits:
    """
    The current limit of every charging point and the profiles that put it
    in force.

    @ivar cascade: the L{Cascade}: the profile kind each charger took.
    @ivar observers: callables C{observer(charger_id, connector)}, called
        when the own limit of a steered point changes (L{steer}): the
        Smart Energy Manager plans below it.
    """

    log = Logger()

    def __init__(self, central, sender, save):
        """
        @param central: the L{xxterocpp.domain.central.CentralSystem}.
        @param sender: the L{xxterocpp.control.sender.Sender}.
        @param save: C{save(scope, key, value)} persists a setting.
        """
        self.central = central
        self.sender = sender
        self._save = save
        self._limits = {}
        self._runs = {}
        # The newest plan asked for per charging point, until a run of
        # L{set_schedule} takes it, and those runs.
        self._plans = {}
        self._plan_runs = {}
        self.cascade = Cascade(save)
        self._modes = {}
        self.observers = []

    def restore(self, charger_id, key, value):
        """
        Take over a persisted setting of a charger, if it is one of ours.
        """
        if key.startswith("limit/"):
            self._limits[(charger_id, int(key[6:]))] = _PointLimit(**value)
        else:
            self.cascade.restore(charger_id, key, value)

    def _state(self, point):
        return self._limits.setdefault((point.id, point.connector), _PointLimit())

    def own(self, point):
        """
        @return: the point's own limit (A): the one set, normal, fast or
            paused (normal_current until one is set); it holds when nobody
            steers the point and caps a steered limit.
        """
        wanted = self._state(point).wanted
        return clamp(point, point.normal_current if wanted is None else wanted)

    def wanted(self, point):
        """
        @return: the limit (A) the point should have now.
        """
        state = self._state(point)
        if state.steered is None:
            return self.own(point)
        return min(state.steered, self.own(point))

    def set(self, point, amps, mode=None):
        """
        Keep C{amps} (clamped) in force as the own limit; it ends a pause.

        @param mode: C{"normal"} or C{"fast"} when C{amps} is that mode's.
        """
        state = self._state(point)
        state.wanted, state.paused_from, state.mode = clamp(point, amps), None, mode
        return self._own_changed(point)

    def in_force(self, point):
        """
        @return: the limit in force at the point (A): the one the charger
            accepted last, unless its readings show it offers the car more
            (L{xxterocpp.domain.accepted.AcceptedCommands.offered_above}:
            then that); for a charger without the SmartCharging feature
            profile, which takes no limit, its max_current; None while
            unknown.
        """
        charger = self.central.chargers[point.id]
        limit = charger.connector(point.connector).limit
        if limit is None and lacks_profile(charger.configuration, "SmartCharging"):
            return point.max_current
        above = self.central.accepted.offered_above(point.id, point.connector)
        return limit if above is None else above

    def mode(self, point):
        """
        @return: the Normal/Fast mode in force at the point: the mode asked
            for once its limit is in force, else what the limit in force is
            (C{"fast"} at max_current above normal_current); None before
            any limit is known to be in force.
        """
        limit = self.in_force(point)
        if limit is None:
            return None
        state = self._state(point)
        if state.mode is not None and state.paused_from is None and limit == self.wanted(point):
            return state.mode
        return "fast" if limit >= point.max_current > point.normal_current else "normal"

    def pause(self, point):
        """
        Limit to 0 A, remembering the limit before; at a charger with
        C{pause-ends-session}, by stopping its session instead (L{_apply}).
        """
        state = self._state(point)
        if state.paused_from is None:
            state.paused_from = self.own(point)
        state.wanted = 0.0
        return self._own_changed(point)

    def resume(self, point):
        """
        Back to the limit in force before the pause (and, for a session
        stopped instead of 0 A, a new session).
        """
        state = self._state(point)
        if state.paused_from is None:
            return done("not paused")
        state.wanted, state.paused_from = state.paused_from, None
        return self._own_changed(point)

    def steer(self, point, amps):
        """
        The Smart Energy Manager's limit for the point (clamped, and at
        most L{own}) until L{release}. Put in force when steering begins and
        whenever the limit changes.
        """
        state = self._state(point)
        before = None if state.steered is None else self.wanted(point)
        state.steered = clamp(point, amps)
        self._save_state(point)
        if self.wanted(point) == before:
            return done("unchanged")
        return self.push(point)

    def release(self, point):
        """
        The steering ends (the session ended, or left the Smart Energy
        Manager): the own limit is put in force again, the one before the
        steering or set during it.
        """
        state = self._state(point)
        if state.steered is None:
            return done("not steered")
        state.steered = None
        return self._changed(point)

    def _own_changed(self, point):
        if self._state(point).steered is not None:
            # First, so a new plan (its TxProfile) is queued before the
            # limit: once the limit is answered, both hold.
            for observer in list(self.observers):
                try:
                    observer(point.id, point.connector)
                except Exception:
                    # The own limit goes out all the same.
                    self.log.failure("a limit observer failed")
        return self._changed(point)

    def _save_state(self, point):
        self._save(point.id, f"limit/{point.connector}", attr.asdict(self._state(point)))

    def _changed(self, point):
        self._save_state(point)
        return self.push(point)

    def push(self, point):
        """
        Put the point's limit in force at the charger; coalesced.

        @return: a Deferred firing with a L{CommandResult}.
        """
        key = (point.id, point.connector)
        return coalesced(self._runs, key, lambda: self._apply(*key))

    def after_boot(self, point):
        """
        Put the point's limit in force after a boot, when one below its
        C{max_current} is wanted (or the charger last accepted another
        one): a charger at its maximum gets no SetChargingProfile at all,
        so the first profile it sees is one somebody asked for.

        @return: a Deferred firing with a L{CommandResult}.
        """
        wanted = self.wanted(point)
        accepted = self.central.chargers[point.id].connector(point.connector).limit
        if wanted < point.max_current or accepted not in (None, wanted):
            return self.push(point)
        self.central.limit_in_force(point.id, point.connector, wanted)
        return done(f"{wanted:g} A is the maximum: no charging profile needed")

    def transaction_started(self, event):
        """
        A TxProfile dies with its transaction: a charger that takes limits
        only as TxProfiles needs it again for the new one. Not for a smart
        session: the Smart Energy Manager steers it at once, and the own
        limit must not hold before.
        """
        tx = event.transaction
        strategy = self.cascade.strategy(tx.charger_id)
        point = self.central.config.charger(tx.charger_id, tx.connector)
        if point is None or not tx.accepted or is_smart(point, tx.id_tag):
            return
        if strategy is not None and strategy.purpose == "TxProfile" or (
                self._stops_instead_of_zero(self.central.chargers[tx.charger_id], point)):
            # Also a session started while paused where a pause is no 0 A
            # limit but a stop: it is stopped too.
            self.push(point)

    def transaction_stopped(self, event):
        """
        A charger that ends its session itself while paused at 0 A gets a
        log line suggesting C{pause-ends-session}.
        """
        tx = event.transaction
        state = self._limits.get((tx.charger_id, tx.connector))
        charger = self.central.chargers.get(tx.charger_id)
        if (charger is not None and state is not None and state.paused_from is not None
                and tx.stop_reason != "Remote" and charger.connector(tx.connector).limit == 0):
            self.central.suggest_quirk(
                tx.charger_id, "pause-ends-session",
                f"it ended transaction {tx.id} ({tx.stop_reason}) while paused at 0 A")

    def _profile(self, charger, point, strategy, transaction):
        """
        @return: the SetChargingProfile request of C{strategy} for the
            point's wanted limit.
        """
        amps = self.wanted(point)
        if strategy.purpose == "ChargePointMaxProfile":
            # It limits the whole charger (OCPP 1.6 §3.13.1): the sum of its
            # points' limits.
            amps = sum(self.wanted(p) for p in self.central.config.charging_points(charger.id))
        return limit_profile(charger, point, strategy, transaction, amps, self.central.now())

    @defer.inlineCallbacks
    def _apply(self, charger_id, connector):
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
        # A refused session gets no TxProfile: it does not count.
        tx = tx if tx is not None and tx.running and tx.accepted else None
        if self._stops_instead_of_zero(charger, point):
            return (yield self._stop_instead_of_zero(charger, point, tx))
        result = None
        for strategy in self.cascade.candidates(charger, tx):
            amps = sendable(charger, self.wanted(point))
            result = yield self.sender.call(charger, self._profile(charger, point, strategy, tx),
                                            bounded=False)
            if result.accepted:
                self.cascade.accepted(charger_id, strategy)
                self.central.limit_in_force(
                    charger_id, connector, amps,
                    whole_charger=strategy.purpose == "ChargePointMaxProfile")
                self._mode_in_force(point)
                if self._state(point).stopped_tag is not None:
                    yield self._start_again(charger, point)
                return result
            if result.status in SILENT:
                # Do not walk the cascade through timeouts.
                return result
        self.log.warn("{id}: no charging profile was accepted for connector {connector}: "
                      "{detail}", id=charger_id, connector=connector, detail=result.detail)
        return result

    # docs/quirks.md#pause-ends-session: at 0 A such a charger ends its
    # session itself, and a limit sent later reaches no session. A 0 A
    # limit is never sent to it. A pause (an own limit of 0 A) stops its
    # session instead, and a new one is started remotely (it accepts that
    # in Finishing) once the limit is back; any other 0 A (the Smart Energy
    # Manager's) is the least current (L{sendable}).

    def _stops_instead_of_zero(self, charger, point):
        return charger.quirks.has("pause-ends-session") and in_steps(
            charger, self.own(point)) == 0

    @defer.inlineCallbacks
    def _stop_instead_of_zero(self, charger, point, tx):
        if tx is not None:
            result = yield self.sender.call(
                charger, m.RemoteStopTransactionRequest(transaction_id=tx.id), bounded=False)
            if not result.accepted:
                return result
            self._state(point).stopped_tag = tx.id_tag
            self._save_state(point)
        # Nothing flows: no session runs.
        self.central.limit_in_force(charger.id, point.connector, 0.0)
        self._mode_in_force(point)
        return CommandResult(True, "Accepted", "session stopped instead of 0 A" if tx
                             else "no session runs")

    @defer.inlineCallbacks
    def _start_again(self, charger, point):
        state = self._state(point)
        tag, state.stopped_tag = state.stopped_tag, None
        self._save_state(point)
        c = charger.connector(point.connector)
        if (c.transaction is not None and c.transaction.running) or c.status not in _PLUGGED:
            # Started again or unplugged meanwhile.
            return
        result = yield self.sender.call(charger, m.RemoteStartTransactionRequest(
            connector_id=point.connector, id_tag=tag), bounded=False)
        if not result.accepted:
            self.log.warn("{id}/{connector}: the session stopped for 0 A was not started again: "
                          "{detail}", id=charger.id, connector=point.connector,
                          detail=result.detail)

    def _mode_in_force(self, point):
        key, mode = (point.id, point.connector), self.mode(point)
        if self._modes.get(key) != mode:
            self._modes[key] = mode
            self.central.emit(ModeChanged(point.id, point.connector))

    def set_schedule(self, charger, point, transaction_id, start, periods):
        """
        Send a Smart Energy Manager plan (L{plan_profile}); coalesced per
        charging point: a plan asked for while one is on its way goes out
        after it, the newest of those only. So, like a limit put in force,
        it cannot pile up and is not refused "Busy" by a queue full of
        commands (it would wait for the next re-plan, hours away).

        @return: a Deferred firing with a L{CommandResult} of the plan sent
            after this request (this one or a newer).
        """
        key = (point.id, point.connector)
        self._plans[key] = (charger, point, transaction_id, start, periods)
        return coalesced(self._plan_runs, key, lambda: self._send_plan(key))

    def _send_plan(self, key):
        charger, point, transaction_id, start, periods = self._plans.pop(key)
        return self.sender.call(
            charger, plan_profile(charger, point, transaction_id, start, periods), bounded=False)
