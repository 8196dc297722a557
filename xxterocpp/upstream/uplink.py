# -*- test-case-name: tests.test_upstream_uplink,tests.test_upstream_attacks -*-
"""
One charger's conversation with its back office, speaking as that charger:
the BootNotification on every (re)connect and nothing else before it is
Accepted, Heartbeats at the back office's interval, statuses live (and each
connector's once after a reconnect), the outbox delivered one message at a
time with the back office's transactionIds put in, the tags it decides, and
its CALLs handed to L{xxterocpp.upstream.relay}.
"""

from functools import partial

import attr
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from xxterocpp.control.setup import SAMPLE_INTERVAL
from xxterocpp.domain.keys import masked_frame
from xxterocpp.domain.model import FrameHistory, casefold, utc_from_seconds
from xxterocpp.domain.tags import Authorization
from xxterocpp.ocpp import messages as m
from xxterocpp.ocpp.rpc import CallError, CallTimeout, NotConnected
from xxterocpp.upstream import relay

#: Seconds a BootNotification that got no answer, or a CALLERROR, waits
#: before it is sent again (a Pending or Rejected one waits the interval the
#: back office gave, or this when it gave none).
BOOT_RETRY = 60

#: Heartbeat interval (s) when the back office's answer gives none.
HEARTBEAT_INTERVAL = 300

#: Seconds the charger's Authorize (or StartTransaction) waits for the back
#: office's verdict on a tag the controller does not know; then the
#: offline rule decides.
AUTHORIZE_WAIT = 5.0

#: How long a verdict of the back office is kept when its idTagInfo has no
#: expiryDate (s).
VERDICT_LIFETIME = 24 * 3600

#: The first and the longest pause (s) before a queued message the back
#: office did not take (a CALLERROR, no answer) is sent again.
RETRY = (2.0, 300.0)

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
        self._verdicts = {}
        self._sending = None
        self._failures = 0
        self._timers = {}
        # The back office's CALLs not answered yet (L{dispatch}).
        self._handling = 0
        # The session on which our BootNotification waits for its answer.
        self._booting = None
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

    # -- timers ------------------------------------------------------------

    def _later(self, name, delay, f, *args):
        self._cancel(name)
        self._timers[name] = self.clock.callLater(delay, self._fire, name, f, *args)

    def _fire(self, name, f, *args):
        self._timers.pop(name, None)
        f(*args)

    def _cancel(self, name):
        timer = self._timers.pop(name, None)
        if timer is not None and timer.active():
            timer.cancel()

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
        for name in list(self._timers):
            self._cancel(name)

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
        for name in list(self._timers):
            self._cancel(name)

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
            self._later("boot", response.interval or BOOT_RETRY, self._boot)
            return
        self.link.good()
        self.heartbeat_interval = response.interval or HEARTBEAT_INTERVAL
        self._heartbeats()
        self._send_statuses()
        self._pump()

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
            self._later("boot", BOOT_RETRY, self._boot)

    # -- heartbeats and statuses -------------------------------------------

    def _heartbeats(self):
        try:
            interval = int(self.virtual("HeartbeatInterval", self.heartbeat_interval))
        except ValueError:
            interval = self.heartbeat_interval
        self._later("heartbeat", max(interval, 1), self._heartbeat)

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

    # -- the outbox ----------------------------------------------------------

    def queue(self, action, transaction_id, request):
        """
        Put a transaction message in the outbox, thinned MeterValues while
        the back office is away.

        @return: a Deferred firing once it is stored.
        """
        thin = None if self.accepted else self.sample_interval
        d = self.outbox.add(action, transaction_id, m.encode(request), thin)
        return d.addCallback(self._queued)

    def _queued(self, ignored):
        self._pump()

    def _pump(self):
        if not self.accepted or self._sending is not None or "retry" in self._timers:
            return
        while True:
            message = self.outbox.head()
            if message is None:
                return
            request = self._request(message)
            if request is not None:
                break
        self._sending = message
        session = self.session
        session.call(request, late=partial(self._late, message)).addCallbacks(
            self._delivered, self._not_delivered, (message,), None, (message,))

    def _request(self, message):
        """
        @return: the request of C{message} with the back office's ids, or
            None when it can never be sent (it is a dead letter then).
        """
        spec = m.ACTIONS[message.action]
        try:
            request, _ = m.decode(spec.request, message.payload, lenient=True)
        except m.ValidationError as e:
            self.outbox.dead(message, f"not a valid {message.action}: {e.message}")
            return None
        if message.action == "StartTransaction":
            reservation = request.reservation_id
            if reservation is not None:
                reservation = self.remote_reservation(reservation)
                request = attr.evolve(request, reservation_id=reservation)
            return request
        remote = self.outbox.remote_id(message.transaction_id)
        if remote is None:
            self.outbox.dead(message, "its StartTransaction got no transactionId from the"
                                      " back office")
            return None
        return attr.evolve(request, transaction_id=remote)

    def _late(self, message, result):
        """
        The back office answered C{message} after the call timeout. Its
        answer stands while the message is still to be delivered: sending
        it again would be a second transaction at the back office.
        """
        if isinstance(result, Failure):
            return
        if message is not self.outbox.head():
            self._twice(message, result)
            return
        self._cancel("retry")
        self._sending = message
        self._delivered(result, message)

    def _twice(self, message, response):
        """
        An answer to a message sent again, after the answer to another
        sending of it was taken: for a StartTransaction, a transaction of
        the back office's own that nothing will stop.
        """
        if message.action == "StartTransaction":
            self.log.warn("{id}: the back office answered StartTransaction {seq} twice;"
                          " its transaction {remote} is one too many",
                          id=self.charger_id, seq=message.seq, remote=response.transaction_id)

    def _delivered(self, response, message):
        if message is not self._sending:
            self._twice(message, response)
            return
        if message.action == "StartTransaction" and response.transaction_id is None:
            self._not_delivered(Failure(CallError(
                m.FORMATION_VIOLATION, "the answer has no transactionId")), message)
            return
        self._sending = None
        self._failures = 0
        if message.action == "StartTransaction":
            info = response.id_tag_info
            status = (info.status if info is not None else None) or "Invalid"
            self._check_reused(message.transaction_id, response.transaction_id)
            mapping = self.outbox.delivered(message, response.transaction_id, status)
            if info is not None:
                self.remember(self._tag_of(message), info)
            if status != "Accepted":
                self.upstream.refused(self, mapping)
        else:
            self.outbox.delivered(message)
        self._pump()

    def _check_reused(self, transaction_id, remote_id):
        """
        Warn when the back office gives one of our transactions the id it
        gave another that is still running here: both are flagged
        (L{status}), and its commands with that id concern the newer.
        """
        other = self.outbox.local_id(remote_id)
        tx = None if other is None else self.central.book.get(other)
        if tx is not None and tx.running:
            self.log.warn("{id}: the back office gave transaction {tx} its transactionId"
                          " {remote}, which it gave our running transaction {other} already",
                          id=self.charger_id, tx=transaction_id, remote=remote_id, other=other)

    def _not_delivered(self, failure, message):
        failure.trap(CallError, CallTimeout, NotConnected)
        if message is not self._sending:
            return
        self._sending = None
        if failure.check(NotConnected):
            # Sent again once the back office accepts the charger again.
            return
        if failure.check(CallError) and self.outbox.failed(message, str(failure.value)):
            self.log.warn("{id}: the back office refused {action} {seq} {n} times: kept as a"
                          " dead letter", id=self.charger_id, action=message.action,
                          seq=message.seq, n=message.failures)
            self._pump()
            return
        self._failures += 1
        first, longest = RETRY
        delay = min(first * 2 ** (self._failures - 1), longest)
        self.log.info("{id}: {action} to the back office: {why}; again in {delay} s",
                      id=self.charger_id, action=message.action,
                      why=failure.getErrorMessage(), delay=delay)
        self._later("retry", delay, self._pump)

    @staticmethod
    def _tag_of(message):
        return message.payload.get("idTag", "")

    # -- tags ------------------------------------------------------------------

    def remember(self, id_tag, info):
        """
        Keep the back office's verdict on a tag (an C{IdTagInfo}) until its
        expiry.
        """
        if not id_tag or info is None or info.status is None:
            return
        now = self.clock.seconds()
        until = now + VERDICT_LIFETIME
        if info.expiry_date is not None:
            until = min(until, info.expiry_date.timestamp())
        self._verdicts[casefold(id_tag)] = (
            Authorization(info.status, info.parent_id_tag, info.expiry_date), until)

    def verdict(self, id_tag):
        """
        @return: the back office's verdict on a tag the controller does not
            accept: its kept answer, else the offline rule's (None for
            C{local}: the controller's own verdict stands).
        """
        kept = self._verdicts.get(casefold(id_tag))
        if kept is not None:
            if kept[1] > self.clock.seconds():
                return kept[0]
            del self._verdicts[casefold(id_tag)]
        rule = self.config.offline_authorization
        if rule == "accept":
            return Authorization("Accepted")
        if rule == "reject":
            return Authorization("Invalid")
        return None

    def knows(self, id_tag):
        """
        @return: whether a verdict of the back office on C{id_tag} is kept.
        """
        kept = self._verdicts.get(casefold(id_tag))
        return kept is not None and kept[1] > self.clock.seconds()

    def ask(self, id_tag):
        """
        Ask the back office about a tag (Authorize) when it accepted the
        charger; its verdict is kept (L{remember}), also when it comes after
        L{AUTHORIZE_WAIT}.

        @return: a Deferred firing with None once it answered, or after
            L{AUTHORIZE_WAIT} seconds.
        """
        if not self.accepted:
            return defer.succeed(None)
        waiter = defer.Deferred()
        timer = self.clock.callLater(AUTHORIZE_WAIT, waiter.callback, None)

        def answered(response):
            self.remember(id_tag, response.id_tag_info)

        def done(ignored):
            if timer.active():
                timer.cancel()
                waiter.callback(None)

        d = self.session.call(m.AuthorizeRequest(id_tag=id_tag))
        d.addCallbacks(answered, _ignore).addBoth(done)
        return waiter

    def forget_verdicts(self):
        """
        Drop the kept verdicts of the back office (its ClearCache).
        """
        self._verdicts.clear()

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

    def map_reservation(self, remote, local):
        """
        Remember that the back office's reservation C{remote} is our
        C{local} one.
        """
        kept = dict(self.setting("reservations", {}))
        kept[str(local)] = remote
        while len(kept) > relay.RESERVATIONS_KEPT:
            del kept[min(kept, key=int)]
        self.save("reservations", kept)

    def remote_reservation(self, local):
        """
        @return: the back office's reservationId for ours, or None.
        """
        return self.setting("reservations", {}).get(str(local))

    def local_reservation(self, remote):
        """
        @return: our reservationId for the back office's, or None.
        """
        for local, theirs in self.setting("reservations", {}).items():
            if theirs == remote:
                return int(local)
        return None

    def profile_set(self, connector, wanted, capped):
        """
        Remember a charging profile the back office set at the charger: as
        it asked for it (C{wanted}, with our transactionId) and as the
        charger got it (C{capped}).
        """
        profiles = dict(self.setting("profiles", {}))
        profiles[str(wanted.charging_profile_id)] = [
            connector, wanted.charging_profile_purpose, wanted.stack_level,
            m.encode(wanted), m.encode(capped)]
        self.save("profiles", profiles)

    def limit_changed(self, connector):
        """
        The limit in force at a connector changed: the back office's
        profiles follow it (L{relay.recap}).
        """
        relay.recap(self, connector)

    def profile_cleared(self, profile_id):
        """
        Forget a charging profile of the back office that was cleared.
        """
        profiles = dict(self.setting("profiles", {}))
        if profiles.pop(str(profile_id), None) is not None:
            self.save("profiles", profiles)

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
            "since": utc_from_seconds(self.link.since).isoformat(),
            "last_error": self.link.last_error,
            "registration": self.registration,
            "tags": self.setting("tags", []),
        })

