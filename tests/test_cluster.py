"""Three `serve` processes on one PostgreSQL database and one mailbox, one SIGKILLed half way: nothing twice or lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailticket.clock import utcnow
from mailticket.config import AutoreplySettings, MailboxSettings, Settings, SmtpSettings
from mailticket.db.models import IN, SENT, Lease, Message, Operator, Outbox, Ticket
from mailticket.db.store import Store
from mailticket.service import actions
from mailticket.service.claims import claim
from mailticket.service.operators import add_operator
from tests.conftest import fresh_pg_database
from tests.dovecot import free_port
from tests.mails import SUPPORT
from tests.test_poll import conversation
from tests.test_serve import wait_for

pytestmark = pytest.mark.slow

INSTANCES = 3
CONVERSATIONS = 1000
REPLIES_PER_CONVERSATION = 2  # so 3,000 messages in 1,000 tickets
MESSAGES = CONVERSATIONS * (1 + REPLIES_PER_CONVERSATION)
OPERATOR_REPLIES = 300
POLL_INTERVAL = 1.0
# The mailbox lease's ttl in the serve processes (MAILTICKET_MAILBOX_LEASE_TTL): short, so the takeover is seen soon.
LEASE_TTL = 10.0
# After the ttl and a poll interval, the new holder still connects, lists and commits its first batch.
TAKEOVER_SLACK = 5.0
LEASE = "mailbox:support"
STEP = 0.05  # seconds between looks at the database while waiting


@pytest.fixture
def cluster_db() -> Iterator[str]:
    """A fresh PostgreSQL database of its own, without tables: `mailticket migrate` makes them."""
    with fresh_pg_database("mailticket_cluster") as url:
        yield url


class Instance:
    """One `mailticket serve` process, logging to a file (a pipe nobody reads would stall it)."""

    def __init__(self, number: int, tmp_path: Path, config_text: str) -> None:
        self.port = free_port()
        self.config = tmp_path / f"serve-{number}.toml"
        self.config.write_text(config_text.replace("{PORT}", str(self.port)))
        self.log = tmp_path / f"serve-{number}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, "MAILTICKET_MAILBOX_LEASE_TTL": str(LEASE_TTL)}
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "mailticket", "-c", str(self.config), "serve"],
                                         stdout=out, stderr=subprocess.STDOUT, env=env)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def config_text(db_url: str, box: MailboxSettings, smtp: SmtpSettings) -> str:
    return (f'[database]\nurl = "{db_url}"\n'
            '[web]\nlisten = "127.0.0.1:{PORT}"\nsecret_key = "cluster-test-secret-key"\n'
            f'[scheduler]\npoll_interval = "{POLL_INTERVAL:g}s"\noutbox_interval = "1s"\n'
            'claim_expiry_interval = "5s"\n'
            # Acknowledgements would fill the sink and the outbox too; this test counts operator replies.
            '[autoreply]\nenabled = false\n'
            f'[smtp]\nhost = "{smtp.host}"\nport = {smtp.port}\nsecurity = "none"\ntimeout = "10s"\n'
            f'[[mailbox]]\nname = "{box.name}"\nhost = "{box.host}"\nport = {box.port}\nsecurity = "none"\n'
            f'username = "{box.username}"\npassword = "{box.password}"\naddress = "{box.address}"\n'
            '[log]\nlevel = "info"\n')


def wait_until(what: str, check: Callable[[], bool], timeout: float, logs: Callable[[], str] = lambda: "") -> float:
    """Seconds until check() holds; fails naming `what` after `timeout`."""
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"{what}: not within {timeout:g} s\n{logs()}")
        time.sleep(STEP)
    return time.monotonic() - began


def scalar(store: Store, query):
    with store.reading() as session:
        return session.scalar(query)


def ingested(store: Store) -> int:
    return scalar(store, select(func.count()).select_from(Message).where(Message.direction == IN))


def sent(store: Store) -> int:
    return scalar(store, select(func.count()).select_from(Outbox).where(Outbox.status == SENT))


def lease_holder(store: Store) -> str | None:
    return scalar(store, select(Lease.holder).where(Lease.name == LEASE))


def queue_replies(store: Store, settings: Settings, operator_id: int, tickets: list[int]) -> list[str]:
    """Claims each ticket and replies through the service, as the web form would; returns the Message-IDs."""
    ids = []
    for ticket in tickets:
        with store.transaction() as session:
            operator = session.get(Operator, operator_id)
            view = claim(session, ticket, operator, settings.claims.ttl)
            ids.append(actions.reply(session, settings, ticket, operator, f"Reply to ticket {ticket}.",
                                     view.token).message_id)
    return ids


def first_tickets(store: Store, count: int) -> list[int]:
    with store.reading() as session:
        return list(session.scalars(select(Ticket.id).order_by(Ticket.id).limit(count)))


def test_three_instances_ingest_every_message_once_and_send_every_reply_once_when_one_is_killed(
        tmp_path, cluster_db, dovecot, mailbox_user, smtp_sink):
    user, password = mailbox_user
    box = MailboxSettings(name="support", host=dovecot.host, port=dovecot.port, security="none", username=user,
                          password=password, address=SUPPORT)
    settings = Settings(mailboxes=(box,), smtp=smtp_sink.settings(), autoreply=AutoreplySettings(enabled=False))
    text_ = config_text(cluster_db, box, smtp_sink.settings())
    instances = [Instance(n, tmp_path, text_) for n in range(INSTANCES)]
    migrate = subprocess.run([sys.executable, "-m", "mailticket", "-c", str(instances[0].config), "migrate"],
                             capture_output=True, text=True, timeout=120)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    store = Store(cluster_db)
    with store.transaction() as session:
        olga = add_operator(session, "olga", "correct horse battery", name="Olga", now=utcnow()).id
    mails = [conversation(n, replies=REPLIES_PER_CONVERSATION) for n in range(CONVERSATIONS)]
    half = CONVERSATIONS // 2

    def logs() -> str:
        return "\n".join(f"--- instance {n} (pid {i.proc.pid}) ---\n{i.output()[-3000:]}"
                         for n, i in enumerate(instances))

    try:
        for instance in instances:
            instance.start()
        for instance in instances:
            assert wait_for(f"http://127.0.0.1:{instance.port}/healthz", instance.proc) == 200

        # First half of the mail; replies on the first tickets, all sent before anything is killed.
        dovecot.deliver(user, [m for conv in mails[:half] for m in conv])
        early = OPERATOR_REPLIES // 2
        wait_until(f"{early} tickets", lambda: len(first_tickets(store, early)) == early, 60, logs)
        reply_ids = queue_replies(store, settings, olga, first_tickets(store, early))
        wait_until(f"{early} replies sent", lambda: sent(store) == early, 60, logs)
        wait_until("the first half ingested", lambda: ingested(store) == half * 3, 60, logs)

        # Second half; the instance polling it is killed in the middle of its pass.
        dovecot.deliver(user, [m for conv in mails[half:] for m in conv])
        pids = {i.proc.pid: i for i in instances}
        holder = None

        def polling_mid_pass() -> bool:
            nonlocal holder
            holder = lease_holder(store)
            return holder is not None and half * 3 + 100 <= ingested(store) <= MESSAGES - 500

        wait_until("an instance half way through the second half", polling_mid_pass, 60, logs)
        pid = int(holder.rsplit(":", 2)[1])
        assert pid in pids, f"the lease is held by {holder}, none of this test's instances"
        victim = pids[pid]
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(timeout=10)
        killed_at, at_kill = time.monotonic(), ingested(store)
        assert lease_holder(store) == holder, "the killed instance no longer held the lease: no takeover to see"
        survivors = [i for i in instances if i is not victim]

        # Replies on the next tickets, while the survivors take over.
        reply_ids += queue_replies(store, settings, olga, first_tickets(store, OPERATOR_REPLIES)[early:])
        wait_until("ingestion resuming after the kill", lambda: ingested(store) > at_kill,
                   LEASE_TTL + POLL_INTERVAL + TAKEOVER_SLACK, logs)
        takeover = time.monotonic() - killed_at
        new_holder = lease_holder(store)
        assert new_holder is None or new_holder != holder

        wait_until("every message ingested", lambda: ingested(store) == MESSAGES, 90, logs)
        wait_until("every reply sent", lambda: sent(store) == OPERATOR_REPLIES, 60, logs)
        # The pass that took over finishes (flags \Seen) what the killed instance had committed.
        wait_until("every message flagged seen", lambda: dovecot.status(user)["unseen"] == 0, 30, logs)
        time.sleep(2 * POLL_INTERVAL)  # a little longer: nothing more may arrive at the sink
        assert all(i.proc.poll() is None for i in survivors), logs()
    finally:
        codes = [instance.stop() for instance in instances if instance.proc is not None]

    with store.reading() as session:
        inbound = Counter(session.scalars(select(Message.message_id).where(Message.direction == IN)))
        tickets = session.scalar(select(func.count()).select_from(Ticket))
        statuses = Counter(session.scalars(select(Outbox.status)))
    store.dispose()
    expected = {f"c{n}-{r}@customer.example" for n in range(CONVERSATIONS) for r in range(3)}
    assert set(inbound) == expected and max(inbound.values()) == 1
    assert tickets == CONVERSATIONS
    assert statuses == {SENT: OPERATOR_REPLIES}
    delivered = Counter(smtp_sink.message_ids())
    assert set(delivered) == set(reply_ids), "the sink got other mail than the replies, or missed some"
    assert [mid for mid, times in delivered.items() if times > 1] == [], "a reply was delivered twice"
    assert takeover <= LEASE_TTL + POLL_INTERVAL + TAKEOVER_SLACK
    assert sorted(c for c in codes if c is not None) == sorted([0] * (INSTANCES - 1) + [-signal.SIGKILL])
    for instance in survivors:
        assert "Traceback" not in instance.output(), instance.output()[-5000:]
    print(f"takeover: ingestion resumed {takeover:.1f} s after the kill (lease ttl {LEASE_TTL:g} s)")
