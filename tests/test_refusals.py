"""
Why a charger is refused (L{xxterocpp.domain.refusals}): the refused
connection attempts per configured charger and, before an identity was
known, per address; on the status page and in C{/api/status}, against the
real service over loopback (ws:// and wss://); and the C{[[charger]]} block
the page offers for an unknown charger.
"""

import html
import json
import re
import tomllib
from datetime import timedelta

from OpenSSL import SSL
from twisted.internet import defer, reactor
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import readBody

from tests.service import LOOPBACK_CONFIG, PASSWORD
from tests.sim import HandshakeRefused, connect_charger
from tests.test_domain import CONFIG, T0, MemoryStore
from tests.test_i18n import TRANSLATED, _Missing
from tests.test_tls import RawClientTLS, SecureTestCase, trusting
from tests.test_web import WebTestCase, web_agent
from xxterocpp.config import parse_config, toml_string
from xxterocpp.control import Controller
from xxterocpp.domain import refusals
from xxterocpp.domain.central import CentralSystem
from xxterocpp.domain.refusals import MAX_ADDRESSES, MAX_DETAIL, MAX_PER_CHARGER, REASONS, Refusals
from xxterocpp.web.i18n import Language, catalogue, language
from xxterocpp.web.page import charger_block, render_page
from xxterocpp.web.status import REFUSAL_WORDS, snapshot

#: The test configuration's second charger.
TWO_CHARGERS = CONFIG + """
[[charger]]
id = "CP2"
max_current = 16
"""


class RefusalsTests(SynchronousTestCase):
    """
    L{Refusals}: bounded, counted, the reasons checked.
    """

    def test_last_attempts_per_charger_and_counts(self):
        """
        The last L{MAX_PER_CHARGER} attempts of a charger are kept, the
        counts per reason go on; other chargers have none.
        """
        kept = Refusals()
        for i in range(MAX_PER_CHARGER + 5):
            kept.refused("CP1", f"192.0.2.{i}", refusals.WRONG_PASSWORD, T0 + timedelta(seconds=i))
        kept.refused("CP1", "192.0.2.99", refusals.TLS_FAILED, T0, "unknown ca")
        cp1 = kept.of("CP1")
        self.assertEqual(len(cp1.last), MAX_PER_CHARGER)
        self.assertEqual(cp1.counts, {refusals.WRONG_PASSWORD: MAX_PER_CHARGER + 5,
                                      refusals.TLS_FAILED: 1})
        self.assertEqual(cp1.total, MAX_PER_CHARGER + 6)
        self.assertEqual((cp1.last[-1].address, cp1.last[-1].detail), ("192.0.2.99", "unknown ca"))
        self.assertEqual(kept.last_address("CP1"), ("192.0.2.99", T0))
        self.assertIsNone(kept.of("CP2"))
        self.assertIsNone(kept.last_address("CP2"))
        kept.forget("CP1")
        self.assertIsNone(kept.of("CP1"))

    def test_unnamed_attempts_are_bounded_by_address(self):
        """
        Attempts refused before an identity was known are counted per
        address and reason, the most recent first; a flood from many
        addresses keeps the last L{MAX_ADDRESSES}.
        """
        kept = Refusals()
        kept.refused_unnamed("192.0.2.1", refusals.TLS_FAILED, T0, "unknown ca")
        kept.refused_unnamed("192.0.2.2", refusals.NO_IDENTITY, T0)
        later = T0 + timedelta(seconds=5)
        again = kept.refused_unnamed("192.0.2.1", refusals.TLS_FAILED, later, "bad version")
        self.assertEqual((again.count, again.first_seen, again.last_seen, again.detail),
                         (2, T0, later, "bad version"))
        self.assertEqual([(u.address, u.reason, u.count) for u in kept.unnamed()],
                         [("192.0.2.1", refusals.TLS_FAILED, 2),
                          ("192.0.2.2", refusals.NO_IDENTITY, 1)])
        for i in range(MAX_ADDRESSES + 10):
            kept.refused_unnamed(f"10.0.{i // 256}.{i % 256}", refusals.NO_IDENTITY, later)
        unnamed = kept.unnamed()
        self.assertEqual(len(unnamed), MAX_ADDRESSES)
        self.assertEqual(unnamed[0].address, f"10.0.0.{MAX_ADDRESSES + 9}")

    def test_reasons_are_checked_and_details_bounded(self):
        """
        Only the declared reasons are kept (each has its words); a detail
        from the peer is cut at L{MAX_DETAIL} characters.
        """
        kept = Refusals()
        self.assertRaises(ValueError, kept.refused, "CP1", "192.0.2.1", "bad-luck", T0)
        self.assertRaises(ValueError, kept.refused_unnamed, "192.0.2.1", "bad-luck", T0)
        refusal = kept.refused("CP1", "192.0.2.1", refusals.SUBPROTOCOL, T0, "x" * 1000)
        self.assertEqual(len(refusal.detail), MAX_DETAIL)
        self.assertEqual(sorted(REFUSAL_WORDS), sorted(REASONS))


class CentralRefusalsTests(SynchronousTestCase):
    """
    L{xxterocpp.domain.connections.Connections.refused} and
    C{refused_unnamed}: a refused attempt before the identity was known
    goes to the chargers last known at its address.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(T0.timestamp())
        self.central = CentralSystem(parse_config(TWO_CHARGERS), MemoryStore(), self.clock)

    def reasons(self, charger_id):
        refused = self.central.refusals.of(charger_id)
        return [(r.address, r.reason) for r in refused.last] if refused else []

    def test_refused_by_identity(self):
        """
        The identity is matched like the connection's (case differences
        tolerated); an unknown identity is not kept here.
        """
        self.central.connections.refused("cp1", "192.0.2.1", refusals.WRONG_PASSWORD)
        self.central.connections.refused("NOPE", "192.0.2.1", refusals.WRONG_PASSWORD)
        self.assertEqual(self.reasons("CP1"), [("192.0.2.1", refusals.WRONG_PASSWORD)])
        self.assertEqual(self.central.refusals.of("CP1").last[0].at, T0)
        self.assertIsNone(self.central.refusals.of("NOPE"))

    def test_unnamed_refusal_goes_to_the_charger_at_its_address(self):
        """
        A TLS failure from the address a charger last connected or tried to
        connect from is also that charger's; from elsewhere only the
        address's.
        """
        connections = self.central.connections
        connections.connected("CP1", object(), "192.0.2.1")
        connections.refused("CP2", "192.0.2.2", refusals.MISSING_PASSWORD)
        connections.refused_unnamed("192.0.2.1", refusals.TLS_FAILED, "tlsv1 alert unknown ca")
        connections.refused_unnamed("192.0.2.2", refusals.TLS_FAILED, "wrong version number")
        connections.refused_unnamed("192.0.2.3", refusals.TLS_FAILED, "unsupported protocol")
        self.assertEqual(self.reasons("CP1"), [("192.0.2.1", refusals.TLS_FAILED)])
        self.assertEqual(self.central.refusals.of("CP1").last[0].detail, "tlsv1 alert unknown ca")
        self.assertEqual(self.reasons("CP2"), [("192.0.2.2", refusals.MISSING_PASSWORD),
                                               ("192.0.2.2", refusals.TLS_FAILED)])
        self.assertEqual([u.address for u in self.central.refusals.unnamed()],
                         ["192.0.2.3", "192.0.2.2", "192.0.2.1"])

    def test_the_more_recent_address_counts(self):
        """
        Connected from one address, then refused from another: the charger
        is at the other one now.
        """
        self.central.connections.connected("CP1", object(), "192.0.2.1")
        self.clock.advance(10)
        self.central.connections.refused("CP1", "192.0.2.9", refusals.WRONG_PASSWORD)
        self.central.connections.refused_unnamed("192.0.2.1", refusals.TLS_FAILED)
        self.central.connections.refused_unnamed("192.0.2.9", refusals.NO_IDENTITY)
        self.assertEqual(self.reasons("CP1"), [("192.0.2.9", refusals.WRONG_PASSWORD),
                                               ("192.0.2.9", refusals.NO_IDENTITY)])

    def test_chargers_behind_one_address_each_get_it(self):
        self.central.connections.refused("CP1", "192.0.2.1", refusals.WRONG_PASSWORD)
        self.central.connections.refused("CP2", "192.0.2.1", refusals.WRONG_PASSWORD)
        self.central.connections.refused_unnamed("192.0.2.1", refusals.TLS_FAILED)
        self.assertEqual(self.central.refusals.of("CP1").counts[refusals.TLS_FAILED], 1)
        self.assertEqual(self.central.refusals.of("CP2").counts[refusals.TLS_FAILED], 1)

    def test_a_charger_removed_from_the_configuration_is_forgotten(self):
        self.central.connections.refused("CP2", "192.0.2.1", refusals.WRONG_PASSWORD)
        self.central.reconfigure(parse_config(CONFIG))
        self.assertIsNone(self.central.refusals.of("CP2"))

    def test_every_reason_in_status_and_page_in_every_language(self):
        """
        Each reason (also those other parts record: a lower security
        profile, throttling) shows on the API in words and on the page in
        each language, whose catalogue has every text.
        """
        for reason in REASONS:
            self.central.connections.refused("CP1", "192.0.2.1", reason, f"detail of {reason}")
            self.clock.advance(1)
        self.central.connections.refused_unnamed("192.0.2.5", refusals.NO_IDENTITY)
        controller = Controller(self.central, self.clock)
        self.addCleanup(controller.shutdown)
        status = snapshot(self.central, controller, None)
        [cp1] = [c for c in status["chargers"] if c["id"] == "CP1"]
        self.assertEqual(cp1["refusals"]["count"], len(REASONS))
        self.assertEqual(cp1["refusals"]["counts"], {reason: 1 for reason in REASONS})
        self.assertEqual([(r["reason"], r["reason_text"], r["detail"])
                          for r in cp1["refusals"]["last"]],
                         [(reason, REFUSAL_WORDS[reason], f"detail of {reason}")
                          for reason in reversed(REASONS[-MAX_PER_CHARGER:])])
        self.assertEqual(status["unnamed"][0]["reason_text"], "no charger id in the URL")
        for code in TRANSLATED:
            translations = catalogue(code)
            missing = _Missing()
            translations.add_fallback(missing)
            page = self.successResultOf(render_page(status, {}, [], {},
                                                    Language(code, translations))).decode()
            self.assertEqual(missing.missing, [], code)
            for reason in REASONS:
                self.assertIn(html.escape(language(code)(REFUSAL_WORDS[reason]), quote=False),
                              page, code)
        self.assertEqual(language("de")(REFUSAL_WORDS[refusals.LOWER_PROFILE]),
                         "niedrigeres Sicherheitsprofil als konfiguriert")


class ChargerBlockTests(SynchronousTestCase):
    """
    The C{[[charger]]} block for an unknown identity is a configuration
    table that serves it, whatever the identity's characters.
    """

    def test_block_serves_the_identity(self):
        for identity in ("SN12345", 'we"ird\\id', "Ladesäule 7", "tab\there", "del\x7f",
                         "new\nline", "ünïcødé-€"):
            block = charger_block(language("de"), identity)
            config = parse_config(LOOPBACK_CONFIG.format(
                max_chargers=4, knxd="", database="/nonexistent/state.sqlite3") + block)
            self.assertEqual(list(config.charger_ids()), [identity], block)
            self.assertEqual(tomllib.loads(f"x = {toml_string(identity)}")["x"], identity)
            self.assertIn('# password = ""', block)
            self.assertIn("Stromkreis", block)


@defer.inlineCallbacks
def _eventually(check):
    """
    Wait briefly until C{check()} is true: the server sees a TLS failure
    when its connection ends, which may be after the client gave up.
    """
    for _ in range(100):
        if check():
            return
        yield deferLater(reactor, 0.02, lambda: None)
    raise AssertionError("not within 2 s")


class _StatusAndPage:
    """
    C{/api/status} and the page of the service under test.
    """

    @defer.inlineCallbacks
    def status_and_page(self):
        web = yield self.service.web.when_listening()
        base = f"http://127.0.0.1:{web.getHost().port}"
        agent = web_agent(self)
        response = yield agent.request(b"GET", (base + "/api/status").encode())
        status = json.loads((yield readBody(response)))
        response = yield agent.request(b"GET", (base + "/").encode())
        page = (yield readBody(response)).decode()
        return status, page

    def refusals_of(self, status, charger_id):
        [charger] = [c for c in status["chargers"] if c["id"] == charger_id]
        return charger["refusals"]

    def section(self, page, charger_id):
        """
        @return: the page's list of refused attempts of C{charger_id}, as text.
        """
        found = re.search(rf'<details id="refusals-{re.escape(charger_id)}">.*?</details>',
                          page, re.S)
        self.assertIsNotNone(found, f"no refused attempts of {charger_id} on the page")
        return html.unescape(re.sub(r"<[^>]+>", " ", found.group(0)))


class PlainRefusalsTests(_StatusAndPage, WebTestCase):
    """
    Over ws://: wrong and missing passwords, unsupported OCPP versions, no
    identity, an unknown identity.
    """

    @defer.inlineCallbacks
    def refused(self, identity, **kwargs):
        with self.assertRaises(HandshakeRefused) as caught:
            yield connect_charger(self.service.url, identity, **kwargs)
        return caught.exception.status

    @defer.inlineCallbacks
    def test_credentials_and_versions(self):
        """
        A missing and a wrong password, and only OCPP 2.0.1 offered: the
        charger's last attempts, newest first, with address, time and
        reason, in the API and on the page; never the password tried.
        """
        self.assertEqual((yield self.refused("RDAM 123")), 401)
        self.assertEqual((yield self.refused("RDAM 123", auth=("RDAM 123", "not-the-key-42"))),
                         401)
        self.assertEqual((yield self.refused("rdam 123", protocols=("ocpp2.0.1",))), 400)
        status, page = yield self.status_and_page()
        refused = self.refusals_of(status, "RDAM 123")
        self.assertEqual(refused["count"], 3)
        self.assertEqual(refused["counts"], {"wrong-password": 1, "missing-password": 1,
                                             "subprotocol": 1})
        self.assertEqual([(r["reason"], r["address"], r["detail"]) for r in refused["last"]],
                         [("subprotocol", "127.0.0.1", "ocpp2.0.1"),
                          ("wrong-password", "127.0.0.1", None),
                          ("missing-password", "127.0.0.1", None)])
        self.assertTrue(all(r["time"].endswith("Z") for r in refused["last"]))
        self.assertEqual(self.refusals_of(status, "CP1"), {"count": 0, "counts": {}, "last": []})
        section = self.section(page, "RDAM 123")
        for words in ("3 refused connection attempts",
                      "last ", "offered only OCPP versions not spoken here: ocpp2.0.1",
                      "wrong password", "no password sent (Basic auth)", "127.0.0.1"):
            self.assertIn(words, section)
        self.assertNotIn('id="refusals-CP1"', page)
        self.assertNotIn("not-the-key-42", page + json.dumps(status))
        # the counts of the header stay
        self.assertEqual(status["refused"], {"auth": 2, "tls": 0})

    @defer.inlineCallbacks
    def test_no_identity_in_the_url(self):
        """
        C{ws://host:port/}: refused, recorded with its address and count.
        """
        for _ in range(2):
            self.assertEqual((yield self.refused(None)), 404)
        status, page = yield self.status_and_page()
        [unnamed] = status["unnamed"]
        self.assertEqual((unnamed["address"], unnamed["reason"], unnamed["reason_text"],
                          unnamed["count"]),
                         ("127.0.0.1", "no-identity", "no charger id in the URL", 2))
        self.assertLessEqual(unnamed["first_seen"], unnamed["last_seen"])
        [listed] = re.findall(r'<section[^>]*id="unknown".*?</section>', page, re.S)
        self.assertIn("Refused before a charger id was known", listed)
        self.assertIn("no charger id in the URL", listed)
        self.assertEqual(status["unknown"], [])

    @defer.inlineCallbacks
    def test_unknown_charger_gets_a_block_to_paste(self):
        """
        An unknown identity: the page has the C{[[charger]]} block that
        serves it, in a C{<pre>} with a Copy button; added to the
        configuration and reloaded, the charger is served.
        """
        self.assertEqual((yield self.refused('SN-"77"')), 404)
        _, page = yield self.status_and_page()
        [pre] = re.findall(r'<pre class="copy" id="(unknown-0)">(.*?)</pre>', page, re.S)
        self.assertIn('data-copy="unknown-0"', page)
        block = html.unescape(pre[1])
        self.assertTrue(block.startswith('[[charger]]\nid = "SN-\\"77\\""\n'), block)
        self.assertIn('\n# password = ""', block)
        with open(self.config_path, "a") as f:
            f.write("\n" + block + "\n")
        self.assertTrue(self.service.reload())
        charger = yield connect_charger(self.service.url, 'SN-"77"')
        self.addCleanup(charger.close)
        self.assertTrue(self.service.central.chargers['SN-"77"'].connected)


class SecureRefusalsTests(_StatusAndPage, SecureTestCase):
    """
    Over wss:// (security profile 2): TLS failures with OpenSSL's reason,
    by address and for the charger last seen there.
    """

    @defer.inlineCallbacks
    def tls_refused(self, tls_options, reason):
        """
        Connect with C{tls_options}, expecting a failed TLS handshake, and
        wait until the server counted it.

        @return: the server's C{/api/status} and page after it.
        """
        before = self.service.security_failures()["tls"]
        error = yield self.refused(tls_options=tls_options)
        self.assertIsInstance(error, SSL.Error)
        yield _eventually(lambda: self.service.security_failures()["tls"] > before)
        status, page = yield self.status_and_page()
        self.assertIn(reason, [u["detail"] for u in status["unnamed"]])
        return status, page

    @defer.inlineCallbacks
    def test_tls_failures_go_to_the_charger_at_the_address(self):
        """
        After a wrong password from 127.0.0.1 (that charger is there), a
        client that does not trust the server and one that speaks TLS 1.1
        fail TLS: by address and for that charger, with OpenSSL's reason;
        the chargers never seen there have none.
        """
        error = yield self.refused("RDAM 123", auth=("RDAM 123", "wrong"))
        self.assertEqual(error.status, 401)
        yield self.tls_refused(trusting("other-ca.pem"), "tlsv1 alert unknown ca")
        status, page = yield self.tls_refused(RawClientTLS(SSL.TLS1_1_VERSION),
                                              "unsupported protocol")
        refused = self.refusals_of(status, "RDAM 123")
        self.assertEqual([(r["reason"], r["detail"]) for r in refused["last"]],
                         [("tls", "unsupported protocol"), ("tls", "tlsv1 alert unknown ca"),
                          ("wrong-password", None)])
        self.assertEqual(refused["counts"], {"wrong-password": 1, "tls": 2})
        self.assertEqual(self.refusals_of(status, "CP1")["count"], 0)
        self.assertEqual([(u["address"], u["reason"], u["count"]) for u in status["unnamed"]],
                         [("127.0.0.1", "tls", 2)])
        section = self.section(page, "RDAM 123")
        self.assertIn("TLS handshake failed: unsupported protocol", section)
        self.assertIn("TLS handshake failed: tlsv1 alert unknown ca", section)
        self.assertIn("TLS handshake failed: unsupported protocol", page.split('id="unknown"')[1])
        self.assertEqual(self.service.security_failures(), {"auth": 1, "tls": 2})

    @defer.inlineCallbacks
    def test_tls_failure_of_no_known_charger(self):
        """
        No charger was ever seen at the address: the failure is the
        address's only.
        """
        status, _ = yield self.tls_refused(trusting("other-ca.pem"), "tlsv1 alert unknown ca")
        self.assertEqual([c["refusals"]["count"] for c in status["chargers"]], [0, 0, 0])

    @defer.inlineCallbacks
    def test_plain_ws_on_the_tls_port(self):
        """
        A charger still on ws:// while the port speaks TLS: OpenSSL saw an
        HTTP request.
        """
        with self.assertRaises(Exception):
            yield connect_charger(self.service.url, "CP1", timeout=2)
        yield _eventually(lambda: self.service.security_failures()["tls"] == 1)
        status, _ = yield self.status_and_page()
        self.assertEqual([(u["reason"], u["detail"]) for u in status["unnamed"]],
                         [("tls", "http request")])

    @defer.inlineCallbacks
    def test_an_open_connection_is_no_refusal(self):
        """
        A charger that connects and closes leaves nothing refused.
        """
        charger = yield self.connect("RDAM 123", auth=("RDAM 123", PASSWORD))
        yield charger.close()
        status, _ = yield self.status_and_page()
        self.assertEqual((self.refusals_of(status, "RDAM 123")["count"], status["unnamed"]),
                         (0, []))


class ClientCertificateRefusalsTests(_StatusAndPage, SecureTestCase):
    """
    Security profile 3: the client certificate of another charger.
    """

    client_ca = True

    @defer.inlineCallbacks
    def test_certificate_of_another_identity(self):
        error = yield self.refused("CP1", trusting(client="twin"))
        self.assertEqual(error.status, 403)
        status, page = yield self.status_and_page()
        [refusal] = self.refusals_of(status, "CP1")["last"]
        self.assertEqual((refusal["reason"], refusal["address"], refusal["detail"]),
                         ("other-certificate", "127.0.0.1", "TWIN"))
        self.assertIn("client certificate of another charger: TWIN", self.section(page, "CP1"))
        self.assertEqual(self.refusals_of(status, "TWIN")["count"], 0)

    @defer.inlineCallbacks
    def test_no_client_certificate(self):
        """
        Without a client certificate the TLS handshake goes through (the
        port serves profile 2 as well) and the WebSocket handshake refuses
        the profile-3 charger.
        """
        error = yield self.refused("CP1", trusting())
        self.assertEqual(error.status, 403)
        status, page = yield self.status_and_page()
        [refusal] = self.refusals_of(status, "CP1")["last"]
        self.assertEqual((refusal["reason"], refusal["detail"]), ("no-certificate", None))
        self.assertIn("no valid client certificate (security profile 3)",
                      self.section(page, "CP1"))
        self.assertEqual(status["unnamed"], [])
