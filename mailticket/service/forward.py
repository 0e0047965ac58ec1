"""Forwarding a ticket's conversation, with its attachments, to any address (a carrier, a colleague, the
marketplace): one mail through the outbox, kept on the ticket as an internal note, and in its history."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, undefer

from mailticket.config import Settings
from mailticket.db.models import NOTE, Attachment, Message, Operator
from mailticket.mail import compose
from mailticket.service import outbound
from mailticket.service.errors import ActionError
from mailticket.service.history import record
from mailticket.service.recipients import chosen, typed
from mailticket.service.tickets import get_ticket
from mailticket.threads import TicketTag

FORWARD = "forward"  # Outbox.kind
MAX_NOTE_CHARS = 10_000


def conversation(messages: list[Message]) -> str:
    """The customer's mail and our replies, oldest first, as plain text."""
    return "\n\n".join(f"On {m.received_at:%Y-%m-%d %H:%M} UTC, {m.from_name or m.from_addr} <{m.from_addr}> wrote:"
                       f"\n\n{m.text.strip()}" for m in messages)


def forward(session: Session, settings: Settings, ticket_id: int, operator: Operator, to_text: str, note: str,
            now: datetime) -> compose.Outgoing:
    """Queues the conversation to the addresses typed (checked one by one), with what the operator wrote above it
    and the attachments that fit `limits.max_attachment_bytes` (the others are named in the mail)."""
    recipients = chosen(typed(to_text, "To"), ())
    note = note.replace("\x00", "").strip()[:MAX_NOTE_CHARS]
    ticket = get_ticket(session, ticket_id)
    messages = list(session.scalars(select(Message).where(Message.ticket_id == ticket_id, Message.direction != NOTE)
                                    .order_by(Message.received_at, Message.id)))
    if not messages:
        raise ActionError("the ticket has no mail to forward")
    files = session.scalars(select(Attachment).where(Attachment.message_id.in_([m.id for m in messages]))
                            .order_by(Attachment.id).options(undefer(Attachment.data))).all()
    attached, left_out, room = [], [], settings.limits.max_attachment_bytes
    for part in files:
        if part.data and len(part.data) <= room:
            attached.append((part.filename, part.content_type, part.data))
            room -= len(part.data)
        else:
            left_out.append(part.filename)
    tag = TicketTag(settings.tickets.subject_tag).render(ticket.id)
    body = "\n\n".join(filter(None, (
        note, f"---------- The conversation of ticket {tag} ({ticket.customer.address}) ----------",
        conversation(messages),
        f"Attachments too big to forward, in the ticket: {', '.join(left_out)}" if left_out else "")))
    try:
        mail = compose.build(from_address=settings.address_of(ticket.mailbox), from_name=operator.display_name,
                             to=recipients.to, subject=f"Fwd: {ticket.subject or '(no subject)'} {tag}", body=body,
                             date=now, ticket_id=ticket.id, attachments=attached)
    except ValueError as refused:
        raise ActionError(f"the mail cannot be written: {refused}") from None
    outbound.enqueue(session, [outbound.Queued(ticket.id, FORWARD, mail, ticket.mailbox, shown_as=operator.display_name,
                                               operator_id=operator.id, direction=NOTE)], now)
    record(session, ticket.id, "forwarded", now, operator, f"message {mail.message_id} to {', '.join(recipients.to)}")
    return mail
