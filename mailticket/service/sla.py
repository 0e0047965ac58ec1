"""SLA use cases: a policy and due times for each new ticket, clocks that stop while a ticket waits on the customer,
verdicts recorded when the events happen, and the job that marks breaches and escalates once to the admins."""

# The SLA columns of a ticket (db/models.py) keep these rules:
#
# - The due times are business time (timing.BusinessCalendar) from created_at: created_at + target + the business
#   seconds the clock was stopped. They are moved out when a stop ends, so that they are always ready to show and
#   to sort by, and nothing is recomputed per request.
# - The clock stops while the ticket is pending (the operators wait on the customer) and while it is resolved (a
#   reopened ticket goes on from where its clock stopped). sla_paused_since is when it stopped; when it runs again,
#   the business seconds of the stop are added to sla_paused_seconds and every due time not settled yet moves out
#   by as much. Moving a due time out by the stop gives exactly created_at + target + paused (adding business
#   seconds composes), and it does not depend on the policy still being in the config file.
# - A verdict (first_response_breached, resolution_breached) is None until known, True for a breach, False when
#   met. Met means the event came while the clock had not reached the target: for a reply sent or a ticket
#   resolved while the clock was stopped, the clock stopped at sla_paused_since.
# - sla_check_at is the next instant at which a breach can happen: the nearest unsettled due time of a running
#   clock, NULL when none can (no SLA, stopped, settled). The job reads only rows with sla_check_at <= now through
#   its index, so that its cost follows the changes and the deadlines, not the size of the table.

from __future__ import annotations

import logging
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from mailticket import durations, timing
from mailticket.config import BusinessHoursSettings, Settings, SlaSettings
from mailticket.db.models import NOTE, PENDING, RESOLVED, SPAM, Customer, Event, Operator, Ticket
from mailticket.localtime import local_time
from mailticket.mail import address, compose
from mailticket.service import outbound
from mailticket.threads import TicketTag

log = logging.getLogger(__name__)

# Statuses in which the SLA clocks stand still.
STOPPED = (PENDING, RESOLVED, SPAM)
# Tickets one check handles in one transaction; the scheduler runs another check while a pass comes back full.
CHECK_LIMIT = 500
# RFC 3834: a message made by a program, not in answer to one; vacation responders leave it alone.
AUTO_GENERATED = "auto-generated"
ESCALATION_SENDER_NAME = "mailticket"
ESCALATION_LANGUAGE = "en"  # the notification's words (its times are in [web] timezone)
FIRST_RESPONSE, RESOLUTION = "first response", "resolution"


@dataclass(frozen=True)
class Clock:
    """The columns of one ticket that the SLA rules read and write (resolution_seconds rides along: it is set and
    cleared by the same status changes)."""

    status: str
    created_at: datetime
    first_response_at: datetime | None
    first_response_due_at: datetime | None
    resolution_due_at: datetime | None
    sla_paused_since: datetime | None
    sla_paused_seconds: float
    first_response_breached: bool | None
    resolution_breached: bool | None
    sla_check_at: datetime | None
    resolution_seconds: float | None

    @property
    def has_sla(self) -> bool:
        return self.first_response_due_at is not None or self.resolution_due_at is not None

    @property
    def first_response_unsettled(self) -> bool:
        return (self.first_response_due_at is not None and self.first_response_breached is None
                and self.first_response_at is None)

    @property
    def resolution_unsettled(self) -> bool:
        return self.resolution_due_at is not None and self.resolution_breached is None and self.status != RESOLVED

    def next_check(self) -> datetime | None:
        """The nearest due time that can still be missed; while stopped, only one missed before the stop; none for
        spam, which is nobody's to answer."""
        if self.status == SPAM:
            return None
        dues = [due for due, unsettled in ((self.first_response_due_at, self.first_response_unsettled),
                                           (self.resolution_due_at, self.resolution_unsettled)) if unsettled]
        if self.sla_paused_since is not None:
            # A stopped clock reaches no due time; one passed before the stop is a breach the job has yet to see.
            dues = [due for due in dues if due <= self.sla_paused_since]
        return min(dues, default=None)


CLOCK_FIELDS = tuple(f.name for f in fields(Clock))
CLOCK_COLUMNS = tuple(getattr(Ticket, name) for name in CLOCK_FIELDS)
# Status is the caller's to write; the other fields are this module's.
WRITTEN = tuple(name for name in CLOCK_FIELDS if name not in ("status", "created_at", "first_response_at"))


def changes(before: Clock, after: Clock) -> dict[str, object]:
    return {name: getattr(after, name) for name in WRITTEN if getattr(after, name) != getattr(before, name)}


# -- the rules (pure) ---------------------------------------------------------------------------------------------

MAX_CALENDARS = 16
_CALENDARS: dict[int, tuple[BusinessHoursSettings | None, timing.BusinessCalendar]] = {}


def calendar_for(settings: Settings | None) -> timing.BusinessCalendar:
    """The business calendar of these settings (24/7 without [business_hours]), built once per settings object."""
    hours = settings.business_hours if settings is not None else None
    kept = _CALENDARS.get(id(hours))
    if kept is None or kept[0] is not hours:
        if len(_CALENDARS) >= MAX_CALENDARS:
            _CALENDARS.clear()  # a process has one configuration; tests make a few
        kept = _CALENDARS[id(hours)] = (hours, timing.BusinessCalendar(hours))
    return kept[1]


def new_ticket_columns(policies: tuple[SlaSettings, ...] | list[SlaSettings], calendar: timing.BusinessCalendar, *,
                       queue: str, priority: str, customer: str, created_at: datetime) -> dict[str, object]:
    """The SLA columns of a new ticket: the matching policy (queue, priority, the customer's domain), its due
    times from created_at in business time, and when the job must look first. Every key is always there."""
    policy = timing.match_sla(policies, queue=queue, priority=priority, sender_domain=customer)
    first = resolution = None
    if policy is not None and policy.first_response is not None:
        first = calendar.add_business_seconds(created_at, policy.first_response)
    if policy is not None and policy.resolution is not None:
        resolution = calendar.add_business_seconds(created_at, policy.resolution)
    return dict(sla_name=policy.name if policy else None, first_response_due_at=first, resolution_due_at=resolution,
                sla_paused_since=None, sla_paused_seconds=0.0, first_response_breached=None,
                resolution_breached=None, escalated_at=None,
                sla_check_at=min((d for d in (first, resolution) if d is not None), default=None))


def describe(columns: dict[str, object]) -> str:
    """The history line of an assignment."""
    due = [f"{what} due {at.isoformat()}" for what, at in ((FIRST_RESPONSE, columns["first_response_due_at"]),
                                                           (RESOLUTION, columns["resolution_due_at"])) if at]
    return f"policy {columns['sla_name']}: " + ", ".join(due)


def status_changed(clock: Clock, status: str, at: datetime, calendar: timing.BusinessCalendar) -> Clock:
    """The clock after the ticket's status goes from clock.status to `status` at `at`."""
    if status == clock.status:
        return clock
    c = clock
    if status == RESOLVED:
        c = replace(c, resolution_seconds=timing.resolution_seconds(c.created_at, at))
    elif c.status == RESOLVED:
        # Reopened: the last resolution is the one that counts, so a met resolution SLA is open again; a breach stays.
        c = replace(c, resolution_seconds=None,
                    resolution_breached=None if c.resolution_breached is False else c.resolution_breached)
    if not c.has_sla:
        return replace(c, status=status)
    was_stopped, stops = c.status in STOPPED, status in STOPPED
    if was_stopped and not stops and c.sla_paused_since is not None:
        c = _resumed(c, at, calendar)
    elif stops and not was_stopped:
        c = replace(c, sla_paused_since=at)
    c = replace(c, status=status)
    if status == RESOLVED:
        c = _resolved(c)
    return replace(c, sla_check_at=c.next_check())


def _resumed(c: Clock, at: datetime, calendar: timing.BusinessCalendar) -> Clock:
    stop = c.sla_paused_since
    assert stop is not None
    paused = calendar.business_seconds(stop, at)

    def moved(due: datetime | None, unsettled: bool) -> datetime | None:
        # A due time reached before the stop was missed then: it stays, for the job to record.
        return calendar.add_business_seconds(due, paused) if due is not None and unsettled and due > stop else due

    first = moved(c.first_response_due_at, c.first_response_breached is None and c.first_response_at is None)
    resolution = moved(c.resolution_due_at, c.resolution_breached is None)
    return replace(c, sla_paused_since=None, sla_paused_seconds=c.sla_paused_seconds + paused,
                   first_response_due_at=first, resolution_due_at=resolution)


def _resolved(c: Clock) -> Clock:
    """The verdicts known at resolution; the clock stopped at sla_paused_since (now, or when pending began)."""
    stop = c.sla_paused_since
    assert stop is not None
    if c.resolution_due_at is not None:
        c = replace(c, resolution_breached=bool(c.resolution_breached) or stop > c.resolution_due_at)
    if c.first_response_unsettled and c.first_response_due_at <= stop:
        # Resolved without an answer after the first response was due: missed, and nobody needs telling any more.
        c = replace(c, first_response_breached=True)
    return c


def first_response_verdict(clock: Clock) -> Clock:
    """The first-response verdict once first_response_at (the first reply SENT) is known; when it went back to
    None (the first reply bounced), a met verdict is open again and the job looks at the due time again."""
    sent = clock.first_response_at
    if clock.first_response_due_at is None:
        return clock
    if sent is None:
        c = replace(clock, first_response_breached=None if clock.first_response_breached is False
                    else clock.first_response_breached)
    else:
        stop = clock.sla_paused_since
        # A reply queued together with "pending" leaves later: the clock stopped when the ticket went pending.
        effective = min(sent, stop) if stop is not None else sent
        c = replace(clock, first_response_breached=effective > clock.first_response_due_at)
    return replace(c, sla_check_at=c.next_check())


def breaches(clock: Clock, now: datetime) -> tuple[Clock, list[tuple[str, datetime]]]:
    """The clock with the due times missed by `now` marked, and what was missed."""
    instant = clock.sla_paused_since or now
    missed: list[tuple[str, datetime]] = []
    c = clock
    if c.first_response_unsettled and c.first_response_due_at <= instant:
        c = replace(c, first_response_breached=True)
        missed.append((FIRST_RESPONSE, c.first_response_due_at))
    if c.resolution_unsettled and c.resolution_due_at <= instant:
        c = replace(c, resolution_breached=True)
        missed.append((RESOLUTION, c.resolution_due_at))
    return replace(c, sla_check_at=c.next_check()), missed


# -- hooks: called where the events happen, in the caller's transaction ------------------------------------------

def _read(session: Session, ticket_id: int) -> Clock | None:
    # Read locked, so that the job and a hook never both decide from the same old values. (SQLAlchemy leaves FOR
    # UPDATE out on SQLite, whose writers take the whole database at BEGIN.)
    row = session.execute(select(*CLOCK_COLUMNS).where(Ticket.id == ticket_id).with_for_update(of=Ticket)
                          ).one_or_none()
    return None if row is None else Clock(*row)


def _write(session: Session, ticket_id: int, before: Clock, after: Clock) -> None:
    values = changes(before, after)
    if values:
        session.execute(update(Ticket).where(Ticket.id == ticket_id).values(**values)
                        .execution_options(synchronize_session=False))


def on_status(ticket: Ticket, status: str, at: datetime, calendar: timing.BusinessCalendar) -> None:
    """For status.change_status, before the status changes: the (locked) ORM ticket's clock follows the change."""
    before = Clock(*(getattr(ticket, name) for name in CLOCK_FIELDS))
    for name, value in changes(before, status_changed(before, status, at, calendar)).items():
        setattr(ticket, name, value)


def on_first_response(session: Session, ticket_id: int) -> None:
    """Once first_response_at is set by the first reply sent (service/responses.py), or reset after a bounce
    (service/undelivered.py): the first-response verdict."""
    before = _read(session, ticket_id)
    if before is not None:
        _write(session, ticket_id, before, first_response_verdict(before))


# -- the job ------------------------------------------------------------------------------------------------------

DUE = (
    select(*CLOCK_COLUMNS, Ticket.id, Ticket.subject, Ticket.queue, Ticket.priority, Ticket.mailbox, Ticket.sla_name,
           Ticket.escalated_at, Customer.address.label("customer"))
    .join(Customer, Customer.id == Ticket.customer_id)
    .where(Ticket.sla_check_at <= bindparam("now"))
    .order_by(Ticket.sla_check_at, Ticket.id)
    .limit(bindparam("limit"))
)
CHECKED = (update(Ticket).where(Ticket.id == bindparam("t_id"))
           .values(first_response_breached=bindparam("t_first"), resolution_breached=bindparam("t_resolution"),
                   sla_check_at=bindparam("t_check"), escalated_at=bindparam("t_escalated")))
ADMINS = (select(Operator.email).where(Operator.is_admin.is_(True), Operator.disabled.is_(False), Operator.email != "")
          .order_by(Operator.id))


def check(session: Session, settings: Settings, now: datetime, *, limit: int = CHECK_LIMIT) -> int:
    """One pass of the SLA job: the tickets whose sla_check_at has come. Marks what was missed, escalates each
    ticket once, and sets when to look next. Returns the number of tickets looked at (`limit` means: more wait)."""
    # A ticket whose row a hook holds right now is looked at in the next pass.
    rows = session.execute(DUE.with_for_update(of=Ticket, skip_locked=True), {"now": now, "limit": limit}).all()
    if not rows:
        return 0
    updates, events, escalate = [], [], []
    for row in rows:
        before = Clock(*row[:len(CLOCK_FIELDS)])
        after, missed = breaches(before, now)
        escalated_at = row.escalated_at
        for what, due in missed:
            events.append(dict(ticket_id=row.id, at=now, kind="sla-breach", actor=None,
                               detail=f"{what} was due {due.isoformat()} (policy {row.sla_name})"))
        # One mail per ticket, ever; a resolved ticket needs nobody any more.
        if missed and escalated_at is None and after.status not in (RESOLVED, SPAM):
            escalated_at = now
            escalate.append((row, missed))
        updates.append(dict(t_id=row.id, t_first=after.first_response_breached, t_resolution=after.resolution_breached,
                            t_check=after.sla_check_at, t_escalated=escalated_at))
    conn = session.connection()
    conn.execute(CHECKED, updates)
    if escalate:
        events.extend(_escalate(session, settings, escalate, now))
    if events:
        conn.execute(insert(Event), events)
    if escalate:
        log.info("SLA: %d ticket(s) escalated", len(escalate))
    return len(rows)


def _escalate(session: Session, settings: Settings, tickets: list, now: datetime) -> list[dict]:
    """One notification per ticket to the admins, through the outbox, kept on the ticket as an internal note (never
    a reply: it is not shown as one, and never goes to the customer). Returns the history rows."""
    conn = session.connection()
    admins = list(dict.fromkeys(a.strip().lower() for a in conn.execute(ADMINS).scalars() if a.strip()))
    tag = TicketTag(settings.tickets.subject_tag)
    queued, events = [], []
    for row, missed in tickets:
        to = [a for a in admins if a != row.customer.lower() and address.is_valid(a)]
        if not to:
            events.append(dict(ticket_id=row.id, at=now, kind="escalated", actor=None,
                               detail="no mail sent: no admin has an e-mail address"))
            continue
        subject, marker = f"SLA missed: {row.subject or '(no subject)'}", tag.render(row.id)
        subject = subject if marker in subject else f"{subject} {marker}"
        # The same From as the ticket's replies.
        mail = compose.build(from_address=settings.address_of(row.mailbox), from_name=ESCALATION_SENDER_NAME, to=to,
                             subject=subject, body=escalation_text(settings, row, missed, now), date=now,
                             ticket_id=row.id, auto_submitted=AUTO_GENERATED)
        queued.append(outbound.Queued(row.id, outbound.NOTIFICATION, mail, row.mailbox,
                                      shown_as=ESCALATION_SENDER_NAME, direction=NOTE))
        events.append(dict(ticket_id=row.id, at=now, kind="escalated", actor=None,
                           detail=f"notification {mail.message_id} to {', '.join(to)}"))
    outbound.enqueue(session, queued, now)
    return events


def _ago(late: timedelta) -> str:
    seconds = late.total_seconds()
    return f"{durations.prose(seconds, ESCALATION_LANGUAGE)} ago" if seconds > 0 else "just now"


def escalation_text(settings: Settings, row, missed: list[tuple[str, datetime]], now: datetime) -> str:
    """The admins' notification, in English; its times in [web] timezone, named."""
    zone = settings.web.timezone
    lines = [f"Ticket #{row.id} missed its SLA (policy {row.sla_name}):", ""]
    lines += [f"- the {what} was due {local_time(due, ESCALATION_LANGUAGE, zone)} ({zone}), {_ago(now - due)}"
              for what, due in missed]
    lines += ["", f"Subject:  {row.subject or '(no subject)'}", f"Customer: {row.customer}",
              f"Queue:    {row.queue}, priority {row.priority}", "",
              f"{settings.web.base_url.rstrip('/')}/tickets/{row.id}"]
    return "\n".join(lines) + "\n"
