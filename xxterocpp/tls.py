# -*- test-case-name: tests.test_tls -*-
"""
The TLS context of the OCPP server (OCPP Secure, wss://).

The security white paper requires TLS 1.2 or newer and no TLS compression;
Twisted 22.4 would still allow TLS 1.0 by default, so the floor is explicit.
"""

from OpenSSL import crypto
from twisted.internet import ssl

#: Forward-secret AEAD suites first, then the suites the white paper requires
#: a central system to offer (TLS_RSA_WITH_AES_*_GCM_*); no CBC, no RC4.
CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "AES128-GCM-SHA256:AES256-GCM-SHA384"
)


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def load_chain(path):
    """
    @return: the certificates of a PEM file, leaf first.
    """
    data = _read(path)
    certs = []
    marker = b"-----END CERTIFICATE-----"
    for block in data.split(marker)[:-1]:
        certs.append(crypto.load_certificate(crypto.FILETYPE_PEM, block + marker))
    if not certs:
        raise ValueError(f"{path}: no PEM certificate found")
    return certs


def server_context_factory(ocpp):
    """
    @param ocpp: the C{[ocpp]} configuration.
    @return: a Twisted TLS context factory for the OCPP server.
    """
    chain = load_chain(ocpp.certificate)
    key = crypto.load_privatekey(crypto.FILETYPE_PEM, _read(ocpp.private_key))
    options = dict(
        privateKey=key,
        certificate=chain[0],
        extraCertChain=chain[1:],
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        acceptableCiphers=ssl.AcceptableCiphers.fromOpenSSLCipherString(CIPHERS),
    )
    if ocpp.client_ca:
        # Security profile 3: a client certificate signed by this CA.
        options["trustRoot"] = ssl.trustRootFromCertificates(
            [ssl.Certificate(cert) for cert in load_chain(ocpp.client_ca)])
    return ssl.CertificateOptions(**options)
