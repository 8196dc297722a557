"""
A test back office: an upstream central system on loopback built on the
central-system side of the PyPI C{ocpp} package (C{ocpp.v16.ChargePoint}
as the handler of each connection) over C{websockets}.

It validates every frame we send it against the official OCPP 1.6 JSON
schemas (the library does), hands out transactionIds from its own counter
far from ours, answers boots Accepted, Pending or Rejected on demand, keeps
a tag table, can answer slowly or with CALLERRORs, drop connections and be
stopped and started again on the same port, and logs every frame.

Like L{tests.ocpplib_peer}, it runs its own asyncio loop in a thread;
test code sees L{Deferred}s, and every attribute it reads is written in
the reactor thread. Debian packages neither C{ocpp} nor a recent
C{websockets}: tests check L{backoffice_available} and skip.
"""

import asyncio
import base64
import json
import logging
import threading
from datetime import datetime, timezone

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from tests.ocpplib_peer import SKIP_REASON, ocpplib_available

if ocpplib_available():
    from ocpp.exceptions import InternalError
    from ocpp.routing import on
    from ocpp.v16 import ChargePoint, call_result
    from websockets.asyncio.server import serve

__all__ = ["SKIP_REASON", "TestBackOffice", "backoffice_available", "start_backoffice"]

#: Where its transactionIds start: far from the controller's.
FIRST_TRANSACTION_ID = 900001

#: The library logs every frame and every injected error: the frame log is
#: the test's record.
_QUIET = logging.getLogger("tests.backoffice")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def backoffice_available():
    """
    Whether the C{ocpp} and C{websockets} packages can be imported.
    """
    return ocpplib_available()


def _now():
    return datetime.now(timezone.utc).isoformat()


if ocpplib_available():

    class _Handler(ChargePoint):
        """
        One charger connection at the back office.
        """

        office: "TestBackOffice"

        async def route_message(self, raw_msg):
            self.office._frame(self.id, "in", raw_msg)
            return await super().route_message(raw_msg)

        async def _send(self, message):
            self.office._frame(self.id, "out", message)
            await super()._send(message)

        async def _behave(self, action):
            office = self.office
            delay = office.slow.get(action)
            if delay:
                await asyncio.sleep(delay)
            if office.errors.get(action, 0) > 0:
                office.errors[action] -= 1
                raise InternalError(description=f"injected error for {action}")

        @on("BootNotification")
        async def on_boot(self, **kwargs):
            await self._behave("BootNotification")
            answers = self.office.boot_answers
            status, interval = answers.pop(0) if answers else ("Accepted", 300)
            return call_result.BootNotification(current_time=_now(), interval=interval,
                                                 status=status)

        @on("Heartbeat")
        async def on_heartbeat(self, **kwargs):
            await self._behave("Heartbeat")
            return call_result.Heartbeat(current_time=_now())

        @on("StatusNotification")
        async def on_status(self, **kwargs):
            await self._behave("StatusNotification")
            return call_result.StatusNotification()

        @on("Authorize")
        async def on_authorize(self, id_tag, **kwargs):
            await self._behave("Authorize")
            return call_result.Authorize(id_tag_info={"status": self.office.tag(id_tag)})

        @on("StartTransaction")
        async def on_start(self, id_tag, **kwargs):
            await self._behave("StartTransaction")
            office = self.office
            tx = office.next_transaction_id
            office.next_transaction_id += 1
            return call_result.StartTransaction(transaction_id=tx,
                                                id_tag_info={"status": office.tag(id_tag)})

        @on("StopTransaction")
        async def on_stop(self, **kwargs):
            await self._behave("StopTransaction")
            return call_result.StopTransaction()

        @on("MeterValues")
        async def on_meter_values(self, **kwargs):
            await self._behave("MeterValues")
            return call_result.MeterValues()

        @on("DiagnosticsStatusNotification")
        async def on_diagnostics(self, **kwargs):
            return call_result.DiagnosticsStatusNotification()

        @on("FirmwareStatusNotification")
        async def on_firmware(self, **kwargs):
            return call_result.FirmwareStatusNotification()


class TestBackOffice:
    """
    The back office. Create it with L{start_backoffice}.

    @ivar port: the TCP port it listens on.
    @ivar url: C{ws://127.0.0.1:PORT/ocpp}.
    @ivar frames: every frame, C{(identity, direction, [frame as JSON])},
        C{direction} C{"in"} (to the back office) or C{"out"}.
    @ivar boot_answers: C{(status, interval)} for the next BootNotifications,
        taken in order; then Accepted with 300 s.
    @ivar tags: C{{idTag: status}}; any other tag is Invalid.
    @ivar slow: C{{action: seconds}} before answering.
    @ivar errors: C{{action: n}}: the next n CALLs answered with CALLERROR.
    @ivar passwords: C{{identity: password}}; a connection of such an
        identity without it is refused with 401.
    @ivar authorizations: the C{Authorization} header of each connection.
    @ivar next_transaction_id: the next transactionId it gives.
    """

    __test__ = False

    def __init__(self, reactor, timeout):
        self._reactor = reactor
        self._timeout = timeout
        self.port = None
        self.frames = []
        self.boot_answers = []
        self.tags = {}
        self.slow = {}
        self.errors = {}
        self.passwords = {}
        self.authorizations = []
        self.next_transaction_id = FIRST_TRANSACTION_ID
        self._handlers = {}
        self._server = None
        self._waiters = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="backoffice",
                                        daemon=True)
        self._thread.start()

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}/ocpp"

    def tag(self, id_tag):
        """
        @return: the status of a tag in the table.
        """
        return self.tags.get(id_tag, "Invalid")

    # -- the frame log -----------------------------------------------------

    def _frame(self, identity, direction, text):
        self._reactor.callFromThread(self._logged, identity, direction, json.loads(text))

    def _logged(self, identity, direction, frame):
        self.frames.append((identity, direction, frame))
        for entry in list(self._waiters):
            predicate, d = entry
            if predicate(identity, direction, frame):
                self._waiters.remove(entry)
                d.callback(frame)

    def calls(self, identity=None, action=None):
        """
        @return: the payloads of the CALLs the back office received, in
            order (of C{identity}, of C{action}).
        """
        return [f[3] for i, d, f in self.frames
                if d == "in" and f[0] == 2 and (identity is None or i == identity)
                and (action is None or f[2] == action)]

    def actions(self, identity=None):
        """
        @return: the actions of the CALLs received, in order.
        """
        return [f[2] for i, d, f in self.frames
                if d == "in" and f[0] == 2 and (identity is None or i == identity)]

    def wait_for_call(self, action, identity=None, count=1, timeout=20):
        """
        @return: a Deferred firing once C{count} CALLs of C{action} arrived
            in all.
        """

        def enough(*ignored):
            return len(self.calls(identity, action)) >= count

        return self.wait(enough, timeout)

    def wait(self, predicate, timeout=20):
        """
        @param predicate: C{predicate(identity, direction, frame)}, called
            for each new frame (and once now with Nones).
        @return: a Deferred firing once it held.
        """
        if predicate(None, None, None):
            return succeed(None)
        entry = (predicate, Deferred(lambda d: self._waiters.remove(entry)))
        self._waiters.append(entry)
        return entry[1].addTimeout(timeout, self._reactor)

    # -- running -----------------------------------------------------------

    def _run(self, coroutine):
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        d = Deferred(lambda d: future.cancel())

        def deliver(future):
            if d.called:
                return
            if future.cancelled():
                d.errback(Failure(asyncio.CancelledError()))
            elif future.exception() is not None:
                d.errback(Failure(future.exception()))
            else:
                d.callback(future.result())

        future.add_done_callback(lambda f: self._reactor.callFromThread(deliver, f))
        return d.addTimeout(self._timeout + 5, self._reactor)

    def _check(self, connection, request):
        header = request.headers.get("Authorization")
        identity = request.path.rstrip("/").rsplit("/", 1)[-1]
        self._reactor.callFromThread(self.authorizations.append, header)
        wanted = self.passwords.get(identity)
        if wanted is None:
            return None
        expected = "Basic " + base64.b64encode(f"{identity}:{wanted}".encode()).decode()
        if header != expected:
            return connection.respond(401, "Unauthorized\n")
        return None

    async def _serve(self, connection):
        identity = connection.request.path.rstrip("/").rsplit("/", 1)[-1]
        handler = _Handler(identity, connection, response_timeout=self._timeout, logger=_QUIET)
        handler.office = self
        self._handlers[identity] = handler
        try:
            await handler.start()
        except Exception:
            pass
        finally:
            if self._handlers.get(identity) is handler:
                del self._handlers[identity]

    async def _start(self, port):
        self._server = await serve(self._serve, "127.0.0.1", port, subprotocols=["ocpp1.6"],
                                   process_request=self._check, ping_interval=None,
                                   compression=None)
        return self._server.sockets[0].getsockname()[1]

    def start(self, port=0):
        """
        Listen (again); port 0 the first time, then its own port.

        @return: a Deferred firing with the port.
        """
        def listening(port):
            self.port = port
            return port

        return self._run(self._start(port or self.port or 0)).addCallback(listening)

    async def _stop(self):
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def stop(self):
        """
        Stop listening and close every connection (the back office is down).
        """
        return self._run(self._stop())

    async def _drop(self, identity):
        handler = self._handlers.get(identity)
        if handler is not None:
            await handler._connection.close()

    def drop(self, identity):
        """
        Close the connection of C{identity} (it reconnects by itself).
        """
        return self._run(self._drop(identity))

    def connected(self, identity):
        """
        @return: whether C{identity} is connected now.
        """
        return identity in self._handlers

    def call(self, identity, payload):
        """
        Send a CALL to a connected charger (C{ocpp.v16.call} dataclass).

        @return: a Deferred firing with the C{call_result} dataclass, or
            failing with the library's exception for a CALLERROR.
        """
        return self._run(self._handlers[identity].call(payload, suppress=False))

    def close(self):
        """
        Stop, end the loop, join its thread.
        """
        def end(result):
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(self._timeout)
            if not self._thread.is_alive():
                self._loop.close()
            return result

        async def shutdown():
            await self._stop()
            await self._loop.shutdown_default_executor()

        return self._run(shutdown()).addBoth(end)


def start_backoffice(testcase, timeout=10, reactor=None):
    """
    Start a L{TestBackOffice} on a free loopback port, closed at cleanup.

    @return: a Deferred firing with it, listening.
    """
    if not backoffice_available():
        raise RuntimeError(SKIP_REASON)
    if reactor is None:
        from twisted.internet import reactor
    office = TestBackOffice(reactor, timeout)
    testcase.addCleanup(office.close)
    return office.start().addCallback(lambda port: office)
