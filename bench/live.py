"""Live pages at load: 200 Server-Sent Events streams on one `serve` process, changes made through a second one.

Run from the repository root: `python -m bench.live` (about two and a half minutes; SQLite in a temporary folder),
or `python -m bench.live --postgresql postgresql+psycopg://postgres@127.0.0.1/DB` with DB an empty database (it is
migrated and filled, and left so). Two `mailticket serve` processes, A and B, share the database; 50 operators sign in
to A and open 4 pages each: 150 ticket pages (3 on each of 50 tickets) and 50 queue pages. Measured: A's memory per
stream; how long a claim or release made through B's API takes to reach A's pages; bench.web's claim + release and
page figures on A, without and with the streams. The pages are read by a process of their own, so that parsing
thousands of events a second does not stall the timed clients' event loop (it still shares the machine's cores).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import insert

from bench.web import (PACED_PAUSE, PASSWORD, T0, WARM_UP_ROUNDS, claim_release, fill, ms, pages, percentile,
                       tokens)
from mailticket.db.models import Operator
from mailticket.db.store import Store
from mailticket.service import history
from mailticket.service.operators import hash_password
from mailticket.web.feed import INTERVAL

TICKETS = 10_000
OPERATORS = 50  # every login is an argon2 check of about 0.15 s, one at a time: 200 would take half a minute
TABS = 4
STREAMS = OPERATORS * TABS
TICKET_STREAMS = 150  # the rest are queue pages, which get every change
WATCHED = 50
LATENCY_PAIRS = 100  # a claim and a release each: 200 events
LANES = 4  # changes in flight at once through B, on tickets of their own
PACED_ROUNDS = 100  # per client: about 25 s at one round every ~0.25 s
SETTLE = 3.0
# app.js fetches a page again this long after a change (changes that come together are fetched once).
FETCH_DELAY = {"ticket": 0.150, "queue": 0.300}  # app.js's REFRESH_DELAY_MS and QUEUE_DELAY_MS
SECRET = "bench-secret-key-0123"


def add_operators(url: str) -> None:
    """OPERATORS operators sharing one password hash: hashing each would cost as much as a login."""
    store = Store(url)
    password_hash = hash_password(PASSWORD)
    with store.transaction() as session:
        session.execute(insert(Operator), [
            dict(username=f"viewer{i}", name=f"Viewer {i}", email="", password_hash=password_hash, is_admin=False,
                 disabled=False, created_at=T0) for i in range(OPERATORS)])
    store.dispose()


def newest_event(url: str) -> int:
    store = Store(url)
    with store.read_connection() as conn:
        newest = history.newest_id(conn)
    store.dispose()
    return newest


def start_serve(folder: Path, name: str, url: str, port: int) -> subprocess.Popen:
    """`mailticket serve` from a config file of its own, its output in NAME.log."""
    config = folder / f"{name}.toml"
    # No [[mailbox]]: nothing to poll. Each job runs once at start, then not again during the benchmark.
    config.write_text(f'[database]\nurl = {json.dumps(url)}\n[web]\nlisten = "127.0.0.1:{port}"\n'
                      f'secret_key = "{SECRET}"\n[scheduler]\npoll_interval = "1d"\noutbox_interval = "1d"\n'
                      f'claim_expiry_interval = "1d"\nsla_interval = "1d"\n[log]\nlevel = "warning"\n')
    with open(folder / f"{name}.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "mailticket", "-c", str(config), "serve"],
                                stdout=log, stderr=subprocess.STDOUT)
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError(f"serve {name} exited: {(folder / f'{name}.log').read_text()}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"serve {name} did not start")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


@dataclass
class Waiter:
    """One change made through B: the streams on A that should show it, and when each did."""
    needed: set[int]
    arrivals: list[float] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Pages:
    """The STREAMS live pages on A, and the changes made through B that they wait for (run in the child process)."""

    def __init__(self, base_a: str, base_b: str, token: str, tickets: int, after: int) -> None:
        self.base_a, self.base_b, self.token, self.after = base_a, base_b, token, after
        self.watched = [1 + i * (tickets // WATCHED) for i in range(WATCHED)]
        self.watchers: dict[int, set[int]] = {t: set() for t in self.watched}
        self.queues: set[int] = set()
        self.waiting: dict[tuple[int, str], Waiter] = {}
        self.opened, self.lost, self.resets = 0, [], 0

    async def login(self, n: int, turns: asyncio.Semaphore) -> httpx.AsyncClient:
        # An address of its own (uvicorn believes loopback's X-Forwarded-For): logins are limited per address.
        # Idle connections are dropped after 1 s: reused at uvicorn's keep-alive limit (5 s, httpx's too), one
        # may be closed by the server just as a stream is sent on it.
        client = httpx.AsyncClient(base_url=self.base_a, timeout=httpx.Timeout(30, read=None),
                                   limits=httpx.Limits(keepalive_expiry=1),
                                   headers={"X-Forwarded-For": f"198.51.100.{n + 1}"})
        async with turns:  # the server turns away logins beyond the few it lets wait
            form = (await client.get("/login")).text
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
            answer = await client.post("/login", data={"username": f"viewer{n}", "password": PASSWORD,
                                                       "csrf_token": csrf})
        if answer.status_code not in (302, 303):
            raise RuntimeError(f"login viewer{n}: {answer.status_code}")
        return client

    async def read(self, n: int, client: httpx.AsyncClient) -> None:
        if n < TICKET_STREAMS:
            ticket = self.watched[n % WATCHED]  # operator n // TABS: its tabs show different tickets
            self.watchers[ticket].add(n)
            path = f"/live?ticket={ticket}&after={self.after}"
        else:
            self.queues.add(n)
            path = f"/live?after={self.after}"
        try:
            async with client.stream("GET", path) as answer:
                if answer.status_code != 200:
                    raise RuntimeError(f"status {answer.status_code}")
                rest = b""
                async for chunk in answer.aiter_bytes():
                    now = time.perf_counter()
                    if not rest and chunk.startswith(b": live"):
                        self.opened += 1  # the first bytes come after the stream listens to the feed
                    *frames, rest = (rest + chunk).split(b"\r\n\r\n")
                    for frame in frames:
                        if frame.startswith(b"event: reset"):
                            self.resets += 1  # the page fell QUEUE_SIZE polls behind
                        if self.waiting and b"event: change" in frame:
                            # One event per poll of the feed, with that poll's changes.
                            for data in json.loads(frame.split(b"data: ", 1)[1])["changes"]:
                                waiter = self.waiting.get((data["ticket"], data["kind"]))
                                if waiter is not None and n in waiter.needed:
                                    waiter.needed.discard(n)
                                    waiter.arrivals.append(now)
                                    if not waiter.needed:
                                        waiter.done.set()
            self.lost.append(f"{path}: the stream ended")
        except Exception as error:  # noqa: BLE001 - counted and reported
            self.lost.append(f"{path}: {error!r}")

    async def lane(self, api: httpx.AsyncClient, tickets: list[int], seed: int) -> list[tuple[float, float] | None]:
        """Claims and releases through B, one change at a time: (first page, last page) seconds after B answered."""
        rnd, results = random.Random(seed), []
        for ticket in tickets:
            for method, kind in (("POST", "claimed"), ("DELETE", "released")):
                waiter = self.waiting[(ticket, kind)] = Waiter(self.watchers[ticket] | self.queues)
                answer = await api.request(method, f"/api/v1/tickets/{ticket}/claim")
                answered = time.perf_counter()
                assert answer.status_code in (200, 204), answer.text
                try:
                    await asyncio.wait_for(waiter.done.wait(), 10)
                    results.append((min(waiter.arrivals) - answered, max(waiter.arrivals) - answered))
                except TimeoutError:
                    results.append(None)
                del self.waiting[(ticket, kind)]
                await asyncio.sleep(rnd.uniform(0, INTERVAL))  # at any moment of the feed's period
        return results

    async def latency(self) -> list[tuple[float, float] | None]:
        per_lane = LATENCY_PAIRS // LANES
        async with httpx.AsyncClient(base_url=self.base_b, headers={"Authorization": f"Bearer {self.token}"}) as api:
            lanes = [self.lane(api, [self.watched[(lane + LANES * i) % WATCHED] for i in range(per_lane)], lane)
                     for lane in range(LANES)]
            return [result for results in await asyncio.gather(*lanes) for result in results]

    async def run(self, pipe) -> None:
        turns = asyncio.Semaphore(4)
        clients = await asyncio.gather(*(self.login(i, turns) for i in range(OPERATORS)))
        began = time.perf_counter()
        streams = [asyncio.create_task(self.read(n, clients[n // TABS])) for n in range(STREAMS)]
        while self.opened < STREAMS:
            if self.lost or time.perf_counter() - began > 60:
                raise RuntimeError(f"{self.opened} streams opened; lost: {self.lost[:3]}")
            await asyncio.sleep(0.05)
        pipe.send(time.perf_counter() - began)
        loop = asyncio.get_running_loop()
        while await loop.run_in_executor(None, pipe.recv) == "latency":
            pipe.send((await self.latency(), list(self.lost), self.resets))
        for stream in streams:
            stream.cancel()
        await asyncio.gather(*streams, return_exceptions=True)
        for client in clients:
            await client.aclose()


def browsers(pipe, *args) -> None:
    try:
        asyncio.run(Pages(*args).run(pipe))
    except Exception as error:  # noqa: BLE001 - handed to the parent, which raises it
        pipe.send(RuntimeError(f"the pages' process failed: {error!r}"))


def ask(pipe, timeout: float = 180):
    if not pipe.poll(timeout):
        raise RuntimeError("the pages' process does not answer")
    answer = pipe.recv()
    if isinstance(answer, Exception):
        raise answer
    return answer


def on_a(port: int, pid: int, api_tokens: list[str], tickets: int) -> dict:
    cpu, began = cpu_seconds(pid), time.perf_counter()
    paced = claim_release(port, api_tokens, tickets, PACED_PAUSE, rounds=PACED_ROUNDS)
    busy = (cpu_seconds(pid) - cpu) / (time.perf_counter() - began)
    queue, ticket = pages(f"http://127.0.0.1:{port}", tickets)
    return {"paced": paced, "queue": queue, "ticket": ticket, "busy": busy}


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()  # SIGTERM: serve finishes what is in flight and exits 0
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run(url: str, tickets: int, servers: dict[str, subprocess.Popen], port: int) -> None:
    api_tokens, a = tokens(url), servers["A"].pid
    for p in (port, port + 1):  # compiled statements, caches
        claim_release(p, api_tokens, tickets, rounds=WARM_UP_ROUNDS)
    alone, before = on_a(port, a, api_tokens, tickets), rss_mb(a)
    # fork: the pages' process needs nothing from here but these few values.
    pipe, child_pipe = multiprocessing.Pipe()
    child = multiprocessing.get_context("fork").Process(target=browsers, args=(
        child_pipe, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}", api_tokens[0], tickets,
        newest_event(url)), daemon=True)
    child.start()
    opening, cpu = ask(pipe), cpu_seconds(a)
    time.sleep(SETTLE)
    after, idle = rss_mb(a), (cpu_seconds(a) - cpu) / SETTLE
    pipe.send("latency")
    results, lost, resets = ask(pipe)
    live = on_a(port, a, api_tokens, tickets)
    pipe.send("close")
    child.join(30)

    print(f"{STREAMS} streams open on A ({OPERATORS} operators × {TABS} tabs: {TICKET_STREAMS} ticket pages on "
          f"{WATCHED} tickets, {STREAMS - TICKET_STREAMS} queue pages) in {opening:.1f} s; A's RSS {before:.1f} → "
          f"{after:.1f} MB: {(after - before) * 1024 / STREAMS:.0f} KB per stream; A's CPU over {SETTLE:.0f} s "
          f"without claims: {idle:.0%}")
    arrived = [r for r in results if r is not None]
    first, last = [r[0] for r in arrived], [r[1] for r in arrived]
    print(f"change through B → A's pages ({len(results)} claims and releases; {len(results) - len(arrived)} not "
          f"shown within 10 s, {len(lost)} streams lost, {resets} resets):")
    every = f"every page (3 of its ticket + {STREAMS - TICKET_STREAMS} queues)"
    for label, values in (("first page", first), (every, last)):
        print(f"  {label}: p50 {ms(statistics.median(values))}, p95 {ms(percentile(values, 95))}, "
              f"max {ms(max(values))}")
    for page, wait in FETCH_DELAY.items():  # the slowest page's arrival, app.js's wait, the page fetched
        print(f"  event to screen, {page} page (every page + {wait * 1000:.0f} ms app.js wait + the page, streams "
              f"open): p50 {ms(statistics.median(last) + wait + statistics.median(live[page]))}, "
              f"p95 {ms(percentile(last, 95) + wait + percentile(live[page], 95))}")
    print(f"{'on A':<44} {'without streams':<27} with {STREAMS} streams")
    for key, label, p in (("paced", f"claim + release, 16 clients every ~{PACED_PAUSE}s", 99),
                          ("ticket", "ticket page", 95), ("queue", "queue page", 95)):
        cells = [f"p50 {ms(statistics.median(r[key]))}, p{p} {ms(percentile(r[key], p))}" for r in (alone, live)]
        print(f"{label:<44} {cells[0]:<27} {cells[1]}")
    print(f"{'CPU of A during those claims':<44} {alone['busy']:<27.0%} {live['busy']:.0%}")
    for line in lost[:5]:
        print("  lost:", line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=TICKETS)
    parser.add_argument("--postgresql", metavar="URL", help="an empty PostgreSQL database instead of SQLite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url = args.postgresql or f"sqlite:///{folder / 'bench.db'}"
        began = time.perf_counter()
        fill(url, args.tickets)
        add_operators(url)
        os.sync()  # see bench.web: the fill's writeback would slow every checkpoint
        print(f"{url.split(':')[0].split('+')[0]}: filled {args.tickets} tickets in "
              f"{time.perf_counter() - began:.0f} s; load average {os.getloadavg()[0]:.1f} (figures move with it)")
        port = 20000 + os.getpid() % 20000
        servers = {}
        try:
            servers["A"] = start_serve(folder, "A", url, port)
            servers["B"] = start_serve(folder, "B", url, port + 1)
            run(url, args.tickets, servers, port)
        finally:
            for name, proc in servers.items():
                stop(proc)
                log = (folder / f"{name}.log").read_text().splitlines()
                print(f"serve {name}: exit {proc.returncode}, {len(log)} log lines" + "".join(
                    f"\n  {line}" for line in log[:10]))
        print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
