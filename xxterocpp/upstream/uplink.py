# -*- test-case-name: tests.test_upstream_uplink,tests.test_upstream_backoffice,tests.test_upstream_attacks -*-
"""
One charger's conversation with its back office, speaking as that charger:
the BootNotification on every (re)connect and nothing else before it is
Accepted, Heartbeats at the back office's interval, statuses live (and each
connector's once after a reconnect), and its CALLs handed to
L{xxterocpp.upstream.relay}. Its parts: the outbox delivered one message at
a time with the back office's ids put in (L{delivery}), the tags the back
office decides (L{verdicts}), and what its relayed commands left at the
charger (L{relayed}).
"""

from twisted.internet import defer
from twisted.logger import Logger

from xxterocpp.control.setup import SAMPLE_INTERVAL
from xxterocpp.domain.keys import masked_frame
from xxterocpp.domain.model import FrameHistory, utc_from_seconds
from xxterocpp.ocpp import messages as m
from xxterocpp.ocpp.rpc import CallError, CallTimeout, NotConnected
from xxterocpp.upstream import relay
from xxterocpp.upstream.delivery import Delivery
from xxterocpp.upstream.relayed import Relayed
from xxterocpp.upstream.timers import NamedTimers
from xxterocpp.upstream.verdicts import Verdicts

#: Seconds a BootNotification that got no answer, or a CALLERROR, waits
#: before it is sent again (a Pending or Rejected one waits the interval the
#: back office gave, or this when it gave none).
BOOT_RETRY = 60

#: Heartbeat interval (s) when the back office's answer gives none.
HEARTBEAT_INTERVAL = 300

#: The back office's CALLs handled at a time (most wait for the charger).
#: OCPP-J 1.6 §4.1.1 gives it one outstanding; a few are tolerated, more
#: are refused at once, so the controller's own commands (the building's
#: limits) never queue behind a flood of them.
MAX_CALLS = 3

#: Our CALLs that may wait behind the outstanding one on the connection;
#: beyond, a live message (a status, a heartbeat) is not sent: a back
#: office that triggers messages faster than it answers them would grow the
#: line without end, and the queued transaction messages wait behind it.
MAX_WAITING = 20

#: The domain's Boot fields as BootNotification fields.
_BOOT_FIELDS = (
    ("vendor", "chargePointVendor"), ("model", "chargePointModel"),
    ("serial", "chargePointSerialNumber"), ("firmware", "firmwareVersion"),
    ("meter_type", "meterType"), ("meter_serial", "meterSerialNumber"),
    ("iccid", "iccid"), ("imsi", "imsi"),
)


def _ignore(failure):
    # A live message that did not get through: the charger was answered
    # already, there is nothing to retry.
    failure.trap(CallError, CallTimeout, NotConnected)


class Uplink:
    """
    One charger's back office connection and what is said on it.

    @ivar registration: the back office's answer to the last
        BootNotification on this connection (C{"Accepted"}, C{"Pending"},
        C{"Rejected"}), None before.
    @ivar session: the L{OcppSession} while connected, else None.
    @ivar outbox: the charger's L{xxterocpp.upstream.outbox.Outbox}.
    @ivar delivery: the L{Delivery} of the outbox.
    @ivar verdicts: the back office's L{Verdicts} on tags.
    @ivar relayed: the back office's reservations and profiles
        (L{Relayed}).
    @ivar link: the L{Link}.
    @ivar heartbeat_interval: seconds between our Heartbeats upstream.
    @ivar frames: the last frames of the connection (for the status page).
    @ivar asked: the progress notifications (C{"DiagnosticsStatusNotification"},
        C{"FirmwareStatusNotification"}) the back office asked for by
        relaying a command: they go there.
    """

    log = Logger()

    def __init__(self, charger_id, config, upstream, outbox):
        """
        @param config: the charger's L{xxterocpp.config.UpstreamConfig}.
        @param upstream: the L{xxterocpp.upstream.forwarding.Upstream}
            (central, controller, clock, settings).
        @param outbox: the charger's L{Outbox}.
        """
        self.charger_id = charger_id
        self.config = config
        self.upstream = upstream
        self.central = upstream.central
        self.clock = upstream.clock
        self.outbox = outbox
        self.registration = None
        self.session = None
        self.heartbeat_interval = HEARTBEAT_INTERVAL
        self.frames = FrameHistory()
        self.asked = set()
        # "boot" (sent again), "heartbeat" (the next one).
        self._timers = NamedTimers(self.clock)
        # The back office's CALLs not answered yet (L{dispatch}).
        self._handling = 0
        # The session on which our BootNotification waits for its answer.
        self._booting = None
        self.delivery = Delivery(self)
        self.verdicts = Verdicts(self)
        self.relayed = Relayed(self)
        self.link = upstream.link_factory(upstream.clock, charger_id, config, self,
                                          self.central.config.ocpp.call_timeout,
                                          password=self.password, frame_observer=self._frame)

    # -- settings kept for this charger ------------------------------------------

    def setting(self, key, default=None):
        """
        @return: a persisted setting of this charger's back office.
        """
        return self.upstream.settings.get((self.charger_id, "upstream/" + key), default)

    def save(self, key, value):
        """
        Persist a setting of this charger's back office.
        """
        self.upstream.save(self.charger_id, "upstream/" + key, value)

    def password(self):
        """
        @return: the Basic-auth key in force at the back office: the one it
            set with ChangeConfiguration, else the configured one.
        """
        return self.setting("authorization_key") or self.config.password

    def virtual(self, key, default):
        """
        @return: the value the back office set for a configuration key we
            keep for it (the charger keeps the controller's), else
            C{default}.
        """
        return self.setting("configuration", {}).get(key, default)

    @property
    def sample_interval(self):
        """
        The MeterValueSampleInterval (s) the back office wants.
        """
        try:
            return int(self.virtual("MeterValueSampleInterval", SAMPLE_INTERVAL))
        except ValueError:
            return SAMPLE_INTERVAL

    # -- life cycle --------------------------------------------------------

    @property
    def accepted(self):
        """
        Whether the back office accepted the charger on this connection.
        """
        return self.session is not None and self.registration == "Accepted"

    def start(self):
        """
        The charger connected: connect to its back office.
        """
        self.link.start()

    def stop(self):
        """
        The charger went away (or the service stops): close the connection.
        """
        self.link.stop()
        self._cancel_all()

    def _cancel_all(self):
        self._timers.cancel_all()
        self.delivery.halt()

    def opened(self, session):
        """
        The connection is open: the charger's BootNotification goes first.
        """
        self.session = session
        self.registration = None
        self._boot()

    def closed(self):
        """
        The connection is gone (the link connects again by itself).
        """
        self.session = None
        self.registration = None
        self._cancel_all()

    def _frame(self, direction, text):
        text = masked_frame(text)
        self.frames.add(self.clock.seconds(), direction, text)

    # -- registration ------------------------------------------------------

    def boot_payload(self):
        """
        @return: the charger's last BootNotification as JSON (kept across
            restarts), from the domain's boot data when none was seen, or
            None when the charger never booted.
        """
        payload = self.setting("boot")
        if payload is None:
            boot = self.central.chargers[self.charger_id].boot or {}
            payload = {name: boot[key] for key, name in _BOOT_FIELDS if boot.get(key)}
        if "chargePointVendor" not in payload or "chargePointModel" not in payload:
            return None
        return payload

    def charger_booted(self, request):
        """
        The charger sent a BootNotification (answered locally): it is kept,
        and sent upstream now when connected.
        """
        payload = m.encode(request)
        if payload != self.setting("boot"):
            self.save("boot", payload)
        if self.session is not None and "boot" not in self._timers:
            self._boot()

    def _boot(self):
        payload = self.boot_payload()
        if payload is None or self.session is None:
            # Sent once the charger's own BootNotification is known.
            return
        try:
            request, _ = m.decode(m.BootNotificationRequest, payload, lenient=True)
        except m.ValidationError as e:
            self.log.warn("{id}: its BootNotification cannot be sent to the back office: {e}",
                          id=self.charger_id, e=e.message)
            return
        session = self._booting = self.session
        d = session.call(request)
        d.addCallbacks(self._booted, self._boot_failed, (session,), None, (session,))

    def _booted(self, response, session):
        if session is not self.session:
            return
        self._booting = None
        status = response.status or "Rejected"
        if status != self.registration:
            self.log.info("{id}: the back office answered the BootNotification {status}",
                          id=self.charger_id, status=status)
        self.registration = status
        if status != "Accepted":
            self._timers.later("boot", response.interval or BOOT_RETRY, self._boot)
            return
        self.link.good()
        self.heartbeat_interval = response.interval or HEARTBEAT_INTERVAL
        self._heartbeats()
        self._send_statuses()
        self.delivery.pump()

    def _boot_failed(self, failure, session):
        failure.trap(CallError, CallTimeout, NotConnected)
        if session is self._booting:
            self._booting = None
        if session is self.session and failure.check(CallTimeout):
            # A half-open connection, which no Heartbeat tests before the
            # boot is accepted: start again.
            self.link.drop("no answer to the BootNotification")
        elif session is self.session:
            self.log.info("{id}: BootNotification to the back office: {why}",
                          id=self.charger_id, why=failure.getErrorMessage())
            self._timers.later("boot", BOOT_RETRY, self._boot)

    # -- heartbeats and statuses -------------------------------------------

    def _heartbeats(self):
        try:
            interval = int(self.virtual("HeartbeatInterval", self.heartbeat_interval))
        except ValueError:
            interval = self.heartbeat_interval
        self._timers.later("heartbeat", max(interval, 1), self._heartbeat)

    def _heartbeat(self):
        if not self.accepted:
            return
        self.session.call(m.HeartbeatRequest()).addErrback(self._heartbeat_failed)
        self._heartbeats()

    def _heartbeat_failed(self, failure):
        failure.trap(CallError, CallTimeout, NotConnected)
        if failure.check(CallTimeout):
            # A half-open connection: start again.
            self.link.drop("no answer to a Heartbeat")

    def _send_statuses(self, connector=None):
        """
        Each connector's status as the controller knows it (the back office
        missed the changes while away), or C{connector}'s alone.
        """
        charger = self.central.chargers[self.charger_id]
        if charger.status is not None and not connector:
            self.send_live(m.StatusNotificationRequest(
                connector_id=0, error_code="NoError", status=charger.status))
        for number, c in sorted(charger.connectors.items()):
            if c.status is not None and connector in (None, 0, number):
                self.send_live(m.StatusNotificationRequest(
                    connector_id=number, error_code=c.error_code or "NoError", status=c.status,
                    info=c.info, timestamp=c.status_time, vendor_error_code=c.vendor_error_code))

    def send_live(self, request):
        """
        Send a message that is not queued (a status, a notification), if
        the back office accepted the charger; lost otherwise.
        """
        if self.accepted and self.session.waiting < MAX_WAITING:
            self.session.call(request).addErrback(_ignore)

    def progress(self, action, request):
        """
        A firmware or diagnostics status from the charger: for the back
        office when it asked for the upload or update.
        """
        if action in self.asked:
            self.send_live(request)
            if request.status not in ("Downloading", "Installing", "Uploading", "Downloaded"):
                self.asked.discard(action)

    # -- what the back office asked for ---------------------------------------------

    def triggered(self, requested, connector=None):
        """
        Send what the back office's TriggerMessage asked for and we say as
        the charger: the boot, a heartbeat, the statuses we know.
        """
        if self.session is None:
            return
        if requested == "BootNotification":
            if self._booting is not self.session:
                self._boot()
        elif requested == "Heartbeat":
            self.send_live(m.HeartbeatRequest())
        else:
            self._send_statuses(connector)

    def heartbeat_changed(self):
        """
        The back office set the HeartbeatInterval it wants.
        """
        if self.accepted:
            self._heartbeats()

    def limit_changed(self, connector):
        """
        The limit in force at a connector changed: the back office's
        profiles follow it (L{relay.recap}).
        """
        relay.recap(self, connector)

    # -- the back office's CALLs -------------------------------------------------

    def dispatch(self, action, request):
        """
        Handle a CALL of the back office (L{relay.RELAYS}).

        @raise CallError: for an action we do not relay.
        """
        handler = relay.RELAYS.get(action)
        if handler is None:
            raise CallError(m.NOT_SUPPORTED, f"{action} is not supported by this charger")
        if self._handling >= MAX_CALLS:
            raise CallError(m.GENERIC_ERROR, f"{MAX_CALLS} calls are being handled already;"
                                             " one at a time, please")
        result = handler(self, request)
        if isinstance(result, defer.Deferred):
            self._handling += 1
            result.addBoth(self._handled)
        return result

    def _handled(self, result):
        self._handling -= 1
        return result

    def status(self):
        """
        @return: a JSON-able summary for the status page and the API.
        """
        return dict(self.outbox.summary(), **{
            "url": self.link.url,
            "identity": self.link.identity,
            "link": self.link.state,
            # The link counts on the monotonic clock of the timers.
            "since": utc_from_seconds(
                self.central.time.seconds() - (self.clock.seconds() - self.link.since)
            ).isoformat(),
            "last_error": self.link.last_error,
            "registration": self.registration,
            "tags": self.setting("tags", []),
        })

