# -*- test-case-name: tests.test_control -*-
"""
Reservations: ReserveNow with reservation ids that are never reused, and
CancelReservation; both persisted, so a restart knows what is reserved.
"""

from datetime import datetime, timedelta

from xxterocpp.domain.model import Reservation
from xxterocpp.ocpp import messages as m

#: Seconds a reservation lasts unless the command says otherwise.
RESERVATION_EXPIRY = 3600


class Reservations:
    """
    The reservations of every charging point and the last reservation id.
    """

    def __init__(self, central, sender, save):
        """
        @param central: the L{xxterocpp.domain.central.CentralSystem}.
        @param sender: the L{xxterocpp.control.sender.Sender}.
        @param save: C{save(scope, key, value)} persists a setting.
        """
        self.central = central
        self.sender = sender
        self._save = save
        self._last_id = 0

    def restore_last_id(self, value):
        """
        Take over the persisted last reservation id.
        """
        self._last_id = value

    def restore(self, charger_id, key, value):
        """
        Take over a persisted setting of a charger, if it is one of ours: a
        reservation still holding.
        """
        if key.startswith("reservation/") and value is not None:
            reservation = Reservation(value["id"], value["id_tag"],
                                      datetime.fromisoformat(value["expiry"]))
            if reservation.holds(self.central.now()):
                self.central.reserved(charger_id, int(key[12:]), reservation)

    def reserve(self, charger, connector, id_tag, expiry=None):
        """
        ReserveNow for C{id_tag} until C{expiry} (default
        L{RESERVATION_EXPIRY} from now).

        @return: a Deferred firing with a L{CommandResult}.
        """
        if expiry is None:
            expiry = self.central.now() + timedelta(seconds=RESERVATION_EXPIRY)
        # Counted and saved before sending: a reused id would replace an
        # older reservation at the charger (OCPP 1.6 §5.13).
        self._last_id += 1
        self._save("central", "reservation_id", self._last_id)
        reservation = Reservation(self._last_id, id_tag, expiry)
        d = self.sender.call(charger, m.ReserveNowRequest(
            connector_id=connector, expiry_date=expiry, id_tag=reservation.id_tag,
            reservation_id=reservation.id))

        def answered(result):
            if result.accepted:
                self._reserved(charger.id, connector, reservation)
            return result

        return d.addCallback(answered)

    def free(self, charger, connector, reservation):
        """
        CancelReservation of C{reservation}.

        @return: a Deferred firing with a L{CommandResult}.
        """
        d = self.sender.call(charger, m.CancelReservationRequest(reservation_id=reservation.id))

        def answered(result):
            if result.accepted or result.status == "Rejected":
                # Rejected: the charger does not know the id (any more).
                self._reserved(charger.id, connector, None)
            return result

        return d.addCallback(answered)

    def _reserved(self, charger_id, connector, reservation):
        self.central.reserved(charger_id, connector, reservation)
        self._save(charger_id, f"reservation/{connector}", None if reservation is None else {
            "id": reservation.id, "id_tag": reservation.id_tag,
            "expiry": reservation.expiry.isoformat()})
