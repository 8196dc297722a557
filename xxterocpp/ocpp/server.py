# -*- test-case-name: tests.test_server -*-
"""
The OCPP-J WebSocket server (OCPP-J 1.6 §3): the handshake rules (identity,
subprotocol, Basic auth, the client certificate of security profile 3) and
the glue between Autobahn and L{OcppSession}.

The handshake's limits (head size, slots, deadline, throttle) and its
checks stay here together: they act on the same Autobahn protocol object
in the order a connection goes through them. Apart are what acts on an
open connection only: the frame budget (L{xxterocpp.ocpp.budget}), the
connection's own workarounds (C{no-ping}, C{keepalive}, C{lenient-answers};
L{xxterocpp.ocpp.connquirks}, docs/quirks.md#no-ping) and Autobahn's log
lines within the charger's budget (L{xxterocpp.ocpp.chargerlog}).
"""

import math
from types import FunctionType
from urllib.parse import unquote

import txaio
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from OpenSSL import SSL
from twisted.internet.interfaces import ISSLTransport
from twisted.logger import Logger

from xxterocpp import basic_auth
from xxterocpp.domain import refusals
from xxterocpp.ocpp.budget import FrameBudget, Floods
from xxterocpp.ocpp.chargerlog import ChargerLog
from xxterocpp.ocpp.connquirks import ConnectionQuirks
from xxterocpp.ocpp.handlers import dispatch
from xxterocpp.ocpp.rpc import OcppSession
from xxterocpp.pacing import Pacer
from xxterocpp.slots import PER_ADDRESS, Slots
from xxterocpp.tls import client_certificate, openssl_reason

SUBPROTOCOL = "ocpp1.6"

#: The realm of the Basic-auth challenge of a 401.
REALM = "OCPP"

#: The largest WebSocket message accepted; a longer one closes the connection
#: with 1009 (message too big). The largest legal OCPP 1.6 message
#: (CertificateSigned, 10,000 characters of PEM) fits easily.
MAX_MESSAGE_SIZE = 64 * 1024

#: The longest request line and headers of the opening handshake, in bytes;
#: a charger's (URL, Authorization, a few more) take a few hundred. Autobahn
#: keeps the request until its end and searches all of it on every read: a
#: longer one is answered with 431 and closed.
MAX_REQUEST_HEAD = 8 * 1024

#: The longest charger identity (percent-decoded) served or recorded as
#: unknown; a longer one gets 400.
MAX_IDENTITY_LENGTH = 255

#: Seconds from accepting a connection to the end of its WebSocket handshake
#: (TLS included): a charger needs a few round trips, an idle socket is
#: dropped.
HANDSHAKE_TIMEOUT = 5

#: How many connections may be in their handshake at once from one address
#: (and in all); more are dropped as soon as accepted. Descriptors stay for
#: the chargers: an address that floods leaves the others served, and when
#: all are taken the address with the most gives up its oldest
#: (L{xxterocpp.slots}), so many flooding addresses do not lock a charger
#: out either. Every charger of a site behind one NAT address reconnects at
#: once after a controller reboot, so a larger [ocpp] max_chargers raises
#: both (L{OcppServerFactory.handshake_limits}).
MAX_HANDSHAKES_PER_ADDRESS = 16
MAX_HANDSHAKES = 256

#: The reason phrases of refused credentials.
_REFUSED = {401: "Unauthorized", 403: "Forbidden"}

#: Seconds between two log lines about dropped connections (a flood is one
#: line, with the count of those since the last), and between two about the
#: refused handshakes of one address.
DROP_LOG_INTERVAL = 10

#: Autobahn's logger while a connection is in its handshake. Autobahn
#: writes two lines (info and warn) for every handshake it refuses, so a
#: flood of them would be a flood of lines; L{OcppServerFactory.refused}
#: writes one per address and interval instead. Errors still get through.
_HANDSHAKE_LOG = txaio.make_logger(level="error")

#: Autobahn's logger for a connection whose TLS failed: it writes an error
#: line for each, which L{OcppServerFactory.tls_failed} paces instead.
_SILENT_LOG = txaio.make_logger(level="none")


def identity_from_path(path):
    """
    The charger identity of a connection URL: its last path segment,
    percent-decoded (OCPP-J §3.1.1); any prefix path is accepted.
    """
    segments = [s for s in path.split("?", 1)[0].split("/") if s]
    return unquote(segments[-1]) if segments else ""


#: The close reason of a connection a newer one of its charger replaced.
REPLACED_REASON = "Replaced by a newer connection"
_REPLACED_CLOSE = (1000).to_bytes(2, "big") + REPLACED_REASON.encode()

#: L{OcppServerProtocol._refusal} of a refusal logged already.
LOGGED = object()


#: The attributes of Autobahn's server protocol that hold its opening
#: handshake (L{OcppServerProtocol.onOpen}).
_HANDSHAKE_TEXTS = ("http_headers", "http_request_data", "http_response_data",
                    "http_status_line", "_wskey")


class OcppServerProtocol(ConnectionQuirks, FrameBudget, WebSocketServerProtocol):
    """
    One charger's WebSocket connection, with its frame budget
    (L{FrameBudget}) and its own workarounds (L{ConnectionQuirks}).
    """

    # Our own log lines go to _log: Autobahn's C{log} is a txaio logger whose
    # debug calls (two per frame) are no-ops; a twisted Logger in its place
    # would build and publish an event for each of them (a fifth of the CPU
    # of a MeterValues round trip).
    _log = Logger()
    charger_id = None
    session = None
    #: The address whose handshake slot this connection holds, until its
    #: handshake is over (L{OcppServerFactory.admit}).
    _handshaking_from = None
    _handshake_deadline = None
    #: Seconds until a throttled address may try again (its 429).
    _retry_after = None
    #: What the log line of a refused handshake says instead of the HTTP
    #: reason; L{LOGGED}: nothing, the refusal is logged already.
    _refusal = None

    def connectionMade(self):
        self.log = _HANDSHAKE_LOG
        super().connectionMade()
        address = self.peer_address()
        if not self.factory.admit(address, self):
            self.transport.abortConnection()
            return
        self._handshaking_from = address
        self._handshake_deadline = self.factory.clock.callLater(
            HANDSHAKE_TIMEOUT, self._handshake_timed_out)
        # Backpressure: a charger that stops reading must not make us buffer
        # every answer and ping for it (unbounded memory): while the
        # transport's write buffer is over its limit, stop reading its CALLs
        # (L{FrameBudget.pauseProducing}).
        self.transport.registerProducer(self, True)

    def _handshake_timed_out(self):
        # Also a refused handshake whose TLS close the peer never answers.
        self._handshake_deadline = None
        if self.state == self.STATE_CONNECTING:
            self.factory.dropped(self._handshaking_from,
                                 f"its handshake was not over within {HANDSHAKE_TIMEOUT} s")
        self.transport.abortConnection()

    def _handshake_over(self):
        if self._handshake_deadline is not None:
            self._handshake_deadline.cancel()
            self._handshake_deadline = None
        if self._handshaking_from is not None:
            self.factory.release(self._handshaking_from, self)
            self._handshaking_from = None

    def give_up_handshake(self):
        """
        Drop this connection in its handshake: its slot went to another
        address (L{OcppServerFactory.admit}).
        """
        self._handshaking_from = None
        self._handshake_over()
        self.transport.abortConnection()

    def dataReceived(self, data):
        state = self.state
        if state == self.STATE_CONNECTING:
            if (len(self.data) + len(data) > MAX_REQUEST_HEAD
                    and (self.data + data).find(b"\r\n\r\n", 0, MAX_REQUEST_HEAD) < 0):
                self.failHandshake(f"Request head longer than {MAX_REQUEST_HEAD} bytes", 431)
                return
        elif state == self.STATE_CLOSED:
            # Autobahn would keep it; over TLS it can still arrive after we
            # closed, until the peer confirms the close.
            return
        # Straight to Autobahn's framework-independent half: the Twisted
        # adapter's dataReceived only adds a debug line, whose arguments it
        # builds even with debug off (16,000 instructions a read).
        self._dataReceived(data)

    def onConnect(self, request):
        try:
            return self._accept(request)
        except ConnectionDeny:
            raise
        except Exception:
            # Autobahn would log the traceback at a level the handshake's
            # logger drops.
            self._log.failure("the handshake of a connection from {address} failed",
                              address=self.peer_address())
            raise self._logged_denial(ConnectionDeny.INTERNAL_SERVER_ERROR,
                                      "Internal server error")

    def _logged_denial(self, code, reason):
        """
        @return: the L{ConnectionDeny} of a refusal logged already (no
            L{OcppServerFactory.refused} line for it).
        """
        self._refusal = LOGGED
        return ConnectionDeny(code, reason)

    def _accept(self, request):
        """
        The L{onConnect} of a charger: who it is, what it speaks, whether
        it may connect.

        @raise ConnectionDeny: when it may not.
        """
        central = self.factory.central
        address = self.peer_address()
        identity = identity_from_path(request.path)
        if not identity:
            central.connections.refused_unnamed(address, refusals.NO_IDENTITY)
            raise ConnectionDeny(ConnectionDeny.NOT_FOUND, "No charger identity in the URL")
        if len(identity) > MAX_IDENTITY_LENGTH:
            # Neither recorded nor logged: no charger has such an identity.
            raise ConnectionDeny(ConnectionDeny.BAD_REQUEST,
                                 f"Charger identity longer than {MAX_IDENTITY_LENGTH} characters")
        if SUBPROTOCOL in request.protocols:
            protocol = SUBPROTOCOL
        elif not request.protocols:
            # Real chargers omit the header (Grizzl-E, lbbrhzn/ocpp#176);
            # without it, OCPP 1.6 is the only sensible reading.
            protocol = None
        else:
            self._refusal = f"{identity!r} offered only {','.join(request.protocols)[:200]}"
            central.connections.refused(identity, address, refusals.SUBPROTOCOL,
                                        ",".join(request.protocols))
            raise ConnectionDeny(ConnectionDeny.BAD_REQUEST,
                                 "Unsupported subprotocol: this central system speaks ocpp1.6")
        charger_id = central.connections.lookup(identity)
        if charger_id is None:
            central.unknown_attempts.record(identity, address)
            raise self._logged_denial(ConnectionDeny.NOT_FOUND, "Unknown charger identity")
        wait = self.factory.auth_throttle.refused_for((address, charger_id))
        if wait:
            # Guessing: refused unheard until the throttle's window is over.
            self.factory.auth_failures += 1
            self._retry_after = math.ceil(wait)
            central.connections.refused(charger_id, address, refusals.THROTTLED)
            raise self._logged_denial(429, "Too many failed authentications; try again later")
        credentials = basic_auth.parse(request.headers.get("authorization"))
        presented = None
        if credentials is not None and credentials.user in (identity, charger_id):
            presented = credentials.password
        # The charger's security profile decides what counts: the client
        # certificate (profile 3) or Basic auth (docs/ocpp.md#security-profiles).
        refusal = central.security.admit(charger_id, ISSLTransport.providedBy(self.transport),
                                         client_certificate(self.transport), presented)
        if refusal is not None:
            # Never log what was presented (white paper A01.FR.09).
            self.factory.authentication_failed(address, charger_id, refusal.why)
            central.connections.refused(charger_id, address, refusal.reason, refusal.detail)
            raise self._logged_denial(refusal.code, _REFUSED[refusal.code])
        if central.chargers[charger_id].quirks.has("no-ping"):
            # docs/quirks.md#no-ping: it never answers them. Set before the
            # handshake is over, Autobahn schedules none.
            self.autoPingInterval = 0
        self.charger_id = charger_id
        return protocol

    def failHandshake(self, reason, code=400, responseHeaders=None):
        # ConnectionDeny cannot carry headers; RFC 7235 wants a challenge,
        # RFC 6585 says when to come back.
        if code == 401 and responseHeaders is None:
            responseHeaders = [("WWW-Authenticate", basic_auth.challenge(REALM))]
        elif code == 429 and responseHeaders is None:
            responseHeaders = [("Retry-After", str(self._retry_after))]
        if self._refusal is not LOGGED:
            self.factory.refused(self.peer_address(), code, self._refusal or reason)
        return super().failHandshake(reason, code, responseHeaders)

    def peer_address(self):
        peer = self.transport.getPeer()
        return getattr(peer, "host", str(peer))

    def onOpen(self):
        # What Autobahn kept of the opening handshake, which it reads no
        # more once the connection is open: the request's bytes and header
        # dict, the response's text (some 1.5 KiB per connected charger).
        for name in _HANDSHAKE_TEXTS:
            setattr(self, name, None)
        central = self.factory.central
        charger_id = self.charger_id
        # Autobahn's lines within the charger's budget from now on.
        self.log = ChargerLog(central.chargers[charger_id], self.factory.clock)
        self._heard_at = self.factory.clock.seconds()
        self._handshake_over()
        # Bound methods of this protocol, not closures: a connected charger
        # costs a few hundred bytes less.
        self.session = OcppSession(
            charger_id, self._send_text, self._dispatch, self.factory.clock,
            central.config.ocpp.call_timeout,
            frame_observer=self._frame,
            close=self._close_replaced,
            # The charger's budget of lines, not the connection's: one
            # that reconnects gets no new one.
            lines=central.chargers[charger_id].line_due,
            held=self.held_seconds,
        )
        central.connections.connected(charger_id, self.session, self.peer_address(),
                                      ISSLTransport.providedBy(self.transport))
        self._honour_quirks()

    def _dispatch(self, action, request):
        answer = dispatch(self.factory.central, self.charger_id, action, request,
                          self.factory.relay)
        if action == "BootNotification":
            # Its workarounds were chosen anew from its boot.
            self._honour_quirks()
        return answer

    #: The time the message being handled was kept with, which what is
    #: written while it is handled (its answer) shares: one look at the
    #: clock for both frames of a call (None between messages).
    _message_seconds = None

    def _frame(self, direction, text):
        connections = self.factory.central.connections
        if direction == "in":
            self._message_seconds = connections.frame(self.charger_id, direction, text)
        else:
            connections.frame(self.charger_id, direction, text, self._message_seconds)

    def _send_text(self, text):
        # A replaced or closing connection takes no more frames (Autobahn
        # would raise); the session learns of the loss from onClose.
        if self.state == self.STATE_OPEN:
            self.sendMessage(text.encode("utf-8"), isBinary=False)

    def _close_replaced(self):
        if self._held is not None:
            # Held by its frame budget: the charger's close would come
            # behind the frames not read yet. The close frame, then TCP, as
            # for a flood (L{FrameBudget}).
            self.sendFrame(opcode=8, payload=_REPLACED_CLOSE)
            self.dropConnection(abort=False)
            return
        self.sendClose(code=1000, reason=REPLACED_REASON)

    def onMessage(self, payload, isBinary):
        self._heard_at = self.factory.clock.seconds()
        if self.session is None:
            return
        if isBinary:
            self.session.complain("info", "ignored a binary message (OCPP-J is text)")
            return
        try:
            self.session.text_received(payload.decode("utf-8"))
        finally:
            self._message_seconds = None

    def connectionLost(self, reason):
        if reason.check(SSL.Error):
            # A charger that does not trust our certificate, speaks TLS < 1.2
            # or plain ws://, or (profile 3) has no valid client certificate.
            address, why = self.peer_address(), openssl_reason(reason.value)
            self.factory.tls_failed(address, why)
            self.log = _SILENT_LOG
            if self.state == self.STATE_CONNECTING:
                # Before the request named a charger (not a connection
                # that was open).
                self.factory.central.connections.refused_unnamed(address, refusals.TLS_FAILED, why)
        self._handshake_over()
        super().connectionLost(reason)
        self._let_go()

    def _let_go(self):
        """
        Break the reference cycles of a connection that is over, so that it
        is freed as soon as nothing else refers to it. Left to the cyclic
        garbage collector, closed connections wait for its next full
        collection, which comes after hundreds of reconnects: the memory
        of the service would swing by megabytes with them (README.md,
        Performance: the soak).
        """
        # The session holds bound methods of this protocol.
        self.session = None
        # Autobahn's Deferred of the close, fired with the protocol itself.
        self.is_closed = None

    def onClose(self, wasClean, code, reason):
        self._cancel_quirk_timers()
        if self.session is not None:
            # The charger counts as gone before its outstanding calls fail:
            # what their failures write back must not say it is online.
            self.factory.central.connections.disconnected(self.charger_id, self.session)
            self.session.connection_lost()


class OcppServerFactory(WebSocketServerFactory):
    """
    Builds L{OcppServerProtocol}s for the chargers of a L{CentralSystem}.

    @ivar auth_failures: how many handshakes were refused for credentials
        (Basic auth, or a client certificate of another charger), also
        unheard by the L{auth_throttle}.
    @ivar auth_throttle: the L{basic_auth.FailureThrottle} of failed
        authentications, per remote address and charger: a charger that
        keeps failing behind a site's NAT address does not lock the others
        out.
    @ivar tls_failures: how many TLS connections failed (handshake refused).
    @ivar dropped_connections: how many connections were dropped before
        their handshake was over: too many were in theirs
        (L{handshake_limits}), or it took over L{HANDSHAKE_TIMEOUT}.
    @ivar floods: the L{Floods}: the connections closed for a flood of
        frames.
    @ivar relay: the relay every charger's CALL goes through
        (L{xxterocpp.ocpp.handlers.dispatch}), or None.
    """

    protocol = OcppServerProtocol
    relay = None
    _log = Logger()

    def __init__(self, central, clock, ping_interval=60):
        super().__init__(server="xxterocpp")
        self.central = central
        self.clock = clock
        self.auth_failures = 0
        self.auth_throttle = basic_auth.FailureThrottle(clock)
        self.tls_failures = 0
        self.dropped_connections = 0
        self._handshaking = Slots(self._gave_up)
        self._drop_logged_at = None
        self._drops_unlogged = 0
        self._refusal_lines = Pacer(DROP_LOG_INTERVAL)
        self._tls_lines = Pacer(DROP_LOG_INTERVAL)
        self._failure_lines = Pacer(DROP_LOG_INTERVAL)
        self._throttle_lines = Pacer(DROP_LOG_INTERVAL)
        self.floods = Floods(clock, DROP_LOG_INTERVAL)
        options = dict(
            maxFramePayloadSize=MAX_MESSAGE_SIZE,
            maxMessagePayloadSize=MAX_MESSAGE_SIZE,
            # Our own deadline (HANDSHAKE_TIMEOUT) replaces Autobahn's: it
            # also ends a refused handshake that lingers in its TLS close.
            openHandshakeTimeout=0,
            # A protocol violation (too big: 1009, bad UTF-8: 1007) is told
            # with a close frame, not by dropping TCP (the charger's log then
            # shows why).
            failByDrop=False,
            closeHandshakeTimeout=5,
            # OCPP-J §5.1: no compression but RFC 6455's own.
            perMessageCompressionAccept=lambda offers: None,
            # A plain GET gets 426, not Autobahn's page naming its version.
            webStatus=False,
        )
        self.setProtocolOptions(**options)
        self.set_ping_interval(ping_interval)

    def set_ping_interval(self, interval):
        """
        Ping the connections opened from now on every C{interval} seconds
        (C{[ocpp] ping_interval}; 0: not at all), each dropped when its pong
        is not back within half of that. The connections open keep the
        pings they were opened with until their charger reconnects: each
        reads its options from the class it was built with
        (L{buildProtocol}).
        """
        # Half-open links are found within one interval and a half; some
        # chargers (Ocular, Morek) also need the traffic to stay up.
        self.setProtocolOptions(autoPingInterval=interval,
                                autoPingTimeout=max(1, interval / 2) if interval else 0)

    #: The protocol class of L{buildProtocol} (see there) and the options it
    #: holds, until they change.
    _options_class = None
    _options = None

    def buildProtocol(self, addr):
        """
        A connection of a subclass of L{protocol} that holds the factory's
        Autobahn options (C{CONFIG_ATTRS}) as class attributes: Autobahn
        copies each option it does not find on the connection into the
        connection's own C{__dict__}, some 40 of them, which with its other
        attributes made a dict of 107 entries (3,328 bytes with CPython
        3.11) for every connected charger; without them it has some 67
        (1,584 bytes). An option the protocol class sets itself stays its
        own, as with Autobahn's copy; a connection may still set one for
        itself (C{autoPingInterval} of the no-ping workaround).
        """
        base = self.protocol
        names = [name for name in base.CONFIG_ATTRS if not hasattr(base, name)]
        options = [getattr(self, name) for name in names]
        cls = self._options_class
        if cls is None or cls.__bases__[0] is not base or self._options != options:
            # A function among them (perMessageCompressionAccept) is
            # called as the option, not as a method of the connection.
            held = {name: staticmethod(value) if isinstance(value, FunctionType) else value
                    for name, value in zip(names, options)}
            cls = self._options_class = type(base.__name__, (base,), dict(
                held, __module__=base.__module__, __qualname__=base.__qualname__))
            self._options = options
        p = cls()
        p.factory = self
        return p

    def handshake_limits(self):
        """
        @return: C{(per_address, total)}: how many connections may be in
            their handshake at once from one address and in all; twice
            [ocpp] max_chargers per address and four times in all when more
            than L{MAX_HANDSHAKES_PER_ADDRESS} and L{MAX_HANDSHAKES}.
        """
        per_address = max(MAX_HANDSHAKES_PER_ADDRESS, 2 * self.central.config.ocpp.max_chargers)
        return per_address, max(MAX_HANDSHAKES, 2 * per_address)

    @property
    def handshakes(self):
        """
        How many connections are in their handshake.
        """
        return self._handshaking.taken

    def admit(self, address, connection):
        """
        Take a handshake slot for C{connection}, new from C{address}; when
        all are taken, maybe the one of another address's oldest
        (L{xxterocpp.slots.Slots.take}).

        @return: False when there is none (the caller drops the
            connection); otherwise the slot is the caller's until it calls
            L{release}.
        """
        per_address, total = self.handshake_limits()
        refused = self._handshaking.take(address, connection, per_address, total)
        if refused == PER_ADDRESS:
            self.dropped(address, f"{per_address} connections from this address are in their"
                         " handshake (a flood, or more chargers behind it than"
                         " [ocpp] max_chargers)")
        elif refused is not None:
            self.dropped(address, f"{total} connections are in their handshake")
        return refused is None

    def _gave_up(self, address, connection, held, newcomer):
        self.dropped(address, f"all handshake slots are taken; the oldest of its {held} went"
                     f" to {newcomer}")
        connection.give_up_handshake()

    def release(self, address, connection):
        """
        Give back the handshake slot L{admit} gave C{connection} from
        C{address}.
        """
        self._handshaking.release(address, connection)

    def authentication_failed(self, address, charger_id, why):
        """
        Count a handshake from C{address} as C{charger_id} refused for its
        credentials (C{why}), and log the first of a burst and the one that
        starts a refusal: a guessing address costs two lines per window of
        the L{auth_throttle}, not one per guess; and (L{Pacer}) each kind
        one line per address and a few in all per L{DROP_LOG_INTERVAL}, not
        one per address when a thousand guess at once.
        """
        self.auth_failures += 1
        throttle, key = self.auth_throttle, (address, charger_id)
        now = self.clock.seconds()
        held = None if throttle.failures(key) else self._failure_lines.due(address, now)
        if held is not None:
            self._log.warn("{id}: connection from {address} refused: {why}{more}",
                           id=charger_id, address=address, why=why,
                           more=f" ({held} more bursts from this address since the last such"
                                " line)" if held else "")
        if throttle.failed(key) and self._throttle_lines.due(address, now) is not None:
            self._log.warn("{id}: {n} failed authentications from {address} within {s:g} s;"
                           " refusing it unheard for {s:g} s", id=charger_id, address=address,
                           n=throttle.limit, s=throttle.window)

    def tls_failed(self, address, why):
        """
        Count a TLS connection from C{address} that failed because C{why}
        (OpenSSL's reason), and log it, or (plain HTTP sent a thousand
        times) only the count in its next line after L{DROP_LOG_INTERVAL}
        seconds.
        """
        self.tls_failures += 1
        held = self._tls_lines.due(address, self.clock.seconds())
        if held is not None:
            self._log.warn("TLS connection from {address} failed: {why}{more}", address=address,
                           why=why, more=f" ({held} more failed from this address since the"
                                         " last such line)" if held else "")

    def refused(self, address, code, why):
        """
        Log a handshake from C{address} refused with HTTP C{code} because
        C{why}, or (a flood) only the count in its next line after
        L{DROP_LOG_INTERVAL} seconds.
        """
        held = self._refusal_lines.due(address, self.clock.seconds())
        if held is not None:
            # Cut: Autobahn's reasons can quote a header.
            self._log.warn("handshake from {address} refused with {code}: {why}{more}",
                           address=address, code=code, why=why[:300],
                           more=f" ({held} more refused from this address since the last"
                                " such line)" if held else "")

    def dropped(self, address, why):
        """
        Count a connection from C{address} dropped before its handshake was
        over, and log it, or (a flood) only the count in the next line
        after L{DROP_LOG_INTERVAL} seconds.
        """
        self.dropped_connections += 1
        now = self.clock.seconds()
        if self._drop_logged_at is not None and now - self._drop_logged_at < DROP_LOG_INTERVAL:
            self._drops_unlogged += 1
            return
        self._log.warn("connection from {address} dropped: {why}{since}", address=address, why=why,
                       since=f" ({self._drops_unlogged} more dropped since the last such line)"
                       if self._drops_unlogged else "")
        self._drop_logged_at = now
        self._drops_unlogged = 0
