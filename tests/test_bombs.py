"""Hostile mail built to take time out of proportion (about 1 MB each): read and stored in well under two seconds
of CPU, while the web server goes on answering."""

from __future__ import annotations

import time

import httpx
import pytest
from sqlalchemy import func, select

from mailticket.db.models import Message, Quarantine, Ticket
from mailticket.db.store import Store
from mailticket.service.ingest import ingest
from mailticket.service.intake import CREATED, QUARANTINED
from tests.bombs import bombs
from tests.dovecot import free_port
from tests.factories import SETTINGS, T0
from tests.mails import SUPPORT
from tests.test_serve import config, start, stop, wait_for

# The bound on the CPU one bomb may cost, for reading and storing it.
CPU_BOUND_SECONDS = 2.0
# /healthz must answer within this while a bomb is being read.
HEALTHZ_BOUND_SECONDS = 0.2
BOMBS = bombs()


@pytest.mark.parametrize("name", list(BOMBS))
def test_a_bomb_is_read_and_stored_in_under_two_seconds_of_cpu(sqlite_url, name):
    store = Store(sqlite_url)
    started = time.thread_time()
    with store.transaction() as session:
        outcome = ingest(session, BOMBS[name], settings=SETTINGS, received_at=T0, now=T0, mailbox="support")
    spent = time.thread_time() - started
    assert outcome.result in (CREATED, QUARANTINED)
    assert spent < CPU_BOUND_SECONDS, f"{name}: {spent:.2f} s of CPU"
    with store.reading() as session:
        # Nothing is lost: the bytes are kept, as a ticket's message or in quarantine.
        kept = session.scalar(select(Ticket.id)) or session.scalar(select(Quarantine.id))
    assert kept is not None
    store.dispose()


def test_a_sender_that_smuggles_a_list_of_addresses_is_quarantined_with_its_reason(sqlite_url):
    store = Store(sqlite_url)
    with store.transaction() as session:
        outcome = ingest(session, BOMBS["from-quoted-list"], settings=SETTINGS, received_at=T0, now=T0)
    assert outcome.result == QUARANTINED
    assert "sender address is not a valid e-mail address" in outcome.reason
    store.dispose()


def test_serve_answers_healthz_within_200_ms_while_it_polls_the_bombs(tmp_path, sqlite_url, dovecot, mailbox_user):
    user, password = mailbox_user
    mailbox = (f'[[mailbox]]\nname = "support"\nhost = "{dovecot.host}"\nport = {dovecot.port}\nsecurity = "none"\n'
               f'username = "{user}"\npassword = "{password}"\naddress = "{SUPPORT}"\nbatch_size = 5\n')
    port = free_port()
    proc = start(config(tmp_path, sqlite_url, port, mailbox=mailbox))
    store = Store(sqlite_url)
    try:
        url = f"http://127.0.0.1:{port}/healthz"
        assert wait_for(url, proc) == 200
        dovecot.deliver(user, list(BOMBS.values()))
        slowest, answered, deadline = 0.0, 0, time.monotonic() + 120
        with httpx.Client() as client:
            client.get(url)  # the connection is open before the clock starts
            while kept(store) < len(BOMBS) and time.monotonic() < deadline:
                started = time.perf_counter()
                assert client.get(url, timeout=10).status_code == 200
                slowest = max(slowest, time.perf_counter() - started)
                answered += 1
                time.sleep(0.005)
        assert kept(store) == len(BOMBS), "serve did not take in every bomb"
    finally:
        code, _took, out = stop(proc)
        store.dispose()
    assert code == 0 and "Traceback" not in out, out
    assert answered >= 10, "the bombs were taken in before /healthz could be asked often enough"
    assert slowest < HEALTHZ_BOUND_SECONDS, f"/healthz took {slowest * 1000:.0f} ms"


def kept(store: Store) -> int:
    """Messages taken in so far: stored on a ticket, or quarantined."""
    with store.reading() as session:
        return (session.scalar(select(func.count()).select_from(Message).where(Message.direction == "in"))
                + session.scalar(select(func.count()).select_from(Quarantine)))
