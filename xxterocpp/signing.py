# -*- test-case-name: tests.test_signing -*-
"""
Signing the certificates chargers ask for (OCPP 1.6 security white paper,
use cases A02 and A03: SignCertificate, then CertificateSigned).

The charger-signing CA is an intermediate of the controller's root, made by
C{xxterocpp-certs signing-ca}: its certificate file holds the signing CA
first, then any CA certificates between it and the root (none when the tool
made it). A self-signed root in the file is not sent: chargers have it as
their central system root certificate and the TLS server as C{client_ca}.
A charger presents the chain it is given (its certificate, then the signing
CA), and the TLS server verifies it up to the root.

Pure X.509 with C{cryptography}; the OCPP side decides what to answer and
when to renew (L{needs_renewal}).
"""

import datetime
import re

import attr
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from xxterocpp import certs
from xxterocpp.tls import TLSConfigurationError

#: A CSR longer than this is refused unparsed (an RSA 4096 one is 1.7 kB).
MAX_CSR_CHARACTERS = 8192
#: The maximum length of CertificateSigned's certificateChain.
MAX_CHAIN_CHARACTERS = 10000
#: The lifetime of a signed charger certificate; the service renews it
#: before it ends.
CLIENT_DAYS = 2 * 365
#: How long before its end a charger's certificate is renewed.
RENEWAL_DAYS = 30
MIN_RSA_BITS = 2048
#: The curves of the white paper's ECDSA cipher suites.
EC_CURVES = ("secp256r1", "secp384r1")

_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.*?-----END CERTIFICATE-----\r?\n?", re.DOTALL)


class CsrRejected(Exception):
    """
    A certificate signing request that is not signed.

    @ivar reason: why, for a log line (no newline, no key material).
    """

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


class SigningConfigurationError(TLSConfigurationError):
    """
    The signing CA's certificate or key file cannot be used; C{key} is
    C{"ocpp.signing_certificate"} or C{"ocpp.signing_key"}.
    """


@attr.s(frozen=True, slots=True, auto_attribs=True)
class SignedChain:
    """
    A charger's newly signed certificate.

    @ivar certificate_chain: the PEM text CertificateSigned carries: the
        charger's certificate, then the signing CA (and the CAs between it
        and the root).
    @ivar serial: the certificate's serial number, see L{certificate_info}.
    @ivar not_after: the end of its validity (UTC).
    """

    certificate_chain: str
    serial: str
    not_after: datetime.datetime


def certificate_info(pem):
    """
    @param pem: a PEM certificate, or a chain whose first one is meant.
    @type pem: L{str} or L{bytes}
    @return: C{(serial, not_after)}: the serial number as lower-case hex
        without leading zeros (as OCPP's certificate hash data has it), the
        end of the validity as an aware UTC datetime.
    @raise ValueError: when C{pem} holds no certificate.
    """
    if isinstance(pem, str):
        pem = pem.encode("ascii")
    cert = x509.load_pem_x509_certificate(pem)
    return format(cert.serial_number, "x"), certs.valid_until(cert)


def needs_renewal(not_after, now, days=RENEWAL_DAYS):
    """
    @param not_after: the end of a certificate's validity (aware).
    @param now: the current time (aware).
    @return: whether the certificate ends within C{days} (or has ended).
    """
    return not_after - now <= datetime.timedelta(days=days)


def _read(key, path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise SigningConfigurationError(key, f"{path!r}: {e.strerror}") from None


def _load_certificates(path):
    """
    @return: the signing CA, and the PEM text of the CA certificates to send
        after a charger's certificate.
    """
    key = "ocpp.signing_certificate"
    blocks = _PEM_CERTIFICATE.findall(_read(key, path))
    try:
        chain = [x509.load_pem_x509_certificate(block) for block in blocks]
    except ValueError:
        chain = []
    if not chain:
        raise SigningConfigurationError(key, f"{path!r}: not a PEM certificate")
    ca = chain[0]
    try:
        is_ca = ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise SigningConfigurationError(
            key, f"{path!r}: not a CA certificate; make one with 'xxterocpp-certs signing-ca'")
    sent = "".join(certs.certificate_pem(cert).decode("ascii") for cert in chain
                   if cert.subject != cert.issuer)
    return ca, sent


def _load_key(path, ca):
    key = "ocpp.signing_key"
    try:
        private_key = serialization.load_pem_private_key(_read(key, path), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise SigningConfigurationError(
            key, f"{path!r}: not an unencrypted PEM private key") from None
    if not isinstance(private_key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise SigningConfigurationError(key, f"{path!r}: only RSA and EC keys can sign")
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if private_key.public_key().public_bytes(*spki) != ca.public_key().public_bytes(*spki):
        raise SigningConfigurationError(
            key, f"{path!r} does not belong to the signing certificate")
    return private_key


def _parse_csr(csr_pem):
    if not isinstance(csr_pem, str):
        raise CsrRejected("the CSR is not text")
    # Bounded before any parsing: the CSR comes from the network.
    if len(csr_pem) > MAX_CSR_CHARACTERS:
        raise CsrRejected(f"the CSR is longer than {MAX_CSR_CHARACTERS} characters")
    text = csr_pem.strip()
    # One request and nothing else: the parser would skip text around it.
    if not (text.startswith("-----BEGIN ") and text.endswith(" REQUEST-----")
            and text.count("-----BEGIN ") == 1 and text.isascii()):
        raise CsrRejected("the CSR is not one PEM certificate request")
    try:
        csr = x509.load_pem_x509_csr(text.encode("ascii"))
        public_key = csr.public_key()
        valid = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm):
        raise CsrRejected("the CSR is not a well-formed PEM certificate request") from None
    if not valid:
        raise CsrRejected("the CSR's signature is not valid")
    return csr, public_key


def _check_key(public_key):
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            raise CsrRejected(f"RSA key of {public_key.key_size} bits; at least"
                              f" {MIN_RSA_BITS} are needed")
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name not in EC_CURVES:
            raise CsrRejected(f"EC key on {public_key.curve.name}; only P-256 and P-384")
    else:
        raise CsrRejected("only RSA and EC (P-256, P-384) keys are signed")


def _only(csr, oid, label):
    attributes = csr.subject.get_attributes_for_oid(oid)
    if len(attributes) != 1:
        raise CsrRejected(f"the CSR's subject has {len(attributes)} {label} attributes, not one")
    return attributes[0]


class ChargerSigner:
    """
    Signs chargers' certificate signing requests with the charger-signing CA.

    @ivar certificate_path: the signing CA's PEM file (see the module).
    @ivar key_path: its private key (PEM, unencrypted).
    @ivar organisation: the O every charger certificate must have, or None
        for any (it is then not put in the certificate).
    @ivar days: the lifetime of a signed certificate.
    """

    def __init__(self, certificate_path, key_path, organisation=None, days=CLIENT_DAYS):
        """
        @raise SigningConfigurationError: when a file is missing or unusable.
        """
        self.certificate_path = certificate_path
        self.key_path = key_path
        self.organisation = organisation
        self.days = days
        self.reload()

    def reload(self):
        """
        Read the certificate and key files anew (SIGHUP, after a renewal of
        the signing CA).

        @raise SigningConfigurationError: the loaded CA then stays in force.
        """
        ca, sent = _load_certificates(self.certificate_path)
        self._key = _load_key(self.key_path, ca)
        self._ca, self._sent = ca, sent

    @property
    def not_after(self):
        """
        The end of the signing CA's validity (UTC).
        """
        return certs.valid_until(self._ca)

    def sign(self, csr_pem, identity, now=None):
        """
        Sign a charger's CSR: its CN must be C{identity} exactly, its O the
        organisation when one is set, its key RSA of 2048 bits or more or EC
        on P-256 or P-384. The certificate is a TLS client certificate with
        the subject C{CN=identity} (and the O), valid from a day before
        C{now} (chargers' clocks lag) for L{days} days, at most as long as
        the signing CA.

        @param csr_pem: the PEM CSR of SignCertificate.
        @param identity: the charger's identity, as configured.
        @param now: the current time (aware), or None for the system clock.
        @rtype: L{SignedChain}
        @raise CsrRejected: with the reason the CSR is not signed.
        """
        now = now or datetime.datetime.now(datetime.timezone.utc)
        csr, public_key = _parse_csr(csr_pem)
        common_name = _only(csr, NameOID.COMMON_NAME, "CN")
        if common_name.value != identity:
            raise CsrRejected(f"the CSR's CN {common_name.value!r} is not the charger's"
                              f" identity {identity!r}")
        subject = [common_name]
        if self.organisation is not None:
            organisation = _only(csr, NameOID.ORGANIZATION_NAME, "O")
            if organisation.value != self.organisation:
                raise CsrRejected(f"the CSR's O {organisation.value!r} is not"
                                  f" {self.organisation!r}")
            subject.insert(0, organisation)
        _check_key(public_key)
        # The certificate ends with the signing CA at the latest: one the
        # service would renew at once would be renewed again and again.
        if needs_renewal(self.not_after, now):
            raise CsrRejected(f"the charger-signing CA ends on {self.not_after:%Y-%m-%d}:"
                              f" renew it with 'xxterocpp-certs signing-ca'")
        cert = certs.issue_leaf(self._ca, self._key, x509.Name(subject), public_key,
                                client=True, days=self.days, now=now)
        chain = certs.certificate_pem(cert).decode("ascii") + self._sent
        if len(chain) > MAX_CHAIN_CHARACTERS:
            raise CsrRejected(f"the certificate chain would have {len(chain)} characters, more"
                              f" than CertificateSigned's {MAX_CHAIN_CHARACTERS}: too many"
                              f" certificates in {self.certificate_path!r}")
        return SignedChain(chain, *certificate_info(chain))
