"""
Unit tests for L{xxterocpp.upstream.uplink} (with its L{delivery},
L{verdicts} and L{timers}) and L{xxterocpp.upstream.forwarding}: one
charger's conversation with its back office, in memory on a clock
(L{tests.upstream_memory}); both stacks.
"""

import re
from datetime import timedelta

import attr
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.upstream_memory import UpstreamTestCase
from xxterocpp.config import UpstreamConfig
from xxterocpp.upstream import delivery, outbox, uplink, verdicts
from xxterocpp.upstream.timers import NamedTimers


class NamedTimersTests(SynchronousTestCase):
    """
    L{NamedTimers}: one armed timer per name.
    """

    def setUp(self):
        self.clock = Clock()
        self.timers = NamedTimers(self.clock)
        self.fired = []

    def test_a_timer_armed_again_replaces_the_one_before(self):
        self.timers.later("boot", 10, self.fired.append, "first")
        self.timers.later("boot", 20, self.fired.append, "second")
        self.clock.advance(15)
        self.assertEqual((self.fired, "boot" in self.timers), ([], True))
        self.clock.advance(5)
        self.assertEqual((self.fired, "boot" in self.timers), (["second"], False))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancel_all(self):
        self.timers.later("boot", 10, self.fired.append, "boot")
        self.timers.later("heartbeat", 10, self.fired.append, "heartbeat")
        self.timers.cancel("nothing armed")
        self.timers.cancel_all()
        self.clock.advance(10)
        self.assertEqual((self.fired, self.clock.getDelayedCalls()), ([], []))
        self.assertNotIn("heartbeat", self.timers)


class RegistrationTests(UpstreamTestCase):
    """
    The BootNotification upstream, and what may follow it.
    """

    def test_boot_waits_for_the_chargers_own(self):
        """
        Connected before the charger ever booted, the uplink sends nothing;
        the charger's BootNotification is then sent upstream as it was.
        """
        self.connect(boot=False)
        self.assertEqual(self.office.calls, [])
        self.answer("BootNotification", {"chargePointVendor": "Acme",
                                         "chargePointModel": "Wallbox 11",
                                         "firmwareVersion": "1.2"})
        self.assertEqual(self.office.calls[0], ("BootNotification", {
            "chargePointVendor": "Acme", "chargePointModel": "Wallbox 11",
            "firmwareVersion": "1.2"}))
        self.assertTrue(self.uplink.accepted)

    def test_boot_kept_across_restarts(self):
        """
        After a restart, a charger that reconnects without booting is booted
        upstream with the BootNotification it sent before.
        """
        self.connect()
        self.shutdown()
        self.build()
        self.office.calls.clear()
        self.connect(boot=False)
        self.assertEqual(self.office.actions()[0], "BootNotification")
        self.assertEqual(self.office.calls[0][1]["chargePointVendor"], "Acme")

    def test_pending_interval_respected(self):
        """
        Pending: the boot goes again after the interval the back office
        gave, nothing else before; then the statuses and the queue.
        """
        self.office.boot_answers = [("Pending", 30)]
        self.connect()
        self.answer("StatusNotification", {"connectorId": 1, "errorCode": "NoError",
                                           "status": "Preparing"})
        tx = self.start()
        self.assertEqual(self.office.actions(), ["BootNotification"])
        self.assertEqual(self.uplink.registration, "Pending")
        self.clock.advance(29)
        self.turns()
        self.assertEqual(self.office.actions(), ["BootNotification"])
        self.clock.advance(1)
        self.turns()
        self.assertEqual(self.office.actions(), ["BootNotification", "BootNotification",
                                                 "StatusNotification", "StartTransaction"])
        self.assertEqual(self.uplink.outbox.remote_id(tx), 900001)

    def test_rejected_without_interval(self):
        """
        Rejected with interval 0: the boot is retried after L{BOOT_RETRY}.
        """
        self.office.boot_answers = [("Rejected", 0)]
        self.connect()
        self.clock.advance(uplink.BOOT_RETRY - 1)
        self.turns()
        self.assertEqual(self.office.actions(), ["BootNotification"])
        self.clock.advance(1)
        self.turns()
        self.assertEqual(self.office.actions(), ["BootNotification", "BootNotification"])
        self.assertTrue(self.uplink.accepted)

    def test_heartbeats_at_the_back_office_interval(self):
        """
        Heartbeats go upstream at the interval of the boot's answer; the
        charger's own heartbeats stay local.
        """
        self.office.boot_answers = [("Accepted", 100)]
        self.connect()
        self.answer("Heartbeat", {})
        self.clock.advance(100)
        self.turns()
        self.clock.advance(100)
        self.turns()
        self.assertEqual(self.office.actions(), ["BootNotification", "Heartbeat", "Heartbeat"])

    def test_unanswered_heartbeat_drops_the_link(self):
        """
        A heartbeat without an answer (a half-open connection) closes the
        link, which connects again.
        """
        self.office.boot_answers = [("Accepted", 100)]
        self.office.silent.add("Heartbeat")
        self.connect()
        self.clock.advance(100)
        self.turns()
        self.clock.advance(30)
        self.assertEqual(self.link.state, "waiting")
        self.assertEqual(self.link.last_error, "no answer to a Heartbeat")
        self.assertIsNone(self.uplink.session)

    def test_statuses_live_and_once_after_reconnect(self):
        """
        A StatusNotification goes upstream at once (not queued); after a
        reconnect each connector's status as the controller knows it is
        sent once.
        """
        self.connect()
        self.answer("StatusNotification", {"connectorId": 1, "errorCode": "NoError",
                                           "status": "Charging", "info": "plugged"})
        self.assertEqual(self.office.payloads("StatusNotification"), [
            {"connectorId": 1, "errorCode": "NoError", "status": "Charging", "info": "plugged"}])
        self.link.drop("test")
        self.answer("StatusNotification", {"connectorId": 1, "errorCode": "NoError",
                                           "status": "SuspendedEV"})
        self.assertEqual(len(self.office.payloads("StatusNotification")), 1)
        self.link.connect()
        self.turns()
        again = self.office.payloads("StatusNotification")[1:]
        self.assertEqual([(p["connectorId"], p["status"]) for p in again], [(1, "SuspendedEV")])

    def test_charger_gone_closes_the_link(self):
        """
        The link is closed when the charger disconnects.
        """
        charger = self.connect()
        self.central.connections.disconnected("CP1", charger.session)
        self.assertEqual(self.link.state, "stopped")
        self.assertIsNone(self.uplink.session)


class OutboxDeliveryTests(UpstreamTestCase):
    """
    The transaction messages: queued before the charger is answered,
    delivered in order, one at a time, with the back office's ids.
    """

    def test_ids_rewritten_at_sending_time(self):
        """
        The charger has our id; the back office gets its own in the
        meter values and the stop.
        """
        self.connect()
        tx = self.start()
        self.assertLess(tx, 900000)
        self.answer("MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": [
            {"timestamp": "2030-06-01T12:01:00Z",
             "sampledValue": [{"value": "1500", "measurand": "Energy.Active.Import.Register"}]}]})
        self.answer("StopTransaction", {"transactionId": tx, "meterStop": 2000,
                                        "timestamp": "2030-06-01T12:02:00Z", "reason": "Local"})
        self.assertEqual(self.office.payloads("MeterValues")[0]["transactionId"], 900001)
        self.assertEqual(self.office.payloads("StopTransaction")[0]["transactionId"], 900001)
        self.assertEqual(self.uplink.outbox.depth, 0)
        self.assertEqual(self.tables.queue, {})
        self.assertEqual(self.tables.ids[tx].remote_id, 900001)

    def test_queued_before_the_answer(self):
        """
        The message is in the tables when the charger gets its answer, and
        nothing is sent before that.
        """
        self.connect()
        self.office.calls.clear()
        d = self.send("StartTransaction", {"connectorId": 1, "idTag": "GOOD", "meterStart": 0,
                                           "timestamp": "2030-06-01T12:00:00Z"})
        answer = self.successResultOf(d)
        self.assertEqual([r.action for r in self.tables.queue.values()], ["StartTransaction"])
        self.assertEqual(list(self.tables.queue.values())[0].transaction_id,
                         answer["transactionId"])

    def test_one_at_a_time_in_order(self):
        """
        Messages wait for the answer to the one before: the meter values
        for the answer to their start.
        """
        self.connect()
        self.office.silent.add("StartTransaction")
        tx = self.start()
        self.answer("MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": [
            {"timestamp": "2030-06-01T12:01:00Z",
             "sampledValue": [{"value": "1500"}]}]})
        self.assertEqual(self.office.actions(), ["BootNotification", "StartTransaction"])
        self.assertEqual(self.uplink.outbox.depth, 2)

    def test_retry_with_backoff_then_dead_letter(self):
        """
        A CALLERROR that does not say the message is wrong (InternalError)
        is retried after a pause that doubles up to 5 min; after
        L{MAX_FAILURES} (hours) the message is a dead letter, its later
        messages too, and the queue goes on.
        """
        self.connect()
        self.office.errors["StartTransaction"] = outbox.MAX_FAILURES
        tx = self.start()
        self.answer("StopTransaction", {"transactionId": tx, "meterStop": 2000,
                                        "timestamp": "2030-06-01T12:02:00Z"})
        first, longest = delivery.RETRY
        for failure in range(1, outbox.MAX_FAILURES):
            self.assertEqual(len(self.office.payloads("StartTransaction")), failure)
            self.clock.advance(min(first * 2 ** (failure - 1), longest))
            self.turns()
        self.assertEqual(len(self.office.payloads("StartTransaction")), outbox.MAX_FAILURES)
        self.assertEqual(self.uplink.outbox.depth, 0)
        self.assertEqual([(r.action, r.transaction_id) for r in self.tables.dead.values()],
                         [("StartTransaction", tx), ("StopTransaction", tx)])
        self.assertIn(f"{outbox.MAX_FAILURES} failed attempts, the last: InternalError",
                      self.tables.dead[min(self.tables.dead)].error)
        self.assertEqual(self.office.payloads("StopTransaction"), [])
        status = self.upstream.status()["CP1"]
        self.assertEqual(status["dead_letters"], 2)

    def test_no_answer_retried(self):
        """
        A message that got no answer is sent again after the pause (it
        counts as a failed attempt, of the L{outbox.MAX_FAILURES} before a
        dead letter).
        """
        self.connect()
        self.office.silent.add("StartTransaction")
        self.start()
        self.clock.advance(30)
        self.office.silent.clear()
        self.clock.advance(delivery.RETRY[0])
        self.turns()
        self.assertEqual(len(self.office.payloads("StartTransaction")), 2)
        self.assertEqual(self.uplink.outbox.depth, 0)
        self.assertEqual(self.tables.dead, {})
        self.assertEqual([name for name, _ in self.tables.writes].count("failed"), 1)

    def test_survives_a_restart(self):
        """
        What was queued while the back office was away is delivered after a
        restart, in order, with its ids, once.
        """
        self.link.up = False
        self.connect()
        tx = self.start()
        self.answer("StopTransaction", {"transactionId": tx, "meterStop": 2000,
                                        "timestamp": "2030-06-01T12:02:00Z"})
        self.assertEqual(self.office.calls, [])
        self.shutdown()
        self.build()
        self.connect(boot=False)
        self.assertEqual(self.office.actions(), ["BootNotification", "StartTransaction",
                                                 "StopTransaction"])
        self.assertEqual(self.office.payloads("StopTransaction")[0]["transactionId"], 900001)

    def test_meter_values_thinned_while_away(self):
        """
        While the back office is away, a transaction's meter values keep the
        first, one per MeterValueSampleInterval, and the last.
        """
        self.link.up = False
        self.connect()
        tx = self.start()
        for minute, seconds in ((0, 10), (0, 20), (0, 50), (1, 10), (1, 40), (2, 20), (2, 30)):
            self.answer("MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": [
                {"timestamp": f"2030-06-01T12:{minute:02d}:{seconds:02d}Z",
                 "sampledValue": [{"value": str(minute * 60 + seconds)}]}]})
        self.link.up = True
        self.link.connect()
        self.turns(50)
        kept = [p["meterValue"][0]["sampledValue"][0]["value"]
                for p in self.office.payloads("MeterValues")]
        self.assertEqual(kept, ["10", "70", "140", "150"])

    def test_meter_values_without_transaction_live(self):
        """
        Meter values that name no transaction go upstream live, not
        queued; those of a transaction the back office never heard of stay
        local.
        """
        self.connect()
        self.answer("MeterValues", {"connectorId": 0, "meterValue": [
            {"timestamp": "2030-06-01T12:01:00Z", "sampledValue": [{"value": "5"}]}]})
        self.answer("MeterValues", {"connectorId": 1, "transactionId": 77, "meterValue": [
            {"timestamp": "2030-06-01T12:01:00Z", "sampledValue": [{"value": "5"}]}]})
        self.assertEqual(len(self.office.payloads("MeterValues")), 1)
        self.assertEqual(self.tables.queue, {})

    def test_refused_start_flagged_and_stopped(self):
        """
        A start the back office does not accept is flagged; with
        stop_refused the session is stopped; the charger got our Accepted.
        """
        self.build(stop_refused="true")
        charger = self.connect()
        self.assertEqual(self.answer("Authorize", {"idTag": "GOOD"})["idTagInfo"]["status"],
                         "Accepted")
        tx = self.start()
        self.turns()
        status = self.upstream.status()["CP1"]
        self.assertEqual(status["sessions"], [{"transaction_id": tx, "remote_id": 900001,
                                               "status": "Invalid", "flagged": True}])
        self.assertIn(("RemoteStopTransaction", {"transactionId": tx}),
                      [(a, p) for u, a, p in charger.calls])


class AuthorizationTests(UpstreamTestCase):
    """
    Tags the controller does not accept are the back office's to decide.
    """

    def status(self, id_tag):
        d = self.send("Authorize", {"idTag": id_tag})
        self.turns()
        return self.successResultOf(d)["idTagInfo"]["status"]

    def test_back_office_decides_unknown_tags(self):
        """
        An unknown tag is asked upstream; known ones are not.
        """
        self.connect()
        self.office.tags = {"VISITOR": "Accepted", "BLOCKED": "Accepted", "GOOD": "Blocked"}
        self.assertEqual([self.status(t) for t in ("VISITOR", "STRANGER", "BLOCKED", "GOOD")],
                         ["Accepted", "Invalid", "Blocked", "Accepted"])
        self.assertEqual([p["idTag"] for p in self.office.payloads("Authorize")],
                         ["VISITOR", "STRANGER"])

    def test_verdict_kept_until_expiry(self):
        """
        The verdict is kept (no second Authorize) until it expires.
        """
        self.connect()
        self.office.tags = {"VISITOR": "Accepted"}
        self.status("VISITOR")
        self.start(tag="VISITOR")
        self.assertEqual(len(self.office.payloads("Authorize")), 1)
        self.clock.advance(verdicts.VERDICT_LIFETIME)
        self.status("VISITOR")
        self.assertEqual(len(self.office.payloads("Authorize")), 2)

    def test_verdict_kept_until_its_expiry_date(self):
        """
        A verdict with an expiryDate is kept until then, however far the
        monotonic clock of the timers is from the time of day.
        """
        self.shutdown()
        self.build(wall=lambda: self.clock.seconds() + 10 * 365 * 86400)
        self.connect()
        self.office.tags = {"VISITOR": "Accepted"}
        self.office.expiries = {"VISITOR": self.central.now() + timedelta(hours=1)}
        self.status("VISITOR")
        self.clock.advance(3599)
        self.status("VISITOR")
        self.assertEqual(len(self.office.payloads("Authorize")), 1)
        self.clock.advance(2)
        self.status("VISITOR")
        self.assertEqual(len(self.office.payloads("Authorize")), 2)

    def test_verdict_ends_at_its_expiry_date_after_a_step(self):
        """
        A verdict kept while the system clock read a month early (booted
        without a battery-backed clock), expiring an hour after the real
        time: NTP steps the clock forward, and two hours later the verdict
        is no longer kept (it was, for a day: its time left had been
        counted on the early clock).
        """
        self.shutdown()
        self.offset = 0.0
        self.build(wall=lambda: self.clock.seconds() + 10 * 365 * 86400 + self.offset)
        self.connect()
        self.office.tags = {"VISITOR": "Accepted"}
        month = 30 * 86400
        self.office.expiries = {"VISITOR": self.central.now() + timedelta(seconds=month + 3600)}
        self.status("VISITOR")
        self.offset += month
        self.clock.advance(2 * 3600)
        self.status("VISITOR")
        self.assertEqual(len(self.office.payloads("Authorize")), 2)

    def test_start_of_unknown_tag_asks_first(self):
        """
        A StartTransaction of a tag nobody decided yet waits for the back
        office's verdict and is booked with it.
        """
        self.connect()
        self.office.tags = {"VISITOR": "Accepted"}
        d = self.send("StartTransaction", {"connectorId": 1, "idTag": "VISITOR",
                                           "meterStart": 0, "timestamp": "2030-06-01T12:00:00Z"})
        self.turns()
        answer = self.successResultOf(d)
        self.assertEqual(answer["idTagInfo"]["status"], "Accepted")
        tx = self.central.book.get(answer["transactionId"])
        self.assertEqual(tx.start_status, "Accepted")
        self.assertEqual(self.office.actions()[-2:], ["Authorize", "StartTransaction"])

    def test_no_answer_in_time_offline_rule(self):
        """
        No verdict within L{AUTHORIZE_WAIT} seconds: the offline rule.
        """
        self.build(offline="accept")
        self.connect()
        self.office.silent.add("Authorize")
        d = self.send("Authorize", {"idTag": "VISITOR"})
        self.turns()
        self.assertNoResult(d)
        self.clock.advance(verdicts.AUTHORIZE_WAIT)
        self.assertEqual(self.successResultOf(d)["idTagInfo"]["status"], "Accepted")

    def test_offline_rules(self):
        """
        Away, the offline rule decides at once: local (the controller's
        verdict), accept, reject; the controller's own verdicts stand.
        """
        for rule, expected in (("local", "Invalid"), ("accept", "Accepted"),
                               ("reject", "Invalid")):
            self.build(offline=rule)
            self.link.up = False
            self.connect()
            self.assertEqual((rule, self.status("STRANGER")), (rule, expected))
            self.assertEqual(self.status("BLOCKED"), "Blocked")
            self.assertEqual(self.status("GOOD"), "Accepted")
        self.assertEqual(self.office.calls, [])


class ConfigurationTests(UpstreamTestCase):
    """
    A reloaded configuration.
    """

    def test_changed_back_office_keeps_the_queue(self):
        """
        A changed [charger.upstream] connects anew (with the new identity)
        and delivers what the old connection had not.
        """
        self.link.up = False
        self.connect()
        tx = self.start()
        config = self.config(identity="NEW-ID")
        self.central.reconfigure(config)
        self.upstream.reconfigure(config)
        uplink = self.upstream.uplinks["CP1"]
        self.assertIsNot(uplink, self.uplink)
        self.assertEqual(self.link.state, "stopped")
        self.assertEqual((uplink.link.identity, uplink.link.state), ("NEW-ID", "open"))
        self.turns()
        self.assertEqual(self.office.actions(), ["BootNotification", "StartTransaction"])
        self.assertEqual(uplink.outbox.remote_id(tx), 900001)

    def test_back_office_removed(self):
        """
        Without [charger.upstream] any more the link closes; the charger's
        calls are the controller's alone.
        """
        self.connect()
        config = self.config()
        config = attr.evolve(config, chargers=tuple(
            attr.evolve(c, upstream=UpstreamConfig()) for c in config.chargers))
        self.upstream.reconfigure(config)
        self.assertEqual(self.upstream.uplinks, {})
        self.assertEqual(self.link.state, "stopped")
        self.office.calls.clear()
        self.start()
        self.assertEqual(self.office.calls, [])


class MeterlessStopTests(UpstreamTestCase):
    """
    A charger without a meter omits meterStop.
    """

    def test_booked_register_forwarded(self):
        """
        The back office gets the register the controller booked.
        """
        self.connect()
        tx = self.start(meter=1000)
        self.answer("MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": [
            {"timestamp": "2030-06-01T12:01:00Z", "sampledValue": [{"value": "1500"}]}]})
        self.answer("StopTransaction", {"transactionId": tx, "timestamp": "2030-06-01T12:02:00Z"})
        self.assertEqual(self.office.payloads("StopTransaction")[0]["meterStop"], 1500)


class StatusPageTests(UpstreamTestCase):
    """
    The back-office link, its queue and dead letters on C{/api/status} and
    the status page.
    """

    def test_link_and_queue_shown(self):
        """
        While the back office is away, the snapshot and the page show the
        link waiting, the queued messages and the oldest; once it is back,
        the queue is empty and the session's ids are mapped.
        """
        from xxterocpp.web.page import render_page
        from xxterocpp.web.status import snapshot

        self.link.up = False
        self.connect()
        tx = self.start()
        status = snapshot(self.central, self.controller, None, upstream=self.upstream)
        cp1 = status["upstream"]["CP1"]
        self.assertEqual((cp1["identity"], cp1["queue_depth"], cp1["dead_letters"]),
                         ("HOME-CP1", 1, 0))
        self.assertIsNotNone(cp1["oldest_queued"])
        page = self.successResultOf(render_page(status, {}, [])).decode()
        [section] = re.findall(r'<section[^>]*id="upstream".*?</section>', page, re.S)
        self.assertIn("CP1", section)
        self.assertIn(cp1["url"], section)
        self.link.up = True
        self.link.connect()
        self.turns(50)
        status = snapshot(self.central, self.controller, None, upstream=self.upstream)
        cp1 = status["upstream"]["CP1"]
        self.assertEqual(cp1["queue_depth"], 0)
        self.assertEqual([(s["transaction_id"], s["remote_id"]) for s in cp1["sessions"]],
                         [(tx, 900001)])
        page = self.successResultOf(render_page(status, {}, [])).decode()
        self.assertIn(f"{tx} \N{RIGHTWARDS ARROW} 900001", page)

    def test_no_back_office_no_section(self):
        """
        Without a back office the page has no section for one.
        """
        from xxterocpp.web.page import render_page
        from xxterocpp.web.status import snapshot

        status = snapshot(self.central, self.controller, None)
        self.assertEqual(status["upstream"], {})
        page = self.successResultOf(render_page(status, {}, [])).decode()
        self.assertNotIn('id="upstream"', page)

    def test_link_since_is_a_time_of_day(self):
        """
        Since when the link is in its state is told as the central system's
        time, not as the monotonic clock's seconds read as a date.
        """
        self.shutdown()
        self.build(wall=lambda: self.clock.seconds() + 10 * 365 * 86400)
        self.connect()
        self.clock.advance(100)
        status = self.upstream.status()["CP1"]
        self.assertEqual((status["link"], status["since"]),
                         ("open", (self.central.now() - timedelta(seconds=100)).isoformat()))
