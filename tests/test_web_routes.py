"""
The web interface's routes and status codes in memory: the real site,
L{CentralSystem} and L{Controller} on a L{Clock}, requests written into an
L{HTTPChannel} over a L{StringTransport}, a charger that records what it is
sent. No port listens; the same over loopback is in tests.test_web.
"""

import base64
import json

import attr
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests.fakes import MemoryStore
from xxterocpp.ocpp.handlers import dispatcher
from xxterocpp.config import parse_config
from xxterocpp.control import Controller
from xxterocpp.domain.central import CentralSystem
from xxterocpp.ocpp.rpc import OcppSession
from xxterocpp.store import TransactionRecord
from xxterocpp.web import api
from xxterocpp.web.api import web_site
from xxterocpp.web.gate import MAX_BODY

CONFIG = """
[web]
port = 8080

[[tag]]
id = "CONFIGTAG"

[[charger]]
id = "CP1"
max_current = 32

[[charger]]
id = "OFF"
max_current = 16
"""

USER, PASSWORD = "installer", "correct horse"

#: L{CONFIG} with the web interface behind a password.
AUTH_CONFIG = CONFIG.replace("port = 8080", f'port = 8080\nusername = "{USER}"\n'
                                            f'password = "{PASSWORD}"')

#: Where the site "listens" and who asks.
HOST = IPv4Address("TCP", "127.0.0.1", 8080)
PEER = IPv4Address("TCP", "127.0.0.1", 50000)


class RecordingCharger:
    """
    A connected charger: a real L{OcppSession} whose frames are recorded;
    every CALL is answered C{answer} on the next clock turn.
    """

    def __init__(self, central, clock, charger_id="CP1", answer=None):
        self.clock = clock
        self.calls = []
        self.answer = {"status": "Accepted"} if answer is None else answer
        self.session = OcppSession(charger_id, self._sent, dispatcher(central, charger_id),
                                   clock, central.config.ocpp.call_timeout)
        central.connections.connected(charger_id, self.session, "127.0.0.1")

    def _sent(self, text):
        frame = json.loads(text)
        if frame[0] == 2:
            self.calls.append((frame[2], frame[3]))
            self.clock.callLater(0, self.session.text_received,
                                 json.dumps([3, frame[1], self.answer]))


@attr.s(frozen=True)
class Response:
    code = attr.ib()
    headers = attr.ib()
    body = attr.ib()

    @property
    def json(self):
        return json.loads(self.body)


def parse_response(data, method="GET"):
    """
    @return: the one L{Response} in C{data} (to a C{method} request), or
        None for no bytes.
    """
    if not data:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if method != "HEAD":
        assert len(body) == int(headers["content-length"]), data
    return Response(int(status.split()[1]), headers, body)


class RoutesTestCase(SynchronousTestCase):
    """
    The web site over the real domain, on a fake clock.
    """

    config_text = CONFIG

    def setUp(self):
        self.clock = Clock()
        self.store = MemoryStore()
        self.central = CentralSystem(parse_config(self.config_text), self.store, self.clock)
        self.controller = Controller(self.central, self.clock)
        self.central.subscribe(self.controller.observe)
        self.addCleanup(self.controller.shutdown)
        self.site = web_site(self.central, self.controller, self.store, lambda: None,
                             self.clock)

    def request(self, method, path, body=None, headers=None, credentials=None):
        """
        Send one request on a new connection and run the clock until it is
        answered.

        @param body: a JSON value, or bytes sent as they are.
        @return: the L{Response}, or None when none came.
        """
        transport = StringTransport(hostAddress=HOST, peerAddress=PEER)
        channel = self.site.buildProtocol(PEER)
        channel.makeConnection(transport)
        sent = {"Host": "127.0.0.1:8080"}
        if credentials is not None:
            token = base64.b64encode(":".join(credentials).encode()).decode()
            sent["Authorization"] = f"Basic {token}"
        data = b""
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        if method != "GET":
            sent["Content-Type"] = "application/json"
        if data or method != "GET":
            sent["Content-Length"] = str(len(data))
        sent.update(headers or {})
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in sent.items() if value is not None)
        channel.dataReceived(head.encode("latin-1") + b"\r\n" + data)
        for _ in range(3):
            self.clock.advance(0)
        response = parse_response(transport.value(), method)
        channel.connectionLost(Failure(ConnectionDone()))
        return response

    def assertError(self, response, code, *words):
        self.assertIsNotNone(response)
        self.assertEqual(response.code, code, response.body)
        self.assertEqual(response.headers["content-type"], "application/json; charset=utf-8")
        for word in words:
            self.assertIn(word, response.json["error"])
        return response


class StatusCodeTests(RoutesTestCase):
    """
    Each error status of the API, and the successes next to them.
    """

    def test_200_status_and_page(self):
        page = self.request("GET", "/")
        self.assertEqual(page.code, 200)
        self.assertTrue(page.body.startswith(b"<!DOCTYPE html>"))
        status = self.request("GET", "/api/status")
        self.assertEqual([c["id"] for c in status.json["chargers"]], ["CP1", "OFF"])
        self.assertEqual(status.headers["cache-control"], "no-store")

    def test_400_bad_bodies_and_queries(self):
        for method, path, body, words in [
                ("POST", "/api/chargers/CP1/max-current", {"amps": "ten"}, ["'amps'"]),
                ("POST", "/api/chargers/CP1/max-current", {}, ["'amps' is missing"]),
                ("POST", "/api/chargers/CP1/stop", {"colour": 1}, ["unknown field 'colour'"]),
                ("POST", "/api/chargers/CP1/stop", b"{not json", ["not JSON"]),
                ("POST", "/api/chargers/CP1/stop", b"[1]", ["JSON object"]),
                ("POST", "/api/chargers/CP1/stop", b"[" * 30000 + b"]" * 30000, ["nested"]),
                ("POST", "/api/chargers/CP1/start", b'{"id_tag": "\\ud800"}', ["UTF-8"]),
                ("PUT", "/api/tags/" + "X" * 21, {}, ["tag id"]),
                ("PUT", "/api/tags/T1", {"expiry": "0001-01-01T00:00:00+01:00"}, ["range"]),
                ("GET", "/api/transactions?limit=99999999999999999999", None, ["'limit'"]),
                ("GET", "/api/transactions?limit=%C2%B2", None, ["'limit'"]),
                ("GET", "/api/transactions?since=0001-01-01T00:00:00%2B01:00", None,
                 ["'since'"])]:
            self.assertError(self.request(method, path, body), 400, *words)

    def test_401_without_or_with_wrong_credentials(self):
        self.central.reconfigure(parse_config(AUTH_CONFIG))
        for credentials in (None, (USER, "wrong"), ("admin", PASSWORD)):
            response = self.assertError(
                self.request("GET", "/api/status", credentials=credentials), 401, "log in")
            self.assertEqual(response.headers["www-authenticate"],
                             'Basic realm="xxterocpp", charset="UTF-8"')
        ok = self.request("GET", "/api/status", credentials=(USER, PASSWORD))
        self.assertEqual(ok.code, 200)

    def test_403_cross_site_or_foreign_host(self):
        self.assertError(self.request("POST", "/api/chargers/CP1/reset",
                                      headers={"Origin": "http://evil.example"}),
                         403, "cross-site")
        self.assertError(self.request("POST", "/api/chargers/CP1/reset",
                                      headers={"Origin": "http://[::1"}), 403, "cross-site")
        for host in ("evil.example:8080", "127.0.0.1.evil.example", None, "::1"):
            self.assertError(self.request("GET", "/api/status", headers={"Host": host}),
                             403, "127.0.0.1")

    def test_loopback_host_names(self):
        """
        The names of this machine, with any port (an SSH tunnel's) or none.
        """
        for host in ("127.0.0.1:8080", "LOCALHOST:8080", "localhost", "[::1]:9000",
                     "[::1]"):
            self.assertEqual(self.request("GET", "/api/status", headers={"Host": host}).code,
                             200, host)

    def test_any_host_when_not_loopback(self):
        """
        Off loopback the password protects the page; the Host is not judged.
        """
        self.central.reconfigure(parse_config(AUTH_CONFIG.replace(
            "port = 8080", 'port = 8080\ninterface = "0.0.0.0"')))
        response = self.request("GET", "/api/status", headers={"Host": "controller.lan"},
                                credentials=(USER, PASSWORD))
        self.assertEqual(response.code, 200)

    def test_404_unknown_route_charger_action_tag(self):
        for method, path, words in [
                ("GET", "/nope", ["nothing at"]), ("GET", "/api/chargers/CP1", ["nothing at"]),
                ("POST", "/api/chargers/NOPE/stop", ["no charger 'NOPE'"]),
                ("POST", "/api/chargers/CP1/fly", ["unknown action 'fly'"]),
                ("POST", "/api/chargers/CP1/ocpp/BootNotification", ["no OCPP 1.6 action"]),
                ("GET", "/api/tags/NOPE", ["no tag"]),
                ("DELETE", "/api/tags/NOPE", ["no tag"]),
                ("GET", "/api/chargers/CP1/smart", ["Smart Energy Manager"])]:
            self.assertError(self.request(method, path), 404, *words)

    def test_405_names_the_allowed_methods(self):
        response = self.assertError(self.request("GET", "/api/chargers/CP1/stop"), 405, "POST")
        self.assertEqual(response.headers["allow"], "POST")
        response = self.assertError(self.request("POST", "/api/tags/X"), 405)
        self.assertEqual(response.headers["allow"], "GET, PUT, DELETE")
        self.assertError(self.request("DELETE", "/api/status"), 405)

    def test_409_offline_or_configured_tag(self):
        self.assertError(self.request("POST", "/api/chargers/OFF/stop"), 409)
        self.assertError(self.request("DELETE", "/api/tags/CONFIGTAG"), 409,
                         "configuration file")

    def test_413_before_the_body(self):
        """
        A declared body over 64 KiB is refused when the headers are in.
        """
        transport = StringTransport(hostAddress=HOST, peerAddress=PEER)
        channel = self.site.buildProtocol(PEER)
        channel.makeConnection(transport)
        channel.dataReceived(
            b"PUT /api/tags/T1 HTTP/1.1\r\nHost: localhost:8080\r\n"
            b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % (MAX_BODY + 1))
        response = self.assertError(parse_response(transport.value()), 413, "larger")
        self.assertEqual(response.headers["connection"], "close")
        self.assertTrue(transport.disconnecting)
        self.assertNotIn(b"100 Continue", transport.value())
        self.assertEqual(self.store.tags, {})

    def test_413_chunked(self):
        """
        A chunked body is cut off once it passes 64 KiB.
        """
        transport = StringTransport(hostAddress=HOST, peerAddress=PEER)
        channel = self.site.buildProtocol(PEER)
        channel.makeConnection(transport)
        channel.dataReceived(
            b"PUT /api/tags/T1 HTTP/1.1\r\nHost: localhost:8080\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (4096, b" " * 4096)
        for _ in range(MAX_BODY // 4096 + 1):
            channel.dataReceived(chunk)
        self.assertError(parse_response(transport.value()), 413)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.store.tags, {})

    def test_415_state_change_without_json(self):
        for content_type in (None, "text/plain", "application/x-www-form-urlencoded"):
            self.assertError(self.request("PUT", "/api/tags/T1", {"status": "Blocked"},
                                          headers={"Content-Type": content_type}),
                             415, "application/json")
        self.assertEqual(self.store.tags, {})

    def test_500_is_json_and_logged(self):
        """
        A bug in a route, or an answer that cannot be encoded, is a JSON 500
        with the traceback in the log; the request does not stay open.
        """

        def broken(*args):
            raise RuntimeError("a bug")

        for patched in (broken, lambda *args: {"odd": object()}):
            self.patch(api, "snapshot", patched)
            with capturedLogs() as events:
                self.assertError(self.request("GET", "/api/status"), 500, "internal error")
            self.assertEqual(len([e for e in events if e.get("log_failure")]), 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError, TypeError)), 2)


class CommandTests(RoutesTestCase):
    """
    Commands reach a connected charger; tag changes reach the registry.
    """

    def test_command_reaches_the_charger(self):
        charger = RecordingCharger(self.central, self.clock)
        response = self.request("POST", "/api/chargers/CP1/reset", {"hard": True})
        self.assertEqual(response.code, 200, response.body)
        self.assertEqual(response.json["status"], "Accepted")
        self.assertIn(("Reset", {"type": "Hard"}), charger.calls)

    def test_refused_command_409(self):
        RecordingCharger(self.central, self.clock, answer={"status": "Rejected"})
        self.assertError(self.request("POST", "/api/chargers/CP1/reset"), 409, "Rejected")

    def test_tag_put_and_delete(self):
        response = self.request("PUT", "/api/tags/t1", {"status": "Blocked"})
        self.assertEqual(response.json["source"], "api")
        self.assertEqual(self.central.tags.get("T1").status, "Blocked")
        # idTags are case-insensitive: the new spelling replaces the old.
        self.request("PUT", "/api/tags/T1", {})
        self.assertEqual(list(self.store.tags), ["T1"])
        self.assertEqual(self.request("DELETE", "/api/tags/t1").json, {"deleted": "T1"})
        self.assertIsNone(self.central.tags.get("T1"))
        self.assertEqual(self.store.tags, {})


class OutputTests(RoutesTestCase):
    """
    What comes from chargers is made safe on output.
    """

    def test_lone_surrogates_are_replaced(self):
        """
        A charger string with a lone surrogate is shown as U+FFFD by the
        page, the status and the CSV export.
        """
        self.central.chargers["CP1"].boot = {"vendor": "Evil\ud800"}
        self.store.transactions[7] = transaction(7, "Evil\udfff")
        for path in ("/", "/api/status", "/api/transactions?format=csv",
                     "/api/transactions"):
            response = self.request("GET", path)
            self.assertEqual(response.code, 200, path)
            self.assertIn("Evil\ufffd", response.body.decode("utf-8"), path)

    def test_csv_formulas_are_quoted(self):
        """
        A cell a spreadsheet would run as a formula gets a C{'} in front.
        """
        tags = ('=cmd|"/c calc"!A1', "+1", "-1", "@SUM(A1)", "PLAIN")
        # Listed newest first: the highest id first.
        for tx_id, tag in zip(range(len(tags), 0, -1), tags):
            self.store.transactions[tx_id] = transaction(tx_id, tag)
        lines = self.request("GET", "/api/transactions?format=csv").body.decode().splitlines()
        self.assertEqual([line.split(",")[3] for line in lines[1:]],
                         ['"\'=cmd|""/c calc""!A1"', "'+1", "'-1", "'@SUM(A1)", "PLAIN"])


def transaction(tx_id, id_tag):
    """
    @return: a stopped L{TransactionRecord} C{tx_id} of C{id_tag} on CP1.
    """
    from datetime import datetime, timezone

    start = datetime(2024, 5, 1, 18, 0, tzinfo=timezone.utc)
    return TransactionRecord(tx_id, "CP1", 1, id_tag, start, 1000, None, "Accepted", "k",
                             stop_time=start, meter_stop=2000, stop_reason="Local")
