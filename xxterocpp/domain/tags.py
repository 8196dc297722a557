# -*- test-case-name: tests.test_station -*-
"""
The RFID tag registry and how a tag's status is judged.
"""

from xxterocpp.domain.model import casefold


class TagRegistry:
    """
    The RFID tags known to the central system: the configuration's
    C{[[tag]]} tables plus tags managed through the API (these win).
    """

    def __init__(self, config_tags=(), managed=(), on_change=None):
        """
        @param on_change: optional zero-argument callable, called after
            every change (to push local authorization lists).
        """
        self._config = {casefold(t.id): t for t in config_tags}
        self._managed = {casefold(t.id): t for t in managed}
        self._on_change = on_change or (lambda: None)

    def configure(self, config_tags):
        self._config = {casefold(t.id): t for t in config_tags}
        self._on_change()

    def put(self, tag):
        self._managed[casefold(tag.id)] = tag
        self._on_change()

    def remove(self, id_tag):
        removed = self._managed.pop(casefold(id_tag), None)
        self._on_change()
        return removed

    def get(self, id_tag):
        key = casefold(id_tag)
        return self._managed.get(key) or self._config.get(key)

    def all(self):
        merged = dict(self._config)
        merged.update(self._managed)
        return list(merged.values())


def tag_status(tag, now):
    """
    @return: the status of a registry entry at C{now} (Expired past expiry).
    """
    if tag.status != "Accepted":
        return tag.status
    if tag.expiry is not None and tag.expiry <= now:
        return "Expired"
    return "Accepted"
