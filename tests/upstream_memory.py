"""
The back office adapter in memory, on a L{Clock}: the real domain,
controller and L{Upstream} with in-memory tables, a scripted charger on a
real L{OcppSession}, and a scripted back office on another, wired to the
uplink's session through the clock (one reactor turn per frame). For unit
tests of L{xxterocpp.upstream} that run on both stacks, without sockets.
"""

import copy
import json
from datetime import datetime, timezone
from functools import partial

import attr
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.fakes import fake_of
from tests.test_control import MemoryStore, ScriptedCharger
from xxterocpp.config import parse_config
from xxterocpp.control import Controller
from xxterocpp.domain.central import CentralSystem
from xxterocpp.ocpp import messages as m
from xxterocpp.ocpp.handlers import dispatch
from xxterocpp.ocpp.rpc import CallError, OcppSession
from xxterocpp.store.upstream import (
    DeadLetterRecord, QueuedRecord, UpstreamState, UpstreamStore)
from xxterocpp.upstream import Upstream
from xxterocpp.upstream.link import Link

T0 = datetime(2030, 6, 1, 12, 0, tzinfo=timezone.utc)

CONFIG = """
[ocpp]
max_chargers = 2
call_timeout = 30

[[tag]]
id = "GOOD"

[[tag]]
id = "BLOCKED"
status = "Blocked"

[[charger]]
id = "CP1"
max_current = 32
normal_current = 16
allowed_tags = ["GOOD"]

[charger.upstream]
url = "ws://bo.example/ocpp"
identity = "HOME-CP1"
offline_authorization = "{offline}"
allow_reset = {allow_reset}
stop_refused = {stop_refused}

[[charger]]
id = "OTHER"
max_current = 16

[[charger]]
id = "OTHER"
connector = 2
max_current = 16
"""


def _parsed(rec):
    """
    @return: a copy of C{rec} with its payload a dict (the outbox gives its
        text, as the table keeps it).
    """
    payload = rec.payload
    return attr.evolve(rec, payload=json.loads(payload) if isinstance(payload, str)
                       else copy.deepcopy(payload))


@fake_of(UpstreamStore)
class MemoryTables:
    """
    L{xxterocpp.store.upstream.UpstreamStore} in memory; what it keeps
    survives into the next L{Upstream} like the database does.
    """

    def __init__(self):
        self.queue = {}
        self.dead = {}
        self.ids = {}
        self.writes = []

    def load(self):
        counts = {}
        for rec in self.dead.values():
            counts[rec.charger_id] = counts.get(rec.charger_id, 0) + 1
        seqs = list(self.queue) + list(self.dead)
        return UpstreamState(
            [self.queue[s] for s in sorted(self.queue)],
            [self.dead[s] for s in sorted(self.dead)], counts,
            [self.ids[t] for t in sorted(self.ids)], max(seqs, default=0))

    def _write(self, name, *args):
        self.writes.append((name, args))
        return defer.succeed(None)

    def enqueue(self, rec, lazy=False):
        self.queue[rec.seq] = _parsed(rec)
        return self._write("enqueue", rec.seq)

    def replace(self, rec, lazy=False):
        # Named after what changed: a thinned payload, or a failure counted.
        old = self.queue[rec.seq]
        self.queue[rec.seq] = _parsed(rec)
        return self._write("failed" if rec.failures != old.failures else "replace", rec.seq)

    def delivered(self, seq, mapping=None, lazy=False):
        del self.queue[seq]
        if mapping is not None:
            self.ids[mapping.transaction_id] = mapping
        return self._write("delivered", seq)

    def dropped(self, seq, lazy=False):
        del self.queue[seq]
        return self._write("dropped", seq)

    def dead_letter(self, rec):
        del self.queue[rec.seq]
        self.dead[rec.seq] = _parsed(rec)
        return self._write("dead_letter", rec.seq)

    def dead_letters(self, charger_id, limit, max_bytes=None):
        found, size = [], 0
        for seq in sorted(self.dead):
            rec = self.dead[seq]
            if rec.charger_id != charger_id or len(found) == limit:
                continue
            if max_bytes is not None and found and size >= max_bytes:
                break
            size += len(json.dumps(rec.payload).encode())
            found.append(copy.deepcopy(rec))
        return defer.succeed(found)

    def requeue(self, seqs):
        for seq in seqs:
            rec = self.dead.pop(seq)
            self.queue.setdefault(seq, QueuedRecord(
                rec.seq, rec.charger_id, rec.action, rec.transaction_id, rec.payload,
                rec.queued_at, 0, rec.error))
        return self._write("requeue", *seqs)


@fake_of(UpstreamStore)
class ForgettingTables(MemoryTables):
    """
    L{MemoryTables} that keep nothing of the queue: what an outbox holds
    in memory is then all that tracemalloc sees.
    """

    def enqueue(self, rec, lazy=False):
        return defer.succeed(None)

    def dropped(self, seq, lazy=False):
        return defer.succeed(None)


@fake_of(UpstreamStore)
class HeldTables(MemoryTables):
    """
    L{MemoryTables} whose enqueues that are not lazy are committed only
    when the test fires them (L{held}), while L{holding}.
    """

    def __init__(self):
        super().__init__()
        self.holding = False
        self.held = []
        self.lazy = []

    def enqueue(self, rec, lazy=False):
        super().enqueue(rec, lazy)
        if lazy:
            self.lazy.append(rec.action)
        if lazy or not self.holding:
            return defer.succeed(None)
        d = defer.Deferred()
        self.held.append(d)
        return d


class MemoryBackOffice:
    """
    The back office: a real L{OcppSession} as the central system, its
    answers scripted.

    @ivar calls: C{(action, payload)} of every CALL it got, in order.
    @ivar boot_answers: C{(status, interval)} for the next boots, then
        Accepted with 300 s.
    @ivar tags: C{{idTag: status}}, others Invalid.
    @ivar expiries: C{{idTag: datetime}}: the expiryDate it gives them.
    @ivar errors: C{{action: n}}: the next n CALLs answered with CALLERROR.
    @ivar error_codes: C{{action: code}}: the code of those CALLERRORs
        (default InternalError).
    @ivar silent: actions it does not answer.
    """

    def __init__(self, clock):
        self.clock = clock
        self.calls = []
        self.boot_answers = []
        self.tags = {}
        self.expiries = {}
        self.errors = {}
        self.error_codes = {}
        self.silent = set()
        self.next_transaction_id = 900001
        self.session = None

    def _dispatch(self, action, request):
        self.calls.append((action, m.encode(request)))
        if action in self.silent:
            return defer.Deferred()
        if self.errors.get(action, 0) > 0:
            self.errors[action] -= 1
            raise CallError(self.error_codes.get(action, m.INTERNAL_ERROR),
                            f"injected for {action}")
        id_tag = getattr(request, "id_tag", None)
        info = m.IdTagInfo(status=self.tags.get(id_tag, "Invalid"),
                           expiry_date=self.expiries.get(id_tag))
        if action == "BootNotification":
            status, interval = self.boot_answers.pop(0) if self.boot_answers else ("Accepted", 300)
            return m.BootNotificationResponse(status=status, interval=interval,
                                              current_time=T0)
        if action == "Heartbeat":
            return m.HeartbeatResponse(current_time=T0)
        if action == "Authorize":
            return m.AuthorizeResponse(id_tag_info=info)
        if action == "StartTransaction":
            self.next_transaction_id += 1
            return m.StartTransactionResponse(transaction_id=self.next_transaction_id - 1,
                                              id_tag_info=info)
        return m.ACTIONS[action].response()

    def actions(self):
        return [a for a, p in self.calls]

    def payloads(self, action):
        return [p for a, p in self.calls if a == action]

    def call(self, request):
        """
        Send a CALL to the charger as the back office.

        @return: a Deferred of the response message.
        """
        return self.session.call(request)


@fake_of(Link, helpers=("connect", "close"))
class MemoryLink:
    """
    In place of L{xxterocpp.upstream.link.Link}: connects the uplink to a
    L{MemoryBackOffice} through the clock.
    """

    def __init__(self, office, clock, charger_id, config, uplink, call_timeout, password,
                 frame_observer):
        self.uplink = uplink
        self.office = office
        self.config = config
        self.password = password
        self.identity = config.identity or charger_id
        self.url = "ws://bo.example/ocpp/" + self.identity
        self.state = "stopped"
        self.since = clock.seconds()
        self.last_error = None
        self.attempts = 0
        self.up = True
        self._ours = self._theirs = None

    def start(self):
        if self.state == "stopped":
            self.connect()

    def connect(self):
        if not self.up:
            self.state = "waiting"
            return
        clock = self.uplink.clock
        self.state, self.since = "open", clock.seconds()
        office = self.office
        ours = OcppSession(self.identity, lambda t: clock.callLater(0, self._to_office, t),
                           self.uplink.dispatch, clock, 30, accepts=m.CS_TO_CP)
        # The back office waits longer than the controller waits for the
        # charger. Its session of the latest link is the one tests call on.
        self._theirs = office.session = OcppSession(
            "BO", lambda t: clock.callLater(0, self._to_us, t), office._dispatch, clock, 60)
        self._ours = ours
        self.uplink.opened(ours)

    def _to_office(self, text):
        if self._theirs is not None and self._theirs.open:
            self._theirs.text_received(text)

    def _to_us(self, text):
        if self._ours is not None and self._ours.open:
            self._ours.text_received(text)

    def close(self, state="stopped"):
        self.state = state
        if self._ours is not None:
            ours, self._ours = self._ours, None
            self._theirs.connection_lost()
            ours.connection_lost()
            self.uplink.closed()

    def stop(self):
        self.close()

    def drop(self, why):
        self.last_error = why
        self.close("waiting")

    def good(self):
        self.attempts = 0


class UpstreamTestCase(SynchronousTestCase):
    """
    CP1 forwarded to a L{MemoryBackOffice}; C{self.charger} is CP1, a
    L{ScriptedCharger}.
    """

    def setUp(self):
        self.stores()
        self.build()

    def stores(self):
        """
        The clock, the stores and the back office, before any service.
        """
        self.clock = Clock()
        self.clock.advance(T0.timestamp())
        self.store = MemoryStore()
        self.tables = MemoryTables()
        self.office = MemoryBackOffice(self.clock)

    def build(self, offline="local", allow_reset="false", stop_refused="false", wall=None):
        """
        Make the service anew from what the stores keep (a restart).

        @param wall: the system clock, if not C{self.clock} (which is the
            monotonic one then).
        """
        config = self.config(offline, allow_reset, stop_refused)
        self.central = CentralSystem(config, self.store, self.clock, wall=wall)
        self.central.load()
        self.controller = Controller(self.central, self.clock)
        self.central.subscribe(self.controller.observe)
        self.controller.boot_wait = 1e9
        self.upstream = Upstream(self.central, self.controller, self.store, self.clock,
                                 tables=self.tables)
        self.central.subscribe(self.upstream.observe)
        self.upstream.link_factory = partial(MemoryLink, self.office)
        self.upstream.startService()
        self.addCleanup(self.shutdown)
        self.uplink = self.upstream.uplinks["CP1"]
        self.link = self.uplink.link

    @staticmethod
    def config(offline="local", allow_reset="false", stop_refused="false", identity="HOME-CP1"):
        """
        @return: the configuration of these tests.
        """
        return parse_config(CONFIG.replace('"HOME-CP1"', repr(identity).replace("'", '"'))
                            .format(offline=offline, allow_reset=allow_reset,
                                    stop_refused=stop_refused))

    def shutdown(self):
        if self.upstream.running:
            self.upstream.stopService()
        self.controller.shutdown()

    def connect(self, boot=True):
        """
        Connect CP1 (and boot it, answered locally).
        """
        self.charger = ScriptedCharger(self.central, self.clock)
        if boot:
            self.send("BootNotification", {"chargePointVendor": "Acme",
                                           "chargePointModel": "Wallbox 11"})
        self.turns()
        return self.charger

    def dispatch(self, action, request):
        return dispatch(self.central, "CP1", action, request, self.upstream.handle)

    def send(self, action, payload):
        """
        A CALL of the charger, through the relay.

        @return: the Deferred of the answer (a JSON payload).
        """
        request, _ = m.decode(m.ACTIONS[action].request, payload, lenient=True)
        d = defer.maybeDeferred(self.dispatch, action, request)
        return d.addCallback(m.encode)

    def answer(self, action, payload):
        """
        @return: the answer to a CALL of the charger, given at once or
            after a few turns of the clock.
        """
        d = self.send(action, payload)
        self.turns()
        return self.successResultOf(d)

    def turns(self, n=20):
        """
        Let the in-memory frames go back and forth.
        """
        for _ in range(n):
            self.clock.advance(0)

    def start(self, tag="GOOD", meter=1000, at="2030-06-01T12:00:00Z", connector=1):
        """
        @return: our transactionId for a StartTransaction of the charger.
        """
        return self.answer("StartTransaction", {
            "connectorId": connector, "idTag": tag, "meterStart": meter,
            "timestamp": at})["transactionId"]

    def office_json(self):
        return json.dumps(self.office.calls)
