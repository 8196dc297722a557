# -*- test-case-name: tests.test_web,tests.test_web_status -*-
"""
What the status page and C{GET /api/status} show: a snapshot of the central
system as JSON-ready values, and the words for OCPP's status and error codes.

The page renders the same snapshot the API returns, so both always agree.
The words are English in the API; they are the catalogues' msgids, which
the page shows in its language.
"""

from datetime import datetime, timezone

from xxterocpp.domain import refusals
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

#: Why a connection was refused (L{xxterocpp.domain.refusals}), in words.
REFUSAL_WORDS = {
    refusals.WRONG_PASSWORD: N_("wrong password"),
    refusals.MISSING_PASSWORD: N_("no password sent (Basic auth)"),
    refusals.TLS_FAILED: N_("TLS handshake failed"),
    refusals.OTHER_CERTIFICATE: N_("client certificate of another charger"),
    refusals.NO_CERTIFICATE: N_("no valid client certificate (security profile 3)"),
    refusals.LOWER_PROFILE: N_("lower security profile than configured"),
    refusals.THROTTLED: N_("too many failed attempts, refused for a while"),
    refusals.SUBPROTOCOL: N_("offered only OCPP versions not spoken here"),
    refusals.NO_IDENTITY: N_("no charger id in the URL"),
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


def pending_status(pending):
    """
    The commands a connector's charger accepted and has not carried out
    yet (L{xxterocpp.domain.accepted.Pending}), oldest first: what, since
    when, until when at most (None: a change Scheduled for after the
    session), the availability asked for.
    """
    return [{"command": p.command, "since": iso(p.since), "until": iso(p.until),
             "operative": p.operative, "scheduled": p.scheduled} for p in pending]


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
        "pending": pending_status(controller.central.pending(charger.id, connector.number)),
        # SmartManager.session(): the plan, its cost and the cost at once.
        "smart": smart.session(charger.id, connector.number)
        if smart is not None and point is not None else None,
        "knx": knx_objects(point, journal) if point is not None else [],
    }


def security_status(central, charger):
    """
    A charger's security profile, its client certificate when known and
    its last security events, newest first.
    """
    certificate = central.security.certificate(charger.id)
    return {
        "security_profile": central.security.profile(charger.id),
        "security_profile_pending": central.security.pending(charger.id),
        "certificate": None if certificate is None else {
            "serial": certificate.serial, "expiry": iso(certificate.not_after)},
        "security_events": [{"type": kind, "time": iso(when), "tech_info": tech_info}
                            for when, kind, tech_info in reversed(charger.security_events)],
    }


def _refusal(reason, detail):
    return {"reason": reason, "reason_text": REFUSAL_WORDS[reason], "detail": detail}


def charger_refusals(refused):
    """
    The refused connection attempts of one charger.

    @param refused: its L{xxterocpp.domain.refusals.ChargerRefusals}, or
        None.
    @return: how many in all and per reason, and the last ones, newest
        first.
    """
    if refused is None:
        return {"count": 0, "counts": {}, "last": []}
    return {
        "count": refused.total,
        "counts": {r: refused.counts[r] for r in refusals.REASONS if r in refused.counts},
        "last": [dict(_refusal(r.reason, r.detail), address=r.address, time=iso(r.at))
                 for r in reversed(refused.last)],
    }


def charger_status(central, controller, charger, smart=None, journal=None):
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
        **security_status(central, charger),
        "refusals": charger_refusals(central.refusals.of(charger.id)),
        "quirks": charger.quirks.describe(),
        "learned": controller.learned(charger.id),
        "connectors": [
            connector_status(controller, charger, charger.connectors[n], points.get(n), smart,
                             journal)
            for n in sorted(charger.connectors)
        ],
    }


def snapshot(central, controller, knx_link, smart=None, refused=None, journal=None,
             upstream=None):
    """
    @param smart: the L{xxterocpp.smart.manager.SmartManager}, or None.
    @param refused: how many charger connections were refused, as
        C{{"auth": n, "tls": n}}, or None.
    @param journal: the KNX bridge's L{xxterocpp.knx.journal.Journal}, or
        None (no bridge).
    @param upstream: the back offices' L{xxterocpp.upstream.Upstream}, or
        None.
    @return: the body of C{GET /api/status}: C{time} (the central
        system's, what chargers are told), C{clock_ok} (False while the
        system clock, C{system_time}, reads more than a minute earlier than
        that time), C{knx}, C{refused}, C{chargers}, C{unknown}, C{upstream}
        (per charger forwarded to a back office: its link, queue, dead
        letters and the id map of recent sessions).
    """
    return {
        "time": iso(central.now()),
        # The time above runs on from the one given out before while the
        # system clock reads earlier than it (docs/clock.md).
        "clock_ok": central.time.ok,
        "system_time": iso(utc_from_seconds(central.time.system())),
        "knx": knx_state(knx_link),
        "refused": refused or {"auth": 0, "tls": 0},
        "upstream": upstream.status() if upstream is not None else {},
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
        # refused before an identity was known, the most recent first
        "unnamed": [
            dict(_refusal(u.reason, u.detail), address=u.address, count=u.count,
                 first_seen=iso(u.first_seen), last_seen=iso(u.last_seen))
            for u in central.refusals.unnamed()
        ],
    }
