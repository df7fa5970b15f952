"""The back office's dashboard: sales, revenue, subscriptions, refunds and dunning, from checkout's own records.

The chart is an inline SVG drawn on the server (no script), with the same figures as a table for
whoever cannot see it.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from postsale.checkout.dashboard import Day, dashboard
from postsale.checkout.domain.money import format_money
from postsale.checkout.entrypoints.buyer import templates
from postsale.runtime import clock
from postsale.runtime.db import SessionDep
from postsale.runtime.staff import StaffDep, backoffice_context

pages = APIRouter(prefix="/admin", include_in_schema=False)

# The chart's drawing area, in SVG user units (the SVG scales to the page's width).
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 720, 240, 40, 28, 12


def amounts(values: dict[str, int]) -> str:
    """`49.00 EUR, 12.00 USD`; nothing yet reads `none`."""
    return ", ".join(format_money(amount, currency) for currency, amount in sorted(values.items())) or "none"


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str  # what the bar's title says: `12 Mar: 3 sales (147.00 EUR)`


def chart(days: list[Day]) -> dict:
    """The bars of the daily sales chart, scaled to the busiest day, and the y axis' top value."""
    top = max((d.sales for d in days), default=0) or 1
    slot = (WIDTH - LEFT) / len(days)
    inner = HEIGHT - BOTTOM - TOP
    bars = []
    for i, day in enumerate(days):
        height = inner * day.sales / top
        sales = f"{day.sales} sale{'' if day.sales == 1 else 's'}"
        bars.append(Bar(x=round(LEFT + i * slot + slot * 0.15, 1), y=round(TOP + inner - height, 1),
                        width=round(slot * 0.7, 1), height=round(height, 1),
                        label=f"{day.day:%d %b}: {sales}" + (f" ({amounts(day.amounts)})" if day.sales else "")))
    # The first, middle and last days under the axis, anchored so that none runs off the chart.
    ticks = [{"x": round(LEFT + i * slot + offset * slot, 1), "anchor": anchor, "label": f"{days[i].day:%d %b}"}
             for i, offset, anchor in ((0, 0, "start"), (len(days) // 2, 0.5, "middle"), (len(days) - 1, 1, "end"))]
    return {"bars": bars, "top": top, "width": WIDTH, "height": HEIGHT, "left": LEFT, "base": HEIGHT - BOTTOM,
            "top_y": TOP, "ticks": ticks}


@pages.get("/dashboard", response_class=HTMLResponse)
def dashboard_page(request: Request, session: SessionDep, staff: StaffDep):
    """How the store is doing today and over the last 30 days (any staff member)."""
    figures = dashboard(session, clock.utcnow())
    return templates.TemplateResponse(request, "backoffice/dashboard.html", {
        **backoffice_context(request, staff, "Dashboard"), "d": figures, "chart": chart(figures.days),
        "amounts": amounts,
    })
