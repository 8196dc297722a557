# -*- test-case-name: tests.test_store -*-
"""
The reactor thread's side of the store: writes queued during one reactor
turn go to the worker thread as one batch (one commit, one fsync), values
that only matter last are coalesced, and a batch the database refuses is
kept and retried with backoff.
"""

import sqlite3
import threading
from itertools import count

import attr
from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from .errors import StoreError

# The package's name: operators read and filter the store's lines by it.
log = Logger(namespace="xxterocpp.store")

_FIRST_RETRY = 1.0
_MAX_RETRY = 60.0


@attr.s(slots=True)
class _Write:
    """
    One queued write: C{apply(connection, *args)} in the worker thread, and
    the L{Deferred}s waiting for it to be committed (several when coalesced).
    """

    apply = attr.ib()
    args = attr.ib()
    waiters = attr.ib(factory=list)


class Batcher:
    """
    The queue of writes in front of a L{Worker}, and the one thread it runs
    in.

    @ivar commits: number of batches committed so far.
    """

    def __init__(self, worker, reactor, clock):
        """
        @param worker: the L{xxterocpp.store._worker.Worker}.
        @param reactor: runs the batches (C{callLater}, C{callFromThread},
            system event triggers).
        @param clock: schedules retries after a failed commit.
        """
        self.commits = 0
        self._worker = worker
        self._path = worker.path
        self._reactor = reactor
        self._clock = clock
        self._pool = ThreadPool(1, 1, name="xxterocpp-store")
        self._shutdown_trigger = None
        self._keys = count()
        self._pending = {}
        self._reads_after_flush = []
        self._flush_call = None
        self._inflight = None
        self._failing = False
        self._retry_delay = _FIRST_RETRY
        self._closing = False
        self._closed = None

    # -- life cycle --------------------------------------------------------

    def start(self):
        """
        Start the worker thread and connect: see L{Store.open}.
        """
        self._pool.start()
        # Stop the worker even if nobody calls close(): a leftover non-daemon
        # thread would keep the process alive after the reactor stopped.
        self._shutdown_trigger = self._reactor.addSystemEventTrigger(
            "before", "shutdown", self.close
        )
        try:
            self.call_blocking(self._worker.connect)
        except StoreError:
            self._stop_pool()
            raise
        except (sqlite3.Error, OSError) as e:
            self._stop_pool()
            raise StoreError(
                f"cannot open the state database {self._path}: {e}; check that"
                " its directory exists and is writable by the service user"
            ) from e

    def close(self):
        """
        Commit what is queued, disconnect and stop the thread: see
        L{Store.close}.
        """
        if self._closed is True:
            return succeed(None)
        waiter = Deferred()
        if self._closed is None:
            self._closed = [waiter]
            self._close().addCallback(self._fire_closed)
        else:
            self._closed.append(waiter)
        return waiter

    def _fire_closed(self, ignored):
        waiters, self._closed = self._closed, True
        for d in waiters:
            d.callback(None)

    @inlineCallbacks
    def _close(self):
        self._closing = True
        if not self._pool.started:
            return
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        if self._inflight is not None:
            yield self._inflight
        # Until empty, unless the database fails.
        while self._pending:
            committed = yield self._flush()
            if not committed:
                break
        if self._pending:
            log.error(
                "State store {path}: shutting down with {count} writes not"
                " committed; they are lost",
                path=self._path, count=len(self._pending),
            )
        try:
            yield deferToThreadPool(self._reactor, self._pool, self._worker.disconnect)
        except sqlite3.Error as e:
            log.error("State store {path}: closing failed: {e}", path=self._path, e=e)
        finally:
            self._stop_pool()

    def _stop_pool(self):
        if self._shutdown_trigger is not None:
            self._reactor.removeSystemEventTrigger(self._shutdown_trigger)
            self._shutdown_trigger = None
        self._pool.stop()

    # -- the queue ---------------------------------------------------------

    def write(self, key, apply, *args):
        """
        Queue C{apply(db, *args)} for the next batch.

        @param key: L{None}, or a key that coalesces: a write replaces the
            one queued under the same key, and takes over its waiters.
        @return: a L{Deferred} that fires with L{None} once committed, or
            fails with L{StoreError}.
        """
        if self._closing:
            return fail(StoreError(f"state store {self._path} is closed"))
        if key is None:
            key = next(self._keys)
        write = _Write(apply, args)
        superseded = self._pending.pop(key, None)
        if superseded is not None:
            write.waiters = superseded.waiters
        self._pending[key] = write
        d = Deferred()
        write.waiters.append(d)
        if self._flush_call is None and self._inflight is None:
            # callLater(0): everything written during this reactor turn ends
            # up in the same batch.
            self._flush_call = self._reactor.callLater(0, self._flush)
        return d

    def read(self, query, *args):
        """
        Run C{query(*args)} in the worker after the writes queued so far, so
        that it sees them; while commits are failing it does not wait for
        the retry.

        @return: a L{Deferred} firing with what C{query} returned.
        """
        if self._closing:
            return fail(StoreError(f"state store {self._path} is closed"))
        if self._pending and not self._failing:
            d = Deferred()
            self._reads_after_flush.append((d, query, args))
            return d
        return deferToThreadPool(self._reactor, self._pool, query, *args)

    def call_blocking(self, function, *args):
        """
        Run C{function(*args)} in the worker thread and wait for it: only
        for service start, when blocking the reactor thread harms nobody.

        @return: what C{function} returned.
        @raise StoreError: the store is not open.
        """
        if self._closing or not self._pool.started:
            raise StoreError(f"state store {self._path} is not open")
        done = threading.Event()
        outcome = []

        def finished(ok, result):
            outcome.append((ok, result))
            done.set()

        self._pool.callInThreadWithCallback(finished, function, *args)
        done.wait()
        ok, result = outcome[0]
        if not ok:
            result.raiseException()
        return result

    # -- batches -----------------------------------------------------------

    def _flush(self):
        self._flush_call = None
        batch, self._pending = self._pending, {}
        self._inflight = deferToThreadPool(
            self._reactor, self._pool, self._worker.commit, list(batch.values())
        ).addBoth(self._flushed, batch)
        # The pool has a single thread that takes jobs in order: these reads
        # run right after the batch.
        self._submit_reads()
        return self._inflight

    def _submit_reads(self):
        reads, self._reads_after_flush = self._reads_after_flush, []
        for d, query, args in reads:
            deferToThreadPool(self._reactor, self._pool, query, *args).chainDeferred(d)

    def _requeue(self, batch):
        """
        Put C{batch} back ahead of the writes queued since; a newer coalesced
        value replaces the batch's and inherits its waiters.
        """
        for key, write in self._pending.items():
            superseded = batch.pop(key, None)
            if superseded is not None:
                write.waiters[:0] = superseded.waiters
            batch[key] = write
        self._pending = batch

    def _flushed(self, result, batch):
        """
        @return: whether the database took the batch (writes rejected from
            it count as taken).
        """
        self._inflight = None
        if isinstance(result, Failure):
            self._failed(result, batch)
            return False
        note, rejected = result
        self.commits += 1
        if self._failing:
            log.info("State store {path}: commits work again", path=self._path)
        if note is not None:
            log.warn("State store {path}: {note}", path=self._path, note=note)
        self._failing = False
        self._retry_delay = _FIRST_RETRY
        self._reschedule(0)
        reasons = dict(rejected)
        for index, write in enumerate(batch.values()):
            if index not in reasons:
                for d in write.waiters:
                    d.callback(None)
                continue
            log.error(
                "State store {path}: dropped a write that can never succeed"
                " ({reason}); this is a bug, please report it",
                path=self._path, reason=repr(reasons[index]),
            )
            for d in write.waiters:
                d.errback(StoreError(f"write rejected: {reasons[index]!r}"))
        return True

    def _failed(self, failure, batch):
        """
        The database refused C{batch}: keep it for the retry.
        """
        waiters = [d for write in batch.values() for d in write.waiters]
        for write in batch.values():
            write.waiters = []
        self._requeue(batch)
        error = StoreError(
            f"state store {self._path}: commit failed ({failure.getErrorMessage()});"
            " the data is kept in memory and retried"
        )
        if not self._failing:
            log.error(
                "State store {path}: cannot commit ({error}); keeping {count}"
                " writes in memory and retrying with backoff. Check that the"
                " disk is not full or read-only and that the file is writable"
                " by the service user.",
                path=self._path, error=failure.getErrorMessage(), count=len(batch),
            )
            self._failing = True
        self._reschedule(self._retry_delay, self._clock)
        self._retry_delay = min(self._retry_delay * 2, _MAX_RETRY)
        # Reads need not wait for the retry to see data that is not durable.
        self._submit_reads()
        for d in waiters:
            d.errback(error)

    def _reschedule(self, delay, clock=None):
        if self._pending and not self._closing:
            self._flush_call = (clock or self._reactor).callLater(delay, self._flush)
