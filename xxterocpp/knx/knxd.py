# -*- test-case-name: tests.test_knxd -*-
"""
A native Twisted client for knxd's group socket, and the service that keeps it up.

knxd's protocol (as verified against a running knxd): every frame is a 2-byte
big-endian length, a 2-byte message type and a payload. A group socket is opened with
C{EIB_OPEN_GROUPCON} and then carries C{EIB_GROUP_PACKET}s::

    client -> knxd   00 05 | 00 26 | 00 00 00            open (not write-only)
    knxd -> client   00 02 | 00 26                       opened
    client -> knxd   len   | 00 27 | DST(2) APDU
    knxd -> client   len   | 00 27 | SRC(2) DST(2) APDU

An APDU is C{00 | APCI} (C{0x00} read, C{0x40} response, C{0x80} write) with
a "small" value (DPT 1) in the APCI's low 6 bits, or the value bytes after it.

knxd never echoes a telegram to the connection that sent it, and does not
answer GroupValueRead itself.
"""

import struct

import attr
from twisted.application import service
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer, endpoints, protocol
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger
from twisted.protocols.basic import Int16StringReceiver
from zope.interface import implementer

from xxterocpp.knx.address import GroupAddress

__all__ = [
    "KnxdLink",
    "KnxdProtocol",
    "KnxdRefused",
    "Telegram",
    "parse_group_packet",
    "READ",
    "RESPONSE",
    "WRITE",
]

EIB_INVALID_REQUEST = 0x0000
EIB_RESET_CONNECTION = 0x0004
EIB_OPEN_GROUPCON = 0x0026
EIB_GROUP_PACKET = 0x0027

READ = "read"
RESPONSE = "response"
WRITE = "write"

_APCI = {READ: 0x00, RESPONSE: 0x40, WRITE: 0x80}
_KIND = {apci >> 6: kind for kind, apci in _APCI.items()}

_REFUSALS = {
    EIB_INVALID_REQUEST: "EIB_INVALID_REQUEST",
    # knxd's client-address pool (-E / client-addrs) is exhausted
    EIB_RESET_CONNECTION: "EIB_RESET_CONNECTION",
}

_log = Logger()


def _individual_address(raw):
    return f"{raw >> 12}.{raw >> 8 & 0x0F}.{raw & 0xFF}"


@attr.s(frozen=True, slots=True)
class Telegram:
    """
    A group telegram received from knxd.

    @ivar src: the sender's individual address, e.g. C{"0.0.4"}.
    @ivar dst: the group address.
    @ivar kind: L{READ}, L{RESPONSE} or L{WRITE}.
    @ivar payload: an L{int} small value (DPT 1; 0 for a read) or the
        L{bytes} after the APCI; see L{xxterocpp.knx.dpt}.
    """

    src: str = attr.ib()
    dst: GroupAddress = attr.ib()
    kind: str = attr.ib()
    payload: "int | bytes" = attr.ib()


class KnxdRefused(Exception):
    """
    knxd refused to open the group socket.
    """


def _encode_group_packet(dst, kind, payload):
    """
    The C{EIB_GROUP_PACKET} (without length) that sends C{payload} to C{dst}.

    @raise ValueError: for a small value that does not fit in 6 bits.
    """
    if isinstance(dst, str):
        dst = GroupAddress.parse(dst)
    apci = _APCI[kind]
    if isinstance(payload, int):
        if not 0 <= payload <= 0x3F:
            raise ValueError(f"small KNX value must be 0..63, not {payload!r}")
        apdu = bytes((0, apci | payload))
    else:
        apdu = bytes((0, apci)) + bytes(payload)
    return struct.pack(">H", EIB_GROUP_PACKET) + dst.encode() + apdu


def parse_group_packet(data):
    """
    Parse the payload of an C{EIB_GROUP_PACKET} from knxd.

    @param data: C{SRC(2) DST(2) APDU}.
    @return: the L{Telegram}.
    @raise ValueError: too short, broadcast destination or not a
        GroupValue read/response/write.
    """
    if len(data) < 6:
        raise ValueError("group packet shorter than 6 bytes")
    src, dst = struct.unpack(">HH", data[:4])
    apci = (data[4] & 0x03) << 2 | data[5] >> 6
    if apci not in _KIND:
        raise ValueError(f"APCI {apci:#x} is not a GroupValue read/response/write")
    kind = _KIND[apci]
    if kind == READ or len(data) == 6:
        payload = data[5] & 0x3F
    else:
        payload = bytes(data[6:])
    return Telegram(_individual_address(src), GroupAddress(dst), kind, payload)


class KnxdProtocol(Int16StringReceiver):
    """
    One knxd connection with its group socket.

    @ivar opened: fires with this protocol once knxd confirmed the group
        socket; fails with L{KnxdRefused}, a timeout or the reason the
        connection was lost before that.
    @ivar closed: fires with the reason (an exception such as
        L{twisted.internet.error.ConnectionDone}) when the connection is lost.
    @ivar on_telegram: called with each received L{Telegram}.
    """

    def __init__(self, clock, on_telegram=None, open_timeout=10.0):
        """
        @param clock: the L{IReactorTime} for the open timeout.
        @param on_telegram: a callable taking a L{Telegram}, or L{None}.
        @param open_timeout: seconds to wait for knxd to open the group socket.
        """
        self.clock = clock
        self.on_telegram = on_telegram
        self.open_timeout = open_timeout
        self.opened = defer.Deferred()
        self.closed = defer.Deferred()
        self.is_open = False
        self._timeout = None

    def connectionMade(self):
        # byte 4 is knxd's write-only flag (knxdclient wrongly sets byte 3)
        self.sendString(struct.pack(">H", EIB_OPEN_GROUPCON) + b"\0\0\0")
        self._timeout = self.clock.callLater(self.open_timeout, self._open_timed_out)

    def _open_timed_out(self):
        self._timeout = None
        self.opened.errback(
            defer.TimeoutError(f"knxd did not open the group socket within {self.open_timeout} s")
        )
        self.transport.abortConnection()

    def _cancel_timeout(self):
        if self._timeout is not None:
            self._timeout.cancel()
            self._timeout = None

    def stringReceived(self, data):
        if len(data) < 2:
            _log.warn("knxd sent a frame without a type: {frame}", frame=data.hex(" "))
            return
        (kind,) = struct.unpack(">H", data[:2])
        if kind == EIB_GROUP_PACKET and self.is_open:
            self._group_packet_received(data[2:])
        elif kind == EIB_OPEN_GROUPCON and not self.is_open and not self.opened.called:
            self._cancel_timeout()
            self.is_open = True
            self.opened.callback(self)
        elif kind in _REFUSALS:
            self._cancel_timeout()
            reason = KnxdRefused(f"knxd answered {_REFUSALS[kind]}")
            if not self.opened.called:
                self.opened.errback(reason)
            else:
                _log.warn("{reason}; dropping the connection", reason=reason)
            self.transport.loseConnection()
        else:
            _log.warn("ignoring unexpected knxd frame {frame}", frame=data.hex(" "))

    def _group_packet_received(self, data):
        try:
            telegram = parse_group_packet(data)
        except ValueError as e:
            _log.warn(
                "ignoring knxd group packet {frame}: {reason}", frame=data.hex(" "), reason=e
            )
            return
        if self.on_telegram is not None:
            self.on_telegram(telegram)

    def connectionLost(self, reason):
        self._cancel_timeout()
        self.is_open = False
        if not self.opened.called:
            self.opened.errback(reason)
        # the exception: callback() with a Failure would take the error path
        self.closed.callback(reason.value)

    def write(self, dst, value):
        """
        Send a GroupValueWrite.

        @param dst: a L{GroupAddress} or its text.
        @param value: an L{int} small value (0..63, DPT 1) or L{bytes}.
        """
        self.sendString(_encode_group_packet(dst, WRITE, value))

    def respond(self, dst, value):
        """
        Send a GroupValueResponse; see L{write}.
        """
        self.sendString(_encode_group_packet(dst, RESPONSE, value))

    def read(self, dst):
        """
        Send a GroupValueRead.
        """
        self.sendString(_encode_group_packet(dst, READ, 0))


@implementer(IStreamClientEndpoint)
class _ObservedEndpoint:
    """
    An endpoint that reports failed connection attempts; L{ClientService}
    only logs them, once per retry.
    """

    def __init__(self, endpoint, on_failure):
        self._endpoint = endpoint
        self._on_failure = on_failure

    def connect(self, factory):
        def failed(failure):
            if not failure.check(defer.CancelledError):
                self._on_failure(failure)
            return failure

        return self._endpoint.connect(factory).addErrback(failed)


class _QuietClientService(ClientService):
    # ClientService logs every retry; KnxdLink logs the state changes instead.
    _log = Logger(observer=lambda event: None)


class _Factory(protocol.Factory):
    # Not noisy: Twisted would log "Starting factory" / "Stopping factory" at
    # every retry, while knxd is down; KnxdLink logs the state changes.
    noisy = False

    def __init__(self, link):
        self.link = link

    def buildProtocol(self, addr):
        return self.link._build_protocol()


class KnxdLink(service.Service):
    """
    A group-socket connection to knxd that is kept up: it reconnects with
    backoff forever and logs one line per state change, not per retry.

    Writes while the link is down are dropped; link observers learn when it
    comes back, so that the bridge can republish its state.

    @ivar description: the knxd client endpoint, e.g. C{"unix:/run/knx"}.
    """

    def __init__(self, description, reactor, retry_policy=None, open_timeout=10.0):
        """
        @param description: a client endpoint string (C{"unix:/run/knx"},
            C{"tcp:host:6720"}).
        @param reactor: the reactor (also the clock for retries).
        @param retry_policy: seconds to wait before retry I{n}; default
            exponential backoff capped at 30 s.
        @param open_timeout: seconds knxd may take to open the group socket.
        """
        self.description = description
        self._reactor = reactor
        self._open_timeout = open_timeout
        self._protocol = None
        self._telegram_observers = []
        self._link_observers = []
        # "starting" until the first attempt succeeds or fails, then "up"/"down"
        self._state = "starting"
        self._stopping = False
        endpoint = _ObservedEndpoint(
            endpoints.clientFromString(reactor, description), self._connect_failed
        )
        self._client = _QuietClientService(
            endpoint,
            _Factory(self),
            retryPolicy=retry_policy or backoffPolicy(maxDelay=30.0),
            clock=reactor,
        )

    @property
    def connected(self):
        """
        L{True} while the group socket is open.
        """
        return self._protocol is not None

    def add_telegram_observer(self, observer):
        """
        Call C{observer(telegram)} with each received L{Telegram}.
        """
        self._telegram_observers.append(observer)

    def add_link_observer(self, observer):
        """
        Call C{observer(True)} when the group socket is open, C{observer(False)}
        when it is lost.
        """
        self._link_observers.append(observer)

    def startService(self):
        super().startService()
        self._stopping = False
        self._state = "starting"
        self._client.startService()

    def stopService(self):
        super().stopService()
        self._stopping = True
        return self._client.stopService()

    def write(self, dst, value):
        """
        Send a GroupValueWrite; see L{KnxdProtocol.write}.

        @return: L{False} when the link is down and nothing was sent.
        """
        return self._send(KnxdProtocol.write, dst, value)

    def respond(self, dst, value):
        """
        Send a GroupValueResponse; see L{KnxdProtocol.respond}.

        @return: L{False} when the link is down and nothing was sent.
        """
        return self._send(KnxdProtocol.respond, dst, value)

    def read(self, dst):
        """
        Send a GroupValueRead.

        @return: L{False} when the link is down and nothing was sent.
        """
        return self._send(KnxdProtocol.read, dst)

    def _send(self, method, *args):
        if self._protocol is None:
            return False
        method(self._protocol, *args)
        return True

    def _build_protocol(self):
        proto = KnxdProtocol(self._reactor, self._telegram, self._open_timeout)
        proto.opened.addCallbacks(self._opened, self._open_failed)
        proto.closed.addCallback(self._closed, proto)
        return proto

    def _down(self, what, reason, hint="is knxd running? check [knx] knxd"):
        # one line per outage, whatever the number of retries
        if self._state != "down" and not self._stopping:
            _log.warn(
                "{what} at {knxd}: {reason}; retrying in the background ({hint})",
                what=what,
                knxd=self.description,
                reason=str(reason).rstrip("."),
                hint=hint,
            )
        self._state = "down"

    def _connect_failed(self, failure):
        self._down("cannot connect to knxd", failure.getErrorMessage())

    def _open_failed(self, failure):
        what, reason = "knxd did not open a group socket", failure.getErrorMessage()
        if failure.check(KnxdRefused):
            self._down(what, reason, "too many clients? raise knxd's client-addrs (-E)")
        else:
            self._down(what, reason)

    def _opened(self, proto):
        if self._stopping:
            return
        _log.info(
            "knxd link {what} at {knxd}",
            what="back up" if self._state == "down" else "up",
            knxd=self.description,
        )
        self._state = "up"
        self._protocol = proto
        self._notify(self._link_observers, True)

    def _closed(self, reason, proto):
        if proto is not self._protocol:
            return
        self._protocol = None
        self._down("lost the knxd link", reason)
        self._notify(self._link_observers, False)

    def _telegram(self, telegram):
        self._notify(self._telegram_observers, telegram)

    def _notify(self, observers, arg):
        for observer in list(observers):
            try:
                observer(arg)
            except Exception:
                # one broken observer must not cut the bus off the others
                _log.failure("KNX observer {observer} failed", observer=observer)
