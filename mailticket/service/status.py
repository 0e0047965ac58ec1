"""The one owner of a ticket's status: the change (status, resolution, SLA clock, history) in the caller's
transaction, then the reactions to it (service/reactions.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from mailticket.config import Settings
from mailticket.db.models import ALL_STATUSES, RESOLVED, Operator, Ticket
from mailticket.service import reactions, sla
from mailticket.service.claims import only_the_holder
from mailticket.service.errors import ActionError
from mailticket.service.events import StatusChanged
from mailticket.service.history import record
from mailticket.service.tickets import TicketNotFound


def change_status(session: Session, ticket_id: int, status: str, *, actor: Operator | None, at: datetime,
                  settings: Settings, reason: str = "", notify_customer: bool = True) -> StatusChanged | None:
    """Sets the ticket's status at `at`; returns the change, or None when the ticket had that status already.

    An operator's change waits for the holder of a live claim on the ticket (HeldByOther); the system's does not.
    Resolving records the resolution and stops the SLA clocks (so does pending); leaving either runs them again
    (a pending ticket's pause counted in the business hours of `settings`); leaving resolved counts a reopening.
    """
    if status not in ALL_STATUSES:
        raise ActionError(f"unknown status {status!r}; use one of {', '.join(ALL_STATUSES)}")
    if actor is not None:
        only_the_holder(session, ticket_id, actor, at)
    # Read locked, so that two changes of one ticket never both start from the same old status. (SQLAlchemy leaves
    # FOR UPDATE out on SQLite, whose writers take the whole database at BEGIN.)
    ticket = session.get(Ticket, ticket_id, with_for_update={"of": Ticket}, populate_existing=True)
    if ticket is None:
        raise TicketNotFound(ticket_id)
    old = ticket.status
    if old == status:
        return None
    sla.on_status(ticket, status, at, sla.calendar_for(settings))
    ticket.status = status
    ticket.resolved_at = at if status == RESOLVED else None
    ticket.updated_at = at
    if old == RESOLVED:
        ticket.reopen_count = (ticket.reopen_count or 0) + 1
    session.flush()
    record(session, ticket_id, "status", at, actor, f"{old} -> {status}" + (f" ({reason})" if reason else ""))
    change = StatusChanged(ticket_id, old, status, at, actor.id if actor else None, notify_customer)
    reactions.announce(session, settings, change)
    return change
