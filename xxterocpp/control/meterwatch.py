# -*- test-case-name: tests.test_workarounds -*-
"""
The C{trigger-meter-values} workaround (docs/quirks.md#trigger-meter-values):
some chargers send no MeterValues during a session unless asked. A session
of such a charger that has had none for twice the sample interval gets
TriggerMessage(MeterValues), and again after each such silence.
"""

from twisted.logger import Logger

from xxterocpp.control.configuration import integer
from xxterocpp.control.setup import SAMPLE_INTERVAL
from xxterocpp.ocpp import messages as m


class MeterWatch:
    """
    A timer per running session of a charger with C{trigger-meter-values},
    put back by each of its meter readings.
    """

    log = Logger()

    def __init__(self, central, clock, sender):
        """
        @param central: the L{xxterocpp.domain.central.CentralSystem}.
        @param clock: an C{IReactorTime}.
        @param sender: the L{xxterocpp.control.sender.Sender}.
        """
        self.central = central
        self.clock = clock
        self.sender = sender
        # (charger id, connector) -> the DelayedCall of the trigger.
        self._timers = {}

    def _silence(self, charger):
        """
        @return: seconds without meter values before the trigger: twice the
            sample interval the charger reported (or the one the set-up sets).
        """
        interval = integer(charger.configuration.get("MeterValueSampleInterval"), SAMPLE_INTERVAL)
        return 2 * (interval if interval > 0 else SAMPLE_INTERVAL)

    def transaction_started(self, event):
        """
        A session began: watch it, if its charger needs it.
        """
        charger = self.central.chargers.get(event.charger_id)
        if charger is not None and charger.quirks.has("trigger-meter-values"):
            self._cancel((event.charger_id, event.connector))
            self._timers[(event.charger_id, event.connector)] = self.clock.callLater(
                self._silence(charger), self._trigger, event.charger_id, event.connector)

    def meter_changed(self, event):
        """
        A reading came: the silence starts anew.
        """
        timer = self._timers.get((event.charger_id, event.connector))
        if timer is not None:
            timer.reset(self._silence(self.central.chargers[event.charger_id]))

    def transaction_stopped(self, event):
        """
        The session ended: no more watching.
        """
        self._cancel((event.charger_id, event.connector))

    def _cancel(self, key):
        timer = self._timers.pop(key, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _trigger(self, charger_id, connector):
        charger = self.central.chargers.get(charger_id)
        if charger is None:
            del self._timers[(charger_id, connector)]
            return
        silence = self._silence(charger)
        if self.sender.connected(charger):
            self.log.info("{id}/{connector}: no MeterValues for {silence} s in a session, "
                          "asking for them", id=charger_id, connector=connector, silence=silence)
            self.sender.call(charger, m.TriggerMessageRequest(requested_message="MeterValues",
                                                              connector_id=connector))
        self._timers[(charger_id, connector)] = self.clock.callLater(
            silence, self._trigger, charger_id, connector)

    def stop(self):
        """
        Cancel every timer (the service stops).
        """
        for key in list(self._timers):
            self._cancel(key)
