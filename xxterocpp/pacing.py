# -*- test-case-name: tests.test_domain,tests.test_server -*-
"""
Rate limits: per remote address for what a stranger can make the service do
as often as it connects (write to the store, write a log line), the token
bucket of what a connected charger may send (L{TokenBucket}), the log
lines a charger's frames and connections cause (L{LineBudget}), and the
commits of what it may change as often as it likes (L{CommitPacer}).
"""

from collections import OrderedDict

#: The log lines one charger's traffic may cause (its malformed or refused
#: frames, the events its messages report, its connections; and the lines
#: of one KNX group address's writes): LINE_BURST at once, then one every
#: 1 / LINE_RATE seconds; the next line written counts those held back.
LINE_BURST = 20
LINE_RATE = 1 / 6

#: How many remote addresses a L{Pacer} remembers; beyond, the one that
#: acted longest ago is forgotten (and may act again at once).
MAX_PACED_ADDRESSES = 1024

#: How many actions all addresses together may take per interval: a flood
#: from a thousand addresses (an IPv6 prefix has more) is ten log lines and
#: ten store writes per interval, not a thousand.
MAX_ACTIONS_PER_INTERVAL = 10


class Pacer:
    """
    At most one action per remote address every C{interval} seconds (a
    store write, a log line), and at most C{max_actions} by all of them
    together; the others held back and counted.
    """

    def __init__(self, interval, max_addresses=MAX_PACED_ADDRESSES,
                 max_actions=MAX_ACTIONS_PER_INTERVAL):
        self.interval = interval
        self.max_addresses = max_addresses
        self.max_actions = max_actions
        # Address -> [when it last acted (None: never, it was held back by
        # the others), how many were held back since], the address that
        # came last at the end.
        self._addresses = OrderedDict()
        # When the current interval of all addresses began, and how many
        # acted in it.
        self._window = None
        self._actions = 0

    def due(self, address, seconds):
        """
        @param seconds: the time now (POSIX seconds).
        @return: None when C{address} acted less than C{interval} seconds
            ago, or C{max_actions} addresses acted in the current interval
            (this one is held back); else how many were held back since
            its last action (this one acts).
        """
        entry = self._addresses.get(address)
        if entry is not None and entry[0] is not None and seconds - entry[0] < self.interval:
            entry[1] += 1
            return None
        if self._window is None or seconds - self._window >= self.interval:
            self._window, self._actions = seconds, 0
        if self._actions >= self.max_actions:
            entry = entry or [None, 0]
            entry[1] += 1
            self._remember(address, entry)
            return None
        self._actions += 1
        self._remember(address, [seconds, 0])
        return entry[1] if entry is not None else 0

    def _remember(self, address, entry):
        self._addresses[address] = entry
        self._addresses.move_to_end(address)
        while len(self._addresses) > self.max_addresses:
            self._addresses.popitem(last=False)


class TokenBucket:
    """
    A token bucket: C{rate} tokens a second flow in, at most C{burst} are
    kept; it starts full. What it meters takes its tokens (L{take}) and may
    run into debt; the caller decides what happens then (a charger's
    connection is read more slowly, a StartTransaction is refused).

    @ivar tokens: how many are left after the last L{take} (below 1: none
        for the next).
    """

    __slots__ = ("rate", "burst", "tokens", "_at")

    def __init__(self, rate, burst, now):
        """
        @param now: the time now (seconds, a monotonic clock).
        """
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self._at = now

    def take(self, now, cost=1):
        """
        Take C{cost} tokens at C{now}, into debt if need be.

        @return: how many are left (L{tokens}).
        """
        tokens = self.tokens + (now - self._at) * self.rate
        self._at = now
        self.tokens = tokens = (self.burst if tokens > self.burst else tokens) - cost
        return tokens

    def level(self, now):
        """
        @return: how many tokens there are at C{now} (taking none).
        """
        return min(self.burst, self.tokens + (now - self._at) * self.rate)

    def until(self, tokens):
        """
        @return: the seconds from the last L{take} until the bucket holds
            C{tokens} again (0 when it does already).
        """
        return max(0.0, (tokens - self.tokens) / self.rate)


class LineBudget:
    """
    The log lines one source may cause: C{burst} at once, then C{rate} a
    second; the ones held back are counted, and the next line says how
    many (a charger sending garbage 100 times a second writes a few lines
    a minute to the journal, not 100 a second).
    """

    __slots__ = ("_bucket", "held")

    def __init__(self, rate, burst, now):
        """
        @param now: the time now (seconds, a monotonic clock).
        """
        self._bucket = TokenBucket(rate, burst, now)
        self.held = 0

    def due(self, now):
        """
        @return: None when this line is held back; else how many were held
            back since the last one written.
        """
        if self._bucket.level(now) < 1:
            self.held += 1
            return None
        self._bucket.take(now)
        held, self.held = self.held, 0
        return held


def held_back(held):
    """
    @return: what a line that L{LineBudget.due} let through says of the
        C{held} lines held back before it (nothing when there were none).
    """
    return f" ({held} such lines held back before this one)" if held else ""


def write_line(due, log, level, now, format, **fields):
    """
    Log a line within a budget of lines: C{due(now)} (a L{LineBudget}'s
    C{due}, or what stands for it) says whether it is written; the line
    written says how many were held back before it.

    @param log: the L{twisted.logger.Logger} of the line.
    @param level: C{"info"}, C{"warn"}, C{"error"} or C{"failure"}.
    """
    held = due(now)
    if held is not None:
        getattr(log, level)(format + held_back(held), **fields)


class CommitPacer:
    """
    Whether a value a charger may change as often as it likes (when it was
    last connected, what it said at its boot) is committed at once: the
    first change of each key in C{interval} seconds is, the others are lazy
    writes (L{xxterocpp.store._batches.LAZY_WRITE_DELAY}), which a later
    change in memory replaces: a charger reconnecting in a loop costs a
    commit a minute, not one per connection.
    """

    def __init__(self, interval):
        self.interval = interval
        # key -> when it was last committed at once
        self._committed = {}

    def lazy(self, key, now):
        """
        @param now: the time now (seconds, a monotonic clock).
        @return: whether the write of C{key} now may be lazy.
        """
        last = self._committed.get(key)
        if last is not None and now - last < self.interval:
            return True
        self._committed[key] = now
        return False

    def forget(self, scope):
        """
        Forget the keys whose first element is C{scope} (a charger removed
        from the configuration).
        """
        for key in [k for k in self._committed if k[0] == scope]:
            del self._committed[key]
