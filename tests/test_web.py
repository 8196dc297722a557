"""
The status page and HTTP API over a real listening socket, with
simulated chargers behind the commands.
"""

import base64
import csv
import io
import json

from datetime import datetime, timezone

import attr
from twisted.internet import defer, reactor
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from tests.fakes import FakeLink
from tests.service import BASE_CONFIG, PASSWORD, start_service, write_config
from tests.sim import NO_REPLY, CallErrorReply, HandshakeRefused, connect_charger
from xxterocpp.domain.security import ChargerCertificate

#: Web tests wait for a charger's timeout: make it short.
WEB_CONFIG = BASE_CONFIG.replace("call_timeout = 5", "call_timeout = 1")

WEB_USER, WEB_PASSWORD = "installer", "correct horse"

#: The configuration with the web interface behind a password.
AUTH_CONFIG = WEB_CONFIG.replace(
    "[web]\nport = 0", f'[web]\nport = 0\nusername = "{WEB_USER}"\npassword = "{WEB_PASSWORD}"')

#: The Basic-auth password of the C{"RDAM 123"} charger, as it sends it.
RDAM_KEY = bytes.fromhex(PASSWORD)


@attr.s(frozen=True)
class Response:
    code = attr.ib()
    headers = attr.ib()
    body = attr.ib()

    def header(self, name):
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None

    @property
    def json(self):
        return json.loads(self.body)


def web_agent(testcase):
    """
    @return: an HTTP client with a new connection per request, whose
        connections are closed at the test's cleanup.
    """
    pool = HTTPConnectionPool(reactor, persistent=False)
    testcase.addCleanup(pool.closeCachedConnections)
    return Agent(reactor, pool=pool)


class WebTestCase(TestCase):
    """
    The whole service on loopback ports, and an HTTP client for it.
    """

    config_text = WEB_CONFIG
    credentials = None

    @defer.inlineCallbacks
    def setUp(self):
        self.config_path = write_config(self, self.config_text)
        yield self.start()
        self.agent = web_agent(self)

    @defer.inlineCallbacks
    def start(self):
        """
        Start (or restart) the service on the test's configuration file.
        """
        yield self.serve((yield start_service(self, self.config_path)))

    @defer.inlineCallbacks
    def serve(self, service):
        """
        Send the requests to C{service}'s web interface from now on.
        """
        self.service = service
        port = yield service.web.when_listening()
        self.base = f"http://127.0.0.1:{port.getHost().port}"

    @defer.inlineCallbacks
    def restart(self):
        yield self.service.stopService()
        yield self.start()

    @defer.inlineCallbacks
    def http(self, method, path, body=None, credentials=None, headers=None):
        """
        @param body: a JSON value, or bytes sent as they are.
        @param credentials: C{(user, password)}; default L{credentials}.
        """
        raw = {}
        credentials = credentials or self.credentials
        if credentials is not None:
            token = base64.b64encode(":".join(credentials).encode()).decode()
            raw["Authorization"] = [f"Basic {token}"]
        producer = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            producer = FileBodyProducer(io.BytesIO(data))
        if method != "GET":
            raw["Content-Type"] = ["application/json"]
        raw.update({k: [v] for k, v in (headers or {}).items()})
        response = yield self.agent.request(
            method.encode(), (self.base + path).encode(), Headers(raw), producer)
        content = yield readBody(response)
        return Response(response.code, response.headers, content)

    def get(self, path, **kwargs):
        return self.http("GET", path, **kwargs)

    def post(self, path, body=None, **kwargs):
        return self.http("POST", path, body, **kwargs)

    @defer.inlineCallbacks
    def charger(self, identity="CP1", **kwargs):
        """
        A booted simulated charger, its connector 1 Available.
        """
        cp = yield connect_charger(self.service.url, identity, **kwargs)
        self.addCleanup(cp.close)
        yield cp.boot(firmwareVersion="1.2.3", chargePointSerialNumber="SN-7")
        yield cp.status(1, "Available")
        return cp

    @defer.inlineCallbacks
    def charging(self, cp, meter_start=1000, energy_wh=3500):
        """
        Start a session on connector 1 with a meter reading and currents.

        @return: the transactionId.
        """
        yield cp.status(1, "Preparing")
        started = yield cp.start_transaction(1, "04A1B2C3", meter_start)
        tx = started["transactionId"]
        yield cp.status(1, "Charging")
        yield cp.meter_values(1, tx, energy_wh=energy_wh, currents=(15.9, 16.0, 15.8))
        return tx

    def assertError(self, response, code, *words):
        """
        The response is a JSON error with C{code} whose text has C{words}.
        """
        self.assertEqual(response.code, code, response.body)
        self.assertTrue(response.header("Content-Type").startswith("application/json"))
        for word in words:
            self.assertIn(word, response.json["error"])


class StatusTests(WebTestCase):
    """
    C{GET /api/status} and the page C{GET /}.
    """

    @defer.inlineCallbacks
    def test_status_shows_chargers_connectors_and_sessions(self):
        """
        Every configured charger with connection, address, boot data, and
        per connector the status in words, the running transaction, current,
        energy and limit; the KNX link is not configured here.
        """
        cp = yield self.charger()
        tx = yield self.charging(cp)
        yield cp.status(1, "Charging", "HighTemperature")
        response = yield self.get("/api/status")
        self.assertEqual(response.code, 200)
        status = response.json
        self.assertEqual(status["knx"], "not configured")
        chargers = {c["id"]: c for c in status["chargers"]}
        self.assertEqual(set(chargers), {"CP1", "TWIN", "RDAM 123"})
        cp1 = chargers["CP1"]
        self.assertTrue(cp1["connected"])
        self.assertTrue(cp1["connected_since"].endswith("Z"))
        self.assertEqual((cp1["address"], cp1["vendor"], cp1["model"], cp1["firmware"],
                          cp1["serial"]), ("127.0.0.1", "Sim", "Sim-1", "1.2.3", "SN-7"))
        connector = cp1["connectors"][0]
        self.assertEqual((connector["status"], connector["status_text"]), ("Charging", "charging"))
        self.assertEqual((connector["error_code"], connector["error_text"]),
                         ("HighTemperature", "too hot"))
        self.assertEqual(connector["transaction"]["id"], tx)
        self.assertEqual(connector["transaction"]["id_tag"], "04A1B2C3")
        self.assertEqual(connector["transaction"]["energy_wh"], 2500)
        self.assertEqual(connector["current_a"], 16.0)
        self.assertEqual((connector["normal_current_a"], connector["max_current_a"]), (16, 32))
        self.assertIn("limit_a", connector)
        self.assertTrue(connector["available"])
        self.assertFalse(chargers["TWIN"]["connected"])
        self.assertEqual([c["connector"] for c in chargers["TWIN"]["connectors"]], [1, 2])

    @defer.inlineCallbacks
    def test_chargers_trying_to_connect(self):
        """
        Unknown identities are listed with address, count and times.
        """
        for _ in range(2):
            with self.assertRaises(HandshakeRefused):
                yield connect_charger(self.service.url, "NEW-WALLBOX-9")
        status = (yield self.get("/api/status")).json
        [unknown] = status["unknown"]
        self.assertEqual((unknown["id"], unknown["address"], unknown["count"]),
                         ("NEW-WALLBOX-9", "127.0.0.1", 2))
        page = (yield self.get("/")).body.decode()
        self.assertIn("Chargers trying to connect", page)
        self.assertIn('[[charger]]\nid = "NEW-WALLBOX-9"', page)

    @defer.inlineCallbacks
    def test_refused_connections_are_counted(self):
        """
        Charger connections refused for credentials are counted on the page
        and in the status, without any secret.
        """
        for auth in (None, ("RDAM 123", "wrong-password-123")):
            with self.assertRaises(HandshakeRefused):
                yield connect_charger(self.service.url, "RDAM 123", auth=auth)
        status = (yield self.get("/api/status")).json
        self.assertEqual(status["refused"], {"auth": 2, "tls": 0})
        page = (yield self.get("/")).body.decode()
        self.assertIn("refused connections: 2 credentials, 0 TLS", page)
        self.assertNotIn("wrong-password-123", page)

    @defer.inlineCallbacks
    def test_knx_link_state(self):
        """
        The page and the API show whether the knxd link is up.
        """
        link = self.service.knx_link = FakeLink(connected=False)
        self.assertEqual((yield self.get("/api/status")).json["knx"], "disconnected")
        link.up()
        self.assertEqual((yield self.get("/api/status")).json["knx"], "connected")
        self.assertIn("KNX link", (yield self.get("/")).body.decode())

    @defer.inlineCallbacks
    def test_page_shows_chargers_buttons_and_frames(self):
        """
        The page has the charger, its session, the buttons and the OCPP
        frames; what a charger sends is escaped, never markup.
        """
        cp = yield self.charger()
        yield self.charging(cp)
        yield cp.call("DataTransfer", {"vendorId": "<b>evil</b>", "data": "<script>x()</script>"})
        response = yield self.get("/")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.header("Content-Type"), "text/html; charset=utf-8")
        page = response.body.decode()
        self.assertTrue(page.startswith("<!DOCTYPE html>"))
        for text in ("CP1", "Sim Sim-1", "1.2.3", "charging", "04A1B2C3",
                     "2.50\N{NO-BREAK SPACE}kWh", "16\N{NO-BREAK SPACE}A", "KNX link",
                     "not configured", 'name="viewport"', "Last ", "BootNotification",
                     '/api/chargers/RDAM%20123/reset'):
            self.assertIn(text, page)
        for action in ("stop", "normal", "fast", "unlock", "availability", "reset"):
            self.assertIn(f'data-action="{action}"', page)
        self.assertNotIn("<b>evil</b>", page)
        self.assertNotIn("<script>x()", page)
        self.assertIn("&lt;b&gt;evil&lt;/b&gt;", page)
        self.assertNotIn("http://", page.replace('xmlns="http://www.w3.org/2000/svg"', ""))

    @defer.inlineCallbacks
    def test_security_profile_and_events(self):
        """
        Each charger's security profile and certificate (when known), and
        its security events newest first (type, time, techInfo), on the page
        and in the API; the events are logged.
        """
        cp = yield self.charger()
        logged = self.enterContext(capturedLogs())
        for kind, info in (("FirmwareUpdated", None), ("InvalidTLSVersion", "<TLS 1.0>")):
            yield cp.call("SecurityEventNotification", {
                "type": kind, "timestamp": "2026-03-01T10:00:00Z",
                **({"techInfo": info} if info else {})})
        status = yield self.get("/api/status")
        chargers = {c["id"]: c for c in status.json["chargers"]}
        self.assertEqual((chargers["CP1"]["security_profile"], chargers["CP1"]["certificate"]),
                         (0, None))
        self.assertEqual(chargers["RDAM 123"]["security_profile"], 1)
        self.assertEqual(chargers["CP1"]["security_events"], [
            {"type": "InvalidTLSVersion", "time": "2026-03-01T10:00:00Z",
             "tech_info": "<TLS 1.0>"},
            {"type": "FirmwareUpdated", "time": "2026-03-01T10:00:00Z", "tech_info": None}])
        self.assertIn("CP1: security event InvalidTLSVersion <TLS 1.0>",
                      [formatEvent(e) for e in logged])
        page = (yield self.get("/")).body.decode()
        for text in ("Security profile", "Security events", "InvalidTLSVersion",
                     "&lt;TLS 1.0&gt;"):
            self.assertIn(text, page)
        self.service.central.security.remember_certificate("CP1", ChargerCertificate(
            "1f2e", datetime(2028, 1, 1, tzinfo=timezone.utc)))
        status = yield self.get("/api/status")
        self.assertEqual(status.json["chargers"][0]["certificate"],
                         {"serial": "1f2e", "expiry": "2028-01-01T00:00:00Z"})
        self.assertIn("1f2e", (yield self.get("/")).body.decode())

    @defer.inlineCallbacks
    def test_page_session_history_chart(self):
        """
        Finished sessions appear in the table and as SVG bars per day and
        per session.
        """
        cp = yield self.charger()
        tx = yield self.charging(cp, meter_start=0, energy_wh=1000)
        yield cp.stop_transaction(tx, 7250, reason="EVDisconnected")
        page = (yield self.get("/")).body.decode()
        self.assertEqual(page.count('<svg class="chart"'), 2)
        self.assertIn("7.25\N{NO-BREAK SPACE}kWh", page)
        self.assertIn("EVDisconnected", page)
        self.assertIn("Last 30 days: 1 session, 7.2 kWh", page)

    @defer.inlineCallbacks
    def test_script_and_stylesheet(self):
        """
        The page's script and style sheet are served from the controller.
        """
        css = yield self.get("/page.css")
        self.assertEqual(css.header("Content-Type"), "text/css; charset=utf-8")
        js = yield self.get("/page.js")
        self.assertEqual(js.header("Content-Type"), "text/javascript; charset=utf-8")
        self.assertIn(b"data-post", js.body)


class CommandTests(WebTestCase):
    """
    C{POST /api/chargers/{id}/{action}} through the control API.
    """

    @defer.inlineCallbacks
    def test_stop_sends_remote_stop(self):
        """
        stop sends RemoteStopTransaction for the running transaction.
        """
        cp = yield self.charger()
        tx = yield self.charging(cp)
        response = yield self.post("/api/chargers/CP1/stop")
        self.assertEqual(response.code, 200, response.body)
        self.assertEqual(response.json["status"], "Accepted")
        _, payload = yield cp.wait_for_call("RemoteStopTransaction")
        self.assertEqual(payload, {"transactionId": tx})

    @defer.inlineCallbacks
    def test_stop_without_transaction_is_refused(self):
        """
        Nothing to stop: 409 and the reason.
        """
        yield self.charger()
        response = yield self.post("/api/chargers/CP1/stop", {"connector": 1})
        self.assertError(response, 409, "no transaction")
        self.assertEqual(response.json["status"], "Refused")

    @defer.inlineCallbacks
    def test_start_with_tag(self):
        """
        start sends RemoteStartTransaction with the given idTag.
        """
        cp = yield self.charger()
        response = yield self.post("/api/chargers/CP1/start", {"id_tag": "04A1B2C3"})
        self.assertEqual(response.code, 200, response.body)
        _, payload = yield cp.wait_for_call("RemoteStartTransaction")
        self.assertEqual((payload["idTag"], payload["connectorId"]), ("04A1B2C3", 1))

    @defer.inlineCallbacks
    def test_each_action_reaches_the_charger(self):
        """
        Every action of the table ends up as its OCPP call.
        """
        cp = yield self.charger()
        for action, body, call in [
            ("unlock", {}, "UnlockConnector"),
            ("availability", {"available": False}, "ChangeAvailability"),
            ("availability", {"available": True, "connector": 1}, "ChangeAvailability"),
            ("reset", {}, "Reset"),
            ("reset", {"hard": True}, "Reset"),
            ("reserve", {"id_tag": "04A1B2C3"}, "ReserveNow"),
            ("free", {}, "CancelReservation"),
            ("max-current", {"amps": 10}, "SetChargingProfile"),
        ]:
            response = yield self.post("/api/chargers/CP1/" + action, body)
            self.assertEqual(response.code, 200, (action, response.body))
            yield cp.wait_for_call(call)
        kinds = [p.get("type") for a, p in cp.calls_received if a in ("ChangeAvailability", "Reset")]
        self.assertEqual(kinds, ["Inoperative", "Operative", "Soft", "Hard"])

    @defer.inlineCallbacks
    def test_limit_actions(self):
        """
        fast, normal, pause and resume set the limit, shown in the status.
        """
        cp = yield self.charger()
        yield self.charging(cp)
        for action, limit in (("fast", 32), ("normal", 16), ("pause", 0), ("resume", 16)):
            response = yield self.post("/api/chargers/CP1/" + action)
            self.assertEqual(response.code, 200, (action, response.body))
            status = (yield self.get("/api/status")).json
            self.assertEqual(status["chargers"][0]["connectors"][0]["limit_a"], limit, action)
        self.assertIn("SetChargingProfile", [a for a, _ in cp.calls_received])

    @defer.inlineCallbacks
    def test_bad_bodies_get_400_with_the_reason(self):
        """
        Not JSON, not an object, a missing, unknown or mistyped field: 400.
        """
        yield self.charger()
        for action, body, words in [
            ("stop", b"{nope", ["not JSON"]),
            ("stop", [1], ["JSON object"]),
            ("availability", {}, ["'available' is missing"]),
            ("availability", {"available": "no"}, ["'available'", "true or false"]),
            ("max-current", {"current": 10}, ["unknown field 'current'", "amps"]),
            ("max-current", {"amps": "ten"}, ["'amps'", "amperes"]),
            ("max-current", {"amps": -1}, ["negative"]),
            ("stop", {"connector": 0}, ["'connector'"]),
            ("start", {"id_tag": "X" * 21}, ["'id_tag'", "20"]),
            ("reserve", {"expiry": "2030-01-01T00:00:00"}, ["'expiry'", "zone"]),
        ]:
            response = yield self.post("/api/chargers/CP1/" + action, body)
            self.assertError(response, 400, *words)

    @defer.inlineCallbacks
    def test_unknown_charger_connector_or_action_404(self):
        """
        Unknown charger, connector or action: 404.
        """
        self.assertError((yield self.post("/api/chargers/NOPE/stop")), 404, "NOPE")
        self.assertError((yield self.post("/api/chargers/CP1/stop", {"connector": 9})), 404)
        self.assertError((yield self.post("/api/chargers/CP1/explode")), 404, "explode")

    @defer.inlineCallbacks
    def test_offline_charger_409(self):
        """
        A charger that is not connected: 409 NotConnected.
        """
        response = yield self.post("/api/chargers/TWIN/unlock", {"connector": 2})
        self.assertError(response, 409, "not connected")
        self.assertEqual(response.json["status"], "NotConnected")

    @defer.inlineCallbacks
    def test_charger_timeout_504(self):
        """
        A charger that does not answer within call_timeout: 504.
        """
        cp = yield self.charger()
        cp.handlers["UnlockConnector"] = lambda payload: NO_REPLY
        response = yield self.post("/api/chargers/CP1/unlock")
        self.assertError(response, 504)
        self.assertEqual(response.json["status"], "Timeout")

    @defer.inlineCallbacks
    def test_charger_callerror_502(self):
        """
        A charger answering with a CALLERROR: 502 with its error code.
        """
        cp = yield self.charger()
        cp.handlers["Reset"] = lambda payload: CallErrorReply("InternalError", "busy")
        response = yield self.post("/api/chargers/CP1/reset")
        self.assertError(response, 502, "InternalError")

    @defer.inlineCallbacks
    def test_charger_rejects_409(self):
        """
        A charger answering Rejected: 409 with its status.
        """
        cp = yield self.charger()
        cp.handlers["UnlockConnector"] = lambda payload: {"status": "UnlockFailed"}
        response = yield self.post("/api/chargers/CP1/unlock")
        self.assertError(response, 409, "UnlockFailed")


class OcppPassThroughTests(WebTestCase):
    """
    C{POST /api/chargers/{id}/ocpp/{Action}}.
    """

    @defer.inlineCallbacks
    def test_reply_is_the_chargers_json(self):
        """
        Any CS->CP action goes out with the body as payload; the answer is
        what the charger replied.
        """
        cp = yield self.charger()
        response = yield self.post("/api/chargers/CP1/ocpp/GetConfiguration",
                                   {"key": ["HeartbeatInterval", "Nope"]})
        self.assertEqual(response.code, 200, response.body)
        self.assertEqual(response.json["unknownKey"], ["Nope"])
        self.assertEqual(response.json["configurationKey"][0]["key"], "HeartbeatInterval")
        self.assertIn(("GetConfiguration", {"key": ["HeartbeatInterval", "Nope"]}),
                      cp.calls_received)

    @defer.inlineCallbacks
    def test_errors(self):
        """
        An invalid payload 400, an action the central system does not send
        404, an unknown charger 404, an offline charger 409.
        """
        yield self.charger()
        self.assertError((yield self.post("/api/chargers/CP1/ocpp/ChangeConfiguration", {})),
                         400)
        self.assertError((yield self.post("/api/chargers/CP1/ocpp/Heartbeat")), 404,
                         "Heartbeat")
        self.assertError((yield self.post("/api/chargers/CP1/ocpp/Nope")), 404)
        self.assertError((yield self.post("/api/chargers/X/ocpp/Reset", {"type": "Soft"})), 404)
        self.assertError((yield self.post("/api/chargers/TWIN/ocpp/Reset", {"type": "Soft"})),
                         409)


class PasswordTests(WebTestCase):
    """
    C{POST /api/chargers/{id}/password}: rotating the AuthorizationKey.
    """

    def rdam(self, key=RDAM_KEY):
        return self.charger("RDAM 123", auth=("RDAM 123", key))

    @defer.inlineCallbacks
    def test_rotated_key_takes_over_and_persists(self):
        """
        The key goes out with ChangeConfiguration; once accepted it is the
        one the charger must log in with, also after a restart.
        """
        cp = yield self.rdam()
        new_key = "A1B2C3D4E5F60718293A4B5C6D7E8F9012345678"
        response = yield self.post("/api/chargers/RDAM%20123/password", {"password": new_key})
        self.assertEqual(response.code, 200, response.body)
        self.assertEqual(response.json["password"], new_key)
        self.assertEqual(cp.configuration["AuthorizationKey"][0], new_key)
        yield cp.close()
        with self.assertRaises(HandshakeRefused):
            yield connect_charger(self.service.url, "RDAM 123", auth=("RDAM 123", RDAM_KEY))
        yield (yield self.rdam(bytes.fromhex(new_key))).close()
        yield self.restart()
        central = self.service.central
        self.assertTrue(central.credentials.check_password("RDAM 123", bytes.fromhex(new_key)))
        self.assertFalse(central.credentials.check_password("RDAM 123", RDAM_KEY))

    @defer.inlineCallbacks
    def test_generated_key(self):
        """
        Without a password in the body a random 20-byte key is made.
        """
        cp = yield self.charger()
        response = yield self.post("/api/chargers/CP1/password")
        self.assertEqual(response.code, 200, response.body)
        key = response.json["password"]
        self.assertEqual(len(bytes.fromhex(key)), 20)
        self.assertEqual(cp.configuration["AuthorizationKey"][0], key)
        self.assertTrue(self.service.central.credentials.check_password("CP1", key.encode()))
        self.assertFalse(self.service.central.credentials.check_password("CP1", None))

    @defer.inlineCallbacks
    def test_refused_key_keeps_the_old(self):
        """
        A charger that rejects the key keeps logging in with the old one.
        """
        cp = yield self.rdam()
        cp.handlers["ChangeConfiguration"] = lambda payload: {"status": "Rejected"}
        response = yield self.post("/api/chargers/RDAM%20123/password",
                                   {"password": "0123456789abcdef0123"})
        self.assertError(response, 409, "Rejected", "old key")
        self.assertTrue(self.service.central.credentials.check_password("RDAM 123", RDAM_KEY))

    @defer.inlineCallbacks
    def test_errors(self):
        """
        A bad key 400, an offline charger 409.
        """
        yield self.charger()
        self.assertError((yield self.post("/api/chargers/CP1/password", {"password": "short"})),
                         400, "'password'")
        self.assertError((yield self.post("/api/chargers/CP1/password", {"key": "x" * 20})),
                         400, "unknown field 'key'")
        self.assertError((yield self.post("/api/chargers/TWIN/password")), 409)
        self.assertError((yield self.post("/api/chargers/NOPE/password")), 404)


class TagTests(WebTestCase):
    """
    C{GET/PUT/DELETE /api/tags[/{id}]}.
    """

    @defer.inlineCallbacks
    def test_list_and_get(self):
        """
        The configuration's tags are listed; a tag is found in any case.
        """
        tags = (yield self.get("/api/tags")).json["tags"]
        self.assertEqual([t["id"] for t in tags], ["04A1B2C3", "BLOCKED1", "CHILD", "OLDTAG"])
        self.assertEqual({t["source"] for t in tags}, {"config"})
        child = (yield self.get("/api/tags/child")).json
        self.assertEqual((child["id"], child["parent"]), ("CHILD", "FAMILY"))
        self.assertError((yield self.get("/api/tags/NOPE")), 404, "NOPE")

    @defer.inlineCallbacks
    def test_put_applies_and_persists(self):
        """
        A tag put through the API decides Authorize at once and is there
        after a restart.
        """
        cp = yield self.charger()
        response = yield self.http("PUT", "/api/tags/CARD9",
                                   {"status": "Blocked", "expiry": "2099-01-01T00:00:00Z",
                                    "parent": "FAMILY"})
        self.assertEqual(response.code, 200, response.body)
        self.assertEqual(response.json, {"id": "CARD9", "status": "Blocked",
                                         "expiry": "2099-01-01T00:00:00Z", "parent": "FAMILY",
                                         "source": "api"})
        answer = yield cp.authorize("card9")
        self.assertEqual(answer["idTagInfo"]["status"], "Blocked")
        yield cp.close()
        yield self.restart()
        self.assertEqual((yield self.get("/api/tags/CARD9")).json["status"], "Blocked")
        self.assertEqual(self.service.central.tags.get("CARD9").status, "Blocked")

    @defer.inlineCallbacks
    def test_delete(self):
        """
        An API tag is deleted, also from the store; a configured tag is
        refused with 409, an unknown one 404.
        """
        yield self.http("PUT", "/api/tags/Card9", {})
        response = yield self.http("DELETE", "/api/tags/CARD9")
        self.assertEqual((response.code, response.json), (200, {"deleted": "Card9"}))
        self.assertError((yield self.get("/api/tags/CARD9")), 404)
        self.assertError((yield self.http("DELETE", "/api/tags/CARD9")), 404)
        self.assertError((yield self.http("DELETE", "/api/tags/04A1B2C3")), 409, "configuration")
        yield self.restart()
        self.assertIsNone(self.service.central.tags.get("CARD9"))

    @defer.inlineCallbacks
    def test_put_bad_body_400(self):
        """
        A bad status, expiry or id: 400 with the reason.
        """
        for path, body, words in [
            ("/api/tags/T1", {"status": "Maybe"}, ["'status'", "Accepted"]),
            ("/api/tags/T1", {"expiry": "tomorrow"}, ["'expiry'"]),
            ("/api/tags/T1", {"colour": "red"}, ["unknown field 'colour'"]),
            ("/api/tags/" + "T" * 21, {}, ["tag id"]),
        ]:
            self.assertError((yield self.http("PUT", path, body)), 400, *words)


class TransactionTests(WebTestCase):
    """
    C{GET /api/transactions}, as JSON and CSV.
    """

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        cp = yield self.charger()
        tx = yield self.charging(cp, meter_start=100, energy_wh=600)
        yield cp.stop_transaction(tx, 2100, reason="Local")
        yield self.charging(cp, meter_start=2100, energy_wh=2600)

    @defer.inlineCallbacks
    def test_json(self):
        """
        Every session, newest first, with its energy; filters apply.
        """
        rows = (yield self.get("/api/transactions")).json["transactions"]
        self.assertEqual([(r["energy_wh"], r["stop_reason"]) for r in rows],
                         [(500, None), (2000, "Local")])
        self.assertEqual(rows[1]["charger"], "CP1")
        # Our clock was right: the chargers' times hold.
        self.assertEqual([r["time_uncertain"] for r in rows], [False, False])
        self.assertEqual(len((yield self.get("/api/transactions?limit=1")).json["transactions"]),
                         1)
        self.assertEqual((yield self.get("/api/transactions?charger=TWIN")).json,
                         {"transactions": []})
        late = yield self.get("/api/transactions?since=2999-01-01")
        self.assertEqual(late.json, {"transactions": []})

    @defer.inlineCallbacks
    def test_csv(self):
        """
        C{?format=csv} gives a CSV file with a header row.
        """
        response = yield self.get("/api/transactions?format=csv&charger=CP1")
        self.assertEqual(response.header("Content-Type"), "text/csv; charset=utf-8")
        rows = list(csv.DictReader(io.StringIO(response.body.decode())))
        self.assertEqual([r["energy_wh"] for r in rows], ["500", "2000"])
        self.assertEqual(rows[1]["id_tag"], "04A1B2C3")

    @defer.inlineCallbacks
    def test_bad_query_400(self):
        """
        A bad filter is refused with the reason.
        """
        for query, words in [("since=yesterday", ["'since'"]),
                             ("since=2024-01-01T00:00:00", ["zone"]),
                             ("limit=0", ["'limit'"]), ("format=xml", ["csv"]),
                             ("colour=red", ["unknown field 'colour'"])]:
            self.assertError((yield self.get("/api/transactions?" + query)), 400, *words)


class RoutingTests(WebTestCase):
    """
    Unknown routes, wrong methods, cross-site requests.
    """

    @defer.inlineCallbacks
    def test_unknown_route_404(self):
        for path in ("/nope", "/api", "/api/status/more", "/api/chargers/CP1"):
            self.assertError((yield self.get(path)), 404, "nothing at")

    @defer.inlineCallbacks
    def test_wrong_method_405(self):
        """
        A known path with another method: 405 naming the allowed ones.
        """
        response = yield self.get("/api/chargers/CP1/stop")
        self.assertError(response, 405, "POST")
        self.assertEqual(response.header("Allow"), "POST")
        response = yield self.http("POST", "/api/tags/X")
        self.assertEqual(response.header("Allow"), "GET, PUT, DELETE")
        self.assertError((yield self.http("DELETE", "/api/status")), 405)

    @defer.inlineCallbacks
    def test_cross_site_post_403(self):
        """
        A POST from a page of another site is refused; from the page itself
        it is not.
        """
        yield self.charger()
        response = yield self.post("/api/chargers/CP1/reset",
                                   headers={"Origin": "http://evil.example"})
        self.assertError(response, 403, "cross-site")
        response = yield self.post("/api/chargers/CP1/reset",
                                   headers={"Origin": self.base})
        self.assertEqual(response.code, 200, response.body)


class AuthTests(WebTestCase):
    """
    HTTP Basic auth with C{[web] username/password} on everything.
    """

    config_text = AUTH_CONFIG
    credentials = (WEB_USER, WEB_PASSWORD)

    @defer.inlineCallbacks
    def test_everything_needs_credentials(self):
        """
        Without, or with a wrong user or password: 401 and a challenge.
        (Wrong ones on fewer paths: ten failures a minute lock an address
        out, see tests.test_attacks_web.)
        """
        paths = [("GET", "/"), ("GET", "/page.js"), ("GET", "/api/status"),
                 ("POST", "/api/chargers/CP1/stop"), ("GET", "/nope"),
                 ("DELETE", "/api/tags/04A1B2C3")]
        for credentials, tried in [(None, paths), ((WEB_USER, "wrong"), paths[:4]),
                                   (("admin", WEB_PASSWORD), paths[2:])]:
            self.credentials = credentials
            for method, path in tried:
                response = yield self.http(method, path)
                self.assertError(response, 401)
                self.assertEqual(response.header("WWW-Authenticate"),
                                 'Basic realm="xxterocpp", charset="UTF-8"')

    @defer.inlineCallbacks
    def test_right_credentials(self):
        """
        With the configured user and password everything is served.
        """
        self.assertEqual((yield self.get("/")).code, 200)
        self.assertEqual((yield self.get("/api/status")).code, 200)
        self.assertEqual((yield self.get("/api/tags")).code, 200)

    @defer.inlineCallbacks
    def test_credentials_never_logged(self):
        """
        Neither a right nor a wrong password shows up in the log.
        """
        with capturedLogs() as events:
            yield self.get("/api/status", credentials=(WEB_USER, "guess-123"))
            yield self.get("/api/status")
            yield self.post("/api/chargers/CP1/ocpp/Nope")
        text = repr(events)
        self.assertNotIn("guess-123", text)
        self.assertNotIn(WEB_PASSWORD, text)
        self.assertNotIn(base64.b64encode(f"{WEB_USER}:{WEB_PASSWORD}".encode()).decode(), text)


class WebServiceTests(TestCase):
    """
    The web interface in the composition root.
    """

    @defer.inlineCallbacks
    def test_listens_on_web_interface(self):
        """
        The service listens on C{[web] interface/port} and logs it.
        """
        with capturedLogs() as events:
            service = yield start_service(self, write_config(self, WEB_CONFIG))
            port = yield service.web.when_listening()
        self.assertEqual(port.getHost().host, "127.0.0.1")
        self.assertTrue(any(e.get("what") == "web interface" for e in events))


class PlanChartTests(TestCase):
    """
    L{plan_chart}: the smart plan's timeline as inline SVG.
    """

    def render(self, plan):
        from twisted.web.template import flattenString

        from xxterocpp.web.charts import plan_chart

        out = []
        flattenString(None, plan_chart(plan)).addCallback(out.append)
        return out[0].decode()

    def test_bars_surplus_and_price_line(self):
        svg = self.render([
            {"start": "2024-03-05T20:00:00+00:00", "end": "2024-03-05T22:00:00+00:00",
             "current": 0.0, "surplus_current": 0.0, "price": 0.3},
            {"start": "2024-03-05T22:00:00+00:00", "end": "2024-03-05T23:00:00+00:00",
             "current": 16.0, "surplus_current": 8.0, "price": 0.18},
        ])
        self.assertTrue(svg.startswith('<svg class="chart plan"'))
        # One bar (the 0 A slot has none), its lower half from the sun.
        self.assertIn('<rect x="400.0" width="200.0" y="16.0" height="104.0">', svg)
        self.assertIn('<rect class="surplus" x="400.0" width="200.0" y="68.0" height="52.0">', svg)
        self.assertIn("<polyline points=", svg)
        self.assertIn("16 A at 0.18/kWh", svg)
        self.assertNotIn("<script", svg)

    def test_empty_plan(self):
        svg = self.render([])
        self.assertIn("<title>Planned charging current</title>", svg)
        self.assertNotIn("<rect", svg)
