"""
Hostile and unlucky sequences against the back office adapter
(L{xxterocpp.upstream}): a back office that reuses transactionIds, answers
late, drops the connection at the worst moment, floods us with CALLs or
tries to reach what is the controller's (its keys, its profiles, its
limits); a charger that comes and goes; a queue of thousands after a
restart, a full disk, a charger taken out of the configuration. In memory
on a clock (L{tests.upstream_memory}), the link and the store on loopback
and in a real SQLite file; both stacks.
"""

import json
import sqlite3
from functools import partial

import attr
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.test_control import ScriptedCharger
from tests.test_rpc import SessionHarness
from tests.test_upstream_link import Owner, eventually, sleep
from tests.test_upstream_relay import RelayTestCase, limits, profile
from tests.upstream_memory import T0, MemoryBackOffice, MemoryLink, UpstreamTestCase
from xxterocpp.config import UpstreamConfig
from xxterocpp.control import Controller
from xxterocpp.domain.central import CentralSystem
from xxterocpp.ocpp import messages as m
from xxterocpp.ocpp.handlers import dispatch
from xxterocpp.ocpp.rpc import CallTimeout
from xxterocpp.store import Store
from xxterocpp.store.upstream import QueuedRecord, UpstreamStore
from xxterocpp.upstream import Upstream, delivery, outbox, uplink
from xxterocpp.upstream import link as link_module
from xxterocpp.upstream.link import Link

def stop_payload(tx, meter=2000, at="2030-06-01T12:02:00Z"):
    """
    @return: a StopTransaction payload of our transaction C{tx}.
    """
    return {"transactionId": tx, "meterStop": meter, "timestamp": at, "reason": "Local"}


class LateBackOfficeMixin:
    """
    A back office that answers the actions in C{self.delays} only after
    that many seconds (after our call timeout, say).
    """

    def delayed(self):
        self.delays = {}
        dispatch = self.office._dispatch

        def slow(action, request):
            delay = self.delays.get(action)
            if delay is None:
                return dispatch(action, request)
            d = defer.Deferred()
            self.clock.callLater(delay, lambda: d.callback(dispatch(action, request)))
            return d

        self.office._dispatch = slow


def warned(events, text):
    """
    @return: whether one of the captured C{events} is a warning whose
        text holds C{text}.
    """
    return any(e["log_level"] == LogLevel.warn and text in formatEvent(e) for e in events)


class TwoPointsTestCase(UpstreamTestCase):
    """
    CP1 with two charging points, forwarded as before.
    """

    @staticmethod
    def config(*args, **kwargs):
        config = UpstreamTestCase.config(*args, **kwargs)
        cp1 = config.chargers[0]
        return attr.evolve(config, chargers=(
            cp1, attr.evolve(cp1, connector=2)) + config.chargers[1:])


class TransactionIdTests(TwoPointsTestCase):
    """
    The back office's transactionIds, as it answers them.
    """

    def test_reused_remote_id_flagged(self):
        """
        A back office that gives a second session the transactionId of one
        still running: both are flagged (page, API) and a warning is
        logged; its RemoteStopTransaction of that id stops the newer one,
        the one it gave the id last.
        """
        self.office.tags = {"GOOD": "Accepted"}
        charger = self.connect()
        first = self.start()
        self.office.next_transaction_id = 900001
        with capturedLogs() as events:
            second = self.start(connector=2)
        self.assertEqual((self.uplink.outbox.remote_id(first),
                          self.uplink.outbox.remote_id(second)), (900001, 900001))
        sessions = self.upstream.status()["CP1"]["sessions"]
        self.assertEqual([(s["transaction_id"], s["flagged"]) for s in sessions],
                         [(first, True), (second, True)])
        self.assertTrue(warned(events, "900001"))
        stop = self.office.call(m.RemoteStopTransactionRequest(transaction_id=900001))
        self.turns()
        self.assertEqual(self.successResultOf(stop).status, "Accepted")
        self.assertEqual(charger.payloads("RemoteStopTransaction"), [{"transactionId": second}])

    def test_start_answer_without_transaction_id(self):
        """
        A StartTransaction answer without a transactionId (read leniently)
        is no answer the id map can keep: counted like a CALLERROR, the
        start stays queued (and in the tables) until it is a dead letter,
        with its stop.
        """
        self.connect()
        self.office.silent.add("StartTransaction")
        tx = self.start()
        self.answer("StopTransaction", stop_payload(tx))
        for attempt in range(outbox.MAX_FAILURES):
            ours = self.link._ours
            unique_id = ours._outstanding[0]
            ours.text_received(json.dumps([3, unique_id, {"idTagInfo": {"status": "Accepted"}}]))
            self.turns()
            self.assertIsNone(self.uplink.outbox.remote_id(tx))
            if attempt < outbox.MAX_FAILURES - 1:
                self.assertEqual([r.action for r in self.tables.queue.values()],
                                 ["StartTransaction", "StopTransaction"])
                self.clock.advance(delivery.RETRY[1])
                self.turns()
        self.assertEqual(self.tables.queue, {})
        self.assertNotIn(tx, self.tables.ids)
        self.assertEqual([(r.action, r.transaction_id) for r in self.tables.dead.values()],
                         [("StartTransaction", tx), ("StopTransaction", tx)])
        self.assertIn("no transactionId", self.tables.dead[min(self.tables.dead)].error)
        self.assertEqual(self.office.payloads("StopTransaction"), [])


class LateAnswerSessionTests(SynchronousTestCase):
    """
    L{OcppSession.call}'s C{late}: the answer that comes after the timeout.
    """

    def test_late_answer_handed_over(self):
        """
        The answer to a timed-out CALL goes to its C{late}, once, also while
        the next CALL waits for its own; once a later CALL timed out, the
        earlier one's answer is dropped.
        """
        h = SessionHarness()
        late = []
        answer = {"currentTime": "2026-01-02T03:04:05Z"}
        first = h.session.call(m.HeartbeatRequest(), late=late.append)
        first_id = h.last()[1]
        h.clock.advance(30)
        self.failureResultOf(first, CallTimeout)
        second = h.session.call(m.HeartbeatRequest())
        second_id = h.last()[1]
        h.receive([3, first_id, answer])
        h.receive([3, first_id, answer])
        self.assertEqual([type(r) for r in late], [m.HeartbeatResponse])
        h.receive([3, second_id, answer])
        self.assertIsInstance(self.successResultOf(second), m.HeartbeatResponse)
        third = h.session.call(m.HeartbeatRequest(), late=late.append)
        third_id = h.last()[1]
        h.clock.advance(30)
        fourth = h.session.call(m.HeartbeatRequest())
        h.clock.advance(30)
        h.receive([4, third_id, "InternalError", "late", {}])
        self.failureResultOf(third, CallTimeout)
        self.failureResultOf(fourth, CallTimeout)
        self.assertEqual(len(late), 1)


class LateAnswerTests(LateBackOfficeMixin, UpstreamTestCase):
    """
    A back office slower than the call timeout.
    """

    def setUp(self):
        super().setUp()
        self.delayed()

    def test_late_answer_taken(self):
        """
        The back office answers the StartTransaction after the call timeout,
        before it was sent again: its answer is taken, it is not sent a
        second time (which would be a second transaction there).
        """
        self.connect()
        self.delays["StartTransaction"] = 31
        tx = self.start()
        self.clock.advance(30)
        self.turns()
        self.clock.advance(1)
        self.turns()
        self.clock.advance(delivery.RETRY[1])
        self.turns()
        self.assertEqual(len(self.office.payloads("StartTransaction")), 1)
        self.assertEqual(self.uplink.outbox.remote_id(tx), 900001)
        self.assertEqual(self.uplink.outbox.depth, 0)

    def test_always_slower_than_the_timeout(self):
        """
        A back office that always answers after the call timeout, also after
        the StartTransaction was sent again: it gets it twice at most (one
        transaction of its own too many, logged), the first answer holds,
        and the queue goes on.
        """
        self.connect()
        self.delays["StartTransaction"] = 45
        tx = self.start()
        with capturedLogs() as events:
            for _ in range(20):
                self.clock.advance(5)
                self.turns()
            self.answer("StopTransaction", stop_payload(tx))
            for _ in range(20):
                self.clock.advance(5)
                self.turns()
        self.assertEqual(len(self.office.payloads("StartTransaction")), 2)
        self.assertEqual(self.uplink.outbox.remote_id(tx), 900001)
        self.assertEqual(self.office.payloads("StopTransaction")[0]["transactionId"], 900001)
        self.assertEqual(self.uplink.outbox.depth, 0)
        self.assertTrue(warned(events, "900002"))


class DroppedConnectionTests(UpstreamTestCase):
    """
    The back office drops the connection after it got a StartTransaction,
    before it answered.
    """

    def test_sent_again_after_the_reconnect(self):
        """
        The start is sent again on the next connection: at least once, so
        a back office that had kept the first has it twice (docs/upstream.md
        says so); the id of the answer that came is used.
        """
        self.connect()
        self.office.silent.add("StartTransaction")
        tx = self.start()
        self.assertEqual(len(self.office.payloads("StartTransaction")), 1)
        self.link.drop("dropped by the back office")
        self.office.silent.clear()
        self.link.connect()
        self.turns()
        self.assertEqual(len(self.office.payloads("StartTransaction")), 2)
        self.assertEqual(self.uplink.outbox.remote_id(tx), 900001)


class KeyTests(RelayTestCase):
    """
    The AuthorizationKeys: the charger's at the controller, ours at the
    back office.
    """

    def change(self, key, value):
        return self.ask(m.ChangeConfigurationRequest(key=key, value=value)).status

    def test_any_spelling_of_the_key_is_ours(self):
        """
        ChangeConfiguration of the AuthorizationKey in other letters is
        intercepted too: it never rotates the charger's key at the
        controller (the back office would know it) nor reaches the charger.
        """
        key = "0123456789ABCDEF0123456789ABCDEF01234567"
        for spelling in ("authorizationkey", "AUTHORIZATIONKEY", "authorizationKey"):
            self.assertEqual(self.change(spelling, key), "Accepted")
        self.assertEqual(self.relayed("ChangeConfiguration"), [])
        self.assertEqual(self.uplink.password(), key)
        self.assertNotIn(("CP1", "authorization_key_pending"), self.store.settings)

    def test_bad_key_rejected(self):
        """
        A key that is no white-paper AuthorizationKey (empty, too short,
        too long, with a colon) is Rejected: the one in force stays, so the
        next connection still gets in.
        """
        good = "0123456789ABCDEF0123456789ABCDEF01234567"
        self.assertEqual(self.change("AuthorizationKey", good), "Accepted")
        for bad in ("", "short", "x" * 500, "user:password12345"):
            self.assertEqual((bad, self.change("AuthorizationKey", bad)), (bad, "Rejected"))
        self.assertEqual(self.uplink.password(), good)

    def test_virtual_keys_in_other_letters(self):
        """
        The intervals kept for the back office are kept in any spelling;
        the charger keeps the controller's.
        """
        self.assertEqual(self.change("heartbeatinterval", "60"), "Accepted")
        self.assertEqual(self.relayed("ChangeConfiguration"), [])
        self.assertEqual(self.uplink.virtual("HeartbeatInterval", None), "60")

    def test_get_configuration_never_shows_a_key(self):
        """
        GetConfiguration, of every key or of the AuthorizationKey in any
        spelling, shows neither the charger's AuthorizationKey (however the
        charger spells it) nor ours at the back office.
        """
        ours = "0123456789ABCDEF0123456789ABCDEF01234567"
        self.assertEqual(self.change("AuthorizationKey", ours), "Accepted")
        self.charger.configuration["authorizationKey"] = "CHARGERS-OWN-SECRET"
        answers = [self.ask(m.GetConfigurationRequest()),
                   self.ask(m.GetConfigurationRequest(key=("AUTHORIZATIONKEY",))),
                   self.ask(m.GetConfigurationRequest(key=("authorizationkey",
                                                           "HeartbeatInterval")))]
        text = repr(answers)
        self.assertNotIn("CHARGERS-OWN-SECRET", text)
        self.assertNotIn(ours, text)
        self.assertEqual([kv.key for kv in answers[2].configuration_key], ["HeartbeatInterval"])


class FloodTests(RelayTestCase):
    """
    A back office that sends CALLs without waiting for the answers.
    """

    def test_calls_in_flight_bounded(self):
        """
        Only a few of its CALLs wait for the charger at a time; the others
        are answered with a CALLERROR at once, so the controller's own
        commands (the building's limits) do not wait behind a flood.
        """
        ours = self.link._ours
        self.charger.answers["GetConfiguration"] = None
        sent = []
        ours._send = lambda text: sent.append(json.loads(text))
        for i in range(200):
            ours.text_received(json.dumps([2, f"f{i}", "GetConfiguration", {}]))
        self.turns()
        refused = [f for f in sent if f[0] == 4]
        self.assertEqual(len(refused), 200 - uplink.MAX_CALLS)
        self.assertEqual(len(self.charger.calls), 1)
        self.assertEqual(len(self.central.chargers["CP1"].session._queue),
                         uplink.MAX_CALLS - 1)
        self.clock.advance(self.central.config.ocpp.call_timeout * uplink.MAX_CALLS)
        self.turns()
        ours.text_received(json.dumps([2, "after", "GetLocalListVersion", {}]))
        ours.text_received(json.dumps([2, "again", "GetConfiguration", {}]))
        self.turns()
        self.assertEqual([f[0] for f in sent if f[1] in ("after", "again")], [3])


class ProfileAttackTests(RelayTestCase):
    """
    Charging profiles that try to get past the building's limit.
    """

    def set(self, p, connector=1):
        return self.ask(m.SetChargingProfileRequest(connector_id=connector,
                                                    cs_charging_profiles=p)).status

    def sent_limits(self):
        return [[period["limit"] for period in
                 p["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"]]
                for p in self.relayed("SetChargingProfile")]

    def test_watts_for_more_phases_than_the_point_has(self):
        """
        A schedule in W that claims three phases for a single-phase point is
        capped to the power of the point's one phase: else the point would
        draw three times the limit on it.
        """
        config = self.config()
        config = attr.evolve(config, chargers=(attr.evolve(config.chargers[0], phases=1),)
                             + config.chargers[1:])
        self.central.reconfigure(config)
        self.upstream.reconfigure(config)
        self.central.limit_in_force("CP1", 1, 10.0)
        self.assertEqual(self.set(profile(limits=(22000.0,), unit="W", phases=3)), "Accepted")
        self.assertEqual(self.sent_limits(), [[2300.0]])

    def test_negative_limit_never_reaches_the_charger(self):
        """
        A negative limit is a CALLERROR to the back office.
        """
        ours = self.link._ours
        sent = []
        ours._send = lambda text: sent.append(json.loads(text))
        payload = m.encode(m.SetChargingProfileRequest(connector_id=1,
                                                       cs_charging_profiles=profile()))
        payload["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0][
            "limit"] = -5
        ours.text_received(json.dumps([2, "neg", "SetChargingProfile", payload]))
        self.turns()
        self.assertEqual([f[:3] for f in sent], [[4, "neg", "PropertyConstraintViolation"]])
        self.assertEqual(self.sent_limits(), [])

    def test_huge_schedule_capped_everywhere(self):
        """
        A schedule of a thousand periods far above the limit is capped in
        every period.
        """
        self.central.limit_in_force("CP1", 1, 10.0)
        self.assertEqual(self.set(profile(limits=(80.0,) * 1000)), "Accepted")
        self.assertEqual(self.sent_limits(), [[10.0] * 1000])

    def test_clear_without_criteria_spares_the_controllers(self):
        """
        ClearChargingProfile without criteria, or naming the controller's
        profile ids, purposes and stack levels, clears nothing of the
        controller's: none of them reaches the charger.
        """
        for request in (m.ClearChargingProfileRequest(),
                        m.ClearChargingProfileRequest(id=201),
                        m.ClearChargingProfileRequest(connector_id=1,
                                                      charging_profile_purpose="TxDefaultProfile",
                                                      stack_level=8)):
            self.assertEqual(self.ask(request).status, "Unknown")
        self.assertEqual(self.relayed("ClearChargingProfile"), [])

    def test_remote_stop_of_ids_it_never_had(self):
        """
        RemoteStopTransaction of an id the back office never gave, of ours,
        or of a session that ended: Rejected, nothing reaches the charger.
        """
        tx = self.start()
        self.answer("StopTransaction", stop_payload(tx))
        for transaction_id in (424242, tx, 900001, -1):
            self.assertEqual(self.ask(m.RemoteStopTransactionRequest(
                transaction_id=transaction_id)).status, "Rejected")
        self.assertEqual(self.relayed("RemoteStopTransaction"), [])


class LowerLimitTests(RelayTestCase):
    """
    The building's limit falls (load shedding) after the back office set a
    profile capped to the limit of then.
    """

    def in_force(self):
        """
        @return: what the charger was last told for CP1/1 by each profile
            id: its first period's limit.
        """
        sent = {}
        for p in self.relayed("SetChargingProfile"):
            profile_ = p["csChargingProfiles"]
            sent[profile_["chargingProfileId"]] = (
                profile_["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"])
        for p in self.relayed("ClearChargingProfile"):
            sent.pop(p.get("id"), None)
        return sent

    def lower(self, amps):
        d = self.controller.set_limit("CP1", 1, amps)
        for _ in range(5):
            self.clock.advance(1)
            self.turns()
        self.successResultOf(d)

    def test_back_office_profile_follows_the_limit(self):
        """
        A TxProfile of the back office (it wins over the controller's
        TxDefaultProfile by purpose) capped at 16 A is capped anew when the
        building allows only 6 A, and back up to its own 10 A when 12 A
        are allowed again.
        """
        self.lower(16)
        self.start()
        self.assertEqual(self.ask(m.SetChargingProfileRequest(
            connector_id=1, cs_charging_profiles=profile(
                purpose="TxProfile", level=2, transaction_id=900001,
                limits=(32.0, 10.0)))).status, "Accepted")
        self.assertEqual(self.in_force()[7], 16.0)
        self.lower(6)
        self.assertEqual(self.central.chargers["CP1"].connector(1).limit, 6.0)
        self.assertEqual(self.in_force()[7], 6.0)
        self.lower(12)
        self.assertEqual(self.in_force()[7], 12.0)
        (last,) = [p for p in self.relayed("SetChargingProfile")
                   if p["csChargingProfiles"]["chargingProfileId"] == 7][-1:]
        self.assertEqual(limits(m.decode(m.ChargingProfile, last["csChargingProfiles"])[0]),
                         [12.0, 10.0])

    def test_refused_again_then_cleared(self):
        """
        A charger that does not take the profile capped anew has it cleared:
        the back office's old cap never outlives the building's limit.
        """
        self.lower(16)
        self.ask(m.SetChargingProfileRequest(connector_id=1, cs_charging_profiles=profile(
            level=3, limits=(32.0,))))
        self.charger.answers["SetChargingProfile"] = lambda p: {"status": (
            "Rejected" if p["csChargingProfiles"]["chargingProfileId"] == 7 else "Accepted")}
        self.lower(6)
        self.assertNotIn(7, self.in_force())
        self.assertEqual(self.uplink.setting("profiles"), {})


class _SlowToCloseProtocol(WebSocketServerProtocol):
    """
    A back office that never answers a close handshake: the client has to
    drop the connection after its close timeout.
    """

    was_open = False

    def onConnect(self, request):
        return "ocpp1.6"

    def onOpen(self):
        self.was_open = True
        self.factory.opened += 1

    def onCloseFrame(self, code, reasonRaw):
        # Neither answered nor dropped.
        return None

    def connectionLost(self, reason):
        super().connectionLost(reason)
        if self.was_open:
            self.factory.closed += 1


class SlowToCloseBackOffice(WebSocketServerFactory):
    """
    L{_SlowToCloseProtocol}s, counted: C{opened} WebSockets, C{closed} of
    them gone.
    """

    protocol = _SlowToCloseProtocol

    def __init__(self):
        super().__init__()
        self.opened = self.closed = 0

    @property
    def open(self):
        """
        How many WebSockets are open now.
        """
        return self.opened - self.closed


class ComingAndGoingTests(TestCase):
    """
    A charger that disconnects and connects again at once, many times: its
    uplink's connections to the back office, on loopback.
    """

    timeout = 30

    @defer.inlineCallbacks
    def setUp(self):
        self.office = SlowToCloseBackOffice()
        self.port = reactor.listenTCP(0, self.office, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.patch(link_module, "CLOSE_TIMEOUT", 0.3)
        self.owner = Owner()
        self.link = Link(reactor, "CP1", UpstreamConfig(
            url=f"ws://127.0.0.1:{self.port.getHost().port}/ocpp"), self.owner, 5)
        self.link.backoff = (0.05, 0.1)
        self.addCleanup(self.stopped)
        self.link.start()
        yield eventually(lambda: len(self.owner.sessions) == 1)

    @defer.inlineCallbacks
    def stopped(self):
        self.link.stop()
        yield eventually(lambda: self.office.open == 0)

    @defer.inlineCallbacks
    def test_the_old_connection_going_late_closes_nothing_new(self):
        """
        The charger goes and comes back before the back office let the old
        connection go: the new one opens, the old one's end closes nothing
        of it and opens no third; each stop and start leaves one connection
        open in the end, none after the last stop.
        """
        for _ in range(10):
            self.link.stop()
            self.link.start()
            yield sleep(0.01)
        yield eventually(lambda: self.office.opened >= 2 and self.office.open == 1)
        yield sleep(0.5)
        self.assertEqual((self.link.state, self.office.open), ("open", 1))
        self.assertEqual([s.open for s in self.owner.sessions][-1:], [True])
        self.assertEqual(sum(s.open for s in self.owner.sessions), 1)
        self.link.stop()
        yield eventually(lambda: self.office.open == 0)
        self.assertFalse(any(s.open for s in self.owner.sessions))


class PendingForeverTests(UpstreamTestCase):
    """
    A back office that never accepts the charger.
    """

    def test_nothing_but_boots(self):
        """
        Pending for hours: the boot is sent again at its interval, nothing
        else goes; the queue stays (meter values thinned) and its calls are
        answered meanwhile.
        """
        self.office.boot_answers = [("Pending", 600)] * 1000
        self.connect()
        tx = self.start()
        for minute in range(1, 181):
            self.answer("MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": [
                {"timestamp": f"2030-06-01T{12 + minute // 60:02d}:{minute % 60:02d}:00Z",
                 "sampledValue": [{"value": str(minute)}]}]})
            self.clock.advance(60)
            self.turns()
        self.assertEqual(set(self.office.actions()), {"BootNotification"})
        self.assertEqual(len(self.office.payloads("BootNotification")), 1 + 180 * 60 // 600)
        self.assertEqual(self.uplink.outbox.depth, 1 + 180)
        self.assertEqual(self.uplink.registration, "Pending")
        answer = self.office.call(m.GetLocalListVersionRequest())
        self.turns()
        self.assertEqual(self.successResultOf(answer).list_version, 0)

    def test_unanswered_boot_drops_the_link(self):
        """
        A BootNotification without an answer (a half-open connection) drops
        the link, which connects again, as an unanswered Heartbeat does.
        """
        self.office.silent.add("BootNotification")
        self.connect()
        self.clock.advance(self.central.config.ocpp.call_timeout)
        self.assertEqual(self.link.state, "waiting")
        self.assertEqual(self.link.last_error, "no answer to the BootNotification")


class RemovedChargerTests(UpstreamTestCase):
    """
    A charger taken out of the configuration (or its [charger.upstream])
    while messages for its back office wait.
    """

    def queue_two(self):
        self.link.up = False
        self.connect()
        tx = self.start()
        self.answer("StopTransaction", stop_payload(tx))
        return tx

    def without(self, charger=True):
        config = self.config()
        if charger:
            chargers = tuple(c for c in config.chargers if c.id != "CP1")
        else:
            chargers = tuple(attr.evolve(c, upstream=attr.evolve(c.upstream, url=""))
                             if c.id == "CP1" else c for c in config.chargers)
        return attr.evolve(config, chargers=chargers)

    def restart(self, config):
        """
        Make the service anew with C{config}, from what the stores keep.
        """
        self.shutdown()
        self.central = CentralSystem(config, self.store, self.clock)
        self.central.load()
        self.controller = Controller(self.central, self.clock)
        self.central.subscribe(self.controller.observe)
        self.upstream = Upstream(self.central, self.controller, self.store, self.clock,
                                 tables=self.tables)
        self.central.subscribe(self.upstream.observe)
        self.upstream.link_factory = partial(MemoryLink, self.office)
        self.upstream.startService()

    def test_kept_and_shown(self):
        """
        The messages stay in the tables and are shown (with no link), also
        after a restart, which logs them; given its back office again, the
        charger's messages go there in order.
        """
        tx = self.queue_two()
        for charger in (False, True):
            self.upstream.reconfigure(self.without(charger))
            status = self.upstream.status()["CP1"]
            self.assertEqual((status["link"], status["queue_depth"]), ("unconfigured", 2))
            self.assertEqual(len(self.tables.queue), 2)
        with capturedLogs() as events:
            self.restart(self.without(charger=True))
        self.assertEqual(self.upstream.status()["CP1"]["queue_depth"], 2)
        self.assertTrue(warned(events, "2 messages"))
        config = self.config()
        self.central.reconfigure(config)
        self.upstream.reconfigure(config)
        self.connect(boot=False)
        self.assertEqual(self.office.actions(), ["BootNotification", "StartTransaction",
                                                 "StopTransaction"])
        self.assertEqual(self.upstream.status()["CP1"]["queue_depth"], 0)
        self.assertEqual(self.upstream.uplinks["CP1"].outbox.remote_id(tx), 900001)


class RealStoreTestCase(TestCase):
    """
    CP1 forwarded to a L{MemoryBackOffice}, on a real state database and
    the global reactor.
    """

    timeout = 120

    def setUp(self):
        self.path = self.mktemp()
        self.office = MemoryBackOffice(reactor)
        self.office.tags = {"GOOD": "Accepted"}

    def open(self):
        store = Store(self.path, reactor)
        store.open()
        self.addCleanup(store.close)
        return store

    def build(self, store):
        """
        The service's domain, controller and back office adapter on
        C{store}; stopped at cleanup (before the store closes).
        """
        central = CentralSystem(UpstreamTestCase.config(), store, reactor)
        central.load()
        controller = Controller(central, reactor)
        central.subscribe(controller.observe)
        controller.boot_wait = 1e9
        upstream = Upstream(central, controller, store, reactor)
        central.subscribe(upstream.observe)
        upstream.link_factory = partial(MemoryLink, self.office)
        upstream.startService()

        def stop():
            if upstream.running:
                upstream.stopService()
            controller.shutdown()

        self.addCleanup(stop)
        self.central, self.upstream = central, upstream
        return upstream.uplinks["CP1"]

    def send(self, action, payload):
        """
        @return: the Deferred of the controller's answer to a CALL of CP1.
        """
        request, _ = m.decode(m.ACTIONS[action].request, payload, lenient=True)
        d = defer.maybeDeferred(dispatch, self.central, "CP1", action, request,
                                self.upstream.handle)
        return d.addCallback(m.encode)

    @defer.inlineCallbacks
    def rows(self, store, table):
        """
        @return: a Deferred of the rows of C{table} in C{store}.
        """
        rows = yield store._batches.read(store._worker.select, f"SELECT * FROM {table}", ())
        return rows


class LongQueueTests(RealStoreTestCase):
    """
    A restart with thousands of messages waiting.
    """

    @defer.inlineCallbacks
    def test_thousands_after_a_restart_in_order(self):
        """
        Two thousand messages queued before a restart are restored and
        delivered in order, with the back office's id, once each; the
        table is empty after.
        """
        count = 2000
        store = self.open()
        tables = UpstreamStore(store)
        start = {"connectorId": 1, "idTag": "GOOD", "meterStart": 0,
                 "timestamp": "2030-06-01T12:00:00Z"}
        writes = [store.put_setting("CP1", "upstream/boot", {
            "chargePointVendor": "Acme", "chargePointModel": "Wallbox 11"}),
            tables.enqueue(QueuedRecord(1, "CP1", "StartTransaction", 7, start, T0))]
        for seq in range(2, count + 1):
            writes.append(tables.enqueue(QueuedRecord(
                seq, "CP1", "MeterValues", 7, {"connectorId": 1, "transactionId": 7,
                                               "meterValue": [{
                                                   "timestamp": "2030-06-01T12:00:00Z",
                                                   "sampledValue": [{"value": str(seq)}]}]},
                T0)))
        yield defer.gatherResults(writes)
        yield store.close()
        store = self.open()
        uplink = self.build(store)
        self.assertEqual(uplink.outbox.depth, count)
        ScriptedCharger(self.central, reactor)
        yield eventually(lambda: uplink.outbox.depth == 0, timeout=100)
        self.assertEqual(self.office.actions()[:2], ["BootNotification", "StartTransaction"])
        values = [p["meterValue"][0]["sampledValue"][0]["value"]
                  for p in self.office.payloads("MeterValues")]
        self.assertEqual(values, [str(seq) for seq in range(2, count + 1)])
        self.assertEqual({p["transactionId"] for p in self.office.payloads("MeterValues")},
                         {900001})
        self.upstream.stopService()
        yield store.close()
        store = self.open()
        self.assertEqual((yield self.rows(store, "upstream_queue")), [])


class FullDiskTests(RealStoreTestCase):
    """
    The state database cannot take a commit (the disk is full) while a
    session is queued for an absent back office.
    """

    @defer.inlineCallbacks
    def test_queue_while_the_disk_is_full(self):
        """
        The charger's StartTransaction is answered only once it is stored
        (the store retries until it has room again), with the controller's
        id; the messages are on disk then, and reach the back office in order, once; after a
        restart the queue is empty and the id map kept.
        """
        store = self.open()
        uplink = self.build(store)
        uplink.link.up = False
        ScriptedCharger(self.central, reactor)
        yield self.send("BootNotification", {"chargePointVendor": "Acme",
                                             "chargePointModel": "Wallbox 11"})
        yield store._batches.read(lambda: None)
        full = []
        commit = store._worker.commit

        def failing(writes):
            if full:
                raise sqlite3.OperationalError("database or disk is full")
            return commit(writes)

        self.patch(store._worker, "commit", failing)
        full.append(True)
        started = self.send("StartTransaction", {
            "connectorId": 1, "idTag": "GOOD", "meterStart": 1000,
            "timestamp": "2030-06-01T12:00:00Z"})
        yield deferLater(reactor, 0.3, lambda: None)
        # Nothing is acknowledged that is not stored: the start waits.
        self.assertFalse(started.called)
        full.clear()
        answer = yield started
        tx = answer["transactionId"]
        yield self.send("MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": [
            {"timestamp": "2030-06-01T12:01:00Z", "sampledValue": [{"value": "1500"}]}]})
        yield self.send("StopTransaction", stop_payload(tx))
        self.assertEqual(uplink.outbox.depth, 3)
        yield eventually(lambda: store._batches.commits > 0 and not store._batches._pending
                         and store._batches._inflight is None, timeout=20)
        self.assertEqual(len((yield self.rows(store, "upstream_queue"))), 3)
        uplink.link.up = True
        uplink.link.connect()
        yield eventually(lambda: uplink.outbox.depth == 0)
        self.assertEqual([a for a in self.office.actions() if a != "StatusNotification"],
                         ["BootNotification", "StartTransaction", "MeterValues",
                          "StopTransaction"])
        self.assertEqual(self.office.payloads("StopTransaction")[0]["transactionId"], 900001)
        self.upstream.stopService()
        yield store.close()
        store = self.open()
        self.assertEqual((yield self.rows(store, "upstream_queue")), [])
        self.assertEqual([row[:3] for row in (yield self.rows(store, "upstream_transactions"))],
                         [(tx, "CP1", 900001)])


class LocalListTests(RelayTestCase):
    """
    The back office's SendLocalList writes into the controller's tag
    registry, which every charger of the building uses.
    """

    @staticmethod
    def config(*args, **kwargs):
        # OTHER, without a back office, lets GOOD and GUEST charge.
        config = RelayTestCase.config(*args, **kwargs)
        return attr.evolve(config, chargers=tuple(
            attr.evolve(c, allowed_tags=("GOOD", "GUEST")) if c.id == "OTHER" else c
            for c in config.chargers))

    def test_cannot_reach_the_controllers_tags(self):
        """
        It can neither block a tag the configuration names (at a charger
        it has nothing to do with), nor make its tags children of one (and
        so allowed where that one is); its other entries are taken.
        """
        answer = self.ask(m.SendLocalListRequest(
            list_version=1, update_type="Full", local_authorization_list=(
                m.AuthorizationData(id_tag="guest", id_tag_info=m.IdTagInfo(status="Blocked")),
                m.AuthorizationData(id_tag="XXTER", id_tag_info=m.IdTagInfo(status="Blocked")),
                m.AuthorizationData(id_tag="EVIL", id_tag_info=m.IdTagInfo(
                    status="Accepted", parent_id_tag="good")),
                m.AuthorizationData(id_tag="FLEET", id_tag_info=m.IdTagInfo(
                    status="Accepted", parent_id_tag="FLEETGROUP")))))
        self.assertEqual(answer.status, "Accepted")
        verdicts = {t: self.central.authorize("OTHER", 1, t).status
                    for t in ("GUEST", "EVIL", "XXTER")}
        self.assertEqual(verdicts, {"GUEST": "Accepted", "EVIL": "Invalid",
                                    "XXTER": "Accepted"})
        self.assertEqual(self.central.tags.get("FLEET").parent, "FLEETGROUP")
        self.assertEqual(self.uplink.setting("tags"), ["FLEET"])


class TriggerFloodTests(RelayTestCase):
    """
    A back office that triggers messages faster than it answers them.
    """

    def flood(self, requested, n=300):
        ours = self.link._ours
        for i in range(n):
            ours.text_received(json.dumps([2, f"t{i}", "TriggerMessage",
                                           {"requestedMessage": requested}]))
        self.turns()
        return ours

    def test_our_line_bounded(self):
        """
        Heartbeats and statuses it triggers without answering them do not
        pile up on the connection; its triggered boots wait for the one it
        has not answered; the queue goes on once it answers again.
        """
        self.answer("StatusNotification", {"connectorId": 1, "errorCode": "NoError",
                                           "status": "Available"})
        self.office.silent.update({"Heartbeat", "StatusNotification", "BootNotification"})
        for requested in ("Heartbeat", "StatusNotification", "BootNotification"):
            ours = self.flood(requested)
            # At most one boot more.
            self.assertLessEqual(ours.waiting, uplink.MAX_WAITING + 1)
        tx = self.start()
        self.office.silent.clear()
        for _ in range(uplink.MAX_WAITING + 2):
            self.clock.advance(self.central.config.ocpp.call_timeout)
            self.turns()
        self.assertEqual(self.uplink.outbox.remote_id(tx), 900001)
        self.assertEqual(len(self.office.payloads("BootNotification")), 2)
