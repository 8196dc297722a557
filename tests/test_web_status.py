"""
Tests of what C{GET /api/status} and the status page say a connector is
(L{xxterocpp.web.status.snapshot}, L{xxterocpp.web.page.render_page}): the
same as the bus, from L{CentralSystem.point_status}; a refused session is
no session. On the harness of L{tests.test_control}, without HTTP (the
routes are L{tests.test_web}'s).
"""

import json
import re

from twisted.trial.unittest import SynchronousTestCase

from tests.test_control import CONFIG, ControllerHarness
from xxterocpp.web.page import render_page
from xxterocpp.web.status import snapshot

TWIN_CONFIG = CONFIG + """
[[tag]]
id = "BAD"
status = "Blocked"

[[charger]]
id = "CP1"
connector = 2
max_current = 16
"""


class StatusTests(ControllerHarness, SynchronousTestCase):
    config = TWIN_CONFIG

    def report(self, cp, connector, status, error="NoError"):
        cp.session.text_received(json.dumps([2, "st", "StatusNotification", {
            "connectorId": connector, "errorCode": error, "status": status}]))
        self.clock.advance(0)

    def connectors(self):
        [charger] = snapshot(self.central, self.controller, None)["chargers"]
        return charger, {c["connector"]: c for c in charger["connectors"]}

    def page_words(self):
        page = self.successResultOf(
            render_page(snapshot(self.central, self.controller, None), {}, [])).decode()
        [section] = re.findall(r'<section[^>]*id="charger-CP1".*?</section>', page, re.S)
        return section.split("<details")[0]

    def test_faulted_charger_is_faulted_not_operative(self):
        """
        Connector 0 Faulted: every connector Faulted with its error code,
        not available, on the API and on the page; back to their own once
        connector 0 is Available.
        """
        cp = self.connect()
        self.report(cp, 1, "Available")
        self.report(cp, 2, "Preparing")
        self.report(cp, 0, "Faulted", "GroundFailure")
        _, connectors = self.connectors()
        self.assertEqual(
            [(c["status"], c["error_code"], c["available"], c["since"])
             for c in connectors.values()],
            [("Faulted", "GroundFailure", False, None)] * 2)
        words = self.page_words()
        self.assertEqual(words.count("faulted"), 2, words)
        self.assertIsNone(re.search(r"\boperative\b", words), words)
        self.report(cp, 0, "Available")
        _, connectors = self.connectors()
        self.assertEqual([(c["status"], c["available"]) for c in connectors.values()],
                         [("Available", True), ("Preparing", True)])
        self.assertEqual(len(re.findall(r"\boperative\b", self.page_words())), 2)

    def test_offline_charger_is_unavailable(self):
        cp = self.connect()
        self.report(cp, 1, "Charging")
        self.central.connections.disconnected("CP1", cp.session)
        charger, connectors = self.connectors()
        self.assertEqual((charger["offline"], connectors[1]["status"]), (False, "Charging"))
        self.clock.advance(self.central.config.knx.offline_after)
        charger, connectors = self.connectors()
        self.assertEqual((charger["connected"], charger["offline"], charger["ever_connected"]),
                         (False, True, True))
        self.assertEqual((connectors[1]["status"], connectors[1]["available"]),
                         ("Unavailable", False))

    def test_known_charger_after_a_restart_is_offline_not_new(self):
        self.connect()
        self.start()
        self.assertIn("offline", self.page_words())
        self.assertNotIn("never connected", self.page_words())

    def test_refused_session_is_no_session(self):
        cp = self.connect()
        cp.session.text_received(json.dumps([2, "s", "StartTransaction", {
            "connectorId": 1, "idTag": "BAD", "meterStart": 0,
            "timestamp": "2026-01-01T00:00:00Z"}]))
        self.clock.advance(0)
        self.assertIsNotNone(self.central.chargers["CP1"].connectors[1].transaction)
        _, connectors = self.connectors()
        self.assertIsNone(connectors[1]["transaction"])

    def test_reservation_until_freed(self):
        cp = self.connect()
        self.result(self.controller.reserve("CP1", id_tag="GOOD"))
        self.report(cp, 1, "Reserved")
        _, connectors = self.connectors()
        self.assertEqual((connectors[1]["reservation"]["id_tag"],
                          connectors[1]["reservation"]["until_freed"]), ("GOOD", True))
        self.assertIn("until freed", self.page_words())
