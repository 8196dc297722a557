"""
Unit tests for L{xxterocpp.domain}: the domain without sockets, with a fake
clock and an in-memory store.
"""

from datetime import datetime, timedelta, timezone

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from xxterocpp.config import parse_config
from xxterocpp.ocpp import messages as m
from xxterocpp.domain.central import MAX_UNKNOWN, CentralSystem
from xxterocpp.domain.events import StatusChanged, TransactionStarted, TransactionStopped
from xxterocpp.domain.keys import password_matches
from xxterocpp.domain.meter import read_meter_values
from xxterocpp.domain.model import FrameHistory

CONFIG = """
[ocpp]
max_chargers = 2

[[tag]]
id = "GOOD"

[[tag]]
id = "LATER"
expiry = "2030-01-01T00:00:00Z"

[[charger]]
id = "CP1"
max_current = 16
allowed_tags = ["GOOD", "LATER"]
smart_tag = "SMART"
"""


class MemoryStore:
    """
    The writes of L{xxterocpp.store.Store} in memory, all committed at once.
    """

    def __init__(self):
        self.writes = []

    def __getattr__(self, name):
        if name.startswith(("load_", "query_")):
            return lambda *a, **k: []
        if name == "last_transaction_id":
            return lambda: 41

        def write(*args, **kwargs):
            self.writes.append((name, args))
            return defer.succeed(None)

        return write

    def load_settings(self):
        return {}


def meter(samples, at="2026-01-01T10:00:00Z"):
    """
    Decode one MeterValue element from JSON sampled values.
    """
    value, warnings = m.decode(m.MeterValue, {"timestamp": at, "sampledValue": samples})
    return value


class CentralSystemTests(SynchronousTestCase):
    """
    L{CentralSystem} on its own.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp())
        self.store = MemoryStore()
        self.central = CentralSystem(parse_config(CONFIG), self.store, self.clock)
        self.central.load()
        self.events = []
        self.central.subscribe(self.events.append)
        self.charger = self.central.chargers["CP1"]

    def handle(self, action, payload):
        spec = m.ACTIONS[action]
        request, warnings = m.decode(spec.request, payload)
        return self.successResultOf(defer.maybeDeferred(
            self.central.dispatcher("CP1"), action, request))

    def test_unknown_identities_are_bounded(self):
        """
        A flood of random identities keeps only the most recent ones.
        """
        for i in range(MAX_UNKNOWN + 50):
            self.central.record_unknown(f"ID{i}", "127.0.0.1")
        self.central.record_unknown("ID149", "127.0.0.2")
        self.assertEqual(len(self.central.unknown), MAX_UNKNOWN)
        self.assertNotIn("ID0", self.central.unknown)
        self.assertEqual(self.central.unknown["ID149"].count, 2)
        self.assertEqual(self.central.unknown["ID149"].address, "127.0.0.2")

    def test_boot_data_is_written_only_when_it_changes(self):
        """
        The boot data keeps what the charger sent; a repeated identical
        BootNotification (a reconnect storm) writes nothing, a new firmware
        writes again; every boot is still an event and gets its answer.
        """
        boot = {"chargePointVendor": "V", "chargePointModel": "M", "firmwareVersion": "1.0"}
        for firmware in ("1.0", "1.0", "1.1"):
            response = self.handle("BootNotification", dict(boot, firmwareVersion=firmware))
            self.assertEqual(response.status, "Accepted")
        self.clock.advance(0)
        writes = [args for name, args in self.store.writes if name == "put_setting"]
        self.assertEqual(writes, [
            ("CP1", "boot", {"vendor": "V", "model": "M", "firmware": "1.0"}),
            ("CP1", "boot", {"vendor": "V", "model": "M", "firmware": "1.1"}),
        ])
        self.assertEqual(self.charger.boot, {"vendor": "V", "model": "M", "firmware": "1.1"})
        self.assertEqual(sum(type(e).__name__ == "ChargerBooted" for e in self.events), 3)

    def test_authorize_rules(self):
        """
        Listed tags are accepted until their expiry, unlisted ones are
        Invalid, the remote and smart tags always work.
        """
        for tag, status in [("good", "Accepted"), ("LATER", "Accepted"), ("OTHER", "Invalid"),
                            ("xxter", "Accepted"), ("SMART", "Accepted")]:
            self.assertEqual(self.central.authorize("CP1", 1, tag).status, status, tag)
        self.clock.advance(timedelta(days=5 * 366).total_seconds())
        info = self.central.authorize("CP1", 1, "LATER")
        self.assertEqual(info.status, "Expired")
        self.assertEqual(info.expiry_date, datetime(2030, 1, 1, tzinfo=timezone.utc))

    def test_transaction_ids_continue_after_the_stored_highest(self):
        """
        New transaction ids continue after the highest ever handed out.
        """
        answer = self.handle("StartTransaction", {
            "connectorId": 1, "idTag": "GOOD", "meterStart": 5,
            "timestamp": "2026-01-01T00:00:00Z"})
        self.assertEqual(answer.transaction_id, 42)
        self.assertEqual(self.store.writes[-1][0], "insert_transaction")
        self.assertIsInstance(self.events[-1], TransactionStarted)

    def test_start_without_stop_closes_the_lost_transaction(self):
        """
        A new StartTransaction on a connector whose previous transaction was
        never stopped closes that one at the new meterStart.
        """
        first = self.handle("StartTransaction", {
            "connectorId": 1, "idTag": "GOOD", "meterStart": 100,
            "timestamp": "2026-01-01T00:00:00Z"})
        self.handle("StartTransaction", {
            "connectorId": 1, "idTag": "GOOD", "meterStart": 900,
            "timestamp": "2026-01-01T05:00:00Z"})
        stopped = [e.transaction for e in self.events if isinstance(e, TransactionStopped)]
        self.assertEqual([(t.id, t.energy_wh) for t in stopped], [(first.transaction_id, 800)])

    def test_stop_without_meter_stop_uses_the_last_reading(self):
        """
        Meter-less chargers omit meterStop: the last register reading counts.
        """
        start = self.handle("StartTransaction", {
            "connectorId": 1, "idTag": "GOOD", "meterStart": 100,
            "timestamp": "2026-01-01T00:00:00Z"})
        self.handle("MeterValues", {"connectorId": 1, "transactionId": start.transaction_id,
                                    "meterValue": [{"timestamp": "2026-01-01T01:00:00Z",
                                                    "sampledValue": [{"value": "750"}]}]})
        request, warnings = m.decode(m.StopTransactionRequest, {
            "transactionId": start.transaction_id, "timestamp": "2026-01-01T02:00:00Z"},
            lenient=True)
        self.successResultOf(defer.maybeDeferred(
            self.central.dispatcher("CP1"), "StopTransaction", request))
        stopped = self.events[-1].transaction
        self.assertEqual((stopped.meter_stop, stopped.energy_wh), (750, 650))

    def test_status_change_event_only_on_change(self):
        """
        StatusChanged is emitted when status or error code changes.
        """
        payload = {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}
        self.handle("StatusNotification", payload)
        self.handle("StatusNotification", payload)
        self.assertEqual(sum(isinstance(e, StatusChanged) for e in self.events), 1)


class FrameHistoryTests(SynchronousTestCase):
    """
    The last frames of a charger, bounded in count and in bytes.
    """

    def test_frames_read_back_in_order(self):
        h = FrameHistory()
        h.add(1.5, "in", '[2,"1","Heartbeat",{}]')
        h.add(2.25, "out", '[3,"1",{"currentTime":"2026-11-24T10:00:00Z"}]')
        self.assertEqual(list(h), [(1.5, "in", '[2,"1","Heartbeat",{}]'),
                                   (2.25, "out", '[3,"1",{"currentTime":"2026-11-24T10:00:00Z"}]')])
        self.assertEqual(len(h), 2)
        self.assertEqual(h[-1][1], "out")

    def test_count_bound_drops_the_oldest(self):
        h = FrameHistory(maxlen=3)
        for i in range(10):
            h.add(float(i), "in", f"frame {i}")
        self.assertEqual([text for _, _, text in h], ["frame 7", "frame 8", "frame 9"])

    def test_byte_bound_drops_the_oldest(self):
        h = FrameHistory(maxlen=100, max_bytes=200)
        for i in range(20):
            h.add(float(i), "out", f"{i:02d}" + "x" * 48)
        texts = [text for _, _, text in h]
        # 63 bytes a record: three fit in 200, the newest ones.
        self.assertEqual([t[:2] for t in texts], ["17", "18", "19"])

    def test_a_frame_larger_than_the_budget_is_cut_short(self):
        h = FrameHistory(maxlen=10, max_bytes=64)
        h.add(0.0, "in", "small")
        h.add(1.0, "in", "é" * 100)
        (seconds, direction, text), = list(h)
        self.assertTrue(text.endswith(" …"))
        self.assertTrue(set(text[:-2]) == {"é"})
        self.assertLessEqual(len(text.encode("utf-8")) + 13, 64)

    def test_non_ascii_text_round_trips(self):
        h = FrameHistory()
        h.add(0.0, "in", '[2,"1","DataTransfer",{"vendorId":"Zürich ⚡"}]')
        self.assertEqual(h[0][2], '[2,"1","DataTransfer",{"vendorId":"Zürich ⚡"}]')


class ReadMeterValuesTests(SynchronousTestCase):
    """
    L{read_meter_values} reduces what chargers send.
    """

    def test_units_and_phases(self):
        """
        kWh and kW are converted, phases normalised, N ignored.
        """
        reading = read_meter_values([meter([
            {"value": "12.5", "unit": "kWh"},
            {"value": "16.1", "measurand": "Current.Import", "phase": "L1-N", "unit": "A"},
            {"value": "15.9", "measurand": "Current.Import", "phase": "L2", "unit": "A"},
            {"value": "0.4", "measurand": "Current.Import", "phase": "N", "unit": "A"},
            {"value": "7.4", "measurand": "Power.Active.Import", "unit": "kW"},
            {"value": "16", "measurand": "Current.Offered", "unit": "A"},
        ])])
        self.assertEqual(reading["energy_wh"], 12500)
        self.assertEqual(reading["currents"], {"L1": 16.1, "L2": 15.9})
        self.assertEqual(reading["power_w"], 7400)
        self.assertEqual(reading["current_offered"], 16)

    def test_latest_element_wins_and_junk_is_skipped(self):
        """
        Elements are applied in time order; unreadable values are skipped.
        """
        reading = read_meter_values([
            meter([{"value": "300"}], at="2026-01-01T10:05:00Z"),
            meter([{"value": "200"}, {"value": "abc", "measurand": "Current.Import"}],
                  at="2026-01-01T10:00:00Z"),
        ])
        self.assertEqual(reading["energy_wh"], 300)
        self.assertNotIn("currents", reading)
        self.assertEqual(read_meter_values([meter([{"value": "x"}])]), {})

    def test_per_phase_power_is_summed(self):
        """
        Power reported per phase only adds up to the total.
        """
        reading = read_meter_values([meter([
            {"value": "1000", "measurand": "Power.Active.Import", "phase": "L1", "unit": "W"},
            {"value": "1200", "measurand": "Power.Active.Import", "phase": "L2", "unit": "W"},
        ])])
        self.assertEqual(reading["power_w"], 2200)


class PasswordTests(SynchronousTestCase):
    """
    L{password_matches}.
    """

    def test_text_and_hex_key(self):
        """
        A 40-hex-digit key matches its raw bytes and its text; others only
        their text.
        """
        key = "0001020304050607FFFFFFFFFFFFFFFFFFFFFFFF"
        self.assertTrue(password_matches(key, bytes.fromhex(key)))
        self.assertTrue(password_matches(key, key.encode()))
        self.assertFalse(password_matches(key, b"0001"))
        self.assertTrue(password_matches("secret-password!", b"secret-password!"))
        self.assertFalse(password_matches("secret-password!", b"secret-password?"))
        self.assertFalse(password_matches("zz" * 16, b""))
