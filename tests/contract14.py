"""
TEMPORARY, delete at the merge with the domain side of issue 14 (and its
import in C{tests/__init__.py}).

The KNX bridge codes against names the domain and the controller add in
that issue (C{CommandRefused}, C{Transaction.accepted},
C{Charger.ever_connected} / C{offline}, C{CentralSystem.point_status} /
C{last_session}, C{Controller.mode}). Until they exist, this gives them the
simplest meaning, so the suite can run the service; it does nothing once
the domain side is there.
"""

import attr

from xxterocpp.control.commands import Controller
from xxterocpp.domain import events
from xxterocpp.domain.central import CentralSystem
from xxterocpp.domain.model import Charger, Transaction

if not hasattr(events, "CommandRefused"):

    @attr.s(frozen=True)
    class CommandRefused:
        charger_id = attr.ib()
        connector = attr.ib()
        command = attr.ib(default=None)

    def _point_status(central, charger_id, connector):
        c = central.chargers[charger_id].connectors.get(connector)
        if c is None or c.status is None:
            return (None, None)
        return (c.status, c.error_code)

    events.CommandRefused = CommandRefused
    Transaction.accepted = property(lambda tx: tx.start_status == "Accepted")
    Charger.ever_connected = property(lambda c: c.connected_since is not None or bool(c.boot))
    Charger.offline = property(lambda c: False)
    CentralSystem.point_status = _point_status
    CentralSystem.last_session = lambda central, charger_id, connector: None
    Controller.mode = lambda controller, charger_id, connector=1: None
