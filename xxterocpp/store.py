# -*- test-case-name: tests.test_store -*-
"""
The state store: everything that must survive a crash or a restart of the
service, in one SQLite file.

Two rules shape this module:

  - B{Nothing lost.} A write's L{Deferred} fires only once the SQL
    transaction holding it is committed with C{synchronous=FULL}, so the
    domain can answer a charger knowing the fact is on disk. A write whose
    commit fails stays queued and is retried with backoff for as long as the
    process lives.
  - B{Never block the reactor.} All SQL runs in one dedicated worker thread
    that owns the only connection. Writes made during one reactor turn are
    committed together (group commit, one fsync per batch), and meter and
    connector-status updates are coalesced, so a MeterValues storm costs a
    handful of commits, not one fsync per message.

The synchronous C{open} and C{load_*} methods are meant for service start,
before any charger is connected: they wait for the worker thread.
"""

import json
import os
import sqlite3
import threading
from datetime import datetime, timezone
from itertools import count

import attr
from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

log = Logger()

#: Ordered schema migrations; entry C{n} brings C{PRAGMA user_version} from
#: C{n} to C{n + 1}. Append new steps, never edit a released one.
MIGRATIONS = [
    (
        # The highest transactionId ever handed out lives here, not in
        # MAX(transactions.id), so that pruning history can never make the
        # central system hand out an id a charger already knows.
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
        "INSERT INTO meta VALUES ('last_transaction_id', 0)",
        """CREATE TABLE transactions (
            id INTEGER PRIMARY KEY,
            charger_id TEXT NOT NULL,
            connector INTEGER NOT NULL,
            id_tag TEXT NOT NULL,
            start_time TEXT NOT NULL,
            meter_start INTEGER NOT NULL,
            reservation_id INTEGER,
            start_status TEXT NOT NULL,
            dedup_key TEXT NOT NULL,
            stop_time TEXT,
            meter_stop INTEGER,
            stop_reason TEXT,
            stop_id_tag TEXT,
            last_meter_wh REAL,
            last_meter_time TEXT)""",
        "CREATE INDEX transactions_by_start ON transactions (start_time)",
        "CREATE INDEX transactions_open ON transactions (stop_time)"
        " WHERE stop_time IS NULL",
        """CREATE TABLE orphan_stops (
            id INTEGER PRIMARY KEY,
            charger_id TEXT,
            transaction_id INTEGER,
            meter_stop INTEGER,
            stop_time TEXT,
            reason TEXT,
            received_at TEXT NOT NULL,
            note TEXT NOT NULL)""",
        """CREATE TABLE connector_status (
            charger_id TEXT NOT NULL,
            connector INTEGER NOT NULL,
            status TEXT NOT NULL,
            error_code TEXT NOT NULL,
            info TEXT,
            at TEXT NOT NULL,
            PRIMARY KEY (charger_id, connector))""",
        """CREATE TABLE unknown_chargers (
            identity TEXT PRIMARY KEY,
            address TEXT NOT NULL,
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            count INTEGER NOT NULL)""",
        """CREATE TABLE settings (
            scope TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (scope, key))""",
        """CREATE TABLE tags (
            id TEXT PRIMARY KEY,
            status TEXT NOT NULL,
            expiry TEXT,
            parent TEXT)""",
    ),
]

_FIRST_RETRY = 1.0
_MAX_RETRY = 60.0

# Errors that come from one write's own data (a duplicate id, a value SQLite
# cannot bind): retrying cannot help, so that write alone is rejected and the
# rest of its batch goes on. Every other sqlite3.Error (read-only, disk full,
# I/O error, locked) is about the database and is retried.
_WRITE_BUGS = (
    sqlite3.IntegrityError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    sqlite3.DataError,
    ValueError,
    TypeError,
    OverflowError,
)


class StoreError(Exception):
    """
    The store could not do what was asked: a commit failed (the writes stay
    queued and are retried), a write was rejected, or the database cannot be
    opened.
    """


def _to_text(when):
    """
    Fixed-width ISO 8601 UTC, so that text order is time order in SQL.

    @raise ValueError: for a naive datetime, whose instant is unknown.
    """
    if when is None:
        return None
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"naive datetime {when!r}: give a timezone")
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _from_text(text):
    if text is None:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=timezone.utc
    )


@attr.s(frozen=True, slots=True, auto_attribs=True)
class TransactionRecord:
    """
    A charging session as stored, from StartTransaction to StopTransaction.

    @ivar id: the transactionId the central system handed out.
    @ivar meter_start: energy register at start, Wh.
    @ivar start_status: the idTagInfo status the StartTransaction got.
    @ivar dedup_key: identifies the StartTransaction, so that a retried
        identical request is answered with the same id.
    @ivar stop_time: L{None} while the transaction is open.
    @ivar last_meter_wh: the latest energy register reading, Wh.
    """

    id: int
    charger_id: str
    connector: int
    id_tag: str
    start_time: datetime
    meter_start: int
    reservation_id: "int | None"
    start_status: str
    dedup_key: str
    stop_time: "datetime | None" = None
    meter_stop: "int | None" = None
    stop_reason: "str | None" = None
    stop_id_tag: "str | None" = None
    last_meter_wh: "float | None" = None
    last_meter_time: "datetime | None" = None

    @property
    def energy_wh(self):
        """
        Energy of the session in Wh, L{None} while nothing is known. Never
        negative: a meter replaced or reset mid-session must not show up as
        energy given back.
        """
        if self.meter_stop is not None:
            end = self.meter_stop
        elif self.last_meter_wh is not None:
            end = self.last_meter_wh
        else:
            return None
        return max(end - self.meter_start, 0)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class OrphanStopRecord:
    """
    A StopTransaction for a transaction that was unknown or already stopped:
    acknowledged to the charger and kept here for the installer.
    """

    charger_id: "str | None"
    transaction_id: "int | None"
    meter_stop: "int | None"
    stop_time: "datetime | None"
    reason: "str | None"
    received_at: datetime
    note: str


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ConnectorStatusRecord:
    """
    The last StatusNotification of one connector.
    """

    charger_id: str
    connector: int
    status: str
    error_code: str
    info: "str | None"
    at: datetime


@attr.s(frozen=True, slots=True, auto_attribs=True)
class UnknownChargerRecord:
    """
    A charger identity that tried to connect but is not configured.
    """

    identity: str
    address: str
    first_seen: datetime
    last_seen: datetime
    count: int


@attr.s(frozen=True, slots=True, auto_attribs=True)
class TagRecord:
    """
    An RFID tag managed through the HTTP API.
    """

    id: str
    status: str
    expiry: "datetime | None"
    parent: "str | None"


_TRANSACTION_COLUMNS = (
    "id, charger_id, connector, id_tag, start_time, meter_start,"
    " reservation_id, start_status, dedup_key, stop_time, meter_stop,"
    " stop_reason, stop_id_tag, last_meter_wh, last_meter_time"
)


def _transaction(row):
    (id, charger_id, connector, id_tag, start_time, meter_start,
     reservation_id, start_status, dedup_key, stop_time, meter_stop,
     stop_reason, stop_id_tag, last_meter_wh, last_meter_time) = row
    return TransactionRecord(
        id, charger_id, connector, id_tag, _from_text(start_time),
        meter_start, reservation_id, start_status, dedup_key,
        _from_text(stop_time), meter_stop, stop_reason, stop_id_tag,
        last_meter_wh, _from_text(last_meter_time),
    )


# The statements below run in the worker thread, inside a batch transaction.


def _insert_transaction(db, rec):
    db.execute(
        f"INSERT INTO transactions ({_TRANSACTION_COLUMNS})"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, NULL, NULL)",
        (rec.id, rec.charger_id, rec.connector, rec.id_tag,
         _to_text(rec.start_time), rec.meter_start, rec.reservation_id,
         rec.start_status, rec.dedup_key),
    )
    db.execute(
        "UPDATE meta SET value = max(value, ?) WHERE key = 'last_transaction_id'",
        (rec.id,),
    )


def _stop_transaction(
    db, tx_id, meter_stop, stop_time, reason, stop_id_tag, received_at
):
    changed = db.execute(
        "UPDATE transactions SET stop_time = ?, meter_stop = ?, stop_reason = ?,"
        " stop_id_tag = ? WHERE id = ? AND stop_time IS NULL",
        (stop_time, meter_stop, reason, stop_id_tag, tx_id),
    ).rowcount
    if not changed:
        # The domain should have called record_orphan_stop; keep the stop
        # anyway rather than drop what the charger reported.
        db.execute(
            "INSERT INTO orphan_stops (charger_id, transaction_id, meter_stop,"
            " stop_time, reason, received_at, note) VALUES ((SELECT charger_id"
            " FROM transactions WHERE id = ?), ?, ?, ?, ?, ?, ?)",
            (tx_id, tx_id, meter_stop, stop_time, reason, received_at,
             "stop_transaction for a transaction not open in the store"),
        )


def _execute(db, sql, params):
    db.execute(sql, params)


@attr.s(slots=True)
class _Write:
    """
    One queued write: C{apply(connection, *args)} in the worker thread, and
    the L{Deferred}s waiting for it to be committed (several when coalesced).
    """

    apply = attr.ib()
    args = attr.ib()
    waiters = attr.ib(factory=list)


class _RejectedWrite(Exception):
    """
    Raised in the worker: write number C{index} of the batch cannot ever
    succeed; the batch was rolled back.
    """

    def __init__(self, index, reason):
        super().__init__(index, reason)
        self.index = index
        self.reason = reason


class Store:
    """
    The SQLite state store.

    @ivar path: the database file.
    @ivar commits: number of batches committed so far.
    """

    def __init__(self, path, reactor, clock=None, busy_timeout=5.0):
        """
        @param path: the database file; it and its directory are created on
            first open.
        @param reactor: runs the batches (C{callLater}, C{callFromThread},
            system event triggers).
        @param clock: schedules retries after a failed commit; defaults to
            C{reactor}.
        @param busy_timeout: seconds the worker waits for another process's
            lock on the file before the commit counts as failed.
        """
        self.path = os.fspath(path)
        self.commits = 0
        self._reactor = reactor
        self._clock = reactor if clock is None else clock
        self._busy_timeout = busy_timeout
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
        # Owned by the worker thread only.
        self._db = None
        self._file_identity = None

    # -- life cycle --------------------------------------------------------

    def open(self):
        """
        Create or migrate the database and start the worker thread. Called
        once at service start.

        @raise StoreError: the database cannot be opened or is newer than
            this program; the message says what to do.
        """
        self._pool.start()
        # Stop the worker even if nobody calls close(): a leftover non-daemon
        # thread would keep the process alive after the reactor stopped.
        self._shutdown_trigger = self._reactor.addSystemEventTrigger(
            "before", "shutdown", self.close
        )
        try:
            self._call_blocking(self._worker_connect)
        except StoreError:
            self._stop_pool()
            raise
        except (sqlite3.Error, OSError) as e:
            self._stop_pool()
            raise StoreError(
                f"cannot open the state database {self.path}: {e}; check that"
                " its directory exists and is writable by the service user"
            ) from e

    def close(self):
        """
        Commit what is queued (one last attempt), close the database and stop
        the worker thread.

        @return: a L{Deferred} that fires with L{None} when done.
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
        # Until empty, unless the database fails: a rejected write only
        # sends the rest of its batch again.
        while self._pending:
            committed = yield self._flush()
            if not committed:
                break
        if self._pending:
            log.error(
                "State store {path}: shutting down with {count} writes not"
                " committed; they are lost",
                path=self.path, count=len(self._pending),
            )
        try:
            yield deferToThreadPool(
                self._reactor, self._pool, self._worker_disconnect
            )
        except sqlite3.Error as e:
            log.error("State store {path}: closing failed: {e}", path=self.path, e=e)
        finally:
            self._stop_pool()

    def _stop_pool(self):
        if self._shutdown_trigger is not None:
            self._reactor.removeSystemEventTrigger(self._shutdown_trigger)
            self._shutdown_trigger = None
        self._pool.stop()

    # -- startup reads (synchronous) ---------------------------------------

    def load_open_transactions(self):
        """
        @return: the transactions without a StopTransaction, oldest first.
        @rtype: L{list} of L{TransactionRecord}
        """
        return self._call_blocking(
            self._worker_select_transactions,
            "WHERE stop_time IS NULL ORDER BY start_time, id",
            (),
        )

    def load_recent_transactions(self, limit=1000):
        """
        @return: the C{limit} latest transactions, newest first.
        @rtype: L{list} of L{TransactionRecord}
        """
        return self._call_blocking(
            self._worker_select_transactions,
            "ORDER BY start_time DESC, id DESC LIMIT ?",
            (limit,),
        )

    def load_connector_status(self):
        """
        @rtype: L{list} of L{ConnectorStatusRecord}
        """
        rows = self._call_blocking(
            self._worker_select,
            "SELECT charger_id, connector, status, error_code, info, at"
            " FROM connector_status ORDER BY charger_id, connector",
            (),
        )
        return [ConnectorStatusRecord(*r[:5], _from_text(r[5])) for r in rows]

    def load_unknown_chargers(self):
        """
        @return: unknown identities, the latest seen first.
        @rtype: L{list} of L{UnknownChargerRecord}
        """
        rows = self._call_blocking(
            self._worker_select,
            "SELECT identity, address, first_seen, last_seen, count"
            " FROM unknown_chargers ORDER BY last_seen DESC",
            (),
        )
        return [
            UnknownChargerRecord(i, a, _from_text(f), _from_text(s), c)
            for i, a, f, s, c in rows
        ]

    def load_settings(self):
        """
        @return: C{{(scope, key): value}}, values decoded from JSON.
        @rtype: L{dict}
        """
        rows = self._call_blocking(
            self._worker_select, "SELECT scope, key, value FROM settings", ()
        )
        return {(scope, key): json.loads(value) for scope, key, value in rows}

    def load_tags(self):
        """
        @rtype: L{list} of L{TagRecord}
        """
        rows = self._call_blocking(
            self._worker_select,
            "SELECT id, status, expiry, parent FROM tags ORDER BY id",
            (),
        )
        return [TagRecord(i, s, _from_text(e), p) for i, s, e, p in rows]

    def last_transaction_id(self):
        """
        @return: the highest transactionId ever stored, 0 if none; it does not
            go down when transactions are deleted.
        @rtype: L{int}
        """
        rows = self._call_blocking(
            self._worker_select,
            "SELECT value FROM meta WHERE key = 'last_transaction_id'",
            (),
        )
        return rows[0][0]

    # -- writes ------------------------------------------------------------

    def insert_transaction(self, rec):
        """
        Store a started transaction. Answer the StartTransaction only once
        this has fired: then the id survives a crash.

        @type rec: L{TransactionRecord}
        @return: a L{Deferred} that fires with L{None} once committed, or
            fails with L{StoreError}.
        """
        # Refuse a naive start time now, in the caller's stack, rather than
        # as a rejected write later.
        _to_text(rec.start_time)
        return self._write(None, _insert_transaction, rec)

    def update_meter(self, tx_id, energy_wh, at):
        """
        Record the latest energy register reading of a transaction. Only the
        last of several readings queued together is written.
        """
        return self._write(
            ("meter", tx_id),
            _execute,
            "UPDATE transactions SET last_meter_wh = ?, last_meter_time = ?"
            " WHERE id = ?",
            (energy_wh, _to_text(at), tx_id),
        )

    def stop_transaction(self, tx_id, meter_stop, stop_time, reason, stop_id_tag):
        """
        Close a transaction. A stop for a transaction that is not open in the
        store is kept as an orphan stop instead.
        """
        return self._write(
            None, _stop_transaction,
            tx_id, meter_stop, _to_text(stop_time), reason, stop_id_tag,
            _to_text(datetime.fromtimestamp(self._reactor.seconds(), timezone.utc)),
        )

    def record_orphan_stop(
        self, charger_id, tx_id, meter_stop, stop_time, reason, received_at, note
    ):
        """
        Keep a StopTransaction for an unknown or already stopped transaction.
        """
        return self._write(
            None,
            _execute,
            "INSERT INTO orphan_stops (charger_id, transaction_id, meter_stop,"
            " stop_time, reason, received_at, note) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (charger_id, tx_id, meter_stop, _to_text(stop_time), reason,
             _to_text(received_at), note),
        )

    def save_connector_status(self, charger_id, connector, status, error_code, info, at):
        """
        Record the last StatusNotification of a connector; only the last of
        several queued together is written.
        """
        return self._write(
            ("status", charger_id, connector),
            _execute,
            "INSERT OR REPLACE INTO connector_status (charger_id, connector,"
            " status, error_code, info, at) VALUES (?, ?, ?, ?, ?, ?)",
            (charger_id, connector, status, error_code, info, _to_text(at)),
        )

    def record_unknown_attempt(self, identity, address, at):
        """
        Count a connection attempt by an identity that is not configured.
        """
        at = _to_text(at)
        return self._write(
            None,
            _execute,
            "INSERT INTO unknown_chargers (identity, address, first_seen,"
            " last_seen, count) VALUES (?, ?, ?, ?, 1) ON CONFLICT (identity)"
            " DO UPDATE SET address = excluded.address,"
            " last_seen = excluded.last_seen, count = count + 1",
            (identity, address, at, at),
        )

    def put_setting(self, scope, key, value):
        """
        Store a setting changed at run time (e.g. a limit set over KNX).

        @param value: anything L{json.dumps} accepts.
        @raise TypeError: at once, if C{value} is not JSON-serialisable.
        """
        return self._write(
            ("setting", scope, key),
            _execute,
            "INSERT OR REPLACE INTO settings (scope, key, value) VALUES (?, ?, ?)",
            (scope, key, json.dumps(value)),
        )

    def delete_setting(self, scope, key):
        """
        Forget a setting.
        """
        return self._write(
            ("setting", scope, key),
            _execute,
            "DELETE FROM settings WHERE scope = ? AND key = ?",
            (scope, key),
        )

    def put_tag(self, tag_id, status, expiry=None, parent=None):
        """
        Add or replace an API-managed tag.
        """
        return self._write(
            None,
            _execute,
            "INSERT OR REPLACE INTO tags (id, status, expiry, parent)"
            " VALUES (?, ?, ?, ?)",
            (tag_id, status, _to_text(expiry), parent),
        )

    def delete_tag(self, tag_id):
        """
        Remove an API-managed tag.
        """
        return self._write(None, _execute, "DELETE FROM tags WHERE id = ?", (tag_id,))

    # -- reads (asynchronous) ----------------------------------------------

    def query_transactions(self, charger_id=None, since=None, until=None, limit=None):
        """
        Transactions, newest first, including writes queued before the call.

        @param since: only transactions started at or after this instant.
        @param until: only transactions started before this instant.
        @return: L{Deferred} firing with a L{list} of L{TransactionRecord}.
        """
        where, params = [], []
        for clause, value in (
            ("charger_id = ?", charger_id),
            ("start_time >= ?", _to_text(since)),
            ("start_time < ?", _to_text(until)),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        tail = ("WHERE " + " AND ".join(where) if where else "") + (
            " ORDER BY start_time DESC, id DESC"
        )
        if limit is not None:
            tail += " LIMIT ?"
            params.append(limit)
        return self._read(self._worker_select_transactions, tail, tuple(params))

    def query_orphan_stops(self, limit=100):
        """
        @return: L{Deferred} firing with the latest orphan stops, newest first.
        """
        d = self._read(
            self._worker_select,
            "SELECT charger_id, transaction_id, meter_stop, stop_time, reason,"
            " received_at, note FROM orphan_stops ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return d.addCallback(
            lambda rows: [
                OrphanStopRecord(c, t, m, _from_text(s), r, _from_text(a), n)
                for c, t, m, s, r, a, n in rows
            ]
        )

    # -- batching (reactor thread) -----------------------------------------

    def _write(self, key, apply, *args):
        if self._closing:
            return fail(StoreError(f"state store {self.path} is closed"))
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

    def _read(self, query, *args):
        """
        Run C{query} in the worker after the writes queued so far, so that it
        sees them; while commits are failing it does not wait for the retry.
        """
        if self._closing:
            return fail(StoreError(f"state store {self.path} is closed"))
        if self._pending and not self._failing:
            d = Deferred()
            self._reads_after_flush.append((d, query, args))
            return d
        return deferToThreadPool(self._reactor, self._pool, query, *args)

    def _flush(self):
        self._flush_call = None
        batch, self._pending = self._pending, {}
        self._inflight = deferToThreadPool(
            self._reactor, self._pool, self._worker_commit, list(batch.values())
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
        @return: whether the database took the batch (a rejected write
            counts as taken: the rest is sent again at once).
        """
        self._inflight = None
        waiters = [d for write in batch.values() for d in write.waiters]
        if not isinstance(result, Failure):
            self.commits += 1
            if self._failing:
                log.info("State store {path}: commits work again", path=self.path)
            if result is not None:
                log.warn("State store {path}: {note}", path=self.path, note=result)
            self._failing = False
            self._retry_delay = _FIRST_RETRY
            self._reschedule(0)
            for d in waiters:
                d.callback(None)
            return True
        if result.check(_RejectedWrite):
            self._reject(result.value, batch)
            return True
        # Every other failure is the database's: keep the batch for the retry.
        for write in batch.values():
            write.waiters = []
        self._requeue(batch)
        error = StoreError(
            f"state store {self.path}: commit failed ({result.getErrorMessage()});"
            " the data is kept in memory and retried"
        )
        if not self._failing:
            log.error(
                "State store {path}: cannot commit ({error}); keeping {count}"
                " writes in memory and retrying with backoff. Check that the"
                " disk is not full or read-only and that the file is writable"
                " by the service user.",
                path=self.path, error=result.getErrorMessage(), count=len(batch),
            )
            self._failing = True
        self._reschedule(self._retry_delay, self._clock)
        self._retry_delay = min(self._retry_delay * 2, _MAX_RETRY)
        # Reads need not wait for the retry to see data that is not durable.
        self._submit_reads()
        for d in waiters:
            d.errback(error)
        return False

    def _reject(self, rejected, batch):
        key = list(batch)[rejected.index]
        write = batch.pop(key)
        log.error(
            "State store {path}: dropped a write that can never succeed ({reason});"
            " this is a bug, please report it",
            path=self.path, reason=repr(rejected.reason),
        )
        # The rest of the batch was rolled back with it: send it again now.
        self._requeue(batch)
        self._reschedule(0)
        for d in write.waiters:
            d.errback(StoreError(f"write rejected: {rejected.reason!r}"))

    def _reschedule(self, delay, clock=None):
        if self._pending and not self._closing:
            self._flush_call = (clock or self._reactor).callLater(delay, self._flush)

    def _call_blocking(self, function, *args):
        """
        Run C{function} in the worker thread and wait for it: only for
        service start, when blocking the reactor thread harms nobody.
        """
        if self._closing or not self._pool.started:
            raise StoreError(f"state store {self.path} is not open")
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

    # -- worker thread -----------------------------------------------------

    def _worker_connect(self):
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        db = sqlite3.connect(
            self.path,
            # Transactions are begun and committed explicitly, per batch.
            isolation_level=None,
            timeout=self._busy_timeout,
        )
        try:
            db.execute("PRAGMA journal_mode = WAL")
            # FULL: the WAL is fsynced at every commit, i.e. once per batch.
            db.execute("PRAGMA synchronous = FULL")
            self._worker_migrate(db)
            stat = os.stat(self.path)
        except BaseException:
            db.close()
            raise
        self._db = db
        self._file_identity = (stat.st_dev, stat.st_ino)

    def _worker_migrate(self, db):
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(
                f"the state database {self.path} has schema version {version},"
                f" newer than this xxterocpp ({len(MIGRATIONS)}): install the"
                " newer version again or restore an older backup of the file"
            )
        for number, steps in enumerate(MIGRATIONS[version:], start=version + 1):
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in steps:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def _worker_check_file(self):
        """
        Make sure the connection still writes to the file at C{path}. On
        Linux a deleted database keeps accepting commits that vanish at the
        next restart, so a deleted file is rebuilt from the still-open
        connection, and a replaced one (a restored backup) is adopted.

        @return: a note for the log when the file was rebuilt or adopted.
        """
        if self._db is None:
            self._worker_connect()
            return None
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            stat = None
        if stat is not None and (stat.st_dev, stat.st_ino) == self._file_identity:
            return None
        old, self._db = self._db, None
        try:
            if stat is None:
                note = "the database file was deleted; rebuilt it from the open connection"
                old.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                rebuilt = self.path + ".rebuilt"
                target = sqlite3.connect(rebuilt)
                try:
                    old.backup(target)
                finally:
                    target.close()
                old.close()
                # Left behind by the deleted file, and emptied by the
                # checkpoint: they must not be mistaken for the new file's.
                for suffix in ("-wal", "-shm"):
                    try:
                        os.unlink(self.path + suffix)
                    except FileNotFoundError:
                        pass
                os.rename(rebuilt, self.path)
                self._worker_connect()
            else:
                note = "the database file was replaced; now using the new file"
                last_id = old.execute(
                    "SELECT value FROM meta WHERE key = 'last_transaction_id'"
                ).fetchone()[0]
                old.close()
                self._worker_connect()
                # Whatever the new file says, never hand out an id again.
                self._db.execute(
                    "UPDATE meta SET value = max(value, ?)"
                    " WHERE key = 'last_transaction_id'",
                    (last_id,),
                )
        finally:
            old.close()
        return note

    def _worker_commit(self, writes):
        note = self._worker_check_file()
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for index, write in enumerate(writes):
                try:
                    write.apply(db, *write.args)
                except _WRITE_BUGS as e:
                    raise _RejectedWrite(index, e) from e
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise
        return note

    def _worker_select(self, sql, params):
        return self._db.execute(sql, params).fetchall()

    def _worker_select_transactions(self, tail, params):
        rows = self._db.execute(
            f"SELECT {_TRANSACTION_COLUMNS} FROM transactions {tail}", params
        ).fetchall()
        return [_transaction(row) for row in rows]

    def _worker_disconnect(self):
        if self._db is not None:
            self._db.close()
            self._db = None
