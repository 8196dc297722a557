"""
The write budget: bytes the service process writes to disk per charger-hour
of charging at the default 60 s MeterValues interval, from its C{write_bytes}
in /proc/PID/io.

    python3 bench/flash.py WORKDIR [CHARGERS] [SPEED] [upstream]

The real service runs as its own process under libfaketime (Debian's
faketime package), its clocks and timers sped up SPEED times (60: an hour
takes a minute), so that its own timers (the store's lazy writes) fire
as they would in an hour of charging. CHARGERS (default 2) simulated
chargers (tests/sim.py) each charge through one simulated hour: Preparing,
StartTransaction, Charging, a MeterValues (energy, three currents, power)
every simulated minute, offset from each other as real chargers are,
StopTransaction, Finishing, Available. Two figures, per charger-hour:
what the process writes while every charger is charging (from the last
StartTransaction to the first StopTransaction: the MeterValues' cost, the
write budget), and what it writes in the whole hour, from the first
StartTransaction until the store has written everything of that hour (the
store's lazy delay after the last stop), sessions included.

With C{upstream}, every charger is forwarded to a back office
(docs/upstream.md): L{BackOffice}, a minimal OCPP 1.6J central system on
loopback in this process, that accepts the boot and answers every call at
once, a StartTransaction with an id of its own. The charging window then
begins once the back office has answered the StartTransaction (its
delivery, committed at once, is the session's cost, as the start itself
is), and the hour ends once it has the StopTransaction and the store
wrote everything after it.

The kernel writes dirty pages back within about 30 s; on the compressed
timescale the bench does it for the database files itself, by fsync'ing
them every simulated minute, so that no page is counted once for several
real minutes' worth of commits.

Prints one JSON object: charging_bytes_per_charger_hour,
hour_bytes_per_charger, chargers, speed, meter_values, upstream (the calls
the back office got, per action, or null), close_bytes (written when the
service stops: the last checkpoint of the write-ahead log). Run by
bench/run.py.
"""

import glob
import json
import os
import resource
import sys
import time
from datetime import datetime, timedelta, timezone

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import defer, task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.service import ServiceProcess  # noqa: E402
from tests.sim import connect_charger  # noqa: E402
from xxterocpp.store import LAZY_WRITE_DELAY  # noqa: E402

#: Debian's libfaketime, in the machine's multiarch directory.
LIBFAKETIME = next(iter(glob.glob("/usr/lib/*/faketime/libfaketime.so.1")), None)

#: Simulated seconds between two MeterValues of a charger (the interval
#: the central system configures).
INTERVAL = 60

#: MeterValues per charger in the hour.
SAMPLES = 3600 // INTERVAL

#: Simulated seconds until everything written before is on disk: the store
#: commits meter readings and statuses at most LAZY_WRITE_DELAY late.
SETTLE = LAZY_WRITE_DELAY + INTERVAL

CONFIG = """
[ocpp]
interface = "127.0.0.1"
port = 0
ping_interval = 0
call_timeout = 30
max_chargers = {n}

[knx]
knxd = ""

[web]
port = 0

[storage]
database = "{database}"
"""

POWER_W = 11000

#: A charger's table with a back office (format: the port).
UPSTREAM = '''
[charger.upstream]
url = "ws://127.0.0.1:{port}/ocpp"
'''


class _OfficeProtocol(WebSocketServerProtocol):
    def onConnect(self, request):
        self.identity = request.path.rsplit("/", 1)[-1]
        return "ocpp1.6" if "ocpp1.6" in request.protocols else None

    def onMessage(self, payload, isBinary):
        message = json.loads(payload)
        if message[0] != 2:
            return
        unique_id, action = message[1], message[2]
        self.sendMessage(json.dumps([3, unique_id, self.factory.office.answer(action)]).encode())
        self.factory.office.received(self.identity, action)


class BackOffice:
    """
    A back office on loopback that accepts every charger and answers every
    call at once.

    @ivar calls: C{{(identity, action): how many came}}.
    """

    def __init__(self, reactor):
        self.calls = {}
        self._next_id = 900000
        self._waiting = []
        factory = WebSocketServerFactory(protocols=["ocpp1.6"])
        factory.protocol = _OfficeProtocol
        factory.office = self
        self.port = reactor.listenTCP(0, factory, interface="127.0.0.1")

    def answer(self, action):
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        if action == "BootNotification":
            return {"status": "Accepted", "currentTime": now, "interval": 3600}
        if action == "Heartbeat":
            return {"currentTime": now}
        if action == "StartTransaction":
            self._next_id += 1
            return {"transactionId": self._next_id, "idTagInfo": {"status": "Accepted"}}
        if action in ("Authorize", "StopTransaction"):
            return {"idTagInfo": {"status": "Accepted"}}
        return {}

    def received(self, identity, action):
        key = (identity, action)
        self.calls[key] = self.calls.get(key, 0) + 1
        waiting, self._waiting = self._waiting, []
        for wanted, count, d in waiting:
            if self.calls.get(wanted, 0) >= count:
                d.callback(None)
            else:
                self._waiting.append((wanted, count, d))

    def answered(self, identity, action, count=1):
        """
        @return: a Deferred firing once C{count} C{action}s of C{identity}
            were answered.
        """
        if self.calls.get((identity, action), 0) >= count:
            return defer.succeed(None)
        d = defer.Deferred()
        self._waiting.append(((identity, action), count, d))
        return d

    def summary(self):
        """
        @return: C{{action: how many came}}, of all chargers.
        """
        actions = {}
        for (identity, action), count in self.calls.items():
            actions[action] = actions.get(action, 0) + count
        return dict(sorted(actions.items()))


def write_bytes(pid):
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    raise RuntimeError(f"no write_bytes in /proc/{pid}/io")


def children_write_bytes():
    """
    @return: what the reaped child processes wrote, in bytes (the kernel
        counts it in 512-byte blocks).
    """
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_oublock * 512


def write_back(database):
    """
    Clean the dirty pages of the database files, as the kernel's writeback
    would have done by the next simulated minute.
    """
    for name in (database, database + "-wal", database + "-shm"):
        try:
            fd = os.open(name, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class Timescale:
    """
    The service's sped-up clock, seen from this (real-time) process.
    """

    def __init__(self, speed):
        self.speed = speed
        self.real0 = time.time()

    def now(self):
        """
        @return: the simulated instant, as an OCPP dateTime.
        """
        elapsed = (time.time() - self.real0) * self.speed
        now = datetime.fromtimestamp(self.real0, timezone.utc) + timedelta(seconds=elapsed)
        return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"

    def sleep(self, reactor, simulated_seconds):
        return task.deferLater(reactor, simulated_seconds / self.speed, lambda: None)


class Window:
    """
    The service's writes while every charger is charging.
    """

    def __init__(self, pid, chargers):
        self.pid, self.chargers = pid, chargers
        self.charging = 0
        self.begin = self.end = None

    def started(self):
        self.charging += 1
        if self.charging == self.chargers:
            self.begin = (time.time(), write_bytes(self.pid))

    def stopping(self):
        if self.end is None:
            self.end = (time.time(), write_bytes(self.pid))

    def per_charger_hour(self, speed):
        (t0, b0), (t1, b1) = self.begin, self.end
        return (b1 - b0) / self.chargers / ((t1 - t0) * speed / 3600)


@defer.inlineCallbacks
def charge(reactor, clock, window, cp, offset, office=None):
    """
    One charger's hour: start, a MeterValues every INTERVAL, stop.

    @param office: the L{BackOffice} it is forwarded to, or None.
    """
    yield clock.sleep(reactor, offset)
    yield cp.status(1, "Preparing", timestamp=clock.now())
    started = yield cp.start_transaction(1, "BENCH", 0, timestamp=clock.now())
    tx = started["transactionId"]
    yield cp.status(1, "Charging", timestamp=clock.now())
    if office is None:
        window.started()
    else:
        # Once the back office answered the start and the store had some
        # simulated seconds to commit its delivery.
        office.answered(cp.identity, "StartTransaction").addCallback(
            lambda ignored: clock.sleep(reactor, 10)).addCallback(
            lambda ignored: window.started())
    for sample in range(1, SAMPLES + 1):
        yield clock.sleep(reactor, INTERVAL)
        yield cp.meter_values(1, tx, energy_wh=POWER_W * sample * INTERVAL // 3600,
                              currents=(16, 16, 16), power_w=POWER_W, timestamp=clock.now())
    window.stopping()
    yield cp.stop_transaction(tx, POWER_W * SAMPLES * INTERVAL // 3600, timestamp=clock.now())
    yield cp.status(1, "Finishing", timestamp=clock.now())
    yield cp.status(1, "Available", timestamp=clock.now())
    if office is not None:
        yield office.answered(cp.identity, "StopTransaction")


@defer.inlineCallbacks
def main(reactor, workdir, chargers="2", speed="60", upstream=""):
    n, speed = int(chargers), float(speed)
    if LIBFAKETIME is None:
        raise SystemExit("pending: libfaketime is missing (apt install faketime)")
    if upstream not in ("", "upstream"):
        raise SystemExit(f"unknown variant {upstream!r}: upstream or nothing")
    office = BackOffice(reactor) if upstream else None
    table = UPSTREAM.format(port=office.port.getHost().port) if office else ""
    database = os.path.join(workdir, "flash.sqlite3")
    config = os.path.join(workdir, "flash.toml")
    with open(config, "w") as f:
        f.write(CONFIG.format(n=n, database=database))
        f.write('\n[[tag]]\nid = "BENCH"\n')
        f.write("".join(f'\n[[charger]]\nid = "CP{i:04d}"\nmax_current = 32\n{table}'
                        for i in range(n)))
    # Only the service's process gets the sped-up clock: ServiceProcess
    # passes this process's environment on.
    os.environ.update(LD_PRELOAD=LIBFAKETIME, FAKETIME=f"+0 x{speed:g}")
    service = ServiceProcess(config)
    try:
        yield service.start()
    finally:
        del os.environ["LD_PRELOAD"], os.environ["FAKETIME"]
    pid = service.transport.pid
    clock = Timescale(speed)
    sims = []
    try:
        for i in range(n):
            cp = yield connect_charger(service.url, f"CP{i:04d}")
            sims.append(cp)
            yield cp.boot()
            yield cp.status(1, "Available", timestamp=clock.now())
        # The controller's set-up after the boots, and what the store
        # writes of it, are not the hour's.
        for _ in range(int(SETTLE // INTERVAL)):
            yield clock.sleep(reactor, INTERVAL)
            write_back(database)
        before = write_bytes(pid)
        window = Window(pid, n)
        hour = defer.gatherResults(
            [charge(reactor, clock, window, cp, INTERVAL * i / n, office)
             for i, cp in enumerate(sims)],
            consumeErrors=True)
        ticks = 0
        while not hour.called or ticks < SETTLE // INTERVAL:
            ticks = ticks + 1 if hour.called else 0
            yield clock.sleep(reactor, INTERVAL)
            write_back(database)
        yield hour
        during = write_bytes(pid) - before
        reaped = children_write_bytes()
        total_before_close = write_bytes(pid)
        for cp in sims:
            yield cp.close()
        sims = []
        yield service.stop()
        close_bytes = children_write_bytes() - reaped - total_before_close
    finally:
        for cp in sims:
            cp.close()
        yield service.stop()
        if office is not None:
            yield office.port.stopListening()
    print(json.dumps({"charging_bytes_per_charger_hour": window.per_charger_hour(speed),
                      "hour_bytes_per_charger": during / n, "chargers": n, "speed": speed,
                      "meter_values": n * SAMPLES,
                      "upstream": office.summary() if office else None,
                      "close_bytes": close_bytes}))


if __name__ == "__main__":
    task.react(main, sys.argv[1:])
