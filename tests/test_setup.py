"""
Tests of L{xxterocpp.control.setup}: what follows a BootNotification, the
bounded set-up queue and the boot watchdog, against a scripted charger on a
fake clock.
"""

from twisted.trial.unittest import SynchronousTestCase

from tests.test_control import CONFIG, CONFIGURATION, ControllerHarness, ScriptedCharger
from xxterocpp.control.setup import MEASURANDS, SETUP_CONCURRENCY
from xxterocpp.domain.events import ChargerBooted, LimitChanged


class SetUpTests(ControllerHarness, SynchronousTestCase):
    """
    The post-boot set-up.
    """

    def test_post_boot_configuration(self):
        """
        Nothing is sent before the BootNotification is answered; then the
        configuration is read once, the measurands and the interval set,
        the limit (normal_current) applied and the local list sent.
        """
        cp = self.connect()
        first_call = next(i for i, f in enumerate(cp.frames) if f[0] == 2)
        self.assertEqual(cp.frames[0][:2], [3, "boot"])
        self.assertGreater(first_call, 0)
        self.assertEqual(cp.actions(), [
            "GetConfiguration", "ChangeConfiguration", "ChangeConfiguration",
            "SetChargingProfile", "GetLocalListVersion", "SendLocalList"])
        self.assertEqual(cp.payloads("ChangeConfiguration"), [
            {"key": "MeterValuesSampledData", "value": ",".join(MEASURANDS)},
            {"key": "MeterValueSampleInterval", "value": "60"}])
        self.assertEqual(self.profile(cp.payloads("SetChargingProfile")[0]),
                         (1, "TxDefaultProfile", "Absolute", 8, "A", 16.0))
        start = cp.payloads("SetChargingProfile")[0]["csChargingProfiles"]["chargingSchedule"][
            "startSchedule"]
        self.assertLess(start, "2026-01-01T00:00:00")
        self.assertEqual(self.controller.limit("CP1"), 16.0)
        self.assertIn(LimitChanged("CP1", 1, 16.0), self.events)
        local = cp.payloads("SendLocalList")[0]
        self.assertEqual((local["listVersion"], local["updateType"]), (1, "Full"))
        self.assertEqual(local["localAuthorizationList"],
                         [{"idTag": "GOOD", "idTagInfo": {"status": "Accepted"}}])

    def test_boot_at_the_maximum_sends_no_charging_profile(self):
        """
        A point whose limit is its max_current gets no SetChargingProfile
        after a boot (the first profile a charger sees is one somebody asked
        for); the maximum is the limit in force.
        """
        self.config = CONFIG.replace("normal_current = 16\n", "")
        self.start()
        cp = self.connect()
        self.settle()
        self.assertNotIn("SetChargingProfile", cp.actions())
        self.assertIn("SendLocalList", cp.actions())
        self.assertEqual(self.controller.limit("CP1"), 32.0)
        self.assertIn(LimitChanged("CP1", 1, 32.0), self.events)

    def test_boot_after_a_limit_the_charger_still_has(self):
        """
        The maximum asked for while the charger held a lower limit goes out
        at its next boot; a limit below the maximum always does.
        """
        cp = self.connect()
        self.settle()
        self.assertEqual(self.controller.limit("CP1"), 16.0)
        self.central.connections.disconnected("CP1", cp.session)
        self.controller.fast("CP1")
        cp = self.connect()
        self.settle()
        self.assertEqual([self.profile(p)[-1] for p in cp.payloads("SetChargingProfile")], [32.0])
        cp.take()
        cp.boot()
        self.settle()
        self.assertNotIn("SetChargingProfile", cp.actions())
        self.controller.normal("CP1")
        self.settle()
        cp.take()
        cp.boot()
        self.settle()
        self.assertEqual([self.profile(p)[-1] for p in cp.payloads("SetChargingProfile")], [16.0])

    def test_settings_already_right_are_not_sent(self):
        """
        Measurands and interval already as wanted: no ChangeConfiguration.
        """
        cp = self.connect(configuration=dict(
            CONFIGURATION, MeterValuesSampledData=",".join(reversed(MEASURANDS)),
            MeterValueSampleInterval="60"))
        self.assertNotIn("ChangeConfiguration", cp.actions())

    def test_measurands_partially_accepted(self):
        """
        docs/quirks.md#q33: the whole list rejected, then grown one measurand at a
        time; an unsupported one is left out.
        """
        cp = ScriptedCharger(self.central, self.clock)
        cp.answers["ChangeConfiguration"] = lambda p: {
            "status": "Rejected" if "Current.Offered" in p["value"] else "Accepted"}
        cp.boot()
        values = [p["value"] for p in cp.payloads("ChangeConfiguration")
                  if p["key"] == "MeterValuesSampledData"]
        self.assertEqual(values, [
            ",".join(MEASURANDS),
            "Energy.Active.Import.Register",
            "Energy.Active.Import.Register,Current.Import",
            "Energy.Active.Import.Register,Current.Import,Power.Active.Import",
            ",".join(MEASURANDS)])
        self.assertEqual(self.central.chargers["CP1"].configuration[
            "MeterValuesSampledData"].value,
            "Energy.Active.Import.Register,Current.Import,Power.Active.Import")

    def test_reboot_required_is_accepted(self):
        """
        RebootRequired counts as accepted: no retries.
        """
        cp = ScriptedCharger(self.central, self.clock)
        cp.answers["ChangeConfiguration"] = {"status": "RebootRequired"}
        cp.boot()
        self.assertEqual(len(cp.payloads("ChangeConfiguration")), 2)

    def test_set_ups_after_a_mass_boot_are_bounded(self):
        """
        When many chargers boot at once (a controller reboot), at most
        SETUP_CONCURRENCY of them are being set up at a time, in boot order;
        each one finished lets the next one start, and all are set up.
        """
        n = SETUP_CONCURRENCY + 8
        self.start_fleet(n)
        chargers = [ScriptedCharger(self.central, self.clock, charger_id=f"CP{i}")
                    for i in range(n)]
        for cp in chargers:
            cp.answers["GetConfiguration"] = None  # held: answered below
            cp.boot()
        self.settle()
        asked = [cp for cp in chargers if cp.actions()]
        self.assertEqual(asked, chargers[:SETUP_CONCURRENCY])
        self.assertEqual([cp.actions() for cp in asked], [["GetConfiguration"]] * len(asked))
        # The first answers: its set-up goes on to the end, the next starts.
        first = chargers[0]
        first.answer(first.calls[0][0], {"configurationKey": []})
        self.settle()
        self.assertIn("SetChargingProfile", first.actions())
        self.assertEqual(chargers[SETUP_CONCURRENCY].actions(), ["GetConfiguration"])
        self.assertEqual(chargers[SETUP_CONCURRENCY + 1].actions(), [])
        # The others time out on GetConfiguration, finish, and make room.
        for _ in range(3):
            self.clock.advance(5)
            self.settle()
        for cp in chargers:
            self.assertEqual(cp.actions().count("GetConfiguration"), 1, cp.session.identity)
            self.assertEqual(cp.actions().count("SetChargingProfile"), 1, cp.session.identity)

    def test_set_ups_that_end_at_once_do_not_recurse(self):
        """
        Set-ups ending synchronously (chargers gone again, the service
        stopping) start the next ones from a loop, not by recursion: a mass
        boot of chargers that all went away does not hit the recursion limit.
        """
        n = 3000
        self.start_fleet(n)
        # Set-ups in flight, the charger never answering...
        for i in range(SETUP_CONCURRENCY):
            cp = ScriptedCharger(self.central, self.clock, charger_id=f"CP{i}")
            cp.answers["GetConfiguration"] = None
            cp.boot()
        # ... the others booted, then gone: queued.
        for i in range(SETUP_CONCURRENCY, n):
            self.central.emit(ChargerBooted(f"CP{i}"))
        self.settle()
        self.assertEqual(len(self.controller._parts.setup.queue), n - SETUP_CONCURRENCY)
        # The calls time out; the queued set-ups end at once, one after another.
        self.clock.advance(5)
        self.settle()
        self.assertEqual(self.flushLoggedErrors(), [])
        setup = self.controller._parts.setup
        self.assertEqual((setup.queue, setup.running), ({}, set()))

    def test_boots_during_the_set_up_give_one_more_run(self):
        """
        docs/quirks.md#q8 (reboot loops): boots arriving while the set-up after the
        previous one runs are served by a single further set-up.
        """
        cp = self.connect(boot=False)
        cp.answers["GetConfiguration"] = None
        cp.boot()
        cp.boot()
        cp.boot()
        self.settle()
        self.assertEqual(cp.actions(), ["GetConfiguration"])
        cp.answers["GetConfiguration"] = {"configurationKey": []}
        cp.answer(cp.calls[0][0], {"configurationKey": []})
        self.settle()
        self.assertEqual(cp.actions().count("GetConfiguration"), 2)
        self.assertEqual(cp.actions().count("SetChargingProfile"), 2)

    def test_boot_is_triggered_for_a_charger_that_never_boots(self):
        """
        docs/quirks.md#q6: no BootNotification within 5 s: TriggerMessage; nothing
        else is sent before the boot.
        """
        cp = self.connect(boot=False)
        self.clock.advance(4.9)
        self.assertEqual(cp.calls, [])
        self.clock.advance(0.1)
        self.assertEqual(cp.payloads("TriggerMessage"), [{"requestedMessage": "BootNotification"}])
        self.assertEqual(cp.actions(), ["TriggerMessage"])

    def test_no_trigger_when_it_boots_or_booted_before(self):
        """
        A charger that boots in time, or reconnects after an earlier boot
        (docs/quirks.md#q7), is not triggered.
        """
        cp = self.connect()
        self.clock.advance(10)
        self.assertNotIn("TriggerMessage", cp.actions())
        again = self.connect(boot=False)
        self.clock.advance(10)
        self.assertEqual(again.calls, [])
