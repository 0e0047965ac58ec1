"""Mail that did not get through: given up by the outbox, or reported back by the recipient's server (a bounce,
applied after the batch that brought it, as Mailman's bounce runner does). A note and a history entry tell the
operators; a reply's ticket is open again, and its figures are those of the replies that were delivered."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from mailticket import timing
from mailticket.config import Settings
from mailticket.db.models import FAILED, IN, NOTE, OPEN, SENT, Message, Outbox, Ticket
from mailticket.mail import compose
from mailticket.mail.loops import DeliveryFailure
from mailticket.service import outbound, sla
from mailticket.service.history import record
from mailticket.service.status import change_status

log = logging.getLogger(__name__)

KIND_NAMES = {outbound.REPLY: "reply", outbound.ACK: "acknowledgement", outbound.NOTIFICATION: "notification",
              "forward": "forwarded conversation"}
NOTE_DOMAIN = "note@mailticket.invalid"
# A bounce may come for a row in any state (sent, or queued again after a send that only looked lost).
BOUNCED = (update(Outbox).where(Outbox.id == bindparam("row"), Outbox.status != FAILED)
           .values(status=FAILED, lease_until=None, last_error=bindparam("error")))


def apply_bounces(session: Session, failures: Sequence[DeliveryFailure], now: datetime, settings: Settings) -> int:
    """The step after a batch: each report fails the reply it names, if it names one of ours (see `bounced`).
    Each in a savepoint of its own: a report that cannot be applied is logged, and never undoes the batch that
    stored the mail. Returns how many rows failed."""
    failed = 0
    for failure in failures:
        try:
            with session.begin_nested():
                for message_id in failure.message_ids:
                    if bounced(session, message_id, failure, now, settings) is not None:
                        failed += 1
                        break
        except Exception:  # noqa: BLE001 - the report stays stored on its ticket; the batch goes on
            log.exception("delivery report about %s could not be applied", ", ".join(failure.message_ids))
    return failed


def bounced(session: Session, message_id: str, failure: DeliveryFailure, now: datetime,
            settings: Settings) -> int | None:
    """A report that our mail could not be delivered, found by its Message-ID: the row fails and its ticket gets a
    note, when the report says so for that message's recipient.

    Returns the ticket id; None when the id is not one of our outbox messages, the report is about someone else
    (forged, or about another copy), or the row had failed already (a second report adds nothing).
    """
    row = session.execute(select(Outbox.id, Outbox.recipients).join(Message, Message.id == Outbox.message_id)
                          .where(Message.message_id == message_id.strip().strip("<>"))).one_or_none()
    if row is None or not any(failure.names(recipient) for recipient in row.recipients or ()):
        return None
    reason = f"the recipient's server sent it back: {failure.reason}"
    if session.connection().execute(BOUNCED, {"row": row.id, "error": reason}).rowcount != 1:
        return None
    return undeliverable(session, row.id, reason, now, event="bounced", settings=settings)


def undeliverable(session: Session, outbox_id: int, reason: str, at: datetime, *, event: str,
                  settings: Settings) -> int:
    """The operators' side of a failed row: a note, a history entry, and for a reply the ticket open again."""
    row = session.execute(
        select(Outbox.ticket_id, Outbox.kind, Outbox.recipients, Outbox.sent_at, Message.message_id,
               Message.received_at.label("written_at"))
        .join(Message, Message.id == Outbox.message_id).where(Outbox.id == outbox_id)
    ).one()
    what = KIND_NAMES.get(row.kind, row.kind)
    recipients = ", ".join(row.recipients or ())
    text = f"The {what} to {recipients} could not be delivered: {reason}."
    if row.kind == outbound.REPLY:
        text += " The ticket is open again: the customer still needs an answer."
    session.add(Message(ticket_id=row.ticket_id, direction=NOTE, message_id=compose.new_message_id(NOTE_DOMAIN),
                        from_addr="", from_name="mailticket", subject="", received_at=at, date=at, text=text))
    record(session, row.ticket_id, event, at, None, f"{what} {row.message_id} to {recipients}: {reason}")
    if row.kind == outbound.REPLY:
        _reply_failed(session, row.ticket_id, row.written_at, row.sent_at, at, settings)
    return row.ticket_id


def _reply_failed(session: Session, ticket_id: int, written_at: datetime, sent_at: datetime | None,
                  at: datetime, settings: Settings) -> None:
    ticket = session.get(Ticket, ticket_id)
    if sent_at is not None:
        # It was counted as delivered: the figures become those of the replies that were. First, so that the SLA
        # clock that runs again below sees a first response still to come and moves its due time out.
        ticket.reply_count = max(0, (ticket.reply_count or 0) - 1)
        if ticket.first_response_at == sent_at:
            first = session.execute(
                select(Outbox.sent_at, Message.operator_id).join(Message, Message.id == Outbox.message_id)
                .where(Outbox.ticket_id == ticket_id, Outbox.kind == outbound.REPLY, Outbox.status == SENT)
                .order_by(Outbox.sent_at).limit(1)).first()
            ticket.first_response_at = first.sent_at if first else None
            ticket.first_responder_id = first.operator_id if first else None
            ticket.first_response_seconds = timing.first_response_seconds(ticket.created_at,
                                                                           ticket.first_response_at)
            session.flush()
            # The first-response verdict follows the response that now stands (or none).
            sla.on_first_response(session, ticket_id)
    change_status(session, ticket_id, OPEN, actor=None, at=at, settings=settings,
                  reason="a reply could not be delivered")
    ticket = session.get(Ticket, ticket_id)
    # The customer waits again since their oldest message that no delivered reply came after.
    last_delivered = session.scalar(
        select(func.max(Message.received_at)).join(Outbox, Outbox.message_id == Message.id)
        .where(Outbox.ticket_id == ticket_id, Outbox.kind == outbound.REPLY, Outbox.status == SENT))
    oldest = select(func.min(Message.received_at)).where(
        Message.ticket_id == ticket_id, Message.direction == IN, Message.loop.is_(None))
    if last_delivered is not None:
        oldest = oldest.where(Message.received_at > last_delivered)
    since = session.scalar(oldest) or written_at
    ticket.waiting_since = min(ticket.waiting_since, since) if ticket.waiting_since else since
    ticket.updated_at = at
