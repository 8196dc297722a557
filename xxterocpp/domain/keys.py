# -*- test-case-name: tests.test_domain,tests.test_tls -*-
"""
Charger passwords (Basic auth) and the security white paper's
AuthorizationKey rules.
"""

import hmac
import json
import re
import secrets


def password_matches(configured, presented):
    """
    Compare a Basic-auth password in constant time.

    The OCPP security white paper sends the AuthorizationKey as raw bytes of a
    hex key (OCPP-J §6.2.2), many chargers send the text as typed: a
    configured password of 32..40 hex digits is accepted in both forms.

    @param configured: the configured password (str).
    @param presented: the password bytes from the Authorization header.
    """
    candidates = [configured.encode("utf-8")]
    if 32 <= len(configured) <= 40 and len(configured) % 2 == 0:
        try:
            candidates.append(bytes.fromhex(configured))
        except ValueError:
            pass
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(candidate, presented)
    return matched


#: The setting (scope: the charger id) holding an AuthorizationKey sent to the
#: charger whose acceptance is not known yet.
PENDING_AUTHORIZATION_KEY = "authorization_key_pending"

#: The rule L{valid_authorization_key} checks, in words.
KEY_RULE = ("32..40 hex digits or 16..20 printable ASCII characters without ':', '\"' or"
            " '\\'")

#: ":" is left out: some chargers split Basic-auth credentials at any colon;
#: '"' and "\\" as they would need escaping in every JSON, log line and
#: configuration file the key passes through.
_KEY_FORMS = re.compile(r"(?:[0-9A-Fa-f]{2}){16,20}|[\x21\x23-\x39\x3b-\x5b\x5d-\x7e]{16,20}")


def valid_authorization_key(key):
    """
    @return: whether C{key} is a white-paper AuthorizationKey as this
        central system sends one: L{KEY_RULE}.
    """
    return bool(_KEY_FORMS.fullmatch(key))


#: What an AuthorizationKey reads in a kept frame.
MASK = "********"

#: A kept frame that may hold an AuthorizationKey but cannot be read as
#: JSON (so its key cannot be found) is replaced by this.
HIDDEN_FRAME = "(not shown: not readable as JSON, and it may hold an AuthorizationKey)"

_KEY_NAME = "authorizationkey"


def masked_frame(text):
    """
    Mask the AuthorizationKeys in an OCPP-J frame kept for the status page
    (white paper A01.FR.09: never shown): the C{value} of every object
    whose C{key} is C{AuthorizationKey}, in any case and order: a
    ChangeConfiguration request, a GetConfiguration answer's
    C{configurationKey} entry.

    @return: C{text} itself when it holds none (read without parsing for
        almost every frame); else the frame re-encoded with each masked as
        L{MASK}; L{HIDDEN_FRAME} when it may hold one but is no JSON that
        can be read (invalid, nested too deep).
    """
    # A "\u" escape can spell the name in any letters.
    if "\\u" not in text and _KEY_NAME not in text.lower():
        return text
    try:
        frame = json.loads(text)
        if not _mask(frame):
            return text
        return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))
    except (ValueError, RecursionError):
        return HIDDEN_FRAME


def _mask(value):
    # A walk without recursion: a frame nests as deep as its sender likes.
    masked = False
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            key = item.get("key")
            if isinstance(key, str) and key.lower() == _KEY_NAME and "value" in item:
                item["value"] = MASK
                masked = True
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return masked


def new_authorization_key():
    """
    @return: a random 20-byte AuthorizationKey as 40 hex digits.
    """
    return secrets.token_hex(20).upper()
