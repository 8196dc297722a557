# -*- test-case-name: tests.test_control,tests.test_setup -*-
"""
The parts of the control model behind the command front
(L{xxterocpp.control.commands.Controller}), built together over one
L{Sender}: which of the domain's events each part follows, in which order;
the control state they persist and take over again after a restart; what
they learned by trial; stopping them all.
"""

import attr

from xxterocpp.control.certificates import Certificates
from xxterocpp.control.finishing import FinishingRecovery
from xxterocpp.control.keys import KeyRotation
from xxterocpp.control.limits import Limits
from xxterocpp.control.locallist import LocalList
from xxterocpp.control.meterwatch import MeterWatch
from xxterocpp.control.profiles import ProfileRaise
from xxterocpp.control.remote import RemoteSessions, Waits
from xxterocpp.control.reservations import Reservations
from xxterocpp.control.sender import Sender
from xxterocpp.control.setup import SetUp
from xxterocpp.domain.events import (
    CertificateIssued,
    ChargerBooted,
    ChargerConnected,
    ChargerDisconnected,
    ClockStepped,
    MeterChanged,
    StateLoaded,
    StatusChanged,
    TagsChanged,
    TransactionStarted,
    TransactionStopped,
)


class Parts:
    """
    The control model's parts, one job each.

    After each BootNotification the charger is set up (L{SetUp}) and gets
    the reservations held until freed again (L{Reservations}); the tag
    registry is followed (L{LocalList}), so are new transactions (L{Limits},
    L{Reservations}), connectors that lost their reservation, steps of the
    system clock (the renewals of reservations are due again by the new
    time), and the certificates the domain signed (L{Certificates}).

    @ivar sender: the L{Sender} every part calls the chargers through.
    @ivar limits: the L{Limits}.
    @ivar local_list: the L{LocalList}.
    @ivar reservations: the L{Reservations}.
    @ivar keys: the L{KeyRotation}.
    @ivar certificates: the L{Certificates}.
    @ivar profiles: the L{ProfileRaise}.
    @ivar setup: the L{SetUp}.
    @ivar meter_watch: the L{MeterWatch}.
    @ivar finishing: the L{FinishingRecovery}.
    @ivar remote: the L{RemoteSessions}.
    @ivar waits: the L{Waits} for what a charger accepted.
    """

    def __init__(self, central, clock):
        """
        @param central: the L{xxterocpp.domain.central.CentralSystem}.
        @param clock: an C{IReactorTime}.
        """
        self.central = central
        self.sender = Sender()
        self.limits = Limits(central, self.sender, self._save)
        self.local_list = LocalList(central, self.sender, self._save)
        self.reservations = Reservations(central, self.sender, self._save, clock)
        self.keys = KeyRotation(central, self.sender)
        self.certificates = Certificates(central, clock, self.sender)
        self.profiles = ProfileRaise(central, self.sender)
        self.setup = SetUp(central, clock, self.sender, self.limits, self.local_list,
                           self._save)
        self.meter_watch = MeterWatch(central, clock, self.sender)
        self.finishing = FinishingRecovery(central, clock, self.sender)
        self.waits = Waits()
        self.remote = RemoteSessions(central, self.sender, self.finishing, self.waits)
        # The handlers of each event, in the order they run.
        self._handlers = {
            StateLoaded: (self._loaded,),
            ChargerConnected: (self.setup.connected,),
            ChargerDisconnected: (self.setup.disconnected,),
            ChargerBooted: (self.setup.booted, self.reservations.booted),
            StatusChanged: (self.reservations.status_changed, self.finishing.status_changed),
            TagsChanged: (self.local_list.tags_changed,),
            MeterChanged: (self.meter_watch.meter_changed,),
            TransactionStarted: (self.limits.transaction_started,
                                 self.reservations.transaction_started,
                                 self.meter_watch.transaction_started),
            TransactionStopped: (self.limits.transaction_stopped,
                                 self.meter_watch.transaction_stopped),
            CertificateIssued: (self.certificates.issued,),
            ClockStepped: (self.reservations.clock_stepped,),
        }
        self._restore()

    def observe(self, event):
        """
        Run the handlers of a domain event, in their order.
        """
        for handler in self._handlers.get(type(event), ()):
            handler(event)

    def _save(self, scope, key, value):
        if not self.sender.running:
            # Answers arriving while the service stops: the store is closing.
            return
        d = self.central.store.put_setting(scope, key, value)
        # The store logs and retries failed writes itself.
        d.addErrback(lambda failure: None)

    def _restore(self):
        """
        Take over the persisted control state (reservation ids, limits, what
        worked per charger, local list versions).
        """
        parts = (self.limits, self.local_list, self.reservations, self.setup)
        for (scope, key), value in self.central.settings.items():
            if (scope, key) == ("central", "reservation_id"):
                self.reservations.restore_last_id(value)
            elif scope in self.central.chargers:
                for part in parts:
                    part.restore(scope, key, value)

    def _loaded(self, event):
        self._restore()
        # The service runs: from now on certificates are renewed on time.
        self.certificates.start()

    def learned(self, charger_id):
        """
        @return: what was learned by trial about a charger, kept across
            restarts: C{{"profile": the profile kind that took its last
            limit (purpose, kind, stack, unit) or None, "measurands": ...,
            "read_only": ...}} (L{SetUp.learned}; both None before its
            first set-up).
        """
        strategy = self.limits.cascade.strategy(charger_id)
        found = self.setup.learned(charger_id) or {"measurands": None, "read_only": None}
        return {"profile": None if strategy is None else attr.asdict(strategy), **found}

    def stop(self):
        """
        Cancel the timers and send nothing more (the service stops).
        """
        self.sender.stop()
        for part in (self.setup, self.reservations, self.certificates, self.meter_watch,
                     self.finishing):
            part.stop()
