# -*- test-case-name: tests.test_web_routes,tests.test_ets,tests.test_attacks_web -*-
"""
The API's lists, as JSON or, with C{?format=csv}, as a file for a
spreadsheet: C{GET /api/transactions} (C{?charger=&since=&until=&limit=})
and C{GET /api/knx/group-addresses}, whose CSV is the file ETS imports
(L{xxterocpp.web.ets}).
"""

import csv
import io

from twisted.internet import defer

from xxterocpp.web import ets, parse
from xxterocpp.web.reply import Reply
from xxterocpp.web.status import iso

#: The first characters that make a spreadsheet read a CSV cell as a formula
#: (OWASP "CSV injection"); such cells get a C{'} in front.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

#: The name a browser saves C{GET /api/knx/group-addresses?format=csv} under.
ETS_FILENAME = "xxterocpp-group-addresses.csv"

#: The columns of C{GET /api/transactions}, JSON keys and CSV header alike.
TRANSACTION_FIELDS = ("id", "charger", "connector", "id_tag", "start", "stop", "meter_start_wh",
                      "meter_stop_wh", "energy_wh", "stop_reason", "start_status",
                      "time_uncertain")


def _csv_cell(value):
    """
    @return: C{value} as a spreadsheet shows it, never runs it: an idTag
        such as C{=cmd|"/c calc"!A1} comes from a charger or a tag reader.
    """
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _transaction_json(r):
    return dict(zip(TRANSACTION_FIELDS, (
        r.id, r.charger_id, r.connector, r.id_tag, iso(r.start_time), iso(r.stop_time),
        r.meter_start, r.meter_stop, None if r.energy_wh is None else round(r.energy_wh),
        r.stop_reason, r.start_status, r.time_uncertain)))


class Exports:
    """
    The routes of the lists (L{xxterocpp.web.api.ROUTES} C{exports.*}).
    """

    def __init__(self, central, store):
        """
        @param central: the L{xxterocpp.domain.central.CentralSystem}.
        @param store: the L{xxterocpp.store.Store} the transactions are
            read from.
        """
        self.central = central
        self.store = store

    @defer.inlineCallbacks
    def transactions(self, request):
        """
        C{GET /api/transactions}: the stored transactions asked for.
        """
        query = parse.fields(parse.query(request), {
            "charger": str, "since": parse.instant, "until": parse.instant, "limit": parse.limit,
            "format": parse.export_format})
        records = yield self.store.query_transactions(
            query.get("charger"), query.get("since"), query.get("until"), query.get("limit"))
        rows = [_transaction_json(r) for r in records]
        if query.get("format") != "csv":
            return {"transactions": rows}
        out = io.StringIO()
        writer = csv.DictWriter(out, TRANSACTION_FIELDS, lineterminator="\r\n")
        writer.writeheader()
        writer.writerows({k: _csv_cell(v) for k, v in row.items()} for row in rows)
        return Reply.text(out.getvalue(), "text/csv; charset=utf-8")

    def group_addresses(self, request):
        """
        C{GET /api/knx/group-addresses}: every configured group address.
        """
        query = parse.fields(parse.query(request), {"format": parse.export_format})
        config = self.central.config
        if query.get("format") != "csv":
            return {"group_addresses": [a.json() for a in ets.group_addresses(config)]}
        return Reply.text(ets.ets_csv(config), "text/csv; charset=utf-8", {
            "Content-Disposition": f'attachment; filename="{ETS_FILENAME}"'})
