# -*- test-case-name: tests.test_smart -*-
"""
The site limit (C{[smart] site_limit}) shared between every charging point
that charges, smart or not: fair shares, what a car does not draw left to
the others, and turns when the limit is too small for everyone.
"""

from datetime import timedelta

from xxterocpp.smart import planner

#: A meter reading older than this is lost: the point is then assumed to
#: draw its whole share.
METER_FRESH = 300.0

#: A point drawing well below its share gives the rest to others, keeping
#: this much headroom (A) to ramp up again.
DRAW_MARGIN = 2.0

#: How long (about) a point under a site limit too small for everyone
#: charges before the next one gets its turn; turns change at slot
#: boundaries.
ROTATION = planner.SLOT.total_seconds()


def _turn_end(now):
    """
    When the points served from C{now} make way, if others wait: a slot
    boundary at least half a turn away.
    """
    return planner.next_slot(now + timedelta(seconds=ROTATION / 2)).timestamp()


class SiteShare:
    """
    The shares of the site limit, by charging point.

    @ivar shares: the current (A) each charging point, by C{(charger id,
        connector)}, was given last.
    """

    def __init__(self):
        self.shares = {}
        self._queue = []
        self._rotate_at = 0.0
        self._metered = {}

    def metered(self, key, seconds):
        """
        A meter reading of charging point C{key} arrived at C{seconds}.
        """
        self._metered[key] = seconds

    def share(self, limit, seconds, now, wishes, draws):
        """
        Share C{limit} again.

        @param seconds: the monotonic clock now (how old a reading is).
        @param now: the time of day now, an aware datetime (the turns
            change at slot boundaries).
        @param wishes: the current (A) each charging point with a running
            transaction wants, by key.
        @param draws: the current (A) each of them is seen to draw, or None.
        @return: the shares that changed, by key.
        """
        demands = {}
        for key, wanted in wishes.items():
            fresh = seconds - self._metered.get(key, float("-inf")) < METER_FRESH
            share, draw = self.shares.get(key), draws.get(key)
            # A car using less than its share (bar half the margin, or a
            # capped car would be uncapped the next round) leaves the rest
            # to others; a car with a lost reading keeps its share.
            if fresh and share and draw is not None and draw < share - DRAW_MARGIN / 2:
                wanted = min(wanted, draw + DRAW_MARGIN)
            demands[key] = wanted
        # Newcomers queue behind the points already charging.
        self._queue = [k for k in self._queue if k in demands] + [
            k for k in demands if k not in self._queue]
        shares = planner.share(limit, demands, self._queue)
        if not any(demands[k] > 0 and not shares[k] for k in demands):
            self._rotate_at = _turn_end(now)
        elif now.timestamp() >= self._rotate_at:
            self._queue = planner.rotate(self._queue, shares, demands)
            shares = planner.share(limit, demands, self._queue)
            self._rotate_at = _turn_end(now)
        changed = {key: amps for key, amps in shares.items() if self.shares.get(key) != amps}
        self.shares.update(changed)
        return changed
