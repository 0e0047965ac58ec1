"""The demo's mail server on loopback: an IMAP server (pymap's in-memory "dict" backend) holding the support
mailbox, and an SMTP server (aiosmtpd) that keeps every message mailticket sends instead of passing it on. Both run
in one thread with an event loop of their own."""

from __future__ import annotations

import argparse
import asyncio
import threading
from collections.abc import Sequence

from aiosmtpd.smtp import SMTP, Envelope, Session
from imapclient import IMAPClient
from proxyprotocol.reader import ProxyProtocolReader
from pymap.backend.dict import Config as PymapConfig
from pymap.backend.dict import Login as PymapLogin
from pymap.imap import IMAPServer
from pymap.user import Passwords, UserMetadata

from mailticket.clock import utcnow
from mailticket.demo.mail import SampleMail, SentMail
from mailticket.mail.parse import parse

LOOPBACK = "127.0.0.1"
# The sandbox mailbox's login; printed, so that any mail client can look into it too.
MAILBOX_USER = "atendimento"
MAILBOX_PASSWORD = "demo-imap-2026"
SANDBOX_HOSTNAME = "sandbox.mailticket.invalid"  # named here: looking up our own name can hang without DNS
SANDBOX_START_TIMEOUT = 15.0
SANDBOX_STOP_TIMEOUT = 5.0
IMAP_TIMEOUT = 10.0


class _ImapConfig(PymapConfig):
    @property
    def greeting(self) -> bytes:
        # pymap's own greeting looks up this host's fully qualified name on every connection.
        return b"mailticket demo sandbox ready"


class _Sink:
    """aiosmtpd handler: keeps each message in the sandbox and answers 250; nothing is relayed."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    # aiosmtpd calls the hook by this name.
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        content = envelope.original_content or envelope.content or b""
        raw = content if isinstance(content, bytes) else content.encode("utf-8", "surrogateescape")
        self.sandbox.keep(envelope.mail_from or "", tuple(envelope.rcpt_tos), raw)
        return "250 OK: kept in the demo sandbox, not delivered"


class Sandbox:
    """The demo's mail server on loopback: IMAP holding one mailbox, SMTP keeping what it is sent.

    `start()` returns once both listen; `imap_port` and `smtp_port` are free ports picked then.
    """

    def __init__(self, *, host: str = LOOPBACK, user: str = MAILBOX_USER, password: str = MAILBOX_PASSWORD) -> None:
        self.host, self.user, self.password = host, user, password
        self.imap_port = self.smtp_port = 0
        self._sent: list[SentMail] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="demo-sandbox", daemon=True)

    def start(self) -> Sandbox:
        self._thread.start()
        if not self._ready.wait(SANDBOX_START_TIMEOUT):
            raise RuntimeError(f"the sandbox mail server did not start within {SANDBOX_START_TIMEOUT:g} s")
        if self._failure is not None:
            raise RuntimeError(f"the sandbox mail server failed to start: {self._failure}") from self._failure
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread.is_alive():
            self._thread.join(SANDBOX_STOP_TIMEOUT)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported to start(), which waits for it
            self._failure = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        config = _ImapConfig(argparse.Namespace(passlib_cfg=None, proxy_protocol=None), host=self.host, port=0,
                             tls_enabled=False, reject_dnsbl=False, invalid_user_sleep=0.0, demo_data=False,
                             demo_user=self.user, demo_password=self.password)
        config.apply_context()
        login = PymapLogin(config)
        password_hash = await Passwords(config).hash_password(self.password)
        await login.demo_user_identity.set(UserMetadata(config, self.user, password=password_hash))
        imap_handler = ProxyProtocolReader(config.proxy_protocol).get_callback(IMAPServer(login, config))
        imap = await asyncio.start_server(imap_handler, self.host, 0)
        sink = _Sink(self)
        smtp = await self._loop.create_server(
            lambda: SMTP(sink, hostname=SANDBOX_HOSTNAME, ident="mailticket demo sandbox"), self.host, 0)
        async with imap, smtp:
            self.imap_port = imap.sockets[0].getsockname()[1]
            self.smtp_port = smtp.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    # -- SMTP side --------------------------------------------------------------

    def keep(self, mail_from: str, recipients: tuple[str, ...], raw: bytes) -> None:
        with self._lock:
            self._sent.append(SentMail(len(self._sent) + 1, mail_from, recipients, utcnow(), parse(raw)))

    def sent(self) -> list[SentMail]:
        """Every message received so far, oldest first."""
        with self._lock:
            return list(self._sent)

    def sent_mail(self, number: int) -> SentMail | None:
        with self._lock:
            return self._sent[number - 1] if 1 <= number <= len(self._sent) else None

    # -- IMAP side --------------------------------------------------------------

    def deliver(self, mails: Sequence[SampleMail]) -> None:
        """Puts messages into INBOX with APPEND, as a mail server's delivery would, each with its INTERNALDATE."""
        with IMAPClient(self.host, self.imap_port, ssl=False, timeout=IMAP_TIMEOUT) as client:
            client.login(self.user, self.password)
            for mail in mails:
                client.append("INBOX", mail.raw, msg_time=mail.received_at)
