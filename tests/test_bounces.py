"""A bounce of one of our replies, arriving by IMAP (a real Dovecot), becomes a note on its ticket, fails the outbox row
and opens the ticket again; anything that is no genuine report of failed delivery changes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sqlalchemy import select, update

from mailticket.config import MailboxSettings, Settings
from mailticket.db.models import NOTE, Event, Message, Operator, Outbox, Ticket
from mailticket.service import actions
from mailticket.service import claims as svc
from mailticket.service.poll import poll_mailbox
from tests.factories import SETTINGS, T0, make_operator, make_ticket
from tests.mails import SUPPORT

DSN = """From: Mail Delivery System <MAILER-DAEMON@mx.customer.example>
To: support@shop.example
Subject: Undelivered Mail Returned to Sender
Message-ID: <dsn-1@mx.customer.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

I'm sorry to have to inform you that your message could not be delivered.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.customer.example

Final-Recipient: rfc822; ana@customer.example
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 mailbox unknown

--B
Content-Type: text/rfc822-headers

From: Support <support@shop.example>
To: ana@customer.example
Subject: Re: Where is my order? [#1]
Message-ID: <{reply_id}>

--B--
"""


@pytest.fixture
def box(dovecot, mailbox_user) -> MailboxSettings:
    user, password = mailbox_user
    return MailboxSettings(name="support", host=dovecot.host, port=dovecot.port, security="none",
                           username=user, password=password, address=SUPPORT)


def sent_reply(store, *, status: str | None = None) -> tuple[int, str]:
    """A ticket answered by Ana, the reply delivered (and the ticket set to `status` with it)."""
    ticket = make_ticket(store)
    ana = make_operator(store, "ana")
    with store.transaction() as s:
        view = svc.claim(s, ticket, s.get(Operator, ana), 900, now=T0)
        reply_id = actions.reply(s, SETTINGS, ticket, s.get(Operator, ana), "On its way!", view.token,
                                 now=T0 + timedelta(minutes=1), status=status).message_id
        s.execute(update(Outbox).values(status="sent", sent_at=T0 + timedelta(minutes=2)))
    return ticket, reply_id


def take_in(store, dovecot, box, raw: str) -> None:
    dovecot.deliver(box.username, [raw.replace("\n", "\r\n").encode()])
    assert poll_mailbox(store, Settings(mailboxes=(box,)), box).fetched == 1


def test_a_bounce_of_our_reply_is_a_note_on_its_ticket_and_fails_the_outbox_row(store, dovecot, box):
    ticket, reply_id = sent_reply(store)
    take_in(store, dovecot, box, DSN.replace("{reply_id}", reply_id))
    with store.reading() as s:
        assert s.scalar(select(Outbox.status)) == "failed"
        notes = s.scalars(select(Message.text).where(Message.ticket_id == ticket, Message.direction == NOTE)).all()
        assert any("5.1.1" in note for note in notes)
        assert s.get(Ticket, ticket).status == "open"
        bounce = s.scalar(select(Message).where(Message.message_id == "dsn-1@mx.customer.example"))
        assert (bounce.ticket_id, bounce.loop) == (ticket, "bounce")


def test_a_bounce_of_the_reply_that_set_a_ticket_pending_opens_it_again(store, dovecot, box):
    ticket, reply_id = sent_reply(store, status="pending")
    take_in(store, dovecot, box, DSN.replace("{reply_id}", reply_id))
    with store.reading() as s:
        answered = s.get(Ticket, ticket)
        # Open, waiting since the customer's mail again, its clock running: the customer never got the answer.
        assert (answered.status, answered.waiting_since, answered.sla_paused_since) == ("open", T0, None)
        assert (answered.reply_count, answered.first_response_at) == (0, None)
        assert "pending -> open (a reply could not be delivered)" in s.scalars(
            select(Event.detail).where(Event.ticket_id == ticket)).all()


@pytest.mark.parametrize("change", [
    # Anyone can write a report; it must come the way mail systems send them.
    {"From: Mail Delivery System <MAILER-DAEMON@mx.customer.example>": "From: Helpful Person <x@attacker.test>"},
    # A delay or a success notice fails nothing.
    {"Action: failed": "Action: delayed"},
    {"Action: failed": "Action: delivered"},
    # A report about someone else than the reply's recipient.
    {"Final-Recipient: rfc822; ana@customer.example": "Final-Recipient: rfc822; bob@elsewhere.example"},
], ids=["not-from-a-mail-system", "delayed", "delivered", "other-recipient"])
def test_a_report_that_is_no_genuine_failure_of_our_reply_changes_nothing(store, dovecot, box, change):
    ticket, reply_id = sent_reply(store)
    raw = DSN.replace("{reply_id}", reply_id)
    for old, new in change.items():
        raw = raw.replace(old, new)
    take_in(store, dovecot, box, raw)
    with store.reading() as s:
        assert s.scalar(select(Outbox.status)) == "sent"
        assert s.scalars(select(Message.text).where(Message.ticket_id == ticket, Message.direction == NOTE)).all() == []
