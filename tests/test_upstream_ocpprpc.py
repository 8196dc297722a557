"""
A second, independent back office: an C{ocpp-rpc} (npm) server in strict
mode (C{tests/ocpprpc/backoffice.js}), which validates every CALL the
controller forwards and every answer it gives to its CALLs against the OCPP
1.6 JSON schemas. Needs Node and C{tests/ocpprpc/node_modules} (C{make
test} installs them); runs on both stacks.
"""

import json
import os
import shutil

from twisted.internet import defer, protocol, reactor
from twisted.trial.unittest import TestCase

from tests.service import ROOT, ServiceProcess, kill_on_cleanup, start_service
from tests.sim import connect_charger
from tests.test_upstream_backoffice import eventually, upstream_config

HERE = os.path.join(ROOT, "tests", "ocpprpc")
NODE = shutil.which("node")


def _skip_reason():
    if NODE is None:
        return "node is not installed"
    if not os.path.isdir(os.path.join(HERE, "node_modules", "ocpp-rpc")):
        return "ocpp-rpc is not installed: cd tests/ocpprpc && npm install (make test does)"
    return None


class _Lines(protocol.ProcessProtocol):
    def __init__(self, office):
        self.office = office
        self.buffer = b""

    def outReceived(self, data):
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            self.office._event(json.loads(line))

    def errReceived(self, data):
        self.office.errors += data

    def processEnded(self, reason):
        self.office._ended(reason)


class NodeBackOffice:
    """
    The ocpp-rpc back office process.

    @ivar events: every line it printed, decoded.
    @ivar errors: what it printed on stderr.
    """

    def __init__(self, port=0):
        self.events = []
        self.errors = b""
        self.port = None
        self._listening = defer.Deferred()
        self._done = defer.Deferred()
        self._waiting = {}
        self._ids = 0
        self.transport = reactor.spawnProcess(
            _Lines(self), NODE, [NODE, os.path.join(HERE, "backoffice.js"), str(port)], path=HERE,
            env=dict(os.environ))

    def listening(self):
        return self._listening.addTimeout(20, reactor)

    def _event(self, event):
        self.events.append(event)
        if event["event"] == "listening":
            self.port = event["port"]
            self._listening.callback(self)
        elif event["event"] in ("result", "error"):
            self._waiting.pop(event["id"]).callback(event)

    def _ended(self, reason):
        if not self._listening.called:
            self._listening.errback(RuntimeError(self.errors.decode(errors="replace")))
        self._done.callback(None)

    def call(self, identity, method, params):
        """
        Send a CALL to a connected charger.

        @return: a Deferred firing with the result or error event.
        """
        self._ids += 1
        d = self._waiting[self._ids] = defer.Deferred()
        self.transport.write(json.dumps({"id": self._ids, "identity": identity,
                                         "method": method, "params": params}).encode() + b"\n")
        return d.addTimeout(20, reactor)

    def calls(self, method=None):
        return [e for e in self.events if e["event"] == "call"
                and (method is None or e["method"] == method)]

    def invalid(self):
        return [e for e in self.events if e["event"] == "invalid"]

    def stop(self):
        if self._done.called:
            return defer.succeed(None)
        self.transport.closeStdin()
        return self._done.addTimeout(20, reactor)


class StrictBackOfficeTests(TestCase):
    """
    A whole session forwarded to the strict ocpp-rpc back office.
    """

    skip = _skip_reason()
    timeout = 60

    @defer.inlineCallbacks
    def test_session_schema_valid(self):
        """
        Boot, statuses, an unknown tag, start, meter values, stop and the
        back office's commands: every frame we send it is schema-valid, and
        its ids are its own.
        """
        office = NodeBackOffice()
        self.addCleanup(office.stop)
        yield office.listening()
        service = yield start_service(self, upstream_config(
            self, f"ws://127.0.0.1:{office.port}/ocpp"))
        uplink = service.upstream.uplinks["CP1"]
        cp = yield connect_charger(service.url, "CP1")
        self.addCleanup(cp.close)
        yield cp.boot(vendor="Acme", model="Wallbox 11", firmwareVersion="1.2.3")
        yield eventually(lambda: uplink.accepted)
        yield cp.status(1, "Preparing")
        visitor = yield cp.authorize("VISITOR")
        self.assertEqual(visitor["idTagInfo"]["status"], "Accepted")
        start = yield cp.start_transaction(1, "VISITOR", 1000)
        yield cp.meter_values(1, start["transactionId"], energy_wh=1500, currents=(16, 16, 16))
        yield cp.stop_transaction(start["transactionId"], 2000, reason="EVDisconnected",
                                  transaction_data=[{"timestamp": "2030-06-01T12:00:00Z",
                                                     "sampledValue": [{"value": "2000"}]}])
        yield eventually(lambda: office.calls("StopTransaction"))
        configuration = yield office.call("HOME-CP1", "GetConfiguration",
                                          {"key": ["HeartbeatInterval"]})
        remote = yield office.call("HOME-CP1", "RemoteStartTransaction", {"idTag": "VISITOR"})
        reset = yield office.call("HOME-CP1", "Reset", {"type": "Soft"})
        self.assertEqual([e["event"] for e in (configuration, remote, reset)], ["result"] * 3)
        self.assertEqual(reset["result"], {"status": "Rejected"})
        self.assertEqual(office.invalid(), [])
        methods = [e["method"] for e in office.calls() if e["method"] != "StatusNotification"]
        self.assertEqual(methods, ["BootNotification", "Authorize", "StartTransaction",
                                   "MeterValues", "StopTransaction"])
        (stop,) = office.calls("StopTransaction")
        self.assertEqual(stop["params"]["transactionId"], 900001)
        self.assertEqual(office.calls("MeterValues")[0]["params"]["transactionId"], 900001)


class StrictOfflineTests(TestCase):
    """
    The session made while the back office was down, after a SIGKILL of the
    service and its restart, reaches the strict back office (both stacks).
    """

    skip = _skip_reason()
    timeout = 120

    @defer.inlineCallbacks
    def test_session_while_down_survives_sigkill(self):
        """
        Start, meter values and stop reach it once it is back, in order,
        with its own transactionId, once, and schema-valid.
        """
        office = NodeBackOffice()
        yield office.listening()
        port = office.port
        yield office.stop()
        service = ServiceProcess(upstream_config(self, f"ws://127.0.0.1:{port}/ocpp"))
        kill_on_cleanup(self, service)
        yield service.start()
        cp = yield connect_charger(service.url, "CP1")
        yield cp.boot(vendor="Acme", model="Wallbox 11")
        start = yield cp.start_transaction(1, "04A1B2C3", 1000)
        yield cp.meter_values(1, start["transactionId"], energy_wh=1500)
        yield cp.stop_transaction(start["transactionId"], 2000)
        yield service.signal("KILL")
        yield cp.wait_closed()

        office = NodeBackOffice(port)
        self.addCleanup(office.stop)
        yield office.listening()
        yield service.start()
        cp = yield connect_charger(service.url, "CP1")
        self.addCleanup(cp.close)
        yield eventually(lambda: office.calls("StopTransaction"), timeout=30)
        methods = [e["method"] for e in office.calls() if e["method"] != "StatusNotification"]
        self.assertEqual(methods, ["BootNotification", "StartTransaction", "MeterValues",
                                   "StopTransaction"])
        self.assertEqual([e["params"]["transactionId"] for e in office.calls()
                          if e["method"] in ("MeterValues", "StopTransaction")],
                         [900001, 900001])
        self.assertEqual(office.invalid(), [])
        yield cp.close()
        yield service.stop()
        self.assertNotIn(b"Traceback", service.output)
