"""
Run the real service for integration tests: in-process on the test's
reactor (L{start_service}), optionally on a test-driven clock
(L{ClockedReactor}), or as a separate twistd process that can be
SIGKILLed (L{ServiceProcess}). All listen on loopback, on free ports.
"""

import os
import re
import sys

from twisted.internet import defer, protocol, reactor
from twisted.internet.task import Clock, LoopingCall, deferLater

from xxterocpp.config import load_config
from xxterocpp.store import Store
from xxterocpp.tap import XxterocppService

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: The sections every test configuration starts with: loopback, free ports,
#: no pings, a short call timeout; KNX at C{{knxd}} ("" = none), room for
#: C{{max_chargers}} chargers (4 unless given).
LOOPBACK_CONFIG = """
[ocpp]
interface = "127.0.0.1"
port = 0
heartbeat_interval = 120
call_timeout = 5
ping_interval = 0
max_chargers = {max_chargers}

[knx]
knxd = "{knxd}"

[web]
port = 0

[storage]
database = "{database}"
"""

#: A configuration for tests: loopback, free ports, no KNX, no pings.
BASE_CONFIG = LOOPBACK_CONFIG + """

[[tag]]
id = "04A1B2C3"

[[tag]]
id = "BLOCKED1"
status = "Blocked"

[[tag]]
id = "OLDTAG"
expiry = "2020-01-01T00:00:00Z"

[[tag]]
id = "CHILD"
parent = "FAMILY"

[[charger]]
id = "CP1"
max_current = 32
normal_current = 16

[[charger]]
id = "TWIN"
connector = 1
max_current = 16
allowed_tags = ["04A1B2C3", "family"]

[[charger]]
id = "TWIN"
connector = 2
max_current = 16
allowed_tags = ["04A1B2C3", "family"]

[[charger]]
id = "RDAM 123"
max_current = 16
password = "{password}"
"""

#: The Basic-auth password of the C{"RDAM 123"} charger in L{BASE_CONFIG}:
#: 20 bytes written as 40 hex digits, as the security white paper does it.
PASSWORD = "0001020304050607FFFFFFFFFFFFFFFFFFFFFFFF"


def write_config(testcase, text=BASE_CONFIG, **values):
    """
    Write a configuration file in a fresh temporary directory.

    @return: its path.
    """
    directory = os.path.abspath(testcase.mktemp())
    os.makedirs(directory)
    values.setdefault("database", os.path.join(directory, "state.sqlite3"))
    values.setdefault("password", PASSWORD)
    values.setdefault("knxd", "")
    values.setdefault("max_chargers", 4)
    path = os.path.join(directory, "xxterocpp.toml")
    with open(path, "w") as f:
        f.write(text.format(**values))
    return path


class ClockedReactor:
    """
    The global reactor's sockets and threads with the time of a L{Clock}:
    the service and simulated chargers talk over real loopback WebSockets
    while the test moves time on (L{advance}), so a 60 s timer takes no
    time and no test waits for the wall clock. What is due now runs at
    once: a pump on the global reactor advances the clock by 0 every few
    milliseconds (store commits, answers sent on the next turn).

    Autobahn's own timers (pings, closing handshakes) keep to the wall
    clock.

    @ivar clock: the L{Clock}, from 2026-01-01 UTC.
    """

    def __init__(self, testcase, start=1767225600.0):
        self.clock = Clock()
        self.clock.advance(start)
        pump = LoopingCall(self.clock.advance, 0)
        pump.start(0.002)
        testcase.addCleanup(pump.stop)

    def __getattr__(self, name):
        return getattr(reactor, name)

    def callLater(self, delay, f, *args, **kwargs):
        return self.clock.callLater(delay, f, *args, **kwargs)

    def seconds(self):
        return self.clock.seconds()

    def getDelayedCalls(self):
        return self.clock.getDelayedCalls()

    def advance(self, seconds):
        """
        Move time on by C{seconds}, running every timer due by then.
        """
        self.clock.advance(seconds)


@defer.inlineCallbacks
def start_service(testcase, config_path=None, on=None, wall=None):
    """
    Start the whole service in-process, on the global reactor.

    @param on: the reactor to run it on instead (a L{ClockedReactor}).
    @param wall: with C{on}, the service's system clock instead of C{on}'s
        (a test that steps it).
    @return: a Deferred firing with the running L{XxterocppService}, with
        C{url} (C{ws://127.0.0.1:PORT/}) set; it is stopped at cleanup.
    """
    if config_path is None:
        config_path = write_config(testcase)
    config = load_config(config_path)
    testcase._xxterocpp_database = config.storage.database
    if on is None:
        service = XxterocppService(config, reactor)
    else:
        # The test's time is the service's wall clock too.
        service = XxterocppService(config, on, wall=wall or on.seconds)
    service.startService()
    testcase.addCleanup(lambda: service.running and service.stopService())
    port = yield service.ocpp.when_listening()
    service.url = f"ws://127.0.0.1:{port.getHost().port}/"
    return service


def set_up_over(service, charger_id):
    """
    @return: whether the set-up after C{charger_id}'s boot is over (none
        queued or running: its calls answered or timed out), for a test
        that counts calls or frames, or moves a fake clock on, from then.
    """
    setup = service.controller._parts.setup
    return charger_id not in setup.running and charger_id not in setup.queue


def reopen_store(testcase):
    """
    Open the state database of the last L{start_service} anew, as the next
    start of the service would.
    """
    store = Store(testcase._xxterocpp_database, reactor)
    store.open()
    testcase.addCleanup(store.close)
    return store


class _Output(protocol.ProcessProtocol):
    def __init__(self, process):
        self.process = process

    def outReceived(self, data):
        self.process._output(data)

    errReceived = outReceived

    def processEnded(self, reason):
        self.process._ended(reason)


#: How L{ServiceProcess} starts the service by default: twistd's plugin.
TWIST = ("-m", "twisted", "--log-format=text", "xxterocpp")

#: As the systemd unit starts it (L{xxterocpp.__main__}).
MAIN = ("-m", "xxterocpp")


def unit_wrapper():
    """
    @return: what the systemd unit's C{ExecStart=} runs the interpreter
        with: the words before C{/usr/bin/python3}.
    """
    with open(os.path.join(ROOT, "debian", "xxterocpp.service")) as f:
        for line in f:
            if line.startswith("ExecStart="):
                words = line.strip().partition("=")[2].split()
                return tuple(words[:words.index("/usr/bin/python3")])
    raise AssertionError("no ExecStart= in debian/xxterocpp.service")


class ServiceProcess:
    """
    The service as its own process (C{python -m twisted xxterocpp}, or
    C{command}), for tests that kill it.

    @ivar output: everything it printed.
    @ivar url: the OCPP URL once listening.
    @ivar web_url: the web interface's URL (C{http://127.0.0.1:PORT}) once
        listening, or None.
    """

    _LISTENING = re.compile(rb"OCPP server \(wss?\) listening on \S+ port (\d+)")
    _WEB = re.compile(rb"web interface listening on \S+ port (\d+)")

    def __init__(self, config_path, env=None, command=TWIST, wrapper=()):
        """
        @param env: environment variables for the process, beside the
            test's own.
        @param command: the interpreter's arguments before C{--config}.
        @param wrapper: a program and its arguments that runs the
            interpreter (L{unit_wrapper}), or none.
        """
        self.config_path = config_path
        self.env = env or {}
        self.command = command
        self.wrapper = tuple(wrapper)
        self.output = b""
        self.url = None
        self.web_url = None
        self._waiting = []
        self._ended_waiters = []
        self.transport = None
        self.exit = None

    def start(self):
        """
        @return: a Deferred firing once the OCPP port listens.
        """
        self.output, self.url, self.web_url, self.exit = b"", None, None, None
        env = dict(os.environ, PYTHONPATH=ROOT)
        env.update(self.env)
        args = [*self.wrapper, sys.executable, *self.command, "--config", self.config_path]
        self.transport = reactor.spawnProcess(_Output(self), args[0], args, env=env, path=ROOT)
        d = defer.Deferred()
        self._waiting.append(d)
        return d

    def _output(self, data):
        self.output += data
        web = self._WEB.search(self.output)
        if web and self.web_url is None:
            self.web_url = f"http://127.0.0.1:{int(web.group(1))}"
        match = self._LISTENING.search(self.output)
        if match and self.url is None:
            self.url = f"ws://127.0.0.1:{int(match.group(1))}/"
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.callback(self.url)

    def _ended(self, reason):
        self.exit = reason.value
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(RuntimeError(f"service exited: {self.output.decode(errors='replace')}"))
        ended, self._ended_waiters = self._ended_waiters, []
        for d in ended:
            d.callback(reason.value)

    def signal(self, name):
        """
        Send a signal (C{"KILL"}, C{"TERM"}, C{"HUP"}).

        @return: for KILL and TERM, a Deferred firing when it has exited.
        """
        d = defer.Deferred()
        if name in ("KILL", "TERM"):
            if self.exit is not None:
                return defer.succeed(self.exit)
            self._ended_waiters.append(d)
        else:
            d.callback(None)
        self.transport.signalProcess(name)
        return d

    def stop(self):
        if self.transport is not None and self.exit is None:
            return self.signal("TERM")
        return defer.succeed(None)

    def wait_for_output(self, text, timeout=10):
        """
        @return: a Deferred firing once C{text} (bytes) was printed.
        """

        @defer.inlineCallbacks
        def poll():
            for _ in range(int(timeout / 0.05)):
                if text in self.output:
                    return True
                yield deferLater(reactor, 0.05, lambda: None)
            raise AssertionError(f"{text!r} not printed; output:\n{self.output.decode()}")

        return poll()


def kill_on_cleanup(testcase, process):
    """
    Make sure a L{ServiceProcess} is gone when the test ends.
    """

    def cleanup():
        if process.transport is not None and process.exit is None:
            return process.signal("KILL")

    testcase.addCleanup(cleanup)


__all__ = ["LOOPBACK_CONFIG", "BASE_CONFIG", "PASSWORD", "ClockedReactor", "write_config", "start_service",
           "set_up_over", "reopen_store",
           "ServiceProcess",
           "kill_on_cleanup"]
