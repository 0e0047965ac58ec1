"""The ticket page's side forms: status, close without notifying, spam, priority, queue, forward and merge.

A ticket someone else is answering (a live claim) is changed by its holder only: the others get the page again
with 409 and the holder's name (SPEC §13).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from mailticket.claims import HeldByOther
from mailticket.db.models import RESOLVED, Operator
from mailticket.db.store import db_now
from mailticket.i18n import N_
from mailticket.service import actions, forward, spam_marks
from mailticket.service import merge as merge_service
from mailticket.service.errors import ActionError
from mailticket.service.status import change_status
from mailticket.service.tickets import TicketNotFound
from mailticket.web.auth import Posting
from mailticket.web.core import flash, redirect, t, web
from mailticket.web.pages import (MAX_ID, MAX_TEXT_CHARS, AddressField, TicketId, render_ticket, ticket_url,
                                  word)

router = APIRouter(include_in_schema=False)
# "123" or "#123": the number of the ticket to merge into.
MERGE_TARGET = re.compile(r"#?\s*([0-9]{1,10})")


def held_by_other(request: Request, refused: HeldByOther) -> str:
    until = web(request).clock_text(request, refused.expires_at)
    return t(request, "%(name)s is answering this ticket (until %(time)s): only they can change it now; an admin "
             "can break the claim first", name=refused.holder, time=until)


def _change(request: Request, me: Operator, ticket_id: int, work: Callable[[Session], str | None],
            refused_as: str = "%(reason)s") -> Response:
    """Runs `work` in a transaction; its answer is the flash message. A refusal shows the ticket page again."""
    try:
        with web(request).store.transaction() as session:
            done = work(session)
    except HeldByOther as refused:
        return render_ticket(request, me, ticket_id, 409, error=held_by_other(request, refused))
    except ActionError as refused:
        return render_ticket(request, me, ticket_id, 422, error=t(request, refused_as, reason=refused))
    if done:
        flash(request, done)
    return redirect(ticket_url(ticket_id))


@router.post("/tickets/{ticket_id}/status")
def set_status(request: Request, ticket_id: TicketId, me: Posting, status: Annotated[str, Form(max_length=16)] = ""):
    def work(session: Session) -> str:
        change_status(session, ticket_id, status, actor=me, at=db_now(session), settings=web(request).settings)
        return t(request, "Status set to %(status)s", status=word(request, status, "status"))
    return _change(request, me, ticket_id, work)


@router.post("/tickets/{ticket_id}/close")
def close(request: Request, ticket_id: TicketId, me: Posting):
    """Resolves the ticket without telling the customer: no survey mail."""
    def work(session: Session) -> str:
        change_status(session, ticket_id, RESOLVED, actor=me, at=db_now(session), settings=web(request).settings,
                      reason="closed without notifying", notify_customer=False)
        return t(request, "Closed without notifying the customer")
    return _change(request, me, ticket_id, work)


@router.post("/tickets/{ticket_id}/forward")
def forward_conversation(request: Request, ticket_id: TicketId, me: Posting, to: AddressField = "",
                         note: Annotated[str, Form(max_length=MAX_TEXT_CHARS)] = ""):
    """Sends the conversation, with its attachments, to the addresses typed; a note of it stays on the ticket."""
    def work(session: Session) -> str:
        forward.forward(session, web(request).settings, ticket_id, me, to or "", note, db_now(session))
        return t(request, "Conversation forwarded to %(addresses)s", addresses=(to or "").strip())
    return _change(request, me, ticket_id, work, N_("Not forwarded: %(reason)s"))


@router.post("/tickets/{ticket_id}/spam")
def mark_spam(request: Request, ticket_id: TicketId, me: Posting, block: Annotated[str, Form(max_length=16)] = ""):
    """Out of the queues, into Spam; with `block`, the sender's later mail goes there too."""
    def work(session: Session) -> str:
        blocked = spam_marks.mark_spam(session, ticket_id, me, settings=web(request).settings, now=db_now(session),
                                       block=block)
        return (t(request, "Marked as spam; mail from %(pattern)s goes to Spam from now on", pattern=blocked)
                if blocked else t(request, "Marked as spam"))
    return _change(request, me, ticket_id, work)


@router.post("/tickets/{ticket_id}/not-spam")
def not_spam(request: Request, ticket_id: TicketId, me: Posting):
    def work(session: Session) -> str:
        lifted = spam_marks.not_spam(session, ticket_id, me, settings=web(request).settings, now=db_now(session))
        return (t(request, "Not spam: back in the queue; %(patterns)s no longer blocked", patterns=", ".join(lifted))
                if lifted else t(request, "Not spam: back in the queue"))
    return _change(request, me, ticket_id, work)


def _set_field(request: Request, ticket_id: int, me: Operator, field: str, value: str) -> Response:
    def work(session: Session) -> str:
        actions.set_field(session, ticket_id, field, value, me)
        done = {"priority": N_("Priority set to %(value)s"), "queue": N_("Queue set to %(value)s")}[field]
        return t(request, done, value=word(request, value.strip(), field))
    return _change(request, me, ticket_id, work)


@router.post("/tickets/{ticket_id}/priority")
def set_priority(request: Request, ticket_id: TicketId, me: Posting,
                 priority: Annotated[str, Form(max_length=16)] = ""):
    return _set_field(request, ticket_id, me, "priority", priority)


@router.post("/tickets/{ticket_id}/queue")
def set_queue(request: Request, ticket_id: TicketId, me: Posting, queue: Annotated[str, Form(max_length=200)] = ""):
    return _set_field(request, ticket_id, me, "queue", queue)


@router.post("/tickets/{ticket_id}/merge")
def merge(request: Request, ticket_id: TicketId, me: Posting, into: Annotated[str, Form(max_length=32)] = ""):
    """An admin merges this (duplicate) ticket into another; the answer shows the survivor."""
    if not me.is_admin:
        raise HTTPException(403, N_("only an admin may merge tickets"))
    target = MERGE_TARGET.fullmatch(into.strip())
    if target is None or not 1 <= int(target.group(1)) <= MAX_ID:
        return render_ticket(request, me, ticket_id, 422,
                             error=t(request, "Not merged: give the number of the ticket to merge into"))
    into_id = int(target.group(1))
    try:
        with web(request).store.transaction() as session:
            merge_service.merge(session, ticket_id, into_id, me, db_now(session), web(request).settings)
    except HeldByOther as refused:
        return render_ticket(request, me, ticket_id, 409, error=held_by_other(request, refused))
    except merge_service.MergeError as refused:
        return render_ticket(request, me, ticket_id, 409, error=t(request, "Not merged: %(reason)s", reason=refused))
    except TicketNotFound as missing:
        if missing.args and missing.args[0] == into_id:
            return render_ticket(request, me, ticket_id, 422,
                                 error=t(request, "Not merged: there is no ticket #%(id)s", id=into_id))
        raise
    flash(request, t(request, "Ticket #%(id)s merged into #%(into)s", id=ticket_id, into=into_id))
    return redirect(ticket_url(into_id))
