# -*- test-case-name: tests.test_station -*-
"""
The domain: chargers, connectors, transactions, the tag registry and the
events observers see. It speaks no protocol: the OCPP adapter
(L{xxterocpp.ocpp}) turns frames into calls of L{CentralSystem}, the KNX
bridge and the web page observe its events, and the controller
(L{xxterocpp.control}) sends what it decides to the chargers. See
C{docs/architecture.md}.
"""
