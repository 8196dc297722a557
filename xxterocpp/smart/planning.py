# -*- test-case-name: tests.test_smart -*-
"""
How the Smart Energy Manager plans a smart session (L{planner.plan}): from
the tariff and the dynamic prices, with the PV surplus the session follows
for the slot now, below the point's own limit and, for the slot now,
within the point's share of the site limit.
"""

from twisted.logger import Logger

from xxterocpp.smart import planner


class Planning:
    """
    The inputs of the plans (tariff, prices, surplus) and the plan of each
    session.

    @ivar surplus_w: the PV surplus last reported (W, positive =
        exporting), or None.
    """

    log = Logger()

    def __init__(self, config, controller, site, tz):
        """
        @param config: the L{xxterocpp.config.Config} in force.
        @param controller: the L{xxterocpp.control.Controller}, whose
            C{own_limit} caps each plan.
        @param site: the L{xxterocpp.smart.site.SiteShare}, whose share
            caps the plan's slot now.
        @param tz: the local zone of departures and tariff (L{None}: the
            system's).
        """
        self.controller = controller
        self.site = site
        self.tz = tz
        self.surplus_w = None
        self._tariff = planner.Tariff(config.smart.tariff)
        self._prices = []

    def reconfigure(self, config):
        """
        Take the tariff of a re-read configuration.
        """
        self._tariff = planner.Tariff(config.smart.tariff)

    def add_price(self, price, at, now):
        """
        A dynamic price per kWh from C{at} until the next one.
        """
        # Prices superseded before now are no use to any plan.
        current = [p for p in self._prices if p[0] <= now]
        self._prices = current[-1:] + [p for p in self._prices if p[0] > now]
        self._prices = sorted(self._prices + [(at, price)], key=lambda p: p[0])

    def follow_surplus(self, sessions, seconds, now):
        """
        Share the surplus between the C{sessions}, the oldest first, each
        by its follower's hysteresis (C{seconds}: the clock now); a session
        whose surplus current changes is to be planned again.
        """
        if self.surplus_w is None:
            return
        # The export reading already has our cars' draw taken off: add back
        # what they were told to draw, or the car would chase its own tail.
        available = self.surplus_w + sum(
            s.capacity.watts(s.plan.current_at(now)) for s in sessions if s.plan is not None)
        for session in sorted(sessions, key=lambda s: s.transaction.start_time):
            before = session.follower.current
            current = session.follower.update(seconds, max(0.0, available))
            available -= session.capacity.watts(current)
            if current != before:
                session.plan = None

    def wish(self, session, now):
        """
        What a smart session wants now, before sharing: its uncapped plan's
        current.
        """
        return self._plan(session, now, caps=()).current_at(now)

    def _plan(self, session, now, caps):
        session.cap = self.controller.own_limit(*session.key)
        missing = max(0.0, session.energy_wh - session.delivered_wh)
        surplus = ()
        if session.follower.current:
            surplus = [(now, now + planner.SLOT,
                        session.capacity.watts(session.follower.current))]
        return planner.plan(now, session.departure, missing, session.capacity, self._tariff,
                            prices=self._prices, surplus=surplus, caps=caps, tz=self.tz)

    def compute(self, session, now):
        """
        @return: the session's plan from C{now}, not kept.
        """
        caps = ()
        share = self.site.shares.get(session.key)
        if share is not None:
            # The share holds until the next re-balance; later slots get the
            # point's full capacity, re-shared when they come.
            caps = [(now, now + planner.SLOT, share)]
        return self._plan(session, now, caps)

    def replan(self, session, now):
        """
        Plan the session again from C{now} (L{compute}) and keep the plan.
        """
        session.plan = self.compute(session, now)
        session.planned_from_wh = session.delivered_wh
        plan = session.plan
        self.log.info("{id}/{connector}: planned {wh:.0f} Wh by {departure} for {cost:.2f} "
                      "(at once: {immediate:.2f}){unreachable}", id=session.point.id,
                      connector=session.point.connector, wh=plan.planned_wh,
                      departure=plan.departure.isoformat(), cost=plan.cost,
                      immediate=plan.immediate_cost,
                      unreachable="" if plan.reachable else ", not reachable: full current")
