# -*- test-case-name: tests.test_upstream_uplink -*-
"""
An uplink's one-shot timers by name (L{NamedTimers}): the BootNotification
sent again, the next Heartbeat.
"""


class NamedTimers:
    """
    One-shot timers by name: arming one cancels the one of that name armed
    before; one that fired or was cancelled is forgotten.
    """

    __slots__ = ("_clock", "_timers")

    def __init__(self, clock):
        """
        @param clock: an C{IReactorTime}.
        """
        self._clock = clock
        self._timers = {}

    def __contains__(self, name):
        """
        @return: whether the timer C{name} is armed.
        """
        return name in self._timers

    def later(self, name, delay, f, *args):
        """
        Call C{f(*args)} in C{delay} seconds as the timer C{name}.
        """
        self.cancel(name)
        self._timers[name] = self._clock.callLater(delay, self._fire, name, f, *args)

    def _fire(self, name, f, *args):
        self._timers.pop(name, None)
        f(*args)

    def cancel(self, name):
        """
        Cancel the timer C{name}, if armed.
        """
        timer = self._timers.pop(name, None)
        if timer is not None and timer.active():
            timer.cancel()

    def cancel_all(self):
        """
        Cancel every timer.
        """
        for name in list(self._timers):
            self.cancel(name)
