# -*- test-case-name: tests.test_dpt -*-
"""
KNX datapoint types (DPTs) used by the bridge: value <-> group telegram payload.

Every codec is a L{DPT} object in L{DPTS}, keyed by the id an installer writes
in the config (C{"1.010"}, C{"9.021"}, ...):

    >>> dpt = lookup("13.010")
    >>> dpt.encode(12345)
    b'\\x00\\x0009'
    >>> dpt.decode(b"\\x00\\x00\\x30\\x39")
    12345

L{DPT.encode} returns C{bytes} (the APDU bytes after the APCI) or, for the
1-bit DPT 1.x, an C{int} that travels in the low 6 bits of the APCI byte
("small" value); this is exactly what L{xxterocpp.knx.knxd} takes and gives.

Wrong values raise L{DPTError} with a reason. Numbers outside a DPT's range
raise the subclass L{DPTRangeError}, unless C{clamp=True} asks to pin them to
the nearest end of the range (never wrap: a counter of 256 sent as 0 would
lie to the bus).

Times are always sent in the controller's local time (KNX has no time zones):
see L{local_time}. The byte layouts are those of the KNX standard, checked
against xknx in C{tests/test_dpt.py}.
"""

import math
import struct
import time
from datetime import datetime as _datetime
from datetime import time as _time

import attr

__all__ = [
    "DPT",
    "DPTError",
    "DPTRangeError",
    "DPTS",
    "DateTime",
    "Float32",
    "TimeOfDay",
    "local_time",
    "lookup",
]


class DPTError(ValueError):
    """
    A value or payload that the datapoint type cannot represent.
    """


class DPTRangeError(DPTError):
    """
    A number outside the datapoint type's range; C{encode(..., clamp=True)}
    would have clamped it.
    """


def local_time(dt, tz=None):
    """
    Convert C{dt} to the controller's local time, as KNX devices expect.

    @param dt: an aware datetime (converted), or a naive one (taken to be
        local time already, like C{datetime.now()}).
    @type dt: L{datetime.datetime}
    @param tz: the local zone, e.g. C{ZoneInfo("Europe/Berlin")}; L{None}
        means the system's zone (C{TZ}, C{/etc/localtime}).
    @type tz: L{datetime.tzinfo} or L{None}

    @return: an aware datetime in the local zone.
    @rtype: L{datetime.datetime}
    """
    if dt.tzinfo is None and tz is not None:
        return dt.replace(tzinfo=tz)
    # For a naive dt and tz=None, astimezone() interprets it as system local
    # time and attaches the matching fixed offset.
    return dt.astimezone(tz)


def _is_dst(local):
    """
    Whether summer time is in effect at C{local} (an aware local datetime).
    """
    offset = local.dst()
    if offset is None:
        # astimezone() without a zone yields a fixed-offset timezone whose
        # dst() is None (knxdclient's DPT 19 bug); ask the system zone instead.
        return time.localtime(local.timestamp()).tm_isdst > 0
    return bool(offset)


def _in_range(low, high, optional=False):
    def check(instance, attribute, value):
        if value is None and optional:
            return
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise DPTError(f"{attribute.name} must be {low}..{high}, not {value!r}")

    return check


@attr.s(frozen=True, slots=True)
class TimeOfDay:
    """
    A DPT 10.001 value: time of day with an optional day of week.

    @ivar weekday: 1 = Monday ... 7 = Sunday, 0 = no day.
    """

    hour: int = attr.ib(validator=_in_range(0, 23))
    minute: int = attr.ib(validator=_in_range(0, 59))
    second: int = attr.ib(validator=_in_range(0, 59))
    weekday: int = attr.ib(default=0, validator=_in_range(0, 7))

    @classmethod
    def from_datetime(cls, dt, tz=None):
        """
        The local time of day and day of week of C{dt}; see L{local_time}.
        """
        local = local_time(dt, tz)
        return cls(local.hour, local.minute, local.second, local.isoweekday())


def _flag(name):
    def check(instance, attribute, value):
        if not isinstance(value, bool):
            raise DPTError(f"{name} must be True or False, not {value!r}")

    return check


@attr.s(frozen=True, slots=True)
class DateTime:
    """
    A DPT 19.001 value. L{None} in a field sets the matching "invalid" flag.

    @ivar year: 1900..2155, or L{None} (NY).
    @ivar month: 1..12; with C{day}, L{None} (ND) marks both invalid.
    @ivar day: 1..31.
    @ivar hour: 0..24 (24 only as 24:00:00); with C{minute} and C{second},
        L{None} (NT) marks the time invalid.
    @ivar weekday: 1 = Monday ... 7 = Sunday, 0 = any day, L{None} (NDoW).
    @ivar working_day: L{True}/L{False}, or L{None} when unknown (NWD).
    @ivar dst: summer time in effect (SUTI).
    @ivar external_sync: the clock is synchronised to an external signal (CLQ).
    @ivar source_reliable: the synchronisation source is reliable (SRC).
    @ivar fault: the clock is faulty (F).
    """

    year: int = attr.ib(validator=_in_range(1900, 2155, optional=True))
    month: int = attr.ib(validator=_in_range(1, 12, optional=True))
    day: int = attr.ib(validator=_in_range(1, 31, optional=True))
    hour: int = attr.ib(validator=_in_range(0, 24, optional=True))
    minute: int = attr.ib(validator=_in_range(0, 59, optional=True))
    second: int = attr.ib(validator=_in_range(0, 59, optional=True))
    weekday: int = attr.ib(default=None, validator=_in_range(0, 7, optional=True))
    working_day: bool = attr.ib(
        default=None, validator=attr.validators.optional(_flag("working_day"))
    )
    dst: bool = attr.ib(default=False, validator=_flag("dst"))
    external_sync: bool = attr.ib(default=False, validator=_flag("external_sync"))
    source_reliable: bool = attr.ib(default=False, validator=_flag("source_reliable"))
    fault: bool = attr.ib(default=False, validator=_flag("fault"))

    def __attrs_post_init__(self):
        if (self.month is None) != (self.day is None):
            raise DPTError("month and day must both be given or both be None")
        if len({v is None for v in (self.hour, self.minute, self.second)}) != 1:
            raise DPTError("hour, minute and second must all be given or all be None")
        if self.hour == 24 and (self.minute, self.second) != (0, 0):
            raise DPTError("hour 24 is only allowed as 24:00:00")

    @classmethod
    def from_datetime(
        cls, dt, tz=None, working_day=None, external_sync=False, source_reliable=False
    ):
        """
        The local date, time and summer-time flag of C{dt}; see L{local_time}.

        @param working_day: whether it is a working day; we do not know the
            installation's holidays, so the default is "unknown" (NWD).
        @param external_sync: whether the controller's clock is synchronised (CLQ).
        @param source_reliable: whether that source is reliable (SRC).
        """
        local = local_time(dt, tz)
        return cls(
            local.year,
            local.month,
            local.day,
            local.hour,
            local.minute,
            local.second,
            weekday=local.isoweekday(),
            working_day=working_day,
            dst=_is_dst(local),
            external_sync=external_sync,
            source_reliable=source_reliable,
        )


class DPT:
    """
    A datapoint type codec.

    @ivar id: the DPT id as written in the config, e.g. C{"9.021"}.
    @ivar name: the KNX name, e.g. C{"DPT_Value_Curr"}.
    @ivar unit: the unit of the Python value, or L{None}.
    @ivar small: L{True} when values travel inside the APCI byte (L{int}
        payloads), L{False} when they follow it (L{bytes} payloads).
    """

    small = False
    length = None

    def __init__(self, id, name, unit=None):
        self.id = id
        self.name = name
        self.unit = unit

    def __repr__(self):
        return f"<DPT {self.id} {self.name}>"

    def encode(self, value, clamp=False):
        """
        Encode C{value} for the bus.

        @param clamp: pin out-of-range numbers to the range instead of
            raising L{DPTRangeError}; it does not apply to booleans and times,
            which have no nearest valid value.
        @return: L{int} for a small (DPT 1) value, else L{bytes}.
        @raise DPTError: the value cannot be represented.
        """
        raise NotImplementedError()

    def decode(self, data):
        """
        Decode a received payload.

        @param data: an L{int} small value or the L{bytes} after the APCI.
        @raise DPTError: wrong length or nonsense.
        """
        raw = self._check_length(data)
        return self._decode(raw)

    def _check_length(self, data):
        if not isinstance(data, (bytes, bytearray)) or len(data) != self.length:
            plural = "s" if self.length > 1 else ""
            raise DPTError(f"DPT {self.id} needs {self.length} byte{plural}, got {data!r}")
        return bytes(data)

    def _number(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DPTError(f"DPT {self.id} needs a number, not {value!r}")
        if isinstance(value, float) and math.isnan(value):
            raise DPTError(f"DPT {self.id} cannot send NaN")
        return value

    def _limit(self, value, low, high, clamp):
        if low <= value <= high:
            return value
        if clamp:
            return low if value < low else high
        raise DPTRangeError(f"DPT {self.id}: {value!r} is outside {low}..{high}")


class _Boolean(DPT):
    """
    DPT 1.x: one bit, carried in the APCI byte.
    """

    small = True

    def encode(self, value, clamp=False):
        # bool is an int, so True/False/1/0 pass; 2 is nonsense, not "true".
        if isinstance(value, int) and value in (0, 1):
            return int(value)
        raise DPTError(f"DPT {self.id} needs a boolean (0 or 1), not {value!r}")

    def decode(self, data):
        # `knxtool groupwrite` (and some devices) send the bit as one extra
        # byte instead of inside the APCI; both mean the same.
        if isinstance(data, (bytes, bytearray)) and len(data) == 1:
            data = data[0]
        if isinstance(data, int) and not isinstance(data, bool) and data in (0, 1):
            return bool(data)
        raise DPTError(f"DPT {self.id} needs a boolean (0 or 1), got {data!r}")


class _Integer(DPT):
    """
    DPT 5.x / 13.x: big-endian integers; finite floats are rounded.
    """

    def __init__(self, id, name, unit, fmt):
        super().__init__(id, name, unit)
        self._struct = struct.Struct(fmt)
        self.length = self._struct.size
        bits = 8 * self.length
        if fmt.islower():
            self._low, self._high = -(1 << bits - 1), (1 << bits - 1) - 1
        else:
            self._low, self._high = 0, (1 << bits) - 1

    def encode(self, value, clamp=False):
        value = self._number(value)
        if isinstance(value, float) and math.isfinite(value):
            value = round(value)
        return self._struct.pack(self._limit(value, self._low, self._high, clamp))

    def _decode(self, raw):
        return self._struct.unpack(raw)[0]


class Float32(DPT):
    """
    DPT 14.x: IEEE-754 single precision, big-endian.

    Public because every 14.x subtype is the same codec with another name
    and unit: C{Float32("14.x", "price per kWh", None)} for one that
    L{DPTS} does not list.
    """

    length = 4
    _MAX = struct.unpack(">f", b"\x7f\x7f\xff\xff")[0]

    def encode(self, value, clamp=False):
        # +-inf is representable but "unbounded current" is not a value
        value = self._limit(float(self._number(value)), -self._MAX, self._MAX, clamp)
        return struct.pack(">f", value)

    def _decode(self, raw):
        value = struct.unpack(">f", raw)[0]
        if not math.isfinite(value):
            raise DPTError(f"DPT {self.id}: {raw.hex(' ')} is not a finite number")
        if value == 0:
            return 0.0
        # float32 has ~7 significant digits: 16.2 should not read as
        # 16.200000762939453 (the same rule as xknx and the ETS group monitor).
        return round(value, 7 - math.ceil(math.log10(abs(value))))


class _Float16(DPT):
    """
    DPT 9.x: KNX 2-byte float, C{MEEEEMMM MMMMMMMM}, value = 0.01 * M * 2**E.
    """

    length = 2
    # 7FFF means "invalid data" (KNX 03.07.02 §3.10), so the largest value
    # is 2046 * 2**15 / 100.
    _LOW, _HIGH = -671088.64, 670433.28
    _INVALID = b"\x7f\xff"

    def encode(self, value, clamp=False):
        value = self._limit(float(self._number(value)), self._LOW, self._HIGH, clamp)
        # xknx's rule, so the bytes match it (and ETS): halve until the
        # mantissa fits, then round half to even. Near-zero values that round
        # to 0 are 00 00, never 80 00 (which would be -20.48).
        mantissa = value * 100
        if round(mantissa) == 0:
            return b"\x00\x00"
        exponent = 0
        while not -2048 <= mantissa <= 2047:
            exponent += 1
            mantissa /= 2
        m = round(mantissa) & 0x7FF
        msb = exponent << 3 | m >> 8 | (0x80 if mantissa < 0 else 0)
        return bytes((msb, m & 0xFF))

    def _decode(self, raw):
        if raw == self._INVALID:
            raise DPTError(f"DPT {self.id}: 7F FF is the 'invalid data' marker")
        data = raw[0] << 8 | raw[1]
        mantissa = data & 0x7FF
        if data & 0x8000:
            mantissa -= 2048
        return (mantissa << (data >> 11 & 0x0F)) / 100


class _TimeOfDay(DPT):
    """
    DPT 10.001: C{DDDHHHHH 00MMMMMM 00SSSSSS}.
    """

    length = 3

    def encode(self, value, clamp=False):
        if isinstance(value, _datetime):
            value = TimeOfDay.from_datetime(value)
        elif isinstance(value, _time):
            value = TimeOfDay(value.hour, value.minute, value.second)
        elif not isinstance(value, TimeOfDay):
            raise DPTError(f"DPT {self.id} needs a datetime, time or TimeOfDay, not {value!r}")
        return bytes((value.weekday << 5 | value.hour, value.minute, value.second))

    def _decode(self, raw):
        # reserved bits are ignored, as xknx does
        return TimeOfDay(raw[0] & 0x1F, raw[1] & 0x3F, raw[2] & 0x3F, raw[0] >> 5)


_F, _WD, _NWD, _NY, _ND, _NDOW, _NT, _SUTI = (0x80 >> i for i in range(8))
_CLQ, _SRC = 0x80, 0x40


class _DateTime(DPT):
    """
    DPT 19.001: 8 bytes, see L{DateTime}.
    """

    length = 8

    def encode(self, value, clamp=False):
        if isinstance(value, _datetime):
            value = DateTime.from_datetime(value)
        elif not isinstance(value, DateTime):
            raise DPTError(f"DPT {self.id} needs a datetime or DateTime, not {value!r}")
        v = value
        flags = (
            (_F if v.fault else 0)
            | (_WD if v.working_day else 0)
            | (_NWD if v.working_day is None else 0)
            | (_NY if v.year is None else 0)
            | (_ND if v.month is None else 0)
            | (_NDOW if v.weekday is None else 0)
            | (_NT if v.hour is None else 0)
            | (_SUTI if v.dst else 0)
        )
        return bytes(
            (
                0 if v.year is None else v.year - 1900,
                v.month or 0,
                v.day or 0,
                (v.weekday or 0) << 5 | (v.hour or 0),
                v.minute or 0,
                v.second or 0,
                flags,
                (_CLQ if v.external_sync else 0) | (_SRC if v.source_reliable else 0),
            )
        )

    def _decode(self, raw):
        flags = raw[6]
        date_ok, time_ok = not flags & _ND, not flags & _NT
        return DateTime(
            year=None if flags & _NY else 1900 + raw[0],
            month=raw[1] & 0x0F if date_ok else None,
            day=raw[2] & 0x1F if date_ok else None,
            hour=raw[3] & 0x1F if time_ok else None,
            minute=raw[4] & 0x3F if time_ok else None,
            second=raw[5] & 0x3F if time_ok else None,
            weekday=None if flags & _NDOW else raw[3] >> 5,
            working_day=None if flags & _NWD else bool(flags & _WD),
            dst=bool(flags & _SUTI),
            external_sync=bool(raw[7] & _CLQ),
            source_reliable=bool(raw[7] & _SRC),
            fault=bool(flags & _F),
        )


DPTS = {
    dpt.id: dpt
    for dpt in (
        _Boolean("1.001", "DPT_Switch"),
        _Boolean("1.002", "DPT_Bool"),
        _Boolean("1.003", "DPT_Enable"),
        _Boolean("1.010", "DPT_Start"),
        _Boolean("1.015", "DPT_Reset"),
        _Integer("5.010", "DPT_Value_1_Ucount", None, ">B"),
        _Integer("13.010", "DPT_ActiveEnergy", "Wh", ">i"),
        Float32("14.019", "DPT_Value_Electric_Current", "A"),
        Float32("14.056", "DPT_Value_Power", "W"),
        _Float16("9.021", "DPT_Value_Curr", "mA"),
        _TimeOfDay("10.001", "DPT_TimeOfDay"),
        _DateTime("19.001", "DPT_DateTime"),
    )
}
"""
Every supported DPT by id.
"""


def lookup(dpt_id):
    """
    The codec for C{dpt_id}.

    @raise DPTError: with the list of supported ids, for a config error message.
    """
    try:
        return DPTS[dpt_id]
    except (KeyError, TypeError):
        raise DPTError(
            f"unsupported DPT {dpt_id!r} (supported: {', '.join(DPTS)})"
        ) from None
