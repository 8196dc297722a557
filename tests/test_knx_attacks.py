"""
Hostile and unlucky sequences against "every group object tells the
truth, also when things go wrong": the whole service, a real knxd and
simulated chargers (the harness of L{tests.test_knx_truth}), and where a
fake clock is easier, the controller alone (L{tests.test_control}).

Each test asserts what the rules of C{docs/knx-objects.md} say must then
be on the bus, the page or the API.

Skipped when knxd is not installed (C{apt-get install knxd}).
"""

import struct

from twisted.internet import defer, reactor, task
from twisted.logger import capturedLogs, formatEvent

from tests.knxtruth import (
    NEW_OBJECTS, PROMPT, TWELVE_OBJECTS, address, api, float32, int32, uint8,
)
from tests.sim import CallErrorReceived, ConfigurationKey, ConnectionClosed
from tests.test_knx_truth import TruthTestCase, connector_json
from tests.test_reservations import EXPIRY, ReservationTestCase, expiry_of
from xxterocpp.control.reservations import RENEW_BEFORE
from xxterocpp.domain.events import StatusChanged
from xxterocpp.knx.address import GroupAddress
from xxterocpp.knx.knxd import EIB_GROUP_PACKET

#: The call timeout of the truth configuration (s).
CALL_TIMEOUT = 1.0

#: The call timeout of L{tests.test_control}'s configuration (s).
CONTROL_CALL_TIMEOUT = 5.0

#: C{[knx] offline_after} of the offline tests (s).
OFFLINE_AFTER = 1.0

#: C{[ocpp] reservation_expiry} of the renewal tests (s): renewed after 1 s.
RESERVATION_EXPIRY = 2.0

AVAILABLE, PREPARING, CHARGING, RESERVED, UNAVAILABLE, FAULTED = (
    uint8(0), uint8(1), uint8(2), uint8(6), uint8(7), uint8(8))

#: CP1's currents: normal 16 A, fast 32 A.
NORMAL, FAST = 16.0, 32.0

#: Every object of CP1 in these tests.
ALL = TWELVE_OBJECTS + NEW_OBJECTS


def pause(seconds):
    """
    @return: a Deferred firing after C{seconds} of the reactor.
    """
    return task.deferLater(reactor, seconds, lambda: None)


class AttackTestCase(TruthTestCase):
    """
    The truth harness with every object of CP1 linked.
    """

    objects = ALL

    @defer.inlineCallbacks
    def reserve(self, cp):
        """
        Reserve CP1 through KNX; the charger accepts and reports Reserved.

        @return: the ReserveNow payload.
        """
        self.bus.write(address("reserve"), 1)
        _, call = yield cp.wait_for_call("ReserveNow", timeout=PROMPT)
        yield cp.status(1, "Reserved")
        yield self.expect("status", RESERVED)
        yield self.bus.barrier(address("status"))
        return call

    @defer.inlineCallbacks
    def restart(self):
        """
        Stop the service and start it again on the same state database.
        """
        yield self.service.stopService()
        yield self.start()


class QuickSuccessionTests(AttackTestCase):
    """
    Commands written faster than the charger answers them.
    """

    @defer.inlineCallbacks
    def test_stop_while_the_start_is_outstanding(self):
        """
        charging = 1, then 0 before the charger answered the start: the
        stop is refused at once (nothing runs) and the bus gets 0; the
        start's refusal, later, writes 0 once more.
        """
        cp = yield self.charger()
        cp.never_answer("RemoteStartTransaction")
        self.bus.write(address("charging"), 1)
        unique_id, _ = yield cp.wait_for_call("RemoteStartTransaction", timeout=PROMPT)
        self.bus.write(address("charging"), 0)
        yield self.expect("charging", 0)
        yield self.bus.barrier(address("status"))
        cp.reply(unique_id, {"status": "Rejected"})
        yield self.expect("charging", 0)
        self.assertNotIn("RemoteStopTransaction", [name for name, _ in cp.calls_received])

    @defer.inlineCallbacks
    def test_stop_while_the_start_times_out(self):
        cp = yield self.charger()
        cp.never_answer("RemoteStartTransaction")
        self.bus.write(address("charging"), 1)
        yield cp.wait_for_call("RemoteStartTransaction", timeout=PROMPT)
        self.bus.write(address("charging"), 0)
        yield self.expect("charging", 0)
        yield self.bus.barrier(address("status"))
        yield self.expect("charging", 0, timeout=CALL_TIMEOUT + PROMPT)

    @defer.inlineCallbacks
    def test_two_max_current_writes_in_one_turn(self):
        """
        The last write wins, on the charger and on the bus.
        """
        cp = yield self.charger()
        self.bus.write(address("max_current"), float32(10.0))
        self.bus.write(address("max_current"), float32(12.0))
        yield self.profiles_until(cp, lambda cp: cp.limit_in_force(1) == 12.0)
        yield self.bus.barrier(address("status"))
        # both answers are in: nothing more is on its way
        yield pause(0.2)
        yield self.bus.barrier(address("status"))
        self.assertEqual(self.sent("max_current", 0)[-1], float32(12.0))
        self.assertEqual((yield self.answers(["max_current"])), {"max_current": float32(12.0)})
        self.assertEqual(cp.limit_in_force(1), 12.0)


class DisconnectTests(AttackTestCase):
    """
    The charger drops off at the worst moment.
    """

    knx = (f"offline_after = {OFFLINE_AFTER:g}",)

    @defer.inlineCallbacks
    def test_disconnect_during_remote_start(self):
        cp = yield self.charger()
        start = self.bus.start
        cp.never_answer("RemoteStartTransaction")
        self.bus.write(address("charging"), 1)
        yield cp.wait_for_call("RemoteStartTransaction", timeout=PROMPT)
        yield cp.close()
        # the start fails with the connection: its feedback does not say
        # the charger is still online
        yield self.expect("charging", 0)
        yield self.bus.barrier(address("status"))
        self.assertEqual(set(self.sent("online", start)), {0})

    @defer.inlineCallbacks
    def test_replaced_connection_stays_online(self):
        """
        The charger connects again before the old connection is gone (a
        NAT timeout): it never was offline.
        """
        cp = yield self.charger()
        start = self.bus.start
        cp.never_answer("UnlockConnector")
        self.bus.write(address("unlock"), 1)
        yield cp.wait_for_call("UnlockConnector", timeout=PROMPT)
        again = yield self.connect()
        yield cp.wait_closed()
        yield again.status(1, "Available")
        yield self.bus.barrier(address("status"))
        self.assertNotIn(0, self.sent("online", start))
        self.assertEqual((yield self.answers(["online"])), {"online": 1})

    @defer.inlineCallbacks
    def test_disconnect_before_the_start_is_answered(self):
        """
        The StartTransaction arrived, its answer did not: the session counts
        once, also when the charger sends the same start again.
        """
        cp = yield self.charger()
        start = self.bus.start
        yield cp.status(1, "Preparing")
        when = "2030-01-01T00:00:00Z"
        d = cp.call("StartTransaction", {"connectorId": 1, "idTag": "04A1B2C3",
                                         "meterStart": 1000, "timestamp": when})
        d.addErrback(lambda f: f.trap(ConnectionClosed))
        cp._protocol.transport.abortConnection()
        yield d
        yield self.expect("online", 0)
        cp = yield self.connect()
        answer = yield cp.start_transaction(1, "04A1B2C3", 1000, timestamp=when)
        self.assertEqual(answer["idTagInfo"]["status"], "Accepted")
        yield cp.status(1, "Charging")
        yield self.bus.barrier(address("status"))
        self.assertEqual((self.sent("charging", start), len(self.sent("start_time", start))),
                         ([1], 1))
        yield cp.stop_transaction(answer["transactionId"], 1500)
        yield self.expect("charging", 0)
        yield self.expect("energy", int32(500))


class OfflineRestartTests(AttackTestCase):
    """
    The service restarts while a charger is away.
    """

    knx = (f"offline_after = {OFFLINE_AFTER:g}",)

    @defer.inlineCallbacks
    def offline_while_charging(self):
        cp = yield self.charger()
        yield self.session(cp)
        yield self.bus.barrier(address("status"))
        yield cp.close()
        yield self.expect("status", UNAVAILABLE, timeout=OFFLINE_AFTER + PROMPT)

    @defer.inlineCallbacks
    def test_restart_while_offline_keeps_it_unavailable(self):
        """
        The charger was offline before the restart and is not back: the bus
        does not go back to its last reported status.
        """
        yield self.offline_while_charging()
        start = self.bus.mark()
        yield self.restart()
        yield self.bus.barrier(address("status"))
        self.assertNotIn(CHARGING, self.sent("status", start))
        self.assertEqual((yield self.answers(["status", "availability", "online"])),
                         {"status": UNAVAILABLE, "availability": 0, "online": 0})
        charger = yield self.status_json("CP1")
        self.assertEqual(connector_json(charger, 1)["status"], "Unavailable")
        cp = yield self.connect()
        yield self.expect("online", 1)
        yield cp.status(1, "Charging")
        yield self.expect("status", CHARGING)
        yield self.expect("availability", 1)

    @defer.inlineCallbacks
    def test_restart_during_offline_after(self):
        """
        Away for less than offline_after when the service stops: after the
        restart, Unavailable once offline_after has passed since the
        disconnection; the status before, if it had not passed by the
        start (the restart took less than offline_after).
        """
        cp = yield self.charger()
        yield self.session(cp)
        yield cp.close()
        yield self.expect("online", 0)
        start = self.bus.mark()
        yield self.restart()
        while (yield self.bus.next(address("status"), timeout=OFFLINE_AFTER + PROMPT)
               ).payload != UNAVAILABLE:
            pass
        yield self.bus.barrier(address("status"))
        self.assertIn((self.sent("status", start), self.sent("availability", start)),
                      [([CHARGING, UNAVAILABLE], [1, 0]), ([UNAVAILABLE], [0])])
        self.assertEqual(self.sent("online", start), [0])
        self.assertEqual((yield self.answers(["online", "charging"])),
                         {"online": 0, "charging": 1})


class RestartTests(AttackTestCase):
    """
    The service restarts while things are going on.
    """

    @defer.inlineCallbacks
    def test_restart_during_a_session_keeps_the_current(self):
        """
        The car goes on charging at 16 A: a restart must not tell the bus
        it stopped (0 A, 0 W) before the charger reports anything.
        """
        cp = yield self.charger()
        tx = yield self.session(cp)
        yield cp.meter_values(1, tx, energy_wh=3000, currents=[NORMAL] * 3)
        yield self.expect("current", float32(NORMAL))
        start = self.bus.mark()
        yield self.restart()
        yield self.bus.barrier(address("status"))
        self.assertNotIn(float32(0), self.sent("current", start))
        self.assertNotIn(float32(0), self.sent("power", start))
        answers = yield self.answers(["current", "power", "charging"])
        self.assertEqual(answers["charging"], 1)
        self.assertNotIn(float32(0), (answers["current"], answers["power"]))
        cp = yield self.connect()
        yield cp.meter_values(1, tx, energy_wh=3100, currents=[10.0] * 3)
        yield self.expect("current", float32(10.0))
        yield self.expect("power", float32(10.0 * 230 * 3))

    @defer.inlineCallbacks
    def test_restart_during_a_reservation(self):
        """
        The KNX reservation still holds: a KNX start is refused without a
        RemoteStartTransaction, and sent back as 0.
        """
        cp = yield self.charger()
        yield self.reserve(cp)
        yield self.restart()
        cp = yield self.connect()
        yield cp.status(1, "Reserved")
        yield self.bus.barrier(address("status"))
        self.bus.write(address("charging"), 1)
        self.assertNotIn("RemoteStartTransaction", (yield self.calls_since(cp)))
        yield self.expect("charging", 0)
        # the page's Start button too, and the bus hears of its refusal
        code, body = yield api(self.service, "POST", "/api/chargers/CP1/start", {})
        self.assertEqual(code, 409, body)
        yield self.expect("charging", 0)
        yield self.expect("status", RESERVED)

    @defer.inlineCallbacks
    def test_restart_after_a_refused_session(self):
        """
        A Blocked session still runs at the charger across the restart: its
        readings and its stop are no session on the bus.
        """
        cp = yield self.charger()
        yield cp.status(1, "Preparing")
        answer = yield cp.start_transaction(1, "BLOCKED1", 5000)
        self.assertEqual(answer["idTagInfo"]["status"], "Blocked")
        yield self.restart()
        cp = yield self.connect()
        yield cp.status(1, "Charging")
        start = yield self.bus.barrier(address("status"))
        tx = answer["transactionId"]
        yield cp.meter_values(1, tx, energy_wh=5600, currents=[NORMAL] * 3, power_w=11000)
        yield cp.stop_transaction(tx, 5800)
        yield cp.status(1, "Available")
        yield self.bus.barrier(address("status"))
        quiet = ("charging", "start_time", "end_time", "energy", "session_energy", "power",
                 "current")
        self.assertEqual({name: self.sent(name, start) for name in quiet},
                         {name: [] for name in quiet})
        self.assertEqual(self.sent("meter", start), [int32(5600), int32(5800)])
        self.assertEqual((yield self.answers(["charging", "power", "current"])),
                         {"charging": 0, "power": float32(0), "current": float32(0)})


class ConnectorZeroAttackTests(AttackTestCase):
    """
    Connector 0 Faulted, then the charger goes away and comes back.
    """

    knx = (f"offline_after = {OFFLINE_AFTER:g}",)

    @defer.inlineCallbacks
    def test_faulted_then_offline_then_back(self):
        cp = yield self.charger()
        yield cp.status(0, "Faulted", "GroundFailure")
        yield self.expect("status", FAULTED)
        yield self.expect("error_code", uint8(3))
        yield self.expect("availability", 0)
        yield cp.close()
        yield self.expect("online", 0)
        yield self.expect("status", UNAVAILABLE, timeout=OFFLINE_AFTER + PROMPT)
        yield self.expect("error_code", uint8(0))
        self.assertEqual((yield self.answers(["availability", "plugged"])),
                         {"availability": 0, "plugged": 0})
        cp = yield self.connect()
        yield self.expect("online", 1)
        # connector 0 has not reported otherwise: the charger is still faulted
        yield self.expect("status", FAULTED)
        yield self.expect("error_code", uint8(3))
        charger = yield self.status_json("CP1")
        self.assertEqual((connector_json(charger, 1)["status"],
                          connector_json(charger, 1)["available"]), ("Faulted", False))
        yield cp.status(0, "Available")
        yield self.expect("status", AVAILABLE)
        yield self.expect("availability", 1)


class OddReportTests(AttackTestCase):
    """
    What a charger reports that it should not, or twice.
    """

    @defer.inlineCallbacks
    def test_duplicate_status_notifications(self):
        cp = yield self.charger()
        start = self.bus.start
        for _ in range(3):
            yield cp.status(1, "Preparing")
        for _ in range(3):
            yield cp.status(1, "Charging")
        yield self.bus.barrier(address("status"))
        self.assertEqual((self.sent("status", start), self.sent("plugged", start)),
                         ([PREPARING, CHARGING], [1]))

    @defer.inlineCallbacks
    def test_status_of_a_connector_not_configured(self):
        """
        CP1 has two connectors, only the first is a charging point: the
        second's fault is not the first's.
        """
        cp = yield self.connect()
        cp.configuration["NumberOfConnectors"] = ConfigurationKey("2", readonly=True)
        yield self.boot(cp)
        start = self.bus.start
        yield cp.status(2, "Faulted", "HighTemperature")
        yield cp.status(2, "Unavailable")
        yield self.bus.barrier(address("status"))
        self.assertEqual([t for t in self.bus.any_since(start, [address(n) for n in ALL])
                          if t.kind == "write"], [])
        self.assertEqual((yield self.answers(["status", "availability"])),
                         {"status": AVAILABLE, "availability": 1})
        with self.assertRaises(CallErrorReceived):
            yield cp.status(3, "Faulted")

    @defer.inlineCallbacks
    def test_meter_follows_the_stop(self):
        """
        The meterStop of a StopTransaction is the register as the charger
        last read it: C{meter} shows it, as a read after a restart would.
        """
        cp = yield self.charger()
        tx = yield self.session(cp, meter_start=1000)
        yield cp.meter_values(1, tx, energy_wh=1500)
        yield self.expect("meter", int32(1000))
        yield self.expect("meter", int32(1500))
        yield cp.stop_transaction(tx, 1700)
        yield self.expect("meter", int32(1700))
        self.assertEqual((yield self.answers(["meter"])), {"meter": int32(1700)})

    @defer.inlineCallbacks
    def test_meter_values_and_stop_of_a_refused_session(self):
        """
        Power, current, session energy, energy and end time stay as they
        were; the meter shows the register.
        """
        cp = yield self.charger()
        tx = yield self.session(cp, meter_start=1000)
        yield cp.stop_transaction(tx, 1700)
        yield cp.status(1, "Available")
        yield self.expect("energy", int32(700))
        start = yield self.bus.barrier(address("status"))
        yield cp.status(1, "Preparing")
        answer = yield cp.start_transaction(1, "BLOCKED1", 1700)
        self.assertEqual(answer["idTagInfo"]["status"], "Blocked")
        refused = answer["transactionId"]
        yield cp.status(1, "Charging")
        yield cp.meter_values(1, refused, energy_wh=2500, currents=[NORMAL] * 3, power_w=11000)
        yield cp.meter_values(1, refused, energy_wh=3000, currents=[NORMAL] * 3)
        yield cp.stop_transaction(refused, 3000, reason="DeAuthorized")
        yield cp.status(1, "Available")
        yield self.bus.barrier(address("status"))
        quiet = ("charging", "start_time", "end_time", "energy", "session_energy", "power",
                 "current")
        self.assertEqual({name: self.sent(name, start) for name in quiet},
                         {name: [] for name in quiet})
        self.assertEqual(self.sent("meter", start), [int32(2500), int32(3000)])
        self.assertEqual((yield self.answers(["session_energy", "energy", "power"])),
                         {"session_energy": int32(700), "energy": int32(700),
                          "power": float32(0)})

    @defer.inlineCallbacks
    def test_reserved_connector_started_by_another_tag(self):
        """
        The charger lets another tag charge on the connector reserved
        through KNX: that does not free the reservation, so once that
        session is over a KNX start is still refused.
        """
        cp = yield self.charger()
        yield self.reserve(cp)
        tx = yield self.session(cp)
        yield self.expect("charging", 1)
        yield cp.stop_transaction(tx, 1500)
        yield cp.status(1, "Available")
        yield self.expect("charging", 0)
        yield self.bus.barrier(address("status"))
        self.bus.write(address("charging"), 1)
        self.assertNotIn("RemoteStartTransaction", (yield self.calls_since(cp)))
        yield self.expect("charging", 0)

    @defer.inlineCallbacks
    def test_fast_without_smart_charging(self):
        """
        No profile can limit this charger: it charges at its maximum, which
        is fast; writing 0 (normal) cannot change that and is answered so.
        """
        cp = yield self.connect()
        cp.without_smart_charging()
        yield self.boot(cp, limit=False)
        self.bus.write(address("fast"), 1)
        yield self.expect("fast", 1)
        yield self.expect("max_current", float32(FAST))
        yield self.bus.barrier(address("status"))
        self.bus.write(address("fast"), 0)
        yield self.expect("fast", 1)
        yield self.expect("max_current", float32(FAST))
        self.assertEqual((yield self.answers(["fast", "max_current"])),
                         {"fast": 1, "max_current": float32(FAST)})


class ReservationRaceTests(AttackTestCase):
    """
    Reservations renewed, freed and lost around disconnects.
    """

    ocpp = (f"reservation_expiry = {RESERVATION_EXPIRY:g}",)

    @defer.inlineCallbacks
    def test_disconnect_during_renewal(self):
        """
        The renewal is lost with the connection; it is sent again once the
        charger is back, and the reservation still refuses starts.
        """
        cp = yield self.charger()
        yield self.reserve(cp)
        cp.never_answer("ReserveNow")
        yield cp.wait_for_call("ReserveNow", timeout=RESERVATION_EXPIRY + PROMPT)
        yield cp.close()
        cp = yield self.connect()
        yield cp.status(1, "Reserved")
        _, renewal = yield cp.wait_for_call("ReserveNow", timeout=RESERVATION_EXPIRY + PROMPT)
        self.assertEqual(renewal["connectorId"], 1)
        self.bus.write(address("charging"), 1)
        self.assertNotIn("RemoteStartTransaction", (yield self.calls_since(cp)))
        yield self.expect("charging", 0)

    @defer.inlineCallbacks
    def test_free_while_offline(self):
        """
        The CancelReservation cannot be sent: the reservation holds, the
        charger gets it again when it is back, and KNX starts stay refused.
        """
        cp = yield self.charger()
        yield self.reserve(cp)
        yield cp.close()
        yield self.expect("online", 0)
        yield self.bus.barrier(address("status"))
        self.bus.write(address("reserve"), 0)
        # not carried out: every known send object is written again
        yield self.expect("status", RESERVED)
        cp = yield self.connect()
        yield cp.boot()
        yield cp.wait_for_call("ReserveNow", timeout=PROMPT)
        yield cp.status(1, "Reserved")
        yield self.bus.barrier(address("status"))
        self.bus.write(address("charging"), 1)
        self.assertNotIn("RemoteStartTransaction", (yield self.calls_since(cp)))
        yield self.expect("charging", 0)


class RebootTests(AttackTestCase):
    """
    The charger reboots: it forgets its profiles, and maybe its session.
    """

    @defer.inlineCallbacks
    def reboot(self, cp):
        """
        Drop C{cp}'s connection and connect and boot a fresh one (the
        charger's profiles are gone).
        """
        yield cp.close()
        yield self.expect("online", 0)
        cp = yield self.connect()
        yield cp.boot()
        return cp

    @defer.inlineCallbacks
    def test_the_limit_holds_after_a_reboot(self):
        cp = yield self.charger()
        self.bus.write(address("max_current"), float32(10.0))
        yield self.expect("max_current", float32(10.0))
        cp = yield self.reboot(cp)
        yield self.profiles_until(cp, lambda cp: cp.limit_in_force(1) == 10.0)
        yield cp.status(1, "Available")
        yield self.bus.barrier(address("status"))
        self.assertEqual((yield self.answers(["max_current", "fast", "online"])),
                         {"max_current": float32(10.0), "fast": 0, "online": 1})

    @defer.inlineCallbacks
    def test_session_stopped_after_the_reboot(self):
        """
        The session the reboot ended is reported after the boot: it ends on
        the bus then, with its energy.
        """
        cp = yield self.charger()
        tx = yield self.session(cp, meter_start=1000)
        yield self.bus.barrier(address("status"))
        cp = yield self.reboot(cp)
        yield cp.status(1, "Available")
        yield cp.stop_transaction(tx, 1800, reason="Reboot")
        yield self.expect("charging", 0)
        yield self.expect("energy", int32(800))
        yield self.expect("session_energy", int32(800))
        self.assertEqual((yield self.answers(["charging", "power", "plugged"])),
                         {"charging": 0, "power": float32(0), "plugged": 0})


class SmartAttackTests(AttackTestCase):
    """
    Smart sessions cut short: whatever happens, the point's own limit holds
    once the session is over. The plan waits for the cheap hours (0 A now);
    the Smart Energy Manager plans a session at once.
    """

    cheap_now = False

    @defer.inlineCallbacks
    def start(self):
        yield super().start()
        self.service.smart.start_delay = 0.1

    @defer.inlineCallbacks
    def smart_session(self, cp):
        tx = yield self.session(cp, tag="SMARTTAG")
        yield self.profiles_until(cp, lambda cp: cp.limit_in_force(1) == 0.0)
        return tx

    @defer.inlineCallbacks
    def normal_again(self, cp):
        """
        The charger and the bus are back at the normal limit.
        """
        yield self.profiles_until(cp, lambda cp: cp.limit_in_force(1) == NORMAL)
        yield self.bus.barrier(address("status"))
        self.assertEqual((yield self.answers(["max_current"])), {"max_current": float32(NORMAL)})
        self.assertEqual(cp.limit_in_force(1), NORMAL)

    @defer.inlineCallbacks
    def test_disconnect_during_a_smart_session(self):
        cp = yield self.charger()
        tx = yield self.smart_session(cp)
        yield cp.close()
        cp = yield self.connect()
        yield cp.boot()
        yield cp.status(1, "Charging")
        yield self.profiles_until(cp, lambda cp: cp.limit_in_force(1) == 0.0)
        yield cp.stop_transaction(tx, 1500)
        yield cp.status(1, "Available")
        yield self.normal_again(cp)

    @defer.inlineCallbacks
    def test_smart_session_never_stopped(self):
        """
        The charger rebooted and lost the smart session's StopTransaction;
        the next RFID session closes it, and gets the normal limit.
        """
        cp = yield self.charger()
        yield self.smart_session(cp)
        yield cp.close()
        cp = yield self.connect()
        yield cp.boot()
        yield self.session(cp, meter_start=2000)
        yield self.normal_again(cp)

    @defer.inlineCallbacks
    def test_restart_during_a_smart_session(self):
        cp = yield self.charger()
        tx = yield self.smart_session(cp)
        yield self.restart()
        cp = yield self.connect()
        yield cp.boot()
        yield cp.status(1, "Charging")
        yield cp.stop_transaction(tx, 1500)
        yield cp.status(1, "Available")
        yield self.normal_again(cp)


#: For each receive object, writes it cannot use.
GARBAGE = {
    "charging": (2, 63, b"\x02", b"\x01\x00"),
    "reserve": (2, b"\x00\x01"),
    "availability": (3, b"\x01\x01\x01"),
    "unlock": (2, b"\xff\xff"),
    "reset": (5, b"\x00\x00\x00\x00"),
    "fast": (2, b"\x01\x02"),
    "max_current": (1, b"\x41", b"\x41\x80", float32(float("nan")), float32(float("inf")),
                    float32(-6.0), b"\x41\x80\x00\x00\x00"),
}


class BusNoiseTests(AttackTestCase):
    """
    Garbage and read storms from the bus.
    """

    @defer.inlineCallbacks
    def test_garbage_on_every_receive_address(self):
        """
        No command reaches the charger, nothing is written back, and the
        bridge goes on answering.
        """
        cp = yield self.charger()
        # What the set-up sends and writes is over before the counts start.
        yield self.set_up(cp)
        start = yield self.bus.barrier(address("status"))
        calls = len(cp.calls_received)
        for name, values in GARBAGE.items():
            for value in values:
                self.bus.write(address(name), value)
            # someone else's responses are no commands either
            self.bus.peer.respond(address(name), 1)
        for name in ("status", "energy", "online", "meter"):
            self.bus.write(address(name), b"\xde\xad\xbe\xef\x00")
        # APDUs that are no GroupValue write at all: too short, another APCI
        for apdu in (b"\x00", b"\x00\xc0", b"\x03\x80\x01", b"\x02\x81"):
            for name in GARBAGE:
                self.peer.protocol.sendString(
                    struct.pack(">H", EIB_GROUP_PACKET) + GroupAddress.parse(address(name)).encode()
                    + apdu)
        self.assertEqual((yield self.calls_since(cp, calls)), ["UnlockConnector"])
        yield self.bus.barrier(address("status"))
        self.assertEqual([t for t in self.peer.telegrams[start:] if t.kind == "write"], [])
        self.assertEqual((yield self.answers(["status", "charging", "max_current", "fast"])),
                         {"status": AVAILABLE, "charging": 0, "max_current": float32(NORMAL),
                          "fast": 0})

    @defer.inlineCallbacks
    def test_read_storm(self):
        """
        A few hundred reads: each of a send object is answered once, with
        its value; receive-only objects and the never-connected charger
        answer none.
        """
        cp = yield self.charger()
        tx = yield self.session(cp)
        yield cp.meter_values(1, tx, currents=[NORMAL] * 3)
        yield self.expect("current", float32(NORMAL))
        sending = ("status", "charging", "availability", "max_current", "online", "plugged",
                   "fast", "current")
        silent = [address(name) for name in ("reserve", "unlock", "reset")] + [
            address(name, "NEVER") for name in sending]
        start = self.bus.mark()
        rounds = 25
        for _ in range(rounds):
            for name in sending:
                self.bus.read(address(name))
            for dst in silent:
                self.bus.read(dst)
        yield self.bus.barrier(address("status"), pending=rounds)
        expected = dict(status=CHARGING, charging=1, availability=1, max_current=float32(NORMAL),
                        online=1, plugged=1, fast=0, current=float32(NORMAL))
        for name in sending:
            answered = self.bus.since(start, address(name), "response")
            if name == "status":
                answered = answered[:rounds]
            self.assertEqual(answered, [expected[name]] * rounds, name)
        self.assertEqual([t for t in self.bus.any_since(start, silent) if t.kind != "read"], [])


class FreeDuringRenewalTests(ReservationTestCase):
    """
    The renewal of a reservation held until freed falls due while its
    CancelReservation is on its way (the controller alone, on a fake
    clock).
    """

    def freeing(self):
        """
        Reserve CP1, and free it shortly before the renewal is due; the
        charger has not answered the CancelReservation yet.

        @return: the charger, the CancelReservation's id, the free's Deferred.
        """
        cp = self.connect()
        self.reserved(cp)
        cp.answers["CancelReservation"] = None
        self.clock.advance(EXPIRY * RENEW_BEFORE - 1)
        d = self.controller.free("CP1")
        self.settle()
        [(unique_id, action, _)] = cp.take()
        self.assertEqual(action, "CancelReservation")
        # the renewal is due now, the cancellation not timed out yet
        self.clock.advance(2)
        self.settle()
        return cp, unique_id, d

    def test_no_renewal_after_the_free(self):
        cp, unique_id, d = self.freeing()
        self.assertEqual(cp.actions(), [])
        cp.answer(unique_id, {"status": "Accepted"})
        self.assertTrue(self.result(d).accepted)
        self.status(cp, "Available")
        self.clock.advance(EXPIRY * 10)
        self.assertEqual((cp.actions(), self.reservation()), ([], None))
        self.assertTrue(self.result(self.controller.start("CP1")).accepted)

    def test_renewed_when_the_free_times_out(self):
        """
        Not freed: the reservation holds, and is renewed as before.
        """
        cp, unique_id, d = self.freeing()
        self.clock.advance(CONTROL_CALL_TIMEOUT)
        self.assertEqual(self.result(d).status, "Timeout")
        self.settle()
        self.assertEqual(cp.actions(), ["ReserveNow"])
        self.assertIsNotNone(self.reservation())
        self.assertEqual(self.result(self.controller.start("CP1")).status, "Refused")


class ClockJumpTests(ReservationTestCase):
    """
    The controller's clock jumps far ahead at once (a fake clock).
    """

    def offline(self):
        """
        CP1 disconnects, and the clock jumps far past offline_after.
        """
        cp = self.connect()
        self.central.connections.disconnected("CP1", cp.session)
        self.clock.advance(self.central.config.knx.offline_after * 100)

    def test_offline_once_after_a_jump(self):
        self.offline()
        changed = [e for e in self.events if isinstance(e, StatusChanged)]
        self.assertEqual(([(e.charger_id, e.connector) for e in changed],
                          self.central.point_status("CP1", 1)),
                         ([("CP1", None)], ("Unavailable", "NoError")))

    def test_still_offline_after_a_restart(self):
        """
        Offline when the service stops, offline at once when it starts
        again; back when it connects.
        """
        self.offline()
        self.controller.shutdown()
        self.central.shutdown()
        self.start()
        self.assertEqual(self.central.point_status("CP1", 1), ("Unavailable", "NoError"))
        self.connect()
        self.assertEqual(self.central.point_status("CP1", 1), (None, None))
        self.assertFalse(self.central.chargers["CP1"].offline)

    def test_renewed_once_after_a_jump(self):
        """
        Ten expiries ahead: one renewal, holding from now on.
        """
        cp = self.connect()
        self.reserved(cp)
        self.clock.advance(EXPIRY * 10)
        self.settle()
        [renewal] = cp.payloads("ReserveNow")
        self.assertGreater(expiry_of(renewal), self.central.now())
        self.assertEqual(self.result(self.controller.start("CP1")).status, "Refused")


class FloodTests(AttackTestCase):
    """
    A second KNX client writing a charger's objects hundreds of times while
    the charger answers none of its calls (docs/architecture.md#bounds).
    """

    @defer.inlineCallbacks
    def test_availability_flood_keeps_one_call_queued(self):
        """
        200 writes of availability (0, 1, 0, ...) to a charger that never
        answers ChangeAvailability: one call is outstanding, one waits (each
        newer write takes the queued one's place), the replaced ones end
        "Superseded"; once all timed out the object tells the truth: the
        charger is still available.
        """
        cp = yield self.charger()
        cp.never_answer("ChangeAvailability")
        with capturedLogs() as logs:
            for i in range(200):
                self.bus.write(address("availability"), i % 2)
            yield self.bus.barrier(address("status"))
            yield cp.wait_for_call("ChangeAvailability", timeout=PROMPT)
        lines = [formatEvent(e) for e in logs]
        # A replaced write is no failure: it is said so, not as "not carried out".
        self.assertTrue([line for line in lines if "replaced by a newer command of its kind" in line])
        self.assertFalse([line for line in lines if "not carried out: Superseded" in line])
        session = self.service.central.chargers["CP1"].session
        self.assertLessEqual(session.waiting, 1)
        # the outstanding one and the one queued behind it time out
        yield pause(2 * CALL_TIMEOUT + 0.5)
        yield self.bus.barrier(address("status"))
        calls = [name for name, _ in cp.calls_received if name == "ChangeAvailability"]
        self.assertLessEqual(len(calls), 2)
        self.assertEqual(session.waiting, 0)
        self.assertEqual((yield self.answers(["availability"])), {"availability": 1})
