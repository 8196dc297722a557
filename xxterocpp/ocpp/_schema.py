# -*- test-case-name: tests.test_messages -*-
"""
The field machinery behind L{xxterocpp.ocpp.messages}.

A message class is a frozen, slotted class whose attributes are declared
with the helpers below (L{integer}, L{string}, L{enum}, ...). Each helper
returns a L{_Declared} naming its L{_Field}; L{message} builds the class and
precomputes, once, the table that L{decode} and L{encode} walk for every
message on the wire.

Two construction paths exist on purpose:

  - calling the class (C{BootNotificationResponse(status=...)}) checks every
    value as strictly as the JSON schema, so the messages this central
    system sends are checked before they leave;

  - L{decode} fills a bare instance directly, because what a charger sends is
    judged by the more forgiving rules of the CALLERROR mapping: over-long
    CiStrings and zone-less timestamps are only warnings, and lenient decoding
    leaves C{None} in required fields.

The module stays whole although it is long: it is the table of field kinds
(one small L{_Field} class per JSON-schema type: integer, decimal, string,
boolean, enum, date-time, object, array) together with the compiler
(L{_compile}) that walks them for every message. The kinds and the compiler
share a private protocol; in separate modules it would become an interface
between them that nothing else uses: L{messages} is its only client in
the service.
"""

import datetime
import math
import re

import attr

# CALLERROR codes, OCPP-J 1.6 section 4.2.3 table 7.  Two are misspelled in
# 1.6 and the misspellings are normative (the OCPP-J errata lists them as
# "will not be fixed"), so these are the strings we send.
NOT_IMPLEMENTED = "NotImplemented"
NOT_SUPPORTED = "NotSupported"
INTERNAL_ERROR = "InternalError"
PROTOCOL_ERROR = "ProtocolError"
SECURITY_ERROR = "SecurityError"
FORMATION_VIOLATION = "FormationViolation"
PROPERTY_CONSTRAINT_VIOLATION = "PropertyConstraintViolation"
OCCURENCE_CONSTRAINT_VIOLATION = "OccurenceConstraintViolation"
TYPE_CONSTRAINT_VIOLATION = "TypeConstraintViolation"
GENERIC_ERROR = "GenericError"

ERROR_CODES = (
    NOT_IMPLEMENTED,
    NOT_SUPPORTED,
    INTERNAL_ERROR,
    PROTOCOL_ERROR,
    SECURITY_ERROR,
    FORMATION_VIOLATION,
    PROPERTY_CONSTRAINT_VIOLATION,
    OCCURENCE_CONSTRAINT_VIOLATION,
    TYPE_CONSTRAINT_VIOLATION,
    GENERIC_ERROR,
)

# OCPP 2.0.1 fixed the spelling; real firmware and the ocpp library send the
# 2.0.1 names even when speaking 1.6.
_ERROR_CODE_ALIASES = {
    "FormatViolation": FORMATION_VIOLATION,
    "OccurrenceConstraintViolation": OCCURENCE_CONSTRAINT_VIOLATION,
}


def normalize_error_code(code):
    """
    Map a CALLERROR code received from a charger to its OCPP 1.6 spelling.

    @param code: the C{errorCode} of a received CALLERROR.
    @type code: L{str}

    @return: the 1.6 spelling for the 2.0.1 names C{FormatViolation} and
        C{OccurrenceConstraintViolation}; any other code unchanged (an
        unknown code is the caller's to judge, it is not invented away).
    @rtype: L{str}
    """
    return _ERROR_CODE_ALIASES.get(code, code)


class ValidationError(Exception):
    """
    A payload does not conform to its message schema.

    @ivar code: the CALLERROR code the problem maps to (one of
        L{ERROR_CODES}).
    @type code: L{str}

    @ivar message: a sentence for people that names the JSON field path,
        e.g. C{"meterValue[0].sampledValue[1].unit: 'Foo' is not one of ..."}.
    @type message: L{str}
    """

    def __init__(self, code, message):
        Exception.__init__(self, code, message)
        self.code = code
        self.message = message

    def __str__(self):
        return f"{self.code}: {self.message}"


_MISSING = object()
_UTC = datetime.timezone.utc
_from_iso = datetime.datetime.fromisoformat
_set = object.__setattr__


def _camel_case(name):
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _show(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _property_name(key):
    # The name of an unknown property is the charger's text, in the log and
    # in our CALLERROR: as is when short printable ASCII, quoted and cut
    # short otherwise (a lone surrogate could not even be sent).
    return key if len(key) <= 60 and key.isascii() and key.isprintable() else _show(key)


def _json_type(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


#: The range of every integer on the wire. OCPP 1.6 sets none, but the
#: database keeps integers as signed 64-bit values (SQLite's INTEGER): a
#: larger one, once answered, could not be stored. Outside it a value is
#: refused as of the wrong type, like a string where a number belongs.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

#: A UTF-16 surrogate code point: JSON's C{\ud800} escapes decode to one
#: when it is not half of a pair, and such a string cannot be encoded as
#: UTF-8 (the status page, the log, the database would fail on it).
_SURROGATE = re.compile("[\ud800-\udfff]")


def has_lone_surrogate(text):
    """
    @return: whether the decoded JSON string C{text} holds a lone surrogate,
        which is not Unicode text (a pair escaped in JSON decodes to the one
        character it stands for).
    """
    return not text.isascii() and _SURROGATE.search(text) is not None


def _outside_int64(path, value):
    return ValidationError(
        TYPE_CONSTRAINT_VIOLATION,
        f"{path}: {_show(value)} is outside the signed 64-bit integer range",
    )


def _wrong_type(path, value, expected):
    return ValidationError(
        TYPE_CONSTRAINT_VIOLATION,
        f"{path}: expected {expected}, got {_json_type(value)} {_show(value)}",
    )


class _Field:
    """
    How one value is checked, decoded and encoded.

    Subclasses implement L{decode} (JSON value to Python, raising
    L{ValidationError}), L{encode} (Python to JSON) and L{check} (the
    check of values set from Python, raising L{TypeError} or
    L{ValueError}).
    """

    #: Encoding is the identity for JSON-native values; L{encode} skips the
    #: call when this is false.
    converts = False

    def decode(self, raw, path, lenient, warnings):
        raise NotImplementedError()

    def encode(self, value):
        return value

    def check(self, value):
        raise NotImplementedError()


class _Integer(_Field):
    def __init__(self, minimum, maximum):
        self.minimum = minimum
        self.maximum = maximum

    def _range(self, value):
        if self.minimum is not None and value < self.minimum:
            return f"{value} is less than the minimum {self.minimum}"
        if self.maximum is not None and value > self.maximum:
            return f"{value} is greater than the maximum {self.maximum}"
        return None

    def decode(self, raw, path, lenient, warnings):
        if type(raw) is not int:
            # JSON has one number type; 16.0 is an integer in JSON schema.
            if type(raw) is float and raw.is_integer():
                raw = int(raw)
            else:
                raise _wrong_type(path, raw, "an integer")
        if not INT64_MIN <= raw <= INT64_MAX:
            raise _outside_int64(path, raw)
        problem = self._range(raw)
        if problem is not None:
            raise ValidationError(PROPERTY_CONSTRAINT_VIOLATION, f"{path}: {problem}")
        return raw

    def check(self, value):
        if type(value) is not int:
            raise TypeError(f"expected an int, got {_show(value)}")
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(f"{_show(value)} is outside the signed 64-bit integer range")
        problem = self._range(value)
        if problem is not None:
            raise ValueError(problem)


class _Decimal(_Field):
    """
    A JSON number with C{multipleOf: 0.1} (charging limits): at most one
    decimal, held as L{float}.
    """

    converts = True

    def __init__(self, minimum):
        self.minimum = minimum

    def _problem(self, value):
        if not math.isfinite(value):
            # Python's json module parses NaN and Infinity.
            return f"{value!r} is not a finite number"
        tenths = value * 10
        # Binary floats: 21.4 * 10 is 213.99999999999997, still one decimal.
        if abs(tenths - round(tenths)) > 1e-6:
            return f"{value!r} has more than one decimal (multipleOf 0.1)"
        if self.minimum is not None and value < self.minimum:
            return f"{value!r} is less than the minimum {self.minimum}"
        return None

    def decode(self, raw, path, lenient, warnings):
        kind = type(raw)
        if kind is not float and kind is not int:
            raise _wrong_type(path, raw, "a number")
        if kind is int and not INT64_MIN <= raw <= INT64_MAX:
            # Not even a float: float(10**400) overflows.
            raise _outside_int64(path, raw)
        problem = self._problem(raw)
        if problem is not None:
            raise ValidationError(PROPERTY_CONSTRAINT_VIOLATION, f"{path}: {problem}")
        return float(raw)

    def encode(self, value):
        # Strip binary noise (16.299999999999997) so the peer's multipleOf
        # check passes.
        return round(value, 1)

    def check(self, value):
        if type(value) is not float:
            raise TypeError(f"expected a float, got {_show(value)}")
        problem = self._problem(value)
        if problem is not None:
            raise ValueError(problem)


def _to_float(value):
    return float(value) if type(value) is int else value


#: An over-long string a charger sent is kept up to this many times its
#: maximum and cut there: a typo'd serial number survives, a 60,000-character
#: info text does not sit in memory, the database and every status page.
KEPT_LENGTH_FACTOR = 4

#: The end of a string cut short; never part of a real value, so a cut idTag
#: cannot equal a configured one.
CUT_MARK = "\u2026"


class _String(_Field):
    def __init__(self, max_length):
        self.max_length = max_length

    def decode(self, raw, path, lenient, warnings):
        if type(raw) is not str:
            raise _wrong_type(path, raw, "a string")
        if has_lone_surrogate(raw):
            raise ValidationError(
                TYPE_CONSTRAINT_VIOLATION,
                f"{path}: {_show(raw)} holds a lone surrogate, not Unicode text",
            )
        if self.max_length is not None and len(raw) > self.max_length:
            # Real chargers send over-long idTags, info texts and serial
            # numbers; refusing them would lose transactions, so the value is
            # kept, up to a bound.
            kept = KEPT_LENGTH_FACTOR * self.max_length
            warnings.append(
                f"{path}: {len(raw)} characters, longer than the maximum "
                f"{self.max_length}; " + (f"cut to {kept}" if len(raw) > kept else "kept as sent")
            )
            if len(raw) > kept:
                return raw[:kept] + CUT_MARK
        return raw

    def check(self, value):
        if type(value) is not str:
            raise TypeError(f"expected a str, got {_show(value)}")
        if self.max_length is not None and len(value) > self.max_length:
            raise ValueError(
                f"{len(value)} characters, longer than the maximum {self.max_length}"
            )


class _Boolean(_Field):
    def decode(self, raw, path, lenient, warnings):
        if type(raw) is not bool:
            raise _wrong_type(path, raw, "a boolean")
        return raw

    def check(self, value):
        if type(value) is not bool:
            raise TypeError(f"expected a bool, got {_show(value)}")


class _Enum(_Field):
    def __init__(self, values):
        self.values = tuple(values)
        self._allowed = frozenset(self.values)

    def _problem(self, value):
        return f"{_show(value)} is not one of {', '.join(self.values)}"

    def decode(self, raw, path, lenient, warnings):
        if type(raw) is not str:
            raise _wrong_type(path, raw, "a string")
        if raw in self._allowed:
            return raw
        raise ValidationError(
            PROPERTY_CONSTRAINT_VIOLATION, f"{path}: {self._problem(raw)}"
        )

    def check(self, value):
        if type(value) is not str:
            raise TypeError(f"expected a str, got {_show(value)}")
        if value not in self._allowed:
            raise ValueError(self._problem(value))


# RFC 3339 date-time, plus what OCPP 1.6 section 3.14 asks receivers to
# handle: any number of fractional digits, offsets, and (Growatt and others)
# no zone at all.
_DATE_TIME = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:[.,](\d+))?"
    r"(?:([Zz])|([+-])(\d\d):?(\d\d))?\Z"
)


class _DateTime(_Field):
    converts = True

    def decode(self, raw, path, lenient, warnings):
        if type(raw) is not str:
            raise _wrong_type(path, raw, "a date-time string")
        size = len(raw)
        if ((size == 20 or 21 < size < 28 and raw[19] == ".") and raw[-1] == "Z"
                and raw[10] == "T" and raw[4] == raw[7] == "-" and raw[13] == raw[16] == ":"):
            # What nearly every charger sends (UTC, "Z"): the C parser, a
            # tenth of the regular expression's cost on every MeterValues.
            # Anything it refuses gets the full treatment below.
            try:
                return _from_iso(raw)
            except ValueError:
                pass
        match = _DATE_TIME.match(raw)
        if match is None:
            raise ValidationError(
                PROPERTY_CONSTRAINT_VIOLATION,
                f"{path}: {_show(raw)} is not an ISO 8601 date-time",
            )
        year, month, day, hour, minute, second, fraction, zulu, sign, zh, zm = (
            match.groups()
        )
        micro = int((fraction + "00000")[:6]) if fraction else 0
        try:
            value = datetime.datetime(
                int(year), int(month), int(day), int(hour), int(minute),
                int(second), micro, _UTC,
            )
        except ValueError as e:
            raise ValidationError(
                PROPERTY_CONSTRAINT_VIOLATION, f"{path}: {_show(raw)}: {e}"
            ) from None
        if sign is not None:
            offset = datetime.timedelta(hours=int(zh), minutes=int(zm))
            value = value - offset if sign == "+" else value + offset
        elif zulu is None:
            warnings.append(f"{path}: {_show(raw)} has no time zone; assumed UTC")
        return value

    def encode(self, value):
        value = value.astimezone(_UTC)
        milliseconds = value.microsecond // 1000
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{milliseconds:03d}Z"

    def check(self, value):
        if not isinstance(value, datetime.datetime):
            raise TypeError(f"expected a datetime, got {_show(value)}")
        if value.utcoffset() is None:
            # A naive time on the wire is exactly the charger bug we warn
            # about; never produce one ourselves.
            raise ValueError(f"{value!r} has no time zone")


class _Object(_Field):
    converts = True

    def __init__(self, cls):
        self.cls = cls

    def decode(self, raw, path, lenient, warnings):
        if type(raw) is not dict:
            raise _wrong_type(path, raw, "an object")
        return self.cls._ocpp_schema.decode(raw, path + ".", lenient, warnings)

    def encode(self, value):
        return value._ocpp_schema.encode(value)

    def check(self, value):
        if not isinstance(value, self.cls):
            raise TypeError(f"expected a {self.cls.__name__}, got {_show(value)}")


class _Array(_Field):
    converts = True

    def __init__(self, item, min_items):
        self.item = item
        self.min_items = min_items

    def decode(self, raw, path, lenient, warnings):
        if type(raw) is not list:
            raise _wrong_type(path, raw, "an array")
        item = self.item
        items = []
        if type(item) is _Object:
            # Objects (sampled values, schedule periods): their decoder at
            # once, _Object.decode's type check inline.
            schema = item.cls._ocpp_schema
            for index, element in enumerate(raw):
                try:
                    if type(element) is not dict:
                        raise _wrong_type(f"{path}[{index}]", element, "an object")
                    items.append(schema.decode(element, f"{path}[{index}].", lenient, warnings))
                except ValidationError as e:
                    if not lenient:
                        raise
                    warnings.append(f"{e.message}; element dropped")
        else:
            decode = item.decode
            for index, element in enumerate(raw):
                try:
                    items.append(decode(element, f"{path}[{index}]", lenient, warnings))
                except ValidationError as e:
                    if not lenient:
                        raise
                    warnings.append(f"{e.message}; element dropped")
        if len(items) < self.min_items:
            raise ValidationError(
                OCCURENCE_CONSTRAINT_VIOLATION,
                f"{path}: {len(items)} element(s), at least {self.min_items} required",
            )
        return tuple(items)

    def encode(self, value):
        if self.item.converts:
            encode = self.item.encode
            return [encode(item) for item in value]
        return list(value)

    def check(self, value):
        if type(value) is not tuple:
            raise TypeError(f"expected a tuple, got {_show(value)}")
        if len(value) < self.min_items:
            raise ValueError(
                f"{len(value)} element(s), at least {self.min_items} required"
            )
        for index, item in enumerate(value):
            try:
                self.item.check(item)
            except (TypeError, ValueError) as e:
                raise type(e)(f"[{index}]: {e}") from None


def _to_tuple(value):
    return tuple(value) if type(value) is list else value


class _Declared:
    """
    One attribute of a L{message} class as its class body declares it: the
    field kind, whether it is required, its JSON name when that is not the
    camelCase of the attribute name, and the converter applied to a value
    given from Python.
    """

    __slots__ = ("field", "required", "name", "converter")

    def __init__(self, field, required, name, converter):
        self.field = field
        self.required = required
        self.name = name
        self.converter = converter


def _declare(field, required, name, converter=None):
    """
    Declare one attribute: required attributes have no default, optional
    ones default to L{None}.
    """
    return _Declared(field, required, name, converter)


def _validate(name, field, required, value):
    """
    Check a value given from Python, as strictly as the JSON schema.

    @raise TypeError: a required value is L{None}, or of the wrong type.
    @raise ValueError: the value is out of the field's range.
    """
    if value is None:
        if required:
            raise TypeError(f"{name} is required")
        return
    try:
        field.check(value)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{name}: {e}") from None


def integer(*, minimum=None, maximum=None, required=True, name=None):
    """
    Declare a JSON integer (an integral float such as C{16.0} is accepted
    on decoding).

    @param minimum: the smallest allowed value, or L{None}.
    @param maximum: the largest allowed value, or L{None}.
    @param required: whether the property must be present.
    @param name: the JSON property name, when it is not the camelCase of
        the attribute name.
    """
    return _declare(_Integer(minimum, maximum), required, name)


def number(*, decimals=1, minimum=None, required=True, name=None):
    """
    Declare a JSON number with at most C{decimals} decimals (the schemas'
    C{multipleOf: 0.1}); an int is accepted and held as L{float}.

    @param decimals: only C{1} occurs in OCPP 1.6.
    """
    if decimals != 1:
        raise ValueError("OCPP 1.6 only has numbers with multipleOf 0.1")
    return _declare(_Decimal(minimum), required, name, converter=_to_float)


def string(max_length=None, *, required=True, name=None):
    """
    Declare a JSON string, a CiString when C{max_length} is given.

    Exceeding C{max_length} is an error from Python but only a warning when
    decoding what a charger sent.
    """
    return _declare(_String(max_length), required, name)


def boolean(*, required=True, name=None):
    """
    Declare a JSON boolean.
    """
    return _declare(_Boolean(), required, name)


def date_time(*, required=True, name=None):
    """
    Declare an OCPP dateTime, held as a timezone-aware
    L{datetime.datetime} (UTC after decoding).
    """
    return _declare(_DateTime(), required, name)


def enum(values, *, required=True, name=None):
    """
    Declare a string restricted to C{values} (held as plain L{str}).

    @param values: the allowed strings, in schema order.
    @type values: L{tuple} of L{str}
    """
    return _declare(_Enum(values), required, name)


def nested(cls, *, required=True, name=None):
    """
    Declare a JSON object described by the L{message} class C{cls}.
    """
    return _declare(_Object(cls), required, name)


def array(item, *, min_items=0, max_length=None, required=True, name=None):
    """
    Declare a JSON array, held as a L{tuple} (a list given from Python is
    converted) so that messages stay hashable.

    @param item: a L{message} class for arrays of objects, or L{str} for
        arrays of (Ci)Strings.
    @param min_items: the spec's lower cardinality (C{1} for C{1..*}).
    @param max_length: for arrays of strings, the CiString length.
    """
    if item is str:
        element = _String(max_length)
    else:
        element = _Object(item)
    return _declare(_Array(element, min_items), required, name, converter=_to_tuple)


class _ObjectSchema:
    """
    The precomputed field table of one L{message} class.
    """

    def __init__(self, cls, declared):
        """
        @param declared: the class's attributes in declaration order, as
            C{(attribute name, L{_Declared})} pairs.
        """
        self.cls = cls
        self.fields = tuple(
            (attr_name, d.name or _camel_case(attr_name), d.field, d.required)
            for attr_name, d in declared
        )
        self.converters = tuple(d.converter for _, d in declared)
        self.names = tuple(attr_name for attr_name, _, _, _ in self.fields)
        self.json_names = frozenset(json_name for _, json_name, _, _ in self.fields)
        self.encoders = tuple(
            (attr_name, json_name, field.encode if field.converts else None)
            for attr_name, json_name, field, _ in self.fields
        )

    def decode(self, payload, prefix, lenient, warnings):
        # Replaced by the compiled decoder on first use (see _compile).
        self.decode = _compile(self)
        return self.decode(payload, prefix, lenient, warnings)

    def unknown(self, payload, prefix, lenient, warnings):
        for key in payload:
            if key not in self.json_names:
                # Every 1.6 (2019-12) schema object has
                # additionalProperties false, inner objects included.
                message = f"{prefix}{_property_name(key)}: unknown property"
                if not lenient:
                    raise ValidationError(FORMATION_VIOLATION, message)
                warnings.append(f"{message}; ignored")

    def encode(self, instance):
        result = {}
        for attr_name, json_name, encode in self.encoders:
            value = getattr(instance, attr_name)
            if value is not None:
                result[json_name] = value if encode is None else encode(value)
        return result


def _missing(prefix, json_name, lenient, warnings):
    message = f"{prefix}{json_name}: required property missing"
    if not lenient:
        raise ValidationError(PROTOCOL_ERROR, message)
    warnings.append(message)


def _slot_setter(cls, name):
    """
    @return: C{f(instance, value)} setting attribute C{name} of a slotted
        C{cls} instance (frozen or not).
    """
    for klass in cls.__mro__:
        descriptor = klass.__dict__.get(name)
        if descriptor is not None and hasattr(descriptor, "__set__"):
            return descriptor.__set__
    return lambda instance, value: _set(instance, name, value)


def _compile(schema):
    """
    The decoder of one L{_ObjectSchema}, as straight-line code (the hot path
    of every CALL): for each field, in order, what the generic loop did --
    a missing required property is an error (a warning when lenient), a
    field that fails to decode is an error (None and a warning when
    lenient) -- with the common valid values of strings, integers,
    enumerations, booleans and objects accepted inline. Anything else goes
    through the field's own C{decode}, so errors and warnings are the same.
    """
    ns = {"cls": schema.cls, "new": schema.cls.__new__, "MISSING": _MISSING,
          "names": schema.json_names, "unknown": schema.unknown, "missing": _missing,
          "ValidationError": ValidationError}
    lines = ["def decode(payload, prefix, lenient, warnings):",
             "    if not names.issuperset(payload):",
             "        unknown(payload, prefix, lenient, warnings)",
             "    instance = new(cls)",
             "    get = payload.get"]
    for i, (attr_name, json_name, field, required) in enumerate(schema.fields):
        ns[f"f{i}"] = field.decode
        name = repr(json_name)
        lines.append(f"    raw = get({name}, MISSING)")
        lines.append("    if raw is MISSING:")
        lines.append("        value = None")
        if required:
            lines.append(f"        missing(prefix, {name}, lenient, warnings)")
        kind = type(field)
        if kind is _Enum:
            ns[f"a{i}"] = field._allowed
            lines.append(f"    elif type(raw) is str and raw in a{i}:")
            lines.append("        value = raw")
        elif kind is _String:
            # An ASCII string (C{isascii} reads a flag) holds no surrogate;
            # any other takes the full check.
            if field.max_length is None:
                lines.append("    elif type(raw) is str and raw.isascii():")
            else:
                lines.append(f"    elif type(raw) is str and len(raw) <= {int(field.max_length)}"
                             " and raw.isascii():")
            lines.append("        value = raw")
        elif kind is _Integer:
            low = INT64_MIN if field.minimum is None else max(field.minimum, INT64_MIN)
            high = INT64_MAX if field.maximum is None else min(field.maximum, INT64_MAX)
            lines.append(f"    elif type(raw) is int and {int(low)} <= raw <= {int(high)}:")
            lines.append("        value = raw")
        elif kind is _Boolean:
            lines.append("    elif type(raw) is bool:")
            lines.append("        value = raw")
        elif kind is _Object:
            ns[f"o{i}"] = field.cls._ocpp_schema
            lines.append("    elif type(raw) is dict:")
            lines.append("        try:")
            lines.append(f"            value = o{i}.decode(raw, prefix + {json_name + '.'!r}, "
                         "lenient, warnings)")
            lines.append("        except ValidationError as e:")
            lines.append("            if not lenient:")
            lines.append("                raise")
            lines.append('            warnings.append(f"{e.message}; set to None")')
            lines.append("            value = None")
        lines.append("    else:")
        lines.append("        try:")
        lines.append(f"            value = f{i}(raw, prefix + {name}, lenient, warnings)")
        lines.append("        except ValidationError as e:")
        lines.append("            if not lenient:")
        lines.append("                raise")
        lines.append('            warnings.append(f"{e.message}; set to None")')
        lines.append("            value = None")
        # The slot's own setter: object.__setattr__ would look the name up
        # in the class first (the class is frozen, so no plain assignment).
        ns[f"s{i}"] = _slot_setter(schema.cls, attr_name)
        lines.append(f"    s{i}(instance, value)")
    lines.append("    return instance")
    exec(compile("\n".join(lines), f"<decoder of {schema.cls.__name__}>", "exec"), ns)
    return ns["decode"]


def _compile_init(schema):
    """
    The C{__init__} of one L{message} class, as straight-line code:
    keyword-only parameters (the optional ones default to L{None}), each
    value converted and stored, then each checked in declaration order by
    L{_validate}.
    """
    ns = {"_validate": _validate}
    params, stores, checks = [], [], []
    for i, ((attr_name, _, field, required), converter) in enumerate(
            zip(schema.fields, schema.converters)):
        params.append(attr_name if required else f"{attr_name}=None")
        if converter is not None:
            ns[f"_c{i}"] = converter
            stores.append(f"    {attr_name} = _c{i}({attr_name})")
        ns[f"_s{i}"] = _slot_setter(schema.cls, attr_name)
        stores.append(f"    _s{i}(self, {attr_name})")
        ns[f"_f{i}"] = field
        checks.append(f"    _validate({attr_name!r}, _f{i}, {required}, {attr_name})")
    head = f"def __init__(self, *, {', '.join(params)}):" if params else "def __init__(self):"
    lines = [head, *stores, *checks] if params else [head, "    pass"]
    exec(compile("\n".join(lines), f"<__init__ of {schema.cls.__name__}>", "exec"), ns)
    return ns["__init__"]


def _first_init(self, **kwargs):
    # Replaced by the compiled __init__ of the class on its first use: most
    # of the 90 classes are never built from Python in a given run.
    cls = type(self)
    cls.__init__ = init = _compile_init(cls._ocpp_schema)
    init(self, **kwargs)


def _frozen(self, name, value=None):
    raise attr.exceptions.FrozenInstanceError()


def _values(instance):
    return tuple(getattr(instance, name) for name in instance._ocpp_schema.names)


def _repr(self):
    fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._ocpp_schema.names)
    return f"{type(self).__qualname__}({fields})"


def _eq(self, other):
    if type(other) is not type(self):
        return NotImplemented
    return _values(self) == _values(other)


def _hash(self):
    return hash((type(self),) + _values(self))


def _setstate(self, state):
    # copy, deepcopy and pickle restore a message through this, never
    # through __init__: a leniently decoded one may hold what it refuses.
    for name, value in zip(self._ocpp_schema.names, state):
        _set(self, name, value)


def message(cls):
    """
    Class decorator: make C{cls} a frozen, slotted class with keyword-only
    construction whose attributes are declared with the helpers of this
    module, and precompute its decoding table.

    Every annotated attribute must be declared with a helper. Equality
    (field by field, same class only), hash and repr are one implementation
    for every message, and each C{__init__} is compiled on its first use.
    As attrs classes, whose methods are generated for each of the 90
    classes at import, they held 0.9 MiB at rest and took 40 ms of the
    start-up (8 now).
    """
    body = cls.__dict__
    annotations = body.get("__annotations__", {})
    declared = []
    for name in annotations:
        value = body.get(name)
        if not isinstance(value, _Declared):
            raise TypeError(f"{cls.__name__}.{name} is not declared with a field helper")
        declared.append((name, value))
    for name, value in body.items():
        if isinstance(value, _Declared) and name not in annotations:
            raise TypeError(f"{cls.__name__}.{name} has no annotation")
    names = tuple(name for name, _ in declared)
    namespace = {key: value for key, value in body.items()
                 if key not in names and key not in ("__dict__", "__weakref__")}
    namespace.update(__slots__=names + ("__weakref__",), __init__=_first_init,
                     __setattr__=_frozen, __delattr__=_frozen,
                     __repr__=_repr, __eq__=_eq, __hash__=_hash,
                     __getstate__=_values, __setstate__=_setstate)
    built = type(cls)(cls.__name__, cls.__bases__, namespace)
    built.__qualname__ = cls.__qualname__
    built._ocpp_schema = _ObjectSchema(built, declared)
    return built


def is_message(value):
    """
    @return: whether C{value} is a L{message} class or an instance of one.
    """
    cls = value if isinstance(value, type) else type(value)
    return "_ocpp_schema" in cls.__dict__


def field_names(cls):
    """
    @return: the attribute names of the L{message} class C{cls}, in
        declaration order.
    @rtype: L{tuple} of L{str}
    """
    return cls._ocpp_schema.names


def replace(instance, **changes):
    """
    A copy of a message with some attributes changed, built and checked as
    calling the class does.

    @raise TypeError: a name that is not an attribute, or a value the
        attribute does not allow.
    """
    values = dict(zip(instance._ocpp_schema.names, _values(instance)), **changes)
    return type(instance)(**values)


def decode(cls, payload, lenient=False):
    """
    Build a C{cls} instance from a JSON payload sent by a charger.

    @param cls: a L{message} class.
    @param payload: the parsed JSON payload.
    @param lenient: when true, field-level problems do not raise: each
        becomes a warning and the offending field L{None} (an array element
        that is bad as a whole is dropped, unknown properties are ignored).
        For messages that must always be acknowledged (StopTransaction,
        MeterValues).

    @return: C{(instance, warnings)}; the warnings are sentences naming the
        field path (over-long strings, timestamps without zone, and in
        lenient mode every tolerated problem).
    @rtype: L{tuple} of C{cls} and L{list} of L{str}

    @raise ValidationError: with the CALLERROR code of the first problem;
        when C{payload} is not a JSON object, even in lenient mode.
    """
    if type(payload) is not dict:
        raise ValidationError(
            FORMATION_VIOLATION,
            f"payload must be a JSON object, "
            f"got {_json_type(payload)} {_show(payload)}",
        )
    warnings = []
    instance = cls._ocpp_schema.decode(payload, "", lenient, warnings)
    return instance, warnings


def encode(instance):
    """
    Turn a message instance into a JSON-ready dict.

    @return: camelCase keys, L{None} fields omitted, datetimes as
        C{YYYY-MM-DDTHH:MM:SS.sssZ} in UTC, tuples as lists.
    @rtype: L{dict}
    """
    return instance._ocpp_schema.encode(instance)
