# -*- test-case-name: tests.test_upstream_outbox,tests.test_upstream_attacks,tests.test_upstream_deadletters,tests.test_upstream_writes -*-
"""
One charger's outbox towards its back office: the transaction messages
(StartTransaction, StopTransaction, MeterValues of a transaction) in the
order the charger sent them, persisted (a StartTransaction and a
StopTransaction before the charger is answered, MeterValues lazily, as the
controller's own meter readings); the id map from our transactionIds to the
back office's; and the dead letters.

The outbox decides nothing about the connection: L{xxterocpp.upstream.uplink}
takes the head, sends it and reports the outcome here.
"""

import json
from collections import OrderedDict, deque

import attr
from twisted.internet import defer
from twisted.logger import Logger

from xxterocpp.domain.model import stored
from xxterocpp.ocpp import messages as m
from xxterocpp.store.upstream import (
    DEAD_LETTERS_KEPT, DEAD_LETTERS_LOADED, ID_MAP_KEPT, DeadLetterRecord, IdMapRecord,
    QueuedRecord)
# (MAX_QUEUED and MAX_QUEUED_BYTES as they were here before.)
from xxterocpp.upstream.room import (  # noqa: F401
    MAX_QUEUED, MAX_QUEUED_BYTES, Account, Budget, thin)

#: The CALLERROR codes saying that the message itself is wrong, or an
#: action the back office does not take: sent again it gets the same
#: answer, so it is a dead letter at once (docs/upstream.md#queue).
REFUSED_FOR_GOOD = frozenset({
    m.FORMATION_VIOLATION, m.PROPERTY_CONSTRAINT_VIOLATION, m.TYPE_CONSTRAINT_VIOLATION,
    m.OCCURENCE_CONSTRAINT_VIOLATION, m.PROTOCOL_ERROR, m.NOT_IMPLEMENTED, m.NOT_SUPPORTED})

#: Failed attempts at one message (a CALLERROR of any other code, such as
#: InternalError from a back office restarting its database, or no answer in
#: time) before it becomes a dead letter: at the longest pause between two
#: (L{xxterocpp.upstream.delivery.RETRY}), about 6 hours of a back office
#: that is connected but fails; kept, not retried forever.
MAX_FAILURES = 80

#: Dead letters put back in the queue by one L{Outbox.requeue}, the oldest
#: first: what one request reads from the file and holds in memory; and
#: the bytes of their payloads (as JSON) at most, the first always taken.
#: A MeterValues of 64 KiB (a charger may send one) is some 300 KiB in
#: memory: a thousand of them were 320 MB; a typical one (1.6 kB) passes
#: a thousand at a time still.
REQUEUE_BATCH = 1000
REQUEUE_BYTES = 2 * 1024 * 1024

#: The bounds of the queues, per charger and for all (L{Account},
#: L{Budget}, docs/upstream.md#queue): at a bound the oldest queued
#: MeterValues give way to what comes; with none left, a MeterValues is
#: not queued, a StartTransaction is not forwarded (its transaction stays
#: local, as one whose charger had no back office then), and a
#: StopTransaction, whose start is queued, is queued without its
#: transactionData.

#: The messages that go through the outbox.
QUEUED_ACTIONS = frozenset({"StartTransaction", "StopTransaction", "MeterValues"})

#: The messages whose rows in the queue are lazy writes of the store
#: (L{xxterocpp.store._batches.LAZY_WRITE_DELAY}): queued, thinned, counted
#: and delivered in memory, committed with the next commit that happens
#: anyway. One delivered before that costs no write at all; a crash may
#: lose the last minutes of them, as of the controller's own meter
#: readings (docs/upstream.md#queue). A StartTransaction and a
#: StopTransaction are committed before the charger is answered, and their
#: delivery at once: a StartTransaction sent again after a crash would be a
#: second session at the back office, a StopTransaction sent again a
#: repeated stop that it may refuse, holding the queue up for hours.
LAZY_ACTIONS = frozenset({"MeterValues"})


@attr.s(eq=False, slots=True)
class Message:
    """
    A message in the outbox.

    @ivar payload: the charger's request as JSON (parsed from C{text} at
        each use), with our ids; the ids of the back office are put in when
        it is sent.
    """

    seq = attr.ib()
    action = attr.ib()
    transaction_id = attr.ib()
    #: The payload as compact JSON text, parsed when sent: a MeterValues
    #: kept parsed took four times the memory (docs/upstream.md#queue).
    text = attr.ib()
    queued_at = attr.ib()
    failures = attr.ib(default=0)
    last_error = attr.ib(default=None)
    #: For MeterValues thinned while the back office is away: False for
    #: the one queued last that the next may replace (never one sent).
    anchor = attr.ib(default=True)
    #: Whether it may be sent: False while the commit of a message that is
    #: not lazy is still to come (the back office must not get what a
    #: crash could make us forget, and send again).
    ready = attr.ib(default=True)
    #: The bytes of C{text} (L{MAX_QUEUED_BYTES}).
    size = attr.ib(default=0)
    #: Whether it was sent (since the service started): never dropped at
    #: the cap then, an answer to it may come.
    sent = attr.ib(default=False)

    @classmethod
    def of(cls, seq, action, transaction_id, payload, queued_at, *args, **kwargs):
        """
        @param payload: a dict, or its JSON text (as the store loads it).
        """
        text = payload if isinstance(payload, str) else compact(payload)
        return cls(seq, action, transaction_id, text, queued_at, *args, size=len(text), **kwargs)

    @property
    def payload(self):
        return json.loads(self.text)

    @property
    def lazy(self):
        return self.action in LAZY_ACTIONS

    def record(self, charger_id):
        """
        @return: the L{QueuedRecord} of its row in the store (the payload
            as text).
        """
        return QueuedRecord(self.seq, charger_id, self.action, self.transaction_id,
                            self.text, self.queued_at, self.failures, self.last_error)


def compact(payload):
    """
    @return: C{payload} as compact JSON text (ASCII: a byte a character).
    """
    return json.dumps(payload, separators=(",", ":"))


def _shown(rec):
    """
    @return: the dead letter C{rec} as kept in memory, for the page: without
        its payload (the file has it; parsed, a MeterValues of five sampled
        values took 3.2 kB, outside L{xxterocpp.upstream.room.MAX_MEMORY}).
    """
    return attr.evolve(rec, payload=None)


def _seq(message):
    return message.seq


class Outbox:
    """
    The messages of one charger waiting for its back office.

    @ivar messages: the L{Message}s, in the order of delivery.
    @ivar ids: C{{our transactionId: L{IdMapRecord}}}, oldest first.
    @ivar dead_letters: the newest L{DeadLetterRecord}s, oldest first (without
        their payloads: L{_shown}).
    @ivar dead_letter_count: how many dead letters the charger has in all.
    @ivar room: its L{Account}: the bytes of the queued payloads, how
        many were dropped or left local at a bound.
    """

    log = Logger()

    def __init__(self, charger_id, store, next_seq, now, budget=None):
        """
        @param store: the L{xxterocpp.store.upstream.UpstreamStore}.
        @param budget: the L{Budget} of all chargers' queues (one of its
            own if not given).
        @param next_seq: zero-argument callable giving the next C{seq}
            (shared by every charger: the order in the table).
        @param now: zero-argument callable, the time as an aware datetime.
        """
        self.charger_id = charger_id
        self._store = store
        self._next_seq = next_seq
        self._now = now
        self.messages = deque()
        self.ids = OrderedDict()
        self.dead_letters = deque(maxlen=DEAD_LETTERS_LOADED)
        self.dead_letter_count = 0
        # Our transactionIds whose StartTransaction is queued or was
        # dead-lettered: their later messages are queued behind it.
        self._starts = set()
        self._requeuing = False
        # The seqs of dead letters queued again whose move back to the
        # queue is not committed yet: the file still has them as dead
        # letters, and a re-queue that reads them there (while commits
        # fail) must not queue them a second time (L{_requeued}).
        self._moving = set()
        self.room = Account(charger_id, self.messages, budget or Budget(), self._give_way)
        self._dead_capped = False

    def restore(self, queue, dead_letters, dead_letter_count, ids):
        """
        Take over what the store kept of this charger (at service start).
        """
        for rec in queue:
            self._append(Message.of(rec.seq, rec.action, rec.transaction_id, rec.payload,
                                    rec.queued_at, rec.failures, rec.last_error))
            if rec.action == "StartTransaction":
                self._starts.add(rec.transaction_id)
        # Kept by an older version, or under other bounds.
        self.room.fit()
        for rec in dead_letters:
            self.dead_letters.append(_shown(rec))
            if rec.action == "StartTransaction":
                self._starts.add(rec.transaction_id)
        self.dead_letter_count = dead_letter_count
        for rec in ids:
            self.ids[rec.transaction_id] = rec

    # -- what is queued ----------------------------------------------------

    def forwards(self, transaction_id):
        """
        @return: whether the back office has, or will get, the
            StartTransaction of our transaction C{transaction_id} (only then
            do its MeterValues and StopTransaction go there).
        """
        return transaction_id in self.ids or transaction_id in self._starts

    def add(self, action, transaction_id, payload, thin_interval=None):
        """
        Queue a message; stored before the Deferred fires (a StartTransaction
        or StopTransaction is answered then), lazily for L{LAZY_ACTIONS}.

        @param payload: the request as JSON, with our transactionId.
        @param thin_interval: seconds, given while the back office is away:
            of a transaction's MeterValues, only the first, one per
            interval and the last stay queued (L{thin}).
        @return: a Deferred firing once stored (never failing: the store
            keeps retrying a commit that failed); the message is
            L{Message.ready} then.
        """
        now = self._now()
        replaced, anchor = None, True
        text = compact(payload)
        if action == "MeterValues" and thin_interval:
            replaced, anchor = thin(self.messages, transaction_id, payload, thin_interval,
                                    now)
            if replaced is not None:
                replaced.text = text
                self.room.resized(replaced, len(text))
                d = stored(self._store.replace(replaced.record(self.charger_id),
                                               lazy=replaced.lazy))
                self.room.fit()
                return d
        if not self.room.room(action, transaction_id, len(text)):
            if action != "StopTransaction":
                return defer.succeed(None)
            if "transactionData" in payload:
                # Always queued: its start is.
                text = compact({k: v for k, v in payload.items() if k != "transactionData"})
        message = Message(self._next_seq(), action, transaction_id, text, now,
                          anchor=anchor, size=len(text))
        message.ready = message.lazy
        self._append(message)
        if action == "StartTransaction":
            self._starts.add(transaction_id)
        d = stored(self._store.enqueue(message.record(self.charger_id), lazy=message.lazy))
        return d.addCallback(self._ready, message)

    def _append(self, message):
        self.messages.append(message)
        self.room.added(message)

    def _give_way(self, message):
        # At a bound (L{Account.give_way}).
        self._remove(message)
        stored(self._store.dropped(message.seq, lazy=message.lazy))

    @staticmethod
    def _ready(ignored, message):
        # Also when the store closed before committing it: nothing is sent
        # any more then.
        message.ready = True

    def head(self):
        """
        @return: the L{Message} to deliver next, or None.
        """
        return self.messages[0] if self.messages else None

    @property
    def depth(self):
        """
        How many messages wait.
        """
        return len(self.messages)

    def summary(self):
        """
        @return: a JSON-able summary for the status page and the API: the
            depth, the oldest message, the dead letters, the id map of
            recent sessions (flagged when the back office did not accept
            the start, or gave its transactionId to two of ours).
        """
        oldest = self.head()
        sessions = list(self.ids.values())[-10:]
        remote_ids = [i.remote_id for i in sessions]
        return {
            "queue_depth": self.depth,
            "oldest_queued": None if oldest is None else oldest.queued_at.isoformat(),
            "queue_bytes": self.room.bytes,
            "dropped": self.room.dropped,
            "dead_letters": self.dead_letter_count,
            "recent_dead_letters": [
                {"seq": d.seq, "action": d.action, "transaction_id": d.transaction_id,
                 "failed_at": d.failed_at.isoformat(), "error": d.error}
                for d in list(self.dead_letters)[-10:]],
            "sessions": [
                {"transaction_id": i.transaction_id, "remote_id": i.remote_id,
                 "status": i.status,
                 "flagged": i.status != "Accepted" or remote_ids.count(i.remote_id) > 1}
                for i in sessions],
        }

    # -- what the back office answered ----------------------------------------

    def remote_id(self, transaction_id):
        """
        @return: the back office's transactionId for ours, or None.
        """
        mapping = self.ids.get(transaction_id)
        return None if mapping is None else mapping.remote_id

    def local_id(self, remote_id):
        """
        @return: our transactionId for the back office's, or None.
        """
        for mapping in reversed(self.ids.values()):
            if mapping.remote_id == remote_id:
                return mapping.transaction_id
        return None

    def delivered(self, message, remote_id=None, status=None):
        """
        The back office answered C{message} (the head): it leaves the queue.
        For a StartTransaction, C{remote_id} and C{status} are its answer.

        @return: the L{IdMapRecord} made, or None.
        """
        self._remove(message)
        mapping = None
        if message.action == "StartTransaction":
            self._starts.discard(message.transaction_id)
            mapping = IdMapRecord(message.transaction_id, self.charger_id, remote_id, status,
                                  self._now())
            self.ids[message.transaction_id] = mapping
            while len(self.ids) > ID_MAP_KEPT:
                self.ids.popitem(last=False)
        stored(self._store.delivered(message.seq, mapping, lazy=message.lazy))
        return mapping

    def failed(self, message, error, for_good=False):
        """
        The back office did not take C{message}: a CALLERROR, or no answer
        in time.

        @param for_good: whether the error says the message is wrong
            (L{REFUSED_FOR_GOOD}).
        @return: whether it is now a dead letter (refused for good, or
            L{MAX_FAILURES} reached).
        """
        message.failures += 1
        message.last_error = error
        if for_good:
            self.dead(message, f"refused for good: {error}")
            return True
        if message.failures >= MAX_FAILURES:
            self.dead(message, f"{message.failures} failed attempts, the last: {error}")
            return True
        stored(self._store.replace(message.record(self.charger_id), lazy=message.lazy))
        return False

    def dead(self, message, error):
        """
        Make C{message} a dead letter: kept and shown, never sent again.
        """
        self._remove(message)
        rec = DeadLetterRecord(message.seq, self.charger_id, message.action,
                               message.transaction_id, message.text, message.queued_at,
                               self._now(), error)
        self.dead_letters.append(_shown(rec))
        self.dead_letter_count = min(self.dead_letter_count + 1, DEAD_LETTERS_KEPT)
        if self.dead_letter_count >= DEAD_LETTERS_KEPT and not self._dead_capped:
            self._dead_capped = True
            self.log.warn("{id}: {n} dead letters kept for the back office: from now on the"
                          " oldest is dropped for each new one", id=self.charger_id,
                          n=DEAD_LETTERS_KEPT)
        stored(self._store.dead_letter(rec))

    # -- dead letters queued again ---------------------------------------------

    def requeue(self):
        """
        Put the charger's dead letters back in its queue, at most
        L{REQUEUE_BATCH} of them and L{REQUEUE_BYTES} of payloads, the
        oldest first: the installer's, once
        the back office takes them again. They go where their order puts
        them, before the messages queued since (a transaction's messages
        stay in the order the charger sent them), with no failures
        counted.

        @return: a Deferred firing with how many were queued again, or
            None when a re-queue of this charger is under way already.
        """
        if self._requeuing:
            return defer.succeed(None)
        self._requeuing = True
        d = self._store.dead_letters(self.charger_id, REQUEUE_BATCH, REQUEUE_BYTES)
        d.addCallback(self._requeued)

        def done(result):
            self._requeuing = False
            return result

        return d.addBoth(done)

    def _requeued(self, records):
        queued = {message.seq for message in self.messages}
        # Queued already, or queued again and delivered since while the
        # store could not commit the move: not a dead letter any more.
        records = [r for r in records if r.seq not in queued and r.seq not in self._moving]
        if not records:
            return 0
        again = []
        for rec in records:
            again.append(Message.of(rec.seq, rec.action, rec.transaction_id, rec.payload,
                                    rec.queued_at, 0, rec.error))
            if rec.action == "StartTransaction":
                self._starts.add(rec.transaction_id)
        # In place: the account counts this deque.
        queue = sorted([*self.messages, *again], key=_seq)
        self.messages.clear()
        self.messages.extend(queue)
        for message in again:
            self.room.added(message)
        seqs = {rec.seq for rec in records}
        self.dead_letters = deque((d for d in self.dead_letters if d.seq not in seqs),
                                  maxlen=DEAD_LETTERS_LOADED)
        self.dead_letter_count = max(0, self.dead_letter_count - len(records))
        self._moving |= seqs

        def moved(result):
            self._moving -= seqs
            return result

        stored(self._store.requeue(sorted(seqs)).addBoth(moved))
        return len(records)

    def holds(self, message):
        """
        @return: whether C{message} is still to be delivered.
        """
        return message in self.messages

    def _remove(self, message):
        if self.messages and self.messages[0] is message:
            self.messages.popleft()
        else:
            self.messages.remove(message)
        self.room.removed(message)
