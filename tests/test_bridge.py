"""
Unit tests for L{xxterocpp.knx.bridge}: the bridge logic against fakes (a
link that records telegrams, a central system that emits the events a test
asks for, a controller that records commands), on a L{task.Clock}.

The same behaviour on a real knxd with the whole service is in
L{tests.test_knx_integration}.
"""

import struct
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import attr
from twisted.internet import task
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from tests.fakes import FakeCentral, FakeController, FakeLink, FakeSmart
from xxterocpp.config import parse_config
from xxterocpp.knx import objects
from xxterocpp.knx.address import GroupAddress
from xxterocpp.knx.behaviour import OBJECTS, BridgedObject, has_group_objects
from xxterocpp.knx.bridge import KnxBridge
from xxterocpp.knx.dpt import DPTS
from xxterocpp.knx.knxd import READ, RESPONSE, WRITE
from xxterocpp.knx.objects import ERROR_CODES, STATUSES
from xxterocpp.ocpp import messages
from xxterocpp.domain.events import (
    ChargerBooted,
    ChargerConnected,
    ChargerDisconnected,
    CommandRefused,
    LimitChanged,
    MeterChanged,
    StateLoaded,
    StatusChanged,
    TransactionStarted,
    TransactionStopped,
)
from xxterocpp.domain.model import Transaction

GA = GroupAddress.parse

#: CP1 with every object (14.019 / 10.001), TWIN/2 with 9.021 / 19.001 and a
#: status address shared with CP1.
CONFIG = """
[knx]
knxd = "unix:/nonexistent"

[[charger]]
id = "CP1"
max_current = 32
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
id = "TWIN"
connector = 2
max_current = 16
time_dpt = "19.001"
current_dpt = "9.021"

[charger.knx]
status = "1/0/0"
start_time = "2/0/7"
current = "2/0/9"
max_current = "2/0/10"
"""

#: 2024-07-28 20:59:17 UTC, a Sunday: 22:59:17 summer time in Berlin.
SUNDAY_EVENING = datetime(2024, 7, 28, 20, 59, 17, tzinfo=timezone.utc)
BERLIN = ZoneInfo("Europe/Berlin")


def bridge_log(events):
    """
    @return: C{(level, text)} of the bridge's log events among C{events}.
    """
    return [(event["log_level"], formatEvent(event)) for event in events
            if event.get("log_namespace") == "xxterocpp.knx.bridge"]


def transaction(tx_id=7, charger_id="CP1", connector=1, meter_start=1000, start=SUNDAY_EVENING,
                status="Accepted"):
    return Transaction(id=tx_id, charger_id=charger_id, connector=connector, id_tag="TAG",
                       start_time=start, meter_start=meter_start, start_status=status)


class BridgeTestCase(SynchronousTestCase):
    """
    A running bridge over fakes, with the link up and the initial
    publication taken.

    @cvar config_text: the configuration file.
    @cvar charging_points: the C{(charger id, connector)} the central system knows.
    @cvar unseen: the ids of the chargers that never connected.
    """

    config_text = CONFIG
    charging_points = (("CP1", 1), ("TWIN", 1), ("TWIN", 2))
    unseen = ()

    def setUp(self):
        self.config = parse_config(self.config_text)
        self.clock = task.Clock()
        self.clock.advance(SUNDAY_EVENING.timestamp())
        self.central = FakeCentral(*self.charging_points)
        for charger_id in self.unseen:
            charger = self.central.chargers[charger_id]
            charger.connected = charger.ever_connected = False
        self.controller = FakeController()
        self.link = FakeLink()
        self.events = self.enterContext(capturedLogs())
        self.bridge = KnxBridge(self.config, self.central, self.controller, self.link,
                                self.clock, tz=BERLIN)
        self.central.subscribe(self.bridge.observe)
        self.bridge.startService()
        self.addCleanup(self.bridge.stopService)
        self.initial = self.link.take()

    def status(self, status, error_code="NoError", charger_id="CP1", number=1):
        connector = self.central.connector(charger_id, number)
        connector.status, connector.error_code = status, error_code
        self.central.emit(StatusChanged(charger_id, number))

    def meter(self, amps=None, charger_id="CP1", number=1, phases=1, watts=None, wh=None):
        """
        A meter reading: C{amps} on C{phases} phases, C{watts} of active
        power, the register at C{wh}; L{None}: not in this reading.
        """
        connector = self.central.connector(charger_id, number)
        if amps is not None:
            connector.currents = {f"L{n}": amps for n in range(1, phases + 1)}
        if watts is not None:
            connector.power_w = watts
        if wh is not None:
            connector.energy_register_wh = wh
            tx = connector.transaction
            if tx is not None:
                tx.energy_register_wh = wh
        self.central.emit(MeterChanged(charger_id, number))

    def start(self, tx):
        self.central.connector(tx.charger_id, tx.connector).transaction = tx
        self.central.emit(TransactionStarted(tx.charger_id, tx.connector, tx))

    def stop(self, tx, meter_stop):
        tx.meter_stop, tx.stop_time = meter_stop, SUNDAY_EVENING
        self.central.connector(tx.charger_id, tx.connector).transaction = None
        self.central.emit(TransactionStopped(tx.charger_id, tx.connector, tx))

    def warnings(self):
        return [text for level, text in bridge_log(self.events) if level == LogLevel.warn]


class TableTests(SynchronousTestCase):
    """
    L{OBJECTS} is the declaration of L{xxterocpp.knx.objects} with a
    behaviour for each object.
    """

    def test_every_declared_object_is_bridged(self):
        """
        One row per declared object, in declaration order, each with the
        declaration itself.
        """
        self.assertEqual(tuple(o.key for o in OBJECTS), objects.KEYS)
        self.assertEqual(tuple(o.declared for o in OBJECTS), objects.OBJECTS)
        self.assertEqual(len(OBJECTS), 18)

    def test_behaviour_follows_the_direction(self):
        """
        Send objects derive a value, receive objects carry out writes; a
        behaviour that does not fit the declared direction is refused.
        """
        for obj in OBJECTS:
            self.assertEqual(obj.send is not None, obj.declared.sends, obj.key)
            self.assertEqual(obj.receive is not None, obj.declared.receives, obj.key)
        reset = objects.OBJECTS[objects.KEYS.index("reset")]
        self.assertEqual(reset.direction, objects.RECEIVE)
        e = self.assertRaises(ValueError, BridgedObject, reset, send=lambda state: 1)
        self.assertIn("'reset'", str(e))

    def test_send_objects(self):
        sends = {o.key for o in OBJECTS if o.send is not None}
        self.assertEqual(sends, {"status", "error_code", "charging", "availability", "energy",
                                 "start_time", "end_time", "current", "max_current", "online",
                                 "plugged", "power", "meter", "session_energy", "fast"})

    def test_what_a_command_concerns(self):
        """
        A command of a receive object concerns the object itself when it
        sends; C{fast} concerns C{max_current} too.
        """
        concerns = {o.key: o.concerns for o in OBJECTS if o.receive is not None}
        self.assertEqual(concerns, {
            "charging": ("charging",), "reserve": (), "availability": ("availability",),
            "unlock": (), "max_current": ("max_current",), "reset": (),
            "fast": ("fast", "max_current")})

    def test_declared_dpts_have_codecs(self):
        for obj in objects.OBJECTS:
            for dpt in obj.dpts:
                self.assertIn(dpt, DPTS, obj.key)

    def test_enumerations_cover_ocpp(self):
        """
        The bus numbering has every OCPP value, in the order of OCPP's text
        (not its schema's).
        """
        self.assertEqual(sorted(STATUSES), sorted(messages.CHARGE_POINT_STATUS))
        self.assertEqual(sorted(ERROR_CODES), sorted(messages.CHARGE_POINT_ERROR_CODE))
        self.assertEqual(STATUSES.index("SuspendedEV"), 3)
        self.assertEqual(ERROR_CODES.index("OverVoltage"), 9)

    def test_dpts(self):
        charger = parse_config(CONFIG).chargers[1]
        dpts = {o.key: o.dpt_for(charger).id for o in OBJECTS}
        self.assertEqual(dpts, {
            "status": "5.010", "error_code": "5.010", "charging": "1.010", "reserve": "1.010",
            "availability": "1.003", "unlock": "1.003", "energy": "13.010",
            "start_time": "19.001", "end_time": "19.001", "current": "9.021",
            "max_current": "9.021", "reset": "1.015", "online": "1.002", "plugged": "1.002",
            "power": "14.056", "meter": "13.010", "session_energy": "13.010", "fast": "1.001",
        })

    def test_has_group_objects(self):
        self.assertTrue(has_group_objects(parse_config(CONFIG)))
        self.assertFalse(has_group_objects(parse_config('[[charger]]\nid = "A"\nmax_current = 16')))
        self.assertTrue(has_group_objects(parse_config('[smart]\nsurplus_ga = "5/0/2"')))


#: One charging point linking every declared object, at 4/0/<its index>.
EVERY_OBJECT = '[[charger]]\nid = "ALL"\nmax_current = 32\n\n[charger.knx]\n' + "".join(
    f'{key} = "4/0/{index}"\n' for index, key in enumerate(objects.KEYS))


class EveryObjectTests(BridgeTestCase):
    """
    Every object declared in L{xxterocpp.knx.objects} is a C{[charger.knx]}
    key and, linked, is driven by the bridge: a send object answers a read
    with its value, a write to a receive object is a command.
    """

    config_text = EVERY_OBJECT
    charging_points = (("ALL", 1),)

    def address(self, obj):
        return GA(f"4/0/{objects.KEYS.index(obj.key)}")

    def test_every_object_is_a_configuration_key(self):
        [point] = self.config.chargers
        for obj in OBJECTS:
            self.assertEqual(getattr(point.knx, obj.key), self.address(obj))
        self.assertEqual([obj.key for obj, address in self.bridge.points[("ALL", 1)].objects],
                         list(objects.KEYS))

    def test_every_send_object_answers_a_read(self):
        self.controller.limits[("ALL", 1)] = 16.0
        self.controller.modes[("ALL", 1)] = "normal"
        self.status("Charging", charger_id="ALL")
        tx = transaction(charger_id="ALL", meter_start=0)
        self.start(tx)
        self.stop(tx, 2500)
        self.link.take()
        for obj in OBJECTS:
            self.link.receive(str(self.address(obj)), READ)
        answered = [dst for kind, dst, value in self.link.take() if kind == RESPONSE]
        self.assertEqual(answered, [str(self.address(o)) for o in OBJECTS if o.declared.sends])

    def test_every_receive_object_is_a_command(self):
        [point] = self.config.chargers
        for obj in OBJECTS:
            if obj.declared.receives:
                dpt = obj.dpt_for(point)
                value = 1 if dpt.small else dpt.encode(16)
                self.link.receive(str(self.address(obj)), WRITE, value)
        commands = [name for name, args, kwargs in self.controller.calls]
        self.assertEqual(commands, ["start", "reserve", "set_availability", "unlock",
                                    "set_limit", "reset", "fast"])
        self.assertEqual(len(commands), len(objects.RECEIVES))
        self.assertEqual(self.warnings(), [])


class SendTests(BridgeTestCase):
    """
    Send objects follow the domain: written on change.
    """

    def test_initial_publication(self):
        """
        With the link up at start, every send object with a known value is
        written: nothing has been reported yet, so only "not charging".
        """
        self.assertEqual(self.initial, [
            (WRITE, "1/0/2", 0), (WRITE, "1/0/9", b"\x00\x00\x00\x00"),
            (WRITE, "2/0/9", b"\x00\x00"),
        ])

    def test_status_numbering(self):
        """
        Status and error code are the bus numbers; availability is 0 for
        Unavailable and Faulted.
        """
        self.status("SuspendedEV")
        self.assertEqual(self.link.take(), [
            (WRITE, "1/0/0", b"\x03"), (WRITE, "1/0/1", b"\x00"), (WRITE, "1/0/4", 1)])
        self.status("Faulted", "OverVoltage")
        self.assertEqual(self.link.take(), [
            (WRITE, "1/0/0", b"\x08"), (WRITE, "1/0/1", b"\x09"), (WRITE, "1/0/4", 0)])
        self.status("Unavailable", "OverVoltage")
        self.assertEqual(self.link.take(), [(WRITE, "1/0/0", b"\x07")])
        self.status("SuspendedEVSE", "WeakSignal")
        self.assertEqual(self.link.take(), [
            (WRITE, "1/0/0", b"\x04"), (WRITE, "1/0/1", b"\x0f"), (WRITE, "1/0/4", 1)])

    def test_unchanged_values_are_not_sent_again(self):
        self.status("Available")
        self.link.take()
        self.status("Available")
        self.meter(0.0)
        self.central.emit(ChargerBooted("CP1"))
        self.assertEqual(self.link.take(), [])

    def test_session(self):
        """
        A session: charging 1 and the start time (local, DPT 10.001 with the
        weekday) at its start; charging 0, the energy and the end time at its
        stop.
        """
        tx = transaction(meter_start=1000)
        self.start(tx)
        self.assertEqual(self.link.take(), [
            (WRITE, "1/0/2", 1), (WRITE, "1/0/7", bytes.fromhex("F6 3B 11"))])
        self.clock.advance(3600)
        self.stop(tx, meter_stop=13345)
        self.assertEqual(self.link.take(), [
            (WRITE, "1/0/2", 0),
            (WRITE, "1/0/6", bytes.fromhex("00 00 30 39")),
            (WRITE, "1/0/8", bytes.fromhex("F7 3B 11")),  # 23:59:17
        ])

    def test_start_time_dpt_19(self):
        """
        A charger with C{time_dpt = "19.001"} gets date and time, with the
        summer-time flag.
        """
        self.start(transaction(charger_id="TWIN", connector=2))
        self.assertIn((WRITE, "2/0/7", bytes.fromhex("7C 07 1C F6 3B 11 21 00")),
                      self.link.take())

    def test_times_are_the_controllers_clock(self):
        """
        The time sent is when the controller learned of the start, not the
        charger's (possibly wrong) timestamp.
        """
        self.start(transaction(start=datetime(1970, 1, 1, tzinfo=timezone.utc)))
        self.assertIn((WRITE, "1/0/7", bytes.fromhex("F6 3B 11")), self.link.take())

    def test_equal_energy_is_sent_for_each_session(self):
        for tx_id in (1, 2):
            tx = transaction(tx_id, meter_start=0)
            self.start(tx)
            self.stop(tx, meter_stop=0)
            self.assertIn((WRITE, "1/0/6", bytes(4)), self.link.take())

    def test_current_hysteresis(self):
        """
        The charging current is sent when it moved by more than 0.2 A from
        the value last sent, and 0 when not charging.
        """
        self.start(transaction())
        self.link.take()
        sent = []
        for amps in (16.0, 16.2, 15.85, 15.7, 15.9, 0.3, 0.1, 0.0):
            self.meter(amps)
            sent += [value for kind, dst, value in self.link.take() if dst == "1/0/9"]
        # 16.2 and 15.85 are within 0.2 A of 16.0, 15.9 of 15.7, 0.1 of 0.3;
        # but 0 means "no current" and is always sent
        self.assertEqual(sent, [b"\x41\x80\x00\x00", b"\x41\x7b\x33\x33",
                                b"\x3e\x99\x99\x9a", b"\x00\x00\x00\x00"])

    def test_current_is_zero_when_not_charging(self):
        tx = transaction()
        self.start(tx)
        self.meter(16.0)
        self.link.take()
        self.stop(tx, 2000)
        self.assertIn((WRITE, "1/0/9", bytes(4)), self.link.take())
        self.meter(16.0)  # a late sample after the stop
        self.assertEqual(self.link.take(), [])

    def test_current_in_milliamps(self):
        """
        DPT 9.021 carries mA: 16 A is 16000 mA, C{56 1A} (xknx's encoding).
        """
        self.start(transaction(charger_id="TWIN", connector=2))
        self.meter(16.0, "TWIN", 2)
        self.assertIn((WRITE, "2/0/9", b"\x56\x1a"), self.link.take())

    def test_max_current(self):
        """
        The limit in force is sent when the control model reports a change.
        """
        self.controller.limits[("CP1", 1)] = 16.0
        self.central.emit(LimitChanged("CP1", 1, 16.0))
        self.controller.limits[("TWIN", 2)] = 10.0
        self.central.emit(LimitChanged("TWIN", 2, 10.0))
        self.assertEqual(self.link.take(), [
            (WRITE, "1/0/10", b"\x41\x80\x00\x00"), (WRITE, "2/0/10", b"\x4f\xa1")])
        self.central.emit(LimitChanged("CP1", 1, 16.0))
        self.assertEqual(self.link.take(), [])

    def test_out_of_range_is_clamped_with_a_log_line(self):
        """
        An energy beyond DPT 13.010's range is sent as its maximum, never
        wrapped.
        """
        tx = transaction(meter_start=0)
        self.start(tx)
        self.stop(tx, meter_stop=2 ** 31 + 5)
        self.assertIn((WRITE, "1/0/6", b"\x7f\xff\xff\xff"), self.link.take())
        [warning] = self.warnings()
        self.assertIn("energy of CP1/1 (1/0/6)", warning)
        self.assertIn("sending the nearest value", warning)

    def test_link_down_then_up_republishes(self):
        """
        While knxd is away nothing is sent, the state still moves; once the
        link is back every send object is published.
        """
        self.link.up(False)
        self.status("Charging")
        self.start(transaction())
        self.meter(10.0)
        self.assertEqual(self.link.take(), [])
        self.link.up()
        sent = self.link.take()
        self.assertEqual([dst for kind, dst, value in sent], [
            "1/0/0", "1/0/1", "1/0/2", "1/0/4", "1/0/7", "1/0/9", "2/0/9"])
        self.assertIn((WRITE, "1/0/9", b"\x41\x20\x00\x00"), sent)

    def test_not_started_not_sent(self):
        bridge = KnxBridge(self.config, self.central, self.controller, FakeLink(), self.clock)
        self.central.subscribe(bridge.observe)
        self.status("Charging")
        self.assertEqual(bridge.link.sent, [])

    def test_broken_derivation_is_logged(self):
        """
        A failing source (the control model) keeps its object off the bus,
        not the others.
        """
        def broken(charger_id, connector):
            raise RuntimeError("boom")

        self.controller.limit = broken
        self.status("Available")
        self.assertEqual([dst for kind, dst, value in self.link.take()],
                         ["1/0/0", "1/0/1", "1/0/4"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class ReadTests(BridgeTestCase):
    """
    Send objects answer GroupValueRead with their current value.
    """

    def test_read_is_answered(self):
        self.status("Preparing")
        self.link.take()
        self.link.receive("1/0/0", READ)
        self.link.receive("1/0/4", READ)
        self.assertEqual(self.link.take(), [("response", "1/0/0", b"\x01"),
                                            ("response", "1/0/4", 1)])

    def test_read_gets_the_value_now(self):
        """
        Within the hysteresis the bus was not told, but a reader is.
        """
        self.start(transaction())
        self.meter(16.0)
        self.meter(16.1)
        self.link.take()
        self.link.receive("1/0/9", READ)
        self.assertEqual(self.link.take(), [("response", "1/0/9", b"\x41\x80\xcc\xcd")])

    def test_unknown_value_is_not_answered(self):
        self.link.receive("1/0/6", READ)
        self.link.receive("1/0/11", READ)  # receive-only
        self.link.receive("7/7/7", READ)  # not ours
        self.assertEqual(self.link.take(), [])

    def test_shared_address_answers_the_last_writer(self):
        """
        1/0/0 is the status of CP1 and of TWIN/2: a read gets the value
        written last.
        """
        self.status("Charging")
        self.status("Faulted", charger_id="TWIN", number=2)
        self.link.take()
        self.link.receive("1/0/0", READ)
        self.assertEqual(self.link.take(), [("response", "1/0/0", b"\x08")])
        self.status("Finishing")
        self.link.take()
        self.link.receive("1/0/0", READ)
        self.assertEqual(self.link.take(), [("response", "1/0/0", b"\x05")])

    def test_responses_are_not_writes(self):
        """
        Another device's response or write to a send object does nothing.
        """
        self.link.receive("1/0/0", "response", b"\x02")
        self.link.receive("1/0/0", WRITE, b"\x02")
        self.assertEqual((self.link.take(), self.controller.calls), ([], []))


class ReceiveTests(BridgeTestCase):
    """
    A GroupValueWrite of a receive object becomes a command.
    """

    def test_commands(self):
        writes = [
            ("1/0/2", 1, ("start", ("CP1", 1), {"id_tag": "KNXTAG"})),
            ("1/0/2", 0, ("stop", ("CP1", 1), {})),
            ("1/0/3", 1, ("reserve", ("CP1", 1), {})),
            ("1/0/3", 0, ("free", ("CP1", 1), {})),
            ("1/0/4", 0, ("set_availability", ("CP1", 1, False), {})),
            ("1/0/4", 1, ("set_availability", ("CP1", 1, True), {})),
            ("1/0/5", 1, ("unlock", ("CP1", 1), {})),
            ("1/0/10", b"\x41\x50\x00\x00", ("set_limit", ("CP1", 1, 13.0), {})),
            ("1/0/11", 1, ("reset", ("CP1",), {"hard": False})),
        ]
        for dst, payload, call in writes:
            self.link.receive(dst, WRITE, payload)
            self.assertEqual(self.controller.calls.pop(), call)
        self.assertEqual(self.controller.calls, [])

    def test_long_form_boolean(self):
        """
        C{knxtool groupwrite} sends a 1-bit value as a byte of its own.
        """
        self.link.receive("1/0/2", WRITE, b"\x01")
        self.assertEqual(self.controller.calls[0][0], "start")

    def test_milliamps(self):
        self.link.receive("2/0/10", WRITE, b"\x4f\xa1")
        [(name, args, kwargs)] = self.controller.calls
        self.assertEqual(name, "set_limit")
        self.assertAlmostEqual(args[2], 9.99936)

    def test_zero_means_nothing_for_unlock_and_reset(self):
        self.link.receive("1/0/5", WRITE, 0)
        self.link.receive("1/0/11", WRITE, 0)
        self.assertEqual((self.controller.calls, bridge_log(self.events)), ([], []))

    def test_nonsense_is_logged_and_ignored(self):
        for dst, payload in [("1/0/2", 2), ("1/0/2", b"\x01\x00"), ("1/0/10", b"\x41"),
                             ("1/0/10", b"\xc1\x80\x00\x00"), ("1/0/10", b"\x7f\xc0\x00\x00")]:
            self.link.receive(dst, WRITE, payload)
        self.assertEqual(self.controller.calls, [])
        warnings = self.warnings()
        self.assertEqual(len(warnings), 5)
        self.assertIn("KNX write 2 from 0.0.9 to 1/0/2 (charging of CP1/1) ignored: "
                      "DPT 1.010 needs a boolean", warnings[0])
        self.assertIn("-16 A makes no sense", warnings[3])

    def test_refusal_is_logged(self):
        self.link.receive("1/0/2", WRITE, 1)
        self.controller.answer(False, "NotConnected", "the charger is offline")
        [warning] = self.warnings()
        self.assertIn("(charging of CP1/1) not carried out: NotConnected "
                      "(the charger is offline)", warning)

    def test_failure_is_logged(self):
        self.link.receive("1/0/2", WRITE, 1)
        self.controller.pending.pop().errback(RuntimeError("bug"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_synchronous_failure_is_logged(self):
        def unknown(*args, **kwargs):
            raise LookupError("no such point")

        self.controller.reset = unknown
        self.link.receive("1/0/11", WRITE, 1)
        self.assertEqual(len(self.flushLoggedErrors(LookupError)), 1)

    def test_max_current_echoes_the_limit_in_force(self):
        """
        Once the command answered, max_current shows the limit in force,
        also when it did not change (the writer's value was clamped or
        refused).
        """
        self.controller.limits[("CP1", 1)] = 32.0
        self.central.emit(LimitChanged("CP1", 1, 32.0))
        self.link.take()
        self.link.receive("1/0/10", WRITE, b"\x42\xc8\x00\x00")  # 100 A
        self.controller.answer()
        self.assertEqual(self.link.take(), [(WRITE, "1/0/10", b"\x42\x00\x00\x00")])

    def test_not_running_ignores_the_bus(self):
        self.bridge.stopService()
        self.link.receive("1/0/2", WRITE, 1)
        self.assertEqual(self.controller.calls, [])


class ReconfigureTests(BridgeTestCase):
    """
    A reloaded configuration re-links the objects.
    """

    def test_changed_address_is_published_and_old_one_forgotten(self):
        self.status("Charging")
        self.link.take()
        config = parse_config(CONFIG.replace('status = "1/0/0"\nerror_code',
                                             'status = "3/0/0"\nerror_code'))
        self.bridge.reconfigure(config)
        sent = self.link.take()
        self.assertIn((WRITE, "3/0/0", b"\x02"), sent)
        self.assertNotIn("2/0/9", [dst for kind, dst, value in sent])  # TWIN unchanged
        self.link.receive("1/0/0", READ)  # now only TWIN/2's, still unknown
        self.assertEqual(self.link.take(), [])

    def test_removed_point_is_not_bridged(self):
        config = parse_config(CONFIG.split("[[charger]]\nid = \"TWIN\"")[0])
        self.bridge.reconfigure(config)
        self.link.receive("2/0/10", WRITE, b"\x4f\xa1")
        self.status("Faulted", charger_id="TWIN", number=2)
        self.assertEqual((self.controller.calls, self.link.take()), ([], []))

    def test_session_is_remembered(self):
        tx = transaction(meter_start=0)
        self.start(tx)
        self.stop(tx, 500)
        self.bridge.reconfigure(parse_config(CONFIG.replace('energy = "1/0/6"',
                                                            'energy = "1/0/16"')))
        self.assertIn((WRITE, "1/0/16", b"\x00\x00\x01\xf4"), self.link.take())


class RestartTests(SynchronousTestCase):
    """
    Starting with what the state store kept: a transaction already running,
    the last session.
    """

    def setUp(self):
        self.central = FakeCentral(("CP1", 1), ("TWIN", 2))
        self.link = FakeLink()

    def bridge(self, start=True):
        bridge = KnxBridge(parse_config(CONFIG), self.central, FakeController(), self.link,
                           task.Clock(), tz=BERLIN)
        self.central.subscribe(bridge.observe)
        if start:
            bridge.startService()
            self.addCleanup(bridge.stopService)
        return bridge

    def last_session(self):
        """
        CP1's last session, 12345 Wh from Sunday 22:59:17 to 23:59:17.
        """
        tx = transaction(meter_start=1000)
        tx.meter_stop, tx.stop_time = 13345, SUNDAY_EVENING + timedelta(hours=1)
        self.central.last_sessions[("CP1", 1)] = tx
        return tx

    def test_running_transaction_start_time(self):
        self.central.connector("CP1").transaction = transaction()
        self.bridge()
        self.assertIn((WRITE, "1/0/2", 1), self.link.sent)
        self.assertIn((WRITE, "1/0/7", bytes.fromhex("F6 3B 11")), self.link.sent)

    def test_last_session_answers_reads(self):
        """
        The last session's energy and its own start and end times.
        """
        self.last_session()
        self.bridge()
        self.link.take()
        for dst in ("1/0/6", "1/0/7", "1/0/8"):
            self.link.receive(dst, READ)
        self.assertEqual(self.link.take(), [
            ("response", "1/0/6", bytes.fromhex("00 00 30 39")),
            ("response", "1/0/7", bytes.fromhex("F6 3B 11")),
            ("response", "1/0/8", bytes.fromhex("F7 3B 11")),
        ])

    def test_state_loaded_later(self):
        """
        The bridge is built before the state store is read: it takes the
        sessions when the domain says the state is loaded.
        """
        bridge = self.bridge(start=False)
        self.last_session()
        self.central.connector("CP1").transaction = transaction(
            8, start=SUNDAY_EVENING + timedelta(hours=2))
        self.central.emit(StateLoaded())
        bridge.startService()
        self.addCleanup(bridge.stopService)
        sent = self.link.take()
        self.assertIn((WRITE, "1/0/6", bytes.fromhex("00 00 30 39")), sent)
        # the running session's start: Monday 00:59:17
        self.assertIn((WRITE, "1/0/7", bytes.fromhex("20 3B 11")), sent)
        self.assertIn((WRITE, "1/0/8", bytes.fromhex("F7 3B 11")), sent)

    def test_running_refused_transaction(self):
        """
        A refused session still open at the restart is no session: the
        start time is the last accepted one's.
        """
        self.last_session()
        self.central.connector("CP1").transaction = transaction(
            8, start=SUNDAY_EVENING + timedelta(hours=2), status="Blocked")
        self.bridge()
        self.assertIn((WRITE, "1/0/2", 0), self.link.sent)
        self.assertIn((WRITE, "1/0/7", bytes.fromhex("F6 3B 11")), self.link.sent)


def float32(value):
    return struct.pack(">f", value)


def int32(value):
    return struct.pack(">i", value)


#: CONFIG with the six objects of "every group object tells the truth" for
#: CP1 at 1/1/0..5, and the power of TWIN/2 (one phase) at 2/1/2.
NEW_CONFIG = CONFIG.replace('reset = "1/0/11"\n', '''reset = "1/0/11"
online = "1/1/0"
plugged = "1/1/1"
power = "1/1/2"
meter = "1/1/3"
session_energy = "1/1/4"
fast = "1/1/5"
''').replace('current_dpt = "9.021"\n', 'current_dpt = "9.021"\nphases = 1\n').replace(
    'max_current = "2/0/10"\n', 'max_current = "2/0/10"\npower = "2/1/2"\n')

ONLINE, PLUGGED, POWER, METER, SESSION_ENERGY, FAST = (f"1/1/{n}" for n in range(6))


def sent_to(sent, dst):
    """
    @return: the values written to C{dst} among C{sent}.
    """
    return [value for kind, d, value in sent if d == dst and kind == WRITE]


@attr.s(frozen=True)
class SomethingChanged:
    """
    An event the bridge does not know (like the controller's ModeChanged).
    """

    charger_id = attr.ib()
    connector = attr.ib()


class NewObjectTests(BridgeTestCase):
    """
    C{online}, C{plugged}, C{power}, C{meter}, C{session_energy} and
    C{fast}: sent on (significant) change, answering reads.
    """

    config_text = NEW_CONFIG

    def collect(self, dst, steps):
        """
        @return: the values written to C{dst} while running each of C{steps}.
        """
        sent = []
        for step in steps:
            step()
            sent += sent_to(self.link.take(), dst)
        return sent

    def test_initial_publication(self):
        """
        Online (the fake charger is connected) and no power; the rest is
        not known yet.
        """
        self.assertEqual(self.initial, [
            (WRITE, "1/0/2", 0), (WRITE, "1/0/9", bytes(4)), (WRITE, ONLINE, 1),
            (WRITE, POWER, bytes(4)), (WRITE, "2/0/9", b"\x00\x00"), (WRITE, "2/1/2", bytes(4)),
        ])

    def test_online(self):
        """
        0 as soon as the connection is lost, 1 when it is back; nothing
        else of the charger changes.
        """
        charger = self.central.chargers["CP1"]
        charger.connected = False
        self.central.emit(ChargerDisconnected("CP1"))
        self.assertEqual(self.link.take(), [(WRITE, ONLINE, 0)])
        self.link.receive(ONLINE, READ)
        self.assertEqual(self.link.take(), [("response", ONLINE, 0)])
        charger.connected = True
        self.central.emit(ChargerConnected("CP1"))
        self.assertEqual(self.link.take(), [(WRITE, ONLINE, 1)])

    def test_plugged(self):
        """
        1 in Preparing, Charging, SuspendedEV, SuspendedEVSE and Finishing,
        sent on change.
        """
        statuses = ("Preparing", "Charging", "SuspendedEV", "SuspendedEVSE", "Finishing",
                    "Available", "Reserved", "Preparing", "Faulted", "Unavailable")
        sent = self.collect(PLUGGED, [lambda status=status: self.status(status)
                                      for status in statuses])
        self.assertEqual(sent, [1, 0, 1, 0])
        self.link.receive(PLUGGED, READ)
        self.assertEqual(self.link.take(), [("response", PLUGGED, 0)])

    def test_plugged_is_what_the_connector_reports(self):
        """
        A charger offline or faulted as a whole has not unplugged the car.
        """
        self.status("Charging")
        self.link.take()
        self.central.chargers["CP1"].offline = True
        self.central.emit(StatusChanged("CP1", None))
        self.assertEqual(sent_to(self.link.take(), PLUGGED), [])
        self.link.receive(PLUGGED, READ)
        self.assertEqual(self.link.take(), [("response", PLUGGED, 1)])

    def test_power(self):
        """
        Power.Active.Import when reported, else the current x 230 V x the
        point's phases; sent when it moved by more than 100 W.
        """
        self.start(transaction())
        self.link.take()
        sent = self.collect(POWER, [
            lambda: self.meter(16.0, phases=3),  # 16 A x 230 V x 3
            lambda: self.meter(16.1, phases=3),  # 11109 W: within 100 W
            lambda: self.meter(watts=7000.0),
            lambda: self.meter(watts=7100.0),
            lambda: self.meter(watts=7150.0),
        ])
        self.assertEqual(sent, [float32(11040), float32(7000), float32(7150)])
        self.link.receive(POWER, READ)
        self.assertEqual(self.link.take(), [("response", POWER, float32(7150))])

    def test_power_of_one_phase(self):
        self.start(transaction(charger_id="TWIN", connector=2))
        self.meter(16.0, "TWIN", 2)
        self.assertEqual(sent_to(self.link.take(), "2/1/2"), [float32(3680)])

    def test_power_is_zero_when_not_charging(self):
        """
        0 once the session is over, whatever a late reading says; a refused
        session draws nothing either.
        """
        tx = transaction()
        self.start(tx)
        self.meter(watts=7000.0)
        self.link.take()
        self.stop(tx, 2000)
        self.assertEqual(sent_to(self.link.take(), POWER), [bytes(4)])
        self.meter(watts=7000.0)
        self.start(transaction(8, status="Blocked"))
        self.meter(watts=7000.0)
        self.assertEqual(sent_to(self.link.take(), POWER), [])

    def test_meter(self):
        """
        The energy register, when it moved by at least 100 Wh.
        """
        sent = self.collect(METER, [lambda wh=wh: self.meter(wh=wh)
                                    for wh in (10000, 10099, 10100, 10150, 10250)])
        self.assertEqual(sent, [int32(10000), int32(10100), int32(10250)])
        self.link.receive(METER, READ)
        self.assertEqual(self.link.take(), [("response", METER, int32(10250))])

    def test_session_energy(self):
        """
        0 at the start, then when it moved by at least 100 Wh; the session's
        energy stays on the bus between sessions.
        """
        tx = transaction(meter_start=10000)
        sent = self.collect(SESSION_ENERGY, [lambda: self.start(tx)] + [
            lambda wh=wh: self.meter(wh=wh) for wh in (10050, 10100, 10150, 10250)])
        self.assertEqual(sent, [int32(0), int32(100), int32(250)])
        self.stop(tx, 10290)
        self.assertEqual(sent_to(self.link.take(), SESSION_ENERGY), [])
        self.link.receive(SESSION_ENERGY, READ)
        self.assertEqual(self.link.take(), [("response", SESSION_ENERGY, int32(290))])

    def test_session_energy_is_zero_at_every_start(self):
        for tx_id in (1, 2):
            tx = transaction(tx_id, meter_start=0)
            self.start(tx)
            self.assertEqual(sent_to(self.link.take(), SESSION_ENERGY), [int32(0)])
            self.stop(tx, 0)

    def test_fast(self):
        """
        The mode in force: 1 fast, 0 normal; sent when the limit or the mode
        changes (any event of the point refreshes it).
        """
        self.controller.modes[("CP1", 1)] = "normal"
        self.central.emit(LimitChanged("CP1", 1, None))
        self.assertEqual(self.link.take(), [(WRITE, FAST, 0)])
        self.controller.modes[("CP1", 1)] = "fast"
        self.central.emit(SomethingChanged("CP1", 1))
        self.assertEqual(self.link.take(), [(WRITE, FAST, 1)])
        self.link.receive(FAST, READ)
        self.assertEqual(self.link.take(), [("response", FAST, 1)])

    def test_fast_unknown_is_not_sent(self):
        self.central.emit(LimitChanged("CP1", 1, None))
        self.link.receive(FAST, READ)
        self.assertEqual(self.link.take(), [])

    def test_fast_commands(self):
        """
        1 is the page's Fast button, 0 its Normal button.
        """
        self.link.receive(FAST, WRITE, 1)
        self.link.receive(FAST, WRITE, 0)
        self.assertEqual(self.controller.calls, [("fast", ("CP1", 1), {}),
                                                 ("normal", ("CP1", 1), {})])

    def test_fast_nonsense_is_logged_and_ignored(self):
        self.link.receive(FAST, WRITE, 2)
        self.link.receive(FAST, WRITE, b"\x01\x02")
        self.assertEqual((self.controller.calls, self.link.take()), ([], []))
        warnings = self.warnings()
        self.assertEqual(len(warnings), 2)
        self.assertIn("(fast of CP1/1) ignored: DPT 1.001 needs a boolean", warnings[0])


class FeedbackTests(BridgeTestCase):
    """
    A command that is not carried out writes the send objects it concerns
    again with their actual values, also when they did not change.
    """

    config_text = NEW_CONFIG

    def test_refused_start_writes_charging_back(self):
        self.link.receive("1/0/2", WRITE, 1)
        self.assertEqual(self.link.take(), [])
        self.controller.answer(False, "Rejected")
        self.assertEqual(self.link.take(), [(WRITE, "1/0/2", 0)])

    def test_timed_out_stop_writes_charging_back(self):
        self.start(transaction())
        self.link.receive("1/0/2", WRITE, 0)
        self.link.take()
        self.controller.answer(False, "Timeout", "no answer within 30 s")
        self.assertEqual(self.link.take(), [(WRITE, "1/0/2", 1)])

    def test_failed_command_writes_back(self):
        self.link.receive("1/0/2", WRITE, 1)
        self.controller.pending.pop().errback(RuntimeError("bug"))
        self.assertEqual(self.link.take(), [(WRITE, "1/0/2", 0)])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_synchronous_failure_writes_back(self):
        def broken(*args, **kwargs):
            raise LookupError("no such point")

        self.controller.start = broken
        self.link.receive("1/0/2", WRITE, 1)
        self.assertEqual(self.link.take(), [(WRITE, "1/0/2", 0)])
        self.assertEqual(len(self.flushLoggedErrors(LookupError)), 1)

    def test_refused_availability_writes_availability_back(self):
        self.status("Available")
        self.link.take()
        self.link.receive("1/0/4", WRITE, 0)
        self.controller.answer(False, "Rejected")
        self.assertEqual(self.link.take(), [(WRITE, "1/0/4", 1)])

    def test_unknown_value_is_not_written_back(self):
        """
        Before the first status the availability is not known: nothing to
        write.
        """
        self.link.receive("1/0/4", WRITE, 0)
        self.controller.answer(False, "Rejected")
        self.assertEqual(self.link.take(), [])

    def test_refused_limit_writes_the_limit_in_force_once(self):
        """
        A charger without Smart Charging: the unchanged limit, once.
        """
        self.controller.limits[("CP1", 1)] = 16.0
        self.central.emit(LimitChanged("CP1", 1, 16.0))
        self.link.take()
        self.link.receive("1/0/10", WRITE, float32(10.0))
        self.controller.answer(False, "NotSupported")
        self.assertEqual(self.link.take(), [(WRITE, "1/0/10", float32(16.0))])

    def test_refused_fast_writes_fast_and_max_current(self):
        self.controller.modes[("CP1", 1)] = "normal"
        self.controller.limits[("CP1", 1)] = 16.0
        self.central.emit(LimitChanged("CP1", 1, 16.0))
        self.link.take()
        self.link.receive(FAST, WRITE, 1)
        self.controller.answer(False, "Rejected")
        self.assertEqual(self.link.take(), [(WRITE, "1/0/10", float32(16.0)), (WRITE, FAST, 0)])

    def test_accepted_command_writes_nothing_back(self):
        """
        The change it brings is sent when the domain reports it.
        """
        self.link.receive("1/0/2", WRITE, 1)
        self.controller.answer(True)
        self.assertEqual(self.link.take(), [])

    def test_bad_value_writes_nothing_back(self):
        self.link.receive("1/0/2", WRITE, 2)
        self.assertEqual(self.link.take(), [])

    def test_command_refused_writes_the_point(self):
        """
        A refused command of any adapter (the page, the API): every known
        value of the point is written again.
        """
        self.status("Available")
        self.link.take()
        self.central.emit(CommandRefused("CP1", 1, "start"))
        self.assertEqual([dst for kind, dst, value in self.link.take()], [
            "1/0/0", "1/0/1", "1/0/2", "1/0/4", "1/0/9", ONLINE, PLUGGED, POWER])

    def test_command_refused_for_the_charger_writes_its_points(self):
        self.central.emit(CommandRefused("TWIN", None, "reset"))
        self.assertEqual(self.link.take(), [(WRITE, "2/0/9", b"\x00\x00"),
                                            (WRITE, "2/1/2", bytes(4))])

    def test_refusal_is_written_back_once(self):
        """
        The controller reports the refusal of a bus command as well: the
        bus gets it once.
        """
        self.link.receive("1/0/2", WRITE, 1)
        self.central.emit(CommandRefused("CP1", 1, "start"))
        self.link.take()
        self.controller.answer(False, "Rejected")
        self.assertEqual(self.link.take(), [])


class RefusedSessionTests(BridgeTestCase):
    """
    A session whose StartTransaction was not answered Accepted does not
    count: no charging, no times, no energy.
    """

    config_text = NEW_CONFIG

    def test_refused_session_sends_nothing(self):
        self.status("Preparing")
        self.link.take()
        tx = transaction(status="Blocked")
        self.start(tx)
        self.meter(16.0, wh=1500)
        self.stop(tx, 2000)
        # the meter is the meter's, whoever charges
        self.assertEqual(self.link.take(), [(WRITE, METER, int32(1000)), (WRITE, METER, int32(1500))])
        for dst in ("1/0/6", "1/0/7", "1/0/8", SESSION_ENERGY):
            self.link.receive(dst, READ)
        self.link.receive("1/0/2", READ)
        self.assertEqual(self.link.take(), [("response", "1/0/2", 0)])

    def test_refused_session_keeps_the_last_one(self):
        tx = transaction(meter_start=0)
        self.start(tx)
        self.stop(tx, 500)
        self.link.take()
        self.clock.advance(60)
        refused = transaction(8, meter_start=500, status="Invalid")
        self.start(refused)
        self.stop(refused, 500)
        self.assertEqual(self.link.take(), [])
        self.link.receive("1/0/8", READ)
        self.assertEqual(self.link.take(), [("response", "1/0/8", bytes.fromhex("F6 3B 11"))])


class EffectiveStatusTests(BridgeTestCase):
    """
    C{status}, C{error_code} and C{availability} follow the effective
    status: Unavailable while the charger is offline, connector 0's
    Unavailable or Faulted for every connector.
    """

    def test_offline_charger_is_unavailable(self):
        self.status("Charging")
        self.link.take()
        self.central.chargers["CP1"].offline = True
        self.central.emit(StatusChanged("CP1", None))
        self.assertEqual(self.link.take(), [(WRITE, "1/0/0", b"\x07"), (WRITE, "1/0/4", 0)])
        self.central.chargers["CP1"].offline = False
        self.central.emit(StatusChanged("CP1", None))
        self.assertEqual(self.link.take(), [(WRITE, "1/0/0", b"\x02"), (WRITE, "1/0/4", 1)])

    def test_connector_0_applies_to_every_connector(self):
        self.status("Preparing", charger_id="TWIN", number=2)
        self.link.take()
        zero = self.central.chargers["TWIN"].connector(0)
        zero.status, zero.error_code = "Faulted", "GroundFailure"
        self.central.emit(StatusChanged("TWIN", None))
        self.assertEqual(self.link.take(), [(WRITE, "1/0/0", b"\x08")])
        zero.status, zero.error_code = "Available", "NoError"
        self.central.emit(StatusChanged("TWIN", None))
        self.assertEqual(self.link.take(), [(WRITE, "1/0/0", b"\x01")])


class NeverSeenTests(BridgeTestCase):
    """
    A charger that never connected: nothing written, no read answered,
    until it connects; then everything known is published.
    """

    unseen = ("CP1",)

    def test_nothing_is_published_at_start(self):
        self.assertEqual(self.initial, [(WRITE, "2/0/9", b"\x00\x00")])

    def test_nothing_is_written_or_answered(self):
        self.controller.limits[("CP1", 1)] = 16.0
        self.status("Available")
        self.central.emit(LimitChanged("CP1", 1, 16.0))
        self.central.emit(CommandRefused("CP1", 1, "start"))
        self.link.receive("1/0/2", WRITE, 1)
        self.controller.answer(False, "NotConnected")
        self.link.receive("1/0/10", WRITE, float32(10.0))
        self.controller.answer(True)
        for n in range(12):
            self.link.receive(f"1/0/{n}", READ)
        self.assertEqual(self.link.take(), [])

    def test_first_connection_publishes_everything_known(self):
        self.controller.limits[("CP1", 1)] = 16.0
        self.status("Available")
        charger = self.central.chargers["CP1"]
        charger.connected = charger.ever_connected = True
        self.central.emit(ChargerConnected("CP1"))
        self.assertEqual([dst for kind, dst, value in self.link.take()], [
            "1/0/0", "1/0/1", "1/0/2", "1/0/4", "1/0/9", "1/0/10"])

    def test_shared_address_answers_for_the_seen_charger(self):
        """
        1/0/0 is CP1's and TWIN/2's: TWIN/2 answers.
        """
        self.status("Available")
        self.status("Faulted", charger_id="TWIN", number=2)
        self.link.take()
        self.link.receive("1/0/0", READ)
        self.assertEqual(self.link.take(), [("response", "1/0/0", b"\x08")])


SMART_CONFIG = CONFIG.replace("[[charger]]", """\
[smart]
prices_ga = "5/0/1"
surplus_ga = "1/0/9"

[[charger]]""", 1)


class SmartInputTests(SynchronousTestCase):
    """
    C{[smart] prices_ga} and C{surplus_ga}: DPT 14 writes become
    L{SmartManager.set_price} and C{set_surplus}; nonsense is logged and
    ignored.
    """

    def setUp(self):
        self.central = FakeCentral(("CP1", 1), ("TWIN", 2))
        self.link = FakeLink()
        self.smart = FakeSmart()
        self.events = self.enterContext(capturedLogs())
        self.bridge = KnxBridge(parse_config(SMART_CONFIG), self.central, FakeController(),
                                self.link, task.Clock(), tz=BERLIN, smart=self.smart)
        self.central.subscribe(self.bridge.observe)
        self.bridge.startService()
        self.addCleanup(self.bridge.stopService)

    def warnings(self):
        return [text for level, text in bridge_log(self.events)
                if level in (LogLevel.warn, LogLevel.critical)]

    def test_price_and_surplus(self):
        self.link.receive("5/0/1", WRITE, struct.pack(">f", 0.25))
        # A send object's address may carry the surplus too (the charger's
        # current object here): the bridge's own writes are not telegrams
        # it receives, a write from the bus is the surplus.
        self.link.receive("1/0/9", WRITE, struct.pack(">f", -1500.0))
        self.assertEqual(self.smart.calls, [("price", 0.25, None), ("surplus", -1500.0)])
        self.assertEqual(self.warnings(), [])

    def test_reads_and_responses_are_not_values(self):
        self.link.receive("5/0/1", READ)
        self.link.receive("5/0/1", "response", struct.pack(">f", 0.25))
        self.assertEqual(self.smart.calls, [])

    def test_nonsense_is_ignored(self):
        for payload in (b"\x41", b"\x7f\xc0\x00\x00", b"\x7f\x80\x00\x00", 1):
            self.link.receive("5/0/1", WRITE, payload)
        self.assertEqual(self.smart.calls, [])
        warnings = self.warnings()
        self.assertEqual(len(warnings), 4)
        self.assertIn("smart.prices_ga", warnings[0])
        self.assertIn("needs 4 bytes", warnings[0])
        self.assertIn("not a finite number", warnings[1])

    def test_failing_manager_is_logged(self):
        self.smart.failure = RuntimeError("unlucky")
        self.link.receive("1/0/9", WRITE, struct.pack(">f", 13.0))
        self.link.receive("5/0/1", WRITE, struct.pack(">f", 0.3))
        self.assertEqual(self.smart.calls, [("surplus", 13.0), ("price", 0.3, None)])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_reconfigure_moves_the_addresses(self):
        self.bridge.reconfigure(parse_config(SMART_CONFIG.replace('"5/0/1"', '"5/0/3"')))
        self.link.receive("5/0/1", WRITE, struct.pack(">f", 0.25))
        self.link.receive("5/0/3", WRITE, struct.pack(">f", 0.5))
        self.assertEqual(self.smart.calls, [("price", 0.5, None)])

    def test_without_manager(self):
        bridge = KnxBridge(parse_config(SMART_CONFIG), self.central, FakeController(),
                           self.link, task.Clock(), tz=BERLIN)
        self.central.subscribe(bridge.observe)
        bridge.startService()
        self.addCleanup(bridge.stopService)
        self.link.receive("5/0/1", WRITE, struct.pack(">f", 0.25))
        self.assertIn("no Smart Energy Manager", self.warnings()[-1])
