"""
More attacks on the OCPP port and the web interface (issues 15 and 16),
each against the real service over loopback and each shown to fail
safely: frames that make long log lines, meter values that are no numbers.

Traffic goes only to 127.0.0.0/8, bounded in count and time; the helpers
are those of L{tests.test_attacks}.
"""

import json

from twisted.internet import defer
from twisted.logger import capturedLogs, formatEvent

from tests.test_attacks import AttackTestCase


def log_size(events):
    """
    @return: the characters of the captured log events, as written.
    """
    return sum(len(formatEvent(e)) for e in events)


class LogAmplificationTests(AttackTestCase):
    """
    A frame of 64 KiB at most must not become a log line of a megabyte.
    """

    @defer.inlineCallbacks
    def test_meter_values_of_18000_bad_sampled_values(self):
        """
        MeterValues (decoded leniently: always acknowledged) with 18,000
        sampled values that are no objects, a 54 KB frame: acknowledged;
        its log line names 10 of the problems and counts the rest (the
        line was 1.5 MB).
        """
        with capturedLogs() as events:
            answer = yield self.raw_call(json.dumps([2, "mv", "MeterValues", {
                "connectorId": 1, "meterValue": [{"timestamp": "2026-01-01T00:00:00Z",
                                                  "sampledValue": [0] * 18_000}]}]))
        self.assertEqual(answer, [3, "mv", {}])
        [line] = [formatEvent(e) for e in events if "tolerated" in formatEvent(e)]
        # The 18,000 and what follows from them (no sampled value left).
        self.assertRegex(line, r"; and 179\d\d more$")
        self.assertLess(log_size(events), 4096)
        yield self.assertServing()

    @defer.inlineCallbacks
    def test_answers_to_calls_never_made(self):
        """
        20 CALLRESULTs and CALLERRORs for ids never sent and a frame of an
        unknown type, each id or type 60,000 characters: dropped, a short
        line each (they were 1.2 MB).
        """
        with capturedLogs() as events:
            for i in range(10):
                self.cp.send_raw(json.dumps([3, "x" * 60_000 + str(i), {}]))
                self.cp.send_raw(json.dumps([4, "y" * 60_000 + str(i), "GenericError", "", {}]))
            self.cp.send_raw(json.dumps(["z" * 60_000, "t"]))
            yield self.assertServing()
        dropped = [e for e in events if "unknown" in e.get("log_format", "")]
        self.assertEqual(len(dropped), 21)
        self.assertLess(max(len(formatEvent(e)) for e in dropped), 200)
        self.assertLess(log_size(events), 21 * 200 + 4096)
