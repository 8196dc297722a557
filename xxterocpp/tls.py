# -*- test-case-name: tests.test_tls -*-
"""
The TLS side of the OCPP server (OCPP Secure, wss://): security profile 2
(server certificate, chargers authenticate with Basic auth) and, with
C{client_ca}, profile 3 (chargers present a client certificate).

Profiles 2 and 3 share the port: with C{client_ca} the handshake asks every
charger for a certificate without requiring one, and a certificate that
does not verify does not end the handshake either. TLS only records what it
found (L{client_certificate}); the WebSocket handshake decides with the
charger's profile (docs/ocpp.md#security-profiles).

The OpenSSL context is built here with pyOpenSSL directly rather than with
Twisted's C{CertificateOptions}: its defaults differ between Twisted 22.4
(TLS 1.0 allowed) and 26, pyOpenSSL 26 deprecates the X509/PKey objects it
takes, and the certificate chain is served exactly as the PEM file has it.
"""

import weakref

import attr
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator, ISSLTransport
from zope.interface import implementer


#: TLS 1.2 suites, forward-secret AEAD first, then the suites the white paper
#: requires a central system to offer (TLS_RSA_WITH_AES_*_GCM_*); no CBC, no
#: RC4, no SHA-1 MACs. TLS 1.3 suites are OpenSSL's, all AEAD.
CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "AES128-GCM-SHA256:AES256-GCM-SHA384"
)

#: No TLS compression (CRIME; white paper), the server's cipher order, no
#: renegotiation, and no session tickets: a resumed session would skip the
#: client-certificate check of a C{client_ca} changed by a reload.
OPTIONS = (SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_NO_RENEGOTIATION
           | SSL.OP_NO_TICKET | SSL.OP_SINGLE_ECDH_USE)


class TLSConfigurationError(Exception):
    """
    A certificate, key or CA file that cannot be used.

    @ivar key: the configuration key naming the file (C{"ocpp.certificate"}).
    @ivar problem: the file and what is wrong with it, for a person.
    """

    def __init__(self, key, problem):
        super().__init__(key, problem)
        self.key = key
        self.problem = problem

    def __str__(self):
        return f"{self.key}: {self.problem}"


def openssl_reason(error):
    """
    @return: the reasons of a pyOpenSSL error, for a log line.
    """
    # pyOpenSSL's errors are lists of (library, function, reason) tuples.
    entries = error.args[0] if error.args and isinstance(error.args[0], list) else []
    reasons = [entry[-1] for entry in entries if isinstance(entry, tuple) and entry[-1]]
    return "; ".join(reasons) or str(error)


def _load(key, path, load):
    try:
        load(path)
    except SSL.Error as e:
        raise TLSConfigurationError(key, f"{path!r}: {openssl_reason(e)}") from None
    except OSError as e:
        raise TLSConfigurationError(key, f"{path!r}: {e.strerror}") from None


def server_context(ocpp):
    """
    A new OpenSSL context for the OCPP server.

    @param ocpp: the C{[ocpp]} configuration (C{certificate}: leaf first then
        the chain; C{private_key}; C{client_ca}: "" or a PEM bundle).
    @raise TLSConfigurationError: when a file is missing or unusable.
    """
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(OPTIONS)
    context.set_cipher_list(CIPHERS.encode("ascii"))
    context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    # OpenSSL refuses client certificates without a session id context.
    context.set_session_id(b"xxterocpp")
    _load("ocpp.certificate", ocpp.certificate, context.use_certificate_chain_file)
    _load("ocpp.private_key", ocpp.private_key, context.use_privatekey_file)
    try:
        context.check_privatekey()
    except SSL.Error:
        raise TLSConfigurationError(
            "ocpp.private_key",
            f"{ocpp.private_key!r} does not belong to the certificate {ocpp.certificate!r}",
        ) from None
    if ocpp.client_ca:
        # Security profile 3 beside 2: a certificate is asked for, verified
        # against this CA and its outcome recorded, but neither its absence
        # nor its failure ends the handshake here; a profile-2 charger does
        # not need one. The WebSocket handshake decides, once the identity
        # in the URL is known.
        _load("ocpp.client_ca", ocpp.client_ca, context.load_verify_locations)
        context.set_verify(SSL.VERIFY_PEER, _record_verification)
    return context


#: X.509 verification errors (OpenSSL's numbers) in words, for the log line
#: of a refused certificate.
_VERIFY_ERRORS = {
    2: "unable to get issuer certificate",
    7: "certificate signature failure",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate",
    19: "self-signed certificate in certificate chain",
    20: "unable to get local issuer certificate",
    21: "unable to verify the first certificate",
    24: "invalid CA certificate",
    26: "unsupported certificate purpose",
}


#: The first problem the verification of a connection's client certificate
#: found, by connection (Twisted keeps the app data for itself).
_PROBLEMS = weakref.WeakKeyDictionary()


#: The connections made while the system clock is wrong: the time their
#: certificates are verified at (the time given out) is a lower bound of the
#: real one, so a certificate's start after it is no fault
#: (docs/clock.md#certificates).
_EARLY = weakref.WeakSet()

#: OpenSSL's X509_V_ERR_CERT_NOT_YET_VALID.
_NOT_YET_VALID = 9


def _record_verification(connection, certificate, errno, depth, ok):
    if not ok and not (errno == _NOT_YET_VALID and connection in _EARLY):
        _PROBLEMS.setdefault(connection, _VERIFY_ERRORS.get(
            errno, f"X.509 verification error {errno}"))
    # The handshake goes on: the WebSocket handshake reads the outcome.
    return True


#: The L{ClientCertificate.problem} of a certificate that cannot be read.
UNREADABLE = "the certificate cannot be read"


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ClientCertificate:
    """
    The client certificate a charger presented.

    @ivar common_name: its subject's CN (C{""} without one).
    @ivar serial: its serial number (L{xxterocpp.signing.certificate_info}).
    @ivar not_after: the end of its validity (UTC); None for one
        L{UNREADABLE}.
    @ivar problem: why it did not verify against C{client_ca}, or None when
        it did.
    """

    common_name: str
    serial: str
    not_after: object
    problem: str | None = None

    @property
    def verified(self):
        """
        Whether TLS verified it up to C{client_ca}.
        """
        return self.problem is None


def client_certificate(transport):
    """
    @param transport: a charger connection's transport.
    @return: the L{ClientCertificate} it presented, or None (no TLS, no
        certificate asked for or none sent).
    """
    if not ISSLTransport.providedBy(transport):
        return None
    peer = transport.getPeerCertificate()
    if peer is None:
        return None
    # The certificate tool's module (argparse and all) only once a charger
    # presents a certificate, not with every plain ws:// service.
    from xxterocpp import certs

    try:
        # Through cryptography: pyOpenSSL 26 deprecates X509.get_subject().
        cert = peer.to_cryptography()
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        common_name = names[0].value if names else ""
        serial, not_after = format(cert.serial_number, "x"), certs.valid_until(cert)
    except ValueError:
        # OpenSSL took it, cryptography's stricter parser does not (a "<"
        # in a PrintableString): no CA signs such a thing, anyone can send
        # it.
        return ClientCertificate("", "", None, UNREADABLE)
    return ClientCertificate(common_name, serial, not_after,
                             _PROBLEMS.get(transport.getHandle()))


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """
    Creates the TLS connection of each new charger connection from the
    current context; L{reload} replaces that context, so a renewed
    certificate is served to new connections while open ones keep theirs.
    """

    def __init__(self, ocpp, now=None, clock_ok=None):
        """
        @param now: zero-argument callable, the central system's time as an
            aware datetime: client certificates are judged valid or not by
            it, not by a system clock that may read 1970
            (docs/architecture.md#time); None: by the system clock.
        @param clock_ok: zero-argument callable, whether the system clock is
            right (the central system's C{time.ok}); while it is not, the
            time C{now} gives is a lower bound of the real time, and a
            certificate valid only from later than it is not refused for
            that (its end still counts). None: always right.
        @raise TLSConfigurationError: see L{server_context}.
        """
        self._now = now
        self._clock_ok = clock_ok or (lambda: True)
        self._context = server_context(ocpp)

    def reload(self, ocpp):
        """
        Read the certificate, key and client CA files anew.

        @raise TLSConfigurationError: the running context then stays in force.
        """
        self._context = server_context(ocpp)

    def serverConnectionForTLS(self, tlsProtocol):
        if self._now is not None:
            # Verification happens within seconds of this, during the
            # handshake; the context's store is shared by the connections
            # made from it, each setting the time anew.
            self._context.get_cert_store().set_time(self._now())
        connection = SSL.Connection(self._context, None)
        if not self._clock_ok():
            _EARLY.add(connection)
        return connection
