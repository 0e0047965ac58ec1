"""`mailticket demo`: the whole product on loopback, with a sandbox mail server full of sample mail and no config.

Everything lives in a temporary folder (the SQLite database) and in memory: an IMAP server (pymap's
in-memory "dict" backend) holding the support mailbox, and an SMTP server (aiosmtpd) that keeps every
message mailticket sends instead of passing it on. Both run in one thread with an event loop of their
own; the daemon itself is `mailticket serve`'s, with the demo's page added. Ctrl-C removes it all.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session
from imapclient import IMAPClient
from proxyprotocol.reader import ProxyProtocolReader
from pymap.backend.dict import Config as PymapConfig
from pymap.backend.dict import Login as PymapLogin
from pymap.imap import IMAPServer
from pymap.user import Passwords, UserMetadata

from mailticket.clock import utcnow
from mailticket.config import (
    DatabaseSettings,
    MailboxSettings,
    SchedulerSettings,
    Settings,
    SmtpSettings,
    WebSettings,
)
from mailticket.demo_mail import SHOP_NAME, SUPPORT_ADDRESS, SampleMail, SentMail, sample_mails
from mailticket.mail.parse import parse


DEFAULT_PORT = 8025
LOOPBACK = "127.0.0.1"
DATABASE_FILE = "mailticket.db"
# The sandbox mailbox's login; printed, so that any mail client can look into it too.
MAILBOX_NAME = "atendimento"
MAILBOX_USER = "atendimento"
MAILBOX_PASSWORD = "demo-imap-2026"
SANDBOX_HOSTNAME = "sandbox.mailticket.invalid"  # named here: looking up our own name can hang without DNS
# Faster than a real shop would poll, so that what the visitor does shows up at once.
POLL_INTERVAL = 2.0
OUTBOX_INTERVAL = 2.0
CLAIM_EXPIRY_INTERVAL = 5.0
SANDBOX_START_TIMEOUT = 15.0
SANDBOX_STOP_TIMEOUT = 5.0
IMAP_TIMEOUT = 10.0


@dataclass(frozen=True)
class DemoOperator:
    username: str
    name: str
    password: str
    admin: bool = False


OPERATORS = (
    DemoOperator("ana", "Ana Souza", "demo-ana-2026", admin=True),
    DemoOperator("bruno", "Bruno Lima", "demo-bruno-2026"),
)


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


def demo_settings(folder: Path, port: int, sandbox: Sandbox) -> Settings:
    """A config as an admin would write it for this sandbox, with a fresh random session key."""
    return Settings(
        database=DatabaseSettings(url=f"sqlite:///{folder / DATABASE_FILE}"),
        mailboxes=(MailboxSettings(name=MAILBOX_NAME, host=sandbox.host, port=sandbox.imap_port, security="none",
                                   username=sandbox.user, password=sandbox.password, address=SUPPORT_ADDRESS),),
        smtp=SmtpSettings(host=sandbox.host, port=sandbox.smtp_port, security="none",
                          from_name=f"{SHOP_NAME} - Atendimento"),
        web=WebSettings(listen=f"{LOOPBACK}:{port}", base_url=f"http://{LOOPBACK}:{port}",
                        secret_key=secrets.token_hex(32), session_cookie_secure=False),
        scheduler=SchedulerSettings(poll_interval=POLL_INTERVAL, outbox_interval=OUTBOX_INTERVAL,
                                    claim_expiry_interval=CLAIM_EXPIRY_INTERVAL),
        log_level="warning",  # the banner says what matters; the poller would log every 2 s at info
    )


def prepare_database(settings: Settings, operators: Sequence[DemoOperator] = OPERATORS) -> None:
    from mailticket.db.store import Store
    from mailticket.service.operators import add_operator

    store = Store(settings.database.url)
    try:
        store.migrate()
        with store.transaction() as session:
            for op in operators:
                add_operator(session, op.username, op.password, name=op.name, admin=op.admin, now=utcnow())
    finally:
        store.dispose()


def banner(base_url: str, folder: Path, sandbox: Sandbox, samples: int,
           operators: Sequence[DemoOperator] = OPERATORS) -> str:
    logins = " or ".join(f"{op.username} / {op.password}{' (admin)' if op.admin else ''}" for op in operators)
    return "\n".join((
        f"mailticket demo running at {base_url}/  — log in as {logins}  — Ctrl-C to stop",
        f"  sent mail:       {base_url}/demo  (what mailticket sent; answer it as the customer)",
        f"  sandbox IMAP:    {sandbox.host}:{sandbox.imap_port}  user {sandbox.user}  password {sandbox.password}"
        f"  ({samples} sample mails)",
        f"  sandbox SMTP:    {sandbox.host}:{sandbox.smtp_port}  (keeps every mail sent; nothing leaves this machine)",
        f"  temporary dir:   {folder}",
        f"  database:        {folder / DATABASE_FILE}",
    ))


def port_problem(port: int) -> str | None:
    """Why the web server could not listen on LOOPBACK:port, or None when it can."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (f"port {port} on {LOOPBACK} is already in use (another mailticket demo?); stop it, "
                        "or choose another port with `mailticket demo --port N` (0 picks a free one)")
            return f"cannot listen on {LOOPBACK}:{port}: {exc.strerror or exc}"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


@contextmanager
def _signals_interrupt() -> Iterator[Callable[[], None]]:
    """Until the web server takes over its own signal handling, SIGTERM interrupts like Ctrl-C, so setup is
    undone as well; once the server has stopped, further signals are ignored, so the cleanup is not cut."""
    state = {"served": False}

    def interrupt(signum: int, _frame) -> None:
        if not state["served"]:
            raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: state.update(served=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(port: int = DEFAULT_PORT) -> int:
    """Runs the demo until Ctrl-C or SIGTERM; 0 after a clean stop, 1 when it cannot start."""
    port = port or free_port()
    problem = port_problem(port)
    if problem:
        print(f"mailticket demo: {problem}", file=sys.stderr)
        return 1
    print("mailticket demo: starting the sandbox mail server and filling its mailbox ...", flush=True)
    # Imported only now: the web stack takes seconds to load, and a refused port should not wait for it.
    from mailticket.daemon import serve
    from mailticket.web import demo as demo_page

    # At a 2 s poll a busy machine skips a run now and then; apscheduler would warn about each one.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    folder = Path(tempfile.mkdtemp(prefix="mailticket-demo-"))
    sandbox = Sandbox()
    code = 1
    with _signals_interrupt() as served:
        try:
            sandbox.start()
            mails = sample_mails(utcnow())
            sandbox.deliver(mails)
            settings = demo_settings(folder, port, sandbox)
            prepare_database(settings)

            def ready() -> None:
                served()
                print(banner(settings.web.base_url, folder, sandbox, len(mails)), flush=True)

            code = serve(settings, extra_routers=[demo_page.router(sandbox)], on_ready=ready)
        except KeyboardInterrupt:
            code = 0  # asked to stop before the web server was up: a clean stop all the same
        finally:
            served()
            sandbox.stop()
            shutil.rmtree(folder, ignore_errors=True)
    print(f"mailticket demo stopped; {folder} is deleted.", flush=True)
    return code
