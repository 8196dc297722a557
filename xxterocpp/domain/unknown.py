# -*- test-case-name: tests.test_domain,tests.test_attacks,tests.test_server -*-
"""
The identities that tried to connect but are not configured: what an
installer copies into the configuration, counted without letting a flood of
made-up identities cost memory, store writes or log lines without bound.
"""

from collections import OrderedDict

import attr
from twisted.logger import Logger

from xxterocpp.domain.model import stored
from xxterocpp.pacing import Pacer

#: How many unknown identities are remembered (a flood of random ids must not
#: grow memory without bound).
MAX_UNKNOWN = 100

#: Seconds between two store writes, and between two log lines, about the
#: unknown identities of one remote address: a flood of made-up identities
#: costs one of each per address and interval.
UNKNOWN_INTERVAL = 10


@attr.s(eq=False)
class UnknownCharger:
    """
    An identity that tried to connect but is not configured: what an
    installer copies into the configuration.

    @ivar unsaved: how many of the C{count} attempts are not in the store
        yet (its writes are rate-limited).
    """

    identity = attr.ib()
    address = attr.ib()
    first_seen = attr.ib()
    last_seen = attr.ib()
    count = attr.ib(default=1)
    unsaved = attr.ib(default=0)


class UnknownChargers(OrderedDict):
    """
    The unknown identities that tried to connect: L{UnknownCharger} by
    identity, the most recent last, at most L{MAX_UNKNOWN} of them.
    """

    def restore(self, entries):
        """
        Take the entries kept in the store, in any order (the store gives
        the latest first): the trimming must drop the oldest.
        """
        for entry in sorted(entries, key=lambda e: e.last_seen):
            self[entry.identity] = entry
        self._trim()

    def record(self, identity, address, now):
        """
        Count an attempt of C{identity} to connect from C{address}.

        @return: the L{UnknownCharger}, its C{count} 1 for a new identity.
        """
        entry = self.pop(identity, None)
        if entry is None:
            entry = UnknownCharger(identity, address, now, now, 0)
        entry.address, entry.last_seen = address, now
        entry.count += 1
        entry.unsaved += 1
        self[identity] = entry
        self._trim()
        return entry

    def _trim(self):
        while len(self) > MAX_UNKNOWN:
            self.popitem(last=False)


class UnknownAttempts:
    """
    The attempts of unknown identities, kept in L{UnknownChargers}: counted
    in memory; an address gets one store write and one log line (for a new
    identity) per L{UNKNOWN_INTERVAL} at most, so what it sends meanwhile is
    stored with the next write of the same identity or by L{save}.
    """

    log = Logger()

    def __init__(self, unknown, store, clock, now):
        """
        @param unknown: the L{UnknownChargers} to keep them in.
        @param clock: an C{IReactorTime} on a monotonic clock (the pacing).
        @param now: zero-argument callable, the time of day as an aware UTC
            datetime (when an identity was first and last seen).
        """
        self._unknown = unknown
        self._store = store
        self._clock = clock
        self._now = now
        self._writes = Pacer(UNKNOWN_INTERVAL)
        self._lines = Pacer(UNKNOWN_INTERVAL)

    def load(self):
        """
        Take the identities the store kept (at start-up).
        """
        self._unknown.restore(UnknownCharger(
            row.identity, row.address, row.first_seen, row.last_seen, row.count)
            for row in self._store.load_unknown_chargers())

    def record(self, identity, address):
        """
        Remember an unknown identity trying to connect from C{address}.
        """
        seconds = self._clock.seconds()
        entry = self._unknown.record(identity, address, self._now())
        if entry.count == 1:
            held = self._lines.due(address, seconds)
            if held is not None:
                self.log.warn(
                    "unknown charger {identity!r} from {address} tried to connect: add it as"
                    " a [[charger]] id to the configuration to serve it{more}",
                    identity=identity, address=address,
                    more=f" ({held} more new identities from this address since the last"
                         " such line)" if held else "")
        if self._writes.due(address, seconds) is not None:
            self._save(entry)

    def _save(self, entry):
        attempts, entry.unsaved = entry.unsaved, 0
        stored(self._store.record_unknown_attempts(
            entry.identity, entry.address, entry.first_seen, entry.last_seen, attempts))

    def save(self):
        """
        Queue the store writes of the attempts that L{record} kept in memory
        only (at shutdown).
        """
        for entry in self._unknown.values():
            if entry.unsaved:
                self._save(entry)
