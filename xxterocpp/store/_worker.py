# -*- test-case-name: tests.test_store -*-
"""
The worker thread's side of the store: the only connection to the SQLite
file, the checks that it still writes to the file at its path, and the
transactions run on it. Everything here runs in that one thread.
"""

import os
import sqlite3

from .records import TRANSACTION_COLUMNS, transaction_from_row
from .schema import migrate

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


class RejectedWrite(Exception):
    """
    Write number C{index} of a batch cannot ever succeed; the batch was
    rolled back.
    """

    def __init__(self, index, reason):
        super().__init__(index, reason)
        self.index = index
        self.reason = reason


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

    def connect(self):
        """
        Open, create or migrate the file at C{path}.
        """
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        db = sqlite3.connect(
            self.path,
            # Transactions are begun and committed explicitly, per batch.
            isolation_level=None,
            timeout=self._busy_timeout,
        )
        try:
            db.execute("PRAGMA journal_mode = WAL")
            # FULL: the WAL is fsynced at every commit, i.e. once per batch.
            db.execute("PRAGMA synchronous = FULL")
            migrate(db, self.path)
            stat = os.stat(self.path)
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

        @return: a note for the log when the file was rebuilt or adopted.
        """
        if self.db is None:
            self.connect()
            return None
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            stat = None
        if stat is not None and (stat.st_dev, stat.st_ino) == self._file_identity:
            return None
        old, self.db = self.db, None
        try:
            if stat is None:
                note = "the database file was deleted; rebuilt it from the open connection"
                old.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                rebuilt = self.path + ".rebuilt"
                target = sqlite3.connect(rebuilt)
                try:
                    old.backup(target)
                finally:
                    target.close()
                old.close()
                self._remove_companions()
                os.rename(rebuilt, self.path)
                self.connect()
            else:
                note = "the database file was replaced; now using the new file"
                last_id = old.execute(
                    "SELECT value FROM meta WHERE key = 'last_transaction_id'"
                ).fetchone()[0]
                old.close()
                self._remove_companions()
                self.connect()
                # Whatever the new file says, never hand out an id again.
                self.db.execute(
                    "UPDATE meta SET value = max(value, ?)"
                    " WHERE key = 'last_transaction_id'",
                    (last_id,),
                )
        finally:
            old.close()
        return note

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
        @return: the note of L{check_file}.
        @raise RejectedWrite: a write can never succeed (see L{WRITE_BUGS});
            nothing was committed.
        @raise sqlite3.Error: the database failed; nothing was committed.
        """
        note = self.check_file()
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            for index, write in enumerate(writes):
                try:
                    write.apply(db, *write.args)
                except WRITE_BUGS as e:
                    raise RejectedWrite(index, e) from e
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise
        return note

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

    def disconnect(self):
        """
        Close the connection, if open.
        """
        if self.db is not None:
            self.db.close()
            self.db = None
