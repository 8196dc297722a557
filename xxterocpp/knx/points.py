# -*- test-case-name: tests.test_bridge,tests.test_knx_integration -*-
"""
What the KNX bridge knows of each charging point with linked group objects.

A L{Point} is one configured charging point as the bus sees it: its linked
objects and addresses, the values last sent, and what the domain does not
keep for the bus (when the last session started and stopped). L{PointState}
is the snapshot the send objects' values are derived from.
"""

import attr

__all__ = ["Point", "PointState", "linked_points"]


@attr.s(frozen=True, slots=True)
class PointState:
    """
    What the send objects of one charging point are derived from.

    @ivar status: the connector's OCPP status, or L{None} before any report.
    @ivar error_code: its OCPP error code, or L{None} before any report.
    @ivar transaction: the running L{Transaction}, or L{None}.
    @ivar current: the charging current (A) last reported, or L{None}.
    @ivar started_at: when the current or last transaction started (aware).
    @ivar last_session: the last stopped L{Transaction}, or L{None}.
    @ivar stopped_at: when it stopped (aware).
    @ivar limit: a callable giving the current limit in force (A) or
        L{None}; only called for a linked C{max_current}.
    """

    status = attr.ib(default=None)
    error_code = attr.ib(default=None)
    transaction = attr.ib(default=None)
    current = attr.ib(default=None)
    started_at = attr.ib(default=None)
    last_session = attr.ib(default=None)
    stopped_at = attr.ib(default=None)
    limit = attr.ib(default=lambda: None)


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
    @ivar last_session: its last stopped L{Transaction}, or L{None}.
    @ivar stopped_at: when that one stopped (aware).
    @ivar sent: the value last sent (or due) per object key.
    """

    config = attr.ib()
    objects = attr.ib()
    started_at = attr.ib(default=None)
    last_session = attr.ib(default=None)
    stopped_at = attr.ib(default=None)
    sent = attr.ib(factory=dict)

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

    def seed(self, connector):
        """
        Start from the domain's connector after a (re)start: the bridge saw
        no TransactionStarted, so a running transaction's own start is the
        best time there is.
        """
        if connector is not None and connector.transaction is not None:
            self.started_at = connector.transaction.start_time

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

    def state(self, connector, limit):
        """
        @param connector: the domain's L{Connector} of this point, or L{None}
            when the charger is not known yet.
        @param limit: a callable giving the limit in force (A) or L{None}.
        @return: the L{PointState} now.
        """
        common = dict(started_at=self.started_at, last_session=self.last_session,
                      stopped_at=self.stopped_at, limit=limit)
        if connector is None:
            return PointState(**common)
        tx = connector.transaction
        return PointState(
            status=connector.status,
            # the domain's default "NoError" is no report
            error_code=connector.error_code if connector.status is not None else None,
            transaction=tx if tx is not None and tx.running else None,
            current=connector.current,
            **common,
        )


def linked_points(config, table):
    """
    @param config: the L{Config}.
    @param table: the bridged objects (L{xxterocpp.knx.bridge.OBJECTS}).
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
