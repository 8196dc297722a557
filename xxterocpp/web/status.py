# -*- test-case-name: tests.test_web,tests.test_web_status -*-
"""
What the status page and C{GET /api/status} show: a snapshot of the central
system as JSON-ready values, and the words for OCPP's status and error codes.

The page renders the same snapshot the API returns, so both always agree.
The words are English in the API; they are the catalogues' msgids, which
the page shows in its language.
"""

from datetime import datetime, timezone

from xxterocpp.domain.model import utc_from_seconds
from xxterocpp.knx import objects
from xxterocpp.web.i18n import N_

#: ChargePointStatus (OCPP 1.6 §7.7) in words for the installer.
STATUS_WORDS = {
    "Available": N_("available"),
    "Preparing": N_("car plugged in, waiting to start"),
    "Charging": N_("charging"),
    "SuspendedEVSE": N_("paused by the charger"),
    "SuspendedEV": N_("paused by the car"),
    "Finishing": N_("finished, car still plugged in"),
    "Reserved": N_("reserved"),
    "Unavailable": N_("unavailable"),
    "Faulted": N_("faulted"),
}

#: ChargePointErrorCode (OCPP 1.6 §7.6) in words.
ERROR_WORDS = {
    "ConnectorLockFailure": N_("the connector lock failed"),
    "EVCommunicationError": N_("no communication with the car"),
    "GroundFailure": N_("ground fault (RCD tripped)"),
    "HighTemperature": N_("too hot"),
    "InternalError": N_("internal error of the charger"),
    "LocalListConflict": N_("local authorisation list conflict"),
    "NoError": N_("no error"),
    "OtherError": N_("other error"),
    "OverCurrentFailure": N_("over-current"),
    "OverVoltage": N_("over-voltage"),
    "PowerMeterFailure": N_("the energy meter failed"),
    "PowerSwitchFailure": N_("the power switch failed"),
    "ReaderFailure": N_("the RFID reader failed"),
    "ResetFailure": N_("the reset failed"),
    "UnderVoltage": N_("under-voltage"),
    "WeakSignal": N_("weak wireless signal"),
}


def iso(when):
    """
    @return: an aware datetime as ISO 8601 UTC (C{...Z}), or None.
    """
    if when is None:
        return None
    return when.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def knx_state(link):
    """
    @param link: the service's KNX link (with a C{connected} flag), or None
        when no knxd is configured.
    @return: C{"not configured"}, C{"connected"} or C{"disconnected"}.
    """
    if link is None:
        return N_("not configured")
    return N_("connected") if link.connected else N_("disconnected")


def transaction_status(tx):
    """
    @param tx: a running L{xxterocpp.domain.model.Transaction}, or None.
    @return: None also for a refused session: it does not count as
        charging.
    """
    if tx is None or not tx.accepted:
        return None
    return {
        "id": tx.id,
        "id_tag": tx.id_tag,
        "start": iso(tx.start_time),
        "meter_start_wh": tx.meter_start,
        "energy_wh": tx.energy_wh,
    }


def reservation_status(reservation):
    """
    @param reservation: a L{xxterocpp.domain.model.Reservation}, or None.
    """
    if reservation is None:
        return None
    return {"id": reservation.id, "id_tag": reservation.id_tag,
            "expiry": iso(reservation.expiry), "until_freed": reservation.until_freed}


def _when(record):
    return iso(utc_from_seconds(record.when))


def _record(record):
    """
    A value the bridge sent or received (a L{xxterocpp.knx.journal.Record})
    as JSON: the value (an aware datetime as ISO), when and from whom.
    """
    if record is None:
        return None
    value = iso(record.value) if isinstance(record.value, datetime) else record.value
    return {"value": value, "time": _when(record), "from": record.source}


def _foreign(record):
    """
    Another device's write to a send object as JSON: its payload (hex
    digits, or the small value of a 1-bit write), when and from whom.
    """
    if record is None:
        return None
    payload = record.value.hex() if isinstance(record.value, bytes) else record.value
    return {"value": {"payload": payload}, "time": _when(record), "from": record.source}


def knx_objects(point, journal):
    """
    The commissioning view of one charging point: every linked group
    object, its address, DPT and direction, and what the bridge last sent
    and received.

    @param point: the L{xxterocpp.config.ChargerConfig}.
    @param journal: the bridge's L{xxterocpp.knx.journal.Journal}, or None.
    @return: a list in declaration order; C{foreign} is the last write of
        another device to a send-only object (a warning).
    """
    linked = []
    for obj in objects.OBJECTS:
        address = getattr(point.knx, obj.key)
        if address is None:
            continue
        entry = journal.entry((point.id, point.connector), obj.key) if journal else None
        linked.append({
            "object": obj.key,
            "address": str(address),
            "dpt": obj.dpt_for(point),
            "direction": obj.direction,
            "sent": _record(entry and entry.sent),
            "received": _record(entry and entry.received),
            "foreign": _foreign(entry and entry.foreign),
        })
    return linked


def connector_status(controller, charger, connector, point, smart=None, journal=None):
    """
    @param point: the connector's L{xxterocpp.config.ChargerConfig}, or None
        for a connector the charger reports but the configuration lacks.
    @param smart: the L{xxterocpp.smart.manager.SmartManager}, or None.
    @param journal: the KNX bridge's L{xxterocpp.knx.journal.Journal}, or
        None.

    The status is what the connector counts as (the bus says the same):
    Unavailable while the charger is offline, connector 0's while that is
    Unavailable or Faulted.
    """
    status, error_code = controller.central.point_status(charger.id, connector.number)
    own = status == connector.status and error_code in (None, connector.error_code)
    error_code = error_code or connector.error_code
    return {
        "connector": connector.number,
        "configured": point is not None,
        "status": status,
        "status_text": STATUS_WORDS.get(status, status or N_("not reported yet")),
        "error_code": error_code,
        "error_text": ERROR_WORDS.get(error_code, error_code),
        "info": connector.info if own else None,
        "vendor_error_code": connector.vendor_error_code if own else None,
        "since": iso(connector.status_time) if own else None,
        "available": None if status is None else status not in ("Unavailable", "Faulted"),
        "reservation": reservation_status(connector.reservation),
        "current_a": connector.current,
        "currents_a": dict(connector.currents),
        "power_w": connector.power_w,
        "energy_register_wh": connector.energy_register_wh,
        "limit_a": controller.limit(charger.id, connector.number) if point else None,
        "normal_current_a": point.normal_current if point else None,
        "max_current_a": point.max_current if point else None,
        "smart_tag": bool(point.smart_tag) if point else False,
        "transaction": transaction_status(connector.transaction),
        # SmartManager.session(): the plan, its cost and the cost at once.
        "smart": smart.session(charger.id, connector.number)
        if smart is not None and point is not None else None,
        "knx": knx_objects(point, journal) if point is not None else [],
    }


def charger_status(central, controller, charger, smart=None, journal=None):
    """
    One charger (an OCPP identity) and its connectors.
    """
    points = {p.connector: p for p in central.config.charging_points(charger.id)}
    boot = charger.boot or {}
    return {
        "id": charger.id,
        "connected": charger.connected,
        "ever_connected": charger.ever_connected,
        "offline": charger.offline,
        "connected_since": iso(charger.connected_since),
        "disconnected_since": iso(charger.disconnected_since),
        "last_seen": iso(charger.last_seen),
        "address": charger.address,
        "vendor": boot.get("vendor"),
        "model": boot.get("model"),
        "firmware": boot.get("firmware"),
        "serial": boot.get("serial"),
        "status": charger.status,
        "reconnects": charger.reconnects,
        "connectors": [
            connector_status(controller, charger, charger.connectors[n], points.get(n), smart,
                             journal)
            for n in sorted(charger.connectors)
        ],
    }


def snapshot(central, controller, knx_link, smart=None, refused=None, journal=None):
    """
    @param smart: the L{xxterocpp.smart.manager.SmartManager}, or None.
    @param refused: how many charger connections were refused, as
        C{{"auth": n, "tls": n}}, or None.
    @param journal: the KNX bridge's L{xxterocpp.knx.journal.Journal}, or
        None (no bridge).
    @return: the body of C{GET /api/status}: C{time} (the central
        system's, what chargers are told), C{clock_ok} (False while the
        system clock, C{system_time}, reads earlier than the time trusted
        before), C{knx}, C{refused}, C{chargers}, C{unknown}.
    """
    return {
        "time": iso(central.now()),
        # The time above is the trusted one moved on while the system
        # clock reads earlier than it (xxterocpp/domain/trusted.py).
        "clock_ok": central.time.ok,
        "system_time": iso(utc_from_seconds(central.time.system())),
        "knx": knx_state(knx_link),
        "refused": refused or {"auth": 0, "tls": 0},
        "chargers": [charger_status(central, controller, c, smart, journal)
                     for c in central.chargers.values()],
        "unknown": [
            {
                "id": u.identity,
                "address": u.address,
                "count": u.count,
                "first_seen": iso(u.first_seen),
                "last_seen": iso(u.last_seen),
            }
            for u in reversed(central.unknown.values())
        ],
    }
