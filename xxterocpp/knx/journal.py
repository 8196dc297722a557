# -*- test-case-name: tests.test_journal,tests.test_web_commissioning -*-
"""
What the KNX bridge last put on the bus and took from it, per charging point
and group object: the commissioning view of the status page reads it.

The L{Journal} keeps, per C{(point key, object key)}, the value last sent
and when, the value last received and when and from whom, and the last
GroupValueWrite another device sent to the address of a send-only object (a
misconfigured actuator writing the controller's status address: the bus then
says something the controller did not). Values are the bridge's, in the
domain's units (a status number, amperes, an aware datetime), before
encoding or after decoding; a foreign write is kept as its raw payload.

It is bounded: one L{Entry} per object, at most L{MAX_ENTRIES} (objects of
charging points removed by a reload are forgotten, the longest unused first).
"""

from collections import OrderedDict

import attr

__all__ = ["Entry", "Journal", "MAX_ENTRIES", "Record"]

#: At most this many objects are remembered: 18 objects of a few dozen
#: charging points, with room for reloads.
MAX_ENTRIES = 2000


@attr.s(frozen=True, slots=True)
class Record:
    """
    One value seen on the bus.

    @ivar value: the value, or the payload (L{bytes} or a small L{int}) of
        a foreign write.
    @ivar when: POSIX seconds, the time of day of the bridge (its C{wall}).
    @ivar source: the sender's individual address (C{"1.1.5"}), L{None} for
        what the controller sent.
    """

    value = attr.ib()
    when = attr.ib()
    source = attr.ib(default=None)


@attr.s(slots=True)
class Entry:
    """
    What is known of one object of one charging point; each a L{Record} or
    L{None}.
    """

    sent = attr.ib(default=None)
    received = attr.ib(default=None)
    foreign = attr.ib(default=None)


class Journal:
    """
    The last values of every bridged object (see the module docstring).
    """

    def __init__(self, limit=MAX_ENTRIES):
        self._entries = OrderedDict()
        self._limit = limit

    def _entry(self, point_key, name):
        key = (point_key, name)
        entry = self._entries.pop(key, None) or Entry()
        self._entries[key] = entry
        while len(self._entries) > self._limit:
            self._entries.popitem(last=False)
        return entry

    def sent(self, point_key, name, value, when):
        """
        The bridge wrote C{value} for the object C{name} of the charging point
        C{point_key} (C{(charger id, connector)}) at C{when}.
        """
        self._entry(point_key, name).sent = Record(value, when)

    def received(self, point_key, name, value, when, source=None):
        """
        A GroupValueWrite of C{value} (decoded) for a receive object arrived
        from C{source}.
        """
        self._entry(point_key, name).received = Record(value, when, source)

    def foreign_write(self, senders, telegram, when):
        """
        A GroupValueWrite arrived for an address the bridge sends to.

        @param senders: the C{(point, bridged object)} pairs that send to
            C{telegram}'s destination; a write to the ones that do not also
            receive is recorded (a write to a receive object is a command).
        @param telegram: the L{xxterocpp.knx.knxd.Telegram}.
        """
        for point, obj in senders:
            if not obj.declared.receives:
                self._entry(point.key, obj.key).foreign = Record(
                    telegram.payload, when, str(telegram.src))

    def entry(self, point_key, name):
        """
        @return: the L{Entry} of that object, or L{None} when nothing was
            seen of it.
        """
        return self._entries.get((point_key, name))
