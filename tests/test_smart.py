"""
Tests for L{xxterocpp.smart.manager}: the real domain fed decoded OCPP
messages, a fake clock and a fake controller that records the commands.
"""

import json
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from tests.fakes import FakeController, MemoryStore
from tests.test_control import ScriptedCharger
from xxterocpp.config import parse_config
from xxterocpp.control import PLAN_PROFILE_ID, CommandResult, Controller
from xxterocpp.ocpp import messages as m
from xxterocpp.ocpp.handlers import dispatcher
from xxterocpp.smart.manager import START_DELAY, NoSmartSession, SmartManager
from xxterocpp.domain.central import CentralSystem

TZ = ZoneInfo("Europe/Amsterdam")

#: What the fake controller answers every command with.
ACCEPTED = CommandResult(True, "Accepted")

CONFIG = """
[smart]
energy_wh = 11040
{smart}

[[charger]]
id = "CP1"
max_current = 16
smart_tag = "SMART"

[[charger]]
id = "CP2"
max_current = 16
normal_current = 16
smart_tag = "SMART2"
"""


class CreepingClock:
    """
    A clock on which time passes while the code under test reads it: every
    L{seconds} moves the wrapped L{Clock} on by C{creep} (a slow machine).
    """

    def __init__(self, clock, creep):
        self.clock, self.creep = clock, creep

    def seconds(self):
        self.clock.advance(self.creep)
        return self.clock.seconds()

    def callLater(self, delay, f, *args, **kwargs):
        return self.clock.callLater(delay, f, *args, **kwargs)


class Harness:
    """
    A manager on the real domain, a fake clock (local time Amsterdam) and a
    fake controller.
    """

    def build(self, smart="", start=datetime(2024, 3, 5, 20, 0, tzinfo=TZ), monotonic=False):
        """
        @param monotonic: the clock's timers on a monotonic clock started at
            1000 s, the time of day on a system clock of its own that
            L{step} steps (as in the service); by default both are the one
            fake clock.
        """
        self.clock = Clock()
        if monotonic:
            self.clock.advance(1000)
            self.offset = start.timestamp() - 1000
            wall = lambda: self.clock.seconds() + self.offset
        else:
            self.clock.advance(start.timestamp())
            wall = None
        self.config = parse_config(CONFIG.format(smart=smart))
        self.central = CentralSystem(self.config, MemoryStore(), self.clock, wall=wall)
        self.central.load()
        self.controller = FakeController(self.central, ACCEPTED)
        self.manager = SmartManager(self.central, self.controller, self.clock, self.config, TZ,
                                    wall=self.central.time.seconds, pace=self.central.time.pace)
        self.central.subscribe(self.manager.observe)
        self.manager.startService()
        self.addCleanup(self.manager.stopService)

    def handle(self, charger_id, action, payload):
        request, _ = m.decode(m.ACTIONS[action].request, payload)
        return self.successResultOf(defer.maybeDeferred(
            dispatcher(self.central, charger_id), action, request))

    def now(self):
        return datetime.fromtimestamp(self.central.time.seconds(), TZ)

    def step(self, seconds):
        """
        Step the system clock (built C{monotonic}) by C{seconds}.
        """
        self.offset += seconds

    def start(self, charger_id="CP1", tag="SMART", meter=0):
        response = self.handle(charger_id, "StartTransaction", {
            "connectorId": 1, "idTag": tag, "meterStart": meter,
            "timestamp": self.now().isoformat()})
        self.clock.advance(START_DELAY)
        return response.transaction_id

    def meter(self, charger_id, wh, amps=None):
        samples = [{"value": str(wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]
        if amps is not None:
            samples.append({"value": str(amps), "measurand": "Current.Import", "phase": "L1"})
        self.handle(charger_id, "MeterValues", {"connectorId": 1, "meterValue": [
            {"timestamp": self.now().isoformat(), "sampledValue": samples}]})

    def advance_to(self, hour, minute=0, days=0):
        target = (self.now() + timedelta(days=days)).replace(hour=hour, minute=minute, second=0)
        self.clock.advance(target.timestamp() - self.central.time.seconds())


class SmartManagerTests(Harness, SynchronousTestCase):
    def setUp(self):
        self.build()

    def test_smart_tag_gets_a_tx_profile(self):
        """
        StartTransaction with the smart tag: after the transactionId is out,
        the cheapest quarters after 23:00 go out as an Absolute TxProfile for
        that transaction.
        """
        tx = self.start()
        [(charger_id, payload)] = self.controller.schedules
        self.assertEqual(charger_id, "CP1")
        profile = payload["csChargingProfiles"]
        self.assertEqual((payload["connectorId"], profile["transactionId"],
                          profile["chargingProfilePurpose"], profile["chargingProfileKind"]),
                         (1, tx, "TxProfile", "Absolute"))
        periods = [(p["startPeriod"], p["limit"])
                   for p in profile["chargingSchedule"]["chargingSchedulePeriod"]]
        three_hours = 3 * 3600 - START_DELAY
        self.assertEqual(periods, [(0, 0.0), (three_hours, 16.0), (three_hours + 3600, 0.0),
                                   (11 * 3600 - START_DELAY, 16.0)])
        info = self.manager.session("CP1", 1)
        self.assertEqual((info["transaction_id"], info["reachable"], info["via"]),
                         (tx, True, "profile"))
        self.assertLess(info["cost"], info["immediate_cost"])
        self.assertEqual(info["departure"], "2024-03-06T07:00:00+01:00")

    def test_other_tags_are_not_smart(self):
        self.start(tag="04A1B2C3")
        self.start("CP2", tag="SMART")  # CP1's smart tag, not CP2's
        self.assertEqual(self.controller.schedules, [])
        self.assertIsNone(self.manager.session("CP1", 1))

    def test_price_telegram_replans(self):
        self.start()
        self.manager.set_price(0.05)
        _, periods = self.controller.profiles()[-1]
        # Four quarters from 20:00:05, the few Wh the first one fell short
        # at the minimum current.
        self.assertEqual(periods[:3], [(0, 16.0), (3595, 6.0), (3595 + 900, 0.0)])

    def test_update_session_replans(self):
        self.start()
        self.manager.update_session("CP1", 1, departure=time(23, 30), energy_wh=5520)
        info = self.manager.session("CP1", 1)
        self.assertEqual(info["departure"], "2024-03-05T23:30:00+01:00")
        self.assertFalse(info["reachable"] is False and info["energy_wh"] != 5520)
        _, periods = self.controller.profiles()[-1]
        self.assertEqual(periods[1][1], 16.0)
        self.assertEqual(periods[1][0], 3 * 3600 - START_DELAY)
        self.assertRaises(ValueError, self.manager.update_session, "CP1", 1, energy_wh=0)
        self.assertRaises(NoSmartSession, self.manager.update_session, "CP2", 1, energy_wh=1)

    def test_not_reachable_full_current_flagged(self):
        self.start()
        self.manager.update_session("CP1", 1, departure=time(20, 30))
        info = self.manager.session("CP1", 1)
        self.assertFalse(info["reachable"])
        _, periods = self.controller.profiles()[-1]
        self.assertEqual(periods, [(0, 16.0)])

    def test_car_behind_plan_replans_from_meter(self):
        """
        At 23:30 a car that should have 5520 Wh has 1000: re-planned from
        the metered energy, more cheap quarters.
        """
        self.start()
        self.advance_to(23, 30)
        sent = len(self.controller.profiles())
        self.meter("CP1", 1000)
        self.assertEqual(len(self.controller.profiles()), sent + 1)
        info = self.manager.session("CP1", 1)
        self.assertEqual(info["delivered_wh"], 1000)
        self.assertEqual(sum(1 for s in info["plan"] if s["current"]), 4)

    def test_car_on_plan_is_not_replanned(self):
        self.start()
        self.advance_to(23, 30)
        sent = len(self.controller.profiles())
        self.meter("CP1", 5400)
        self.assertEqual(len(self.controller.profiles()), sent)

    def test_charger_refusing_profiles_gets_limits_per_slot(self):
        self.controller.result = CommandResult(False, "Rejected")
        self.start()
        self.assertEqual(self.controller.steered(), [("CP1", 1, 0.0)])
        self.advance_to(23, 0)
        self.assertEqual(self.controller.steered()[-1], ("CP1", 1, 16.0))
        self.advance_to(0, 0, days=1)
        self.assertEqual(self.controller.steered()[-1], ("CP1", 1, 0.0))
        self.assertEqual(self.manager.session("CP1", 1)["via"], "limits")
        self.assertEqual(len(self.controller.profiles()), 1)

    def test_offline_charger_gets_plan_on_boot(self):
        self.controller.result = CommandResult(False, "NotConnected")
        self.start()
        self.controller.result = CommandResult(True, "Accepted")
        self.handle("CP1", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        self.clock.advance(0)
        self.assertEqual(len(self.controller.profiles()), 2)
        self.assertEqual(self.manager.session("CP1", 1)["via"], "profile")

    def test_session_ends(self):
        tx = self.start()
        self.handle("CP1", "StopTransaction", {"transactionId": tx, "meterStop": 100,
                                               "timestamp": self.now().isoformat()})
        self.assertIsNone(self.manager.session("CP1", 1))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_restart_adopts_running_smart_session(self):
        self.start()
        again = SmartManager(self.central, FakeController(self.central, ACCEPTED), self.clock,
                             self.config, TZ)
        self.central.subscribe(again.observe)
        again.startService()
        self.addCleanup(again.stopService)
        self.assertEqual(len(again.controller.profiles()), 1)


class SurplusTests(Harness, SynchronousTestCase):
    def setUp(self):
        self.build(start=datetime(2024, 6, 5, 12, 0, tzinfo=TZ))

    def test_surplus_followed_with_hysteresis(self):
        """
        The surplus starts charging after a minute above 6 A, the current
        follows it; a passing cloud does not stop it, a lasting one does.
        """
        self.start()
        self.assertEqual(self.controller.profiles()[-1][1][0], (0, 0.0))
        self.manager.set_surplus(8 * 690)
        self.clock.advance(30)
        self.assertEqual(self.controller.profiles()[-1][1][0], (0, 0.0))
        self.clock.advance(30)
        self.assertEqual(self.controller.profiles()[-1][1][0], (0, 8.0))
        # The export drops by what the car draws now: the car's own draw is
        # no reason to change.
        sent = len(self.controller.profiles())
        self.manager.set_surplus(0)
        self.assertEqual(len(self.controller.profiles()), sent)
        # A cloud: importing 5 kW for two minutes: the minimum current is
        # held, then the sun is back (the car draws 6 A, 2 A are exported).
        self.manager.set_surplus(-5000)
        self.assertEqual(self.controller.profiles()[-1][1][0], (0, 6.0))
        self.clock.advance(120)
        self.manager.set_surplus(2 * 690)
        self.assertEqual(self.controller.profiles()[-1][1][0], (0, 8.0))
        # Lasting: stops after five minutes.
        self.manager.set_surplus(-5000)
        self.clock.advance(300)
        self.assertEqual(self.controller.profiles()[-1][1][0], (0, 0.0))


    def test_injected_surplus_delays(self):
        """
        The follower's hysteresis delays are the manager's to set: 2 s to
        start, 5 s to stop.
        """
        self.manager.surplus_start_delay, self.manager.surplus_stop_delay = 2.0, 5.0
        self.start()
        self.manager.set_surplus(8 * 690)
        self.clock.advance(1.9)
        self.assertEqual(self.controller.profiles()[-1][1][0], (0, 0.0))
        self.clock.advance(0.1)
        self.assertEqual(self.controller.profiles()[-1][1][0], (0, 8.0))
        self.manager.set_surplus(-8 * 690)
        self.clock.advance(5)
        self.assertEqual(self.controller.profiles()[-1][1][0], (0, 0.0))


class DelayTests(Harness, SynchronousTestCase):
    def test_injected_start_delay(self):
        """
        The first plan goes out C{start_delay} after the StartTransaction;
        looking at the session meanwhile (status page) does not keep it
        from going out.
        """
        self.build()
        self.manager.start_delay = 0.5
        self.handle("CP1", "StartTransaction", {
            "connectorId": 1, "idTag": "SMART", "meterStart": 0,
            "timestamp": self.now().isoformat()})
        self.assertEqual(self.controller.profiles(), [])
        preview = self.manager.session("CP1", 1)
        self.assertEqual(preview["plan"][0]["current"], 0.0)
        self.clock.advance(0.4)
        self.assertEqual(self.controller.profiles(), [])
        self.clock.advance(0.1)
        self.assertEqual(len(self.controller.profiles()), 1)

    def test_first_plan_goes_out_on_a_slow_machine(self):
        """
        Planning that takes longer than the rest of C{start_delay} (a loaded
        controller) still wakes up for the first plan, not a slot later.
        """
        self.build()
        self.manager.start_delay = 0.001
        creeping = CreepingClock(self.clock, 0.0005)
        self.manager.clock = creeping
        self.handle("CP1", "StartTransaction", {
            "connectorId": 1, "idTag": "SMART", "meterStart": 0,
            "timestamp": self.now().isoformat()})
        self.assertEqual(self.controller.profiles(), [])
        creeping.creep = 0
        self.clock.advance(0.01)
        self.assertEqual(len(self.controller.profiles()), 1)

    def test_constructor_arguments(self):
        self.build()
        manager = SmartManager(self.central, self.controller, self.clock, self.config, TZ,
                               start_delay=0, surplus_start_delay=1, surplus_stop_delay=2)
        self.assertEqual((manager.start_delay, manager.surplus_start_delay,
                          manager.surplus_stop_delay), (0, 1, 2))


class SteppedClockTests(Harness, SynchronousTestCase):
    """
    Timers on a monotonic clock, slots on the system clock, and steps of
    the latter.
    """

    def setUp(self):
        self.build(monotonic=True)

    def test_slots_follow_the_time_of_day(self):
        """
        The start delay runs on the monotonic clock, the slots at the times
        of day of the plan (a charger refusing profiles gets them as
        limits).
        """
        self.controller.result = CommandResult(False, "Rejected")
        self.start()
        self.assertEqual(len(self.controller.profiles()), 1)
        self.assertEqual(self.controller.steered(), [("CP1", 1, 0.0)])
        self.advance_to(22, 59)
        self.assertEqual(self.controller.steered()[-1], ("CP1", 1, 0.0))
        self.advance_to(23, 0)
        self.assertEqual(self.controller.steered()[-1], ("CP1", 1, 16.0))

    def test_step_replans(self):
        """
        A step of the system clock forward to the cheap hours, noticed at
        the next meter reading, makes a new plan from the new time of day
        at once.
        """
        self.start()
        [(_, before)] = self.controller.profiles()
        self.step(3 * 3600)
        self.meter("CP1", 0)
        self.assertEqual(len(self.controller.profiles()), 1)
        self.clock.advance(0)
        [_, (_, after)] = self.controller.profiles()
        self.assertNotEqual(after, before)
        self.assertEqual(after[0], (0, 16.0))
        self.assertEqual(self.controller.steered()[-1], ("CP1", 1, 16.0))

    def test_step_back_replans(self):
        """
        A step back of an hour makes the clock wrong (the time goes on from
        the trusted one) and re-plans from that.
        """
        self.start()
        self.step(-3600)
        self.meter("CP1", 0)
        self.clock.advance(0)
        self.assertFalse(self.central.time.ok)
        self.assertEqual(len(self.controller.profiles()), 2)
        self.assertEqual(datetime.fromisoformat(self.manager.session("CP1", 1)["plan"][0]["start"]),
                         datetime(2024, 3, 5, 20, 0, 5, tzinfo=TZ))

    def test_a_flapping_clock_plans_nothing_again(self):
        """
        A system clock stepped back and forth by 30 s every 10 s (two time
        daemons fighting), within the tolerance: the time given out goes on
        without a step, so nothing is planned again and no profile sent
        (it was: a profile and three log lines at every step, 60 profiles
        in 10 minutes to each smart charger).
        """
        self.start()
        sent = len(self.controller.profiles())
        with capturedLogs() as events:
            for flap in range(60):
                self.step(-30 if flap % 2 == 0 else 30)
                self.meter("CP1", 0)
                self.clock.advance(10)
        self.assertTrue(self.central.time.ok)
        self.assertEqual(len(self.controller.profiles()), sent)
        self.assertEqual([formatEvent(e) for e in events if "stepped" in formatEvent(e)], [])

    def test_after_a_step_back_wakes_at_the_boundaries_of_the_time_given_out(self):
        """
        After a step back the time given out runs 1 % slow (docs/clock.md):
        the manager still wakes up once per slot, when that time reaches the
        slot's boundary, not 1 % of the slot before it (then again for the
        rest: twice a slot, for as long as the time runs slow).
        """
        self.start()
        self.step(-3600)
        self.meter("CP1", 0)
        self.clock.advance(0)
        self.assertFalse(self.central.time.ok)
        woken = []
        seen = set(self.clock.getDelayedCalls())
        first = self.central.time.seconds()
        for _ in range(3 * 3600):
            self.clock.advance(1)
            new = [call for call in self.clock.getDelayedCalls()
                   if call not in seen and call.func == self.manager._tick]
            seen.update(new)
            if new:
                woken.append(self.central.time.seconds() % 900)
        # One wake-up per quarter the time given out reached (11 in 3 h at
        # 99 %), each within the second after its boundary.
        boundaries = int(self.central.time.seconds() // 900 - first // 900)
        self.assertEqual((len(woken), boundaries), (11, 11), woken)
        self.assertTrue(all(at < 1 for at in woken), woken)


class SiteLimitTests(Harness, SynchronousTestCase):
    def test_shared_fairly_and_rebalanced(self):
        """
        A plain session and a smart one at 23:00 under a 20 A site limit:
        10 A each; when the plain one stops, the smart one is re-planned at
        16 A.
        """
        self.build("site_limit = 20.0", start=datetime(2024, 3, 5, 23, 0, tzinfo=TZ))
        plain = self.start("CP2", tag="04A1B2C3")
        self.assertEqual(self.controller.steered("CP2"), [("CP2", 1, 16.0)])
        self.start()
        self.assertEqual(self.controller.steered("CP2")[-1], ("CP2", 1, 10.0))
        self.assertEqual(self.controller.profiles()[-1][1][0], (0, 10.0))
        self.handle("CP2", "StopTransaction", {"transactionId": plain, "meterStop": 100,
                                               "timestamp": self.now().isoformat()})
        self.assertEqual(self.controller.profiles()[-1][1][0], (0, 16.0))

    def slow_car_beside_a_plain_session(self):
        """
        Under a 20 A site limit, a plain session on CP2 and a smart one on
        CP1 whose car draws only 4 A: CP2 gets the 14 A left over.
        """
        self.build("site_limit = 20.0", start=datetime(2024, 3, 5, 23, 0, tzinfo=TZ))
        self.start("CP2", tag="04A1B2C3")
        self.start()
        self.clock.advance(14 * 60)
        self.meter("CP1", 0, amps=4.0)
        self.clock.advance(60)
        self.assertEqual(self.controller.steered("CP2")[-1], ("CP2", 1, 14.0))

    def test_car_drawing_less_leaves_current_to_others(self):
        self.slow_car_beside_a_plain_session()

    def test_lost_meter_reading_falls_back_to_safe_share(self):
        self.slow_car_beside_a_plain_session()
        # No reading for longer than METER_FRESH: CP1 may draw its share.
        self.clock.advance(15 * 60)
        self.assertEqual(self.controller.steered("CP2")[-1], ("CP2", 1, 10.0))

    def test_too_small_limit_rotates(self):
        """
        8 A cannot give two cars 6 A: one charges, the other waits its
        turn, and they swap every quarter hour.
        """
        self.build("site_limit = 8.0", start=datetime(2024, 3, 5, 23, 0, tzinfo=TZ))
        self.start("CP2", tag="04A1B2C3")
        self.start()
        first = self.controller.steered("CP2")[-1]
        self.assertEqual(first, ("CP2", 1, 8.0))
        self.assertEqual(self.controller.profiles()[-1][1][0], (0, 0.0))
        self.clock.advance(15 * 60)
        self.assertEqual(self.controller.steered("CP2")[-1], ("CP2", 1, 0.0))
        self.assertEqual(self.controller.profiles()[-1][1][0], (0, 8.0))
        self.clock.advance(15 * 60)
        self.assertEqual(self.controller.steered("CP2")[-1], ("CP2", 1, 8.0))


class ChargerLimitsTests(Harness, SynchronousTestCase):
    def test_reported_max_periods_and_stack_level(self):
        """
        A charger that reported ChargingScheduleMaxPeriods 2 and
        ChargeProfileMaxStackLevel 1 gets two periods at stack level 1, and
        a new schedule when the first period left out starts.
        """
        self.build()
        configuration = self.central.chargers["CP1"].configuration
        for key, value in [("ChargingScheduleMaxPeriods", "2"),
                           ("ChargeProfileMaxStackLevel", "1")]:
            configuration[key] = m.KeyValue(key=key, readonly=True, value=value)
        self.start()
        [(_, payload)] = self.controller.schedules
        self.assertEqual(payload["csChargingProfiles"]["stackLevel"], 1)
        self.assertEqual(payload["csChargingProfiles"]["chargingProfileId"], 9101)
        self.assertEqual(len(self.controller.profiles()[-1][1]), 2)
        # 0 A, then 16 A from 23:00, then (left out) 0 A from 00:00.
        self.assertEqual(self.controller.profiles()[-1][1], [(0, 0.0), (3 * 3600 - 5, 16.0)])
        self.advance_to(23, 59)
        self.assertEqual(len(self.controller.profiles()), 1)
        self.meter("CP1", 11040)
        self.advance_to(0, 0, days=1)
        self.assertEqual(self.controller.profiles()[-1][1], [(0, 0.0), (7 * 3600, 16.0)])


class ReconfigureTests(Harness, SynchronousTestCase):
    def test_new_tariff_replans_and_removed_smart_tag_ends_smart_control(self):
        self.build()
        self.start()
        cheap_now = parse_config(CONFIG.format(smart='tariff = [{ from = "00:00", price = 0.1 }]'))
        self.manager.reconfigure(cheap_now)
        # Flat price: the earliest slots.
        self.assertEqual(self.controller.profiles()[-1][1][0], (0, 16.0))
        self.manager.reconfigure(parse_config(CONFIG.format(smart="").replace(
            'smart_tag = "SMART"\n', "")))
        self.assertIsNone(self.manager.session("CP1", 1))


CONTROLLED = """
[smart]
energy_wh = 11040
{smart}

[[tag]]
id = "GOOD"

[[charger]]
id = "CP1"
max_current = 32
normal_current = 16
smart_tag = "SMART"
"""

#: A tariff cheap all day: the plan charges at once.
CHEAP = 'tariff = [{ from = "00:00", price = 0.1 }]'


def refusing_tx_profiles(payload):
    """
    A charger's answer to SetChargingProfile that takes every profile but
    TxProfiles.
    """
    purpose = payload["csChargingProfiles"]["chargingProfilePurpose"]
    return {"status": "Rejected" if purpose == "TxProfile" else "Accepted"}


class ControlledHarness:
    """
    The manager on the real L{Controller} and domain, a fake clock (local
    time Amsterdam) and a scripted charger CP1 (32 A, normal 16 A), booted.
    """

    def build(self, smart="", start=datetime(2024, 3, 5, 20, 0, tzinfo=TZ), answer=None):
        self.clock = Clock()
        self.clock.advance(start.timestamp())
        self.store = MemoryStore()
        self.smart = smart
        self.launch(answer)

    def launch(self, answer=None):
        """
        Start (again, on the same store: a restart) and boot CP1.

        @param answer: CP1's answer to SetChargingProfile, as for
            L{ScriptedCharger.answers}.
        """
        self.config = parse_config(CONTROLLED.format(smart=self.smart))
        self.central = CentralSystem(self.config, self.store, self.clock)
        self.controller = Controller(self.central, self.clock)
        self.central.subscribe(self.controller.observe)
        self.central.load()
        self.manager = SmartManager(self.central, self.controller, self.clock, self.config, TZ)
        self.central.subscribe(self.manager.observe)
        self.manager.startService()
        self.addCleanup(self.manager.stopService)
        self.cp = ScriptedCharger(self.central, self.clock)
        if answer is not None:
            self.cp.answers["SetChargingProfile"] = answer
        self.cp.boot()
        self.settle()

    def settle(self):
        for _ in range(30):
            self.clock.advance(0)

    def result(self, d):
        self.settle()
        return self.successResultOf(d)

    def now(self):
        return datetime.fromtimestamp(self.clock.seconds(), TZ)

    def send(self, action, payload):
        """
        CP1 sends a CALL; the reactor turns until every answer is in.

        @return: the central system's answer.
        """
        unique_id = f"cp{len(self.cp.frames)}"
        self.cp.session.text_received(json.dumps([2, unique_id, action, payload]))
        self.settle()
        [answer] = [f[2] for f in self.cp.frames if f[:2] == [3, unique_id]]
        return answer

    def start_transaction(self, tag="SMART"):
        answer = self.send("StartTransaction", {
            "connectorId": 1, "idTag": tag, "meterStart": 0, "timestamp": self.now().isoformat()})
        self.assertEqual(answer["idTagInfo"]["status"], "Accepted")
        return answer["transactionId"]

    def stop_transaction(self, tx):
        self.send("StopTransaction", {"transactionId": tx, "meterStop": 100,
                                      "timestamp": self.now().isoformat()})

    def limits(self):
        """
        The control model's limits CP1 was sent: C{(purpose, A)} of every
        SetChargingProfile that is not the plan.
        """
        return [(p["csChargingProfiles"]["chargingProfilePurpose"],
                 p["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"])
                for p in self.cp.payloads("SetChargingProfile")
                if p["csChargingProfiles"]["chargingProfileId"] != PLAN_PROFILE_ID + 1]

    def plans(self):
        """
        The plans CP1 was sent, as C{[(startPeriod, A)]}.
        """
        return [[(period["startPeriod"], period["limit"]) for period in
                 p["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"]]
                for p in self.cp.payloads("SetChargingProfile")
                if p["csChargingProfiles"]["chargingProfileId"] == PLAN_PROFILE_ID + 1]


class SmartStartTests(ControlledHarness, SynchronousTestCase):
    """
    A smart session draws no more than its plan from its first second.
    """

    def test_remote_start_carries_no_current_until_planned(self):
        """
        A smart remote start asks for the session with the plan's TxProfile
        at 0 A (no transactionId yet); a plain one with none.
        """
        self.build()
        self.result(self.controller.start("CP1", 1, smart=True))
        [start] = self.cp.payloads("RemoteStartTransaction")
        profile = start["chargingProfile"]
        self.assertEqual(start["idTag"], "SMART")
        self.assertEqual((profile["chargingProfileId"], profile["chargingProfilePurpose"],
                          profile["stackLevel"], "transactionId" in profile),
                         (PLAN_PROFILE_ID + 1, "TxProfile", 8, False))
        self.assertEqual(profile["chargingSchedule"]["chargingSchedulePeriod"],
                         [{"startPeriod": 0, "limit": 0.0, "numberPhases": 3}])
        self.result(self.controller.start("CP1", 1, id_tag="GOOD"))
        self.assertNotIn("chargingProfile", self.cp.payloads("RemoteStartTransaction")[-1])

    def test_rfid_session_is_limited_before_it_has_its_transaction_id(self):
        """
        A smart tag's StartTransaction: the plan's current now (0 A, the
        cheap hours come at 23:00) is the limit before the charger has the
        answer; the TxProfile follows once it has.
        """
        self.build()
        self.cp.take()
        frames = len(self.cp.frames)
        self.start_transaction()
        sent = [(f[0], f[2] if f[0] == 2 else None) for f in self.cp.frames[frames:]]
        self.assertEqual(sent[:2], [(2, "SetChargingProfile"), (3, None)])
        self.assertEqual(self.limits(), [("TxDefaultProfile", 0.0)])
        self.assertEqual(self.controller.limit("CP1"), 0.0)
        self.assertEqual(self.plans(), [])
        self.clock.advance(START_DELAY)
        self.settle()
        self.assertEqual(len(self.plans()), 1)
        self.assertEqual(self.limits(), [("TxDefaultProfile", 0.0)])

    def test_plan_is_below_the_own_limit(self):
        """
        A plan charging at once does so at the point's own limit (normal,
        16 A), not its capacity (32 A): no more than the limit in force.
        """
        self.build(CHEAP)
        self.start_transaction()
        self.clock.advance(START_DELAY)
        self.settle()
        [plan] = self.plans()
        self.assertEqual(max(amps for _, amps in plan), 16.0)
        self.assertEqual(self.controller.limit("CP1"), 16.0)


class SmartEndTests(ControlledHarness, SynchronousTestCase):
    """
    However a smart session ends, the limit in force is the point's own
    one again.
    """

    def steered_to_nothing(self):
        """
        A smart session on a charger refusing TxProfiles: the plan (nothing
        before 23:00) goes out as a 0 A limit.

        @return: the transactionId.
        """
        self.build(answer=refusing_tx_profiles)
        self.assertEqual(self.controller.limit("CP1"), 16.0)
        tx = self.start_transaction()
        self.clock.advance(START_DELAY)
        self.settle()
        self.assertEqual(self.manager.session("CP1", 1)["via"], "limits")
        self.assertEqual(self.controller.limit("CP1"), 0.0)
        self.cp.take()
        return tx

    def test_own_limit_after_a_stop(self):
        """
        Stopped: the own limit goes out again; the next RFID session is not
        held at 0 A.
        """
        tx = self.steered_to_nothing()
        self.stop_transaction(tx)
        self.assertEqual(self.limits(), [("TxDefaultProfile", 16.0)])
        self.assertEqual(self.controller.limit("CP1"), 16.0)
        self.start_transaction("GOOD")
        self.clock.advance(3600)
        self.settle()
        self.assertEqual(self.limits(), [("TxDefaultProfile", 16.0)])
        self.assertEqual(self.controller.limit("CP1"), 16.0)

    def test_own_limit_after_a_reboot_lost_the_session(self):
        """
        The charger reboots, forgets the session and starts a plain one:
        the smart one is closed and the own limit is back.
        """
        self.steered_to_nothing()
        self.send("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        self.start_transaction("GOOD")
        self.assertEqual(self.limits()[-1], ("TxDefaultProfile", 16.0))
        self.assertEqual(self.controller.limit("CP1"), 16.0)

    def test_own_limit_after_a_restart_without_the_session(self):
        """
        The service restarts and the session is no longer running: the
        steering it left is dropped, the charger's next boot gets the own
        limit.
        """
        self.steered_to_nothing()
        self.manager.stopService()
        self.controller.shutdown()
        # The session ended while the service was down: after the restart
        # nothing runs at CP1.
        for tx in self.store.load_open_transactions():
            self.store.stop_transaction(tx.id, tx.meter_start, self.central.now(), "Local", None)
        self.launch(refusing_tx_profiles)
        self.assertEqual(self.limits(), [("TxDefaultProfile", 16.0)])
        self.assertEqual(self.controller.limit("CP1"), 16.0)


class SmartCapTests(ControlledHarness, SynchronousTestCase):
    """
    The own limit set during a smart session caps its plan; the limit in
    force is what the charger has.
    """

    def charging_at_once(self):
        self.build(CHEAP)
        self.start_transaction()
        self.clock.advance(START_DELAY)
        self.settle()
        self.assertEqual(self.plans()[-1][0], (0, 16.0))
        self.cp.take()

    def test_set_limit_caps_the_plan(self):
        """
        10 A written during the session: the plan is sent again below 10 A
        (after departure too), then the limit; both hold. Fast lifts it to
        the capacity.
        """
        self.charging_at_once()
        self.assertTrue(self.result(self.controller.set_limit("CP1", 1, 10)).accepted)
        self.assertEqual([a for _, a, _ in self.cp.calls], ["SetChargingProfile"] * 2)
        [plan] = self.plans()
        self.assertEqual(max(amps for _, amps in plan), 10.0)
        self.assertEqual(plan[-1][1], 10.0)
        self.assertEqual(self.limits(), [("TxDefaultProfile", 10.0)])
        self.assertEqual(self.controller.limit("CP1"), 10.0)
        self.result(self.controller.fast("CP1"))
        self.assertEqual(max(amps for _, amps in self.plans()[-1]), 32.0)
        self.assertEqual(self.controller.limit("CP1"), 32.0)

    def test_pause_and_resume_during_the_session(self):
        """
        Paused, the plan is nothing; resumed, it charges again.
        """
        self.charging_at_once()
        self.result(self.controller.pause("CP1"))
        self.assertEqual(self.plans()[-1], [(0, 0.0)])
        self.assertEqual(self.controller.limit("CP1"), 0.0)
        self.result(self.controller.resume("CP1"))
        self.assertEqual(self.plans()[-1][0], (0, 16.0))
        self.assertEqual(self.controller.limit("CP1"), 16.0)

    def test_limit_written_during_the_session_stays(self):
        """
        The limit written during the session is the point's own afterwards.
        """
        self.charging_at_once()
        tx = self.manager.session("CP1", 1)["transaction_id"]
        self.result(self.controller.set_limit("CP1", 1, 10))
        self.stop_transaction(tx)
        self.assertEqual(self.controller.limit("CP1"), 10.0)
        self.assertEqual(self.controller.own_limit("CP1"), 10.0)


class SiteShareTests(ControlledHarness, SynchronousTestCase):
    def test_share_of_a_plain_session_ends_with_it(self):
        """
        Under a 10 A site limit a plain session gets 10 A; after it the own
        limit (16 A) holds again, it was never overwritten.
        """
        self.build("site_limit = 10.0")
        tx = self.start_transaction("GOOD")
        self.assertEqual(self.controller.limit("CP1"), 10.0)
        self.assertEqual(self.controller.own_limit("CP1"), 16.0)
        self.stop_transaction(tx)
        self.assertEqual(self.controller.limit("CP1"), 16.0)


class ControllerCollisionTests(SynchronousTestCase):
    """
    The control model's limits and the plan on one charger (the real
    L{Controller}, a scripted charger): distinct chargingProfileIds, and the
    plan at the top stack level, above the control model's TxProfile.
    """

    def test_plan_and_controller_tx_profile_do_not_replace_each_other(self):
        from xxterocpp.control import PROFILE_IDS

        clock = Clock()
        clock.advance(datetime(2024, 3, 5, 20, 0, tzinfo=TZ).timestamp())
        config = parse_config(CONFIG.format(smart="") + '[[tag]]\nid = "GOOD"\n')
        central = CentralSystem(config, MemoryStore(), clock)
        controller = Controller(central, clock)
        central.subscribe(controller.observe)
        central.load()
        manager = SmartManager(central, controller, clock, config, TZ, start_delay=1)
        central.subscribe(manager.observe)
        manager.startService()
        self.addCleanup(manager.stopService)
        cp = ScriptedCharger(central, clock)
        # A charger taking TxProfiles only: the control model's limit goes
        # out as a TxProfile too (the cascade's last resort).
        cp.answers["SetChargingProfile"] = lambda p: {"status": (
            "Accepted" if p["csChargingProfiles"]["chargingProfilePurpose"] == "TxProfile"
            else "NotSupported")}
        cp.boot()
        cp.session.text_received(json.dumps([2, "s", "StartTransaction", {
            "connectorId": 1, "idTag": "SMART", "meterStart": 0,
            "timestamp": "2024-03-05T19:00:00Z"}]))
        clock.advance(0)
        clock.advance(1)
        cp.take()
        d = controller.set_limit("CP1", 1, 10)
        clock.advance(0)
        self.assertTrue(self.successResultOf(d).accepted)
        profiles = [p["csChargingProfiles"] for p in cp.payloads("SetChargingProfile")]
        tx_profiles = [(p["chargingProfileId"], p["stackLevel"]) for p in profiles
                       if p["chargingProfilePurpose"] == "TxProfile"]
        # The limit set during the session caps the plan: the plan goes out
        # again first, then the cascade's TxProfile, one level below the
        # top (8).
        self.assertEqual(tx_profiles, [(9101, 8), (PROFILE_IDS["TxProfile"] + 1, 7)])
        manager.update_session("CP1", 1, energy_wh=5000)
        clock.advance(0)
        plan = cp.payloads("SetChargingProfile")[-1]["csChargingProfiles"]
        self.assertEqual((plan["chargingProfileId"], plan["stackLevel"],
                          plan["chargingProfilePurpose"]), (9101, 8, "TxProfile"))
