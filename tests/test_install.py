"""From download to a running service, as a shop does it on Debian: the README's quick start with the system Python
(PEP 668), the service's install into /opt/mailticket, its unit checked by systemd, and `mailticket init`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from mailticket.config import load
from tests.browser import login
from tests.dovecot import free_port
from tests.test_demo import URL_LINE, Demo

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's own, with the EXTERNALLY-MANAGED marker
INSTALL_TIMEOUT = 600.0  # a fresh virtual environment downloads every dependency
SERVICE_HOME = Path("/opt/mailticket")
UNIT = REPO / "contrib" / "mailticket.service"
EXPOSURE = re.compile(r"Overall exposure level for \S+: (\d+\.\d+)")


def readme_line(marker: str) -> str:
    """The one command line of README's code blocks that contains `marker`: the test runs what the README says."""
    found = [line.strip() for line in README.splitlines() if marker in line and not line.lstrip().startswith("#")]
    assert len(found) == 1, f"README should have one line with {marker!r}, has {found}"
    return found[0]


def fresh_clone(tmp_path: Path) -> Path:
    target = tmp_path / "mailticket"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(target)], check=True)
    return target


def test_the_readme_quick_start_runs_the_demo_with_the_system_python(tmp_path):
    # The machine's own Python refuses `pip install` outside a virtual environment (PEP 668), as a shop's does.
    assert list(Path("/usr/lib").glob("python3*/EXTERNALLY-MANAGED")) and "--break-system-packages" not in README
    clone = fresh_clone(tmp_path)
    line = readme_line("contrib/quickstart.sh")
    stderr_path = tmp_path / "quickstart.err"
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(["bash", "-c", f"{line} --port {free_port()}"], cwd=clone, stdout=subprocess.PIPE,
                                stderr=stderr, text=True, env=os.environ | {"PYTHON": SYSTEM_PYTHON})
    demo = Demo(proc, stderr_path)
    deadline = time.monotonic() + INSTALL_TIMEOUT
    try:
        while not URL_LINE.search(demo.text):
            assert time.monotonic() < deadline, f"no demo after {INSTALL_TIMEOUT} s:\n{demo.text}\n{demo.errors}"
            line_read = proc.stdout.readline()
            assert line_read, f"the quick start ended early:\n{demo.text}\n{demo.errors}"
            demo.output.append(line_read)
        with urllib.request.urlopen(f"{demo.url}/login", timeout=10) as page:
            assert page.status == 200 and b'id="login-button"' in page.read()
    finally:
        code, _took = demo.interrupt()
    assert code == 0, demo.errors
    assert (clone / ".venv" / "bin" / "mailticket").is_file()
    assert "Traceback" not in demo.errors


@pytest.fixture(scope="module")
def service_install() -> Path:
    """README's service install line, run as written: a virtual environment in /opt/mailticket."""
    line = readme_line(f"{SERVICE_HOME}/bin/pip install")
    shutil.rmtree(SERVICE_HOME, ignore_errors=True)
    done = subprocess.run(["bash", "-c", line.replace("sudo ", "")], cwd=REPO, capture_output=True, text=True,
                          timeout=INSTALL_TIMEOUT, env=os.environ | {"PATH": f"/usr/bin:/bin:{os.environ['PATH']}"})
    assert done.returncode == 0, done.stderr
    return SERVICE_HOME / "bin" / "mailticket"


def test_the_unit_points_at_the_installed_service_and_systemd_accepts_it(service_install):
    assert subprocess.run([str(service_install), "--version"], capture_output=True, text=True).returncode == 0
    verified = subprocess.run(["systemd-analyze", "verify", str(UNIT)], capture_output=True, text=True)
    assert verified.returncode == 0, verified.stderr
    security = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(UNIT)], capture_output=True,
                              text=True)
    exposure = float(EXPOSURE.search(security.stdout + security.stderr).group(1))
    assert exposure <= 3.5, security.stdout


MAILTICKET = [sys.executable, "-m", "mailticket"]


def init(config: Path, database: str, *extra: str, secrets: str = "a-long-admin-pass\nmailbox-pw\n"):
    return subprocess.run(
        [*MAILTICKET, "-c", str(config), "init", "--non-interactive", "--shop-name", "Loja Exemplo", "--provider",
         "imap", "--address", "atendimento@loja.example", "--imap-host", "127.0.0.1", "--imap-security", "none",
         "--imap-port", "143", "--smtp-host", "127.0.0.1", "--smtp-security", "none", "--smtp-port", "25",
         "--database-url", database, "--admin", "dona", "--admin-email", "dona@loja.example",
         "--user", "", "--password-stdin", *extra],
        input=secrets, capture_output=True, text=True, timeout=120)


def test_init_writes_a_config_check_config_accepts_and_refuses_to_overwrite_it(tmp_path, db_url):
    config = tmp_path / "etc" / "config.toml"
    done = init(config, db_url)
    assert done.returncode == 0, done.stderr
    assert "systemctl enable --now mailticket" in done.stdout
    checked = subprocess.run([*MAILTICKET, "-c", str(config), "check-config"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    settings = load(config)
    assert settings.mailbox("support").password == "mailbox-pw" and len(settings.web.secret_key) >= 32
    # No [autoreply] template: the mailbox's language picks ack_pt.txt.
    assert settings.autoreply.template is None and settings.business_hours.timezone == "America/Sao_Paulo"
    assert (settings.web.language, settings.mailbox("support").language) == ("pt-BR", "pt-BR")
    assert (settings.web.shop_name, settings.web.timezone) == ("Loja Exemplo", "America/Sao_Paulo")
    secrets_dir = config.parent / "secrets"
    assert secrets_dir.stat().st_mode & 0o777 == 0o700
    assert {p.name: p.stat().st_mode & 0o777 for p in secrets_dir.iterdir()} == {"web-secret": 0o600,
                                                                                 "imap-support": 0o600}
    again = init(config, db_url)
    assert again.returncode == 2 and "--force" in again.stderr
    forced = init(config, db_url, "--force", secrets="another-admin-pass\nmailbox-pw-2\n")
    assert forced.returncode == 0, forced.stderr
    renewed = load(config)
    # The web secret stays (stored OAuth tokens and signed links depend on it); the admin gets the new password.
    assert renewed.web.secret_key == settings.web.secret_key and renewed.mailbox("support").password == "mailbox-pw-2"


def test_init_refuses_a_missing_answer_and_a_short_password_by_name(tmp_path, db_url):
    config = tmp_path / "config.toml"
    short = init(config, db_url, secrets="short\nx\n")
    assert short.returncode == 2 and "at least 8 characters" in short.stderr and not config.exists()
    odd = init(config, db_url, "--shop-name", "Loja\n[web]")
    assert odd.returncode == 2 and "--shop-name" in odd.stderr and not config.exists()
    bad = init(config, db_url, "--timezone", "Mars/Olympus")
    assert bad.returncode == 2 and "--timezone" in bad.stderr and "Traceback" not in bad.stderr


def test_the_admin_init_created_signs_in(tmp_path, sqlite_url, serve_app, new_context):
    config = tmp_path / "config.toml"
    assert init(config, sqlite_url).returncode == 0
    settings = load(config)
    from mailticket.db.store import Store

    store = Store(settings.database.url)
    base_url = serve_app(settings, store)
    page = login(new_context(base_url), base_url, "dona", "a-long-admin-pass")
    page.goto(f"{base_url}/admin")
    assert page.locator("h1").inner_text() == "Admin"
