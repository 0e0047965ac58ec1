"""`mailticket demo`: the whole product on loopback, with the sandbox mail server (demo/sandbox.py) full of sample
mail and no config. The database lives in a temporary folder; the daemon is `mailticket serve`'s, with the demo's
page added. Ctrl-C removes it all."""

from __future__ import annotations

import errno
import logging
import secrets
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mailticket.clock import utcnow
from mailticket.config import (
    DatabaseSettings,
    MailboxSettings,
    SchedulerSettings,
    Settings,
    SmtpSettings,
    WebSettings,
)
from mailticket.demo import features
from mailticket.demo.mail import SHOP_NAME, SUPPORT_ADDRESS, sample_mails
from mailticket.demo.sandbox import LOOPBACK, Sandbox

DEFAULT_PORT = 8025
DATABASE_FILE = "mailticket.db"
MAILBOX_NAME = "atendimento"
# Faster than a real shop would poll, so that what the visitor does shows up at once.
POLL_INTERVAL = 2.0
OUTBOX_INTERVAL = 2.0
CLAIM_EXPIRY_INTERVAL = 5.0


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


def demo_settings(folder: Path, port: int, sandbox: Sandbox, language: str = features.DEFAULT_LANGUAGE) -> Settings:
    """A config as an admin would write it for this sandbox, with a fresh random session key: pages and customer
    mail in `language`, times in São Paulo, business hours, SLAs and routing rules on (demo/features.py)."""
    return Settings(
        database=DatabaseSettings(url=f"sqlite:///{folder / DATABASE_FILE}"),
        mailboxes=(MailboxSettings(name=MAILBOX_NAME, host=sandbox.host, port=sandbox.imap_port, security="none",
                                   username=sandbox.user, password=sandbox.password, address=SUPPORT_ADDRESS,
                                   language=language),),
        smtp=SmtpSettings(host=sandbox.host, port=sandbox.smtp_port, security="none",
                          from_name=f"{SHOP_NAME} - Atendimento"),
        web=WebSettings(listen=f"{LOOPBACK}:{port}", base_url=f"http://{LOOPBACK}:{port}",
                        secret_key=secrets.token_hex(32), session_cookie_secure=False, language=language,
                        timezone=features.TIMEZONE, shop_name=SHOP_NAME),
        scheduler=SchedulerSettings(poll_interval=POLL_INTERVAL, outbox_interval=OUTBOX_INTERVAL,
                                    claim_expiry_interval=CLAIM_EXPIRY_INTERVAL),
        sla=features.SLAS,
        routes=features.ROUTES,
        business_hours=features.BUSINESS_HOURS,
        log_level="warning",  # the banner says what matters; the poller would log every 2 s at info
    )


def prepare_database(settings: Settings, operators: Sequence[DemoOperator] = OPERATORS) -> None:
    """The schema, the demo's operators and its canned replies, in the demo's language: the operators chose it
    (My account), so that the pages are in it whatever language the visitor's browser asks for."""
    from mailticket.db.store import Store
    from mailticket.service import canned
    from mailticket.service.operators import add_operator, set_language

    store = Store(settings.database.url)
    try:
        store.migrate()
        with store.transaction() as session:
            for op in operators:
                add_operator(session, op.username, op.password, name=op.name, admin=op.admin, now=utcnow())
                set_language(session, op.username, settings.web.language)
            for title, body in features.CANNED_REPLIES[settings.web.language]:
                canned.save(session, title, body, utcnow())
    finally:
        store.dispose()


def banner(base_url: str, folder: Path, sandbox: Sandbox, samples: int,
           operators: Sequence[DemoOperator] = OPERATORS, language: str = features.DEFAULT_LANGUAGE) -> str:
    logins = " or ".join(f"{op.username} / {op.password}{' (admin)' if op.admin else ''}" for op in operators)
    other = "en" if language == "pt-BR" else "pt-BR"
    return "\n".join((
        f"mailticket demo running at {base_url}/  — log in as {logins}  — Ctrl-C to stop",
        f"  sent mail:       {base_url}/demo  (what mailticket sent; answer it as the customer)",
        f"  sandbox IMAP:    {sandbox.host}:{sandbox.imap_port}  user {sandbox.user}  password {sandbox.password}"
        f"  ({samples} sample mails)",
        f"  sandbox SMTP:    {sandbox.host}:{sandbox.smtp_port}  (keeps every mail sent; nothing leaves this machine)",
        f"  language:        {language} (pages and mail to customers; times in {features.TIMEZONE})"
        f"  — `mailticket demo --language {other}` for {'English' if other == 'en' else 'Portuguese'}",
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


def main(port: int = DEFAULT_PORT, language: str = features.DEFAULT_LANGUAGE) -> int:
    """Runs the demo until Ctrl-C or SIGTERM; 0 after a clean stop, 1 when it cannot start."""
    port = port or free_port()
    problem = port_problem(port)
    if problem:
        print(f"mailticket demo: {problem}", file=sys.stderr)
        return 1
    print("mailticket demo: starting the sandbox mail server and filling its mailbox ...", flush=True)
    # Imported only now: the web stack takes seconds to load, and a refused port should not wait for it.
    from mailticket.daemon import serve
    from mailticket.demo import page as demo_page

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
            settings = demo_settings(folder, port, sandbox, language)
            prepare_database(settings)

            def ready() -> None:
                served()
                print(banner(settings.web.base_url, folder, sandbox, len(mails), language=language), flush=True)

            code = serve(settings, extra_routers=[demo_page.router(sandbox)], on_ready=ready)
        except KeyboardInterrupt:
            code = 0  # asked to stop before the web server was up: a clean stop all the same
        finally:
            served()
            sandbox.stop()
            shutil.rmtree(folder, ignore_errors=True)
    print(f"mailticket demo stopped; {folder} is deleted.", flush=True)
    return code
