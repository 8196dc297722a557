# -*- test-case-name: tests.test_limits,tests.test_workarounds -*-
"""
A current limit or a Smart Energy Manager plan written as a
SetChargingProfile: the cascade of profile kinds tried until a charger
accepts one (L{CASCADE}, L{Cascade} remembers per charger which one did),
the request of each (L{limit_profile}), and the plan as an Absolute
TxProfile (L{plan_profile}). The charger's workarounds shape them: stack
level 0 only, its current steps, never 0 A where that ends the session.
"""

from datetime import timedelta

import attr
from twisted.logger import Logger

from xxterocpp.control.configuration import integer, units
from xxterocpp.control.electrical import (
    MAX_PERIODS, MIN_CURRENT, PLAN_PROFILE_ID, PROFILE_IDS, limit_stack_level, plan_stack_level,
    watts,
)
from xxterocpp.ocpp import messages as m
from xxterocpp.quirks import round_down_to_steps

#: The charging profile combinations tried in order when a charger rejects
#: the one before (chargers differ in what they take): purpose (at the
#: connector, or at connector 0 for ChargePointMaxProfile) and kind; each is
#: tried at the highest stack level and at 0, in the units the charger
#: allows. TxProfile needs a running transaction.
CASCADE = (
    ("TxDefaultProfile", "Absolute"),
    ("TxDefaultProfile", "Relative"),
    ("ChargePointMaxProfile", "Absolute"),
    ("ChargePointMaxProfile", "Relative"),
    ("TxProfile", "Absolute"),
    ("TxProfile", "Relative"),
)


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


_STRATEGIES = {}


def _shared_strategy(strategy):
    """
    @return: one L{ProfileStrategy} object per distinct strategy, however
        many chargers remember it.
    """
    return _STRATEGIES.setdefault(strategy, strategy)


def in_steps(charger, amps):
    """
    @return: C{amps} rounded down to the charger's current steps
        (C{current-steps}), or C{amps} for a charger without.
    """
    # docs/quirks.md#current-steps: it takes only those and rounds other
    # values down itself.
    steps = charger.quirks.parameter("current-steps", "steps")
    return amps if steps is None else round_down_to_steps(amps, steps)


def sendable(charger, amps):
    """
    @return: the limit C{amps} as it can go to the charger: rounded down to
        its current steps (L{in_steps}), and never 0 A for a charger whose
        session ends there (C{pause-ends-session}): the least current
        instead, and a pause stops its session
        (L{xxterocpp.control.limits.Limits}).
    """
    amps = in_steps(charger, amps)
    if amps == 0 and charger.quirks.has("pause-ends-session"):
        # docs/quirks.md#pause-ends-session: the session is kept.
        steps = charger.quirks.parameter("current-steps", "steps") or ()
        amps = min((step for step in steps if step >= MIN_CURRENT), default=MIN_CURRENT)
    return amps


def _max_level(charger):
    if charger.quirks.has("stack-level-zero"):
        # docs/quirks.md#stack-level-zero: whatever it reports, it takes 0 only.
        return 0
    return integer(charger.configuration.get("ChargeProfileMaxStackLevel"), 0)


def _plan_level(charger):
    if charger.quirks.has("stack-level-zero"):
        # The plan then replaces a limit sent as TxProfile (and the other
        # way round): both are at most the point's own limit.
        return 0
    return plan_stack_level(_max_level(charger))


def _in_unit(unit, amps, phases):
    return amps if unit == "A" else round(watts(amps, phases), 1)


def limit_profile(charger, point, strategy, transaction, amps, now):
    """
    The SetChargingProfile of a current limit as C{strategy}: at the
    point's connector, or at connector 0 for a ChargePointMaxProfile;
    chargingProfileId from L{PROFILE_IDS}; an Absolute schedule starts a
    minute before C{now}.

    @param transaction: the running transaction a TxProfile names.
    @param amps: the limit (A per phase): the point's, or for a
        ChargePointMaxProfile, which limits the whole charger, the sum of
        its points'; made L{sendable}.
    @param now: the aware time now.
    """
    connector = 0 if strategy.purpose == "ChargePointMaxProfile" else point.connector
    schedule = m.ChargingSchedule(
        charging_rate_unit=strategy.unit,
        charging_schedule_period=(m.ChargingSchedulePeriod(
            start_period=0,
            limit=_in_unit(strategy.unit, sendable(charger, amps), point.phases)),),
        # OCPP 1.6 §3.13.4: in the past, so the profile holds at once.
        start_schedule=now - timedelta(minutes=1) if strategy.kind == "Absolute" else None,
    )
    return m.SetChargingProfileRequest(
        connector_id=connector, cs_charging_profiles=m.ChargingProfile(
            charging_profile_id=PROFILE_IDS[strategy.purpose] + connector,
            transaction_id=transaction.id if strategy.purpose == "TxProfile" else None,
            stack_level=limit_stack_level(strategy.purpose, strategy.stack == "max",
                                          _max_level(charger)),
            charging_profile_purpose=strategy.purpose,
            charging_profile_kind=strategy.kind,
            charging_schedule=schedule,
        ))


class Cascade:
    """
    Which L{ProfileStrategy} each charger accepted last, tried first the
    next time (L{candidates}), also after a restart.
    """

    log = Logger()

    def __init__(self, save):
        """
        @param save: C{save(scope, key, value)} persists a setting.
        """
        self._save = save
        self._strategies = {}

    def restore(self, charger_id, key, value):
        """
        Take over a persisted setting of a charger, if it is one of ours.
        """
        if key == "limit_strategy":
            self._strategies[charger_id] = _shared_strategy(ProfileStrategy(**value))

    def strategy(self, charger_id):
        """
        @return: the L{ProfileStrategy} the charger accepted last (also
            before a restart), or None.
        """
        return self._strategies.get(charger_id)

    def candidates(self, charger, transaction):
        """
        @param transaction: the running transaction, or None: then no
            TxProfile.
        @return: the L{ProfileStrategy}s to try, the remembered one first.
        """
        stacks = ("max", "zero") if _max_level(charger) > 0 else ("zero",)
        candidates = [
            ProfileStrategy(purpose, kind, stack, unit)
            for purpose, kind in CASCADE
            if purpose != "TxProfile" or transaction is not None
            for stack in stacks
            for unit in units(charger.configuration)
        ]
        remembered = self._strategies.get(charger.id)
        if remembered in candidates:
            candidates.remove(remembered)
            candidates.insert(0, remembered)
        return candidates

    def accepted(self, charger_id, strategy):
        """
        The charger accepted a limit as C{strategy}: remember it.
        """
        if self._strategies.get(charger_id) != strategy:
            self.log.info("{id}: current limits work as {strategy}", id=charger_id,
                          strategy=strategy)
            self._strategies[charger_id] = _shared_strategy(strategy)
            self._save(charger_id, "limit_strategy", attr.asdict(strategy))


def schedule_periods(charger):
    """
    @return: how many periods one charging schedule may have at C{charger}
        (its C{ChargingScheduleMaxPeriods}, at least 1).
    """
    return max(1, integer(charger.configuration.get("ChargingScheduleMaxPeriods"),
                          MAX_PERIODS))


def plan_profile(charger, point, transaction_id, start, periods):
    """
    The SetChargingProfile of a Smart Energy Manager plan: an Absolute
    TxProfile of the transaction, chargingProfileId L{PLAN_PROFILE_ID} +
    connector, at the charger's top stack level (L{plan_stack_level}; 0
    with C{stack-level-zero}), in A unless the charger takes W only.

    @param charger: the L{xxterocpp.domain.model.Charger}.
    @param point: the charging point's configuration.
    @param start: when the schedule starts (an aware datetime).
    @param periods: C{(offset, amps)} pairs: seconds from C{start}, A per
        phase; the first offset is 0.
    """
    allowed = units(charger.configuration)
    unit = "A" if "A" in allowed else allowed[0]
    schedule = m.ChargingSchedule(
        charging_rate_unit=unit, start_schedule=start,
        charging_schedule_period=tuple(
            m.ChargingSchedulePeriod(start_period=offset,
                                     limit=_in_unit(unit, sendable(charger, amps), point.phases),
                                     number_phases=point.phases)
            for offset, amps in periods))
    return m.SetChargingProfileRequest(
        connector_id=point.connector, cs_charging_profiles=m.ChargingProfile(
            charging_profile_id=PLAN_PROFILE_ID + point.connector,
            transaction_id=transaction_id,
            stack_level=_plan_level(charger),
            charging_profile_purpose="TxProfile",
            charging_profile_kind="Absolute",
            charging_schedule=schedule,
        ))
