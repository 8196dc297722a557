# -*- test-case-name: tests.test_store -*-
"""
L{Transactions}: the L{Store}'s transactions and orphan stops, the SQL of
their writes and the reads of them.
"""

from datetime import datetime, timezone

import attr

from ._worker import execute
from .records import OrphanStopRecord, from_text, to_text
from .schema import advance_transaction_counter


# The writes below run in the worker thread, inside a batch transaction.


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


class Transactions:
    """
    The transactions part of L{xxterocpp.store.Store} (a mixin: the store's
    C{_write}, C{_read}, C{_batches}, C{_worker}, C{_wall} and
    C{_meters}, the latest reading of each open transaction as C{(Wh,
    text)}, are its own).
    """

    # -- startup reads (synchronous) ---------------------------------------

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

    def last_transaction_id(self):
        """
        @return: the highest transactionId ever handed out, 0 if none: it
            covers the ids of transactions that were deleted or whose row
            the database rejected.
        @rtype: L{int}
        """
        return self._batches.call_blocking(self._worker.last_transaction_id)

    # -- reads (asynchronous) ----------------------------------------------

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

    def update_meter(self, tx_id, energy_wh, at, quiet=False):
        """
        Record the latest energy register reading of a transaction: a lazy
        write, of which only the last reading counts; a reading equal to
        the one before is not written at all. The StopTransaction's
        meterStop is what books the energy.

        @param quiet: C{True} when the caller does not wait for the
            commit: L{None} is returned, no L{Deferred} made
            (L{xxterocpp.store._batches.Batcher.write}).
        """
        key = ("meter", tx_id)
        text = to_text(at)
        known = self._meters.get(tx_id)
        if known is not None and known[0] == energy_wh:
            return None if quiet else self._batches.settled(key)
        self._meters[tx_id] = (energy_wh, text)
        return self._write(
            key,
            execute,
            "UPDATE transactions SET last_meter_wh = ?, last_meter_time = ?"
            " WHERE id = ?",
            (energy_wh, text, tx_id),
            lazy=True, quiet=quiet,
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
            execute,
            "INSERT INTO orphan_stops (charger_id, transaction_id, meter_stop,"
            " stop_time, reason, received_at, note) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (charger_id, tx_id, meter_stop, to_text(stop_time), reason,
             to_text(received_at), note),
        )
