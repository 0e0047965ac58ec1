"""A real aiosmtpd server on loopback that keeps what it receives and can be told to refuse, stall or go away."""

from __future__ import annotations

import asyncio
import base64
import email.parser
import email.policy
import json
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, AuthResult

from mailticket.config import SmtpSettings

HOST = "127.0.0.1"
TEMPORARY = 451
PERMANENT = 550
REPLIES = {TEMPORARY: "451 4.3.0 Try again later", PERMANENT: "550 5.1.1 Mailbox unavailable"}
RCPT, DATA = "rcpt", "data"
# Seconds the client side waits for a command's answer in tests: short, so a stuck test fails quickly.
CLIENT_TIMEOUT = 10.0
_HEADERS = email.parser.BytesHeaderParser(policy=email.policy.default)


@dataclass(frozen=True)
class Received:
    sender: str
    recipients: tuple[str, ...]
    raw: bytes
    login: str | None = None  # who the session authenticated as, if it did

    @property
    def message_id(self) -> str:
        return str(_HEADERS.parsebytes(self.raw)["Message-ID"] or "").strip().strip("<>")


class _Handler:
    """aiosmtpd hooks; the switches are read in the server's thread and set from the test's."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[Received] = []
        self.received = threading.Event()  # set once a message is held, for tests that act at that moment
        self.refusal: tuple[str, int, int | None] | None = None  # (stage, code, times left or None for all)
        self.delay = 0.0

    def _refuse(self, stage: str) -> str | None:
        with self.lock:
            if self.refusal is None or self.refusal[0] != stage:
                return None
            _, code, left = self.refusal
            if left is not None:
                self.refusal = (stage, code, left - 1) if left > 1 else None
            return REPLIES[code]

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        refused = self._refuse(RCPT)
        if refused:
            return refused
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        refused = self._refuse(DATA)
        if refused:
            return refused
        raw = envelope.original_content or envelope.content
        # Kept before any delay: from here on the server holds the message, whatever happens to the client.
        login = getattr(session.auth_data, "login", None)
        login = login.decode() if isinstance(login, bytes) else login
        with self.lock:
            self.messages.append(Received(envelope.mail_from, tuple(envelope.rcpt_tos), raw, login))
        self.received.set()
        if self.delay:
            await asyncio.sleep(self.delay)
        return "250 2.0.0 OK"


@dataclass(frozen=True)
class BearerLogin:
    login: str


class _XOAuth2Handler(_Handler):
    """Adds AUTH XOAUTH2 (aiosmtpd finds `auth_*` methods on the handler), checked by RFC 7662 introspection."""

    def __init__(self, introspection_url: str) -> None:
        super().__init__()
        self.introspection_url = introspection_url

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        # Not aiosmtpd's auth_required: that also wants TLS or warns on every connection.
        if not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def auth_XOAUTH2(self, server, args):
        if len(args) > 1:
            try:
                blob = base64.b64decode(args[1], validate=True)
            except ValueError:
                return AuthResult(success=False, handled=False, message="501 5.5.2 Can't decode base64")
        else:
            blob = await server.challenge_auth("")
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
        fields = dict(part.split("=", 1) for part in blob.decode(errors="replace").split("\x01") if "=" in part)
        user, token = fields.get("user", ""), fields.get("auth", "").removeprefix("Bearer ")
        if user and token and await self._active_for(token, user):
            return AuthResult(success=True, auth_data=BearerLogin(user))
        # Google's way: a 334 with the error as base64 JSON, the client answers empty, then the 535.
        error = json.dumps({"status": "401", "schemes": "bearer", "scope": "smtp"})
        if await server.challenge_auth(error) is MISSING:
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False)

    async def _active_for(self, token: str, user: str) -> bool:
        async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
            answer = await client.post(self.introspection_url, data={"token": token})
        info = answer.json() if answer.status_code == 200 else {}
        return info.get("active") is True and info.get("username") == user


class SmtpSink:
    """`refuse(451|550, times=N, at="rcpt"|"data")`, `accept()`, `stop()`/`start()`, `delay_answer(s)`.

    With `xoauth2_introspection_url` it offers AUTH XOAUTH2 and takes mail only after a login.
    """

    def __init__(self, *, tls: str = "none", cert: Path | None = None, key: Path | None = None,
                 login: tuple[str, str] | None = None, xoauth2_introspection_url: str | None = None) -> None:
        self.port = free_port()
        self.tls = tls
        self.handler = _XOAuth2Handler(xoauth2_introspection_url) if xoauth2_introspection_url else _Handler()
        self.login = login
        self.logins: list[str] = []
        self._kwargs: dict = {}
        if tls != "none":
            server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            server_ctx.load_cert_chain(cert, key)
            # aiosmtpd does not see implicit TLS as TLS and would hide AUTH; the whole session is TLS anyway.
            self._kwargs = ({"ssl_context": server_ctx, "auth_require_tls": False} if tls == "tls"
                            else {"tls_context": server_ctx, "require_starttls": True})
        if login:
            self._kwargs["authenticator"] = self._authenticate
        if xoauth2_introspection_url:
            # Plain-text tests: AUTH is offered without TLS; PLAIN/LOGIN only if a password login was given.
            self._kwargs.setdefault("auth_require_tls", tls == "starttls")
            if not login:
                self._kwargs["auth_exclude_mechanism"] = ["PLAIN", "LOGIN"]
        self._controller: Controller | None = None

    @property
    def messages(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.messages)

    def message_ids(self) -> list[str]:
        return [m.message_id for m in self.messages]

    def settings(self, **overrides) -> SmtpSettings:
        values = dict(host=HOST, port=self.port, security=self.tls, timeout=CLIENT_TIMEOUT)
        return SmtpSettings(**{**values, **overrides})

    def start(self) -> None:
        # The same port as before, so that "the relay comes back" is the same address for the client.
        self._controller = Controller(self.handler, hostname=HOST, port=self.port, **self._kwargs)
        self._controller.start()

    def stop(self) -> None:
        """The port closes: clients get "connection refused" until `start()`."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def refuse(self, code: int, *, times: int | None = None, at: str = DATA) -> None:
        with self.handler.lock:
            self.handler.refusal = (at, code, times)

    def accept(self) -> None:
        with self.handler.lock:
            self.handler.refusal = None

    def delay_answer(self, seconds: float) -> None:
        self.handler.delay = seconds

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        user, password = auth_data.login.decode(), auth_data.password.decode()
        self.logins.append(user)
        return AuthResult(success=(user, password) == self.login, handled=False, auth_data=auth_data)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def self_signed(directory: Path) -> tuple[Path, Path, ssl.SSLContext]:
    """A certificate for 127.0.0.1, its key, and a client context that trusts exactly it."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={HOST}",
         "-addext", f"subjectAltName=IP:{HOST}"],
        check=True, capture_output=True,
    )
    return cert, key, ssl.create_default_context(cafile=str(cert))


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()
