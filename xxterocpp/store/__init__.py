# -*- test-case-name: tests.test_store -*-
"""
The state store: everything that must survive a crash or a restart of the
service, in one SQLite file.

Two rules shape this package:

  - B{Nothing lost.} A write's L{Deferred} fires only once the SQL
    transaction holding it is committed with C{synchronous=FULL}, so the
    domain can answer a charger knowing the fact is on disk. A write whose
    commit fails stays queued and is retried with backoff for as long as the
    process lives.
  - B{Never block the reactor.} All SQL runs in one dedicated worker thread
    that owns the only connection. Writes made during one reactor turn are
    committed together (group commit, one fsync per batch), and meter and
    connector-status updates are coalesced, so a MeterValues storm costs a
    handful of commits, not one fsync per message.

The synchronous C{open} and C{load_*} methods are meant for service start,
before any charger is connected: they wait for the worker thread.

The file is readable by its owner only: it holds the chargers' keys.

Inside: L{records} (what the store hands back), L{schema} (the tables and
their migrations), C{_worker} (the connection, in the worker thread),
C{_batches} (group commit and retries, in the reactor thread) and C{_store}
(L{Store}, the SQL of every read and write).
"""

from ._store import MAX_IDENTITY_LENGTH, MAX_UNKNOWN_CHARGERS, Store
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
