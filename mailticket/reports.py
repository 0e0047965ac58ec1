"""The timing report of SPEC §7 from per-ticket figures, per queue, per operator and overall; JSON, CSV and text."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from statistics import fmean, median
from zoneinfo import ZoneInfo

from mailticket.durations import compact

P90 = 90
CSAT_SCALE = range(1, 6)  # 1 (very unhappy) to 5 (very happy)
OVERALL, QUEUE, OPERATOR = "overall", "queue", "operator"
NO_OPERATOR = "(none)"  # how text and CSV show tickets nobody answered; JSON keeps null
MISSING = "-"
COLUMN_GAP = "  "


@dataclass(frozen=True)
class TicketFigures:
    """What the report needs of one ticket, as the scheduler recorded it (seconds; None = not happened)."""

    ticket_id: int
    queue: str
    operator: str | None  # who sent the first reply or resolved it; None when nobody did
    created_at: datetime
    first_response_seconds: float | None
    handle_seconds: float
    resolution_seconds: float | None
    sla_first_response_met: bool | None  # None: no SLA applies, or no verdict yet
    sla_resolution_met: bool | None
    replies_before_resolution: int
    reopened: bool
    csat: int | None  # 1-5

    def __post_init__(self) -> None:
        if self.csat is not None and self.csat not in CSAT_SCALE:
            raise ValueError(f"ticket {self.ticket_id}: CSAT must be 1 to 5, not {self.csat}")


@dataclass(frozen=True)
class Stats:
    """count, mean, median and 90th percentile of one duration, in seconds (None when count is 0)."""

    count: int
    mean: float | None
    median: float | None
    p90: float | None


@dataclass(frozen=True)
class Rate:
    """hits out of total; percent is None when total is 0."""

    hits: int
    total: int

    @property
    def percent(self) -> float | None:
        return 100.0 * self.hits / self.total if self.total else None


@dataclass(frozen=True)
class Group:
    """The figures of one row: all tickets, one queue, or one operator (name None: nobody answered)."""

    kind: str
    name: str | None
    tickets: int
    first_response: Stats
    handle: Stats
    resolution: Stats
    sla_first_response: Rate
    sla_resolution: Rate
    first_contact_resolution: Rate
    csat: Stats


@dataclass(frozen=True)
class Report:
    timezone: str
    overall: Group
    queues: tuple[Group, ...]
    operators: tuple[Group, ...]
    per_day: tuple[tuple[date, int], ...]  # tickets created per local date, gaps filled with 0

    @property
    def groups(self) -> tuple[Group, ...]:
        return (self.overall, *self.queues, *self.operators)


def percentile(values: Sequence[float], percent: int) -> float | None:
    """Nearest rank: the smallest value with at least `percent`% of the values at or below it.

    It is always one of the values: 90% of tickets were answered within the p90.
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-percent * len(ordered) // 100))  # ceil(percent / 100 * n) in integers, no float error
    return ordered[rank - 1]


def stats(values: Sequence[float]) -> Stats:
    """Mean; median as the middle value (the mean of the two middle ones for an even count); p90 by nearest rank."""
    if not values:
        return Stats(0, None, None, None)
    return Stats(len(values), fmean(values), float(median(values)), float(percentile(values, P90)))


def _first_contact(ticket: TicketFigures) -> bool:
    # Resolved with exactly one operator reply and never reopened: the customer needed one answer.
    return ticket.replies_before_resolution == 1 and not ticket.reopened


def _group(kind: str, name: str | None, tickets: Sequence[TicketFigures]) -> Group:
    def rate(verdicts: Iterable[bool | None]) -> Rate:
        given = [v for v in verdicts if v is not None]
        return Rate(sum(given), len(given))

    resolved = [t for t in tickets if t.resolution_seconds is not None]
    return Group(
        kind, name, len(tickets),
        first_response=stats([t.first_response_seconds for t in tickets if t.first_response_seconds is not None]),
        # Only tickets someone worked on: an untouched ticket's 0 is no handle time.
        handle=stats([t.handle_seconds for t in tickets if t.handle_seconds > 0]),
        resolution=stats([t.resolution_seconds for t in resolved]),
        sla_first_response=rate(t.sla_first_response_met for t in tickets),
        sla_resolution=rate(t.sla_resolution_met for t in tickets),
        first_contact_resolution=Rate(sum(map(_first_contact, resolved)), len(resolved)),
        csat=stats([t.csat for t in tickets if t.csat is not None]),
    )


def _split(kind: str, tickets: Sequence[TicketFigures],
           key: Callable[[TicketFigures], str | None]) -> tuple[Group, ...]:
    buckets: dict[str | None, list[TicketFigures]] = {}
    for ticket in tickets:
        buckets.setdefault(key(ticket), []).append(ticket)
    # By name; the tickets nobody answered come last.
    names = sorted(buckets, key=lambda name: (name is None, name or ""))
    return tuple(_group(kind, name, buckets[name]) for name in names)


def build_report(tickets: Iterable[TicketFigures], *, timezone: str = "UTC") -> Report:
    """The report over these tickets; days are counted in `timezone` (the business-hours zone, else UTC)."""
    tickets = list(tickets)
    zone = ZoneInfo(timezone)
    counts: dict[date, int] = {}
    for ticket in tickets:
        day = ticket.created_at.astimezone(zone).date()
        counts[day] = counts.get(day, 0) + 1
    per_day = []
    if counts:
        day, last = min(counts), max(counts)
        while day <= last:
            per_day.append((day, counts.get(day, 0)))
            day += timedelta(days=1)
    return Report(timezone, _group(OVERALL, None, tickets), _split(QUEUE, tickets, lambda t: t.queue),
                  _split(OPERATOR, tickets, lambda t: t.operator), tuple(per_day))


# -- renderers ----------------------------------------------------------------------------------------

DURATIONS = ("first_response", "handle", "resolution")
RATES = ("sla_first_response", "sla_resolution", "first_contact_resolution")


def as_json(report: Report) -> dict:
    """Plain types for json.dumps: seconds and percents as floats, dates as ISO strings, None as null."""
    def group(g: Group) -> dict:
        return {
            "kind": g.kind, "name": g.name, "tickets": g.tickets,
            **{name: vars(getattr(g, name)).copy() for name in DURATIONS},
            **{name: {**vars(getattr(g, name)), "percent": getattr(g, name).percent} for name in RATES},
            "csat": {"count": g.csat.count, "average": g.csat.mean},
        }
    return {
        "timezone": report.timezone,
        "overall": group(report.overall),
        "queues": [group(g) for g in report.queues],
        "operators": [group(g) for g in report.operators],
        "per_day": [{"date": day.isoformat(), "tickets": n} for day, n in report.per_day],
    }


def _number(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _label(g: Group) -> str:
    return g.name if g.name is not None else (NO_OPERATOR if g.kind == OPERATOR else "")


CSV_HEADER = ("group", "name", "tickets",
              *(f"{d}_{s}" for d in DURATIONS for s in ("count", "mean_s", "median_s", "p90_s")),
              *(f"{r}_{s}" for r in RATES for s in ("hits", "total", "percent")),
              "csat_count", "csat_average")


def as_csv(report: Report) -> str:
    """A header row, then one row per group (overall, queues, operators); seconds and percents to one decimal."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for g in report.groups:
        row: list[object] = [g.kind, _label(g), g.tickets]
        for name in DURATIONS:
            s = getattr(g, name)
            row += [s.count, _number(s.mean), _number(s.median), _number(s.p90)]
        for name in RATES:
            r = getattr(g, name)
            row += [r.hits, r.total, _number(r.percent)]
        row += [g.csat.count, _number(g.csat.mean, 2)]
        writer.writerow(row)
    return out.getvalue()


def _duration(seconds: float | None) -> str:
    return compact(seconds, missing=MISSING)


def _percent(rate: Rate) -> str:
    return MISSING if rate.percent is None else f"{rate.percent:.0f}% ({rate.hits}/{rate.total})"


TABLE_COLUMNS: tuple[tuple[str, Callable[[Group], str]], ...] = (
    ("group", lambda g: g.kind if g.kind == OVERALL else f"{g.kind} {_label(g)}"),
    ("tickets", lambda g: str(g.tickets)),
    ("1st resp median", lambda g: _duration(g.first_response.median)),
    ("1st resp p90", lambda g: _duration(g.first_response.p90)),
    ("handle median", lambda g: _duration(g.handle.median)),
    ("resolution median", lambda g: _duration(g.resolution.median)),
    ("resolution p90", lambda g: _duration(g.resolution.p90)),
    ("SLA 1st resp", lambda g: _percent(g.sla_first_response)),
    ("SLA resolution", lambda g: _percent(g.sla_resolution)),
    ("FCR", lambda g: _percent(g.first_contact_resolution)),
    ("CSAT", lambda g: MISSING if g.csat.mean is None else f"{g.csat.mean:.1f} ({g.csat.count})"),
)


def as_table(report: Report) -> str:
    """Aligned text for a terminal: the group name left-aligned, figures right-aligned, one row per group."""
    rows = [[title for title, _ in TABLE_COLUMNS]]
    rows += [[cell(g) for _, cell in TABLE_COLUMNS] for g in report.groups]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_COLUMNS))]
    lines = [COLUMN_GAP.join(text.ljust(w) if i == 0 else text.rjust(w) for i, (text, w) in enumerate(zip(row, widths)))
             for row in rows]
    return "\n".join(lines) + "\n"
