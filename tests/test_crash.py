"""
Nothing lost: the service killed with SIGKILL in the middle of charging
sessions (and of a burst of meter values), started again, and the sessions
still end with the right energy; stopped with SIGTERM, it keeps what it
writes at the stop.
"""

import json
import os
import sqlite3
from datetime import datetime

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase
from twisted.web.client import readBody

from tests.service import (
    BASE_CONFIG, MAIN, TWIST, ServiceProcess, kill_on_cleanup, write_config,
)
from tests.sim import connect_charger
from tests.test_web import web_agent


def read_transactions(path):
    """
    The transactions of a state database, read directly with sqlite3.
    """
    db = sqlite3.connect(path)
    try:
        return db.execute(
            "select id, connector, meter_start, meter_stop, stop_reason from transactions"
            " order by id").fetchall()
    finally:
        db.close()


class CrashRestartTests(TestCase):
    """
    SIGKILL of the service process.
    """

    timeout = 60

    @defer.inlineCallbacks
    def running(self):
        """
        The service as its own process, killed at the end of the test if
        still running.

        @return: C{(config, database, service)}.
        """
        config = write_config(self)
        database = os.path.join(os.path.dirname(config), "state.sqlite3")
        service = ServiceProcess(config)
        kill_on_cleanup(self, service)
        yield service.start()
        return config, database, service

    @defer.inlineCallbacks
    def three_sessions(self):
        """
        L{running}, with chargers CP1 and TWIN and three sessions started
        (CP1/1, TWIN/1, TWIN/2).

        @return: C{(config, database, service, cp, twin, sessions)}, each
            session C{(charger, connector, meter_start, transaction_id)}.
        """
        config, database, service = yield self.running()
        cp = yield connect_charger(service.url, "CP1")
        twin = yield connect_charger(service.url, "TWIN")
        sessions = []
        for charger, connector, meter_start in ((cp, 1, 1000), (twin, 1, 20000), (twin, 2, 300)):
            started = yield charger.start_transaction(connector, "04A1B2C3", meter_start)
            sessions.append((charger, connector, meter_start, started["transactionId"]))
        return config, database, service, cp, twin, sessions

    @defer.inlineCallbacks
    def test_sigkill_mid_session_then_stop_gives_right_energy(self):
        """
        Transactions started before a SIGKILL are stopped after the restart
        with meterStop - meterStart, and new ids never collide.
        """
        config, database, service = yield self.running()
        cp = yield connect_charger(service.url, "CP1")
        twin = yield connect_charger(service.url, "TWIN")
        yield cp.boot()
        first = yield cp.start_transaction(1, "04A1B2C3", 1000)
        second = yield twin.start_transaction(2, "XXTER", 50000)
        yield cp.meter_values(1, first["transactionId"], energy_wh=1800, currents=(10, 10, 10))
        yield service.signal("KILL")
        yield cp.wait_closed()
        yield twin.wait_closed()

        yield service.start()
        cp = yield connect_charger(service.url, "CP1")
        self.addCleanup(cp.close)
        twin = yield connect_charger(service.url, "TWIN")
        self.addCleanup(twin.close)
        # No BootNotification: a reconnecting charger need not send one.
        yield cp.stop_transaction(first["transactionId"], 5000, reason="EVDisconnected")
        yield twin.stop_transaction(second["transactionId"], 57500)
        third = yield cp.start_transaction(1, "04A1B2C3", 5000)
        self.assertGreater(third["transactionId"], second["transactionId"])
        yield cp.close()
        yield twin.close()
        yield service.stop()
        rows = read_transactions(database)
        self.assertEqual(rows[:2], [
            (first["transactionId"], 1, 1000, 5000, "EVDisconnected"),
            (second["transactionId"], 2, 50000, 57500, "Local"),
        ])
        self.assertEqual(rows[2][0], third["transactionId"])

    @defer.inlineCallbacks
    def test_sigkill_in_a_meter_value_burst_keeps_sessions_and_energies(self):
        """
        Killed while three sessions send a burst of MeterValues (their
        readings wait in memory for a later commit), the restarted service
        still has every session open, stops each at its meterStop, and the
        energies are exact.
        """
        config, database, service, cp, twin, sessions = yield self.three_sessions()
        burst = []
        for n in range(1, 201):
            for charger, connector, meter_start, tx in sessions:
                d = charger.meter_values(connector, tx, energy_wh=meter_start + 10 * n,
                                         currents=(16, 16, 16))
                burst.append(d.addErrback(lambda failure: None))
        # Some of the burst answered, the rest in flight: then the kill.
        yield burst[len(burst) // 4]
        yield service.signal("KILL")
        yield cp.wait_closed()
        yield twin.wait_closed()

        yield service.start()
        cp = yield connect_charger(service.url, "CP1")
        self.addCleanup(cp.close)
        twin = yield connect_charger(service.url, "TWIN")
        self.addCleanup(twin.close)
        chargers = {"CP1": cp, "TWIN": twin}
        for charger, connector, meter_start, tx in sessions:
            yield chargers[charger.identity].stop_transaction(tx, meter_start + 2500 + connector)
        yield cp.close()
        yield twin.close()
        yield service.stop()
        self.assertEqual(
            [(tx, meter_start, meter_stop, meter_stop - meter_start)
             for tx, connector, meter_start, meter_stop, reason in read_transactions(database)],
            [(tx, meter_start, meter_start + 2500 + connector, 2500 + connector)
             for charger, connector, meter_start, tx in sessions],
        )

    @defer.inlineCallbacks
    def test_sigkill_after_the_start_is_committed_retry_gets_the_same_id(self):
        """
        Killed once a StartTransaction is committed but (its charger being
        one whose answer waits a second, docs/quirks.md#delay-start-answer)
        most likely before it is answered: after the restart the charger's
        retry of the same StartTransaction gets the id that was committed,
        and one session is booked, not two.
        """
        config = write_config(self, BASE_CONFIG.replace(
            'id = "CP1"\n', 'id = "CP1"\nquirks = ["delay-start-answer"]\n', 1))
        database = os.path.join(os.path.dirname(config), "state.sqlite3")
        service = ServiceProcess(config)
        kill_on_cleanup(self, service)
        yield service.start()
        cp = yield connect_charger(service.url, "CP1")
        twin = yield connect_charger(service.url, "TWIN")
        start = {"connectorId": 1, "idTag": "04A1B2C3", "meterStart": 1000,
                 "timestamp": "2026-05-01T08:00:00.000Z"}
        cp.call("StartTransaction", start).addErrback(lambda failure: None)
        # Answered after the StartTransaction on the same connection: that
        # one is booked and its row queued.
        yield cp.heartbeat()
        # Answered once stored: the batch with CP1's row (or a later one)
        # is committed.
        other = yield twin.start_transaction(2, "04A1B2C3", 300)
        yield service.signal("KILL")
        yield cp.wait_closed()
        yield twin.wait_closed()
        [(committed, connector, meter_start, meter_stop, reason), _] = read_transactions(database)
        self.assertEqual((connector, meter_start, meter_stop), (1, 1000, None))

        yield service.start()
        cp = yield connect_charger(service.url, "CP1")
        self.addCleanup(cp.close)
        retried = yield cp.call("StartTransaction", start)
        self.assertEqual(retried["transactionId"], committed)
        self.assertEqual(retried["idTagInfo"]["status"], "Accepted")
        yield cp.stop_transaction(committed, 4200)
        yield cp.close()
        yield service.stop()
        self.assertEqual(read_transactions(database), [
            (committed, 1, 1000, 4200, "Local"),
            (other["transactionId"], 2, 300, None, None),
        ])

    @defer.inlineCallbacks
    def test_sigkill_during_stop_transaction_then_retry_books_it_once(self):
        """
        Killed while StopTransactions are on their way (some stored, some
        not): the chargers send them again after the restart, and every
        session ends once, with meterStop - meterStart, whether its stop
        was stored before the kill or only after it.
        """
        config, database, service, cp, twin, started = yield self.three_sessions()
        sessions = []
        for charger, connector, meter_start, tx in started:
            yield charger.meter_values(connector, tx, energy_wh=meter_start + 700)
            sessions.append((charger.identity, connector, meter_start, tx))
        stops = {}
        for identity, connector, meter_start, tx in sessions:
            charger = {"CP1": cp, "TWIN": twin}[identity]
            stops[tx] = {"transactionId": tx, "meterStop": meter_start + 1500 + connector,
                         "timestamp": "2026-05-01T09:00:00.000Z", "reason": "EVDisconnected"}
            charger.call("StopTransaction", stops[tx]).addErrback(lambda failure: None)
        yield service.signal("KILL")
        yield cp.wait_closed()
        yield twin.wait_closed()

        yield service.start()
        chargers = {}
        for identity in ("CP1", "TWIN"):
            chargers[identity] = yield connect_charger(service.url, identity)
            self.addCleanup(chargers[identity].close)
        for identity, connector, meter_start, tx in sessions:
            yield chargers[identity].call("StopTransaction", stops[tx])
        for charger in chargers.values():
            yield charger.close()
        yield service.stop()
        self.assertEqual(read_transactions(database), [
            (tx, connector, meter_start, meter_start + 1500 + connector, "EVDisconnected")
            for identity, connector, meter_start, tx in sessions])

    @defer.inlineCallbacks
    def test_sigkill_right_after_a_reconnect(self):
        """
        Killed again right after the chargers came back from a first kill
        and sent their statuses and readings: the sessions are still open
        after the second restart and end with the right energy.
        """
        config, database, service = yield self.running()
        cp = yield connect_charger(service.url, "CP1")
        started = yield cp.start_transaction(1, "04A1B2C3", 1000)
        tx = started["transactionId"]
        for _ in range(2):
            yield service.signal("KILL")
            yield cp.wait_closed()
            yield service.start()
            cp = yield connect_charger(service.url, "CP1")
            self.addCleanup(cp.close)
            # What a charger sends when it is back, the kill right after.
            cp.boot().addErrback(lambda failure: None)
            cp.status(1, "Charging").addErrback(lambda failure: None)
            cp.meter_values(1, tx, energy_wh=1600).addErrback(lambda failure: None)
        yield service.signal("KILL")
        yield cp.wait_closed()
        yield service.start()
        cp = yield connect_charger(service.url, "CP1")
        self.addCleanup(cp.close)
        yield cp.stop_transaction(tx, 2900)
        again = yield cp.start_transaction(1, "04A1B2C3", 2900)
        self.assertGreater(again["transactionId"], tx)
        yield cp.close()
        yield service.stop()
        self.assertEqual(read_transactions(database), [
            (tx, 1, 1000, 2900, "Local"), (again["transactionId"], 1, 2900, None, None)])


class CrashOfflineTests(TestCase):
    """
    SIGKILL while a charger is connected, and a restart later than
    C{[knx] offline_after}.
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_offline_after_counts_from_before_the_crash(self):
        """
        The store kept when the connection opened: the restarted service
        counts the charger's offline_after from then (at the latest from
        the time it kept last), so it is offline at once, not 1 s later.
        """
        config = write_config(self, BASE_CONFIG.replace('knxd = "{knxd}"',
                                                         'knxd = "{knxd}"\noffline_after = 1'))
        database = os.path.join(os.path.dirname(config), "state.sqlite3")
        service = ServiceProcess(config)
        kill_on_cleanup(self, service)
        yield service.start()
        cp = yield connect_charger(service.url, "CP1")
        yield cp.boot()
        # answered once on disk, after the batch of the connection
        yield cp.start_transaction(1, "04A1B2C3", 1000)
        yield service.signal("KILL")
        yield cp.wait_closed()
        yield task.deferLater(reactor, 1.5, lambda: None)
        yield service.start()
        yield service.wait_for_output(b"CP1: not heard from since")
        # The reactor runs (its SIGTERM handler is in place): a request is
        # answered. A SIGTERM before it ended the process with the writes
        # of the start not committed (one run in three).
        yield service.wait_for_output(b"web interface listening")
        url = (service.web_url + "/api/status").encode()
        response = yield web_agent(self).request(b"GET", url)
        yield readBody(response)
        yield service.stop()
        db = sqlite3.connect(database)
        try:
            settings = dict(db.execute(
                "select key, value from settings where scope = 'CP1'").fetchall())
        finally:
            db.close()
        self.assertEqual(settings["offline"], "true")
        self.assertIn('"left"', settings["contact"])


def read_settings(path):
    """
    The settings of a state database as C{{(scope, key): value}}, read
    directly with sqlite3.
    """
    db = sqlite3.connect(path)
    try:
        rows = db.execute("select scope, key, value from settings").fetchall()
    finally:
        db.close()
    return {(scope, key): json.loads(value) for scope, key, value in rows}


class StopTests(TestCase):
    """
    SIGTERM of the service process, as systemd stops it (C{python3 -m
    xxterocpp}) and as twistd runs it: the writes of the stop itself (the
    time given out, from which the next start also counts the offline_after
    of the chargers connected at the stop) are committed before the store
    closes, not refused by a store already closed.
    """

    timeout = 60

    @defer.inlineCallbacks
    def stopped(self, command):
        config = write_config(self)
        database = os.path.join(os.path.dirname(config), "state.sqlite3")
        service = ServiceProcess(config, command=command)
        kill_on_cleanup(self, service)
        yield service.start()
        cp = yield connect_charger(service.url, "CP1")
        yield cp.boot()
        told = datetime.fromisoformat((yield cp.heartbeat())["currentTime"].replace("Z", "+00:00"))
        yield service.stop()
        yield cp.wait_closed()
        settings = read_settings(database)
        kept = settings.get(("central", "trusted_time"))
        self.assertIsNotNone(kept, service.output.decode())
        self.assertGreaterEqual(datetime.fromisoformat(kept), told)
        self.assertNotIn(b"could not be kept", service.output)

    def test_main_keeps_what_the_stop_writes(self):
        return self.stopped(MAIN)

    def test_twistd_keeps_what_the_stop_writes(self):
        return self.stopped(TWIST)
