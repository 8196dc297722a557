"""
More attacks on the OCPP port and the web interface (issues 15 and 16),
each against the real service over loopback and each shown to fail
safely: idle sockets, made-up identities and wrong passwords from many
addresses, slow and idle connections to the web interface, frames that make
long log lines, meter values that are no numbers, a flood of certificate
signing requests, a client certificate that cannot be read, plain HTTP on
the TLS port.

Traffic goes only to 127.0.0.0/8, bounded in count and time; the helpers
are those of L{tests.test_attacks}.
"""

import base64
import datetime
import json
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import defer, endpoints, reactor
from twisted.internet.task import Clock, deferLater
from twisted.logger import capturedLogs, formatEvent

from tests.service import PASSWORD
from tests.sim import basic_authorization, connect_charger
from tests.test_attacks import (
    AttackTestCase, RawClient, bounded, connect_raw, logged, until, upgrade_request)
from tests.test_signing import make_csr
from tests.test_tls import MIXED_CONFIG, ChainClientTLS, SecureTestCase
from xxterocpp import certs, tls
from xxterocpp.domain import refusals
from xxterocpp.domain.unknown import UNKNOWN_INTERVAL
from xxterocpp.ocpp.complaints import LINE_BURST
from xxterocpp.ocpp.server import (
    DROP_LOG_INTERVAL, HANDSHAKE_TIMEOUT, MAX_HANDSHAKES, MAX_HANDSHAKES_PER_ADDRESS)
from xxterocpp.pacing import MAX_ACTIONS_PER_INTERVAL
from xxterocpp.web.gate import MAX_CONNECTIONS, MAX_CONNECTIONS_PER_ADDRESS


def log_size(events):
    """
    @return: the characters of the captured log events, as written.
    """
    return sum(len(formatEvent(e)) for e in events)


class ManyAddressesTests(AttackTestCase):
    """
    The caps on connections in their handshake are per address and in all;
    enough addresses fill the one in all.
    """

    timeout = 30

    @defer.inlineCallbacks
    def test_idle_sockets_from_17_addresses_leave_a_charger_served(self):
        """
        127.0.0.2 to 127.0.0.18 open 16 idle sockets each, 272 in all: more
        than the 256 slots. A charger from 127.0.0.1 still connects and
        boots at once (it was reset: 17 addresses locked every charger out
        for as long as they kept it up); the flood goes after 5 s.
        """
        factory = self.service.ocpp_factory
        addresses = [f"127.0.0.{a}" for a in range(2, 19)]
        with capturedLogs() as events:
            flood = yield defer.gatherResults([
                connect_raw(self.service, source=address) for address in addresses
                for _ in range(MAX_HANDSHAKES_PER_ADDRESS)])
            lost = []
            for client in flood:
                client.lost.addCallback(lost.append)
            yield until(lambda: factory.handshakes + len(lost) >= len(flood), 5,
                        "the connections beyond the slots dropped")
            self.assertEqual(factory.handshakes, MAX_HANDSHAKES)
            twin = yield connect_charger(self.service.url, "TWIN")
            self.assertEqual((yield twin.boot())["status"], "Accepted")
            yield until(lambda: len(lost) == len(flood), HANDSHAKE_TIMEOUT + 2,
                        "the idle connections dropped")
            self.assertTrue(twin.is_open)
            yield twin.close()
        self.assertEqual(factory.handshakes, 0)
        self.assertLess(len(logged(events, "dropped:")), 5)
        yield self.assertServing()


    @defer.inlineCallbacks
    def test_unknown_identities_from_400_addresses(self):
        """
        400 handshakes of made-up identities, each from an address of its
        own (127.1.0.1 to 127.1.1.150), 40 at a time: all 404; 10 store
        writes and 10 log lines per 10 s in all, not one per address (they
        were 1,000 of each for 1,000 addresses within 3 s).
        """
        service = self.service
        writes = []
        record = service.store.record_unknown_attempts

        def spy(*args):
            writes.append(args[0])
            return record(*args)

        service.store.record_unknown_attempts = spy
        self.addCleanup(delattr, service.store, "record_unknown_attempts")
        addresses = [f"127.1.{i // 250}.{i % 250 + 1}" for i in range(400)]
        started = reactor.seconds()
        with capturedLogs() as events:
            for batch in range(0, 400, 40):
                clients = yield defer.gatherResults([
                    connect_raw(service, upgrade_request(f"/MADE-UP-{i}"), source=address)
                    for i, address in enumerate(addresses[batch:batch + 40], batch)])
                yield bounded(defer.gatherResults([c.lost for c in clients]), 10)
                self.assertEqual({c.received[:13] for c in clients}, {b"HTTP/1.1 404 "})
        windows = 1 + int((reactor.seconds() - started) // UNKNOWN_INTERVAL)
        bound = windows * MAX_ACTIONS_PER_INTERVAL
        self.assertLessEqual(len(writes), bound)
        self.assertLessEqual(len(logged(events, "unknown charger")), bound)
        # Autobahn's lines and the refusals' too.
        self.assertLessEqual(len([e for e in events if "127.1." in formatEvent(e)]), 2 * bound)
        self.assertEqual(len(self.service.central.unknown), 100)
        yield self.assertServing()


    @defer.inlineCallbacks
    def test_wrong_passwords_from_400_addresses(self):
        """
        400 handshakes as RDAM 123 with a wrong password, each from an
        address of its own: all 401, a few log lines (they were 400).
        """
        addresses = [f"127.2.{i // 250}.{i % 250 + 1}" for i in range(400)]
        started = reactor.seconds()
        with capturedLogs() as events:
            for batch in range(0, 400, 40):
                clients = yield defer.gatherResults([
                    connect_raw(self.service, upgrade_request(
                        "/RDAM%20123", Authorization=basic_authorization("RDAM 123", f"w{i}")),
                        source=address)
                    for i, address in enumerate(addresses[batch:batch + 40], batch)])
                yield bounded(defer.gatherResults([c.lost for c in clients]), 10)
                self.assertEqual({c.received[:13] for c in clients}, {b"HTTP/1.1 401 "})
        self.assertEqual(self.service.security_failures()["auth"], 400)
        windows = 1 + int((reactor.seconds() - started) // DROP_LOG_INTERVAL)
        self.assertLessEqual(len(logged(events, "RDAM 123")), windows * MAX_ACTIONS_PER_INTERVAL)
        yield self.assertServing()


class WebConnectionTests(AttackTestCase):
    """
    The web interface's connections: Twisted closes one only after 60 s
    without a byte, and kept any number. A request head trickled a byte at
    a time held its socket for ever; idle sockets from a few addresses took
    the descriptors the chargers need (the process shares them).
    """

    timeout = 30

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        port = yield self.service.web.when_listening()
        self.web_port = port.getHost().port
        # The web interface is built at its first connection: now.
        self.site = self.service.web.factory.built()
        # 30 s in service; the tests have no time for it.
        self.site.request_timeout = 2

    def deadlines(self):
        """
        Put the web connections' request deadlines on a L{Clock} the test
        moves (the site's clock is for them), for connections made from
        now on: none closes while the test is still making or checking
        them, however slow the machine.

        @return: the L{Clock}.
        """
        clock = Clock()
        self.site.reactor = clock
        return clock

    def connect_web(self, data=b"", source="127.0.0.1"):
        client = RawClient(data)
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", self.web_port, timeout=5,
                                                bindAddress=(source, 0))
        return endpoints.connectProtocol(endpoint, client)

    @defer.inlineCallbacks
    def test_trickled_request_head_is_closed(self):
        """
        A request head sent a byte every 0.2 s (Twisted's idle timeout
        never fires) is closed once the request timeout is over, its 100
        bytes not all sent; an idle keep-alive connection too.
        """
        head = b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 50
        slow = yield self.connect_web()
        idle = yield self.connect_web(b"GET /page.css HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        sent = 0
        while not slow.lost.called and sent < len(head):
            slow.transport.write(head[sent:sent + 1])
            sent += 1
            yield deferLater(reactor, 0.2, lambda: None)
        yield bounded(slow.lost, 5)
        self.assertLess(sent, len(head))
        self.assertEqual(slow.received, b"")
        yield bounded(idle.lost, 5)
        self.assertTrue(idle.received.startswith(b"HTTP/1.1 200 "))
        self.assertEqual(self.site.connections, 0)

    @defer.inlineCallbacks
    def test_request_whose_answer_takes_longer_is_answered(self):
        """
        The timeout is for receiving a request: a Reset that CP1 answers
        only after the request timeout is over is answered.
        """
        clock = self.deadlines()
        asked, answer = defer.Deferred(), defer.Deferred()

        def reset(payload):
            asked.callback(payload)
            return answer

        self.cp.handlers["Reset"] = reset
        answered = self.web("POST", "/api/chargers/CP1/reset", {})
        yield bounded(asked, 10)
        clock.advance(self.site.request_timeout + 1)
        answer.callback({"status": "Accepted"})
        code, body = yield answered
        self.assertEqual(code, 200, body)

    @defer.inlineCallbacks
    def test_idle_connections_from_8_addresses_leave_the_page_and_chargers_served(self):
        """
        127.0.0.2 opens 40 idle connections: 8 are closed at once.
        127.0.0.3 to 127.0.0.9 open 32 each: all 256 connections are taken.
        The page from 127.0.0.1 is still served (an idle connection of an
        address with 32 gives its place), a charger connects; the request
        timeout closes the rest.
        """
        clock = self.deadlines()
        with capturedLogs() as events:
            flood = yield defer.gatherResults(
                [self.connect_web(source="127.0.0.2") for _ in range(40)])
            lost = []
            for client in flood:
                client.lost.addCallback(lost.append)
            yield until(lambda: len(lost) >= 40 - MAX_CONNECTIONS_PER_ADDRESS, 5,
                        "the connections beyond the cap of 127.0.0.2 closed")
            more = yield defer.gatherResults([
                self.connect_web(source=f"127.0.0.{a}") for a in range(3, 10)
                for _ in range(MAX_CONNECTIONS_PER_ADDRESS)])
            for client in more:
                client.lost.addCallback(lost.append)
            flood += more
            yield until(lambda: self.site.connections + len(lost) >= len(flood), 5,
                        "every connection taken or closed")
            self.assertEqual(self.site.connections, MAX_CONNECTIONS)
            yield self.api_status()
            yield self.assertServing()
            self.assertLess(len(lost), len(flood))
            clock.advance(self.site.request_timeout)
            yield until(lambda: len(lost) == len(flood), 5, "the idle connections closed")
        self.assertEqual(self.site.connections, 0)
        self.assertLess(len(logged(events, "web interface: connection from")), 10)


class LogAmplificationTests(AttackTestCase):
    """
    A frame of 64 KiB at most must not become a log line of a megabyte.
    """

    @defer.inlineCallbacks
    def test_meter_values_of_18000_bad_sampled_values(self):
        """
        MeterValues (decoded leniently: always acknowledged) with 18,000
        sampled values that are no objects, a 54 KB frame: acknowledged;
        its log line names 10 of the problems and counts the rest (the
        line was 1.5 MB).
        """
        with capturedLogs() as events:
            answer = yield self.raw_call(json.dumps([2, "mv", "MeterValues", {
                "connectorId": 1, "meterValue": [{"timestamp": "2026-01-01T00:00:00Z",
                                                  "sampledValue": [0] * 18_000}]}]))
        self.assertEqual(answer, [3, "mv", {}])
        [line] = [formatEvent(e) for e in events if "tolerated" in formatEvent(e)]
        # The 18,000 and what follows from them (no sampled value left).
        self.assertRegex(line, r"; and 179\d\d more$")
        self.assertLess(log_size(events), 4096)
        yield self.assertServing()

    @defer.inlineCallbacks
    def test_answers_to_calls_never_made(self):
        """
        20 CALLRESULTs and CALLERRORs for ids never sent and a frame of an
        unknown type, each id or type 60,000 characters: dropped, a short
        line each (they were 1.2 MB), the last held back by the
        charger's line budget (L{LINE_BURST}, of which its connection and
        boot took a few).
        """
        with capturedLogs() as events:
            for i in range(10):
                self.cp.send_raw(json.dumps([3, "x" * 60_000 + str(i), {}]))
                self.cp.send_raw(json.dumps([4, "y" * 60_000 + str(i), "GenericError", "", {}]))
            self.cp.send_raw(json.dumps(["z" * 60_000, "t"]))
            yield self.assertServing()
        dropped = [e for e in events if "unknown" in e.get("log_format", "")]
        self.assertLessEqual(len(dropped), LINE_BURST)
        self.assertGreater(len(dropped), LINE_BURST - 5)
        self.assertLess(max(len(formatEvent(e)) for e in dropped), 200)
        self.assertLess(log_size(events), 21 * 200 + 4096)


def strict_json(body):
    """
    @return: C{body} decoded as JSON a browser reads: C{NaN} and
        C{Infinity} are no JSON.
    """

    def refuse(constant):
        raise ValueError(f"{constant} in the JSON")

    return json.loads(body, parse_constant=refuse)


class MeterValueNumberTests(AttackTestCase):
    """
    Meter values are strings a charger fills: C{float()} reads C{"NaN"},
    C{"Infinity"} and C{"1e400"}. One of them made C{GET /} and
    C{/api/status} answer 500 (the session's energy) or C{NaN} in the JSON
    (current, power) until the session ended.
    """

    @defer.inlineCallbacks
    def test_numbers_that_are_no_readings_are_ignored(self):
        started = yield self.cp.start_transaction(1, "04A1B2C3", 1000)
        transaction_id = started["transactionId"]
        for value, unit in (("NaN", None), ("Infinity", None), ("-inf", None), ("1e400", None),
                            ("1e308", "kWh"), ("9.1e15", None), ("nan", "kWh")):
            answer = yield self.raw_call(json.dumps([2, f"mv-{value}", "MeterValues", {
                "connectorId": 1, "transactionId": transaction_id, "meterValue": [{
                    "timestamp": "2026-01-01T00:01:00Z", "sampledValue": [
                        dict({"value": value, "measurand": measurand},
                             **({"unit": unit} if unit else {}))
                        for measurand in ("Energy.Active.Import.Register", "Current.Import",
                                          "Power.Active.Import", "Current.Offered")]}]}]))
            self.assertEqual(answer, [3, f"mv-{value}", {}])
            for path in ("/api/status", "/", "/api/transactions"):
                code, body = yield self.web("GET", path)
                self.assertEqual(code, 200, (value, path, body[:300]))
            status = strict_json((yield self.api_status()))
            [connector] = status["chargers"][0]["connectors"]
            self.assertEqual((connector["transaction"]["energy_wh"], connector["current_a"],
                              connector["power_w"]), (None, None, None), value)
        yield self.cp.meter_values(1, transaction_id, energy_wh=1500, currents=[6],
                                   power_w=1380)
        status = strict_json((yield self.api_status()))
        [connector] = status["chargers"][0]["connectors"]
        self.assertEqual((connector["transaction"]["energy_wh"], connector["current_a"],
                          connector["power_w"]), (500, 6, 1380))
        yield self.assertServing()


def unreadable_certificate(directory):
    """
    Write a self-signed client certificate whose CN is a PrintableString
    holding C{<>}, which OpenSSL reads and cryptography refuses (its
    signature no longer fits: TLS goes on, as for any that does not
    verify), and its key.

    @return: the paths of the certificate and the key.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "AAAAAAAA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(4711)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    der = cert.public_bytes(serialization.Encoding.DER)
    # UTF8String "AAAAAAAA" (subject and issuer) -> PrintableString "<>AAAAAA".
    der = der.replace(b"\x0c\x08AAAAAAAA", b"\x13\x08<>AAAAAA")
    paths = os.path.join(directory, "unreadable.pem"), os.path.join(directory, "unreadable.key")
    certs.write_file(paths[0], b"-----BEGIN CERTIFICATE-----\n"
                     + base64.encodebytes(der) + b"-----END CERTIFICATE-----\n")
    certs.write_file(paths[1], certs.key_pem(key), private=True)
    return paths


class UnreadableCertificateTests(SecureTestCase):
    """
    A client certificate cryptography cannot parse, sent by anyone to the
    TLS port with C{client_ca}: it was a 500 and a traceback of 12 lines
    per connection, before any authentication.
    """

    client_ca = True
    text = MIXED_CONFIG

    @defer.inlineCallbacks
    def test_refused_as_a_certificate_that_does_not_verify(self):
        """
        For CP1 (profile 3): 403, no traceback; RDAM 123 (profile 2) with
        its key is let in whatever certificate it sends.
        """
        chain, key = unreadable_certificate(self.tls_dir)
        with capturedLogs() as events:
            for _ in range(3):
                error = yield self.refused("CP1", ChainClientTLS(chain, key))
                self.assertEqual(error.status, 403)
            rdam = yield self.connect("RDAM 123", ChainClientTLS(chain, key),
                                      auth=("RDAM 123", PASSWORD))
            self.assertEqual((yield rdam.boot())["status"], "Accepted")
        self.assertEqual([formatEvent(e) for e in events if e.get("log_failure")], [])
        refused = self.service.central.refusals.of("CP1").last
        self.assertEqual([r.reason for r in refused], [refusals.NO_CERTIFICATE] * 3)
        # Older cryptography (Debian's 38) reads it; OpenSSL then says why.
        self.assertIn(refused[0].detail, (tls.UNREADABLE, "self-signed certificate"))


class SigningFloodTests(SecureTestCase):
    """
    SignCertificate from a connected charger (over TLS, where a request is
    signed at all): each request was signed and a CertificateSigned queued
    behind the others, 4.6 KB of memory each, kept while the charger did
    not answer: 3,000 requests made 14 MB and 2.6 s of CPU.
    """

    timeout = 30
    raw_call = AttackTestCase.raw_call

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.cp = yield self.connect("RDAM 123", auth=("RDAM 123", PASSWORD))
        yield self.cp.boot()

    @defer.inlineCallbacks
    def assertServing(self):
        self.assertIn("currentTime", (yield self.cp.heartbeat()))
        twin = yield self.connect("TWIN")
        self.assertIn("currentTime", (yield twin.heartbeat()))

    @defer.inlineCallbacks
    def test_300_requests_at_once_get_one_certificate(self):
        """
        300 SignCertificate at once, never answering CertificateSigned: the
        first is Accepted, the others Rejected; one CertificateSigned goes
        out, one log line tells of the refused.
        """
        self.cp.never_answer("CertificateSigned")
        csr = make_csr(ec.generate_private_key(ec.SECP256R1()),
                       (NameOID.COMMON_NAME, "RDAM 123"))
        with capturedLogs() as events:
            answers = yield defer.gatherResults([
                self.raw_call(json.dumps([2, f"sign{i}", "SignCertificate", {"csr": csr}]))
                for i in range(300)])
            yield self.cp.wait_for_call("CertificateSigned")
            yield self.assertServing()
        self.assertEqual([a[2]["status"] for a in answers], ["Accepted"] + ["Rejected"] * 299)
        self.assertEqual([action for action, _ in self.cp.calls_received].count(
            "CertificateSigned"), 1)
        self.assertEqual(len(logged(events, "certificate signing request refused")), 1)


class TLSFailureFloodTests(SecureTestCase):
    """
    Plain HTTP to the TLS port fails its TLS handshake: each such connection
    was two log lines (ours and Autobahn's error), from a single address.
    """

    timeout = 30

    @defer.inlineCallbacks
    def test_300_plain_requests_on_the_tls_port(self):
        started = reactor.seconds()
        with capturedLogs() as events:
            # 15 at a time: 16 may be in their handshake from one address.
            for batch in range(0, 300, 15):
                clients = yield defer.gatherResults([
                    connect_raw(self.service, upgrade_request("/CP1")) for _ in range(15)])
                yield bounded(defer.gatherResults([c.lost for c in clients]), 10)
            yield self.failures("tls", 300)
        windows = 1 + int((reactor.seconds() - started) // DROP_LOG_INTERVAL)
        self.assertLessEqual(len(logged(events, "127.0.0.1")), windows)
        self.assertEqual(logged(events, "SSL error"), [])
        charger = yield self.connect("CP1")
        self.assertIn("currentTime", (yield charger.heartbeat()))
