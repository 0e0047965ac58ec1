"""Ingest use case: raw bytes from a mailbox become a stored message on a new or existing ticket, or quarantine."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from mailticket import routing, threads
from mailticket.config import Settings
from mailticket.db.models import (
    IN,
    NOTE,
    OPEN,
    PENDING,
    SPAM,
    Attachment,
    Customer,
    CustomerAddress,
    Message,
    Participant,
    Event,
    Ticket,
)
from mailticket.db.store import insert_for
from mailticket.mail.loops import BOUNCE, bounced_message_ids, classify, delivery_failure
from mailticket.mail.parse import Inbound, parse
from mailticket.service.intake import APPENDED, CREATED, DUPLICATE, QUARANTINED, Fetched, Outcome
from mailticket.service.quarantine import oversize_note, quarantine, unusable
from mailticket.imap import OVERSIZE_HEAD_BYTES
from mailticket.mail import compose, spam
from mailticket.service import acks, blocks
from mailticket.service import sla
from mailticket.service.status import change_status

# How many referenced ids are looked up; the newest ones decide the thread.
MAX_REFERENCES = 20
# Ids per IN (...) query: well under every backend's limit on bound parameters.
IN_CLAUSE_CHUNK = 500
# Tickets of one sender with one subject looked at by the subject rule.
SUBJECT_CANDIDATES = 5
# A chain of merges (A into B, then B into C) is followed this far; merge refuses cycles, this bounds a broken one.
MAX_MERGE_HOPS = 10
UNKNOWN_SENDER = "unknown@invalid"
NOTE_DOMAIN = "note@mailticket.invalid"

log = logging.getLogger(__name__)

# Statements built once, so that SQLAlchemy compiles each of them once.
TAKES_PART = select(Participant.ticket_id).where(
    Participant.ticket_id == bindparam("t"), Participant.address == bindparam("a"))
# The customer of an address: its own, else the one it was added to; one query, the primary first.
CUSTOMER_OF_ADDRESS = func.coalesce(
    select(Customer.id).where(Customer.address == bindparam("a")).scalar_subquery(),
    select(CustomerAddress.customer_id).where(CustomerAddress.address == bindparam("a")).scalar_subquery(),
)
BY_SUBJECT = (
    select(Ticket.id, Ticket.last_message_at)
    .where(Ticket.customer_id == CUSTOMER_OF_ADDRESS, Ticket.subject_key == bindparam("k"))
    .order_by(Ticket.last_message_at.desc())
    .limit(SUBJECT_CANDIDATES)
)
CUSTOMER_BY_ADDRESS = select(CUSTOMER_OF_ADDRESS)
INSERT_CUSTOMER = insert(Customer).returning(Customer.id)
INSERT_TICKET = insert(Ticket).returning(Ticket.id)
INSERT_MESSAGE_RETURNING_ID = insert(Message).returning(Message.id)
# The columns ingest owns; the status is service/status.py's alone.
UPDATE_TICKET = update(Ticket).where(Ticket.id == bindparam("t_id")).values(
    last_message_at=bindparam("t_last"), waiting_since=bindparam("t_waiting"), updated_at=bindparam("t_now"),
)


@dataclass
class _TicketState:
    """The columns of a ticket that ingest reads and changes; written back once per batch."""

    id: int
    status: str
    resolved_at: datetime | None
    last_message_at: datetime
    waiting_since: datetime | None
    queue: str
    merged_into_id: int | None = None  # an admin merged it; its mail goes there
    dirty: bool = False
    priority: str = "normal"  # set at creation, for the acknowledgement's SLA
    first_response_due: datetime | None = None  # set at creation: the acknowledgement promises it


def ingest(
    session: Session, raw: bytes, *, settings: Settings, received_at: datetime, now: datetime,
    mailbox: str | None = None, folder: str | None = None, uid: int | None = None, queue: str = "default",
) -> Outcome:
    """Stores one message (see ingest_batch). A delivery report it returns (Outcome.failure) is the caller's to
    apply (service/undelivered.apply_bounces), as the poll step does."""
    return ingest_batch(session, [Fetched(raw, received_at, uid)], settings=settings, now=now, mailbox=mailbox,
                        folder=folder, queue=queue)[0]


def ingest_batch(
    session: Session, items: Sequence[Fetched], *, settings: Settings, now: datetime, mailbox: str | None = None,
    folder: str | None = None, queue: str = "default",
) -> list[Outcome]:
    """Stores a batch of fetched messages in the caller's transaction; none is lost, whatever goes wrong.

    The whole batch goes in at once, with its rows written together. Should the database refuse any of
    it, the batch is rolled back and done again message by message, each in a savepoint of its own, so
    that one bad message is quarantined and the others are stored.
    """
    # Each _Batch takes the session's connection inside its savepoint, so that the SAVEPOINT comes before the batch's
    # statements: taken outside, it would be emitted after them, and rolling back to it would undo nothing.
    try:
        with session.begin_nested():
            return _Batch(session, settings, now=now, mailbox=mailbox, folder=folder, queue=queue).run(items)
    except Exception:  # noqa: BLE001 - retried one by one below, where the culprit is quarantined
        log.warning("batch of %d refused by the database; ingesting one by one", len(items), exc_info=True)
    outcomes = []
    for item in items:
        try:
            with session.begin_nested():
                outcomes.extend(_Batch(session, settings, now=now, mailbox=mailbox, folder=folder,
                                       queue=queue).run([item]))
        except Exception as exc:  # noqa: BLE001 - whatever went wrong, the message is kept, not lost
            reason = f"could not be stored: {type(exc).__name__}: {exc}"[:2000]
            quarantine(session, item.raw, reason, mailbox=mailbox, folder=folder, uid=item.uid,
                       received_at=item.received_at, now=now)
            outcomes.append(Outcome(QUARANTINED, reason=reason))
    return outcomes


class _Batch:
    """What the store knows, read once for the batch and kept up to date as the batch is threaded.

    It is the threads.Lookup of every message in the batch, so that a reply fetched in the same batch as
    the message it answers still finds it.
    """

    def __init__(self, session: Session, settings: Settings, *, now: datetime, mailbox: str | None,
                 folder: str | None, queue: str) -> None:
        self.session, self.conn, self.settings = session, session.connection(), settings
        self.now, self.mailbox, self.folder, self.queue = now, mailbox, folder, queue
        self.tag = threads.TicketTag(settings.tickets.subject_tag)
        self.calendar = sla.calendar_for(settings)
        self.known: dict[str, int] = {}  # Message-ID -> ticket id
        self.tickets: dict[int, _TicketState] = {}
        self.customers: dict[str, int] = {}
        self.participants: set[tuple[int, str]] = set()
        self.messages: list[dict] = []
        self.events: list[dict] = []
        self.acks: list[acks.AckRequest] = []  # acknowledgements hook, see _thread and run
        box = next((b for b in settings.mailboxes if b.name == mailbox), None)
        self.spam_headers = box is not None and box.spam_headers
        self.blocked = blocks.patterns(session)

    # -- threads.Lookup ---------------------------------------------------------

    def message_exists(self, message_id: str) -> bool:
        return message_id in self.known

    def ticket_of_message(self, message_id: str) -> int | None:
        return self.known.get(message_id)

    def takes_part(self, ticket_id: int, address: str) -> bool:
        # The participants of a merged ticket moved to the survivor with its messages.
        ticket_id = self._survivor(ticket_id)
        if (ticket_id, address) in self.participants:
            return True
        found = self.conn.execute(TAKES_PART, dict(t=ticket_id, a=address)).first() is not None
        if found:
            self.participants.add((ticket_id, address))
        return found

    def ticket_by_subject(self, address: str, subject_key: str, since: datetime) -> int | None:
        rows = self.conn.execute(BY_SUBJECT, dict(a=address, k=subject_key)).all()
        # Tickets touched earlier in this batch have a newer last message than the table says yet.
        best = None
        for ticket_id, last in rows:
            state = self.tickets.get(ticket_id)
            last = max(last, state.last_message_at) if state else last
            if last >= since and (best is None or last > best[1]):
                best = (ticket_id, last)
        return best[0] if best else None

    # -- the batch ----------------------------------------------------------------

    def run(self, items: Sequence[Fetched]) -> list[Outcome]:
        parsed = []
        limit = self.settings.limits.max_message_bytes
        for item in items:
            if (item.size or len(item.raw)) > limit:
                # Too big to keep whole: its head is read and stored, its ticket says what was held back.
                item = replace(item, raw=item.raw[:OVERSIZE_HEAD_BYTES], size=item.size or len(item.raw))
            msg = parse(item.raw)
            reason = unusable(msg)
            if reason is not None:
                parsed.append((item, None, reason, ()))
                continue
            loop = classify(msg, self.settings.own_addresses)
            # A bounce names our message in its attached original, not in its own threading headers.
            parsed.append((item, msg, loop, bounced_message_ids(msg) if loop == BOUNCE else ()))
        self._prefetch([(m, bounced) for _, m, _, bounced in parsed if m is not None])
        outcomes = []
        for item, msg, reason_or_loop, bounced in parsed:
            if msg is None:
                quarantine(self.session, item.raw, reason_or_loop, mailbox=self.mailbox, folder=self.folder,
                           uid=item.uid, received_at=item.received_at, now=self.now, size=item.size)
                outcomes.append(Outcome(QUARANTINED, reason=reason_or_loop))
            else:
                outcomes.append(self._thread(item, msg, reason_or_loop, bounced, self._spam(msg)))
        self._write()
        # --- acknowledgements hook (service/acks.py): after the batch's rows, so that each ack follows the
        # customer's message; a handful of statements for the whole batch, none per ticket.
        acks.queue_acks(self.session, self.settings, self.acks, now=self.now)
        return outcomes

    def _prefetch(self, messages: list[tuple[Inbound, tuple[str, ...]]]) -> None:
        ids = list(dict.fromkeys(i for m, bounced in messages for i in (*_ids_named(m), *bounced)))
        for start in range(0, len(ids), IN_CLAUSE_CHUNK):
            chunk = ids[start:start + IN_CLAUSE_CHUNK]
            rows = self.conn.execute(select(Message.message_id, Message.ticket_id).where(Message.message_id.in_(chunk)))
            self.known.update({message_id: ticket_id for message_id, ticket_id in rows})
        self._load_tickets(set(self.known.values()))

    def _load_tickets(self, ticket_ids: set[int]) -> None:
        wanted = [t for t in ticket_ids if t not in self.tickets]
        for start in range(0, len(wanted), IN_CLAUSE_CHUNK):
            rows = self.conn.execute(
                select(Ticket.id, Ticket.status, Ticket.resolved_at, Ticket.last_message_at, Ticket.waiting_since,
                       Ticket.queue, Ticket.merged_into_id)
                .where(Ticket.id.in_(wanted[start:start + IN_CLAUSE_CHUNK]))
            )
            for row in rows:
                self.tickets[row.id] = _TicketState(*row)

    def _survivor(self, ticket_id: int) -> int:
        """The ticket that holds `ticket_id`'s mail now: itself, or the one it was merged into (chains too)."""
        for _ in range(MAX_MERGE_HOPS):
            self._load_tickets({ticket_id})
            state = self.tickets.get(ticket_id)
            if state is None or state.merged_into_id is None:
                return ticket_id
            ticket_id = state.merged_into_id
        self._load_tickets({ticket_id})
        return ticket_id

    def _spam(self, msg: Inbound) -> str | None:
        """Why the message is spam: a blocked sender, or the verdict of a mail server this mailbox trusts."""
        if (pattern := blocks.matching(self.blocked, msg.from_addr)) is not None:
            return f"the sender {pattern} is blocked"
        if self.spam_headers and (header := spam.verdict(msg)) is not None:
            return f"the mail server says so ({header})"
        return None

    def _thread(self, item: Fetched, msg: Inbound, loop: str | None, bounced: tuple[str, ...],
                spam_reason: str | None) -> Outcome:
        rules = self.settings.tickets
        found = threads.match(
            message_id=msg.message_id, in_reply_to=(*msg.in_reply_to, *bounced), references=msg.references,
            from_addr=msg.from_addr, subject=msg.subject, lookup=self, tag=self.tag, now=item.received_at,
            subject_threading_days=rules.subject_threading_days,
        )
        if found.rule == threads.DUPLICATE:
            return Outcome(DUPLICATE)
        matched_by, result, ticket = found.rule, APPENDED, None
        if found.ticket_id is not None:
            # A merged ticket's mail (its tag, its subject) lands in the ticket it was merged into.
            ticket = self.tickets[self._survivor(found.ticket_id)]
            action = threads.follow_up(ticket.status, ticket.resolved_at, self.now, rules.reopen_days)
            if loop is not None or spam_reason is not None:
                # Automatic mail and spam ask nothing of anyone: appended where they belong, the status left alone.
                action = threads.APPEND
            if action == threads.REOPEN:
                self._open_again(ticket, item.received_at, f"new mail from {msg.from_addr}")
            elif action == threads.NEW_LINKED:
                old = ticket
                ticket = self._new_ticket(item, msg, queue=old.queue, follows=old.id, loop=loop, spam_reason=None)
                self._event(ticket.id, "follow-up", f"follows resolved ticket {old.id}")
                matched_by, result = threads.NEW, CREATED
        if ticket is None:
            ticket = self._new_ticket(item, msg, queue=self.queue, follows=None, loop=loop, spam_reason=spam_reason)
            result = CREATED
        self._add_message(ticket.id, item, msg, matched_by=matched_by, loop=loop)
        if result == APPENDED:
            # What the live pages follow (web/feed.py): a new message in a ticket someone may have open.
            self._event(ticket.id, "received", f"from {msg.from_addr}" + (f" ({loop})" if loop else ""))
        if item.size is not None and item.size > self.settings.limits.max_message_bytes:
            self._note(ticket.id, item, oversize_note(item.size, self.settings.limits.max_message_bytes,
                                                      item.held_back, mailbox=self.mailbox, folder=self.folder,
                                                      uid=item.uid))
        if result == CREATED and loop is None and spam_reason is None:
            # A customer opened a ticket: acknowledged (service/acks.py); never auto-replies, bulk, bounces or our
            # own mail (loop is set for those). A made-up Message-ID is not theirs to thread.
            self.acks.append(acks.AckRequest(
                ticket_id=ticket.id, to=msg.from_addr, subject=_clean(msg.subject),
                in_reply_to=None if msg.synthetic_id else msg.message_id, references=msg.references,
                mailbox=self.mailbox, queue=ticket.queue, priority=ticket.priority,
                first_response_due=ticket.first_response_due))
        if item.received_at > ticket.last_message_at:
            ticket.last_message_at = item.received_at
        # Automatic mail asks nothing of the operators, so it starts no waiting clock (nor puts a ticket it opens
        # in "Needs answer").
        asks = loop is None and spam_reason is None and ticket.status != SPAM
        if asks and ticket.waiting_since is None:
            ticket.waiting_since = item.received_at
        if asks and result == APPENDED and ticket.status == PENDING:
            # The customer answered a ticket pending on them: it needs the operators again, from when they wrote.
            self._open_again(ticket, item.received_at, "customer answered")
        ticket.dirty = True
        # A report that one of our messages failed is applied by the caller after the batch (service/undelivered).
        return Outcome(result, ticket.id, autoreply=loop is not None, spam=spam_reason is not None,
                       failure=delivery_failure(msg) if loop == BOUNCE else None)

    def _open_again(self, ticket: _TicketState, at: datetime, reason: str) -> None:
        change_status(self.session, ticket.id, OPEN, actor=None, at=at, settings=self.settings, reason=reason)
        ticket.status, ticket.resolved_at = OPEN, None

    def _customer(self, msg: Inbound) -> int:
        address = msg.from_addr or UNKNOWN_SENDER
        if address not in self.customers:
            found = self.conn.execute(CUSTOMER_BY_ADDRESS, dict(a=address)).scalar()
            if found is None:
                found = self.conn.execute(INSERT_CUSTOMER, dict(
                    address=address, name=_clean(msg.from_name)[:200], notes="", created_at=self.now)).scalar_one()
            self.customers[address] = found
        return self.customers[address]

    def _new_ticket(self, item: Fetched, msg: Inbound, *, queue: str, follows: int | None,
                    loop: str | None, spam_reason: str | None) -> _TicketState:
        customer = msg.from_addr or UNKNOWN_SENDER
        # The first [[route]] that fits sets queue and priority, before the SLA is chosen on them.
        rule = routing.route(self.settings.routes, to_addrs=msg.to_addrs, from_addr=msg.from_addr,
                             subject=msg.subject, body=msg.text)
        queue = rule.queue if rule and rule.queue else queue
        priority = rule.priority if rule and rule.priority else "normal"
        # The SLA policy and its due times go in with the row; automatic mail and spam promise nobody an answer.
        quiet = loop is not None or spam_reason is not None
        sla_columns = sla.new_ticket_columns(() if quiet else self.settings.sla, self.calendar, queue=queue,
                                             priority=priority, customer=customer, created_at=item.received_at)
        status = SPAM if spam_reason is not None else OPEN
        # Inserted at once: later messages of the batch may name it by subject or tag.
        ticket_id = self.conn.execute(INSERT_TICKET, dict(
            subject=_clean(msg.subject), subject_key=threads.subject_key(msg.subject, tag=self.tag),
            status=status, automatic=loop is not None and spam_reason is None, queue=queue, priority=priority,
            mailbox=self.mailbox, customer_id=self._customer(msg),
            routed_by=rule.name if rule else None,
            follows_ticket_id=follows, created_at=item.received_at, updated_at=self.now,
            last_message_at=item.received_at, waiting_since=None, handle_seconds=0.0, **sla_columns,
        )).scalar_one()
        self.tickets[ticket_id] = state = _TicketState(ticket_id, status, None, item.received_at, None, queue,
                                                       priority=priority,
                                                       first_response_due=sla_columns["first_response_due_at"])
        self._event(ticket_id, "created", f"from {customer}")
        if spam_reason is not None:
            self._event(ticket_id, "spam", spam_reason)
        if rule is not None:
            self._event(ticket_id, "routed", f"rule {rule.name}: queue {queue}, priority {priority}")
        if sla_columns["sla_name"] is not None:
            self._event(ticket_id, "sla", sla.describe(sla_columns))
        return state

    def _add_message(self, ticket_id: int, item: Fetched, msg: Inbound, *, matched_by: str,
                     loop: str | None) -> None:
        row = dict(
            ticket_id=ticket_id, direction=IN, message_id=msg.message_id, in_reply_to=" ".join(msg.in_reply_to),
            references=" ".join(msg.references), from_addr=msg.from_addr, from_name=_clean(msg.from_name)[:200],
            to_addrs=", ".join(msg.to_addrs), reply_to=msg.reply_to, subject=_clean(msg.subject), date=msg.date,
            received_at=item.received_at, text=_clean(msg.text), html=_clean(msg.html) if msg.html else None,
            matched_by=matched_by, loop=loop, mailbox=self.mailbox, defects="\n".join(msg.defects), raw=item.raw,
            operator_id=None,
        )
        self.known[msg.message_id] = ticket_id
        if msg.from_addr:
            self.participants.add((ticket_id, msg.from_addr))
        oversize = item.size is not None and item.size > len(item.raw)
        if not msg.attachments or oversize:  # a head's attachments are cut short: the mailbox keeps them whole
            self.messages.append(row)
            return
        # Attachments need the message's id now; messages without them are written together at the end.
        message_id = self.conn.execute(INSERT_MESSAGE_RETURNING_ID, row).scalar_one()
        limit = self.settings.limits.max_attachment_bytes
        self.conn.execute(insert(Attachment), [
            dict(message_id=message_id, filename=_clean(part.filename)[:255] or "attachment",
                 content_type=part.content_type[:255], size=len(part.data), content_id=part.content_id,
                 inline=part.inline,
                 # An oversized attachment stays readable in the raw message; the table keeps its name and size.
                 data=part.data if len(part.data) <= limit else b"")
            for part in msg.attachments
        ])

    def _note(self, ticket_id: int, item: Fetched, text: str) -> None:
        """An internal note on the ticket, written with the batch's messages, just after the one it is about."""
        self.messages.append(dict(
            ticket_id=ticket_id, direction=NOTE, message_id=compose.new_message_id(NOTE_DOMAIN), in_reply_to="",
            references="", from_addr="", from_name="mailticket", to_addrs="", reply_to=None, subject="", date=item.received_at,
            received_at=item.received_at, text=text, html=None, matched_by=None, loop=None, mailbox=self.mailbox,
            defects="", raw=None, operator_id=None))

    def _event(self, ticket_id: int, kind: str, detail: str) -> None:
        self.events.append(dict(ticket_id=ticket_id, at=self.now, kind=kind, actor=None, detail=detail))

    def _write(self) -> None:
        """The batch's rows, one statement per table."""
        if self.messages:
            self.conn.execute(insert(Message), self.messages)
        if self.participants:
            rows = [dict(ticket_id=t, address=a) for t, a in self.participants]
            self.conn.execute(insert_ignore(self.conn, Participant, ["ticket_id", "address"]), rows)
        if self.events:
            self.conn.execute(insert(Event), self.events)
        dirty = [t for t in self.tickets.values() if t.dirty]
        if dirty:
            self.conn.execute(UPDATE_TICKET, [
                dict(t_id=t.id, t_last=t.last_message_at, t_waiting=t.waiting_since, t_now=self.now) for t in dirty
            ])


def _ids_named(msg: Inbound) -> list[str]:
    return [msg.message_id, *msg.in_reply_to, *msg.references[-MAX_REFERENCES:]]


def insert_ignore(conn, model, keys: list[str]):
    return insert_for(conn)(model).on_conflict_do_nothing(index_elements=keys)


def _clean(text: str) -> str:
    # PostgreSQL text cannot hold NUL; mail sometimes does.
    return text.replace("\x00", "")
