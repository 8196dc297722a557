# -*- test-case-name: tests.test_web_routes,tests.test_web,tests.test_attacks_web -*-
"""
The API's commands to a charger: C{POST /api/chargers/{id}/{action}} for
the actions of L{COMMANDS}, C{POST /api/chargers/{id}/ocpp/{action}} for
any OCPP call of the central system, and the charger's password (C{POST}
rotates it at the charger, C{PUT} stores the one it has).

A command that did not go through answers 409 (offline, refused), 504 (no
answer), 502 (a CALLERROR) or 400 (refused as invalid), see
L{FAILURE_CODES}.
"""

import functools

import attr
from twisted.internet import defer

from xxterocpp.domain.keys import PENDING_AUTHORIZATION_KEY
from xxterocpp.ocpp import messages as m
from xxterocpp.web import parse
from xxterocpp.web.reply import HttpError


@attr.s(frozen=True)
class Command:
    """
    A charger action of the API: the L{xxterocpp.control.Controller} method
    (C{"security.name"}: one of its
    L{xxterocpp.control.security.SecurityCommands}) and the body fields it
    takes as keywords (besides C{connector}).

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
    "security-profile": Command("security.raise_security_profile",
                                {"profile": parse.security_profile}, required=("profile",),
                                per_connector=False),
    "certificate": Command("security.renew_certificate", per_connector=False),
    "root-certificate": Command("security.install_root_certificate", per_connector=False),
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


class ChargerCommands:
    """
    The routes that command a charger (L{xxterocpp.web.api.ROUTES}
    C{commands.*}).
    """

    def __init__(self, central, controller):
        """
        @param central: the L{xxterocpp.domain.central.CentralSystem}.
        @param controller: the L{xxterocpp.control.Controller}.
        """
        self.central = central
        self.controller = controller

    def command(self, request, charger_id, command):
        """
        C{POST /api/chargers/{id}/{command}}: one of L{COMMANDS}.
        """
        if command not in COMMANDS:
            raise HttpError(404, f"unknown action {command!r}; one of {', '.join(COMMANDS)}")
        charger_id = parse.known_charger(self.central, charger_id)
        spec = COMMANDS[command]
        fields = dict(spec.fields, connector=parse.connector) if spec.per_connector \
            else spec.fields
        kwargs = parse.fields(parse.body(request), fields, spec.required)
        if spec.per_connector and "connector" not in kwargs:
            kwargs["connector"] = self.central.config.charging_points(charger_id)[0].connector
        # "security.name": the method of the controller's security.
        method = functools.reduce(getattr, spec.method.split("."), self.controller)
        return method(charger_id, **kwargs).addCallback(_outcome)

    def ocpp(self, request, charger_id, action):
        """
        C{POST /api/chargers/{id}/ocpp/{action}}: the body as the payload of
        a CALL; the charger's answer as it gave it.
        """
        known = m.ACTIONS.get(action)
        if known is None or known.direction == m.CP_TO_CS:
            raise HttpError(404, f"{action!r} is no OCPP 1.6 action of the central system")
        charger_id = parse.known_charger(self.central, charger_id)
        payload = parse.body(request)

        def answered(result):
            if result.response is None:
                _outcome(result)
            return result.response

        return self.controller.send(charger_id, action, payload).addCallback(answered)

    @defer.inlineCallbacks
    def rotate_password(self, request, charger_id):
        """
        C{POST /api/chargers/{id}/password}: a new AuthorizationKey (the
        given one, or one made up) set at the charger.
        """
        charger_id = parse.known_charger(self.central, charger_id)
        key = parse.fields(parse.body(request),
                           {"password": parse.authorization_key}).get("password")
        try:
            status = yield self.controller.security.change_authorization_key(charger_id, key)
        except ValueError as e:
            raise HttpError(400, str(e)) from None
        if status not in KEY_ACCEPTED:
            code, why = _KEY_FAILURES.get(status, (409, "the old key stays in force"))
            raise HttpError(code, f"the charger answered {status}; {why}", status=status)
        key = self.central.credentials.password_for(charger_id) if status == "Accepted" else (
            self.central.settings.get((charger_id, PENDING_AUTHORIZATION_KEY)))
        return {"accepted": True, "status": status, "password": key}

    @defer.inlineCallbacks
    def put_password(self, request, charger_id):
        """
        C{PUT /api/chargers/{id}/password}: the key the charger has already,
        stored.
        """
        charger_id = parse.known_charger(self.central, charger_id)
        key = parse.fields(parse.body(request), {"password": parse.password},
                           required=("password",))["password"]
        # Nothing goes to the charger: it has the key already.
        yield self.central.credentials.key_given(charger_id, key)
        return {"stored": True}
