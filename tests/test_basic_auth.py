"""
Tests for L{xxterocpp.basic_auth}: reading Basic credentials, comparing
them, throttling the addresses that keep guessing.
"""

import base64

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from xxterocpp import basic_auth


def basic(raw):
    return "Basic " + base64.b64encode(raw).decode()


class ParseTests(TestCase):
    """
    L{basic_auth.parse}.
    """

    def test_user_and_binary_password(self):
        """
        The user is text, the password stays bytes (it may be raw binary).
        """
        credentials = basic_auth.parse(basic(b"CP1:\x00\xff:x"))
        self.assertEqual((credentials.user, credentials.password), ("CP1", b"\x00\xff:x"))

    def test_bytes_header_and_scheme_case(self):
        credentials = basic_auth.parse(b"basic " + basic(b"a:b")[6:].encode())
        self.assertEqual((credentials.user, credentials.password), ("a", b"b"))

    def test_malformed_is_none(self):
        """
        No header, another scheme, bad base64 or no colon: None.
        """
        for header in (None, "", "Bearer abc", "Basic !!!", "Basic", basic(b"nocolon"),
                       "Basic " + base64.b64encode(b"a:b").decode()[:-1]):
            self.assertIsNone(basic_auth.parse(header), header)

    def test_password_not_in_repr(self):
        """
        A logged L{basic_auth.Credentials} does not show the password.
        """
        self.assertNotIn("secret", repr(basic_auth.parse(basic(b"u:secret"))))


class MatchesTests(TestCase):
    """
    L{basic_auth.matches} and L{basic_auth.same_secret}.
    """

    def test_both_must_match(self):
        right = basic_auth.parse(basic("installer:pässword".encode()))
        self.assertTrue(basic_auth.matches(right, "installer", "pässword"))
        self.assertFalse(basic_auth.matches(right, "admin", "pässword"))
        self.assertFalse(basic_auth.matches(right, "installer", "password"))
        self.assertFalse(basic_auth.matches(None, "installer", "pässword"))

    def test_same_secret_mixes_text_and_bytes(self):
        self.assertTrue(basic_auth.same_secret(b"\xc3\xa4", "ä"))
        self.assertFalse(basic_auth.same_secret("a", b"ab"))

    def test_challenge(self):
        self.assertEqual(basic_auth.challenge("OCPP"), 'Basic realm="OCPP", charset="UTF-8"')


class FailureThrottleTests(TestCase):
    """
    L{basic_auth.FailureThrottle}.
    """

    def setUp(self):
        self.clock = Clock()
        self.throttle = basic_auth.FailureThrottle(self.clock, limit=3, window=60,
                                                   max_addresses=2)

    def test_refused_after_limit_until_window_ends(self):
        """
        The C{limit}-th failure starts the refusal (reported once); it ends
        C{window} seconds after the first failure.
        """
        started = [self.throttle.failed("10.0.0.1") for _ in range(3)]
        self.assertEqual(started, [False, False, True])
        self.clock.advance(20)
        self.assertEqual(self.throttle.refused_for("10.0.0.1"), 40)
        self.assertEqual(self.throttle.refused_for("10.0.0.2"), 0)
        self.clock.advance(40)
        self.assertEqual(self.throttle.refused_for("10.0.0.1"), 0)
        self.assertFalse(self.throttle.failed("10.0.0.1"))

    def test_failures_spread_out_are_forgiven(self):
        for _ in range(5):
            self.assertFalse(self.throttle.failed("10.0.0.1"))
            self.assertFalse(self.throttle.failed("10.0.0.1"))
            self.clock.advance(61)
        self.assertEqual(self.throttle.refused_for("10.0.0.1"), 0)

    def test_bounded_addresses(self):
        """
        Only the most recently failing addresses are remembered.
        """
        for address in ("a", "b", "c"):
            for _ in range(3):
                self.throttle.failed(address)
        self.assertEqual([self.throttle.refused_for(a) > 0 for a in "abc"],
                         [False, True, True])

    def test_failures_counts_those_of_the_window(self):
        """
        L{basic_auth.FailureThrottle.failures}: 0 for an address that never
        failed or whose window is over; any hashable key is an address.
        """
        key = ("10.0.0.1", "CP1")
        self.assertEqual(self.throttle.failures(key), 0)
        self.throttle.failed(key)
        self.throttle.failed(key)
        self.assertEqual(self.throttle.failures(key), 2)
        self.clock.advance(60)
        self.assertEqual(self.throttle.failures(key), 0)
