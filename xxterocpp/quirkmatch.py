# -*- test-case-name: tests.test_quirks -*-
"""
How an entry of the quirk registry (L{xxterocpp.quirks.REGISTRY}) matches a
charger's BootNotification: the version number in its firmwareVersion
(L{firmware_version}), firmware version ranges (L{VersionRange}) and the
vendor and model patterns (L{whole_match}). Plain Python, no Twisted.
"""

import fnmatch
import re

import attr

__all__ = ["VersionRange", "firmware_version", "whole_match"]

_DOTTED = re.compile(r"\d+(?:\.\d+)+")
_PLAIN = re.compile(r"[vV]?(\d+)")


def firmware_version(firmware):
    """
    The version number in a BootNotification's firmwareVersion.

    Chargers dress it up (C{"TAC3Z9119006710273::V1.8.21"},
    C{"1.0.0.0.7b107_MG"}, C{"05.43"}): the version is the first run of
    dotted numbers, or the whole string when it is one number (with an
    optional C{v}).

    @return: the numbers as a tuple of ints, or L{None} when there is none.
    """
    if not firmware:
        return None
    found = _DOTTED.search(firmware)
    if found:
        return tuple(int(part) for part in found.group().split("."))
    found = _PLAIN.fullmatch(firmware.strip())
    return (int(found.group(1)),) if found else None


def _padded(a, b):
    width = max(len(a), len(b))
    return a + (0,) * (width - len(a)), b + (0,) * (width - len(b))


_COMPARE = {
    ">=": lambda a, b: a >= b, ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b, "<": lambda a, b: a < b,
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
}
_CLAUSE = re.compile(r"\s*(>=|<=|==|!=|>|<)\s*(\d+(?:\.\d+)*)\s*")


@attr.s(frozen=True, slots=True)
class VersionRange:
    """
    A firmware version range: clauses like C{">=6.0"} joined by commas, all
    of which must hold. Versions compare numerically part by part, missing
    parts count as 0 (C{6 == 6.0}, C{6.10 > 6.9}).

    @ivar text: the range as written; C{""} is any firmware at all.
    """

    text = attr.ib()
    _clauses = attr.ib(init=False, repr=False, eq=False)

    def __attrs_post_init__(self):
        clauses = []
        for part in self.text.split(",") if self.text.strip() else ():
            found = _CLAUSE.fullmatch(part)
            if not found:
                raise ValueError(
                    f"bad firmware range {self.text!r} (expected clauses like '>=6.0,<6.4')")
            version = tuple(int(n) for n in found.group(2).split("."))
            clauses.append((_COMPARE[found.group(1)], version))
        object.__setattr__(self, "_clauses", tuple(clauses))

    def contains(self, firmware):
        """
        @param firmware: a firmwareVersion as the charger sent it, or L{None}.
        @return: whether its version is in the range. A firmware without a
            version number is in no range but the empty one.
        """
        if not self._clauses:
            return True
        version = firmware_version(firmware)
        if version is None:
            return False
        return all(compare(*_padded(version, bound)) for compare, bound in self._clauses)


def whole_match(text):
    """
    A compiled case-insensitive pattern that must match the whole string:
    C{"re:<regex>"}, or else a glob (C{*}, C{?}, C{[...]}).
    """
    if text.startswith("re:"):
        return re.compile(text[3:], re.IGNORECASE)
    return re.compile(fnmatch.translate(text), re.IGNORECASE)
