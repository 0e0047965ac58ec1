"""Login throttling: attempts limited per client address, and password hashes checked a few at a time, off the
event loop and outside every database transaction."""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from collections.abc import Callable
from typing import TypeVar

from limits import parse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from mailticket.i18n import N_, SOURCE_LANGUAGE, negotiate, translate

T = TypeVar("T")

# Attempts from one client address, whatever the user names: a guesser moves on to the next name in vain.
PER_CLIENT = parse("20/minute")
# Failures for one user name from one client address. Counted per pair, not per account: a lockout per account
# let anyone keep an operator out, and telling "locked" from "wrong password" told which names exist.
FAILURES_PER_NAME = parse("5/15 minutes")
# argon2 takes tens of milliseconds and 64 MiB a check: one at a time leaves the other core to everyone else.
CONCURRENT_HASHES = 1
# Checks that may wait for their turn; beyond them a login is refused at once ("busy"), not queued without end.
MAX_WAITING = 8


def _yield_the_processor() -> None:
    """Lowers the password-check thread's priority: under a flood of logins, argon2 gets the processor only when
    the event loop, the other requests and the poller do not want it."""
    try:
        # On Linux a thread's nice value is its own; elsewhere this may fail, and the check runs at normal priority.
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass


class Busy(Exception):
    """Too many logins being checked right now; the client should try again in a moment."""


class LoginGate:
    """One per app: the limits on who may try, and the small pool that checks passwords."""

    def __init__(self) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._executor = ThreadPoolExecutor(max_workers=CONCURRENT_HASHES, thread_name_prefix="password-check",
                                            initializer=_yield_the_processor)
        self._semaphore: asyncio.Semaphore | None = None
        self._waiting = 0

    def full(self) -> bool:
        """Whether as many checks wait as may: the next login is turned away at the door (see LoginDoor)."""
        return self._waiting >= MAX_WAITING

    def may_try(self, client: str, username: str) -> bool:
        """Counts an attempt; False when this client has tried too often, or failed too often with this name."""
        if not self._limiter.test(FAILURES_PER_NAME, client, username.lower()):
            return False
        return self._limiter.hit(PER_CLIENT, client)

    def failed(self, client: str, username: str) -> None:
        self._limiter.hit(FAILURES_PER_NAME, client, username.lower())

    async def run(self, check: Callable[..., T], *args) -> T:
        """Runs `check` (a login's lookup and password check) in the gate's own thread, after the ones before it;
        raises Busy at once when MAX_WAITING are in line. The server's shared worker threads stay free for
        everyone else."""
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(CONCURRENT_HASHES)
        if self._waiting >= MAX_WAITING:
            raise Busy()
        self._waiting += 1
        try:
            async with self._semaphore:
                return await asyncio.get_running_loop().run_in_executor(self._executor,
                                                                        functools.partial(check, *args))
        finally:
            self._waiting -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False)


BUSY_TITLE = N_("Busy")
BUSY_TEXT = N_("The server is busy checking other logins; try again in a moment.")


def busy_page(language: str) -> bytes:
    """The refusal at the door, in the browser's language (nobody is signed in on the login form)."""
    return (f'<!doctype html><html lang="{language}"><meta charset="utf-8"><title>{translate(language, BUSY_TITLE)}'
            f"</title><p>{translate(language, BUSY_TEXT)}</p></html>").encode()


class LoginDoor:
    """Turns a login away at once, before any form is read, while the gate is full: under a flood, the many
    refused logins cost the event loop next to nothing, and everyone else's requests go on."""

    def __init__(self, app: ASGIApp, gate: LoginGate, path: str = "/login", language: str = SOURCE_LANGUAGE) -> None:
        self.app, self.gate, self.path, self.language = app, gate, path, language

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == self.path and self.gate.full():
            page = busy_page(negotiate(None, Headers(scope=scope).get("accept-language"), self.language))
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"text/html; charset=utf-8"), (b"retry-after", b"5"),
                                    (b"content-length", str(len(page)).encode())]})
            await send({"type": "http.response.body", "body": page})
            return
        await self.app(scope, receive, send)
