"""The queue page: by default the tickets that still need an answer, oldest waiting first, with who holds each claim."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from sqlalchemy import and_, case, func, or_, select, text
from sqlalchemy.orm import Session

from mailticket.db.models import OPEN, PENDING, RESOLVED, SPAM, Claim, Customer, Operator, Ticket
from mailticket.db.store import db_now
from mailticket.service import history, quarantine_admin
from mailticket.web.auth import SignedIn
from mailticket.web.core import web

PAGE_SIZE = 200
# The default view: open tickets with a customer message nobody has answered yet.
WAITING = "waiting"
# Automatic: tickets opened by automatic mail (out-of-office, lists, reports) that nobody has written to since.
AUTOMATIC = "automatic"
# What the default view shows and the tab's title counts.
NEEDS_ANSWER = and_(Ticket.status == OPEN, Ticket.waiting_since.is_not(None))
VIEWS = (WAITING, OPEN, PENDING, RESOLVED, "mine", AUTOMATIC, SPAM, "all")
View = Literal["waiting", "open", "pending", "resolved", "mine", "automatic", "spam", "all"]
# The default order of each view, or the nearest due time first.
DUE = "due"
Sort = Literal["default", "due"]
# The due time a ticket runs against now: the first response until one is sent, then the resolution; none while
# its clock stands still (pending, resolved) or without an SLA. A missed one stays, in the past, so it sorts first.
DUE_AT = case(
    (Ticket.sla_paused_since.is_not(None), None),
    (and_(Ticket.first_response_at.is_(None), Ticket.first_response_due_at.is_not(None)),
     Ticket.first_response_due_at),
    else_=Ticket.resolution_due_at,
).label("due_at")
BREACHED = or_(Ticket.first_response_breached.is_(True), Ticket.resolution_breached.is_(True)).label("breached")

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class QueueRow:
    id: int
    subject: str
    status: str
    queue: str
    priority: str
    waiting_since: datetime | None
    last_message_at: datetime
    customer_id: int
    customer: str
    holder: str | None
    holder_id: int | None
    claim_expires_at: datetime | None
    due_at: datetime | None = None
    breached: bool = False
    sla_paused: bool = False


def queue_rows(session: Session, *, view: str, queue: str | None, operator_id: int, now: datetime,
               page: int = 1, page_size: int = PAGE_SIZE, sort: str = "default") -> tuple[list[QueueRow], bool]:
    """One page of the queue in one query, and whether another page follows; sort="due": nearest due time first."""
    query = (
        select(Ticket.id, Ticket.subject, Ticket.status, Ticket.queue, Ticket.priority, Ticket.waiting_since,
               Ticket.last_message_at, Customer.id.label("customer_id"), Customer.address,
               Claim.operator_id.label("holder_id"), Claim.expires_at, Operator.name, Operator.username,
               DUE_AT, BREACHED, Ticket.sla_paused_since)
        .join(Customer, Customer.id == Ticket.customer_id)
        # Only a live claim joins: an expired one is nobody's.
        .outerjoin(Claim, and_(Claim.ticket_id == Ticket.id, Claim.operator_id.is_not(None), Claim.expires_at > now))
        .outerjoin(Operator, Operator.id == Claim.operator_id)
    )
    if view == WAITING:
        query = query.where(NEEDS_ANSWER)
    elif view in (OPEN, PENDING, RESOLVED, SPAM):
        query = query.where(Ticket.status == view)
    elif view == AUTOMATIC:
        query = query.where(Ticket.status == OPEN, Ticket.automatic.is_(True), Ticket.waiting_since.is_(None))
    elif view == "mine":
        query = query.where(Claim.operator_id == operator_id)
    else:  # all, but spam: it is nobody's work
        query = query.where(Ticket.status != SPAM)
    if queue:
        query = query.where(Ticket.queue == queue)
    if sort == DUE:
        query = query.order_by(DUE_AT.is_(None), DUE_AT, Ticket.id)
    elif view == WAITING:
        # Oldest waiting first, straight from the (status, waiting_since) index: no sort of the open tickets.
        query = query.order_by(Ticket.waiting_since, Ticket.id)
    elif view in (OPEN, "mine"):
        # Oldest waiting first; tickets with nothing waiting after them.
        query = query.order_by(Ticket.waiting_since.is_(None), Ticket.waiting_since, Ticket.id)
    else:
        query = query.order_by(Ticket.last_message_at.desc(), Ticket.id.desc())
    rows = session.execute(query.offset((page - 1) * page_size).limit(page_size + 1)).all()
    result = [
        QueueRow(r.id, r.subject, r.status, r.queue, r.priority, r.waiting_since, r.last_message_at,
                 r.customer_id, r.address, (r.name or r.username) if r.holder_id is not None else None,
                 r.holder_id, r.expires_at, r.due_at, bool(r.breached), r.sla_paused_since is not None)
        for r in rows[:page_size]
    ]
    return result, len(rows) > page_size


# The distinct queue names by skipping through the queue index, one probe per name: a plain DISTINCT
# would read every ticket, and there are only a handful of queues.
QUEUE_NAMES = text("""
    WITH RECURSIVE names(name) AS (
        SELECT MIN(queue) FROM tickets
        UNION ALL
        SELECT (SELECT MIN(queue) FROM tickets WHERE queue > names.name) FROM names WHERE names.name IS NOT NULL
    )
    SELECT name FROM names WHERE name IS NOT NULL
""")


def waiting_count(session: Session) -> int:
    """How many tickets need an answer (the tab's title shows it)."""
    return session.scalar(select(func.count()).select_from(Ticket).where(NEEDS_ANSWER)) or 0


def queue_names(session: Session) -> list[str]:
    return list(session.scalars(QUEUE_NAMES))


@router.get("/")
def queue_page(
    request: Request,
    me: SignedIn,
    view: View = WAITING,
    queue: Annotated[str | None, Query(max_length=64)] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    sort: Sort = "default",
):
    app = web(request)
    with app.store.reading() as session:
        rows, more = queue_rows(session, view=view, queue=queue or None, operator_id=me.id, now=db_now(session),
                                page=page, sort=sort)
        names = queue_names(session)
        quarantined = quarantine_admin.waiting(session)
        waiting = waiting_count(session)
        # Where the page's change stream starts (web/live.py).
        last_event = history.newest_id(session)
    return app.render(request, "queue.html", rows=rows, more=more, view=view, views=VIEWS, queue=queue or "",
                      queues=names, page=page, sort=sort, quarantined=quarantined, waiting_count=waiting,
                      last_event=last_event)
