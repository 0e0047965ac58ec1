"""How the server stays quick on SQLite: claim calls wait for other writers in a worker thread, never on the event
loop; a bad token is refused before any write; WAL checkpoints off the request path."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from sqlalchemy import insert

from mailticket.db import store as store_module
from mailticket.db.models import Event
from mailticket.db.store import Store
from tests.browser import running_app
from tests.factories import T0, make_operator, make_ticket
from tests.test_api import API, API_SETTINGS, token_for

# Bounds on waits that only a broken server would reach.
PATIENCE = 10


class LongWriter:
    """Another thread of the process in a long write transaction (the poller storing a big batch, say)."""

    def __init__(self, store: Store) -> None:
        self.store, self.writing, self.finish = store, threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._write)

    def _write(self) -> None:
        with self.store.transaction() as session:
            session.connection()  # BEGIN IMMEDIATE: SQLite's write lock is taken
            self.writing.set()
            self.finish.wait(3 * PATIENCE)

    def __enter__(self) -> LongWriter:
        self.thread.start()
        assert self.writing.wait(PATIENCE)
        return self

    def __exit__(self, *_exc) -> None:
        self.finish.set()
        self.thread.join(PATIENCE)


def test_a_claim_waiting_for_another_writer_leaves_the_server_answering(sqlite_url):
    store = Store(sqlite_url)
    ticket = make_ticket(store, sender="carla@customer.example", subject="Where is my order?")
    make_operator(store, "ana")
    headers = {"Authorization": f"Bearer {token_for(store, 'ana')}"}
    with running_app(API_SETTINGS, store) as base, ThreadPoolExecutor(1) as pool, LongWriter(store) as writer:
        claim = pool.submit(httpx.post, f"{base}{API}/tickets/{ticket}/claim", headers=headers, timeout=3 * PATIENCE)
        # The claim waits its turn to write in a worker thread: the server answers the others meanwhile, and the
        # claim cannot finish while the writer holds the lock.
        listed = httpx.get(f"{base}{API}/tickets", headers=headers, timeout=PATIENCE)
        assert listed.status_code == 200 and [t["id"] for t in listed.json()] == [ticket]
        assert not claim.done()

        writer.finish.set()
        answer = claim.result(timeout=3 * PATIENCE)
        assert answer.status_code == 200 and answer.json()["holder"] == "Ana"
        assert httpx.delete(f"{base}{API}/tickets/{ticket}/claim", headers=headers).status_code == 204
    store.dispose()


# Another process (a `mailticket poll-once` beside the server, say) holding SQLite's write lock until told to stop.
OTHER_WRITER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
conn.rollback()
"""


def test_healthz_answers_within_100_ms_while_another_process_writes_and_a_bad_token_claims(sqlite_url):
    store = Store(sqlite_url)
    ticket = make_ticket(store, sender="carla@customer.example", subject="Where is my order?")
    make_operator(store, "ana")
    good = {"Authorization": f"Bearer {token_for(store, 'ana')}"}
    path = sqlite_url.removeprefix("sqlite:///")
    with running_app(API_SETTINGS, store) as base, ThreadPoolExecutor(2) as pool, httpx.Client() as client:
        client.get(f"{base}/healthz")  # the connection is open before the clock starts
        other = subprocess.Popen([sys.executable, "-c", OTHER_WRITER, path], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert other.stdout.readline().strip() == "locked"
            waiting = pool.submit(httpx.post, f"{base}{API}/tickets/{ticket}/claim", headers=good,
                                  timeout=3 * PATIENCE)
            # A bad token is refused by a read, before any write begins: it never waits for the lock.
            refused = httpx.post(f"{base}{API}/tickets/{ticket}/claim", timeout=PATIENCE,
                                 headers={"Authorization": "Bearer mt_not-a-token"})
            assert refused.status_code == 401
            slowest = 0.0
            for _ in range(20):
                began = time.perf_counter()
                assert client.get(f"{base}/healthz", timeout=PATIENCE).status_code == 200
                slowest = max(slowest, time.perf_counter() - began)
            assert not waiting.done()  # the good claim still waits its turn, all the while
        finally:
            other.communicate("", timeout=PATIENCE)
        assert waiting.result(timeout=3 * PATIENCE).status_code == 200
    assert slowest < 0.1, f"/healthz took {slowest * 1000:.0f} ms"
    store.dispose()


def test_healthz_and_the_watchdog_see_a_busy_database_as_alive(sqlite_url):
    store = Store(sqlite_url)
    with running_app(API_SETTINGS, store) as base, LongWriter(store) as writer:
        answer = httpx.get(f"{base}/healthz", timeout=PATIENCE)
        assert answer.status_code == 200 and answer.json() == {"status": "ok"}
        assert store.ping()  # what the watchdog asks before it pets systemd
        assert writer.thread.is_alive()  # all while the write was still open
    store.dispose()


def _add_events(store: Store, count: int) -> None:
    ticket = make_ticket(store, sender="carla@customer.example", subject="Where is my order?")
    with store.transaction() as session:
        session.execute(insert(Event), [dict(ticket_id=ticket, at=T0, kind="note", actor="ana", detail="x" * 500)
                                        for _ in range(count)])


def _checkpointed(path: Path) -> None:
    """Starts from an empty WAL: everything so far copied into the database file."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def test_a_serving_store_copies_the_wal_into_the_database_in_the_background(sqlite_url, monkeypatch):
    monkeypatch.setattr(store_module, "CHECKPOINT_INTERVAL_SECONDS", 0.1)
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    _checkpointed(path)
    size_before = path.stat().st_size
    store = Store(sqlite_url, background_checkpoints=True)
    with store.read_connection() as conn:
        # Commits leave checkpoints to the thread, up to a safety limit.
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == store_module.WAL_SAFETY_PAGES

    _add_events(store, 1000)  # about 500 KB: far below the 1,000 pages at which a commit would checkpoint

    deadline = time.monotonic() + PATIENCE
    while path.stat().st_size == size_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.stat().st_size > size_before + 400_000
    store.dispose()


def test_a_command_leaves_checkpoints_to_sqlite_as_usual(sqlite_url):
    store = Store(sqlite_url)
    with store.read_connection() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000  # SQLite's default
    store.dispose()
