"""
Tests of the named workarounds (docs/quirks.md#named-workarounds), one class
per workaround: the whole service and a simulated charger (L{tests.sim})
that misbehaves the way the workaround is for, over loopback WebSockets, on
a test-driven clock (L{tests.service.ClockedReactor}). With the workaround,
chosen by a registry entry and by the configuration, the session works;
without it, the test shows what goes wrong.
"""

from datetime import datetime, timezone

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import TestCase

from tests.service import LOOPBACK_CONFIG, ClockedReactor, start_service, write_config
from tests.sim import ConfigurationKey, connect_charger
from xxterocpp.control.setup import BOOT_WAIT, MEASURANDS
from xxterocpp.quirks import Entry
from xxterocpp.web.page import render_page
from xxterocpp.web.status import snapshot

CONFIG = LOOPBACK_CONFIG + """
[[tag]]
id = "TAG1"
"""


def table(charger_id, **keys):
    """
    A C{[[charger]]} table of 16 A (C{keys} as TOML values: strings, or
    lists of strings or numbers).
    """
    lines = [f'id = "{charger_id}"', "max_current = 16"]
    for key, value in keys.items():
        if isinstance(value, (list, tuple)):
            value = "[" + ", ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in value) + "]"
        elif isinstance(value, str):
            value = f'"{value}"'
        lines.append(f"{key} = {value}")
    return "\n[[charger]]\n" + "\n".join(lines) + "\n"


def entry(name, quirks, parameters=None, **match):
    """
    A registry entry of a test, matching C{match} (vendor, model, firmware).
    """
    return Entry(name, quirks=quirks, fact="a charger of the test", sources=["example/test#1"],
                 parameters=parameters or {}, **match)


class WorkaroundHarness:
    """
    The service on a L{ClockedReactor}, with simulated chargers and the
    log lines of the test (a mixin of the L{TestCase}s below).
    """

    timeout = 60

    def setUp(self):
        self.events = self.enterContext(capturedLogs())

    @property
    def lines(self):
        """
        The text of every event logged since the set-up.
        """
        return [formatEvent(event) for event in self.events]

    @defer.inlineCallbacks
    def start(self, *tables, registry=None, sections="", wall=None):
        """
        Start the service with the C{[[charger]]} C{tables}.

        @param registry: registry entries instead of the shipped registry.
        @param sections: TOML replacing the loopback configuration's
            C{key = value} lines of the same name.
        @param wall: the service's system clock, if not the test's clock.
        """
        text = CONFIG
        for line in sections.strip().splitlines():
            key = line.split("=")[0].strip()
            text = "\n".join(line if l.split("=")[0].strip() == key else l
                             for l in text.splitlines())
        self.time = ClockedReactor(self)
        self.service = yield start_service(self, write_config(self, text + "".join(tables)),
                                           on=self.time, wall=wall)
        self.central = self.service.central
        self.controller = self.service.controller
        if registry is not None:
            self.central.workarounds.registry = registry

    @defer.inlineCallbacks
    def connect(self, identity, prepare=None):
        """
        @param prepare: called with the L{SimCharger} before anything else.
        @return: a connected simulated charger, closed at cleanup.
        """
        cp = yield connect_charger(self.service.url, identity, reactor=self.time)
        self.addCleanup(cp.close)
        if prepare is not None:
            prepare(cp)
        return cp

    @defer.inlineCallbacks
    def booted(self, identity, vendor="Sim", model="Sim-1", prepare=None, **boot):
        """
        Connect and boot a simulated charger, and wait for its set-up.

        @param boot: further BootNotification fields (C{firmwareVersion}).
        """
        cp = yield self.connect(identity, prepare)
        yield cp.boot(vendor, model, **boot)
        yield cp.wait_for_call("SendLocalList")
        # One round trip more: the answer to SendLocalList is processed.
        yield cp.heartbeat()
        return cp

    @defer.inlineCallbacks
    def until(self, predicate, timeout=5):
        """
        Wait (on the wall clock, bounded) until C{predicate()} holds: for
        what the service learns from a closed socket.
        """
        for _ in range(int(timeout / 0.01)):
            if predicate():
                return
            yield deferLater(reactor, 0.01, lambda: None)
        self.fail(f"{predicate} did not come true within {timeout} s")

    def suggested(self, name):
        """
        @return: the log lines suggesting workaround C{name}.
        """
        return [line for line in self.lines if f'quirks = ["{name}"]' in line]

    def actions(self, cp):
        return [action for action, _ in cp.calls_received]

    def reason(self, charger_id, name):
        """
        @return: why workaround C{name} is in force for the charger.
        """
        return self.central.chargers[charger_id].quirks.get(name).reason


class ChosenTests(WorkaroundHarness, TestCase):
    """
    Each charger's workarounds are chosen from its boot data and its
    configuration: after a BootNotification, at start-up from the stored
    boot, after a reload; the domain keeps them on its L{Charger}.
    """

    @defer.inlineCallbacks
    def test_after_boot_at_start_up_and_reload(self):
        """
        An EN+ gets the registry's two workarounds once it booted, keeps
        them across a restart (before it reconnects) and a reload applies a
        changed C{no_quirks}; the log says what is in force and why.
        """
        path = write_config(self, CONFIG + table("CP1"))
        self.time = ClockedReactor(self)
        self.service = yield start_service(self, path, on=self.time)
        charger = self.service.central.chargers["CP1"]
        self.assertEqual(list(charger.quirks), [])
        cp = yield connect_charger(self.service.url, "CP1", reactor=self.time)
        self.addCleanup(cp.close)
        yield cp.boot("EN+", "37", firmwareVersion="1.1.805")
        self.assertEqual([(q.name, q.reason) for q in charger.quirks], [
            ("pause-ends-session", "registry: en-plus (lbbrhzn/ocpp#211)"),
            ("no-ping", "registry: en-plus (lbbrhzn/ocpp#211)")])
        self.assertIn("CP1: workarounds in force: pause-ends-session (registry: en-plus "
                      "(lbbrhzn/ocpp#211)); no-ping (registry: en-plus (lbbrhzn/ocpp#211))",
                      self.lines)
        yield cp.close()
        yield self.service.stopService()

        self.service = yield start_service(self, path, on=self.time)
        charger = self.service.central.chargers["CP1"]
        self.assertFalse(charger.connected)
        self.assertEqual([q.name for q in charger.quirks], ["pause-ends-session", "no-ping"])
        with open(path, "a") as f:
            f.write('no_quirks = ["no-ping"]\nquirks = ["keepalive"]\n')
        self.assertTrue(self.service.reload())
        self.assertEqual([(q.name, q.reason) for q in charger.quirks], [
            ("pause-ends-session", "registry: en-plus (lbbrhzn/ocpp#211)"),
            ("keepalive", "configuration")])

    @defer.inlineCallbacks
    def test_configured_before_any_boot(self):
        """
        What the configuration adds holds from the start, before the
        charger ever booted.
        """
        yield self.start(table("CP1", quirks=["keepalive"]))
        self.assertEqual([q.name for q in self.central.chargers["CP1"].quirks], ["keepalive"])


class ShownTests(WorkaroundHarness, TestCase):
    """
    C{/api/status} and the status page show, per charger, the workarounds
    in force and why, and what the central system learned by trial (the
    profile kind that takes limits, the measurands, read-only keys); both
    are kept across a restart.
    """

    def shown(self):
        status = snapshot(self.central, self.controller, None)
        [charger] = status["chargers"]
        page = self.successResultOf(render_page(status, {}, [])).decode()
        return charger["quirks"], charger["learned"], page

    @defer.inlineCallbacks
    def test_status_and_page(self):
        """
        Configured workarounds show before any boot; after an EN+ booted
        and took a limit, the registry's too, the profile kind, the
        measurands it took and its read-only interval key; the same after
        a restart, before it reconnects.
        """
        path = write_config(self, CONFIG + table("CP1", quirks=["keepalive"]))
        self.time = ClockedReactor(self)
        self.service = yield start_service(self, path, on=self.time)
        self.central, self.controller = self.service.central, self.service.controller
        self.assertEqual(self.shown()[:2], (
            [{"name": "keepalive", "reason": "configuration", "parameters": {"interval": 60.0}}],
            {"profile": None, "measurands": None, "read_only": None}))
        read_only = lambda cp: cp.configuration.update(
            MeterValueSampleInterval=ConfigurationKey("30", readonly=True))
        cp = yield self.booted("CP1", prepare=read_only, **EN_PLUS)
        yield self.controller.set_limit("CP1", 1, 10)
        shown = self.shown()
        expected = (
            [{"name": "pause-ends-session", "reason": "registry: en-plus (lbbrhzn/ocpp#211)",
              "parameters": {}},
             {"name": "no-ping", "reason": "registry: en-plus (lbbrhzn/ocpp#211)",
              "parameters": {}},
             {"name": "keepalive", "reason": "configuration", "parameters": {"interval": 60.0}}],
            {"profile": {"purpose": "TxDefaultProfile", "kind": "Absolute", "stack": "max",
                         "unit": "A"},
             "measurands": list(MEASURANDS), "read_only": ["MeterValueSampleInterval"]})
        self.assertEqual(shown[:2], expected)
        for words in ("no-ping (registry: en-plus (lbbrhzn/ocpp#211))",
                      "keepalive (configuration)",
                      "limits as TxDefaultProfile Absolute, stack level max, in A",
                      "measurands " + ", ".join(MEASURANDS),
                      "read-only MeterValueSampleInterval"):
            self.assertIn(words, shown[2])
        yield cp.close()
        yield self.until(lambda: not self.central.chargers["CP1"].connected)
        yield self.service.stopService()

        self.service = yield start_service(self, path, on=self.time)
        self.central, self.controller = self.service.central, self.service.controller
        self.assertEqual(self.shown()[:2], expected)


#: A StarCharge Aurora's boot, as quoted in docs/quirks.md#no-boot-trigger.
AURORA = {"vendor": "StarCharge", "model": "Aurora", "firmwareVersion": "1.0.0.0.7b107_MG"}


class NoBootTriggerTests(WorkaroundHarness, TestCase):
    """
    C{no-boot-trigger}: TriggerMessage(BootNotification) makes the charger
    drop the connection (control/setup.py).
    """

    @defer.inlineCallbacks
    def test_configured_never_triggered(self):
        """
        A charger that never booted, with the workaround configured, is not
        asked for its BootNotification and stays connected: its session
        works.
        """
        yield self.start(table("CP1", quirks=["no-boot-trigger"]))
        cp = yield self.connect("CP1", lambda cp: cp.drop_after_trigger())
        self.time.advance(BOOT_WAIT + 1)
        started = yield cp.start_transaction(1, "TAG1", 0)
        self.assertEqual(started["idTagInfo"]["status"], "Accepted")
        self.assertNotIn("TriggerMessage", self.actions(cp))
        self.assertTrue(cp.is_open)

    @defer.inlineCallbacks
    def test_without_it_the_trigger_drops_the_connection(self):
        """
        Without the workaround the never-booted charger gets the trigger and
        drops the connection; the log suggests the workaround, once.
        """
        yield self.start(table("CP1"))
        cp = yield self.connect("CP1", lambda cp: cp.drop_after_trigger())
        self.time.advance(BOOT_WAIT + 1)
        yield cp.wait_closed()
        self.assertIn("TriggerMessage", self.actions(cp))
        yield self.until(lambda: not self.central.chargers["CP1"].connected)
        self.assertEqual(len(self.suggested("no-boot-trigger")), 1)
        again = yield self.connect("CP1", lambda cp: cp.drop_after_trigger())
        self.time.advance(BOOT_WAIT + 1)
        yield again.wait_closed()
        yield self.until(lambda: not self.central.chargers["CP1"].connected)
        self.assertEqual(len(self.suggested("no-boot-trigger")), 1)

    @defer.inlineCallbacks
    def test_registry_beats_boot_trigger(self):
        """
        A StarCharge Aurora (registry entry C{starcharge-aurora}) that
        booted before gets no trigger when it reconnects silently, even with
        C{boot-trigger} configured; with the registry's choice removed it
        gets one and drops the connection.
        """
        for removed, triggered in ((), False), (["no-boot-trigger"], True):
            keys = {"quirks": ["boot-trigger"]}
            if removed:
                keys["no_quirks"] = removed
            yield self.start(table("CP1", **keys))
            cp = yield self.booted("CP1", **AURORA)
            self.assertEqual(self.central.chargers["CP1"].quirks.has("no-boot-trigger"),
                             not triggered)
            yield cp.close()
            cp = yield self.connect("CP1", lambda cp: cp.drop_after_trigger())
            self.time.advance(BOOT_WAIT + 1)
            if triggered:
                yield cp.wait_closed()
                self.assertIn("TriggerMessage", self.actions(cp))
            else:
                yield cp.heartbeat()
                self.assertEqual(self.actions(cp), [])
                self.assertTrue(cp.is_open)
                yield cp.close()
            yield self.until(lambda: not self.central.chargers["CP1"].connected)
            yield self.service.stopService()


#: A Wallbox Pulsar Pro's boot, as quoted in docs/quirks.md#boot-trigger.
PULSAR_PRO = {"vendor": "Wall Box Chargers", "model": "PPR1-0-2-4", "firmwareVersion": "6.11.16"}


class BootTriggerTests(WorkaroundHarness, TestCase):
    """
    C{boot-trigger}: a charger that never sends a BootNotification by
    itself is asked for one also when it booted before (control/setup.py).
    """

    @defer.inlineCallbacks
    def reconnect(self, boot):
        """
        Connect a charger that boots only when asked, let it boot, then
        reconnect it.

        @return: the second connection, L{BOOT_WAIT} s after it opened.
        """
        first = yield self.connect("CP1", lambda cp: cp.boot_when_triggered(**boot))
        self.time.advance(BOOT_WAIT + 1)
        yield first.wait_for_call("SendLocalList")
        yield first.close()
        again = yield self.connect("CP1", lambda cp: cp.boot_when_triggered(**boot))
        self.time.advance(BOOT_WAIT + 1)
        yield again.heartbeat()
        return again

    @defer.inlineCallbacks
    def test_registry(self):
        """
        A Wallbox Pulsar Pro on firmware 6 (registry entry
        C{wallbox-pulsar-pro-fw6}) that booted before is asked again when it
        reconnects silently: it boots and is set up again.
        """
        yield self.start(table("CP1"))
        cp = yield self.reconnect(PULSAR_PRO)
        self.assertEqual(self.actions(cp)[0], "TriggerMessage")
        yield cp.wait_for_call("GetConfiguration")

    @defer.inlineCallbacks
    def test_configured(self):
        """
        Configured for another charger, the same.
        """
        yield self.start(table("CP1", quirks=["boot-trigger"]))
        cp = yield self.reconnect({})
        self.assertEqual(self.actions(cp)[0], "TriggerMessage")
        yield cp.wait_for_call("GetConfiguration")

    @defer.inlineCallbacks
    def test_without_it_no_set_up_after_a_reconnect(self):
        """
        Without the workaround the reconnected charger is not asked: it
        never boots again, and what follows a boot (its configuration, its
        limit) never comes, although it may have rebooted.
        """
        yield self.start(table("CP1", no_quirks=["boot-trigger"]))
        cp = yield self.reconnect(PULSAR_PRO)
        self.assertEqual(self.actions(cp), [])


#: A Free2move eSolutions eProWallbox's boot (docs/quirks.md#delay-start-answer).
EPROWALLBOX = {"vendor": "Free2move eSolutions", "model": "F2ME.EPROSE01TXX",
               "firmwareVersion": "2.9.3"}


class DelayStartAnswerTests(WorkaroundHarness, TestCase):
    """
    C{delay-start-answer}: the charger drops the socket after a fast
    answer to its StartTransaction (ocpp/handlers.py).
    """

    @defer.inlineCallbacks
    def start_a_session(self, cp):
        """
        Send a StartTransaction; let a second pass once it has arrived.

        @return: the answer.
        """
        started = cp.start_transaction(1, "TAG1", 0)
        # Served after the StartTransaction: that one is in by now.
        yield cp.heartbeat()
        self.assertNoResult(started)
        self.time.advance(1)
        return (yield started)

    @defer.inlineCallbacks
    def check_the_session_works(self, reason):
        cp = yield self.booted("CP1", prepare=lambda cp: cp.drop_after_fast_answer(), **EPROWALLBOX)
        self.assertTrue(self.reason("CP1", "delay-start-answer").startswith(reason))
        answer = yield self.start_a_session(cp)
        self.assertEqual(answer["idTagInfo"]["status"], "Accepted")
        yield cp.heartbeat()
        self.assertTrue(cp.is_open)
        tx = self.central.chargers["CP1"].connectors[1].transaction
        self.assertEqual(tx.id, answer["transactionId"])

    @defer.inlineCallbacks
    def test_registry(self):
        """
        An eProWallbox (registry entry C{free2move-eprowallbox}) gets its
        answer a second late and keeps the connection; other calls are
        answered meanwhile.
        """
        yield self.start(table("CP1"))
        yield self.check_the_session_works("registry: free2move-eprowallbox")

    @defer.inlineCallbacks
    def test_configured(self):
        """
        Configured, the same.
        """
        yield self.start(table("CP1", quirks=["delay-start-answer"]), registry=())
        yield self.check_the_session_works("configuration")

    @defer.inlineCallbacks
    def test_without_it_the_charger_drops_the_connection(self):
        """
        Without the workaround the answer comes at once and the charger
        drops the connection.
        """
        yield self.start(table("CP1", no_quirks=["delay-start-answer"]))
        cp = yield self.booted("CP1", prepare=lambda cp: cp.drop_after_fast_answer(), **EPROWALLBOX)
        answer = yield cp.start_transaction(1, "TAG1", 0)
        self.assertEqual(answer["idTagInfo"]["status"], "Accepted")
        yield cp.wait_closed()
        yield self.until(lambda: not self.central.chargers["CP1"].connected)


#: An ABB Terra AC's boot (docs/quirks.md#stack-level-zero).
TERRA_AC = {"vendor": "ABB", "model": "CDT_TACW11::NET_WIFI",
            "firmwareVersion": "TAC3Z9119006710273::V1.8.21"}


class StackLevelZeroTests(WorkaroundHarness, TestCase):
    """
    C{stack-level-zero}: the charger takes charging profiles at stack
    level 0 only, although it reports a higher ChargeProfileMaxStackLevel
    (control/chargingprofiles.py).
    """

    @defer.inlineCallbacks
    def limit_and_plan(self):
        """
        Set a limit and, in a session, a Smart Energy Manager plan.

        @return: C{(limit result, plan result, stack levels of every
            SetChargingProfile, which were Rejected)}.
        """
        cp = yield self.booted("CP1", prepare=lambda cp: cp.refuse_stack_levels_above(0),
                               **TERRA_AC)
        limit = yield self.controller.set_limit("CP1", 1, 10)
        started = yield cp.start_transaction(1, "TAG1", 0)
        plan = yield self.controller.set_schedule(
            "CP1", 1, started["transactionId"], datetime(2026, 1, 1, tzinfo=timezone.utc),
            [(0, 8.0), (3600, 16.0)])
        levels = [p["csChargingProfiles"]["stackLevel"]
                  for a, p in cp.calls_received if a == "SetChargingProfile"]
        return limit, plan, levels

    @defer.inlineCallbacks
    def test_registry(self):
        """
        A Terra AC (registry entry C{abb-terra-ac}) gets every profile at
        level 0, the limit and the plan, and takes them all.
        """
        yield self.start(table("CP1"))
        limit, plan, levels = yield self.limit_and_plan()
        self.assertEqual((limit.status, plan.status), ("Accepted", "Accepted"))
        self.assertEqual(set(levels), {0})
        self.assertEqual(self.controller.limit("CP1"), 10.0)

    @defer.inlineCallbacks
    def test_configured(self):
        """
        Configured, the same.
        """
        yield self.start(table("CP1", quirks=["stack-level-zero"]), registry=())
        limit, plan, levels = yield self.limit_and_plan()
        self.assertEqual((limit.status, plan.status), ("Accepted", "Accepted"))
        self.assertEqual(set(levels), {0})

    @defer.inlineCallbacks
    def test_without_it_profiles_are_rejected(self):
        """
        Without the workaround each profile is first sent at the top stack
        level and rejected (the cascade recovers for the limit, at the cost
        of a refused call), and the plan, which has no cascade, is refused.
        """
        yield self.start(table("CP1", no_quirks=["stack-level-zero"]))
        limit, plan, levels = yield self.limit_and_plan()
        self.assertEqual(limit.status, "Accepted")
        self.assertEqual(plan.status, "Rejected")
        self.assertIn(10, levels)


#: NEcharge Pro's steps (docs/quirks.md#current-steps).
STEPS = [6, 8, 10, 13, 16]


class CurrentStepsTests(WorkaroundHarness, TestCase):
    """
    C{current-steps}: the charger takes a few currents only and rounds
    other limits down itself (control/chargingprofiles.py).
    """

    @defer.inlineCallbacks
    def set_12_a(self):
        """
        @return: C{(the limit sent, the limit the central system says is in
            force, the limit the charger really applies)} after asking for
            12 A.
        """
        cp = yield self.booted("CP1", "NEcharge", "Pro",
                               prepare=lambda cp: cp.round_limits_down_to(*STEPS))
        result = yield self.controller.set_limit("CP1", 1, 12)
        self.assertTrue(result.accepted)
        sent = [p["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"]
                for a, p in cp.calls_received if a == "SetChargingProfile"][-1]
        return sent, self.controller.limit("CP1"), cp.limit_in_force()

    @defer.inlineCallbacks
    def test_registry(self):
        """
        With steps from a registry entry, 12 A goes out as 10 A, and the
        limit in force the central system tells is the one the charger
        applies.
        """
        yield self.start(table("CP1"), registry=(entry(
            "necharge", ["current-steps"], {"current-steps": {"steps": STEPS}}, vendor="NEcharge"),))
        self.assertEqual((yield self.set_12_a()), (10, 10.0, 10))

    @defer.inlineCallbacks
    def test_configured(self):
        """
        With C{current_steps} in the configuration, the same; they win over
        a registry entry's.
        """
        yield self.start(table("CP1", current_steps=STEPS), registry=(entry(
            "necharge", ["current-steps"], {"current-steps": {"steps": [6, 16]}},
            vendor="NEcharge"),))
        self.assertEqual((yield self.set_12_a()), (10, 10.0, 10))

    @defer.inlineCallbacks
    def test_without_it_the_limit_in_force_is_wrong(self):
        """
        Without the workaround 12 A goes out, the central system (and the
        bus) says 12 A is in force, and the charger gives 10 A.
        """
        yield self.start(table("CP1"), registry=())
        self.assertEqual((yield self.set_12_a()), (12, 12.0, 10))


#: An EN+ charger's boot (docs/quirks.md#pause-ends-session).
EN_PLUS = {"vendor": "EN+", "model": "37", "firmwareVersion": "1.1.805"}


class PauseEndsSessionTests(WorkaroundHarness, TestCase):
    """
    C{pause-ends-session}: the charger ends its transaction when the limit
    drops to 0 A, and takes a remote start in Finishing (control/limits.py).
    """

    def limits_sent(self, cp):
        return [p["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"]
                for a, p in cp.calls_received if a == "SetChargingProfile"]

    @defer.inlineCallbacks
    def check_pause_and_resume(self):
        """
        Pause: the session is stopped, no 0 A goes out; resume: the limit
        and a remote start with the session's tag, and a session runs again.
        """
        cp = yield self.booted("CP1", prepare=lambda cp: cp.end_transaction_below(6), **EN_PLUS)
        yield cp.status(1, "Charging")
        started = yield cp.start_transaction(1, "TAG1", 0)
        paused = yield self.controller.pause("CP1")
        self.assertTrue(paused.accepted)
        unique_id, stop = yield cp.wait_for_call("RemoteStopTransaction")
        self.assertEqual(stop, {"transactionId": started["transactionId"]})
        yield cp.stop_transaction(started["transactionId"], 1000, reason="Remote")
        yield cp.status(1, "Finishing")
        self.assertEqual(self.controller.limit("CP1"), 0.0)
        resumed = yield self.controller.resume("CP1")
        self.assertTrue(resumed.accepted)
        unique_id, start = yield cp.wait_for_call("RemoteStartTransaction")
        self.assertEqual(start, {"connectorId": 1, "idTag": "TAG1"})
        again = yield cp.start_transaction(1, "TAG1", 1000)
        tx = self.central.chargers["CP1"].connectors[1].transaction
        self.assertEqual((tx.id, tx.running), (again["transactionId"], True))
        self.assertNotIn(0, self.limits_sent(cp))
        self.assertEqual(self.limits_sent(cp)[-1], 16)
        self.assertEqual(self.controller.limit("CP1"), 16.0)

    @defer.inlineCallbacks
    def test_registry(self):
        """
        An EN+ (registry entry C{en-plus}): pause and resume work.
        """
        yield self.start(table("CP1"))
        yield self.check_pause_and_resume()

    @defer.inlineCallbacks
    def test_configured(self):
        """
        Configured, the same.
        """
        yield self.start(table("CP1", quirks=["pause-ends-session"]), registry=())
        yield self.check_pause_and_resume()

    @defer.inlineCallbacks
    def test_a_session_started_while_paused_is_stopped(self):
        """
        Paused with no session: nothing is sent; a session started locally
        meanwhile is stopped, and started again by the resume.
        """
        yield self.start(table("CP1"))
        cp = yield self.booted("CP1", prepare=lambda cp: cp.end_transaction_below(6), **EN_PLUS)
        yield self.controller.pause("CP1")
        self.assertEqual(self.controller.limit("CP1"), 0.0)
        yield cp.status(1, "Preparing")
        started = yield cp.start_transaction(1, "TAG1", 0)
        unique_id, stop = yield cp.wait_for_call("RemoteStopTransaction")
        self.assertEqual(stop, {"transactionId": started["transactionId"]})
        self.assertNotIn(0, self.limits_sent(cp))

    @defer.inlineCallbacks
    def test_steered_to_0_a_is_the_least_current(self):
        """
        The Smart Energy Manager's 0 A goes out as 6 A: the session is kept.
        """
        yield self.start(table("CP1"))
        cp = yield self.booted("CP1", prepare=lambda cp: cp.end_transaction_below(6), **EN_PLUS)
        yield cp.status(1, "Charging")
        yield cp.start_transaction(1, "TAG1", 0)
        result = yield self.controller.steer("CP1", 1, 0)
        self.assertTrue(result.accepted)
        self.assertEqual(self.limits_sent(cp)[-1], 6)
        self.assertNotIn("RemoteStopTransaction", self.actions(cp))
        yield cp.heartbeat()
        self.assertTrue(self.central.chargers["CP1"].connectors[1].transaction.running)

    @defer.inlineCallbacks
    def test_a_smart_start_is_not_at_0_a(self):
        """
        A smart session starts with the least current until it is planned,
        not with 0 A.
        """
        yield self.start(table("CP1", smart_tag="SMART"))
        cp = yield self.booted("CP1", **EN_PLUS)
        result = yield self.controller.start("CP1", smart=True)
        self.assertTrue(result.accepted)
        unique_id, start = yield cp.wait_for_call("RemoteStartTransaction")
        schedule = start["chargingProfile"]["chargingSchedule"]
        self.assertEqual(schedule["chargingSchedulePeriod"][0]["limit"], 6)

    @defer.inlineCallbacks
    def test_without_it_the_session_is_gone_after_the_pause(self):
        """
        Without the workaround the pause sends 0 A, the charger ends the
        session, and the resume's limit finds none: nothing charges. The log
        suggests the workaround.
        """
        yield self.start(table("CP1", no_quirks=["pause-ends-session"]))
        cp = yield self.booted("CP1", prepare=lambda cp: cp.end_transaction_below(6), **EN_PLUS)
        yield cp.status(1, "Charging")
        yield cp.start_transaction(1, "TAG1", 0)
        yield self.controller.pause("CP1")
        self.assertEqual(self.limits_sent(cp)[-1], 0)
        yield self.until(lambda: self.central.chargers["CP1"].connectors[1].transaction is None)
        self.assertEqual(len(self.suggested("pause-ends-session")), 1)
        yield self.controller.resume("CP1")
        yield cp.heartbeat()
        self.assertNotIn("RemoteStartTransaction", self.actions(cp))
        self.assertIsNone(self.central.chargers["CP1"].connectors[1].transaction)


class TriggerMeterValuesTests(WorkaroundHarness, TestCase):
    """
    C{trigger-meter-values}: the charger sends meter values during a
    session only when asked (control/meterwatch.py).
    """

    @staticmethod
    def prepare(cp):
        # It samples every 10 s and will not be told otherwise.
        cp.configuration["MeterValueSampleInterval"] = ConfigurationKey("10", readonly=True)
        cp.meter_values_when_triggered(1500)

    def triggers(self, cp):
        return [p for a, p in cp.calls_received
                if a == "TriggerMessage" and p["requestedMessage"] == "MeterValues"]

    @defer.inlineCallbacks
    def check_energy_comes(self):
        """
        20 s of silence in a session: TriggerMessage(MeterValues), and the
        session's energy is known; a reading puts the next one off.
        """
        cp = yield self.booted("CP1", "SyncEV", "Compact", prepare=self.prepare)
        yield cp.start_transaction(1, "TAG1", 0)
        self.time.advance(19)
        yield cp.heartbeat()
        self.assertEqual(self.triggers(cp), [])
        self.time.advance(1)
        unique_id, payload = yield cp.wait_for_call("TriggerMessage")
        self.assertEqual(payload, {"requestedMessage": "MeterValues", "connectorId": 1})
        tx = self.central.chargers["CP1"].connectors[1].transaction
        yield self.until(lambda: tx.energy_wh == 1500)
        self.time.advance(19)
        yield cp.heartbeat()
        self.assertEqual(len(self.triggers(cp)), 1)
        self.time.advance(1)
        yield cp.wait_for_call("TriggerMessage")

    @defer.inlineCallbacks
    def test_registry(self):
        """
        By a registry entry (none is shipped: no SyncEV boot is public).
        """
        yield self.start(table("CP1"), registry=(
            entry("syncev", ["trigger-meter-values"], vendor="SyncEV"),))
        yield self.check_energy_comes()

    @defer.inlineCallbacks
    def test_configured(self):
        """
        Configured, the same.
        """
        yield self.start(table("CP1", quirks=["trigger-meter-values"]))
        yield self.check_energy_comes()

    @defer.inlineCallbacks
    def test_without_it_the_session_has_no_energy(self):
        """
        Without the workaround nobody asks: a minute into the session its
        energy is still unknown.
        """
        yield self.start(table("CP1"))
        cp = yield self.booted("CP1", "SyncEV", "Compact", prepare=self.prepare)
        yield cp.start_transaction(1, "TAG1", 0)
        self.time.advance(60)
        yield cp.heartbeat()
        self.assertEqual(self.triggers(cp), [])
        self.assertEqual(self.central.chargers["CP1"].connectors[1].transaction.energy_wh, None)


class NoPingTests(WorkaroundHarness, TestCase):
    """
    C{no-ping}: the charger never answers WebSocket pings (ocpp/connquirks.py);
    the service pings every second here.
    """

    SECTIONS = """
ping_interval = 1
heartbeat_interval = 10
"""

    @defer.inlineCallbacks
    def check_no_pings_and_silence(self, cp):
        """
        The charger is not pinged and stays connected while it talks; 30 s
        (three heartbeat intervals) of silence and it counts as gone.
        """
        # One may have left before the boot told the service (a slow machine).
        before = cp.pings_received
        self.assertLessEqual(before, 1)
        yield deferLater(reactor, 2.5, lambda: None)
        self.assertEqual(cp.pings_received, before)
        for _ in range(3):
            self.time.advance(20)
            yield cp.heartbeat()
        self.time.advance(29)
        yield cp.heartbeat()
        self.time.advance(29.9)
        self.assertTrue(cp.is_open)
        self.time.advance(0.1)
        yield cp.wait_closed()
        yield self.until(lambda: not self.central.chargers["CP1"].connected)
        self.assertEqual(self.suggested("no-ping"), [])

    @defer.inlineCallbacks
    def test_registry(self):
        """
        An EN+ (registry entry C{en-plus}), known once it booted: the pings
        already scheduled for its first connection are called off.
        """
        yield self.start(table("CP1"), sections=self.SECTIONS)
        cp = yield self.booted("CP1", prepare=lambda cp: cp.ignore_pings(), **EN_PLUS)
        yield self.check_no_pings_and_silence(cp)

    @defer.inlineCallbacks
    def test_configured(self):
        """
        Configured, the same, from the start of the connection.
        """
        yield self.start(table("CP1", quirks=["no-ping"]), sections=self.SECTIONS, registry=())
        cp = yield self.connect("CP1", lambda cp: cp.ignore_pings())
        yield self.check_no_pings_and_silence(cp)

    @defer.inlineCallbacks
    def test_steps_of_the_system_clock_are_no_silence(self):
        """
        The silence is counted on the monotonic clock: the system clock
        stepped 56 years forward right after the charger spoke does not
        make it count as gone, nor does one stepped back an hour and set
        right again keep a silent one connected for longer.
        """
        offset = [0.0]
        yield self.start(table("CP1", quirks=["no-ping"]), sections=self.SECTIONS,
                         registry=(), wall=lambda: self.time.seconds() + offset[0])
        cp = yield self.connect("CP1", lambda cp: cp.ignore_pings())
        yield cp.heartbeat()
        self.time.advance(15)
        yield cp.heartbeat()
        offset[0] = 56 * 365 * 86400
        self.time.advance(15)
        yield cp.heartbeat()
        self.time.advance(29)
        yield cp.heartbeat()
        self.assertTrue(cp.is_open)
        # Back an hour: the clock is wrong, the time given out moves on
        # from the trusted one; then right again (an hour less).
        offset[0] -= 3600
        self.time.advance(10)
        yield cp.heartbeat()
        self.assertFalse(self.central.time.ok)
        offset[0] += 3600
        yield cp.heartbeat()
        self.assertTrue(self.central.time.ok)
        self.time.advance(29.9)
        self.assertTrue(cp.is_open)
        self.time.advance(0.1)
        yield cp.wait_closed()

    @defer.inlineCallbacks
    def test_without_it_the_charger_is_dropped(self):
        """
        Without the workaround the unanswered ping drops the connection; the
        log suggests the workaround.
        """
        yield self.start(table("CP1", no_quirks=["no-ping"]), sections=self.SECTIONS)
        cp = yield self.booted("CP1", prepare=lambda cp: cp.ignore_pings(), **EN_PLUS)
        yield cp.wait_closed()
        self.assertGreater(cp.pings_received, 0)
        yield self.until(lambda: not self.central.chargers["CP1"].connected)
        self.assertEqual(len(self.suggested("no-ping")), 1)


#: An Ocular LTE Plus v3's boot (docs/quirks.md#keepalive).
OCULAR = {"vendor": "BS AC EV Charger", "model": "BS-EV22", "firmwareVersion": "448.3251.0Q03197"}


class KeepaliveTests(WorkaroundHarness, TestCase):
    """
    C{keepalive}: the charger closes a connection idle for about 110 s
    (ocpp/connquirks.py); the service sends no pings of its own here
    (C{ping_interval = 0}).
    """

    @defer.inlineCallbacks
    def check_kept_open(self, cp, interval, traffic):
        """
        Every C{interval} seconds C{traffic()} grows: over 110 s pass and
        the charger stays connected.
        """
        for n in range(1, 4):
            self.time.advance(interval)
            yield self.until(lambda: traffic() == n)
        self.assertGreater(3 * interval, 110)
        self.assertTrue(cp.is_open)

    @defer.inlineCallbacks
    def test_registry(self):
        """
        An Ocular LTE Plus v3 (registry entry C{ocular-lte-plus}) is pinged
        every 60 s.
        """
        yield self.start(table("CP1"))
        cp = yield self.booted("CP1", prepare=lambda cp: cp.close_when_idle(110), **OCULAR)
        yield self.check_kept_open(cp, 60, lambda: cp.pings_received)

    @defer.inlineCallbacks
    def test_registry_interval(self):
        """
        Wallbox firmware 6.7 (registry entry C{wallbox-fw6.7}) drops an idle
        connection within 30 s: pinged every 20 s.
        """
        yield self.start(table("CP1"))
        cp = yield self.booted("CP1", "Wall Box Chargers", "PLP1-0-2-4",
                               prepare=lambda cp: cp.close_when_idle(30), firmwareVersion="6.7.38")
        for n in range(1, 4):
            self.time.advance(20)
            yield self.until(lambda: cp.pings_received == n)
        self.assertTrue(cp.is_open)

    @defer.inlineCallbacks
    def test_configured(self):
        """
        Configured, the same.
        """
        yield self.start(table("CP1", quirks=["keepalive"]), registry=())
        cp = yield self.connect("CP1", lambda cp: cp.close_when_idle(110))
        yield self.check_kept_open(cp, 60, lambda: cp.pings_received)

    @defer.inlineCallbacks
    def test_configured_with_no_ping(self):
        """
        With C{no-ping} too, the traffic is a TriggerMessage(Heartbeat).
        """
        yield self.start(table("CP1", quirks=["keepalive", "no-ping"]), registry=())
        cp = yield self.booted("CP1", prepare=lambda cp: cp.close_when_idle(110))
        yield self.check_kept_open(cp, 60, lambda: cp.calls_received.count(
            ("TriggerMessage", {"requestedMessage": "Heartbeat"})))
        self.assertEqual(cp.pings_received, 0)

    @defer.inlineCallbacks
    def test_without_it_the_charger_closes_the_connection(self):
        """
        Without the workaround nothing goes to an idle charger and it
        closes the connection.
        """
        yield self.start(table("CP1", no_quirks=["keepalive"]))
        cp = yield self.booted("CP1", prepare=lambda cp: cp.close_when_idle(110), **OCULAR)
        self.time.advance(110)
        yield cp.wait_closed()
        self.assertEqual(cp.pings_received, 0)
        yield self.until(lambda: not self.central.chargers["CP1"].connected)


#: A Grizzl-E's boot with firmware 5.633 (docs/quirks.md#session-register).
GRIZZL_E = {"vendor": "United Chargers", "model": "GRS-48", "firmwareVersion": "5.633"}


class SessionRegisterTests(WorkaroundHarness, TestCase):
    """
    C{session-register}: the energy register of the charger's MeterValues
    restarts at 0 for each session, while meterStart is the register of its
    meter (domain/book.py).
    """

    @defer.inlineCallbacks
    def two_sessions(self, boot):
        """
        A session from 1,000,000 Wh with a reading of 800 and a stop at
        1500 (the session's register), then one from 1,001,500 with a
        reading of 300 and a stop at 1,001,900 (the meter's).

        @return: the energy of each session so far and at its stop, and as
            the store has it.
        """
        cp = yield self.booted("CP1", **boot)
        energies = []
        for start, reading, stop in (1_000_000, 800, 1500), (1_001_500, 300, 1_001_900):
            started = yield cp.start_transaction(1, "TAG1", start)
            yield cp.meter_values(1, started["transactionId"], energy_wh=reading)
            tx = self.central.chargers["CP1"].connectors[1].transaction
            energies.append(tx.energy_wh)
            yield cp.stop_transaction(started["transactionId"], stop)
            energies.append(tx.energy_wh)
        records = yield self.service.store.query_transactions()
        return energies, sorted(round(r.energy_wh) for r in records)

    @defer.inlineCallbacks
    def test_registry(self):
        """
        A Grizzl-E on firmware 5.633 (registry entry C{grizzl-e-5.633}):
        800 Wh so far, 1500 Wh at the stop; 300, then 400 (meterStop -
        meterStart, which is not negative).
        """
        yield self.start(table("CP1"))
        self.assertEqual((yield self.two_sessions(GRIZZL_E)), ([800, 1500, 300, 400], [400, 1500]))

    @defer.inlineCallbacks
    def test_configured(self):
        """
        Configured (a Vestel EVC04), the same.
        """
        yield self.start(table("CP1", quirks=["session-register"]), registry=())
        boot = {"vendor": "Vestel", "model": "EVC04"}
        self.assertEqual((yield self.two_sessions(boot)), ([800, 1500, 300, 400], [400, 1500]))

    @defer.inlineCallbacks
    def test_without_it_the_energy_is_wrong(self):
        """
        Without the workaround the first session shows 0 Wh throughout and
        is booked with 0 Wh.
        """
        yield self.start(table("CP1", no_quirks=["session-register"]))
        self.assertEqual((yield self.two_sessions(GRIZZL_E)), ([0, 0, 0, 400], [0, 400]))


class LenientAnswersTests(WorkaroundHarness, TestCase):
    """
    C{lenient-answers}: the charger answers some calls with broken JSON
    (ocpp/rpc.py). Answers that are JSON objects but break the schema are
    read leniently from every charger (docs/quirks.md#q13).
    """

    def tolerated(self):
        return [line for line in self.lines if "answer tolerated" in line]

    @defer.inlineCallbacks
    def check_answers_taken(self, boot):
        """
        Two unlocks answered with broken JSON both succeed; the log says so
        once.
        """
        yield self.booted("CP1", prepare=lambda cp: cp.answer_with_broken_json(
            "UnlockConnector", "Unlocked"), **boot)
        for _ in range(2):
            result = yield self.controller.unlock("CP1")
            self.assertEqual((result.accepted, result.status), (True, "Unlocked"))
        self.assertEqual(len(self.tolerated()), 1)
        self.assertIn("no valid JSON", self.tolerated()[0])

    @defer.inlineCallbacks
    def test_registry(self):
        """
        A Grizzl-E on firmware 5 (registry entry C{grizzl-e-fw5}).
        """
        yield self.start(table("CP1"))
        yield self.check_answers_taken(
            {"vendor": "United Chargers", "model": "GRS-48", "firmwareVersion": "05.43"})

    @defer.inlineCallbacks
    def test_configured(self):
        """
        Configured, the same.
        """
        yield self.start(table("CP1", quirks=["lenient-answers"]), registry=())
        yield self.check_answers_taken({})

    @defer.inlineCallbacks
    def test_without_it_the_call_times_out(self):
        """
        Without the workaround the broken answer is a malformed frame: the
        unlock waits for the call timeout and fails.
        """
        yield self.start(table("CP1", no_quirks=["lenient-answers"]))
        cp = yield self.booted("CP1", prepare=lambda cp: cp.answer_with_broken_json(
            "UnlockConnector", "Unlocked"), vendor="United Chargers", model="GRS-48",
            firmwareVersion="05.43")
        unlocked = self.controller.unlock("CP1")
        yield cp.wait_for_call("UnlockConnector")
        yield cp.heartbeat()
        self.assertNoResult(unlocked)
        self.time.advance(5)
        result = yield unlocked
        self.assertEqual(result.status, "Timeout")
        self.assertTrue([line for line in self.lines if "malformed frame" in line])


#: An Autel MaxiCharger's boot (docs/quirks.md#finishing-recovery).
MAXICHARGER = {"vendor": "Autel", "model": "MaxiChargerAC",
               "firmwareVersion": "PFA0102|V0.00.00|V1.38.00||2.4.3.0"}


class FinishingRecoveryTests(WorkaroundHarness, TestCase):
    """
    C{finishing-recovery}: after a remote stop the charger stays in
    Finishing and refuses a new session (control/finishing.py).
    """

    @defer.inlineCallbacks
    def stopped(self, boot):
        """
        @return: a charger whose session was stopped remotely, in Finishing.
        """
        cp = yield self.booted("CP1", prepare=lambda cp: cp.stuck_in_finishing_after_remote_stop(),
                               **boot)
        yield cp.status(1, "Charging")
        yield cp.start_transaction(1, "TAG1", 0)
        result = yield self.controller.stop("CP1")
        self.assertTrue(result.accepted)
        yield self.until(lambda: self.central.point_status("CP1", 1)[0] == "Finishing")
        return cp

    @defer.inlineCallbacks
    def check_recovered(self, cp):
        """
        A minute in Finishing: unlock, then an availability cycle; a new
        session can start.
        """
        self.time.advance(59)
        yield cp.heartbeat()
        self.assertNotIn("UnlockConnector", self.actions(cp))
        self.time.advance(1)
        yield cp.wait_for_call("UnlockConnector")
        unique_id, inoperative = yield cp.wait_for_call("ChangeAvailability")
        unique_id, operative = yield cp.wait_for_call("ChangeAvailability")
        self.assertEqual([inoperative["type"], operative["type"]], ["Inoperative", "Operative"])
        yield self.until(lambda: self.central.point_status("CP1", 1)[0] == "Preparing")
        result = yield self.controller.start("CP1")
        self.assertEqual(result.status, "Accepted")

    @defer.inlineCallbacks
    def test_registry(self):
        """
        An Autel MaxiCharger (registry entry C{autel-maxicharger}).
        """
        yield self.start(table("CP1"))
        cp = yield self.stopped(MAXICHARGER)
        yield self.check_recovered(cp)

    @defer.inlineCallbacks
    def test_configured(self):
        """
        Configured, the same.
        """
        yield self.start(table("CP1", quirks=["finishing-recovery"]), registry=())
        cp = yield self.stopped({})
        yield self.check_recovered(cp)

    @defer.inlineCallbacks
    def test_not_when_it_leaves_finishing(self):
        """
        Unplugged within the minute: nothing is sent.
        """
        yield self.start(table("CP1"))
        cp = yield self.stopped(MAXICHARGER)
        yield cp.status(1, "Available")
        self.time.advance(120)
        yield cp.heartbeat()
        self.assertNotIn("UnlockConnector", self.actions(cp))

    @defer.inlineCallbacks
    def test_without_it_no_new_session(self):
        """
        Without the workaround the connector stays in Finishing and the
        next start is refused.
        """
        yield self.start(table("CP1", no_quirks=["finishing-recovery"]))
        cp = yield self.stopped(MAXICHARGER)
        self.time.advance(120)
        yield cp.heartbeat()
        self.assertNotIn("UnlockConnector", self.actions(cp))
        result = yield self.controller.start("CP1")
        self.assertEqual(result.status, "Rejected")
