"""
Tests of L{xxterocpp.control.limits}: current limits through the profile
cascade, and the Smart Energy Manager's schedules, against a scripted
charger on a fake clock.
"""

import json
from datetime import datetime, time, timezone

from twisted.trial.unittest import SynchronousTestCase

from tests.test_control import CONFIGURATION, ControllerHarness, ScriptedCharger
from xxterocpp.control import Controller, UnknownChargingPoint
from xxterocpp.control.electrical import MAX_PERIODS, PLAN_PROFILE_ID
from xxterocpp.control.chargingprofiles import plan_profile
from xxterocpp.domain.events import LimitChanged
from xxterocpp.ocpp import messages as m
from xxterocpp.smart import planner


class LimitTests(ControllerHarness, SynchronousTestCase):
    """
    Current limits as charging profiles.
    """

    def test_cascade_fallback_is_remembered_across_restarts(self):
        """
        A charger taking only ChargePointMaxProfile, Relative, at stack
        level 0: found by the cascade, tried first from then on, also after
        a restart.
        """
        def only(p):
            ok = self.profile(p)[:4] == (0, "ChargePointMaxProfile", "Relative", 0)
            return {"status": "Accepted" if ok else "Rejected"}

        cp = ScriptedCharger(self.central, self.clock)
        cp.answers["SetChargingProfile"] = only
        cp.boot()
        tried = [self.profile(p)[:4] for p in cp.payloads("SetChargingProfile")]
        self.assertEqual(tried, [
            (1, "TxDefaultProfile", "Absolute", 8), (1, "TxDefaultProfile", "Absolute", 0),
            (1, "TxDefaultProfile", "Relative", 8), (1, "TxDefaultProfile", "Relative", 0),
            (0, "ChargePointMaxProfile", "Absolute", 8),
            (0, "ChargePointMaxProfile", "Absolute", 0),
            (0, "ChargePointMaxProfile", "Relative", 8),
            (0, "ChargePointMaxProfile", "Relative", 0)])
        self.assertNotIn("startSchedule", cp.payloads("SetChargingProfile")[-1][
            "csChargingProfiles"]["chargingSchedule"])
        self.assertEqual(self.controller.limit("CP1"), 16.0)
        cp.take()
        self.assertTrue(self.result(self.controller.set_limit("CP1", 1, 20)).accepted)
        self.assertEqual([self.profile(p) for p in cp.payloads("SetChargingProfile")],
                         [(0, "ChargePointMaxProfile", "Relative", 0, "A", 20.0)])

        self.start()
        cp = ScriptedCharger(self.central, self.clock)
        cp.answers["SetChargingProfile"] = only
        cp.boot()
        self.assertEqual([self.profile(p) for p in cp.payloads("SetChargingProfile")],
                         [(0, "ChargePointMaxProfile", "Relative", 0, "A", 20.0)])

    def test_tx_profile_on_the_running_transaction(self):
        """
        A charger taking only a TxProfile gets it with the transactionId.
        """
        cp = ScriptedCharger(self.central, self.clock)
        cp.answers["SetChargingProfile"] = lambda p: {"status": (
            "Accepted" if p["csChargingProfiles"]["chargingProfilePurpose"] == "TxProfile"
            else "NotSupported")}
        cp.boot()
        self.assertIsNone(self.controller.limit("CP1"))
        cp.session.text_received(json.dumps([2, "s", "StartTransaction", {
            "connectorId": 1, "idTag": "GOOD", "meterStart": 0,
            "timestamp": "2026-01-01T00:00:00Z"}]))
        self.clock.advance(0)
        tx = self.central.chargers["CP1"].connectors[1].transaction
        cp.take()
        self.assertTrue(self.result(self.controller.set_limit("CP1", 1, 10)).accepted)
        last = cp.payloads("SetChargingProfile")[-1]["csChargingProfiles"]
        self.assertEqual((last["chargingProfilePurpose"], last["transactionId"]), ("TxProfile", tx.id))
        self.assertEqual(self.controller.limit("CP1"), 10.0)

    def test_watts_when_the_charger_wants_power(self):
        """
        docs/quirks.md#q28: C{ChargingScheduleAllowedChargingRateUnit} "W": the limit
        goes in watts, A x 230 V x phases.
        """
        cp = self.connect(configuration=dict(
            CONFIGURATION, ChargingScheduleAllowedChargingRateUnit="W"))
        self.assertEqual(self.profile(cp.payloads("SetChargingProfile")[0])[4:], ("W", 11040.0))

    def test_rapid_limit_changes_are_coalesced(self):
        """
        Limits arriving while SetChargingProfile is outstanding: the last
        one wins, one more call, every caller gets an answer.
        """
        cp = self.connect()
        cp.take()
        cp.answers["SetChargingProfile"] = None
        results = [self.controller.set_limit("CP1", 1, amps) for amps in (10, 12, 14, 15.55)]
        self.clock.advance(0)
        self.assertEqual([self.profile(p)[5] for p in cp.payloads("SetChargingProfile")], [10.0])
        cp.answer(cp.calls[-1][0], {"status": "Accepted"})
        self.assertEqual([self.profile(p)[5] for p in cp.payloads("SetChargingProfile")],
                         [10.0, 15.6])
        cp.answer(cp.calls[-1][0], {"status": "Accepted"})
        self.assertTrue(all(self.successResultOf(d).accepted for d in results))
        self.assertEqual(self.controller.limit("CP1"), 15.6)
        self.assertEqual([e.limit for e in self.events if isinstance(e, LimitChanged)],
                         [16.0, 10.0, 15.6])

    def test_limit_reapplied_after_reboot(self):
        """
        docs/quirks.md#q30: every BootNotification puts the limit in force again.
        """
        cp = self.connect()
        self.controller.set_limit("CP1", 1, 9)
        self.clock.advance(0)
        cp.take()
        cp.boot()
        self.assertEqual([self.profile(p)[5] for p in cp.payloads("SetChargingProfile")], [9.0])

    def test_limit_set_offline_is_applied_at_boot(self):
        """
        A limit set while the charger is away is kept and applied when it
        boots.
        """
        result = self.result(self.controller.set_limit("CP1", 1, 7))
        self.assertEqual(result.status, "NotConnected")
        cp = self.connect()
        self.assertEqual([self.profile(p)[5] for p in cp.payloads("SetChargingProfile")], [7.0])

    def test_limits_are_clamped(self):
        """
        docs/ocpp.md#current-limit: 0, or 6 .. max_current, one decimal.
        """
        point = self.central.config.charger("CP1", 1)
        for amps, limit in [(-3, 0), (0, 0), (0.04, 0), (2, 6), (6.04, 6), (16.26, 16.3),
                            (40, 32)]:
            self.assertEqual(Controller.clamp(point, amps), limit, amps)

    def test_pause_resume_normal_fast(self):
        """
        Pause is 0 A, resume goes back to the limit before; normal and fast
        are normal_current and max_current.
        """
        cp = self.connect()
        cp.take()
        self.result(self.controller.set_limit("CP1", 1, 11))
        self.result(self.controller.pause("CP1"))
        self.result(self.controller.pause("CP1"))
        self.assertEqual(self.controller.limit("CP1"), 0.0)
        self.result(self.controller.resume("CP1"))
        self.assertTrue(self.result(self.controller.resume("CP1")).accepted)
        self.result(self.controller.fast("CP1"))
        self.result(self.controller.normal("CP1"))
        self.assertEqual([self.profile(p)[5] for p in cp.payloads("SetChargingProfile")],
                         [11.0, 0.0, 0.0, 11.0, 32.0, 16.0])

class ScheduleTests(ControllerHarness, SynchronousTestCase):
    """
    The Smart Energy Manager's plans as SetChargingProfile
    (L{Controller.set_schedule}).
    """

    START = datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc)

    def charging(self, **kwargs):
        """
        @return: a booted charger with a transaction at connector 1, its
            calls so far forgotten, and the transaction id.
        """
        cp = self.connect(**kwargs)
        cp.session.text_received(json.dumps([2, "s", "StartTransaction", {
            "connectorId": 1, "idTag": "GOOD", "meterStart": 0,
            "timestamp": "2026-01-01T00:00:00Z"}]))
        self.clock.advance(0)
        cp.take()
        return cp, self.central.chargers["CP1"].connectors[1].transaction.id

    def schedule(self, cp, tx, periods=((0, 0.0), (3600, 16.0))):
        result = self.result(self.controller.set_schedule("CP1", 1, tx, self.START, periods))
        [payload] = cp.payloads("SetChargingProfile")
        return result, payload

    def test_plan_is_a_tx_profile_at_the_top_stack_level(self):
        """
        A plan goes out as an Absolute TxProfile of the transaction, id
        9100 + connector, at the charger's ChargeProfileMaxStackLevel, in A
        with the point's phases.
        """
        cp, tx = self.charging()
        result, payload = self.schedule(cp, tx)
        self.assertTrue(result.accepted)
        self.assertEqual(payload, {"connectorId": 1, "csChargingProfiles": {
            "chargingProfileId": PLAN_PROFILE_ID + 1, "transactionId": tx, "stackLevel": 8,
            "chargingProfilePurpose": "TxProfile", "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "startSchedule": "2026-01-01T00:00:05.000Z", "chargingRateUnit": "A",
                "chargingSchedulePeriod": [
                    {"startPeriod": 0, "limit": 0.0, "numberPhases": 3},
                    {"startPeriod": 3600, "limit": 16.0, "numberPhases": 3}]}}})
        self.assertEqual(m.decode(m.SetChargingProfileRequest, payload)[1], [])
        # The plan is no current limit of the control model.
        self.assertEqual(self.controller.limit("CP1"), 16.0)

    def test_stack_level_without_a_reported_maximum(self):
        """
        A charger that does not report ChargeProfileMaxStackLevel, or
        reports 0, gets the plan at level 1.
        """
        for reported in ({}, {"ChargeProfileMaxStackLevel": "0"}):
            configuration = {k: v for k, v in CONFIGURATION.items()
                             if k != "ChargeProfileMaxStackLevel"}
            cp, tx = self.charging(configuration=dict(configuration, **reported))
            _, payload = self.schedule(cp, tx)
            self.assertEqual(payload["csChargingProfiles"]["stackLevel"], 1, reported)

    def test_watts_for_a_charger_without_current(self):
        """
        A charger that allows W only gets the plan in W (A x 230 V x
        phases); one that allows both gets A.
        """
        for allowed, unit, limit in [("Power", "W", 11040.0), ("Power,Current", "A", 16.0)]:
            cp, tx = self.charging(configuration=dict(
                CONFIGURATION, ChargingScheduleAllowedChargingRateUnit=allowed))
            _, payload = self.schedule(cp, tx)
            schedule = payload["csChargingProfiles"]["chargingSchedule"]
            self.assertEqual((schedule["chargingRateUnit"],
                              schedule["chargingSchedulePeriod"][-1]["limit"]), (unit, limit))

    def test_refused_and_offline(self):
        """
        The charger's refusal comes back as such; offline nothing is sent.
        """
        cp, tx = self.charging()
        cp.answers["SetChargingProfile"] = {"status": "Rejected"}
        result, _ = self.schedule(cp, tx)
        self.assertEqual((result.accepted, result.status), (False, "Rejected"))
        cp.session.connection_lost()
        self.central.connections.disconnected("CP1", cp.session)
        result = self.result(self.controller.set_schedule("CP1", 1, tx, self.START, [(0, 6.0)]))
        self.assertEqual(result.status, "NotConnected")

    def test_schedule_periods(self):
        """
        The charger's ChargingScheduleMaxPeriods (at least 1), or 24.
        """
        self.connect()
        configuration = self.central.chargers["CP1"].configuration
        self.assertEqual(self.controller.schedule_periods("CP1"), MAX_PERIODS)
        for value, periods in [("2", 2), ("0", 1), ("many", MAX_PERIODS)]:
            configuration["ChargingScheduleMaxPeriods"] = m.KeyValue(
                key="ChargingScheduleMaxPeriods", readonly=True, value=value)
            self.assertEqual(self.controller.schedule_periods("CP1"), periods, value)

    def test_planner_schedule_is_a_valid_set_charging_profile(self):
        """
        A planner's schedule makes a SetChargingProfile that passes the
        schema of the OCPP side.
        """
        now = datetime(2024, 3, 5, 17, 7, tzinfo=timezone.utc)
        p = planner.plan(now, time(7), 20000, planner.Capacity(32, 1),
                         planner.Tariff([(time(0), 0.30), (time(23), 0.18), (time(7), 0.30)]),
                         tz=timezone.utc)
        schedule = planner.to_schedule(p)
        self.connect()
        request = plan_profile(self.central.chargers["CP1"], self.central.config.charger("CP1", 1),
                               7, schedule.start, schedule.periods)
        decoded, warnings = m.decode(m.SetChargingProfileRequest, m.encode(request))
        self.assertEqual((decoded, warnings), (request, []))
        self.assertEqual(len(decoded.cs_charging_profiles.charging_schedule
                             .charging_schedule_period), len(schedule.periods))

    def test_unknown_charging_point(self):
        for call in [lambda: self.controller.set_schedule("CP1", 2, 1, self.START, [(0, 6.0)]),
                     lambda: self.controller.schedule_periods("NOPE")]:
            self.assertRaises(UnknownChargingPoint, call)


class SteeringTests(ControllerHarness, SynchronousTestCase):
    """
    The Smart Energy Manager's limit beside the point's own: never above
    it, and the own limit back when the steering ends.
    """

    def limits(self, cp):
        return [self.profile(p)[5] for p in cp.payloads("SetChargingProfile")]

    def test_steered_below_the_own_limit_until_released(self):
        """
        Steered to 20 A, the point gets its own 16 A; to 8 A, 8 A (the same
        again sends nothing); released, 16 A again. The own limit is never
        touched.
        """
        cp = self.connect()
        cp.take()
        for amps in (20, 8, 8):
            self.assertTrue(self.result(self.controller.steer("CP1", 1, amps)).accepted)
        self.assertEqual(self.limits(cp), [16.0, 8.0])
        self.assertEqual(self.controller.limit("CP1"), 8.0)
        self.assertEqual(self.controller.own_limit("CP1"), 16.0)
        self.assertTrue(self.result(self.controller.release("CP1", 1)).accepted)
        self.assertEqual(self.limits(cp), [16.0, 8.0, 16.0])
        self.assertEqual(self.controller.limit("CP1"), 16.0)
        self.assertEqual(self.result(self.controller.release("CP1", 1)).detail, "not steered")

    def test_steering_is_kept_across_a_restart(self):
        """
        Until released, the steered limit is what a boot puts in force, also
        after a restart.
        """
        self.connect()
        self.result(self.controller.steer("CP1", 1, 0))
        self.start()
        cp = self.connect()
        self.assertEqual(self.limits(cp), [0.0])
        self.result(self.controller.release("CP1", 1))
        self.assertEqual(self.limits(cp), [0.0, 16.0])

    def test_own_limit_changes_of_a_steered_point_are_announced(self):
        """
        Set, paused or resumed while steered, the own limit is announced
        (the plan must stay below it) before it goes out; it caps the
        steered limit at once.
        """
        cp = self.connect()
        seen = []
        self.controller.observe_limits(
            lambda *key: seen.append((key, len(cp.payloads("SetChargingProfile")))))
        self.result(self.controller.set_limit("CP1", 1, 20))
        self.assertEqual(seen, [])
        self.result(self.controller.steer("CP1", 1, 12))
        cp.take()
        self.result(self.controller.set_limit("CP1", 1, 10))
        self.result(self.controller.pause("CP1"))
        self.result(self.controller.resume("CP1"))
        self.assertEqual(seen, [(("CP1", 1), 0), (("CP1", 1), 1), (("CP1", 1), 2)])
        self.assertEqual(self.limits(cp), [10.0, 0.0, 10.0])
        self.result(self.controller.release("CP1", 1))
        self.assertEqual(self.controller.limit("CP1"), 10.0)
