# -*- test-case-name: tests.test_knx_truth -*-
"""
Helpers of L{tests.test_knx_truth}: the configuration those tests run the
service with, the bus payloads they expect, a L{Bus} that watches what the
service puts on the bus in windows, and a small client of the HTTP API.

The payloads are built here from the KNX wire formats (big-endian integers,
IEEE-754 floats), not with the project's codecs, so a codec bug cannot hide
itself by being shared with the test.
"""

import io
import json
import struct
from datetime import datetime, timedelta

from twisted.internet import defer, reactor
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from tests.service import LOOPBACK_CONFIG
from xxterocpp.knx.address import GroupAddress

__all__ = [
    "Bus", "NEW_OBJECTS", "PROMPT", "TWELVE_OBJECTS", "address", "api", "configuration",
    "float32", "int32", "smart_values", "uint8",
]

#: Seconds to wait for what the service must do at once (or "within a
#: second"); only ever a bound of a wait, never an assertion.
PROMPT = 3.0

#: The twelve group objects of every charging point, in the order of the
#: README's table.
TWELVE_OBJECTS = (
    "status", "error_code", "charging", "reserve", "availability", "unlock", "energy",
    "start_time", "end_time", "current", "max_current", "reset",
)

#: The group objects the issue "every group object tells the truth" adds.
NEW_OBJECTS = ("online", "plugged", "power", "meter", "session_energy", "fast")

#: The main group of each charging point's objects: the twelve in middle
#: group 0, the new ones in middle group 1 (CP1's charging is 1/0/2, its
#: online 1/1/0).
_MAIN_GROUPS = {("CP1", 1): 1, ("NEVER", 1): 3, ("TWIN", 1): 4, ("TWIN", 2): 5}

#: The objects of the two-connector charger TWIN: enough to see connector
#: 0's status reach both connectors.
_TWIN_OBJECTS = ("status", "availability")


def address(name, charger="CP1", connector=1):
    """
    @return: the group address (text) of object C{name} of that charging
        point in L{configuration}.
    """
    main = _MAIN_GROUPS[(charger, connector)]
    if name in TWELVE_OBJECTS:
        return f"{main}/0/{TWELVE_OBJECTS.index(name)}"
    return f"{main}/1/{NEW_OBJECTS.index(name)}"


def _knx_table(charger, connector, names):
    lines = [f'{name} = "{address(name, charger, connector)}"' for name in names]
    return "[charger.knx]\n" + "\n".join(lines) + "\n"


_TAGS = """
[[tag]]
id = "04A1B2C3"

[[tag]]
id = "BLOCKED1"
status = "Blocked"

[[tag]]
id = "OLDTAG"
expiry = "2020-01-01T00:00:00Z"
"""

#: C{[smart]}: departure, tariff times as L{write_config} values
#: (L{smart_values}); 3 kWh to charge.
_SMART = """
[smart]
departure = "{departure}"
energy_wh = 3000
tariff = [{{ from = "{first}", price = {first_price} }}, {{ from = "{second}", price = {second_price} }}]
"""


def configuration(objects=TWELVE_OBJECTS, knx=(), ocpp=(), smart=False):
    """
    The text of a configuration file for L{tests.service.write_config}:
    loopback, a call timeout of 1 s, the tags 04A1B2C3 (Accepted), BLOCKED1
    (Blocked) and OLDTAG (Expired), and three chargers with group objects:

        - C{CP1}: 32 A, normal 16 A, for tag 04A1B2C3 (others are Invalid),
          remote_tag C{KNXTAG}, smart_tag C{SMARTTAG}, with C{objects};
        - C{NEVER}: the same objects; no test connects it;
        - C{TWIN}: connectors 1 and 2 with status and availability.

    @param objects: the names of the objects CP1 and NEVER link.
    @param knx: lines added to C{[knx]}, like C{"offline_after = 1"}.
    @param ocpp: lines added to C{[ocpp]}.
    @param smart: add a C{[smart]} table (values from L{smart_values}).
    """
    text = LOOPBACK_CONFIG.replace("call_timeout = 5", "\n".join(("call_timeout = 1",) + tuple(ocpp)))
    text = text.replace('knxd = "{knxd}"', "\n".join(('knxd = "{knxd}"',) + tuple(knx)))
    text += (_SMART if smart else "") + _TAGS
    text += f"""
[[charger]]
id = "CP1"
max_current = 32
normal_current = 16
allowed_tags = ["04A1B2C3"]
remote_tag = "KNXTAG"
smart_tag = "SMARTTAG"

{_knx_table("CP1", 1, objects)}
[[charger]]
id = "NEVER"
max_current = 16

{_knx_table("NEVER", 1, objects)}
[[charger]]
id = "TWIN"
connector = 1
max_current = 16

{_knx_table("TWIN", 1, _TWIN_OBJECTS)}
[[charger]]
id = "TWIN"
connector = 2
max_current = 16

{_knx_table("TWIN", 2, _TWIN_OBJECTS)}"""
    return text


def smart_values(cheap_now):
    """
    The L{write_config} values of the C{[smart]} table, relative to the
    local time now: departure in six hours; with C{cheap_now} the price is
    low from an hour ago and high from two hours on (the plan charges at
    once), otherwise the other way round (the plan waits: 0 A now).
    """
    now = datetime.now().astimezone()

    def hhmm(hours):
        return (now + timedelta(hours=hours)).strftime("%H:%M")

    low, high = 0.10, 0.50
    return dict(departure=hhmm(6), first=hhmm(-1), second=hhmm(2),
                first_price=low if cheap_now else high, second_price=high if cheap_now else low)


# -- payloads as they are on the bus (DPT 1.x is the bit 0 or 1 itself) ----


def uint8(value):
    """
    DPT 5.x: one unsigned byte.
    """
    return struct.pack(">B", value)


def int32(value):
    """
    DPT 13.x: a signed 32-bit integer.
    """
    return struct.pack(">i", value)


def float32(value):
    """
    DPT 14.x: an IEEE-754 single.
    """
    return struct.pack(">f", value)


# -- the bus -------------------------------------------------------------------


class Bus:
    """
    What the service puts on the bus, seen by a L{tests.knxdtest.BusPeer},
    observed in windows: L{barrier} (or L{mark}) starts a new window, and
    L{next} only returns telegrams of the current window, so what the
    service published earlier (at start, at a connection) does not count.

    @ivar start: the index in the peer's C{telegrams} where the window starts.
    """

    def __init__(self, peer):
        self.peer = peer
        self.start = 0

    def write(self, dst, value):
        """
        Write C{value} to C{dst}, as a push button would.
        """
        self.peer.write(dst, value)

    def read(self, dst):
        """
        Send a GroupValueRead to C{dst}.
        """
        self.peer.read(dst)

    def mark(self):
        """
        Start a new window with the next telegram.

        @return: where it starts.
        """
        self.start = len(self.peer.telegrams)
        return self.start

    def index(self, telegram):
        """
        @return: the position of C{telegram} among all received.
        """
        telegrams = self.peer.telegrams
        return next(i for i in range(len(telegrams) - 1, -1, -1) if telegrams[i] is telegram)

    def since(self, start=None, dst=None, kind="write"):
        """
        @return: the payloads of the C{kind} telegrams to C{dst} (every
            address when L{None}) received since C{start} (default: the
            window's start), in order.
        """
        dst = GroupAddress.parse(dst) if isinstance(dst, str) else dst
        start = self.start if start is None else start
        return [t.payload for t in self.peer.telegrams[start:]
                if t.kind == kind and (dst is None or t.dst == dst)]

    def any_since(self, start, dsts):
        """
        @return: every telegram of any kind to one of C{dsts} since C{start}.
        """
        wanted = {GroupAddress.parse(d) for d in dsts}
        return [t for t in self.peer.telegrams[start:] if t.dst in wanted]

    @defer.inlineCallbacks
    def next(self, dst, kind="write", timeout=PROMPT):
        """
        The next C{kind} telegram to C{dst} in the window that no earlier
        L{next} returned.

        @return: the L{Telegram}; fails with an L{AssertionError} after
            C{timeout} seconds.
        """
        while True:
            telegram = yield self.peer.wait_for(dst, kind, timeout)
            if self.index(telegram) >= self.start:
                return telegram

    @defer.inlineCallbacks
    def expect(self, testcase, dst, payload, kind="write", timeout=PROMPT, what=None):
        """
        Wait for the next C{kind} telegram to C{dst} in the window and check
        its payload.

        @return: the L{Telegram}.
        """
        telegram = yield self.next(dst, kind, timeout)
        testcase.assertEqual(telegram.payload, payload, what or f"{kind} to {dst}")
        return telegram

    @defer.inlineCallbacks
    def barrier(self, dst, pending=0):
        """
        Read C{dst} (an object that answers) and wait for the answer: knxd
        keeps the order of one sender's telegrams, so whatever the service
        sent before has arrived. Then start a new window.

        @param pending: how many reads of C{dst} sent before are still to be
            answered (their answers come first).
        @return: where the new window starts.
        """
        self.peer.read(dst)
        for _ in range(pending + 1):
            yield self.next(dst, "response")
        return self.mark()


# -- the HTTP API --------------------------------------------------------------


@defer.inlineCallbacks
def api(service, method, path, body=None):
    """
    Call the service's web interface (on loopback: no password).

    @return: C{(HTTP status, body)}: the body decoded from JSON when it is
        JSON, else the text.
    """
    port = (yield service.web.when_listening()).getHost().port
    pool = HTTPConnectionPool(reactor, persistent=False)
    producer = None
    headers = {}
    if body is not None:
        producer = FileBodyProducer(io.BytesIO(json.dumps(body).encode()))
        headers["Content-Type"] = ["application/json"]
    try:
        response = yield Agent(reactor, pool=pool).request(
            method.encode(), f"http://127.0.0.1:{port}{path}".encode(), Headers(headers), producer)
        content = yield readBody(response)
    finally:
        yield pool.closeCachedConnections()
    text = content.decode("utf-8")
    try:
        return response.code, json.loads(text)
    except ValueError:
        return response.code, text
