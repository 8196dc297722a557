# -*- test-case-name: tests.test_profiles,tests.test_tls,tests.test_signing_requests -*-
"""
Each charger's security profile (docs/ocpp.md#security-profiles): the one
configured, a raise since (white paper A05, kept in the persisted settings
like a rotated key), who may connect at it, the client certificate a
charger is known to have, and whether its certificate request may be
signed.

A raise is pending from the moment the ChangeConfiguration(SecurityProfile)
is sent until the charger connects at the new profile: meanwhile it may
also come back at its old one. Once it connected at the new profile, lower
ones are refused for it. The configuration wins over a raise: a raise
remembers the profile configured when it was made, and when the
configuration says something else at a start or reload, the raise is
forgotten. Lowering a profile is thus done in the configuration only.
"""

from datetime import datetime

import attr
from twisted.internet import defer
from twisted.logger import Logger

from xxterocpp.domain import refusals
from xxterocpp.domain.model import stored

#: The setting (scope: the charger id) of a raised profile: C{{"profile": n,
#: "configured": the configured profile it was raised from}}.
RAISED = "security_profile"
#: The setting of a raise sent to the charger that it has not connected at
#: yet: the profile.
PENDING = "security_profile_pending"
#: The setting of the charger's client certificate: C{{"serial": hex,
#: "not_after": ISO 8601}}.
CERTIFICATE = "certificate"


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Refusal:
    """
    A connection the charger's profile does not admit.

    @ivar code: the HTTP status of the handshake: 401 (Basic auth) or 403
        (client certificate).
    @ivar why: for the log line, never what was presented.
    @ivar reason: the L{xxterocpp.domain.refusals} reason code, for the
        status page.
    @ivar detail: what the page adds to the reason (the identity another
        charger's certificate names, why a certificate does not verify), or
        None; never a secret.
    """

    code: int
    why: str
    reason: str
    detail: str = None


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ChargerCertificate:
    """
    The client certificate a charger has: the one it was sent
    (CertificateSigned) or last presented.

    @ivar serial: lower-case hex (L{xxterocpp.signing.certificate_info}).
    @ivar not_after: the end of its validity (aware UTC).
    """

    serial: str
    not_after: datetime

    def as_setting(self):
        """
        @return: the value kept in the store.
        """
        return {"serial": self.serial, "not_after": self.not_after.isoformat()}

    @classmethod
    def from_setting(cls, value):
        """
        @return: the certificate of a stored value, or None for one that is
            unusable.
        """
        try:
            return cls(value["serial"], datetime.fromisoformat(value["not_after"]))
        except (KeyError, TypeError, ValueError):
            return None


class SecurityProfiles:
    """
    The profile each charger is held to, and the admission of its
    connections.
    """

    log = Logger()

    def __init__(self, config, settings, store, credentials, lookup):
        """
        @param settings: the central system's persisted settings, shared.
        @param credentials: the L{xxterocpp.domain.credentials.Credentials}
            that check Basic auth.
        @param lookup: C{lookup(identity)}: the configured charger id of an
            identity, or None
            (L{xxterocpp.domain.connections.Connections.lookup}).
        """
        self._config = config
        self._settings = settings
        self._store = store
        self._credentials = credentials
        self._lookup = lookup

    def configure(self, config):
        """
        Take the profiles of a re-read configuration; it wins over raises
        made from a profile it no longer says (L{reconcile}).
        """
        self._config = config
        self.reconcile()

    def reconcile(self):
        """
        Forget raises of chargers whose configured profile changed since
        (called once the settings are loaded, and at every reload).
        """
        for charger_id in self._config.charger_ids():
            raised = self._settings.get((charger_id, RAISED))
            configured = self._config.security_profile(charger_id)
            if isinstance(raised, dict) and raised.get("configured") != configured:
                self.log.info("{id}: the configuration now says security profile {configured};"
                              " it replaces profile {raised} reached over OCPP", id=charger_id,
                              configured=configured, raised=raised.get("profile"))
                self._put(charger_id, RAISED, None)
                self._put(charger_id, PENDING, None)
            pending = self._settings.get((charger_id, PENDING))
            if pending is not None and pending <= self.profile(charger_id):
                self._put(charger_id, PENDING, None)

    # -- what holds ------------------------------------------------------

    def profile(self, charger_id):
        """
        @return: the profile C{charger_id} is held to: the configured one,
            or the one it was raised to since.
        """
        configured = self._config.security_profile(charger_id)
        raised = self._settings.get((charger_id, RAISED))
        if isinstance(raised, dict) and raised.get("configured") == configured:
            return max(configured, raised.get("profile", 0))
        return configured

    def pending(self, charger_id):
        """
        @return: the profile a raise sent to the charger asks for, until it
            connected at it; None without one.
        """
        return self._settings.get((charger_id, PENDING))

    def certificate(self, charger_id):
        """
        @return: the L{ChargerCertificate} the charger is known to have, or
            None.
        """
        value = self._settings.get((charger_id, CERTIFICATE))
        return ChargerCertificate.from_setting(value) if value is not None else None

    # -- connections -----------------------------------------------------

    def admit(self, charger_id, secure, certificate, password):
        """
        Decide on a connection of C{charger_id}. Profile 3: a client
        certificate that TLS verified and whose CN is the charger's
        identity; profiles 0 to 2: Basic auth with the charger's key (none
        when it has none), a certificate is not looked at. A connection at
        the profile of a pending raise completes it.

        @param secure: whether the connection is TLS.
        @param certificate: the L{xxterocpp.tls.ClientCertificate} it
            presented, or None.
        @param password: the Basic-auth password bytes, or None.
        @return: None to admit it, or a L{Refusal}.
        """
        required = self.profile(charger_id)
        pending = self.pending(charger_id)
        certified = (certificate is not None and certificate.verified
                     and self._lookup(certificate.common_name) == charger_id)
        if certified:
            self.remember_certificate(
                charger_id, ChargerCertificate(certificate.serial, certificate.not_after))
        if required >= 3 or (pending == 3 and certified):
            if not certified:
                raised = self._config.security_profile(charger_id) < 3
                return Refusal(403, *_why_not_certified(certificate, raised))
            if pending == 3:
                self._raised(charger_id, 3)
            return None
        if not self._credentials.check_password(charger_id, password):
            if password is None:
                return Refusal(401, "no Basic auth", refusals.MISSING_PASSWORD)
            return Refusal(401, "wrong password", refusals.WRONG_PASSWORD)
        if pending is not None and pending <= 2:
            keyed = bool(self._credentials.password_for(charger_id))
            if keyed and (2 if secure else 1) >= pending:
                self._raised(charger_id, pending)
        return None

    def remember_certificate(self, charger_id, certificate):
        """
        Remember the client certificate a charger has (it presented it, or
        accepted it in CertificateSigned).

        @param certificate: a L{ChargerCertificate}.
        """
        if certificate != self.certificate(charger_id):
            self._put(charger_id, CERTIFICATE, certificate.as_setting())

    # -- certificate requests ----------------------------------------------

    def signing_refusal(self, charger_id, secure):
        """
        Whether a certificate signing request of C{charger_id} may be
        signed (white paper A02, A03; docs/ocpp.md#certificates). The
        certificate it gets opens profile 3, so the request must come over
        TLS, where nobody on the way can swap the CSR for one of theirs,
        and from a connection that proved it is the charger: Basic auth
        with its key (profile 2 on the TLS port, also for a charger
        configured at 1 there) or its client certificate (profile 3, a
        renewal). A profile-0 charger without a key may be anyone.

        @param secure: whether the connection the request came over is TLS
            (L{xxterocpp.domain.model.Charger.secure}), which is what
            counts, not the profile configured: the port may still be
            plain after C{[ocpp] secure} was set without a restart.
        @return: None when it may, else why not and what to do, for the
            log line and the API.
        """
        if not secure:
            return (f"its connection is not TLS (ws://), where anyone on the way could swap"
                    f" the CSR; move {charger_id} to security profile 2 (TLS with its"
                    f" password) first, then ask again")
        if self.profile(charger_id) < 3 and not self._credentials.password_for(charger_id):
            return (f"{charger_id} connects without a password (security profile 0), so"
                    f" anyone could ask in its name; give it a password and move it to"
                    f" security profile 2 first")
        return None

    # -- raising ---------------------------------------------------------

    def begin_raise(self, charger_id, profile):
        """
        A ChangeConfiguration(SecurityProfile) to C{profile} is about to be
        sent; it is noted first, so that a charger that took it is let in
        at the new profile even when its answer got lost.

        @return: a Deferred firing once it is stored.
        """
        return self._put(charger_id, PENDING, profile)

    def end_raise(self, charger_id, profile, status):
        """
        The charger's answer to the raise to C{profile} (its status word,
        or C{"Timeout"}, C{"NotConnected"}, C{"CallError"}). Refused: the
        raise is forgotten; otherwise it stays pending until the charger
        connects at the new profile.

        @return: a Deferred firing once the outcome is stored.
        """
        if status in ("Accepted", "RebootRequired", "Timeout", "NotConnected"):
            self.log.info("{id}: security profile {profile} pending ({status}); lower profiles"
                          " are refused once it connected at it", id=charger_id,
                          profile=profile, status=status)
            return defer.succeed(None)
        self.log.warn("{id}: security profile {profile} not taken ({status}); it stays at"
                      " {current}", id=charger_id, profile=profile, status=status,
                      current=self.profile(charger_id))
        return self._put(charger_id, PENDING, None)

    def _raised(self, charger_id, profile):
        self.log.info("{id}: connected at security profile {profile}; lower profiles are"
                      " refused from now on", id=charger_id, profile=profile)
        configured = self._config.security_profile(charger_id)
        self._put(charger_id, RAISED, {"profile": profile, "configured": configured})
        self._put(charger_id, PENDING, None)

    def _put(self, charger_id, key, value):
        if value is None:
            if (charger_id, key) not in self._settings:
                return defer.succeed(None)
            del self._settings[(charger_id, key)]
            return stored(self._store.delete_setting(charger_id, key))
        self._settings[(charger_id, key)] = value
        return stored(self._store.put_setting(charger_id, key, value))


def _why_not_certified(certificate, raised):
    """
    @param raised: whether profile 3 holds because the charger was raised
        to it (a connection without a certificate is then one at a lower
        profile).
    @return: the log line's reason, the refusal's reason code and its
        detail (if any).
    """
    if certificate is None:
        return ("no client certificate (security profile 3)",
                refusals.LOWER_PROFILE if raised else refusals.NO_CERTIFICATE)
    if not certificate.verified:
        return (f"its client certificate does not verify ({certificate.problem})",
                refusals.NO_CERTIFICATE, certificate.problem)
    return (f"its client certificate is for {certificate.common_name!r}",
            refusals.OTHER_CERTIFICATE, certificate.common_name)
