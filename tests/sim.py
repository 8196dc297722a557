# -*- test-case-name: tests.test_sim -*-
"""
A simulated OCPP 1.6J charge point for integration tests.

The simulator is an independent peer: it speaks raw OCPP-J JSON over a real
WebSocket (Autobahn's Twisted client on the global reactor, the one trial
spins) and deliberately imports nothing from C{xxterocpp}, so a bug in the
project's own message classes cannot hide itself by being shared with the
test peer.  Because it builds frames by hand it can also send the invalid
frames that negative tests need (L{SimCharger.send_raw}).

Typical use in a C{twisted.trial.unittest.TestCase}::

    charger = yield connect_charger(f"ws://127.0.0.1:{port}/ocpp/", "CP1")
    self.addCleanup(charger.close)
    conf = yield charger.boot()
    unique_id, payload = yield charger.wait_for_call("RemoteStartTransaction")

A test switches on how the charger misbehaves: L{SimCharger.refuse},
L{SimCharger.never_answer}, L{SimCharger.without_smart_charging},
L{SimCharger.refuse_profiles}, and the misbehaviour of real chargers that
named workarounds are for (L{SimCharger.drop_after_trigger} and the methods
after it; docs/quirks.md#named-workarounds). The simulator keeps the charging profiles it
accepted and says which current limit they put in force, as a charger
combines them (L{SimCharger.limit_in_force}), so a test can check what the
charger would really draw.

Every wait is bounded by a reactor timer that is cancelled as soon as the
wait is over, so a failing test fails with a clear exception instead of
hanging, and a passing one leaves no L{DelayedCall} behind for trial's
dirty-reactor check.
"""

import base64
import enum
import json
import re
import uuid
from datetime import datetime, timezone
from typing import Any, Callable, NamedTuple, Optional
from urllib.parse import quote

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
)
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    fail,
    maybeDeferred,
    succeed,
)
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

__all__ = [
    "CALL",
    "CALLERROR",
    "CALLRESULT",
    "NO_REPLY",
    "CS_TO_CP_ACTIONS",
    "CallErrorReceived",
    "CallErrorReply",
    "CallTimeout",
    "ConfigurationKey",
    "ConnectionClosed",
    "RawReply",
    "HandshakeFailed",
    "HandshakeRefused",
    "InstalledProfile",
    "SimCharger",
    "WaitTimeout",
    "basic_authorization",
    "connect_charger",
    "timestamp_seconds",
]

# OCPP-J message type ids (OCPP-J 1.6 §4.1.3).
CALL = 2
CALLRESULT = 3
CALLERROR = 4

#: Direction markers used in L{SimCharger.frames}.
SENT = "sent"
RECEIVED = "received"


class _Sentinel(enum.Enum):
    NO_REPLY = "NO_REPLY"


#: Return this from a handler (or put it in C{handlers}) to simulate a charger
#: that receives a CALL and never answers it.
NO_REPLY = _Sentinel.NO_REPLY


class WaitTimeout(Exception):
    """
    A bounded wait of the simulator ran out of time.
    """


class CallTimeout(WaitTimeout):
    """
    The central system did not answer a CALL within the timeout.

    @ivar action: The action of the unanswered CALL.
    @ivar unique_id: Its message id.
    """

    def __init__(self, action: str, unique_id: str, timeout: float):
        super().__init__(f"no answer to {action} [{unique_id}] within {timeout} s")
        self.action = action
        self.unique_id = unique_id


class CallErrorReceived(Exception):
    """
    The central system answered a CALL with a CALLERROR.

    @ivar code: The errorCode string, for example C{"FormationViolation"}.
    @ivar description: The errorDescription string.
    @ivar details: The errorDetails object.
    """

    def __init__(self, code: str, description: str = "", details: Any = None):
        super().__init__(code, description, details)
        self.code = code
        self.description = description
        self.details = {} if details is None else details


class ConnectionClosed(Exception):
    """
    The WebSocket connection went away while something was still waiting on
    it (an unanswered CALL, L{SimCharger.wait_for_call}, ...), or an
    operation needed an open connection.
    """


class HandshakeFailed(Exception):
    """
    The TCP connection was made but the WebSocket opening handshake failed
    for a reason other than an HTTP refusal (a bogus reply, a subprotocol we
    did not offer, the server hanging up).

    @ivar reason: Autobahn's text explaining why.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class HandshakeRefused(HandshakeFailed):
    """
    The server answered the WebSocket upgrade request with an HTTP status
    other than 101, for example 404 for an unknown charge point identity or
    401 for bad Basic-auth credentials.

    @ivar status: The HTTP status code as an L{int}.
    """

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.reason}"


class CallErrorReply(NamedTuple):
    """
    A handler's way of answering a CS→CP CALL with a CALLERROR.
    """

    code: str
    description: str = ""
    details: dict = {}


class RawReply(NamedTuple):
    """
    A handler's way of answering a CS→CP CALL with a frame as given (a
    charger that sends broken JSON): C{frame(unique_id)} is the text.
    """

    frame: Callable[[str], str]


class ConfigurationKey(NamedTuple):
    """
    One configuration key of the simulated charger, as GetConfiguration
    reports it.  A plain C{(value, readonly)} tuple works too.
    """

    value: Optional[str]
    readonly: bool = False


class InstalledProfile(NamedTuple):
    """
    A charging profile the simulated charger accepted and keeps
    (L{SimCharger.charging_profiles}).

    @ivar connector: The connectorId it was set for (0 = the whole charger).
    @ivar profile: The C{csChargingProfiles} object as received.
    @ivar installed_at: The reactor time it was accepted.
    """

    connector: int
    profile: dict
    installed_at: float


#: The chargingProfilePurpose values of OCPP 1.6 (OCPP 1.6 §7.9).
PROFILE_PURPOSES = frozenset({"ChargePointMaxProfile", "TxDefaultProfile", "TxProfile"})

#: Phase voltage for turning a schedule in W into A per phase (as chargers
#: with a 230 V grid do).
_VOLTAGE = 230.0

_RECURRENCE = {"Daily": 86400, "Weekly": 7 * 86400}


def timestamp_seconds(timestamp: str) -> float:
    """
    An OCPP dateTime as POSIX seconds; a missing zone is UTC.
    """
    when = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def _schedule_limit(installed: InstalledProfile, at: float, transaction_start: Optional[float]):
    """
    The limit (A per phase) of one profile's schedule at C{at}, or L{None}
    when its schedule does not cover that moment (OCPP 1.6 §3.13.4): a Relative
    schedule runs from the start of the transaction (or from when it was
    installed), an Absolute or Recurring one from its C{startSchedule}.
    """
    profile = installed.profile
    schedule = profile.get("chargingSchedule") or {}
    kind = profile.get("chargingProfileKind")
    start = schedule.get("startSchedule")
    if kind == "Relative" or start is None:
        start = transaction_start if kind == "Relative" and transaction_start is not None else installed.installed_at
    else:
        start = timestamp_seconds(start)
    elapsed = at - start
    if elapsed < 0:
        return None
    if kind == "Recurring":
        elapsed %= _RECURRENCE.get(profile.get("recurrencyKind"), 86400)
    duration = schedule.get("duration")
    if duration is not None and elapsed >= duration:
        return None
    periods = sorted(schedule.get("chargingSchedulePeriod") or (), key=lambda p: p["startPeriod"])
    current = [p for p in periods if p["startPeriod"] <= elapsed]
    if not current:
        return None
    period = current[-1]
    limit = float(period["limit"])
    if schedule.get("chargingRateUnit") == "W":
        limit /= _VOLTAGE * period.get("numberPhases", 3)
    return limit


# The HTTP status from Autobahn's client failure text.  Autobahn 22.7 and
# 26.10 both say "WebSocket connection upgrade failed [404]: Not Found"; older
# releases said "(404 - NotFound)", so accept either bracket.
_UPGRADE_FAILED = re.compile(r"upgrade failed\s*[\[(]\s*(\d{3})\b")


def _status_from_reason(reason: str) -> Optional[int]:
    """
    The refused HTTP status named in Autobahn's handshake failure text, or
    L{None} when the failure was not an HTTP refusal.
    """
    match = _UPGRADE_FAILED.search(reason or "")
    return int(match.group(1)) if match else None


def basic_authorization(user: str, password: "str | bytes") -> str:
    """
    The value of an C{Authorization} header for HTTP Basic auth (RFC 7617).

    OCPP security profile 1/2 chargers send their identity as the user-id
    and the AuthorizationKey as the password; the white paper's example key
    is raw bytes, hence C{password} may be L{bytes} and is then used
    unchanged, while a L{str} is encoded as UTF-8 (RFC 7617 §2.1 charset).
    """
    if isinstance(password, str):
        password = password.encode("utf-8")
    token = base64.b64encode(user.encode("utf-8") + b":" + password)
    return "Basic " + token.decode("ascii")


def _timestamp(when: "datetime | str | None", reactor) -> str:
    """
    An OCPP dateTime: UTC with milliseconds and a C{Z}, as the 1.6 spec
    recommends (OCPP 1.6 §3.14).  Strings pass through untouched so tests can send
    malformed timestamps.
    """
    if isinstance(when, str):
        return when
    if when is None:
        when = datetime.fromtimestamp(reactor.seconds(), timezone.utc)
    when = when.astimezone(timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _value(number) -> str:
    """
    SampledValue.value is a string holding a decimal number (OCPP 1.6 §7.43).
    """
    return str(number)


# Default answers of the CS→CP actions whose response is only a status, in
# the wording of the OCPP 1.6 schemas.  The security-extension actions are
# included because a white-paper CS may send them.
_STATUS_REPLIES = {
    "CancelReservation": "Accepted",
    "ChangeAvailability": "Accepted",
    "ClearCache": "Accepted",
    "ClearChargingProfile": "Accepted",
    # A simulated charger implements no vendor extension.
    "DataTransfer": "UnknownVendorId",
    # The simulator does not compute charging schedules.
    "GetCompositeSchedule": "Rejected",
    "RemoteStartTransaction": "Accepted",
    "RemoteStopTransaction": "Accepted",
    "ReserveNow": "Accepted",
    "Reset": "Accepted",
    "SetChargingProfile": "Accepted",
    "TriggerMessage": "Accepted",
    "UnlockConnector": "Unlocked",
    "CertificateSigned": "Accepted",
    "DeleteCertificate": "NotFound",
    "ExtendedTriggerMessage": "Accepted",
    "GetInstalledCertificateIds": "NotFound",
    "InstallCertificate": "Accepted",
    "SignedUpdateFirmware": "Accepted",
}

#: Every CS→CP action of OCPP 1.6 and its security extension; each has a
#: default handler in L{SimCharger.handlers}.
CS_TO_CP_ACTIONS = frozenset(
    set(_STATUS_REPLIES)
    | {
        "ChangeConfiguration",
        "GetConfiguration",
        "GetDiagnostics",
        "GetLocalListVersion",
        "GetLog",
        "SendLocalList",
        "UpdateFirmware",
    }
)


def _default_configuration() -> dict:
    """
    The configuration a fresh simulated charger reports: the keys a
    KNX-bridge central system reads or sets (OCPP 1.6 §9), plausible values.
    """
    return {
        "AuthorizeRemoteTxRequests": ConfigurationKey("true"),
        "ChargeProfileMaxStackLevel": ConfigurationKey("10", readonly=True),
        "ChargingScheduleAllowedChargingRateUnit": ConfigurationKey("Current", readonly=True),
        "ChargingScheduleMaxPeriods": ConfigurationKey("24", readonly=True),
        "ConnectionTimeOut": ConfigurationKey("60"),
        "HeartbeatInterval": ConfigurationKey("300"),
        "LocalAuthListEnabled": ConfigurationKey("false"),
        "MaxChargingProfilesInstalled": ConfigurationKey("10", readonly=True),
        "MeterValueSampleInterval": ConfigurationKey("60"),
        "MeterValuesSampledData": ConfigurationKey("Energy.Active.Import.Register"),
        "NumberOfConnectors": ConfigurationKey("1", readonly=True),
        "SupportedFeatureProfiles": ConfigurationKey(
            "Core,FirmwareManagement,LocalAuthListManagement,Reservation,"
            "SmartCharging,RemoteTrigger",
            readonly=True,
        ),
        "WebSocketPingInterval": ConfigurationKey("0"),
    }


class SimCharger:
    """
    One simulated charge point with one open WebSocket connection to the
    central system.  Create it with L{connect_charger}.

    @ivar identity: The charge point identity, or L{None} if the URL was
        given complete.
    @ivar negotiated_protocol: The subprotocol the server selected, or
        L{None} if its 101 response carried no C{Sec-WebSocket-Protocol}.
    @ivar frames: Every frame in order, as C{(SENT | RECEIVED, text)}.  Text
        frames are L{str}; binary frames and invalid UTF-8 sent through
        L{send_raw} are L{bytes}.
    @ivar calls_received: Every CS→CP CALL as C{(action, payload)}.
    @ivar handlers: Maps a CS→CP action to C{callable(payload)} returning a
        payload L{dict}, a L{CallErrorReply}, a L{RawReply}, L{NO_REPLY}, or
        a L{Deferred} of one of these.  A CALL whose action is missing gets
        a CALLERROR C{NotImplemented}; a handler that raises gets
        C{InternalError}.
    @ivar configuration: Maps a configuration key to its L{ConfigurationKey};
        GetConfiguration reads it and ChangeConfiguration writes it.
    @ivar local_list_version: Reported by GetLocalListVersion, set by
        SendLocalList.
    @ivar charging_profiles: The accepted charging profiles in force, by
        chargingProfileId, as L{InstalledProfile}s; see L{limit_in_force}.
    @ivar refused_profile_purposes: SetChargingProfile of these purposes is
        answered Rejected (L{refuse_profiles}).
    @ivar max_stack_level: SetChargingProfile above this stackLevel is
        answered Rejected (L{refuse_stack_levels_above}); L{None}: any.
    @ivar pings_received: How many WebSocket pings the server sent.
    @ivar transactions: The running transactions this charger started, as
        C{{connector: (transactionId, reactor time of the start)}}.
    @ivar close_info: C{(was_clean, code, reason)} once the connection is
        gone, else L{None}.
    """

    def __init__(self, reactor, identity: Optional[str] = None):
        self.identity = identity
        self.negotiated_protocol: Optional[str] = None
        self.frames: list = []
        self.calls_received: list = []
        self.configuration = _default_configuration()
        self.local_list_version = 0
        self.charging_profiles: dict = {}
        self.refused_profile_purposes: frozenset = frozenset()
        self.max_stack_level: Optional[int] = None
        self.current_steps: tuple = ()
        self.answers_pings = True
        self.pings_received = 0
        self._idle_limit: Optional[float] = None
        self._idle_call = None
        self.transactions: dict = {}
        self.close_info: Optional[tuple] = None
        self._fast_answer_drops: dict = {}
        self.handlers: dict = {
            action: (lambda payload, status=status: {"status": status})
            for action, status in _STATUS_REPLIES.items()
        }
        self.handlers.update(
            {
                "ChangeConfiguration": self._change_configuration,
                "GetConfiguration": self._get_configuration,
                "GetDiagnostics": lambda payload: {"fileName": "diagnostics.log"},
                "GetLocalListVersion": lambda payload: {"listVersion": self.local_list_version},
                "GetLog": lambda payload: {"status": "Accepted", "filename": "log.txt"},
                "SendLocalList": self._send_local_list,
                "SetChargingProfile": self._set_charging_profile,
                "ClearChargingProfile": self._clear_charging_profile,
                "RemoteStartTransaction": self._remote_start_transaction,
                "UpdateFirmware": lambda payload: {},
            }
        )
        self._reactor = reactor
        self._protocol: Optional["_SimProtocol"] = None
        self._opened: Optional[Deferred] = None
        self._lost = False
        self._close_reason: Optional[tuple] = None
        self._handshake_failure: Optional[str] = None
        self._pending: dict = {}
        self._unconsumed_calls: list = []
        self._call_waiters: list = []
        self._frame_waiters: list = []
        self._closed_waiters: list = []

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"<SimCharger {self.identity!r} {state}>"

    # -- connection state -------------------------------------------------

    @property
    def is_open(self) -> bool:
        """
        Whether the WebSocket is open and CALLs can be sent.
        """
        return (
            self._protocol is not None
            and not self._lost
            and self._protocol.state == WebSocketProtocol.STATE_OPEN
        )

    @property
    def closed(self) -> Deferred:
        """
        A new L{Deferred} firing with C{(was_clean, code, reason)} when the
        connection is gone (closed by either side), failing with
        L{WaitTimeout} after 10 seconds.  Use L{wait_closed} for another
        timeout.
        """
        return self.wait_closed()

    def wait_closed(self, timeout: float = 10) -> Deferred:
        """
        Like L{closed}, with a chosen timeout.
        """
        if self.close_info is not None:
            return succeed(self.close_info)
        d = Deferred(lambda d: self._closed_waiters.remove(d))
        self._closed_waiters.append(d)
        return self._bounded(d, timeout, lambda: WaitTimeout(f"connection still open after {timeout} s"))

    def close(self, code: int = 1000, reason: Optional[str] = None, timeout: float = 5) -> Deferred:
        """
        Start the WebSocket closing handshake.

        @return: A L{Deferred} firing with L{close_info} once the TCP
            connection is gone.  If the server does not finish the closing
            handshake within C{timeout} the TCP connection is aborted, so
            the L{Deferred} always fires and nothing is left in the reactor.
        """
        if self._protocol is None or self._lost:
            return succeed(self.close_info)
        d = Deferred()
        self._closed_waiters.append(d)
        if self._protocol.state == WebSocketProtocol.STATE_OPEN:
            self._protocol.sendClose(code=code, reason=reason)
        abort = self._reactor.callLater(timeout, self._protocol.transport.abortConnection)

        def stop_abort(result):
            if abort.active():
                abort.cancel()
            return result

        return d.addBoth(stop_abort)

    # -- behaviours: how this charger answers the central system ----------

    def refuse(self, action: str, status: str = "Rejected") -> None:
        """
        Answer every CALL of C{action} with C{{"status": status}} from now on
        (RemoteStartTransaction, ChangeAvailability, ReserveNow, ...).
        """
        self.handlers[action] = lambda payload: {"status": status}

    def never_answer(self, action: str) -> None:
        """
        Receive CALLs of C{action} but never answer them (the central system
        times out), unless the test answers by hand with L{reply}.
        """
        self.handlers[action] = lambda payload: NO_REPLY

    def answer_after(self, action: str, seconds: float) -> None:
        """
        Answer CALLs of C{action} as before, but C{seconds} later (a slow
        charger: the call is outstanding meanwhile).
        """
        handler = self.handlers.get(action)
        self.handlers[action] = lambda payload: deferLater(self._reactor, seconds, handler, payload)

    def without_smart_charging(self) -> None:
        """
        Be a charger without the SmartCharging feature profile: it is not in
        C{SupportedFeatureProfiles}, and SetChargingProfile,
        ClearChargingProfile and GetCompositeSchedule get a CALLERROR
        C{NotSupported} (OCPP-J 1.6 §4.2.3).
        """
        profiles = self.configuration["SupportedFeatureProfiles"]
        kept = [p for p in (profiles.value or "").split(",") if p and p != "SmartCharging"]
        self.configuration["SupportedFeatureProfiles"] = ConfigurationKey(",".join(kept), profiles.readonly)
        for action in ("SetChargingProfile", "ClearChargingProfile", "GetCompositeSchedule"):
            self.handlers[action] = lambda payload, action=action: CallErrorReply(
                "NotSupported", f"{action}: no SmartCharging")

    def refuse_profiles(self, *purposes: str) -> None:
        """
        Answer SetChargingProfile Rejected for the given
        chargingProfilePurposes (every purpose when none is given); other
        profiles are still accepted.
        """
        self.refused_profile_purposes = frozenset(purposes or PROFILE_PURPOSES)

    # -- behaviours of real chargers that need a named workaround ---------

    def drop_after_trigger(self, message: str = "BootNotification", after: float = 0) -> None:
        """
        Answer TriggerMessage(C{message}) Accepted, then close the
        connection C{after} seconds later, as a charger the trigger crashes
        (StarCharge Aurora).
        """
        trigger = self.handlers["TriggerMessage"]

        def handler(payload):
            if payload.get("requestedMessage") == message:
                self._reactor.callLater(after, self._drop)
            return trigger(payload)

        self.handlers["TriggerMessage"] = handler

    def boot_when_triggered(self, vendor: str = "Sim", model: str = "Sim-1", **extra) -> None:
        """
        Answer TriggerMessage(BootNotification) Accepted and then send the
        BootNotification (C{extra} as in L{boot}), as a charger that never
        boots by itself (Wallbox Pulsar Pro firmware 6.x).
        """
        trigger = self.handlers["TriggerMessage"]

        def handler(payload):
            if payload.get("requestedMessage") == "BootNotification":
                self._reactor.callLater(0, self._quietly, self.boot, vendor, model, **extra)
            return trigger(payload)

        self.handlers["TriggerMessage"] = handler

    def drop_after_fast_answer(self, action: str = "StartTransaction", within: float = 0.5) -> None:
        """
        Close the connection when the answer to a CALL of C{action} comes
        within C{within} seconds (Free2move eProWallbox: 0.8 s after an
        answer that came within about 20 ms); the answer itself is taken.
        """
        self._fast_answer_drops[action] = within

    def refuse_stack_levels_above(self, level: int = 0) -> None:
        """
        Answer SetChargingProfile Rejected for a stackLevel above C{level},
        whatever C{ChargeProfileMaxStackLevel} says (ABB Terra AC, Wallbox
        firmware 5).
        """
        self.max_stack_level = level

    def round_limits_down_to(self, *steps: float) -> None:
        """
        Take only the currents C{steps} (A): a profile's limit in A is
        rounded down to the highest step at or below it, below the lowest
        step to 0, and Accepted all the same (NEcharge Pro); see
        L{limit_in_force}.
        """
        self.current_steps = tuple(sorted(steps))

    def end_transaction_below(self, amps: float = 6.0, meter_stop: int = 0) -> None:
        """
        End the running transaction when an accepted SetChargingProfile puts
        a limit below C{amps} in force: StopTransaction (reason C{Other},
        C{meter_stop}), then StatusNotification Finishing (NEcharge, EN+,
        Huawei at 0 A).
        """
        set_profile = self.handlers["SetChargingProfile"]

        def handler(payload):
            answer = set_profile(payload)
            if answer.get("status") == "Accepted":
                self._reactor.callLater(0, self._end_below, amps, meter_stop)
            return answer

        self.handlers["SetChargingProfile"] = handler

    def _end_below(self, amps: float, meter_stop: int) -> None:
        for connector, (transaction_id, _) in list(self.transactions.items()):
            limit = self.limit_in_force(connector)
            if limit is not None and limit < amps:
                self._quietly(self.stop_transaction, transaction_id, meter_stop, reason="Other")
                self._quietly(self.status, connector, "Finishing")

    def meter_values_when_triggered(self, energy_wh: float) -> None:
        """
        Answer TriggerMessage(MeterValues) Accepted, then send MeterValues
        with the energy register at C{energy_wh} for the connector's running
        transaction (a charger that sends meter values only when asked,
        SyncEV). The default charger never sends them unprompted either.
        """
        trigger = self.handlers["TriggerMessage"]

        def handler(payload):
            if payload.get("requestedMessage") == "MeterValues":
                connector = payload.get("connectorId", 1)
                running = self.transactions.get(connector)
                self._reactor.callLater(0, self._quietly, self.meter_values, connector,
                                        running[0] if running else None, energy_wh=energy_wh)
            return trigger(payload)

        self.handlers["TriggerMessage"] = handler

    def ignore_pings(self) -> None:
        """
        Never answer the server's WebSocket pings (EN+ AC7000); they are
        still counted in L{pings_received}.
        """
        self.answers_pings = False

    def close_when_idle(self, seconds: float) -> None:
        """
        Close the connection once nothing came from the server (no frame,
        no ping) for C{seconds} (Ocular LTE Plus: about 110 s, Wallbox
        firmware 6.7: 30-45 s).
        """
        self._idle_limit = seconds
        self._heard()

    def _heard(self) -> None:
        if self._idle_limit is None:
            return
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        self._idle_call = self._reactor.callLater(self._idle_limit, self._idle)

    def _idle(self) -> None:
        if self.is_open:
            self._protocol.sendClose(code=1000, reason="idle")

    def answer_with_broken_json(self, action: str, status: str = "Accepted") -> None:
        """
        Answer every CALL of C{action} with a CALLRESULT that is no valid
        JSON (a trailing comma after C{"status": status}), as Grizzl-E
        firmware 5 answers some calls.
        """
        self.handlers[action] = lambda payload: RawReply(
            lambda unique_id: f'[3,"{unique_id}",{{"status":"{status}",}}]')

    def stuck_in_finishing_after_remote_stop(self, meter_stop: int = 0) -> None:
        """
        Answer RemoteStopTransaction Accepted, stop the transaction (reason
        C{Remote}, C{meter_stop}) and go Finishing; then refuse
        RemoteStartTransaction on that connector until ChangeAvailability
        Inoperative (Unavailable; Operative: Preparing) frees it, as Autel,
        Ocular and Phoenix CHARX chargers do (UnlockConnector does not).
        """
        stuck = set()
        start, availability = self.handlers["RemoteStartTransaction"], self.handlers["ChangeAvailability"]

        def remote_stop(payload):
            for connector, (transaction_id, _) in list(self.transactions.items()):
                if transaction_id == payload.get("transactionId"):
                    stuck.add(connector)
                    self._reactor.callLater(0, self._quietly, self.stop_transaction, transaction_id,
                                            meter_stop, reason="Remote")
                    self._reactor.callLater(0, self._quietly, self.status, connector, "Finishing")
            return {"status": "Accepted"}

        def remote_start(payload):
            if payload.get("connectorId", 1) in stuck:
                return {"status": "Rejected"}
            return start(payload)

        def change_availability(payload):
            connector = payload.get("connectorId")
            if payload.get("type") == "Inoperative":
                stuck.discard(connector)
            status = "Unavailable" if payload.get("type") == "Inoperative" else "Preparing"
            self._reactor.callLater(0, self._quietly, self.status, connector, status)
            return availability(payload)

        self.handlers.update(RemoteStopTransaction=remote_stop, RemoteStartTransaction=remote_start,
                             ChangeAvailability=change_availability)

    def _quietly(self, call, *args, **kwargs) -> None:
        """
        Send a CALL of a misbehaviour: nobody waits for its answer, and a
        connection gone meanwhile is no error.
        """
        if self.is_open:
            call(*args, **kwargs).addErrback(lambda failure: None)

    def _drop(self) -> None:
        """
        Close the TCP connection without a closing handshake (what is
        written still goes out first).
        """
        if self._protocol is not None and not self._lost:
            self._protocol.transport.loseConnection()

    def limit_in_force(self, connector: int = 1, at: Optional[float] = None) -> Optional[float]:
        """
        The current limit (A per phase) that the accepted charging profiles
        put on C{connector} at reactor time C{at} (default now), combined
        the way an OCPP 1.6 charger does (OCPP 1.6 §3.13.1): within a purpose the
        highest stack level wins; a TxProfile of the running transaction
        overrides the TxDefaultProfiles, the connector's own TxDefaultProfile
        overrides one set for connector 0; a ChargePointMaxProfile caps the
        result (this simulator has one connector in use at a time).

        @return: The limit, or L{None} when no profile limits the connector.
        """
        at = self._reactor.seconds() if at is None else at
        running = self.transactions.get(connector)
        transaction_id, started = running if running is not None else (None, None)

        def top(purpose, where):
            for number in where:
                candidates = [
                    installed
                    for installed in self.charging_profiles.values()
                    if installed.connector == number
                    and installed.profile.get("chargingProfilePurpose") == purpose
                    and (purpose != "TxProfile" or installed.profile.get("transactionId") in (None, transaction_id))
                ]
                candidates.sort(key=lambda installed: installed.profile.get("stackLevel", 0), reverse=True)
                for installed in candidates:
                    limit = _schedule_limit(installed, at, started)
                    if limit is not None:
                        return limit
            return None

        limit = top("TxProfile", (connector,)) if running is not None else None
        if limit is None:
            limit = top("TxDefaultProfile", (connector, 0))
        cap = top("ChargePointMaxProfile", (0,))
        limits = [value for value in (limit, cap) if value is not None]
        return min(limits) if limits else None

    # -- sending ----------------------------------------------------------

    def send_raw(self, data: "str | bytes", binary: bool = False) -> None:
        """
        Send one WebSocket message exactly as given: a L{str} is sent as
        UTF-8, L{bytes} unchanged (so a test can send invalid UTF-8 in a text
        frame).  C{binary=True} sends a binary frame instead of a text frame.
        """
        if not self.is_open:
            raise ConnectionClosed(f"{self!r} cannot send")
        raw = data.encode("utf-8") if isinstance(data, str) else data
        self.frames.append((SENT, _as_text(raw) if not binary else raw))
        self._protocol.sendMessage(raw, isBinary=binary)

    def _send_json(self, message: list) -> None:
        self.send_raw(json.dumps(message, ensure_ascii=False))

    def call(self, action: str, payload: Any, unique_id: Optional[str] = None, timeout: float = 10) -> Deferred:
        """
        Send a CALL and wait for its answer.

        @param payload: Normally a L{dict}; anything JSON-serialisable is
            sent as is, for negative tests.
        @param unique_id: The message id; a fresh uuid4 string (36
            characters, the maximum (OCPP-J 1.6 §4.1.4)) when omitted.
        @return: A L{Deferred} firing with the CALLRESULT payload, failing
            with L{CallErrorReceived}, L{CallTimeout}, or L{ConnectionClosed}.
        """
        if not self.is_open:
            return fail(ConnectionClosed(f"{self!r} cannot send {action}"))
        if unique_id is None:
            unique_id = str(uuid.uuid4())
        d = Deferred(lambda d: self._pending.pop(unique_id, None))
        self._pending[unique_id] = d
        self._send_json([CALL, unique_id, action, payload])
        within = self._fast_answer_drops.get(action)
        if within is not None:
            sent = self._reactor.seconds()

            def answered(answer):
                if self._reactor.seconds() - sent < within:
                    self._reactor.callLater(0, self._drop)
                return answer

            d.addCallback(answered)
        return self._bounded(d, timeout, lambda: CallTimeout(action, unique_id, timeout))

    def reply(self, unique_id: str, answer: "dict | CallErrorReply") -> None:
        """
        Answer a CS→CP CALL by hand, for tests whose handler returned
        L{NO_REPLY} and that answer later (or twice).
        """
        if isinstance(answer, CallErrorReply):
            self._send_json([CALLERROR, unique_id, answer.code, answer.description, answer.details])
        else:
            self._send_json([CALLRESULT, unique_id, answer])

    # -- convenience CALLs (CP→CS, OCPP 1.6 Core) ---------------------------

    def boot(self, vendor: str = "Sim", model: str = "Sim-1", **extra) -> Deferred:
        """
        BootNotification; C{extra} are further fields in camelCase
        (C{firmwareVersion="1.0"}).
        """
        return self.call("BootNotification", {"chargePointVendor": vendor, "chargePointModel": model, **extra})

    def heartbeat(self) -> Deferred:
        """
        Heartbeat.
        """
        return self.call("Heartbeat", {})

    def status(self, connector: int, status: str, error_code: str = "NoError", **extra) -> Deferred:
        """
        StatusNotification; C{extra} are further fields in camelCase
        (C{timestamp=..., info=...}).
        """
        return self.call(
            "StatusNotification",
            {"connectorId": connector, "errorCode": error_code, "status": status, **extra},
        )

    def authorize(self, id_tag: str) -> Deferred:
        """
        Authorize.
        """
        return self.call("Authorize", {"idTag": id_tag})

    def start_transaction(
        self, connector: int, id_tag: str, meter_start: int, timestamp=None, reservation_id=None
    ) -> Deferred:
        """
        StartTransaction; C{timestamp} defaults to now.
        """
        payload = {
            "connectorId": connector,
            "idTag": id_tag,
            "meterStart": meter_start,
            "timestamp": _timestamp(timestamp, self._reactor),
        }
        if reservation_id is not None:
            payload["reservationId"] = reservation_id

        def started(answer):
            # A charger goes on only with a transaction the central system accepted.
            if isinstance(answer, dict) and (answer.get("idTagInfo") or {}).get("status") == "Accepted":
                self.transactions[connector] = (answer.get("transactionId"), self._reactor.seconds())
            return answer

        return self.call("StartTransaction", payload).addCallback(started)

    def stop_transaction(
        self,
        transaction_id: int,
        meter_stop: int,
        timestamp=None,
        reason=None,
        id_tag=None,
        transaction_data=None,
    ) -> Deferred:
        """
        StopTransaction; C{timestamp} defaults to now, C{transaction_data} is
        a list of MeterValue objects sent as given.
        """
        payload = {
            "transactionId": transaction_id,
            "meterStop": meter_stop,
            "timestamp": _timestamp(timestamp, self._reactor),
        }
        optional = {"reason": reason, "idTag": id_tag, "transactionData": transaction_data}
        payload.update({key: value for key, value in optional.items() if value is not None})
        self._transaction_ended(transaction_id)
        return self.call("StopTransaction", payload)

    def _transaction_ended(self, transaction_id) -> None:
        """
        A TxProfile lasts as long as its transaction (OCPP 1.6 §3.13.1).
        """
        for connector, (running, _) in list(self.transactions.items()):
            if running == transaction_id:
                del self.transactions[connector]
                for profile_id, installed in list(self.charging_profiles.items()):
                    profile = installed.profile
                    if installed.connector == connector and profile.get("chargingProfilePurpose") == "TxProfile":
                        del self.charging_profiles[profile_id]

    def meter_values(
        self,
        connector: int,
        transaction_id=None,
        energy_wh=None,
        currents=None,
        power_w=None,
        unit: str = "Wh",
        timestamp=None,
        offered=None,
    ) -> Deferred:
        """
        MeterValues with one MeterValue holding the given samples:
        C{energy_wh} as Energy.Active.Import.Register in C{unit}, C{currents}
        as Current.Import with phases L1, L2, L3 in order, C{power_w} as
        Power.Active.Import, C{offered} as Current.Offered (A).
        """
        samples = []
        if energy_wh is not None:
            samples.append({"value": _value(energy_wh), "measurand": "Energy.Active.Import.Register", "unit": unit})
        for phase, current in zip(("L1", "L2", "L3"), currents or ()):
            samples.append({"value": _value(current), "measurand": "Current.Import", "phase": phase, "unit": "A"})
        if power_w is not None:
            samples.append({"value": _value(power_w), "measurand": "Power.Active.Import", "unit": "W"})
        if offered is not None:
            samples.append({"value": _value(offered), "measurand": "Current.Offered", "unit": "A"})
        if not samples:
            raise ValueError("meter_values needs energy_wh, currents, power_w or offered; use call() for an empty sampledValue")
        payload = {
            "connectorId": connector,
            "meterValue": [{"timestamp": _timestamp(timestamp, self._reactor), "sampledValue": samples}],
        }
        if transaction_id is not None:
            payload["transactionId"] = transaction_id
        return self.call("MeterValues", payload)

    # -- waiting for the central system -----------------------------------

    def wait_for_call(self, action: str, timeout: float = 10) -> Deferred:
        """
        The next CS→CP CALL of C{action} not yet consumed by an earlier
        C{wait_for_call}, including one that has already arrived.

        @return: A L{Deferred} firing with C{(unique_id, payload)}, failing
            with L{WaitTimeout} or L{ConnectionClosed}.  The CALL is answered
            by C{handlers} regardless.
        """
        for index, (unique_id, got_action, payload) in enumerate(self._unconsumed_calls):
            if got_action == action:
                del self._unconsumed_calls[index]
                return succeed((unique_id, payload))
        if self._lost:
            return fail(ConnectionClosed(f"{self!r} is closed, no {action} will come"))
        entry = (action, Deferred(lambda d: self._call_waiters.remove(entry)))
        self._call_waiters.append(entry)
        return self._bounded(entry[1], timeout, lambda: WaitTimeout(f"no {action} CALL within {timeout} s"))

    def wait_for_frame(self, predicate: Callable[[Any], bool], timeout: float = 10) -> Deferred:
        """
        The next received frame for which C{predicate(text)} is true; frames
        that arrived before this call are not considered.

        @return: A L{Deferred} firing with the frame's text, failing with
            L{WaitTimeout} or L{ConnectionClosed}.
        """
        if self._lost:
            return fail(ConnectionClosed(f"{self!r} is closed"))
        entry = (predicate, Deferred(lambda d: self._frame_waiters.remove(entry)))
        self._frame_waiters.append(entry)
        return self._bounded(entry[1], timeout, lambda: WaitTimeout(f"no matching frame within {timeout} s"))

    def _bounded(self, d: Deferred, timeout: float, error: Callable[[], Exception]) -> Deferred:
        """
        Fail C{d} with C{error()} after C{timeout} seconds; the timer goes
        away as soon as C{d} fires, so trial sees a clean reactor.
        """

        def timed_out(result, timeout):
            if isinstance(result, Failure) and result.check(CancelledError):
                return Failure(error())
            return result

        return d.addTimeout(timeout, self._reactor, onTimeoutCancel=timed_out)

    # -- events from the protocol -----------------------------------------

    def _connection_made(self, protocol: "_SimProtocol") -> None:
        self._protocol = protocol

    def _open(self, protocol: "_SimProtocol") -> None:
        self.negotiated_protocol = protocol.websocket_protocol_in_use
        opened, self._opened = self._opened, None
        if opened is not None:
            opened.callback(self)

    def _message(self, payload: bytes, is_binary: bool) -> None:
        text = payload if is_binary else payload.decode("utf-8")
        self.frames.append((RECEIVED, text))
        self._heard()
        for entry in list(self._frame_waiters):
            predicate, d = entry
            try:
                matched = predicate(text)
            except Exception:
                # A broken predicate fails its own wait, not the connection.
                self._frame_waiters.remove(entry)
                d.errback()
                continue
            if matched:
                self._frame_waiters.remove(entry)
                d.callback(text)
        try:
            message = json.loads(text)
        except ValueError:
            return
        # A receiver ignores what it cannot parse (OCPP-J 1.6 §4.1.3); tests see it
        # in .frames.
        if not isinstance(message, list) or len(message) < 3 or not isinstance(message[1], str):
            return
        kind, unique_id = message[0], message[1]
        if kind == CALL and len(message) == 4 and isinstance(message[2], str):
            self._call_received(unique_id, message[2], message[3])
        elif kind == CALLRESULT:
            pending = self._pending.pop(unique_id, None)
            if pending is not None:
                pending.callback(message[2])
        elif kind == CALLERROR and len(message) >= 4:
            pending = self._pending.pop(unique_id, None)
            if pending is not None:
                details = message[4] if len(message) > 4 else {}
                pending.errback(CallErrorReceived(message[2], message[3], details))

    def _call_received(self, unique_id: str, action: str, payload: Any) -> None:
        self.calls_received.append((action, payload))
        for entry in self._call_waiters:
            if entry[0] == action:
                self._call_waiters.remove(entry)
                entry[1].callback((unique_id, payload))
                break
        else:
            self._unconsumed_calls.append((unique_id, action, payload))
        handler = self.handlers.get(action)
        if handler is None:
            # (OCPP-J 1.6 §4.2.3, Table 7): NotImplemented = action not known.
            self.reply(unique_id, CallErrorReply("NotImplemented", f"Requested Action {action} is not known"))
            return
        answer = maybeDeferred(handler, payload)
        answer.addCallbacks(
            lambda result: self._answer(unique_id, result),
            lambda failure: self._answer(unique_id, CallErrorReply("InternalError", failure.getErrorMessage())),
        )

    def _answer(self, unique_id: str, result) -> None:
        # The connection may be gone by the time a slow handler answers.
        if result is NO_REPLY or not self.is_open:
            return
        if isinstance(result, RawReply):
            self.send_raw(result.frame(unique_id))
            return
        self.reply(unique_id, result)

    def _ping(self) -> None:
        self.pings_received += 1
        self._heard()

    def _connection_lost(self, reason: Failure) -> None:
        self._lost = True
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        was_clean, code, text = self._close_reason or (False, 1006, None)
        self.close_info = (was_clean, code, text)
        opened, self._opened = self._opened, None
        if opened is not None:
            opened.errback(self._why_not_opened(reason))
        gone = ConnectionClosed(f"{self!r} lost its connection: {text}")
        for d in list(self._pending.values()):
            d.errback(gone)
        self._pending.clear()
        waiters = [d for _, d in self._call_waiters] + [d for _, d in self._frame_waiters]
        self._call_waiters, self._frame_waiters = [], []
        for d in waiters:
            d.errback(gone)
        closed, self._closed_waiters = self._closed_waiters, []
        for d in closed:
            d.callback(self.close_info)

    def _why_not_opened(self, reason: Failure) -> Failure:
        """
        Turn a connection lost during the opening handshake into the error
        L{connect_charger} promises.
        """
        text = self._handshake_failure
        if text is not None:
            status = _status_from_reason(text)
            if status is not None:
                return Failure(HandshakeRefused(status, text))
            return Failure(HandshakeFailed(text))
        # A TLS failure or the like: the caller wants the real error.
        if not reason.check(ConnectionDone, ConnectionLost, ConnectionAborted):
            return reason
        return Failure(HandshakeFailed(self._close_reason[2] if self._close_reason else str(reason.value)))

    # -- default CS→CP handlers -------------------------------------------

    def _get_configuration(self, payload: dict) -> dict:
        # An absent or empty key list means "all keys" (OCPP 1.6 §5.8).
        wanted = payload.get("key") or list(self.configuration)
        known = [key for key in wanted if key in self.configuration]
        reply = {
            "configurationKey": [
                _key_value(key, *self.configuration[key]) for key in known
            ]
        }
        unknown = [key for key in wanted if key not in self.configuration]
        if unknown:
            reply["unknownKey"] = unknown
        return reply

    def _change_configuration(self, payload: dict) -> dict:
        key = payload.get("key")
        current = self.configuration.get(key)
        if current is not None and ConfigurationKey(*current).readonly:
            return {"status": "Rejected"}
        # Unknown keys are stored too, so a test can see what the central
        # system set (vendor keys, AuthorizationKey, ...).
        self.configuration[key] = ConfigurationKey(payload.get("value"))
        return {"status": "Accepted"}

    def _install(self, connector: int, profile: dict) -> None:
        if self.current_steps:
            profile = _rounded_down(profile, self.current_steps)
        # A profile replaces the one with its id, and the one of the same
        # purpose and stack level at the same connector (OCPP 1.6 §3.13.2).
        for profile_id, installed in list(self.charging_profiles.items()):
            same_slot = installed.connector == connector and all(
                installed.profile.get(key) == profile.get(key) for key in ("chargingProfilePurpose", "stackLevel")
            )
            if profile_id == profile.get("chargingProfileId") or same_slot:
                del self.charging_profiles[profile_id]
        self.charging_profiles[profile.get("chargingProfileId")] = InstalledProfile(
            connector, profile, self._reactor.seconds()
        )

    def _set_charging_profile(self, payload: dict) -> dict:
        profile = payload.get("csChargingProfiles") or {}
        if profile.get("chargingProfilePurpose") in self.refused_profile_purposes:
            return {"status": "Rejected"}
        if self.max_stack_level is not None and profile.get("stackLevel", 0) > self.max_stack_level:
            return {"status": "Rejected"}
        self._install(payload.get("connectorId"), profile)
        return {"status": "Accepted"}

    def _clear_charging_profile(self, payload: dict) -> dict:
        filters = {"chargingProfilePurpose": payload.get("chargingProfilePurpose"),
                   "stackLevel": payload.get("stackLevel")}
        for profile_id, installed in list(self.charging_profiles.items()):
            if payload.get("id") is not None:
                matches = profile_id == payload["id"]
            else:
                matches = payload.get("connectorId") in (None, installed.connector) and all(
                    value is None or installed.profile.get(key) == value for key, value in filters.items()
                )
            if matches:
                del self.charging_profiles[profile_id]
        return {"status": "Accepted"}

    def _remote_start_transaction(self, payload: dict) -> dict:
        # The TxProfile given with the start is the next transaction's (OCPP 1.6 §5.16).
        profile = payload.get("chargingProfile")
        if profile is not None and profile.get("chargingProfilePurpose") not in self.refused_profile_purposes:
            self._install(payload.get("connectorId", 1), profile)
        return {"status": "Accepted"}

    def _send_local_list(self, payload: dict) -> dict:
        self.local_list_version = payload.get("listVersion", self.local_list_version)
        return {"status": "Accepted"}


def _rounded_down(profile: dict, steps: tuple) -> dict:
    """
    A copy of C{profile} whose limits in A are rounded down to C{steps}.
    """
    schedule = dict(profile.get("chargingSchedule") or {})
    if schedule.get("chargingRateUnit") == "A":
        schedule["chargingSchedulePeriod"] = [
            dict(period, limit=max([step for step in steps if step <= period["limit"]], default=0))
            for period in schedule.get("chargingSchedulePeriod") or ()
        ]
    return dict(profile, chargingSchedule=schedule)


def _key_value(key: str, value: Optional[str], readonly: bool = False) -> dict:
    entry = {"key": key, "readonly": readonly}
    if value is not None:
        entry["value"] = value
    return entry


def _as_text(raw: bytes) -> "str | bytes":
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


class _SimProtocol(WebSocketClientProtocol):
    """
    Feeds Autobahn's client callbacks to the L{SimCharger}.
    """

    def connectionMade(self):
        self.factory.charger._connection_made(self)
        super().connectionMade()

    def failHandshake(self, reason):
        # Autobahn 26 keeps the HTTP status line in a local variable, so the
        # failure text is the one place both versions report the status.
        self.factory.charger._handshake_failure = reason
        return super().failHandshake(reason)

    def onOpen(self):
        self.factory.charger._open(self)

    def onMessage(self, payload, isBinary):
        self.factory.charger._message(payload, isBinary)

    def onPing(self, payload):
        charger = self.factory.charger
        charger._ping()
        if charger.answers_pings:
            super().onPing(payload)

    def onClose(self, wasClean, code, reason):
        self.factory.charger._close_reason = (wasClean, code, reason)

    def connectionLost(self, reason):
        super().connectionLost(reason)
        # Autobahn 22.7 does not cancel this timer when the peer drops the
        # TCP connection in the middle of the closing handshake; left alone
        # it would make trial report a dirty reactor.
        if getattr(self, "closeHandshakeTimeoutCall", None) is not None:
            self.closeHandshakeTimeoutCall.cancel()
            self.closeHandshakeTimeoutCall = None
        self.factory.charger._connection_lost(reason)


class _SimFactory(WebSocketClientFactory):
    protocol = _SimProtocol

    def __init__(self, charger: SimCharger, **kwargs):
        super().__init__(**kwargs)
        self.charger = charger


def _endpoint(reactor, host: str, port: int, timeout: float):
    """
    A TCP endpoint; IP literals skip name resolution (and its thread).
    """
    if isIPAddress(host):
        return TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
    if isIPv6Address(host):
        return TCP6ClientEndpoint(reactor, host, port, timeout=timeout)
    return HostnameEndpoint(reactor, host, port, timeout=timeout)


def connect_charger(
    url: str,
    identity: Optional[str] = None,
    *,
    protocols=("ocpp1.6",),
    auth=None,
    headers=None,
    tls=None,
    timeout: float = 10,
    reactor=None,
) -> Deferred:
    """
    Connect a simulated charge point to a central system.

    @param url: The central system's endpoint, C{ws://host:port/path/} or
        C{wss://...}.  When C{identity} is given it is percent-encoded
        (RFC 3986, as (OCPP-J 1.6 §3.1.1) requires) and appended as the last path
        segment; otherwise C{url} is used as the complete URL.
    @param protocols: Subprotocols to offer in order of preference; an empty
        sequence sends no C{Sec-WebSocket-Protocol} header at all.
    @param auth: C{(user, password)} for HTTP Basic auth, see
        L{basic_authorization}.
    @param headers: Extra request headers; they win over C{auth}.
    @param tls: A client TLS connection creator (for example from
        L{twisted.internet.ssl.optionsForClientTLS}) for C{wss://};
        defaults to verifying the URL's host against the system trust store.
    @param timeout: Seconds for TCP connect, TLS and the opening handshake
        together.
    @param reactor: Defaults to the global reactor, the one trial spins.

    @return: A L{Deferred} firing with an open L{SimCharger}; failing with
        L{HandshakeRefused} (with C{.status}) when the server answers the
        upgrade with an HTTP error, L{HandshakeFailed} for other handshake
        failures, L{WaitTimeout} on timeout, or the underlying connection
        error (C{ConnectionRefusedError}, a TLS error, ...).
    """
    if reactor is None:
        from twisted.internet import reactor
    if identity is not None:
        url = (url if url.endswith("/") else url + "/") + quote(identity, safe="")
    all_headers = {}
    if auth is not None:
        all_headers["Authorization"] = basic_authorization(*auth)
    all_headers.update(headers or {})

    charger = SimCharger(reactor, identity)
    factory = _SimFactory(charger, url=url, protocols=list(protocols), headers=all_headers, reactor=reactor)
    # Our own timer below bounds the opening handshake; Autobahn's runs on
    # txaio's loop, which would be one more thing to clean up.
    factory.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=2, serverConnectionDropTimeout=2)

    endpoint = _endpoint(reactor, factory.host, factory.port, timeout)
    if factory.isSecure:
        if tls is None:
            from twisted.internet.ssl import optionsForClientTLS

            tls = optionsForClientTLS(factory.host)
        endpoint = wrapClientTLS(tls, endpoint)

    opened = charger._opened = Deferred()
    connecting = endpoint.connect(factory)
    timed_out = []

    def give_up():
        timed_out.append(True)
        if charger._protocol is None:
            connecting.cancel()
        else:
            # The errback follows from connectionLost, once the socket is
            # really gone.
            charger._protocol.transport.abortConnection()

    timer = reactor.callLater(timeout, give_up)

    def tcp_failed(failure):
        if charger._opened is not None:
            charger._opened = None
            opened.errback(failure)

    connecting.addErrback(tcp_failed)

    def done(result):
        if timer.active():
            timer.cancel()
        if timed_out and isinstance(result, Failure):
            return Failure(WaitTimeout(f"no WebSocket connection to {url} within {timeout} s"))
        return result

    return opened.addBoth(done)
