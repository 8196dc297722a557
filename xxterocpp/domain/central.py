# -*- test-case-name: tests.test_domain,tests.test_domain_state,tests.test_handlers,tests.test_server -*-
"""
The central system: what a protocol adapter calls with plain values (the
OCPP one: C{ocpp/handlers.py}, C{ocpp/server.py}), itself or, for what one
of them owns, its parts; and what it keeps itself: the chargers
configured, the persisted state loaded at start-up, the verdict on a tag,
and the events observers see. Its parts do the rest: the connections and
what each connector counts as (L{connections}), what chargers report and
accept (L{reports}), the transaction book (L{book}), the tag registry
(L{tags}), the chargers' passwords (L{credentials}), their security profiles
(L{security}) and certificates (L{certificates}), the refused connection
attempts (L{refusals}), the unknown identities (L{unknown}), the
workarounds (L{workarounds}) and the commands chargers accepted but have
not carried out (L{accepted}).
"""

import attr
from twisted.logger import Logger

from xxterocpp.domain.accepted import AcceptedCommands
from xxterocpp.domain.book import UNBOOKED, TransactionBook
from xxterocpp.domain.certificates import CertificateSigning
from xxterocpp.domain.connections import CONTACT, Connections
from xxterocpp.domain.credentials import Credentials
from xxterocpp.domain.events import ClockStepped, StateLoaded, TagsChanged
from xxterocpp.domain.model import Charger, casefold, utc_from_seconds
from xxterocpp.domain.refusals import Refusals
from xxterocpp.domain.reports import ChargerReports
from xxterocpp.domain.security import SecurityProfiles
from xxterocpp.domain.tags import Authorization, TagRegistry
from xxterocpp.domain.trusted import TRUSTED_TIME, TrustedTime
from xxterocpp.domain.unknown import UnknownAttempts, UnknownChargers
from xxterocpp.domain.workarounds import Workarounds


class CentralSystem:
    """
    The central system's view of every charger: what the adapters, the
    controller and the observers start from. Its parts are public and
    called directly for what each owns (a connection, a report, a
    password); its own methods are those that span parts or need the
    configuration, and what a charging point is now for the readers
    (L{point_status}, L{pending}, L{last_session}).

    @ivar chargers: L{Charger} by identity, for every configured identity.
    @ivar connections: the L{Connections}: the adapters tell it of each
        connection, frame and refusal (L{Connections.connected},
        L{Connections.refused}, ...) and ask it who an identity is
        (L{Connections.lookup}).
    @ivar reports: the L{ChargerReports}: what the chargers report
        (L{ChargerReports.booted}, L{ChargerReports.status_reported}, ...).
    @ivar unknown: the L{UnknownChargers} that tried to connect.
    @ivar unknown_attempts: the L{UnknownAttempts}: each attempt of an
        unknown identity is recorded there (L{UnknownAttempts.record}),
        and stored, the last at shutdown (L{UnknownAttempts.save}).
    @ivar refusals: the L{Refusals}: why connections were refused.
    @ivar settings: the persisted run-time settings, C{{(scope, key):
        value}}, once L{load}ed (L{StateLoaded} is emitted then).
    @ivar tags: the L{TagRegistry}; its changes are stored and emit
        L{TagsChanged}.
    @ivar book: the L{TransactionBook}; meter values go to it directly
        (L{TransactionBook.meter_values}).
    @ivar credentials: the L{Credentials}: the chargers' passwords and
        their key changes (L{Credentials.check_password},
        L{Credentials.begin_key_change}, ...).
    @ivar security: the L{SecurityProfiles}: the profile each charger is
        held to, its certificate, the admission of its connections
        (L{SecurityProfiles.admit}).
    @ivar signing: the L{CertificateSigning} of the chargers' certificate
        requests (its C{signer} None: signing is disabled).
    @ivar workarounds: the L{Workarounds}: each charger's choice.
    @ivar time: the L{TrustedTime}: L{now}, and whether the system clock
        is right (C{time.ok}).
    @ivar accepted: the L{AcceptedCommands}: what chargers accepted and
        have not done (yet), told by the control model; it sees every
        event before the observers do.
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
        self.unknown_attempts = UnknownAttempts(self.unknown, store, clock, self.now)
        self.refusals = Refusals()
        self.settings = {}
        self.time = TrustedTime(
            clock, wall or clock.seconds, floor,
            # Lazy: every SAVE_EVERY a commit of its own would be most of
            # an idle hour's writes; a crash sets it back by minutes, and a
            # floor a little older misses nothing (docs/clock.md#kept). Its
            # failure is the trusted time's to tell.
            save=lambda text: store.put_setting("central", TRUSTED_TIME, text, lazy=True),
            # After the answer or the call that noticed it, like ChargerBooted.
            on_step=lambda delta: clock.callLater(0, self.emit, ClockStepped(delta)))
        self.connections = Connections(config, self.chargers, self.refusals, self.settings,
                                       store, clock, self.time.seconds, self.emit)
        self.tags = TagRegistry(store, config.tags, on_change=lambda: self.emit(TagsChanged()))
        self.accepted = AcceptedCommands(self.chargers, self.point_status, clock, self.now,
                                         self.emit)
        self.book = TransactionBook(store, self.chargers, self.now, self.emit,
                                    dated=self.time.dated, seconds=clock.seconds,
                                    offered=self.accepted.offered, wall=self.time.seconds)
        self.credentials = Credentials(config, self.settings, store)
        self.security = SecurityProfiles(config, self.settings, store, self.credentials,
                                         self.connections.lookup)
        self.signing = CertificateSigning(self.security, clock, self.now, self.emit, signer)
        self.workarounds = Workarounds(config)
        self.reports = ChargerReports(self.chargers, self.settings, store, clock, self.now,
                                      self.emit, self.workarounds)
        # The pending commands end before anybody looks at the event.
        self._observers = [self.accepted.observe]
        #: An outside authority on the tags the registry does not accept
        #: (the back office of L{xxterocpp.upstream}), or None:
        #: C{authority(charger_id, id_tag)} returns an L{Authorization}, or
        #: None to keep the registry's verdict.
        self.authority = None
        self._apply_chargers(config)

    # -- set-up --------------------------------------------------------------

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
        self.book.load()
        self.reports.load()
        self.unknown_attempts.load()
        # Filled in place: the credentials, the reports and the connections
        # share it.
        self.settings.clear()
        self.settings.update(self.store.load_settings())
        self.time.restore(self.settings.get(("central", TRUSTED_TIME)), [
            when for (scope, key), value in self.settings.items()
            if key == CONTACT and isinstance(value, dict) for when in value.values()])
        self.book.budget.restore(self.settings)
        self.connections.start()
        for charger in self.chargers.values():
            self._restore(charger)
        # The configuration may have changed while the service was down.
        self.credentials.reconcile()
        self.security.reconcile()
        self.tags.load()
        self.emit(StateLoaded())

    def _restore(self, charger):
        # What the settings keep of it.
        self.reports.restore(charger)
        self.connections.restore(charger)

    def shutdown(self):
        """
        Arm no more timers and cancel the offline timers (the service
        stops); keep the trusted time.
        """
        # The chargers still connected were so until now: the next start
        # counts their offline_after from the time kept here.
        self.time.seconds()
        self.time.tell_held()
        self.time.flush()
        self.connections.shutdown()
        self.accepted.shutdown()

    def _apply_chargers(self, config):
        wanted = config.charger_ids()[: config.ocpp.max_chargers]
        for charger_id in wanted:
            new = charger_id not in self.chargers
            charger = self.chargers.setdefault(charger_id, Charger(charger_id))
            for point in config.charging_points(charger_id):
                charger.connector(point.connector)
            self.workarounds.choose(charger)
            if new and self.connections.watching:
                # Added by a reload: what the store knew of it still holds.
                self._restore(charger)
        for charger_id in list(self.chargers):
            if charger_id not in wanted:
                self.connections.removed(self.chargers.pop(charger_id))

    def reconfigure(self, config):
        """
        Apply a re-read configuration (SIGHUP): chargers that stay keep their
        connection and state.
        """
        self.config = config
        self.tags.configure(config.tags)
        self.credentials.configure(config)
        self.security.configure(config)
        self.connections.configure(config)
        self.workarounds.configure(config)
        self._apply_chargers(config)

    # -- events --------------------------------------------------------------

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

    def suggest_quirk(self, charger_id, name, behaviour):
        """L{Workarounds.suggest} (once per charger and workaround)."""
        self.workarounds.suggest(self.chargers.get(charger_id), name, behaviour)

    # -- what a charging point is now (for the readers: KNX, web) -----------

    def point_status(self, charger_id, connector):
        """L{Connections.point_status}."""
        return self.connections.point_status(charger_id, connector)

    def pending(self, charger_id, connector):
        """L{AcceptedCommands.pending}."""
        return self.accepted.pending(charger_id, connector)

    def last_session(self, charger_id, connector):
        """L{TransactionBook.last_session}."""
        return self.book.last_session(charger_id, connector)

    # -- what chargers accept, what needs the charger's connection -----------

    def limit_in_force(self, charger_id, connector, limit, whole_charger=False):
        """
        L{ChargerReports.limit_in_force}; C{whole_charger}: the charger took
        it as its share of one limit of all its connectors together (a
        ChargePointMaxProfile), by which L{AcceptedCommands.offered} judges
        what it offers.
        """
        self.accepted.bounds(charger_id, connector, whole_charger)
        self.reports.limit_in_force(charger_id, connector, limit)

    def certificate_requested(self, charger_id, csr):
        """
        L{CertificateSigning.requested}, for a CSR that came over the
        charger's connection (TLS or not: L{Charger.secure}).
        """
        return self.signing.requested(charger_id, csr, self.chargers[charger_id].secure)

    def signing_refusal(self, charger_id):
        """
        L{SecurityProfiles.signing_refusal} of the charger's connection.
        """
        return self.security.signing_refusal(charger_id, self.chargers[charger_id].secure)

    # -- tags and transactions -----------------------------------------------

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

    def start_transaction(self, charger_id, connector, id_tag, meter_start, timestamp,
                          reservation_id=None):
        """
        A charger started a transaction: authorise it and book it.

        @return: C{(transaction_id, authorization)}, or a Deferred firing
            with it once the transaction is stored (a charger that saw its
            transactionId must find it again after a crash); for a start
            beyond its connector's budget (L{TransactionBook.budgeted}),
            C{(UNBOOKED, authorization)} at once, nothing booked.
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
        point = self.config.charger(charger_id, connector) is not None
        if not self.book.budgeted(charger_id, connector, meter_start, timestamp, point):
            # docs/ocpp.md#start-budget: ConcurrentTx, not a verdict on the
            # tag that the charger would keep in its authorization cache.
            if authorization.status == "Accepted":
                authorization = attr.evolve(authorization, status="ConcurrentTx")
            return UNBOOKED, authorization
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
