# -*- test-case-name: tests.test_smart -*-
"""
What the Smart Energy Manager tells the control model
(L{xxterocpp.control.Controller}): a smart session's plan as a schedule
(a TxProfile) or, at a charger that refused one, as limits alone; the
plan's current now as the point's limit; a share of the site limit as the
limit of a point without a smart session; and the end of the steering,
after which the point's own limit holds again.
"""

from twisted.logger import Logger

from xxterocpp.control import SILENT, UnknownChargingPoint
from xxterocpp.smart import planner


class Steering:
    """
    Sends the manager's decisions to the charging points.
    """

    log = Logger()

    def __init__(self, controller, limits_only):
        """
        @param controller: the L{xxterocpp.control.Controller}.
        @param limits_only: C{limits_only(session)}, called once the charger
            refused the plan's profile: from then on the session's plan goes
            out as limits, one per slot.
        """
        self.controller = controller
        self._limits_only = limits_only

    def send(self, session):
        """
        Send the session's plan as a schedule (for a charger that takes
        profiles), and note when it is to be sent again.
        """
        if not session.profiles:
            # The limits alone carry the plan (L{steer}).
            session.refresh_at = None
            return
        point = session.point
        schedule = planner.to_schedule(session.plan, self.controller.schedule_periods(point.id))
        session.refresh_at = schedule.refresh_at
        d = self.controller.set_schedule(point.id, point.connector, session.transaction.id,
                                         schedule.start, schedule.periods)
        d.addCallback(self._profile_sent, session)

    def _profile_sent(self, result, session):
        if result.accepted:
            return
        if result.status in SILENT:
            # Sent again when the charger is back (boot) or at the next
            # re-plan.
            self.log.warn("{id}/{connector}: smart plan not sent ({status})",
                          id=session.point.id, connector=session.point.connector,
                          status=result.status)
            return
        self.log.warn("{id}/{connector}: charger refused the charging profile ({status} "
                      "{detail}); sending the plan as limits per slot", id=session.point.id,
                      connector=session.point.connector, status=result.status,
                      detail=result.detail)
        session.profiles = False
        session.refresh_at = None
        self._limits_only(session)

    def steer(self, session, amps):
        """
        Make the plan's current now the point's limit: the limit per slot
        for a charger that refuses profiles; beside a TxProfile, the limit
        in force that the bus and the page show (and the bound a
        ChargePointMaxProfile sets).
        """
        if amps != session.sent_limit:
            session.sent_limit = amps
            self.controller.steer(session.point.id, session.point.connector, amps)

    def share(self, key, amps):
        """
        Steer a charging point without a smart session to its share of the
        site limit.

        @param key: its C{(charger id, connector)}.
        """
        self.log.info("{id}/{connector}: {amps} A of the site limit", id=key[0],
                      connector=key[1], amps=amps)
        self.controller.steer(key[0], key[1], amps)

    def release(self, key):
        """
        End the steering of a charging point, C{(charger id, connector)}:
        its own limit holds again.
        """
        try:
            self.controller.release(*key)
        except UnknownChargingPoint:
            # No longer configured: there is no limit to put back.
            pass
