"""
Integration tests of the OCPP 1.6J central system: the real service on a
loopback port, simulated chargers talking to it over real WebSockets.
"""

import gc
import weakref
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from twisted.internet import defer, endpoints, protocol, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.fakes import FakeCentral
from tests.service import BASE_CONFIG, PASSWORD, reopen_store, start_service, write_config
from tests.sim import CallErrorReceived, HandshakeRefused, basic_authorization, connect_charger
from tests.test_domain import MemoryStore
from xxterocpp.config import parse_config
from xxterocpp.domain.central import CentralSystem
from xxterocpp.ocpp.server import (
    DROP_LOG_INTERVAL, HANDSHAKE_TIMEOUT, MAX_HANDSHAKES, MAX_HANDSHAKES_PER_ADDRESS, MAX_IDENTITY_LENGTH,
    MAX_REQUEST_HEAD, OcppServerFactory, OcppServerProtocol)


class HandshakeTests(TestCase):
    """
    OCPP-J §3: who may connect, and how.
    """

    @defer.inlineCallbacks
    def setUp(self):
        self.service = yield start_service(self)

    @defer.inlineCallbacks
    def connect(self, identity="CP1", **kwargs):
        cp = yield connect_charger(self.service.url, identity, **kwargs)
        self.addCleanup(cp.close)
        return cp

    @defer.inlineCallbacks
    def refused(self, identity="CP1", **kwargs):
        try:
            cp = yield connect_charger(self.service.url, identity, **kwargs)
        except HandshakeRefused as e:
            return e.status
        yield cp.close()
        self.fail("the handshake was accepted")

    @defer.inlineCallbacks
    def test_ocpp16_subprotocol_is_selected(self):
        """
        C{ocpp1.6} is answered when offered, also among other versions.
        """
        cp = yield self.connect(protocols=("ocpp2.0.1", "ocpp1.6", "ocpp1.5"))
        self.assertEqual(cp.negotiated_protocol, "ocpp1.6")
        result = yield cp.heartbeat()
        self.assertIn("currentTime", result)

    @defer.inlineCallbacks
    def test_no_subprotocol_header_is_accepted_as_16(self):
        """
        Real chargers (Grizzl-E) send no Sec-WebSocket-Protocol at all.
        """
        cp = yield self.connect(protocols=())
        self.assertIsNone(cp.negotiated_protocol)
        result = yield cp.boot()
        self.assertEqual(result["status"], "Accepted")

    @defer.inlineCallbacks
    def test_only_unsupported_subprotocols_get_400(self):
        """
        Offering only versions we do not speak is refused with 400.
        """
        status = yield self.refused(protocols=("ocpp2.0.1", "ocpp0.1"))
        self.assertEqual(status, 400)

    @defer.inlineCallbacks
    def test_unknown_identity_gets_404_and_is_recorded(self):
        """
        An unknown identity is refused with 404 and listed as trying to
        connect, with address and count, persisted across restarts.
        """
        self.assertEqual((yield self.refused("NOPE-42")), 404)
        self.assertEqual((yield self.refused("NOPE-42")), 404)
        entry = self.service.central.unknown["NOPE-42"]
        self.assertEqual(entry.count, 2)
        self.assertEqual(entry.address, "127.0.0.1")
        self.assertLessEqual(entry.first_seen, entry.last_seen)
        yield self.service.stopService()
        rows = reopen_store(self).load_unknown_chargers()
        self.assertEqual([(r.identity, r.count) for r in rows], [("NOPE-42", 2)])

    @defer.inlineCallbacks
    def test_identity_is_percent_decoded_after_any_prefix(self):
        """
        C{/ocpp/RDAM%20123} is the charger C{RDAM 123} (OCPP-J §3.1.1).
        """
        cp = yield connect_charger(self.service.url + "ocpp/some/prefix/", "RDAM 123",
                                   auth=("RDAM 123", bytes.fromhex(PASSWORD)))
        self.addCleanup(cp.close)
        self.assertTrue(self.service.central.chargers["RDAM 123"].connected)

    @defer.inlineCallbacks
    def test_identity_case_differs_from_configuration(self):
        """
        A charger whose UI changed the case of its id is still served.
        """
        yield self.connect("cp1")
        self.assertTrue(self.service.central.chargers["CP1"].connected)

    @defer.inlineCallbacks
    def test_basic_auth(self):
        """
        With a password: missing or wrong credentials get 401; the key is
        accepted as the raw bytes of its hex form or as the text itself.
        """
        self.assertEqual((yield self.refused("RDAM 123")), 401)
        self.assertEqual((yield self.refused("RDAM 123", auth=("RDAM 123", b"wrong"))), 401)
        self.assertEqual((yield self.refused("RDAM 123", auth=("OTHER", PASSWORD))), 401)
        self.assertEqual(self.service.ocpp_factory.auth_failures, 3)
        cp = yield self.connect("RDAM 123", auth=("RDAM 123", bytes.fromhex(PASSWORD)))
        yield cp.close()
        cp = yield self.connect("RDAM 123", auth=("RDAM 123", PASSWORD))
        result = yield cp.heartbeat()
        self.assertIn("currentTime", result)

    @defer.inlineCallbacks
    def test_new_connection_replaces_the_old(self):
        """
        A reconnect closes the previous connection; the new one is served.
        """
        first = yield self.connect()
        second = yield self.connect()
        was_clean, code, reason = yield first.closed
        self.assertEqual(code, 1000)
        result = yield second.heartbeat()
        self.assertIn("currentTime", result)
        charger = self.service.central.chargers["CP1"]
        self.assertEqual(charger.reconnects, 1)
        self.assertTrue(charger.connected)

    @defer.inlineCallbacks
    def test_reconnect_flood(self):
        """
        A charger reconnecting in a tight loop ends up with exactly one live
        connection, and no state is lost.
        """
        cp = yield self.connect()
        yield cp.start_transaction(1, "04A1B2C3", 100)
        chargers = [cp]
        for _ in range(30):
            chargers.append((yield self.connect()))
        for old in chargers[:-1]:
            yield old.closed
        result = yield chargers[-1].heartbeat()
        self.assertIn("currentTime", result)
        charger = self.service.central.chargers["CP1"]
        self.assertEqual(charger.reconnects, 30)
        self.assertIsNotNone(charger.connectors[1].transaction)


class ActionTests(TestCase):
    """
    Every CP→CS action over a real connection.
    """

    @defer.inlineCallbacks
    def setUp(self):
        self.service = yield start_service(self)
        self.central = self.service.central
        self.cp = yield connect_charger(self.service.url, "CP1")
        self.addCleanup(self.cp.close)

    @defer.inlineCallbacks
    def test_boot_notification(self):
        """
        Accepted with the configured heartbeat interval; the nameplate is
        kept and persisted.
        """
        result = yield self.cp.boot(vendor="Acme", model="Wallbox 22", firmwareVersion="1.2.3",
                                    chargePointSerialNumber="SN-0001")
        self.assertEqual(result["status"], "Accepted")
        self.assertEqual(result["interval"], 120)
        self.assertTrue(result["currentTime"].endswith("Z"))
        boot = self.central.chargers["CP1"].boot
        self.assertEqual((boot["vendor"], boot["model"], boot["firmware"], boot["serial"]),
                         ("Acme", "Wallbox 22", "1.2.3", "SN-0001"))
        yield self.service.stopService()
        self.assertEqual(reopen_store(self).load_settings()[("CP1", "boot")]["vendor"], "Acme")

    @defer.inlineCallbacks
    def test_heartbeat(self):
        """
        Heartbeat answers the current time.
        """
        before = datetime.now(timezone.utc)
        result = yield self.cp.heartbeat()
        after = datetime.now(timezone.utc)
        when = datetime.fromisoformat(result["currentTime"].replace("Z", "+00:00"))
        # Read around the call (no bound a slow machine breaks); a second of
        # slack for the service's clock, which follows the monotonic one.
        self.assertLessEqual(before - timedelta(seconds=1), when)
        self.assertLessEqual(when, after + timedelta(seconds=1))

    @defer.inlineCallbacks
    def test_status_notification(self):
        """
        The connector status and error code are tracked per connector, and
        connector 0 separately.
        """
        result = yield self.cp.status(1, "Faulted", "GroundFailure", info="x" * 80)
        self.assertEqual(result, {})
        yield self.cp.status(0, "Available")
        connector = self.central.chargers["CP1"].connectors[1]
        self.assertEqual((connector.status, connector.error_code), ("Faulted", "GroundFailure"))
        self.assertEqual(connector.info, "x" * 80)
        self.assertEqual(self.central.chargers["CP1"].status, "Available")

    @defer.inlineCallbacks
    def test_authorize(self):
        """
        Authorize follows the tag registry and C{allowed_tags}.
        """
        for tag, status in [("04a1b2c3", "Accepted"), ("ANYTHING", "Accepted"),
                            ("BLOCKED1", "Blocked"), ("OLDTAG", "Expired"),
                            ("XXTER", "Accepted")]:
            result = yield self.cp.authorize(tag)
            self.assertEqual(result["idTagInfo"]["status"], status, tag)

    @defer.inlineCallbacks
    def test_authorize_on_charger_with_a_tag_list(self):
        """
        A charger with an explicit list refuses other tags; a parent in the
        list admits its children.
        """
        twin = yield connect_charger(self.service.url, "TWIN")
        self.addCleanup(twin.close)
        for tag, status in [("04A1B2C3", "Accepted"), ("STRANGER", "Invalid"),
                            ("CHILD", "Accepted"), ("BLOCKED1", "Blocked")]:
            result = yield twin.authorize(tag)
            self.assertEqual(result["idTagInfo"]["status"], status, tag)
        result = yield twin.authorize("CHILD")
        self.assertEqual(result["idTagInfo"]["parentIdTag"], "FAMILY")

    @defer.inlineCallbacks
    def test_transaction_lifecycle(self):
        """
        Start, meter and stop: unique id, live readings, session energy.
        """
        start = yield self.cp.start_transaction(1, "04A1B2C3", 12000,
                                                timestamp="2026-03-01T10:00:00+01:00")
        self.assertEqual(start["idTagInfo"]["status"], "Accepted")
        tx_id = start["transactionId"]
        connector = self.central.chargers["CP1"].connectors[1]
        self.assertEqual(connector.transaction.id, tx_id)
        self.assertEqual(connector.transaction.start_time,
                         datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc))
        yield self.cp.meter_values(1, tx_id, energy_wh=13.5, unit="kWh",
                                   currents=(15.9, 16.1, 15.7), power_w=11000)
        self.assertEqual(connector.energy_register_wh, 13500)
        self.assertEqual(connector.current, 16.1)
        self.assertEqual(connector.power_w, 11000)
        self.assertEqual(connector.transaction.energy_wh, 1500)
        result = yield self.cp.stop_transaction(tx_id, 14250, reason="EVDisconnected",
                                                id_tag="04A1B2C3")
        self.assertEqual(result["idTagInfo"]["status"], "Accepted")
        self.assertIsNone(connector.transaction)
        self.assertEqual(connector.current, 0.0)
        records = yield self.service.store.query_transactions(charger_id="CP1")
        self.assertEqual([(r.id, r.meter_start, r.meter_stop, r.stop_reason, r.energy_wh)
                          for r in records], [(tx_id, 12000, 14250, "EVDisconnected", 2250)])

    @defer.inlineCallbacks
    def test_transaction_ids_unique_and_retry_idempotent(self):
        """
        Every StartTransaction gets a new id, except a retried identical one,
        which gets the same id and books nothing twice.
        """
        a = yield self.cp.start_transaction(1, "04A1B2C3", 0, timestamp="2026-03-01T10:00:00Z")
        again = yield self.cp.start_transaction(1, "04A1B2C3", 0,
                                                timestamp="2026-03-01T10:00:00Z")
        self.assertEqual(a["transactionId"], again["transactionId"])
        twin = yield connect_charger(self.service.url, "TWIN")
        self.addCleanup(twin.close)
        b = yield twin.start_transaction(2, "XXTER", 0)
        self.assertNotEqual(a["transactionId"], b["transactionId"])
        records = yield self.service.store.query_transactions()
        self.assertEqual(len(records), 2)

    @defer.inlineCallbacks
    def test_start_transaction_statuses(self):
        """
        A StartTransaction is always answered with an id; the verdict says
        Invalid, Blocked or ConcurrentTx where it applies.
        """
        twin = yield connect_charger(self.service.url, "TWIN")
        self.addCleanup(twin.close)
        blocked = yield self.cp.start_transaction(1, "BLOCKED1", 0)
        self.assertEqual(blocked["idTagInfo"]["status"], "Blocked")
        self.assertIsInstance(blocked["transactionId"], int)
        invalid = yield twin.start_transaction(1, "STRANGER", 0)
        self.assertEqual(invalid["idTagInfo"]["status"], "Invalid")
        yield self.cp.start_transaction(1, "04A1B2C3", 10)
        concurrent = yield twin.start_transaction(2, "04A1B2C3", 10)
        self.assertEqual(concurrent["idTagInfo"]["status"], "ConcurrentTx")

    @defer.inlineCallbacks
    def test_stop_transaction_unknown_id_is_acknowledged(self):
        """
        A StopTransaction for a transaction nobody knows, or one already
        stopped, is acknowledged and recorded, never refused.
        """
        result = yield self.cp.stop_transaction(987654, 5000)
        self.assertEqual(result, {})
        start = yield self.cp.start_transaction(1, "04A1B2C3", 100)
        yield self.cp.stop_transaction(start["transactionId"], 200)
        again = yield self.cp.stop_transaction(start["transactionId"], 300)
        self.assertEqual(again, {})
        orphans = yield self.service.store.query_orphan_stops(10)
        self.assertEqual(sorted((o.transaction_id, o.note) for o in orphans),
                         [(start["transactionId"], "already stopped"), (987654, "unknown")])
        records = yield self.service.store.query_transactions()
        self.assertEqual(records[0].meter_stop, 200)

    @defer.inlineCallbacks
    def test_stop_transaction_with_transaction_data_and_overlong_tag(self):
        """
        transactionData readings are used, and an idTag with garbage bytes
        (Ocular LTE echoes two extra bytes) does not stop the stop.
        """
        start = yield self.cp.start_transaction(1, "04A1B2C3", 1000)
        data = [{"timestamp": "2026-03-01T11:00:00Z", "context": "Transaction.End",
                 "sampledValue": [{"value": "3.0", "unit": "kWh",
                                   "measurand": "Energy.Active.Import.Register"}]}]
        result = yield self.cp.stop_transaction(start["transactionId"], 3000,
                                                id_tag="04A1B2C3" + "\x10\x0e" + "Z" * 14,
                                                transaction_data=data)
        self.assertEqual(result["idTagInfo"]["status"], "Accepted")
        records = yield self.service.store.query_transactions()
        self.assertEqual(records[0].energy_wh, 2000)

    @defer.inlineCallbacks
    def test_meter_values_after_stop_do_not_change_the_session(self):
        """
        Closing meter values that arrive after StopTransaction are
        acknowledged; the booked session keeps its energy.
        """
        start = yield self.cp.start_transaction(1, "04A1B2C3", 1000)
        yield self.cp.stop_transaction(start["transactionId"], 1500)
        result = yield self.cp.meter_values(1, start["transactionId"], energy_wh=1600)
        self.assertEqual(result, {})
        records = yield self.service.store.query_transactions()
        self.assertEqual(records[0].energy_wh, 500)

    @defer.inlineCallbacks
    def test_meter_values_storm_is_group_committed(self):
        """
        A burst of MeterValues is acknowledged in full and written in a few
        batched commits, not one fsync per message; the last reading wins.
        """
        start = yield self.cp.start_transaction(1, "04A1B2C3", 0)
        tx_id = start["transactionId"]
        commits = self.service.store.commits
        results = yield defer.gatherResults([
            self.cp.meter_values(1, tx_id, energy_wh=wh, currents=(16, 16, 16))
            for wh in range(1, 301)])
        self.assertEqual(results, [{}] * 300)
        # Measured: 1-2 commits for the 300 (7-9 for 1,000), both stacks.
        self.assertLess(self.service.store.commits - commits, 30)
        records = yield self.service.store.query_transactions()
        self.assertEqual(records[0].last_meter_wh, 300)

    @defer.inlineCallbacks
    def test_meter_values_tolerance(self):
        """
        Celcius, Hertz, L1-N phases, empty strings and per-phase-only energy
        are all acknowledged; what can be read is used.
        """
        payload = {"connectorId": 1, "meterValue": [{
            "timestamp": "2026-03-01T10:00:00",
            "sampledValue": [
                {"value": "21.5", "measurand": "Temperature", "unit": "Celcius"},
                {"value": "22", "measurand": "Temperature", "unit": "Celsius"},
                {"value": "", "measurand": "Voltage", "unit": "V"},
                {"value": " 7.5 ", "measurand": "Current.Import", "phase": "L1-N", "unit": "A"},
                {"value": "0.3", "measurand": "Current.Import", "phase": "N", "unit": "A"},
                {"value": "100", "measurand": "Energy.Active.Import.Register", "phase": "L1"},
                {"value": "200", "measurand": "Energy.Active.Import.Register", "phase": "L2"},
            ]}]}
        result = yield self.cp.call("MeterValues", payload)
        self.assertEqual(result, {})
        connector = self.central.chargers["CP1"].connectors[1]
        self.assertEqual(connector.currents, {"L1": 7.5})
        self.assertEqual(connector.energy_register_wh, 300)

    @defer.inlineCallbacks
    def test_notifications_are_acknowledged(self):
        """
        Firmware, diagnostics, log, signed-firmware and security
        notifications get their empty confirmations; SignCertificate is
        refused (no charger-signing CA here), DataTransfer from an unknown
        vendor says so.
        """
        calls = [
            ("DiagnosticsStatusNotification", {"status": "Uploaded"}, {}),
            ("FirmwareStatusNotification", {"status": "Installed"}, {}),
            ("LogStatusNotification", {"status": "Uploaded", "requestId": 1}, {}),
            ("SignedFirmwareStatusNotification", {"status": "Installed", "requestId": 2}, {}),
            ("SecurityEventNotification",
             {"type": "InvalidCentralSystemCertificate", "timestamp": "2026-03-01T10:00:00Z"},
             {}),
            ("SignCertificate", {"csr": "-----BEGIN CERTIFICATE REQUEST-----"},
             {"status": "Rejected"}),
            ("DataTransfer", {"vendorId": "com.example", "messageId": "x", "data": "y"},
             {"status": "UnknownVendorId"}),
        ]
        for action, payload, expected in calls:
            result = yield self.cp.call(action, payload)
            self.assertEqual(result, expected, action)
        charger = self.central.chargers["CP1"]
        self.assertEqual(charger.notifications["FirmwareStatusNotification"][1], "Installed")
        self.assertEqual(charger.security_events[0][1], "InvalidCentralSystemCertificate")

    @defer.inlineCallbacks
    def test_callerror_codes(self):
        """
        Each kind of bad CALL gets its CALLERROR code and the connection
        stays up.
        """
        cases = [
            ("FooBar", {}, "NotImplemented"),
            ("RemoteStartTransaction", {"idTag": "X"}, "NotSupported"),
            ("Heartbeat", {"unexpected": True}, "FormationViolation"),
            ("Heartbeat", [], "FormationViolation"),
            ("Authorize", {}, "ProtocolError"),
            ("BootNotification", {"chargePointVendor": 1, "chargePointModel": "M"},
             "TypeConstraintViolation"),
            ("StatusNotification", {"connectorId": -1, "errorCode": "NoError",
                                    "status": "Available"}, "PropertyConstraintViolation"),
            ("StartTransaction", {"connectorId": 1, "idTag": "A", "meterStart": 0,
                                  "timestamp": "yesterday"}, "PropertyConstraintViolation"),
        ]
        for action, payload, code in cases:
            try:
                yield self.cp.call(action, payload)
            except CallErrorReceived as e:
                self.assertEqual(e.code, code, (action, payload))
            else:
                self.fail(f"{action} {payload} was accepted")
        self.assertTrue(self.cp.is_open)
        result = yield self.cp.heartbeat()
        self.assertIn("currentTime", result)

    @defer.inlineCallbacks
    def test_timestamp_without_zone_is_taken_as_utc(self):
        """
        Growatt sends local times without a zone: accepted, read as UTC.
        """
        start = yield self.cp.start_transaction(1, "04A1B2C3", 0, timestamp="2026-03-01T10:00:00")
        tx = self.central.chargers["CP1"].connectors[1].transaction
        self.assertEqual(tx.id, start["transactionId"])
        self.assertEqual(tx.start_time, datetime(2026, 3, 1, 10, 0, tzinfo=timezone.utc))

    @defer.inlineCallbacks
    def test_charger_without_boot_after_reconnect_is_served(self):
        """
        OCPP-J §5.4: a reconnecting charger need not boot again; its calls
        are served straight away.
        """
        start = yield self.cp.start_transaction(1, "04A1B2C3", 0)
        yield self.cp.close()
        cp = yield connect_charger(self.service.url, "CP1")
        self.addCleanup(cp.close)
        result = yield cp.stop_transaction(start["transactionId"], 700)
        self.assertEqual(result, {})
        records = yield self.service.store.query_transactions()
        self.assertEqual(records[0].energy_wh, 700)

    @defer.inlineCallbacks
    def test_frames_are_kept_for_the_status_page(self):
        """
        The last OCPP frames of a charger are kept, both directions.
        """
        yield self.cp.heartbeat()
        frames = self.central.chargers["CP1"].frames
        self.assertEqual([d for _, d, _ in frames][-2:], ["in", "out"])
        self.assertIn('"Heartbeat"', frames[-2][2])



class ClosedConnectionTests(TestCase):
    """
    A connection that is over is freed by reference counting alone.
    """

    @defer.inlineCallbacks
    def test_closed_connection_is_freed_without_the_cycle_collector(self):
        """
        With the cyclic garbage collector off, the server's protocol and
        session of a charger that disconnected are freed once it is gone:
        nothing of theirs waits for a full collection.
        """
        service = yield start_service(self)
        cp = yield connect_charger(service.url, "CP1")
        yield cp.boot()
        yield cp.heartbeat()
        session = service.central.chargers["CP1"].session
        dead = [weakref.ref(session), weakref.ref(session._send.__self__)]
        del session
        gc.collect()
        gc.disable()
        self.addCleanup(gc.enable)
        yield cp.close()
        for _ in range(100):
            if all(ref() is None for ref in dead):
                break
            yield deferLater(reactor, 0.05, lambda: None)
        self.assertFalse(service.central.chargers["CP1"].connected)
        self.assertEqual([ref() for ref in dead], [None, None])


class _SilentPeer(protocol.Protocol):
    """
    Completes the WebSocket handshake, then never answers anything: a
    half-open connection as a charger that lost power leaves it.
    """

    def __init__(self):
        self.received = b""
        self.lost = defer.Deferred()

    def connectionMade(self):
        self.transport.write(
            b"GET /CP1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n\r\n")

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.lost.callback(None)


class PingTests(TestCase):
    """
    Server WebSocket pings (C{ping_interval}) find half-open connections.
    """

    @defer.inlineCallbacks
    def test_peer_not_answering_pings_is_dropped(self):
        """
        With pings every second, a peer that never pongs is disconnected
        within about 1.5 s; a charger that answers stays connected.
        """
        path = write_config(self, BASE_CONFIG.replace("ping_interval = 0", "ping_interval = 1"))
        service = yield start_service(self, path)
        port = int(service.url.rsplit(":", 1)[1].strip("/"))
        silent = _SilentPeer()
        yield endpoints.connectProtocol(
            endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port), silent)
        twin = yield connect_charger(service.url, "TWIN")
        self.addCleanup(twin.close)
        timeout = reactor.callLater(10, silent.lost.cancel)
        yield silent.lost
        timeout.cancel()
        self.assertIn(b"101 Switching Protocols", silent.received)
        self.assertIn(b"\x89", silent.received.split(b"\r\n\r\n", 1)[1])
        self.assertFalse(service.central.chargers["CP1"].connected)
        yield deferLater(reactor, 1.2, lambda: None)
        self.assertTrue(twin.is_open)
        result = yield twin.heartbeat()
        self.assertIn("currentTime", result)


def _upgrade(path, **headers):
    """
    A WebSocket upgrade request for C{path}, as bytes.
    """
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
             "Sec-WebSocket-Version: 13"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class HandshakeLimitTests(SynchronousTestCase):
    """
    The bounds on connections before their WebSocket handshake is over, on
    an L{OcppServerFactory} with fake transports and a fake clock.
    """

    def setUp(self):
        self.clock = Clock()
        self.central = FakeCentral()
        self.factory = OcppServerFactory(self.central, self.clock, ping_interval=0)

    def connect(self, host="10.0.0.1"):
        address = IPv4Address("TCP", host, 40000)
        protocol = self.factory.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        return protocol, transport

    def test_connections_beyond_the_cap_of_an_address_are_dropped(self):
        """
        The 17th connection in its handshake from one address is dropped as
        soon as accepted; another address is still served.
        """
        held = [self.connect() for _ in range(MAX_HANDSHAKES_PER_ADDRESS)]
        self.assertFalse(any(t.disconnecting for _, t in held))
        _, dropped = self.connect()
        self.assertTrue(dropped.disconnecting)
        _, other = self.connect("10.0.0.2")
        self.assertFalse(other.disconnecting)
        self.assertEqual((self.factory.handshakes, self.factory.dropped_connections),
                         (MAX_HANDSHAKES_PER_ADDRESS + 1, 1))

    def test_connections_beyond_the_total_cap_are_dropped(self):
        """
        At most L{MAX_HANDSHAKES} connections are in their handshake, from
        however many addresses: with one each, a new address is dropped.
        """
        for i in range(MAX_HANDSHAKES):
            _, transport = self.connect(f"10.0.{i // 256}.{i % 256}")
            self.assertFalse(transport.disconnecting)
        _, dropped = self.connect("10.1.0.1")
        self.assertTrue(dropped.disconnecting)
        self.assertEqual(self.factory.handshakes, MAX_HANDSHAKES)

    def test_full_slots_are_shared_by_the_addresses(self):
        """
        All slots taken by 16 addresses: a new address gets the slot of the
        oldest handshake of the address with the most; one with a share as
        large as the others' gets none.
        """
        held = {f"10.0.0.{a}": [self.connect(f"10.0.0.{a}") for _ in range(
            MAX_HANDSHAKES // 16)] for a in range(15)}
        held["10.0.0.15"] = [self.connect("10.0.0.15") for _ in range(MAX_HANDSHAKES // 16 + 1)]
        self.assertTrue(held["10.0.0.15"][-1][1].disconnecting)
        _, newcomer = self.connect("10.2.0.1")
        self.assertFalse(newcomer.disconnecting)
        self.assertTrue(held["10.0.0.0"][0][1].disconnecting)
        self.assertFalse(held["10.0.0.0"][1][1].disconnecting)
        self.assertEqual(self.factory.handshakes, MAX_HANDSHAKES)
        # 10.0.0.0 has one fewer than the others now: none gives it a slot.
        _, again = self.connect("10.0.0.0")
        self.assertTrue(again.disconnecting)
        self.assertEqual(self.factory.dropped_connections, 3)

    def test_caps_grow_with_max_chargers(self):
        """
        All chargers of a site behind one NAT address may reconnect at once:
        twice [ocpp] max_chargers per address, four times in all.
        """
        self.assertEqual(self.factory.handshake_limits(),
                         (MAX_HANDSHAKES_PER_ADDRESS, MAX_HANDSHAKES))
        self.central.config = parse_config("[ocpp]\nmax_chargers = 1000\n")
        self.assertEqual(self.factory.handshake_limits(), (2000, 4000))

    def test_a_lost_connection_gives_its_slot_back(self):
        """
        When a connection in its handshake goes away, its address may
        connect again; an address with none left is forgotten.
        """
        held = [self.connect() for _ in range(MAX_HANDSHAKES_PER_ADDRESS)]
        held[0][0].connectionLost(protocol.connectionDone)
        _, transport = self.connect()
        self.assertFalse(transport.disconnecting)
        for p, _ in held[1:]:
            p.connectionLost(protocol.connectionDone)
        self.assertEqual(self.factory.handshakes, 1)
        self.assertEqual(self.factory._handshaking.held("10.0.0.1"), 1)

    def test_handshake_not_over_in_time_is_aborted(self):
        """
        L{HANDSHAKE_TIMEOUT} seconds after accept, a connection still in its
        handshake (an idle socket, a slow sender) is aborted.
        """
        p, transport = self.connect()
        p.dataReceived(b"GET /CP1 HTTP/1.1\r\n")
        self.clock.advance(HANDSHAKE_TIMEOUT - 0.1)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(transport.disconnecting)
        p.connectionLost(protocol.connectionDone)
        self.assertEqual((self.factory.handshakes, self.clock.getDelayedCalls()), (0, []))
        self.assertEqual(self.factory.dropped_connections, 1)

    def test_refused_handshake_keeps_its_slot_until_gone(self):
        """
        A refused handshake (404) holds its slot until the connection is
        really gone, the deadline included (a TLS peer may never confirm
        the close).
        """
        p, transport = self.connect()
        p.dataReceived(_upgrade("/NOPE"))
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 404 "))
        self.assertEqual(self.factory.handshakes, 1)
        self.clock.advance(HANDSHAKE_TIMEOUT)
        p.connectionLost(protocol.connectionDone)
        self.assertEqual(self.factory.handshakes, 0)

    def test_request_head_beyond_8_kib_gets_431(self):
        """
        More than L{MAX_REQUEST_HEAD} bytes without the end of the headers:
        431 and closed; what follows is not kept.
        """
        p, transport = self.connect()
        p.dataReceived(b"GET /CP1 HTTP/1.1\r\nX-Junk: ")
        for _ in range(MAX_REQUEST_HEAD // 1000):
            p.dataReceived(b"a" * 1000)
        self.assertEqual(transport.value(), b"")
        p.dataReceived(b"a" * 1000)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 431 "), transport.value())
        self.assertTrue(transport.disconnecting)
        p.dataReceived(b"a" * 100000)
        self.assertLessEqual(len(p.data), MAX_REQUEST_HEAD)

    def test_request_head_within_8_kib_is_read(self):
        """
        A head of up to L{MAX_REQUEST_HEAD} bytes is served, also when more
        data follows its end in the same read.
        """
        head = _upgrade("/NOPE")
        head = head[:-2] + b"X-Pad: " + b"p" * (MAX_REQUEST_HEAD - len(head) - 9) + b"\r\n\r\n"
        self.assertEqual(len(head), MAX_REQUEST_HEAD)
        p, transport = self.connect()
        p.dataReceived(head + b"\x81\x80" * 5000)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 404 "), transport.value())

    def test_identity_longer_than_255_characters_gets_400(self):
        """
        Over L{MAX_IDENTITY_LENGTH} characters after percent-decoding: 400,
        never recorded as an unknown charger nor logged.
        """
        with capturedLogs() as events:
            for identity, status in (("A" * MAX_IDENTITY_LENGTH, b"404"),
                                     ("%C3%A9" * MAX_IDENTITY_LENGTH, b"404"),
                                     ("A" * (MAX_IDENTITY_LENGTH + 1), b"400"),
                                     ("%41" * (MAX_IDENTITY_LENGTH + 1), b"400")):
                p, transport = self.connect()
                p.dataReceived(_upgrade("/ocpp/" + identity))
                self.assertTrue(transport.value().startswith(b"HTTP/1.1 " + status + b" "),
                                (identity, transport.value()))
        self.assertEqual([len(i) for i, address in self.central.unknown_attempts.recorded],
                         [MAX_IDENTITY_LENGTH] * 2)
        self.assertFalse([e for e in events if "A" * (MAX_IDENTITY_LENGTH + 1) in repr(e)])

    def test_refused_handshakes_are_logged_once_per_address_and_interval(self):
        """
        One line for 20 refused handshakes of an address (Autobahn's two
        lines for each are not written), one for another address; after
        10 s the next line counts those in between.
        """
        with capturedLogs() as events:
            for _ in range(10):
                for path, protocols in (("/" + "A" * 300, "ocpp1.6"), ("/NOPE", "ocpp2.0.1")):
                    p, transport = self.connect()
                    p.dataReceived(_upgrade(path, **{"Sec-WebSocket-Protocol": protocols}))
                    self.assertTrue(transport.value().startswith(b"HTTP/1.1 400 "))
                    p.connectionLost(protocol.connectionDone)
            self.connect("10.0.0.2")[0].dataReceived(b"GET /CP1 HTTP/1.1\r\nHost: a\r\n\r\n")
            self.clock.advance(DROP_LOG_INTERVAL)
            self.connect()[0].dataReceived(_upgrade("/" + "A" * 300))
        lines = [formatEvent(e) for e in events]
        self.assertEqual(len(lines), 3, lines)
        self.assertIn("handshake from 10.0.0.1 refused with 400: Charger identity longer than"
                      " 255 characters", lines[0])
        self.assertIn("handshake from 10.0.0.2 refused with 4", lines[1])
        self.assertIn("(19 more refused from this address since the last such line)", lines[2])

    def test_subprotocol_refusal_names_identity_and_offer(self):
        with capturedLogs() as events:
            self.connect()[0].dataReceived(
                _upgrade("/NOPE", **{"Sec-WebSocket-Protocol": "ocpp2.0.1, ocpp0.1"}))
        [line] = [formatEvent(e) for e in events]
        self.assertIn("refused with 400: 'NOPE' offered only ocpp2.0.1,ocpp0.1", line)

    def test_dropped_connections_are_logged_once_per_interval(self):
        """
        A flood is one warning, then one per 10 s with the count of the
        connections dropped in between (here 49 over the cap, and the 16
        held ones at their deadline).
        """
        held = [self.connect()[0] for _ in range(MAX_HANDSHAKES_PER_ADDRESS)]
        with capturedLogs() as events:
            for _ in range(50):
                self.connect()
            self.clock.advance(HANDSHAKE_TIMEOUT)
            for p in held:
                p.connectionLost(protocol.connectionDone)
            self.clock.advance(DROP_LOG_INTERVAL - HANDSHAKE_TIMEOUT)
            for _ in range(MAX_HANDSHAKES_PER_ADDRESS + 1):
                self.connect()
        lines = [e for e in events if "dropped" in e.get("log_format", "")]
        self.assertEqual(len(lines), 2)
        self.assertEqual(lines[0]["address"], "10.0.0.1")
        self.assertIn("from this address", lines[0]["why"])
        self.assertIn("65 more dropped", lines[1]["since"])
        self.assertEqual(self.factory.dropped_connections, 67)


class AuthenticationThrottleTests(SynchronousTestCase):
    """
    Failed authentications at the handshake, on an L{OcppServerFactory}
    with the real domain, fake transports and a fake clock.
    """

    def setUp(self):
        self.clock = Clock()
        config = parse_config(BASE_CONFIG.format(
            database="state.sqlite3", password=PASSWORD, knxd="", max_chargers=4))
        self.central = CentralSystem(config, MemoryStore(), self.clock)
        self.factory = OcppServerFactory(self.central, self.clock, ping_interval=0)

    def handshake(self, password, host="10.0.0.1", identity="RDAM 123"):
        """
        @return: the status line and headers of the answer to a handshake
            as C{identity} with C{password}.
        """
        address = IPv4Address("TCP", host, 40000)
        p = self.factory.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        p.makeConnection(transport)
        p.dataReceived(_upgrade("/" + quote(identity),
                                Authorization=basic_authorization(identity, password)))
        head = transport.value().split(b"\r\n\r\n")[0]
        p.connectionLost(protocol.connectionDone)
        return head

    def test_ten_failures_a_minute_then_refused_unheard(self):
        """
        After 10 wrong passwords from an address within 60 s, the charger's
        right password from there gets 429 too, with Retry-After, until 60
        s after the first failure; another address, or another charger
        from the same one, is served. Two log lines for the burst.
        """
        with capturedLogs() as events:
            for _ in range(10):
                self.assertTrue(self.handshake(b"guess").startswith(b"HTTP/1.1 401 "))
                self.clock.advance(1)
            for password in (b"guess", PASSWORD):
                head = self.handshake(password)
                self.assertTrue(head.startswith(b"HTTP/1.1 429 "), head)
                self.assertIn(b"Retry-After: 50", head)
            self.assertTrue(self.handshake(PASSWORD, "10.0.0.2").startswith(b"HTTP/1.1 101 "))
            self.assertTrue(self.handshake(b"", identity="CP1").startswith(b"HTTP/1.1 101 "))
            self.clock.advance(50)
            self.assertTrue(self.handshake(PASSWORD).startswith(b"HTTP/1.1 101 "))
        self.assertEqual(self.factory.auth_failures, 12)
        lines = [formatEvent(e) for e in events if e.get("log_level") == LogLevel.warn]
        self.assertEqual(len(lines), 2, lines)
        self.assertIn("RDAM 123: connection from 10.0.0.1 refused: wrong password", lines[0])
        self.assertIn("10 failed authentications from 10.0.0.1 within 60 s", lines[1])
        self.assertFalse([line for line in lines if "guess" in line])

    def test_a_401_challenges_for_basic_auth(self):
        """
        The challenge names the realm and UTF-8 (RFC 7617).
        """
        self.assertIn(b'WWW-Authenticate: Basic realm="OCPP", charset="UTF-8"',
                      self.handshake(b"guess"))

    def test_identity_matching_folds_ascii_case_only(self):
        """
        C{rdam 123} is C{RDAM 123}; C{cp1} is C{CP1}; an identity whose
        full Unicode case folding is C{cp1} is unknown.
        """
        self.assertTrue(self.handshake(PASSWORD, identity="rdam 123").startswith(
            b"HTTP/1.1 101 "))
        self.assertEqual(self.central.connections.lookup("cp1"), "CP1")
        self.assertIsNone(self.central.connections.lookup("\u0441p1"))


class CompressionOfferTests(SynchronousTestCase):
    """
    A charger offering permessage-deflate (many WebSocket libraries do) on
    an L{OcppServerFactory} with a fake transport: the connection opens
    without it. The option that refuses it is a function the factory's
    connections hold as a class attribute (L{OcppServerFactory.buildProtocol});
    called as a method it failed every such handshake.
    """

    def test_offer_refused_connection_opened(self):
        clock = Clock()
        clock.advance(1_800_000_000)
        central = CentralSystem(parse_config(BASE_CONFIG.format(
            database="state.sqlite3", password=PASSWORD, knxd="", max_chargers=4)),
            MemoryStore(), clock)
        central.load()
        self.addCleanup(central.shutdown)
        factory = OcppServerFactory(central, clock, ping_interval=0)
        address = IPv4Address("TCP", "127.0.0.1", 40000)
        connection = factory.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        connection.makeConnection(transport)
        with capturedLogs() as events:
            connection.dataReceived("\r\n".join([
                "GET /CP1 HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket",
                "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: ocpp1.6",
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
                "", ""]).encode())
        answer = transport.value()
        self.assertTrue(answer.startswith(b"HTTP/1.1 101 "), answer)
        self.assertNotIn(b"sec-websocket-extensions", answer.lower())
        self.assertEqual([e for e in events if e.get("log_failure")], [])
        connection.connectionLost(protocol.connectionDone)


class OptionsChangedTests(SynchronousTestCase):
    """
    The factory's Autobahn options changed while connections exist
    (L{OcppServerFactory.buildProtocol} holds them as class attributes):
    a connection keeps those it was built with, a newer one gets the new
    ones, as with Autobahn's copy into each connection.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.central = CentralSystem(parse_config(BASE_CONFIG.format(
            database="state.sqlite3", password=PASSWORD, knxd="", max_chargers=4)),
            MemoryStore(), self.clock)
        self.central.load()
        self.addCleanup(self.central.shutdown)
        self.factory = OcppServerFactory(self.central, self.clock, ping_interval=0)

    def open(self, port, charger_id):
        address = IPv4Address("TCP", "127.0.0.1", port)
        connection = self.factory.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        connection.makeConnection(transport)
        connection.dataReceived("\r\n".join([
            f"GET /{charger_id} HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket",
            "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: ocpp1.6", "", ""]).encode())
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 101 "), transport.value())
        transport.clear()
        return connection, transport

    def test_changed_options(self):
        old, old_transport = self.open(40001, "CP1")
        self.factory.setProtocolOptions(autoPingInterval=30, autoPingTimeout=15)
        new, new_transport = self.open(40002, "TWIN")
        self.assertEqual((old.autoPingInterval, new.autoPingInterval), (0, 30))
        self.assertEqual(new.autoPingTimeout, 15)
        self.assertIsInstance(old, OcppServerProtocol)
        self.assertIsInstance(new, OcppServerProtocol)
        self.assertNotIn("autoPingInterval", vars(new))
        self.assertIsNone(new.http_headers)
        # The newer one has its first ping scheduled by the new options
        # (on Autobahn's own timer, on the reactor); the older one none.
        self.assertIsNone(old.autoPingPendingCall)
        self.assertIsNotNone(new.autoPingPendingCall)
        new._stop_pings()
        self.assertEqual((old_transport.value(), new_transport.value()), (b"", b""))
        for c in (old, new):
            c.connectionLost(protocol.connectionDone)

    def test_ping_interval_changed(self):
        """
        L{OcppServerFactory.set_ping_interval} ([ocpp] ping_interval
        re-read): the connections opened after get the new pings, with half
        the interval to answer; those opened before keep theirs, also when
        it changes again.
        """
        none, _ = self.open(40001, "CP1")
        self.factory.set_ping_interval(30)
        pinged, _ = self.open(40002, "TWIN")
        self.factory.set_ping_interval(0)
        after = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40003))
        self.assertEqual([(c.autoPingInterval, c.autoPingTimeout) for c in (none, pinged, after)],
                         [(0, 0), (30, 15), (0, 0)])
        self.assertEqual([c.autoPingPendingCall is not None for c in (none, pinged)],
                         [False, True])
        pinged._stop_pings()
        for c in (none, pinged):
            c.connectionLost(protocol.connectionDone)
