# -*- test-case-name: tests.test_store -*-
"""
L{Store}: what the rest of the service reads and writes. Its life cycle and
its batches are here; its reads and writes, with their SQL, are in two
parts: L{Transactions} (transactions, orphan stops) and L{State} (connector
statuses, unknown chargers, settings, tags). The parts are mixins, so that
the store stays the one object every part of the service is given, with
the methods they call on it.
"""

import os

from ._batches import LAZY_WRITE_DELAY, Batcher
from ._state import State
from ._transactions import Transactions
from ._worker import Worker


class Store(Transactions, State):
    """
    The SQLite state store.

    @ivar path: the database file.
    """

    def __init__(
        self, path, reactor, clock=None, busy_timeout=5.0, lazy_delay=LAZY_WRITE_DELAY,
        wall=None,
    ):
        """
        @param path: the database file; it and its directory are created on
            first open.
        @param reactor: runs the batches (C{callLater}, C{callFromThread},
            system event triggers).
        @param clock: schedules the batches of lazy writes and the retries
            after a failed commit; defaults to C{reactor}.
        @param busy_timeout: seconds the worker waits for another process's
            lock on the file before the commit counts as failed.
        @param lazy_delay: seconds a meter reading, a connector status or an
            unknown charger's attempt may wait in memory before it is
            committed (sooner when another write is committed).
        @param wall: the system clock (POSIX seconds) of the times the store
            notes itself (when a stop was received); defaults to
            C{reactor.seconds}.
        """
        self.path = os.fspath(path)
        self._wall = wall or reactor.seconds
        self._worker = Worker(self.path, busy_timeout)
        self._batches = Batcher(
            self._worker, reactor, reactor if clock is None else clock, lazy_delay
        )
        # What the file holds, or will hold once the lazy writes are
        # committed: the latest reading of each open transaction as
        # (Wh, text), and the last status of each connector.
        self._meters = {}
        self._statuses = {}

    @property
    def commits(self):
        """
        The number of batches committed so far.
        """
        return self._batches.commits

    @property
    def _db(self):
        # The worker's connection, for tests that run SQL on it through
        # _read: only usable in the worker thread.
        return self._worker.db

    # -- life cycle --------------------------------------------------------

    def open(self, close_at_shutdown=True):
        """
        Create or migrate the database and start the worker thread. Called
        once at service start. A damaged file is moved aside and a fresh one
        created, with one line in the log.

        @param close_at_shutdown: whether the store closes itself when the
            reactor shuts down (a "before" trigger of its own). False for an
            owner that closes it in its own stop, after the writes of the
            stop: triggers run in the order they were added, and the
            store's would refuse the writes of an owner's trigger behind it.
        @raise StoreError: the database cannot be opened or is newer than
            this program; the message says what to do.
        """
        self._batches.start(close_at_shutdown)

    def close(self):
        """
        Commit what is queued (one last attempt), close the database and stop
        the worker thread.

        @return: a L{Deferred} that fires with L{None} when done.
        """
        return self._batches.close()

    # -- what the parts share ------------------------------------------------

    def _load(self, sql):
        return self._batches.call_blocking(self._worker.select, sql, ())

    def _read(self, query, *args):
        """
        Run C{query(*args)} in the worker thread once the writes queued so
        far are committed (or failed).
        """
        return self._batches.read(query, *args)

    def _write(self, key, apply, *args, lazy=False, merge=None, quiet=False):
        return self._batches.write(key, apply, *args, lazy=lazy, merge=merge, quiet=quiet)
