# -*- test-case-name: tests.test_web_routes,tests.test_attacks_web -*-
"""
The API's smart sessions: C{/api/chargers/{id}/smart[?connector=N]} reads
(GET) and changes (PUT or POST C{{"departure": "HH:MM" | ISO date-time,
"energy_wh": N}}) the smart session at a charging point (404 when none
runs, or when the Smart Energy Manager does not); a departure more than
L{MAX_DEPARTURE} ahead is refused.
"""

from datetime import datetime, timedelta

from xxterocpp.smart.manager import NoSmartSession
from xxterocpp.web import parse
from xxterocpp.web.reply import HttpError

#: How far ahead a smart departure may be: planning further would take the
#: reactor seconds (the planner walks every slot up to it).
MAX_DEPARTURE = timedelta(days=7)


class SmartSessions:
    """
    The routes of the smart sessions (L{xxterocpp.web.api.ROUTES}
    C{smart.*}).
    """

    def __init__(self, central, smart):
        """
        @param central: the L{xxterocpp.domain.central.CentralSystem}.
        @param smart: the L{xxterocpp.smart.manager.SmartManager}, or None.
        """
        self.central = central
        self.smart = smart

    def _point(self, request, charger_id, body=None):
        """
        @return: C{(charger id, connector)} of a smart API request: the
            connector from C{?connector=N} or the body, default the
            charger's first configured one.
        """
        charger_id = parse.known_charger(self.central, charger_id)
        connector = None
        if "connector" in (body or {}):
            connector = parse.fields({"connector": body.pop("connector")},
                                     {"connector": parse.connector})["connector"]
        raw = request.args.get(b"connector")
        if raw is not None:
            try:
                connector = parse.connector(int(raw[-1]))
            except ValueError:
                raise HttpError(400, "'connector' must be a connector number (1, 2, ...)") \
                    from None
        if connector is None:
            connector = self.central.config.charging_points(charger_id)[0].connector
        elif self.central.config.charger(charger_id, connector) is None:
            raise HttpError(404, f"charger {charger_id!r} has no connector {connector} in the "
                                 f"configuration")
        if self.smart is None:
            raise HttpError(404, "the Smart Energy Manager is not running")
        return charger_id, connector

    def _no_session(self, charger_id, connector):
        return HttpError(404, f"no smart session at {charger_id} connector {connector}; "
                              f"start one with the smart_tag")

    def session(self, request, charger_id):
        """
        C{GET /api/chargers/{id}/smart}: the session at the point.
        """
        charger_id, connector = self._point(request, charger_id)
        session = self.smart.session(charger_id, connector)
        if session is None:
            raise self._no_session(charger_id, connector)
        return session

    def change(self, request, charger_id):
        """
        C{PUT}/C{POST /api/chargers/{id}/smart}: a new departure or energy
        for the session at the point.
        """
        body = parse.body(request)
        charger_id, connector = self._point(request, charger_id, body)
        values = parse.fields(body, {"departure": parse.departure,
                                     "energy_wh": parse.energy_wh})
        if not values:
            raise HttpError(400, "nothing to change; send departure and/or energy_wh")
        departure = values.get("departure")
        if isinstance(departure, datetime):
            departure = self._aware(departure)
            now = self.central.now()
            if departure <= now:
                raise HttpError(400, "'departure' is in the past")
            if departure > now + MAX_DEPARTURE:
                raise HttpError(400, f"'departure' is more than {MAX_DEPARTURE.days} days ahead")
        try:
            self.smart.update_session(charger_id, connector, departure=departure,
                                      energy_wh=values.get("energy_wh"))
        except NoSmartSession:
            raise self._no_session(charger_id, connector) from None
        except ValueError as e:
            raise HttpError(400, str(e)) from None
        return self.smart.session(charger_id, connector)

    def _aware(self, departure):
        """
        @return: a departure without a zone in local time, as the page and
            the [smart] departure are.
        """
        if departure.tzinfo is not None:
            return departure
        tz = self.smart.tz
        try:
            return departure.astimezone() if tz is None else departure.replace(tzinfo=tz)
        except OverflowError:
            raise HttpError(400, "'departure' is out of range") from None
