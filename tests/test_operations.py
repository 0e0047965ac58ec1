"""Running it day to day: `--version`, and a journal that says what happened and stays quiet when nothing does."""

from __future__ import annotations

import queue
import signal
import threading
import time

from mailticket import __version__
from tests.dovecot import free_port
from tests.mails import SUPPORT
from tests.test_cli import run
from tests.test_idle import READY_LINE, _read_lines, read_until
from tests.test_serve import start, wait_for

QUIET_WINDOW = 4.0  # seconds of an idle daemon watched: four polls, three outbox passes, claim and SLA jobs


def test_version_prints_the_version():
    done = run("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"mailticket {__version__}"


def test_help_speaks_to_the_admin_not_to_the_spec():
    done = run("--help")
    assert done.returncode == 0 and "SPEC" not in done.stdout and "--version" in done.stdout


def test_an_idle_serve_writes_nothing_at_info_while_nothing_happens(tmp_path, sqlite_url, dovecot, mailbox_user):
    user, password = mailbox_user
    port = free_port()
    path = tmp_path / "quiet.toml"
    path.write_text(
        f'[database]\nurl = "{sqlite_url}"\n[web]\nlisten = "127.0.0.1:{port}"\nsecret_key = "quiet-test-secret-key"\n'
        '[scheduler]\npoll_interval = "1s"\noutbox_interval = "1s"\nclaim_expiry_interval = "1s"\nsla_interval = "1s"\n'
        f'[log]\nlevel = "info"\n[[mailbox]]\nname = "support"\nhost = "{dovecot.host}"\nport = {dovecot.port}\n'
        f'security = "none"\nusername = "{user}"\npassword = "{password}"\naddress = "{SUPPORT}"\n')
    proc = start(str(path))
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc, lines), daemon=True).start()
    started: list[str] = []
    try:
        assert wait_for(f"http://127.0.0.1:{port}/healthz", proc) == 200
        read_until(lines, started, READY_LINE)
        # Silence cannot be waited for as a condition: watch a window in which every job runs several times.
        time.sleep(QUIET_WINDOW)
        idle = []
        while not lines.empty():
            idle.append(lines.get())
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0
    assert idle == [], "an idle daemon wrote:\n" + "".join(idle)
    assert len(started) <= 6, "".join(started)  # the start says who and where, in a few lines
