"""
The state database's own faults, on the real service process: a damaged
file at start (garbage, a truncated database, a zero-length file) and a disk
that fills up in the middle of a charging session.
"""

import errno
import glob
import os
import sqlite3
from datetime import datetime, timezone

from twisted.internet import defer, reactor, task, utils
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, TestCase

from tests.service import MAIN, ServiceProcess, kill_on_cleanup, write_config
from tests.sim import connect_charger
from xxterocpp.store import Store, TransactionRecord

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=timezone.utc)


def read_transactions(path):
    """
    C{(id, meter_start, meter_stop)} of every transaction in a state
    database that no service has open.
    """
    db = sqlite3.connect(path)
    try:
        return db.execute(
            "SELECT id, meter_start, meter_stop FROM transactions ORDER BY id").fetchall()
    finally:
        db.close()


def output_lines(service, text):
    """
    @return: the lines the service printed that contain C{text} (bytes).
    """
    return [line for line in service.output.splitlines() if text in line]


def fill_up(directory):
    """
    Fill the file system of C{directory} up to the last byte.

    @return: the name of the file that fills it.
    """
    filler = os.path.join(directory, "filler")
    with open(filler, "wb", buffering=0) as f:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
    return filler


class DamagedDatabaseTests(TestCase):
    """
    A database file that is damaged at start is moved aside, with one log
    line, and the service serves chargers with a fresh one.
    """

    timeout = 60

    def setUp(self):
        self.config = write_config(self)
        self.database = os.path.join(os.path.dirname(self.config), "state.sqlite3")

    @defer.inlineCallbacks
    def serve_a_charger(self):
        """
        Start the service and run a charging session on it.

        @return: the started service and the transactionId it handed out.
        """
        service = ServiceProcess(self.config)
        kill_on_cleanup(self, service)
        yield service.start()
        cp = yield connect_charger(service.url, "CP1")
        self.addCleanup(cp.close)
        yield cp.boot()
        started = yield cp.start_transaction(1, "04A1B2C3", 1000)
        yield cp.stop_transaction(started["transactionId"], 1500)
        yield cp.close()
        return service, started["transactionId"]

    def moved_aside(self):
        """
        @return: the names of the database files moved aside (their -wal
            and -shm files, if any, next to them).
        """
        return sorted(name for name in glob.glob(self.database + ".corrupt-*")
                      if not name.endswith(("-wal", "-shm")))

    @defer.inlineCallbacks
    def test_garbage_file_is_moved_aside(self):
        """
        A file that is not a database at all is renamed to
        C{<name>.corrupt-<UTC time>}, one error line names it, and the
        service hands out transactions from a fresh file.
        """
        garbage = b"this is not an SQLite database\n" * 500
        with open(self.database, "wb") as f:
            f.write(garbage)
        service, tx = yield self.serve_a_charger()
        [old] = self.moved_aside()
        with open(old, "rb") as f:
            self.assertEqual(f.read(), garbage)
        [line] = output_lines(service, b"moved it aside")
        self.assertIn(old.encode(), line)
        self.assertIn(b"not a database", line)
        yield service.stop()
        self.assertEqual(read_transactions(self.database), [(tx, 1000, 1500)])

    @defer.inlineCallbacks
    def test_truncated_database_is_moved_aside_and_ids_go_on(self):
        """
        A database cut short (a power cut while the card wrote it) fails
        SQLite's check; it is moved aside, and the transactionIds its
        readable part still shows are not handed out again.
        """
        store = Store(self.database, reactor)
        store.open()
        yield defer.gatherResults([
            store.insert_transaction(TransactionRecord(
                n, "CP1", 1, "04A1B2C3", T0, 0, None, "Accepted", f"start-{n}"))
            for n in range(1, 301)])
        yield store.close()
        size = os.path.getsize(self.database)
        os.truncate(self.database, size // 2)
        service, tx = yield self.serve_a_charger()
        [old] = self.moved_aside()
        self.assertEqual(os.path.getsize(old), size // 2)
        [line] = output_lines(service, b"moved it aside")
        self.assertIn(b"damaged", line)
        self.assertGreater(tx, 300)
        yield service.stop()
        self.assertEqual(read_transactions(self.database), [(tx, 1000, 1500)])

    @defer.inlineCallbacks
    def test_zero_length_file_is_a_fresh_database(self):
        """
        A zero-length file (created, never written) is just a new database:
        nothing is moved aside or logged as damaged.
        """
        open(self.database, "wb").close()
        service, tx = yield self.serve_a_charger()
        self.assertEqual(self.moved_aside(), [])
        self.assertEqual(output_lines(service, b"damaged"), [])
        self.assertEqual(tx, 1)
        yield service.stop()


class FullDiskTests(TestCase):
    """
    The file system of the database fills up during a session (a tmpfs of
    its own, mounted for the test).
    """

    timeout = 90

    @defer.inlineCallbacks
    def setUp(self):
        self.mount = os.path.abspath(self.mktemp())
        os.makedirs(self.mount)
        code = yield utils.getProcessValue(
            "/bin/mount", ["-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", self.mount])
        if code != 0:
            raise SkipTest("cannot mount a tmpfs to fill up (needs root and mount"
                           " permission)")
        self.addCleanup(utils.getProcessValue, "/bin/umount", ["-l", self.mount])
        self.database = os.path.join(self.mount, "state.sqlite3")
        self.config = write_config(self, database=self.database)

    def fill(self):
        """
        Fill the file system up to the last byte (L{fill_up}).

        @return: the name of the file that fills it.
        """
        return fill_up(self.mount)

    @defer.inlineCallbacks
    def fill_until_full(self, service, cp):
        """
        L{fill}, then, since a commit may still fit in the last page of the
        write-ahead log, StopTransactions of C{cp} for transactions it
        never started (a row, a commit each; a boot with a new nameplate
        commits once a minute) until the service says one cannot be
        committed. Their answers wait for their commits: not waited for.

        @return: the name of the file that fills the file system.
        """
        filler = self.fill()
        for n in range(50):
            if b"cannot commit" in service.output:
                break
            cp.call("StopTransaction", {"transactionId": 900_000 + n, "meterStop": n,
                                        "timestamp": "2024-05-01T08:00:00.000Z"},
                    timeout=60).addErrback(lambda failure: None)
            yield task.deferLater(reactor, 0.05, lambda: None)
        return filler

    @defer.inlineCallbacks
    def test_start_is_answered_only_once_stored(self):
        """
        While the disk is full, a StartTransaction is not answered, other
        calls are, and one line says what to do. Once space is back the
        store commits by itself, the answer follows, and the session is
        complete in the file after a restart.
        """
        service = ServiceProcess(self.config)
        kill_on_cleanup(self, service)
        yield service.start()
        cp = yield connect_charger(service.url, "CP1")
        self.addCleanup(cp.close)
        yield cp.boot()
        filler = yield self.fill_until_full(service, cp)
        start = cp.call("StartTransaction", {
            "connectorId": 1, "idTag": "04A1B2C3", "meterStart": 1000,
            "timestamp": "2024-05-01T08:00:00.000Z"}, timeout=60)
        yield service.wait_for_output(b"cannot commit")
        yield cp.heartbeat()
        yield cp.status(1, "Charging")
        yield cp.meter_values(1, None, energy_wh=1200, currents=(16, 16, 16))
        self.assertFalse(start.called)
        os.unlink(filler)
        started = yield start
        self.assertIn(b"commits work again", service.output)
        [line] = output_lines(service, b"cannot commit")
        self.assertIn(b"Free disk space", line)
        tx = started["transactionId"]
        yield cp.meter_values(1, tx, energy_wh=2500, currents=(16, 16, 16))
        yield cp.stop_transaction(tx, 3000)
        yield service.signal("KILL")
        yield cp.wait_closed()

        yield service.start()
        yield service.stop()
        self.assertEqual(read_transactions(self.database), [(tx, 1000, 3000)])


    @defer.inlineCallbacks
    def test_stopped_while_a_stop_waits_leaves_it_unanswered(self):
        """
        Stopped (SIGTERM) while the disk is full and a StopTransaction waits
        for its commit: the charger gets no answer (it would drop the stop
        from its queue), the log says writes are lost; after a start with
        space again, the charger's StopTransaction sent again books the
        session with its energy.
        """
        service = ServiceProcess(self.config)
        kill_on_cleanup(self, service)
        yield service.start()
        cp = yield connect_charger(service.url, "CP1")
        yield cp.boot()
        started = yield cp.start_transaction(1, "04A1B2C3", 1000)
        tx = started["transactionId"]
        filler = yield self.fill_until_full(service, cp)
        stop = {"transactionId": tx, "meterStop": 4000, "timestamp": "2026-05-01T09:00:00.000Z"}
        answers = []
        cp.call("StopTransaction", stop, timeout=60).addBoth(answers.append)
        yield service.wait_for_output(b"cannot commit")
        yield cp.heartbeat()
        self.assertEqual(answers, [])
        yield service.signal("TERM")
        yield cp.wait_closed()
        self.assertEqual(len(answers), 1)
        self.assertIsInstance(answers[0], Failure)
        self.assertIn(b"not committed; they are lost", service.output)

        os.unlink(filler)
        yield service.start()
        cp = yield connect_charger(service.url, "CP1")
        self.addCleanup(cp.close)
        yield cp.call("StopTransaction", stop)
        yield cp.close()
        yield service.stop()
        self.assertEqual(read_transactions(self.database), [(tx, 1000, 4000)])


@defer.inlineCallbacks
def mount(testcase, *args):
    """
    Run C{mount ARGS} (skip the test if that is not allowed); the mount
    point, the last argument, is unmounted when the test ends.
    """
    code = yield utils.getProcessValue("/bin/mount", args)
    if code != 0:
        raise SkipTest("cannot mount (needs root and mount permission)")
    testcase.addCleanup(utils.getProcessValue, "/bin/umount", ["-l", args[-1]])


@defer.inlineCallbacks
def exited(service, timeout=30):
    """
    @return: a Deferred firing with the exit of C{service} once it has
        ended by itself, failing if it still runs after C{timeout} s.
    """
    for _ in range(int(timeout / 0.05)):
        if service.exit is not None:
            return service.exit
        yield task.deferLater(reactor, 0.05, lambda: None)
    raise AssertionError(f"still running; output:\n{service.output.decode()}")


class ReadOnlyAtStartTests(TestCase):
    """
    The file system of the database is read-only when the service starts
    (ext4 remounts itself read-only after an I/O error): a tmpfs of its own.
    """

    timeout = 90

    @defer.inlineCallbacks
    def test_no_other_database_is_used(self):
        """
        The service, as the unit starts it, ends with the store's line and
        a non-zero status (systemd starts it again) rather than keeping its
        state elsewhere: a fresh database there would hand out
        transactionIds the chargers know and forget the open sessions. Once
        the file system is writable again it starts with its sessions.
        """
        disk = os.path.abspath(self.mktemp())
        os.makedirs(disk)
        yield mount(self, "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", disk)
        database = os.path.join(disk, "state.sqlite3")
        store = Store(database, reactor)
        store.open()
        yield defer.gatherResults([
            store.insert_transaction(TransactionRecord(
                n, "CP1", 1, "04A1B2C3", T0, 0, None, "Accepted", f"start-{n}"))
            for n in (1, 2, 3)])
        yield store.close()
        code = yield utils.getProcessValue("/bin/mount", ["-o", "remount,ro", disk])
        self.assertEqual(code, 0)
        elsewhere = os.path.abspath(self.mktemp())
        service = ServiceProcess(write_config(self, database=database), command=MAIN,
                                 env={"XDG_STATE_HOME": elsewhere})
        kill_on_cleanup(self, service)
        service.start().addErrback(lambda failure: None)
        exit = yield exited(service)
        self.assertNotEqual(exit.exitCode, 0)
        [line] = output_lines(service, b"cannot open the state database")
        self.assertIn(database.encode(), line)
        self.assertFalse(os.path.exists(elsewhere))

        code = yield utils.getProcessValue("/bin/mount", ["-o", "remount,rw", disk])
        self.assertEqual(code, 0)
        yield service.start()
        cp = yield connect_charger(service.url, "TWIN")
        self.addCleanup(cp.close)
        started = yield cp.start_transaction(1, "04A1B2C3", 500)
        self.assertEqual(started["transactionId"], 4)
        yield cp.close()
        yield service.stop()


class VanishingDiskTests(TestCase):
    """
    The disk of the database goes away under the running service (unmounted
    lazily, as a failing card or a pulled stick can be) and comes back: a
    tmpfs of its own, bind-mounted where the configuration says.
    """

    timeout = 90

    def mount(self, *args):
        return mount(self, *args)

    @defer.inlineCallbacks
    def test_stop_waits_for_the_disk_to_be_back(self):
        """
        A StopTransaction that comes while the disk is gone is not
        answered, and nothing is written to the directory that the path
        leads to meanwhile (the mount point's own, on another file system:
        a file there would be hidden once the disk is back); once it is
        back the stop is committed to the database on it, and answered.
        """
        disk = os.path.abspath(self.mktemp())
        os.makedirs(disk)
        yield self.mount("-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", disk)
        mount_point = os.path.abspath(self.mktemp())
        os.makedirs(mount_point)
        yield self.mount("--bind", disk, mount_point)
        database = os.path.join(mount_point, "state.sqlite3")
        service = ServiceProcess(write_config(self, database=database))
        kill_on_cleanup(self, service)
        yield service.start()
        cp = yield connect_charger(service.url, "CP1")
        self.addCleanup(cp.close)
        yield cp.boot()
        started = yield cp.start_transaction(1, "04A1B2C3", 1000)
        tx = started["transactionId"]

        code = yield utils.getProcessValue("/bin/umount", ["-l", mount_point])
        self.assertEqual(code, 0)
        stop = cp.call("StopTransaction", {
            "transactionId": tx, "meterStop": 4000,
            "timestamp": "2026-05-01T09:00:00.000Z"}, timeout=60)
        yield service.wait_for_output(b"cannot commit")
        [line] = output_lines(service, b"cannot commit")
        self.assertIn(b"file system", line)
        yield cp.heartbeat()
        self.assertFalse(stop.called)
        self.assertEqual(os.listdir(mount_point), [])

        yield self.mount("--bind", disk, mount_point)
        yield stop
        yield service.wait_for_output(b"commits work again")
        self.assertEqual(output_lines(service, b"rebuilt"), [])
        yield service.signal("KILL")
        yield cp.wait_closed()
        self.assertEqual(read_transactions(os.path.join(disk, "state.sqlite3")),
                         [(tx, 1000, 4000)])
