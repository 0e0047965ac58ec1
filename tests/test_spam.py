"""Spam: the verdict of a mail server a mailbox trusts, blocked senders and domains, Mark as spam and Not spam; polled
from a real Dovecot, on SQLite and PostgreSQL, through the pages, and the block commands."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from mailticket.config import AutoreplySettings, MailboxSettings, Settings, SlaSettings, WebSettings
from mailticket.db.models import Outbox, Ticket
from mailticket.db.store import Store
from mailticket.service.poll import poll_mailbox
from mailticket.web.app import create_app
from mailticket.web.queue import queue_rows
from tests.browser import login
from tests.factories import T0, make_operator
from tests.mails import SUPPORT, make_mail
from tests.test_web import Browser

SPAM_HEADERS = {"X-Spam-Flag": "YES", "X-Spam-Status": "Yes, score=12.3 required=5.0"}


@pytest.fixture
def settings(dovecot, mailbox_user) -> Settings:
    user, password = mailbox_user
    box = MailboxSettings(name="support", host=dovecot.host, port=dovecot.port, security="none", username=user,
                          password=password, address=SUPPORT, spam_headers=True)
    return Settings(mailboxes=(box,), web=WebSettings(secret_key="spam-test-secret-key-0123"),
                    sla=(SlaSettings(name="everyone", first_response=3600),),
                    autoreply=AutoreplySettings(enabled=True, template="ack_en.txt", max_per_sender_per_hour=5))


def take_in(store, dovecot, settings: Settings, *mails: bytes) -> None:
    box = settings.mailboxes[0]
    dovecot.deliver(box.username, list(mails))
    assert poll_mailbox(store, settings, box, clock=lambda: T0).fetched == len(mails)


def view(store, name: str) -> list[str]:
    with store.reading() as session:
        rows, _more = queue_rows(session, view=name, queue=None, operator_id=0, now=T0 + timedelta(days=1))
    return [row.subject for row in rows]


def sent(store) -> int:
    with store.reading() as session:
        return session.scalar(select(func.count()).select_from(Outbox))


def test_mail_the_trusted_server_calls_spam_waits_in_spam_and_gets_nothing(store, dovecot, settings):
    take_in(store, dovecot, settings,
            make_mail(message_id="s@promo.example", sender="promo@promo.example", subject="VOCÊ GANHOU UM IPHONE!!!",
                      headers=SPAM_HEADERS),
            make_mail(message_id="c@customer.example", subject="Where is my order?"))
    assert view(store, "spam") == ["VOCÊ GANHOU UM IPHONE!!!"]
    for name in ("waiting", "open", "all", "automatic"):
        assert "VOCÊ GANHOU UM IPHONE!!!" not in view(store, name)
    assert view(store, "waiting") == ["Where is my order?"]
    assert sent(store) == 1  # the customer's acknowledgement, none for the spam
    with store.reading() as session:
        spam = session.scalar(select(Ticket).where(Ticket.status == "spam"))
        assert (spam.sla_name, spam.sla_check_at, spam.waiting_since) == (None, None, None)


def test_the_same_headers_change_nothing_on_a_mailbox_that_does_not_trust_them(store, dovecot, settings):
    box = dataclasses.replace(settings.mailboxes[0], spam_headers=False)
    settings = dataclasses.replace(settings, mailboxes=(box,))
    take_in(store, dovecot, settings, make_mail(message_id="s@x.example", sender="a@x.example", subject="Hello there",
                                                headers=SPAM_HEADERS))
    assert view(store, "waiting") == ["Hello there"] and view(store, "spam") == []


def signed_in(store, settings: Settings, username: str = "olga") -> Browser:
    make_operator(store, username)
    browser = Browser(create_app(settings, store, clock=lambda: T0))
    assert browser.log_in(username).status_code == 303
    return browser


def test_marking_spam_with_its_domain_sends_later_mail_there_and_not_spam_brings_it_back(store, dovecot, settings):
    take_in(store, dovecot, settings, make_mail(message_id="a@bulk.example", sender="a@mail.bulk.example",
                                                subject="Cheap watches"))
    with store.reading() as session:
        ticket = session.scalar(select(Ticket.id))
    olga = signed_in(store, settings)
    assert olga.post(f"/tickets/{ticket}/spam", {"block": "domain"}).status_code == 303
    assert view(store, "spam") == ["Cheap watches"] and view(store, "waiting") == []

    # Later mail from anyone at that domain goes straight to Spam, with no acknowledgement.
    before = sent(store)
    take_in(store, dovecot, settings, make_mail(message_id="b@bulk.example", sender="b@mail.bulk.example",
                                                subject="Cheaper watches"))
    assert sorted(view(store, "spam")) == ["Cheap watches", "Cheaper watches"]
    assert sent(store) == before

    # Not spam: back in "Needs answer", the domain's block lifted.
    assert olga.post(f"/tickets/{ticket}/not-spam").status_code == 303
    assert view(store, "waiting") == ["Cheap watches"]
    with store.reading() as session:
        back = session.get(Ticket, ticket)
        assert (back.status, back.sla_name) == ("open", "everyone")
    take_in(store, dovecot, settings, make_mail(message_id="c@bulk.example", sender="c@mail.bulk.example",
                                                subject="A real question"))
    assert "A real question" in view(store, "waiting")


def test_an_admin_blocks_and_unblocks_on_the_admin_page_and_bad_input_is_refused(sqlite_url):
    store = Store(sqlite_url)
    settings = Settings(web=WebSettings(secret_key="spam-test-secret-key-0123"))
    make_operator(store, "boss", admin=True)
    boss = Browser(create_app(settings, store, clock=lambda: T0))
    assert boss.log_in("boss").status_code == 303
    assert boss.post("/admin/blocked", {"pattern": "Spam.Example"}).status_code == 303
    assert "spam.example" in boss.get("/admin").text
    refused = boss.post("/admin/blocked", {"pattern": "not a domain"})
    assert refused.status_code == 303 and "Not blocked" in boss.get("/admin").text
    assert boss.post("/admin/blocked/remove", {"pattern": "spam.example"}).status_code == 303
    assert "Nobody is blocked" in boss.get("/admin").text
    store.dispose()


def mailticket(config: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mailticket", "-c", config, *args], capture_output=True, text=True,
                          timeout=120)


def listed(config) -> list[str]:
    return [line.split()[0] for line in mailticket(str(config), "block", "list").stdout.splitlines()]


def test_block_list_add_and_remove_on_the_command_line(tmp_path, sqlite_url):
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "{sqlite_url}"\n')
    assert mailticket(str(config), "block", "add", "@Promo.Example").returncode == 0
    assert mailticket(str(config), "block", "add", "x@promo2.example").returncode == 0
    assert listed(config) == ["promo.example", "x@promo2.example"]
    bad = mailticket(str(config), "block", "add", "not an address")
    assert bad.returncode == 2 and "neither an address nor a domain" in bad.stderr
    assert mailticket(str(config), "block", "remove", "promo.example").returncode == 0
    assert mailticket(str(config), "block", "remove", "promo.example").returncode == 1
    assert listed(config) == ["x@promo2.example"]


def test_in_chromium_an_operator_marks_a_ticket_as_spam_and_takes_it_back(sqlite_url, serve_app, new_context,
                                                                          fast_passwords):
    from tests.factories import make_ticket

    store = Store(sqlite_url)
    settings = Settings(web=WebSettings(secret_key="spam-test-secret-key-0123"))
    ticket = make_ticket(store, sender="promo@bulk.example", subject="Cheap watches")
    make_operator(store, "olga", name="Olga")
    base_url = serve_app(settings, store)
    page = login(new_context(base_url), base_url, "olga")
    page.goto(f"{base_url}/tickets/{ticket}")
    page.select_option("#spam-block", "sender")
    page.click("#spam-button")
    expect(page.locator("#flash")).to_contain_text("mail from promo@bulk.example goes to Spam")
    expect(page.locator("#ticket-status")).to_have_text("spam")
    page.goto(f"{base_url}/?view=spam")
    expect(page.locator("main")).to_contain_text("Cheap watches")
    page.goto(f"{base_url}/tickets/{ticket}")
    page.click("#not-spam-button")
    expect(page.locator("#flash")).to_contain_text("promo@bulk.example no longer blocked")
    expect(page.locator("#ticket-status")).to_have_text("open")
    store.dispose()


@pytest.mark.parametrize("headers, spam", [
    ({"X-Spam-Flag": "YES"}, True), ({"X-Spam-Flag": "NO"}, False),
    ({"X-Spam-Status": "Yes, score=9.1"}, True), ({"X-Spam-Status": "No, score=0.1"}, False),
    ({"X-Spamd-Result": "default: True [15.20 / 15.00]"}, True), ({"X-Spamd-Result": "default: False [1.2 / 15]"}, False),
    ({"X-Rspamd-Action": "add header"}, True), ({"X-Rspamd-Action": "no action"}, False),
    ({"X-MS-Exchange-Organization-SCL": "5"}, True), ({"X-MS-Exchange-Organization-SCL": "1"}, False),
    ({"X-MS-Exchange-Organization-SCL": "-1"}, False), ({}, False),
])
def test_the_verdict_headers_of_common_mail_servers_are_read(headers, spam):
    from mailticket.mail import spam as verdicts
    from mailticket.mail.parse import parse

    assert (verdicts.verdict(parse(make_mail(headers=headers))) is not None) == spam


def test_a_block_covers_its_address_or_its_domain_and_the_domains_below_it():
    from mailticket.service.blocks import matching

    blocked = frozenset({"promo.example", "x@shop.example"})
    assert matching(blocked, "a@promo.example") == "promo.example"
    assert matching(blocked, "a@mail.promo.example") == "promo.example"
    assert matching(blocked, "a@notpromo.example") is None
    assert matching(blocked, "X@Shop.Example") == "x@shop.example"
    assert matching(blocked, "y@shop.example") is None
