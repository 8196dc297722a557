# -*- test-case-name: tests.test_bridge,tests.test_knx_integration -*-
"""
The KNX bridge: every charging point's group objects on the bus.

The objects are declared in L{xxterocpp.knx.objects};
L{xxterocpp.knx.behaviour.OBJECTS} gives each its behaviour, by key: how a
send object's value follows from the domain, which command a
GroupValueWrite of a receive object gives. L{KnxBridge} applies it:

    - domain events (L{xxterocpp.domain.events}) re-derive the send objects of the
      charging point concerned and write the ones that changed;
    - a GroupValueRead of a send object is answered with its current value;
    - a GroupValueWrite of a receive object becomes a L{Controller} command;
      when it is not carried out (or any command of the point is refused,
      L{CommandRefused}), the send objects it concerns are written again;
      so are those of a command the charger accepted and has not carried
      out yet (L{CommandPending}) or will not (L{CommandIneffective});
    - a GroupValueWrite to C{[smart] prices_ga} / C{surplus_ga} is a price
      or PV surplus for the L{SmartManager}
      (L{xxterocpp.knx.behaviour.SMART_INPUTS});
    - the log lines the writes to one group address cause (ignored,
      carried out or not, failed) are within that address's budget
      (L{xxterocpp.pacing.LINE_BURST}, L{xxterocpp.pacing.LINE_RATE}):
      another client of knxd may write as fast as the bus takes;
    - once the knxd link is (back) up, every send object is published;
    - nothing is written or answered for a charger that never connected.

The rules are those of C{docs/knx-objects.md}.

Values are kept in the domain's units (A, Wh, aware datetimes) and converted
at the bus: currents to mA for DPT 9.021, times to the controller's local
time for DPT 10.001 / 19.001.

The per-point state is in L{xxterocpp.knx.points}, the declarations in
L{xxterocpp.knx.objects}, the behaviour table in L{xxterocpp.knx.behaviour}.
"""

from datetime import datetime, timezone

from twisted.application import service
from twisted.logger import Logger

from xxterocpp.domain.events import (
    CommandIneffective,
    CommandPending,
    CommandRefused,
    StateLoaded,
    TransactionStarted,
    TransactionStopped,
)
from xxterocpp.knx.behaviour import OBJECTS, smart_inputs
from xxterocpp.knx.dpt import DateTime, DPTError, DPTRangeError, TimeOfDay
from xxterocpp.knx.journal import Journal
from xxterocpp.knx.knxd import READ, RESPONSE, WRITE
from xxterocpp.knx.points import linked_points
from xxterocpp.pacing import LINE_BURST, LINE_RATE, LineBudget, write_line

__all__ = ["KnxBridge"]

#: The send objects a command the charger accepted concerns, by the
#: domain's name of it (L{CommandPending}, L{CommandIneffective}).
_ACCEPTED_CONCERNS = {
    "start": ("charging",),
    "stop": ("charging",),
    "availability": ("availability",),
    "limit": ("max_current", "fast"),
}

_log = Logger()

#: How a domain value becomes a codec value, by the codec's unit or DPT id.
_TO_BUS = {
    "mA": lambda amps, tz: amps * 1000,
    "10.001": TimeOfDay.from_datetime,
    "19.001": DateTime.from_datetime,
}
_FROM_BUS = {"mA": lambda milliamps: milliamps / 1000}


class KnxBridge(service.Service):
    """
    Bridges every charging point's group objects to the domain.

    @ivar points: the linked charging points by C{(charger id, connector)}.
    """

    def __init__(self, config, central, controller, link, clock, tz=None, smart=None,
                 wall=None):
        """
        @param config: the L{Config}.
        @param central: the L{CentralSystem}, whose events are observed and
            whose C{point_status}, C{last_session} and chargers'
            C{connected} / C{ever_connected} the objects follow.
        @param controller: the L{Controller} that carries out bus commands
            and knows the C{limit} and C{mode} in force.
        @param link: the L{KnxdLink} (or anything with its C{write},
            C{respond}, C{connected} and observer methods).
        @param clock: the L{IReactorTime} (its timers).
        @param wall: the time of day (POSIX seconds) of start and end times
            and of the journal, by default C{clock.seconds}.
        @param tz: the local zone for times on the bus; L{None} is the
            system's.
        @param smart: the L{SmartManager} that gets C{[smart] prices_ga} and
            C{surplus_ga} telegrams (L{None}: they are ignored).
        """
        self.central = central
        self.controller = controller
        self.link = link
        self.clock = clock
        self.wall = wall or clock.seconds
        self.tz = tz
        self.smart = smart
        self.points = {}
        self._smart_inputs = {}
        self._senders = {}
        self._receivers = {}
        # per address, the (point key, object key) that wrote to it last: a
        # GroupValueRead of an address shared by send objects gets that value
        self._last_writer = {}
        # per group address written to, the LineBudget of the lines its
        # writes cause (only configured receive addresses get one)
        self._lines = {}
        self.journal = Journal()  # what went on and came from the bus, for the page
        self.reconfigure(config)
        link.add_telegram_observer(self._telegram)
        link.add_link_observer(self._link_changed)

    def startService(self):
        super().startService()
        if self.link.connected:
            self.publish()

    def reconfigure(self, config):
        """
        Apply a re-read configuration: points whose objects, addresses or
        DPTs changed (or that are new) are published anew; the bridge keeps
        what it remembers of the points' sessions.
        """
        old, self.points = self.points, {}
        self._senders, self._receivers = {}, {}
        self._smart_inputs = smart_inputs(config)
        changed = []
        for point in linked_points(config, OBJECTS):
            previous = old.get(point.key)
            if previous is None:
                self._seed(point)
                changed.append(point)
            elif point.carry_over(previous):
                changed.append(point)
            self.points[point.key] = point
            for obj, address in point.objects:
                if obj.receive is not None:
                    self._receivers.setdefault(address, []).append((point, obj))
                if obj.send is not None:
                    self._senders.setdefault(address, []).append((point, obj))
        if self.running and self.link.connected:
            for point in changed:
                self._refresh(point, force=True)

    def _seed(self, point):
        """
        Start C{point} from what the domain kept of its sessions (at start,
        once the state is loaded, and for a point a reload adds).
        """
        charger = self.central.chargers.get(point.config.id)
        if charger is not None:
            point.seed(charger.connectors.get(point.config.connector),
                       self.central.last_session(*point.key))

    def _seen(self, point):
        """
        @return: whether the charger of C{point} has ever connected: until
            then the bus hears nothing of it, not even its defaults.
        """
        charger = self.central.chargers.get(point.config.id)
        return charger is not None and charger.ever_connected

    def state(self, point):
        """
        @return: the L{PointState} of C{point} (of a charger the central
            system serves) now.
        """
        charger_id, connector = point.key
        return point.state(self.central.chargers[charger_id],
                           self.central.point_status(charger_id, connector),
                           lambda: self.controller.limit(charger_id, connector),
                           lambda: self.controller.mode(charger_id, connector),
                           self.central.pending(charger_id, connector))

    # -- domain -> bus ---------------------------------------------------

    def publish(self):
        """
        Send every send object's current value (after (re)connecting).
        """
        for point in self.points.values():
            self._refresh(point, force=True)

    def _link_changed(self, up):
        if up and self.running:
            self.publish()

    def observe(self, event):
        """
        Write what a domain event changed of the points it concerns (the
        composition root subscribes this to the central system).
        """
        if isinstance(event, StateLoaded):
            # the bridge was built before the state store was read
            for point in self.points.values():
                self._seed(point)
        if not self.running:
            return
        forced_by = type(event)
        if isinstance(event, (TransactionStarted, TransactionStopped)):
            if event.transaction.accepted:
                self._remember(event)
            else:
                # a refused session is no session: nothing to send again
                forced_by = None
        refused = isinstance(event, CommandRefused)
        concerns = None
        if isinstance(event, (CommandPending, CommandIneffective)):
            # what holds now, also where a write left the bus another value
            concerns = _ACCEPTED_CONCERNS.get(event.command, ())
        for point in self._points_of(event):
            if refused:
                point.refusals += 1
            self._refresh(point, force=refused or concerns is not None, forced_by=forced_by,
                          only=concerns)

    def _remember(self, event):
        point = self.points.get((event.charger_id, event.connector))
        if point is None:
            return
        now = datetime.fromtimestamp(self.wall(), timezone.utc)
        if isinstance(event, TransactionStarted):
            point.started_at = now
        else:
            point.last_session, point.stopped_at = event.transaction, now

    def _points_of(self, event):
        """
        The points an event concerns: one connector, a whole charger
        (connector None) or none (the whole central system).
        """
        key = (event.charger_id, event.connector)
        if key[0] is None:
            return []
        if key[1] is None:
            return [p for p in self.points.values() if p.config.id == key[0]]
        point = self.points.get(key)
        return [] if point is None else [point]

    def _refresh(self, point, force=False, forced_by=None, only=None):
        """
        Write the send objects of C{point} whose value changed significantly
        (nothing for a charger that never connected).

        @param force: write every known value (after (re)connecting, after a
            refused command).
        @param forced_by: the type of the event being handled, for
            L{xxterocpp.knx.objects.GroupObject.sent_on}.
        @param only: the keys of the objects to consider (L{None}: all).
        """
        if not self._seen(point):
            return
        state = self.state(point)
        for obj, address in point.objects:
            if obj.send is None or (only is not None and obj.key not in only):
                continue
            value = self._value(point, obj, state)
            if value is None:
                continue
            last = point.sent.get(obj.key)
            if force or forced_by in obj.declared.sent_on or obj.significant(last, value):
                point.sent[obj.key] = value
                self._send(WRITE, point, obj, address, value)

    def _value(self, point, obj, state):
        try:
            return obj.send(state)
        except Exception:
            # one broken derivation must not keep the others off the bus
            _log.failure("KNX {name} of {point}: cannot derive the value",
                         name=obj.key, point=point)
            return None

    def _send(self, kind, point, obj, address, value):
        payload = self._encode(point, obj, address, value)
        if payload is None:
            return
        if kind == WRITE:
            if self.link.write(address, payload):
                self._last_writer[address] = (point.key, obj.key)
                self.journal.sent(point.key, obj.key, value, self.wall())
        else:
            self.link.respond(address, payload)

    def _encode(self, point, obj, address, value):
        dpt = obj.dpt_for(point.config)
        convert = _TO_BUS.get(dpt.unit) or _TO_BUS.get(dpt.id)
        try:
            if convert is not None:
                value = convert(value, self.tz)
            try:
                return dpt.encode(value)
            except DPTRangeError as e:
                _log.warn("KNX {name} of {point} ({address}): {reason}; sending the nearest "
                          "value instead", name=obj.key, point=point, address=address,
                          reason=e)
                return dpt.encode(value, clamp=True)
        except DPTError as e:
            _log.warn("KNX {name} of {point} ({address}) not sent: {reason}",
                      name=obj.key, point=point, address=address, reason=e)
            return None

    def _answer(self, address):
        senders = self._senders.get(address, [])
        # the object that wrote to the address last, else the first with a value
        last = self._last_writer.get(address)
        ordered = sorted(senders, key=lambda s: (s[0].key, s[1].key) != last)
        for point, obj in ordered:
            if not self._seen(point):
                continue
            value = self._value(point, obj, self.state(point))
            if value is not None:
                self._send(RESPONSE, point, obj, address, value)
                return

    # -- bus -> domain ---------------------------------------------------

    def _telegram(self, telegram):
        if not self.running:
            return
        if telegram.kind == READ:
            self._answer(telegram.dst)
        elif telegram.kind == WRITE:
            self.journal.foreign_write(self._senders.get(telegram.dst, ()), telegram,
                                       self.wall())
            for point, obj in self._receivers.get(telegram.dst, ()):
                self._received(point, obj, telegram)
            entry = self._smart_inputs.get(telegram.dst)
            if entry is not None:
                self._smart_received(entry, telegram)

    def _line(self, dst, level, format, **fields):
        """
        Log a line a write to C{dst} caused, within that address's
        L{LineBudget}; the next line written says how many were held back.

        @param level: C{"info"}, C{"warn"}, or C{"failure"} (the current
            exception's, or the C{failure} field's).
        """
        now = self.clock.seconds()
        budget = self._lines.get(dst)
        if budget is None:
            budget = self._lines[dst] = LineBudget(LINE_RATE, LINE_BURST, now)
        write_line(budget.due, _log, level, now, format, **fields)

    def _smart_received(self, entry, telegram):
        what = f"KNX write {telegram.payload!r} from {telegram.src} to {telegram.dst} " \
               f"(smart.{entry.name})"
        dst = telegram.dst
        if self.smart is None:
            self._line(dst, "warn", "{what} ignored: no Smart Energy Manager", what=what)
            return
        try:
            value = entry.dpt.decode(telegram.payload)
        except DPTError as e:
            self._line(dst, "warn", "{what} ignored: {reason}", what=what, reason=e)
            return
        try:
            entry.apply(self.smart, value)
        except Exception:
            self._line(dst, "failure", "{what} failed", what=what)

    def _received(self, point, obj, telegram):
        dpt = obj.dpt_for(point.config)
        what = f"KNX write {telegram.payload!r} from {telegram.src} to {telegram.dst} " \
               f"({obj.key} of {point})"
        dst = telegram.dst
        refusals = point.refusals
        try:
            value = dpt.decode(telegram.payload)
            convert = _FROM_BUS.get(dpt.unit)
            if convert is not None:
                value = convert(value)
            self.journal.received(point.key, obj.key, value, self.wall(), telegram.src)
            d = obj.receive(self.controller, point.config, value)
        except DPTError as e:
            self._line(dst, "warn", "{what} ignored: {reason}", what=what, reason=e)
            return
        except Exception:
            self._line(dst, "failure", "{what} failed", what=what)
            self._feed_back(point, obj)
            return
        if d is not None:
            d.addCallback(self._answered, point, obj, what, refusals, dst)
            d.addErrback(self._failed, point, obj, what, dst)

    def _answered(self, result, point, obj, what, refusals, dst):
        if result.accepted:
            self._line(dst, "info", "{what}: {status}", what=what, status=result.status)
            if obj.echo:
                self._feed_back(point, obj)
            return
        if result.status == "Superseded":
            # Not a failure: a newer command of its kind (a write, the page,
            # the service's own) is carried out instead.
            self._line(dst, "info", "{what}: replaced by a newer command of its kind before"
                       " it was sent", what=what)
        else:
            detail = f" ({result.detail})" if result.detail else ""
            self._line(dst, "warn", "{what} not carried out: {status}{detail}", what=what,
                       status=result.status, detail=detail)
        # unless a CommandRefused (the controller's report of this very
        # refusal) has written the whole point since the write
        if point.refusals == refusals:
            self._feed_back(point, obj)

    def _failed(self, failure, point, obj, what, dst):
        self._line(dst, "failure", "{what} failed", failure=failure, what=what)
        self._feed_back(point, obj)

    def _feed_back(self, point, obj):
        """
        A command of C{obj} ended (not carried out, or answered for an
        L{xxterocpp.knx.behaviour.BridgedObject.echo}): the bus gets the
        actual value of every send object it concerns, also where the write
        left a value unchanged.
        """
        if self.running and point is self.points.get(point.key):
            self._refresh(point, force=True, only=obj.concerns)
