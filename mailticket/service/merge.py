"""Merge use case: an admin folds a duplicate ticket into another; its mail, notes, history and times move along.

Later mail naming the duplicate's Message-IDs finds the moved messages in the survivor; mail with the
duplicate's tag follows `tickets.merged_into_id` (see service/ingest.py).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from mailticket import timing
from mailticket.db.models import RESOLVED, Csat, Event, Message, Operator, Outbox, Participant, Ticket
from mailticket.config import Settings
from mailticket.service.status import change_status
from mailticket.service.claims import END, only_the_holder, read_claim
from mailticket.service.tickets import TicketNotFound
from mailticket.service.history import record

MERGED = "merged"


class MergeError(ValueError):
    """A refused merge, with the reason in words for the admin."""


def merge(session: Session, duplicate_id: int, into_id: int, admin: Operator, now: datetime,
          settings: Settings) -> Ticket:
    """Moves everything of ticket `duplicate_id` into ticket `into_id` and resolves the duplicate; returns the survivor.

    Runs in the caller's transaction, so that a refusal half-way leaves nothing changed.
    """
    if not admin.is_admin:
        raise MergeError("only an admin may merge tickets")
    if duplicate_id == into_id:
        raise MergeError(f"ticket #{duplicate_id} cannot be merged into itself")
    duplicate, survivor = _locked_pair(session, duplicate_id, into_id)
    if duplicate.merged_into_id is not None:
        raise MergeError(f"ticket #{duplicate_id} was already merged into #{duplicate.merged_into_id}")
    if survivor.merged_into_id is not None:
        raise MergeError(f"ticket #{into_id} was merged into #{survivor.merged_into_id}; merge into that one")
    for ticket_id in (duplicate_id, into_id):
        only_the_holder(session, ticket_id, admin, now)
    # The admin's own claim on the duplicate ends here; the survivor's stays as it is.
    claim = read_claim(session, duplicate_id)
    if claim is not None and claim.holder_id is not None:
        session.connection().execute(END, dict(t=duplicate_id, f=claim.fence))

    conn = session.connection()
    for model in (Message, Event, Outbox):
        conn.execute(update(model).where(model.ticket_id == duplicate_id).values(ticket_id=into_id))
    _move_participants(session, duplicate_id, into_id)
    _move_csat(session, duplicate_id, into_id)
    _fold_times(duplicate, survivor)
    survivor.updated_at = now

    # Resolved as any ticket is (its SLA clocks stop), but its customer is told nothing: the survivor goes on.
    change_status(session, duplicate_id, RESOLVED, actor=admin, at=now, settings=settings, reason="merged",
                  notify_customer=False)
    duplicate.merged_into_id = into_id
    duplicate.waiting_since = None
    duplicate.updated_at = now
    record(session, duplicate_id, MERGED, now, admin, f"merged into #{into_id}")
    record(session, into_id, MERGED, now, admin, f"#{duplicate_id} merged into this ticket")
    session.flush()
    return survivor


def _locked_pair(session: Session, duplicate_id: int, into_id: int) -> tuple[Ticket, Ticket]:
    # Locked in id order, so that two admins merging the same pair both ways cannot deadlock; SQLite's
    # write transactions (BEGIN IMMEDIATE) are serialised already.
    rows = session.scalars(
        select(Ticket).where(Ticket.id.in_((duplicate_id, into_id))).order_by(Ticket.id)
        .with_for_update(of=Ticket).execution_options(populate_existing=True)
    ).unique().all()
    found = {t.id: t for t in rows}
    for ticket_id in (duplicate_id, into_id):
        if ticket_id not in found:
            raise TicketNotFound(ticket_id)
    return found[duplicate_id], found[into_id]


def _move_participants(session: Session, duplicate_id: int, into_id: int) -> None:
    conn = session.connection()
    moving = set(conn.scalars(select(Participant.address).where(Participant.ticket_id == duplicate_id)))
    there = set(conn.scalars(select(Participant.address).where(Participant.ticket_id == into_id)))
    if moving - there:
        conn.execute(Participant.__table__.insert(),
                     [dict(ticket_id=into_id, address=a) for a in sorted(moving - there)])
    conn.execute(delete(Participant).where(Participant.ticket_id == duplicate_id))


def _move_csat(session: Session, duplicate_id: int, into_id: int) -> None:
    """One rating per ticket: the duplicate's moves over, and when both have one the later answer stays."""
    moving, there = session.get(Csat, duplicate_id), session.get(Csat, into_id)
    if moving is None:
        return
    if there is None or moving.answered_at > there.answered_at:
        values = dict(rating=moving.rating, comment=moving.comment, answered_at=moving.answered_at)
        session.delete(moving)
        session.flush()
        if there is None:
            session.add(Csat(ticket_id=into_id, **values))
        else:
            for name, value in values.items():
                setattr(there, name, value)
    else:
        session.delete(moving)


def _fold_times(duplicate: Ticket, survivor: Ticket) -> None:
    """Handle time adds up; the earliest start and the earliest first response are the survivor's now."""
    survivor.handle_seconds = (survivor.handle_seconds or 0.0) + (duplicate.handle_seconds or 0.0)
    duplicate.handle_seconds = 0.0
    survivor.reply_count = (survivor.reply_count or 0) + (duplicate.reply_count or 0)
    survivor.created_at = min(survivor.created_at, duplicate.created_at)
    survivor.last_message_at = max(survivor.last_message_at, duplicate.last_message_at)
    waits = [w for w in (survivor.waiting_since, duplicate.waiting_since) if w is not None]
    if survivor.status != RESOLVED and waits:
        survivor.waiting_since = min(waits)
    firsts = [t for t in (survivor, duplicate) if t.first_response_at is not None]
    if firsts:
        first = min(firsts, key=lambda t: t.first_response_at)
        survivor.first_response_at = first.first_response_at
        survivor.first_responder_id = first.first_responder_id
        survivor.first_response_seconds = timing.first_response_seconds(survivor.created_at,
                                                                        survivor.first_response_at)
