# -*- test-case-name: tests.test_setup -*-
"""
What follows a charger's BootNotification: read its configuration, set the
measurands and the sample interval, put the current limits below the
maximum in force again and bring its local authorization list up to date (chargers forget limits
and settings when they reboot). A charger that connects for the first time
and never boots is asked to (TriggerMessage); the workarounds
C{no-boot-trigger} and C{boot-trigger} change who is asked
(docs/quirks.md#no-boot-trigger).
"""

from twisted.internet import defer
from twisted.logger import Logger

from xxterocpp.control.configuration import csl, integer
from xxterocpp.control.sender import SILENT
from xxterocpp.domain.model import shared
from xxterocpp.ocpp import messages as m

#: Seconds a connected charger that never booted gets before it is asked
#: for its BootNotification (Wallbox Pulsar Pro firmware 6.x never sends it
#: on its own; evcc waits 5 s too).
BOOT_WAIT = 5.0

#: Seconds after a TriggerMessage(BootNotification) within which a dropped
#: connection is taken for the trigger's fault (StarCharge drops it about
#: 30 s later, docs/quirks.md#no-boot-trigger).
TRIGGER_DROP_WINDOW = 60.0

#: The measurands the central system needs: energy and current for the KNX
#: objects, power and offered current for the status page.
MEASURANDS = (
    "Energy.Active.Import.Register",
    "Current.Import",
    "Power.Active.Import",
    "Current.Offered",
)
_ALL_MEASURANDS = ",".join(MEASURANDS)

#: MeterValueSampleInterval in s: the KNX current object changes at most
#: this often while charging.
SAMPLE_INTERVAL = 60

#: The configuration keys the set-up writes.
_WRITTEN = ("MeterValuesSampledData", "MeterValueSampleInterval")

# Chargers whose post-boot set-up runs at the same time; the others wait
# their turn. A controller reboot brings every charger back at once: without
# a bound, a thousand set-ups in flight pile up calls and pending Deferreds
# (and leave the allocator fragmented long after, bench/run.py scenario 2).
SETUP_CONCURRENCY = 32


class SetUp:
    """
    The post-boot set-up of every charger, at most L{SETUP_CONCURRENCY} at
    a time, and the watchdog for chargers that never boot.

    @ivar boot_wait: seconds before a never-booted charger gets
        TriggerMessage(BootNotification).
    @ivar queue: charger ids waiting their turn, in boot order (a dict used
        as an ordered set).
    @ivar running: charger ids being set up.
    """

    log = Logger()

    def __init__(self, central, clock, sender, limits, local_list, save=lambda *a: None):
        """
        @param central: the L{xxterocpp.domain.central.CentralSystem}.
        @param clock: an C{IReactorTime}.
        @param sender: the L{xxterocpp.control.sender.Sender}.
        @param limits: the L{xxterocpp.control.limits.Limits} to put in force.
        @param local_list: the L{xxterocpp.control.locallist.LocalList}.
        @param save: C{save(scope, key, value)} persists a setting.
        """
        self.central = central
        self.clock = clock
        self.sender = sender
        self.limits = limits
        self.local_list = local_list
        self._save = save
        # Charger id -> what its last set-up found (setting "learned").
        self._learned = {}
        self.boot_wait = BOOT_WAIT
        self.queue = {}
        self.running = set()
        # Booted again while running: one more run afterwards.
        self._again = set()
        self._starting = False
        self._boot_timers = {}
        # Charger id -> when it was sent TriggerMessage(BootNotification).
        self._triggered = {}

    # -- the boot watchdog -----------------------------------------------

    def connected(self, event):
        """
        A charger connected: one that never booted gets L{boot_wait} s, and
        so does one with the C{boot-trigger} workaround; never one with
        C{no-boot-trigger} (which wins over C{boot-trigger}).
        """
        charger = self.central.chargers.get(event.charger_id)
        self._cancel_boot_timer(event.charger_id)
        if charger is None or charger.quirks.has("no-boot-trigger"):
            # docs/quirks.md#no-boot-trigger: it drops the connection after
            # the trigger, whatever else is in force.
            return
        if not charger.boot or charger.quirks.has("boot-trigger"):
            # docs/quirks.md#boot-trigger: it never boots by itself.
            self._boot_timers[charger.id] = self.clock.callLater(
                self.boot_wait, self._trigger_boot, charger)

    def disconnected(self, event):
        """
        A charger went away: no more waiting for its boot. Right after a
        TriggerMessage(BootNotification), the log suggests
        C{no-boot-trigger}.
        """
        self._cancel_boot_timer(event.charger_id)
        triggered = self._triggered.pop(event.charger_id, None)
        if triggered is not None and self.clock.seconds() - triggered <= TRIGGER_DROP_WINDOW:
            self.central.suggest_quirk(
                event.charger_id, "no-boot-trigger",
                f"it dropped the connection {self.clock.seconds() - triggered:.0f} s after "
                f"TriggerMessage(BootNotification)")

    def _cancel_boot_timer(self, charger_id):
        timer = self._boot_timers.pop(charger_id, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _trigger_boot(self, charger):
        # By default only for chargers that never booted: some crash on
        # TriggerMessage(BootNotification), and a registration survives
        # reconnects (docs/quirks.md#q7).
        del self._boot_timers[charger.id]
        self.log.info("{id}: no BootNotification within {wait} s, asking for one",
                      id=charger.id, wait=self.boot_wait)
        self._triggered[charger.id] = self.clock.seconds()
        self.sender.call(charger, m.TriggerMessageRequest(requested_message="BootNotification"))

    def stop(self):
        """
        Cancel the boot timers (the service stops).
        """
        for charger_id in list(self._boot_timers):
            self._cancel_boot_timer(charger_id)

    # -- the set-up queue ------------------------------------------------

    def booted(self, event):
        """
        A charger booted: queue its set-up.
        """
        self._cancel_boot_timer(event.charger_id)
        charger_id = event.charger_id
        # A charger waiting costs one dict entry, not a chain of Deferreds;
        # a boot during its set-up (reboot loops) is served by one more run
        # afterwards, however many boots came.
        if charger_id in self.running:
            self._again.add(charger_id)
        else:
            self.queue[charger_id] = None
            self._next()

    def _next(self):
        # Not re-entrant: a set-up that ends at once (its charger gone, the
        # service stopping) calls back in here; the loop below then starts
        # the next one instead of a recursion as deep as the queue.
        if self._starting:
            return
        self._starting = True
        try:
            while self.queue and len(self.running) < SETUP_CONCURRENCY:
                charger_id = next(iter(self.queue))
                del self.queue[charger_id]
                self.running.add(charger_id)
                d = self._configure(charger_id)
                d.addErrback(lambda f, charger_id=charger_id: self.log.failure(
                    "{id}: the set-up after the boot failed", f, id=charger_id))
                d.addBoth(self._done, charger_id)
        finally:
            self._starting = False

    def _done(self, _, charger_id):
        self.running.discard(charger_id)
        if charger_id in self._again:
            self._again.discard(charger_id)
            self.queue[charger_id] = None
        self._next()

    # -- what the set-ups found -----------------------------------------

    def restore(self, charger_id, key, value):
        """
        Take over a persisted setting of a charger, if it is one of ours.
        """
        if key == "learned":
            self._learned[charger_id] = value

    def learned(self, charger_id):
        """
        @return: what the last set-up of the charger found (also before a
            restart): C{{"measurands": [...] or None, "read_only": [...]}},
            the measurands it samples and the keys the set-up would write
            that it reports read-only or refused to change; None before its
            first set-up.
        """
        return self._learned.get(charger_id)

    def _learn(self, charger, refused):
        entry = charger.configuration.get("MeterValuesSampledData")
        learned = {
            # Interned: a fleet's chargers mostly sample the same ones.
            "measurands": None if entry is None else [shared(item) for item in csl(entry)],
            "read_only": sorted(key for key in _WRITTEN
                                if key in refused or getattr(
                                    charger.configuration.get(key), "readonly", False)),
        }
        if self._learned.get(charger.id) != learned:
            self._learned[charger.id] = learned
            self._save(charger.id, "learned", learned)

    # -- the set-up ------------------------------------------------------

    @defer.inlineCallbacks
    def _configure(self, charger_id):
        charger = self.central.chargers.get(charger_id)
        if charger is None:
            return None
        # Its own calls are not refused "Busy" by a queue full of commands:
        # the set-up would end having configured nothing, and run again
        # only at the next boot.
        result = yield self.sender.call(charger, m.GetConfigurationRequest(), bounded=False)
        if result.response is not None:
            charger.configuration = {kv.key: kv for kv in result.response.configuration_key or ()
                                     if kv is not None}
        yield self._configure_measurands(charger)
        interval = yield self._configure_sample_interval(charger)
        self._learn(charger, () if interval is None or interval.status != "Rejected"
                    else ("MeterValueSampleInterval",))
        for point in self.central.config.charging_points(charger_id):
            yield self.limits.after_boot(point)
        return (yield self.local_list.sync(charger_id))

    @defer.inlineCallbacks
    def _change(self, charger, key, value):
        result = yield self.sender.call(charger, m.ChangeConfigurationRequest(key=key, value=value),
                                        bounded=False)
        if result.accepted:
            charger.configuration[key] = m.KeyValue(key=key, readonly=False, value=value)
        return result

    @defer.inlineCallbacks
    def _configure_measurands(self, charger):
        key = "MeterValuesSampledData"
        entry = charger.configuration.get(key)
        if entry is not None and entry.readonly or set(MEASURANDS) <= set(csl(entry)):
            return None
        room = integer(charger.configuration.get(key + "MaxLength"), len(MEASURANDS))
        if room >= len(MEASURANDS):
            result = yield self._change(charger, key, _ALL_MEASURANDS)
            if result.accepted or result.status in SILENT:
                return result
        # Some chargers reject the whole list for one measurand they do not
        # support (OCPP 1.6 §3.16.4) but accept the others one by one.
        accepted = []
        for measurand in MEASURANDS:
            if len(accepted) >= room:
                break
            result = yield self._change(charger, key, ",".join(accepted + [measurand]))
            if result.accepted:
                accepted.append(measurand)
            elif result.status in SILENT:
                break
        self.log.info("{id}: measurands {measurands}", id=charger.id,
                      measurands=",".join(accepted) or "unchanged")
        return None

    def _configure_sample_interval(self, charger):
        key = "MeterValueSampleInterval"
        entry = charger.configuration.get(key)
        if entry is not None and (entry.readonly or integer(entry, None) == SAMPLE_INTERVAL):
            return defer.succeed(None)
        return self._change(charger, key, str(SAMPLE_INTERVAL))
