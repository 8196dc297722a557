# -*- test-case-name: tests.test_config,tests.test_upstream_config,tests.test_quirks,tests.test_profiles -*-
"""
C{[[charger]]}: one charging point's table of the configuration file
(L{xxterocpp.config}), its sub-tables C{[charger.knx]} (the group addresses,
one key per declared group object of L{xxterocpp.knx.objects}) and
C{[charger.upstream]} (the back office), the parsers of their values, and
the checks across the tables of the file: what holds for a whole charger
(one password, one security profile, one set of quirk keys, one back
office) agrees in all its tables, and no group address is received by two
charging points.

L{id_tag_length} and L{dpt_choice} are shared with C{[[tag]]} and C{[knx]}.
"""

import attr

from xxterocpp.configschema import (
    Invalid,
    at_least,
    at_most_characters,
    coerce,
    describe,
    did_you_mean,
    non_empty,
    one_of,
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

_ID_TAG_LENGTH = 20  # OCPP 1.6 IdToken is a CiString20Type


def id_tag_length(value):
    """
    Check an idTag: OCPP allows at most 20 characters.
    """
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


def _allowed_tags(value):
    if not isinstance(value, list):
        raise ValueError(f"expected an array of strings like [\"*\"], got {describe(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise ValueError(f"item {index}: expected a string, got {describe(item)}")
        non_empty(item)
        id_tag_length(item)
    return tuple(value)


def dpt_choice(choice):
    """
    The setting of a L{DptChoice}: one of its DPT ids, its default unless set.
    """
    return setting(choice.default, scalar(str, one_of(*choice.allowed)))


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


def check_upstreams(chargers):
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
        L{xxterocpp.config.Config.quirk_settings}.
    @ivar no_quirks: workaround names to remove, L{None} when not said.
    @ivar current_steps: the charger's current steps in A, ascending, or
        L{None}.
    @ivar security_profile: 0..3, L{None} when this table does not say;
        read a charger's with L{xxterocpp.config.Config.security_profile}.
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
    smart_tag: str = setting("", scalar(str, id_tag_length))
    remote_tag: str = setting("XXTER", scalar(str, non_empty, id_tag_length))
    password: str = setting("", scalar(str))
    security_profile: int | None = setting(None, scalar(int, within(0, 3)))
    time_dpt: str = dpt_choice(objects.TIME_DPT)
    current_dpt: str = dpt_choice(objects.CURRENT_DPT)
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


def _check_points(chargers, ocpp):
    """
    Each charging point once, one password per charger, no group address
    received by two points, and no more chargers than C{[ocpp]
    max_chargers}.
    """
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


def security_profile(points, ocpp):
    """
    @param points: the L{ChargerConfig}s of one charger.
    @param ocpp: the L{xxterocpp.config.OcppConfig}.
    @return: the security profile (0..3) of that charger (see
        L{xxterocpp.config.Config.security_profile}).
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

    tables = {}
    for charger in chargers:
        tables.setdefault(charger.id, []).append(charger)
    for charger_id, points in tables.items():
        add, remove, steps = _quirk_keys(points)
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


def quirk_settings(points):
    """
    @param points: the L{ChargerConfig}s of one charger (none for an
        unknown id).
    @return: its L{QuirkSettings}: what any of its tables says (they were
        checked to agree).
    """
    add, remove, steps = _quirk_keys(points)
    if steps is not None and "current-steps" not in add:
        add += ("current-steps",)
    return QuirkSettings(add=add, remove=remove, current_steps=steps)


def check_chargers(chargers, ocpp):
    """
    The checks across the C{[[charger]]} tables, but the back office's
    (L{check_upstreams}).

    @param chargers: every L{ChargerConfig} of the file, in file order.
    @param ocpp: the file's L{xxterocpp.config.OcppConfig}.
    @raise Invalid: on the first problem.
    """
    _check_points(chargers, ocpp)
    _check_quirks(chargers)
    _check_security_profiles(chargers, ocpp)
