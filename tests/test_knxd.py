"""
Tests for L{xxterocpp.knx.knxd}.

The unit tests check the bytes against the frames seen on a real knxd; the
integration tests run a real bus-less knxd (skipped when it is not
installed).
"""

from twisted.internet import defer, task
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.testing import (
    MemoryReactorClock,
    StringTransport,
    StringTransportWithDisconnection,
)
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.knxdtest import LinkWatcher, TelegramRecorder, connect_peer, start_knxd
from xxterocpp.knx.address import GroupAddress
from xxterocpp.knx.dpt import DateTime, TimeOfDay, lookup
from xxterocpp.knx.knxd import KnxdLink, KnxdProtocol, KnxdRefused, Telegram

OPEN_REQUEST = bytes.fromhex("00 05 00 26 00 00 00")
OPENED = bytes.fromhex("00 02 00 26")
GA = GroupAddress.parse


def h(text):
    """
    Bytes from a hex dump.
    """
    return bytes.fromhex(text)


def knxd_log(events, level=None):
    """
    @return: C{(level, formatted text)} of the events among C{events} that
        L{xxterocpp.knx.knxd} logged (at C{level}, or at any).
    """
    return [(event["log_level"], formatEvent(event)) for event in events
            if event.get("log_namespace") == "xxterocpp.knx.knxd"
            and level in (None, event["log_level"])]


def open_protocol(testcase):
    """
    A L{KnxdProtocol} on a L{StringTransport} whose group socket is open.
    """
    received = []
    proto = KnxdProtocol(task.Clock(), received.append)
    proto.received = received
    transport = StringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(OPENED)
    transport.clear()
    testcase.assertTrue(proto.is_open)
    return proto, transport


class OpenTests(SynchronousTestCase):
    def test_open_request(self):
        """
        The group socket is requested with 5 bytes after the length, not
        write-only, and is open only once knxd echoes the type.
        """
        clock = task.Clock()
        proto = KnxdProtocol(clock)
        transport = StringTransport()
        proto.makeConnection(transport)
        self.assertEqual(transport.value(), OPEN_REQUEST)
        self.assertNoResult(proto.opened)
        self.assertFalse(proto.is_open)
        proto.dataReceived(OPENED[:3])
        self.assertNoResult(proto.opened)
        proto.dataReceived(OPENED[3:])
        self.assertIs(self.successResultOf(proto.opened), proto)
        self.assertTrue(proto.is_open)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_refusals(self):
        """
        EIB_INVALID_REQUEST and EIB_RESET_CONNECTION (pool exhausted) fail
        C{opened} and drop the connection.
        """
        refusals = [("00 02 00 00", "INVALID_REQUEST"), ("00 02 00 04", "RESET_CONNECTION")]
        for reply, reason in refusals:
            clock = task.Clock()
            proto = KnxdProtocol(clock)
            transport = StringTransport()
            proto.makeConnection(transport)
            proto.dataReceived(h(reply))
            failure = self.failureResultOf(proto.opened, KnxdRefused)
            self.assertIn(reason, failure.getErrorMessage())
            self.assertTrue(transport.disconnecting)
            self.assertEqual(clock.getDelayedCalls(), [])

    def test_open_times_out(self):
        """
        A server that never answers is dropped after the open timeout.
        """
        clock = task.Clock()
        proto = KnxdProtocol(clock, open_timeout=10)
        transport = StringTransport()
        proto.makeConnection(transport)
        clock.advance(9.9)
        self.assertNoResult(proto.opened)
        clock.advance(0.1)
        self.failureResultOf(proto.opened, defer.TimeoutError)
        # abortConnection(): StringTransport's "aborted" flag differs between versions
        self.assertTrue(transport.disconnecting)

    def test_connection_lost_before_open(self):
        """
        C{opened} fails, C{closed} fires with the reason.
        """
        clock = task.Clock()
        proto = KnxdProtocol(clock)
        proto.makeConnection(StringTransport())
        proto.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(proto.opened, ConnectionDone)
        self.assertIsInstance(self.successResultOf(proto.closed), ConnectionDone)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_reset_after_open_drops_connection(self):
        """
        knxd resetting an open group socket drops the connection with a log line.
        """
        with capturedLogs() as events:
            proto, transport = open_protocol(self)
            proto.dataReceived(h("00 02 00 04"))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(len(knxd_log(events, LogLevel.warn)), 1)


class SendTests(SynchronousTestCase):
    def test_verified_frames(self):
        """
        Writes, a read and a response, byte for byte as seen by knxd's tools.
        """
        cases = [
            ("write", "9/7/0", "1.003", True, "00 06 00 27 4F 00 00 81"),
            ("write", "9/7/1", "1.010", False, "00 06 00 27 4F 01 00 80"),
            ("write", "9/7/2", "5.010", 42, "00 07 00 27 4F 02 00 80 2A"),
            ("write", "9/7/3", "13.010", 12345, "00 0A 00 27 4F 03 00 80 00 00 30 39"),
            ("write", "9/7/4", "14.019", 16.0, "00 0A 00 27 4F 04 00 80 41 80 00 00"),
            ("write", "9/7/5", "9.021", 6000, "00 08 00 27 4F 05 00 80 4C 94"),
            (
                "write",
                "9/7/6",
                "10.001",
                TimeOfDay(13, 23, 42, 2),
                "00 09 00 27 4F 06 00 80 4D 17 2A",
            ),
            (
                "write",
                "9/7/7",
                "19.001",
                DateTime(2024, 7, 28, 22, 59, 17, weekday=7, working_day=False, dst=True),
                "00 0E 00 27 4F 07 00 80 7C 07 1C F6 3B 11 01 00",
            ),
            ("respond", "9/7/9", "1.003", True, "00 06 00 27 4F 09 00 41"),
        ]
        for method, ga, dpt, value, frame in cases:
            proto, transport = open_protocol(self)
            getattr(proto, method)(GA(ga), lookup(dpt).encode(value))
            self.assertEqual(transport.value(), h(frame), (ga, dpt))
        proto, transport = open_protocol(self)
        proto.read(GA("9/7/8"))
        self.assertEqual(transport.value(), h("00 06 00 27 4F 08 00 00"))

    def test_text_addresses(self):
        """
        A group address may be given as text.
        """
        proto, transport = open_protocol(self)
        proto.write("9/1792", 1)
        self.assertEqual(transport.value(), h("00 06 00 27 4F 00 00 81"))

    def test_small_value_must_fit(self):
        """
        A small value has 6 bits; more would corrupt the APCI.
        """
        proto, transport = open_protocol(self)
        self.assertRaises(ValueError, proto.write, GA("1/2/3"), 64)
        self.assertRaises(ValueError, proto.write, GA("1/2/3"), -1)
        self.assertRaises(ValueError, proto.write, "32/0/0", 1)
        self.assertEqual(transport.value(), b"")


class ReceiveTests(SynchronousTestCase):
    def test_received_write(self):
        """
        The verified frame of 0.0.3 writing 1 to 9/7/0.
        """
        proto, _ = open_protocol(self)
        proto.dataReceived(h("00 08 00 27 00 03 4F 00 00 81"))
        self.assertEqual(proto.received, [Telegram("0.0.3", GA("9/7/0"), "write", 1)])

    def test_kinds_and_payloads(self):
        """
        Reads carry 0, responses and writes a small value or bytes; a
        telegram split across reads is reassembled.
        """
        proto, _ = open_protocol(self)
        frames = h(
            "00 08 00 27 11 04 4F 08 00 00 "
            "00 08 00 27 11 04 4F 09 00 41 "
            "00 0C 00 27 FF FF 4F 03 00 80 00 00 30 39 "
            "00 09 00 27 00 04 4F 02 00 40 2A "
            # long-form boolean from `knxtool groupwrite`
            "00 09 00 27 00 04 4F 00 00 80 01"
        )
        proto.dataReceived(frames[:7])
        proto.dataReceived(frames[7:])
        self.assertEqual(
            proto.received,
            [
                Telegram("1.1.4", GA("9/7/8"), "read", 0),
                Telegram("1.1.4", GA("9/7/9"), "response", 1),
                Telegram("15.15.255", GA("9/7/3"), "write", h("00 00 30 39")),
                Telegram("0.0.4", GA("9/7/2"), "response", h("2A")),
                Telegram("0.0.4", GA("9/7/0"), "write", h("01")),
            ],
        )
        self.assertEqual(lookup("13.010").decode(proto.received[2].payload), 12345)
        self.assertIs(lookup("1.003").decode(proto.received[4].payload), True)

    def test_garbage_is_logged_and_ignored(self):
        """
        Short frames, unknown types, non-GroupValue APCIs and the broadcast
        address are logged; the connection stays up and later telegrams arrive.
        """
        garbage = [
            "00 00",  # empty frame
            "00 01 27",  # no type
            "00 05 00 27 00 03 4F",  # group packet too short
            "00 06 00 27 00 03 4F 00",  # no APCI byte
            "00 08 00 27 00 03 4F 00 00 C1",  # A_IndividualAddress_Write
            "00 08 00 27 00 03 4F 00 03 C0",  # APCI 0xF
            "00 08 00 27 00 03 00 00 00 81",  # broadcast 0/0/0
            "00 04 00 99 12 34",  # unknown type
            "00 02 00 26",  # a second open reply
        ]
        with capturedLogs() as events:
            proto, transport = open_protocol(self)
            for frame in garbage:
                proto.dataReceived(h(frame))
        self.assertEqual(proto.received, [])
        log = knxd_log(events, LogLevel.warn)
        self.assertEqual(len(log), len(garbage))
        self.assertIn("00 03 4f", log[2][1])
        self.assertFalse(transport.disconnecting)
        proto.dataReceived(h("00 08 00 27 00 03 4F 00 00 81"))
        self.assertEqual(len(proto.received), 1)

    def test_nothing_before_open(self):
        """
        Group packets before knxd confirmed the group socket are not telegrams.
        """
        received = []
        proto = KnxdProtocol(task.Clock(), received.append)
        proto.makeConnection(StringTransport())
        proto.dataReceived(h("00 08 00 27 00 03 4F 00 00 81"))
        self.assertEqual(received, [])
        proto.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(proto.opened)


class LinkTests(SynchronousTestCase):
    """
    L{KnxdLink} on a L{MemoryReactorClock}: connection attempts are driven by hand.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.events = self.enterContext(capturedLogs())
        self.link = KnxdLink("unix:/run/knx-test", self.reactor, retry_policy=lambda n: 1.0)
        self.states = []
        self.telegrams = []
        self.link.add_link_observer(self.states.append)
        self.link.add_telegram_observer(self.telegrams.append)

    def warnings(self):
        return [text for level, text in knxd_log(self.events, LogLevel.warn)]

    def attempt(self):
        """
        The factory of the latest connection attempt.
        """
        address, factory, timeout, check_pid = self.reactor.unixClients[-1]
        self.assertEqual(address, "/run/knx-test")
        return factory

    def fail_attempt(self):
        # as a reactor's connector does: start the factory, fail, stop it
        factory = self.attempt()
        factory.doStart()
        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError("nope")))
        factory.doStop()

    def connect(self, open=True):
        proto = self.attempt().buildProtocol(None)
        # loseConnection() calls connectionLost, like a real transport
        transport = StringTransportWithDisconnection()
        transport.protocol = proto
        proto.makeConnection(transport)
        self.assertEqual(transport.value(), OPEN_REQUEST)
        if open:
            proto.dataReceived(OPENED)
        transport.clear()
        return proto, transport

    def stop(self):
        d = self.link.stopService()
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        return d

    def test_writes_are_dropped_while_down(self):
        """
        Before the group socket is open nothing is sent.
        """
        self.link.startService()
        self.addCleanup(self.stop)
        self.assertFalse(self.link.connected)
        self.assertIs(self.link.write(GA("1/2/3"), 1), False)
        self.assertIs(self.link.respond(GA("1/2/3"), b"\x01"), False)
        self.assertIs(self.link.read(GA("1/2/3")), False)
        proto, transport = self.connect(open=False)
        self.assertIs(self.link.write(GA("1/2/3"), 1), False)
        self.assertEqual(transport.value(), b"")

    def test_one_line_per_outage(self):
        """
        Many failed attempts give one warning saying what to check; coming
        back gives one info line, and observers see up.
        """
        self.link.startService()
        self.addCleanup(self.stop)
        for _ in range(5):
            self.fail_attempt()
            self.reactor.advance(1.0)
        self.assertEqual(len(self.reactor.unixClients), 6)
        [warning] = self.warnings()
        self.assertIn("unix:/run/knx-test", warning)
        self.assertIn("nope", warning)
        self.assertIn("is knxd running? check [knx] knxd", warning.lower())
        self.assertEqual(self.states, [])
        self.connect()
        self.assertTrue(self.link.connected)
        self.assertEqual(self.states, [True])
        self.assertEqual(knxd_log(self.events)[-1],
                         (LogLevel.info, "knxd link back up at unix:/run/knx-test"))
        self.assertEqual(len(knxd_log(self.events)), 2)

    def test_outage_adds_at_most_two_log_lines(self):
        """
        A minute of failed attempts between losing knxd and having it back
        logs two lines in all: nothing per attempt (Twisted's factories
        would say "Starting factory" / "Stopping factory" each time).
        """
        self.link.startService()
        self.addCleanup(self.stop)
        proto, transport = self.connect()
        with capturedLogs() as events:
            proto.connectionLost(Failure(ConnectionLost("knxd went away")))
            for _ in range(60):
                self.reactor.advance(1.0)
                self.fail_attempt()
            self.reactor.advance(1.0)
            self.connect()
        self.assertEqual(len(self.reactor.unixClients), 62)
        self.assertEqual([formatEvent(e).split(" at ")[0] for e in events],
                         ["lost the knxd link", "knxd link back up"])

    def test_lost_and_back(self):
        """
        Losing an open link notifies observers and warns once; the
        reconnection after the backoff delay notifies up again.
        """
        self.link.startService()
        self.addCleanup(self.stop)
        proto, transport = self.connect()
        self.assertEqual(knxd_log(self.events),
                         [(LogLevel.info, "knxd link up at unix:/run/knx-test")])
        self.assertIs(self.link.write(GA("9/7/0"), 1), True)
        self.assertEqual(transport.value(), h("00 06 00 27 4F 00 00 81"))
        proto.dataReceived(h("00 08 00 27 00 03 4F 00 00 81"))
        self.assertEqual(self.telegrams, [Telegram("0.0.3", GA("9/7/0"), "write", 1)])

        proto.connectionLost(Failure(ConnectionLost("knxd went away")))
        self.assertFalse(self.link.connected)
        self.assertEqual(self.states, [True, False])
        self.assertIs(self.link.write(GA("9/7/0"), 1), False)
        self.reactor.advance(1.0)
        self.fail_attempt()
        self.reactor.advance(1.0)
        self.assertEqual(len(self.warnings()), 1)
        self.assertIn("lost the knxd link", self.warnings()[0])
        proto, transport = self.connect()
        self.assertEqual(self.states, [True, False, True])
        self.assertIs(self.link.respond(GA("9/7/9"), 1), True)
        self.assertEqual(transport.value(), h("00 06 00 27 4F 09 00 41"))

    def test_refused_open_warns_once(self):
        """
        knxd refusing the group socket (pool exhausted) is one warning, and
        the connection is retried.
        """
        self.link.startService()
        self.addCleanup(self.stop)
        for _ in range(3):
            proto, transport = self.connect(open=False)
            proto.dataReceived(h("00 02 00 04"))
            self.assertFalse(transport.connected)
            self.reactor.advance(1.0)
        [warning] = self.warnings()
        self.assertIn("client-addrs (-E)", warning)
        self.assertIn("EIB_RESET_CONNECTION", warning)
        self.assertEqual(self.states, [])

    def test_stop_is_quiet(self):
        """
        Stopping the service closes the link without a warning; observers see down.
        """
        self.link.startService()
        proto, transport = self.connect()
        d = self.link.stopService()
        self.assertFalse(transport.connected)
        self.successResultOf(d)
        self.assertEqual(self.states, [True, False])
        self.assertEqual(self.warnings(), [])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_stop_while_waiting(self):
        """
        Stopping between retries cancels the retry.
        """
        self.link.startService()
        self.fail_attempt()
        self.successResultOf(self.stop())

    def test_broken_observer(self):
        """
        An observer that raises is logged; the others still get the telegram.
        """
        self.link.startService()
        self.addCleanup(self.stop)

        def broken(telegram):
            raise RuntimeError("bug")

        self.link.add_telegram_observer(broken)
        seen = []
        self.link.add_telegram_observer(seen.append)
        proto, transport = self.connect()
        proto.dataReceived(h("00 08 00 27 00 03 4F 00 00 81"))
        self.assertEqual(len(seen), 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertFalse(transport.disconnecting)


class RealKnxdTests(TestCase):
    """
    L{KnxdLink} against a real bus-less knxd, observed by a second client.
    """

    timeout = 30

    @defer.inlineCallbacks
    def setUp(self):
        from twisted.internet import reactor

        self.reactor = reactor
        self.knxd = yield start_knxd(self)
        self.attempts = []
        self.link = KnxdLink(self.knxd.endpoint, reactor, retry_policy=self.retry)
        self.watcher = LinkWatcher(self.link)
        self.telegrams = TelegramRecorder(reactor)
        self.link.add_telegram_observer(self.telegrams)
        self.events = self.enterContext(capturedLogs())
        self.link.startService()
        self.addCleanup(self.link.stopService)
        yield self.watcher.wait(True)

    def retry(self, attempt):
        self.attempts.append(attempt)
        return 0.05

    def warnings(self):
        return [text for level, text in knxd_log(self.events, LogLevel.warn)]

    @defer.inlineCallbacks
    def test_link_to_peer(self):
        """
        What the link writes, reads and answers reaches another client, byte for byte.
        """
        peer = yield connect_peer(self, self.knxd)
        self.assertTrue(self.link.write(GA("9/7/0"), lookup("1.003").encode(True)))
        self.assertTrue(self.link.write(GA("9/7/3"), lookup("13.010").encode(12345)))
        self.assertTrue(self.link.read(GA("9/7/8")))
        self.assertTrue(self.link.respond(GA("9/7/9"), lookup("9.021").encode(6000)))
        t = yield peer.wait_for("9/7/0", "write")
        self.assertEqual(t.payload, 1)
        t = yield peer.wait_for("9/7/3", "write")
        self.assertEqual(t.payload, h("00 00 30 39"))
        t = yield peer.wait_for("9/7/8", "read")
        self.assertEqual(t.payload, 0)
        t = yield peer.wait_for("9/7/9", "response")
        self.assertEqual(t.payload, h("4C 94"))
        self.assertEqual(len({t.src for t in peer.telegrams}), 1)
        # a telegram from the peer arrives after any echo knxd would have sent
        peer.write("9/7/10", 1)
        yield self.telegrams.wait_for("9/7/10", "write")
        self.assertEqual(len(self.telegrams.telegrams), 1, "knxd must not echo to the sender")

    @defer.inlineCallbacks
    def test_peer_to_link(self):
        """
        Writes and reads from another client reach the link's observers.
        """
        peer = yield connect_peer(self, self.knxd)
        peer.write("1/2/3", h("0C 1A"))
        peer.write("9/7/0", 0)
        peer.read("9/7/4")
        t = yield self.telegrams.wait_for("1/2/3", "write")
        self.assertEqual(lookup("9.021").decode(t.payload), 21.0)
        t = yield self.telegrams.wait_for("9/7/0", "write")
        self.assertIs(lookup("1.003").decode(t.payload), False)
        t = yield self.telegrams.wait_for("9/7/4", "read")
        self.assertRegex(t.src, r"^0\.0\.\d+$")

    @defer.inlineCallbacks
    def test_knxd_killed_and_restarted(self):
        """
        SIGKILL: observers see down, writes are dropped, one warning for the
        whole outage; after the restart the link is back and works both ways.
        The whole outage, retries included, logs two lines.
        """
        with capturedLogs() as events:
            yield self.knxd.kill()
            yield self.watcher.wait(False)
            self.assertFalse(self.link.write(GA("9/7/0"), 1))
            # several retries while knxd is away (each 0.05 s after the last)
            for _ in range(1000):
                if len(self.attempts) >= 3:
                    break
                yield task.deferLater(self.reactor, 0.01, lambda: None)
            self.assertGreaterEqual(len(self.attempts), 3)
            self.assertEqual(len(self.warnings()), 1, knxd_log(self.events))
            self.assertIn("is knxd running? check [knx] knxd", self.warnings()[0].lower())

            yield self.knxd.start()
            yield self.watcher.wait(True)
        self.assertEqual(self.watcher.history, [True, False, True])
        self.assertEqual(len(self.warnings()), 1, knxd_log(self.events))
        self.assertIn("knxd link back up", knxd_log(self.events)[-1][1])
        self.assertEqual(len(events), 2, [formatEvent(e) for e in events])

        peer = yield connect_peer(self, self.knxd)
        self.assertTrue(self.link.write(GA("9/7/2"), lookup("5.010").encode(42)))
        t = yield peer.wait_for("9/7/2", "write")
        self.assertEqual(lookup("5.010").decode(t.payload), 42)
        peer.write("9/7/1", 1)
        t = yield self.telegrams.wait_for("9/7/1", "write")
        self.assertEqual(t.payload, 1)

    @defer.inlineCallbacks
    def test_knxd_stopped_cleanly(self):
        """
        SIGTERM (a knxd restart by systemd) is an outage like any other.
        """
        yield self.knxd.restart()
        yield self.watcher.wait(True)
        self.assertEqual(self.watcher.history, [True, False, True])
        self.assertEqual(len(self.warnings()), 1, knxd_log(self.events))

    @defer.inlineCallbacks
    def test_knxd_absent_at_start(self):
        """
        A link started before knxd warns once and comes up when knxd does.
        """
        yield self.knxd.stop()
        yield self.watcher.wait(False)
        link = KnxdLink(self.knxd.endpoint, self.reactor, retry_policy=lambda n: 0.05)
        watcher = LinkWatcher(link)
        link.startService()
        self.addCleanup(link.stopService)
        yield task.deferLater(self.reactor, 0.3, lambda: None)
        self.assertFalse(link.connected)
        yield self.knxd.start()
        yield watcher.wait(True)
        yield self.watcher.wait(True)
        self.assertEqual(watcher.history, [True])
        # one warning per link: the original link's and the new one's
        self.assertEqual(len(self.warnings()), 2, knxd_log(self.events))
        self.assertIn("cannot connect to knxd", self.warnings()[1])
