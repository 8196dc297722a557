# -*- test-case-name: tests.test_trusted -*-
"""
The central system's time of day: the system clock, unless that is clearly
wrong.

A building controller often has no battery-backed clock: it boots at 1970
(or 2000) and NTP sets it minutes later, and a clock can be stepped back.
Chargers set their own clocks from our C{currentTime}, tags and
reservations expire by it, sessions are booked with it. So the central
system remembers the newest time it has trusted (kept in the state store)
and never gives out an older one: while the system clock reads earlier
than that, it is I{wrong}, and the time given out is the trusted time moved
on by the monotonic clock (a lower bound of the real time). See
C{docs/architecture.md#time}.
"""

from datetime import datetime, timezone

from twisted.logger import Logger

#: The setting (scope C{"central"}) of the newest time trusted, as
#: L{TrustedTime}'s C{save} gets it.
TRUSTED_TIME = "trusted_time"

#: No correct clock reads earlier than this (this version was written
#: later): a controller booting at 1970 or 2000 is wrong from its first
#: second, even with a fresh state database.
EARLIEST = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()

#: How far (s) the system clock may read behind the trusted time and still
#: count as right: NTP steps a drifting clock back by a few seconds. The
#: time given out stands still meanwhile, it never goes back.
TOLERANCE = 60.0

#: How often (s) at most the trusted time is written to the state store:
#: the flash is written once per SAVE_EVERY, not on every frame.
SAVE_EVERY = 600.0

#: A change (s) of the offset between the system and the monotonic clock
#: that counts as a step of the system clock.
STEP = 5.0


def _iso(seconds, timespec="auto"):
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec=timespec)


class TrustedTime:
    """
    The time the central system gives out, as POSIX seconds.

    It looks at the system clock whenever it is asked (every frame from a
    charger, every page): a step is noticed, and said, then; with no
    timer of its own an idle controller sleeps.

    @ivar ok: whether the system clock reads no earlier than the trusted
        time (the last L{seconds} found).
    @ivar trusted: the newest time trusted (POSIX seconds), or None before
        any (no state kept and no C{floor}).
    """

    log = Logger()

    def __init__(self, clock, wall, floor=None, save=None, on_step=None):
        """
        @param clock: an C{IReactorTime} on a monotonic clock, for the
            time that passes while the system clock is wrong.
        @param wall: the system clock, a zero-argument callable (POSIX
            seconds).
        @param floor: the earliest time a right clock can read (e.g.
            L{EARLIEST}), or None.
        @param save: called with the trusted time to keep (ISO 8601 text),
            at most every L{SAVE_EVERY} seconds (the first time SAVE_EVERY
            after the first look or at once after a restart) and by
            L{flush}.
        @param on_step: called with the size (s) of a step of the system
            clock, once it is noticed.
        """
        self._clock = clock
        self._wall = wall
        self._save = save or (lambda text: None)
        self._on_step = on_step or (lambda delta: None)
        self.trusted = floor
        self._since = clock.seconds()
        # What the store has: a fresh store gets the time SAVE_EVERY after
        # the first look, not at once.
        self._saved = None
        self._offset = None
        self.ok = True

    def restore(self, kept):
        """
        Take the trusted time kept in the state store (L{save}'s text, or
        None) and look at the system clock: one log line if it is wrong.
        """
        if isinstance(kept, str):
            try:
                seconds = datetime.fromisoformat(kept).timestamp()
            except ValueError:
                seconds = None
            if seconds is not None and (self.trusted is None or seconds > self.trusted):
                self.trusted, self._since = seconds, self._clock.seconds()
                self._saved = seconds
        self.seconds()

    def seconds(self):
        """
        @return: the time now (POSIX seconds): the system clock's while it
            is right, never earlier than the trusted time.
        """
        wall, since_start = self._wall(), self._clock.seconds()
        offset = wall - since_start
        stepped = self._offset is not None and abs(offset - self._offset) > STEP
        delta = offset - self._offset if stepped else 0.0
        self._offset = offset
        trusted = self.trusted
        ok = trusted is None or wall >= trusted - TOLERANCE
        if ok != self.ok:
            # One line says it all: wrong, or right again.
            self.ok = ok
            self._tell(wall)
        elif stepped:
            self.log.info("the system clock stepped by {delta:+.0f} s", delta=delta)
        if stepped:
            self._on_step(delta)
        if not ok:
            # The trusted time, moved on by the monotonic clock.
            return trusted + (since_start - self._since)
        now = wall if trusted is None else max(wall, trusted)
        self.trusted, self._since = now, since_start
        if self._saved is None:
            self._saved = now
        elif now - self._saved >= SAVE_EVERY:
            self.flush()
        return now

    def system(self):
        """
        @return: what the system clock reads (POSIX seconds), right or not.
        """
        return self._wall()

    def dated(self, when):
        """
        Judge a time a charger reported (a session's start or stop).

        @param when: an aware datetime, or None (it said none).
        @return: C{(when, False)} while our clock is right or C{when} is no
            earlier than the trusted time; otherwise C{(our time, True)}:
            the time is uncertain.
        """
        now = self.seconds()
        if self.ok:
            return (when or datetime.fromtimestamp(now, timezone.utc)), False
        if when is not None and when.timestamp() >= self.trusted:
            return when, False
        return datetime.fromtimestamp(now, timezone.utc), True

    def flush(self):
        """
        Keep the trusted time now, if it moved on (also when the service
        stops).
        """
        if self.trusted is not None and self.trusted != self._saved:
            self._saved = self.trusted
            self._save(_iso(self.trusted))

    def _tell(self, wall):
        if self.ok:
            self.log.info("the system clock is right again ({now})",
                          now=_iso(wall, "seconds"))
        else:
            self.log.warn(
                "the system clock reads {now}, before {trusted}, the newest time trusted:"
                " chargers get the trusted time moved on until the clock is set (NTP, timedatectl)",
                now=_iso(wall, "seconds"), trusted=_iso(self.trusted, "seconds"))
