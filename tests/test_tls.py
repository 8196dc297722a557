"""
OCPP Secure over real TLS sockets: the whole service listens on loopback with
C{secure = true} and certificates made with L{xxterocpp.certs}; simulated
chargers connect with wss://. Also the AuthorizationKey rotation.
"""

import ipaddress
import os
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL
from twisted.internet import defer, reactor
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS
from twisted.internet.task import deferLater
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from cryptography.x509.oid import NameOID

from tests.service import BASE_CONFIG, PASSWORD, start_service, write_config
from tests.sim import NO_REPLY, HandshakeRefused, connect_charger
from tests.test_signing import make_csr
from tests.test_web import WebTestCase, web_agent
from xxterocpp import certs, signing, tls
from xxterocpp.config import OcppConfig, load_config
from xxterocpp.store import Store
from xxterocpp.tap import XxterocppService

#: The key the rotation tests give "RDAM 123" (20 bytes as 40 hex digits).
NEW_KEY = "00112233445566778899AABBCCDDEEFF01234567"

_PKI = {}


def pki():
    """
    The certificates of these tests, made once: the controller's CA with a
    server certificate for 127.0.0.1/localhost and client certificates, and
    a second, foreign CA with a client certificate for CP1.

    @return: a dict of PEM bytes by file name.
    """
    if not _PKI:
        ca, ca_key = certs.make_ca("test OCPP root CA")
        server, server_key = certs.make_leaf(ca, ca_key, "localhost", dns=["localhost"],
                                             ips=[ipaddress.ip_address("127.0.0.1")])
        other, other_key = certs.make_ca("foreign CA", key_type="ec")
        # The renewal of the hot-reload test.
        server2, server2_key = certs.make_leaf(ca, ca_key, "localhost", dns=["localhost"])
        # The charger-signing CA below the root, for signed CSRs.
        signing_ca, signing_key = certs.make_signing_ca(ca, ca_key, "test signing CA",
                                                        key_type="ec")
        files = {"ca.pem": ca, "other-ca.pem": other, "server.pem": server,
                 "server2.pem": server2, "signing-ca.pem": signing_ca}
        keys = {"server.key": server_key, "server2.key": server2_key,
                "signing-ca.key": signing_key}
        for name, issuer, issuer_key, identity in (
                ("cp1", ca, ca_key, "CP1"), ("twin", ca, ca_key, "TWIN"),
                ("rdam", ca, ca_key, "RDAM 123"),
                ("foreign-cp1", other, other_key, "CP1")):
            cert, key = certs.make_leaf(issuer, issuer_key, identity, client=True,
                                        key_type="ec")
            files[name + ".pem"], keys[name + ".key"] = cert, key
        _PKI.update({name: certs.certificate_pem(c) for name, c in files.items()})
        _PKI.update({name: certs.key_pem(k) for name, k in keys.items()})
    return _PKI


def secure_config(testcase, client_ca=False, text=BASE_CONFIG):
    """
    Write the PKI and a C{secure = true} configuration into a temporary
    directory.

    @return: C{(config path, TLS directory)}.
    """
    directory = os.path.abspath(testcase.mktemp())
    os.makedirs(directory)
    for name, data in pki().items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)
    ocpp = (
        "[ocpp]\nsecure = true\n"
        f'certificate = "{directory}/server.pem"\nprivate_key = "{directory}/server.key"\n'
        f'client_ca = "{directory + "/ca.pem" if client_ca else ""}"\n'
        f'signing_certificate = "{directory}/signing-ca.pem"\n'
        f'signing_key = "{directory}/signing-ca.key"\n'
        f'root_certificate = "{directory}/ca.pem"\n'
    )
    return write_config(testcase, text.replace("[ocpp]\n", ocpp, 1)), directory


def trusting(ca="ca.pem", client=None):
    """
    A charger's TLS options: trust only C{ca}, check the name "localhost",
    optionally present the client certificate C{client} (a PKI stem).
    """
    files = pki()
    extra = {}
    if client is not None:
        extra["clientCertificate"] = PrivateCertificate.loadPEM(
            files[client + ".pem"] + files[client + ".key"])
    return optionsForClientTLS("localhost", trustRoot=Certificate.loadPEM(files[ca]), **extra)


@implementer(IOpenSSLClientConnectionCreator)
class RawClientTLS:
    """
    A charger TLS stack with a chosen version range and cipher list, as old
    firmware has; it trusts the test CA.
    """

    def __init__(self, max_version, ciphers=b"DEFAULT:@SECLEVEL=0"):
        self.context = SSL.Context(SSL.TLS_METHOD)
        # SECLEVEL=0: OpenSSL 3 would not even offer TLS 1.1 otherwise.
        self.context.set_min_proto_version(SSL.TLS1_VERSION)
        self.context.set_max_proto_version(max_version)
        self.context.set_cipher_list(ciphers)
        self.context.set_verify(SSL.VERIFY_PEER)
        path = os.path.abspath("raw-client-ca.pem")
        with open(path, "wb") as f:
            f.write(pki()["ca.pem"])
        self.context.load_verify_locations(path)

    def clientConnectionForTLS(self, tlsProtocol):
        connection = SSL.Connection(self.context, None)
        connection.set_tlsext_host_name(b"localhost")
        return connection


class ChainClientTLS(RawClientTLS):
    """
    A charger presenting a client certificate with the CA certificates after
    it, as CertificateSigned gave it.
    """

    def __init__(self, chain_path, key_path):
        super().__init__(SSL.TLS1_3_VERSION, b"DEFAULT")
        self.context.use_certificate_chain_file(chain_path)
        self.context.use_privatekey_file(key_path)


def peer_certificate(charger):
    """
    @return: the server certificate a connected simulated charger got, as a
        cryptography certificate.
    """
    return charger._protocol.transport.getPeerCertificate().to_cryptography()


def tls_connection(charger):
    return charger._protocol.transport.getHandle()


class SecureTestCase(TestCase):
    """
    Runs the service with secure = true.
    """

    client_ca = False
    text = BASE_CONFIG

    @defer.inlineCallbacks
    def setUp(self):
        self.events = self.enterContext(capturedLogs())
        self.config_path, self.tls_dir = secure_config(self, self.client_ca, self.text)
        self.service = yield start_service(self, self.config_path)
        self.url = self.service.url.replace("ws://", "wss://")

    def logged(self):
        """
        @return: the text of every event logged since the set-up.
        """
        return [formatEvent(event) for event in self.events]

    def connect(self, identity="CP1", tls_options=None, **kwargs):
        d = connect_charger(self.url, identity,
                            tls=tls_options if tls_options is not None else trusting(),
                            **kwargs)
        d.addCallback(self._close_at_cleanup)
        return d

    def _close_at_cleanup(self, charger):
        self.addCleanup(charger.close)
        return charger

    @defer.inlineCallbacks
    def refused(self, *args, **kwargs):
        """
        Connect, expecting the connection to fail.

        @return: the exception.
        """
        try:
            charger = yield self.connect(*args, **kwargs)
        except Exception as e:
            return e
        self.fail(f"{charger!r} was let in")

    @defer.inlineCallbacks
    def failures(self, kind, expected):
        """
        Wait (briefly) for the service's failure counter C{kind} to reach
        C{expected}: the server may see a TLS alert after the client gave up.
        """
        for _ in range(100):
            if self.service.security_failures()[kind] >= expected:
                break
            yield deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(self.service.security_failures()[kind], expected)


class SecureProfile2Tests(SecureTestCase):
    """
    Security profile 2: TLS server certificate, Basic auth.
    """

    @defer.inlineCallbacks
    def test_charger_trusting_the_ca_connects(self):
        """
        A charger that trusts only the generated root CA connects, over TLS
        1.2 or newer, and talks OCPP.
        """
        charger = yield self.connect()
        response = yield charger.boot()
        self.assertEqual(response["status"], "Accepted")
        self.assertIn(tls_connection(charger).get_protocol_version_name(), ("TLSv1.2", "TLSv1.3"))
        self.assertEqual(self.service.security_failures(), {"auth": 0, "tls": 0})

    @defer.inlineCallbacks
    def test_charger_not_trusting_the_ca_fails(self):
        """
        A charger trusting another CA refuses the server; the service logs
        and counts the failed TLS handshake.
        """
        error = yield self.refused(tls_options=trusting("other-ca.pem"))
        self.assertIsInstance(error, SSL.Error)
        yield self.failures("tls", 1)

    @defer.inlineCallbacks
    def test_plain_ws_is_not_served(self):
        """
        While secure, ws:// gets no WebSocket: the port speaks only TLS.
        """
        error = yield defer.maybeDeferred(connect_charger, self.service.url, "CP1").addCallbacks(
            lambda charger: self.fail("plain ws:// was served"), lambda failure: failure.value)
        self.assertNotIsInstance(error, HandshakeRefused)
        yield self.failures("tls", 1)

    @defer.inlineCallbacks
    def test_tls_1_1_is_refused(self):
        """
        A charger offering at most TLS 1.1 is refused by the server ("unsupported
        protocol" on the server side, so the client did offer 1.1); the same
        client stack allowed TLS 1.2 connects.
        """
        error = yield self.refused(tls_options=RawClientTLS(SSL.TLS1_1_VERSION))
        self.assertIsInstance(error, SSL.Error)
        yield self.failures("tls", 1)
        self.assertIn("TLS connection from 127.0.0.1 failed: unsupported protocol", self.logged())
        charger = yield self.connect(tls_options=RawClientTLS(SSL.TLS1_2_VERSION))
        connection = tls_connection(charger)
        self.assertEqual(connection.get_protocol_version_name(), "TLSv1.2")
        # An AEAD suite with forward secrecy, the server's first choice.
        self.assertEqual(connection.get_cipher_name(), "ECDHE-RSA-AES128-GCM-SHA256")

    @defer.inlineCallbacks
    def test_cbc_only_charger_is_refused(self):
        """
        No CBC suites: a TLS 1.2 charger offering only those is refused.
        """
        yield self.refused(tls_options=RawClientTLS(SSL.TLS1_2_VERSION,
                                                    b"AES128-SHA:AES256-SHA:@SECLEVEL=0"))
        yield self.failures("tls", 1)

    @defer.inlineCallbacks
    def test_basic_auth_over_wss(self):
        """
        Basic auth missing or wrong: 401 over wss; the right key (raw bytes
        of the hex key, or the text) connects.
        """
        error = yield self.refused("RDAM 123")
        self.assertEqual(error.status, 401)
        error = yield self.refused("RDAM 123", auth=("RDAM 123", b"wrong"))
        self.assertEqual(error.status, 401)
        yield self.failures("auth", 2)
        charger = yield self.connect("RDAM 123", auth=("RDAM 123", bytes.fromhex(PASSWORD)))
        yield charger.close()
        yield self.connect("RDAM 123", auth=("RDAM 123", PASSWORD))

    @defer.inlineCallbacks
    def test_certificate_hot_reload(self):
        """
        A renewed certificate is served after reload() (SIGHUP) to new
        connections, while a connected charger stays connected; broken new
        files are refused and the running certificate stays.
        """
        first = yield self.connect()
        old_serial = peer_certificate(first).serial_number
        certs.write_file(os.path.join(self.tls_dir, "server.key"), pki()["server2.key"],
                         private=True)
        certs.write_file(os.path.join(self.tls_dir, "server.pem"), pki()["server2.pem"])
        self.assertTrue(self.service.reload())
        second = yield self.connect("TWIN")
        new_serial = peer_certificate(second).serial_number
        self.assertNotEqual(new_serial, old_serial)
        self.assertTrue(first.is_open)
        response = yield first.heartbeat()
        self.assertIn("currentTime", response)

        with open(os.path.join(self.tls_dir, "server.pem"), "wb") as f:
            f.write(b"not a certificate\n")
        self.service.reload()
        third = yield self.connect("RDAM 123", auth=("RDAM 123", PASSWORD))
        self.assertEqual(peer_certificate(third).serial_number, new_serial)


class SecureProfile3Tests(SecureTestCase):
    """
    Security profile 3: chargers present client certificates of client_ca.
    """

    client_ca = True

    @defer.inlineCallbacks
    def test_valid_client_certificate_connects(self):
        charger = yield self.connect("CP1", trusting(client="cp1"))
        response = yield charger.boot()
        self.assertEqual(response["status"], "Accepted")

    @defer.inlineCallbacks
    def test_certificate_signed_by_the_signing_ca_connects(self):
        """
        A certificate the signing CA made from the charger's CSR, presented
        with the signing CA after it, is verified up to client_ca (the root);
        the certificate alone does not verify: 403.
        """
        signer = signing.ChargerSigner(os.path.join(self.tls_dir, "signing-ca.pem"),
                                       os.path.join(self.tls_dir, "signing-ca.key"))
        key = ec.generate_private_key(ec.SECP256R1())
        chain = signer.sign(make_csr(key), "CP1").certificate_chain.encode("ascii")
        path = os.path.join(self.tls_dir, "signed-cp1")
        certs.write_file(path + ".key", certs.key_pem(key), private=True)
        certs.write_file(path + "-chain.pem", chain)
        leaf = x509.load_pem_x509_certificate(chain)
        certs.write_file(path + ".pem", certs.certificate_pem(leaf))
        charger = yield self.connect("CP1", ChainClientTLS(path + "-chain.pem", path + ".key"))
        response = yield charger.boot()
        self.assertEqual(response["status"], "Accepted")
        error = yield self.refused("CP1", ChainClientTLS(path + ".pem", path + ".key"))
        self.assertEqual(error.status, 403)
        self.assertEqual(self.service.security_failures(), {"auth": 1, "tls": 0})
        self.assertIn("CP1: connection from 127.0.0.1 refused: its client certificate does not"
                      " verify (unable to get local issuer certificate)", self.logged())

    @defer.inlineCallbacks
    def test_identity_case_follows_the_configuration(self):
        """
        The CN is matched like the URL identity: case differences are
        tolerated, it is the same configured charger.
        """
        charger = yield self.connect("cp1", trusting(client="cp1"))
        response = yield charger.boot()
        self.assertEqual(response["status"], "Accepted")
        self.assertTrue(self.service.central.chargers["CP1"].connected)
        self.assertEqual(self.service.security_failures(), {"auth": 0, "tls": 0})

    @defer.inlineCallbacks
    def test_no_client_certificate_is_refused(self):
        """
        TLS asks for a certificate without requiring one (profile-2 chargers
        share the port); the profile-3 charger without one gets 403.
        """
        error = yield self.refused("CP1", trusting())
        self.assertEqual(error.status, 403)
        self.assertEqual(self.service.security_failures(), {"auth": 1, "tls": 0})
        self.assertIn("CP1: connection from 127.0.0.1 refused: no client certificate (security"
                      " profile 3)", self.logged())

    @defer.inlineCallbacks
    def test_certificate_of_another_ca_is_refused(self):
        error = yield self.refused("CP1", trusting(client="foreign-cp1"))
        self.assertEqual(error.status, 403)
        self.assertIn("CP1: connection from 127.0.0.1 refused: its client certificate does not"
                      " verify (unable to get local issuer certificate)", self.logged())

    @defer.inlineCallbacks
    def test_certificate_of_another_identity_is_refused(self):
        """
        TWIN's valid certificate does not open CP1's connection: 403.
        """
        error = yield self.refused("CP1", trusting(client="twin"))
        self.assertEqual(error.status, 403)
        self.assertEqual(self.service.security_failures(), {"auth": 1, "tls": 0})


class WrongClockProfile3Tests(TestCase):
    """
    Security profile 3 while the system clock is wrong: it reads three
    years before the time the service trusted (as a controller without a
    battery-backed clock reads 1970 before NTP): client certificates are
    judged by the trusted time (docs/architecture.md#time).
    """

    AHEAD = timedelta(days=3 * 365)

    @defer.inlineCallbacks
    def setUp(self):
        self.events = self.enterContext(capturedLogs())
        self.config_path, self.tls_dir = secure_config(self, client_ca=True)
        self.trusted = datetime.now(timezone.utc) + self.AHEAD
        store = Store(load_config(self.config_path).storage.database, reactor)
        store.open()
        yield store.put_setting("central", "trusted_time", self.trusted.isoformat())
        yield store.close()
        self.service = yield start_service(self, self.config_path)
        self.url = self.service.url.replace("ws://", "wss://")
        self.assertFalse(self.service.central.time.ok)

    def signed(self, now):
        """
        @return: the TLS options of CP1 presenting a certificate the
            signing CA made at C{now} (valid from a day before, two years).
        """
        signer = signing.ChargerSigner(os.path.join(self.tls_dir, "signing-ca.pem"),
                                       os.path.join(self.tls_dir, "signing-ca.key"))
        key = ec.generate_private_key(ec.SECP256R1())
        chain = signer.sign(make_csr(key), "CP1", now).certificate_chain.encode("ascii")
        path = os.path.join(self.tls_dir, f"cp1-{now:%Y%m%d}")
        certs.write_file(path + ".key", certs.key_pem(key), private=True)
        certs.write_file(path + "-chain.pem", chain)
        return ChainClientTLS(path + "-chain.pem", path + ".key")

    @defer.inlineCallbacks
    def test_certificate_valid_at_the_trusted_time_connects(self):
        """
        A certificate not yet valid by the system clock, valid by the
        trusted time: the charger connects.
        """
        charger = yield connect_charger(self.url, "CP1", tls=self.signed(self.trusted))
        self.addCleanup(charger.close)
        self.assertEqual((yield charger.boot())["status"], "Accepted")

    @defer.inlineCallbacks
    def test_certificate_not_yet_valid_at_the_trusted_time_connects(self):
        """
        A certificate valid only from a year after the time given out: while
        the clock is wrong, that time is a lower bound of the real one, not
        the real one (the controller lay on a shelf for a year, and booted
        at 1970), so its start is not held against it; its end is.
        """
        charger = yield connect_charger(
            self.url, "CP1", tls=self.signed(self.trusted + timedelta(days=365)))
        self.addCleanup(charger.close)
        self.assertEqual((yield charger.boot())["status"], "Accepted")

    @defer.inlineCallbacks
    def test_certificate_expired_at_the_trusted_time_is_refused(self):
        """
        A certificate valid by the system clock that ended before the
        trusted time is refused.
        """
        try:
            charger = yield connect_charger(self.url, "CP1",
                                            tls=self.signed(datetime.now(timezone.utc)))
        except HandshakeRefused as e:
            self.assertEqual(e.status, 403)
        else:
            self.addCleanup(charger.close)
            self.fail("a certificate expired by the trusted time was let in")
        self.assertIn("CP1: connection from 127.0.0.1 refused: its client certificate does not"
                      " verify (certificate has expired)",
                      [formatEvent(event) for event in self.events])


class KeyRotationTests(SecureTestCase):
    """
    ChangeConfiguration(AuthorizationKey) (white paper A01), end to end.
    """

    text = BASE_CONFIG.replace("call_timeout = 5", "call_timeout = 1")

    def key(self, password):
        return dict(auth=("RDAM 123", password))

    @defer.inlineCallbacks
    def rotate(self, answer=None):
        charger = yield self.connect("RDAM 123", **self.key(PASSWORD))
        yield charger.boot()
        if answer is not None:
            charger.handlers["ChangeConfiguration"] = answer
        security = self.service.controller.security
        status = yield security.change_authorization_key("RDAM 123", NEW_KEY)
        return charger, status

    @defer.inlineCallbacks
    def test_accepted_key_replaces_the_old_one_across_restarts(self):
        """
        Accepted: the charger has the new key; the old one is refused from
        then on, the new one (as raw bytes or text) accepted, also after a
        restart of the service.
        """
        charger, status = yield self.rotate()
        self.assertEqual(status, "Accepted")
        self.assertEqual(charger.configuration["AuthorizationKey"].value, NEW_KEY)
        frames = [text for _, _, text in self.service.central.chargers["RDAM 123"].frames]
        self.assertEqual([text for text in frames if NEW_KEY in text], [])
        self.assertTrue([text for text in frames if '"value":"********"' in text.replace(" ", "")])
        yield charger.close()
        error = yield self.refused("RDAM 123", **self.key(PASSWORD))
        self.assertEqual(error.status, 401)
        again = yield self.connect("RDAM 123", **self.key(bytes.fromhex(NEW_KEY)))
        yield again.close()

        yield self.service.stopService()
        self.service = yield start_service(self, self.config_path)
        self.url = self.service.url.replace("ws://", "wss://")
        error = yield self.refused("RDAM 123", **self.key(PASSWORD))
        self.assertEqual(error.status, 401)
        yield self.connect("RDAM 123", **self.key(NEW_KEY))
        # A01.FR.09: keys are never logged.
        self.assertIn("RDAM 123: connection from 127.0.0.1 refused: wrong password", self.logged())
        self.assertEqual([line for line in self.logged() if NEW_KEY in line or PASSWORD in line],
                         [])

    @defer.inlineCallbacks
    def test_rejected_key_keeps_the_old_one(self):
        charger, status = yield self.rotate(lambda payload: {"status": "Rejected"})
        self.assertEqual(status, "Rejected")
        yield charger.close()
        error = yield self.refused("RDAM 123", **self.key(NEW_KEY))
        self.assertEqual(error.status, 401)
        yield self.connect("RDAM 123", **self.key(PASSWORD))

    @defer.inlineCallbacks
    def test_lost_answer_accepts_the_key_the_charger_comes_back_with(self):
        """
        No answer: the charger may or may not have the new key, so both work
        until it connects with one; then only that one.
        """
        charger, status = yield self.rotate(lambda payload: NO_REPLY)
        self.assertEqual(status, "Timeout")
        yield charger.close()
        again = yield self.connect("RDAM 123", **self.key(NEW_KEY))
        yield again.close()
        error = yield self.refused("RDAM 123", **self.key(PASSWORD))
        self.assertEqual(error.status, 401)

    @defer.inlineCallbacks
    def test_lost_answer_then_the_old_key(self):
        charger, status = yield self.rotate(lambda payload: NO_REPLY)
        yield charger.close()
        again = yield self.connect("RDAM 123", **self.key(PASSWORD))
        yield again.close()
        error = yield self.refused("RDAM 123", **self.key(NEW_KEY))
        self.assertEqual(error.status, 401)

    def test_bad_keys_are_refused_at_once(self):
        for key in ("short", "0011", "G" * 40, "x" * 21, "00" * 21, "a:" * 9):
            self.assertRaises(ValueError,
                              self.service.controller.security.change_authorization_key,
                              "RDAM 123", key)


#: RDAM 123 at profile 2 beside CP1 and TWIN at 3 (client_ca is set).
MIXED_CONFIG = BASE_CONFIG.replace('password = "{password}"\n',
                                   'password = "{password}"\nsecurity_profile = 2\n')


class SecureWebTestCase(SecureTestCase):
    """
    The secure service and an HTTP client of its web interface.
    """

    credentials = None
    http, get, post = WebTestCase.http, WebTestCase.get, WebTestCase.post

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.agent = web_agent(self)
        yield self.serve_web()

    @defer.inlineCallbacks
    def serve_web(self):
        port = yield self.service.web.when_listening()
        self.base = f"http://127.0.0.1:{port.getHost().port}"

    @defer.inlineCallbacks
    def restart(self):
        yield self.service.stopService()
        self.service = yield start_service(self, self.config_path)
        self.url = self.service.url.replace("ws://", "wss://")
        yield self.serve_web()

    def rdam(self, key=PASSWORD, **kwargs):
        return self.connect("RDAM 123", auth=("RDAM 123", key), **kwargs)

    @defer.inlineCallbacks
    def status_of(self, charger_id):
        response = yield self.get("/api/status")
        return next(c for c in response.json["chargers"] if c["id"] == charger_id)


class MixedProfilesTests(SecureWebTestCase):
    """
    Profiles 2 and 3 on one TLS port at once.
    """

    client_ca = True
    text = MIXED_CONFIG

    @defer.inlineCallbacks
    def test_profile_2_and_3_side_by_side(self):
        """
        CP1 with its certificate and RDAM 123 with Basic auth are connected
        at once; RDAM 123 is let in without a certificate and with any
        certificate (its own, another charger's, another CA's).
        """
        cp1 = yield self.connect("CP1", trusting(client="cp1"))
        rdam = yield self.rdam()
        for charger in (cp1, rdam):
            self.assertEqual((yield charger.boot())["status"], "Accepted")
        for client in ("rdam", "cp1", "foreign-cp1"):
            again = yield self.rdam(tls_options=trusting(client=client))
            yield again.close()
        self.assertTrue(cp1.is_open)
        self.assertIn("currentTime", (yield cp1.heartbeat()))
        self.assertEqual(self.service.security_failures(), {"auth": 0, "tls": 0})
        status = yield self.status_of("CP1")
        self.assertEqual(status["security_profile"], 3)
        self.assertEqual(status["certificate"]["serial"], format(
            x509.load_pem_x509_certificate(pki()["cp1.pem"]).serial_number, "x"))
        self.assertEqual((yield self.status_of("RDAM 123"))["security_profile"], 2)

    @defer.inlineCallbacks
    def test_profile_2_is_held_to_basic_auth(self):
        """
        Its own valid certificate does not replace RDAM 123's key: 401.
        """
        error = yield self.refused("RDAM 123", trusting(client="rdam"))
        self.assertEqual(error.status, 401)
        error = yield self.refused("RDAM 123", trusting(client="rdam"),
                                   auth=("RDAM 123", b"wrong"))
        self.assertEqual(error.status, 401)

    @defer.inlineCallbacks
    def test_profile_3_refusals_beside_a_profile_2_charger(self):
        """
        With RDAM 123 connected, CP1 is refused without a certificate, with
        one of another CA and with another charger's (403), even with RDAM
        123's key.
        """
        rdam = yield self.rdam()
        for client in (None, "foreign-cp1", "twin", "rdam"):
            error = yield self.refused("CP1", trusting(client=client),
                                       auth=("CP1", PASSWORD))
            self.assertEqual(error.status, 403, client)
        self.assertTrue(rdam.is_open)
        self.assertEqual(self.service.security_failures(), {"auth": 4, "tls": 0})


class ProfileRaiseTests(SecureWebTestCase):
    """
    RDAM 123 from profile 2 to 3 (white paper A05), the certificate signed
    on the way (A02), over TLS and the HTTP API.
    """

    client_ca = True
    text = MIXED_CONFIG.replace("call_timeout = 5", "call_timeout = 1")

    @defer.inlineCallbacks
    def signed_certificate(self, charger):
        """
        SignCertificate from C{charger}, answered by CertificateSigned.

        @return: the paths of the chain and the key it got.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        answer = yield charger.call("SignCertificate", {
            "csr": make_csr(key, (NameOID.COMMON_NAME, "RDAM 123"))})
        self.assertEqual(answer, {"status": "Accepted"})
        _, payload = yield charger.wait_for_call("CertificateSigned")
        path = os.path.join(self.tls_dir, "signed-rdam")
        certs.write_file(path + ".key", certs.key_pem(key), private=True)
        certs.write_file(path + ".pem", payload["certificateChain"].encode("ascii"))
        for _ in range(100):
            if self.service.central.security.certificate("RDAM 123") is not None:
                break
            yield deferLater(reactor, 0.02, lambda: None)
        return path + ".pem", path + ".key"

    @defer.inlineCallbacks
    def test_raise_from_2_to_3(self):
        """
        Refused without a certificate; then signed, raised (ChangeConfiguration
        and Reset), connected at 3: Basic auth alone is refused from then on,
        also after a restart.
        """
        charger = yield self.rdam()
        yield charger.boot()
        path = "/api/chargers/RDAM%20123/security-profile"
        response = yield self.post(path, {"profile": 3})
        self.assertEqual(response.code, 409, response.body)
        self.assertIn("no valid client certificate", response.json["error"])
        chain, key = yield self.signed_certificate(charger)
        self.assertEqual((yield self.status_of("RDAM 123"))["certificate"]["serial"],
                         self.service.central.security.certificate("RDAM 123").serial)
        response = yield self.post(path, {"profile": 3})
        self.assertEqual(response.code, 200, response.body)
        self.assertEqual(charger.configuration["SecurityProfile"].value, "3")
        yield charger.wait_for_call("Reset")
        self.assertEqual((yield self.status_of("RDAM 123"))["security_profile_pending"], 3)
        # The reset: still at 2 until it connected at 3.
        yield charger.close()
        yield (yield self.rdam()).close()
        at_3 = yield self.connect("RDAM 123", ChainClientTLS(chain, key))
        self.assertEqual((yield at_3.boot())["status"], "Accepted")
        self.assertEqual((yield self.status_of("RDAM 123"))["security_profile"], 3)
        yield at_3.close()
        for _ in range(2):
            error = yield self.refused("RDAM 123", auth=("RDAM 123", PASSWORD))
            self.assertEqual(error.status, 403)
            yield (yield self.connect("RDAM 123", ChainClientTLS(chain, key))).close()
            yield self.restart()
        response = yield self.post(path, {"profile": 2})
        self.assertEqual(response.code, 409)
        self.assertIn("lower it with security_profile in the configuration",
                      response.json["error"])

    @defer.inlineCallbacks
    def test_bad_requests(self):
        yield self.rdam()
        for body in ({}, {"profile": 4}, {"profile": "3"}, {"profile": True}):
            response = yield self.post("/api/chargers/RDAM%20123/security-profile", body)
            self.assertEqual(response.code, 400, body)

    @defer.inlineCallbacks
    def test_renewal_and_root_certificate_through_the_api(self):
        charger = yield self.rdam()
        response = yield self.post("/api/chargers/RDAM%20123/certificate")
        self.assertEqual(response.code, 200, response.body)
        _, payload = yield charger.wait_for_call("ExtendedTriggerMessage")
        self.assertEqual(payload, {"requestedMessage": "SignChargePointCertificate"})
        response = yield self.post("/api/chargers/RDAM%20123/root-certificate")
        self.assertEqual(response.code, 200, response.body)
        _, payload = yield charger.wait_for_call("InstallCertificate")
        self.assertEqual(payload, {"certificateType": "CentralSystemRootCertificate",
                                   "certificate": pki()["ca.pem"].decode()})


class KeysFromOutsideTests(SecureWebTestCase):
    """
    Keys the central system did not send: set over the API, changed in the
    configuration file, or sent with the raw API.
    """

    text = BASE_CONFIG.replace("call_timeout = 5", "call_timeout = 1")

    @defer.inlineCallbacks
    def test_put_key_stores_it_without_a_call(self):
        charger = yield self.rdam()
        yield charger.boot()
        # The post-boot set-up ends with the local list.
        yield charger.wait_for_call("SendLocalList")
        calls = len(charger.calls_received)
        response = yield self.http("PUT", "/api/chargers/RDAM%20123/password",
                                   {"password": "typed on its screen"})
        self.assertEqual((response.code, response.json), (200, {"stored": True}))
        self.assertEqual(len(charger.calls_received), calls)
        yield charger.close()
        error = yield self.refused("RDAM 123", auth=("RDAM 123", PASSWORD))
        self.assertEqual(error.status, 401)
        yield self.restart()
        yield self.rdam("typed on its screen")
        for body in ({}, {"password": ""}, {"password": 5}):
            response = yield self.http("PUT", "/api/chargers/RDAM%20123/password", body)
            self.assertEqual(response.code, 400, body)
        response = yield self.http("PUT", "/api/chargers/NOPE/password", {"password": "x"})
        self.assertEqual(response.code, 404)

    @defer.inlineCallbacks
    def test_raw_authorization_key_change_then_reconnect(self):
        """
        ChangeConfiguration(AuthorizationKey) through the raw API, accepted:
        the charger comes back with the new key, the old one is refused.
        """
        charger = yield self.rdam()
        yield charger.boot()
        response = yield self.post("/api/chargers/RDAM%20123/ocpp/ChangeConfiguration",
                                   {"key": "AuthorizationKey", "value": NEW_KEY})
        self.assertEqual((response.code, response.json), (200, {"status": "Accepted"}))
        self.assertEqual(charger.configuration["AuthorizationKey"].value, NEW_KEY)
        yield charger.close()
        yield (yield self.rdam(bytes.fromhex(NEW_KEY))).close()
        error = yield self.refused("RDAM 123", auth=("RDAM 123", PASSWORD))
        self.assertEqual(error.status, 401)

    @defer.inlineCallbacks
    def test_changed_configuration_password_wins(self):
        """
        A reload with the password unchanged keeps the rotated key; a new
        password in the file replaces it.
        """
        charger = yield self.rdam()
        yield charger.boot()
        self.assertEqual(
            (yield self.service.controller.security.change_authorization_key("RDAM 123", NEW_KEY)),
            "Accepted")
        yield charger.close()
        self.assertTrue(self.service.reload())
        yield (yield self.rdam(NEW_KEY)).close()
        with open(self.config_path) as f:
            text = f.read()
        with open(self.config_path, "w") as f:
            f.write(text.replace(PASSWORD, "edited-in-the-file"))
        self.assertTrue(self.service.reload())
        error = yield self.refused("RDAM 123", auth=("RDAM 123", NEW_KEY))
        self.assertEqual(error.status, 401)
        yield (yield self.rdam("edited-in-the-file")).close()
        yield self.restart()
        yield self.rdam("edited-in-the-file")


class ServerContextTests(SynchronousTestCase):
    """
    L{tls.server_context} without sockets.
    """

    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        for name, data in pki().items():
            with open(os.path.join(self.dir, name), "wb") as f:
                f.write(data)

    def ocpp(self, certificate="server.pem", private_key="server.key", client_ca=""):
        return OcppConfig(
            certificate=os.path.join(self.dir, certificate),
            private_key=os.path.join(self.dir, private_key),
            client_ca=client_ca and os.path.join(self.dir, client_ca))

    def test_no_compression(self):
        options = tls.server_context(self.ocpp()).set_options(0)
        self.assertTrue(options & SSL.OP_NO_COMPRESSION)
        self.assertTrue(options & SSL.OP_NO_TICKET)

    def test_unusable_files_name_the_key(self):
        """
        A missing file, a key of another certificate, a file that is no
        certificate: one line naming the configuration key and the file.
        """
        cases = [
            (self.ocpp(certificate="missing.pem"), "ocpp.certificate", "missing.pem"),
            (self.ocpp(certificate="server.key"), "ocpp.certificate", "server.key"),
            (self.ocpp(private_key="cp1.key"), "ocpp.private_key", "does not belong"),
            (self.ocpp(client_ca="missing.pem"), "ocpp.client_ca", "missing.pem"),
        ]
        for ocpp, key, text in cases:
            error = self.assertRaises(tls.TLSConfigurationError, tls.server_context, ocpp)
            self.assertEqual(error.key, key)
            self.assertIn(text, str(error))
            self.assertNotIn("\n", str(error))

    def test_chain_served_as_configured(self):
        """
        The certificate file's chain (leaf first) goes to the client whole.
        """
        with open(os.path.join(self.dir, "chain.pem"), "wb") as f:
            f.write(pki()["server.pem"] + pki()["ca.pem"])
        server = SSL.Connection(tls.server_context(self.ocpp(certificate="chain.pem")), None)
        server.set_accept_state()
        client_context = SSL.Context(SSL.TLS_METHOD)
        client = SSL.Connection(client_context, None)
        client.set_connect_state()
        for _ in range(10):
            for a, b in ((client, server), (server, client)):
                try:
                    a.do_handshake()
                except SSL.WantReadError:
                    pass
                try:
                    b.bio_write(a.bio_read(65536))
                except SSL.WantReadError:
                    pass
        chain = [c.to_cryptography() for c in client.get_peer_cert_chain()]
        self.assertEqual([certs.certificate_pem(c) for c in chain],
                         [pki()["server.pem"], pki()["ca.pem"]])

    def test_bad_tls_file_stops_the_start_with_one_line(self):
        """
        The certificate files are read at start: an unusable one ends the
        start with the configuration's one-line error.
        """
        path, directory = secure_config(self)
        with open(os.path.join(directory, "server.pem"), "wb") as f:
            f.write(b"garbage\n")
        error = self.assertRaises(SystemExit, XxterocppService, load_config(path), reactor)
        self.assertIn(f"xxterocpp: {path}: ocpp.certificate: ", str(error.code))
        self.assertNotIn("\n", str(error.code))
