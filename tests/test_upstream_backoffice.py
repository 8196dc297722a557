"""
The back office end to end: the real service, simulated chargers and a
test back office built on the PyPI C{ocpp} package's central-system side
(L{tests.backoffice}), all on loopback. PyPI stack only: Debian packages
neither C{ocpp} nor a recent C{websockets}.
"""

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase

from tests.backoffice import SKIP_REASON, backoffice_available, start_backoffice
from tests.service import LOOPBACK_CONFIG, start_service, write_config
from tests.sim import connect_charger

#: CP1 has a back office, TWIN has none; tags as in the other tests.
UPSTREAM_CONFIG = LOOPBACK_CONFIG + """
[[tag]]
id = "04A1B2C3"

[[tag]]
id = "BLOCKED1"
status = "Blocked"

[[charger]]
id = "CP1"
max_current = 32
normal_current = 16
allowed_tags = ["04A1B2C3"]

[charger.upstream]
url = "{backoffice}"
identity = "{identity}"
password = "{upstream_password}"
offline_authorization = "{offline}"
allow_reset = {allow_reset}
stop_refused = {stop_refused}

[[charger]]
id = "TWIN"
max_current = 16
"""


def upstream_config(testcase, backoffice, identity="HOME-CP1", upstream_password="",
                    offline="local", allow_reset="false", stop_refused="false", **values):
    """
    Write the configuration of a service whose CP1 is forwarded to
    C{backoffice} (a URL).
    """
    return write_config(testcase, UPSTREAM_CONFIG, backoffice=backoffice, identity=identity,
                        upstream_password=upstream_password, offline=offline,
                        allow_reset=allow_reset, stop_refused=stop_refused, **values)


def sleep(seconds):
    return task.deferLater(reactor, seconds, lambda: None)


@defer.inlineCallbacks
def eventually(check, timeout=10.0, step=0.05):
    """
    Wait until C{check()} is true (bounded).
    """
    for _ in range(int(timeout / step)):
        if check():
            return
        yield sleep(step)
    raise AssertionError(f"{check} never held")


class BackOfficeTestCase(TestCase):
    """
    A service whose CP1 is forwarded to a running test back office.
    """

    if not backoffice_available():
        skip = SKIP_REASON

    timeout = 60

    @defer.inlineCallbacks
    def start(self, **config):
        self.office = yield start_backoffice(self)
        self.service = yield start_service(self, upstream_config(self, self.office.url, **config))
        self.uplink = self.service.upstream.uplinks["CP1"]
        self.uplink.link.backoff = (0.1, 0.5)

    @defer.inlineCallbacks
    def charger(self, identity="CP1", boot=True):
        charger = yield connect_charger(self.service.url, identity)
        self.addCleanup(charger.close)
        if boot:
            yield charger.boot(vendor="Acme", model="Wallbox 11", firmwareVersion="1.2.3",
                               chargePointSerialNumber="SN-77")
        return charger


class SessionTests(BackOfficeTestCase):
    """
    A session while the back office is up.
    """

    @defer.inlineCallbacks
    def test_boot_is_the_chargers_own(self):
        """
        The back office gets the charger's own BootNotification under the
        configured identity, then each connector's status.
        """
        yield self.start()
        cp = yield self.charger(boot=False)
        yield cp.status(1, "Available")
        yield cp.boot(vendor="Acme", model="Wallbox 11", firmwareVersion="1.2.3")
        yield self.office.wait_for_call("StatusNotification", "HOME-CP1")
        (boot,) = self.office.calls("HOME-CP1", "BootNotification")
        self.assertEqual(boot, {"chargePointVendor": "Acme", "chargePointModel": "Wallbox 11",
                                "firmwareVersion": "1.2.3"})
        (status,) = self.office.calls("HOME-CP1", "StatusNotification")
        self.assertEqual((status["connectorId"], status["status"]), (1, "Available"))
        self.assertEqual(self.uplink.registration, "Accepted")

    @defer.inlineCallbacks
    def test_session_ids_mapped(self):
        """
        The charger gets our transactionId, the back office its own, for the
        start, the meter values and the stop.
        """
        yield self.start()
        cp = yield self.charger()
        yield eventually(lambda: self.uplink.accepted)
        start = yield cp.start_transaction(1, "04A1B2C3", 1000)
        ours = start["transactionId"]
        self.assertLess(ours, 900000)
        self.assertEqual(start["idTagInfo"]["status"], "Accepted")
        yield cp.meter_values(1, ours, energy_wh=1500)
        yield cp.stop_transaction(ours, 2500, reason="EVDisconnected")
        yield self.office.wait_for_call("StopTransaction", "HOME-CP1")
        (mv,) = self.office.calls("HOME-CP1", "MeterValues")
        (stop,) = self.office.calls("HOME-CP1", "StopTransaction")
        self.assertEqual(mv["transactionId"], 900001)
        self.assertEqual(stop["transactionId"], 900001)
        self.assertEqual((stop["meterStop"], stop["reason"]), (2500, "EVDisconnected"))
        yield eventually(lambda: self.uplink.outbox.depth == 0)
        self.assertEqual(self.uplink.outbox.remote_id(ours), 900001)
        self.assertEqual(self.service.upstream.status()["CP1"]["sessions"], [
            {"transaction_id": ours, "remote_id": 900001, "status": "Invalid",
             "flagged": True}])
