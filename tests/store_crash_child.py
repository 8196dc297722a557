"""
Child process of L{tests.test_store}'s crash test: store 50 transactions,
print C{committed} once their Deferreds fired, then keep writing meter values
of those and inserting more transactions, printing C{inserted N} when one is
committed, until the test kills it with SIGKILL. Lazy writes are committed
every 10 ms here, so that batches of both kinds are in flight.

Usage: C{python store_crash_child.py DATABASE}
"""

import sys
from datetime import datetime, timezone
from itertools import count

from twisted.internet import reactor, task
from twisted.internet.defer import gatherResults

from xxterocpp.store import Store, TransactionRecord

START = datetime(2024, 5, 1, 8, 0, tzinfo=timezone.utc)


def started(n):
    return TransactionRecord(n, "CP1", 1, "TAG", START, 0, None, "Accepted", f"start-{n}")


def main(path):
    store = Store(path, reactor, lazy_delay=0.01)
    store.open()
    inserted = gatherResults([store.insert_transaction(started(n)) for n in range(1, 51)])
    energy = count()
    more = count(51)

    def storm():
        for n in range(1, 51):
            store.update_meter(n, next(energy), START)
        n = next(more)
        store.insert_transaction(started(n)).addCallback(
            lambda ignored: print(f"inserted {n}", flush=True))

    def committed(ignored):
        print("committed", flush=True)
        # Keep batches in flight so that the kill lands in the middle of one.
        task.LoopingCall(storm).start(0.001)

    inserted.addCallback(committed)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1])
