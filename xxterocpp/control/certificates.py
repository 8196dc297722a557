# -*- test-case-name: tests.test_profiles -*-
"""
The chargers' client certificates (security white paper A02, A03): the
chain the domain signed goes out with CertificateSigned; a renewal is asked
for with ExtendedTriggerMessage(SignChargePointCertificate), through the
API or on its own L{RENEWAL_DAYS} days before the certificate of a
profile-3 charger ends; the controller's root goes to a charger with
InstallCertificate.
"""

from datetime import timedelta

from twisted.internet import defer
from twisted.logger import Logger

from xxterocpp.control.sender import refused
from xxterocpp.ocpp import messages as m

#: Seconds between two looks for certificates due for renewal.
CHECK_INTERVAL = 3600

#: A charger asked to renew is asked again after this long while its
#: certificate is still due (it was offline, or its request was refused).
RETRY_AFTER = timedelta(days=1)


class Certificates:
    """
    Sends certificates and root certificates, and renews the chargers'.
    """

    log = Logger()

    def __init__(self, central, clock, sender):
        """
        @param central: the L{xxterocpp.domain.central.CentralSystem}.
        @param clock: an C{IReactorTime}: the renewal timer runs on it.
        @param sender: the L{xxterocpp.control.sender.Sender}.
        """
        self.central = central
        self.clock = clock
        self.sender = sender
        self._timer = None
        # Charger id -> when it was last asked to renew.
        self._asked = {}

    # -- the renewal timer -----------------------------------------------

    def start(self):
        """
        Look for certificates due now, then every L{CHECK_INTERVAL} s.
        """
        self.stop()
        self._check()

    def stop(self):
        """
        Cancel the timer (the service stops).
        """
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _check(self):
        self._timer = self.clock.callLater(CHECK_INTERVAL, self._check)
        now = self.central.now()
        for charger in self.central.chargers.values():
            certificate = self.central.security.certificate(charger.id)
            if certificate is None or self.central.security.profile(charger.id) < 3:
                continue
            # Loaded by the first certificate there is to check, not at
            # start-up (most installations have none).
            from xxterocpp.signing import RENEWAL_DAYS, needs_renewal

            if not needs_renewal(certificate.not_after, now) or not self.sender.connected(charger):
                continue
            asked = self._asked.get(charger.id)
            if asked is not None and now - asked < RETRY_AFTER:
                continue
            self.log.info("{id}: its certificate ends on {end:%Y-%m-%d}, within {days} days:"
                          " asking it to renew", id=charger.id, end=certificate.not_after,
                          days=RENEWAL_DAYS)
            self.renew(charger)

    # -- the calls -------------------------------------------------------

    def renew(self, charger):
        """
        Ask C{charger} for a new certificate signing request; refused
        without asking when its connection is one a request is not signed
        over (L{xxterocpp.domain.security.SecurityProfiles.signing_refusal}).

        @return: a Deferred firing with a
            L{xxterocpp.control.sender.CommandResult}.
        """
        why = self.central.signing_refusal(charger.id) if charger.connected else None
        if why is not None:
            return refused(f"its certificate request would be refused: {why}")
        self._asked[charger.id] = self.central.now()
        return self.sender.call(charger, m.ExtendedTriggerMessageRequest(
            requested_message="SignChargePointCertificate"))

    @defer.inlineCallbacks
    def issued(self, event):
        """
        Send the chain the domain signed (L{CertificateIssued}); accepted,
        the charger is known to have that certificate.
        """
        charger = self.central.chargers.get(event.charger_id)
        if charger is None:
            return
        signed = event.signed
        result = yield self.sender.call(charger, m.CertificateSignedRequest(
            certificate_chain=signed.certificate_chain))
        if result.accepted:
            self._asked.pop(charger.id, None)
            self.central.signing.installed(charger.id, signed.serial, signed.not_after)
        else:
            self.log.warn("{id}: did not install the certificate it was sent ({status})",
                          id=charger.id, status=result.status)

    def install_root(self, charger):
        """
        InstallCertificate of the controller's root (C{[ocpp]
        root_certificate}, one PEM certificate) as the charger's central
        system root certificate.

        @return: a Deferred firing with a
            L{xxterocpp.control.sender.CommandResult}.
        """
        path = self.central.config.ocpp.root_certificate
        try:
            # A small local file, read when asked: it may have been renewed.
            with open(path, encoding="ascii") as f:
                pem = f.read()
        except (OSError, UnicodeDecodeError) as e:
            return refused(f"cannot read [ocpp] root_certificate {path!r}"
                           f" ({getattr(e, 'strerror', None) or e})")
        from xxterocpp.signing import certificate_info

        try:
            certificate_info(pem)
        except ValueError:
            return refused("not a PEM certificate")
        return self.sender.call(charger, m.InstallCertificateRequest(
            certificate_type="CentralSystemRootCertificate", certificate=pem))
