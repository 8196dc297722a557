# -*- test-case-name: tests.test_station,tests.test_server -*-
"""
The central system's view of every charger: connections, boots, statuses,
transactions and meter readings, and the events observers see.
"""

from collections import OrderedDict, deque
from functools import partial

import attr
from twisted.internet import defer
from twisted.logger import Logger

from xxterocpp.domain.events import (
    ChargerBooted, ChargerConnected, ChargerDisconnected, LimitChanged, MeterChanged,
    StateLoaded, StatusChanged, TagsChanged, TransactionStarted, TransactionStopped,
)
from xxterocpp.domain.keys import (
    KEY_IN_FRAME, PENDING_AUTHORIZATION_KEY, new_authorization_key, password_matches,
    valid_authorization_key,
)
from xxterocpp.domain.meter import read_meter_values
from xxterocpp.domain.model import (
    Charger, Transaction, UnknownCharger, casefold, shared, utc_from_seconds,
)
from xxterocpp.domain.tags import TagRegistry, tag_status
from xxterocpp.ocpp import messages as m
from xxterocpp.ocpp.rpc import CallError, CallTimeout, NotConnected

#: How many unknown identities are remembered (a flood of random ids must not
#: grow memory without bound).
MAX_UNKNOWN = 100

#: How many finished transactions are kept in memory, to answer a retried
#: StartTransaction with the same id and to recognise late meter values.
RECENT_TRANSACTIONS = 200

#: Boot fields that most chargers of a fleet share.
_FLEET_WIDE = frozenset({"vendor", "model", "firmware", "meter_type"})


def _acknowledge_status(name, response):
    """
    @return: a handler that records a charger's progress report (firmware,
        diagnostics, log upload) for the status page and acknowledges it.
    """

    def handle(self, charger, req):
        charger.notifications[name] = (self.now(), req.status)
        self.log.info("{id}: {name} {status}", id=charger.id, name=name, status=req.status)
        return response()

    return handle


class CentralSystem:
    """
    The central system's view of every charger.

    @ivar chargers: L{Charger} by identity, for every configured identity.
    @ivar unknown: L{UnknownCharger} by identity, most recent last.
    @ivar settings: the persisted run-time settings, C{{(scope, key):
        value}}, once L{load}ed (L{StateLoaded} is emitted then).
    """

    log = Logger()

    def __init__(self, config, store, clock):
        self.config = config
        self.store = store
        self.clock = clock
        self.chargers = {}
        self.unknown = OrderedDict()
        self.tags = TagRegistry(config.tags, on_change=lambda: self._emit(TagsChanged()))
        self.settings = {}
        self._observers = []
        self._transactions = {}
        self._recent = OrderedDict()
        self._dedup = {}
        self._last_transaction_id = 0
        self._apply_chargers(config)

    # -- set-up ----------------------------------------------------------

    def now(self):
        return utc_from_seconds(self.clock.seconds())

    def load(self):
        """
        Restore the persisted state (at start-up, before chargers connect).
        """
        store = self.store
        self._last_transaction_id = store.last_transaction_id()
        for record in store.load_recent_transactions(RECENT_TRANSACTIONS):
            self._remember(Transaction.from_record(record))
        for record in store.load_open_transactions():
            tx = self._transactions.get(record.id) or Transaction.from_record(record)
            self._remember(tx)
            charger = self.chargers.get(tx.charger_id)
            if charger is not None and tx.running:
                charger.connector(tx.connector).transaction = tx
        for row in store.load_connector_status():
            charger = self.chargers.get(row.charger_id)
            if charger is not None:
                c = charger.connector(row.connector)
                c.status, c.error_code, c.info, c.status_time = (
                    row.status, row.error_code, row.info, row.at)
        for row in store.load_unknown_chargers():
            self.unknown[row.identity] = UnknownCharger(
                row.identity, row.address, row.first_seen, row.last_seen, row.count)
        self.settings = store.load_settings()
        for (scope, key), value in self.settings.items():
            charger = self.chargers.get(scope)
            if charger is not None and key == "boot" and isinstance(value, dict):
                charger.boot = value
        self._trim_unknown()
        self._emit(StateLoaded())

    def _apply_chargers(self, config):
        wanted = config.charger_ids()[: config.ocpp.max_chargers]
        for charger_id in wanted:
            charger = self.chargers.setdefault(charger_id, Charger(charger_id))
            for point in config.charging_points(charger_id):
                charger.connector(point.connector)
        for charger_id in list(self.chargers):
            if charger_id not in wanted:
                charger = self.chargers.pop(charger_id)
                if charger.session is not None:
                    self.log.info("{id}: removed from the configuration, disconnecting",
                                  id=charger_id)
                    charger.session.close()

    def reconfigure(self, config):
        """
        Apply a re-read configuration (SIGHUP): chargers that stay keep their
        connection and state.
        """
        old = self.config
        self.config = config
        self.tags.configure(config.tags)
        self._apply_chargers(config)
        if (old.ocpp.interface, old.ocpp.port, old.ocpp.secure) != (
                config.ocpp.interface, config.ocpp.port, config.ocpp.secure):
            self.log.warn("[ocpp] interface/port/secure changed: restart the service to apply")

    def subscribe(self, observer):
        """
        Call C{observer(event)} for every domain event.
        """
        self._observers.append(observer)

    def _emit(self, event):
        for observer in list(self._observers):
            try:
                observer(event)
            except Exception:
                self.log.failure("an observer failed on {event}", event=type(event).__name__)

    def limit_in_force(self, charger_id, connector, limit):
        """
        Record the current limit a charger accepted for a connector (the
        control model applied it); L{LimitChanged} when it differs.
        """
        c = self.chargers[charger_id].connector(connector)
        if c.limit != limit:
            c.limit = limit
            self.log.info("{id}/{connector}: limit {limit} A in force", id=charger_id,
                          connector=connector, limit=limit)
            self._emit(LimitChanged(charger_id, connector, limit))

    def reserved(self, charger_id, connector, reservation):
        """
        Record a reservation the charger accepted, or None once it is freed.
        """
        self.chargers[charger_id].connector(connector).reservation = reservation

    def _remember(self, tx):
        self._transactions[tx.id] = tx
        if tx.dedup_key:
            self._dedup[tx.dedup_key] = tx
        if not tx.running:
            self._recent[tx.id] = tx
            while len(self._recent) > RECENT_TRANSACTIONS:
                old_id, old = self._recent.popitem(last=False)
                self._transactions.pop(old_id, None)
                self._dedup.pop(old.dedup_key, None)

    # -- connections -----------------------------------------------------

    def lookup(self, identity):
        """
        @return: the configured identity matching C{identity} (exactly, or
            else ignoring case: chargers' UIs change case), or None.
        """
        if identity in self.chargers:
            return identity
        folded = identity.casefold()
        for charger_id in self.chargers:
            if charger_id.casefold() == folded:
                return charger_id
        return None

    def record_unknown(self, identity, address):
        """
        Remember an unknown identity trying to connect.
        """
        now = self.now()
        entry = self.unknown.pop(identity, None)
        if entry is None:
            entry = UnknownCharger(identity, address, now, now, 0)
            self.log.warn("unknown charger {identity!r} from {address} tried to connect: "
                          "add it as a [[charger]] id to the configuration to serve it",
                          identity=identity, address=address)
        entry.address, entry.last_seen = address, now
        entry.count += 1
        self.unknown[identity] = entry
        self._trim_unknown()
        self._persist(self.store.record_unknown_attempt(identity, address, now))

    def _trim_unknown(self):
        while len(self.unknown) > MAX_UNKNOWN:
            self.unknown.popitem(last=False)

    def password_for(self, charger_id):
        """
        @return: the Basic-auth password a charger must present, or "": a
            rotated AuthorizationKey (L{set_password}) wins over the
            configured password.
        """
        rotated = self.settings.get((charger_id, "authorization_key"))
        if rotated:
            return rotated
        points = self.config.charging_points(charger_id)
        return points[0].password if points else ""

    def set_password(self, charger_id, key):
        """
        Make C{key} the charger's Basic-auth password from now on: call it
        once the charger accepted the new AuthorizationKey. It persists
        across restarts.

        @return: a Deferred firing once it is stored.
        """
        self.settings[(charger_id, "authorization_key")] = key
        return self._persist(self.store.put_setting(charger_id, "authorization_key", key))

    def check_password(self, charger_id, presented):
        """
        @param presented: the password bytes of the Authorization header, or
            None without one.
        @return: True when the charger needs no password or presented it.
        """
        configured = self.password_for(charger_id)
        pending = self.settings.get((charger_id, PENDING_AUTHORIZATION_KEY))
        if pending and presented is not None and password_matches(pending, presented):
            # The charger took the new key although its answer got lost.
            self.log.info("{id}: connected with its new AuthorizationKey, the old one is no"
                          " longer accepted", id=charger_id)
            self.set_password(charger_id, pending)
            self._set_pending_key(charger_id, None)
            return True
        if configured and (presented is None or not password_matches(configured, presented)):
            return False
        if pending:
            self.log.info("{id}: connected with its old AuthorizationKey, it did not take the"
                          " new one", id=charger_id)
            self._set_pending_key(charger_id, None)
        return True

    def _set_pending_key(self, charger_id, key):
        if key is None:
            self.settings.pop((charger_id, PENDING_AUTHORIZATION_KEY), None)
            d = self.store.delete_setting(charger_id, PENDING_AUTHORIZATION_KEY)
        else:
            self.settings[(charger_id, PENDING_AUTHORIZATION_KEY)] = key
            d = self.store.put_setting(charger_id, PENDING_AUTHORIZATION_KEY, key)
        return self._persist(d)

    def begin_key_change(self, charger_id, key):
        """
        A ChangeConfiguration(AuthorizationKey) with C{key} is about to be
        sent to the charger. The key is stored before sending: a restart
        while waiting must not lock the charger out if it took the key.

        @return: a Deferred firing once it is stored.
        """
        return self._set_pending_key(charger_id, key)

    def end_key_change(self, charger_id, key, status):
        """
        The outcome of a ChangeConfiguration(AuthorizationKey) with C{key}:
        the charger's status word, or C{"Timeout"}, C{"NotConnected"},
        C{"CallError"}. Accepted: only the new key is accepted from now on,
        also after a restart (A01.FR.03); Rejected, NotSupported or a
        CALLERROR: the old one stays (A01.FR.04); without an answer, or
        RebootRequired, both are accepted until the charger connects with
        one of them, so a lost answer cannot lock it out.

        @return: a Deferred firing once the outcome is stored.
        """
        if status in ("Timeout", "NotConnected"):
            self.log.warn("{id}: no answer to the AuthorizationKey change; the old and the new"
                          " key are accepted until it connects with one", id=charger_id)
            return defer.succeed(None)
        if status == "RebootRequired":
            # The charger takes the key when it restarts.
            self.log.info("{id}: takes the new AuthorizationKey after a reboot", id=charger_id)
            return defer.succeed(None)
        d = self._set_pending_key(charger_id, None)
        if status == "Accepted":
            d = self.set_password(charger_id, key)
            self.log.info("{id}: accepted a new AuthorizationKey; the old one is no longer"
                          " accepted", id=charger_id)
        elif status != "CallError":
            self.log.warn("{id}: AuthorizationKey change {status}; the old key stays",
                          id=charger_id, status=status)
        return d

    def connected(self, charger_id, session, address):
        """
        A charger's WebSocket is open; a previous one is replaced.
        """
        charger = self.chargers[charger_id]
        old = charger.session
        if old is not None:
            charger.reconnects += 1
            self.log.info("{id}: new connection from {address} replaces the old one",
                          id=charger_id, address=address)
            charger.session = None
            old.close()
        else:
            self.log.info("{id}: connected from {address}", id=charger_id, address=address)
        now = self.now()
        charger.session, charger.address = session, address
        charger.connected_since = charger.last_seen = now
        self._emit(ChargerConnected(charger_id))

    def disconnected(self, charger_id, session):
        """
        A charger's WebSocket closed (ignored for a replaced connection).
        """
        charger = self.chargers.get(charger_id)
        if charger is None or charger.session is not session:
            return
        charger.session = None
        charger.disconnected_since = self.now()
        self.log.info("{id}: disconnected", id=charger_id)
        self._emit(ChargerDisconnected(charger_id))

    def frame(self, charger_id, direction, text):
        """
        Keep an OCPP frame for the status page.
        """
        charger = self.chargers.get(charger_id)
        if charger is not None:
            # The status page must not show a new AuthorizationKey (A01.FR.09).
            if '"AuthorizationKey"' in text:
                text = KEY_IN_FRAME.sub(r'\1"********"', text)
            seconds = self.clock.seconds()
            charger.frames.add(seconds, direction, text)
            if direction == "in":
                charger._last_seen_s = seconds

    def dispatcher(self, charger_id):
        """
        @return: the C{dispatch(action, request)} for one charger's session.
        """
        return partial(self.dispatch, charger_id)

    def dispatch(self, charger_id, action, request):
        """
        Handle a CALL of a charger: the response message (or a Deferred of
        it); L{CallError} answers with a CALLERROR.
        """
        charger = self.chargers.get(charger_id)
        if charger is None:
            raise LookupError(f"{charger_id} is no longer configured")
        return getattr(self, _HANDLERS[action])(charger, request)

    def _persist(self, d):
        # The store logs and retries failed writes itself; nothing to do here
        # but keep the failure from being reported as unhandled.
        d.addErrback(lambda failure: None)
        return d

    # -- authorisation ---------------------------------------------------

    def authorize(self, charger_id, connector, id_tag):
        """
        Decide whether C{id_tag} may charge at a charging point.

        @return: an C{IdTagInfo}.
        """
        now = self.now()
        point = self.config.charger(charger_id, connector) if connector else None
        points = [point] if point else self.config.charging_points(charger_id)
        folded = casefold(id_tag)
        entry = self.tags.get(id_tag)
        parent = entry.parent if entry else None
        expiry = entry.expiry if entry else None
        if any(folded == casefold(p.remote_tag) or (p.smart_tag and folded == casefold(p.smart_tag))
               for p in points):
            # Our own tags: remote starts and the Smart Energy Manager's.
            return m.IdTagInfo(status="Accepted", parent_id_tag=parent, expiry_date=expiry)
        if entry is not None:
            status = tag_status(entry, now)
            if status != "Accepted":
                return m.IdTagInfo(status=status, parent_id_tag=parent, expiry_date=expiry)
        allowed = False
        for p in points:
            allowed_tags = {casefold(t) for t in p.allowed_tags}
            if "*" in allowed_tags or folded in allowed_tags or (
                    parent and casefold(parent) in allowed_tags):
                allowed = True
        return m.IdTagInfo(status="Accepted" if allowed else "Invalid",
                           parent_id_tag=parent, expiry_date=expiry)

    # -- CP -> CS actions ------------------------------------------------

    def on_boot_notification(self, charger, req):
        boot = {
            # A fleet shares its vendor, model and firmware: one copy each.
            key: shared(value) if key in _FLEET_WIDE else value
            for key, value in (
                ("vendor", req.charge_point_vendor), ("model", req.charge_point_model),
                ("serial", req.charge_point_serial_number or req.charge_box_serial_number),
                ("firmware", req.firmware_version), ("meter_type", req.meter_type),
                ("meter_serial", req.meter_serial_number), ("iccid", req.iccid),
                ("imsi", req.imsi))
            # What the charger did not send is left out (read with .get()).
            if value is not None
        }
        if boot != charger.boot:
            # A reconnect storm after a controller restart writes nothing.
            charger.boot = boot
            self._persist(self.store.put_setting(charger.id, "boot", boot))
        charger.booted_at = self.now()
        self.log.info("{id}: booted ({vendor} {model}, firmware {firmware})", id=charger.id,
                      vendor=req.charge_point_vendor, model=req.charge_point_model,
                      firmware=req.firmware_version)
        self.clock.callLater(0, self._emit, ChargerBooted(charger.id))
        return m.BootNotificationResponse(
            status="Accepted", current_time=self.now(),
            interval=self.config.ocpp.heartbeat_interval)

    def on_heartbeat(self, charger, req):
        return m.HeartbeatResponse(current_time=self.now())

    def on_status_notification(self, charger, req):
        at = req.timestamp or self.now()
        if req.connector_id == 0:
            charger.status = req.status
            return m.StatusNotificationResponse()
        c = charger.connector(req.connector_id)
        changed = (c.status, c.error_code) != (req.status, req.error_code)
        if c.status == "Reserved" and req.status in ("Available", "Unavailable", "Faulted"):
            # OCPP 1.6 §5.13: expiry, a fault or unavailability ends the
            # reservation at the charger.
            c.reservation = None
        c.status, c.error_code, c.info = req.status, req.error_code, req.info
        c.vendor_error_code, c.status_time = req.vendor_error_code, at
        if req.status in ("Available", "SuspendedEV", "SuspendedEVSE", "Finishing",
                          "Unavailable", "Faulted") and (c.currents or c.power_w):
            # No current flows in these states, whatever the last sample said.
            c.currents = {phase: 0.0 for phase in c.currents}
            c.power_w = 0.0 if c.power_w is not None else None
            self._emit(MeterChanged(charger.id, c.number))
        if changed:
            self.log.info("{id}/{connector}: {status} ({error})", id=charger.id,
                          connector=c.number, status=req.status, error=req.error_code)
            self._emit(StatusChanged(charger.id, c.number))
        self._persist(self.store.save_connector_status(
            charger.id, c.number, req.status, req.error_code, req.info, at))
        return m.StatusNotificationResponse()

    def on_authorize(self, charger, req):
        info = self.authorize(charger.id, None, req.id_tag)
        self.log.info("{id}: Authorize {tag}: {status}", id=charger.id, tag=req.id_tag,
                      status=info.status)
        return m.AuthorizeResponse(id_tag_info=info)

    def on_start_transaction(self, charger, req):
        key = "|".join((charger.id, str(req.connector_id), casefold(req.id_tag),
                        str(req.meter_start), req.timestamp.isoformat()))
        known = self._dedup.get(key)
        if known is not None:
            # A retry of a StartTransaction we answered already (the answer
            # was lost): same id, same verdict, nothing booked twice.
            return m.StartTransactionResponse(
                transaction_id=known.id, id_tag_info=m.IdTagInfo(status=known.start_status))
        info = self.authorize(charger.id, req.connector_id, req.id_tag)
        connector = charger.connector(req.connector_id)
        if info.status == "Accepted" and self._concurrent(charger.id, req.connector_id, req.id_tag):
            info = attr.evolve(info, status="ConcurrentTx")
        self._last_transaction_id += 1
        tx = Transaction(
            id=self._last_transaction_id, charger_id=charger.id, connector=req.connector_id,
            id_tag=req.id_tag, start_time=req.timestamp, meter_start=req.meter_start,
            reservation_id=req.reservation_id, start_status=info.status, dedup_key=key,
        )
        previous = connector.transaction
        if previous is not None and previous.running:
            # The charger started anew without stopping the old session (a
            # StopTransaction was lost): the new meterStart closes it.
            self.log.warn("{id}/{connector}: transaction {old} never stopped; closing it at "
                          "the new meterStart", id=charger.id, connector=req.connector_id,
                          old=previous.id)
            self._close(previous, req.meter_start, req.timestamp, "Other", None)
        self._remember(tx)
        connector.transaction = tx
        connector.energy_register_wh = req.meter_start
        # OCPP 1.6 §5.13: a transaction on the reserved connector ends the
        # reservation.
        connector.reservation = None
        self.log.info("{id}/{connector}: transaction {tx} started by {tag} ({status}), "
                      "meter {meter} Wh", id=charger.id, connector=req.connector_id, tx=tx.id,
                      tag=req.id_tag, status=info.status, meter=req.meter_start)
        self._emit(TransactionStarted(tx.charger_id, tx.connector, tx))
        d = self.store.insert_transaction(tx)
        d.addErrback(lambda failure: None)
        # Answer once the transaction is durable: a charger that saw its
        # transactionId must find it again after a crash.
        d.addCallback(lambda ignored: m.StartTransactionResponse(
            transaction_id=tx.id, id_tag_info=info))
        return d

    def _concurrent(self, charger_id, connector, id_tag):
        points = self.config.charging_points(charger_id)
        if any(casefold(id_tag) == casefold(p.remote_tag) for p in points):
            return False
        folded = casefold(id_tag)
        return any(tx.running and casefold(tx.id_tag) == folded
                   and (tx.charger_id, tx.connector) != (charger_id, connector)
                   for tx in self._transactions.values())

    def _close(self, tx, meter_stop, stop_time, reason, id_tag):
        tx.meter_stop, tx.stop_time, tx.stop_reason, tx.stop_id_tag = (
            meter_stop, stop_time, reason, id_tag)
        charger = self.chargers.get(tx.charger_id)
        if charger is not None:
            connector = charger.connector(tx.connector)
            if connector.transaction is tx:
                connector.transaction = None
                if connector.currents or connector.power_w:
                    connector.currents = {phase: 0.0 for phase in connector.currents}
                    connector.power_w = 0.0 if connector.power_w is not None else None
                    self._emit(MeterChanged(tx.charger_id, connector.number))
        self._remember(tx)
        self.log.info("{id}/{connector}: transaction {tx} stopped ({reason}), {energy} Wh",
                      id=tx.charger_id, connector=tx.connector, tx=tx.id,
                      reason=reason, energy=tx.energy_wh)
        self._emit(TransactionStopped(tx.charger_id, tx.connector, tx))
        return self.store.stop_transaction(tx.id, meter_stop, stop_time, reason, id_tag)

    def on_stop_transaction(self, charger, req):
        now = self.now()
        stop_time = req.timestamp or now
        # OCPP 1.6 §6.49: an absent reason means Local.
        reason = req.reason or "Local"
        info = self.authorize(charger.id, None, req.id_tag) if req.id_tag else None
        response = m.StopTransactionResponse(id_tag_info=info)
        tx = self._transactions.get(req.transaction_id)
        if tx is None or tx.charger_id != charger.id or not tx.running:
            why = "unknown" if tx is None or tx.charger_id != charger.id else "already stopped"
            self.log.warn("{id}: StopTransaction for {why} transaction {tx} acknowledged and "
                          "recorded", id=charger.id, why=why, tx=req.transaction_id)
            d = self.store.record_orphan_stop(
                charger.id, req.transaction_id, req.meter_stop, stop_time, reason, now, why)
        else:
            if req.transaction_data:
                self._apply_meter_values(charger, tx.connector, tx, req.transaction_data)
            meter_stop = req.meter_stop
            if meter_stop is None:
                # Meter-less chargers (Phoenix CHARX free mode) omit it.
                meter_stop = tx.energy_register_wh
            d = self._close(tx, meter_stop, stop_time, reason, req.id_tag)
        d.addErrback(lambda failure: None)
        d.addCallback(lambda ignored: response)
        return d

    def on_meter_values(self, charger, req):
        if req.connector_id is None or not req.meter_value:
            return m.MeterValuesResponse()
        if req.connector_id == 0:
            # The charger's main meter: not a charging point.
            return m.MeterValuesResponse()
        connector = charger.connector(req.connector_id)
        tx = connector.transaction
        if req.transaction_id is not None and (tx is None or tx.id != req.transaction_id):
            known = self._transactions.get(req.transaction_id)
            if known is not None and not known.running:
                # Closing values after StopTransaction (Ocular LTE): the
                # session is booked, only the live readings move on.
                tx = None
        self._apply_meter_values(charger, req.connector_id, tx, req.meter_value)
        return m.MeterValuesResponse()

    def _apply_meter_values(self, charger, connector_id, tx, meter_values):
        connector = charger.connector(connector_id)
        reading = read_meter_values(meter_values)
        if not reading:
            return
        if "energy_wh" in reading:
            connector.energy_register_wh = reading["energy_wh"]
            if tx is not None and tx.running:
                tx.energy_register_wh = reading["energy_wh"]
                tx.energy_register_time = reading["timestamp"]
                self._persist(self.store.update_meter(
                    tx.id, reading["energy_wh"], reading["timestamp"] or self.now()))
        if "currents" in reading:
            connector.currents = reading["currents"]
        if "power_w" in reading:
            connector.power_w = reading["power_w"]
        if "current_offered" in reading:
            connector.current_offered = reading["current_offered"]
        connector.meter_time = reading["timestamp"]
        self._emit(MeterChanged(charger.id, connector_id))

    def on_data_transfer(self, charger, req):
        self.log.info("{id}: DataTransfer from vendor {vendor!r} ({message!r}) not understood",
                      id=charger.id, vendor=req.vendor_id, message=req.message_id)
        return m.DataTransferResponse(status="UnknownVendorId")

    on_diagnostics_status_notification = _acknowledge_status(
        "DiagnosticsStatusNotification", m.DiagnosticsStatusNotificationResponse)
    on_firmware_status_notification = _acknowledge_status(
        "FirmwareStatusNotification", m.FirmwareStatusNotificationResponse)
    on_log_status_notification = _acknowledge_status(
        "LogStatusNotification", m.LogStatusNotificationResponse)
    on_signed_firmware_status_notification = _acknowledge_status(
        "SignedFirmwareStatusNotification", m.SignedFirmwareStatusNotificationResponse)

    def on_security_event_notification(self, charger, req):
        # White paper A04.FR.03: every security event is confirmed.
        if not isinstance(charger.security_events, deque):
            charger.security_events = deque(charger.security_events, maxlen=20)
        charger.security_events.append((req.timestamp, req.type, req.tech_info))
        self.log.warn("{id}: security event {type} {info}", id=charger.id, type=req.type,
                      info=req.tech_info or "")
        return m.SecurityEventNotificationResponse()

    def on_sign_certificate(self, charger, req):
        # Signing charger certificates (security profile 3 via CSR) is done
        # offline with xxterocpp-certs; refuse the on-line request.
        return m.SignCertificateResponse(status="Rejected")


def _snake(name):
    return "".join("_" + ch.lower() if ch.isupper() else ch for ch in name).lstrip("_")


#: The CP->CS actions and the methods of L{CentralSystem} handling them.
_HANDLERS = {name: "on_" + _snake(name)
             for name, action in m.ACTIONS.items() if action.direction != "CS->CP"}
for _name, _method in _HANDLERS.items():
    assert hasattr(CentralSystem, _method), _method
