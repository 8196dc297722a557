# -*- test-case-name: tests.test_web,tests.test_i18n -*-
"""
The status page's charts as inline SVG (no script, no fonts, no CDN): the
energy per day or per session, and a smart session's plan.

Their texts are in the page's L{Language}; the numbers use its decimal
separator. (Texts to translate spell out their dashes: C{xgettext} reads
no named escapes.)
"""

from datetime import datetime

from twisted.web.template import Tag

from xxterocpp.web.i18n import DEFAULT, language

__all__ = ["bar_chart", "plan_chart"]


def _parse(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _hhmm(text):
    return _parse(text).astimezone().strftime("%H:%M")


def _svg(children, title, height, class_):
    return Tag("svg")(*children, class_=class_, role="img", viewBox=f"0 0 600 {height}",
                      preserveAspectRatio="xMinYMin meet",
                      xmlns="http://www.w3.org/2000/svg", **{"aria-label": title})


def bar_chart(title, bars, slots, t=None):
    """
    An inline SVG bar chart of energies.

    @param bars: C{(label, kwh, tooltip)} in display order; the first and
        last labels are written under the axis.
    @param slots: the chart has room for at least this many bars, so that
        one session is a bar, not a wall.
    @param t: the page's L{Language} (default English).
    """
    t = t or language(DEFAULT)
    width, height, top, bottom = 600, 160, 16, 20
    peak = max((kwh for _, kwh, _ in bars), default=0) or 1
    step = width / max(len(bars), slots)
    children = [
        Tag("title")(title),
        Tag("line")(x1="0", x2=str(width), y1=str(height - bottom), y2=str(height - bottom)),
        Tag("text")(t.number(peak, ".1f") + " kWh", x="2", y="11"),
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
    return _svg(children, title, height, "chart")


def plan_chart(plan, max_current=None, t=None):
    """
    An inline SVG timeline of a smart plan: the planned current per slot as
    bars (the PV surplus part green) and the price as a line.

    @param plan: the C{plan} list of L{SmartManager.session}: C{{start,
        end, current, price}} (ISO times).
    @param max_current: the top of the current axis (A), default the
        plan's highest current.
    @param t: the page's L{Language} (default English).
    """
    t = t or language(DEFAULT)
    width, height, top, bottom = 600, 140, 16, 20
    title = t("Planned charging current")
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
            tooltip = t("{start}–{end}: {current} A at {price}/kWh").format(
                start=_hhmm(slot["start"]), end=_hhmm(slot["end"]),
                current=t.number(slot["current"], "g"), price=t.number(slot["price"], "g"))
            if bar > 0:
                children.append(Tag("rect")(
                    Tag("title")(tooltip), x=f"{x0:.1f}", width=f"{max(x1 - x0, 0.5):.1f}",
                    y=f"{height - bottom - bar:.1f}", height=f"{bar:.1f}"))
                surplus = (height - top - bottom) * min(slot.get("surplus_current", 0),
                                                        slot["current"]) / peak
                if surplus > 0:
                    children.append(Tag("rect")(
                        Tag("title")(tooltip + " " + t("(PV surplus)")), class_="surplus",
                        x=f"{x0:.1f}", width=f"{max(x1 - x0, 0.5):.1f}",
                        y=f"{height - bottom - surplus:.1f}", height=f"{surplus:.1f}"))
            points += [f"{x0:.1f},{y_price(slot['price']):.1f}",
                       f"{x1:.1f},{y_price(slot['price']):.1f}"]
        children.append(Tag("polyline")(points=" ".join(points)))
        prices = (t("price {low}–{high}/kWh") if high != low
                  else t("price {low}/kWh")).format(low=t.number(low, "g"),
                                                    high=t.number(high, "g"))
        children += [
            Tag("text")(t.number(peak, "g") + " A", x="2", y="11"),
            Tag("text")(prices, class_="price", x=str(width - 2), y="11",
                        **{"text-anchor": "end"}),
            Tag("text")(_hhmm(plan[0]["start"]), x="2", y=str(height - 5)),
            Tag("text")(_hhmm(plan[-1]["end"]), x=str(width - 2), y=str(height - 5),
                        **{"text-anchor": "end"}),
        ]
    return _svg(children, title, height, "chart plan")
