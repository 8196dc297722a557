# -*- test-case-name: tests.test_clock -*-
"""
The reactor's timers on the monotonic clock.

Twisted's reactors keep their timers on the wall clock:
C{ReactorBase.seconds} is C{time.time}, C{callLater(d, f)} schedules C{f}
at C{seconds() + d}, and C{timeout()} and C{runUntilCurrent()} compare with
C{seconds()} again. A controller without a battery-backed clock boots at
1970 and is set by NTP minutes later: a wall-clock step forward then fires
every pending timer at once (every call times out together), a step back
holds them all for as long as the step. What a timer means here is always
a duration (a call timeout, a ping, a boot trigger, a hysteresis), so the
composition root puts the reactor on C{time.monotonic}
(L{use_monotonic}); the parts that need the time of day get a C{wall}
callable of their own (see C{docs/architecture.md#time}).
"""

import time
from heapq import heapify

from twisted.internet.base import ReactorBase


def use_monotonic(reactor, monotonic=time.monotonic):
    """
    Make C{reactor} keep its timers on C{monotonic}: C{reactor.seconds()}
    returns it from now on, and every call already pending is moved to
    the same point on the new clock (as far ahead as it was).

    Call it before C{reactor.run()}: L{twisted.internet.task.LoopingCall}s
    started earlier keep their wall-clock start and would skip or bunch
    their next runs.

    Only reactors built on L{ReactorBase}'s timer heap (the epoll, poll
    and select reactors: Twisted 22.4 and current keep pending calls in
    C{_pendingTimedCalls} and C{_newTimedCalls}, each L{DelayedCall}
    with the C{seconds} it was made with) are changed; others (the
    asyncio reactor, whose loop is monotonic already) are left alone.

    @param monotonic: the new clock (seconds, any origin, never stepped).
    @return: whether the reactor was changed.
    """
    if not isinstance(reactor, ReactorBase) or (
            type(reactor).callLater is not ReactorBase.callLater):
        return False
    if reactor.seconds is monotonic:
        return True
    shift = monotonic() - reactor.seconds()
    for call in reactor._pendingTimedCalls + reactor._newTimedCalls:
        call.time += shift
        call.seconds = monotonic
    heapify(reactor._pendingTimedCalls)
    # An attribute of the instance wins over ReactorBase.seconds in
    # callLater, timeout() and runUntilCurrent() alike.
    reactor.seconds = monotonic
    return True
