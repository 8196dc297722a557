# -*- test-case-name: tests.test_quirks -*-
"""
Charger quirks: the named workarounds, and the registry that chooses them
from what a charger says it is in its BootNotification.

Two declarative tables, each readable as a list of facts:

  - L{WORKAROUNDS}: every workaround by name, with one line on what it does
    and its default parameters. docs/quirks.md#named-workarounds says which
    chargers need each one and why.
  - L{REGISTRY}: which chargers get which workarounds. An entry matches the
    BootNotification's vendor and model (case-insensitive glob, or a regular
    expression written C{"re:..."}; either must match the whole string) and
    its firmware (a version range such as C{">=6.0,<6.4"}, compared
    numerically, dotted), says what the public record reports about those
    chargers and cites it.

L{resolve} turns a charger's boot data and its configuration
(C{quirks}/C{no_quirks}/C{current_steps} of its C{[[charger]]}, see
L{xxterocpp.config}) into L{ActiveQuirks}, which the code that honours a
workaround asks with L{ActiveQuirks.has}. The module is plain Python (no
Twisted): the configuration checks names against it.

How an entry matches a charger (firmware versions and ranges, vendor and
model patterns) is L{xxterocpp.quirkmatch}. The rest stays in one module:
the two tables grow by a line or an entry per charger met in the field
(each cited in C{docs/quirks.md}), and what reads them (an entry's checks,
L{resolve}) sits next to them, so that why a charger got a workaround can
be followed from its entry to the verdict in one file.
"""

import bisect
from types import MappingProxyType

import attr

from xxterocpp.quirkmatch import VersionRange, whole_match

__all__ = [
    "NAMES", "NO_QUIRKS", "REGISTRY", "STEPS_EXAMPLE", "WORKAROUNDS", "ActiveQuirk",
    "ActiveQuirks", "Entry", "Workaround", "check_steps", "resolve", "round_down_to_steps",
]


def _frozen(mapping):
    return MappingProxyType(dict(mapping))


#: How current steps are written, for error messages.
STEPS_EXAMPLE = "[6, 8, 10, 13, 16] (currents in A)"


def check_steps(steps):
    """
    Check a list of current steps in A: not empty, numbers of at least 0,
    strictly ascending.

    @return: the steps as a tuple of floats.
    @raise ValueError: saying what is wrong, for a person.
    """
    if isinstance(steps, (str, bytes)) or not hasattr(steps, "__iter__"):
        raise ValueError(f"expected an array like {STEPS_EXAMPLE}, got {steps!r}")
    steps = tuple(steps)
    if not steps:
        raise ValueError("must list at least one current step")
    for index, step in enumerate(steps):
        if isinstance(step, bool) or not isinstance(step, (int, float)) or step != step:
            raise ValueError(f"item {index}: expected a number of A, got {step!r}")
        if step < 0:
            raise ValueError(f"item {index}: must be at least 0, not {step!r}")
        if index and step <= steps[index - 1]:
            raise ValueError(
                f"item {index}: must be ascending, but {step!r} follows {steps[index - 1]!r}")
    return tuple(float(step) for step in steps)


def _check_interval(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"interval must be a number of seconds above 0, not {value!r}")
    return float(value)


def _check_delay(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 10:
        raise ValueError(f"delay must be 0..10 s, not {value!r}")
    return float(value)


@attr.s(frozen=True, slots=True)
class Workaround:
    """
    One named workaround: a behaviour switch in the code that needs it.

    @ivar name: its name in the configuration, the registry and the docs
        (anchor C{docs/quirks.md#<name>}).
    @ivar summary: what it does, in one line.
    @ivar defaults: its parameters when neither the registry entry nor the
        configuration gives them.
    @ivar parameters: the parameter names it takes, each with the check
        that returns the value in its canonical form.
    @ivar required: the parameters that must come from the registry entry
        or the configuration.
    """

    name = attr.ib()
    summary = attr.ib()
    defaults = attr.ib(factory=dict, converter=_frozen)
    parameters = attr.ib(factory=dict, converter=_frozen)
    required = attr.ib(default=(), converter=tuple)


WORKAROUNDS = (
    Workaround(
        "no-boot-trigger",
        "never send TriggerMessage(BootNotification): the charger drops the connection after it"),
    Workaround(
        "boot-trigger",
        "send TriggerMessage(BootNotification) also to a charger that booted before, when it "
        "reconnects without booting"),
    Workaround(
        "delay-start-answer",
        "answer StartTransaction about `delay` s late (default 1): the charger drops the socket "
        "after a fast answer",
        defaults={"delay": 1.0}, parameters={"delay": _check_delay}),
    Workaround(
        "stack-level-zero",
        "send charging profiles at stack level 0 only"),
    Workaround(
        "current-steps",
        "round limits down to the charger's current `steps` in A (current_steps = [...] in its "
        "[[charger]], or its registry entry's list)",
        parameters={"steps": check_steps}, required=("steps",)),
    Workaround(
        "pause-ends-session",
        "the charger ends its transaction at 0 A: pause by stopping the transaction and resume "
        "with a remote start, which it accepts in Finishing; never 0 A"),
    Workaround(
        "trigger-meter-values",
        "during a session without MeterValues for twice the sample interval, send "
        "TriggerMessage(MeterValues)"),
    Workaround(
        "no-ping",
        "send no WebSocket pings (it never answers them); find dead connections by missing "
        "heartbeats instead"),
    Workaround(
        "keepalive",
        "send some traffic at least every `interval` s (default 60): the charger closes idle "
        "connections",
        defaults={"interval": 60.0}, parameters={"interval": _check_interval}),
    Workaround(
        "session-register",
        "its MeterValues energy register restarts at 0 per session: the energy so far is the last "
        "reading; at the stop meterStop - meterStart when that is >= 0, else meterStop"),
    Workaround(
        "lenient-answers",
        "accept its CALLRESULTs even when they break the schema (logged once)"),
    Workaround(
        "finishing-recovery",
        "stuck in Finishing over 60 s after a remote stop: UnlockConnector, then an availability "
        "cycle"),
)

_BY_NAME = {w.name: w for w in WORKAROUNDS}
#: The workaround names, in the order of L{WORKAROUNDS}.
NAMES = tuple(_BY_NAME)


def _check_names(names, what):
    for name in names:
        if name not in _BY_NAME:
            raise ValueError(f"unknown quirk {name!r} in {what} (known: {', '.join(NAMES)})")


def _parameters(workaround, given, what):
    """
    C{given} checked against what C{workaround} takes, in canonical form.
    """
    values = {}
    for key, value in given.items():
        check = workaround.parameters.get(key)
        if check is None:
            raise ValueError(f"{what}: {workaround.name} takes no parameter {key!r}")
        try:
            values[key] = check(value)
        except ValueError as e:
            raise ValueError(f"{what}: {workaround.name}: {e}") from None
    return values


@attr.s(frozen=True, slots=True, hash=False)
class Entry:
    """
    One registry entry: which chargers, which workarounds, and why.

    @ivar name: a short stable name, shown as the reason a quirk is active.
    @ivar quirks: the workaround names it turns on.
    @ivar fact: what the sources report about these chargers.
    @ivar sources: where: C{owner/repo#N} for an issue or pull request of
        that GitHub repository, or C{owner/repo path} for a file there.
    @ivar docs: anchors of docs/quirks.md with more on it (C{"q7"}).
    @ivar vendor: pattern for chargePointVendor (C{"*"}: any).
    @ivar model: pattern for chargePointModel (C{"*"}: any).
    @ivar firmware: a L{VersionRange} for firmwareVersion (C{""}: any).
    @ivar parameters: per workaround name, the parameters it brings
        (C{{"current-steps": {"steps": [6, 8, 10, 13, 16]}}}).
    """

    name = attr.ib()
    quirks = attr.ib(converter=tuple)
    fact = attr.ib()
    sources = attr.ib(converter=tuple)
    docs = attr.ib(default=(), converter=tuple)
    vendor = attr.ib(default="*")
    model = attr.ib(default="*")
    firmware = attr.ib(default="")
    parameters = attr.ib(factory=dict, converter=_frozen, repr=lambda p: repr(dict(p)))
    _match = attr.ib(init=False, repr=False, eq=False)
    __hash__ = None  # its parameters are a mapping

    def __attrs_post_init__(self):
        what = f"registry entry {self.name!r}"
        if not self.quirks or not self.sources:
            raise ValueError(f"{what} needs quirks and sources")
        _check_names(self.quirks, what)
        checked = {}
        for name, given in self.parameters.items():
            if name not in self.quirks:
                raise ValueError(f"{what}: parameters for {name!r}, which it does not turn on")
            checked[name] = _frozen(_parameters(_BY_NAME[name], given, what))
        for name in self.quirks:
            missing = set(_BY_NAME[name].required) - set(checked.get(name, {}))
            if missing:
                raise ValueError(f"{what}: {name} needs {', '.join(sorted(missing))}")
        object.__setattr__(self, "parameters", _frozen(checked))
        object.__setattr__(
            self, "_match",
            (whole_match(self.vendor), whole_match(self.model), VersionRange(self.firmware)))

    def matches(self, boot):
        """
        @param boot: the charger's boot data (C{vendor}, C{model},
            C{firmware}, each optional).
        @return: whether this entry describes that charger.
        """
        vendor, model, firmware = self._match
        return bool(vendor.fullmatch(boot.get("vendor") or "")
                    and model.fullmatch(boot.get("model") or "")
                    and firmware.contains(boot.get("firmware")))

    @property
    def reason(self):
        """
        Why a quirk of this entry is active, for the log and the status page.
        """
        return f"registry: {self.name} ({self.sources[0]})"


# The registry. Each entry holds only what its sources say; the vendor,
# model and firmware strings are the ones chargers sent in BootNotifications
# quoted there. Chargers known for a quirk whose BootNotification is not in
# the public record are listed in docs/quirks.md#named-workarounds, to be
# configured by hand. The first entry that turns a workaround on gives its
# reason and parameters.
REGISTRY = (
    Entry(
        "starcharge-aurora", vendor="StarCharge", model="Aurora",
        quirks=["no-boot-trigger"],
        fact="Answers TriggerMessage(BootNotification), then drops the connection about 30 s "
             "later and reconnects, which triggers again: a reconnect loop (the MG-branded "
             "Aurora, firmware 1.0.0.0.7b107_MG).",
        sources=["lbbrhzn/ocpp#1096"], docs=["q7"]),
    Entry(
        "wallbox-pulsar-pro-fw6", vendor="Wall Box Chargers", model="PPR1-*", firmware=">=6,<7",
        quirks=["boot-trigger"],
        fact="Connects and sends StatusNotification but never a BootNotification of its own; "
             "answers TriggerMessage(BootNotification) within a second (Pulsar Pro PPR1-0-2-4, "
             "firmware 6.11.16). Wallbox chargers boot as 'Wall Box Chargers'.",
        sources=["evcc-io/evcc#28539", "evcc-io/evcc#28540", "lbbrhzn/ocpp#1510"],
        docs=["q6"]),
    Entry(
        "free2move-eprowallbox", model="F2ME.EPROSE01TXX",
        quirks=["delay-start-answer"],
        fact="Closes the socket about 0.8 s after a StartTransaction answer that came within "
             "~20 ms, then reconnects with a new boot: 77 of 89 sessions failed; answering about "
             "1 s later fixed it (eProWallbox, firmware 2.9.3).",
        sources=["lbbrhzn/ocpp#2080"], docs=["q43", "q24"]),
    Entry(
        "abb-terra-ac", vendor="ABB", model="CDT_TACW*",
        quirks=["stack-level-zero"],
        fact="evcc's Terra AC template sends its profiles at stack level 0; the Home Assistant "
             "integration saw a limit at stack level 3 rejected. Its boots name the model "
             "CDT_TACW11::NET_WIFI or CDT_TACW22::NET_WIFI (firmware "
             "TAC3Z9119006710273::V1.8.21).",
        sources=["evcc-io/evcc templates/definition/charger/ocpp-abb-tac.yaml",
                 "lbbrhzn/ocpp#1737", "lbbrhzn/ocpp#1275", "evcc-io/evcc#17979"],
        docs=["q27"]),
    Entry(
        "wallbox-fw5", vendor="Wall Box Chargers", firmware=">=5,<6",
        quirks=["stack-level-zero"],
        fact="evcc's template for Wallbox firmware 5.x (Pulsar Plus, Pulsar Max, Commander 2, "
             "Copper SB) sends profiles at stack level 0; those chargers boot as 'Wall Box "
             "Chargers' (Pulsar Plus PLP1-0-2-4, firmware 5.5.10).",
        sources=["evcc-io/evcc templates/definition/charger/ocpp-wallbox-fw5.yaml",
                 "lbbrhzn/ocpp docs/debugging.md"],
        docs=["q27"]),
    Entry(
        "wallbox-fw6.7", vendor="Wall Box Chargers", firmware=">=6.7,<6.8",
        quirks=["keepalive"], parameters={"keepalive": {"interval": 20}},
        fact="Copper SB, Pulsar Plus and Commander 2 on firmware 6.7.x drop a WebSocket that "
             "carried no traffic for 30-45 s; pings every 20 s kept them connected for over a "
             "day (firmware 6.7.38).",
        sources=["ConnectorIO/connectorio-addons#132", "ConnectorIO/connectorio-addons#148"],
        docs=["q9"]),
    Entry(
        "ocular-lte-plus", vendor="BS AC EV Charger",
        quirks=["keepalive", "finishing-recovery"],
        fact="Ocular LTE Plus v3 (BS-EV22, also seen on BS-EV07; firmware 448.3251.0Q03197) "
             "closes a connection that carried no traffic for about 110 s, and after a remote "
             "stop stays in Finishing, refusing a remote start, until the cable is unplugged.",
        sources=["lbbrhzn/ocpp#2030", "lbbrhzn/ocpp docs/supported-devices.md"],
        docs=["q9", "q31", "q40"]),
    Entry(
        "autel-maxicharger", vendor="Autel", model="MaxiCharger*",
        quirks=["finishing-recovery"],
        fact="After a remote stop with the car still plugged in the connector sits in Finishing "
             "and starts no new session until the charger is reset (MaxiChargerAC, firmware "
             "PFA0102|V0.00.00|V1.38.00||2.4.3.0).",
        sources=["lbbrhzn/ocpp docs/supported-devices.md", "lbbrhzn/ocpp#1523"],
        docs=["q31", "q40"]),
    Entry(
        "phoenix-charx", vendor="Phoenix Contact*",
        quirks=["finishing-recovery"],
        fact="CHARX SEC-3xxx connectors hang in Finishing, blocking new sessions until the "
             "cable is unplugged; the openHAB binding recovers them with an availability cycle "
             "and UnlockConnector. They boot as 'Phoenix Contact GmbH & Co. KG' (firmware 1.9.0).",
        sources=["ConnectorIO/connectorio-addons#151", "ConnectorIO/connectorio-addons#148"],
        docs=["q40"]),
    Entry(
        "en-plus", vendor="EN+",
        quirks=["no-ping", "pause-ends-session"],
        fact="The AC7000 answers no WebSocket pings (stable with pings off); EN+ chargers end "
             "the transaction when the limit drops below their minimum or to 0 A and resume on "
             "a RemoteStartTransaction in Finishing. They boot as 'EN+' (an EN+ built EVSEDO "
             "AC011K: model '37', firmware 1.1.805).",
        sources=["lbbrhzn/ocpp#211", "evcc-io/evcc#33020", "evcc-io/evcc#30113"],
        docs=["q9", "q39"]),
    Entry(
        "huawei-scharger", vendor="", model="ACChargePoint",
        quirks=["pause-ends-session"],
        fact="The SCharger takes a 0 W profile as the end of its transaction (StopTransaction "
             "reason Other) and resumes on a RemoteStartTransaction; SCharger boots were reported "
             "with an empty vendor and model 'ACChargePoint' (22KT-S0, and on firmware T160).",
        sources=["evcc-io/evcc#29272", "evcc-io/evcc#33020", "evcc-io/evcc#32170",
                 "evcc-io/evcc#19001"],
        docs=["q39"]),
    Entry(
        "grizzl-e-fw5", vendor="United Chargers", firmware=">=5,<6",
        quirks=["lenient-answers"],
        fact="Grizzl-E firmware 5.x answers some central-system calls with invalid JSON or "
             "payloads off the schema; the Home Assistant integration needs schema validation "
             "off (3.x is fine). Boot: model 'GRS-*', firmware '05.43'.",
        sources=["lbbrhzn/ocpp#442", "lbbrhzn/ocpp docs/user-guide.md", "lbbrhzn/ocpp#176"],
        docs=["q13"]),
    Entry(
        "grizzl-e-5.633", vendor="United Chargers", firmware="==5.633",
        quirks=["session-register"],
        fact="With Grizzl-E firmware 5.633 the Energy.Active.Import.Register of MeterValues is "
             "the energy of the session, back at zero at the start of each session.",
        sources=["lbbrhzn/ocpp docs/user-guide.md"]),
)


# What is in force for one charger.


@attr.s(frozen=True, slots=True, hash=False)
class ActiveQuirk:
    """
    A workaround in force for a charger.

    @ivar name: the workaround's name.
    @ivar reason: C{"registry: <entry> (<source>)"} or C{"configuration"}.
    @ivar parameters: its parameters (defaults, then the registry entry's,
        then the configured ones).
    """

    name = attr.ib()
    reason = attr.ib()
    parameters = attr.ib(factory=dict, converter=_frozen, repr=lambda p: repr(dict(p)))
    __hash__ = None  # its parameters are a mapping


class ActiveQuirks:
    """
    The workarounds in force for one charger, in the order of
    L{WORKAROUNDS}. Immutable; L{has} is one dict lookup, for hot paths.
    """

    __slots__ = ("_active", "_flags")

    def __init__(self, active=()):
        """
        @param active: L{ActiveQuirk}s, at most one per name.
        """
        given = {quirk.name: quirk for quirk in active}
        _check_names(given, "active quirks")
        self._active = {name: given[name] for name in NAMES if name in given}
        self._flags = {name: name in given for name in NAMES}

    def has(self, name):
        """
        @return: whether workaround C{name} is in force.
        @raise KeyError: for a name that is no workaround (a typo in code).
        """
        return self._flags[name]

    def get(self, name):
        """
        @return: the L{ActiveQuirk} called C{name}, or L{None}.
        """
        return self._active.get(name)

    def parameter(self, name, key, default=None):
        """
        @return: parameter C{key} of workaround C{name}, or C{default} when
            the workaround is not in force or has no such parameter.
        """
        quirk = self._active.get(name)
        return default if quirk is None else quirk.parameters.get(key, default)

    def __iter__(self):
        return iter(self._active.values())

    def __len__(self):
        return len(self._active)

    def __eq__(self, other):
        if not isinstance(other, ActiveQuirks):
            return NotImplemented
        return self._active == other._active

    __hash__ = None  # like its ActiveQuirks

    def __repr__(self):
        return f"ActiveQuirks({list(self._active.values())!r})"

    def describe(self):
        """
        @return: a JSON-able list, one C{{"name", "reason", "parameters"}}
            dict per workaround, for the status page, the API and the store.
        """
        return [
            {"name": q.name, "reason": q.reason,
             "parameters": {k: list(v) if isinstance(v, tuple) else v
                            for k, v in q.parameters.items()}}
            for q in self._active.values()
        ]


#: No workaround in force (a charger that has not booted, without configured quirks).
NO_QUIRKS = ActiveQuirks()


def resolve(boot, configured_add=(), configured_remove=(), configured_parameters=None,
            registry=REGISTRY):
    """
    Choose a charger's workarounds.

    Every registry entry matching C{boot} turns its workarounds on; then
    C{configured_remove} turns workarounds off and C{configured_add} turns
    them on (their reason is then C{"configuration"}).

    @param boot: the charger's boot data, C{Charger.boot}: C{vendor},
        C{model}, C{firmware} (each optional).
    @param configured_add: names from the charger's C{quirks}.
    @param configured_remove: names from the charger's C{no_quirks}.
    @param configured_parameters: C{{name: {key: value}}} from the
        configuration (C{current_steps}); they override the registry's for
        workarounds in force and are ignored for others.
    @param registry: the L{Entry}s to match (tests give their own).
    @rtype: L{ActiveQuirks}
    @raise ValueError: for an unknown name, a bad parameter, or a workaround
        in force without a parameter it needs.
    """
    configured_parameters = configured_parameters or {}
    _check_names(configured_add, "configured quirks")
    _check_names(configured_remove, "configured no_quirks")
    _check_names(configured_parameters, "configured parameters")
    chosen = {}
    for entry in registry:
        if entry.matches(boot):
            for name in entry.quirks:
                if name not in chosen:
                    chosen[name] = (entry.reason, entry.parameters.get(name, {}))
    for name in configured_remove:
        chosen.pop(name, None)
    for name in configured_add:
        chosen[name] = ("configuration", chosen.get(name, (None, {}))[1])
    active = []
    for name, (reason, parameters) in chosen.items():
        workaround = _BY_NAME[name]
        values = {**workaround.defaults, **parameters}
        values.update(_parameters(workaround, configured_parameters.get(name, {}), "configuration"))
        missing = set(workaround.required) - set(values)
        if missing:
            needs = ", ".join(sorted(missing))
            raise ValueError(f"{name} is in force ({reason}) but needs {needs}")
        active.append(ActiveQuirk(name, reason, values))
    return ActiveQuirks(active)


def round_down_to_steps(amps, steps):
    """
    A current limit rounded down to the steps a charger accepts (the
    C{current-steps} workaround).

    @param amps: the limit in A; 0 (or less) means no charging.
    @param steps: the charger's ascending steps in A, as L{check_steps}
        returns them.
    @return: the highest step at or below C{amps}; 0.0 below the lowest
        step, since there is no step to round down to.
    """
    index = bisect.bisect_right(steps, amps)
    return float(steps[index - 1]) if index and amps > 0 else 0.0
