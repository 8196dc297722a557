# -*- test-case-name: tests.test_store -*-
"""
L{Store}: what the rest of the service reads and writes, and the SQL of
each write.
"""

import json
import os
from datetime import datetime, timezone

import attr
from twisted.internet.defer import fail

from ._batches import LAZY_WRITE_DELAY, Batcher
from ._worker import Worker
from .errors import StoreError
from .records import (
    ConnectorStatusRecord,
    OrphanStopRecord,
    TagRecord,
    UnknownChargerRecord,
    from_text,
    to_text,
)
from .schema import advance_transaction_counter

#: Unknown identities kept, the latest seen: a flood of made-up identities
#: must not grow the file.
MAX_UNKNOWN_CHARGERS = 100

#: Longer unknown identities are not stored at all.
MAX_IDENTITY_LENGTH = 255


# The writes below run in the worker thread, inside a batch transaction.


def _execute(db, sql, params):
    db.execute(sql, params)


def _insert_transaction(db, rec):
    db.execute(
        "INSERT INTO transactions (id, charger_id, connector, id_tag,"
        " start_time, meter_start, reservation_id, start_status, dedup_key,"
        " time_uncertain) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (rec.id, rec.charger_id, rec.connector, rec.id_tag,
         to_text(rec.start_time), rec.meter_start, rec.reservation_id,
         rec.start_status, rec.dedup_key, bool(rec.time_uncertain)),
    )


def _stop_transaction(
    db, tx_id, meter_stop, stop_time, reason, stop_id_tag, received_at, time_uncertain
):
    changed = db.execute(
        "UPDATE transactions SET stop_time = ?, meter_stop = ?, stop_reason = ?,"
        " stop_id_tag = ?, time_uncertain = MAX(time_uncertain, ?)"
        " WHERE id = ? AND stop_time IS NULL",
        (stop_time, meter_stop, reason, stop_id_tag, bool(time_uncertain), tx_id),
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


def _record_unknown_attempts(db, identity, address, first_seen, last_seen, attempts):
    db.execute(
        "INSERT INTO unknown_chargers (identity, address, first_seen,"
        " last_seen, count) VALUES (?, ?, ?, ?, ?) ON CONFLICT (identity)"
        " DO UPDATE SET address = excluded.address,"
        " last_seen = excluded.last_seen, count = count + excluded.count",
        (identity, address, first_seen, last_seen, attempts),
    )
    # In the same commit, so the table never holds more; of identities
    # last seen at the same instant, the one inserted last stays.
    db.execute(
        "DELETE FROM unknown_chargers WHERE rowid NOT IN (SELECT rowid FROM"
        " unknown_chargers ORDER BY last_seen DESC, rowid DESC LIMIT ?)",
        (MAX_UNKNOWN_CHARGERS,),
    )


def _merge_attempts(older, newer):
    # Attempts queued together: the first one's first sighting, the last
    # one's address and time, all of them counted.
    identity, _, first_seen, _, attempts = older
    _, address, _, last_seen, more = newer
    return identity, address, first_seen, last_seen, attempts + more


class Store:
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
        self._reactor = reactor
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

    def open(self):
        """
        Create or migrate the database and start the worker thread. Called
        once at service start. A damaged file is moved aside and a fresh one
        created, with one line in the log.

        @raise StoreError: the database cannot be opened or is newer than
            this program; the message says what to do.
        """
        self._batches.start()

    def close(self):
        """
        Commit what is queued (one last attempt), close the database and stop
        the worker thread.

        @return: a L{Deferred} that fires with L{None} when done.
        """
        return self._batches.close()

    # -- startup reads (synchronous) ---------------------------------------

    def _load(self, sql):
        return self._batches.call_blocking(self._worker.select, sql, ())

    def load_open_transactions(self):
        """
        @return: the transactions without a StopTransaction, oldest first.
        @rtype: L{list} of L{TransactionRecord}
        """
        return self._batches.call_blocking(
            self._worker.select_transactions,
            "WHERE stop_time IS NULL ORDER BY start_time, id",
            (),
        )

    def load_recent_transactions(self, limit=1000):
        """
        @return: the C{limit} latest transactions, newest first.
        @rtype: L{list} of L{TransactionRecord}
        """
        return self._batches.call_blocking(
            self._worker.select_transactions,
            "ORDER BY start_time DESC, id DESC LIMIT ?",
            (limit,),
        )

    def load_connector_status(self):
        """
        @rtype: L{list} of L{ConnectorStatusRecord}
        """
        rows = self._load(
            "SELECT charger_id, connector, status, error_code, info, at"
            " FROM connector_status ORDER BY charger_id, connector"
        )
        for charger_id, connector, status, error_code, info, at in rows:
            self._statuses[charger_id, connector] = (status, error_code, info)
        return [ConnectorStatusRecord(*r[:5], from_text(r[5])) for r in rows]

    def load_unknown_chargers(self):
        """
        @return: unknown identities, the latest seen first.
        @rtype: L{list} of L{UnknownChargerRecord}
        """
        rows = self._load(
            "SELECT identity, address, first_seen, last_seen, count"
            " FROM unknown_chargers ORDER BY last_seen DESC"
        )
        return [
            UnknownChargerRecord(i, a, from_text(f), from_text(s), c)
            for i, a, f, s, c in rows
        ]

    def load_settings(self):
        """
        @return: C{{(scope, key): value}}, values decoded from JSON.
        @rtype: L{dict}
        """
        rows = self._load("SELECT scope, key, value FROM settings")
        return {(scope, key): json.loads(value) for scope, key, value in rows}

    def load_tags(self):
        """
        @rtype: L{list} of L{TagRecord}
        """
        rows = self._load("SELECT id, status, expiry, parent FROM tags ORDER BY id")
        return [TagRecord(i, s, from_text(e), p) for i, s, e, p in rows]

    def last_transaction_id(self):
        """
        @return: the highest transactionId ever handed out, 0 if none: it
            covers the ids of transactions that were deleted or whose row
            the database rejected.
        @rtype: L{int}
        """
        return self._batches.call_blocking(self._worker.last_transaction_id)

    # -- reads (asynchronous) ----------------------------------------------

    def _read(self, query, *args):
        """
        Run C{query(*args)} in the worker thread once the writes queued so
        far are committed (or failed).
        """
        return self._batches.read(query, *args)

    def query_transactions(self, charger_id=None, since=None, until=None, limit=None):
        """
        Transactions, newest first, including writes queued before the call
        (lazy meter readings too).

        @param since: only transactions started at or after this instant.
        @param until: only transactions started before this instant.
        @return: L{Deferred} firing with a L{list} of L{TransactionRecord}.
        """
        where, params = [], []
        for clause, value in (
            ("charger_id = ?", charger_id),
            ("start_time >= ?", to_text(since)),
            ("start_time < ?", to_text(until)),
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
        d = self._read(self._worker.select_transactions, tail, tuple(params))
        return d.addCallback(self._with_meters)

    def _with_meters(self, records):
        """
        @return: C{records} with the meter readings not committed yet.
        """
        meters = self._meters
        return [
            attr.evolve(
                rec, last_meter_wh=meters[rec.id][0],
                last_meter_time=from_text(meters[rec.id][1]),
            ) if rec.id in meters else rec
            for rec in records
        ]

    def query_orphan_stops(self, limit=100):
        """
        @return: L{Deferred} firing with the latest orphan stops, newest first.
        """
        d = self._read(
            self._worker.select,
            "SELECT charger_id, transaction_id, meter_stop, stop_time, reason,"
            " received_at, note FROM orphan_stops ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return d.addCallback(
            lambda rows: [
                OrphanStopRecord(c, t, m, from_text(s), r, from_text(a), n)
                for c, t, m, s, r, a, n in rows
            ]
        )

    # -- writes ------------------------------------------------------------

    def _write(self, key, apply, *args, lazy=False, merge=None):
        return self._batches.write(key, apply, *args, lazy=lazy, merge=merge)

    def insert_transaction(self, rec):
        """
        Store a started transaction. Answer the StartTransaction only once
        this has fired: then the id survives a crash.

        @type rec: L{TransactionRecord}
        @return: a L{Deferred} that fires with L{None} once committed, after
            however many retries that takes (a full disk), or fails with
            L{StoreError} when the row is rejected or the store closes
            before it is committed.
        """
        # Refuse a naive start time now, in the caller's stack, rather than
        # as a rejected write later.
        to_text(rec.start_time)
        # The counter is a write of its own, committed with the row: a row
        # the database rejects (a meterStart beyond SQLite's INTEGER) must
        # not take the id back with it, since the charger may have been
        # answered with it. A rejected row's Deferred fails only once the
        # counter is committed; otherwise the counter's outcome is the row's.
        self._write(None, advance_transaction_counter, rec.id).addErrback(
            lambda failure: None
        )
        return self._write(None, _insert_transaction, rec)

    def update_meter(self, tx_id, energy_wh, at):
        """
        Record the latest energy register reading of a transaction: a lazy
        write, of which only the last reading counts; a reading equal to
        the one before is not written at all. The StopTransaction's
        meterStop is what books the energy.
        """
        key = ("meter", tx_id)
        text = to_text(at)
        known = self._meters.get(tx_id)
        if known is not None and known[0] == energy_wh:
            return self._batches.settled(key)
        self._meters[tx_id] = (energy_wh, text)
        return self._write(
            key,
            _execute,
            "UPDATE transactions SET last_meter_wh = ?, last_meter_time = ?"
            " WHERE id = ?",
            (energy_wh, text, tx_id),
            lazy=True,
        )

    def stop_transaction(self, tx_id, meter_stop, stop_time, reason, stop_id_tag,
                         time_uncertain=False):
        """
        Close a transaction, in the same commit as its last meter reading. A
        stop for a transaction that is not open in the store is kept as an
        orphan stop instead.

        @param time_uncertain: mark the transaction's times uncertain (a
            mark set at the start stays).
        """
        self._meters.pop(tx_id, None)
        return self._write(
            None, _stop_transaction,
            tx_id, meter_stop, to_text(stop_time), reason, stop_id_tag,
            to_text(datetime.fromtimestamp(self._wall(), timezone.utc)), time_uncertain,
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
            (charger_id, tx_id, meter_stop, to_text(stop_time), reason,
             to_text(received_at), note),
        )

    def save_connector_status(self, charger_id, connector, status, error_code, info, at):
        """
        Record the last StatusNotification of a connector: a lazy write, of
        which only the last status counts. A status equal to the one known
        (the same status, error code and info) is not written again, so
        C{at} stays the time since when it holds.
        """
        key = ("status", charger_id, connector)
        state = (status, error_code, info)
        if self._statuses.get((charger_id, connector)) == state:
            return self._batches.settled(key)
        self._statuses[charger_id, connector] = state
        return self._write(
            key,
            _execute,
            "INSERT OR REPLACE INTO connector_status (charger_id, connector,"
            " status, error_code, info, at) VALUES (?, ?, ?, ?, ?, ?)",
            (charger_id, connector, status, error_code, info, to_text(at)),
            lazy=True,
        )

    def record_unknown_attempts(self, identity, address, first_seen, last_seen, attempts):
        """
        Count C{attempts} to connect by an identity that is not configured,
        the last from C{address}; C{first_seen} is kept for an identity new
        to the table: a lazy write, so that a charger retrying every few
        seconds costs one commit per lazy delay. Only the
        L{MAX_UNKNOWN_CHARGERS} identities seen last are kept; an identity
        longer than L{MAX_IDENTITY_LENGTH} is not stored (the L{Deferred}
        fails with L{StoreError}).
        """
        if len(identity) > MAX_IDENTITY_LENGTH:
            return fail(StoreError(
                f"unknown charger identity of {len(identity)} characters not"
                f" stored: at most {MAX_IDENTITY_LENGTH}"
            ))
        return self._write(
            ("unknown", identity), _record_unknown_attempts, identity, address,
            to_text(first_seen), to_text(last_seen), attempts, lazy=True,
            merge=_merge_attempts,
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
            (tag_id, status, to_text(expiry), parent),
        )

    def delete_tag(self, tag_id):
        """
        Remove an API-managed tag.
        """
        return self._write(None, _execute, "DELETE FROM tags WHERE id = ?", (tag_id,))
