# -*- test-case-name: tests.test_store -*-
"""
The worker thread's side of the store: the only connection to the SQLite
file, the checks that it still writes to the file at its path, and the
transactions run on it. Everything here runs in that one thread.
"""

import errno
import os
import sqlite3
from stat import S_IMODE

from ._damage import (
    DamagedDatabase,
    check,
    move_aside,
    reported_as_damage,
    salvage_counter,
)
from .errors import StoreError
from .records import TRANSACTION_COLUMNS, transaction_from_row
from .schema import advance_transaction_counter, migrate, read_transaction_counter

#: The page size of a new file: a commit writes each page it changed to the
#: write-ahead log, and most commits change one row in a few pages, so
#: small pages write less (SQLite's default is 4096).
PAGE_SIZE = 1024

#: The page cache of the connection, in KiB. SQLite's default (2,000 KiB)
#: fills as the file grows, with pages no commit touches again: the store
#: appends sessions and rewrites a few rows per charger, and what it reads
#: besides (start-up, the status page) is read once, from the operating
#: system's cache. A file outgrows 256 KiB within its first thousand or so
#: sessions; from then on the connection's memory is as large as it gets
#: (README.md, Performance: the soak).
CACHE_KIB = 256

# Errors that come from one write's own data (a duplicate id, a value SQLite
# cannot bind): retrying cannot help, so that write alone is rejected and the
# rest of its batch goes on. Every other sqlite3.Error (read-only, disk full,
# I/O error, locked) is about the database and is retried.
WRITE_BUGS = (
    sqlite3.IntegrityError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    sqlite3.DataError,
    ValueError,
    TypeError,
    OverflowError,
)


def execute(db, sql, params):
    """
    A write of one statement, for a batch (run in the worker thread).
    """
    db.execute(sql, params)


def _make_private(path):
    """
    Create the database file C{path} readable and writable by its owner
    only, whatever the umask, and take the group and other permissions off
    an existing one and off its -wal and -shm files: it holds the chargers'
    authorization keys. The -wal and -shm files SQLite creates get the
    database file's mode.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        # A umask such as 0o277 takes the owner's own bits off too.
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
    for name in (path, path + "-wal", path + "-shm"):
        try:
            mode = S_IMODE(os.stat(name).st_mode)
        except FileNotFoundError:
            continue
        if mode & ~0o600:
            os.chmod(name, mode & 0o600)


def _identity(path):
    """
    @return: what tells the file at C{path} from a file that replaced it,
        L{None} if there is none.
    """
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


class Worker:
    """
    The connection to the state database, for the worker thread only.

    @ivar path: the database file.
    @ivar db: the connection, L{None} until L{connect}.
    """

    def __init__(self, path, busy_timeout):
        """
        @param busy_timeout: seconds to wait for another process's lock on
            the file before a commit counts as failed.
        """
        self.path = path
        self.db = None
        self._busy_timeout = busy_timeout
        self._file_identity = None
        self._companions = {}
        # The transaction counter of a file that was replaced: the next
        # file's counter is raised to it, whenever that file can be opened.
        self._transaction_id_floor = 0

    def connect(self):
        """
        Open, create or migrate the file at C{path}. A file that is not a
        sound SQLite database is moved aside first (L{move_aside}) and a
        fresh one created; its transaction counter, as far as it can be
        read, carries over.

        @return: a note for the log when a damaged file was moved aside,
            else L{None}.
        """
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        if os.path.isdir(self.path):
            raise StoreError(
                f"{self.path} is a directory, not the state database: move it away or"
                " configure [storage] database as a file in it"
            )
        try:
            self._open()
            return None
        except DamagedDatabase as e:
            damage = e
        self._open()
        return (
            f"the database file was damaged ({damage.reason}); moved it aside to"
            f" {damage.moved_to} and started a fresh one, transactionIds go on"
            f" after {self._transaction_id_floor}; the old sessions may be read"
            f" with sqlite3 {damage.moved_to} .recover"
        )

    def _open(self):
        """
        Open the file at C{path} and bring it to the latest schema.

        @raise DamagedDatabase: the file is damaged; its transaction counter
            is taken over, as far as it can be read, and it is moved aside.
        """
        _make_private(self.path)
        db = sqlite3.connect(
            self.path,
            # Transactions are begun and committed explicitly, per batch.
            isolation_level=None,
            timeout=self._busy_timeout,
        )
        try:
            with reported_as_damage():
                # Before WAL: the log's index then lives in this process's
                # memory, not in a -shm file rewritten at every commit; no
                # other process can open the file meanwhile.
                db.execute("PRAGMA locking_mode = EXCLUSIVE")
                # Takes effect only on a file that has no tables yet.
                db.execute(f"PRAGMA page_size = {PAGE_SIZE}")
                db.execute("PRAGMA journal_mode = WAL")
                # FULL: the WAL is fsynced at every commit, i.e. once per
                # batch.
                db.execute("PRAGMA synchronous = FULL")
                db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
                check(db)
                migrate(db, self.path)
                if self._transaction_id_floor:
                    advance_transaction_counter(db, self._transaction_id_floor)
            stat = os.stat(self.path)
        except DamagedDatabase as e:
            self._transaction_id_floor = max(
                self._transaction_id_floor, salvage_counter(db)
            )
            # Before closing: SQLite may delete the -wal file when the
            # connection closes, and it belongs with the damaged file.
            e.moved_to = move_aside(self.path)
            db.close()
            raise
        except BaseException:
            db.close()
            raise
        self.db = db
        self._file_identity = (stat.st_dev, stat.st_ino)
        # SQLite opens them by name next to the file and keeps them open.
        self._companions = {
            name: _identity(name) for name in (self.path + "-wal", self.path + "-shm")
        }

    def check_file(self):
        """
        Make sure the connection still writes to the file at C{path}. On
        Linux a deleted database keeps accepting commits that vanish at the
        next restart, so a deleted file is rebuilt from the still-open
        connection, and a replaced one (a restored backup) is adopted.
        While the path leads to another file system than the open file
        (its disk unmounted), nothing is rebuilt there: the commit fails
        and is retried until the disk is back.

        @return: a note for the log when the file was rebuilt or adopted,
            or a damaged one moved aside (see L{connect}).
        @raise OSError: the file is gone with its file system, or it could
            not be rebuilt (the open connection is kept for the retry).
        """
        if self.db is None:
            return self.connect()
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            stat = None
        if stat is not None and (stat.st_dev, stat.st_ino) == self._file_identity:
            return None
        if stat is None:
            self._rebuild()
            note = "the database file was deleted; rebuilt it from the open connection"
        else:
            note = "the database file was replaced; now using the new file"
            # Whatever the new file says, never hand out an id again.
            self._transaction_id_floor = max(
                self._transaction_id_floor, read_transaction_counter(self.db)
            )
            old, self.db = self.db, None
            old.close()
            self._remove_companions()
        damaged = self.connect()
        return note if damaged is None else f"{note}; {damaged}"

    def _rebuild(self):
        """
        Write the database of the open connection to a new file at C{path}
        (the old one was deleted, maybe with its directory) and close the
        connection. Until that has worked the connection stays open: it
        holds the only copy.

        @raise OSError: the directory of C{path} is on another file system
            than the deleted file (the disk is gone, the path leads to the
            mount point's directory), or the new file cannot be written.
        """
        directory = os.path.dirname(os.path.abspath(self.path))
        existing = directory
        while not os.path.isdir(existing):
            existing = os.path.dirname(existing)
        if os.stat(existing).st_dev != self._file_identity[0]:
            raise OSError(
                errno.ENODEV,
                f"the database file is gone with its file system ({existing} is on another"
                " one now: the disk unmounted?); waiting for it to be back",
            )
        os.makedirs(directory, exist_ok=True)
        rebuilt = self.path + ".rebuilt"
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            # Private before the keys are copied into it.
            _make_private(rebuilt)
            target = sqlite3.connect(rebuilt)
            try:
                self.db.backup(target)
            finally:
                target.close()
            os.rename(rebuilt, self.path)
        except BaseException:
            # A partial copy would only take space from the next attempt.
            try:
                os.unlink(rebuilt)
            except OSError:
                pass
            raise
        old, self.db = self.db, None
        old.close()
        self._remove_companions()

    def _remove_companions(self):
        """
        Remove the -wal and -shm files the closed connection left next to a
        database file that was deleted or replaced: SQLite neither
        checkpoints nor deletes the WAL of a database that moved, and would
        replay it into the next file at the path. A -wal or -shm file put
        there with the new file is kept.
        """
        for name, identity in self._companions.items():
            if identity is not None and _identity(name) == identity:
                try:
                    os.unlink(name)
                except FileNotFoundError:
                    pass

    def commit(self, writes):
        """
        Apply C{writes} in one transaction and commit it, after
        L{check_file}.

        @param writes: objects with C{apply} and C{args}: each is applied
            as C{apply(db, *args)}.
        @return: C{(note, rejected)}: the note of L{check_file}, and a
            L{list} of C{(index, error)} for the writes that can never
            succeed (see L{WRITE_BUGS}): they were undone alone, and the
            others committed.
        @raise sqlite3.Error: the database failed; nothing was committed.
        """
        note = self.check_file()
        try:
            return note, self._apply(writes, isolated=False)
        except WRITE_BUGS:
            # Rare: apply the batch again, each write in a savepoint of its
            # own, so that the usual batch pays for no savepoints.
            return note, self._apply(writes, isolated=True)

    def _apply(self, writes, isolated):
        db = self.db
        rejected = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for index, write in enumerate(writes):
                if not isolated:
                    write.apply(db, *write.args)
                    continue
                db.execute("SAVEPOINT write")
                try:
                    write.apply(db, *write.args)
                except WRITE_BUGS as e:
                    db.execute("ROLLBACK TO write")
                    rejected.append((index, e))
                db.execute("RELEASE write")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise
        return rejected

    def select(self, sql, params):
        """
        @return: the rows of a query, as a L{list} of L{tuple}s.
        """
        return self.db.execute(sql, params).fetchall()

    def select_transactions(self, tail, params):
        """
        @param tail: what follows C{FROM transactions}: WHERE, ORDER BY,
            LIMIT.
        @return: a L{list} of L{TransactionRecord}.
        """
        rows = self.db.execute(
            f"SELECT {TRANSACTION_COLUMNS} FROM transactions {tail}", params
        ).fetchall()
        return [transaction_from_row(row) for row in rows]

    def last_transaction_id(self):
        """
        @return: the highest transactionId ever handed out, 0 if none.
        """
        return read_transaction_counter(self.db)

    def disconnect(self):
        """
        Close the connection, if open.
        """
        if self.db is not None:
            self.db.close()
            self.db = None
