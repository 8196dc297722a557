# -*- test-case-name: tests.test_reservations,tests.test_control -*-
"""
Reservations: ReserveNow with reservation ids that are never reused, and
CancelReservation; both persisted, so a restart knows what is reserved.

A reservation made without an expiry holds until it is freed: each
ReserveNow holds at the charger for C{[ocpp] reservation_expiry} seconds
only, so it is renewed (the same reservationId replaces the reservation at
the charger, OCPP 1.6 §5.13) halfway through, and sent again when the
charger has lost it (a reboot, or it reports the connector Available). One
given an expiry ends then.
"""

from datetime import datetime, timedelta

import attr
from twisted.logger import Logger

from xxterocpp.domain.model import Reservation
from xxterocpp.ocpp import messages as m

#: Of C{reservation_expiry}, what may at most remain at the charger when a
#: reservation held until freed is renewed: halfway, so a slow or lost
#: answer leaves time for retries.
RENEW_BEFORE = 0.5

#: Of C{reservation_expiry}, how long after a failed renewal it is tried
#: again (at least a second).
RETRY_AFTER = 0.1


class Reservations:
    """
    The reservations of every charging point, the renewals of those held
    until freed, and the last reservation id.
    """

    log = Logger()

    def __init__(self, central, sender, save, clock):
        """
        @param central: the L{xxterocpp.domain.central.CentralSystem}.
        @param sender: the L{xxterocpp.control.sender.Sender}.
        @param save: C{save(scope, key, value)} persists a setting.
        @param clock: an C{IReactorTime} for the renewals.
        """
        self.central = central
        self.sender = sender
        self._save = save
        self.clock = clock
        self._last_id = 0
        # (charger id, connector) -> the renewal timer of a reservation held
        # until freed; the points whose renewal is on its way; the points
        # whose CancelReservation is on its way; the points with a
        # reservation in the store.
        self._timers = {}
        self._sending = set()
        self._freeing = set()
        self._kept = set()

    @property
    def expiry_seconds(self):
        """
        C{[ocpp] reservation_expiry}: how long each ReserveNow holds.
        """
        return self.central.config.ocpp.reservation_expiry

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
                                      datetime.fromisoformat(value["expiry"]),
                                      value.get("until_freed", False))
            connector = int(key[12:])
            if reservation.holds(self.central.now()):
                self.central.reports.reserved(charger_id, connector, reservation)
                self._kept.add((charger_id, connector))
                self._schedule(charger_id, connector, reservation)

    def reserve(self, charger, connector, id_tag, expiry=None):
        """
        ReserveNow for C{id_tag} until C{expiry}; without one, until it is
        freed.

        @return: a Deferred firing with a L{CommandResult}.
        """
        until_freed = expiry is None
        if until_freed:
            expiry = self._next_expiry()
        # Counted and saved before sending: a reused id would replace an
        # older reservation at the charger (OCPP 1.6 §5.13).
        self._last_id += 1
        self._save("central", "reservation_id", self._last_id)
        reservation = Reservation(self._last_id, id_tag, expiry, until_freed)
        d = self._reserve_now(charger, connector, reservation)

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
        key = (charger.id, connector)
        # No renewal while the cancellation is on its way: a ReserveNow
        # after it would reserve the connector again at the charger.
        self._cancel(key)
        self._freeing.add(key)
        d = self.sender.call(charger, m.CancelReservationRequest(reservation_id=reservation.id))

        def answered(result):
            self._freeing.discard(key)
            if result.accepted or result.status == "Rejected":
                # Rejected: the charger does not know the id (any more).
                self._reserved(charger.id, connector, None)
            else:
                # Not freed: it holds, and is renewed as before.
                self._schedule(charger.id, connector, self._held(*key))
            return result

        return d.addCallback(answered)

    def stop(self):
        """
        Cancel the renewals (the service stops).
        """
        for key in list(self._timers):
            self._cancel(key)

    # -- domain events ---------------------------------------------------

    def booted(self, event):
        """
        A rebooted charger has lost its reservations: those held until
        freed are sent again.
        """
        charger = self.central.chargers.get(event.charger_id)
        if charger is not None:
            for number in sorted(charger.connectors):
                self._renew(event.charger_id, number)

    def status_changed(self, event):
        """
        A connector held reserved that reports Available has lost its
        reservation at the charger (expired while the charger was offline,
        a reboot, a fault that ended): it is sent again.
        """
        charger = self.central.chargers.get(event.charger_id)
        if event.connector is None or charger is None:
            return
        if charger.connector(event.connector).status == "Available":
            self._renew(event.charger_id, event.connector)

    def transaction_started(self, event):
        """
        A transaction of the reserved tag has ended the reservation (the
        domain dropped it): forget it here too.
        """
        tx = event.transaction
        key = (tx.charger_id, tx.connector)
        charger = self.central.chargers.get(tx.charger_id)
        if key in self._kept and charger is not None and (
                charger.connector(tx.connector).reservation is None):
            self._reserved(tx.charger_id, tx.connector, None)

    def clock_stepped(self, event):
        """
        The system clock was stepped: each renewal is due again by the time
        given out now. After a step forward (NTP setting a clock that
        booted at 1970) the expiry each charger holds is past by the time
        it is told at its next heartbeat: renewed at once, not when the
        monotonic clock reaches the renewal (up to half of
        reservation_expiry later, the connector free at the charger
        meanwhile).
        """
        for charger_id, connector in list(self._timers):
            self._schedule(charger_id, connector, self._held(charger_id, connector))

    # -- renewals --------------------------------------------------------

    def _next_expiry(self):
        return self.central.now() + timedelta(seconds=self.expiry_seconds)

    def _reserve_now(self, charger, connector, reservation):
        return self.sender.call(charger, m.ReserveNowRequest(
            connector_id=connector, expiry_date=reservation.expiry, id_tag=reservation.id_tag,
            reservation_id=reservation.id))

    def _held(self, charger_id, connector):
        charger = self.central.chargers.get(charger_id)
        reservation = None if charger is None else charger.connector(connector).reservation
        return reservation if reservation is not None and reservation.until_freed else None

    def _renew(self, charger_id, connector):
        """
        Send a reservation held until freed again, with a new expiry (one
        ReserveNow at a time per point).
        """
        key = (charger_id, connector)
        held = self._held(charger_id, connector)
        if held is None or key in self._sending or key in self._freeing:
            return
        self._cancel(key)
        renewed = attr.evolve(held, expiry=self._next_expiry())
        self._sending.add(key)
        d = self._reserve_now(self.central.chargers[charger_id], connector, renewed)

        def answered(result):
            self._sending.discard(key)
            current = self._held(charger_id, connector)
            if current is None or current.id != held.id:
                # Freed, or ended by a transaction, meanwhile.
                return
            if result.accepted:
                self._reserved(charger_id, connector, renewed)
            else:
                retry = max(1.0, RETRY_AFTER * self.expiry_seconds)
                self.log.info("{id}/{connector}: reservation {rid} not renewed ({status}); "
                              "trying again in {retry:g} s", id=charger_id,
                              connector=connector, rid=held.id, status=result.status,
                              retry=retry)
                self._arm(key, retry)

        d.addCallback(answered)

    def _schedule(self, charger_id, connector, reservation):
        """
        Arm the renewal of C{reservation} if it is held until freed: when
        L{RENEW_BEFORE} of the expiry is left at the charger.
        """
        key = (charger_id, connector)
        self._cancel(key)
        if reservation is not None and reservation.until_freed:
            left = (reservation.expiry - self.central.now()).total_seconds()
            self._arm(key, max(0.0, left - RENEW_BEFORE * self.expiry_seconds))

    def _arm(self, key, delay):
        if self.sender.running:
            self._timers[key] = self.clock.callLater(delay, self._due, key)

    def _due(self, key):
        del self._timers[key]
        self._renew(*key)

    def _cancel(self, key):
        timer = self._timers.pop(key, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _reserved(self, charger_id, connector, reservation):
        self.central.reports.reserved(charger_id, connector, reservation)
        self._schedule(charger_id, connector, reservation)
        if reservation is None:
            self._kept.discard((charger_id, connector))
        else:
            self._kept.add((charger_id, connector))
        self._save(charger_id, f"reservation/{connector}", None if reservation is None else {
            "id": reservation.id, "id_tag": reservation.id_tag,
            "expiry": reservation.expiry.isoformat(), "until_freed": reservation.until_freed})
