# -*- test-case-name: tests.test_upstream_outbox,tests.test_upstream_store -*-
"""
The room the queues towards the back offices have (docs/upstream.md#queue):
per charger (L{Account}) at most L{MAX_QUEUED} messages and
L{MAX_QUEUED_BYTES} of payloads; and for all chargers together
(L{Budget}) at most L{MAX_MEMORY} of memory. What gives way at a bound is
the same at both: the oldest queued MeterValues (never the head, which may
be on its way, nor one sent), at the global bound of the charger that has
the most queued; with none left, new MeterValues and StartTransactions are
not queued, and a StopTransaction (whose start is queued) is queued
without its transactionData. The L{xxterocpp.upstream.outbox.Outbox}
decides what comes and goes; this module counts and picks what gives way.
"""

from datetime import datetime
from itertools import islice

from twisted.logger import Logger

#: The messages one charger's queue holds at most, and the bytes of their
#: payloads (as JSON): at a sample interval of 5 minutes, 17 days of a
#: session's thinned values.
MAX_QUEUED = 5000
MAX_QUEUED_BYTES = 4 * 1024 * 1024

#: What a queued message costs in memory besides the characters of its
#: payload's JSON text: its L{xxterocpp.upstream.outbox.Message}, the
#: text's header, the time it was queued, its place in the deque. Measured
#: with tracemalloc (tests.test_upstream_outbox.MemoryTests): 5,000
#: MeterValues of five sampled values (482 characters each as compact
#: JSON) took 3.85 MB, 770 bytes each, 288 besides the text; rounded up.
#: (Kept as parsed dicts they took 16 MB, 3,204 bytes each.)
MESSAGE_OVERHEAD = 320

#: The memory all the queues together take at most (the payloads' text
#: and L{MESSAGE_OVERHEAD} per message): on a controller with a few
#: hundred MB shared with knxd, 16 MiB is some 20,900 such MeterValues
#: (four chargers at their own cap of 5,000), 72 days of one session's
#: values every 5 minutes. A charger at its own cap takes 4 MB of it.
MAX_MEMORY = 16 * 1024 * 1024

#: How far below a bound the queues are again when a line says so (not a
#: line at each message around it).
BELOW = 0.9


def cost(message):
    """
    @return: the memory C{message} is counted at (L{MAX_MEMORY}).
    """
    return message.size + MESSAGE_OVERHEAD


class Budget:
    """
    The memory of every charger's queue together (L{MAX_MEMORY}).

    @ivar used: the memory counted of all queued messages.
    @ivar dropped: how many messages gave way at this bound, or were not
        queued, since the service started.
    """

    log = Logger()

    def __init__(self, limit=None):
        self.limit = MAX_MEMORY if limit is None else limit
        self.used = 0
        self.dropped = 0
        self.accounts = []
        self._reached = False

    def room(self, needed, account):
        """
        Make room for C{needed} more: the oldest MeterValues that may give
        way, of the charger with the most queued of those that have one.

        @param account: the L{Account} of the charger asking.
        @return: whether there is room now.
        """
        while self.used + needed > self.limit:
            self.reached(account)
            victims = sorted((a for a in self.accounts if a.meters), key=_used, reverse=True)
            if not any(victim.give_way() for victim in victims):
                return False
            self.dropped += 1
        return True

    def reached(self, account):
        if not self._reached:
            self._reached = True
            self.log.warn("The queues for the back offices are at their bound of memory"
                          " ({kib} of {limit} KiB, {n} messages of {chargers} chargers): the"
                          " oldest MeterValues of the charger with the most queued are dropped;"
                          " with none left, new ones and new transactions stay local (first at"
                          " {id})", kib=self.used // 1024, limit=self.limit // 1024,
                          n=sum(len(a) for a in self.accounts),
                          chargers=sum(bool(len(a)) for a in self.accounts), id=account.charger_id)

    def released(self):
        if self._reached and self.used < self.limit * BELOW:
            self._reached = False
            self.log.info("The queues for the back offices have room again ({kib} KiB;"
                          " {n} messages dropped or left local at their bound of memory since"
                          " the service started)", kib=self.used // 1024, n=self.dropped)


def _used(account):
    return account.used


class Account:
    """
    One charger's queue counted (L{MAX_QUEUED}, L{MAX_QUEUED_BYTES}) and in
    the L{Budget}.

    @ivar bytes: the bytes of the queued payloads as JSON.
    @ivar used: the memory counted of them (L{cost}).
    @ivar meters: how many of them are MeterValues.
    @ivar dropped: how many messages gave way or were not queued at either
        bound since the service started.
    """

    log = Logger()

    def __init__(self, charger_id, messages, budget, drop):
        """
        @param messages: the queue, a deque of
            L{xxterocpp.upstream.outbox.Message}s.
        @param drop: one-argument callable taking a message out of the
            queue, and out of the store, as dropped (calls L{removed}).
        """
        self.charger_id = charger_id
        self._messages = messages
        self._drop = drop
        self.budget = budget
        budget.accounts.append(self)
        self.bytes = self.used = self.meters = self.dropped = 0
        self._capped = False

    def __len__(self):
        return len(self._messages)

    def added(self, message):
        self.bytes += message.size
        self.used += cost(message)
        self.budget.used += cost(message)
        self.meters += message.action == "MeterValues"

    def removed(self, message):
        self.bytes -= message.size
        self.used -= cost(message)
        self.budget.used -= cost(message)
        self.meters -= message.action == "MeterValues"
        self.budget.released()

    def resized(self, message, size):
        """
        C{message} got a payload of C{size} bytes in place of its own.
        """
        delta = size - message.size
        message.size = size
        self.bytes += delta
        self.used += delta
        self.budget.used += delta

    def _full(self, size):
        return len(self) >= MAX_QUEUED or self.bytes + size > MAX_QUEUED_BYTES

    def room(self, action, transaction_id, size):
        """
        Make room for a message of C{size} bytes, to be queued, in this
        charger's queue and the budget: MeterValues give way
        (L{give_way}).

        @return: whether there is room now; if not, a message other than
            a StopTransaction counts as dropped (the caller does not queue
            it; a StopTransaction it queues without its transactionData).
        """
        while self._full(size):
            if not self._capped:
                self._capped = True
                self.log.warn("{id}: the queue for the back office is at its cap ({n} messages,"
                              " {kib} KiB): its oldest MeterValues are dropped; with none left,"
                              " new ones and new transactions stay local (first: {action} of"
                              " transaction {tx})", id=self.charger_id, n=len(self),
                              kib=self.bytes // 1024, action=action, tx=transaction_id)
            if not self.give_way():
                return self._refused(action)
        if not self.budget.room(size + MESSAGE_OVERHEAD, self):
            self.budget.dropped += action != "StopTransaction"
            return self._refused(action)
        if self._capped and len(self) < MAX_QUEUED * BELOW and (
                self.bytes < MAX_QUEUED_BYTES * BELOW):
            self._capped = False
            self.log.info("{id}: the queue for the back office has room again ({n} messages"
                          " dropped or left local at its cap since the service started)",
                          id=self.charger_id, n=self.dropped)
        return True

    def _refused(self, action):
        self.dropped += action != "StopTransaction"
        return False

    def fit(self):
        """
        Bring the queue within both bounds when it outgrew them: restored
        from the store (kept by an older version, or under other bounds),
        or a payload replaced by a larger one. Its MeterValues beyond them
        give way (its transactions stay).
        """
        while (len(self) > MAX_QUEUED or self.bytes > MAX_QUEUED_BYTES) and self.give_way():
            pass
        self.budget.room(0, self)

    def give_way(self):
        """
        Drop the oldest queued MeterValues that may go: not the head, not
        one sent.

        @return: whether one went.
        """
        for message in islice(self._messages, 1, None):
            if message.action == "MeterValues" and not message.sent:
                self._drop(message)
                self.dropped += 1
                return True
        return False


def _sample_time(payload, default):
    """
    @return: when a MeterValues payload was sampled (its latest timestamp).
    """
    times = [mv.get("timestamp") for mv in payload.get("meterValue") or () if isinstance(mv, dict)]
    try:
        return max(datetime.fromisoformat(t) for t in times if isinstance(t, str))
    except ValueError:
        # None given, or one that does not parse (decoded leniently).
        return default


def thin(messages, transaction_id, payload, interval, now):
    """
    Keep, of a transaction's MeterValues queued while the back office is
    away, the first, one per C{interval} (each an I{anchor} at least
    C{interval} after the one before) and the last: what gives way before
    any bound is reached.

    @param messages: the charger's queue.

    @return: C{(replaced, anchor)}: the queued MeterValues that
        C{payload} replaced (None when it is to be queued), and whether
        a C{payload} to be queued is an anchor.
    """
    tail = []
    for message in reversed(messages):
        if message.transaction_id != transaction_id:
            continue
        if message.action != "MeterValues" or len(tail) == 2:
            break
        tail.append(message)
        if message.anchor:
            break
    if not tail:
        return None, True
    last, anchor = tail[0], tail[-1]
    try:
        since = (_sample_time(payload, now)
                 - _sample_time(anchor.payload, anchor.queued_at)).total_seconds()
    except TypeError:
        # An aware and a naive time: keep both rather than guess.
        return None, True
    if last.anchor:
        # After the anchor: a new one, or the latest value for now.
        return None, since >= interval
    # The latest value so far gives way to this one, which is an anchor
    # of its own when a new interval began (its payload is the
    # caller's to set).
    last.anchor = since >= interval
    return last, None
