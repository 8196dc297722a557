# -*- test-case-name: tests.test_web_commissioning,tests.test_ets -*-
"""
The values of group objects in words, for the commissioning view and the
ETS file: what 1 means on a DPT 1.010 object, which status 2 is, the unit
of a current.

All of it follows from the declaration (L{xxterocpp.knx.objects}) and the
KNX names of the datapoint types, so a new object needs nothing here.
"""

import re
from datetime import datetime

from xxterocpp.knx import objects
from xxterocpp.knx.dpt import DPTError, lookup
from xxterocpp.web.i18n import N_

__all__ = ["BOOLEAN_WORDS", "TIME_DPTS", "UNITS", "describe", "spelled_out", "value_names"]

#: DPT 1.x: what 0 and 1 mean, by subtype (their names in the KNX standard).
BOOLEAN_WORDS = {
    "1.001": (N_("off"), N_("on")),
    "1.002": (N_("false"), N_("true")),
    "1.003": (N_("disable"), N_("enable")),
    "1.010": (N_("stop"), N_("start")),
    "1.015": (N_("no action"), N_("reset")),
}

#: The unit of the bridge's value, by DPT (DPT 9.021 travels in mA, but the
#: bridge's value is in A, as the configuration and the page speak).
UNITS = {"9.021": "A", "13.010": "Wh", "14.019": "A", "14.056": "W"}

#: The DPTs whose values are points in time.
TIME_DPTS = ("10.001", "19.001")

_TABLE_NAME = re.compile(r"\b[A-Z][A-Z_]+\b")


def _table(name):
    values = getattr(objects, name, None)
    if isinstance(values, tuple) and all(isinstance(v, str) for v in values):
        return values
    return None


def value_names(obj):
    """
    @param obj: a L{xxterocpp.knx.objects.GroupObject}.
    @return: the names of its numbers when its meaning names a table of
        L{xxterocpp.knx.objects} (C{"numbered as in STATUSES"}), else L{None}.
    """
    return next(filter(None, map(_table, _TABLE_NAME.findall(obj.meaning))), None)


def spelled_out(meaning):
    """
    @return: C{meaning} with the value tables it names spelled out
        (C{"0 Available, 1 Preparing, ..."}), for people without the code.
    """
    def spell(match):
        values = _table(match.group())
        if values is None:
            return match.group()
        return ", ".join(f"{number} {name}" for number, name in enumerate(values))
    return _TABLE_NAME.sub(spell, meaning)


def describe(t, obj, dpt_id, value, local_time):
    """
    A value of a group object for people.

    @param t: the page's L{xxterocpp.web.i18n.Language}.
    @param obj: the L{xxterocpp.knx.objects.GroupObject}.
    @param dpt_id: the DPT it uses on its charging point.
    @param value: as C{GET /api/status} has it: a number or boolean, an ISO
        time for a time object, or C{{"payload": ...}} for a foreign write
        (hex digits, or the small value of a 1-bit write).
    @param local_time: C{(aware datetime) -> text}.
    @return: e.g. C{"1 (start)"}, C{"2 (Charging)"}, C{"16 A"}.
    """
    if isinstance(value, dict):
        payload = value["payload"]
        raw = bytes.fromhex(payload) if isinstance(payload, str) else payload
        try:
            decoded = lookup(dpt_id).decode(raw)
        except DPTError:
            return f"0x{payload}" if isinstance(payload, str) else str(payload)
        if isinstance(decoded, float) and dpt_id == "9.021":
            decoded /= 1000
        if dpt_id in TIME_DPTS:
            return str(decoded)
        return describe(t, obj, dpt_id, decoded, local_time)
    if value is None:
        return "\N{EM DASH}"
    if dpt_id in TIME_DPTS:
        return local_time(datetime.fromisoformat(value.replace("Z", "+00:00")))
    words = BOOLEAN_WORDS.get(dpt_id)
    if words is not None and value in (0, 1):
        return f"{int(value)} ({t(words[int(value)])})"
    names = value_names(obj)
    if names is not None and isinstance(value, int) and 0 <= value < len(names):
        return f"{value} ({names[value]})"
    unit = UNITS.get(dpt_id)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = t.number(value, "g")
        return f"{number}\N{NO-BREAK SPACE}{unit}" if unit else number
    return str(value)
