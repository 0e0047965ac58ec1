"""Operator actions on a ticket: reply (fenced by the claim), internal note, status, priority, queue, customer notes."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailticket.config import Settings
from mailticket.config_values import PRIORITIES
from mailticket.db.models import IN, NOTE, STATUSES, Attachment, Customer, Message, Operator, Ticket
from mailticket.mail import address, compose
from mailticket.db.store import db_now
from mailticket.service.claims import only_the_holder, take_for_reply
from mailticket.service.tickets import get_ticket
from mailticket.service.history import record
from mailticket.service import drafts, outbound
from mailticket.service.errors import ActionError
from mailticket.service.recipients import Recipients, for_reply
from mailticket.service.status import change_status
from mailticket.threads import TicketTag

MAX_BODY_CHARS = 100_000
# A MIME type as "type/subtype"; anything else is sent and stored as application/octet-stream.
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*")


def reply(
    session: Session, settings: Settings, ticket_id: int, operator: Operator, body: str, claim_token: str | None,
    *, keep_claim: bool = False, status: str | None = None, now: datetime | None = None,
    attachments: Sequence[tuple[str, str, bytes]] = (), recipients: Recipients | None = None,
    seen_message_id: int | None = None, confirm_newer: bool = False,
) -> compose.Outgoing:
    """Queues a reply to the customer; refused with ClaimLost unless the live claim is held with this token.

    `attachments` are (filename, content type, bytes): sent with the mail and kept as Attachment rows.
    `recipients` are To and Cc as the operator chose them (see service/recipients.py); by default the reply goes
    to the Reply-To of the customer's newest message, else its From.
    `seen_message_id` is the newest message the operator saw when writing: a customer's message newer than it
    holds the reply back (NewerMessage) unless `confirm_newer`, so that nobody answers without having read it.
    Returns the composed mail (its Message-ID is the reply's).
    """
    body = body.replace("\x00", "")
    if not body.strip():
        raise ActionError("the reply is empty")
    if len(body) > MAX_BODY_CHARS:
        raise ActionError(f"the reply is longer than {MAX_BODY_CHARS} characters")
    parts = [clean_attachment(*part) for part in attachments]
    limit = settings.limits.max_attachment_bytes
    if sum(len(data) for _, _, data in parts) > limit:
        raise ActionError(f"the attachments are too big: together at most {limit} bytes")
    if status is not None and status not in STATUSES:
        raise ActionError(f"unknown status {status!r}")
    now = now or db_now(session)
    ticket = get_ticket(session, ticket_id)
    if seen_message_id is not None and not confirm_newer:
        newer = newer_from_customer(session, ticket_id, seen_message_id)
        if newer:
            raise NewerMessage(newer)
    take_for_reply(session, ticket_id, operator, claim_token, keep=keep_claim, now=now)
    last_in = newest_from_customer(session, ticket_id)
    if recipients is None:
        recipients = for_reply(session, settings, ticket_id, to=None)
    address = settings.address_of(ticket.mailbox)
    references = (last_in.references.split() if last_in and last_in.references else [])
    try:
        outgoing = compose.build(
            from_address=address, from_name=settings.smtp.from_name, to=recipients.to, cc=recipients.cc,
            subject=compose.reply_subject(ticket.subject, TicketTag(settings.tickets.subject_tag).render(ticket.id)),
            body=body, date=now, ticket_id=ticket.id, in_reply_to=last_in.message_id if last_in else None,
            references=references, attachments=parts,
        )
    except ValueError as refused:  # the customer's address or a stored id that no header can carry
        raise ActionError(f"the reply cannot be written: {refused}") from None
    ids = outbound.enqueue(session, [outbound.Queued(ticket.id, outbound.REPLY, outgoing, ticket.mailbox,
                                                     shown_as=operator.display_name, operator_id=operator.id)], now)
    for filename, content_type, data in parts:
        session.add(Attachment(message_id=ids[outgoing.message_id], filename=filename, content_type=content_type,
                               size=len(data), data=data, inline=False))
    # The customer has an answer on its way; the ticket no longer waits on us.
    ticket.waiting_since = None
    ticket.updated_at = now
    record(session, ticket.id, "replied", now, operator, f"message {outgoing.message_id}")
    drafts.clear(session, ticket.id, operator.id)
    if not keep_claim:
        record(session, ticket.id, "released", now, operator, "after reply")
    if status is not None:
        change_status(session, ticket.id, status, actor=operator, at=now, settings=settings)
    return outgoing


class NewerMessage(ActionError):
    """The customer wrote again after the operator opened the reply form: read it first, then send again."""

    def __init__(self, newer: list[int]) -> None:
        super().__init__("the customer sent a new message while you were writing; read it, then send again")
        self.newer = newer


def newer_from_customer(session: Session, ticket_id: int, seen_message_id: int) -> list[int]:
    """The ids of the customer's messages (written by a person) after `seen_message_id`."""
    return list(session.scalars(
        select(Message.id).where(Message.ticket_id == ticket_id, Message.direction == IN, Message.loop.is_(None),
                                 Message.id > seen_message_id).order_by(Message.id)))


def newest_from_customer(session: Session, ticket_id: int) -> Message | None:
    """The newest inbound message that a person wrote (automatic mail answers nobody)."""
    return session.scalar(
        select(Message).where(Message.ticket_id == ticket_id, Message.direction == IN, Message.loop.is_(None))
        .order_by(Message.received_at.desc(), Message.id.desc()).limit(1))


def clean_attachment(filename: str, content_type: str, data: bytes) -> tuple[str, str, bytes]:
    """A name without folders or control characters (at most 255), and a plain "type/subtype"."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = address.BIDI_CONTROLS.sub("", address.CONTROL.sub("", name)).strip()
    content_type = (content_type or "").split(";", 1)[0].strip().lower()
    if not _CONTENT_TYPE.fullmatch(content_type) or len(content_type) > 255:
        content_type = "application/octet-stream"
    return (name[:255] or "attachment"), content_type, bytes(data)


def add_note(session: Session, ticket_id: int, operator: Operator, body: str, now: datetime | None = None) -> Message:
    """An internal note: never sent, never a response (SPEC §7)."""
    body = body.replace("\x00", "")
    if not body.strip():
        raise ActionError("the note is empty")
    now = now or db_now(session)
    ticket = get_ticket(session, ticket_id)
    note = Message(ticket_id=ticket.id, direction=NOTE, message_id=compose.new_message_id("note@mailticket.invalid"),
                   from_addr=operator.email or operator.username, from_name=operator.display_name,
                   subject="", received_at=now, date=now, text=body, operator_id=operator.id)
    session.add(note)
    record(session, ticket.id, "note", now, operator)
    return note


def set_field(session: Session, ticket_id: int, field: str, value: str, operator: Operator,
              now: datetime | None = None) -> Ticket:
    """Changes priority or queue."""
    value = value.strip()
    if field == "priority" and value not in PRIORITIES:
        raise ActionError(f"unknown priority {value!r}; use one of {', '.join(PRIORITIES)}")
    if field == "queue" and not (0 < len(value) <= 64):
        raise ActionError("a queue name has 1 to 64 characters")
    if field not in ("priority", "queue"):
        raise ActionError(f"cannot change {field!r}")
    now = now or db_now(session)
    ticket = get_ticket(session, ticket_id)
    only_the_holder(session, ticket_id, operator, now)
    old = getattr(ticket, field)
    if old != value:
        setattr(ticket, field, value)
        ticket.updated_at = now
        record(session, ticket.id, field, now, operator, f"{old} -> {value}")
    return ticket


def set_customer_notes(session: Session, customer_id: int, notes: str) -> Customer:
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise ActionError(f"no customer {customer_id}")
    customer.notes = notes.replace("\x00", "")[:MAX_BODY_CHARS]
    return customer
