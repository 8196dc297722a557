# -*- test-case-name: tests.test_workarounds,tests.test_domain -*-
"""
The workarounds in force for each charger (docs/quirks.md#named-workarounds):
chosen from its boot data and its configuration into C{Charger.quirks}, and
suggested in the log when a charger behaves the way one is for.
"""

from twisted.logger import Logger

from xxterocpp.quirks import REGISTRY


class Workarounds:
    """
    The choice of each charger's workarounds.

    @ivar registry: the L{xxterocpp.quirks.Entry}s they are chosen with
        (L{xxterocpp.quirks.REGISTRY}; tests give their own).
    """

    log = Logger()

    def __init__(self, config, registry=REGISTRY):
        self._config = config
        self.registry = registry
        # (charger id, workaround) already suggested in the log.
        self._suggested = set()

    def configure(self, config):
        """
        Take a re-read configuration (the chargers' C{quirks}); the choice
        follows with L{choose}.
        """
        self._config = config

    def choose(self, charger):
        """
        Choose the workarounds in force for C{charger} from its boot data and
        its configuration: at start-up, after each boot and after a reload.
        """
        try:
            quirks = self._config.quirk_settings(charger.id).resolve(charger.boot, self.registry)
        except ValueError as e:
            # Not with a checked configuration and registry: keep what holds.
            self.log.error("{id}: workarounds not changed: {e}", id=charger.id, e=str(e))
            return
        if quirks != charger.quirks:
            charger.quirks = quirks
            self.log.info("{id}: workarounds in force: {quirks}", id=charger.id,
                          quirks="; ".join(f"{q.name} ({q.reason})" for q in quirks) or "none")

    def suggest(self, charger, name, behaviour):
        """
        C{charger} (None: one no longer configured) behaved the way
        workaround C{name} is for: say so in the log, once per charger and
        workaround, unless it is in force already.

        @param behaviour: what it did, for people ("it dropped the
            connection ... after ...").
        """
        if charger is None or charger.quirks.has(name) or (charger.id, name) in self._suggested:
            return
        self._suggested.add((charger.id, name))
        self.log.warn("{id}: {behaviour}: if it does so again, add quirks = [\"{name}\"] to its "
                      "[[charger]] (docs/quirks.md#{name})", id=charger.id, behaviour=behaviour,
                      name=name)
