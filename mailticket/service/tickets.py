"""Read side of tickets: the list and the SPEC §9 shape shared by the CLI, the web pages and the API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from mailticket.db.models import Claim, Customer, Message, Operator, Ticket
from mailticket.db.store import db_now
from mailticket.service import search


class TicketNotFound(LookupError):
    """No ticket with this number (a 404 for the web and the API)."""


def get_ticket(session: Session, ticket_id: int) -> Ticket:
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        raise TicketNotFound(ticket_id)
    return ticket


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def find_tickets(session: Session, *, status: str | None = None, q: str | None = None, after: int = 0,
                 limit: int = 500) -> list[dict[str, Any]]:
    """Ticket summaries in ticket order, each with its live claim; `after` pages by the last id seen."""
    query = (select(Ticket).join(Customer, Customer.id == Ticket.customer_id).where(Ticket.id > after)
             .order_by(Ticket.id).limit(limit))
    if status:
        query = query.where(Ticket.status == status)
    if q:
        # Full-text over subject, messages, addresses and names, plus the ticket number (service/search.py);
        # the list keeps its ticket order and `after` paging.
        query = query.where(search.matching_ticket_ids(session, q))
    tickets = [ticket_summary(t) for t in session.scalars(query)]
    claims = live_claims(session, [t["id"] for t in tickets])
    return [{**t, "claim": claims.get(t["id"])} for t in tickets]


def live_claims(session: Session, ticket_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Holder and expiry of the live claims among these tickets, in one query."""
    if not ticket_ids:
        return {}
    rows = session.execute(
        select(Claim.ticket_id, Operator.name, Operator.username, Claim.expires_at)
        .join(Operator, Operator.id == Claim.operator_id)
        .where(Claim.ticket_id.in_(ticket_ids), Claim.expires_at > db_now(session))
    )
    return {row.ticket_id: {"holder": row.name or row.username, "expires_at": iso(row.expires_at)} for row in rows}


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
    detail["claim"] = live_claims(session, [ticket_id]).get(ticket_id)
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


def search_tickets(session: Session, q: str, *, limit: int = 50, status: str | None = None) -> list[dict[str, Any]]:
    """Ticket summaries matching `q`, newest first (by the newest matching message), each with a snippet."""
    q = (q or "").replace("\x00", "").strip()
    if not q:
        return []
    newest = search.newest_matches(session, q, limit, status)
    direct = [t for t in search.direct_ticket_ids(session, q) if t not in newest]
    tickets = {t.id: t for t in session.scalars(select(Ticket).where(Ticket.id.in_([*newest, *direct])))}
    if status is not None:
        direct = [t for t in direct if t in tickets and tickets[t].status == status]
    texts = dict(session.execute(select(Message.id, Message.text).where(Message.id.in_(newest.values()))).all())
    # A ticket asked for by number or address comes first: it is what the operator typed.
    order = sorted(direct, reverse=True) + list(newest)
    words = [w for term in search.terms(q) for w in term]
    results = []
    for ticket_id in order[:limit]:
        if ticket_id not in tickets:
            continue  # removed between the two reads
        summary = ticket_summary(tickets[ticket_id])
        summary["snippet"] = search.snippet(texts.get(newest.get(ticket_id), ""), words)
        results.append(summary)
    claims = live_claims(session, [r["id"] for r in results])
    return [{**r, "claim": claims.get(r["id"])} for r in results]
