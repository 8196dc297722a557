# -*- test-case-name: tests.test_web,tests.test_web_routes,tests.test_attacks_web,tests.test_ets,tests.test_web_setup,tests.test_i18n -*-
"""
The web interface: one resource serves the status page and the JSON API,
every request behind HTTP Basic auth when C{[web] password} is set.

L{ROUTES} is the one table of what is served; L{COMMANDS} maps the charger
actions of C{POST /api/chargers/{id}/{action}} to the control API. Errors are
JSON C{{"error": "..."}} with the fitting status: 400 bad request body or
query, 401 no or wrong credentials, 403 cross-site request or a foreign
C{Host}, 404 unknown route, charger or tag, 405 wrong method, 409 charger
offline or command refused, 413 a body over 64 KiB, 415 a state-changing
request that is not C{application/json}, 429 too many failed logins, 500 a
bug (logged), 502 the charger answered with a CALLERROR, 504 the charger did
not answer. What is refused on the headers alone (before the body is read)
is in L{xxterocpp.web.gate}.

C{GET /ca.pem} is the root certificate for the chargers
(L{xxterocpp.web.rootca}).

C{GET /api/knx/group-addresses} lists the configured group addresses;
with C{?format=csv} it is the file ETS imports (L{xxterocpp.web.ets}).

C{/api/chargers/{id}/smart[?connector=N]} reads (GET) and changes (PUT or
POST C{{"departure": "HH:MM" | ISO date-time, "energy_wh": N}}) the smart
session at a charging point (404 when none runs); a departure more than
L{MAX_DEPARTURE} ahead is refused.
"""

import csv
import io
import json
from datetime import datetime, timedelta
from urllib.parse import unquote, urlsplit

import attr
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource, server

from xxterocpp.control import UnknownChargingPoint
from xxterocpp.ocpp import messages as m
from xxterocpp.smart.manager import NoSmartSession
from xxterocpp.domain.keys import PENDING_AUTHORIZATION_KEY
from xxterocpp.store import TagRecord
from xxterocpp.web import ets, parse
from xxterocpp.web.gate import Gate, WebSite, header, host_name, reason
from xxterocpp.web.i18n import language, negotiate
from xxterocpp.web.page import HISTORY_DAYS, SCRIPT, STYLESHEET, render_page
from xxterocpp.web.reply import SECURITY_HEADERS, HttpError, Reply, scrubbed
from xxterocpp.web.rootca import CertificateFile, charger_url, root_certificate_path
from xxterocpp.web.status import iso, snapshot

#: How far ahead a smart departure may be: planning further would take the
#: reactor seconds (the planner walks every slot up to it).
MAX_DEPARTURE = timedelta(days=7)

#: The first characters that make a spreadsheet read a CSV cell as a formula
#: (OWASP "CSV injection"); such cells get a C{'} in front.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@attr.s(frozen=True)
class Route:
    """
    One served path: C{{name}} segments match any one path segment and are
    passed, percent-decoded, to the handler method C{_name} as keywords.
    """

    method = attr.ib()
    pattern = attr.ib()
    handler = attr.ib()

    def match(self, segments):
        """
        @return: the keyword arguments for the handler, or None.
        """
        parts = self.pattern.strip("/").split("/") if self.pattern != "/" else []
        if len(parts) != len(segments):
            return None
        params = {}
        for part, segment in zip(parts, segments):
            if part.startswith("{"):
                params[part.strip("{}")] = segment
            elif part != segment:
                return None
        return params


#: Everything the web interface serves; the first matching route wins.
ROUTES = (
    Route("GET", "/", "page"),
    Route("GET", "/page.css", "stylesheet"),
    Route("GET", "/page.js", "script"),
    Route("GET", "/ca.pem", "root_certificate"),
    Route("GET", "/api/status", "status"),
    Route("GET", "/api/chargers/{charger_id}/smart", "smart"),
    Route("PUT", "/api/chargers/{charger_id}/smart", "change_smart"),
    Route("POST", "/api/chargers/{charger_id}/smart", "change_smart"),
    Route("POST", "/api/chargers/{charger_id}/ocpp/{action}", "ocpp"),
    Route("POST", "/api/chargers/{charger_id}/password", "password"),
    Route("PUT", "/api/chargers/{charger_id}/password", "put_password"),
    Route("POST", "/api/chargers/{charger_id}/{command}", "command"),
    Route("GET", "/api/tags", "tags"),
    Route("GET", "/api/tags/{tag_id}", "tag"),
    Route("PUT", "/api/tags/{tag_id}", "put_tag"),
    Route("DELETE", "/api/tags/{tag_id}", "delete_tag"),
    Route("GET", "/api/transactions", "transactions"),
    Route("GET", "/api/knx/group-addresses", "group_addresses"),
)


@attr.s(frozen=True)
class Command:
    """
    A charger action of the API: the L{xxterocpp.control.Controller} method
    and the body fields it takes as keywords (besides C{connector}).

    @ivar fields: C{{JSON key: parser}}.
    @ivar required: the keys that must be present.
    @ivar per_connector: whether it acts on a connector (C{connector},
        default the charger's first configured one) or the whole charger.
    """

    method = attr.ib()
    fields = attr.ib(factory=dict)
    required = attr.ib(default=())
    per_connector = attr.ib(default=True)


#: C{POST /api/chargers/{id}/{action}}: the action names and their commands.
COMMANDS = {
    "start": Command("start", {"id_tag": parse.id_tag, "smart": parse.boolean}),
    "stop": Command("stop"),
    "pause": Command("pause"),
    "resume": Command("resume"),
    "normal": Command("normal"),
    "fast": Command("fast"),
    "max-current": Command("set_limit", {"amps": parse.amps}, required=("amps",)),
    "availability": Command("set_availability", {"available": parse.boolean},
                            required=("available",)),
    "unlock": Command("unlock"),
    "reserve": Command("reserve", {"id_tag": parse.id_tag, "expiry": parse.instant}),
    "free": Command("free"),
    "reset": Command("reset", {"hard": parse.boolean}, per_connector=False),
    "security-profile": Command("raise_security_profile", {"profile": parse.security_profile},
                                required=("profile",), per_connector=False),
    "certificate": Command("renew_certificate", per_connector=False),
    "root-certificate": Command("install_root_certificate", per_connector=False),
}

#: The HTTP status of a command that did not go through, by
#: L{xxterocpp.control.CommandResult} status; any other refusal is 409.
FAILURE_CODES = {"NotConnected": 409, "Timeout": 504, "CallError": 502, "Invalid": 400}

#: The ChangeConfiguration answers meaning the charger took the new key.
KEY_ACCEPTED = ("Accepted", "RebootRequired")

#: HTTP status and explanation when a key rotation did not go through.
_KEY_FAILURES = {
    "NotConnected": (409, "the charger is offline; the old key stays in force"),
    "Timeout": (504, "both keys are accepted until it connects with one of them"),
    "CallError": (502, "the old key stays in force"),
}

#: The name a browser saves C{GET /api/knx/group-addresses?format=csv} under.
ETS_FILENAME = "xxterocpp-group-addresses.csv"

#: The columns of C{GET /api/transactions}, JSON keys and CSV header alike.
TRANSACTION_FIELDS = ("id", "charger", "connector", "id_tag", "start", "stop", "meter_start_wh",
                      "meter_stop_wh", "energy_wh", "stop_reason", "start_status",
                      "time_uncertain")


def _tag_json(tag):
    return {
        "id": tag.id,
        "status": tag.status,
        "expiry": iso(tag.expiry),
        "parent": tag.parent,
        "source": "api" if isinstance(tag, TagRecord) else "config",
    }


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


def _outcome(result):
    """
    @return: the JSON answer of an accepted command.
    @raise HttpError: for one that was not.
    """
    if not result.accepted:
        raise HttpError(FAILURE_CODES.get(result.status, 409),
                        result.detail or f"the charger answered {result.status}",
                        status=result.status)
    return {"accepted": True, "status": result.status, "detail": result.detail}


class WebInterface(resource.Resource):
    """
    The status page and the JSON API.

    @ivar knx_link: a callable returning the service's KNX link (with a
        C{connected} flag) or None when there is none.
    @ivar refused: a callable returning the counts of refused charger
        connections (C{{"auth": n, "tls": n}}) or None.
    @ivar journal: a callable returning the KNX bridge's
        L{xxterocpp.knx.journal.Journal}, or None when there is no bridge.
    @ivar upstream: a callable returning the back offices'
        L{xxterocpp.upstream.Upstream}, or None.
    """

    isLeaf = True
    log = Logger()

    def __init__(self, central, controller, store, knx_link, smart=None, refused=None,
                 journal=None, upstream=None):
        super().__init__()
        self.central = central
        self.controller = controller
        self.store = store
        self.knx_link = knx_link
        self.smart = smart
        self.refused = refused or (lambda: None)
        self.journal = journal or (lambda: None)
        self.upstream = upstream or (lambda: None)
        self._root_file = CertificateFile()
        self._server_file = CertificateFile()

    def render(self, request):
        # Every request is answered: a failure anywhere below, also in
        # encoding the answer, becomes a JSON 500, never an open request.
        gone = []
        request.notifyFinish().addErrback(gone.append)
        d = defer.maybeDeferred(self._dispatch, request)
        d.addCallback(lambda value: value if isinstance(value, Reply) else Reply.json(value))
        d.addErrback(self._error, request)
        d.addCallback(self._reply, request, gone)
        d.addErrback(self._unanswered, request, gone)
        return server.NOT_DONE_YET

    def _dispatch(self, request):
        method = request.method.decode("ascii", "replace")
        if method != "GET" and self._cross_site(request):
            # A page elsewhere must not steer chargers with the browser's
            # cached credentials.
            raise HttpError(403, "cross-site request refused")
        path = request.path.decode("ascii", "replace")
        segments = [unquote(s) for s in path.strip("/").split("/") if s]
        allowed = []
        for route in ROUTES:
            params = route.match(segments)
            if params is None:
                continue
            if route.method == method:
                if method != "GET" and not self._json_request(request):
                    raise HttpError(415, f"send {method} requests as Content-Type: "
                                         f"application/json")
                return getattr(self, "_" + route.handler)(request, **params)
            allowed.append(route.method)
        if allowed:
            raise HttpError(405, f"{method} not allowed here; use {' or '.join(allowed)}",
                            headers={"Allow": ", ".join(allowed)})
        raise HttpError(404, f"nothing at {path}")

    def _cross_site(self, request):
        origin = header(request, "origin")
        if not origin:
            return False
        try:
            return urlsplit(origin).netloc != header(request, "host")
        except ValueError:
            return True

    def _json_request(self, request):
        """
        Whether the body is declared JSON: a page elsewhere can send such a
        request only after a CORS preflight, which is never granted, while
        a form or a plain C{fetch} can post text/plain anywhere.
        """
        content_type = header(request, "content-type") or ""
        return content_type.split(";")[0].strip().lower() == "application/json"

    def _error(self, failure, request):
        if failure.check(HttpError):
            e = failure.value
        elif failure.check(UnknownChargingPoint):
            e = HttpError(404, str(failure.value) or "unknown charging point")
        else:
            self.log.failure("web request {method} {path} failed", failure,
                             method=request.method, path=request.path)
            e = HttpError(500, "internal error; the service log has the details")
        return Reply.error(e)

    def _reply(self, reply, request, gone):
        if gone:
            return
        request.setResponseCode(reply.code, reason(reply.code))
        request.setHeader("Content-Type", reply.content_type)
        request.setHeader("Content-Length", str(len(reply.body)))
        for name, value in (*SECURITY_HEADERS, *reply.headers.items()):
            request.setHeader(name, value)
        request.write(reply.body)
        request.finish()

    def _unanswered(self, failure, request, gone):
        self.log.failure("web request {method} {path}: the answer failed", failure,
                         method=request.method, path=request.path)
        if gone or request.finished:
            return
        if request.startedWriting:
            request.loseConnection()
        else:
            self._reply(Reply.error(HttpError(500, "internal error")), request, gone)

    # -- helpers ---------------------------------------------------------

    def _body(self, request):
        """
        @return: the request's JSON object ({} for an empty body).
        """
        raw = request.content.read()
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
            # Strings are kept, stored and sent to chargers as UTF-8.
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        except (ValueError, UnicodeError) as e:
            raise HttpError(400, f"the body is not JSON in UTF-8: {e}") from None
        except RecursionError:
            raise HttpError(400, "the body is nested too deeply") from None
        if not isinstance(body, dict):
            raise HttpError(400, "the body must be a JSON object")
        return body

    def _query(self, request):
        """
        @return: the query string's parameters, the last value of each.
        """
        return {k.decode("utf-8", "replace"): v[-1].decode("utf-8", "replace")
                for k, v in request.args.items()}

    def _charger_id(self, charger_id):
        known = self.central.lookup(charger_id)
        if known is None:
            raise HttpError(404, f"no charger {charger_id!r} in the configuration")
        return known

    # -- routes ----------------------------------------------------------

    @defer.inlineCallbacks
    def _page(self, request):
        status = self._snapshot()
        frames = {c.id: list(c.frames) for c in self.central.chargers.values()}
        since = self.central.now() - timedelta(days=HISTORY_DAYS)
        records = yield self.store.query_transactions(since=since)
        # Charger strings may hold lone surrogates, which UTF-8 cannot encode.
        t = language(negotiate(header(request, "accept-language")))
        html = yield render_page(scrubbed(status), scrubbed(frames),
                                 [scrubbed(r) for r in records], scrubbed(self._setup(request)), t)
        return Reply(html, "text/html; charset=utf-8",
                     headers={"Content-Language": t.code, "Vary": "Accept-Language"})

    def _setup(self, request):
        """
        @return: the page's setup section: the group addresses for ETS, the
            URL a charger is given and the root certificate.
        """
        config = self.central.config
        root = self._root_file.load(root_certificate_path(config.ocpp))
        server = self._server_file.load(config.ocpp.certificate) \
            if config.ocpp.secure else None
        return {
            "group_addresses": len(ets.group_addresses(config)),
            "charger_url": charger_url(config.ocpp, host_name(header(request, "host")),
                                       server and server.certificate),
            "root_certificate": None if root is None else {"sha256": root.sha256,
                                                           "href": "/ca.pem"},
        }

    def _root_certificate(self, request):
        path = root_certificate_path(self.central.config.ocpp)
        root = self._root_file.load(path)
        if root is None:
            raise HttpError(404, f"no root certificate at {path}; "
                                 f"'xxterocpp-certs init-ca' creates it")
        return Reply(root.pem, "application/x-pem-file", headers={
            "Content-Disposition": 'attachment; filename="ca.pem"'})

    def _stylesheet(self, request):
        return Reply(STYLESHEET, "text/css; charset=utf-8")

    def _script(self, request):
        return Reply(SCRIPT, "text/javascript; charset=utf-8")

    def _snapshot(self):
        return snapshot(self.central, self.controller, self.knx_link(), self.smart,
                        self.refused(), self.journal(), self.upstream())

    def _status(self, request):
        return self._snapshot()

    def _smart_point(self, request, charger_id, body=None):
        """
        @return: C{(charger id, connector)} of a smart API request: the
            connector from C{?connector=N} or the body, default the
            charger's first configured one.
        """
        charger_id = self._charger_id(charger_id)
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

    def _smart(self, request, charger_id):
        charger_id, connector = self._smart_point(request, charger_id)
        session = self.smart.session(charger_id, connector)
        if session is None:
            raise self._no_session(charger_id, connector)
        return session

    def _change_smart(self, request, charger_id):
        body = self._body(request)
        charger_id, connector = self._smart_point(request, charger_id, body)
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

    def _command(self, request, charger_id, command):
        if command not in COMMANDS:
            raise HttpError(404, f"unknown action {command!r}; one of {', '.join(COMMANDS)}")
        charger_id = self._charger_id(charger_id)
        spec = COMMANDS[command]
        fields = dict(spec.fields, connector=parse.connector) if spec.per_connector \
            else spec.fields
        kwargs = parse.fields(self._body(request), fields, spec.required)
        if spec.per_connector and "connector" not in kwargs:
            kwargs["connector"] = self.central.config.charging_points(charger_id)[0].connector
        d = getattr(self.controller, spec.method)(charger_id, **kwargs)
        return d.addCallback(_outcome)

    def _ocpp(self, request, charger_id, action):
        known = m.ACTIONS.get(action)
        if known is None or known.direction == m.CP_TO_CS:
            raise HttpError(404, f"{action!r} is no OCPP 1.6 action of the central system")
        charger_id = self._charger_id(charger_id)
        payload = self._body(request)

        def answered(result):
            if result.response is None:
                _outcome(result)
            return result.response

        return self.controller.send(charger_id, action, payload).addCallback(answered)

    @defer.inlineCallbacks
    def _password(self, request, charger_id):
        charger_id = self._charger_id(charger_id)
        key = parse.fields(self._body(request),
                           {"password": parse.authorization_key}).get("password")
        try:
            status = yield self.controller.change_authorization_key(charger_id, key)
        except ValueError as e:
            raise HttpError(400, str(e)) from None
        if status not in KEY_ACCEPTED:
            code, why = _KEY_FAILURES.get(status, (409, "the old key stays in force"))
            raise HttpError(code, f"the charger answered {status}; {why}", status=status)
        key = self.central.password_for(charger_id) if status == "Accepted" else (
            self.central.settings.get((charger_id, PENDING_AUTHORIZATION_KEY)))
        return {"accepted": True, "status": status, "password": key}

    @defer.inlineCallbacks
    def _put_password(self, request, charger_id):
        charger_id = self._charger_id(charger_id)
        key = parse.fields(self._body(request), {"password": parse.password},
                           required=("password",))["password"]
        # Nothing goes to the charger: it has the key already.
        yield self.central.credentials.key_given(charger_id, key)
        return {"stored": True}

    def _tags(self, request):
        return {"tags": [_tag_json(t) for t in sorted(self.central.tags.all(),
                                                      key=lambda t: t.id.casefold())]}

    def _tag(self, request, tag_id):
        tag = self.central.tags.get(tag_id)
        if tag is None:
            raise HttpError(404, f"no tag {tag_id!r}")
        return _tag_json(tag)

    @defer.inlineCallbacks
    def _put_tag(self, request, tag_id):
        try:
            parse.id_tag(tag_id)
        except ValueError as e:
            raise HttpError(400, f"the tag id {e}") from None
        values = parse.fields(self._body(request), {
            "status": parse.tag_status, "expiry": parse.optional(parse.instant),
            "parent": parse.optional(parse.id_tag)})
        tag = TagRecord(tag_id, values.get("status", "Accepted"), values.get("expiry"),
                        values.get("parent"))
        yield self.central.tags.put(tag)
        return _tag_json(tag)

    @defer.inlineCallbacks
    def _delete_tag(self, request, tag_id):
        tag = self.central.tags.get(tag_id)
        if tag is None:
            raise HttpError(404, f"no tag {tag_id!r}")
        if not isinstance(tag, TagRecord):
            raise HttpError(409, f"tag {tag.id!r} is in the configuration file; remove it there")
        yield self.central.tags.remove(tag.id)
        return {"deleted": tag.id}

    @defer.inlineCallbacks
    def _transactions(self, request):
        query = parse.fields(self._query(request), {
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


    def _group_addresses(self, request):
        query = parse.fields(self._query(request), {"format": parse.export_format})
        config = self.central.config
        if query.get("format") != "csv":
            return {"group_addresses": [a.json() for a in ets.group_addresses(config)]}
        return Reply.text(ets.ets_csv(config), "text/csv; charset=utf-8", {
            "Content-Disposition": f'attachment; filename="{ETS_FILENAME}"'})


def web_site(central, controller, store, knx_link, clock, smart=None, refused=None,
             journal=None, upstream=None):
    """
    @param clock: the L{IReactorTime} of the failed-login throttle and the
        idle timeouts.
    @param smart: the L{xxterocpp.smart.manager.SmartManager}, or L{None}.
    @param refused: a callable returning the refused-connection counts.
    @param journal: a callable returning the KNX bridge's journal, or None.
    @param upstream: a callable returning the back offices' forwarding, or
        None.
    @return: the server factory of the web interface.
    """
    return WebSite(WebInterface(central, controller, store, knx_link, smart, refused, journal,
                                upstream),
                   Gate(lambda: central.config.web, clock), clock)
