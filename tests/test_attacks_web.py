"""
Attacks on the web interface, each against the real service over loopback
and each failing safely: DNS rebinding, lone surrogates from a charger, a
failing render, a smart departure years ahead, big and unauthenticated
bodies, password guessing, CSV formula injection, absurd queries. Then a
property-based fuzz of the API's paths, queries and bodies, in memory.

Bounded: a few hundred requests in all, only to 127.0.0.1.
"""

import base64
import csv
import io
import json
from datetime import datetime, timedelta
from urllib.parse import quote, urlencode

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.logger import capturedLogs
from twisted.trial.unittest import SkipTest

from tests.sim import connect_charger
from tests.test_smart_e2e import SmartServiceMixin, smart_config
from tests.test_web import AUTH_CONFIG, WEB_PASSWORD, WEB_USER, WebTestCase, web_agent
from tests.test_web_routes import RecordingCharger, RoutesTestCase
from xxterocpp.ocpp import messages as m
from xxterocpp.web import api
from xxterocpp.web.api import ROUTES
from xxterocpp.web.commands import COMMANDS
from xxterocpp.web.gate import MAX_BODY

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # the Debian stack without python3-hypothesis
    given = None

#: Seconds any one answer may take before the test calls it a hang.
ANSWER_TIMEOUT = 10


class _RawClient(protocol.Protocol):
    """
    Writes bytes as given and keeps everything the server sends until it
    closes the connection.
    """

    def __init__(self):
        self.data = b""
        self.closed = defer.Deferred()

    def dataReceived(self, data):
        self.data += data

    def connectionLost(self, reason):
        self.closed.callback(self.data)


@defer.inlineCallbacks
def raw_exchange(testcase, port, *chunks):
    """
    Send C{chunks} to 127.0.0.1:C{port} and wait for the server to close.

    @return: everything it answered.
    """
    client = _RawClient()
    yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
    testcase.addCleanup(lambda: client.transport.connected and client.transport.abortConnection())
    for chunk in chunks:
        client.transport.write(chunk)
    answer = yield client.closed.addTimeout(ANSWER_TIMEOUT, reactor)
    return answer


def status_of(answer):
    """
    @return: the status code of a raw HTTP answer.
    """
    return int(answer.split(b" ", 2)[1])


class AttackTestCase(WebTestCase):
    """
    The service on loopback, answers bounded in time.
    """

    def http(self, *args, **kwargs):
        return super().http(*args, **kwargs).addTimeout(ANSWER_TIMEOUT, reactor)

    @property
    def port(self):
        return int(self.base.rsplit(":", 1)[1])


class DnsRebindingTests(AttackTestCase):
    """
    Issue 15 item 4: a page of evil.example whose name now resolves to
    127.0.0.1 reaches the password-less loopback page with the browser.
    """

    @defer.inlineCallbacks
    def test_foreign_host_is_refused(self):
        """
        With C{Host: evil.example} and a matching C{Origin} nothing is read
        or changed: no tag is created, the charger gets no Reset.
        """
        cp = yield self.charger()
        evil = {"Host": f"evil.example:{self.port}", "Origin": f"http://evil.example:{self.port}"}
        for method, path, body in [("PUT", "/api/tags/EVIL1", {"status": "Accepted"}),
                                   ("POST", "/api/chargers/CP1/reset", {"hard": True}),
                                   ("GET", "/api/status", None), ("GET", "/", None)]:
            self.assertError((yield self.http(method, path, body, headers=evil)), 403,
                             "127.0.0.1")
        self.assertEqual((yield self.get("/api/tags/EVIL1")).code, 404)
        self.assertNotIn("Reset", [action for action, _ in cp.calls_received])

    @defer.inlineCallbacks
    def test_state_changes_need_json(self):
        """
        What a form or a plain cross-site C{fetch} can send without a CORS
        preflight (text/plain, form encoding, no type) changes nothing.
        """
        for content_type in ("text/plain", "application/x-www-form-urlencoded",
                             "multipart/form-data; boundary=x"):
            response = yield self.http("PUT", "/api/tags/EVIL2", b'{"status": "Accepted"}',
                                       headers={"Content-Type": content_type})
            self.assertError(response, 415, "application/json")
        self.assertEqual((yield self.get("/api/tags/EVIL2")).code, 404)
        ok = yield self.http("PUT", "/api/tags/GOOD2", {"status": "Accepted"})
        self.assertEqual(ok.code, 200, ok.body)


class SurrogateTests(AttackTestCase):
    """
    Issue 15 item 5: C{"chargePointVendor": "Evil\\ud800"} made C{GET /}
    answer 500 and C{GET /api/status} hang, also after a restart.
    """

    @defer.inlineCallbacks
    def test_lone_surrogate_in_charger_strings(self):
        """
        The page and the status answer, in valid UTF-8 with U+FFFD in its
        place; also after a restart, with the boot information read back
        from the database. (Refusing such strings at decoding is the OCPP
        adapter's part: this is the web interface's own defence.)
        """
        yield self.service.store.put_setting("CP1", "boot", {"vendor": "Evil\ud800",
                                                             "model": "M\udfff"})
        self.service.central.chargers["CP1"].boot = {"vendor": "Evil\ud800"}
        for restarted in (False, True):
            if restarted:
                yield self.restart()
                self.assertEqual(self.service.central.chargers["CP1"].boot["model"], "M\udfff")
            for path in ("/", "/api/status"):
                response = yield self.get(path)
                self.assertEqual(response.code, 200, path)
                self.assertIn("Evil\ufffd", response.body.decode("utf-8"), path)

    @defer.inlineCallbacks
    def test_failing_render_answers_500(self):
        """
        A bug while rendering the status is a JSON 500, not an open request.
        """

        def broken(*args):
            raise RuntimeError("render bug")

        self.patch(api, "snapshot", broken)
        self.assertError((yield self.get("/api/status")), 500, "internal error")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class DepartureTests(SmartServiceMixin, AttackTestCase):
    """
    Issue 15 item 11: a smart departure a year ahead blocked the reactor for
    a second and slowed every page; year 9999 would have hung it.
    """

    @defer.inlineCallbacks
    def setUp(self):
        yield SmartServiceMixin.start(self, smart_config(self, prices_ga="", surplus_ga=""))
        yield self.serve(self.service)
        self.agent = web_agent(self)

    @defer.inlineCallbacks
    def test_far_departures_refused(self):
        """
        More than 7 days ahead is 400; 6 days is planned.
        """
        cp = yield self.charger()
        yield self.smart_session(cp)
        now = datetime.now().astimezone()
        for departure in ((now + timedelta(days=365)).isoformat(), "9999-12-31T23:59:00",
                          (now + timedelta(days=7, minutes=5)).isoformat()):
            response = yield self.http("PUT", "/api/chargers/CP1/smart",
                                       {"departure": departure})
            self.assertEqual(response.code, 400, response.body)
            self.assertIn("more than 7 days", response.json["error"])
        response = yield self.http("PUT", "/api/chargers/CP1/smart",
                                   {"departure": (now + timedelta(days=6)).isoformat()})
        self.assertEqual(response.code, 200, response.body)
        self.assertEqual((yield self.get("/")).code, 200)


class BodyTests(AttackTestCase):
    """
    Issue 15 item 12: a 30 MB body was read, unauthenticated, before the
    401. Now the headers alone decide.
    """

    config_text = AUTH_CONFIG
    credentials = (WEB_USER, WEB_PASSWORD)

    def head(self, authorization=None, length=30_000_000, extra=b""):
        lines = [b"PUT /api/tags/BIG HTTP/1.1", b"Host: 127.0.0.1:%d" % self.port,
                 b"Content-Type: application/json", b"Content-Length: %d" % length]
        if authorization:
            lines.append(b"Authorization: Basic " + authorization)
        return b"\r\n".join(lines) + b"\r\n" + extra + b"\r\n"

    @defer.inlineCallbacks
    def test_unauthenticated_big_body_401_before_it_is_sent(self):
        """
        Only the headers are sent: the 401 comes, the connection closes.
        """
        answer = yield raw_exchange(self, self.port, self.head())
        self.assertEqual(status_of(answer), 401)
        self.assertIn(b"WWW-Authenticate: Basic", answer)

    @defer.inlineCallbacks
    def test_authenticated_big_body_413_before_it_is_sent(self):
        token = base64.b64encode(f"{WEB_USER}:{WEB_PASSWORD}".encode())
        answer = yield raw_exchange(self, self.port,
                                    self.head(token, extra=b"Expect: 100-continue\r\n"))
        self.assertEqual(status_of(answer), 413)
        self.assertNotIn(b"100 Continue", answer)
        self.assertEqual((yield self.get("/api/tags/BIG")).code, 404)

    @defer.inlineCallbacks
    def test_chunked_body_cut_off(self):
        """
        A chunked body (no length to judge) is cut off past 64 KiB.
        """
        token = base64.b64encode(f"{WEB_USER}:{WEB_PASSWORD}".encode())
        head = (b"PUT /api/tags/BIG HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                b"Authorization: Basic %s\r\n\r\n" % (self.port, token))
        chunk = b"1000\r\n" + b" " * 4096 + b"\r\n"
        answer = yield raw_exchange(self, self.port, head, chunk * (MAX_BODY // 4096 + 1))
        self.assertEqual(status_of(answer), 413)

    @defer.inlineCallbacks
    def test_small_body_still_served(self):
        response = yield self.http("PUT", "/api/tags/SMALL", b" " * 60_000 + b"{}")
        self.assertEqual(response.code, 200, response.body)


class GuessingTests(AttackTestCase):
    """
    Issue 15 item 13 (web): 500 wrong Basic-auth guesses took 0.38 s.
    """

    config_text = AUTH_CONFIG

    @defer.inlineCallbacks
    def test_guesses_throttled_per_address_with_one_log_line(self):
        """
        Ten wrong passwords a minute are tried; the rest, right or wrong,
        are 429 without a look at them, and the log has one line.
        """
        codes = []
        with capturedLogs() as events:
            for guess in range(40):
                response = yield self.get("/api/status", credentials=(WEB_USER, f"guess{guess}"))
                codes.append(response.code)
            right = yield self.get("/api/status", credentials=(WEB_USER, WEB_PASSWORD))
        self.assertEqual(codes, [401] * 10 + [429] * 30)
        self.assertEqual(right.code, 429)
        self.assertLessEqual(int(right.header("Retry-After")), 60)
        warnings = [e for e in events if "failed logins" in e.get("log_format", "")]
        self.assertEqual([(e["address"], e["n"]) for e in warnings], [("127.0.0.1", 10)])

    @defer.inlineCallbacks
    def test_browser_asking_for_the_prompt_is_not_a_guess(self):
        """
        Requests without credentials (a browser before its login prompt) are
        401, not counted.
        """
        for _ in range(15):
            self.assertEqual((yield self.get("/api/status")).code, 401)
        right = yield self.get("/api/status", credentials=(WEB_USER, WEB_PASSWORD))
        self.assertEqual(right.code, 200)


class CsvInjectionTests(AttackTestCase):
    """
    Issue 15 item 14: an idTag C{=cmd|"/c calc"!A1} was exported as is.
    """

    @defer.inlineCallbacks
    def test_formula_cells_quoted(self):
        cp = yield self.charger()
        tags = ['=cmd|"/c calc"!A1', "+1+cmd", "-1+cmd", "@SUM(A1:A9)"]
        for meter, tag in enumerate(tags):
            started = yield cp.start_transaction(1, tag, meter * 1000)
            yield cp.stop_transaction(started["transactionId"], meter * 1000 + 500)
        response = yield self.get("/api/transactions?format=csv")
        exported = [row["id_tag"] for row in csv.DictReader(io.StringIO(response.body.decode()))]
        self.assertEqual(sorted(exported), sorted("'" + tag for tag in tags))


class QueryTests(AttackTestCase):
    """
    Issue 15 item 15 (web): C{?limit=99999999999999999999} gave 500.
    """

    @defer.inlineCallbacks
    def test_absurd_queries_400(self):
        with capturedLogs() as events:
            for query in ("limit=99999999999999999999", "limit=9223372036854775808",
                          "limit=%C2%B2", "limit=-1", "since=0001-01-01T00:00:00%2B01:00",
                          "until=9999-12-31T23:59:59-01:00", "since=" + "9" * 5000,
                          "format=csv&format=xml"):
                self.assertError((yield self.get("/api/transactions?" + query)), 400)
            for query in ("connector=99999999999999999999", "connector=x"):
                response = yield self.get("/api/chargers/CP1/smart?" + query)
                self.assertIn(response.code, (400, 404), response.body)
        self.assertEqual([e for e in events if e.get("log_failure")], [])
        ok = yield self.get("/api/transactions?limit=9223372036854775807")
        self.assertEqual(ok.code, 200)


def _text():
    return st.text(max_size=12).map(lambda s: quote(s, safe=""))


#: Path parameters: mostly names the routes know, else anything.
_PARAMETERS = {
    "charger_id": ["CP1", "cp1", "OFF", "NOPE"],
    "command": sorted(COMMANDS),
    "action": sorted(m.ACTIONS) + ["Nope"],
    "tag_id": ["CONFIGTAG", "T1", "t1", "%3Dcmd"],
}


#: Methods: the common ones most often, then the odd ones.
_METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]


def _route_request(route):
    """
    A request for C{route}, mostly with its method and known parameters.
    """
    parts = [part for part in route.pattern.strip("/").split("/") if part]
    known = st.sampled_from
    segments = st.tuples(*[
        known(_PARAMETERS[part.strip("{}")]) | known(_PARAMETERS[part.strip("{}")]) | _text()
        if part.startswith("{") else st.just(part) for part in parts])
    return st.tuples(known([route.method] * 4 + _METHODS), segments)


def _method_and_path():
    """
    A method and the segments of a path: a route's with its parameters
    filled in, or any segments (the routes' words, escapes, anything).
    """
    words = sorted({part for route in ROUTES for part in route.pattern.strip("/").split("/")
                    if part and not part.startswith("{")} | {
        "..", "%", "%zz", "%00", "%F0%9F%98%80", "%ED%A0%80"})
    anything = st.tuples(st.sampled_from(_METHODS),
                         st.lists(st.sampled_from(words) | _text(), max_size=6))
    routed = st.sampled_from(ROUTES).flatmap(_route_request)
    return routed | routed | anything


def _json():
    keys = sorted({key for c in COMMANDS.values() for key in c.fields} | {
        "connector", "departure", "energy_wh", "status", "expiry", "parent", "password",
        "type", "key", "value", "connectorId", "idTag"})
    scalars = (st.none() | st.booleans() | st.integers() | st.floats()
               | st.text(max_size=30) | st.sampled_from([
                   "07:00", "2030-01-01T07:00:00", "9999-12-31T23:59:59", "0001-01-01T00:00:00",
                   "Accepted", "Blocked", "Soft", "\ud800"]))
    return st.recursive(scalars, lambda children: st.lists(children, max_size=3)
                        | st.dictionaries(st.sampled_from(keys) | st.text(max_size=8),
                                          children, max_size=4), max_leaves=8)


def _requests():
    query = st.dictionaries(
        st.sampled_from(["limit", "since", "until", "charger", "format", "connector"])
        | st.text(max_size=6), st.text(max_size=24), max_size=3).map(urlencode)
    body = (st.none() | _json().map(lambda v: json.dumps(v).encode())
            | st.binary(max_size=64))
    return st.tuples(_method_and_path(), query, body)


class FuzzTests(RoutesTestCase):
    """
    Random paths, queries and bodies against the real site and domain in
    memory, a charger connected: every request answered, none 500, no
    traceback logged.
    """

    def setUp(self):
        if given is None:
            raise SkipTest("hypothesis is not installed (python3-hypothesis on Debian)")
        super().setUp()
        from xxterocpp.smart.manager import SmartManager

        self.smart_manager = SmartManager(self.central, self.controller, self.clock,
                                          self.central.config)
        self.central.subscribe(self.smart_manager.observe)
        self.site.resource.smart = self.smart_manager
        RecordingCharger(self.central, self.clock)

    def test_api_answers_everything(self):
        seen = []

        @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
        @given(_requests())
        def check(request):
            (method, segments), query, body = request
            path = "/" + "/".join(segments) + ("?" + query if query else "")
            if method != "GET" and body is None:
                body = b""
            with capturedLogs() as events:
                response = self.request(method, path, body)
                # A command the charger did not answer times out.
                self.clock.advance(60)
            self.assertIsNotNone(response, f"{method} {path} was not answered")
            self.assertNotEqual(response.code, 500, (method, path, body, response.body))
            self.assertEqual([e for e in events if e.get("log_failure")], [], (method, path))
            seen.append(response.code)

        check()
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertGreater(len(set(seen)), 3)
