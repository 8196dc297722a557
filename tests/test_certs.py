"""
Tests for L{xxterocpp.certs}, the C{xxterocpp-certs} tool.
"""

import io
import ipaddress
import os
import subprocess
import sys

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.trial.unittest import SynchronousTestCase

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
        init-ca writes ca.pem (a self-signed CA limited to end entities) and
        ca.key readable by its owner only; it prints the fingerprint.
        """
        status, out = self.run_tool("init-ca")
        self.assertEqual(status, 0)
        ca = read_cert(self.path("ca.pem"))
        constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
        self.assertEqual((constraints.ca, constraints.path_length), (True, 0))
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
