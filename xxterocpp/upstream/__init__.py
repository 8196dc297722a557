# -*- test-case-name: tests.test_upstream_uplink,tests.test_upstream_backoffice -*-
"""
The back office adapter: each charger with a C{[charger.upstream]} is
forwarded to an upstream OCPP 1.6J central system, as that charger, while
the building keeps control (see C{docs/upstream.md}).

A second adapter next to L{xxterocpp.ocpp}, not a part of the domain:

  - L{forwarding}: L{Upstream}, the front: one L{Uplink} per charger, the
    step between a charger's CALL and the domain, the status summary;
  - L{uplink}: one charger's conversation with its back office (boot,
    heartbeats, statuses); its parts L{delivery} (the outbox delivered),
    L{verdicts} (the tags it decides) and L{relayed} (the reservations and
    profiles it set), its L{timers};
  - L{outbox}: the persistent queue of transaction messages, the id map,
    the dead letters (tables in L{xxterocpp.store.upstream});
  - L{link}: the WebSocket client connection, TLS and backoff;
  - L{relay}: the back office's CALLs, relayed or intercepted;
  - L{capping}: its charging profiles capped to the building's limits.
"""

from xxterocpp.upstream.forwarding import Upstream

__all__ = ["Upstream"]
