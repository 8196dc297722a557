# -*- test-case-name: tests.test_trusted -*-
"""
The central system's time of day: the system clock, unless that is clearly
wrong.

A building controller often has no battery-backed clock: it boots at 1970
(or 2000) and NTP sets it minutes later, and a clock can be stepped back.
Chargers set their own clocks from our C{currentTime}, tags and
reservations expire by it, sessions are booked with it. So the time given
out never goes back, not even across a restart (the newest one is kept in
the state store), and while the system clock reads clearly earlier than
it, the clock is I{wrong}: the time given out runs on by the monotonic
clock, a little slower than it (L{SLEW}), until the system clock meets it.
See C{docs/clock.md}.
"""

from datetime import datetime, timezone

from twisted.logger import Logger

from xxterocpp.pacing import TokenBucket

#: The setting (scope C{"central"}) of the newest time given out, as
#: L{TrustedTime}'s C{save} gets it.
TRUSTED_TIME = "trusted_time"

#: No correct clock reads earlier than this (this version was written
#: later): a controller booting at 1970 or 2000 is wrong from its first
#: second, even with a fresh state database.
EARLIEST = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()

#: How far (s) the system clock may read behind the time given out and
#: still count as right: NTP steps a drifting clock back by a few seconds.
#: Steps back add up: several small ones count like one as large as they
#: are together.
TOLERANCE = 60.0

#: How much slower than the monotonic clock the time given out runs while
#: the system clock reads behind it (and no earlier than the floor): 1 %,
#: 36 s an hour. A step back of an hour is caught up in 100 hours; a
#: charger told the time every 5 minutes is set back by 3 s at most each
#: time; a duration booked meanwhile is 1 % short at most
#: (docs/clock.md#slew).
SLEW = 0.01

#: How often (s) at most the time given out is written to the state store:
#: the flash is written once per SAVE_EVERY, not on every frame.
SAVE_EVERY = 600.0

#: A change (s) of the offset between the system and the monotonic clock
#: that counts as a step of the system clock.
STEP = 5.0

#: The lines saying that the system clock is wrong or right again:
#: CLOCK_LINES at once (a boot at 1970 and NTP, twice), then one every
#: CLOCK_LINE_EVERY seconds of the monotonic clock. A clock flapping across
#: the TOLERANCE (two time sources fighting) wrote two lines every few
#: seconds; now the changes left out are counted in the next line, written
#: at the first look once it is due (docs/clock.md#flapping). Only the lines
#: are bounded: L{TrustedTime.ok}, and what it drives, follows the clock at
#: once.
CLOCK_LINES = 4
CLOCK_LINE_EVERY = 600.0

#: How far (s) ahead of the time given out a charger's time may be and still
#: be plausible while our clock is wrong (L{TrustedTime.dated}): 400 days.
#: While it is wrong, the time given out is only a lower bound of the real
#: time, which may be much later: a controller that stayed switched off for
#: months (a holiday home over the winter, a spare unit on a shelf) starts
#: again from the time it kept, while the charger's own clock ran on and is
#: right. So the bound is generous, more than a year, and refuses only what
#: no clock there can be right about (a charger that says 2099).
MAX_AHEAD = 400 * 86400.0


def stored_seconds(text):
    """
    @return: the POSIX seconds of an ISO 8601 time with a zone (as the
        store keeps times), or None for anything else.
    """
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when.timestamp() if when.tzinfo is not None else None


def _iso(seconds, timespec="auto"):
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec=timespec)


class TrustedTime:
    """
    The time the central system gives out, as POSIX seconds.

    It looks at the system clock whenever it is asked (every frame from a
    charger, every page): a step is noticed, and said, then; with no
    timer of its own an idle controller sleeps.

    @ivar ok: whether the system clock reads no more than L{TOLERANCE}
        behind the time given out (the last L{seconds} found).
    @ivar given: the newest time given out (POSIX seconds), or None before
        any (no state kept and no C{floor}): no L{seconds} is earlier.
    @ivar trusted: the time given out when the system clock was last right
        (it stands while the clock is wrong): a charger's time no earlier
        than this (and no more than L{MAX_AHEAD} ahead of the time given
        out) is plausible (L{dated}).
    """

    log = Logger()

    def __init__(self, clock, wall, floor=None, save=None, on_step=None):
        """
        @param clock: an C{IReactorTime} on a monotonic clock, for the
            time that passes while the system clock is wrong.
        @param wall: the system clock, a zero-argument callable (POSIX
            seconds).
        @param floor: the earliest time a right clock can read (e.g.
            L{EARLIEST}), or None: no time given out is earlier, and a
            system clock earlier than it is not slewed to.
        @param save: called with the time to keep (ISO 8601 text), at most
            every L{SAVE_EVERY} seconds (the first time SAVE_EVERY after the
            first look or at once after a restart) and by L{flush}; it may
            return a Deferred firing once the time is kept: a failure is
            logged (once until a save works again) and the time saved again
            at the next chance.
        @param on_step: called with the size (s) of a step of the system
            clock, once it is noticed, if the time given out jumped with it
            (forward) or the clock became wrong or right again by it; not
            for steps that change neither (a clock flapping back and forth
            within the tolerance).
        """
        self._clock = clock
        self._wall = wall
        self._floor = floor
        self._save = save or (lambda text: None)
        self._on_step = on_step or (lambda delta: None)
        self.given = self.trusted = floor
        self._since = clock.seconds()
        # What the store has, or is committing: a fresh store gets the time
        # SAVE_EVERY after the first look, not at once.
        self._saved = None
        # Whether the last save failed (to do again even if nothing moved
        # on), and whether that was said.
        self._unsaved = False
        self._failing = False
        self._offset = None
        self.ok = True
        self._lines = TokenBucket(1 / CLOCK_LINE_EVERY, CLOCK_LINES, self._since)
        # The changes of ok since the last line about them (L{_tell}).
        self._unsaid = 0

    def restore(self, kept, also=()):
        """
        Take the time kept in the state store (L{save}'s text, or None) and
        look at the system clock: one log line if it is wrong.

        @param also: other times given out that the store keeps (ISO 8601
            texts: a charger's last contact, committed at once where this
            one is written every L{SAVE_EVERY}): after a crash they may be
            newer than C{kept}, and no time given out is earlier. Taken only
            with a time kept: who forgot that one (docs/clock.md#reset)
            forgets them too.
        """
        seconds = stored_seconds(kept)
        if seconds is None:
            self.seconds()
            return
        newest = max([seconds] + [t for t in map(stored_seconds, also) if t is not None])
        if self.given is None or newest > self.given:
            self.given = self.trusted = newest
            self._since = self._clock.seconds()
            # What the store has (a newer time from a contact is saved with
            # the next SAVE_EVERY).
            self._saved = seconds
        self.seconds()

    def seconds(self):
        """
        @return: the time now (POSIX seconds): the system clock's while it
            reads no earlier than the time given out before; otherwise
            that time moved on, never earlier than any given out.
        """
        wall, since_start = self._wall(), self._clock.seconds()
        offset = wall - since_start
        # Not at the first look (the time kept, or the floor, to now).
        looked = self._offset is not None
        stepped = looked and abs(offset - self._offset) > STEP
        delta = offset - self._offset if stepped else 0.0
        self._offset = offset
        before = (self.given + (since_start - self._since)
                  if looked and self.given is not None else None)
        now = self._moved_on(wall, since_start)
        # Whether the time given out jumped (forward: it never goes back).
        jumped = before is not None and now - before > STEP
        ok = wall >= now - TOLERANCE
        changed = ok != self.ok
        if changed:
            self.ok = ok
            self._unsaid += 1
        if self._unsaid:
            # One line says it all (wrong, or right again), or a line held
            # back comes now that it is due.
            self._tell(wall, now, since_start)
        if changed:
            announce = stepped
        else:
            # A step of the system clock that the time given out does not
            # follow (back within the tolerance, or forward again to it: a
            # clock flapping by seconds) changes nothing planned by it.
            announce = jumped
            if jumped:
                self.log.info("the system clock stepped by {delta:+.0f} s", delta=delta)
        if announce:
            self._on_step(delta if stepped else now - before)
        if ok:
            self.trusted = now
        if self._saved is None:
            self._saved = now
        elif now - self._saved >= SAVE_EVERY:
            self.flush()
        return now

    def _moved_on(self, wall, since_start):
        """
        @return: the time given out now, and keep it.
        """
        given, elapsed = self.given, since_start - self._since
        self._since = since_start
        if given is None:
            now = wall
        elif self._floor is not None and wall < self._floor:
            # The system clock reads a time no right clock does (1970):
            # the time given out runs on at the monotonic clock's pace, a
            # lower bound of the real time.
            now = given + elapsed
        else:
            # Behind the time given out, the system clock may be right and
            # that time wrong (set an hour ahead by mistake, then back):
            # the time given out runs a little slow until the system clock
            # meets it, never back (docs/clock.md#slew).
            now = max(wall, given + elapsed * (1.0 - SLEW))
        self.given = now
        return now

    def pace(self):
        """
        @return: how far the time given out moves on per second of the
            monotonic clock now: 1 - L{SLEW} while it runs slow ahead of a
            system clock stepped back, 1 otherwise. A timer for a time of
            day (a smart slot's boundary) waits C{(that time - seconds())
            / pace()} monotonic seconds: never early, and late by SLEW of
            the wait at most if the system clock meets the time given out
            meanwhile (docs/clock.md#slew).
        """
        given, wall = self.given, self._wall()
        if given is None or wall >= given or (self._floor is not None and wall < self._floor):
            return 1.0
        return 1.0 - SLEW

    def system(self):
        """
        @return: what the system clock reads (POSIX seconds), right or not.
        """
        return self._wall()

    def dated(self, when):
        """
        Judge a time a charger reported (a session's start or stop).

        @param when: an aware datetime, or None (it said none).
        @return: C{(when, False)} while our clock is right or C{when} is
            plausible: no earlier than the time given out when our clock was
            last right, and no more than L{MAX_AHEAD} later than the time
            given out now; otherwise C{(our time, True)}: the time is
            uncertain (docs/clock.md#sessions).
        """
        now = self.seconds()
        if self.ok:
            return (when or datetime.fromtimestamp(now, timezone.utc)), False
        if when is not None and self.trusted <= when.timestamp() <= now + MAX_AHEAD:
            return when, False
        return datetime.fromtimestamp(now, timezone.utc), True

    def flush(self):
        """
        Keep the time given out now, if it moved on or the last save failed
        (also when the service stops).
        """
        given = self.given
        if given is None or (given == self._saved and not self._unsaved):
            return
        self._saved, self._unsaved = given, False
        d = self._save(_iso(given))
        if d is not None:
            d.addCallbacks(self._kept, self._not_kept, errbackArgs=(given,))

    def _kept(self, ignored):
        self._failing = False

    def _not_kept(self, failure, given):
        if given == self._saved:
            # Saved again with the next SAVE_EVERY, or the stop.
            self._unsaved = True
        if not self._failing:
            self._failing = True
            self.log.error(
                "the time given out to chargers ({given}) could not be kept in the state"
                " store ({error}): a restart may give out an earlier one; trying again in"
                " {minutes:.0f} minutes and at the stop",
                given=_iso(given, "seconds"), error=failure.getErrorMessage(),
                minutes=SAVE_EVERY / 60)

    def tell_held(self):
        """
        Say now what the clock is, if a change between wrong and right is
        held back (L{CLOCK_LINES} used up), whether a line is due or not:
        the service stops, and there is no later look to say it at. Without
        it the journal's last word could be the opposite of the clock's
        state at the stop.
        """
        # A look says it already when a line is due.
        now = self.seconds()
        if self._unsaid:
            self._tell(self._wall(), now, self._clock.seconds(), due=True)

    def _tell(self, wall, now, at, due=False):
        """
        Say whether the clock is wrong or right again, unless the lines
        about it are used up (L{CLOCK_LINES}); then the next line, at the
        first look once one is due, says how many changes it leaves out.

        @param at: the monotonic clock's time now.
        @param due: say it even with the lines used up (L{tell_held}).
        """
        if not due and self._lines.level(at) < 1:
            return
        self._lines.take(at)
        held, self._unsaid = self._unsaid - 1, 0
        more = (f" ({held} more changes between wrong and right since the last such line,"
                " not logged)" if held else "")
        if self.ok:
            self.log.info("the system clock is right again ({now}){more}",
                          now=_iso(wall, "seconds"), more=more)
        else:
            self.log.warn(
                "the system clock reads {now}, before {given}, the time given out to chargers:"
                " they get that time moved on, never an earlier one, until the clock is set"
                " (NTP, timedatectl; docs/clock.md){more}",
                now=_iso(wall, "seconds"), given=_iso(now, "seconds"), more=more)
