# -*- test-case-name: tests.test_refusals -*-
"""
Why connections were refused: for each configured charger its last refused
attempts (address, time, reason) and how many of each reason, and per
address the attempts refused before an identity was known (a failed TLS
handshake, a URL without an identity).

The adapter that refuses a connection says why, with one of the reasons
below (the OCPP one: C{ocpp/server.py}, through
L{Connections.refused<xxterocpp.domain.connections.Connections.refused>} and
L{Connections.refused_unnamed<xxterocpp.domain.connections.Connections.refused_unnamed>}).
Everything is bounded and kept in memory only (C{docs/ocpp.md#refusals}): a
charger retrying with a wrong password every few seconds must not write to
the disk each time, and after a restart its next attempt shows again.
"""

from collections import OrderedDict, deque

import attr

#: The password (HTTP Basic auth) was not the charger's.
WRONG_PASSWORD = "wrong-password"
#: The charger has a password but sent no (or no readable) Basic auth.
MISSING_PASSWORD = "missing-password"
#: The TLS handshake failed; the detail is OpenSSL's reason.
TLS_FAILED = "tls"
#: A valid client certificate (security profile 3) of another identity; the
#: detail is the identity the certificate names.
OTHER_CERTIFICATE = "other-certificate"
#: Security profile 3 without a client certificate, or with one that does
#: not verify up to the configured CA; the detail is OpenSSL's reason.
NO_CERTIFICATE = "no-certificate"
#: The connection's security profile is lower than the charger's.
LOWER_PROFILE = "lower-profile"
#: Refused without a look at the credentials after too many failed attempts.
THROTTLED = "throttled"
#: It offered only OCPP versions that are not spoken here; the detail is
#: what it offered.
SUBPROTOCOL = "subprotocol"
#: The URL names no charger (C{ws://host:8016/}).
NO_IDENTITY = "no-identity"

#: Every reason, in the order the status page lists them.
REASONS = (WRONG_PASSWORD, MISSING_PASSWORD, TLS_FAILED, OTHER_CERTIFICATE, NO_CERTIFICATE,
           LOWER_PROFILE, THROTTLED, SUBPROTOCOL, NO_IDENTITY)

#: How many refused attempts are kept per charger (the counts go on).
MAX_PER_CHARGER = 10

#: How many (address, reason) pairs of attempts refused before the identity
#: was known are kept; a flood from random addresses drops the oldest.
MAX_ADDRESSES = 100

#: The longest detail kept (an OpenSSL reason is a few words, an offered
#: subprotocol list comes from the peer).
MAX_DETAIL = 200


def _reason(reason):
    """
    @raise ValueError: for a reason not in L{REASONS}: the counts stay
        bounded and every reason has its words on the status page.
    """
    if reason not in REASONS:
        raise ValueError(f"unknown refusal reason {reason!r}; one of {', '.join(REASONS)}")
    return reason


def _detail(detail):
    return None if detail is None else str(detail)[:MAX_DETAIL]


@attr.s(frozen=True, slots=True)
class Refusal:
    """
    One refused connection attempt.

    @ivar address: the peer's address.
    @ivar at: when (an aware UTC datetime).
    @ivar reason: one of L{REASONS}.
    @ivar detail: what more the adapter knew (OpenSSL's reason, the name
        in a certificate), never a secret; or None.
    """

    address = attr.ib()
    at = attr.ib()
    reason = attr.ib(converter=_reason)
    detail = attr.ib(default=None, converter=_detail)


class ChargerRefusals:
    """
    The refused attempts of one charger.

    @ivar last: the last L{MAX_PER_CHARGER} L{Refusal}s, oldest first.
    @ivar counts: how many were refused for each reason, C{{reason: n}}.
    """

    __slots__ = ("last", "counts")

    def __init__(self):
        self.last = deque(maxlen=MAX_PER_CHARGER)
        self.counts = {}

    @property
    def total(self):
        """
        How many attempts were refused in all.
        """
        return sum(self.counts.values())

    def add(self, refusal):
        """
        Keep C{refusal}, forgetting the oldest beyond L{MAX_PER_CHARGER}.
        """
        self.last.append(refusal)
        self.counts[refusal.reason] = self.counts.get(refusal.reason, 0) + 1


@attr.s(eq=False, slots=True)
class UnnamedAttempts:
    """
    The attempts from one address refused for one reason before an
    identity was known.

    @ivar detail: that of the last attempt.
    """

    address = attr.ib()
    reason = attr.ib(converter=_reason)
    detail = attr.ib(converter=_detail)
    first_seen = attr.ib()
    last_seen = attr.ib()
    count = attr.ib(default=1)


class Refusals:
    """
    The refused connection attempts: by charger (L{of}) and, for those
    refused before an identity was known, by address (L{unnamed}).
    """

    def __init__(self):
        # Charger id -> ChargerRefusals, made at its first refusal: most
        # chargers of a fleet have none.
        self._chargers = {}
        # (address, reason) -> UnnamedAttempts, the most recent last.
        self._unnamed = OrderedDict()

    def of(self, charger_id):
        """
        @return: the L{ChargerRefusals} of C{charger_id}, or None while it
            has none.
        """
        return self._chargers.get(charger_id)

    def refused(self, charger_id, address, reason, at, detail=None):
        """
        Record a refused attempt of a configured charger.

        @return: the L{Refusal}.
        @raise ValueError: for a reason not in L{REASONS}.
        """
        refusal = Refusal(address, at, reason, detail)
        refusals = self._chargers.get(charger_id)
        if refusals is None:
            refusals = self._chargers[charger_id] = ChargerRefusals()
        refusals.add(refusal)
        return refusal

    def refused_unnamed(self, address, reason, at, detail=None):
        """
        Record an attempt refused before its identity was known.

        @return: its L{UnnamedAttempts}, C{count} 1 for a new address and
            reason.
        @raise ValueError: for a reason not in L{REASONS}.
        """
        key = (address, reason)
        entry = self._unnamed.pop(key, None)
        if entry is None:
            entry = UnnamedAttempts(address, reason, detail, at, at, 0)
        entry.detail, entry.last_seen = _detail(detail), at
        entry.count += 1
        self._unnamed[key] = entry
        while len(self._unnamed) > MAX_ADDRESSES:
            self._unnamed.popitem(last=False)
        return entry

    def unnamed(self):
        """
        @return: the L{UnnamedAttempts}, the most recent first.
        """
        return list(reversed(self._unnamed.values()))

    def last_address(self, charger_id):
        """
        @return: C{(address, when)} of the charger's last refused attempt,
            or None.
        """
        refusals = self._chargers.get(charger_id)
        if refusals is None:
            return None
        last = refusals.last[-1]
        return last.address, last.at

    def forget(self, charger_id):
        """
        Drop what is kept of a charger (it left the configuration).
        """
        self._chargers.pop(charger_id, None)
