"""SLA job benchmark: one `check` pass over 100,000 tickets of which 100 have a deadline due (each missed and
escalated), which must take at most 100 ms: the cost follows the deadlines that came, not the table size.

Run from the repository root: `python -m bench.sla [--tickets N] [--due N] [--database URL]` (default: a fresh
SQLite file).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, insert, select

from mailticket.clock import utcnow
from mailticket.config import SlaSettings
from mailticket.db.models import OPEN, Customer, Operator, Outbox, Ticket
from mailticket.db.store import Store
from mailticket.service import sla
from tests.factories import SETTINGS

TICKETS = 100_000
DUE = 100
TARGET_MS = 100.0
ROUNDS = 5
INSERT_CHUNK = 10_000
SETTINGS_WITH_SLA = replace(SETTINGS, sla=(SlaSettings("standard", first_response=4 * 3600.0,
                                                        resolution=3 * 24 * 3600.0),))


def fill(store: Store, tickets: int, due: int, now) -> None:
    """`tickets` open tickets inserted directly (ingest is not what is measured): the first `due` missed their first
    response a minute ago, the others have hours to go; two admins to escalate to."""
    with store.transaction() as s:
        conn = s.connection()
        conn.execute(insert(Customer), [dict(id=1, address="ana@customer.example", name="", notes="",
                                             created_at=now)])
        conn.execute(insert(Operator), [dict(username=name, name=name, email=f"{name}@shop.example", is_admin=True,
                                             disabled=False, created_at=now, password_hash="")
                                        for name in ("boss", "deputy")])
        for start in range(0, tickets, INSERT_CHUNK):
            rows = []
            for n in range(start, min(start + INSERT_CHUNK, tickets)):
                created = now - timedelta(hours=4, minutes=1) if n < due else now - timedelta(minutes=n % 180)
                first_due = created + timedelta(hours=4)
                rows.append(dict(subject=f"Pedido {n}", subject_key=f"pedido {n}", status=OPEN, queue="default",
                                 priority="normal", customer_id=1, created_at=created, updated_at=created,
                                 last_message_at=created, waiting_since=created, handle_seconds=0.0,
                                 sla_name="standard", first_response_due_at=first_due,
                                 resolution_due_at=created + timedelta(days=3), sla_paused_seconds=0.0,
                                 sla_check_at=first_due))
            conn.execute(insert(Ticket), rows)


def run(url: str | None, tickets: int, due: int) -> list[float]:
    """Milliseconds of one check pass, per round, each on a fresh database."""
    timings = []
    for _ in range(ROUNDS):
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(url or f"sqlite:///{Path(tmp) / 'bench.db'}")
            store.migrate()
            now = utcnow()
            fill(store, tickets, due, now)
            started = time.perf_counter()
            with store.transaction() as s:
                checked = sla.check(s, SETTINGS_WITH_SLA, now)
            timings.append((time.perf_counter() - started) * 1000)
            with store.reading() as s:
                escalated = s.scalar(select(func.count()).select_from(Outbox))
            assert checked == due and escalated == due, (checked, escalated)
            store.dispose()
            if url:
                break  # a shared database is not refilled
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=TICKETS)
    parser.add_argument("--due", type=int, default=DUE)
    parser.add_argument("--database", help="an empty database URL (default: a fresh SQLite file per round)")
    args = parser.parse_args()
    timings = run(args.database, args.tickets, args.due)
    median = statistics.median(timings)
    print(f"SLA check: {args.tickets:,} tickets, {args.due} due (each marked and escalated): "
          f"median {median:.1f} ms over {len(timings)} round(s) (all: {', '.join(f'{t:.1f}' for t in timings)}); "
          f"target <= {TARGET_MS:.0f} ms: {'ok' if median <= TARGET_MS else 'MISSED'}")


if __name__ == "__main__":
    main()
