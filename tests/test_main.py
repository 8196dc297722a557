"""
Tests for L{xxterocpp.__main__}: C{python3 -m xxterocpp --config FILE}, as
the systemd unit starts the service.
"""

import linecache
import os
import shutil
import socket
import sqlite3
import sys
import tempfile

from twisted.internet import defer, reactor, task, utils
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import TestCase

from tests.service import (
    LOOPBACK_CONFIG, MAIN, ROOT, ServiceProcess, kill_on_cleanup, write_config)
from tests.sim import connect_charger
from tests.test_tap import CHANGED_CONFIG, rewrite


def run_main(*args):
    """
    @return: a Deferred firing with C{(out, err, code)} of C{python -m
        xxterocpp ARGS} run to its end.
    """
    return utils.getProcessOutputAndValue(
        sys.executable, [*MAIN, *args], env=dict(os.environ, PYTHONPATH=ROOT), path=ROOT,
        reactor=reactor)


class MainTests(TestCase):
    """
    The service run by C{python -m xxterocpp}.
    """

    @defer.inlineCallbacks
    def test_serves_reloads_and_stops_cleanly(self):
        """
        It serves chargers, reloads its configuration on SIGHUP, and on
        SIGTERM shuts down and exits 0, logging to stdout without a
        traceback.
        """
        path = write_config(self)
        process = ServiceProcess(path, command=MAIN)
        kill_on_cleanup(self, process)
        yield process.start()
        cp = yield connect_charger(process.url, "CP1")
        self.addCleanup(cp.close)
        self.assertEqual((yield cp.boot())["status"], "Accepted")
        rewrite(path, CHANGED_CONFIG)
        yield process.signal("HUP")
        yield process.wait_for_output(b"configuration reloaded")
        new = yield connect_charger(process.url, "NEW1")
        self.addCleanup(new.close)
        self.assertEqual((yield new.boot())["status"], "Accepted")
        yield cp.close()
        yield new.close()
        exit = yield process.signal("TERM")
        self.assertEqual(exit.exitCode, 0)
        self.assertIn(b"Main loop terminated", process.output)
        self.assertNotIn(b"Traceback", process.output)

    @defer.inlineCallbacks
    def test_bad_config_exits_with_one_line(self):
        """
        A bad configuration file: a non-zero status and one line naming the
        file, the key and the problem.
        """
        path = write_config(self, LOOPBACK_CONFIG.replace("port = 0", "port = -1", 1))
        out, err, code = yield run_main("--config", path)
        self.assertNotEqual(code, 0)
        lines = err.decode().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(lines[0].startswith(f"xxterocpp: {path}: ocpp.port"), lines[0])

    @defer.inlineCallbacks
    def test_unknown_option_exits_with_one_line(self):
        """
        An unknown option: a non-zero status and one line.
        """
        out, err, code = yield run_main("--conifg", "x.toml")
        self.assertNotEqual(code, 0)
        lines = err.decode().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("conifg", lines[0])

    @defer.inlineCallbacks
    def test_port_in_use_exits_with_one_line(self):
        """
        A taken OCPP port ends it with a non-zero status and one line naming
        the port, no traceback: the early bind (L{xxterocpp.early}) gives
        up and the service's own listen reports it.
        """
        first = ServiceProcess(write_config(self), command=MAIN)
        kill_on_cleanup(self, first)
        yield first.start()
        taken = int(first.url.rsplit(":", 1)[1].strip("/"))
        path = write_config(self, LOOPBACK_CONFIG.replace("port = 0", f"port = {taken}", 1))
        out, err, code = yield run_main("--config", path)
        self.assertNotEqual(code, 0)
        output = (out + err).decode()
        self.assertIn(f"xxterocpp: Couldn't listen on 127.0.0.1:{taken}:", output)
        self.assertNotIn("Traceback", output)
        yield first.stop()

    @defer.inlineCallbacks
    def test_state_database_it_cannot_open_exits_with_one_line(self):
        """
        A state database it cannot use (written by a newer version) ends
        it with a non-zero status and the store's one line saying what to
        do, no traceback: it must not go on serving chargers without its
        state (transactionIds from 1 again), and systemd starts it again.
        """
        path = write_config(self)
        database = os.path.join(os.path.dirname(path), "state.sqlite3")
        db = sqlite3.connect(database)
        db.execute("PRAGMA user_version = 99")
        db.close()
        process = ServiceProcess(path, command=MAIN)
        kill_on_cleanup(self, process)
        process.start().addErrback(lambda failure: None)
        for _ in range(600):
            if process.exit is not None:
                break
            yield task.deferLater(reactor, 0.05, lambda: None)
        self.assertIsNotNone(process.exit, process.output.decode())
        self.assertNotEqual(process.exit.exitCode, 0)
        output = process.output.decode()
        self.assertIn(f"xxterocpp: the state database {database} has schema version 99", output)
        self.assertNotIn("Traceback", output)


class NotifyReadyTests(TestCase):
    """
    L{xxterocpp.__main__.notify_ready}: systemd's C{READY=1}, for the
    unit's C{Type=notify}, on a real datagram socket.
    """

    def listening(self, abstract=False):
        """
        @return: C{(socket, NOTIFY_SOCKET value)} of a datagram socket the
            test reads, at a path or an abstract name.
        """
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(s.close)
        if abstract:
            name = f"xxterocpp-test-{os.getpid()}-{id(self)}"
            s.bind("\0" + name)
            return s, "@" + name
        # Short: a socket's path has at most 107 bytes.
        directory = tempfile.mkdtemp(prefix="xxt")
        self.addCleanup(shutil.rmtree, directory)
        path = os.path.join(directory, "notify")
        s.bind(path)
        return s, path

    def test_path_and_abstract_name(self):
        from xxterocpp.__main__ import notify_ready

        for abstract in (False, True):
            s, address = self.listening(abstract)
            self.assertTrue(notify_ready({"NOTIFY_SOCKET": address}))
            s.settimeout(5)
            self.assertEqual(s.recv(100), b"READY=1")

    def test_not_run_by_systemd(self):
        from xxterocpp.__main__ import notify_ready

        s, address = self.listening()
        self.assertFalse(notify_ready({}))
        self.assertFalse(notify_ready({"NOTIFY_SOCKET": ""}))
        s.setblocking(False)
        self.assertRaises(BlockingIOError, s.recv, 100)

    def test_socket_gone_is_one_warning(self):
        from xxterocpp.__main__ import notify_ready

        s, address = self.listening()
        s.close()
        os.unlink(address)
        with capturedLogs() as events:
            self.assertFalse(notify_ready({"NOTIFY_SOCKET": address}))
        self.assertEqual(len(events), 1)
        self.assertIn("systemd was not told that the service started", formatEvent(events[0]))

    @defer.inlineCallbacks
    def test_the_program_tells_once_it_serves(self):
        """
        C{python3 -m xxterocpp} under a C{NOTIFY_SOCKET} says C{READY=1}
        once, after its port listens: a charger is served then.
        """
        s, address = self.listening(abstract=True)
        s.setblocking(False)
        process = ServiceProcess(write_config(self), command=MAIN, env={"NOTIFY_SOCKET": address})
        kill_on_cleanup(self, process)
        started = process.start()
        for _ in range(600):
            try:
                message = s.recv(100)
                break
            except BlockingIOError:
                self.assertIsNone(process.exit, process.output.decode())
                yield task.deferLater(reactor, 0.05, lambda: None)
        else:
            self.fail("no READY=1 within 30 s")
        self.assertEqual(message, b"READY=1")
        url = yield started
        cp = yield connect_charger(url, "CP1")
        self.addCleanup(cp.close)
        self.assertEqual((yield cp.boot())["status"], "Accepted")
        yield cp.close()
        exit = yield process.stop()
        self.assertEqual(exit.exitCode, 0, process.output.decode())
        self.assertRaises(BlockingIOError, s.recv, 100)


class GeneratedSourcesTests(TestCase):
    """
    L{xxterocpp.__main__.forget_generated_sources}: the service keeps no
    source of attrs' generated methods.
    """

    def setUp(self):
        kept = linecache.cache
        self.addCleanup(setattr, linecache, "cache", kept)

    def test_none_kept_and_other_sources_still_read(self):
        """
        Those kept before are dropped and later ones not kept; a class made
        afterwards works, and the source of a real file is still read (for
        tracebacks).
        """
        import attr

        from xxterocpp.__main__ import forget_generated_sources

        @attr.s(frozen=True, slots=True)
        class Before:
            value = attr.ib()

        self.assertTrue([n for n in linecache.cache if n.startswith("<attrs generated")])
        forget_generated_sources()

        @attr.s(frozen=True, slots=True)
        class After:
            value = attr.ib()

        self.assertEqual([n for n in linecache.cache if n.startswith("<attrs generated")], [])
        self.assertEqual((After(1), Before(2).value), (After(1), 2))
        self.assertNotEqual(After(1), After(2))
        source = self.mktemp() + ".py"
        with open(source, "w") as f:
            f.write("answer = 42\n")
        self.assertEqual(linecache.getline(source, 1), "answer = 42\n")


class SettleTests(TestCase):
    """
    L{xxterocpp.__main__.settle}: the end of the start-up of C{python3 -m
    xxterocpp}, which loads with the cyclic collector off.
    """

    def setUp(self):
        import gc

        self.gc = gc
        enabled = gc.isenabled()
        self.addCleanup(lambda: gc.enable() if enabled else gc.disable())
        self.addCleanup(gc.unfreeze)

    def test_collects_then_sets_aside_what_start_up_made(self):
        """
        With the collector off (as the module turns it off when run), the
        garbage of the start-up is collected, what is alive is set aside,
        and collection is on again.
        """
        from xxterocpp.__main__ import settle

        gc = self.gc
        gc.disable()
        cycle = []
        cycle.append(cycle)
        alive = [cycle]
        del cycle
        garbage = []
        garbage.append(garbage)
        witness = _Witness()
        garbage.append(witness)
        del garbage, witness
        self.assertTrue(_Witness.alive)
        settle()
        self.assertTrue(gc.isenabled())
        self.assertFalse(_Witness.alive)
        self.assertGreater(gc.get_freeze_count(), 0)
        # Set aside: no longer among the objects the collector walks.
        self.assertFalse(any(o is alive[0] for o in gc.get_objects()))

    @defer.inlineCallbacks
    def test_run_as_the_program_loads_with_the_collector_off(self):
        """
        Run as C{python3 -m xxterocpp}, the module turns the collector off
        before it loads the service (and main, here stopped by --help at
        once, would turn it on again in settle); imported, it leaves it on.
        """
        probe = (
            "import gc, runpy, sys\n"
            "sys.argv = ['xxterocpp', '--help']\n"
            "try:\n"
            "    runpy.run_module('xxterocpp', run_name='__main__')\n"
            "except SystemExit:\n"
            "    pass\n"
            "print('run', gc.isenabled())\n"
            "gc.enable()\n"
            "import xxterocpp.__main__\n"
            "print('imported', gc.isenabled())\n")
        out, err, code = yield utils.getProcessOutputAndValue(
            sys.executable, ["-c", probe], env=dict(os.environ, PYTHONPATH=ROOT), path=ROOT,
            reactor=reactor)
        self.assertEqual((code, out.decode().splitlines()[-2:]),
                         (0, ["run False", "imported True"]), err)

    def test_later_once_the_waiting_chargers_are_served(self):
        """
        The program settles L{SETTLE_AFTER} seconds after the reactor
        started, not before it reads the connections queued while it
        loaded.
        """
        from xxterocpp.__main__ import SETTLE_AFTER, settle_later

        gc = self.gc
        gc.disable()
        clock = task.Clock()
        call = settle_later(clock)
        self.assertEqual(call.getTime(), SETTLE_AFTER)
        self.assertGreaterEqual(SETTLE_AFTER, 0.5)
        clock.advance(SETTLE_AFTER - 0.01)
        self.assertFalse(gc.isenabled())
        clock.advance(0.01)
        self.assertTrue(gc.isenabled())
        self.assertGreater(gc.get_freeze_count(), 0)

    def test_nothing_when_collecting_already(self):
        """
        A service run from a test (the collector on) is left alone: nothing
        is set aside.
        """
        from xxterocpp.__main__ import settle

        gc = self.gc
        gc.enable()
        gc.unfreeze()
        settle()
        self.assertEqual(gc.get_freeze_count(), 0)
        self.assertTrue(gc.isenabled())


class _Witness:
    """
    An object whose finalizer tells when it is freed.
    """

    alive = False

    def __init__(self):
        _Witness.alive = True

    def __del__(self):
        _Witness.alive = False
