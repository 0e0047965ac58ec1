"""Builds the web app: sessions, security headers, error pages, /healthz, static files, the pages and the JSON API."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailticket import metrics
from mailticket.clock import utcnow
from mailticket.i18n import N_, SOURCE_LANGUAGE, negotiate, translate
from mailticket.config import Settings
from mailticket.db.store import Store
from mailticket.resources import resource_dir
from mailticket.service.tickets import TicketNotFound
from mailticket.web import (account, admin, api, auth, canned, csat, customers, live, mailboxes_admin,
                            operators_admin, pages, queue, report, search, ticket_fields)
from mailticket.web.core import (CONTENT_SECURITY_POLICY, LoginRequired, Web, make_templates, redirect, t, wants_json,
                                 web)
from mailticket.web.feed import Feed
from mailticket.web.throttle import LoginDoor, LoginGate

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
SESSION_COOKIE = "mailticket_session"
# No form or API call needs more (a reply is at most 100,000 characters) than this plus the attachments
# `limits.max_attachment_bytes` allows; a bigger body is refused as soon as it is known, and never stored.
MAX_FORM_BYTES = 4 * 1024 * 1024
REPLY_PATH_END = "/reply"  # the form (and API call) that may carry attachments
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every response that does not set its own (attachments do)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


class SessionsOutsideApi:
    """Starlette's signed-cookie sessions for the pages; the JSON API authenticates by token and skips them."""

    def __init__(self, app: ASGIApp, **options) -> None:
        self.app = app
        self.sessions = SessionMiddleware(app, **options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(api.PREFIX + "/"):
            await self.app(scope, receive, send)
        else:
            await self.sessions(scope, receive, send)


class BodyTooLarge(StarletteHTTPException):
    """Raised from inside a request's body as soon as it passes the limit (an HTTPException, so that FastAPI's body
    reading passes it on as it is instead of calling it an unreadable body)."""

    MESSAGE = N_("the request is too large: at most %(limit)s bytes are accepted")

    def __init__(self, limit: int) -> None:
        super().__init__(413, self.MESSAGE % {"limit": limit})
        self.limit = limit


class BodyLimit:
    """Refuses a body over MAX_FORM_BYTES (a reply's over `reply_limit`, for its attachments): at once when
    Content-Length announces it, else by counting the bytes as they arrive, whatever the framing (chunked bodies
    announce no length)."""

    def __init__(self, app: ASGIApp, reply_limit: int, language: str = SOURCE_LANGUAGE) -> None:
        self.app, self.reply_limit, self.language = app, reply_limit, language

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.reply_limit if scope["path"].endswith(REPLY_PATH_END) else MAX_FORM_BYTES
        headers = Headers(scope=scope)
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            # Before any session is read: the browser's language (the API's answer stays English).
            language = (SOURCE_LANGUAGE if scope["path"].startswith(api.PREFIX + "/")
                        else negotiate(None, headers.get("accept-language"), self.language))
            refusal = translate(language, BodyTooLarge.MESSAGE, limit=limit)
            await PlainTextResponse(refusal, status_code=413)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)


def create_app(settings: Settings, store: Store, *, clock: Callable[[], datetime] = utcnow,
               extra_routers: Sequence[APIRouter] = ()) -> FastAPI:
    """The whole web app; `extra_routers` add pages of their own (the demo's sandbox page)."""
    if not settings.web.secret_key:
        raise ValueError("web.secret_key is empty: the session cookies cannot be signed; set [web] secret_key "
                         "(or secret_key_env / secret_key_file) to a long random string, e.g. `openssl rand -hex 32`")
    app = FastAPI(title="mailticket", openapi_url="/api/openapi.json", docs_url=None, redoc_url=None)
    app.state.web = Web(settings=settings, store=store, clock=clock,
                        templates=make_templates(str(resource_dir("templates"))))
    app.state.login_gate = gate = LoginGate()
    app.state.feed = Feed(store, clock)
    app.add_middleware(
        SessionsOutsideApi, secret_key=settings.web.secret_key, session_cookie=SESSION_COOKIE,
        max_age=int(auth.SESSION_LIFETIME.total_seconds()), same_site="lax",
        https_only=settings.web.base_url.startswith("https://") or settings.web.session_cookie_secure,
    )
    app.add_middleware(BodyLimit, reply_limit=MAX_FORM_BYTES + settings.limits.max_attachment_bytes,
                       language=settings.web.language)
    app.add_middleware(LoginDoor, gate=gate, language=settings.web.language)
    app.add_middleware(SecurityHeaders)
    _add_error_pages(app)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> Response:
        if store.ping():
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "unavailable", "detail": "the database is not reachable"}, status_code=503)

    metrics_registry = metrics.build_registry(store, settings)

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        # No login: scrapers carry no session; the figures are counts, never ticket contents.
        return Response(metrics.exposition(metrics_registry), media_type=metrics.CONTENT_TYPE)

    # The API first: routes are tried in order, and its calls (claims above all) are the hot path.
    api.install(app, settings, store)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for module in (auth, queue, pages, ticket_fields, live, customers, admin, mailboxes_admin, operators_admin,
                   account, report, search, canned, csat):
        app.include_router(module.router)
    for router in extra_routers:
        app.include_router(router)
    return app


def _error(request: Request, status: int, message: str, headers: dict[str, str] | None = None, **values) -> Response:
    """`message` is English with %(name)s placeholders filled from `values`: as it is for JSON (machines read it),
    in the page's language for a page (a message not in the catalog is shown as it came)."""
    if wants_json(request):
        return JSONResponse({"detail": message % values}, status_code=status, headers=headers)
    return web(request).render(request, "error.html", status, status=status, message=t(request, message, **values))


def _add_error_pages(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, _exc: LoginRequired) -> Response:
        if request.method in ("GET", "HEAD") and not wants_json(request):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return redirect("/login?" + urlencode({"next": target}))
        return _error(request, 401, N_("you are not logged in (or your session has ended); log in again"))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = getattr(exc, "headers", None)
        if isinstance(exc, BodyTooLarge):
            return _error(request, 413, BodyTooLarge.MESSAGE, headers, limit=exc.limit)
        if not isinstance(exc.detail, str):
            return _error(request, exc.status_code, N_("the request was refused"), headers)
        if exc.status_code == 404 and exc.detail == "Not Found":
            return _error(request, 404, N_("there is no page at this address"), headers)
        # A detail is a message of its own: its "%" are no placeholders (a page's N_-marked detail is translated).
        return _error(request, exc.status_code, exc.detail.replace("%", "%%"), headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_input(request: Request, exc: RequestValidationError) -> Response:
        return _error(request, 422, N_("invalid input: %(problems)s"), problems=describe(exc))

    @app.exception_handler(TicketNotFound)
    async def no_ticket(request: Request, exc: TicketNotFound) -> Response:
        if exc.args:
            return _error(request, 404, N_("there is no ticket %(id)s"), id=exc.args[0])
        return _error(request, 404, N_("there is no ticket"))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        # The operator sees a plain page; the traceback goes to the log only.
        log.exception("error serving %s %s", request.method, request.url.path)
        return _error(request, 500, N_("something went wrong on our side; the error was logged"))


def describe(exc: RequestValidationError) -> str:
    """'ticket_id: Input should be a valid integer; view: ...', in words, without echoing big inputs."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path", "form"))
        parts.append(f"{where or 'request'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request is not valid"
