"""Ingest use case: raw bytes from a mailbox become a stored message on a new or existing ticket, or quarantine."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailticket import threads
from mailticket.config import Settings
from mailticket.db.models import (
    IN,
    OPEN,
    RESOLVED,
    Attachment,
    Customer,
    Message,
    Participant,
    Quarantine,
    Ticket,
)
from mailticket.mail.loops import classify
from mailticket.mail.parse import Inbound, parse
from mailticket.service.history import record

# Defects after which the message body cannot be trusted to be what the sender wrote.
FATAL_DEFECTS = ("StartBoundaryNotFoundDefect", "MultipartInvariantViolationDefect")
# How many referenced ids are looked up; the newest ones decide the thread.
MAX_REFERENCES = 20
CREATED, APPENDED, DUPLICATE, QUARANTINED = "created", "appended", "duplicate", "quarantined"


@dataclass
class Counts:
    """What one polling pass did (SPEC §3 poll-once)."""

    fetched: int = 0
    created: int = 0
    appended: int = 0
    duplicates: int = 0
    autoreplies: int = 0
    quarantined: int = 0

    def add(self, other: "Counts") -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True)
class Outcome:
    result: str  # CREATED, APPENDED, DUPLICATE or QUARANTINED
    ticket_id: int | None = None
    reason: str = ""
    autoreply: bool = False


@dataclass
class SessionLookup:
    """threads.Lookup over a session; the ids a message names are fetched in one query."""

    session: Session
    _known: dict[str, int] = field(default_factory=dict)

    def prefetch(self, ids: list[str]) -> None:
        if ids:
            rows = self.session.execute(
                select(Message.message_id, Message.ticket_id).where(Message.message_id.in_(ids))
            )
            self._known = {message_id: ticket_id for message_id, ticket_id in rows}

    def message_exists(self, message_id: str) -> bool:
        return message_id in self._known

    def ticket_of_message(self, message_id: str) -> int | None:
        return self._known.get(message_id)

    def takes_part(self, ticket_id: int, address: str) -> bool:
        return self.session.get(Participant, (ticket_id, address)) is not None

    def ticket_by_subject(self, address: str, subject_key: str, since: datetime) -> int | None:
        return self.session.scalar(
            select(Ticket.id)
            .join(Customer, Customer.id == Ticket.customer_id)
            .where(Customer.address == address, Ticket.subject_key == subject_key, Ticket.last_message_at >= since)
            .order_by(Ticket.last_message_at.desc())
            .limit(1)
        )


def unusable(raw: bytes, msg: Inbound | None, settings: Settings) -> str | None:
    """Why a message must be quarantined instead of stored, or None."""
    limit = settings.limits.max_message_bytes
    if len(raw) > limit:
        return f"message of {len(raw)} bytes exceeds limits.max_message_bytes ({limit})"
    if msg is None:
        return None
    if not msg.headers or not (msg.from_addr or msg.header("message-id") or msg.header("date")):
        return "no usable header fields (no From, Message-ID or Date): not an e-mail message"
    fatal = [d for d in msg.defects if any(name in d for name in FATAL_DEFECTS)]
    if fatal:
        return "broken MIME structure: " + "; ".join(fatal)
    return None


def quarantine(
    session: Session, raw: bytes, reason: str, *, mailbox: str | None, folder: str | None, uid: int | None,
    received_at: datetime | None, now: datetime,
) -> None:
    """Keeps the bytes with the reason; the same bytes quarantined again are stored once."""
    values = dict(
        sha256=hashlib.sha256(raw).hexdigest(), mailbox=mailbox, folder=folder, uid=uid, reason=reason,
        size=len(raw), received_at=received_at, created_at=now, raw=raw,
    )
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(insert(Quarantine).values(**values).on_conflict_do_nothing(index_elements=["sha256"]))


def ingest(
    session: Session, raw: bytes, *, settings: Settings, received_at: datetime, now: datetime,
    mailbox: str | None = None, folder: str | None = None, uid: int | None = None, queue: str = "default",
) -> Outcome:
    """Stores one fetched message. Any failure quarantines it; the caller's transaction stays usable."""
    where = dict(mailbox=mailbox, folder=folder, uid=uid, received_at=received_at, now=now)
    reason = unusable(raw, None, settings)
    if reason is None:
        msg = parse(raw)
        reason = unusable(raw, msg, settings)
    if reason is not None:
        quarantine(session, raw, reason, **where)
        return Outcome(QUARANTINED, reason=reason)
    try:
        # A savepoint per message: one that the database refuses must not undo the rest of the batch.
        with session.begin_nested():
            return _store(session, raw, msg, settings=settings, received_at=received_at, now=now,
                          mailbox=mailbox, queue=queue)
    except Exception as exc:  # noqa: BLE001 - whatever went wrong, the message is kept, not lost
        reason = f"could not be stored: {type(exc).__name__}: {exc}"[:2000]
        quarantine(session, raw, reason, **where)
        return Outcome(QUARANTINED, reason=reason)


def _store(
    session: Session, raw: bytes, msg: Inbound, *, settings: Settings, received_at: datetime, now: datetime,
    mailbox: str | None, queue: str,
) -> Outcome:
    lookup = SessionLookup(session)
    lookup.prefetch([msg.message_id, *msg.in_reply_to, *msg.references[-MAX_REFERENCES:]])
    tickets = settings.tickets
    tag = threads.TicketTag(tickets.subject_tag)
    found = threads.match(
        message_id=msg.message_id, in_reply_to=msg.in_reply_to, references=msg.references,
        from_addr=msg.from_addr, subject=msg.subject, lookup=lookup, tag=tag,
        now=received_at, subject_threading_days=tickets.subject_threading_days,
    )
    if found.rule == threads.DUPLICATE:
        return Outcome(DUPLICATE)
    loop = classify(msg, settings.own_addresses)
    ticket = session.get(Ticket, found.ticket_id) if found.ticket_id is not None else None
    matched_by = found.rule
    result = APPENDED
    if ticket is not None:
        action = threads.follow_up(ticket.status, ticket.resolved_at, now, tickets.reopen_days)
        if action == "reopen":
            ticket.status, ticket.resolved_at = OPEN, None
            record(session, ticket.id, "reopened", now, detail=f"new mail from {msg.from_addr}")
        elif action == "new-linked":
            old = ticket
            ticket = _new_ticket(session, msg, received_at=received_at, now=now, mailbox=mailbox, queue=old.queue,
                                 tag=tag)
            ticket.follows_ticket_id = old.id
            record(session, ticket.id, "follow-up", now, detail=f"follows resolved ticket {old.id}")
            matched_by, result = threads.NEW, CREATED
    if ticket is None:
        ticket = _new_ticket(session, msg, received_at=received_at, now=now, mailbox=mailbox, queue=queue, tag=tag)
        result = CREATED
    _add_message(session, ticket, raw, msg, matched_by=matched_by, loop=loop, received_at=received_at,
                 mailbox=mailbox, max_attachment=settings.limits.max_attachment_bytes)
    ticket.updated_at = now
    ticket.last_message_at = max(ticket.last_message_at, received_at)
    # Auto-replies and bulk mail on a ticket ask nothing of the operators, so they start no waiting clock.
    if (loop is None or result == CREATED) and ticket.waiting_since is None:
        ticket.waiting_since = received_at
    if loop is None and ticket.status != RESOLVED and ticket.status != OPEN and result == APPENDED:
        # The customer answered a ticket pending on them: it needs the operators again.
        ticket.status = OPEN
        record(session, ticket.id, "status", now, detail="pending -> open (customer answered)")
    return Outcome(result, ticket.id, autoreply=loop is not None)


def _new_ticket(
    session: Session, msg: Inbound, *, received_at: datetime, now: datetime, mailbox: str | None, queue: str,
    tag: threads.TicketTag,
) -> Ticket:
    address = msg.from_addr or "unknown@invalid"
    customer = session.scalar(select(Customer).where(Customer.address == address))
    if customer is None:
        customer = Customer(address=address, name=msg.from_name, notes="", created_at=now)
        session.add(customer)
    elif not customer.name and msg.from_name:
        customer.name = msg.from_name
    ticket = Ticket(
        subject=msg.subject, subject_key=threads.subject_key(msg.subject, tag=tag), status=OPEN, queue=queue,
        priority="normal", mailbox=mailbox, customer=customer, created_at=received_at, updated_at=now,
        last_message_at=received_at, waiting_since=None, handle_seconds=0.0,
    )
    session.add(ticket)
    session.flush()
    record(session, ticket.id, "created", now, detail=f"from {address}")
    return ticket


def _add_message(
    session: Session, ticket: Ticket, raw: bytes, msg: Inbound, *, matched_by: str, loop: str | None,
    received_at: datetime, mailbox: str | None, max_attachment: int,
) -> Message:
    message = Message(
        ticket_id=ticket.id, direction=IN, message_id=msg.message_id, in_reply_to=" ".join(msg.in_reply_to),
        references=" ".join(msg.references), from_addr=msg.from_addr, from_name=_clean(msg.from_name)[:200],
        to_addrs=", ".join(msg.to_addrs), subject=_clean(msg.subject), date=msg.date, received_at=received_at,
        text=_clean(msg.text), html=_clean(msg.html) if msg.html is not None else None, matched_by=matched_by,
        loop=loop, mailbox=mailbox, defects="\n".join(msg.defects), raw=raw,
    )
    for part in msg.attachments:
        # An oversized attachment stays readable in the raw message; the table keeps its name and size.
        data = part.data if len(part.data) <= max_attachment else b""
        message.attachments.append(Attachment(
            filename=_clean(part.filename)[:255] or "attachment", content_type=part.content_type[:255],
            size=len(part.data), content_id=part.content_id, inline=part.inline, data=data,
        ))
    session.add(message)
    if msg.from_addr and session.get(Participant, (ticket.id, msg.from_addr)) is None:
        session.add(Participant(ticket_id=ticket.id, address=msg.from_addr))
    return message


def _clean(text: str) -> str:
    # PostgreSQL text cannot hold NUL; mail sometimes does.
    return text.replace("\x00", "")
