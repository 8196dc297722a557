# -*- test-case-name: tests.test_domain -*-
"""
The domain: chargers, connectors, transactions, the tag registry and the
events observers see. It speaks no protocol: the OCPP adapter
(C{ocpp/handlers.py}) turns a charger's CALLs into calls of
L{CentralSystem<central.CentralSystem>} with plain values, the KNX bridge and
the web page observe its events, and the controller sends what it decides
to the chargers. See C{docs/architecture.md}.

  - L{central}: the facade; the chargers configured, the state loaded,
    the verdict on a tag, the events.
  - L{connections}: connections, offline, what a connector counts as.
  - L{reports}: boots, statuses, progress and security events; the
    limits in force and the reservations accepted.
  - L{book}: the transaction book.
  - L{tags}: the tag registry and the verdict on an idTag.
  - L{credentials}, L{keys}: the chargers' passwords and AuthorizationKeys.
  - L{security}, L{certificates}: security profiles, signing CSRs.
  - L{refusals}, L{unknown}: refused attempts, unknown identities.
  - L{workarounds}: each charger's workarounds.
  - L{model}, L{meter}, L{events}: the values and the events.
"""
