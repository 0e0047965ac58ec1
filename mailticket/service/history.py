"""The ticket's history: one place that writes who did what, when."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select

from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from mailticket.db.models import Event, Operator

INSERT_EVENT = insert(Event)
NEWEST = select(Event.id).order_by(Event.id.desc()).limit(1)


def record(session: Session, ticket_id: int, kind: str, at: datetime, actor: Operator | str | None = None,
           detail: str = "") -> None:
    name = actor.username if isinstance(actor, Operator) else actor
    session.connection().execute(INSERT_EVENT, dict(ticket_id=ticket_id, at=at, kind=kind, actor=name, detail=detail))


def newest_id(db: Session | Connection) -> int:
    """The id of the newest history row (0 before any): where a live page's change stream starts (web/live.py)."""
    return db.execute(NEWEST).scalar() or 0
