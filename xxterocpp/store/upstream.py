# -*- test-case-name: tests.test_upstream_store,tests.test_upstream_deadletters,tests.test_upstream_writes -*-
"""
What the back office adapter (L{xxterocpp.upstream}) keeps in the state
store: per charger, the messages not yet delivered to its back office, in
order; the dead letters (messages the back office refused for good or too
often, kept to be shown and queued again by the installer); and which of
the back office's transactionIds each of ours got.

The writes go through the L{Store}'s own batches, so a queued message is
committed with the transaction row it belongs to, with the same fsync.

Every write of one queued message goes under the same key of the batches,
C{("upstream", seq)}, and writes the whole state of its row (inserted,
replaced, gone to the dead letters or delivered): a later write replaces
one still pending (L{xxterocpp.store._batches.Batcher.write}), and what is
committed is the latest state, whatever came before. So a lazy MeterValues
row and its lazy delivery that meet in memory cost nothing on disk: the
delete replaces the insert that never was, and deletes nothing. Such a
write moves to the end of its batch, which no other write depends on: only
L{UpstreamStore.requeue} reads rows another write made (the dead letters),
and it acts on what it read from the file, so on committed rows.
"""

import json

import attr

from ._worker import execute
from .records import from_text, to_text

#: Id map entries kept per charger (the newest): a charger has at most a
#: few sessions running, older ones matter only on the status page.
ID_MAP_KEPT = 100

#: Dead letters loaded per charger at start.
DEAD_LETTERS_LOADED = 100

#: Dead letters kept per charger in the file, and the bytes of their
#: payloads (as JSON): beyond, the oldest are deleted as a new one comes
#: (docs/upstream.md#queue).
DEAD_LETTERS_KEPT = 1000
DEAD_LETTER_BYTES = 8 * 1024 * 1024


@attr.s(frozen=True, slots=True, auto_attribs=True)
class QueuedRecord:
    """
    A message waiting for the back office.

    @ivar seq: its place in the order of delivery (per charger, ascending).
    @ivar transaction_id: our transactionId it concerns, or L{None}.
    @ivar payload: the charger's request as JSON (a L{dict}, or its JSON
        text: L{UpstreamStore.load} gives the text, which the outbox keeps
        in memory as it is), with our ids.
    @ivar failures: how many times the back office answered it with a
        CALLERROR.
    """

    seq: int
    charger_id: str
    action: str
    transaction_id: "int | None"
    payload: dict
    queued_at: object
    failures: int = 0
    last_error: "str | None" = None


@attr.s(frozen=True, slots=True, auto_attribs=True)
class DeadLetterRecord:
    """
    A message the back office refused for good or failed on too often, or
    that cannot be sent (its StartTransaction got no transactionId): kept,
    never sent again unless the installer queues it again
    (L{UpstreamStore.requeue}).
    """

    seq: int
    charger_id: str
    action: str
    transaction_id: "int | None"
    payload: dict
    queued_at: object
    failed_at: object
    error: str


@attr.s(frozen=True, slots=True, auto_attribs=True)
class IdMapRecord:
    """
    Our transactionId and the one the back office gave the forwarded
    StartTransaction, with the idTagInfo status it answered.
    """

    transaction_id: int
    charger_id: str
    remote_id: int
    status: str
    mapped_at: object


@attr.s(frozen=True, slots=True, auto_attribs=True)
class UpstreamState:
    """
    Everything L{UpstreamStore.load} restores.

    @ivar queue: L{QueuedRecord}s, in order of delivery.
    @ivar dead_letters: the newest L{DeadLetterRecord}s per charger, oldest
        first.
    @ivar dead_letter_counts: C{{charger_id: how many}}.
    @ivar ids: L{IdMapRecord}s, oldest first.
    @ivar last_seq: the highest C{seq} in use.
    """

    queue: list
    dead_letters: list
    dead_letter_counts: dict
    ids: list
    last_seq: int


# In the worker thread, inside a batch.


_ROW = ("(seq, charger_id, action, transaction_id, payload, queued_at, failures,"
        " last_error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")


def _storable(payload):
    # Refuse a payload that cannot be stored, in the caller's stack; a
    # payload kept as its JSON text (the queue's) is stored as it is.
    if not isinstance(payload, str):
        json.dumps(payload)


def _text(payload):
    # A payload is given as a dict or as its JSON text (the outbox keeps
    # the text).
    return payload if isinstance(payload, str) else json.dumps(payload)


def _row(rec):
    return (rec.seq, rec.charger_id, rec.action, rec.transaction_id, _text(rec.payload),
            to_text(rec.queued_at), rec.failures, rec.last_error)


def _enqueue(db, rec):
    db.execute("INSERT INTO upstream_queue " + _ROW, _row(rec))


def _queued(db, rec):
    # The row's whole state: it may be committed already, or still wait as
    # the insert this replaced.
    db.execute("INSERT OR REPLACE INTO upstream_queue " + _ROW, _row(rec))


def _delivered(db, seq, mapping):
    db.execute("DELETE FROM upstream_queue WHERE seq = ?", (seq,))
    if mapping is None:
        return
    db.execute(
        "INSERT OR REPLACE INTO upstream_transactions (transaction_id, charger_id, remote_id,"
        " status, mapped_at) VALUES (?, ?, ?, ?, ?)",
        (mapping.transaction_id, mapping.charger_id, mapping.remote_id, mapping.status,
         to_text(mapping.mapped_at)),
    )
    db.execute(
        "DELETE FROM upstream_transactions WHERE charger_id = ? AND transaction_id NOT IN"
        " (SELECT transaction_id FROM upstream_transactions WHERE charger_id = ?"
        " ORDER BY transaction_id DESC LIMIT ?)",
        (mapping.charger_id, mapping.charger_id, ID_MAP_KEPT),
    )


def _dead_letter(db, rec):
    # From the record, not the queued row: that may never have been
    # committed (a lazy write replaced by this one).
    db.execute(
        "INSERT OR REPLACE INTO upstream_dead_letters (seq, charger_id, action,"
        " transaction_id, payload, queued_at, failed_at, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (rec.seq, rec.charger_id, rec.action, rec.transaction_id, _text(rec.payload),
         to_text(rec.queued_at), to_text(rec.failed_at), rec.error),
    )
    db.execute("DELETE FROM upstream_queue WHERE seq = ?", (rec.seq,))
    # The newest within both bounds stay (the new one always).
    db.execute(
        "DELETE FROM upstream_dead_letters WHERE charger_id = ? AND seq NOT IN"
        " (SELECT seq FROM (SELECT seq, sum(length(CAST(payload AS BLOB)))"
        " OVER (ORDER BY seq DESC) - length(CAST(payload AS BLOB)) AS after"
        " FROM upstream_dead_letters WHERE charger_id = ?)"
        " WHERE after < ? ORDER BY seq DESC LIMIT ?)",
        (rec.charger_id, rec.charger_id, DEAD_LETTER_BYTES, DEAD_LETTERS_KEPT),
    )


def _requeue(db, seqs):
    # OR IGNORE: a message queued already stays as it is (never a commit
    # that fails again at every retry).
    db.executemany(
        "INSERT OR IGNORE INTO upstream_queue (seq, charger_id, action, transaction_id,"
        " payload, queued_at, failures, last_error) SELECT seq, charger_id, action,"
        " transaction_id, payload, queued_at, 0, error FROM upstream_dead_letters"
        " WHERE seq = ?", [(seq,) for seq in seqs])
    db.executemany("DELETE FROM upstream_dead_letters WHERE seq = ?", [(seq,) for seq in seqs])


def _dead_letter_record(row):
    seq, c, a, t, p, q, f, e = row
    return DeadLetterRecord(seq, c, a, t, json.loads(p), from_text(q), from_text(f), e)


class UpstreamStore:
    """
    The back office's tables, written and read through a L{Store}.
    """

    def __init__(self, store):
        """
        @param store: the open (or about to be opened) L{Store}.
        """
        self._store = store

    def _select(self, sql, params=()):
        # At service start only: waits for the worker thread.
        return self._store._batches.call_blocking(self._store._worker.select, sql, params)

    def load(self):
        """
        Restore the queues, dead letters and id map (at service start).

        @rtype: L{UpstreamState}
        """
        queue = [
            # The text as it is: parsed only when sent (the queue is
            # within L{xxterocpp.upstream.room.MAX_MEMORY} as text, not
            # parsed).
            QueuedRecord(seq, c, a, t, p, from_text(q), f, e)
            for seq, c, a, t, p, q, f, e in self._select(
                "SELECT seq, charger_id, action, transaction_id, payload, queued_at, failures,"
                " last_error FROM upstream_queue ORDER BY seq")
        ]
        dead = [
            _dead_letter_record(row) for row in self._select(
                "SELECT seq, charger_id, action, transaction_id, payload, queued_at, failed_at,"
                " error FROM (SELECT *, row_number() OVER (PARTITION BY charger_id"
                " ORDER BY seq DESC) AS n FROM upstream_dead_letters) WHERE n <= ? ORDER BY seq",
                (DEAD_LETTERS_LOADED,))
        ]
        counts = dict(self._select(
            "SELECT charger_id, count(*) FROM upstream_dead_letters GROUP BY charger_id"))
        ids = [
            IdMapRecord(t, c, r, s, from_text(m))
            for t, c, r, s, m in self._select(
                "SELECT transaction_id, charger_id, remote_id, status, mapped_at"
                " FROM upstream_transactions ORDER BY transaction_id")
        ]
        ((last_seq,),) = self._select(
            "SELECT max(coalesce((SELECT max(seq) FROM upstream_queue), 0),"
            " coalesce((SELECT max(seq) FROM upstream_dead_letters), 0))")
        return UpstreamState(queue, dead, counts, ids, last_seq)

    def _row_write(self, seq, apply, *args, lazy=False):
        # The key every write of the message's row goes under (see above).
        return self._store._write(("upstream", seq), apply, *args, lazy=lazy)

    def enqueue(self, rec, lazy=False):
        """
        Queue a message for the back office.

        @type rec: L{QueuedRecord}
        @param lazy: commit it with the next batch or C{lazy_delay} late,
            like a meter reading (a MeterValues: a crash may lose it);
            otherwise at the end of this reactor turn.
        @return: a Deferred firing once committed.
        """
        # Refuse what cannot be stored now, in the caller's stack.
        _storable(rec.payload)
        to_text(rec.queued_at)
        return self._row_write(rec.seq, _enqueue, rec, lazy=lazy)

    def replace(self, rec, lazy=False):
        """
        Give a queued message a new state: a newer payload in its place
        (MeterValues thinned while the back office is away), or its count
        of failures. Only the last of several queued together is written.

        @param rec: the message's whole L{QueuedRecord}.
        @param lazy: as for L{enqueue}.
        """
        _storable(rec.payload)
        to_text(rec.queued_at)
        return self._row_write(rec.seq, _queued, rec, lazy=lazy)

    def delivered(self, seq, mapping=None, lazy=False):
        """
        The back office answered a queued message: it leaves the queue, with
        the id map entry its answer gave (a StartTransaction) in the same
        commit.

        @param mapping: an L{IdMapRecord}, or L{None}.
        @param lazy: as for L{enqueue}; with the enqueue still in memory
            too, neither costs a write.
        """
        return self._row_write(seq, _delivered, seq, mapping, lazy=lazy)

    def dropped(self, seq, lazy=False):
        """
        A queued message dropped at the queue's cap
        (L{xxterocpp.upstream.room}): it leaves the queue.

        @param lazy: as for L{enqueue}.
        """
        return self._row_write(seq, _delivered, seq, None, lazy=lazy)

    def dead_letter(self, rec):
        """
        Move a queued message to the dead letters.

        @type rec: L{DeadLetterRecord}
        """
        _storable(rec.payload)
        to_text(rec.queued_at)
        to_text(rec.failed_at)
        return self._row_write(rec.seq, _dead_letter, rec)

    def dead_letters(self, charger_id, limit, max_bytes=None):
        """
        Read a charger's oldest dead letters (the writes queued so far
        included), without blocking.

        @param max_bytes: if given, no more than the dead letters whose
            payloads (as JSON) take this many bytes together, and at
            least one: each is read whole into memory.
        @return: a Deferred firing with at most C{limit}
            L{DeadLetterRecord}s, oldest first.
        """
        if max_bytes is None:
            sql = ("SELECT seq, charger_id, action, transaction_id, payload, queued_at,"
                   " failed_at, error FROM upstream_dead_letters WHERE charger_id = ?"
                   " ORDER BY seq LIMIT ?")
            params = (charger_id, limit)
        else:
            # The bytes of the payloads before each row, in the order read.
            sql = ("SELECT seq, charger_id, action, transaction_id, payload, queued_at,"
                   " failed_at, error FROM (SELECT *, sum(length(CAST(payload AS BLOB)))"
                   " OVER (ORDER BY seq) - length(CAST(payload AS BLOB)) AS before"
                   " FROM upstream_dead_letters WHERE charger_id = ?)"
                   " WHERE before < ? ORDER BY seq LIMIT ?")
            params = (charger_id, max_bytes, limit)
        d = self._store._read(self._store._worker.select, sql, params)
        return d.addCallback(lambda rows: [_dead_letter_record(row) for row in rows])

    def requeue(self, seqs):
        """
        Move dead letters back to the queue, in their places (their
        C{seq}), with no failures counted.
        """
        return self._store._write(None, _requeue, list(seqs))
