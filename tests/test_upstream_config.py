"""
Tests for C{[charger.upstream]} in L{xxterocpp.config}: the back office a
charger is forwarded to.
"""

import os

from twisted.trial.unittest import SynchronousTestCase

from tests.test_config import PATH, SHIPPED, ConfigErrorTestsMixin, charger
from xxterocpp.config import UpstreamConfig, parse_config


def upstream(**keys):
    """
    The TOML of a [charger.upstream] table.
    """
    return "[charger.upstream]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())


class UpstreamConfigTests(ConfigErrorTestsMixin, SynchronousTestCase):
    """
    The table, its defaults and its checks.
    """

    def test_absent_means_no_back_office(self):
        """
        A charger without the table has no back office.
        """
        config = parse_config(charger())
        self.assertIsNone(config.upstream("SN1"))
        self.assertEqual(config.chargers[0].upstream, UpstreamConfig())

    def test_defaults(self):
        """
        Only the URL is needed: the charger's own identity, no password, the
        system trust store, unknown tags decided locally while offline, no
        Reset, refused sessions flagged but not stopped.
        """
        config = parse_config(charger() + upstream(url='"wss://bo.example/ocpp"'))
        self.assertEqual(config.upstream("SN1"), UpstreamConfig(
            url="wss://bo.example/ocpp", identity="", password="", ca="", certificate="",
            private_key="", offline_authorization="local", allow_reset=False,
            stop_refused=False))
        self.assertTrue(config.upstream("SN1").secure)
        self.assertIsNone(config.upstream("OTHER"))

    def test_every_key(self):
        """
        Every key is read.
        """
        ca = os.path.abspath(self.mktemp())
        with open(ca, "w") as f:
            f.write("")
        config = parse_config(charger() + upstream(
            url='"wss://bo.example:8443/cs/"', identity='"HOME-1"', password='"k3y"',
            ca=repr(ca), certificate=repr(ca), private_key=repr(ca),
            offline_authorization='"accept"', allow_reset="true", stop_refused="true"))
        self.assertEqual(config.upstream("SN1"), UpstreamConfig(
            "wss://bo.example:8443/cs/", "HOME-1", "k3y", ca, ca, ca, "accept", True, True))

    def test_twin_sets_it_once(self):
        """
        A charger with two connectors sets the table in one of its
        [[charger]] tables (or the same in both): it is the charger's.
        """
        text = (charger("TWIN", 1) + upstream(url='"ws://127.0.0.1:9000/"')
                + charger("TWIN", 2))
        self.assertEqual(parse_config(text).upstream("TWIN").url, "ws://127.0.0.1:9000/")
        both = text + upstream(url='"ws://127.0.0.1:9000/"')
        self.assertEqual(parse_config(both).upstream("TWIN").url, "ws://127.0.0.1:9000/")

    def test_twin_with_two_back_offices_refused(self):
        """
        Two different tables for one charger are refused.
        """
        self.assertConfigError(
            charger("TWIN", 1) + upstream(url='"ws://a.example/"')
            + charger("TWIN", 2) + upstream(url='"ws://b.example/"'),
            "charger[1].upstream", "differs from charger[0].upstream")

    def test_bad_url(self):
        """
        Only ws:// and wss:// URLs with a host, without query, are taken.
        """
        for url in ("http://bo.example/", "bo.example", "wss:///path", "ws://h/p?x=1"):
            self.assertConfigError(charger() + upstream(url=repr(url)),
                                   "charger[0].upstream.url", repr(url))

    def test_offline_authorization_choices(self):
        """
        offline_authorization is local, accept or reject.
        """
        self.assertConfigError(
            charger() + upstream(url='"ws://h/"', offline_authorization='"allow"'),
            "charger[0].upstream.offline_authorization", "must be one of")

    def test_keys_without_url_refused(self):
        """
        A table that sets keys but no URL is a mistake, not "no back office".
        """
        self.assertConfigError(charger() + upstream(password='"x"'),
                               "charger[0].upstream.url", "required")

    def test_tls_files_need_wss(self):
        """
        A CA bundle or client certificate with a ws:// URL is refused:
        plain WebSocket has no TLS to use them.
        """
        self.assertConfigError(charger() + upstream(url='"ws://h/"', ca='"/etc/hosts"'),
                               "charger[0].upstream.ca", "wss://")

    def test_missing_tls_file(self):
        """
        A TLS file that cannot be read is named.
        """
        self.assertConfigError(
            charger() + upstream(url='"wss://h/"', ca='"/nonexistent/ca.pem"'),
            "charger[0].upstream.ca", "/nonexistent/ca.pem")

    def test_certificate_needs_key(self):
        """
        A client certificate without its key (or the reverse) is refused.
        """
        self.assertConfigError(
            charger() + upstream(url='"wss://h/"', certificate='"/etc/hosts"'),
            "charger[0].upstream.private_key", "both")

    def test_unknown_key(self):
        """
        A misspelt key is refused with a suggestion.
        """
        self.assertConfigError(charger() + upstream(url='"ws://h/"', pasword='"x"'),
                               "charger[0].upstream.pasword", "password")

    def test_shipped_example_documents_the_table(self):
        """
        The shipped file shows every key of the table (commented out).
        """
        with open(SHIPPED) as f:
            text = f.read()
        self.assertIn("# [charger.upstream]\n", text)
        for name in UpstreamConfig.__attrs_attrs__:
            self.assertIn(f"\n# {name.name} = ", text)
        self.assertIsNone(parse_config(text, PATH).upstream("SN12345"))
