"""Reply drafts: what an operator typed into a ticket's reply form, kept on the server until the reply is sent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mailticket.db.models import ReplyDraft
from mailticket.db.store import insert_for
from mailticket.service.errors import ActionError
from mailticket.service.tickets import get_ticket

# As long as a reply may be (actions.MAX_BODY_CHARS) and a little more, so that a refusal can still say why.
MAX_DRAFT_CHARS = 200_000
MAX_ADDRESSES_CHARS = 50 * 256


@dataclass(frozen=True)
class Saved:
    body: str
    to: str | None  # None: not typed; the form proposes the customer's address
    cc: str
    updated_at: datetime


def save(session: Session, ticket_id: int, operator_id: int, body: str, to: str | None, cc: str,
         now: datetime) -> None:
    """Keeps the typed text; the newest save wins. A form with no text and no Cc removes the draft: its To is the
    proposed address the form always carries, and an empty draft would keep showing the reply form."""
    if len(body) > MAX_DRAFT_CHARS or len(to or "") > MAX_ADDRESSES_CHARS or len(cc) > MAX_ADDRESSES_CHARS:
        raise ActionError("the draft is too long to keep")
    get_ticket(session, ticket_id)  # raises TicketNotFound (a 404)
    body = body.replace("\r\n", "\n")  # a posted form's line ends, as the script saves them
    if not body.strip() and not cc.strip():
        clear(session, ticket_id, operator_id)
        return
    values = dict(ticket_id=ticket_id, operator_id=operator_id, body=body, to_addrs=to, cc_addrs=cc, updated_at=now)
    upsert = insert_for(session)(ReplyDraft).values(**values)
    session.execute(upsert.on_conflict_do_update(
        index_elements=["ticket_id", "operator_id"],
        set_=dict(body=upsert.excluded.body, to_addrs=upsert.excluded.to_addrs, cc_addrs=upsert.excluded.cc_addrs,
                  updated_at=upsert.excluded.updated_at)))


def load(session: Session, ticket_id: int, operator_id: int) -> Saved | None:
    row = session.execute(select(ReplyDraft.body, ReplyDraft.to_addrs, ReplyDraft.cc_addrs, ReplyDraft.updated_at)
                          .where(ReplyDraft.ticket_id == ticket_id, ReplyDraft.operator_id == operator_id)).first()
    return Saved(*row) if row else None


def clear(session: Session, ticket_id: int, operator_id: int) -> None:
    """A sent reply's draft is gone (called in the reply's own transaction)."""
    session.execute(delete(ReplyDraft).where(ReplyDraft.ticket_id == ticket_id, ReplyDraft.operator_id == operator_id))
