"""Live collaboration in real Chromium (SPEC §13): pages that follow changes made anywhere, without a reload.

Two app instances on one database stand for two web processes (each with its own change feed and connection
pool): Ana works on instance A, Bruno on instance B, and what one of them does (or what the other instance
polls from the mailbox) reaches the other's open page through the database and the page's change stream.
The cross-instance stories run on SQLite and PostgreSQL; the time-based and single-instance stories on SQLite.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest
from playwright.sync_api import Dialog, Page, expect
from sqlalchemy import select

from mailticket.clock import utcnow
from mailticket.db.models import Event, Message, ReplyDraft, Ticket
from mailticket.db.store import Store
from mailticket.service import claims as claim_service
from mailticket.service.ingest import ingest
from mailticket.service.operators import new_token, operator_named
from tests.browser import UNTIL, banner, browser_settings, claim_row, claim_ticket, outbound
from tests.factories import SETTINGS, make_operator
from tests.mails import make_mail

# The fixtures chromium, serve_app, new_context, operator_page, sqlite_store and fast_passwords come from
# tests/browser.py.
pytestmark = pytest.mark.usefixtures("fast_passwords")

# The latency the feature promises: a change made anywhere shows on an open page within this (ms).
LIVE_MS = 2_000
# The queue refreshes a little later (it waits 300 ms for changes that come together).
QUEUE_MS = 3_000
# Several lines, indentation, markup-looking text and non-ASCII: a draft must bring all of it back as typed.
DRAFT_TEXT = "\n".join([
    "Olá Maria,",
    "",
    "  a sua encomenda 1234 saiu do armazém na segunda-feira — chega na quinta.",
    "<b>not bold</b> &amp; {{ not a template }}",
    "Grüße, ünïcödé ✓ 📦",
    "Atenciosamente,",
    "Ana",
])


@pytest.fixture
def second_store() -> Callable[[Store], Store]:
    """`second_store(store)`: another Store (own engine and pool) on the same database, disposed at the end."""
    made: list[Store] = []

    def make(store: Store) -> Store:
        other = Store(store.url)
        made.append(other)
        return other

    yield make
    for other in made:
        other.dispose()


def new_ticket(store: Store, message_id: str, **mail) -> int:
    """A ticket from a customer's mail received now (the pages count waiting times up to now)."""
    now = utcnow()
    with store.transaction() as session:
        return ingest(session, make_mail(message_id=message_id, **mail), settings=SETTINGS, received_at=now,
                      now=now, mailbox="support").ticket_id


def customer_writes_again(store: Store, first_message_id: str, message_id: str, body: str) -> int:
    """The customer's follow-up, polled (by whichever instance `store` belongs to); returns its ticket."""
    now = utcnow()
    with store.transaction() as session:
        outcome = ingest(session, make_mail(subject="Re: Where is my order?", in_reply_to=first_message_id,
                                            references=[first_message_id], message_id=message_id, body=body),
                         settings=SETTINGS, received_at=now, now=now, mailbox="support")
    return outcome.ticket_id


def lock(name: str) -> re.Pattern:
    return re.compile(rf"^\s*{re.escape(name)} is answering {UNTIL}\s*$")


def mark(page: Page) -> None:
    """Marks the loaded document: the mark survives in-page updates, but not a navigation or a reload."""
    page.evaluate("() => { window.__marker = 1; }")


def assert_updated_in_place(page: Page, whose: str = "the") -> None:
    """The page marked before is still the same document: it followed the change without navigating."""
    assert page.evaluate("() => window.__marker === 1"), f"{whose} page navigated instead of updating itself"


@dataclasses.dataclass
class TwoDesks:
    """Ana on instance A and Bruno on instance B, signed in, and a customer's ticket."""

    ticket_id: int
    store_b: Store
    url_a: str
    url_b: str
    ana: Page
    bruno: Page


def two_desks(store: Store, second_store, serve_app, operator_page, message_id: str) -> TwoDesks:
    ticket_id = new_ticket(store, message_id)
    make_operator(store, "ana", name="Ana Souza")
    make_operator(store, "bruno", name="Bruno Reis")
    store_b = second_store(store)
    url_a, url_b = serve_app(browser_settings(), store), serve_app(browser_settings(), store_b)
    return TwoDesks(ticket_id, store_b, url_a, url_b, operator_page(url_a, "ana"), operator_page(url_b, "bruno"))


def wait_until(condition: Callable[[], object], timeout: float, what: str, page: Page | None = None):
    """Polls `condition` until it holds. With a `page`, waits through Playwright, so that the page's events (its
    dialogs) are handled meanwhile; a plain sleep would hold them up."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        if page is None:
            time.sleep(0.05)
        else:
            page.wait_for_timeout(50)


def event_kinds(store: Store, ticket_id: int) -> list[str]:
    with store.reading() as session:
        return list(session.scalars(select(Event.kind).where(Event.ticket_id == ticket_id).order_by(Event.id)))


def draft_body(store: Store, ticket_id: int, operator_id: int) -> str | None:
    """The saved draft, with the CRLF line ends of a posted form (a release, a claim) undone."""
    with store.reading() as session:
        body = session.scalar(select(ReplyDraft.body).where(ReplyDraft.ticket_id == ticket_id,
                                                            ReplyDraft.operator_id == operator_id))
    return None if body is None else body.replace("\r\n", "\n")


def ticket_status(store: Store, ticket_id: int) -> str:
    with store.reading() as session:
        return session.scalar(select(Ticket.status).where(Ticket.id == ticket_id))


def newest_message_id(store: Store, ticket_id: int) -> int:
    with store.reading() as session:
        return session.scalar(select(Message.id).where(Message.ticket_id == ticket_id).order_by(Message.id.desc()))


def api_post(base_url: str, path: str, token: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(f"{base_url}/api/v1{path}", data=json.dumps(payload).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


class Dialogs:
    """Answers the page's dialogs (the leave warning and the release question): accepted unless `accept` is
    False; each one's type is recorded in `seen`."""

    def __init__(self, page: Page) -> None:
        self.seen: list[str] = []
        self.accept = True
        page.on("dialog", self._answer)

    def _answer(self, dialog: Dialog) -> None:
        self.seen.append(dialog.type)
        if self.accept or dialog.type == "beforeunload":
            dialog.accept()
        else:
            dialog.dismiss()


# -- on both databases, two instances -------------------------------------------------------------------------

def test_a_claim_made_on_another_instance_locks_the_open_ticket_page_within_two_seconds(
        store, second_store, serve_app, operator_page):
    desks = two_desks(store, second_store, serve_app, operator_page, "lock@customer.example")
    ticket_id, ana, bruno = desks.ticket_id, desks.ana, desks.bruno

    bruno.goto(f"/tickets/{ticket_id}")
    expect(bruno.locator("#claim-bar")).to_have_attribute("data-state", "free")
    expect(bruno.locator("#claim-button")).to_be_visible()
    expect(bruno.locator("#reply-lock")).to_have_count(0)
    mark(bruno)

    claim_ticket(ana, ticket_id, "Ana Souza")
    expect(bruno.locator("#reply-lock")).to_have_text(lock("Ana Souza"), timeout=LIVE_MS)
    expect(bruno.locator("#claim-bar")).to_have_attribute("data-state", "other")
    expect(bruno.locator("#claim-bar")).to_have_attribute("data-holder", "Ana Souza")
    expect(bruno.locator("#claim-banner")).to_have_text(banner("Ana Souza"))
    expect(bruno.locator("#claim-button")).to_have_count(0)
    assert_updated_in_place(bruno, "Bruno's")

    # Ana releases (nothing typed: no question asked); Bruno's page offers the claim again.
    ana.click("#release-button")
    expect(ana.locator("#flash")).to_contain_text("Claim released")
    expect(bruno.locator("#claim-button")).to_be_visible(timeout=LIVE_MS)
    expect(bruno.locator("#claim-bar")).to_have_attribute("data-state", "free")
    expect(bruno.locator("#claim-banner")).to_have_text(re.compile(r"^\s*Not claimed\s*$"))
    expect(bruno.locator("#reply-lock")).to_have_count(0)
    assert_updated_in_place(bruno, "Bruno's")


def test_a_customer_message_polled_by_the_other_instance_appears_in_both_open_pages(
        store, second_store, serve_app, operator_page):
    desks = two_desks(store, second_store, serve_app, operator_page, "first@customer.example")
    ticket_id, ana, bruno = desks.ticket_id, desks.ana, desks.bruno

    ana.goto(f"/tickets/{ticket_id}")
    bruno.goto(f"/tickets/{ticket_id}")
    for page in (ana, bruno):
        expect(page.locator("#thread > article.message")).to_have_count(1)
        mark(page)
    # Each sees the other with the ticket open (presence, read about every second by each instance's feed).
    expect(ana.locator("#viewers")).to_have_text("Also viewing: Bruno Reis", timeout=LIVE_MS + 1_000)
    expect(bruno.locator("#viewers")).to_have_text("Also viewing: Ana Souza", timeout=LIVE_MS + 1_000)

    assert customer_writes_again(desks.store_b, "first@customer.example", "second@customer.example",
                                 "It is still not here, please help!") == ticket_id
    new_id = newest_message_id(store, ticket_id)
    for page in (ana, bruno):
        article = page.locator(f"#message-{new_id}")
        expect(article).to_be_visible(timeout=LIVE_MS)
        expect(article.locator("pre.text")).to_contain_text("It is still not here, please help!")
        expect(page.locator("#thread > article.message")).to_have_count(2)
        assert_updated_in_place(page)
    expect(ana.locator("#viewers")).to_have_text("Also viewing: Bruno Reis")
    expect(bruno.locator("#viewers")).to_have_text("Also viewing: Ana Souza")


def test_the_queue_shows_a_new_ticket_and_its_count_without_reloading(store, second_store, serve_app, operator_page):
    first = new_ticket(store, "queue1@customer.example", sender="one@customer.example", subject="Refund please")
    make_operator(store, "ana", name="Ana Souza")
    store_b = second_store(store)
    url_a = serve_app(browser_settings(), store)
    serve_app(browser_settings(), store_b)
    ana = operator_page(url_a, "ana")  # logged in, on the queue

    expect(ana.locator(f"#ticket-row-{first}")).to_be_visible()
    assert ana.title() == "(1) Needs answer · mailticket"
    mark(ana)

    second = new_ticket(store_b, "queue2@customer.example", sender="two@customer.example", subject="Wrong size")
    expect(ana.locator(f"#ticket-row-{second}")).to_be_visible(timeout=QUEUE_MS)
    expect(ana.locator(f"#ticket-row-{second} td.subject")).to_contain_text("Wrong size")
    expect(ana).to_have_title("(2) Needs answer · mailticket", timeout=QUEUE_MS)
    expect(ana.locator("#queue-list tr.ticket-row")).to_have_count(2)
    assert_updated_in_place(ana, "the queue")


def test_a_non_holders_status_change_is_refused_with_the_holders_name_until_an_admin_breaks_the_claim(
        store, second_store, serve_app, operator_page):
    desks = two_desks(store, second_store, serve_app, operator_page, "holder@customer.example")
    ticket_id, ana, bruno = desks.ticket_id, desks.ana, desks.bruno
    make_operator(store, "carla", name="Carla Admin", admin=True)
    with store.transaction() as session:
        bruno_token = new_token(session, "bruno")
    carla = operator_page(desks.url_a, "carla")

    claim_ticket(ana, ticket_id, "Ana Souza")
    bruno.goto(f"/tickets/{ticket_id}")
    expect(bruno.locator("#fields-lock")).to_contain_text("Only Ana Souza, who is answering, can change this ticket")
    bruno.select_option("#status-select", "pending")
    bruno.click("#status-form button[type=submit]")
    expect(bruno.locator("#flash-error")).to_have_text(re.compile(
        rf"^\s*Ana Souza is answering this ticket {UNTIL}: only they can change it now; "
        r"an admin can break the claim first\s*$"))
    assert ticket_status(store, ticket_id) == "open"
    mark(bruno)  # the refusal's page follows changes like any ticket page

    status, answer = api_post(desks.url_b, f"/tickets/{ticket_id}/status", bruno_token, {"status": "pending"})
    assert status == 409, answer
    assert answer["holder"] == "Ana Souza"
    assert answer["expires_at"] and "Ana Souza is answering" in answer["detail"]
    assert ticket_status(store, ticket_id) == "open"

    # The admin is refused too (she must break the claim first), then breaks it.
    carla.goto(f"/tickets/{ticket_id}")
    expect(carla.locator("#reply-lock")).to_have_text(lock("Ana Souza"))
    carla.select_option("#status-select", "pending")
    carla.click("#status-form button[type=submit]")
    expect(carla.locator("#flash-error")).to_contain_text("Ana Souza is answering this ticket")
    assert ticket_status(store, ticket_id) == "open"
    carla.click("#break-button")
    expect(carla.locator("#flash")).to_contain_text("Claim broken")
    expect(carla.locator("#claim-bar")).to_have_attribute("data-state", "free")
    # Bruno's open page follows: the fields are his to change now.
    expect(bruno.locator("#fields-lock")).to_have_count(0, timeout=LIVE_MS)
    expect(bruno.locator("#claim-bar")).to_have_attribute("data-state", "free")

    expect(bruno.locator("#claim-button")).to_be_visible()
    assert_updated_in_place(bruno, "Bruno's")

    bruno.select_option("#status-select", "pending")
    bruno.click("#status-form button[type=submit]")
    expect(bruno.locator("#flash")).to_contain_text("Status set to pending")
    assert ticket_status(store, ticket_id) == "pending"
    kinds = event_kinds(store, ticket_id)
    assert "broken" in kinds and kinds.index("broken") < kinds.index("status"), kinds


# -- SQLite only ------------------------------------------------------------------------------------------------

def test_an_untouched_claimed_page_loses_its_claim_and_typing_or_reading_keeps_it(sqlite_store, serve_app, operator_page):
    store = sqlite_store
    ticket_id = new_ticket(store, "idle@customer.example")
    ana_id = make_operator(store, "ana", name="Ana Souza")
    ana = operator_page(serve_app(browser_settings(ttl=4, heartbeat=1, idle_after=3), store), "ana")

    # Claimed, then left alone: the page renews for idle_after seconds, then lets the claim run out.
    claim_ticket(ana, ticket_id, "Ana Souza")
    claimed = claim_row(store, ticket_id)
    assert claimed.operator_id == ana_id
    wait_until(lambda: claim_row(store, ticket_id).expires_at < utcnow(), 15, "the untouched claim to run out")
    last = claim_row(store, ticket_id)
    assert last.token == claimed.token  # the same claim, merely not renewed any more
    renewals = event_kinds(store, ticket_id).count("renewed")
    assert renewals <= 4, f"renewed {renewals} times while nobody touched the page"
    # The page notices on its own that nobody holds the claim.
    expect(ana.locator("#claim-bar")).to_have_attribute("data-state", "free", timeout=LIVE_MS)
    expect(ana.locator("#claim-banner")).to_have_text(re.compile(r"^\s*Not claimed\s*$"))
    expect(ana.locator("#claim-warning")).to_contain_text("Nobody holds the claim now")
    ana.wait_for_timeout(1_500)  # a renewal would come within a heartbeat: none does
    assert claim_row(store, ticket_id).expires_at == last.expires_at

    # A fresh claim, and Ana types all along: the claim outlives its ttl twice over.
    claim_ticket(ana, ticket_id, "Ana Souza")
    token = claim_row(store, ticket_id).token
    body = ana.locator("#reply-body")
    started = time.monotonic()
    while time.monotonic() - started < 8.0:
        body.press("x")
        ana.wait_for_timeout(500)
    claim = claim_row(store, ticket_id)
    assert claim.operator_id == ana_id and claim.token == token
    assert claim.expires_at > utcnow(), "the claim ran out although Ana kept typing"
    expect(ana.locator("#claim-bar")).to_have_attribute("data-state", "mine")
    expect(ana.locator("#claim-warning")).to_be_hidden()

    # Reading the thread (the mouse wheel, nowhere near the form) keeps it too.
    ana.mouse.move(5, 5)
    started = time.monotonic()
    while time.monotonic() - started < 8.0:
        ana.mouse.wheel(0, 40 if int(time.monotonic() * 2) % 2 else -40)
        ana.wait_for_timeout(500)
    claim = claim_row(store, ticket_id)
    assert claim.token == token and claim.expires_at > utcnow(), "the claim ran out although Ana was reading"


def test_a_draft_survives_reload_release_and_a_lost_claim(sqlite_store, serve_app, operator_page):
    store = sqlite_store
    ticket_id = new_ticket(store, "draft@customer.example")
    ana_id = make_operator(store, "ana", name="Ana Souza")
    make_operator(store, "carla", name="Carla Admin", admin=True)
    base_url = serve_app(browser_settings(), store)
    ana = operator_page(base_url, "ana")
    dialogs = Dialogs(ana)

    claim_ticket(ana, ticket_id, "Ana Souza")
    ana.fill("#reply-body", DRAFT_TEXT)
    wait_until(lambda: draft_body(store, ticket_id, ana_id) == DRAFT_TEXT, 5, "the draft to be saved")

    # An admin breaks the claim: the open page warns, and the text stays where it is.
    with store.transaction() as session:
        claim_service.break_claim(session, ticket_id, operator_named(session, "carla"))
    expect(ana.locator("#claim-warning")).to_contain_text("Nobody holds the claim now. Your text is kept",
                                                          timeout=LIVE_MS)
    expect(ana.locator("#claim-bar")).to_have_attribute("data-state", "free")
    expect(ana.locator("#reply-send")).to_be_hidden()
    expect(ana.locator("#reply-body")).to_have_value(DRAFT_TEXT)

    # A reload brings it back (the leave warning, if the browser shows it, is accepted).
    ana.reload()
    expect(ana.locator("#reply-body")).to_have_value(DRAFT_TEXT)
    expect(ana.locator("#reclaim-button")).to_be_visible()
    # So does Ana's other browser.
    other = operator_page(base_url, "ana")
    other.goto(f"/tickets/{ticket_id}")
    expect(other.locator("#reply-body")).to_have_value(DRAFT_TEXT)
    other.close()

    # Claimed again (the claim button posts the text along), then released with the text: asked first,
    # and the text stays on the page, kept as the draft.
    ana.click("#claim-button")
    expect(ana.locator("#claim-bar")).to_have_attribute("data-state", "mine")
    expect(ana.locator("#reply-body")).to_have_value(DRAFT_TEXT)
    dialogs.seen.clear()
    ana.click("#release-button")
    expect(ana.locator("#flash")).to_contain_text("Claim released")
    assert dialogs.seen == ["confirm"]
    expect(ana.locator("#claim-bar")).to_have_attribute("data-state", "free")
    expect(ana.locator("#reply-body")).to_have_value(DRAFT_TEXT)
    assert claim_row(store, ticket_id).operator_id is None
    assert draft_body(store, ticket_id, ana_id) == DRAFT_TEXT

    # Answering "no" to the question keeps the claim.
    ana.click("#claim-button")
    expect(ana.locator("#claim-bar")).to_have_attribute("data-state", "mine")
    held = claim_row(store, ticket_id)
    dialogs.seen.clear()
    dialogs.accept = False
    ana.click("#release-button")
    wait_until(lambda: dialogs.seen, 5, "the release question", page=ana)
    assert dialogs.seen == ["confirm"]
    ana.wait_for_timeout(500)  # a release would have come by now
    expect(ana.locator("#claim-bar")).to_have_attribute("data-state", "mine")
    expect(ana.locator("#reply-body")).to_have_value(DRAFT_TEXT)
    claim = claim_row(store, ticket_id)
    assert (claim.operator_id, claim.token) == (ana_id, held.token)


def test_a_reply_written_before_a_newer_customer_message_is_held_on_the_first_send(
        sqlite_store, serve_app, operator_page):
    store = sqlite_store
    ticket_id = new_ticket(store, "held@customer.example")
    ana_id = make_operator(store, "ana", name="Ana Souza")
    ana = operator_page(serve_app(browser_settings(), store), "ana")

    claim_ticket(ana, ticket_id, "Ana Souza")
    ana.fill("#reply-body", DRAFT_TEXT)
    customer_writes_again(store, "held@customer.example", "held2@customer.example", "Actually, cancel the order.")
    newer = newest_message_id(store, ticket_id)

    ana.click("#reply-send")
    expect(ana.locator("#flash-error")).to_contain_text("the customer sent a new message while you were writing")
    expect(ana.locator(f"#message-{newer}")).to_have_class(re.compile(r"\bis-fresh\b"))
    expect(ana.locator(f"#message-{newer} .badge.fresh")).to_have_text("new while you were writing")
    expect(ana.locator(f"#message-{newer}")).to_contain_text("Actually, cancel the order.")
    expect(ana.locator("#reply-body")).to_have_value(DRAFT_TEXT)
    assert outbound(store, ticket_id) == []
    # The refused send changed nothing: the claim is still hers, and Send is offered again.
    expect(ana.locator("#claim-bar")).to_have_attribute("data-state", "mine")
    expect(ana.locator("#reply-send")).to_be_visible()

    ana.click("#reply-send")
    expect(ana.locator("#flash")).to_contain_text("Reply queued")
    assert outbound(store, ticket_id) == [(DRAFT_TEXT, ana_id, "queued")]
    assert draft_body(store, ticket_id, ana_id) is None


def test_closing_the_tab_releases_the_claim(sqlite_store, serve_app, operator_page):
    store = sqlite_store
    ticket_id = new_ticket(store, "close@customer.example")
    ana_id = make_operator(store, "ana", name="Ana Souza")
    ana = operator_page(serve_app(browser_settings(), store), "ana")

    claim_ticket(ana, ticket_id, "Ana Souza")
    assert claim_row(store, ticket_id).operator_id == ana_id
    ana.close()
    wait_until(lambda: claim_row(store, ticket_id).operator_id is None, 2, "the closed tab's claim to be released")
    assert event_kinds(store, ticket_id)[-1] == "released"


def test_closing_one_of_two_tabs_leaves_the_claim_to_the_other(sqlite_store, serve_app, operator_page):
    store = sqlite_store
    ticket_id = new_ticket(store, "tabs@customer.example")
    ana_id = make_operator(store, "ana", name="Ana Souza")
    first = operator_page(serve_app(browser_settings(), store), "ana")
    claim_ticket(first, ticket_id, "Ana Souza")
    second = first.context.new_page()  # the same browser, signed in: a second tab on the ticket
    second.goto(f"/tickets/{ticket_id}")
    expect(second.locator("#claim-bar")).to_have_attribute("data-state", "mine")
    for page in (first, second):  # each knows the id its closing beacon will name
        expect(page.locator("#live")).to_have_attribute("data-page-id", re.compile(r"^[0-9a-f]{32}$"))

    first.close()
    second.wait_for_timeout(1_000)  # the closed tab's beacon would have released it by now
    assert claim_row(store, ticket_id).operator_id == ana_id
    expect(second.locator("#claim-bar")).to_have_attribute("data-state", "mine")
    expect(second.locator("#reply-send")).to_be_visible()

    second.close()
    wait_until(lambda: claim_row(store, ticket_id).operator_id is None, 2, "the last tab's claim to be released")


# -- pages shown as the answer to a form post -------------------------------------------------------------------

@pytest.mark.parametrize("how", ["refused status change", "claimed with a draft"])
def test_a_ticket_page_shown_by_a_form_post_keeps_following_changes(how, sqlite_store, serve_app, operator_page):
    store = sqlite_store
    ticket_id = new_ticket(store, "stale@customer.example")
    ana_id = make_operator(store, "ana", name="Ana Souza")
    make_operator(store, "bruno", name="Bruno Reis")
    make_operator(store, "carla", name="Carla Admin", admin=True)
    base_url = serve_app(browser_settings(), store)
    ana = operator_page(base_url, "ana")
    Dialogs(ana)

    if how == "refused status change":
        bruno = operator_page(base_url, "bruno")
        claim_ticket(ana, ticket_id, "Ana Souza")
        bruno.goto(f"/tickets/{ticket_id}")
        bruno.select_option("#status-select", "pending")
        bruno.click("#status-form button[type=submit]")
        expect(bruno.locator("#flash-error")).to_contain_text("Ana Souza is answering this ticket")
        # Shown as the answer to the post, the page stands at the ticket's own address (a reload posts nothing).
        expect(bruno).to_have_url(re.compile(rf"/tickets/{ticket_id}$"))
        # Ana releases: Bruno's page should offer the claim, as any open ticket page does.
        ana.click("#release-button")
        expect(ana.locator("#flash")).to_contain_text("Claim released")
        expect(bruno.locator("#claim-button")).to_be_visible(timeout=LIVE_MS)
    else:
        # A draft on the ticket: the claim button posts the reply form, and the answer is the page itself.
        claim_ticket(ana, ticket_id, "Ana Souza")
        ana.fill("#reply-body", DRAFT_TEXT)
        wait_until(lambda: draft_body(store, ticket_id, ana_id) == DRAFT_TEXT, 5, "the draft to be saved")
        ana.click("#release-button")
        expect(ana.locator("#flash")).to_contain_text("Claim released")
        ana.click("#claim-button")
        expect(ana.locator("#claim-bar")).to_have_attribute("data-state", "mine")
        expect(ana).to_have_url(re.compile(rf"/tickets/{ticket_id}$"))
        # An admin breaks the claim: her page should warn, as it does when opened at /tickets/ID.
        with store.transaction() as session:
            claim_service.break_claim(session, ticket_id, operator_named(session, "carla"))
        expect(ana.locator("#claim-warning")).to_contain_text("Nobody holds the claim now", timeout=LIVE_MS)


def test_reloading_a_claimed_page_keeps_the_claim_and_the_text(sqlite_store, serve_app, operator_page):
    store = sqlite_store
    ticket_id = new_ticket(store, "reload@customer.example")
    ana_id = make_operator(store, "ana", name="Ana Souza")
    ana = operator_page(serve_app(browser_settings(), store), "ana")
    Dialogs(ana)  # accepts the leave warning of the reload

    claim_ticket(ana, ticket_id, "Ana Souza")
    ana.fill("#reply-body", DRAFT_TEXT)
    wait_until(lambda: draft_body(store, ticket_id, ana_id) == DRAFT_TEXT, 5, "the draft to be saved")
    ana.reload()  # F5: the closing page's beacon releases the claim, the page that comes back takes it again
    wait_until(lambda: event_kinds(store, ticket_id)[-2:] == ["released", "claimed"], LIVE_MS / 1000,
               "the claim released and taken again", page=ana)
    expect(ana.locator("#claim-bar")).to_have_attribute("data-state", "mine", timeout=LIVE_MS)
    expect(ana.locator("#reply-body")).to_have_value(DRAFT_TEXT)
    expect(ana.locator("#reply-send")).to_be_visible()
    assert claim_row(store, ticket_id).operator_id == ana_id

