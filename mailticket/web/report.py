"""The report page (SPEC §7, §8): times per queue and per operator, SLA attainment, FCR, CSAT, and SVG charts."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from markupsafe import Markup

from mailticket.charts import LINE_SUMMARY, NO_DATA, bar_chart, line_chart
from mailticket.durations import compact
from mailticket.localtime import local_day
from mailticket.reports import Rate, Report
from mailticket.service import report_data
from mailticket.web.auth import SignedIn
from mailticket.web.core import t, web

# Longer input cannot be a date; FastAPI refuses it with a 422 before it reaches the parser.
MAX_DATE_CHARS = 32
DateParam = Annotated[str, Query(max_length=MAX_DATE_CHARS)]
# Up to this many days the line chart spans the whole period (its empty days at 0); past it, only the days
# between the first and the last ticket, so that a report over years stays a chart of reasonable size.
MAX_CHART_DAYS = 400
# Shortcut links above the form.
PRESET_DAYS = (7, 30, 90)
NONE = "—"

router = APIRouter(include_in_schema=False)


def duration(seconds: float | None) -> str:
    return compact(seconds, missing=NONE)


def percent(rate: Rate) -> str:
    """'75%', or — when no ticket had a verdict (the template shows hits/total beside it)."""
    return NONE if rate.percent is None else f"{rate.percent:.0f}%"


def per_day_points(report: Report, period: report_data.Period, lang: str) -> list[tuple[str, int]]:
    """(the day as the page writes dates, tickets created that day)."""
    if period.days > MAX_CHART_DAYS:
        days = list(report.per_day)
    else:
        counts = dict(report.per_day)
        days = [(day, counts.get(day, 0)) for day in period.dates()]
    return [(local_day(day, lang), tickets) for day, tickets in days]


def first_response_chart(request: Request, report: Report) -> str:
    answered = [g for g in report.queues if g.first_response.median is not None]
    return bar_chart(t(request, "Median first response per queue"), [g.name or "" for g in answered],
                     [g.first_response.median for g in answered], shown=compact, no_data=t(request, NO_DATA))


def presets(request: Request, today: date) -> list[tuple[str, str, str]]:
    return [(t(request, "Last %(days)s days", days=days), (today - timedelta(days=days - 1)).isoformat(),
             today.isoformat()) for days in PRESET_DAYS]


@router.get("/report")
def report_page(request: Request, me: SignedIn, since: DateParam = "", until: DateParam = ""):
    app = web(request)
    zone = report_data.report_timezone(app.settings)
    today = report_data.local_today(app.clock(), zone)
    context = dict(since=since, until=until, timezone=zone, presets=presets(request, today), duration=duration,
                   percent=percent)
    try:
        period = report_data.parse_period(since, until, today=today, zone=zone)
    except report_data.BadPeriod as bad:
        return app.render(request, "report.html", 422, error=str(bad), report=None, period=None, **context)
    with app.store.reading() as session:
        report = report_data.report(session, period)
    # The charts escape every label and value themselves (mailticket.charts), so their markup goes in as is.
    charts = {
        "per_day": Markup(line_chart(t(request, "Tickets per day"), per_day_points(report, period, app.language(request)),
                                     no_data=t(request, NO_DATA),
                                     summary=lambda **said: t(request, LINE_SUMMARY, **said))),
        "first_response": Markup(first_response_chart(request, report)),
    }
    context.update(since=period.first.isoformat(), until=period.last.isoformat())
    return app.render(request, "report.html", report=report, period=period, charts=charts, **context)
