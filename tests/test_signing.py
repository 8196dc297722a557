"""
Tests for L{xxterocpp.signing}: chargers' CSRs signed with the
charger-signing CA, checked with cryptography and the openssl command.
"""

import base64
import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.trial.unittest import SynchronousTestCase

from tests.test_certs import SPKI, assert_signed_by, openssl_verify
from xxterocpp import certs, signing
from xxterocpp.tls import TLSConfigurationError

DAY = datetime.timedelta(days=1)

_PKI = {}


def pki():
    """
    Made once: the root, the signing CA and one key of each kind a charger
    may have.
    """
    if not _PKI:
        root, root_key = certs.make_ca("test OCPP root CA")
        ca, ca_key = certs.make_signing_ca(root, root_key, "test signing CA")
        other, other_key = certs.make_signing_ca(root, root_key, "second signing CA",
                                                 key_type="ec")
        _PKI.update(root=root, root_key=root_key, ca=ca, ca_key=ca_key, other=other,
                    other_key=other_key,
                    rsa=rsa.generate_private_key(public_exponent=65537, key_size=2048),
                    p256=ec.generate_private_key(ec.SECP256R1()),
                    p384=ec.generate_private_key(ec.SECP384R1()))
    return _PKI


def make_csr(key, *names, algorithm=hashes.SHA256()):
    """
    @param names: C{(oid, value)} pairs of the subject; default CN=CP1.
    @return: the PEM CSR as text.
    """
    names = names or ((NameOID.COMMON_NAME, "CP1"),)
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(oid, value) for oid, value in names]))
           .sign(key, algorithm))
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


def pem_certificates(chain):
    return [x509.load_pem_x509_certificate(block)
            for block in signing._PEM_CERTIFICATE.findall(chain.encode("ascii"))]


class SignerTestCase(SynchronousTestCase):
    """
    The signing CA's files in a temporary directory.
    """

    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.write("ca.pem", pki()["root"])
        self.write("signing-ca.pem", pki()["ca"])
        self.write("signing-ca.key", pki()["ca_key"])
        # Whole seconds: X.509 times have no fractions.
        self.now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)

    def path(self, name):
        return os.path.join(self.dir, name)

    def write(self, name, *objects):
        data = b"".join(certs.certificate_pem(o) if isinstance(o, x509.Certificate)
                        else certs.key_pem(o) for o in objects)
        certs.write_file(self.path(name), data)

    def signer(self, organisation=None, certificate="signing-ca.pem", key="signing-ca.key"):
        return signing.ChargerSigner(self.path(certificate), self.path(key), organisation)

    def rejected(self, csr, identity="CP1", signer=None, now=None):
        """
        @return: the reason the CSR was rejected.
        """
        signer = signer or self.signer()
        error = self.assertRaises(signing.CsrRejected, signer.sign, csr, identity, now)
        self.assertNotIn("\n", error.reason)
        return error.reason


class SignTests(SignerTestCase):
    """
    L{signing.ChargerSigner.sign}.
    """

    def test_rsa_csr_is_signed(self):
        """
        A good RSA CSR: a client certificate of the signing CA for the CSR's
        key, CN = the identity, backdated a day, two years long, with the
        key usages of an RSA TLS client; the chain is the certificate, then
        the signing CA.
        """
        key = pki()["rsa"]
        result = self.signer().sign(make_csr(key), "CP1", self.now)
        self.assertIsInstance(result, signing.SignedChain)
        leaf, ca = pem_certificates(result.certificate_chain)
        self.assertEqual(certs.certificate_pem(ca), certs.certificate_pem(pki()["ca"]))
        self.assertTrue(result.certificate_chain.startswith(certs.certificate_pem(leaf).decode()))
        assert_signed_by(leaf, pki()["ca"])
        self.assertEqual(leaf.public_key().public_bytes(*SPKI),
                         key.public_key().public_bytes(*SPKI))
        self.assertEqual(leaf.subject, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CP1")]))
        self.assertEqual(certs.valid_from(leaf), self.now - DAY)
        self.assertEqual(certs.valid_until(leaf), self.now + signing.CLIENT_DAYS * DAY)
        self.assertEqual(signing.CLIENT_DAYS, 2 * 365)
        self.assertEqual(result.not_after, certs.valid_until(leaf))
        self.assertEqual(result.serial, format(leaf.serial_number, "x"))
        extensions = leaf.extensions
        self.assertEqual(list(extensions.get_extension_for_class(x509.ExtendedKeyUsage).value),
                         [ExtendedKeyUsageOID.CLIENT_AUTH])
        usage = extensions.get_extension_for_class(x509.KeyUsage)
        self.assertTrue(usage.critical)
        self.assertEqual((usage.value.digital_signature, usage.value.key_encipherment,
                          usage.value.key_cert_sign), (True, True, False))
        self.assertFalse(extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
        self.assertEqual(
            extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier,
            pki()["ca"].extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest)
        self.assertEqual(extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value,
                         x509.SubjectKeyIdentifier.from_public_key(key.public_key()))
        self.assertLess(len(result.certificate_chain), signing.MAX_CHAIN_CHARACTERS)

    def test_ec_csrs_are_signed(self):
        """
        P-256 and P-384 keys: signed, with digitalSignature only (an EC key
        encrypts nothing); serial numbers are random.
        """
        serials = set()
        for name in ("p256", "p384"):
            result = self.signer().sign(make_csr(pki()[name]), "CP1")
            leaf = pem_certificates(result.certificate_chain)[0]
            self.assertEqual(leaf.public_key().curve.name, pki()[name].curve.name)
            usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
            self.assertEqual((usage.digital_signature, usage.key_encipherment), (True, False))
            serials.add(result.serial)
        self.assertEqual(len(serials), 2)

    def test_chain_verifies_against_the_root(self):
        """
        openssl verifies the certificate as a TLS client's against ca.pem
        with the signing CA from the chain, and not without it.
        """
        result = self.signer().sign(make_csr(pki()["p256"]), "CP1")
        leaf, *intermediates = pem_certificates(result.certificate_chain)
        self.write("leaf.pem", leaf)
        self.write("intermediates.pem", *intermediates)
        passed, output = openssl_verify(self.path("ca.pem"), self.path("leaf.pem"),
                                        self.path("intermediates.pem"), "sslclient")
        self.assertTrue(passed, output)
        self.assertFalse(openssl_verify(self.path("ca.pem"), self.path("leaf.pem"))[0])

    def test_identity_must_be_the_cn_exactly(self):
        """
        Another CN, the CN in another case, no CN or two CNs: rejected.
        """
        key = pki()["p256"]
        reason = self.rejected(make_csr(key, (NameOID.COMMON_NAME, "CP2")))
        self.assertEqual(reason, "the CSR's CN 'CP2' is not the charger's identity 'CP1'")
        self.rejected(make_csr(key, (NameOID.COMMON_NAME, "cp1")))
        self.assertIn("0 CN", self.rejected(make_csr(key, (NameOID.ORGANIZATION_NAME, "CP1"))))
        self.assertIn("2 CN", self.rejected(make_csr(key, (NameOID.COMMON_NAME, "CP1"),
                                                     (NameOID.COMMON_NAME, "CP1"))))

    def test_organisation_when_configured(self):
        """
        With an organisation the CSR's O must be it, and the certificate has
        it; without one the CSR's O is not copied.
        """
        key = pki()["p256"]
        acme = make_csr(key, (NameOID.ORGANIZATION_NAME, "ACME CPO"),
                        (NameOID.COMMON_NAME, "CP1"))
        result = self.signer("ACME CPO").sign(acme, "CP1")
        leaf = pem_certificates(result.certificate_chain)[0]
        self.assertEqual(leaf.subject, x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ACME CPO"),
            x509.NameAttribute(NameOID.COMMON_NAME, "CP1")]))
        other = make_csr(key, (NameOID.ORGANIZATION_NAME, "Other"), (NameOID.COMMON_NAME, "CP1"))
        self.assertEqual(self.rejected(other, signer=self.signer("ACME CPO")),
                         "the CSR's O 'Other' is not 'ACME CPO'")
        self.assertIn("0 O", self.rejected(make_csr(key), signer=self.signer("ACME CPO")))
        leaf = pem_certificates(self.signer().sign(other, "CP1").certificate_chain)[0]
        self.assertEqual(leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME), [])

    def test_garbage_is_rejected(self):
        """
        Anything but exactly one well-formed PEM CSR.
        """
        good = make_csr(pki()["p256"])
        certificate = certs.certificate_pem(pki()["ca"]).decode("ascii")
        lines = good.splitlines()
        corrupt = "\n".join(lines[:1] + ["A" * 64] + lines[2:])
        for csr in ("", "garbage", good[:150], certificate, corrupt, good + good,
                    "text before\n" + good, good.replace("Q", "\u00e9", 1)):
            self.assertIn("the CSR is not", self.rejected(csr), repr(csr))
        self.assertEqual(self.rejected(good.encode("ascii")), "the CSR is not text")
        self.assertEqual(self.rejected(None), "the CSR is not text")
        # Whitespace around it and the old header are fine.
        self.signer().sign("\r\n" + good.replace("\n", "\r\n") + "\n\n", "CP1")
        self.signer().sign(good.replace("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"), "CP1")

    def test_oversize_csr_is_rejected_unparsed(self):
        csr = make_csr(pki()["p256"])
        padded = csr + " " * (signing.MAX_CSR_CHARACTERS - len(csr))
        self.signer().sign(padded, "CP1")
        self.assertEqual(self.rejected(padded + " "),
                         f"the CSR is longer than {signing.MAX_CSR_CHARACTERS} characters")

    def test_weak_or_unusual_keys_are_rejected(self):
        """
        RSA below 2048 bits, curves other than P-256 and P-384, Ed25519.
        """
        small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        self.assertEqual(self.rejected(make_csr(small)),
                         "RSA key of 1024 bits; at least 2048 are needed")
        self.assertEqual(self.rejected(make_csr(ec.generate_private_key(ec.SECP256K1()))),
                         "EC key on secp256k1; only P-256 and P-384")
        self.assertEqual(self.rejected(make_csr(ed25519.Ed25519PrivateKey.generate(),
                                                algorithm=None)),
                         "only RSA and EC (P-256, P-384) keys are signed")

    def test_bad_signature_is_rejected(self):
        """
        A CSR whose signature does not match its content (proof that the
        charger has the key) is rejected.
        """
        der = bytearray(base64.b64decode("".join(make_csr(pki()["rsa"]).splitlines()[1:-1])))
        der[-1] ^= 1
        body = base64.b64encode(bytes(der)).decode("ascii")
        tampered = "".join(["-----BEGIN CERTIFICATE REQUEST-----\n"]
                           + [body[i:i + 64] + "\n" for i in range(0, len(body), 64)]
                           + ["-----END CERTIFICATE REQUEST-----\n"])
        self.assertEqual(self.rejected(tampered), "the CSR's signature is not valid")

    def test_lifetime_ends_with_the_signing_ca(self):
        """
        Near the signing CA's end the certificate ends with it; within the
        renewal period nothing is signed any more, and the reason says what
        to do.
        """
        end = certs.valid_until(pki()["ca"])
        csr = make_csr(pki()["p256"])
        result = self.signer().sign(csr, "CP1", end - 100 * DAY)
        self.assertEqual(result.not_after, end)
        self.assertEqual(self.signer().not_after, end)
        reason = self.rejected(csr, now=end - 10 * DAY)
        self.assertIn("renew it with 'xxterocpp-certs signing-ca'", reason)
        self.assertIn(f"{end:%Y-%m-%d}", reason)

    def test_chain_leaves_out_the_root_and_is_bounded(self):
        """
        A signing CA file with the root after it sends the signing CA only;
        one with so many CAs that the chain would exceed CertificateSigned's
        limit signs nothing.
        """
        self.write("with-root.pem", pki()["ca"], pki()["root"])
        result = self.signer(certificate="with-root.pem").sign(make_csr(pki()["p256"]), "CP1")
        self.assertEqual([c.subject for c in pem_certificates(result.certificate_chain)[1:]],
                         [pki()["ca"].subject])
        self.write("long.pem", *[pki()["ca"]] * 8)
        reason = self.rejected(make_csr(pki()["p256"]), signer=self.signer(certificate="long.pem"))
        self.assertIn("more than CertificateSigned's 10000", reason)


class CertificateInfoTests(SignerTestCase):
    """
    L{signing.certificate_info} and L{signing.needs_renewal}.
    """

    def test_certificate_info_of_a_chain(self):
        """
        Serial and end of the first certificate, from text or bytes.
        """
        result = self.signer().sign(make_csr(pki()["p256"]), "CP1", self.now)
        info = signing.certificate_info(result.certificate_chain)
        self.assertEqual(info, (result.serial, self.now + signing.CLIENT_DAYS * DAY))
        self.assertEqual(signing.certificate_info(result.certificate_chain.encode("ascii")), info)
        self.assertEqual(info[0], info[0].lower().lstrip("0"))
        self.assertRaises(ValueError, signing.certificate_info, "garbage")

    def test_needs_renewal(self):
        """
        True from 30 days (or C{days}) before the end, and after it.
        """
        end = self.now
        self.assertFalse(signing.needs_renewal(end, end - 31 * DAY))
        self.assertTrue(signing.needs_renewal(end, end - 30 * DAY))
        self.assertTrue(signing.needs_renewal(end, end + DAY))
        self.assertFalse(signing.needs_renewal(end, end - 8 * DAY, days=7))
        self.assertTrue(signing.needs_renewal(end, end - 7 * DAY, days=7))


class SignerFilesTests(SignerTestCase):
    """
    Loading and reloading the signing CA's files.
    """

    def test_reload_takes_a_renewed_signing_ca(self):
        """
        reload() reads the files anew; unusable new files raise and the
        loaded CA keeps signing.
        """
        signer = self.signer()
        self.write("signing-ca.key", pki()["other_key"])
        self.write("signing-ca.pem", pki()["other"])
        signer.reload()
        csr = make_csr(pki()["p256"])
        leaf = pem_certificates(signer.sign(csr, "CP1").certificate_chain)[0]
        self.assertEqual(leaf.issuer, pki()["other"].subject)
        self.write("signing-ca.key", pki()["ca_key"])
        self.assertRaises(signing.SigningConfigurationError, signer.reload)
        leaf = pem_certificates(signer.sign(csr, "CP1").certificate_chain)[0]
        assert_signed_by(leaf, pki()["other"])

    def test_unusable_files_name_the_key(self):
        """
        A missing or broken file, a certificate that is no CA, a key of
        another certificate, an encrypted key: one line naming the
        configuration key and the file; the same kind of error as the TLS
        files'.
        """
        leaf, leaf_key = certs.make_leaf(pki()["ca"], pki()["ca_key"], "CP1", client=True,
                                         key_type="ec")
        self.write("leaf.pem", leaf)
        self.write("leaf.key", leaf_key)
        certs.write_file(self.path("garbage"), b"garbage\n")
        certs.write_file(self.path("encrypted.key"), pki()["ca_key"].private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret")))
        cases = [
            ("missing.pem", "signing-ca.key", "ocpp.signing_certificate", "missing.pem"),
            ("garbage", "signing-ca.key", "ocpp.signing_certificate", "not a PEM certificate"),
            ("leaf.pem", "leaf.key", "ocpp.signing_certificate", "not a CA certificate"),
            ("signing-ca.pem", "missing.key", "ocpp.signing_key", "missing.key"),
            ("signing-ca.pem", "garbage", "ocpp.signing_key", "not an unencrypted PEM"),
            ("signing-ca.pem", "encrypted.key", "ocpp.signing_key", "not an unencrypted PEM"),
            ("signing-ca.pem", "leaf.key", "ocpp.signing_key", "does not belong"),
        ]
        for certificate, key, setting, text in cases:
            error = self.assertRaises(signing.SigningConfigurationError, self.signer,
                                      certificate=certificate, key=key)
            self.assertIsInstance(error, TLSConfigurationError)
            self.assertEqual(error.key, setting)
            self.assertIn(text, str(error))
            self.assertTrue(str(error).startswith(setting + ": "))
            self.assertNotIn("\n", str(error))
