# -*- test-case-name: tests.test_domain -*-
"""
The RFID tag registry, its persistence, and how an idTag is judged.
"""

import attr
from twisted.internet import defer

from xxterocpp.domain.model import casefold, stored


@attr.s(frozen=True, slots=True)
class Authorization:
    """
    The verdict on an idTag.

    @ivar status: C{"Accepted"}, C{"Blocked"}, C{"Expired"}, C{"Invalid"} or
        C{"ConcurrentTx"}.
    @ivar parent: the registry's parent idTag of the tag, or None.
    @ivar expiry: the registry's expiry of the tag (aware UTC), or None.
    """

    status = attr.ib()
    parent = attr.ib(default=None)
    expiry = attr.ib(default=None)


class TagRegistry:
    """
    The RFID tags known to the central system: the configuration's
    C{[[tag]]} tables plus the tags managed at run time (through the API),
    which win and are kept in the store.

    A tag is anything with C{id}, C{status}, C{expiry} and C{parent} (a
    L{xxterocpp.config.TagConfig}, a L{xxterocpp.store.TagRecord}); idTags
    compare case-insensitively.
    """

    def __init__(self, store, config_tags=(), on_change=None):
        """
        @param store: the L{xxterocpp.store.Store} keeping the managed tags.
        @param on_change: optional zero-argument callable, called after
            every change (to push local authorization lists).
        """
        self._store = store
        self._config = {casefold(t.id): t for t in config_tags}
        self._managed = {}
        self._on_change = on_change or (lambda: None)

    def load(self):
        """
        Restore the managed tags from the store (at start-up, before chargers
        connect: no change is announced).
        """
        self._managed = {casefold(t.id): t for t in self._store.load_tags()}

    def configure(self, config_tags):
        """
        Take the C{[[tag]]} tables of a re-read configuration.
        """
        self._config = {casefold(t.id): t for t in config_tags}
        self._on_change()

    def put(self, tag):
        """
        Add or replace a managed tag; a new spelling of an idTag replaces the
        old one. It is in force at once and stored; putting the tag that is
        in force already changes nothing.

        @return: a Deferred firing with C{tag} once it is stored (it fails
            while the store cannot commit; the store keeps retrying).
        """
        key = casefold(tag.id)
        old = self._managed.get(key)
        if old == tag:
            return defer.succeed(tag)
        self._managed[key] = tag
        if old is not None and old.id != tag.id:
            stored(self._store.delete_tag(old.id))
        d = self._store.put_tag(tag.id, tag.status, tag.expiry, tag.parent)
        self._on_change()
        return d.addCallback(lambda ignored: tag)

    def remove(self, id_tag):
        """
        Remove a managed tag (a configuration-file tag stays: it is removed
        from the file).

        @return: a Deferred firing with the removed tag once its removal is
            stored, or at once with None when no managed tag has that id.
        """
        tag = self._managed.pop(casefold(id_tag), None)
        if tag is None:
            return defer.succeed(None)
        d = self._store.delete_tag(tag.id)
        self._on_change()
        return d.addCallback(lambda ignored: tag)

    def get(self, id_tag):
        """
        @return: the tag in force for C{id_tag} (managed, else configured), or
            None.
        """
        key = casefold(id_tag)
        return self._managed.get(key) or self._config.get(key)

    def all(self):
        """
        @return: every tag in force, a managed one in place of a configured
            one with the same id.
        """
        merged = dict(self._config)
        merged.update(self._managed)
        return list(merged.values())

    def authorize(self, points, id_tag, now):
        """
        Decide whether C{id_tag} may charge at any of C{points} at C{now}.

        @param points: the configuration's charging points concerned (each
            with C{remote_tag}, C{smart_tag} and C{allowed_tags}).
        @return: an L{Authorization} (never C{"ConcurrentTx"}: the
            transaction book knows what runs elsewhere).
        """
        folded = casefold(id_tag)
        entry = self.get(id_tag)
        parent = entry.parent if entry else None
        expiry = entry.expiry if entry else None
        if any(folded == casefold(p.remote_tag) or (p.smart_tag and folded == casefold(p.smart_tag))
               for p in points):
            # Our own tags: remote starts and the Smart Energy Manager's.
            return Authorization("Accepted", parent, expiry)
        if entry is not None:
            status = tag_status(entry, now)
            if status != "Accepted":
                return Authorization(status, parent, expiry)
        allowed = False
        for p in points:
            allowed_tags = {casefold(t) for t in p.allowed_tags}
            if "*" in allowed_tags or folded in allowed_tags or (
                    parent and casefold(parent) in allowed_tags):
                allowed = True
        return Authorization("Accepted" if allowed else "Invalid", parent, expiry)


def tag_status(tag, now):
    """
    @return: the status of a registry entry at C{now} (Expired past expiry).
    """
    if tag.status != "Accepted":
        return tag.status
    if tag.expiry is not None and tag.expiry <= now:
        return "Expired"
    return "Accepted"
