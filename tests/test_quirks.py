"""
Tests for L{xxterocpp.quirks} and the quirk keys of L{xxterocpp.config}.
"""

import json
import os
import re
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from tests.test_config import ConfigErrorTestsMixin, charger
from xxterocpp.config import QuirkSettings, parse_config
from xxterocpp.quirks import (
    NAMES,
    NO_QUIRKS,
    REGISTRY,
    WORKAROUNDS,
    ActiveQuirk,
    ActiveQuirks,
    Entry,
    check_steps,
    resolve,
    round_down_to_steps,
)
from xxterocpp.quirkmatch import VersionRange, firmware_version

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = (6.0, 8.0, 10.0, 13.0, 16.0)


def read(*path):
    with open(os.path.join(TOP, *path), encoding="utf-8") as f:
        return f.read()


def boot(vendor=None, model=None, firmware=None):
    """
    A C{Charger.boot} dict, leaving out what the charger did not send.
    """
    given = {"vendor": vendor, "model": model, "firmware": firmware}
    return {key: value for key, value in given.items() if value is not None}


def entry(name="test", quirks=("no-ping",), **kwargs):
    return Entry(name, quirks=quirks, fact="a test fact", sources=["example/repo#1"], **kwargs)


def names(active):
    return [q.name for q in active]


class TableTests(SynchronousTestCase):
    def test_the_twelve_workarounds(self):
        """
        The workarounds are the twelve of the issue, each with a one-line
        summary.
        """
        self.assertEqual(NAMES, (
            "no-boot-trigger", "boot-trigger", "delay-start-answer", "stack-level-zero",
            "current-steps", "pause-ends-session", "trigger-meter-values", "no-ping",
            "keepalive", "session-register", "lenient-answers", "finishing-recovery"))
        for workaround in WORKAROUNDS:
            self.assertTrue(workaround.summary.strip(), workaround.name)
            self.assertNotIn("\n", workaround.summary, workaround.name)

    def test_registry_entries_are_facts_with_sources(self):
        """
        Every registry entry has a unique name, a fact and sources in the
        documented forms, and turns on known workarounds.
        """
        self.assertEqual(len({e.name for e in REGISTRY}), len(REGISTRY))
        source = re.compile(r"^[\w.-]+/[\w.-]+(#\d+| [\w./-]+)$")
        for e in REGISTRY:
            self.assertTrue(e.fact.strip(), e.name)
            self.assertTrue(e.sources, e.name)
            for cited in e.sources:
                self.assertRegex(cited, source, e.name)
            self.assertTrue(set(e.quirks) <= set(NAMES), e.name)

    def test_docs_describe_every_workaround_and_entry(self):
        """
        docs/quirks.md has an anchor per workaround and every anchor a
        registry entry cites, and names every entry; the README's "Charger
        quirks" section names every workaround.
        """
        catalogue = read("docs", "quirks.md")
        anchors = set(re.findall(r'<a id="([^"]+)"></a>', catalogue))
        self.assertTrue(set(NAMES) <= anchors, set(NAMES) - anchors)
        for e in REGISTRY:
            self.assertTrue(set(e.docs) <= anchors, e.name)
            self.assertIn(f"`{e.name}`", catalogue)
        readme = read("README.md")
        section = readme[readme.index("## Charger quirks"):]
        section = section[:section.index("\n## ", 1)]
        for name in NAMES:
            self.assertIn(f"`{name}`", section)

    def test_entries_are_checked(self):
        """
        A registry entry with an unknown workaround, parameters for one it
        does not turn on, bad parameters, a missing required parameter or a
        bad firmware range is refused when the table is built.
        """
        cases = [
            (dict(quirks=["no-pings"]), "unknown quirk 'no-pings'"),
            (dict(parameters={"keepalive": {"interval": 20}}), "which it does not turn on"),
            (dict(quirks=["keepalive"], parameters={"keepalive": {"every": 20}}),
             "keepalive takes no parameter 'every'"),
            (dict(quirks=["keepalive"], parameters={"keepalive": {"interval": 0}}),
             "interval must be a number of seconds above 0"),
            (dict(quirks=["current-steps"]), "current-steps needs steps"),
            (dict(quirks=["current-steps"], parameters={"current-steps": {"steps": [8, 6]}}),
             "must be ascending"),
            (dict(firmware=">=6.x"), "bad firmware range '>=6.x'"),
            (dict(firmware="6.0"), "bad firmware range"),
        ]
        for kwargs, problem in cases:
            e = self.assertRaises(ValueError, entry, **kwargs)
            self.assertIn(problem, str(e), kwargs)
        self.assertRaises(ValueError, Entry, "x", quirks=[], fact="f", sources=["a/b#1"])
        self.assertRaises(ValueError, Entry, "x", quirks=["no-ping"], fact="f", sources=[])


class FirmwareTests(SynchronousTestCase):
    def test_version_in_firmware_strings(self):
        """
        The version is the first run of dotted numbers, or a lone number.
        """
        for firmware, version in [
            ("6.7.38", (6, 7, 38)),
            ("05.43", (5, 43)),
            ("TAC3Z9119006710273::V1.8.21", (1, 8, 21)),
            ("1.0.0.0.7b107_MG", (1, 0, 0, 0, 7)),
            ("448.3251.0Q03197", (448, 3251, 0)),
            ("v6", (6,)),
            (" 37 ", (37,)),
            ("T160", None),
            ("V100R023C10SPC231", None),
            ("", None),
            (None, None),
        ]:
            self.assertEqual(firmware_version(firmware), version, firmware)

    def test_range_in_below_above(self):
        """
        >=6.0,<6.4 holds from 6.0 up to, not including, 6.4.
        """
        r = VersionRange(">=6.0,<6.4")
        for firmware, inside in [
            ("5.9.99", False), ("6", True), ("6.0.0", True), ("6.3.99", True), ("6.4", False),
            ("6.4.0.1", False), ("6.10.1", False), ("7.0", False),
        ]:
            self.assertEqual(r.contains(firmware), inside, firmware)

    def test_numeric_not_textual(self):
        """
        Parts compare as numbers: 6.10 is above 6.9, 05.633 is 5.633.
        """
        self.assertTrue(VersionRange(">6.9").contains("6.10"))
        self.assertTrue(VersionRange("==5.633").contains("05.633"))
        self.assertTrue(VersionRange("!=1.2").contains("1.2.1"))
        self.assertFalse(VersionRange("<=1.2").contains("1.2.1"))

    def test_unparsable_firmware_is_in_no_range(self):
        """
        A firmware without a version number, or none at all, matches no
        range; the empty range matches anything.
        """
        for firmware in ("T160", "", None, "beta"):
            self.assertFalse(VersionRange(">=0").contains(firmware), firmware)
            self.assertTrue(VersionRange("").contains(firmware), firmware)


class MatchTests(SynchronousTestCase):
    def test_vendor_glob_ignores_case_and_matches_whole(self):
        """
        Globs match the whole string, ignoring case; regular characters
        such as '+' are literal.
        """
        e = entry(vendor="Wall Box*")
        self.assertTrue(e.matches(boot("wall box chargers")))
        self.assertTrue(e.matches(boot("WALL BOX")))
        self.assertFalse(e.matches(boot("The Wall Box")))
        plus = entry(vendor="EN+")
        self.assertTrue(plus.matches(boot("en+")))
        self.assertFalse(plus.matches(boot("ENN")))

    def test_model_regex(self):
        """
        A pattern written re:... is a regular expression over the whole
        string, ignoring case.
        """
        e = entry(model=r"re:(PLP|CMX)\d-.*")
        self.assertTrue(e.matches(boot("x", "plp1-0-2-4")))
        self.assertTrue(e.matches(boot("x", "CMX2-0-2-4")))
        self.assertFalse(e.matches(boot("x", "CPB1-S-2-4")))
        self.assertFalse(e.matches(boot("x", "XPLP1-0")))

    def test_what_the_charger_did_not_send(self):
        """
        A missing vendor or model is the empty string: '*' matches it,
        other patterns do not; a range needs a firmware.
        """
        self.assertTrue(entry().matches({}))
        self.assertFalse(entry(model="A*").matches(boot("v")))
        self.assertTrue(entry(vendor="").matches(boot(model="ACChargePoint")))
        self.assertFalse(entry(vendor="").matches(boot("Huawei")))
        self.assertFalse(entry(firmware=">=1").matches(boot("v", "m")))

    def test_vendor_model_and_firmware_together(self):
        """
        An entry matches only when vendor, model and firmware all do: a
        firmware in the range, below it, above it, or without a version.
        """
        e = entry(vendor="Acme", model="Box-*", firmware=">=6.0,<6.4")
        self.assertTrue(e.matches(boot("ACME", "box-1", "6.2.1")))
        self.assertFalse(e.matches(boot("ACME", "box-1", "5.9")))
        self.assertFalse(e.matches(boot("ACME", "box-1", "6.4.0")))
        self.assertFalse(e.matches(boot("ACME", "box-1", "nightly")))
        self.assertFalse(e.matches(boot("ACME", "crate-1", "6.2.1")))
        self.assertFalse(e.matches(boot("Other", "box-1", "6.2.1")))

    def test_real_boots(self):
        """
        BootNotifications quoted in the sources get the workarounds the
        registry names for them; an unknown charger gets none.
        """
        cases = [
            (boot("StarCharge", "Aurora", "1.0.0.0.7b107_MG"), ["no-boot-trigger"]),
            (boot("Wall Box Chargers", "PPR1-0-2-4", "6.11.16"), ["boot-trigger"]),
            (boot("Wall Box Chargers", "PLP1-0-2-4", "5.5.10"), ["stack-level-zero"]),
            (boot("Wall Box Chargers", "CPB1-S-2-4", "6.7.38"), ["keepalive"]),
            (boot("Wall Box Chargers", "PLP2-M-2-4", "6.6.12"), []),
            (boot("ABB", "CDT_TACW22::NET_WIFI", "TAC3Z9119006710273::V1.8.21"),
             ["stack-level-zero"]),
            (boot(model="F2ME.EPROSE01TXX", firmware="2.9.3"), ["delay-start-answer"]),
            (boot("BS AC EV Charger", "BS-EV22", "448.3251.0Q03197"),
             ["keepalive", "finishing-recovery"]),
            (boot("Autel", "MaxiChargerAC", "PFA0102|V0.00.00|V1.38.00||2.4.3.0"),
             ["finishing-recovery"]),
            (boot("Phoenix Contact GmbH & Co. KG", "EV-CC-AC1-M3-CBC-RCM-ETH-3PN-SER", "1.9.0"),
             ["finishing-recovery"]),
            (boot("EN+", "37", "1.1.805"), ["pause-ends-session", "no-ping"]),
            (boot("", "ACChargePoint"), ["pause-ends-session"]),
            (boot("United Chargers", "GRS-*", "05.43"), ["lenient-answers"]),
            (boot("United Chargers", "GRS-*", "5.633"), ["session-register", "lenient-answers"]),
            (boot("United Chargers", "GRS-*", "03.09.0"), []),
            (boot("The Mobility House", "Optimus", "1.0"), []),
            ({}, []),
        ]
        for given, expected in cases:
            self.assertEqual(names(resolve(given)), expected, given)
        wallbox = resolve(boot("Wall Box Chargers", "CPB1-S-2-4", "6.7.38"))
        self.assertEqual(wallbox.parameter("keepalive", "interval"), 20.0)
        ocular = resolve(boot("BS AC EV Charger", "BS-EV07", "448.3251.0Q03197"))
        self.assertEqual(ocular.parameter("keepalive", "interval"), 60.0)


STEPS_ENTRY = entry("steps-box", vendor="Acme", quirks=["current-steps", "keepalive"],
                    parameters={"current-steps": {"steps": [6, 10, 16]}})
TEST_REGISTRY = (
    STEPS_ENTRY,
    entry("acme-late", vendor="Acme", quirks=["keepalive", "no-ping"],
          parameters={"keepalive": {"interval": 30}}),
)
ACME = boot("Acme", "Box", "1.0")


class ResolveTests(SynchronousTestCase):
    def test_registry_reasons_and_parameters(self):
        """
        A quirk chosen by the registry says which entry and its first
        source; the first entry to turn a workaround on gives its
        parameters; defaults fill the rest.
        """
        active = resolve(ACME, registry=TEST_REGISTRY)
        self.assertEqual(names(active), ["current-steps", "no-ping", "keepalive"])
        self.assertEqual(active.get("keepalive"),
                         ActiveQuirk("keepalive", "registry: steps-box (example/repo#1)",
                                     {"interval": 60.0}))
        self.assertEqual(active.get("no-ping").reason, "registry: acme-late (example/repo#1)")
        self.assertEqual(active.parameter("current-steps", "steps"), (6.0, 10.0, 16.0))

    def test_configured_add_and_remove(self):
        """
        no_quirks removes what the registry chose; quirks adds workarounds
        with the reason "configuration", also one the registry chose
        (keeping the registry's parameters).
        """
        active = resolve(ACME, configured_add=["finishing-recovery", "keepalive"],
                         configured_remove=["no-ping"], registry=TEST_REGISTRY)
        self.assertEqual(names(active), ["current-steps", "keepalive", "finishing-recovery"])
        self.assertEqual(active.get("finishing-recovery").reason, "configuration")
        self.assertEqual(active.get("keepalive"),
                         ActiveQuirk("keepalive", "configuration", {"interval": 60.0}))
        self.assertFalse(active.has("no-ping"))
        alone = resolve(boot("Other"), configured_add=["no-ping"], registry=TEST_REGISTRY)
        self.assertEqual(alone.describe(),
                         [{"name": "no-ping", "reason": "configuration", "parameters": {}}])

    def test_configured_parameters_override(self):
        """
        Configured steps override the registry entry's; parameters for a
        workaround not in force are ignored.
        """
        active = resolve(ACME, configured_parameters={"current-steps": {"steps": [6, 8]}},
                         registry=TEST_REGISTRY)
        self.assertEqual(active.parameter("current-steps", "steps"), (6.0, 8.0))
        self.assertEqual(active.get("current-steps").reason, "registry: steps-box (example/repo#1)")
        other = resolve(boot("Other"), configured_parameters={"current-steps": {"steps": [6]}},
                        registry=TEST_REGISTRY)
        self.assertEqual(other, NO_QUIRKS)

    def test_bad_requests(self):
        """
        Unknown names, bad parameters and current-steps without steps are
        refused.
        """
        self.assertRaises(ValueError, resolve, ACME, configured_add=["no-pings"])
        self.assertRaises(ValueError, resolve, ACME, configured_remove=["x"])
        self.assertRaises(ValueError, resolve, ACME, configured_parameters={"x": {}})
        e = self.assertRaises(ValueError, resolve, {}, configured_add=["current-steps"])
        self.assertIn("current-steps is in force (configuration) but needs steps", str(e))
        e = self.assertRaises(ValueError, resolve, ACME, registry=TEST_REGISTRY,
                              configured_parameters={"current-steps": {"steps": [6, 6]}})
        self.assertIn("must be ascending", str(e))

    def test_active_quirks(self):
        """
        has() answers for every workaround and refuses a name that is none;
        the set is immutable, compares by value and is JSON-able.
        """
        active = resolve(ACME, registry=TEST_REGISTRY)
        self.assertTrue(active.has("keepalive"))
        self.assertFalse(active.has("boot-trigger"))
        self.assertRaises(KeyError, active.has, "keep-alive")
        self.assertIsNone(active.get("boot-trigger"))
        self.assertEqual(active.parameter("boot-trigger", "x", "default"), "default")
        self.assertEqual(len(active), 3)
        self.assertEqual(active, resolve(ACME, registry=TEST_REGISTRY))
        self.assertNotEqual(active, NO_QUIRKS)
        self.assertEqual(len(NO_QUIRKS), 0)
        self.assertFalse(any(NO_QUIRKS.has(name) for name in NAMES))
        parameters = active.get("keepalive").parameters
        with self.assertRaises(TypeError):
            parameters["interval"] = 1
        described = json.loads(json.dumps(active.describe()))
        self.assertEqual(described[0], {"name": "current-steps",
                                        "reason": "registry: steps-box (example/repo#1)",
                                        "parameters": {"steps": [6.0, 10.0, 16.0]}})
        self.assertIn("keepalive", repr(active))
        self.assertRaises(ValueError, ActiveQuirks, [ActiveQuirk("nope", "configuration")])


class StepsTests(SynchronousTestCase):
    def test_round_down(self):
        """
        A limit is rounded down to a step: 0 stays 0, below the lowest step
        is 0 (no step to round down to), above the highest is the highest.
        """
        for amps, expected in [
            (0, 0.0), (-3, 0.0), (5.9, 0.0), (6, 6.0), (7.9, 6.0), (8, 8.0),
            (12.99, 10.0), (13, 13.0), (16, 16.0), (32, 16.0),
        ]:
            self.assertEqual(round_down_to_steps(amps, STEPS), expected, amps)
        self.assertEqual(round_down_to_steps(0, (0.0, 6.0)), 0.0)
        self.assertEqual(round_down_to_steps(3, (0.0, 6.0)), 0.0)

    def test_check_steps(self):
        """
        Steps are a non-empty ascending list of numbers of at least 0.
        """
        self.assertEqual(check_steps([0, 6, 7.5]), (0.0, 6.0, 7.5))
        for bad, problem in [
            ([], "at least one"), ([6, 6], "item 1: must be ascending, but 6 follows 6"),
            ([-1], "item 0: must be at least 0"), ([6, "8"], "item 1: expected a number"),
            ([True], "expected a number"), ([float("nan")], "expected a number"),
            ("6,8", "expected an array like"), (6, "expected an array like"),
        ]:
            e = self.assertRaises(ValueError, check_steps, bad)
            self.assertIn(problem, str(e), bad)



class ConfigTests(ConfigErrorTestsMixin, SynchronousTestCase):
    def test_defaults(self):
        """
        Without the keys a charger has no configured quirks.
        """
        config = parse_config(charger(id="A"))
        (point,) = config.chargers
        self.assertEqual((point.quirks, point.no_quirks, point.current_steps), (None, None, None))
        self.assertEqual(config.quirk_settings("A"), QuirkSettings())
        self.assertEqual(config.quirk_settings("nobody"), QuirkSettings())
        self.assertEqual(config.quirk_settings("A").resolve({}), NO_QUIRKS)

    def test_keys_are_read(self):
        """
        quirks and no_quirks are names (repeats dropped), current_steps
        floats; steps turn on current-steps.
        """
        config = parse_config(charger(
            id="A", quirks='["keepalive", "no-ping", "keepalive"]',
            no_quirks='["stack-level-zero"]', current_steps="[6, 8, 10.5]"))
        (point,) = config.chargers
        self.assertEqual(point.quirks, ("keepalive", "no-ping"))
        self.assertEqual(point.current_steps, (6.0, 8.0, 10.5))
        settings = config.quirk_settings("A")
        self.assertEqual(settings, QuirkSettings(
            add=("keepalive", "no-ping", "current-steps"), remove=("stack-level-zero",),
            current_steps=(6.0, 8.0, 10.5)))
        active = settings.resolve(boot("Wall Box Chargers", "PLP1-0-2-4", "5.5.10"))
        self.assertEqual(names(active), ["current-steps", "no-ping", "keepalive"])
        self.assertEqual(active.parameter("current-steps", "steps"), (6.0, 8.0, 10.5))
        self.assertTrue(all(q.reason == "configuration" for q in active))

    def test_no_quirks_removes_the_registry_choice(self):
        """
        An EN+ charger, which the registry gives no-ping and
        pause-ends-session, loses no-ping with no_quirks and keeps the other.
        """
        config = parse_config(charger(id="A", no_quirks='["no-ping"]'))
        active = config.quirk_settings("A").resolve(boot("EN+", "37", "1.1.805"))
        self.assertEqual(names(active), ["pause-ends-session"])
        self.assertTrue(active.get("pause-ends-session").reason.startswith("registry: en-plus"))

    def test_unknown_name(self):
        """
        An unknown name is an error naming the key, the closest name and
        all known names, on one line.
        """
        known = "known: " + ", ".join(NAMES)
        message = self.assertConfigError(charger(quirks='["keepalve"]'), "charger[0].quirks",
                                         "unknown quirk 'keepalve' (did you mean 'keepalive'?)")
        self.assertTrue(message.endswith(known), message)
        message = self.assertConfigError(charger(no_quirks='["frobnicate"]'),
                                         "charger[0].no_quirks", "unknown quirk 'frobnicate'")
        self.assertTrue(message.endswith(known), message)
        self.assertConfigErrors([
            (charger(quirks='"keepalive"'), "charger[0].quirks",
             "expected an array of names like [\"keepalive\"], got string 'keepalive'"),
            (charger(no_quirks="[1]"), "charger[0].no_quirks", "item 0: expected a string"),
        ])

    def test_current_steps_validation(self):
        """
        current_steps is a non-empty ascending array of numbers >= 0.
        """
        key = "charger[0].current_steps"
        self.assertConfigErrors([
            (charger(current_steps="[]"), key, "must list at least one current step"),
            (charger(current_steps="[8, 6]"), key, "item 1: must be ascending, but 6 follows 8"),
            (charger(current_steps="[6, 6]"), key, "must be ascending"),
            (charger(current_steps="[-1, 6]"), key, "item 0: must be at least 0, not -1"),
            (charger(current_steps='[6, "8"]'), key,
             "item 1: expected a number, got string '8' (remove the quotes)"),
            (charger(current_steps="[6, true]"), key,
             "item 1: expected a number, got boolean true"),
            (charger(current_steps="16"), key, "expected an array like [6, 8, 10, 13, 16]"),
        ])
        (point,) = parse_config(charger(current_steps="[0, 6]")).chargers
        self.assertEqual(point.current_steps, (0.0, 6.0))

    def test_keys_hold_for_the_whole_charger(self):
        """
        Set in one table of a twin wallbox, the keys hold for the charger;
        tables that both set one must agree (order of names aside).
        """
        config = parse_config(charger(id="T", connector=1)
                              + charger(id="T", connector=2, quirks='["no-ping"]',
                                        current_steps="[6, 16]"))
        self.assertEqual(config.quirk_settings("T"), QuirkSettings(
            add=("no-ping", "current-steps"), current_steps=(6.0, 16.0)))
        parse_config(charger(id="T", quirks='["no-ping", "keepalive"]')
                     + charger(id="T", connector=2, quirks='["keepalive", "no-ping"]'))
        self.assertConfigErrors([
            (charger(id="T", quirks='["no-ping"]')
             + charger(id="T", connector=2, quirks='["keepalive"]'),
             "charger[1].quirks",
             "differs from charger[0].quirks for the same charger 'T'"),
            (charger(id="T", no_quirks='["no-ping"]')
             + charger(id="T", connector=2, no_quirks="[]"),
             "charger[1].no_quirks", "differs from charger[0].no_quirks"),
            (charger(id="T", current_steps="[6, 16]")
             + charger(id="T", connector=2, current_steps="[6, 10, 16]"),
             "charger[1].current_steps", "differs from charger[0].current_steps"),
        ])
        # Other chargers are not affected.
        config = parse_config(charger(id="A", quirks='["no-ping"]') + charger(id="B"))
        self.assertEqual(config.quirk_settings("B"), QuirkSettings())

    def test_contradictions(self):
        """
        A name both added and removed, current-steps without steps, and
        steps with current-steps removed are refused.
        """
        self.assertConfigErrors([
            (charger(id="T", quirks='["no-ping"]')
             + charger(id="T", connector=2, no_quirks='["no-ping"]'),
             "charger[1].no_quirks", "'no-ping' is also in charger[0].quirks"),
            (charger(quirks='["current-steps"]'), "charger[0].quirks",
             "'current-steps' needs the charger's steps: set current_steps = [...]"),
            (charger(current_steps="[6]", no_quirks='["current-steps"]'),
             "charger[0].current_steps", "set, but charger[0].no_quirks removes 'current-steps'"),
        ])
        settings = parse_config(charger(quirks='["current-steps"]', current_steps="[6]"))
        self.assertEqual(settings.quirk_settings("SN1").add, ("current-steps",))

    def test_shipped_example_documents_the_keys(self):
        """
        The shipped file lists the keys (commented out) and every name.
        """
        text = read("etc", "xxterocpp", "xxterocpp.toml")
        for key in ("quirks", "no_quirks", "current_steps"):
            self.assertRegex(text, rf"(?m)^# {key} = ")
        for name in NAMES:
            self.assertIn(name, text)

    def test_quirks_module_is_plain(self):
        """
        The names the configuration checks come from a module that imports
        nothing of Twisted.
        """
        code = ("import sys, xxterocpp.quirks; "
                "print(sorted(m for m in sys.modules if m.split('.')[0] == 'twisted'))")
        done = subprocess.run([sys.executable, "-c", code], cwd=TOP, capture_output=True,
                              text=True, timeout=60)
        self.assertEqual((done.returncode, done.stdout.strip()), (0, "[]"), done.stderr)
