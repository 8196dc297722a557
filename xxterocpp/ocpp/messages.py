# -*- test-case-name: tests.test_messages -*-
"""
The OCPP 1.6 messages, one frozen class per request and response.

Each class reads like the spec's field table: the attribute is the field in
snake_case (its JSON name is the camelCase form), the declaration helper is
the type and its constraint, C{required=False} marks the optional fields.
Enumerations are tuples of plain strings in JSON-schema order.

Sources: OCPP 1.6 edition 2 sections 6 and 7, the official 2019-12 JSON
schemas (as shipped with the C{ocpp} package), and the OCA white paper
I{Improved security for OCPP 1.6-J} edition 3 for the security extension.

L{ACTIONS} is the single table that drives the RPC layer.

The module is long on purpose: it is a table, one short class per request,
response and nested type of the 39 actions (core and the security
extension) with the enumerations they share, read top to bottom like the
spec's sections and found by name. Split by feature profile, the shared
enumerations and nested types would be scattered and L{ACTIONS} would
import from every part, while no class would get shorter.
"""

from datetime import datetime
from typing import Optional, Tuple

import attr

# Re-exported: callers only import this module.
from ._schema import (  # noqa: F401
    ERROR_CODES,
    FORMATION_VIOLATION,
    GENERIC_ERROR,
    INTERNAL_ERROR,
    NOT_IMPLEMENTED,
    NOT_SUPPORTED,
    OCCURENCE_CONSTRAINT_VIOLATION,
    PROPERTY_CONSTRAINT_VIOLATION,
    PROTOCOL_ERROR,
    SECURITY_ERROR,
    TYPE_CONSTRAINT_VIOLATION,
    ValidationError,
    array,
    boolean,
    date_time,
    decode,
    encode,
    enum,
    field_names,
    has_lone_surrogate,
    integer,
    is_message,
    message,
    nested,
    normalize_error_code,
    number,
    replace,
    string,
)


# ---------------------------------------------------------------------------
# Enumerations, in JSON-schema order (the spec tables are often alphabetical).

AUTHORIZATION_STATUS = ("Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx")
REGISTRATION_STATUS = ("Accepted", "Pending", "Rejected")
AVAILABILITY_TYPE = ("Inoperative", "Operative")
AVAILABILITY_STATUS = ("Accepted", "Rejected", "Scheduled")
CONFIGURATION_STATUS = ("Accepted", "Rejected", "RebootRequired", "NotSupported")
CLEAR_CACHE_STATUS = ("Accepted", "Rejected")
CHARGING_PROFILE_PURPOSE = ("ChargePointMaxProfile", "TxDefaultProfile", "TxProfile")
CLEAR_CHARGING_PROFILE_STATUS = ("Accepted", "Unknown")
DATA_TRANSFER_STATUS = ("Accepted", "Rejected", "UnknownMessageId", "UnknownVendorId")
DIAGNOSTICS_STATUS = ("Idle", "Uploaded", "UploadFailed", "Uploading")
FIRMWARE_STATUS = (
    "Downloaded",
    "DownloadFailed",
    "Downloading",
    "Idle",
    "InstallationFailed",
    "Installing",
    "Installed",
)
CHARGING_RATE_UNIT = ("A", "W")
GET_COMPOSITE_SCHEDULE_STATUS = ("Accepted", "Rejected")
READING_CONTEXT = (
    "Interruption.Begin",
    "Interruption.End",
    "Sample.Clock",
    "Sample.Periodic",
    "Transaction.Begin",
    "Transaction.End",
    "Trigger",
    "Other",
)
VALUE_FORMAT = ("Raw", "SignedData")
MEASURAND = (
    "Energy.Active.Export.Register",
    "Energy.Active.Import.Register",
    "Energy.Reactive.Export.Register",
    "Energy.Reactive.Import.Register",
    "Energy.Active.Export.Interval",
    "Energy.Active.Import.Interval",
    "Energy.Reactive.Export.Interval",
    "Energy.Reactive.Import.Interval",
    "Power.Active.Export",
    "Power.Active.Import",
    "Power.Offered",
    "Power.Reactive.Export",
    "Power.Reactive.Import",
    "Power.Factor",
    "Current.Import",
    "Current.Export",
    "Current.Offered",
    "Voltage",
    "Frequency",
    "Temperature",
    "SoC",
    "RPM",
)
PHASE = ("L1", "L2", "L3", "N", "L1-N", "L2-N", "L3-N", "L1-L2", "L2-L3", "L3-L1")
LOCATION = ("Cable", "EV", "Inlet", "Outlet", "Body")
UNIT_OF_MEASURE = (
    "Wh",
    "kWh",
    "varh",
    "kvarh",
    "W",
    "kW",
    "VA",
    "kVA",
    "var",
    "kvar",
    "A",
    "V",
    "K",
    # The 2019-12 schemas keep the 1.6 typo "Celcius" next to "Celsius"; the
    # OCPP-J errata tells chargers to keep sending "Celcius" and central
    # systems to accept both.
    "Celcius",
    "Celsius",
    "Fahrenheit",
    "Percent",
    # Not 1.6: 1.6 has no unit for Frequency, and chargers fill in "Hertz"
    # (the ocpp library's MeterValues schema accepts it too).
    "Hertz",
)
CHARGING_PROFILE_KIND = ("Absolute", "Recurring", "Relative")
RECURRENCY_KIND = ("Daily", "Weekly")
REMOTE_START_STOP_STATUS = ("Accepted", "Rejected")
RESERVATION_STATUS = ("Accepted", "Faulted", "Occupied", "Rejected", "Unavailable")
CANCEL_RESERVATION_STATUS = ("Accepted", "Rejected")
RESET_TYPE = ("Hard", "Soft")
RESET_STATUS = ("Accepted", "Rejected")
UPDATE_TYPE = ("Differential", "Full")
UPDATE_STATUS = ("Accepted", "Failed", "NotSupported", "VersionMismatch")
CHARGING_PROFILE_STATUS = ("Accepted", "Rejected", "NotSupported")
REASON = (
    "EmergencyStop",
    "EVDisconnected",
    "HardReset",
    "Local",
    "Other",
    "PowerLoss",
    "Reboot",
    "Remote",
    "SoftReset",
    "UnlockCommand",
    "DeAuthorized",
)
CHARGE_POINT_ERROR_CODE = (
    "ConnectorLockFailure",
    "EVCommunicationError",
    "GroundFailure",
    "HighTemperature",
    "InternalError",
    "LocalListConflict",
    "NoError",
    "OtherError",
    "OverCurrentFailure",
    "PowerMeterFailure",
    "PowerSwitchFailure",
    "ReaderFailure",
    "ResetFailure",
    "UnderVoltage",
    "OverVoltage",
    "WeakSignal",
)
CHARGE_POINT_STATUS = (
    "Available",
    "Preparing",
    "Charging",
    "SuspendedEVSE",
    "SuspendedEV",
    "Finishing",
    "Reserved",
    "Unavailable",
    "Faulted",
)
MESSAGE_TRIGGER = (
    "BootNotification",
    "DiagnosticsStatusNotification",
    "FirmwareStatusNotification",
    "Heartbeat",
    "MeterValues",
    "StatusNotification",
)
TRIGGER_MESSAGE_STATUS = ("Accepted", "Rejected", "NotImplemented")
UNLOCK_STATUS = ("Unlocked", "UnlockFailed", "NotSupported")

# Security extension (white paper edition 3).
CERTIFICATE_SIGNED_STATUS = ("Accepted", "Rejected")
HASH_ALGORITHM = ("SHA256", "SHA384", "SHA512")
DELETE_CERTIFICATE_STATUS = ("Accepted", "Failed", "NotFound")
EXTENDED_MESSAGE_TRIGGER = (
    "BootNotification",
    "LogStatusNotification",
    "FirmwareStatusNotification",
    "Heartbeat",
    "MeterValues",
    "SignChargePointCertificate",
    "StatusNotification",
)
CERTIFICATE_USE = ("CentralSystemRootCertificate", "ManufacturerRootCertificate")
GET_INSTALLED_CERTIFICATE_STATUS = ("Accepted", "NotFound")
LOG_TYPE = ("DiagnosticsLog", "SecurityLog")
LOG_STATUS = ("Accepted", "Rejected", "AcceptedCanceled")
INSTALL_CERTIFICATE_STATUS = ("Accepted", "Failed", "Rejected")
# The white paper's text says "UploadFailed"; the schema says "UploadFailure".
UPLOAD_LOG_STATUS = (
    "BadMessage",
    "Idle",
    "NotSupportedOperation",
    "PermissionDenied",
    "Uploaded",
    "UploadFailure",
    "Uploading",
)
GENERIC_STATUS = ("Accepted", "Rejected")
SIGNED_FIRMWARE_STATUS = (
    "Downloaded",
    "DownloadFailed",
    "Downloading",
    "DownloadScheduled",
    "DownloadPaused",
    "Idle",
    "InstallationFailed",
    "Installing",
    "Installed",
    "InstallRebooting",
    "InstallScheduled",
    "InstallVerificationFailed",
    "InvalidSignature",
    "SignatureVerified",
)
UPDATE_FIRMWARE_STATUS = (
    "Accepted",
    "Rejected",
    "AcceptedCanceled",
    "InvalidCertificate",
    "RevokedCertificate",
)


# ---------------------------------------------------------------------------
# Types shared by several messages (OCPP 1.6 section 7).


@message
class IdTagInfo:
    """
    The authorization status of an idTag (section 7.29).
    """

    expiry_date: Optional[datetime] = date_time(required=False)
    # IdToken is CiString20 (section 7.28).
    parent_id_tag: Optional[str] = string(20, required=False)
    status: str = enum(AUTHORIZATION_STATUS)


@message
class SampledValue:
    """
    One measured value (section 7.43); C{value} is a decimal number as a
    string, or hex when C{format} is SignedData.
    """

    value: str = string()
    context: Optional[str] = enum(READING_CONTEXT, required=False)
    format: Optional[str] = enum(VALUE_FORMAT, required=False)
    measurand: Optional[str] = enum(MEASURAND, required=False)
    phase: Optional[str] = enum(PHASE, required=False)
    location: Optional[str] = enum(LOCATION, required=False)
    unit: Optional[str] = enum(UNIT_OF_MEASURE, required=False)


@message
class MeterValue:
    """
    The values sampled at one point in time (section 7.32).
    """

    timestamp: datetime = date_time()
    # 1..* in the spec table (the official schema forgot minItems).
    sampled_value: Tuple[SampledValue, ...] = array(SampledValue, min_items=1)


@message
class ChargingSchedulePeriod:
    """
    One period of a charging schedule (section 7.13).
    """

    start_period: int = integer(minimum=0)
    limit: float = number(decimals=1, minimum=0)
    number_phases: Optional[int] = integer(minimum=1, maximum=3, required=False)


@message
class ChargingSchedule:
    """
    A limit over time (section 7.12).
    """

    duration: Optional[int] = integer(minimum=0, required=False)
    start_schedule: Optional[datetime] = date_time(required=False)
    charging_rate_unit: str = enum(CHARGING_RATE_UNIT)
    charging_schedule_period: Tuple[ChargingSchedulePeriod, ...] = array(
        ChargingSchedulePeriod, min_items=1
    )
    min_charging_rate: Optional[float] = number(decimals=1, minimum=0, required=False)


@message
class ChargingProfile:
    """
    A smart-charging profile (section 7.8).
    """

    charging_profile_id: int = integer()
    transaction_id: Optional[int] = integer(required=False)
    # "Value MUST be greater than or equal to 0" (section 7.8).
    stack_level: int = integer(minimum=0)
    charging_profile_purpose: str = enum(CHARGING_PROFILE_PURPOSE)
    charging_profile_kind: str = enum(CHARGING_PROFILE_KIND)
    recurrency_kind: Optional[str] = enum(RECURRENCY_KIND, required=False)
    valid_from: Optional[datetime] = date_time(required=False)
    valid_to: Optional[datetime] = date_time(required=False)
    charging_schedule: ChargingSchedule = nested(ChargingSchedule)


@message
class KeyValue:
    """
    One configuration key in GetConfiguration.conf (section 7.30).
    """

    key: str = string(50)
    readonly: bool = boolean()
    value: Optional[str] = string(500, required=False)


@message
class AuthorizationData:
    """
    One entry of a local authorization list (section 7.5).
    """

    id_tag: str = string(20)
    id_tag_info: Optional[IdTagInfo] = nested(IdTagInfo, required=False)


@message
class CertificateHashData:
    """
    Identifies an installed certificate (white paper, edition 3).
    """

    hash_algorithm: str = enum(HASH_ALGORITHM)
    issuer_name_hash: str = string(128)
    issuer_key_hash: str = string(128)
    serial_number: str = string(40)


@message
class LogParameters:
    """
    Where to upload a log and which period it covers (white paper).
    """

    remote_location: str = string(512)
    oldest_timestamp: Optional[datetime] = date_time(required=False)
    latest_timestamp: Optional[datetime] = date_time(required=False)


@message
class Firmware:
    """
    A signed firmware image to install (white paper).
    """

    location: str = string(512)
    retrieve_date_time: datetime = date_time()
    install_date_time: Optional[datetime] = date_time(required=False)
    signing_certificate: str = string(5500)
    signature: str = string(800)


# ---------------------------------------------------------------------------
# Core profile.


@message
class AuthorizeRequest:
    """
    May this idTag charge? (section 6.1)
    """

    id_tag: str = string(20)


@message
class AuthorizeResponse:
    """
    The answer to Authorize.
    """

    id_tag_info: IdTagInfo = nested(IdTagInfo)


@message
class BootNotificationRequest:
    """
    The charge point introduces itself after (re)boot (section 6.3).
    """

    charge_point_vendor: str = string(20)
    charge_point_model: str = string(20)
    charge_point_serial_number: Optional[str] = string(25, required=False)
    # Deprecated in 1.6 in favour of chargePointSerialNumber, still sent.
    charge_box_serial_number: Optional[str] = string(25, required=False)
    firmware_version: Optional[str] = string(50, required=False)
    iccid: Optional[str] = string(20, required=False)
    imsi: Optional[str] = string(20, required=False)
    meter_type: Optional[str] = string(25, required=False)
    meter_serial_number: Optional[str] = string(25, required=False)


@message
class BootNotificationResponse:
    """
    The answer to BootNotification.
    """

    status: str = enum(REGISTRATION_STATUS)
    current_time: datetime = date_time()
    # Heartbeat interval when Accepted, minimum wait before the next
    # BootNotification when Pending/Rejected (section 6.4); the OCPP-J
    # example's "heartbeatInterval" is a typo.
    interval: int = integer(minimum=0)


@message
class ChangeAvailabilityRequest:
    """
    Make a connector or the whole charge point (in)operative (section 6.7).
    """

    # 0 means the whole charge point.
    connector_id: int = integer(minimum=0)
    type: str = enum(AVAILABILITY_TYPE)


@message
class ChangeAvailabilityResponse:
    """
    The answer to ChangeAvailability.
    """

    status: str = enum(AVAILABILITY_STATUS)


@message
class ChangeConfigurationRequest:
    """
    Set one configuration key (section 6.9).
    """

    key: str = string(50)
    value: str = string(500)


@message
class ChangeConfigurationResponse:
    """
    The answer to ChangeConfiguration.
    """

    status: str = enum(CONFIGURATION_STATUS)


@message
class ClearCacheRequest:
    """
    Clear the charge point's authorization cache (section 6.11).
    """


@message
class ClearCacheResponse:
    """
    The answer to ClearCache.
    """

    status: str = enum(CLEAR_CACHE_STATUS)


@message
class DataTransferRequest:
    """
    Vendor-specific data, sent by either side (section 6.15).
    """

    vendor_id: str = string(255)
    message_id: Optional[str] = string(50, required=False)
    # Unbounded: the content is vendor-defined.
    data: Optional[str] = string(required=False)


@message
class DataTransferResponse:
    """
    The answer to DataTransfer.
    """

    status: str = enum(DATA_TRANSFER_STATUS)
    data: Optional[str] = string(required=False)


@message
class GetConfigurationRequest:
    """
    Read configuration keys (section 6.23).
    """

    # Absent or empty asks for every key.
    key: Optional[Tuple[str, ...]] = array(str, max_length=50, required=False)


@message
class GetConfigurationResponse:
    """
    The answer to GetConfiguration.
    """

    configuration_key: Optional[Tuple[KeyValue, ...]] = array(KeyValue, required=False)
    unknown_key: Optional[Tuple[str, ...]] = array(str, max_length=50, required=False)


@message
class HeartbeatRequest:
    """
    Sign of life and clock sync (section 6.29).
    """


@message
class HeartbeatResponse:
    """
    The answer to Heartbeat.
    """

    current_time: datetime = date_time()


@message
class MeterValuesRequest:
    """
    Sampled or clock-aligned meter readings (section 6.31).
    """

    # 0 is the main energy meter of the charge point.
    connector_id: int = integer(minimum=0)
    transaction_id: Optional[int] = integer(required=False)
    meter_value: Tuple[MeterValue, ...] = array(MeterValue, min_items=1)


@message
class MeterValuesResponse:
    """
    The answer to MeterValues.
    """


@message
class RemoteStartTransactionRequest:
    """
    Start a transaction for an idTag (section 6.33).
    """

    # "SHALL be > 0" (section 6.33): a transaction needs a real connector.
    connector_id: Optional[int] = integer(minimum=1, required=False)
    id_tag: str = string(20)
    # Purpose MUST be TxProfile and transactionId SHALL NOT be set; that is
    # the sender's business rule, not a schema constraint.
    charging_profile: Optional[ChargingProfile] = nested(
        ChargingProfile, required=False
    )


@message
class RemoteStartTransactionResponse:
    """
    The answer to RemoteStartTransaction.
    """

    status: str = enum(REMOTE_START_STOP_STATUS)


@message
class RemoteStopTransactionRequest:
    """
    Stop a running transaction (section 6.35).
    """

    transaction_id: int = integer()


@message
class RemoteStopTransactionResponse:
    """
    The answer to RemoteStopTransaction.
    """

    status: str = enum(REMOTE_START_STOP_STATUS)


@message
class ResetRequest:
    """
    Reboot the charge point (section 6.39).
    """

    type: str = enum(RESET_TYPE)


@message
class ResetResponse:
    """
    The answer to Reset.
    """

    status: str = enum(RESET_STATUS)


@message
class StartTransactionRequest:
    """
    A transaction started (section 6.45).
    """

    # The spec says > 0, but a CALLERROR here makes the charger retry and
    # finally drop the transaction; 0 is left to the domain to judge.
    connector_id: int = integer(minimum=0)
    id_tag: str = string(20)
    # Energy register in Wh.
    meter_start: int = integer()
    reservation_id: Optional[int] = integer(required=False)
    timestamp: datetime = date_time()


@message
class StartTransactionResponse:
    """
    The answer to StartTransaction.
    """

    id_tag_info: IdTagInfo = nested(IdTagInfo)
    transaction_id: int = integer()


@message
class StatusNotificationRequest:
    """
    A connector's status or error changed (section 6.47).
    """

    # 0 is the charge point's main controller.
    connector_id: int = integer(minimum=0)
    error_code: str = enum(CHARGE_POINT_ERROR_CODE)
    info: Optional[str] = string(50, required=False)
    status: str = enum(CHARGE_POINT_STATUS)
    # Absent means "time of receipt".
    timestamp: Optional[datetime] = date_time(required=False)
    vendor_id: Optional[str] = string(255, required=False)
    vendor_error_code: Optional[str] = string(50, required=False)


@message
class StatusNotificationResponse:
    """
    The answer to StatusNotification.
    """


@message
class StopTransactionRequest:
    """
    A transaction ended (section 6.49).
    """

    id_tag: Optional[str] = string(20, required=False)
    # Energy register in Wh.
    meter_stop: int = integer()
    timestamp: datetime = date_time()
    # -1 when the charger never obtained an id (OCPP 1.6 errata 3.18).
    transaction_id: int = integer()
    # Absent means Local (section 6.49).
    reason: Optional[str] = enum(REASON, required=False)
    transaction_data: Optional[Tuple[MeterValue, ...]] = array(
        MeterValue, required=False
    )


@message
class StopTransactionResponse:
    """
    The answer to StopTransaction.
    """

    id_tag_info: Optional[IdTagInfo] = nested(IdTagInfo, required=False)


@message
class UnlockConnectorRequest:
    """
    Release the cable lock of a connector (section 6.53).
    """

    connector_id: int = integer(minimum=0)


@message
class UnlockConnectorResponse:
    """
    The answer to UnlockConnector.
    """

    status: str = enum(UNLOCK_STATUS)


# ---------------------------------------------------------------------------
# Firmware Management profile.


@message
class GetDiagnosticsRequest:
    """
    Upload a diagnostics file to C{location} (section 6.25).
    """

    # A URI (format: uri, not checked, as ocpp-lib does not either).
    location: str = string()
    retries: Optional[int] = integer(minimum=0, required=False)
    retry_interval: Optional[int] = integer(minimum=0, required=False)
    start_time: Optional[datetime] = date_time(required=False)
    stop_time: Optional[datetime] = date_time(required=False)


@message
class GetDiagnosticsResponse:
    """
    The answer to GetDiagnostics.
    """

    file_name: Optional[str] = string(255, required=False)


@message
class DiagnosticsStatusNotificationRequest:
    """
    Progress of a diagnostics upload (section 6.17).
    """

    status: str = enum(DIAGNOSTICS_STATUS)


@message
class DiagnosticsStatusNotificationResponse:
    """
    The answer to DiagnosticsStatusNotification.
    """


@message
class FirmwareStatusNotificationRequest:
    """
    Progress of a firmware update (section 6.19).
    """

    status: str = enum(FIRMWARE_STATUS)


@message
class FirmwareStatusNotificationResponse:
    """
    The answer to FirmwareStatusNotification.
    """


@message
class UpdateFirmwareRequest:
    """
    Download and install firmware from C{location} (section 6.55).
    """

    location: str = string()
    retries: Optional[int] = integer(minimum=0, required=False)
    retrieve_date: datetime = date_time()
    retry_interval: Optional[int] = integer(minimum=0, required=False)


@message
class UpdateFirmwareResponse:
    """
    The answer to UpdateFirmware.
    """


# ---------------------------------------------------------------------------
# Local Auth List Management profile.


@message
class GetLocalListVersionRequest:
    """
    Ask for the local authorization list's version (section 6.27).
    """


@message
class GetLocalListVersionResponse:
    """
    The answer to GetLocalListVersion.
    """

    # 0: no list; -1: local authorization list not supported.
    list_version: int = integer(minimum=-1)


@message
class SendLocalListRequest:
    """
    Replace or update the local authorization list (section 6.41).
    """

    list_version: int = integer()
    local_authorization_list: Optional[Tuple[AuthorizationData, ...]] = array(
        AuthorizationData, required=False
    )
    update_type: str = enum(UPDATE_TYPE)


@message
class SendLocalListResponse:
    """
    The answer to SendLocalList.
    """

    status: str = enum(UPDATE_STATUS)


# ---------------------------------------------------------------------------
# Reservation profile.


@message
class ReserveNowRequest:
    """
    Reserve a connector for an idTag (section 6.37).
    """

    # 0 reserves any connector (only with ReserveConnectorZeroSupported).
    connector_id: int = integer(minimum=0)
    expiry_date: datetime = date_time()
    id_tag: str = string(20)
    parent_id_tag: Optional[str] = string(20, required=False)
    reservation_id: int = integer()


@message
class ReserveNowResponse:
    """
    The answer to ReserveNow.
    """

    status: str = enum(RESERVATION_STATUS)


@message
class CancelReservationRequest:
    """
    Cancel a reservation (section 6.5).
    """

    reservation_id: int = integer()


@message
class CancelReservationResponse:
    """
    The answer to CancelReservation.
    """

    status: str = enum(CANCEL_RESERVATION_STATUS)


# ---------------------------------------------------------------------------
# Smart Charging profile.


@message
class SetChargingProfileRequest:
    """
    Install a charging profile, i.e. a current limit (section 6.43).
    """

    # 0 addresses the whole charge point (ChargePointMaxProfile).
    connector_id: int = integer(minimum=0)
    cs_charging_profiles: ChargingProfile = nested(ChargingProfile)


@message
class SetChargingProfileResponse:
    """
    The answer to SetChargingProfile.
    """

    status: str = enum(CHARGING_PROFILE_STATUS)


@message
class ClearChargingProfileRequest:
    """
    Remove the charging profiles matching a filter (section 6.13).
    """

    # All optional: together they form a filter.
    id: Optional[int] = integer(required=False)
    connector_id: Optional[int] = integer(minimum=0, required=False)
    charging_profile_purpose: Optional[str] = enum(
        CHARGING_PROFILE_PURPOSE, required=False
    )
    stack_level: Optional[int] = integer(minimum=0, required=False)


@message
class ClearChargingProfileResponse:
    """
    The answer to ClearChargingProfile.
    """

    status: str = enum(CLEAR_CHARGING_PROFILE_STATUS)


@message
class GetCompositeScheduleRequest:
    """
    Ask for the effective schedule of a connector (section 6.21).
    """

    connector_id: int = integer(minimum=0)
    # Seconds.
    duration: int = integer(minimum=0)
    charging_rate_unit: Optional[str] = enum(CHARGING_RATE_UNIT, required=False)


@message
class GetCompositeScheduleResponse:
    """
    The answer to GetCompositeSchedule.
    """

    status: str = enum(GET_COMPOSITE_SCHEDULE_STATUS)
    connector_id: Optional[int] = integer(minimum=0, required=False)
    schedule_start: Optional[datetime] = date_time(required=False)
    charging_schedule: Optional[ChargingSchedule] = nested(
        ChargingSchedule, required=False
    )


# ---------------------------------------------------------------------------
# Remote Trigger profile.


@message
class TriggerMessageRequest:
    """
    Ask the charge point to send a message now (section 6.51).
    """

    requested_message: str = enum(MESSAGE_TRIGGER)
    connector_id: Optional[int] = integer(minimum=0, required=False)


@message
class TriggerMessageResponse:
    """
    The answer to TriggerMessage.
    """

    status: str = enum(TRIGGER_MESSAGE_STATUS)


# ---------------------------------------------------------------------------
# Security extension (white paper "Improved security for OCPP 1.6-J").


@message
class SecurityEventNotificationRequest:
    """
    A security event on the charge point; always confirmed.
    """

    type: str = string(50)
    timestamp: datetime = date_time()
    tech_info: Optional[str] = string(255, required=False)


@message
class SecurityEventNotificationResponse:
    """
    The answer to SecurityEventNotification.
    """


@message
class SignCertificateRequest:
    """
    The charge point asks for its client certificate to be signed.
    """

    # PEM-encoded certificate signing request.
    csr: str = string(5500)


@message
class SignCertificateResponse:
    """
    The answer to SignCertificate.
    """

    status: str = enum(GENERIC_STATUS)


@message
class SignedFirmwareStatusNotificationRequest:
    """
    Progress of a signed firmware update.
    """

    status: str = enum(SIGNED_FIRMWARE_STATUS)
    request_id: Optional[int] = integer(required=False)


@message
class SignedFirmwareStatusNotificationResponse:
    """
    The answer to SignedFirmwareStatusNotification.
    """


@message
class LogStatusNotificationRequest:
    """
    Progress of a log upload started by GetLog.
    """

    status: str = enum(UPLOAD_LOG_STATUS)
    request_id: Optional[int] = integer(required=False)


@message
class LogStatusNotificationResponse:
    """
    The answer to LogStatusNotification.
    """


@message
class ExtendedTriggerMessageRequest:
    """
    TriggerMessage including the security extension's messages.
    """

    requested_message: str = enum(EXTENDED_MESSAGE_TRIGGER)
    connector_id: Optional[int] = integer(minimum=0, required=False)


@message
class ExtendedTriggerMessageResponse:
    """
    The answer to ExtendedTriggerMessage.
    """

    status: str = enum(TRIGGER_MESSAGE_STATUS)


@message
class CertificateSignedRequest:
    """
    The signed client certificate chain for the charge point.
    """

    # PEM-encoded certificate chain.
    certificate_chain: str = string(10000)


@message
class CertificateSignedResponse:
    """
    The answer to CertificateSigned.
    """

    status: str = enum(CERTIFICATE_SIGNED_STATUS)


@message
class InstallCertificateRequest:
    """
    Install a root certificate on the charge point.
    """

    certificate_type: str = enum(CERTIFICATE_USE)
    certificate: str = string(5500)


@message
class InstallCertificateResponse:
    """
    The answer to InstallCertificate.
    """

    status: str = enum(INSTALL_CERTIFICATE_STATUS)


@message
class GetInstalledCertificateIdsRequest:
    """
    List the installed root certificates of a type.
    """

    certificate_type: str = enum(CERTIFICATE_USE)


@message
class GetInstalledCertificateIdsResponse:
    """
    The answer to GetInstalledCertificateIds.
    """

    certificate_hash_data: Optional[Tuple[CertificateHashData, ...]] = array(
        CertificateHashData, min_items=1, required=False
    )
    status: str = enum(GET_INSTALLED_CERTIFICATE_STATUS)


@message
class DeleteCertificateRequest:
    """
    Remove an installed root certificate.
    """

    certificate_hash_data: CertificateHashData = nested(CertificateHashData)


@message
class DeleteCertificateResponse:
    """
    The answer to DeleteCertificate.
    """

    status: str = enum(DELETE_CERTIFICATE_STATUS)


@message
class GetLogRequest:
    """
    Upload a diagnostics or security log.
    """

    log: LogParameters = nested(LogParameters)
    log_type: str = enum(LOG_TYPE)
    request_id: int = integer()
    retries: Optional[int] = integer(minimum=0, required=False)
    retry_interval: Optional[int] = integer(minimum=0, required=False)


@message
class GetLogResponse:
    """
    The answer to GetLog.
    """

    status: str = enum(LOG_STATUS)
    filename: Optional[str] = string(255, required=False)


@message
class SignedUpdateFirmwareRequest:
    """
    Install firmware whose signature the charge point verifies.
    """

    retries: Optional[int] = integer(minimum=0, required=False)
    retry_interval: Optional[int] = integer(minimum=0, required=False)
    request_id: int = integer()
    firmware: Firmware = nested(Firmware)


@message
class SignedUpdateFirmwareResponse:
    """
    The answer to SignedUpdateFirmware.
    """

    status: str = enum(UPDATE_FIRMWARE_STATUS)


# ---------------------------------------------------------------------------
# The action table.

#: The MessageTypeId of each kind of frame (OCPP-J 1.6 §4.1.3): its first
#: element (L{xxterocpp.ocpp.rpc}).
CALL, CALLRESULT, CALLERROR = 2, 3, 4

#: The charge point sends the CALL, the central system answers.
CP_TO_CS = "CP->CS"
#: The central system sends the CALL, the charge point answers.
CS_TO_CP = "CS->CP"
#: Either side may send the CALL (DataTransfer).
BOTH = "both"

PROFILES = (
    "Core",
    "FirmwareManagement",
    "LocalAuthListManagement",
    "Reservation",
    "SmartCharging",
    "RemoteTrigger",
    "Security",
)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Action:
    """
    One OCPP action: its name on the wire, its two message classes, who
    sends the CALL and the feature profile it belongs to.

    @ivar name: the case-sensitive action string of the CALL frame.
    @ivar request: the L{message} class of the CALL payload.
    @ivar response: the L{message} class of the CALLRESULT payload.
    @ivar direction: L{CP_TO_CS}, L{CS_TO_CP} or L{BOTH}.
    @ivar profile: one of L{PROFILES}.
    """

    name: str
    request: type
    response: type
    direction: str = attr.ib(validator=attr.validators.in_((CP_TO_CS, CS_TO_CP, BOTH)))
    profile: str = attr.ib(validator=attr.validators.in_(PROFILES))


def _table(*actions):
    return {action.name: action for action in actions}


#: Every OCPP 1.6 action by its wire name: the 28 of the six feature profiles
#: and the 11 of the security extension.
ACTIONS = _table(
    Action("Authorize", AuthorizeRequest, AuthorizeResponse, CP_TO_CS, "Core"),
    Action(
        "BootNotification",
        BootNotificationRequest,
        BootNotificationResponse,
        CP_TO_CS,
        "Core",
    ),
    Action(
        "ChangeAvailability",
        ChangeAvailabilityRequest,
        ChangeAvailabilityResponse,
        CS_TO_CP,
        "Core",
    ),
    Action(
        "ChangeConfiguration",
        ChangeConfigurationRequest,
        ChangeConfigurationResponse,
        CS_TO_CP,
        "Core",
    ),
    Action("ClearCache", ClearCacheRequest, ClearCacheResponse, CS_TO_CP, "Core"),
    Action("DataTransfer", DataTransferRequest, DataTransferResponse, BOTH, "Core"),
    Action(
        "GetConfiguration",
        GetConfigurationRequest,
        GetConfigurationResponse,
        CS_TO_CP,
        "Core",
    ),
    Action("Heartbeat", HeartbeatRequest, HeartbeatResponse, CP_TO_CS, "Core"),
    Action("MeterValues", MeterValuesRequest, MeterValuesResponse, CP_TO_CS, "Core"),
    Action(
        "RemoteStartTransaction",
        RemoteStartTransactionRequest,
        RemoteStartTransactionResponse,
        CS_TO_CP,
        "Core",
    ),
    Action(
        "RemoteStopTransaction",
        RemoteStopTransactionRequest,
        RemoteStopTransactionResponse,
        CS_TO_CP,
        "Core",
    ),
    Action("Reset", ResetRequest, ResetResponse, CS_TO_CP, "Core"),
    Action(
        "StartTransaction",
        StartTransactionRequest,
        StartTransactionResponse,
        CP_TO_CS,
        "Core",
    ),
    Action(
        "StatusNotification",
        StatusNotificationRequest,
        StatusNotificationResponse,
        CP_TO_CS,
        "Core",
    ),
    Action(
        "StopTransaction",
        StopTransactionRequest,
        StopTransactionResponse,
        CP_TO_CS,
        "Core",
    ),
    Action(
        "UnlockConnector",
        UnlockConnectorRequest,
        UnlockConnectorResponse,
        CS_TO_CP,
        "Core",
    ),
    Action(
        "GetDiagnostics",
        GetDiagnosticsRequest,
        GetDiagnosticsResponse,
        CS_TO_CP,
        "FirmwareManagement",
    ),
    Action(
        "DiagnosticsStatusNotification",
        DiagnosticsStatusNotificationRequest,
        DiagnosticsStatusNotificationResponse,
        CP_TO_CS,
        "FirmwareManagement",
    ),
    Action(
        "FirmwareStatusNotification",
        FirmwareStatusNotificationRequest,
        FirmwareStatusNotificationResponse,
        CP_TO_CS,
        "FirmwareManagement",
    ),
    Action(
        "UpdateFirmware",
        UpdateFirmwareRequest,
        UpdateFirmwareResponse,
        CS_TO_CP,
        "FirmwareManagement",
    ),
    Action(
        "GetLocalListVersion",
        GetLocalListVersionRequest,
        GetLocalListVersionResponse,
        CS_TO_CP,
        "LocalAuthListManagement",
    ),
    Action(
        "SendLocalList",
        SendLocalListRequest,
        SendLocalListResponse,
        CS_TO_CP,
        "LocalAuthListManagement",
    ),
    Action(
        "CancelReservation",
        CancelReservationRequest,
        CancelReservationResponse,
        CS_TO_CP,
        "Reservation",
    ),
    Action(
        "ReserveNow",
        ReserveNowRequest,
        ReserveNowResponse,
        CS_TO_CP,
        "Reservation",
    ),
    Action(
        "ClearChargingProfile",
        ClearChargingProfileRequest,
        ClearChargingProfileResponse,
        CS_TO_CP,
        "SmartCharging",
    ),
    Action(
        "GetCompositeSchedule",
        GetCompositeScheduleRequest,
        GetCompositeScheduleResponse,
        CS_TO_CP,
        "SmartCharging",
    ),
    Action(
        "SetChargingProfile",
        SetChargingProfileRequest,
        SetChargingProfileResponse,
        CS_TO_CP,
        "SmartCharging",
    ),
    Action(
        "TriggerMessage",
        TriggerMessageRequest,
        TriggerMessageResponse,
        CS_TO_CP,
        "RemoteTrigger",
    ),
    Action(
        "SecurityEventNotification",
        SecurityEventNotificationRequest,
        SecurityEventNotificationResponse,
        CP_TO_CS,
        "Security",
    ),
    Action(
        "SignCertificate",
        SignCertificateRequest,
        SignCertificateResponse,
        CP_TO_CS,
        "Security",
    ),
    Action(
        "SignedFirmwareStatusNotification",
        SignedFirmwareStatusNotificationRequest,
        SignedFirmwareStatusNotificationResponse,
        CP_TO_CS,
        "Security",
    ),
    Action(
        "LogStatusNotification",
        LogStatusNotificationRequest,
        LogStatusNotificationResponse,
        CP_TO_CS,
        "Security",
    ),
    Action(
        "ExtendedTriggerMessage",
        ExtendedTriggerMessageRequest,
        ExtendedTriggerMessageResponse,
        CS_TO_CP,
        "Security",
    ),
    Action(
        "CertificateSigned",
        CertificateSignedRequest,
        CertificateSignedResponse,
        CS_TO_CP,
        "Security",
    ),
    Action(
        "InstallCertificate",
        InstallCertificateRequest,
        InstallCertificateResponse,
        CS_TO_CP,
        "Security",
    ),
    Action(
        "GetInstalledCertificateIds",
        GetInstalledCertificateIdsRequest,
        GetInstalledCertificateIdsResponse,
        CS_TO_CP,
        "Security",
    ),
    Action(
        "DeleteCertificate",
        DeleteCertificateRequest,
        DeleteCertificateResponse,
        CS_TO_CP,
        "Security",
    ),
    Action("GetLog", GetLogRequest, GetLogResponse, CS_TO_CP, "Security"),
    Action(
        "SignedUpdateFirmware",
        SignedUpdateFirmwareRequest,
        SignedUpdateFirmwareResponse,
        CS_TO_CP,
        "Security",
    ),
)
