# -*- test-case-name: tests.test_bridge,tests.test_config -*-
"""
The group objects of a charging point, declared once.

Each row of L{OBJECTS} gives the C{[charger.knx]} key, the datapoint type
(or the choice of them), which way the values travel, what they mean and the
events after which the value goes on the bus even when it did not change.
Everything else follows from this table:

    - L{xxterocpp.config} builds the C{[charger.knx]} table from it (its
      keys, the C{time_dpt} / C{current_dpt} choices and which addresses
      must not be shared because a bus write to them acts);
    - L{xxterocpp.knx.behaviour} attaches each object's behaviour by key
      (how the value follows from the domain, which command a write
      gives), which L{xxterocpp.knx.bridge} applies.

A new object is one row here plus its behaviour in
L{xxterocpp.knx.behaviour}.

This module is a plain declaration: it imports nothing of Twisted, so the
configuration can read it without pulling in the service.
"""

import attr

from xxterocpp.domain.events import TransactionStarted, TransactionStopped

__all__ = [
    "BOTH", "CURRENT_DPT", "DptChoice", "ERROR_CODES", "GroupObject", "KEYS", "OBJECTS",
    "RECEIVE", "RECEIVES", "SEND", "STATUSES", "TIME_DPT",
]

#: The directions of a group object: the bridge writes it (and answers
#: GroupValueRead), it acts on a GroupValueWrite, or both.
SEND, RECEIVE, BOTH = "send", "receive", "both"

#: The bus numbering of the OCPP connector status: the order OCPP 1.6 lists
#: them in its text, not that of its JSON schema (which has SuspendedEVSE
#: before SuspendedEV).
STATUSES = (
    "Available", "Preparing", "Charging", "SuspendedEV", "SuspendedEVSE",
    "Finishing", "Reserved", "Unavailable", "Faulted",
)

#: The bus numbering of the OCPP error code.
ERROR_CODES = (
    "NoError", "ConnectorLockFailure", "EVCommunicationError", "GroundFailure",
    "HighTemperature", "InternalError", "LocalListConflict", "OtherError",
    "OverCurrentFailure", "OverVoltage", "PowerMeterFailure", "PowerSwitchFailure",
    "ReaderFailure", "ResetFailure", "UnderVoltage", "WeakSignal",
)


@attr.s(frozen=True, slots=True)
class DptChoice:
    """
    A datapoint type the installer chooses with a key of C{[knx]} (the
    default for every charger) and of C{[[charger]]} (for one charger).

    @ivar setting: that key, e.g. C{"time_dpt"}.
    @ivar allowed: the DPT ids it may name, the default first.
    """

    setting = attr.ib()
    allowed = attr.ib()

    @property
    def default(self):
        """
        The DPT id used when neither table sets L{setting}.
        """
        return self.allowed[0]


#: The DPT of the time objects: time of day with weekday, or date and time.
TIME_DPT = DptChoice("time_dpt", ("10.001", "19.001"))
#: The DPT of the current objects: 4-byte float in A, or 2-byte float in mA.
CURRENT_DPT = DptChoice("current_dpt", ("14.019", "9.021"))


@attr.s(frozen=True, slots=True)
class GroupObject:
    """
    One group object of a charging point.

    @ivar key: its key in C{[charger.knx]}.
    @ivar dpt: its DPT id, or the L{DptChoice} that picks it.
    @ivar direction: L{SEND}, L{RECEIVE} or L{BOTH}.
    @ivar meaning: what its values mean, for people.
    @ivar sent_on: the domain event types after which the value is sent even
        when equal to the last one sent (each session's energy); the events
        of refused sessions do not count.
    """

    key = attr.ib()
    dpt = attr.ib()
    direction = attr.ib(validator=attr.validators.in_((SEND, RECEIVE, BOTH)))
    meaning = attr.ib()
    sent_on = attr.ib(default=())

    @property
    def sends(self):
        """
        Whether the bridge writes this object and answers reads of it.
        """
        return self.direction in (SEND, BOTH)

    @property
    def receives(self):
        """
        Whether a GroupValueWrite to this object is a command.
        """
        return self.direction in (RECEIVE, BOTH)

    @property
    def dpts(self):
        """
        The DPT ids this object may use, the default first.
        """
        return self.dpt.allowed if isinstance(self.dpt, DptChoice) else (self.dpt,)

    def dpt_for(self, charger):
        """
        @param charger: a charging point's configuration (anything with the
            L{DptChoice.setting} attributes, a L{ChargerConfig}).
        @return: the DPT id this object uses on that charging point.
        """
        if isinstance(self.dpt, DptChoice):
            return getattr(charger, self.dpt.setting)
        return self.dpt


_STARTED, _STOPPED = (TransactionStarted,), (TransactionStopped,)

#: The group objects, in the order the configuration and the documentation list them.
OBJECTS = (
    GroupObject("status", "5.010", SEND, "OCPP connector status, numbered as in STATUSES"),
    GroupObject("error_code", "5.010", SEND, "OCPP error code, numbered as in ERROR_CODES"),
    GroupObject("charging", "1.010", BOTH, "1 while a session runs; write 1 to start, 0 to stop"),
    GroupObject("reserve", "1.010", RECEIVE, "write 1 to reserve the connector, 0 to free it"),
    GroupObject("availability", "1.003", BOTH, "1 operative, 0 unavailable; write to change it"),
    GroupObject("unlock", "1.003", RECEIVE, "write 1 to unlock the connector"),
    GroupObject("energy", "13.010", SEND, "Wh of the last session, at its end", _STOPPED),
    GroupObject("start_time", TIME_DPT, SEND, "when the current or last session started", _STARTED),
    GroupObject("end_time", TIME_DPT, SEND, "when the last session ended", _STOPPED),
    GroupObject("current", CURRENT_DPT, SEND, "charging current in A, on changes over 0.2 A"),
    GroupObject("max_current", CURRENT_DPT, BOTH, "current limit in A; write to change it"),
    GroupObject("reset", "1.015", RECEIVE, "write 1 for a soft reset of the charger"),
    GroupObject("online", "1.002", SEND, "1 while the charger's OCPP connection is up"),
    GroupObject("plugged", "1.002", SEND, "1 while a vehicle is connected (Preparing, "
                "Charging, SuspendedEV, SuspendedEVSE, Finishing)"),
    GroupObject("power", "14.056", SEND, "active power in W, on changes over 100 W; 0 when "
                "not charging"),
    GroupObject("meter", "13.010", SEND, "the energy register in Wh, on changes of 100 Wh"),
    GroupObject("session_energy", "13.010", SEND, "Wh of the running session: 0 at its "
                "start, then on changes of 100 Wh", _STARTED),
    GroupObject("fast", "1.001", BOTH, "1 fast (max_current), 0 normal (normal_current) in "
                "force; write to choose"),
)

#: The keys of L{OBJECTS}, in order.
KEYS = tuple(obj.key for obj in OBJECTS)
#: The keys of the objects a bus write acts on.
RECEIVES = tuple(obj.key for obj in OBJECTS if obj.receives)
