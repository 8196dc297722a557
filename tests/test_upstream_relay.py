"""
Unit tests for L{xxterocpp.upstream.relay} and L{xxterocpp.upstream.capping}:
the back office's CALLs, relayed to the charger through the controller or
intercepted, in memory on a clock (L{tests.upstream_memory}); both stacks.
"""

from datetime import datetime, timezone

from tests.upstream_memory import UpstreamTestCase
from xxterocpp.ocpp import messages as m
from xxterocpp.ocpp.rpc import CallError
from xxterocpp.store.records import TagRecord
from xxterocpp.upstream.capping import Collision, cap, limit_in_force


def profile(profile_id=7, level=3, limits=(32.0,), unit="A", purpose="TxDefaultProfile",
            phases=None, transaction_id=None):
    return m.ChargingProfile(
        charging_profile_id=profile_id, stack_level=level, transaction_id=transaction_id,
        charging_profile_purpose=purpose, charging_profile_kind="Absolute",
        charging_schedule=m.ChargingSchedule(
            charging_rate_unit=unit, start_schedule=datetime(2030, 1, 1, tzinfo=timezone.utc),
            charging_schedule_period=tuple(
                m.ChargingSchedulePeriod(start_period=i * 600, limit=limit,
                                         number_phases=phases)
                for i, limit in enumerate(limits))))


def limits(p):
    return [period.limit for period in p.charging_schedule.charging_schedule_period]


class RelayTestCase(UpstreamTestCase):

    def setUp(self):
        super().setUp()
        self.connect()
        self.charger.calls.clear()

    def ask(self, request):
        """
        @return: the charger's (or our) answer to a CALL of the back office.
        """
        d = self.office.call(request)
        self.turns(40)
        return self.successResultOf(d)

    def relayed(self, action):
        """
        @return: the payloads of C{action} the charger received.
        """
        return [p for u, a, p in self.charger.calls if a == action]


class CappingTests(RelayTestCase):
    """
    The building's limit over the back office's profiles.
    """

    def test_capped_to_the_limit_in_force(self):
        """
        Every period is capped to the limit in force (A), or to the same
        power (W) for the point's phases or the period's.
        """
        self.central.limit_in_force("CP1", 1, 10.0)
        capped = cap(self.central, "CP1", 1, profile(limits=(32.0, 6.0)))
        self.assertEqual(limits(capped), [10.0, 6.0])
        watts = cap(self.central, "CP1", 1, profile(limits=(22000.0,), unit="W"))
        self.assertEqual(limits(watts), [6900.0])
        one_phase = cap(self.central, "CP1", 1, profile(limits=(22000.0,), unit="W", phases=1))
        self.assertEqual(limits(one_phase), [2300.0])

    def test_no_limit_yet_means_max_current(self):
        """
        Before the controller put a limit in force, max_current holds; the
        whole charger (connector 0) has the sum of its points.
        """
        self.central.chargers["CP1"].connector(1).limit = None
        self.assertEqual(limit_in_force(self.central, "CP1", 1), 32.0)
        self.assertEqual(limit_in_force(self.central, "CP1", 0, "ChargePointMaxProfile"), 32.0)
        self.assertIsNone(limit_in_force(self.central, "CP1", 2))

    def test_whole_charger(self):
        """
        At connector 0 a ChargePointMaxProfile gets the sum of the points'
        limits, another purpose (it holds at each point) the lowest.
        """
        self.central.limit_in_force("OTHER", 1, 10.0)
        self.central.limit_in_force("OTHER", 2, 6.0)
        self.assertEqual(limit_in_force(self.central, "OTHER", 0, "ChargePointMaxProfile"),
                         16.0)
        self.assertEqual(limit_in_force(self.central, "OTHER", 0, "TxDefaultProfile"), 6.0)

    def test_collisions_refused(self):
        """
        The controller's profile ids and the stack levels it uses are not
        the back office's.
        """
        self.central.chargers["CP1"].configuration["ChargeProfileMaxStackLevel"] = m.KeyValue(
            key="ChargeProfileMaxStackLevel", readonly=True, value="8")
        for bad in (profile(profile_id=201), profile(profile_id=9101),
                    profile(level=8), profile(level=0),
                    profile(level=7, purpose="TxProfile"), profile(level=8, purpose="TxProfile")):
            self.assertRaises(Collision, cap, self.central, "CP1", 1, bad)
        cap(self.central, "CP1", 1, profile(level=5, purpose="TxProfile"))

    def test_set_charging_profile_relayed_capped(self):
        """
        SetChargingProfile reaches the charger capped; a colliding one does
        not reach it.
        """
        limit = limit_in_force(self.central, "CP1", 1)
        answer = self.ask(m.SetChargingProfileRequest(connector_id=1,
                                                      cs_charging_profiles=profile()))
        refused = self.ask(m.SetChargingProfileRequest(
            connector_id=1, cs_charging_profiles=profile(profile_id=101)))
        self.assertEqual((answer.status, refused.status), ("Accepted", "Rejected"))
        (sent,) = self.relayed("SetChargingProfile")
        periods = sent["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"]
        self.assertEqual(periods, [{"startPeriod": 0, "limit": limit}])

    def test_tx_profile_of_the_back_office_transaction(self):
        """
        A TxProfile names the back office's transaction; the charger gets
        ours; one of a transaction we do not know is refused.
        """
        tx = self.start()
        answer = self.ask(m.SetChargingProfileRequest(connector_id=1, cs_charging_profiles=profile(
            purpose="TxProfile", level=2, transaction_id=900001)))
        unknown = self.ask(m.SetChargingProfileRequest(connector_id=1, cs_charging_profiles=profile(
            purpose="TxProfile", level=2, transaction_id=5)))
        self.assertEqual((answer.status, unknown.status), ("Accepted", "Rejected"))
        sent = [p for p in self.relayed("SetChargingProfile")
                if p["csChargingProfiles"]["chargingProfileId"] == 7]
        self.assertEqual(sent[0]["csChargingProfiles"]["transactionId"], tx)

    def test_clear_only_its_own(self):
        """
        ClearChargingProfile removes the back office's profiles only.
        """
        self.ask(m.SetChargingProfileRequest(connector_id=1, cs_charging_profiles=profile(7)))
        self.ask(m.SetChargingProfileRequest(connector_id=1, cs_charging_profiles=profile(
            8, level=4)))
        everything = self.ask(m.ClearChargingProfileRequest())
        self.assertEqual(everything.status, "Accepted")
        self.assertEqual(sorted(p["id"] for p in self.relayed("ClearChargingProfile")), [7, 8])
        again = self.ask(m.ClearChargingProfileRequest())
        self.assertEqual(again.status, "Unknown")
        self.assertEqual(len(self.relayed("ClearChargingProfile")), 2)


class CommandRelayTests(RelayTestCase):
    """
    Commands relayed through the controller.
    """

    def test_remote_start_on_a_free_point(self):
        """
        Without a connector, the first point without a transaction; its
        profile is capped; the tag is then accepted at the start.
        """
        self.central.limit_in_force("CP1", 1, 12.0)
        answer = self.ask(m.RemoteStartTransactionRequest(
            id_tag="FLEET", charging_profile=profile(purpose="TxProfile", level=2)))
        self.assertEqual(answer.status, "Accepted")
        (sent,) = self.relayed("RemoteStartTransaction")
        self.assertEqual((sent["connectorId"], sent["idTag"]), (1, "FLEET"))
        period = sent["chargingProfile"]["chargingSchedule"]["chargingSchedulePeriod"][0]
        self.assertEqual(period["limit"], 12.0)
        self.assertEqual(self.answer("Authorize", {"idTag": "FLEET"})["idTagInfo"]["status"],
                         "Accepted")
        self.assertEqual(self.office.payloads("Authorize"), [])

    def test_remote_start_refused_by_local_rules(self):
        """
        Unavailable: refused without asking the charger.
        """
        self.answer("StatusNotification", {"connectorId": 1, "errorCode": "NoError",
                                           "status": "Unavailable"})
        answer = self.ask(m.RemoteStartTransactionRequest(connector_id=1, id_tag="FLEET"))
        self.assertEqual(answer.status, "Rejected")
        self.assertEqual(self.relayed("RemoteStartTransaction"), [])

    def test_remote_stop_by_the_back_office_id(self):
        """
        RemoteStopTransaction of the back office's id stops ours; of an id
        it never gave it is refused.
        """
        tx = self.start()
        self.assertEqual(self.ask(m.RemoteStopTransactionRequest(transaction_id=900001)).status,
                         "Accepted")
        self.assertEqual(self.relayed("RemoteStopTransaction"), [{"transactionId": tx}])
        self.assertEqual(self.ask(m.RemoteStopTransactionRequest(transaction_id=tx)).status,
                         "Rejected")

    def test_reset_refused_unless_allowed(self):
        """
        Reset is not relayed unless allow_reset.
        """
        self.assertEqual(self.ask(m.ResetRequest(type="Soft")).status, "Rejected")
        self.assertEqual(self.relayed("Reset"), [])

    def test_unanswered_command(self):
        """
        A charger that does not answer: the back office gets a CALLERROR.
        """
        self.charger.answers["UnlockConnector"] = None
        d = self.office.call(m.UnlockConnectorRequest(connector_id=1))
        self.turns()
        self.clock.advance(30)
        self.turns()
        failure = self.failureResultOf(d, CallError)
        self.assertEqual(failure.value.code, "GenericError")

    def test_unknown_connector(self):
        """
        A connector that is no charging point is refused.
        """
        self.assertEqual(self.ask(m.UnlockConnectorRequest(connector_id=2)).status,
                         "NotSupported")
        self.assertEqual(self.ask(m.RemoteStartTransactionRequest(
            connector_id=2, id_tag="X")).status, "Rejected")

    def test_not_relayed_action(self):
        """
        An action we do not relay (certificate management) gets a
        CALLERROR NotSupported.
        """
        d = self.office.call(m.DeleteCertificateRequest(certificate_hash_data=m.CertificateHashData(
            hash_algorithm="SHA256", issuer_name_hash="a", issuer_key_hash="b",
            serial_number="1")))
        self.turns()
        self.assertEqual(self.failureResultOf(d, CallError).value.code, "NotSupported")

    def test_firmware_status_to_the_back_office_that_asked(self):
        """
        After the back office's UpdateFirmware the charger's firmware
        statuses go there, until the final one.
        """
        self.answer("FirmwareStatusNotification", {"status": "Downloading"})
        self.ask(m.UpdateFirmwareRequest(location="http://x/",
                                         retrieve_date=datetime(2030, 1, 1,
                                                                tzinfo=timezone.utc)))
        for status in ("Downloading", "Installed", "Idle"):
            self.answer("FirmwareStatusNotification", {"status": status})
        self.assertEqual([p["status"] for p in self.office.payloads("FirmwareStatusNotification")],
                         ["Downloading", "Installed"])


class InterceptionTests(RelayTestCase):
    """
    What the back office says that never reaches the charger.
    """

    def change(self, key, value):
        return self.ask(m.ChangeConfigurationRequest(key=key, value=value)).status

    def test_authorization_key_adopted_for_the_next_connection(self):
        """
        The back office's AuthorizationKey is ours there from now on, kept
        across restarts, never the charger's.
        """
        self.assertEqual(self.uplink.password(), "")
        self.assertEqual(self.change("AuthorizationKey", "0123456789abcdef0123"), "Accepted")
        self.assertEqual(self.relayed("ChangeConfiguration"), [])
        self.assertEqual(self.store.settings[("CP1", "upstream/authorization_key")],
                         "0123456789abcdef0123")
        self.shutdown()
        self.build()
        self.assertEqual(self.upstream.uplinks["CP1"].password(), "0123456789abcdef0123")

    def test_virtual_intervals(self):
        """
        HeartbeatInterval and MeterValueSampleInterval are kept for the
        back office: it reads them back, our heartbeats follow it, the
        charger keeps the controller's.
        """
        self.assertEqual(self.change("HeartbeatInterval", "60"), "Accepted")
        self.assertEqual(self.change("MeterValueSampleInterval", "900"), "Accepted")
        self.assertEqual(self.change("HeartbeatInterval", "often"), "Rejected")
        self.assertEqual(self.relayed("ChangeConfiguration"), [])
        self.assertEqual(self.uplink.sample_interval, 900)
        self.office.calls.clear()
        self.clock.advance(60)
        self.turns()
        self.assertEqual(self.office.actions(), ["Heartbeat"])
        answer = self.ask(m.GetConfigurationRequest())
        keys = {kv.key: kv.value for kv in answer.configuration_key}
        self.assertEqual((keys["HeartbeatInterval"], keys["MeterValueSampleInterval"]),
                         ("60", "900"))
        self.assertIn("ChargeProfileMaxStackLevel", keys)
        self.assertNotIn("AuthorizationKey", keys)
        only = self.ask(m.GetConfigurationRequest(key=("HeartbeatInterval",)))
        self.assertEqual(only.configuration_key, (m.KeyValue(
            key="HeartbeatInterval", readonly=False, value="60"),))

    def test_protected_keys_refused(self):
        """
        Keys that would move the charger away are refused; others relayed.
        """
        for key in ("SecurityProfile", "CentralSystemURL", "OcppUrl", "BackendHost",
                    "ChargeBoxIdentity"):
            self.assertEqual((key, self.change(key, "x")), (key, "Rejected"))
        self.assertEqual(self.change("ConnectionTimeOut", "90"), "Accepted")
        self.assertEqual(self.relayed("ChangeConfiguration"),
                         [{"key": "ConnectionTimeOut", "value": "90"}])

    def test_local_list_merged(self):
        """
        A Full list replaces the back office's tags (not the controller's
        own), a Differential one updates them; the version is its own.
        """
        self.successResultOf(self.central.tags.put(TagRecord("MINE", "Accepted", None, None)))
        first = m.SendLocalListRequest(list_version=3, update_type="Full",
                                       local_authorization_list=(
            m.AuthorizationData(id_tag="FLEET", id_tag_info=m.IdTagInfo(status="Accepted")),
            m.AuthorizationData(id_tag="OLD", id_tag_info=m.IdTagInfo(status="Invalid")),
            m.AuthorizationData(id_tag="MINE", id_tag_info=m.IdTagInfo(status="Blocked"))))
        self.assertEqual(self.ask(first).status, "Accepted")
        tags = self.central.tags
        self.assertEqual((tags.get("FLEET").status, tags.get("OLD").status,
                          tags.get("MINE").status), ("Accepted", "Blocked", "Accepted"))
        self.assertEqual(self.ask(m.GetLocalListVersionRequest()).list_version, 3)
        self.ask(m.SendLocalListRequest(list_version=4, update_type="Differential",
                                        local_authorization_list=(
            m.AuthorizationData(id_tag="OLD"),
            m.AuthorizationData(id_tag="NEW", id_tag_info=m.IdTagInfo(status="Accepted")))))
        self.assertIsNone(tags.get("OLD"))
        self.assertEqual(tags.get("NEW").status, "Accepted")
        self.ask(m.SendLocalListRequest(list_version=5, update_type="Full"))
        self.assertEqual((tags.get("FLEET"), tags.get("NEW")), (None, None))
        self.assertEqual(tags.get("MINE").status, "Accepted")
        # The controller brought the charger's own list in step.
        pushed = {e["idTag"] for p in self.relayed("SendLocalList")
                  for e in p.get("localAuthorizationList", ())}
        self.assertIn("FLEET", pushed)

    def test_trigger_boot_heartbeat_status(self):
        """
        TriggerMessage of what we say as the charger is answered here.
        """
        self.office.calls.clear()
        for requested in ("BootNotification", "Heartbeat", "StatusNotification"):
            self.assertEqual(self.ask(m.TriggerMessageRequest(
                requested_message=requested)).status, "Accepted")
        self.assertEqual(self.relayed("TriggerMessage"), [])
        self.assertEqual(self.office.actions()[:2], ["BootNotification", "Heartbeat"])
