# -*- test-case-name: tests.test_upstream_relay,tests.test_upstream_attacks -*-
"""
The back office's CALLs to a charger: L{RELAYS} holds one handler per
action. Most are relayed through the controller (so the building's rules
hold: reservations, availability, limits), with the back office's
transaction and reservation ids mapped to ours; some never reach the
charger (its key at the back office, URL-like keys, the intervals the
back office wants, the local list, a Reset not allowed).

A handler is C{handler(uplink, request)} and returns the response message
or a Deferred of it; it raises L{CallError} when the charger cannot be
asked.
"""

import re

from twisted.internet import defer
from twisted.logger import Logger

from xxterocpp.control.sender import SILENT
from xxterocpp.domain.keys import KEY_RULE, valid_authorization_key
from xxterocpp.domain.model import casefold, stored
from xxterocpp.ocpp import messages as m
from xxterocpp.ocpp.rpc import CallError
from xxterocpp.store.records import TagRecord
from xxterocpp.upstream.capping import Collision, cap

log = Logger()

#: Configuration keys the back office may not change at the charger: they
#: would move the charger away from this controller.
_PROTECTED_KEY = re.compile(r"securityprofile|url|uri|host|endpoint|identity", re.I)

#: Configuration keys kept for the back office alone: it reads back what it
#: set, the charger keeps the controller's.
VIRTUAL_KEYS = ("HeartbeatInterval", "MeterValueSampleInterval")

#: The keys above by their folded names: chargers read configuration keys
#: without regard to case, so a back office may spell them as it likes.
_VIRTUAL_NAMES = {key.casefold(): key for key in VIRTUAL_KEYS}

#: The AuthorizationKey, folded: the charger's is never shown (OCPP-J 1.6
#: §6.2.2) nor set by the back office; the back office's is ours there.
_KEY = "authorizationkey"

#: The local-list statuses as the tag registry keeps them.
_REGISTRY_STATUS = {"Accepted": "Accepted", "ConcurrentTx": "Accepted", "Blocked": "Blocked",
                    "Expired": "Expired", "Invalid": "Blocked"}


def _controller(uplink):
    return uplink.upstream.controller


def _answered(result):
    """
    @return: the charger's response in a L{CommandResult}, or None when the
        controller refused the command itself.
    @raise CallError: the charger gave no answer.
    """
    if result.response is not None:
        return result.response
    if result.status in SILENT or result.status == "CallError":
        raise CallError(m.GENERIC_ERROR, f"the charger did not answer: {result.detail}")
    return None


def _response(result):
    """
    @return: the charger's response in a L{CommandResult}.
    @raise CallError: there is none.
    """
    response = _answered(result)
    if response is None:
        raise CallError(m.GENERIC_ERROR, result.detail)
    return response


def _status(response_class, ok="Accepted", no="Rejected"):
    """
    @return: a callback turning a L{CommandResult} into C{response_class}
        with the charger's status, or C{no} for the controller's refusal.
    """

    def respond(result):
        response = _answered(result)
        if isinstance(response, response_class):
            return response
        return response_class(status=ok if result.accepted else no)

    return respond


def _relayed(uplink, request):
    """
    Send C{request} to the charger as it is; its answer goes back.
    """
    d = _controller(uplink).call(uplink.charger_id, request)
    return d.addCallback(_response)


def _point_connector(uplink, connector):
    """
    @return: C{connector} when it is one of the charger's charging points;
        without one, the first point without a running transaction.
    """
    points = [p.connector for p in uplink.central.config.charging_points(uplink.charger_id)]
    if connector:
        return connector if connector in points else None
    charger = uplink.central.chargers[uplink.charger_id]
    free = [c for c in points if charger.connector(c).transaction is None]
    return (free or points or [None])[0]


# -- core ----------------------------------------------------------------------


def remote_start(uplink, req):
    """
    RemoteStartTransaction through the controller's rules; a profile it
    carries is capped to the building's limit. The tag is one the back
    office vouches for.
    """
    connector = _point_connector(uplink, req.connector_id)
    if connector is None:
        return m.RemoteStartTransactionResponse(status="Rejected")
    profile = req.charging_profile
    if profile is not None:
        try:
            profile = cap(uplink.central, uplink.charger_id, connector, profile)
        except Collision as e:
            log.info("{id}: back office's RemoteStartTransaction profile refused: {e}",
                     id=uplink.charger_id, e=str(e))
            return m.RemoteStartTransactionResponse(status="Rejected")
    uplink.verdicts.remember(req.id_tag, m.IdTagInfo(status="Accepted"))
    d = _controller(uplink).start(uplink.charger_id, connector, id_tag=req.id_tag,
                                  charging_profile=profile)
    return d.addCallback(_status(m.RemoteStartTransactionResponse))


def remote_stop(uplink, req):
    """
    RemoteStopTransaction of the transaction the back office knows by its
    own id.
    """
    local = uplink.outbox.local_id(req.transaction_id)
    tx = uplink.central.book.get(local) if local is not None else None
    if tx is None or not tx.running or tx.charger_id != uplink.charger_id:
        return m.RemoteStopTransactionResponse(status="Rejected")
    d = _controller(uplink).stop(uplink.charger_id, tx.connector)
    return d.addCallback(_status(m.RemoteStopTransactionResponse))


def unlock_connector(uplink, req):
    """
    UnlockConnector of one of the charger's points.
    """
    if _point_connector(uplink, req.connector_id) is None:
        return m.UnlockConnectorResponse(status="NotSupported")
    d = _controller(uplink).unlock(uplink.charger_id, req.connector_id)
    return d.addCallback(_status(m.UnlockConnectorResponse, "Unlocked", "UnlockFailed"))


def change_availability(uplink, req):
    """
    ChangeAvailability of the charger (connector 0) or one of its points.
    """
    if req.connector_id and _point_connector(uplink, req.connector_id) is None:
        return m.ChangeAvailabilityResponse(status="Rejected")
    d = _controller(uplink).set_availability(uplink.charger_id, req.connector_id,
                                             req.type == "Operative")
    return d.addCallback(_status(m.ChangeAvailabilityResponse))


def reset(uplink, req):
    """
    Reset, only when the configuration allows the back office to.
    """
    if not uplink.config.allow_reset:
        log.info("{id}: the back office's Reset refused (allow_reset = false)",
                 id=uplink.charger_id)
        return m.ResetResponse(status="Rejected")
    d = _controller(uplink).reset(uplink.charger_id, hard=req.type == "Hard")
    return d.addCallback(_status(m.ResetResponse))


def data_transfer(uplink, req):
    """
    DataTransfer, relayed to the charger's vendor extension.
    """
    return _relayed(uplink, req)


def clear_cache(uplink, req):
    """
    ClearCache: the charger's and our kept verdicts of the back office.
    """
    uplink.verdicts.forget()
    return _relayed(uplink, req)


def trigger_message(uplink, req):
    """
    TriggerMessage: what we send as the charger ourselves (the boot, a
    heartbeat, the statuses we know) is sent from here; the rest is
    relayed, and the messages it makes come back through the handlers.
    """
    requested = req.requested_message
    if requested in ("BootNotification", "Heartbeat", "StatusNotification"):
        uplink.clock.callLater(0, uplink.triggered, requested, req.connector_id)
        return m.TriggerMessageResponse(status="Accepted")
    if requested in ("DiagnosticsStatusNotification", "FirmwareStatusNotification"):
        uplink.asked.add(requested)
    return _relayed(uplink, req)


# -- configuration ---------------------------------------------------------------


def get_configuration(uplink, req):
    """
    GetConfiguration, with the values kept for the back office in place of
    the charger's.
    """
    # The AuthorizationKey is never shown, however asked for: not even
    # asked of the charger.
    wanted = [_VIRTUAL_NAMES.get(k.casefold(), k) for k in req.key or ()
              if k.casefold() != _KEY]
    virtual = {k: uplink.virtual(k, None) for k in VIRTUAL_KEYS}
    virtual["HeartbeatInterval"] = virtual["HeartbeatInterval"] or str(
        uplink.heartbeat_interval)
    virtual["MeterValueSampleInterval"] = str(uplink.sample_interval)
    asked = [k for k in wanted if k not in virtual]
    if req.key and not asked:
        return m.GetConfigurationResponse(configuration_key=tuple(
            m.KeyValue(key=k, readonly=False, value=virtual[k]) for k in wanted))
    d = _controller(uplink).call(uplink.charger_id, m.GetConfigurationRequest(
        key=tuple(asked) if wanted else None))

    def merge(result):
        response = _response(result)
        keys = [kv for kv in response.configuration_key or ()
                if kv.key.casefold() not in _VIRTUAL_NAMES and kv.key.casefold() != _KEY]
        keys += [m.KeyValue(key=k, readonly=False, value=v) for k, v in virtual.items()
                 if not wanted or k in wanted]
        return m.GetConfigurationResponse(configuration_key=tuple(keys),
                                          unknown_key=response.unknown_key)

    return d.addCallback(merge)


def change_configuration(uplink, req):
    """
    ChangeConfiguration: the AuthorizationKey is our key at the back office
    (adopted for the next connection), the intervals are kept for it,
    keys that would move the charger away are refused; the rest is relayed.
    """
    key = req.key
    if key.casefold() == _KEY:
        if not valid_authorization_key(req.value):
            # The key in force stays (white paper A01.FR.04): with one that
            # is no key the next connection might never get in again.
            log.warn("{id}: the back office's new AuthorizationKey refused: not {rule}",
                     id=uplink.charger_id, rule=KEY_RULE)
            return m.ChangeConfigurationResponse(status="Rejected")
        uplink.save("authorization_key", req.value)
        log.info("{id}: the back office set a new AuthorizationKey for this controller,"
                 " used from the next connection on", id=uplink.charger_id)
        return m.ChangeConfigurationResponse(status="Accepted")
    key = _VIRTUAL_NAMES.get(key.casefold(), key)
    if key in VIRTUAL_KEYS:
        if not req.value.strip().isdigit():
            return m.ChangeConfigurationResponse(status="Rejected")
        values = dict(uplink.setting("configuration", {}))
        values[key] = req.value.strip()
        uplink.save("configuration", values)
        if key == "HeartbeatInterval":
            uplink.heartbeat_changed()
        return m.ChangeConfigurationResponse(status="Accepted")
    if _PROTECTED_KEY.search(key):
        log.info("{id}: the back office's ChangeConfiguration of {key} refused",
                 id=uplink.charger_id, key=key)
        return m.ChangeConfigurationResponse(status="Rejected")
    return _relayed(uplink, req)


# -- firmware, diagnostics -------------------------------------------------------


def _asking(notification):
    """
    @return: the relay of a command whose status notifications go to the
        back office that asked.
    """

    def relay(uplink, req):
        uplink.asked.add(notification)
        return _relayed(uplink, req)

    relay.__name__ = notification
    return relay


# -- the local list --------------------------------------------------------------


def send_local_list(uplink, req):
    """
    SendLocalList: merged into the controller's tag registry as the back
    office's tags (a tag the controller has of its own, or one the
    configuration names, stays its own; an entry whose parent is one is
    not taken); the controller brings the charger's list in step.
    """
    registry = uplink.central.tags
    mine = {casefold(t): t for t in uplink.setting("tags", [])}
    entries = req.local_authorization_list or ()
    given = {casefold(e.id_tag) for e in entries}
    if req.update_type == "Full":
        removed = [t for key, t in mine.items() if key not in given]
    else:
        removed = [e.id_tag for e in entries if e.id_tag_info is None and casefold(e.id_tag) in mine]
    writes = []
    for id_tag in removed:
        writes.append(registry.remove(id_tag))
        mine.pop(casefold(id_tag), None)
    # The registry serves every charger of the building: the back office of
    # one may not change a tag of the controller's, nor make its own tags
    # children of one (a parent in allowed_tags lets its children charge).
    ours = _controllers_tags(uplink.central, mine)
    for entry in entries:
        info = entry.id_tag_info
        if info is None or ours(entry.id_tag):
            continue
        if info.parent_id_tag and ours(info.parent_id_tag):
            log.warn("{id}: the back office's local list entry {tag} not taken: its parent"
                     " {parent} is the controller's tag", id=uplink.charger_id,
                     tag=entry.id_tag, parent=info.parent_id_tag)
            continue
        key = casefold(entry.id_tag)
        writes.append(registry.put(TagRecord(entry.id_tag, _REGISTRY_STATUS[info.status],
                                             info.expiry_date, info.parent_id_tag)))
        mine[key] = entry.id_tag
    uplink.save("tags", sorted(mine.values()))
    uplink.save("local_list_version", req.list_version)
    d = defer.gatherResults([stored(w) for w in writes])
    return d.addCallback(lambda ignored: m.SendLocalListResponse(status="Accepted"))


def _controllers_tags(central, mine):
    """
    @param mine: the back office's tags in the registry, by folded tag.
    @return: a test of whether a tag is the controller's: in its registry
        not as the back office's, or named at a charging point of the
        configuration (allowed, remote and smart tags).
    """
    named = set()
    for point in central.config.chargers:
        named.update(casefold(t) for t in (*point.allowed_tags, point.remote_tag,
                                           point.smart_tag) if t and t != "*")

    def ours(id_tag):
        key = casefold(id_tag)
        return key in named or (central.tags.get(id_tag) is not None and key not in mine)

    return ours


def get_local_list_version(uplink, req):
    """
    GetLocalListVersion: the version the back office sent last.
    """
    return m.GetLocalListVersionResponse(list_version=uplink.setting("local_list_version", 0))


# -- reservations ----------------------------------------------------------------


def reserve_now(uplink, req):
    """
    ReserveNow through the controller, which gives the reservation an id
    of ours; the back office's is mapped to it.
    """
    connector = _point_connector(uplink, req.connector_id)
    if connector is None or not req.connector_id:
        return m.ReserveNowResponse(status="Rejected")
    uplink.verdicts.remember(req.id_tag, m.IdTagInfo(status="Accepted"))
    d = _controller(uplink).reserve(uplink.charger_id, connector, req.id_tag, req.expiry_date)

    def reserved(result):
        if result.accepted:
            ours = uplink.central.chargers[uplink.charger_id].connector(connector).reservation
            if ours is not None:
                uplink.relayed.map_reservation(req.reservation_id, ours.id)
        return _status(m.ReserveNowResponse)(result)

    return d.addCallback(reserved)


def cancel_reservation(uplink, req):
    """
    CancelReservation of a reservation the back office made.
    """
    ours = uplink.relayed.local_reservation(req.reservation_id)
    charger = uplink.central.chargers[uplink.charger_id]
    for number, c in charger.connectors.items():
        if ours is not None and c.reservation is not None and c.reservation.id == ours:
            d = _controller(uplink).free(uplink.charger_id, number)
            return d.addCallback(_status(m.CancelReservationResponse))
    return m.CancelReservationResponse(status="Rejected")


# -- smart charging --------------------------------------------------------------


def set_charging_profile(uplink, req):
    """
    SetChargingProfile capped to the building's limit; a profile that
    would replace one of the controller's is refused.
    """
    profile = req.cs_charging_profiles
    if profile.transaction_id is not None:
        local = uplink.outbox.local_id(profile.transaction_id)
        if local is None:
            return m.SetChargingProfileResponse(status="Rejected")
        profile = m.replace(profile, transaction_id=local)
    try:
        capped_profile = cap(uplink.central, uplink.charger_id, req.connector_id, profile)
    except Collision as e:
        log.info("{id}: the back office's SetChargingProfile refused: {e}",
                 id=uplink.charger_id, e=str(e))
        return m.SetChargingProfileResponse(status="Rejected")
    d = _controller(uplink).call(uplink.charger_id, m.SetChargingProfileRequest(
        connector_id=req.connector_id, cs_charging_profiles=capped_profile))

    def set_(result):
        response = _response(result)
        if result.accepted:
            uplink.relayed.profile_set(req.connector_id, wanted, capped)
        return response

    wanted, capped = profile, capped_profile
    return d.addCallback(set_)


def recap(uplink, connector):
    """
    The limit in force at C{connector} changed: each profile the back
    office set there (or at connector 0) is capped anew from what it asked
    for, and sent again when that changes it; one the charger does not take
    any more, or of a transaction that ended, is cleared. So its cap never
    outlives the building's limit (nor stays below it once that rises).
    """
    for pid, entry in uplink.relayed.profiles().items():
        if len(entry) < 5 or entry[0] not in (0, connector):
            continue
        wanted, _ = m.decode(m.ChargingProfile, entry[3], lenient=True)
        if wanted.transaction_id is not None:
            tx = uplink.central.book.get(wanted.transaction_id)
            if tx is None or not tx.running:
                # A TxProfile ends with its transaction (OCPP 1.6 §3.13.2).
                uplink.relayed.profile_cleared(int(pid))
                continue
        try:
            capped = cap(uplink.central, uplink.charger_id, entry[0], wanted)
        except Collision as e:
            log.info("{id}: the back office's profile {pid} is cleared: {e}",
                     id=uplink.charger_id, pid=pid, e=str(e))
            _clear(uplink, int(pid))
            continue
        if m.encode(capped) == entry[4]:
            continue
        d = _controller(uplink).call(uplink.charger_id, m.SetChargingProfileRequest(
            connector_id=entry[0], cs_charging_profiles=capped))
        d.addCallback(_recapped, uplink, entry[0], wanted, capped)


def _recapped(result, uplink, connector, wanted, capped):
    pid = capped.charging_profile_id
    if result.accepted:
        uplink.relayed.profile_set(connector, wanted, capped)
    elif result.status not in SILENT:
        # Its old cap must not stay in force.
        log.warn("{id}: the charger did not take the back office's profile {pid} capped"
                 " anew ({status}): it is cleared", id=uplink.charger_id, pid=pid,
                 status=result.status)
        _clear(uplink, pid)


def _clear(uplink, pid):
    """
    Clear a profile the back office set, at the charger and in our books.
    """
    uplink.relayed.profile_cleared(pid)
    stored(_controller(uplink).call(uplink.charger_id, m.ClearChargingProfileRequest(id=pid)))


def clear_charging_profile(uplink, req):
    """
    ClearChargingProfile of the back office's own profiles only, one by id.
    """
    matching = [
        int(pid) for pid, (connector, purpose, level, *_) in uplink.relayed.profiles().items()
        if (req.id is None or int(pid) == req.id)
        and (req.connector_id is None or connector == req.connector_id)
        and (req.charging_profile_purpose is None or purpose == req.charging_profile_purpose)
        and (req.stack_level is None or level == req.stack_level)
    ]
    if not matching:
        return m.ClearChargingProfileResponse(status="Unknown")
    calls = [_controller(uplink).call(uplink.charger_id, m.ClearChargingProfileRequest(id=pid))
             for pid in matching]

    def cleared(results):
        for pid, result in zip(matching, results):
            if result.accepted or (result.response is not None
                                   and result.response.status == "Unknown"):
                uplink.relayed.profile_cleared(pid)
        if not any(r.response is not None for r in results):
            _answered(results[0])
        accepted = any(r.accepted for r in results)
        return m.ClearChargingProfileResponse(status="Accepted" if accepted else "Unknown")

    return defer.gatherResults(calls).addCallback(cleared)


def get_composite_schedule(uplink, req):
    """
    GetCompositeSchedule: what the charger will do, relayed.
    """
    return _relayed(uplink, req)


#: The handler of every back-office action we take, by its name in
#: L{messages.ACTIONS}.
RELAYS = {
    "CancelReservation": cancel_reservation,
    "ChangeAvailability": change_availability,
    "ChangeConfiguration": change_configuration,
    "ClearCache": clear_cache,
    "ClearChargingProfile": clear_charging_profile,
    "DataTransfer": data_transfer,
    "GetCompositeSchedule": get_composite_schedule,
    "GetConfiguration": get_configuration,
    "GetDiagnostics": _asking("DiagnosticsStatusNotification"),
    "GetLocalListVersion": get_local_list_version,
    "RemoteStartTransaction": remote_start,
    "RemoteStopTransaction": remote_stop,
    "ReserveNow": reserve_now,
    "Reset": reset,
    "SendLocalList": send_local_list,
    "SetChargingProfile": set_charging_profile,
    "TriggerMessage": trigger_message,
    "UnlockConnector": unlock_connector,
    "UpdateFirmware": _asking("FirmwareStatusNotification"),
}
