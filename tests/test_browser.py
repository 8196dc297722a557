"""
The status page in a real browser: headless Chromium, driven through its
DevTools protocol over an Autobahn WebSocket on trial's reactor, loads the
page of a charging simulated charger, clicks Stop, and the charger receives
RemoteStopTransaction; the page in each language fits a phone. Screenshots
(desktop and phone) are saved in the test's temporary directory.
"""

import base64
import json
import os
import re
import shutil

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody

from tests.service import start_service, write_config
from tests.sim import HandshakeRefused, connect_charger
from tests.test_web import WEB_CONFIG
from xxterocpp.knx import objects
from xxterocpp.web.i18n import LANGUAGES, language
from xxterocpp.web.page import charger_block

CHROMIUM = shutil.which("chromium")

#: Chromium quiet and self-contained: no network of its own, no profile.
#: The width of a common phone's viewport, in CSS pixels.
PHONE_WIDTH = 412

#: What sticks out of the viewport sideways on the page (also out of a box
#: that would scroll it into view): a list of descriptions, empty when nothing.
OVERFLOWING = """(() => {
  const width = document.documentElement.clientWidth, out = [];
  if (document.documentElement.scrollWidth > width) out.push("page " + document.documentElement.scrollWidth);
  for (const element of document.querySelectorAll("main *")) {
    const box = element.getBoundingClientRect();
    if (box.width && (box.right > width + 0.5 || box.left < -0.5))
      out.push(element.tagName + " " + Math.round(box.right) + " " + element.textContent.slice(0, 40));
  }
  return out;
})()"""

#: Waits (awaited by L{_DevTools.evaluate}) until the page as it is now
#: has been laid out and painted: two animation frames.
RENDERED = "new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--disable-dev-shm-usage", "--remote-debugging-port=0",
                  "--window-size=1100,900")


class _Chromium(protocol.ProcessProtocol):
    """
    The browser process: tells where its DevTools endpoint listens.
    """

    def __init__(self):
        self.output = b""
        self.listening = defer.Deferred()
        self.ended = defer.Deferred()

    def errReceived(self, data):
        self.output += data
        match = re.search(rb"DevTools listening on (ws://\S+)", self.output)
        if match and not self.listening.called:
            self.listening.callback(match.group(1).decode())

    outReceived = errReceived

    def processEnded(self, reason):
        if not self.listening.called:
            self.listening.errback(RuntimeError(
                "chromium exited: " + self.output.decode(errors="replace")[-2000:]))
        self.ended.callback(None)


class _DevTools(WebSocketClientProtocol):
    """
    One DevTools session: L{command} sends a method and fires with its
    result.
    """

    def onOpen(self):
        self.pending, self.next_id = {}, 0
        self.lost = defer.Deferred()
        self.factory.opened.callback(self)

    def command(self, method, **params):
        self.next_id += 1
        d = self.pending[self.next_id] = defer.Deferred()
        self.sendMessage(json.dumps({"id": self.next_id, "method": method,
                                     "params": params}).encode())
        return d

    def onMessage(self, payload, is_binary):
        message = json.loads(payload)
        d = self.pending.pop(message.get("id"), None)
        if d is None:
            return
        if "error" in message:
            d.errback(RuntimeError(f"DevTools: {message['error']}"))
        else:
            d.callback(message["result"])

    def onClose(self, was_clean, code, reason):
        for d in self.pending.values():
            d.errback(RuntimeError(f"DevTools connection closed: {reason}"))
        self.pending = {}

    def connectionLost(self, reason):
        super().connectionLost(reason)
        if hasattr(self, "lost"):
            self.lost.callback(None)

    @defer.inlineCallbacks
    def evaluate(self, expression):
        """
        @return: the value of a JavaScript expression in the page.
        """
        answer = yield self.command("Runtime.evaluate", expression=expression,
                                    returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in answer:
            raise RuntimeError(f"{expression}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    @defer.inlineCallbacks
    def wait_for(self, expression, timeout=15):
        """
        Poll until a JavaScript expression is truthy; return its value.
        """
        for _ in range(int(timeout / 0.1)):
            value = yield self.evaluate(expression)
            if value:
                return value
            yield deferLater(reactor, 0.1, lambda: None)
        raise AssertionError(f"{expression} still false after {timeout} s")


class BrowserTests(TestCase):
    """
    The page in headless Chromium.
    """

    timeout = 90

    if CHROMIUM is None:
        skip = "chromium is not installed (Debian: apt-get install chromium)"

    @defer.inlineCallbacks
    def start_chromium(self):
        """
        @return: a DevTools session of the browser's first page.
        """
        chromium = _Chromium()
        profile = os.path.abspath(self.mktemp())
        transport = reactor.spawnProcess(
            chromium, CHROMIUM,
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            env=dict(os.environ))

        @defer.inlineCallbacks
        def stop_chromium():
            if not chromium.ended.called:
                transport.signalProcess("TERM")
                killer = reactor.callLater(10, transport.signalProcess, "KILL")
                yield chromium.ended
                if killer.active():
                    killer.cancel()

        self.addCleanup(stop_chromium)
        browser_url = yield chromium.listening
        port = int(re.match(r"ws://[^:]+:(\d+)/", browser_url).group(1))
        pool = HTTPConnectionPool(reactor, persistent=False)
        response = yield Agent(reactor, pool=pool).request(
            b"GET", f"http://127.0.0.1:{port}/json/list".encode())
        targets = json.loads((yield readBody(response)))
        page_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        factory = WebSocketClientFactory(page_url)
        factory.protocol = _DevTools
        factory.opened = defer.Deferred()
        # No Autobahn timers: they run on txaio's loop and would outlive the test.
        factory.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0)
        yield TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory)
        devtools = yield factory.opened

        def close_devtools():
            devtools.transport.loseConnection()
            return devtools.lost

        self.addCleanup(close_devtools)
        return devtools

    @defer.inlineCallbacks
    def screenshot(self, devtools, name, width):
        """
        Save the whole page as C{name}.png at a viewport C{width}.
        """
        yield devtools.command("Emulation.setDeviceMetricsOverride", width=width, height=800,
                               deviceScaleFactor=1, mobile=width < 600)
        yield devtools.wait_for(f"window.innerWidth === {width}")
        yield devtools.evaluate(RENDERED)
        shot = yield devtools.command("Page.captureScreenshot", format="png",
                                      captureBeyondViewport=True)
        path = os.path.abspath(os.path.join(self.directory, name + ".png"))
        with open(path, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        return path

    @defer.inlineCallbacks
    def screens(self, devtools, name, height=800):
        """
        Save the page as the phone shows it, one screen after the other:
        C{name}-1.png, C{name}-2.png, ... (C{height} CSS pixels each).

        @return: their paths.
        """
        yield devtools.evaluate(RENDERED)
        total = yield devtools.evaluate("document.documentElement.scrollHeight")
        paths = []
        for i, top in enumerate(range(0, total, height), 1):
            shot = yield devtools.command("Page.captureScreenshot", format="png",
                                          captureBeyondViewport=True, clip={
                                              "x": 0, "y": top, "width": PHONE_WIDTH,
                                              "height": min(height, total - top), "scale": 1})
            paths.append(os.path.abspath(os.path.join(self.directory, f"{name}-{i}.png")))
            with open(paths[-1], "wb") as f:
                f.write(base64.b64decode(shot["data"]))
        return paths

    @defer.inlineCallbacks
    def charging_charger(self, service):
        """
        CP1 boots and charges, with an error to show.

        @return: the simulated charger and the transaction id.
        """
        cp = yield connect_charger(service.url, "CP1")
        self.addCleanup(cp.close)
        yield cp.boot(firmwareVersion="2.4.1", chargePointSerialNumber="SIM-0001")
        yield cp.status(1, "Preparing")
        started = yield cp.start_transaction(1, "04A1B2C3", 12000)
        tx = started["transactionId"]
        yield cp.status(1, "Charging")
        yield cp.meter_values(1, tx, energy_wh=16350, currents=(15.9, 16.0, 15.8), power_w=11000)
        return cp, tx

    @defer.inlineCallbacks
    def test_every_language_fits_a_phone(self):
        """
        The page in each language, at a phone's width, its lists open: nothing
        sticks out sideways (so nothing is cut off), and it is in the
        language the browser asked for.
        """
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        # a charging point linking every group object (no knxd: nothing sent)
        knx = "".join(f'{obj.key} = "9/7/{i}"\n' for i, obj in enumerate(objects.OBJECTS))
        config = WEB_CONFIG + f'\n[[charger]]\nid = "KNX1"\nmax_current = 16\n[charger.knx]\n{knx}'
        service = yield start_service(self, write_config(self, config))
        web = yield service.web.when_listening()
        cp, _ = yield self.charging_charger(service)
        yield cp.status(1, "SuspendedEVSE", "HighTemperature", info="thermal derating")
        # refused ones: an unknown charger (its block to paste), a wrong
        # password, a URL without an id
        unknown = "NEW-WALLBOX-WITH-A-LONG-SERIAL-NUMBER-0123456789"
        for identity, auth in ((unknown, None), ("RDAM 123", ("RDAM 123", "wrong")),
                               (None, None)):
            with self.assertRaises(HandshakeRefused):
                yield connect_charger(service.url, identity, auth=auth)
        devtools = yield self.start_chromium()
        yield devtools.command("Network.enable")
        yield devtools.command("Emulation.setDeviceMetricsOverride", width=PHONE_WIDTH,
                               height=800, deviceScaleFactor=1, mobile=True)
        shots = []
        for code in LANGUAGES:
            yield devtools.command("Network.setExtraHTTPHeaders",
                                   headers={"Accept-Language": f"{code};q=0.9"})
            yield devtools.command("Page.navigate", url=f"http://127.0.0.1:{web.getHost().port}/")
            # complete: the style sheet is there too, which wraps the long lines
            yield devtools.wait_for(f"document.documentElement?.lang === '{code}' && "
                                    f"document.readyState === 'complete'")
            # the OCPP frames and the group objects too, measured in the
            # same script: the page's refresh (every few seconds) cannot
            # come in between
            self.assertEqual((yield devtools.evaluate(
                "document.querySelectorAll('details').forEach((d) => { d.open = true; }), "
                + OVERFLOWING)), [], code)
            shots += yield self.screens(devtools, f"phone-{code}")
            # Copy selects the block to paste (headless Chromium grants no
            # clipboard); read in the same script, before a refresh
            # replaces what is selected
            self.assertEqual((yield devtools.evaluate(
                "document.querySelector('[data-copy=unknown-0]').click(), "
                "getSelection().toString()")), charger_block(language(code), unknown))
        print(f"\nscreenshots: {' '.join(shots)}")

    @defer.inlineCallbacks
    def test_stop_button_stops_the_session(self):
        """
        Clicking Stop on the page sends RemoteStopTransaction to the
        charger; the page shows the outcome.
        """
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        service = yield start_service(self, write_config(self, WEB_CONFIG))
        web = yield service.web.when_listening()
        cp, tx = yield self.charging_charger(service)

        devtools = yield self.start_chromium()
        yield devtools.command("Page.navigate", url=f"http://127.0.0.1:{web.getHost().port}/")
        stop = "document.querySelector('#charger-CP1 button[data-action=stop]')"
        yield devtools.wait_for(stop + " !== null")
        self.desktop = yield self.screenshot(devtools, "status-page", 1100)
        self.phone = yield self.screenshot(devtools, "status-page-phone", 412)
        yield devtools.evaluate(stop + ".click()")
        _, payload = yield cp.wait_for_call("RemoteStopTransaction")
        self.assertEqual(payload, {"transactionId": tx})
        result = yield devtools.wait_for("document.getElementById('result').textContent")
        self.assertIn("Stop", result)
        print(f"\nscreenshots: {self.desktop} {self.phone}")
