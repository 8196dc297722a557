# -*- test-case-name: tests.test_store -*-
"""
The tables of the state database and how a file of an older version is
brought up to date.
"""

from .errors import StoreError

#: Ordered schema migrations; entry C{n} brings C{PRAGMA user_version} from
#: C{n} to C{n + 1}. Append new steps, never edit a released one.
MIGRATIONS = [
    (
        # The highest transactionId ever handed out lives here, not in
        # MAX(transactions.id), so that pruning history can never make the
        # central system hand out an id a charger already knows.
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
        "INSERT INTO meta VALUES ('last_transaction_id', 0)",
        """CREATE TABLE transactions (
            id INTEGER PRIMARY KEY,
            charger_id TEXT NOT NULL,
            connector INTEGER NOT NULL,
            id_tag TEXT NOT NULL,
            start_time TEXT NOT NULL,
            meter_start INTEGER NOT NULL,
            reservation_id INTEGER,
            start_status TEXT NOT NULL,
            dedup_key TEXT NOT NULL,
            stop_time TEXT,
            meter_stop INTEGER,
            stop_reason TEXT,
            stop_id_tag TEXT,
            last_meter_wh REAL,
            last_meter_time TEXT)""",
        "CREATE INDEX transactions_by_start ON transactions (start_time)",
        "CREATE INDEX transactions_open ON transactions (stop_time)"
        " WHERE stop_time IS NULL",
        """CREATE TABLE orphan_stops (
            id INTEGER PRIMARY KEY,
            charger_id TEXT,
            transaction_id INTEGER,
            meter_stop INTEGER,
            stop_time TEXT,
            reason TEXT,
            received_at TEXT NOT NULL,
            note TEXT NOT NULL)""",
        """CREATE TABLE connector_status (
            charger_id TEXT NOT NULL,
            connector INTEGER NOT NULL,
            status TEXT NOT NULL,
            error_code TEXT NOT NULL,
            info TEXT,
            at TEXT NOT NULL,
            PRIMARY KEY (charger_id, connector))""",
        """CREATE TABLE unknown_chargers (
            identity TEXT PRIMARY KEY,
            address TEXT NOT NULL,
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            count INTEGER NOT NULL)""",
        """CREATE TABLE settings (
            scope TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (scope, key))""",
        """CREATE TABLE tags (
            id TEXT PRIMARY KEY,
            status TEXT NOT NULL,
            expiry TEXT,
            parent TEXT)""",
    ),
    (
        # The back office (xxterocpp.store.upstream): per charger, the
        # messages not yet delivered, in order; those it refused for good;
        # and which of its transactionIds each of ours got.
        """CREATE TABLE upstream_queue (
            seq INTEGER PRIMARY KEY,
            charger_id TEXT NOT NULL,
            action TEXT NOT NULL,
            transaction_id INTEGER,
            payload TEXT NOT NULL,
            queued_at TEXT NOT NULL,
            failures INTEGER NOT NULL DEFAULT 0,
            last_error TEXT)""",
        "CREATE INDEX upstream_queue_by_charger ON upstream_queue (charger_id, seq)",
        """CREATE TABLE upstream_dead_letters (
            seq INTEGER PRIMARY KEY,
            charger_id TEXT NOT NULL,
            action TEXT NOT NULL,
            transaction_id INTEGER,
            payload TEXT NOT NULL,
            queued_at TEXT NOT NULL,
            failed_at TEXT NOT NULL,
            error TEXT NOT NULL)""",
        """CREATE TABLE upstream_transactions (
            transaction_id INTEGER PRIMARY KEY,
            charger_id TEXT NOT NULL,
            remote_id INTEGER NOT NULL,
            status TEXT NOT NULL,
            mapped_at TEXT NOT NULL)""",
        "CREATE INDEX upstream_transactions_by_charger"
        " ON upstream_transactions (charger_id, transaction_id)",
    ),
    (
        # Fewer pages to write per commit. This index was only read at
        # start, when a scan costs nothing, and cost a page at every start
        # and stop of a transaction.
        "DROP INDEX transactions_open",
        # Rows kept in their primary key's b-tree: a changed status or
        # setting is one page to write, not a row page and an index page.
        """CREATE TABLE connector_status_new (
            charger_id TEXT NOT NULL,
            connector INTEGER NOT NULL,
            status TEXT NOT NULL,
            error_code TEXT NOT NULL,
            info TEXT,
            at TEXT NOT NULL,
            PRIMARY KEY (charger_id, connector)) WITHOUT ROWID""",
        "INSERT INTO connector_status_new SELECT * FROM connector_status",
        "DROP TABLE connector_status",
        "ALTER TABLE connector_status_new RENAME TO connector_status",
        """CREATE TABLE settings_new (
            scope TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (scope, key)) WITHOUT ROWID""",
        "INSERT INTO settings_new SELECT * FROM settings",
        "DROP TABLE settings",
        "ALTER TABLE settings_new RENAME TO settings",
    ),
    (
        # The start or stop time is ours from a time our clock was wrong
        # (xxterocpp/domain/trusted.py).
        "ALTER TABLE transactions ADD COLUMN time_uncertain INTEGER NOT NULL DEFAULT 0",
    ),
]


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


def migrate(db, path):
    """
    Bring the database on C{db} to the latest schema, one transaction per
    step, so that a crash mid-way leaves a file at a known version.

    @param path: the file, for the error message.
    @raise StoreError: the file was written by a newer version.
    """
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise StoreError(
            f"the state database {path} has schema version {version},"
            f" newer than this xxterocpp ({len(MIGRATIONS)}): install the"
            " newer version again or restore an older backup of the file"
        )
    for number, steps in enumerate(MIGRATIONS[version:], start=version + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in steps:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {number}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
