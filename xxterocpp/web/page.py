# -*- test-case-name: tests.test_web,tests.test_web_status,tests.test_browser,tests.test_i18n -*-
"""
The status page (C{GET /}): server-rendered HTML from the same snapshot as
C{GET /api/status}: a section per charger (L{xxterocpp.web.sections}, with
its last OCPP frames), the chargers trying to connect, the session history
with inline SVG charts and what an installer needs for the set-up. The
building blocks are in L{xxterocpp.web.markup}.

Every text is in the page's L{xxterocpp.web.i18n.Language}, called C{t}
here: C{t("Status")} is the English text's translation.

Built with L{twisted.web.template}, which escapes every text and attribute:
frames and ids come from chargers and must never become markup. The few
lines of script and the style sheet are served as C{/page.js} and
C{/page.css} (no CDN: the controller often has no internet).
"""

from collections import OrderedDict
from datetime import timedelta

from twisted.web.template import Tag, flattenString, tags

from xxterocpp.config import toml_string
from xxterocpp.web.charts import bar_chart
from xxterocpp.web.i18n import DEFAULT, N_, language
from xxterocpp.web.markup import (
    badge, card_table, day_text, energy_text, field_list, local_time, parse_time, refusal_text,
)
from xxterocpp.web.sections import charger_section

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
    A warning while the system clock is wrong (before the time given out).
    """
    if status.get("clock_ok", True):
        return []
    return [tags.p("\N{WARNING SIGN} ", t(
        "The controller's clock reads {system}, earlier than it read before: it is wrong."
        " Chargers get {time} until it is set (NTP).").format(
            system=local_time(parse_time(status["system_time"])), time=local_time(now)),
        class_="bad", id="clock")]


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
         u["address"], str(u["count"]), local_time(parse_time(u["first_seen"])),
         local_time(parse_time(u["last_seen"])))
        for i, u in enumerate(unknown)
    ]
    return [
        tags.p(t("Paste a block into the configuration to serve that charger."),
               class_="muted"),
        card_table((t("Configuration"), t("Address"), t("Attempts"), t("First"), t("Last")), rows),
    ]


def _unnamed(t, unnamed):
    """
    The connections refused before an identity was known (a failed TLS
    handshake, a URL without the charger's id), by address; nothing when
    there were none.
    """
    if not unnamed:
        return ""
    rows = [(u["address"], refusal_text(t, u), str(u["count"]),
             local_time(parse_time(u["first_seen"])), local_time(parse_time(u["last_seen"])))
            for u in unnamed]
    return [
        tags.h3(t("Refused before a charger id was known")),
        card_table((t("Address"), t("Reason"), t("Attempts"), t("First"), t("Last")), rows),
    ]


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
        [(day_text(t, day), kwh, f"{day_text(t, day, weekday=True)}: {t.number(kwh, '.2f')} kWh")
         for day, kwh in days.items()], HISTORY_DAYS, t)
    per_session = bar_chart(
        t("Energy per session"),
        [(local_time(r.start_time)[:10], (r.energy_wh or 0) / 1000,
          f"#{r.id} {r.charger_id}/{r.connector} {r.id_tag} {local_time(r.start_time)}: "
          f"{energy_text(t, r.energy_wh)}") for r in sessions], HISTORY_DAYS, t)
    rows = [
        (str(r.id), f"{r.charger_id}/{r.connector}", r.id_tag, local_time(r.start_time),
         local_time(r.stop_time) if r.stop_time else t("running"), energy_text(t, r.energy_wh),
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
        card_table(("#", t("Charger"), t("Tag"), t.context("column", "Start"), t("End"),
                    t("Energy"), t("Reason")),
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
        field_list(
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
        since = local_time(parse_time(u["since"])) if u.get("since") else "\N{EM DASH}"
        oldest = local_time(parse_time(u["oldest_queued"])) if u.get("oldest_queued") else None
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
        card_table((t("Charger"), t("Back office"), t("Link"), t("Since"), t("Last error"),
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
    now = parse_time(status["time"])
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
                              badge(t(knx), None if knx == "not configured"
                                    else knx == "connected")),
                    tags.span(t("updated {time}").format(time=local_time(now)), class_="muted"),
                    tags.span(t("refused connections: {auth} credentials, {tls} TLS").format(
                        auth=refused["auth"], tls=refused["tls"]), class_="muted",
                        id="refused"),
                ),
                *_clock(t, status, now),
                *[charger_section(t, c, frames.get(c["id"], ())) for c in status["chargers"]],
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
