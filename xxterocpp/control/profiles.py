# -*- test-case-name: tests.test_profiles -*-
"""
Raising a charger's security profile (security white paper A05): check that
what the new profile needs is there, send ChangeConfiguration(SecurityProfile)
and then a Reset, and keep the domain's books so that, once the charger has
connected at the new profile, lower ones are refused
(L{xxterocpp.domain.security}). Lowering is never done over OCPP; the
configuration does it.
"""

from twisted.internet import defer
from twisted.logger import Logger

from xxterocpp.control.sender import CommandResult, invalid, refused
from xxterocpp.ocpp import messages as m

#: The configuration key of the white paper.
KEY = "SecurityProfile"


class ProfileRaise:
    """
    Raises security profiles.
    """

    log = Logger()

    def __init__(self, central, sender):
        """
        @param central: the L{xxterocpp.domain.central.CentralSystem}.
        @param sender: the L{xxterocpp.control.sender.Sender}.
        """
        self.central = central
        self.sender = sender

    def missing(self, charger, profile):
        """
        @return: why C{charger} cannot be raised to C{profile} now, or None.
        """
        current = self.central.security.profile(charger.id)
        ocpp = self.central.config.ocpp
        if profile <= current:
            return (f"{charger.id} is at security profile {current}; over OCPP a profile is only"
                    f" raised, lower it with security_profile in the configuration")
        if profile >= 2 and not ocpp.secure:
            return (f"profile {profile} needs TLS: set [ocpp] secure = true (the charger must"
                    f" have the controller's root certificate) and restart")
        if profile in (1, 2) and not self.central.credentials.password_for(charger.id):
            return (f"profile {profile} needs a key: give {charger.id} one first (POST or PUT"
                    f" /api/chargers/{{id}}/password)")
        if profile == 3:
            if not ocpp.client_ca:
                return "profile 3 needs [ocpp] client_ca, the CA of the chargers' certificates"
            certificate = self.central.security.certificate(charger.id)
            if certificate is None or certificate.not_after <= self.central.now():
                return (f"{charger.id} has no valid client certificate known: have one signed"
                        f" first (POST /api/chargers/{{id}}/certificate)")
        if not self.sender.connected(charger):
            return f"{charger.id} is not connected"
        return None

    def raise_to(self, charger, profile):
        """
        Raise C{charger} to C{profile}: ChangeConfiguration, then (taken)
        a soft Reset, after which it connects at the new profile.

        @return: a Deferred firing with the L{CommandResult} of the
            ChangeConfiguration; C{"Refused"} without sending when the
            profile is not higher or what it needs is missing,
            C{"Invalid"} for a profile that is none.
        """
        if profile not in (1, 2, 3):
            return invalid(f"a charger is raised to the security profile 1, 2 or 3, not"
                           f" {profile!r}")
        why = self.missing(charger, profile)
        if why is not None:
            return refused(why)
        return self._raise(charger, profile)

    @defer.inlineCallbacks
    def _raise(self, charger, profile):
        yield self.central.security.begin_raise(charger.id, profile)
        result = yield self.sender.call(charger, m.ChangeConfigurationRequest(
            key=KEY, value=str(profile)))
        yield self.central.security.end_raise(charger.id, profile, result.status)
        if not result.accepted:
            return result
        reset = yield self.sender.call(charger, m.ResetRequest(type="Soft"))
        detail = (f"profile {profile} taken; the charger resets and connects at it"
                  if reset.accepted else
                  f"profile {profile} taken, but the Reset was not ({reset.status}): it applies"
                  f" at the charger's next reboot")
        self.log.info("{id}: {detail}", id=charger.id, detail=detail)
        return CommandResult(True, result.status, detail, result.response)
