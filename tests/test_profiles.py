"""
Tests of the security profiles per charger (L{xxterocpp.domain.security}),
raising one (L{xxterocpp.control.profiles}), the chargers' certificates and
their renewal (L{xxterocpp.control.certificates}) and the keys set from
outside, against a scripted charger on a fake clock. Over real TLS sockets:
C{test_tls}; with the ocpp library's charger: C{test_interop}.
"""

import json
import os
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet.task import Clock
from twisted.logger import Logger, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from tests.test_control import ControllerHarness, MemoryStore
from tests.test_signing import make_csr
from tests.test_tls import pki
from xxterocpp import certs, signing
from xxterocpp.config import parse_config
from xxterocpp.control import Controller
from xxterocpp.control.certificates import CHECK_INTERVAL
from xxterocpp.domain.central import CentralSystem
from xxterocpp.domain.security import PENDING, RAISED, ChargerCertificate
from xxterocpp.tls import ClientCertificate

KEY = "0001020304050607FFFFFFFFFFFFFFFFFFFFFFFF"
OTHER_KEY = "00112233445566778899AABBCCDDEEFF01234567"

#: {tls} is the directory of the test PKI (L{tests.test_tls.pki}).
SECURE = """
[ocpp]
call_timeout = 5
max_chargers = 3
secure = true
certificate = "{tls}/server.pem"
private_key = "{tls}/server.key"
client_ca = "{tls}/ca.pem"
root_certificate = "{tls}/ca.pem"

[[charger]]
id = "CP1"
max_current = 32
normal_current = 16

[[charger]]
id = "SP2"
max_current = 16
password = "{key}"
security_profile = 2

[[charger]]
id = "OPEN"
max_current = 16
security_profile = 0
"""


def write_pki(testcase):
    """
    @return: a temporary directory holding the test PKI's files.
    """
    directory = os.path.abspath(testcase.mktemp())
    os.makedirs(directory)
    for name, data in pki().items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)
    return directory


def presented(common_name, problem=None, days=365):
    """
    The L{ClientCertificate} of a connection.
    """
    return ClientCertificate(common_name, "abc", datetime.now(timezone.utc)
                             + timedelta(days=days), problem)


class ProfileDefaultsTests(SynchronousTestCase):
    """
    L{xxterocpp.config.Config.security_profile}.
    """

    def profile(self, ocpp="", charger=""):
        tls = write_pki(self)
        secure = (f'secure = true\ncertificate = "{tls}/server.pem"\n'
                  f'private_key = "{tls}/server.key"\n')
        text = (f"[ocpp]\n{ocpp.format(secure=secure, tls=tls)}\n"
                f'[[charger]]\nid = "X"\nmax_current = 16\n{charger}')
        return parse_config(text).security_profile("X")

    def test_defaults(self):
        """
        3 with a client CA, else 2 on a secure port with a password, 1 with
        a password, 0 without.
        """
        self.assertEqual(self.profile(), 0)
        self.assertEqual(self.profile(charger='password = "pw"\n'), 1)
        self.assertEqual(self.profile("{secure}", 'password = "pw"\n'), 2)
        self.assertEqual(self.profile("{secure}"), 0)
        self.assertEqual(self.profile('{secure}client_ca = "{tls}/ca.pem"\n'), 3)
        self.assertEqual(self.profile('{secure}client_ca = "{tls}/ca.pem"\n',
                                      'password = "pw"\nsecurity_profile = 2\n'), 2)

    def test_impossible_profiles_are_refused(self):
        """
        1 and 2 need a password, 2 and 3 a secure port, 3 a client CA; one
        line naming the key.
        """
        from xxterocpp.config import ConfigError

        for ocpp, charger, words in [
                ("", "security_profile = 1\n", "set charger[0].password"),
                ("", 'password = "pw"\nsecurity_profile = 2\n', "ocpp.secure = true"),
                ("{secure}", "security_profile = 3\n", "ocpp.client_ca"),
                ("", "security_profile = 4\n", "0..3")]:
            error = self.assertRaises(ConfigError, self.profile, ocpp, charger)
            self.assertEqual(error.key, "charger[0].security_profile")
            self.assertIn(words, str(error))

    def test_one_profile_per_charger(self):
        """
        The connectors of a charger share its connection: their tables
        cannot say different profiles.
        """
        from xxterocpp.config import ConfigError

        error = self.assertRaises(ConfigError, self.profile, "", (
            'password = "pw"\nsecurity_profile = 1\n'
            '[[charger]]\nid = "X"\nconnector = 2\nmax_current = 16\npassword = "pw"\n'
            "security_profile = 0\n"))
        self.assertEqual(error.key, "charger[1].security_profile")
        self.assertIn("differs from charger[0].security_profile", str(error))


class ProfileHarness(ControllerHarness):
    """
    The controller on a secure configuration: CP1 at profile 3 (client CA
    set), SP2 at 2, OPEN at 0; the charger-signing CA signs.
    """

    def setUp(self):
        self.tls = write_pki(self)
        self.config = SECURE.format(tls=self.tls, key=KEY)
        self.clock = Clock()
        # Signed certificates are checked against the real time.
        self.clock.advance(datetime.now(timezone.utc).replace(microsecond=0).timestamp())
        self.store = MemoryStore()
        self.start()

    def start(self):
        signer = signing.ChargerSigner(os.path.join(self.tls, "signing-ca.pem"),
                                       os.path.join(self.tls, "signing-ca.key"))
        self.central = CentralSystem(parse_config(self.config), self.store, self.clock, signer)
        self.controller = Controller(self.central, self.clock)
        self.central.subscribe(self.controller.observe)
        self.central.load()
        self.events = []
        self.central.subscribe(self.events.append)
        self.addCleanup(self.controller.shutdown)

    def connect(self, boot=True, secure=True, **kwargs):
        """
        Connect a scripted charger, over TLS unless C{secure} is False (as
        on a port still plain after C{secure = true} was set).
        """
        cp = super().connect(boot, secure=secure, **kwargs)
        self.settle()
        return cp

    def admit(self, charger_id, certificate=None, presented=None, secure=True):
        return self.central.security.admit(charger_id, secure, certificate, presented)

    def now(self):
        return self.central.now()


class AdmissionTests(ProfileHarness, SynchronousTestCase):
    """
    L{xxterocpp.domain.security.SecurityProfiles.admit}: who may connect.
    """

    def test_profile_3_needs_its_own_verified_certificate(self):
        self.assertIsNone(self.admit("CP1", presented("CP1")))
        self.assertIsNone(self.admit("CP1", presented("cp1")))
        for certificate, why in [
                (None, "no client certificate (security profile 3)"),
                (presented("CP1", "certificate has expired"),
                 "its client certificate does not verify (certificate has expired)"),
                (presented("SP2"), "its client certificate is for 'SP2'")]:
            refusal = self.admit("CP1", certificate, KEY.encode())
            self.assertEqual((refusal.code, refusal.why), (403, why))

    def test_profile_2_is_held_to_basic_auth(self):
        """
        A certificate, valid or not, neither opens nor closes the door.
        """
        for certificate in (None, presented("SP2"), presented("CP1"), presented("SP2", "bad")):
            self.assertIsNone(self.admit("SP2", certificate, KEY.encode()))
            self.assertEqual(self.admit("SP2", certificate, b"wrong").code, 401)
            self.assertEqual(self.admit("SP2", certificate, None).why, "no Basic auth")

    def test_profile_0_lets_in(self):
        self.assertIsNone(self.admit("OPEN"))

    def test_certificate_of_a_charger_is_remembered(self):
        """
        A verified certificate with the charger's CN is the charger's,
        whatever its profile; one of another CN or unverified is not.
        """
        self.admit("SP2", presented("SP2"), KEY.encode())
        self.admit("OPEN", presented("SP2"))
        self.admit("CP1", presented("CP1", "unable to get local issuer certificate"))
        self.assertEqual(self.central.security.certificate("SP2").serial, "abc")
        self.assertIsNone(self.central.security.certificate("OPEN"))
        self.assertIsNone(self.central.security.certificate("CP1"))
        self.start()
        self.assertEqual(self.central.security.certificate("SP2").serial, "abc")


class RaiseTests(ProfileHarness, SynchronousTestCase):
    """
    Raising a profile (A05): checks, the calls, the books.
    """

    def sp2(self):
        return self.connect(charger_id="SP2")

    def raise_to(self, charger_id, profile):
        return self.result(self.controller.security.raise_security_profile(charger_id, profile))

    def give_certificate(self):
        self.central.security.remember_certificate("SP2", ChargerCertificate(
            "123", self.now() + timedelta(days=700)))

    def test_what_a_profile_needs_is_checked_first(self):
        """
        Lower or equal, no client certificate, no key, no TLS: refused,
        nothing sent.
        """
        cp = self.sp2()
        cp.take()
        for charger_id, profile, words in [
                ("SP2", 2, "is at security profile 2"),
                ("SP2", 1, "lower it with security_profile"),
                ("CP1", 2, "is at security profile 3"),
                ("SP2", 3, "no valid client certificate"),
                ("OPEN", 2, "needs a key")]:
            result = self.raise_to(charger_id, profile)
            self.assertEqual(result.status, "Refused", charger_id)
            self.assertIn(words, result.detail)
        self.give_certificate()
        self.central.security.remember_certificate("SP2", ChargerCertificate("1", self.now()))
        self.assertIn("no valid client certificate", self.raise_to("SP2", 3).detail)
        self.assertEqual(cp.calls, [])

    def test_profile_2_needs_tls(self):
        self.config = self.config.replace("secure = true", "secure = false").replace(
            "security_profile = 2", "security_profile = 1")
        self.start()
        self.connect(charger_id="SP2").take()
        self.assertIn("needs TLS", self.raise_to("SP2", 2).detail)

    def test_raise_sends_the_profile_then_a_reset(self):
        """
        ChangeConfiguration(SecurityProfile), then a soft Reset; until the
        charger connects at 3, profile 2 still lets it in.
        """
        cp = self.sp2()
        cp.take()
        self.give_certificate()
        result = self.raise_to("SP2", 3)
        self.assertTrue(result.accepted, result)
        self.assertEqual([(a, p) for _, a, p in cp.calls], [
            ("ChangeConfiguration", {"key": "SecurityProfile", "value": "3"}),
            ("Reset", {"type": "Soft"})])
        self.assertEqual(self.central.security.pending("SP2"), 3)
        self.assertEqual(self.central.security.profile("SP2"), 2)
        self.assertIsNone(self.admit("SP2", None, KEY.encode()))

    def test_connected_at_the_new_profile_refuses_the_lower_one(self):
        """
        Once connected with its certificate, SP2 is at 3, also after a
        restart: Basic auth alone is refused, a key is not needed.
        """
        self.sp2().take()
        self.give_certificate()
        self.raise_to("SP2", 3)
        with capturedLogs() as logged:
            self.assertIsNone(self.admit("SP2", presented("SP2")))
        self.assertIn("SP2: connected at security profile 3; lower profiles are refused from"
                      " now on", [formatEvent(e) for e in logged])
        for _ in range(2):
            self.assertEqual(self.central.security.profile("SP2"), 3)
            self.assertIsNone(self.central.security.pending("SP2"))
            self.assertEqual(self.admit("SP2", None, KEY.encode()).code, 403)
            self.assertIsNone(self.admit("SP2", presented("SP2")))
            self.start()

    def test_refused_raise_is_forgotten(self):
        for answer in ({"status": "Rejected"}, {"status": "NotSupported"},
                       ("CALLERROR", "NotImplemented")):
            cp = self.sp2()
            cp.take()
            self.give_certificate()
            cp.answers["ChangeConfiguration"] = answer
            result = self.raise_to("SP2", 3)
            self.assertFalse(result.accepted)
            self.assertNotIn("Reset", cp.actions())
            self.assertIsNone(self.central.security.pending("SP2"))
            self.assertEqual(self.admit("SP2", presented("SP2")).code, 401)

    def test_unanswered_raise_stays_pending(self):
        """
        No answer: the charger may have taken it; it is let in at either.
        """
        cp = self.sp2()
        cp.take()
        self.give_certificate()
        cp.answers["ChangeConfiguration"] = None
        d = self.controller.security.raise_security_profile("SP2", 3)
        self.clock.advance(5)
        self.assertEqual(self.successResultOf(d).status, "Timeout")
        self.assertEqual(self.central.security.pending("SP2"), 3)
        self.assertIsNone(self.admit("SP2", None, KEY.encode()))
        self.assertIsNone(self.admit("SP2", presented("SP2")))
        self.assertEqual(self.central.security.profile("SP2"), 3)

    def test_raise_to_2_completes_with_basic_auth_over_tls(self):
        self.config = self.config.replace("security_profile = 0", f'password = "{KEY}"\n'
                                          "security_profile = 1")
        self.start()
        self.connect(charger_id="OPEN").take()
        self.assertTrue(self.raise_to("OPEN", 2).accepted)
        self.assertIsNone(self.admit("OPEN", None, KEY.encode(), secure=False))
        self.assertEqual(self.central.security.pending("OPEN"), 2)
        self.assertIsNone(self.admit("OPEN", None, KEY.encode()))
        self.assertEqual(self.central.security.profile("OPEN"), 2)

    def test_the_configuration_lowers_it(self):
        """
        A raise holds while the configuration says the profile it was raised
        from; another one wins at a reload (and at a start).
        """
        self.sp2().take()
        self.give_certificate()
        self.raise_to("SP2", 3)
        self.admit("SP2", presented("SP2"))
        self.central.reconfigure(parse_config(self.config))
        self.assertEqual(self.central.security.profile("SP2"), 3)
        lowered = self.config.replace("security_profile = 2", "security_profile = 1")
        with capturedLogs() as logged:
            self.central.reconfigure(parse_config(lowered))
        self.assertEqual(self.central.security.profile("SP2"), 1)
        self.assertIn("SP2: the configuration now says security profile 1; it replaces profile 3"
                      " reached over OCPP", [formatEvent(e) for e in logged])
        self.assertNotIn(("SP2", RAISED), self.store.settings)
        self.config = lowered
        self.start()
        self.assertEqual(self.central.security.profile("SP2"), 1)
        self.assertNotIn(("SP2", PENDING), self.store.settings)


class CertificateTests(ProfileHarness, SynchronousTestCase):
    """
    SignCertificate, CertificateSigned, the renewal and InstallCertificate.
    """

    def sign(self, cp, csr):
        cp.session.text_received(json.dumps([2, "sign", "SignCertificate", {"csr": csr}]))
        self.settle()
        return next(f[2] for f in cp.frames if f[:2] == [3, "sign"])

    def csr(self, common_name="CP1"):
        return make_csr(ec.generate_private_key(ec.SECP256R1()),
                        (NameOID.COMMON_NAME, common_name))

    def test_signed_chain_is_sent_after_the_answer(self):
        """
        Accepted, then CertificateSigned with the chain (the charger's
        certificate, then the signing CA); once the charger accepted it,
        its serial and expiry are known, also after a restart.
        """
        cp = self.connect()
        cp.take()
        self.assertEqual(self.sign(cp, self.csr()), {"status": "Accepted"})
        answer = next(i for i, f in enumerate(cp.frames) if f[:2] == [3, "sign"])
        sent = next(i for i, f in enumerate(cp.frames) if f[0] == 2 and f[2] == "CertificateSigned")
        self.assertLess(answer, sent)
        [payload] = cp.payloads("CertificateSigned")
        leaf = x509.load_pem_x509_certificate(payload["certificateChain"].encode())
        self.assertEqual(leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value, "CP1")
        self.assertIn(pki()["signing-ca.pem"].decode(), payload["certificateChain"])
        for _ in range(2):
            known = self.central.security.certificate("CP1")
            self.assertEqual(known.serial, format(leaf.serial_number, "x"))
            self.assertEqual(known.not_after, certs.valid_until(leaf))
            self.start()

    def test_bad_requests_are_rejected_and_logged(self):
        cp = self.connect()
        cp.take()
        for csr, why in [
                (self.csr("SP2"), "the CSR's CN 'SP2' is not the charger's identity 'CP1'"),
                ("-----BEGIN CERTIFICATE REQUEST-----\ngarbage\n-----END CERTIFICATE REQUEST-----",
                 "not a well-formed PEM certificate request")]:
            with capturedLogs() as logged:
                self.assertEqual(self.sign(cp, csr), {"status": "Rejected"})
            lines = [formatEvent(e) for e in logged]
            self.assertTrue([line for line in lines if line.startswith(
                "CP1: certificate signing request refused:") and why in line], lines)
        self.assertNotIn("CertificateSigned", cp.actions())

    def test_without_signing_ca_requests_are_rejected(self):
        cp = self.connect()
        self.central.signing.signer = None
        with capturedLogs() as logged:
            self.assertEqual(self.sign(cp, self.csr()), {"status": "Rejected"})
        self.assertIn("signing is disabled", "".join(formatEvent(e) for e in logged))

    def test_refused_certificate_is_not_recorded(self):
        cp = self.connect()
        cp.answers["CertificateSigned"] = {"status": "Rejected"}
        self.sign(cp, self.csr())
        self.assertEqual(cp.actions().count("CertificateSigned"), 1)
        self.assertIsNone(self.central.security.certificate("CP1"))

    def test_renewal_by_hand(self):
        cp = self.connect()
        cp.take()
        result = self.result(self.controller.security.renew_certificate("CP1"))
        self.assertTrue(result.accepted)
        self.assertEqual(cp.payloads("ExtendedTriggerMessage"),
                         [{"requestedMessage": "SignChargePointCertificate"}])

    def test_automatic_renewal_30_days_before_the_end(self):
        """
        The timer asks a profile-3 charger whose certificate ends within 30
        days for a CSR, again a day later while still due, and no more once
        the renewed certificate is in; profile-2 chargers are left alone.
        """
        cp = self.connect()
        sp2 = self.connect(charger_id="SP2")
        for charger_id in ("CP1", "SP2"):
            self.central.security.remember_certificate(charger_id, ChargerCertificate(
                "1", self.now() + timedelta(days=31)))
        cp.take()
        sp2.take()
        self.clock.advance(CHECK_INTERVAL)
        self.assertEqual(cp.actions(), [])
        self.clock.advance(timedelta(days=1).total_seconds())
        self.settle()
        self.assertEqual(cp.payloads("ExtendedTriggerMessage"),
                         [{"requestedMessage": "SignChargePointCertificate"}])
        self.clock.advance(CHECK_INTERVAL)
        self.settle()
        self.assertEqual(cp.actions().count("ExtendedTriggerMessage"), 1)
        self.clock.advance(timedelta(days=1).total_seconds())
        self.settle()
        self.assertEqual(cp.actions().count("ExtendedTriggerMessage"), 2)
        # The charger answers with its CSR; the new certificate ends later.
        self.sign(cp, self.csr())
        self.assertEqual(cp.actions().count("CertificateSigned"), 1)
        self.assertGreater(self.central.security.certificate("CP1").not_after,
                           self.now() + timedelta(days=700))
        for _ in range(3):
            self.clock.advance(timedelta(days=1).total_seconds())
            self.settle()
        self.assertEqual(cp.actions().count("ExtendedTriggerMessage"), 2)
        self.assertEqual(sp2.actions(), [])

    def test_renewal_stops_with_the_service(self):
        self.controller.shutdown()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_install_root_certificate(self):
        cp = self.connect()
        cp.take()
        result = self.result(self.controller.security.install_root_certificate("CP1"))
        self.assertTrue(result.accepted)
        self.assertEqual(cp.payloads("InstallCertificate"), [{
            "certificateType": "CentralSystemRootCertificate",
            "certificate": pki()["ca.pem"].decode()}])

    def test_install_root_certificate_needs_the_file(self):
        self.config = self.config.replace(f'root_certificate = "{self.tls}/ca.pem"',
                                          'root_certificate = "/nonexistent"')
        self.start()
        self.connect()
        result = self.result(self.controller.security.install_root_certificate("CP1"))
        self.assertEqual(result.status, "Refused")
        self.assertIn("'/nonexistent'", result.detail)


class KeyTests(ProfileHarness, SynchronousTestCase):
    """
    Keys set from outside, and the configuration's password winning over a
    key from before its change.
    """

    def accepts(self, key):
        return self.central.credentials.check_password("SP2", key.encode())

    def test_key_given_elsewhere(self):
        """
        Stored without a call; it is the password from then on, also after
        a restart; a pending rotation is over.
        """
        cp = self.connect(charger_id="SP2")
        cp.take()
        self.result(self.central.credentials.begin_key_change("SP2", "x" * 20))
        self.result(self.central.credentials.key_given("SP2", OTHER_KEY))
        self.assertEqual(cp.calls, [])
        for _ in range(2):
            self.assertTrue(self.accepts(OTHER_KEY))
            self.assertFalse(self.accepts(KEY))
            self.assertFalse(self.accepts("x" * 20))
            self.start()

    def test_changed_configured_password_wins(self):
        """
        A rotated key holds while the configuration keeps the password it
        replaced; a new password there wins at a reload or a start.
        """
        self.connect(charger_id="SP2")
        self.assertEqual(
            self.result(self.controller.security.change_authorization_key("SP2", OTHER_KEY)),
            "Accepted")
        self.central.reconfigure(parse_config(self.config))
        self.start()
        self.assertTrue(self.accepts(OTHER_KEY))
        changed = self.config.replace(KEY, "new-password-from-the-file")
        with capturedLogs() as logged:
            self.central.reconfigure(parse_config(changed))
        self.assertIn("SP2: the password in the configuration changed; it replaces the key set"
                      " since the one configured before", [formatEvent(e) for e in logged])
        self.assertTrue(self.accepts("new-password-from-the-file"))
        self.assertFalse(self.accepts(OTHER_KEY))
        # A later rotation holds again, until the next change.
        self.connect(charger_id="SP2")
        self.result(self.controller.security.change_authorization_key("SP2", KEY))
        self.config = changed
        self.start()
        self.assertTrue(self.accepts(KEY))
        self.config = SECURE.format(tls=self.tls, key=OTHER_KEY)
        self.start()
        self.assertTrue(self.accepts(OTHER_KEY))
        self.assertFalse(self.accepts(KEY))

    def test_key_rotated_before_the_rule_follows_the_file(self):
        """
        A key stored by an older version (no record of the password it
        replaced) is kept, and the password configured now is taken as the
        one it replaced.
        """
        self.store.settings[("SP2", "authorization_key")] = OTHER_KEY
        self.start()
        self.assertTrue(self.accepts(OTHER_KEY))
        self.config = SECURE.format(tls=self.tls, key="another-password")
        self.start()
        self.assertTrue(self.accepts("another-password"))


class SignerConfigurationTests(SynchronousTestCase):
    """
    L{xxterocpp.tap.charger_signer}: the signing CA of the configuration.
    """

    def test_missing_files_disable_signing_with_one_line(self):
        from xxterocpp.tap import charger_signer

        config = parse_config('[ocpp]\nsigning_certificate = "/nonexistent/signing-ca.pem"\n')
        with capturedLogs() as logged:
            self.assertIsNone(charger_signer(config, Logger()))
        [line] = [formatEvent(e) for e in logged]
        self.assertIn("chargers' certificate signing requests are refused:"
                      " ocpp.signing_certificate: '/nonexistent/signing-ca.pem'", line)
        self.assertIn("xxterocpp-certs signing-ca", line)

    def test_files_and_organization(self):
        from xxterocpp.tap import charger_signer

        tls = write_pki(self)
        config = parse_config(f'[ocpp]\nsigning_certificate = "{tls}/signing-ca.pem"\n'
                              f'signing_key = "{tls}/signing-ca.key"\norganization = "ACME"\n')
        signer = charger_signer(config, Logger())
        self.assertEqual((signer.certificate_path, signer.organisation),
                         (f"{tls}/signing-ca.pem", "ACME"))
