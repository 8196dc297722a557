"""
The status page's languages (L{xxterocpp.web.i18n}): the choice by
C{Accept-Language}, the catalogues (complete, well formed, compiled as GNU
msgfmt compiles them) and the page in each language.
"""

import gettext
import io
import json
import os
import shutil
import subprocess
from datetime import datetime, timedelta, timezone

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.test_web_routes import CONFIG, RecordingCharger, RoutesTestCase, transaction
from xxterocpp.web import i18n
from xxterocpp.web.i18n import LANGUAGES, Language, catalogue, language, negotiate
from xxterocpp.web.msgfmt import PoError, compile_mo, parse_po
from xxterocpp.web.page import render_page
from xxterocpp.web.status import ERROR_WORDS, STATUS_WORDS, snapshot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: The translated languages.
TRANSLATED = tuple(code for code in LANGUAGES if code != i18n.DEFAULT)


def po_path(code):
    return os.path.join(i18n.LOCALE_DIR, code, "LC_MESSAGES", i18n.DOMAIN + ".po")


def need(*tools):
    """
    Skip unless GNU gettext's C{tools} are installed (Debian: gettext).
    """
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise SkipTest(f"{', '.join(missing)} not installed (Debian: apt-get install gettext)")


class NegotiationTests(SynchronousTestCase):
    """
    L{negotiate}: which language an C{Accept-Language} header gets.
    """

    def test_choices(self):
        """
        The highest q-value among the offered languages wins, the first
        range on a tie; a region counts for its language; q=0 refuses;
        English when nothing matches.
        """
        for header, expected in [
            (None, "en"), ("", "en"), ("de", "de"), ("it-IT,it;q=0.9,en;q=0.5", "it"),
            ("fr-FR, fr;q=0.9", "en"), ("fr, nl;q=0.3", "nl"), ("de;q=0.5, it", "it"),
            ("nl;q=0.8, it;q=0.8", "nl"), ("de-CH", "de"), ("de-CH;q=0.5, nl;q=0.6", "nl"),
            ("en;q=0, de;q=0.1", "de"), ("*", "en"), ("fr, *;q=0.5", "en"),
            ("de;q=0, de-AT", "en"), ("DE-de", "de"), ("it ; q = 0.7 , nl;q=0.2", "it"),
        ]:
            self.assertEqual(negotiate(header), expected, header)

    def test_malformed_ranges_are_skipped(self):
        """
        A range with a bad q-value or a bad tag counts for nothing.
        """
        for header, expected in [
            ("de;q=1.5, it;q=0.2", "it"), ("de;q=x, nl", "nl"), ("d e, it", "it"),
            ("<script>, nl", "nl"), (",,,;;;", "en"), ("de;q=0.12345", "en"),
        ]:
            self.assertEqual(negotiate(header), expected, header)

    def test_only_the_first_ranges_are_read(self):
        """
        A header of thousands of ranges costs no more than a few dozen.
        """
        self.assertEqual(negotiate("fr," * 10000 + "de"), "en")
        self.assertEqual(negotiate("de;q=0.1," + "fr," * 10000), "de")


class MsgfmtTests(SynchronousTestCase):
    """
    L{parse_po} and L{compile_mo}: what GNU msgfmt does for our catalogues.
    """

    PO = r'''# a comment
msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\n"
"Plural-Forms: nplurals=2; plural=(n != 1);\n"

#, python-brace-format
msgid "since {time}"
msgstr "seit "
"{time}"

msgctxt "decimal separator"
msgid "."
msgstr ","

msgid "{count} group address"
msgid_plural "{count} group addresses"
msgstr[0] "{count} Gruppenadresse"
msgstr[1] "{count} Gruppenadressen"

#, fuzzy
msgid "Stop"
msgstr "Halt"

msgid "untranslated"
msgstr ""

msgid "a \"quote\"\tand tab"
msgstr "ein \"Zitat\"\tund Tab"
'''

    def translations(self, text):
        return gettext.GNUTranslations(io.BytesIO(compile_mo(parse_po(text))))

    def test_entries(self):
        """
        Continued strings, contexts, plurals and escapes are read; fuzzy and
        untranslated entries are left out.
        """
        t = self.translations(self.PO)
        self.assertEqual(t.gettext("since {time}"), "seit {time}")
        self.assertEqual(t.pgettext("decimal separator", "."), ",")
        self.assertEqual(t.ngettext("{count} group address", "{count} group addresses", 1),
                         "{count} Gruppenadresse")
        self.assertEqual(t.ngettext("{count} group address", "{count} group addresses", 2),
                         "{count} Gruppenadressen")
        self.assertEqual(t.gettext("Stop"), "Stop")
        self.assertEqual(t.gettext("untranslated"), "untranslated")
        self.assertEqual(t.gettext('a "quote"\tand tab'), 'ein "Zitat"\tund Tab')
        self.assertEqual(t.gettext("."), ".")

    def test_errors_name_the_line(self):
        """
        A malformed catalogue is refused with its name and line.
        """
        for text, line in [('msgid "a"\nmsgstr "b\n', 2), ('msgid "a"\nmsgfoo "b"\n', 2),
                           ('"orphan"\n', 1), ('msgid "a"\nmsgid_plural "b"\nmsgid_plural "c"', 3)]:
            with self.assertRaises(PoError) as caught:
                parse_po(text, "x.po")
            self.assertIn(f"x.po:{line}:", str(caught.exception))

    def test_same_as_gnu_msgfmt(self):
        """
        Each catalogue compiled here translates every text as the C{.mo}
        of GNU msgfmt does.
        """
        need("msgfmt")
        for code in TRANSLATED:
            gnu_mo = os.path.join(self.mktemp())
            subprocess.run(["msgfmt", "-o", gnu_mo, po_path(code)], check=True)
            with open(gnu_mo, "rb") as f:
                gnu = gettext.GNUTranslations(f)
            with open(po_path(code), encoding="utf-8") as f:
                messages = parse_po(f.read())
            ours = gettext.GNUTranslations(io.BytesIO(compile_mo(messages)))
            # (GNU msgfmt leaves the POT-Creation-Date out of the header)
            self.assertEqual({k: v for k, v in ours._catalog.items() if k},
                             {k: v for k, v in gnu._catalog.items() if k}, code)
            self.assertEqual(ours.plural(1), gnu.plural(1))
            self.assertEqual(ours.plural(5), gnu.plural(5))


class CatalogueTests(SynchronousTestCase):
    """
    The catalogues: every text of the page translated, nothing else.
    """

    def test_every_text_is_translated(self):
        """
        The texts C{make pot} collects from the code (the template) have a
        translation in each catalogue, and the catalogues have no other
        (GNU msgcmp both ways).
        """
        need("xgettext", "msgcmp", "make")
        if not os.path.exists(os.path.join(ROOT, "Makefile")):
            raise SkipTest("no Makefile here (a package build runs the tests of its copy)")
        pot = os.path.abspath(self.mktemp()) + ".pot"
        subprocess.run(["make", "--no-print-directory", "-s", "-C", ROOT, "pot", f"POT={pot}"],
                       check=True)
        for code in TRANSLATED:
            result = subprocess.run(["msgcmp", po_path(code), pot], capture_output=True,
                                    text=True)
            self.assertEqual(result.returncode, 0, f"{code}: {result.stderr}")
            # and no translation of a text that is gone
            result = subprocess.run(["msgcmp", "--use-untranslated", pot, po_path(code)],
                                    capture_output=True, text=True)
            self.assertEqual(result.returncode, 0, f"{code}: {result.stderr}")

    def test_catalogues_are_well_formed(self):
        """
        GNU msgfmt --check: headers, plural forms, and the same {names} in
        a translation as in its text.
        """
        need("msgfmt")
        for code in TRANSLATED:
            result = subprocess.run(["msgfmt", "--check", "-o", os.devnull, po_path(code)],
                                    capture_output=True, text=True)
            self.assertEqual((result.returncode, result.stderr), (0, ""), code)

    def test_status_and_error_words(self):
        """
        Every status and error word has its translation, with the same
        placeholders, in each language (checked without gettext's tools).
        """
        words = list(STATUS_WORDS.values()) + list(ERROR_WORDS.values())
        for code in TRANSLATED:
            with open(po_path(code), encoding="utf-8") as f:
                messages = parse_po(f.read())
            for word in words:
                self.assertIn(word, messages, code)
        self.assertEqual(language("de")(STATUS_WORDS["Charging"]), "lädt")
        self.assertEqual(language("it")(STATUS_WORDS["Faulted"]), "guasto")
        self.assertEqual(language("nl")(ERROR_WORDS["GroundFailure"]),
                         "aardfout (aardlekschakelaar gesprongen)")


class _Missing(gettext.NullTranslations):
    """
    The last fallback of a catalogue: records what it lacks.
    """

    def __init__(self):
        super().__init__()
        self.missing = []

    def gettext(self, message):
        self.missing.append(message)
        return message

    def ngettext(self, singular, plural, n):
        self.missing.append(singular)
        return singular if n == 1 else plural

    def pgettext(self, context, message):
        self.missing.append(f"{context}|{message}")
        return message


class PageTests(RoutesTestCase):
    """
    The page in each language, over the real site: a charger charging with
    an error, a reservation, one trying to connect, a session in the history.
    """

    config_text = CONFIG + '[charger.knx]\nstatus = "9/7/0"\n'

    def setUp(self):
        super().setUp()
        self.clock.advance(datetime(2024, 5, 2, 12, tzinfo=timezone.utc).timestamp())
        charger = RecordingCharger(self.central, self.clock)
        for action, payload in [
            ("BootNotification", {"chargePointVendor": "Vendor", "chargePointModel": "M"}),
            ("StatusNotification", {"connectorId": 1, "status": "Charging",
                                    "errorCode": "HighTemperature"}),
            ("StartTransaction", {"connectorId": 1, "idTag": "CONFIGTAG", "meterStart": 100,
                                  "timestamp": "2024-05-02T11:00:00Z"}),
        ]:
            charger.session.text_received(json.dumps([2, action, action, payload]))
            self.clock.advance(0)
        self.central.unknown_attempts.record("NEW-1", "192.0.2.7")
        self.store.transactions[1000] = transaction(1000, "CONFIGTAG")

    def page(self, accept_language):
        return self.request("GET", "/", headers={"Accept-Language": accept_language})

    def test_each_language(self):
        """
        The page comes in the language asked for, says which, and has its
        words; the OCPP names stay as installers know them.
        """
        for header, code, words in [
            ("de-DE,de;q=0.9", "de", ["Ladepunkte", "Ladestation", "lädt", "zu heiß",
                                      "Gruppenadresse", "Stammzertifikat", "Ladevorgang"]),
            ("it", "it", ["Punti di ricarica", "in carica", "temperatura troppo alta",
                          "indirizzo di gruppo", "Certificato radice", "Sessioni"]),
            ("nl-BE, nl;q=0.9, en;q=0.1", "nl", ["Laadpunten", "laden", "te heet",
                                                  "groepsadres", "Rootcertificaat"]),
            ("fr-FR, fr;q=0.9", "en", ["Charging points", "charging", "too hot",
                                       "group address", "Root certificate"]),
        ]:
            response = self.page(header)
            self.assertEqual(response.code, 200)
            self.assertEqual(response.headers["content-language"], code)
            self.assertEqual(response.headers["vary"], "Accept-Language")
            page = response.body.decode()
            self.assertIn(f'<html lang="{code}">', page)
            for word in words + ["(HighTemperature)", "OCPP"]:
                self.assertIn(word, page, f"{code}: {word}")

    def test_numbers_use_the_languages_decimal_separator(self):
        """
        1.00 kWh in English is 1,00 kWh in German, Italian and Dutch.
        """
        self.assertIn("1.00\N{NO-BREAK SPACE}kWh", self.page("en").body.decode())
        for code in TRANSLATED:
            self.assertIn("1,00\N{NO-BREAK SPACE}kWh", self.page(code).body.decode(), code)

    def test_no_text_is_left_in_english(self):
        """
        Rendering the page asks each catalogue only for texts it has.
        """
        status = snapshot(self.central, self.controller, None)
        frames = {c.id: list(c.frames) for c in self.central.chargers.values()}
        setup = {"group_addresses": 1, "charger_url": "ws://127.0.0.1:8016/",
                 "root_certificate": {"sha256": "AB:CD", "href": "/ca.pem"}}
        # The warning of a wrong system clock is asked for too.
        wrong_clock = dict(status, clock_ok=False)
        for code in TRANSLATED:
            translations = catalogue(code)
            missing = _Missing()
            translations.add_fallback(missing)
            for shown in (status, wrong_clock):
                render_page(shown, frames, list(self.store.transactions.values()), setup,
                            Language(code, translations))
            self.assertEqual(missing.missing, [], code)

    def test_day_names_in_the_chart(self):
        """
        The chart's days are named in the page's language.
        """
        today = datetime(2024, 5, 2, 12, tzinfo=timezone.utc).astimezone().date()
        yesterday = today - timedelta(days=1)
        page = self.page("de").body.decode()
        months = {5: "Mai", 4: "Apr"}
        self.assertIn(f"{yesterday.day:02d} {months[yesterday.month]}", page)
