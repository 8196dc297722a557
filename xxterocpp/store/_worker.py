# -*- test-case-name: tests.test_store -*-
"""
The worker thread's side of the store: the only connection to the SQLite
file, the checks that it still writes to the file at its path, and the
transactions run on it. Everything here runs in that one thread.
"""

import os
import sqlite3
from stat import S_IMODE

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


def advance_transaction_counter(db, tx_id):
    """
    Make the highest transactionId ever handed out at least C{tx_id}.
    """
    db.execute(
        "UPDATE meta SET value = max(value, ?) WHERE key = 'last_transaction_id'",
        (tx_id,),
    )


def read_transaction_counter(db):
    """
    @return: the highest transactionId ever handed out: the counter, or a
        stored transaction's id if one is higher (a file written by hand).
    """
    return db.execute(
        "SELECT max(value, (SELECT coalesce(max(id), 0) FROM transactions))"
        " FROM meta WHERE key = 'last_transaction_id'"
    ).fetchone()[0]


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
        Open, create or migrate the file at C{path}.
        """
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        _make_private(self.path)
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
            if self._transaction_id_floor:
                advance_transaction_counter(db, self._transaction_id_floor)
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
                # Private before the keys are copied into it.
                _make_private(rebuilt)
                target = sqlite3.connect(rebuilt)
                try:
                    old.backup(target)
                finally:
                    target.close()
                old.close()
                self._remove_companions()
                os.rename(rebuilt, self.path)
            else:
                note = "the database file was replaced; now using the new file"
                # Whatever the new file says, never hand out an id again.
                self._transaction_id_floor = max(
                    self._transaction_id_floor, read_transaction_counter(old)
                )
                old.close()
                self._remove_companions()
            self.connect()
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
