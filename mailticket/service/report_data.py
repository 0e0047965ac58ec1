"""What the timing report (SPEC §7) reads: a period of whole local days, and its tickets' recorded figures in one query.

The figures are the ones the scheduler stored on each ticket; nothing is recomputed here (mailticket.reports does
the arithmetic over them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailticket.config import Settings
from mailticket.db.models import SPAM, Csat, Operator, Ticket
from mailticket.reports import Report, TicketFigures, build_report

DEFAULT_DAYS = 30  # the default period: the last 30 days, today included
DATE_FORMAT = "YYYY-MM-DD"
# Strictly YYYY-MM-DD: date.fromisoformat alone would also take "20261102" or "2026-W45-1".
DAY_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")
# A day's bounds must stay representable as UTC datetimes in any time zone (the day after LATEST_DAY too).
EARLIEST_DAY, LATEST_DAY = date(1970, 1, 1), date(9999, 12, 30)
UTC_NAME = "UTC"


class BadPeriod(ValueError):
    """A date that is not YYYY-MM-DD, out of range, or a period that ends before it starts; the text says which."""


@dataclass(frozen=True)
class Period:
    """Whole days in the business time zone, both ends included."""

    first: date
    last: date
    timezone: str

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def dates(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range(self.days)]

    def bounds(self) -> tuple[datetime, datetime]:
        """[local midnight of the first day, local midnight after the last day) as aware UTC datetimes."""
        zone = ZoneInfo(self.timezone)
        start = datetime.combine(self.first, time(), tzinfo=zone)
        end = datetime.combine(self.last + timedelta(days=1), time(), tzinfo=zone)
        return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


def report_timezone(settings: Settings) -> str:
    """Days are counted where the shop works: the business-hours zone, else UTC."""
    return settings.business_hours.timezone if settings.business_hours is not None else UTC_NAME


def local_today(now: datetime, zone: str) -> date:
    return now.astimezone(ZoneInfo(zone)).date()


def parse_day(text: str, name: str) -> date:
    """`text` as a date; BadPeriod naming the option `name` and the reason otherwise."""
    shown = text if len(text) <= 40 else text[:40] + "…"
    if not DAY_PATTERN.fullmatch(text):
        raise BadPeriod(f"{name}: {shown!r} is not a date; write it as {DATE_FORMAT}")
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise BadPeriod(f"{name}: {text} is not a day of the calendar") from None
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        raise BadPeriod(f"{name}: {text} is out of range ({EARLIEST_DAY} to {LATEST_DAY})")
    return day


def parse_period(since: str | None, until: str | None, *, today: date, zone: str,
                 names: tuple[str, str] = ("since", "until")) -> Period:
    """The period from the user's dates (None or "" = default): `until` defaults to today, `since` to
    DEFAULT_DAYS - 1 days before `until`; `names` are how the caller calls the two (e.g. "--since")."""
    last = parse_day(until, names[1]) if until else min(today, LATEST_DAY)
    first = parse_day(since, names[0]) if since else max(last - timedelta(days=DEFAULT_DAYS - 1), EARLIEST_DAY)
    if first > last:
        raise BadPeriod(f"{names[0]} {first} is after {names[1]} {last}: the period would be empty")
    return Period(first, last, zone)


def figures(session: Session, since: datetime, until: datetime) -> list[TicketFigures]:
    """The tickets created in [since, until), oldest first, with their first responder's name and CSAT: one query."""
    rows = session.execute(
        select(Ticket.id, Ticket.queue, Ticket.created_at, Ticket.first_response_seconds, Ticket.handle_seconds,
               Ticket.resolution_seconds, Ticket.first_response_breached, Ticket.resolution_breached,
               Ticket.reply_count, Ticket.reopen_count, Operator.name, Operator.username,
               Csat.rating.label("csat_rating"))
        .outerjoin(Operator, Operator.id == Ticket.first_responder_id)
        .outerjoin(Csat, Csat.ticket_id == Ticket.id)  # the customer's survey answer, if any
        .where(Ticket.created_at >= since, Ticket.created_at < until, Ticket.status != SPAM)
        .order_by(Ticket.created_at, Ticket.id)
    ).all()
    return [
        TicketFigures(
            ticket_id=row.id,
            queue=row.queue,
            operator=(row.name or row.username) if row.username is not None else None,
            created_at=row.created_at,
            first_response_seconds=row.first_response_seconds,
            handle_seconds=row.handle_seconds or 0.0,
            resolution_seconds=row.resolution_seconds,
            # The columns say "breached"; the report counts the deadlines met. None (no SLA, no verdict yet) stays.
            sla_first_response_met=_met(row.first_response_breached),
            sla_resolution_met=_met(row.resolution_breached),
            replies_before_resolution=row.reply_count or 0,
            reopened=(row.reopen_count or 0) > 0,
            csat=row.csat_rating,
        )
        for row in rows
    ]


def _met(breached: bool | None) -> bool | None:
    return None if breached is None else not breached


def report(session: Session, period: Period) -> Report:
    """The report over the tickets created in `period`, days counted in its time zone."""
    return build_report(figures(session, *period.bounds()), timezone=period.timezone)
