"""
Tests for L{xxterocpp.smart.planner}.
"""

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from twisted.trial.unittest import SynchronousTestCase

from xxterocpp.smart.planner import (
    Capacity,
    SurplusFollower,
    Tariff,
    departure_after,
    plan,
    rotate,
    share,
    to_schedule,
)

TZ = ZoneInfo("Europe/Amsterdam")
NIGHT = Tariff([(time(0), 0.30), (time(23), 0.18), (time(7), 0.30)])
#: 16 A on three phases: 11040 W, 2760 Wh a quarter hour.
WALLBOX = Capacity(16, 3)


def local(*args):
    return datetime(*args, tzinfo=TZ)


def charging(p):
    """
    The slots of plan C{p} with current, as (local start, current).
    """
    return [(s.start.astimezone(TZ).strftime("%H:%M"), s.current) for s in p.slots if s.current]


class TariffTests(SynchronousTestCase):
    def test_night_tariff_later_entries_win(self):
        """
        The issue's example is a night tariff: 0.18 from 23:00 to 07:00.
        """
        prices = {t: NIGHT.price(time(*t)) for t in [(0, 0), (6, 59), (7, 0), (22, 59), (23, 0)]}
        self.assertEqual(prices, {(0, 0): 0.18, (6, 59): 0.18, (7, 0): 0.30, (22, 59): 0.30,
                                  (23, 0): 0.18})

    def test_same_start_later_wins(self):
        tariff = Tariff([(time(0), 0.30), (time(23), 0.18), (time(23), 0.20)])
        self.assertEqual((tariff.price(time(12)), tariff.price(time(23, 30))), (0.30, 0.20))
        self.assertEqual(Tariff([(time(5), 1.0), (time(5), 2.0)]).price(time(1)), 2.0)

    def test_single_entry_is_flat(self):
        self.assertEqual(Tariff([(time(8), 0.25)]).changes, ())

    def test_empty(self):
        self.assertRaises(ValueError, Tariff, [])


class DepartureTests(SynchronousTestCase):
    def test_across_midnight(self):
        self.assertEqual(departure_after(local(2024, 3, 5, 22, 0), time(7), TZ),
                         local(2024, 3, 6, 7, 0))
        self.assertEqual(departure_after(local(2024, 3, 6, 6, 0), time(7), TZ),
                         local(2024, 3, 6, 7, 0))

    def test_datetime_as_is(self):
        when = local(2024, 3, 8, 9, 30)
        self.assertEqual(departure_after(local(2024, 3, 5, 22, 0), when, TZ), when)

    def test_daylight_saving_night(self):
        """
        The night summer time starts still ends at 07:00 local time.
        """
        self.assertEqual(departure_after(local(2024, 3, 30, 22, 0), time(7), TZ).utcoffset(),
                         timedelta(hours=2))


class PlanTests(SynchronousTestCase):
    def test_cheapest_slots_before_departure_across_midnight(self):
        """
        Plugged in at 18:07 with 07:00 departure, 20 kWh go into the first
        cheap quarters after 23:00 (ties: earlier), the last at reduced
        current, never below 6 A.
        """
        p = plan(local(2024, 3, 5, 18, 7), time(7), 20000, WALLBOX, NIGHT, tz=TZ)
        self.assertEqual(charging(p), [("23:00", 16.0), ("23:15", 16.0), ("23:30", 16.0),
                                       ("23:45", 16.0), ("00:00", 16.0), ("00:15", 16.0),
                                       ("00:30", 16.0), ("00:45", 6.0)])
        self.assertTrue(p.reachable)
        self.assertEqual(p.departure, local(2024, 3, 6, 7, 0))
        self.assertGreaterEqual(p.planned_wh, 20000)
        self.assertAlmostEqual(p.cost, p.planned_wh / 1000 * 0.18)
        self.assertAlmostEqual(p.immediate_cost, 20000 / 1000 * 0.30, places=1)

    def test_partial_slot_reduced_current(self):
        """
        What is missing after the full slots is delivered at just enough
        current (rounded up to 0.1 A).
        """
        p = plan(local(2024, 3, 5, 23, 0), time(7), 2760 + 2000, WALLBOX, NIGHT, tz=TZ)
        self.assertEqual(charging(p), [("23:00", 16.0), ("23:15", 11.6)])

    def test_not_reachable_charges_full_at_once(self):
        p = plan(local(2024, 3, 6, 6, 0), time(7), 20000, WALLBOX, NIGHT, tz=TZ)
        self.assertFalse(p.reachable)
        self.assertEqual({s.current for s in p.slots}, {16.0})
        self.assertEqual(p.slots[0].start, local(2024, 3, 6, 6, 0))

    def test_nothing_needed(self):
        p = plan(local(2024, 3, 6, 1, 0), time(7), 0, WALLBOX, NIGHT, tz=TZ)
        self.assertEqual((charging(p), p.cost, p.reachable), ([], 0, True))

    def test_price_change_mid_session(self):
        """
        Re-planned from a new now with the energy still missing, a dynamic
        price below the tariff pulls charging to now; it holds until the
        tariff changes.
        """
        now = local(2024, 3, 5, 20, 0)
        first = plan(now, time(7), 5000, WALLBOX, NIGHT, tz=TZ)
        self.assertEqual(charging(first)[0][0], "23:00")
        later = now + timedelta(minutes=30)
        second = plan(later, time(7), 5000, WALLBOX, NIGHT, prices=[(later, 0.05)], tz=TZ)
        self.assertEqual(charging(second), [("20:30", 16.0), ("20:45", 13.0)])
        expensive = plan(later, time(7), 5000, WALLBOX, NIGHT,
                         prices=[(local(2024, 3, 5, 23, 0), 0.40)], tz=TZ)
        # 0.40 from 23:00 holds until the tariff changes at 07:00: the whole
        # night is dearer than the evening now.
        self.assertEqual(charging(expensive)[0], ("20:30", 16.0))

    def test_replan_from_measured_energy(self):
        """
        A car that drew less than planned: re-planned from the energy still
        missing, more slots.
        """
        now = local(2024, 3, 5, 23, 0)
        first = plan(now, time(7), 11040, WALLBOX, NIGHT, tz=TZ)
        self.assertEqual(len(charging(first)), 4)
        behind = plan(now + timedelta(hours=1), time(7), 11040 - 5000, WALLBOX, NIGHT, tz=TZ)
        self.assertEqual(charging(behind)[0], ("00:00", 16.0))
        self.assertEqual(len(charging(behind)), 3)

    def test_surplus_first_grid_fills_cheapest(self):
        """
        Surplus current is used as it comes (free), the grid fills the rest
        in the cheapest slots.
        """
        now = local(2024, 6, 5, 12, 0)
        sun = [(now, now + timedelta(minutes=15), 8 * 230 * 3)]
        p = plan(now, time(7), 8 * 690 / 4 + 2760, WALLBOX, NIGHT, surplus=sun, tz=TZ)
        self.assertEqual(p.slots[0].current, 8.0)
        self.assertEqual(p.slots[0].surplus_current, 8.0)
        self.assertEqual(p.slots[0].cost, 0)
        self.assertEqual(charging(p), [("12:00", 8.0), ("23:00", 16.0)])

    def test_surplus_below_minimum_unused(self):
        now = local(2024, 6, 5, 12, 0)
        sun = [(now, now + timedelta(minutes=15), 5 * 230 * 3)]
        p = plan(now, time(7), 2760, WALLBOX, NIGHT, surplus=sun, tz=TZ)
        self.assertEqual(charging(p), [("23:00", 16.0)])

    def test_caps_move_energy_later(self):
        """
        A share of the site limit caps the current; the energy it keeps out
        is planned elsewhere.
        """
        now = local(2024, 3, 5, 23, 0)
        cap = [(now, now + timedelta(minutes=15), 8.0)]
        p = plan(now, time(7), 2 * 2760, WALLBOX, NIGHT, caps=cap, tz=TZ)
        self.assertEqual(charging(p), [("23:00", 8.0), ("23:15", 16.0), ("23:30", 8.0)])
        below = plan(now, time(7), 2760, WALLBOX, NIGHT,
                     caps=[(now, now + timedelta(minutes=15), 5.0)], tz=TZ)
        self.assertEqual(charging(below), [("23:15", 16.0)])

    def test_tariff_change_off_the_grid_splits_a_slot(self):
        tariff = Tariff([(time(0), 0.30), (time(23, 10), 0.10), (time(7), 0.30)])
        p = plan(local(2024, 3, 5, 23, 0), time(7), 690, WALLBOX, tariff, tz=TZ)
        # 690 Wh in the five cheap minutes of the 23:00 quarter: 12 A.
        self.assertEqual(charging(p), [("23:10", 12.0)])
        self.assertEqual(p.slots[1].end, local(2024, 3, 5, 23, 15))


class ScheduleTests(SynchronousTestCase):
    def test_profile_periods_merged(self):
        p = plan(local(2024, 3, 5, 18, 7), time(7), 20000, WALLBOX, NIGHT, tz=TZ)
        schedule = to_schedule(p)
        self.assertIsNone(schedule.refresh_at)
        self.assertEqual(schedule.start, datetime(2024, 3, 5, 17, 7, tzinfo=timezone.utc))
        start = 4 * 3600 + 53 * 60
        self.assertEqual(schedule.periods, ((0, 0.0), (start, 16.0), (start + 7 * 900, 6.0),
                                            (start + 8 * 900, 0.0), (13 * 3600 - 7 * 60, 16.0)))
        self.assertTrue(all(isinstance(limit, float) for _, limit in schedule.periods))

    def test_start_to_the_second(self):
        p = plan(local(2024, 3, 5, 18, 7, 30, 250000), time(7), 20000, WALLBOX, NIGHT, tz=TZ)
        self.assertEqual(to_schedule(p).start, local(2024, 3, 5, 18, 7, 30))

    def test_too_many_periods_refresh(self):
        """
        More periods than the charger takes: the first ones are sent, and
        the schedule says when to send the rest.
        """
        tariff = Tariff([(time(h), 0.1 if h % 2 else 0.3) for h in range(24)])
        now = local(2024, 3, 5, 0, 0)
        p = plan(now, time(23, 59), 12 * 2760, WALLBOX, tariff, tz=TZ)
        schedule = to_schedule(p, max_periods=5)
        self.assertEqual(len(schedule.periods), 5)
        self.assertEqual(schedule.refresh_at, local(2024, 3, 5, 5, 0))

    def test_departure_passed(self):
        now = local(2024, 3, 6, 8, 0)
        p = plan(now, now - timedelta(minutes=1), 1000, WALLBOX, NIGHT, tz=TZ)
        self.assertEqual(to_schedule(p).periods, ((0, 16.0),))


class SurplusFollowerTests(SynchronousTestCase):
    def test_start_after_delay_follow_stop_after_delay(self):
        f = SurplusFollower(WALLBOX, start_delay=60, stop_delay=300)
        amps = lambda a: a * 690  # noqa: E731  W of a A on three phases
        self.assertEqual(f.update(0, amps(7)), 0)
        self.assertEqual(f.next_change(), 60)
        self.assertEqual(f.update(59, amps(7)), 0)
        self.assertEqual(f.update(60, amps(7.3)), 7.3)
        # Small changes are ignored, big ones followed, capped at max.
        self.assertEqual(f.update(70, amps(7.8)), 7.3)
        self.assertEqual(f.update(80, amps(10)), 10)
        self.assertEqual(f.update(90, amps(40)), 16)
        # Between stop and start threshold: hold the minimum current.
        self.assertEqual(f.update(100, amps(5)), 6)
        self.assertIsNone(f.next_change())
        self.assertEqual(f.update(110, amps(3)), 6)
        self.assertEqual(f.next_change(), 410)
        self.assertEqual(f.update(409, amps(3.9)), 6)
        self.assertEqual(f.update(410, amps(3.9)), 0)

    def test_passing_cloud_does_not_chatter(self):
        f = SurplusFollower(WALLBOX, start_delay=60, stop_delay=300)
        f.update(0, 8 * 690)
        f.update(60, 8 * 690)
        currents = [f.update(60 + 10 * i, (8 if i % 2 else 2) * 690) for i in range(1, 30)]
        self.assertNotIn(0, currents)

    def test_flicker_does_not_start(self):
        f = SurplusFollower(WALLBOX, start_delay=60)
        currents = [f.update(20 * i, (7 if i % 2 else 5) * 690) for i in range(20)]
        self.assertEqual(set(currents), {0})


class ShareTests(SynchronousTestCase):
    def test_equal_share_capped_by_demand(self):
        self.assertEqual(share(32, {"a": 32, "b": 32}), {"a": 16, "b": 16})
        self.assertEqual(share(32, {"a": 10, "b": 32}), {"a": 10, "b": 22})
        self.assertEqual(share(32, {"a": 10, "b": 0, "c": 16}), {"a": 10, "b": 0, "c": 16})
        # Rounded down to 0.1 A: never more than the limit in total.
        self.assertEqual(share(20, {"a": 16, "b": 16, "c": 16}), {"a": 6.6, "b": 6.7, "c": 6.7})

    def test_minimum_current_for_small_demands(self):
        self.assertEqual(share(32, {"a": 3, "b": 32}), {"a": 6, "b": 26})

    def test_not_enough_for_everyone_rotates(self):
        """
        Three cars, 16 A: two charge at 8 A, the third waits its turn and
        every car gets its turn.
        """
        demands = {"a": 16, "b": 16, "c": 16}
        queue, served = [], set()
        for _ in range(3):
            shares = share(16, demands, queue)
            self.assertEqual(sorted(shares.values()), [0, 8, 8])
            served |= {k for k, v in shares.items() if v}
            queue = rotate(queue, shares, demands)
        self.assertEqual(served, {"a", "b", "c"})

    def test_rebalanced_when_one_finishes(self):
        self.assertEqual(share(16, {"a": 16, "b": 16, "c": 0}, ["c", "a", "b"]),
                         {"a": 8, "b": 8, "c": 0})

    def test_no_rotation_when_everyone_served(self):
        self.assertEqual(rotate(["b", "a"], {"a": 8, "b": 8}, {"a": 16, "b": 16}), ["b", "a"])
