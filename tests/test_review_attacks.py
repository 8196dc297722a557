"""
Attacks on a review's changes, kept as regression tests: the index of
charger tables in L{xxterocpp.config.Config}; the time an OCPP frame is
kept with (an answer written while its CALL is handled shares its time);
the calls that pass the bound of waiting calls
(L{xxterocpp.control.sender.MAX_WAITING_CALLS}), which must not pile up,
and the Smart Energy Manager's plan, which a full queue must not turn away.
"""

import copy
import json
import os
import pickle
import struct

import attr
from twisted.internet import protocol
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tests.fakes import MemoryStore
from tests.service import BASE_CONFIG, PASSWORD
from tests.test_config import charger
from tests.test_control import CONFIG, ControllerHarness
from tests.test_smart import START_DELAY, ControlledHarness
from xxterocpp.control.sender import MAX_WAITING_CALLS
from xxterocpp.config import ConfigError, TagConfig, parse_config
from xxterocpp.domain.central import CentralSystem
from xxterocpp.ocpp import messages as m
from xxterocpp.ocpp.server import OcppServerFactory


class ConfigIndexTests(SynchronousTestCase):
    """
    L{Config}'s index of charger tables by id answers as the scan of
    C{chargers} it replaced, for every way a Config is made.
    """

    TEXT = ("[ocpp]\nmax_chargers = 10\n" + charger("B", 2) + charger("a", 1) + charger("B", 1) + charger("b", 1)
            + charger("A", 3))

    def assertIndexed(self, config):
        """
        Each lookup of C{config} answers as a scan of its C{chargers}.
        """
        ids = tuple(dict.fromkeys(c.id for c in config.chargers))
        self.assertEqual(config.charger_ids(), ids)
        for charger_id in ids + ("nobody",):
            points = tuple(sorted((c for c in config.chargers if c.id == charger_id),
                                  key=lambda c: c.connector))
            self.assertEqual(config.charging_points(charger_id), points)
            for connector in range(5):
                self.assertEqual(config.charger(charger_id, connector),
                                 next((c for c in points if c.connector == connector), None))

    def test_file_order_twins_and_case(self):
        config = parse_config(self.TEXT)
        self.assertEqual(config.charger_ids(), ("B", "a", "b", "A"))
        self.assertEqual([c.connector for c in config.charging_points("B")], [1, 2])
        self.assertIndexed(config)

    def test_evolve(self):
        """
        A Config evolved with other chargers is indexed anew.
        """
        config = parse_config(self.TEXT)
        evolved = attr.evolve(config, chargers=config.chargers[:2])
        self.assertEqual(evolved.charger_ids(), ("B", "a"))
        self.assertIndexed(evolved)
        self.assertIndexed(attr.evolve(config, chargers=()))

    def test_copies_and_pickle(self):
        config = parse_config(self.TEXT)
        for other in (copy.copy(config), copy.deepcopy(config),
                      pickle.loads(pickle.dumps(config))):
            self.assertIndexed(other)
            self.assertEqual(other, config)
            self.assertEqual(hash(other), hash(config))

    def test_equality(self):
        """
        Two Configs of the same file are equal and hash alike; of other
        chargers, they are not equal.
        """
        a, b = parse_config(self.TEXT), parse_config(self.TEXT)
        self.assertEqual(a, b)
        self.assertEqual(hash(a), hash(b))
        self.assertNotEqual(a, parse_config(charger("B", 2)))
        self.assertNotIn("_points", repr(a))

    def test_quirks_that_disagree_are_refused(self):
        text = (charger("T", 1, quirks='["keepalive"]') + charger("U", 1)
                + charger("T", 2, no_quirks='["keepalive"]'))
        self.assertRaises(ConfigError, parse_config, text)

    def test_quirk_settings_of_twins(self):
        text = (charger("T", 2, quirks='["no-ping"]') + charger("U", 1)
                + charger("T", 1, quirks='["no-ping"]'))
        config = parse_config(text)
        self.assertEqual(config.quirk_settings("T"), config.quirk_settings("T"))
        self.assertEqual(config.quirk_settings("nobody"), parse_config("").quirk_settings("x"))


def client_frame(text, opcode=1):
    """
    @return: one masked client WebSocket frame of C{text} (RFC 6455 §5.2).
    """
    data = text.encode("utf-8") if isinstance(text, str) else text
    mask = os.urandom(4)
    head = bytes([0x80 | opcode])
    if len(data) < 126:
        head += bytes([0x80 | len(data)])
    else:
        head += bytes([0x80 | 126]) + struct.pack("!H", len(data))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


class FrameTimeTests(SynchronousTestCase):
    """
    The time a frame is kept with for the status page: an answer written
    while its CALL is handled shares the CALL's; anything written later
    (a Deferred answer, our own CALL from a timer) has its own; only the
    charger's frames are its last contact.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        # A system clock read at every look moves on a little (as a real
        # one does between two looks): a frame's time shows which look it
        # was kept with.
        self.looks = 0

        def wall():
            self.looks += 1
            return self.clock.seconds() + self.looks / 1000

        self.store = MemoryStore()
        self.central = CentralSystem(parse_config(BASE_CONFIG.format(
            database="state.sqlite3", password=PASSWORD, knxd="", max_chargers=4)),
            self.store, self.clock, wall=wall)
        self.central.load()
        self.addCleanup(self.central.shutdown)
        self.factory = OcppServerFactory(self.central, self.clock, ping_interval=0)
        address = IPv4Address("TCP", "127.0.0.1", 40001)
        self.connection = self.factory.buildProtocol(address)
        self.transport = StringTransport(peerAddress=address)
        self.connection.makeConnection(self.transport)
        self.connection.dataReceived("\r\n".join([
            "GET /CP1 HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket",
            "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: ocpp1.6", "", ""]).encode())
        self.assertTrue(self.transport.value().startswith(b"HTTP/1.1 101 "))
        self.addCleanup(self.connection.connectionLost, protocol.connectionDone)
        self.charger = self.central.chargers["CP1"]

    def send(self, frame):
        self.connection.dataReceived(client_frame(json.dumps(frame)))

    def frames(self):
        return [(seconds, direction, json.loads(text)[1])
                for seconds, direction, text in self.charger.frames]

    def test_answer_at_once_shares_the_call_time(self):
        self.send([2, "h1", "Heartbeat", {}])
        (t_in, d_in, id_in), (t_out, d_out, id_out) = self.frames()
        self.assertEqual((d_in, id_in, d_out, id_out), ("in", "h1", "out", "h1"))
        self.assertEqual(t_in, t_out)
        self.assertEqual(self.charger._last_seen_s, t_in)

    def test_deferred_answer_has_its_own_time(self):
        """
        A StartTransaction answered once the store has it, 10 s later and
        after another CALL was handled: its answer has the time it is
        written, not that of its CALL nor of the other; the last contact is
        the charger's last frame.
        """
        self.store.hold.add("insert_transaction")
        self.send([2, "s1", "StartTransaction", {
            "connectorId": 1, "idTag": "04A1B2C3", "meterStart": 0,
            "timestamp": "2027-01-15T08:00:00Z"}])
        self.clock.advance(5)
        self.send([2, "h1", "Heartbeat", {}])
        self.clock.advance(5)
        self.assertTrue(self.store.held)
        for d in self.store.held:
            d.callback(None)
        frames = self.frames()
        self.assertEqual([(d, i) for _, d, i in frames],
                         [("in", "s1"), ("in", "h1"), ("out", "h1"), ("out", "s1")])
        times = [t for t, _, _ in frames]
        self.assertEqual(times[1], times[2])
        self.assertGreaterEqual(times[3], self.clock.seconds())
        self.assertEqual(self.charger._last_seen_s, times[1])

    def test_own_call_later_has_its_own_time(self):
        """
        A CALL of ours written from a timer after a message was handled
        (and one whose handling failed) is kept with the time it is sent.
        """
        self.send([2, "x1", "NoSuchAction", {}])
        self.send([2, "h1", "Heartbeat", "not an object"])
        self.clock.advance(7)
        self.charger.session.call(m.GetLocalListVersionRequest()).addErrback(
            lambda failure: None)
        seconds, direction, _ = self.charger.frames[-1]
        self.assertEqual(direction, "out")
        self.assertGreaterEqual(seconds, self.clock.seconds())

    def test_binary_frame_keeps_nothing(self):
        self.connection.dataReceived(client_frame(b"\x00\x01", opcode=2))
        self.clock.advance(3)
        self.send([2, "h1", "Heartbeat", {}])
        self.assertEqual([(d, i) for _, d, i in self.frames()], [("in", "h1"), ("out", "h1")])


#: test_control's configuration with CP1 a twin: connectors 2 and 1, in
#: that order in the file.
TWIN_CONFIG = CONFIG.replace('id = "CP1"\n', 'id = "CP1"\nconnector = 2\n') + """
[[charger]]
id = "CP1"
connector = 1
max_current = 32
normal_current = 16
"""


class UnboundedCallsTests(ControllerHarness, SynchronousTestCase):
    """
    The limits put in force and the local list kept in step pass the bound
    of waiting calls (C{bounded=False}); a flood of what starts them (KNX
    limits on every connector of a twin, the Smart Energy Manager's
    steering, tags written through the web) at a charger that never
    answers queues no more than one call per connector and one for the
    list.
    """

    config = TWIN_CONFIG

    def test_flood_at_a_silent_twin(self):
        cp = self.connect()
        self.settle()
        for _ in range(10):
            self.clock.advance(5)
            self.settle()
        cp.take()
        for action in ("SetChargingProfile", "GetLocalListVersion", "SendLocalList"):
            cp.answers[action] = None
        session = self.central.chargers["CP1"].session
        most = 0
        for i in range(300):
            self.controller.set_limit("CP1", 1 + i % 2, 6 + i % 20)
            self.controller.steer("CP1", 1 + i % 2, 6 + i % 7)
            self.central.tags.put(TagConfig(id=f"T{i}"))
            most = max(most, session.waiting)
            if i % 50 == 0:
                self.clock.advance(5)
                self.settle()
        # One outstanding, the others waiting: one per connector, one list.
        self.assertLessEqual(most, 2)
        self.assertEqual({p["connectorId"] for p in cp.payloads("SetChargingProfile")}, {1, 2})
        self.assertTrue(cp.payloads("GetLocalListVersion"))
        for _ in range(20):
            self.clock.advance(5)
            self.settle()
        self.assertEqual(session.waiting, 0)


class SmartPlanAtTheBoundTests(ControlledHarness, SynchronousTestCase):
    """
    A smart session starts while the web's calls fill the queue of a slow
    charger up to the bound of waiting calls.
    """

    def test_plan_not_refused_busy(self):
        """
        The plan's TxProfile is not refused "Busy" (it would wait for the
        next re-plan, hours away): like a limit put in force, it goes out
        once the queue moves.
        """
        self.build()
        self.cp.answers["DataTransfer"] = None
        session = self.central.chargers["CP1"].session
        for i in range(MAX_WAITING_CALLS + 1):
            self.controller.send("CP1", "DataTransfer", {"vendorId": f"v{i}"})
        self.settle()
        self.assertEqual(session.waiting, MAX_WAITING_CALLS)
        self.start_transaction()
        self.clock.advance(START_DELAY)
        self.settle()
        for _ in range(2 * MAX_WAITING_CALLS + 4):
            self.clock.advance(self.central.config.ocpp.call_timeout)
            self.settle()
        self.assertEqual(len(self.plans()), 1)
