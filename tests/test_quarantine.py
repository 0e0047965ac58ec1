"""Quarantine you can see, on SQLite and PostgreSQL: `mailticket quarantine list|show|release|delete`, the admin page
with the reason and the raw download, the notice above the queue, and a release in Chromium."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

from playwright.sync_api import expect
from sqlalchemy import func, select

from mailticket.config import Settings, WebSettings
from mailticket.db.models import Message, Quarantine, Ticket
from mailticket.db.store import Store
from mailticket.service.ingest import ingest
from mailticket.web.app import create_app
from tests.browser import login
from tests.factories import SETTINGS, T0, make_operator
from tests.test_web import Browser

WEB = Settings(mailboxes=SETTINGS.mailboxes, autoreply=SETTINGS.autoreply,
               web=WebSettings(secret_key="quarantine-test-secret-key"))
GARBAGE = os.urandom(3000).replace(b"\n", b"").replace(b"\r", b"")
# What an older version quarantined ("broken MIME structure"), and today's code reads into a ticket.
PASSES_NOW = (b"From: ana@customer.example\r\nTo: support@shop.example\r\nSubject: Photos of the damage\r\n"
              b"Message-ID: <old@customer.example>\r\nMIME-Version: 1.0\r\n"
              b'Content-Type: multipart/mixed; boundary="XYZ"\r\n\r\nno boundary here\r\n')


def quarantined(store) -> tuple[int, int]:
    """(the garbage's entry, the entry that passes now)."""
    with store.transaction() as session:
        ingest(session, GARBAGE, settings=SETTINGS, received_at=T0, now=T0, mailbox="support")
        session.add(Quarantine(sha256=hashlib.sha256(PASSES_NOW).hexdigest(), mailbox="support", folder="INBOX",
                               uid=7, reason="broken MIME structure: StartBoundaryNotFoundDefect",
                               size=len(PASSES_NOW), received_at=T0, created_at=T0, raw=PASSES_NOW))
    with store.reading() as session:
        garbage = session.scalar(select(Quarantine.id).where(Quarantine.uid.is_(None)))
        passes = session.scalar(select(Quarantine.id).where(Quarantine.uid == 7))
    return garbage, passes


def counted(store, model) -> int:
    with store.reading() as session:
        return session.scalar(select(func.count()).select_from(model))


def mailticket(tmp_path, store, *args: str) -> subprocess.CompletedProcess:
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "{store.url}"\n[[mailbox]]\nname = "support"\nhost = "localhost"\n'
                      'username = "u"\npassword = "p"\naddress = "support@shop.example"\n[autoreply]\nenabled = false\n')
    return subprocess.run([sys.executable, "-m", "mailticket", "-c", str(config), *args], capture_output=True,
                          text=True, timeout=120)


def test_the_command_line_lists_shows_releases_and_deletes_quarantined_mail(tmp_path, store):
    garbage, passes = quarantined(store)
    listed = json.loads(mailticket(tmp_path, store, "quarantine", "list", "--json").stdout)
    assert sorted(entry["id"] for entry in listed) == sorted([garbage, passes])
    shown = mailticket(tmp_path, store, "quarantine", "show", str(passes))
    assert shown.returncode == 0 and "StartBoundaryNotFoundDefect" in shown.stdout
    assert "Subject: Photos of the damage" in shown.stdout

    # Read again with today's code: it passes now, and becomes a ticket.
    released = mailticket(tmp_path, store, "quarantine", "release", str(passes))
    assert released.returncode == 0, released.stderr
    with store.reading() as session:
        assert session.scalar(select(Ticket.subject)) == "Photos of the damage"
    # The garbage is still garbage: it stays, with today's reason, and the command says so.
    again = mailticket(tmp_path, store, "quarantine", "release", str(garbage))
    assert again.returncode == 1 and "still quarantined" in again.stdout
    assert mailticket(tmp_path, store, "quarantine", "delete", str(garbage)).returncode == 0
    assert counted(store, Quarantine) == 0
    missing = mailticket(tmp_path, store, "quarantine", "show", str(garbage))
    assert missing.returncode == 2 and "nothing in quarantine" in missing.stderr


def test_the_admin_page_shows_the_reason_downloads_the_bytes_releases_and_deletes(store):
    garbage, passes = quarantined(store)
    make_operator(store, "boss", admin=True)
    make_operator(store, "olga")
    boss = Browser(create_app(WEB, store, clock=lambda: T0))
    assert boss.log_in("boss").status_code == 303
    queue = boss.get("/").text
    assert "2 messages could not become a ticket" in queue and 'href="/admin/quarantine"' in queue
    olga = Browser(create_app(WEB, store, clock=lambda: T0))
    assert olga.log_in("olga").status_code == 303
    assert "an admin can look at them" in olga.get("/").text
    assert olga.get("/admin/quarantine").status_code == 403

    assert "no usable header fields" in boss.get("/admin/quarantine").text
    page = boss.get(f"/admin/quarantine/{passes}").text
    assert "StartBoundaryNotFoundDefect" in page and "Subject: Photos of the damage" in page
    raw = boss.get(f"/admin/quarantine/{garbage}/raw")
    assert raw.content == GARBAGE and "attachment" in raw.headers["content-disposition"]
    released = boss.post(f"/admin/quarantine/{passes}/release")
    assert released.status_code == 303 and released.headers["location"].startswith("/tickets/")
    assert boss.post(f"/admin/quarantine/{garbage}/delete").status_code == 303
    assert counted(store, Quarantine) == 0 and counted(store, Message) == 1
    assert "could not become a ticket" not in boss.get("/").text
    assert boss.get(f"/admin/quarantine/{garbage}").status_code == 404


def test_in_chromium_an_admin_follows_the_notice_and_releases_a_message(sqlite_url, serve_app, new_context,
                                                                        fast_passwords):
    store = Store(sqlite_url)
    _garbage, passes = quarantined(store)
    make_operator(store, "boss", admin=True)
    base_url = serve_app(WEB, store)
    page = login(new_context(base_url), base_url, "boss")
    page.click("#quarantine-notice a")
    page.click(f"#quarantine-list a:text-is('{passes}')")
    expect(page.locator("#quarantine-reason")).to_contain_text("StartBoundaryNotFoundDefect")
    page.click("#quarantine-release")
    expect(page.locator("#flash")).to_contain_text("Released into ticket")
    expect(page.locator("h1")).to_contain_text("Photos of the damage")
    store.dispose()
