# -*- test-case-name: tests.test_web_routes,tests.test_attacks_web,tests.test_slots,tests.test_attacks_more -*-
"""
What the web interface refuses on a request's headers alone, before its
body is read: a foreign C{Host} on a loopback interface (DNS rebinding), an
address that keeps guessing the password, wrong credentials, a body over
L{MAX_BODY}. And the connections it keeps: a few per address
(L{MAX_CONNECTIONS_PER_ADDRESS}), each sending its request whole within
L{REQUEST_TIMEOUT}.

twisted.web reads the whole body before a resource sees the request, so the
L{Gate} is asked by L{WebRequest} as soon as the headers are in
(C{gotLength}); a refused request is answered there and its connection
closed, and its body is never read.
"""

import math

from twisted.logger import Logger
from twisted.web import http, server
from twisted.web.http import RESPONSES

from xxterocpp import basic_auth
from xxterocpp.pacing import Pacer
from xxterocpp.slots import PER_ADDRESS, Slots
from xxterocpp.web.reply import SECURITY_HEADERS, HttpError, Reply

#: The largest request body read: the API's bodies are a few hundred bytes.
MAX_BODY = 64 * 1024

#: Seconds a connection has to send a request whole, head and body, from
#: its accept or the end of the answer before: a browser needs
#: milliseconds, a slow sender (one byte a minute kept Twisted's idle
#: timeout away) is closed.
REQUEST_TIMEOUT = 30

#: How many connections the web interface keeps open from one address, and
#: in all (then the address with the most gives up its oldest,
#: L{xxterocpp.slots}); more are closed at once. A browser opens six; the
#: descriptors of the process are the chargers' too.
MAX_CONNECTIONS_PER_ADDRESS = 32
MAX_CONNECTIONS = 256

#: Seconds between two log lines about refused connections.
REFUSED_LOG_INTERVAL = 10

#: The names a browser on this machine uses for a loopback interface.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")

#: Reason phrases twisted.web does not know.
_REASONS = {429: b"Too Many Requests"}

#: The realm of the C{WWW-Authenticate} challenge.
REALM = "xxterocpp"


def reason(code):
    """
    @return: the reason phrase of an HTTP status code, as bytes.
    """
    return RESPONSES.get(code) or _REASONS.get(code, b"Error")


def header(request, name):
    """
    @return: the last value of a request header as text (Latin-1, which
        cannot fail), or None.
    """
    value = request.getHeader(name.encode("ascii"))
    return None if value is None else value.decode("latin-1")


def too_large():
    """
    @return: the refusal of a body over L{MAX_BODY}.
    """
    return HttpError(413, f"the body is larger than {MAX_BODY} bytes")


def host_names(interface):
    """
    @return: the host names (without port) a loopback web interface on
        C{interface} is served under.
    """
    interface = interface.strip().lower()
    if ":" in interface:
        interface = f"[{interface}]"
    return {interface, *LOOPBACK_HOSTS}


def host_name(host):
    """
    @return: the name part of a C{Host} header value (the port dropped), in
        lower case, or None when there is none or the port is no number.
    """
    if not host:
        return None
    host = host.strip().lower()
    name, colon, port = host.rpartition(":")
    bracketed = name.startswith("[")
    if not colon or (bracketed and not name.endswith("]")) or (not bracketed and ":" in name):
        # No port: the last colon is inside an IPv6 address.
        name, port = host, ""
    if port and not (port.isascii() and port.isdigit()):
        return None
    return name


class Gate:
    """
    The checks of a request's headers, in order: C{Host} (only for a
    loopback interface), the failed-login throttle, Basic auth (only with a
    C{[web] password}), the body's declared length.

    The C{Host} check stops DNS rebinding: a page of C{evil.example} whose
    name later resolves to 127.0.0.1 reaches a loopback interface with the
    browser, but its requests still say C{Host: evil.example}. The port is
    not checked: an SSH tunnel forwards another local port, and the name is
    what a rebinding page cannot choose.

    @ivar web: a callable returning the L{xxterocpp.config.WebConfig} in
        force (a reload changes it).
    @ivar throttle: the L{basic_auth.FailureThrottle} of wrong passwords.
    """

    log = Logger()

    def __init__(self, web, clock):
        self.web = web
        self.throttle = basic_auth.FailureThrottle(clock)

    def refusal(self, request, length):
        """
        @param length: the declared length of the body, None when it is sent
            chunked (then L{WebRequest} counts it as it comes).
        @return: the L{HttpError} that refuses the request, or None.
        """
        web = self.web()
        if web.is_loopback() and host_name(header(request, "host")) not in \
                host_names(web.interface):
            return HttpError(403, "this interface is served as http://127.0.0.1 or "
                                  "http://localhost only, not under another name")
        if web.password:
            error = self._authentication(request, web)
            if error is not None:
                return error
        if length is not None and length > MAX_BODY:
            return too_large()
        return None

    def _authentication(self, request, web):
        address = getattr(request.getClientAddress(), "host", "?")
        wait = self.throttle.refused_for(address)
        if wait:
            return HttpError(429, "too many failed logins from this address; try again later",
                             headers={"Retry-After": str(math.ceil(wait))})
        credentials = basic_auth.parse(request.getHeader(b"authorization"))
        if basic_auth.matches(credentials, web.username, web.password):
            return None
        # Without credentials is how a browser asks for the login prompt: not a guess.
        if credentials is not None and self.throttle.failed(address):
            self.log.warn(
                "web interface: {n} failed logins from {address}; refusing it for {s:g} s",
                n=self.throttle.limit, address=address, s=self.throttle.window)
        return HttpError(401, "log in with the [web] username and password",
                         headers={"WWW-Authenticate": basic_auth.challenge(REALM)})


class WebRequest(server.Request):
    """
    A request judged by the site's L{Gate} once its headers are in: a
    refused one is answered at once, its connection closed, its body never
    read. A chunked body (no declared length) is cut off past L{MAX_BODY}.

    @ivar refused: whether it was.
    """

    refused = False
    _received = 0

    def gotLength(self, length):
        error = self.channel.site.gate.refusal(self, length)
        if error is None:
            super().gotLength(length)
        else:
            self._refuse(error)

    def handleContentChunk(self, data):
        if self.refused:
            return
        self._received += len(data)
        if self._received > MAX_BODY:
            self._refuse(too_large())
            return
        super().handleContentChunk(data)

    def requestReceived(self, command, path, version):
        if not self.refused:
            super().requestReceived(command, path, version)

    def _refuse(self, error):
        """
        Answer with C{error} directly on the transport and close, the way
        twisted.web answers a malformed request: the request's method and
        path are not set on it before its body is in.
        """
        self.refused = True
        # No "100 Continue" for a body that is not going to be read.
        self.requestHeaders.removeHeader(b"expect")
        reply = Reply.error(error)
        headers = (("Content-Type", reply.content_type), ("Content-Length", len(reply.body)),
                   ("Connection", "close"), *SECURITY_HEADERS, *reply.headers.items())
        head = b"HTTP/1.1 %d %s\r\n" % (reply.code, reason(reply.code)) + b"".join(
            f"{name}: {value}\r\n".encode("latin-1") for name, value in headers)
        self.channel.transport.write(head + b"\r\n" + reply.body)
        self.channel.loseConnection()


class WebChannel(http.HTTPChannel):
    """
    A connection of the web interface: it holds one of the site's slots
    while open, and is closed when a request is not in whole within
    L{WebSite.request_timeout} seconds of the connection being idle.
    """

    _deadline = None
    _address = None

    def connectionMade(self):
        super().connectionMade()
        address = getattr(self.transport.getPeer(), "host", "?")
        if not self.site.admit(address, self):
            self.transport.abortConnection()
            return
        self._address = address
        self._await_request()

    def _await_request(self):
        self._cancel_deadline()
        self._deadline = self.callLater(self.site.request_timeout, self._too_slow)

    def _cancel_deadline(self):
        if self._deadline is not None:
            if self._deadline.active():
                self._deadline.cancel()
            self._deadline = None

    def _too_slow(self):
        self._deadline = None
        self.transport.abortConnection()

    def give_up(self):
        """
        Close this connection: its slot went to another address.
        """
        self._address = None
        self.transport.abortConnection()

    def allContentReceived(self):
        # The request is in: however long its answer takes is the
        # handler's (a command waits for the charger).
        self._cancel_deadline()
        super().allContentReceived()

    def requestDone(self, request):
        # First: super() may read the next pipelined request at once.
        self._await_request()
        super().requestDone(request)

    def connectionLost(self, reason):
        self._cancel_deadline()
        if self._address is not None:
            self.site.release(self._address, self)
            self._address = None
        super().connectionLost(reason)


class WebSite(server.Site):
    """
    The HTTP server of the web interface: its connections are
    L{WebChannel}s, at most L{MAX_CONNECTIONS_PER_ADDRESS} per address and
    L{MAX_CONNECTIONS} in all; its requests are L{WebRequest}s judged by
    C{gate}; no access log (the page polls every few seconds and would fill
    the journal).

    @ivar gate: the L{Gate}.
    @ivar request_timeout: L{REQUEST_TIMEOUT}.
    @ivar refused_connections: how many connections were closed at once
        (too many from their address or in all) or later for another
        address.
    """

    noisy = False
    _log = Logger()
    protocol = WebChannel
    requestFactory = WebRequest
    request_timeout = REQUEST_TIMEOUT

    def __init__(self, resource, gate, clock):
        """
        @param clock: the L{IReactorTime} of the connections' idle timeouts.
        """
        super().__init__(resource, reactor=clock)
        self.gate = gate
        self.refused_connections = 0
        self._connections = Slots(self._gave_up)
        self._refusal_lines = Pacer(REFUSED_LOG_INTERVAL)

    @property
    def connections(self):
        """
        How many connections are open.
        """
        return self._connections.taken

    def admit(self, address, channel):
        """
        Give C{channel}, new from C{address}, a connection slot.

        @return: whether it has one (until L{release}).
        """
        refused = self._connections.take(address, channel, MAX_CONNECTIONS_PER_ADDRESS,
                                         MAX_CONNECTIONS)
        if refused is not None:
            self._refused(address, f"{MAX_CONNECTIONS_PER_ADDRESS} connections from this"
                          " address are open" if refused == PER_ADDRESS
                          else f"{MAX_CONNECTIONS} connections are open")
        return refused is None

    def _gave_up(self, address, channel, held, newcomer):
        self._refused(address, f"all connections are taken; the oldest of its {held} went to"
                               f" {newcomer}")
        channel.give_up()

    def _refused(self, address, why):
        self.refused_connections += 1
        held = self._refusal_lines.due(address, self.reactor.seconds())
        if held is not None:
            self._log.warn("web interface: connection from {address} closed: {why}{more}",
                               address=address, why=why,
                               more=f" ({held} more since the last such line)" if held else "")

    def release(self, address, channel):
        """
        Free the slot L{admit} gave C{channel} from C{address}.
        """
        self._connections.release(address, channel)

    def log(self, request):
        pass

    def startFactory(self):
        # No access log, so nothing of HTTPFactory's to set up: neither its
        # log file nor the once-a-second refresh of the date it would log,
        # which woke an idle service every second.
        pass

    def stopFactory(self):
        pass
