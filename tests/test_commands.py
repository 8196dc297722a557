"""
Tests of the command front's rules that keep every adapter truthful: every
command that ends not accepted is announced (L{CommandRefused}), starts are
refused while a connector is reserved or counts as unavailable, a refused
session is no charging, and the Normal/Fast mode in force
(L{Controller.mode}, L{ModeChanged}). On the harness of L{tests.test_control}.
"""

import json

from twisted.trial.unittest import SynchronousTestCase

from tests.test_control import CONFIG, CONFIGURATION, ControllerHarness
from xxterocpp.control import UnknownChargingPoint
from xxterocpp.domain.events import CommandRefused, LimitChanged, ModeChanged

#: CP1 with a smart tag and a knx-like remote tag; the tag GOOD may charge.
SMART_CONFIG = CONFIG.replace('normal_current = 16\n', '''normal_current = 16
remote_tag = "KNXTAG"
smart_tag = "SMARTTAG"
''') + """
[[tag]]
id = "BAD"
status = "Blocked"
"""


class CommandsTestCase(ControllerHarness, SynchronousTestCase):
    config = SMART_CONFIG

    def refusals(self):
        return [e for e in self.events if isinstance(e, CommandRefused)]

    def start_transaction(self, cp, tag="GOOD", meter=0):
        cp.session.text_received(json.dumps([2, "s", "StartTransaction", {
            "connectorId": 1, "idTag": tag, "meterStart": meter,
            "timestamp": "2026-01-01T00:00:00Z"}]))
        self.clock.advance(0)

    def status(self, cp, status, connector=1, error="NoError"):
        cp.session.text_received(json.dumps([2, "st", "StatusNotification", {
            "connectorId": connector, "errorCode": error, "status": status}]))
        self.clock.advance(0)


class CommandRefusedTests(CommandsTestCase):
    """
    L{CommandRefused}, whatever the reason and whoever asked.
    """

    def test_refused_by_the_charger(self):
        cp = self.connect()
        cp.answers["RemoteStartTransaction"] = {"status": "Rejected"}
        result = self.result(self.controller.start("CP1"))
        self.assertEqual(result.status, "Rejected")
        self.assertEqual(self.refusals(), [CommandRefused("CP1", 1, "start")])

    def test_timed_out_once_the_answer_is_overdue(self):
        cp = self.connect()
        cp.answers["ChangeAvailability"] = None
        d = self.controller.set_availability("CP1", 1, False)
        self.clock.advance(4.9)
        self.assertEqual(self.refusals(), [])
        self.clock.advance(0.1)
        self.assertEqual(self.successResultOf(d).status, "Timeout")
        self.assertEqual(self.refusals(), [CommandRefused("CP1", 1, "set_availability")])

    def test_offline(self):
        """
        A charger that is not connected: announced, connector 0 and a whole
        charger's command as None.
        """
        for command in (lambda: self.controller.set_limit("CP1", 1, 10),
                        lambda: self.controller.fast("CP1"),
                        lambda: self.controller.set_availability("CP1", 0, True),
                        lambda: self.controller.reset("CP1"),
                        lambda: self.controller.reserve("CP1"),
                        lambda: self.controller.unlock("CP1")):
            self.assertEqual(self.result(command()).status, "NotConnected")
        self.assertEqual(self.refusals(), [
            CommandRefused("CP1", 1, "set_limit"), CommandRefused("CP1", 1, "fast"),
            CommandRefused("CP1", None, "set_availability"), CommandRefused("CP1", None, "reset"),
            CommandRefused("CP1", 1, "reserve"), CommandRefused("CP1", 1, "unlock")])

    def test_refused_by_the_central_system(self):
        self.connect()
        self.assertEqual(self.result(self.controller.stop("CP1")).status, "Refused")
        self.assertEqual(self.refusals(), [CommandRefused("CP1", 1, "stop")])

    def test_accepted_and_unknown_are_not_announced(self):
        """
        Accepted (or nothing to do) announces nothing; an unknown charging
        point raises, as before.
        """
        self.connect()
        for command in (lambda: self.controller.start("CP1"),
                        lambda: self.controller.normal("CP1"),
                        lambda: self.controller.resume("CP1"),
                        lambda: self.controller.free("CP1")):
            self.assertTrue(self.result(command()).accepted)
        self.assertRaises(UnknownChargingPoint, self.controller.start, "CP1", 2)
        self.assertEqual(self.refusals(), [])


class StartRuleTests(CommandsTestCase):
    """
    When a start goes to the charger.
    """

    def reserved_for(self, cp, tag=None, **kwargs):
        self.assertTrue(self.result(self.controller.reserve("CP1", id_tag=tag, **kwargs)).accepted)
        cp.take()

    def assertRefused(self, d, detail):
        result = self.result(d)
        self.assertEqual((result.status, result.detail), ("Refused", detail))

    def test_a_reservation_refuses_knx_page_and_smart_starts(self):
        """
        Reserved (through KNX or the page: for remote_tag): neither the
        remote tag, given or not, nor the smart tag starts.
        """
        cp = self.connect()
        self.reserved_for(cp)
        for start in (lambda: self.controller.start("CP1"),
                      lambda: self.controller.start("CP1", id_tag="knxtag"),
                      lambda: self.controller.start("CP1", smart=True)):
            self.assertRefused(start(), "the charging point is reserved")
        self.assertEqual(cp.actions(), [])
        self.assertEqual(len(self.refusals()), 3)

    def test_an_api_start_naming_the_reservations_tag_starts(self):
        cp = self.connect()
        self.reserved_for(cp, "GOOD")
        self.assertRefused(self.controller.start("CP1"), "the charging point is reserved")
        self.assertRefused(self.controller.start("CP1", id_tag="OTHER"),
                           "the charging point is reserved")
        self.assertTrue(self.result(self.controller.start("CP1", id_tag="good")).accepted)
        self.assertEqual(cp.payloads("RemoteStartTransaction"),
                         [{"connectorId": 1, "idTag": "good"}])

    def test_connector_0_and_offline_refuse_starts(self):
        """
        A charger Faulted as a whole, or offline for offline_after: the
        central system refuses, like for an unavailable connector.
        """
        cp = self.connect()
        self.status(cp, "Available")
        self.status(cp, "Faulted", connector=0, error="GroundFailure")
        self.assertRefused(self.controller.start("CP1"), "the charging point is Faulted")
        self.status(cp, "Available", connector=0)
        self.central.connections.disconnected("CP1", cp.session)
        self.clock.advance(self.central.config.knx.offline_after)
        self.assertRefused(self.controller.start("CP1"), "the charging point is Unavailable")

    def test_a_refused_session_is_not_charging(self):
        """
        A Blocked tag's session runs at the charger: a start is still sent,
        not answered "already charging".
        """
        cp = self.connect()
        self.start_transaction(cp, "BAD")
        cp.take()
        result = self.result(self.controller.start("CP1"))
        self.assertEqual((result.accepted, cp.actions()), (True, ["RemoteStartTransaction"]))


class ModeTests(CommandsTestCase):
    """
    L{Controller.mode}: the Normal/Fast mode in force.
    """

    def modes(self):
        return [e for e in self.events if isinstance(e, ModeChanged)]

    def test_unknown_before_a_limit_is_in_force(self):
        self.assertIsNone(self.controller.mode("CP1"))
        self.assertRaises(UnknownChargingPoint, self.controller.mode, "CP1", 2)

    def test_fast_and_normal_once_in_force(self):
        """
        The boot's limit is normal; fast once the charger took max_current;
        normal again; each change a L{ModeChanged} after its
        L{LimitChanged}.
        """
        cp = self.connect()
        self.assertEqual(self.controller.mode("CP1"), "normal")
        del self.events[:]
        cp.answers["SetChargingProfile"] = None
        d = self.controller.fast("CP1")
        self.clock.advance(0)
        self.assertEqual(self.controller.mode("CP1"), "normal")
        cp.answer(cp.calls[-1][0], {"status": "Accepted"})
        self.assertTrue(self.successResultOf(d).accepted)
        self.assertEqual(self.controller.mode("CP1"), "fast")
        cp.answers["SetChargingProfile"] = {"status": "Accepted"}
        self.result(self.controller.normal("CP1"))
        self.assertEqual(self.controller.mode("CP1"), "normal")
        changes = [e for e in self.events if isinstance(e, (LimitChanged, ModeChanged))]
        self.assertEqual(changes, [LimitChanged("CP1", 1, 32.0), ModeChanged("CP1", 1),
                                   LimitChanged("CP1", 1, 16.0), ModeChanged("CP1", 1)])

    def test_refused_fast_stays_normal(self):
        cp = self.connect()
        del self.events[:]
        cp.answers["SetChargingProfile"] = {"status": "Rejected"}
        self.assertFalse(self.result(self.controller.fast("CP1")).accepted)
        self.assertEqual(self.controller.mode("CP1"), "normal")
        self.assertEqual(self.refusals(), [CommandRefused("CP1", 1, "fast")])
        self.assertEqual(self.modes(), [])

    def test_a_limit_is_the_mode_it_amounts_to(self):
        """
        max_current written as a limit is fast, any other limit or a pause
        is normal.
        """
        self.connect()
        for command, mode in ((lambda: self.controller.set_limit("CP1", 1, 32), "fast"),
                              (lambda: self.controller.set_limit("CP1", 1, 20), "normal"),
                              (lambda: self.controller.fast("CP1"), "fast"),
                              (lambda: self.controller.pause("CP1"), "normal"),
                              (lambda: self.controller.resume("CP1"), "fast")):
            self.result(command())
            self.assertEqual(self.controller.mode("CP1"), mode)

    def test_same_currents_follow_the_button(self):
        """
        normal_current = max_current: the limit does not change, the mode
        does (a L{ModeChanged} without a L{LimitChanged}).
        """
        self.config = SMART_CONFIG.replace("normal_current = 16\n", "")
        self.start()
        self.connect()
        self.assertEqual(self.controller.mode("CP1"), "normal")
        del self.events[:]
        self.result(self.controller.fast("CP1"))
        self.assertEqual(self.controller.mode("CP1"), "fast")
        self.assertEqual(self.events, [ModeChanged("CP1", 1)])

    def test_without_smart_charging_max_current_is_in_force(self):
        """
        A charger without SmartCharging takes no limit: its max_current is
        in force (fast), and a limit asked for is refused, that limit
        unchanged.
        """
        self.assertIsNone(self.controller.limit("CP1"))
        cp = self.connect(boot=False,
                          configuration=dict(CONFIGURATION, SupportedFeatureProfiles="Core"))
        cp.answers["SetChargingProfile"] = ("CALLERROR", "NotSupported")
        cp.boot()
        self.assertEqual((self.controller.limit("CP1"), self.controller.mode("CP1")),
                         (32.0, "fast"))
        self.assertFalse(self.result(self.controller.set_limit("CP1", 1, 10)).accepted)
        self.assertEqual(self.controller.limit("CP1"), 32.0)
        self.assertEqual(self.refusals(), [CommandRefused("CP1", 1, "set_limit")])

    def test_mode_survives_a_restart(self):
        self.connect()
        self.result(self.controller.fast("CP1"))
        self.start()
        self.assertEqual(self.controller.mode("CP1"), "fast")


class RefusedSessionLimitTests(CommandsTestCase):
    """
    A refused session gets no TxProfile: it does not count.
    """

    def test_no_tx_profile_for_a_refused_session(self):
        cp = self.connect()
        cp.answers["SetChargingProfile"] = lambda p: {"status": (
            "Accepted" if p["csChargingProfiles"]["chargingProfilePurpose"] == "TxProfile"
            else "NotSupported")}
        self.start_transaction(cp)
        self.assertTrue(self.result(self.controller.set_limit("CP1", 1, 10)).accepted)
        tx = self.central.chargers["CP1"].connectors[1].transaction
        cp.session.text_received(json.dumps([2, "e", "StopTransaction", {
            "transactionId": tx.id, "meterStop": 10, "timestamp": "2026-01-01T00:10:00Z"}]))
        self.clock.advance(0)
        cp.take()
        self.start_transaction(cp, "BAD", 10)
        self.assertEqual(cp.actions(), [])
        self.result(self.controller.set_limit("CP1", 1, 12))
        purposes = {p["csChargingProfiles"]["chargingProfilePurpose"]
                    for p in cp.payloads("SetChargingProfile")}
        self.assertNotIn("TxProfile", purposes)
        self.start_transaction(cp, "GOOD", 20)
        self.assertEqual(cp.payloads("SetChargingProfile")[-1]["csChargingProfiles"][
            "chargingProfilePurpose"], "TxProfile")
