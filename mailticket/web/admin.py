"""The admin page: operators, the live claims (each with a button to break it), and the blocked senders."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request

from mailticket.db.store import db_now
from mailticket.service import blocks, operators
from mailticket.service.errors import ActionError
from mailticket.web import reads
from mailticket.web.auth import Admin, AdminPosting
from mailticket.web.core import flash, redirect, web

router = APIRouter(include_in_schema=False)


@router.get("/admin")
def admin_page(request: Request, me: Admin):
    app = web(request)
    with app.store.reading() as session:
        people = operators.list_operators(session)
        claims = reads.live_claims(session)
        blocked = blocks.blocked(session)
    return app.render(request, "admin.html", operators=people, claims=claims, blocked=blocked)


@router.post("/admin/blocked")
def block(request: Request, me: AdminPosting, pattern: Annotated[str, Form(max_length=320)] = ""):
    try:
        with web(request).store.transaction() as session:
            kept = blocks.block(session, pattern, by=me.username, now=db_now(session))
    except ActionError as refused:
        flash(request, f"Not blocked: {refused}")
        return redirect("/admin")
    flash(request, f"Mail from {kept} goes to Spam from now on")
    return redirect("/admin")


@router.post("/admin/blocked/remove")
def unblock(request: Request, me: AdminPosting, pattern: Annotated[str, Form(max_length=320)] = ""):
    try:
        with web(request).store.transaction() as session:
            lifted = blocks.unblock(session, pattern)
    except ActionError as refused:
        lifted, pattern = False, str(refused)
    flash(request, f"Mail from {pattern} is read again" if lifted else f"{pattern} was not blocked")
    return redirect("/admin")
