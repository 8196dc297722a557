"""
Unit tests for L{xxterocpp.ocpp.handlers}: decoded CALLs of a charger in,
response messages out, the domain in between.
"""

import json
from datetime import datetime, timezone

from twisted.internet import defer
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from tests.test_domain import T0, DomainTestCase
from xxterocpp.domain.events import TransactionStarted
from xxterocpp.domain.meter import MeterReading
from xxterocpp.ocpp import messages as m
from xxterocpp.ocpp.handlers import (
    DEFAULT_CONNECTORS, HANDLERS, connector_count, dispatch, dispatcher, read_meter_values)
from xxterocpp.ocpp.rpc import CallError, OcppSession
from xxterocpp.store.errors import StoreError


def decode(action, payload):
    """
    @return: the request message of C{action} decoded from C{payload}.
    """
    request, warnings = m.decode(m.ACTIONS[action].request, payload, lenient=True)
    return request


def meter(samples, at="2026-01-01T10:00:00Z"):
    """
    @return: one MeterValue element decoded from JSON sampled values.
    """
    value, warnings = m.decode(m.MeterValue, {"timestamp": at, "sampledValue": samples})
    return value


class TableTests(SynchronousTestCase):
    """
    L{HANDLERS} and the message table agree.
    """

    def test_every_action_a_charger_sends_has_a_handler(self):
        """
        Every action a charger may send (CP->CS, and DataTransfer that both
        sides send) has a handler, and there is none for any other.
        """
        sent_by_chargers = {name for name, action in m.ACTIONS.items()
                            if action.direction != m.CS_TO_CP}
        self.assertEqual(set(HANDLERS), sent_by_chargers)
        self.assertEqual(len(HANDLERS), 14)


class HandlerTests(DomainTestCase):
    """
    Each handler's response to a decoded request, and what the domain made
    of it.
    """

    def handle(self, action, payload):
        """
        @return: the response (once any Deferred fired).
        """
        response = self.successResultOf(defer.maybeDeferred(
            dispatch, self.central, "CP1", action, decode(action, payload)))
        self.assertIs(type(response), m.ACTIONS[action].response)
        return response

    def test_boot_notification(self):
        """
        A boot is accepted with our time and the heartbeat interval; the
        domain keeps what the charger said.
        """
        response = self.handle("BootNotification", {
            "chargePointVendor": "V", "chargePointModel": "M",
            "chargeBoxSerialNumber": "S1", "firmwareVersion": "1.0"})
        self.assertEqual(response, m.BootNotificationResponse(
            status="Accepted", current_time=T0,
            interval=self.central.config.ocpp.heartbeat_interval))
        self.assertEqual(self.charger.boot,
                         {"vendor": "V", "model": "M", "serial": "S1", "firmware": "1.0"})

    def test_heartbeat(self):
        self.assertEqual(self.handle("Heartbeat", {}), m.HeartbeatResponse(current_time=T0))

    def test_status_notification(self):
        """
        Connector 0 is the charger itself, others its connectors.
        """
        self.handle("StatusNotification", {
            "connectorId": 0, "errorCode": "NoError", "status": "Available"})
        self.handle("StatusNotification", {
            "connectorId": 1, "errorCode": "OtherError", "status": "Faulted",
            "info": "RCD", "vendorErrorCode": "E7", "timestamp": "2026-01-01T09:00:00Z"})
        connector = self.charger.connectors[1]
        self.assertEqual(self.charger.status, "Available")
        self.assertEqual(
            (connector.status, connector.error_code, connector.info,
             connector.vendor_error_code, connector.status_time),
            ("Faulted", "OtherError", "RCD", "E7",
             datetime(2026, 1, 1, 9, tzinfo=timezone.utc)))
        self.assertNotIn(0, self.charger.connectors)

    def test_connectors_beyond_the_charger_are_refused(self):
        """
        Until GetConfiguration tells NumberOfConnectors, 32 connectors;
        then as many as it says (a configured one always exists).
        StatusNotification and StartTransaction of others get a
        PropertyConstraintViolation, MeterValues is acknowledged and its
        reading dropped; no connector is made for any of them.
        """
        status = {"errorCode": "NoError", "status": "Available"}
        self.handle("StatusNotification", dict(status, connectorId=DEFAULT_CONNECTORS))
        refused = [
            ("StatusNotification", dict(status, connectorId=DEFAULT_CONNECTORS + 1)),
            ("StartTransaction", {"connectorId": 2**62, "idTag": "GOOD", "meterStart": 0,
                                  "timestamp": "2026-01-01T00:00:00Z"})]
        for action, payload in refused:
            error = self.assertRaises(CallError, dispatch, self.central, "CP1", action,
                                      decode(action, payload))
            self.assertEqual(error.code, m.PROPERTY_CONSTRAINT_VIOLATION)
        self.charger.configuration["NumberOfConnectors"] = m.KeyValue(
            key="NumberOfConnectors", readonly=True, value="1")
        self.assertEqual(connector_count(self.charger), 1)
        self.handle("StatusNotification", dict(status, connectorId=2))
        error = self.assertRaises(CallError, dispatch, self.central, "CP1", "StatusNotification",
                                  decode("StatusNotification", dict(status, connectorId=3)))
        self.assertIn("the charger has 1 connectors", error.description)
        self.handle("MeterValues", {"connectorId": 3, "meterValue": [
            {"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [{"value": "5"}]}]})
        self.assertEqual(sorted(self.charger.connectors), [1, 2, DEFAULT_CONNECTORS])
        for junk in ("0", "many", "100000"):
            self.charger.configuration["NumberOfConnectors"] = m.KeyValue(
                key="NumberOfConnectors", readonly=True, value=junk)
            self.assertEqual(connector_count(self.charger), DEFAULT_CONNECTORS)

    def test_authorize(self):
        """
        The domain's verdict with the registry's parent and expiry.
        """
        self.assertEqual(self.handle("Authorize", {"idTag": "LATER"}), m.AuthorizeResponse(
            id_tag_info=m.IdTagInfo(status="Accepted",
                                    expiry_date=datetime(2030, 1, 1, tzinfo=timezone.utc))))
        self.assertEqual(self.handle("Authorize", {"idTag": "NOPE"}).id_tag_info.status,
                         "Invalid")

    def test_start_and_stop_transaction(self):
        """
        A start gets the new transaction id and the verdict; a stop with its
        transaction data books the reading; an absent reason means Local.
        """
        start = self.handle("StartTransaction", {
            "connectorId": 1, "idTag": "GOOD", "meterStart": 100,
            "timestamp": "2026-01-01T00:00:00Z"})
        self.assertEqual(start, m.StartTransactionResponse(
            transaction_id=42, id_tag_info=m.IdTagInfo(status="Accepted")))
        stop = self.handle("StopTransaction", {
            "transactionId": 42, "idTag": "NOPE", "timestamp": "2026-01-01T01:00:00Z",
            "transactionData": [{"timestamp": "2026-01-01T01:00:00Z",
                                 "sampledValue": [{"value": "0.9", "unit": "kWh"}]}]})
        self.assertEqual(stop, m.StopTransactionResponse(
            id_tag_info=m.IdTagInfo(status="Invalid")))
        tx = self.central.book.get(42)
        self.assertEqual((tx.meter_stop, tx.energy_wh, tx.stop_reason), (900, 800, "Local"))

    def test_stop_without_a_tag_has_no_id_tag_info(self):
        self.assertEqual(self.handle("StopTransaction", {
            "transactionId": 7, "meterStop": 1, "timestamp": "2026-01-01T01:00:00Z"}),
            m.StopTransactionResponse(id_tag_info=None))

    def test_meter_values(self):
        """
        The readings reach the connector; the main meter (connector 0) and
        unusable values are acknowledged and ignored.
        """
        for connector, value in ((1, "1234"), (0, "99999"), (1, "junk")):
            self.assertEqual(self.handle("MeterValues", {
                "connectorId": connector, "meterValue": [
                    {"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [{"value": value}]}]}),
                m.MeterValuesResponse())
        self.assertEqual(self.charger.connectors[1].energy_register_wh, 1234)
        self.assertEqual(len(self.events), 1)

    def test_data_transfer(self):
        self.assertEqual(self.handle("DataTransfer", {"vendorId": "ACME"}),
                         m.DataTransferResponse(status="UnknownVendorId"))

    def test_progress_reports(self):
        """
        Firmware, diagnostics and log progress is acknowledged and kept.
        """
        for action, payload in [
                ("DiagnosticsStatusNotification", {"status": "Uploading"}),
                ("FirmwareStatusNotification", {"status": "Downloading"}),
                ("LogStatusNotification", {"status": "Uploaded", "requestId": 1}),
                ("SignedFirmwareStatusNotification", {"status": "Installed", "requestId": 2})]:
            self.handle(action, payload)
            self.assertEqual(self.charger.notifications[action], (T0, payload["status"]))

    def test_security_event_notification(self):
        self.handle("SecurityEventNotification", {
            "type": "TamperDetectionActivated", "timestamp": "2026-01-01T00:00:00Z"})
        self.assertEqual(list(self.charger.security_events),
                         [(T0, "TamperDetectionActivated", None)])

    def test_sign_certificate_is_rejected(self):
        self.assertEqual(self.handle("SignCertificate", {"csr": "-----BEGIN"}),
                         m.SignCertificateResponse(status="Rejected"))

    def test_charger_no_longer_configured(self):
        """
        A CALL of a charger removed from the configuration is an error (the
        RPC layer answers it with a CALLERROR).
        """
        self.assertRaises(LookupError, dispatch, self.central, "GONE", "Heartbeat",
                          decode("Heartbeat", {}))


class DurabilityTests(DomainTestCase):
    """
    Through a real L{OcppSession}: no answer before the store committed.
    """

    def setUp(self):
        super().setUp()
        self.sent = []
        self.session = OcppSession("CP1", self.sent.append, dispatcher(self.central, "CP1"),
                                   self.clock, 30)
        self.central.connections.connected("CP1", self.session, "127.0.0.1")

    def call(self, unique_id, action, payload):
        self.session.text_received(json.dumps([2, unique_id, action, payload]))

    def test_start_transaction_answered_once_stored(self):
        """
        The CALLRESULT of a StartTransaction goes out only after the
        transaction's row is committed.
        """
        self.store.hold.add("insert_transaction")
        self.call("s1", "StartTransaction", {
            "connectorId": 1, "idTag": "GOOD", "meterStart": 0,
            "timestamp": "2026-01-01T00:00:00Z"})
        self.assertIsInstance(self.events[-1], TransactionStarted)
        self.assertEqual(self.sent, [])
        self.store.held[0].callback(None)
        self.assertEqual([json.loads(t) for t in self.sent], [
            [3, "s1", {"transactionId": 42, "idTagInfo": {"status": "Accepted"}}]])

    def _start_then_held_stop(self):
        # A session started, and its StopTransaction waiting for the store.
        self.store.hold.add("stop_transaction")
        self.call("s1", "StartTransaction", {
            "connectorId": 1, "idTag": "GOOD", "meterStart": 0,
            "timestamp": "2026-01-01T00:00:00Z"})
        self.call("s2", "StopTransaction", {
            "transactionId": 42, "meterStop": 10, "timestamp": "2026-01-01T01:00:00Z"})

    def test_stop_transaction_answered_once_stored(self):
        """
        The CALLRESULT of a StopTransaction goes out only after the stop is
        stored.
        """
        self._start_then_held_stop()
        self.assertEqual(len(self.sent), 1)
        self.store.held[0].callback(None)
        self.assertEqual(json.loads(self.sent[-1]), [3, "s2", {}])

    def test_stop_transaction_the_store_gave_up_is_not_acknowledged(self):
        """
        The store closes (the service stops on a full disk) before the
        stop is committed: the charger gets a CALLERROR, not the
        acknowledgement that makes it drop the stop from its queue (it was
        answered C{{}}, the stop lost). It sends it again after the
        restart.
        """
        self._start_then_held_stop()
        with capturedLogs():
            self.store.held[0].errback(StoreError("state store closed before the write was"
                                                  " committed"))
        self.flushLoggedErrors(StoreError)
        answer = json.loads(self.sent[-1])
        self.assertEqual(answer[:3], [4, "s2", "InternalError"])

    def test_meter_values_answered_at_once(self):
        self.call("m1", "MeterValues", {"connectorId": 1, "meterValue": [
            {"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [{"value": "5"}]}]})
        self.assertEqual(self.sent, ['[3,"m1",{}]'])


class ReadMeterValuesTests(SynchronousTestCase):
    """
    L{read_meter_values} reduces what chargers send.
    """

    def test_units_and_phases(self):
        """
        kWh and kW are converted, phases normalised, N ignored.
        """
        reading = read_meter_values([meter([
            {"value": "12.5", "unit": "kWh"},
            {"value": "16.1", "measurand": "Current.Import", "phase": "L1-N", "unit": "A"},
            {"value": "15.9", "measurand": "Current.Import", "phase": "L2", "unit": "A"},
            {"value": "0.4", "measurand": "Current.Import", "phase": "N", "unit": "A"},
            {"value": "7.4", "measurand": "Power.Active.Import", "unit": "kW"},
            {"value": "16", "measurand": "Current.Offered", "unit": "A"},
        ])])
        self.assertIsInstance(reading, MeterReading)
        self.assertEqual(
            (reading.energy_wh, reading.currents, reading.power_w, reading.current_offered),
            (12500, {"L1": 16.1, "L2": 15.9}, 7400, 16))
        self.assertEqual(reading.timestamp, datetime(2026, 1, 1, 10, tzinfo=timezone.utc))

    def test_latest_element_wins_and_junk_is_skipped(self):
        """
        Elements are applied in time order; unreadable values are skipped.
        """
        reading = read_meter_values([
            meter([{"value": "300"}], at="2026-01-01T10:05:00Z"),
            meter([{"value": "200"}, {"value": "abc", "measurand": "Current.Import"}],
                  at="2026-01-01T10:00:00Z"),
        ])
        self.assertEqual(reading.energy_wh, 300)
        self.assertIsNone(reading.currents)
        self.assertEqual(reading.timestamp, datetime(2026, 1, 1, 10, 5, tzinfo=timezone.utc))
        self.assertIsNone(read_meter_values([meter([{"value": "x"}])]))

    def test_per_phase_power_and_energy_are_summed(self):
        """
        Power or energy reported per phase only adds up to the total.
        """
        reading = read_meter_values([meter([
            {"value": "1000", "measurand": "Power.Active.Import", "phase": "L1", "unit": "W"},
            {"value": "1200", "measurand": "Power.Active.Import", "phase": "L2", "unit": "W"},
            {"value": "1", "phase": "L1", "unit": "kWh"},
            {"value": "2", "phase": "L2", "unit": "kWh"},
        ])])
        self.assertEqual((reading.power_w, reading.energy_wh), (2200, 3000))

    def test_signed_data_is_skipped(self):
        self.assertIsNone(read_meter_values([meter([
            {"value": "A1B2", "format": "SignedData"}])]))
