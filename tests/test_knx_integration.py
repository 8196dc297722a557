"""
Integration tests of the KNX bridge: a real bus-less knxd, the whole service
in-process, simulated chargers over real WebSockets, and a second knxd
client (L{BusPeer}) that sees what the service puts on the bus and writes
what a KNX push button would.

Skipped when knxd is not installed (C{apt-get install knxd}).
"""

from datetime import datetime, timedelta

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from tests.knxdtest import LinkWatcher, connect_peer, start_knxd
from tests.service import LOOPBACK_CONFIG, start_service, write_config
from tests.sim import connect_charger
from xxterocpp.knx.address import GroupAddress
from xxterocpp.knx.dpt import lookup

#: CP1: every object, DPT 10.001 / 14.019. CP2: its times and currents as
#: DPT 19.001 / 9.021, and its status on CP1's status address.
CONFIG = LOOPBACK_CONFIG + """

[[charger]]
id = "CP1"
max_current = 32
normal_current = 16
remote_tag = "KNXTAG"

[charger.knx]
status = "1/0/0"
error_code = "1/0/1"
charging = "1/0/2"
reserve = "1/0/3"
availability = "1/0/4"
unlock = "1/0/5"
energy = "1/0/6"
start_time = "1/0/7"
end_time = "1/0/8"
current = "1/0/9"
max_current = "1/0/10"
reset = "1/0/11"

[[charger]]
id = "CP2"
max_current = 16
normal_current = 10
time_dpt = "19.001"
current_dpt = "9.021"

[charger.knx]
status = "1/0/0"
start_time = "2/0/7"
end_time = "2/0/8"
current = "2/0/9"
max_current = "2/0/10"
"""

STATUS, ERROR_CODE, CHARGING, RESERVE, AVAILABILITY, UNLOCK = (
    "1/0/0", "1/0/1", "1/0/2", "1/0/3", "1/0/4", "1/0/5")
ENERGY, START_TIME, END_TIME, CURRENT, MAX_CURRENT, RESET = (
    "1/0/6", "1/0/7", "1/0/8", "1/0/9", "1/0/10", "1/0/11")
CP2_START_TIME, CP2_END_TIME, CP2_CURRENT, CP2_MAX_CURRENT = (
    "2/0/7", "2/0/8", "2/0/9", "2/0/10")

AMPS = lookup("14.019")

#: What the first connection of each charger publishes: nothing was ever
#: said of it, and it is not charging.
FIRST_PUBLICATION = {"CP1": ((CHARGING, 0), (CURRENT, bytes(4))),
                     "CP2": ((CP2_CURRENT, b"\x00\x00"),)}


class BridgeIntegrationTests(TestCase):
    """
    Every group object on a real knxd, through the real service.
    """

    @defer.inlineCallbacks
    def setUp(self):
        self.knxd = yield start_knxd(self)
        self.peer = yield connect_peer(self, self.knxd)
        self.service = yield start_service(
            self, write_config(self, CONFIG, knxd=self.knxd.endpoint))
        self.link = LinkWatcher(self.service.knx_link)
        yield self.link.wait(True)

    @defer.inlineCallbacks
    def expect(self, dst, payload, kind="write", peer=None):
        """
        Wait for the next C{kind} telegram to C{dst} and check its payload.

        @return: the payload.
        """
        telegram = yield (peer or self.peer).wait_for(dst, kind)
        self.assertEqual(telegram.payload, payload, f"{kind} to {dst}")
        return telegram.payload

    @defer.inlineCallbacks
    def barrier(self, charger):
        """
        Change the error code of a charging connector and wait for it on the
        bus: knxd keeps the order of one sender's telegrams, so whatever the
        bridge sent before has arrived too.
        """
        self.barriers = getattr(self, "barriers", 0) + 1
        error_code, payload = ("OtherError", b"\x07") if self.barriers % 2 else ("NoError", b"\x00")
        yield charger.status(1, "Charging", error_code)
        # earlier error codes (the connector's first status) may still be unclaimed
        while (yield self.peer.wait_for(ERROR_CODE)).payload != payload:
            pass

    def sent_to(self, dst):
        return [t.payload for t in self.peer.telegrams
                if t.dst == GroupAddress.parse(dst) and t.kind == "write"]

    @defer.inlineCallbacks
    def charger(self, identity="CP1"):
        """
        Connect and boot a simulated charger, and take what its first
        connection published.
        """
        cp = yield connect_charger(self.service.url, identity)
        self.addCleanup(cp.close)
        for dst, payload in FIRST_PUBLICATION[identity]:
            yield self.expect(dst, payload)
        yield cp.boot()
        return cp

    @defer.inlineCallbacks
    def charging(self, cp, connector=1, meter_start=1000):
        """
        Start a transaction.

        @return: its id.
        """
        yield cp.status(connector, "Preparing")
        answer = yield cp.start_transaction(connector, "04A1B2C3", meter_start)
        yield cp.status(connector, "Charging")
        return answer["transactionId"]

    def assertBetween(self, moment, before, after):
        """
        C{moment} (whole seconds) is within the local times C{before} and
        C{after}, read around what made it: bounds no slow machine breaks.
        One second of slack each side for the truncation and for clocks
        read apart (the service's follows the monotonic clock).
        """
        self.assertLessEqual(before.replace(microsecond=0) - timedelta(seconds=1), moment)
        self.assertLessEqual(moment, after + timedelta(seconds=1))

    # -- send objects ------------------------------------------------------

    @defer.inlineCallbacks
    def test_never_connected_charger_says_nothing(self):
        """
        Before a charger's first connection nothing is written for it and
        reads of its objects go unanswered (CP2's answer comes after them).
        """
        yield self.charger("CP2")
        for dst in (ERROR_CODE, CHARGING, AVAILABILITY, ENERGY, START_TIME, END_TIME, CURRENT,
                    MAX_CURRENT):
            self.peer.read(dst)
        self.peer.read(CP2_CURRENT)
        yield self.expect(CP2_CURRENT, b"\x00\x00", kind="response")
        cp1 = {GroupAddress.parse(f"1/0/{n}") for n in range(1, 12)}
        self.assertEqual([t for t in self.peer.telegrams if t.dst in cp1 and t.kind != "read"],
                         [])

    @defer.inlineCallbacks
    def test_status_error_code_availability(self):
        """
        StatusNotification: status and error code with the bus numbers,
        availability 0 only when Unavailable or Faulted.
        """
        cp = yield self.charger()
        yield cp.status(1, "SuspendedEV")
        yield self.expect(STATUS, b"\x03")
        yield self.expect(ERROR_CODE, b"\x00")
        yield self.expect(AVAILABILITY, 1)
        yield cp.status(1, "Faulted", "GroundFailure")
        yield self.expect(STATUS, b"\x08")
        yield self.expect(ERROR_CODE, b"\x03")
        yield self.expect(AVAILABILITY, 0)
        yield cp.status(1, "SuspendedEVSE", "WeakSignal")
        yield self.expect(STATUS, b"\x04")
        yield self.expect(ERROR_CODE, b"\x0f")
        yield self.expect(AVAILABILITY, 1)

    @defer.inlineCallbacks
    def test_session(self):
        """
        Start: charging 1 and the local start time (DPT 10.001 with the
        weekday). Stop: charging 0, the session's energy, the end time and
        current 0. The energy is sent at the stop only.
        """
        cp = yield self.charger()
        before = datetime.now().astimezone()
        tx = yield self.charging(cp, meter_start=1000)
        started = datetime.now().astimezone()
        yield self.expect(CHARGING, 1)
        start = (yield self.peer.wait_for(START_TIME)).payload
        time = lookup("10.001").decode(start)
        self.assertEqual(time.weekday, started.isoweekday())
        self.assertBetween(started.replace(hour=time.hour, minute=time.minute,
                                           second=time.second, microsecond=0),
                           before, datetime.now().astimezone())
        yield cp.meter_values(1, tx, energy_wh=5000, currents=[16.0, 16.0, 16.0])
        yield self.expect(CURRENT, AMPS.encode(16.0))
        yield self.barrier(cp)
        self.assertEqual((self.sent_to(ENERGY), self.sent_to(END_TIME)), ([], []))

        before = datetime.now().astimezone()
        yield cp.stop_transaction(tx, 13345)
        yield self.expect(CHARGING, 0)
        yield self.expect(ENERGY, bytes.fromhex("00 00 30 39"))
        end = lookup("10.001").decode((yield self.peer.wait_for(END_TIME)).payload)
        stopped = datetime.now().astimezone()
        self.assertBetween(stopped.replace(hour=end.hour, minute=end.minute,
                                           second=end.second, microsecond=0), before, stopped)
        yield self.expect(CURRENT, bytes(4))

    @defer.inlineCallbacks
    def test_current_hysteresis(self):
        """
        The charging current goes on the bus when it moved by more than 0.2 A.
        """
        cp = yield self.charger()
        tx = yield self.charging(cp)
        for amps, sent in ((10.0, True), (10.2, False), (9.9, False), (9.7, True),
                           (9.85, False), (16.0, True)):
            yield cp.meter_values(1, tx, currents=[amps])
            yield self.barrier(cp)
            self.assertEqual(self.sent_to(CURRENT)[-1] == AMPS.encode(amps), sent, amps)
        self.assertEqual(self.sent_to(CURRENT), [
            bytes(4), AMPS.encode(10.0), AMPS.encode(9.7), AMPS.encode(16.0)])

    @defer.inlineCallbacks
    def test_19001_and_9021(self):
        """
        CP2 sends its times as DPT 19.001 and its currents in mA (DPT 9.021).
        """
        cp = yield self.charger("CP2")
        yield self.expect(CP2_MAX_CURRENT, lookup("9.021").encode(10000))  # normal_current
        before = datetime.now().astimezone()
        tx = yield self.charging(cp)
        moment = lookup("19.001").decode((yield self.peer.wait_for(CP2_START_TIME)).payload)
        now = datetime.now().astimezone()
        self.assertBetween(datetime(moment.year, moment.month, moment.day, moment.hour,
                                    moment.minute, moment.second).astimezone(), before, now)
        self.assertEqual((moment.weekday, moment.dst), (now.isoweekday(), bool(now.dst())))
        yield cp.meter_values(1, tx, currents=[16.0])
        yield self.expect(CP2_CURRENT, b"\x56\x1a")  # 16000 mA
        yield cp.stop_transaction(tx, 2000)
        self.assertEqual(len((yield self.peer.wait_for(CP2_END_TIME)).payload), 8)
        yield self.expect(CP2_CURRENT, b"\x00\x00")

    @defer.inlineCallbacks
    def test_read_is_answered(self):
        """
        GroupValueRead of a send object gets its current value; a shared
        address answers with the object written last.
        """
        cp = yield self.charger()
        yield cp.status(1, "Preparing")
        yield self.expect(STATUS, b"\x01")
        for dst, payload in ((STATUS, b"\x01"), (ERROR_CODE, b"\x00"), (CHARGING, 0),
                             (AVAILABILITY, 1), (CURRENT, bytes(4)),
                             (MAX_CURRENT, AMPS.encode(16.0))):
            self.peer.read(dst)
            yield self.expect(dst, payload, kind="response")
        cp2 = yield self.charger("CP2")
        yield cp2.status(1, "Faulted")
        yield self.expect(STATUS, b"\x08")
        self.peer.read(STATUS)
        yield self.expect(STATUS, b"\x08", kind="response")

    # -- receive objects -----------------------------------------------------

    @defer.inlineCallbacks
    def call_for(self, cp, dst, payload, action, peer=None):
        """
        Write C{payload} to C{dst} on the bus.

        @return: the payload of the OCPP call C{action} the charger got.
        """
        (peer or self.peer).write(dst, payload)
        unique_id, call = yield cp.wait_for_call(action)
        return call

    @defer.inlineCallbacks
    def test_charging_starts_and_stops(self):
        cp = yield self.charger()
        call = yield self.call_for(cp, CHARGING, 1, "RemoteStartTransaction")
        self.assertEqual(call, {"connectorId": 1, "idTag": "KNXTAG"})
        tx = yield self.charging(cp)
        call = yield self.call_for(cp, CHARGING, 0, "RemoteStopTransaction")
        self.assertEqual(call, {"transactionId": tx})

    @defer.inlineCallbacks
    def test_reserve_and_free(self):
        cp = yield self.charger()
        call = yield self.call_for(cp, RESERVE, 1, "ReserveNow")
        self.assertEqual((call["connectorId"], call["idTag"]), (1, "KNXTAG"))
        call_free = yield self.call_for(cp, RESERVE, 0, "CancelReservation")
        self.assertEqual(call_free, {"reservationId": call["reservationId"]})

    @defer.inlineCallbacks
    def test_availability(self):
        cp = yield self.charger()
        call = yield self.call_for(cp, AVAILABILITY, 0, "ChangeAvailability")
        self.assertEqual(call, {"connectorId": 1, "type": "Inoperative"})
        call = yield self.call_for(cp, AVAILABILITY, 1, "ChangeAvailability")
        self.assertEqual(call, {"connectorId": 1, "type": "Operative"})

    @defer.inlineCallbacks
    def test_unlock_and_reset(self):
        cp = yield self.charger()
        call = yield self.call_for(cp, UNLOCK, 1, "UnlockConnector")
        self.assertEqual(call, {"connectorId": 1})
        call = yield self.call_for(cp, RESET, 1, "Reset")
        self.assertEqual(call, {"type": "Soft"})

    @defer.inlineCallbacks
    def test_max_current(self):
        """
        After the boot the limit in force goes on the bus; a written limit
        becomes a charging profile, and the new limit in force is sent back.
        """
        cp = yield self.charger()
        yield self.expect(MAX_CURRENT, AMPS.encode(16.0))
        yield cp.wait_for_call("SetChargingProfile")  # the boot's
        call = yield self.call_for(cp, MAX_CURRENT, AMPS.encode(10.0), "SetChargingProfile")
        [period] = call["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"]
        self.assertEqual(period["limit"], 10.0)
        yield self.expect(MAX_CURRENT, AMPS.encode(10.0))

    @defer.inlineCallbacks
    def test_nonsense_is_ignored(self):
        """
        A 2 for a boolean or a value of the wrong length does nothing; the
        bridge carries on.
        """
        cp = yield self.charger()
        yield cp.wait_for_call("SetChargingProfile")  # the boot's
        self.peer.write(CHARGING, 2)
        self.peer.write(MAX_CURRENT, b"\x41")
        call = yield self.call_for(cp, UNLOCK, 1, "UnlockConnector")
        self.assertEqual(call, {"connectorId": 1})
        actions = [action for action, payload in cp.calls_received]
        self.assertNotIn("RemoteStartTransaction", actions)
        self.assertEqual(actions.count("SetChargingProfile"), 1)  # the boot's

    # -- knxd going away -------------------------------------------------------

    @defer.inlineCallbacks
    def test_knxd_restart_while_charging(self):
        """
        knxd killed while a charger charges: OCPP carries on, the link comes
        back with knxd and the state is published again.
        """
        cp = yield self.charger()
        tx = yield self.charging(cp)
        yield cp.meter_values(1, tx, currents=[16.0])
        yield self.expect(CURRENT, AMPS.encode(16.0))

        yield self.knxd.kill()
        yield self.link.wait(False)
        # OCPP does not notice
        yield cp.meter_values(1, tx, currents=[12.0])
        yield cp.status(1, "SuspendedEVSE")
        self.assertIn("currentTime", (yield cp.heartbeat()))

        # The new peer on the bus before the service's link can reach knxd:
        # what the link publishes when it is back would go to nobody.
        hidden = yield self.knxd.start_hidden()
        peer = yield connect_peer(self, hidden)
        self.assertFalse(self.service.knx_link.connected)
        self.knxd.reveal()
        yield self.link.wait(True)
        yield self.expect(STATUS, b"\x04", peer=peer)
        yield self.expect(CHARGING, 1, peer=peer)
        yield self.expect(CURRENT, bytes(4), peer=peer)  # SuspendedEVSE: no current
        yield self.expect(MAX_CURRENT, AMPS.encode(16.0), peer=peer)
        self.assertEqual(self.link.history, [True, False, True])
        # and the bridge works on the new link
        call = yield self.call_for(cp, CHARGING, 0, "RemoteStopTransaction", peer=peer)
        self.assertEqual(call, {"transactionId": tx})


class OptionalTests(TestCase):
    """
    KNX is optional.
    """

    @defer.inlineCallbacks
    def test_no_knxd_no_bridge(self):
        service = yield start_service(self, write_config(self, CONFIG, knxd=""))
        self.assertIsNone(service.knx_link)
        self.assertIsNone(service.knx_bridge)

    @defer.inlineCallbacks
    def test_knxd_down_ocpp_unaffected(self):
        """
        With knxd not running the service starts, chargers are served, and
        the bridge reaches knxd once it comes up.
        """
        knxd = yield start_knxd(self)
        yield knxd.stop()
        service = yield start_service(self, write_config(self, CONFIG, knxd=knxd.endpoint))
        cp = yield connect_charger(service.url, "CP1")
        self.addCleanup(cp.close)
        self.assertEqual((yield cp.boot())["status"], "Accepted")
        yield cp.status(1, "Available")
        self.assertFalse(service.knx_link.connected)
        yield knxd.start()
        peer = yield connect_peer(self, knxd)
        yield LinkWatcher(service.knx_link).wait(True)
        telegram = yield peer.wait_for(STATUS)
        self.assertEqual(telegram.payload, b"\x00")

    @defer.inlineCallbacks
    def test_reload_relinks(self):
        """
        A reload with a new address for an object publishes it there.
        """
        knxd = yield start_knxd(self)
        peer = yield connect_peer(self, knxd)
        path = write_config(self, CONFIG, knxd=knxd.endpoint)
        service = yield start_service(self, path)
        yield LinkWatcher(service.knx_link).wait(True)
        cp = yield connect_charger(service.url, "CP1")
        self.addCleanup(cp.close)
        yield peer.wait_for(CHARGING)
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace('charging = "1/0/2"', 'charging = "5/0/2"'))
        self.assertTrue(service.reload())
        telegram = yield peer.wait_for("5/0/2")
        self.assertEqual(telegram.payload, 0)
