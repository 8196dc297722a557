"""
The service at rest: what it loads (L{xxterocpp.tap} builds the web
interface at its first connection and KNX only with knxd) and that idle, it
does not wake up.
"""

import os
import re
import sys

from twisted.internet import defer, endpoints, reactor, utils
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource

from tests.service import LOOPBACK_CONFIG, MAIN, ROOT, ServiceProcess, kill_on_cleanup, write_config
from tests.sim import connect_charger
from xxterocpp.tap import OnFirstConnection
from xxterocpp.web.gate import WebSite

#: Modules a started service without KNX, TLS, a back office or a visitor
#: of its web interface does not load.
UNUSED_AT_REST = ("twisted.web.server", "xxterocpp.web.api", "xxterocpp.knx.bridge",
                  "xxterocpp.knx.behaviour", "xxterocpp.knx.knxd",
                  "twisted.application.internet", "difflib",
                  "xxterocpp.upstream", "xxterocpp.store.upstream")

#: Starts the service on the real reactor (argv: the configuration, then
#: module names), prints which of the modules are loaded ("-" for none),
#: asks its web interface for the status page and prints the status line
#: and the modules again.
SCRIPT = r"""
import sys
from twisted.internet import endpoints, protocol, reactor
from xxterocpp.config import load_config
from xxterocpp.tap import XxterocppService

modules = sys.argv[2:]

def loaded():
    print(" ".join(m for m in modules if m in sys.modules) or "-", flush=True)

class Get(protocol.Protocol):
    def connectionMade(self):
        self.transport.write(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        self.received = b""
    def dataReceived(self, data):
        self.received += data
    def connectionLost(self, reason):
        print(self.received.split(b"\r\n")[0].decode(), flush=True)
        loaded()
        reactor.stop()

def listening(port):
    loaded()
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
    endpoints.connectProtocol(endpoint, Get())

service = XxterocppService(load_config(sys.argv[1]), reactor)
service.privilegedStartService()
service.startService()
service.web.when_listening().addCallback(listening)
reactor.callLater(30, reactor.stop)
reactor.run()
"""


class LoadedAtRestTests(TestCase):
    """
    What a running service has loaded.
    """

    @defer.inlineCallbacks
    def test_web_interface_is_loaded_by_its_first_connection(self):
        """
        Started without KNX, the service has loaded neither the KNX bridge
        nor twisted.web; the first request to the web interface loads it,
        and is answered.
        """
        out, err, code = yield utils.getProcessOutputAndValue(
            sys.executable, ["-c", SCRIPT, write_config(self), *UNUSED_AT_REST],
            env=dict(os.environ, PYTHONPATH=ROOT), path=ROOT, reactor=reactor)
        self.assertEqual(code, 0, err)
        at_rest, status, after = out.decode().splitlines()[-3:]
        self.assertEqual(at_rest, "-")
        self.assertRegex(status, r"^HTTP/1\.[01] (200|401) ")
        self.assertIn("twisted.web.server", after.split())
        self.assertIn("xxterocpp.web.api", after.split())

    def test_on_first_connection_builds_once_and_stops_what_it_built(self):
        """
        L{OnFirstConnection} builds its factory at the first connection,
        starts it, serves every connection with it, and stops it with
        itself; unused, it builds nothing.
        """
        events = []

        class Recording(Factory):
            protocol = Protocol

            def startFactory(self):
                events.append("start")

            def stopFactory(self):
                events.append("stop")

        def build():
            events.append("build")
            return Recording()

        lazy = OnFirstConnection(build)
        lazy.doStart()
        self.assertEqual(events, [])
        first = lazy.buildProtocol(None)
        second = lazy.buildProtocol(None)
        self.assertIs(first.factory, second.factory)
        self.assertIs(first.factory, lazy.factory)
        lazy.doStop()
        self.assertEqual(events, ["build", "start", "stop"])
        unused = OnFirstConnection(build)
        unused.doStart()
        unused.doStop()
        self.assertEqual(events, ["build", "start", "stop"])


class IdleTests(TestCase):
    """
    An idle service sleeps.
    """

    def test_web_site_sets_no_timer(self):
        """
        The web interface's site, started, schedules nothing: it keeps no
        access log, so no once-a-second refresh of the log's date.
        """
        clock = Clock()
        site = WebSite(Resource(), None, clock)
        site.doStart()
        self.assertEqual(clock.getDelayedCalls(), [])
        site.doStop()

    @defer.inlineCallbacks
    def test_idle_service_process_does_not_wake_up(self):
        """
        The service process (as the unit starts it) with two chargers booted,
        its status page read once, and nothing to do goes to sleep: fewer
        wake-ups (voluntary context switches of its threads) in 6 s than a
        once-a-second timer makes.
        """
        # An answered call's timeout, cancelled, still wakes the reactor at
        # its time (Twisted drops cancelled timers lazily): the set-up's
        # calls time out long after the 6 s.
        config = LOOPBACK_CONFIG.replace("call_timeout = 5", "call_timeout = 60")
        process = ServiceProcess(write_config(self, config + """
[[charger]]
id = "CP1"
max_current = 16

[[charger]]
id = "CP2"
max_current = 16
"""), command=MAIN)
        kill_on_cleanup(self, process)
        yield process.start()
        chargers = []
        for identity in ("CP1", "CP2"):
            charger = yield connect_charger(process.url, identity)
            self.addCleanup(charger.close)
            yield charger.boot()
            chargers.append(charger)
        web = re.search(rb"web interface listening on \S+ port (\d+)", process.output)
        status = yield get_status_line(int(web.group(1)))
        self.assertRegex(status, rb"^HTTP/1\.[01] (200|401) ")
        # The controller's set-up after the boots: over once no frame has
        # passed for a second.
        frames = None
        for _ in range(40):
            now = sum(len(c.frames) for c in chargers)
            if now == frames:
                break
            frames = now
            yield deferLater(reactor, 1, lambda: None)
        before = wake_ups(process.transport.pid)
        yield deferLater(reactor, 6, lambda: None)
        woken = wake_ups(process.transport.pid) - before
        # A once-a-second timer alone makes 6; the slack is for a stray
        # wake-up of a busy machine (a charger's frame, the store's thread).
        self.assertLess(woken, 6)
        for charger in chargers:
            yield charger.close()
        yield process.stop()


class _Get(Protocol):
    def connectionMade(self):
        self.received = b""
        self.status = defer.Deferred()
        self.transport.write(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.status.callback(self.received.split(b"\r\n")[0])


@defer.inlineCallbacks
def get_status_line(port):
    """
    @return: a Deferred firing with the status line of an HTTP/1.0 GET of
        C{/} on loopback port C{port}, once the server closed the connection.
    """
    protocol = yield endpoints.connectProtocol(
        endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port), _Get())
    return (yield protocol.status)


def wake_ups(pid):
    """
    @return: how often the threads of process C{pid} went to sleep so far.
    """
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/status") as f:
            total += sum(int(line.split()[1]) for line in f
                         if line.startswith("voluntary_ctxt_switches:"))
    return total
