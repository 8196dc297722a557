# -*- test-case-name: tests.test_demo -*-
"""
The demo a newcomer can watch (C{make demo}): the service, a bus-less knxd
and one simulated charger, DEMO1, that charges in a loop.

    .venv/bin/python tools/demo.py [--cycle 60] [--cycles N] [--duration S]
                                   [--web-port 8080] [--ocpp-port 8016]

One process drives the reactor: knxd (C{dummy:} bus, Unix socket only) and
the service (C{python -m twisted xxterocpp --config ...}: the twistd
plugin that C{make run} starts) are child processes, the charger is the test suite's
simulator (C{tests/sim.py}) running in here. Every cycle the charger goes
Available -> Preparing -> StartTransaction -> Charging, sends MeterValues
with a rising energy register and about 16 A on three phases, then
StopTransaction -> Finishing -> Available and pauses. The service bridges all
of it to the bus, where C{knxtool groupsocketlisten} shows it, and to the
status page.

Everything listens on 127.0.0.1 or a Unix socket in a temporary directory
that holds the configuration and the state, and is removed at the end.
Ctrl-C (or C{--cycles}/C{--duration}) stops the charger, the service and
knxd, in that order.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the simulator and the knxd fixture live in tests/; run from anywhere
sys.path.insert(0, ROOT)

from twisted.internet import defer, endpoints, error, protocol, task  # noqa: E402
from twisted.logger import (  # noqa: E402
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.python.failure import Failure  # noqa: E402

from tests.knxdtest import KnxdProcess  # noqa: E402
from tests.sim import connect_charger  # noqa: E402

IDENTITY = "DEMO1"
TAG = "DEMO-CARD"

#: The group addresses of DEMO1, those of the shipped example configuration
#: (see docs/knx-objects.md for what each object carries).
GROUP_ADDRESSES = {
    "status": "9/7/0",
    "error_code": "9/7/100",
    "charging": "9/7/1",
    "reserve": "9/7/3",
    "availability": "9/7/4",
    "unlock": "9/7/6",
    "energy": "9/7/10",
    "start_time": "9/7/20",
    "end_time": "9/7/30",
    "current": "9/7/40",
    "max_current": "9/7/41",
    "reset": "9/7/101",
}

CONFIG = """\
# The configuration of tools/demo.py (make demo), written for one run.
[ocpp]
interface = "127.0.0.1"
port = {ocpp_port}

[knx]
knxd = {knxd}

[web]
interface = "127.0.0.1"
port = {web_port}

[storage]
database = {database}

[[tag]]
id = "{tag}"

[[charger]]
id = "{identity}"
max_current = 32
normal_current = 16
phases = 3
allowed_tags = ["{tag}"]

[charger.knx]
{addresses}
"""

#: Seconds the car is plugged in before the session starts, and plugged in
#: after it ended; the rest of a cycle is charging (60 %) and a pause.
PREPARING_S = 2.0
FINISHING_S = 2.0
CHARGING_SHARE = 0.6
#: The shortest cycle that still has a few seconds of charging.
MIN_CYCLE_S = 10.0
#: Seconds between two MeterValues while charging.
METER_INTERVAL_S = 5.0
#: Per-phase currents of successive MeterValues: about 16 A, moving by more
#: than the 0.2 A that makes the bridge write the current object again.
CURRENTS_A = (16.0, 15.6, 16.3, 15.8, 16.4, 16.1)
VOLTAGE_V = 230.0
PHASES = 3


def say(text):
    """
    One line of the demo's own, beside the service's (prefixed C{service |}).
    """
    print(f"demo    | {text}", flush=True)


class PortTaken(Exception):
    """
    A port the demo should listen on is in use.
    """


def claim_port(port):
    """
    C{port} when it is free on 127.0.0.1, a free port for 0.

    The probe sets C{SO_REUSEADDR} as Twisted's listening ports do, so a
    port in TIME_WAIT counts as free and one that something listens on
    (on 127.0.0.1 or on every address) does not.

    @raise PortTaken: C{port} is in use.
    """
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind(("127.0.0.1", port))
        return probe.getsockname()[1]
    except OSError as e:
        raise PortTaken(f"port {port} on 127.0.0.1 is in use ({e.strerror})")
    finally:
        probe.close()


def write_config(directory, knxd_socket, ocpp_port, web_port):
    """
    Write the demo's configuration into C{directory}.

    @return: its path.
    """
    path = os.path.join(directory, "demo.toml")
    # json.dumps quotes a path as a TOML basic string would
    text = CONFIG.format(
        ocpp_port=ocpp_port,
        web_port=web_port,
        knxd=json.dumps(f"unix:{knxd_socket}"),
        database=json.dumps(os.path.join(directory, "state.sqlite3")),
        identity=IDENTITY,
        tag=TAG,
        addresses="\n".join(f'{key} = "{ga}"' for key, ga in GROUP_ADDRESSES.items()),
    )
    with open(path, "w") as f:
        f.write(text)
    return path


class ServiceProcess(protocol.ProcessProtocol):
    """
    The service as a child process, its log lines passed on as
    C{service | ...}.

    @ivar ended: fires with the exit reason (an exception) when it is gone.
    """

    def __init__(self):
        self.ended = defer.Deferred()
        self._partial = b""

    def start(self, reactor, config_path):
        """
        Run C{python -m twisted xxterocpp --config CONFIG_PATH}.
        """
        # the repository's twisted/plugins/ must be on the path for the plugin
        env = dict(os.environ, PYTHONPATH=ROOT)
        # in a session of its own, like knxd: a terminal's Ctrl-C reaches the
        # demo only, which stops the charger, the service and knxd in turn
        args = [shutil.which("setsid"), sys.executable, "-m", "twisted", "--log-format=text",
                "xxterocpp", "--config", config_path]
        reactor.spawnProcess(self, args[0], args, env=env, path=ROOT)

    def outReceived(self, data):
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            print("service | " + line.decode("utf-8", "replace"), flush=True)

    errReceived = outReceived

    def processEnded(self, reason):
        if self._partial:
            self.outReceived(b"\n")
        self.ended.callback(reason.value)

    def stop(self, reactor, timeout=10.0):
        """
        SIGTERM, then SIGKILL if it is still there after C{timeout} seconds.

        @return: a Deferred firing once it has exited.
        """
        if self.transport is None or self.ended.called:
            return defer.succeed(None)
        done = defer.Deferred()
        self.ended.addBoth(lambda reason: (done.callback(None), reason)[1])
        self._signal("TERM")
        kill = reactor.callLater(timeout, self._signal, "KILL")
        done.addBoth(lambda _: kill.active() and kill.cancel())
        return done

    def _signal(self, name):
        try:
            self.transport.signalProcess(name)
        except error.ProcessExitedAlready:
            pass


@defer.inlineCallbacks
def wait_for_port(reactor, port, timeout=30.0):
    """
    Poll until something accepts connections on 127.0.0.1:C{port}: the
    service, since the port was free before it started.

    @raise RuntimeError: C{timeout} passed.
    """
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)
    for _ in range(int(timeout / 0.2)):
        try:
            probe = yield endpoints.connectProtocol(endpoint, protocol.Protocol())
        except error.ConnectError:
            yield task.deferLater(reactor, 0.2, lambda: None)
        else:
            probe.transport.loseConnection()
            return
    raise RuntimeError(f"the service did not listen on port {port} within {timeout:g} s")


class Meter:
    """
    The simulated charger's energy meter: a register that only rises.

    @ivar register_wh: the energy register in Wh.
    @ivar samples: how many samples were taken.
    """

    def __init__(self):
        self.register_wh = 0.0
        self.samples = 0

    def next_currents(self):
        """
        The per-phase currents of the next sample, in A.
        """
        amps = CURRENTS_A[self.samples % len(CURRENTS_A)]
        self.samples += 1
        return [amps] * PHASES

    def advance(self, seconds, currents):
        """
        Count C{seconds} of charging at C{currents}.
        """
        self.register_wh += sum(currents) * VOLTAGE_V * seconds / 3600

    @property
    def wh(self):
        """
        The register as the integer Wh that OCPP's meterStart/meterStop carry.
        """
        return int(self.register_wh)


class DemoCharger:
    """
    DEMO1's behaviour over a connected L{tests.sim.SimCharger}; a
    RemoteStopTransaction (the page's Stop button, 0 written to the
    charging object) ends its session early.

    @ivar cycle_s: the length of one cycle in seconds.
    """

    def __init__(self, charger, reactor, cycle_s):
        self.charger = charger
        self.cycle_s = cycle_s
        self.meter = Meter()
        self._reactor = reactor
        self._heartbeat = None
        self._transaction = None
        self._remote_stop_requested = False
        self._wake = None
        charger.handlers["RemoteStopTransaction"] = self._remote_stop

    def _sleep(self, seconds):
        return task.deferLater(self._reactor, seconds, lambda: None)

    def _charging_pause(self, seconds):
        """
        Sleep C{seconds}, or until a RemoteStopTransaction came.
        """
        wake = self._wake = defer.Deferred()
        timer = self._reactor.callLater(seconds, wake.callback, None)
        return wake.addBoth(lambda result: (timer.active() and timer.cancel(), result)[1])

    def _remote_stop(self, payload):
        if self._transaction is None or payload.get("transactionId") != self._transaction:
            return {"status": "Rejected"}
        say(f"{IDENTITY} RemoteStopTransaction {self._transaction}: Accepted")
        self._remote_stop_requested = True
        # after the answer has gone out, as a charger would
        self._reactor.callLater(0, self._wake_up)
        return {"status": "Accepted"}

    def _wake_up(self):
        if self._wake is not None and not self._wake.called:
            self._wake.callback(None)

    @defer.inlineCallbacks
    def boot(self):
        """
        BootNotification, then heartbeats at the interval the service asks
        for and the connector Available.
        """
        conf = yield self.charger.boot(vendor="xxterocpp", model="demo charger",
                                       chargePointSerialNumber=IDENTITY)
        if conf["status"] != "Accepted":
            raise RuntimeError(f"BootNotification answered {conf['status']}")
        say(f"{IDENTITY} booted, heartbeat every {conf['interval']} s")
        self._heartbeat = task.LoopingCall(self.charger.heartbeat)
        self._heartbeat.clock = self._reactor
        # a lost connection ends the cycles too, which say so
        self._heartbeat.start(conf["interval"], now=False).addErrback(lambda _: None)
        yield self._status("Available")

    def stop(self):
        """
        Stop the heartbeats.
        """
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()

    def _status(self, status, text=None):
        say(f"{IDENTITY} StatusNotification {status}" + (f" ({text})" if text else ""))
        return self.charger.status(1, status)

    @defer.inlineCallbacks
    def run(self, cycles=None):
        """
        Charge once per cycle, C{cycles} times or forever.
        """
        done = 0
        while cycles is None or done < cycles:
            yield self.cycle()
            done += 1
            # only what the charger keeps for tests' assertions grows
            del self.charger.frames[:]
            del self.charger.calls_received[:]

    @defer.inlineCallbacks
    def cycle(self):
        """
        One session: plug in, authorise, charge with MeterValues, stop,
        unplug, pause.
        """
        charging_s = self.cycle_s * CHARGING_SHARE
        yield self._status("Preparing", "car plugged in")
        yield self._sleep(PREPARING_S)
        info = yield self.charger.authorize(TAG)
        say(f"{IDENTITY} Authorize {TAG}: {info['idTagInfo']['status']}")
        started = yield self.charger.start_transaction(1, TAG, self.meter.wh)
        transaction = self._transaction = started["transactionId"]
        say(f"{IDENTITY} StartTransaction: transaction {transaction}, meter {self.meter.wh} Wh")
        yield self._status("Charging")
        elapsed = 0.0
        while elapsed < charging_s and not self._remote_stop_requested:
            currents = self.meter.next_currents()
            yield self.charger.meter_values(
                1, transaction, energy_wh=self.meter.wh, currents=currents,
                power_w=int(sum(currents) * VOLTAGE_V))
            say(f"{IDENTITY} MeterValues {self.meter.wh} Wh, {currents[0]} A x {PHASES}")
            began = self._reactor.seconds()
            yield self._charging_pause(min(METER_INTERVAL_S, charging_s - elapsed))
            step = self._reactor.seconds() - began
            self.meter.advance(step, currents)
            elapsed += step
        reason = "Remote" if self._remote_stop_requested else "EVDisconnected"
        self._transaction, self._remote_stop_requested = None, False
        yield self.charger.stop_transaction(transaction, self.meter.wh, reason=reason)
        say(f"{IDENTITY} StopTransaction ({reason}): transaction {transaction}, "
            f"meter {self.meter.wh} Wh")
        yield self._status("Finishing", "car still plugged in")
        yield self._sleep(FINISHING_S)
        yield self._status("Available", "car unplugged")
        pause = self.cycle_s - PREPARING_S - charging_s - FINISHING_S
        if pause > 0:
            yield self._sleep(pause)


class Demo:
    """
    knxd, the service and DEMO1, started and stopped together.

    @ivar directory: the temporary directory of the configuration, the
        state and the knxd socket.
    @ivar problem: why the demo ended early, for a person; L{None} when it
        ran as asked.
    """

    def __init__(self, reactor, options):
        self.options = options
        self.directory = tempfile.mkdtemp(prefix="xxterocpp-demo-")
        self.knxd = KnxdProcess(os.path.join(self.directory, "knxd.sock"), reactor,
                                session=True)
        self.service = ServiceProcess()
        self.charger = None
        self.problem = None
        self._reactor = reactor
        self._running = None
        self._stopping = None

    def start(self):
        """
        Start everything and charge.

        @return: a Deferred firing when the cycles are done (or
            L{defer.CancelledError} when L{stop} came first), failing when
            a part could not start.
        """
        self._running = self._run()
        return self._running

    @defer.inlineCallbacks
    def _run(self):
        options = self.options
        ocpp_port = claim_port(options.ocpp_port)
        web_port = claim_port(options.web_port)
        config = write_config(self.directory, self.knxd.socket_path, ocpp_port, web_port)
        yield self.knxd.start()
        self.service.start(self._reactor, config)
        self.service.ended.addCallback(self._service_ended)
        web = f"http://127.0.0.1:{web_port}/"
        # the service binds the OCPP port before the web one, in one go; a
        # probe of the OCPP port would count as a charger that gave up
        yield wait_for_port(self._reactor, web_port)
        self._banner(web, ocpp_port, config)
        charger = yield connect_charger(f"ws://127.0.0.1:{ocpp_port}/", IDENTITY,
                                        reactor=self._reactor)
        self.charger = DemoCharger(charger, self._reactor, options.cycle)
        yield self.charger.boot()
        yield self.charger.run(options.cycles)

    @property
    def stopping(self):
        """
        Whether L{stop} was called: what fails from then on is no news.
        """
        return self._stopping is not None

    def _service_ended(self, reason):
        if not self.stopping:
            self.problem = f"the service exited ({reason}); its log is above"
            # whatever the cycles wait for, they are over
            self._running.cancel()
        return reason

    def _banner(self, web, ocpp_port, config):
        addresses = GROUP_ADDRESSES
        lines = [
            f"xxterocpp demo: one simulated charger, {IDENTITY}, charging every {self.options.cycle:g} s",
            f"  status page:   {web}",
            f"  watch the bus: knxtool groupsocketlisten local:{self.knxd.socket_path}",
            f"                 {addresses['status']} status (0 Available, 1 Preparing, 2 Charging, "
            f"5 Finishing), {addresses['charging']} charging, {addresses['current']} current (A), "
            f"{addresses['energy']} energy (Wh); docs/knx-objects.md",
            f"  stop charging: knxtool groupswrite local:{self.knxd.socket_path} "
            f"{addresses['charging']} 0   (or Stop on the page)",
            f"  OCPP:          ws://127.0.0.1:{ocpp_port}/{IDENTITY}",
            f"  configuration: {config}",
            "  Ctrl-C stops the demo.",
        ]
        for line in lines:
            say(line)

    @defer.inlineCallbacks
    def stop(self):
        """
        Stop the charger, then the service, then knxd; remove the directory.
        Safe to call more than once and at any stage of L{start}.
        """
        if self.stopping:
            yield self._stopping
            return
        self._stopping = defer.Deferred()
        try:
            if self._running is not None and not self._running.called:
                self._running.cancel()
            if self.charger is not None:
                self.charger.stop()
                yield self.charger.charger.close()
            yield self.service.stop(self._reactor)
            try:
                yield self.knxd.stop()
            except AssertionError:
                # knxd ignored SIGTERM (KnxdProcess's timeout says so)
                yield self.knxd.kill()
            shutil.rmtree(self.directory, ignore_errors=True)
            say("stopped")
        finally:
            self._stopping.callback(None)


def parse_args(argv):
    """
    The demo's command line.
    """
    parser = argparse.ArgumentParser(
        prog="tools/demo.py",
        description="The service, a bus-less knxd and one simulated charger that "
                    "charges in a loop.")
    parser.add_argument("--cycle", type=float, default=60.0, metavar="S",
                        help="seconds of one charging cycle (default 60, at least 10)")
    parser.add_argument("--cycles", type=int, default=None, metavar="N",
                        help="stop after N cycles (default: run until Ctrl-C)")
    parser.add_argument("--duration", type=float, default=None, metavar="S",
                        help="stop after S seconds")
    parser.add_argument("--web-port", type=int, default=8080, metavar="PORT",
                        help="port of the status page on 127.0.0.1 (default 8080, 0 = any free one)")
    parser.add_argument("--ocpp-port", type=int, default=8016, metavar="PORT",
                        help="OCPP port on 127.0.0.1 (default 8016, 0 = any free one)")
    options = parser.parse_args(argv)
    if options.cycle < MIN_CYCLE_S:
        parser.error(f"--cycle must be at least {MIN_CYCLE_S:g} s")
    if options.cycles is not None and options.cycles < 1:
        parser.error("--cycles must be at least 1")
    return options


def stop_on_signals(reactor):
    """
    Ctrl-C (SIGINT), SIGTERM and SIGHUP (the terminal closed) stop the
    reactor, once: Twisted's own handlers (SIGINT, SIGTERM) log a traceback
    for a second Ctrl-C while the demo is stopping.
    """

    def stop():
        try:
            reactor.stop()
        except error.ReactorNotRunning:
            pass

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda signum, frame: reactor.callFromThread(stop))


def main(reactor, *argv):
    """
    Run the demo until its cycles or duration are over, or Ctrl-C.
    """
    options = parse_args(argv)
    for program, package in (("knxd", "knxd"), ("setsid", "util-linux")):
        if shutil.which(program) is None:
            raise SystemExit(f"demo: {program} is not installed; make demo installs it "
                             f"(apt-get install {package})")
    # the demo's own warnings and errors only; the service logs for itself
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(
        textFileLogObserver(sys.stderr),
        [LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)])],
        redirectStandardIO=False)
    demo = Demo(reactor, options)
    # when the reactor stops (by a signal), the children stop first
    reactor.addSystemEventTrigger("before", "shutdown", demo.stop)
    reactor.callWhenRunning(stop_on_signals, reactor)
    running = demo.start()
    if options.duration is not None:
        timer = reactor.callLater(options.duration, running.cancel)
        running.addBoth(lambda result: (timer.active() and timer.cancel(), result)[1])

    def ended(result):
        if isinstance(result, Failure) and not result.check(defer.CancelledError) \
                and not demo.stopping:
            demo.problem = result.getErrorMessage()
            if result.check(PortTaken):
                demo.problem += (": stop what uses it or choose another with --web-port/--ocpp-port"
                                 " (make demo DEMO_ARGS=\"--web-port 8081\")")
        if demo.problem is not None:
            say(f"failed: {demo.problem}")
        return demo.stop().addCallback(exit_code)

    def exit_code(_):
        if demo.problem is not None:
            raise SystemExit(1)

    return running.addBoth(ended)


if __name__ == "__main__":
    task.react(main, sys.argv[1:])
