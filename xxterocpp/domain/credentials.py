# -*- test-case-name: tests.test_domain,tests.test_control,tests.test_tls -*-
"""
The chargers' Basic-auth passwords: the configured one, an AuthorizationKey
rotated since (kept in the persisted settings), and the key of a change
whose outcome is not known yet.
"""

from twisted.internet import defer
from twisted.logger import Logger

from xxterocpp.domain.keys import PENDING_AUTHORIZATION_KEY, password_matches
from xxterocpp.domain.model import stored

#: The setting (scope: the charger id) holding a rotated AuthorizationKey.
_ROTATED = "authorization_key"


class Credentials:
    """
    Which password each charger must present, and the bookkeeping of an
    AuthorizationKey change.
    """

    log = Logger()

    def __init__(self, config, settings, store):
        """
        @param settings: the central system's persisted settings, C{{(scope,
            key): value}}, shared (this reads and writes the key entries).
        """
        self._config = config
        self._settings = settings
        self._store = store

    def configure(self, config):
        """
        Take the configured passwords of a re-read configuration.
        """
        self._config = config

    def pending_key(self, charger_id):
        """
        @return: the AuthorizationKey sent to the charger whose acceptance
            is not known yet, or None.
        """
        return self._settings.get((charger_id, PENDING_AUTHORIZATION_KEY))

    def password_for(self, charger_id):
        """
        @return: the Basic-auth password a charger must present, or "": a
            rotated AuthorizationKey (L{set_password}) wins over the
            configured password.
        """
        rotated = self._settings.get((charger_id, _ROTATED))
        if rotated:
            return rotated
        points = self._config.charging_points(charger_id)
        return points[0].password if points else ""

    def set_password(self, charger_id, key):
        """
        Make C{key} the charger's Basic-auth password from now on: call it
        once the charger accepted the new AuthorizationKey. It persists
        across restarts.

        @return: a Deferred firing once it is stored.
        """
        self._settings[(charger_id, _ROTATED)] = key
        return stored(self._store.put_setting(charger_id, _ROTATED, key))

    def check_password(self, charger_id, presented):
        """
        @param presented: the password bytes of the Authorization header, or
            None without one.
        @return: True when the charger needs no password or presented it.
        """
        configured = self.password_for(charger_id)
        pending = self.pending_key(charger_id)
        if pending and presented is not None and password_matches(pending, presented):
            # The charger took the new key although its answer got lost.
            self.log.info("{id}: connected with its new AuthorizationKey, the old one is no"
                          " longer accepted", id=charger_id)
            self.set_password(charger_id, pending)
            self._set_pending_key(charger_id, None)
            return True
        if configured and (presented is None or not password_matches(configured, presented)):
            return False
        if pending:
            self.log.info("{id}: connected with its old AuthorizationKey, it did not take the"
                          " new one", id=charger_id)
            self._set_pending_key(charger_id, None)
        return True

    def begin_key_change(self, charger_id, key):
        """
        A ChangeConfiguration(AuthorizationKey) with C{key} is about to be
        sent to the charger. The key is stored before sending: a restart
        while waiting must not lock the charger out if it took the key.

        @return: a Deferred firing once it is stored.
        """
        return self._set_pending_key(charger_id, key)

    def end_key_change(self, charger_id, key, status):
        """
        The outcome of a ChangeConfiguration(AuthorizationKey) with C{key}:
        the charger's status word, or C{"Timeout"}, C{"NotConnected"},
        C{"CallError"}. Accepted: only the new key is accepted from now on,
        also after a restart (A01.FR.03); Rejected, NotSupported or a
        CALLERROR: the old one stays (A01.FR.04); without an answer, or
        RebootRequired, both are accepted until the charger connects with
        one of them, so a lost answer cannot lock it out.

        @return: a Deferred firing once the outcome is stored.
        """
        if status in ("Timeout", "NotConnected"):
            self.log.warn("{id}: no answer to the AuthorizationKey change; the old and the new"
                          " key are accepted until it connects with one", id=charger_id)
            return defer.succeed(None)
        if status == "RebootRequired":
            # The charger takes the key when it restarts.
            self.log.info("{id}: takes the new AuthorizationKey after a reboot", id=charger_id)
            return defer.succeed(None)
        d = self._set_pending_key(charger_id, None)
        if status == "Accepted":
            d = self.set_password(charger_id, key)
            self.log.info("{id}: accepted a new AuthorizationKey; the old one is no longer"
                          " accepted", id=charger_id)
        elif status != "CallError":
            self.log.warn("{id}: AuthorizationKey change {status}; the old key stays",
                          id=charger_id, status=status)
        return d

    def _set_pending_key(self, charger_id, key):
        if key is None:
            self._settings.pop((charger_id, PENDING_AUTHORIZATION_KEY), None)
            d = self._store.delete_setting(charger_id, PENDING_AUTHORIZATION_KEY)
        else:
            self._settings[(charger_id, PENDING_AUTHORIZATION_KEY)] = key
            d = self._store.put_setting(charger_id, PENDING_AUTHORIZATION_KEY, key)
        return stored(d)
