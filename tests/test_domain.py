"""
Unit tests for L{xxterocpp.domain}: the domain called with plain values,
without a protocol, with a fake clock and an in-memory store.
"""

import json
from datetime import datetime, timedelta, timezone

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from tests.fakes import MemoryStore
from xxterocpp.config import TagConfig, parse_config
from xxterocpp.store import StoreError
from xxterocpp.domain.central import CentralSystem
from xxterocpp.domain.events import (
    MeterChanged, StatusChanged, TagsChanged, TransactionStarted, TransactionStopped,
)
from xxterocpp.domain.keys import (
    HIDDEN_FRAME, MASK, PENDING_AUTHORIZATION_KEY, masked_frame, password_matches,
    valid_authorization_key)
from xxterocpp.domain.meter import MeterReading
from xxterocpp.domain.model import Boot, FrameHistory
from xxterocpp.domain.tags import Authorization
from xxterocpp.domain.unknown import MAX_UNKNOWN, UNKNOWN_INTERVAL
from xxterocpp.pacing import Pacer
from xxterocpp.store import TagRecord, UnknownChargerRecord

CONFIG = """
[ocpp]
max_chargers = 2

[[tag]]
id = "GOOD"

[[tag]]
id = "LATER"
expiry = "2030-01-01T00:00:00Z"

[[charger]]
id = "CP1"
max_current = 16
allowed_tags = ["GOOD", "LATER"]
smart_tag = "SMART"

[[charger]]
id = "CP1"
connector = 2
max_current = 16
allowed_tags = ["GOOD", "LATER"]
"""

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


class DomainTestCase(SynchronousTestCase):
    """
    A L{CentralSystem} with the configuration above, its events collected.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(T0.timestamp())
        self.store = MemoryStore()
        # The transactions of an earlier life: ids go on from 41.
        self.store.counter = 41
        self.central = CentralSystem(parse_config(CONFIG), self.store, self.clock)
        self.central.load()
        self.events = []
        self.central.subscribe(self.events.append)
        self.charger = self.central.chargers["CP1"]

    def start(self, connector=1, tag="GOOD", meter=100, at=T0):
        """
        @return: C{(transaction_id, authorization)} of a transaction started.
        """
        return self.successResultOf(defer.maybeDeferred(
            self.central.start_transaction, "CP1", connector, tag, meter, at))

    def stop(self, transaction_id, meter=None, at=None, reason="Local", tag=None, reading=None):
        """
        @return: the authorization of the stop's idTag.
        """
        return self.successResultOf(self.central.stop_transaction(
            "CP1", transaction_id, meter, at, reason, tag, reading))

    def of_type(self, kind):
        return [e for e in self.events if isinstance(e, kind)]


class CentralSystemTests(DomainTestCase):
    """
    L{CentralSystem}: connections, boots, statuses, meters, authorisation.
    """

    def test_unknown_identities_are_bounded(self):
        """
        A flood of random identities keeps only the most recent ones.
        """
        for i in range(MAX_UNKNOWN + 50):
            self.central.unknown_attempts.record(f"ID{i}", "127.0.0.1")
        self.central.unknown_attempts.record("ID149", "127.0.0.2")
        self.assertEqual(len(self.central.unknown), MAX_UNKNOWN)
        self.assertNotIn("ID0", self.central.unknown)
        self.assertEqual(self.central.unknown["ID149"].count, 2)
        self.assertEqual(self.central.unknown["ID149"].address, "127.0.0.2")

    def test_unknown_identities_are_written_and_logged_once_per_address_and_interval(self):
        """
        From one address, one store write and one log line per
        L{UNKNOWN_INTERVAL}; another address has its own; the counts stay
        exact in memory and the next write of an identity carries all its
        attempts.
        """
        with capturedLogs() as events:
            for i in range(50):
                self.central.unknown_attempts.record(f"ID{i}", "10.0.0.1")
                self.central.unknown_attempts.record("ID0", "10.0.0.1")
            self.central.unknown_attempts.record("OTHER", "10.0.0.2")
            self.clock.advance(UNKNOWN_INTERVAL)
            self.central.unknown_attempts.record("ID0", "10.0.0.1")
            self.central.unknown_attempts.record("NEW", "10.0.0.1")
        writes = self.store.written("record_unknown_attempts")
        self.assertEqual([(w[0], w[1], w[4]) for w in writes],
                         [("ID0", "10.0.0.1", 1), ("OTHER", "10.0.0.2", 1),
                          ("ID0", "10.0.0.1", 51)])
        self.assertEqual(self.central.unknown["ID0"].count, 52)
        lines = [formatEvent(e) for e in events]
        self.assertEqual(len(lines), 3, lines)
        self.assertIn("'ID0' from 10.0.0.1", lines[0])
        self.assertIn("'OTHER' from 10.0.0.2", lines[1])
        self.assertIn("'NEW' from 10.0.0.1", lines[2])
        self.assertIn("(49 more new identities from this address", lines[2])

    def test_unknown_identities_are_dated_by_the_wall_clock(self):
        """
        When an unknown identity was first and last seen is the time of day
        (the C{wall}), in memory and in the store, while its pacing runs on
        the monotonic clock: a step of the wall clock lets no extra write
        through.
        """
        clock, wall = Clock(), Clock()
        wall.advance(T0.timestamp())
        central = CentralSystem(parse_config(CONFIG), self.store, clock, wall=wall.seconds)
        central.unknown_attempts.record("NOPE", "10.0.0.1")
        wall.advance(3600)
        central.unknown_attempts.record("NOPE", "10.0.0.1")
        entry = central.unknown["NOPE"]
        self.assertEqual((entry.first_seen, entry.last_seen),
                         (T0, T0 + timedelta(seconds=3600)))
        self.assertEqual([(w[0], w[2], w[3], w[4])
                          for w in self.store.written("record_unknown_attempts")],
                         [("NOPE", T0, T0, 1)])

    def test_unknown_attempts_held_back_are_saved_at_shutdown(self):
        """
        L{xxterocpp.domain.unknown.UnknownAttempts.save} writes what the
        rate limit held back, each identity once with its attempts.
        """
        for identity in ("A", "B", "B", "A", "C"):
            self.central.unknown_attempts.record(identity, "10.0.0.1")
        self.central.unknown_attempts.save()
        writes = self.store.written("record_unknown_attempts")
        self.assertEqual(sorted((w[0], w[4]) for w in writes),
                         [("A", 1), ("A", 1), ("B", 2), ("C", 1)])
        self.central.unknown_attempts.save()
        self.assertEqual(len(self.store.written("record_unknown_attempts")), 4)

    def test_loaded_unknown_identities_keep_the_most_recent(self):
        """
        The store gives the latest first; once loaded, a new identity
        evicts the oldest one, not the newest.
        """
        self.store.unknown = {
            f"ID{i}": UnknownChargerRecord(f"ID{i}", "10.0.0.1", T0, T0 + timedelta(seconds=i), 1)
            for i in reversed(range(MAX_UNKNOWN))}
        self.central.load()
        self.central.unknown_attempts.record("NEW", "10.0.0.1")
        self.assertNotIn("ID0", self.central.unknown)
        self.assertEqual(list(self.central.unknown)[-2:], [f"ID{MAX_UNKNOWN - 1}", "NEW"])

    def test_boot_data_is_written_only_when_it_changes(self):
        """
        The boot data keeps what the charger sent; a repeated identical boot
        (a reconnect storm) writes nothing, a new firmware writes again;
        every boot is still an event, one reactor turn later.
        """
        for firmware in ("1.0", "1.0", "1.1"):
            self.central.reports.booted("CP1", Boot(vendor="V", model="M", firmware=firmware))
        self.assertEqual(self.events, [])
        self.clock.advance(0)
        self.assertEqual(self.store.written("put_setting"), [
            ("CP1", "boot", {"vendor": "V", "model": "M", "firmware": "1.0"}),
            ("CP1", "boot", {"vendor": "V", "model": "M", "firmware": "1.1"}),
        ])
        self.assertEqual(self.charger.boot, {"vendor": "V", "model": "M", "firmware": "1.1"})
        self.assertEqual(sum(type(e).__name__ == "ChargerBooted" for e in self.events), 3)
        self.assertEqual(self.charger.booted_at, T0)

    def test_authorize_rules(self):
        """
        Listed tags are accepted until their expiry, unlisted ones are
        Invalid, the remote and smart tags always work.
        """
        for tag, status in [("good", "Accepted"), ("LATER", "Accepted"), ("OTHER", "Invalid"),
                            ("xxter", "Accepted"), ("SMART", "Accepted")]:
            self.assertEqual(self.central.authorize("CP1", 1, tag).status, status, tag)
        self.clock.advance(timedelta(days=5 * 366).total_seconds())
        self.assertEqual(self.central.authorize("CP1", 1, "LATER"), Authorization(
            "Expired", None, datetime(2030, 1, 1, tzinfo=timezone.utc)))

    def test_status_change_event_only_on_change(self):
        """
        StatusChanged is emitted when status or error code changes; every
        report is stored.
        """
        for error in ("NoError", "NoError", "GroundFailure"):
            self.central.reports.status_reported("CP1", 1, "Charging", error)
        self.assertEqual(self.of_type(StatusChanged), [StatusChanged("CP1", 1)] * 2)
        self.assertEqual(len(self.store.written("save_connector_status")), 3)
        self.assertEqual(self.charger.connectors[1].status_time, T0)

    def test_status_of_the_whole_charger(self):
        """
        A status without a connector is the charger's own, stored as
        connector 0's; a change is a L{StatusChanged} of the whole charger.
        """
        for status in ("Unavailable", "Unavailable"):
            self.central.reports.status_reported("CP1", None, status)
        self.assertEqual((self.charger.status, self.charger.error_code), ("Unavailable", "NoError"))
        self.assertEqual(self.of_type(StatusChanged), [StatusChanged("CP1", None)])
        self.assertEqual(self.store.written("save_connector_status"),
                         [("CP1", 0, "Unavailable", "NoError", None, T0)] * 2)
        self.assertNotIn(0, self.charger.connectors)

    def test_no_current_flows_once_suspended(self):
        """
        A connector that stops charging shows no current, whatever the last
        sample said.
        """
        self.central.book.meter_values("CP1", 1, None, MeterReading(
            T0, currents={"L1": 16.0, "L2": 15.0}, power_w=7000.0))
        self.central.reports.status_reported("CP1", 1, "SuspendedEV")
        connector = self.charger.connectors[1]
        self.assertEqual((connector.currents, connector.power_w), ({"L1": 0.0, "L2": 0.0}, 0.0))
        self.assertEqual(self.of_type(MeterChanged), [MeterChanged("CP1", 1)] * 2)

    def test_progress_and_security_events_are_kept(self):
        """
        Progress reports are kept by kind, security events the last 20.
        """
        self.central.reports.progress_reported("CP1", "FirmwareStatusNotification", "Downloading")
        self.assertEqual(self.charger.notifications,
                         {"FirmwareStatusNotification": (T0, "Downloading")})
        for i in range(25):
            self.central.reports.security_event("CP1", T0, f"Event{i}", None)
        self.assertEqual(len(self.charger.security_events), 20)
        self.assertEqual(self.charger.security_events[-1], (T0, "Event24", None))

    def test_pending_key_presented_becomes_the_password(self):
        """
        A charger presenting the key of a change whose answer got lost has
        taken it: only that key is accepted from then on.
        """
        self.central.credentials.begin_key_change("CP1", "A" * 32)
        self.assertEqual(self.central.credentials.pending_key("CP1"), "A" * 32)
        self.assertTrue(self.central.credentials.check_password("CP1", b"A" * 32))
        self.assertEqual(self.central.credentials.password_for("CP1"), "A" * 32)
        self.assertFalse(self.central.credentials.check_password("CP1", None))
        self.assertNotIn(("CP1", PENDING_AUTHORIZATION_KEY), self.central.settings)


class TransactionTests(DomainTestCase):
    """
    The transaction book, through L{CentralSystem}.
    """

    def test_transaction_ids_continue_after_the_stored_highest(self):
        """
        New transaction ids continue after the highest ever handed out.
        """
        self.assertEqual(self.start(), (42, Authorization("Accepted")))
        self.assertEqual(self.store.writes[-1][0], "insert_transaction")
        self.assertIsInstance(self.events[-1], TransactionStarted)
        self.assertEqual(self.charger.connectors[1].transaction.id, 42)

    def test_start_is_answered_once_stored(self):
        """
        The answer to a start waits for the store to commit the transaction.
        """
        self.store.hold.add("insert_transaction")
        d = self.central.start_transaction("CP1", 1, "GOOD", 0, T0)
        self.assertNoResult(d)
        self.store.held[0].callback(None)
        self.assertEqual(self.successResultOf(d)[0], 42)

    def test_retried_start_waits_for_the_first_to_be_stored(self):
        """
        A start retried while the first one's row is not stored yet (a full
        disk) is answered only once it is, with the same id.
        """
        self.store.hold.add("insert_transaction")
        first = self.central.start_transaction("CP1", 1, "GOOD", 0, T0)
        again = self.central.start_transaction("CP1", 1, "GOOD", 0, T0)
        self.assertNoResult(first)
        self.assertNoResult(again)
        self.store.held[0].callback(None)
        self.assertEqual(self.successResultOf(first), (42, Authorization("Accepted")))
        self.assertEqual(self.successResultOf(again), (42, Authorization("Accepted")))
        self.assertEqual(len(self.store.written("insert_transaction")), 1)

    def test_start_not_stored_is_not_answered(self):
        """
        A start whose row the store gives up on is not answered with its id
        (the charger gets a CALLERROR and retries); the retry stores it
        again and is answered then.
        """
        self.store.hold.add("insert_transaction")
        first = self.central.start_transaction("CP1", 1, "GOOD", 0, T0)
        self.store.held[0].errback(StoreError("the store closed"))
        self.failureResultOf(first, StoreError)
        again = self.central.start_transaction("CP1", 1, "GOOD", 0, T0)
        self.assertNoResult(again)
        self.store.held[1].callback(None)
        self.assertEqual(self.successResultOf(again), (42, Authorization("Accepted")))
        self.assertEqual(len(self.store.written("insert_transaction")), 2)

    def test_retried_start_gets_the_same_answer(self):
        """
        A start retried with the same values (our answer got lost) gets the
        same id and verdict; nothing is booked twice.
        """
        first = self.start(tag="OTHER")
        again = self.start(tag="other")
        self.assertEqual(first, (42, Authorization("Invalid")))
        self.assertEqual(again, (42, Authorization("Invalid")))
        self.assertEqual(len(self.store.written("insert_transaction")), 1)

    def test_a_tag_charges_at_one_connector_at_a_time(self):
        """
        A tag already charging elsewhere gets ConcurrentTx; the remote tag
        may run everywhere.
        """
        self.start(connector=1)
        self.assertEqual(self.start(connector=2)[1].status, "ConcurrentTx")
        self.start(connector=1, tag="xxter", at=T0 + timedelta(hours=1))
        self.assertEqual(self.start(connector=2, tag="xxter", at=T0 + timedelta(hours=1))[1],
                         Authorization("Accepted"))

    def test_start_without_stop_closes_the_lost_transaction(self):
        """
        A new start at a connector whose previous transaction was never
        stopped closes that one at the new meterStart.
        """
        first, _ = self.start(meter=100)
        self.start(meter=900, at=T0 + timedelta(hours=5))
        stopped = [e.transaction for e in self.of_type(TransactionStopped)]
        self.assertEqual([(t.id, t.energy_wh, t.stop_reason) for t in stopped],
                         [(first, 800, "Other")])

    def test_stop_without_meter_stop_uses_the_last_reading(self):
        """
        Meter-less chargers omit meterStop: the last register reading counts.
        """
        tx_id, _ = self.start(meter=100)
        self.central.book.meter_values("CP1", 1, tx_id, MeterReading(T0, energy_wh=750.0))
        self.assertEqual(self.store.written("update_meter"), [(tx_id, 750.0, T0)])
        self.assertIsNone(self.stop(tx_id, at=T0 + timedelta(hours=2)))
        stopped = self.events[-1].transaction
        self.assertEqual((stopped.meter_stop, stopped.energy_wh), (750, 650))
        self.assertIsNone(self.charger.connectors[1].transaction)

    def test_stop_with_a_tag_and_a_reading(self):
        """
        The stop's idTag is judged; the reading sent with it is booked first.
        """
        tx_id, _ = self.start(meter=100)
        authorization = self.stop(tx_id, tag="OTHER", reading=MeterReading(T0, energy_wh=400.0))
        self.assertEqual(authorization, Authorization("Invalid"))
        stopped = self.events[-1].transaction
        self.assertEqual((stopped.meter_stop, stopped.stop_id_tag, stopped.stop_time),
                         (400, "OTHER", T0))

    def test_stop_of_an_unknown_transaction_is_recorded(self):
        """
        A stop of an unknown or finished transaction is stored apart and
        answered all the same.
        """
        tx_id, _ = self.start()
        self.stop(tx_id, meter=200)
        self.stop(tx_id, meter=300)
        self.stop(999, meter=5)
        self.assertEqual([(args[1], args[-1]) for args in self.store.written("record_orphan_stop")],
                         [(tx_id, "already stopped"), (999, "unknown")])
        self.assertEqual(len(self.of_type(TransactionStopped)), 1)

    def test_meter_values_after_the_stop_leave_the_transaction(self):
        """
        Closing values sent after the stop move the live readings only.
        """
        tx_id, _ = self.start(meter=100)
        self.stop(tx_id, meter=500)
        self.central.book.meter_values("CP1", 1, tx_id, MeterReading(T0, energy_wh=510.0))
        self.assertEqual(self.events[-1], MeterChanged("CP1", 1))
        self.assertEqual(self.charger.connectors[1].energy_register_wh, 510.0)
        self.assertEqual(self.central.book.get(tx_id).energy_wh, 400)
        self.assertEqual(self.store.written("update_meter"), [])

    def test_main_meter_is_ignored(self):
        """
        The charger's main meter (no connector) is not a charging point.
        """
        self.central.book.meter_values("CP1", None, None, MeterReading(T0, energy_wh=1.0))
        self.assertEqual((self.events, set(self.charger.connectors)), ([], {1, 2}))


class TagRegistryTests(DomainTestCase):
    """
    The tag registry: managed tags are stored and announced.
    """

    def test_put_is_stored_and_announced(self):
        """
        A tag put is in force at once, stored, and L{TagsChanged} emitted;
        the Deferred fires with it once stored.
        """
        tag = TagRecord("CARD9", "Blocked", None, None)
        self.assertIs(self.successResultOf(self.central.tags.put(tag)), tag)
        self.assertIs(self.central.tags.get("card9"), tag)
        self.assertEqual(self.store.written("put_tag"), [("CARD9", "Blocked", None, None)])
        self.assertEqual(self.events, [TagsChanged()])
        self.assertEqual(self.central.authorize("CP1", 1, "CARD9").status, "Blocked")

    def test_put_waits_for_the_store(self):
        """
        The Deferred of a put fires only once the store committed it.
        """
        self.store.hold.add("put_tag")
        d = self.central.tags.put(TagRecord("CARD9", "Accepted", None, None))
        self.assertNoResult(d)
        self.store.held[0].callback(None)
        self.assertEqual(self.successResultOf(d).id, "CARD9")

    def test_unchanged_put_changes_nothing(self):
        """
        Putting the tag in force again writes and announces nothing.
        """
        self.central.tags.put(TagRecord("CARD9", "Accepted", None, None))
        self.central.tags.put(TagRecord("CARD9", "Accepted", None, None))
        self.assertEqual((len(self.store.writes), len(self.events)), (1, 1))

    def test_new_spelling_replaces_the_old(self):
        """
        idTags are case-insensitive: a new spelling replaces the stored one.
        """
        self.central.tags.put(TagRecord("card9", "Accepted", None, None))
        self.central.tags.put(TagRecord("CARD9", "Accepted", None, None))
        self.assertEqual(self.store.writes[1:], [
            ("delete_tag", ("card9",)), ("put_tag", ("CARD9", "Accepted", None, None))])
        self.assertEqual([t.id for t in self.central.tags.all() if t.id.startswith("C")],
                         ["CARD9"])

    def test_remove(self):
        """
        A managed tag is removed from the store; a configured one stays.
        """
        self.central.tags.put(TagRecord("good", "Blocked", None, None))
        removed = self.successResultOf(self.central.tags.remove("GOOD"))
        self.assertEqual(removed.id, "good")
        self.assertEqual(self.store.written("delete_tag"), [("good",)])
        self.assertIsInstance(self.central.tags.get("GOOD"), TagConfig)
        self.assertIsNone(self.successResultOf(self.central.tags.remove("GOOD")))
        self.assertEqual(self.store.written("delete_tag"), [("good",)])
        self.assertEqual(self.events, [TagsChanged(), TagsChanged()])

    def test_load_restores_the_managed_tags(self):
        """
        L{CentralSystem.load} restores the stored tags; putting them again
        (as the service did before the registry loaded them) writes nothing.
        """
        tag = TagRecord("CARD9", "Accepted", T0, "GOOD")
        self.store.tags = {tag.id: tag}
        self.central.load()
        self.assertEqual(self.central.tags.get("CARD9"), tag)
        self.assertEqual(self.central.authorize("CP1", 1, "card9"),
                         Authorization("Expired", "GOOD", T0))
        self.central.tags.put(TagRecord("CARD9", "Accepted", T0, "GOOD"))
        self.assertEqual(self.store.writes, [])
        self.assertFalse(self.of_type(TagsChanged))


class FrameHistoryTests(SynchronousTestCase):
    """
    The last frames of a charger, bounded in count and in bytes.
    """

    def test_frames_read_back_in_order(self):
        h = FrameHistory()
        h.add(1.5, "in", '[2,"1","Heartbeat",{}]')
        h.add(2.25, "out", '[3,"1",{"currentTime":"2026-11-24T10:00:00Z"}]')
        self.assertEqual(list(h), [(1.5, "in", '[2,"1","Heartbeat",{}]'),
                                   (2.25, "out", '[3,"1",{"currentTime":"2026-11-24T10:00:00Z"}]')])
        self.assertEqual(len(h), 2)
        self.assertEqual(h[-1][1], "out")

    def test_count_bound_drops_the_oldest(self):
        h = FrameHistory(maxlen=3)
        for i in range(10):
            h.add(float(i), "in", f"frame {i}")
        self.assertEqual([text for _, _, text in h], ["frame 7", "frame 8", "frame 9"])

    def test_byte_bound_drops_the_oldest(self):
        h = FrameHistory(maxlen=100, max_bytes=200)
        for i in range(20):
            h.add(float(i), "out", f"{i:02d}" + "x" * 48)
        texts = [text for _, _, text in h]
        # 63 bytes a record: three fit in 200, the newest ones.
        self.assertEqual([t[:2] for t in texts], ["17", "18", "19"])

    def test_a_frame_larger_than_the_budget_is_cut_short(self):
        h = FrameHistory(maxlen=10, max_bytes=64)
        h.add(0.0, "in", "small")
        h.add(1.0, "in", "é" * 100)
        (seconds, direction, text), = list(h)
        self.assertTrue(text.endswith(" …"))
        self.assertTrue(set(text[:-2]) == {"é"})
        self.assertLessEqual(len(text.encode("utf-8")) + 13, 64)

    def test_non_ascii_text_round_trips(self):
        h = FrameHistory()
        h.add(0.0, "in", '[2,"1","DataTransfer",{"vendorId":"Zürich ⚡"}]')
        self.assertEqual(h[0][2], '[2,"1","DataTransfer",{"vendorId":"Zürich ⚡"}]')


class PasswordTests(SynchronousTestCase):
    """
    L{password_matches}.
    """

    def test_text_and_hex_key(self):
        """
        A 40-hex-digit key matches its raw bytes and its text; others only
        their text.
        """
        key = "0001020304050607FFFFFFFFFFFFFFFFFFFFFFFF"
        self.assertTrue(password_matches(key, bytes.fromhex(key)))
        self.assertTrue(password_matches(key, key.encode()))
        self.assertFalse(password_matches(key, b"0001"))
        self.assertTrue(password_matches("secret-password!", b"secret-password!"))
        self.assertFalse(password_matches("secret-password!", b"secret-password?"))
        self.assertFalse(password_matches("zz" * 16, b""))


class AuthorizationKeyTests(SynchronousTestCase):
    """
    L{valid_authorization_key} and L{masked_frame}.
    """

    def test_quotes_and_backslashes_are_not_in_keys(self):
        """
        16..20 printable ASCII characters, but neither ':', '"' nor '\\'.
        """
        self.assertTrue(valid_authorization_key("!#$%&'()*+,-./09;<=>?@[]^_`{|}~"[:20]))
        self.assertTrue(valid_authorization_key("0001020304050607FFFFFFFFFFFFFFFFFFFFFFFF"))
        for bad in ('secret-password"x', "secret-password\\x", "secret:password-x", "short"):
            self.assertFalse(valid_authorization_key(bad), bad)

    def test_key_is_masked_in_any_order_and_case(self):
        """
        A ChangeConfiguration with a key holding a quote, and a
        GetConfiguration answer with C{readonly} before C{value}: no part
        of either key is left; other values are.
        """
        change = json.dumps([2, "1", "ChangeConfiguration",
                             {"value": 'SECRET"tail', "key": "authorizationKEY"}])
        answer = json.dumps([3, "2", {"configurationKey": [
            {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
            {"key": "AuthorizationKey", "readonly": False, "value": "SECRET2"}]}])
        for text in (change, answer):
            masked = masked_frame(text)
            self.assertNotIn("SECRET", masked)
            self.assertNotIn("tail", masked)
            self.assertIn(MASK, masked)
        self.assertIn('"value":"300"', masked_frame(answer))

    def test_a_key_spelled_with_escapes_is_masked(self):
        """
        C{\\u0041uthorizationKey} is the same key to a JSON reader.
        """
        text = '[2,"1","ChangeConfiguration",{"key":"\\u0041uthorizationKey","value":"SECRET"}]'
        self.assertEqual(json.loads(masked_frame(text))[3]["value"], MASK)

    def test_frames_without_a_key_are_kept_as_they_are(self):
        """
        Also frames that are not JSON, or that name the key without a value.
        """
        for text in ('[2,"1","Heartbeat",{}]', "not json", '[2,"1","Heartbeat",{"a":"\\u00e9"}]',
                     '[2,"1","GetConfiguration",{"key":["AuthorizationKey"]}]'):
            self.assertIs(masked_frame(text), text)

    def test_unreadable_frames_that_may_hold_a_key_are_hidden(self):
        """
        Invalid JSON or 100,000 levels deep: the whole text is replaced.
        """
        for text in ('[2,"1","ChangeConfiguration",{"key":"AuthorizationKey","value":"SECRET',
                     '[2,"1","ChangeConfiguration",' + "[" * 100_000 + "]" * 100_000
                     + ',{"key":"AuthorizationKey","value":"SECRET"}]'):
            self.assertEqual(masked_frame(text), HIDDEN_FRAME)

    def test_deep_frames_are_walked_without_recursion(self):
        """
        What C{json.loads} still reads, however deep, the mask walks.
        """
        depth = 900
        text = ("[" * depth + '{"key":"AuthorizationKey","value":"SECRET"}' + "]" * depth)
        self.assertNotIn("SECRET", masked_frame(text))


class PacerTests(SynchronousTestCase):
    """
    L{Pacer}: one action per address and interval, a few of all addresses.
    """

    def test_one_action_per_interval_and_the_count_held_back(self):
        pacer = Pacer(10)
        self.assertEqual([pacer.due("a", t) for t in (0, 1, 9.9)], [0, None, None])
        self.assertEqual(pacer.due("b", 5), 0)
        self.assertEqual(pacer.due("a", 10), 2)
        self.assertIsNone(pacer.due("a", 19))

    def test_bounded_addresses(self):
        """
        Beyond C{max_addresses}, the one that acted longest ago is
        forgotten: it may act again at once.
        """
        pacer = Pacer(10, max_addresses=2)
        for address in "abc":
            pacer.due(address, 0)
        self.assertEqual((pacer.due("a", 1), pacer.due("c", 1)), (0, None))

    def test_bounded_actions_of_all_addresses(self):
        """
        At most C{max_actions} per interval from all addresses together;
        those held back act in a later interval, with their count.
        """
        pacer = Pacer(10, max_actions=3)
        self.assertEqual([pacer.due(a, 0) for a in "abcde"], [0, 0, 0, None, None])
        self.assertIsNone(pacer.due("d", 5))
        self.assertEqual([pacer.due(a, 10) for a in "dea"], [2, 1, 0])
        self.assertIsNone(pacer.due("b", 10))
