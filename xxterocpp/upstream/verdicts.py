# -*- test-case-name: tests.test_upstream_uplink,tests.test_upstream_backoffice -*-
"""
The back office's say on tags the controller does not accept: its answers
(to an Authorize, a forwarded StartTransaction, a RemoteStartTransaction or
ReserveNow it sent) kept until they expire, and the offline rule of the
charger's C{[charger.upstream]} when none is kept.
"""

from twisted.internet import defer

from xxterocpp.domain.model import casefold
from xxterocpp.domain.tags import Authorization
from xxterocpp.ocpp import messages as m
from xxterocpp.ocpp.rpc import CallError, CallTimeout, NotConnected

#: Seconds the charger's Authorize (or StartTransaction) waits for the back
#: office's verdict on a tag the controller does not know; then the
#: offline rule decides.
AUTHORIZE_WAIT = 5.0

#: How long a verdict of the back office is kept when its idTagInfo has no
#: expiryDate (s).
VERDICT_LIFETIME = 24 * 3600


def _ignore(failure):
    # The Authorize did not get through: the offline rule decides.
    failure.trap(CallError, CallTimeout, NotConnected)


class Verdicts:
    """
    One charger's kept verdicts of its back office, by tag (case-folded).
    """

    def __init__(self, uplink):
        """
        @param uplink: the charger's L{xxterocpp.upstream.uplink.Uplink}.
        """
        self.uplink = uplink
        self._kept = {}

    def remember(self, id_tag, info):
        """
        Keep the back office's verdict on a tag (an C{IdTagInfo}) until its
        expiry.
        """
        if not id_tag or info is None or info.status is None:
            return
        # Timers and kept verdicts run on the monotonic clock; an expiry is
        # a time of day, so it becomes the duration left by the central
        # system's time (docs/architecture.md#time).
        now = self.uplink.clock.seconds()
        until = now + VERDICT_LIFETIME
        if info.expiry_date is not None:
            left = (info.expiry_date - self.uplink.central.now()).total_seconds()
            until = min(until, now + left)
        self._kept[casefold(id_tag)] = (
            Authorization(info.status, info.parent_id_tag, info.expiry_date), until)

    def verdict(self, id_tag):
        """
        @return: the back office's verdict on a tag the controller does not
            accept: its kept answer, else the offline rule's (None for
            C{local}: the controller's own verdict stands).
        """
        kept = self._kept.get(casefold(id_tag))
        if kept is not None:
            if self._holds(*kept):
                return kept[0]
            del self._kept[casefold(id_tag)]
        rule = self.uplink.config.offline_authorization
        if rule == "accept":
            return Authorization("Accepted")
        if rule == "reject":
            return Authorization("Invalid")
        return None

    def knows(self, id_tag):
        """
        @return: whether a verdict of the back office on C{id_tag} is kept.
        """
        kept = self._kept.get(casefold(id_tag))
        return kept is not None and self._holds(*kept)

    def _holds(self, verdict, until):
        """
        @return: whether a kept verdict holds: until its time on the
            monotonic clock, and its expiryDate by the time given out (the
            time left was counted from the time given out when it came: a
            step forward since, NTP setting a clock that booted early,
            brings the expiry nearer).
        """
        if until <= self.uplink.clock.seconds():
            return False
        return verdict.expiry is None or verdict.expiry > self.uplink.central.now()

    def ask(self, id_tag):
        """
        Ask the back office about a tag (Authorize) when it accepted the
        charger; its verdict is kept (L{remember}), also when it comes after
        L{AUTHORIZE_WAIT}.

        @return: a Deferred firing with None once it answered, or after
            L{AUTHORIZE_WAIT} seconds.
        """
        uplink = self.uplink
        if not uplink.accepted:
            return defer.succeed(None)
        waiter = defer.Deferred()
        timer = uplink.clock.callLater(AUTHORIZE_WAIT, waiter.callback, None)

        def answered(response):
            self.remember(id_tag, response.id_tag_info)

        def done(ignored):
            if timer.active():
                timer.cancel()
                waiter.callback(None)

        d = uplink.session.call(m.AuthorizeRequest(id_tag=id_tag))
        d.addCallbacks(answered, _ignore).addBoth(done)
        return waiter

    def forget(self):
        """
        Drop the kept verdicts (the back office's ClearCache).
        """
        self._kept.clear()
