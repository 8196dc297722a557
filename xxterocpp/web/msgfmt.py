# -*- test-case-name: tests.test_i18n -*-
"""
A small C{msgfmt}: gettext catalogues (C{.po}) compiled into the binary
C{.mo} files that Python's L{gettext} reads.

It is what the build step (C{setup.py}) uses to put compiled catalogues into
the package, and what L{xxterocpp.web.i18n} falls back to in a source
checkout, where there is no C{.mo}. It understands what our catalogues use:
C{msgctxt}, C{msgid}, C{msgid_plural}, C{msgstr} and C{msgstr[n]}, strings
continued on the next lines, the C escapes, comments and fuzzy entries (left
out, as GNU msgfmt does; a catalogue's header must not be fuzzy).

Only the standard library: C{setup.py} loads this file by its path, before
anything of xxterocpp is importable.
"""

import ast
import struct

__all__ = ["PoError", "compile_mo", "parse_po"]

#: The magic number of a little-endian C{.mo} file.
MAGIC = 0x950412DE

#: What separates a context from its msgid in a C{.mo} key (gettext's rule).
CONTEXT_SEPARATOR = "\x04"


class PoError(ValueError):
    """
    A C{.po} file that is not well formed; the message names the line.
    """


def _string(text, where):
    if not (text.startswith('"') and text.endswith('"') and len(text) >= 2):
        raise PoError(f"{where}: expected a quoted string, got {text!r}")
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError) as e:
        raise PoError(f"{where}: bad string {text!r} ({e})") from None


def parse_po(text, name="<po>"):
    """
    @param text: the C{.po} file's text.
    @return: C{{key: translation}} as in a C{.mo} file: the key is the
        msgid, preceded by its context and C{"\\x04"}, followed by C{"\\0"}
        and the plural msgid; a plural translation is its forms joined by
        C{"\\0"}. Untranslated and fuzzy entries are left out; the header
        (msgid C{""}) is kept.
    @raise PoError: naming the line of a malformed entry.
    """
    messages = {}
    entry, field, fuzzy = {}, None, False

    def finish():
        nonlocal entry, field, fuzzy
        if "msgid" in entry:
            key = entry["msgid"]
            if "msgid_plural" in entry:
                key += "\0" + entry["msgid_plural"]
                forms = [entry[f] for f in sorted(k for k in entry if isinstance(k, int))]
                value = "\0".join(forms)
            else:
                value = entry.get("msgstr", "")
            if "msgctxt" in entry:
                key = entry["msgctxt"] + CONTEXT_SEPARATOR + key
            if value.replace("\0", "") and not fuzzy:
                messages[key] = value
        entry, field, fuzzy = {}, None, False

    for number, raw in enumerate(text.splitlines(), 1):
        where = f"{name}:{number}"
        line = raw.strip()
        if line.startswith("#,"):
            if "msgid" in entry:
                finish()
            fuzzy = "fuzzy" in (flag.strip() for flag in line[2:].split(","))
            continue
        if not line or line.startswith("#"):
            continue
        if line.startswith('"'):
            if field is None:
                raise PoError(f"{where}: a string continues no keyword")
            entry[field] += _string(line, where)
            continue
        keyword, _, rest = line.partition(" ")
        if keyword.startswith("msgstr[") and keyword.endswith("]"):
            field = int(keyword[7:-1])
        elif keyword in ("msgctxt", "msgid", "msgid_plural", "msgstr"):
            if keyword in ("msgctxt", "msgid") and (
                    "msgstr" in entry or any(isinstance(k, int) for k in entry)):
                finish()
            field = keyword
        else:
            raise PoError(f"{where}: unknown keyword {keyword!r}")
        if field in entry:
            raise PoError(f"{where}: {keyword} twice in one entry")
        entry[field] = _string(rest.strip(), where)
    finish()
    return messages


def compile_mo(messages):
    """
    @param messages: what L{parse_po} returns.
    @return: the C{.mo} file's bytes (UTF-8, keys sorted, no hash table).
    """
    keys = sorted(messages, key=lambda k: k.encode("utf-8"))
    ids = [k.encode("utf-8") for k in keys]
    strs = [messages[k].encode("utf-8") for k in keys]
    count = len(keys)
    header = 7 * 4
    ids_table = header
    strs_table = ids_table + count * 8
    data = strs_table + count * 8
    tables, blob = [], b""
    for strings in (ids, strs):
        table = []
        for s in strings:
            table.append((len(s), data + len(blob)))
            blob += s + b"\0"
        tables.append(table)
    out = struct.pack("<7I", MAGIC, 0, count, ids_table, strs_table, 0, data)
    for table in tables:
        out += b"".join(struct.pack("<2I", length, offset) for length, offset in table)
    return out + blob
