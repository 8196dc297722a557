"""
Tests for L{xxterocpp.tap}: the twistd plugin's options, the one-line
refusal of a bad configuration, the listening ports, the order observers
get the domain's events in, SIGHUP reloads and where state is kept.
"""

import os
import signal
import sys
from datetime import datetime, timezone

import attr

from twisted.internet import defer, endpoints, reactor, utils
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import TestCase

from tests.service import (
    BASE_CONFIG, LOOPBACK_CONFIG, ROOT, ClockedReactor, ServiceProcess, kill_on_cleanup,
    start_service, write_config)
from tests.sim import HandshakeRefused, connect_charger
from tests.test_faults import server_protocol
from xxterocpp import early, tap
from xxterocpp.config import load_config, parse_config


def rewrite(path, text, **values):
    """
    Overwrite a configuration file written by L{write_config}.
    """
    directory = os.path.dirname(path)
    values.setdefault("database", os.path.join(directory, "state.sqlite3"))
    values.setdefault("password", "x" * 16)
    values.setdefault("knxd", "")
    values.setdefault("max_chargers", 4)
    with open(path, "w") as f:
        f.write(text.format(**values))


#: BASE_CONFIG without the TWIN charger, with a new charger and a new tag.
CHANGED_CONFIG = BASE_CONFIG.replace(
    '[[charger]]\nid = "TWIN"\nconnector = 1', '[[charger]]\nid = "NEW1"\nconnector = 1'
).replace(
    '[[charger]]\nid = "TWIN"\nconnector = 2\nmax_current = 16\n'
    'allowed_tags = ["04A1B2C3", "family"]\n', ''
).replace('id = "BLOCKED1"\nstatus = "Blocked"', 'id = "BLOCKED1"\nstatus = "Accepted"')


class OptionsTests(TestCase):
    """
    The command line of the plugin.
    """

    def test_config_is_loaded(self):
        """
        C{--config} names the file; the parsed configuration is kept.
        """
        path = write_config(self)
        options = tap.Options()
        options.parseOptions(["--config", path])
        self.assertEqual(options["settings"].path, path)
        self.assertEqual(options["settings"].charger_ids(), ("CP1", "TWIN", "RDAM 123"))

    def test_default_path(self):
        """
        Without C{--config}, the file under /etc is used.
        """
        self.assertEqual(tap.Options()["config"], "/etc/xxterocpp/xxterocpp.toml")

    @defer.inlineCallbacks
    def test_bad_config_exits_with_one_line(self):
        """
        C{twistd -n xxterocpp --config F} with a bad file exits non-zero and
        prints one line naming file, key and problem.
        """
        path = write_config(self, BASE_CONFIG.replace('id = "CP1"\n', 'id = "CP1"\nconector = 1\n'))
        out, err, code = yield utils.getProcessOutputAndValue(
            sys.executable,
            ["-c", "from twisted.scripts.twistd import run; run()", "--nodaemon",
             "--pidfile=", "xxterocpp", "--config", path],
            env=dict(os.environ, PYTHONPATH=ROOT), path=ROOT, reactor=reactor)
        self.assertNotEqual(code, 0)
        lines = err.decode().splitlines()
        self.assertEqual(len(lines), 1, err)
        self.assertIn(path, lines[0])
        self.assertIn("charger[0].conector", lines[0])
        self.assertIn("unknown key", lines[0])
        self.assertEqual(out, b"")


class ServerServiceTests(TestCase):
    """
    L{tap.ServerService}: Twisted's StreamServerEndpointService that says
    where it listens.
    """

    def server(self, port=0):
        endpoint = endpoints.TCP4ServerEndpoint(reactor, port, interface="127.0.0.1")
        server = tap.ServerService(endpoint, Factory.forProtocol(Protocol), "test server")
        self.addCleanup(lambda: server.running and server.stopService())
        return server

    @defer.inlineCallbacks
    def test_logs_and_tells_the_port(self):
        """
        Once bound it logs "WHAT listening on HOST port PORT" and
        C{when_listening} fires with the port, also when asked later.
        """
        server = self.server()
        with capturedLogs() as events:
            server.startService()
            port = yield server.when_listening()
        self.assertEqual(port.getHost().host, "127.0.0.1")
        listening = [e for e in events if e.get("what") == "test server"]
        self.assertEqual([(e["host"], e["port"]) for e in listening],
                         [("127.0.0.1", port.getHost().port)])
        self.assertIs((yield server.when_listening()), port)
        yield server.stopService()
        self.assertFalse(server.running)

    @defer.inlineCallbacks
    def test_port_in_use_stops_the_start(self):
        """
        A port that cannot be bound raises from C{startService}.
        """
        first = self.server()
        first.startService()
        taken = (yield first.when_listening()).getHost().port
        self.assertRaises(CannotListenError, self.server(taken).startService)

    @defer.inlineCallbacks
    def test_twistd_exits_when_the_port_is_taken(self):
        """
        The whole service under twistd: a taken OCPP port ends the process
        with a non-zero status and one line naming the port.
        """
        blocker = self.server()
        blocker.startService()
        taken = (yield blocker.when_listening()).getHost().port
        path = write_config(self, LOOPBACK_CONFIG.replace("port = 0", f"port = {taken}", 1))
        out, err, code = yield utils.getProcessOutputAndValue(
            sys.executable,
            ["-c", "from twisted.scripts.twistd import run; run()", "--nodaemon",
             "--pidfile=", "xxterocpp", "--config", path],
            env=dict(os.environ, PYTHONPATH=ROOT), path=ROOT, reactor=reactor)
        self.assertNotEqual(code, 0)
        # twistd's log has taken over stderr by then.
        output = (out + err).decode()
        self.assertIn(f"xxterocpp: Couldn't listen on 127.0.0.1:{taken}:", output)
        self.assertNotIn("Traceback", output)


#: A charger with a KNX group object: the service builds a bridge (it does
#: not connect to knxd before it starts).
KNX_CONFIG = LOOPBACK_CONFIG.replace('knxd = "{knxd}"', 'knxd = "unix:/nonexistent"') + """
[[charger]]
id = "CP1"
max_current = 16

[charger.knx]
status = "1/0/0"
"""


class SubscriptionTests(TestCase):
    """
    The composition root subscribes the domain's observers in one order.
    """

    def test_order(self):
        """
        The domain's own pending commands first (they are settled before any
        adapter hears of the event), then the controller, the smart
        manager, the back offices' forwarding and the KNX bridge; each once.
        """
        service = tap.XxterocppService(load_config(write_config(self, KNX_CONFIG)), reactor)
        self.assertEqual(service.central._observers, [
            service.central.accepted.observe, service.controller.observe, service.smart.observe,
            service._observe_upstream,
            service.knx_bridge.observe])


#: CP1's table in BASE_CONFIG, and the same with a back office at a port
#: of this machine where nothing listens.
CP1_TABLE = '[[charger]]\nid = "CP1"\nmax_current = 32\nnormal_current = 16\n'
CP1_FORWARDED = CP1_TABLE + '[charger.upstream]\nurl = "ws://127.0.0.1:9/ocpp"\n'


class BackOfficeForwardingTests(TestCase):
    """
    The back offices' forwarding (L{xxterocpp.upstream.Upstream}) is made
    only for a charger that has one, or for messages the store keeps for
    one.
    """

    @defer.inlineCallbacks
    def test_none_without_a_back_office(self):
        """
        Without a C{[charger.upstream]} there is no forwarding and no relay,
        and the charger's calls are answered by the domain.
        """
        service = yield start_service(self)
        self.assertEqual((service.upstream, service.ocpp_factory.relay), (None, None))
        cp = yield connect_charger(service.url, "CP1")
        self.addCleanup(cp.close)
        started = yield cp.start_transaction(1, "04A1B2C3", 10)
        self.assertEqual(started["idTagInfo"]["status"], "Accepted")

    @defer.inlineCallbacks
    def test_made_for_the_messages_the_store_keeps(self):
        """
        A charger whose C{[charger.upstream]} was removed while messages for
        its back office were queued: the forwarding is made at start, and
        they are shown, kept for when it has one again.
        """
        from xxterocpp.store import Store
        from xxterocpp.store.upstream import QueuedRecord, UpstreamStore

        path = write_config(self)
        store = Store(load_config(path).storage.database, reactor)
        store.open()
        yield UpstreamStore(store).enqueue(QueuedRecord(
            1, "CP1", "MeterValues", 7, {"connectorId": 1, "transactionId": 7,
                                         "meterValue": []},
            datetime(2026, 1, 1, tzinfo=timezone.utc)))
        yield store.close()
        service = yield start_service(self, path)
        self.assertIsNotNone(service.upstream)
        status = service.upstream.status()["CP1"]
        self.assertEqual((status["link"], status["queue_depth"]), ("unconfigured", 1))

    @defer.inlineCallbacks
    def test_made_by_a_reload_that_gives_a_charger_one(self):
        """
        A reload that gives CP1 a back office makes the forwarding, which
        relays its calls and opens its uplink when it connects.
        """
        path = write_config(self)
        service = yield start_service(self, path)
        rewrite(path, BASE_CONFIG.replace(CP1_TABLE, CP1_FORWARDED, 1))
        self.assertTrue(service.reload())
        self.assertEqual(sorted(service.upstream.uplinks), ["CP1"])
        self.assertEqual(service.ocpp_factory.relay, service.upstream.handle)
        self.assertTrue(service.upstream.running)
        cp = yield connect_charger(service.url, "CP1")
        self.addCleanup(cp.close)
        yield cp.heartbeat()
        self.assertIn(service.upstream.status()["CP1"]["link"], ("waiting", "connecting"))


class OpenChargerTests(TestCase):
    """
    L{tap.open_chargers}: who is warned about at start.
    """

    def central(self, ocpp):
        from xxterocpp.domain.central import CentralSystem

        text = BASE_CONFIG.replace('interface = "127.0.0.1"', ocpp, 1)
        config = parse_config(text.format(database="state.sqlite3", password="secret-password!",
                                          knxd="", max_chargers=4))
        return config, CentralSystem(config, None, reactor)

    def test_chargers_without_password_on_a_reachable_interface(self):
        """
        On 0.0.0.0 CP1 and TWIN (no password) are open, C{RDAM 123} is not;
        a rotated key counts as a password.
        """
        config, central = self.central('interface = "0.0.0.0"')
        self.assertEqual(tap.open_chargers(config, central), ["CP1", "TWIN"])
        central.settings[("TWIN", "authorization_key")] = "0123456789ABCDEF"
        self.assertEqual(tap.open_chargers(config, central), ["CP1"])

    def test_none_on_loopback_or_with_client_certificates(self):
        for ocpp in ('interface = "::1"', 'interface = "localhost"'):
            config, central = self.central(ocpp)
            self.assertEqual(tap.open_chargers(config, central), [], ocpp)
        config, central = self.central('interface = "0.0.0.0"')
        profile3 = attr.evolve(config, ocpp=attr.evolve(config.ocpp, secure=True,
                                                        client_ca="/etc/ca.pem"))
        self.assertEqual(tap.open_chargers(profile3, central), [])


class DatabasePathTests(TestCase):
    """
    Where the state database goes.
    """

    def test_writable_directory_is_used(self):
        """
        The configured path when its directory can be written.
        """
        path = os.path.join(os.path.abspath(self.mktemp()), "state.sqlite3")
        self.assertEqual(tap.database_path(path), path)
        self.assertTrue(os.path.isdir(os.path.dirname(path)))

    def test_unwritable_directory_falls_back(self):
        """
        When the directory cannot be made (here: its parent is a file), the
        per-user state directory is used.
        """
        blocker = os.path.abspath(self.mktemp())
        with open(blocker, "w"):
            pass
        state = os.path.abspath(self.mktemp())
        self.patch(os, "environ", dict(os.environ, XDG_STATE_HOME=state))
        path = tap.database_path(os.path.join(blocker, "sub", "state.sqlite3"))
        self.assertEqual(path, os.path.join(state, "xxterocpp", "state.sqlite3"))
        self.assertTrue(os.path.isdir(os.path.dirname(path)))


class ReloadTests(TestCase):
    """
    "Load configuration": SIGHUP re-reads the file.
    """

    @defer.inlineCallbacks
    def test_reload_applies_changes_without_dropping_chargers_that_stay(self):
        """
        Added chargers may connect, removed ones are disconnected, tags are
        updated; a charger that stays keeps its connection and its state.
        """
        path = write_config(self)
        service = yield start_service(self, path)
        cp = yield connect_charger(service.url, "CP1")
        self.addCleanup(cp.close)
        twin = yield connect_charger(service.url, "TWIN")
        self.addCleanup(twin.close)
        start = yield cp.start_transaction(1, "04A1B2C3", 10)
        blocked = yield cp.authorize("BLOCKED1")
        self.assertEqual(blocked["idTagInfo"]["status"], "Blocked")
        try:
            yield connect_charger(service.url, "NEW1")
        except HandshakeRefused as e:
            self.assertEqual(e.status, 404)
        else:
            self.fail("NEW1 was served before the reload")

        rewrite(path, CHANGED_CONFIG)
        self.assertTrue(service.reload())

        yield twin.wait_closed()
        self.assertTrue(cp.is_open)
        self.assertNotIn("TWIN", service.central.chargers)
        new = yield connect_charger(service.url, "NEW1")
        self.addCleanup(new.close)
        result = yield new.heartbeat()
        self.assertIn("currentTime", result)
        unblocked = yield cp.authorize("BLOCKED1")
        self.assertEqual(unblocked["idTagInfo"]["status"], "Accepted")
        self.assertEqual(service.central.chargers["CP1"].connectors[1].transaction.id,
                         start["transactionId"])

    @defer.inlineCallbacks
    def test_bad_file_is_refused_and_running_configuration_stays(self):
        """
        A reload of a bad file changes nothing and logs the one line.
        """
        path = write_config(self)
        service = yield start_service(self, path)
        cp = yield connect_charger(service.url, "CP1")
        self.addCleanup(cp.close)
        with open(path, "a") as f:
            f.write("\n[[charger]]\nid = \"CP1\"\nmax_current = 99\n")
        self.assertFalse(service.reload())
        self.assertEqual(service.central.config.charger_ids(), ("CP1", "TWIN", "RDAM 123"))
        self.assertTrue(cp.is_open)
        result = yield cp.heartbeat()
        self.assertIn("currentTime", result)

    @defer.inlineCallbacks
    def reloaded_between_connections(self, setting, changed):
        """
        Start the service, connect CP1, reload with C{setting} of the base
        configuration changed to C{changed}, then connect TWIN.

        @return: a Deferred of CP1's simulated charger, the events logged by
            the reload, and the server protocols of CP1 and TWIN.
        """
        path = write_config(self)
        service = yield start_service(self, path)
        cp = yield connect_charger(service.url, "CP1")
        self.addCleanup(cp.close)
        self.assertIn(setting, BASE_CONFIG)
        rewrite(path, BASE_CONFIG.replace(setting, changed))
        with capturedLogs() as events:
            self.assertTrue(service.reload())
        twin = yield connect_charger(service.url, "TWIN")
        self.addCleanup(twin.close)
        return cp, events, server_protocol(service, "CP1"), server_protocol(service, "TWIN")

    @defer.inlineCallbacks
    def test_ping_interval_applies_to_chargers_that_connect_after(self):
        """
        A changed C{[ocpp] ping_interval} is said in one line and pings the
        chargers that connect after the reload; one connected before keeps
        its interval (none here) and its connection. It needs no restart.
        """
        cp, events, before, after = yield self.reloaded_between_connections(
            "ping_interval = 0", "ping_interval = 30")
        self.assertEqual((before.autoPingInterval, after.autoPingInterval), (0, 30))
        self.assertEqual(after.autoPingTimeout, 15)
        self.assertIsNone(before.autoPingPendingCall)
        self.assertIsNotNone(after.autoPingPendingCall)
        # Not left to the end of the test: on Autobahn's own timer.
        after._stop_pings()
        result = yield cp.heartbeat()
        self.assertIn("currentTime", result)
        [line] = [formatEvent(e) for e in events if "[ocpp] ping_interval" in formatEvent(e)]
        self.assertIn("from 0 (no pings) to 30 s", line)
        self.assertIn("the connected ones keep 0 (no pings) until they reconnect", line)
        self.assertEqual([e for e in events if "restart the service" in formatEvent(e)], [])

    @defer.inlineCallbacks
    def test_call_timeout_applies_to_chargers_that_connect_after(self):
        """
        A changed C{[ocpp] call_timeout} is said in one line: the chargers
        that connect after the reload wait as long as it says, the
        connected ones as before.
        """
        _, events, before, after = yield self.reloaded_between_connections(
            "call_timeout = 5", "call_timeout = 7")
        self.assertEqual((before.session.call_timeout, after.session.call_timeout), (5, 7))
        [line] = [formatEvent(e) for e in events if "[ocpp] call_timeout" in formatEvent(e)]
        self.assertIn("from 5 s to 7 s", line)
        self.assertIn("the connected ones keep 5 s until they reconnect", line)

    @defer.inlineCallbacks
    def test_settings_a_reload_cannot_apply_are_named(self):
        """
        Where the OCPP server and the web interface listen and the state
        database stay as they were at the start: a reload that changes them
        logs one warning naming them and asking for a restart, and the
        service goes on where it is.
        """
        path = write_config(self)
        service = yield start_service(self, path)
        changed = BASE_CONFIG.replace(
            'interface = "127.0.0.1"\nport = 0\n', 'interface = "localhost"\nport = 8017\n', 1
        ).replace("[web]\nport = 0", '[web]\ninterface = "localhost"\nport = 8089', 1)
        rewrite(path, changed, database=service.config.storage.database + "-new")
        with capturedLogs() as events:
            self.assertTrue(service.reload())
        warned = [formatEvent(e) for e in events if "restart the service" in formatEvent(e)]
        self.assertEqual(warned, ["[ocpp] interface, [ocpp] port, [web] interface, [web] port,"
                                  " [storage] database changed: restart the service to apply"])
        cp = yield connect_charger(service.url, "CP1")
        self.addCleanup(cp.close)
        result = yield cp.heartbeat()
        self.assertIn("currentTime", result)

    @defer.inlineCallbacks
    def test_sighup_held_while_loading_reloads_once_started(self):
        """
        A SIGHUP that L{early.hold_sighup} held while the service loaded
        makes it re-read the file once it has started: the file may have
        changed since it was read. A later one goes to the service's own
        handler.
        """
        self.addCleanup(signal.signal, signal.SIGHUP, signal.getsignal(signal.SIGHUP))
        early.sighup_held()
        early.hold_sighup()
        os.kill(os.getpid(), signal.SIGHUP)
        path = write_config(self)
        clock = ClockedReactor(self)
        service = yield start_service(self, path, on=clock)
        self.assertNotIn("NEW1", service.config.charger_ids())
        rewrite(path, CHANGED_CONFIG)
        yield deferLater(reactor, 0.05, lambda: None)
        self.assertIn("NEW1", service.config.charger_ids())
        self.assertFalse(early.sighup_held())

    @defer.inlineCallbacks
    def test_sighups_before_the_reload_runs_are_one(self):
        """
        The SIGHUPs that come before the reactor gets to the reload make
        one reload, not one each; one after it makes another.
        """
        path = write_config(self)
        service = yield start_service(self, path, on=ClockedReactor(self))
        self.addCleanup(signal.signal, signal.SIGHUP, signal.getsignal(signal.SIGHUP))
        self.assertEqual(signal.getsignal(signal.SIGHUP), service._sighup)
        rewrite(path, CHANGED_CONFIG)

        def reloads(events):
            return sum("configuration reloaded" in formatEvent(e) for e in events)

        with capturedLogs() as events:
            for _ in range(20):
                os.kill(os.getpid(), signal.SIGHUP)
            yield deferLater(reactor, 0.05, lambda: None)
            self.assertEqual(reloads(events), 1)
            self.assertIn("NEW1", service.config.charger_ids())
            os.kill(os.getpid(), signal.SIGHUP)
            yield deferLater(reactor, 0.05, lambda: None)
            self.assertEqual(reloads(events), 2)

    @defer.inlineCallbacks
    def test_sighup_just_before_the_stop_reloads_nothing(self):
        """
        A reload a SIGHUP asked for that the reactor gets to only once the
        stop began is not carried out: nothing to apply it to.
        """
        path = write_config(self)
        service = yield start_service(self, path, on=ClockedReactor(self))
        self.addCleanup(signal.signal, signal.SIGHUP, signal.getsignal(signal.SIGHUP))
        rewrite(path, CHANGED_CONFIG)
        with capturedLogs() as events:
            os.kill(os.getpid(), signal.SIGHUP)
            stopped = service.stopService()
            yield deferLater(reactor, 0.05, lambda: None)
            yield stopped
        texts = [formatEvent(e) for e in events]
        self.assertIn("the service stops: the configuration is not reloaded", texts)
        self.assertFalse([t for t in texts if "configuration reloaded" in t])
        self.assertNotIn("NEW1", service.config.charger_ids())

    @defer.inlineCallbacks
    def test_sighup_reloads_the_running_process(self):
        """
        A real SIGHUP to the twistd process reloads; a new charger connects.
        """
        path = write_config(self)
        process = ServiceProcess(path)
        kill_on_cleanup(self, process)
        yield process.start()
        cp = yield connect_charger(process.url, "CP1")
        self.addCleanup(cp.close)
        rewrite(path, CHANGED_CONFIG)
        yield process.signal("HUP")
        yield process.wait_for_output(b"configuration reloaded")
        new = yield connect_charger(process.url, "NEW1")
        self.addCleanup(new.close)
        result = yield new.boot()
        self.assertEqual(result["status"], "Accepted")
        self.assertTrue(cp.is_open)
        yield cp.close()
        yield new.close()
        yield process.stop()
