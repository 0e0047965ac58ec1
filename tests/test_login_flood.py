"""A flood of bogus logins against `mailticket serve` on SQLite: password checks hold no database lock and take
one core at most, so an operator's claim through the API still answers at once."""

from __future__ import annotations

import asyncio
import re
import threading
import time

import httpx

from mailticket.db.store import Store
from mailticket.service import operators
from tests.dovecot import free_port
from tests.factories import make_operator, make_ticket
from tests.test_serve import config, start, stop, wait_for

LOGINS = 100
CLAIM_BOUND_SECONDS = 0.1
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


async def flood(base: str, started: threading.Event) -> list[int]:
    """LOGINS clients, each from an address of its own (as a reverse proxy on this host would say), logging in
    with wrong passwords all at once; the statuses they got."""
    clients = [httpx.AsyncClient(base_url=base, timeout=60, headers={"X-Forwarded-For": f"198.51.100.{n + 1}"})
               for n in range(LOGINS)]
    try:
        tokens = [CSRF_FIELD.search((await c.get("/login")).text).group(1) for c in clients]
        attempts = [asyncio.create_task(c.post("/login", data={"csrf_token": t, "username": f"user{n % 7}",
                                                                "password": "guess"}))
                    for n, (c, t) in enumerate(zip(clients, tokens))]
        started.set()
        return [answer.status_code for answer in await asyncio.gather(*attempts)]
    finally:
        for client in clients:
            await client.aclose()


def test_an_api_claim_answers_within_100_ms_during_100_concurrent_bogus_logins(tmp_path, sqlite_url):
    store = Store(sqlite_url)
    ticket = make_ticket(store)
    make_operator(store, "ana")
    with store.transaction() as session:
        token = operators.new_token(session, "ana")
    store.dispose()
    port = free_port()
    proc = start(config(tmp_path, sqlite_url, port))
    base = f"http://127.0.0.1:{port}"
    statuses: list[int] = []
    started, finished = threading.Event(), threading.Event()

    def run_flood() -> None:
        try:
            statuses.extend(asyncio.run(flood(base, started)))
        finally:
            finished.set()

    try:
        assert wait_for(f"{base}/healthz", proc) == 200
        claims: list[float] = []
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
            api.get("/api/v1/tickets")  # the connection is open before the clock starts
            thread = threading.Thread(target=run_flood)
            thread.start()
            assert started.wait(60)
            while not finished.is_set():
                began = time.perf_counter()
                assert api.post(f"/api/v1/tickets/{ticket}/claim").status_code == 200
                claims.append(time.perf_counter() - began)
                assert api.delete(f"/api/v1/tickets/{ticket}/claim").status_code == 204
                time.sleep(0.01)
            thread.join()
    finally:
        code, _took, out = stop(proc)
    assert code == 0 and "Traceback" not in out, out
    assert len(statuses) == LOGINS and set(statuses) <= {401, 429, 503}, statuses
    assert len(claims) >= 3, "the flood was over before the claims could be timed"
    assert max(claims) < CLAIM_BOUND_SECONDS, f"slowest claim {max(claims) * 1000:.0f} ms over {len(claims)}"
