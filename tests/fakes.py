# -*- test-case-name: tests.test_fakes -*-
"""
Fakes of the service's own classes for unit tests.

Each fake stands in for one real class (L{fake_of}) and defines only
methods of that class, with the same signatures: L{tests.test_fakes} fails
when they drift apart (a method renamed, a parameter added). None has a
catch-all C{__getattr__}: code calling a method the fake lacks fails with
an L{AttributeError} instead of passing against a fake.

  - L{MemoryStore} for L{xxterocpp.store.Store}: keeps what is written and
    loads it back, as the database does across a restart;
  - L{FakeCentral} and L{FakeCharger} for the domain's central system and
    chargers, whose state the test sets itself, with its
    L{FakeConnections} and L{FakeUnknownAttempts};
  - L{FakeSession} for an L{xxterocpp.ocpp.rpc.OcppSession};
  - L{FakeController} for L{xxterocpp.control.Controller}: records
    commands and answers them;
  - L{FakeLink} for L{xxterocpp.knx.knxd.KnxdLink};
  - L{FakeSmart} for L{xxterocpp.smart.manager.SmartManager}.

Fakes kept with the tests that use them are registered the same way:
L{tests.upstream_memory} (the upstream tables and link) and
L{tests.test_upstream_link} (the link's owner, an uplink).

The observers of the domain's events are subscribed by the test, as by the
composition root: C{central.subscribe(controller.observe)}.
"""

import copy
import functools
import inspect
import json

import attr
from twisted.internet import defer

from xxterocpp.domain.connections import Connections, fold_identity
from xxterocpp.config import parse_config
from xxterocpp.control import CommandResult, Controller
from xxterocpp.control.chargingprofiles import plan_profile, schedule_periods
from xxterocpp.domain.central import CentralSystem
from xxterocpp.domain.model import Charger, Connector
from xxterocpp.domain.unknown import UnknownAttempts
from xxterocpp.knx.knxd import RESPONSE, WRITE, KnxdLink, Telegram
from xxterocpp.knx.address import GroupAddress
from xxterocpp.ocpp import messages
from xxterocpp.ocpp.rpc import OcppSession
from xxterocpp.smart.manager import SmartManager
from xxterocpp.store import (
    MAX_IDENTITY_LENGTH,
    MAX_UNKNOWN_CHARGERS,
    ConnectorStatusRecord,
    Store,
    StoreError,
    TagRecord,
    TransactionRecord,
    UnknownChargerRecord,
)
from xxterocpp.store.records import to_text

#: C{(fake, real class, names of the fake's own helpers)} of every fake
#: here, for L{tests.test_fakes}.
FAKES = []


def fake_of(real, helpers=()):
    """
    Register the decorated class as a fake of C{real}: its public methods
    are C{real}'s, with the same signatures, but for C{helpers} (methods
    for the tests that C{real} does not have).
    """

    def register(fake):
        FAKES.append((fake, real, frozenset(helpers)))
        return fake

    return register


@fake_of(Store, helpers=("written",))
class MemoryStore:
    """
    The state store in memory. Each write is kept at once and its Deferred
    fires at once, or, for the write methods named in C{hold}, when the test
    fires it; the C{load_*} and C{query_*} methods answer with what is kept,
    so a next L{CentralSystem} on the same store finds it as after a
    restart. Like the real store, a naive datetime or a setting that is no
    JSON raises at once, an unknown identity longer than
    L{MAX_IDENTITY_LENGTH} is refused (a failed Deferred) and only the
    L{MAX_UNKNOWN_CHARGERS} identities seen last are kept.

    @ivar writes: C{(method name, arguments)} of every write taken, in
        order.
    @ivar hold: the names of the write methods whose Deferreds wait in
        C{held}.
    @ivar held: those Deferreds, in order.
    @ivar settings: the values by C{(scope, key)}, as JSON gives them back.
    @ivar tags: the L{TagRecord}s by id.
    @ivar statuses: the L{ConnectorStatusRecord}s by C{(charger id,
        connector)}.
    @ivar transactions: the L{TransactionRecord}s by id; a stop of a
        transaction that is not open changes nothing (the real store keeps
        it as an orphan stop).
    @ivar orphan_stops: the arguments of every L{record_orphan_stop}.
    @ivar unknown: the L{UnknownChargerRecord}s by identity, the first seen
        first.
    @ivar counter: the highest transactionId handed out, what
        L{last_transaction_id} answers.
    """

    def __init__(self):
        self.writes = []
        #: The C{(scope, key)} of every setting written lazily.
        self.lazy_settings = []
        self.hold = set()
        self.held = []
        self.settings = {}
        self.tags = {}
        self.statuses = {}
        self.transactions = {}
        self.orphan_stops = []
        self.unknown = {}
        self.counter = 0

    def written(self, name):
        """
        @return: the arguments of every write of method C{name}, in order.
        """
        return [args for n, args in self.writes if n == name]

    @staticmethod
    def _quietly(quiet, d):
        # Like the real store: a quiet write gives no Deferred.
        return None if quiet else d

    def _written(self, name, *args):
        self.writes.append((name, args))
        if name in self.hold:
            self.held.append(defer.Deferred())
            return self.held[-1]
        return defer.succeed(None)

    # -- startup reads -------------------------------------------------------

    def load_open_transactions(self):
        return [tx for tx in self._by_start() if tx.stop_time is None]

    def load_recent_transactions(self, limit=1000):
        return self._by_start()[::-1][:limit]

    def load_connector_status(self):
        return [self.statuses[key] for key in sorted(self.statuses)]

    def load_unknown_chargers(self):
        return sorted(self.unknown.values(), key=lambda r: r.last_seen, reverse=True)

    def load_settings(self):
        return copy.deepcopy(self.settings)

    def load_tags(self):
        return [self.tags[tag_id] for tag_id in sorted(self.tags)]

    def last_transaction_id(self):
        return self.counter

    def _by_start(self):
        return sorted(self.transactions.values(), key=lambda tx: (tx.start_time, tx.id))

    # -- reads ---------------------------------------------------------------

    def query_transactions(self, charger_id=None, since=None, until=None, limit=None):
        found = [tx for tx in self._by_start()[::-1]
                 if charger_id in (None, tx.charger_id)
                 and (since is None or tx.start_time >= since)
                 and (until is None or tx.start_time < until)]
        return defer.succeed(found[:limit])

    # -- writes --------------------------------------------------------------

    def insert_transaction(self, rec):
        to_text(rec.start_time)
        self.transactions[rec.id] = TransactionRecord(
            rec.id, rec.charger_id, rec.connector, rec.id_tag, rec.start_time,
            rec.meter_start, rec.reservation_id, rec.start_status, rec.dedup_key,
            time_uncertain=rec.time_uncertain)
        self.counter = max(self.counter, rec.id)
        return self._written("insert_transaction", rec)

    def update_meter(self, tx_id, energy_wh, at, quiet=False):
        to_text(at)
        if tx_id in self.transactions:
            self.transactions[tx_id] = attr.evolve(
                self.transactions[tx_id], last_meter_wh=energy_wh, last_meter_time=at)
        return self._quietly(quiet, self._written("update_meter", tx_id, energy_wh, at))

    def stop_transaction(self, tx_id, meter_stop, stop_time, reason, stop_id_tag,
                         time_uncertain=False):
        to_text(stop_time)
        tx = self.transactions.get(tx_id)
        if tx is not None and tx.stop_time is None:
            self.transactions[tx_id] = attr.evolve(
                tx, stop_time=stop_time, meter_stop=meter_stop, stop_reason=reason,
                stop_id_tag=stop_id_tag, time_uncertain=tx.time_uncertain or time_uncertain)
        return self._written("stop_transaction", tx_id, meter_stop, stop_time, reason,
                             stop_id_tag)

    def record_orphan_stop(
        self, charger_id, tx_id, meter_stop, stop_time, reason, received_at, note
    ):
        args = (charger_id, tx_id, meter_stop, stop_time, reason, received_at, note)
        to_text(stop_time)
        to_text(received_at)
        self.orphan_stops.append(args)
        return self._written("record_orphan_stop", *args)

    def save_connector_status(self, charger_id, connector, status, error_code, info, at,
                              quiet=False):
        to_text(at)
        self.statuses[(charger_id, connector)] = ConnectorStatusRecord(
            charger_id, connector, status, error_code, info, at)
        return self._quietly(quiet, self._written("save_connector_status", charger_id,
                                                  connector, status, error_code, info, at))

    def record_unknown_attempts(self, identity, address, first_seen, last_seen, attempts):
        if len(identity) > MAX_IDENTITY_LENGTH:
            return defer.fail(StoreError(f"an identity of {len(identity)} characters"))
        to_text(first_seen), to_text(last_seen)
        known = self.unknown.get(identity)
        if known is None:
            self.unknown[identity] = UnknownChargerRecord(
                identity, address, first_seen, last_seen, attempts)
        else:
            self.unknown[identity] = attr.evolve(known, address=address, last_seen=last_seen,
                                                 count=known.count + attempts)
        # The real store keeps the latest seen; of a tie, the one added last.
        ranked = sorted(enumerate(self.unknown.values()),
                        key=lambda entry: (entry[1].last_seen, entry[0]), reverse=True)
        kept = {record.identity for _, record in ranked[:MAX_UNKNOWN_CHARGERS]}
        self.unknown = {i: r for i, r in self.unknown.items() if i in kept}
        return self._written("record_unknown_attempts", identity, address, first_seen,
                             last_seen, attempts)

    def put_setting(self, scope, key, value, lazy=False, quiet=False):
        self.settings[(scope, key)] = json.loads(json.dumps(value))
        if lazy:
            self.lazy_settings.append((scope, key))
        return self._quietly(quiet, self._written("put_setting", scope, key, value))

    def delete_setting(self, scope, key):
        self.settings.pop((scope, key), None)
        return self._written("delete_setting", scope, key)

    def put_tag(self, tag_id, status, expiry=None, parent=None):
        to_text(expiry)
        self.tags[tag_id] = TagRecord(tag_id, status, expiry, parent)
        return self._written("put_tag", tag_id, status, expiry, parent)

    def delete_tag(self, tag_id):
        self.tags.pop(tag_id, None)
        return self._written("delete_tag", tag_id)


@fake_of(Charger)
class FakeCharger:
    """
    A charger as the KNX bridge sees it: connected (by default), seen
    before, not offline; the test sets these and its connectors' state.
    """

    def __init__(self, charger_id):
        self.id = charger_id
        self.connectors = {}
        self.connected = True
        self.ever_connected = True
        self.offline = False

    def connector(self, number):
        return self.connectors.setdefault(number, Connector(self.id, number))


@fake_of(CentralSystem, helpers=("connector",))
class FakeCentral:
    """
    A central system whose state the test sets: L{FakeCharger}s, their last
    sessions, the configuration; it emits the events the test gives
    L{emit}.

    @ivar last_sessions: what L{last_session} answers, by C{(charger id,
        connector)}.
    @ivar connections: its L{FakeConnections}.
    @ivar unknown_attempts: its L{FakeUnknownAttempts}.
    @ivar pending_commands: what L{pending} answers, by C{(charger id,
        connector)}: lists of L{xxterocpp.domain.accepted.Pending}.
    """

    def __init__(self, *charging_points, config=None):
        """
        @param charging_points: the C{(charger id, connector)} it knows.
        @param config: the L{xxterocpp.config.Config}; default an empty one.
        """
        self.config = parse_config("") if config is None else config
        self.chargers = {}
        self.last_sessions = {}
        self.connections = FakeConnections(self.chargers)
        self.unknown_attempts = FakeUnknownAttempts()
        self.pending_commands = {}
        self._observers = []
        for charger_id, connector in charging_points:
            self.chargers.setdefault(charger_id, FakeCharger(charger_id)).connector(connector)

    def connector(self, charger_id, number=1):
        """
        @return: the L{Connector} C{number} of charger C{charger_id}.
        """
        return self.chargers[charger_id].connectors[number]

    def subscribe(self, observer):
        self._observers.append(observer)

    def emit(self, event):
        for observer in list(self._observers):
            observer(event)

    def point_status(self, charger_id, connector):
        """
        As the domain works it out: Unavailable while offline, connector 0's
        Unavailable or Faulted, else the connector's own.
        """
        charger = self.chargers[charger_id]
        if charger.offline:
            return ("Unavailable", "NoError")
        for c in (charger.connectors.get(0), charger.connectors.get(connector)):
            if c is not None and c.status is not None and (
                    c.number != 0 or c.status in ("Unavailable", "Faulted")):
                return (c.status, c.error_code)
        return (None, None)

    def last_session(self, charger_id, connector):
        return self.last_sessions.get((charger_id, connector))

    def pending(self, charger_id, connector):
        return list(self.pending_commands.get((charger_id, connector), ()))


@fake_of(Connections)
class FakeConnections:
    """
    The connections of a L{FakeCentral}: who an identity is, and the
    refusals it was told of.

    @ivar refusals: C{(identity or None, address, reason, detail)} of every
        L{refused} and L{refused_unnamed}.
    """

    def __init__(self, chargers):
        self._chargers = chargers
        self.refusals = []

    def lookup(self, identity):
        if identity in self._chargers:
            return identity
        # The domain's own comparison, not a copy of it.
        folded = fold_identity(identity)
        return next((i for i in self._chargers if fold_identity(i) == folded), None)

    def refused(self, identity, address, reason, detail=None):
        self.refusals.append((identity, address, reason, detail))

    def refused_unnamed(self, address, reason, detail=None):
        self.refusals.append((None, address, reason, detail))


@fake_of(UnknownAttempts)
class FakeUnknownAttempts:
    """
    The unknown identities' attempts of a L{FakeCentral}.

    @ivar recorded: C{(identity, address)} of every L{record}.
    """

    def __init__(self):
        self.recorded = []

    def record(self, identity, address):
        self.recorded.append((identity, address))


@fake_of(OcppSession)
class FakeSession:
    """
    An adapter's session with a charger: it is only ever closed.
    """

    closed = False

    def close(self):
        self.closed = True


def _command(method):
    """
    Make C{method} of L{FakeController} a command: each call is kept in
    C{calls} as C{(name, args, kwargs)}, as the caller passed them, runs
    C{method} and is answered by L{FakeController._answer}.
    """
    signature = inspect.signature(method)

    @functools.wraps(method)
    def command(self, *args, **kwargs):
        # A call the real controller would refuse fails here too.
        signature.bind(self, *args, **kwargs)
        self.calls.append((method.__name__, args, kwargs))
        method(self, *args, **kwargs)
        return self._answer()

    return command


@fake_of(Controller, helpers=("answer", "arguments", "steered", "profiles"))
class FakeController:
    """
    The controller's commands, recorded. Each is answered at once with
    C{result} or, while that is L{None}, waits in C{pending} for L{answer}.

    @ivar calls: C{(name, args, kwargs)} of every command, in order.
    @ivar pending: the Deferreds of the commands not answered yet.
    @ivar result: the L{CommandResult} commands get at once, or L{None}.
    @ivar limits: what L{limit} answers, by C{(charger id, connector)}.
    @ivar modes: what L{mode} answers, by C{(charger id, connector)}.
    @ivar own: what L{own_limit} answers, by C{(charger id, connector)}
        (default: the point's normal_current).
    @ivar schedules: C{(charger id, SetChargingProfile as JSON)} of every
        L{set_schedule}, the request the real controller builds of it.
    @ivar limit_observers: the observers given L{observe_limits}.
    """

    def __init__(self, central=None, result=None):
        """
        @param central: the central system L{set_schedule},
            L{schedule_periods} and L{own_limit} read the chargers and the
            configuration of.
        """
        self.central = central
        self.result = result
        self.calls = []
        self.pending = []
        self.limits = {}
        self.modes = {}
        self.own = {}
        self.schedules = []
        self.limit_observers = []

    def _answer(self):
        if self.result is not None:
            return defer.succeed(self.result)
        self.pending.append(defer.Deferred())
        return self.pending[-1]

    def answer(self, accepted=True, status="Accepted", detail=""):
        """
        Answer the oldest pending command.
        """
        self.pending.pop(0).callback(CommandResult(accepted, status, detail))

    def arguments(self, name):
        """
        @return: the arguments of every call of command C{name} by
            parameter name, in order.
        """
        signature = inspect.signature(getattr(FakeController, name))
        return [signature.bind(self, *args, **kwargs).arguments
                for n, args, kwargs in self.calls if n == name]

    def steered(self, charger_id=None):
        """
        @return: C{(charger id, connector, amps)} of every L{steer} (of
            C{charger_id}, or of all).
        """
        return [(a["charger_id"], a["connector"], a["amps"]) for a in self.arguments("steer")
                if charger_id in (None, a["charger_id"])]

    def profiles(self):
        """
        @return: the L{schedules} as C{(charger id, [(startPeriod, limit)])}.
        """
        return [(charger_id, [(p["startPeriod"], p["limit"]) for p in payload[
                    "csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"]])
                for charger_id, payload in self.schedules]

    # -- the bus's and the page's commands ----------------------------------

    @_command
    def start(self, charger_id, connector=1, id_tag=None, smart=False, charging_profile=None):
        pass

    @_command
    def stop(self, charger_id, connector=1):
        pass

    @_command
    def reserve(self, charger_id, connector=1, id_tag=None, expiry=None):
        pass

    @_command
    def free(self, charger_id, connector=1):
        pass

    @_command
    def set_availability(self, charger_id, connector, available):
        pass

    @_command
    def unlock(self, charger_id, connector=1):
        pass

    @_command
    def set_limit(self, charger_id, connector, amps):
        pass

    @_command
    def reset(self, charger_id, hard=False):
        pass

    @_command
    def fast(self, charger_id, connector=1):
        pass

    @_command
    def normal(self, charger_id, connector=1):
        pass

    def limit(self, charger_id, connector=1):
        return self.limits.get((charger_id, connector))

    def mode(self, charger_id, connector=1):
        return self.modes.get((charger_id, connector))

    # -- the Smart Energy Manager's ------------------------------------------

    @_command
    def set_schedule(self, charger_id, connector, transaction_id, start, periods):
        request = plan_profile(self.central.chargers[charger_id],
                               self.central.config.charger(charger_id, connector),
                               transaction_id, start, periods)
        self.schedules.append((charger_id, messages.encode(request)))

    @_command
    def steer(self, charger_id, connector, amps):
        pass

    @_command
    def release(self, charger_id, connector):
        pass

    def schedule_periods(self, charger_id):
        return schedule_periods(self.central.chargers[charger_id])

    def own_limit(self, charger_id, connector=1):
        key = (charger_id, connector)
        if key in self.own:
            return self.own[key]
        return self.central.config.charger(charger_id, connector).normal_current

    def observe_limits(self, observer):
        self.limit_observers.append(observer)


@fake_of(KnxdLink, helpers=("receive", "up", "take"))
class FakeLink:
    """
    A knxd link that records what is sent while it is up; the test feeds
    telegrams (L{receive}) and takes it up and down (L{up}).

    @ivar sent: C{(kind, destination text, value)} of what was sent.
    """

    def __init__(self, connected=True):
        self.connected = connected
        self.sent = []
        self._telegram_observers = []
        self._link_observers = []

    def add_telegram_observer(self, observer):
        self._telegram_observers.append(observer)

    def add_link_observer(self, observer):
        self._link_observers.append(observer)

    def write(self, dst, value):
        if self.connected:
            self.sent.append((WRITE, str(dst), value))
        return self.connected

    def respond(self, dst, value):
        if self.connected:
            self.sent.append((RESPONSE, str(dst), value))
        return self.connected

    def receive(self, dst, kind, payload=0):
        """
        A telegram from 0.0.9 to C{dst} (text) for the observers.
        """
        for observer in self._telegram_observers:
            observer(Telegram("0.0.9", GroupAddress.parse(dst), kind, payload))

    def up(self, up=True):
        """
        The link goes up (or down, C{up} false), as the observers hear.
        """
        self.connected = up
        for observer in self._link_observers:
            observer(up)

    def take(self):
        """
        @return: what was sent since the last call.
        """
        sent, self.sent = self.sent, []
        return sent


@fake_of(SmartManager)
class FakeSmart:
    """
    Records what the Smart Energy Manager is given.

    @ivar calls: C{("price", price, at)} and C{("surplus", watts)}, in order.
    @ivar failure: an exception the next call raises (after it is recorded),
        or L{None}.
    """

    def __init__(self):
        self.calls = []
        self.failure = None

    def _called(self, *call):
        self.calls.append(call)
        failure, self.failure = self.failure, None
        if failure is not None:
            raise failure

    def set_price(self, price, at=None):
        self._called("price", price, at)

    def set_surplus(self, watts):
        self._called("surplus", watts)
