"""
Tests of which SignCertificate requests are signed at all
(L{xxterocpp.domain.security.SecurityProfiles.signing_refusal}): only those
that came over TLS from a charger that proved who it is. Against a scripted
charger on a fake clock (L{tests.test_profiles.ProfileHarness}), and over
real sockets, plain and TLS.
"""

import json
import os

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import defer
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.service import BASE_CONFIG, PASSWORD, start_service, write_config
from tests.sim import connect_charger
from tests.test_profiles import ProfileHarness
from tests.test_signing import make_csr
from tests.test_tls import SecureTestCase, pki
from xxterocpp.domain.certificates import SIGNING_INTERVAL

#: What the log line of a request over plain WebSocket says.
NOT_TLS = "certificate signing request refused: its connection is not TLS (ws://)"


def csr(common_name):
    return make_csr(ec.generate_private_key(ec.SECP256R1()), (NameOID.COMMON_NAME, common_name))


def refusals(logged, charger_id):
    """
    @return: the log lines of refused certificate requests of C{charger_id}.
    """
    return [line for line in map(formatEvent, logged)
            if line.startswith(f"{charger_id}: certificate signing request refused")]


class SigningRefusalTests(ProfileHarness, SynchronousTestCase):
    """
    A CSR over a connection without TLS, or from a charger that connects
    without a password, is Rejected, whatever the signing CA would say.
    """

    def sign(self, cp, request):
        cp.session.text_received(json.dumps([2, "sign", "SignCertificate", {"csr": request}]))
        self.settle()
        answer = next(f[2] for f in cp.frames if f[:2] == [3, "sign"])
        cp.frames.clear()
        return answer

    def assertNothingSigned(self, cp, charger_id):
        self.assertNotIn("CertificateSigned", cp.actions())
        self.assertIsNone(self.central.security.certificate(charger_id))
        self.assertEqual(self.central.signing._signed_at, {})

    def test_plain_connection_is_rejected_with_one_line_a_minute(self):
        """
        SP2 is held to profile 2 but its connection is plain (the port as it
        was before C{secure = true} and a restart): Rejected, nothing
        signed; one line says why and what to do, the next one a minute
        later counts those in between.
        """
        cp = self.connect(charger_id="SP2", secure=False)
        cp.take()
        with capturedLogs() as logged:
            answers = [self.sign(cp, csr("SP2"))["status"] for _ in range(3)]
        self.assertEqual(answers, ["Rejected"] * 3)
        [line] = refusals(logged, "SP2")
        self.assertIn(NOT_TLS, line)
        self.assertIn("move SP2 to security profile 2 (TLS with its password) first", line)
        self.clock.advance(SIGNING_INTERVAL)
        with capturedLogs() as logged:
            self.assertEqual(self.sign(cp, csr("SP2")), {"status": "Rejected"})
        [line] = refusals(logged, "SP2")
        self.assertTrue(line.endswith("(2 more refused since the last such line)"), line)
        self.assertNothingSigned(cp, "SP2")

    def test_profile_1_is_signed_over_tls_only(self):
        """
        What counts is the connection: a charger configured at profile 1
        on the TLS port (Basic auth over TLS) gets its certificate; over a
        plain connection it does not.
        """
        self.config = self.config.replace("security_profile = 2", "security_profile = 1")
        self.start()
        self.assertEqual(self.central.security.profile("SP2"), 1)
        plain = self.connect(charger_id="SP2", secure=False)
        with capturedLogs() as logged:
            self.assertEqual(self.sign(plain, csr("SP2")), {"status": "Rejected"})
        self.assertIn(NOT_TLS, refusals(logged, "SP2")[0])
        self.assertNothingSigned(plain, "SP2")
        tls = self.connect(charger_id="SP2")
        self.assertEqual(self.sign(tls, csr("SP2")), {"status": "Accepted"})
        self.settle()
        self.assertEqual(tls.actions().count("CertificateSigned"), 1)
        self.assertIsNotNone(self.central.security.certificate("SP2"))

    def test_profile_0_is_rejected_over_tls_too(self):
        """
        A charger without a password may be anyone who knows its identity:
        it gets no certificate (one that would let it in at profile 3).
        """
        cp = self.connect(charger_id="OPEN")
        with capturedLogs() as logged:
            self.assertEqual(self.sign(cp, csr("OPEN")), {"status": "Rejected"})
        [line] = refusals(logged, "OPEN")
        self.assertIn("OPEN connects without a password (security profile 0)", line)
        self.assertIn("give it a password and move it to security profile 2 first", line)
        self.assertNothingSigned(cp, "OPEN")

    def test_profile_3_renews_over_tls(self):
        cp = self.connect()
        self.assertEqual(self.sign(cp, csr("CP1")), {"status": "Accepted"})

    def test_renewal_is_not_asked_for_where_it_would_be_rejected(self):
        """
        C{POST /api/chargers/{id}/certificate} over a plain connection:
        refused without an ExtendedTriggerMessage, saying why.
        """
        cp = self.connect(charger_id="SP2", secure=False)
        cp.take()
        result = self.result(self.controller.security.renew_certificate("SP2"))
        self.assertEqual(result.status, "Refused")
        self.assertIn("its certificate request would be refused: its connection is not TLS",
                      result.detail)
        self.assertEqual(cp.actions(), [])
        tls = self.connect(charger_id="SP2")
        tls.take()
        self.assertTrue(self.result(self.controller.security.renew_certificate("SP2")).accepted)
        self.assertEqual(tls.actions(), ["ExtendedTriggerMessage"])


class PlainSocketTests(TestCase):
    """
    Over a real plain WebSocket: RDAM 123 at profile 1 (Basic auth, no TLS)
    asks for a certificate and is Rejected, with the signing CA there.
    """

    @defer.inlineCallbacks
    def setUp(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        for name in ("signing-ca.pem", "signing-ca.key"):
            with open(os.path.join(directory, name), "wb") as f:
                f.write(pki()[name])
        text = BASE_CONFIG.replace("[ocpp]\n", (
            f'[ocpp]\nsigning_certificate = "{directory}/signing-ca.pem"\n'
            f'signing_key = "{directory}/signing-ca.key"\n'), 1)
        self.service = yield start_service(self, write_config(self, text))

    @defer.inlineCallbacks
    def test_rejected_over_ws(self):
        self.assertIsNotNone(self.service.central.signing.signer)
        charger = yield connect_charger(self.service.url, "RDAM 123",
                                        auth=("RDAM 123", PASSWORD))
        self.addCleanup(charger.close)
        yield charger.boot()
        with capturedLogs() as logged:
            answer = yield charger.call("SignCertificate", {"csr": csr("RDAM 123")})
        self.assertEqual(answer, {"status": "Rejected"})
        [line] = refusals(logged, "RDAM 123")
        self.assertIn(NOT_TLS, line)
        self.assertEqual([l for l in map(formatEvent, logged) if "certificate signed" in l], [])
        self.assertIsNone(self.service.central.security.certificate("RDAM 123"))


class TLSSocketTests(SecureTestCase):
    """
    Over real TLS: the same charger, configured at profile 1, gets its
    certificate (Basic auth over TLS is profile 2 in all but the name).
    """

    text = BASE_CONFIG.replace('password = "{password}"\n',
                               'password = "{password}"\nsecurity_profile = 1\n')

    @defer.inlineCallbacks
    def test_signed_over_wss(self):
        self.assertEqual(self.service.central.security.profile("RDAM 123"), 1)
        charger = yield self.connect("RDAM 123", auth=("RDAM 123", PASSWORD))
        yield charger.boot()
        answer = yield charger.call("SignCertificate", {"csr": csr("RDAM 123")})
        self.assertEqual(answer, {"status": "Accepted"})
        _, payload = yield charger.wait_for_call("CertificateSigned")
        self.assertIn(pki()["signing-ca.pem"].decode(), payload["certificateChain"])
