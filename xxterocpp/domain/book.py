# -*- test-case-name: tests.test_domain,tests.test_domain_state,tests.test_handlers -*-
"""
The transaction book: every transaction running and the recently finished
ones, the transaction ids, and the meter readings booked on them (for a
charger with C{session-register}, read as the energy of the session,
docs/quirks.md#session-register); and the budget of the rows a charger's
transactions add to the store (docs/ocpp.md#start-budget).
"""

from collections import OrderedDict

from twisted.internet import defer
from twisted.logger import Logger

from xxterocpp.domain.events import MeterChanged, TransactionStarted, TransactionStopped
from xxterocpp.domain.model import Transaction, casefold, stored
from xxterocpp.pacing import Pacer, TokenBucket

#: How many finished transactions are kept in memory, to answer a retried
#: StartTransaction with the same id and to recognise late meter values.
RECENT_TRANSACTIONS = 200

#: How many transactions one connector may start at once, and one more
#: every L{START_INTERVAL} seconds: each is a row in the store for good. A
#: real connector starts a few sessions a day; one back from a month
#: offline uploads a few hundred at once, which pass whole. Beyond, a
#: charger in a loop (or a hostile one) gets its starts refused: a thousand
#: rows and one a minute, not one per frame it may send. Each configured
#: charging point has a budget of its own; the connectors of a charger that
#: are none (it may name up to 255) share one, so that a charger's
#: connector count does not multiply its rows.
START_BURST = 1000
START_INTERVAL = 60

#: The transactionId of a start beyond its connector's budget: no
#: transaction has it (ids begin at 1) and none is booked.
UNBOOKED = 0

#: How many StopTransactions of unknown or finished transactions one
#: charger may have recorded at once (each a row too), and one more every
#: L{ORPHAN_INTERVAL} seconds; beyond, they are acknowledged and counted.
ORPHAN_BURST = 1000
ORPHAN_INTERVAL = 60

#: Seconds between two log lines about one charger's starts or stops
#: beyond its budget (the count of those in between in the next).
OVER_BUDGET_LOG_INTERVAL = 60

#: The settings (scope: the charger id) that keep its budgets across a
#: restart: C{ROW_BUDGET + "start/" + connector} (C{"start/other"}: its
#: connectors that are no charging point) and C{ROW_BUDGET + "stop"}, each
#: C{[tokens, when]} (POSIX seconds of the central system's time). A lazy
#: write after each start or orphan stop booked that leaves a budget more
#: than L{KEPT_BELOW} short of full, so it goes with that row's own commit:
#: a restart (or a crash loop) does not fill them again.
ROW_BUDGET = "row_budget/"

#: How far short of full a budget may be without being written: a real
#: connector's is full again a minute after each session, and its starts
#: cost no write; a restart gives a charger that many rows at most.
KEPT_BELOW = 10


def _dedup_key(charger_id, connector, id_tag, meter_start, timestamp):
    # What identifies a retried StartTransaction (stored with the
    # transaction: keep the format).
    return "|".join((charger_id, str(connector), casefold(id_tag), str(meter_start),
                     timestamp.isoformat()))


class TransactionBook:
    """
    The transactions of the central system's chargers.

    Starting and stopping one is booked in memory at once and answered by a
    Deferred that fires once it is stored: a charger must be told only what
    survives a crash.
    """

    log = Logger()

    def __init__(self, store, chargers, now, emit, dated=None, seconds=None, offered=None,
                 wall=None):
        """
        @param chargers: the central system's L{Charger}s by identity (the
            running transaction of each connector is kept on it).
        @param now: zero-argument callable, the time as an aware UTC datetime.
        @param emit: called with each event.
        @param dated: C{dated(timestamp)} judges a charger's start or stop
            time (None: it gave none) and returns C{(time to book,
            uncertain)} (L{xxterocpp.domain.trusted.TrustedTime.dated});
            by default a given time is booked as it is, a missing one as
            C{now()}.
        @param seconds: a monotonic clock (seconds) for the budgets; by
            default C{now()}'s.
        @param offered: C{offered(charger_id, connector)} is called when a
            reading told the current the charger offers the car, before
            its L{MeterChanged} (L{xxterocpp.domain.accepted.AcceptedCommands.offered}).
        @param wall: the time of day (POSIX seconds) the budgets are kept
            with (L{ROW_BUDGET}); by default C{now()}'s.
        """
        self._store = store
        self._chargers = chargers
        self._now = now
        self._emit = emit
        self._dated = dated or (lambda timestamp: (timestamp or now(), False))
        self._offered = offered or (lambda charger_id, connector: None)
        self._transactions = {}
        self._recent = OrderedDict()
        self._dedup = {}
        self._last_id = 0
        self._last_sessions = {}
        # Transaction id -> the Deferreds waiting for its row to be stored
        # (retries of its StartTransaction), while the insert is not; the id
        # maps to None once an insert failed (a retry inserts again).
        self._unstored = {}
        #: The L{RowBudget} of the chargers' starts and orphan stops.
        self.budget = RowBudget(
            seconds or (lambda: now().timestamp()),
            save=lambda charger_id, key, value: store.put_setting(
                charger_id, key, value, lazy=True, quiet=True),
            wall=wall or (lambda: now().timestamp()))

    def load(self):
        """
        Restore the transaction ids, the open transactions and the recently
        finished ones from the store (at start-up).
        """
        store = self._store
        self._last_id = store.last_transaction_id()
        for record in store.load_recent_transactions(RECENT_TRANSACTIONS):
            tx = Transaction.from_record(record)
            self._remember(tx)
            self._ended(tx)
        for record in store.load_open_transactions():
            tx = self._transactions.get(record.id) or Transaction.from_record(record)
            self._remember(tx)
            charger = self._chargers.get(tx.charger_id)
            if charger is not None and tx.running:
                charger.connector(tx.connector).transaction = tx

    def get(self, transaction_id):
        """
        @return: the running or recently finished L{Transaction} of that id,
            or None.
        """
        return self._transactions.get(transaction_id)

    def last_session(self, charger_id, connector):
        """
        @return: the last stopped accepted L{Transaction} of a connector
            (also one from before a restart, if among the
            L{RECENT_TRANSACTIONS} latest), or None.
        """
        return self._last_sessions.get((charger_id, connector))

    def retry_of(self, charger_id, connector, id_tag, meter_start, timestamp):
        """
        @return: the transaction a StartTransaction with these values
            started already (the charger retries it when our answer got
            lost), or None.
        """
        return self._dedup.get(_dedup_key(charger_id, connector, id_tag, meter_start, timestamp))

    def running_elsewhere(self, id_tag, charger_id, connector):
        """
        @return: whether C{id_tag} has a transaction running at another
            connector than C{connector} of C{charger_id}.
        """
        folded = casefold(id_tag)
        return any(tx.running and tx.accepted and casefold(tx.id_tag) == folded
                   and (tx.charger_id, tx.connector) != (charger_id, connector)
                   for tx in self._transactions.values())

    def budgeted(self, charger_id, connector, meter_start, timestamp, point=True):
        """
        Take a new start at a connector from its budget (L{START_BURST},
        one more every L{START_INTERVAL} s). A start beyond it is not to be
        booked (the caller answers it with L{UNBOOKED}); it still says that
        the session running at the connector is over, which is closed at
        its meterStart as by a booked start.

        @param point: whether the connector is a configured charging point
            (with a budget of its own); the others of the charger share one.
        @return: whether the start may be booked.
        """
        if self.budget.start(charger_id, connector, point):
            return True
        self._close_forgotten(charger_id, connector, meter_start, *self._dated(timestamp))
        return False

    def start(self, charger_id, connector, id_tag, meter_start, timestamp, reservation_id,
              status):
        """
        Book a new transaction at a connector with the next id; one still
        running there is closed first (its StopTransaction was lost).

        @param status: the authorization status it started with.
        @return: a Deferred firing with the L{Transaction} once it is stored.
        """
        self._last_id += 1
        # While our clock is wrong, a charger's time earlier than the one we
        # trusted is no time at all: the session gets ours, marked.
        start_time, uncertain = self._dated(timestamp)
        tx = Transaction(
            id=self._last_id, charger_id=charger_id, connector=connector, id_tag=id_tag,
            start_time=start_time, meter_start=meter_start, reservation_id=reservation_id,
            start_status=status,
            dedup_key=_dedup_key(charger_id, connector, id_tag, meter_start, timestamp),
            time_uncertain=uncertain,
        )
        self._close_forgotten(charger_id, connector, meter_start, start_time, uncertain)
        c = self._chargers[charger_id].connector(connector)
        self._remember(tx)
        c.transaction = tx
        c.energy_register_wh = meter_start
        reservation = c.reservation
        if tx.accepted and reservation is not None and (
                reservation_id == reservation.id or reservation.admits(id_tag)):
            # OCPP 1.6 §5.13: the reserved tag's transaction ends the
            # reservation (a refused one started nothing). Another tag the
            # charger let in does not: the reservation holds until it is
            # freed or expires.
            c.reservation = None
        self.log.info("{id}/{connector}: transaction {tx} started by {tag} ({status}), "
                      "meter {meter} Wh", id=charger_id, connector=connector, tx=tx.id,
                      tag=id_tag, status=status, meter=meter_start)
        self._emit(TransactionStarted(charger_id, connector, tx))
        return self._insert(tx)

    def _close_forgotten(self, charger_id, connector, meter_start, start_time, uncertain):
        """
        Close the transaction still running at a connector where a new one
        starts at C{start_time} (its StopTransaction was lost): it ends
        there, at the new meterStart.
        """
        previous = self._chargers[charger_id].connector(connector).transaction
        if previous is None or not previous.running:
            return
        self.log.warn("{id}/{connector}: transaction {old} never stopped; closing it at "
                      "the new meterStart", id=charger_id, connector=connector, old=previous.id)
        previous.time_uncertain = previous.time_uncertain or uncertain
        stored(self._close(previous, meter_start, start_time, "Other", None))

    def _insert(self, tx):
        # Not silenced: a start that could not be stored must not be
        # answered (the charger gets a CALLERROR and tries again).
        self._unstored[tx.id] = []

        def done(result):
            for waiting in self._unstored.pop(tx.id, None) or ():
                waiting.callback(tx)
            return tx

        def failed(failure):
            waiters, self._unstored[tx.id] = self._unstored.get(tx.id) or (), None
            for waiting in waiters:
                waiting.errback(failure)
            return failure

        return self._store.insert_transaction(tx).addCallbacks(done, failed)

    def stored_start(self, tx):
        """
        @return: a Deferred firing with C{tx} once its row is stored: at once
            when it is, after the insert still under way, or after a new
            insert when the first one failed (a retried StartTransaction is
            answered only once the transaction survives a crash, like the
            first).
        """
        if tx.id not in self._unstored:
            return defer.succeed(tx)
        waiters = self._unstored[tx.id]
        if waiters is None:
            return self._insert(tx)
        waiting = defer.Deferred()
        waiters.append(waiting)
        return waiting

    def stop(self, charger_id, transaction_id, meter_stop, timestamp, reason, id_tag,
             reading=None):
        """
        Close a running transaction of the charger; a stop of an unknown or
        finished one is recorded apart (it is acknowledged all the same).

        @param meter_stop: the final register (Wh), or None for the last
            reading (meter-less chargers omit it).
        @param timestamp: when it stopped, or None for now.
        @param reading: a L{MeterReading} sent with the stop, or None.
        @return: a Deferred firing once the stop is stored (failing when
            it cannot be: the store closed first); of an unknown or
            stopped one, once recorded, or at once.
        """
        now = self._now()
        stop_time, uncertain = self._dated(timestamp)
        tx = self._transactions.get(transaction_id)
        if tx is None or tx.charger_id != charger_id or not tx.running:
            why = "unknown" if tx is None or tx.charger_id != charger_id else "already stopped"
            if not self.budget.orphan_stop(charger_id, transaction_id, meter_stop):
                return defer.succeed(None)
            # A line each, within the charger's budget of lines.
            self._chargers[charger_id].chatter(
                self.log, "warn", self.budget.seconds(),
                "{id}: StopTransaction for {why} transaction {tx} acknowledged and recorded",
                id=charger_id, why=why, tx=transaction_id)
            return stored(self._store.record_orphan_stop(
                charger_id, transaction_id, meter_stop, stop_time, reason, now, why))
        charger = self._chargers[charger_id]
        if reading is not None:
            self._apply(charger, tx.connector, tx, reading)
        if meter_stop is None:
            # Meter-less chargers (Phoenix CHARX free mode) omit it.
            meter_stop = tx.energy_register_wh
        elif meter_stop < tx.meter_start and charger.quirks.has("session-register"):
            # Its register restarted at 0 for the session, this one too:
            # kept as the register reading from meterStart on.
            meter_stop = tx.meter_start + meter_stop
        tx.time_uncertain = tx.time_uncertain or uncertain
        # Not silenced: a stop the store gave up (it closed before the
        # commit, a full disk) must not be answered, or the charger drops
        # it from its queue; it gets a CALLERROR and sends it again.
        return self._close(tx, meter_stop, stop_time, reason, id_tag)

    def meter_values(self, charger_id, connector, transaction_id, reading):
        """
        Book a connector's meter reading (on its running transaction).

        @param connector: the connector, or None for the charger's main
            meter (not a charging point: ignored).
        @param transaction_id: the transaction the charger names, or None.
        """
        if connector is None:
            return
        charger = self._chargers[charger_id]
        tx = charger.connector(connector).transaction
        if transaction_id is not None and (tx is None or tx.id != transaction_id):
            known = self._transactions.get(transaction_id)
            if known is not None and not known.running:
                # Closing values after StopTransaction (Ocular LTE): the
                # session is booked, only the live readings move on.
                tx = None
        self._apply(charger, connector, tx, reading)

    def _apply(self, charger, number, tx, reading):
        connector = charger.connector(number)
        energy = reading.energy_wh
        if energy is not None:
            if tx is not None and tx.running and charger.quirks.has("session-register"):
                # The reading is the session's energy so far: kept as the
                # register reading from meterStart on, it is booked as such.
                energy += tx.meter_start
            connector.energy_register_wh = energy
            if tx is not None and tx.running:
                tx.energy_register_wh = energy
                tx.energy_register_time = reading.timestamp
                # Quiet: a reading a frame, none of them waited for.
                self._store.update_meter(tx.id, energy, reading.timestamp or self._now(),
                                         quiet=True)
        if reading.currents is not None:
            connector.currents = reading.currents
        if reading.power_w is not None:
            connector.power_w = reading.power_w
        connector.meter_time = reading.timestamp
        if reading.current_offered is not None:
            connector.current_offered = reading.current_offered
            self._offered(charger.id, number)
        self._emit(MeterChanged(charger.id, number))

    def _close(self, tx, meter_stop, stop_time, reason, id_tag):
        if stop_time < tx.start_time:
            # Possible only if a clock was stepped meanwhile (ours once it
            # is right again, after a step back: docs/architecture.md#time).
            tx.time_uncertain = True
        tx.meter_stop, tx.stop_time, tx.stop_reason, tx.stop_id_tag = (
            meter_stop, stop_time, reason, id_tag)
        charger = self._chargers.get(tx.charger_id)
        if charger is not None:
            connector = charger.connector(tx.connector)
            if connector.transaction is tx:
                connector.transaction = None
                if meter_stop is not None:
                    # The register the charger reports with the stop is a
                    # reading like any other (refused sessions too).
                    connector.energy_register_wh = meter_stop
                if connector.currents or connector.power_w:
                    connector.currents = {phase: 0.0 for phase in connector.currents}
                    connector.power_w = 0.0 if connector.power_w is not None else None
                    self._emit(MeterChanged(tx.charger_id, connector.number))
        self._remember(tx)
        self._ended(tx)
        self.log.info("{id}/{connector}: transaction {tx} stopped ({reason}), {energy} Wh",
                      id=tx.charger_id, connector=tx.connector, tx=tx.id,
                      reason=reason, energy=tx.energy_wh)
        self._emit(TransactionStopped(tx.charger_id, tx.connector, tx))
        return self._store.stop_transaction(tx.id, meter_stop, stop_time, reason, id_tag,
                                            tx.time_uncertain)

    def _ended(self, tx):
        # The latest id is the latest session (ids only grow).
        key = (tx.charger_id, tx.connector)
        last = self._last_sessions.get(key)
        if tx.accepted and not tx.running and (last is None or last.id < tx.id):
            self._last_sessions[key] = tx

    def _remember(self, tx):
        self._transactions[tx.id] = tx
        if tx.dedup_key:
            self._dedup[tx.dedup_key] = tx
        if not tx.running:
            self._recent[tx.id] = tx
            while len(self._recent) > RECENT_TRANSACTIONS:
                old_id, old = self._recent.popitem(last=False)
                self._transactions.pop(old_id, None)
                self._dedup.pop(old.dedup_key, None)


class RowBudget:
    """
    How many rows a charger's transactions may add to the store: starts per
    connector (L{START_BURST}), orphan stops per charger (L{ORPHAN_BURST});
    what is beyond is counted and logged one line a minute per charger.

    The budgets are kept in the settings (L{ROW_BUDGET}) and restored at a
    start (L{restore}), refilled for the time in between.

    @ivar refused_starts: how many starts were beyond their budget.
    @ivar unrecorded_stops: how many orphan stops were.
    """

    log = Logger()

    def __init__(self, seconds, save=None, wall=None):
        """
        @param seconds: a monotonic clock (seconds).
        @param save: C{save(charger_id, key, value)} keeps a budget's level
            (lazily), or None.
        @param wall: the time of day (POSIX seconds), kept with a level.
        """
        self.seconds = self._seconds = seconds
        self._save = save
        self._wall = wall or seconds
        # (charger, connector) -> the TokenBucket of its starts; charger ->
        # that of its orphan stops. Made full, at the first use.
        self._starts = {}
        self._orphans = {}
        self._lines = Pacer(OVER_BUDGET_LOG_INTERVAL)
        self.refused_starts = 0
        self.unrecorded_stops = 0

    def start(self, charger_id, connector, point=True):
        """
        @param point: whether the connector is a configured charging point:
            it has a budget of its own; the charger's other connectors
            share one.
        @return: whether a new start at the connector may be booked (one
            taken from its budget).
        """
        key = (charger_id, connector if point else None)
        name = f"start/{connector if point else 'other'}"
        if self._take(self._starts, key, START_BURST, START_INTERVAL, name):
            return True
        self.refused_starts += 1
        where = (f"connector {connector}" if point else
                 f"connectors that are no charging point (the last: {connector})")
        self._over(charger_id, "start", "StartTransactions at {where} beyond their"
                   f" budget ({START_BURST}, and one every {START_INTERVAL} s) refused, none"
                   " booked", where=where)
        return False

    def orphan_stop(self, charger_id, transaction_id, meter_stop):
        """
        @return: whether the charger's StopTransaction of an unknown or
            stopped transaction may be recorded (one taken from its budget).
        """
        if self._take(self._orphans, charger_id, ORPHAN_BURST, ORPHAN_INTERVAL, "stop"):
            return True
        self.unrecorded_stops += 1
        self._over(charger_id, "stop", "StopTransactions of unknown or stopped transactions"
                   f" beyond its budget ({ORPHAN_BURST}, and one every {ORPHAN_INTERVAL} s)"
                   " acknowledged, not recorded (the last: transaction {tx}, meterStop"
                   " {meter})", tx=transaction_id, meter=meter_stop)
        return False

    def _take(self, budgets, key, burst, interval, name):
        now = self._seconds()
        bucket = budgets.get(key)
        if bucket is None:
            bucket = budgets[key] = TokenBucket(1 / interval, burst, now)
        if bucket.level(now) < 1:
            return False
        bucket.take(now)
        if self._save is not None and bucket.tokens < burst - KEPT_BELOW:
            charger_id = key[0] if type(key) is tuple else key
            self._save(charger_id, ROW_BUDGET + name, [round(bucket.tokens, 3), self._wall()])
        return True

    def restore(self, settings):
        """
        Take the budgets kept in C{settings} (the central system's, at
        start-up), each refilled for the time since it was kept.
        """
        now, wall = self._seconds(), self._wall()
        for (charger_id, key), value in settings.items():
            if not isinstance(key, str) or not key.startswith(ROW_BUDGET):
                continue
            name = key[len(ROW_BUDGET):]
            try:
                tokens, at = (float(v) for v in value)
            except (TypeError, ValueError):
                continue
            if name == "stop":
                budgets, budget_key, burst, interval = (
                    self._orphans, charger_id, ORPHAN_BURST, ORPHAN_INTERVAL)
            elif name.startswith("start/"):
                connector = name[len("start/"):]
                if connector != "other" and not connector.isdigit():
                    continue
                budgets, budget_key, burst, interval = (
                    self._starts, (charger_id, None if connector == "other" else int(connector)),
                    START_BURST, START_INTERVAL)
            else:
                continue
            bucket = budgets[budget_key] = TokenBucket(1 / interval, burst, now)
            bucket.tokens = max(0.0, min(burst, tokens + max(0.0, wall - at) / interval))

    def _over(self, charger_id, kind, text, **fields):
        held = self._lines.due((charger_id, kind), self._seconds())
        if held is not None:
            self.log.warn("{id}: " + text + "{more}", id=charger_id, more=(
                f" ({held} more since the last such line)" if held else ""), **fields)
