"""Marking a ticket as spam (its sender or domain blocked, if the operator says so) and as not spam (back in the
queue, the block lifted): the status change goes through service/status.py like any other."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailticket.config import Settings
from mailticket.db.models import IN, OPEN, SPAM, Message, Operator
from mailticket.service import blocks, sla
from mailticket.service.errors import ActionError
from mailticket.service.history import record
from mailticket.service.status import change_status
from mailticket.service.tickets import get_ticket

# What "Mark as spam" may block along: nothing, the sender's address, or the sender's whole domain.
BLOCK_CHOICES = ("", "sender", "domain")


def mark_spam(session: Session, ticket_id: int, operator: Operator, *, settings: Settings, now: datetime,
              block: str = "") -> str | None:
    """The ticket goes to Spam, out of every queue; returns what was blocked with it (None: nothing)."""
    if block not in BLOCK_CHOICES:
        raise ActionError(f"block must be one of sender, domain or nothing, not {block!r}")
    ticket = get_ticket(session, ticket_id)
    change_status(session, ticket_id, SPAM, actor=operator, at=now, settings=settings, reason="marked as spam",
                  notify_customer=False)
    ticket.waiting_since = None
    sender = ticket.customer.address
    if not block or "@" not in sender:
        return None
    pattern = blocks.block(session, sender if block == "sender" else sender.rpartition("@")[2],
                           by=operator.username, now=now)
    record(session, ticket_id, "blocked", now, operator, f"mail from {pattern} goes to Spam")
    return pattern


def not_spam(session: Session, ticket_id: int, operator: Operator, *, settings: Settings, now: datetime) -> list[str]:
    """The ticket is back in the queue, waiting since the customer's oldest message, with the SLA a new ticket of
    theirs would get; the blocks that caught the sender are lifted. Returns the blocks lifted."""
    ticket = get_ticket(session, ticket_id)
    if ticket.status != SPAM:
        raise ActionError("the ticket is not in Spam")
    change_status(session, ticket_id, OPEN, actor=operator, at=now, settings=settings, reason="not spam")
    oldest = session.scalar(select(func.min(Message.received_at)).where(
        Message.ticket_id == ticket_id, Message.direction == IN, Message.loop.is_(None)))
    ticket.waiting_since = oldest
    if ticket.sla_name is None:
        columns = sla.new_ticket_columns(settings.sla, sla.calendar_for(settings), queue=ticket.queue,
                                         priority=ticket.priority, customer=ticket.customer.address,
                                         created_at=ticket.created_at)
        for name, value in columns.items():
            setattr(ticket, name, value)
    lifted = []
    while (pattern := blocks.matching(blocks.patterns(session), ticket.customer.address)) is not None:
        blocks.unblock(session, pattern)
        lifted.append(pattern)
        record(session, ticket_id, "unblocked", now, operator, f"mail from {pattern} is read again")
    return lifted
