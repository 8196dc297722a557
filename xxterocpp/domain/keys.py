# -*- test-case-name: tests.test_domain,tests.test_tls -*-
"""
Charger passwords (Basic auth) and the security white paper's
AuthorizationKey rules.
"""

import hmac
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

#: The value of a ChangeConfiguration(AuthorizationKey) in an OCPP frame.
KEY_IN_FRAME = re.compile(r'("key"\s*:\s*"AuthorizationKey"\s*,\s*"value"\s*:\s*)"[^"]*"')

#: ":" is left out: some chargers split Basic-auth credentials at any colon.
_KEY_FORMS = re.compile(r"(?:[0-9A-Fa-f]{2}){16,20}|[\x21-\x39\x3b-\x7e]{16,20}")


def valid_authorization_key(key):
    """
    @return: whether C{key} is a white-paper AuthorizationKey: 16..20 bytes,
        written as 32..40 hex digits or as 16..20 printable ASCII characters
        other than ":".
    """
    return bool(_KEY_FORMS.fullmatch(key))


def new_authorization_key():
    """
    @return: a random 20-byte AuthorizationKey as 40 hex digits.
    """
    return secrets.token_hex(20).upper()
