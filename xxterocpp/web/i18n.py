# -*- test-case-name: tests.test_i18n -*-
"""
The languages of the status page: English, German, Italian and Dutch,
chosen by the browser's C{Accept-Language} (L{negotiate}), English when it
names none of them.

The texts are gettext catalogues, the domain L{DOMAIN}: the sources are
C{xxterocpp/locale/<language>/LC_MESSAGES/xxterocpp.po}, the English texts
are their msgids. The build (C{setup.py}) compiles them into C{.mo} files
beside them, which the packages ship and Python's L{gettext} reads; in a
source checkout, where there are none, the C{.po} file is compiled when the
language is first asked for (L{xxterocpp.web.msgfmt}).
"""

import gettext
import io
import os
import re

from xxterocpp.web.msgfmt import compile_mo, parse_po

__all__ = ["DEFAULT", "DOMAIN", "LANGUAGES", "LOCALE_DIR", "Language", "N_", "catalogue",
           "language", "negotiate"]

#: The gettext domain of the catalogues.
DOMAIN = "xxterocpp"

#: Where the catalogues are: C{<language>/LC_MESSAGES/xxterocpp.po} (and
#: C{.mo} once built).
LOCALE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "locale")

#: The page's language when the browser asks for none of L{LANGUAGES}.
DEFAULT = "en"

#: The page's languages (ISO 639-1), the default first.
LANGUAGES = (DEFAULT, "de", "it", "nl")

#: At most this many entries of an C{Accept-Language} header are read: a
#: browser sends a handful, and the header comes from anyone.
MAX_RANGES = 32

_RANGE = re.compile(r"^(\*|[a-z]{1,8}(?:-[a-z0-9]{1,8})*)$")
_QUALITY = re.compile(r"^q=(0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)$")


def N_(message):
    """
    Mark an English text kept in a table for translation where it is shown:
    C{xgettext} collects it (C{make messages}), the value stays English.
    """
    return message


def negotiate(accept_language, languages=LANGUAGES):
    """
    Choose the language of an answer.

    @param accept_language: the request's C{Accept-Language} value, or
        L{None}: language ranges with optional q-values (C{"de-CH, de;q=0.9,
        en;q=0.5"}).
    @param languages: the languages on offer, the default first.
    @return: the offered language with the highest q-value, the first
        range on a tie; a range with a region (C{de-CH}) counts for its
        language (C{de}) unless that is named itself; C{*} is the default;
        q=0 refuses. The default when nothing matches.
    """
    if not accept_language:
        return languages[0]
    named, loose = {}, {}
    for position, item in enumerate(accept_language.lower().split(",")[:MAX_RANGES]):
        tag, *parameters = (part.strip() for part in item.split(";"))
        if not _RANGE.match(tag):
            continue
        qualities = [_QUALITY.match(p.replace(" ", "")) for p in parameters
                     if p.replace(" ", "").startswith("q=")]
        if not all(qualities):
            continue
        quality = float(qualities[-1].group(1)) if qualities else 1.0
        code = languages[0] if tag == "*" else tag.split("-")[0]
        table = named if tag == code else loose
        # the best q of a language's ranges, the first range on a tie
        table[code] = max(table.get(code, (quality, -position)), (quality, -position))
    weights = {**loose, **named}
    acceptable = sorted((-quality, -negative, code) for code, (quality, negative)
                        in weights.items() if quality > 0 and code in languages)
    return acceptable[0][2] if acceptable else languages[0]


class Language:
    """
    The texts of one language: call it with an English text for its
    translation.

    @ivar code: the ISO 639-1 code, the page's C{lang}.
    """

    def __init__(self, code, translations):
        self.code = code
        self._translations = translations
        self._decimal = translations.pgettext("decimal separator", ".")

    def __call__(self, message):
        """
        @return: C{message} (English) in this language.
        """
        # "" is the msgid of the catalogue's header, not a text of the page
        # (an empty error code from a charger)
        return self._translations.gettext(message) if message else message

    def context(self, context, message):
        """
        @return: C{message} in this language where it means what
            C{context} says (German "keiner" for no session, "keine" for
            no reservation; both "none" in English).
        """
        return self._translations.pgettext(context, message)

    def plural(self, singular, plural, count):
        """
        @return: the form for C{count} of a text with a number in it.
        """
        return self._translations.ngettext(singular, plural, count)

    def number(self, value, spec):
        """
        @param spec: a format spec (C{".2f"}, C{"g"}).
        @return: C{value} formatted, with this language's decimal separator.
        """
        return format(value, spec).replace(".", self._decimal)


def catalogue(code):
    """
    @return: the translations of C{code} (read anew): its compiled
        catalogue, else its source compiled now; none for English.
    """
    if code == DEFAULT:
        return gettext.NullTranslations()
    directory = os.path.join(LOCALE_DIR, code, "LC_MESSAGES")
    compiled = os.path.join(directory, DOMAIN + ".mo")
    if os.path.exists(compiled):
        with open(compiled, "rb") as f:
            return gettext.GNUTranslations(f)
    source = os.path.join(directory, DOMAIN + ".po")
    with open(source, encoding="utf-8") as f:
        messages = parse_po(f.read(), source)
    return gettext.GNUTranslations(io.BytesIO(compile_mo(messages)))


_languages = {}


def language(code):
    """
    @param code: one of L{LANGUAGES}.
    @return: its L{Language}, loaded once.
    """
    if code not in _languages:
        _languages[code] = Language(code, catalogue(code))
    return _languages[code]
