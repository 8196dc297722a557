# -*- test-case-name: tests.test_profiles,tests.test_signing_requests -*-
"""
The chargers' certificate requests (docs/ocpp.md#certificates): a CSR signed
with the charger-signing CA when it came over TLS from a charger that proved
who it is and is fit, L{CertificateIssued} for the
controller to send it, and the certificate the charger then installed
remembered with its security profile (L{xxterocpp.domain.security}).
"""

from twisted.logger import Logger

from xxterocpp.domain.events import CertificateIssued
from xxterocpp.domain.security import ChargerCertificate
from xxterocpp.pacing import Pacer

#: Seconds from one certificate signed for a charger to the next: a charger
#: sends one request and waits for CertificateSigned (white paper A02). One
#: that floods SignCertificate had every request signed and a
#: CertificateSigned queued for it (4.6 KB each, kept while it did not
#: answer); now the others are Rejected.
SIGNING_INTERVAL = 60


class CertificateSigning:
    """
    Signing the chargers' certificate requests.

    @ivar signer: the L{xxterocpp.signing.ChargerSigner} that signs them, or
        None (signing is disabled).
    """

    log = Logger()

    def __init__(self, security, clock, now, emit, signer=None):
        """
        @param security: the L{xxterocpp.domain.security.SecurityProfiles}
            that keep each charger's certificate.
        @param clock: an C{IReactorTime} on a monotonic clock (the interval
            between two certificates, events after the answer).
        @param now: zero-argument callable, the time as an aware UTC datetime.
        @param emit: called with each event.
        """
        self._security = security
        self._clock = clock
        self._now = now
        self._emit = emit
        self.signer = signer
        # Charger id -> when its last certificate was signed (clock seconds).
        self._signed_at = {}
        self._lines = Pacer(SIGNING_INTERVAL)
        self._refusal_lines = Pacer(SIGNING_INTERVAL)

    def requested(self, charger_id, csr, secure):
        """
        A charger asks for its certificate to be signed (white paper A02,
        A03). It is, with the charger-signing CA, when it asks over a
        connection that may (L{SecurityProfiles.signing_refusal}: TLS, and
        the charger proved who it is), the CSR is fit
        (L{xxterocpp.signing.ChargerSigner.sign}: CN = the identity) and
        none was signed for the charger in the last L{SIGNING_INTERVAL};
        L{CertificateIssued} then follows in the next reactor turn, after
        the answer.

        @param csr: the PEM certificate signing request.
        @param secure: whether the connection it came over is TLS.
        @return: whether it was signed.
        """
        why = self._security.signing_refusal(charger_id, secure)
        if why is not None:
            # A charger retries; one line per charger per interval says why.
            held = self._refusal_lines.due(charger_id, self._clock.seconds())
            if held is not None:
                self.log.warn("{id}: certificate signing request refused: {why}{more}",
                              id=charger_id, why=why,
                              more=f" ({held} more refused since the last such line)"
                              if held else "")
            return False
        if self.signer is None:
            self.log.warn("{id}: certificate signing request refused: signing is disabled (no"
                          " charger-signing CA; make one with 'xxterocpp-certs signing-ca')",
                          id=charger_id)
            return False
        seconds = self._clock.seconds()
        last = self._signed_at.get(charger_id)
        if last is not None and seconds - last < SIGNING_INTERVAL:
            held = self._lines.due(charger_id, seconds)
            if held is not None:
                self.log.warn("{id}: certificate signing request refused: one was signed"
                              " {ago:.0f} s ago, a charger gets one per {s} s{more}",
                              id=charger_id, ago=seconds - last, s=SIGNING_INTERVAL,
                              more=f" ({held} more refused since the last such line)"
                              if held else "")
            return False
        # Loaded with the signer (xxterocpp.tap.charger_signer), not before.
        from xxterocpp.signing import CsrRejected

        try:
            signed = self.signer.sign(csr, charger_id, self._now())
        except CsrRejected as e:
            self.log.warn("{id}: certificate signing request refused: {why}", id=charger_id,
                          why=e.reason)
            return False
        self._signed_at[charger_id] = seconds
        self.log.info("{id}: certificate signed (serial {serial}, valid until {until})",
                      id=charger_id, serial=signed.serial, until=signed.not_after.isoformat())
        self._clock.callLater(0, self._emit, CertificateIssued(charger_id, signed))
        return True

    def installed(self, charger_id, serial, not_after):
        """
        A charger took the certificate it was sent (CertificateSigned).
        """
        self.log.info("{id}: installed its new certificate (serial {serial})", id=charger_id,
                      serial=serial)
        self._security.remember_certificate(charger_id, ChargerCertificate(serial, not_after))
