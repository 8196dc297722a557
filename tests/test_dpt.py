"""
Tests for L{xxterocpp.knx.dpt}.

Golden vectors come from xknx, cross-checked with knxdclient and on the wire
through knxd.
"""

import os
import time
from datetime import datetime, timedelta, timezone
from datetime import time as dtime

from twisted.trial.unittest import SynchronousTestCase

from xxterocpp.knx.dpt import (
    DPTS,
    DateTime,
    DPTError,
    DPTRangeError,
    TimeOfDay,
    local_time,
    lookup,
)

try:
    from zoneinfo import ZoneInfo

    BERLIN = ZoneInfo("Europe/Berlin")
except Exception:  # no tzdata
    BERLIN = None

try:
    import xknx.dpt as xknx_dpt
    from xknx.dpt.dpt_10 import KNXDay, KNXTime
    from xknx.exceptions import ConversionError
except ImportError:  # the Debian stack has no xknx
    xknx_dpt = None


def h(text):
    """
    Bytes from a hex dump like C{"4C 94"}.
    """
    return bytes.fromhex(text)


def with_zone(testcase, name):
    """
    Run the rest of C{testcase} with the system time zone set to C{name}.
    """
    if BERLIN is None:
        raise testcase.skipTest("no tzdata")
    old = os.environ.get("TZ")

    def restore():
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()

    os.environ["TZ"] = name
    time.tzset()
    testcase.addCleanup(restore)


class LookupTests(SynchronousTestCase):
    def test_every_configurable_dpt_is_there(self):
        """
        Each DPT the config accepts has a codec under its id.
        """
        self.assertEqual(
            sorted(DPTS),
            sorted(
                ["1.001", "1.002", "1.003", "1.010", "1.015", "5.010", "13.010", "14.019",
                 "14.056", "9.021", "10.001", "19.001"]
            ),
        )
        for dpt_id, dpt in DPTS.items():
            self.assertIs(lookup(dpt_id), dpt)
            self.assertEqual(dpt.id, dpt_id)

    def test_unknown_dpt_lists_the_supported_ones(self):
        """
        A typo in the config gets a reason naming the valid ids.
        """
        e = self.assertRaises(DPTError, lookup, "5.001")
        self.assertIn("'5.001'", str(e))
        self.assertIn("9.021", str(e))
        self.assertRaises(DPTError, lookup, None)

    def test_dpt_error_is_a_value_error(self):
        """
        Callers that only know C{ValueError} still catch codec errors.
        """
        self.assertTrue(issubclass(DPTRangeError, DPTError))
        self.assertTrue(issubclass(DPTError, ValueError))


class BooleanTests(SynchronousTestCase):
    def test_small_values(self):
        """
        DPT 1.x is the small APCI value 0/1 (wire: C{00 80}/C{00 81}).
        """
        for dpt_id in ("1.001", "1.002", "1.003", "1.010", "1.015"):
            dpt = lookup(dpt_id)
            self.assertTrue(dpt.small)
            self.assertEqual(dpt.encode(True), 1)
            self.assertEqual(dpt.encode(False), 0)
            self.assertEqual(dpt.encode(1), 1)
            self.assertEqual(dpt.encode(0), 0)
            self.assertIs(dpt.decode(1), True)
            self.assertIs(dpt.decode(0), False)

    def test_long_form_is_accepted(self):
        """
        C{knxtool groupwrite} sends the bit as an extra byte; it decodes the same.
        """
        dpt = lookup("1.010")
        self.assertIs(dpt.decode(h("01")), True)
        self.assertIs(dpt.decode(h("00")), False)

    def test_nonsense_is_refused(self):
        """
        2 is not a boolean, neither on the way out (even with clamp) nor in.
        """
        dpt = lookup("1.003")
        for value in (2, -1, "1", None, 1.0):
            self.assertRaises(DPTError, dpt.encode, value)
        self.assertRaises(DPTError, dpt.encode, 2, clamp=True)
        for data in (2, 63, h("02"), h("00 01"), b"", True):
            e = self.assertRaises(DPTError, dpt.decode, data)
            self.assertIn("1.003", str(e))


class UnsignedCounterTests(SynchronousTestCase):
    dpt = lookup("5.010")

    def test_golden_vectors(self):
        """
        DPT 5.010: 0, 1, 42, 255 -> one byte, no scaling.
        """
        for value, data in [(0, "00"), (1, "01"), (42, "2A"), (255, "FF")]:
            self.assertEqual(self.dpt.encode(value), h(data))
            self.assertEqual(self.dpt.decode(h(data)), value)
        self.assertFalse(self.dpt.small)

    def test_out_of_range_raises_or_clamps(self):
        """
        256 is refused, or clamped to 255 (never wrapped to 0).
        """
        e = self.assertRaises(DPTRangeError, self.dpt.encode, 256)
        self.assertIn("0..255", str(e))
        self.assertRaises(DPTRangeError, self.dpt.encode, -1)
        self.assertEqual(self.dpt.encode(256, clamp=True), h("FF"))
        self.assertEqual(self.dpt.encode(-5, clamp=True), h("00"))
        self.assertEqual(self.dpt.encode(float("inf"), clamp=True), h("FF"))

    def test_floats_are_rounded(self):
        """
        A float is rounded to the nearest count.
        """
        self.assertEqual(self.dpt.encode(41.6), h("2A"))

    def test_nonsense(self):
        """
        Non-numbers and wrong lengths are refused with a reason.
        """
        for value in ("1", None, True, float("nan")):
            self.assertRaises(DPTError, self.dpt.encode, value)
        for data in (b"", h("00 00"), 5):
            e = self.assertRaises(DPTError, self.dpt.decode, data)
            self.assertIn("needs 1 byte,", str(e))


class ActiveEnergyTests(SynchronousTestCase):
    dpt = lookup("13.010")

    def test_golden_vectors(self):
        """
        DPT 13.010: int32 two's complement, big-endian.
        """
        for value, data in [
            (0, "00 00 00 00"),
            (12345, "00 00 30 39"),
            (123456789, "07 5B CD 15"),
            (-1, "FF FF FF FF"),
            (2147483647, "7F FF FF FF"),
            (-2147483648, "80 00 00 00"),
        ]:
            self.assertEqual(self.dpt.encode(value), h(data))
            self.assertEqual(self.dpt.decode(h(data)), value)
        self.assertEqual(self.dpt.unit, "Wh")

    def test_out_of_range_raises_or_clamps(self):
        """
        2**31 is refused, or clamped to the largest int32.
        """
        self.assertRaises(DPTRangeError, self.dpt.encode, 2**31)
        self.assertRaises(DPTRangeError, self.dpt.encode, -(2**31) - 1)
        self.assertEqual(self.dpt.encode(2**31, clamp=True), h("7F FF FF FF"))
        self.assertEqual(self.dpt.encode(-(2**40), clamp=True), h("80 00 00 00"))

    def test_wrong_length(self):
        """
        Three bytes are not an int32.
        """
        self.assertRaises(DPTError, self.dpt.decode, h("00 30 39"))


class Float32Tests(SynchronousTestCase):
    dpt = lookup("14.019")

    def test_golden_vectors(self):
        """
        DPT 14.019: IEEE-754 float32; decoding rounds to 7 significant digits.
        """
        for value, data in [
            (16.0, "41 80 00 00"),
            (32.0, "42 00 00 00"),
            (6.0, "40 C0 00 00"),
            (13.5, "41 58 00 00"),
            (0.0, "00 00 00 00"),
            (0.1, "3D CC CC CD"),
            (-18.4, "C1 93 33 33"),
            (229.89, "43 65 E3 D7"),
        ]:
            self.assertEqual(self.dpt.encode(value), h(data))
            self.assertEqual(self.dpt.decode(h(data)), value)
        self.assertEqual(self.dpt.encode(16), h("41 80 00 00"))

    def test_non_finite(self):
        """
        NaN is never sent; infinity is out of range; neither is decoded.
        """
        self.assertRaises(DPTError, self.dpt.encode, float("nan"))
        self.assertRaises(DPTError, self.dpt.encode, float("nan"), clamp=True)
        self.assertRaises(DPTRangeError, self.dpt.encode, float("inf"))
        self.assertRaises(DPTRangeError, self.dpt.encode, 1e39)
        self.assertEqual(self.dpt.encode(float("inf"), clamp=True), h("7F 7F FF FF"))
        self.assertEqual(self.dpt.encode(-1e39, clamp=True), h("FF 7F FF FF"))
        for data in ("7F C0 00 00", "7F 80 00 00", "FF 80 00 00"):
            self.assertRaises(DPTError, self.dpt.decode, h(data))

    def test_wrong_length(self):
        """
        A 2-byte float is not a 4-byte float.
        """
        self.assertRaises(DPTError, self.dpt.decode, h("4C 94"))

    def test_power(self):
        """
        DPT 14.056 is the same codec in W: 1500 W, 11040 W.
        """
        dpt = lookup("14.056")
        self.assertEqual((dpt.unit, dpt.length), ("W", 4))
        self.assertEqual(dpt.encode(1500), h("44 BB 80 00"))
        self.assertEqual(dpt.encode(11040.0), h("46 2C 80 00"))
        self.assertEqual(dpt.decode(h("44 BB 80 00")), 1500.0)


class Float16Tests(SynchronousTestCase):
    dpt = lookup("9.021")

    def test_current_vectors(self):
        """
        DPT 9.021 in mA: xknx's bytes (half-even on ties) and decoded values.
        """
        for value, data, decoded in [
            (0, "00 00", 0.0),
            (1, "00 64", 1.0),
            (10, "03 E8", 10.0),
            (20.47, "07 FF", 20.47),
            (100, "1C E2", 100.0),
            (1000, "36 1A", 999.68),
            (6000, "4C 94", 6000.64),
            (8000, "4E 1A", 7997.44),
            (10000, "4F A1", 9999.36),
            (13000, "54 F6", 13004.8),
            (16000, "56 1A", 15994.88),
            (20000, "57 A1", 19998.72),
            (25000, "5C C5", 25006.08),
            (32000, "5E 1A", 31989.76),
            (63000, "66 02", 62996.48),
            (-1000, "B1 E6", -999.68),
            (-6000, "CB 6C", -6000.64),
        ]:
            self.assertEqual(self.dpt.encode(value), h(data), value)
            self.assertEqual(self.dpt.decode(h(data)), decoded)
        self.assertEqual(self.dpt.unit, "mA")

    def test_generic_vectors(self):
        """
        DPT 9.021: xknx's own DPT 9 test vectors.
        """
        for value, data in [
            (-30.00, "8A 24"),
            (21.00, "0C 1A"),
            (16.96, "06 A0"),
            (-10.00, "84 18"),
            (20.48, "0C 00"),
            (-20.48, "80 00"),
            (0.01, "00 01"),
            (-0.01, "87 FF"),
            (-671088.64, "F8 00"),
        ]:
            self.assertEqual(self.dpt.encode(value), h(data), value)
            self.assertEqual(self.dpt.decode(h(data)), value)
        for value, data in [
            (0.005, "00 00"),
            (0.00501, "00 01"),
            (-0.005, "00 00"),
            (500.00, "2E 1A"),
            (-1000.00, "B1 E6"),
        ]:
            self.assertEqual(self.dpt.encode(value), h(data), value)
        self.assertEqual(self.dpt.decode(h("2E 1A")), 499.84)

    def test_any_exponent_decodes(self):
        """
        Encoding is not unique; other encoders may use a larger exponent.
        """
        self.assertEqual(self.dpt.decode(h("08 32")), 1.0)  # E=1, M=50

    def test_range(self):
        """
        7F FF means "invalid", so the largest value is 670433.28 (7F FE).
        """
        self.assertEqual(self.dpt.encode(670433.28), h("7F FE"))
        self.assertRaises(DPTRangeError, self.dpt.encode, 670760.96)
        self.assertRaises(DPTRangeError, self.dpt.encode, -671088.65)
        self.assertEqual(self.dpt.encode(1e9, clamp=True), h("7F FE"))
        self.assertEqual(self.dpt.encode(-1e9, clamp=True), h("F8 00"))
        self.assertEqual(self.dpt.encode(float("-inf"), clamp=True), h("F8 00"))
        e = self.assertRaises(DPTError, self.dpt.decode, h("7F FF"))
        self.assertIn("invalid", str(e))
        self.assertRaises(DPTError, self.dpt.encode, float("nan"), clamp=True)
        self.assertRaises(DPTError, self.dpt.decode, h("4C"))

    def test_round_trip_error_is_within_half_a_step(self):
        """
        Every mA value from 0 to 80 A comes back within half a step (0.01 * 2**E / 2).
        """
        for value in range(-80000, 80001, 37):
            decoded = self.dpt.decode(self.dpt.encode(value))
            exponent = self.dpt.encode(value)[0] >> 3 & 0x0F
            self.assertLessEqual(abs(decoded - value), 0.01 * 2**exponent / 2 + 1e-9, value)


class TimeOfDayTests(SynchronousTestCase):
    dpt = lookup("10.001")

    def test_golden_vectors(self):
        """
        DPT 10.001: C{DDDHHHHH 00MMMMMM 00SSSSSS}, day 1 = Monday, 0 = no day.
        """
        for value, data in [
            (TimeOfDay(13, 23, 42, 2), "4D 17 2A"),
            (TimeOfDay(0, 0, 0), "00 00 00"),
            (TimeOfDay(23, 59, 59, 7), "F7 3B 3B"),
            (TimeOfDay(8, 30, 0, 1), "28 1E 00"),
        ]:
            self.assertEqual(self.dpt.encode(value), h(data))
            self.assertEqual(self.dpt.decode(h(data)), value)

    def test_naive_datetime_is_local_time(self):
        """
        A naive datetime is already local: Tuesday 2024-07-30 13:23:42.
        """
        self.assertEqual(self.dpt.encode(datetime(2024, 7, 30, 13, 23, 42, 999999)), h("4D 17 2A"))
        self.assertEqual(self.dpt.encode(dtime(13, 23, 42)), h("0D 17 2A"))

    def test_aware_datetime_in_explicit_zone(self):
        """
        An aware UTC datetime is converted to local time, weekday included.
        """
        if BERLIN is None:
            raise self.skipTest("no tzdata")
        # 22:30 UTC on Monday is 00:30 on Tuesday in Berlin (summer time)
        utc = datetime(2024, 7, 29, 22, 30, 5, tzinfo=timezone.utc)
        value = TimeOfDay.from_datetime(utc, BERLIN)
        self.assertEqual(value, TimeOfDay(0, 30, 5, 2))
        self.assertEqual(self.dpt.encode(value), h("40 1E 05"))

    def test_aware_datetime_in_system_zone(self):
        """
        encode() converts aware datetimes to the system's local zone.
        """
        with_zone(self, "Europe/Berlin")
        utc = datetime(2024, 1, 1, 23, 0, 0, tzinfo=timezone.utc)
        self.assertEqual(self.dpt.encode(utc), h("40 00 00"))  # Tue 00:00 CET

    def test_nonsense(self):
        """
        Hour 24 (allowed in DPT 19, not here), bad fields and wrong lengths.
        """
        self.assertRaises(DPTError, TimeOfDay, 24, 0, 0)
        self.assertRaises(DPTError, TimeOfDay, 1, 60, 0)
        self.assertRaises(DPTError, TimeOfDay, 1, 0, 0, 8)
        self.assertRaises(DPTError, TimeOfDay, None, 0, 0)
        self.assertRaises(DPTError, self.dpt.decode, h("18 00 00"))  # hour 24
        self.assertRaises(DPTError, self.dpt.decode, h("00 3C 00"))  # minute 60
        self.assertRaises(DPTError, self.dpt.decode, h("00 00"))
        self.assertRaises(DPTError, self.dpt.encode, "13:23")


class DateTimeTests(SynchronousTestCase):
    dpt = lookup("19.001")

    def test_golden_vectors(self):
        """
        DPT 19.001, including each flag.
        """
        for value, data in [
            (DateTime(2017, 11, 28, 23, 7, 24), "75 0B 1C 17 07 18 24 00"),
            (DateTime(1900, 1, 1, 0, 0, 0), "00 01 01 00 00 00 24 00"),
            (DateTime(2155, 12, 31, 23, 59, 59, weekday=7), "FF 0C 1F F7 3B 3B 20 00"),
            (
                DateTime(2024, 7, 28, 22, 59, 17, weekday=7, working_day=False, dst=True),
                "7C 07 1C F6 3B 11 01 00",
            ),
            (
                DateTime(2025, 3, 14, 12, 0, 0, weekday=5, working_day=True, external_sync=True),
                "7D 03 0E AC 00 00 40 80",
            ),
            (DateTime(2025, 1, 1, 24, 0, 0, weekday=3), "7D 01 01 78 00 00 20 00"),
            (DateTime(None, None, None, None, None, None, fault=True), "00 00 00 00 00 00 BE 00"),
            (DateTime(2022, 10, 12, 21, 42, 17, weekday=3), "7A 0A 0C 75 2A 11 20 00"),
            (
                DateTime(
                    2022, 10, 12, 21, 42, 17, weekday=0, working_day=True, source_reliable=True
                ),
                "7A 0A 0C 15 2A 11 40 40",
            ),
        ]:
            self.assertEqual(self.dpt.encode(value), h(data))
            self.assertEqual(self.dpt.decode(h(data)), value)

    def test_from_datetime_in_summer(self):
        """
        A UTC instant in July is Berlin summer time: SUTI set, date and time agree.
        """
        if BERLIN is None:
            raise self.skipTest("no tzdata")
        utc = datetime(2024, 7, 28, 20, 59, 17, tzinfo=timezone.utc)
        value = DateTime.from_datetime(utc, BERLIN, working_day=False)
        self.assertEqual(self.dpt.encode(value), h("7C 07 1C F6 3B 11 01 00"))

    def test_date_does_not_drift_from_time(self):
        """
        Unlike knxdclient, a UTC time just before midnight becomes the next
        local day in both the date and the time fields.
        """
        if BERLIN is None:
            raise self.skipTest("no tzdata")
        utc = datetime(2024, 7, 28, 22, 59, 17, tzinfo=timezone.utc)
        value = DateTime.from_datetime(utc, BERLIN)
        self.assertEqual((value.day, value.hour, value.weekday, value.dst), (29, 0, 1, True))

    def test_from_datetime_in_winter(self):
        """
        No SUTI in January.
        """
        if BERLIN is None:
            raise self.skipTest("no tzdata")
        value = DateTime.from_datetime(datetime(2025, 1, 15, 8, 0, 0), BERLIN)
        self.assertEqual(self.dpt.encode(value), h("7D 01 0F 68 00 00 20 00"))

    def test_system_zone_dst(self):
        """
        encode() takes the DST flag from the system zone, for naive and aware datetimes.
        """
        with_zone(self, "Europe/Berlin")
        self.assertEqual(self.dpt.encode(datetime(2024, 7, 28, 22, 59, 17))[6], 0x21)
        self.assertEqual(self.dpt.encode(datetime(2024, 1, 28, 22, 59, 17))[6], 0x20)
        aware = datetime(2024, 7, 28, 20, 59, 17, tzinfo=timezone.utc)
        self.assertEqual(self.dpt.encode(aware), h("7C 07 1C F6 3B 11 21 00"))
        with_zone(self, "UTC")
        self.assertEqual(self.dpt.encode(aware), h("7C 07 1C F4 3B 11 20 00"))

    def test_nonsense(self):
        """
        Out-of-range fields and half-invalid groups are refused.
        """
        self.assertRaises(DPTError, DateTime, 1899, 1, 1, 0, 0, 0)
        self.assertRaises(DPTError, DateTime, 2156, 1, 1, 0, 0, 0)
        self.assertRaises(DPTError, DateTime, 2024, 13, 1, 0, 0, 0)
        self.assertRaises(DPTError, DateTime, 2024, 1, None, 0, 0, 0)
        self.assertRaises(DPTError, DateTime, 2024, 1, 1, 0, None, 0)
        self.assertRaises(DPTError, DateTime, 2024, 1, 1, 24, 0, 1)
        self.assertRaises(DPTError, DateTime, 2024, 1, 1, 0, 0, 0, working_day=1)
        self.assertRaises(DPTError, self.dpt.encode, datetime(1800, 1, 1))
        self.assertRaises(DPTError, self.dpt.encode, dtime(1, 2, 3))
        self.assertRaises(DPTError, self.dpt.decode, h("7C 00 1C F6 3B 11 01 00"))  # month 0
        self.assertRaises(DPTError, self.dpt.decode, h("7C 07 1C F8 3B 11 01 00"))  # hour 24:59
        self.assertRaises(DPTError, self.dpt.decode, h("7C 07 1C F6 3B 11 01"))

    def test_invalid_fields_decode_as_none(self):
        """
        Fields flagged invalid decode as None whatever their bytes say.
        """
        value = self.dpt.decode(h("7C 00 00 F6 3B 11 3A 00"))
        self.assertEqual(value, DateTime(None, None, None, None, None, None, weekday=7))


class LocalTimeTests(SynchronousTestCase):
    def test_naive_with_zone_is_taken_as_local(self):
        """
        A naive datetime is local time already; the zone is only attached.
        """
        if BERLIN is None:
            raise self.skipTest("no tzdata")
        local = local_time(datetime(2024, 7, 1, 12, 0), BERLIN)
        self.assertEqual((local.hour, local.utcoffset()), (12, timedelta(hours=2)))

    def test_aware_is_converted(self):
        """
        An aware datetime is converted to the zone.
        """
        with_zone(self, "Europe/Berlin")
        local = local_time(datetime(2024, 7, 1, 12, 0, tzinfo=timezone.utc))
        self.assertEqual((local.hour, local.utcoffset()), (14, timedelta(hours=2)))


class XknxOracleTests(SynchronousTestCase):
    """
    Sweeps compared against xknx (PyPI only; a test dependency, never runtime).
    """

    def setUp(self):
        if xknx_dpt is None:
            raise self.skipTest("xknx is not installed")

    def assertSameAsXknx(self, dpt_id, xknx_class, values):
        dpt = lookup(dpt_id)
        for value in values:
            try:
                expected = bytes(xknx_class.to_knx(value).value)
            except ConversionError:
                self.assertRaises(DPTRangeError, dpt.encode, value)
                continue
            self.assertEqual(dpt.encode(value), expected, value)
            self.assertEqual(
                dpt.decode(expected), xknx_class.from_knx(xknx_dpt.DPTArray(expected)), value
            )

    def test_dpt_9_021(self):
        """
        Same bytes and values as xknx from -700 A to 700 A, and at the ends.
        """
        values = [v / 7 for v in range(-5000000, 5000000, 2311)]
        values += [v / 1000 for v in range(-30000, 30000, 13)]
        values += [670433.28, 670433.29, -671088.64, -671088.65, 0.0049, -0.0051]
        self.assertSameAsXknx("9.021", xknx_dpt.DPTCurrent, values)

    def test_dpt_14_019(self):
        """
        Same bytes and 7-digit values as xknx.
        """
        values = [v / 3 for v in range(-100000, 100000, 337)] + [1e-30, -3.4e38, 229.89]
        self.assertSameAsXknx("14.019", xknx_dpt.DPTElectricCurrent, values)

    def test_dpt_14_056(self):
        """
        Same bytes and 7-digit values as xknx, up to 22 kW and beyond.
        """
        values = [v * 7.3 for v in range(-1000, 4000, 7)] + [11040.0, 1e-30, 3.4e38]
        self.assertSameAsXknx("14.056", xknx_dpt.DPTPower, values)

    def test_dpt_13_010(self):
        """
        Same bytes as xknx, including the int32 ends.
        """
        values = list(range(-(2**31), 2**31, 2**31 // 1001)) + [2**31 - 1, 2**31, -(2**31) - 1]
        self.assertSameAsXknx("13.010", xknx_dpt.DPTActiveEnergy, values)

    def test_dpt_5_010(self):
        """
        Same bytes as xknx for every byte and just outside.
        """
        self.assertSameAsXknx("5.010", xknx_dpt.DPTValue1Ucount, range(-1, 257))

    def test_dpt_10_001(self):
        """
        Same bytes as xknx for every weekday and a sweep of times.
        """
        dpt = lookup("10.001")
        for weekday in range(8):
            for seconds in range(0, 86400, 601):
                value = TimeOfDay(seconds // 3600, seconds // 60 % 60, seconds % 60, weekday)
                expected = bytes(
                    xknx_dpt.DPTTime.to_knx(
                        KNXTime(value.hour, value.minute, value.second, KNXDay(weekday))
                    ).value
                )
                self.assertEqual(dpt.encode(value), expected)
                self.assertEqual(dpt.decode(expected), value)
