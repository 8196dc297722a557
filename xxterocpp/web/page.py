# -*- test-case-name: tests.test_web,tests.test_web_status,tests.test_browser,tests.test_i18n -*-
"""
The status page (C{GET /}): server-rendered HTML from the same snapshot as
C{GET /api/status}, the session history with inline SVG charts, and the
last OCPP frames of every charger.

Every text is in the page's L{xxterocpp.web.i18n.Language}, called C{t}
here: C{t("Status")} is the English text's translation.

Built with L{twisted.web.template}, which escapes every text and attribute:
frames and ids come from chargers and must never become markup. The few
lines of script and the style sheet are served as C{/page.js} and
C{/page.css} (no CDN: the controller often has no internet).
"""

import json
from collections import OrderedDict
from datetime import datetime, timedelta
from urllib.parse import quote

from twisted.web.template import Tag, flattenString, tags

from xxterocpp.config import toml_string
from xxterocpp.domain.model import utc_from_seconds
from xxterocpp.knx import objects
from xxterocpp.web.charts import bar_chart, plan_chart
from xxterocpp.web.i18n import DEFAULT, N_, language
from xxterocpp.web.knxvalues import describe
from xxterocpp.web.status import REFUSAL_WORDS, iso

#: How many days of sessions the page shows and charts.
HISTORY_DAYS = 30

#: At most this many sessions in the per-session chart and the table.
HISTORY_SESSIONS = 60

#: Seconds between refreshes of the page content.
REFRESH_SECONDS = 5

STYLESHEET = b"""\
:root { color-scheme: light dark; --ok: #1a7f37; --bad: #c62828; --muted: #777;
  --line: #8884; --bar: #1f6feb; }
body { font: 15px/1.4 system-ui, sans-serif; margin: 0 auto; max-width: 70em; padding: 0 .8em 2em; }
header { display: flex; flex-wrap: wrap; gap: .3em 1em; align-items: baseline; }
h1 { font-size: 1.4em; margin: .6em 0 .2em; }
h2 { font-size: 1.2em; margin: 0 0 .3em; }
h3 { font-size: 1.05em; margin: .2em 0; }
section, .connector { border: 1px solid var(--line); border-radius: .5em; padding: .6em .8em; margin: .8em 0; }
.connectors { display: grid; gap: .6em; grid-template-columns: repeat(auto-fit, minmax(18em, 1fr)); }
.connector { margin: 0; }
dl { display: grid; grid-template-columns: fit-content(45%) 1fr; gap: .1em .8em; margin: .3em 0; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
.badge { display: inline-block; padding: 0 .5em; border-radius: 1em; color: #fff; background: var(--muted); }
.badge.ok { background: var(--ok); }
.badge.bad { background: var(--bad); }
.buttons { display: flex; flex-wrap: wrap; gap: .4em; margin-top: .5em; }
button { font: inherit; padding: .35em .8em; border-radius: .4em; border: 1px solid var(--line); cursor: pointer; }
button.primary { background: var(--bar); color: #fff; border-color: var(--bar); }
button:disabled { opacity: .5; }
#result { position: sticky; top: 0; margin: 0; background: Canvas; }
#result:empty { display: none; }
#result.ok { color: var(--ok); }
#result.bad { color: var(--bad); }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .15em .5em .15em 0; border-bottom: 1px solid var(--line); vertical-align: top; }
.scroll { overflow-x: auto; }
/* On a phone a table's rows become cards, each cell under its column's name. */
@media (max-width: 40em) {
  table.cards, table.cards tbody, table.cards tr, table.cards td { display: block; }
  table.cards tr:first-child { display: none; }
  table.cards tr { border-bottom: 1px solid var(--line); padding: .3em 0; }
  table.cards td { display: grid; grid-template-columns: 7.5em 1fr; gap: .8em; border: 0; padding: 0; }
  table.cards td::before { content: attr(data-label); color: var(--muted); }
}
input.copy { font: inherit; font-family: monospace; width: 100%; min-width: 8em; box-sizing: border-box; }
pre.copy { margin: 0 0 .3em; white-space: pre-wrap; overflow-wrap: anywhere; }
ol.frames { list-style: none; padding: 0; margin: .3em 0; font-size: .85em; }
ol.frames li { display: grid; grid-template-columns: 7em 1.5em 1fr; border-bottom: 1px solid var(--line); }
ol.frames code { white-space: pre-wrap; overflow-wrap: anywhere; }
.in { color: var(--ok); }
.out { color: var(--bar); }
.muted { color: var(--muted); }
svg.chart { width: 100%; height: auto; max-height: 14em; }
svg.chart rect { fill: var(--bar); }
svg.chart text { fill: currentColor; font-size: 11px; }
svg.chart line { stroke: var(--line); }
svg.chart polyline { fill: none; stroke: var(--bad); stroke-width: 1.5; }
svg.chart rect.surplus { fill: var(--ok); }
svg.chart text.price { fill: var(--bad); }
form.smart { display: flex; flex-wrap: wrap; gap: .4em; align-items: center; margin: .3em 0; }
form.smart input { font: inherit; width: 7em; }
"""

SCRIPT = b"""\
"use strict";
// Buttons POST to the JSON API; the page content refreshes itself without
// losing which frame lists are open.
function show(text, ok) {
  const result = document.getElementById("result");
  result.textContent = text;
  result.className = ok ? "ok" : "bad";
}
async function refresh() {
  // Not while someone types into a form: the refresh would wipe it.
  if (document.activeElement && document.activeElement.closest("form")) return;
  const response = await fetch(location.pathname, {cache: "no-store"});
  if (!response.ok) return;
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
  const open = Array.from(document.querySelectorAll("details[open]"), (d) => d.id);
  document.querySelector("main").replaceWith(fresh.querySelector("main"));
  for (const id of open) {
    const details = document.getElementById(id);
    if (details) details.open = true;
  }
}
async function post(button) {
  if (button.dataset.confirm && !confirm(button.dataset.confirm)) return;
  button.disabled = true;
  try {
    const response = await fetch(button.dataset.post, {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: button.dataset.body || "{}"});
    const answer = await response.json().catch(() => ({}));
    show(button.textContent + ": " + (response.ok ? (answer.detail || answer.status)
                                                  : (answer.error || response.statusText)),
         response.ok);
  } catch (error) {
    show(button.textContent + ": " + error, false);
  }
  button.disabled = false;
  refresh().catch(() => {});
}
document.addEventListener("submit", async (event) => {
  const form = event.target.closest("form[data-put]");
  if (!form) return;
  event.preventDefault();
  const body = {};
  for (const input of form.querySelectorAll("input[name]")) {
    if (input.value === "") continue;
    const scale = Number(input.dataset.scale || 1);
    body[input.name] = input.type === "number" ? Number(input.value) * scale : input.value;
  }
  try {
    const response = await fetch(form.dataset.put, {
      method: "PUT", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
    const answer = await response.json().catch(() => ({}));
    show(form.dataset.label + ": " + (response.ok ? form.dataset.done
                                                  : (answer.error || response.statusText)),
         response.ok);
  } catch (error) {
    show(form.dataset.label + ": " + error, false);
  }
  document.activeElement.blur();
  refresh().catch(() => {});
});
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-post]");
  if (button) post(button);
  const copy = event.target.closest("button[data-copy]");
  if (copy) {
    // an <input> (its value) or a <pre> (its text)
    const field = document.getElementById(copy.dataset.copy);
    const text = field.tagName === "INPUT" ? field.value : field.textContent;
    if (field.select) field.select(); else getSelection().selectAllChildren(field);
    (navigator.clipboard ? navigator.clipboard.writeText(text)
                         : Promise.resolve(document.execCommand("copy"))).catch(() => {});
  }
});
setInterval(() => refresh().catch(() => {}), REFRESH_MS);
""".replace(b"REFRESH_MS", str(REFRESH_SECONDS * 1000).encode())


def _clock(t, status, now):
    """
    A warning while the system clock is wrong (before the time trusted).
    """
    if status.get("clock_ok", True):
        return []
    return [tags.p("\N{WARNING SIGN} ", t(
        "The controller's clock reads {system}, earlier than it read before: it is wrong."
        " Chargers get {time} until it is set (NTP).").format(
            system=local_time(_parse(status["system_time"])), time=local_time(now)),
        class_="bad", id="clock")]


def local_time(when):
    """
    @return: an aware datetime as the controller's local time, for people.
    """
    if when is None:
        return "\N{EM DASH}"
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _parse(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _since(t, text):
    return t("since {time}").format(time=local_time(_parse(text)))


def _kwh(t, wh):
    return "\N{EM DASH}" if wh is None else t.number(wh / 1000, ".2f") + "\N{NO-BREAK SPACE}kWh"


# A number and its unit stay on one line (NO-BREAK SPACE): a phone's narrow
# columns would put "A" alone on the next.
def _amps(t, a):
    return "\N{EM DASH}" if a is None else t.number(a, "g") + "\N{NO-BREAK SPACE}A"


#: The abbreviations of the days and months (in C{t}'s language): the
#: controller's C locale would give English ones.
_WEEKDAYS = (N_("Mon"), N_("Tue"), N_("Wed"), N_("Thu"), N_("Fri"), N_("Sat"), N_("Sun"))
_MONTHS = (N_("Jan"), N_("Feb"), N_("Mar"), N_("Apr"), N_("May"), N_("Jun"), N_("Jul"),
           N_("Aug"), N_("Sep"), N_("Oct"), N_("Nov"), N_("Dec"))


def _day(t, day, weekday=False):
    """
    @return: C{"28 Jul"} (C{"Sun 28 Jul"} with C{weekday}) in C{t}'s language.
    """
    text = f"{day.day:02d} {t(_MONTHS[day.month - 1])}"
    return f"{t(_WEEKDAYS[day.weekday()])} {text}" if weekday else text


def _badge(text, good):
    """
    @param good: True (green), False (red) or None (grey: nothing to judge).
    """
    return tags.span(text, class_={True: "badge ok", False: "badge bad", None: "badge"}[good])


def _fields(*pairs):
    """
    A definition list of (label, value) pairs; None values are left out.
    """
    items = []
    for label, value in pairs:
        if value is not None:
            items += [tags.dt(label), tags.dd(value)]
    return tags.dl(*items)


def _button(label, charger_id, action, body=None, primary=False, confirm=None):
    attributes = {
        "type": "button",
        "data-post": f"/api/chargers/{quote(charger_id, safe='')}/{action}",
        "data-action": action,
        "data-body": json.dumps(body or {}),
    }
    if primary:
        attributes["class"] = "primary"
    if confirm:
        attributes["data-confirm"] = confirm
    return tags.button(label, **attributes)


def _connection(t, charger):
    if charger["connected"]:
        return [_badge(t("connected"), True), " ", _since(t, charger["connected_since"])]
    if charger["disconnected_since"]:
        return [_badge(t("offline"), False), " ", _since(t, charger["disconnected_since"])]
    return [_badge(t("offline") if charger["ever_connected"] else t("never connected"), False)]


def _reservation(t, reservation):
    if reservation is None:
        return t.context("reservation", "none")
    if reservation["until_freed"]:
        return [t("for tag"), " ", tags.code(reservation["id_tag"]), " ", t("until freed")]
    return [t("for tag"), " ", tags.code(reservation["id_tag"]), " ",
            t("until {time}").format(time=local_time(_parse(reservation["expiry"])))]


def _connector(t, charger, c):
    tx = c["transaction"]
    # The snapshot's words are the msgids (English, status.STATUS_WORDS);
    # the OCPP names follow them, as the installer knows them from manuals.
    words = t(c["status_text"])
    status = [words]
    if c["status"] and words.casefold() != c["status"].casefold():
        status += [" ", tags.span(f"({c['status']})", class_="muted")]
    if c["since"]:
        status += [" ", tags.span(_since(t, c["since"]), class_="muted")]
    error = t(c["error_text"])
    details = [c["error_code"] if c["error_code"] not in ("NoError", error) else None,
               c["info"], c["vendor_error_code"]]
    if any(details):
        error += " (" + ", ".join(filter(None, details)) + ")"
    session = t.context("session", "none")
    if tx is not None:
        session = [t("#{id} tag").format(id=tx["id"]), " ", tags.code(tx["id_tag"]), ", ",
                   _since(t, tx["start"]), ", ",
                   t("{energy} so far").format(energy=_kwh(t, tx["energy_wh"]))]
    current = _amps(t, c["current_a"])
    if c["power_w"] is not None:
        current += " (" + t.number(c["power_w"] / 1000, ".1f") + "\N{NO-BREAK SPACE}kW)"
    limit = _amps(t, c["limit_a"])
    if c["max_current_a"] is not None:
        limit += " (" + t("normal {normal}, fast {fast}").format(
            normal=_amps(t, c["normal_current_a"]), fast=_amps(t, c["max_current_a"])) + ")"
    available = {None: t("unknown"), True: t("operative"), False: t("inoperative")}[
        c["available"]]
    buttons = []
    if c["configured"]:
        charger_id, n = charger["id"], {"connector": c["connector"]}
        buttons = [
            _button(t("Stop"), charger_id, "stop", n, primary=True) if tx
            else _button(t("Start"), charger_id, "start", n, primary=True),
            *([_button(t("Start smart"), charger_id, "start", dict(n, smart=True))]
              if not tx and c.get("smart_tag") else []),
            _button(t("Normal"), charger_id, "normal", n),
            _button(t("Fast"), charger_id, "fast", n),
            _button(t("Unlock"), charger_id, "unlock", n),
            _button(t("Make unavailable"), charger_id, "availability",
                    dict(n, available=False)) if c["available"] is not False
            else _button(t("Make available"), charger_id, "availability",
                         dict(n, available=True)),
        ]
    return tags.div(
        tags.h3(t("Connector {number}").format(number=c["connector"]),
                "" if c["configured"] else
                tags.span(" (" + t("not configured") + ")", class_="muted")),
        _fields(
            (t("Status"), status),
            (t("Error"), tags.span(error, class_="" if c["error_code"] == "NoError" else "bad")),
            (t("Session"), session),
            (t("Current"), current),
            (t("Limit"), limit),
            (t("Availability"), available),
            (t("Reservation"), _reservation(t, c["reservation"])),
            (t("Meter"), _kwh(t, c["energy_register_wh"])),
        ),
        _smart(t, charger["id"], c["smart"]) if c.get("smart") else "",
        tags.div(*buttons, class_="buttons"),
        _knx(t, charger["id"], c) if c.get("knx") else "",
        class_="connector",
    )


#: The declared group objects by key, for the commissioning view's words.
_OBJECTS = {obj.key: obj for obj in objects.OBJECTS}

#: Which way a group object's values travel, in words.
_DIRECTIONS = {objects.SEND: N_("send"), objects.RECEIVE: N_("receive"),
               objects.BOTH: N_("send and receive")}


def _seen(t, obj, dpt, record):
    """
    A value the bridge sent or received: in words, when, from whom.
    """
    if record is None:
        return "\N{EM DASH}"
    seen = [describe(t, obj, dpt, record["value"], local_time), tags.br(),
            tags.span(local_time(_parse(record["time"])), class_="muted")]
    if record["from"]:
        seen += [" ", tags.span(t("from {address}").format(address=record["from"]),
                                class_="muted")]
    return seen


def _knx(t, charger_id, c):
    """
    The commissioning view of a charging point: each linked group object
    with its address, DPT, direction and the values last sent and received;
    a warning for every write of another device to a send object.
    """
    warnings = [
        tags.p("\N{WARNING SIGN} ", t(
            "{source} wrote {value} to {address} ({object}), which only this controller "
            "sends to, at {time}: check the devices linked to that address.").format(
                source=o["foreign"]["from"], address=o["address"], object=o["object"],
                value=describe(t, _OBJECTS[o["object"]], o["dpt"], o["foreign"]["value"],
                               local_time),
                time=local_time(_parse(o["foreign"]["time"]))),
            class_="bad")
        for o in c["knx"] if o["foreign"]]
    rows = [([tags.code(o["object"]), " ", o["address"], tags.br(),
              tags.span(f"DPT {o['dpt']}, ", t(_DIRECTIONS[o["direction"]]), class_="muted")],
             _seen(t, _OBJECTS[o["object"]], o["dpt"], o["sent"]),
             _seen(t, _OBJECTS[o["object"]], o["dpt"], o["received"]))
            for o in c["knx"] if o["object"] in _OBJECTS]
    return [*warnings, tags.details(
        tags.summary(t.plural("KNX: {count} group object", "KNX: {count} group objects",
                              len(rows)).format(count=len(rows))),
        _table((t("Object"), t("Sent"), t("Received")), rows),
        id=f"knx-{charger_id}-{c['connector']}")]


def _frames(t, charger_id, frames):
    items = [
        tags.li(
            tags.time(local_time_of_seconds(seconds), datetime=iso(utc_from_seconds(seconds))),
            tags.span("\N{LEFTWARDS ARROW}" if direction == "in" else "\N{RIGHTWARDS ARROW}",
                      class_=direction, title=t("from the charger") if direction == "in"
                      else t("to the charger")),
            tags.code(text),
        )
        for seconds, direction, text in reversed(frames)
    ]
    return tags.details(
        tags.summary(t.plural("Last {count} OCPP frame, newest first",
                              "Last {count} OCPP frames, newest first",
                              len(items)).format(count=len(items))),
        tags.ol(*items, class_="frames"),
        id="frames-" + charger_id,
    )


def local_time_of_seconds(seconds):
    """
    @return: a POSIX timestamp as local wall-clock time with milliseconds.
    """
    return datetime.fromtimestamp(seconds).strftime("%H:%M:%S.%f")[:-3]


def _security(t, charger):
    """
    The security profile, the client certificate and the security events
    of a charger.
    """
    profile = str(charger["security_profile"])
    if charger["security_profile_pending"] is not None:
        profile += " (" + t("raising to {profile}").format(
            profile=charger["security_profile_pending"]) + ")"
    certificate = charger["certificate"]
    events = [tags.li(local_time(_parse(e["time"])), " ", tags.code(e["type"]),
                      f" {e['tech_info']}" if e["tech_info"] else "")
              for e in charger["security_events"]]
    return [
        (t("Security profile"), profile),
        (t("Certificate"), None if certificate is None else [
            t("serial"), " ", tags.code(certificate["serial"]), ", ",
            t("valid until {time}").format(time=local_time(_parse(certificate["expiry"])))]),
        (t("Security events"), tags.ul(*events, class_="events") if events else None),
    ]


def _refused(t, reason):
    """
    Why an attempt was refused, in words, with the detail the server knew.
    """
    words = t(reason["reason_text"])
    return f"{words}: {reason['detail']}" if reason["detail"] else words


def _refusals(t, charger_id, refusals):
    """
    The last refused connection attempts of a charger (nothing when there
    were none): how many of each reason, and when, from where, why.
    """
    if not refusals["count"]:
        return ""
    last = refusals["last"][0]
    counts = ", ".join(f"{t(REFUSAL_WORDS[reason])}: {n}"
                       for reason, n in refusals["counts"].items())
    return tags.details(
        tags.summary(
            _badge(t.plural("{count} refused connection attempt",
                            "{count} refused connection attempts",
                            refusals["count"]).format(count=refusals["count"]), False), " ",
            t("last {time}: {reason}").format(time=local_time(_parse(last["time"])),
                                              reason=_refused(t, last))),
        tags.p(counts, class_="muted"),
        _table((t("Time"), t("Address"), t("Reason")),
               [(local_time(_parse(r["time"])), r["address"], _refused(t, r))
                for r in refusals["last"]]),
        id="refusals-" + charger_id,
    )


def _quirks_and_learned(t, charger):
    """
    The workarounds in force and what was learned by trial, as fields.
    """
    learned, profile = charger["learned"], charger["learned"]["profile"]
    found = [t("limits as {purpose} {kind}, stack level {stack}, in {unit}").format(**profile)
             if profile else None,
             t("measurands {names}").format(names=", ".join(learned["measurands"])
                                             or t.context("measurands", "none"))
             if learned["measurands"] is not None else None,
             t("read-only {keys}").format(keys=", ".join(learned["read_only"]))
             if learned["read_only"] else None]
    return [(t("Workarounds"), "; ".join(f"{q['name']} ({q['reason']})"
                                         for q in charger["quirks"]) or None),
            (t("Learned"), "; ".join(filter(None, found)) or None)]


def _charger(t, charger, frames):
    model = " ".join(filter(None, (charger["vendor"], charger["model"]))) or None
    return tags.section(
        tags.h2(charger["id"], " ", _connection(t, charger)),
        _fields(
            (t("Address"), charger["address"] or "\N{EM DASH}"),
            (t("Charger"), model),
            (t("Firmware"), charger["firmware"]),
            (t("Serial"), charger["serial"]),
            (t("Reconnects"), str(charger["reconnects"]) if charger["reconnects"] else None),
            *_security(t, charger),
            *_quirks_and_learned(t, charger),
        ),
        _refusals(t, charger["id"], charger["refusals"]),
        tags.div(*[_connector(t, charger, c) for c in charger["connectors"]],
                 class_="connectors"),
        tags.div(
            _button(t("Soft reset"), charger["id"], "reset",
                    confirm=t("Reset the charger {id}? A running session may stop.").format(
                        id=charger["id"])),
            class_="buttons"),
        _frames(t, charger["id"], frames),
        id="charger-" + charger["id"],
    )


def _table(columns, rows):
    """
    A table that scrolls sideways when it is too wide, and whose rows
    become cards on a phone, every cell under its column's name.

    @param columns: the column names.
    @param rows: the cells of each row, in column order.
    """
    return tags.div(tags.table(
        tags.tr(*[tags.th(column) for column in columns]),
        # each cell's content in one box: on a phone the cell is a grid of
        # its label and that box
        *[tags.tr(*[tags.td(tags.div(cell), **{"data-label": column})
                    for column, cell in zip(columns, row)])
          for row in rows],
        class_="cards"), class_="scroll")


def charger_block(t, identity):
    """
    The C{[[charger]]} table that serves C{identity}, to paste into the
    configuration: its id, the current every charger table needs, and the
    password line to fill in for a charger that sends Basic auth.
    """
    return "\n".join((
        "[[charger]]",
        f"id = {toml_string(identity)}",
        "max_current = 16  # " + t("A: what the charger's circuit allows"),
        '# password = ""  # ' + t("its AuthorizationKey, when it sends Basic auth"),
    ))


def _unknown(t, unknown):
    if not unknown:
        return tags.p(t("None so far."), class_="muted")
    rows = [
        ([tags.pre(charger_block(t, u["id"]), class_="copy", id=f"unknown-{i}"),
          tags.button(t("Copy"), type="button", **{"data-copy": f"unknown-{i}"})],
         u["address"], str(u["count"]), local_time(_parse(u["first_seen"])),
         local_time(_parse(u["last_seen"])))
        for i, u in enumerate(unknown)
    ]
    return [
        tags.p(t("Paste a block into the configuration to serve that charger."),
               class_="muted"),
        _table((t("Configuration"), t("Address"), t("Attempts"), t("First"), t("Last")), rows),
    ]


def _unnamed(t, unnamed):
    """
    The connections refused before an identity was known (a failed TLS
    handshake, a URL without the charger's id), by address; nothing when
    there were none.
    """
    if not unnamed:
        return ""
    rows = [(u["address"], _refused(t, u), str(u["count"]), local_time(_parse(u["first_seen"])),
             local_time(_parse(u["last_seen"])))
            for u in unnamed]
    return [
        tags.h3(t("Refused before a charger id was known")),
        _table((t("Address"), t("Reason"), t("Attempts"), t("First"), t("Last")), rows),
    ]


def _smart(t, charger_id, smart):
    """
    A smart session: its plan as a timeline, its cost against charging at
    once, and a form to change departure and energy.
    """
    departure = _parse(smart["departure"])
    saving = smart["immediate_cost"] - smart["cost"]
    cost = t.number(smart["cost"], ".2f") + " (" + (
        t("at once: {cost}, saves {saving}") if saving > 0.005 else t("at once: {cost}")).format(
        cost=t.number(smart["immediate_cost"], ".2f"), saving=t.number(saving, ".2f")) + ")"
    reach = _badge(t("on time"), True) if smart["reachable"] else _badge(
        t("not reachable before departure: full current"), False)
    put = (f"/api/chargers/{quote(charger_id, safe='')}/smart?connector={smart['connector']}")
    return tags.div(
        tags.h3(t("Smart plan")),
        _fields(
            (t("Departure"), [local_time(departure), " ", reach]),
            (t("Energy"), t("{delivered} of {planned}").format(
                delivered=_kwh(t, smart["delivered_wh"]), planned=_kwh(t, smart["energy_wh"]))),
            (t("Cost"), cost),
            (t("Solar"), t("{current} from PV surplus").format(
                current=_amps(t, smart["surplus_current"]))
             if smart.get("surplus_current") else None),
        ),
        plan_chart(smart["plan"], t=t),
        tags.form(
            tags.label(t("Departure"), " ", tags.input(
                type="time", name="departure", value=departure.astimezone().strftime("%H:%M"))),
            tags.label(t("Energy"), " ", tags.input(
                type="number", name="energy_wh", min="0.1", step="any",
                value=f"{smart['energy_wh'] / 1000:g}", **{"data-scale": "1000"}), " kWh"),
            tags.button(t("Change plan"), type="submit"),
            class_="smart", **{"data-put": put, "data-label": t("Smart plan"),
                               "data-done": t("changed")}),
        class_="smart-plan",
    )


def _history(t, records, today):
    """
    The session history: energy per day and per session, and a table.

    @param records: L{xxterocpp.store.TransactionRecord}s, newest first.
    @param today: the local date the last day bar is for.
    """
    days = OrderedDict(((today - timedelta(days=HISTORY_DAYS - 1 - i)), 0.0)
                       for i in range(HISTORY_DAYS))
    for r in records:
        day = r.start_time.astimezone().date()
        if day in days:
            days[day] += (r.energy_wh or 0) / 1000
    sessions = list(reversed(records[:HISTORY_SESSIONS]))
    per_day = bar_chart(
        t("Energy per day, last {days} days").format(days=HISTORY_DAYS),
        [(_day(t, day), kwh, f"{_day(t, day, weekday=True)}: {t.number(kwh, '.2f')} kWh")
         for day, kwh in days.items()], HISTORY_DAYS, t)
    per_session = bar_chart(
        t("Energy per session"),
        [(local_time(r.start_time)[:10], (r.energy_wh or 0) / 1000,
          f"#{r.id} {r.charger_id}/{r.connector} {r.id_tag} {local_time(r.start_time)}: "
          f"{_kwh(t, r.energy_wh)}") for r in sessions], HISTORY_DAYS, t)
    rows = [
        (str(r.id), f"{r.charger_id}/{r.connector}", r.id_tag, local_time(r.start_time),
         local_time(r.stop_time) if r.stop_time else t("running"), _kwh(t, r.energy_wh),
         r.stop_reason or "")
        for r in records[:HISTORY_SESSIONS]
    ]
    total = sum(days.values())
    return tags.section(
        tags.h2(t("Sessions")),
        tags.p(t.plural("Last {days} days: {count} session, {energy} kWh.",
                        "Last {days} days: {count} sessions, {energy} kWh.",
                        len(records)).format(days=HISTORY_DAYS, count=len(records),
                                             energy=t.number(total, ".1f")),
               " ", tags.a("CSV", href="/api/transactions?format=csv"), class_="muted"),
        tags.h3(t("Energy per day")), per_day,
        tags.h3(t("Energy per session")), per_session,
        _table(("#", t("Charger"), t("Tag"), t.context("column", "Start"), t("End"), t("Energy"),
                t("Reason")),
               rows) if rows else tags.p(t("No sessions yet."), class_="muted"),
        id="sessions",
    )


def _setup(t, setup):
    """
    What an installer needs to set up the chargers and the bus: the URL to
    give a charger, the root certificate it must trust, the KNX group
    addresses to import into ETS.
    """
    root = setup.get("root_certificate")
    count = setup.get("group_addresses", 0)
    url = setup.get("charger_url")
    return tags.section(
        tags.h2(t("Setup")),
        _fields(
            (t("Charger URL"), [
                tags.input(value=url, readonly="", class_="copy", id="charger-url",
                           **{"aria-label": t("Charger URL")}),
                " ", tags.button(t("Copy"), type="button", **{"data-copy": "charger-url"}),
                tags.br(), tags.span(t("followed by the charger's id"), class_="muted"),
            ] if url else None),
            (t("Root certificate"), [
                tags.a("ca.pem", href=root["href"], download="", id="root-certificate"),
                tags.br(), "SHA-256 ", tags.code(root["sha256"], id="root-fingerprint"),
            ] if root else tags.span(t("none beside the server certificate"), class_="muted")),
            ("KNX", [
                t.plural("{count} group address", "{count} group addresses",
                         count).format(count=count), " ",
                tags.a(t("CSV for ETS"), href="/api/knx/group-addresses?format=csv",
                       download="", id="ets-csv"),
                tags.br(), tags.span(t("ETS: Group Addresses → Import"),
                                     class_="muted"),
            ] if count else tags.span(t("no group addresses configured"), class_="muted")),
        ),
        id="setup",
    )


#: A back-office link's state in words (L{xxterocpp.upstream.link}).
_LINK_WORDS = {
    "stopped": N_("stopped"), "connecting": N_("connecting"), "open": N_("connected"),
    "waiting": N_("waiting to reconnect"), "unconfigured": N_("no longer configured"),
}


def _upstream(t, upstream):
    """
    The back offices the chargers are forwarded to (nothing without one):
    per charger the link and since when, its last error, the queue and its
    oldest message, the dead letters, and the id map of recent sessions.
    """
    if not upstream:
        return ""
    rows = []
    for charger_id, u in sorted(upstream.items()):
        since = local_time(_parse(u["since"])) if u.get("since") else "\N{EM DASH}"
        oldest = local_time(_parse(u["oldest_queued"])) if u.get("oldest_queued") else None
        queue = str(u["queue_depth"]) + (" (" + t("oldest {time}").format(time=oldest) + ")"
                                         if oldest else "")
        sessions = ", ".join(f"{s['transaction_id']} \N{RIGHTWARDS ARROW} {s['remote_id']}"
                             + (" !" if s.get("flagged") else "")
                             for s in u.get("sessions", ()))
        rows.append((charger_id, tags.code(u.get("url") or "\N{EM DASH}"),
                     t(_LINK_WORDS.get(u["link"], u["link"])), since,
                     u.get("last_error") or "\N{EM DASH}", queue, str(u["dead_letters"]),
                     sessions or "\N{EM DASH}"))
    return tags.section(
        tags.h2(t("Back office")),
        _table((t("Charger"), t("Back office"), t("Link"), t("Since"), t("Last error"),
                t("Queued"), t("Dead letters"), t("Sessions (ours → its)")),
               rows),
        id="upstream")


def render_page(status, frames, records, setup=None, t=None):
    """
    Render the status page.

    @param status: the snapshot of L{xxterocpp.web.status.snapshot}.
    @param frames: the OCPP frames of each charger by id, as
        C{(seconds, "in" | "out", text)}.
    @param records: the transactions of the last L{HISTORY_DAYS} days,
        newest first.
    @param setup: C{{"group_addresses": n, "charger_url": url,
        "root_certificate": {"sha256": fingerprint, "href": path} or None}}:
        how many group addresses the configuration links, the OCPP URL for
        the chargers and the root certificate they must trust.
    @param t: the L{xxterocpp.web.i18n.Language} of the page (default
        English).
    @return: a Deferred firing with the HTML document (bytes).
    """
    t = t or language(DEFAULT)
    now = _parse(status["time"])
    knx = status["knx"]
    refused = status["refused"]
    document = tags.html(
        tags.head(
            tags.meta(charset="utf-8"),
            tags.meta(name="viewport", content="width=device-width, initial-scale=1"),
            tags.title("xxterocpp \N{EN DASH} " + t("charging points")),
            tags.link(rel="stylesheet", href="/page.css"),
            tags.script(src="/page.js", defer=""),
        ),
        tags.body(
            # Outside <main>: the refresh replaces <main>, not a button's outcome.
            tags.p(id="result", role="status"),
            Tag("main")(
                tags.header(
                    tags.h1(t("Charging points")),
                    # the link states are msgids too: see status.knx_state
                    tags.span(t("KNX link"), " ",
                              _badge(t(knx), None if knx == "not configured"
                                     else knx == "connected")),
                    tags.span(t("updated {time}").format(time=local_time(now)), class_="muted"),
                    tags.span(t("refused connections: {auth} credentials, {tls} TLS").format(
                        auth=refused["auth"], tls=refused["tls"]), class_="muted",
                        id="refused"),
                ),
                *_clock(t, status, now),
                *[_charger(t, c, frames.get(c["id"], ())) for c in status["chargers"]],
                tags.section(tags.h2(t("Chargers trying to connect")),
                             _unknown(t, status["unknown"]), _unnamed(t, status["unnamed"]),
                             id="unknown"),
                _upstream(t, status.get("upstream")),
                _history(t, records, now.astimezone().date()),
                _setup(t, setup or {}),
            ),
        ),
        lang=t.code,
    )
    return flattenString(None, document).addCallback(lambda html: b"<!DOCTYPE html>\n" + html)
