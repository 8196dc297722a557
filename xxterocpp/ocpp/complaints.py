# -*- test-case-name: tests.test_rpc -*-
"""
What an L{xxterocpp.ocpp.rpc.OcppSession} does with a peer's frames that are
not right: a malformed one is answered with a FormationViolation when its
message id can be read, an answer that is no JSON is salvaged for a
charger with C{lenient-answers} (docs/quirks.md#lenient-answers), and each
is told in a log line, within the connection's budget of lines
(L{Complaints}).
"""

import re

from xxterocpp.ocpp import messages as m
from xxterocpp.ocpp.messages import CALLERROR, CALLRESULT
from xxterocpp.pacing import LINE_BURST, LINE_RATE, LineBudget, write_line


#: How many of a frame's tolerated problems its log line lists; the others
#: are counted. A 64 KiB MeterValues of bad sampled values holds 18,000.
MAX_LOGGED_WARNINGS = 10

#: The longest part of a frame a log line quotes (a message id, a type).
MAX_QUOTED = 60

_CALL_ID = re.compile(r'^\s*\[\s*2\s*,\s*"([^"\\]{1,36})"')

# An answer that is no JSON, from a charger with lenient-answers: its
# message id, and a status word in it.
_RESULT_ID = re.compile(r'^\s*\[\s*3\s*,\s*"([^"\\]{1,36})"')
_STATUS_WORD = re.compile(r'"status"\s*:\s*"(\w+)"')


def quoted(value):
    """
    @return: C{repr(value)} for a log line, cut after L{MAX_QUOTED}
        characters: what a peer put in a frame is as long as it likes.
    """
    text = repr(value)
    return text if len(text) <= MAX_QUOTED else text[:MAX_QUOTED] + "..."


def listed(warnings):
    """
    @return: the first L{MAX_LOGGED_WARNINGS} C{warnings} for a log line,
        and how many more there were.
    """
    shown = "; ".join(warnings[:MAX_LOGGED_WARNINGS])
    more = len(warnings) - MAX_LOGGED_WARNINGS
    return shown + (f"; and {more} more" if more > 0 else "")


class Complaints:
    """
    The part of an L{xxterocpp.ocpp.rpc.OcppSession} that complains about
    its peer's frames; its state is the session's (C{identity}, C{log},
    C{_clock}, C{lenient_answers}, the outstanding call), as are the
    frames it writes.
    """

    __slots__ = ()

    #: The connection's L{LineBudget}, from its first complaint on (most
    #: connections never have one), unless the session was given C{lines}.
    _lines = None

    def _salvaged(self, text):
        """
        An answer that is no JSON (lenient-answers): when it names the
        call being waited for, it is taken, with the status word that can
        be read in it.

        @return: whether it was taken.
        """
        match = _RESULT_ID.match(text)
        if match is None or self._outstanding is None or self._outstanding[0] != match.group(1):
            return False
        status = _STATUS_WORD.search(text)
        payload = {"status": status.group(1)} if status else {}
        self._tolerated(self._outstanding[1], [f"no valid JSON, read as {payload}"])
        self._answer_received([CALLRESULT, match.group(1), payload])
        return True

    def _tolerated(self, action, warnings):
        if not self.lenient_answers:
            self.complain("info", "{action} answer tolerated: {warnings}", action=action,
                           warnings=listed(warnings))
        elif not self._lenience_logged:
            self._lenience_logged = True
            self.log.info("{identity}: {action} answer tolerated: {warnings} (lenient-answers: "
                          "not logged again on this connection)", identity=self.identity,
                          action=action, warnings=listed(warnings))

    def _line_due(self, now):
        # The connection's own budget, when the session was given none.
        if self._lines is None:
            self._lines = LineBudget(LINE_RATE, LINE_BURST, now)
        return self._lines.due(now)

    def complain(self, level, format, **fields):
        """
        Log a line about the peer's frames, within its budget of lines
        (L{LINE_BURST} at once, then one every 1 / L{LINE_RATE} seconds,
        L{xxterocpp.pacing}): per charger over all its connections when
        the session was given the charger's (C{lines}), else per
        connection. The next line written counts those held back.

        @param level: C{"info"}, C{"warn"}, or C{"failure"} (with the
            C{failure} field).
        """
        write_line(self._line_due, self.log, level, self._clock.seconds(),
                   "{identity}: " + format, identity=self.identity, **fields)

    def _malformed(self, text, why):
        match = _CALL_ID.match(text)
        self.complain("warn", "malformed frame ({why}): {text}", why=why, text=text[:200])
        if match:
            self._write([CALLERROR, match.group(1), m.FORMATION_VIOLATION, why, {}])
