# -*- test-case-name: tests.test_upstream_uplink,tests.test_upstream_backoffice,tests.test_upstream_attacks,tests.test_upstream_deadletters,tests.test_upstream_writes -*-
"""
The outbox delivered to the back office: one transaction message at a time,
in the charger's order, with the back office's transactionId and
reservationId put in at sending time; a message it did not take is sent
again after a growing pause, or kept as a dead letter once it refused it
for good or failed too often (L{xxterocpp.upstream.outbox}).
"""

from functools import partial

from twisted.internet.defer import succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from xxterocpp.ocpp import messages as m
from xxterocpp.ocpp.rpc import CallError, CallTimeout, NotConnected
from xxterocpp.upstream.outbox import LAZY_ACTIONS, REFUSED_FOR_GOOD

#: An answer to a StartTransaction without a transactionId is taken as a
#: GenericError with this description: the back office's answer is wrong,
#: not our message, so it is retried like an InternalError.
NO_TRANSACTION_ID = "the answer has no transactionId"

#: The first and the longest pause (s) before a queued message the back
#: office did not take (a CALLERROR, no answer) is sent again.
RETRY = (2.0, 300.0)


class Delivery:
    """
    One charger's outbox on its way to the back office, while the back
    office accepts the charger (L{Uplink.accepted}).
    """

    log = Logger()

    def __init__(self, uplink):
        """
        @param uplink: the charger's L{xxterocpp.upstream.uplink.Uplink}.
        """
        self.uplink = uplink
        self._sending = None
        self._failures = 0
        self._retry = None

    def queue(self, action, transaction_id, request):
        """
        Put a transaction message in the outbox, thinned MeterValues while
        the back office is away, and send it when its turn comes: a lazy
        one (L{xxterocpp.upstream.outbox.LAZY_ACTIONS}) at once, any other
        once it is stored.

        @return: a Deferred firing once it is stored; for a lazy one, at
            once (its commit may be minutes away).
        """
        uplink = self.uplink
        thin = uplink.sample_interval if self.stalled else None
        d = uplink.outbox.add(action, transaction_id, m.encode(request), thin)
        if action in LAZY_ACTIONS:
            self.pump()
            return succeed(None)
        return d.addCallback(self._queued)

    def _queued(self, ignored):
        self.pump()

    @property
    def stalled(self):
        """
        Whether the queue does not move: the back office is away, or the
        head waits for its retry (it may for hours,
        L{xxterocpp.upstream.outbox.MAX_FAILURES}). A transaction's
        MeterValues are thinned meanwhile, so that the queue grows no
        faster than while the back office is away.
        """
        return not self.uplink.accepted or self._retry is not None

    def again(self):
        """
        Send the head now, the pause forgotten (dead letters were queued
        again: the installer says the back office takes them).
        """
        self.halt()
        self._failures = 0
        self.pump()

    def halt(self):
        """
        The connection is gone: no retry is due until the back office
        accepts the charger again.
        """
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None

    def pump(self):
        """
        Send the oldest queued message, unless one is on its way, a retry
        is due, or it waits for its commit
        (L{xxterocpp.upstream.outbox.Message.ready}).
        """
        uplink = self.uplink
        if not uplink.accepted or self._sending is not None or self._retry is not None:
            return
        while True:
            message = uplink.outbox.head()
            if message is None or not message.ready:
                return
            request = self._request(message)
            if request is not None:
                break
        self._sending = message
        # What the back office may have got is never replaced by thinning,
        # nor dropped at the queue's cap.
        message.anchor = True
        message.sent = True
        uplink.session.call(request, late=partial(self._late, message)).addCallbacks(
            self._delivered, self._not_delivered, (message,), None, (message,))

    def _retried(self):
        self._retry = None
        self.pump()

    def _request(self, message):
        """
        @return: the request of C{message} with the back office's ids, or
            None when it can never be sent (it is a dead letter then).
        """
        outbox = self.uplink.outbox
        spec = m.ACTIONS[message.action]
        try:
            request, _ = m.decode(spec.request, message.payload, lenient=True)
        except m.ValidationError as e:
            outbox.dead(message, f"not a valid {message.action}: {e.message}")
            return None
        if message.action == "StartTransaction":
            reservation = request.reservation_id
            if reservation is not None:
                reservation = self.uplink.relayed.remote_reservation(reservation)
                request = m.replace(request, reservation_id=reservation)
            return request
        remote = outbox.remote_id(message.transaction_id)
        if remote is None:
            outbox.dead(message, "its StartTransaction got no transactionId from the"
                                 " back office")
            return None
        return m.replace(request, transaction_id=remote)

    def _late(self, message, result):
        """
        The back office answered C{message} after the call timeout. Its
        answer stands while the message is still to be delivered: sending
        it again would be a second transaction at the back office.
        """
        if isinstance(result, Failure):
            return
        if not self.uplink.outbox.holds(message):
            self._twice(message, result)
            return
        if self._sending is not None and self._sending is not message:
            # Dead letters queued again went before it and one is on its
            # way: this one is delivered all the same.
            self._taken(result, message)
            return
        self.halt()
        self._sending = message
        self._delivered(result, message)

    def _twice(self, message, response):
        """
        An answer to a message sent again, after the answer to another
        sending of it was taken: for a StartTransaction, a transaction of
        the back office's own that nothing will stop.
        """
        if message.action == "StartTransaction":
            self.log.warn("{id}: the back office answered StartTransaction {seq} twice;"
                          " its transaction {remote} is one too many",
                          id=self.uplink.charger_id, seq=message.seq,
                          remote=response.transaction_id)

    def _delivered(self, response, message):
        if message is not self._sending:
            self._twice(message, response)
            return
        if message.action == "StartTransaction" and response.transaction_id is None:
            self._not_delivered(Failure(CallError(m.GENERIC_ERROR, NO_TRANSACTION_ID)), message)
            return
        self._sending = None
        self._failures = 0
        self._taken(response, message)
        self.pump()

    def _taken(self, response, message):
        """
        The back office took C{message}: it leaves the queue; a
        StartTransaction's answer goes into the id map.
        """
        uplink = self.uplink
        if message.action == "StartTransaction" and response.transaction_id is None:
            # A late answer without the id: the message stays queued.
            return
        if message.action == "StartTransaction":
            info = response.id_tag_info
            status = (info.status if info is not None else None) or "Invalid"
            self._check_reused(message.transaction_id, response.transaction_id)
            mapping = uplink.outbox.delivered(message, response.transaction_id, status)
            if info is not None:
                uplink.verdicts.remember(message.payload.get("idTag", ""), info)
            if status != "Accepted":
                uplink.upstream.refused(uplink, mapping)
        else:
            uplink.outbox.delivered(message)

    def _check_reused(self, transaction_id, remote_id):
        """
        Warn when the back office gives one of our transactions the id it
        gave another that is still running here: both are flagged
        (L{Uplink.status}), and its commands with that id concern the newer.
        """
        uplink = self.uplink
        other = uplink.outbox.local_id(remote_id)
        tx = None if other is None else uplink.central.book.get(other)
        if tx is not None and tx.running:
            self.log.warn("{id}: the back office gave transaction {tx} its transactionId"
                          " {remote}, which it gave our running transaction {other} already",
                          id=uplink.charger_id, tx=transaction_id, remote=remote_id, other=other)

    def _not_delivered(self, failure, message):
        failure.trap(CallError, CallTimeout, NotConnected)
        if message is not self._sending:
            return
        uplink = self.uplink
        self._sending = None
        if failure.check(NotConnected):
            # Sent again once the back office accepts the charger again.
            return
        error = failure.value
        for_good = isinstance(error, CallError) and error.code in REFUSED_FOR_GOOD
        if uplink.outbox.failed(message, str(error), for_good):
            self.log.warn("{id}: the back office did not take {action} {seq} ({why}){times}:"
                          " kept as a dead letter", id=uplink.charger_id, action=message.action,
                          seq=message.seq, why=error,
                          times="" if for_good else f", {message.failures} attempts")
            self.pump()
            return
        self._failures += 1
        first, longest = RETRY
        delay = min(first * 2 ** (self._failures - 1), longest)
        self.log.info("{id}: {action} to the back office: {why}; again in {delay} s",
                      id=uplink.charger_id, action=message.action,
                      why=failure.getErrorMessage(), delay=delay)
        self.halt()
        self._retry = uplink.clock.callLater(delay, self._retried)
