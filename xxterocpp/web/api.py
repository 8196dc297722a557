# -*- test-case-name: tests.test_web,tests.test_web_routes,tests.test_attacks_web,tests.test_ets,tests.test_web_setup,tests.test_i18n -*-
"""
The web interface: one resource serves the status page and the JSON API,
every request behind HTTP Basic auth when C{[web] password} is set.

L{ROUTES} is the one table of what is served. The page, its files, the
status and the root certificate are L{WebInterface}'s own; the other routes
are those of its route groups: L{xxterocpp.web.commands} (commands to a
charger), L{xxterocpp.web.smart} (smart sessions), L{xxterocpp.web.tags}
(the tag registry), L{xxterocpp.web.exports} (transactions and group
addresses, also as CSV), L{xxterocpp.web.backoffice} (the back office's
dead letters queued again). Errors are JSON C{{"error": "..."}} with the
fitting status: 400 bad request body or query, 401 no or wrong
credentials, 403 cross-site request or a foreign C{Host}, 404 unknown
route, charger or tag, 405 wrong method, 409 charger offline or command
refused, 413 a body over 64 KiB, 415 a state-changing request that is not
C{application/json}, 429 too many failed logins, 500 a bug (logged), 502
the charger answered with a CALLERROR, 504 the charger did not answer.
What is refused on the headers alone (before the body is read) is in
L{xxterocpp.web.gate}.

C{GET /ca.pem} is the root certificate for the chargers
(L{xxterocpp.web.rootca}).
"""

from datetime import timedelta
from urllib.parse import unquote, urlsplit

import attr
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource, server

from xxterocpp.control import UnknownChargingPoint
from xxterocpp.web import ets
from xxterocpp.web.backoffice import BackOfficeQueue
from xxterocpp.web.commands import ChargerCommands
from xxterocpp.web.exports import Exports
from xxterocpp.web.gate import Gate, WebSite, header, host_name, reason
from xxterocpp.web.i18n import language, negotiate
from xxterocpp.web.page import HISTORY_DAYS, SCRIPT, STYLESHEET, render_page
from xxterocpp.web.reply import SECURITY_HEADERS, HttpError, Reply, scrubbed
from xxterocpp.web.rootca import CertificateFile, charger_url, root_certificate_path
from xxterocpp.web.smart import SmartSessions
from xxterocpp.web.status import snapshot
from xxterocpp.web.tags import Tags


@attr.s(frozen=True)
class Route:
    """
    One served path: C{{name}} segments match any one path segment and are
    passed, percent-decoded, to the handler as keywords.

    @ivar handler: C{"group.method"}, the method of one of
        L{WebInterface.groups}, or C{"name"}, L{WebInterface}'s own method
        C{_name}.
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
    Route("GET", "/api/chargers/{charger_id}/smart", "smart.session"),
    Route("PUT", "/api/chargers/{charger_id}/smart", "smart.change"),
    Route("POST", "/api/chargers/{charger_id}/smart", "smart.change"),
    Route("POST", "/api/chargers/{charger_id}/ocpp/{action}", "commands.ocpp"),
    Route("POST", "/api/chargers/{charger_id}/upstream/requeue", "backoffice.requeue"),
    Route("POST", "/api/chargers/{charger_id}/password", "commands.rotate_password"),
    Route("PUT", "/api/chargers/{charger_id}/password", "commands.put_password"),
    Route("POST", "/api/chargers/{charger_id}/{command}", "commands.command"),
    Route("GET", "/api/tags", "tags.all"),
    Route("GET", "/api/tags/{tag_id}", "tags.one"),
    Route("PUT", "/api/tags/{tag_id}", "tags.put"),
    Route("DELETE", "/api/tags/{tag_id}", "tags.delete"),
    Route("GET", "/api/transactions", "exports.transactions"),
    Route("GET", "/api/knx/group-addresses", "exports.group_addresses"),
)


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
    @ivar groups: the route groups by the name L{ROUTES} gives them.
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
        self.groups = {
            "commands": ChargerCommands(central, controller),
            "smart": SmartSessions(central, smart),
            "tags": Tags(central),
            "exports": Exports(central, store),
            "backoffice": BackOfficeQueue(self.upstream),
        }

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
                return self._handler(route.handler)(request, **params)
            allowed.append(route.method)
        if allowed:
            raise HttpError(405, f"{method} not allowed here; use {' or '.join(allowed)}",
                            headers={"Allow": ", ".join(allowed)})
        raise HttpError(404, f"nothing at {path}")

    def _handler(self, name):
        group, _, method = name.rpartition(".")
        if group:
            return getattr(self.groups[group], method)
        return getattr(self, "_" + method)

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

    # -- its own routes: the page, its files, the status ------------------

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
