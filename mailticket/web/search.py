"""The search page: GET /search?q= over subject, messages, addresses, names and ticket number, newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from mailticket.service.tickets import search_tickets
from mailticket.web.auth import SignedIn
from mailticket.web.core import web

# As the API's `q`: longer input is refused with a 422 before it reaches the search.
MAX_QUERY_CHARS = 200
# Tickets shown for one search; the operator narrows the words rather than pages.
RESULTS = 50

router = APIRouter(include_in_schema=False)


@router.get("/search")
def search_page(request: Request, me: SignedIn,
                q: Annotated[str, Query(max_length=MAX_QUERY_CHARS)] = ""):
    app = web(request)
    q = q.replace("\x00", "").strip()
    results = []
    if q:
        with app.store.reading() as session:
            results = search_tickets(session, q, limit=RESULTS)
    return app.render(request, "search.html", q=q, results=results, limit=RESULTS)
