"""Acknowledgements: the automatic "we have your mail, it is ticket [#N]" queued when a customer opens a ticket.

An acknowledgement is an RFC 3834 auto-reply (Auto-Submitted: auto-replied) and never a response: the outbox
sends it like any outbound mail, but only a `reply` row counts as the first response (SPEC §7). Mail loops
(SPEC §5): ingest asks for one only for mail that mail.loops found to be ordinary customer mail, and here no
acknowledgement goes to one of our own addresses or past `max_per_sender_per_hour` acknowledgements to one sender.
It is in the language of the mailbox the customer wrote to (mailticket.letters), and it promises the ticket's
first_response_due_at, the due time the SLA clock keeps, as a moment on the customer's calendar.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import jinja2
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from mailticket import letters, timing
from mailticket.config import Settings
from mailticket.db.models import Customer, Outbox, Ticket
from mailticket.mail import address, compose
from mailticket.service import outbound
from mailticket.service.history import INSERT_EVENT
from mailticket.threads import TicketTag

ACK = outbound.ACK
# RFC 3834 §5.1: a response generated automatically to a message; responders that honour it do not answer.
AUTO_SUBMITTED = "auto-replied"
# The window of `[autoreply] max_per_sender_per_hour`.
RATE_WINDOW = timedelta(hours=1)
# Addresses nobody reads (no-reply@, donotreply@, noreply-orders@...): an acknowledgement there is wasted.
NO_REPLY_LOCAL_PART = re.compile(r"^(no|do[-_.]?not)[-_.]?reply\b", re.IGNORECASE)
# Words for the `duration` template filter: language -> (day, hour, minute) as (singular, plural), and "and".
DURATION_WORDS = {
    "en": ((("day", "days"), ("hour", "hours"), ("minute", "minutes")), "and"),
    "pt": ((("dia", "dias"), ("hora", "horas"), ("minuto", "minutos")), "e"),
    "es": ((("día", "días"), ("hora", "horas"), ("minuto", "minutos")), "y"),
}
UNIT_SECONDS = (86400, 3600, 60)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AckRequest:
    """One new ticket's acknowledgement, as ingest knows it."""

    ticket_id: int
    to: str  # the customer's address
    subject: str  # the customer's subject
    in_reply_to: str | None  # the customer's Message-ID (None when it had none)
    references: Sequence[str]
    mailbox: str | None  # the [[mailbox]] name the mail came in through: the ack is sent from its address
    queue: str
    priority: str
    first_response_due: datetime | None = None  # the ticket's first_response_due_at: what the ack promises


def queue_ack(
    session: Session, settings: Settings, *, ticket_id: int, to: str, subject: str, in_reply_to: str | None,
    references: Sequence[str], mailbox: str | None, queue: str, priority: str, now: datetime,
    first_response_due: datetime | None = None,
) -> bool:
    """Queues the acknowledgement of a new ticket in the caller's transaction; True when one was queued.

    `to` is the ticket's customer (the sender limit counts acknowledgements through the customer's tickets);
    `in_reply_to` and `references` are the customer's message's, so that the ack threads under it.
    """
    request = AckRequest(ticket_id, to, subject, in_reply_to, tuple(references), mailbox, queue, priority,
                         first_response_due)
    return queue_acks(session, settings, [request], now=now)[0]


# Acknowledgements that went to each of the given senders since a time. An acknowledgement goes to the sender of
# the message that opened a ticket, who is that ticket's customer, so the count walks customers.address (unique)
# -> tickets (ix_tickets_customer_subject) -> outbox (ix_outbox_ticket_id): indexes that exist, and a cost that
# follows the sender's tickets, not the outbox, which keeps every message it ever sent.
RECENT_ACKS = (
    select(Customer.address, func.count())
    .join(Ticket, Ticket.customer_id == Customer.id)
    .join(Outbox, Outbox.ticket_id == Ticket.id)
    .where(Customer.address.in_(bindparam("addresses", expanding=True)), Outbox.kind == ACK,
           Outbox.created_at > bindparam("since"))
    .group_by(Customer.address)
)


def queue_acks(session: Session, settings: Settings, requests: Sequence[AckRequest], *, now: datetime) -> list[bool]:
    """queue_ack for a whole ingest batch, in four statements however many tickets it opened.

    The sender limit counts what this batch queues too, so a burst of new tickets in one poll stops at the limit.
    A template that cannot be rendered costs the acknowledgement, never the ticket: it is logged and skipped.
    """
    rules = settings.autoreply
    if not rules.enabled or not requests:
        return [False] * len(requests)
    own = set(settings.own_addresses)
    wanted = [_deliverable(r.to, own) for r in requests]
    addresses = sorted({to for to in wanted if to})
    if not addresses or rules.max_per_sender_per_hour == 0:
        return [False] * len(requests)
    conn = session.connection()
    sent = Counter(dict(conn.execute(RECENT_ACKS, dict(addresses=addresses, since=now - RATE_WINDOW)).all()))
    queued, events, done = [], [], []
    for request, to in zip(requests, wanted):
        if to is None:
            done.append(None)
            continue
        if sent[to] >= rules.max_per_sender_per_hour:
            # Someone (or something) opening ticket after ticket: the tickets are kept, the answers stop.
            log.info("no acknowledgement of ticket %s to %s: %d already in the last hour", request.ticket_id, to,
                     sent[to])
            events.append(_event(request.ticket_id, now, "not-acknowledged",
                                 f"{sent[to]} acknowledgements to {to} in the last hour already"))
            done.append(None)
            continue
        try:
            mail = _compose(settings, request, to, now)
        except Exception:  # noqa: BLE001 - a template is the shop's own code: whatever it raises costs the ack only
            template = letters.ack_template(settings, letters.language_of(settings, request.mailbox))
            log.exception("acknowledgement of ticket %s not sent: template %r cannot be rendered or written",
                          request.ticket_id, template)
            done.append(None)
            continue
        sent[to] += 1
        queued.append(outbound.Queued(request.ticket_id, ACK, mail, request.mailbox, shown_as=settings.smtp.from_name))
        events.append(_event(request.ticket_id, now, "acknowledged", f"message {mail.message_id} to {to}"))
        done.append(mail)
    outbound.enqueue(session, queued, now)
    if events:
        conn.execute(INSERT_EVENT, events)
    return [row is not None for row in done]


def ack_letter(settings: Settings, *, ticket_id: int, subject: str, queue: str, priority: str, sender: str,
               mailbox: str | None = None, due: datetime | None = None) -> letters.Letter:
    """The acknowledgement: `[autoreply] template` when set, else ack_pt.txt or ack_en.txt by the mailbox's language.

    The template sees: ticket_id, tag ("[#12]"), subject (the customer's), reply_subject ("Re: ... [#12]"), shop
    (letters.shop_name), language (the mailbox's), first_response_due (`due`, the ticket's first_response_due_at,
    in [web] timezone; None without one), first_response (the seconds promised by the matching [[sla]], None when
    none promises a first response), business_hours (true when SLA clocks count business hours only), sla (the
    policy's name or None); the filter `moment("pt-BR"|"en")`, which writes first_response_due as the customer
    reads it ("segunda-feira, 30/11, às 13:00"), and `duration("en"|"pt"|"es")`, first_response in words.
    """
    language = letters.language_of(settings, mailbox)
    policy = timing.match_sla(settings.sla, queue=queue, priority=priority, sender_domain=sender)
    tag = TicketTag(settings.tickets.subject_tag).render(ticket_id)
    env = letters.environment(settings)
    env.filters["duration"] = _duration_filter
    return letters.render_mail(
        env, letters.ack_template(settings, language), ticket_id=ticket_id, tag=tag, subject=subject,
        reply_subject=letters.reply_subject(subject, tag, language), shop=letters.shop_name(settings),
        language=language, first_response_due=due.astimezone(letters.local_zone(settings)) if due else None,
        first_response=policy.first_response if policy else None,
        business_hours=settings.business_hours is not None, sla=policy.name if policy else None,
    )


def render_ack(settings: Settings, **ticket) -> str:
    """The acknowledgement's text (see ack_letter)."""
    return ack_letter(settings, **ticket).body


def human_duration(seconds: float, language: str = "en", *, days: bool = True) -> str:
    """A duration in words: 14400 -> "4 hours", 5400 -> "1 hour and 30 minutes", "1 hora e 30 minutos" in pt.

    Rounded up to the minute, so the promise is never shorter than the policy. Without `days` the hours run on
    (26 hours): with business hours, one "day" of an SLA is 24 business hours, not one working day.
    """
    if language not in DURATION_WORDS:
        raise ValueError(f"duration: no words for language {language!r}; known: {', '.join(DURATION_WORDS)}")
    units, conjunction = DURATION_WORDS[language]
    left = max(1, math.ceil(seconds / 60)) * 60
    parts = []
    for (one, many), size in zip(units, UNIT_SECONDS):
        if size == UNIT_SECONDS[0] and not days:
            continue
        count, left = divmod(left, size)
        if count:
            parts.append(f"{count} {one if count == 1 else many}")
    if len(parts) == 1:
        return parts[0]
    return f"{', '.join(parts[:-1])} {conjunction} {parts[-1]}"


@jinja2.pass_context
def _duration_filter(context: jinja2.runtime.Context, seconds: float, language: str = "en") -> str:
    return human_duration(seconds, language, days=not context.get("business_hours", False))


def _deliverable(to: str, own: set[str]) -> str | None:
    """The address to acknowledge to, or None when it must get none (empty, ours, or nobody reads it)."""
    to = (to or "").strip().lower()
    if not address.is_valid(to) or to in own or NO_REPLY_LOCAL_PART.match(to):
        return None
    return to


def _compose(settings: Settings, request: AckRequest, to: str, now: datetime) -> compose.Outgoing:
    letter = ack_letter(settings, ticket_id=request.ticket_id, subject=request.subject, queue=request.queue,
                        priority=request.priority, sender=to, mailbox=request.mailbox, due=request.first_response_due)
    return compose.build(
        from_address=settings.address_of(request.mailbox), from_name=settings.smtp.from_name, to=[to],
        subject=letter.subject, body=letter.body, date=now, ticket_id=request.ticket_id,
        in_reply_to=request.in_reply_to, references=list(request.references), auto_submitted=AUTO_SUBMITTED,
    )


def _event(ticket_id: int, at: datetime, kind: str, detail: str) -> dict:
    return dict(ticket_id=ticket_id, at=at, kind=kind, actor=None, detail=detail)
