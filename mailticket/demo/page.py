"""The demo's own page, /demo: the mail mailticket sent into the sandbox, and "answer as the customer".

Only `mailticket demo` adds this router (through create_app's extra_routers); `serve` never has it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from mailticket.demo.mail import SampleMail
from mailticket.demo.sandbox import Sandbox
from mailticket.web.auth import Posting, SignedIn
from mailticket.web.core import flash, redirect, t, web

MAX_SUBJECT_CHARS = 500
MAX_BODY_CHARS = 20_000
# More sent mails than this are not a demo any more; the newest are shown.
MAX_SHOWN = 100


def router(sandbox: Sandbox) -> APIRouter:
    """The /demo routes, bound to this sandbox."""
    routes = APIRouter(include_in_schema=False)

    @routes.get("/demo")
    def demo_page(request: Request, me: SignedIn):
        sent = sandbox.sent()
        return web(request).render(request, "demo.html", sent=list(reversed(sent))[:MAX_SHOWN], total=len(sent),
                                   sandbox=sandbox, poll_seconds=web(request).settings.scheduler.poll_interval)

    @routes.post("/demo/answer")
    async def answer(
        request: Request,
        me: Posting,
        number: Annotated[int, Form(ge=1)],
        subject: Annotated[str, Form(min_length=1, max_length=MAX_SUBJECT_CHARS)],
        body: Annotated[str, Form(min_length=1, max_length=MAX_BODY_CHARS)],
    ):
        mail = sandbox.sent_mail(number)
        if mail is None:
            raise HTTPException(404, t(request, "the sandbox has no sent mail number %(number)s", number=number))
        now = web(request).clock()
        raw = mail.answer(subject.strip(), body, now)
        # Blocking IMAP runs in a worker thread, never on the event loop.
        await run_in_threadpool(sandbox.deliver, [SampleMail(raw, now)])
        flash(request, t(request, "%(customer)s answered \u201c%(subject)s\u201d: it is in the sandbox inbox now, and "
                                  "the poller threads it into the ticket within a few seconds.",
                         customer=mail.customer, subject=subject.strip()))
        return redirect("/demo")

    return routes
