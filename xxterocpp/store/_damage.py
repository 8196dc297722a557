# -*- test-case-name: tests.test_store,tests.test_storage_faults -*-
"""
A database file that a power cut or a failing card damaged: how the worker
tells, and how it gets the file out of the way so that the service can start
with a fresh one. Runs in the worker thread, at start.
"""

import os
import sqlite3
from contextlib import contextmanager
from datetime import datetime, timezone


# The primary result codes of a damaged file ("database disk image is
# malformed", "file is not a database"); every other error (locked, disk
# full, no permission) says nothing about the file's content.
_DAMAGE = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


class DamagedDatabase(Exception):
    """
    The file at the database path is not a sound SQLite database.

    @ivar reason: what SQLite said about it.
    @ivar moved_to: where the file went (L{move_aside}), once it did.
    """

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason
        self.moved_to = None


@contextmanager
def reported_as_damage():
    """
    Raise the errors of SQLite that say the file itself is damaged as
    L{DamagedDatabase}.
    """
    try:
        yield
    except sqlite3.DatabaseError as e:
        # Errors of the sqlite3 module itself carry no SQLite code.
        if getattr(e, "sqlite_errorcode", 0) & 0xFF in _DAMAGE:
            raise DamagedDatabase(str(e)) from e
        raise


def check(db):
    """
    Run SQLite's quick check (the integrity check without comparing every
    index with its table, which is what makes the full one slow), in
    L{reported_as_damage}.

    @raise DamagedDatabase: the check failed.
    """
    [(verdict,)] = db.execute("PRAGMA quick_check(1)").fetchall()
    if verdict != "ok":
        raise DamagedDatabase(verdict)


def salvage_counter(db):
    """
    @return: the highest transactionId the damaged database on C{db} still
        shows, 0 when it shows none: the fresh file must not hand those
        ids out again, chargers may still know them.
    """
    try:
        # Lets SQLite read a schema that points past the end of a file cut
        # short; nothing is written.
        db.execute("PRAGMA writable_schema = ON")
    except sqlite3.Error:
        return 0
    found = 0
    for sql in (
        "SELECT value FROM meta WHERE key = 'last_transaction_id'",
        "SELECT max(id) FROM transactions",
    ):
        try:
            found = max(found, db.execute(sql).fetchone()[0] or 0)
        except (sqlite3.Error, TypeError):
            pass
    return found


def move_aside(path, now=None):
    """
    Rename the database file at C{path}, and its -wal and -shm files, to
    C{<path>.corrupt-<UTC time>}, keeping SQLite's naming so that the copy
    can be opened with its write-ahead log.

    @return: the new name of the database file.
    """
    now = now or datetime.now(timezone.utc)
    target = f"{path}.corrupt-{now:%Y%m%dT%H%M%SZ}"
    taken = 1
    while os.path.lexists(target):
        taken += 1
        target = f"{path}.corrupt-{now:%Y%m%dT%H%M%SZ}.{taken}"
    # The write-ahead log first, the file last: a crash in between must not
    # leave the old log next to the fresh file, where SQLite would replay it.
    for suffix in ("-wal", "-shm", ""):
        try:
            os.rename(path + suffix, target + suffix)
        except FileNotFoundError:
            pass
    return target
