"""IMAP IDLE against the real Dovecot: the adapter's wait, the watcher's reconnects, and `serve` seeing mail at once."""

from __future__ import annotations

import queue
import signal
import subprocess
import threading
import time

import pytest
from sqlalchemy import func, select

from mailticket.config import AutoreplySettings, MailboxSettings, SchedulerSettings, Settings
from mailticket.db.models import Ticket
from mailticket.db.store import Store
from mailticket.imap import MailboxConnection
from mailticket.scheduler import Jobs
from tests.dovecot import free_port
from tests.mails import SUPPORT, make_mail
from tests.test_serve import start, wait_for

# SPEC: with IDLE, a new message becomes a ticket within 2 s.
WITHIN = 2.0
# Long enough that a ticket seen within WITHIN cannot have come from the scheduled poll.
POLL_INTERVAL = "60s"
READY_LINE = "waiting for new mail (IMAP IDLE)"


@pytest.fixture
def box(dovecot, mailbox_user) -> MailboxSettings:
    user, password = mailbox_user
    return MailboxSettings(name="support", host=dovecot.host, port=dovecot.port, security="none",
                           username=user, password=password, address=SUPPORT)


def tickets(store: Store) -> int:
    with store.reading() as session:
        return session.scalar(select(func.count()).select_from(Ticket))


def wait_for_tickets(store: Store, count: int, within: float) -> float:
    """Seconds until the store holds `count` tickets; fails after `within`."""
    began = time.monotonic()
    while time.monotonic() - began < within:
        if tickets(store) >= count:
            return time.monotonic() - began
        time.sleep(0.02)
    raise AssertionError(f"{tickets(store)} tickets after {within} s, expected {count}")


def test_idle_wait_says_true_when_a_message_arrives(dovecot, box):
    with MailboxConnection(box) as conn:
        assert conn.supports_idle()
        conn.examine()
        threading.Timer(0.3, dovecot.deliver, args=(box.username, [make_mail()])).start()
        began = time.monotonic()
        assert conn.idle_wait(10) is True
        assert time.monotonic() - began < WITHIN


def test_idle_wait_says_false_at_the_timeout_when_nothing_arrives(box):
    with MailboxConnection(box) as conn:
        conn.examine()
        began = time.monotonic()
        assert conn.idle_wait(1.5) is False
        assert 1.4 < time.monotonic() - began < 3
        # The connection is out of IDLE and usable again.
        assert conn.idle_wait(0.2) is False


def test_idle_wait_ends_soon_after_it_is_interrupted(box):
    stop_at = time.monotonic() + 0.5
    with MailboxConnection(box) as conn:
        conn.examine()
        began = time.monotonic()
        assert conn.idle_wait(60, interrupted=lambda: time.monotonic() > stop_at) is False
        assert time.monotonic() - began < 2.0


def test_mail_that_arrived_before_idle_began_is_still_reported(dovecot, box):
    with MailboxConnection(box) as conn:
        conn.examine()
        dovecot.deliver(box.username, [make_mail()])
        conn.client.noop()  # the server announces the new message in the answer to some other command
        assert conn.idle_wait(5) is True


def test_the_watcher_polls_new_mail_at_once_and_again_after_losing_its_connection(sqlite_url, dovecot, box):
    store = Store(sqlite_url)
    settings = Settings(mailboxes=(box,), autoreply=AutoreplySettings(enabled=False),
                        scheduler=SchedulerSettings(poll_interval=3600))
    jobs = Jobs(settings, store)
    jobs.start_watchers()
    try:
        time.sleep(1.0)  # the watcher connects and polls the (empty) mailbox once
        dovecot.deliver(box.username, [make_mail(message_id="w1@customer.example", subject="First")])
        wait_for_tickets(store, 1, WITHIN)
        dovecot.kill_connections(box.username)
        dovecot.deliver(box.username, [make_mail(message_id="w2@customer.example", subject="Second")])
        # Reconnecting after a second and polling once on reconnecting finds what came meanwhile.
        wait_for_tickets(store, 2, 5.0)
        dovecot.deliver(box.username, [make_mail(message_id="w3@customer.example", subject="Third")])
        wait_for_tickets(store, 3, WITHIN)
    finally:
        jobs.join_watchers()
    assert not any(thread.is_alive() for thread in threading.enumerate() if thread.name == "idle-support")


def test_serve_turns_a_new_message_into_a_ticket_within_two_seconds(tmp_path, sqlite_url, dovecot, box):
    mailbox = (f'[[mailbox]]\nname = "support"\nhost = "{box.host}"\nport = {box.port}\nsecurity = "none"\n'
               f'username = "{box.username}"\npassword = "{box.password}"\naddress = "{SUPPORT}"\n')
    port = free_port()
    path = tmp_path / "idle.toml"
    path.write_text(f'[database]\nurl = "{sqlite_url}"\n[web]\nlisten = "127.0.0.1:{port}"\n'
                    f'secret_key = "idle-test-secret-key"\n[scheduler]\npoll_interval = "{POLL_INTERVAL}"\n'
                    f'[autoreply]\nenabled = false\n{mailbox}')
    proc = start(str(path))
    lines: queue.Queue[str] = queue.Queue()
    output: list[str] = []
    reader = threading.Thread(target=_read_lines, args=(proc, lines), daemon=True)
    reader.start()
    store = Store(sqlite_url)
    try:
        assert wait_for(f"http://127.0.0.1:{port}/healthz", proc) == 200
        deadline = time.monotonic() + 20
        while not any(READY_LINE in line for line in output):
            assert time.monotonic() < deadline, "serve never started IDLE:\n" + "".join(output)
            try:
                output.append(lines.get(timeout=0.5))
            except queue.Empty:
                pass
        time.sleep(0.5)  # the watcher's first poll (of the empty mailbox) ends and IDLE begins
        dovecot.deliver(box.username, [make_mail(message_id="idle1@customer.example")])
        took = wait_for_tickets(store, 1, WITHIN)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        reader.join(10)
    while not lines.empty():
        output.append(lines.get())
    out = "".join(output)
    assert code == 0, out
    assert "Traceback" not in out
    print(f"ticket {took:.2f} s after delivery")


def _read_lines(proc: subprocess.Popen, lines: queue.Queue) -> None:
    # The one reader of the pipe, until it closes: the test looks for the ready line while serve runs.
    for line in proc.stdout:
        lines.put(line)


def test_news_other_than_new_mail_does_not_end_the_wait(dovecot, box):
    dovecot.deliver(box.username, [make_mail()])
    with MailboxConnection(box) as conn:
        conn.examine()
        other = dovecot.client(box.username)
        try:
            other.select_folder("INBOX")
            threading.Timer(0.3, other.add_flags, args=([1], ["\\Flagged"])).start()
            began = time.monotonic()
            assert conn.idle_wait(2.0) is False
            assert time.monotonic() - began >= 1.9
        finally:
            time.sleep(0.1)
            other.logout()
