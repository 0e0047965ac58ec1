"""The live pages' server side: the change stream (Server-Sent Events) and the reply drafts saved as they are typed."""

from __future__ import annotations

import asyncio
import functools
import json
import secrets
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from mailticket.db.models import Operator
from mailticket.db.store import db_now
from mailticket.service import drafts, presence
from mailticket.service.errors import ActionError
from mailticket.service.tickets import get_ticket
from mailticket.web.auth import SESSION_KEY, Posting, SignedIn
from mailticket.web.core import web
from mailticket.web.feed import ENDED, RESET, Change, Feed, Listener, Viewers
from mailticket.web.pages import MAX_ADDRESS_FIELD, MAX_ID, TicketId

router = APIRouter(include_in_schema=False)

# The browser waits this long before it connects again after the stream broke.
RETRY_MS = 2000
MAX_EVENT_ID = 2**63 - 1


def feed_of(request: Request) -> Feed:
    return request.app.state.feed


@router.get("/live")
async def live(
    request: Request, me: SignedIn,
    ticket: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    after: Annotated[int | None, Query(ge=0, le=MAX_EVENT_ID)] = None,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
):
    """The changes of one ticket (and who views it), or of all tickets for the queue, from event `after` on (or the
    Last-Event-ID the browser sends when it reconnects): `change` events with the changes of one poll (each a
    ticket and what happened), `viewers` events with who has the ticket open, `reset` when the page should fetch
    everything again, and `ended` when its session ended."""
    resume = int(last_event_id) if last_event_id and last_event_id.isdigit() else after
    if ticket is not None:
        await anyio.to_thread.run_sync(_require_ticket, web(request).store, ticket)
    feed = feed_of(request)
    page_id = secrets.token_hex(16) if ticket is not None else None
    token = request.session.get(SESSION_KEY)
    # On shutdown the stream is told (`shutdown`) and ends itself, so that every response completes.
    shutdown = anyio.Event()
    return EventSourceResponse(_stream(request, feed, me, ticket, resume, page_id, token, shutdown),
                               ping=presence.REFRESH.seconds, shutdown_event=shutdown, shutdown_grace_period=2.0,
                               headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def _stream(request: Request, feed: Feed, me: Operator, ticket_id: int | None, resume: int | None,
                  page_id: str | None, token: str, shutdown: anyio.Event):
    store = web(request).store
    queue = feed.listen(Listener(ticket_id, page_id, token))
    loop = asyncio.get_running_loop()
    closing = loop.create_task(_close_on(shutdown, queue))
    try:
        await anyio.to_thread.run_sync(feed.prime)  # before the history is read below: nothing falls between
        if page_id is not None:
            await anyio.to_thread.run_sync(_enter, store, page_id, ticket_id, me.id)
        # A ticket page learns its id: its closing beacon names it (pages.release).
        yield (ServerSentEvent(event="page", data=json.dumps({"page": page_id}), retry=RETRY_MS) if page_id
               else ServerSentEvent(comment="live", retry=RETRY_MS))
        sent: set[int] = set()
        if resume is not None:
            missed = await anyio.to_thread.run_sync(feed.since, resume, ticket_id)
            if missed is None:
                yield _reset()
            elif missed:
                sent.update(change.id for change in missed)
                yield _changes(tuple(missed))
        if ticket_id is not None and ticket_id in feed.viewers:
            yield _viewers(Viewers(ticket_id, feed.viewers[ticket_id]))
        while True:
            item = await queue.get()
            if item is CLOSE:
                return
            if item is ENDED:
                yield ServerSentEvent(event="ended", data="{}")
                return
            if item is RESET:
                yield _reset()
            elif isinstance(item, tuple):
                fresh = tuple(change for change in item if change.id not in sent) if sent else item
                if fresh:
                    yield _changes(fresh)
            elif isinstance(item, Viewers):
                yield _viewers(item)
    finally:
        closing.cancel()
        feed.stop_listening(queue)
        if page_id is not None:
            # Not awaited: the stream is being torn down (its task may be cancelled); the row goes in the background.
            loop.run_in_executor(None, _leave, store, page_id)


# Put in a stream's queue when the server shuts down: the stream ends.
CLOSE = object()


async def _close_on(shutdown: anyio.Event, queue: asyncio.Queue) -> None:
    await shutdown.wait()
    while queue.full():
        queue.get_nowait()
    queue.put_nowait(CLOSE)


@functools.lru_cache(maxsize=64)
def _changes(changes: tuple[Change, ...]) -> ServerSentEvent:
    """The changes of one poll in one event, whose id is the newest of them (where a reconnection resumes); made
    once for all the pages that follow the same changes (every queue page)."""
    return ServerSentEvent(id=str(max(change.id for change in changes)), event="change", data=json.dumps(
        {"changes": [{"ticket": change.ticket_id, "kind": change.kind} for change in changes]}))


def _viewers(item: Viewers) -> ServerSentEvent:
    return ServerSentEvent(event="viewers", data=json.dumps(
        {"ticket": item.ticket_id, "viewers": [{"id": i, "name": name} for i, name in item.people]}))


def _reset() -> ServerSentEvent:
    return ServerSentEvent(event="reset", data="{}")


def _require_ticket(store, ticket_id: int) -> None:
    with store.reading() as session:
        get_ticket(session, ticket_id)  # TicketNotFound: a 404


def _enter(store, page_id: str, ticket_id: int, operator_id: int) -> None:
    with store.transaction() as session:
        presence.enter(session, page_id, ticket_id, operator_id, db_now(session))


def _leave(store, page_id: str) -> None:
    with store.transaction() as session:
        presence.leave(session, page_id, db_now(session))


class DraftBody(BaseModel):
    body: str = Field("", max_length=drafts.MAX_DRAFT_CHARS)
    to: str | None = Field(None, max_length=MAX_ADDRESS_FIELD)
    cc: str = Field("", max_length=MAX_ADDRESS_FIELD)


@router.put("/tickets/{ticket_id}/draft")
def save_draft(request: Request, ticket_id: TicketId, draft: DraftBody, me: Posting):
    """The reply form saves what is typed (JSON, CSRF token in X-CSRF-Token); an empty form removes the draft."""
    try:
        with web(request).store.transaction() as session:
            drafts.save(session, ticket_id, me.id, draft.body, draft.to, draft.cc, db_now(session))
    except ActionError as refused:
        return JSONResponse({"detail": str(refused)}, status_code=422)
    return {"saved": True}
