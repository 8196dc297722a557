"""
The commissioning view of the status page after a session on a real
bus-less knxd: per charging point every linked group object with what the
bridge sent and received, in words and units, and a warning when another
device writes to a send object. Skipped without knxd.
"""

import json

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import readBody
from twisted.web.http_headers import Headers

from tests.knxdtest import LinkWatcher, connect_peer, start_knxd
from tests.service import LOOPBACK_CONFIG, start_service, write_config
from tests.sim import connect_charger
from tests.test_web import web_agent
from xxterocpp.knx import objects
from xxterocpp.knx.dpt import lookup
from xxterocpp.web.i18n import language
from xxterocpp.web.knxvalues import describe

CONFIG = LOOPBACK_CONFIG + """
[[charger]]
id = "CP1"
max_current = 32
normal_current = 16
remote_tag = "KNXTAG"

[charger.knx]
status = "1/0/0"
charging = "1/0/2"
max_current = "1/0/10"
reset = "1/0/11"
"""

OBJECT = {obj.key: obj for obj in objects.OBJECTS}


class CommissioningTests(TestCase):
    """
    The whole service, a real knxd, a simulated charger and a second knxd
    client writing on the bus.
    """

    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        self.knxd = yield start_knxd(self)
        self.peer = yield connect_peer(self, self.knxd)
        self.service = yield start_service(
            self, write_config(self, CONFIG, knxd=self.knxd.endpoint))
        yield LinkWatcher(self.service.knx_link).wait(True)
        port = yield self.service.web.when_listening()
        self.base = f"http://127.0.0.1:{port.getHost().port}"
        self.agent = web_agent(self)

    @defer.inlineCallbacks
    def get(self, path, language="en"):
        response = yield self.agent.request(b"GET", (self.base + path).encode(),
                                            Headers({"Accept-Language": [language]}))
        body = yield readBody(response)
        return body.decode()

    @defer.inlineCallbacks
    def test_sent_received_and_foreign_writes(self):
        """
        After the charger charged, a limit came from the bus and another
        device wrote the status address: /api/status and the page show each
        object's address, DPT and direction, the last value sent (Charging,
        1 = start) and received (10 A from the peer), when, and the warning.
        """
        cp = yield connect_charger(self.service.url, "CP1")
        self.addCleanup(cp.close)
        yield cp.boot()
        yield cp.status(1, "Preparing")
        yield cp.start_transaction(1, "04A1B2C3", 1000)
        yield cp.status(1, "Charging")
        yield self.peer.wait_for("1/0/0")
        ten_amps = lookup("14.019").encode(10.0)
        self.peer.write("1/0/10", ten_amps)
        # the limit in force, sent back once the charger took it (after
        # the limit of the set-up after the boot)
        while (yield self.peer.wait_for("1/0/10")).payload != ten_amps:
            pass
        self.peer.write("1/0/0", b"\x05")
        # the bridge saw the peer's write before it answers this read
        self.peer.read("1/0/0")
        yield self.peer.wait_for("1/0/0", "response")

        status = json.loads((yield self.get("/api/status")))
        knx = {o["object"]: o for o in status["chargers"][0]["connectors"][0]["knx"]}
        self.assertEqual(list(knx), ["status", "charging", "max_current", "reset"])
        self.assertEqual((knx["status"]["address"], knx["status"]["dpt"],
                          knx["status"]["direction"]), ("1/0/0", "5.010", "send"))
        self.assertEqual(knx["status"]["sent"]["value"], 2)
        self.assertIs(knx["charging"]["sent"]["value"], True)
        self.assertIsNone(knx["charging"]["received"])
        self.assertEqual(knx["max_current"]["received"]["value"], 10.0)
        peer_address = knx["max_current"]["received"]["from"]
        self.assertRegex(peer_address, r"^\d+\.\d+\.\d+$")
        self.assertEqual(knx["max_current"]["sent"]["value"], 10.0)
        self.assertEqual(knx["status"]["foreign"]["value"], {"payload": "05"})
        self.assertEqual(knx["status"]["foreign"]["from"], peer_address)
        self.assertIsNone(knx["max_current"]["foreign"])  # a write to it is a command
        self.assertIsNone(knx["reset"]["sent"])

        page = yield self.get("/")
        for text in ("KNX: 4 group objects", "2 (Charging)", "1 (start)",
                     "10\N{NO-BREAK SPACE}A", f"from {peer_address}",
                     "send and receive", "receive", "1/0/11",
                     f"{peer_address} wrote 5 (Finishing) to 1/0/0 (status), which only this "
                     f"controller sends to"):
            self.assertIn(text, page)
        german = yield self.get("/", "de")
        for text in ("KNX: 4 Gruppenobjekte", "2 (Charging)", "1 (Start)", "senden und empfangen",
                     f"{peer_address} hat 5 (Finishing) an 1/0/0 (status) geschrieben"):
            self.assertIn(text, german)


class DescribeTests(SynchronousTestCase):
    """
    L{describe}: values in words and units, from the declaration and the
    DPT names.
    """

    def test_words_and_units(self):
        t = language("en")

        def local(when):
            return when.strftime("%H:%M")

        for key, dpt, value, words in [
            ("status", "5.010", 8, "8 (Faulted)"),
            ("error_code", "5.010", 15, "15 (WeakSignal)"),
            ("status", "5.010", 200, "200"),
            ("charging", "1.010", False, "0 (stop)"),
            ("availability", "1.003", True, "1 (enable)"),
            ("reset", "1.015", 1, "1 (reset)"),
            ("energy", "13.010", 12345, "12345\N{NO-BREAK SPACE}Wh"),
            ("current", "9.021", 15.5, "15.5\N{NO-BREAK SPACE}A"),
            ("start_time", "10.001", "2024-05-02T11:00:00Z", "11:00"),
            ("status", "5.010", None, "\N{EM DASH}"),
            ("status", "5.010", {"payload": "02"}, "2 (Charging)"),
            ("charging", "1.010", {"payload": 1}, "1 (start)"),
            ("current", "9.021", {"payload": "561a"}, "15.9949\N{NO-BREAK SPACE}A"),
            ("status", "5.010", {"payload": "0102"}, "0x0102"),
        ]:
            self.assertEqual(describe(t, OBJECT[key], dpt, value, local), words, key)
        self.assertEqual(describe(language("de"), OBJECT["current"], "14.019", 6.5, local),
                         "6,5\N{NO-BREAK SPACE}A")
