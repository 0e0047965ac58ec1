"""Search benchmark on SQLite: 500,000 messages (FTS5 index filled by the migration's triggers), 200 searches.

Run from the repository root: `python -m bench.search` (a few minutes, mostly the fill). Target: p95 <= 100 ms.
The searches go through `mailticket.service.tickets.search_tickets` as the web page and the CLI call it, a fresh read
session each, so the figure includes loading the ticket summaries and snippets.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import insert

from mailticket.db.models import Message, Ticket
from mailticket.db.store import Store
from mailticket.service.tickets import search_tickets as search
from bench.web import insert_customers, ms, percentile

TICKETS = 100_000
MESSAGES_PER_TICKET = 5
CUSTOMERS = 20_000
SEARCHES = 200
WORDS_PER_MESSAGE = (20, 80)
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
# Words of a shop's support mail: a few in nearly every message, most in few, as in real mail (Zipf-like).
COMMON = ("pedido", "obrigado", "bom", "dia", "entrega", "produto", "não", "ainda", "prazo", "order", "please")
TOPICS = ("devolução", "reembolso", "troca", "tamanho", "rastreio", "transportadora", "nota", "fiscal", "cartão",
          "boleto", "pix", "cupom", "desconto", "garantia", "defeito", "quebrado", "atrasado", "extraviado",
          "endereço", "cancelamento", "estorno", "fatura", "parcelamento", "etiqueta", "embalagem", "calçado",
          "camiseta", "tênis", "mochila", "relógio", "refund", "exchange", "invoice", "tracking", "damaged")
SYLLABLES = ("ba", "ce", "di", "fo", "gu", "la", "me", "ni", "po", "ra", "se", "ti", "vo", "za", "ção", "lhe",
             "nh", "qu", "tr", "pl", "ão", "ém")


def vocabulary(rnd: random.Random, size: int = 20_000) -> list[str]:
    words = {"".join(rnd.choice(SYLLABLES) for _ in range(rnd.randint(2, 4))) for _ in range(size)}
    return sorted(words)


def message_text(rnd: random.Random, rare: list[str]) -> str:
    count = rnd.randint(*WORDS_PER_MESSAGE)
    words = []
    for _ in range(count):
        roll = rnd.random()
        if roll < 0.35:
            words.append(rnd.choice(COMMON))
        elif roll < 0.5:
            words.append(rnd.choice(TOPICS))
        else:
            # Zipf-like: low indexes are far more frequent than high ones.
            words.append(rare[min(len(rare) - 1, int(rnd.paretovariate(1.1)) - 1)])
    return " ".join(words).capitalize() + "."


def fill(url: str, tickets: int) -> list[str]:
    """Bulk rows straight into the tables, as bench/web.py does; returns the vocabulary of rare words."""
    store = Store(url)
    store.migrate()
    rnd = random.Random(11)
    rare = vocabulary(rnd)
    rnd.shuffle(rare)
    with store.transaction() as session:
        conn = session.connection()
        insert_customers(conn, "Cliente {i} Souza")
        for start in range(1, tickets + 1, 10_000):
            rows, messages = [], []
            for t in range(start, min(start + 10_000, tickets + 1)):
                created = T0 + timedelta(minutes=t)
                customer = rnd.randint(1, CUSTOMERS)
                topic = rnd.choice(TOPICS)
                rows.append(dict(id=t, subject=f"{topic.capitalize()} do pedido {t}", subject_key=f"pedido {t}",
                                 status=rnd.choices(("open", "pending", "resolved"), (3, 2, 5))[0],
                                 queue="default", priority="normal", mailbox="support", customer_id=customer,
                                 created_at=created, updated_at=created,
                                 last_message_at=created + timedelta(hours=MESSAGES_PER_TICKET - 1),
                                 handle_seconds=0.0))
                for m in range(MESSAGES_PER_TICKET):
                    inbound = m % 2 == 0
                    messages.append(dict(
                        ticket_id=t, direction="in" if inbound else "out", message_id=f"t{t}-m{m}@mail.example",
                        from_addr=f"c{customer}@mail.example" if inbound else "support@shop.example",
                        from_name=f"Cliente {customer} Souza" if inbound else "Suporte",
                        subject=f"Re: {topic.capitalize()} do pedido {t}", received_at=created + timedelta(hours=m),
                        text=message_text(rnd, rare), matched_by="new" if m == 0 else "in-reply-to"))
            conn.execute(insert(Ticket), rows)
            conn.execute(insert(Message), messages)
    store.dispose()
    return rare


def queries(rnd: random.Random, rare: list[str], tickets: int) -> list[str]:
    """What operators type: a topic (often without accents), a common word, a rarer word, two words, an address,
    a ticket number."""
    plain = str.maketrans("ãáâçéêíóôõúü", "aaaceeiooouu")
    made = []
    for _ in range(SEARCHES):
        kind = rnd.randrange(7)
        if kind == 0:
            made.append(rnd.choice(TOPICS).translate(plain))
        elif kind == 1:
            made.append(rnd.choice(COMMON))
        elif kind == 2:
            made.append(rare[rnd.randrange(200)])
        elif kind == 3:
            made.append(f"{rnd.choice(TOPICS)} {rare[rnd.randrange(50)]}")
        elif kind == 4:
            made.append(f"c{rnd.randint(1, CUSTOMERS)}@mail.example")
        elif kind == 5:
            made.append(str(rnd.randint(1, tickets)))
        else:
            made.append(f"{rnd.choice(TOPICS).translate(plain)} {rnd.choice(COMMON)}")
    return made


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, default=TICKETS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        began = time.perf_counter()
        rare = fill(url, args.tickets)
        print(f"filled {args.tickets} tickets, {args.tickets * MESSAGES_PER_TICKET} messages with their search "
              f"index in {time.perf_counter() - began:.0f} s")
        store = Store(url)
        timings, hits = [], []
        for q in queries(random.Random(3), rare, args.tickets):
            began = time.perf_counter()
            with store.reading() as session:
                found = search(session, q)
            timings.append(time.perf_counter() - began)
            hits.append(len(found))
        store.dispose()
        print(f"{len(timings)} searches: p50 {ms(statistics.median(timings))}, p95 {ms(percentile(timings, 95))}, "
              f"max {ms(max(timings))}; tickets per answer: median {statistics.median(hits):.0f}, "
              f"none for {sum(1 for h in hits if h == 0)}")


if __name__ == "__main__":
    main()
