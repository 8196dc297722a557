# -*- test-case-name: tests.test_basic_auth -*-
"""
HTTP Basic authentication (RFC 7617), shared by the chargers' WebSocket
handshake and the web interface: reading the C{Authorization} header,
comparing secrets in constant time, and throttling the addresses that keep
guessing.
"""

import base64
import binascii
import hmac
from collections import OrderedDict

import attr


@attr.s(frozen=True, slots=True)
class Credentials:
    """
    What a client presented.

    @ivar user: the user id, decoded as UTF-8 (undecodable bytes replaced).
    @ivar password: the password as sent: an OCPP AuthorizationKey may be
        raw binary, so it stays bytes.
    """

    user = attr.ib()
    password = attr.ib(repr=False)


def parse(header):
    """
    Read an C{Authorization} header value.

    @param header: the value (L{str} or L{bytes}), or None when absent.
    @return: the L{Credentials}, or None for no header, another scheme or a
        malformed one.
    """
    if not header:
        return None
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = raw.partition(b":")
    if not sep:
        return None
    return Credentials(user.decode("utf-8", "replace"), password)


def same_secret(presented, expected):
    """
    Compare two secrets in constant time (the time does not tell how much of
    a guess was right).

    @param presented: L{bytes} or L{str} (UTF-8).
    @param expected: L{bytes} or L{str} (UTF-8).
    """
    if isinstance(presented, str):
        presented = presented.encode("utf-8")
    if isinstance(expected, str):
        expected = expected.encode("utf-8")
    return hmac.compare_digest(presented, expected)


def matches(credentials, user, password):
    """
    @param credentials: L{Credentials} or None.
    @return: whether they are C{user} with C{password}; both are compared,
        whichever is wrong, so the time does not tell which one was.
    """
    if credentials is None:
        return False
    user_ok = same_secret(credentials.user, user)
    password_ok = same_secret(credentials.password, password)
    return user_ok & password_ok


def challenge(realm):
    """
    @return: the C{WWW-Authenticate} value asking for Basic credentials in
        C{realm}, in UTF-8 (RFC 7617 section 2.1).
    """
    return f'Basic realm="{realm}", charset="UTF-8"'


class FailureThrottle:
    """
    Failed authentications per remote address: after C{limit} failures
    within C{window} seconds an address is refused without looking at what
    it presents, until C{window} seconds have passed since its first failure.
    Guessing a password then takes C{limit} tries per window instead of
    thousands a second.

    Only the C{max_addresses} most recently failing addresses are kept, so a
    flood from many addresses costs bounded memory. An "address" is any
    hashable key: the OCPP server's is the address and the charger.
    """

    def __init__(self, clock, limit=10, window=60.0, max_addresses=1024):
        """
        @param clock: an L{IReactorTime}.
        """
        self.clock = clock
        self.limit = limit
        self.window = window
        self.max_addresses = max_addresses
        self._failures = OrderedDict()

    def _current(self, address):
        entry = self._failures.get(address)
        if entry is not None and self.clock.seconds() - entry[0] >= self.window:
            del self._failures[address]
            return None
        return entry

    def failures(self, address):
        """
        @return: how many failures of C{address} count now (those within
            C{window} seconds of its first).
        """
        entry = self._current(address)
        return 0 if entry is None else entry[1]

    def refused_for(self, address):
        """
        @return: for how many more seconds C{address} is refused without a
            try; 0 when it may try.
        """
        entry = self._current(address)
        if entry is None or entry[1] < self.limit:
            return 0
        return entry[0] + self.window - self.clock.seconds()

    def failed(self, address):
        """
        Count a failed authentication of C{address}.

        @return: True when this failure starts a refusal: the one moment a
            log line is worth writing (one per burst, not per attempt).
        """
        entry = self._current(address)
        if entry is None:
            entry = [self.clock.seconds(), 0]
        entry[1] += 1
        self._failures[address] = entry
        self._failures.move_to_end(address)
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)
        return entry[1] == self.limit
