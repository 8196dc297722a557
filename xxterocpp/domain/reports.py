# -*- test-case-name: tests.test_domain,tests.test_domain_state -*-
"""
What chargers report of themselves: their boot, the status of each
connector and of the whole charger, the progress of an update or upload,
and security events; and what they accepted: the current limit in force,
a reservation. Kept on the L{Charger}s, in the store where it must outlive
a restart, and announced as events.
"""

from collections import deque

from twisted.logger import Logger

from xxterocpp.domain.events import ChargerBooted, LimitChanged, MeterChanged, StatusChanged
from xxterocpp.domain.model import stored
from xxterocpp.pacing import CommitPacer

#: Connector states in which no current flows, whatever the last sample said.
_NOT_CHARGING = frozenset({"Available", "SuspendedEV", "SuspendedEVSE", "Finishing",
                           "Unavailable", "Faulted"})

#: The setting prefix (+ connector) of the current limit in force.
LIMIT_IN_FORCE = "limit_in_force/"

#: Seconds between two commits of one charger's boot data when it changes;
#: the changes in between are lazy writes (L{CommitPacer}).
BOOT_COMMITS = 60


class ChargerReports:
    """
    The chargers' reports of themselves, and what they accepted.
    """

    log = Logger()

    def __init__(self, chargers, settings, store, clock, now, emit, workarounds):
        """
        @param chargers: the central system's L{Charger}s by identity.
        @param settings: the central system's persisted settings, shared.
        @param clock: an C{IReactorTime} (events after the answer).
        @param now: zero-argument callable, the time as an aware UTC datetime.
        @param emit: called with each event.
        @param workarounds: the L{xxterocpp.domain.workarounds.Workarounds},
            chosen again after each boot.
        """
        self._chargers = chargers
        self._settings = settings
        self._store = store
        self._clock = clock
        self._now = now
        self._emit = emit
        self._workarounds = workarounds
        self._boots = CommitPacer(BOOT_COMMITS)

    def load(self):
        """
        Take the statuses the store kept (at start-up).
        """
        for row in self._store.load_connector_status():
            charger = self._chargers.get(row.charger_id)
            if charger is None:
                continue
            if row.connector == 0:
                charger.status, charger.error_code = row.status, row.error_code
            else:
                c = charger.connector(row.connector)
                c.status, c.error_code, c.info, c.status_time = (
                    row.status, row.error_code, row.info, row.at)

    def restore(self, charger):
        """
        Take over what the settings keep of C{charger}: its boot (and the
        workarounds chosen from it), the limits in force.
        """
        boot = self._settings.get((charger.id, "boot"))
        if isinstance(boot, dict):
            charger.boot = boot
            self._workarounds.choose(charger)
        for (scope, key), value in self._settings.items():
            if scope == charger.id and key.startswith(LIMIT_IN_FORCE):
                number = int(key[len(LIMIT_IN_FORCE):])
                if number in charger.connectors:
                    charger.connectors[number].limit = value

    def booted(self, charger_id, boot):
        """
        A charger booted (its registration is accepted); L{ChargerBooted}
        follows in the next reactor turn, after the answer is sent.

        @param boot: a L{xxterocpp.domain.model.Boot}.
        """
        charger = self._chargers[charger_id]
        record = boot.as_dict()
        seconds = self._clock.seconds()
        if record != charger.boot:
            # A reconnect storm after a controller restart writes nothing;
            # one that boots with new data a hundred times a second commits
            # once a minute (L{BOOT_COMMITS}).
            charger.boot = record
            lazy = self._boots.lazy((charger_id, "boot"), seconds)
            self._store.put_setting(charger_id, "boot", record, lazy=lazy, quiet=True)
        charger.booted_at = self._now()
        charger.chatter(self.log, "info", seconds,
                        "{id}: booted ({vendor} {model}, firmware {firmware})", id=charger_id,
                        vendor=boot.vendor, model=boot.model, firmware=boot.firmware)
        self._workarounds.choose(charger)
        self._clock.callLater(0, self._emit, ChargerBooted(charger_id))

    def status_reported(self, charger_id, connector, status, error_code="NoError", info=None,
                        vendor_error_code=None, timestamp=None):
        """
        A charger reported the status of a connector, or (C{connector} None)
        of itself (kept as connector 0); L{StatusChanged} when status or
        error code changed.

        @param timestamp: when the status began (aware UTC), or None for now.
        """
        charger = self._chargers[charger_id]
        at = timestamp or self._now()
        if connector is None:
            changed = (charger.status, charger.error_code) != (status, error_code)
            charger.status, charger.error_code = status, error_code
            if changed:
                charger.chatter(self.log, "info", self._clock.seconds(),
                                "{id}: {status} ({error})", id=charger_id, status=status,
                                error=error_code)
                self._emit(StatusChanged(charger_id, None))
            self._store.save_connector_status(charger_id, 0, status, error_code, info, at,
                                              quiet=True)
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
            self._emit(MeterChanged(charger_id, connector))
        if changed:
            charger.chatter(self.log, "info", self._clock.seconds(),
                            "{id}/{connector}: {status} ({error})", id=charger_id,
                            connector=connector, status=status, error=error_code)
            self._emit(StatusChanged(charger_id, connector))
        # Quiet: a status a frame, none of them waited for.
        self._store.save_connector_status(charger_id, connector, status, error_code, info, at,
                                          quiet=True)

    def progress_reported(self, charger_id, kind, status):
        """
        A charger reported the progress of a firmware update, diagnostics or
        log upload (C{kind}), kept for the status page.
        """
        charger = self._chargers[charger_id]
        charger.notifications[kind] = (self._now(), status)
        charger.chatter(self.log, "info", self._clock.seconds(), "{id}: {name} {status}",
                        id=charger_id, name=kind, status=status)

    def security_event(self, charger_id, timestamp, kind, tech_info=None):
        """
        A charger reported a security event; the last 20 are kept.
        """
        charger = self._chargers[charger_id]
        if not isinstance(charger.security_events, deque):
            charger.security_events = deque(charger.security_events, maxlen=20)
        charger.security_events.append((timestamp, kind, tech_info))
        charger.chatter(self.log, "warn", self._clock.seconds(),
                        "{id}: security event {type} {info}", id=charger_id, type=kind,
                        info=tech_info or "")

    def limit_in_force(self, charger_id, connector, limit):
        """
        Record the current limit a charger accepted for a connector (the
        control model applied it); L{LimitChanged} when it differs. It is
        kept in the store: the charger keeps it across a restart of ours.
        """
        c = self._chargers[charger_id].connector(connector)
        if c.limit != limit:
            c.limit = limit
            self.log.info("{id}/{connector}: limit {limit} A in force", id=charger_id,
                          connector=connector, limit=limit)
            stored(self._store.put_setting(charger_id, f"{LIMIT_IN_FORCE}{connector}", limit))
            self._emit(LimitChanged(charger_id, connector, limit))

    def reserved(self, charger_id, connector, reservation):
        """
        Record a reservation the charger accepted, or None once it is freed.
        """
        self._chargers[charger_id].connector(connector).reservation = reservation
