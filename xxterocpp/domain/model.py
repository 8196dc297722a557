# -*- test-case-name: tests.test_domain,tests.test_domain_state -*-
"""
What the central system knows of its chargers: chargers, connectors,
transactions, reservations, boot data and the kept frames (the unknown
identities: L{xxterocpp.domain.unknown}). Plain values; no I/O and no
protocol.
"""

import struct
import sys
from datetime import datetime, timezone

import attr

from xxterocpp.pacing import LINE_BURST, LINE_RATE, LineBudget, write_line
from xxterocpp.quirks import NO_QUIRKS

#: How many OCPP frames are kept per charger for the status page.
FRAME_HISTORY = 100

#: How much frame text is kept per charger at most (bytes), whatever the
#: frames' size: with a thousand chargers the history stays within 16 MiB.
FRAME_HISTORY_BYTES = 16 * 1024

#: The end of a frame cut short in the history.
_CUT = " …".encode("utf-8")

#: Boot fields that most chargers of a fleet share.
_FLEET_WIDE = frozenset({"vendor", "model", "firmware", "meter_type"})


def shared(text):
    """
    @return: C{text} interned (None stays None).
    """
    return sys.intern(text) if type(text) is str else text


def utc_from_seconds(seconds):
    """
    @return: an aware UTC datetime for a POSIX timestamp.
    """
    return datetime.fromtimestamp(seconds, timezone.utc)


def stored(d):
    """
    @param d: the Deferred of a store write.
    @return: C{d}, its failure silenced: the store logs a failed commit and
        retries it itself, there is nothing more to do.
    """
    d.addErrback(lambda failure: None)
    return d


def casefold(tag):
    """
    @return: an idTag folded for comparison ("" for a missing one).
    """
    return tag.casefold() if isinstance(tag, str) else ""


class FrameHistory:
    """
    The last OCPP frames of a charger, oldest first, each read as a
    C{(seconds, direction, text)} tuple (like a C{deque} of them).

    Kept as records in one C{bytearray} (time, direction, length, UTF-8
    text): a frame costs its text and 13 bytes, not a string, a tuple and a
    float object. At most C{maxlen} frames and C{max_bytes} of text are kept,
    so a charger sending large frames does not make the history grow: the
    oldest frames go first, and a single frame larger than the whole budget
    is kept cut short.
    """

    __slots__ = ("maxlen", "max_bytes", "_buffer", "_count")

    _HEAD = struct.Struct("<dBI")

    def __init__(self, maxlen=FRAME_HISTORY, max_bytes=FRAME_HISTORY_BYTES):
        self.maxlen, self.max_bytes = maxlen, max_bytes
        self._buffer = bytearray()
        self._count = 0

    def add(self, seconds, direction, text):
        data = text.encode("utf-8", "surrogatepass")
        head = self._HEAD
        if len(data) + head.size > self.max_bytes:
            data = data[: max(0, self.max_bytes - head.size - len(_CUT))]
            # Never end inside a multi-byte character.
            data = data.decode("utf-8", "ignore").encode("utf-8") + _CUT
        buffer = self._buffer
        while self._count and (self._count >= self.maxlen
                               or len(buffer) + head.size + len(data) > self.max_bytes):
            # Deleting from the front of a bytearray is cheap (CPython moves
            # its start instead of the data).
            del buffer[: head.size + head.unpack_from(buffer, 0)[2]]
            self._count -= 1
        buffer += head.pack(seconds, direction == "out", len(data))
        buffer += data
        self._count += 1

    def append(self, frame):
        self.add(*frame)

    def __len__(self):
        return self._count

    def __getitem__(self, index):
        frames = list(self)
        return frames[index]

    def __iter__(self):
        frames, buffer, head, offset = [], self._buffer, self._HEAD, 0
        for _ in range(self._count):
            seconds, outgoing, size = head.unpack_from(buffer, offset)
            offset += head.size
            text = buffer[offset:offset + size].decode("utf-8", "surrogatepass")
            frames.append((seconds, "out" if outgoing else "in", text))
            offset += size
        return iter(frames)

    def __repr__(self):
        return f"FrameHistory({list(self)!r})"


@attr.s(eq=False)
class Transaction:
    """
    A charging session as the charger reported it.

    @ivar energy_register_wh: the last energy register reading seen during the
        session (Wh), or None.
    @ivar time_uncertain: whether its start or stop time is ours from a
        time our clock was wrong, the charger's being implausible
        (L{xxterocpp.domain.trusted.TrustedTime.dated}).
    """

    id = attr.ib()
    charger_id = attr.ib()
    connector = attr.ib()
    id_tag = attr.ib()
    start_time = attr.ib()
    meter_start = attr.ib()
    reservation_id = attr.ib(default=None)
    start_status = attr.ib(default="Accepted")
    dedup_key = attr.ib(default="")
    stop_time = attr.ib(default=None)
    meter_stop = attr.ib(default=None)
    stop_reason = attr.ib(default=None)
    stop_id_tag = attr.ib(default=None)
    energy_register_wh = attr.ib(default=None)
    energy_register_time = attr.ib(default=None)
    time_uncertain = attr.ib(default=False)

    @property
    def running(self):
        return self.stop_time is None

    @property
    def accepted(self):
        """
        Whether its StartTransaction was answered Accepted: a session
        refused (Blocked, Expired, Invalid, ConcurrentTx) runs at the charger
        until it stops it, but never counts as charging.
        """
        return self.start_status == "Accepted"

    @property
    def energy_wh(self):
        """
        Energy of the session in Wh: final when stopped, so far otherwise.
        """
        end = self.meter_stop if self.meter_stop is not None else self.energy_register_wh
        if end is None or self.meter_start is None:
            return None
        return max(0, round(end - self.meter_start))

    @classmethod
    def from_record(cls, record):
        return cls(
            id=record.id, charger_id=record.charger_id, connector=record.connector,
            id_tag=record.id_tag, start_time=record.start_time, meter_start=record.meter_start,
            reservation_id=record.reservation_id, start_status=record.start_status,
            dedup_key=record.dedup_key, stop_time=record.stop_time, meter_stop=record.meter_stop,
            stop_reason=record.stop_reason, stop_id_tag=record.stop_id_tag,
            energy_register_wh=record.last_meter_wh, energy_register_time=record.last_meter_time,
            time_uncertain=record.time_uncertain,
        )


@attr.s(eq=False)
class Connector:
    """
    One connector of a charger, as last reported.

    @ivar currents: charging current per phase in A, e.g. C{{"L1": 15.9}}.
    @ivar limit: the current limit in force (A) as the charger last accepted
        it, or None before any was applied.
    @ivar reservation: the L{Reservation} held on it, or None.
    """

    charger_id = attr.ib()
    number = attr.ib()
    status = attr.ib(default=None)
    error_code = attr.ib(default="NoError")
    info = attr.ib(default=None)
    vendor_error_code = attr.ib(default=None)
    status_time = attr.ib(default=None)
    transaction = attr.ib(default=None)
    energy_register_wh = attr.ib(default=None)
    currents = attr.ib(factory=dict)
    power_w = attr.ib(default=None)
    current_offered = attr.ib(default=None)
    meter_time = attr.ib(default=None)
    limit = attr.ib(default=None)
    reservation = attr.ib(default=None)

    @property
    def current(self):
        """
        The charging current in A: the largest phase current (a single-phase
        car on a three-phase charger draws on one phase only).
        """
        return max(self.currents.values()) if self.currents else None


@attr.s(frozen=True)
class Reservation:
    """
    A reservation the charger accepted (ReserveNow).

    @ivar expiry: aware UTC datetime; past it the charger frees the
        connector by itself (OCPP 1.6 §5.13).
    @ivar until_freed: whether it holds until it is freed: the central
        system renews it at the charger before C{expiry} (and after a
        reboot), instead of letting it end then.
    """

    id = attr.ib()
    id_tag = attr.ib()
    expiry = attr.ib()
    until_freed = attr.ib(default=False)

    def holds(self, now):
        """
        @return: whether the reservation is still in force at C{now}.
        """
        return self.until_freed or self.expiry > now

    def admits(self, id_tag):
        """
        @return: whether C{id_tag} is the tag the connector is reserved for.
        """
        return casefold(id_tag) == casefold(self.id_tag)


@attr.s(frozen=True, slots=True)
class Boot:
    """
    What a charger says of itself when it boots; None for what it did not
    say.
    """

    vendor = attr.ib(default=None)
    model = attr.ib(default=None)
    serial = attr.ib(default=None)
    firmware = attr.ib(default=None)
    meter_type = attr.ib(default=None)
    meter_serial = attr.ib(default=None)
    iccid = attr.ib(default=None)
    imsi = attr.ib(default=None)

    def as_dict(self):
        """
        @return: the boot data as L{Charger.boot} keeps and the store saves
            it: only what the charger said (read it with C{.get()}), the
            fields a fleet shares interned (one copy each).
        """
        return {
            name: shared(value) if name in _FLEET_WIDE else value
            for name, value in attr.asdict(self).items()
            if value is not None
        }


@attr.s(eq=False)
class Charger:
    """
    A charger (one OCPP identity) and what is known about it.

    @ivar boot: L{Boot.as_dict} of its last boot.
    @ivar status: the status of the whole charger (connector 0) as last
        reported, or None; C{error_code} goes with it.
    @ivar configuration: its configuration keys as read after the last
        BootNotification, C{KeyValue} by key.
    @ivar ever_connected: whether it has connected at least once, ever
        (kept in the state store).
    @ivar offline: whether it has been disconnected for at least C{[knx]
        offline_after} seconds (False while connected): its connectors then
        count as Unavailable (kept in the state store).
    @ivar secure: whether its connection (the current one, else the last)
        is TLS: a certificate signing request is signed only over TLS
        (L{xxterocpp.domain.security.SecurityProfiles.signing_refusal}).
    @ivar quirks: the L{xxterocpp.quirks.ActiveQuirks} in force for it,
        chosen from its boot data and its configuration
        (L{xxterocpp.domain.workarounds.Workarounds}); the code that honours a
        workaround asks C{quirks.has(name)}.
    @ivar lines: the L{LineBudget} of the log lines its traffic causes, over
        all its connections (L{line_due}), from the first such line on.
    @ivar milestone_lines: the L{LineBudget} of its connections' lines
        (opened, replaced, closed), of the same size: a charger whose
        frames use up L{lines} still has them told (L{chatter}).
    """

    id = attr.ib()
    session = attr.ib(default=None)
    address = attr.ib(default=None)
    secure = attr.ib(default=False)
    connected_since = attr.ib(default=None)
    disconnected_since = attr.ib(default=None)
    # last_seen (a property): a datetime, or the POSIX seconds of the last
    # frame, turned into one when read (not on every frame).
    _last_seen = attr.ib(default=None, repr=False)
    _last_seen_s = attr.ib(default=None, init=False, repr=False)
    boot = attr.ib(factory=dict)
    booted_at = attr.ib(default=None)
    status = attr.ib(default=None)
    error_code = attr.ib(default="NoError")
    connectors = attr.ib(factory=dict)
    frames = attr.ib(factory=FrameHistory)
    notifications = attr.ib(factory=dict)
    # An empty deque costs 600 bytes per charger; made at the first event.
    security_events = attr.ib(default=())
    reconnects = attr.ib(default=0)
    tolerated = attr.ib(default=0)
    configuration = attr.ib(factory=dict)
    ever_connected = attr.ib(default=False)
    offline = attr.ib(default=False)
    quirks = attr.ib(default=NO_QUIRKS, repr=False)
    lines = attr.ib(default=None, repr=False)
    milestone_lines = attr.ib(default=None, repr=False)

    def line_due(self, now):
        """
        Take a log line its traffic causes from its L{LineBudget}
        (L{LINE_BURST} at once, then L{LINE_RATE} a second): what its
        frames make us complain of, what its messages report, its
        connections. A new connection does not fill it again.

        @param now: the time now (seconds, a monotonic clock).
        @return: None when the line is held back; else how many were held
            back before it.
        """
        if self.lines is None:
            self.lines = LineBudget(LINE_RATE, LINE_BURST, now)
        return self.lines.due(now)

    def milestone_due(self, now):
        """
        Take a line of its connections from L{milestone_lines} (as
        L{line_due}).
        """
        if self.milestone_lines is None:
            self.milestone_lines = LineBudget(LINE_RATE, LINE_BURST, now)
        return self.milestone_lines.due(now)

    def chatter(self, log, level, now, format, milestone=False, **fields):
        """
        Log a line its traffic causes, within L{line_due}; the next line
        written says how many were held back.

        @param log: the L{twisted.logger.Logger} of the line.
        @param level: C{"info"} or C{"warn"}.
        @param milestone: a line of a connection opened, replaced or
            closed: within L{milestone_due} instead, which its other
            lines do not use up (docs/ocpp.md#frame-budget).
        """
        write_line(self.milestone_due if milestone else self.line_due, log, level, now, format,
                   **fields)

    @property
    def connected(self):
        return self.session is not None

    @property
    def last_seen(self):
        """
        When the charger was last heard from: an aware UTC datetime, or None.
        """
        if self._last_seen_s is not None:
            self._last_seen = utc_from_seconds(self._last_seen_s)
            self._last_seen_s = None
        return self._last_seen

    @last_seen.setter
    def last_seen(self, value):
        self._last_seen, self._last_seen_s = value, None

    def connector(self, number):
        if number not in self.connectors:
            self.connectors[number] = Connector(self.id, number)
        return self.connectors[number]
