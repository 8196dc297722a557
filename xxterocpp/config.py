# -*- test-case-name: tests.test_config,tests.test_upstream_config,tests.test_quirks -*-
"""
The configuration file, C{/etc/xxterocpp/xxterocpp.toml}.

L{load_config} turns the file into frozen attrs values or raises
L{ConfigError}, whose text is one line naming the file, the key and what is
wrong, so twistd and journald show the installer exactly what to fix.

Each setting is declared once, on its attrs class, with the parser that checks
it (L{xxterocpp.configschema.setting}); one generic loop
(L{xxterocpp.configschema.build}) reads every table, so a new key is one line
here or, for the C{[[charger]]} tables, in L{xxterocpp.config_charger}
(whose names this module re-exports); the C{[charger.knx]} keys come from
the group objects' declaration, L{xxterocpp.knx.objects}, and the quirk
names from L{xxterocpp.quirks}. Checks that involve several keys or tables
(TLS files, web password, duplicate ids, group address clashes, one
charger's quirk keys) follow the build.
"""

import ipaddress
import json
import tomllib
import warnings
from datetime import date, datetime, time, timezone

import attr
from twisted.internet.endpoints import clientFromString

from xxterocpp import early

# The [[charger]] part; its tables are re-exported: callers import this module.
from xxterocpp.config_charger import (  # noqa: F401
    ChargerConfig,
    ChargerKnxConfig,
    OFFLINE_AUTHORIZATION,
    QuirkSettings,
    UpstreamConfig,
    check_chargers,
    check_upstreams,
    dpt_choice,
    id_tag_length,
    quirk_settings,
    security_profile,
)
from xxterocpp.configschema import (
    Invalid,
    at_least,
    build,
    build_array,
    coerce,
    describe,
    non_empty,
    one_of,
    positive,
    refuse_unknown,
    scalar,
    setting,
    within,
    without,
)
from xxterocpp.knx import objects
from xxterocpp.knx.address import GroupAddress

TAG_STATUSES = ("Accepted", "Blocked", "Expired")


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


# The parsers of this file's own values (the generic ones are in configschema).


def _knxd_endpoint(value):
    if value == "":
        return
    try:
        # Only the description is checked: KnxdLink builds the endpoint again
        # on the service's reactor. An endpoint uses its reactor in connect()
        # alone, so None will do here ("tls:" warns that None resolves no names).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            clientFromString(None, value)
    except Exception as e:  # ValueError, TypeError, KeyError...: whatever the parser raised
        raise ValueError(
            f"bad knxd endpoint {value!r} ({e}); use a Twisted client endpoint "
            f"like 'unix:/run/knx' or 'tcp:host=192.168.1.10:port=6720', or \"\" for no KNX bridge"
        ) from None


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
        raise ValueError(f"expected a date-time like 2030-01-01T00:00:00Z, got {describe(value)}")
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _parent(value):
    value = coerce(str, value)
    id_tag_length(value)
    return value or None


_PORT = scalar(int, within(0, 65535))  # 0: any free port (tests)
_INTERFACE = scalar(str, non_empty)


def is_loopback(interface):
    """
    @param interface: a configured C{interface} (an address or C{localhost}).
    @return: whether only this machine can reach what listens on it.
    """
    if interface.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(interface.strip()).is_loopback
    except ValueError:
        return False


@attr.s(frozen=True, slots=True, auto_attribs=True)
class OcppConfig:
    """
    C{[ocpp]}: the OCPP-J WebSocket server.

    @ivar reservation_expiry: seconds each ReserveNow holds at the charger;
        a reservation held until freed is renewed before that.
    @ivar signing_certificate: the charger-signing CA (PEM) with which
        chargers' certificate signing requests are signed
        (L{xxterocpp.signing}); with C{signing_key}, its private key.
    @ivar organization: the O a charger's CSR must have, C{""} for any.
    @ivar root_certificate: the controller's root CA certificate (PEM),
        what InstallCertificate gives a charger.
    """

    interface: str = setting(early.DEFAULT_INTERFACE, _INTERFACE)
    port: int = setting(early.DEFAULT_PORT, _PORT)
    secure: bool = setting(False, scalar(bool))
    certificate: str = setting("/etc/xxterocpp/tls/server.pem", scalar(str))
    private_key: str = setting("/etc/xxterocpp/tls/server.key", scalar(str))
    client_ca: str = setting("", scalar(str))
    signing_certificate: str = setting("/etc/xxterocpp/tls/signing-ca.pem", scalar(str))
    signing_key: str = setting("/etc/xxterocpp/tls/signing-ca.key", scalar(str))
    organization: str = setting("", scalar(str))
    root_certificate: str = setting("/etc/xxterocpp/tls/ca.pem", scalar(str))
    max_chargers: int = setting(2, scalar(int, at_least(1)))
    heartbeat_interval: int = setting(300, scalar(int, at_least(1)))
    call_timeout: float = setting(30.0, scalar(float, positive))
    ping_interval: int = setting(60, scalar(int, at_least(0)))
    reservation_expiry: int = setting(3600, scalar(int, at_least(1)))

    def is_loopback(self):
        """
        @return: whether only this machine's chargers can connect.
        """
        return is_loopback(self.interface)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class KnxConfig:
    """
    C{[knx]}: the knxd link and the default datapoint types.

    @ivar knxd: a Twisted client endpoint description, or C{""} for no KNX
        bridge.
    @ivar offline_after: seconds a charger may be disconnected before its
        connectors count as Unavailable (on the bus, the page and the API).
    """

    knxd: str = setting("unix:/run/knx", scalar(str, _knxd_endpoint))
    time_dpt: str = dpt_choice(objects.TIME_DPT)
    current_dpt: str = dpt_choice(objects.CURRENT_DPT)
    offline_after: float = setting(60.0, scalar(float, at_least(0)))


@attr.s(frozen=True, slots=True, auto_attribs=True)
class WebConfig:
    """
    C{[web]}: the status page and HTTP API, behind HTTP Basic auth unless
    bound to loopback.
    """

    interface: str = setting("127.0.0.1", _INTERFACE)
    port: int = setting(8080, _PORT)
    username: str = setting("admin", scalar(str, without(":", "an HTTP Basic user id cannot")))
    password: str = setting("", scalar(str))

    def is_loopback(self):
        """
        @return: whether only this machine can reach the web interface.
        """
        return is_loopback(self.interface)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class StorageConfig:
    """
    C{[storage]}: where the state (transactions, registrations) is kept.
    """

    database: str = setting("/var/lib/xxterocpp/state.sqlite3", scalar(str, non_empty))


def _time_of_day(value):
    value = coerce(str, value)
    hours, colon, minutes = value.strip().partition(":")
    if not (colon and hours.isdigit() and len(minutes) == 2 and minutes.isdigit()
            and int(hours) < 24 and int(minutes) < 60):
        raise ValueError(f"bad time of day {value!r} (expected local time like '07:00')")
    return time(int(hours), int(minutes))


def _tariff(value):
    example = '[{ from = "23:00", price = 0.18 }]'
    if not isinstance(value, list) or not value:
        raise ValueError(f"expected a non-empty array like {example}, got {describe(value)}")
    entries = []
    for index, item in enumerate(value):
        if not isinstance(item, dict) or set(item) != {"from", "price"}:
            raise ValueError(f"item {index}: expected a table like {example[1:-1]}")
        try:
            entries.append((_time_of_day(item["from"]), scalar(float)(item["price"])))
        except ValueError as e:
            raise ValueError(f"item {index}: {e}") from None
    return tuple(entries)


def _optional_group_address(value):
    return GroupAddress.parse(value) if coerce(str, value).strip() else None


@attr.s(frozen=True, slots=True, auto_attribs=True)
class SmartConfig:
    """
    C{[smart]}: the Smart Energy Manager.

    @ivar departure: default local time the car must be ready.
    @ivar tariff: C{(time, price per kWh)} pairs by local time of day, later
        entries win (L{xxterocpp.smart.planner.Tariff}).
    @ivar prices_ga: group address of a dynamic price (DPT 14.x), or L{None}.
    @ivar surplus_ga: group address of the PV surplus in W (DPT 14.056,
        positive = exporting), or L{None}.
    @ivar site_limit: A per phase for all chargers together; 0 = none.
    """

    departure: time = setting(time(7, 0), _time_of_day)
    energy_wh: float = setting(20000.0, scalar(float, positive))
    tariff: tuple = setting(
        ((time(0, 0), 0.30), (time(23, 0), 0.18), (time(7, 0), 0.30)), _tariff)
    prices_ga: GroupAddress | None = setting(None, _optional_group_address)
    surplus_ga: GroupAddress | None = setting(None, _optional_group_address)
    site_limit: float = setting(0.0, scalar(float, at_least(0)))


@attr.s(frozen=True, slots=True, auto_attribs=True)
class TagConfig:
    """
    C{[[tag]]}: one RFID tag of the registry.

    @ivar expiry: aware UTC; past it the tag answers Expired.
    @ivar parent: the parentIdTag, or L{None}.
    """

    id: str = setting(parse=scalar(str, non_empty, id_tag_length))
    status: str = setting("Accepted", scalar(str, one_of(*TAG_STATUSES)))
    expiry: datetime | None = setting(None, _expiry)
    parent: str | None = setting(None, _parent)


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
    # Each id's tables by connector, in file order of the ids: the lookups
    # below run per connection and per charger at start (a scan of the
    # tuple each made a start with 1,000 chargers quadratic).
    _points: dict = attr.ib(init=False, repr=False, eq=False)

    def __attrs_post_init__(self):
        points = {}
        for c in self.chargers:
            points.setdefault(c.id, []).append(c)
        object.__setattr__(self, "_points", {
            charger_id: tuple(sorted(tables, key=lambda c: c.connector))
            for charger_id, tables in points.items()})

    def charger_ids(self):
        """
        @return: the distinct charger ids, in file order.
        """
        return tuple(self._points)

    def charging_points(self, charger_id):
        """
        @return: the L{ChargerConfig}s of C{charger_id}, by connector.
        """
        return self._points.get(charger_id, ())

    def upstream(self, charger_id):
        """
        @return: the L{UpstreamConfig} of C{charger_id}'s back office, or
            L{None} when it has none.
        """
        for c in self._points.get(charger_id, ()):
            if c.upstream.url:
                return c.upstream
        return None

    def charger(self, charger_id, connector):
        """
        @return: the L{ChargerConfig} of that charging point, or L{None}.
        """
        for c in self._points.get(charger_id, ()):
            if c.connector == connector:
                return c
        return None

    def security_profile(self, charger_id):
        """
        @return: the security profile (0..3) C{charger_id} is configured
            for: its C{security_profile}, by default 3 when C{[ocpp]
            client_ca} is set (on a secure port: it is not read otherwise),
            else 2 on a secure port with a password, 1 with a password, 0
            without (docs/ocpp.md#security-profiles).
        """
        points = self.charging_points(charger_id)
        return security_profile(points, self.ocpp) if points else 0

    def quirk_settings(self, charger_id):
        """
        @return: the L{QuirkSettings} of C{charger_id}: what any of its
            tables says (they were checked to agree); empty for an unknown
            id.
        """
        return quirk_settings(self._points.get(charger_id, ()))


# Reading tables.

_SECTIONS = {"ocpp": OcppConfig, "knx": KnxConfig, "web": WebConfig, "storage": StorageConfig,
             "smart": SmartConfig}
_ARRAYS = {"tag": TagConfig, "charger": ChargerConfig}


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
            raise Invalid(
                f"ocpp.{name}",
                f"missing {what} {filename!r} ({e.strerror}); ocpp.secure = true needs it",
            ) from None


def _check_web_access(web):
    if web.is_loopback():
        return
    for name in ("username", "password"):
        if not getattr(web, name):
            raise Invalid(
                f"web.{name}",
                f"empty, but web.interface {web.interface!r} is reachable from the network; "
                f"set web.{name} or bind web.interface to 127.0.0.1",
            )


def _check_tags(tags):
    seen = {}
    for index, tag in enumerate(tags):
        first = seen.setdefault(tag.id.casefold(), index)
        if first != index:
            raise Invalid(
                f"tag[{index}].id",
                f"duplicate tag {tag.id!r}, also tag[{first}].id (idTags are case-insensitive)",
            )


def _check_smart(smart, chargers):
    """
    C{[smart]}'s group addresses are bus inputs of their own: a write to a
    charger's receive object there would also be a price or a surplus (and
    the other way round), and one address cannot be both price and surplus.
    """
    if smart.prices_ga is not None and smart.prices_ga == smart.surplus_ga:
        raise Invalid("smart.surplus_ga",
                       f"group address {smart.surplus_ga} is also smart.prices_ga")
    for name in ("prices_ga", "surplus_ga"):
        address = getattr(smart, name)
        if address is None:
            continue
        for index, charger in enumerate(chargers):
            for receive in objects.RECEIVES:
                if getattr(charger.knx, receive) == address:
                    raise Invalid(
                        f"smart.{name}",
                        f"group address {address} is also charger[{index}].knx.{receive}; "
                        f"a bus write to it would act on the charging point too",
                    )


def _read(document, path):
    """
    The L{Config} of a decoded TOML document.
    """
    refuse_unknown(document, {**_SECTIONS, **_ARRAYS}, "")
    sections = {name: build(cls, document.get(name, {}), name) for name, cls in _SECTIONS.items()}
    knx = sections["knx"]
    tags = build_array(TagConfig, document.get("tag", []), "tag")
    chargers = build_array(
        ChargerConfig,
        document.get("charger", []),
        "charger",
        time_dpt=knx.time_dpt,
        current_dpt=knx.current_dpt,
    )
    _check_tls_files(sections["ocpp"])
    _check_web_access(sections["web"])
    _check_tags(tags)
    check_chargers(chargers, sections["ocpp"])
    _check_smart(sections["smart"], chargers)
    check_upstreams(chargers)
    return Config(tags=tags, chargers=chargers, path=path, **sections)


def toml_string(text):
    """
    @return: C{text} as a TOML basic string, quoted and escaped, for lines
        to paste into the configuration.
    """
    # JSON's escapes are TOML's too; TOML also wants DEL escaped.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


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
    except Invalid as e:
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
