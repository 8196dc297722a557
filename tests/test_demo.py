# -*- test-case-name: tests.test_demo -*-
"""
C{make demo} (C{tools/demo.py}) run as a newcomer runs it, as a separate
process on free ports: its charger reaches Charging, the status API and a
second knxd client see it, and it stops cleanly on SIGINT (Ctrl-C) or after
its cycles.
"""

import json
import os
import re
import shutil
import sys

from twisted.internet import defer, endpoints, error, protocol, reactor, task
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool, readBody

from tests.knxdtest import connect_peer
from tests.service import ROOT
from xxterocpp.knx.dpt import lookup

DEMO = os.path.join(ROOT, "tools", "demo.py")
STATUS_GA = "9/7/0"
CHARGING_GA = "9/7/1"
ENERGY_GA = "9/7/10"
#: The status object's numbers (docs/knx-objects.md) the tests look for.
AVAILABLE, CHARGING, FINISHING = 0, 2, 5

_STATUS_PAGE = re.compile(r"status page: +(http://127\.0\.0\.1:\d+/)")
_BUS = re.compile(r"groupsocketlisten local:(\S+)")
_CONFIG = re.compile(r"configuration: +(\S+)")
_REMOTE_STOP = re.compile(r"StopTransaction \(Remote\)")


class DemoProcess(protocol.ProcessProtocol):
    """
    C{tools/demo.py} as a child process; what it prints is kept (it runs
    for seconds, so that stays small) for assertions and failure messages.

    @ivar ended: fires with the exit reason (an exception).
    """

    def __init__(self):
        self.output = ""
        self.ended = defer.Deferred()

    def start(self, *args):
        reactor.spawnProcess(self, sys.executable, [sys.executable, DEMO, *args],
                             env=dict(os.environ), path=ROOT)

    def outReceived(self, data):
        self.output += data.decode("utf-8", "replace")

    errReceived = outReceived

    def processEnded(self, reason):
        self.ended.callback(reason.value)

    @defer.inlineCallbacks
    def wait_for(self, pattern, timeout=30.0):
        """
        The first match of C{pattern} in the output, once printed.
        """
        for _ in range(int(timeout / 0.1)):
            match = pattern.search(self.output)
            if match:
                return match
            if self.ended.called:
                break
            yield task.deferLater(reactor, 0.1, lambda: None)
        raise AssertionError(f"{pattern.pattern!r} not printed; output:\n{self.output}")

    def wait_ended(self, timeout=30.0):
        """
        @return: a Deferred firing with the exit code.
        """

        def timed_out(failure):
            failure.trap(defer.TimeoutError)
            raise AssertionError(f"demo still running after {timeout} s; output:\n{self.output}")

        ended = defer.Deferred()
        if self.ended.called:
            ended.callback(None)
        else:
            self.ended.addBoth(lambda reason: (ended.callback(None), reason)[1])
        ended.addTimeout(timeout, reactor).addErrback(timed_out)
        return ended.addCallback(lambda _: self.exit_code)

    @property
    def exit_code(self):
        """
        The exit code, once ended (L{None} for death by a signal).
        """
        return self.ended.result.exitCode

    def kill(self):
        """
        At cleanup: SIGTERM (the demo stops its children), then SIGKILL.
        """
        if self.ended.called:
            return None
        self.transport.signalProcess("TERM")
        d = self.wait_ended(20)

        def still_there(failure):
            failure.trap(AssertionError)
            self.transport.signalProcess("KILL")
            return self.wait_ended(5)

        return d.addErrback(still_there)


class DemoTests(unittest.TestCase):
    """
    The demo's charger charges, the page and the bus show it, and the demo
    leaves nothing behind.
    """

    def setUp(self):
        if shutil.which("knxd") is None:
            raise unittest.SkipTest("knxd is not installed (apt-get install knxd)")
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.agent = Agent(reactor, pool=pool)
        self.addCleanup(pool.closeCachedConnections)

    @defer.inlineCallbacks
    def start_demo(self, *args):
        """
        Start the demo on free ports and connect a bus peer to its knxd.

        @return: the L{DemoProcess}, its status page URL, its configuration
            path and the L{BusPeer}.
        """
        demo = DemoProcess()
        demo.start("--web-port", "0", "--ocpp-port", "0", *args)
        self.addCleanup(demo.kill)
        # the charger connects after these lines: the peer hears its session
        page = (yield demo.wait_for(_STATUS_PAGE)).group(1)
        socket_path = (yield demo.wait_for(_BUS)).group(1)
        config = (yield demo.wait_for(_CONFIG)).group(1)
        peer = yield connect_peer(self, f"unix:{socket_path}")
        return demo, page, config, peer

    @defer.inlineCallbacks
    def statuses_until(self, peer, wanted, timeout=30.0):
        """
        The values of the status object's writes, until C{wanted} came.
        """
        seen = []
        dpt = lookup("5.010")
        while wanted not in seen:
            telegram = yield peer.wait_for(STATUS_GA, "write", timeout=timeout)
            seen.append(dpt.decode(telegram.payload))
        return seen

    @defer.inlineCallbacks
    def status(self, page):
        response = yield self.agent.request(b"GET", (page + "api/status").encode())
        self.assertEqual(response.code, 200)
        return json.loads((yield readBody(response)))

    @defer.inlineCallbacks
    def charging_connector(self, page, demo, timeout=15.0):
        """
        DEMO1's connector once the API shows it Charging with a current,
        i.e. after a MeterValues.
        """
        for _ in range(int(timeout / 0.2)):
            snapshot = yield self.status(page)
            chargers = {c["id"]: c for c in snapshot["chargers"]}
            connectors = chargers.get("DEMO1", {}).get("connectors", [])
            if connectors and connectors[0]["status"] == "Charging" \
                    and connectors[0]["current_a"] is not None:
                return connectors[0]
            yield task.deferLater(reactor, 0.2, lambda: None)
        raise AssertionError(f"DEMO1 not charging per {snapshot}; output:\n{demo.output}")

    @defer.inlineCallbacks
    def assertRefused(self, url):
        host, port = re.match(r"http://([\d.]+):(\d+)/", url).groups()
        endpoint = endpoints.TCP4ClientEndpoint(reactor, host, int(port), timeout=5)
        try:
            connected = yield endpoints.connectProtocol(endpoint, protocol.Protocol())
        except error.ConnectionRefusedError:
            return
        connected.transport.loseConnection()
        self.fail(f"{url} still accepts connections")

    @defer.inlineCallbacks
    def test_charger_charges_and_ctrl_c_stops_everything(self):
        """
        Within seconds DEMO1 is Charging at about 16 A on the status API and
        a second knxd client saw the Charging status written; that client's
        0 to the charging object ends the session (RemoteStopTransaction);
        SIGINT then stops the demo with exit code 0, the service and knxd
        with it.
        """
        demo, page, config, peer = yield self.start_demo("--duration", "60")
        # fails unless a second knxd client sees the Charging status written
        yield self.statuses_until(peer, CHARGING)
        connector = yield self.charging_connector(page, demo)
        self.assertAlmostEqual(connector["current_a"], 16, delta=1)
        self.assertIsNotNone(connector["transaction"])
        peer.write(CHARGING_GA, 0)
        yield self.statuses_until(peer, FINISHING, timeout=10)
        yield demo.wait_for(_REMOTE_STOP, timeout=10)
        demo.transport.signalProcess("INT")
        self.assertEqual((yield demo.wait_ended()), 0, demo.output)
        self.assertIn("demo    | stopped", demo.output)
        self.assertFalse(os.path.exists(os.path.dirname(config)), demo.output)
        yield self.assertRefused(page)

    @defer.inlineCallbacks
    def test_cycles_end_the_demo_after_a_whole_session(self):
        """
        With C{--cycles 1} the demo ends by itself after one session, which
        the bus saw go Charging, Finishing, Available with its energy.
        """
        demo, page, config, peer = yield self.start_demo("--cycles", "1", "--cycle", "10")
        yield self.statuses_until(peer, CHARGING)
        self.assertEqual((yield self.statuses_until(peer, AVAILABLE)), [FINISHING, AVAILABLE])
        energy = yield peer.wait_for(ENERGY_GA, "write")
        self.assertGreater(lookup("13.010").decode(energy.payload), 0)
        self.assertEqual((yield demo.wait_ended()), 0, demo.output)
        self.assertFalse(os.path.exists(os.path.dirname(config)), demo.output)
