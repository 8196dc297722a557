# -*- test-case-name: tests.test_web_routes -*-
"""
The values the API reads from request bodies and queries: each parser
returns the value for the control API or raises L{ValueError} with the
reason, and L{fields} checks a whole JSON object, for the 400 answer;
L{body} and L{query} read them from the request, L{known_charger} the
charger of a path.
"""

import json
import math
import re
from datetime import datetime, time, timezone

from xxterocpp.config import TAG_STATUSES
from xxterocpp.domain.keys import KEY_RULE, valid_authorization_key
from xxterocpp.web.reply import HttpError

#: The largest C{?limit=}: SQLite's integers are 64-bit signed.
MAX_LIMIT = 2 ** 63 - 1


def boolean(value):
    """C{true} or C{false}."""
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def amps(value):
    """A current in A, 0 or more."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError("must be a number of amperes")
    if value < 0:
        raise ValueError("must not be negative")
    return value


def connector(value):
    """A connector number, 1 or more."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("must be a connector number (1, 2, ...)")
    return value


def id_tag(value):
    """An OCPP idTag (CiString20Type)."""
    if not isinstance(value, str) or not 1 <= len(value) <= 20:
        raise ValueError("must be an idTag of 1 to 20 characters")
    return value


def energy_wh(value):
    """An amount of energy in Wh, more than 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError("must be a number of Wh")
    if value <= 0:
        raise ValueError("must be more than 0")
    return float(value)


def departure(value):
    """
    C{"HH:MM"} (the next such local time) or an ISO 8601 date-time (without
    a zone: local time); the zone is settled by the handler.
    """
    if not isinstance(value, str):
        raise ValueError('must be a time like "07:00" or an ISO 8601 date-time')
    text = value.strip()
    if "T" not in text and " " not in text:
        try:
            hour, minute = text.split(":")
            if len(hour) in (1, 2) and len(minute) == 2 and hour.isdigit() and minute.isdigit():
                return time(int(hour), int(minute))
        except ValueError:
            pass
        raise ValueError(f'must be a time like "07:00" or an ISO 8601 date-time, not {value!r}')
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"must be a time like \"07:00\" or an ISO 8601 date-time such as "
                         f"2024-05-02T07:00:00+02:00, not {value!r}") from None


def optional(parse):
    """C{parse}, or C{null} for None."""
    return lambda value: None if value is None else parse(value)


def instant(value):
    """
    An ISO 8601 date-time with a zone (or a date: midnight UTC), as UTC.
    """
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        raise ValueError("must be an ISO 8601 time like 2024-05-01T18:00:00Z") from None
    if when.tzinfo is None:
        if "T" in value:
            raise ValueError("needs a time zone, e.g. 2024-05-01T18:00:00Z")
        when = when.replace(tzinfo=timezone.utc)
    try:
        return when.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError("is out of range (years 1 to 9999 in UTC)") from None


def limit(value):
    """A query's C{limit}: a positive whole number SQLite can take."""
    if not re.fullmatch("[0-9]{1,19}", value) or not 1 <= int(value) <= MAX_LIMIT:
        raise ValueError(f"must be a whole number from 1 to {MAX_LIMIT}")
    return int(value)


def export_format(value):
    """A query's C{format}: C{json} or C{csv}."""
    if value not in ("json", "csv"):
        raise ValueError("must be json or csv")
    return value


def tag_status(value):
    """The status of a managed tag (an OCPP AuthorizationStatus)."""
    if value not in TAG_STATUSES:
        raise ValueError("must be one of " + ", ".join(TAG_STATUSES))
    return value


def authorization_key(value):
    """A charger's new Basic-auth password (AuthorizationKey)."""
    if not isinstance(value, str) or not valid_authorization_key(value):
        raise ValueError(f"must be {KEY_RULE} (OCPP security white paper)")
    return value


def password(value):
    """A Basic-auth password a charger was given elsewhere (on its own screen)."""
    if not isinstance(value, str) or not 1 <= len(value) <= 255 or not value.isprintable():
        raise ValueError("must be 1 to 255 printable characters")
    return value


def security_profile(value):
    """A security profile to raise a charger to: 1, 2 or 3."""
    if isinstance(value, bool) or value not in (1, 2, 3):
        raise ValueError("must be the security profile 1, 2 or 3")
    return value


def fields(body, parsers, required=()):
    """
    Check a JSON object against C{{key: parser}}.

    @return: the parsed values by key.
    @raise HttpError: 400 naming the bad, missing or unknown key.
    """
    unknown = sorted(set(body) - set(parsers))
    if unknown:
        expected = ", ".join(parsers) or "no fields"
        raise HttpError(400, f"unknown field {unknown[0]!r}; expected {expected}")
    for key in required:
        if key not in body:
            raise HttpError(400, f"{key!r} is missing")
    values = {}
    for key, value in body.items():
        try:
            values[key] = parsers[key](value)
        except ValueError as e:
            raise HttpError(400, f"{key!r} {e}") from None
    return values


def body(request):
    """
    @return: the request's JSON object ({} for an empty body).
    @raise HttpError: 400 for a body that is not a JSON object in UTF-8.
    """
    raw = request.content.read()
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
        # Strings are kept, stored and sent to chargers as UTF-8.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeError) as e:
        raise HttpError(400, f"the body is not JSON in UTF-8: {e}") from None
    except RecursionError:
        raise HttpError(400, "the body is nested too deeply") from None
    if not isinstance(value, dict):
        raise HttpError(400, "the body must be a JSON object")
    return value


def query(request):
    """
    @return: the query string's parameters, the last value of each.
    """
    return {k.decode("utf-8", "replace"): v[-1].decode("utf-8", "replace")
            for k, v in request.args.items()}


def known_charger(central, charger_id):
    """
    @return: the configured identity of the charger of a path
        (L{xxterocpp.domain.connections.Connections.lookup}).
    @raise HttpError: 404 when there is none.
    """
    known = central.connections.lookup(charger_id)
    if known is None:
        raise HttpError(404, f"no charger {charger_id!r} in the configuration")
    return known
