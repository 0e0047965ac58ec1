"""Polling a real Dovecot into real SQLite and PostgreSQL: idempotent, crash-safe, poison-proof."""

from __future__ import annotations

import json
from email.message import EmailMessage
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
from sqlalchemy import func, select

from mailticket.config import LimitSettings, MailboxSettings, Settings
from mailticket.db.models import Message, Quarantine, Ticket
from mailticket.db.store import Store
from mailticket.imap import OVERSIZE_HEAD_BYTES
from mailticket.service.poll import poll_mailbox
from tests.mails import SUPPORT, make_mail

SEEN = "\\Seen"


@pytest.fixture
def box(dovecot, mailbox_user) -> MailboxSettings:
    user, password = mailbox_user
    return MailboxSettings(name="support", host=dovecot.host, port=dovecot.port, security="none",
                           username=user, password=password, address=SUPPORT, batch_size=50)


def settings_for(box: MailboxSettings, **changes) -> Settings:
    return Settings(mailboxes=(box,), **changes)


def count(store: Store, model) -> int:
    """Rows of a table; for messages, the inbound ones (acknowledgements go out on new tickets)."""
    query = select(func.count()).select_from(model)
    if model is Message:
        query = query.where(Message.direction == "in")
    with store.reading() as session:
        return session.scalar(query)


def conversation(n: int, replies: int = 0) -> list[bytes]:
    first = make_mail(message_id=f"c{n}-0@customer.example", sender=f"c{n}@customer.example", subject=f"Order {n}")
    mails = [first]
    for r in range(1, replies + 1):
        refs = [f"c{n}-{i}@customer.example" for i in range(r)]
        mails.append(make_mail(message_id=f"c{n}-{r}@customer.example", sender=f"c{n}@customer.example",
                               subject=f"Re: Order {n}", in_reply_to=refs[-1], references=refs))
    return mails


def test_a_second_poll_adds_nothing_and_messages_end_up_seen(store, dovecot, box):
    dovecot.deliver(box.username, [m for n in range(5) for m in conversation(n, replies=2)])
    first = poll_mailbox(store, settings_for(box), box)
    assert (first.fetched, first.created, first.appended) == (15, 5, 10)
    second = poll_mailbox(store, settings_for(box), box)
    assert second.fetched == 0
    assert count(store, Message) == 15 and count(store, Ticket) == 5
    assert all(SEEN in flags for flags in dovecot.flags(box.username).values())


def test_the_same_message_delivered_twice_is_stored_once(store, dovecot, box):
    raw = make_mail()
    dovecot.deliver(box.username, [raw, raw])
    counts = poll_mailbox(store, settings_for(box), box)
    assert (counts.fetched, counts.created, counts.duplicates) == (2, 1, 1)
    assert count(store, Message) == 1


def test_a_changed_uidvalidity_adds_nothing_already_stored(store, dovecot, box):
    dovecot.deliver(box.username, conversation(1, replies=3))
    poll_mailbox(store, settings_for(box), box)
    dovecot.change_uidvalidity(box.username)
    dovecot.deliver(box.username, conversation(2))
    counts = poll_mailbox(store, settings_for(box), box)
    assert (counts.fetched, counts.duplicates, counts.created) == (5, 4, 1)
    assert count(store, Message) == 5


def test_processed_mail_is_moved_to_the_processed_folder(store, dovecot, box):
    box = replace(box, processed_folder="Processed")
    dovecot.deliver(box.username, conversation(1, replies=1))
    poll_mailbox(store, settings_for(box), box)
    assert dovecot.status(box.username, "INBOX")["messages"] == 0
    assert dovecot.status(box.username, "Processed")["messages"] == 2


def test_internaldate_is_the_received_time_of_the_ticket(store, dovecot, box):
    from datetime import datetime, timezone

    when = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
    dovecot.deliver(box.username, [make_mail()], internaldate=when)
    poll_mailbox(store, settings_for(box), box)
    with store.reading() as session:
        assert session.scalar(select(Ticket.created_at)) == when


def test_nothing_fetched_is_dropped_whatever_comes_in_and_the_messages_after_it_are_ingested(store, dovecot, box):
    random_bytes = os.urandom(4000).replace(b"\r", b"").replace(b"\n", b"") + b"\r\n"
    huge = make_mail(body="placeholder", message_id="huge@c.example", subject="Photos of the damage").replace(
        b"placeholder", (b"y" * 998 + b"\r\n") * 60_000)  # about 60 MB
    assert len(huge) > 60_000_000
    broken = (b"From: ana@customer.example\r\nSubject: broken\r\nMessage-ID: <broken@c.example>\r\n"
              b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"NOPE\"\r\n\r\njunk\r\n")
    good = conversation(1, replies=1)
    dovecot.deliver(box.username, [random_bytes, good[0], huge, broken, good[1]])
    settings = settings_for(box, limits=LimitSettings(max_message_bytes=25 * 1024 * 1024))
    counts = poll_mailbox(store, settings, box)
    assert (counts.fetched, counts.quarantined, counts.created, counts.appended) == (5, 1, 3, 1)
    # Every message fetched is kept: stored on a ticket, or quarantined.
    assert count(store, Message) + count(store, Quarantine) == counts.fetched
    with store.reading() as session:
        assert "header" in session.scalar(select(Quarantine.reason))
        # The huge one opened its ticket from its head alone; a note says what stayed in the mailbox.
        ticket = session.scalar(select(Message.ticket_id).where(Message.message_id == "huge@c.example"))
        note = session.scalar(select(Message.text).where(Message.ticket_id == ticket, Message.direction == "note"))
        raw = session.scalar(select(Message.raw).where(Message.message_id == "huge@c.example"))
    assert raw == huge[:OVERSIZE_HEAD_BYTES]
    assert f"{len(huge) / 1_000_000:.1f} MB" in note and "UID 3" in note and "folder INBOX" in note
    assert all(SEEN in flags for flags in dovecot.flags(box.username).values())


def test_the_note_of_an_oversized_message_names_the_attachments_it_held_back(store, dovecot, box):
    photo = b"\xff\xd8" + os.urandom(3_000_000)
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "ana@customer.example", SUPPORT, "The broken vase"
    mail["Message-ID"] = "<vase@customer.example>"
    mail.set_content("Photos attached.")
    mail.add_attachment(photo, maintype="image", subtype="jpeg", filename="vase.jpg")
    dovecot.deliver(box.username, [mail.as_bytes()])
    settings = settings_for(box, limits=LimitSettings(max_message_bytes=1_000_000))
    assert poll_mailbox(store, settings, box).created == 1
    with store.reading() as session:
        note = session.scalar(select(Message.text).where(Message.direction == "note"))
        text = session.scalar(select(Message.text).where(Message.direction == "in"))
    assert "vase.jpg (4.1 MB)" in note and "Photos attached." in text


def write_config(tmp_path, db_url: str, box: MailboxSettings) -> str:
    path = tmp_path / "config.toml"
    path.write_text(f"""
[database]
url = "{db_url}"

[[mailbox]]
name = "{box.name}"
host = "{box.host}"
port = {box.port}
security = "none"
username = "{box.username}"
password = "{box.password}"
address = "{box.address}"
""")
    return str(path)


def cli(config: str, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mailticket", "-c", config, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def test_poll_once_prints_its_counts_as_json(tmp_path, db_url, dovecot, box):
    dovecot.deliver(box.username, conversation(1, replies=2))
    proc = cli(write_config(tmp_path, db_url, box), "poll-once", "--json")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert json.loads(out) == {"fetched": 3, "created": 1, "appended": 2, "duplicates": 0, "autoreplies": 0,
                               "quarantined": 0, "spam": 0}


def test_poll_once_killed_in_the_middle_of_a_batch_loses_and_doubles_nothing(tmp_path, db_url, dovecot, box):
    mails = [m for n in range(400) for m in conversation(n, replies=4)]  # 2,000 messages
    dovecot.deliver(box.username, mails)
    config = write_config(tmp_path, db_url, box)
    store = Store(db_url)
    proc = cli(config, "poll-once")
    deadline = time.monotonic() + 120
    while count(store, Message) < 300 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stored_at_kill = count(store, Message)
    assert 0 < stored_at_kill < 2000, "the kill must land in the middle of the pass"
    proc = cli(config, "poll-once", "--json")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    with store.reading() as session:
        ids = session.scalars(select(Message.message_id).where(Message.direction == "in")).all()
    assert len(ids) == len(set(ids)) == 2000
    assert count(store, Ticket) == 400
    assert all(SEEN in flags for flags in dovecot.flags(box.username).values())
    store.dispose()
