"""
Tests for L{xxterocpp.upstream.link}: the WebSocket client connection to a
back office. The back office here is the service itself (its OCPP server
on loopback, with ws:// or wss:// and certificates from L{tests.test_tls}),
so the tests run on both stacks.
"""

import os

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.fakes import fake_of
from tests.service import PASSWORD, start_service
from tests.test_tls import pki, secure_config
from xxterocpp.config import UpstreamConfig
from xxterocpp.ocpp import messages as m
from xxterocpp.ocpp.rpc import CallError
from xxterocpp.upstream.link import (
    Link, LinkError, basic_authorization, client_tls, link_url)
from xxterocpp.upstream.uplink import Uplink


@fake_of(Uplink, helpers=("changed",))
class Owner:
    """
    What an uplink does with its link, recorded.
    """

    def __init__(self):
        self.sessions = []
        self.closes = 0
        self._waiting = []

    def opened(self, session):
        self.sessions.append(session)
        self._fire()

    def closed(self):
        self.closes += 1
        self._fire()

    def dispatch(self, action, request):
        raise CallError(m.NOT_SUPPORTED, "not in this test")

    def _fire(self):
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def changed(self):
        """
        @return: a Deferred firing at the next open or close.
        """
        d = defer.Deferred()
        self._waiting.append(d)
        return d.addTimeout(15, reactor)


def sleep(seconds):
    return task.deferLater(reactor, seconds, lambda: None)


@defer.inlineCallbacks
def eventually(check, timeout=10.0):
    for _ in range(int(timeout / 0.05)):
        if check():
            return
        yield sleep(0.05)
    raise AssertionError(f"{check} never held")


class UrlTests(SynchronousTestCase):
    """
    The URL and the credentials.
    """

    def test_identity_appended(self):
        """
        The identity (the charger's id by default) is the last path
        segment, percent-encoded.
        """
        self.assertEqual(link_url(UpstreamConfig(url="wss://bo.example/ocpp/"), "CP 1"),
                         "wss://bo.example/ocpp/CP%201")
        self.assertEqual(link_url(UpstreamConfig(url="ws://h:9000", identity="A/B"), "CP1"),
                         "ws://h:9000/A%2FB")

    def test_basic_authorization(self):
        """
        Basic auth of the identity with a text or binary key.
        """
        self.assertEqual(basic_authorization("HOME", "k"), "Basic SE9NRTpr")
        self.assertEqual(basic_authorization("HOME", b"\x00"), "Basic SE9NRToA")

    def test_tls_files_that_do_not_load(self):
        """
        A CA bundle or client certificate that does not load is a
        L{LinkError} naming the file.
        """
        bad = os.path.abspath(self.mktemp())
        with open(bad, "w") as f:
            f.write("not a certificate")
        e = self.assertRaises(LinkError, client_tls, UpstreamConfig(url="wss://h/", ca=bad), "h")
        self.assertIn(bad, str(e))
        missing = UpstreamConfig(url="wss://h/", ca="/nonexistent.pem")
        self.assertIn("/nonexistent.pem", str(self.assertRaises(LinkError, client_tls,
                                                                missing, "h")))


class LinkTestCase(TestCase):
    timeout = 30

    def connect(self, url, identity, charger_id="CP1", **config):
        """
        A link to C{url} as C{identity}, started; stopped at cleanup.
        """
        self.owner = Owner()
        link = Link(reactor, charger_id, UpstreamConfig(url=url, identity=identity, **config),
                    self.owner, 5)
        link.backoff = (0.05, 0.2)
        link.start()
        self.addCleanup(self.stop, link)
        return link

    @defer.inlineCallbacks
    def stop(self, link):
        opened = link.state == "open"
        closed = self.owner.changed() if opened else None
        link.stop()
        if closed is not None:
            yield closed


class PlainLinkTests(LinkTestCase):
    """
    ws:// to the service's own OCPP server.
    """

    @defer.inlineCallbacks
    def test_opens_and_speaks_ocpp(self):
        """
        The link opens with the ocpp1.6 subprotocol and its session calls
        the far end as the charger.
        """
        service = yield start_service(self)
        link = self.connect(service.url, "CP1")
        yield self.owner.changed()
        self.assertEqual(link.state, "open")
        answer = yield self.owner.sessions[0].call(m.BootNotificationRequest(
            charge_point_vendor="V", charge_point_model="M"))
        self.assertEqual(answer.status, "Accepted")
        self.assertIsNotNone(service.central.chargers["CP1"].session)

    @defer.inlineCallbacks
    def test_basic_auth_with_encoded_identity(self):
        """
        The key goes as Basic auth of the identity, which is percent-encoded.
        """
        service = yield start_service(self)
        link = self.connect(service.url, "RDAM 123", password=PASSWORD)
        yield self.owner.changed()
        self.assertEqual(link.state, "open")

    @defer.inlineCallbacks
    def test_refused_then_backoff(self):
        """
        A refused handshake (unknown identity, wrong key) is retried with a
        growing wait; the error is kept.
        """
        service = yield start_service(self)
        link = self.connect(service.url, "RDAM 123", password="wrong")
        yield eventually(lambda: link.attempts >= 3)
        self.assertIn("401", link.last_error)
        self.assertEqual(self.owner.sessions, [])
        self.assertEqual(service.ocpp_factory.auth_failures, link.attempts - (
            link.state == "connecting"))

    @defer.inlineCallbacks
    def test_nobody_listening(self):
        """
        Nothing listening: retried, and the error says so.
        """
        service = yield start_service(self)
        port = (yield service.ocpp.when_listening()).getHost().port
        yield service.stopService()
        link = self.connect(f"ws://127.0.0.1:{port}/", "CP1")
        yield eventually(lambda: link.attempts >= 2)
        self.assertIn(link.state, ("waiting", "connecting"))
        self.assertIn("refused", link.last_error.lower())

    @defer.inlineCallbacks
    def test_closed_by_far_end_reconnects(self):
        """
        The far end closes the connection: the link connects again; once
        stopped it stays closed.
        """
        service = yield start_service(self)
        link = self.connect(service.url, "CP1")
        yield self.owner.changed()
        closed = self.owner.changed()
        service.central.chargers["CP1"].session.close()
        yield closed
        self.assertEqual(self.owner.closes, 1)
        yield self.owner.changed()
        self.assertEqual(len(self.owner.sessions), 2)
        closed = self.owner.changed()
        link.stop()
        yield closed
        yield sleep(0.3)
        self.assertEqual((link.state, len(self.owner.sessions)), ("stopped", 2))


class SecureLinkTests(LinkTestCase):
    """
    wss:// to the service's own OCPP server with its test certificates.
    """

    @defer.inlineCallbacks
    def secure(self, client_ca=False):
        path, self.tls = secure_config(self, client_ca=client_ca)
        service = yield start_service(self, path)
        self.url = service.url.replace("ws://", "wss://")
        return service

    @defer.inlineCallbacks
    def test_verified_with_the_ca(self):
        """
        With the CA bundle the back office's certificate is verified and
        the link opens.
        """
        yield self.secure()
        link = self.connect(self.url, "RDAM 123", password=PASSWORD,
                                  ca=os.path.join(self.tls, "ca.pem"))
        yield self.owner.changed()
        self.assertEqual(link.state, "open")

    @defer.inlineCallbacks
    def test_never_without_verification(self):
        """
        A certificate the trust store does not know is refused, and the
        TLS reason is the link's error.
        """
        yield self.secure()
        link = self.connect(self.url, "RDAM 123", password=PASSWORD,
                                  ca=os.path.join(self.tls, "other-ca.pem"))
        yield eventually(lambda: link.attempts >= 2)
        self.assertEqual(self.owner.sessions, [])
        self.assertIn("TLS", link.last_error)

    @defer.inlineCallbacks
    def test_client_certificate(self):
        """
        Security profile 3: our client certificate is presented.
        """
        yield self.secure(client_ca=True)
        link = self.connect(self.url, "CP1", ca=os.path.join(self.tls, "ca.pem"),
                                  certificate=os.path.join(self.tls, "cp1.pem"),
                                  private_key=os.path.join(self.tls, "cp1.key"))
        yield self.owner.changed()
        self.assertEqual(link.state, "open")
        self.assertTrue(pki())
