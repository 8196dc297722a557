# -*- test-case-name: tests.test_web,tests.test_web_status,tests.test_browser -*-
"""
The status page (C{GET /}): server-rendered HTML from the same snapshot as
C{GET /api/status}, the session history with inline SVG charts, and the
last OCPP frames of every charger.

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

from xxterocpp.domain.model import utc_from_seconds
from xxterocpp.web.status import iso

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
dl { display: grid; grid-template-columns: max-content 1fr; gap: .1em .8em; margin: .3em 0; }
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
input.copy { font: inherit; font-family: monospace; width: 100%; min-width: 8em; box-sizing: border-box; }
ol.frames { list-style: none; padding: 0; margin: .3em 0; font-size: .85em; }
ol.frames li { display: grid; grid-template-columns: 6.5em 1.5em 1fr; border-bottom: 1px solid var(--line); }
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
    show("Smart plan: " + (response.ok ? "changed" : (answer.error || response.statusText)),
         response.ok);
  } catch (error) {
    show("Smart plan: " + error, false);
  }
  document.activeElement.blur();
  refresh().catch(() => {});
});
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-post]");
  if (button) post(button);
  const copy = event.target.closest("button[data-copy]");
  if (copy) {
    const field = document.getElementById(copy.dataset.copy);
    field.select();
    (navigator.clipboard ? navigator.clipboard.writeText(field.value)
                         : Promise.resolve(document.execCommand("copy"))).catch(() => {});
  }
});
setInterval(() => refresh().catch(() => {}), REFRESH_MS);
""".replace(b"REFRESH_MS", str(REFRESH_SECONDS * 1000).encode())


def local_time(when):
    """
    @return: an aware datetime as the controller's local time, for people.
    """
    if when is None:
        return "\N{EM DASH}"
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _parse(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _kwh(wh):
    return "\N{EM DASH}" if wh is None else f"{wh / 1000:.2f} kWh"


def _amps(a):
    return "\N{EM DASH}" if a is None else f"{a:g} A"


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


def _connection(charger):
    if charger["connected"]:
        return [_badge("connected", True), " since ", local_time(_parse(charger["connected_since"]))]
    if charger["disconnected_since"]:
        return [_badge("offline", False), " since ",
                local_time(_parse(charger["disconnected_since"]))]
    return [_badge("offline" if charger["ever_connected"] else "never connected", False)]


def _reservation(reservation):
    if reservation is None:
        return "none"
    if reservation["until_freed"]:
        return ["for tag ", tags.code(reservation["id_tag"]), " until freed"]
    return ["for tag ", tags.code(reservation["id_tag"]), " until ",
            local_time(_parse(reservation["expiry"]))]


def _connector(charger, c):
    tx = c["transaction"]
    status = [c["status_text"]]
    if c["since"]:
        status += [tags.span(" since ", local_time(_parse(c["since"])), class_="muted")]
    error = c["error_text"]
    if c["info"] or c["vendor_error_code"]:
        error += " (" + ", ".join(filter(None, (c["info"], c["vendor_error_code"]))) + ")"
    session = "none"
    if tx is not None:
        session = [f"#{tx['id']} tag ", tags.code(tx["id_tag"]), ", since ",
                   local_time(_parse(tx["start"])), ", ", _kwh(tx["energy_wh"]), " so far"]
    current = _amps(c["current_a"])
    if c["power_w"] is not None:
        current += f" ({c['power_w'] / 1000:.1f} kW)"
    limit = _amps(c["limit_a"])
    if c["max_current_a"] is not None:
        limit += f" (normal {c['normal_current_a']:g} A, fast {c['max_current_a']:g} A)"
    available = {None: "unknown", True: "operative", False: "inoperative"}[c["available"]]
    buttons = []
    if c["configured"]:
        charger_id, n = charger["id"], {"connector": c["connector"]}
        buttons = [
            _button("Stop", charger_id, "stop", n, primary=True) if tx
            else _button("Start", charger_id, "start", n, primary=True),
            *([_button("Start smart", charger_id, "start", dict(n, smart=True))]
              if not tx and c.get("smart_tag") else []),
            _button("Normal", charger_id, "normal", n),
            _button("Fast", charger_id, "fast", n),
            _button("Unlock", charger_id, "unlock", n),
            _button("Make unavailable", charger_id, "availability",
                    dict(n, available=False)) if c["available"] is not False
            else _button("Make available", charger_id, "availability", dict(n, available=True)),
        ]
    return tags.div(
        tags.h3(f"Connector {c['connector']}",
                "" if c["configured"] else tags.span(" (not configured)", class_="muted")),
        _fields(
            ("Status", status),
            ("Error", tags.span(error, class_="" if c["error_code"] == "NoError" else "bad")),
            ("Session", session),
            ("Current", current),
            ("Limit", limit),
            ("Availability", available),
            ("Reservation", _reservation(c["reservation"])),
            ("Meter", _kwh(c["energy_register_wh"])),
        ),
        _smart(charger["id"], c["smart"]) if c.get("smart") else "",
        tags.div(*buttons, class_="buttons"),
        class_="connector",
    )


def _frames(charger_id, frames):
    items = [
        tags.li(
            tags.time(local_time_of_seconds(seconds), datetime=iso(utc_from_seconds(seconds))),
            tags.span("\N{LEFTWARDS ARROW}" if direction == "in" else "\N{RIGHTWARDS ARROW}",
                      class_=direction, title="from the charger" if direction == "in"
                      else "to the charger"),
            tags.code(text),
        )
        for seconds, direction, text in reversed(frames)
    ]
    return tags.details(
        tags.summary(f"Last {len(items)} OCPP frames, newest first"),
        tags.ol(*items, class_="frames"),
        id="frames-" + charger_id,
    )


def local_time_of_seconds(seconds):
    """
    @return: a POSIX timestamp as local wall-clock time with milliseconds.
    """
    return datetime.fromtimestamp(seconds).strftime("%H:%M:%S.%f")[:-3]


def _quirks_and_learned(charger):
    """
    The workarounds in force and what was learned by trial, as fields.
    """
    learned, profile = charger["learned"], charger["learned"]["profile"]
    found = [f"limits as {profile['purpose']} {profile['kind']}, stack level {profile['stack']}, "
             f"in {profile['unit']}" if profile else None,
             "measurands " + (", ".join(learned["measurands"]) or "none")
             if learned["measurands"] is not None else None,
             "read-only " + ", ".join(learned["read_only"]) if learned["read_only"] else None]
    return [("Workarounds", "; ".join(f"{q['name']} ({q['reason']})" for q in charger["quirks"])
             or None),
            ("Learned", "; ".join(filter(None, found)) or None)]


def _charger(charger, frames):
    model = " ".join(filter(None, (charger["vendor"], charger["model"]))) or None
    return tags.section(
        tags.h2(charger["id"], " ", _connection(charger)),
        _fields(
            ("Address", charger["address"] or "\N{EM DASH}"),
            ("Charger", model),
            ("Firmware", charger["firmware"]),
            ("Serial", charger["serial"]),
            ("Reconnects", str(charger["reconnects"]) if charger["reconnects"] else None),
            *_quirks_and_learned(charger),
        ),
        tags.div(*[_connector(charger, c) for c in charger["connectors"]], class_="connectors"),
        tags.div(
            _button("Soft reset", charger["id"], "reset",
                    confirm=f"Reset the charger {charger['id']}? A running session may stop."),
            class_="buttons"),
        _frames(charger["id"], frames),
        id="charger-" + charger["id"],
    )


def _unknown(unknown):
    if not unknown:
        return tags.p("None so far.", class_="muted")
    rows = [
        tags.tr(
            tags.td(tags.input(value=u["id"], readonly="", class_="copy", id=f"unknown-{i}",
                               **{"aria-label": "charger id"})),
            tags.td(tags.button("Copy", type="button", **{"data-copy": f"unknown-{i}"})),
            tags.td(u["address"]),
            tags.td(str(u["count"])),
            tags.td(local_time(_parse(u["first_seen"]))),
            tags.td(local_time(_parse(u["last_seen"]))),
        )
        for i, u in enumerate(unknown)
    ]
    header = tags.tr(*[tags.th(h) for h in ("Id", "", "Address", "Attempts", "First", "Last")])
    return [
        tags.p("Copy an id into a [[charger]] table of the configuration to serve it.",
               class_="muted"),
        tags.div(tags.table(header, *rows), class_="scroll"),
    ]


def bar_chart(title, bars):
    """
    An inline SVG bar chart.

    @param bars: C{(label, kwh, tooltip)} in display order; the first and
        last labels are written under the axis.
    """
    width, height, top, bottom = 600, 160, 16, 20
    peak = max((kwh for _, kwh, _ in bars), default=0) or 1
    # At least a month of slots: one session is a bar, not a wall.
    step = width / max(len(bars), HISTORY_DAYS)
    children = [
        Tag("title")(title),
        Tag("line")(x1="0", x2=str(width), y1=str(height - bottom), y2=str(height - bottom)),
        Tag("text")(f"{peak:.1f} kWh", x="2", y="11"),
    ]
    for i, (label, kwh, tooltip) in enumerate(bars):
        bar = (height - top - bottom) * kwh / peak
        children.append(Tag("rect")(
            Tag("title")(tooltip),
            x=f"{i * step + step * 0.1:.1f}", width=f"{step * 0.8:.1f}",
            y=f"{height - bottom - bar:.1f}", height=f"{bar:.1f}"))
    if bars:
        children.append(Tag("text")(bars[0][0], x="2", y=str(height - 5)))
    if len(bars) > 1:
        children.append(Tag("text")(bars[-1][0], x=f"{len(bars) * step:.1f}", y=str(height - 5),
                                    **{"text-anchor": "end"}))
    return Tag("svg")(*children, class_="chart", role="img", viewBox=f"0 0 {width} {height}",
                      preserveAspectRatio="xMinYMin meet",
                      xmlns="http://www.w3.org/2000/svg", **{"aria-label": title})


def _hhmm(text):
    return _parse(text).astimezone().strftime("%H:%M")


def plan_chart(plan, max_current=None):
    """
    An inline SVG timeline of a smart plan: the planned current per slot as
    bars (the PV surplus part green) and the price as a line.

    @param plan: the C{plan} list of L{SmartManager.session}: C{{start,
        end, current, price}} (ISO times).
    @param max_current: the top of the current axis (A), default the
        plan's highest current.
    """
    width, height, top, bottom = 600, 140, 16, 20
    title = "Planned charging current"
    children = [
        Tag("title")(title),
        Tag("line")(x1="0", x2=str(width), y1=str(height - bottom), y2=str(height - bottom)),
    ]
    if plan:
        begin, end = _parse(plan[0]["start"]), _parse(plan[-1]["end"])
        span = max((end - begin).total_seconds(), 1)
        peak = max([s["current"] for s in plan] + [max_current or 0]) or 1
        prices = [s["price"] for s in plan]
        low, high = min(prices), max(prices)

        def x(when):
            return width * (_parse(when) - begin).total_seconds() / span

        def y_price(price):
            # The upper part of the chart, the cheapest at the bottom of it.
            share = 0.5 if high == low else (price - low) / (high - low)
            return height - bottom - (height - top - bottom) * (0.25 + 0.7 * share)

        points = []
        for slot in plan:
            x0, x1 = x(slot["start"]), x(slot["end"])
            bar = (height - top - bottom) * slot["current"] / peak
            tooltip = (f"{_hhmm(slot['start'])}\N{EN DASH}{_hhmm(slot['end'])}: "
                       f"{slot['current']:g} A at {slot['price']:g}/kWh")
            if bar > 0:
                children.append(Tag("rect")(
                    Tag("title")(tooltip), x=f"{x0:.1f}", width=f"{max(x1 - x0, 0.5):.1f}",
                    y=f"{height - bottom - bar:.1f}", height=f"{bar:.1f}"))
                surplus = (height - top - bottom) * min(slot.get("surplus_current", 0),
                                                        slot["current"]) / peak
                if surplus > 0:
                    children.append(Tag("rect")(
                        Tag("title")(tooltip + " (PV surplus)"), class_="surplus",
                        x=f"{x0:.1f}", width=f"{max(x1 - x0, 0.5):.1f}",
                        y=f"{height - bottom - surplus:.1f}", height=f"{surplus:.1f}"))
            points += [f"{x0:.1f},{y_price(slot['price']):.1f}",
                       f"{x1:.1f},{y_price(slot['price']):.1f}"]
        children.append(Tag("polyline")(points=" ".join(points)))
        children += [
            Tag("text")(f"{peak:g} A", x="2", y="11"),
            Tag("text")(f"price {low:g}\N{EN DASH}{high:g}/kWh" if high != low
                        else f"price {low:g}/kWh", class_="price", x=str(width - 2), y="11",
                        **{"text-anchor": "end"}),
            Tag("text")(_hhmm(plan[0]["start"]), x="2", y=str(height - 5)),
            Tag("text")(_hhmm(plan[-1]["end"]), x=str(width - 2), y=str(height - 5),
                        **{"text-anchor": "end"}),
        ]
    return Tag("svg")(*children, class_="chart plan", role="img",
                      viewBox=f"0 0 {width} {height}", preserveAspectRatio="xMinYMin meet",
                      xmlns="http://www.w3.org/2000/svg", **{"aria-label": title})


def _smart(charger_id, smart):
    """
    A smart session: its plan as a timeline, its cost against charging at
    once, and a form to change departure and energy.
    """
    departure = _parse(smart["departure"])
    saving = smart["immediate_cost"] - smart["cost"]
    cost = f"{smart['cost']:.2f} (at once: {smart['immediate_cost']:.2f}"
    cost += f", saves {saving:.2f})" if saving > 0.005 else ")"
    reach = _badge("on time", True) if smart["reachable"] else _badge(
        "not reachable before departure: full current", False)
    put = (f"/api/chargers/{quote(charger_id, safe='')}/smart?connector={smart['connector']}")
    return tags.div(
        tags.h3("Smart plan"),
        _fields(
            ("Departure", [local_time(departure), " ", reach]),
            ("Energy", f"{_kwh(smart['delivered_wh'])} of {_kwh(smart['energy_wh'])}"),
            ("Cost", cost),
            ("Solar", f"{smart['surplus_current']:g} A from PV surplus"
             if smart.get("surplus_current") else None),
        ),
        plan_chart(smart["plan"]),
        tags.form(
            tags.label("Departure ", tags.input(
                type="time", name="departure", value=departure.astimezone().strftime("%H:%M"))),
            tags.label("Energy ", tags.input(
                type="number", name="energy_wh", min="0.1", step="any",
                value=f"{smart['energy_wh'] / 1000:g}", **{"data-scale": "1000"}), " kWh"),
            tags.button("Change plan", type="submit"),
            class_="smart", **{"data-put": put}),
        class_="smart-plan",
    )


def _history(records, today):
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
        f"Energy per day, last {HISTORY_DAYS} days",
        [(day.strftime("%d %b"), kwh, f"{day:%a %d %b}: {kwh:.2f} kWh")
         for day, kwh in days.items()])
    per_session = bar_chart(
        "Energy per session",
        [(local_time(r.start_time)[:10], (r.energy_wh or 0) / 1000,
          f"#{r.id} {r.charger_id}/{r.connector} {r.id_tag} {local_time(r.start_time)}: "
          f"{_kwh(r.energy_wh)}") for r in sessions])
    header = tags.tr(*[tags.th(h) for h in (
        "#", "Charger", "Tag", "Start", "End", "Energy", "Reason")])
    rows = [
        tags.tr(
            tags.td(str(r.id)), tags.td(f"{r.charger_id}/{r.connector}"), tags.td(r.id_tag),
            tags.td(local_time(r.start_time)),
            tags.td(local_time(r.stop_time) if r.stop_time else "running"),
            tags.td(_kwh(r.energy_wh)), tags.td(r.stop_reason or ""),
        )
        for r in records[:HISTORY_SESSIONS]
    ]
    total = sum(days.values())
    return tags.section(
        tags.h2("Sessions"),
        tags.p(f"Last {HISTORY_DAYS} days: {len(records)} session(s), {total:.1f} kWh. ",
               tags.a("CSV", href="/api/transactions?format=csv"), class_="muted"),
        tags.h3("Energy per day"), per_day,
        tags.h3("Energy per session"), per_session,
        tags.div(tags.table(header, *rows), class_="scroll") if rows
        else tags.p("No sessions yet.", class_="muted"),
        id="sessions",
    )


def render_page(status, frames, records):
    """
    Render the status page.

    @param status: the snapshot of L{xxterocpp.web.status.snapshot}.
    @param frames: the OCPP frames of each charger by id, as
        C{(seconds, "in" | "out", text)}.
    @param records: the transactions of the last L{HISTORY_DAYS} days,
        newest first.
    @return: a Deferred firing with the HTML document (bytes).
    """
    now = _parse(status["time"])
    knx = status["knx"]
    document = tags.html(
        tags.head(
            tags.meta(charset="utf-8"),
            tags.meta(name="viewport", content="width=device-width, initial-scale=1"),
            tags.title("xxterocpp \N{EN DASH} charging points"),
            tags.link(rel="stylesheet", href="/page.css"),
            tags.script(src="/page.js", defer=""),
        ),
        tags.body(
            # Outside <main>: the refresh replaces <main>, not a button's outcome.
            tags.p(id="result", role="status"),
            Tag("main")(
                tags.header(
                    tags.h1("Charging points"),
                    tags.span("KNX link ",
                              _badge(knx, None if knx == "not configured" else knx == "connected")),
                    tags.span("updated ", local_time(now), class_="muted"),
                    tags.span(f"refused connections: {status['refused']['auth']} credentials, "
                              f"{status['refused']['tls']} TLS", class_="muted",
                              id="refused"),
                ),
                *[_charger(c, frames.get(c["id"], ())) for c in status["chargers"]],
                tags.section(tags.h2("Chargers trying to connect"), _unknown(status["unknown"]),
                             id="unknown"),
                _history(records, now.astimezone().date()),
            ),
        ),
        lang="en",
    )
    return flattenString(None, document).addCallback(lambda html: b"<!DOCTYPE html>\n" + html)
