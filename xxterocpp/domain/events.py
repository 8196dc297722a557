# -*- test-case-name: tests.test_domain,tests.test_bridge -*-
"""
The domain's events, seen by observers (the KNX bridge, the controller, the
Smart Energy Manager, the web page). Every event names the charger and the
connector it concerns: C{connector} is an int, or None for the whole charger
(or, with C{charger_id} None too, for the whole central system).
"""

import attr


@attr.s(frozen=True)
class ChargerConnected:
    """
    A charger's WebSocket opened.
    """

    charger_id = attr.ib()
    connector = attr.ib(default=None)


@attr.s(frozen=True)
class ChargerDisconnected:
    """
    A charger's WebSocket closed.
    """

    charger_id = attr.ib()
    connector = attr.ib(default=None)


@attr.s(frozen=True)
class ChargerBooted:
    """
    A charger's BootNotification was answered Accepted.
    """

    charger_id = attr.ib()
    connector = attr.ib(default=None)


@attr.s(frozen=True)
class StatusChanged:
    """
    A connector's status or error code changed; with C{connector} None, what
    every connector of the charger counts as may have changed (connector 0
    reported, the charger went offline or came back:
    L{xxterocpp.domain.central.CentralSystem.point_status}).
    """

    charger_id = attr.ib()
    connector = attr.ib()


@attr.s(frozen=True)
class MeterChanged:
    """
    A connector's meter readings (energy, currents, power) changed.
    """

    charger_id = attr.ib()
    connector = attr.ib()


@attr.s(frozen=True)
class TransactionStarted:
    """
    A transaction started at a connector (C{transaction}: the domain's
    L{Transaction}).
    """

    charger_id = attr.ib()
    connector = attr.ib()
    transaction = attr.ib()


@attr.s(frozen=True)
class TransactionStopped:
    """
    A transaction ended.
    """

    charger_id = attr.ib()
    connector = attr.ib()
    transaction = attr.ib()


@attr.s(frozen=True)
class LimitChanged:
    """
    The current limit in force at a connector changed (C{limit} in A, as the
    charger accepted it): what the KNX object max_current publishes.
    """

    charger_id = attr.ib()
    connector = attr.ib()
    limit = attr.ib()


@attr.s(frozen=True)
class ModeChanged:
    """
    The Normal/Fast mode in force at a connector may have changed
    (L{xxterocpp.control.commands.Controller.mode}).
    """

    charger_id = attr.ib()
    connector = attr.ib()


@attr.s(frozen=True)
class CommandRefused:
    """
    A command (C{command}: the controller's method name, C{"start"},
    C{"set_limit"}, ...) ended not accepted: refused by the central system
    or the charger, failed, timed out or the charger was offline. Whatever
    adapter sent it, the values it concerns are to be told again as they
    are (C{connector} None: the whole charger).
    """

    charger_id = attr.ib()
    connector = attr.ib()
    command = attr.ib()


@attr.s(frozen=True)
class CommandPending:
    """
    A charger accepted a command (C{command}: C{"start"}, C{"stop"},
    C{"availability"}) whose effect has not shown yet
    (L{xxterocpp.domain.accepted}): the values it concerns are to be told
    as they are now, pending included (C{connector} None: the whole
    charger).
    """

    charger_id = attr.ib()
    connector = attr.ib()
    command = attr.ib()


@attr.s(frozen=True)
class CommandIneffective:
    """
    A charger accepted a command and did not carry it out
    (L{xxterocpp.domain.accepted}): no effect within the wait, or its
    readings contradict it (C{command} C{"limit"}); C{detail} says how.
    As after L{CommandRefused}, the values it concerns are to be told
    again as they are (C{connector} None: the whole charger).
    """

    charger_id = attr.ib()
    connector = attr.ib()
    command = attr.ib()
    detail = attr.ib(default="")


@attr.s(frozen=True)
class StateLoaded:
    """
    The persisted state was restored (L{CentralSystem.settings} is filled).
    """

    charger_id = attr.ib(default=None)
    connector = attr.ib(default=None)


@attr.s(frozen=True)
class TagsChanged:
    """
    The tag registry changed (configuration reload or the tag API).
    """

    charger_id = attr.ib(default=None)
    connector = attr.ib(default=None)


@attr.s(frozen=True)
class CertificateIssued:
    """
    A charger's certificate signing request was signed: C{signed} (a
    L{xxterocpp.signing.SignedChain}) is to be sent to it.
    """

    charger_id = attr.ib()
    signed = attr.ib()
    connector = attr.ib(default=None)


@attr.s(frozen=True)
class ClockStepped:
    """
    The system clock was stepped (NTP set it, someone changed it): what
    was planned for a time of day is planned again.

    @ivar delta: the size of the step (s), positive forward.
    """

    delta = attr.ib()
    charger_id = attr.ib(default=None)
    connector = attr.ib(default=None)
