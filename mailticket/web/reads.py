"""The reads behind the ticket, customer and admin pages: a fixed, small number of queries per page."""

from __future__ import annotations

from base64 import b64encode
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, undefer

from mailticket.claims import ClaimView
from mailticket.db.models import NOTE, Attachment, Claim, Customer, Event, Message, Operator, Outbox, Ticket
from mailticket.db.store import db_now
from mailticket.service.claims import read_claim
from mailticket.service.tickets import TicketNotFound

# How many of a customer's tickets a page lists.
CUSTOMER_TICKETS = 100
# How many internal notes of a customer's tickets the customer page shows, newest first.
CUSTOMER_NOTES = 50
# Inline images (cid: links in HTML mail) shown in the message, at most this big each; a bigger one stays a download.
MAX_INLINE_IMAGE_BYTES = 1024 * 1024
# Raster images only: a browser shows these and nothing else from them.
INLINE_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")


@dataclass(frozen=True)
class TicketPage:
    ticket: Ticket
    messages: list[Message]
    # Outbox state of our replies, by message row id: queued, sending, sent or failed.
    delivery: dict[int, str]
    events: list[Event]
    claim: ClaimView | None
    other_tickets: list[Ticket]
    # The clock claims are judged by (the database's on PostgreSQL).
    claim_now: datetime
    # The images the HTML of each message links as cid:, by message row id: {Content-ID: data: URL}.
    images: dict[int, dict[str, str]]

    def live_claim(self) -> ClaimView | None:
        return self.claim if self.claim is not None and self.claim.live(self.claim_now) else None

    def held_by(self, operator_id: int) -> bool:
        return self.claim is not None and self.claim.held_by(operator_id, self.claim_now)


def ticket_page(session: Session, ticket_id: int) -> TicketPage:
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        raise TicketNotFound(ticket_id)
    messages = list(session.scalars(
        select(Message).where(Message.ticket_id == ticket_id)
        .order_by(Message.received_at, Message.id).options(undefer(Message.html))
    ))
    delivery = dict(session.execute(
        select(Outbox.message_id, Outbox.status).where(Outbox.ticket_id == ticket_id)
    ).all())
    events = list(session.scalars(select(Event).where(Event.ticket_id == ticket_id).order_by(Event.at, Event.id)))
    return TicketPage(
        ticket=ticket, messages=messages, delivery=delivery, events=events, claim=read_claim(session, ticket_id),
        other_tickets=customer_tickets(session, ticket.customer_id, but=ticket_id), claim_now=db_now(session),
        images=inline_images(session, ticket_id),
    )


def inline_images(session: Session, ticket_id: int) -> dict[int, dict[str, str]]:
    """The ticket's inline images as data: URLs: the sandboxed HTML view can load nothing else."""
    rows = session.execute(
        select(Attachment.message_id, Attachment.content_id, Attachment.content_type, Attachment.data)
        .join(Message, Message.id == Attachment.message_id)
        .where(Message.ticket_id == ticket_id, Attachment.content_id.is_not(None),
               Attachment.content_type.in_(INLINE_IMAGE_TYPES), Attachment.size <= MAX_INLINE_IMAGE_BYTES))
    images: dict[int, dict[str, str]] = {}
    for message_id, content_id, content_type, data in rows:
        images.setdefault(message_id, {})[content_id] = f"data:{content_type};base64,{b64encode(data).decode()}"
    return images


def customer_tickets(session: Session, customer_id: int, *, but: int | None = None) -> list[Ticket]:
    query = select(Ticket).where(Ticket.customer_id == customer_id)
    if but is not None:
        query = query.where(Ticket.id != but)
    return list(session.scalars(query.order_by(Ticket.created_at.desc(), Ticket.id.desc()).limit(CUSTOMER_TICKETS)))


def customer(session: Session, customer_id: int) -> Customer | None:
    return session.get(Customer, customer_id)


def attachment(session: Session, attachment_id: int) -> Attachment | None:
    return session.scalar(select(Attachment).where(Attachment.id == attachment_id).options(undefer(Attachment.data)))


@dataclass(frozen=True)
class LiveClaim:
    ticket_id: int
    subject: str
    holder: str
    claimed_at: datetime | None
    expires_at: datetime


def live_claims(session: Session) -> list[LiveClaim]:
    now = db_now(session)
    rows = session.execute(
        select(Claim.ticket_id, Ticket.subject, Operator.name, Operator.username, Claim.claimed_at, Claim.expires_at)
        .join(Ticket, Ticket.id == Claim.ticket_id)
        .join(Operator, Operator.id == Claim.operator_id)
        .where(Claim.expires_at > now)
        .order_by(Claim.expires_at)
    ).all()
    return [LiveClaim(r.ticket_id, r.subject, r.name or r.username, r.claimed_at, r.expires_at) for r in rows]


def customer_ticket_notes(session: Session, customer_id: int) -> list[Message]:
    """The internal notes operators wrote on this customer's tickets, newest first."""
    return list(session.scalars(
        select(Message).join(Ticket, Ticket.id == Message.ticket_id)
        .where(Ticket.customer_id == customer_id, Message.direction == NOTE)
        .order_by(Message.received_at.desc(), Message.id.desc()).limit(CUSTOMER_NOTES)
    ))
