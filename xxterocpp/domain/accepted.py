# -*- test-case-name: tests.test_accepted,tests.test_knx_accepted -*-
"""
What the chargers accepted and have not done (yet): a remote start waiting
for its StartTransaction, a remote stop waiting for its StopTransaction, a
change of availability waiting for the status it asked for (at once, or
after the session when the charger answered Scheduled), and a current
limit the charger accepted but does not keep to (it offers the car more,
Current.Offered).

The control model says when a charger accepted such a command and how long
its effect may take; L{AcceptedCommands} keeps it pending
(L{CommandPending} when the adapters should know at once) until the
charger's own report shows the effect, or until the wait is over: then one
log line says the charger did not do it, and L{CommandIneffective} asks the
adapters to tell what holds instead. Kept in memory only: after a restart
nothing is pending, and the objects follow the sessions and statuses
alone.
"""

import math
from datetime import timedelta

import attr
from twisted.logger import Logger

from xxterocpp.domain.events import (
    CommandIneffective,
    CommandPending,
    LimitChanged,
    StatusChanged,
    TransactionStarted,
    TransactionStopped,
)

#: The commands kept pending, as L{Pending.command} and the events name them.
START, STOP, AVAILABILITY, LIMIT = "start", "stop", "availability", "limit"

#: Statuses in which a charger offers the car a current: what it reports as
#: offered in the others (no car, the charger holding back) says nothing of
#: its limit.
_OFFERING = frozenset({"Charging", "SuspendedEV"})

#: Statuses in which a connector counts as not available (as on the bus).
_NOT_AVAILABLE = frozenset({"Unavailable", "Faulted"})

#: How much (A) the current a charger offers may exceed its limit before it
#: counts as not kept to: meters round.
OFFERED_TOLERANCE = 0.5

#: Seconds after a limit was accepted before a reading may contradict it:
#: one sampled before the charger applied it may still be on its way.
SETTLE = 10.0


@attr.s(slots=True, eq=False)
class Pending:
    """
    A command a charger accepted whose effect has not shown yet.

    @ivar command: L{START}, L{STOP} or L{AVAILABILITY}.
    @ivar connector: the connector (0: the whole charger).
    @ivar since: when it was accepted (aware UTC).
    @ivar within: how long (s) the effect may take once it is due.
    @ivar until: when the wait ends (aware UTC); None while it has not
        begun (a change the charger Scheduled for after the session).
    @ivar transaction_id: the transaction to stop (L{STOP}).
    @ivar operative: the availability asked for (L{AVAILABILITY}).
    @ivar scheduled: whether the charger answered Scheduled (L{AVAILABILITY}).
    """

    command = attr.ib()
    charger_id = attr.ib()
    connector = attr.ib()
    since = attr.ib()
    within = attr.ib()
    until = attr.ib(default=None)
    transaction_id = attr.ib(default=None)
    operative = attr.ib(default=None)
    scheduled = attr.ib(default=False)
    timer = attr.ib(default=None, repr=False)


def _where(charger_id, connector):
    return f"{charger_id}/{connector}" if connector else charger_id


class AcceptedCommands:
    """
    The accepted commands still pending, and the limits not kept to.

    @ivar settle: L{SETTLE}, for the tests.
    """

    log = Logger()

    def __init__(self, chargers, point_status, clock, now, emit):
        """
        @param chargers: the central system's L{Charger}s by identity.
        @param point_status: C{point_status(charger_id, connector)}, what a
            connector counts as (L{xxterocpp.domain.connections}).
        @param clock: an C{IReactorTime} (the waits).
        @param now: zero-argument callable, the time as an aware UTC datetime.
        @param emit: called with each event.
        """
        self._chargers = chargers
        self._point_status = point_status
        self._clock = clock
        self._now = now
        self._emit = emit
        self.settle = SETTLE
        # (charger id, connector, command) -> Pending
        self._pending = {}
        # (charger id, connector) -> when (clock seconds) its limit was accepted
        self._accepted_at = {}
        # (charger id, connector) -> the current (A) it offers above its limit
        self._above = {}
        # (charger id, connector) of the limits that are shares of one of
        # the whole charger
        self._shares = set()

    # -- what the control model reports ---------------------------------------

    def start_accepted(self, charger_id, connector, within, before=None):
        """
        A charger accepted a remote start at C{connector}: its
        StartTransaction is due within C{within} seconds.

        @param before: the id of the transaction that ran at the connector
            when the start was sent, or None: another one running already
            is the start (its StartTransaction came before the answer).
        """
        tx = self._transaction(charger_id, connector)
        if tx is False or (tx is not None and tx.running and tx.id != before):
            return
        self._wait(Pending(START, charger_id, connector, self._now(), within))
        self._emit(CommandPending(charger_id, connector, START))

    def stop_accepted(self, charger_id, connector, transaction_id, within):
        """
        A charger accepted a remote stop of transaction C{transaction_id}:
        its StopTransaction is due within C{within} seconds.
        """
        tx = self._transaction(charger_id, connector)
        if not tx or tx.id != transaction_id or not tx.running:
            # stopped already (or no longer configured)
            return
        self._wait(Pending(STOP, charger_id, connector, self._now(), within,
                           transaction_id=transaction_id))
        self._emit(CommandPending(charger_id, connector, STOP))

    def availability_accepted(self, charger_id, connector, operative, scheduled, within):
        """
        A charger accepted a change of availability (C{connector} 0: of
        the whole charger): the status is due within C{within} seconds, for
        a change it C{scheduled} once no session runs there any more.
        """
        key = (charger_id, connector, AVAILABILITY)
        if charger_id not in self._chargers or self._reached(charger_id, connector, operative):
            self._cancel(key)
            return
        pending = Pending(AVAILABILITY, charger_id, connector, self._now(), within,
                          operative=operative, scheduled=scheduled)
        if scheduled and self._session_runs(charger_id, connector):
            self._cancel(key)
            self._pending[key] = pending
        else:
            self._wait(pending)
        if scheduled:
            # Not done yet: the adapters tell the availability that holds.
            self._emit(CommandPending(charger_id, connector or None, AVAILABILITY))

    def bounds(self, charger_id, connector, whole_charger):
        """
        The limit a charger accepted for C{connector} is its share of one
        limit of the whole charger (C{whole_charger}), or its own.
        """
        if whole_charger:
            self._shares.add((charger_id, connector))
        else:
            self._shares.discard((charger_id, connector))

    def cancel(self, charger_id, connector, command):
        """
        Wait no more for C{command} at C{connector} (a newer command
        replaces it); no event.
        """
        self._cancel((charger_id, connector, command))

    # -- what is pending ------------------------------------------------------

    def pending(self, charger_id, connector):
        """
        @return: the L{Pending} commands of C{connector} (0: of the whole
            charger), oldest first.
        """
        found = [p for (c, n, _), p in self._pending.items() if (c, n) == (charger_id, connector)]
        return sorted(found, key=lambda p: p.since)

    def offered_above(self, charger_id, connector):
        """
        @return: the current (A) the charger offers at C{connector} above
            the limit it accepted, or None while it keeps to it (as far as
            its readings tell).
        """
        return self._above.get((charger_id, connector))

    # -- the charger's reports --------------------------------------------------

    def observe(self, event):
        """
        Follow the domain's events (the central system hands them here
        before any observer): the effect of a pending command ends its
        wait.
        """
        kind = type(event)
        if kind is TransactionStarted:
            self._cancel((event.charger_id, event.connector, START))
        elif kind is TransactionStopped:
            key = (event.charger_id, event.connector, STOP)
            pending = self._pending.get(key)
            if pending is not None and pending.transaction_id == event.transaction.id:
                self._cancel(key)
            self._session_ended(event.charger_id)
        elif kind is StatusChanged:
            for key, pending in list(self._pending.items()):
                if (key[0] == event.charger_id and pending.command == AVAILABILITY
                        and self._reached(key[0], key[1], pending.operative)):
                    self._cancel(key)
        elif kind is LimitChanged:
            key = (event.charger_id, event.connector)
            self._accepted_at[key] = self._clock.seconds()
            self._above.pop(key, None)

    def offered(self, charger_id, connector):
        """
        A reading of C{connector} said what current the charger offers the
        car (C{Connector.current_offered}): more than the limit it accepted,
        while it offers, and the limit is not kept to (one log line, and
        L{CommandIneffective}); within it again, and it is (one log line).
        Called before the reading's L{MeterChanged}.
        """
        charger = self._chargers[charger_id]
        c = charger.connector(connector)
        key = (charger_id, connector)
        amps, limit = c.current_offered, c.limit
        if amps is None or limit is None or c.status not in _OFFERING:
            return
        if key in self._shares:
            # One car may take what the others leave.
            limit = sum(other.limit for n, other in charger.connectors.items()
                        if n and other.limit is not None)
        if amps <= limit + OFFERED_TOLERANCE:
            if self._above.pop(key, None) is not None:
                self.log.info("{where}: the charger now offers {amps:g} A, within its limit of "
                              "{limit:g} A", where=_where(charger_id, connector), amps=amps,
                              limit=limit)
            return
        if self._clock.seconds() - self._accepted_at.get(key, -math.inf) < self.settle:
            return
        new = key not in self._above
        self._above[key] = amps
        if new:
            detail = f"accepted a limit of {limit:g} A but offers {amps:g} A"
            self.log.warn("{where}: the charger {detail} (Current.Offered): it does not keep "
                          "to the limit", where=_where(charger_id, connector), detail=detail)
            self._emit(CommandIneffective(charger_id, connector, LIMIT, detail))

    # -- the life of the service ----------------------------------------------

    def shutdown(self):
        """
        Cancel every wait (the service stops).
        """
        for key in list(self._pending):
            self._cancel(key)

    # -- inside -------------------------------------------------------------------

    def _wait(self, pending):
        key = (pending.charger_id, pending.connector, pending.command)
        self._cancel(key)
        self._pending[key] = pending
        self._count(pending)

    def _count(self, pending):
        key = (pending.charger_id, pending.connector, pending.command)
        pending.until = self._now() + timedelta(seconds=pending.within)
        pending.timer = self._clock.callLater(pending.within, self._over, key)

    def _cancel(self, key):
        pending = self._pending.pop(key, None)
        if pending is not None and pending.timer is not None and pending.timer.active():
            pending.timer.cancel()

    def _transaction(self, charger_id, connector):
        # The connector's transaction; False for a charger no longer
        # configured (a reload while the command was under way).
        charger = self._chargers.get(charger_id)
        return False if charger is None else charger.connector(connector).transaction

    def _session_runs(self, charger_id, connector):
        charger = self._chargers.get(charger_id)
        return charger is not None and any(c.transaction is not None and c.transaction.running
                   for n, c in charger.connectors.items() if connector in (0, n))

    def _session_ended(self, charger_id):
        # What the charger Scheduled for after its session is due now.
        for key, pending in list(self._pending.items()):
            if (key[0] == charger_id and pending.command == AVAILABILITY
                    and pending.until is None and not self._session_runs(charger_id, key[1])):
                self._count(pending)

    def _statuses(self, charger_id, connector):
        charger = self._chargers.get(charger_id)
        if charger is None:
            return []
        numbers = [connector] if connector else sorted(n for n in charger.connectors if n)
        return [self._point_status(charger_id, n)[0] for n in numbers]

    def _reached(self, charger_id, connector, operative):
        statuses = self._statuses(charger_id, connector)
        return bool(statuses) and all(
            status is not None and (status not in _NOT_AVAILABLE) == operative
            for status in statuses)

    def _over(self, key):
        pending = self._pending.pop(key)
        charger_id, connector, command = key
        where = _where(charger_id, connector)
        if command == START:
            detail = f"accepted a remote start but did not start within {pending.within:g} s"
        elif command == STOP:
            detail = (f"accepted a remote stop but did not stop transaction "
                      f"{pending.transaction_id} within {pending.within:g} s")
        else:
            now = ", ".join(sorted({s or "unknown" for s in self._statuses(charger_id, connector)}))
            detail = (f"accepted to make it {'operative' if pending.operative else 'inoperative'}"
                      f"{' (Scheduled)' if pending.scheduled else ''} but it is still {now} "
                      f"after {pending.within:g} s")
        self.log.warn("{where}: the charger {detail}", where=where, detail=detail)
        self._emit(CommandIneffective(charger_id, connector or None, command, detail))

