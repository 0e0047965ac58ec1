"""Outbox benchmark: 2,000 queued replies flushed to a local aiosmtpd sink, against bare aiosmtplib sends.

Run from the repository root: `python -m bench.outbox [--count N] [--database URL]` (default: a fresh SQLite file).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, insert, select

from mailticket import smtp
from mailticket.clock import utcnow
from mailticket.db.models import OPEN, OUT, QUEUED, Customer, Message, Outbox, Ticket
from mailticket.db.store import Store
from mailticket.mail import compose
from mailticket.service.outbox import CONNECTIONS, flush_sync
from tests.factories import SETTINGS
from tests.smtp_sink import SmtpSink

COUNT = 2000
TARGET_PER_SECOND = 200
SUPPORT = "support@shop.example"
BODY = ("Olá! O seu pedido {n} saiu hoje do nosso armazém e chega em dois dias úteis. "
        "Qualquer dúvida, é só responder a este e-mail.\n") * 8


def queue(store: Store, count: int) -> list[bytes]:
    """`count` tickets with one queued reply each, inserted directly (the use cases are not what is measured)."""
    now = utcnow()
    received = now - timedelta(hours=1)
    raws = [compose.build(from_address=SUPPORT, from_name="Support", to=[f"c{n}@customer.example"],
                          subject=f"Re: Pedido {n} [#{n + 1}]", body=BODY.format(n=n), date=now, ticket_id=n + 1)
            for n in range(count)]
    with store.transaction() as s:
        conn = s.connection()
        conn.execute(insert(Customer), [dict(id=n + 1, address=f"c{n}@customer.example", name="", notes="",
                                             created_at=received) for n in range(count)])
        conn.execute(insert(Ticket), [dict(id=n + 1, subject=f"Pedido {n}", subject_key=f"pedido {n}", status=OPEN,
                                           customer_id=n + 1, created_at=received, updated_at=now,
                                           last_message_at=received, handle_seconds=0.0) for n in range(count)])
        conn.execute(insert(Message), [dict(id=n + 1, ticket_id=n + 1, direction=OUT, message_id=out.message_id,
                                            from_addr=SUPPORT, to_addrs=f"c{n}@customer.example", subject=out.subject,
                                            date=now, received_at=now, text=BODY, raw=out.raw)
                                       for n, out in enumerate(raws)])
        conn.execute(insert(Outbox), [dict(message_id=n + 1, ticket_id=n + 1, kind="reply", status=QUEUED,
                                           recipients=[f"c{n}@customer.example"], attempts=0, next_attempt_at=now,
                                           created_at=now) for n in range(count)])
    return [out.raw for out in raws]


async def bare(settings, raws: list[bytes]) -> None:
    """The same messages over the same number of reused aiosmtplib connections, with no database at all."""
    work = iter(enumerate(raws))

    async def one_connection() -> None:
        async with smtp.Connection(settings) as conn:
            for n, raw in work:
                await conn.send(raw, SUPPORT, [f"c{n}@customer.example"])

    await asyncio.gather(*(one_connection() for _ in range(CONNECTIONS)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=COUNT)
    parser.add_argument("--database", help="a migrated, empty database URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    sink = SmtpSink()
    sink.start()
    settings = replace(SETTINGS, smtp=sink.settings())
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(args.database or f"sqlite:///{Path(tmp) / 'bench.db'}")
        store.migrate()
        raws = queue(store, args.count)

        start = time.perf_counter()
        counts = flush_sync(store, settings, limit=args.count)
        ours = time.perf_counter() - start
        with store.reading() as s:
            sent = s.scalar(select(func.count()).select_from(Outbox).where(Outbox.status == "sent"))
        store.dispose()

    delivered = len(sink.messages)
    start = time.perf_counter()
    asyncio.run(bare(settings.smtp, raws))
    baseline = time.perf_counter() - start
    sink.stop()

    rate = args.count / ours
    print(f"{args.count} replies: outbox flush {ours:.2f} s = {rate:.0f} msg/s "
          f"({'meets' if rate >= TARGET_PER_SECOND else 'MISSES'} the {TARGET_PER_SECOND}/s target); "
          f"bare aiosmtplib {baseline:.2f} s = {args.count / baseline:.0f} msg/s; "
          f"counts {counts}, rows sent {sent}, sink received {delivered}")
    assert sent == delivered == args.count, "every reply delivered exactly once"


if __name__ == "__main__":
    main()
