"""The ticket list in pages that say where they stop (issue 15): one page and the `after` of the next, or every
ticket read in chunks. Keyset paging by ticket id, in find_tickets' order (ascending id): `after` = the last id seen.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from mailticket.service.tickets import find_tickets

# Tickets read per query when the whole list is asked for.
LIST_CHUNK = 500


@dataclass(frozen=True)
class TicketPage:
    tickets: list[dict[str, Any]]
    # The `after` that fetches the next page; None when this page is the last one.
    next_after: int | None


def ticket_page(session: Session, *, limit: int, after: int = 0, status: str | None = None,
                q: str | None = None) -> TicketPage:
    """At most `limit` ticket summaries after the id `after`, and whether (and from where) more follow."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    # One more than asked: a full page says "more" only when there is more, never at the exact end.
    rows = find_tickets(session, status=status, q=q, after=after, limit=limit + 1)
    if len(rows) > limit:
        return TicketPage(rows[:limit], rows[limit - 1]["id"])
    return TicketPage(rows, None)


def every_ticket(session: Session, *, after: int = 0, status: str | None = None, q: str | None = None,
                 chunk: int = LIST_CHUNK) -> Iterator[dict[str, Any]]:
    """Every ticket summary after `after`, read `chunk` at a time inside the caller's one read transaction."""
    while True:
        rows = find_tickets(session, status=status, q=q, after=after, limit=chunk)
        yield from rows
        if len(rows) < chunk:
            return
        after = rows[-1]["id"]
        # The chunk's tickets are dicts by now: drop the ORM objects so memory stays one chunk, not the whole list.
        session.expunge_all()
