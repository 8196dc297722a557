"""
Tests for L{xxterocpp.domain.trusted} and what the central system does with
it: a fake monotonic clock (L{Clock}) and a fake system clock that the
tests step, the real domain, the OCPP handlers and an in-memory store (the
real one for what it keeps while commits fail). See docs/clock.md.
"""

import os
from datetime import datetime, timedelta, timezone

from twisted.internet import defer, reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock, deferLater
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.fakes import MemoryStore
from xxterocpp.config import parse_config
from xxterocpp.control import Controller
from xxterocpp.domain.central import CentralSystem
from xxterocpp.domain.events import ClockStepped
from xxterocpp.domain.model import Reservation
from xxterocpp.domain.trusted import (
    CLOCK_LINE_EVERY, CLOCK_LINES, EARLIEST, MAX_AHEAD, SAVE_EVERY, SLEW, STEP, TOLERANCE,
    TrustedTime)
from xxterocpp.ocpp import messages as m
from xxterocpp.ocpp.handlers import dispatcher
from xxterocpp.store import LAZY_WRITE_DELAY, Store, StoreError
from xxterocpp.web.page import render_page
from xxterocpp.web.status import snapshot

#: The time trusted before, in the tests: a summer day.
TRUSTED = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)

#: What a controller without a battery-backed clock reads after a boot.
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

CONFIG = """
[[tag]]
id = "GOOD"

[[tag]]
id = "SUMMER"
expiry = "2026-07-01T00:00:00Z"

[[charger]]
id = "CP1"
max_current = 16
allowed_tags = ["GOOD", "SUMMER"]
"""


class Wall:
    """
    A system clock the test sets and steps.
    """

    def __init__(self, when):
        self.now = when.timestamp()

    def __call__(self):
        return self.now

    def set(self, when):
        self.now = when.timestamp()


def lines(events):
    """
    @return: the texts of the captured log events about the system clock.
    """
    return [formatEvent(e) for e in events if "system clock" in formatEvent(e)]


class TrustedTimeTests(SynchronousTestCase):
    """
    L{TrustedTime} alone, with L{EARLIEST} as its floor (as the service
    has it).
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.wall = Wall(TRUSTED)
        self.saved = []
        self.steps = []
        self.time = TrustedTime(self.clock, self.wall, floor=EARLIEST, save=self.saved.append,
                                on_step=self.steps.append)

    def advance(self, seconds):
        self.clock.advance(seconds)
        self.wall.now += seconds

    def test_a_right_clock_is_the_time(self):
        """
        While the system clock goes on as it should, its time is given out.
        """
        self.time.restore(None)
        self.advance(90)
        self.assertEqual(self.time.seconds(), TRUSTED.timestamp() + 90)
        self.assertTrue(self.time.ok)

    def test_wrong_clock_gives_the_trusted_time_moved_on(self):
        """
        A system clock earlier than the trusted time and than the floor (a
        boot at 1970) is wrong, said in one warning: the time given out is
        the trusted time plus what the monotonic clock counted since,
        however often it is asked. Once the clock is set, one line says so
        and its time holds.
        """
        with capturedLogs() as events:
            self.wall.set(EPOCH)
            self.time.restore(TRUSTED.isoformat())
            self.assertFalse(self.time.ok)
            self.advance(30)
            for _ in range(3):
                self.assertEqual(self.time.seconds(), TRUSTED.timestamp() + 30)
            [warning] = lines(events)
            self.assertIn("1970-01-01", warning)
            self.assertIn("2026-06-01T12:00:00", warning)
            now = TRUSTED + timedelta(minutes=5)
            self.wall.set(now)
            self.assertEqual(self.time.seconds(), now.timestamp())
            self.assertTrue(self.time.ok)
        self.assertEqual(len(lines(events)), 2)

    def test_floor(self):
        """
        With no time kept, a clock earlier than the floor is wrong.
        """
        self.time = TrustedTime(self.clock, Wall(EPOCH), floor=EARLIEST)
        with capturedLogs() as events:
            self.time.restore(None)
        self.assertFalse(self.time.ok)
        self.assertEqual(self.time.seconds(), EARLIEST)
        self.assertEqual(len(lines(events)), 1)

    def test_an_older_kept_time_does_not_lower_the_floor(self):
        """
        A kept time earlier than the floor (a clock wrong before this
        version) counts for nothing.
        """
        self.time = TrustedTime(self.clock, Wall(EPOCH), floor=EARLIEST)
        self.time.restore("2025-01-01T00:00:00+00:00")
        self.assertEqual((self.time.given, self.time.trusted), (EARLIEST, EARLIEST))

    def given_while(self, seconds, every):
        """
        Advance both clocks by C{seconds}, asking the time every C{every}
        seconds.

        @return: the times given out.
        """
        told = []
        for _ in range(int(seconds / every)):
            self.advance(every)
            told.append(self.time.seconds())
        return told

    def test_small_step_back_runs_slow(self):
        """
        A step back within L{TOLERANCE} (NTP correcting a drift) keeps the
        clock right, and the time given out never goes back, nor does it
        stand still: it runs L{SLEW} slower than the monotonic clock until
        the system clock meets it, then it is the system clock's again.
        """
        self.time.restore(None)
        back = TOLERANCE / 2
        self.wall.now -= back
        self.assertEqual(self.time.seconds(), TRUSTED.timestamp())
        self.advance(100)
        self.assertAlmostEqual(self.time.seconds(), TRUSTED.timestamp() + 100 * (1 - SLEW))
        self.assertTrue(self.time.ok)
        told = self.given_while(back / SLEW, 100)
        self.assertEqual(told, sorted(told))
        self.assertTrue(self.time.ok)
        self.assertEqual(told[-1], self.wall.now)
        self.advance(100)
        self.assertEqual(self.time.seconds(), self.wall.now)

    def test_step_back_an_hour(self):
        """
        A step back of an hour: the clock is wrong, and the time given out
        goes on from the time given out before, L{SLEW} slower than the
        monotonic clock. It never goes back: not when the system clock
        reads the time given out before the step again, nor when the clock
        counts as right again (within L{TOLERANCE} of it), nor when it
        meets it. One line when wrong, one when right again.
        """
        self.time.restore(None)
        with capturedLogs() as events:
            self.wall.now -= 3600
            self.advance(600)
            self.assertAlmostEqual(self.time.seconds(), TRUSTED.timestamp() + 600 * (1 - SLEW))
            self.assertFalse(self.time.ok)
            told = self.given_while(3000, 60)
            self.assertEqual(self.wall.now, TRUSTED.timestamp())
            self.assertGreater(told[-1], TRUSTED.timestamp() + 3500)
            self.assertFalse(self.time.ok)
            told += self.given_while((3600 - TOLERANCE) / SLEW - 3600 + 600, 600)
            self.assertTrue(self.time.ok)
            told += self.given_while(3600 * 2, 600)
            self.assertEqual(told, sorted(told))
            self.assertEqual(told[-1], self.wall.now)
        self.assertEqual(len(lines(events)), 2)

    def test_small_steps_back_add_up(self):
        """
        Steps back each within L{TOLERANCE}, every one after the system
        clock has met the time given out again: together they count like
        one step as large, so the clock is wrong (said once) as soon as
        their sum exceeds the tolerance, and the time given out falls
        behind the time counted on the monotonic clock by no more than
        L{SLEW} of it, never by what the steps add up to.
        """
        self.time.restore(None)
        start, real = self.clock.seconds(), TRUSTED.timestamp()
        with capturedLogs() as events:
            for step in range(20):
                self.wall.now -= TOLERANCE - 10
                for _ in range(10):
                    self.advance(10)
                    now, elapsed = self.time.seconds(), self.clock.seconds() - start
                    self.assertGreaterEqual(now, real + elapsed * (1 - SLEW) - 1e-6)
                    self.assertGreaterEqual(now, self.wall.now)
                if step >= 1:
                    self.assertFalse(self.time.ok)
        [warning] = [line for line in lines(events) if "stepped" not in line]
        self.assertIn("the system clock reads", warning)

    def test_flapping_clock(self):
        """
        A system clock that NTP keeps stepping back and forth (an hour, less
        than L{TOLERANCE} and a little more): the time given out never goes
        back, never reads earlier than the system clock, never later than
        the time counted on the monotonic clock; back on the right time,
        the system clock's time is given out again. The first
        L{CLOCK_LINES} changes between wrong and right are said, the others
        counted in the next line, due L{CLOCK_LINE_EVERY} later.
        """
        self.time.restore(None)
        start, real = self.clock.seconds(), TRUSTED.timestamp()
        told = [self.time.seconds()]
        with capturedLogs() as events:
            for back in (3600, TOLERANCE / 2, 3600, TOLERANCE + 10, TOLERANCE / 2) * 4:
                self.wall.now -= back
                for now in self.given_while(21, 7):
                    told.append(now)
                    self.assertGreaterEqual(now, self.wall.now)
                    self.assertLessEqual(now, real + self.clock.seconds() - start)
                self.assertEqual(self.time.ok, back <= TOLERANCE)
                self.wall.now += back
                self.advance(7)
                told.append(self.time.seconds())
                self.assertEqual(told[-1], self.wall.now)
            self.assertEqual(told, sorted(told))
            self.assertTrue(self.time.ok)
            said = [line for line in lines(events) if "stepped" not in line]
            self.assertEqual(len(said), CLOCK_LINES)
            self.advance(CLOCK_LINE_EVERY)
            self.time.seconds()
        [last] = [line for line in lines(events) if "stepped" not in line][CLOCK_LINES:]
        self.assertIn("right again", last)
        self.assertIn(f"({2 * 4 * 3 - CLOCK_LINES - 1} more changes between wrong and right",
                      last)

    def test_lines_of_a_flapping_clock_are_bounded(self):
        """
        A clock flapping across the tolerance every 10 s for two hours (two
        time daemons fighting): L{TrustedTime.ok} and the steps announced
        follow every change at once, but the lines about it are the first
        L{CLOCK_LINES}, then one per L{CLOCK_LINE_EVERY} of the monotonic
        clock, each counting the changes left out before it: together they
        account for every change.
        """
        self.time.restore(None)
        flaps, back = 2 * 3600 // 20, TOLERANCE * 2
        with capturedLogs() as events:
            for _ in range(flaps):
                self.wall.now -= back
                self.advance(10)
                self.time.seconds()
                self.assertFalse(self.time.ok)
                self.wall.now += back
                self.advance(10)
                self.time.seconds()
                self.assertTrue(self.time.ok)
            said = [line for line in lines(events) if "stepped" not in line]
            self.assertLessEqual(len(said), CLOCK_LINES + 2 * 3600 / CLOCK_LINE_EVERY)
            self.assertGreater(len(said), CLOCK_LINES)
            # The changes since the last line are said at the first look once
            # the next is due.
            self.advance(CLOCK_LINE_EVERY)
            self.time.seconds()
        self.assertEqual(len(self.steps), 2 * flaps)
        said = [line for line in lines(events) if "stepped" not in line]
        self.assertIn("right again", said[-1])
        left_out = [int(line.split(" more changes between")[0].rsplit("(", 1)[1])
                    for line in said if " more changes between" in line]
        self.assertEqual(len(said) + sum(left_out), 2 * flaps)

    def flap(self, times, back):
        """
        Step the system clock C{back} seconds back and forward again
        C{times} times, 10 s apart, looking at the clock after each step.
        """
        for _ in range(times):
            self.wall.now -= back
            self.advance(10)
            self.time.seconds()
            self.wall.now += back
            self.advance(10)
            self.time.seconds()

    def test_held_line_said_when_the_service_stops(self):
        """
        A change held back (the lines used up) is said when the service
        stops (L{TrustedTime.tell_held}, from
        L{CentralSystem.shutdown}): otherwise the journal's last word about
        the clock is the opposite of what it was when the service stopped.
        Nothing more is said when nothing is held.
        """
        self.time.restore(None)
        back = TOLERANCE * 2
        with capturedLogs() as events:
            self.flap(CLOCK_LINES // 2, back)
            self.wall.now -= back
            self.advance(10)
            self.time.seconds()
            self.assertFalse(self.time.ok)
            said = [line for line in lines(events) if "stepped" not in line]
            self.assertEqual(len(said), CLOCK_LINES)
            self.assertIn("right again", said[-1])
            self.time.tell_held()
            self.time.tell_held()
        said = [line for line in lines(events) if "stepped" not in line]
        self.assertEqual(len(said), CLOCK_LINES + 1)
        self.assertIn("the system clock reads", said[-1])
        self.assertNotIn("more changes", said[-1])

    def test_held_line_due_said_once_when_the_service_stops(self):
        """
        A held change whose line is due by the time the service stops is
        said once, by the look of L{TrustedTime.tell_held}.
        """
        self.time.restore(None)
        back = TOLERANCE * 2
        with capturedLogs() as events:
            self.flap(CLOCK_LINES // 2 + 1, back)
            self.advance(CLOCK_LINE_EVERY)
            self.time.tell_held()
        said = [line for line in lines(events) if "stepped" not in line]
        self.assertEqual(len(said), CLOCK_LINES + 1)
        self.assertIn("right again", said[-1])
        self.assertIn("(1 more changes between wrong and right", said[-1])

    def test_pace(self):
        """
        The time given out moves on at the monotonic clock's pace, except
        while it runs slow ahead of a system clock stepped back (not one
        before the floor): timers for a time of day wait by it.
        """
        self.time.restore(None)
        self.assertEqual(self.time.pace(), 1.0)
        self.wall.now -= 30
        self.time.seconds()
        self.assertEqual(self.time.pace(), 1.0 - SLEW)
        self.advance(30 / SLEW)
        self.time.seconds()
        self.assertEqual(self.time.pace(), 1.0)
        self.wall.set(EPOCH)
        self.time.seconds()
        self.assertEqual(self.time.pace(), 1.0)

    def test_steps_are_noticed(self):
        """
        A change of the offset between the system and the monotonic clock
        by more than L{STEP} is a step, announced with its size; a drift
        below it is none.
        """
        self.time.restore(None)
        self.wall.now += STEP / 2
        self.time.seconds()
        self.assertEqual(self.steps, [])
        self.wall.now += 56 * 365 * 86400
        self.time.seconds()
        self.wall.now -= 3600
        self.time.seconds()
        self.assertEqual(self.steps, [56 * 365 * 86400, -3600])

    def test_steps_the_time_given_out_does_not_follow(self):
        """
        Steps back within the tolerance and forward again to the time given
        out (a clock flapping by 30 s) are not announced nor logged: nothing
        planned by the time given out changes. A step forward beyond it is,
        and so is one that makes the clock wrong.
        """
        self.time.restore(None)
        with capturedLogs() as events:
            for _ in range(10):
                self.wall.now -= 30
                self.advance(10)
                self.time.seconds()
                self.wall.now += 30
                self.advance(10)
                self.time.seconds()
            self.assertEqual((self.steps, lines(events)), ([], []))
            self.wall.now += 600
            self.time.seconds()
            self.wall.now -= 3600
            self.time.seconds()
        self.assertEqual(self.steps, [600, -3600])
        self.assertEqual(len(lines(events)), 2)

    def test_saved_at_most_every_save_every(self):
        """
        The trusted time is kept SAVE_EVERY after the first look, not at
        every question, and once more when the service stops.
        """
        self.time.restore(None)
        for _ in range(int(SAVE_EVERY / 60) - 1):
            self.advance(60)
            self.time.seconds()
        self.assertEqual(self.saved, [])
        self.advance(60)
        self.time.seconds()
        self.assertEqual(self.saved, [(TRUSTED + timedelta(seconds=SAVE_EVERY)).isoformat()])
        self.advance(5)
        self.time.seconds()
        self.time.flush()
        self.time.flush()
        self.assertEqual(self.saved[1:], [
            (TRUSTED + timedelta(seconds=SAVE_EVERY + 5)).isoformat()])

    def test_kept_while_wrong(self):
        """
        While the clock is wrong the time given out is kept as well (every
        L{SAVE_EVERY} and at the stop): a restart meanwhile goes on from
        it, not from the time before the clock went wrong.
        """
        self.wall.set(EPOCH)
        self.time.restore(TRUSTED.isoformat())
        self.advance(SAVE_EVERY)
        self.time.seconds()
        self.advance(30)
        told = self.time.seconds()
        self.time.flush()
        self.assertEqual(self.saved, [
            (TRUSTED + timedelta(seconds=SAVE_EVERY)).isoformat(),
            (TRUSTED + timedelta(seconds=SAVE_EVERY + 30)).isoformat()])
        again = TrustedTime(self.clock, self.wall, floor=EARLIEST)
        again.restore(self.saved[-1])
        self.assertEqual(again.seconds(), told)
        self.assertFalse(again.ok)

    def test_a_failed_save_is_said_once_and_done_again(self):
        """
        A save that fails (the store refused it, or closed before it was
        committed) is logged, once until a save works again, and done
        again: with the next L{SAVE_EVERY}, and at the stop even when the
        time has not moved on since.
        """
        saves = []

        def save(text):
            saves.append((text, Deferred()))
            return saves[-1][1]

        self.time = TrustedTime(self.clock, self.wall, floor=EARLIEST, save=save)
        self.time.restore(None)
        with capturedLogs() as events:
            for _ in range(2):
                self.advance(SAVE_EVERY)
                self.time.seconds()
                saves[-1][1].errback(StoreError("database or disk is full"))
            [line] = [formatEvent(e) for e in events if "could not be kept" in formatEvent(e)]
            self.assertIn("disk is full", line)
            self.assertIn((TRUSTED + timedelta(seconds=SAVE_EVERY)).isoformat(
                timespec="seconds"), line)
            self.time.flush()
            self.assertEqual([text for text, _ in saves], [
                (TRUSTED + timedelta(seconds=SAVE_EVERY * n)).isoformat() for n in (1, 2, 2)])
            saves[-1][1].callback(None)
            self.time.flush()
            self.assertEqual(len(saves), 3)
            self.advance(SAVE_EVERY)
            self.time.seconds()
            saves[-1][1].errback(StoreError("closed"))
        self.assertEqual(len([e for e in events if "could not be kept" in formatEvent(e)]), 2)

    def test_dated(self):
        """
        A charger's time is taken while our clock is right, and while it is
        wrong if it is no earlier than the time given out when it was last
        right; otherwise ours is booked and marked uncertain.
        """
        self.time.restore(None)
        early = datetime(2020, 1, 1, tzinfo=timezone.utc)
        self.assertEqual(self.time.dated(early), (early, False))
        self.assertEqual(self.time.dated(None), (TRUSTED, False))
        self.wall.set(EPOCH)
        self.advance(10)
        later = TRUSTED + timedelta(seconds=5)
        self.assertEqual(self.time.dated(later), (later, False))
        ours = TRUSTED + timedelta(seconds=10)
        self.assertEqual(self.time.dated(early), (ours, True))
        self.assertEqual(self.time.dated(None), (ours, True))

    def test_dated_far_ahead(self):
        """
        While our clock is wrong, a charger's time more than L{MAX_AHEAD}
        ahead of the time given out is not plausible either (a charger that
        says 2099): ours is booked and marked uncertain. Up to MAX_AHEAD
        ahead it is taken (our controller may have been switched off for
        months, the charger's clock ran on).
        """
        self.time.restore(None)
        self.wall.set(EPOCH)
        self.advance(10)
        ours = TRUSTED + timedelta(seconds=10)
        months = ours + timedelta(seconds=MAX_AHEAD)
        self.assertEqual(self.time.dated(months), (months, False))
        for far in (months + timedelta(seconds=1), datetime(2099, 1, 1, tzinfo=timezone.utc)):
            self.assertEqual(self.time.dated(far), (ours, True))
        self.assertGreater(MAX_AHEAD, 365 * 86400)


class CentralClockTests(SynchronousTestCase):
    """
    The central system with a system clock that boots at 1970 after a life
    that trusted L{TRUSTED}.
    """

    def build(self, wall_at, kept=TRUSTED, settings=(), store=None):
        """
        The central system and a controller, started with the system clock
        at C{wall_at}, C{kept} the trusted time in the store (None: none)
        beside the other C{settings}, and L{EARLIEST} as the floor (as the
        service has them); on C{store} (a restart) if given.
        """
        self.clock = Clock()
        self.clock.advance(500)
        self.wall = Wall(wall_at)
        self.store = store or MemoryStore()
        self.store.settings.update(settings)
        if kept is not None:
            self.store.settings[("central", "trusted_time")] = kept.isoformat()
        self.central = CentralSystem(parse_config(CONFIG), self.store, self.clock, wall=self.wall,
                                     floor=EARLIEST)
        self.controller = Controller(self.central, self.clock)
        self.central.subscribe(self.controller.observe)
        self.events = []
        self.central.subscribe(self.events.append)
        self.central.load()
        self.addCleanup(self.controller.shutdown)

    def handle(self, action, payload):
        request, _ = m.decode(m.ACTIONS[action].request, payload)
        return self.successResultOf(defer.maybeDeferred(
            dispatcher(self.central, "CP1"), action, request))

    def test_current_time_never_older_than_trusted(self):
        """
        A charger booting or sending a heartbeat while the system clock
        reads 1970 is told the trusted time moved on, never 1970.
        """
        self.build(EPOCH)
        boot = self.handle("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        self.assertEqual(boot.current_time, TRUSTED)
        self.clock.advance(60)
        self.wall.now += 60
        beat = self.handle("Heartbeat", {})
        self.assertEqual(beat.current_time, TRUSTED + timedelta(seconds=60))

    def test_step_back_an_hour_with_a_charger(self):
        """
        Stepped back an hour, the clock is wrong, and the heartbeats go on
        from the time given out before (L{SLEW} slower).
        """
        self.build(TRUSTED + timedelta(days=1))
        first = self.handle("Heartbeat", {}).current_time
        self.wall.now -= 3600
        self.clock.advance(10)
        self.wall.now += 10
        second = self.handle("Heartbeat", {}).current_time
        self.assertAlmostEqual((second - first).total_seconds(), 10 * (1 - SLEW))
        self.assertFalse(self.central.time.ok)

    def test_tags_are_not_expired_by_a_wrong_clock(self):
        """
        A tag valid until July: refused as Expired by a clock that is right
        and says August, accepted by one that says 1970 with June trusted.
        (And a clock that is right and says June accepts it too.)
        """
        self.build(EPOCH)
        self.assertEqual(self.central.authorize("CP1", None, "SUMMER").status, "Accepted")
        self.wall.set(datetime(2026, 8, 1, tzinfo=timezone.utc))
        self.assertEqual(self.central.authorize("CP1", None, "SUMMER").status, "Expired")

    def test_tag_expired_before_the_trusted_time(self):
        """
        A tag whose expiry was past the trusted time is expired, however
        wrong the clock.
        """
        self.build(EPOCH, kept=datetime(2026, 7, 2, tzinfo=timezone.utc))
        self.assertEqual(self.central.authorize("CP1", None, "SUMMER").status, "Expired")

    def test_reservation_held_across_a_boot_at_1970(self):
        """
        A reservation kept in the store until after the trusted time holds
        after a restart at 1970.
        """
        expiry = TRUSTED + timedelta(minutes=30)
        self.build(EPOCH, settings={("CP1", "reservation/1"): {
            "id": 7, "id_tag": "GOOD", "expiry": expiry.isoformat()}})
        connector = self.central.chargers["CP1"].connector(1)
        self.assertEqual(connector.reservation, Reservation(7, "GOOD", expiry))
        self.wall.set(TRUSTED + timedelta(hours=1))
        self.assertFalse(connector.reservation.holds(self.central.now()))

    def start(self, timestamp):
        return self.handle("StartTransaction", {
            "connectorId": 1, "idTag": "GOOD", "meterStart": 100, "timestamp": timestamp})

    def test_session_with_plausible_charger_time(self):
        """
        While our clock is wrong, a charger's start time no earlier than the
        trusted time is booked as it is.
        """
        self.build(EPOCH)
        started = TRUSTED + timedelta(minutes=3)
        tx = self.central.book.get(self.start(started.isoformat()).transaction_id)
        self.assertEqual((tx.start_time, tx.time_uncertain), (started, False))

    def test_session_with_implausible_charger_time_is_marked(self):
        """
        While our clock is wrong, a charger that says 1970 too gets the
        session booked with our time, marked uncertain in the store; its
        stop likewise.
        """
        self.build(EPOCH)
        self.clock.advance(20)
        tx_id = self.start("1970-01-01T00:05:00Z").transaction_id
        tx = self.central.book.get(tx_id)
        self.assertEqual((tx.start_time, tx.time_uncertain),
                         (TRUSTED + timedelta(seconds=20), True))
        self.assertTrue(self.store.transactions[tx_id].time_uncertain)
        self.clock.advance(60)
        self.handle("StopTransaction", {"transactionId": tx_id, "meterStop": 900,
                                        "timestamp": "1970-01-01T00:06:00Z"})
        record = self.store.transactions[tx_id]
        self.assertEqual((record.stop_time, record.time_uncertain),
                         (TRUSTED + timedelta(seconds=80), True))

    def test_session_with_charger_time_far_ahead_is_marked(self):
        """
        While our clock is wrong, a charger that says 2099 gets the session
        booked with our time, marked uncertain in the store.
        """
        self.build(EPOCH)
        self.clock.advance(20)
        tx_id = self.start("2099-01-01T00:00:00Z").transaction_id
        record = self.store.transactions[tx_id]
        self.assertEqual((record.start_time, record.time_uncertain),
                         (TRUSTED + timedelta(seconds=20), True))

    def test_forgotten_session_ends_at_the_new_start_as_booked(self):
        """
        While our clock is wrong, a start at a connector whose session never
        stopped, dated 1970 by the charger: the new session is booked at our
        time, and the forgotten one ends there too (not in 1970, before its
        own start), both marked uncertain.
        """
        self.build(EPOCH)
        first = self.start((TRUSTED + timedelta(seconds=5)).isoformat()).transaction_id
        self.clock.advance(60)
        self.start("1970-01-01T00:05:00Z")
        record = self.store.transactions[first]
        self.assertEqual((record.stop_time, record.stop_reason, record.time_uncertain),
                         (TRUSTED + timedelta(seconds=60), "Other", True))

    def test_session_while_the_clock_is_right(self):
        """
        While our clock is right, a charger's times are booked as they are,
        not marked.
        """
        self.build(TRUSTED + timedelta(days=1))
        tx_id = self.start("2024-01-01T00:00:00Z").transaction_id
        self.assertFalse(self.store.transactions[tx_id].time_uncertain)

    def test_status_says_so(self):
        """
        /api/status says whether the clock is right and what it reads; the
        page warns while it is wrong.
        """
        self.build(EPOCH)
        status = snapshot(self.central, self.controller, None)
        self.assertEqual((status["clock_ok"], status["system_time"], status["time"]),
                         (False, "1970-01-01T00:00:00Z", "2026-06-01T12:00:00Z"))
        self.assertIn(b'id="clock"', self.successResultOf(render_page(status, {}, [])))
        self.wall.set(TRUSTED + timedelta(hours=1))
        status = snapshot(self.central, self.controller, None)
        self.assertEqual((status["clock_ok"], status["time"]), (True, "2026-06-01T13:00:00Z"))
        self.assertNotIn(b'id="clock"', self.successResultOf(render_page(status, {}, [])))

    def test_a_step_is_an_event(self):
        """
        A step of the system clock noticed by the central system becomes a
        L{ClockStepped} event one reactor turn later.
        """
        self.build(TRUSTED)
        self.wall.now += 3600
        self.central.now()
        self.assertEqual([e for e in self.events if isinstance(e, ClockStepped)], [])
        self.clock.advance(0)
        self.assertEqual([e for e in self.events if isinstance(e, ClockStepped)],
                         [ClockStepped(3600)])

    def test_kept_lazily(self):
        """
        The trusted time is a lazy write: it rides with the next commit or
        the store's lazy delay, never a commit of its own every
        L{SAVE_EVERY} (most of an idle hour's writes on flash).
        """
        self.build(TRUSTED, kept=None)
        for _ in range(3):
            self.clock.advance(SAVE_EVERY)
            self.wall.now += SAVE_EVERY
            self.central.now()
        self.central.shutdown()
        saved = [args[:2] for args in self.store.written("put_setting")
                 if args[:2] == ("central", "trusted_time")]
        self.assertEqual(len(saved), 3)
        self.assertEqual(self.store.lazy_settings, saved)

    def test_kept_at_shutdown(self):
        """
        The trusted time goes into the store when the service stops, and
        the next start trusts it.
        """
        self.build(TRUSTED, kept=None)
        self.clock.advance(100)
        self.wall.now += 100
        self.central.now()
        self.central.shutdown()
        kept = self.store.settings[("central", "trusted_time")]
        self.assertEqual(kept, (TRUSTED + timedelta(seconds=100)).isoformat())
        self.build(EPOCH, kept=datetime.fromisoformat(kept))
        self.assertEqual(self.central.now(), TRUSTED + timedelta(seconds=100))

    def test_session_across_the_end_of_a_step_back(self):
        """
        A session started while the clock was an hour back, with the time
        the charger was told, and stopped once the system clock reads the
        time given out before the step again and the charger has been told
        the time since: the time told never went back, so the stop is after the start, booked as the
        charger said, not marked uncertain. The time told meets the system
        clock in the end (L{SLEW}), and the clock is right again.
        """
        self.build(TRUSTED)
        self.wall.now -= 3600
        self.clock.advance(600)
        self.wall.now += 600
        told = self.handle("Heartbeat", {}).current_time
        self.assertFalse(self.central.time.ok)
        tx_id = self.start(told.isoformat()).transaction_id
        self.assertFalse(self.central.book.get(tx_id).time_uncertain)
        self.clock.advance(3000)
        self.wall.now += 3000
        self.assertEqual(self.wall.now, TRUSTED.timestamp())
        told_again = self.handle("Heartbeat", {}).current_time
        self.assertGreater(told_again, told + timedelta(seconds=2900))
        self.handle("StopTransaction", {"transactionId": tx_id, "meterStop": 900,
                                        "timestamp": told_again.isoformat()})
        record = self.store.transactions[tx_id]
        self.assertEqual((record.stop_time, record.time_uncertain), (told_again, False))
        self.clock.advance(3600 / SLEW)
        self.wall.now += 3600 / SLEW
        last = self.handle("Heartbeat", {}).current_time
        self.assertEqual(last.timestamp(), self.wall.now)
        self.assertTrue(self.central.time.ok)

    def test_restart_while_the_clock_is_wrong(self):
        """
        Stopped while the clock is an hour back, started again on the same
        store with the clock still back: the chargers are told no time
        older than before the stop, and the clock is still wrong.
        """
        self.build(TRUSTED)
        self.wall.now -= 3600
        self.clock.advance(600)
        self.wall.now += 600
        told = self.handle("Heartbeat", {}).current_time
        self.central.shutdown()
        wall = self.wall.now
        self.build(datetime.fromtimestamp(wall, timezone.utc), kept=None, store=self.store)
        self.assertFalse(self.central.time.ok)
        self.assertGreaterEqual(self.handle("Heartbeat", {}).current_time, told)


    def test_crash_while_the_clock_is_wrong(self):
        """
        Killed while the clock reads 1970, after a charger connected and
        before the time given out was kept again (every SAVE_EVERY, a lazy
        write): its contact, committed at once, is a time given out too, so
        the restart goes on from it, not from the older time kept (which
        told the charger a time older than its own session start). Not
        without a time kept: forgetting that one (docs/clock.md#reset)
        forgets the contacts' too.
        """
        contact = TRUSTED + timedelta(minutes=7)
        since = {("CP1", "contact"): {"since": contact.isoformat()},
                 ("CP2", "contact"): {"left": (TRUSTED + timedelta(minutes=3)).isoformat()}}
        self.build(EPOCH, settings=since)
        self.assertEqual(self.handle("Heartbeat", {}).current_time, contact)
        self.assertFalse(self.central.time.ok)
        self.build(EPOCH, kept=None, settings=since)
        self.assertEqual(self.handle("Heartbeat", {}).current_time,
                         datetime.fromtimestamp(EARLIEST, timezone.utc))


class KeptInTheStoreTests(TestCase):
    """
    The time given out in the real state store (SQLite, its worker thread),
    a lazy write, while the database refuses commits (a full disk: SQLite's
    C{query_only} fails a commit as a full or read-only file does, also for
    root, whom permissions do not stop).
    """

    def setUp(self):
        self.path = os.path.join(self.mktemp(), "state.sqlite3")
        self.clock = Clock()
        self.wall = Wall(TRUSTED)

    def open(self):
        store = Store(self.path, reactor, clock=self.clock)
        store.open()
        self.addCleanup(store.close)
        central = CentralSystem(parse_config(CONFIG), store, self.clock, wall=self.wall,
                                floor=EARLIEST)
        central.load()
        return store, central

    def advance(self, seconds):
        self.clock.advance(seconds)
        self.wall.now += seconds

    def refuse(self, store, on):
        def query_only():
            store._db.execute(f"PRAGMA query_only = {'ON' if on else 'OFF'}")
        return store._read(query_only)

    @inlineCallbacks
    def settle(self):
        # The worker thread's answers come through the global reactor.
        for _ in range(5):
            yield deferLater(reactor, 0.02, lambda: None)

    @inlineCallbacks
    def test_full_disk(self):
        """
        The lazy write of the time given out waits, with the store's
        retries, while commits fail, and is committed once they work again.
        Stopped while they fail, the store says writes are lost and the
        central system says which time was not kept: a restart goes on
        from the one kept before.
        """
        store, central = self.open()
        captured = self.enterContext(capturedLogs())
        yield self.refuse(store, True)
        self.advance(SAVE_EVERY)
        first = central.now()
        self.advance(LAZY_WRITE_DELAY)
        yield self.settle()
        self.assertIn("cannot commit", " ".join(formatEvent(e) for e in captured))
        yield self.refuse(store, False)
        self.advance(60)
        yield self.settle()
        yield store.close()
        store, central = self.open()
        self.assertEqual(store.load_settings()[("central", "trusted_time")], first.isoformat())

        yield self.refuse(store, True)
        self.advance(SAVE_EVERY)
        central.now()
        self.advance(LAZY_WRITE_DELAY)
        yield self.settle()
        central.shutdown()
        yield store.close()
        said = [formatEvent(e) for e in captured]
        self.assertIn("not committed; they are lost", " ".join(said))
        # Said once, for the first time not kept (the restart saved it at
        # once), though the later ones were not either.
        [line] = [line for line in said if "could not be kept" in line]
        self.assertIn((first + timedelta(seconds=LAZY_WRITE_DELAY + 60)).isoformat(
            timespec="seconds"), line)
        store, central = self.open()
        self.assertEqual(store.load_settings()[("central", "trusted_time")], first.isoformat())
