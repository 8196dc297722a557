# -*- test-case-name: tests.test_commands,tests.test_reservations -*-
"""
Charging sessions started and stopped from the central system:
RemoteStartTransaction with the tag a start stands for, sent only while
the point may start charging (not unavailable, not reserved for another
tag, not charging already), with the profile a smart start carries; and
RemoteStopTransaction of the running session, after which a charger with
C{finishing-recovery} is watched (L{xxterocpp.control.finishing}). What the
charger accepts is pending in the domain (L{xxterocpp.domain.accepted})
until its StartTransaction or StopTransaction comes, for as long as
L{Waits} says.
"""

import attr

from xxterocpp.control.configuration import integer
from xxterocpp.control.limits import start_profile
from xxterocpp.control.sender import done, refused
from xxterocpp.domain.model import casefold
from xxterocpp.ocpp import messages as m


#: The ConnectionTimeOut (s) of a charger that did not report one.
CONNECTION_TIMEOUT = 60

#: The longest ConnectionTimeOut (s) believed: a charger gives the driver
#: a minute or a few to plug in. One that reports more (a day, or a number
#: of twenty digits, which no timer or date can hold) gets an hour: the
#: start is not awaited for longer.
MAX_CONNECTION_TIMEOUT = 3600

#: Seconds past a charger's ConnectionTimeOut for the StartTransaction of a
#: remote start it accepted: a car plugged in at the last moment.
START_MARGIN = 5.0

#: Seconds for the StopTransaction of a remote stop a charger accepted.
STOP_WAIT = 30.0

#: Seconds for the status a ChangeAvailability asked for, once due (at
#: once, or once the session ends when the charger answered Scheduled).
AVAILABILITY_WAIT = 30.0


@attr.s
class Waits:
    """
    How long the effect of a command a charger accepted may take before it
    counts as not carried out (L{xxterocpp.domain.accepted}); changed by
    the tests.

    @ivar connection_timeout: L{CONNECTION_TIMEOUT}.
    @ivar start_margin: L{START_MARGIN}.
    @ivar stop: L{STOP_WAIT}.
    @ivar availability: L{AVAILABILITY_WAIT}.
    """

    connection_timeout = attr.ib(default=CONNECTION_TIMEOUT)
    start_margin = attr.ib(default=START_MARGIN)
    stop = attr.ib(default=STOP_WAIT)
    availability = attr.ib(default=AVAILABILITY_WAIT)

    def start(self, charger):
        """
        @return: how long (s) after an accepted remote start its
            StartTransaction may take: the ConnectionTimeOut the charger
            reported (the time it gives the driver to plug in; at most
            L{MAX_CONNECTION_TIMEOUT}), plus L{start_margin}.
        """
        timeout = integer(charger.configuration.get("ConnectionTimeOut"), 0)
        if timeout <= 0:
            timeout = self.connection_timeout
        return min(timeout, MAX_CONNECTION_TIMEOUT) + self.start_margin


class RemoteSessions:
    """
    Remote starts and stops, each checked against the domain first.
    """

    def __init__(self, central, sender, finishing, waits):
        """
        @param central: the L{xxterocpp.domain.central.CentralSystem}.
        @param sender: the L{xxterocpp.control.sender.Sender}.
        @param finishing: the L{xxterocpp.control.finishing.FinishingRecovery}
            told of every answered stop.
        @param waits: the L{Waits}.
        """
        self.central = central
        self.sender = sender
        self.finishing = finishing
        self.waits = waits

    def start(self, charger, point, id_tag, smart, charging_profile):
        """
        RemoteStartTransaction at C{point} with C{id_tag} (None: the point's
        remote_tag, or its smart_tag when C{smart}). Refused while
        unavailable (L{xxterocpp.domain.central.CentralSystem.point_status})
        or reserved: no charging may start then, unless the start names the
        reservation's own tag (the point's remote_tag and smart_tag name
        none: they are what KNX and the page start with).

        @param charger: the L{xxterocpp.domain.model.Charger} of C{point}.
        @param charging_profile: a C{ChargingProfile} (purpose TxProfile, no
            transactionId) for the new transaction, or None: for the
            smart_tag, 0 A until the session is planned
            (L{xxterocpp.control.limits.start_profile}).
        @return: a Deferred firing with a
            L{xxterocpp.control.sender.CommandResult}.
        """
        c = charger.connector(point.connector)
        names_a_tag = id_tag is not None and casefold(id_tag) not in (
            casefold(point.remote_tag), casefold(point.smart_tag))
        if id_tag is None:
            id_tag = point.smart_tag if smart else point.remote_tag
        if not id_tag:
            return refused("no smart_tag is configured for this charging point")
        status, _ = self.central.point_status(charger.id, point.connector)
        if status in ("Unavailable", "Faulted"):
            return refused(f"the charging point is {status}")
        reservation = c.reservation
        if reservation is not None and reservation.holds(self.central.now()) and not (
                names_a_tag and reservation.admits(id_tag)):
            return refused("the charging point is reserved")
        tx = c.transaction
        if tx is not None and tx.running and tx.accepted:
            return done("already charging")
        if charging_profile is None:
            charging_profile = start_profile(charger, point, id_tag, self.central.now())
        before = tx.id if tx is not None and tx.running else None
        d = self.sender.call(charger, m.RemoteStartTransactionRequest(
            connector_id=point.connector, id_tag=id_tag, charging_profile=charging_profile))
        return d.addCallback(self._start_answered, charger, point.connector, before)

    def _start_answered(self, result, charger, connector, before):
        if result.accepted:
            self.central.accepted.start_accepted(charger.id, connector,
                                                 self.waits.start(charger), before)
        return result

    def stop(self, charger, connector):
        """
        RemoteStopTransaction of the running transaction at C{connector}.

        @return: a Deferred firing with a
            L{xxterocpp.control.sender.CommandResult}.
        """
        tx = charger.connector(connector).transaction
        if tx is None or not tx.running:
            # A start the charger accepted and has not begun is over too.
            self.central.accepted.cancel(charger.id, connector, "start")
            return refused("no transaction to stop")
        d = self.sender.call(charger, m.RemoteStopTransactionRequest(transaction_id=tx.id))
        d.addCallback(self._stop_answered, charger, connector, tx.id)
        return d.addCallback(self.finishing.stop_answered, charger.id, connector)

    def _stop_answered(self, result, charger, connector, transaction_id):
        if result.accepted:
            self.central.accepted.stop_accepted(charger.id, connector, transaction_id,
                                                self.waits.stop)
        return result
