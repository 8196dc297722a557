"""
End-to-end tests of the Smart Energy Manager: the whole service in-process,
a simulated charger over a real WebSocket, a real bus-less knxd with a
second client (L{BusPeer}) writing prices and PV surplus, and the HTTP API.

The service runs on the wall clock: tariff and departure are written
relative to the local time now, so every run plans the same shape (nothing
cheap now, cheap from two hours on, departure in six). The manager's delays
(plan after StartTransaction, surplus hysteresis) are shortened on the
running service.

The knxd tests are skipped when knxd is not installed.
"""

import io
import json
from datetime import datetime, timedelta

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from tests.knxdtest import LinkWatcher, connect_peer, start_knxd
from tests.service import LOOPBACK_CONFIG, start_service, write_config
from tests.sim import connect_charger
from xxterocpp.knx.behaviour import SMART_INPUTS

PRICE, POWER = (entry.dpt for entry in SMART_INPUTS)
PRICES_GA, SURPLUS_GA = "5/0/1", "5/0/2"

CONFIG = LOOPBACK_CONFIG + """

[smart]
departure = "{departure}"
energy_wh = 3000
tariff = [{{ from = "{expensive}", price = 0.50 }}, {{ from = "{cheap}", price = 0.10 }}]
prices_ga = "{prices_ga}"
surplus_ga = "{surplus_ga}"

[[charger]]
id = "CP1"
max_current = 16
normal_current = 16
smart_tag = "SMARTTAG"

[[charger]]
id = "CP2"
max_current = 16
"""

#: What the tests shorten on the running manager (s).
START_DELAY = 0.1
SURPLUS_START_DELAY = 0.3


def _hhmm(when):
    return when.strftime("%H:%M")


def smart_config(testcase, knxd="", prices_ga=PRICES_GA, surplus_ga=SURPLUS_GA):
    """
    A configuration whose tariff is expensive from an hour ago and cheap
    from two hours on; departure in six hours.
    """
    now = datetime.now().astimezone()
    return write_config(
        testcase, CONFIG, knxd=knxd, prices_ga=prices_ga, surplus_ga=surplus_ga,
        departure=_hhmm(now + timedelta(hours=6)),
        expensive=_hhmm(now - timedelta(hours=1)), cheap=_hhmm(now + timedelta(hours=2)))


def periods(call):
    """
    @return: a SetChargingProfile's schedule as C{[(startPeriod, limit)]}.
    """
    schedule = call["csChargingProfiles"]["chargingSchedule"]
    return [(p["startPeriod"], p["limit"]) for p in schedule["chargingSchedulePeriod"]]


class SmartServiceMixin:
    """
    The service with shortened smart delays, a charger and its smart session.
    """

    @defer.inlineCallbacks
    def start(self, config_path):
        self.service = yield start_service(self, config_path)
        smart = self.service.smart
        smart.start_delay = START_DELAY
        smart.surplus_start_delay = SURPLUS_START_DELAY

    @defer.inlineCallbacks
    def charger(self, identity="CP1"):
        cp = yield connect_charger(self.service.url, identity)
        self.addCleanup(cp.close)
        yield cp.boot()
        yield cp.status(1, "Available")
        return cp

    @defer.inlineCallbacks
    def tx_profile(self, cp, timeout=5):
        """
        The next TxProfile the charger gets (the control model's
        TxDefaultProfile limits are skipped).
        """
        while True:
            _, call = yield cp.wait_for_call("SetChargingProfile", timeout)
            if call["csChargingProfiles"]["chargingProfilePurpose"] == "TxProfile":
                return call

    @defer.inlineCallbacks
    def smart_session(self, cp):
        """
        RFID: Authorize and StartTransaction with the smart tag.

        @return: the transactionId and the first planned profile.
        """
        answer = yield cp.authorize("SMARTTAG")
        self.assertEqual(answer["idTagInfo"]["status"], "Accepted")
        yield cp.status(1, "Preparing")
        started = yield cp.start_transaction(1, "SMARTTAG", 1000)
        self.assertEqual(started["idTagInfo"]["status"], "Accepted")
        yield cp.status(1, "Charging")
        tx = started["transactionId"]
        call = yield self.tx_profile(cp)
        return tx, call

    def assertPlanned(self, call, tx):
        profile = call["csChargingProfiles"]
        self.assertEqual((call["connectorId"], profile["chargingProfilePurpose"],
                          profile["transactionId"], profile["chargingProfileId"],
                          profile["chargingProfileKind"]),
                         (1, "TxProfile", tx, 9101, "Absolute"))
        # The sim reports ChargeProfileMaxStackLevel 10: the top level.
        self.assertEqual(profile["stackLevel"], 10)


class SmartKnxTests(SmartServiceMixin, TestCase):
    """
    The smart tag starts a planned session; telegrams on the bus re-plan it.
    """

    @defer.inlineCallbacks
    def setUp(self):
        self.knxd = yield start_knxd(self)
        self.peer = yield connect_peer(self, self.knxd)
        # No charger links a group object: the [smart] addresses alone run
        # the bridge.
        yield self.start(smart_config(self, self.knxd.endpoint))
        self.assertIsNotNone(self.service.knx_bridge)
        self.assertIs(self.service.knx_bridge.smart, self.service.smart)
        yield LinkWatcher(self.service.knx_link).wait(True)

    @defer.inlineCallbacks
    def test_smart_tag_plans_and_price_telegram_replans(self):
        """
        The planned TxProfile waits for the cheap hours; a price telegram
        making now cheaper moves the charging to now. Nonsense on the price
        address changes nothing.
        """
        cp = yield self.charger()
        tx, call = yield self.smart_session(cp)
        self.assertPlanned(call, tx)
        first = periods(call)
        self.assertEqual(first[0], (0, 0.0))
        cheap_from = [start for start, limit in first if limit > 0][0]
        self.assertLessEqual(abs(cheap_from - 2 * 3600), 120)

        self.peer.write(PRICES_GA, b"\x41")  # wrong length: ignored
        self.peer.write(PRICES_GA, b"\x7f\xc0\x00\x00")  # NaN: ignored
        self.peer.write(PRICES_GA, PRICE.encode(0.01))
        call = yield self.tx_profile(cp)
        self.assertPlanned(call, tx)
        replanned = periods(call)
        self.assertNotEqual(replanned, first)
        self.assertEqual(replanned[0], (0, 16.0))
        session = self.service.smart.session("CP1", 1)
        self.assertEqual(session["plan"][0]["price"], 0.01)
        self.assertTrue(session["reachable"])
        self.assertLess(session["cost"], session["immediate_cost"] + 0.001)

    @defer.inlineCallbacks
    def test_surplus_telegram_current_follows(self):
        """
        PV surplus worth 7.2 A for longer than the start delay: the car
        charges from the surplus now. Less surplus (importing): it holds the
        6 A minimum.
        """
        cp = yield self.charger()
        tx, call = yield self.smart_session(cp)
        self.assertEqual(periods(call)[0], (0, 0.0))
        self.peer.write(SURPLUS_GA, b"\x00\x00")  # wrong length: ignored
        self.peer.write(SURPLUS_GA, POWER.encode(5000.0))  # 5000 / 690 = 7.2 A
        started = reactor.seconds()
        call = yield self.tx_profile(cp)
        # Not before the (shortened) hysteresis delay.
        self.assertGreaterEqual(reactor.seconds() - started, SURPLUS_START_DELAY - 0.05)
        self.assertPlanned(call, tx)
        self.assertEqual(periods(call)[0], (0, 7.2))
        self.assertEqual(self.service.smart.session("CP1", 1)["surplus_current"], 7.2)
        # The export reading has the car's 7.2 A (4968 W) taken off already:
        # importing 1500 W leaves 3468 W = 5 A, below the minimum but above
        # the stop current: 6 A.
        self.peer.write(SURPLUS_GA, POWER.encode(-1500.0))
        call = yield self.tx_profile(cp)
        self.assertEqual(periods(call)[0], (0, 6.0))


class SmartApiTests(SmartServiceMixin, TestCase):
    """
    GET/PUT /api/chargers/{id}/smart and a smart remote start, without KNX.
    """

    @defer.inlineCallbacks
    def setUp(self):
        yield self.start(smart_config(self, prices_ga="", surplus_ga=""))
        port = yield self.service.web.when_listening()
        self.base = f"http://127.0.0.1:{port.getHost().port}"
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.agent = Agent(reactor, pool=pool)
        self.addCleanup(pool.closeCachedConnections)

    @defer.inlineCallbacks
    def http(self, method, path, body=None):
        producer = None
        headers = {}
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            producer = FileBodyProducer(io.BytesIO(data))
            headers["Content-Type"] = ["application/json"]
        response = yield self.agent.request(
            method.encode(), (self.base + path).encode(), Headers(headers), producer)
        content = yield readBody(response)
        return response.code, json.loads(content) if content.startswith((b"{", b"[")) \
            else content

    @defer.inlineCallbacks
    def test_get_and_put(self):
        """
        GET shows the plan and its costs; PUT changes departure and energy
        and the charger gets the new plan; bad bodies are 400.
        """
        cp = yield self.charger()
        code, body = yield self.http("GET", "/api/chargers/CP1/smart")
        self.assertEqual(code, 404, body)
        self.assertIn("no smart session", body["error"])
        tx, call = yield self.smart_session(cp)

        code, body = yield self.http("GET", "/api/chargers/CP1/smart?connector=1")
        self.assertEqual(code, 200, body)
        self.assertEqual((body["transaction_id"], body["energy_wh"], body["reachable"],
                          body["via"]), (tx, 3000, True, "profile"))
        self.assertLess(body["cost"], body["immediate_cost"])
        self.assertEqual(body["plan"][0]["current"], 0.0)
        self.assertIn(16.0, [slot["current"] for slot in body["plan"]])

        # Departure in one hour: before the cheap hours, so charging starts now.
        departure = (datetime.now().astimezone() + timedelta(hours=1)).replace(
            second=0, microsecond=0)
        code, body = yield self.http("PUT", "/api/chargers/CP1/smart",
                                     {"departure": departure.isoformat(), "energy_wh": 5000})
        self.assertEqual(code, 200, body)
        self.assertEqual(body["energy_wh"], 5000)
        self.assertEqual(datetime.fromisoformat(body["departure"]), departure)
        call = yield self.tx_profile(cp)
        self.assertPlanned(call, tx)
        self.assertEqual(periods(call)[0][1], 16.0)

        # "HH:MM" with POST: the next such local time.
        hhmm = _hhmm(datetime.now().astimezone() + timedelta(hours=8))
        code, body = yield self.http("POST", "/api/chargers/CP1/smart", {"departure": hhmm})
        self.assertEqual(code, 200, body)
        self.assertEqual(_hhmm(datetime.fromisoformat(body["departure"]).astimezone()), hhmm)
        yield self.tx_profile(cp)

        for bad, words in [
            ({"departure": "7 o'clock"}, "'departure' must be a time"),
            ({"departure": "25:00"}, "'departure' must be a time"),
            ({"departure": "2020-01-01T07:00:00Z"}, "in the past"),
            ({"energy_wh": 0}, "'energy_wh' must be more than 0"),
            ({"energy_wh": "lots"}, "'energy_wh' must be a number"),
            ({"energy": 1}, "unknown field 'energy'"),
            ({}, "nothing to change"),
            (b"[1]", "must be a JSON object"),
        ]:
            code, body = yield self.http("PUT", "/api/chargers/CP1/smart", bad)
            self.assertEqual(code, 400, (bad, body))
            self.assertIn(words, body["error"])
        code, body = yield self.http("GET", "/api/chargers/CP1/smart?connector=x")
        self.assertEqual(code, 400, body)
        code, body = yield self.http("GET", "/api/chargers/CP1/smart?connector=2")
        self.assertEqual(code, 404, body)
        code, body = yield self.http("PUT", "/api/chargers/NOPE/smart", {"energy_wh": 1})
        self.assertEqual(code, 404, body)
        code, body = yield self.http("PUT", "/api/chargers/CP2/smart", {"energy_wh": 1})
        self.assertEqual(code, 404, body)

        # The status API and the page show the plan.
        code, status = yield self.http("GET", "/api/status")
        [cp1] = [c for c in status["chargers"] if c["id"] == "CP1"]
        self.assertEqual(cp1["connectors"][0]["smart"]["transaction_id"], tx)
        code, page = yield self.http("GET", "/")
        self.assertEqual(code, 200)
        self.assertIn(b"Smart plan", page)
        self.assertIn(b'class="chart plan"', page)
        self.assertIn(b"/api/chargers/CP1/smart?connector=1", page)

    @defer.inlineCallbacks
    def test_remote_start_flagged_smart(self):
        """
        POST start with {"smart": true} sends RemoteStartTransaction with the
        smart tag and a 0 A TxProfile, which the plan replaces; the session
        it starts is planned.
        """
        cp = yield self.charger()
        code, body = yield self.http("POST", "/api/chargers/CP1/start", {"smart": True})
        self.assertEqual(code, 200, body)
        _, call = yield cp.wait_for_call("RemoteStartTransaction")
        profile = call.pop("chargingProfile")
        self.assertEqual(call, {"connectorId": 1, "idTag": "SMARTTAG"})
        self.assertEqual((profile["chargingProfileId"], profile["chargingProfilePurpose"],
                          profile["stackLevel"], periods({"csChargingProfiles": profile})),
                         (9101, "TxProfile", 10, [(0, 0.0)]))
        self.assertNotIn("transactionId", profile)
        started = yield cp.start_transaction(1, "SMARTTAG", 0)
        call = yield self.tx_profile(cp)
        self.assertPlanned(call, started["transactionId"])
        code, body = yield self.http("GET", "/api/chargers/CP1/smart")
        self.assertEqual((code, body["transaction_id"]), (200, started["transactionId"]))
        # No smart_tag on CP2: refused.
        code, body = yield self.http("POST", "/api/chargers/CP2/start", {"smart": True})
        self.assertEqual(code, 409, body)
        self.assertIn("smart_tag", body["error"])
        code, body = yield self.http("POST", "/api/chargers/CP1/start", {"smart": "yes"})
        self.assertEqual(code, 400, body)
