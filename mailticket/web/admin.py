"""The admin pages: operators, the live claims (each with a button to break it), the blocked senders, and the
quarantine (each message shown, downloaded, released or deleted)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Path, Request
from fastapi.responses import Response

from mailticket.db.store import db_now
from mailticket.service import blocks, operators, quarantine_admin
from mailticket.service.errors import ActionError
from mailticket.web import reads
from mailticket.web.auth import Admin, AdminPosting
from mailticket.web.core import flash, redirect, t, web

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
        flash(request, t(request, "Not blocked: %(reason)s", reason=refused))
        return redirect("/admin")
    flash(request, t(request, "Mail from %(pattern)s goes to Spam from now on", pattern=kept))
    return redirect("/admin")


@router.post("/admin/blocked/remove")
def unblock(request: Request, me: AdminPosting, pattern: Annotated[str, Form(max_length=320)] = ""):
    try:
        with web(request).store.transaction() as session:
            lifted = blocks.unblock(session, pattern)
    except ActionError as refused:
        lifted, pattern = False, str(refused)
    flash(request, t(request, "Mail from %(pattern)s is read again", pattern=pattern) if lifted
          else t(request, "%(pattern)s was not blocked", pattern=pattern))
    return redirect("/admin")


QuarantineId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.get("/admin/quarantine")
def quarantine_page(request: Request, me: Admin):
    app = web(request)
    with app.store.reading() as session:
        found = quarantine_admin.entries(session)
    return app.render(request, "quarantine.html", entries=found, shown_entry=None, headers="")


@router.get("/admin/quarantine/{entry_id}")
def quarantine_entry(request: Request, entry_id: QuarantineId, me: Admin):
    app = web(request)
    try:
        with app.store.reading() as session:
            found = quarantine_admin.entry(session, entry_id)
            headers = quarantine_admin.header_block(found.raw)
    except ActionError as missing:
        raise HTTPException(404, str(missing)) from None
    return app.render(request, "quarantine.html", entries=[], shown_entry=found, headers=headers)


@router.get("/admin/quarantine/{entry_id}/raw")
def quarantine_raw(request: Request, entry_id: QuarantineId, me: Admin):
    try:
        with web(request).store.reading() as session:
            raw = quarantine_admin.entry(session, entry_id).raw
    except ActionError as missing:
        raise HTTPException(404, str(missing)) from None
    # A download, never shown: the bytes are whatever the sender made them.
    return Response(raw, media_type="application/octet-stream", headers={
        "Content-Disposition": f'attachment; filename="quarantined-{entry_id}.eml"',
        "Content-Security-Policy": "sandbox; default-src 'none'", "Cache-Control": "private, no-store"})


@router.post("/admin/quarantine/{entry_id}/release")
def quarantine_release(request: Request, entry_id: QuarantineId, me: AdminPosting):
    app = web(request)
    try:
        with app.store.transaction() as session:
            released = quarantine_admin.release(session, entry_id, app.settings, db_now(session))
    except ActionError as missing:
        raise HTTPException(404, str(missing)) from None
    if released.still_quarantined:
        flash(request, t(request, "Still quarantined: %(reason)s", reason=released.outcome.reason))
        return redirect(f"/admin/quarantine/{entry_id}")
    flash(request, t(request, "Released into ticket #%(id)s", id=released.outcome.ticket_id))
    return redirect(f"/tickets/{released.outcome.ticket_id}")


@router.post("/admin/quarantine/{entry_id}/delete")
def quarantine_delete(request: Request, entry_id: QuarantineId, me: AdminPosting):
    try:
        with web(request).store.transaction() as session:
            quarantine_admin.remove(session, entry_id)
    except ActionError as missing:
        raise HTTPException(404, str(missing)) from None
    flash(request, t(request, "Quarantined message %(id)s deleted", id=entry_id))
    return redirect("/admin/quarantine")
