# -*- test-case-name: tests.test_keys -*-
"""
AuthorizationKey rotation (security white paper A01): the new key goes out
with ChangeConfiguration, and the domain learns before and after, so that
the charger's Basic-auth password follows what the charger took
(L{xxterocpp.domain.credentials.Credentials.begin_key_change},
C{end_key_change}).
"""

from twisted.internet import defer
from twisted.logger import Logger

from xxterocpp.control.sender import CommandResult, invalid
from xxterocpp.domain.keys import KEY_RULE, valid_authorization_key
from xxterocpp.ocpp import messages as m

#: The configuration key holding a charger's Basic-auth password.
KEY = "AuthorizationKey"

_BAD_KEY = "an AuthorizationKey is " + KEY_RULE


def check_key(key):
    """
    @raise ValueError: when C{key} is not a white-paper AuthorizationKey.
    """
    if not valid_authorization_key(key):
        raise ValueError(_BAD_KEY)


def is_key_change(request):
    """
    @return: whether C{request} sets the AuthorizationKey (chargers read
        configuration keys without regard to case).
    """
    return (isinstance(request, m.ChangeConfigurationRequest)
            and request.key.casefold() == KEY.casefold())


class KeyRotation:
    """
    Sends new AuthorizationKeys and keeps the domain's books on them.
    """

    log = Logger()

    def __init__(self, central, sender):
        """
        @param central: the L{xxterocpp.domain.central.CentralSystem}.
        @param sender: the L{xxterocpp.control.sender.Sender}.
        """
        self.central = central
        self.sender = sender

    def change(self, charger, key):
        """
        Give C{charger} the AuthorizationKey C{key}. Accepted: only the new
        key is accepted from now on; Rejected, NotSupported or a CALLERROR:
        the old one stays; without an answer (or RebootRequired) both are
        until the charger connects with one of them.

        @param key: a valid key (L{check_key}).
        @return: a Deferred firing with a L{CommandResult}; offline, nothing
            is sent nor noted.
        """
        if not self.sender.connected(charger):
            return defer.succeed(CommandResult(False, "NotConnected",
                                               f"{charger.id} is not connected"))
        return self._change(charger, key)

    @defer.inlineCallbacks
    def _change(self, charger, key):
        yield self.central.credentials.begin_key_change(charger.id, key)
        result = yield self.sender.call(charger, m.ChangeConfigurationRequest(key=KEY, value=key))
        if result.status == "CallError":
            self.log.warn("{id}: AuthorizationKey change answered with a CALLERROR ({detail});"
                          " the old key stays", id=charger.id, detail=result.detail)
        yield self.central.credentials.end_key_change(charger.id, key, result.status)
        return result

    def route(self, charger, request):
        """
        Send a ChangeConfiguration of the AuthorizationKey that came through
        the raw API (L{is_key_change}) as a rotation; an invalid key is
        refused without sending.
        """
        if not valid_authorization_key(request.value or ""):
            return invalid(_BAD_KEY)
        return self.change(charger, request.value)
