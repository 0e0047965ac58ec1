"""SLA policies, clocks, verdicts and escalations (mailticket.service.sla) on real SQLite and PostgreSQL, with the
real ingest, actions, outbox (to an aiosmtpd sink), scheduler job and queue page."""

from __future__ import annotations

import dataclasses
import email.policy
import re
from datetime import datetime, timedelta
from email.parser import BytesParser
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient
from sqlalchemy import event, insert, select

from mailticket.config import BusinessHoursSettings, SlaSettings, WebSettings
from mailticket.db.models import NOTE, OUT, QUEUED, Event, Message, Operator, Outbox, Ticket
from mailticket.db.store import Store
from mailticket.mail import compose
from mailticket.scheduler import Jobs, build_scheduler
from mailticket.service import actions, sla
from mailticket.service.status import change_status
from mailticket.service.claims import claim
from mailticket.service.outbox import flush_sync
from mailticket.web.app import create_app
from mailticket.web.queue import queue_rows
from tests.factories import PASSWORD, SETTINGS, T0, make_operator, make_ticket
from tests.mails import SUPPORT
from tests.smtp_sink import PERMANENT, SmtpSink

HOUR = 3600.0
DAY = 24 * HOUR
MINUTE = timedelta(minutes=1)
# File order decides: the marketplace's own promise first, then the shop's for everybody else.
MARKETPLACE = SlaSettings("marketplace", first_response=1 * HOUR, resolution=1 * DAY,
                          sender_domain="marketplace.example")
STANDARD = SlaSettings("standard", first_response=4 * HOUR, resolution=3 * DAY)
POLICIES = dataclasses.replace(SETTINGS, sla=(MARKETPLACE, STANDARD))
# One first response within the hour and a resolution within two, for everybody.
TIGHT = dataclasses.replace(SETTINGS, sla=(SlaSettings("tight", first_response=HOUR, resolution=2 * HOUR),))
LISBON = ZoneInfo("Europe/Lisbon")
OFFICE = (("09:00", "18:00"),)
# Weekdays 09:00-18:00 in Lisbon; 1 December (Restoration of Independence) is a holiday.
BUSINESS = dataclasses.replace(
    SETTINGS, sla=(SlaSettings("office", first_response=4 * HOUR, resolution=16 * HOUR),),
    business_hours=BusinessHoursSettings("Europe/Lisbon", {day: OFFICE for day in range(5)}, ("2026-12-01",)),
)


# -- helpers ------------------------------------------------------------------------------------------------------

def ticket_of(store: Store, ticket_id: int) -> Ticket:
    with store.reading() as s:
        return s.get(Ticket, ticket_id)


def check(store: Store, settings, at: datetime) -> int:
    with store.transaction() as s:
        return sla.check(s, settings, at)


def set_status(store: Store, ticket_id: int, status: str, at: datetime, settings=SETTINGS, username="olga") -> None:
    with store.transaction() as s:
        operator = s.scalar(select(Operator).where(Operator.username == username))
        change_status(s, ticket_id, status, actor=operator, at=at, settings=settings)


def reply(store: Store, ticket_id: int, at: datetime, *, settings=SETTINGS, status: str | None = None,
          username="olga") -> None:
    with store.transaction() as s:
        operator = s.scalar(select(Operator).where(Operator.username == username))
        held = claim(s, ticket_id, operator, settings.claims.ttl, now=at)
        actions.reply(s, settings, ticket_id, operator, "It ships today.", held.token, status=status, now=at)


def customer_writes(store: Store, settings, at: datetime, *, answering: str, sender="ana@customer.example") -> None:
    """The customer's answer to the ticket whose first message was `answering`, received at `at`."""
    make_ticket(store, settings=settings, at=at, sender=sender, subject="Re: Where is my order?",
                message_id=f"answer-{at.timestamp()}@customer.example", in_reply_to=answering)


def outbox_rows(store: Store, ticket_id: int) -> list[Outbox]:
    with store.reading() as s:
        return s.scalars(select(Outbox).where(Outbox.ticket_id == ticket_id).order_by(Outbox.id)).all()


def history(store: Store, ticket_id: int, kind: str) -> list[str]:
    with store.reading() as s:
        return s.scalars(select(Event.detail).where(Event.ticket_id == ticket_id, Event.kind == kind)
                         .order_by(Event.id)).all()


def with_sink(settings, sink: SmtpSink):
    return dataclasses.replace(settings, smtp=sink.settings())


# -- policies and due times ---------------------------------------------------------------------------------------

def test_a_marketplace_partner_gets_its_own_sla(store):
    # Marketplaces relay their buyers' mail from per-region hosts: a subdomain is the partner too.
    partner = make_ticket(store, settings=POLICIES, sender="buyer-77@eu.marketplace.example", message_id="p@m")
    lookalike = make_ticket(store, settings=POLICIES, sender="x@evilmarketplace.example", message_id="l@m")
    shopper = make_ticket(store, settings=POLICIES, sender="ana@customer.example", message_id="s@m")

    partner, lookalike, shopper = (ticket_of(store, t) for t in (partner, lookalike, shopper))
    assert (partner.sla_name, partner.first_response_due_at, partner.resolution_due_at) == (
        "marketplace", T0 + timedelta(hours=1), T0 + timedelta(days=1))
    assert (shopper.sla_name, shopper.first_response_due_at, shopper.resolution_due_at) == (
        "standard", T0 + timedelta(hours=4), T0 + timedelta(days=3))
    assert lookalike.sla_name == "standard"
    # The job's first look is the nearest deadline.
    assert partner.sla_check_at == T0 + timedelta(hours=1) and shopper.sla_check_at == T0 + timedelta(hours=4)
    assert history(store, partner.id, "sla") == [
        f"policy marketplace: first response due {(T0 + timedelta(hours=1)).isoformat()}, "
        f"resolution due {(T0 + timedelta(days=1)).isoformat()}"]


def test_a_ticket_no_policy_matches_has_no_due_time_and_is_never_checked(store):
    partner_only = dataclasses.replace(SETTINGS, sla=(MARKETPLACE,))
    ticket = ticket_of(store, make_ticket(store, settings=partner_only, sender="ana@customer.example"))
    assert (ticket.sla_name, ticket.first_response_due_at, ticket.sla_check_at) == (None, None, None)
    assert check(store, partner_only, T0 + timedelta(days=30)) == 0


def test_business_hours_push_the_due_time_over_the_weekend(store):
    # Friday 27 November 2026, 17:00 in Lisbon (UTC+0 in winter): one business hour is left that day.
    friday = datetime(2026, 11, 27, 17, 0, tzinfo=LISBON)
    ticket_id = make_ticket(store, settings=BUSINESS, at=friday)

    ticket = ticket_of(store, ticket_id)
    # 4 h: Friday 17-18, then Monday 09-12.
    assert ticket.first_response_due_at == datetime(2026, 11, 30, 12, 0, tzinfo=LISBON)
    # 16 h: Friday 1 h, Monday 9 h, Tuesday is a holiday, Wednesday 6 h.
    assert ticket.resolution_due_at == datetime(2026, 12, 2, 15, 0, tzinfo=LISBON)
    # Nobody is at work over the weekend: Sunday night nothing is missed yet.
    assert check(store, BUSINESS, datetime(2026, 11, 29, 23, 59, tzinfo=LISBON)) == 0
    assert ticket_of(store, ticket_id).first_response_breached is None
    assert check(store, BUSINESS, datetime(2026, 11, 30, 12, 0, tzinfo=LISBON)) == 1
    assert ticket_of(store, ticket_id).first_response_breached is True


def test_pending_over_the_weekend_pauses_only_business_time(store):
    make_operator(store, "olga")
    friday = datetime(2026, 11, 27, 16, 0, tzinfo=LISBON)
    ticket_id = make_ticket(store, settings=BUSINESS, at=friday, message_id="weekend@customer.example")
    # Pending from Friday 17:30 to Monday 10:00: 30 min on Friday and 1 h on Monday were business time.
    set_status(store, ticket_id, "pending", friday + timedelta(hours=1, minutes=30), BUSINESS)
    customer_writes(store, BUSINESS, datetime(2026, 11, 30, 10, 0, tzinfo=LISBON), answering="weekend@customer.example")

    ticket = ticket_of(store, ticket_id)
    assert ticket.status == "open" and ticket.sla_paused_since is None
    assert ticket.sla_paused_seconds == 1.5 * HOUR
    # Due Monday 11:00 without the pause (Friday 16-18, Monday 9-11), 1.5 business hours later with it.
    assert ticket.first_response_due_at == datetime(2026, 11, 30, 12, 30, tzinfo=LISBON)
    assert ticket.sla_check_at == ticket.first_response_due_at


def test_a_pending_reply_refused_after_the_weekend_reopens_with_only_business_time_paused(store, smtp_sink):
    # The reply went out with "pending" on Friday 17:30; the relay refused it for good on Monday 10:00, and the
    # ticket is open again. As when the customer writes back: 30 min on Friday and 1 h on Monday were paused.
    make_operator(store, "olga")
    friday = datetime(2026, 11, 27, 16, 0, tzinfo=LISBON)
    ticket_id = make_ticket(store, settings=BUSINESS, at=friday)
    reply(store, ticket_id, friday + timedelta(hours=1, minutes=30), settings=BUSINESS, status="pending")
    smtp_sink.refuse(PERMANENT)

    monday = datetime(2026, 11, 30, 10, 0, tzinfo=LISBON)
    assert flush_sync(store, with_sink(BUSINESS, smtp_sink), now=monday).failed == 1

    ticket = ticket_of(store, ticket_id)
    assert ticket.status == "open" and ticket.sla_paused_since is None
    assert ticket.sla_paused_seconds == 1.5 * HOUR
    assert ticket.first_response_due_at == datetime(2026, 11, 30, 12, 30, tzinfo=LISBON)


# -- the clock stops while pending ----------------------------------------------------------------------------------

def test_pending_pauses_the_sla_clock(store):
    make_operator(store, "olga")
    ticket_id = make_ticket(store, settings=TIGHT, message_id="q@customer.example")  # first response due T0 + 1 h
    set_status(store, ticket_id, "pending", T0 + timedelta(minutes=20), TIGHT)

    paused = ticket_of(store, ticket_id)
    assert paused.sla_paused_since == T0 + timedelta(minutes=20) and paused.sla_check_at is None
    # Hours later nothing is missed: the clock stands still while the ticket waits on the customer.
    assert check(store, TIGHT, T0 + timedelta(hours=5)) == 0
    assert ticket_of(store, ticket_id).first_response_breached is None

    # The customer answers at T0 + 3 h: 2 h 40 min stood still, so 40 min of the first hour are left.
    customer_writes(store, TIGHT, T0 + timedelta(hours=3), answering="q@customer.example")
    ticket = ticket_of(store, ticket_id)
    assert (ticket.status, ticket.sla_paused_since, ticket.sla_paused_seconds) == ("open", None, 160 * 60.0)
    assert ticket.first_response_due_at == T0 + timedelta(hours=3, minutes=40) == ticket.sla_check_at
    assert ticket.resolution_due_at == T0 + timedelta(hours=4, minutes=40)

    # Pending and open again by hand: the second stop adds up (20 min more).
    set_status(store, ticket_id, "pending", T0 + timedelta(hours=3, minutes=10), TIGHT)
    set_status(store, ticket_id, "open", T0 + timedelta(hours=3, minutes=30), TIGHT)
    ticket = ticket_of(store, ticket_id)
    assert ticket.sla_paused_seconds == 180 * 60.0 and ticket.first_response_due_at == T0 + timedelta(hours=4)

    assert check(store, TIGHT, T0 + timedelta(hours=3, minutes=59)) == 0
    assert check(store, TIGHT, T0 + timedelta(hours=4)) == 1
    assert ticket_of(store, ticket_id).first_response_breached is True


def test_a_deadline_missed_just_before_going_pending_is_still_caught(store):
    make_operator(store, "olga")
    ticket_id = make_ticket(store, settings=TIGHT)
    # Due at T0 + 1 h; the job runs once a minute and has not run yet when the operator sets pending.
    set_status(store, ticket_id, "pending", T0 + timedelta(hours=1, seconds=30), TIGHT)
    assert ticket_of(store, ticket_id).sla_check_at == T0 + timedelta(hours=1)

    assert check(store, TIGHT, T0 + timedelta(hours=1, minutes=1)) == 1
    ticket = ticket_of(store, ticket_id)
    assert (ticket.first_response_breached, ticket.resolution_breached, ticket.sla_check_at) == (True, None, None)


# -- breaches and escalation ------------------------------------------------------------------------------------------

def test_a_breach_is_marked_and_escalated_once(store, smtp_sink):
    make_operator(store, "boss", admin=True)
    make_operator(store, "quiet", admin=True)  # an admin without an address gets nothing
    make_operator(store, "olga")
    with store.transaction() as s:
        s.scalar(select(Operator).where(Operator.username == "boss")).email = "boss@shop.example"
        s.scalar(select(Operator).where(Operator.username == "olga")).email = "olga@shop.example"
    ticket_id = make_ticket(store, settings=TIGHT, sender="ana@customer.example", subject="Café com defeito")

    assert check(store, TIGHT, T0 + timedelta(minutes=59)) == 0
    assert check(store, TIGHT, T0 + timedelta(hours=1)) == 1
    ticket = ticket_of(store, ticket_id)
    assert ticket.first_response_breached is True and ticket.resolution_breached is None
    assert ticket.escalated_at == T0 + timedelta(hours=1)
    assert ticket.sla_check_at == ticket.resolution_due_at == T0 + timedelta(hours=2)
    [row] = outbox_rows(store, ticket_id)
    assert (row.kind, row.status, row.recipients) == ("notification", QUEUED, ["boss@shop.example"])

    # Nothing new until the resolution is due; then it is marked, but nobody gets a second mail.
    assert check(store, TIGHT, T0 + timedelta(hours=1, minutes=30)) == 0
    assert check(store, TIGHT, T0 + timedelta(hours=2)) == 1
    assert check(store, TIGHT, T0 + timedelta(days=2)) == 0
    ticket = ticket_of(store, ticket_id)
    assert (ticket.resolution_breached, ticket.escalated_at, ticket.sla_check_at) == (
        True, T0 + timedelta(hours=1), None)
    assert len(outbox_rows(store, ticket_id)) == 1
    assert [d.split(" was due")[0] for d in history(store, ticket_id, "sla-breach")] == ["first response",
                                                                                          "resolution"]
    assert len(history(store, ticket_id, "escalated")) == 1

    # The mail leaves through the outbox, to the admin only; on the ticket it is an internal note, not a reply.
    assert flush_sync(store, with_sink(TIGHT, smtp_sink), now=T0 + timedelta(hours=3)).sent == 1
    [mail] = smtp_sink.messages
    assert mail.recipients == ("boss@shop.example",)
    parsed = BytesParser(policy=email.policy.default).parsebytes(mail.raw)
    assert parsed["Subject"] == f"SLA missed: Café com defeito [#{ticket_id}]"
    assert (parsed["Auto-Submitted"], parsed["X-Mailticket-Loop"]) == ("auto-generated", str(ticket_id))
    text = parsed.get_content().replace("\r\n", "\n")
    assert text.startswith(f"Ticket #{ticket_id} missed its SLA (policy tight):\n\n"
                           "- the first response was due Nov 2, 2026, 11:00 AM (UTC), just now\n\n")
    assert "Customer: ana@customer.example" in text
    with store.reading() as s:
        directions = s.scalars(select(Message.direction).where(Message.ticket_id == ticket_id)
                               .order_by(Message.id)).all()
    assert directions == ["in", NOTE]
    # Delivering a notification is no response to the customer.
    assert ticket_of(store, ticket_id).first_response_at is None


def test_the_sla_job_runs_in_the_scheduler_and_escalates_once_across_instances(store):
    make_operator(store, "boss", admin=True)
    with store.transaction() as s:
        s.scalar(select(Operator).where(Operator.username == "boss")).email = "boss@shop.example"
    # The job reads the real clock: a ticket from two hours ago has missed its hour.
    ticket_id = make_ticket(store, settings=TIGHT, at=datetime.now(T0.tzinfo) - timedelta(hours=2))
    first, second = Jobs(TIGHT, store, holder="a"), Jobs(TIGHT, store, holder="b")

    first.sla()
    second.sla()  # the same period: the lease keeps it from running

    assert "sla" in {job.id for job in build_scheduler(first).get_jobs()}
    ticket = ticket_of(store, ticket_id)
    assert ticket.first_response_breached is True and ticket.resolution_breached is True
    assert len(outbox_rows(store, ticket_id)) == 1


# -- what is a first response ----------------------------------------------------------------------------------------

def test_a_reply_sent_in_time_meets_the_first_response_sla(store, smtp_sink):
    make_operator(store, "olga")
    settings = with_sink(TIGHT, smtp_sink)
    in_time = make_ticket(store, settings=TIGHT, sender="a@customer.example", message_id="a@customer.example")
    late = make_ticket(store, settings=TIGHT, sender="b@customer.example", message_id="b@customer.example")
    reply(store, in_time, T0 + timedelta(minutes=30))
    assert flush_sync(store, settings, now=T0 + timedelta(minutes=31)).sent == 1
    reply(store, late, T0 + timedelta(minutes=50))
    # The relay took it after the hour: what counts is when it left, and the verdict is given then, not by the job.
    assert flush_sync(store, settings, now=T0 + timedelta(hours=1, minutes=5)).sent == 1

    met = ticket_of(store, in_time)
    assert (met.first_response_at, met.first_response_seconds) == (T0 + timedelta(minutes=31), 31 * 60.0)
    assert met.first_response_breached is False
    # Next the job looks at the resolution deadline.
    assert met.sla_check_at == met.resolution_due_at == T0 + timedelta(hours=2)
    assert ticket_of(store, late).first_response_breached is True


def test_a_reply_sent_together_with_a_status_change_to_pending_still_records_the_first_response(store, smtp_sink):
    make_operator(store, "olga")
    ticket_id = make_ticket(store, settings=TIGHT)
    reply(store, ticket_id, T0 + timedelta(minutes=30), settings=TIGHT, status="pending")
    assert ticket_of(store, ticket_id).status == "pending"

    assert flush_sync(store, with_sink(TIGHT, smtp_sink), now=T0 + timedelta(minutes=45)).sent == 1

    ticket = ticket_of(store, ticket_id)
    assert (ticket.first_response_at, ticket.first_response_seconds) == (T0 + timedelta(minutes=45), 45 * 60.0)
    assert ticket.first_response_breached is False
    assert ticket.status == "pending" and ticket.sla_paused_since == T0 + timedelta(minutes=30)
    assert ticket.sla_check_at is None


def test_a_reply_that_leaves_while_the_ticket_is_pending_counts_from_when_the_clock_stopped(store, smtp_sink):
    # SPEC §7: pending pauses the SLA clocks. The reply went out with "pending" at 30 min; the relay was down
    # until after the hour, but the clock had stood still since 30 min. The figure is still the real wait.
    make_operator(store, "olga")
    settings = with_sink(TIGHT, smtp_sink)
    ticket_id = make_ticket(store, settings=TIGHT)
    reply(store, ticket_id, T0 + timedelta(minutes=30), settings=TIGHT, status="pending")
    smtp_sink.stop()
    assert flush_sync(store, settings, now=T0 + timedelta(minutes=31)).sent == 0
    smtp_sink.start()

    assert flush_sync(store, settings, now=T0 + timedelta(hours=1, minutes=30)).sent == 1

    ticket = ticket_of(store, ticket_id)
    assert (ticket.first_response_seconds, ticket.first_response_breached) == (90 * 60.0, False)


def test_an_internal_note_is_not_a_response(store, smtp_sink):
    make_operator(store, "olga")
    ticket_id = make_ticket(store, settings=TIGHT)
    with store.transaction() as s:
        operator = s.scalar(select(Operator).where(Operator.username == "olga"))
        actions.add_note(s, ticket_id, operator, "Asked the warehouse.", now=T0 + timedelta(minutes=10))

    flush_sync(store, with_sink(TIGHT, smtp_sink), now=T0 + timedelta(minutes=11))
    assert smtp_sink.messages == []
    assert ticket_of(store, ticket_id).first_response_at is None
    assert check(store, TIGHT, T0 + timedelta(hours=1)) == 1
    assert ticket_of(store, ticket_id).first_response_breached is True


def test_an_acknowledgement_is_not_a_response(store, smtp_sink):
    ticket_id = make_ticket(store, settings=TIGHT, sender="ana@customer.example")
    at = T0 + timedelta(minutes=1)
    ack = compose.build(from_address=SUPPORT, from_name="Support", to=["ana@customer.example"],
                        subject="We got your message [#1]", body="We answer within the hour.", date=at,
                        ticket_id=ticket_id, auto_submitted="auto-replied")
    with store.transaction() as s:
        message_id = s.execute(insert(Message).returning(Message.id), dict(
            ticket_id=ticket_id, direction=OUT, message_id=ack.message_id, from_addr=SUPPORT,
            to_addrs="ana@customer.example", subject=ack.subject, date=at, received_at=at, text="ack",
            raw=ack.raw)).scalar_one()
        s.execute(insert(Outbox), dict(message_id=message_id, ticket_id=ticket_id, kind="ack", status=QUEUED,
                                       recipients=["ana@customer.example"], attempts=0, next_attempt_at=at,
                                       created_at=at))

    assert flush_sync(store, with_sink(TIGHT, smtp_sink), now=at + MINUTE).sent == 1
    assert smtp_sink.message_ids() == [ack.message_id]

    ticket = ticket_of(store, ticket_id)
    assert (ticket.first_response_at, ticket.first_response_breached) == (None, None)
    assert check(store, TIGHT, T0 + timedelta(hours=1)) == 1
    assert ticket_of(store, ticket_id).first_response_breached is True


def test_reopening_does_not_reset_the_first_response(store, smtp_sink):
    make_operator(store, "olga")
    settings = with_sink(TIGHT, smtp_sink)
    ticket_id = make_ticket(store, settings=TIGHT, message_id="first@customer.example")
    reply(store, ticket_id, T0 + timedelta(minutes=20))
    flush_sync(store, settings, now=T0 + timedelta(minutes=21))
    set_status(store, ticket_id, "resolved", T0 + timedelta(minutes=30), TIGHT)

    resolved = ticket_of(store, ticket_id)
    assert (resolved.resolution_seconds, resolved.resolution_breached, resolved.sla_check_at) == (30 * 60.0, False,
                                                                                                  None)
    # The customer writes again an hour later: the ticket reopens.
    customer_writes(store, TIGHT, T0 + timedelta(hours=1, minutes=30), answering="first@customer.example")
    reply(store, ticket_id, T0 + timedelta(hours=2))
    flush_sync(store, settings, now=T0 + timedelta(hours=2, minutes=1))

    ticket = ticket_of(store, ticket_id)
    assert (ticket.status, ticket.reopen_count) == ("open", 1)
    assert (ticket.first_response_at, ticket.first_response_seconds) == (T0 + timedelta(minutes=21), 21 * 60.0)
    assert ticket.first_response_breached is False
    # The resolution counts again from where its clock stopped: 30 min used, 1 h 30 min left after the reopening.
    assert (ticket.resolution_seconds, ticket.resolution_breached) == (None, None)
    assert ticket.resolution_due_at == T0 + timedelta(hours=3) == ticket.sla_check_at


def test_a_reply_that_never_left_the_outbox_is_not_a_response(store, smtp_sink):
    make_operator(store, "olga")
    settings = with_sink(TIGHT, smtp_sink)
    ticket_id = make_ticket(store, settings=TIGHT)
    reply(store, ticket_id, T0 + timedelta(minutes=10))
    smtp_sink.stop()
    assert flush_sync(store, settings, now=T0 + timedelta(minutes=11)).sent == 0

    # Queued is not sent: the deadline passes and the job marks it.
    assert ticket_of(store, ticket_id).first_response_at is None
    assert check(store, TIGHT, T0 + timedelta(hours=1)) == 1
    assert ticket_of(store, ticket_id).first_response_breached is True

    smtp_sink.start()
    assert flush_sync(store, settings, now=T0 + timedelta(hours=1, minutes=30)).sent == 1
    ticket = ticket_of(store, ticket_id)
    assert ticket.first_response_at == T0 + timedelta(hours=1, minutes=30)
    assert ticket.first_response_breached is True


def test_a_first_reply_that_bounced_opens_the_first_response_verdict_again():
    due = T0 + timedelta(hours=1)
    met = sla.Clock(status="open", created_at=T0, first_response_at=None, first_response_due_at=due,
                    resolution_due_at=due + timedelta(hours=1), sla_paused_since=None, sla_paused_seconds=0.0,
                    first_response_breached=False, resolution_breached=None, sla_check_at=None,
                    resolution_seconds=None)
    again = sla.first_response_verdict(met)
    assert (again.first_response_breached, again.sla_check_at) == (None, due)
    missed = sla.first_response_verdict(dataclasses.replace(met, first_response_breached=True))
    assert missed.first_response_breached is True  # a breach stays


# -- resolution --------------------------------------------------------------------------------------------------------

def test_resolving_records_the_resolution_time_and_verdict(store):
    make_operator(store, "olga")
    in_time = make_ticket(store, settings=TIGHT, sender="a@customer.example", message_id="a@customer.example")
    late = make_ticket(store, settings=TIGHT, sender="b@customer.example", message_id="b@customer.example")
    waited = make_ticket(store, settings=TIGHT, sender="c@customer.example", message_id="c@customer.example")
    set_status(store, in_time, "resolved", T0 + timedelta(minutes=90), TIGHT)
    set_status(store, late, "resolved", T0 + timedelta(hours=3), TIGHT)
    # Pending at 1 h 50 min and resolved days later: the clock stopped in time.
    set_status(store, waited, "pending", T0 + timedelta(minutes=110), TIGHT)
    set_status(store, waited, "resolved", T0 + timedelta(days=3), TIGHT)

    met, missed, paused = (ticket_of(store, t) for t in (in_time, late, waited))
    assert (met.resolved_at, met.resolution_seconds, met.resolution_breached) == (
        T0 + timedelta(minutes=90), 90 * 60.0, False)
    assert (missed.resolution_seconds, missed.resolution_breached) == (3 * HOUR, True)
    assert (paused.resolution_seconds, paused.resolution_breached) == (3 * DAY, False)
    # Resolved with no answer after the first response was due: that one was missed.
    assert met.first_response_breached is True and paused.first_response_breached is True
    assert all(t.sla_check_at is None for t in (met, missed, paused))
    # Nothing is left for the job, and a resolved ticket is never escalated.
    assert check(store, TIGHT, T0 + timedelta(days=10)) == 0
    assert all(t.escalated_at is None for t in (met, missed, paused))


# -- the queue ---------------------------------------------------------------------------------------------------------

def queue_ids(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'id="ticket-row-(\d+)"', page)]


def test_the_queue_sorts_by_due_time(store):
    web_settings = dataclasses.replace(POLICIES, web=WebSettings(secret_key="test-secret-key-for-the-sla-tests"))
    make_operator(store, "olga")
    # Oldest waiting first by default; by due time the missed deadline and the partner's hour come first.
    shopper = make_ticket(store, settings=POLICIES, at=T0, sender="ana@customer.example", message_id="1@m")
    overdue = make_ticket(store, settings=POLICIES, at=T0 + timedelta(hours=1), sender="c@marketplace.example",
                          message_id="3@m")  # first response due T0 + 2 h, missed
    partner = make_ticket(store, settings=POLICIES, at=T0 + timedelta(hours=2, minutes=30),
                          sender="b@marketplace.example", message_id="2@m")  # due T0 + 3 h 30 min
    no_sla = make_ticket(store, settings=SETTINGS, at=T0 - timedelta(hours=1), sender="d@customer.example",
                         message_id="4@m")
    check(store, POLICIES, T0 + timedelta(hours=3, minutes=5))
    clock = T0 + timedelta(hours=3, minutes=10)
    client = TestClient(create_app(web_settings, store, clock=lambda: clock), follow_redirects=False)
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
    assert client.post("/login", data={"csrf_token": token, "username": "olga",
                                       "password": PASSWORD}).status_code == 303

    by_waiting = client.get("/").text
    by_due = client.get("/?sort=due").text

    assert queue_ids(by_waiting) == [no_sla, shopper, overdue, partner]
    assert queue_ids(by_due) == [overdue, partner, shopper, no_sla]
    overdue_row = re.search(rf'<tr id="ticket-row-{overdue}".*?</tr>', by_due, re.S).group(0)
    assert "SLA missed" in overdue_row and "overdue" in overdue_row
    shopper_row = re.search(rf'<tr id="ticket-row-{shopper}".*?</tr>', by_due, re.S).group(0)
    assert "Nov 2, 2026, 2:00 PM" in shopper_row and "SLA missed" not in shopper_row
    assert 'id="sort-due" class="active"' in by_due


def test_the_queue_reads_its_due_times_in_one_query(store):
    for n in range(5):
        make_ticket(store, settings=POLICIES, at=T0 + timedelta(minutes=n), sender=f"c{n}@customer.example",
                    message_id=f"{n}@m")
    statements = []

    def count(_conn, _cursor, statement, *_):
        statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        with store.reading() as s:
            rows, more = queue_rows(s, view="waiting", queue=None, operator_id=0, now=T0, sort="due")
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
    assert len(rows) == 5 and not more
    assert [r.due_at for r in rows] == [T0 + timedelta(hours=4, minutes=n) for n in range(5)]
    assert [s.split()[0] for s in statements if s.split()[0] != "BEGIN"] == ["SELECT"]
