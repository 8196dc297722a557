# -*- test-case-name: tests.test_limits,tests.test_planner -*-
"""
The electrical facts and the charging-profile numbering that the control
model and the Smart Energy Manager share: the minimum current, A to W, the
chargingProfileIds and who owns which stack level.

Plain numbers: no I/O, no OCPP types.
"""

#: IEC 61851-1: below 6 A the control pilot no longer allows charging, so a
#: positive limit is at least this; lower limits mean "pause".
MIN_CURRENT = 6.0

#: Nominal phase voltage to turn a current (A per phase) into power (evcc
#: does the same).
VOLTAGE = 230.0


def watts(amps, phases):
    """
    @return: the power (W) of C{amps} per phase on C{phases} phases.
    """
    return amps * VOLTAGE * phases


def amps(power, phases):
    """
    @return: the current per phase (A) that C{power} (W) on C{phases}
        phases amounts to.
    """
    return power / (VOLTAGE * phases)


#: chargingProfileId per purpose of the control model's current limit, plus
#: the connector: resending the same id replaces the profile instead of
#: piling new ones up (OCPP 1.6 §3.13.2).
PROFILE_IDS = {"ChargePointMaxProfile": 100, "TxDefaultProfile": 200, "TxProfile": 300}

#: chargingProfileId of the Smart Energy Manager's plan (a TxProfile), plus
#: the connector: never one of L{PROFILE_IDS}, so a plan and a limit never
#: replace each other by id.
PLAN_PROFILE_ID = 9100

#: Periods per charging schedule when the charger does not report its
#: C{ChargingScheduleMaxPeriods}; 24 is what most wallboxes accept.
MAX_PERIODS = 24


def plan_stack_level(max_level):
    """
    The stack level of the Smart Energy Manager's plan: the top one
    (C{ChargeProfileMaxStackLevel}, at least 1). OCPP 1.6 replaces a profile
    of the same purpose and stack level, and among TxProfiles the higher
    level wins: the plan, over the control model's TxProfile one below
    (L{limit_stack_level}). Over a TxDefaultProfile a TxProfile wins by
    purpose (OCPP 1.6 §3.13.1); a ChargePointMaxProfile stays an upper bound.

    @param max_level: the charger's C{ChargeProfileMaxStackLevel}, 0 when
        not reported.
    """
    return max(1, max_level)


def limit_stack_level(purpose, top, max_level):
    """
    The stack level of a current limit.

    @param purpose: its chargingProfilePurpose.
    @param top: True for the charger's top level, False for level 0 (some
        chargers, ABB and Wallbox, accept 0 only).
    @param max_level: the charger's C{ChargeProfileMaxStackLevel}, 0 when
        not reported.
    """
    level = max_level if top else 0
    if purpose == "TxProfile":
        # The top level belongs to the plan (L{plan_stack_level}).
        level = max(0, level - 1)
    return level
