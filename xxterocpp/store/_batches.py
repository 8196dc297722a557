# -*- test-case-name: tests.test_store -*-
"""
The reactor thread's side of the store: writes queued during one reactor
turn go to the worker thread as one batch (one commit, one fsync), values
that only matter last are coalesced, lazy writes wait in memory for the next
batch, and a batch the database refuses is kept and retried with backoff.
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

#: Seconds a lazy write (a meter reading, a connector status) may wait in
#: memory before a batch of its own commits it; any earlier batch takes it
#: along. This is what a crash can lose of them. Every fsynced commit
#: dirties at least one 4 KiB page of the file system, and a lone
#: charger's lazy commit (its meter reading and the trusted time, two
#: 1 KiB pages of the write-ahead log) about 6 KiB on average: 30 minutes
#: makes that two commits, 12 KiB, per hour of charging, under the 20 KB
#: budget in any hour (README, Performance, scenario 6); 20 minutes made
#: three, 18.6 KiB on average and 20.5 KiB in some hours.
LAZY_WRITE_DELAY = 1800.0


@attr.s(slots=True)
class _Write:
    """
    One queued write: C{apply(connection, *args)} in the worker thread, and
    the L{Deferred}s waiting for it to be committed (several when coalesced).

    @ivar lazy: whether it may wait for the next batch (see L{Batcher.write}).
    @ivar merge: L{None}, or C{merge(older_args, newer_args)}: the arguments
        of one write doing what the two would.
    """

    apply = attr.ib()
    args = attr.ib()
    lazy = attr.ib()
    merge = attr.ib()
    waiters = attr.ib(factory=list)

    def replace(self, older):
        """
        Take the place of C{older}, queued under the same key, and its
        waiters: by default the newer value wins.
        """
        if self.merge is not None:
            self.args = self.merge(older.args, self.args)
        self.lazy = self.lazy and older.lazy
        self.waiters[:0] = older.waiters


class Batcher:
    """
    The queue of writes in front of a L{Worker}, and the one thread it runs
    in.

    @ivar commits: number of batches committed so far.
    """

    def __init__(self, worker, reactor, clock, lazy_delay=LAZY_WRITE_DELAY):
        """
        @param worker: the L{xxterocpp.store._worker.Worker}.
        @param reactor: runs the batches (C{callLater}, C{callFromThread},
            system event triggers).
        @param clock: schedules the batches of lazy writes and the retries
            after a failed commit.
        @param lazy_delay: seconds a lazy write may wait.
        """
        self.commits = 0
        self._worker = worker
        self._path = worker.path
        self._reactor = reactor
        self._clock = clock
        self._lazy_delay = lazy_delay
        self._pool = ThreadPool(1, 1, name="xxterocpp-store")
        self._shutdown_trigger = None
        self._keys = count()
        self._pending = {}
        # Whether a write in _pending must not wait for lazy_delay.
        self._urgent = False
        self._reads_after_flush = []
        # The batch of this reactor turn (reactor), and the next batch of
        # lazy writes or the next retry (clock).
        self._soon_call = None
        self._later_call = None
        self._inflight = None
        self._inflight_batch = {}
        self._failing = False
        self._retry_delay = _FIRST_RETRY
        self._closing = False
        self._closed = None

    # -- life cycle --------------------------------------------------------

    def start(self, close_at_shutdown=True):
        """
        Start the worker thread and connect: see L{Store.open}.
        """
        self._pool.start()
        if close_at_shutdown:
            # Stop the worker even if nobody calls close(): a leftover
            # non-daemon thread would keep the process alive after the
            # reactor stopped.
            self._shutdown_trigger = self._reactor.addSystemEventTrigger(
                "before", "shutdown", self.close
            )
        try:
            note = self.call_blocking(self._worker.connect)
        except StoreError:
            self._stop_pool()
            raise
        except (sqlite3.Error, OSError) as e:
            self._stop_pool()
            raise StoreError(
                f"cannot open the state database {self._path}: {e}; check that"
                " its directory exists and is writable by the service user"
            ) from e
        if note is not None:
            log.error("State store {path}: {note}", path=self._path, note=note)

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
        self._cancel_calls()
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
            lost, self._pending = self._pending, {}
            error = StoreError(f"state store {self._path} closed before the write was committed")
            for write in lost.values():
                for d in write.waiters:
                    d.errback(error)
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

    def write(self, key, apply, *args, lazy=False, merge=None, quiet=False):
        """
        Queue C{apply(db, *args)} for the next batch.

        @param key: L{None}, or a key that coalesces: a write replaces the
            one queued under the same key, and takes over its waiters; it
            goes to the end of the batch, so what it writes must not depend
            on a write queued after the one it replaced (and a write that
            replaces one must do what both would: an update of a row whose
            insert it replaces would update nothing).
        @param lazy: C{True} for a write that may wait in memory for up to
            C{lazy_delay} seconds (or the next batch, or the close); other
            writes are committed at the end of this reactor turn.
        @param merge: how a write under C{key} combines with the one it
            replaces (see L{_Write}); by default it just replaces it.
        @param quiet: C{True} for a caller that does not wait for the
            commit: no L{Deferred} is made, and none kept. A lazy write
            that replaces its older self a hundred times a second (a
            charger's meter readings, for up to C{lazy_delay}) kept a
            Deferred for each of them until the commit.
        @return: a L{Deferred} that fires with L{None} once committed, also
            when that takes retries, or fails with L{StoreError} when the
            write is rejected or the store closes without committing it;
            L{None} when C{quiet}.
        """
        if self._closing:
            return None if quiet else fail(StoreError(f"state store {self._path} is closed"))
        if key is None:
            key = next(self._keys)
        write = _Write(apply, args, lazy, merge)
        d = None
        if not quiet:
            d = Deferred()
            write.waiters.append(d)
        older = self._pending.pop(key, None)
        if older is not None:
            write.replace(older)
        self._pending[key] = write
        self._urgent = self._urgent or not write.lazy
        self._schedule()
        return d

    def settled(self, key):
        """
        @return: a L{Deferred} that fires like the one of the write queued
            or being committed under C{key}, at once if there is none.
        """
        write = self._pending.get(key) or self._inflight_batch.get(key)
        if write is None:
            return succeed(None)
        d = Deferred()
        write.waiters.append(d)
        return d

    def read(self, query, *args):
        """
        Run C{query(*args)} in the worker after the writes queued so far
        that are not lazy, so that it sees them; while commits are failing
        it does not wait for the retry.

        @return: a L{Deferred} firing with what C{query} returned.
        """
        if self._closing:
            return fail(StoreError(f"state store {self._path} is closed"))
        if self._urgent and not self._failing:
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

    def _schedule(self):
        """
        Arrange the next batch for what is pending: at the end of this
        reactor turn if a write is urgent, else after C{lazy_delay}. While
        a batch is being committed, or a retry waits, nothing more is
        arranged: the outcome arranges the next one.
        """
        if self._inflight is not None or self._failing or not self._pending:
            return
        if self._urgent:
            if self._soon_call is None:
                # callLater(0): everything written during this reactor turn
                # ends up in the same batch.
                self._soon_call = self._reactor.callLater(0, self._flush)
        elif self._later_call is None and self._soon_call is None:
            self._later_call = self._clock.callLater(self._lazy_delay, self._flush)

    def _cancel_calls(self):
        for call in (self._soon_call, self._later_call):
            if call is not None and call.active():
                call.cancel()
        self._soon_call = self._later_call = None

    def _flush(self):
        self._cancel_calls()
        batch, self._pending, self._urgent = self._pending, {}, False
        self._inflight_batch = batch
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
            older = batch.pop(key, None)
            if older is not None:
                write.replace(older)
            batch[key] = write
        self._pending = batch
        self._urgent = any(not write.lazy for write in batch.values())

    def _flushed(self, result, batch):
        """
        @return: whether the database took the batch (writes rejected from
            it count as taken).
        """
        self._inflight, self._inflight_batch = None, {}
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
        if not self._closing:
            self._schedule()
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
        The database refused C{batch}: keep it, and its waiters, for the
        retry.
        """
        self._requeue(batch)
        if not self._failing:
            log.error(
                "State store {path}: cannot commit ({error}); keeping {count}"
                " writes in memory and retrying with backoff, and what waits"
                " for them to be on disk (the answers to StartTransaction and"
                " StopTransaction) waits. Free disk space, or make the file"
                " writable by the service user: the store catches up by"
                " itself.",
                path=self._path, error=failure.getErrorMessage(), count=len(batch),
            )
            self._failing = True
        if not self._closing:
            self._later_call = self._clock.callLater(self._retry_delay, self._flush)
        self._retry_delay = min(self._retry_delay * 2, _MAX_RETRY)
        # Reads need not wait for the retry to see data that is not durable.
        self._submit_reads()
