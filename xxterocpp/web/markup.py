# -*- test-case-name: tests.test_web,tests.test_web_status,tests.test_i18n -*-
"""
The building blocks of the status page (L{xxterocpp.web.page},
L{xxterocpp.web.sections}): times, energies and currents as people read
them, in the page's language C{t}; badges, definition lists, tables that
become cards on a phone, the buttons that post a command.
"""

import json
from datetime import datetime
from urllib.parse import quote

from twisted.web.template import tags

from xxterocpp.web.i18n import N_


def local_time(when):
    """
    @return: an aware datetime as the controller's local time, for people.
    """
    if when is None:
        return "\N{EM DASH}"
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def local_time_of_seconds(seconds):
    """
    @return: a POSIX timestamp as local wall-clock time with milliseconds.
    """
    return datetime.fromtimestamp(seconds).strftime("%H:%M:%S.%f")[:-3]


def parse_time(text):
    """
    @return: the aware datetime of a snapshot's ISO 8601 time, or None.
    """
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def since_text(t, text):
    """
    @return: C{"since <local time>"} of a snapshot's time.
    """
    return t("since {time}").format(time=local_time(parse_time(text)))


def energy_text(t, wh):
    """
    @return: an energy in Wh as kWh with two decimals.
    """
    return "\N{EM DASH}" if wh is None else t.number(wh / 1000, ".2f") + "\N{NO-BREAK SPACE}kWh"


# A number and its unit stay on one line (NO-BREAK SPACE): a phone's narrow
# columns would put "A" alone on the next.
def current_text(t, a):
    """
    @return: a current in A.
    """
    return "\N{EM DASH}" if a is None else t.number(a, "g") + "\N{NO-BREAK SPACE}A"


#: The abbreviations of the days and months (in C{t}'s language): the
#: controller's C locale would give English ones.
_WEEKDAYS = (N_("Mon"), N_("Tue"), N_("Wed"), N_("Thu"), N_("Fri"), N_("Sat"), N_("Sun"))
_MONTHS = (N_("Jan"), N_("Feb"), N_("Mar"), N_("Apr"), N_("May"), N_("Jun"), N_("Jul"),
           N_("Aug"), N_("Sep"), N_("Oct"), N_("Nov"), N_("Dec"))


def day_text(t, day, weekday=False):
    """
    @return: C{"28 Jul"} (C{"Sun 28 Jul"} with C{weekday}) in C{t}'s language.
    """
    text = f"{day.day:02d} {t(_MONTHS[day.month - 1])}"
    return f"{t(_WEEKDAYS[day.weekday()])} {text}" if weekday else text


def badge(text, good):
    """
    A coloured label.

    @param good: True (green), False (red) or None (grey: nothing to judge).
    """
    return tags.span(text, class_={True: "badge ok", False: "badge bad", None: "badge"}[good])


def field_list(*pairs):
    """
    A definition list of (label, value) pairs; None values are left out.
    """
    items = []
    for label, value in pairs:
        if value is not None:
            items += [tags.dt(label), tags.dd(value)]
    return tags.dl(*items)


def card_table(columns, rows):
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


def action_button(label, charger_id, action, body=None, primary=False, confirm=None):
    """
    A button the page's script turns into C{POST
    /api/chargers/{charger_id}/{action}} with C{body}, after the question
    C{confirm} when one is given.
    """
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


def refusal_text(t, reason):
    """
    Why an attempt was refused, in words, with the detail the server knew.
    """
    words = t(reason["reason_text"])
    return f"{words}: {reason['detail']}" if reason["detail"] else words
