"""Acknowledgements of new tickets on real SQLite and PostgreSQL, and through a real aiosmtpd sink."""

from __future__ import annotations

import email
import email.policy
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import undefer

from mailticket.config import (
    AutoreplySettings,
    BusinessHoursSettings,
    MailboxSettings,
    Settings,
    SlaSettings,
    SmtpSettings,
)
from mailticket.db.models import OUT, Event, Message, Outbox, Ticket
from mailticket.mail.loops import LOOP_HEADER, OWN, classify
from mailticket.mail.parse import parse
from mailticket.service.acks import human_duration, queue_ack, render_ack
from mailticket.service.ingest import ingest, ingest_batch
from mailticket.service.intake import APPENDED, CREATED, DUPLICATE, Fetched
from mailticket.service.outbox import SendCounts, flush_sync
from tests.mails import SUPPORT, make_mail

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=timezone.utc)
SHOP = "Example Shop"
PARTNER = "orders@marketplace-partner.example"
SETTINGS = Settings(
    mailboxes=(MailboxSettings(name="support", host="localhost", username="u", password="p", address=SUPPORT),
               MailboxSettings(name="sales", host="localhost", username="s", password="p",
                               address="sales@shop.example", queue="sales")),
    smtp=SmtpSettings(from_name=SHOP),
    sla=(SlaSettings(name="marketplace", sender_domain="marketplace-partner.example", first_response=4 * 3600),
         SlaSettings(name="everyone else", first_response=86400)),
    autoreply=AutoreplySettings(enabled=True, template="ack_en.txt", max_per_sender_per_hour=5),
)
HEADERS = email.policy.default


def put(store, raw: bytes, *, at: datetime = T0, settings: Settings = SETTINGS):
    with store.transaction() as session:
        return ingest(session, raw, settings=settings, received_at=at, now=at, mailbox="support")


def acks(store) -> list:
    """Every queued acknowledgement: its outbox row and its message, oldest first."""
    with store.reading() as session:
        return session.execute(
            select(Outbox, Message).join(Message, Message.id == Outbox.message_id)
            .where(Outbox.kind == "ack").order_by(Outbox.id).options(undefer(Message.raw))
        ).all()


def headers_of(raw: bytes):
    return email.message_from_bytes(raw, policy=HEADERS)


def test_a_new_ticket_gets_one_acknowledgement_with_its_number_and_promised_time(store):
    outcome = put(store, make_mail(sender=PARTNER, subject="Order 77 is late"))
    assert outcome.result == CREATED
    [(row, message)] = acks(store)
    tag = f"[#{outcome.ticket_id}]"
    assert (row.ticket_id, row.kind, row.status, row.recipients) == (outcome.ticket_id, "ack", "queued", [PARTNER])
    assert (row.created_at, row.next_attempt_at, row.attempts) == (T0, T0, 0)
    assert (message.direction, message.from_addr, message.to_addrs) == (OUT, SUPPORT, PARTNER)
    assert message.subject == f"Re: Order 77 is late {tag}"
    assert message.in_reply_to == "m1@customer.example" and message.operator_id is None
    assert tag in message.text and "Order 77 is late" in message.text and SHOP in message.text
    # The marketplace's 4 hours from Monday 10:00 (UTC, no business hours): the moment the SLA clock has.
    assert "We will answer by Monday, 2 November, 14:00." in message.text

    sent = headers_of(message.raw)
    assert sent["Auto-Submitted"] == "auto-replied"
    assert sent["In-Reply-To"] == "<m1@customer.example>"
    assert sent[LOOP_HEADER] == str(outcome.ticket_id)
    assert sent["Subject"] == message.subject and sent["From"] == f"{SHOP} <{SUPPORT}>"
    assert sent["Message-ID"] == f"<{message.message_id}>" and message.message_id.endswith("@shop.example")
    with store.reading() as session:
        ticket = session.get(Ticket, outcome.ticket_id)
        # An acknowledgement is no answer: the customer still waits, and no first response is recorded.
        assert (ticket.waiting_since, ticket.first_response_at) == (T0, None)
        assert "acknowledged" in session.scalars(select(Event.kind).where(Event.ticket_id == ticket.id)).all()


def test_the_promised_time_comes_from_the_sla_that_matches_the_sender(store):
    put(store, make_mail(sender="ana@customer.example"))
    [(_, message)] = acks(store)
    assert "We will answer by Tuesday, 3 November, 10:00." in message.text


def test_the_promise_is_left_out_when_no_sla_applies(store):
    put(store, make_mail(), settings=replace(SETTINGS, sla=()))
    [(_, message)] = acks(store)
    assert "We will answer" not in message.text and "[#1]" in message.text


def test_with_business_hours_the_promise_is_the_moment_the_business_hours_clock_reaches(store):
    hours = BusinessHoursSettings(weekly={0: (("09:00", "18:00"),)})
    put(store, make_mail(), settings=replace(SETTINGS, business_hours=hours))
    [(_, message)] = acks(store)
    # 24 business hours of Mondays 09:00-18:00 from Monday 2 November 10:00: 8 + 9 + 7 hours.
    assert "We will answer by Monday, 16 November, 16:00." in message.text
    with store.reading() as session:
        assert session.get(Ticket, 1).first_response_due_at == datetime(2026, 11, 16, 16, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("headers, subject", [
    ({"Auto-Submitted": "auto-replied"}, "Out of office"),
    ({"X-Autoreply": "yes"}, "Re: your mail"),
    ({}, "Automatic reply: Where is my order?"),
    ({"Precedence": "auto_reply"}, "Away until Monday"),
    ({"X-Auto-Response-Suppress": "OOF"}, "Away until Monday"),
])
def test_no_acknowledgement_to_an_out_of_office_reply(store, headers, subject):
    outcome = put(store, make_mail(subject=subject, headers=headers))
    assert outcome.result == CREATED and outcome.autoreply
    assert acks(store) == []


@pytest.mark.parametrize("sender, headers", [
    ("MAILER-DAEMON@mx.customer.example", {}),
    ("postmaster@customer.example", {}),
    ("ana@customer.example", {"Return-Path": "<>"}),
])
def test_no_acknowledgement_to_a_bounce(store, sender, headers):
    outcome = put(store, make_mail(sender=sender, subject="Undelivered Mail Returned to Sender", headers=headers))
    assert outcome.result == CREATED and outcome.autoreply
    assert acks(store) == []


@pytest.mark.parametrize("headers", [
    {"List-Id": "<offers.shop-news.example>"},
    {"List-Unsubscribe": "<mailto:leave@news.example>"},
    {"Precedence": "bulk"},
    {"Precedence": "list"},
])
def test_no_acknowledgement_to_a_mailing_list(store, headers):
    outcome = put(store, make_mail(sender="news@news.example", subject="Our best offers", headers=headers))
    assert outcome.result == CREATED and outcome.autoreply
    assert acks(store) == []


@pytest.mark.parametrize("sender", [SUPPORT, "Sales@Shop.Example"])
def test_no_acknowledgement_to_our_own_address(store, sender):
    outcome = put(store, make_mail(sender=sender))
    assert outcome.result == CREATED
    assert acks(store) == []
    # Called directly, for any ticket, it refuses as well.
    with store.transaction() as session:
        assert not queue_ack(session, SETTINGS, ticket_id=outcome.ticket_id, to=sender, subject="x", in_reply_to=None,
                             references=(), mailbox="support", queue="default", priority="normal", now=T0)
    assert acks(store) == []


@pytest.mark.parametrize("sender", ["noreply@customer.example", "no-reply@customer.example",
                                    "do-not-reply@customer.example", "DoNotReply@customer.example"])
def test_no_acknowledgement_to_an_address_nobody_reads(store, sender):
    assert put(store, make_mail(sender=sender)).result == CREATED
    assert acks(store) == []


def test_no_sixth_acknowledgement_in_an_hour_to_one_sender(store):
    for n in range(6):
        at = T0 + timedelta(minutes=10 * n)
        mail = make_mail(message_id=f"n{n}@customer.example", subject=f"Question {n}")
        assert put(store, mail, at=at).result == CREATED
    assert [message.subject for _, message in acks(store)] == [f"Re: Question {n} [#{n + 1}]" for n in range(5)]
    with store.reading() as session:
        sixth = session.scalars(
            select(Event.detail).where(Event.ticket_id == 6, Event.kind == "not-acknowledged")).all()
    assert sixth == ["5 acknowledgements to ana@customer.example in the last hour already"]
    # Another customer is not held back by her, and she gets answers again once the first of hers is an hour old.
    bob = make_mail(message_id="bob@customer.example", sender="bob@customer.example")
    put(store, bob, at=T0 + timedelta(minutes=55))
    put(store, make_mail(message_id="n6@customer.example", subject="Question 6"), at=T0 + timedelta(minutes=61))
    assert [row.recipients for row, _ in acks(store)][5:] == [["bob@customer.example"], ["ana@customer.example"]]


def test_the_sender_limit_holds_within_one_polled_batch(store):
    mails = [Fetched(make_mail(message_id=f"b{n}@customer.example", subject=f"Burst {n}"), T0) for n in range(8)]
    with store.transaction() as session:
        outcomes = ingest_batch(session, mails, settings=SETTINGS, now=T0, mailbox="support")
    assert [o.result for o in outcomes] == [CREATED] * 8
    assert [row.ticket_id for row, _ in acks(store)] == [o.ticket_id for o in outcomes[:5]]


def test_acknowledging_a_batch_costs_a_few_statements_not_some_per_ticket(store):
    def statements(settings: Settings, first: int) -> int:
        seen = []

        def listener(conn, cursor, statement, *rest) -> None:
            # Savepoints are the batch's own business, whatever acknowledgements do.
            if "SAVEPOINT" not in statement:
                seen.append(statement)

        mails = [Fetched(make_mail(message_id=f"s{first + n}@c.example", sender=f"c{first + n}@c.example",
                                   subject=f"Order {first + n}"), T0) for n in range(20)]
        event.listen(store.engine, "before_cursor_execute", listener)
        try:
            with store.transaction() as session:
                ingest_batch(session, mails, settings=settings, now=T0, mailbox="support")
        finally:
            event.remove(store.engine, "before_cursor_execute", listener)
        return len(seen)

    without = statements(replace(SETTINGS, autoreply=AutoreplySettings(enabled=False)), 0)
    with_acks = statements(SETTINGS, 100)
    assert len(acks(store)) == 20
    # One count, then the messages, their outbox rows and their history entries, each in one statement.
    assert with_acks - without == 4


def test_a_reply_on_an_existing_ticket_gets_no_acknowledgement(store):
    first = put(store, make_mail())
    answer = make_mail(message_id="m2@customer.example", subject="Re: Where is my order?",
                       in_reply_to="m1@customer.example", references=["m1@customer.example"])
    assert put(store, answer, at=T0 + timedelta(minutes=5)) == type(first)(APPENDED, first.ticket_id)
    # And one that threads only by the ticket tag in its subject.
    tagged = make_mail(message_id="m3@customer.example", subject=f"Still waiting [#{first.ticket_id}]")
    assert put(store, tagged, at=T0 + timedelta(minutes=10)).result == APPENDED
    assert len(acks(store)) == 1


@pytest.mark.parametrize("resent_from", [None, "relay@customer.example"])
def test_our_acknowledgement_coming_back_is_recognised_as_our_own_mail(store, resent_from):
    first = put(store, make_mail())
    [(_, ack)] = acks(store)
    assert classify(parse(ack.raw), SETTINGS.own_addresses) == OWN
    # The very bytes again (a customer's server that bounces it back whole): the same message, nothing new.
    assert put(store, ack.raw, at=T0 + timedelta(minutes=1)).result == DUPLICATE

    # Re-sent as a new message, without its threading headers, possibly by someone else (a forwarder, a
    # careless list): our loop header still names it as ours, so it is kept but never answered.
    resent = headers_of(ack.raw)
    for name in ("Message-ID", "In-Reply-To", "References"):
        del resent[name]
    resent["Message-ID"] = "<resent-1@relay.customer.example>"
    if resent_from:
        resent.replace_header("From", resent_from)
    outcome = put(store, resent.as_bytes(), at=T0 + timedelta(minutes=2))
    assert outcome.result in (CREATED, APPENDED) and outcome.autoreply
    with store.reading() as session:
        loop = session.scalar(select(Message.loop).where(Message.message_id == "resent-1@relay.customer.example"))
    assert loop == OWN
    assert [row.ticket_id for row, _ in acks(store)] == [first.ticket_id]


def test_the_portuguese_template_renders(store):
    settings = replace(SETTINGS, autoreply=AutoreplySettings(template="ack_pt.txt"),
                       smtp=SmtpSettings(from_name="Loja Exemplo"))
    outcome = put(store, make_mail(sender=PARTNER, subject="Pedido 77 atrasado"), settings=settings)
    [(_, message)] = acks(store)
    assert message.text.startswith("Olá,\n")
    assert f"abrimos o ticket [#{outcome.ticket_id}]" in message.text and "Pedido 77 atrasado" in message.text
    assert "Responderemos até segunda-feira, 02/11, às 14:00." in message.text
    assert message.text.rstrip().endswith("Loja Exemplo")
    text = render_ack(replace(settings, sla=(SlaSettings(name="x", first_response=5400),)), ticket_id=3,
                      subject="", queue="default", priority="normal", sender="ana@customer.example",
                      due=T0 + timedelta(seconds=5400))
    assert "Recebemos a sua mensagem e abrimos o ticket [#3]" in text
    assert "Responderemos até segunda-feira, 02/11, às 11:30." in text


def test_no_acknowledgement_when_autoreplies_are_off(store):
    settings = replace(SETTINGS, autoreply=AutoreplySettings(enabled=False))
    assert put(store, make_mail(), settings=settings).result == CREATED
    assert acks(store) == []


def test_a_template_that_cannot_be_rendered_costs_the_acknowledgement_not_the_ticket(store, caplog):
    settings = replace(SETTINGS, autoreply=AutoreplySettings(template="no_such_template.txt"))
    outcome = put(store, make_mail(), settings=settings)
    assert outcome.result == CREATED
    assert acks(store) == []
    assert "no_such_template.txt" in caplog.text
    with store.reading() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 1


def test_an_acknowledgement_goes_out_from_the_mailbox_the_customer_wrote_to(store):
    with store.transaction() as session:
        ingest(session, make_mail(to="sales@shop.example"), settings=SETTINGS, received_at=T0, now=T0,
               mailbox="sales")
    [(_, message)] = acks(store)
    assert message.from_addr == "sales@shop.example"


@pytest.mark.parametrize("seconds, language, days, words", [
    (4 * 3600, "en", True, "4 hours"),
    (4 * 3600, "pt", True, "4 horas"),
    (3600, "pt", True, "1 hora"),
    (5400, "en", True, "1 hour and 30 minutes"),
    (86400 + 3660, "en", True, "1 day, 1 hour and 1 minute"),
    (86400 + 3660, "pt", True, "1 dia, 1 hora e 1 minuto"),
    (2 * 86400, "en", False, "48 hours"),
    (30, "en", True, "1 minute"),  # rounded up: a promise never shorter than the policy
])
def test_the_promised_time_is_written_in_words(seconds, language, days, words):
    assert human_duration(seconds, language, days=days) == words


def test_the_acknowledgement_reaches_the_customer_marked_auto_replied_with_the_ticket_tag(store, smtp_sink):
    settings = replace(SETTINGS, smtp=smtp_sink.settings(from_name=SHOP))
    outcome = put(store, make_mail(), settings=settings)
    assert flush_sync(store, settings, now=T0 + timedelta(minutes=1)) == SendCounts(sent=1)
    [received] = smtp_sink.messages
    assert (received.sender, received.recipients) == (SUPPORT, ("ana@customer.example",))
    got = headers_of(received.raw)
    assert got["Auto-Submitted"] == "auto-replied"
    assert f"[#{outcome.ticket_id}]" in got["Subject"] and got["In-Reply-To"] == "<m1@customer.example>"
    assert got[LOOP_HEADER] == str(outcome.ticket_id)
    assert f"[#{outcome.ticket_id}]" in got.get_content()
    [(row, _)] = acks(store)
    assert (row.status, row.sent_at) == ("sent", T0 + timedelta(minutes=1))
    with store.reading() as session:
        # Delivered, and still not a response (SPEC §7).
        assert session.get(Ticket, outcome.ticket_id).first_response_at is None
