# -*- test-case-name: tests.test_domain,tests.test_server -*-
"""
Rate limits per remote address for what a stranger can make the service do
as often as it connects: write to the store, write a log line.
"""

from collections import OrderedDict

#: How many remote addresses a L{Pacer} remembers; beyond, the one that
#: acted longest ago is forgotten (and may act again at once).
MAX_PACED_ADDRESSES = 1024


class Pacer:
    """
    At most one action per remote address every C{interval} seconds (a
    store write, a log line), the others held back and counted.
    """

    def __init__(self, interval, max_addresses=MAX_PACED_ADDRESSES):
        self.interval = interval
        self.max_addresses = max_addresses
        # Address -> [when it last acted, how many were held back since],
        # the address that acted last at the end.
        self._addresses = OrderedDict()

    def due(self, address, seconds):
        """
        @param seconds: the time now (POSIX seconds).
        @return: None when C{address} acted less than C{interval} seconds
            ago (this one is held back); else how many were held back
            since its last action (this one acts).
        """
        entry = self._addresses.get(address)
        if entry is not None and seconds - entry[0] < self.interval:
            entry[1] += 1
            return None
        self._addresses[address] = [seconds, 0]
        self._addresses.move_to_end(address)
        while len(self._addresses) > self.max_addresses:
            self._addresses.popitem(last=False)
        return entry[1] if entry is not None else 0
