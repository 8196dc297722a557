"""
Child process of L{tests.test_store}'s crash test: store 50 transactions,
print C{committed} once their Deferreds fired, then keep writing meter values
until the test kills it with SIGKILL.

Usage: C{python store_crash_child.py DATABASE}
"""

import sys
from datetime import datetime, timezone
from itertools import count

from twisted.internet import reactor, task
from twisted.internet.defer import gatherResults

from xxterocpp.store import Store, TransactionRecord

START = datetime(2024, 5, 1, 8, 0, tzinfo=timezone.utc)


def main(path):
    store = Store(path, reactor)
    store.open()
    inserted = gatherResults(
        [
            store.insert_transaction(
                TransactionRecord(
                    n, "CP1", 1, "TAG", START, 0, None, "Accepted", f"start-{n}"
                )
            )
            for n in range(1, 51)
        ]
    )
    energy = count()

    def storm():
        for n in range(1, 51):
            store.update_meter(n, next(energy), START)

    def committed(ignored):
        print("committed", flush=True)
        # Keep batches in flight so that the kill lands in the middle of one.
        task.LoopingCall(storm).start(0.001)

    inserted.addCallback(committed)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1])
