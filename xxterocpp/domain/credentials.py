# -*- test-case-name: tests.test_domain,tests.test_control,tests.test_tls,tests.test_profiles -*-
"""
The chargers' Basic-auth passwords: the configured one, an AuthorizationKey
rotated or set since (kept in the persisted settings), and the key of a
change whose outcome is not known yet.

The newest intent wins: a key rotated or set since the start beats the
configured password, and a password changed in the configuration beats a
key from before the change. So a key remembers (as a digest) the password
configured when it came; a configuration that says another one, at a start
or a reload, drops it (L{Credentials.reconcile}).
"""

import hashlib

from twisted.internet import defer
from twisted.logger import Logger

from xxterocpp.domain.keys import PENDING_AUTHORIZATION_KEY, password_matches
from xxterocpp.domain.model import stored

#: The setting (scope: the charger id) holding a rotated AuthorizationKey.
_ROTATED = "authorization_key"
#: The setting holding the SHA-256 of the password configured when the
#: rotated or pending key came.
_CONFIGURED = "authorization_key_configured"


def _digest(password):
    return hashlib.sha256(password.encode("utf-8")).hexdigest()


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
        Take the configured passwords of a re-read configuration; a changed
        one wins over the key rotated before (L{reconcile}).
        """
        self._config = config
        self.reconcile()

    def _configured(self, charger_id):
        points = self._config.charging_points(charger_id)
        return points[0].password if points else ""

    def reconcile(self):
        """
        Drop the rotated and pending keys of chargers whose configured
        password changed since they came (called once the settings are
        loaded, and at every reload).
        """
        for charger_id in self._config.charger_ids():
            keys = [key for key in (_ROTATED, PENDING_AUTHORIZATION_KEY)
                    if self._settings.get((charger_id, key))]
            if not keys:
                continue
            configured = _digest(self._configured(charger_id))
            based_on = self._settings.get((charger_id, _CONFIGURED))
            if based_on is None:
                # A key rotated before this rule: it follows the password
                # configured now.
                self._put(charger_id, _CONFIGURED, configured)
            elif based_on != configured:
                self.log.info("{id}: the password in the configuration changed; it replaces"
                              " the key set since the one configured before", id=charger_id)
                for key in keys + [_CONFIGURED]:
                    self._put(charger_id, key, None)

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
        return self._configured(charger_id)

    def set_password(self, charger_id, key):
        """
        Make C{key} the charger's Basic-auth password from now on: call it
        once the charger accepted the new AuthorizationKey, or when it was
        given the key otherwise (on its own screen). It persists across
        restarts, until the configured password changes.

        @return: a Deferred firing once it is stored.
        """
        self._put(charger_id, _CONFIGURED, _digest(self._configured(charger_id)))
        return self._put(charger_id, _ROTATED, key)

    def key_given(self, charger_id, key):
        """
        The charger was given C{key} elsewhere (reset to its factory state
        and keyed on its own screen): it is its password from now on, and
        an AuthorizationKey change still waiting for an outcome is over.

        @return: a Deferred firing once it is stored.
        """
        self.log.info("{id}: a key set elsewhere is its password from now on", id=charger_id)
        self._set_pending_key(charger_id, None)
        return self.set_password(charger_id, key)

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
        if key is not None:
            self._put(charger_id, _CONFIGURED, _digest(self._configured(charger_id)))
        return self._put(charger_id, PENDING_AUTHORIZATION_KEY, key)

    def _put(self, charger_id, key, value):
        if value is None:
            self._settings.pop((charger_id, key), None)
            d = self._store.delete_setting(charger_id, key)
        else:
            self._settings[(charger_id, key)] = value
            d = self._store.put_setting(charger_id, key, value)
        return stored(d)
