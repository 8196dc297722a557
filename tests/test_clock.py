"""
Tests for L{xxterocpp.clock}: a reactor's timers moved onto a monotonic
clock, on Twisted's own timer heap (L{ReactorBase}), with a fake system
clock and a fake monotonic clock.
"""

from twisted.internet.base import ReactorBase
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from xxterocpp.clock import use_monotonic

#: 56 years: a controller that booted at 1970, set by NTP.
YEARS_56 = 56 * 365 * 86400.0


class _Reactor(ReactorBase):
    """
    Twisted's timer heap without I/O: callLater, timeout(),
    runUntilCurrent() as every posix reactor has them.
    """

    def installWaker(self):
        # No threads wake this one up.
        pass


class _Other(_Reactor):
    """
    A reactor with timers of its own (as the asyncio one has).
    """

    def callLater(self, delay, f, *args, **kwargs):
        raise AssertionError("not used")


class _Time:
    """
    A settable clock: C{time()} reads it.
    """

    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


class UseMonotonicTests(SynchronousTestCase):
    def setUp(self):
        self.wall = _Time(1_000_000.0)
        self.monotonic = _Time(50.0)
        self.reactor = _Reactor()
        # The reactor as twistd hands it over: on the system clock.
        self.reactor.seconds = self.wall
        self.fired = []

    def later(self, delay, name):
        return self.reactor.callLater(delay, self.fired.append, name)

    def test_pending_calls_keep_their_delay(self):
        """
        A call pending when the reactor changes clocks fires as far ahead as
        it was, on the monotonic clock: a step of the system clock
        (forward 56 years, back an hour) neither fires nor holds it.
        """
        self.later(10, "pending")
        self.reactor.runUntilCurrent()  # into the heap, as in a running reactor
        self.later(20, "new")  # still in _newTimedCalls
        self.assertTrue(use_monotonic(self.reactor, self.monotonic))
        self.assertEqual(sorted(c.getTime() for c in self.reactor.getDelayedCalls()),
                         [60.0, 70.0])
        self.wall.now += YEARS_56
        self.reactor.runUntilCurrent()
        self.wall.now -= YEARS_56 + 3600
        self.monotonic.now = 60.0
        self.reactor.runUntilCurrent()
        self.assertEqual(self.fired, ["pending"])
        self.monotonic.now = 70.0
        self.reactor.runUntilCurrent()
        self.assertEqual(self.fired, ["pending", "new"])

    def test_timeout_follows_the_monotonic_clock(self):
        """
        How long the reactor may sleep is measured on the monotonic clock:
        a step of the system clock does not wake it early or late.
        """
        use_monotonic(self.reactor, self.monotonic)
        self.later(30, "ping")
        self.wall.now += YEARS_56
        self.assertEqual(self.reactor.timeout(), 30.0)
        self.wall.now -= YEARS_56 + 3600
        self.monotonic.now += 5
        self.assertEqual(self.reactor.timeout(), 25.0)

    def test_calls_made_afterwards(self):
        """
        Calls scheduled after the change read the monotonic clock, also
        when they are reset or delayed.
        """
        use_monotonic(self.reactor, self.monotonic)
        self.assertIs(self.reactor.seconds, self.monotonic)
        call = self.later(5, "reset")
        self.assertIs(call.seconds, self.monotonic)
        self.monotonic.now += 4
        self.wall.now += YEARS_56
        call.reset(5)
        self.reactor.runUntilCurrent()
        self.assertEqual((call.getTime(), self.fired), (59.0, []))
        self.monotonic.now = 59.0
        self.reactor.runUntilCurrent()
        self.assertEqual(self.fired, ["reset"])

    def test_twice_changes_nothing(self):
        """
        A second change leaves the pending calls where they are.
        """
        use_monotonic(self.reactor, self.monotonic)
        self.later(10, "once")
        self.assertTrue(use_monotonic(self.reactor, self.monotonic))
        self.assertEqual([c.getTime() for c in self.reactor.getDelayedCalls()], [60.0])

    def test_other_reactors_are_left_alone(self):
        """
        A reactor with timers of its own, and anything that is no reactor
        (a L{Clock}), keep their clock.
        """
        other = _Other()
        seconds = other.seconds
        self.assertFalse(use_monotonic(other, self.monotonic))
        self.assertIs(other.seconds, seconds)
        clock = Clock()
        self.assertFalse(use_monotonic(clock, self.monotonic))
        self.assertEqual(clock.seconds(), 0)
