"""Who is viewing which ticket: a row per open ticket page, refreshed while it stays open, aged out when not."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from mailticket.db.models import Operator, Presence

# An open page refreshes its row this often; a row not refreshed for AGE_OUT (a crashed process's) counts no more.
REFRESH = timedelta(seconds=15)
AGE_OUT = timedelta(seconds=45)


def enter(session: Session, page_id: str, ticket_id: int, operator_id: int, now: datetime) -> None:
    session.execute(insert(Presence).values(id=page_id, ticket_id=ticket_id, operator_id=operator_id, seen_at=now))


def touch(session: Session, page_ids: list[str], now: datetime) -> None:
    """The pages of one process are still open (one statement for all)."""
    session.execute(update(Presence).where(Presence.id.in_(page_ids)).values(seen_at=now))


def leave(session: Session, page_id: str, now: datetime) -> None:
    """The page closed; the rows nobody refreshed go too."""
    session.execute(delete(Presence).where((Presence.id == page_id) | (Presence.seen_at < now - AGE_OUT)))


def open_elsewhere(session: Session, ticket_id: int, operator_id: int, page_id: str, now: datetime) -> bool:
    """Whether the operator has the ticket open in another page (another tab, another browser) than `page_id`."""
    return session.scalar(select(Presence.id).where(
        Presence.ticket_id == ticket_id, Presence.operator_id == operator_id, Presence.id != page_id,
        Presence.seen_at >= now - AGE_OUT).limit(1)) is not None


def viewers(session: Session, now: datetime) -> dict[int, tuple[tuple[int, str], ...]]:
    """Each viewed ticket's viewers as (operator id, name), each operator once, in name order."""
    rows = session.execute(
        select(Presence.ticket_id, Operator.id, Operator.name, Operator.username).distinct()
        .join(Operator, Operator.id == Presence.operator_id)
        .where(Presence.seen_at >= now - AGE_OUT)).all()
    seen: dict[int, set[tuple[int, str]]] = {}
    for ticket_id, operator_id, name, username in rows:
        seen.setdefault(ticket_id, set()).add((operator_id, name or username))
    return {ticket_id: tuple(sorted(people, key=lambda p: (p[1].casefold(), p[0])))
            for ticket_id, people in seen.items()}
