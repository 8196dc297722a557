# -*- test-case-name: tests.test_profiles,tests.test_keys -*-
"""
The controller's security commands (security white paper A01, A02, A03,
A05), C{controller.security}: a new AuthorizationKey, a higher security
profile, a renewed client certificate, the root certificate. Each hands
the charger to the part of L{xxterocpp.control.parts} that owns the job
(L{keys}, L{profiles}, L{certificates}).
"""

from xxterocpp.control.keys import check_key
from xxterocpp.domain.keys import new_authorization_key


class SecurityCommands:
    """
    Security commands per charger. Unknown charger ids raise
    L{xxterocpp.control.commands.UnknownChargingPoint} synchronously.
    """

    def __init__(self, parts, charger):
        """
        @param parts: the controller's L{xxterocpp.control.parts.Parts}.
        @param charger: C{charger(charger_id)}: the charger of an id, or
            L{xxterocpp.control.commands.UnknownChargingPoint} raised.
        """
        self._parts = parts
        self._charger = charger

    def change_authorization_key(self, charger_id, key=None):
        """
        Rotate a charger's AuthorizationKey (security white paper A01) with
        ChangeConfiguration (L{xxterocpp.control.keys.KeyRotation.change}):
        a lost answer cannot lock it out.

        @param key: the new key, by default 20 random bytes as 40 hex digits.
        @raise ValueError: for a key that is not 16..20 bytes.
        @raise UnknownChargingPoint: for an unknown charger.
        @return: a Deferred firing with the charger's status word, or
            C{"NotConnected"}, C{"Timeout"}, C{"CallError"}.
        """
        key = new_authorization_key() if key is None else key
        check_key(key)
        d = self._parts.keys.change(self._charger(charger_id), key)
        return d.addCallback(lambda result: result.status)

    def raise_security_profile(self, charger_id, profile):
        """
        Raise the charger's security profile
        (L{xxterocpp.control.profiles.ProfileRaise.raise_to}): refused when
        it is not higher or what it needs is missing (a key for 1 and 2, TLS
        for 2 and 3, a client certificate for 3).

        @return: a Deferred firing with a
            L{xxterocpp.control.sender.CommandResult}.
        """
        return self._parts.profiles.raise_to(self._charger(charger_id), profile)

    def renew_certificate(self, charger_id):
        """
        Ask the charger for a certificate signing request
        (ExtendedTriggerMessage SignChargePointCertificate); the signed
        certificate follows with CertificateSigned.
        """
        return self._parts.certificates.renew(self._charger(charger_id))

    def install_root_certificate(self, charger_id):
        """
        InstallCertificate of the controller's root (C{[ocpp]
        root_certificate}) as the charger's CentralSystemRootCertificate.
        """
        return self._parts.certificates.install_root(self._charger(charger_id))
