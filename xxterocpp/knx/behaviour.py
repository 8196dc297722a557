# -*- test-case-name: tests.test_bridge,tests.test_journal -*-
"""
What the KNX bridge does with each group object: L{OBJECTS}, one
L{BridgedObject} per object declared in L{xxterocpp.knx.objects}, gives
each its behaviour by key (how a send object's value follows from a
point's L{xxterocpp.knx.points.PointState}, when a change is worth sending,
which L{Controller} command a GroupValueWrite of a receive object gives,
which send objects a command concerns); L{SMART_INPUTS} are the
C{[smart]} group addresses of the Smart Energy Manager.

A table, read as a list; L{xxterocpp.knx.bridge.KnxBridge} applies it.
The rules are those of C{docs/knx-objects.md}.
"""

import attr

from xxterocpp.control.electrical import watts
from xxterocpp.knx import objects
from xxterocpp.knx.dpt import DPTError, Float32, lookup
from xxterocpp.knx.points import linked_points

__all__ = ["BridgedObject", "OBJECTS", "SMART_INPUTS", "SmartInput", "has_group_objects",
           "smart_inputs"]

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


def smart_inputs(config):
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
    return bool(linked_points(config, OBJECTS)) or bool(smart_inputs(config))
