"""`mailticket serve` as systemd runs it: answers, polls on its own, stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request

from sqlalchemy import func, select

from mailticket.db.models import Message
from mailticket.db.store import Store
from tests.dovecot import free_port
from tests.mails import SUPPORT, make_mail

STOP_WITHIN = 10.0


def config(tmp_path, db_url: str, port: int, *, mailbox: str = "", secret: bool = True) -> str:
    path = tmp_path / "serve.toml"
    web = f'[web]\nlisten = "127.0.0.1:{port}"\n' + ('secret_key = "serve-test-secret-key"\n' if secret else "")
    path.write_text(f'[database]\nurl = "{db_url}"\n{web}[scheduler]\npoll_interval = "1s"\n'
                    f'outbox_interval = "1s"\nclaim_expiry_interval = "1s"\n{mailbox}')
    return str(path)


def start(path: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mailticket", "-c", path, "serve"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_for(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return answer.status
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


def stop(proc: subprocess.Popen) -> tuple[int, float, str]:
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    return proc.returncode, time.monotonic() - began, out


def test_serve_polls_answers_healthz_and_stops_cleanly_on_sigterm(tmp_path, sqlite_url, dovecot, mailbox_user):
    user, password = mailbox_user
    dovecot.deliver(user, [make_mail(message_id=f"s{i}@c.example", subject=f"Order {i}") for i in range(3)])
    mailbox = (f'[[mailbox]]\nname = "support"\nhost = "{dovecot.host}"\nport = {dovecot.port}\nsecurity = "none"\n'
               f'username = "{user}"\npassword = "{password}"\naddress = "{SUPPORT}"\n')
    port = free_port()
    proc = start(config(tmp_path, sqlite_url, port, mailbox=mailbox))
    try:
        assert wait_for(f"http://127.0.0.1:{port}/healthz", proc) == 200
        store, deadline = Store(sqlite_url), time.monotonic() + 30
        while time.monotonic() < deadline:
            with store.reading() as session:
                if session.scalar(select(func.count()).select_from(Message).where(Message.direction == "in")) == 3:
                    break
            time.sleep(0.2)
        else:
            raise AssertionError("serve did not ingest the mailbox")
    finally:
        code, took, out = stop(proc)
    assert code == 0, out
    assert took < STOP_WITHIN
    assert "Traceback" not in out


def test_serve_refuses_a_database_that_was_not_migrated(tmp_path):
    proc = start(config(tmp_path, f"sqlite:///{tmp_path}/empty.db", free_port()))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "mailticket migrate" in out


def test_serve_without_a_secret_key_is_a_config_error(tmp_path, sqlite_url):
    proc = start(config(tmp_path, sqlite_url, free_port(), secret=False))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "web.secret_key" in out
