# -*- test-case-name: tests.test_store -*-
"""
The state store: everything that must survive a crash or a restart of the
service, in one SQLite file.

Three rules shape this package:

  - B{Nothing lost that was acknowledged.} A write's L{Deferred} fires only
    once the SQL transaction holding it is committed with
    C{synchronous=FULL}, so the domain can answer a charger knowing the fact
    is on disk. A write whose commit fails stays queued, with whoever waits
    for it, and is retried with backoff for as long as the process lives (a
    full disk: the store catches up by itself once there is space again).
  - B{Gentle on flash.} Every commit writes at least a page of the
    file system, so commits are few: writes made during one reactor turn
    are committed together (one fsync per batch), and the values that only
    matter last and that a restart can do without (meter readings of
    running transactions, connector statuses, unknown chargers' attempts)
    are I{lazy}: coalesced in memory and committed with the next batch, at
    most L{LAZY_WRITE_DELAY} seconds late, or at close. A crash loses at
    most that much of them, never a transaction: a StopTransaction's
    meterStop books the energy. A status or reading equal to the last one
    is not written at all. The file has 1 KiB pages, and the store holds
    it exclusively, so that SQLite keeps the write-ahead log's index in
    memory instead of a -shm file.
  - B{Never block the reactor.} All SQL runs in one dedicated worker thread
    that owns the only connection.

A file that is damaged at start (SQLite's quick check fails, or it is not a
database) is moved aside as C{<name>.corrupt-<UTC time>} with its -wal, and a
fresh one is created; one log line says so (C{_damage}).

The synchronous C{open} and C{load_*} methods are meant for service start,
before any charger is connected: they wait for the worker thread.

The file is readable by its owner only: it holds the chargers' keys.

Inside: L{records} (what the store hands back), L{schema} (the tables and
their migrations), C{_worker} (the connection, in the worker thread),
C{_damage} (telling and moving aside a damaged file), C{_batches} (group
commit, lazy writes and retries, in the reactor thread), C{_store}
(L{Store}) and its parts C{_transactions} and C{_state} (the SQL of every
read and write).
"""

from ._batches import LAZY_WRITE_DELAY
from ._state import MAX_IDENTITY_LENGTH, MAX_UNKNOWN_CHARGERS
from ._store import Store
from .errors import StoreError
from .records import (
    ConnectorStatusRecord,
    OrphanStopRecord,
    TagRecord,
    TransactionRecord,
    UnknownChargerRecord,
)
from .schema import MIGRATIONS

__all__ = [
    "LAZY_WRITE_DELAY",
    "MAX_IDENTITY_LENGTH",
    "MAX_UNKNOWN_CHARGERS",
    "MIGRATIONS",
    "ConnectorStatusRecord",
    "OrphanStopRecord",
    "Store",
    "StoreError",
    "TagRecord",
    "TransactionRecord",
    "UnknownChargerRecord",
]
