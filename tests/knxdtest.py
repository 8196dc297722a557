# -*- test-case-name: tests.test_knxd -*-
"""
Test fixtures: a real, bus-less knxd per test, and an in-process bus peer.

knxd runs unprivileged with the C{dummy} driver: telegrams from one client
reach every other client but never come back to the sender, so tests watch
what the code under test puts on the bus through a second connection, a
L{BusPeer}.

Usage in a L{twisted.trial.unittest.TestCase}::

    knxd = yield start_knxd(self)
    peer = yield connect_peer(self, knxd)
    link = KnxdLink(knxd.endpoint, reactor)
    ...
    telegram = yield peer.wait_for("9/7/0", "write")
"""

import os
import shutil
import socket
import tempfile

from twisted.internet import defer, endpoints, protocol, task
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest

from xxterocpp.knx.address import GroupAddress
from xxterocpp.knx.knxd import KnxdProtocol

__all__ = [
    "BusPeer",
    "KnxdProcess",
    "LinkWatcher",
    "TelegramRecorder",
    "connect_peer",
    "start_knxd",
]


def _global_reactor():
    from twisted.internet import reactor

    return reactor


def _fork(d):
    """
    A new L{Deferred} that fires with C{d}'s result, leaving C{d}'s chain alone
    (and tolerating its own cancellation).
    """
    forked = defer.Deferred()

    def fire(result):
        if not forked.called:
            forked.callback(None if isinstance(result, Failure) else result)
        return result

    d.addBoth(fire)
    return forked


def _with_timeout(d, timeout, clock, what):
    """
    Fail C{d} with an L{AssertionError} naming C{what} after C{timeout} seconds.
    """

    def timed_out(failure):
        failure.trap(defer.TimeoutError)
        raise AssertionError(f"timed out after {timeout} s waiting for {what()}")

    return d.addTimeout(timeout, clock).addErrback(timed_out)


class _Output(protocol.ProcessProtocol):
    def __init__(self):
        self.output = b""
        self.ended = defer.Deferred()

    def outReceived(self, data):
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason):
        # the exception, not the Failure: callback(Failure) would be an error
        self.ended.callback(reason.value)


class KnxdProcess:
    """
    A knxd with a Unix socket and a dummy bus, run as a child process.

    @ivar socket_path: the knxd socket.
    @ivar endpoint: the client endpoint string for it, C{"unix:<path>"}.
    @ivar clients: the size of knxd's client-address pool (C{-E}).
    @ivar session: run knxd in a session of its own (C{setsid}), so that a
        terminal's Ctrl-C reaches only the parent, which stops knxd when it
        is ready to (C{tools/demo.py}).
    """

    def __init__(self, socket_path, reactor=None, clients=16, session=False):
        self.socket_path = socket_path
        self.endpoint = f"unix:{socket_path}"
        self.clients = clients
        self.session = session
        self._reactor = reactor or _global_reactor()
        self._process = None

    @property
    def running(self):
        """
        Whether the knxd process is alive.
        """
        return self._process is not None

    @property
    def output(self):
        """
        What knxd printed so far (bytes), for failure messages.
        """
        return self._process.output if self._process else b""

    @defer.inlineCallbacks
    def start(self, timeout=5.0):
        """
        Start knxd and wait until it accepts connections.

        @return: a L{Deferred} firing with this object.
        """
        assert self._process is None, "knxd is already running"
        # a SIGKILLed knxd leaves its socket file behind; remove it so that
        # waiting for the file means waiting for the new knxd
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        knxd = shutil.which("knxd")
        # -e: knxd's own address; -E: one address per client connection
        args = [knxd, "-e", "0.0.1", "-E", f"0.0.2:{self.clients}"]
        args += ["-u", self.socket_path, "-b", "dummy:"]
        if self.session:
            # setsid execs knxd in place (a spawned child leads no process
            # group), so the signals sent to this process reach knxd
            args = [shutil.which("setsid")] + args
        process = self._process = _Output()
        process.ended.addCallback(self._ended, process)
        self._reactor.spawnProcess(process, args[0], args, env=dict(os.environ))
        for _ in range(int(timeout / 0.01)):
            if process.ended.called:
                raise RuntimeError(f"knxd exited at start-up: {process.output!r}")
            if self._accepts_connections():
                return self
            yield task.deferLater(self._reactor, 0.01, lambda: None)
        yield self.kill()
        raise RuntimeError(
            f"knxd did not open {self.socket_path} within {timeout} s: {process.output!r}"
        )

    def _accepts_connections(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.socket_path)
        except OSError:
            return False
        finally:
            s.close()
        return True

    def _ended(self, reason, process):
        if self._process is process:
            self._process = None
        return reason

    def _signal(self, name, timeout):
        process = self._process
        if process is None:
            return defer.succeed(None)
        process.transport.signalProcess(name)
        return _with_timeout(
            _fork(process.ended), timeout, self._reactor, lambda: f"knxd to exit on SIG{name}"
        )

    def stop(self, timeout=5.0):
        """
        SIGTERM: knxd exits cleanly and removes its socket.

        @return: a L{Deferred} firing with the exit reason.
        """
        return self._signal("TERM", timeout)

    def kill(self, timeout=5.0):
        """
        SIGKILL: knxd dies at once and leaves a stale socket file.

        @return: a L{Deferred} firing with the exit reason.
        """
        return self._signal("KILL", timeout)

    @defer.inlineCallbacks
    def start_hidden(self, timeout=5.0):
        """
        Start knxd on a socket path of its own: clients of L{endpoint}
        (a link retrying) do not find it until L{reveal}, so that a peer
        connected meanwhile is on the bus before they are.

        @return: a L{Deferred} firing with the client endpoint string of
            the hidden path.
        """
        shown, self.socket_path = self.socket_path, self.socket_path + ".hidden"
        try:
            yield self.start(timeout)
        finally:
            self.socket_path, self._hidden = shown, self.socket_path
        return f"unix:{self._hidden}"

    def reveal(self):
        """
        Move the socket of L{start_hidden} to L{socket_path} (in place of
        a stale one a SIGKILL left): clients of L{endpoint} find knxd now.
        """
        os.replace(self._hidden, self.socket_path)

    @defer.inlineCallbacks
    def restart(self):
        """
        Stop knxd if it runs, then start it again on the same socket.
        """
        yield self.stop()
        yield self.start()
        return self


def start_knxd(testcase, reactor=None, clients=16):
    """
    Start a knxd for C{testcase}; it is killed and its directory removed at cleanup.

    @raise SkipTest: knxd is not installed.
    @return: a L{Deferred} firing with the running L{KnxdProcess}.
    """
    if shutil.which("knxd") is None:
        raise SkipTest("knxd is not installed (apt-get install knxd)")
    # Unix socket paths are limited to ~107 bytes: trial's temp dirs are too deep
    directory = tempfile.mkdtemp(prefix="knxd-")
    knxd = KnxdProcess(os.path.join(directory, "knxd.sock"), reactor, clients)
    testcase.addCleanup(shutil.rmtree, directory, True)
    testcase.addCleanup(knxd.kill)
    return knxd.start()


class TelegramRecorder:
    """
    Records telegrams (use it as a telegram observer) and waits for them.

    @ivar telegrams: every L{Telegram} received, in order.
    """

    def __init__(self, reactor=None):
        self._reactor = reactor or _global_reactor()
        self.telegrams = []
        self._unclaimed = []
        self._waiters = []

    def __call__(self, telegram):
        self.telegrams.append(telegram)
        for waiter in self._waiters:
            if waiter[0](telegram):
                self._waiters.remove(waiter)
                waiter[1].callback(telegram)
                return
        self._unclaimed.append(telegram)

    def wait_for(self, dst, kind="write", timeout=5.0):
        """
        The next telegram of C{kind} to C{dst} that no earlier C{wait_for}
        returned, including ones already received.

        @param dst: a L{GroupAddress} or its text.
        @param kind: C{"read"}, C{"response"} or C{"write"}.
        @return: a L{Deferred} firing with the L{Telegram}, or failing with
            an L{AssertionError} listing what was received after C{timeout}.
        """
        if isinstance(dst, str):
            dst = GroupAddress.parse(dst)

        def matches(telegram):
            return telegram.dst == dst and telegram.kind == kind

        for telegram in self._unclaimed:
            if matches(telegram):
                self._unclaimed.remove(telegram)
                return defer.succeed(telegram)
        waiter = (matches, defer.Deferred(lambda d: self._waiters.remove(waiter)))
        self._waiters.append(waiter)
        return _with_timeout(
            waiter[1],
            timeout,
            self._reactor,
            lambda: f"{kind} to {dst}; received {self.telegrams}",
        )


class BusPeer(TelegramRecorder):
    """
    Another knxd client that sees, and sends, what the code under test does not.

    @ivar protocol: the L{KnxdProtocol}.
    """

    def __init__(self, reactor=None):
        super().__init__(reactor)
        self.protocol = KnxdProtocol(self._reactor, self)

    def write(self, dst, value):
        """
        Send a GroupValueWrite (L{int} small value or L{bytes}).
        """
        self.protocol.write(dst, value)

    def respond(self, dst, value):
        """
        Send a GroupValueResponse.
        """
        self.protocol.respond(dst, value)

    def read(self, dst):
        """
        Send a GroupValueRead.
        """
        self.protocol.read(dst)

    def close(self):
        """
        Disconnect from knxd.

        @return: a L{Deferred} firing once disconnected.
        """
        d = _fork(self.protocol.closed).addCallback(lambda _: None)
        if self.protocol.transport is not None and not self.protocol.closed.called:
            self.protocol.transport.loseConnection()
        return d


@defer.inlineCallbacks
def connect_peer(testcase, knxd, reactor=None, timeout=5.0):
    """
    Connect a L{BusPeer} to C{knxd} and open its group socket; it is closed at cleanup.

    @param knxd: a L{KnxdProcess}, or a client endpoint string.
    @return: a L{Deferred} firing with the L{BusPeer}.
    """
    reactor = reactor or _global_reactor()
    description = getattr(knxd, "endpoint", knxd)
    peer = BusPeer(reactor)
    endpoint = endpoints.clientFromString(reactor, description)
    yield endpoints.connectProtocol(endpoint, peer.protocol)
    testcase.addCleanup(peer.close)
    yield _with_timeout(peer.protocol.opened, timeout, reactor, lambda: "the peer's group socket")
    return peer


class LinkWatcher:
    """
    Records the up/down history of a L{KnxdLink} and waits for changes.

    @ivar history: every state reported, in order (L{True} = up).
    """

    def __init__(self, link, reactor=None):
        self._reactor = reactor or _global_reactor()
        self._link = link
        self.history = []
        self._waiters = []
        link.add_link_observer(self._changed)

    def _changed(self, up):
        self.history.append(up)
        waiters, self._waiters = self._waiters, []
        for wanted, d in waiters:
            if wanted == up:
                d.callback(up)
            else:
                self._waiters.append((wanted, d))

    def wait(self, up, timeout=10.0):
        """
        Fire when the link is (already, or becomes) up or down.
        """
        if self._link.connected == up:
            return defer.succeed(up)
        d = defer.Deferred(lambda d: self._waiters.remove((up, d)))
        self._waiters.append((up, d))
        state = "up" if up else "down"
        return _with_timeout(d, timeout, self._reactor, lambda: f"the knxd link to be {state}")
