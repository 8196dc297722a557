# -*- test-case-name: tests.test_workarounds,tests.test_server -*-
"""
The workarounds a charger's WebSocket connection itself honours
(docs/quirks.md#named-workarounds): C{lenient-answers}, C{no-ping} (no
WebSocket pings; a dead connection shows by the charger's silence) and
C{keepalive} (some traffic every so many seconds).

L{ConnectionQuirks} is a mixin of L{xxterocpp.ocpp.server.OcppServerProtocol},
as L{xxterocpp.ocpp.budget.FrameBudget} is: its timers act on Autobahn's
protocol object (its pings, its transport), and a separate object would be
one more reference cycle for every connection to break.
"""

from xxterocpp.ocpp import messages as m
from xxterocpp.quirks import NO_QUIRKS

#: A charger that gets no WebSocket pings (C{no-ping}) counts as gone after
#: this many heartbeat intervals without a frame from it.
SILENT_HEARTBEATS = 3


class ConnectionQuirks:
    """
    The connection's workarounds, applied when it opens and after each boot
    (L{_honour_quirks}), and their timers.

    Of the protocol it is mixed into it uses C{factory} (its C{central} and
    C{clock}), C{charger_id}, C{session}, C{transport}, C{state}, C{_log},
    C{flooding_since} (L{xxterocpp.ocpp.budget.FrameBudget}) and Autobahn's
    pings; the protocol sets C{_heard_at} for every message.
    """

    #: The timers of the no-ping silence watch and of the keepalive, while
    #: they run.
    _silence_call = None
    _keepalive_call = None
    #: When the charger was last heard on this connection (the reactor's
    #: monotonic clock): its silence is a duration, not a difference of
    #: times of day that a step of the system clock would change.
    _heard_at = None
    #: Whether the charger answered one of Autobahn's pings.
    _ponged = False

    def _honour_quirks(self):
        """
        Apply the charger's workarounds to this connection, when it opens
        and after each boot.
        """
        charger = self.factory.central.chargers.get(self.charger_id)
        quirks = NO_QUIRKS if charger is None else charger.quirks
        self.session.lenient_answers = quirks.has("lenient-answers")
        self._cancel_quirk_timers()
        no_ping = quirks.has("no-ping")
        if no_ping:
            self._stop_pings()
            self._watch_silence()
        interval = quirks.parameter("keepalive", "interval")
        if interval and (no_ping or not self.autoPingInterval or self.autoPingInterval > interval):
            # Autobahn's pings alone would not come often enough.
            self._keepalive_call = self.factory.clock.callLater(
                interval, self._keep_alive, interval, no_ping)

    def _cancel_quirk_timers(self):
        for call in (self._silence_call, self._keepalive_call):
            if call is not None and call.active():
                call.cancel()
        self._silence_call = self._keepalive_call = None

    def _keep_alive(self, interval, no_ping):
        """
        docs/quirks.md#keepalive: some traffic every C{interval} seconds, or
        the charger closes the connection: a WebSocket ping, or for one that
        takes none a TriggerMessage(Heartbeat) (an OCPP exchange of the
        connection, like a ping, not a command).
        """
        self._keepalive_call = None
        if self.state != self.STATE_OPEN:
            return
        if no_ping:
            self.session.call(m.TriggerMessageRequest(requested_message="Heartbeat")).addErrback(
                lambda failure: None)
        else:
            self.sendPing()
        self._keepalive_call = self.factory.clock.callLater(
            interval, self._keep_alive, interval, no_ping)

    def _stop_pings(self):
        # Learnt from a boot on an open connection: Autobahn's next ping (or
        # the wait for its pong) is scheduled already.
        self.autoPingInterval = 0
        for name in ("autoPingPendingCall", "autoPingTimeoutCall"):
            call = getattr(self, name, None)
            if call is not None:
                call.cancel()
                setattr(self, name, None)
        self.autoPingPending = None

    def _watch_silence(self):
        """
        docs/quirks.md#no-ping: without pings, a dead connection shows by the
        charger's silence: nothing for L{SILENT_HEARTBEATS} heartbeat
        intervals, and it is dropped.
        """
        self._silence_call = None
        central = self.factory.central
        charger = central.chargers.get(self.charger_id)
        if charger is None or charger.session is not self.session:
            return
        limit = SILENT_HEARTBEATS * central.config.ocpp.heartbeat_interval
        silent = self.factory.clock.seconds() - self._heard_at
        if silent >= limit:
            self._log.warn("{id}: nothing heard for {silent:.0f} s ({n} heartbeat intervals): "
                           "the connection counts as dead", id=self.charger_id, silent=silent,
                           n=SILENT_HEARTBEATS)
            self.transport.abortConnection()
            return
        self._silence_call = self.factory.clock.callLater(limit - silent, self._watch_silence)

    def onAutoPong(self, *args):
        self._ponged = True
        super().onAutoPong(*args)

    def onAutoPingTimeout(self):
        # Autobahn drops the connection. One that never answered a ping
        # (a dead link answered the ones before) is worth a suggestion.
        # A flooding one's pong waits behind its flood (FrameBudget).
        if self.charger_id is not None and not self._ponged and self.flooding_since is None:
            self.factory.central.suggest_quirk(
                self.charger_id, "no-ping", "it did not answer a WebSocket ping")
        super().onAutoPingTimeout()
