"""Lists that say when they stop, and `mailticket backup` (issue 15): the CLI and the API page through every ticket
without duplicates or gaps, and a backup taken while the service writes is a sound copy of one moment."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select
from sqlalchemy.engine import make_url

from mailticket.cli_list import json_array
from mailticket.db.models import Customer, Ticket
from mailticket.db.store import Store
from tests.factories import T0, make_operator
from tests.test_api import API, make_app, token_for
from tests.test_cli import config_file, run

MANY = 1_200
HINT = re.compile(r"more: --after (\d+)")
SECRETS_ELSEWHERE = """
[[mailbox]]
name = "support"
host = "imap.example.com"
username = "support@example.com"
password_file = "/run/credentials/mailticket.service/imap-support"
address = "support@example.com"
[smtp]
host = "smtp.example.com"
username = "support@example.com"
password_file = "/run/credentials/mailticket.service/smtp"
"""


def bulk_tickets(store: Store, count: int, *, customers: int = 12, first: int = 0) -> list[int]:
    """`count` tickets in one INSERT (ingest would take minutes for this many), spread over a few customers."""
    with store.transaction() as session:
        addresses = [f"c{n}@bulk.example" for n in range(customers)]
        known = dict(session.execute(select(Customer.address, Customer.id).where(Customer.address.in_(addresses))).all())
        missing = [a for a in addresses if a not in known]
        if missing:
            session.execute(insert(Customer), [{"address": a, "created_at": T0} for a in missing])
            known = dict(session.execute(select(Customer.address, Customer.id)
                                         .where(Customer.address.in_(addresses))).all())
        before = set(session.scalars(select(Ticket.id)))
        at = [T0 + timedelta(minutes=first + n) for n in range(count)]
        session.execute(insert(Ticket), [
            {"subject": f"Bulk ticket {first + n}", "customer_id": known[addresses[n % customers]],
             "status": "open" if n % 3 else "resolved", "created_at": at[n], "updated_at": at[n],
             "last_message_at": at[n]}
            for n in range(count)])
        return sorted(set(session.scalars(select(Ticket.id))) - before)


def ticket_ids(store: Store) -> list[int]:
    with store.reading() as session:
        return list(session.scalars(select(Ticket.id).order_by(Ticket.id)))


def listed(result) -> list[int]:
    assert result.returncode == 0, result.stderr
    return [t["id"] for t in json.loads(result.stdout)]


def test_ticket_list_json_on_1200_tickets_returns_every_one_of_them(tmp_path, store):
    ids = bulk_tickets(store, MANY)
    path = config_file(tmp_path, store.url)
    result = run("-c", path, "ticket", "list", "--json")
    assert listed(result) == ids and len(ids) == MANY
    assert "more" not in result.stderr
    table = run("-c", path, "ticket", "list")
    assert table.returncode == 0 and len(table.stdout.splitlines()) == MANY + 1
    open_ids = listed(run("-c", path, "ticket", "list", "--status", "open", "--json"))
    assert open_ids == [i for n, i in enumerate(ids) if n % 3] and len(open_ids) == 800


def test_limit_500_prints_500_and_a_hint_and_after_pages_to_the_end_with_no_duplicates_or_gaps(tmp_path, store):
    ids = bulk_tickets(store, MANY)
    path = config_file(tmp_path, store.url)
    seen, pages, after = [], [], None
    while True:
        result = run("-c", path, "ticket", "list", "--json", "--limit", "500", *(["--after", after] if after else []))
        page = listed(result)
        seen += page
        pages.append(len(page))
        hint = HINT.search(result.stderr)
        if hint is None:
            break
        assert int(hint.group(1)) == page[-1]
        after = hint.group(1)
    assert pages == [500, 500, 200] and seen == ids and len(set(seen)) == MANY
    # The table says it on standard error too; an exact last page says nothing.
    table = run("-c", path, "ticket", "list", "--limit", "1")
    assert len(table.stdout.splitlines()) == 2 and f"more: --after {ids[0]}" in table.stderr
    last = run("-c", path, "ticket", "list", "--json", "--limit", "200", "--after", str(ids[999]))
    assert listed(last) == ids[1000:] and "more" not in last.stderr


def test_a_search_says_on_standard_error_when_it_stopped(tmp_path, store):
    bulk_tickets(store, MANY, customers=2)  # 600 tickets each
    path = config_file(tmp_path, store.url)
    capped = run("-c", path, "ticket", "list", "--search", "c0@bulk.example", "--json")
    assert len(listed(capped)) == 500 and "only the newest 500 matching tickets are shown" in capped.stderr
    few = run("-c", path, "ticket", "list", "--search", "c1@bulk.example", "--json", "--limit", "600")
    assert len(listed(few)) == 600 and few.stderr == ""
    refused = run("-c", path, "ticket", "list", "--search", "c1@bulk.example", "--after", "5")
    assert refused.returncode == 2 and "--after" in refused.stderr


def test_json_list_text_is_what_json_dumps_writes(tmp_path):
    rows = [{"id": 1, "subject": "line\u2028separator \x85 and \"quotes\"\nnewline", "claim": None},
            {"id": 2, "subject": "Olá", "claim": {"holder": "Ana"}}]
    assert "".join(json_array(rows)) == json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
    assert "".join(json_array([])) == json.dumps([], indent=2) + "\n"


def test_the_api_pages_through_1200_tickets_with_the_next_after_header(store):
    ids = bulk_tickets(store, MANY)
    make_operator(store, "ana")
    client = TestClient(make_app(store))
    headers = {"Authorization": f"Bearer {token_for(store, 'ana')}"}
    first = client.get(f"{API}/tickets", headers=headers)
    assert first.status_code == 200 and [t["id"] for t in first.json()] == ids[:100]
    assert first.headers["X-Next-After"] == str(ids[99])
    assert first.headers["Link"] == f'</api/v1/tickets?after={ids[99]}>; rel="next"'
    seen, params = [], {"limit": 500}
    while True:
        response = client.get(f"{API}/tickets", headers=headers, params=params)
        assert response.status_code == 200, response.text
        seen += [t["id"] for t in response.json()]
        if "X-Next-After" not in response.headers:
            assert "Link" not in response.headers
            break
        params = {**params, "after": response.headers["X-Next-After"]}
    assert seen == ids
    # The Link header keeps the other parameters.
    resolved = client.get(f"{API}/tickets", headers=headers, params={"status": "resolved", "limit": 3})
    following = re.fullmatch(r"<(.+)>; rel=\"next\"", resolved.headers["Link"]).group(1)
    more = client.get(following, headers=headers).json()
    assert [t["status"] for t in more] == ["resolved"] * 3 and more[0]["id"] > resolved.json()[-1]["id"]


def test_the_openapi_document_describes_the_next_page_headers(store):
    doc = TestClient(make_app(store)).get("/api/openapi.json").json()
    listing = doc["paths"][f"{API}/tickets"]["get"]
    assert {"X-Next-After", "Link"} <= set(listing["responses"]["200"]["headers"])
    limit = next(p for p in listing["parameters"] if p["name"] == "limit")
    assert limit["schema"]["default"] == 100 and limit["schema"]["maximum"] == 500


def sqlite_path(url: str) -> Path:
    return Path(make_url(url).database)


def copy_state(path: Path) -> tuple[str, list[tuple]]:
    with sqlite3.connect(path) as copy:
        check = copy.execute("PRAGMA integrity_check").fetchone()[0]
        return check, copy.execute("SELECT id, subject, customer_id FROM tickets ORDER BY id").fetchall()


def test_a_backup_taken_while_another_connection_writes_has_the_same_tickets_and_passes_integrity_check(
        tmp_path, sqlite_url):
    store = Store(sqlite_url)
    bulk_tickets(store, MANY)
    path = config_file(tmp_path, sqlite_url)
    stop, batches = threading.Event(), []

    def write() -> None:
        # Ten tickets a transaction: a consistent copy holds whole transactions only.
        while not stop.is_set():
            batches.append(bulk_tickets(store, 10, first=MANY + 10 * len(batches)))

    writer = threading.Thread(target=write)
    writer.start()
    try:
        while not batches:
            stop.wait(0.01)
        started = len(batches)
        during = run("-c", path, "backup", str(tmp_path / "during.db"))
        ended = len(batches)
    finally:
        stop.set()
        writer.join()
    assert during.returncode == 0, during.stderr
    assert "integrity ok" in during.stdout and ended > started, "the writer wrote while the backup ran"
    check, copied = copy_state(tmp_path / "during.db")
    assert check == "ok" and len(copied) >= MANY and (len(copied) - MANY) % 10 == 0
    with sqlite3.connect(sqlite_path(sqlite_url)) as source:
        now = source.execute("SELECT id, subject, customer_id FROM tickets ORDER BY id").fetchall()
    assert copied == now[:len(copied)]
    # Once the writes stop, a backup holds exactly the tickets of the database; it is one file, no WAL beside it.
    after = run("-c", path, "backup", str(tmp_path / "after.db"))
    assert after.returncode == 0, after.stderr
    assert copy_state(tmp_path / "after.db") == ("ok", now)
    assert not Path(f"{tmp_path / 'after.db'}-wal").exists()
    store.dispose()


def test_a_backup_copy_works_as_the_database(tmp_path, sqlite_url):
    store = Store(sqlite_url)
    ids = bulk_tickets(store, 30)
    store.dispose()
    assert run("-c", config_file(tmp_path, sqlite_url), "backup", str(tmp_path / "copy.db")).returncode == 0
    (tmp_path / "restored").mkdir()
    restored = config_file(tmp_path / "restored", f"sqlite:///{tmp_path / 'copy.db'}")
    assert run("-c", restored, "migrate").returncode == 0
    assert listed(run("-c", restored, "ticket", "list", "--json")) == ids


def test_backup_refuses_to_overwrite_an_existing_file_without_force(tmp_path, sqlite_url):
    bulk_tickets(Store(sqlite_url), 5)
    path = config_file(tmp_path, sqlite_url)
    target = tmp_path / "backup.db"
    target.write_bytes(b"an older backup")
    refused = run("-c", path, "backup", str(target))
    assert refused.returncode == 2 and f"{target} exists; pass --force to replace it" in refused.stderr
    assert "Traceback" not in refused.stderr and target.read_bytes() == b"an older backup"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []
    forced = run("-c", path, "backup", str(target), "--force")
    assert forced.returncode == 0, forced.stderr
    assert copy_state(target)[0] == "ok" and len(copy_state(target)[1]) == 5
    itself = run("-c", path, "backup", str(sqlite_path(sqlite_url)), "--force")
    assert itself.returncode == 2 and "is the database itself" in itself.stderr
    assert len(ticket_ids(Store(sqlite_url))) == 5


def test_backup_needs_only_the_database_settings(tmp_path, sqlite_url):
    bulk_tickets(Store(sqlite_url), 3)
    result = run("-c", config_file(tmp_path, sqlite_url, SECRETS_ELSEWHERE), "backup", str(tmp_path / "b.db"))
    assert result.returncode == 0, result.stderr
    assert len(copy_state(tmp_path / "b.db")[1]) == 3


def test_backup_on_postgresql_prints_the_pg_dump_command_without_the_password(tmp_path, pg_database):
    url = make_url(pg_database).set(username="mailticket", password="s3cret-Pa55", port=5433,
                                    query={"sslmode": "require"})
    result = run("-c", config_file(tmp_path, url.render_as_string(hide_password=False)), "backup",
                 str(tmp_path / "dump file.pgdump"))
    assert result.returncode == 0, result.stderr
    assert "s3cret-Pa55" not in result.stdout + result.stderr
    assert (f"PGSSLMODE=require pg_dump --format=custom --file='{tmp_path / 'dump file.pgdump'}' "
            f"--host={url.host} --port=5433 --username=mailticket {url.database}") in result.stdout
    assert "pg_restore" in result.stdout and "mailticket migrate" in result.stdout
    assert not (tmp_path / "dump file.pgdump").exists()


def test_backup_leaves_the_database_as_it_was_on_either_store(tmp_path, db_url):
    store = Store(db_url)
    ids = bulk_tickets(store, 20)
    result = run("-c", config_file(tmp_path, db_url), "backup", str(tmp_path / "x.backup"))
    assert result.returncode == 0, result.stderr
    assert ticket_ids(store) == ids
    with store.reading() as session:
        assert session.scalar(select(func.count()).select_from(Ticket)) == 20
    store.dispose()


@pytest.mark.parametrize("limit", ["0", "-1", "many"])
def test_a_bad_limit_is_a_usage_error(tmp_path, sqlite_url, limit):
    result = run("-c", config_file(tmp_path, sqlite_url), "ticket", "list", "--limit", limit)
    assert result.returncode == 2 and "--limit" in result.stderr
