# -*- test-case-name: tests.test_sim -*-
"""
An interoperability peer: a charge point built on the PyPI C{ocpp} package
(mobilityhouse/ocpp 2.x, C{ocpp.v16.ChargePoint}) over C{websockets}.

L{tests.sim} is our own idea of a charger; this one is somebody else's, so a
central system that passes tests against both is less likely to share a
misreading of the spec with its test peer.

C{ocpp} is asyncio-only while trial spins the Twisted reactor, so each peer
runs its own asyncio loop in a background thread.  Coroutines are submitted
with L{asyncio.run_coroutine_threadsafe} and their results come back to the
reactor thread with C{reactor.callFromThread}, so test code only ever sees
L{Deferred}s and every attribute it reads is written in the reactor thread.

Debian bookworm packages neither C{ocpp} nor a recent C{websockets}: tests
check L{ocpplib_available} and skip.

Facts about ocpp 2.x worth knowing when writing tests with it: payload
dataclasses and handler kwargs are snake_case (nested dicts too); C{call()}
with the default C{suppress=True} returns L{None} for a CALLERROR (pass
C{suppress=False} to get an C{OCPPError}); it allows one outstanding CALL.
"""

import asyncio
import threading
from typing import Optional

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.python.failure import Failure

try:
    import websockets
    from ocpp.routing import on
    from ocpp.v16 import ChargePoint, call_result
    from ocpp.v16.enums import Action
except ImportError as e:
    _IMPORT_ERROR: Optional[ImportError] = e
else:
    _IMPORT_ERROR = None
    try:
        # websockets >= 13; the legacy module warns since 14.
        from websockets.asyncio.client import connect as _ws_connect
    except ImportError:
        _ws_connect = websockets.connect

__all__ = ["OcppLibCharger", "ocpplib_available", "start_ocpplib_charger", "SKIP_REASON"]


def ocpplib_available() -> bool:
    """
    Whether the C{ocpp} and C{websockets} packages can be imported.
    """
    return _IMPORT_ERROR is None


#: A C{skip} value for tests that need the ocpp library.
SKIP_REASON = f"the ocpp/websockets packages are not installed ({_IMPORT_ERROR})"

# What the peer answers to the CS→CP CALLs a central system commonly sends:
# Accepted (or its equivalent) everywhere, as ocpp-lib call_result kwargs.
_REPLIES = {
    "CancelReservation": {"status": "Accepted"},
    "CertificateSigned": {"status": "Accepted"},
    "ChangeAvailability": {"status": "Accepted"},
    "ChangeConfiguration": {"status": "Accepted"},
    "ClearChargingProfile": {"status": "Accepted"},
    "ExtendedTriggerMessage": {"status": "Accepted"},
    "GetConfiguration": {"configuration_key": []},
    "RemoteStartTransaction": {"status": "Accepted"},
    "RemoteStopTransaction": {"status": "Accepted"},
    "ReserveNow": {"status": "Accepted"},
    "Reset": {"status": "Accepted"},
    "SetChargingProfile": {"status": "Accepted"},
    "TriggerMessage": {"status": "Accepted"},
    "UnlockConnector": {"status": "Unlocked"},
}


def _answering(action: str, reply: dict):
    """
    An C{@on(action)} handler that reports the CALL to the reactor thread
    and answers with C{reply}.
    """


    def handler(self, **kwargs):
        self.peer._reactor.callFromThread(self.peer._got_call, action, kwargs)
        return getattr(call_result, action)(**reply)

    # ocpp-lib finds routes by the function's name at decoration time, so
    # the name must be the attribute name before @on sees it.
    handler.__name__ = f"on_{action}"
    return on(Action(action))(handler)


if _IMPORT_ERROR is None:

    class _ChargePoint(ChargePoint):
        """
        ocpp-lib's charge point with a handler for every action in
        L{_REPLIES}; C{peer} is the owning L{OcppLibCharger}.
        """

        peer: "OcppLibCharger"

    for _action, _reply in _REPLIES.items():
        setattr(_ChargePoint, f"on_{_action}", _answering(_action, _reply))


class OcppLibCharger:
    """
    A connected ocpp-lib charge point.  Create it with
    L{start_ocpplib_charger}.

    @ivar identity: The charge point identity.
    @ivar negotiated_protocol: The subprotocol the server selected, or
        L{None}.
    @ivar received: Every CS→CP CALL it handled, as C{(action, kwargs)}
        with ocpp-lib's snake_case kwargs.
    @ivar cp: The C{ocpp.v16.ChargePoint}; only touch it from coroutines
        run on the peer's loop.
    """

    def __init__(self, identity: str, reactor, timeout: float):
        self.identity = identity
        self.negotiated_protocol: Optional[str] = None
        self.received: list = []
        self.cp = None
        self._reactor = reactor
        self._timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"ocpplib-{identity}", daemon=True)
        self._ws = None
        self._serving = None
        self._waiters: list = []
        self._unconsumed: list = []
        self._stopped = False

    def call(self, payload, **kwargs) -> Deferred:
        """
        C{await cp.call(payload, **kwargs)} on the peer's loop.

        @param payload: An C{ocpp.v16.call} dataclass.
        @param kwargs: Passed on, e.g. C{suppress=False},
            C{skip_schema_validation=True}, C{unique_id=...}.
        @return: A L{Deferred} with the C{call_result} dataclass (L{None}
            for a CALLERROR unless C{suppress=False}).
        """
        return self._run(self.cp.call(payload, **kwargs))

    def wait_for(self, action: str, timeout: float = 10) -> Deferred:
        """
        The kwargs of the next CS→CP CALL of C{action} to arrive, or of the
        first one in L{received} not yet consumed by C{wait_for}.
        """
        for index, (got, kwargs) in enumerate(self._unconsumed):
            if got == action:
                del self._unconsumed[index]
                return succeed(kwargs)
        entry = (action, Deferred(lambda d: self._waiters.remove(entry)))
        self._waiters.append(entry)
        return entry[1].addTimeout(timeout, self._reactor)

    def close(self) -> Deferred:
        """
        Close the WebSocket, stop the loop and join its thread.

        @return: A L{Deferred} firing with L{None} when all of that is done.
        """
        if self._stopped:
            return succeed(None)
        return self._run(self._close()).addBoth(self._stop)

    # -- running things on the asyncio loop ---------------------------------

    def _run(self, coroutine) -> Deferred:
        """
        Run C{coroutine} on the peer's loop; its outcome arrives as a
        L{Deferred} in the reactor thread.  A reactor timer bounds the wait
        in case the asyncio side hangs.
        """
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        d = Deferred(lambda d: future.cancel())

        def deliver(future):
            if d.called:
                return
            if future.cancelled():
                d.errback(CancelledError())
            elif future.exception() is not None:
                d.errback(Failure(future.exception()))
            else:
                d.callback(future.result())

        # The done callback runs in the loop thread; hop to the reactor.
        future.add_done_callback(lambda future: self._reactor.callFromThread(deliver, future))
        return d.addTimeout(self._timeout + 5, self._reactor)

    async def _connect(self, url: str, protocols, ssl=None) -> None:
        options = {} if ssl is None else {"ssl": ssl}
        self._ws = await asyncio.wait_for(
            _ws_connect(url, subprotocols=list(protocols) or None, **options), self._timeout)
        self.cp = _ChargePoint(self.identity, self._ws, response_timeout=self._timeout)
        self.cp.peer = self
        self._serving = asyncio.ensure_future(self._serve())
        return self._ws.subprotocol

    async def _serve(self) -> None:
        try:
            await self.cp.start()
        except websockets.ConnectionClosed:
            # The normal end of the receive loop.
            pass

    async def _close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._serving is not None:
            self._serving.cancel()
            try:
                await self._serving
            except asyncio.CancelledError:
                pass
        # ocpp-lib validates schemas in the default executor's threads.
        await self._loop.shutdown_default_executor()

    def _stop(self, result):
        self._stopped = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self._timeout)
        if not self._thread.is_alive():
            self._loop.close()
        return result

    def _got_call(self, action: str, kwargs: dict) -> None:
        self.received.append((action, kwargs))
        for entry in self._waiters:
            if entry[0] == action:
                self._waiters.remove(entry)
                entry[1].callback(kwargs)
                return
        self._unconsumed.append((action, kwargs))


def start_ocpplib_charger(
    url: str, identity: str, protocols=("ocpp1.6",), *, timeout: float = 10, reactor=None,
    ssl=None,
) -> Deferred:
    """
    Connect an ocpp-lib charge point to C{url} + C{identity} in a
    background thread.

    @param url: The central system endpoint, C{ws://host:port/path/}.
    @param identity: Appended as the last path segment, as is; pass a
        percent-encoded one if it needs encoding.
    @param protocols: Subprotocols to offer; empty sends none.
    @param timeout: Bounds the connect and each CALL (ocpp-lib's
        C{response_timeout}).
    @param ssl: An L{ssl.SSLContext} for a C{wss://} URL (the trusted CA,
        the client certificate), else the system's defaults.
    @return: A L{Deferred} firing with an L{OcppLibCharger} whose receive
        loop is running.  On failure the thread is already stopped.
    """
    if _IMPORT_ERROR is not None:
        raise RuntimeError(SKIP_REASON)
    if reactor is None:
        from twisted.internet import reactor
    peer = OcppLibCharger(identity, reactor, timeout)
    peer._thread.start()
    full_url = (url if url.endswith("/") else url + "/") + identity

    def connected(subprotocol):
        peer.negotiated_protocol = subprotocol
        return peer

    return peer._run(peer._connect(full_url, protocols, ssl)).addCallbacks(connected, lambda failure: peer._stop(failure))
