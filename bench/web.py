"""Web benchmarks on SQLite: claim + release through the API with 16 clients, queue and ticket pages at scale.

Run from the repository root: `python -m bench.web` (about two minutes; builds 100,000 tickets, 500,000 messages).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
from sqlalchemy import insert

from mailticket.db.models import Customer, Message, Ticket
from mailticket.db.store import Store
from mailticket.service.operators import add_operator, new_token

TICKETS = 100_000
MESSAGES_PER_TICKET = 5
CUSTOMERS = 20_000
CLIENTS = 16
ROUNDS_PER_CLIENT = 200
WARM_UP_ROUNDS = 20
PAGE_REQUESTS = 200
# 16 operators clicking claim and release every quarter second: far busier than a shop's desk.
PACED_PAUSE = 0.25
PASSWORD = "bench password"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
TEXT = ("Bom dia, o meu pedido ainda não chegou e o rastreio não atualiza há dias. "
        "Podem verificar com a transportadora? Obrigado. ") * 3


def insert_customers(conn, name: str) -> None:
    """CUSTOMERS customers c1@mail.example ..., named by `name` with {i}, in one statement."""
    conn.execute(insert(Customer), [dict(address=f"c{i}@mail.example", name=name.format(i=i), notes="",
                                         created_at=T0) for i in range(1, CUSTOMERS + 1)])


def fill(url: str, tickets: int) -> None:
    """Bulk rows straight into the tables: the benchmark measures reading them, not ingesting them."""
    store = Store(url)
    store.migrate()
    rnd = random.Random(7)
    with store.transaction() as session:
        conn = session.connection()
        insert_customers(conn, "Customer {i}")
        for start in range(1, tickets + 1, 10_000):
            rows, messages = [], []
            for t in range(start, min(start + 10_000, tickets + 1)):
                created = T0 + timedelta(minutes=t)
                status = rnd.choices(("open", "pending", "resolved"), (3, 2, 5))[0]
                rows.append(dict(id=t, subject=f"Pedido {t} atrasado", subject_key=f"pedido {t} atrasado",
                                 status=status, queue=rnd.choice(("default", "marketplace", "trocas")),
                                 priority="normal", mailbox="support", customer_id=rnd.randint(1, CUSTOMERS),
                                 created_at=created, updated_at=created, last_message_at=created,
                                 waiting_since=created if status == "open" else None, handle_seconds=0.0))
                for m in range(MESSAGES_PER_TICKET):
                    messages.append(dict(ticket_id=t, direction="in" if m % 2 == 0 else "out",
                                         message_id=f"t{t}-m{m}@mail.example", from_addr=f"c{t}@mail.example",
                                         subject=f"Re: Pedido {t} atrasado", received_at=created + timedelta(hours=m),
                                         text=TEXT, matched_by="new" if m == 0 else "in-reply-to"))
            conn.execute(insert(Ticket), rows)
            conn.execute(insert(Message), messages)
    with store.transaction() as session:
        for i in range(CLIENTS):
            add_operator(session, f"op{i}", PASSWORD, name=f"Operator {i}", now=T0)
    store.dispose()


def tokens(url: str) -> list[str]:
    store = Store(url)
    with store.transaction() as session:
        result = [new_token(session, f"op{i}") for i in range(CLIENTS)]
    store.dispose()
    return result


def start_server(url: str, port: int) -> subprocess.Popen:
    # The app as `mailticket serve` runs it (WAL checkpoints in the background, startup objects frozen out of
    # the collector's way), without the mail jobs.
    code = (
        "import gc, uvicorn; from mailticket.config import Settings, DatabaseSettings, WebSettings; "
        "from mailticket.db.store import Store; from mailticket.web.app import create_app; "
        f"s = Settings(database=DatabaseSettings(url={url!r}), web=WebSettings(secret_key='bench-secret-key-0123')); "
        "app = create_app(s, Store(s.database.url, background_checkpoints=True)); gc.freeze(); "
        f"uvicorn.run(app, host='127.0.0.1', port={port}, log_level='warning')"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    for _ in range(300):
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1)]


async def _client(port: int, token: str, n: int, tickets: int, rounds: int, pause: float) -> list[float]:
    """One operator on one keep-alive connection: claim, release, think for about `pause` seconds, again."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def call(method: str, path: str) -> int:
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
                     f"Content-Length: 0\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        if length:
            await reader.readexactly(int(length.group(1)))
        return int(head.split(b" ", 2)[1])

    rnd = random.Random(n)
    timings = []
    await asyncio.sleep(rnd.uniform(0, pause))  # operators do not all click at the same instant
    for _ in range(rounds):
        ticket = rnd.randrange(n + 1, tickets, CLIENTS)  # disjoint tickets: no conflicts, pure lock cost
        began = time.perf_counter()
        claimed, released = await call("POST", f"/api/v1/tickets/{ticket}/claim"), \
            await call("DELETE", f"/api/v1/tickets/{ticket}/claim")
        timings.append(time.perf_counter() - began)
        assert (claimed, released) == (200, 204), (claimed, released)
        if pause:
            await asyncio.sleep(rnd.uniform(0.5, 1.5) * pause)
    writer.close()
    return timings


def claim_release(port: int, api_tokens: list[str], tickets: int, pause: float = 0.0,
                  rounds: int = ROUNDS_PER_CLIENT, clients: int = CLIENTS) -> list[float]:
    """CLIENTS clients at once, each claiming and releasing its own tickets `pause` seconds apart (0: back to
    back, which saturates the server and measures its queue); the time of each round trip. The clients write
    raw HTTP/1.1 from one asyncio loop, so that the load generator costs the shared CPUs little."""
    async def run() -> list[list[float]]:
        return await asyncio.gather(*(_client(port, api_tokens[n], n, tickets, rounds, pause)
                                      for n in range(clients)))

    # The load generator's own garbage collections would be counted as the server's latency.
    gc.collect()
    gc.disable()
    try:
        return [t for timings in asyncio.run(run()) for t in timings]
    finally:
        gc.enable()


LOGIN_FLOOD = 100


async def _bogus_logins(base: str, started: asyncio.Event) -> list[int]:
    """LOGIN_FLOOD clients, each from an address of its own (as a reverse proxy on the host says), posting wrong
    passwords at once."""
    clients = [httpx.AsyncClient(base_url=base, timeout=60, headers={"X-Forwarded-For": f"198.51.100.{n + 1}"})
               for n in range(LOGIN_FLOOD)]
    csrf = [re.search(r'name="csrf_token" value="([^"]+)"', (await c.get("/login")).text).group(1) for c in clients]
    attempts = [asyncio.create_task(c.post("/login", data={"csrf_token": t, "username": "op0", "password": "x"}))
                for c, t in zip(clients, csrf)]
    started.set()
    statuses = [answer.status_code for answer in await asyncio.gather(*attempts)]
    for client in clients:
        await client.aclose()
    return statuses


def login_flood(port: int, token: str, tickets: int) -> tuple[list[float], list[int]]:
    """Claim + release round trips of one client while LOGIN_FLOOD bogus logins are in flight, and their answers."""
    async def run() -> tuple[list[float], list[int]]:
        started = asyncio.Event()
        flood = asyncio.create_task(_bogus_logins(f"http://127.0.0.1:{port}", started))
        await started.wait()
        timings = []
        while not flood.done():
            timings.extend(await _client(port, token, 0, tickets, 1, 0.0))
            await asyncio.sleep(0.01)
        return timings, await flood

    return asyncio.run(run())


def pages(base: str, tickets: int) -> tuple[list[float], list[float]]:
    with httpx.Client(base_url=base, follow_redirects=False) as http:
        login_page = http.get("/login").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', login_page).group(1)
        answer = http.post("/login", data={"username": "op0", "password": PASSWORD, "csrf_token": csrf})
        assert answer.status_code in (302, 303), answer.text[:300]
        queue, ticket = [], []
        rnd = random.Random(1)
        for _ in range(PAGE_REQUESTS):
            began = time.perf_counter()
            assert http.get("/").status_code == 200
            queue.append(time.perf_counter() - began)
            began = time.perf_counter()
            assert http.get(f"/tickets/{rnd.randint(1, tickets)}").status_code == 200
            ticket.append(time.perf_counter() - began)
    return queue, ticket


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, default=TICKETS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        began = time.perf_counter()
        fill(url, args.tickets)
        print(f"filled {args.tickets} tickets, {args.tickets * MESSAGES_PER_TICKET} messages "
              f"in {time.perf_counter() - began:.0f} s")
        api_tokens = tokens(url)
        # The fill leaves hundreds of megabytes for the kernel to write back; measured while that runs, every
        # checkpoint's sync would wait for it. A shop's database is not bulk-loaded a second before its rush.
        os.sync()
        port = 20000 + os.getpid() % 20000
        server = start_server(url, port)
        try:
            base = f"http://127.0.0.1:{port}"
            claim_release(port, api_tokens, args.tickets, rounds=WARM_UP_ROUNDS)  # compiled statements, caches
            alone = claim_release(port, api_tokens, args.tickets, clients=1)
            print(f"claim + release, one client alone: p50 {ms(statistics.median(alone))}, "
                  f"p99 {ms(percentile(alone, 99))}")
            for pause, label in ((PACED_PAUSE, f"each every ~{PACED_PAUSE}s"), (0.0, "back to back (saturated)")):
                began = time.perf_counter()
                rounds = claim_release(port, api_tokens, args.tickets, pause)
                print(f"claim + release, {CLIENTS} clients {label}, {len(rounds)} round trips "
                      f"({len(rounds) / (time.perf_counter() - began):.0f}/s): "
                      f"p50 {ms(statistics.median(rounds))}, p99 {ms(percentile(rounds, 99))}")
            during, statuses = login_flood(port, api_tokens[0], args.tickets)
            print(f"claim + release during {LOGIN_FLOOD} concurrent bogus logins ({len(during)} round trips; logins "
                  f"answered {sorted(set(statuses))}): p50 {ms(statistics.median(during))}, max {ms(max(during))}")
            queue, ticket = pages(base, args.tickets)
            print(f"queue page: p50 {ms(statistics.median(queue))}, p95 {ms(percentile(queue, 95))}; "
                  f"ticket page: p50 {ms(statistics.median(ticket))}, p95 {ms(percentile(ticket, 95))}")
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
