"""Automatic mail (out-of-office answers, lists, delivery reports) polled from a real Dovecot: appended where it
belongs and flagged, it never reopens a ticket, never puts one into "Needs answer", and nothing answers it."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from mailticket.config import AutoreplySettings, CsatSettings, MailboxSettings, Settings, SlaSettings, WebSettings
from mailticket.db.models import Message, Operator, Outbox, Ticket
from mailticket.service import actions, outbound
from mailticket.service.claims import claim
from mailticket.service.poll import poll_mailbox
from mailticket.service.status import change_status
from mailticket.web.queue import queue_rows
from tests.factories import T0, make_operator
from tests.mails import SUPPORT, make_mail

OUT_OF_OFFICE = {"Auto-Submitted": "auto-replied", "X-Autoreply": "yes"}


@pytest.fixture
def settings(dovecot, mailbox_user) -> Settings:
    user, password = mailbox_user
    box = MailboxSettings(name="support", host=dovecot.host, port=dovecot.port, security="none", username=user,
                          password=password, address=SUPPORT)
    return Settings(mailboxes=(box,), web=WebSettings(secret_key="automatic-mail-test-key"),
                    csat=CsatSettings(enabled=True),
                    autoreply=AutoreplySettings(enabled=True, template="ack_en.txt", max_per_sender_per_hour=5))


def take_in(store, dovecot, settings: Settings, *mails: bytes) -> None:
    box = settings.mailboxes[0]
    dovecot.deliver(box.username, list(mails))
    assert poll_mailbox(store, settings, box, clock=lambda: T0 + timedelta(days=1)).fetched == len(mails)


def needs_answer(store) -> list[int]:
    with store.reading() as session:
        return session.scalars(select(Ticket.id).where(Ticket.status == "open",
                                                       Ticket.waiting_since.is_not(None))).all()


def outgoing(store, kind: str) -> int:
    with store.reading() as session:
        return session.scalar(select(func.count()).select_from(Outbox).where(Outbox.kind == kind))


def test_an_out_of_office_answer_to_the_survey_leaves_the_resolved_ticket_alone(store, dovecot, settings):
    take_in(store, dovecot, settings, make_mail(message_id="order@customer.example"))
    with store.reading() as session:
        ticket = session.scalar(select(Ticket.id))
    olga = make_operator(store, "olga")
    with store.transaction() as session:
        operator = session.get(Operator, olga)
        view = claim(session, ticket, operator, 900, now=T0 + timedelta(hours=1))
        actions.reply(session, settings, ticket, operator, "It ships today.", view.token,
                      now=T0 + timedelta(hours=1), status="resolved")
    with store.reading() as session:
        survey = session.scalar(select(Message.message_id).join(Outbox, Outbox.message_id == Message.id)
                                .where(Outbox.kind == outbound.NOTIFICATION))
    assert outgoing(store, outbound.NOTIFICATION) == 1

    take_in(store, dovecot, settings, make_mail(message_id="ooo@customer.example", in_reply_to=survey,
                                                subject="Out of office: Re: Where is my order?",
                                                headers=OUT_OF_OFFICE))
    with store.reading() as session:
        resolved = session.get(Ticket, ticket)
        ooo = session.scalar(select(Message).where(Message.message_id == "ooo@customer.example"))
        assert (resolved.status, resolved.reopen_count, resolved.waiting_since) == ("resolved", 0, None)
        assert (ooo.ticket_id, ooo.loop) == (ticket, "auto-reply")
    assert needs_answer(store) == []
    assert outgoing(store, outbound.NOTIFICATION) == 1  # no second survey
    assert outgoing(store, outbound.ACK) == 1  # the customer's first mail only


def test_an_automatic_message_on_a_pending_ticket_leaves_it_pending(store, dovecot, settings):
    take_in(store, dovecot, settings, make_mail(message_id="order@customer.example"))
    with store.transaction() as session:
        ticket = session.scalar(select(Ticket.id))
        change_status(session, ticket, "pending", actor=None, at=T0 + timedelta(hours=1), settings=settings)
    take_in(store, dovecot, settings, make_mail(message_id="ooo@customer.example", in_reply_to="order@customer.example",
                                                subject="Automatic reply", headers=OUT_OF_OFFICE))
    with store.reading() as session:
        assert session.get(Ticket, ticket).status == "pending"


def test_an_automatic_message_that_opens_a_ticket_asks_nobody_for_an_answer(store, dovecot, settings):
    settings = dataclasses.replace(settings, sla=(SlaSettings(name="everyone", first_response=3600),))
    take_in(store, dovecot, settings, make_mail(message_id="news@list.example", sender="news@list.example",
                                                subject="Our newsletter", headers={"List-Id": "<news.list.example>"}))
    with store.reading() as session:
        ticket = session.scalar(select(Ticket))
        assert (ticket.status, ticket.waiting_since, ticket.sla_name, ticket.automatic) == ("open", None, None, True)
        automatic, _more = queue_rows(session, view="automatic", queue=None, operator_id=0, now=T0)
    assert needs_answer(store) == []
    assert [row.subject for row in automatic] == ["Our newsletter"]
    assert outgoing(store, outbound.ACK) == 0
