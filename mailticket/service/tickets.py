"""Read side of tickets: the list and the SPEC §9 shape shared by the CLI, the web pages and the API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from mailticket.db.models import Message, Ticket


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def list_tickets(session: Session, *, status: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
    query = select(Ticket).order_by(Ticket.id)
    if status:
        query = query.where(Ticket.status == status)
    return [ticket_summary(t) for t in session.scalars(query.limit(limit))]


def ticket_summary(ticket: Ticket) -> dict[str, Any]:
    return {
        "id": ticket.id,
        "subject": ticket.subject,
        "status": ticket.status,
        "queue": ticket.queue,
        "priority": ticket.priority,
        "customer": ticket.customer.address,
        "created_at": iso(ticket.created_at),
        "last_message_at": iso(ticket.last_message_at),
        "waiting_since": iso(ticket.waiting_since),
        "first_response_at": iso(ticket.first_response_at),
        "first_response_seconds": ticket.first_response_seconds,
        "handle_seconds": ticket.handle_seconds,
        "resolved_at": iso(ticket.resolved_at),
        "follows_ticket": ticket.follows_ticket_id,
    }


def ticket_detail(session: Session, ticket_id: int) -> dict[str, Any] | None:
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        return None
    messages = session.scalars(
        select(Message).where(Message.ticket_id == ticket_id).order_by(Message.received_at, Message.id)
        .options(selectinload(Message.attachments))
    )
    detail = ticket_summary(ticket)
    detail["claim"] = None
    detail["messages"] = [message_dict(m) for m in messages]
    return detail


def message_dict(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "direction": message.direction,
        "message_id": message.message_id,
        "from": message.from_addr,
        "from_name": message.from_name,
        "to": message.to_addrs,
        "subject": message.subject,
        "date": iso(message.date or message.received_at),
        "received_at": iso(message.received_at),
        "text": message.text,
        "attachments": [
            {"id": a.id, "name": a.filename, "content_type": a.content_type, "size": a.size}
            for a in message.attachments
        ],
        "matched_by": message.matched_by,
        "autoreply": message.autoreply,
        "loop": message.loop,
    }
