"""Quarantined mail an admin deals with: listed, shown, released into a ticket (read again with today's code and
limits), or deleted. Nothing leaves quarantine but by one of these."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, undefer

from mailticket.config import Settings
from mailticket.db.models import Quarantine
from mailticket.service.errors import ActionError
from mailticket.service.ingest import ingest_batch
from mailticket.service.intake import QUARANTINED, Fetched, Outcome
from mailticket.service.undelivered import apply_bounces

# Headers shown of a quarantined message: enough to tell whose it is, never its content.
SHOWN_HEADER_BYTES = 16 * 1024


@dataclass(frozen=True)
class Released:
    """What releasing did: the ticket it went to, or the reason it is still quarantined."""

    outcome: Outcome

    @property
    def still_quarantined(self) -> bool:
        return self.outcome.result == QUARANTINED


def entries(session: Session) -> list[Quarantine]:
    """Every quarantined message, newest first (without its bytes)."""
    return list(session.scalars(select(Quarantine).order_by(Quarantine.created_at.desc(), Quarantine.id.desc())))


def waiting(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Quarantine))


def entry(session: Session, entry_id: int) -> Quarantine:
    found = session.scalar(select(Quarantine).where(Quarantine.id == entry_id).options(undefer(Quarantine.raw)))
    if found is None:
        raise ActionError(f"nothing in quarantine has the number {entry_id}")
    return found


def header_block(raw: bytes) -> str:
    """The message's header block as text, for a look at whose it is."""
    head = raw[:SHOWN_HEADER_BYTES]
    end = min((i for i in (head.find(b"\r\n\r\n"), head.find(b"\n\n")) if i >= 0), default=len(head))
    return head[:end].decode("utf-8", "replace")


def release(session: Session, entry_id: int, settings: Settings, now: datetime) -> Released:
    """Reads the message again with today's code and limits: into a ticket if it passes (the entry goes), else it
    stays in quarantine with today's reason."""
    found = entry(session, entry_id)
    item = Fetched(found.raw, found.received_at or found.created_at, found.uid,
                   found.size if found.size > len(found.raw) else None)
    box = next((b for b in settings.mailboxes if b.name == found.mailbox), None)
    [outcome] = ingest_batch(session, [item], settings=settings, now=now, mailbox=found.mailbox, folder=found.folder,
                             queue=box.queue if box else "default")
    if outcome.result == QUARANTINED:
        session.execute(update(Quarantine).where(Quarantine.id == entry_id).values(reason=outcome.reason))
    else:
        session.execute(delete(Quarantine).where(Quarantine.id == entry_id))
        if outcome.failure is not None:
            apply_bounces(session, [outcome.failure], now, settings)
    return Released(outcome)


def remove(session: Session, entry_id: int) -> None:
    """Deletes the entry and its bytes for good (the admin decided it is worth nothing)."""
    entry(session, entry_id)
    session.execute(delete(Quarantine).where(Quarantine.id == entry_id))
