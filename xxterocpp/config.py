# -*- test-case-name: tests.test_config -*-
"""
The configuration file, C{/etc/xxterocpp/xxterocpp.toml} (SPEC §2).

L{load_config} turns the file into frozen attrs values or raises
L{ConfigError}, whose text is one line naming the file, the key and what is
wrong, so twistd and journald show the installer exactly what to fix.

Each setting is declared once, on its attrs class, with the parser that checks
it (C{metadata[_PARSE]}); one generic loop (L{_build}) reads every table, so a
new key is one line here.  Checks that involve several keys or tables (TLS
files, web password, duplicate ids, group address clashes) follow the build.
"""

import difflib
import ipaddress
import math
import tomllib
from datetime import date, datetime, time, timezone

import attr
from twisted.internet.endpoints import clientFromString
from twisted.internet.testing import MemoryReactor

from xxterocpp.knx.address import GroupAddress

_PARSE = "xxterocpp.config.parse"
_TABLE = "xxterocpp.config.table"
_RECEIVE = "xxterocpp.config.receive"

TIME_DPTS = ("10.001", "19.001")
CURRENT_DPTS = ("14.019", "9.021")
TAG_STATUSES = ("Accepted", "Blocked", "Expired")

_ID_TAG_LENGTH = 20  # OCPP 1.6 IdToken is a CiString20Type


class ConfigError(Exception):
    """
    The configuration cannot be used.

    C{str(error)} is one line: C{"<file>: <key>: <problem>"}, or
    C{"<file>: <problem>"} when the file as a whole is bad (unreadable, not
    TOML).

    @ivar path: the configuration file.
    @ivar key: the dotted key path (C{"charger[0].knx.status"}), or L{None}.
    @ivar problem: what is wrong, for a person.
    """

    def __init__(self, path, key, problem):
        super().__init__(path, key, problem)
        self.path = path
        self.key = key
        self.problem = problem

    def __str__(self):
        parts = [self.path, self.key, self.problem]
        return ": ".join(" ".join(str(p).splitlines()) for p in parts if p is not None)


class _Invalid(Exception):
    """
    A problem at a key, before the file name is known to be attached.
    """

    def __init__(self, key, problem):
        super().__init__(key, problem)
        self.key = key
        self.problem = problem


# Values: TOML types and their checks.  A parser takes the TOML value and
# returns the configured one, or raises ValueError with the problem.

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


def _describe(value):
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


def _coerce(kind, value):
    """
    C{value} as the TOML scalar C{kind}; an integer is a fine float, a
    boolean is never an integer.
    """
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"expected {_EXPECTED[kind]}, got {_describe(value)}{_hint(kind, value)}")
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
            _coerce(kind, tomllib.loads(f"v = {value.strip()}")["v"])
        except (tomllib.TOMLDecodeError, ValueError):
            return ""
        return " (remove the quotes)"
    return ""


def _scalar(kind, *checks):
    """
    A parser for a TOML C{kind} value that then passes every check.

    @param checks: callables that raise L{ValueError} for a bad value.
    """

    def parse(value):
        value = _coerce(kind, value)
        for check in checks:
            check(value)
        return value

    return parse


def _within(low, high):
    def check(value):
        if not low <= value <= high:
            raise ValueError(f"must be {low}..{high}, not {value!r}")

    return check


def _at_least(low):
    def check(value):
        if value < low:
            raise ValueError(f"must be at least {low}, not {value!r}")

    return check


def _positive(value):
    if value <= 0:
        raise ValueError(f"must be more than 0, not {value!r}")


def _non_empty(value):
    if not value.strip():
        raise ValueError("must not be empty")


def _did_you_mean(word, choices):
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _one_of(*choices):
    def check(value):
        if value not in choices:
            expected = ", ".join(map(repr, choices))
            suggestion = _did_you_mean(value, choices) if isinstance(value, str) else ""
            raise ValueError(f"must be one of {expected}, not {value!r}{suggestion}")

    return check


def _id_tag_length(value):
    if len(value) > _ID_TAG_LENGTH:
        raise ValueError(
            f"{value!r} is longer than {_ID_TAG_LENGTH} characters "
            f"(an OCPP idTag is at most {_ID_TAG_LENGTH})"
        )


def _without(characters, why):
    def check(value):
        for character in characters:
            if character in value:
                raise ValueError(f"{value!r} must not contain {character!r} ({why})")

    return check


def _at_most_characters(high):
    def check(value):
        if len(value) > high:
            raise ValueError(f"must be at most {high} characters, not {len(value)}")

    return check


def _knxd_endpoint(value):
    if value == "":
        return
    try:
        clientFromString(MemoryReactor(), value)
    except Exception as e:  # ValueError, TypeError, KeyError...: whatever the parser raised
        raise ValueError(
            f"bad knxd endpoint {value!r} ({e}); use a Twisted client endpoint "
            f"like 'unix:/run/knx' or 'tcp:host=192.168.1.10:port=6720', or \"\" for no KNX bridge"
        ) from None


def _allowed_tags(value):
    if not isinstance(value, list):
        raise ValueError(f"expected an array of strings like [\"*\"], got {_describe(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise ValueError(f"item {index}: expected a string, got {_describe(item)}")
        _non_empty(item)
        _id_tag_length(item)
    return tuple(value)


def _expiry(value):
    """
    RFC 3339 date-time, as a TOML date-time or a string, as aware UTC; a
    time without zone is UTC, a bare date is midnight UTC.
    """
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            expected = "expected RFC 3339 like '2030-01-01T00:00:00Z'"
            raise ValueError(f"bad date-time {value!r} ({expected})") from None
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = datetime.combine(value, time())
    if not isinstance(value, datetime):
        raise ValueError(f"expected a date-time like 2030-01-01T00:00:00Z, got {_describe(value)}")
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _parent(value):
    value = _coerce(str, value)
    _id_tag_length(value)
    return value or None


def _setting(default=attr.NOTHING, parse=None, **kwargs):
    """
    An attrs attribute read from the configuration file.

    @param default: its value when the file does not set it; none means the
        key is required.
    @param parse: turns the TOML value into the attribute's value, or raises
        L{ValueError} with the problem.
    """
    return attr.ib(default=default, metadata={_PARSE: parse}, **kwargs)


_TIME_DPT = _scalar(str, _one_of(*TIME_DPTS))
_CURRENT_DPT = _scalar(str, _one_of(*CURRENT_DPTS))
_PORT = _scalar(int, _within(0, 65535))  # 0: any free port (tests)
_INTERFACE = _scalar(str, _non_empty)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class OcppConfig:
    """
    C{[ocpp]}: the OCPP-J WebSocket server.
    """

    interface: str = _setting("0.0.0.0", _INTERFACE)
    port: int = _setting(8016, _PORT)
    secure: bool = _setting(False, _scalar(bool))
    certificate: str = _setting("/etc/xxterocpp/tls/server.pem", _scalar(str))
    private_key: str = _setting("/etc/xxterocpp/tls/server.key", _scalar(str))
    client_ca: str = _setting("", _scalar(str))
    max_chargers: int = _setting(2, _scalar(int, _at_least(1)))
    heartbeat_interval: int = _setting(300, _scalar(int, _at_least(1)))
    call_timeout: float = _setting(30.0, _scalar(float, _positive))
    ping_interval: int = _setting(60, _scalar(int, _at_least(0)))


@attr.s(frozen=True, slots=True, auto_attribs=True)
class KnxConfig:
    """
    C{[knx]}: the knxd link and the default datapoint types.

    @ivar knxd: a Twisted client endpoint description, or C{""} for no KNX
        bridge.
    """

    knxd: str = _setting("unix:/run/knx", _scalar(str, _knxd_endpoint))
    time_dpt: str = _setting("10.001", _TIME_DPT)
    current_dpt: str = _setting("14.019", _CURRENT_DPT)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class WebConfig:
    """
    C{[web]}: the status page and HTTP API, behind HTTP Basic auth unless
    bound to loopback.
    """

    interface: str = _setting("127.0.0.1", _INTERFACE)
    port: int = _setting(8080, _PORT)
    username: str = _setting("admin", _scalar(str, _without(":", "an HTTP Basic user id cannot")))
    password: str = _setting("", _scalar(str))

    def is_loopback(self):
        """
        @return: whether only this machine can reach the web interface.
        """
        if self.interface.strip().lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.interface.strip()).is_loopback
        except ValueError:
            return False


@attr.s(frozen=True, slots=True, auto_attribs=True)
class StorageConfig:
    """
    C{[storage]}: where the state (transactions, registrations) is kept.
    """

    database: str = _setting("/var/lib/xxterocpp/state.sqlite3", _scalar(str, _non_empty))


def _time_of_day(value):
    value = _coerce(str, value)
    hours, colon, minutes = value.strip().partition(":")
    if not (colon and hours.isdigit() and len(minutes) == 2 and minutes.isdigit()
            and int(hours) < 24 and int(minutes) < 60):
        raise ValueError(f"bad time of day {value!r} (expected local time like '07:00')")
    return time(int(hours), int(minutes))


def _tariff(value):
    example = '[{ from = "23:00", price = 0.18 }]'
    if not isinstance(value, list) or not value:
        raise ValueError(f"expected a non-empty array like {example}, got {_describe(value)}")
    entries = []
    for index, item in enumerate(value):
        if not isinstance(item, dict) or set(item) != {"from", "price"}:
            raise ValueError(f"item {index}: expected a table like {example[1:-1]}")
        try:
            entries.append((_time_of_day(item["from"]), _scalar(float)(item["price"])))
        except ValueError as e:
            raise ValueError(f"item {index}: {e}") from None
    return tuple(entries)


def _optional_group_address(value):
    return GroupAddress.parse(value) if _coerce(str, value).strip() else None


@attr.s(frozen=True, slots=True, auto_attribs=True)
class SmartConfig:
    """
    C{[smart]}: the Smart Energy Manager (SPEC §6).

    @ivar departure: default local time the car must be ready.
    @ivar tariff: C{(time, price per kWh)} pairs by local time of day, later
        entries win (L{xxterocpp.smart.planner.Tariff}).
    @ivar prices_ga: group address of a dynamic price (DPT 14.x), or L{None}.
    @ivar surplus_ga: group address of the PV surplus in W (DPT 14.056,
        positive = exporting), or L{None}.
    @ivar site_limit: A per phase for all chargers together; 0 = none.
    """

    departure: time = _setting(time(7, 0), _time_of_day)
    energy_wh: float = _setting(20000.0, _scalar(float, _positive))
    tariff: tuple = _setting(
        ((time(0, 0), 0.30), (time(23, 0), 0.18), (time(7, 0), 0.30)), _tariff)
    prices_ga: GroupAddress | None = _setting(None, _optional_group_address)
    surplus_ga: GroupAddress | None = _setting(None, _optional_group_address)
    site_limit: float = _setting(0.0, _scalar(float, _at_least(0)))


@attr.s(frozen=True, slots=True, auto_attribs=True)
class TagConfig:
    """
    C{[[tag]]}: one RFID tag of the registry.

    @ivar expiry: aware UTC; past it the tag answers Expired.
    @ivar parent: the parentIdTag, or L{None}.
    """

    id: str = _setting(parse=_scalar(str, _non_empty, _id_tag_length))
    status: str = _setting("Accepted", _scalar(str, _one_of(*TAG_STATUSES)))
    expiry: datetime | None = _setting(None, _expiry)
    parent: str | None = _setting(None, _parent)


def _group_object(receive):
    """
    An optional group address; C{receive} objects act on bus writes.
    """
    return attr.ib(default=None, metadata={_PARSE: GroupAddress.parse, _RECEIVE: receive})


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ChargerKnxConfig:
    """
    C{[charger.knx]}: the group addresses of one charging point's group
    objects (manual §3), each L{None} when not linked.

    @cvar OBJECTS: the twelve object names, in SPEC order.
    @cvar RECEIVES: the objects that act on a GroupValueWrite.
    """

    status: GroupAddress | None = _group_object(receive=False)
    error_code: GroupAddress | None = _group_object(receive=False)
    charging: GroupAddress | None = _group_object(receive=True)
    reserve: GroupAddress | None = _group_object(receive=True)
    availability: GroupAddress | None = _group_object(receive=True)
    unlock: GroupAddress | None = _group_object(receive=True)
    energy: GroupAddress | None = _group_object(receive=False)
    start_time: GroupAddress | None = _group_object(receive=False)
    end_time: GroupAddress | None = _group_object(receive=False)
    current: GroupAddress | None = _group_object(receive=False)
    max_current: GroupAddress | None = _group_object(receive=True)
    reset: GroupAddress | None = _group_object(receive=True)


ChargerKnxConfig.OBJECTS = tuple(f.name for f in attr.fields(ChargerKnxConfig))
ChargerKnxConfig.RECEIVES = tuple(
    f.name for f in attr.fields(ChargerKnxConfig) if f.metadata[_RECEIVE]
)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ChargerConfig:
    """
    C{[[charger]]}: one charging point, the pair (charger id, connector).

    @ivar max_current: the charging capacity in A, the hard upper limit
        ("fast" charging).
    @ivar normal_current: the limit for "normal" charging; defaults to
        C{max_current}.
    @ivar time_dpt: C{"10.001"} or C{"19.001"}; in the file it defaults to
        C{[knx] time_dpt}.
    @ivar current_dpt: C{"14.019"} or C{"9.021"}; in the file it defaults to
        C{[knx] current_dpt}.
    """

    id: str = _setting(
        parse=_scalar(
            str,
            _non_empty,
            _without(":", "the id is the charger's HTTP Basic user id"),
            _without("/", "the id is the last segment of the charger's URL"),
            _at_most_characters(255),
        )
    )
    connector: int = _setting(1, _scalar(int, _at_least(1)))
    max_current: float = _setting(parse=_scalar(float, _within(6, 80)), kw_only=True)
    normal_current: float = _setting(
        attr.Factory(lambda self: self.max_current, takes_self=True), _scalar(float, _at_least(6))
    )
    phases: int = _setting(3, _scalar(int, _one_of(1, 3)))
    allowed_tags: tuple[str, ...] = _setting(("*",), _allowed_tags)
    smart_tag: str = _setting("", _scalar(str, _id_tag_length))
    remote_tag: str = _setting("XXTER", _scalar(str, _non_empty, _id_tag_length))
    password: str = _setting("", _scalar(str))
    time_dpt: str = _setting("10.001", _TIME_DPT)
    current_dpt: str = _setting("14.019", _CURRENT_DPT)
    knx: ChargerKnxConfig = attr.ib(factory=ChargerKnxConfig, metadata={_TABLE: ChargerKnxConfig})


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Config:
    """
    The whole configuration file.

    @ivar tags: the RFID tag registry, in file order.
    @ivar chargers: every charging point, in file order; a twin wallbox is two
        entries with the same id.
    @ivar path: the file it was read from.
    """

    ocpp: OcppConfig = attr.ib(factory=OcppConfig)
    knx: KnxConfig = attr.ib(factory=KnxConfig)
    web: WebConfig = attr.ib(factory=WebConfig)
    storage: StorageConfig = attr.ib(factory=StorageConfig)
    smart: SmartConfig = attr.ib(factory=SmartConfig)
    tags: tuple[TagConfig, ...] = ()
    chargers: tuple[ChargerConfig, ...] = ()
    path: str = "<string>"

    def charger_ids(self):
        """
        @return: the distinct charger ids, in file order.
        """
        return tuple(dict.fromkeys(c.id for c in self.chargers))

    def charging_points(self, charger_id):
        """
        @return: the L{ChargerConfig}s of C{charger_id}, by connector.
        """
        points = (c for c in self.chargers if c.id == charger_id)
        return tuple(sorted(points, key=lambda c: c.connector))

    def charger(self, charger_id, connector):
        """
        @return: the L{ChargerConfig} of that charging point, or L{None}.
        """
        for c in self.chargers:
            if (c.id, c.connector) == (charger_id, connector):
                return c
        return None

    def tag(self, id_tag):
        """
        @return: the L{TagConfig} of C{id_tag}, or L{None}; OCPP idTags are
            case-insensitive.
        """
        wanted = id_tag.casefold()
        for t in self.tags:
            if t.id.casefold() == wanted:
                return t
        return None


# Reading tables.

_SECTIONS = {"ocpp": OcppConfig, "knx": KnxConfig, "web": WebConfig, "storage": StorageConfig,
             "smart": SmartConfig}
_ARRAYS = {"tag": TagConfig, "charger": ChargerConfig}


def _refuse_unknown(table, known, prefix):
    for name in table:
        if name not in known:
            suggestion = _did_you_mean(name, list(known)) or f" (valid keys: {', '.join(known)})"
            raise _Invalid(prefix + name, f"unknown key{suggestion}")


def _build(cls, table, key, **inherited):
    """
    Read one TOML table into C{cls}, driven by its attributes' metadata.

    @param inherited: defaults that come from elsewhere in the file, used
        when C{table} does not set them.
    """
    if not isinstance(table, dict):
        raise _Invalid(key, f"expected a table, got {_describe(table)}")
    fields = {f.name: f for f in attr.fields(cls)}
    _refuse_unknown(table, fields, key + ".")
    values = dict(inherited)
    for name, field in fields.items():
        here = f"{key}.{name}"
        if name in table:
            if _TABLE in field.metadata:
                values[name] = _build(field.metadata[_TABLE], table[name], here)
                continue
            try:
                values[name] = field.metadata[_PARSE](table[name])
            except ValueError as e:
                raise _Invalid(here, str(e)) from None
        elif field.default is attr.NOTHING:
            raise _Invalid(here, "required, but missing")
    return cls(**values)


def _build_array(cls, items, key, **inherited):
    """
    Read an array of tables (C{[[key]]}); entries are C{key[0]}, C{key[1]}...
    """
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise _Invalid(key, f"expected an array of tables ([[{key}]]), got {_describe(items)}")
    return tuple(
        _build(cls, item, f"{key}[{index}]", **inherited) for index, item in enumerate(items)
    )


# Checks across keys and tables.


_TLS_FILES = (
    # key, what it holds, whether "" means "not used"
    ("certificate", "certificate", False),
    ("private_key", "private key", False),
    ("client_ca", "client CA bundle", True),
)


def _check_tls_files(ocpp):
    if not ocpp.secure:
        return
    for name, what, optional in _TLS_FILES:
        filename = getattr(ocpp, name)
        if optional and not filename:
            continue
        try:
            with open(filename, "rb"):
                pass
        except OSError as e:
            raise _Invalid(
                f"ocpp.{name}",
                f"missing {what} {filename!r} ({e.strerror}); ocpp.secure = true needs it",
            ) from None


def _check_web_access(web):
    if web.is_loopback():
        return
    for name in ("username", "password"):
        if not getattr(web, name):
            raise _Invalid(
                f"web.{name}",
                f"empty, but web.interface {web.interface!r} is reachable from the network; "
                f"set web.{name} or bind web.interface to 127.0.0.1",
            )


def _check_tags(tags):
    seen = {}
    for index, tag in enumerate(tags):
        first = seen.setdefault(tag.id.casefold(), index)
        if first != index:
            raise _Invalid(
                f"tag[{index}].id",
                f"duplicate tag {tag.id!r}, also tag[{first}].id (idTags are case-insensitive)",
            )


def _check_chargers(chargers, ocpp):
    points = {}
    passwords = {}
    receivers = {}
    for index, charger in enumerate(chargers):
        here = f"charger[{index}]"
        if charger.normal_current > charger.max_current:
            raise _Invalid(
                f"{here}.normal_current",
                f"must be 6..max_current ({charger.max_current:g}), not {charger.normal_current!r}",
            )
        first = points.setdefault((charger.id, charger.connector), index)
        if first != index:
            raise _Invalid(
                f"{here}.connector",
                f"charger {charger.id!r} connector {charger.connector} is configured twice: "
                f"charger[{first}] and {here}",
            )
        first = passwords.setdefault(charger.id, index)
        if chargers[first].password != charger.password:
            # One charger authenticates one connection, with one AuthorizationKey.
            raise _Invalid(
                f"{here}.password",
                f"differs from charger[{first}].password for the same charger {charger.id!r}",
            )
        for name in ChargerKnxConfig.RECEIVES:
            address = getattr(charger.knx, name)
            if address is None:
                continue
            other, other_name = receivers.setdefault(address, (index, name))
            if chargers[other].id != charger.id or chargers[other].connector != charger.connector:
                raise _Invalid(
                    f"{here}.knx.{name}",
                    f"group address {address} is also charger[{other}].knx.{other_name}; "
                    f"a bus write to it would act on two charging points",
                )
    ids = tuple(dict.fromkeys(c.id for c in chargers))
    if len(ids) > ocpp.max_chargers:
        raise _Invalid(
            "ocpp.max_chargers",
            f"{len(ids)} chargers configured ({', '.join(ids)}) "
            f"but ocpp.max_chargers = {ocpp.max_chargers}; contact sales for more",
        )


def _check_smart(smart, chargers):
    """
    C{[smart]}'s group addresses are bus inputs of their own: a write to a
    charger's receive object there would also be a price or a surplus (and
    the other way round), and one address cannot be both price and surplus.
    """
    if smart.prices_ga is not None and smart.prices_ga == smart.surplus_ga:
        raise _Invalid("smart.surplus_ga",
                       f"group address {smart.surplus_ga} is also smart.prices_ga")
    for name in ("prices_ga", "surplus_ga"):
        address = getattr(smart, name)
        if address is None:
            continue
        for index, charger in enumerate(chargers):
            for receive in ChargerKnxConfig.RECEIVES:
                if getattr(charger.knx, receive) == address:
                    raise _Invalid(
                        f"smart.{name}",
                        f"group address {address} is also charger[{index}].knx.{receive}; "
                        f"a bus write to it would act on the charging point too",
                    )


def _read(document, path):
    """
    The L{Config} of a decoded TOML document.
    """
    _refuse_unknown(document, {**_SECTIONS, **_ARRAYS}, "")
    sections = {name: _build(cls, document.get(name, {}), name) for name, cls in _SECTIONS.items()}
    knx = sections["knx"]
    tags = _build_array(TagConfig, document.get("tag", []), "tag")
    chargers = _build_array(
        ChargerConfig,
        document.get("charger", []),
        "charger",
        time_dpt=knx.time_dpt,
        current_dpt=knx.current_dpt,
    )
    _check_tls_files(sections["ocpp"])
    _check_web_access(sections["web"])
    _check_tags(tags)
    _check_chargers(chargers, sections["ocpp"])
    _check_smart(sections["smart"], chargers)
    return Config(tags=tags, chargers=chargers, path=path, **sections)


def parse_config(text, path="<string>"):
    """
    Parse the text of a configuration file.

    @param path: the file name shown in errors and kept in L{Config.path}.
    @rtype: L{Config}
    @raise ConfigError: on the first problem found.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, None, f"not valid TOML: {e}") from None
    try:
        return _read(document, path)
    except _Invalid as e:
        raise ConfigError(path, e.key, e.problem) from None


def load_config(path):
    """
    Read and parse the configuration file at C{path}.

    @rtype: L{Config}
    @raise ConfigError: when the file cannot be read or used.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        problem = f"cannot read the configuration file ({e.strerror})"
        raise ConfigError(path, None, problem) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ConfigError(path, None, f"not UTF-8 text (line {line}); save it as UTF-8") from None
    return parse_config(text, path)
