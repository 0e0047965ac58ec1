"""The outbox against a real aiosmtpd sink on real SQLite and PostgreSQL: delivery, retries, failures, races, crash."""

from __future__ import annotations

import email
import email.policy

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from mailticket import smtp
from mailticket.db.models import NOTE, Event, Message, Operator, Outbox, Ticket
from mailticket.db.store import Store
from mailticket.mail.loops import DeliveryFailure
from mailticket.service import actions, outbox, undelivered
from mailticket.service.claims import claim
from mailticket.service.outbox import SendCounts, flush_sync
from tests.factories import SETTINGS, T0, make_operator, make_ticket
from tests.smtp_sink import DATA, PERMANENT, RCPT, TEMPORARY, SmtpSink, self_signed

REPO = Path(__file__).resolve().parents[1]
T1 = T0 + timedelta(hours=1)  # the operator replies
T2 = T1 + timedelta(minutes=1)  # the outbox runs
KILL_WAIT = 20.0
CRASHING_FLUSH = """
import sys
from dataclasses import replace
from datetime import datetime
from mailticket.db.store import Store
from mailticket.service.outbox import flush_sync
from tests.factories import SETTINGS
from mailticket.config import SmtpSettings
smtp = SmtpSettings(host="127.0.0.1", port=int(sys.argv[2]), security="none", timeout=float(sys.argv[4]))
flush_sync(Store(sys.argv[1]), replace(SETTINGS, smtp=smtp), now=datetime.fromisoformat(sys.argv[3]))
"""


def queue_replies(store: Store, count: int = 1, *, at=T1, status: str | None = None) -> list[int]:
    """`count` tickets from customer mail received at T0, each with an operator's reply queued at `at`."""
    operator = make_operator(store, "olga")
    tickets = [make_ticket(store, message_id=f"c{n}@customer.example", sender=f"c{n}@customer.example",
                           subject=f"Order {n}") for n in range(count)]
    for ticket in tickets:
        reply(store, ticket, operator, at=at, status=status)
    return tickets


def reply(store: Store, ticket: int, operator_id: int, *, at, status: str | None = None) -> str:
    with store.transaction() as s:
        operator = s.get(Operator, operator_id)
        view = claim(s, ticket, operator, SETTINGS.claims.ttl, now=at)
        return actions.reply(s, SETTINGS, ticket, operator, "It ships today.", view.token, status=status,
                             now=at).message_id


def settings_for(sink: SmtpSink):
    return replace(SETTINGS, smtp=sink.settings())


def rows(store: Store) -> list[Outbox]:
    with store.reading() as s:
        return s.scalars(select(Outbox).order_by(Outbox.id)).all()


def ticket_of(store: Store, ticket_id: int) -> Ticket:
    with store.reading() as s:
        return s.get(Ticket, ticket_id)


def notes(store: Store, ticket_id: int) -> list[str]:
    with store.reading() as s:
        return s.scalars(select(Message.text).where(Message.ticket_id == ticket_id, Message.direction == NOTE)).all()


def events(store: Store, ticket_id: int) -> list[str]:
    with store.reading() as s:
        return s.scalars(select(Event.kind).where(Event.ticket_id == ticket_id).order_by(Event.id)).all()


def outgoing(store: Store) -> dict[str, bytes]:
    """Message-ID -> stored bytes, with the CRLF line ends they travel with (SMTP sends lines, not the file)."""
    with store.reading() as s:
        found = s.execute(select(Message.message_id, Message.raw).join(Outbox, Outbox.message_id == Message.id))
        return {r.message_id: re.sub(rb"\r?\n", b"\r\n", r.raw) for r in found}


def test_a_queued_reply_is_delivered_once_with_its_fixed_message_id(store, smtp_sink):
    [ticket] = queue_replies(store)
    [(message_id, raw)] = outgoing(store).items()

    assert flush_sync(store, settings_for(smtp_sink), now=T2) == SendCounts(sent=1)
    assert flush_sync(store, settings_for(smtp_sink), now=T2 + timedelta(hours=1)) == SendCounts()

    [received] = smtp_sink.messages
    assert received.message_id == message_id and received.raw == raw
    assert (received.sender, received.recipients) == ("support@shop.example", ("c0@customer.example",))
    [row] = rows(store)
    assert (row.status, row.sent_at, row.lease_until, row.attempts) == ("sent", T2, None, 1)


def test_a_relay_slow_to_confirm_the_data_gets_the_reply_once(store, smtp_sink):
    queue_replies(store)
    # The relay holds the whole message and answers 250 after three times the command timeout: RFC 5321 asks a
    # client to wait ten minutes for that answer, so the reply is delivered once, not once per retry.
    settings = replace(SETTINGS, smtp=smtp_sink.settings(timeout=1.0))
    smtp_sink.delay_answer(3.0)
    assert flush_sync(store, settings, now=T2) == SendCounts(sent=1)
    assert len(smtp_sink.messages) == 1 and rows(store)[0].status == "sent"


def test_a_reply_to_a_subject_of_one_endless_word_is_delivered(store, smtp_sink):
    operator = make_operator(store, "olga")
    ticket = make_ticket(store, subject="x" * 3000)
    reply(store, ticket, operator, at=T1)
    assert flush_sync(store, settings_for(smtp_sink), now=T2) == SendCounts(sent=1)
    [received] = smtp_sink.messages
    assert max(len(line) for line in received.raw.split(b"\r\n")) <= 998
    assert email.message_from_bytes(received.raw, policy=email.policy.default)["Subject"].startswith("Re: xxx")


def test_smtp_down_for_a_while_then_each_reply_is_delivered_exactly_once(store, smtp_sink):
    queue_replies(store, 5)
    settings = settings_for(smtp_sink)
    smtp_sink.stop()
    now = T2
    for _ in range(3):  # refused connections
        assert flush_sync(store, settings, now=now).sent == 0
        now += timedelta(minutes=10)
    smtp_sink.start()
    smtp_sink.refuse(TEMPORARY, times=3, at=RCPT)  # greylisting, then a full queue
    smtp_sink.refuse(TEMPORARY, times=2, at=DATA)
    for _ in range(6):
        flush_sync(store, settings, now=now)
        now += timedelta(hours=1)

    assert Counter(smtp_sink.message_ids()) == Counter(list(outgoing(store)))  # each once, none missing
    assert all(row.status == "sent" for row in rows(store))
    assert any(row.attempts > 1 for row in rows(store))


def test_a_relay_that_is_down_costs_one_attempt_per_pass_not_one_per_reply(store, smtp_sink):
    queue_replies(store, 5)
    smtp_sink.stop()

    counts = asyncio.run(outbox.flush(store, settings_for(smtp_sink), now=T2, connections=1))

    assert counts == SendCounts(retried=5)
    assert sorted(row.attempts for row in rows(store)) == [0, 0, 0, 0, 1]
    assert {row.status for row in rows(store)} == {"queued"} and all(row.lease_until is None for row in rows(store))
    # The four not tried are due again at once; the one tried waits its backoff.
    assert sorted(row.next_attempt_at for row in rows(store)) == [T1] * 4 + [T2 + outbox.backoff(1)]


def test_a_stopping_daemon_starts_no_new_send_and_hands_the_rest_back(store, smtp_sink):
    queue_replies(store, 5)

    counts = asyncio.run(outbox.flush(store, settings_for(smtp_sink), now=T2, connections=1,
                                      stopping=lambda: len(smtp_sink.messages) >= 1))

    assert counts == SendCounts(sent=1, retried=4) and len(smtp_sink.messages) == 1
    waiting = [row for row in rows(store) if row.status != "sent"]
    assert [(row.status, row.attempts, row.lease_until) for row in waiting] == [("queued", 0, None)] * 4


def test_a_5xx_gives_an_internal_note_and_reopens_the_ticket(store, smtp_sink):
    [ticket] = queue_replies(store, status="resolved")
    smtp_sink.refuse(PERMANENT, at=RCPT)

    assert flush_sync(store, settings_for(smtp_sink), now=T2) == SendCounts(failed=1)

    [row] = rows(store)
    assert row.status == "failed" and "550" in row.last_error
    [note] = notes(store, ticket)
    assert "reply to c0@customer.example could not be delivered" in note and "550 5.1.1" in note
    t = ticket_of(store, ticket)
    assert (t.status, t.resolved_at, t.waiting_since, t.first_response_at) == ("open", None, T0, None)
    assert events(store, ticket)[-2:] == ["undelivered", "status"]
    assert smtp_sink.messages == []


def test_retries_back_off_exponentially(store, smtp_sink):
    [ticket] = queue_replies(store)
    settings = settings_for(smtp_sink)
    smtp_sink.refuse(TEMPORARY)
    now, waits = T2, []
    for attempt in range(1, outbox.MAX_ATTEMPTS):
        assert flush_sync(store, settings, now=now) == SendCounts(retried=1)
        [row] = rows(store)
        assert row.attempts == attempt and row.status == "queued" and "451" in row.last_error
        waits.append((row.next_attempt_at - now).total_seconds())
        # Not due a second before its time.
        assert flush_sync(store, settings, now=row.next_attempt_at - timedelta(seconds=1)) == SendCounts()
        now = row.next_attempt_at

    assert waits == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert flush_sync(store, settings, now=now) == SendCounts(failed=1)
    assert "gave up after 10 attempts" in rows(store)[0].last_error
    assert len(notes(store, ticket)) == 1 and ticket_of(store, ticket).status == "open"


def test_two_flushers_never_send_the_same_row(store, smtp_sink):
    queue_replies(store, 60)
    settings = settings_for(smtp_sink)
    # A slow relay keeps each pass busy long enough that the other instance always finds rows left to take.
    smtp_sink.delay_answer(0.05)
    start = threading.Barrier(2)
    results: list[SendCounts] = []

    def instance() -> None:
        own = Store(store.url)  # an engine of its own, like another process
        start.wait()
        results.append(flush_sync(own, settings, now=T2))
        own.dispose()

    threads = [threading.Thread(target=instance) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(r.sent for r in results) == 60 and all(r.sent for r in results)  # both took a share
    assert Counter(smtp_sink.message_ids()) == Counter(list(outgoing(store)))
    assert all(row.status == "sent" and row.attempts == 1 for row in rows(store))


def test_pickers_in_overlapping_transactions_get_disjoint_rows(store):
    queue_replies(store, 6)
    theirs: list[int] = []

    def other_instance() -> None:
        # On PostgreSQL it skips the rows locked below at once; on SQLite it waits for the first commit.
        own = Store(store.url)
        with own.transaction() as s:
            theirs.extend(row.id for row in outbox.pick(s, T2, 6, 300))
        own.dispose()

    with store.transaction() as s:
        ours = [row.id for row in outbox.pick(s, T2, 3, 300)]
        other = threading.Thread(target=other_instance)
        other.start()
        other.join(timeout=1)  # the other instance is at work (or waiting) while this transaction is open
    other.join()

    assert len(ours) == 3 and len(theirs) == 3 and not set(ours) & set(theirs)
    with store.transaction() as s:
        assert outbox.pick(s, T2 + timedelta(seconds=299), 6, 300) == []  # all leased


def test_the_first_sent_reply_records_the_first_response_and_a_later_one_does_not_change_it(store, smtp_sink):
    [ticket] = queue_replies(store)
    settings = settings_for(smtp_sink)
    flush_sync(store, settings, now=T2)
    with store.reading() as s:
        olga = s.scalar(select(Operator.id))
    reply(store, ticket, olga, at=T2 + timedelta(hours=1))
    flush_sync(store, settings, now=T2 + timedelta(hours=2))

    t = ticket_of(store, ticket)
    assert (t.first_response_at, t.first_response_seconds) == (T2, (T2 - T0).total_seconds())
    assert len(smtp_sink.messages) == 2


def test_an_acknowledgement_is_not_a_response(store, smtp_sink):
    [ticket] = queue_replies(store)
    with store.transaction() as s:
        s.execute(update(Outbox).values(kind="ack"))

    assert flush_sync(store, settings_for(smtp_sink), now=T2) == SendCounts(sent=1)
    assert ticket_of(store, ticket).first_response_at is None


def test_a_reply_still_in_the_outbox_is_not_a_response(store, smtp_sink):
    [ticket] = queue_replies(store)
    assert ticket_of(store, ticket).first_response_at is None
    smtp_sink.refuse(TEMPORARY)

    flush_sync(store, settings_for(smtp_sink), now=T2)

    assert rows(store)[0].status == "queued"
    assert ticket_of(store, ticket).first_response_at is None


def test_a_bounce_of_our_reply_becomes_a_note_and_fails_the_row(store, smtp_sink):
    [ticket] = queue_replies(store)
    flush_sync(store, settings_for(smtp_sink), now=T2)
    [message_id] = outgoing(store)
    later = T2 + timedelta(minutes=5)

    failed = DeliveryFailure((message_id,), frozenset({"c0@customer.example"}), "550 5.1.1 user unknown", "")
    about_someone_else = DeliveryFailure((message_id,), frozenset({"other@customer.example"}), "550", "")
    with store.transaction() as s:
        # A report about another recipient of the same id (forged, or confused) changes nothing.
        assert undelivered.bounced(s, message_id, about_someone_else, later, SETTINGS) is None
        assert undelivered.bounced(s, f"<{message_id}>", failed, later, SETTINGS) == ticket
    with store.transaction() as s:  # the same DSN again, and one for mail that is not ours
        assert undelivered.bounced(s, message_id, failed, later, SETTINGS) is None
        assert undelivered.bounced(s, "stranger@elsewhere.example", failed, later, SETTINGS) is None

    [row] = rows(store)
    assert row.status == "failed" and "user unknown" in row.last_error
    [note] = notes(store, ticket)
    assert "could not be delivered" in note and "user unknown" in note
    t = ticket_of(store, ticket)
    # It never reached the customer: no response yet, and the customer is waiting since their mail.
    assert (t.status, t.waiting_since, t.first_response_at, t.first_response_seconds) == ("open", T0, None, None)
    assert "bounced" in events(store, ticket)


def test_sigkill_during_a_send_loses_no_reply(db_url, smtp_sink):
    store = Store(db_url)
    queue_replies(store)
    [(message_id, raw)] = outgoing(store).items()
    smtp_sink.delay_answer(60)  # the sink holds the whole message but does not answer 250

    settings = settings_for(smtp_sink)
    child = subprocess.Popen([sys.executable, "-c", CRASHING_FLUSH, db_url, str(smtp_sink.port), T2.isoformat(),
                              str(settings.smtp.timeout)], cwd=REPO)
    try:
        assert smtp_sink.handler.received.wait(KILL_WAIT), "the child never sent the message"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    smtp_sink.delay_answer(0)
    assert rows(store)[0].status == "sending"

    lease = outbox.lease_seconds(settings.smtp)
    assert flush_sync(store, settings, now=T2 + timedelta(seconds=lease - 1)) == SendCounts()  # still leased
    assert flush_sync(store, settings, now=T2 + timedelta(seconds=lease + 1)) == SendCounts(sent=1)

    assert [m.message_id for m in smtp_sink.messages] == [message_id, message_id]
    assert all(m.raw == raw for m in smtp_sink.messages)
    assert rows(store)[0].status == "sent"
    store.dispose()


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_smtp_logs_in_over_tls_and_a_wrong_password_is_the_relay_not_the_message(tmp_path, security):
    cert, key, trust = self_signed(tmp_path)
    sink = SmtpSink(tls=security, cert=cert, key=key, login=("shop", "s3cret"))
    sink.start()
    raw = b"From: support@shop.example\r\nMessage-ID: <x@shop.example>\r\n\r\nHello\r\n"
    try:
        asyncio.run(smtp.send(sink.settings(username="shop", password="s3cret"), raw, "support@shop.example",
                              ["ana@customer.example"], tls_context=trust))
        with pytest.raises(smtp.RelayUnavailable) as refused:
            asyncio.run(smtp.send(sink.settings(username="shop", password="wrong"), raw, "support@shop.example",
                                  ["ana@customer.example"], tls_context=trust))
    finally:
        sink.stop()
    assert sink.message_ids() == ["x@shop.example"] and set(sink.logins) == {"shop"}
    assert refused.value.code == 535


@pytest.mark.parametrize(("code", "at", "failure"), [
    (TEMPORARY, RCPT, smtp.TemporaryFailure), (TEMPORARY, DATA, smtp.TemporaryFailure),
    (PERMANENT, RCPT, smtp.PermanentFailure), (PERMANENT, DATA, smtp.PermanentFailure),
])
def test_smtp_tells_temporary_from_permanent_failures(smtp_sink, code, at, failure):
    smtp_sink.refuse(code, at=at)
    with pytest.raises(failure) as refused:
        asyncio.run(smtp.send(smtp_sink.settings(), b"Subject: x\r\n\r\nx\r\n", "a@shop.example", ["b@c.example"]))
    assert refused.value.code == code and type(refused.value) is failure


def test_smtp_calls_a_closed_port_unavailable(smtp_sink):
    smtp_sink.stop()
    with pytest.raises(smtp.RelayUnavailable, match="refused|Connect call failed"):
        asyncio.run(smtp.send(smtp_sink.settings(), b"Subject: x\r\n\r\nx\r\n", "a@shop.example", ["b@c.example"]))
