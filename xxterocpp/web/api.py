# -*- test-case-name: tests.test_web -*-
"""
The web interface (SPEC §5): one resource serves the status page and the
JSON API, every request behind HTTP Basic auth when C{[web] password} is set.

L{ROUTES} is the one table of what is served; L{COMMANDS} maps the charger
actions of C{POST /api/chargers/{id}/{action}} to the control API. Errors are
JSON C{{"error": "..."}} with the fitting status: 400 bad request body, 401
no or wrong credentials, 403 cross-site request, 404 unknown route, charger
or tag, 405 wrong method, 409 charger offline or command refused, 502 the
charger answered with a CALLERROR, 504 the charger did not answer.

C{/api/chargers/{id}/smart[?connector=N]} reads (GET) and changes (PUT or
POST C{{"departure": "HH:MM" | ISO date-time, "energy_wh": N}}) the smart
session at a charging point (404 when none runs).
"""

import base64
import binascii
import csv
import hmac
import io
import json
import math
from datetime import datetime, time, timedelta, timezone
from urllib.parse import unquote, urlsplit

import attr
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource, server

from xxterocpp.config import TAG_STATUSES
from xxterocpp.control import UnknownChargingPoint
from xxterocpp.ocpp import messages as m
from xxterocpp.smart.manager import NoSmartSession
from xxterocpp.domain.keys import PENDING_AUTHORIZATION_KEY, valid_authorization_key
from xxterocpp.store import TagRecord
from xxterocpp.web.page import HISTORY_DAYS, SCRIPT, STYLESHEET, render_page
from xxterocpp.web.status import iso, snapshot


class HttpError(Exception):
    """
    Answer the request with C{{"error": message, **extra}} and C{code}.
    """

    def __init__(self, code, message, **extra):
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.extra = extra


@attr.s(frozen=True)
class Reply:
    """
    A response body with its content type and status.
    """

    body = attr.ib()
    content_type = attr.ib()
    code = attr.ib(default=200)

    @classmethod
    def json(cls, value, code=200):
        text = json.dumps(value, ensure_ascii=False, indent=1) + "\n"
        return cls(text.encode("utf-8"), "application/json; charset=utf-8", code)


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
    Route("GET", "/api/status", "status"),
    Route("GET", "/api/chargers/{charger_id}/smart", "smart"),
    Route("PUT", "/api/chargers/{charger_id}/smart", "change_smart"),
    Route("POST", "/api/chargers/{charger_id}/smart", "change_smart"),
    Route("POST", "/api/chargers/{charger_id}/ocpp/{action}", "ocpp"),
    Route("POST", "/api/chargers/{charger_id}/password", "password"),
    Route("POST", "/api/chargers/{charger_id}/{command}", "command"),
    Route("GET", "/api/tags", "tags"),
    Route("GET", "/api/tags/{tag_id}", "tag"),
    Route("PUT", "/api/tags/{tag_id}", "put_tag"),
    Route("DELETE", "/api/tags/{tag_id}", "delete_tag"),
    Route("GET", "/api/transactions", "transactions"),
)


# Body fields: each parser returns the value for the control API or raises
# ValueError with the reason, for the 400 answer.

def _boolean(value):
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _amps(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError("must be a number of amperes")
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _connector(value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("must be a connector number (1, 2, ...)")
    return value


def _id_tag(value):
    if not isinstance(value, str) or not 1 <= len(value) <= 20:
        raise ValueError("must be an idTag of 1 to 20 characters")
    return value


def _energy_wh(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError("must be a number of Wh")
    if value <= 0:
        raise ValueError("must be more than 0")
    return float(value)


def _departure(value):
    """
    C{"HH:MM"} (the next such local time) or an ISO 8601 date-time (without
    a zone: local time); the zone is settled by the handler.
    """
    if not isinstance(value, str):
        raise ValueError('must be a time like "07:00" or an ISO 8601 date-time')
    text = value.strip()
    if "T" not in text and " " not in text:
        try:
            hour, minute = text.split(":")
            if len(hour) in (1, 2) and len(minute) == 2 and hour.isdigit() and minute.isdigit():
                return time(int(hour), int(minute))
        except ValueError:
            pass
        raise ValueError(f'must be a time like "07:00" or an ISO 8601 date-time, not {value!r}')
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"must be a time like \"07:00\" or an ISO 8601 date-time such as "
                         f"2024-05-02T07:00:00+02:00, not {value!r}") from None


def _optional(parse):
    return lambda value: None if value is None else parse(value)


def _instant(value):
    """
    An ISO 8601 date-time with a zone (or a date: midnight UTC).
    """
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        raise ValueError("must be an ISO 8601 time like 2024-05-01T18:00:00Z") from None
    if when.tzinfo is None:
        if "T" in value:
            raise ValueError("needs a time zone, e.g. 2024-05-01T18:00:00Z")
        when = when.replace(tzinfo=timezone.utc)
    return when


def _limit(value):
    if not value.isdigit() or int(value) < 1:
        raise ValueError("must be a positive whole number")
    return int(value)


def _format(value):
    if value not in ("json", "csv"):
        raise ValueError("must be json or csv")
    return value


def _tag_status(value):
    if value not in TAG_STATUSES:
        raise ValueError("must be one of " + ", ".join(TAG_STATUSES))
    return value


def _authorization_key(value):
    if not isinstance(value, str) or not valid_authorization_key(value):
        raise ValueError("must be 32..40 hex digits or 16..20 printable ASCII characters"
                         " without ':' (OCPP security white paper)")
    return value


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
    "start": Command("start", {"id_tag": _id_tag, "smart": _boolean}),
    "stop": Command("stop"),
    "pause": Command("pause"),
    "resume": Command("resume"),
    "normal": Command("normal"),
    "fast": Command("fast"),
    "max-current": Command("set_limit", {"amps": _amps}, required=("amps",)),
    "availability": Command("set_availability", {"available": _boolean},
                            required=("available",)),
    "unlock": Command("unlock"),
    "reserve": Command("reserve", {"id_tag": _id_tag, "expiry": _instant}),
    "free": Command("free"),
    "reset": Command("reset", {"hard": _boolean}, per_connector=False),
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

#: The columns of C{GET /api/transactions}, JSON keys and CSV header alike.
TRANSACTION_FIELDS = ("id", "charger", "connector", "id_tag", "start", "stop", "meter_start_wh",
                      "meter_stop_wh", "energy_wh", "stop_reason", "start_status")


def _fields(body, fields, required=()):
    """
    Check a JSON object against C{{key: parser}}.

    @return: the parsed values by key.
    @raise HttpError: 400 naming the bad, missing or unknown key.
    """
    unknown = sorted(set(body) - set(fields))
    if unknown:
        expected = ", ".join(fields) or "no fields"
        raise HttpError(400, f"unknown field {unknown[0]!r}; expected {expected}")
    for key in required:
        if key not in body:
            raise HttpError(400, f"{key!r} is missing")
    values = {}
    for key, value in body.items():
        try:
            values[key] = fields[key](value)
        except ValueError as e:
            raise HttpError(400, f"{key!r} {e}") from None
    return values


def _tag_json(tag):
    return {
        "id": tag.id,
        "status": tag.status,
        "expiry": iso(tag.expiry),
        "parent": tag.parent,
        "source": "api" if isinstance(tag, TagRecord) else "config",
    }


def _transaction_json(r):
    return dict(zip(TRANSACTION_FIELDS, (
        r.id, r.charger_id, r.connector, r.id_tag, iso(r.start_time), iso(r.stop_time),
        r.meter_start, r.meter_stop, None if r.energy_wh is None else round(r.energy_wh),
        r.stop_reason, r.start_status)))


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
    """

    isLeaf = True
    log = Logger()

    def __init__(self, central, controller, store, knx_link, smart=None, refused=None):
        super().__init__()
        self.central = central
        self.controller = controller
        self.store = store
        self.knx_link = knx_link
        self.smart = smart
        self.refused = refused or (lambda: None)

    def render(self, request):
        gone = []
        request.notifyFinish().addErrback(gone.append)
        d = defer.maybeDeferred(self._dispatch, request)
        d.addErrback(self._error, request)
        d.addCallback(self._reply, request, gone)
        return server.NOT_DONE_YET

    def _dispatch(self, request):
        if not self._authorized(request):
            request.setHeader("WWW-Authenticate", 'Basic realm="xxterocpp", charset="UTF-8"')
            raise HttpError(401, "log in with the [web] username and password")
        method = request.method.decode("ascii", "replace")
        origin = request.getHeader("origin")
        if method != "GET" and origin and \
                urlsplit(origin).netloc != request.getHeader("host"):
            # A page elsewhere must not steer chargers with the browser's
            # cached credentials.
            raise HttpError(403, "cross-site request refused")
        path = request.path.decode("ascii", "replace").split("?")[0]
        segments = [unquote(s) for s in path.strip("/").split("/") if s]
        allowed = []
        for route in ROUTES:
            params = route.match(segments)
            if params is None:
                continue
            if route.method == method:
                return getattr(self, "_" + route.handler)(request, **params)
            allowed.append(route.method)
        if allowed:
            request.setHeader("Allow", ", ".join(allowed))
            raise HttpError(405, f"{method} not allowed here; use {' or '.join(allowed)}")
        raise HttpError(404, f"nothing at {path}")

    def _authorized(self, request):
        web = self.central.config.web
        if not web.password:
            return True
        scheme, _, encoded = (request.getHeader("authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        # Both compared, in constant time, whichever is wrong.
        user_ok = hmac.compare_digest(user, web.username.encode("utf-8"))
        password_ok = hmac.compare_digest(password, web.password.encode("utf-8"))
        return user_ok & password_ok

    def _error(self, failure, request):
        if failure.check(HttpError):
            e = failure.value
        elif failure.check(UnknownChargingPoint):
            e = HttpError(404, str(failure.value) or "unknown charging point")
        else:
            self.log.failure("web request {method} {path} failed", failure,
                             method=request.method, path=request.path)
            e = HttpError(500, "internal error; the service log has the details")
        return Reply.json(dict(error=e.message, **e.extra), e.code)

    def _reply(self, reply, request, gone):
        if not isinstance(reply, Reply):
            reply = Reply.json(reply)
        if gone:
            return
        request.setResponseCode(reply.code)
        request.setHeader("Content-Type", reply.content_type)
        request.setHeader("Cache-Control", "no-store")
        request.setHeader("X-Content-Type-Options", "nosniff")
        request.setHeader("Content-Security-Policy",
                          "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
        request.write(reply.body)
        request.finish()

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
        except (ValueError, UnicodeDecodeError) as e:
            raise HttpError(400, f"the body is not JSON: {e}") from None
        if not isinstance(body, dict):
            raise HttpError(400, "the body must be a JSON object")
        return body

    def _charger_id(self, charger_id):
        known = self.central.lookup(charger_id)
        if known is None:
            raise HttpError(404, f"no charger {charger_id!r} in the configuration")
        return known

    # -- routes ----------------------------------------------------------

    @defer.inlineCallbacks
    def _page(self, request):
        status = snapshot(self.central, self.controller, self.knx_link(), self.smart,
                          self.refused())
        frames = {c.id: list(c.frames) for c in self.central.chargers.values()}
        since = self.central.now() - timedelta(days=HISTORY_DAYS)
        records = yield self.store.query_transactions(since=since)
        html = yield render_page(status, frames, records)
        return Reply(html, "text/html; charset=utf-8")

    def _stylesheet(self, request):
        return Reply(STYLESHEET, "text/css; charset=utf-8")

    def _script(self, request):
        return Reply(SCRIPT, "text/javascript; charset=utf-8")

    def _status(self, request):
        return snapshot(self.central, self.controller, self.knx_link(), self.smart,
                        self.refused())

    def _smart_point(self, request, charger_id, body=None):
        """
        @return: C{(charger id, connector)} of a smart API request: the
            connector from C{?connector=N} or the body, default the
            charger's first configured one.
        """
        charger_id = self._charger_id(charger_id)
        connector = None
        if "connector" in (body or {}):
            connector = _fields({"connector": body.pop("connector")},
                                {"connector": _connector})["connector"]
        raw = request.args.get(b"connector")
        if raw is not None:
            try:
                connector = _connector(int(raw[-1]))
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
        values = _fields(body, {"departure": _departure, "energy_wh": _energy_wh})
        if not values:
            raise HttpError(400, "nothing to change; send departure and/or energy_wh")
        departure = values.get("departure")
        if isinstance(departure, datetime):
            if departure.tzinfo is None:
                # Local time, as the page and the [smart] departure are.
                tz = self.smart.tz
                departure = departure.astimezone() if tz is None else departure.replace(tzinfo=tz)
            if departure <= self.central.now():
                raise HttpError(400, "'departure' is in the past")
        try:
            self.smart.update_session(charger_id, connector, departure=departure,
                                      energy_wh=values.get("energy_wh"))
        except NoSmartSession:
            raise self._no_session(charger_id, connector) from None
        except ValueError as e:
            raise HttpError(400, str(e)) from None
        return self.smart.session(charger_id, connector)

    def _command(self, request, charger_id, command):
        if command not in COMMANDS:
            raise HttpError(404, f"unknown action {command!r}; one of {', '.join(COMMANDS)}")
        charger_id = self._charger_id(charger_id)
        spec = COMMANDS[command]
        fields = dict(spec.fields, connector=_connector) if spec.per_connector else spec.fields
        kwargs = _fields(self._body(request), fields, spec.required)
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
        key = _fields(self._body(request), {"password": _authorization_key}).get("password")
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
            _id_tag(tag_id)
        except ValueError as e:
            raise HttpError(400, f"the tag id {e}") from None
        values = _fields(self._body(request), {
            "status": _tag_status, "expiry": _optional(_instant), "parent": _optional(_id_tag)})
        tag = TagRecord(tag_id, values.get("status", "Accepted"), values.get("expiry"),
                        values.get("parent"))
        old = self.central.tags.get(tag_id)
        if isinstance(old, TagRecord) and old.id != tag_id:
            # idTags are case-insensitive: the new spelling replaces the old.
            yield self.store.delete_tag(old.id)
        yield self.store.put_tag(tag.id, tag.status, tag.expiry, tag.parent)
        self.central.tags.put(tag)
        return _tag_json(tag)

    @defer.inlineCallbacks
    def _delete_tag(self, request, tag_id):
        tag = self.central.tags.get(tag_id)
        if tag is None:
            raise HttpError(404, f"no tag {tag_id!r}")
        if not isinstance(tag, TagRecord):
            raise HttpError(409, f"tag {tag.id!r} is in the configuration file; remove it there")
        yield self.store.delete_tag(tag.id)
        self.central.tags.remove(tag.id)
        return {"deleted": tag.id}

    @defer.inlineCallbacks
    def _transactions(self, request):
        args = {k.decode("utf-8", "replace"): v[-1].decode("utf-8", "replace")
                for k, v in request.args.items()}
        query = _fields(args, {
            "charger": str, "since": _instant, "until": _instant, "limit": _limit,
            "format": _format})
        records = yield self.store.query_transactions(
            query.get("charger"), query.get("since"), query.get("until"), query.get("limit"))
        rows = [_transaction_json(r) for r in records]
        if query.get("format") != "csv":
            return {"transactions": rows}
        out = io.StringIO()
        writer = csv.DictWriter(out, TRANSACTION_FIELDS, lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(rows)
        return Reply(out.getvalue().encode("utf-8"), "text/csv; charset=utf-8")


class WebSite(server.Site):
    """
    The HTTP server of L{WebInterface}, without an access log: the page
    polls every few seconds and would fill the journal.
    """

    noisy = False

    def log(self, request):
        pass


def web_site(central, controller, store, knx_link, smart=None, refused=None):
    """
    @param smart: the L{xxterocpp.smart.manager.SmartManager}, or L{None}.
    @param refused: a callable returning the refused-connection counts.
    @return: the server factory of the web interface.
    """
    return WebSite(WebInterface(central, controller, store, knx_link, smart, refused))
