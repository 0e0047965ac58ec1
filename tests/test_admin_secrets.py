"""Admin commands read only the secrets they use: with the service's credential files out of reach (as in a shell,
outside the systemd unit), the database commands work and check-config names what it cannot read."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.test_cli import config_file, run

CREDENTIALS = "/run/credentials/mailticket.service"  # exists only inside the running service
SECRETS_ELSEWHERE = f"""
[web]
secret_key_file = "{CREDENTIALS}/web-secret"
[[mailbox]]
name = "support"
host = "imap.example.com"
username = "support@example.com"
password_file = "{CREDENTIALS}/imap-support"
address = "support@example.com"
[smtp]
host = "smtp.example.com"
username = "support@example.com"
password_file = "{CREDENTIALS}/smtp"
"""


def test_database_commands_work_while_the_mail_secrets_cannot_be_read(tmp_path, db_url):
    path = config_file(tmp_path, db_url, SECRETS_ELSEWHERE)
    for args in (("migrate",), ("ticket", "list", "--json"), ("report", "--format", "json"), ("quarantine", "list"),
                 ("block", "list"), ("mailbox", "status", "--json"), ("operator", "list")):
        done = run("-c", path, *args)
        assert done.returncode == 0, (args, done.stderr)
    added = subprocess.run([sys.executable, "-m", "mailticket", "-c", path, "operator", "add", "dona", "--admin",
                            "--password-stdin"], input="a-long-password-1\n", capture_output=True, text=True)
    assert added.returncode == 0, added.stderr
    changed = subprocess.run([sys.executable, "-m", "mailticket", "-c", path, "operator", "password", "dona",
                              "--password-stdin"], input="another-long-password\n", capture_output=True, text=True)
    assert changed.returncode == 0, changed.stderr
    assert json.loads(run("-c", path, "ticket", "list", "--json").stdout) == []


def test_check_config_and_the_mail_commands_name_the_secret_they_cannot_read(tmp_path, db_url):
    path = config_file(tmp_path, db_url, SECRETS_ELSEWHERE)
    for args in (("check-config",), ("poll-once",), ("outbox", "flush")):
        done = run("-c", path, *args)
        assert done.returncode == 2, (args, done.stderr)
        assert f"names {CREDENTIALS}/web-secret, which cannot be read" in done.stderr
        assert "Traceback" not in done.stderr


def test_a_secret_the_command_does_not_read_is_still_checked_for_its_form(tmp_path, db_url):
    both = SECRETS_ELSEWHERE.replace('password_file = "/run/credentials/mailticket.service/smtp"',
                                     'password_file = "x"\npassword_env = "Y"')
    done = run("-c", config_file(tmp_path, db_url, both), "ticket", "list")
    assert done.returncode == 2 and "smtp sets both password_env and password_file" in done.stderr
