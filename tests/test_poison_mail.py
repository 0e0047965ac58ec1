"""Poison mail between good mail, polled from a real Dovecot into SQLite and PostgreSQL: quarantined with its
reason, never blocking the messages around it, never a half-written batch."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

from mailticket.config import MailboxSettings, Settings
from mailticket.db.models import Message, Quarantine, Ticket
from mailticket.db.store import Store
from mailticket.service.poll import poll_mailbox
from tests.mails import SUPPORT, make_mail

LONG_LOCAL_PART = "a" * 330


def poison() -> bytes:
    """A sender address over 320 characters and a Content-ID over 255: both longer than their columns."""
    return (
        f"From: Someone <{LONG_LOCAL_PART}@customer.example>\r\n"
        f"To: {SUPPORT}\r\nSubject: poison\r\nMessage-ID: <poison@customer.example>\r\n"
        "Date: Mon, 2 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
        f"--b\r\nContent-Type: image/png\r\nContent-ID: <{'c' * 300}@customer.example>\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--b--\r\n"
    ).encode()


def good(n: int) -> bytes:
    return make_mail(message_id=f"good{n}@customer.example", sender=f"c{n}@customer.example",
                     subject=f"Order {n}")


@pytest.fixture
def box(dovecot, mailbox_user) -> MailboxSettings:
    user, password = mailbox_user
    return MailboxSettings(name="support", host=dovecot.host, port=dovecot.port, security="none",
                           username=user, password=password, address=SUPPORT, batch_size=50)


def counts(store: Store) -> tuple[int, int, int]:
    with store.reading() as session:
        return (session.scalar(select(func.count()).select_from(Ticket)),
                session.scalar(select(func.count()).select_from(Message).where(Message.direction == "in")),
                session.scalar(select(func.count()).select_from(Quarantine)))


def test_a_poison_message_between_good_ones_is_quarantined_and_the_good_ones_are_tickets(store, dovecot, box):
    dovecot.deliver(box.username, [good(1), poison(), good(2)])
    settings = Settings(mailboxes=(box,))
    first = poll_mailbox(store, settings, box)
    assert (first.fetched, first.created, first.quarantined) == (3, 2, 1)
    assert counts(store) == (2, 2, 1)
    with store.reading() as session:
        reason = session.scalar(select(Quarantine.reason))
        assert "sender" in reason and "address" in reason
        assert session.scalar(select(Quarantine.raw)) == poison()
    second = poll_mailbox(store, settings, box)
    assert second.fetched == 0
    assert counts(store) == (2, 2, 1)


REFUSE_SQLITE = """CREATE TRIGGER refuse_poison BEFORE INSERT ON messages WHEN NEW.subject = 'refused'
BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"""
REFUSE_PG = ["""CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN
  IF NEW.subject = 'refused' THEN RAISE EXCEPTION 'refused by a trigger'; END IF; RETURN NEW; END $$
  LANGUAGE plpgsql""",
             "CREATE TRIGGER refuse_poison BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION refuse_poison()"]
DROP_PG = ["DROP TRIGGER IF EXISTS refuse_poison ON messages", "DROP FUNCTION IF EXISTS refuse_poison()"]


@pytest.fixture
def refusing_store(store):
    """The store with a trigger that refuses any message whose subject is 'refused': a database error that no
    validation at ingest foresees."""
    statements = REFUSE_PG if store.dialect == "postgresql" else [REFUSE_SQLITE]
    with store.engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))
    yield store
    if store.dialect == "postgresql":
        with store.engine.begin() as conn:
            for statement in DROP_PG:
                conn.execute(text(statement))


def test_a_message_the_database_refuses_is_quarantined_and_leaves_nothing_half_written(refusing_store, dovecot,
                                                                                      box):
    store = refusing_store
    refused = make_mail(message_id="refused@customer.example", sender="r@customer.example", subject="refused")
    dovecot.deliver(box.username, [good(1), refused, good(2)])
    settings = Settings(mailboxes=(box,))
    first = poll_mailbox(store, settings, box)
    assert (first.fetched, first.created, first.quarantined) == (3, 2, 1)
    # No ticket, customer or history was left behind by the refused message.
    assert counts(store) == (2, 2, 1)
    with store.reading() as session:
        assert "refused by a trigger" in session.scalar(select(Quarantine.reason))
        subjects = session.scalars(select(Ticket.subject).order_by(Ticket.id)).all()
    assert subjects == ["Order 1", "Order 2"]
    assert poll_mailbox(store, settings, box).fetched == 0
