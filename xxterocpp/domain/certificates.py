# -*- test-case-name: tests.test_profiles -*-
"""
The chargers' certificate requests (docs/ocpp.md#certificates): a CSR signed
with the charger-signing CA when it is fit, L{CertificateIssued} for the
controller to send it, and the certificate the charger then installed
remembered with its security profile (L{xxterocpp.domain.security}).
"""

from twisted.logger import Logger

from xxterocpp.domain.events import CertificateIssued
from xxterocpp.domain.security import ChargerCertificate
from xxterocpp.signing import CsrRejected


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
        @param now: zero-argument callable, the time as an aware UTC datetime.
        @param emit: called with each event.
        """
        self._security = security
        self._clock = clock
        self._now = now
        self._emit = emit
        self.signer = signer

    def requested(self, charger_id, csr):
        """
        A charger asks for its certificate to be signed (white paper A02,
        A03). It is, with the charger-signing CA, when the CSR is fit
        (L{xxterocpp.signing.ChargerSigner.sign}: CN = the identity);
        L{CertificateIssued} then follows in the next reactor turn, after
        the answer.

        @param csr: the PEM certificate signing request.
        @return: whether it was signed.
        """
        if self.signer is None:
            self.log.warn("{id}: certificate signing request refused: signing is disabled (no"
                          " charger-signing CA; make one with 'xxterocpp-certs signing-ca')",
                          id=charger_id)
            return False
        try:
            signed = self.signer.sign(csr, charger_id, self._now())
        except CsrRejected as e:
            self.log.warn("{id}: certificate signing request refused: {why}", id=charger_id,
                          why=e.reason)
            return False
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
