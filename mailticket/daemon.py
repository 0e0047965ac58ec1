"""`mailticket serve`: the web server, the poller, the outbox and the scheduler in one process, stopped cleanly."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Sequence

import uvicorn
from fastapi import APIRouter

from mailticket.config import ConfigError, Settings
from mailticket.db.migrate import current, head
from mailticket.db.store import Store
from mailticket.scheduler import Jobs, build_scheduler

log = logging.getLogger(__name__)

# systemd waits this long for a clean stop; jobs stop between batches well before it.
SHUTDOWN_GRACE = 8.0
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"  # journald adds the time and the unit


# Libraries that say at info what the product already says better (or every minute): their own chatter waits for
# `[log] level = "debug"`.
CHATTY_LIBRARIES = ("apscheduler", "httpx2", "httpcore2", "httpx", "httpcore", "alembic")


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, force=True)
    quietest = max(logging.WARNING, logging.getLevelName(level.upper()))  # `[log] level = "error"` still holds
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.DEBUG if level.lower() == "debug" else quietest)


def listen_address(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after its graceful shutdown, which ends the process with that signal;
    a daemon that stopped cleanly on request should exit 0 instead, so the signal is only recorded."""

    @contextlib.contextmanager
    def capture_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def sd_notify(message: str) -> None:
    """Tells systemd (Type=notify) about readiness and liveness; does nothing outside systemd."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(path)
        sock.sendall(message.encode())


def _watchdog(store: Store, server: uvicorn.Server, stop: threading.Event) -> None:
    """Pets systemd's watchdog while the server runs and the database answers."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec:
        return
    interval = int(usec) / 1e6 / 2
    while not stop.wait(interval):
        if server.started and store.ping():
            sd_notify("WATCHDOG=1")


def serve(settings: Settings, *, extra_routers: Sequence[APIRouter] = (),
          on_ready: Callable[[], None] | None = None) -> int:
    """Runs until SIGTERM or SIGINT; `extra_routers` add pages (the demo's), `on_ready` runs once it answers."""
    from mailticket.web.app import create_app

    configure_logging(settings.log_level)
    if not settings.web.secret_key:
        raise ConfigError(f"{settings.path}: web.secret_key is required to serve (or secret_key_env / _file)")
    store = Store(settings.database.url, background_checkpoints=True)
    revision, newest = current(store.engine), head()
    if revision != newest:
        log.error("the database schema is at %s, the code needs %s: run `mailticket migrate` first", revision, newest)
        return 1
    jobs = Jobs(settings, store)
    scheduler = build_scheduler(jobs)
    host, port = listen_address(settings.web.listen)
    app = create_app(settings, store, extra_routers=extra_routers)
    # uvicorn's start-up lines repeat the one line above; its warnings and errors still come through.
    uvicorn_level = settings.log_level.lower() if settings.log_level.lower() in ("debug", "error", "critical") \
        else "warning"
    server = _Server(uvicorn.Config(app, host=host, port=port, log_level=uvicorn_level,
                                    access_log=False, timeout_graceful_shutdown=5))
    stop = threading.Event()
    threading.Thread(target=_watchdog, args=(store, server, stop), daemon=True, name="watchdog").start()
    threading.Thread(target=_notify_ready, args=(server, stop, on_ready), daemon=True, name="ready").start()
    scheduler.start()
    log.info("mailticket %s serving on http://%s:%d as %s", _version(), host, port, jobs.holder)
    # Everything built so far lives as long as the process: moved out of the collector's sight, it is no longer
    # walked by every full collection, which would otherwise stall a request for tens of milliseconds.
    gc.freeze()
    try:
        # uvicorn handles SIGTERM and SIGINT: it stops taking requests and finishes those in flight.
        server.run()
    finally:
        sd_notify("STOPPING=1")
        stop.set()
        jobs.stopping.set()
        # Jobs stop between batches; a send or a batch in flight is finished, not cut.
        scheduler.shutdown(wait=True)
        store.dispose()
        log.info("mailticket stopped")
    return 0 if server.started else 1


def _notify_ready(server: uvicorn.Server, stop: threading.Event, on_ready: Callable[[], None] | None) -> None:
    while not stop.wait(0.1):
        if server.started:
            sd_notify("READY=1")
            if on_ready is not None:
                on_ready()
            return


def _version() -> str:
    from mailticket import __version__

    return __version__
