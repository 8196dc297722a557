"""
Fault tests (issue 8): the service survives abuse. Garbage, huge and
truncated frames, 10,000 reconnects of one identity, a charger that stops
reading, knxd killed and restarted, a read-only database, SIGKILL in the
middle of 50 transactions, and a property-based fuzzer over the OCPP decoder.
"""

import base64
import gc
import json
import os
import random
import sqlite3
import struct
import sys
from collections import Counter

from twisted.internet import defer, protocol, reactor, task
from twisted.trial.unittest import SkipTest, TestCase

from tests.service import (
    LOOPBACK_CONFIG, ServiceProcess, kill_on_cleanup, start_service, write_config)
from tests.sim import connect_charger
from xxterocpp.ocpp import messages as m
from xxterocpp.ocpp.rpc import CallError, OcppSession
from xxterocpp.ocpp.server import MAX_MESSAGE_SIZE

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # the Debian stack without python3-hypothesis
    given = None


def sleep(seconds):
    return task.deferLater(reactor, seconds, lambda: None)


def server_protocol(service, charger_id):
    """
    The server side L{OcppServerProtocol} of a connected charger.
    """
    return service.central.chargers[charger_id].session._send.__self__


def buffered(transport):
    """
    How many bytes a Twisted TCP transport holds, not yet written.
    """
    return len(transport.dataBuffer) + sum(len(b) for b in transport._tempDataBuffer)


def _autobahn_timers():
    # _BatchedTimer._notify_bucket, and the chunks it notifies in
    # (_notify_bucket.<locals>.notify_one_chunk, 100 ms apart).
    return [call for call in reactor.getDelayedCalls()
            if "_BatchedTimer" in getattr(call.func, "__qualname__", "") and call.active()]


@defer.inlineCallbacks
def wait_autobahn_timers(limit=15.0):
    """
    Wait (at most C{limit} seconds) until the batched timers Autobahn (txaio)
    starts for closing connections (close handshake, 5 s; connection drop)
    have fired by themselves. Nothing is cancelled: a timer still pending
    after C{limit} is left for trial to report as a dirty reactor.

    Register it as a test's first cleanup so that it runs last, after the
    service and every client are closed.
    """
    deadline = reactor.seconds() + limit
    while True:
        pending = _autobahn_timers()
        if not pending or reactor.seconds() >= deadline:
            return
        due = min(call.getTime() for call in pending)
        yield sleep(min(max(due - reactor.seconds(), 0) + 0.01, deadline - reactor.seconds()))


def rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


class RawWebSocket(protocol.Protocol):
    """
    A minimal WebSocket client: a handshake and masked frames written as
    given, nothing else (no reading of frames, no pongs).
    """

    def __init__(self, path, read=True):
        self.path = path
        self.read = read
        self.opened = defer.Deferred()
        self.lost = defer.Deferred()
        self.received = b""

    def connectionMade(self):
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
            (f"GET /{self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
             f"Sec-WebSocket-Protocol: ocpp1.6\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())

    def dataReceived(self, data):
        self.received += data
        if not self.opened.called and b"\r\n\r\n" in self.received:
            head = self.received.split(b"\r\n", 1)[0]
            self.opened.callback(head)
            if not self.read:
                self.transport.pauseProducing()

    def connectionLost(self, reason):
        if not self.opened.called:
            self.opened.errback(reason)
        self.lost.callback(None)

    def send_text(self, text):
        payload = text.encode("utf-8")
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if n < 4096 else \
            (int.from_bytes(payload, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")
             ).to_bytes(n, "big")
        self.transport.write(header + mask + masked)


def connect_raw(url, path, read=True):
    port = int(url.rsplit(":", 1)[1].strip("/"))
    client = RawWebSocket(path, read)
    d = protocol.ClientCreator(reactor, lambda: client).connectTCP("127.0.0.1", port)
    return d.addCallback(lambda _: client)


class FrameFaultTests(TestCase):
    """
    Bad frames on one connection: answered or refused, the service unharmed.
    """

    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        self.addCleanup(wait_autobahn_timers)
        self.service = yield start_service(self)

    @defer.inlineCallbacks
    def assertServing(self):
        cp = yield connect_charger(self.service.url, "CP1")
        answer = yield cp.heartbeat()
        self.assertIn("currentTime", answer)
        yield cp.close()

    @defer.inlineCallbacks
    def test_random_garbage(self):
        """
        500 random text and binary messages: every text one that is not a
        CALL is ignored or answered with a FormationViolation CALLERROR; the
        connection stays up and serves a Heartbeat afterwards.
        """
        rng = random.Random(8)
        cp = yield connect_charger(self.service.url, "CP1")
        self.addCleanup(cp.close)
        alphabet = '[]{}",:0123456789abcdefnulltrue \\\t\n\u00e9\u20ac'
        for i in range(500):
            if i % 5 == 0:
                cp.send_raw(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))),
                            binary=True)
            else:
                cp.send_raw("".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 200))))
        answer = yield cp.heartbeat()
        self.assertIn("currentTime", answer)
        self.assertTrue(cp.is_open)

    @defer.inlineCallbacks
    def test_invalid_utf8_closes_that_connection_only(self):
        """
        A text frame that is not UTF-8 closes that connection (RFC 6455 1007).
        """
        cp = yield connect_charger(self.service.url, "CP1")
        cp.send_raw(b'[2,"1","Heartbeat",{"x":"\xff\xfe"}]')
        _, code, _ = yield cp.wait_closed()
        self.assertEqual(code, 1007)
        yield self.assertServing()

    @defer.inlineCallbacks
    def test_huge_frame_closed_with_1009(self):
        """
        A message over MAX_MESSAGE_SIZE closes the connection with 1009; the
        service goes on serving.
        """
        cp = yield connect_charger(self.service.url, "CP1")
        cp.send_raw('[2,"1","DataTransfer",{"vendorId":"x","data":"'
                    + "A" * (MAX_MESSAGE_SIZE + 1) + '"}]')
        _, code, _ = yield cp.wait_closed()
        self.assertEqual(code, 1009)
        yield self.assertServing()

    @defer.inlineCallbacks
    def test_truncated_json(self):
        """
        Truncated JSON with a readable message id gets a FormationViolation
        CALLERROR for that id; without one it is ignored; the connection
        stays up.
        """
        cp = yield connect_charger(self.service.url, "CP1")
        self.addCleanup(cp.close)
        full = json.dumps([2, "t1", "Heartbeat", {}])
        answered = cp.wait_for_frame(lambda text: '"t1"' in text)
        cp.send_raw(full[:-3])
        text = yield answered
        self.assertEqual(json.loads(text)[:3], [4, "t1", "FormationViolation"])
        for cut in range(1, 8):
            cp.send_raw(full[:cut])
        answer = yield cp.heartbeat()
        self.assertIn("currentTime", answer)


class ReconnectTests(TestCase):
    """
    One identity reconnecting 10,000 times.
    """

    timeout = 120

    @defer.inlineCallbacks
    def test_ten_thousand_reconnects(self):
        """
        10,000 connections of CP1, eight at a time, each dropped once open:
        afterwards one live session, no leaked sessions or protocols, memory
        bounded.
        """
        from xxterocpp.ocpp.server import OcppServerProtocol

        if getattr(sys.modules["__main__"], "__file__", "").endswith("workertrial.py"):
            # Under trial -j, each line logged is a worker's AMP call to the
            # manager, with its Deferred and callbacks, counted here as the
            # service's. make test runs the suite in one process.
            raise SkipTest("counts objects: run without trial -j")
        self.addCleanup(wait_autobahn_timers)
        service = yield start_service(self)
        charger = service.central.chargers["CP1"]
        total, parallel, warmup = 10000, 8, 1000

        @defer.inlineCallbacks
        def worker(count):
            for _ in range(count):
                client = yield connect_raw(service.url, "CP1")
                head = yield client.opened
                self.assertIn(b" 101 ", head)
                client.transport.abortConnection()
                yield client.lost
                made.append(1)

        def round_(n):
            return defer.gatherResults([worker(n // parallel + (i < n % parallel))
                                        for i in range(parallel)], consumeErrors=True)

        made = []

        def live():
            gc.collect()
            objects = gc.get_objects()
            return ([o for o in objects if isinstance(o, OcppSession) and o.open],
                    # This service's: a failed test earlier in the process
                    # keeps its protocols in its traceback's frames.
                    [o for o in objects if isinstance(o, OcppServerProtocol)
                     and o.factory is service.ocpp_factory])

        def settled():
            # Replaced connections are freed once Autobahn's close-handshake
            # timers (5 s, batched) have fired: wait for them (bounded).
            return wait_autobahn_timers().addCallback(
                lambda _: (live(), (rss_kib(), sys.getallocatedblocks()),
                           Counter(type(o).__qualname__ for o in gc.get_objects())))

        # A first 1,000 to warm up (imports, caches); then two rounds of
        # 4,500. Replaced connections live until their close timers fire, so
        # the first round sets the high-water mark of the allocator; the
        # second must not raise it much, nor leave objects behind.
        yield round_(warmup)
        _, _, objects0 = yield settled()
        marks = []
        for _ in range(2):
            yield round_((total - warmup) // 2)
            marks.append((yield settled()))
        self.assertEqual(len(made), total)
        cp = yield connect_charger(service.url, "CP1")
        self.addCleanup(cp.close)
        yield cp.boot()
        (sessions, protocols), rss, objects = yield settled()
        self.assertEqual(len(sessions), 1)
        self.assertIs(sessions[0], charger.session)
        self.assertEqual([p for p in protocols if p.transport is not None
                          and not p.transport.disconnected], [server_protocol(service, "CP1")])
        # A connection the client dropped last may still be on its way out
        # on a loaded machine (its connectionLost not yet run): wait for it,
        # bounded. A leaked protocol stays, and fails this.
        for _ in range(300):
            if len(protocols) <= 2:
                break
            yield sleep(0.1)
            protocols = live()[1]
        self.assertLessEqual(len(protocols), 2, f"{len(protocols)} server protocols alive: "
                             + "; ".join(f"{p.transport!r} referred by "
                                         f"{[type(r).__qualname__ for r in gc.get_referrers(p)]}"
                                         for p in protocols))
        (_, (rss1, blocks1), _), (_, (rss2, blocks2), objects2) = marks
        # Fewer than one object per connection left behind, and no growth
        # in the second round: the interpreter's allocated blocks count
        # every object, strings and bytes too, which the collector's list
        # does not (one left behind per connection would be 4,500). The
        # RSS is the allocator's and moves by a few MiB from round to round
        # (fragmentation) without a leak: only a gross one, C-level
        # included (2.7 KiB per connection), fails it.
        self.assertLess(sum(objects2.values()) - sum(objects0.values()), 1000,
                        f"Python objects left behind: {(objects2 - objects0).most_common(8)}")
        self.assertLess(blocks2 - blocks1, 1000, f"allocated blocks {blocks1} -> {blocks2}")
        self.assertLess(rss2 - rss1, 12 * 1024, f"RSS {rss1} -> {rss2} KiB")


class SlowConsumerTests(TestCase):
    """
    A charger that keeps sending but stops reading.
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_server_buffer_bounded(self):
        """
        The charger sends CALLs with 20 KiB answers (~40 MiB in all) and
        reads nothing: the service stops reading from it instead of
        buffering the answers, and keeps serving others.
        """
        self.addCleanup(wait_autobahn_timers)
        service = yield start_service(self)
        client = yield connect_raw(service.url, "CP1", read=False)
        yield client.opened
        client.transport.socket.setsockopt(
            __import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 4096)
        server = server_protocol(service, "CP1")
        action = "X" * 20000
        for i in range(2000):
            client.send_text(json.dumps([2, str(i), action, {}]))
        peak = 0
        for _ in range(30):
            yield sleep(0.1)
            peak = max(peak, buffered(server.transport))
        self.assertLess(peak, 1024 * 1024, f"server buffered {peak} bytes")
        yield TestServingOthers(service, self)
        client.transport.abortConnection()
        yield client.lost


@defer.inlineCallbacks
def TestServingOthers(service, testcase):
    cp = yield connect_charger(service.url, "TWIN")
    answer = yield cp.heartbeat()
    testcase.assertIn("currentTime", answer)
    yield cp.close()


KNX_CONFIG = LOOPBACK_CONFIG + """
[[charger]]
id = "CP1"
max_current = 32

[charger.knx]
status = "9/7/0"
"""


class KnxdFaultTests(TestCase):
    """
    knxd killed and restarted under the running service.
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_knxd_killed_and_restarted(self):
        """
        With knxd gone the service keeps serving OCPP; once knxd is back the
        bridge reconnects and the next status reaches the bus.
        """
        from tests.knxdtest import connect_peer, start_knxd

        knxd = yield start_knxd(self)
        config = write_config(self, KNX_CONFIG, knxd=knxd.endpoint)
        service = yield start_service(self, config)
        peer = yield connect_peer(self, knxd)
        cp = yield connect_charger(service.url, "CP1")
        self.addCleanup(cp.close)
        yield cp.boot()
        yield cp.status(1, "Charging")
        yield peer.wait_for("9/7/0", "write", timeout=10)

        yield knxd.kill()
        answer = yield cp.status(1, "SuspendedEV")
        self.assertEqual(answer, {})
        answer = yield cp.heartbeat()
        self.assertIn("currentTime", answer)

        yield knxd.start()
        peer = yield connect_peer(self, knxd)
        # The bridge reconnects with its back-off and publishes the state.
        deadline = reactor.seconds() + 30
        seen = False
        status = "Available"
        while not seen and reactor.seconds() < deadline:
            status = "Charging" if status != "Charging" else "Available"
            yield cp.status(1, status)
            try:
                yield peer.wait_for("9/7/0", "write", timeout=1)
                seen = True
            except AssertionError:
                pass
        self.assertTrue(seen, "no status telegram after knxd came back")


class ReadOnlyDatabaseTests(TestCase):
    """
    The state database stops taking writes.
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_service_keeps_serving(self):
        """
        With writes failing (SQLite query_only: as root chmod cannot make a
        file read-only), Heartbeat, StatusNotification and MeterValues are
        still answered; once writable again a transaction starts and stops.
        """
        service = yield start_service(self)
        store = service.store

        def query_only(on):
            store._db.execute(f"PRAGMA query_only = {on}")

        cp = yield connect_charger(service.url, "CP1")
        self.addCleanup(cp.close)
        yield cp.boot()
        yield store._read(query_only, "ON")
        for _ in range(3):
            yield cp.heartbeat()
            yield cp.status(1, "Preparing")
            yield cp.meter_values(1, None, energy_wh=1000, currents=(1, 1, 1))
        yield store._read(query_only, "OFF")
        started = yield cp.start_transaction(1, "04A1B2C3", 1000)
        stopped = yield cp.stop_transaction(started["transactionId"], 2500)
        self.assertIsInstance(stopped, dict)


SIGKILL_CONFIG_HEAD = LOOPBACK_CONFIG + """
[[tag]]
id = "04A1B2C3"
"""


class SigkillTests(TestCase):
    """
    SIGKILL in the middle of 50 running transactions.
    """

    timeout = 120

    @defer.inlineCallbacks
    def test_fifty_transactions_survive_sigkill(self):
        """
        50 chargers each start a transaction and send meter values; the
        service is SIGKILLed, restarted, and each stop books its energy.
        """
        n = 50
        text = SIGKILL_CONFIG_HEAD + "".join(
            f'\n[[charger]]\nid = "K{i:02d}"\nmax_current = 16\n' for i in range(n))
        config = write_config(self, text, max_chargers=n)
        database = os.path.join(os.path.dirname(config), "state.sqlite3")
        service = ServiceProcess(config)
        kill_on_cleanup(self, service)
        yield service.start()
        chargers = yield defer.gatherResults(
            [connect_charger(service.url, f"K{i:02d}") for i in range(n)])
        started = yield defer.gatherResults(
            [cp.start_transaction(1, "04A1B2C3", 1000 * i) for i, cp in enumerate(chargers)])
        ids = [s["transactionId"] for s in started]
        self.assertEqual(len(set(ids)), n)
        yield defer.gatherResults(
            [cp.meter_values(1, tx, energy_wh=1000 * i + 500, currents=(8, 8, 8))
             for i, (cp, tx) in enumerate(zip(chargers, ids))])
        # Some still in flight when the kill comes.
        for i, (cp, tx) in enumerate(zip(chargers, ids)):
            cp.meter_values(1, tx, energy_wh=1000 * i + 700).addErrback(lambda f: None)
        yield service.signal("KILL")
        yield defer.gatherResults([cp.wait_closed() for cp in chargers])

        yield service.start()
        chargers = yield defer.gatherResults(
            [connect_charger(service.url, f"K{i:02d}") for i in range(n)])
        answers = yield defer.gatherResults(
            [cp.stop_transaction(tx, 1000 * i + 900 + i) for i, (cp, tx)
             in enumerate(zip(chargers, ids))])
        for answer in answers:
            self.assertIsInstance(answer, dict)
        yield defer.gatherResults([cp.close() for cp in chargers])
        yield service.stop()
        db = sqlite3.connect(database)
        try:
            rows = dict((row[0], row[1:]) for row in db.execute(
                "select id, meter_start, meter_stop from transactions"))
        finally:
            db.close()
        for i, tx in enumerate(ids):
            meter_start, meter_stop = rows[tx]
            self.assertEqual((meter_start, meter_stop), (1000 * i, 1000 * i + 900 + i))
            self.assertEqual(meter_stop - meter_start, 900 + i)


# -- the property-based fuzzer ------------------------------------------------

def _json_values():
    scalars = (st.none() | st.booleans() | st.integers(-2**40, 2**40)
               | st.floats(allow_nan=False) | st.text(max_size=40))
    return st.recursive(scalars, lambda children: st.lists(children, max_size=4)
                        | st.dictionaries(st.text(max_size=20), children, max_size=4),
                        max_leaves=12)


ACTION_NAMES = sorted(m.ACTIONS)


def _payloads(action):
    """
    JSON payloads close to the schema of C{action}'s request: its real field
    names with random values, and random extras.
    """
    schema = m.ACTIONS[action].request._ocpp_schema
    names = [json_name for _, json_name, _, _ in schema.fields]
    return st.dictionaries(st.sampled_from(names) if names else st.text(max_size=10),
                           _json_values(), max_size=len(names) + 1) | _json_values()


def _frames():
    call = st.builds(lambda uid, action, payload: json.dumps([2, uid, action, payload]),
                     st.text(max_size=40), st.sampled_from(ACTION_NAMES + ["Nope"]),
                     st.sampled_from(ACTION_NAMES).flatmap(_payloads))
    other = st.builds(json.dumps, st.lists(_json_values(), max_size=5))
    return call | other | st.text(max_size=80) | call.map(_first_half)


def _first_half(text):
    return text[: len(text) // 2]


class _Clock(task.Clock):
    pass


class DecoderFuzzTests(TestCase):
    """
    Hypothesis over L{OcppSession.text_received} and L{messages.decode}.
    """

    def setUp(self):
        if given is None:
            raise SkipTest("hypothesis is not installed (python3-hypothesis on Debian)")

    def test_session_answers_or_ignores(self):
        """
        Every input gets one CALLRESULT or CALLERROR for its id, or (not a
        CALL with a readable id) is ignored; nothing raises.
        """

        @settings(max_examples=1500, deadline=None,
                  suppress_health_check=list(HealthCheck))
        @given(_frames())
        def check(text):
            sent = []

            def dispatch(action, request):
                raise CallError(m.NOT_IMPLEMENTED, "fuzz")

            session = OcppSession("FUZZ", sent.append, dispatch, _Clock(), 5)
            session.text_received(text)
            try:
                frame = json.loads(text)
            except ValueError:
                frame = None
            self.assertLessEqual(len(sent), 1)
            for out in sent:
                answer = json.loads(out)
                self.assertIn(answer[0], (3, 4))
                if answer[0] == 4:
                    self.assertIn(answer[2], m.ERROR_CODES if hasattr(m, "ERROR_CODES")
                                  else (answer[2],))
            if isinstance(frame, list) and len(frame) == 4 and frame[0] == 2 \
                    and isinstance(frame[1], str) and isinstance(frame[2], str):
                self.assertEqual(len(sent), 1, text)
                self.assertEqual(json.loads(sent[0])[1], frame[1])
            elif not (isinstance(frame, list) and frame and frame[0] == 2):
                if frame is not None:
                    self.assertEqual(sent, [], text)

        check()

    def test_decode_every_action(self):
        """
        L{messages.decode} of every action's request (strict and lenient)
        returns an instance or raises L{messages.ValidationError} with a
        CALLERROR code; nothing else.
        """

        @settings(max_examples=1500, deadline=None,
                  suppress_health_check=list(HealthCheck))
        @given(st.sampled_from(ACTION_NAMES).flatmap(
            lambda a: st.tuples(st.just(a), _payloads(a), st.booleans())))
        def check(case):
            action, payload, lenient = case
            cls = m.ACTIONS[action].request
            try:
                instance, warnings = m.decode(cls, payload, lenient=lenient)
            except m.ValidationError as e:
                self.assertIsInstance(e.code, str)
                self.assertIsInstance(e.message, str)
            else:
                self.assertIsInstance(instance, cls)
                self.assertIsInstance(warnings, list)

        check()
