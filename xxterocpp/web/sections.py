# -*- test-case-name: tests.test_web,tests.test_web_status,tests.test_browser,tests.test_i18n,tests.test_refusals -*-
"""
A charger's section of the status page (L{charger_section}): its
connection, identity, security and workarounds, the refused connection
attempts, each connector (status, session, limit, its smart plan, the
buttons, the KNX commissioning view) and the last OCPP frames.
"""

from urllib.parse import quote

from twisted.web.template import tags

from xxterocpp.domain.model import utc_from_seconds
from xxterocpp.knx import objects
from xxterocpp.web.charts import plan_chart
from xxterocpp.web.i18n import N_
from xxterocpp.web.knxvalues import describe
from xxterocpp.web.markup import (
    action_button, badge, card_table, current_text, energy_text, field_list, local_time,
    local_time_of_seconds, parse_time, refusal_text, since_text,
)
from xxterocpp.web.status import REFUSAL_WORDS, iso


def charger_section(t, charger, frames):
    """
    A charger's section of the page.

    @param charger: the charger's part of the snapshot
        (L{xxterocpp.web.status.snapshot}).
    @param frames: its last OCPP frames, C{(seconds, "in" | "out", text)}.
    """
    model = " ".join(filter(None, (charger["vendor"], charger["model"]))) or None
    return tags.section(
        tags.h2(charger["id"], " ", _connection(t, charger)),
        field_list(
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
            action_button(t("Soft reset"), charger["id"], "reset",
                          confirm=t("Reset the charger {id}? A running session may stop.").format(
                        id=charger["id"])),
            class_="buttons"),
        _frames(t, charger["id"], frames),
        id="charger-" + charger["id"],
    )


def _connection(t, charger):
    if charger["connected"]:
        return [badge(t("connected"), True), " ", since_text(t, charger["connected_since"])]
    if charger["disconnected_since"]:
        return [badge(t("offline"), False), " ", since_text(t, charger["disconnected_since"])]
    return [badge(t("offline") if charger["ever_connected"] else t("never connected"), False)]


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
    events = [tags.li(local_time(parse_time(e["time"])), " ", tags.code(e["type"]),
                      f" {e['tech_info']}" if e["tech_info"] else "")
              for e in charger["security_events"]]
    return [
        (t("Security profile"), profile),
        (t("Certificate"), None if certificate is None else [
            t("serial"), " ", tags.code(certificate["serial"]), ", ",
            t("valid until {time}").format(time=local_time(parse_time(certificate["expiry"])))]),
        (t("Security events"), tags.ul(*events, class_="events") if events else None),
    ]


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
            badge(t.plural("{count} refused connection attempt",
                           "{count} refused connection attempts",
                           refusals["count"]).format(count=refusals["count"]), False), " ",
            t("last {time}: {reason}").format(time=local_time(parse_time(last["time"])),
                                              reason=refusal_text(t, last))),
        tags.p(counts, class_="muted"),
        card_table((t("Time"), t("Address"), t("Reason")),
                   [(local_time(parse_time(r["time"])), r["address"], refusal_text(t, r))
                    for r in refusals["last"]]),
        id="refusals-" + charger_id,
    )


def _connector(t, charger, c):
    tx = c["transaction"]
    # The snapshot's words are the msgids (English, status.STATUS_WORDS);
    # the OCPP names follow them, as the installer knows them from manuals.
    words = t(c["status_text"])
    status = [words]
    if c["status"] and words.casefold() != c["status"].casefold():
        status += [" ", tags.span(f"({c['status']})", class_="muted")]
    if c["since"]:
        status += [" ", tags.span(since_text(t, c["since"]), class_="muted")]
    error = t(c["error_text"])
    details = [c["error_code"] if c["error_code"] not in ("NoError", error) else None,
               c["info"], c["vendor_error_code"]]
    if any(details):
        error += " (" + ", ".join(filter(None, details)) + ")"
    # What the charger accepted and has not carried out yet.
    pending = {p["command"]: p for p in c.get("pending") or ()}
    session = t("start accepted, not begun") if "start" in pending else t.context(
        "session", "none")
    if tx is not None:
        session = [t("#{id} tag").format(id=tx["id"]), " ", tags.code(tx["id_tag"]), ", ",
                   since_text(t, tx["start"]), ", ",
                   t("{energy} so far").format(energy=energy_text(t, tx["energy_wh"]))]
        if "stop" in pending:
            session += [", ", t("stop accepted, not done")]
    current = current_text(t, c["current_a"])
    if c["power_w"] is not None:
        current += " (" + t.number(c["power_w"] / 1000, ".1f") + "\N{NO-BREAK SPACE}kW)"
    limit = current_text(t, c["limit_a"])
    if c["max_current_a"] is not None:
        limit += " (" + t("normal {normal}, fast {fast}").format(
            normal=current_text(t, c["normal_current_a"]),
            fast=current_text(t, c["max_current_a"])) + ")"
    available = {None: t("unknown"), True: t("operative"), False: t("inoperative")}[
        c["available"]]
    change = pending.get("availability")
    if change is not None:
        state = t("operative") if change["operative"] else t("inoperative")
        later = t("{state} after the session") if change["until"] is None else t(
            "{state} pending")
        available += " (" + later.format(state=state) + ")"
    buttons = []
    if c["configured"]:
        charger_id, n = charger["id"], {"connector": c["connector"]}
        buttons = [
            action_button(t("Stop"), charger_id, "stop", n, primary=True) if tx
            else action_button(t("Start"), charger_id, "start", n, primary=True),
            *([action_button(t("Start smart"), charger_id, "start", dict(n, smart=True))]
              if not tx and c.get("smart_tag") else []),
            action_button(t("Normal"), charger_id, "normal", n),
            action_button(t("Fast"), charger_id, "fast", n),
            action_button(t("Unlock"), charger_id, "unlock", n),
            action_button(t("Make unavailable"), charger_id, "availability",
                          dict(n, available=False)) if c["available"] is not False
            else action_button(t("Make available"), charger_id, "availability",
                               dict(n, available=True)),
        ]
    return tags.div(
        tags.h3(t("Connector {number}").format(number=c["connector"]),
                "" if c["configured"] else
                tags.span(" (" + t("not configured") + ")", class_="muted")),
        field_list(
            (t("Status"), status),
            (t("Error"), tags.span(error, class_="" if c["error_code"] == "NoError" else "bad")),
            (t("Session"), session),
            (t("Current"), current),
            (t("Limit"), limit),
            (t("Availability"), available),
            (t("Reservation"), _reservation(t, c["reservation"])),
            (t("Meter"), energy_text(t, c["energy_register_wh"])),
        ),
        _smart(t, charger["id"], c["smart"]) if c.get("smart") else "",
        tags.div(*buttons, class_="buttons"),
        _knx(t, charger["id"], c) if c.get("knx") else "",
        class_="connector",
    )


def _reservation(t, reservation):
    if reservation is None:
        return t.context("reservation", "none")
    if reservation["until_freed"]:
        return [t("for tag"), " ", tags.code(reservation["id_tag"]), " ", t("until freed")]
    return [t("for tag"), " ", tags.code(reservation["id_tag"]), " ",
            t("until {time}").format(time=local_time(parse_time(reservation["expiry"])))]


def _smart(t, charger_id, smart):
    """
    A smart session: its plan as a timeline, its cost against charging at
    once, and a form to change departure and energy.
    """
    departure = parse_time(smart["departure"])
    saving = smart["immediate_cost"] - smart["cost"]
    cost = t.number(smart["cost"], ".2f") + " (" + (
        t("at once: {cost}, saves {saving}") if saving > 0.005 else t("at once: {cost}")).format(
        cost=t.number(smart["immediate_cost"], ".2f"), saving=t.number(saving, ".2f")) + ")"
    reach = badge(t("on time"), True) if smart["reachable"] else badge(
        t("not reachable before departure: full current"), False)
    put = (f"/api/chargers/{quote(charger_id, safe='')}/smart?connector={smart['connector']}")
    return tags.div(
        tags.h3(t("Smart plan")),
        field_list(
            (t("Departure"), [local_time(departure), " ", reach]),
            (t("Energy"), t("{delivered} of {planned}").format(
                delivered=energy_text(t, smart["delivered_wh"]),
                planned=energy_text(t, smart["energy_wh"]))),
            (t("Cost"), cost),
            (t("Solar"), t("{current} from PV surplus").format(
                current=current_text(t, smart["surplus_current"]))
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
            tags.span(local_time(parse_time(record["time"])), class_="muted")]
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
                time=local_time(parse_time(o["foreign"]["time"]))),
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
        card_table((t("Object"), t("Sent"), t("Received")), rows),
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
