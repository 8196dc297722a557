# -*- test-case-name: tests.test_planner -*-
"""
The arithmetic of the Smart Energy Manager: when to charge, how much
current, who gets how much of the site's current. Pure: no I/O, no clock;
every function gets the time as an argument, so every decision can be
replayed in a test.

Times are aware datetimes. Tariffs and departures are local times of day;
C{tz} is the local zone (L{None}: the system's own, as C{astimezone()} sees
it, daylight saving time included).

Currents are A per phase; power is what
L{xxterocpp.control.electrical.watts} makes of them.
"""

import math
from datetime import datetime, time, timedelta, timezone
from typing import Optional

import attr

from xxterocpp.control import electrical
from xxterocpp.control.electrical import MAX_PERIODS, MIN_CURRENT

#: Planning resolution: the quarter hours of energy markets and meters.
SLOT = timedelta(minutes=15)

_DAY = 24 * 60
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _floor1(amps):
    """
    C{amps} rounded down to one decimal, the resolution of an OCPP limit.
    """
    return math.floor(amps * 10 + 1e-9) / 10


def _ceil1(amps):
    """
    C{amps} rounded up to one decimal, so a partial slot never falls short.
    """
    return math.ceil(amps * 10 - 1e-9) / 10


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Capacity:
    """
    What a charging point can deliver.

    @ivar max_current: A per phase, its charging capacity (or its share).
    @ivar phases: 1 or 3.
    """

    max_current: float
    phases: int = 3
    min_current: float = MIN_CURRENT

    def watts(self, amps):
        """
        @return: the power (W) of C{amps} per phase.
        """
        return electrical.watts(amps, self.phases)

    def amps(self, watts):
        """
        @return: the current per phase (A) that C{watts} amount to.
        """
        return electrical.amps(watts, self.phases)


class Tariff:
    """
    Price per kWh by local time of day.

    Each entry C{(start, price)} holds from C{start} until the C{start} of
    the entry after it in the list (the last one until the next C{start} of
    any entry), past midnight if need be; where these spans overlap, the
    later entry wins. So C{00:00 0.30, 23:00 0.18, 07:00 0.30} is 0.18 from
    23:00 to 07:00 and 0.30 in the day, as people write a night tariff:
    a base price, then the exceptions.
    """

    def __init__(self, entries):
        """
        @param entries: C{(datetime.time, price)} pairs, at least one.
        """
        entries = list(entries)
        if not entries:
            raise ValueError("a tariff needs at least one entry")
        starts = [t.hour * 60 + t.minute for t, _ in entries]
        minutes = [None] * _DAY
        for index, (start, (_, price)) in enumerate(zip(starts, entries)):
            if index + 1 < len(starts):
                span = (starts[index + 1] - start) % _DAY
            else:
                span = min(((s - start) % _DAY for s in starts if s != start), default=_DAY)
            for minute in range(start, start + span):
                minutes[minute % _DAY] = price
        self._minutes = tuple(minutes)
        self.changes = tuple(m for m in range(_DAY) if minutes[m] != minutes[m - 1])

    def price(self, local):
        """
        @param local: a local time of day (C{time} or C{datetime}).
        @return: the price per kWh at C{local}.
        """
        return self._minutes[local.hour * 60 + local.minute]


def _local_instant(day, minute, tz):
    """
    The aware instant of local C{day} at C{minute} past midnight.
    """
    naive = datetime.combine(day, time(minute // 60, minute % 60))
    if tz is None:
        return naive.astimezone()
    return naive.replace(tzinfo=tz)


def departure_after(now, departure, tz=None):
    """
    When the car must be ready.

    @param departure: a local C{time} of day (the next one after C{now}:
        07:00 seen at 22:00 is tomorrow morning) or an aware C{datetime}.
    @rtype: aware C{datetime}
    """
    if isinstance(departure, datetime):
        return departure
    local = now.astimezone(tz)
    minute = departure.hour * 60 + departure.minute
    for days in (0, 1, 2):
        candidate = _local_instant(local.date() + timedelta(days), minute, tz)
        if candidate > now:
            return candidate
    raise AssertionError("no departure within two days")  # pragma: no cover


def _tariff_changes(tariff, start, end, tz):
    """
    The instants in (start, end) at which the tariff's price changes.
    """
    day = start.astimezone(tz).date() - timedelta(1)
    last = end.astimezone(tz).date() + timedelta(1)
    while day <= last:
        for minute in tariff.changes:
            instant = _local_instant(day, minute, tz)
            if start < instant < end:
                yield instant
        day += timedelta(1)


def _dynamic_spans(prices, tariff, tz, horizon):
    """
    Dynamic prices as C{(start, end, price)}: each holds until the next
    one; the last one until the tariff's price next changes (the price on the
    bus is today's price, the tariff the best guess for later).
    """
    prices = sorted(prices, key=lambda p: p[0])
    spans = []
    for index, (start, price) in enumerate(prices):
        if index + 1 < len(prices):
            end = prices[index + 1][0]
        else:
            end = next(_tariff_changes(tariff, start, horizon, tz), horizon)
        spans.append((start, end, price))
    return spans


def _value_at(spans, instant, default):
    """
    The value of the last C{(start, end, value)} span covering C{instant}.
    """
    for start, end, value in reversed(spans):
        if start <= instant < end:
            return value
    return default


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Slot:
    """
    A stretch of time with one price and one planned current.

    @ivar current: the planned current (A per phase), 0 or at least the
        minimum current.
    @ivar surplus_current: the part of C{current} expected from PV surplus.
    @ivar energy_wh: the energy the slot delivers at C{current}.
    @ivar cost: what the grid part of that energy costs.
    """

    start: datetime
    end: datetime
    price: float
    current: float
    surplus_current: float = 0.0
    energy_wh: float = 0.0
    cost: float = 0.0


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Plan:
    """
    A charging plan from C{now} until C{departure}; after departure the car
    may draw C{capacity.max_current} (a late driver finds it charging, not
    held back).

    @ivar energy_wh: the energy still needed when planned.
    @ivar planned_wh: the energy the slots deliver.
    @ivar cost: what the plan costs.
    @ivar immediate_cost: what charging the same energy at once would cost.
    @ivar reachable: False when the energy cannot be delivered before
        departure; then every slot is at full current.
    """

    now: datetime
    departure: datetime
    energy_wh: float
    capacity: Capacity
    slots: tuple
    planned_wh: float
    cost: float
    immediate_cost: float
    reachable: bool

    def current_at(self, instant):
        """
        @return: the planned current at C{instant} (full current after
            departure, 0 before the plan).
        """
        if instant >= self.departure:
            return self.capacity.max_current
        for slot in self.slots:
            if slot.start <= instant < slot.end:
                return slot.current
        return 0.0

    def energy_between(self, start, end):
        """
        @return: the energy (Wh) the plan delivers from C{start} to C{end}.
        """
        total = 0.0
        for slot in self.slots:
            overlap = (min(end, slot.end) - max(start, slot.start)).total_seconds()
            if overlap > 0:
                total += slot.energy_wh * overlap / (slot.end - slot.start).total_seconds()
        return total

    def boundaries(self):
        """
        @return: the instants at which the planned current changes.
        """
        changes, previous = [], None
        for slot in self.slots:
            if slot.current != previous:
                changes.append(slot.start)
                previous = slot.current
        if self.capacity.max_current != previous:
            changes.append(self.departure)
        return changes


def _grid_times(start, end, step):
    """
    The multiples of C{step} (since the epoch, so quarter hours in every
    zone) in (start, end).
    """
    seconds = step.total_seconds()
    count = math.floor((start - _EPOCH).total_seconds() / seconds) + 1
    instant = _EPOCH + timedelta(seconds=count * seconds)
    while instant < end:
        yield instant
        instant += step


def next_slot(now, step=SLOT):
    """
    @return: the first slot boundary after C{now}.
    """
    return next(_grid_times(now, now + 2 * step, step))


def _windows(now, departure, tariff, prices, surplus, caps, capacity, tz, step):
    """
    Cut C{now..departure} where anything changes: the slot grid, tariff and
    price changes, surplus and cap intervals.

    @return: C{[start, end, price, max_amps, surplus_amps]} lists.
    """
    cuts = {now, departure}
    cuts.update(_grid_times(now, departure, step))
    cuts.update(_tariff_changes(tariff, now, departure, tz))
    dynamic = _dynamic_spans(prices, tariff, tz, departure)
    for start, end, _ in (*dynamic, *surplus, *caps):
        cuts.update(t for t in (start, end) if now < t < departure)
    cuts = sorted(cuts)
    windows = []
    for start, end in zip(cuts, cuts[1:]):
        price = _value_at(dynamic, start, None)
        if price is None:
            price = tariff.price(start.astimezone(tz))
        most = _floor1(min(capacity.max_current, _value_at(caps, start, capacity.max_current)))
        if most < capacity.min_current:
            most = 0.0
        sun = min(most, _floor1(capacity.amps(_value_at(surplus, start, 0.0))))
        if sun < capacity.min_current:
            # Surplus below the minimum current cannot be used alone.
            sun = 0.0
        windows.append([start, end, price, most, sun])
    return windows


def _fill(windows, energy_wh, capacity, order):
    """
    Grid current per window: windows taken in C{order}, each at its full
    headroom until the energy is there; the last one only as much as
    needed, but never below the minimum current.

    @return: the grid current of every window.
    """
    grid = [0.0] * len(windows)
    needed = energy_wh - sum(
        capacity.watts(sun) * (end - start).total_seconds() / 3600
        for start, end, _, _, sun in windows)
    for index in order:
        if needed <= 0:
            break
        start, end, _, most, sun = windows[index]
        hours = (end - start).total_seconds() / 3600
        if most - sun <= 0 or hours <= 0:
            continue
        full = capacity.watts(most - sun) * hours
        if full <= needed:
            grid[index] = most - sun
        else:
            amps = max(_ceil1(needed / capacity.watts(1) / hours), capacity.min_current - sun)
            grid[index] = min(amps, most - sun)
        needed -= capacity.watts(grid[index]) * hours
    return grid


def _slots(windows, grid, capacity):
    slots = []
    for (start, end, price, _, sun), extra in zip(windows, grid):
        current = round(sun + extra, 1)
        hours = (end - start).total_seconds() / 3600
        energy = capacity.watts(current) * hours
        cost = capacity.watts(extra) * hours / 1000 * price
        slots.append(Slot(start, end, price, current, sun, energy, cost))
    return tuple(slots)


def plan(now, departure, energy_wh, capacity, tariff, prices=(), surplus=(), caps=(), tz=None,
         step=SLOT):
    """
    Plan a charging session: PV surplus first, then the cheapest slots
    before departure (equal prices: the earlier slot), at full current but
    for the last one, which gets what is still missing (at least the
    minimum current).

    To re-plan (a price changed, the car drew less than planned, the driver
    changed departure or energy) call it again from the new C{now} with the
    energy still missing.

    @param now: the aware current time.
    @param departure: a local C{time} of day or an aware C{datetime}; see
        L{departure_after}.
    @param energy_wh: the energy still needed.
    @type capacity: L{Capacity}
    @type tariff: L{Tariff}
    @param prices: dynamic prices C{(start, price)} overriding the tariff.
    @param surplus: expected PV surplus C{(start, end, watts)}.
    @param caps: current limits C{(start, end, amps)}, e.g. the point's
        share of the site limit.
    @param tz: the local zone of C{departure} and C{tariff}.
    @rtype: L{Plan}
    """
    departure = departure_after(now, departure, tz)
    windows = _windows(now, departure, tariff, prices, surplus, caps, capacity, tz, step)
    by_price = sorted(range(len(windows)), key=lambda i: (windows[i][2], windows[i][0]))
    grid = _fill(windows, energy_wh, capacity, by_price)
    possible = sum(capacity.watts(most) * (end - start).total_seconds() / 3600
                   for start, end, _, most, _ in windows)
    reachable = possible >= energy_wh
    if not reachable:
        grid = [most - sun for _, _, _, most, sun in windows]
    slots = _slots(windows, grid, capacity)
    immediate = _slots(windows, _fill(windows, energy_wh, capacity, range(len(windows))), capacity)
    return Plan(
        now=now, departure=departure, energy_wh=energy_wh, capacity=capacity, slots=slots,
        planned_wh=sum(s.energy_wh for s in slots), cost=sum(s.cost for s in slots),
        immediate_cost=sum(s.cost for s in immediate), reachable=reachable)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Schedule:
    """
    A plan as the periods of a charging schedule (the control model makes
    the SetChargingProfile of it).

    @ivar start: when the first period starts: the plan's C{now}, to the
        second.
    @ivar periods: C{(offset, amps)} pairs: seconds from C{start} (the first
        0), A per phase.
    @ivar refresh_at: when the plan has more periods than the charger takes,
        the instant the first one left out starts (send a new schedule
        then); else L{None}.
    """

    start: datetime
    periods: tuple
    refresh_at: Optional[datetime] = None


def to_schedule(plan, max_periods=MAX_PERIODS):
    """
    The schedule of a plan, starting at the plan's C{now}; equal adjacent
    periods are merged, the last period (departure onwards) is the full
    current.

    @param max_periods: the charger's C{ChargingScheduleMaxPeriods}.
    @rtype: L{Schedule}
    """
    start = plan.now.replace(microsecond=0)
    periods = []
    for instant in plan.boundaries():
        offset = max(0, int((instant - start).total_seconds()))
        limit = round(float(plan.current_at(instant)), 1)
        if periods and periods[-1][0] == offset:
            periods[-1] = (offset, limit)
        else:
            periods.append((offset, limit))
    if not periods or periods[0][0] != 0:
        # OCPP: the first period starts at 0.
        periods.insert(0, (0, round(float(plan.current_at(plan.now)), 1)))
    refresh_at = None
    if len(periods) > max_periods:
        refresh_at = start + timedelta(seconds=periods[max_periods][0])
        periods = periods[:max_periods]
    return Schedule(start, tuple(periods), refresh_at)


@attr.s(slots=True)
class SurplusFollower:
    """
    Current from PV surplus, with hysteresis so the car's contactor does not
    chatter when a cloud passes.

    Two states. Idle (0 A): starts following once the surplus has been at
    least C{start_current} (A per phase) for C{start_delay} seconds.
    Following: the current is the surplus, between the minimum and the
    maximum current (a small shortfall is drawn from the grid); it stops
    once the surplus has stayed below C{stop_current} for C{stop_delay}
    seconds. While following, changes smaller than C{step} A are ignored:
    each change is a command to the charger.

    @ivar current: the current to charge with now (A per phase).
    """

    capacity = attr.ib()
    start_current = attr.ib(default=MIN_CURRENT)
    stop_current = attr.ib(default=MIN_CURRENT - 2)
    start_delay = attr.ib(default=60.0)
    stop_delay = attr.ib(default=300.0)
    step = attr.ib(default=1.0)
    current = attr.ib(default=0.0, init=False)
    _since = attr.ib(default=None, init=False)

    @property
    def following(self):
        return self.current > 0

    def update(self, seconds, watts):
        """
        Take a surplus reading.

        @param seconds: the time of the reading (seconds, any epoch).
        @param watts: the surplus available to this point.
        @return: the current to charge with.
        """
        amps = self.capacity.amps(watts)
        if self.following:
            crossing = amps < self.stop_current
        else:
            crossing = amps >= self.start_current
        if not crossing:
            self._since = None
        elif self._since is None:
            self._since = seconds
        due = self.next_change()
        if due is not None and seconds >= due:
            self._since = None
            self.current = 0.0 if self.following else self._clamp(amps)
        elif self.following:
            wanted = self._clamp(amps)
            if abs(wanted - self.current) >= self.step:
                self.current = wanted
        return self.current

    def next_change(self):
        """
        @return: when the state changes if the surplus stays as it is
            (seconds), or L{None}.
        """
        if self._since is None:
            return None
        return self._since + (self.stop_delay if self.following else self.start_delay)

    def _clamp(self, amps):
        return max(self.capacity.min_current, min(self.capacity.max_current, _floor1(amps)))


def share(limit, demands, queue=(), min_current=MIN_CURRENT):
    """
    Share a site limit fairly between charging points.

    Every point that wants current gets an equal share, capped by what it
    wants (its maximum, or what it is seen to draw); what one cannot use goes
    to the others. When the limit cannot give everyone the minimum current,
    the first points of C{queue} are served and the others paused: rotate
    the queue (L{rotate}) so that nobody waits forever.

    @param limit: A per phase for all points together.
    @param demands: the current (A) each point wants, by key; 0 = none.
    @param queue: keys in serving order; keys not in it come after, in
        C{demands} order.
    @return: the current (A) of every key of C{demands}.
    """
    order = [k for k in queue if k in demands] + [k for k in demands if k not in queue]
    wanting = [k for k in order if demands[k] > 0]
    served = wanting[: int(limit // min_current + 1e-9)]
    shares = {key: 0.0 for key in demands}
    remaining = limit
    # Smallest demands first: whatever they leave goes to the rest.
    for index, key in enumerate(sorted(served, key=lambda k: demands[k])):
        fair = remaining / (len(served) - index)
        shares[key] = _floor1(min(max(demands[key], min_current), fair))
        remaining -= shares[key]
    return shares


def rotate(queue, shares, demands):
    """
    The queue after a round of L{share}: when a point that wanted current got
    none, the points served move to the back.

    @return: a new queue (list of keys).
    """
    order = [k for k in queue if k in demands] + [k for k in demands if k not in queue]
    if not any(demands[k] > 0 and shares[k] == 0 for k in order):
        return order
    return [k for k in order if shares[k] == 0] + [k for k in order if shares[k] > 0]
