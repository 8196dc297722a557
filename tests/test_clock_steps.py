"""
The real service process with its system clock stepped (libfaketime,
Debian's C{faketime} package): forward 56 years and back an hour while
chargers are connected and calls are outstanding, a start at 1970 that
NTP sets right later, a clock flapping back and forth, a restart while it
is wrong. Only the service's clock is faked, through a
timestamp file rewritten by the test; its monotonic clock and the test's
clocks stay real (see C{docs/architecture.md#time}).
"""

import glob
import json
import os
import time
from datetime import datetime, timedelta, timezone
from io import BytesIO

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.client import FileBodyProducer, readBody
from twisted.web.http_headers import Headers

from tests.service import BASE_CONFIG, ServiceProcess, kill_on_cleanup, write_config
from tests.sim import connect_charger
from tests.test_crash import read_settings
from tests.test_web import web_agent
from xxterocpp.domain.trusted import CLOCK_LINES, EARLIEST

#: libfaketime's preload library, the variant for threaded programs (the
#: state store writes from a thread of its own).
LIBFAKETIME = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))

#: 56 years (libfaketime's years have 365 days): 1970 to now.
YEARS_56 = 56 * 365 * 86400

#: The test configuration with WebSocket pings (every 6 s, 3 s to answer):
#: a step must not make them time out either.
CONFIG = BASE_CONFIG.replace("ping_interval = 0", "ping_interval = 6")


def parse(text):
    """
    @return: an OCPP or API dateTime as an aware datetime.
    """
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class SteppedClock:
    """
    The system clock of a service process: the real time plus an offset
    that the test changes while it runs.
    """

    def __init__(self, testcase, offset):
        if not LIBFAKETIME:
            raise SkipTest("libfaketime is not installed (Debian: apt-get install faketime)")
        self.path = os.path.abspath(testcase.mktemp())
        self.set(offset)

    def set(self, offset):
        """
        Step the clock to the real time plus C{offset} seconds.
        """
        # The file is read at every clock call (FAKETIME_NO_CACHE): it is
        # replaced whole, never seen half written.
        with open(self.path + ".new", "w") as f:
            f.write(f"{offset:+d}\n")
        os.replace(self.path + ".new", self.path)
        self.offset = offset

    def env(self):
        """
        @return: the environment of a process on this clock.
        """
        return {
            "LD_PRELOAD": LIBFAKETIME[0],
            "FAKETIME_TIMESTAMP_FILE": self.path,
            "FAKETIME_NO_CACHE": "1",
            # The monotonic clock stays real (both spellings, by version).
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "DONT_FAKE_MONOTONIC": "1",
            # File times stay real: Python compares them with its caches.
            "NO_FAKE_STAT": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }

    def now(self):
        """
        @return: what the service's clock reads now (POSIX seconds).
        """
        return time.time() + self.offset


class ClockStepTests(TestCase):
    """
    Steps of the service's system clock.
    """

    timeout = 90

    @defer.inlineCallbacks
    def start(self, clock):
        """
        Start the service on C{clock} with a fresh state database.

        @return: the L{ServiceProcess}, its web interface listening.
        """
        service = ServiceProcess(write_config(self, CONFIG), env=clock.env())
        kill_on_cleanup(self, service)
        yield service.start()
        yield service.wait_for_output(b"web interface listening")
        self.agent = web_agent(self)
        return service

    @defer.inlineCallbacks
    def api(self, service, method, path, body=None):
        """
        @return: C{(HTTP status, decoded JSON body or the bytes)} of a
            request to the service's web interface.
        """
        producer = None
        if body is not None:
            producer = FileBodyProducer(BytesIO(json.dumps(body).encode()))
        response = yield self.agent.request(
            method.encode(), (service.web_url + path).encode(),
            Headers({"Content-Type": ["application/json"]}), producer)
        content = yield readBody(response)
        if response.headers.getRawHeaders("Content-Type", [""])[0].startswith("application/json"):
            content = json.loads(content)
        return response.code, content

    @defer.inlineCallbacks
    def charger(self, service, identity):
        cp = yield connect_charger(service.url, identity)
        self.addCleanup(cp.close)
        yield cp.boot()
        return cp

    def assertNotBefore(self, when, seconds):
        """
        C{when} (an aware datetime) is not before C{seconds} (POSIX; read
        off the stepped clock before the service read its own): a lower
        bound only, which no slow machine breaks. One second of slack for
        dateTimes given in whole seconds.
        """
        self.assertGreaterEqual(when.timestamp(), seconds - 1, when)

    def available(self, service, identity):
        return self.api(service, "POST", f"/api/chargers/{identity}/ocpp/ChangeAvailability",
                        {"connectorId": 1, "type": "Operative"})

    @defer.inlineCallbacks
    def test_steps_while_calls_are_outstanding(self):
        """
        Forward 56 years with a slow charger's answer outstanding: it is
        kept, nothing times out, the pings go on; the charger is told the
        new time. Back an hour: the clock is wrong, the chargers are told
        no time older than before, a call nobody answers times out after
        the call timeout (5 s), not an hour later.
        """
        clock = SteppedClock(self, 0)
        service = yield self.start(clock)
        cp = yield self.charger(service, "CP1")
        twin = yield self.charger(service, "TWIN")
        told = [parse((yield cp.heartbeat())["currentTime"])]

        cp.answer_after("ChangeAvailability", 2)
        asked = self.available(service, "CP1")
        yield cp.wait_for_call("ChangeAvailability")
        clock.set(YEARS_56)
        stepped = clock.now()
        self.assertEqual((yield asked), (200, {"status": "Accepted"}))
        told.append(parse((yield cp.heartbeat())["currentTime"]))
        self.assertNotBefore(told[-1], stepped)

        clock.set(YEARS_56 - 3600)
        twin.never_answer("ChangeAvailability")
        unanswered = self.available(service, "TWIN")
        slow = self.available(service, "CP1")
        self.assertEqual((yield slow), (200, {"status": "Accepted"}))
        # An hour late would be the test's timeout; the log names the 5 s.
        code, _ = yield unanswered
        self.assertEqual(code, 504)
        for beating in (cp, twin):
            told.append(parse((yield beating.heartbeat())["currentTime"]))
        # Nothing older than the time told before the step back (an hour
        # after any time the stepped clock read since).
        self.assertEqual(told, sorted(told))
        code, status = yield self.api(service, "GET", "/api/status")
        self.assertEqual(status["clock_ok"], False)

        self.assertTrue(cp.is_open and twin.is_open)
        output = service.output
        self.assertEqual(output.count(b"got no answer within"), 1, output.decode())
        self.assertIn(b"TWIN: ChangeAvailability got no answer within 5.0 s", output)
        self.assertEqual(output.count(b"the system clock reads"), 1, output.decode())
        self.assertNotIn(b"disconnected", output)
        yield cp.close()
        yield twin.close()
        yield service.stop()

    @defer.inlineCallbacks
    def test_started_at_1970_then_set(self):
        """
        Started at 1970 with a fresh state database: one log line says the
        clock is wrong, the status and the page too; a charger is told a
        time after this version was written, never 1970, and its session
        with 1970 times is marked. Set to now: one line, the page is clear,
        the chargers get the right time.
        """
        clock = SteppedClock(self, -int(time.time()))
        service = yield self.start(clock)
        yield service.wait_for_output(b"the system clock reads 1970-01-01")
        cp = yield connect_charger(service.url, "CP1")
        self.addCleanup(cp.close)
        booted = parse((yield cp.boot())["currentTime"])
        self.assertGreaterEqual(booted.timestamp(), EARLIEST)
        code, status = yield self.api(service, "GET", "/api/status")
        self.assertEqual((status["clock_ok"], status["system_time"][:4]), (False, "1970"))
        code, page = yield self.api(service, "GET", "/")
        self.assertIn(b'id="clock"', page)
        started = yield cp.start_transaction(1, "04A1B2C3", 1000, "1970-01-01T00:00:30.000Z")
        yield cp.stop_transaction(started["transactionId"], 1500, "1970-01-01T00:01:00.000Z")

        clock.set(0)
        right = clock.now()
        beat = parse((yield cp.heartbeat())["currentTime"])
        self.assertNotBefore(beat, right)
        self.assertGreater(beat, booted)
        code, status = yield self.api(service, "GET", "/api/status")
        self.assertEqual(status["clock_ok"], True)
        code, page = yield self.api(service, "GET", "/")
        self.assertNotIn(b'id="clock"', page)
        code, listed = yield self.api(service, "GET", "/api/transactions")
        [tx] = listed["transactions"]
        self.assertEqual(tx["time_uncertain"], True)
        self.assertGreaterEqual(parse(tx["start"]).timestamp(), EARLIEST)
        output = service.output
        self.assertEqual(output.count(b"the system clock reads"), 1, output.decode())
        self.assertEqual(output.count(b"the system clock is right again"), 1, output.decode())
        yield cp.close()
        yield service.stop()

    @defer.inlineCallbacks
    def test_steps_during_the_boot_wait_and_a_reservation(self):
        """
        Forward 56 years while a charger that never booted waits for its
        TriggerMessage(BootNotification): it still comes, once. Back an
        hour: a reservation made then expires at the charger no earlier
        than the time it was told plus the reservation's hold; set right
        again, the charger that lost the reservation (Available) gets it
        again with an expiry after the right time.
        """
        clock = SteppedClock(self, 0)
        service = yield self.start(clock)
        cp = yield connect_charger(service.url, "CP1")
        self.addCleanup(cp.close)
        clock.set(YEARS_56)
        stepped = clock.now()
        unique_id, _ = yield cp.wait_for_call("TriggerMessage", timeout=30)
        yield cp.boot()
        told = parse((yield cp.heartbeat())["currentTime"])
        self.assertNotBefore(told, stepped)

        clock.set(YEARS_56 - 3600)
        code, answer = yield self.api(service, "POST", "/api/chargers/CP1/reserve", {})
        self.assertEqual((code, answer["status"]), (200, "Accepted"))
        _, reserve = yield cp.wait_for_call("ReserveNow")
        yield cp.status(1, "Reserved")
        self.assertGreaterEqual(parse(reserve["expiryDate"]), told + timedelta(seconds=3600))

        clock.set(YEARS_56)
        right = clock.now()
        yield cp.status(1, "Available")
        _, again = yield cp.wait_for_call("ReserveNow")
        self.assertEqual(again["reservationId"], reserve["reservationId"])
        self.assertNotBefore(parse(again["expiryDate"]), right + 3600)
        code, status = yield self.api(service, "GET", "/api/status")
        self.assertEqual(status["clock_ok"], True)
        yield cp.close()
        yield service.stop()

    @defer.inlineCallbacks
    def beats(self, cp, count, pause=0.5):
        """
        @return: the times C{cp} is told by C{count} heartbeats, C{pause}
            seconds apart.
        """
        told = []
        for _ in range(count):
            told.append(parse((yield cp.heartbeat())["currentTime"]))
            yield task.deferLater(reactor, pause, lambda: None)
        return told

    @defer.inlineCallbacks
    def test_flapping_then_back_beyond_the_tolerance(self):
        """
        A clock stepped back and forth (an hour, half a minute), then back
        by a little more than the tolerance (70 s) for longer than it takes
        to read the time given out before the step again: what the charger
        is told never goes back, the clock is wrong while it is more than
        the tolerance behind, and the time told moves on meanwhile. The
        lines about it stop after the first few changes (the status does
        not).
        """
        clock = SteppedClock(self, 0)
        service = yield self.start(clock)
        cp = yield self.charger(service, "CP1")
        told = yield self.beats(cp, 1)
        for offset in (-3600, 0, -30, 0, -3600, -3570, 0):
            clock.set(offset)
            told += yield self.beats(cp, 2, 0.1)
        clock.set(-70)
        told += yield self.beats(cp, 1)
        code, status = yield self.api(service, "GET", "/api/status")
        self.assertEqual(status["clock_ok"], False)
        told += yield self.beats(cp, 26)
        self.assertEqual(told, sorted(told))
        self.assertGreater(told[-1] - told[-27], timedelta(seconds=11))
        # The first CLOCK_LINES changes are said (wrong, right, wrong, right),
        # the last (wrong at -70 s) is held back: the status says it at once.
        self.assertEqual(CLOCK_LINES, 4)
        self.assertEqual(service.output.count(b"the system clock reads"), 2,
                         service.output.decode())
        self.assertEqual(service.output.count(b"the system clock is right again"), 2,
                         service.output.decode())
        yield cp.close()
        yield service.stop()

    @defer.inlineCallbacks
    def test_restart_while_the_clock_is_wrong(self):
        """
        Stopped while the clock is an hour back, started again with the
        clock still back: the charger is told no time older than before
        the stop, and the restarted service says the clock is wrong.
        """
        clock = SteppedClock(self, 0)
        service = yield self.start(clock)
        cp = yield self.charger(service, "CP1")
        clock.set(-3600)
        told = yield self.beats(cp, 3)
        yield service.stop()
        yield cp.wait_closed()
        yield service.start()
        yield service.wait_for_output(b"the system clock reads")
        cp = yield self.charger(service, "CP1")
        booted = parse((yield cp.heartbeat())["currentTime"])
        self.assertGreaterEqual(booted, told[-1])
        code, status = yield self.api(service, "GET", "/api/status")
        self.assertEqual(status["clock_ok"], False)
        yield cp.close()
        yield service.stop()

    @defer.inlineCallbacks
    def test_crash_while_the_clock_is_wrong(self):
        """
        Killed (SIGKILL, a power cut) while the clock reads 1970, a charger
        connected since, the time given out not kept again yet (every 10
        minutes): started again at 1970, the charger is told no time
        earlier than that of its connection, committed at once.
        """
        clock = SteppedClock(self, 0)
        service = yield self.start(clock)
        yield service.stop()
        clock.set(-int(time.time()))
        yield service.start()
        yield service.wait_for_output(b"the system clock reads 1970-01-01")
        yield task.deferLater(reactor, 4, lambda: None)
        cp = yield self.charger(service, "CP1")
        yield cp.heartbeat()
        yield task.deferLater(reactor, 0.5, lambda: None)
        yield service.signal("KILL")
        yield cp.wait_closed()
        database = os.path.join(os.path.dirname(service.config_path), "state.sqlite3")
        settings = read_settings(database)
        since = parse(settings[("CP1", "contact")]["since"])
        self.assertGreater(since, parse(settings[("central", "trusted_time")]))
        yield service.start()
        yield service.wait_for_output(b"the system clock reads 1970-01-01")
        cp = yield self.charger(service, "CP1")
        self.assertGreaterEqual(parse((yield cp.heartbeat())["currentTime"]), since)
        yield cp.close()
        yield service.stop()
