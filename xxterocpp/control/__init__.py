# -*- test-case-name: tests.test_control -*-
"""
The control model: the one domain-level API through which the KNX bridge,
the web page and the Smart Energy Manager steer charging points. Each
command turns into OCPP calls to the charger and returns its answer.

L{Controller} (L{commands}) is the front, its security commands those of
L{security} (C{controller.security}); L{parts} builds its parts, one job
each, and runs their handlers of the domain's events:

  - L{sender}: every CS->CP call, and L{CommandResult};
  - L{remote}: RemoteStartTransaction and RemoteStopTransaction;
  - L{limits}: current limits and schedules as SetChargingProfile;
  - L{chargingprofiles}: the profile cascade, each SetChargingProfile;
  - L{setup}: what follows a BootNotification, the boot watchdog;
  - L{locallist}: the chargers' local authorization lists;
  - L{reservations}: ReserveNow, its renewals, and CancelReservation;
  - L{keys}: AuthorizationKey rotation;
  - L{profiles}: raising a charger's security profile;
  - L{certificates}: the chargers' client certificates and their renewal;
  - L{meterwatch}, L{finishing}: the C{trigger-meter-values} and
    C{finishing-recovery} workarounds;
  - L{electrical}: the minimum current, A to W, profile ids and stack levels
    shared with the Smart Energy Manager.
"""

from xxterocpp.control.chargingprofiles import CASCADE, ProfileStrategy
from xxterocpp.control.commands import Controller, UnknownChargingPoint
from xxterocpp.control.electrical import MIN_CURRENT, PLAN_PROFILE_ID, PROFILE_IDS, VOLTAGE
from xxterocpp.control.sender import ACCEPTED, SILENT, CommandResult
from xxterocpp.control.setup import BOOT_WAIT, MEASURANDS, SAMPLE_INTERVAL, SETUP_CONCURRENCY

__all__ = [
    "ACCEPTED", "BOOT_WAIT", "CASCADE", "MEASURANDS", "MIN_CURRENT", "PLAN_PROFILE_ID",
    "PROFILE_IDS", "SAMPLE_INTERVAL", "SETUP_CONCURRENCY", "SILENT",
    "VOLTAGE", "CommandResult", "Controller", "ProfileStrategy", "UnknownChargingPoint",
]
