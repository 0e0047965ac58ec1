"""The IMAP adapter against a real, private Dovecot (see tests/dovecot.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from imapclient import IMAPClient

from mailticket.config import MailboxSettings
from mailticket.imap import MailboxConnection, MailboxError, connect_with_backoff, plan_batches
from tests.dovecot import Dovecot, free_port  # its fixtures come in through conftest's pytest_plugins

BIG = 10 ** 9  # a byte limit no test batch reaches


def message(n: int, *, body: bytes = b"", date: str = "Mon, 01 Jan 2024 09:00:00 +0000") -> bytes:
    return (f"From: customer{n}@example.com\r\nTo: support@example.com\r\nSubject: question {n}\r\n"
            f"Date: {date}\r\nMessage-ID: <{n}@example.com>\r\n\r\nHello {n}\r\n").encode() + body


def settings_for(server: Dovecot, user: tuple[str, str], **overrides) -> MailboxSettings:
    name, password = user
    values = dict(name="support", host=server.host, port=server.port, security="none", username=name,
                  password=password, address="support@example.com")
    return MailboxSettings(**(values | overrides))


def fetch_all(conn: MailboxConnection, after_uid: int = 0, **limits) -> list[list]:
    limits = {"batch_size": 100, "max_batch_bytes": BIG} | limits
    return list(conn.batches(after_uid, **limits))


def test_batches_fetch_only_messages_above_the_watermark(dovecot, mailbox_user):
    raws = [message(n) for n in range(5)]
    uids = dovecot.deliver(mailbox_user[0], raws)
    with MailboxConnection(settings_for(dovecot, mailbox_user)) as conn:
        conn.select()
        [batch] = fetch_all(conn, after_uid=uids[1])
        # The server answers "UID n:*" with the highest UID even when n is above it.
        nothing_new = fetch_all(conn, after_uid=uids[-1])
    assert [f.uid for f in batch] == uids[2:]
    assert [f.raw for f in batch] == raws[2:]
    assert nothing_new == []


def test_batches_hold_at_most_batch_size_messages_with_one_fetch_each(dovecot, mailbox_user, monkeypatch):
    uids = dovecot.deliver(mailbox_user[0], [message(n) for n in range(7)])
    fetches = []
    real_fetch = IMAPClient.fetch
    monkeypatch.setattr(IMAPClient, "fetch", lambda self, *a, **k: fetches.append(a) or real_fetch(self, *a, **k))
    with MailboxConnection(settings_for(dovecot, mailbox_user)) as conn:
        conn.select()
        batches = fetch_all(conn, batch_size=3)
    assert [[f.uid for f in b] for b in batches] == [uids[0:3], uids[3:6], uids[6:]]
    assert len(fetches) == 1 + 3  # the sizes, then one round trip per batch


def test_a_large_message_gets_a_batch_of_its_own(dovecot, mailbox_user):
    large = message(2, body=b"x" * 20_000 + b"\r\n")
    uids = dovecot.deliver(mailbox_user[0], [message(0), message(1), large, message(3), message(4)])
    with MailboxConnection(settings_for(dovecot, mailbox_user)) as conn:
        conn.select()
        batches = fetch_all(conn, batch_size=10, max_batch_bytes=1_000)
    assert [[f.uid for f in b] for b in batches] == [uids[0:2], uids[2:3], uids[3:5]]
    assert batches[1][0].raw == large


def test_plan_batches_limits_count_and_bytes():
    sizes = [(1, 10), (2, 10), (3, 10), (4, 50), (5, 5)]
    assert plan_batches(sizes, batch_size=2, max_batch_bytes=100) == [[1, 2], [3, 4], [5]]
    assert plan_batches(sizes, batch_size=9, max_batch_bytes=30) == [[1, 2, 3], [4], [5]]
    assert plan_batches([], batch_size=9, max_batch_bytes=30) == []


def test_fetching_does_not_mark_messages_seen(dovecot, mailbox_user):
    uids = dovecot.deliver(mailbox_user[0], [message(n) for n in range(3)])
    with MailboxConnection(settings_for(dovecot, mailbox_user)) as conn:
        conn.select()
        assert len(fetch_all(conn)[0]) == 3
    flags = dovecot.flags(mailbox_user[0])
    assert sorted(flags) == uids
    assert not any("\\Seen" in f for f in flags.values())


def test_finish_flags_messages_seen(dovecot, mailbox_user):
    uids = dovecot.deliver(mailbox_user[0], [message(n) for n in range(4)])
    with MailboxConnection(settings_for(dovecot, mailbox_user)) as conn:
        conn.select()
        conn.finish(uids[:2])
    flags = dovecot.flags(mailbox_user[0])
    assert sorted(flags) == uids  # nothing moved away
    assert [("\\Seen" in flags[uid]) for uid in uids] == [True, True, False, False]


def test_finish_moves_messages_to_the_processed_folder(dovecot, mailbox_user):
    user = mailbox_user[0]
    uids = dovecot.deliver(user, [message(n) for n in range(4)])
    assert "Processed" not in dovecot.folders(user)
    with MailboxConnection(settings_for(dovecot, mailbox_user, processed_folder="Processed")) as conn:
        conn.select()
        conn.finish(uids[:3])
        conn.finish([uids[3]])  # the folder exists by now
    assert sorted(dovecot.flags(user)) == []
    assert dovecot.status(user, "Processed")["messages"] == 4


@pytest.mark.parametrize("processed_folder", [None, "Processed"])
def test_leftovers_at_or_below_the_watermark_are_finished(dovecot, mailbox_user, processed_folder):
    user = mailbox_user[0]
    uids = dovecot.deliver(user, [message(n) for n in range(4)])
    with MailboxConnection(settings_for(dovecot, mailbox_user, processed_folder=processed_folder)) as conn:
        conn.select()
        conn.finish_leftovers(0)  # nothing committed yet: nothing to finish
        assert all("\\Seen" not in f for f in dovecot.flags(user).values())
        conn.finish_leftovers(uids[1])
    flags = dovecot.flags(user)
    if processed_folder:
        assert sorted(flags) == uids[2:] and dovecot.status(user, processed_folder)["messages"] == 2
    else:
        assert [("\\Seen" in flags[uid]) for uid in uids] == [True, True, False, False]


def test_internaldate_is_the_servers_receive_time(dovecot, mailbox_user):
    received = datetime(2024, 3, 1, 12, 30, 5, tzinfo=timezone(timedelta(hours=2)))
    # The Date header says something else on purpose: only the server's time counts.
    uid = dovecot.append(mailbox_user[0], message(1, date="Sun, 01 Jan 2023 00:00:00 +0000"),
                         internaldate=received)
    with MailboxConnection(settings_for(dovecot, mailbox_user)) as conn:
        conn.select()
        [[fetched]] = fetch_all(conn)
    assert fetched.uid == uid
    assert fetched.internaldate == datetime(2024, 3, 1, 10, 30, 5, tzinfo=timezone.utc)
    assert fetched.internaldate.utcoffset() == timedelta(0)


def test_a_bad_password_raises_a_mailbox_error_naming_the_mailbox(dovecot, mailbox_user):
    sleeps = []
    settings = settings_for(dovecot, mailbox_user, password="wrong")
    with pytest.raises(MailboxError) as caught:
        connect_with_backoff(settings, attempts=3, base_delay=0.01, sleep=sleeps.append)
    assert "'support'" in str(caught.value) and "login" in str(caught.value)
    assert not caught.value.transient
    assert sleeps == []  # a refused login is not retried


def test_an_unknown_folder_raises_a_mailbox_error_naming_the_folder(dovecot, mailbox_user):
    with MailboxConnection(settings_for(dovecot, mailbox_user, folder="Nope")) as conn:
        with pytest.raises(MailboxError, match="'support'.*'Nope'"):
            conn.select()


def test_starttls_refuses_a_server_without_it(dovecot, mailbox_user):
    with pytest.raises(MailboxError, match="offers no STARTTLS") as caught:
        MailboxConnection(settings_for(dovecot, mailbox_user, security="starttls"))
    assert not caught.value.transient


def test_an_unreachable_server_raises_after_backing_off(mailbox_user):
    sleeps = []
    settings = MailboxSettings(name="support", host="127.0.0.1", port=free_port(), security="none",
                               username="u", password="p", address="support@example.com")
    with pytest.raises(MailboxError, match="'support'.*gave up after 5 attempts") as caught:
        connect_with_backoff(settings, attempts=5, base_delay=1, max_delay=5, sleep=sleeps.append)
    assert caught.value.transient
    assert sleeps == [1, 2, 4, 5]


def test_connecting_retries_until_the_server_answers():
    late = Dovecot()
    late.add_user("late", "secret")
    settings = MailboxSettings(name="support", host=late.host, port=late.port, security="none",
                               username="late", password="secret", address="support@example.com")
    sleeps = []

    def sleep_then_start(delay: float) -> None:
        sleeps.append(delay)
        if len(sleeps) == 2:
            late.start()

    try:
        with connect_with_backoff(settings, attempts=4, base_delay=0.01, sleep=sleep_then_start) as conn:
            assert conn.select() > 0
    finally:
        late.stop()
    assert sleeps == [0.01, 0.02]


def test_reconnect_after_the_server_drops_the_connection(dovecot, mailbox_user):
    uids = dovecot.deliver(mailbox_user[0], [message(n) for n in range(3)])
    settings = settings_for(dovecot, mailbox_user)
    conn = connect_with_backoff(settings, attempts=3, base_delay=0.01)
    conn.select()
    batches = conn.batches(0, batch_size=1, max_batch_bytes=BIG)
    [first] = next(batches)
    dovecot.kill_connections(mailbox_user[0])
    with pytest.raises(MailboxError, match="'support'.*connection lost") as caught:
        next(batches)
    assert caught.value.transient
    conn.close()  # closing a dead connection is quiet
    with connect_with_backoff(settings, attempts=3, base_delay=0.01) as again:
        again.select()
        rest = [f.uid for batch in fetch_all(again, after_uid=first.uid) for f in batch]
    assert [first.uid, *rest] == uids


def test_a_changed_uidvalidity_is_reported(dovecot, mailbox_user):
    user = mailbox_user[0]
    raws = [message(n) for n in range(3)]
    dovecot.deliver(user, raws)
    settings = settings_for(dovecot, mailbox_user)
    with MailboxConnection(settings) as conn:
        before = conn.select()
    after = dovecot.change_uidvalidity(user)
    with MailboxConnection(settings) as conn:
        assert conn.select() == after != before
        # After a change the poller starts again from UID 0; the same messages come back.
        assert [f.raw for f in fetch_all(conn)[0]] == raws


def test_five_thousand_messages_arrive_complete_and_in_order(dovecot, mailbox_user):
    raws = [message(n) for n in range(5_000)]
    uids = dovecot.deliver(mailbox_user[0], raws)
    with MailboxConnection(settings_for(dovecot, mailbox_user)) as conn:
        conn.select()
        batches = fetch_all(conn, batch_size=200)
    assert len(batches) == 25
    assert [f.uid for b in batches for f in b] == uids
    assert [f.raw for b in batches for f in b] == raws
