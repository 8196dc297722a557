"""
Benchmark scenario 3, the KNX path: a StatusNotification sent by a charger
until the status group telegram (DPT 5.010 on 9/7/0) is seen on a real,
bus-less knxd by another bus client. The service runs as its own process.

    python3 bench/knx_path.py WORKDIR [COUNT]

Prints one JSON object: p50_ms, p99_ms, max_ms, count. Run by bench/run.py.
"""

import json
import os
import sys
import time

from twisted.internet import defer, task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.knxdtest import KnxdProcess, connect_peer  # noqa: E402
from tests.service import ServiceProcess  # noqa: E402
from tests.sim import connect_charger  # noqa: E402

CONFIG = """
[ocpp]
interface = "127.0.0.1"
port = 0
ping_interval = 0
max_chargers = 2

[knx]
knxd = "{knxd}"

[web]
port = 0

[storage]
database = "{database}"

[[charger]]
id = "CP0000"
max_current = 32

[charger.knx]
status = "9/7/0"
"""


class _Cleanups:
    def __init__(self):
        self.cleanups = []

    def addCleanup(self, f, *args):
        self.cleanups.append((f, args))

    @defer.inlineCallbacks
    def run(self):
        for f, args in reversed(self.cleanups):
            try:
                yield f(*args)
            except Exception:
                pass


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


@defer.inlineCallbacks
def main(reactor, workdir, count="300"):
    if not os.path.exists(os.path.join(ROOT, "xxterocpp", "knx", "bridge.py")):
        raise SystemExit("pending: the KNX bridge (xxterocpp/knx/bridge.py) is not there yet")
    cleanups = _Cleanups()
    try:
        knxd = KnxdProcess(os.path.join(workdir, "knxd.socket"), reactor)
        yield knxd.start()
        cleanups.addCleanup(knxd.stop)
        peer = yield connect_peer(cleanups, knxd, reactor)
        config = os.path.join(workdir, "knx-path.toml")
        with open(config, "w") as f:
            f.write(CONFIG.format(knxd=knxd.endpoint,
                                  database=os.path.join(workdir, "knx-path.sqlite3")))
        service = ServiceProcess(config)
        cleanups.addCleanup(service.stop)
        yield service.start()
        cp = yield connect_charger(service.url, "CP0000")
        cleanups.addCleanup(cp.close)
        yield cp.boot()
        # The bridge publishes the state it has once its knxd link is up.
        yield cp.status(1, "Available")
        yield peer.wait_for("9/7/0", "write", timeout=10)
        yield task.deferLater(reactor, 0.5, lambda: None)
        while True:  # drain what the link-up published
            try:
                yield peer.wait_for("9/7/0", "write", timeout=0.2)
            except AssertionError:
                break
        latencies = []
        for i in range(int(count)):
            status = "Charging" if i % 2 == 0 else "SuspendedEV"
            seen = peer.wait_for("9/7/0", "write", timeout=5)
            t0 = time.perf_counter()
            answered = cp.status(1, status)
            yield seen
            latencies.append((time.perf_counter() - t0) * 1000)
            yield answered
        print(json.dumps({"count": len(latencies), "p50_ms": percentile(latencies, 50),
                          "p99_ms": percentile(latencies, 99), "max_ms": max(latencies)}))
    finally:
        yield cleanups.run()


if __name__ == "__main__":
    task.react(main, sys.argv[1:])
