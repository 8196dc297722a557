# -*- test-case-name: tests.test_budget,tests.test_server -*-
"""
The frame budget of a charger's connection: how many WebSocket frames it
may make us handle, whatever they hold (CALLs, answers, garbage that gets
a CALLERROR, pings). Every frame costs the reactor's CPU; OCPP-J asks a
charger for one CALL at a time, but nothing makes it wait, and a connected
charger (authenticated or not yet booted) could send thousands of small
frames a second.

Each charger has a L{TokenBucket} of L{FRAME_RATE} frames a second and a
burst of L{FRAME_BURST}, shared by its connections (L{Floods.bucket}): a
new connection gets no new burst, or a charger reconnecting after each
thousand frames would never be slowed. Beyond it, frames are not dropped (a real
charger may have sent them): the connection is read more slowly. We stop
reading its socket (C{transport.pauseProducing()}) and handle no more of
what was read already until the bucket has refilled L{FRAME_BATCH} frames,
so TCP makes the charger wait. One that keeps the bucket empty for
L{FLOOD_SECONDS} gets a close frame with 1008 (policy violation), its TCP
connection is closed, and one log line says so.

While the connection is held, the timeouts of our own calls to the
charger do not run (L{FrameBudget.held_seconds}): their answers may be
among the frames not read yet.

A message may come in at most L{MAX_FRAGMENTS} frames: Autobahn keeps every
fragment of a message until its last, and empty ones count against no
size limit, so a charger could otherwise grow one message's list of
fragments for ever, within its frame budget. One more closes the
connection with 1008.

The message size (64 KiB, L{xxterocpp.ocpp.server.MAX_MESSAGE_SIZE}),
Autobahn's pings and their timeout, and the rules of the CALLs themselves
(L{xxterocpp.ocpp.rpc}) stay where they are; this only meters.
"""

from twisted.logger import Logger

from xxterocpp.pacing import Pacer, TokenBucket

#: Frames a second a connection may send for as long as it likes: a real
#: charger sends a few a second at most (a MeterValues, a StatusNotification,
#: the answers to our calls, a pong).
FRAME_RATE = 100

#: Frames a connection may send at once, beyond L{FRAME_RATE}: a charger
#: back after an outage sends what it queued (hundreds of MeterValues,
#: StatusNotifications, transactions) as fast as we answer, and all of it
#: must pass at full speed.
FRAME_BURST = 1000

#: A frame costs one token, and one more for each started L{FRAME_BYTES}
#: of payload: a 64 KiB MeterValues costs the CPU of many Heartbeats.
#: OCPP messages a charger sends are rarely over 4 KiB.
FRAME_BYTES = 4096

#: How many frames a connection that ran out waits for: its socket is read
#: again once the bucket holds this many (a tenth of a second at
#: L{FRAME_RATE}), not after every single frame.
FRAME_BATCH = 10

#: Seconds a connection may keep its bucket empty before it is closed (a
#: flood): the bucket did not refill to half of L{FRAME_BURST} in all that
#: time, L{FRAME_BURST} + 60 x L{FRAME_RATE} frames and more. A charger
#: closed so loses nothing: it sends again what got no answer.
FLOOD_SECONDS = 60

#: The WebSocket close code and reason of a flood (RFC 6455 §7.4.1:
#: policy violation).
FLOOD_CLOSE_CODE = 1008
FLOOD_CLOSE_REASON = f"More than {FRAME_RATE} frames a second for {FLOOD_SECONDS} s"
_FLOOD_CLOSE = FLOOD_CLOSE_CODE.to_bytes(2, "big") + FLOOD_CLOSE_REASON.encode()

#: The most frames one message may come in. Chargers send a message in one
#: frame; a WebSocket client with a small buffer (1 KiB on some embedded
#: stacks) cuts the largest message we take (64 KiB) into 64.
MAX_FRAGMENTS = 256

#: The close reason of a message in more frames (with L{FLOOD_CLOSE_CODE}).
FRAGMENTS_CLOSE_REASON = f"More than {MAX_FRAGMENTS} frames in one message"
_FRAGMENTS_CLOSE = FLOOD_CLOSE_CODE.to_bytes(2, "big") + FRAGMENTS_CLOSE_REASON.encode()


class FrameBudget:
    """
    The frame budget of an Autobahn WebSocket protocol (a mixin before
    it): Autobahn parses one frame at a time from what it buffered
    (C{processData}), and announces each (C{onFrameBegin}), here counted.

    The connection is also the streaming producer of its own transport
    (the server registers it): Twisted pauses it while the write buffer is
    full (a charger that stops reading must not make us buffer every
    answer and ping for it), and then the charger is not read either. The
    transport is read again when neither holds it.

    Needs C{self.factory.clock}, C{self.factory.floods} (a L{Floods}: the
    charger's bucket), C{self.charger_id} and C{self.peer_address()}.
    """

    #: The charger's L{TokenBucket}, from the connection's first frame on.
    _frames = None
    #: The timer that ends a hold (None: not held).
    _held = None
    #: Whether Twisted paused us for a full write buffer.
    _writes_full = False
    #: When the connection's bucket ran out and did not refill to half
    #: since (None: it did), and how many holds it had since.
    flooding_since = None
    _holds = 0
    #: The seconds the connection was held in all, before the current
    #: hold; when that began (None: not held).
    _held_total = 0.0
    _held_at = None
    #: The frames of the message being received so far.
    _fragments = 0

    def consumeData(self):
        state = self.state
        if state != self.STATE_OPEN and state != self.STATE_CLOSING:
            super().consumeData()
            return
        # Autobahn's loop, stopped by a hold: what was read and not handled
        # stays in self.data.
        while self._held is None and self.processData() and self.state != self.STATE_CLOSED:
            pass

    def onFrameBegin(self):
        opcode = self.current_frame.opcode
        if opcode == 0:
            self._fragments += 1
            if self._fragments > MAX_FRAGMENTS:
                self._close_fragmented()
                return
        elif opcode < 8:
            # A new message (control frames may come between fragments).
            self._fragments = 1
        now = self.factory.clock.seconds()
        bucket = self._frames
        if bucket is None:
            bucket = self._frames = self.factory.floods.bucket(self.charger_id, now)
        left = bucket.take(now, 1 + self.current_frame.length // FRAME_BYTES)
        if left < 1:
            self._hold(now)
        elif self.flooding_since is not None and left >= FRAME_BURST / 2:
            self.flooding_since = None
        super().onFrameBegin()

    def _hold(self, now):
        """
        Read nothing more until the bucket holds L{FRAME_BATCH} frames; a
        connection that keeps it empty for L{FLOOD_SECONDS} is closed.
        """
        if self.flooding_since is None:
            self.flooding_since, self._holds = now, 0
        self._holds += 1
        if self._held_at is None:
            self._held_at = now
        if self._held is not None and self._held.active():
            # Not reached (no frame is parsed while held); never two timers.
            self._held.cancel()
        self._held = self.factory.clock.callLater(self._frames.until(FRAME_BATCH), self._release)
        self.transport.pauseProducing()
        if now - self.flooding_since >= FLOOD_SECONDS and self.state == self.STATE_OPEN:
            self.factory.floods.closed(self.charger_id, self.peer_address(), self._holds,
                                       now - self.flooding_since)
            # The close frame, and TCP closed after it without waiting for
            # the charger's close: its answer would come behind its flood.
            self.sendFrame(opcode=8, payload=_FLOOD_CLOSE)
            self.dropConnection(abort=False)

    def _close_fragmented(self):
        """
        Close a connection whose message came in more than
        L{MAX_FRAGMENTS} frames: the close frame, then TCP, as for a flood.
        """
        if self.state == self.STATE_OPEN:
            self.factory.floods.fragmented(self.charger_id, self.peer_address())
            self.sendFrame(opcode=8, payload=_FRAGMENTS_CLOSE)
        self.dropConnection(abort=False)

    def held_seconds(self):
        """
        @return: for how many seconds in all the connection's frames were
            not read because it sent more than its budget (the current
            hold included).
        """
        if self._held_at is None:
            return self._held_total
        return self._held_total + self.factory.clock.seconds() - self._held_at

    def _release(self):
        self._held = None
        if self._held_at is not None:
            self._held_total += self.factory.clock.seconds() - self._held_at
            self._held_at = None
        # What was read already first: it may use up the batch again.
        self.consumeData()
        if self._held is None and not self._writes_full and self.state != self.STATE_CLOSED:
            self.transport.resumeProducing()

    def pauseProducing(self):
        self._writes_full = True
        self.transport.pauseProducing()

    def resumeProducing(self):
        self._writes_full = False
        if self._held is None:
            self.transport.resumeProducing()

    def stopProducing(self):
        pass

    def connectionLost(self, reason):
        if self._held is not None:
            if self._held.active():
                self._held.cancel()
            self._held = None
        super().connectionLost(reason)


class Floods:
    """
    The connections closed for a flood of frames, or a message in too many:
    counted, and logged one line per address and C{interval} (the others
    counted in the next).

    @ivar count: how many were closed for a flood.
    @ivar fragments: how many were closed for a message in more than
        L{MAX_FRAGMENTS} frames.
    """

    log = Logger()

    def __init__(self, clock, interval):
        self.count = 0
        self.fragments = 0
        self._clock = clock
        self._lines = Pacer(interval)
        # charger id -> its TokenBucket (only configured chargers connect)
        self._buckets = {}

    def bucket(self, charger_id, now):
        """
        @param now: the time now (seconds, the clock of the connections).
        @return: the L{TokenBucket} of C{charger_id}'s frames, shared by
            all its connections; made full at its first frame.
        """
        bucket = self._buckets.get(charger_id)
        if bucket is None:
            bucket = self._buckets[charger_id] = TokenBucket(FRAME_RATE, FRAME_BURST, now)
        return bucket

    def fragmented(self, charger_id, address):
        """
        Count and log a connection of C{charger_id} from C{address} closed
        for a message in more than L{MAX_FRAGMENTS} frames.
        """
        self.fragments += 1
        self._line(charger_id, address, "it sent a message in more than {n} frames",
                   n=MAX_FRAGMENTS)

    def closed(self, charger_id, address, holds, seconds):
        """
        Count and log a connection of C{charger_id} from C{address} closed
        after C{holds} holds in C{seconds}.
        """
        self.count += 1
        self._line(charger_id, address, "it sent over {rate} frames a second for {seconds:.0f} s"
                   " (held back {holds} times)", rate=FRAME_RATE, seconds=seconds, holds=holds)

    def _line(self, charger_id, address, why, **fields):
        # One line per address and interval, which counts those in between.
        held = self._lines.due(address, self._clock.seconds())
        if held is not None:
            more = f" ({held} more closed from this address since the last such line)" \
                if held else ""
            self.log.warn("{id}: connection from {address} closed: " + why + "{more}",
                          id=charger_id, address=address, more=more, **fields)
