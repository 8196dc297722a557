# -*- test-case-name: tests.test_upstream_relay,tests.test_upstream_attacks -*-
"""
The building's limits win over the back office's: a charging profile it
sends is capped to the current limit in force at the charging point, and
one that would replace a profile of the controller (same id, or the same
purpose at a stack level the controller uses) is refused.
"""

from xxterocpp.control.configuration import integer
from xxterocpp.control.electrical import (
    PLAN_PROFILE_ID, PROFILE_IDS, limit_stack_level, plan_stack_level, watts)
from xxterocpp.ocpp import messages as m


class Collision(Exception):
    """
    The back office's profile would replace one of the controller's.
    """


def limit_in_force(central, charger_id, connector, purpose="TxDefaultProfile"):
    """
    @return: the current (A per phase) the building allows at a connector
        now: the limit the charger accepted from the controller, else the
        point's max_current. At connector 0 a ChargePointMaxProfile limits
        the whole charger: the sum over its points (as the controller's own
        has it); another purpose there holds at each point: the lowest.
        None for a connector that is no charging point.
    """
    points = central.config.charging_points(charger_id)
    if connector:
        points = [p for p in points if p.connector == connector]
    if not points:
        return None
    charger = central.chargers[charger_id]
    limits = [point.max_current if limit is None else limit
              for point, limit in ((p, charger.connector(p.connector).limit) for p in points)]
    return sum(limits) if purpose == "ChargePointMaxProfile" else min(limits)


def _phases(central, charger_id, connector):
    points = central.config.charging_points(charger_id)
    return max((p.phases for p in points if not connector or p.connector == connector),
               default=3)


def controller_profiles(central, charger_id):
    """
    @return: C{(ids, levels)}: the chargingProfileIds the controller uses
        at the charger, and the C{(purpose, stack level)} pairs it may use.
    """
    charger = central.chargers[charger_id]
    connectors = [0] + [p.connector for p in central.config.charging_points(charger_id)]
    ids = {base + c for base in (*PROFILE_IDS.values(), PLAN_PROFILE_ID) for c in connectors}
    top = integer(charger.configuration.get("ChargeProfileMaxStackLevel"), 0)
    levels = {(purpose, limit_stack_level(purpose, at_top, top))
              for purpose in PROFILE_IDS for at_top in (True, False)}
    levels.add(("TxProfile", plan_stack_level(top)))
    return ids, levels


def cap(central, charger_id, connector, profile):
    """
    @param profile: the back office's C{ChargingProfile} for C{connector}.
    @return: C{profile} with every limit of its schedule at most the limit
        in force (in A, or the same in W for C{numberPhases}).
    @raise Collision: it would replace a profile of the controller.
    """
    ids, levels = controller_profiles(central, charger_id)
    if profile.charging_profile_id in ids:
        raise Collision(f"chargingProfileId {profile.charging_profile_id} is the controller's")
    if (profile.charging_profile_purpose, profile.stack_level) in levels:
        raise Collision(f"{profile.charging_profile_purpose} at stack level"
                        f" {profile.stack_level} is the controller's")
    amps = limit_in_force(central, charger_id, connector, profile.charging_profile_purpose)
    if amps is None:
        raise Collision(f"connector {connector} is no charging point of the controller")
    schedule = profile.charging_schedule
    phases = _phases(central, charger_id, connector)
    periods = []
    for period in schedule.charging_schedule_period:
        # The power of more phases than the point has would be drawn on the
        # phases it has.
        highest = amps if schedule.charging_rate_unit == "A" else watts(
            amps, min(period.number_phases or phases, phases))
        periods.append(m.replace(period, limit=min(period.limit, round(highest, 1))))
    return m.replace(profile, charging_schedule=m.replace(
        schedule, charging_schedule_period=tuple(periods)))
