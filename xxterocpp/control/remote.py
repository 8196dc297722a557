# -*- test-case-name: tests.test_commands,tests.test_reservations -*-
"""
Charging sessions started and stopped from the central system:
RemoteStartTransaction with the tag a start stands for, sent only while
the point may start charging (not unavailable, not reserved for another
tag, not charging already), with the profile a smart start carries; and
RemoteStopTransaction of the running session, after which a charger with
C{finishing-recovery} is watched (L{xxterocpp.control.finishing}).
"""

from xxterocpp.control.limits import start_profile
from xxterocpp.control.sender import done, refused
from xxterocpp.domain.model import casefold
from xxterocpp.ocpp import messages as m


class RemoteSessions:
    """
    Remote starts and stops, each checked against the domain first.
    """

    def __init__(self, central, sender, finishing):
        """
        @param central: the L{xxterocpp.domain.central.CentralSystem}.
        @param sender: the L{xxterocpp.control.sender.Sender}.
        @param finishing: the L{xxterocpp.control.finishing.FinishingRecovery}
            told of every answered stop.
        """
        self.central = central
        self.sender = sender
        self.finishing = finishing

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
        if c.transaction is not None and c.transaction.running and c.transaction.accepted:
            return done("already charging")
        if charging_profile is None:
            charging_profile = start_profile(charger, point, id_tag, self.central.now())
        return self.sender.call(charger, m.RemoteStartTransactionRequest(
            connector_id=point.connector, id_tag=id_tag, charging_profile=charging_profile))

    def stop(self, charger, connector):
        """
        RemoteStopTransaction of the running transaction at C{connector}.

        @return: a Deferred firing with a
            L{xxterocpp.control.sender.CommandResult}.
        """
        tx = charger.connector(connector).transaction
        if tx is None or not tx.running:
            return refused("no transaction to stop")
        d = self.sender.call(charger, m.RemoteStopTransactionRequest(transaction_id=tx.id))
        return d.addCallback(self.finishing.stop_answered, charger.id, connector)
