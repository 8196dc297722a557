"""
Interoperability: a charger built on somebody else's OCPP implementation
(the PyPI C{ocpp} package, which validates every answer it gets against the
official OCPP 1.6 JSON schemas) runs a whole session against the service.
"""

from datetime import datetime, timezone

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from tests.ocpplib_peer import SKIP_REASON, ocpplib_available, start_ocpplib_charger
from tests.service import start_service


def _now():
    return datetime.now(timezone.utc).isoformat()


class OcppLibSessionTests(TestCase):
    """
    A full session from an ocpp-lib charge point.
    """

    if not ocpplib_available():
        skip = SKIP_REASON

    @defer.inlineCallbacks
    def test_session_answers_validate_against_official_schemas(self):
        """
        Boot, status, authorise, start, meter, stop and the notifications
        are answered, and ocpp-lib finds every answer schema-valid (it would
        raise on an invalid one).
        """
        from ocpp.v16 import call
        from ocpp.v16.enums import (
            ChargePointErrorCode, ChargePointStatus, FirmwareStatus, Measurand,
            RegistrationStatus, UnitOfMeasure)

        service = yield start_service(self)
        cp = yield start_ocpplib_charger(service.url, "CP1")
        self.addCleanup(cp.close)
        boot = yield cp.call(call.BootNotification(
            charge_point_model="Interop", charge_point_vendor="ocpp-lib"), suppress=False)
        self.assertEqual(boot.status, RegistrationStatus.accepted)
        self.assertEqual(boot.interval, 120)
        yield cp.call(call.StatusNotification(
            connector_id=1, error_code=ChargePointErrorCode.no_error,
            status=ChargePointStatus.preparing), suppress=False)
        auth = yield cp.call(call.Authorize(id_tag="04A1B2C3"), suppress=False)
        self.assertEqual(auth.id_tag_info["status"], "Accepted")
        start = yield cp.call(call.StartTransaction(
            connector_id=1, id_tag="04A1B2C3", meter_start=1000, timestamp=_now()),
            suppress=False)
        tx = start.transaction_id
        yield cp.call(call.MeterValues(connector_id=1, transaction_id=tx, meter_value=[{
            "timestamp": _now(),
            "sampled_value": [
                {"value": "2.5", "measurand": Measurand.energy_active_import_register,
                 "unit": UnitOfMeasure.kwh},
                {"value": "15.5", "measurand": Measurand.current_import, "phase": "L1",
                 "unit": "A"},
            ]}]), suppress=False)
        heartbeat = yield cp.call(call.Heartbeat(), suppress=False)
        self.assertTrue(heartbeat.current_time)
        yield cp.call(call.FirmwareStatusNotification(status=FirmwareStatus.idle),
                      suppress=False)
        yield cp.call(call.StopTransaction(meter_stop=4000, timestamp=_now(),
                                           transaction_id=tx, reason="EVDisconnected"),
                      suppress=False)
        records = yield service.store.query_transactions(charger_id="CP1")
        self.assertEqual([(r.id, r.energy_wh, r.stop_reason) for r in records],
                         [(tx, 3000, "EVDisconnected")])
        connector = service.central.chargers["CP1"].connectors[1]
        self.assertEqual(connector.status, "Preparing")
        self.assertIsNone(connector.transaction)
