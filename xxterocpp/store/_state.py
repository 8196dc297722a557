# -*- test-case-name: tests.test_store -*-
"""
L{State}: the rest of what the L{Store} keeps: each connector's last
status, the identities that tried to connect without being configured, the
settings changed at run time and the API's tags.
"""

import json

from twisted.internet.defer import fail

from ._worker import execute
from .errors import StoreError
from .records import ConnectorStatusRecord, TagRecord, UnknownChargerRecord, from_text, to_text

#: Unknown identities kept, the latest seen: a flood of made-up identities
#: must not grow the file.
MAX_UNKNOWN_CHARGERS = 100

#: Longer unknown identities are not stored at all.
MAX_IDENTITY_LENGTH = 255


# The writes below run in the worker thread, inside a batch transaction.


def _record_unknown_attempts(db, identity, address, first_seen, last_seen, attempts):
    db.execute(
        "INSERT INTO unknown_chargers (identity, address, first_seen,"
        " last_seen, count) VALUES (?, ?, ?, ?, ?) ON CONFLICT (identity)"
        " DO UPDATE SET address = excluded.address,"
        " last_seen = excluded.last_seen, count = count + excluded.count",
        (identity, address, first_seen, last_seen, attempts),
    )
    # In the same commit, so the table never holds more; of identities
    # last seen at the same instant, the one inserted last stays.
    db.execute(
        "DELETE FROM unknown_chargers WHERE rowid NOT IN (SELECT rowid FROM"
        " unknown_chargers ORDER BY last_seen DESC, rowid DESC LIMIT ?)",
        (MAX_UNKNOWN_CHARGERS,),
    )


def _merge_attempts(older, newer):
    # Attempts queued together: the first one's first sighting, the last
    # one's address and time, all of them counted.
    identity, _, first_seen, _, attempts = older
    _, address, _, last_seen, more = newer
    return identity, address, first_seen, last_seen, attempts + more


class State:
    """
    The state part of L{xxterocpp.store.Store} besides the transactions (a
    mixin: the store's C{_write}, C{_load}, C{_batches} and C{_statuses},
    the last status of each connector, are its own).
    """

    # -- startup reads (synchronous) ---------------------------------------

    def load_connector_status(self):
        """
        @rtype: L{list} of L{ConnectorStatusRecord}
        """
        rows = self._load(
            "SELECT charger_id, connector, status, error_code, info, at"
            " FROM connector_status ORDER BY charger_id, connector"
        )
        for charger_id, connector, status, error_code, info, at in rows:
            self._statuses[charger_id, connector] = (status, error_code, info)
        return [ConnectorStatusRecord(*r[:5], from_text(r[5])) for r in rows]

    def load_unknown_chargers(self):
        """
        @return: unknown identities, the latest seen first.
        @rtype: L{list} of L{UnknownChargerRecord}
        """
        rows = self._load(
            "SELECT identity, address, first_seen, last_seen, count"
            " FROM unknown_chargers ORDER BY last_seen DESC"
        )
        return [
            UnknownChargerRecord(i, a, from_text(f), from_text(s), c)
            for i, a, f, s, c in rows
        ]

    def load_settings(self):
        """
        @return: C{{(scope, key): value}}, values decoded from JSON.
        @rtype: L{dict}
        """
        rows = self._load("SELECT scope, key, value FROM settings")
        return {(scope, key): json.loads(value) for scope, key, value in rows}

    def keeps_upstream_messages(self):
        """
        @return: whether the file holds messages for a back office, queued
            or dead letters (L{xxterocpp.store.upstream}), also of chargers
            that have none configured any more.
        """
        [(kept,)] = self._load(
            "SELECT EXISTS (SELECT 1 FROM upstream_queue)"
            " OR EXISTS (SELECT 1 FROM upstream_dead_letters)")
        return bool(kept)

    def load_tags(self):
        """
        @rtype: L{list} of L{TagRecord}
        """
        rows = self._load("SELECT id, status, expiry, parent FROM tags ORDER BY id")
        return [TagRecord(i, s, from_text(e), p) for i, s, e, p in rows]

    # -- writes ------------------------------------------------------------

    def save_connector_status(self, charger_id, connector, status, error_code, info, at,
                              quiet=False):
        """
        Record the last StatusNotification of a connector: a lazy write, of
        which only the last status counts. A status equal to the one known
        (the same status, error code and info) is not written again, so
        C{at} stays the time since when it holds.

        @param quiet: C{True} when the caller does not wait for the
            commit: L{None} is returned, no L{Deferred} made
            (L{xxterocpp.store._batches.Batcher.write}).
        """
        key = ("status", charger_id, connector)
        state = (status, error_code, info)
        if self._statuses.get((charger_id, connector)) == state:
            return None if quiet else self._batches.settled(key)
        self._statuses[charger_id, connector] = state
        return self._write(
            key,
            execute,
            "INSERT OR REPLACE INTO connector_status (charger_id, connector,"
            " status, error_code, info, at) VALUES (?, ?, ?, ?, ?, ?)",
            (charger_id, connector, status, error_code, info, to_text(at)),
            lazy=True, quiet=quiet,
        )

    def record_unknown_attempts(self, identity, address, first_seen, last_seen, attempts):
        """
        Count C{attempts} to connect by an identity that is not configured,
        the last from C{address}; C{first_seen} is kept for an identity new
        to the table: a lazy write, so that a charger retrying every few
        seconds costs one commit per lazy delay. Only the
        L{MAX_UNKNOWN_CHARGERS} identities seen last are kept; an identity
        longer than L{MAX_IDENTITY_LENGTH} is not stored (the L{Deferred}
        fails with L{StoreError}).
        """
        if len(identity) > MAX_IDENTITY_LENGTH:
            return fail(StoreError(
                f"unknown charger identity of {len(identity)} characters not"
                f" stored: at most {MAX_IDENTITY_LENGTH}"
            ))
        return self._write(
            ("unknown", identity), _record_unknown_attempts, identity, address,
            to_text(first_seen), to_text(last_seen), attempts, lazy=True,
            merge=_merge_attempts,
        )

    def put_setting(self, scope, key, value, lazy=False, quiet=False):
        """
        Store a setting changed at run time (e.g. a limit set over KNX).

        @param value: anything L{json.dumps} accepts.
        @param lazy: commit it with the next commit that happens anyway, or
            C{lazy_delay} late at the latest, as a meter reading (for a
            value that a crash may set back a little at no cost); by
            default it is committed at the end of this reactor turn.
        @param quiet: C{True} when the caller does not wait for the
            commit: L{None} is returned, no L{Deferred} made
            (L{xxterocpp.store._batches.Batcher.write}).
        @raise TypeError: at once, if C{value} is not JSON-serialisable.
        """
        return self._write(
            ("setting", scope, key),
            execute,
            "INSERT OR REPLACE INTO settings (scope, key, value) VALUES (?, ?, ?)",
            (scope, key, json.dumps(value)),
            lazy=lazy, quiet=quiet,
        )

    def delete_setting(self, scope, key):
        """
        Forget a setting.
        """
        return self._write(
            ("setting", scope, key),
            execute,
            "DELETE FROM settings WHERE scope = ? AND key = ?",
            (scope, key),
        )

    def put_tag(self, tag_id, status, expiry=None, parent=None):
        """
        Add or replace an API-managed tag.
        """
        return self._write(
            None,
            execute,
            "INSERT OR REPLACE INTO tags (id, status, expiry, parent)"
            " VALUES (?, ?, ?, ?)",
            (tag_id, status, to_text(expiry), parent),
        )

    def delete_tag(self, tag_id):
        """
        Remove an API-managed tag.
        """
        return self._write(None, execute, "DELETE FROM tags WHERE id = ?", (tag_id,))
