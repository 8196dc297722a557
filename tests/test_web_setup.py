"""
The page's setup section and C{GET /ca.pem}: the root certificate that
C{xxterocpp-certs init-ca} wrote beside the server certificate, its
fingerprint, and the OCPP URL a charger is given (L{xxterocpp.web.rootca}).
"""

import hashlib
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.trial.unittest import SynchronousTestCase

from tests.test_web_routes import CONFIG, RoutesTestCase
from xxterocpp import certs
from xxterocpp.config import OcppConfig
from xxterocpp.web.rootca import charger_url


def sha256_of(pem):
    """
    @return: the SHA-256 fingerprint of the certificate in C{pem}, worked
        out here from its DER bytes, colon-separated hex.
    """
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def write_root(directory, name="test root"):
    """
    Write a root CA's ca.pem (and ca.key) into C{directory}, as init-ca does.

    @return: the bytes of ca.pem.
    """
    cert, key = certs.make_ca(name)
    pem = certs.certificate_pem(cert)
    certs.write_file(os.path.join(directory, certs.CA_CERT), pem)
    certs.write_file(os.path.join(directory, certs.CA_KEY), certs.key_pem(key), private=True)
    return pem


class RootCertificateTests(RoutesTestCase):
    """
    C{GET /ca.pem} and what the page says of it, with C{[ocpp] certificate}
    in a directory of the test's.
    """

    def setUp(self):
        self.tls = os.path.abspath(self.mktemp())
        os.makedirs(self.tls)
        self.config_text = CONFIG.replace(
            "[web]", f'[ocpp]\ncertificate = "{self.tls}/server.pem"\n\n[web]')
        super().setUp()

    def test_ca_pem_is_the_file(self):
        """
        C{/ca.pem} is the file beside the server certificate, byte for byte,
        to be saved as ca.pem; the page links it with its SHA-256
        fingerprint.
        """
        pem = write_root(self.tls)
        response = self.request("GET", "/ca.pem")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.body, pem)
        self.assertEqual(response.headers["content-type"], "application/x-pem-file")
        self.assertEqual(response.headers["content-disposition"], 'attachment; filename="ca.pem"')
        page = self.request("GET", "/").body.decode()
        self.assertIn('href="/ca.pem"', page)
        self.assertIn(f'<code id="root-fingerprint">{sha256_of(pem)}</code>', page)

    def test_no_root_certificate_404(self):
        """
        Without a ca.pem there: 404 saying where it was looked for and how
        to make one; the page says there is none.
        """
        self.assertError(self.request("GET", "/ca.pem"), 404, f"{self.tls}/ca.pem",
                         "xxterocpp-certs init-ca")
        page = self.request("GET", "/").body.decode()
        self.assertNotIn('href="/ca.pem"', page)
        self.assertIn("none beside the server certificate", page)

    def test_renewed_file_is_served(self):
        """
        A ca.pem replaced while the service runs is what is served next.
        """
        first = write_root(self.tls, "first root")
        self.assertEqual(self.request("GET", "/ca.pem").body, first)
        second = write_root(self.tls, "second root")
        self.assertEqual(self.request("GET", "/ca.pem").body, second)
        self.assertIn(sha256_of(second), self.request("GET", "/").body.decode())

    def test_not_a_certificate_404(self):
        """
        A ca.pem that holds no certificate is not served.
        """
        with open(os.path.join(self.tls, certs.CA_CERT), "w") as f:
            f.write("not a certificate\n")
        self.assertError(self.request("GET", "/ca.pem"), 404, "init-ca")

    def test_page_shows_the_charger_url(self):
        """
        Without TLS the charger is given C{ws://}, the host the page was
        asked for and the OCPP port.
        """
        page = self.request("GET", "/").body.decode()
        self.assertIn('value="ws://127.0.0.1:8016/"', page)


class SecureSetupTests(RoutesTestCase):
    """
    The page of a controller whose OCPP port is behind TLS.
    """

    def setUp(self):
        tls = os.path.abspath(self.mktemp())
        os.makedirs(tls)
        write_root(tls)
        ca, key = certs.load_ca(tls)
        cert, server_key = certs.make_leaf(ca, key, "knx-controller.local",
                                           dns=["knx-controller.local"],
                                           ips=[ipaddress.ip_address("192.168.1.10")])
        certs.write_file(os.path.join(tls, certs.SERVER_CERT), certs.certificate_pem(cert))
        certs.write_file(os.path.join(tls, certs.SERVER_KEY), certs.key_pem(server_key),
                         private=True)
        self.config_text = CONFIG.replace(
            "[web]", f'[ocpp]\nsecure = true\ncertificate = "{tls}/server.pem"\n'
                     f'private_key = "{tls}/server.key"\n\n[web]')
        super().setUp()

    def test_wss_url_names_the_server_certificate(self):
        """
        The charger is given wss:// and an address the server certificate
        names (the page was asked for as 127.0.0.1, which it does not).
        """
        page = self.request("GET", "/").body.decode()
        self.assertIn('value="wss://192.168.1.10:8016/"', page)
        self.assertIn('id="root-fingerprint"', page)


class ChargerUrlTests(SynchronousTestCase):
    """
    L{charger_url}: the host a charger can use, the port, the scheme.
    """

    def server_certificate(self, dns=("knx-controller.local",), ips=("192.168.1.10",)):
        ca, key = certs.make_ca("root")
        cert, _ = certs.make_leaf(ca, key, (dns or ips)[0], dns=dns,
                                  ips=[ipaddress.ip_address(ip) for ip in ips])
        return cert

    def test_plain_uses_the_browsers_host(self):
        """
        ws://, the host the browser used, the configured port.
        """
        self.assertEqual(charger_url(OcppConfig(port=8016), "192.168.1.10"),
                         "ws://192.168.1.10:8016/")
        self.assertEqual(charger_url(OcppConfig(port=9000), "[fd00::10]"),
                         "ws://[fd00::10]:9000/")

    def test_bound_interface_wins(self):
        """
        An OCPP port bound to one address is reached there only.
        """
        self.assertEqual(charger_url(OcppConfig(interface="10.0.0.5"), "localhost"),
                         "ws://10.0.0.5:8016/")

    def test_secure_uses_a_name_of_the_certificate(self):
        """
        Behind TLS: the browser's host when the certificate names it, else
        the certificate's first IP address, else its first host name.
        """
        secure = OcppConfig(secure=True)
        cert = self.server_certificate()
        self.assertEqual(charger_url(secure, "knx-controller.local", cert),
                         "wss://knx-controller.local:8016/")
        self.assertEqual(charger_url(secure, "127.0.0.1", cert), "wss://192.168.1.10:8016/")
        self.assertEqual(charger_url(secure, "127.0.0.1", self.server_certificate(ips=())),
                         "wss://knx-controller.local:8016/")

    def test_secure_without_certificate(self):
        """
        A certificate that cannot be read leaves the browser's host.
        """
        self.assertEqual(charger_url(OcppConfig(secure=True), "192.168.1.10"),
                         "wss://192.168.1.10:8016/")
