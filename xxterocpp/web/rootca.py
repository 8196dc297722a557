# -*- test-case-name: tests.test_web_setup -*-
"""
What a charger needs to reach the controller, for the page and C{GET
/ca.pem}: the controller's root certificate and the OCPP URL to type in.

The root certificate is the C{ca.pem} that C{xxterocpp-certs init-ca}
writes beside the server certificate (C{[ocpp] certificate}), when it is
there. It is read again only when the file changed, so the page's refresh
every few seconds costs a C{stat}.
"""

import ipaddress
import os

import attr
from cryptography import x509

from xxterocpp.certs import CA_CERT, fingerprint

__all__ = ["Certificate", "CertificateFile", "charger_url", "root_certificate_path"]

#: Interfaces that mean "every address": they name none a charger can use.
WILDCARDS = ("", "0.0.0.0", "::")


def root_certificate_path(ocpp):
    """
    @param ocpp: the L{xxterocpp.config.OcppConfig}.
    @return: where the root certificate is, beside the server certificate
        (L{None} without one).
    """
    if not ocpp.certificate:
        return None
    return os.path.join(os.path.dirname(ocpp.certificate), CA_CERT)


@attr.s(frozen=True, slots=True)
class Certificate:
    """
    A certificate file as it was read.

    @ivar pem: the file's bytes.
    @ivar sha256: the SHA-256 fingerprint of its (first) certificate, as
        colon-separated hex (as C{xxterocpp-certs init-ca} prints it).
    @ivar certificate: the L{x509.Certificate}.
    """

    pem = attr.ib()
    sha256 = attr.ib()
    certificate = attr.ib()


class CertificateFile:
    """
    A certificate file (the root's, the server's), read when it changed.
    """

    def __init__(self):
        self._seen = None
        self._read = None

    def load(self, path):
        """
        @return: the L{Certificate} in C{path}, or L{None} when there is no
            such file (or no C{path}) or it holds no PEM certificate.
        """
        if not path:
            return None
        try:
            stat = os.stat(path)
        except OSError:
            return None
        seen = (path, stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if seen != self._seen:
            self._seen, self._read = seen, _read(path)
        return self._read


def _read(path):
    try:
        with open(path, "rb") as f:
            pem = f.read()
        cert = x509.load_pem_x509_certificate(pem)
    except (OSError, ValueError):
        return None
    return Certificate(pem, fingerprint(cert), cert)


def _names(certificate):
    """
    @return: the IP addresses, then the host names, of a server
        certificate's subjectAltName (as they go into a URL).
    """
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] + \
        names.get_values_for_type(x509.DNSName)


def _url_host(host):
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


def charger_url(ocpp, browser_host, server_certificate=None):
    """
    The OCPP URL a charger is given (its identity follows the last C{/}).

    @param ocpp: the L{xxterocpp.config.OcppConfig}.
    @param browser_host: the host name the page was asked for (C{Host}
        without the port, IPv6 in brackets), or L{None}.
    @param server_certificate: the L{x509.Certificate} served on a secure
        port, or L{None}.
    @return: C{ws://host:port/}, or C{wss://} when the port is secure.
        The host is the OCPP interface when it is bound to one address, else
        the host the browser used; behind TLS it must be a name of the
        server certificate (the charger checks it): the first of those two
        that is, else the certificate's first IP address or host name.
    """
    candidates = [h for h in (ocpp.interface.strip(), (browser_host or "").strip("[]"))
                  if h not in WILDCARDS]
    host = candidates[0] if candidates else None
    if ocpp.secure and server_certificate is not None:
        names = _names(server_certificate)
        named = [h for h in candidates if h.lower() in (n.lower() for n in names)]
        host = (named or names or [host])[0]
    scheme = "wss" if ocpp.secure else "ws"
    return f"{scheme}://{_url_host(host or 'localhost')}:{ocpp.port}/"
