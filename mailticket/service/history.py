"""The ticket's history: one place that writes who did what, when."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert

from sqlalchemy.orm import Session

from mailticket.db.models import Event, Operator

INSERT_EVENT = insert(Event)


def record(session: Session, ticket_id: int, kind: str, at: datetime, actor: Operator | str | None = None,
           detail: str = "") -> None:
    name = actor.username if isinstance(actor, Operator) else actor
    session.connection().execute(INSERT_EVENT, dict(ticket_id=ticket_id, at=at, kind=kind, actor=name, detail=detail))
