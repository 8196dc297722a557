# -*- test-case-name: tests.test_upstream_deadletters -*-
"""
The API of the back office's queue: C{POST
/api/chargers/{id}/upstream/requeue} puts the charger's dead letters back
in its queue (L{xxterocpp.upstream.forwarding.Upstream.requeue},
docs/upstream.md#queue); the page and C{/api/status} show them.
"""

from twisted.internet import defer

from xxterocpp.web.reply import HttpError


class BackOfficeQueue:
    """
    The routes of the back office's queue (L{xxterocpp.web.api.ROUTES}
    C{backoffice.*}).
    """

    def __init__(self, upstream):
        """
        @param upstream: a callable returning the back offices'
            L{xxterocpp.upstream.Upstream}, or None.
        """
        self.upstream = upstream

    @defer.inlineCallbacks
    def requeue(self, request, charger_id):
        """
        C{POST /api/chargers/{id}/upstream/requeue}: at most
        L{xxterocpp.upstream.outbox.REQUEUE_BATCH} of the charger's dead
        letters, the oldest first, are queued again; the answer says how
        many, and how many are left (ask again for those).
        """
        upstream = self.upstream()
        try:
            if upstream is None:
                raise KeyError(charger_id)
            requeued, left = yield upstream.requeue(charger_id)
        except KeyError:
            raise HttpError(404, f"{charger_id} has no queue for a back office") from None
        if requeued is None:
            raise HttpError(409, f"the dead letters of {charger_id} are being queued again"
                                 f" already")
        return {"charger_id": charger_id, "requeued": requeued, "dead_letters": left}
