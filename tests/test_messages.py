"""
Tests for L{xxterocpp.ocpp.messages}.
"""

import copy
import datetime
import decimal
import json
import pickle
import weakref

import attr

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from xxterocpp.ocpp import _schema, messages as m
from xxterocpp.ocpp._schema import integer, message, string

UTC = datetime.timezone.utc

T1 = "2024-01-01T10:00:00.000Z"
T1_AWARE = datetime.datetime(2024, 1, 1, 10, tzinfo=datetime.timezone.utc)
T2 = "2024-01-01T11:30:15.250Z"

_ID_TAG_INFO = {"expiryDate": T2, "parentIdTag": "FAMILY", "status": "Accepted"}

_METER_VALUE = {
    "timestamp": T1,
    "sampledValue": [
        {
            "value": "1234.5",
            "context": "Sample.Periodic",
            "format": "Raw",
            "measurand": "Energy.Active.Import.Register",
            "phase": "L1",
            "location": "Outlet",
            "unit": "kWh",
        }
    ],
}

_SCHEDULE = {
    "duration": 3600,
    "startSchedule": T1,
    "chargingRateUnit": "A",
    "chargingSchedulePeriod": [
        {"startPeriod": 0, "limit": 16.0, "numberPhases": 3},
        {"startPeriod": 1800, "limit": 21.4, "numberPhases": 1},
    ],
    "minChargingRate": 6.1,
}

_PROFILE = {
    "chargingProfileId": 7,
    "transactionId": 42,
    "stackLevel": 1,
    "chargingProfilePurpose": "TxProfile",
    "chargingProfileKind": "Recurring",
    "recurrencyKind": "Daily",
    "validFrom": T1,
    "validTo": T2,
    "chargingSchedule": _SCHEDULE,
}

_HASH_DATA = {
    "hashAlgorithm": "SHA256",
    "issuerNameHash": "a" * 64,
    "issuerKeyHash": "b" * 64,
    "serialNumber": "0123456789abcdef",
}

#: For every action, a request and a response payload with every optional
#: field filled, in the canonical encoding (so that encode(decode(p)) == p).
FULL_SAMPLES = {
    "Authorize": ({"idTag": "04A1B2C3"}, {"idTagInfo": _ID_TAG_INFO}),
    "BootNotification": (
        {
            "chargePointVendor": "ACME",
            "chargePointModel": "Wallbox 11",
            "chargePointSerialNumber": "SN12345",
            "chargeBoxSerialNumber": "CB12345",
            "firmwareVersion": "1.2.3",
            "iccid": "8949000000000000000",
            "imsi": "262010000000000",
            "meterType": "DZG",
            "meterSerialNumber": "M-1",
        },
        {"status": "Accepted", "currentTime": T1, "interval": 300},
    ),
    "ChangeAvailability": (
        {"connectorId": 0, "type": "Inoperative"},
        {"status": "Scheduled"},
    ),
    "ChangeConfiguration": (
        {"key": "MeterValueSampleInterval", "value": "60"},
        {"status": "RebootRequired"},
    ),
    "ClearCache": ({}, {"status": "Accepted"}),
    "DataTransfer": (
        {"vendorId": "com.acme", "messageId": "Hello", "data": "{\"a\": 1}"},
        {"status": "UnknownMessageId", "data": "nope"},
    ),
    "GetConfiguration": (
        {"key": ["HeartbeatInterval", "Foo"]},
        {
            "configurationKey": [
                {"key": "HeartbeatInterval", "readonly": False, "value": "300"}
            ],
            "unknownKey": ["Foo"],
        },
    ),
    "Heartbeat": ({}, {"currentTime": T2}),
    "MeterValues": (
        {"connectorId": 1, "transactionId": 42, "meterValue": [_METER_VALUE]},
        {},
    ),
    "RemoteStartTransaction": (
        {"connectorId": 1, "idTag": "XXTER", "chargingProfile": _PROFILE},
        {"status": "Accepted"},
    ),
    "RemoteStopTransaction": ({"transactionId": 42}, {"status": "Rejected"}),
    "Reset": ({"type": "Soft"}, {"status": "Accepted"}),
    "StartTransaction": (
        {
            "connectorId": 1,
            "idTag": "04A1B2C3",
            "meterStart": 1000,
            "reservationId": 3,
            "timestamp": T1,
        },
        {"idTagInfo": _ID_TAG_INFO, "transactionId": 42},
    ),
    "StatusNotification": (
        {
            "connectorId": 1,
            "errorCode": "OverVoltage",
            "info": "mains 260 V",
            "status": "SuspendedEVSE",
            "timestamp": T1,
            "vendorId": "com.acme",
            "vendorErrorCode": "E42",
        },
        {},
    ),
    "StopTransaction": (
        {
            "idTag": "04A1B2C3",
            "meterStop": 5000,
            "timestamp": T2,
            "transactionId": 42,
            "reason": "EVDisconnected",
            "transactionData": [_METER_VALUE],
        },
        {"idTagInfo": _ID_TAG_INFO},
    ),
    "UnlockConnector": ({"connectorId": 1}, {"status": "UnlockFailed"}),
    "GetDiagnostics": (
        {
            "location": "ftp://logs.example.com/up",
            "retries": 3,
            "retryInterval": 60,
            "startTime": T1,
            "stopTime": T2,
        },
        {"fileName": "diag.zip"},
    ),
    "DiagnosticsStatusNotification": ({"status": "Uploading"}, {}),
    "FirmwareStatusNotification": ({"status": "InstallationFailed"}, {}),
    "UpdateFirmware": (
        {
            "location": "https://fw.example.com/1.2.4.bin",
            "retries": 2,
            "retrieveDate": T1,
            "retryInterval": 30,
        },
        {},
    ),
    "GetLocalListVersion": ({}, {"listVersion": -1}),
    "SendLocalList": (
        {
            "listVersion": 2,
            "localAuthorizationList": [
                {"idTag": "04A1B2C3", "idTagInfo": _ID_TAG_INFO}
            ],
            "updateType": "Differential",
        },
        {"status": "VersionMismatch"},
    ),
    "CancelReservation": ({"reservationId": 3}, {"status": "Rejected"}),
    "ReserveNow": (
        {
            "connectorId": 0,
            "expiryDate": T2,
            "idTag": "XXTER",
            "parentIdTag": "FAMILY",
            "reservationId": 3,
        },
        {"status": "Occupied"},
    ),
    "ClearChargingProfile": (
        {
            "id": 7,
            "connectorId": 1,
            "chargingProfilePurpose": "TxDefaultProfile",
            "stackLevel": 0,
        },
        {"status": "Unknown"},
    ),
    "GetCompositeSchedule": (
        {"connectorId": 1, "duration": 86400, "chargingRateUnit": "W"},
        {
            "status": "Accepted",
            "connectorId": 1,
            "scheduleStart": T1,
            "chargingSchedule": _SCHEDULE,
        },
    ),
    "SetChargingProfile": (
        {"connectorId": 1, "csChargingProfiles": _PROFILE},
        {"status": "NotSupported"},
    ),
    "TriggerMessage": (
        {"requestedMessage": "StatusNotification", "connectorId": 1},
        {"status": "NotImplemented"},
    ),
    "SecurityEventNotification": (
        {"type": "InvalidTLSVersion", "timestamp": T1, "techInfo": "TLS 1.0"},
        {},
    ),
    "SignCertificate": (
        {"csr": "-----BEGIN CERTIFICATE REQUEST-----\n..."},
        {"status": "Rejected"},
    ),
    "SignedFirmwareStatusNotification": (
        {"status": "InvalidSignature", "requestId": 9},
        {},
    ),
    "LogStatusNotification": ({"status": "UploadFailure", "requestId": 9}, {}),
    "ExtendedTriggerMessage": (
        {"requestedMessage": "SignChargePointCertificate", "connectorId": 0},
        {"status": "Accepted"},
    ),
    "CertificateSigned": (
        {"certificateChain": "-----BEGIN CERTIFICATE-----\n..."},
        {"status": "Accepted"},
    ),
    "InstallCertificate": (
        {
            "certificateType": "CentralSystemRootCertificate",
            "certificate": "-----BEGIN CERTIFICATE-----\n...",
        },
        {"status": "Failed"},
    ),
    "GetInstalledCertificateIds": (
        {"certificateType": "ManufacturerRootCertificate"},
        {"certificateHashData": [_HASH_DATA], "status": "Accepted"},
    ),
    "DeleteCertificate": (
        {"certificateHashData": _HASH_DATA},
        {"status": "NotFound"},
    ),
    "GetLog": (
        {
            "log": {
                "remoteLocation": "https://logs.example.com/up",
                "oldestTimestamp": T1,
                "latestTimestamp": T2,
            },
            "logType": "SecurityLog",
            "requestId": 9,
            "retries": 1,
            "retryInterval": 10,
        },
        {"status": "AcceptedCanceled", "filename": "security.log"},
    ),
    "SignedUpdateFirmware": (
        {
            "retries": 1,
            "retryInterval": 10,
            "requestId": 9,
            "firmware": {
                "location": "https://fw.example.com/signed.bin",
                "retrieveDateTime": T1,
                "installDateTime": T2,
                "signingCertificate": "-----BEGIN CERTIFICATE-----\n...",
                "signature": "c2lnbmF0dXJl",
            },
        },
        {"status": "RevokedCertificate"},
    ),
}

#: The spec's operation tables (OCPP 1.6 section 3.3 and white paper):
#: direction and profile of each action.
SPEC_ACTIONS = {
    "Authorize": ("CP->CS", "Core"),
    "BootNotification": ("CP->CS", "Core"),
    "ChangeAvailability": ("CS->CP", "Core"),
    "ChangeConfiguration": ("CS->CP", "Core"),
    "ClearCache": ("CS->CP", "Core"),
    "DataTransfer": ("both", "Core"),
    "GetConfiguration": ("CS->CP", "Core"),
    "Heartbeat": ("CP->CS", "Core"),
    "MeterValues": ("CP->CS", "Core"),
    "RemoteStartTransaction": ("CS->CP", "Core"),
    "RemoteStopTransaction": ("CS->CP", "Core"),
    "Reset": ("CS->CP", "Core"),
    "StartTransaction": ("CP->CS", "Core"),
    "StatusNotification": ("CP->CS", "Core"),
    "StopTransaction": ("CP->CS", "Core"),
    "UnlockConnector": ("CS->CP", "Core"),
    "GetDiagnostics": ("CS->CP", "FirmwareManagement"),
    "DiagnosticsStatusNotification": ("CP->CS", "FirmwareManagement"),
    "FirmwareStatusNotification": ("CP->CS", "FirmwareManagement"),
    "UpdateFirmware": ("CS->CP", "FirmwareManagement"),
    "GetLocalListVersion": ("CS->CP", "LocalAuthListManagement"),
    "SendLocalList": ("CS->CP", "LocalAuthListManagement"),
    "CancelReservation": ("CS->CP", "Reservation"),
    "ReserveNow": ("CS->CP", "Reservation"),
    "ClearChargingProfile": ("CS->CP", "SmartCharging"),
    "GetCompositeSchedule": ("CS->CP", "SmartCharging"),
    "SetChargingProfile": ("CS->CP", "SmartCharging"),
    "TriggerMessage": ("CS->CP", "RemoteTrigger"),
    "SecurityEventNotification": ("CP->CS", "Security"),
    "SignCertificate": ("CP->CS", "Security"),
    "SignedFirmwareStatusNotification": ("CP->CS", "Security"),
    "LogStatusNotification": ("CP->CS", "Security"),
    "ExtendedTriggerMessage": ("CS->CP", "Security"),
    "CertificateSigned": ("CS->CP", "Security"),
    "InstallCertificate": ("CS->CP", "Security"),
    "GetInstalledCertificateIds": ("CS->CP", "Security"),
    "DeleteCertificate": ("CS->CP", "Security"),
    "GetLog": ("CS->CP", "Security"),
    "SignedUpdateFirmware": ("CS->CP", "Security"),
}


def _meter_values(*samples, **fields):
    """
    A MeterValues payload for connector 1 with one meter value holding
    C{samples}; C{fields} override top-level properties.
    """
    payload = {
        "connectorId": 1,
        "meterValue": [{"timestamp": T1, "sampledValue": list(samples)}],
    }
    payload.update(fields)
    return payload


def _set_charging_profile(*periods):
    """
    A SetChargingProfile payload whose schedule has C{periods}.
    """
    schedule = dict(_SCHEDULE, chargingSchedulePeriod=list(periods))
    return {
        "connectorId": 1,
        "csChargingProfiles": dict(_PROFILE, chargingSchedule=schedule),
    }


def _ocpp_schemas():
    """
    The official 1.6 JSON schemas shipped in the C{ocpp} package, with
    C{jsonschema}; skip the test when either is missing (the Debian stack
    has neither).
    """
    try:
        import importlib.resources

        import jsonschema

        return importlib.resources.files("ocpp.v16") / "schemas", jsonschema
    except ImportError:
        raise SkipTest("needs the ocpp and jsonschema packages")


#: Where our declarations deliberately differ from the 2019-12 schemas.
DELIBERATE_DEVIATIONS = {
    # The spec tables say 1..*; the official schemas forgot minItems.
    "RemoteStartTransaction.chargingProfile.chargingSchedule"
    ".chargingSchedulePeriod: minItems",
    "SetChargingProfile.csChargingProfiles.chargingSchedule"
    ".chargingSchedulePeriod: minItems",
    "GetCompositeScheduleResponse.chargingSchedule.chargingSchedulePeriod: minItems",
    "StopTransaction.transactionData[].sampledValue: minItems",
    # One shared MeterValue type; ocpp-lib added Hertz to MeterValues only.
    "StopTransaction.transactionData[].sampledValue[].unit: enum",
    # format: uri is not checked (ocpp-lib does not either).
    "GetDiagnostics.location: format",
    "UpdateFirmware.location: format",
}


def _schema_differences(cls, node, root, path):
    """
    Compare the declarations of C{cls} with the JSON schema C{node}: property
    names, required set, and per property type, enum (in order), maxLength,
    format, minItems and multipleOf.
    """
    node = _resolve(node, root)
    declared = {json_name: (field, required)
                for _, json_name, field, required in cls._ocpp_schema.fields}
    properties = node.get("properties", {})
    differences = []
    if set(properties) != set(declared):
        differences.append(f"{path}: properties")
    if set(node.get("required", [])) != {j for j, (_, r) in declared.items() if r}:
        differences.append(f"{path}: required")
    for json_name in set(properties) & set(declared):
        differences += _field_differences(
            declared[json_name][0], _resolve(properties[json_name], root), root,
            f"{path}.{json_name}",
        )
    return differences


def _resolve(node, root):
    if "$ref" in node:
        return root["definitions"][node["$ref"].rsplit("/", 1)[1]]
    return node


_JSON_TYPES = {
    _schema._Object: "object",
    _schema._Array: "array",
    _schema._String: "string",
    _schema._Enum: "string",
    _schema._DateTime: "string",
    _schema._Integer: "integer",
    _schema._Decimal: "number",
    _schema._Boolean: "boolean",
}


def _field_differences(field, node, root, path):
    differences = []
    if node.get("type") != _JSON_TYPES[type(field)]:
        differences.append(f"{path}: type")
    expected_format = "date-time" if isinstance(field, _schema._DateTime) else None
    if node.get("format") != expected_format:
        differences.append(f"{path}: format")
    if isinstance(field, _schema._Object):
        differences += _schema_differences(field.cls, node, root, path)
    elif isinstance(field, _schema._Array):
        if node.get("minItems", 0) != field.min_items:
            differences.append(f"{path}: minItems")
        differences += _field_differences(
            field.item, _resolve(node["items"], root), root, path + "[]"
        )
    elif isinstance(field, _schema._Enum):
        if list(field.values) != node.get("enum"):
            differences.append(f"{path}: enum")
    elif isinstance(field, _schema._String):
        if field.max_length != node.get("maxLength"):
            differences.append(f"{path}: maxLength")
    elif isinstance(field, _schema._Decimal):
        if node.get("multipleOf") != 0.1:
            differences.append(f"{path}: multipleOf")
    return differences


def _copy(payload):
    return json.loads(json.dumps(payload))


def _leaves(cls, payload):
    """
    The leaves of a sample C{payload} of C{cls}: C{(path, field)} for each
    scalar value, C{path} the list of keys and indices that reach it.
    """
    for _, json_name, field, _ in cls._ocpp_schema.fields:
        if json_name not in payload:
            continue
        if type(field) is _schema._Object:
            for path, leaf in _leaves(field.cls, payload[json_name]):
                yield [json_name] + path, leaf
        elif type(field) is _schema._Array:
            for index, element in enumerate(payload[json_name]):
                if type(field.item) is _schema._Object:
                    for path, leaf in _leaves(field.item.cls, element):
                        yield [json_name, index] + path, leaf
                else:
                    yield [json_name, index], field.item
        else:
            yield [json_name], field


def _replaced(payload, path, value):
    """
    A copy of C{payload} with the value at C{path} replaced.
    """
    payload = _copy(payload)
    container = payload
    for key in path[:-1]:
        container = container[key]
    container[path[-1]] = value
    return payload


def _json_path(path):
    """
    C{["meterValue", 0, "timestamp"]} as the decoder names it:
    C{"meterValue[0].timestamp"}.
    """
    text = ""
    for key in path:
        text += f"[{key}]" if isinstance(key, int) else f".{key}"
    return text.lstrip(".")


def _sample_leaves(kind):
    """
    C{(cls, payload, path)} for every leaf of type C{kind} in the full
    samples of every request and response.
    """
    for name, action in m.ACTIONS.items():
        for cls, payload in zip((action.request, action.response), FULL_SAMPLES[name]):
            for path, field in _leaves(cls, payload):
                if type(field) is kind:
                    yield cls, payload, path


def _assert_no_none(testcase, instance, where):
    """
    Every attribute of C{instance}, nested ones included, is set.
    """
    for name in m.field_names(type(instance)):
        value = getattr(instance, name)
        testcase.assertIsNot(value, None, f"{where}.{name}")
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            if m.is_message(item):
                _assert_no_none(testcase, item, f"{where}.{name}")


class ActionTableTests(SynchronousTestCase):
    """
    L{m.ACTIONS} lists every OCPP 1.6 action once, with its classes.
    """

    def test_exactly_the_1_6_and_security_extension_actions(self):
        """
        28 actions of the six feature profiles plus 11 of the security white
        paper, keyed by their wire name.
        """
        self.assertEqual(set(m.ACTIONS), set(SPEC_ACTIONS))
        self.assertEqual(len(m.ACTIONS), 39)
        security = [a for a in m.ACTIONS.values() if a.profile == "Security"]
        self.assertEqual(len(security), 11)
        for name, action in m.ACTIONS.items():
            self.assertEqual(action.name, name)

    def test_direction_and_profile_follow_the_spec(self):
        """
        Each action says who sends the CALL and which profile it belongs to;
        DataTransfer goes both ways.
        """
        for name, (direction, profile) in SPEC_ACTIONS.items():
            action = m.ACTIONS[name]
            self.assertEqual(
                (action.direction, action.profile), (direction, profile), name
            )
        self.assertEqual(m.ACTIONS["DataTransfer"].direction, m.BOTH)

    def test_request_and_response_classes_are_named_after_the_action(self):
        """
        C{<Action>Request} and C{<Action>Response}, both message classes,
        exported by the module.
        """
        for name, action in m.ACTIONS.items():
            self.assertIs(getattr(m, name + "Request"), action.request)
            self.assertIs(getattr(m, name + "Response"), action.response)
            self.assertTrue(m.is_message(action.request))
            self.assertTrue(m.is_message(action.response))


class FullSampleTests(SynchronousTestCase):
    """
    A payload with every field filled survives decode and encode unchanged
    and is valid against the official schema.
    """

    def test_every_action_has_a_sample(self):
        """
        The samples below cover the whole table.
        """
        self.assertEqual(set(FULL_SAMPLES), set(m.ACTIONS))

    def test_samples_fill_every_field(self):
        """
        "Full" means no attribute, nested ones included, is left None.
        """
        for name, action in m.ACTIONS.items():
            classes = (action.request, action.response)
            for cls, payload in zip(classes, FULL_SAMPLES[name]):
                instance, warnings = m.decode(cls, _copy(payload))
                _assert_no_none(self, instance, cls.__name__)

    def test_samples_round_trip(self):
        """
        C{encode(decode(p)) == p} for every request and response, without
        warnings.
        """
        for name, action in m.ACTIONS.items():
            classes = (action.request, action.response)
            for cls, payload in zip(classes, FULL_SAMPLES[name]):
                instance, warnings = m.decode(cls, _copy(payload))
                self.assertIsInstance(instance, cls)
                self.assertEqual(warnings, [], cls.__name__)
                self.assertEqual(m.encode(instance), payload, cls.__name__)

    def test_decoded_samples_can_be_rebuilt_from_python(self):
        """
        A decoded full sample passes the checks of the constructor: the Python
        constructor accepts exactly what the wire accepts.
        """
        for name, action in m.ACTIONS.items():
            classes = (action.request, action.response)
            for cls, payload in zip(classes, FULL_SAMPLES[name]):
                instance, _ = m.decode(cls, _copy(payload))
                self.assertEqual(m.replace(instance), instance)
                self.assertEqual(hash(m.replace(instance)), hash(instance))

    def test_samples_are_valid_against_the_ocpp_package_schemas(self):
        """
        The C{ocpp} package ships the official 2019-12 schemas; each sample
        validates against them.
        """
        schemas, jsonschema = _ocpp_schemas()
        for name in m.ACTIONS:
            for suffix, payload in zip(("", "Response"), FULL_SAMPLES[name]):
                # As ocpp-lib does: multipleOf 0.1 only works on decimals.
                schema = json.loads(
                    (schemas / f"{name}{suffix}.json").read_text(),
                    parse_float=decimal.Decimal,
                )
                instance = json.loads(json.dumps(payload), parse_float=decimal.Decimal)
                errors = list(jsonschema.Draft4Validator(schema).iter_errors(instance))
                self.assertEqual(errors, [], f"{name}{suffix}")


class SchemaCorrespondenceTests(SynchronousTestCase):
    """
    The hand-written declarations say what the official schemas say.
    """

    def test_declarations_match_the_official_schemas(self):
        """
        Same properties, required fields, types, enums in order, lengths
        and cardinalities, except the deviations listed (and explained) in
        L{DELIBERATE_DEVIATIONS}.
        """
        schemas, _ = _ocpp_schemas()
        differences = set()
        for name, action in m.ACTIONS.items():
            for suffix, cls in (("", action.request), ("Response", action.response)):
                root = json.loads((schemas / f"{name}{suffix}.json").read_text())
                differences.update(_schema_differences(cls, root, root, name + suffix))
        self.assertEqual(differences, DELIBERATE_DEVIATIONS)


class ErrorCodeTests(SynchronousTestCase):
    """
    Each kind of problem raises L{m.ValidationError} with the CALLERROR code
    of OCPP-J 1.6 table 7.
    """

    def assertCode(self, cls, payload, code, lenient=False):
        error = self.assertRaises(m.ValidationError, m.decode, cls, payload, lenient)
        self.assertEqual(error.code, code)
        return error

    def test_payload_not_an_object_is_formation_violation_even_lenient(self):
        """
        A JSON array, string or null payload cannot be judged field by field.
        """
        for payload in ([], "x", None, 3):
            for lenient in (False, True):
                self.assertCode(
                    m.StopTransactionRequest, payload, m.FORMATION_VIOLATION, lenient
                )

    def test_unknown_property_is_formation_violation(self):
        """
        additionalProperties is false everywhere, nested objects included.
        """
        error = self.assertCode(
            m.HeartbeatRequest, {"foo": 1}, m.FORMATION_VIOLATION
        )
        self.assertIn("foo", error.message)
        payload = _meter_values({"value": "1", "colour": "red"})
        error = self.assertCode(m.MeterValuesRequest, payload, m.FORMATION_VIOLATION)
        self.assertTrue(
            error.message.startswith("meterValue[0].sampledValue[0].colour:"),
            error.message,
        )

    def test_missing_required_property_is_protocol_error(self):
        """
        "Payload for Action is incomplete".
        """
        error = self.assertCode(
            m.BootNotificationRequest, {"chargePointVendor": "ACME"}, m.PROTOCOL_ERROR
        )
        self.assertIn("chargePointModel", error.message)
        error = self.assertCode(
            m.MeterValuesRequest, _meter_values({"unit": "Wh"}), m.PROTOCOL_ERROR
        )
        self.assertIn("meterValue[0].sampledValue[0].value", error.message)

    def test_wrong_json_type_is_type_constraint_violation(self):
        """
        A string or a boolean where an integer belongs, a number where a
        string belongs, a scalar where an object or array belongs.
        """
        for payload in (
            {"connectorId": "1", "type": "Operative"},
            {"connectorId": True, "type": "Operative"},
            {"connectorId": 1.5, "type": "Operative"},
            {"connectorId": None, "type": "Operative"},
            {"connectorId": 1, "type": 1},
        ):
            self.assertCode(
                m.ChangeAvailabilityRequest, payload, m.TYPE_CONSTRAINT_VIOLATION
            )
        self.assertCode(
            m.AuthorizeRequest, {"idTag": 4711}, m.TYPE_CONSTRAINT_VIOLATION
        )
        self.assertCode(
            m.AuthorizeResponse, {"idTagInfo": "Accepted"}, m.TYPE_CONSTRAINT_VIOLATION
        )
        self.assertCode(
            m.MeterValuesRequest,
            {"connectorId": 1, "meterValue": {}},
            m.TYPE_CONSTRAINT_VIOLATION,
        )
        self.assertCode(
            m.GetConfigurationResponse,
            {"configurationKey": [{"key": "K", "readonly": "true"}]},
            m.TYPE_CONSTRAINT_VIOLATION,
        )

    def test_integral_float_is_accepted_for_an_integer(self):
        """
        JSON has one number type: 16.0 is the integer 16.
        """
        instance, warnings = m.decode(
            m.ChangeAvailabilityRequest, {"connectorId": 1.0, "type": "Operative"}
        )
        self.assertEqual(instance.connector_id, 1)
        self.assertIs(type(instance.connector_id), int)
        self.assertEqual(warnings, [])

    def test_enum_value_not_allowed_is_property_constraint_violation(self):
        """
        The message names the field path, the value and the allowed values.
        """
        payload = _meter_values(
            {"value": "1", "unit": "Wh"}, {"value": "2", "unit": "Foo"}
        )
        error = self.assertCode(
            m.MeterValuesRequest, payload, m.PROPERTY_CONSTRAINT_VIOLATION
        )
        self.assertTrue(
            error.message.startswith(
                "meterValue[0].sampledValue[1].unit: 'Foo' is not one of "
            ),
            error.message,
        )
        self.assertIn("Celsius", error.message)
        self.assertCode(
            m.StatusNotificationRequest,
            {"connectorId": 1, "errorCode": "NoError", "status": "Broken"},
            m.PROPERTY_CONSTRAINT_VIOLATION,
        )

    def test_number_out_of_range_is_property_constraint_violation(self):
        """
        A negative connectorId, a limit with two decimals.
        """
        self.assertCode(
            m.StatusNotificationRequest,
            {"connectorId": -1, "errorCode": "NoError", "status": "Available"},
            m.PROPERTY_CONSTRAINT_VIOLATION,
        )
        for limit in (16.05, 4.11):
            error = self.assertCode(
                m.SetChargingProfileRequest,
                _set_charging_profile({"startPeriod": 0, "limit": limit}),
                m.PROPERTY_CONSTRAINT_VIOLATION,
            )
            self.assertIn(
                "csChargingProfiles.chargingSchedule.chargingSchedulePeriod[0].limit",
                error.message,
            )

    def test_one_decimal_limits_are_floats(self):
        """
        21.4 has one decimal despite binary floats; an int limit is held as
        a float.
        """
        instance, _ = m.decode(
            m.SetChargingProfileRequest,
            _set_charging_profile(
                {"startPeriod": 0, "limit": 21.4}, {"startPeriod": 60, "limit": 16}
            ),
        )
        schedule = instance.cs_charging_profiles.charging_schedule
        periods = schedule.charging_schedule_period
        self.assertEqual([p.limit for p in periods], [21.4, 16.0])
        self.assertEqual([type(p.limit) for p in periods], [float, float])

    def test_too_few_array_elements_is_occurence_constraint_violation(self):
        """
        meterValue, sampledValue and chargingSchedulePeriod are 1..*.
        """
        self.assertCode(
            m.MeterValuesRequest,
            {"connectorId": 1, "meterValue": []},
            m.OCCURENCE_CONSTRAINT_VIOLATION,
        )
        error = self.assertCode(
            m.MeterValuesRequest, _meter_values(), m.OCCURENCE_CONSTRAINT_VIOLATION
        )
        self.assertIn("meterValue[0].sampledValue", error.message)
        self.assertCode(
            m.SetChargingProfileRequest,
            _set_charging_profile(),
            m.OCCURENCE_CONSTRAINT_VIOLATION,
        )

    def test_unparseable_date_time_is_property_constraint_violation(self):
        """
        ocpp-lib does not check the format; we do, since we use the time.
        """
        for text in ("yesterday", "2024-02-30T00:00:00Z", "2024-01-01", ""):
            self.assertCode(
                m.HeartbeatResponse,
                {"currentTime": text},
                m.PROPERTY_CONSTRAINT_VIOLATION,
            )
        self.assertCode(
            m.HeartbeatResponse,
            {"currentTime": 1704103200},
            m.TYPE_CONSTRAINT_VIOLATION,
        )

    def test_strict_mode_raises_the_first_problem(self):
        """
        The payload's structure is judged before its values.
        """
        self.assertCode(
            m.ChangeAvailabilityRequest,
            {"connectorId": "x", "extra": 1},
            m.FORMATION_VIOLATION,
        )
        self.assertCode(
            m.ChangeAvailabilityRequest,
            {"connectorId": "x"},
            m.TYPE_CONSTRAINT_VIOLATION,
        )

    def test_validation_error_carries_code_and_message(self):
        """
        C{str()} gives both, for the log line.
        """
        error = m.ValidationError(m.PROTOCOL_ERROR, "idTag: required property missing")
        self.assertEqual(error.code, "ProtocolError")
        self.assertEqual(error.message, "idTag: required property missing")
        self.assertEqual(str(error), "ProtocolError: idTag: required property missing")


class HostileValueTests(SynchronousTestCase):
    """
    Values no charger sends by mistake: integers beyond 64 bits, strings
    that are not Unicode text. Refused in every field, as of the wrong type.
    """

    def assertCode(self, cls, payload, code, lenient=False):
        error = self.assertRaises(m.ValidationError, m.decode, cls, payload, lenient)
        self.assertEqual(error.code, code)
        return error

    def test_integers_beyond_64_bits_in_every_integer_field(self):
        """
        2**63, -2**63 - 1 and an integral float beyond the range are a
        TypeConstraintViolation naming the field; lenient decoding sets the
        field to None.
        """
        leaves = list(_sample_leaves(_schema._Integer))
        self.assertGreater(len(leaves), 40)
        for cls, payload, path in leaves:
            for huge in (2**63, -(2**63) - 1, 1e19, 10**400):
                error = self.assertCode(cls, _replaced(payload, path, huge),
                                        m.TYPE_CONSTRAINT_VIOLATION)
                self.assertTrue(error.message.startswith(_json_path(path) + ": "), error.message)
                self.assertIn("64-bit", error.message)
            instance, warnings = m.decode(cls, _replaced(payload, path, 2**63), lenient=True)
            self.assertTrue(any("64-bit" in w for w in warnings), warnings)

    def test_64_bit_bounds_themselves_are_integers(self):
        """
        The range is signed 64-bit, both ends included.
        """
        for value in (2**63 - 1, -(2**63)):
            instance, warnings = m.decode(
                m.StartTransactionRequest,
                {"connectorId": 1, "idTag": "A", "meterStart": value, "timestamp": T1})
            self.assertEqual(instance.meter_start, value)
        self.assertRaises(ValueError, m.StartTransactionResponse,
                          id_tag_info=m.IdTagInfo(status="Accepted"), transaction_id=2**63)

    def test_integer_beyond_64_bits_for_a_decimal(self):
        """
        A limit of 10**400 cannot even be a float: TypeConstraintViolation,
        not an OverflowError.
        """
        for limit in (10**400, 2**63):
            error = self.assertCode(
                m.SetChargingProfileRequest,
                _set_charging_profile({"startPeriod": 0, "limit": limit}),
                m.TYPE_CONSTRAINT_VIOLATION)
            self.assertIn("chargingSchedulePeriod[0].limit", error.message)

    def test_lone_surrogates_in_every_string_field(self):
        """
        A lone high or low surrogate (what C{"\\ud800"} in JSON decodes to)
        in any string, of any length, is a TypeConstraintViolation naming
        the field, and the value is shown escaped; lenient decoding sets the
        field to None.
        """
        leaves = list(_sample_leaves(_schema._String))
        self.assertGreater(len(leaves), 40)
        for cls, payload, path in leaves:
            for text in ("Evil\ud800", "\udfff", "\u00e9" * 300 + "\udc00"):
                error = self.assertCode(cls, _replaced(payload, path, text),
                                        m.TYPE_CONSTRAINT_VIOLATION)
                self.assertTrue(error.message.startswith(_json_path(path) + ": "), error.message)
                self.assertIn("lone surrogate", error.message)
                error.message.encode("utf-8")
            instance, warnings = m.decode(cls, _replaced(payload, path, "x\ud800"),
                                          lenient=True)
            self.assertTrue(any("lone surrogate" in w for w in warnings), warnings)
            "".join(warnings).encode("utf-8")

    def test_surrogate_pairs_and_other_unicode_are_text(self):
        """
        An escaped pair is the one character it stands for; accented letters
        and symbols are ordinary text.
        """
        for vendor in (json.loads('"\\ud83d\\ude00"'), "Gr\u00fcn", "\u20ac"):
            instance, warnings = m.decode(
                m.BootNotificationRequest,
                {"chargePointVendor": vendor, "chargePointModel": "M"})
            self.assertEqual(instance.charge_point_vendor, vendor)
            self.assertEqual(warnings, [])

    def test_unknown_property_names_are_shown_safely(self):
        """
        A name that is long, not printable or not Unicode text is quoted and
        cut short in the message (which may become a CALLERROR).
        """
        for name in ("x\ud800", "a" * 5000, "new\nline"):
            error = self.assertCode(m.HeartbeatRequest, {name: 1}, m.FORMATION_VIOLATION)
            self.assertLess(len(error.message), 100)
            self.assertNotIn("\n", error.message)
            error.message.encode("utf-8")
        error = self.assertCode(m.HeartbeatRequest, {"colour": 1}, m.FORMATION_VIOLATION)
        self.assertEqual(error.message, "colour: unknown property")


class ToleranceTests(SynchronousTestCase):
    """
    What real chargers get wrong is a warning, not a CALLERROR.
    """

    def test_over_long_strings_are_kept_with_a_warning(self):
        """
        Over-long idTags, info texts and serial numbers are common
        (lbbrhzn/ocpp #2030, #1803).
        """
        tag = "04A1B2C3D4E5F60718293A4B"
        instance, warnings = m.decode(
            m.StartTransactionRequest,
            {"connectorId": 1, "idTag": tag, "meterStart": 0, "timestamp": T1},
        )
        self.assertEqual(instance.id_tag, tag)
        self.assertEqual(len(warnings), 1)
        self.assertIn("idTag", warnings[0])
        self.assertIn("20", warnings[0])
        instance, warnings = m.decode(
            m.StatusNotificationRequest,
            {
                "connectorId": 1,
                "errorCode": "OtherError",
                "status": "Faulted",
                "info": "x" * 80,
            },
        )
        self.assertEqual(instance.info, "x" * 80)
        self.assertEqual([w.split(":")[0] for w in warnings], ["info"])

    def test_strings_beyond_four_times_their_maximum_are_cut(self):
        """
        An info text of 60,000 characters (maximum 50) is kept as its first
        200 and a mark that no real value holds, in nested fields too.
        """
        self.assertEqual(_schema.KEPT_LENGTH_FACTOR, 4)
        instance, warnings = m.decode(
            m.StatusNotificationRequest,
            {"connectorId": 1, "errorCode": "OtherError", "status": "Faulted",
             "info": "\u00e9" * 60_000, "vendorErrorCode": "E" * 200},
        )
        self.assertEqual(instance.info, "\u00e9" * 200 + _schema.CUT_MARK)
        self.assertEqual(instance.vendor_error_code, "E" * 200)
        self.assertIn("info: 60000 characters, longer than the maximum 50; cut to 200",
                      warnings)
        response, _ = m.decode(m.GetConfigurationResponse, {"configurationKey": [
            {"key": "K" * 1000, "readonly": True, "value": "v" * 5000}]}, lenient=True)
        [kv] = response.configuration_key
        self.assertEqual((len(kv.key), len(kv.value)), (201, 2001))

    def test_timestamp_with_offset_is_converted_to_utc(self):
        """
        +01:00 and -05:30 offsets become UTC.
        """
        expected = datetime.datetime(2024, 1, 1, 10, 0, tzinfo=UTC)
        for text in (
            "2024-01-01T11:00:00+01:00",
            "2024-01-01T04:30:00-05:30",
            "2024-01-01T10:00:00Z",
        ):
            instance, warnings = m.decode(m.HeartbeatResponse, {"currentTime": text})
            self.assertEqual(instance.current_time, expected)
            self.assertEqual(instance.current_time.utcoffset(), datetime.timedelta(0))
            self.assertEqual(warnings, [])

    def test_timestamp_without_zone_is_assumed_utc_with_a_warning(self):
        """
        Growatt sends local time without zone; we assume UTC and say so.
        """
        instance, warnings = m.decode(
            m.HeartbeatResponse, {"currentTime": "2024-01-01T10:00:00"}
        )
        self.assertEqual(
            instance.current_time, datetime.datetime(2024, 1, 1, 10, 0, tzinfo=UTC)
        )
        self.assertEqual(len(warnings), 1)
        self.assertIn("currentTime", warnings[0])
        self.assertIn("UTC", warnings[0])

    def test_fractional_seconds_are_accepted(self):
        """
        Any number of fractional digits; beyond microseconds is cut.
        """
        for text, micro in [
            ("2024-01-01T10:00:00.5Z", 500000),
            ("2024-01-01T10:00:00.123Z", 123000),
            ("2024-01-01T10:00:00.1234567Z", 123456),
        ]:
            instance, _ = m.decode(m.HeartbeatResponse, {"currentTime": text})
            self.assertEqual(instance.current_time.microsecond, micro)

    def test_celcius_celsius_kwh_and_hertz_are_units(self):
        """
        Both spellings of Celsius (the 1.6 typo stays valid), kWh, and the
        non-standard Hertz some chargers send for Frequency.
        """
        payload = _meter_values(
            {"value": "21.5", "measurand": "Temperature", "unit": "Celcius"},
            {"value": "21.5", "measurand": "Temperature", "unit": "Celsius"},
            {"value": "12.3", "unit": "kWh"},
            {"value": "50.0", "measurand": "Frequency", "unit": "Hertz"},
        )
        instance, warnings = m.decode(m.MeterValuesRequest, payload)
        units = [s.unit for s in instance.meter_value[0].sampled_value]
        self.assertEqual(units, ["Celcius", "Celsius", "kWh", "Hertz"])
        self.assertEqual(warnings, [])
        self.assertIn("Celcius", m.UNIT_OF_MEASURE)
        self.assertIn("Celsius", m.UNIT_OF_MEASURE)


class DateTimeTests(SynchronousTestCase):
    """
    The usual UTC timestamps take a fast path (the C ISO parser); every
    string must decode exactly as the full RFC 3339 reading does.
    """

    def decode(self, raw):
        return _schema._DateTime().decode(raw, "t", False, [])

    def test_usual_forms(self):
        for raw, micro in (("2026-11-24T05:00:00Z", 0), ("2026-11-24T05:00:00.1Z", 100000),
                           ("2026-11-24T05:00:00.123Z", 123000),
                           ("2026-11-24T05:00:00.123456Z", 123456),
                           ("2026-11-24T05:00:00.1234567Z", 123456)):
            value = self.decode(raw)
            self.assertEqual(value, datetime.datetime(2026, 11, 24, 5, 0, 0, micro, UTC), raw)
            self.assertIs(value.tzinfo, UTC)

    def test_near_misses_are_refused(self):
        # Shapes the C parser would take (it ignores digits past the sixth,
        # accepts "." without digits and minutes-only times); RFC 3339 not.
        for raw in ("2026-11-24T05:00:00.Z", "2026-11-24T05:00.00Z", "2026-11-24T05000100Z",
                    "2026-11-24T05:00:00.123456:89Z", "2026-11-24T05:00:00.12345678 Z",
                    "2026-11-24T05:00:60Z", "2026-02-30T05:00:00Z", "2026-11-24T24:00:00Z"):
            with self.assertRaises(_schema.ValidationError, msg=raw) as caught:
                self.decode(raw)
            self.assertEqual(caught.exception.code, m.PROPERTY_CONSTRAINT_VIOLATION)


class LenientTests(SynchronousTestCase):
    """
    C{lenient=True}, for StopTransaction and MeterValues which must always
    be acknowledged.
    """

    def test_missing_required_fields_become_none(self):
        """
        A meter-less StopTransaction (Phoenix CHARX FreeMode) still decodes.
        """
        instance, warnings = m.decode(
            m.StopTransactionRequest, {"timestamp": T1}, lenient=True
        )
        self.assertIsNone(instance.meter_stop)
        self.assertIsNone(instance.transaction_id)
        self.assertEqual(
            instance.timestamp, datetime.datetime(2024, 1, 1, 10, tzinfo=UTC)
        )
        self.assertEqual(len(warnings), 2)
        self.assertEqual(m.encode(instance), {"timestamp": T1})

    def test_bad_values_become_none_with_a_warning(self):
        """
        A bad enum or type in a sample clears that field only.
        """
        payload = _meter_values(
            {"value": "1", "unit": "Foo"},
            {"value": "2", "unit": "Wh"},
            transactionId="7",
        )
        instance, warnings = m.decode(m.MeterValuesRequest, payload, lenient=True)
        samples = instance.meter_value[0].sampled_value
        self.assertEqual(
            [(s.value, s.unit) for s in samples], [("1", None), ("2", "Wh")]
        )
        self.assertIsNone(instance.transaction_id)
        self.assertEqual(len(warnings), 2)
        self.assertTrue(
            any(w.startswith("meterValue[0].sampledValue[0].unit:") for w in warnings)
        )

    def test_bad_array_elements_are_dropped(self):
        """
        An element that is not an object is dropped, the rest is kept.
        """
        payload = {
            "meterStop": 10,
            "timestamp": T1,
            "transactionId": 1,
            "transactionData": ["junk", _METER_VALUE],
        }
        instance, warnings = m.decode(m.StopTransactionRequest, payload, lenient=True)
        self.assertEqual(len(instance.transaction_data), 1)
        self.assertEqual(len(warnings), 1)
        self.assertIn("transactionData[0]", warnings[0])
        self.assertIn("dropped", warnings[0])

    def test_bad_nested_object_and_short_array_become_none(self):
        """
        A nested object of the wrong type, and an array that is (or becomes)
        too short.
        """
        instance, warnings = m.decode(
            m.StopTransactionResponse, {"idTagInfo": []}, lenient=True
        )
        self.assertIsNone(instance.id_tag_info)
        self.assertEqual(len(warnings), 1)
        instance, warnings = m.decode(
            m.MeterValuesRequest, {"connectorId": 1, "meterValue": [3]}, lenient=True
        )
        self.assertIsNone(instance.meter_value)
        self.assertEqual(len(warnings), 2)

    def test_unknown_properties_are_ignored_with_a_warning(self):
        """
        Vendor junk next to the schema's fields.
        """
        payload = _meter_values({"value": "1", "vendorThing": 3}, vendor="x")
        instance, warnings = m.decode(m.MeterValuesRequest, payload, lenient=True)
        self.assertEqual(instance.meter_value[0].sampled_value[0].value, "1")
        self.assertEqual(len(warnings), 2)
        self.assertTrue(all("unknown property" in w for w in warnings))


class PythonConstructionTests(SynchronousTestCase):
    """
    Messages built in Python (the ones we send) are checked as strictly as
    the schema.
    """

    def test_valid_message_encodes(self):
        """
        Aware datetimes in any zone are sent in UTC with milliseconds; None
        fields are omitted; lists become tuples.
        """
        cet = datetime.timezone(datetime.timedelta(hours=1))
        response = m.BootNotificationResponse(
            status="Accepted",
            current_time=datetime.datetime(2024, 1, 1, 11, 0, 0, 123456, tzinfo=cet),
            interval=300,
        )
        self.assertEqual(
            m.encode(response),
            {
                "status": "Accepted",
                "currentTime": "2024-01-01T10:00:00.123Z",
                "interval": 300,
            },
        )
        request = m.GetConfigurationRequest(key=["HeartbeatInterval"])
        self.assertEqual(request.key, ("HeartbeatInterval",))
        self.assertEqual(m.encode(request), {"key": ["HeartbeatInterval"]})
        self.assertEqual(m.encode(m.GetConfigurationRequest()), {})
        same = m.GetConfigurationRequest(key=("HeartbeatInterval",))
        self.assertEqual(hash(request), hash(same))

    def test_limits_are_held_as_floats_and_sent_with_one_decimal(self):
        """
        An int limit becomes a float; binary noise does not reach the wire.
        """
        period = m.ChargingSchedulePeriod(start_period=0, limit=16)
        self.assertEqual((period.limit, type(period.limit)), (16.0, float))
        period = m.ChargingSchedulePeriod(start_period=0, limit=0.1 * 163)
        self.assertEqual(m.encode(period), {"startPeriod": 0, "limit": 16.3})

    def test_wrong_values_raise(self):
        """
        Wrong types, missing required fields, bad enums, out-of-range
        numbers, over-long strings and naive datetimes.
        """
        naive = datetime.datetime(2024, 1, 1)
        cases = [
            (TypeError, m.AuthorizeRequest, {"id_tag": 4711}),
            (TypeError, m.AuthorizeRequest, {}),
            (TypeError, m.AuthorizeRequest, {"id_tag": None}),
            (ValueError, m.AuthorizeRequest, {"id_tag": "x" * 21}),
            (ValueError, m.ResetRequest, {"type": "Medium"}),
            (TypeError, m.UnlockConnectorRequest, {"connector_id": True}),
            (ValueError, m.UnlockConnectorRequest, {"connector_id": -1}),
            (ValueError, m.HeartbeatResponse, {"current_time": naive}),
            (TypeError, m.HeartbeatResponse, {"current_time": T1}),
            (ValueError, m.ChargingSchedulePeriod, {"start_period": 0, "limit": 16.05}),
            (TypeError, m.AuthorizeResponse, {"id_tag_info": {"status": "Accepted"}}),
            (ValueError, m.MeterValuesRequest, {"connector_id": 1, "meter_value": []}),
            (
                TypeError,
                m.MeterValuesRequest,
                {"connector_id": 1, "meter_value": ["x"]},
            ),
        ]
        for exception, cls, kwargs in cases:
            self.assertRaises(exception, cls, **kwargs)

    def test_messages_are_frozen(self):
        """
        A message is a value: it cannot be changed after construction.
        """
        request = m.ResetRequest(type="Soft")
        self.assertRaises(
            attr.exceptions.FrozenInstanceError, setattr, request, "type", "Hard"
        )

    def test_construction_is_keyword_only_and_exact(self):
        """
        Positional arguments, unknown names and a missing required one are
        refused with L{TypeError}; an optional one defaults to None. The
        first instance of a class (its __init__ compiled then) and the next
        are built alike.
        """
        self.assertRaises(TypeError, m.ResetRequest, "Soft")
        self.assertRaises(TypeError, m.ResetRequest, type="Soft", kind="Hard")
        self.assertRaises(TypeError, m.ResetRequest)
        first = m.StopTransactionRequest(meter_stop=5, timestamp=T1_AWARE, transaction_id=1)
        second = m.StopTransactionRequest(meter_stop=5, timestamp=T1_AWARE, transaction_id=1)
        self.assertEqual(first, second)
        self.assertIsNone(second.reason)
        self.assertRaises(TypeError, m.StopTransactionRequest, meter_stop=5)

    def test_messages_cannot_lose_or_gain_attributes(self):
        """
        No attribute can be deleted or added, and a message holds no
        C{__dict__}; a weak reference to one can be made.
        """
        request = m.ResetRequest(type="Soft")
        self.assertRaises(attr.exceptions.FrozenInstanceError, delattr, request, "type")
        self.assertRaises(AttributeError, setattr, request, "other", 1)
        self.assertFalse(hasattr(request, "__dict__"))
        self.assertIs(weakref.ref(request)(), request)

    def test_copied_and_pickled_as_they_are(self):
        """
        copy, deepcopy and pickle give an equal message, also one decoded
        leniently with None in a required field (which __init__ refuses).
        """
        request = m.StopTransactionRequest(meter_stop=5, timestamp=T1_AWARE, transaction_id=1)
        lenient, _ = m.decode(m.StopTransactionRequest, {"meterStop": 5}, lenient=True)
        for message in (request, lenient):
            self.assertEqual(copy.copy(message), message)
            self.assertEqual(copy.deepcopy(message), message)
            self.assertEqual(pickle.loads(pickle.dumps(message)), message)
        self.assertIsNone(copy.deepcopy(lenient).timestamp)

    def test_replace_builds_a_checked_copy(self):
        """
        L{m.replace} changes the named attributes and checks the result as
        the constructor does; the original stays as it was.
        """
        period = m.ChargingSchedulePeriod(start_period=0, limit=16.0)
        changed = m.replace(period, limit=10)
        self.assertEqual((changed.limit, type(changed.limit)), (10.0, float))
        self.assertEqual(period.limit, 16.0)
        self.assertEqual(m.replace(period), period)
        self.assertRaises(ValueError, m.replace, period, limit=-1.0)
        self.assertRaises(TypeError, m.replace, period, watts=1.0)

    def test_introspection(self):
        """
        L{m.is_message} tells message classes and instances from anything
        else; L{m.field_names} lists the attributes in declaration order.
        """
        self.assertTrue(m.is_message(m.IdTagInfo))
        self.assertTrue(m.is_message(m.IdTagInfo(status="Accepted")))
        self.assertFalse(m.is_message(m.Action))
        self.assertFalse(m.is_message({"status": "Accepted"}))
        self.assertEqual(m.field_names(m.IdTagInfo), ("expiry_date", "parent_id_tag", "status"))


class DeclarationTests(SynchronousTestCase):
    """
    The declaration helpers derive JSON names, and allow overriding them.
    """

    def test_json_names_are_camel_case_unless_overridden(self):
        """
        C{name=} wins over the derived camelCase.
        """

        @message
        class Sample:
            connector_id: int = integer()
            vendor_text: str = string(10, name="VendorText")

        instance, warnings = m.decode(Sample, {"connectorId": 1, "VendorText": "x"})
        self.assertEqual((instance.connector_id, instance.vendor_text), (1, "x"))
        self.assertEqual(m.encode(instance), {"connectorId": 1, "VendorText": "x"})
        self.assertRaises(
            m.ValidationError, m.decode, Sample, {"connectorId": 1, "vendorText": "x"}
        )

    def test_enums_are_in_schema_order(self):
        """
        The JSON-schema order, not the spec tables' alphabetical one (the
        KNX numbering differs from both and is kept by the bridge).
        """
        self.assertEqual(
            m.CHARGE_POINT_STATUS,
            (
                "Available", "Preparing", "Charging", "SuspendedEVSE", "SuspendedEV",
                "Finishing", "Reserved", "Unavailable", "Faulted",
            ),
        )
        self.assertEqual(
            m.CHARGE_POINT_ERROR_CODE[-3:],
            ("UnderVoltage", "OverVoltage", "WeakSignal"),
        )
        self.assertEqual(len(m.CHARGE_POINT_ERROR_CODE), 16)
        self.assertEqual(len(m.MEASURAND), 22)
        self.assertEqual(m.READING_CONTEXT[-1], "Other")

    def test_every_attribute_is_declared_with_a_helper(self):
        """
        An annotated attribute without a helper, or a helper without an
        annotation, is a mistake in the table: refused when the class is
        built.
        """

        def undeclared():
            @message
            class Sample:
                connector_id: int = 1

        def unannotated():
            @message
            class Sample:
                connector_id = integer()

        self.assertRaises(TypeError, undeclared)
        self.assertRaises(TypeError, unannotated)


class ErrorCodeConstantTests(SynchronousTestCase):
    """
    The CALLERROR codes use the 1.6 spellings; received 2.0.1 spellings are
    mapped back.
    """

    def test_codes_use_the_1_6_spelling(self):
        """
        FormationViolation and OccurenceConstraintViolation, typos included.
        """
        self.assertEqual(m.FORMATION_VIOLATION, "FormationViolation")
        self.assertEqual(
            m.OCCURENCE_CONSTRAINT_VIOLATION, "OccurenceConstraintViolation"
        )
        self.assertEqual(
            set(m.ERROR_CODES),
            {
                "NotImplemented", "NotSupported", "InternalError", "ProtocolError",
                "SecurityError", "FormationViolation", "PropertyConstraintViolation",
                "OccurenceConstraintViolation", "TypeConstraintViolation",
                "GenericError",
            },
        )

    def test_normalize_error_code_maps_2_0_1_spellings(self):
        """
        Firmware and ocpp-lib send FormatViolation and
        OccurrenceConstraintViolation; other codes pass unchanged.
        """
        self.assertEqual(
            m.normalize_error_code("FormatViolation"), m.FORMATION_VIOLATION
        )
        self.assertEqual(
            m.normalize_error_code("OccurrenceConstraintViolation"),
            m.OCCURENCE_CONSTRAINT_VIOLATION,
        )
        for code in m.ERROR_CODES + ("SomethingElse",):
            self.assertEqual(m.normalize_error_code(code), code)
