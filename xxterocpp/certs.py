# -*- test-case-name: tests.test_certs -*-
"""
C{xxterocpp-certs}: the controller's own small certificate authority for
OCPP Secure (security profiles 2 and 3 of the OCPP 1.6 security white paper).

    xxterocpp-certs init-ca                      # ca.pem: load it into the chargers
    xxterocpp-certs server --ip 192.168.1.10 --dns knx-controller.local
    xxterocpp-certs client SN12345               # profile 3 only
    xxterocpp-certs signing-ca                   # the service signs chargers' CSRs

Keys are RSA 2048 by default: every charger TLS stack speaks RSA, and an RSA
server certificate serves both the ECDHE-RSA suites and the plain
TLS_RSA_WITH_AES_*_GCM_* suites the white paper lists; C{--key-type ec} makes
P-256 (ECDSA) keys instead. Private keys are written with mode 0600, and
every file is replaced atomically, so a SIGHUP during a renewal never loads
half a file.

The root may have one CA below it: the charger-signing CA
(C{signing-ca.pem}, C{signing-ca.key}), with which the service signs the
certificate signing requests chargers send (L{xxterocpp.signing}), so that
the root key never has to be readable by the service.
"""

import argparse
import datetime
import grp
import ipaddress
import os
import pwd
import re
import sys
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_DIRECTORY = "/etc/xxterocpp/tls"

#: The root CA lives long: replacing it means visiting every charger.
CA_DAYS = 20 * 365
#: Server and client certificates are renewed by re-running the tool.
LEAF_DAYS = 5 * 365
#: The charger-signing CA is renewed by re-running the tool; the chargers'
#: certificates it signed stay valid, as they chain to the same root.
SIGNING_CA_DAYS = 10 * 365

#: Chargers often boot with a clock that is a little behind before NTP.
BACKDATE = datetime.timedelta(days=1)

CA_CERT, CA_KEY = "ca.pem", "ca.key"
SERVER_CERT, SERVER_KEY = "server.pem", "server.key"
SIGNING_CA_CERT, SIGNING_CA_KEY = "signing-ca.pem", "signing-ca.key"

#: The system user of the Debian package: it must read the signing key.
SERVICE_USER = "xxterocpp"


class CertsError(Exception):
    """
    A problem the user must fix; the message says what to do.
    """


def new_key(key_type):
    """
    @param key_type: C{"rsa"} (2048 bits) or C{"ec"} (P-256).
    @return: a new private key.
    """
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name, organization=None):
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        # The white paper wants O = the CPO name in charger certificates.
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def valid_from(cert):
    """
    @return: the start of C{cert}'s validity, timezone-aware (UTC).
    """
    # cryptography 42 added the aware properties; Debian bookworm has 38.
    start = getattr(cert, "not_valid_before_utc", None)
    return start or cert.not_valid_before.replace(tzinfo=datetime.timezone.utc)


def valid_until(cert):
    """
    @return: the end of C{cert}'s validity, timezone-aware (UTC).
    """
    end = getattr(cert, "not_valid_after_utc", None)
    return end or cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)


def _validity(now, days):
    return now - BACKDATE, now + datetime.timedelta(days=days)


def _authority_key_identifier(issuer):
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        # A signing CA of a site's own PKI may lack one.
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _builder(subject, public_key, not_before, not_after, issuer=None):
    """
    @param issuer: the certificate of the issuing CA, or None for a
        self-signed one.
    """
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if issuer is None:
        return builder.issuer_name(subject).not_valid_after(not_after)
    # Validation fails anyway once the issuer has expired; saying so in the
    # certificate keeps the renewal date the one that matters.
    return (builder.issuer_name(issuer.subject)
            .not_valid_after(min(not_after, valid_until(issuer)))
            .add_extension(_authority_key_identifier(issuer), critical=False))


def _ca_constraints(builder, public_key, levels):
    return (
        builder
        .add_extension(x509.BasicConstraints(ca=True, path_length=levels), critical=True)
        .add_extension(_key_usage(public_key, digital_signature=False, key_encipherment=False,
                                  key_cert_sign=True, crl_sign=True), critical=True)
    )


def _key_usage(public_key, **usages):
    flags = dict(digital_signature=True, content_commitment=False,
                 key_encipherment=False, data_encipherment=False, key_agreement=False,
                 key_cert_sign=False, crl_sign=False, encipher_only=False,
                 decipher_only=False)
    # Plain RSA key exchange (TLS_RSA_WITH_AES_*) encrypts to the key.
    flags["key_encipherment"] = isinstance(public_key, rsa.RSAPublicKey)
    flags.update(usages)
    return x509.KeyUsage(**flags)


def make_ca(common_name, key_type="rsa", days=CA_DAYS, now=None):
    """
    A self-signed root CA that may sign end-entity certificates and one
    level of CA below it (the charger-signing CA).

    @return: C{(certificate, key)}.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    key = new_key(key_type)
    builder = _builder(_name(common_name), key.public_key(), *_validity(now, days))
    return _ca_constraints(builder, key.public_key(), 1).sign(key, hashes.SHA256()), key


def reissue_root(cert, key):
    """
    The root CA C{cert} again, with its key, name and validity, allowing one
    level of CA below it: the roots of C{init-ca} before the signing CA
    existed forbade any. Whoever trusts the old certificate trusts the
    certificates the root signs as before.

    @return: the new certificate.
    """
    builder = _builder(cert.subject, key.public_key(), valid_from(cert), valid_until(cert))
    return _ca_constraints(builder, key.public_key(), 1).sign(key, hashes.SHA256())


def path_length(cert):
    """
    @return: how many levels of CA C{cert} allows below it (None: any).
    """
    return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length


def make_signing_ca(root_cert, root_key, common_name, key_type="rsa", days=SIGNING_CA_DAYS,
                    now=None):
    """
    The charger-signing CA: an intermediate of the root that signs end-entity
    certificates only.

    @return: C{(certificate, key)}.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    key = new_key(key_type)
    builder = _builder(_name(common_name), key.public_key(), *_validity(now, days),
                       issuer=root_cert)
    return _ca_constraints(builder, key.public_key(), 0).sign(root_key, hashes.SHA256()), key


def issue_leaf(ca_cert, ca_key, subject, public_key, *, dns=(), ips=(), client=False,
               days=LEAF_DAYS, now=None):
    """
    An end-entity certificate for C{public_key} signed by the CA: a TLS
    server certificate, or with C{client=True} a charger's client
    certificate. It ends with the CA's validity at the latest.

    @param subject: an L{x509.Name}.
    @param ips: L{ipaddress} addresses for the subjectAltName.
    @return: the certificate.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        _builder(subject, public_key, *_validity(now, days), issuer=ca_cert)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(public_key), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    names = [x509.DNSName(name) for name in dns] + [x509.IPAddress(ip) for ip in ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def make_leaf(ca_cert, ca_key, common_name, *, dns=(), ips=(), client=False,
              organization=None, key_type="rsa", days=LEAF_DAYS, now=None):
    """
    A new key and its certificate from L{issue_leaf}, for the subject
    C{common_name} (and C{organization}).

    @return: C{(certificate, key)}.
    """
    key = new_key(key_type)
    cert = issue_leaf(ca_cert, ca_key, _name(common_name, organization), key.public_key(),
                      dns=dns, ips=ips, client=client, days=days, now=now)
    return cert, key


def certificate_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def fingerprint(cert):
    """
    @return: the SHA-256 fingerprint as colon-separated hex, the form
        chargers' web interfaces show.
    """
    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))


def write_file(path, data, private=False, owner=None):
    """
    Replace C{path} atomically; a private file is never readable by others,
    not even for a moment.

    @param owner: C{(uid, gid)} to give the file, or None.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(temporary, 0o600 if private else 0o644)
        if owner is not None:
            os.chown(temporary, *owner)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def load_ca(directory):
    """
    @return: C{(certificate, key)} of the CA in C{directory}.
    @raise CertsError: when there is none.
    """
    cert_path, key_path = os.path.join(directory, CA_CERT), os.path.join(directory, CA_KEY)
    try:
        with open(cert_path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        with open(key_path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
    except FileNotFoundError as e:
        raise CertsError(f"{e.filename} not found: run 'xxterocpp-certs init-ca' first"
                         " (or give --dir)") from None
    return cert, key


def client_file_stem(identity):
    """
    @return: the file name stem of a charger's client certificate; an
        identity may contain characters no file name should.
    """
    return "client-" + re.sub(r"[^A-Za-z0-9._-]", "_", identity)


def _owner(spec):
    """
    C{USER[:GROUP]} to C{(uid, gid)}.
    """
    user, _, group = spec.partition(":")
    try:
        entry = pwd.getpwnam(user)
        gid = grp.getgrnam(group).gr_gid if group else entry.pw_gid
    except KeyError as e:
        raise CertsError(f"--owner {spec}: no such user or group ({e.args[0]})") from None
    return entry.pw_uid, gid


def _service_user_exists():
    """
    @return: whether L{SERVICE_USER} exists (it does where the package is
        installed).
    """
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        return False
    return True


def init_ca(args, out):
    cert_path = os.path.join(args.dir, CA_CERT)
    if not args.force and (os.path.exists(cert_path)
                           or os.path.exists(os.path.join(args.dir, CA_KEY))):
        raise CertsError(
            f"{cert_path} exists: every charger trusting it would have to be given a new one;"
            " use --force to replace it anyway")
    cert, key = make_ca(args.name, args.key_type, args.days)
    write_file(os.path.join(args.dir, CA_KEY), key_pem(key), private=True)
    write_file(cert_path, certificate_pem(cert))
    print(f"root CA written to {cert_path}", file=out)
    print(f"load this file into every charger as the central system root certificate;"
          f" SHA-256 fingerprint {fingerprint(cert)}", file=out)


def server(args, out):
    if not (args.ip or args.dns):
        raise CertsError("name the controller: at least one --ip or --dns")
    try:
        ips = [ipaddress.ip_address(ip) for ip in args.ip]
    except ValueError as e:
        raise CertsError(f"--ip: {e}") from None
    owner = _owner(args.owner) if args.owner else None
    ca_cert, ca_key = load_ca(args.dir)
    # Chargers that ignore the subjectAltName check the CN (OCPP-J 1.6
    # §6.2.1): the host name when there is one.
    common_name = args.dns[0] if args.dns else args.ip[0]
    cert, key = make_leaf(ca_cert, ca_key, common_name, dns=args.dns, ips=ips,
                          key_type=args.key_type, days=args.days)
    # Key first: a reload between the two replacements then fails the key
    # check and keeps the running certificate, instead of pairing wrongly.
    write_file(os.path.join(args.dir, SERVER_KEY), key_pem(key), private=True, owner=owner)
    cert_path = os.path.join(args.dir, SERVER_CERT)
    write_file(cert_path, certificate_pem(cert), owner=owner)
    print(f"server certificate for {', '.join(args.dns + args.ip)} written to {cert_path};"
          f" 'systemctl reload xxterocpp' puts it in use", file=out)


def client(args, out):
    ca_cert, ca_key = load_ca(args.dir)
    cert, key = make_leaf(ca_cert, ca_key, args.identity, client=True,
                          organization=args.organization, key_type=args.key_type,
                          days=args.days)
    stem = os.path.join(args.dir, client_file_stem(args.identity))
    write_file(stem + ".key", key_pem(key), private=True)
    write_file(stem + ".pem", certificate_pem(cert))
    print(f"client certificate of {args.identity!r} written to {stem}.pem (key {stem}.key):"
          " install both in the charger", file=out)


def signing_ca(args, out):
    owner_name = args.owner or (SERVICE_USER if _service_user_exists() else None)
    owner = _owner(owner_name) if owner_name else None
    root, root_key = load_ca(args.dir)
    root_path = os.path.join(args.dir, CA_CERT)
    if path_length(root) == 0:
        root = reissue_root(root, root_key)
        write_file(root_path, certificate_pem(root))
        print(f"{root_path} re-issued with the same key, name and validity, now allowing the"
              f" signing CA below it; chargers trusting the old one still trust this"
              f" controller, give the new one (SHA-256 fingerprint {fingerprint(root)}) to"
              f" those that are to get signed certificates", file=out)
    cert, key = make_signing_ca(root, root_key, args.name, args.key_type, args.days)
    # Key first, as for the server certificate.
    write_file(os.path.join(args.dir, SIGNING_CA_KEY), key_pem(key), private=True,
               owner=owner)
    cert_path = os.path.join(args.dir, SIGNING_CA_CERT)
    write_file(cert_path, certificate_pem(cert), owner=owner)
    readable = (f"owned by {owner_name}" if owner
                else "readable by you only: give --owner to let the service read it")
    print(f"charger-signing CA written to {cert_path} (key {SIGNING_CA_KEY}, {readable});"
          f" 'systemctl reload xxterocpp' puts it in use", file=out)


def parser():
    p = argparse.ArgumentParser(
        prog="xxterocpp-certs",
        description="Certificates for OCPP Secure (wss://): the controller's root CA, its"
                    " server certificate and, for security profile 3, charger client"
                    " certificates, made here or signed by the service with the"
                    " charger-signing CA.")
    p.add_argument("--dir", default=DEFAULT_DIRECTORY,
                   help=f"where the files are read and written [{DEFAULT_DIRECTORY}]")
    p.add_argument("--key-type", choices=("rsa", "ec"), default="rsa",
                   help="rsa (2048 bits, works with every charger) or ec (P-256) [rsa]")
    commands = p.add_subparsers(dest="command", required=True)

    c = commands.add_parser("init-ca", help="create the root CA (ca.pem, ca.key)")
    c.add_argument("--name", default="xxterocpp OCPP root CA", help="its common name")
    c.add_argument("--days", type=int, default=CA_DAYS, help=f"validity [{CA_DAYS}]")
    c.add_argument("--force", action="store_true", help="replace an existing CA")
    c.set_defaults(run=init_ca)

    c = commands.add_parser("server", help="create or renew server.pem and server.key")
    c.add_argument("--ip", action="append", default=[], help="an IP address of the"
                   " controller (repeat for several)")
    c.add_argument("--dns", action="append", default=[], help="a host name of the"
                   " controller (repeat for several); the first is the CN")
    c.add_argument("--days", type=int, default=LEAF_DAYS, help=f"validity [{LEAF_DAYS}]")
    c.add_argument("--owner", help="USER[:GROUP] owning the written files, e.g. xxterocpp"
                   " (the service must be able to read the key)")
    c.set_defaults(run=server)

    c = commands.add_parser("client", help="create a charger's client certificate"
                            " (security profile 3)")
    c.add_argument("identity", help="the charger identity (CN), as in the URL")
    c.add_argument("--organization", help="O of the subject (the white paper wants the"
                   " CPO name)")
    c.add_argument("--days", type=int, default=LEAF_DAYS, help=f"validity [{LEAF_DAYS}]")
    c.set_defaults(run=client)

    c = commands.add_parser("signing-ca", help="create or renew the charger-signing CA"
                            " (signing-ca.pem, signing-ca.key), with which the service signs"
                            " chargers' certificate requests")
    c.add_argument("--name", default="xxterocpp charger signing CA", help="its common name")
    c.add_argument("--days", type=int, default=SIGNING_CA_DAYS,
                   help=f"validity, at most the root's [{SIGNING_CA_DAYS}]")
    c.add_argument("--owner", help=f"USER[:GROUP] owning the written files (the service must"
                   f" be able to read the key) [{SERVICE_USER}, when that user exists]")
    c.set_defaults(run=signing_ca)
    return p


def main(argv=None, out=None, err=None):
    """
    The console script.

    @return: the exit status.
    """
    out, err = out or sys.stdout, err or sys.stderr
    args = parser().parse_args(argv)
    try:
        os.makedirs(args.dir, mode=0o755, exist_ok=True)
        args.run(args, out)
    except (CertsError, OSError) as e:
        print(f"xxterocpp-certs: {e}", file=err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
