"""SQLAlchemy 2 tables: tickets, messages with their raw bytes, attachments, customers, mailbox state, quarantine, history."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    JSON,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import false
from sqlalchemy.types import TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column, relationship

# Stable constraint names so that Alembic migrations are the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Ticket statuses (SPEC §9) and message directions.
OPEN, PENDING, RESOLVED, SPAM = "open", "pending", "resolved", "spam"
# What an operator sets through the status field; spam has actions of its own (mark as spam, not spam).
STATUSES = (OPEN, PENDING, RESOLVED)
ALL_STATUSES = (*STATUSES, SPAM)
IN, OUT, NOTE = "in", "out", "note"



class UtcDateTime(TypeDecorator):
    """Aware UTC datetimes on every backend: SQLite keeps no offset, so it is stored as UTC and put back on read."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; pass aware UTC times")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Ticket(Base):
    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    # Normalised subject (threads.subject_key) for the subject fallback rule.
    subject_key: Mapped[str] = mapped_column(String(255), default="")
    status: Mapped[str] = mapped_column(String(16), default=OPEN)
    queue: Mapped[str] = mapped_column(String(64), default="default")
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    mailbox: Mapped[str | None] = mapped_column(String(64), nullable=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    follows_ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_message_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Oldest customer message not answered yet (waiting time), None when nothing waits.
    waiting_since: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    first_response_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    first_response_seconds: Mapped[float | None] = mapped_column(nullable=True)
    handle_seconds: Mapped[float] = mapped_column(default=0.0)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    resolution_seconds: Mapped[float | None] = mapped_column(nullable=True)
    # Operator replies delivered, and how often the ticket was reopened: first-contact resolution.
    reply_count: Mapped[int] = mapped_column(Integer, default=0)
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    first_responder_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"), nullable=True)
    # SLA (SPEC §7): the matched policy, its due times, the business seconds paused while pending on the
    # customer, the verdicts (None until known), and when the SLA job must look at the ticket next.
    sla_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    first_response_due_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    resolution_due_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    sla_paused_since: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    sla_paused_seconds: Mapped[float] = mapped_column(default=0.0)
    first_response_breached: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    resolution_breached: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    escalated_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    sla_check_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True, index=True)
    # Opened by automatic mail (an out-of-office, a list, a report): waits in the "Automatic" view, not in a queue.
    automatic: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # When the survey mail went out: it goes once per ticket.
    survey_sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # Set when an admin merged this ticket into another; its mail then lands in that one.
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), nullable=True)
    # The routing rule ([[route]]) that set the queue and priority, by name.
    routed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)

    customer: Mapped[Customer] = relationship(lazy="joined", foreign_keys=[customer_id])

    __table_args__ = (
        Index("ix_tickets_status_waiting", "status", "waiting_since"),
        Index("ix_tickets_customer_subject", "customer_id", "subject_key", "last_message_at"),
        Index("ix_tickets_queue", "queue"),
    )


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    direction: Mapped[str] = mapped_column(String(8))
    # Inbound and outbound ids share this column, so that a reply to our own mail threads (SPEC §5 rule 2).
    message_id: Mapped[str] = mapped_column(String(998), unique=True)
    in_reply_to: Mapped[str] = mapped_column(Text, default="")
    references: Mapped[str] = mapped_column(Text, default="")
    from_addr: Mapped[str] = mapped_column(String(320), default="")
    from_name: Mapped[str] = mapped_column(String(200), default="")
    to_addrs: Mapped[str] = mapped_column(Text, default="")
    # Where the sender asked answers to go (Reply-To); replies go to From when there is none.
    reply_to: Mapped[str | None] = mapped_column(String(320), nullable=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    date: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # When the IMAP server received it (INTERNALDATE), or when we created it.
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
    text: Mapped[str] = mapped_column(Text, default="")
    html: Mapped[str | None] = deferred(mapped_column(Text, nullable=True))
    matched_by: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # Loop classification (mail.loops): None, "auto-reply", "bulk", "bounce" or "own".
    loop: Mapped[str | None] = mapped_column(String(16), nullable=True)
    mailbox: Mapped[str | None] = mapped_column(String(64), nullable=True)
    defects: Mapped[str] = mapped_column(Text, default="")
    raw: Mapped[bytes | None] = deferred(mapped_column(LargeBinary, nullable=True))
    # The operator who wrote an outbound message or a note.
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"), nullable=True)

    attachments: Mapped[list[Attachment]] = relationship(
        order_by="Attachment.id", lazy="selectin", cascade="all, delete-orphan"
    )

    @property
    def autoreply(self) -> bool:
        return self.loop is not None


class Attachment(Base):
    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    content_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    inline: Mapped[bool] = mapped_column(Boolean, default=False)
    data: Mapped[bytes] = deferred(mapped_column(LargeBinary))


class Participant(Base):
    """Addresses that sent or received a ticket's mail: SPEC §5 rule 3 asks whether the sender takes part."""

    __tablename__ = "participants"

    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), primary_key=True)
    address: Mapped[str] = mapped_column(String(320), primary_key=True)


class MailboxState(Base):
    __tablename__ = "mailbox_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mailbox: Mapped[str] = mapped_column(String(64))
    folder: Mapped[str] = mapped_column(String(255))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (UniqueConstraint("mailbox", "folder"),)


class Quarantine(Base):
    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The same bytes fetched again (after a crash or a UIDVALIDITY change) are not quarantined twice.
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    mailbox: Mapped[str | None] = mapped_column(String(64), nullable=True)
    folder: Mapped[str | None] = mapped_column(String(255), nullable=True)
    uid: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    reason: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    raw: Mapped[bytes] = deferred(mapped_column(LargeBinary))


class Event(Base):
    """The ticket's history: who did what, when."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str | None] = mapped_column(String(64), nullable=True)
    detail: Mapped[str] = mapped_column(Text, default="")


class Operator(Base):
    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(320), default="")
    password_hash: Mapped[str] = mapped_column(String(255), default="")
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # sha256 of the API token: the token itself is shown once and never stored.
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # The pages' language the operator chose ("pt-BR" or "en"); None: not chosen, the browser's decides.
    language: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # The time zone the pages show times in for this operator ("America/Sao_Paulo"); None: [web] timezone.
    timezone: Mapped[str | None] = mapped_column(String(64), nullable=True)

    @property
    def display_name(self) -> str:
        return self.name or self.username


class WebSession(Base):
    """A signed-in browser: its cookie carries a random token, this row its hash, so that logging out ends it here."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the cookie's token
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Claim(Base):
    """The claim on a ticket: one row per ticket (the primary key is the constraint), free when operator_id is NULL."""

    __tablename__ = "claims"

    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), primary_key=True)
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"), nullable=True, index=True)
    token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Fencing counter: grows with every new claim, so a stale holder's token can never match again.
    fence: Mapped[int] = mapped_column(BigInteger, default=0)
    # Start of the current holding period, for handle time.
    claimed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True, index=True)

    operator: Mapped[Operator | None] = relationship(lazy="joined")


class ReplyDraft(Base):
    """What an operator typed into a ticket's reply form, saved as it is typed (one per ticket and operator)."""

    __tablename__ = "drafts"

    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), primary_key=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"), primary_key=True)
    body: Mapped[str] = mapped_column(Text, default="")
    to_addrs: Mapped[str | None] = mapped_column(Text, nullable=True)  # None: the address the form proposes
    cc_addrs: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Presence(Base):
    """An open ticket page (one live feed connection): who is viewing it, refreshed while it stays open."""

    __tablename__ = "presence"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"))
    seen_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


# Outbox statuses.
QUEUED, SENDING, SENT, FAILED = "queued", "sending", "sent", "failed"


class Outbox(Base):
    """Outbound mail waiting to be sent; the message row holds the content and its fixed Message-ID."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), unique=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="reply")  # reply | ack | notification
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    # One address per element: never a string to split (a quoted local part may hold commas).
    recipients: Mapped[list[str]] = mapped_column(JSON, default=list)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # While a sender works on the row: another instance may take it only after this time.
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)

    __table_args__ = (Index("ix_outbox_status_next", "status", "next_attempt_at"),)


class Lease(Base):
    """A named lease held by one instance until it expires: one poller per mailbox, one run per job period."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())


class CannedReply(Base):
    """A saved answer admins keep; placeholders like {customer_name} are filled in the reply form."""

    __tablename__ = "canned_replies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(200), unique=True)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class CustomerAddress(Base):
    """Further addresses of a customer: mail from any of them is that customer's."""

    __tablename__ = "customer_addresses"

    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class BlockedSender(Base):
    """An address ("x@spam.example") or a whole domain ("spam.example") whose mail goes straight to Spam."""

    __tablename__ = "blocked_senders"

    pattern: Mapped[str] = mapped_column(String(320), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Csat(Base):
    """The customer's satisfaction rating of a resolved ticket: one per ticket, a later answer replaces it."""

    __tablename__ = "csat"

    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), primary_key=True)
    rating: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str] = mapped_column(Text, default="")
    answered_at: Mapped[datetime] = mapped_column(UtcDateTime())


class OAuthToken(Base):
    """A mailbox's (or the relay's) OAuth2 authorization: the tokens, encrypted, and whether it still holds."""

    __tablename__ = "oauth_tokens"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)  # "mailbox:NAME" or "smtp"
    access_token: Mapped[str | None] = mapped_column(Text, nullable=True)  # Fernet token of the access token
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    refresh_token: Mapped[str | None] = mapped_column(Text, nullable=True)  # Fernet token of the refresh token
    state: Mapped[str] = mapped_column(String(32))  # ok | needs-authorization | error
    error: Mapped[str] = mapped_column(Text, default="")  # the last failure, in words, without secrets
    authorized_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # When the admins were told it was lost (set before sending, cleared if the mail could not go).
    notice_sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class OAuthPending(Base):
    """A browser authorization under way: its state and PKCE verifier, bound to the admin's session."""

    __tablename__ = "oauth_pending"

    state: Mapped[str] = mapped_column(String(128), primary_key=True)
    authorization: Mapped[str] = mapped_column(String(128))
    verifier: Mapped[str] = mapped_column(Text)  # Fernet token of the PKCE code verifier
    session_id: Mapped[str] = mapped_column(String(64))  # the web_sessions id that started it
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class MailboxStatus(Base):
    """How a mailbox's polling went: the last pass that worked and the last failure, for `mailbox status`."""

    __tablename__ = "mailbox_status"

    mailbox: Mapped[str] = mapped_column(String(128), primary_key=True)
    last_ok_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    last_error_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    login_refused: Mapped[bool] = mapped_column(Boolean, default=False)
