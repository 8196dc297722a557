# -*- test-case-name: tests.test_slots,tests.test_server,tests.test_attacks_more -*-
"""
Connection slots shared by remote addresses, for what a stranger can hold
open before it has proven anything: the OCPP connections in their
handshake, the web interface's connections.

At most so many per address and so many in all. When all are taken, an
address holding fewer gets the slot of the oldest holder of the address
holding the most, if that one holds at least two more: the slots go to the
addresses in equal shares, so neither one address nor many lock anyone out
who comes from another.
"""

#: L{Slots.take}'s refusals: the address holds its share already, or all
#: slots are taken by addresses holding no more than it.
PER_ADDRESS = "per-address"
ALL = "all"


class Slots:
    """
    The slots and who holds them.

    @ivar taken: how many are held.
    """

    def __init__(self, give_up):
        """
        @param give_up: C{give_up(address, holder, held, newcomer)} ends
            C{holder} of C{address} (which held C{held} slots) whose slot
            L{take} gives to C{newcomer}; the slot is free already.
        """
        self._give_up = give_up
        # Address -> its holders, the oldest first; an address leaves when
        # it holds none.
        self._held = {}
        self.taken = 0

    def held(self, address):
        """
        @return: how many slots C{address} holds.
        """
        return len(self._held.get(address, ()))

    def take(self, address, holder, per_address, total):
        """
        Give C{holder}, new from C{address}, a slot, if need be the oldest
        of the address holding the most.

        @return: None when C{holder} has it (until L{release}), else why
            not: L{PER_ADDRESS} or L{ALL}.
        """
        mine = self._held.get(address, ())
        if len(mine) >= per_address:
            return PER_ADDRESS
        if self.taken >= total:
            richest, theirs = max(self._held.items(), key=lambda item: len(item[1]))
            if len(theirs) <= len(mine) + 1:
                return ALL
            oldest = theirs[0]
            count = len(theirs)
            self.release(richest, oldest)
            self._give_up(richest, oldest, count, address)
        self._held.setdefault(address, []).append(holder)
        self.taken += 1
        return None

    def release(self, address, holder):
        """
        Free the slot of C{holder} from C{address}; nothing when it holds
        none (any more).
        """
        mine = self._held.get(address)
        if mine is None or holder not in mine:
            return
        mine.remove(holder)
        if not mine:
            del self._held[address]
        self.taken -= 1
