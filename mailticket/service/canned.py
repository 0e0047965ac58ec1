"""Canned replies: the answers admins keep (title, body with placeholders), filled for one ticket's reply form."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailticket.db.models import CannedReply, Operator, Ticket

MAX_TITLE_CHARS = 200
MAX_BODY_CHARS = 100_000  # as a reply (actions.MAX_BODY_CHARS)
# The placeholders a body may hold; anything else in braces is left as written (it may be meant literally).
PLACEHOLDERS = ("{customer_name}", "{ticket_number}", "{operator_name}")


class CannedError(ValueError):
    """A refused change, with the reason in words."""


@dataclass(frozen=True)
class Filled:
    """A canned reply as the reply form offers it: its body with this ticket's placeholders filled."""

    id: int
    title: str
    body: str


def list_replies(session: Session) -> list[CannedReply]:
    return list(session.scalars(select(CannedReply).order_by(CannedReply.title, CannedReply.id)))


def get(session: Session, reply_id: int) -> CannedReply:
    reply = session.get(CannedReply, reply_id)
    if reply is None:
        raise CannedError(f"there is no canned reply {reply_id}")
    return reply


def save(session: Session, title: str, body: str, now: datetime, reply_id: int | None = None) -> CannedReply:
    """Adds a canned reply, or changes the one `reply_id` names; titles are unique."""
    title = " ".join(title.replace("\x00", "").split())
    body = body.replace("\x00", "").replace("\r\n", "\n")
    if not title:
        raise CannedError("the title is empty")
    if len(title) > MAX_TITLE_CHARS:
        raise CannedError(f"the title is longer than {MAX_TITLE_CHARS} characters")
    if not body.strip():
        raise CannedError("the text is empty")
    if len(body) > MAX_BODY_CHARS:
        raise CannedError(f"the text is longer than {MAX_BODY_CHARS} characters")
    same_title = session.scalar(select(CannedReply.id).where(CannedReply.title == title))
    if same_title is not None and same_title != reply_id:
        raise CannedError(f"another canned reply is already called {title!r}")
    if reply_id is None:
        reply = CannedReply(title=title, body=body, created_at=now, updated_at=now)
        session.add(reply)
    else:
        reply = get(session, reply_id)
        reply.title, reply.body, reply.updated_at = title, body, now
    session.flush()
    return reply


def delete(session: Session, reply_id: int) -> str:
    reply = get(session, reply_id)
    session.delete(reply)
    return reply.title


def fill(body: str, *, customer_name: str, ticket_number: str, operator_name: str) -> str:
    """The body with the known placeholders replaced (plain replacement: other braces stay as written)."""
    values = dict(zip(PLACEHOLDERS, (customer_name, ticket_number, operator_name)))
    for placeholder, value in values.items():
        body = body.replace(placeholder, value)
    return body


def for_ticket(session: Session, ticket: Ticket, operator: Operator) -> list[Filled]:
    """Every canned reply filled for this ticket's customer and this operator, by title."""
    customer = ticket.customer
    values = dict(customer_name=customer.name or customer.address, ticket_number=str(ticket.id),
                  operator_name=operator.display_name)
    return [Filled(r.id, r.title, fill(r.body, **values)) for r in list_replies(session)]
