# -*- test-case-name: tests.test_web,tests.test_web_status -*-
"""
What the status page and C{GET /api/status} show: a snapshot of the central
system as JSON-ready values, and the words for OCPP's status and error codes.

The page renders the same snapshot the API returns, so both always agree.
"""

from datetime import timezone

#: ChargePointStatus (OCPP 1.6 §7.7) in words for the installer.
STATUS_WORDS = {
    "Available": "available",
    "Preparing": "car plugged in, waiting to start",
    "Charging": "charging",
    "SuspendedEVSE": "paused by the charger",
    "SuspendedEV": "paused by the car",
    "Finishing": "finished, car still plugged in",
    "Reserved": "reserved",
    "Unavailable": "unavailable",
    "Faulted": "faulted",
}

#: ChargePointErrorCode (OCPP 1.6 §7.6) in words.
ERROR_WORDS = {
    "ConnectorLockFailure": "the connector lock failed",
    "EVCommunicationError": "no communication with the car",
    "GroundFailure": "ground fault (RCD tripped)",
    "HighTemperature": "too hot",
    "InternalError": "internal error of the charger",
    "LocalListConflict": "local authorisation list conflict",
    "NoError": "no error",
    "OtherError": "other error",
    "OverCurrentFailure": "over-current",
    "OverVoltage": "over-voltage",
    "PowerMeterFailure": "the energy meter failed",
    "PowerSwitchFailure": "the power switch failed",
    "ReaderFailure": "the RFID reader failed",
    "ResetFailure": "the reset failed",
    "UnderVoltage": "under-voltage",
    "WeakSignal": "weak wireless signal",
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
        return "not configured"
    return "connected" if link.connected else "disconnected"


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


def connector_status(controller, charger, connector, point, smart=None):
    """
    @param point: the connector's L{xxterocpp.config.ChargerConfig}, or None
        for a connector the charger reports but the configuration lacks.
    @param smart: the L{xxterocpp.smart.manager.SmartManager}, or None.

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
        "status_text": STATUS_WORDS.get(status, status or "not reported yet"),
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
    }


def charger_status(central, controller, charger, smart=None):
    """
    One charger (an OCPP identity) and its connectors, the workarounds in
    force for it and why (C{quirks}, L{xxterocpp.quirks.ActiveQuirks.describe})
    and what the central system learned by trial (C{learned},
    L{xxterocpp.control.commands.Controller.learned}).
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
        "quirks": charger.quirks.describe(),
        "learned": controller.learned(charger.id),
        "connectors": [
            connector_status(controller, charger, charger.connectors[n], points.get(n), smart)
            for n in sorted(charger.connectors)
        ],
    }


def snapshot(central, controller, knx_link, smart=None, refused=None):
    """
    @param smart: the L{xxterocpp.smart.manager.SmartManager}, or None.
    @param refused: how many charger connections were refused, as
        C{{"auth": n, "tls": n}}, or None.
    @return: the body of C{GET /api/status}.
    """
    return {
        "time": iso(central.now()),
        "knx": knx_state(knx_link),
        "refused": refused or {"auth": 0, "tls": 0},
        "chargers": [charger_status(central, controller, c, smart)
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
