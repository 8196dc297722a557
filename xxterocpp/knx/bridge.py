# -*- test-case-name: tests.test_bridge,tests.test_knx_integration -*-
"""
The KNX bridge: every charging point's group objects (SPEC §4, manual §3).

One table, L{OBJECTS}, says for each of the twelve objects which DPT it
uses, how its value follows from the domain (send objects) and which
command a GroupValueWrite gives (receive objects). L{KnxBridge} applies it:

    - domain events (L{xxterocpp.domain.events}) re-derive the send objects of the
      charging point concerned and write the ones that changed;
    - a GroupValueRead of a send object is answered with its current value;
    - a GroupValueWrite of a receive object becomes a L{Controller} command;
    - a GroupValueWrite to C{[smart] prices_ga} / C{surplus_ga} is a price
      or PV surplus for the L{SmartManager} (L{SMART_INPUTS});
    - once the knxd link is (back) up, every send object is published.

Values are kept in the domain's units (A, Wh, aware datetimes) and converted
at the bus: currents to mA for DPT 9.021, times to the controller's local
time for DPT 10.001 / 19.001.
"""

from datetime import datetime, timezone
from operator import attrgetter

import attr
from twisted.application import service
from twisted.logger import Logger

from xxterocpp.knx.dpt import DateTime, DPTError, DPTRangeError, TimeOfDay, _Float32, lookup
from xxterocpp.knx.knxd import READ, RESPONSE, WRITE
from xxterocpp.domain.events import TransactionStarted, TransactionStopped

__all__ = [
    "ERROR_CODES", "GroupObject", "KnxBridge", "OBJECTS", "PointState", "SMART_INPUTS",
    "STATUSES", "has_group_objects",
]

#: The bus numbering of the OCPP connector status (SPEC §4; not the order of
#: the OCPP schema, which has SuspendedEVSE before SuspendedEV).
STATUSES = (
    "Available", "Preparing", "Charging", "SuspendedEV", "SuspendedEVSE",
    "Finishing", "Reserved", "Unavailable", "Faulted",
)

#: The bus numbering of the OCPP error code (SPEC §4).
ERROR_CODES = (
    "NoError", "ConnectorLockFailure", "EVCommunicationError", "GroundFailure",
    "HighTemperature", "InternalError", "LocalListConflict", "OtherError",
    "OverCurrentFailure", "OverVoltage", "PowerMeterFailure", "PowerSwitchFailure",
    "ReaderFailure", "ResetFailure", "UnderVoltage", "WeakSignal",
)

#: Changes of the charging current up to this many A are not sent (manual §3).
CURRENT_HYSTERESIS = 0.2

_log = Logger()


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


def _index(names):
    return lambda name: names.index(name) if name in names else None


_status_number = _index(STATUSES)
_error_number = _index(ERROR_CODES)


def _available(state):
    if state.status is None:
        return None
    return state.status not in ("Unavailable", "Faulted")


def _charging_current(state):
    # A stale sample must not say "charging" once the session is over.
    if state.transaction is None:
        return 0.0
    return state.current or 0.0


def _session_energy(state):
    return state.last_session.energy_wh if state.last_session is not None else None


def _changed(old, new):
    return old != new


def _beyond_hysteresis(old, new):
    if old is None or (old == 0) != (new == 0):
        return True
    # rounded: 16.2 - 16.0 is 0.1999999..., which is no change "by more than 0.2 A"
    return round(abs(new - old), 6) > CURRENT_HYSTERESIS


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
class GroupObject:
    """
    One row of L{OBJECTS}.

    @ivar name: the key in C{[charger.knx]}.
    @ivar dpt: the DPT id, or a callable giving it for a L{ChargerConfig}.
    @ivar send: derives the value from a L{PointState} (L{None}: unknown,
        nothing is sent), or L{None} for a receive-only object.
    @ivar significant: C{(last sent, new) -> bool}: whether to send the change.
    @ivar sent_on: the event types after which the value is sent even if
        unchanged (each session's energy, also when equal to the last one).
    @ivar receive: C{(controller, charger config, value)} -> a Deferred
        L{CommandResult} or L{None} (nothing to do), for a GroupValueWrite;
        raises L{DPTError} for a value that makes no sense.
    @ivar echo: send the value again once the command answered, so the bus
        shows the value in force rather than the one asked for.
    """

    name = attr.ib()
    dpt = attr.ib()
    send = attr.ib(default=None)
    significant = attr.ib(default=_changed)
    sent_on = attr.ib(default=())
    receive = attr.ib(default=None)
    echo = attr.ib(default=False)

    def dpt_for(self, charger):
        """
        @return: the codec for this object on the charging point configured
            as C{charger} (a L{ChargerConfig}).
        """
        return lookup(self.dpt if isinstance(self.dpt, str) else self.dpt(charger))


_TIME_DPT = attrgetter("time_dpt")
_CURRENT_DPT = attrgetter("current_dpt")

#: The twelve group objects, in SPEC §4 order.
OBJECTS = (
    GroupObject("status", "5.010", send=lambda s: _status_number(s.status)),
    GroupObject("error_code", "5.010", send=lambda s: _error_number(s.error_code)),
    GroupObject(
        "charging", "1.010",
        send=lambda s: s.transaction is not None,
        receive=_boolean(
            lambda c, p: c.start(p.id, p.connector, id_tag=p.remote_tag),
            lambda c, p: c.stop(p.id, p.connector),
        ),
    ),
    GroupObject(
        "reserve", "1.010",
        receive=_boolean(
            lambda c, p: c.reserve(p.id, p.connector),
            lambda c, p: c.free(p.id, p.connector),
        ),
    ),
    GroupObject(
        "availability", "1.003",
        send=_available,
        receive=lambda c, p, value: c.set_availability(p.id, p.connector, value),
    ),
    GroupObject("unlock", "1.003", receive=_boolean(lambda c, p: c.unlock(p.id, p.connector))),
    GroupObject("energy", "13.010", send=_session_energy, sent_on=(TransactionStopped,)),
    GroupObject(
        "start_time", _TIME_DPT, send=lambda s: s.started_at, sent_on=(TransactionStarted,)
    ),
    GroupObject(
        "end_time", _TIME_DPT, send=lambda s: s.stopped_at, sent_on=(TransactionStopped,)
    ),
    GroupObject(
        "current", _CURRENT_DPT, send=_charging_current, significant=_beyond_hysteresis
    ),
    GroupObject(
        "max_current", _CURRENT_DPT,
        send=lambda s: s.limit(),
        receive=_set_limit,
        echo=True,
    ),
    GroupObject("reset", "1.015", receive=_boolean(lambda c, p: c.reset(p.id, hard=False))),
)

#: How a domain value becomes a codec value, by the codec's unit or DPT id.
_TO_BUS = {
    "mA": lambda amps, tz: amps * 1000,
    "10.001": TimeOfDay.from_datetime,
    "19.001": DateTime.from_datetime,
}
_FROM_BUS = {"mA": lambda milliamps: milliamps / 1000}


@attr.s(eq=False)
class _Point:
    """
    A charging point with linked group objects, and what the bridge
    remembers of it.

    @ivar config: its L{ChargerConfig}.
    @ivar objects: the linked L{GroupObject}s and their addresses.
    @ivar sent: the value last sent (or due) per object name.
    """

    config = attr.ib()
    objects = attr.ib()
    started_at = attr.ib(default=None)
    last_session = attr.ib(default=None)
    stopped_at = attr.ib(default=None)
    sent = attr.ib(factory=dict)

    @property
    def key(self):
        return (self.config.id, self.config.connector)

    def __str__(self):
        return f"{self.config.id}/{self.config.connector}"


def _points(config):
    points = []
    for charger in config.chargers:
        linked = tuple(
            (obj, getattr(charger.knx, obj.name))
            for obj in OBJECTS
            if getattr(charger.knx, obj.name) is not None
        )
        if linked:
            points.append(_Point(charger, linked))
    return points


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
    SmartInput("prices_ga", _Float32("14.x", "price per kWh", None),
               lambda smart, price: smart.set_price(price)),
    SmartInput("surplus_ga", _Float32("14.056", "DPT_Value_Power", "W"),
               lambda smart, watts: smart.set_surplus(watts)),
)


def _smart_inputs(config):
    """
    @return: the L{SmartInput}s of C{config} by group address.
    """
    inputs = {}
    for entry in SMART_INPUTS:
        address = getattr(config.smart, entry.name, None)
        if address is not None:
            inputs[address] = entry
    return inputs


def has_group_objects(config):
    """
    @return: whether C{config} links any group object: a charging point's,
        or a C{[smart]} price or surplus address.
    """
    return bool(_points(config)) or bool(_smart_inputs(config))


class KnxBridge(service.Service):
    """
    Bridges every charging point's group objects to the domain.

    @ivar points: the linked charging points by C{(charger id, connector)}.
    """

    def __init__(self, config, central, controller, link, clock, tz=None, smart=None):
        """
        @param config: the L{Config}.
        @param central: the L{CentralSystem}, whose events are observed.
        @param controller: the L{Controller} that carries out bus commands.
        @param link: the L{KnxdLink} (or anything with its C{write},
            C{respond}, C{connected} and observer methods).
        @param clock: the L{IReactorTime}: start and end times are the
            controller's clock when the domain reports them.
        @param tz: the local zone for times on the bus; L{None} is the
            system's.
        @param smart: the L{SmartManager} that gets C{[smart] prices_ga} and
            C{surplus_ga} telegrams (L{None}: they are ignored).
        """
        self.central = central
        self.controller = controller
        self.link = link
        self.clock = clock
        self.tz = tz
        self.smart = smart
        self.points = {}
        self._smart_inputs = {}
        self._senders = {}
        self._receivers = {}
        # per address, the (point key, object name) that wrote to it last: a
        # GroupValueRead of an address shared by send objects gets that value
        self._last_writer = {}
        self.reconfigure(config)
        central.subscribe(self._event)
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
        for point in _points(config):
            previous = old.get(point.key)
            if previous is not None:
                point.started_at, point.stopped_at, point.last_session = (
                    previous.started_at, previous.stopped_at, previous.last_session)
                if _bus_view(previous.config) == _bus_view(point.config):
                    point.sent = previous.sent
                else:
                    changed.append(point)
            else:
                self._seed(point)
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
        # After a restart the bridge saw no TransactionStarted: the
        # transaction's own start is the best time there is.
        connector = self._connector(point)
        if connector is not None and connector.transaction is not None:
            point.started_at = connector.transaction.start_time

    def _connector(self, point):
        charger = self.central.chargers.get(point.config.id)
        return None if charger is None else charger.connectors.get(point.config.connector)

    def state(self, point):
        """
        @return: the L{PointState} of C{point} now.
        """
        connector = self._connector(point)
        config = point.config
        common = dict(
            started_at=point.started_at,
            last_session=point.last_session,
            stopped_at=point.stopped_at,
            limit=lambda: self.controller.limit(config.id, config.connector),
        )
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

    def _event(self, event):
        if not self.running:
            return
        if isinstance(event, (TransactionStarted, TransactionStopped)):
            self._remember(event)
        for point in self._points_of(event):
            self._refresh(point, forced_by=type(event))

    def _remember(self, event):
        tx = event.transaction
        point = self.points.get((tx.charger_id, tx.connector))
        if point is None:
            return
        now = datetime.fromtimestamp(self.clock.seconds(), timezone.utc)
        if isinstance(event, TransactionStarted):
            point.started_at = now
        else:
            point.last_session, point.stopped_at = tx, now

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
        Write the send objects of C{point} whose value changed significantly.

        @param force: write every known value (after (re)connecting).
        @param forced_by: the type of the event being handled, for
            L{GroupObject.sent_on}.
        @param only: the name of the one object to consider.
        """
        state = self.state(point)
        for obj, address in point.objects:
            if obj.send is None or (only is not None and obj.name != only):
                continue
            value = self._value(point, obj, state)
            if value is None:
                continue
            last = point.sent.get(obj.name)
            if force or forced_by in obj.sent_on or obj.significant(last, value):
                point.sent[obj.name] = value
                self._send(WRITE, point, obj, address, value)

    def _value(self, point, obj, state):
        try:
            return obj.send(state)
        except Exception:
            # one broken derivation must not keep the others off the bus
            _log.failure("KNX {name} of {point}: cannot derive the value",
                         name=obj.name, point=point)
            return None

    def _send(self, kind, point, obj, address, value):
        payload = self._encode(point, obj, address, value)
        if payload is None:
            return
        if kind == WRITE:
            if self.link.write(address, payload):
                self._last_writer[address] = (point.key, obj.name)
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
                          "value instead", name=obj.name, point=point, address=address,
                          reason=e)
                return dpt.encode(value, clamp=True)
        except DPTError as e:
            _log.warn("KNX {name} of {point} ({address}) not sent: {reason}",
                      name=obj.name, point=point, address=address, reason=e)
            return None

    def _answer(self, address):
        senders = self._senders.get(address, [])
        # the object that wrote to the address last, else the first with a value
        last = self._last_writer.get(address)
        ordered = sorted(senders, key=lambda s: (s[0].key, s[1].name) != last)
        for point, obj in ordered:
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
            for point, obj in self._receivers.get(telegram.dst, ()):
                self._received(point, obj, telegram)
            entry = self._smart_inputs.get(telegram.dst)
            if entry is not None:
                self._smart_received(entry, telegram)

    def _smart_received(self, entry, telegram):
        what = f"KNX write {telegram.payload!r} from {telegram.src} to {telegram.dst} " \
               f"(smart.{entry.name})"
        if self.smart is None:
            _log.warn("{what} ignored: no Smart Energy Manager", what=what)
            return
        try:
            value = entry.dpt.decode(telegram.payload)
        except DPTError as e:
            _log.warn("{what} ignored: {reason}", what=what, reason=e)
            return
        try:
            entry.apply(self.smart, value)
        except Exception:
            _log.failure("{what} failed", what=what)

    def _received(self, point, obj, telegram):
        dpt = obj.dpt_for(point.config)
        what = f"KNX write {telegram.payload!r} from {telegram.src} to {telegram.dst} " \
               f"({obj.name} of {point})"
        try:
            value = dpt.decode(telegram.payload)
            convert = _FROM_BUS.get(dpt.unit)
            if convert is not None:
                value = convert(value)
            d = obj.receive(self.controller, point.config, value)
        except DPTError as e:
            _log.warn("{what} ignored: {reason}", what=what, reason=e)
            return
        except Exception:
            _log.failure("{what} failed", what=what)
            return
        if d is not None:
            d.addCallback(self._answered, point, obj, what)
            d.addErrback(lambda failure: _log.failure("{what} failed", failure, what=what))

    def _answered(self, result, point, obj, what):
        if result.accepted:
            _log.info("{what}: {status}", what=what, status=result.status)
        else:
            detail = f" ({result.detail})" if result.detail else ""
            _log.warn("{what} not carried out: {status}{detail}", what=what,
                      status=result.status, detail=detail)
        if obj.echo and self.running and point is self.points.get(point.key):
            self._refresh(point, force=True, only=obj.name)


def _bus_view(charger):
    """
    What of a L{ChargerConfig} decides what the bridge puts on the bus.
    """
    return (charger.knx, charger.time_dpt, charger.current_dpt)
