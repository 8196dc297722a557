# -*- test-case-name: tests.test_domain -*-
"""
The domain: chargers, connectors, transactions, the tag registry and the
events observers see. It speaks no protocol: the OCPP adapter
(C{ocpp/handlers.py}) turns a charger's CALLs into calls of
L{CentralSystem<central.CentralSystem>} with plain values, the KNX bridge and
the web page observe its events, and the controller sends what it decides
to the chargers. See C{docs/architecture.md}.

  - L{central}: the facade: connections, boots, statuses, events.
  - L{book}: the transaction book.
  - L{tags}: the tag registry and the verdict on an idTag.
  - L{credentials}, L{keys}: the chargers' passwords and AuthorizationKeys.
  - L{refusals}: why connections were refused.
  - L{model}, L{meter}, L{events}: the values and the events.
"""
