# -*- test-case-name: tests.test_config -*-
"""
How L{xxterocpp.config} declares its settings and reads TOML tables into them.

A setting is an attrs attribute made by L{setting}, carrying the parser that
turns the TOML value into the configured one (or raises L{ValueError} with
the problem, for a person); a nested table is an attribute made by
L{subtable}. L{build} reads one TOML table into such a class and
L{build_array} an array of tables, refusing unknown and missing keys; every
problem is an L{Invalid} naming the dotted key.

The parsers here know TOML, not the service: L{scalar} checks a value's
type and then each check given (L{within}, L{at_least}, L{one_of}, ...).
"""

import math
import tomllib
from datetime import date, datetime, time

import attr

__all__ = [
    "Invalid", "at_least", "at_most_characters", "build", "build_array", "coerce",
    "describe", "did_you_mean", "non_empty", "one_of", "positive", "refuse_unknown",
    "scalar", "setting", "subtable", "within", "without",
]

_PARSE = "xxterocpp.configschema.parse"
_TABLE = "xxterocpp.configschema.table"


class Invalid(Exception):
    """
    A problem at a key, before the file name is attached.

    @ivar key: the dotted key path, e.g. C{"charger[0].knx.status"}.
    @ivar problem: what is wrong, for a person.
    """

    def __init__(self, key, problem):
        super().__init__(key, problem)
        self.key = key
        self.problem = problem


_EXPECTED = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
_TOML_TYPES = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "float"),
    (str, "string"),
    (datetime, "date-time"),
    (date, "date"),
    (time, "time"),
    (list, "an array"),
    (dict, "a table"),
)


def describe(value):
    """
    A TOML value as an installer wrote it: C{"string '8016'"}, C{"a table"}.
    """
    name = next(name for kind, name in _TOML_TYPES if isinstance(value, kind))
    if isinstance(value, (list, dict)):
        return name
    if isinstance(value, bool):
        shown = str(value).lower()
    elif isinstance(value, (date, time)):
        shown = value.isoformat()
    else:
        shown = repr(value)
    return f"{name} {shown}"


def coerce(kind, value):
    """
    C{value} as the TOML scalar C{kind}; an integer is a fine float, a
    boolean is never an integer.
    """
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"expected {_EXPECTED[kind]}, got {describe(value)}{_hint(kind, value)}")
    if kind is float and not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return value


def _hint(kind, value):
    """
    How to fix the commonest type mistake: quotes where none belong, or
    none where they do.
    """
    if kind is str:
        return " (put it in quotes)" if isinstance(value, (int, float)) else ""
    if isinstance(value, str):
        try:
            coerce(kind, tomllib.loads(f"v = {value.strip()}")["v"])
        except (tomllib.TOMLDecodeError, ValueError):
            return ""
        return " (remove the quotes)"
    return ""


def scalar(kind, *checks):
    """
    A parser for a TOML C{kind} value that then passes every check.

    @param checks: callables that raise L{ValueError} for a bad value.
    """

    def parse(value):
        value = coerce(kind, value)
        for check in checks:
            check(value)
        return value

    return parse


def within(low, high):
    """
    A check: C{low <= value <= high}.
    """

    def check(value):
        if not low <= value <= high:
            raise ValueError(f"must be {low}..{high}, not {value!r}")

    return check


def at_least(low):
    """
    A check: C{value >= low}.
    """

    def check(value):
        if value < low:
            raise ValueError(f"must be at least {low}, not {value!r}")

    return check


def positive(value):
    """
    Check that C{value} is more than 0.
    """
    if value <= 0:
        raise ValueError(f"must be more than 0, not {value!r}")


def non_empty(value):
    """
    Check that the string C{value} is not empty or blank.
    """
    if not value.strip():
        raise ValueError("must not be empty")


def did_you_mean(word, choices):
    """
    @return: C{" (did you mean 'x'?)"} for the choice closest to C{word},
        or C{""} when none is close.
    """
    # Only a bad file needs it: not loaded by a service that starts.
    import difflib

    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def one_of(*choices):
    """
    A check: the value is one of C{choices}, with a suggestion when not.
    """

    def check(value):
        if value not in choices:
            expected = ", ".join(map(repr, choices))
            suggestion = did_you_mean(value, choices) if isinstance(value, str) else ""
            raise ValueError(f"must be one of {expected}, not {value!r}{suggestion}")

    return check


def without(characters, why):
    """
    A check: the string contains none of C{characters}, for the reason C{why}.
    """

    def check(value):
        for character in characters:
            if character in value:
                raise ValueError(f"{value!r} must not contain {character!r} ({why})")

    return check


def at_most_characters(high):
    """
    A check: the string is at most C{high} characters long.
    """

    def check(value):
        if len(value) > high:
            raise ValueError(f"must be at most {high} characters, not {len(value)}")

    return check


def setting(default=attr.NOTHING, parse=None, **kwargs):
    """
    An attrs attribute read from the configuration file.

    @param default: its value when the file does not set it; none means the
        key is required.
    @param parse: turns the TOML value into the attribute's value, or raises
        L{ValueError} with the problem.
    """
    return attr.ib(default=default, metadata={_PARSE: parse}, **kwargs)


def subtable(cls):
    """
    An attrs attribute holding a nested TOML table read into C{cls}
    (C{[charger.knx]} in C{[[charger]]}); an absent table is C{cls()}.
    """
    return attr.ib(factory=cls, metadata={_TABLE: cls})


def refuse_unknown(table, known, prefix):
    """
    Refuse the first key of C{table} not in C{known}, suggesting the closest.

    @param prefix: the dotted path of C{table}, with its trailing dot.
    @raise Invalid: for an unknown key.
    """
    for name in table:
        if name not in known:
            suggestion = did_you_mean(name, list(known)) or f" (valid keys: {', '.join(known)})"
            raise Invalid(prefix + name, f"unknown key{suggestion}")


def build(cls, table, key, **inherited):
    """
    Read one TOML table into C{cls}, driven by its attributes' metadata.

    @param inherited: defaults that come from elsewhere in the file, used
        when C{table} does not set them.
    """
    if not isinstance(table, dict):
        raise Invalid(key, f"expected a table, got {describe(table)}")
    fields = {f.name: f for f in attr.fields(cls)}
    refuse_unknown(table, fields, key + ".")
    values = dict(inherited)
    for name, field in fields.items():
        here = f"{key}.{name}"
        if name in table:
            if _TABLE in field.metadata:
                values[name] = build(field.metadata[_TABLE], table[name], here)
                continue
            try:
                values[name] = field.metadata[_PARSE](table[name])
            except ValueError as e:
                raise Invalid(here, str(e)) from None
        elif field.default is attr.NOTHING:
            raise Invalid(here, "required, but missing")
    return cls(**values)


def build_array(cls, items, key, **inherited):
    """
    Read an array of tables (C{[[key]]}); entries are C{key[0]}, C{key[1]}...
    """
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise Invalid(key, f"expected an array of tables ([[{key}]]), got {describe(items)}")
    return tuple(
        build(cls, item, f"{key}[{index}]", **inherited) for index, item in enumerate(items)
    )
