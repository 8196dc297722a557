"""
Tests of L{xxterocpp.control}: the command front, the raw API, the local
authorization list and reservations. The limits, the post-boot set-up and
the key rotation have their own modules (C{test_limits}, C{test_setup},
C{test_keys}), on the harness defined here.

L{ControllerHarness} drives the real L{CentralSystem}, L{OcppSession} and
L{Controller} on a L{Clock} against a L{ScriptedCharger}, where timing
matters (timeouts, coalescing, the boot watchdog); L{EndToEndTests} run the
whole service against simulated chargers over real WebSockets.
"""

import json
import os
from datetime import datetime, timezone

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.fakes import MemoryStore
from tests.service import BASE_CONFIG, start_service, write_config
from tests.sim import NO_REPLY, CS_TO_CP_ACTIONS, CallErrorReply, ConfigurationKey, connect_charger
from xxterocpp.config import TagConfig, parse_config
from xxterocpp.control import Controller, UnknownChargingPoint
from xxterocpp.control.sender import MAX_WAITING_CALLS
from xxterocpp.domain.events import CommandRefused
from xxterocpp.ocpp import messages as m
from xxterocpp.ocpp.handlers import dispatcher
from xxterocpp.ocpp.rpc import OcppSession
from xxterocpp.domain.central import CentralSystem

CONFIG = """
[ocpp]
call_timeout = 5
max_chargers = 2

[[tag]]
id = "GOOD"

[[charger]]
id = "CP1"
max_current = 32
normal_current = 16
"""

#: A charger's configuration as GetConfiguration reports it.
CONFIGURATION = {
    "ChargeProfileMaxStackLevel": "8",
    "ChargingScheduleAllowedChargingRateUnit": "Current",
    "MeterValuesSampledData": "Energy.Active.Import.Register",
    "MeterValueSampleInterval": "30",
    "SupportedFeatureProfiles": "Core,SmartCharging,LocalAuthListManagement,Reservation",
}


class ScriptedCharger:
    """
    The charger end of a real L{OcppSession}: answers each CS->CP CALL from
    C{answers} (a payload dict, None for no answer, a C{("CALLERROR", code)}
    tuple, or a callable of the payload giving one of these) one reactor
    turn later. Its connection counts as TLS when C{secure} is given.

    @ivar calls: C{(unique_id, action, payload)} of every CALL received.
    @ivar frames: every frame the central system sent.
    """

    def __init__(self, central, clock, charger_id="CP1", configuration=CONFIGURATION,
                 secure=False):
        self.clock = clock
        self.calls = []
        self.frames = []
        self.configuration = dict(configuration)
        self.answers = {
            "GetConfiguration": lambda p: {"configurationKey": [
                {"key": k, "readonly": False, "value": v} for k, v in self.configuration.items()]},
            "GetLocalListVersion": {"listVersion": 0},
            "UnlockConnector": {"status": "Unlocked"},
        }
        self.session = OcppSession(charger_id, self._sent, dispatcher(central, charger_id),
                                   clock, central.config.ocpp.call_timeout)
        central.connections.connected(charger_id, self.session, "127.0.0.1", secure)

    def _sent(self, text):
        frame = json.loads(text)
        self.frames.append(frame)
        if frame[0] != 2:
            return
        unique_id, action, payload = frame[1:]
        self.calls.append((unique_id, action, payload))
        answer = self.answers.get(action, {"status": "Accepted"})
        if callable(answer):
            answer = answer(payload)
        if answer is not None:
            self.clock.callLater(0, self.answer, unique_id, answer)

    def answer(self, unique_id, answer):
        if isinstance(answer, tuple):
            self.session.text_received(json.dumps([4, unique_id, answer[1], "", {}]))
        else:
            self.session.text_received(json.dumps([3, unique_id, answer]))

    def boot(self):
        self.session.text_received(json.dumps(
            [2, "boot", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}]))
        self.clock.advance(0)

    def actions(self):
        return [action for _, action, _ in self.calls]

    def payloads(self, action):
        return [payload for _, a, payload in self.calls if a == action]

    def take(self):
        """
        @return: the calls so far, forgetting them.
        """
        calls, self.calls = self.calls, []
        return calls

class ControllerHarness:
    """
    The controller against a scripted charger, on a fake clock (a mixin of
    the controller's test cases).

    @cvar config: the configuration text.
    """

    config = CONFIG

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp())
        self.store = MemoryStore()
        self.start()

    def start(self):
        """
        Start (again) on the same store, as after a restart.
        """
        self.central = CentralSystem(parse_config(self.config), self.store, self.clock)
        self.controller = Controller(self.central, self.clock)
        self.central.subscribe(self.controller.observe)
        self.central.load()
        self.events = []
        self.central.subscribe(self.events.append)

    def connect(self, boot=True, **kwargs):
        charger = ScriptedCharger(self.central, self.clock, **kwargs)
        if boot:
            charger.boot()
        return charger

    def result(self, d):
        self.clock.advance(0)
        return self.successResultOf(d)

    def profile(self, payload):
        p = payload["csChargingProfiles"]
        return (payload["connectorId"], p["chargingProfilePurpose"], p["chargingProfileKind"],
                p["stackLevel"], p["chargingSchedule"]["chargingRateUnit"],
                p["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"])

    def start_fleet(self, n):
        """
        Start (again) with C{n} chargers CP0 ... configured, each with a
        limit below its maximum (the set-up puts it in force).
        """
        self.central = CentralSystem(parse_config(
            f"[ocpp]\ncall_timeout = 5\nmax_chargers = {n}\n" + "".join(
                f'[[charger]]\nid = "CP{i}"\nmax_current = 16\nnormal_current = 10\n'
                for i in range(n))),
            self.store, self.clock)
        self.controller = Controller(self.central, self.clock)
        self.central.subscribe(self.controller.observe)
        self.central.load()

    def settle(self, turns=30):
        for _ in range(turns):
            self.clock.advance(0)


class ControllerTests(ControllerHarness, SynchronousTestCase):
    """
    The commands and the raw API against a scripted charger.
    """

    def test_no_answer_times_out_and_the_queue_moves(self):
        """
        A charger that never answers: a Timeout result after call_timeout,
        no walk through the cascade, and the next command is sent.
        """
        cp = self.connect()
        cp.take()
        cp.answers["SetChargingProfile"] = None
        limit = self.controller.set_limit("CP1", 1, 10)
        unlock = self.controller.unlock("CP1")
        self.clock.advance(0)
        self.assertEqual(cp.actions(), ["SetChargingProfile"])
        self.clock.advance(5)
        self.assertEqual(self.successResultOf(limit).status, "Timeout")
        self.assertEqual(self.result(unlock).status, "Unlocked")
        self.assertEqual(cp.actions(), ["SetChargingProfile", "UnlockConnector"])
        self.assertEqual(self.controller.limit("CP1"), 16.0)

    def test_call_error(self):
        """
        A CALLERROR comes back as a result; for a profile the cascade goes
        on.
        """
        cp = ScriptedCharger(self.central, self.clock)
        cp.answers["UnlockConnector"] = ("CALLERROR", "NotSupported")
        cp.answers["SetChargingProfile"] = lambda p: (
            ("CALLERROR", "PropertyConstraintViolation") if p["connectorId"] else
            {"status": "Accepted"})
        cp.boot()
        result = self.result(self.controller.unlock("CP1"))
        self.assertEqual((result.accepted, result.status), (False, "CallError"))
        self.assertIn("NotSupported", result.detail)
        self.assertEqual(self.profile(cp.payloads("SetChargingProfile")[-1])[1],
                         "ChargePointMaxProfile")

    def test_reserve_and_start(self):
        """
        Reserved for another tag: start refused; the reserved tag may
        start; the reservationId survives restarts.
        """
        cp = self.connect()
        cp.take()
        result = self.result(self.controller.reserve("CP1", id_tag="GOOD"))
        self.assertTrue(result.accepted)
        reserve = cp.payloads("ReserveNow")[0]
        self.assertEqual((reserve["reservationId"], reserve["idTag"], reserve["expiryDate"]),
                         (1, "GOOD", "2026-01-01T01:00:00.000Z"))
        refused = self.result(self.controller.start("CP1"))
        self.assertEqual((refused.accepted, refused.status), (False, "Refused"))
        self.assertNotIn("RemoteStartTransaction", cp.actions())
        self.assertTrue(self.result(self.controller.start("CP1", id_tag="good")).accepted)
        self.assertTrue(self.result(self.controller.free("CP1")).accepted)
        self.assertEqual(cp.payloads("CancelReservation"), [{"reservationId": 1}])
        self.assertTrue(self.result(self.controller.start("CP1")).accepted)

        self.result(self.controller.reserve("CP1"))
        self.start()
        self.assertEqual(self.central.chargers["CP1"].connectors[1].reservation.id, 2)
        cp = self.connect()
        self.result(self.controller.reserve("CP1"))
        # the booted charger got reservation 2 again, then the new one
        self.assertEqual([p["reservationId"] for p in cp.payloads("ReserveNow")], [2, 3])

    def test_start_refused_while_unavailable(self):
        """
        docs/knx-objects.md#charging: no start while the charger is unavailable.
        """
        cp = self.connect()
        cp.session.text_received(json.dumps([2, "st", "StatusNotification", {
            "connectorId": 1, "errorCode": "NoError", "status": "Unavailable"}]))
        result = self.result(self.controller.start("CP1"))
        self.assertEqual(result.status, "Refused")
        self.assertIn("Unavailable", result.detail)

    def test_stop_needs_a_transaction(self):
        """
        Stop without a transaction is refused; with one it is
        RemoteStopTransaction of its id.
        """
        cp = self.connect()
        self.assertEqual(self.result(self.controller.stop("CP1")).status, "Refused")
        cp.session.text_received(json.dumps([2, "s", "StartTransaction", {
            "connectorId": 1, "idTag": "GOOD", "meterStart": 0,
            "timestamp": "2026-01-01T00:00:00Z"}]))
        self.clock.advance(0)
        self.assertTrue(self.result(self.controller.stop("CP1")).accepted)
        tx = self.central.chargers["CP1"].connectors[1].transaction
        self.assertEqual(cp.payloads("RemoteStopTransaction"), [{"transactionId": tx.id}])

    def test_local_list_differential_and_version_mismatch(self):
        """
        After the full list, registry changes go as differential updates;
        VersionMismatch falls back to a full list.
        """
        cp = self.connect()
        cp.answers["GetLocalListVersion"] = {"listVersion": 1}
        cp.take()
        self.central.tags.put(TagConfig("NEWTAG"))
        self.clock.advance(0)
        update = cp.payloads("SendLocalList")[-1]
        self.assertEqual((update["listVersion"], update["updateType"]), (2, "Differential"))
        self.assertEqual(update["localAuthorizationList"],
                         [{"idTag": "NEWTAG", "idTagInfo": {"status": "Accepted"}}])
        cp.answers["GetLocalListVersion"] = {"listVersion": 2}
        cp.answers["SendLocalList"] = lambda p: {"status": (
            "VersionMismatch" if p["updateType"] == "Differential" else "Accepted")}
        self.central.tags.remove("NEWTAG")
        self.clock.advance(0)
        self.assertEqual([(p["listVersion"], p["updateType"])
                          for p in cp.payloads("SendLocalList")[1:]],
                         [(3, "Differential"), (3, "Full")])

    def test_local_list_not_supported(self):
        """
        Without LocalAuthListManagement no list is sent.
        """
        cp = self.connect(configuration=dict(CONFIGURATION, SupportedFeatureProfiles="Core"))
        self.assertNotIn("GetLocalListVersion", cp.actions())

    def test_send_validates_the_payload(self):
        """
        The raw path refuses what does not validate, and CP->CS actions.
        """
        self.connect()
        for action, payload in [("Reset", {"type": "Warm"}), ("Reset", {}),
                                ("Heartbeat", {}), ("FooBar", {})]:
            result = self.result(self.controller.send("CP1", action, payload))
            self.assertEqual((result.accepted, result.status), (False, "Invalid"), action)

    def test_unknown_charging_point(self):
        """
        Unknown ids and connectors raise at once.
        """
        for call in [lambda: self.controller.start("NOPE"),
                     lambda: self.controller.set_limit("CP1", 2, 10),
                     lambda: self.controller.reset("NOPE"),
                     lambda: self.controller.send("NOPE", "Reset", {"type": "Soft"}),
                     lambda: self.controller.limit("CP1", 3)]:
            self.assertRaises(UnknownChargingPoint, call)


#: An example payload of every CS->CP action, and the sim's default answer's
#: verdict.
EXAMPLES = {
    "CancelReservation": ({"reservationId": 1}, True),
    "ChangeAvailability": ({"connectorId": 1, "type": "Inoperative"}, True),
    "ChangeConfiguration": ({"key": "HeartbeatInterval", "value": "120"}, True),
    "ClearCache": ({}, True),
    "ClearChargingProfile": ({"connectorId": 1}, True),
    "DataTransfer": ({"vendorId": "com.example"}, False),
    "GetCompositeSchedule": ({"connectorId": 1, "duration": 3600}, False),
    "GetConfiguration": ({"key": ["HeartbeatInterval"]}, True),
    "GetDiagnostics": ({"location": "ftp://example.com/"}, True),
    "GetLocalListVersion": ({}, True),
    "RemoteStartTransaction": ({"idTag": "XXTER", "connectorId": 1}, True),
    "RemoteStopTransaction": ({"transactionId": 1}, True),
    "ReserveNow": ({"connectorId": 1, "expiryDate": "2030-01-01T00:00:00Z", "idTag": "XXTER",
                    "reservationId": 99}, True),
    "Reset": ({"type": "Hard"}, True),
    "SendLocalList": ({"listVersion": 5, "updateType": "Full"}, True),
    "SetChargingProfile": ({"connectorId": 1, "csChargingProfiles": {
        "chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Relative", "chargingSchedule": {
            "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 8}]}}},
        True),
    "TriggerMessage": ({"requestedMessage": "StatusNotification", "connectorId": 1}, True),
    "UnlockConnector": ({"connectorId": 1}, True),
    "UpdateFirmware": ({"location": "https://example.com/fw.bin",
                        "retrieveDate": "2030-01-01T00:00:00Z"}, True),
    "CertificateSigned": ({"certificateChain": "-----BEGIN CERTIFICATE-----"}, True),
    "DeleteCertificate": ({"certificateHashData": {
        "hashAlgorithm": "SHA256", "issuerNameHash": "ab", "issuerKeyHash": "cd",
        "serialNumber": "01"}}, False),
    "ExtendedTriggerMessage": ({"requestedMessage": "SignChargePointCertificate"}, True),
    "GetInstalledCertificateIds": ({"certificateType": "CentralSystemRootCertificate"}, False),
    "GetLog": ({"log": {"remoteLocation": "https://example.com/"}, "logType": "SecurityLog",
                "requestId": 1}, True),
    "InstallCertificate": ({"certificateType": "CentralSystemRootCertificate",
                            "certificate": "-----BEGIN CERTIFICATE-----"}, True),
    "SignedUpdateFirmware": ({"requestId": 1, "firmware": {
        "location": "https://example.com/fw.bin", "retrieveDateTime": "2030-01-01T00:00:00Z",
        "signingCertificate": "-----BEGIN CERTIFICATE-----", "signature": "c2ln"}}, True),
}

#: The test configuration with a short call timeout.
SHORT_TIMEOUT_CONFIG = BASE_CONFIG.replace("call_timeout = 5", "call_timeout = 0.5")


class QueueBoundTests(ControllerHarness, SynchronousTestCase):
    """
    The calls waiting for a charger that does not answer are bounded
    (L{MAX_WAITING_CALLS}); a newer call of a kind takes the queued one's
    place (docs/architecture.md#bounds).
    """

    def silent(self):
        cp = self.connect()
        cp.take()
        for action in ("GetConfiguration", "ChangeAvailability", "UnlockConnector",
                       "RemoteStartTransaction", "DataTransfer"):
            cp.answers[action] = None
        return cp

    def test_the_architecture_page_gives_the_bound(self):
        """
        docs/architecture.md#bounds and docs/knx-objects.md#feedback name
        the bound with its value.
        """
        path = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "architecture.md")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        self.assertIn(f"`MAX_WAITING_CALLS` ({MAX_WAITING_CALLS})", text)
        with open(os.path.join(os.path.dirname(path), "knx-objects.md"), encoding="utf-8") as f:
            self.assertIn(f"`Busy`: {MAX_WAITING_CALLS} calls wait", f.read())

    def test_busy_beyond_the_bound(self):
        """
        One outstanding call and L{MAX_WAITING_CALLS} waiting; the next is
        refused "Busy" without being queued, with a line within the
        charger's budget; once the queue moves, calls go out again.
        """
        cp = self.silent()
        logs = self.enterContext(capturedLogs())
        session = self.central.chargers["CP1"].session
        waiting = [self.controller.send("CP1", "DataTransfer", {"vendorId": f"v{i}"})
                   for i in range(MAX_WAITING_CALLS + 1)]
        self.clock.advance(0)
        self.assertEqual(session.waiting, MAX_WAITING_CALLS)
        refused = [self.controller.send("CP1", "DataTransfer", {"vendorId": "x"})
                   for _ in range(50)]
        self.clock.advance(0)
        self.assertEqual(session.waiting, MAX_WAITING_CALLS)
        self.assertEqual({self.successResultOf(d).status for d in refused}, {"Busy"})
        for d in waiting:
            self.assertNoResult(d)
        lines = [formatEvent(e) for e in logs if "calls wait for the charger" in formatEvent(e)]
        self.assertTrue(lines)
        self.assertLess(len(lines), 50)
        self.clock.advance(5)
        self.assertEqual(self.successResultOf(waiting[0]).status, "Timeout")
        self.assertEqual(session.waiting, MAX_WAITING_CALLS - 1)
        later = self.controller.send("CP1", "DataTransfer", {"vendorId": "y"})
        self.assertNoResult(later)
        self.assertEqual(session.waiting, MAX_WAITING_CALLS)

    def test_newer_availability_replaces_the_queued_one(self):
        """
        Availability written off, on, off, ... 100 times while the first
        call is unanswered: one waits, the last; the others end
        "Superseded" and are announced as refused.
        """
        cp = self.silent()
        session = self.central.chargers["CP1"].session
        ds = [self.controller.set_availability("CP1", 1, i % 2 == 1) for i in range(100)]
        self.clock.advance(0)
        self.assertEqual(session.waiting, 1)
        results = [self.successResultOf(d) for d in ds[1:-1]]
        self.assertEqual([r.status for r in results], ["Superseded"] * 98)
        self.assertFalse(any(r.accepted for r in results))
        self.assertEqual(sum(isinstance(e, CommandRefused) for e in self.events), 98)
        cp.answers["ChangeAvailability"] = {"status": "Accepted"}
        self.clock.advance(5)
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(ds[0]).status, "Timeout")
        self.assertEqual(self.successResultOf(ds[-1]).status, "Accepted")
        self.assertEqual([p["type"] for p in cp.payloads("ChangeAvailability")],
                         ["Inoperative", "Operative"])

    def test_a_queued_kind_passes_the_bound(self):
        """
        At the bound, a call replacing a queued one of its kind is taken
        (the queue does not grow).
        """
        cp = self.silent()
        session = self.central.chargers["CP1"].session
        first = self.controller.set_availability("CP1", 1, False)
        queued = self.controller.set_availability("CP1", 1, True)
        for i in range(MAX_WAITING_CALLS - 1):
            self.controller.send("CP1", "DataTransfer", {"vendorId": f"v{i}"})
        self.clock.advance(0)
        self.assertEqual(session.waiting, MAX_WAITING_CALLS)
        newer = self.controller.set_availability("CP1", 1, False)
        self.assertEqual(self.successResultOf(queued).status, "Superseded")
        self.assertNoResult(newer)
        self.assertNoResult(first)
        self.assertEqual(session.waiting, MAX_WAITING_CALLS)
        self.assertEqual(len(cp.calls), 1)

    def test_set_up_after_a_boot_at_the_bound(self):
        """
        A charger boots while L{MAX_WAITING_CALLS} of the web's calls wait
        for it: the set-up after the boot is not refused "Busy" (it would
        end having configured nothing, and nothing runs it again until the
        next boot), nor what follows it: the limit put in force and the
        local authorization list (each one run at a time per charger, so
        they cannot pile up either); their calls go out once the queue
        moves.
        """
        cp = self.connect(boot=False)
        cp.answers["DataTransfer"] = None
        for i in range(MAX_WAITING_CALLS + 1):
            self.controller.send("CP1", "DataTransfer", {"vendorId": f"v{i}"})
        self.clock.advance(0)
        session = self.central.chargers["CP1"].session
        self.assertEqual(session.waiting, MAX_WAITING_CALLS)
        controller = self.controller

        class Refilling(dict):
            """
            The web keeps the queue full all along: whenever a call goes
            out, another takes its place before it is answered (each of the
            web's takes the call timeout).
            """

            def get(self, action, default=None):
                while session.waiting < MAX_WAITING_CALLS:
                    controller.send("CP1", "DataTransfer", {"vendorId": "more"})
                return super().get(action, default)

        cp.answers = Refilling(cp.answers)
        cp.boot()
        for _ in range(20 * MAX_WAITING_CALLS):
            if cp.payloads("SendLocalList"):
                break
            self.clock.advance(5)
            self.settle()
        actions = cp.actions()
        self.assertIn("DataTransfer", actions)
        self.assertIn("GetConfiguration", actions)
        self.assertIn("MeterValuesSampledData",
                      [p["key"] for p in cp.payloads("ChangeConfiguration")])
        self.assertEqual([self.profile(p)[-1] for p in cp.payloads("SetChargingProfile")],
                         [16])
        self.assertEqual(len(cp.payloads("SendLocalList")), 1)
        point = self.central.chargers["CP1"].connector(1)
        self.assertEqual(point.limit, 16)


class EndToEndTests(TestCase):
    """
    The whole service and simulated chargers over real WebSockets.
    """

    @defer.inlineCallbacks
    def setUp(self):
        self.path = write_config(self, SHORT_TIMEOUT_CONFIG)
        self.service = yield start_service(self, self.path)
        self.controller = self.service.controller

    @defer.inlineCallbacks
    def booted(self, identity="CP1", prepare=lambda cp: None):
        """
        Connect and boot a simulated charger and wait for its set-up.
        """
        cp = yield connect_charger(self.service.url, identity)
        self.addCleanup(cp.close)
        prepare(cp)
        yield cp.boot()
        yield cp.wait_for_call("SendLocalList")
        # One round trip more: the answer to SendLocalList is processed.
        yield cp.heartbeat()
        return cp

    def test_every_action_is_covered(self):
        """
        The examples name every CS->CP action of the table and the sim.
        """
        sent = {name for name, a in m.ACTIONS.items() if a.direction != m.CP_TO_CS}
        self.assertEqual(set(EXAMPLES), sent)
        self.assertEqual(set(EXAMPLES), set(CS_TO_CP_ACTIONS))

    @defer.inlineCallbacks
    def test_send_every_action(self):
        """
        Every CS->CP action goes out typed and validated, its answer comes
        back as JSON.
        """
        cp = yield self.booted()
        for action, (payload, accepted) in sorted(EXAMPLES.items()):
            result = yield self.controller.send("CP1", action, payload)
            self.assertEqual(result.accepted, accepted, (action, result))
            self.assertIsInstance(result.response, dict, action)
            received = [p for a, p in cp.calls_received if a == action][-1]
            self.assertEqual(received, m.encode(m.decode(m.ACTIONS[action].request, payload)[0]))

    @defer.inlineCallbacks
    def test_commands_end_to_end(self):
        """
        Each command of the control model, on the wire.
        """
        cp = yield self.booted()
        c = self.controller
        steps = [
            (lambda: c.start("CP1"), "RemoteStartTransaction", {"connectorId": 1, "idTag": "XXTER"}),
            (lambda: c.set_availability("CP1", 1, False), "ChangeAvailability",
             {"connectorId": 1, "type": "Inoperative"}),
            (lambda: c.set_availability("CP1", 0, True), "ChangeAvailability",
             {"connectorId": 0, "type": "Operative"}),
            (lambda: c.unlock("CP1"), "UnlockConnector", {"connectorId": 1}),
            (lambda: c.reset("CP1"), "Reset", {"type": "Soft"}),
            (lambda: c.reset("CP1", hard=True), "Reset", {"type": "Hard"}),
        ]
        for command, action, payload in steps:
            result = yield command()
            self.assertTrue(result.accepted, (action, result))
            unique_id, received = yield cp.wait_for_call(action)
            self.assertEqual(received, payload)
        for command, limit in [(lambda: c.set_limit("CP1", 1, 10), 10.0),
                               (lambda: c.pause("CP1"), 0.0), (lambda: c.resume("CP1"), 10.0),
                               (lambda: c.fast("CP1"), 32.0), (lambda: c.normal("CP1"), 16.0)]:
            result = yield command()
            self.assertTrue(result.accepted)
            self.assertEqual(c.limit("CP1"), limit)
        reserved = yield c.reserve("CP1")
        self.assertTrue(reserved.accepted)
        freed = yield c.free("CP1")
        self.assertTrue(freed.accepted)
        start = yield cp.start_transaction(1, "XXTER", 0)
        stopped = yield c.stop("CP1")
        self.assertTrue(stopped.accepted)
        unique_id, received = yield cp.wait_for_call("RemoteStopTransaction")
        self.assertEqual(received, {"transactionId": start["transactionId"]})

    @defer.inlineCallbacks
    def test_tx_default_rejected_fallback_survives_restart(self):
        """
        A charger rejecting TxDefaultProfile gets a ChargePointMaxProfile;
        after a restart of the service that is sent straight away.
        """
        def no_tx_default(payload):
            purpose = payload["csChargingProfiles"]["chargingProfilePurpose"]
            return {"status": "Rejected" if purpose == "TxDefaultProfile" else "Accepted"}

        def prepare(cp):
            cp.handlers["SetChargingProfile"] = no_tx_default

        cp = yield self.booted(prepare=prepare)
        self.assertEqual(self.controller.limit("CP1"), 16.0)
        purposes = [p["csChargingProfiles"]["chargingProfilePurpose"]
                    for a, p in cp.calls_received if a == "SetChargingProfile"]
        self.assertEqual(purposes[-1], "ChargePointMaxProfile")
        self.assertEqual(set(purposes[:-1]), {"TxDefaultProfile"})
        yield cp.close()
        yield self.service.stopService()

        self.service = yield start_service(self, self.path)
        self.controller = self.service.controller
        cp = yield self.booted(prepare=prepare)
        purposes = [p["csChargingProfiles"]["chargingProfilePurpose"]
                    for a, p in cp.calls_received if a == "SetChargingProfile"]
        self.assertEqual(purposes, ["ChargePointMaxProfile"])

    @defer.inlineCallbacks
    def test_charger_that_never_answers(self):
        """
        No answer: Timeout after call_timeout, the next command goes out.
        """
        cp = yield self.booted()
        cp.handlers["Reset"] = lambda payload: NO_REPLY
        reset = self.controller.reset("CP1")
        unlock = self.controller.unlock("CP1")
        self.assertEqual((yield reset).status, "Timeout")
        self.assertEqual((yield unlock).status, "Unlocked")

    @defer.inlineCallbacks
    def test_charger_answering_call_error(self):
        """
        A CALLERROR comes back as such.
        """
        cp = yield self.booted()
        cp.handlers["UnlockConnector"] = lambda payload: CallErrorReply("NotSupported", "no lock")
        result = yield self.controller.unlock("CP1")
        self.assertEqual((result.accepted, result.status), (False, "CallError"))
        self.assertIn("no lock", result.detail)

    @defer.inlineCallbacks
    def test_reserved_for_another_tag_refuses_start(self):
        """
        docs/knx-objects.md#reserve: no start while reserved.
        """
        cp = yield self.booted()
        yield self.controller.reserve("CP1", id_tag="04A1B2C3")
        result = yield self.controller.start("CP1")
        self.assertEqual(result.status, "Refused")
        self.assertNotIn("RemoteStartTransaction", [a for a, p in cp.calls_received])

    @defer.inlineCallbacks
    def test_limit_reapplied_after_reboot(self):
        """
        A reboot (new BootNotification) gets the limit in force again.
        """
        cp = yield self.booted()
        yield self.controller.set_limit("CP1", 1, 12.5)
        yield cp.wait_for_call("SetChargingProfile")
        yield cp.wait_for_call("SetChargingProfile")
        yield cp.boot()
        unique_id, payload = yield cp.wait_for_call("SetChargingProfile")
        period = payload["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]
        self.assertEqual(period["limit"], 12.5)

    @defer.inlineCallbacks
    def test_post_boot_configuration_partial(self):
        """
        The measurand list rejected as a whole, accepted one by one.
        """
        def prepare(cp):
            cp.configuration["MeterValueSampleInterval"] = ConfigurationKey("60")
            change = cp.handlers["ChangeConfiguration"]
            cp.handlers["ChangeConfiguration"] = lambda p: (
                {"status": "Rejected"} if "Power.Active.Import" in p["value"] else change(p))

        cp = yield self.booted(prepare=prepare)
        self.assertEqual(cp.configuration["MeterValuesSampledData"].value,
                         "Energy.Active.Import.Register,Current.Import,Current.Offered")

    @defer.inlineCallbacks
    def test_trigger_boot_for_a_charger_that_never_boots(self):
        """
        docs/quirks.md#q6: a connected charger without BootNotification is asked.
        """
        self.controller.boot_wait = 0.1
        cp = yield connect_charger(self.service.url, "TWIN")
        self.addCleanup(cp.close)
        unique_id, payload = yield cp.wait_for_call("TriggerMessage")
        self.assertEqual(payload, {"requestedMessage": "BootNotification"})
