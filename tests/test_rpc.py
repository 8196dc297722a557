"""
Tests for L{xxterocpp.ocpp.rpc}: framing, CALLERROR mapping, the outgoing
call queue and its timeouts, driven with a fake clock and no sockets.
"""

import json

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from xxterocpp.ocpp import messages as m
from xxterocpp.pacing import LINE_BURST, LINE_RATE
from xxterocpp.ocpp.rpc import (
    MAX_DEPTH, CallError, CallTimeout, NotConnected, OcppSession, nesting_depth)


class SessionHarness:
    """
    An L{OcppSession} with its output captured and a scripted dispatcher.
    """

    def __init__(self, dispatch=None, timeout=30):
        self.clock = Clock()
        self.sent = []
        self.seen = []
        self.closed = 0
        self.dispatched = []
        self.session = OcppSession(
            "CP1", self._send, dispatch or self.dispatch, self.clock, timeout,
            frame_observer=lambda d, t: self.seen.append((d, t)),
            close=self._close)

    def _send(self, text):
        # What the WebSocket does with it: a text frame is UTF-8.
        text.encode("utf-8")
        self.sent.append(text)

    def _close(self):
        self.closed += 1

    def dispatch(self, action, request):
        self.dispatched.append((action, request))
        if action == "Heartbeat":
            return m.HeartbeatResponse(current_time=self.now())
        if action == "MeterValues":
            return m.MeterValuesResponse()
        if action == "StopTransaction":
            return m.StopTransactionResponse()
        if action == "Authorize":
            raise CallError(m.SECURITY_ERROR, "not now")
        raise RuntimeError("boom")

    def now(self):
        from datetime import datetime, timezone

        return datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)

    def receive(self, frame):
        self.session.text_received(frame if isinstance(frame, str) else json.dumps(frame))

    def last(self):
        return json.loads(self.sent[-1])


class IncomingCallTests(SynchronousTestCase):
    """
    CALLs from the charger.
    """

    def test_call_is_answered_with_callresult(self):
        """
        A valid CALL is dispatched and answered with its id.
        """
        h = SessionHarness()
        h.receive([2, "abc", "Heartbeat", {}])
        self.assertEqual(h.last(), [3, "abc", {"currentTime": "2026-01-02T03:04:05.000Z"}])
        self.assertEqual(h.seen[0][0], "in")
        self.assertEqual(h.seen[1][0], "out")

    def test_unknown_action_is_not_implemented(self):
        """
        OCPP-J Table 7: an action the receiver does not know is NotImplemented.
        """
        h = SessionHarness()
        h.receive([2, "1", "FooBar", {}])
        self.assertEqual(h.last()[:3], [4, "1", "NotImplemented"])

    def test_central_system_action_from_charger_is_not_supported(self):
        """
        A known action only a central system sends is NotSupported.
        """
        h = SessionHarness()
        h.receive([2, "1", "RemoteStartTransaction", {"idTag": "X"}])
        self.assertEqual(h.last()[:3], [4, "1", "NotSupported"])

    def test_validation_errors_map_to_their_codes(self):
        """
        Each kind of bad payload gets its CALLERROR code and the session
        stays usable.
        """
        h = SessionHarness()
        cases = [
            ([2, "1", "Heartbeat", []], "FormationViolation"),
            ([2, "2", "Heartbeat", {"foo": 1}], "FormationViolation"),
            ([2, "3", "Authorize", {}], "ProtocolError"),
            ([2, "4", "Authorize", {"idTag": 5}], "TypeConstraintViolation"),
            ([2, "5", "StatusNotification",
              {"connectorId": 1, "errorCode": "NoError", "status": "Sleeping"}],
             "PropertyConstraintViolation"),
        ]
        for frame, code in cases:
            h.receive(frame)
            answer = h.last()
            self.assertEqual(answer[:3], [4, frame[1], code], frame)
            self.assertEqual(answer[4], {})
        h.receive([2, "6", "Heartbeat", {}])
        self.assertEqual(h.last()[0], 3)

    def test_handler_call_error_is_sent(self):
        """
        A handler raising L{CallError} answers with that code.
        """
        h = SessionHarness()
        h.receive([2, "7", "Authorize", {"idTag": "AB"}])
        self.assertEqual(h.last(), [4, "7", "SecurityError", "not now", {}])

    def test_handler_crash_is_internal_error(self):
        """
        A failing handler answers InternalError and is logged, the session
        stays up.
        """
        h = SessionHarness()
        h.receive([2, "8", "BootNotification",
                   {"chargePointVendor": "V", "chargePointModel": "M"}])
        self.assertEqual(h.last()[:3], [4, "8", "InternalError"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        h.receive([2, "9", "Heartbeat", {}])
        self.assertEqual(h.last()[0], 3)

    def test_truncated_json_with_readable_id_gets_formation_violation(self):
        """
        A CALL cut short still gets an answer when its id can be read.
        """
        h = SessionHarness()
        h.receive('[2, "42", "Heartbeat", {')
        self.assertEqual(h.last()[:3], [4, "42", "FormationViolation"])

    def test_garbage_is_ignored(self):
        """
        Frames without a readable CALL id, and unknown message types, are
        ignored without an answer.
        """
        h = SessionHarness()
        for frame in ["hello", "{}", "[]", "[9, \"1\"]", "null", "[2]"]:
            h.receive(frame)
        self.assertEqual(h.sent, [])

    def test_overlong_message_id(self):
        """
        OCPP-J §4.1.4: ids are at most 36 characters.
        """
        h = SessionHarness()
        h.receive([2, "x" * 37, "Heartbeat", {}])
        self.assertEqual(h.last()[:3], [4, "x" * 37, "FormationViolation"])

    def test_stop_transaction_is_acknowledged_even_when_malformed(self):
        """
        StopTransaction is decoded leniently: a wrong field does not cost the
        charger its acknowledgement.
        """
        h = SessionHarness()
        h.receive([2, "s", "StopTransaction",
                   {"transactionId": 5, "meterStop": "lots", "timestamp": "2026-01-01T00:00:00Z",
                    "idTag": "A" * 30}])
        self.assertEqual(h.last(), [3, "s", {}])
        self.assertEqual(h.dispatched[-1][1].meter_stop, None)
        self.assertGreater(h.session.warnings, 0)

    def test_deferred_handler_result(self):
        """
        A handler may answer later through a Deferred.
        """
        d = defer.Deferred()
        h = SessionHarness(dispatch=lambda action, request: d)
        h.receive([2, "later", "Heartbeat", {}])
        self.assertEqual(h.sent, [])
        d.callback(m.HeartbeatResponse(current_time=h.now()))
        self.assertEqual(h.last()[:2], [3, "later"])


class HostileFrameTests(SynchronousTestCase):
    """
    Frames built to break the parser or what comes after it: answered (or
    ignored) like any bad frame, and the session stays usable.
    """

    def assertServing(self, h):
        h.receive([2, "alive", "Heartbeat", {}])
        self.assertEqual(h.last()[:2], [3, "alive"])

    def test_garbage_flood_writes_few_lines(self):
        """
        1,000 malformed frames: every one is answered, but LINE_BURST log
        lines are written, then one per 1 / LINE_RATE seconds, which counts
        the lines held back.
        """
        h = SessionHarness()
        with capturedLogs() as events:
            for i in range(1000):
                h.receive(f'[2,"g{i}","Heartbeat",{{]')
            self.assertEqual(h.last()[:3], [4, "g999", "FormationViolation"])
            self.assertEqual(len(events), LINE_BURST)
            h.clock.advance(1 / LINE_RATE)
            h.receive('[2,"late","Heartbeat",{]')
            h.receive('[2,"later","Heartbeat",{]')
        lines = [formatEvent(e) for e in events]
        self.assertEqual(len(lines), LINE_BURST + 1)
        self.assertIn("malformed frame", lines[-1])
        self.assertIn(f"({1000 - LINE_BURST} such lines held back before this one)", lines[-1])
        self.assertServing(h)

    def test_thousands_of_levels_get_formation_violation(self):
        """
        5,000 nested arrays (or objects) would make json.loads raise
        RecursionError: a FormationViolation CALLERROR instead.
        """
        h = SessionHarness()
        for i, (open_, close) in enumerate((("[", "]"), ('{"a":', "}"))):
            h.receive(f'[2,"deep{i}","Heartbeat",' + open_ * 5000 + "1" + close * 5000 + "]")
            self.assertEqual(h.last()[:4], [4, f"deep{i}", "FormationViolation",
                                           f"nested deeper than {MAX_DEPTH} levels"])
        h.receive('[2,"cut","Heartbeat",' + "[" * 5000)
        self.assertEqual(h.last()[:3], [4, "cut", "FormationViolation"])
        self.assertEqual(h.dispatched, [])
        self.assertServing(h)

    def test_nesting_just_beyond_the_limit_is_refused(self):
        """
        A frame nested MAX_DEPTH levels is parsed and judged by its schema;
        one more level is refused before the decoder sees it.
        """
        h = SessionHarness()

        def frame(depth):
            # The frame's array and the payload object are two levels.
            inner = "[" * (depth - 2) + "]" * (depth - 2)
            return f'[2,"d{depth}","Heartbeat",{{"x":{inner}}}]'

        h.receive(frame(MAX_DEPTH))
        self.assertEqual(h.last()[:4], [4, f"d{MAX_DEPTH}", "FormationViolation",
                                       "x: unknown property"])
        h.receive(frame(MAX_DEPTH + 1))
        self.assertEqual(h.last()[:4], [4, f"d{MAX_DEPTH + 1}", "FormationViolation",
                                       f"nested deeper than {MAX_DEPTH} levels"])
        self.assertServing(h)

    def test_brackets_in_strings_and_wide_frames_are_not_deep(self):
        """
        Brackets inside strings do not nest, and many siblings are not
        depth: a MeterValues of 200 samples is served.
        """
        h = SessionHarness()
        h.receive([2, "s", "Authorize", {"idTag": "[" * 500}])
        self.assertEqual(h.last()[:3], [4, "s", "SecurityError"])
        samples = [{"value": str(i)} for i in range(200)]
        h.receive([2, "w", "MeterValues", {"connectorId": 1, "meterValue": [
            {"timestamp": "2026-01-01T00:00:00Z", "sampledValue": samples}]}])
        self.assertEqual(h.last(), [3, "w", {}])

    def test_nesting_depth(self):
        """
        Lists and dicts count, scalars and strings do not.
        """
        self.assertEqual(nesting_depth(3), 0)
        self.assertEqual(nesting_depth("[[["), 0)
        self.assertEqual(nesting_depth([]), 1)
        self.assertEqual(nesting_depth([1, {"a": [2]}, []]), 3)
        self.assertEqual(nesting_depth(json.loads("[" * 500 + "]" * 500)), 500)

    def test_lone_surrogate_in_a_field_is_type_constraint_violation(self):
        """
        C{"Evil\\ud800"}: refused with the field's path, nothing
        dispatched; a valid escaped pair is text.
        """
        h = SessionHarness()
        h.receive(r'[2,"b","BootNotification",{"chargePointVendor":"Evil\ud800",'
                  r'"chargePointModel":"M"}]')
        code, description = h.last()[2:4]
        self.assertEqual(code, "TypeConstraintViolation")
        self.assertTrue(description.startswith("chargePointVendor: "), description)
        h.receive(r'[2,"a","Authorize",{"idTag":"\udc00"}]')
        self.assertEqual(h.last()[:3], [4, "a", "TypeConstraintViolation"])
        self.assertEqual(h.dispatched, [])
        h.receive(r'[2,"p","Authorize",{"idTag":"\ud83d\ude00"}]')
        self.assertEqual(h.last()[:3], [4, "p", "SecurityError"])
        self.assertEqual(h.dispatched[0][1].id_tag, "\U0001f600")

    def test_lone_surrogate_in_always_acknowledged_call(self):
        """
        StopTransaction is still acknowledged; the field is dropped.
        """
        h = SessionHarness()
        h.receive(r'[2,"s","StopTransaction",{"transactionId":5,"meterStop":9,'
                  r'"timestamp":"2026-01-01T00:00:00Z","idTag":"\ud800"}]')
        self.assertEqual(h.last(), [3, "s", {}])
        self.assertIsNone(h.dispatched[-1][1].id_tag)

    def test_lone_surrogate_in_a_property_name(self):
        """
        The CALLERROR names the property escaped (it could not be sent
        otherwise).
        """
        h = SessionHarness()
        h.receive(r'[2,"k","Heartbeat",{"x\ud800":1}]')
        self.assertEqual(h.last()[:3], [4, "k", "FormationViolation"])
        self.assertIn("\\ud800", h.last()[3])
        self.assertServing(h)

    def test_lone_surrogate_in_the_message_id_is_not_answered(self):
        """
        An answer must repeat the id and this one cannot be sent: the frame
        is dropped like one whose id is unreadable.
        """
        h = SessionHarness()
        h.receive(r'[2,"\ud800","Heartbeat",{}]')
        self.assertEqual(h.sent, [])
        self.assertServing(h)

    def test_integer_beyond_64_bits(self):
        """
        meterStart = 2**63 is a TypeConstraintViolation: no transaction.
        """
        h = SessionHarness()
        h.receive([2, "t", "StartTransaction", {"connectorId": 1, "idTag": "A",
                                                 "meterStart": 2**63,
                                                 "timestamp": "2026-01-01T00:00:00Z"}])
        self.assertEqual(h.last()[:3], [4, "t", "TypeConstraintViolation"])
        self.assertEqual(h.dispatched, [])


class OutgoingCallTests(SynchronousTestCase):
    """
    Our CALLs to the charger.
    """

    def test_one_outstanding_call_at_a_time(self):
        """
        The second call waits until the first is answered.
        """
        h = SessionHarness()
        d1 = h.session.call(m.ClearCacheRequest())
        d2 = h.session.call(m.ResetRequest(type="Soft"))
        self.assertEqual(len(h.sent), 1)
        first = h.last()
        self.assertEqual(first[0], 2)
        self.assertEqual(first[2], "ClearCache")
        h.receive([3, first[1], {"status": "Accepted"}])
        self.assertEqual(self.successResultOf(d1).status, "Accepted")
        second = h.last()
        self.assertEqual(second[2:], ["Reset", {"type": "Soft"}])
        self.assertNoResult(d2)
        h.receive([3, second[1], {"status": "Rejected"}])
        self.assertEqual(self.successResultOf(d2).status, "Rejected")

    def test_timeout_moves_the_queue_on(self):
        """
        An unanswered call fails with L{CallTimeout} after the call timeout
        and the next call goes out; a late answer is dropped.
        """
        h = SessionHarness(timeout=30)
        d1 = h.session.call(m.ClearCacheRequest())
        d2 = h.session.call(m.ClearCacheRequest())
        first_id = h.last()[1]
        h.clock.advance(29.9)
        self.assertNoResult(d1)
        h.clock.advance(0.2)
        self.failureResultOf(d1, CallTimeout)
        self.assertEqual(len(h.sent), 2)
        h.receive([3, first_id, {"status": "Accepted"}])
        self.assertNoResult(d2)
        h.receive([3, h.last()[1], {"status": "Accepted"}])
        self.successResultOf(d2)
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_callerror_answer(self):
        """
        A CALLERROR fails the call with L{CallError}; 2.0.1 spellings are
        normalised.
        """
        h = SessionHarness()
        d = h.session.call(m.ClearCacheRequest())
        h.receive([4, h.last()[1], "FormatViolation", "bad", {"x": 1}])
        failure = self.failureResultOf(d, CallError)
        self.assertEqual(failure.value.code, "FormationViolation")
        self.assertEqual(failure.value.details, {"x": 1})

    def test_callerror_answer_with_lone_surrogates(self):
        """
        The code and description of a CALLERROR are only shown: a lone
        surrogate in them becomes "?".
        """
        h = SessionHarness()
        d = h.session.call(m.ClearCacheRequest())
        h.receive(f'[4,"{h.last()[1]}","Evil\\ud800","bad \\udc00 news",{{}}]')
        failure = self.failureResultOf(d, CallError)
        self.assertEqual((failure.value.code, failure.value.description),
                         ("Evil?", "bad ? news"))

    def test_callresult_with_lone_surrogate(self):
        """
        A CALLRESULT is decoded leniently: the field becomes None.
        """
        h = SessionHarness()
        d = h.session.call(m.DataTransferRequest(vendor_id="com.acme"))
        h.receive(f'[3,"{h.last()[1]}",{{"status":"Accepted","data":"\\ud800"}}]')
        answer = self.successResultOf(d)
        self.assertEqual((answer.status, answer.data), ("Accepted", None))

    def test_connection_lost_fails_every_pending_call(self):
        """
        Queued and outstanding calls fail with L{NotConnected}; later calls
        fail at once.
        """
        h = SessionHarness()
        d1 = h.session.call(m.ClearCacheRequest())
        d2 = h.session.call(m.ClearCacheRequest())
        h.session.connection_lost()
        self.failureResultOf(d1, NotConnected)
        self.failureResultOf(d2, NotConnected)
        self.failureResultOf(h.session.call(m.ClearCacheRequest()), NotConnected)
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_close_asks_the_transport(self):
        """
        L{OcppSession.close} closes the connection while it is open.
        """
        h = SessionHarness()
        h.session.close()
        self.assertEqual(h.closed, 1)
        h.session.connection_lost()
        h.session.close()
        self.assertEqual(h.closed, 1)


class LenientAnswersTests(SynchronousTestCase):
    """
    L{OcppSession.lenient_answers} (docs/quirks.md#lenient-answers): answers
    that are no JSON object, or no JSON at all, are taken.
    """

    def test_answer_that_is_no_object(self):
        """
        A CALLRESULT payload that is no object fails the call by default;
        leniently it is an empty answer.
        """
        h = SessionHarness()
        d = h.session.call(m.ClearCacheRequest())
        h.receive([3, h.last()[1], "Accepted"])
        self.assertEqual(self.failureResultOf(d, CallError).value.code, m.FORMATION_VIOLATION)
        h.session.lenient_answers = True
        d = h.session.call(m.ClearCacheRequest())
        h.receive([3, h.last()[1], "Accepted"])
        self.assertIsNone(self.successResultOf(d).status)

    def test_answer_that_is_no_json(self):
        """
        Leniently, an answer that is no JSON is taken for the call it names,
        with its status word; one naming another call is still malformed.
        """
        h = SessionHarness()
        h.session.lenient_answers = True
        d = h.session.call(m.ClearCacheRequest())
        h.receive('[3,"other",{"status":"Accepted",}]')
        self.assertNoResult(d)
        h.receive(f'[3,"{h.last()[1]}",{{"status":"Accepted",}}]')
        self.assertEqual(self.successResultOf(d).status, "Accepted")
        d = h.session.call(m.GetLocalListVersionRequest())
        h.receive(f'[3,"{h.last()[1]}",{{listVersion: 3}}]')
        self.assertIsNone(self.successResultOf(d).list_version)
