"""
Interoperability: a charger built on somebody else's OCPP implementation
(the PyPI C{ocpp} package, which validates every answer it gets against the
official OCPP 1.6 JSON schemas) runs a whole session against the service,
and has its certificate signed.
"""

import os
import ssl
from datetime import datetime, timezone

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.ocpplib_peer import SKIP_REASON, ocpplib_available, start_ocpplib_charger
from tests.service import start_service
from tests.test_certs import openssl_verify
from tests.test_signing import make_csr, pem_certificates
from tests.test_tls import secure_config
from xxterocpp import certs


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


class OcppLibCertificateTests(TestCase):
    """
    SignCertificate and CertificateSigned (white paper A02) with an
    ocpp-lib charge point: a renewal asked for, the CSR signed by the
    charger-signing CA, the chain verifying up to the root.
    """

    if not ocpplib_available():
        skip = SKIP_REASON

    @defer.inlineCallbacks
    def setUp(self):
        # CP1 at profile 3, renewing its certificate over TLS: a request is
        # signed only over TLS (docs/ocpp.md#certificates).
        config_path, self.tls = secure_config(self, client_ca=True)
        self.service = yield start_service(self, config_path)
        context = ssl.create_default_context(cafile=os.path.join(self.tls, "ca.pem"))
        context.load_cert_chain(os.path.join(self.tls, "cp1.pem"),
                                os.path.join(self.tls, "cp1.key"))
        self.cp = yield start_ocpplib_charger(self.service.url.replace("ws://", "wss://"),
                                              "CP1", ssl=context)
        self.addCleanup(self.cp.close)

    def sign(self, csr):
        from ocpp.v16 import call

        return self.cp.call(call.SignCertificate(csr=csr), suppress=False)

    @defer.inlineCallbacks
    def test_signed_chain_verifies_against_the_root(self):
        key = ec.generate_private_key(ec.SECP256R1())
        yield self.service.controller.security.renew_certificate("CP1")
        trigger = yield self.cp.wait_for("ExtendedTriggerMessage")
        self.assertEqual(trigger["requested_message"], "SignChargePointCertificate")
        answer = yield self.sign(make_csr(key, (NameOID.COMMON_NAME, "CP1")))
        self.assertEqual(answer.status, "Accepted")
        signed = yield self.cp.wait_for("CertificateSigned")
        chain = signed["certificate_chain"]
        leaf, signing_ca = pem_certificates(chain)
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        for name, cert in (("leaf.pem", leaf), ("chain.pem", signing_ca)):
            certs.write_file(os.path.join(directory, name), certs.certificate_pem(cert))
        passed, output = openssl_verify(os.path.join(self.tls, "ca.pem"),
                                        os.path.join(directory, "leaf.pem"),
                                        untrusted=os.path.join(directory, "chain.pem"),
                                        purpose="sslclient")
        self.assertTrue(passed, output)
        self.assertEqual(leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value, "CP1")
        # It presented its old certificate; the new one is known once taken.
        serial = format(leaf.serial_number, "x")
        for _ in range(250):
            known = self.service.central.security.certificate("CP1")
            if known.serial == serial:
                break
            yield deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(known.serial, serial)

    @defer.inlineCallbacks
    def test_other_identity_or_garbage_is_rejected(self):
        key = ec.generate_private_key(ec.SECP256R1())
        for csr in (make_csr(key, (NameOID.COMMON_NAME, "TWIN")),
                    "-----BEGIN CERTIFICATE REQUEST-----\nZ2FyYmFnZQ==\n"
                    "-----END CERTIFICATE REQUEST-----\n"):
            answer = yield self.sign(csr)
            self.assertEqual(answer.status, "Rejected")
        yield deferLater(reactor, 0.1, lambda: None)
        self.assertNotIn("CertificateSigned", [action for action, _ in self.cp.received])
