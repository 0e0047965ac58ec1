"""The command line as an admin uses it: exit codes, config errors, migrate, ticket list and show."""

from __future__ import annotations

import json
import subprocess
import sys


from mailticket.db.store import Store
from tests.factories import make_ticket

SPEC_TICKET_KEYS = {"id", "subject", "status", "queue", "priority", "customer", "created_at", "first_response_at",
                    "first_response_seconds", "handle_seconds", "resolved_at", "claim", "messages"}
SPEC_MESSAGE_KEYS = {"direction", "message_id", "from", "subject", "date", "text", "attachments", "matched_by",
                     "autoreply"}


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mailticket", *args], capture_output=True, text=True, timeout=120,
                          env=env)


def config_file(tmp_path, db_url: str, extra: str = "") -> str:
    path = tmp_path / "config.toml"
    path.write_text(f'[database]\nurl = "{db_url}"\n{extra}')
    return str(path)


def test_check_config_accepts_a_good_file(tmp_path):
    result = run("-c", config_file(tmp_path, f"sqlite:///{tmp_path}/x.db"), "check-config")
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_a_bad_config_names_the_file_and_key_and_exits_2_without_a_traceback(tmp_path):
    path = config_file(tmp_path, f"sqlite:///{tmp_path}/x.db", '[claims]\nttl = "fifteen minutes"\n')
    result = run("-c", path, "check-config")
    assert result.returncode == 2
    assert "config.toml" in result.stderr and "claims.ttl" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_config_file_exits_2(tmp_path):
    result = run("-c", str(tmp_path / "nope.toml"), "check-config")
    assert result.returncode == 2 and "nope.toml" in result.stderr


def test_migrate_is_safe_to_repeat(tmp_path):
    path = config_file(tmp_path, f"sqlite:///{tmp_path}/m.db")
    first, second = run("-c", path, "migrate"), run("-c", path, "migrate")
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert first.stdout == second.stdout and "revision" in first.stdout


def test_ticket_show_json_has_the_spec_shape(tmp_path, db_url):
    ticket = make_ticket(Store(db_url), subject="Tamanho errado", body="Chegou o 40, pedi 42.")
    result = run("-c", config_file(tmp_path, db_url), "ticket", "show", str(ticket), "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert SPEC_TICKET_KEYS <= shown.keys()
    assert shown["subject"] == "Tamanho errado" and shown["status"] == "open"
    assert shown["created_at"].endswith("+00:00")
    [message] = shown["messages"]
    assert SPEC_MESSAGE_KEYS <= message.keys()
    assert message["matched_by"] == "new" and message["autoreply"] is False
    assert "Chegou o 40" in message["text"]


def test_ticket_list_filters_by_status(tmp_path, db_url):
    make_ticket(Store(db_url), message_id="a@x.example")
    path = config_file(tmp_path, db_url)
    open_list = json.loads(run("-c", path, "ticket", "list", "--status", "open", "--json").stdout)
    resolved = json.loads(run("-c", path, "ticket", "list", "--status", "resolved", "--json").stdout)
    assert [t["status"] for t in open_list] == ["open"] and resolved == []
    table = run("-c", path, "ticket", "list")
    assert "ana@customer.example" in table.stdout


def test_an_unknown_ticket_exits_2(tmp_path, sqlite_url):
    result = run("-c", config_file(tmp_path, sqlite_url), "ticket", "show", "999")
    assert result.returncode == 2 and "no ticket 999" in result.stderr


def test_an_unknown_mailbox_name_exits_2(tmp_path, sqlite_url):
    result = run("-c", config_file(tmp_path, sqlite_url), "poll-once", "--mailbox", "nope")
    assert result.returncode == 2 and "nope" in result.stderr


def operator(path: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mailticket", "-c", path, "operator", *args], input=stdin,
                          capture_output=True, text=True, timeout=120)


def test_operators_are_added_listed_given_a_token_and_disabled(tmp_path, sqlite_url):
    path = config_file(tmp_path, sqlite_url)
    added = operator(path, "add", "ana", "--name", "Ana Souza", "--admin", "--password-stdin",
                     stdin="a long password\n")
    assert added.returncode == 0, added.stderr
    token = operator(path, "token", "ana").stdout.strip()
    assert token.startswith("mt_") and len(token) > 30
    listed = operator(path, "list").stdout
    assert "ana" in listed and "admin" in listed and "active" in listed
    # Not the last enabled admin: that one is never disabled (tests/test_operators_admin.py).
    assert operator(path, "add", "bea", "--admin", "--password-stdin", stdin="another password\n").returncode == 0
    assert operator(path, "disable", "ana").returncode == 0
    assert "disabled" in operator(path, "list").stdout


def test_a_short_password_is_refused_with_exit_2(tmp_path, sqlite_url):
    result = operator(config_file(tmp_path, sqlite_url), "add", "bob", "--password-stdin", stdin="short\n")
    assert result.returncode == 2 and "8 characters" in result.stderr


def test_ticket_list_and_show_write_terminal_escapes_from_mail_as_text(tmp_path, sqlite_url):
    subject = "Refund \x1b]0;owned\x07\x1b[2J ready \u202egpj.exe"
    ticket = make_ticket(Store(sqlite_url), subject=subject, body="Look \x1b[31mhere\x1b[0m\nsecond line")
    path = config_file(tmp_path, sqlite_url)
    for args in (("ticket", "list"), ("ticket", "show", str(ticket))):
        result = run("-c", path, *args)
        assert result.returncode == 0, result.stderr
        assert "\x1b" not in result.stdout and "\x07" not in result.stdout and "\u202e" not in result.stdout
        assert "\\x1b[2J" in result.stdout and "\\u202egpj.exe" in result.stdout
    assert "second line" in run("-c", path, "ticket", "show", str(ticket)).stdout


def test_a_from_name_with_a_line_break_is_a_config_error_naming_the_key(tmp_path):
    path = config_file(tmp_path, f"sqlite:///{tmp_path}/x.db", '[smtp]\nfrom_name = "Shop\\nBcc: x@evil.example"\n')
    result = run("-c", path, "check-config")
    assert result.returncode == 2 and "smtp.from_name" in result.stderr and "one line" in result.stderr
