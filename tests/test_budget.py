"""
The frame budget of a charger's connection (L{xxterocpp.ocpp.budget}): the
token bucket on a fake clock, and the real service on loopback with the
time of a L{ClockedReactor}, flooded with frames written raw to the
socket. Counts are of frames the server handled per second of the fake
clock, never of wall time.
"""

import json
import re

from twisted.internet import defer, reactor
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.service import ClockedReactor, set_up_over, start_service
from tests.sim import RECEIVED, connect_charger
from tests.test_tls import secure_config, trusting
from xxterocpp.ocpp import messages as m
from xxterocpp.ocpp.budget import (
    FLOOD_CLOSE_CODE, FLOOD_SECONDS, FRAME_BATCH, FRAME_BURST, FRAME_BYTES, FRAME_RATE,
    MAX_FRAGMENTS, Floods, FrameBudget)
from xxterocpp.pacing import TokenBucket


class TokenBucketTests(SynchronousTestCase):
    """
    L{TokenBucket} at given times.
    """

    def test_starts_full_and_runs_into_debt(self):
        bucket = TokenBucket(rate=10, burst=5, now=100.0)
        self.assertEqual([bucket.take(100.0) for _ in range(5)], [4, 3, 2, 1, 0])
        self.assertEqual(bucket.take(100.0, cost=3), -3)
        self.assertEqual(bucket.until(2), 0.5)

    def test_refills_at_its_rate_up_to_its_burst(self):
        bucket = TokenBucket(rate=10, burst=5, now=0.0)
        for _ in range(5):
            bucket.take(0.0)
        self.assertEqual(bucket.level(0.2), 2)
        self.assertEqual(bucket.take(0.2), 1)
        self.assertEqual(bucket.level(1000.0), 5)
        self.assertEqual(bucket.take(1000.0), 4)
        self.assertEqual(bucket.until(3), 0.0)

    def test_a_flood_gets_the_rate(self):
        """
        Taking as fast as it allows, one second at a time: the burst, then
        the rate each second.
        """
        bucket = TokenBucket(rate=FRAME_RATE, burst=FRAME_BURST, now=0.0)
        per_second = []
        for second in range(5):
            taken = 0
            while bucket.level(float(second)) >= 1:
                bucket.take(float(second))
                taken += 1
            per_second.append(taken)
        self.assertEqual(per_second, [FRAME_BURST] + [FRAME_RATE] * 4)


class _Frame:
    opcode = 0x1
    length = 0


class _Frames:
    """
    What L{FrameBudget} needs of Autobahn: C{processData} announces one
    buffered frame (C{self.data}, a count) at a time.
    """

    STATE_OPEN, STATE_CLOSING, STATE_CLOSED = 3, 2, 0
    state = STATE_OPEN
    current_frame = _Frame()

    charger_id = "CP1"

    def __init__(self, clock, frames):
        self.factory = self
        self.clock = clock
        self.floods = Floods(clock, 10)
        self.data = frames
        self.begun = 0
        self.transport = StringTransport()

    def processData(self):
        if not self.data:
            return False
        self.data -= 1
        self.onFrameBegin()
        return True

    def onFrameBegin(self):
        self.begun += 1


class _Budgeted(FrameBudget, _Frames):
    pass


class ReadingTests(SynchronousTestCase):
    """
    When L{FrameBudget} reads the transport: neither a hold nor a full
    write buffer lets the other's end resume it.
    """

    def setUp(self):
        self.clock = Clock()
        self.connection = _Budgeted(self.clock, FRAME_BURST + 50)
        self.transport = self.connection.transport
        self.connection.consumeData()

    def test_held_after_the_burst(self):
        self.assertEqual(self.connection.begun, FRAME_BURST)
        self.assertEqual(self.transport.producerState, "paused")
        self.clock.advance(FRAME_BATCH / FRAME_RATE)
        self.assertEqual(self.connection.begun, FRAME_BURST + FRAME_BATCH)
        self.assertEqual(self.transport.producerState, "paused")
        self.clock.advance(1)
        self.assertEqual(self.connection.begun, FRAME_BURST + 50)
        self.assertEqual(self.transport.producerState, "producing")

    def test_written_out_while_held(self):
        self.connection.pauseProducing()
        self.connection.resumeProducing()
        self.assertEqual(self.transport.producerState, "paused")
        self.clock.advance(1)
        self.assertEqual(self.transport.producerState, "producing")

    def test_held_ends_while_the_writes_wait(self):
        self.connection.pauseProducing()
        self.clock.advance(1)
        self.assertEqual(self.connection.begun, FRAME_BURST + 50)
        self.assertEqual(self.transport.producerState, "paused")
        self.connection.resumeProducing()
        self.assertEqual(self.transport.producerState, "producing")


def client_frame(payload, opcode=0x1, fin=True):
    """
    One masked client-to-server WebSocket frame (RFC 6455 §5.2) of
    C{payload}; the masking key is zero, so the payload goes as it is.

    @param fin: whether it is the last frame of its message.
    """
    length = len(payload)
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        header = bytes([first, 0x80 | length])
    elif length < 65536:
        header = bytes([first, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([first, 0x80 | 127]) + length.to_bytes(8, "big")
    return header + b"\0\0\0\0" + payload


def fragmented(payload, frames):
    """
    One text message of C{payload} in C{frames} frames (the first a text
    frame, the others continuations, the last with FIN), the bytes shared
    out as evenly as they go (some frames empty when there are fewer).
    """
    cuts = [len(payload) * i // frames for i in range(frames + 1)]
    return b"".join(client_frame(payload[a:b], 0x1 if i == 0 else 0x0, fin=i == frames - 1)
                    for i, (a, b) in enumerate(zip(cuts, cuts[1:])))


def heartbeats(count, prefix="f"):
    """
    C{count} Heartbeat CALLs as raw frames, ids C{prefix0}, C{prefix1}, ...
    """
    return b"".join(client_frame(json.dumps([2, f"{prefix}{i}", "Heartbeat", {}]).encode())
                    for i in range(count))


def heartbeat_id(prefix):
    """
    @return: a regular expression matching the start of a CALL of
        L{heartbeats} with ids C{prefix}, C{prefix0}, ... only (the simulated
        charger's own ids are uuids, which may start with the same letter).
    """
    return r'\[2, "%s\d*"' % re.escape(prefix)


@defer.inlineCallbacks
def until(condition, what, seconds=30):
    """
    Wait (polling, at most C{seconds} of wall time: generous for a loaded
    machine) until C{condition()} is true.
    """
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        yield deferLater(reactor, 0.01, lambda: None)
    raise AssertionError(f"not within {seconds} s: {what}")


class FrameBudgetTests(TestCase):
    """
    The real service on loopback with the time of a L{ClockedReactor}.
    """

    timeout = 120
    #: Whether the chargers connect with wss:// (the TLS transport pauses
    #: and resumes through its own wrapper).
    secure = False

    @defer.inlineCallbacks
    def setUp(self):
        self.time = ClockedReactor(self)
        path = secure_config(self)[0] if self.secure else None
        self.service = yield start_service(self, path, on=self.time)
        self.url = self.service.url.replace("ws://", "wss://" if self.secure else "ws://")
        self.protocols = []
        build = self.service.ocpp_factory.buildProtocol

        def spy(address):
            self.protocols.append(build(address))
            return self.protocols[-1]

        self.service.ocpp_factory.buildProtocol = spy

    @defer.inlineCallbacks
    def charger(self, identity="CP1"):
        """
        @return: C{(the simulated charger, booted, its server protocol, a
            list that gets the text of each frame the server handles)}.
        """
        cp = yield connect_charger(self.url, identity, tls=trusting() if self.secure else None)
        self.addCleanup(cp.close)
        protocol = self.protocols[-1]
        yield cp.boot()
        # The set-up after the boot over, its calls answered: none of them
        # is outstanding when the test moves the clock on (it would time
        # out, its answer stuck behind a flood), and none of its answers
        # is among the frames the test counts.
        yield until(lambda: set_up_over(self.service, identity)
                    and protocol.session._outstanding is None, "the set-up's calls")
        handled = Handled()
        session = protocol.session
        text_received = session.text_received

        def counted(text):
            handled.append(text)
            text_received(text)

        session.text_received = counted
        return cp, protocol, handled

    def send(self, cp, data):
        cp._protocol.transport.write(data)

    @defer.inlineCallbacks
    def test_20000_heartbeats_are_slowed_and_closed(self):
        """
        20,000 Heartbeats written at once: the server handles the burst,
        then holds the connection and handles L{FRAME_RATE} a second of
        the fake clock (nothing more however long the wall clock runs);
        another charger is served meanwhile. After L{FLOOD_SECONDS} it
        closes the connection with 1008 and one log line.
        """
        cp, protocol, handled = yield self.charger()
        twin, twin_protocol, _ = yield self.charger("TWIN")
        with capturedLogs() as events:
            self.send(cp, heartbeats(20_000))
            yield until(lambda: protocol._held is not None, "the connection held")
            # Every token of the burst went to a frame (the boot and its
            # set-up took some): nothing more until the clock moves.
            first = handled.of("f")
            self.assertGreater(first, FRAME_BURST - 100)
            self.assertLessEqual(first, FRAME_BURST)
            yield deferLater(reactor, 0.2, lambda: None)
            self.assertEqual(handled.of("f"), first)
            self.assertIn("currentTime", (yield twin.heartbeat()))
            self.assertIsNone(twin_protocol._held)
            per_second = []
            for second in range(FLOOD_SECONDS):
                before = handled.of("f")
                self.time.advance(1)
                yield until(lambda: protocol._held is not None or not cp.is_open,
                            "the connection held again")
                per_second.append(handled.of("f") - before)
                if second % 20 == 0:
                    self.assertIn("currentTime", (yield twin.heartbeat()))
            # One token left over or short of a whole one at most.
            self.assertLessEqual(max(per_second), FRAME_RATE + 1)
            self.assertGreaterEqual(min(per_second), FRAME_RATE - 1)
            yield until(lambda: cp.close_info is not None, "the flooding charger closed")
        self.assertEqual(cp.close_info[1], FLOOD_CLOSE_CODE)
        self.assertIn("frames a second", cp.close_info[2])
        self.assertLessEqual(handled.of("f"), FRAME_BURST + FLOOD_SECONDS * (FRAME_RATE + 1))
        lines = [formatEvent(e) for e in events if "frames a" in formatEvent(e)]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("CP1", lines[0])
        self.assertIn("127.0.0.1", lines[0])
        self.assertEqual(self.service.ocpp_factory.floods.count, 1)
        # The other charger was never held back, and is served still.
        self.assertIsNone(twin_protocol.flooding_since)
        self.assertIn("currentTime", (yield twin.heartbeat()))

    @defer.inlineCallbacks
    def test_100_queued_frames_after_connect_pass_unhurt(self):
        """
        A charger back from an outage sends 100 StatusNotifications and 100
        MeterValues at once: all answered, the clock standing still, the
        connection never held.
        """
        cp, protocol, handled = yield self.charger()
        answers = []
        for i in range(100):
            answers.append(cp.status(1, "Charging" if i % 2 else "SuspendedEV",
                                     timestamp="2026-01-01T00:00:00Z"))
            answers.append(cp.meter_values(1, energy_wh=1000 + i))
        results = yield defer.gatherResults(answers)
        self.assertEqual(len(results), 200)
        self.assertGreaterEqual(len(handled), 200)
        self.assertIsNone(protocol._held)
        self.assertEqual(protocol._holds, 0)
        self.assertTrue(cp.is_open)

    @defer.inlineCallbacks
    def test_a_backlog_beyond_the_burst_is_slowed_not_lost(self):
        """
        1,500 Heartbeats at once: the burst at once, the rest as the fake
        clock moves; every one answered, none dropped, the connection kept.
        """
        cp, protocol, handled = yield self.charger()
        self.send(cp, heartbeats(1500, prefix="b"))
        yield until(lambda: protocol._held is not None, "the connection held")
        self.assertLess(handled.of("b"), 1500)
        # Five seconds of the budget's rate would do, if every frame were
        # in the socket when the clock moves on; a loaded machine (TLS)
        # may bring the last of them later, and then a held connection
        # waits for the next second of the fake clock.
        for _ in range(100):
            self.time.advance(1)
            yield until(lambda: protocol._held is not None or handled.of("b") == 1500,
                        "held again or done")
            if handled.of("b") == 1500:
                break
        # Exactly the ids sent: the simulated charger's own calls have
        # uuid ids, which start with "b" one time in sixteen.
        sent = {f"b{i}" for i in range(1500)}
        answered = lambda: len({json.loads(t)[1] for t in cp_answers(cp)} & sent)
        try:
            yield until(lambda: answered() == 1500, "every Heartbeat answered")
        except AssertionError as e:
            # What a loaded machine left where (seen once in a while).
            self.fail(f"{e}: {handled.of('b')} handled, {answered()} answered, held"
                      f" {protocol._held is not None}, open {cp.is_open}")
        self.assertTrue(cp.is_open)
        self.assertEqual(self.service.ocpp_factory.floods.count, 0)

    @defer.inlineCallbacks
    def test_pings_count(self):
        """
        2,000 WebSocket pings: answered by Autobahn, metered all the same.
        """
        cp, protocol, handled = yield self.charger()
        self.send(cp, client_frame(b"p", opcode=0x9) * 2000)
        yield until(lambda: protocol._held is not None, "the connection held")
        self.assertLess(protocol._frames.tokens, 1)
        self.assertEqual(handled, [])
        for _ in range(3):
            self.time.advance(20)
            yield until(lambda: protocol._held is not None or not protocol.data,
                        "the pings handled or held again")
        self.assertIsNone(protocol._held)
        self.assertIn("currentTime", (yield cp.heartbeat()))

    @defer.inlineCallbacks
    def test_a_message_in_many_frames_is_taken(self):
        """
        A Heartbeat in L{MAX_FRAGMENTS} frames of a byte or two (a
        client with a small buffer) is answered.
        """
        cp, protocol, handled = yield self.charger()
        text = json.dumps([2, "frag", "Heartbeat", {}]).ljust(2 * MAX_FRAGMENTS)
        self.send(cp, fragmented(text.encode(), MAX_FRAGMENTS))
        yield until(lambda: handled.of("frag") == 1, "the message handled")
        yield until(lambda: any(json.loads(t)[1] == "frag" for t in cp_answers(cp)),
                    "its answer")
        self.assertTrue(cp.is_open)

    @defer.inlineCallbacks
    def test_a_message_in_too_many_frames_is_closed(self):
        """
        A message whose fragments never end: Autobahn keeps each one, an
        empty one too, and empty ones count against no size limit; sent
        slower than the frame budget, they would grow its list for ever.
        The frame after L{MAX_FRAGMENTS} closes the connection with 1008
        and one log line, and what the message held is gone.
        """
        cp, protocol, handled = yield self.charger()
        with capturedLogs() as events:
            self.send(cp, client_frame(b"", 0x1, fin=False)
                      + client_frame(b"", 0x0, fin=False) * MAX_FRAGMENTS)
            yield until(lambda: cp.close_info is not None, "the connection closed")
        self.assertEqual(cp.close_info[1:], (FLOOD_CLOSE_CODE,
                                             f"More than {MAX_FRAGMENTS} frames in one message"))
        self.assertEqual(self.service.ocpp_factory.floods.fragments, 1)
        self.assertEqual(self.service.ocpp_factory.floods.count, 0)
        lines = [formatEvent(e) for e in events if "frames" in formatEvent(e)]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("CP1", lines[0])
        self.assertIn("127.0.0.1", lines[0])
        self.assertLessEqual(len(protocol.message_data), MAX_FRAGMENTS)
        self.assertEqual(handled, [])

    @defer.inlineCallbacks
    def test_our_call_waits_for_its_answer_behind_a_flood(self):
        """
        A charger sends 3,000 Heartbeats at once, then answers our call: its
        answer comes behind them, read at L{FRAME_RATE} a second, some 20 s
        of the fake clock, four times the call timeout. The call takes the
        answer: the timeout does not count the time the connection was
        held (the charger's frames were not read), however often the clock
        moves meanwhile.
        """
        cp, protocol, handled = yield self.charger()
        timeout = protocol.session.call_timeout
        self.assertLess(timeout * 3, 2000 / FRAME_RATE)
        self.send(cp, heartbeats(3000))
        yield until(lambda: protocol._held is not None, "the connection held")
        results = []
        protocol.session.call(m.TriggerMessageRequest(requested_message="Heartbeat")).addBoth(
            results.append)
        while handled.of("f") < 3000 and not results:
            self.time.advance(1)
            yield until(lambda: protocol._held is not None or handled.of("f") == 3000 or results,
                        "held again, or all handled")
        # Its answer, right behind them (the clock stands still now).
        yield until(lambda: results, "the call's answer")
        self.assertEqual(results, [m.TriggerMessageResponse(status="Accepted")])
        self.assertGreater(protocol.held_seconds(), 3 * timeout)
        self.assertTrue(cp.is_open)

    @defer.inlineCallbacks
    def test_readings_and_statuses_keep_nothing_per_frame(self):
        """
        2,000 MeterValues of a running session (a new reading each) and
        2,000 StatusNotifications (alternating), within the budget over 20 s
        of the fake clock: each is a lazy write that replaces the one
        before, committed up to 20 minutes later; nothing of each frame
        waits with it (a Deferred each did: 5,600 of 6,000 readings).
        """
        cp, protocol, handled = yield self.charger()
        tx = (yield cp.start_transaction(1, "04A1B2C3", 0))["transactionId"]
        frames = []
        for i in range(2000):
            frames.append(json.dumps([2, f"r{i}", "MeterValues", {
                "connectorId": 1, "transactionId": tx, "meterValue": [{
                    "timestamp": "2026-01-01T00:00:00Z", "sampledValue": [{"value": str(i)}]}]}]))
            frames.append(json.dumps([2, f"s{i}", "StatusNotification", {
                "connectorId": 1, "errorCode": "NoError",
                "status": "SuspendedEV" if i % 2 else "Charging"}]))
        pending = self.service.store._batches._pending
        waiting = []
        self.send(cp, b"".join(client_frame(f.encode()) for f in frames))
        while handled.of("r") + handled.of("s") < len(frames):
            self.time.advance(1)
            yield until(lambda: protocol._held is not None
                        or handled.of("r") + handled.of("s") == len(frames), "held or done")
            # (Any commit meanwhile, of the set-up's settings, takes them.)
            waiting.append(sum(len(w.waiters) for key, w in pending.items()
                               if key in (("meter", tx), ("status", "CP1", 1))))
        self.assertEqual(max(waiting), 0)

    @defer.inlineCallbacks
    def test_large_frames_cost_more(self):
        """
        Heartbeats padded to 50 KiB each cost 13 frames of the budget: the
        connection is held after fewer than a hundred of them.
        """
        cp, protocol, handled = yield self.charger()
        padded = json.dumps([2, "{}", "Heartbeat", {}]) + " " * (50 * 1024)
        cost = 1 + len(padded) // FRAME_BYTES
        self.send(cp, b"".join(client_frame(padded.replace("{}", f"L{i}", 1).encode())
                               for i in range(100)))
        yield until(lambda: protocol._held is not None, "the connection held")
        self.assertLessEqual(handled.of("L"), FRAME_BURST // cost + 1)
        self.time.advance(100 * cost / FRAME_RATE + FRAME_BATCH)
        yield until(lambda: handled.of("L") == 100, "all of them handled")


class SecureFrameBudgetTests(FrameBudgetTests):
    """
    The same over wss://.
    """

    secure = True


class ReconnectingFloodTests(TestCase):
    """
    A charger that opens a new connection after each burst: the budget is
    the charger's, not the connection's.
    """

    timeout = 120

    @defer.inlineCallbacks
    def setUp(self):
        self.time = ClockedReactor(self)
        self.service = yield start_service(self, on=self.time)
        self.handled = []
        build = self.service.ocpp_factory.buildProtocol

        def counting(address):
            protocol = build(address)
            on_message = protocol.onMessage

            def counted(payload, isBinary):
                self.handled.append(payload)
                return on_message(payload, isBinary)

            protocol.onMessage = counted
            return protocol

        self.service.ocpp_factory.buildProtocol = counting

    @defer.inlineCallbacks
    def test_a_new_connection_gets_no_new_burst(self):
        """
        Ten connections of CP1 one after the other, each sending 1,000
        Heartbeats at once, the clock standing still: L{FRAME_BURST} of
        them handled in all (each connection had a burst of its own: 9,990
        were), the rest as the clock moves. Another charger's burst is
        its own.
        """
        for i in range(10):
            cp = yield connect_charger(self.service.url, "CP1")
            self.addCleanup(cp.close)
            cp._protocol.transport.write(heartbeats(FRAME_BURST, prefix=f"c{i}-"))
        yield until(lambda: len(self.handled) >= FRAME_BURST - 1, "the first burst handled")
        yield deferLater(reactor, 0.5, lambda: None)
        self.assertLessEqual(len(self.handled), FRAME_BURST)
        twin = yield connect_charger(self.service.url, "TWIN")
        self.addCleanup(twin.close)
        twin._protocol.transport.write(heartbeats(FRAME_BURST, prefix="t"))
        # (The frame that empties the bucket waits for the next tokens.)
        yield until(lambda: sum(1 for p in self.handled if TWIN_ID.match(p))
                    == FRAME_BURST - 1, "TWIN's burst handled at once")
        # The last connection of CP1 goes on at the rate (less the frames
        # each connection's first took on credit).
        before = len(self.handled)
        self.time.advance(1)
        yield until(lambda: len(self.handled) - before >= FRAME_RATE - 20, "a second's frames")
        yield deferLater(reactor, 0.2, lambda: None)
        self.assertLessEqual(len(self.handled) - before, FRAME_RATE + 1)


TWIN_ID = re.compile(heartbeat_id("t").encode())


class Handled(list):
    """
    The texts of the frames a server handled.
    """

    def of(self, prefix):
        """
        @return: how many were CALLs of L{heartbeats} with ids C{prefix}...
        """
        ids = re.compile(heartbeat_id(prefix))
        return sum(1 for text in self if ids.match(text))


def cp_answers(cp):
    """
    The CALLRESULTs a simulated charger received.
    """
    return [text for direction, text in cp.frames
            if direction == RECEIVED and isinstance(text, str) and text.startswith("[3,")]
