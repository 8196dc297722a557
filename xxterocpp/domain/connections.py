# -*- test-case-name: tests.test_domain_state,tests.test_server,tests.test_refusals -*-
"""
The connections of the configured chargers: which identity a connection is
for, its opening and closing, the frames it carries, a charger that stays
away for C{[knx] offline_after} seconds going offline, what each connector
counts as meanwhile (L{Connections.point_status}), and the attempts that
were refused (L{xxterocpp.domain.refusals}).

The offline_after of a charger runs from its last contact, also across a
restart of the service: the state store keeps when its connection opened
and when it ended (L{CONTACT}), one write at each, never one per frame; of
a charger that reconnects in a loop, one commit per L{CONTACT_COMMITS}
seconds, the others lazy writes (a crash may set its last contact back by
as much as they wait, L{xxterocpp.store._batches.LAZY_WRITE_DELAY}).
"""

import string

from twisted.logger import Logger

from xxterocpp.domain.events import ChargerConnected, ChargerDisconnected, StatusChanged
from xxterocpp.domain.keys import masked_frame
from xxterocpp.domain.model import stored, utc_from_seconds
from xxterocpp.domain.trusted import TRUSTED_TIME, stored_seconds
from xxterocpp.pacing import CommitPacer

#: Statuses of connector 0 (the whole charger) that hold for every connector
#: until connector 0 reports otherwise.
_WHOLE_CHARGER = frozenset({"Unavailable", "Faulted"})

#: The setting (scope: the charger id) that remembers a charger connected once.
SEEN = "seen"

#: The setting (scope: the charger id) that remembers a charger offline: a
#: restart does not make it count as just disconnected.
OFFLINE = "offline"

#: The setting (scope: the charger id) of its last contact:
#: C{{"since": time}} while connected (since when), C{{"left": time}} once
#: the connection ended; ISO 8601 times.
CONTACT = "contact"

#: Seconds between two commits of one charger's L{CONTACT}; the changes in
#: between are lazy writes (L{CommitPacer}).
CONTACT_COMMITS = 60

#: Upper-case ASCII letters to lower case, and nothing else.
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def fold_identity(identity):
    """
    @return: C{identity} with its ASCII letters in lower case, as charger
        identities are compared. Not C{str.casefold}: it makes C{"\u017fn1"}
        ("long s") equal C{"SN1"}, so a made-up identity could take over a
        configured one.
    """
    return identity.translate(_ASCII_LOWER)


class Connections:
    """
    The connection side of every configured charger.

    @ivar watching: whether a disconnected charger goes offline after
        C{offline_after} (from L{start} until L{shutdown}).
    """

    log = Logger()

    def __init__(self, config, chargers, refusals, settings, store, clock, seconds, emit):
        """
        @param chargers: the central system's L{Charger}s by identity.
        @param refusals: the L{xxterocpp.domain.refusals.Refusals} that keep
            the refused attempts.
        @param settings: the central system's persisted settings, shared.
        @param clock: an C{IReactorTime} (the offline timers).
        @param seconds: zero-argument callable, the time (POSIX seconds).
        @param emit: called with each event.
        """
        self._config = config
        self._chargers = chargers
        self._refusals = refusals
        self._settings = settings
        self._store = store
        self._clock = clock
        self._seconds = seconds
        self._emit = emit
        # Charger id -> the timer that makes a disconnected charger offline.
        self._offline_timers = {}
        self._contacts = CommitPacer(CONTACT_COMMITS)
        self.watching = False

    def configure(self, config):
        """
        Take a re-read configuration (its C{offline_after}).
        """
        self._config = config

    def _now(self):
        return utc_from_seconds(self._seconds())

    # -- the life of the service ------------------------------------------

    def start(self):
        """
        The state is loaded: arm the offline timers from now on.
        """
        self.watching = True

    def restore(self, charger):
        """
        Take over what the settings keep of C{charger}'s connections: a
        charger known from before is offline once offline_after has passed
        since its last contact (at once, if it has already), like one
        that disconnected then.
        """
        charger.ever_connected = self._settings.get((charger.id, SEEN)) is True
        charger.offline = (self._settings.get((charger.id, OFFLINE)) is True
                           and not charger.connected)
        if not charger.ever_connected or charger.connected:
            return
        left = self._last_contact(charger)
        if left is not None:
            charger.disconnected_since = utc_from_seconds(left)
        if charger.offline:
            return
        away = None if left is None else max(0.0, self._seconds() - left)
        if away is not None and away >= self._config.knx.offline_after:
            last = charger.disconnected_since.isoformat(timespec="seconds")
            self._offline(charger, f"not heard from since {last}, {away:.0f} s ago")
            return
        self._watch(charger, away or 0.0)

    def _last_contact(self, charger):
        """
        @return: the POSIX seconds of C{charger}'s last contact as the
            store keeps it, or None (a store of an older version): when its
            connection ended; for one that was connected when the service
            stopped (or crashed), the newest time the service kept
            (L{TRUSTED_TIME}), not earlier than the connection's start.
            That connection ended with the service: the store is told once,
            so that the next restart does not count from its own stop.
        """
        contact = self._settings.get((charger.id, CONTACT))
        if not isinstance(contact, dict):
            return None
        left = stored_seconds(contact.get("left"))
        if left is not None:
            return left
        since = stored_seconds(contact.get("since"))
        if since is None:
            return None
        kept = stored_seconds(self._settings.get(("central", TRUSTED_TIME)))
        left = since if kept is None else max(since, kept)
        self._contact(charger.id, "left", utc_from_seconds(left))
        return left

    def _contact(self, charger_id, what, when):
        # The one write of a connection's opening or end.
        value = {what: when.isoformat()}
        self._settings[(charger_id, CONTACT)] = value
        lazy = self._contacts.lazy((charger_id, CONTACT), self._clock.seconds())
        self._store.put_setting(charger_id, CONTACT, value, lazy=lazy, quiet=True)

    def removed(self, charger):
        """
        C{charger} is no longer configured (it is out of the chargers
        already): forget it, and close its connection.
        """
        self._unwatch(charger.id)
        self._refusals.forget(charger.id)
        self._contacts.forget(charger.id)
        if charger.session is not None:
            self.log.info("{id}: removed from the configuration, disconnecting", id=charger.id)
            charger.session.close()

    def shutdown(self):
        """
        Arm no more timers and cancel the offline timers (the service
        stops).
        """
        self.watching = False
        for charger_id in list(self._offline_timers):
            self._unwatch(charger_id)

    # -- connections --------------------------------------------------------

    def lookup(self, identity):
        """
        @return: the configured identity matching C{identity} (exactly, or
            else ignoring the case of ASCII letters: chargers' UIs change
            case), or None.
        """
        if identity in self._chargers:
            return identity
        folded = fold_identity(identity)
        for charger_id in self._chargers:
            if fold_identity(charger_id) == folded:
                return charger_id
        return None

    def connected(self, charger_id, session, address, secure=False):
        """
        A charger's connection is open; a previous one is replaced.

        @param session: the adapter's session (anything with C{close()}).
        @param secure: whether the connection is TLS.
        """
        charger = self._chargers[charger_id]
        old = charger.session
        # Its lines within its budget: a charger may reconnect in a loop.
        seconds = self._clock.seconds()
        if old is not None:
            charger.reconnects += 1
            charger.chatter(self.log, "info", seconds,
                            "{id}: new connection from {address} replaces the old one",
                            milestone=True, id=charger_id, address=address)
            charger.session = None
            old.close()
        else:
            charger.chatter(self.log, "info", seconds, "{id}: connected from {address}",
                            milestone=True, id=charger_id, address=address)
        now = self._now()
        self._unwatch(charger_id)
        charger.session, charger.address, charger.secure = session, address, secure
        charger.connected_since = charger.last_seen = now
        if old is None:
            self._contact(charger_id, "since", now)
        if not charger.ever_connected:
            charger.ever_connected = True
            stored(self._store.put_setting(charger_id, SEEN, True))
        self._emit(ChargerConnected(charger_id))
        if charger.offline:
            charger.offline = False
            stored(self._store.put_setting(charger_id, OFFLINE, False))
            self._emit(StatusChanged(charger_id, None))

    def disconnected(self, charger_id, session):
        """
        A charger's connection closed (ignored for a replaced connection).
        """
        charger = self._chargers.get(charger_id)
        if charger is None or charger.session is not session:
            return
        charger.session = None
        charger.disconnected_since = self._now()
        if self.watching:
            # (not while the service stops: the store may be closed; the
            # next start counts from the time the service kept last)
            self._contact(charger_id, "left", charger.disconnected_since)
        charger.chatter(self.log, "info", self._clock.seconds(), "{id}: disconnected",
                        milestone=True, id=charger_id)
        self._emit(ChargerDisconnected(charger_id))
        self._watch(charger)

    def frame(self, charger_id, direction, text, seconds=None):
        """
        Keep a frame of a charger's connection for the status page.

        @param direction: C{"in"} (from the charger) or C{"out"}.
        @param seconds: its time, when the adapter has it already (an
            answer written while the frame it answers is handled); by
            default the time now.
        @return: the time it is kept with (None for an unknown charger).
        """
        charger = self._chargers.get(charger_id)
        if charger is None:
            return None
        # The status page must not show an AuthorizationKey (A01.FR.09).
        text = masked_frame(text)
        if seconds is None:
            seconds = self._seconds()
        charger.frames.add(seconds, direction, text)
        if direction == "in":
            charger._last_seen_s = seconds
        return seconds

    # -- what a connector counts as; offline --------------------------------

    def point_status(self, charger_id, connector):
        """
        What a connector counts as, for every adapter alike: Unavailable
        while its charger is offline; connector 0's status while that is
        Unavailable or Faulted (it holds for the whole charger); else the
        connector's own.

        @return: C{(status, error_code)}, C{(None, None)} before any report.
        """
        charger = self._chargers.get(charger_id)
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

    def _watch(self, charger, away=0.0):
        # Not back within offline_after (of which it has been away for
        # C{away} s already): offline.
        self._unwatch(charger.id)
        if self.watching:
            self._offline_timers[charger.id] = self._clock.callLater(
                max(0.0, self._config.knx.offline_after - away), self._gone, charger.id)

    def _unwatch(self, charger_id):
        timer = self._offline_timers.pop(charger_id, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _gone(self, charger_id):
        del self._offline_timers[charger_id]
        charger = self._chargers.get(charger_id)
        if charger is None or charger.connected or charger.offline:
            return
        self._offline(charger, f"not back for {self._config.knx.offline_after:g} s")
        self._emit(StatusChanged(charger_id, None))

    def _offline(self, charger, why):
        charger.offline = True
        stored(self._store.put_setting(charger.id, OFFLINE, True))
        self.log.info("{id}: {why}, its connectors count as Unavailable", id=charger.id,
                      why=why)

    # -- refused attempts ---------------------------------------------------

    def refused(self, identity, address, reason, detail=None):
        """
        A connection attempt of a configured charger was refused (an
        identity not configured is an unknown one's, and ignored here).

        @param reason: one of L{xxterocpp.domain.refusals.REASONS}.
        @param detail: what more the adapter knows (OpenSSL's reason, the
            name in a certificate), never a secret.
        @raise ValueError: for another reason.
        """
        charger_id = self.lookup(identity)
        if charger_id is not None:
            self._refusals.refused(charger_id, address, reason, self._now(), detail)

    def refused_unnamed(self, address, reason, detail=None):
        """
        A connection was refused before its identity was known (a failed TLS
        handshake, a URL without an identity): kept by address, and as a
        refused attempt of every configured charger whose last known
        address it is (several behind one NAT address).

        @param reason: one of L{xxterocpp.domain.refusals.REASONS}.
        @raise ValueError: for another reason.
        """
        now = self._now()
        self._refusals.refused_unnamed(address, reason, now, detail)
        for charger in self._chargers.values():
            if self._last_address(charger) == address:
                self._refusals.refused(charger.id, address, reason, now, detail)

    def _last_address(self, charger):
        """
        @return: the address a charger last connected or tried to connect
            from (as far as its identity was known), or None.
        """
        refused = self._refusals.last_address(charger.id)
        if refused is None or (charger.connected_since is not None
                               and charger.connected_since > refused[1]):
            return charger.address
        return refused[0]
