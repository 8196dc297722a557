"""
The cost of forwarding chargers to a back office (docs/upstream.md): CPU per
charger call with and without an upstream for 200 chargers, and the state
store's writes per charger-hour of charging.

In process, on the real reactor and a real state database: the chargers'
calls go through the OCPP handlers (L{xxterocpp.ocpp.handlers.dispatch})
straight from here, and the back office is the in-memory one of the tests
(L{tests.upstream_memory}), answering at once; sockets and the WebSocket
layer are left out on purpose (they cost the same per frame on both sides,
and the service-level figures are bench/run.py's). Run with the
interpreter of the stack to measure:

    .venv/bin/python bench/upstream.py
    env PATH=/usr/sbin:/usr/bin:/sbin:/bin python3 bench/upstream.py
"""

import json
import os
import sys
import tempfile
import time
from functools import partial

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from twisted.internet import defer, reactor, task  # noqa: E402

from tests.upstream_memory import MemoryBackOffice, MemoryLink  # noqa: E402
from xxterocpp.config import parse_config  # noqa: E402
from xxterocpp.control import Controller  # noqa: E402
from xxterocpp.domain.central import CentralSystem  # noqa: E402
from xxterocpp.ocpp import messages as m  # noqa: E402
from xxterocpp.ocpp.handlers import dispatch  # noqa: E402
from xxterocpp.store import Store  # noqa: E402
from xxterocpp.upstream import Upstream  # noqa: E402

CHARGERS = 200
#: MeterValues per charger in the CPU run.
ROUNDS = 20
#: A session of an hour with the sample interval the controller sets (60 s).
HOUR = 60

CHARGER = """
[[charger]]
id = "CP{n}"
max_current = 16
{upstream}
"""


def config(n, upstream, database):
    table = '[charger.upstream]\nurl = "ws://bo.invalid/ocpp"' if upstream else ""
    text = (f'[ocpp]\nmax_chargers = {n}\n[knx]\nknxd = ""\n'
            f'[storage]\ndatabase = "{database}"\n')
    text += "".join(CHARGER.format(n=i, upstream=table) for i in range(n))
    return parse_config(text)


def request(action, payload):
    return m.decode(m.ACTIONS[action].request, payload, lenient=True)[0]


def meter_values(tx, n):
    return request("MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": [
        {"timestamp": f"2030-06-01T{12 + n // 60:02d}:{n % 60:02d}:00Z", "sampledValue": [
            {"value": str(1000 + n * 100), "measurand": "Energy.Active.Import.Register"},
            {"value": "16.0", "measurand": "Current.Import", "phase": "L1"}]}]})


class TimedLink(MemoryLink):
    """
    The in-memory link, with the CPU the back office itself spends on our
    frames counted apart (it is not the controller's).
    """

    office_cpu = 0.0

    def _to_office(self, text):
        started = time.thread_time()
        super()._to_office(text)
        TimedLink.office_cpu += time.thread_time() - started


class Setup:
    """
    The domain, controller, store and (with C{upstream}) the back office
    adapter with every uplink connected and accepted.
    """

    def __init__(self, n, upstream):
        self.directory = tempfile.mkdtemp(prefix="xxterocpp-bench-")
        database = os.path.join(self.directory, "state.sqlite3")
        self.config = config(n, upstream, database)
        self.store = Store(database, reactor)
        self.store.open()
        self.central = CentralSystem(self.config, self.store, reactor)
        self.central.load()
        self.controller = Controller(self.central, reactor)
        self.relay = None
        if upstream:
            self.office = MemoryBackOffice(reactor)
            self.upstream = Upstream(self.central, self.controller, self.store, reactor)
            self.upstream.link_factory = partial(TimedLink, self.office)
            self.upstream.startService()
            self.relay = self.upstream.handle
            for charger_id, uplink in self.upstream.uplinks.items():
                uplink.save("boot", {"chargePointVendor": "V", "chargePointModel": "M"})
                uplink.link.start()

    def call(self, charger_id, action, req):
        return defer.maybeDeferred(dispatch, self.central, charger_id, action, req, self.relay)

    @defer.inlineCallbacks
    def settle(self):
        # Until the store committed and the back office answered everything
        # queued.
        for _ in range(10000):
            yield task.deferLater(reactor, 0.002, lambda: None)
            if self.relay is None or all(u.outbox.depth == 0 and u.accepted
                                         for u in self.upstream.uplinks.values()):
                return

    def count_queue_rows(self):
        """
        Count, in C{queue_rows}, each row the store inserts into or deletes
        from the back office's queue from now on (temporary triggers on
        the store's connection, in its worker thread).

        @return: a Deferred firing once they are in place.
        """
        self.queue_rows = []

        def install():
            db = self.store._worker.db
            db.create_function("queue_row", 0, lambda: self.queue_rows.append(1))
            for event in ("INSERT", "DELETE"):
                db.execute(f"CREATE TEMP TRIGGER count_{event.lower()} AFTER {event} ON"
                           " upstream_queue BEGIN SELECT queue_row(); END")

        return self.store._batches.read(install)

    @defer.inlineCallbacks
    def close(self):
        if self.relay is not None:
            self.upstream.stopService()
        self.controller.shutdown()
        yield self.store.close()


@defer.inlineCallbacks
def cpu_per_call(upstream):
    """
    @return: CPU seconds per charger call, the store's thread included, the
        back office's own work not, for Start, ROUNDS MeterValues and Stop
        of CHARGERS chargers at once.
    """
    setup = Setup(CHARGERS, upstream)
    yield setup.settle()
    ids = [f"CP{i}" for i in range(CHARGERS)]
    TimedLink.office_cpu = 0.0
    started = time.process_time()
    starts = yield defer.gatherResults([setup.call(c, "StartTransaction", request(
        "StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 1000,
                             "timestamp": "2030-06-01T12:00:00Z"})) for c in ids])
    txs = [s.transaction_id for s in starts]
    for n in range(ROUNDS):
        yield defer.gatherResults([setup.call(c, "MeterValues", meter_values(tx, n))
                                   for c, tx in zip(ids, txs)])
    yield defer.gatherResults([setup.call(c, "StopTransaction", request(
        "StopTransaction", {"transactionId": tx, "meterStop": 9000,
                            "timestamp": "2030-06-01T13:00:00Z"})) for c, tx in zip(ids, txs)])
    yield setup.settle()
    cpu = time.process_time() - started - TimedLink.office_cpu
    yield setup.close()
    return cpu / (CHARGERS * (ROUNDS + 2))


@defer.inlineCallbacks
def writes_per_hour(upstream):
    """
    @return: C{(commits, queue rows)} of one charger's hour-long session,
        each call answered (and, with an upstream, forwarded) before the
        next one, as the sample interval spreads them: the rows are those
        inserted into and deleted from the back office's queue on disk (a
        lazy row delivered before its commit never gets there).
    """
    setup = Setup(1, upstream)
    yield setup.settle()
    yield setup.count_queue_rows()
    commits = setup.store.commits
    start = yield setup.call("CP0", "StartTransaction", request(
        "StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 1000,
                             "timestamp": "2030-06-01T12:00:00Z"}))
    yield setup.settle()
    for n in range(HOUR):
        yield setup.call("CP0", "MeterValues", meter_values(start.transaction_id, n))
        yield setup.settle()
    yield setup.call("CP0", "StopTransaction", request(
        "StopTransaction", {"transactionId": start.transaction_id, "meterStop": 9000,
                            "timestamp": "2030-06-01T13:00:00Z"}))
    yield setup.settle()
    yield task.deferLater(reactor, 0.1, lambda: None)
    commits = setup.store.commits - commits
    rows = len(setup.queue_rows)
    yield setup.close()
    return commits, rows


@defer.inlineCallbacks
def main():
    results = {"python": sys.version.split()[0]}
    import twisted

    results["twisted"] = twisted.__version__
    for upstream in (False, True):
        key = "with upstream" if upstream else "without"
        cpu = yield cpu_per_call(upstream)
        commits, rows = yield writes_per_hour(upstream)
        results[key] = {"cpu_us_per_call": round(cpu * 1e6, 1),
                        "commits_per_charger_hour": commits,
                        "queue_rows_per_charger_hour": rows}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    task.react(lambda reactor: main())
