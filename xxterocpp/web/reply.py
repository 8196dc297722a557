# -*- test-case-name: tests.test_web_routes -*-
"""
What the web interface answers: a L{Reply} (body, content type, status), an
L{HttpError} for the JSON C{{"error": ...}} answers, the headers every
answer carries, and the text made safe to encode.

Strings that came from chargers may hold lone surrogates (a JSON C{"\\ud800"}
escape decodes to one): they cannot be encoded as UTF-8, so every answer
replaces them with U+FFFD instead of failing.
"""

import json
import re

import attr

from xxterocpp.ocpp import messages as m

#: The headers of every answer: never cached (it is live state), never
#: sniffed as another type, never framed, no script or style from elsewhere.
SECURITY_HEADERS = (
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
)

#: The content type of the JSON answers.
JSON_TYPE = "application/json; charset=utf-8"

_SURROGATE = re.compile("[\ud800-\udfff]")


def without_surrogates(text):
    """
    @return: C{text} with every lone surrogate replaced by U+FFFD, so that
        it can be encoded as UTF-8.
    """
    return _SURROGATE.sub("\ufffd", text)


def scrubbed(value):
    """
    @param value: a JSON-like value (dicts, lists, tuples, strings, numbers),
        or an attrs or message instance (its string fields are scrubbed).
    @return: a copy whose strings have no lone surrogates.
    """
    if isinstance(value, str):
        return without_surrogates(value)
    if isinstance(value, dict):
        return {scrubbed(k): scrubbed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrubbed(v) for v in value]
    if m.is_message(value):
        names, evolve = m.field_names(type(value)), m.replace
    elif attr.has(type(value)):
        names = [f.name for f in attr.fields(type(value)) if f.init]
        evolve = attr.evolve
    else:
        return value
    changes = {name: without_surrogates(text) for name in names
               if isinstance(text := getattr(value, name), str) and _SURROGATE.search(text)}
    return evolve(value, **changes) if changes else value


class HttpError(Exception):
    """
    Answer the request with C{{"error": message, **extra}} and C{code}.

    @ivar headers: extra response headers, C{{name: value}}.
    """

    def __init__(self, code, message, headers=None, **extra):
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra


@attr.s(frozen=True)
class Reply:
    """
    A response body with its content type, status and extra headers.
    """

    body = attr.ib()
    content_type = attr.ib()
    code = attr.ib(default=200)
    headers = attr.ib(factory=dict)

    @classmethod
    def json(cls, value, code=200, headers=None):
        """
        @param value: a JSON-ready value.
        @raise TypeError: for one that is not.
        """
        text = json.dumps(value, ensure_ascii=False, indent=1) + "\n"
        return cls(without_surrogates(text).encode("utf-8"), JSON_TYPE, code, headers or {})

    @classmethod
    def text(cls, text, content_type, headers=None):
        """
        @param text: a L{str} to send as UTF-8, C{content_type} naming it.
        """
        return cls(without_surrogates(text).encode("utf-8"), content_type, 200, headers or {})

    @classmethod
    def error(cls, error):
        """
        @param error: an L{HttpError}.
        """
        return cls.json(dict(error=error.message, **error.extra), error.code, error.headers)
