"""The ticket page and its forms: claim, release, break, reply (fenced by the claim), note, status, priority, queue.

Every POST answers with a redirect (303) on success, or with the ticket page again and the reason when
refused; a refused reply shows the typed text again, so nothing typed is lost (SPEC §6).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, File, Form, HTTPException, Path, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as StarletteUpload

from mailticket import metrics
from mailticket.claims import ClaimConflict, ClaimError, ClaimLost, NotHolder
from mailticket.db.models import Operator
from mailticket.db.store import db_now
from mailticket.service import actions
from mailticket.service.errors import ActionError
from mailticket.service import claims as claim_service
from mailticket.service import canned as canned_replies
from mailticket.service import csat
from mailticket.service import drafts, history, presence, recipients
from mailticket.web import reads
from mailticket.web.auth import Posting, SignedIn
from mailticket.i18n import N_
from mailticket.web.core import flash, local_path, redirect, t, web
from mailticket.web.labels import label_in

# Ids beyond a 32-bit integer exist in no table; refusing them early keeps the drivers from overflowing.
MAX_ID = 2**31 - 1
TicketId = Annotated[int, Path(ge=1, le=MAX_ID)]
AttachmentId = Annotated[int, Path(ge=1, le=MAX_ID)]
MAX_TEXT_CHARS = actions.MAX_BODY_CHARS * 2  # the service gives the precise refusal below this
TextField = Annotated[str, Form(max_length=MAX_TEXT_CHARS)]
# Reply form: "" leaves the status as it is.
REPLY_STATUSES = ("", "pending", "resolved")
# The To and Cc fields: 50 addresses of the longest kind.
MAX_ADDRESS_FIELD = 50 * 256
# A content type we repeat to the browser as stored; anything else is served as plain bytes.
SAFE_CONTENT_TYPE = re.compile(r"[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*")

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class Draft:
    """What the operator typed into the reply form, shown again after a refusal."""

    body: str = ""
    keep_claim: bool = False
    status: str = ""
    to: str | None = None  # None: the address proposed (Reply-To, else From, of the customer's newest mail)
    cc: str = ""
    reply_all: bool = False

    @classmethod
    def of(cls, form) -> Draft:
        """The draft a posted reply form carries (its files cannot be handed back)."""
        status = str(form.get("status", ""))
        return cls(str(form.get("body", ""))[:MAX_TEXT_CHARS], keep_claim="keep_claim" in form,
                   status=status if status in REPLY_STATUSES else "",
                   to=str(form["to"])[:MAX_ADDRESS_FIELD] if "to" in form else None,
                   cc=str(form.get("cc", ""))[:MAX_ADDRESS_FIELD], reply_all="reply_all" in form)


def ticket_url(ticket_id: int) -> str:
    return f"/tickets/{ticket_id}"


def word(request: Request, value: str, kind: str) -> str:
    """A stored value (a status, a priority) as the page's language names it."""
    return label_in(web(request).language(request), value, kind) if kind in ("status", "priority") else value


def held_by_message(request: Request, error: ClaimError) -> str:
    if error.holder and error.expires_at:
        return t(request, "Claimed by %(name)s until %(time)s", name=error.holder,
                 time=web(request).clock_text(request, error.expires_at))
    return str(error)[:1].upper() + str(error)[1:]


def render_ticket(request: Request, me: Operator, ticket_id: int, status: int = 200, *, error: str | None = None,
                  draft: Draft | None = None, note_draft: str = "", fresh: frozenset[int] = frozenset()) -> Response:
    """The ticket page; `draft` (else the operator's saved draft) shows the reply form with the typed text even
    without the claim; `fresh` marks the messages that held a reply back."""
    app = web(request)
    with app.store.reading() as session:
        page = reads.ticket_page(session, ticket_id)
        # The canned replies filled for this ticket, and the customer's survey answer.
        canned = canned_replies.for_ticket(session, page.ticket, me)
        csat_rating = csat.rating(session, ticket_id)
        saved = drafts.load(session, ticket_id, me.id) if draft is None else None
        # Where the page's change stream starts (web/live.py): nothing between this read and the stream is missed.
        last_event = history.newest_id(session)
    if saved is not None:
        draft = Draft(saved.body, to=saved.to, cc=saved.cc)
    holding = page.held_by(me.id)
    live = page.live_claim()
    newest = next((m for m in reversed(page.messages) if m.direction == "in" and m.loop is None), None)
    answer, others = recipients.proposed(newest, page.ticket.customer.address, app.settings.own_addresses)
    claims = app.settings.claims
    return app.render(
        request, "ticket.html", status, page=page, ticket=page.ticket, customer=page.ticket.customer, live=live,
        holding=holding, show_reply=holding or draft is not None, draft=draft or Draft(),
        can_reclaim=draft is not None and not holding and live is None, error=error, note_draft=note_draft,
        heartbeat=claims.heartbeat, idle_after=claims.idle_after, last_event=last_event,
        seen_message=newest.id if newest else "", fresh=fresh,
        max_attachment_bytes=app.settings.limits.max_attachment_bytes,
        reply_statuses=REPLY_STATUSES, statuses=actions.STATUSES,
        priorities=actions.PRIORITIES, canned=canned, csat_rating=csat_rating, proposed_to=answer,
        others=others,
    )


@router.get("/tickets/{ticket_id}")
def ticket_page(request: Request, ticket_id: TicketId, me: SignedIn):
    return render_ticket(request, me, ticket_id)


@router.post("/tickets/{ticket_id}/claim")
async def claim(request: Request, ticket_id: TicketId, me: Posting):
    # The reply form's "Claim again" button posts the whole form here: its text comes back pre-filled.
    form = await request.form()
    draft = Draft.of(form) if "body" in form else None
    # The database work runs in a worker thread, as for the other (sync) handlers.
    return await run_in_threadpool(_claim, request, ticket_id, me, draft)


def _claim(request: Request, ticket_id: int, me: Operator, draft: Draft | None) -> Response:
    app = web(request)
    try:
        with app.store.transaction() as session:
            view = claim_service.claim(session, ticket_id, me, app.settings.claims.ttl)
            if draft is not None:
                drafts.save(session, ticket_id, me.id, draft.body, draft.to, draft.cc, view.claimed_at)
    except ClaimConflict as refused:
        metrics.claim_conflict(metrics.CLAIM_HELD)  # metrics hook
        return render_ticket(request, me, ticket_id, 409, error=held_by_message(request, refused), draft=draft)
    if draft is not None:
        # Rendered, not redirected: the text may be longer than a cookie can carry.
        return render_ticket(request, me, ticket_id, draft=draft)
    flash(request, t(request, "Claimed until %(time)s", time=app.clock_text(request, view.expires_at)))
    return redirect(ticket_url(ticket_id))


class RenewBody(BaseModel):
    claim_token: str = Field(max_length=200)


@router.post("/tickets/{ticket_id}/claim/renew")
def renew(request: Request, ticket_id: TicketId, body: RenewBody, me: Posting):
    """The reply form's heartbeat (JSON, CSRF token in X-CSRF-Token)."""
    app = web(request)
    try:
        with app.store.transaction() as session:
            view = claim_service.renew(session, ticket_id, me, body.claim_token, app.settings.claims.ttl)
    except ClaimLost as lost:
        metrics.claim_conflict(metrics.CLAIM_LOST)  # metrics hook
        return JSONResponse({"detail": str(lost)}, status_code=409)
    return {"expires_at": view.expires_at.isoformat()}


@router.post("/tickets/{ticket_id}/release")
async def release(request: Request, ticket_id: TicketId, me: Posting):
    """Ends the claim. The reply form's own "Release claim" button posts its text, which is kept as the draft. A
    closing page's beacon posts its claim token, so that it never ends a newer claim, and its page id (web/live.py),
    so that it leaves the claim to the operator's other pages of the ticket."""
    form = await request.form()
    draft = Draft.of(form) if "body" in form else None
    token = str(form.get("claim_token", ""))[:200] or None
    closing = str(form.get("page", ""))[:64] or None
    return await run_in_threadpool(_release, request, ticket_id, me, draft, token, closing)


def _release(request: Request, ticket_id: int, me: Operator, draft: Draft | None, token: str | None,
             closing: str | None) -> Response:
    try:
        with web(request).store.transaction() as session:
            if closing is not None and presence.open_elsewhere(session, ticket_id, me.id, closing, db_now(session)):
                return Response(status_code=204)  # her other tab or browser still shows the ticket: it keeps the claim
            if draft is not None:
                drafts.save(session, ticket_id, me.id, draft.body, draft.to, draft.cc, db_now(session))
            claim_service.release(session, ticket_id, me, token=token)
    except (ClaimError, ActionError) as refused:
        return render_ticket(request, me, ticket_id, 409, error=str(refused), draft=draft)
    flash(request, t(request, "Claim released"))
    return redirect(ticket_url(ticket_id))


@router.post("/tickets/{ticket_id}/break")
def break_claim(request: Request, ticket_id: TicketId, me: Posting, next: Annotated[str, Form()] = ""):
    if not me.is_admin:
        raise HTTPException(403, N_("only an admin may break another operator's claim"))
    try:
        with web(request).store.transaction() as session:
            claim_service.break_claim(session, ticket_id, me)
    except NotHolder as refused:
        raise HTTPException(403, str(refused)) from None
    flash(request, t(request, "Claim broken"))
    return redirect(local_path(next, ticket_url(ticket_id)))


AddressField = Annotated[str | None, Form(max_length=MAX_ADDRESS_FIELD)]


@router.post("/tickets/{ticket_id}/reply")
def reply(
    request: Request, ticket_id: TicketId, me: Posting, body: TextField = "",
    claim_token: Annotated[str, Form(max_length=200)] = "", keep_claim: Annotated[bool, Form()] = False,
    status: Annotated[str, Form(max_length=16)] = "", to: AddressField = None, cc: AddressField = "",
    reply_all: Annotated[bool, Form()] = False, seen_message: Annotated[int | None, Form(ge=0, le=MAX_ID)] = None,
    attachments: Annotated[list[UploadFile], File()] = [],  # noqa: B006 (FastAPI copies defaults)
):
    app = web(request)
    draft = Draft(body, keep_claim, status if status in REPLY_STATUSES else "", to, cc or "", reply_all)
    files = read_uploads(attachments, app.settings.limits.max_attachment_bytes)
    # A browser cannot be handed files back: a refusal says to choose them again; the text is kept.
    again = bool(attachments and any(a.filename for a in attachments))
    if files is None:
        limit = app.settings.limits.max_attachment_bytes
        too_big = t(request, "the attachments are too big, together at most %(limit)s bytes", limit=limit)
        return render_ticket(request, me, ticket_id, 422, draft=draft, error=not_sent(request, too_big, again))
    try:
        with app.store.transaction() as session:
            actions.reply(session, app.settings, ticket_id, me, body, claim_token or None, keep_claim=keep_claim,
                          status=status or None, attachments=files,
                          recipients=chosen_recipients(session, app.settings, ticket_id, draft),
                          seen_message_id=seen_message)
    except actions.NewerMessage as held:
        # Held back once: the page comes again with the new message marked; its form has seen it, so Send goes.
        return render_ticket(request, me, ticket_id, 409, draft=draft, fresh=frozenset(held.newer),
                             error=not_sent(request, t(request, "the customer sent a new message while you were "
                                                                "writing; read it, then send again"), again))
    except ClaimLost as lost:
        metrics.claim_conflict(metrics.CLAIM_LOST)  # metrics hook
        return render_ticket(request, me, ticket_id, 409, error=not_sent(request, lost, again), draft=draft)
    except ActionError as refused:
        return render_ticket(request, me, ticket_id, 422, error=not_sent(request, refused, again), draft=draft)
    flash(request, t(request, "Reply queued"))
    return redirect(ticket_url(ticket_id))


def not_sent(request: Request, reason: object, attachments_lost: bool) -> str:
    """A refused reply's reason; a browser cannot be handed files back, so it says to choose them again."""
    if attachments_lost:
        return t(request, "Not sent: %(reason)s (choose the attachments again)", reason=reason)
    return t(request, "Not sent: %(reason)s", reason=reason)


def chosen_recipients(session, settings, ticket_id: int, draft: Draft) -> recipients.Recipients:
    """To and Cc as the form says (see recipients.for_reply)."""
    return recipients.for_reply(session, settings, ticket_id,
                                to=recipients.typed(draft.to, "To") if draft.to is not None else None,
                                cc=recipients.typed(draft.cc, "Cc"), reply_all=draft.reply_all)


def read_uploads(uploads: list[UploadFile], limit: int) -> list[tuple[str, str, bytes]] | None:
    """(name, content type, bytes) of each chosen file; None when together they exceed `limit` bytes.

    An empty file input still posts one nameless, empty part: it is no attachment.
    """
    files: list[tuple[str, str, bytes]] = []
    left = limit
    for upload in uploads:
        if not isinstance(upload, StarletteUpload):  # FastAPI's UploadFile annotates; Starlette's arrives
            continue
        data = upload.file.read(left + 1)
        if len(data) > left:
            return None
        if not upload.filename and not data:
            continue
        left -= len(data)
        files.append((upload.filename or "attachment", upload.content_type or "application/octet-stream", data))
    return files


@router.post("/tickets/{ticket_id}/note")
def note(request: Request, ticket_id: TicketId, me: Posting, body: TextField = ""):
    try:
        with web(request).store.transaction() as session:
            actions.add_note(session, ticket_id, me, body)
    except ActionError as refused:
        return render_ticket(request, me, ticket_id, 422, error=t(request, "Note not added: %(reason)s", reason=refused),
                             note_draft=body)
    flash(request, t(request, "Note added"))
    return redirect(ticket_url(ticket_id))


@router.get("/attachments/{attachment_id}")
def download(request: Request, attachment_id: AttachmentId, me: SignedIn):
    with web(request).store.reading() as session:
        part = reads.attachment(session, attachment_id)
    if part is None:
        raise HTTPException(404, t(request, "no attachment %(id)s", id=attachment_id))
    content_type = part.content_type if SAFE_CONTENT_TYPE.fullmatch(part.content_type or "") else ""
    return Response(part.data or b"", media_type=content_type or "application/octet-stream", headers={
        "Content-Disposition": content_disposition(part.filename),
        "X-Content-Type-Options": "nosniff",
        # Were it ever shown inline, it could run nothing and reach nothing.
        "Content-Security-Policy": "sandbox; default-src 'none'",
        "Cache-Control": "private, no-store",
    })


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback name and the real one in RFC 5987 form."""
    fallback = re.sub(r'[^A-Za-z0-9._ -]', "_", filename).strip() or "attachment"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
