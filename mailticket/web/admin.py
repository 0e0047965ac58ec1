"""The admin page: operators and the live claims, each with a button to break it."""

from __future__ import annotations

from fastapi import APIRouter, Request

from mailticket.service import operators
from mailticket.web import reads
from mailticket.web.auth import Admin
from mailticket.web.core import web

router = APIRouter(include_in_schema=False)


@router.get("/admin")
def admin_page(request: Request, me: Admin):
    app = web(request)
    with app.store.reading() as session:
        people = operators.list_operators(session)
        claims = reads.live_claims(session)
    return app.render(request, "admin.html", operators=people, claims=claims)
