# -*- test-case-name: tests.test_domain,tests.test_domain_state,tests.test_handlers,tests.test_server -*-
"""
The central system: every charger's connection, boot, statuses and meter,
what each connector counts as (L{CentralSystem.point_status}: offline,
connector 0), and the events observers see; the transaction book (L{book}),
the tag registry (L{tags}), the chargers' passwords (L{credentials}), their
security profiles (L{security}) and the refused connection attempts
(L{refusals}) are its parts. A protocol adapter calls it
with plain values (the OCPP one: C{ocpp/handlers.py}).
"""

import string
from collections import deque

import attr
from twisted.logger import Logger

from xxterocpp.domain.book import TransactionBook
from xxterocpp.domain.credentials import Credentials
from xxterocpp.domain.events import (
    CertificateIssued, ChargerBooted, ChargerConnected, ChargerDisconnected, ClockStepped,
    LimitChanged, MeterChanged, StateLoaded, StatusChanged, TagsChanged,
)
from xxterocpp.domain.keys import masked_frame
from xxterocpp.domain.model import (
    Charger, UnknownCharger, UnknownChargers, casefold, stored, utc_from_seconds,
)
from xxterocpp.domain.security import ChargerCertificate, SecurityProfiles
from xxterocpp.pacing import Pacer
from xxterocpp.domain.refusals import Refusals
from xxterocpp.domain.tags import Authorization, TagRegistry
from xxterocpp.signing import CsrRejected
from xxterocpp.quirks import REGISTRY
from xxterocpp.domain.trusted import TrustedTime

#: Connector states in which no current flows, whatever the last sample said.
_NOT_CHARGING = frozenset({"Available", "SuspendedEV", "SuspendedEVSE", "Finishing",
                           "Unavailable", "Faulted"})

#: Statuses of connector 0 (the whole charger) that hold for every connector
#: until connector 0 reports otherwise.
_WHOLE_CHARGER = frozenset({"Unavailable", "Faulted"})

#: The setting (scope: the charger id) that remembers a charger connected once.
SEEN = "seen"

#: The setting (scope: the charger id) that remembers a charger offline: a
#: restart does not make it count as just disconnected.
OFFLINE = "offline"

#: The setting prefix (+ connector) of the current limit in force.
LIMIT_IN_FORCE = "limit_in_force/"

#: Upper-case ASCII letters to lower case, and nothing else.
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)

#: Seconds between two store writes, and between two log lines, about the
#: unknown identities of one remote address: a flood of made-up identities
#: costs one of each per address and interval.
UNKNOWN_INTERVAL = 10

#: The setting (scope "central") of the newest time trusted
#: (L{TrustedTime}).
TRUSTED_TIME = "trusted_time"

#: Seconds from one certificate signed for a charger to the next: a charger
#: sends one request and waits for CertificateSigned (white paper A02). One
#: that floods SignCertificate had every request signed and a
#: CertificateSigned queued for it (4.6 KB each, kept while it did not
#: answer); now the others are Rejected.
SIGNING_INTERVAL = 60


class CentralSystem:
    """
    The central system's view of every charger: the facade the adapters,
    the controller and the observers use.

    @ivar chargers: L{Charger} by identity, for every configured identity.
    @ivar unknown: the L{UnknownChargers} that tried to connect.
    @ivar refusals: the L{Refusals}: why connections were refused.
    @ivar settings: the persisted run-time settings, C{{(scope, key):
        value}}, once L{load}ed (L{StateLoaded} is emitted then).
    @ivar tags: the L{TagRegistry}; its changes are stored and emit
        L{TagsChanged}.
    @ivar book: the L{TransactionBook}; meter values go to it directly
        (L{TransactionBook.meter_values}).
    @ivar credentials: the L{Credentials} (its methods are also this
        class's: L{check_password}, L{password_for}, ...).
    @ivar security: the L{SecurityProfiles}: the profile each charger is
        held to, its certificate, the admission of its connections
        (L{admit}).
    @ivar signer: the L{xxterocpp.signing.ChargerSigner} that signs the
        chargers' certificate requests, or None (signing is disabled).
    @ivar registry: the L{xxterocpp.quirks.Entry}s each charger's workarounds
        are chosen with (L{xxterocpp.quirks.REGISTRY}; tests give their own).
    @ivar time: the L{TrustedTime}: L{now}, and whether the system clock
        is right (C{time.ok}).
    """

    log = Logger()

    def __init__(self, config, store, clock, signer=None, wall=None, floor=None):
        """
        @param clock: an C{IReactorTime} on a monotonic clock (the timers).
        @param signer: the L{xxterocpp.signing.ChargerSigner}, or None.
        @param wall: the system clock (POSIX seconds), by default
            C{clock.seconds}.
        @param floor: the earliest time a right clock can read
            (L{xxterocpp.domain.trusted.EARLIEST}), or None.
        """
        self.config = config
        self.store = store
        self.clock = clock
        self.chargers = {}
        self.unknown = UnknownChargers()
        self._unknown_writes = Pacer(UNKNOWN_INTERVAL)
        self._unknown_lines = Pacer(UNKNOWN_INTERVAL)
        self.refusals = Refusals()
        self.settings = {}
        self.time = TrustedTime(
            clock, wall or clock.seconds, floor,
            save=lambda text: stored(store.put_setting("central", TRUSTED_TIME, text)),
            # After the answer or the call that noticed it, like ChargerBooted.
            on_step=lambda delta: clock.callLater(0, self.emit, ClockStepped(delta)))
        self.tags = TagRegistry(store, config.tags, on_change=lambda: self.emit(TagsChanged()))
        self.book = TransactionBook(store, self.chargers, self.now, self.emit,
                                    dated=self.time.dated)
        self.credentials = Credentials(config, self.settings, store)
        self.security = SecurityProfiles(config, self.settings, store, self.credentials,
                                         self.lookup)
        self.signer = signer
        self.registry = REGISTRY
        # Charger id -> when its last certificate was signed (clock seconds).
        self._signed_at = {}
        self._signing_lines = Pacer(SIGNING_INTERVAL)
        self._observers = []
        # (charger id, workaround) already suggested in the log.
        self._suggested = set()
        # Charger id -> the timer that makes a disconnected charger offline;
        # armed once the state is loaded, until shutdown.
        self._offline_timers = {}
        self._watching = False
        #: An outside authority on the tags the registry does not accept
        #: (the back office of L{xxterocpp.upstream}), or None:
        #: C{authority(charger_id, id_tag)} returns an L{Authorization}, or
        #: None to keep the registry's verdict.
        self.authority = None
        self._apply_chargers(config)

    # -- set-up ----------------------------------------------------------

    def now(self):
        """
        @return: the time as an aware UTC datetime (L{TrustedTime.seconds}:
            never earlier than the newest time trusted).
        """
        return utc_from_seconds(self.time.seconds())

    def load(self):
        """
        Restore the persisted state (at start-up, before chargers connect).
        """
        store = self.store
        self.book.load()
        for row in store.load_connector_status():
            charger = self.chargers.get(row.charger_id)
            if charger is None:
                continue
            if row.connector == 0:
                charger.status, charger.error_code = row.status, row.error_code
            else:
                c = charger.connector(row.connector)
                c.status, c.error_code, c.info, c.status_time = (
                    row.status, row.error_code, row.info, row.at)
        self.unknown.restore(UnknownCharger(
            row.identity, row.address, row.first_seen, row.last_seen, row.count)
            for row in store.load_unknown_chargers())
        # Filled in place: the credentials share it.
        self.settings.clear()
        self.settings.update(store.load_settings())
        self.time.restore(self.settings.get(("central", TRUSTED_TIME)))
        self._watching = True
        for charger in self.chargers.values():
            self._restore(charger)
        # The configuration may have changed while the service was down.
        self.credentials.reconcile()
        self.security.reconcile()
        self.tags.load()
        self.emit(StateLoaded())

    def _restore(self, charger):
        """
        Take over what the settings keep of C{charger}; a charger known from
        before waits offline_after for its connection, like one that just
        disconnected.
        """
        settings = self.settings
        boot = settings.get((charger.id, "boot"))
        if isinstance(boot, dict):
            charger.boot = boot
            self._choose_quirks(charger)
        charger.ever_connected = settings.get((charger.id, SEEN)) is True
        charger.offline = settings.get((charger.id, OFFLINE)) is True and not charger.connected
        for (scope, key), value in settings.items():
            if scope == charger.id and key.startswith(LIMIT_IN_FORCE):
                number = int(key[len(LIMIT_IN_FORCE):])
                if number in charger.connectors:
                    charger.connectors[number].limit = value
        if charger.ever_connected and not charger.connected:
            self._watch(charger)

    def shutdown(self):
        """
        Arm no more timers and cancel the offline timers (the service
        stops); keep the trusted time.
        """
        self.time.flush()
        self._watching = False
        for charger_id in list(self._offline_timers):
            self._unwatch(charger_id)

    def _apply_chargers(self, config):
        wanted = config.charger_ids()[: config.ocpp.max_chargers]
        for charger_id in wanted:
            new = charger_id not in self.chargers
            charger = self.chargers.setdefault(charger_id, Charger(charger_id))
            for point in config.charging_points(charger_id):
                charger.connector(point.connector)
            self._choose_quirks(charger)
            if new and self._watching:
                # Added by a reload: what the store knew of it still holds.
                self._restore(charger)
        for charger_id in list(self.chargers):
            if charger_id not in wanted:
                self._unwatch(charger_id)
                self.refusals.forget(charger_id)
                charger = self.chargers.pop(charger_id)
                if charger.session is not None:
                    self.log.info("{id}: removed from the configuration, disconnecting",
                                  id=charger_id)
                    charger.session.close()

    def reconfigure(self, config):
        """
        Apply a re-read configuration (SIGHUP): chargers that stay keep their
        connection and state.
        """
        old = self.config
        self.config = config
        self.tags.configure(config.tags)
        self.credentials.configure(config)
        self.security.configure(config)
        self._apply_chargers(config)
        if (old.ocpp.interface, old.ocpp.port, old.ocpp.secure) != (
                config.ocpp.interface, config.ocpp.port, config.ocpp.secure):
            self.log.warn("[ocpp] interface/port/secure changed: restart the service to apply")

    def _choose_quirks(self, charger):
        """
        Choose the workarounds in force for C{charger} from its boot data and
        its configuration (docs/quirks.md#named-workarounds): at start-up,
        after each boot and after a reload.
        """
        try:
            quirks = self.config.quirk_settings(charger.id).resolve(charger.boot, self.registry)
        except ValueError as e:
            # Not with a checked configuration and registry: keep what holds.
            self.log.error("{id}: workarounds not changed: {e}", id=charger.id, e=str(e))
            return
        if quirks != charger.quirks:
            charger.quirks = quirks
            self.log.info("{id}: workarounds in force: {quirks}", id=charger.id,
                          quirks="; ".join(f"{q.name} ({q.reason})" for q in quirks) or "none")

    def suggest_quirk(self, charger_id, name, behaviour):
        """
        A charger behaved the way workaround C{name} is for: say so in the
        log, once per charger and workaround, unless it is in force already.

        @param behaviour: what it did, for people ("it dropped the
            connection ... after ...").
        """
        charger = self.chargers.get(charger_id)
        if charger is None or charger.quirks.has(name) or (charger_id, name) in self._suggested:
            return
        self._suggested.add((charger_id, name))
        self.log.warn("{id}: {behaviour}: if it does so again, add quirks = [\"{name}\"] to its "
                      "[[charger]] (docs/quirks.md#{name})", id=charger_id, behaviour=behaviour,
                      name=name)

    def subscribe(self, observer):
        """
        Call C{observer(event)} for every domain event.
        """
        self._observers.append(observer)

    def emit(self, event):
        """
        Hand C{event} to every observer (the domain's own events, and those
        the controller announces: L{xxterocpp.domain.events.CommandRefused},
        L{xxterocpp.domain.events.ModeChanged}).
        """
        for observer in list(self._observers):
            try:
                observer(event)
            except Exception:
                self.log.failure("an observer failed on {event}", event=type(event).__name__)

    def limit_in_force(self, charger_id, connector, limit):
        """
        Record the current limit a charger accepted for a connector (the
        control model applied it); L{LimitChanged} when it differs. It is
        kept in the store: the charger keeps it across a restart of ours.
        """
        c = self.chargers[charger_id].connector(connector)
        if c.limit != limit:
            c.limit = limit
            self.log.info("{id}/{connector}: limit {limit} A in force", id=charger_id,
                          connector=connector, limit=limit)
            stored(self.store.put_setting(charger_id, f"{LIMIT_IN_FORCE}{connector}", limit))
            self.emit(LimitChanged(charger_id, connector, limit))

    def reserved(self, charger_id, connector, reservation):
        """
        Record a reservation the charger accepted, or None once it is freed.
        """
        self.chargers[charger_id].connector(connector).reservation = reservation

    # -- what each connector counts as --------------------------------------

    def point_status(self, charger_id, connector):
        """
        What a connector counts as, for every adapter alike: Unavailable
        while its charger is L{offline}; connector 0's status while that is
        Unavailable or Faulted (it holds for the whole charger); else the
        connector's own.

        @return: C{(status, error_code)}, C{(None, None)} before any report.
        """
        charger = self.chargers.get(charger_id)
        if charger is None:
            return None, None
        if charger.offline:
            return "Unavailable", "NoError"
        if charger.status in _WHOLE_CHARGER:
            return charger.status, charger.error_code
        c = charger.connectors.get(connector)
        if c is None or c.status is None:
            return None, None
        return c.status, c.error_code

    def last_session(self, charger_id, connector):
        """L{TransactionBook.last_session}."""
        return self.book.last_session(charger_id, connector)

    def _watch(self, charger):
        # Not back within offline_after: offline.
        self._unwatch(charger.id)
        if self._watching:
            self._offline_timers[charger.id] = self.clock.callLater(
                self.config.knx.offline_after, self._gone, charger.id)

    def _unwatch(self, charger_id):
        timer = self._offline_timers.pop(charger_id, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _gone(self, charger_id):
        del self._offline_timers[charger_id]
        charger = self.chargers.get(charger_id)
        if charger is None or charger.connected or charger.offline:
            return
        charger.offline = True
        stored(self.store.put_setting(charger_id, OFFLINE, True))
        self.log.info("{id}: not back for {seconds} s, its connectors count as Unavailable",
                      id=charger_id, seconds=self.config.knx.offline_after)
        self.emit(StatusChanged(charger_id, None))

    # -- connections -----------------------------------------------------

    def lookup(self, identity):
        """
        @return: the configured identity matching C{identity} (exactly, or
            else ignoring the case of ASCII letters: chargers' UIs change
            case), or None.
        """
        if identity in self.chargers:
            return identity
        # Not str.casefold: it makes "\u017fn1" ("long s") equal "SN1", so
        # a made-up identity could take over a configured one.
        folded = identity.translate(_ASCII_LOWER)
        for charger_id in self.chargers:
            if charger_id.translate(_ASCII_LOWER) == folded:
                return charger_id
        return None

    def record_unknown(self, identity, address):
        """
        Remember an unknown identity trying to connect. The counts are kept
        in memory; an address gets one store write and one log line (for a
        new identity) per L{UNKNOWN_INTERVAL} at most, so what it sends
        meanwhile is stored with the next write of the same identity or by
        L{save_unknown}.
        """
        seconds = self.clock.seconds()
        entry = self.unknown.record(identity, address, utc_from_seconds(seconds))
        if entry.count == 1:
            held = self._unknown_lines.due(address, seconds)
            if held is not None:
                self.log.warn(
                    "unknown charger {identity!r} from {address} tried to connect: add it as"
                    " a [[charger]] id to the configuration to serve it{more}",
                    identity=identity, address=address,
                    more=f" ({held} more new identities from this address since the last"
                         " such line)" if held else "")
        if self._unknown_writes.due(address, seconds) is not None:
            self._save_unknown(entry)

    def _save_unknown(self, entry):
        attempts, entry.unsaved = entry.unsaved, 0
        stored(self.store.record_unknown_attempts(
            entry.identity, entry.address, entry.first_seen, entry.last_seen, attempts))

    def save_unknown(self):
        """
        Queue the store writes of the attempts of unknown identities that
        L{record_unknown} kept in memory only (at shutdown).
        """
        for entry in self.unknown.values():
            if entry.unsaved:
                self._save_unknown(entry)

    def refused(self, identity, address, reason, detail=None):
        """
        A connection attempt of a configured charger was refused (an
        identity not configured is L{record_unknown}'s, and ignored here).

        @param reason: one of L{xxterocpp.domain.refusals.REASONS}.
        @param detail: what more the adapter knows (OpenSSL's reason, the
            name in a certificate), never a secret.
        @raise ValueError: for another reason.
        """
        charger_id = self.lookup(identity)
        if charger_id is not None:
            self.refusals.refused(charger_id, address, reason, self.now(), detail)

    def refused_unnamed(self, address, reason, detail=None):
        """
        A connection was refused before its identity was known (a failed TLS
        handshake, a URL without an identity): kept by address, and as a
        refused attempt of every configured charger whose last known
        address it is (several behind one NAT address).

        @param reason: one of L{xxterocpp.domain.refusals.REASONS}.
        @raise ValueError: for another reason.
        """
        now = self.now()
        self.refusals.refused_unnamed(address, reason, now, detail)
        for charger in self.chargers.values():
            if self._last_address(charger) == address:
                self.refusals.refused(charger.id, address, reason, now, detail)

    def _last_address(self, charger):
        """
        @return: the address a charger last connected or tried to connect
            from (as far as its identity was known), or None.
        """
        refused = self.refusals.last_address(charger.id)
        if refused is None or (charger.connected_since is not None
                               and charger.connected_since > refused[1]):
            return charger.address
        return refused[0]

    def password_for(self, charger_id):
        """L{Credentials.password_for}."""
        return self.credentials.password_for(charger_id)

    def set_password(self, charger_id, key):
        """L{Credentials.set_password}."""
        return self.credentials.set_password(charger_id, key)

    def check_password(self, charger_id, presented):
        """L{Credentials.check_password}."""
        return self.credentials.check_password(charger_id, presented)

    def admit(self, charger_id, secure, certificate, password):
        """L{SecurityProfiles.admit}."""
        return self.security.admit(charger_id, secure, certificate, password)

    def begin_key_change(self, charger_id, key):
        """L{Credentials.begin_key_change}."""
        return self.credentials.begin_key_change(charger_id, key)

    def end_key_change(self, charger_id, key, status):
        """L{Credentials.end_key_change}."""
        return self.credentials.end_key_change(charger_id, key, status)

    def connected(self, charger_id, session, address):
        """
        A charger's connection is open; a previous one is replaced.

        @param session: the adapter's session (anything with C{close()}).
        """
        charger = self.chargers[charger_id]
        old = charger.session
        if old is not None:
            charger.reconnects += 1
            self.log.info("{id}: new connection from {address} replaces the old one",
                          id=charger_id, address=address)
            charger.session = None
            old.close()
        else:
            self.log.info("{id}: connected from {address}", id=charger_id, address=address)
        now = self.now()
        self._unwatch(charger_id)
        charger.session, charger.address = session, address
        charger.connected_since = charger.last_seen = now
        if not charger.ever_connected:
            charger.ever_connected = True
            stored(self.store.put_setting(charger_id, SEEN, True))
        self.emit(ChargerConnected(charger_id))
        if charger.offline:
            charger.offline = False
            stored(self.store.put_setting(charger_id, OFFLINE, False))
            self.emit(StatusChanged(charger_id, None))

    def disconnected(self, charger_id, session):
        """
        A charger's connection closed (ignored for a replaced connection).
        """
        charger = self.chargers.get(charger_id)
        if charger is None or charger.session is not session:
            return
        charger.session = None
        charger.disconnected_since = self.now()
        self.log.info("{id}: disconnected", id=charger_id)
        self.emit(ChargerDisconnected(charger_id))
        self._watch(charger)

    def frame(self, charger_id, direction, text):
        """
        Keep a frame of a charger's connection for the status page.

        @param direction: C{"in"} (from the charger) or C{"out"}.
        """
        charger = self.chargers.get(charger_id)
        if charger is not None:
            # The status page must not show an AuthorizationKey (A01.FR.09).
            text = masked_frame(text)
            seconds = self.time.seconds()
            charger.frames.add(seconds, direction, text)
            if direction == "in":
                charger._last_seen_s = seconds

    # -- what chargers report ----------------------------------------------

    def authorize(self, charger_id, connector, id_tag):
        """
        Decide whether C{id_tag} may charge at a charging point (C{connector}
        None: at any of the charger's): the L{local_verdict}, or for a tag
        it does not accept (neither Blocked nor Expired) the L{authority}'s.

        @return: an L{Authorization}.
        """
        verdict = self.local_verdict(charger_id, connector, id_tag)
        if verdict.status == "Invalid" and self.authority is not None:
            return self.authority(charger_id, id_tag) or verdict
        return verdict

    def local_verdict(self, charger_id, connector, id_tag):
        """
        @return: the L{Authorization} of the tag registry and the charging
            points' C{allowed_tags} alone.
        """
        point = self.config.charger(charger_id, connector) if connector else None
        points = [point] if point else self.config.charging_points(charger_id)
        return self.tags.authorize(points, id_tag, self.now())

    def booted(self, charger_id, boot):
        """
        A charger booted (its registration is accepted); L{ChargerBooted}
        follows in the next reactor turn, after the answer is sent.

        @param boot: a L{Boot}.
        """
        charger = self.chargers[charger_id]
        record = boot.as_dict()
        if record != charger.boot:
            # A reconnect storm after a controller restart writes nothing.
            charger.boot = record
            stored(self.store.put_setting(charger_id, "boot", record))
        charger.booted_at = self.now()
        self.log.info("{id}: booted ({vendor} {model}, firmware {firmware})", id=charger_id,
                      vendor=boot.vendor, model=boot.model, firmware=boot.firmware)
        self._choose_quirks(charger)
        self.clock.callLater(0, self.emit, ChargerBooted(charger_id))

    def status_reported(self, charger_id, connector, status, error_code="NoError", info=None,
                        vendor_error_code=None, timestamp=None):
        """
        A charger reported the status of a connector, or (C{connector} None)
        of itself (kept as connector 0); L{StatusChanged} when status or
        error code changed.

        @param timestamp: when the status began (aware UTC), or None for now.
        """
        charger = self.chargers[charger_id]
        at = timestamp or self.now()
        if connector is None:
            changed = (charger.status, charger.error_code) != (status, error_code)
            charger.status, charger.error_code = status, error_code
            if changed:
                self.log.info("{id}: {status} ({error})", id=charger_id, status=status,
                              error=error_code)
                self.emit(StatusChanged(charger_id, None))
            stored(self.store.save_connector_status(charger_id, 0, status, error_code, info, at))
            return
        c = charger.connector(connector)
        changed = (c.status, c.error_code) != (status, error_code)
        if (c.status == "Reserved" and status in ("Available", "Unavailable", "Faulted")
                and c.reservation is not None and not c.reservation.until_freed):
            # OCPP 1.6 §5.13: expiry, a fault or unavailability ends the
            # reservation at the charger; one held until freed is sent
            # again (control/reservations.py).
            c.reservation = None
        c.status, c.error_code, c.info = status, error_code, info
        c.vendor_error_code, c.status_time = vendor_error_code, at
        if status in _NOT_CHARGING and (c.currents or c.power_w):
            c.currents = {phase: 0.0 for phase in c.currents}
            c.power_w = 0.0 if c.power_w is not None else None
            self.emit(MeterChanged(charger_id, connector))
        if changed:
            self.log.info("{id}/{connector}: {status} ({error})", id=charger_id,
                          connector=connector, status=status, error=error_code)
            self.emit(StatusChanged(charger_id, connector))
        stored(self.store.save_connector_status(charger_id, connector, status, error_code,
                                                info, at))

    def progress_reported(self, charger_id, kind, status):
        """
        A charger reported the progress of a firmware update, diagnostics or
        log upload (C{kind}), kept for the status page.
        """
        self.chargers[charger_id].notifications[kind] = (self.now(), status)
        self.log.info("{id}: {name} {status}", id=charger_id, name=kind, status=status)

    def security_event(self, charger_id, timestamp, kind, tech_info=None):
        """
        A charger reported a security event; the last 20 are kept.
        """
        charger = self.chargers[charger_id]
        if not isinstance(charger.security_events, deque):
            charger.security_events = deque(charger.security_events, maxlen=20)
        charger.security_events.append((timestamp, kind, tech_info))
        self.log.warn("{id}: security event {type} {info}", id=charger_id, type=kind,
                      info=tech_info or "")

    def certificate_requested(self, charger_id, csr):
        """
        A charger asks for its certificate to be signed (white paper A02,
        A03). It is, with the charger-signing CA, when the CSR is fit
        (L{xxterocpp.signing.ChargerSigner.sign}: CN = the identity);
        L{CertificateIssued} then follows in the next reactor turn, after
        the answer.

        @param csr: the PEM certificate signing request.
        @return: whether it was signed.
        """
        if self.signer is None:
            self.log.warn("{id}: certificate signing request refused: signing is disabled (no"
                          " charger-signing CA; make one with 'xxterocpp-certs signing-ca')",
                          id=charger_id)
            return False
        seconds = self.clock.seconds()
        last = self._signed_at.get(charger_id)
        if last is not None and seconds - last < SIGNING_INTERVAL:
            held = self._signing_lines.due(charger_id, seconds)
            if held is not None:
                self.log.warn("{id}: certificate signing request refused: one was signed"
                              " {ago:.0f} s ago, a charger gets one per {s} s{more}",
                              id=charger_id, ago=seconds - last, s=SIGNING_INTERVAL,
                              more=f" ({held} more refused since the last such line)"
                              if held else "")
            return False
        try:
            signed = self.signer.sign(csr, charger_id, self.now())
        except CsrRejected as e:
            self.log.warn("{id}: certificate signing request refused: {why}", id=charger_id,
                          why=e.reason)
            return False
        self._signed_at[charger_id] = seconds
        self.log.info("{id}: certificate signed (serial {serial}, valid until {until})",
                      id=charger_id, serial=signed.serial, until=signed.not_after.isoformat())
        self.clock.callLater(0, self.emit, CertificateIssued(charger_id, signed))
        return True

    def certificate_installed(self, charger_id, serial, not_after):
        """
        A charger took the certificate it was sent (CertificateSigned).
        """
        self.log.info("{id}: installed its new certificate (serial {serial})", id=charger_id,
                      serial=serial)
        self.security.remember_certificate(charger_id, ChargerCertificate(serial, not_after))

    # -- transactions ------------------------------------------------------

    def start_transaction(self, charger_id, connector, id_tag, meter_start, timestamp,
                          reservation_id=None):
        """
        A charger started a transaction: authorise it and book it.

        @return: C{(transaction_id, authorization)}, or a Deferred firing
            with it once the transaction is stored (a charger that saw its
            transactionId must find it again after a crash).
        """
        known = self.book.retry_of(charger_id, connector, id_tag, meter_start, timestamp)
        if known is not None:
            # A retry of a start answered already (the answer was lost):
            # same id, same verdict, nothing booked twice; answered once
            # stored, like the first.
            verdict = Authorization(known.start_status)
            return self.book.stored_start(known).addCallback(lambda tx: (tx.id, verdict))
        authorization = self.authorize(charger_id, connector, id_tag)
        if authorization.status == "Accepted" and not self._own_tag(charger_id, id_tag) and (
                self.book.running_elsewhere(id_tag, charger_id, connector)):
            authorization = attr.evolve(authorization, status="ConcurrentTx")
        d = self.book.start(charger_id, connector, id_tag, meter_start, timestamp,
                            reservation_id, authorization.status)
        return d.addCallback(lambda tx: (tx.id, authorization))

    def _own_tag(self, charger_id, id_tag):
        # Remote starts may run at several connectors at once.
        folded = casefold(id_tag)
        return any(folded == casefold(p.remote_tag)
                   for p in self.config.charging_points(charger_id))

    def stop_transaction(self, charger_id, transaction_id, meter_stop, timestamp, reason,
                         id_tag=None, reading=None):
        """
        A charger stopped a transaction (L{TransactionBook.stop}).

        @return: a Deferred firing once the stop is stored, with the
            L{Authorization} of C{id_tag} (None without one).
        """
        authorization = self.authorize(charger_id, None, id_tag) if id_tag else None
        d = self.book.stop(charger_id, transaction_id, meter_stop, timestamp, reason, id_tag,
                           reading)
        return d.addCallback(lambda ignored: authorization)
