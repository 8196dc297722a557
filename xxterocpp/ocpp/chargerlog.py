# -*- test-case-name: tests.test_server,tests.test_line_budget -*-
"""
Autobahn's logger of a charger's open connection (L{ChargerLog}): its lines
within the charger's line budget. L{xxterocpp.ocpp.server} puts one in
place of Autobahn's own once the handshake is over.
"""

from twisted.logger import Logger

#: Where Autobahn's lines of an open connection go (L{ChargerLog}).
AUTOBAHN_LOG = Logger(namespace="autobahn.websocket.protocol")


class ChargerLog:
    """
    Autobahn's logger of a charger's open connection: its debug and trace
    calls (several a frame) do nothing, as with its own logger at our
    level; its other lines go within the charger's line budget
    (L{xxterocpp.domain.model.Charger.line_due}). Autobahn writes one for
    each pong that answers no pending ping, and one for each connection it
    drops or fails: a charger may send a hundred such pongs a second, or
    reconnect and misbehave in a loop.
    """

    __slots__ = ("_charger", "_clock")

    def __init__(self, charger, clock):
        self._charger = charger
        self._clock = clock

    def debug(self, *args, **kwargs):
        pass

    trace = debug

    def _line(self, level, format, **fields):
        self._charger.chatter(AUTOBAHN_LOG, level, self._clock.seconds(),
                              "{charger}: " + (format or ""), charger=self._charger.id, **fields)

    def info(self, format=None, **fields):
        self._line("info", format, **fields)

    def warn(self, format=None, **fields):
        self._line("warn", format, **fields)

    def error(self, format=None, **fields):
        self._line("error", format, **fields)

    critical = error

    def failure(self, format=None, failure=None, **fields):
        self._line("failure", format, failure=failure, **fields)
