# -*- test-case-name: tests.test_smart -*-
"""
The Smart Energy Manager as a service: it watches the domain for sessions
started with a charging point's C{smart_tag}, plans them with
L{xxterocpp.smart.planner} and steers the chargers through the control model:
the plan as a TxProfile (for chargers that refuse it, only the limits below),
and the plan's current now as the point's limit (L{Controller.steer}), from
the StartTransaction on and again at every change, so a session never draws
more than its plan. It re-plans when a price or surplus telegram arrives, when
the car draws less than planned, at slot boundaries, when departure or energy
are changed through the API and when the point's own limit (which caps the
plan) is set during the session. When the session ends, the point's own limit
holds again (L{Controller.release}). With C{[smart] site_limit} it also shares
the site's current between all charging points, smart or not
(L{xxterocpp.smart.site}).

The manager follows the domain and decides when; how a session is planned
is L{xxterocpp.smart.planning}'s, what goes to the chargers
L{xxterocpp.smart.steering}'s.
"""

from datetime import datetime, time

import attr
from twisted.application import service
from twisted.logger import Logger

from xxterocpp.control.limits import is_smart
from xxterocpp.smart import planner
from xxterocpp.smart.planning import Planning
from xxterocpp.smart.site import SiteShare
from xxterocpp.smart.steering import Steering
from xxterocpp.domain.events import (
    ChargerBooted,
    ClockStepped,
    MeterChanged,
    TransactionStarted,
    TransactionStopped,
)
from xxterocpp.domain.model import utc_from_seconds

#: The car is "behind the plan" (re-plan from the metered energy) when it
#: lags by more than both of these.
LAG_WH = 500.0
LAG_FRACTION = 0.1

#: Seconds between a StartTransaction and its first TxProfile: the charger
#: must have its transactionId (answered once on disk) before a TxProfile
#: names it (L{SmartManager.start_delay}). The plan's current goes out as a
#: limit at once: it names no transaction.
START_DELAY = 5.0

#: The surplus follower's hysteresis (s): surplus worth the minimum current
#: for this long starts solar charging, below the stop current for this long
#: stops it (L{SmartManager.surplus_start_delay}, C{surplus_stop_delay}).
SURPLUS_START_DELAY = 60.0
SURPLUS_STOP_DELAY = 300.0

class NoSmartSession(LookupError):
    """
    No smart session runs at that charging point.
    """


@attr.s(eq=False)
class _Session:
    """
    A smart session and its current plan.

    @ivar departure: a local C{time} or an aware C{datetime}.
    @ivar planned_from_wh: the session's energy when the plan was made.
    @ivar profiles: False once the charger refused a charging profile: then
        the plan goes out as limits only, one per slot.
    @ivar sent_limit: the plan's current last steered (A).
    @ivar cap: the point's own limit (A, the control model's C{own_limit})
        as of the last plan: the plan stays below it.
    """

    point = attr.ib()
    transaction = attr.ib()
    departure = attr.ib()
    energy_wh = attr.ib()
    follower = attr.ib()
    plan = attr.ib(default=None)
    planned_from_wh = attr.ib(default=0.0)
    profiles = attr.ib(default=True)
    sent_limit = attr.ib(default=None)
    refresh_at = attr.ib(default=None)
    not_before = attr.ib(default=0.0)
    cap = attr.ib(default=None)

    @property
    def key(self):
        return (self.point.id, self.point.connector)

    @property
    def capacity(self):
        most = self.point.max_current
        if self.cap is not None:
            most = min(most, self.cap)
        return planner.Capacity(most, self.point.phases)

    @property
    def delivered_wh(self):
        return self.transaction.energy_wh or 0

    def behind(self, now):
        """
        @return: whether the car lags behind the plan (then re-plan from
            the metered energy).
        """
        plan = self.plan
        if plan is None or now >= plan.departure:
            return False
        expected = plan.energy_between(plan.now, now)
        lag = expected - (self.delivered_wh - self.planned_from_wh)
        return lag > max(LAG_WH, LAG_FRACTION * expected)

    def due(self, wall, seconds, pace=1.0):
        """
        @param wall: the time of day now (POSIX seconds).
        @param seconds: the monotonic clock now.
        @param pace: how far the time of day moves on per monotonic second
            (L{xxterocpp.domain.trusted.TrustedTime.pace}).
        @return: in how many (monotonic) seconds something changes for this
            session: its first plan and a change of the surplus follower,
            the plan's boundaries and a schedule refresh (times of day).
        """
        if self.plan is None:
            return [self.not_before - seconds]
        due = [(t.timestamp() - wall) / pace for t in self.plan.boundaries()]
        if self.refresh_at is not None:
            due.append((self.refresh_at.timestamp() - wall) / pace)
        if self.follower.next_change() is not None:
            due.append(self.follower.next_change() - seconds)
        return due

    def describe(self, plan):
        """
        @return: the session with C{plan} as a dict (L{SmartManager.session}).
        """
        return {
            "charger_id": self.point.id,
            "connector": self.point.connector,
            "transaction_id": self.transaction.id,
            "departure": plan.departure.isoformat(),
            "energy_wh": self.energy_wh,
            "delivered_wh": self.delivered_wh,
            "planned_wh": round(plan.planned_wh),
            "reachable": plan.reachable,
            "surplus_current": self.follower.current,
            "cost": round(plan.cost, 2),
            "immediate_cost": round(plan.immediate_cost, 2),
            "via": "profile" if self.profiles else "limits",
            "plan": [{"start": s.start.isoformat(), "end": s.end.isoformat(),
                      "current": s.current, "surplus_current": s.surplus_current,
                      "price": s.price} for s in plan.slots],
        }


class SmartManager(service.Service):
    """
    The Smart Energy Manager.

    @ivar config: the L{xxterocpp.config.Config} in force.
    """

    log = Logger()

    def __init__(self, central, controller, clock, config, tz=None, start_delay=START_DELAY,
                 surplus_start_delay=SURPLUS_START_DELAY,
                 surplus_stop_delay=SURPLUS_STOP_DELAY, wall=None, pace=None):
        """
        @param central: the L{xxterocpp.domain.central.CentralSystem}.
        @param controller: the L{xxterocpp.control.Controller}.
        @param clock: an C{IReactorTime} on a monotonic clock: the delays
            and the surplus hysteresis.
        @param wall: the time of day (POSIX seconds) of departures, slots
            and prices, by default C{clock.seconds}; after a step of it
            (L{ClockStepped}) every session is planned again.
        @param pace: how far C{wall} moves on per second of C{clock} now
            (the central system's C{time.pace}: 99 % while the time given
            out runs slow after a step back), by default 1: the timers of
            slot boundaries wait for C{wall} to reach them, not 1 % less.
        @param tz: the local zone of departures and tariff (L{None}: the
            system's).
        @param start_delay: seconds from a StartTransaction to its first
            plan (L{START_DELAY}).
        @param surplus_start_delay: seconds the surplus must be worth the
            minimum current before solar charging starts.
        @param surplus_stop_delay: seconds the surplus must stay below the
            stop current before it stops.

        The three delays are attributes too; changed, they hold for the
        sessions that start afterwards.
        """
        self.start_delay = start_delay
        self.surplus_start_delay = surplus_start_delay
        self.surplus_stop_delay = surplus_stop_delay
        self.central = central
        self.controller = controller
        self.clock = clock
        self.wall = wall or clock.seconds
        self.pace = pace or (lambda: 1.0)
        self.config = config
        self._site = SiteShare()
        self._planning = Planning(config, controller, self._site, tz)
        self._steering = Steering(controller, self._limits_only)
        self._sessions = {}
        self._timer = None
        controller.observe_limits(self._own_limit_changed)

    @property
    def tz(self):
        """
        The local zone of departures and tariff (L{None}: the system's).
        """
        return self._planning.tz

    # -- the service -----------------------------------------------------

    def startService(self):
        super().startService()
        # Smart sessions that were running before a restart.
        for charger in self.central.chargers.values():
            for connector in charger.connectors.values():
                if connector.transaction is not None and connector.transaction.running:
                    self._adopt(connector.transaction, 0.0)
            for point in self.config.charging_points(charger.id):
                connector = charger.connectors.get(point.connector)
                if connector is None or connector.transaction is None or (
                        not connector.transaction.running):
                    # Steered by a session that ended while the service was
                    # down (or before the release was saved).
                    self._steering.release((point.id, point.connector))
        self._update()

    def stopService(self):
        super().stopService()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def reconfigure(self, config):
        """
        Apply a re-read configuration (SIGHUP).
        """
        self.config = config
        self._planning.reconfigure(config)
        for key, session in list(self._sessions.items()):
            point = config.charger(*key)
            if point is None or not is_smart(point, session.transaction.id_tag):
                del self._sessions[key]
                self._steering.release(key)
            else:
                session.point = point
                session.plan = None
        self._update()

    # -- inputs ------------------------------------------------------------

    def set_price(self, price, at=None):
        """
        A dynamic price per kWh (the C{prices_ga} telegram): it holds from
        C{at} (default now) until the next price, or until the tariff
        changes. Every smart session is re-planned.
        """
        now = self._now()
        at = at or now
        self._planning.add_price(price, at, now)
        self.log.info("smart: price {price} per kWh from {at}", price=price, at=at.isoformat())
        self._update(replan=True)

    def set_surplus(self, watts):
        """
        The PV surplus (the C{surplus_ga} telegram, W, positive =
        exporting).
        """
        self._planning.surplus_w = watts
        self._update()

    def session(self, charger_id, connector):
        """
        @return: the smart session at a charging point as a dict for the
            API and status page (C{charger_id}, C{connector},
            C{transaction_id}, C{departure}, C{energy_wh}, C{delivered_wh},
            C{planned_wh}, C{reachable}, C{surplus_current} (A from PV
            surplus now), C{cost}, C{immediate_cost}, C{via}, C{plan}: a
            list of C{{start, end, current, price}}), or L{None}.
        """
        session = self._sessions.get((charger_id, connector))
        if session is None:
            return None
        plan = session.plan
        if plan is None:
            # Not stored: storing would count as sent (a plan waiting for
            # start_delay, or just invalidated, must still go out).
            plan = self._planning.compute(session, self._now())
        return session.describe(plan)

    def update_session(self, charger_id, connector, departure=None, energy_wh=None):
        """
        Change a smart session's departure and/or energy, and re-plan it.

        @param departure: a local C{time} of day or an aware C{datetime}.
        @param energy_wh: the energy the whole session should get (Wh, > 0).
        @raise NoSmartSession: when none runs there.
        @raise ValueError: for a bad departure or energy.
        """
        session = self._sessions.get((charger_id, connector))
        if session is None:
            raise NoSmartSession(f"no smart session at {charger_id} connector {connector}")
        if departure is not None:
            if isinstance(departure, datetime) and departure.tzinfo is None:
                raise ValueError("departure must be a time of day or an aware date-time")
            if not isinstance(departure, (time, datetime)):
                raise ValueError("departure must be a time of day or an aware date-time")
            session.departure = departure
        if energy_wh is not None:
            if not energy_wh > 0:
                raise ValueError(f"energy_wh must be more than 0, not {energy_wh!r}")
            session.energy_wh = energy_wh
        session.plan = None
        self._update()

    # -- domain events -----------------------------------------------------

    def observe(self, event):
        """
        Follow a domain event: smart sessions start, end and re-plan from
        meter readings (the composition root subscribes this to the central
        system).
        """
        if not self.running:
            return
        if type(event) is MeterChanged:
            # The most frequent event (every MeterValues) first.
            key = (event.charger_id, event.connector)
            self._site.metered(key, self.clock.seconds())
            session = self._sessions.get(key)
            if session is not None and session.behind(self._now()):
                self.log.info("{id}/{connector}: the car draws less than planned, re-planning",
                              id=key[0], connector=key[1])
                session.plan = None
                self._update()
        elif isinstance(event, TransactionStarted):
            self._adopt(event.transaction, self.clock.seconds() + self.start_delay)
            self._update()
        elif isinstance(event, TransactionStopped):
            key = (event.charger_id, event.connector)
            if self._sessions.pop(key, None) is not None:
                self.log.info("{id}/{connector}: smart session ended", id=key[0],
                              connector=key[1])
            self._site.shares.pop(key, None)
            # However it ended, the point's own limit holds again, whether
            # the plan went out as a profile or as limits.
            self._steering.release(key)
            self._update()
        elif isinstance(event, ChargerBooted):
            # A rebooted charger has forgotten its profiles.
            for session in self._sessions.values():
                if session.point.id == event.charger_id:
                    session.plan = None
            self._update()
        elif isinstance(event, ClockStepped):
            # Slots, departures and prices are times of day.
            if self._sessions:
                self.log.info("smart: the clock stepped by {delta:+.0f} s, planning again",
                              delta=event.delta)
            for session in self._sessions.values():
                session.plan = None
            self._update()

    def _own_limit_changed(self, charger_id, connector):
        """
        The own limit of a point the manager steers was set (KNX, page,
        API): plan and share again below it.
        """
        session = self._sessions.get((charger_id, connector))
        if session is not None:
            session.plan = None
        self._update()

    def _adopt(self, tx, not_before):
        point = self.config.charger(tx.charger_id, tx.connector)
        if (point is None or tx.start_status != "Accepted" or not tx.running
                or not is_smart(point, tx.id_tag)):
            return
        smart = self.config.smart
        follower = planner.SurplusFollower(
            planner.Capacity(point.max_current, point.phases),
            start_delay=self.surplus_start_delay, stop_delay=self.surplus_stop_delay)
        session = _Session(point, tx, smart.departure, smart.energy_wh, follower,
                           not_before=not_before)
        self._sessions[session.key] = session
        self.log.info("{id}/{connector}: smart session of transaction {tx}", id=point.id,
                      connector=point.connector, tx=tx.id)

    # -- deciding ----------------------------------------------------------

    def _now(self):
        return utc_from_seconds(int(self.wall()))

    def _update(self, replan=False):
        """
        Bring every decision up to date: surplus, shares, plans, what the
        chargers were sent, and the next timer.
        """
        if not self.running:
            return
        now = self._now()
        # One reading of the monotonic clock for the whole decision: a
        # session found waiting for its first plan is scheduled from the
        # same instant, however long the planning took (else, on a slow
        # machine, its wake-up came out negative and was dropped, leaving
        # the first TxProfile to the next slot boundary).
        seconds = self.clock.seconds()
        self._planning.follow_surplus(list(self._sessions.values()), seconds, now)
        self._share(now)
        for session in list(self._sessions.values()):
            if seconds < session.not_before:
                # The TxProfile waits for the transactionId, the limit need
                # not: from its first second the session draws no more than
                # its plan.
                plan = self._planning.compute(session, now)
                self._steering.steer(session, plan.current_at(now))
                continue
            due = session.refresh_at is not None and now >= session.refresh_at
            if replan or due or session.plan is None:
                self._planning.replan(session, now)
                self._steering.send(session)
            self._steering.steer(session, session.plan.current_at(now))
        self._schedule(now, seconds)

    def _share(self, now):
        limit = self.config.smart.site_limit
        if not limit:
            for key in list(self._site.shares):
                session = self._sessions.get(key)
                if session is None:
                    self._steering.release(key)
                else:
                    session.plan = None
            self._site.shares.clear()
            return
        wishes, draws = {}, {}
        for charger in self.central.chargers.values():
            for connector in charger.connectors.values():
                tx = connector.transaction
                point = self.config.charger(charger.id, connector.number)
                if tx is None or not tx.running or point is None:
                    continue
                key = (charger.id, connector.number)
                session = self._sessions.get(key)
                if session is None:
                    wishes[key] = self.controller.own_limit(*key)
                else:
                    wishes[key] = self._planning.wish(session, now)
                draws[key] = connector.current
        for key, amps in self._site.share(limit, self.clock.seconds(), now, wishes,
                                          draws).items():
            session = self._sessions.get(key)
            if session is not None:
                session.plan = None
            else:
                self._steering.share(key, amps)

    # -- waking up ---------------------------------------------------------

    def _limits_only(self, session):
        """
        The charger refused the session's profile: wake up for its slots,
        whose limits carry the plan now.
        """
        if self._sessions.get(session.key) is session:
            self._schedule(self._now(), self.clock.seconds())

    def _schedule(self, now, seconds):
        """
        Wake up at the next moment something is due: a slot boundary, a
        surplus state change, a schedule refresh, a rotation.

        @param seconds: the monotonic clock the decisions were made at.
        """
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        wall, pace = self.wall(), self.pace()
        due = [t for session in self._sessions.values()
               for t in session.due(wall, seconds, pace)]
        if self._sessions or self._site.shares:
            # Re-balance and re-plan with the slot grid (surplus, shares).
            due.append((planner.next_slot(now).timestamp() - wall) / pace)
        due = [t for t in due if t > 0]
        if due:
            self._timer = self.clock.callLater(min(due), self._tick)

    def _tick(self):
        self._timer = None
        for session in self._sessions.values():
            if session.follower.following or self._site.shares.get(session.key) is not None:
                # The surplus and the share were planned for one slot only.
                session.plan = None
        self._update()
