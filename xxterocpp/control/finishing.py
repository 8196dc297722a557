# -*- test-case-name: tests.test_workarounds -*-
"""
The C{finishing-recovery} workaround (docs/quirks.md#finishing-recovery):
after a remote stop some chargers stay in Finishing, refusing new sessions,
until the cable is unplugged. A connector of such a charger still in
Finishing L{FINISHING_WAIT} seconds after a remote stop gets
UnlockConnector, then ChangeAvailability Inoperative and Operative.
"""

from twisted.internet import defer
from twisted.logger import Logger

from xxterocpp.ocpp import messages as m

#: Seconds in Finishing after a remote stop before the recovery.
FINISHING_WAIT = 60.0

#: Statuses a connector may report between the remote stop and Finishing.
_STOPPING = frozenset({"Charging", "SuspendedEV", "SuspendedEVSE"})


class FinishingRecovery:
    """
    The connectors of chargers with C{finishing-recovery} stopped remotely,
    each watched until it leaves Finishing.

    @ivar wait: seconds in Finishing before the recovery (L{FINISHING_WAIT}).
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
        self.wait = FINISHING_WAIT
        # (charger id, connector) -> the recovery's DelayedCall once the
        # connector is in Finishing, None before.
        self._watched = {}

    def stop_answered(self, result, charger_id, connector):
        """
        The answer to a RemoteStopTransaction (a L{CommandResult}): an
        accepted one starts the watch.

        @return: C{result}.
        """
        charger = self.central.chargers.get(charger_id)
        if result.accepted and charger is not None and charger.quirks.has("finishing-recovery"):
            self._cancel((charger_id, connector))
            self._watched[(charger_id, connector)] = None
            if charger.connector(connector).status == "Finishing":
                self._arm((charger_id, connector))
        return result

    def status_changed(self, event):
        """
        A watched connector in Finishing: the recovery waits L{wait}; out
        of it again: no recovery.
        """
        key = (event.charger_id, event.connector)
        if key not in self._watched:
            return
        status = self.central.chargers[event.charger_id].connector(event.connector).status
        if status == "Finishing":
            if self._watched[key] is None:
                self._arm(key)
        elif status not in _STOPPING or self._watched[key] is not None:
            self._cancel(key)

    def _arm(self, key):
        self._watched[key] = self.clock.callLater(self.wait, self._recover, key)

    def _cancel(self, key):
        call = self._watched.pop(key, None)
        if call is not None and call.active():
            call.cancel()

    @defer.inlineCallbacks
    def _recover(self, key):
        del self._watched[key]
        charger_id, connector = key
        charger = self.central.chargers.get(charger_id)
        if charger is None or charger.connector(connector).status != "Finishing":
            return
        self.log.warn("{id}/{connector}: still Finishing {wait:.0f} s after a remote stop: "
                      "unlocking the connector, then cycling its availability", id=charger_id,
                      connector=connector, wait=self.wait)
        for request in (m.UnlockConnectorRequest(connector_id=connector),
                        m.ChangeAvailabilityRequest(connector_id=connector, type="Inoperative"),
                        m.ChangeAvailabilityRequest(connector_id=connector, type="Operative")):
            result = yield self.sender.call(charger, request)
            if result.status == "NotConnected":
                return

    def stop(self):
        """
        Cancel every recovery (the service stops).
        """
        for key in list(self._watched):
            self._cancel(key)
