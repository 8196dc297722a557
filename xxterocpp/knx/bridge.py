# -*- test-case-name: tests.test_bridge,tests.test_knx_integration -*-
"""
The KNX bridge: every charging point's group objects on the bus.

The objects are declared in L{xxterocpp.knx.objects}; L{OBJECTS} here gives
each its behaviour, by key: how a send object's value follows from the
domain, which command a GroupValueWrite of a receive object gives.
L{KnxBridge} applies it:

    - domain events (L{xxterocpp.domain.events}) re-derive the send objects of the
      charging point concerned and write the ones that changed;
    - a GroupValueRead of a send object is answered with its current value;
    - a GroupValueWrite of a receive object becomes a L{Controller} command;
      when it is not carried out (or any command of the point is refused,
      L{CommandRefused}), the send objects it concerns are written again;
      so are those of a command the charger accepted and has not carried
      out yet (L{CommandPending}) or will not (L{CommandIneffective});
    - a GroupValueWrite to C{[smart] prices_ga} / C{surplus_ga} is a price
      or PV surplus for the L{SmartManager} (L{SMART_INPUTS});
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

Why one module of some 690 lines: most of it is the behaviour table of the
eighteen objects (one entry each, read as a list) beside the one class that
applies it; the per-point state is in L{xxterocpp.knx.points} and the
declarations in L{xxterocpp.knx.objects} already.
"""

from datetime import datetime, timezone

import attr
from twisted.application import service
from twisted.logger import Logger

from xxterocpp.control.electrical import watts
from xxterocpp.domain.events import (
    CommandIneffective,
    CommandPending,
    CommandRefused,
    StateLoaded,
    TransactionStarted,
    TransactionStopped,
)
from xxterocpp.knx import objects
from xxterocpp.knx.dpt import DateTime, DPTError, DPTRangeError, Float32, TimeOfDay, lookup
from xxterocpp.knx.journal import Journal
from xxterocpp.knx.knxd import READ, RESPONSE, WRITE
from xxterocpp.knx.points import linked_points
from xxterocpp.pacing import LINE_BURST, LINE_RATE, LineBudget, write_line

__all__ = ["BridgedObject", "KnxBridge", "OBJECTS", "SMART_INPUTS", "has_group_objects"]

#: Changes of the charging current up to this many A are not sent: meters
#: jitter by a few tenths of an ampere, and the bus is slow.
CURRENT_HYSTERESIS = 0.2

#: The same for the active power (W).
POWER_HYSTERESIS = 100.0

#: The energy objects C{meter} and C{session_energy} are sent when they
#: moved by at least this many Wh.
ENERGY_STEP = 100

#: The statuses in which a vehicle is connected (C{plugged}).
PLUGGED = frozenset(("Preparing", "Charging", "SuspendedEV", "SuspendedEVSE", "Finishing"))

#: The send objects a command the charger accepted concerns, by the
#: domain's name of it (L{CommandPending}, L{CommandIneffective}).
_ACCEPTED_CONCERNS = {
    "start": ("charging",),
    "stop": ("charging",),
    "availability": ("availability",),
    "limit": ("max_current", "fast"),
}

_log = Logger()


def _index(names):
    return lambda name: names.index(name) if name in names else None


_status_number = _index(objects.STATUSES)
_error_number = _index(objects.ERROR_CODES)


def _charging(state):
    # A start or stop the charger accepted counts from then on; the domain
    # ends it when the transaction does not follow.
    if state.transaction is not None:
        return not state.stopping
    return state.starting


def _available(state):
    if state.status is None:
        return None
    return state.status not in ("Unavailable", "Faulted")


def _plugged(state):
    # The connector's own report: a charger offline or faulted as a whole
    # has not unplugged the car.
    if state.reported_status is None:
        return None
    return state.reported_status in PLUGGED


def _charging_current(state):
    # A stale sample must not say "charging" once the session is over.
    if state.transaction is None:
        return 0.0
    if state.current is None:
        # No sample yet (after a restart, the car may well go on drawing
        # 16 A): unknown while the connector charges, not 0.
        return None if state.reported_status == "Charging" else 0.0
    return state.current


def _power(state):
    if state.transaction is None:
        return 0.0
    if state.power is not None:
        return state.power
    current = _charging_current(state)
    return None if current is None else watts(current, state.phases)


def _last_energy(state):
    return state.last_session.energy_wh if state.last_session is not None else None


def _session_energy(state):
    # between sessions: the last one's, as it ended
    if state.transaction is None:
        return _last_energy(state)
    return state.transaction.energy_wh or 0


def _fast(state):
    mode = state.mode()
    return None if mode is None else mode == "fast"


def _changed(old, new):
    return old != new


def _moved_more_than(step):
    """
    @return: C{(old, new) -> bool}: whether C{new} moved by more than
        C{step} from C{old}, or went to or from 0 ("nothing flows" is always
        news).
    """

    def significant(old, new):
        if old is None or (old == 0) != (new == 0):
            return True
        # rounded: 16.2 - 16.0 is 0.1999999..., which is no change "by more than 0.2 A"
        return round(abs(new - old), 6) > step

    return significant


def _moved_at_least(step):
    """
    @return: C{(old, new) -> bool}: whether C{new} moved by C{step} or more.
    """
    return lambda old, new: old is None or round(abs(new - old), 6) >= step


def _boolean(when_true, when_false=None):
    """
    A receive action for a 1-bit object: C{when_true(controller, point)} on
    1, C{when_false} on 0 (nothing to do when L{None}).
    """

    def act(controller, point, value):
        command = when_true if value else when_false
        return None if command is None else command(controller, point)

    return act


def _set_limit(controller, point, amps):
    if amps < 0:
        raise DPTError(f"a current limit of {amps:g} A makes no sense")
    return controller.set_limit(point.id, point.connector, amps)


@attr.s(frozen=True, slots=True)
class BridgedObject:
    """
    One row of L{OBJECTS}: a declared group object and what the bridge does
    with it.

    @ivar declared: the L{xxterocpp.knx.objects.GroupObject}.
    @ivar send: derives the value from a L{PointState} (L{None}: unknown,
        nothing is sent), or L{None} for a receive-only object.
    @ivar significant: C{(last sent, new) -> bool}: whether to send the change.
    @ivar receive: C{(controller, charger config, value)} -> a Deferred
        L{CommandResult} or L{None} (nothing to do), for a GroupValueWrite;
        raises L{DPTError} for a value that makes no sense.
    @ivar concerns: the keys of the send objects a command of this object
        concerns: written again, changed or not, when it is not carried
        out (by default the object itself, if it sends).
    @ivar echo: write those again after an accepted command too, so the bus
        shows the value in force rather than the one asked for.
    """

    declared = attr.ib()
    send = attr.ib(default=None)
    significant = attr.ib(default=_changed)
    receive = attr.ib(default=None)
    concerns = attr.ib(default=attr.Factory(
        lambda self: (self.declared.key,) if self.declared.sends else (), takes_self=True))
    echo = attr.ib(default=False)

    def __attrs_post_init__(self):
        if (self.send is not None, self.receive is not None) != (
                self.declared.sends, self.declared.receives):
            raise ValueError(f"the behaviour of group object {self.declared.key!r} does not "
                             f"match its direction {self.declared.direction!r}")

    @property
    def key(self):
        """
        The object's key in C{[charger.knx]}.
        """
        return self.declared.key

    def dpt_for(self, charger):
        """
        @return: the codec for this object on the charging point configured
            as C{charger} (a L{ChargerConfig}).
        """
        return lookup(self.declared.dpt_for(charger))


#: The behaviour of each declared object, by key (see L{BridgedObject}).
_BEHAVIOUR = {
    "status": dict(send=lambda s: _status_number(s.status)),
    "error_code": dict(send=lambda s: _error_number(s.error_code)),
    "charging": dict(
        send=_charging,
        receive=_boolean(
            lambda c, p: c.start(p.id, p.connector, id_tag=p.remote_tag),
            lambda c, p: c.stop(p.id, p.connector),
        ),
    ),
    "reserve": dict(
        receive=_boolean(
            lambda c, p: c.reserve(p.id, p.connector),
            lambda c, p: c.free(p.id, p.connector),
        ),
    ),
    "availability": dict(
        send=_available,
        receive=lambda c, p, value: c.set_availability(p.id, p.connector, value),
    ),
    "unlock": dict(receive=_boolean(lambda c, p: c.unlock(p.id, p.connector))),
    "energy": dict(send=_last_energy),
    "start_time": dict(send=lambda s: s.started_at),
    "end_time": dict(send=lambda s: s.stopped_at),
    "current": dict(send=_charging_current, significant=_moved_more_than(CURRENT_HYSTERESIS)),
    "max_current": dict(send=lambda s: s.limit(), receive=_set_limit, echo=True),
    "reset": dict(receive=_boolean(lambda c, p: c.reset(p.id, hard=False))),
    "online": dict(send=lambda s: s.online),
    "plugged": dict(send=_plugged),
    "power": dict(send=_power, significant=_moved_more_than(POWER_HYSTERESIS)),
    "meter": dict(send=lambda s: s.register, significant=_moved_at_least(ENERGY_STEP)),
    "session_energy": dict(send=_session_energy, significant=_moved_at_least(ENERGY_STEP)),
    "fast": dict(
        send=_fast,
        receive=_boolean(
            lambda c, p: c.fast(p.id, p.connector),
            lambda c, p: c.normal(p.id, p.connector),
        ),
        # the mode is a limit: a refusal leaves both as they were
        concerns=("fast", "max_current"),
    ),
}


def _bridged(declared, behaviour):
    """
    Join the declaration and the behaviour: one row per declared object.
    """
    missing = set(objects.KEYS) ^ set(behaviour)
    if missing:
        raise ValueError(f"group objects declared or bridged but not both: {sorted(missing)}")
    return tuple(BridgedObject(obj, **behaviour[obj.key]) for obj in declared)


#: Every declared group object with its behaviour, in declaration order.
OBJECTS = _bridged(objects.OBJECTS, _BEHAVIOUR)

#: How a domain value becomes a codec value, by the codec's unit or DPT id.
_TO_BUS = {
    "mA": lambda amps, tz: amps * 1000,
    "10.001": TimeOfDay.from_datetime,
    "19.001": DateTime.from_datetime,
}
_FROM_BUS = {"mA": lambda milliamps: milliamps / 1000}


@attr.s(frozen=True, slots=True)
class SmartInput:
    """
    One row of L{SMART_INPUTS}: a C{[smart]} group address the Smart Energy
    Manager listens to.

    @ivar name: the key in C{[smart]}.
    @ivar dpt: the codec (DPT 14.x, float32).
    @ivar apply: C{(smart manager, value)}, for a GroupValueWrite.
    """

    name = attr.ib()
    dpt = attr.ib()
    apply = attr.ib()


#: The bus inputs of the Smart Energy Manager: a price per kWh (DPT 14.x,
#: any unit; the tariff's currency) and the PV surplus (DPT 14.056, W,
#: positive = exporting). Both float32: a wrong length or NaN/inf is
#: logged and ignored (L{DPTError}).
SMART_INPUTS = (
    SmartInput("prices_ga", Float32("14.x", "price per kWh", None),
               lambda smart, price: smart.set_price(price)),
    SmartInput("surplus_ga", lookup("14.056"), lambda smart, power: smart.set_surplus(power)),
)


def _smart_inputs(config):
    """
    @return: the L{SmartInput}s of C{config} by group address.
    """
    inputs = {}
    for entry in SMART_INPUTS:
        address = getattr(config.smart, entry.name)
        if address is not None:
            inputs[address] = entry
    return inputs


def has_group_objects(config):
    """
    @return: whether C{config} links any group object: a charging point's,
        or a C{[smart]} price or surplus address.
    """
    return bool(linked_points(config, OBJECTS)) or bool(_smart_inputs(config))


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
        self._smart_inputs = _smart_inputs(config)
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
        L{BridgedObject.echo}): the bus gets the actual value of every send
        object it concerns, also where the write left a value unchanged.
        """
        if self.running and point is self.points.get(point.key):
            self._refresh(point, force=True, only=obj.concerns)
