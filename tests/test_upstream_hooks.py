"""
The three places the back office adapter plugs into the rest: the relay of
L{xxterocpp.ocpp.handlers.dispatch}, L{OcppSession}'s C{accepts}, and the
central system's outside C{authority} on tags.
"""

import json

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.test_domain import DomainTestCase
from tests.test_handlers import decode
from xxterocpp.domain.tags import Authorization
from xxterocpp.ocpp import messages as m
from xxterocpp.ocpp.handlers import dispatch
from xxterocpp.ocpp.rpc import OcppSession


class RelayHookTests(DomainTestCase):
    """
    C{dispatch(..., relay)}.
    """

    def test_relay_between_charger_and_domain(self):
        """
        The relay sees the charger's CALL and answers with what C{local}
        (the domain's handler) gives, or makes the answer wait.
        """
        seen = []
        waiting = defer.Deferred()

        def relay(charger_id, action, request, local):
            seen.append((charger_id, action, request))
            return waiting.addCallback(lambda ignored: local(request))

        request = decode("Heartbeat", {})
        d = defer.maybeDeferred(dispatch, self.central, "CP1", "Heartbeat", request, relay)
        self.assertEqual(seen, [("CP1", "Heartbeat", request)])
        self.assertNoResult(d)
        waiting.callback(None)
        self.assertIsInstance(self.successResultOf(d), m.HeartbeatResponse)

    def test_without_relay_unchanged(self):
        """
        Without a relay the handler answers as before.
        """
        response = dispatch(self.central, "CP1", "Heartbeat", decode("Heartbeat", {}))
        self.assertIsInstance(response, m.HeartbeatResponse)


class AuthorityTests(DomainTestCase):
    """
    C{CentralSystem.authority}: asked only about tags the registry does not
    accept.
    """

    def test_consulted_for_unknown_tags_only(self):
        """
        Accepted and Blocked tags are the registry's; for an Invalid one the
        authority's verdict counts, None keeps the registry's.
        """
        asked = []

        def authority(charger_id, id_tag):
            asked.append((charger_id, id_tag))
            return Authorization("Accepted") if id_tag == "FLEET" else None

        self.central.authority = authority
        self.assertEqual(self.central.authorize("CP1", 1, "GOOD").status, "Accepted")
        self.assertEqual(self.central.authorize("CP1", 1, "FLEET").status, "Accepted")
        self.assertEqual(self.central.authorize("CP1", 1, "STRANGER").status, "Invalid")
        self.assertEqual(asked, [("CP1", "FLEET"), ("CP1", "STRANGER")])
        self.assertEqual(self.central.local_verdict("CP1", 1, "FLEET").status, "Invalid")

    def test_start_booked_with_the_authoritys_verdict(self):
        """
        A StartTransaction is booked with the authority's verdict.
        """
        self.central.authority = lambda charger_id, id_tag: Authorization("Accepted")
        tx_id, authorization = self.start(tag="FLEET")
        self.assertEqual(authorization.status, "Accepted")
        self.assertEqual(self.central.book.get(tx_id).start_status, "Accepted")


class AcceptsTests(SynchronousTestCase):
    """
    C{OcppSession(accepts=CS_TO_CP)}: the session of a charger's side.
    """

    def session(self):
        sent, got = [], []

        def handle(action, request):
            got.append(action)
            return m.ResetResponse(status="Accepted")

        session = OcppSession("CP1", sent.append, handle, Clock(), 30, accepts=m.CS_TO_CP)
        return session, sent, got

    def test_central_system_calls_taken(self):
        """
        A CS->CP CALL is dispatched and answered.
        """
        session, sent, got = self.session()
        session.text_received(json.dumps([2, "1", "Reset", {"type": "Soft"}]))
        self.assertEqual(got, ["Reset"])
        self.assertEqual(json.loads(sent[0]), [3, "1", {"status": "Accepted"}])

    def test_charger_calls_refused(self):
        """
        A CP->CS CALL is refused with NotSupported.
        """
        session, sent, got = self.session()
        session.text_received(json.dumps([2, "1", "Heartbeat", {}]))
        self.assertEqual(got, [])
        self.assertEqual(json.loads(sent[0])[:3], [4, "1", "NotSupported"])
        self.assertIn("sent by the charger", json.loads(sent[0])[3])
