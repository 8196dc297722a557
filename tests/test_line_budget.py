"""
What a charger's traffic may make the service log and commit, however
fast it comes (L{xxterocpp.pacing}: L{LINE_BURST} lines at once per
charger, then one per 1 / L{LINE_RATE} s; a value it may change in a loop
committed once a minute, L{CommitPacer}), and the lines one KNX group
address's writes may cause. The real service on loopback with the time of
a L{ClockedReactor}: a simulated charger sending valid messages that each
wrote a line (or a commit) before, and reconnecting in a loop; a real
knxd with a second client writing garbage.
"""

import json

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import TestCase

from tests.knxdtest import LinkWatcher
from tests.knxtruth import NEW_OBJECTS, TWELVE_OBJECTS, address
from tests.service import (
    BASE_CONFIG, ClockedReactor, reopen_store, set_up_over, start_service, write_config)
from tests.sim import connect_charger
from tests.test_budget import client_frame, until
from tests.test_faults import wait_autobahn_timers
from tests.test_knx_truth import TruthTestCase
from xxterocpp.domain.connections import CONTACT
from xxterocpp.pacing import LINE_BURST, LINE_RATE

#: A valid message of each kind that wrote a line each, by the text of the
#: line; C{{i}} is the message's number.
MESSAGES = {
    "Authorize": ("Authorize", {"idTag": "GARBAGE{i}"}),
    "DataTransfer": ("DataTransfer", {"vendorId": "vendor{i}"}),
    "booted": ("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M{i}"}),
    "(NoError)": ("StatusNotification", {"connectorId": 1, "errorCode": "NoError",
                                         "status": "Preparing{i}"}),
    "security event": ("SecurityEventNotification", {"type": "Event{i}",
                                                     "timestamp": "2026-01-01T00:00:00Z"}),
    "FirmwareStatusNotification": ("FirmwareStatusNotification", {"status": "Idle"}),
    "DiagnosticsStatusNotification": ("DiagnosticsStatusNotification", {"status": "Idle"}),
    "StopTransaction for unknown": ("StopTransaction", {
        "transactionId": "{i}", "meterStop": 5, "timestamp": "2026-01-01T00:00:00Z"}),
}


def message(action, payload, i):
    """
    @return: the raw frame of a CALL of C{action} with C{payload}, its
        C{{i}} made C{i} (a number where the whole value is C{{i}}).
    """
    text = json.dumps(payload).replace('"{i}"', str(10 ** 6 + i)).replace("{i}", str(i))
    if action == "StatusNotification":
        # Alternating: every one is a change.
        text = text.replace(f"Preparing{i}", "Preparing" if i % 2 else "Available")
    return client_frame(json.dumps([2, f"m{action[:4]}{i}", action, json.loads(text)]).encode())


def lines_of(events, *texts):
    """
    @return: the captured lines that contain one of C{texts}.
    """
    return [line for line in map(formatEvent, events) if any(t in line for t in texts)]


class ChargerTrafficTests(TestCase):
    """
    The real service on a L{ClockedReactor}: the line budget lasts a
    second of the fake clock as long as the test likes.
    """

    timeout = 120

    @defer.inlineCallbacks
    def setUp(self):
        self.time = ClockedReactor(self)
        self.service = yield start_service(self, on=self.time)
        self.commits = lambda: self.service.store._batches.commits

    @defer.inlineCallbacks
    def booted(self):
        cp = yield connect_charger(self.service.url, "CP1")
        self.addCleanup(cp.close)
        yield cp.boot()
        # The set-up after the boot, and its lines, over.
        session = self.service.central.chargers["CP1"].session
        yield until(lambda: set_up_over(self.service, "CP1") and session._outstanding is None
                    and not session.waiting, "the set-up's calls")
        return cp

    @defer.inlineCallbacks
    def test_valid_messages_log_within_the_chargers_budget(self):
        """
        40 messages of each kind that logged a line each (a hundred a
        second within the frame budget), and 40 binary messages: every
        CALL is answered, and all of them together write at most
        L{LINE_BURST} lines; the next one after 1 / L{LINE_RATE} s says
        how many were held back.
        """
        cp = yield self.booted()
        frames = [message(action, payload, i) for action, payload in MESSAGES.values()
                  for i in range(40)]
        answered = lambda: sum(1 for direction, text in cp.frames
                               if isinstance(text, str) and text.startswith('[3,"m'))
        with capturedLogs() as events:
            # The binary ones (unanswered) first: all are read once the
            # last CALL is answered.
            cp._protocol.transport.write(client_frame(b"[]", 0x2) * 40 + b"".join(frames))
            yield until(lambda: answered() == len(frames), "every CALL answered")
            # The boots' set-up over too: a call of it outstanding would
            # time out when the clock moves on, and take the next line.
            session = self.service.central.chargers["CP1"].session
            yield until(lambda: set_up_over(self.service, "CP1") and session._outstanding is None
                        and not session.waiting, "the set-up's calls")
        lines = lines_of(events, "binary", *MESSAGES)
        self.assertLessEqual(len(lines), LINE_BURST)
        self.assertGreater(len(lines), LINE_BURST // 2)
        self.time.advance(1 / LINE_RATE)
        with capturedLogs() as events:
            self.assertIn("idTagInfo", (yield cp.authorize("LATER")))
        [line] = lines_of(events, "Authorize")
        held = len(frames) + 40 - len(lines)
        self.assertIn(f"({held} such lines held back before this one)", line)

    @defer.inlineCallbacks
    def test_milestones_after_a_flood(self):
        """
        A charger whose frames used up its budget of lines (200 refused
        Authorize lines held back): its transaction's start and stop, and
        its connection closing and opening again, are still logged, the
        connections' within a budget of their own (docs/ocpp.md).
        """
        cp = yield self.booted()
        frames = [message("Authorize", {"idTag": "GARBAGE{i}"}, i) for i in range(200)]
        answered = lambda: sum(1 for direction, text in cp.frames
                               if isinstance(text, str) and text.startswith('[3,"m'))
        with capturedLogs() as events:
            cp._protocol.transport.write(b"".join(frames))
            yield until(lambda: answered() == len(frames), "every CALL answered")
            self.assertLessEqual(len(lines_of(events, "Authorize")), LINE_BURST)
            answer = yield cp.start_transaction(1, "04A1B2C3", 1000)
            yield cp.stop_transaction(answer["transactionId"], 1500)
            yield cp.close()
            yield until(lambda: self.service.central.chargers["CP1"].session is None,
                        "the connection gone")
            cp = yield connect_charger(self.service.url, "CP1")
            self.addCleanup(cp.close)
            yield until(lambda: lines_of(events, "CP1: connected"), "the connection's line")
        tx = answer["transactionId"]
        self.assertEqual(len(lines_of(events, f"transaction {tx} started")), 1)
        self.assertEqual(len(lines_of(events, f"transaction {tx} stopped")), 1)
        self.assertEqual(len(lines_of(events, "CP1: disconnected")), 1)
        self.assertEqual(len(lines_of(events, "CP1: connected from")), 1)
        self.assertEqual(lines_of(events, "Authorize")[-1:],
                         lines_of(events, "Authorize")[:LINE_BURST][-1:])

    @defer.inlineCallbacks
    def test_a_charger_reconnecting_in_a_loop(self):
        """
        50 connections of one charger, each opened and closed at once (a
        new connection would also reset a budget of the connection's own):
        at most L{LINE_BURST} lines of them, and a commit or two, not one
        per connection (its last contact is a lazy write once it was
        committed less than a minute before). The last contact is on disk
        once the service stops.
        """
        before = self.commits()
        with capturedLogs() as events:
            for _ in range(50):
                cp = yield connect_charger(self.service.url, "CP1")
                cp.send_raw("not json")
                yield cp.close()
            yield until(lambda: self.service.central.chargers["CP1"].session is None,
                        "the last connection gone")
        # its malformed frames' lines and its connections' (their own
        # budget, of the same size)
        self.assertLessEqual(len(lines_of(events, "CP1: ")), 2 * LINE_BURST)
        self.assertLessEqual(len(lines_of(events, "CP1: connected", "CP1: disconnected")),
                             LINE_BURST)
        self.assertLessEqual(self.commits() - before, 3)
        left = self.service.central.chargers["CP1"].disconnected_since
        yield self.service.stopService()
        settings = reopen_store(self).load_settings()
        self.assertEqual(settings[("CP1", CONTACT)], {"left": left.isoformat()})

    @defer.inlineCallbacks
    def test_boot_data_changing_at_every_boot(self):
        """
        30 BootNotifications a second apart, each with another model: their
        data is committed once, the others are lazy writes (24 commits
        before; the set-up after a boot may commit a setting of its own);
        the last is on disk once the service stops.
        """
        cp = yield self.booted()
        before = self.commits()
        for i in range(30):
            yield cp.boot(model=f"Model {i}")
            self.time.advance(1)
        self.assertLessEqual(self.commits() - before, 6)
        yield self.service.stopService()
        settings = reopen_store(self).load_settings()
        self.assertEqual(settings[("CP1", "boot")]["model"], "Model 29")

    @defer.inlineCallbacks
    def test_a_charger_failing_its_connections_in_a_loop(self):
        """
        30 connections, each closed by us for a text message that is no
        UTF-8 (1007): Autobahn wrote a line each, 90 in all with ours; at
        most L{LINE_BURST} now, and as many of its connections.
        """
        # Autobahn's close-handshake timers (5 s, wall clock) fire first.
        self.addCleanup(wait_autobahn_timers)
        with capturedLogs() as events:
            for _ in range(30):
                cp = yield connect_charger(self.service.url, "CP1")
                cp.send_raw(b'[2,"1","Heartbeat",{"x":"\xff\xfe"}]')
                self.assertEqual((yield cp.wait_closed())[1], 1007)
        # Autobahn's and our lines of its frames, and its connections' (a
        # budget of their own, of the same size)
        self.assertLessEqual(len(lines_of(events, "CP1", "WebSocket", "dropping")),
                             2 * LINE_BURST)
        self.assertLessEqual(len(lines_of(events, "WebSocket", "dropping")), LINE_BURST)


class AutobahnLinesTests(TestCase):
    """
    What Autobahn itself logs of an open connection with pings is within
    the charger's line budget too.
    """

    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        # Autobahn's timers of the connection it drops fire first.
        self.addCleanup(wait_autobahn_timers)
        self.time = ClockedReactor(self)
        # Autobahn's pings keep to the wall clock: one a second.
        self.service = yield start_service(self, write_config(
            self, BASE_CONFIG.replace("ping_interval = 0", "ping_interval = 1")), on=self.time)

    @defer.inlineCallbacks
    def test_a_flood_of_pongs_that_answer_no_ping(self):
        """
        While our ping waits for its pong, 300 pongs with another payload:
        Autobahn warns of each (300 lines); at most L{LINE_BURST} now.
        """
        protocols = []
        build = self.service.ocpp_factory.buildProtocol
        self.service.ocpp_factory.buildProtocol = lambda a: protocols.append(build(a)) or protocols[-1]
        cp = yield connect_charger(self.service.url, "CP1")
        self.addCleanup(cp.close)
        cp.ignore_pings()
        protocol = protocols[-1]
        yield until(lambda: protocol.autoPingPending, "a ping waiting for its pong")
        with capturedLogs() as events:
            cp._protocol.transport.write(client_frame(b"not yours", 0xA) * 300)
            yield until(lambda: not protocol.autoPingPending or not protocol.data
                        and protocol.state != protocol.STATE_OPEN or not cp.is_open
                        or len(lines_of(events, "pong")) >= LINE_BURST, "the pongs read")
            yield deferLater(reactor, 0.3, lambda: None)
        self.assertLessEqual(len(lines_of(events, "non-pending pong")), LINE_BURST)
        self.assertGreater(len(lines_of(events, "non-pending pong")), 0)


class KnxWriteLinesTests(TruthTestCase):
    """
    A second client of knxd writes garbage to a receive object as fast as
    knxd takes it: the lines of one group address are within its own
    budget.
    """

    objects = TWELVE_OBJECTS + NEW_OBJECTS
    timeout = 60

    @defer.inlineCallbacks
    def start(self):
        self.time = ClockedReactor(self)
        self.service = yield start_service(self, self.config_path, on=self.time)
        yield LinkWatcher(self.service.knx_link).wait(True)

    @defer.inlineCallbacks
    def test_garbage_writes_to_one_address(self):
        """
        200 writes of a value that is no DPT 1 to CP1's charging object:
        each ignored, at most L{LINE_BURST} lines; another address still
        gets its line, and the next line of the first after 1 /
        L{LINE_RATE} s says how many were held back.
        """
        yield self.charger()
        charging, reserve = address("charging"), address("reserve")
        with capturedLogs() as events:
            for _ in range(200):
                self.bus.write(charging, b"\x01\x02\x03\x04")
            self.bus.write(reserve, b"\x01\x02\x03\x04")
            yield self.bus.barrier(address("status"))
        self.assertEqual(len(lines_of(events, f"to {charging} ")), LINE_BURST)
        self.assertEqual(len(lines_of(events, f"to {reserve} ")), 1)
        self.time.advance(1 / LINE_RATE)
        with capturedLogs() as events:
            self.bus.write(charging, b"\x01\x02\x03\x04")
            yield self.bus.barrier(address("status"))
        [line] = lines_of(events, f"to {charging} ")
        self.assertIn(f"({200 - LINE_BURST} such lines held back before this one)", line)
