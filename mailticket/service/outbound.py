"""The one writer of outbound mail: a composed message becomes its message row and its outbox row, in bulk."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.orm import Session

from mailticket.db.models import OUT, QUEUED, Message, Outbox
from mailticket.mail.compose import Outgoing

# Outbox.kind: an operator's reply (the only kind that is a response, SPEC §7), an acknowledgement, and the mail
# the system sends on its own (survey, escalation).
REPLY, ACK, NOTIFICATION = "reply", "ack", "notification"
MAX_NAME_CHARS = 200  # messages.from_name

# Rows come back in no promised order (SQLite would otherwise insert them one statement each): each is found again
# by its Message-ID.
INSERT_MESSAGES = insert(Message).returning(Message.message_id, Message.id)
INSERT_OUTBOX = insert(Outbox)


@dataclass(frozen=True)
class Queued:
    """One composed mail to send on a ticket's behalf, with how the ticket's thread shows it."""

    ticket_id: int
    kind: str
    mail: Outgoing
    mailbox: str | None  # the [[mailbox]] it is sent from
    shown_as: str  # the name the thread shows as its author (the operator, the shop)
    operator_id: int | None = None
    direction: str = OUT  # escalations to the admins are kept as internal notes


def enqueue(session: Session, items: Sequence[Queued], now: datetime) -> dict[str, int]:
    """Writes each mail's message and outbox rows in the caller's transaction (two statements for any number of
    them); returns the message row id of each Message-ID, for what hangs on a message (its attachments)."""
    if not items:
        return {}
    conn = session.connection()
    ids = dict(conn.execute(INSERT_MESSAGES, [_message_row(item, now) for item in items]).all())
    conn.execute(INSERT_OUTBOX, [
        dict(message_id=ids[item.mail.message_id], ticket_id=item.ticket_id, kind=item.kind, status=QUEUED,
             recipients=[*item.mail.to, *item.mail.cc], attempts=0, next_attempt_at=now, lease_until=None, last_error="",
             created_at=now, sent_at=None)
        for item in items
    ])
    return ids


def _message_row(item: Queued, now: datetime) -> dict:
    mail = item.mail
    return dict(
        ticket_id=item.ticket_id, direction=item.direction, message_id=mail.message_id,
        in_reply_to=mail.in_reply_to or "", references=" ".join(mail.references), from_addr=mail.from_address,
        from_name=item.shown_as[:MAX_NAME_CHARS], to_addrs=", ".join((*mail.to, *mail.cc)), subject=mail.subject,
        date=now,
        received_at=now, text=mail.text, html=None, matched_by=None, loop=None, mailbox=item.mailbox, defects="",
        raw=mail.raw, operator_id=item.operator_id,
    )
