# -*- test-case-name: tests.test_limits,tests.test_control -*-
"""
One run at a time per charger: a slow charger gets no pile of calls when
requests come faster than it answers (reboot loops, a limit changed every
second).
"""

from twisted.internet import defer
from twisted.logger import Logger

from xxterocpp.control.sender import CommandResult


class _Coalesced:
    """
    Run an action for whoever asks; requests arriving while it runs are
    served by one more run.
    """

    log = Logger()
    __slots__ = ("_action", "_running", "_waiters", "_table", "_key")

    def __init__(self, action, table, key):
        self._action = action
        self._running = False
        self._waiters = []
        # Idle, it leaves C{table} (no per-charger object kept between runs).
        self._table, self._key = table, key

    def request(self):
        """
        @return: a Deferred firing with the result of the next run that
            starts after this request.
        """
        d = defer.Deferred()
        self._waiters.append(d)
        if not self._running:
            self._run()
        return d

    @defer.inlineCallbacks
    def _run(self):
        self._running = True
        while self._waiters:
            waiters, self._waiters = self._waiters, []
            try:
                result = yield self._action()
            except Exception as e:
                # A bug here must not wedge the queue of this charger.
                self.log.failure("a control action failed")
                result = CommandResult(False, "Error", str(e))
            for d in waiters:
                d.callback(result)
        self._running = False
        if self._table.get(self._key) is self:
            del self._table[self._key]


def coalesced(table, key, action):
    """
    @param table: the runs in progress, by key (a dict the caller keeps).
    @return: a Deferred of the next run of C{action} coalesced under C{key}.
    """
    run = table.get(key)
    if run is None:
        run = table[key] = _Coalesced(action, table, key)
    return run.request()
