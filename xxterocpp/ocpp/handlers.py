# -*- test-case-name: tests.test_handlers -*-
"""
The CALLs a charger sends, translated for the domain: L{HANDLERS} holds one
handler per charger-to-central-system action of L{messages.ACTIONS}.

A handler turns the decoded request into a call of the
L{CentralSystem<xxterocpp.domain.central.CentralSystem>} with plain values
and the domain's answer (a value, or a Deferred of one) into the response
message. What is OCPP only (field names, default values of the protocol,
the spelling of meter values) stays here; a CALLERROR is raised here or by
the RPC layer, never by the domain.
"""

from datetime import datetime, timezone
from functools import partial

from twisted.internet import defer, task
from twisted.logger import Logger

from xxterocpp.domain.meter import MeterReading
from xxterocpp.domain.model import Boot
from xxterocpp.ocpp import messages as m
from xxterocpp.ocpp.rpc import CallError

log = Logger()

#: How many connectors a charger may name while its NumberOfConnectors is
#: not known (or not believable: over L{MAX_REPORTED_CONNECTORS}); each one
#: named is state kept and shown.
DEFAULT_CONNECTORS = 32

#: The most connectors a charger's NumberOfConnectors is believed up to.
MAX_REPORTED_CONNECTORS = 255


def dispatch(central, charger_id, action, request, relay=None):
    """
    Handle a charger's CALL.

    @param request: the decoded request message of C{action}.
    @param relay: optional adapter between the charger and the domain (the
        back office, L{xxterocpp.upstream}):
        C{relay(charger_id, action, request, local)} returns the response
        (or a Deferred of it), where C{local(request)} is the handler's.
        It may act before the domain answers and make the answer wait.
    @return: the response message, or a Deferred of it.
    @raise LookupError: for a charger no longer configured (the RPC layer
        answers with an InternalError CALLERROR).
    """
    if charger_id not in central.chargers:
        raise LookupError(f"{charger_id} is no longer configured")
    if relay is not None:
        return relay(charger_id, action, request, partial(HANDLERS[action], central, charger_id))
    return HANDLERS[action](central, charger_id, request)


def dispatcher(central, charger_id):
    """
    @return: the C{dispatch(action, request)} of one charger's
        L{OcppSession<xxterocpp.ocpp.rpc.OcppSession>}.
    """
    return partial(dispatch, central, charger_id)


def id_tag_info(authorization):
    """
    @param authorization: a domain L{Authorization}, or None.
    @return: the C{IdTagInfo} telling it, or None.
    """
    if authorization is None:
        return None
    return m.IdTagInfo(status=authorization.status, parent_id_tag=authorization.parent,
                       expiry_date=authorization.expiry)


def connector_count(charger):
    """
    @param charger: a L{Charger<xxterocpp.domain.model.Charger>}.
    @return: how many connectors it says it has (NumberOfConnectors, as
        GetConfiguration reported it), else L{DEFAULT_CONNECTORS}.
    """
    entry = charger.configuration.get("NumberOfConnectors")
    if entry is None:
        # Not reported (asked on every MeterValues: no exception for it).
        return DEFAULT_CONNECTORS
    try:
        reported = int(entry.value)
    except (AttributeError, TypeError, ValueError):
        return DEFAULT_CONNECTORS
    return reported if 1 <= reported <= MAX_REPORTED_CONNECTORS else DEFAULT_CONNECTORS


def _has_connector(central, charger_id, connector_id):
    # 0 (the charger itself) is the message schema's to allow; a configured
    # connector always exists.
    return (connector_id <= connector_count(central.chargers[charger_id])
            or central.config.charger(charger_id, connector_id) is not None)


def _existing_connector(central, charger_id, connector_id):
    """
    @raise CallError: PropertyConstraintViolation for a connector the
        charger does not have: above its L{connector_count}, not configured.
    """
    if not _has_connector(central, charger_id, connector_id):
        raise CallError(m.PROPERTY_CONSTRAINT_VIOLATION,
                        f"connectorId {connector_id}: the charger has"
                        f" {connector_count(central.chargers[charger_id])} connectors")


def _then(answer, respond):
    # The domain answers at once or (when it waits for the store) later.
    if isinstance(answer, defer.Deferred):
        return answer.addCallback(respond)
    return respond(answer)


# -- meter values ------------------------------------------------------------

_PHASES = {"L1": "L1", "L2": "L2", "L3": "L3", "L1-N": "L1", "L2-N": "L2", "L3-N": "L3"}

_NO_TIME = datetime.min.replace(tzinfo=timezone.utc)

#: The largest meter reading believed (Wh, W, A): 2**53, beyond which a
#: float no longer holds whole numbers; a real register stays far below.
MAX_READING = 2.0 ** 53

#: The measurands read in Wh and W, and the unit of a thousand of them.
_KILO = {"Energy.Active.Import.Register": "kWh", "Power.Active.Import": "kW"}


def _meter_value_time(mv):
    return mv.timestamp or _NO_TIME


def read_meter_values(meter_values):
    """
    Reduce MeterValue elements to the readings the domain tracks: the energy
    import register in Wh, the current per phase, the power in W, the
    current offered; the latest element wins.

    @return: a L{MeterReading}, or None when nothing usable was sent.
    """
    timestamp = energy = currents = power = offered = None
    used = False
    if len(meter_values) == 1:
        ordered = meter_values if meter_values[0] is not None else ()
    else:
        ordered = sorted((mv for mv in meter_values if mv is not None), key=_meter_value_time)
    for mv in ordered:
        phase_currents, power_phases, energy_phases = {}, {}, {}
        for sv in mv.sampled_value or ():
            if sv is None or sv.format == "SignedData":
                continue
            try:
                # float() itself ignores surrounding white space.
                value = float(sv.value)
            except (TypeError, ValueError):
                continue
            measurand = sv.measurand or "Energy.Active.Import.Register"
            phase = _PHASES.get(sv.phase) if sv.phase else None
            if sv.phase and phase is None:
                # "N" or line-to-line phases carry no charging current.
                continue
            if measurand in _KILO and sv.unit == _KILO[measurand]:
                value *= 1000
            if not -MAX_READING <= value <= MAX_READING:
                # Also NaN: float() reads "NaN", "Infinity" and "1e400",
                # which would poison the energy of a session, the JSON of
                # the status page and every sum after them.
                continue
            if measurand == "Energy.Active.Import.Register":
                if phase:
                    energy_phases[phase] = value
                else:
                    energy = value
            elif measurand == "Current.Import":
                phase_currents[phase or "L1"] = value
            elif measurand == "Power.Active.Import":
                if phase:
                    power_phases[phase] = value
                else:
                    power = value
            elif measurand == "Current.Offered":
                offered = value
            else:
                continue
            used = True
            timestamp = mv.timestamp
        if phase_currents:
            currents = phase_currents
        if power_phases and power is None:
            power = sum(power_phases.values())
        if energy_phases and energy is None:
            energy = sum(energy_phases.values())
    if not used:
        return None
    return MeterReading(timestamp, energy, currents, power, offered)


# -- the handlers --------------------------------------------------------------


def authorize(central, charger_id, req):
    """
    Authorize: the domain's verdict on the idTag at any of the charger's points.
    """
    authorization = central.authorize(charger_id, None, req.id_tag)
    # A line per Authorize, within the charger's budget of lines: a charger
    # may send a hundred a second.
    central.chargers[charger_id].chatter(
        log, "info", central.clock.seconds(), "{id}: Authorize {tag}: {status}",
        id=charger_id, tag=req.id_tag, status=authorization.status)
    return m.AuthorizeResponse(id_tag_info=id_tag_info(authorization))


def boot_notification(central, charger_id, req):
    """
    BootNotification: the boot data for the domain, always Accepted.
    """
    central.reports.booted(charger_id, Boot(
        vendor=req.charge_point_vendor, model=req.charge_point_model,
        serial=req.charge_point_serial_number or req.charge_box_serial_number,
        firmware=req.firmware_version, meter_type=req.meter_type,
        meter_serial=req.meter_serial_number, iccid=req.iccid, imsi=req.imsi))
    return m.BootNotificationResponse(status="Accepted", current_time=central.now(),
                                      interval=central.config.ocpp.heartbeat_interval)


def data_transfer(central, charger_id, req):
    """
    DataTransfer: no vendor extension is understood.
    """
    central.chargers[charger_id].chatter(
        log, "info", central.clock.seconds(),
        "{id}: DataTransfer from vendor {vendor!r} ({message!r}) not understood",
        id=charger_id, vendor=req.vendor_id, message=req.message_id)
    return m.DataTransferResponse(status="UnknownVendorId")


def heartbeat(central, charger_id, req):
    """
    Heartbeat: our time (the frame itself told the domain the charger lives).
    """
    return m.HeartbeatResponse(current_time=central.now())


#: Messages are immutable: the answer of the busiest call is made once.
_METER_VALUES_ACKNOWLEDGED = m.MeterValuesResponse()


def meter_values(central, charger_id, req):
    """
    MeterValues: the reading for the domain; always acknowledged.
    """
    if req.meter_value and req.connector_id is not None and _has_connector(
            central, charger_id, req.connector_id):
        # A reading for a connector the charger does not have is dropped,
        # not refused: MeterValues is always acknowledged.
        reading = read_meter_values(req.meter_value)
        if reading is not None:
            # Connector 0 (or none, decoded leniently) is the charger's main
            # meter. Straight to the book: this is the busiest call.
            central.book.meter_values(charger_id, req.connector_id or None,
                                      req.transaction_id, reading)
    return _METER_VALUES_ACKNOWLEDGED


def security_event_notification(central, charger_id, req):
    """
    SecurityEventNotification: kept by the domain.
    """
    # White paper A04.FR.03: every security event is confirmed.
    central.reports.security_event(charger_id, req.timestamp, req.type, req.tech_info)
    return m.SecurityEventNotificationResponse()


def sign_certificate(central, charger_id, req):
    """
    SignCertificate: Accepted when the domain signed the CSR; the
    CertificateSigned with the chain follows from the controller.
    """
    signed = central.certificate_requested(charger_id, req.csr)
    return m.SignCertificateResponse(status="Accepted" if signed else "Rejected")


def _not_before(clock, seconds, answer):
    """
    @return: a Deferred of C{answer} (a value or a Deferred of one), firing
        no sooner than C{seconds} from now on C{clock}.
    """
    due = clock.seconds() + seconds
    d = answer if isinstance(answer, defer.Deferred) else defer.succeed(answer)
    return d.addCallback(
        lambda value: task.deferLater(clock, max(0.0, due - clock.seconds()), lambda: value))


def start_transaction(central, charger_id, req):
    """
    StartTransaction: answered once the domain stored the transaction; for
    a charger with C{delay-start-answer}, not before its delay either.
    """
    _existing_connector(central, charger_id, req.connector_id)
    answer = central.start_transaction(charger_id, req.connector_id, req.id_tag,
                                       req.meter_start, req.timestamp, req.reservation_id)
    delay = central.chargers[charger_id].quirks.parameter("delay-start-answer", "delay")
    if delay:
        # docs/quirks.md#delay-start-answer: it drops the socket after a fast answer.
        answer = _not_before(central.clock, delay, answer)
    return _then(answer, lambda started: m.StartTransactionResponse(
        transaction_id=started[0], id_tag_info=id_tag_info(started[1])))


def status_notification(central, charger_id, req):
    """
    StatusNotification: a connector's (or the charger's) status.
    """
    _existing_connector(central, charger_id, req.connector_id)
    # Connector 0 is the charger itself.
    central.reports.status_reported(charger_id, req.connector_id or None, req.status,
                                    req.error_code, req.info, req.vendor_error_code,
                                    req.timestamp)
    return m.StatusNotificationResponse()


def stop_transaction(central, charger_id, req):
    """
    StopTransaction: answered once the domain stored the stop.
    """
    reading = read_meter_values(req.transaction_data) if req.transaction_data else None
    # OCPP 1.6 §6.49: an absent reason means Local.
    answer = central.stop_transaction(charger_id, req.transaction_id, req.meter_stop,
                                      req.timestamp, req.reason or "Local", req.id_tag, reading)
    return _then(answer, lambda authorization: m.StopTransactionResponse(
        id_tag_info=id_tag_info(authorization)))


def _progress(action):
    """
    @return: the handler of a progress report (firmware, diagnostics, log
        upload): the domain keeps it for the status page.
    """
    response = m.ACTIONS[action].response

    def handle(central, charger_id, req):
        central.reports.progress_reported(charger_id, action, req.status)
        return response()

    handle.__name__ = action
    return handle


#: The handler of every action a charger sends, by its name in
#: L{messages.ACTIONS}: C{handler(central, charger_id, request)} returns the
#: response message or a Deferred of it.
HANDLERS = {
    "Authorize": authorize,
    "BootNotification": boot_notification,
    "DataTransfer": data_transfer,
    "DiagnosticsStatusNotification": _progress("DiagnosticsStatusNotification"),
    "FirmwareStatusNotification": _progress("FirmwareStatusNotification"),
    "Heartbeat": heartbeat,
    "LogStatusNotification": _progress("LogStatusNotification"),
    "MeterValues": meter_values,
    "SecurityEventNotification": security_event_notification,
    "SignCertificate": sign_certificate,
    "SignedFirmwareStatusNotification": _progress("SignedFirmwareStatusNotification"),
    "StartTransaction": start_transaction,
    "StatusNotification": status_notification,
    "StopTransaction": stop_transaction,
}
