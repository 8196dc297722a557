"""
Tests for the test peers L{tests.sim} and L{tests.ocpplib_peer}.

They run against a small Autobahn server defined here, on 127.0.0.1 port 0,
not against the project's server: the peers must be trustworthy before they
are used to judge it.
"""

import base64
import datetime
import json

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks, succeed
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ServerEndpoint
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS
from twisted.trial.unittest import TestCase

from tests import ocpplib_peer, sim

CURRENT_TIME = "2024-05-01T12:00:00.000Z"


class _AnswerServerProtocol(WebSocketServerProtocol):
    """
    Answers CALLs from C{factory.replies} and can send CALLs of its own.
    """

    def __init__(self):
        super().__init__()
        self.received = []
        self.lost = Deferred()
        self._pending = {}
        self._next_id = 0

    def onConnect(self, request):
        self.factory.requests.append(request)
        if self.factory.deny is not None:
            raise ConnectionDeny(*self.factory.deny)
        # Accept a client that offers nothing, so the sim's "no header"
        # mode can be observed.
        return "ocpp1.6" if "ocpp1.6" in request.protocols else None

    def onOpen(self):
        self.factory.opened.append(self)

    def onMessage(self, payload, isBinary):
        self.received.append(payload)
        try:
            message = json.loads(payload)
        except ValueError:
            return
        if message[0] == sim.CALL:
            reply = self.factory.replies.get(message[2], {})
            if reply is None:
                return
            if isinstance(reply, sim.CallErrorReply):
                self.send([sim.CALLERROR, message[1], reply.code, reply.description, reply.details])
            else:
                self.send([sim.CALLRESULT, message[1], reply])
        elif message[1] in self._pending:
            self._pending.pop(message[1]).callback(message)

    def send(self, message):
        self.sendMessage(json.dumps(message).encode("utf-8"))

    def call(self, action, payload, timeout=5):
        """
        Send a CALL; the L{Deferred} fires with the whole answer frame.
        """
        self._next_id += 1
        unique_id = f"cs-{self._next_id}"
        d = Deferred(lambda d: self._pending.pop(unique_id, None))
        self._pending[unique_id] = d
        self.send([sim.CALL, unique_id, action, payload])
        return d.addTimeout(timeout, reactor)

    def connectionLost(self, reason):
        super().connectionLost(reason)
        self.lost.callback(None)


class _AnswerServerFactory(WebSocketServerFactory):
    protocol = _AnswerServerProtocol

    def __init__(self):
        super().__init__(url=None, protocols=["ocpp1.6"])
        self.setProtocolOptions(openHandshakeTimeout=5, closeHandshakeTimeout=2)
        self.requests = []
        self.opened = []
        self.built = []
        self.deny = None
        self.replies = {
            "BootNotification": {"status": "Accepted", "currentTime": CURRENT_TIME, "interval": 300},
            "Heartbeat": {"currentTime": CURRENT_TIME},
        }

    def buildProtocol(self, addr):
        protocol = super().buildProtocol(addr)
        self.built.append(protocol)
        return protocol

    def all_lost(self):
        """
        Fires when every server-side connection is gone, so the test ends
        with no socket left in the reactor.
        """
        return DeferredList([p.lost.addTimeout(5, reactor) for p in self.built if not p.lost.called])


def _self_signed_pem(hostname):
    """
    A throw-away key and self-signed certificate for C{hostname}, as PEM.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


class _PeerTestCase(TestCase):
    """
    Starts an L{_AnswerServerFactory} on loopback for each test.
    """

    @inlineCallbacks
    def setUp(self):
        self.server = _AnswerServerFactory()
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(self.server)
        self.addCleanup(port.stopListening)
        self.addCleanup(self.server.all_lost)
        self.url = f"ws://127.0.0.1:{port.getHost().port}/ocpp/"

    @inlineCallbacks
    def connect(self, identity="CP1", **kwargs):
        charger = yield sim.connect_charger(self.url, identity, timeout=5, **kwargs)
        self.addCleanup(charger.close)
        return charger

    def server_side(self):
        """
        The server protocol of the only open connection.
        """
        [protocol] = self.server.opened
        return protocol


class ConnectTests(_PeerTestCase):
    """
    L{sim.connect_charger}: URL, subprotocol, credentials, refusals.
    """

    @inlineCallbacks
    def test_offers_ocpp16_and_reports_negotiated_protocol(self):
        charger = yield self.connect("RDAM 123")
        self.assertEqual(charger.negotiated_protocol, "ocpp1.6")
        self.assertTrue(charger.is_open)
        [request] = self.server.requests
        self.assertEqual(request.protocols, ["ocpp1.6"])
        # The identity is percent-encoded into the last path segment (OCPP-J 1.6 §3.1.1).
        self.assertEqual(request.path, "/ocpp/RDAM%20123")

    @inlineCallbacks
    def test_no_protocols_sends_no_subprotocol_header(self):
        charger = yield self.connect(protocols=())
        self.assertIsNone(charger.negotiated_protocol)
        [request] = self.server.requests
        self.assertNotIn("sec-websocket-protocol", request.headers)

    @inlineCallbacks
    def test_complete_url_is_used_unchanged(self):
        charger = yield sim.connect_charger(self.url + "CP%2F9", timeout=5)
        self.addCleanup(charger.close)
        self.assertEqual(self.server.requests[0].path, "/ocpp/CP%2F9")

    @inlineCallbacks
    def test_basic_auth_with_raw_bytes_password(self):
        password = bytes(range(0, 256, 15)) + b":x"
        yield self.connect("CP1", auth=("CP1", password))
        [request] = self.server.requests
        # RFC 7617: base64 of user-id ":" password, the password's bytes
        # unchanged.
        expected = "Basic " + base64.b64encode(b"CP1:" + password).decode("ascii")
        self.assertEqual(request.headers["authorization"], expected)

    def test_basic_authorization_encodes_str_as_utf8(self):
        self.assertEqual(sim.basic_authorization("Aladdin", "open sesame"), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
        self.assertEqual(
            sim.basic_authorization("test", "123\u00a3"),
            "Basic " + base64.b64encode("test:123\u00a3".encode("utf-8")).decode("ascii"),
        )

    @inlineCallbacks
    def test_extra_headers_are_sent(self):
        yield self.connect(headers={"X-Charger": "yes"})
        self.assertEqual(self.server.requests[0].headers["x-charger"], "yes")

    @inlineCallbacks
    def assertRefusedWith(self, status, reason):
        self.server.deny = (status, reason)
        failure = yield self.assertFailure(sim.connect_charger(self.url, "CP1", timeout=5), sim.HandshakeRefused)
        self.assertEqual(failure.status, status)
        self.assertIn(reason, str(failure))

    def test_refused_404(self):
        return self.assertRefusedWith(404, "unknown charge point")

    def test_refused_401(self):
        return self.assertRefusedWith(401, "Unauthorized")

    def test_refused_400(self):
        return self.assertRefusedWith(400, "no supported subprotocol")

    def test_refused_status_parsed_from_both_autobahn_wordings(self):
        self.assertEqual(sim._status_from_reason("WebSocket connection upgrade failed [404]: Not Found"), 404)
        self.assertEqual(sim._status_from_reason("WebSocket connection upgrade failed (401 - Unauthorized)"), 401)
        self.assertIsNone(sim._status_from_reason("HTTP Upgrade header missing"))

    @inlineCallbacks
    def test_connection_refused_is_the_underlying_error(self):
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(self.server)
        number = port.getHost().port
        yield port.stopListening()
        yield self.assertFailure(sim.connect_charger(f"ws://127.0.0.1:{number}/", "CP1", timeout=5), ConnectionRefusedError)


class TlsTests(_PeerTestCase):
    """
    C{wss://} with a caller-supplied client TLS creator.
    """

    @inlineCallbacks
    def setUp(self):
        yield super().setUp()
        key_pem, self.cert_pem = _self_signed_pem("localhost")
        options = PrivateCertificate.loadPEM(key_pem + self.cert_pem).options()
        port = yield SSL4ServerEndpoint(reactor, 0, options, interface="127.0.0.1").listen(self.server)
        self.addCleanup(port.stopListening)
        self.wss_url = f"wss://127.0.0.1:{port.getHost().port}/ocpp/"

    @inlineCallbacks
    def test_wss_with_trusted_certificate(self):
        tls = optionsForClientTLS("localhost", trustRoot=Certificate.loadPEM(self.cert_pem))
        charger = yield sim.connect_charger(self.wss_url, "CP1", tls=tls, timeout=5)
        self.addCleanup(charger.close)
        result = yield charger.heartbeat()
        self.assertEqual(result, {"currentTime": CURRENT_TIME})

    @inlineCallbacks
    def test_untrusted_certificate_fails_with_the_tls_error(self):
        from OpenSSL.SSL import Error

        _, other_pem = _self_signed_pem("localhost")
        tls = optionsForClientTLS("localhost", trustRoot=Certificate.loadPEM(other_pem))
        yield self.assertFailure(sim.connect_charger(self.wss_url, "CP1", tls=tls, timeout=5), Error)


class _Mute(Protocol):
    """
    Accepts a TCP connection and never says a word.
    """

    def connectionMade(self):
        self.factory.connected.append(self)
        self.lost = Deferred()

    def connectionLost(self, reason):
        self.lost.callback(None)


class ConnectTimeoutTests(TestCase):
    """
    The opening handshake is bounded by C{timeout}.
    """

    @inlineCallbacks
    def test_silent_server_times_out(self):
        factory = Factory.forProtocol(_Mute)
        factory.connected = []
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        self.addCleanup(port.stopListening)
        url = f"ws://127.0.0.1:{port.getHost().port}/"
        yield self.assertFailure(sim.connect_charger(url, "CP1", timeout=0.3), sim.WaitTimeout)
        [server] = factory.connected
        yield server.lost


class CallTests(_PeerTestCase):
    """
    CP→CS CALLs and their answers.
    """

    @inlineCallbacks
    def test_call_returns_callresult_payload(self):
        charger = yield self.connect()
        result = yield charger.boot(firmwareVersion="1.2")
        self.assertEqual(result["status"], "Accepted")
        [frame] = self.server_side().received
        kind, unique_id, action, payload = json.loads(frame)
        self.assertEqual((kind, action), (2, "BootNotification"))
        self.assertEqual(len(unique_id), 36)
        self.assertEqual(payload, {"chargePointVendor": "Sim", "chargePointModel": "Sim-1", "firmwareVersion": "1.2"})
        self.assertEqual([direction for direction, _ in charger.frames], [sim.SENT, sim.RECEIVED])

    @inlineCallbacks
    def test_given_unique_id_is_used(self):
        charger = yield self.connect()
        yield charger.call("Heartbeat", {}, unique_id="x" * 40)
        self.assertEqual(json.loads(self.server_side().received[0])[1], "x" * 40)

    @inlineCallbacks
    def test_callerror_errbacks_with_code(self):
        self.server.replies["Authorize"] = sim.CallErrorReply("FormationViolation", "bad", {"field": "idTag"})
        charger = yield self.connect()
        error = yield self.assertFailure(charger.authorize("TAG"), sim.CallErrorReceived)
        self.assertEqual((error.code, error.description, error.details), ("FormationViolation", "bad", {"field": "idTag"}))

    @inlineCallbacks
    def test_unanswered_call_times_out(self):
        self.server.replies["Heartbeat"] = None
        charger = yield self.connect()
        error = yield self.assertFailure(charger.call("Heartbeat", {}, timeout=0.2), sim.CallTimeout)
        self.assertEqual(error.action, "Heartbeat")
        self.assertEqual(charger._pending, {})

    @inlineCallbacks
    def test_convenience_payloads(self):
        charger = yield self.connect()
        yield charger.status(1, "Charging", timestamp=CURRENT_TIME)
        yield charger.start_transaction(1, "TAG", 1000, timestamp=CURRENT_TIME, reservation_id=7)
        yield charger.meter_values(1, transaction_id=5, energy_wh=1500, currents=(16.0, 15.9, 16.1), power_w=11000, timestamp=CURRENT_TIME)
        yield charger.stop_transaction(5, 2000, timestamp=CURRENT_TIME, reason="Local")
        sent = [json.loads(frame)[2:] for frame in self.server_side().received]
        self.assertEqual(
            sent,
            [
                ["StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging", "timestamp": CURRENT_TIME}],
                ["StartTransaction", {"connectorId": 1, "idTag": "TAG", "meterStart": 1000, "timestamp": CURRENT_TIME, "reservationId": 7}],
                [
                    "MeterValues",
                    {
                        "connectorId": 1,
                        "transactionId": 5,
                        "meterValue": [
                            {
                                "timestamp": CURRENT_TIME,
                                "sampledValue": [
                                    {"value": "1500", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
                                    {"value": "16.0", "measurand": "Current.Import", "phase": "L1", "unit": "A"},
                                    {"value": "15.9", "measurand": "Current.Import", "phase": "L2", "unit": "A"},
                                    {"value": "16.1", "measurand": "Current.Import", "phase": "L3", "unit": "A"},
                                    {"value": "11000", "measurand": "Power.Active.Import", "unit": "W"},
                                ],
                            }
                        ],
                    },
                ],
                ["StopTransaction", {"transactionId": 5, "meterStop": 2000, "timestamp": CURRENT_TIME, "reason": "Local"}],
            ],
        )

    @inlineCallbacks
    def test_default_timestamp_is_utc_with_milliseconds(self):
        charger = yield self.connect()
        yield charger.start_transaction(1, "TAG", 0)
        timestamp = json.loads(self.server_side().received[0])[3]["timestamp"]
        self.assertRegex(timestamp, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

    @inlineCallbacks
    def test_send_raw_sends_exact_text(self):
        charger = yield self.connect()
        charger.send_raw('[2, "a", "Heartbeat"')
        # The answer to a later CALL proves the server has read the frame.
        yield charger.heartbeat()
        self.assertEqual(self.server_side().received[0], b'[2, "a", "Heartbeat"')
        self.assertEqual(charger.frames[0], (sim.SENT, '[2, "a", "Heartbeat"'))

    @inlineCallbacks
    def test_send_raw_bytes_can_be_invalid_utf8(self):
        charger = yield self.connect()
        charger.send_raw(b'"\xff"')
        self.assertEqual(charger.frames, [(sim.SENT, b'"\xff"')])
        # Autobahn's server fails the connection on invalid UTF-8 in a text
        # frame (RFC 6455 §8.1).
        was_clean, code, reason = yield charger.closed
        self.assertFalse(was_clean)


class ServerCallTests(_PeerTestCase):
    """
    CS→CP CALLs: default answers, custom handlers, waiting for them.
    """

    @inlineCallbacks
    def test_every_cs_to_cp_action_has_a_default_answer(self):
        charger = yield self.connect()
        self.assertLessEqual(sim.CS_TO_CP_ACTIONS, set(charger.handlers))
        server = self.server_side()
        for action in sorted(sim.CS_TO_CP_ACTIONS):
            answer = yield server.call(action, {})
            self.assertEqual(answer[0], sim.CALLRESULT, action)

    @inlineCallbacks
    def test_default_answers(self):
        charger = yield self.connect()
        server = self.server_side()
        answer = yield server.call("RemoteStartTransaction", {"idTag": "TAG", "connectorId": 1})
        self.assertEqual(answer[2], {"status": "Accepted"})
        answer = yield server.call("UnlockConnector", {"connectorId": 1})
        self.assertEqual(answer[2], {"status": "Unlocked"})
        answer = yield server.call("GetLocalListVersion", {})
        self.assertEqual(answer[2], {"listVersion": 0})
        unique_id, payload = yield charger.wait_for_call("RemoteStartTransaction")
        self.assertEqual((unique_id, payload), ("cs-1", {"idTag": "TAG", "connectorId": 1}))
        self.assertEqual([action for action, _ in charger.calls_received], ["RemoteStartTransaction", "UnlockConnector", "GetLocalListVersion"])

    @inlineCallbacks
    def test_configuration_round_trip(self):
        charger = yield self.connect()
        server = self.server_side()
        answer = yield server.call("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "60"})
        self.assertEqual(answer[2], {"status": "Accepted"})
        answer = yield server.call("ChangeConfiguration", {"key": "NumberOfConnectors", "value": "2"})
        self.assertEqual(answer[2], {"status": "Rejected"})
        answer = yield server.call("GetConfiguration", {"key": ["HeartbeatInterval", "NumberOfConnectors", "Nope"]})
        self.assertEqual(
            answer[2],
            {
                "configurationKey": [
                    {"key": "HeartbeatInterval", "readonly": False, "value": "60"},
                    {"key": "NumberOfConnectors", "readonly": True, "value": "1"},
                ],
                "unknownKey": ["Nope"],
            },
        )
        self.assertEqual(charger.configuration["HeartbeatInterval"], ("60", False))
        answer = yield server.call("GetConfiguration", {})
        self.assertEqual(len(answer[2]["configurationKey"]), len(charger.configuration))

    @inlineCallbacks
    def test_unknown_action_gets_not_implemented(self):
        yield self.connect()
        answer = yield self.server_side().call("FooBar", {})
        self.assertEqual(answer[:3], [sim.CALLERROR, "cs-1", "NotImplemented"])

    @inlineCallbacks
    def test_custom_handlers(self):
        charger = yield self.connect()
        charger.handlers["Reset"] = lambda payload: sim.CallErrorReply("NotSupported", "no")
        charger.handlers["TriggerMessage"] = lambda payload: succeed({"status": "Rejected"})
        charger.handlers["ClearCache"] = lambda payload: 1 / 0
        server = self.server_side()
        answer = yield server.call("Reset", {"type": "Hard"})
        self.assertEqual(answer, [sim.CALLERROR, "cs-1", "NotSupported", "no", {}])
        answer = yield server.call("TriggerMessage", {"requestedMessage": "Heartbeat"})
        self.assertEqual(answer[2], {"status": "Rejected"})
        answer = yield server.call("ClearCache", {})
        self.assertEqual(answer[2], "InternalError")

    @inlineCallbacks
    def test_no_reply_leaves_call_unanswered(self):
        charger = yield self.connect()
        charger.handlers["Reset"] = lambda payload: sim.NO_REPLY
        server = self.server_side()
        waiting = charger.wait_for_call("Reset")
        yield self.assertFailure(server.call("Reset", {"type": "Soft"}, timeout=0.3), Exception)
        unique_id, payload = yield waiting
        self.assertEqual(payload, {"type": "Soft"})
        self.assertEqual([direction for direction, _ in charger.frames], [sim.RECEIVED])
        # The test can still answer by hand.
        charger.reply(unique_id, {"status": "Accepted"})
        # The answer to a later CALL proves the server has read the reply.
        frame = yield server.call("Heartbeat", {})
        self.assertEqual(json.loads(self.server_side().received[0]), [3, unique_id, {"status": "Accepted"}])
        self.assertEqual(frame[2], "NotImplemented")

    @inlineCallbacks
    def test_wait_for_call_times_out(self):
        charger = yield self.connect()
        yield self.assertFailure(charger.wait_for_call("Reset", timeout=0.1), sim.WaitTimeout)
        self.assertEqual(charger._call_waiters, [])

    @inlineCallbacks
    def test_wait_for_frame(self):
        charger = yield self.connect()
        waiting = charger.wait_for_frame(lambda text: '"Reset"' in text)
        self.server_side().send(["junk"])
        self.server_side().send([sim.CALL, "r1", "Reset", {"type": "Hard"}])
        text = yield waiting
        self.assertEqual(json.loads(text)[1], "r1")


def _profile(profile_id, purpose, limit, stack_level=0, transaction_id=None, periods=None, unit="A",
             start="2020-01-01T00:00:00Z"):
    """
    A csChargingProfiles object: Absolute from C{start}, one period of
    C{limit} unless C{periods} (C{[(startPeriod, limit)]}) are given.
    """
    profile = {
        "chargingProfileId": profile_id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {
            "startSchedule": start,
            "chargingRateUnit": unit,
            "chargingSchedulePeriod": [
                {"startPeriod": offset, "limit": amps} for offset, amps in (periods or [(0, limit)])
            ],
        },
    }
    if transaction_id is not None:
        profile["transactionId"] = transaction_id
    return profile


class BehaviourTests(_PeerTestCase):
    """
    The charger behaviours a test can switch on, and the charging profiles
    the simulator keeps.
    """

    @inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.server.replies["StartTransaction"] = {"transactionId": 7, "idTagInfo": {"status": "Accepted"}}
        self.server.replies["StopTransaction"] = {}

    def set_profile(self, connector, profile):
        return self.server_side().call("SetChargingProfile", {"connectorId": connector, "csChargingProfiles": profile})

    @inlineCallbacks
    def test_refuse_and_never_answer(self):
        charger = yield self.connect()
        charger.refuse("ChangeAvailability")
        charger.refuse("UnlockConnector", "UnlockFailed")
        charger.never_answer("RemoteStartTransaction")
        server = self.server_side()
        answer = yield server.call("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
        self.assertEqual(answer[2], {"status": "Rejected"})
        answer = yield server.call("UnlockConnector", {"connectorId": 1})
        self.assertEqual(answer[2], {"status": "UnlockFailed"})
        yield self.assertFailure(server.call("RemoteStartTransaction", {"idTag": "T"}, timeout=0.3), Exception)
        self.assertEqual([action for action, _ in charger.calls_received][-1], "RemoteStartTransaction")

    @inlineCallbacks
    def test_answer_after(self):
        """
        A slow charger answers as before, the given seconds later.
        """
        charger = yield self.connect()
        charger.refuse("ChangeAvailability")
        charger.answer_after("ChangeAvailability", 0.2)
        server = self.server_side()
        asked = reactor.seconds()
        answer = yield server.call("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
        self.assertEqual(answer[2], {"status": "Rejected"})
        self.assertGreaterEqual(reactor.seconds() - asked, 0.2)

    @inlineCallbacks
    def test_without_smart_charging(self):
        charger = yield self.connect()
        charger.without_smart_charging()
        server = self.server_side()
        answer = yield server.call("GetConfiguration", {"key": ["SupportedFeatureProfiles"]})
        [key] = answer[2]["configurationKey"]
        self.assertEqual(key["value"], "Core,FirmwareManagement,LocalAuthListManagement,Reservation,RemoteTrigger")
        for action in ("SetChargingProfile", "ClearChargingProfile", "GetCompositeSchedule"):
            answer = yield server.call(action, {})
            self.assertEqual(answer[:3], [sim.CALLERROR, answer[1], "NotSupported"], action)
        self.assertEqual(charger.charging_profiles, {})

    @inlineCallbacks
    def test_refuse_profiles(self):
        charger = yield self.connect()
        charger.refuse_profiles("TxProfile")
        answer = yield self.set_profile(1, _profile(1, "TxProfile", 0.0))
        self.assertEqual(answer[2], {"status": "Rejected"})
        answer = yield self.set_profile(1, _profile(2, "TxDefaultProfile", 10.0))
        self.assertEqual(answer[2], {"status": "Accepted"})
        self.assertEqual(list(charger.charging_profiles), [2])
        charger.refuse_profiles()
        answer = yield self.set_profile(1, _profile(2, "TxDefaultProfile", 12.0))
        self.assertEqual(answer[2], {"status": "Rejected"})
        self.assertEqual(charger.limit_in_force(1), 10.0)

    @inlineCallbacks
    def test_limit_in_force(self):
        """
        TxDefaultProfile until a transaction has its TxProfile, which ends
        with it; the ChargePointMaxProfile caps both; W become A per phase;
        the same purpose and stack level replaces a profile.
        """
        charger = yield self.connect()
        self.assertIsNone(charger.limit_in_force(1))
        yield self.set_profile(0, _profile(1, "TxDefaultProfile", 32.0))
        self.assertEqual(charger.limit_in_force(1), 32.0)
        yield self.set_profile(1, _profile(2, "TxDefaultProfile", 11040.0, unit="W"))
        self.assertEqual(charger.limit_in_force(1), 16.0)
        yield self.set_profile(1, _profile(3, "TxDefaultProfile", 14.0))
        self.assertEqual(sorted(charger.charging_profiles), [1, 3])
        yield self.set_profile(0, _profile(4, "ChargePointMaxProfile", 20.0))
        start = sim._timestamp(None, reactor)
        yield self.set_profile(1, _profile(5, "TxProfile", None, stack_level=5, transaction_id=7,
                                           periods=[(0, 0.0), (3600, 25.0)], start=start))
        self.assertEqual(charger.limit_in_force(1), 14.0)  # no transaction yet
        yield charger.start_transaction(1, "TAG", 0)
        self.assertEqual(charger.transactions[1][0], 7)
        self.assertEqual(charger.limit_in_force(1), 0.0)
        self.assertEqual(charger.limit_in_force(1, at=sim.timestamp_seconds(start) + 3601), 20.0)
        # before the TxProfile's schedule begins, the TxDefaultProfile holds
        self.assertEqual(charger.limit_in_force(1, at=sim.timestamp_seconds(start) - 10), 14.0)
        yield charger.stop_transaction(7, 100)
        self.assertEqual((charger.transactions, sorted(charger.charging_profiles)), ({}, [1, 3, 4]))
        self.assertEqual(charger.limit_in_force(1), 14.0)
        yield self.server_side().call("ClearChargingProfile", {"connectorId": 1})
        self.assertEqual(charger.limit_in_force(1), 20.0)
        yield self.server_side().call("ClearChargingProfile", {"id": 4})
        self.assertEqual(charger.limit_in_force(1), 32.0)

    @inlineCallbacks
    def test_remote_start_profile_is_the_next_transactions(self):
        charger = yield self.connect()
        yield self.set_profile(1, _profile(1, "TxDefaultProfile", 16.0))
        profile = _profile(2, "TxProfile", 6.0)
        answer = yield self.server_side().call(
            "RemoteStartTransaction", {"connectorId": 1, "idTag": "TAG", "chargingProfile": profile})
        self.assertEqual(answer[2], {"status": "Accepted"})
        self.assertEqual(charger.limit_in_force(1), 16.0)
        self.server.replies["StartTransaction"] = {"transactionId": 8, "idTagInfo": {"status": "Blocked"}}
        yield charger.start_transaction(1, "TAG", 0)
        self.assertEqual((charger.transactions, charger.limit_in_force(1)), ({}, 16.0))
        self.server.replies["StartTransaction"] = {"transactionId": 9, "idTagInfo": {"status": "Accepted"}}
        yield charger.start_transaction(1, "TAG", 0)
        self.assertEqual(charger.limit_in_force(1), 6.0)


class CloseTests(_PeerTestCase):
    """
    Closing from either side.
    """

    @inlineCallbacks
    def test_close_waits_for_the_tcp_connection(self):
        charger = yield self.connect()
        server = self.server_side()
        info = yield charger.close()
        self.assertEqual(info, (True, 1000, None))
        self.assertFalse(charger.is_open)
        yield server.lost
        yield self.assertFailure(charger.heartbeat(), sim.ConnectionClosed)

    @inlineCallbacks
    def test_server_close_fires_closed(self):
        charger = yield self.connect()
        self.server_side().sendClose(4000, "bye")
        info = yield charger.closed
        self.assertEqual(info, (True, 4000, "bye"))

    @inlineCallbacks
    def test_pending_call_fails_when_connection_drops(self):
        self.server.replies["Heartbeat"] = None
        charger = yield self.connect()
        pending = charger.heartbeat()
        self.server_side().transport.abortConnection()
        yield self.assertFailure(pending, sim.ConnectionClosed)
        self.assertEqual(charger.close_info[:2], (False, 1006))


class OcppLibPeerTests(_PeerTestCase):
    """
    L{ocpplib_peer} against the same answer server.
    """

    if not ocpplib_peer.ocpplib_available():
        skip = ocpplib_peer.SKIP_REASON

    @inlineCallbacks
    def start(self):
        peer = yield ocpplib_peer.start_ocpplib_charger(self.url, "LIB1", timeout=5)
        self.addCleanup(peer.close)
        return peer

    @inlineCallbacks
    def test_boot(self):
        from ocpp.v16 import call

        peer = yield self.start()
        self.assertEqual(peer.negotiated_protocol, "ocpp1.6")
        self.assertEqual(self.server.requests[0].path, "/ocpp/LIB1")
        result = yield peer.call(call.BootNotification(charge_point_vendor="Lib", charge_point_model="L-1"))
        self.assertEqual((result.status, result.interval), ("Accepted", 300))

    @inlineCallbacks
    def test_answers_server_calls(self):
        peer = yield self.start()
        server = self.server_side()
        answer = yield server.call("RemoteStartTransaction", {"idTag": "TAG", "connectorId": 1})
        self.assertEqual(answer[2], {"status": "Accepted"})
        kwargs = yield peer.wait_for("RemoteStartTransaction")
        self.assertEqual(kwargs, {"id_tag": "TAG", "connector_id": 1})
        self.assertEqual(peer.received, [("RemoteStartTransaction", kwargs)])

    @inlineCallbacks
    def test_callerror_is_none_when_suppressed(self):
        from ocpp.v16 import call

        self.server.replies["Heartbeat"] = sim.CallErrorReply("InternalError", "x")
        peer = yield self.start()
        result = yield peer.call(call.Heartbeat())
        self.assertIsNone(result)
