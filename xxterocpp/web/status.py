# -*- test-case-name: tests.test_web -*-
"""
What the status page and C{GET /api/status} show: a snapshot of the central
system as JSON-ready values, and the words for OCPP's status and error codes.

The page renders the same snapshot the API returns, so both always agree.
The words are English in the API; they are the catalogues' msgids, which
the page shows in its language.
"""

from datetime import timezone

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
    """
    if tx is None:
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
            "expiry": iso(reservation.expiry)}


def connector_status(controller, charger, connector, point, smart=None):
    """
    @param point: the connector's L{xxterocpp.config.ChargerConfig}, or None
        for a connector the charger reports but the configuration lacks.
    @param smart: the L{xxterocpp.smart.manager.SmartManager}, or None.
    """
    status = connector.status
    return {
        "connector": connector.number,
        "configured": point is not None,
        "status": status,
        "status_text": STATUS_WORDS.get(status, status or N_("not reported yet")),
        "error_code": connector.error_code,
        "error_text": ERROR_WORDS.get(connector.error_code, connector.error_code),
        "info": connector.info,
        "vendor_error_code": connector.vendor_error_code,
        "since": iso(connector.status_time),
        "available": None if status is None else status != "Unavailable",
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
    One charger (an OCPP identity) and its connectors.
    """
    points = {p.connector: p for p in central.config.charging_points(charger.id)}
    boot = charger.boot or {}
    return {
        "id": charger.id,
        "connected": charger.connected,
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
