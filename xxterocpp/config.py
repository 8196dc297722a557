# -*- test-case-name: tests.test_config -*-
"""
The configuration file, C{/etc/xxterocpp/xxterocpp.toml}.

L{load_config} turns the file into frozen attrs values or raises
L{ConfigError}, whose text is one line naming the file, the key and what is
wrong, so twistd and journald show the installer exactly what to fix.

Each setting is declared once, on its attrs class, with the parser that checks
it (L{xxterocpp.configschema.setting}); one generic loop
(L{xxterocpp.configschema.build}) reads every table, so a new key is one line
here; the C{[charger.knx]} keys come from the group objects' declaration,
L{xxterocpp.knx.objects}, and the quirk names from L{xxterocpp.quirks}.
Checks that involve several keys or tables (TLS files, web password,
duplicate ids, group address clashes, one charger's quirk keys) follow the
build.
"""

import ipaddress
import json
import tomllib
import warnings
from datetime import date, datetime, time, timezone

import attr
from twisted.internet.endpoints import clientFromString

from xxterocpp.configschema import (
    Invalid,
    at_least,
    at_most_characters,
    build,
    build_array,
    coerce,
    describe,
    did_you_mean,
    non_empty,
    one_of,
    positive,
    refuse_unknown,
    scalar,
    setting,
    subtable,
    within,
    without,
)
from xxterocpp.knx import objects
from xxterocpp.knx.address import GroupAddress
from xxterocpp.quirks import NAMES as QUIRK_NAMES
from xxterocpp.quirks import REGISTRY, STEPS_EXAMPLE, check_steps, resolve as resolve_quirks

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


# The parsers of this file's own values (the generic ones are in configschema).


def _id_tag_length(value):
    if len(value) > _ID_TAG_LENGTH:
        raise ValueError(
            f"{value!r} is longer than {_ID_TAG_LENGTH} characters "
            f"(an OCPP idTag is at most {_ID_TAG_LENGTH})"
        )


def _quirk_names(value):
    """
    An array of workaround names, each one of L{xxterocpp.quirks.NAMES}.
    """
    known = f"known: {', '.join(QUIRK_NAMES)}"
    if not isinstance(value, list):
        raise ValueError(
            f'expected an array of names like ["keepalive"], got {describe(value)}; {known}')
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise ValueError(f"item {index}: expected a string, got {describe(item)}; {known}")
        if item not in QUIRK_NAMES:
            suggestion = did_you_mean(item, QUIRK_NAMES)
            raise ValueError(f"unknown quirk {item!r}{suggestion}; {known}")
    return tuple(dict.fromkeys(value))


def _current_steps(value):
    if not isinstance(value, list):
        raise ValueError(f"expected an array like {STEPS_EXAMPLE}, got {describe(value)}")
    for index, item in enumerate(value):
        try:
            coerce(float, item)  # the TOML-worded type error
        except ValueError as e:
            raise ValueError(f"item {index}: {e}") from None
    return check_steps(value)


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


def _allowed_tags(value):
    if not isinstance(value, list):
        raise ValueError(f"expected an array of strings like [\"*\"], got {describe(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise ValueError(f"item {index}: expected a string, got {describe(item)}")
        non_empty(item)
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
        raise ValueError(f"expected a date-time like 2030-01-01T00:00:00Z, got {describe(value)}")
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _parent(value):
    value = coerce(str, value)
    _id_tag_length(value)
    return value or None


def _dpt_choice(choice):
    """
    The setting of a L{DptChoice}: one of its DPT ids, its default unless set.
    """
    return setting(choice.default, scalar(str, one_of(*choice.allowed)))


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

    interface: str = setting("0.0.0.0", _INTERFACE)
    port: int = setting(8016, _PORT)
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
    time_dpt: str = _dpt_choice(objects.TIME_DPT)
    current_dpt: str = _dpt_choice(objects.CURRENT_DPT)
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

    id: str = setting(parse=scalar(str, non_empty, _id_tag_length))
    status: str = setting("Accepted", scalar(str, one_of(*TAG_STATUSES)))
    expiry: datetime | None = setting(None, _expiry)
    parent: str | None = setting(None, _parent)


# One optional group address per declared object, in declaration order.
ChargerKnxConfig = attr.make_class(
    "ChargerKnxConfig",
    {obj.key: setting(None, GroupAddress.parse) for obj in objects.OBJECTS},
    frozen=True,
    slots=True,
)
ChargerKnxConfig.__doc__ = """
C{[charger.knx]}: the group addresses of one charging point's group objects,
each L{None} when not linked; one attribute per L{xxterocpp.knx.objects.OBJECTS}
key.
"""


# -- [charger.upstream]: the back office a charger is forwarded to -----------
# (one self-contained block: the parsers, the table, the check across entries)

#: What an unknown tag gets while the back office cannot be asked.
OFFLINE_AUTHORIZATION = ("local", "accept", "reject")


def _upstream_url(value):
    if value == "":
        return
    scheme, sep, rest = value.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    if not sep or scheme.lower() not in ("ws", "wss") or not host:
        raise ValueError(
            f"bad back-office URL {value!r}; use ws://host[:port]/path or wss://host[:port]/path"
            f" (the charger's identity is appended), or \"\" for none"
        )
    if "?" in rest or "#" in rest:
        raise ValueError(f"{value!r}: no query or fragment, the identity is appended to the path")


@attr.s(frozen=True, slots=True, auto_attribs=True)
class UpstreamConfig:
    """
    C{[charger.upstream]}: the back office (an upstream central system) a
    charger is forwarded to, with the controller's own credentials there.

    @ivar url: C{ws://} or C{wss://} URL; the identity is appended as the
        last path segment. C{""}: the charger has no back office.
    @ivar identity: the identity at the back office, C{""} for the charger's id.
    @ivar password: the Basic-auth key at the back office, C{""} for none.
    @ivar ca: PEM bundle the back office's certificate must chain to, C{""}
        for the system's trust store (verification is never off).
    @ivar certificate: PEM client certificate (security profile 3), or C{""}.
    @ivar private_key: PEM key of C{certificate}.
    @ivar offline_authorization: what a tag neither the controller nor a
        cached answer decides gets while the back office cannot be asked:
        C{"local"} (the controller's own verdict), C{"accept"}, C{"reject"}.
    @ivar allow_reset: relay the back office's Reset to the charger.
    @ivar stop_refused: stop a session whose forwarded StartTransaction the
        back office did not accept (it is flagged in any case).
    """

    url: str = setting("", scalar(str, _upstream_url))
    identity: str = setting("", scalar(str, at_most_characters(255)))
    password: str = setting("", scalar(str))
    ca: str = setting("", scalar(str))
    certificate: str = setting("", scalar(str))
    private_key: str = setting("", scalar(str))
    offline_authorization: str = setting("local", scalar(str, one_of(*OFFLINE_AUTHORIZATION)))
    allow_reset: bool = setting(False, scalar(bool))
    stop_refused: bool = setting(False, scalar(bool))

    @property
    def secure(self):
        """
        @return: whether the back office is reached over TLS (C{wss://}).
        """
        return self.url.lower().startswith("wss://")


_UPSTREAM_FILES = (("ca", "CA bundle"), ("certificate", "client certificate"),
                   ("private_key", "private key"))


def _check_upstreams(chargers):
    """
    One back office per charger, set in one of its [[charger]] tables (or
    the same in each); its TLS files exist and go with a wss:// URL.
    """
    first = {}
    for index, charger in enumerate(chargers):
        here = f"charger[{index}].upstream"
        upstream = charger.upstream
        if not upstream.url:
            if upstream != UpstreamConfig():
                raise Invalid(f"{here}.url", "required when [charger.upstream] sets other keys")
            continue
        other = first.setdefault(charger.id, index)
        if other != index and chargers[other].upstream != upstream:
            raise Invalid(here, f"differs from charger[{other}].upstream for the same charger"
                                f" {charger.id!r}; set it once, for all its connectors")
        if bool(upstream.certificate) != bool(upstream.private_key):
            missing = "private_key" if upstream.certificate else "certificate"
            raise Invalid(f"{here}.{missing}", "a client certificate needs both certificate"
                                               " and private_key")
        for name, what in _UPSTREAM_FILES:
            filename = getattr(upstream, name)
            if not filename:
                continue
            if not upstream.secure:
                raise Invalid(f"{here}.{name}", f"a {what} is for a wss:// URL, not {upstream.url!r}")
            try:
                with open(filename, "rb"):
                    pass
            except OSError as e:
                raise Invalid(f"{here}.{name}", f"missing {what} {filename!r} ({e.strerror})") from None


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
    @ivar quirks: workaround names to add (L{xxterocpp.quirks}), L{None}
        when this table does not say; like C{no_quirks} and
        C{current_steps} they hold for the whole charger, read them with
        L{Config.quirk_settings}.
    @ivar no_quirks: workaround names to remove, L{None} when not said.
    @ivar current_steps: the charger's current steps in A, ascending, or
        L{None}.
    @ivar security_profile: 0..3, L{None} when this table does not say;
        read a charger's with L{Config.security_profile}.
    """

    id: str = setting(
        parse=scalar(
            str,
            non_empty,
            without(":", "the id is the charger's HTTP Basic user id"),
            without("/", "the id is the last segment of the charger's URL"),
            at_most_characters(255),
        )
    )
    connector: int = setting(1, scalar(int, at_least(1)))
    max_current: float = setting(parse=scalar(float, within(6, 80)), kw_only=True)
    normal_current: float = setting(
        attr.Factory(lambda self: self.max_current, takes_self=True), scalar(float, at_least(6))
    )
    phases: int = setting(3, scalar(int, one_of(1, 3)))
    allowed_tags: tuple[str, ...] = setting(("*",), _allowed_tags)
    smart_tag: str = setting("", scalar(str, _id_tag_length))
    remote_tag: str = setting("XXTER", scalar(str, non_empty, _id_tag_length))
    password: str = setting("", scalar(str))
    security_profile: int | None = setting(None, scalar(int, within(0, 3)))
    time_dpt: str = _dpt_choice(objects.TIME_DPT)
    current_dpt: str = _dpt_choice(objects.CURRENT_DPT)
    quirks: tuple[str, ...] | None = setting(None, _quirk_names)
    no_quirks: tuple[str, ...] | None = setting(None, _quirk_names)
    current_steps: tuple[float, ...] | None = setting(None, _current_steps)
    knx: ChargerKnxConfig = subtable(ChargerKnxConfig)
    upstream: UpstreamConfig = subtable(UpstreamConfig)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class QuirkSettings:
    """
    The quirk keys of one charger, from all its C{[[charger]]} tables.

    @ivar add: workaround names to add: C{quirks}, and C{current-steps}
        when C{current_steps} is set.
    @ivar remove: workaround names to remove (C{no_quirks}).
    @ivar current_steps: the charger's steps in A, or L{None}.
    """

    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    current_steps: tuple[float, ...] | None = None

    def parameters(self):
        """
        @return: the configured workaround parameters, for
            L{xxterocpp.quirks.resolve}.
        """
        if self.current_steps is None:
            return {}
        return {"current-steps": {"steps": self.current_steps}}

    def resolve(self, boot, registry=REGISTRY):
        """
        @param boot: the charger's boot data (C{Charger.boot}).
        @param registry: the registry entries to match (tests give their own).
        @return: the L{xxterocpp.quirks.ActiveQuirks} in force for it.
        """
        return resolve_quirks(boot, self.add, self.remove, self.parameters(), registry)


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

    def upstream(self, charger_id):
        """
        @return: the L{UpstreamConfig} of C{charger_id}'s back office, or
            L{None} when it has none.
        """
        for c in self.chargers:
            if c.id == charger_id and c.upstream.url:
                return c.upstream
        return None

    def charger(self, charger_id, connector):
        """
        @return: the L{ChargerConfig} of that charging point, or L{None}.
        """
        for c in self.chargers:
            if (c.id, c.connector) == (charger_id, connector):
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
        return _security_profile(points, self.ocpp) if points else 0

    def quirk_settings(self, charger_id):
        """
        @return: the L{QuirkSettings} of C{charger_id}: what any of its
            tables says (they were checked to agree); empty for an unknown
            id.
        """
        points = [c for c in self.chargers if c.id == charger_id]
        add, remove, steps = _quirk_keys(points)
        if steps is not None and "current-steps" not in add:
            add += ("current-steps",)
        return QuirkSettings(add=add, remove=remove, current_steps=steps)


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


def _check_chargers(chargers, ocpp):
    points = {}
    passwords = {}
    receivers = {}
    for index, charger in enumerate(chargers):
        here = f"charger[{index}]"
        if charger.normal_current > charger.max_current:
            raise Invalid(
                f"{here}.normal_current",
                f"must be 6..max_current ({charger.max_current:g}), not {charger.normal_current!r}",
            )
        first = points.setdefault((charger.id, charger.connector), index)
        if first != index:
            raise Invalid(
                f"{here}.connector",
                f"charger {charger.id!r} connector {charger.connector} is configured twice: "
                f"charger[{first}] and {here}",
            )
        first = passwords.setdefault(charger.id, index)
        if chargers[first].password != charger.password:
            # One charger authenticates one connection, with one AuthorizationKey.
            raise Invalid(
                f"{here}.password",
                f"differs from charger[{first}].password for the same charger {charger.id!r}",
            )
        for name in objects.RECEIVES:
            address = getattr(charger.knx, name)
            if address is None:
                continue
            other, other_name = receivers.setdefault(address, (index, name))
            if chargers[other].id != charger.id or chargers[other].connector != charger.connector:
                raise Invalid(
                    f"{here}.knx.{name}",
                    f"group address {address} is also charger[{other}].knx.{other_name}; "
                    f"a bus write to it would act on two charging points",
                )
    ids = tuple(dict.fromkeys(c.id for c in chargers))
    if len(ids) > ocpp.max_chargers:
        raise Invalid(
            "ocpp.max_chargers",
            f"{len(ids)} chargers configured ({', '.join(ids)}) "
            f"but ocpp.max_chargers = {ocpp.max_chargers}; contact sales for more",
        )


def _security_profile(points, ocpp):
    """
    The security profile of one charger's tables (see
    L{Config.security_profile}).
    """
    configured = next((p.security_profile for p in points if p.security_profile is not None),
                      None)
    if configured is not None:
        return configured
    if ocpp.secure and ocpp.client_ca:
        return 3
    if points[0].password:
        return 2 if ocpp.secure else 1
    return 0


def _check_security_profiles(chargers, ocpp):
    """
    C{security_profile} holds for the whole charger, and what it says must
    be possible: 1 and 2 need a password, 2 and 3 a secure port, 3 the
    client CA that verifies the certificates.
    """
    first = {}
    for index, charger in enumerate(chargers):
        profile = charger.security_profile
        if profile is None:
            continue
        here = f"charger[{index}].security_profile"
        other = first.setdefault(charger.id, index)
        if chargers[other].security_profile != profile:
            raise Invalid(here, f"differs from charger[{other}].security_profile for the same"
                                f" charger {charger.id!r}")
        if profile in (1, 2) and not charger.password:
            raise Invalid(here, f"profile {profile} authenticates the charger with its"
                                f" password: set charger[{index}].password")
        if profile >= 2 and not ocpp.secure:
            raise Invalid(here, f"profile {profile} needs TLS: set ocpp.secure = true")
        if profile == 3 and not ocpp.client_ca:
            raise Invalid(here, "profile 3 needs ocpp.client_ca, the CA of the chargers'"
                                " certificates")


_QUIRK_KEYS = ("quirks", "no_quirks", "current_steps")


def _quirk_keys(points):
    """
    C{quirks}, C{no_quirks} and C{current_steps} of one charger's tables,
    each from the first table that sets it (C{()} or L{None} when none do).
    """
    values = [next((getattr(p, key) for p in points if getattr(p, key) is not None), None)
              for key in _QUIRK_KEYS]
    return values[0] or (), values[1] or (), values[2]


def _check_quirks(chargers):
    """
    The quirk keys hold for a whole charger: the tables of one id that set
    one must agree, no name may be both added and removed, and
    C{current-steps} needs the steps.
    """
    first = {}
    for index, charger in enumerate(chargers):
        here = f"charger[{index}]"
        for key in _QUIRK_KEYS:
            value = getattr(charger, key)
            if value is None:
                continue
            other = first.setdefault((charger.id, key), index)
            theirs = getattr(chargers[other], key)
            same = set(theirs) == set(value) if key != "current_steps" else theirs == value
            if not same:
                raise Invalid(
                    f"{here}.{key}",
                    f"differs from charger[{other}].{key} for the same charger {charger.id!r} "
                    f"(the quirk keys hold for every connector of a charger)",
                )

    def where(charger_id, key):
        return f"charger[{first[(charger_id, key)]}].{key}"

    for charger_id in dict.fromkeys(c.id for c in chargers):
        add, remove, steps = _quirk_keys([c for c in chargers if c.id == charger_id])
        both = [name for name in add if name in remove]
        if both:
            raise Invalid(
                where(charger_id, "no_quirks"),
                f"{both[0]!r} is also in {where(charger_id, 'quirks')}; a quirk cannot be "
                f"added and removed",
            )
        if "current-steps" in add and steps is None:
            raise Invalid(
                where(charger_id, "quirks"),
                "'current-steps' needs the charger's steps: set current_steps = [...] "
                "(which alone turns it on)",
            )
        if steps is not None and "current-steps" in remove:
            raise Invalid(
                where(charger_id, "current_steps"),
                f"set, but {where(charger_id, 'no_quirks')} removes 'current-steps'",
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
    _check_chargers(chargers, sections["ocpp"])
    _check_quirks(chargers)
    _check_security_profiles(chargers, sections["ocpp"])
    _check_smart(sections["smart"], chargers)
    _check_upstreams(chargers)
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
