"""
Tests of L{xxterocpp.control.reservations}: a reservation made without an
expiry holds until it is freed (renewed halfway through each ReserveNow's
C{[ocpp] reservation_expiry}, sent again when the charger lost it), one
given an expiry ends then. On the harness of L{tests.test_control}.
"""

import json
from datetime import datetime, timedelta

from twisted.trial.unittest import SynchronousTestCase

from tests.test_control import CONFIG, ControllerHarness
from xxterocpp.config import parse_config
from xxterocpp.control import Controller
from xxterocpp.domain.central import CentralSystem
from xxterocpp.control.reservations import RENEW_BEFORE, RETRY_AFTER

#: Each ReserveNow holds for 100 s.
EXPIRY = 100

RESERVATION_CONFIG = CONFIG.replace(
    "call_timeout = 5", f"call_timeout = 5\nreservation_expiry = {EXPIRY}") + """
[[tag]]
id = "BAD"
status = "Blocked"
"""


def expiry_of(payload):
    return datetime.fromisoformat(payload["expiryDate"].replace("Z", "+00:00"))


class ReservationTestCase(ControllerHarness, SynchronousTestCase):
    config = RESERVATION_CONFIG

    def reserved(self, cp, **kwargs):
        """
        Reserve CP1 (the charger accepts and reports Reserved).

        @return: the ReserveNow payload.
        """
        self.assertTrue(self.result(self.controller.reserve("CP1", **kwargs)).accepted)
        self.status(cp, "Reserved")
        [payload] = cp.payloads("ReserveNow")
        cp.take()
        return payload

    def status(self, cp, status):
        cp.session.text_received(json.dumps([2, "st", "StatusNotification", {
            "connectorId": 1, "errorCode": "NoError", "status": status}]))
        self.clock.advance(0)

    def reservation(self):
        return self.central.chargers["CP1"].connectors[1].reservation

    def saved(self):
        return self.store.settings[("CP1", "reservation/1")]

    def renewals(self):
        """
        @return: the pending renewal timers (the controller has others).
        """
        return [call for call in self.clock.getDelayedCalls()
                if getattr(call.func, "__name__", None) == "_due"]


class HeldReservationTests(ReservationTestCase):
    """
    A reservation without an expiry (KNX, the page, the API without one).
    """

    def test_renewed_halfway_with_the_same_id(self):
        """
        Each ReserveNow holds for reservation_expiry; halfway through it is
        sent again with the same reservationId and a later expiry, saved;
        the reservation never lapses.
        """
        cp = self.connect()
        first = self.reserved(cp)
        self.assertEqual(expiry_of(first), self.central.now() + timedelta(seconds=EXPIRY))
        self.assertEqual(self.saved()["until_freed"], True)
        self.clock.advance(EXPIRY * RENEW_BEFORE - 0.1)
        self.assertEqual(cp.actions(), [])
        self.clock.advance(0.1)
        self.settle()
        [renewal] = cp.payloads("ReserveNow")
        self.assertEqual((renewal["reservationId"], renewal["idTag"]),
                         (first["reservationId"], first["idTag"]))
        self.assertEqual(expiry_of(renewal), expiry_of(first) + timedelta(seconds=EXPIRY / 2))
        self.assertEqual(self.saved()["expiry"], expiry_of(renewal).isoformat())
        for _ in range(5):
            self.clock.advance(EXPIRY * RENEW_BEFORE)
            self.settle()
        self.assertEqual(len(cp.payloads("ReserveNow")), 6)
        self.assertTrue(self.reservation().holds(self.central.now() + timedelta(days=1)))
        self.assertEqual(self.result(self.controller.start("CP1")).status, "Refused")

    def test_freed_is_no_longer_renewed(self):
        cp = self.connect()
        self.reserved(cp)
        self.assertTrue(self.result(self.controller.free("CP1")).accepted)
        self.status(cp, "Available")
        self.clock.advance(EXPIRY * 10)
        self.assertEqual(cp.actions(), ["CancelReservation"])
        self.assertEqual((self.reservation(), self.saved()), (None, None))
        self.assertEqual(self.renewals(), [])

    def test_sent_again_after_a_reboot(self):
        cp = self.connect()
        first = self.reserved(cp)
        cp.boot()
        self.settle()
        [again] = cp.payloads("ReserveNow")
        self.assertEqual((again["reservationId"], again["connectorId"], again["idTag"]),
                         (first["reservationId"], 1, first["idTag"]))

    def test_sent_again_when_the_charger_lost_it(self):
        """
        Reserved, then Available: the charger let it go (it expired while
        the charger was offline, a fault ended it); it still holds here and
        is sent again, once.
        """
        cp = self.connect()
        first = self.reserved(cp)
        self.status(cp, "Available")
        self.status(cp, "Available")
        self.assertEqual([p["reservationId"] for p in cp.payloads("ReserveNow")],
                         [first["reservationId"]])
        self.assertIsNotNone(self.reservation())

    def test_failed_renewal_is_tried_again(self):
        cp = self.connect()
        self.reserved(cp)
        cp.answers["ReserveNow"] = {"status": "Rejected"}
        self.clock.advance(EXPIRY * RENEW_BEFORE)
        self.settle()
        cp.answers["ReserveNow"] = {"status": "Accepted"}
        self.clock.advance(EXPIRY * RETRY_AFTER)
        self.settle()
        self.assertEqual(len(cp.payloads("ReserveNow")), 2)
        self.assertIsNotNone(self.reservation())

    def test_ended_by_an_accepted_transaction(self):
        """
        The reserved tag started charging: the reservation is over, here
        and in the store; a refused session ends nothing.
        """
        cp = self.connect()
        self.reserved(cp, id_tag="GOOD")
        for tag, meter in (("BAD", 0), ("GOOD", 1)):
            cp.session.text_received(json.dumps([2, "s", "StartTransaction", {
                "connectorId": 1, "idTag": tag, "meterStart": meter,
                "timestamp": "2026-01-01T00:00:00Z"}]))
            self.clock.advance(0)
            if tag == "BAD":
                self.assertIsNotNone(self.reservation())
        self.assertEqual((self.reservation(), self.saved()), (None, None))
        self.clock.advance(EXPIRY * 10)
        self.assertEqual(cp.payloads("ReserveNow"), [])

    def test_holds_across_a_restart(self):
        """
        Restarted after its ReserveNow's expiry: still held, and renewed
        at once (the charger is not back: tried again later).
        """
        cp = self.connect()
        self.reserved(cp)
        self.controller.shutdown()
        self.clock.advance(EXPIRY * 2)
        self.start()
        self.assertTrue(self.reservation().until_freed)
        self.settle()
        self.assertIn(self.clock.seconds() + EXPIRY * RETRY_AFTER,
                      [call.getTime() for call in self.clock.getDelayedCalls()])
        cp = self.connect()
        self.settle()
        self.assertEqual(len(cp.payloads("ReserveNow")), 1)

    def test_shutdown_cancels_the_renewals(self):
        cp = self.connect()
        self.reserved(cp)
        self.controller.shutdown()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class SteppedClockReservationTests(ReservationTestCase):
    """
    A reservation held until freed and a step of the system clock (the
    monotonic clock, C{self.clock}, goes on; the system clock is it plus
    C{offset}).
    """

    offset = 0.0

    def start(self):
        self.central = CentralSystem(parse_config(self.config), self.store, self.clock,
                                     wall=lambda: self.clock.seconds() + self.offset)
        self.controller = Controller(self.central, self.clock)
        self.central.subscribe(self.controller.observe)
        self.central.load()
        self.events = []
        self.central.subscribe(self.events.append)

    def test_renewed_at_once_after_a_step_forward(self):
        """
        NTP sets a clock that booted too early (a month forward): the
        ReserveNow the charger holds expires by the time it is told at its
        next heartbeat, so it is renewed at once (same id, an expiry after
        the new time), not when the renewal would have been due by the
        monotonic clock (halfway through reservation_expiry).
        """
        cp = self.connect()
        first = self.reserved(cp)
        self.offset += 30 * 86400
        self.central.now()
        self.settle()
        [again] = cp.payloads("ReserveNow")
        self.assertEqual(again["reservationId"], first["reservationId"])
        self.assertEqual(expiry_of(again), self.central.now() + timedelta(seconds=EXPIRY))
        self.assertEqual(datetime.fromisoformat(self.saved()["expiry"]), expiry_of(again))

    def test_a_step_back_changes_nothing(self):
        """
        A step back (the time given out goes on, slower): the renewal stays
        due halfway through, by the time given out.
        """
        cp = self.connect()
        self.reserved(cp)
        [due] = [call.getTime() for call in self.renewals()]
        self.offset -= 3600
        self.central.now()
        self.settle()
        self.assertEqual(cp.payloads("ReserveNow"), [])
        self.assertGreaterEqual(min(call.getTime() for call in self.renewals()), due)


class ExpiringReservationTests(ReservationTestCase):
    """
    A reservation given an expiry (the API's C{expiry}).
    """

    def test_ends_at_its_expiry(self):
        """
        Not renewed; the charger lets it go, so do we: then a start goes
        through.
        """
        cp = self.connect()
        until = self.central.now() + timedelta(seconds=EXPIRY * 3)
        payload = self.reserved(cp, expiry=until)
        self.assertEqual(expiry_of(payload), until)
        self.assertEqual(self.saved()["until_freed"], False)
        self.assertEqual(self.result(self.controller.start("CP1")).status, "Refused")
        self.clock.advance(EXPIRY * 3)
        self.status(cp, "Available")
        self.assertIsNone(self.reservation())
        self.assertEqual(cp.actions(), [])
        self.assertTrue(self.result(self.controller.start("CP1")).accepted)
