# -*- test-case-name: tests.test_upstream_uplink,tests.test_upstream_backoffice,tests.test_upstream_attacks,tests.test_upstream_writes -*-
"""
L{Upstream}: the back office adapter's front. It keeps an L{Uplink} per
charger with a C{[charger.upstream]}, connects it while the charger is
connected (it observes the domain's events), and sits between the
charger's CALLs and the domain (L{handle}, the relay of
L{xxterocpp.ocpp.handlers.dispatch}): the charger is answered by the
controller as always, and what the back office must get is sent or queued
before that answer (stored before it, for a StartTransaction and a
StopTransaction).
"""

from twisted.application import service
from twisted.logger import Logger

from xxterocpp.domain.events import ChargerConnected, ChargerDisconnected, LimitChanged
from xxterocpp.domain.model import stored
from xxterocpp.ocpp import messages as m
from xxterocpp.store.upstream import UpstreamStore
from xxterocpp.upstream.link import Link
from xxterocpp.upstream.outbox import Outbox
from xxterocpp.upstream.room import Budget
from xxterocpp.upstream.uplink import Uplink


def _after(answer, write):
    """
    @return: the charger's answer once C{write} (a store write) fired.
    """
    return write.addCallback(lambda ignored: answer)


# The charger's CALLs the back office hears of: step(upstream, uplink,
# request, local) returns the answer; local(request) is the domain's.


def _authorize(upstream, uplink, req, local):
    asking = upstream.undecided(uplink, None, req.id_tag)
    if asking is None:
        return local(req)
    return asking.addCallback(lambda ignored: local(req))


def _start_transaction(upstream, uplink, req, local):
    book = upstream.central.book
    if book.retry_of(uplink.charger_id, req.connector_id, req.id_tag, req.meter_start,
                     req.timestamp) is not None:
        # Answered (and queued) already: its answer got lost.
        return local(req)

    def start(ignored=None):
        answer = local(req)
        tx = book.retry_of(uplink.charger_id, req.connector_id, req.id_tag, req.meter_start,
                           req.timestamp)
        if tx is None:
            return answer
        return _after(answer, uplink.delivery.queue("StartTransaction", tx.id, req))

    asking = upstream.undecided(uplink, req.connector_id, req.id_tag)
    return start() if asking is None else asking.addCallback(start)


def _stop_transaction(upstream, uplink, req, local):
    answer = local(req)
    if not uplink.outbox.forwards(req.transaction_id):
        Upstream.log.info("{id}: StopTransaction of transaction {tx} not forwarded: its start"
                          " never went to the back office", id=uplink.charger_id,
                          tx=req.transaction_id)
        return answer
    tx = upstream.central.book.get(req.transaction_id)
    if req.meter_stop is None and tx is not None and tx.meter_stop is not None:
        # A meter-less charger: the back office needs the register the
        # controller booked.
        req = m.replace(req, meter_stop=int(tx.meter_stop))
    return _after(answer, uplink.delivery.queue("StopTransaction", req.transaction_id, req))


def _meter_values(upstream, uplink, req, local):
    answer = local(req)
    tx = req.transaction_id
    if tx is None:
        uplink.send_live(req)
    elif uplink.outbox.forwards(tx):
        # A lazy write (xxterocpp.upstream.outbox.LAZY_ACTIONS): the answer
        # does not wait for its commit, as for the controller's own reading.
        uplink.delivery.queue("MeterValues", tx, req)
    return answer


def _status_notification(upstream, uplink, req, local):
    answer = local(req)
    uplink.send_live(req)
    return answer


def _boot_notification(upstream, uplink, req, local):
    answer = local(req)
    uplink.charger_booted(req)
    return answer


def _progress(action):
    """
    @return: the step of a firmware or diagnostics status notification.
    """

    def step(upstream, uplink, req, local):
        answer = local(req)
        uplink.progress(action, req)
        return answer

    return step


#: What the back office makes of each CALL of a charger; the others are
#: the controller's alone (Heartbeat, DataTransfer, security events).
STEPS = {
    "Authorize": _authorize,
    "BootNotification": _boot_notification,
    "DiagnosticsStatusNotification": _progress("DiagnosticsStatusNotification"),
    "FirmwareStatusNotification": _progress("FirmwareStatusNotification"),
    "MeterValues": _meter_values,
    "StartTransaction": _start_transaction,
    "StatusNotification": _status_notification,
    "StopTransaction": _stop_transaction,
}


class Upstream(service.Service):
    """
    Every charger's back office.

    @ivar uplinks: the L{Uplink} of each charger with a back office.
    """

    log = Logger()

    #: Makes each uplink's L{Link} (tests connect in memory instead).
    link_factory = Link

    def __init__(self, central, controller, store, clock, tables=None):
        """
        @param central: the L{xxterocpp.domain.central.CentralSystem}.
        @param controller: the L{xxterocpp.control.Controller} the back
            office's commands go through.
        @param store: the L{xxterocpp.store.Store}.
        @param clock: the reactor (time, and the connections).
        @param tables: the back office's tables, by default an
            L{UpstreamStore} of C{store}.
        """
        self.central = central
        self.controller = controller
        self.clock = clock
        self.store = store
        self.uplinks = {}
        self._outboxes = {}
        # The memory of all chargers' queues together (docs/upstream.md#queue).
        self._budget = Budget()
        self._tables = tables or UpstreamStore(store)
        self._last_seq = 0
        self._restored = {}
        central.authority = self.authority

    @property
    def settings(self):
        """
        The persisted settings, C{{(scope, key): value}}: the central
        system's, which the back offices' are kept with.
        """
        return self.central.settings

    def save(self, scope, key, value):
        """
        Persist a setting (kept in the central system's settings).
        """
        self.central.settings[(scope, key)] = value
        stored(self.store.put_setting(scope, key, value))

    def _next_seq(self):
        self._last_seq += 1
        return self._last_seq

    # -- life cycle --------------------------------------------------------

    def startService(self):
        """
        Restore the outboxes (the store is open, the domain loaded).
        """
        super().startService()
        state = self._tables.load()
        self._last_seq = state.last_seq
        # Each charger's part, handed over (and let go) when its outbox is
        # made: what the restore drops at the bound of memory, and what is
        # delivered later, is not held on to here.
        self._restored = restored = {}
        for i, records in ((0, state.queue), (1, state.dead_letters), (3, state.ids)):
            for rec in records:
                restored.setdefault(rec.charger_id, [[], [], 0, []])[i].append(rec)
        for charger_id, n in state.dead_letter_counts.items():
            restored.setdefault(charger_id, [[], [], 0, []])[2] = n
        kept = {r.charger_id for r in state.queue} | set(state.dead_letter_counts)
        self.reconfigure(self.central.config)
        for charger_id in sorted(kept - set(self.uplinks)):
            # Kept, and shown, for when it has a back office again.
            outbox = self._outbox(charger_id)
            if outbox.depth:
                self.log.warn("{id}: {n} messages for its back office are kept, but it has no"
                              " [charger.upstream] any more", id=charger_id, n=outbox.depth)

    def stopService(self):
        super().stopService()
        for uplink in self.uplinks.values():
            uplink.stop()

    def reconfigure(self, config):
        """
        Follow the configuration: a charger whose C{[charger.upstream]}
        changed connects anew, one without it any more is disconnected
        (its outbox stays in the store).
        """
        for charger_id, uplink in list(self.uplinks.items()):
            if config.upstream(charger_id) != uplink.config:
                uplink.stop()
                del self.uplinks[charger_id]
        for charger_id in config.charger_ids():
            upstream = config.upstream(charger_id)
            if upstream is None or charger_id in self.uplinks:
                continue
            uplink = self.uplinks[charger_id] = Uplink(charger_id, upstream, self,
                                                       self._outbox(charger_id))
            charger = self.central.chargers.get(charger_id)
            if charger is not None and charger.session is not None:
                uplink.start()

    def _outbox(self, charger_id):
        """
        @return: the charger's L{Outbox}, restored from the store the first
            time (it outlives a change of the back office's configuration).
        """
        outbox = self._outboxes.get(charger_id)
        if outbox is None:
            outbox = self._outboxes[charger_id] = Outbox(
                charger_id, self._tables, self._next_seq, self.central.now, self._budget)
            queue, dead, dead_count, ids = self._restored.pop(charger_id, ((), (), 0, ()))
            outbox.restore(queue, dead, dead_count, ids)
        return outbox

    def observe(self, event):
        """
        A domain event: a charger's uplink opens when it connects and
        closes when it goes, the back office's profiles follow the limits
        in force (subscribed by the composition root).
        """
        uplink = self.uplinks.get(event.charger_id)
        if uplink is None or not self.running:
            return
        if type(event) is ChargerConnected:
            uplink.start()
        elif type(event) is ChargerDisconnected:
            uplink.stop()
        elif type(event) is LimitChanged:
            uplink.limit_changed(event.connector)

    # -- between the charger and the domain ----------------------------------------

    def handle(self, charger_id, action, request, local):
        """
        The relay of L{xxterocpp.ocpp.handlers.dispatch}: the charger's CALL
        is answered by C{local(request)} (the domain), and the back office
        hears of it; a transaction message is queued before the answer (a
        StartTransaction or StopTransaction stored before it).
        """
        uplink = self.uplinks.get(charger_id)
        step = STEPS.get(action) if uplink is not None else None
        if step is None:
            return local(request)
        return step(self, uplink, request, local)

    def undecided(self, uplink, connector, id_tag):
        """
        Ask the back office about a tag the controller does not accept and
        no kept verdict decides, when it is connected.

        @return: a Deferred firing once it answered (or did not in time),
            or None when there is nothing to ask.
        """
        if not uplink.accepted or uplink.verdicts.knows(id_tag):
            return None
        verdict = self.central.local_verdict(uplink.charger_id, connector, id_tag)
        if verdict.status != "Invalid":
            return None
        return uplink.verdicts.ask(id_tag)

    def authority(self, charger_id, id_tag):
        """
        The central system's outside authority: the back office's verdict on
        a tag the controller does not accept (L{xxterocpp.upstream.verdicts.Verdicts.verdict}).
        """
        uplink = self.uplinks.get(charger_id)
        return None if uplink is None else uplink.verdicts.verdict(id_tag)

    def refused(self, uplink, mapping):
        """
        The back office did not accept a forwarded StartTransaction: the
        session is flagged (the id map keeps its answer) and, when the
        configuration says so, stopped.
        """
        self.log.warn("{id}: the back office answered transaction {tx}'s start {status}",
                      id=uplink.charger_id, tx=mapping.transaction_id, status=mapping.status)
        tx = self.central.book.get(mapping.transaction_id)
        if uplink.config.stop_refused and tx is not None and tx.running:
            stored(self.controller.stop(uplink.charger_id, tx.connector))

    def requeue(self, charger_id):
        """
        Put a charger's dead letters back in its queue
        (L{xxterocpp.upstream.outbox.Outbox.requeue}) and, with its back
        office connected, send at once (docs/upstream.md#queue).

        @return: a Deferred firing with C{(queued again, dead letters
            left)}, or C{(None, left)} while a re-queue of it is under way.
        @raise KeyError: the charger has no queue for a back office (it never
            had one configured, and nothing of one is kept).
        """
        outbox = self._outboxes[charger_id]

        def queued(count):
            if count:
                self.log.info("{id}: {n} dead letters queued again for the back office",
                              id=charger_id, n=count)
                uplink = self.uplinks.get(charger_id)
                if uplink is not None:
                    uplink.delivery.again()
            return count, outbox.dead_letter_count

        return outbox.requeue().addCallback(queued)

    def status(self):
        """
        @return: per charger with a back office, a JSON-able summary
            (L{Uplink.status}) for the status page and C{/api/status}; and
            per charger without one any more whose messages for it are kept,
            the same with C{link} C{"unconfigured"}.
        """
        summary = {charger_id: uplink.status() for charger_id, uplink in self.uplinks.items()}
        for charger_id, outbox in self._outboxes.items():
            if charger_id not in summary and (outbox.depth or outbox.dead_letter_count):
                summary[charger_id] = dict(
                    outbox.summary(), url=None, identity=None, link="unconfigured",
                    since=None, last_error=None, registration=None, tags=[])
        return summary

