"""Browser-test harness: the real app served by uvicorn on loopback, headless Chromium through Playwright.

Registered through `pytest_plugins` in tests/conftest.py. Fixtures (and the `login()` helper):

- `chromium`: one headless Chromium (Debian's /usr/bin/chromium) per test module;
- `serve_app(settings, store, clock=...)`: runs `create_app` with uvicorn in a thread of its own on a free
  127.0.0.1 port and returns its base URL; stopped when the test ends;
- `new_context(base_url)`: a fresh browser context (own cookies), closed when the test ends;
- `operator_page(base_url, username)`: a fresh context with that operator logged in, as a Page;
- `request_recorder`: a tiny HTTP server on another free port that records every connection and request;
- `outbound(store, ticket_id)`: each reply's text, operator and outbox status;
- `fast_passwords`: argon2 with its cheapest parameters, so that each operator made and logged in costs
  milliseconds instead of most of a second (the login form still checks a real argon2 hash).

Playwright's sync API runs its own event loop in the thread that started it (pytest's main thread), and
uvicorn runs its own in the server's thread; nothing is shared between the two but the socket.
"""

from __future__ import annotations

import dataclasses
import http.server
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

import pytest
import uvicorn
from argon2 import PasswordHasher
from sqlalchemy import select
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from mailticket.clock import utcnow
from mailticket.config import ClaimSettings, Settings, WebSettings
from mailticket.db.models import OUT, Claim, Message, Outbox
from mailticket.db.store import Store
from mailticket.service import operators
from mailticket.web.app import create_app
from tests.factories import PASSWORD, SETTINGS

CHROMIUM = "/usr/bin/chromium"
# No sandbox (we run as root in a container), no GPU, and none of Chromium's own calls home: a request the
# hostile-mail test sees must come from the page, never from the browser's background services.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SERVER_START_TIMEOUT = 10.0
SERVER_STOP_TIMEOUT = 10.0
# Playwright's own default is 30 s for actions and 5 s for expect(); a page of this app answers in
# milliseconds, so a test that waits longer than this has found a bug, not a slow machine.
ACTION_TIMEOUT_MS = 10_000
EXPECT_TIMEOUT_MS = 10_000


def _bound_socket() -> socket.socket:
    """A listening-ready socket on a free loopback port; handed to the server, so no other process can race us."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def _wait_healthy(url: str, server: uvicorn.Server, thread: threading.Thread) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError(f"the app's server thread ended before it answered {url}")
        if server.started:
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError) as error:
                last_error = error
        time.sleep(0.02)
    raise RuntimeError(f"the app did not answer {url} within {SERVER_START_TIMEOUT} s: {last_error}")


@contextmanager
def running_app(settings: Settings, store: Store, *, clock: Callable[[], datetime] = utcnow) -> Iterator[str]:
    """The app served on a free loopback port for the duration of the block; yields its base URL.

    `settings.web.base_url` is set to that URL, as an operator would configure it.
    """
    sock = _bound_socket()
    host, port = sock.getsockname()
    base_url = f"http://{host}:{port}"
    settings = dataclasses.replace(settings, web=dataclasses.replace(settings.web, base_url=base_url))
    app = create_app(settings, store, clock=clock)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off",
                            timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn:{port}", daemon=True)
    thread.start()
    try:
        _wait_healthy(f"{base_url}/healthz", server, thread)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(SERVER_STOP_TIMEOUT)
        sock.close()
        if thread.is_alive():
            raise RuntimeError(f"the app's server on {base_url} did not stop within {SERVER_STOP_TIMEOUT} s")


@pytest.fixture
def fast_passwords(monkeypatch) -> None:
    monkeypatch.setattr(operators, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Headless Chromium for one test module.

    Module, not session, scope: while Playwright's sync API is started, its event loop counts as running in
    the main thread, so `asyncio.run()` in any later test (an outbox flush, say) would fail. Stopping it with
    the module keeps the other test modules free of it; a launch costs about a second.
    """
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()


@pytest.fixture
def serve_app() -> Iterator[Callable[..., str]]:
    """`serve_app(settings, store, clock=...)` starts the app and returns its base URL; all stop after the test."""
    stack: list[Iterator[str]] = []

    def start(settings: Settings, store: Store, *, clock: Callable[[], datetime] = utcnow) -> str:
        running = running_app(settings, store, clock=clock)
        base_url = running.__enter__()
        stack.append(running)
        return base_url

    yield start
    errors = []
    for running in reversed(stack):
        try:
            running.__exit__(None, None, None)
        except Exception as error:  # stop every server even when one of them hangs
            errors.append(error)
    if errors:
        raise errors[0]


@pytest.fixture
def new_context(chromium: Browser, serve_app) -> Iterator[Callable[..., BrowserContext]]:
    """`new_context(base_url, **options)`: a browser context of its own cookies, closed before the app stops.

    Depending on `serve_app` makes pytest close these contexts first, so no keep-alive connection of the
    browser holds the server up while it shuts down.
    """
    contexts: list[BrowserContext] = []

    def make(base_url: str, **options) -> BrowserContext:
        context = chromium.new_context(base_url=base_url, **options)
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        contexts.append(context)
        return context

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    yield make
    for context in contexts:
        context.close()


def login(target: BrowserContext | Page, base_url: str, username: str, password: str = PASSWORD) -> Page:
    """Logs `username` in through the login form; returns the page, now showing the queue."""
    page = target.new_page() if isinstance(target, BrowserContext) else target
    page.goto(f"{base_url}/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login-button")
    page.wait_for_url(f"{base_url}/")
    expect(page.locator("#logout-button")).to_be_visible()
    return page


@pytest.fixture
def operator_page(new_context) -> Callable[..., Page]:
    """`operator_page(base_url, username)`: a fresh context with that operator logged in."""

    def make(base_url: str, username: str, password: str = PASSWORD, **options) -> Page:
        return login(new_context(base_url, **options), base_url, username, password)

    return make


class RequestRecorder:
    """An HTTP server on a free loopback port that answers 200 to everything and records what reached it."""

    def __init__(self) -> None:
        recorder = self
        self.connections: list[tuple[str, int]] = []
        self.requests: list[str] = []
        self._lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                with recorder._lock:
                    recorder.requests.append(f"{self.command} {self.path}")
                body = b"recorded"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_HEAD = do_PUT = do_OPTIONS = _answer

            def log_message(self, *args) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def verify_request(self, request, client_address) -> bool:
                # A bare connection counts too: a preconnect already tells the sender that the mail was opened.
                with recorder._lock:
                    recorder.connections.append(client_address)
                return True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.host, self.port = self._server.server_address[:2]
        self.origin = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"recorder:{self.port}",
                                        daemon=True)

    def start(self) -> RequestRecorder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(SERVER_STOP_TIMEOUT)

    def seen(self) -> list[str]:
        with self._lock:
            return [*self.requests, *(f"connection from {host}:{port}" for host, port in self.connections)]


@pytest.fixture
def request_recorder() -> Iterator[RequestRecorder]:
    recorder = RequestRecorder().start()
    # Check that it records at all, then start from a clean slate: an empty record must mean "nothing came".
    with urllib.request.urlopen(f"{recorder.origin}/self-test", timeout=5) as answer:
        assert answer.status == 200
    assert recorder.requests == ["GET /self-test"], recorder.seen()
    with recorder._lock:
        recorder.requests.clear()
        recorder.connections.clear()
    yield recorder
    recorder.stop()


SECRET_KEY = "browser-test-secret-key"
# Long enough that nothing expires by accident during a story that is not about expiry.
LONG_TTL = 900.0
# "until 1:05 PM" (the browser asks for English), in parentheses on the reply screen's lock.
UNTIL = r"\(?until \d\d?:\d\d [AP]M\)?"


def browser_settings(ttl: float = LONG_TTL, heartbeat: float = 0.0, idle_after: float = 600.0) -> Settings:
    # Heartbeat 0 switches the page's renewals off, so the test decides when a claim ends.
    return dataclasses.replace(SETTINGS, web=WebSettings(secret_key=SECRET_KEY),
                               claims=ClaimSettings(ttl=ttl, heartbeat=heartbeat, idle_after=idle_after))


@pytest.fixture
def sqlite_store(sqlite_url):
    store = Store(sqlite_url)
    yield store
    store.dispose()


def banner(name: str) -> re.Pattern:
    """The claim banner naming the holder; whitespace around, as a regex is matched against the raw text."""
    return re.compile(rf"^\s*Claimed by {re.escape(name)} {UNTIL}")


def claim_ticket(page: Page, ticket_id: int, holder: str) -> None:
    page.goto(f"/tickets/{ticket_id}")
    page.click("#claim-button")
    expect(page.locator("#claim-banner")).to_have_text(banner(holder))
    expect(page.locator("#claim-bar")).to_have_attribute("data-state", "mine")
    expect(page.locator("#reply-form")).to_be_visible()


def claim_row(store: Store, ticket_id: int) -> Claim | None:
    with store.reading() as session:
        return session.get(Claim, ticket_id)


def outbound(store: Store, ticket_id: int) -> list[tuple[str, int | None, str | None]]:
    """(text with the browser's CRLF line ends undone, operator id, outbox status) of each reply."""
    with store.reading() as session:
        rows = session.execute(
            select(Message.text, Message.operator_id, Outbox.status)
            .outerjoin(Outbox, Outbox.message_id == Message.id)
            .where(Message.ticket_id == ticket_id, Message.direction == OUT)
            .order_by(Message.id)
        ).all()
    return [(text.replace("\r\n", "\n"), operator_id, status) for text, operator_id, status in rows]
