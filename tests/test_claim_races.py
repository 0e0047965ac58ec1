"""Claim races on real SQLite and PostgreSQL: many threads and processes claim one ticket at the same instant."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter


from mailticket.claims import ClaimConflict
from mailticket.db.models import Operator
from mailticket.db.store import Store
from mailticket.service import claims as svc
from tests.factories import make_operator, make_ticket

THREADS = 32
ROUNDS = 500
PROCESSES = 4
PROCESS_ROUNDS = 500
TTL = 900


def contend(store: Store, ticket: int, operator_id: int, barrier, results: list, rounds: int) -> None:
    """Each round: wait for everyone, claim at once, record the outcome, then the winner releases."""
    for _ in range(rounds):
        barrier.wait()
        outcome = "error"
        try:
            with store.transaction() as session:
                svc.claim(session, ticket, session.get(Operator, operator_id), TTL)
            outcome = "won"
        except ClaimConflict:
            outcome = "refused"
        except Exception as exc:  # noqa: BLE001 - the test reports any other error as a failure
            outcome = f"error: {type(exc).__name__}: {exc}"
        results.append(outcome)
        barrier.wait()
        if outcome == "won":
            with store.transaction() as session:
                svc.release(session, ticket, session.get(Operator, operator_id))
        barrier.wait()


def check(outcomes: list[str], contenders: int, rounds: int) -> None:
    counts = Counter(o if not o.startswith("error") else o for o in outcomes)
    errors = [o for o in outcomes if o.startswith("error")]
    assert errors == [], errors[:3]
    assert counts["won"] == rounds, f"{counts['won']} winners in {rounds} rounds"
    assert counts["refused"] == rounds * (contenders - 1)


def test_32_threads_claiming_at_once_get_exactly_one_winner_per_round(store):
    ticket = make_ticket(store)
    operators = [make_operator(store, f"op{i}") for i in range(THREADS)]
    barrier = threading.Barrier(THREADS)
    results: list[str] = []
    workers = [threading.Thread(target=contend, args=(store, ticket, op, barrier, results, ROUNDS)) for op in operators]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    check(results, THREADS, ROUNDS)


def _process_main(url: str, ticket: int, operator_id: int, barrier, queue) -> None:
    store = Store(url)
    results: list[str] = []
    try:
        contend(store, ticket, operator_id, barrier, results, PROCESS_ROUNDS)
    finally:
        queue.put(results)
        store.dispose()


def test_4_processes_claiming_at_once_get_exactly_one_winner_per_round(store):
    ticket = make_ticket(store)
    operators = [make_operator(store, f"proc{i}") for i in range(PROCESSES)]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    queue = context.Queue()
    procs = [context.Process(target=_process_main, args=(store.url, ticket, op, barrier, queue)) for op in operators]
    for proc in procs:
        proc.start()
    results: list[str] = []
    for _ in procs:
        results.extend(queue.get(timeout=600))
    for proc in procs:
        proc.join(timeout=60)
    check(results, PROCESSES, PROCESS_ROUNDS)
