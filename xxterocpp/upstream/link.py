# -*- test-case-name: tests.test_upstream_link,tests.test_upstream_attacks -*-
"""
The WebSocket client connection to a back office, as one charger: the URL
with the identity, TLS that always verifies the back office's certificate,
Basic auth with the controller's key, the C{ocpp1.6} subprotocol, and
reconnecting with backoff while the charger is connected.

L{Link} knows no OCPP beyond the framing: each open connection gets an
L{OcppSession} handed to its owner (L{xxterocpp.upstream.uplink.Uplink}).
"""

import base64
import uuid
from urllib.parse import quote, urlsplit

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from OpenSSL import SSL
from OpenSSL.crypto import FILETYPE_PEM
from twisted.internet import ssl
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import (
    HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS)
from twisted.logger import Logger

from xxterocpp.ocpp import messages as m
from xxterocpp.ocpp.rpc import OcppSession
from xxterocpp.ocpp.server import MAX_MESSAGE_SIZE, SUBPROTOCOL
from xxterocpp.tls import openssl_reason

#: Seconds for TCP, TLS and the WebSocket handshake together.
CONNECT_TIMEOUT = 15.0

#: Seconds the back office gets to answer our close before the TCP
#: connection is dropped.
CLOSE_TIMEOUT = 5.0

#: The first and the longest wait before connecting again (s); the wait
#: doubles after each connection that failed or was not accepted.
BACKOFF = (1.0, 60.0)


class LinkError(Exception):
    """
    A back office that cannot be connected to as configured (a TLS file
    that does not load): the reason, for the status page.
    """


def link_url(config, charger_id):
    """
    @return: the back office URL with the charger's identity there appended
        as the last path segment (percent-encoded).
    """
    identity = config.identity or charger_id
    return config.url.rstrip("/") + "/" + quote(identity, safe="")


def basic_authorization(user, password):
    """
    @param password: C{str} or C{bytes} (an AuthorizationKey may be binary).
    @return: the value of an HTTP Basic C{Authorization} header.
    """
    if isinstance(password, str):
        password = password.encode("utf-8")
    return "Basic " + base64.b64encode(user.encode("utf-8") + b":" + password).decode("ascii")


def _read(path, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise LinkError(f"cannot read the {what} {path} ({e.strerror})") from None


def _certificates(pem, path):
    blocks = pem.split(b"-----END CERTIFICATE-----")
    certificates = []
    for block in blocks:
        start = block.find(b"-----BEGIN CERTIFICATE-----")
        if start >= 0:
            try:
                certificates.append(ssl.Certificate.loadPEM(
                    block[start:] + b"-----END CERTIFICATE-----\n"))
            except SSL.Error as e:
                raise LinkError(f"{path}: not a PEM certificate ({openssl_reason(e)})") from None
    if not certificates:
        raise LinkError(f"{path}: no PEM certificate in it")
    return certificates


def client_tls(config, host):
    """
    The TLS connection creator for a C{wss://} back office: its certificate
    must chain to C{ca} (or the system's trust store) and name C{host};
    with C{certificate}, ours is presented (security profile 3).

    @raise LinkError: a file that cannot be used.
    """
    trust = ssl.platformTrust()
    if config.ca:
        trust = ssl.trustRootFromCertificates(_certificates(_read(config.ca, "CA bundle"),
                                                            config.ca))
    client, chain = None, []
    if config.certificate:
        certificates = _certificates(_read(config.certificate, "client certificate"),
                                     config.certificate)
        key = _read(config.private_key, "private key")
        try:
            client = ssl.PrivateCertificate.fromCertificateAndKeyPair(
                certificates[0], ssl.KeyPair.load(key, FILETYPE_PEM))
        except SSL.Error as e:
            raise LinkError(f"{config.private_key}: not the key of {config.certificate}"
                            f" ({openssl_reason(e)})") from None
        chain = [c.original for c in certificates[1:]]
    extra = {"extraCertChain": chain} if chain else None
    return ssl.optionsForClientTLS(host, trustRoot=trust, clientCertificate=client,
                                   extraCertificateOptions=extra)


def client_endpoint(reactor, config):
    """
    @return: the Twisted client endpoint of the configured back office (TLS
        for C{wss://}); IP literals skip name resolution.
    @raise LinkError: a TLS file that cannot be used.
    """
    url = urlsplit(config.url)
    host, port = url.hostname, url.port or (443 if config.secure else 80)
    if isIPAddress(host):
        endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=CONNECT_TIMEOUT)
    elif isIPv6Address(host):
        endpoint = TCP6ClientEndpoint(reactor, host, port, timeout=CONNECT_TIMEOUT)
    else:
        endpoint = HostnameEndpoint(reactor, host, port, timeout=CONNECT_TIMEOUT)
    if config.secure:
        endpoint = wrapClientTLS(client_tls(config, host), endpoint)
    return endpoint


class _Protocol(WebSocketClientProtocol):
    """
    Autobahn's client callbacks, for the L{Link}.
    """

    link = None
    session = None

    def failHandshake(self, reason):
        # The one place both Autobahn versions tell the refused HTTP status.
        self.link._error(reason)
        return super().failHandshake(reason)

    def onConnect(self, response):
        if response.protocol not in (SUBPROTOCOL, None, ""):
            self.link._error(f"the back office chose subprotocol {response.protocol!r}")
            self.dropConnection(abort=True)

    def onOpen(self):
        self.session = self.link._opened(self)

    def onMessage(self, payload, isBinary):
        if self.session is not None and not isBinary:
            self.session.text_received(payload.decode("utf-8"))

    def send_text(self, text):
        if self.state == self.STATE_OPEN:
            self.sendMessage(text.encode("utf-8"), isBinary=False)

    def close(self):
        if self.state != self.STATE_OPEN:
            # Still in the opening handshake: nothing to say goodbye to.
            self.dropConnection(abort=True)
            return
        self.sendClose(code=1000)
        self.link._close_timer(self)

    def onClose(self, wasClean, code, reason):
        # The first reason of an attempt is the one that tells what to fix.
        if not wasClean and reason and self.session is None and self.link._reason is None:
            self.link._error(reason)

    def connectionLost(self, reason):
        if reason.check(SSL.Error):
            self.link._error(f"TLS: {openssl_reason(reason.value)}")
        super().connectionLost(reason)
        self.link._lost(self)


class _Factory(WebSocketClientFactory):
    protocol = _Protocol
    # One per attempt: no "Starting factory" lines while the back office
    # is away.
    noisy = False

    def buildProtocol(self, addr):
        protocol = super().buildProtocol(addr)
        protocol.link = self.link
        return protocol


class Link:
    """
    One charger's connection to its back office, kept up (reconnecting with
    backoff) between L{start} and L{stop}.

    @ivar state: C{"stopped"}, C{"connecting"}, C{"open"} or C{"waiting"}
        (to connect again).
    @ivar since: when C{state} began (seconds of the clock).
    @ivar last_error: why the last connection failed or closed, or None.
    @ivar attempts: connections that failed since the last good one.
    @ivar backoff: C{(first, longest)} wait before connecting again (s).
    """

    log = Logger()

    def __init__(self, reactor, charger_id, config, owner, call_timeout, password=None,
                 frame_observer=None):
        """
        @param config: the charger's L{xxterocpp.config.UpstreamConfig}.
        @param owner: gets C{opened(session)} and C{closed()}, and
            dispatches the back office's CALLs (C{dispatch(action, request)}).
        @param call_timeout: seconds the back office gets for each answer.
        @param password: zero-argument callable giving the Basic-auth key
            in force (C{str}, C{bytes}, or C{""} for none).
        @param frame_observer: optional C{f(direction, text)} for every frame.
        """
        self.reactor = reactor
        self.charger_id = charger_id
        self.config = config
        self.owner = owner
        self.call_timeout = call_timeout
        self._password = password or (lambda: config.password)
        self._observe = frame_observer
        self.url = link_url(config, charger_id)
        self.state = "stopped"
        self.since = reactor.seconds()
        self.last_error = None
        self.attempts = 0
        self.backoff = BACKOFF
        # The current connection, and the one whose session the owner has
        # (an older one may still be closing after a stop and a start).
        self._protocol = None
        self._session = None
        self._connecting = None
        self._timer = None
        # Why the current attempt failed, once known.
        self._reason = None

    def _set(self, state):
        if state != self.state:
            self.state, self.since = state, self.reactor.seconds()

    # -- life cycle --------------------------------------------------------

    def start(self):
        """
        Connect, and keep connecting until L{stop}.
        """
        if self.state == "stopped":
            self.attempts = 0
            self._connect()

    def stop(self):
        """
        Close the connection (or give up connecting) and stay closed.
        """
        self._set("stopped")
        self._cancel_timer()
        if self._connecting is not None:
            self._connecting.cancel()
        if self._protocol is not None:
            # Left to close in its own time: a start may connect anew now.
            protocol, self._protocol = self._protocol, None
            protocol.close()

    def drop(self, why):
        """
        Close the open connection and connect again after the backoff (the
        back office stopped answering).
        """
        self._error(why)
        if self._protocol is not None:
            self._protocol.close()

    def good(self):
        """
        The back office accepted the charger: the backoff starts anew.
        """
        self.attempts = 0

    @property
    def identity(self):
        """
        The charger's identity at the back office.
        """
        return self.config.identity or self.charger_id

    # -- connecting -------------------------------------------------------

    def _connect(self):
        self._timer = None
        self._reason = None
        self._set("connecting")
        self.attempts += 1
        password = self._password()
        headers = {}
        if password:
            headers["Authorization"] = basic_authorization(self.identity, password)
        factory = _Factory(url=self.url, protocols=[SUBPROTOCOL], headers=headers,
                           useragent="xxterocpp", reactor=self.reactor)
        factory.link = self
        # Our own timers bound the handshakes: Autobahn's run on txaio's loop.
        factory.setProtocolOptions(
            openHandshakeTimeout=0, closeHandshakeTimeout=0, serverConnectionDropTimeout=0,
            maxFramePayloadSize=MAX_MESSAGE_SIZE, maxMessagePayloadSize=MAX_MESSAGE_SIZE,
            perMessageCompressionOffers=[])
        try:
            endpoint = client_endpoint(self.reactor, self.config)
        except LinkError as e:
            self._error(str(e))
            self._retry()
            return
        d = self._connecting = endpoint.connect(factory)
        timer = self.reactor.callLater(CONNECT_TIMEOUT, self._handshake_timed_out)
        d.addCallbacks(self._connected, self._connect_failed,
                       callbackArgs=(timer,), errbackArgs=(timer,))

    def _connected(self, protocol, timer):
        self._connecting = None
        self._protocol = protocol
        protocol._open_timer = timer
        if self.state == "stopped":
            protocol.close()

    def _connect_failed(self, failure, timer):
        self._connecting = None
        if timer.active():
            timer.cancel()
        if self.state == "stopped":
            return
        if self._reason is None:
            self._error(failure.getErrorMessage())
        self._retry()

    def _handshake_timed_out(self):
        if self._connecting is not None:
            self._error(f"no connection within {CONNECT_TIMEOUT:g} s")
            self._connecting.cancel()
        elif self._protocol is not None and self._protocol.session is None:
            self._error("no WebSocket handshake within the connect timeout")
            self._protocol.dropConnection(abort=True)

    def _error(self, why):
        why = str(why)
        self._reason = why
        if why != self.last_error:
            self.log.warn("{id}: back office {url}: {why}", id=self.charger_id, url=self.url,
                          why=why)
        self.last_error = why

    def _retry(self):
        if self.state == "stopped":
            return
        first, longest = self.backoff
        delay = min(first * 2 ** max(self.attempts - 1, 0), longest)
        self._set("waiting")
        self._timer = self.reactor.callLater(delay, self._connect)

    def _cancel_timer(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    # -- the open connection -----------------------------------------------

    def _opened(self, protocol):
        timer = getattr(protocol, "_open_timer", None)
        if timer is not None and timer.active():
            timer.cancel()
        if self.state == "stopped" or protocol is not self._protocol:
            protocol.close()
            return None
        self._set("open")
        self.log.info("{id}: connected to the back office {url}", id=self.charger_id,
                      url=self.url)
        session = OcppSession(
            self.identity, protocol.send_text, self.owner.dispatch, self.reactor,
            self.call_timeout, frame_observer=self._observe,
            id_factory=lambda: str(uuid.uuid4()), close=protocol.close, accepts=m.CS_TO_CP)
        protocol.session = self._session = session
        self.owner.opened(session)
        return session

    def _close_timer(self, protocol):
        # Each connection's own: several may be closing at once.
        if getattr(protocol, "_close_call", None) is None:
            protocol._close_call = self.reactor.callLater(
                CLOSE_TIMEOUT, protocol.dropConnection, abort=True)

    def _lost(self, protocol):
        for name in ("_open_timer", "_close_call"):
            timer = getattr(protocol, name, None)
            if timer is not None and timer.active():
                timer.cancel()
        current = protocol is self._protocol
        if current:
            self._protocol = None
        session, protocol.session = protocol.session, None
        if session is not None:
            session.connection_lost()
            if session is self._session:
                # Not when a newer connection's session replaced it.
                self._session = None
                self.owner.closed()
        if self.state == "stopped" or not current:
            return
        if self._reason is None:
            self._error("the back office closed the connection" if session is not None
                        else "the connection closed before the WebSocket opened")
        self._retry()
