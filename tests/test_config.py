"""
Tests for L{xxterocpp.config}.
"""

import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from textwrap import dedent

import attr
from twisted.trial.unittest import SynchronousTestCase

from xxterocpp.config import (
    ChargerConfig,
    ChargerKnxConfig,
    Config,
    ConfigError,
    KnxConfig,
    OcppConfig,
    SmartConfig,
    StorageConfig,
    TagConfig,
    UpstreamConfig,
    WebConfig,
    load_config,
    parse_config,
)
from xxterocpp.knx import objects
from xxterocpp.knx.address import GroupAddress

PATH = "/etc/xxterocpp/xxterocpp.toml"
TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(TOP, "etc", "xxterocpp", "xxterocpp.toml")


def charger(id="SN1", connector=1, max_current=16, **extra):
    """
    The TOML of one [[charger]] table with its required keys.
    """
    lines = [f"[[charger]]", f"id = {id!r}", f"connector = {connector}", f"max_current = {max_current}"]
    lines += [f"{key} = {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


class ConfigErrorTestsMixin:
    """
    Assertions on L{ConfigError}.
    """

    def assertConfigError(self, text, key, problem):
        """
        Parsing C{text} fails with one line naming the file, C{key} and a
        problem containing C{problem}.
        """
        e = self.assertRaises(ConfigError, parse_config, dedent(text), PATH)
        message = str(e)
        self.assertNotIn("\n", message)
        self.assertEqual((e.path, e.key), (PATH, key), message)
        self.assertTrue(message.startswith(f"{PATH}: {key}: "), message)
        self.assertIn(problem, message)
        return message

    def assertConfigErrors(self, cases):
        """
        L{assertConfigError} for each C{(text, key, problem)} of C{cases}.
        """
        for text, key, problem in cases:
            self.assertConfigError(text, key, problem)


class DefaultsTests(SynchronousTestCase):
    def test_empty_file_gives_every_default(self):
        """
        An empty file is a valid configuration: every default, no tags,
        no chargers.
        """
        config = parse_config("", PATH)
        self.assertEqual(
            config.ocpp,
            OcppConfig(
                interface="0.0.0.0",
                port=8016,
                secure=False,
                certificate="/etc/xxterocpp/tls/server.pem",
                private_key="/etc/xxterocpp/tls/server.key",
                client_ca="",
                max_chargers=2,
                heartbeat_interval=300,
                call_timeout=30.0,
                ping_interval=60,
            ),
        )
        self.assertEqual(config.knx, KnxConfig(knxd="unix:/run/knx", time_dpt="10.001", current_dpt="14.019"))
        self.assertEqual(config.web, WebConfig(interface="127.0.0.1", port=8080, username="admin", password=""))
        self.assertEqual(config.storage, StorageConfig(database="/var/lib/xxterocpp/state.sqlite3"))
        self.assertEqual((config.tags, config.chargers, config.path), ((), (), PATH))

    def test_charger_defaults(self):
        """
        A [[charger]] with only its required keys gets connector 1, normal
        current = max current, three phases, any tag, remote tag XXTER, no
        quirk keys and no group objects.
        """
        (point,) = parse_config(charger(id="SN1", max_current=20)).chargers
        self.assertEqual(
            point,
            ChargerConfig(
                id="SN1",
                connector=1,
                max_current=20.0,
                normal_current=20.0,
                phases=3,
                allowed_tags=("*",),
                smart_tag="",
                remote_tag="XXTER",
                password="",
                time_dpt="10.001",
                current_dpt="14.019",
                quirks=None,
                no_quirks=None,
                current_steps=None,
                knx=ChargerKnxConfig(),
            ),
        )
        self.assertEqual([getattr(point.knx, key) for key in objects.KEYS], [None] * 18)

    def test_charger_dpts_default_to_knx_section(self):
        """
        A charger without its own DPTs takes those of [knx]; its own win.
        """
        config = parse_config(
            '[knx]\ntime_dpt = "19.001"\ncurrent_dpt = "9.021"\n'
            + charger(id="A")
            + charger(id="B", time_dpt='"10.001"', current_dpt='"14.019"')
        )
        self.assertEqual(
            [(c.time_dpt, c.current_dpt) for c in config.chargers], [("19.001", "9.021"), ("10.001", "14.019")]
        )

    def test_tag_defaults(self):
        """
        A [[tag]] with only an id is Accepted, without expiry or parent.
        """
        (tag,) = parse_config('[[tag]]\nid = "04A1"').tags
        self.assertEqual(tag, TagConfig(id="04A1", status="Accepted", expiry=None, parent=None))

    def test_config_without_file(self):
        """
        Other modules' tests can build a L{Config} from its defaults.
        """
        self.assertEqual(Config(), parse_config(""))


class EveryKeyTests(SynchronousTestCase):
    def test_every_key_is_parsed(self):
        """
        Every key of the file ends up in the matching attribute.
        """
        certificate, private_key, client_ca = (self.mktemp() for _ in range(3))
        for name in (certificate, private_key, client_ca):
            with open(name, "w") as f:
                f.write("PEM")
        config = parse_config(
            dedent(
                f"""\
                [ocpp]
                interface = "192.168.1.2"
                port = 9016
                secure = true
                certificate = "{certificate}"
                private_key = "{private_key}"
                client_ca = "{client_ca}"
                max_chargers = 3
                heartbeat_interval = 600
                call_timeout = 12.5
                ping_interval = 0

                [knx]
                knxd = "tcp:host=192.168.1.10:port=6720"
                time_dpt = "19.001"
                current_dpt = "9.021"

                [web]
                interface = "0.0.0.0"
                port = 0
                username = "installer"
                password = "s3cret"

                [storage]
                database = "/tmp/state.sqlite3"

                [[tag]]
                id = "04A1B2C3"
                status = "Blocked"
                expiry = "2030-01-01T01:00:00+01:00"
                parent = "FAMILY"

                [[charger]]
                id = "SN12345"
                connector = 2
                max_current = 32.0
                normal_current = 16
                phases = 1
                allowed_tags = ["04A1B2C3", "FAMILY"]
                smart_tag = "SMART"
                remote_tag = "REMOTE"
                password = "0123456789abcdef"
                time_dpt = "10.001"
                current_dpt = "14.019"
                quirks = ["keepalive"]
                no_quirks = ["no-ping"]
                current_steps = [6, 8, 10, 13, 16]

                [charger.knx]
                status = "9/7/0"
                error_code = "9/7/100"
                charging = "9/7/1"
                reserve = "9/7/3"
                availability = "9/7/4"
                unlock = "9/7/6"
                energy = "9/7/10"
                start_time = "9/7/20"
                end_time = "9/7/30"
                current = "9/7/40"
                max_current = "9/7/41"
                reset = "9/7/101"
                """
            ),
            PATH,
        )
        self.assertEqual(
            config.ocpp,
            OcppConfig(
                interface="192.168.1.2",
                port=9016,
                secure=True,
                certificate=certificate,
                private_key=private_key,
                client_ca=client_ca,
                max_chargers=3,
                heartbeat_interval=600,
                call_timeout=12.5,
                ping_interval=0,
            ),
        )
        self.assertEqual(config.knx, KnxConfig("tcp:host=192.168.1.10:port=6720", "19.001", "9.021"))
        self.assertEqual(config.web, WebConfig("0.0.0.0", 0, "installer", "s3cret"))
        self.assertEqual(config.storage, StorageConfig("/tmp/state.sqlite3"))
        self.assertEqual(
            config.tags,
            (TagConfig("04A1B2C3", "Blocked", datetime(2030, 1, 1, tzinfo=timezone.utc), "FAMILY"),),
        )
        addresses = ["9/7/0", "9/7/100", "9/7/1", "9/7/3", "9/7/4", "9/7/6"]
        addresses += ["9/7/10", "9/7/20", "9/7/30", "9/7/40", "9/7/41", "9/7/101"]
        self.assertEqual(
            config.chargers,
            (
                ChargerConfig(
                    id="SN12345",
                    connector=2,
                    max_current=32.0,
                    normal_current=16.0,
                    phases=1,
                    allowed_tags=("04A1B2C3", "FAMILY"),
                    smart_tag="SMART",
                    remote_tag="REMOTE",
                    password="0123456789abcdef",
                    time_dpt="10.001",
                    current_dpt="14.019",
                    quirks=("keepalive",),
                    no_quirks=("no-ping",),
                    current_steps=(6.0, 8.0, 10.0, 13.0, 16.0),
                    knx=ChargerKnxConfig(*map(GroupAddress.parse, addresses)),
                ),
            ),
        )

    def test_integer_where_float_expected(self):
        """
        C{max_current = 32} and C{call_timeout = 30} are floats.
        """
        config = parse_config("[ocpp]\ncall_timeout = 5\n" + charger(max_current=32))
        self.assertEqual(type(config.ocpp.call_timeout), float)
        self.assertEqual(type(config.chargers[0].max_current), float)
        self.assertEqual(type(config.chargers[0].normal_current), float)

    def test_expiry_forms(self):
        """
        An expiry is aware UTC whether written as a TOML date-time, a local
        (zoneless, taken as UTC) date-time, a date or an RFC 3339 string.
        """
        expected = datetime(2030, 1, 1, tzinfo=timezone.utc)
        for written in [
            "2030-01-01T00:00:00Z",
            "2030-01-01T02:00:00+02:00",
            "2030-01-01T00:00:00",
            "2030-01-01",
            '"2030-01-01T00:00:00Z"',
            '"2029-12-31T23:00:00-01:00"',
            '"2030-01-01T00:00:00"',
        ]:
            (tag,) = parse_config(f'[[tag]]\nid = "A"\nexpiry = {written}').tags
            self.assertEqual(tag.expiry, expected, written)
            self.assertEqual(tag.expiry.utcoffset().total_seconds(), 0, written)

    def test_two_level_group_address(self):
        """
        A group address may be written main/sub.
        """
        (point,) = parse_config(charger() + '[charger.knx]\nstatus = "9/1792"').chargers
        self.assertEqual(point.knx.status, GroupAddress.parse("9/7/0"))

    def test_group_objects_are_the_declared_ones(self):
        """
        [charger.knx] has one key per object of L{xxterocpp.knx.objects}, in
        its order, and accepts each.
        """
        self.assertEqual(tuple(attr.fields_dict(ChargerKnxConfig)), objects.KEYS)
        self.assertEqual(
            objects.KEYS,
            ("status", "error_code", "charging", "reserve", "availability", "unlock", "energy",
             "start_time", "end_time", "current", "max_current", "reset", "online", "plugged",
             "power", "meter", "session_energy", "fast"),
        )
        lines = "".join(f'{key} = "1/2/{index}"\n' for index, key in enumerate(objects.KEYS))
        (point,) = parse_config(charger() + "[charger.knx]\n" + lines).chargers
        for index, key in enumerate(objects.KEYS):
            self.assertEqual(getattr(point.knx, key), GroupAddress.parse(f"1/2/{index}"), key)

    def test_group_object_declaration_is_plain(self):
        """
        The declaration the configuration reads imports nothing of Twisted.
        """
        code = ("import sys, xxterocpp.knx.objects; "
                "print(sorted(m for m in sys.modules if m.split('.')[0] == 'twisted'))")
        done = subprocess.run([sys.executable, "-c", code], cwd=TOP, capture_output=True,
                              text=True, timeout=60)
        self.assertEqual((done.returncode, done.stdout.strip()), (0, "[]"), done.stderr)

    def test_reading_needs_no_reactor(self):
        """
        Loading a configuration (a knxd endpoint included) installs no
        reactor and imports no test helper: the service picks its reactor.
        """
        code = ("import sys, xxterocpp.config as c; "
                "c.parse_config('[knx]\\nknxd = \"tcp:localhost:6720\"'); "
                "print([m for m in ('twisted.internet.reactor', 'twisted.internet.testing') "
                "if m in sys.modules])")
        done = subprocess.run([sys.executable, "-c", code], cwd=TOP, capture_output=True,
                              text=True, timeout=60)
        self.assertEqual((done.returncode, done.stdout.strip()), (0, "[]"), done.stderr)

    def test_dpt_settings_are_the_declared_choices(self):
        """
        time_dpt and current_dpt, in [knx] and [[charger]], take the DPTs
        the objects declare, their first one by default.
        """
        choices = {obj.dpt for obj in objects.OBJECTS if isinstance(obj.dpt, objects.DptChoice)}
        self.assertEqual({c.setting for c in choices}, {"time_dpt", "current_dpt"})
        defaults = parse_config(charger())
        for choice in choices:
            self.assertEqual(getattr(defaults.knx, choice.setting), choice.default)
            self.assertEqual(getattr(defaults.chargers[0], choice.setting), choice.default)
            for dpt in choice.allowed:
                config = parse_config(f'[knx]\n{choice.setting} = "{dpt}"\n'
                                      + charger(**{choice.setting: f'"{dpt}"'}))
                self.assertEqual(getattr(config.knx, choice.setting), dpt)
                self.assertEqual(getattr(config.chargers[0], choice.setting), dpt)


class ShippedExampleTests(SynchronousTestCase):
    def test_shipped_example_loads(self):
        """
        etc/xxterocpp/xxterocpp.toml loads: one charger SN12345 connector 1,
        32 A fast / 16 A normal, the documented example group addresses, knxd on
        its Unix socket, the web page on loopback without a password.
        """
        config = load_config(SHIPPED)
        self.assertEqual(config.path, SHIPPED)
        self.assertEqual(config.charger_ids(), ("SN12345",))
        point = config.charger("SN12345", 1)
        self.assertEqual((point.max_current, point.normal_current), (32.0, 16.0))
        self.assertEqual(str(point.knx.status), "9/7/0")
        self.assertEqual(str(point.knx.reset), "9/7/101")
        self.assertEqual(config.knx.knxd, "unix:/run/knx")
        self.assertEqual((config.web.interface, config.web.port, config.web.password), ("127.0.0.1", 8080, ""))
        self.assertEqual(config.storage, StorageConfig())
        self.assertEqual(config.ocpp, OcppConfig())

    def test_shipped_example_documents_every_key(self):
        """
        Every key appears in the shipped file, set or commented out.
        """
        with open(SHIPPED) as f:
            text = f.read()
        classes = [OcppConfig, KnxConfig, WebConfig, StorageConfig, SmartConfig, TagConfig,
                   ChargerConfig, UpstreamConfig]
        for cls in classes + [ChargerKnxConfig]:
            for name in attr.fields_dict(cls):
                if name not in ("knx", "upstream"):
                    found = re.search(rf"^(# )?{name} = ", text, re.M)
                    self.assertTrue(found, f"{cls.__name__}.{name}")


class FileTests(ConfigErrorTestsMixin, SynchronousTestCase):
    def test_load_reads_the_file(self):
        """
        L{load_config} parses the file and remembers its path.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(charger(id="X"))
        config = load_config(path)
        self.assertEqual((config.path, config.charger_ids()), (path, ("X",)))

    def test_missing_file(self):
        """
        A missing file is one line naming it and the reason.
        """
        path = self.mktemp()
        e = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(str(e), f"{path}: cannot read the configuration file (No such file or directory)")

    def test_not_utf8(self):
        """
        A file that is not UTF-8 is one line naming it.
        """
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b'[web]\npassword = "\xe9"\n')
        e = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(str(e), f"{path}: not UTF-8 text (line 2); save it as UTF-8")

    def test_toml_syntax_error(self):
        """
        A TOML syntax error is one line with tomllib's line and column.
        """
        e = self.assertRaises(ConfigError, parse_config, "[ocpp]\nport = = 1\n", PATH)
        self.assertNotIn("\n", str(e))
        self.assertTrue(str(e).startswith(f"{PATH}: not valid TOML: "), str(e))
        self.assertIn("line 2", str(e))


class StructureTests(ConfigErrorTestsMixin, SynchronousTestCase):
    def test_unknown_key_suggests_closest(self):
        """
        A misspelt key at any level is refused, with the closest valid key.
        """
        self.assertConfigErrors(
            [
                ("[ocp]\n", "ocp", "unknown key (did you mean 'ocpp'?)"),
                ("[[chargers]]\n", "chargers", "unknown key (did you mean 'charger'?)"),
                ("[ocpp]\nprot = 1\n", "ocpp.prot", "unknown key (did you mean 'port'?)"),
                ("[knx]\nknx = ''\n", "knx.knx", "unknown key (did you mean 'knxd'?)"),
                ("[web]\npasswd = ''\n", "web.passwd", "unknown key (did you mean 'password'?)"),
                ("[storage]\ndb = ''\n", "storage.db", "unknown key (valid keys: database)"),
                ("[[tag]]\nid = 'A'\nexpires = 2030-01-01\n", "tag[0].expires", "did you mean 'expiry'?"),
                (charger() + "max_curent = 16\n", "charger[0].max_curent", "did you mean 'max_current'?"),
                (charger() + "[charger.knx]\nstatuss = '1/1/1'\n", "charger[0].knx.statuss", "did you mean 'status'?"),
            ]
        )

    def test_wrong_types(self):
        """
        Each value must have its TOML type: a boolean is not an integer, a
        float is not an integer, a number is not a string.
        """
        self.assertConfigErrors(
            [
                ('[ocpp]\nport = "8016"\n', "ocpp.port", "expected an integer, got string '8016' (remove the quotes)"),
                ("[ocpp]\nport = 8016.0\n", "ocpp.port", "expected an integer, got float 8016.0"),
                ("[ocpp]\nmax_chargers = true\n", "ocpp.max_chargers", "expected an integer, got boolean true"),
                ('[ocpp]\nsecure = "yes"\n', "ocpp.secure", "expected true or false, got string 'yes'"),
                ('[ocpp]\nsecure = "true"\n', "ocpp.secure", "(remove the quotes)"),
                ("[ocpp]\nsecure = 1\n", "ocpp.secure", "expected true or false, got integer 1"),
                ("[ocpp]\ncall_timeout = true\n", "ocpp.call_timeout", "expected a number, got boolean true"),
                ("[ocpp]\ncall_timeout = inf\n", "ocpp.call_timeout", "expected a finite number"),
                ("[ocpp]\ninterface = 0\n", "ocpp.interface", "expected a string, got integer 0 (put it in quotes)"),
                ("[web]\npassword = 1234\n", "web.password", "expected a string, got integer 1234"),
                ("[storage]\ndatabase = []\n", "storage.database", "expected a string, got an array"),
                (charger(id="X", remote_tag=1), "charger[0].remote_tag", "expected a string"),
                (charger(allowed_tags='"*"'), "charger[0].allowed_tags", "expected an array of strings"),
                (charger(allowed_tags='["*", 5]'), "charger[0].allowed_tags", "item 1: expected a string"),
                (charger() + "[charger.knx]\nstatus = 1\n", "charger[0].knx.status", "must be a string"),
                ("[[tag]]\nid = 4\n", "tag[0].id", "expected a string, got integer 4"),
                ("[[tag]]\nid = 'A'\nparent = 1\n", "tag[0].parent", "expected a string"),
            ]
        )

    def test_sections_must_be_tables(self):
        """
        [ocpp] must be a table and [[charger]] an array of tables.
        """
        self.assertConfigErrors(
            [
                ("ocpp = 1\n", "ocpp", "expected a table, got integer 1"),
                ("[[web]]\n", "web", "expected a table, got an array"),
                ("[charger]\nid = 'A'\nmax_current = 16\n", "charger", "expected an array of tables ([[charger]])"),
                ("tag = ['A']\n", "tag", "expected an array of tables ([[tag]])"),
                (charger() + "knx = '9/7/0'\n", "charger[0].knx", "expected a table, got string '9/7/0'"),
            ]
        )


class OcppTests(ConfigErrorTestsMixin, SynchronousTestCase):
    def test_port_range(self):
        """
        Ports are 0..65535; 0 picks a free port.
        """
        self.assertEqual(parse_config("[ocpp]\nport = 0\n[web]\nport = 65535").web.port, 65535)
        self.assertConfigErrors(
            [
                ("[ocpp]\nport = 65536\n", "ocpp.port", "must be 0..65535, not 65536"),
                ("[web]\nport = -1\n", "web.port", "must be 0..65535, not -1"),
            ]
        )

    def test_interfaces_not_empty(self):
        """
        An interface is a non-empty string.
        """
        self.assertConfigErrors(
            [
                ('[ocpp]\ninterface = ""\n', "ocpp.interface", "must not be empty"),
                ('[web]\ninterface = " "\n', "web.interface", "must not be empty"),
            ]
        )

    def test_interval_limits(self):
        """
        heartbeat_interval >= 1, call_timeout > 0, ping_interval >= 0 (0 is
        off), max_chargers >= 1.
        """
        config = parse_config(
            "[ocpp]\nheartbeat_interval = 1\ncall_timeout = 0.1\nping_interval = 0\nmax_chargers = 1"
        )
        self.assertEqual((config.ocpp.heartbeat_interval, config.ocpp.ping_interval), (1, 0))
        self.assertConfigErrors(
            [
                ("[ocpp]\nheartbeat_interval = 0\n", "ocpp.heartbeat_interval", "must be at least 1, not 0"),
                ("[ocpp]\ncall_timeout = 0\n", "ocpp.call_timeout", "must be more than 0, not 0.0"),
                ("[ocpp]\nping_interval = -1\n", "ocpp.ping_interval", "must be at least 0, not -1"),
                ("[ocpp]\nmax_chargers = 0\n", "ocpp.max_chargers", "must be at least 1, not 0"),
            ]
        )

    def test_offline_after_and_reservation_expiry(self):
        """
        [knx] offline_after: seconds, 60 by default, 0 or more (0: at once);
        [ocpp] reservation_expiry: whole seconds, 3600 by default, at least 1.
        """
        defaults = parse_config("")
        self.assertEqual((defaults.knx.offline_after, defaults.ocpp.reservation_expiry),
                         (60.0, 3600))
        config = parse_config("[knx]\noffline_after = 0\n[ocpp]\nreservation_expiry = 2\n")
        self.assertEqual((config.knx.offline_after, config.ocpp.reservation_expiry), (0.0, 2))
        self.assertEqual(parse_config("[knx]\noffline_after = 1.5\n").knx.offline_after, 1.5)
        self.assertConfigErrors(
            [
                ("[knx]\noffline_after = -1\n", "knx.offline_after", "must be at least 0, not -1.0"),
                ("[ocpp]\nreservation_expiry = 0\n", "ocpp.reservation_expiry",
                 "must be at least 1, not 0"),
                ("[ocpp]\nreservation_expiry = 1.5\n", "ocpp.reservation_expiry",
                 "expected an integer"),
            ]
        )

    def writeFile(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("PEM")
        return path

    def test_secure_needs_readable_tls_files(self):
        """
        secure = true needs the certificate, the key and (when set) the
        client CA bundle as readable files.
        """
        good = self.writeFile()
        missing = self.mktemp()
        directory = os.path.dirname(os.path.abspath(good))
        secure = "[ocpp]\nsecure = true\ncertificate = {!r}\nprivate_key = {!r}\nclient_ca = {!r}\n"
        self.assertEqual(parse_config(secure.format(good, good, "")).ocpp.client_ca, "")
        self.assertEqual(parse_config(secure.format(good, good, good)).ocpp.client_ca, good)
        self.assertConfigErrors(
            [
                (secure.format(missing, good, ""), "ocpp.certificate", f"missing certificate {missing!r}"),
                (secure.format(good, missing, ""), "ocpp.private_key", f"missing private key {missing!r}"),
                (secure.format(good, good, missing), "ocpp.client_ca", f"missing client CA bundle {missing!r}"),
                (secure.format(directory, good, ""), "ocpp.certificate", "Is a directory"),
                (secure.format("", good, ""), "ocpp.certificate", "missing certificate ''"),
            ]
        )

    def test_insecure_ignores_tls_files(self):
        """
        With secure = false the TLS files need not exist.
        """
        config = parse_config('[ocpp]\ncertificate = "/nonexistent.pem"\nprivate_key = "/nonexistent.key"')
        self.assertEqual(config.ocpp.certificate, "/nonexistent.pem")

    def test_more_chargers_than_licensed(self):
        """
        More distinct charger ids than ocpp.max_chargers is refused.
        """
        self.assertConfigError(
            charger(id="A") + charger(id="B") + charger(id="C"),
            "ocpp.max_chargers",
            "3 chargers configured (A, B, C) but ocpp.max_chargers = 2; contact sales for more",
        )
        three = parse_config("[ocpp]\nmax_chargers = 3\n" + charger(id="A") + charger(id="B") + charger(id="C"))
        self.assertEqual(three.charger_ids(), ("A", "B", "C"))

    def test_twin_wallbox_counts_as_one_charger(self):
        """
        Two connectors of one charger id count once against max_chargers.
        """
        config = parse_config(
            "[ocpp]\nmax_chargers = 2\n"
            + charger(id="TWIN", connector=1)
            + charger(id="TWIN", connector=2)
            + charger(id="B")
        )
        self.assertEqual(config.charger_ids(), ("TWIN", "B"))


class KnxTests(ConfigErrorTestsMixin, SynchronousTestCase):
    def test_knxd_endpoints(self):
        """
        knxd is "" (no bridge) or any Twisted client endpoint description.
        """
        for knxd in ["", "unix:/run/knx", "tcp:localhost:6720", "tcp:host=192.168.1.10:port=6720"]:
            self.assertEqual(parse_config(f"[knx]\nknxd = {knxd!r}").knx.knxd, knxd)

    def test_bad_knxd_endpoint(self):
        """
        A knxd value Twisted cannot make an endpoint of is refused, with the
        reason and an example.
        """
        self.assertConfigErrors(
            [
                ('[knx]\nknxd = "/run/knx"\n', "knx.knxd", "bad knxd endpoint '/run/knx' (Unknown endpoint type"),
                ('[knx]\nknxd = "tcp:localhost"\n', "knx.knxd", "like 'unix:/run/knx'"),
                ('[knx]\nknxd = "tcp:host:port"\n', "knx.knxd", "bad knxd endpoint 'tcp:host:port'"),
            ]
        )

    def test_dpt_choices(self):
        """
        time_dpt is 10.001 or 19.001, current_dpt 14.019 or 9.021, in [knx]
        and per charger.
        """
        self.assertConfigErrors(
            [
                ('[knx]\ntime_dpt = "10.1"\n', "knx.time_dpt", "must be one of '10.001', '19.001', not '10.1'"),
                ('[knx]\ncurrent_dpt = "9.020"\n', "knx.current_dpt", "did you mean '9.021'?"),
                (charger(time_dpt='"11.001"'), "charger[0].time_dpt", "must be one of '10.001', '19.001'"),
                (charger(current_dpt='"14.019 "'), "charger[0].current_dpt", "must be one of '14.019', '9.021'"),
            ]
        )

    def test_bad_group_address(self):
        """
        Each [charger.knx] value must be a valid group address; the reason
        comes from L{GroupAddress.parse}.
        """
        self.assertConfigErrors(
            [
                (
                    charger() + charger(id="X") + charger(id="X", connector=2) + '[charger.knx]\nstatus = "9/8/0"\n',
                    "charger[2].knx.status",
                    "bad group address '9/8/0' (middle group must be 0..7)",
                ),
                (charger() + '[charger.knx]\nreset = "0/0/0"\n', "charger[0].knx.reset", "broadcast"),
                (charger() + '[charger.knx]\nenergy = "9.7.10"\n', "charger[0].knx.energy", "main/middle/sub"),
            ]
        )

    def test_receive_address_shared_by_two_charging_points(self):
        """
        One group address on receive objects of two charging points is
        refused, whatever the objects, even written differently.
        """
        message = self.assertConfigError(
            charger(id="A")
            + '[charger.knx]\ncharging = "9/7/1"\n'
            + charger(id="A", connector=2)
            + '[charger.knx]\ncharging = "9/7/1"\n',
            "charger[1].knx.charging",
            "group address 9/7/1 is also charger[0].knx.charging",
        )
        self.assertIn("two charging points", message)
        self.assertConfigError(
            charger(id="A")
            + '[charger.knx]\nreset = "9/7/101"\n'
            + charger(id="B")
            + '[charger.knx]\nunlock = "9/1893"\n',
            "charger[1].knx.unlock",
            "group address 9/7/101 is also charger[0].knx.reset",
        )

    def test_every_receive_object_keeps_its_address(self):
        """
        Exactly the declared receive objects may not share an address
        between charging points.
        """
        self.assertEqual(objects.RECEIVES,
                         ("charging", "reserve", "availability", "unlock", "max_current", "reset",
                          "fast"))
        for key in objects.KEYS:
            text = (charger(id="A") + f'[charger.knx]\n{key} = "9/7/1"\n'
                    + charger(id="B") + f'[charger.knx]\n{key} = "9/7/1"\n')
            if key in objects.RECEIVES:
                self.assertConfigError(text, f"charger[1].knx.{key}",
                                       f"group address 9/7/1 is also charger[0].knx.{key}")
            else:
                self.assertEqual(len(parse_config(text).chargers), 2)

    def test_send_address_may_be_shared(self):
        """
        Send objects of two charging points may share an address: the rule
        is about bus writes the central system receives.
        """
        config = parse_config(
            charger(id="A")
            + '[charger.knx]\nstatus = "9/7/0"\n'
            + charger(id="B")
            + '[charger.knx]\nstatus = "9/7/0"\n'
        )
        self.assertEqual(config.charger("B", 1).knx.status, config.charger("A", 1).knx.status)


class WebTests(ConfigErrorTestsMixin, SynchronousTestCase):
    def test_network_interface_needs_credentials(self):
        """
        A web interface reachable from the network needs a user name and a
        password.
        """
        self.assertConfigErrors(
            [
                (
                    '[web]\ninterface = "0.0.0.0"\n',
                    "web.password",
                    "empty, but web.interface '0.0.0.0' is reachable from the network; "
                    "set web.password or bind web.interface to 127.0.0.1",
                ),
                ('[web]\ninterface = "192.168.1.2"\npassword = ""\n', "web.password", "set web.password"),
                ('[web]\ninterface = "::"\nusername = ""\npassword = "x"\n', "web.username", "set web.username"),
                ('[web]\ninterface = "knx-controller"\n', "web.password", "set web.password"),
            ]
        )

    def test_loopback_interface_needs_no_password(self):
        """
        127.0.0.0/8, ::1 and localhost are loopback: no password needed.
        """
        for interface in ["127.0.0.1", "127.1.2.3", "::1", "localhost", "LOCALHOST"]:
            config = parse_config(f'[web]\ninterface = "{interface}"\npassword = ""')
            self.assertTrue(config.web.is_loopback(), interface)

    def test_username_without_colon(self):
        """
        An HTTP Basic user id cannot contain ':'.
        """
        self.assertConfigError('[web]\nusername = "a:b"\n', "web.username", "'a:b' must not contain ':'")


class TagTests(ConfigErrorTestsMixin, SynchronousTestCase):
    def test_tag_rules(self):
        """
        A tag needs an id of at most 20 characters, a known status and an
        RFC 3339 expiry.
        """
        self.assertConfigErrors(
            [
                ("[[tag]]\nstatus = 'Blocked'\n", "tag[0].id", "required, but missing"),
                ("[[tag]]\nid = ''\n", "tag[0].id", "must not be empty"),
                ("[[tag]]\nid = '123456789012345678901'\n", "tag[0].id", "longer than 20 characters"),
                (
                    "[[tag]]\nid = 'A'\nstatus = 'accepted'\n",
                    "tag[0].status",
                    "must be one of 'Accepted', 'Blocked', 'Expired', not 'accepted' (did you mean 'Accepted'?)",
                ),
                ("[[tag]]\nid = 'A'\nexpiry = 'tomorrow'\n", "tag[0].expiry", "bad date-time 'tomorrow'"),
                ("[[tag]]\nid = 'A'\nexpiry = 12:00:00\n", "tag[0].expiry", "expected a date-time"),
                ("[[tag]]\nid = 'A'\nexpiry = 2030\n", "tag[0].expiry", "got integer 2030"),
            ]
        )

    def test_duplicate_tag_ids(self):
        """
        Two tags with one id, in any case, are refused.
        """
        self.assertConfigError(
            "[[tag]]\nid = 'A'\n[[tag]]\nid = '04a1'\n[[tag]]\nid = '04A1'\n",
            "tag[2].id",
            "duplicate tag '04A1', also tag[1].id (idTags are case-insensitive)",
        )

    def test_empty_parent_is_none(self):
        """
        parent = "" means no parent.
        """
        self.assertIsNone(parse_config("[[tag]]\nid = 'A'\nparent = ''").tags[0].parent)


class ChargerTests(ConfigErrorTestsMixin, SynchronousTestCase):
    def test_required_keys(self):
        """
        A [[charger]] needs an id and a max_current.
        """
        self.assertConfigErrors(
            [
                ("[[charger]]\nmax_current = 16\n", "charger[0].id", "required, but missing"),
                (charger() + "[[charger]]\nid = 'B'\n", "charger[1].max_current", "required, but missing"),
            ]
        )

    def test_charger_id_rules(self):
        """
        A charger id is a non-empty Basic-auth user id and URL segment of at
        most 255 characters.
        """
        self.assertEqual(parse_config(charger(id="x" * 255)).charger_ids(), ("x" * 255,))
        self.assertConfigErrors(
            [
                (charger(id=""), "charger[0].id", "must not be empty"),
                (charger(id="SN:1"), "charger[0].id", "'SN:1' must not contain ':'"),
                (charger(id="ocpp/SN1"), "charger[0].id", "'ocpp/SN1' must not contain '/'"),
                (charger(id="x" * 256), "charger[0].id", "must be at most 255 characters, not 256"),
            ]
        )

    def test_value_ranges(self):
        """
        connector >= 1, max_current 6..80, normal_current 6..max_current,
        phases 1 or 3, tags at most 20 characters, a remote tag.
        """
        self.assertConfigErrors(
            [
                (charger(connector=0), "charger[0].connector", "must be at least 1, not 0"),
                (charger(max_current=5.9), "charger[0].max_current", "must be 6..80, not 5.9"),
                (charger(max_current=81), "charger[0].max_current", "must be 6..80, not 81.0"),
                (charger(normal_current=5), "charger[0].normal_current", "must be at least 6, not 5.0"),
                (
                    charger(max_current=16, normal_current=16.5),
                    "charger[0].normal_current",
                    "must be 6..max_current (16), not 16.5",
                ),
                (charger(phases=2), "charger[0].phases", "must be one of 1, 3, not 2"),
                (charger(allowed_tags='[""]'), "charger[0].allowed_tags", "must not be empty"),
                (charger(smart_tag='"' + "S" * 21 + '"'), "charger[0].smart_tag", "longer than 20 characters"),
                (charger(remote_tag='""'), "charger[0].remote_tag", "must not be empty"),
            ]
        )

    def test_normal_current_defaults_to_max_current(self):
        """
        Without normal_current, normal charging is as fast as fast charging.
        """
        self.assertEqual(parse_config(charger(max_current=11)).chargers[0].normal_current, 11.0)

    def test_duplicate_charging_point(self):
        """
        The same (id, connector) twice is refused, naming both tables.
        """
        self.assertConfigError(
            charger(id="A") + charger(id="B") + charger(id="A"),
            "charger[2].connector",
            "charger 'A' connector 1 is configured twice: charger[0] and charger[2]",
        )

    def test_twin_wallbox_has_one_password(self):
        """
        The connectors of one charger cannot have different passwords.
        """
        self.assertConfigError(
            charger(id="A", password='"0123456789abcdef"') + charger(id="A", connector=2),
            "charger[1].password",
            "differs from charger[0].password for the same charger 'A'",
        )

    def test_lookups(self):
        """
        charger_ids() lists distinct ids in file order, charging_points() a
        charger's points by connector, charger() one point or None.
        """
        config = parse_config(
            "[ocpp]\nmax_chargers = 3\n"
            + charger(id="TWIN", connector=2)
            + charger(id="B")
            + charger(id="TWIN", connector=1)
        )
        self.assertEqual(config.charger_ids(), ("TWIN", "B"))
        self.assertEqual([c.connector for c in config.charging_points("TWIN")], [1, 2])
        self.assertEqual(config.charging_points("nobody"), ())
        self.assertIs(config.charger("TWIN", 1), config.chargers[2])
        self.assertIsNone(config.charger("TWIN", 3))
        self.assertIsNone(config.charger("twin", 1))


class SmartTests(ConfigErrorTestsMixin, SynchronousTestCase):
    def test_defaults(self):
        """
        Without [smart]: 07:00, 20 kWh, the issue's night tariff, no group
        addresses, no site limit.
        """
        from datetime import time

        self.assertEqual(parse_config("", PATH).smart, SmartConfig(
            departure=time(7), energy_wh=20000.0,
            tariff=((time(0), 0.30), (time(23), 0.18), (time(7), 0.30)),
            prices_ga=None, surplus_ga=None, site_limit=0.0))

    def test_every_key(self):
        from datetime import time

        smart = parse_config(dedent("""\
            [smart]
            departure = "6:30"
            energy_wh = 15000
            tariff = [{ from = "00:00", price = 0.25 }, { from = "22:15", price = -0.01 }]
            prices_ga = "1/2/3"
            surplus_ga = "1/2/4"
            site_limit = 25
            """), PATH).smart
        self.assertEqual(smart, SmartConfig(
            departure=time(6, 30), energy_wh=15000.0,
            tariff=((time(0), 0.25), (time(22, 15), -0.01)),
            prices_ga=GroupAddress.parse("1/2/3"), surplus_ga=GroupAddress.parse("1/2/4"),
            site_limit=25.0))

    def test_bad_values(self):
        self.assertConfigErrors([
            ('[smart]\ndeparture = "7"', "smart.departure", "bad time of day '7'"),
            ('[smart]\ndeparture = "24:00"', "smart.departure", "bad time of day"),
            ("[smart]\nenergy_wh = 0", "smart.energy_wh", "must be more than 0"),
            ("[smart]\ntariff = []", "smart.tariff", "expected a non-empty array"),
            ('[smart]\ntariff = [{ from = "7:60", price = 1 }]', "smart.tariff",
             "item 0: bad time of day '7:60'"),
            ('[smart]\ntariff = [{ from = "07:00", price = "0.3" }]', "smart.tariff",
             "item 0: expected a number, got string '0.3' (remove the quotes)"),
            ('[smart]\ntariff = [{ from = "07:00", price = 1, to = "08:00" }]', "smart.tariff",
             "item 0: expected a table like"),
            ('[smart]\nprices_ga = "9/8/0"', "smart.prices_ga", "middle group must be 0..7"),
            ("[smart]\nsurplus_ga = 5", "smart.surplus_ga", "expected a string"),
            ("[smart]\nsite_limit = -1", "smart.site_limit", "must be at least 0"),
            ("[smart]\ndepature = \"07:00\"", "smart.depature", "did you mean 'departure'"),
        ])

    def test_group_addresses_clash(self):
        """
        prices_ga and surplus_ga may not be a charger's receive object (a
        price would also be a command), nor each other; a send object's
        address is fine.
        """
        charger = dedent("""\
            [[charger]]
            id = "CP1"
            max_current = 16
            [charger.knx]
            max_current = "1/1/5"
            current = "1/1/6"
            """)
        self.assertConfigErrors([
            ('[smart]\nprices_ga = "1/1/5"\n' + charger, "smart.prices_ga",
             "group address 1/1/5 is also charger[0].knx.max_current"),
            ('[smart]\nsurplus_ga = "1/1/5"\n' + charger, "smart.surplus_ga",
             "group address 1/1/5 is also charger[0].knx.max_current"),
            ('[smart]\nprices_ga = "1/2/3"\nsurplus_ga = "1/2/3"', "smart.surplus_ga",
             "group address 1/2/3 is also smart.prices_ga"),
        ])
        config = parse_config('[smart]\nsurplus_ga = "1/1/6"\n' + charger, PATH)
        self.assertEqual(config.smart.surplus_ga, GroupAddress.parse("1/1/6"))
