"""
Tests of L{xxterocpp.control.keys}: AuthorizationKey rotation, by command
and through the raw API, against a scripted charger on a fake clock. The
rotation over real WebSockets and TLS is in C{test_tls}.
"""

from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from tests.test_control import CONFIG, ControllerHarness
from xxterocpp.control import UnknownChargingPoint
from xxterocpp.domain.keys import PENDING_AUTHORIZATION_KEY
from xxterocpp.ocpp import messages as m

OLD_KEY = "old-password-0001"
NEW_KEY = "00112233445566778899AABBCCDDEEFF01234567"


class KeyRotationTests(ControllerHarness, SynchronousTestCase):
    """
    A charger logging in with C{OLD_KEY} gets C{NEW_KEY}.
    """

    config = CONFIG.replace("normal_current = 16\n",
                            f'normal_current = 16\npassword = "{OLD_KEY}"\n')

    def accepts(self, key):
        return self.central.credentials.check_password("CP1", key.encode())

    def pending(self):
        return self.central.settings.get(("CP1", PENDING_AUTHORIZATION_KEY))

    def rotate(self, answer=None, key=NEW_KEY):
        cp = self.connect()
        cp.take()
        if answer is not None:
            cp.answers["ChangeConfiguration"] = answer
        status = self.result(self.controller.security.change_authorization_key("CP1", key))
        return cp, status

    def test_accepted_key_replaces_the_old(self):
        cp, status = self.rotate()
        self.assertEqual(status, "Accepted")
        self.assertEqual(cp.payloads("ChangeConfiguration"),
                         [{"key": "AuthorizationKey", "value": NEW_KEY}])
        self.assertTrue(self.accepts(NEW_KEY))
        self.assertFalse(self.accepts(OLD_KEY))
        self.assertIsNone(self.pending())
        self.start()
        self.assertTrue(self.accepts(NEW_KEY))
        self.assertFalse(self.accepts(OLD_KEY))

    def test_generated_key(self):
        """
        Without a key, 20 random bytes as 40 hex digits.
        """
        cp, status = self.rotate(key=None)
        self.assertEqual(status, "Accepted")
        [payload] = cp.payloads("ChangeConfiguration")
        self.assertEqual(len(bytes.fromhex(payload["value"])), 20)
        self.assertEqual(self.central.credentials.password_for("CP1"), payload["value"])

    def test_refusals_keep_the_old_key(self):
        """
        Rejected, NotSupported or a CALLERROR: the old key stays, the new one
        is not accepted.
        """
        for answer, word in [({"status": "Rejected"}, "Rejected"),
                             ({"status": "NotSupported"}, "NotSupported"),
                             (("CALLERROR", "InternalError"), "CallError")]:
            with capturedLogs() as logged:
                _, status = self.rotate(answer)
            self.assertEqual(status, word)
            self.assertTrue(self.accepts(OLD_KEY), word)
            self.assertFalse(self.accepts(NEW_KEY), word)
            self.assertIsNone(self.pending(), word)
            self.assertFalse([e for e in logged if NEW_KEY in repr(e)], word)

    def lost_answer(self):
        cp = self.connect()
        cp.answers["ChangeConfiguration"] = None
        d = self.controller.security.change_authorization_key("CP1", NEW_KEY)
        self.clock.advance(5)
        self.assertEqual(self.successResultOf(d), "Timeout")
        self.assertEqual(self.pending(), NEW_KEY)

    def test_lost_answer_then_the_new_key(self):
        """
        No answer: the charger may have taken the key or not; when it comes
        back with the new one, only that one holds from then on.
        """
        self.lost_answer()
        self.assertTrue(self.accepts(NEW_KEY))
        self.assertFalse(self.accepts(OLD_KEY))
        self.assertIsNone(self.pending())

    def test_lost_answer_then_the_old_key(self):
        self.lost_answer()
        self.assertTrue(self.accepts(OLD_KEY))
        self.assertFalse(self.accepts(NEW_KEY))
        self.assertIsNone(self.pending())

    def test_reboot_required_keeps_both_until_one_is_used(self):
        _, status = self.rotate({"status": "RebootRequired"})
        self.assertEqual(status, "RebootRequired")
        self.assertEqual(self.pending(), NEW_KEY)
        self.assertTrue(self.accepts(NEW_KEY))
        self.assertFalse(self.accepts(OLD_KEY))

    def test_offline_charger_is_not_asked(self):
        status = self.result(self.controller.security.change_authorization_key("CP1", NEW_KEY))
        self.assertEqual(status, "NotConnected")
        self.assertIsNone(self.pending())
        self.assertTrue(self.accepts(OLD_KEY))

    def test_bad_keys_and_unknown_chargers_raise(self):
        for key in ("short", "0011", "G" * 40, "x" * 21, "00" * 21, "a:" * 9):
            self.assertRaises(ValueError, self.controller.security.change_authorization_key,
                              "CP1", key)
        self.assertRaises(UnknownChargingPoint, self.controller.security.change_authorization_key,
                          "NOPE", NEW_KEY)

    def test_raw_send_rotates_the_key(self):
        """
        A ChangeConfiguration of the AuthorizationKey sent through the raw
        API is a rotation: accepted, the new key is the charger's password.
        """
        cp = self.connect()
        cp.take()
        result = self.result(self.controller.send(
            "CP1", "ChangeConfiguration", {"key": "AuthorizationKey", "value": NEW_KEY}))
        self.assertEqual((result.accepted, result.status, result.response),
                         (True, "Accepted", {"status": "Accepted"}))
        self.assertEqual(cp.payloads("ChangeConfiguration"),
                         [{"key": "AuthorizationKey", "value": NEW_KEY}])
        self.assertTrue(self.accepts(NEW_KEY))
        self.assertFalse(self.accepts(OLD_KEY))

    def test_typed_call_rotates_the_key(self):
        """
        The same through L{Controller.call}, whatever the key's case.
        """
        cp = self.connect()
        cp.answers["ChangeConfiguration"] = {"status": "Rejected"}
        request = m.ChangeConfigurationRequest(key="authorizationKey", value=NEW_KEY)
        result = self.result(self.controller.call("CP1", request))
        self.assertEqual(result.status, "Rejected")
        self.assertTrue(self.accepts(OLD_KEY))
        del cp.answers["ChangeConfiguration"]
        self.assertTrue(self.result(self.controller.call("CP1", request)).accepted)
        self.assertTrue(self.accepts(NEW_KEY))
        self.assertFalse(self.accepts(OLD_KEY))

    def test_raw_send_of_a_bad_key_is_refused(self):
        """
        The raw API cannot give a charger a key it could not log in with.
        """
        cp = self.connect()
        cp.take()
        result = self.result(self.controller.send(
            "CP1", "ChangeConfiguration", {"key": "AuthorizationKey", "value": "a:b"}))
        self.assertEqual((result.accepted, result.status), (False, "Invalid"))
        self.assertEqual(cp.calls, [])
        self.assertTrue(self.accepts(OLD_KEY))
