# -*- test-case-name: tests.test_bridge,tests.test_knx_integration -*-
"""
What the KNX bridge knows of each charging point with linked group objects.

A L{Point} is one configured charging point as the bus sees it: its linked
objects and addresses, the values last sent, and when its sessions started
and stopped as the bridge saw them (the controller's clock, not the
charger's; after a restart the sessions' own times). L{PointState} is the
snapshot the send objects' values are derived from.
"""

import attr

__all__ = ["Point", "PointState", "linked_points"]


@attr.s(frozen=True, slots=True)
class PointState:
    """
    What the send objects of one charging point are derived from.

    @ivar online: whether the charger's OCPP connection is up.
    @ivar status: the connector's effective OCPP status
        (L{CentralSystem.point_status}: Unavailable while the charger is
        offline, connector 0's Unavailable or Faulted), or L{None} before
        any report.
    @ivar error_code: its error code, or L{None} before any report.
    @ivar reported_status: the status the connector itself last reported,
        or L{None}.
    @ivar transaction: the running accepted L{Transaction}, or L{None}: a
        refused session is no session.
    @ivar current: the charging current (A) last reported, or L{None}.
    @ivar power: the active power (W) last reported, or L{None}.
    @ivar phases: how many phases the charging point uses.
    @ivar register: the energy register (Wh) last known, or L{None}.
    @ivar started_at: when the current or last session started (aware).
    @ivar last_session: the last stopped accepted L{Transaction}, or L{None}.
    @ivar stopped_at: when it stopped (aware).
    @ivar limit: a callable giving the current limit in force (A) or
        L{None}; only called for a linked C{max_current}.
    @ivar mode: a callable giving the mode in force (C{"fast"},
        C{"normal"} or L{None}); only called for a linked C{fast}.
    @ivar starting: whether the charger accepted a remote start whose
        StartTransaction is still to come (L{xxterocpp.domain.accepted}).
    @ivar stopping: whether it accepted a remote stop of the running
        transaction whose StopTransaction is still to come.
    """

    online = attr.ib(default=False)
    status = attr.ib(default=None)
    error_code = attr.ib(default=None)
    reported_status = attr.ib(default=None)
    transaction = attr.ib(default=None)
    current = attr.ib(default=None)
    power = attr.ib(default=None)
    phases = attr.ib(default=3)
    register = attr.ib(default=None)
    started_at = attr.ib(default=None)
    last_session = attr.ib(default=None)
    stopped_at = attr.ib(default=None)
    limit = attr.ib(default=lambda: None)
    mode = attr.ib(default=lambda: None)
    starting = attr.ib(default=False)
    stopping = attr.ib(default=False)


def _running(connector):
    """
    @return: the running transaction of C{connector}, accepted or not, or
        L{None}.
    """
    tx = connector.transaction
    return tx if tx is not None and tx.running else None


@attr.s(eq=False)
class Point:
    """
    A charging point with linked group objects, and what the bridge
    remembers of it.

    @ivar config: its L{ChargerConfig}.
    @ivar objects: C{(bridged object, group address)} of each linked object,
        in declaration order.
    @ivar started_at: when its current or last session started (aware), as
        the bridge saw it.
    @ivar last_session: its last stopped accepted L{Transaction}, or L{None}.
    @ivar stopped_at: when that one stopped (aware).
    @ivar sent: the value last sent (or due) per object key.
    @ivar refusals: how many commands of this point were refused so far
        (L{CommandRefused} events).
    """

    config = attr.ib()
    objects = attr.ib()
    started_at = attr.ib(default=None)
    last_session = attr.ib(default=None)
    stopped_at = attr.ib(default=None)
    sent = attr.ib(factory=dict)
    refusals = attr.ib(default=0)

    @property
    def key(self):
        """
        C{(charger id, connector)}, as the domain's events name it.
        """
        return (self.config.id, self.config.connector)

    def __str__(self):
        return f"{self.config.id}/{self.config.connector}"

    def bus_view(self):
        """
        What of the configuration decides what goes on the bus: each linked
        object's address and DPT. A reload that changes it republishes.
        """
        return tuple((obj.key, address, obj.declared.dpt_for(self.config))
                     for obj, address in self.objects)

    def seed(self, connector, last_session):
        """
        Start from what the domain kept after a (re)start: the bridge saw no
        TransactionStarted or TransactionStopped, so the sessions' own times
        are the best there are.

        @param connector: the domain's L{Connector}, or L{None}.
        @param last_session: L{CentralSystem.last_session} of this point.
        """
        self.last_session = last_session
        self.stopped_at = None if last_session is None else last_session.stop_time
        running = None if connector is None else _running(connector)
        if running is not None and running.accepted:
            self.started_at = running.start_time
        elif last_session is not None:
            self.started_at = last_session.start_time

    def carry_over(self, previous):
        """
        Keep what C{previous} (this point before a reload) remembered of its
        sessions, and its sent values when the bus view did not change.

        @return: whether the bus view changed (the point must be republished).
        """
        self.started_at, self.stopped_at, self.last_session = (
            previous.started_at, previous.stopped_at, previous.last_session)
        if previous.bus_view() != self.bus_view():
            return True
        self.sent = previous.sent
        return False

    def state(self, charger, status, limit, mode, pending=()):
        """
        @param charger: the domain's L{Charger} of this point.
        @param status: its C{(status, error_code)} from
            L{CentralSystem.point_status}.
        @param limit: a callable giving the limit in force (A) or L{None}.
        @param mode: a callable giving the mode in force or L{None}.
        @param pending: the commands pending at the point
            (L{CentralSystem.pending}).
        @return: the L{PointState} now.
        """
        commands = {p.command for p in pending}
        common = dict(online=charger.connected, phases=self.config.phases,
                      started_at=self.started_at, last_session=self.last_session,
                      stopped_at=self.stopped_at, limit=limit, mode=mode,
                      starting="start" in commands, stopping="stop" in commands)
        connector = charger.connectors.get(self.config.connector)
        if connector is None:
            return PointState(status=status[0], error_code=status[1], **common)
        running = _running(connector)
        return PointState(
            status=status[0],
            error_code=status[1],
            reported_status=connector.status,
            transaction=running if running is not None and running.accepted else None,
            current=connector.current,
            power=connector.power_w,
            register=self._register(connector, running),
            **common,
        )

    def _register(self, connector, running):
        """
        The energy register last known: the connector's reading; after a
        restart, before any reading, what its running transaction or the
        last session recorded.
        """
        if connector.energy_register_wh is not None:
            return connector.energy_register_wh
        if running is not None:
            if running.energy_register_wh is not None:
                return running.energy_register_wh
            return running.meter_start
        return None if self.last_session is None else self.last_session.meter_stop


def linked_points(config, table):
    """
    @param config: the L{Config}.
    @param table: the bridged objects (L{xxterocpp.knx.behaviour.OBJECTS}).
    @return: a L{Point} for each charging point that links at least one
        object, in file order.
    """
    points = []
    for charger in config.chargers:
        linked = tuple((obj, getattr(charger.knx, obj.key)) for obj in table
                       if getattr(charger.knx, obj.key) is not None)
        if linked:
            points.append(Point(charger, linked))
    return points
