"""Ticket search: one query over subject, message text, sender address and name, and ticket number, newest first.

Full-text on both stores, accent-insensitive: SQLite's FTS5 table `message_search` and PostgreSQL's GIN index
over `mailticket_search_document(...)`; migration 0006 explains the design. User input never reaches the
query syntax as is: it is cut into words, and each word goes in quoted.
"""

from __future__ import annotations

import re
import unicodedata

from sqlalchemy import Select, bindparam, func, literal_column, or_, select, text
from sqlalchemy.orm import Session

from mailticket.db.models import Customer, CustomerAddress, Message, Ticket

# A word of the query, as both tokenizers see one: letters and digits (an underscore separates, as there).
WORD = re.compile(r"[^\W_]+")
# "123" or "#123": also the ticket with that number, matched exactly.
TICKET_NUMBER = re.compile(r"#?(\d{1,9})")
# Beyond this many words a query is not a search any more; the rest is ignored.
MAX_TERMS = 16
# Matching messages are read newest first in pages of this size until enough tickets are found.
SCAN_PAGE = 200
# Characters of message text shown around the first hit.
SNIPPET_CHARS = 160
SQLITE_MAX_ROWID = 2**63 - 1

SQLITE_MATCHES = text(
    "SELECT m.id, m.ticket_id FROM message_search JOIN messages m ON m.id = message_search.rowid "
    "WHERE message_search MATCH :match AND message_search.rowid < :below "
    "ORDER BY message_search.rowid DESC LIMIT :page"
).columns(id=Message.id.type, ticket_id=Message.ticket_id.type)
PG_DOCUMENT = func.mailticket_search_document(Message.subject, Message.text, Message.from_addr, Message.from_name)


def terms(q: str) -> list[list[str]]:
    """The query's terms, each the list of its words: 'ana@shop.example troca' -> [[ana, shop, example], [troca]]."""
    found = [WORD.findall(part) for part in q.split()]
    return [words for words in found if words][:MAX_TERMS]


def fts5_query(q: str) -> str | None:
    """FTS5 MATCH text: every term must match, a term of several words as a phrase; None when nothing is left."""
    parts = [f'"{" ".join(words)}"' for words in terms(q)]
    return " ".join(parts) or None


def tsquery(q: str) -> str | None:
    """The same query in PostgreSQL's to_tsquery syntax, each word quoted."""
    parts = [" <-> ".join(f"'{w}'" for w in words) for words in terms(q)]
    return " & ".join(f"({p})" for p in parts) or None


def _message_matches(session: Session, q: str) -> Select | None:
    """(message id, ticket id) of the messages matching the words of `q`, for either store."""
    if session.get_bind().dialect.name == "sqlite":
        match = fts5_query(q)
        if match is None:
            return None
        return select(Message.id, Message.ticket_id).where(text(
            "messages.id IN (SELECT rowid FROM message_search WHERE message_search MATCH :match)"
        ).bindparams(match=match))
    query = tsquery(q)
    if query is None:
        return None
    return select(Message.id, Message.ticket_id).where(
        PG_DOCUMENT.bool_op("@@")(func.to_tsquery(literal_column("'simple'::regconfig"),
                                             func.mailticket_search_fold(bindparam("tsq", query)))))


def direct_ticket_ids(session: Session, q: str) -> set[int]:
    """Tickets named by number, or whose customer has exactly this address: exact matches, no full-text."""
    found: set[int] = set()
    words = q.split()
    if len(words) == 1 and (number := TICKET_NUMBER.fullmatch(words[0])):
        if session.get(Ticket, int(number.group(1))) is not None:
            found.add(int(number.group(1)))
    if len(words) == 1 and "@" in words[0]:
        addresses = {words[0], words[0].lower()}
        customer_ids = select(Customer.id).where(Customer.address.in_(addresses)).union(
            select(CustomerAddress.customer_id).where(CustomerAddress.address.in_(addresses)))
        found.update(session.scalars(select(Ticket.id).where(Ticket.customer_id.in_(customer_ids))))
    return found


def matching_ticket_ids(session: Session, q: str):
    """A condition on Ticket.id: the tickets `q` finds (for find_tickets, which keeps its own order and paging)."""
    conditions = []
    if (matches := _message_matches(session, q)) is not None:
        conditions.append(Ticket.id.in_(select(matches.subquery().c.ticket_id)))
    if direct := direct_ticket_ids(session, q):
        conditions.append(Ticket.id.in_(direct))
    return or_(*conditions) if conditions else Ticket.id.is_(None)


def newest_matches(session: Session, q: str, limit: int, status: str | None) -> dict[int, int]:
    """{ticket id: its newest matching message id}, newest first, for at most `limit` tickets.

    Messages are read from the newest down, a page at a time, so that a common word stops early instead of
    ranking every hit; the message id follows arrival order.
    """
    found: dict[int, int] = {}
    sqlite = session.get_bind().dialect.name == "sqlite"
    match = fts5_query(q) if sqlite else None
    base = None if sqlite else _message_matches(session, q)
    if match is None and base is None:
        return found
    below: int | None = None  # the oldest message id read so far
    while len(found) < limit:
        if sqlite:
            rows = session.execute(SQLITE_MATCHES, dict(match=match, below=below or SQLITE_MAX_ROWID,
                                                        page=SCAN_PAGE)).all()
        else:
            page = base if below is None else base.where(Message.id < below)
            rows = session.execute(page.order_by(Message.id.desc()).limit(SCAN_PAGE)).all()
        if status is not None and rows:
            wanted = set(session.scalars(select(Ticket.id).where(
                Ticket.id.in_({r.ticket_id for r in rows}), Ticket.status == status)))
            rows_kept = [r for r in rows if r.ticket_id in wanted]
        else:
            rows_kept = rows
        for row in rows_kept:
            if row.ticket_id not in found and len(found) < limit:
                found[row.ticket_id] = row.id
        if len(rows) < SCAN_PAGE:
            break
        below = rows[-1].id
    return found


def fold(value: str) -> str:
    """Lower case without accents, one character for one, so that positions in the folded text are the original's."""
    return "".join(_fold_char(c) for c in value)


def _fold_char(char: str) -> str:
    if char.isascii():
        return char.lower()
    base = unicodedata.normalize("NFD", char)[0].lower()
    return base if len(base) == 1 else char


def snippet(body: str, words: list[str]) -> str:
    """About SNIPPET_CHARS of `body` around the first word of the query found in it (its start if none is)."""
    body = " ".join(body.split())
    if not body:
        return ""
    folded = fold(body)
    hits = [m.start() for w in words if (m := re.search(r"(?<!\w)" + re.escape(fold(w)), folded))]
    start = max(0, min(hits) - SNIPPET_CHARS // 3) if hits else 0
    end = start + SNIPPET_CHARS
    return ("…" if start else "") + body[start:end].strip() + ("…" if end < len(body) else "")
