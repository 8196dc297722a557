"""
Tests for L{xxterocpp.certs}, the C{xxterocpp-certs} tool.
"""

import datetime
import io
import ipaddress
import os
import pwd
import subprocess
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from xxterocpp import certs
from tests.service import ROOT


def read_cert(path):
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def assert_signed_by(cert, issuer):
    """
    Verify C{cert}'s signature with C{issuer}'s key (cryptography 38 has no
    C{verify_directly_issued_by}).
    """
    key = issuer.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                   cert.signature_hash_algorithm)
    else:
        key.verify(cert.signature, cert.tbs_certificate_bytes,
                   ec.ECDSA(cert.signature_hash_algorithm))
    assert cert.issuer == issuer.subject


def common_name(cert):
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


#: How to compare public keys.
SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def openssl_verify(ca, leaf, untrusted=None, purpose=None):
    """
    Verify a certificate file with the openssl command (strict X.509
    checks), as an oracle independent of the code that made it; Debian has
    it, and cryptography 38 has no path validation.

    @param untrusted: a file of intermediate certificates, or None.
    @param purpose: e.g. C{"sslclient"}, or None.
    @return: C{(passed, output)}.
    """
    command = ["openssl", "verify", "-x509_strict", "-CAfile", ca]
    if untrusted:
        command += ["-untrusted", untrusted]
    if purpose:
        command += ["-purpose", purpose]
    result = subprocess.run(command + [leaf], capture_output=True, text=True, check=False)
    return result.returncode == 0, result.stdout + result.stderr


class CertsToolTests(SynchronousTestCase):
    """
    The CLI, run in-process.
    """

    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())

    def run_tool(self, *argv):
        out, self.err = io.StringIO(), io.StringIO()
        status = certs.main(["--dir", self.dir, *argv], out=out, err=self.err)
        return status, out.getvalue()

    def path(self, name):
        return os.path.join(self.dir, name)

    def mode(self, name):
        return os.stat(self.path(name)).st_mode & 0o777

    def test_init_ca_writes_a_root_ca_and_a_private_key(self):
        """
        init-ca writes ca.pem (a self-signed CA allowing one CA below it, the
        signing CA) and ca.key readable by its owner only; it prints the
        fingerprint.
        """
        status, out = self.run_tool("init-ca")
        self.assertEqual(status, 0)
        ca = read_cert(self.path("ca.pem"))
        constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
        self.assertEqual((constraints.ca, constraints.path_length), (True, 1))
        assert_signed_by(ca, ca)
        self.assertIsInstance(ca.public_key(), rsa.RSAPublicKey)
        self.assertEqual(ca.public_key().key_size, 2048)
        self.assertEqual(self.mode("ca.key"), 0o600)
        self.assertEqual(self.mode("ca.pem"), 0o644)
        self.assertIn(certs.fingerprint(ca), out)

    def test_init_ca_keeps_an_existing_ca_without_force(self):
        """
        A second init-ca would orphan every charger trusting the first: it is
        refused unless --force.
        """
        self.run_tool("init-ca")
        with open(self.path("ca.pem"), "rb") as f:
            first = f.read()
        status, _ = self.run_tool("init-ca")
        self.assertEqual(status, 1)
        with open(self.path("ca.pem"), "rb") as f:
            self.assertEqual(f.read(), first)
        self.assertEqual(self.run_tool("init-ca", "--force")[0], 0)
        with open(self.path("ca.pem"), "rb") as f:
            self.assertNotEqual(f.read(), first)

    def test_server_certificate_names_the_controller(self):
        """
        server: signed by the CA, for TLS servers, the IP addresses and host
        names as subjectAltNames, the first host name as CN; key mode 0600.
        """
        self.run_tool("init-ca")
        status, _ = self.run_tool("server", "--ip", "192.168.1.10", "--ip", "fd00::1",
                                  "--dns", "knx-controller.local", "--dns", "knx")
        self.assertEqual(status, 0)
        cert = read_cert(self.path("server.pem"))
        assert_signed_by(cert, read_cert(self.path("ca.pem")))
        self.assertEqual(common_name(cert), "knx-controller.local")
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(names.get_values_for_type(x509.DNSName), ["knx-controller.local", "knx"])
        self.assertEqual(names.get_values_for_type(x509.IPAddress),
                         [ipaddress.ip_address("192.168.1.10"), ipaddress.ip_address("fd00::1")])
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        self.assertEqual(list(usage), [ExtendedKeyUsageOID.SERVER_AUTH])
        self.assertFalse(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
        self.assertEqual(self.mode("server.key"), 0o600)

    def test_server_with_only_an_ip_uses_it_as_cn(self):
        self.run_tool("init-ca")
        self.assertEqual(self.run_tool("server", "--ip", "10.0.0.2")[0], 0)
        self.assertEqual(common_name(read_cert(self.path("server.pem"))), "10.0.0.2")

    def test_server_renewal_replaces_the_files(self):
        """
        Running server again renews the certificate (new key, new serial).
        """
        self.run_tool("init-ca")
        self.run_tool("server", "--dns", "knx")
        first = read_cert(self.path("server.pem"))
        self.run_tool("server", "--dns", "knx")
        second = read_cert(self.path("server.pem"))
        self.assertNotEqual(first.serial_number, second.serial_number)
        self.assertEqual(sorted(os.listdir(self.dir)),
                         ["ca.key", "ca.pem", "server.key", "server.pem"])

    def test_server_refusals(self):
        """
        Without a name, with a bad IP or without a CA the tool exits 1 and
        writes nothing.
        """
        self.assertEqual(self.run_tool("server", "--dns", "knx")[0], 1)
        self.assertIn("run 'xxterocpp-certs init-ca' first", self.err.getvalue())
        self.run_tool("init-ca")
        self.assertEqual(self.run_tool("server")[0], 1)
        self.assertEqual(self.run_tool("server", "--ip", "300.1.1.1")[0], 1)
        self.assertEqual(self.run_tool("server", "--dns", "x", "--owner", "no-such-user-x")[0],
                         1)
        self.assertFalse(os.path.exists(self.path("server.pem")))

    def test_client_certificate_for_a_charger(self):
        """
        client: CN = the identity (file name made safe), O = the CPO, for TLS
        clients, signed by the CA.
        """
        self.run_tool("init-ca")
        status, _ = self.run_tool("client", "RDAM 123/x", "--organization", "ACME CPO")
        self.assertEqual(status, 0)
        cert = read_cert(self.path("client-RDAM_123_x.pem"))
        assert_signed_by(cert, read_cert(self.path("ca.pem")))
        self.assertEqual(common_name(cert), "RDAM 123/x")
        self.assertEqual(
            cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value, "ACME CPO")
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        self.assertEqual(list(usage), [ExtendedKeyUsageOID.CLIENT_AUTH])
        self.assertEqual(self.mode("client-RDAM_123_x.key"), 0o600)

    def test_ec_keys(self):
        """
        --key-type ec makes P-256 keys.
        """
        self.run_tool("--key-type", "ec", "init-ca")
        self.run_tool("--key-type", "ec", "server", "--dns", "knx")
        for name in ("ca.pem", "server.pem"):
            key = read_cert(self.path(name)).public_key()
            self.assertIsInstance(key, ec.EllipticCurvePublicKey)
            self.assertEqual(key.curve.name, "secp256r1")
        assert_signed_by(read_cert(self.path("server.pem")), read_cert(self.path("ca.pem")))

    def test_signing_ca_is_an_intermediate_of_the_root(self):
        """
        signing-ca: a CA signed by the root that may sign end entities only
        (path length 0, keyCertSign and cRLSign), living less long than the
        root; the key has mode 0600; openssl verifies it against ca.pem.
        """
        self.patch(certs, "SERVICE_USER", "no-such-user-x")
        self.run_tool("init-ca")
        status, out = self.run_tool("signing-ca")
        self.assertEqual(status, 0, self.err.getvalue())
        root, ca = read_cert(self.path("ca.pem")), read_cert(self.path("signing-ca.pem"))
        assert_signed_by(ca, root)
        self.assertEqual(common_name(ca), "xxterocpp charger signing CA")
        constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
        self.assertTrue(constraints.critical)
        self.assertEqual((constraints.value.ca, constraints.value.path_length), (True, 0))
        usage = ca.extensions.get_extension_for_class(x509.KeyUsage)
        self.assertTrue(usage.critical)
        self.assertEqual((usage.value.key_cert_sign, usage.value.crl_sign,
                          usage.value.digital_signature), (True, True, False))
        aki = ca.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        self.assertEqual(aki.key_identifier, ski.digest)
        lifetime = certs.valid_until(ca) - certs.valid_from(ca)
        self.assertEqual(lifetime,
                         datetime.timedelta(days=certs.SIGNING_CA_DAYS) + certs.BACKDATE)
        self.assertLess(certs.valid_until(ca), certs.valid_until(root))
        self.assertEqual(self.mode("signing-ca.key"), 0o600)
        self.assertEqual(self.mode("signing-ca.pem"), 0o644)
        self.assertEqual(os.stat(self.path("signing-ca.key")).st_uid, os.getuid())
        self.assertIn("signing-ca.pem", out)
        self.assertIn("give --owner", out)
        passed, output = openssl_verify(self.path("ca.pem"), self.path("signing-ca.pem"))
        self.assertTrue(passed, output)
        self.assertEqual(sorted(os.listdir(self.dir)),
                         ["ca.key", "ca.pem", "signing-ca.key", "signing-ca.pem"])

    def test_signing_ca_renewal_and_lifetime(self):
        """
        Running signing-ca again replaces it (new key); --days beyond the
        root's end gives the root's end; --key-type ec makes a P-256 CA.
        """
        self.run_tool("init-ca", "--days", "100")
        self.run_tool("signing-ca")
        first = read_cert(self.path("signing-ca.pem"))
        self.assertEqual(certs.valid_until(first),
                         certs.valid_until(read_cert(self.path("ca.pem"))))
        self.assertEqual(self.run_tool("--key-type", "ec", "signing-ca", "--days", "30")[0], 0)
        second = read_cert(self.path("signing-ca.pem"))
        self.assertNotEqual(first.public_key().public_bytes(*SPKI),
                            second.public_key().public_bytes(*SPKI))
        self.assertIsInstance(second.public_key(), ec.EllipticCurvePublicKey)
        self.assertEqual(certs.valid_until(second) - certs.valid_from(second),
                         datetime.timedelta(days=30) + certs.BACKDATE)

    def test_signing_ca_key_is_owned_by_the_service_user(self):
        """
        Where the service user exists, the signing CA's files are its own, so
        that the service can read the key (still mode 0600); --owner chooses
        another owner.
        """
        try:
            nobody = pwd.getpwnam("nobody")
        except KeyError:
            raise SkipTest("no user 'nobody' to play the service user")
        if os.getuid() != 0:
            raise SkipTest("only root can give files away")
        self.run_tool("init-ca")
        self.patch(certs, "SERVICE_USER", "nobody")
        status, out = self.run_tool("signing-ca")
        self.assertEqual(status, 0, self.err.getvalue())
        for name in ("signing-ca.key", "signing-ca.pem"):
            info = os.stat(self.path(name))
            self.assertEqual((info.st_uid, info.st_gid), (nobody.pw_uid, nobody.pw_gid))
        self.assertEqual(self.mode("signing-ca.key"), 0o600)
        self.assertIn("owned by nobody", out)
        self.assertEqual(os.stat(self.path("ca.key")).st_uid, 0)
        self.assertEqual(self.run_tool("signing-ca", "--owner", "root:root")[0], 0)
        self.assertEqual(os.stat(self.path("signing-ca.key")).st_uid, 0)

    def test_signing_ca_refusals(self):
        """
        Without a root CA, or with an unknown --owner, nothing is written.
        """
        self.assertEqual(self.run_tool("signing-ca")[0], 1)
        self.assertIn("run 'xxterocpp-certs init-ca' first", self.err.getvalue())
        self.run_tool("init-ca")
        self.assertEqual(self.run_tool("signing-ca", "--owner", "no-such-user-x")[0], 1)
        self.assertIn("no-such-user-x", self.err.getvalue())
        self.assertFalse(os.path.exists(self.path("signing-ca.key")))
        self.assertFalse(os.path.exists(self.path("signing-ca.pem")))

    def test_signing_ca_reissues_a_root_that_forbids_it(self):
        """
        A root of an older init-ca forbade any CA below it (path length 0):
        signing-ca re-issues it with the same key, name and validity, so the
        server certificate it signed verifies against old and new alike, and
        the signing CA against the new one.
        """
        self.run_tool("init-ca")
        current, key = certs.load_ca(self.dir)
        old = certs._ca_constraints(
            certs._builder(current.subject, key.public_key(), certs.valid_from(current),
                           certs.valid_until(current)),
            key.public_key(), 0).sign(key, hashes.SHA256())
        certs.write_file(self.path("ca.pem"), certs.certificate_pem(old))
        certs.write_file(self.path("old-ca.pem"), certs.certificate_pem(old))
        self.run_tool("server", "--dns", "knx")

        status, out = self.run_tool("signing-ca")
        self.assertEqual(status, 0, self.err.getvalue())
        new = read_cert(self.path("ca.pem"))
        self.assertEqual(certs.path_length(new), 1)
        self.assertEqual(new.subject, old.subject)
        self.assertEqual(new.public_key().public_bytes(*SPKI),
                         old.public_key().public_bytes(*SPKI))
        self.assertEqual((certs.valid_from(new), certs.valid_until(new)),
                         (certs.valid_from(old), certs.valid_until(old)))
        self.assertNotEqual(new.serial_number, old.serial_number)
        self.assertIn("re-issued", out)
        self.assertIn(certs.fingerprint(new), out)
        for root in ("old-ca.pem", "ca.pem"):
            passed, output = openssl_verify(self.path(root), self.path("server.pem"),
                                            purpose="sslserver")
            self.assertTrue(passed, output)
        passed, output = openssl_verify(self.path("ca.pem"), self.path("signing-ca.pem"))
        self.assertTrue(passed, output)
        # What re-issuing is for: a chain through the signing CA.
        signing, signing_key = certs.make_signing_ca(new, key, "signing CA")
        certs.write_file(self.path("signing-ca.pem"), certs.certificate_pem(signing))
        leaf, _ = certs.make_leaf(signing, signing_key, "CP1", client=True)
        certs.write_file(self.path("leaf.pem"), certs.certificate_pem(leaf))
        self.assertTrue(openssl_verify(self.path("ca.pem"), self.path("leaf.pem"),
                                       self.path("signing-ca.pem"), "sslclient")[0])
        passed, output = openssl_verify(self.path("old-ca.pem"), self.path("leaf.pem"),
                                        self.path("signing-ca.pem"), "sslclient")
        self.assertFalse(passed)
        self.assertIn("path length", output)

    def test_module_runs_as_a_script(self):
        """
        C{python -m xxterocpp.certs} (what the console script calls).
        """
        result = subprocess.run(
            [sys.executable, "-m", "xxterocpp.certs", "--dir", self.dir, "init-ca"],
            cwd=ROOT, capture_output=True, text=True, check=False)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("root CA written to", result.stdout)
        result = subprocess.run(
            [sys.executable, "-m", "xxterocpp.certs", "--dir", self.dir, "init-ca"],
            cwd=ROOT, capture_output=True, text=True, check=False)
        self.assertEqual(result.returncode, 1)
        self.assertIn("xxterocpp-certs: ", result.stderr)
        self.assertIn("--force", result.stderr)
