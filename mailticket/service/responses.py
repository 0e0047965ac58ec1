"""The figures of an operator's reply, written when the relay accepts it: the first response (time, and who gave
it) and the count of replies delivered, which the report reads as they are (SPEC §7)."""

from __future__ import annotations

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from mailticket import timing
from mailticket.config import Settings
from mailticket.db.models import Ticket
from mailticket.service import sla
from mailticket.service.events import Event, ReplySent

TICKET_TIMES = select(Ticket.created_at, Ticket.first_response_at).where(Ticket.id == bindparam("t"))
COUNT_REPLY = update(Ticket).where(Ticket.id == bindparam("t")).values(reply_count=Ticket.reply_count + 1)
FIRST_RESPONSE = (update(Ticket).where(Ticket.id == bindparam("t"), Ticket.first_response_at.is_(None))
                  .values(first_response_at=bindparam("at"), first_response_seconds=bindparam("seconds"),
                          first_responder_id=bindparam("op")))


def on_reply_sent(session: Session, settings: Settings, event: Event) -> None:
    if not isinstance(event, ReplySent):
        return
    conn = session.connection()
    conn.execute(COUNT_REPLY, {"t": event.ticket_id})
    created, first = conn.execute(TICKET_TIMES, {"t": event.ticket_id}).one()
    if first is None:
        seconds = timing.first_response_seconds(created, event.at)
        conn.execute(FIRST_RESPONSE, {"t": event.ticket_id, "at": event.at, "seconds": seconds,
                                      "op": event.operator_id})
        sla.on_first_response(session, event.ticket_id)
