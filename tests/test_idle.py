"""IMAP IDLE against the real Dovecot: the adapter's wait, the watcher's reconnects, and `serve` seeing mail at once."""

from __future__ import annotations

import logging
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

# Far longer than any wait below: a ticket that appears within PATIENCE can only have come through IDLE.
POLL_INTERVAL = "3600s"
# A bound that only a broken watcher reaches; how fast IDLE really is, is a benchmark's figure (README).
PATIENCE = 30.0
READY_LINE = "waiting for new mail (IMAP IDLE)"


@pytest.fixture
def box(dovecot, mailbox_user) -> MailboxSettings:
    user, password = mailbox_user
    return MailboxSettings(name="support", host=dovecot.host, port=dovecot.port, security="none",
                           username=user, password=password, address=SUPPORT)


def tickets(store: Store) -> int:
    with store.reading() as session:
        return session.scalar(select(func.count()).select_from(Ticket))


def wait_for_tickets(store: Store, count: int) -> None:
    """Returns once the store holds `count` tickets; fails after PATIENCE."""
    deadline = time.monotonic() + PATIENCE
    while tickets(store) < count:
        assert time.monotonic() < deadline, f"{tickets(store)} tickets, expected {count}"
        time.sleep(0.02)


class Watching:
    """The `interrupted` callback of idle_wait, which it asks at every tick once IDLE has begun: `idling` is set
    then, `ticks` counts the questions, and `stop()` makes the answer yes."""

    def __init__(self) -> None:
        self.idling, self.stopped, self.ticks = threading.Event(), threading.Event(), 0

    def __call__(self) -> bool:
        self.ticks += 1
        self.idling.set()
        return self.stopped.is_set()

    def stop(self) -> None:
        self.stopped.set()


def waiting(conn: MailboxConnection, timeout: float, watching: Watching) -> tuple[threading.Thread, list[bool]]:
    """idle_wait in a thread of its own, started and in IDLE on return."""
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(conn.idle_wait(timeout, interrupted=watching,
                                                                          tick=0.05)))
    thread.start()
    assert watching.idling.wait(PATIENCE)
    return thread, result


def test_idle_wait_says_true_when_a_message_arrives(dovecot, box):
    with MailboxConnection(box) as conn:
        assert conn.supports_idle()
        conn.examine()
        watching = Watching()
        thread, result = waiting(conn, PATIENCE, watching)
        dovecot.deliver(box.username, [make_mail()])
        thread.join(PATIENCE)
        assert result == [True]


def test_idle_wait_says_false_at_the_timeout_when_nothing_arrives(box):
    with MailboxConnection(box) as conn:
        conn.examine()
        assert conn.idle_wait(0.3) is False
        # The connection is out of IDLE and usable again.
        assert conn.idle_wait(0.2) is False


def test_idle_wait_ends_once_it_is_interrupted(box):
    with MailboxConnection(box) as conn:
        conn.examine()
        watching = Watching()
        thread, result = waiting(conn, 3600, watching)
        watching.stop()
        thread.join(PATIENCE)
        assert result == [False]


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
    ready, logger = ReadyLines(), logging.getLogger("mailticket.scheduler")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(ready)
    jobs.start_watchers()
    try:
        ready.wait(1)  # the watcher is connected and looks at the mailbox
        dovecot.deliver(box.username, [make_mail(message_id="w1@customer.example", subject="First")])
        wait_for_tickets(store, 1)
        dovecot.kill_connections(box.username)
        dovecot.deliver(box.username, [make_mail(message_id="w2@customer.example", subject="Second")])
        # Reconnecting after a second and polling once on reconnecting finds what came meanwhile.
        wait_for_tickets(store, 2)
        ready.wait(2)  # connected again
        dovecot.deliver(box.username, [make_mail(message_id="w3@customer.example", subject="Third")])
        wait_for_tickets(store, 3)
    finally:
        logger.removeHandler(ready)
        logger.setLevel(level)
        jobs.join_watchers()
    assert not any(thread.is_alive() for thread in threading.enumerate() if thread.name == "idle-support")


class ReadyLines(logging.Handler):
    """Counts the watcher's "waiting for new mail" log lines, so that a test waits for them, not for a time."""

    def __init__(self) -> None:
        super().__init__()
        self.count, self.changed = 0, threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        if READY_LINE in record.getMessage():
            with self.changed:
                self.count += 1
                self.changed.notify_all()

    def wait(self, count: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.count >= count, PATIENCE), "the watcher never got ready"


def test_serve_turns_a_new_message_into_a_ticket_through_idle(tmp_path, sqlite_url, dovecot, box):
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
        read_until(lines, output, READY_LINE)
        dovecot.deliver(box.username, [make_mail(message_id="idle1@customer.example")])
        wait_for_tickets(store, 1)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        reader.join(10)
    while not lines.empty():
        output.append(lines.get())
    out = "".join(output)
    assert code == 0, out
    assert "Traceback" not in out


def read_until(lines: queue.Queue, output: list[str], text: str, timeout: float = 30.0) -> None:
    """Moves serve's lines into `output` until one holds `text`."""
    deadline = time.monotonic() + timeout
    while not any(text in line for line in output):
        assert time.monotonic() < deadline, f"serve never said {text!r}:\n" + "".join(output)
        try:
            output.append(lines.get(timeout=0.5))
        except queue.Empty:
            pass


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
            watching = Watching()
            thread, result = waiting(conn, 3600, watching)
            other.add_flags([1], ["\\Flagged"])
            # The wait goes on after the news: it keeps asking whether to stop, many ticks later.
            asked = watching.ticks
            deadline = time.monotonic() + PATIENCE
            while watching.ticks < asked + 20 and thread.is_alive():
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert thread.is_alive()
            watching.stop()
            thread.join(PATIENCE)
            assert result == [False]
        finally:
            other.logout()
