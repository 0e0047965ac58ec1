"""Canned replies on the web: the admin page (list, add, edit, delete) and the reply form's "Insert" without JavaScript.

With JavaScript, static/app.js inserts the chosen reply at the cursor from the option's data-body; without it,
the Insert button posts the whole reply form here and the ticket page comes back with the text appended.
"""

from __future__ import annotations

import dataclasses

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Request
from starlette.concurrency import run_in_threadpool

from mailticket.db.models import Operator, Ticket
from mailticket.service import canned
from mailticket.web.auth import Admin, Posting
from mailticket.i18n import N_
from mailticket.web.core import flash, redirect, t, web
from mailticket.web.pages import MAX_ID, MAX_TEXT_CHARS, Draft, TicketId, render_ticket

PAGE = "/admin/canned"
CannedId = Annotated[int, Path(ge=1, le=MAX_ID)]
TitleField = Annotated[str, Form(max_length=canned.MAX_TITLE_CHARS * 2)]
BodyField = Annotated[str, Form(max_length=MAX_TEXT_CHARS)]

router = APIRouter(include_in_schema=False)


def admin_posting(me: Posting) -> Operator:
    """An admin whose form carries this session's CSRF token."""
    if not me.is_admin:
        raise HTTPException(403, N_("only an admin may change canned replies"))
    return me


AdminPosting = Annotated[Operator, Depends(admin_posting)]


def _page(request: Request, status: int = 200, *, error: str | None = None, editing: int | None = None,
          title: str = "", body: str = ""):
    app = web(request)
    with app.store.reading() as session:
        replies = canned.list_replies(session)
    return app.render(request, "canned.html", status, replies=replies, error=error, editing=editing,
                      draft_title=title, draft_body=body, placeholders=canned.PLACEHOLDERS)


@router.get(PAGE)
def canned_page(request: Request, me: Admin):
    return _page(request)


@router.get(PAGE + "/{reply_id}")
def edit_page(request: Request, reply_id: CannedId, me: Admin):
    with web(request).store.reading() as session:
        try:
            reply = canned.get(session, reply_id)
        except canned.CannedError as missing:
            raise HTTPException(404, str(missing)) from None
    return _page(request, editing=reply.id, title=reply.title, body=reply.body)


@router.post(PAGE)
def add(request: Request, me: AdminPosting, title: TitleField = "", body: BodyField = ""):
    return _save(request, title, body, None)


@router.post(PAGE + "/{reply_id}")
def change(request: Request, reply_id: CannedId, me: AdminPosting, title: TitleField = "", body: BodyField = ""):
    return _save(request, title, body, reply_id)


def _save(request: Request, title: str, body: str, reply_id: int | None):
    app = web(request)
    try:
        with app.store.transaction() as session:
            saved = canned.save(session, title, body, app.clock(), reply_id).title
    except canned.CannedError as refused:
        return _page(request, 422, error=t(request, "Not saved: %(reason)s", reason=refused), editing=reply_id, title=title,
                     body=body)
    flash(request, t(request, "Canned reply %(title)r saved", title=saved))
    return redirect(PAGE)


@router.post(PAGE + "/{reply_id}/delete")
def remove(request: Request, reply_id: CannedId, me: AdminPosting):
    try:
        with web(request).store.transaction() as session:
            title = canned.delete(session, reply_id)
    except canned.CannedError as missing:
        raise HTTPException(404, str(missing)) from None
    flash(request, t(request, "Canned reply %(title)r deleted", title=title))
    return redirect(PAGE)


@router.post("/tickets/{ticket_id}/canned")
async def insert(request: Request, ticket_id: TicketId, me: Posting):
    """The reply form's Insert button without JavaScript: the typed text comes back with the reply appended."""
    form = await request.form()
    raw_id = str(form.get("canned_id", ""))
    draft = Draft.of(form)
    return await run_in_threadpool(_insert, request, ticket_id, me, draft, raw_id)


def _insert(request: Request, ticket_id: int, me: Operator, draft: Draft, raw_id: str):
    app = web(request)
    with app.store.reading() as session:
        ticket = session.get(Ticket, ticket_id)
        chosen = None
        if ticket is not None and raw_id.isdigit():
            chosen = next((c for c in canned.for_ticket(session, ticket, me) if c.id == int(raw_id)), None)
    if chosen is None:
        return render_ticket(request, me, ticket_id, 422, error=t(request, "Choose a canned reply to insert"),
                             draft=draft)
    # Appended on a line of its own, after what was typed: nothing typed is lost.
    text = draft.body.replace("\r\n", "\n")
    if text.strip():
        text = text.rstrip("\n") + "\n\n"
    else:
        text = ""
    return render_ticket(request, me, ticket_id,
                         draft=dataclasses.replace(draft, body=(text + chosen.body)[:MAX_TEXT_CHARS]))
