"""Ingest on real SQLite and PostgreSQL: threading rules, duplicates, quarantine, reopening."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import undefer

from mailticket.config import AutoreplySettings, LimitSettings, MailboxSettings, Settings, TicketSettings
from mailticket.imap import OVERSIZE_HEAD_BYTES
from mailticket.db.models import OUT, RESOLVED, Event, Message, Participant, Quarantine, Ticket
from mailticket.service.ingest import ingest
from mailticket.service.intake import APPENDED, CREATED, DUPLICATE, QUARANTINED
from tests.mails import SUPPORT, make_mail

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=timezone.utc)
SETTINGS = Settings(
    mailboxes=(MailboxSettings(name="support", host="localhost", username="u", password="p", address=SUPPORT),),
    limits=LimitSettings(max_message_bytes=200_000, max_attachment_bytes=100_000),
    tickets=TicketSettings(reopen_days=7, subject_threading_days=5),
    # Acknowledgements are tests/test_acks.py's subject; here only inbound mail is counted.
    autoreply=AutoreplySettings(enabled=False),
)


def put(store, raw: bytes, at: datetime = T0, settings: Settings = SETTINGS):
    with store.transaction() as session:
        return ingest(session, raw, settings=settings, received_at=at, now=at, mailbox="support")


def ticket_of(store, message_id: str) -> int:
    with store.reading() as session:
        return session.scalar(select(Message.ticket_id).where(Message.message_id == message_id))


def count(store, model) -> int:
    with store.reading() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_a_new_message_creates_a_ticket_and_keeps_its_raw_bytes(store):
    raw = make_mail()
    outcome = put(store, raw)
    assert outcome.result == CREATED
    with store.reading() as session:
        message = session.scalar(select(Message))
        assert message.raw == raw
        assert message.matched_by == "new"
        ticket = session.get(Ticket, outcome.ticket_id)
        assert ticket.customer.address == "ana@customer.example"
        assert ticket.created_at == T0
        assert ticket.waiting_since == T0


def test_the_same_message_delivered_twice_is_one_message(store):
    assert put(store, make_mail()).result == CREATED
    assert put(store, make_mail(), T0 + timedelta(minutes=1)).result == DUPLICATE
    assert count(store, Message) == 1


def test_a_message_without_message_id_fetched_twice_is_stored_once(store):
    raw = make_mail(message_id=None)
    assert put(store, raw).result == CREATED
    assert put(store, raw).result == DUPLICATE
    assert count(store, Message) == 1


def test_a_reply_matched_only_by_references_joins_that_ticket(store):
    first = put(store, make_mail(message_id="a@c.example"))
    reply = make_mail(message_id="b@c.example", subject="totally different", sender="bob@other.example",
                      references=["unknown@x.example", "a@c.example"])
    outcome = put(store, reply, T0 + timedelta(hours=1))
    assert outcome == type(outcome)(APPENDED, first.ticket_id)
    with store.reading() as session:
        assert session.scalar(select(Message.matched_by).where(Message.message_id == "b@c.example")) == "references"


def test_a_reply_to_our_own_outbound_message_id_joins_its_ticket(store):
    first = put(store, make_mail(message_id="a@c.example"))
    with store.transaction() as session:
        session.add(Message(ticket_id=first.ticket_id, direction=OUT, message_id="reply-1@shop.example",
                            from_addr=SUPPORT, subject="Re: Where is my order? [#1]", received_at=T0, text="On its way"))
    answer = make_mail(message_id="c@c.example", subject="new subject entirely", in_reply_to="reply-1@shop.example")
    outcome = put(store, answer, T0 + timedelta(hours=2))
    assert (outcome.result, outcome.ticket_id) == (APPENDED, first.ticket_id)
    with store.reading() as session:
        assert session.scalar(select(Message.matched_by).where(Message.message_id == "c@c.example")) == "in-reply-to"


@pytest.mark.parametrize("prefix", ["RES:", "AW:", "Re: Fwd: RES:", "Enc:", "SV:"])
def test_a_webmail_reply_without_threading_headers_joins_by_subject(store, prefix):
    first = put(store, make_mail(message_id="a@c.example", subject="Pedido 1234 atrasado"))
    reply = make_mail(message_id="b@c.example", subject=f"{prefix} Pedido 1234 atrasado")
    outcome = put(store, reply, T0 + timedelta(days=1))
    assert (outcome.result, outcome.ticket_id) == (APPENDED, first.ticket_id)


def test_the_same_subject_from_another_sender_gets_a_new_ticket(store):
    first = put(store, make_mail(message_id="a@c.example", subject="Pedido 1234 atrasado"))
    other = put(store, make_mail(message_id="b@c.example", subject="Re: Pedido 1234 atrasado",
                                 sender="someone@else.example"), T0 + timedelta(hours=1))
    assert other.result == CREATED and other.ticket_id != first.ticket_id


def test_a_subject_match_older_than_the_window_gets_a_new_ticket(store):
    first = put(store, make_mail(message_id="a@c.example", subject="Pedido 1234 atrasado"))
    later = put(store, make_mail(message_id="b@c.example", subject="Re: Pedido 1234 atrasado"), T0 + timedelta(days=6))
    assert later.result == CREATED and later.ticket_id != first.ticket_id


def test_the_ticket_tag_joins_mail_from_a_participant(store):
    first = put(store, make_mail(message_id="a@c.example"))
    tagged = make_mail(message_id="b@c.example", subject=f"About something else [#{first.ticket_id}]")
    outcome = put(store, tagged, T0 + timedelta(days=30))
    assert (outcome.result, outcome.ticket_id) == (APPENDED, first.ticket_id)
    with store.reading() as session:
        assert session.scalar(select(Message.matched_by).where(Message.message_id == "b@c.example")) == "subject-tag"


def test_a_stranger_quoting_another_customers_ticket_tag_gets_a_new_ticket(store):
    first = put(store, make_mail(message_id="a@c.example"))
    stranger = make_mail(message_id="b@c.example", sender="mallory@evil.example",
                         subject=f"Re: Where is my order? [#{first.ticket_id}]")
    outcome = put(store, stranger, T0 + timedelta(minutes=5))
    assert outcome.result == CREATED and outcome.ticket_id != first.ticket_id
    with store.reading() as session:
        assert session.get(Participant, (first.ticket_id, "mallory@evil.example")) is None


def test_a_message_whose_references_form_a_loop_is_stored_once_on_a_new_ticket(store):
    looped = make_mail(message_id="self@c.example", in_reply_to="self@c.example",
                       references=["self@c.example", "other@c.example", "self@c.example"])
    assert put(store, looped).result == CREATED
    second = make_mail(message_id="other@c.example", references=["self@c.example"], subject="x y z")
    assert put(store, second, T0 + timedelta(minutes=1)).ticket_id == ticket_of(store, "self@c.example")


def test_random_bytes_are_quarantined_and_the_next_message_is_stored(store):
    poison = os.urandom(5000).replace(b"\n", b"")
    assert put(store, poison).result == QUARANTINED
    assert put(store, make_mail()).result == CREATED
    with store.reading() as session:
        row = session.scalar(select(Quarantine))
        assert row.raw == poison and "header" in row.reason


def test_a_message_over_the_size_limit_opens_its_ticket_from_its_head_with_a_note(store):
    big = make_mail(body="x" * 300_000)
    outcome = put(store, big)
    assert outcome.result == CREATED and count(store, Quarantine) == 0
    with store.reading() as session:
        inbound, note = session.scalars(select(Message).where(Message.ticket_id == outcome.ticket_id)
                                        .order_by(Message.id).options(undefer(Message.raw))).all()
    assert inbound.raw == big[:OVERSIZE_HEAD_BYTES] and inbound.subject == "Where is my order?"
    assert note.direction == "note" and "over limits.max_message_bytes" in note.text


def test_the_same_poison_fetched_again_is_quarantined_once(store):
    poison = b"\x00\x01\x02 not mail at all" * 10
    put(store, poison)
    put(store, poison)
    assert count(store, Quarantine) == 1


def test_a_multipart_message_whose_boundary_never_appears_is_stored_with_what_it_has(store):
    broken = (b"From: ana@customer.example\r\nTo: support@shop.example\r\nSubject: broken\r\n"
              b"Message-ID: <broken@c.example>\r\nMIME-Version: 1.0\r\n"
              b"Content-Type: multipart/mixed; boundary=\"XYZ\"\r\n\r\nno boundary here\r\n")
    outcome = put(store, broken)
    assert outcome.result == CREATED
    with store.reading() as session:
        message = session.scalar(select(Message).options(undefer(Message.raw)))
    assert (message.subject, message.raw) == ("broken", broken) and "StartBoundaryNotFoundDefect" in message.defects


def test_nul_characters_in_the_body_do_not_stop_the_message(store):
    raw = make_mail().replace(b"Hello,", b"Hel\x00lo,")
    assert put(store, raw).result == CREATED


def test_mail_on_a_recently_resolved_ticket_reopens_it(store):
    first = put(store, make_mail(message_id="a@c.example"))
    with store.transaction() as session:
        ticket = session.get(Ticket, first.ticket_id)
        ticket.status, ticket.resolved_at = RESOLVED, T0 + timedelta(days=1)
    again = put(store, make_mail(message_id="b@c.example", in_reply_to="a@c.example"), T0 + timedelta(days=3))
    assert (again.result, again.ticket_id) == (APPENDED, first.ticket_id)
    with store.reading() as session:
        ticket = session.get(Ticket, first.ticket_id)
        assert (ticket.status, ticket.resolved_at, ticket.reopen_count) == ("open", None, 1)
        details = session.scalars(select(Event.detail).where(Event.ticket_id == first.ticket_id,
                                                             Event.kind == "status")).all()
        assert details == ["resolved -> open (new mail from ana@customer.example)"]


def test_mail_on_a_long_resolved_ticket_opens_a_linked_ticket(store):
    first = put(store, make_mail(message_id="a@c.example"))
    with store.transaction() as session:
        ticket = session.get(Ticket, first.ticket_id)
        ticket.status, ticket.resolved_at = RESOLVED, T0 + timedelta(days=1)
    later = put(store, make_mail(message_id="b@c.example", in_reply_to="a@c.example"), T0 + timedelta(days=30))
    assert later.result == CREATED and later.ticket_id != first.ticket_id
    with store.reading() as session:
        assert session.get(Ticket, later.ticket_id).follows_ticket_id == first.ticket_id
        assert session.get(Ticket, first.ticket_id).status == RESOLVED


def test_an_out_of_office_reply_is_flagged_and_starts_no_waiting_clock(store):
    first = put(store, make_mail(message_id="a@c.example"))
    with store.transaction() as session:
        session.get(Ticket, first.ticket_id).waiting_since = None
    ooo = make_mail(message_id="ooo@c.example", in_reply_to="a@c.example", subject="Automatic reply: Where is my order?",
                    headers={"Auto-Submitted": "auto-replied"})
    outcome = put(store, ooo, T0 + timedelta(hours=1))
    assert outcome.autoreply and outcome.ticket_id == first.ticket_id
    with store.reading() as session:
        assert session.get(Ticket, first.ticket_id).waiting_since is None
        assert session.scalar(select(Message.loop).where(Message.message_id == "ooo@c.example")) == "auto-reply"
