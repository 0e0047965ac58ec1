"""The operator pages in real Chromium against the real app on loopback (SPEC §6 claims, §8 web, §5 HTML mail).

What only a browser shows: two operators' own sessions, the script's heartbeat and countdown, the reply form
keeping typed text across refusals, and hostile HTML mail that must run nothing and fetch nothing.
The two-operator story runs on SQLite and PostgreSQL; the time-based stories on SQLite.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta
from email.message import EmailMessage
from email.policy import SMTP

import pytest
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from sqlalchemy import func, select, update

from mailticket.clock import utcnow
from mailticket.db.models import Claim, Event, Message, Outbox, Ticket
from mailticket.db.store import Store
from mailticket.service.claims import expire_claims
from mailticket.service.ingest import ingest
from tests.browser import banner, browser_settings, claim_row, claim_ticket, outbound
from tests.factories import SETTINGS, T0, make_operator, make_ticket
from tests.mails import SUPPORT

# The fixtures chromium, serve_app, new_context, operator_page, request_recorder and fast_passwords
# come from tests/browser.py, registered in tests/conftest.py.
pytestmark = pytest.mark.usefixtures("fast_passwords")

# The expiry stories: claims of a few minutes, whose time the tests run out (run_out) instead of waiting.
SHORT_TTL = 180.0
# Past the expiry by this much, so clocks a few ms apart cannot decide the outcome.
EXPIRY_MARGIN = 1.0
HEARTBEAT_TTL = 60.0
HEARTBEAT = 0.5
# A bound only a broken page reaches while the test waits for its renewals.
PATIENCE = 30.0
# What an operator may type: several lines, indentation, markup-looking text, entities, non-ASCII, trailing
# spaces. Nothing of it may be escaped, trimmed or lost when a refusal shows it again.
TYPED_TEXT = "\n".join([
    "Hello Ana,",
    "",
    "  your parcel 1234 left our warehouse on Monday; the tracking page says:",
    "    > \"in transit\" — ETA Thursday   ",
    "</textarea><script>window.pwned = 1</script> {{ not a template }} &amp; <b>not bold</b>",
    "Grüße, ünïcödé ✓ 📦",
    *(f"Line {n}: we are sorry for the delay and will keep you posted." for n in range(40)),
    "Kind regards,",
    "Support  ",
])


def ticket_state(store: Store, ticket_id: int) -> dict:
    """Everything a refused reply or claim must leave as it was."""
    with store.reading() as session:
        ticket = session.get(Ticket, ticket_id)
        claim = session.get(Claim, ticket_id)
        return {
            "ticket": (ticket.status, ticket.waiting_since, ticket.updated_at, ticket.first_response_at,
                       ticket.handle_seconds, ticket.resolved_at),
            "claim": claim and (claim.operator_id, claim.token, claim.fence, claim.claimed_at, claim.expires_at),
            "messages": session.scalar(select(func.count()).select_from(Message)
                                       .where(Message.ticket_id == ticket_id)),
            "outbox": session.scalar(select(func.count()).select_from(Outbox)),
        }


def events(store: Store, ticket_id: int, kind: str) -> list[Event]:
    with store.reading() as session:
        return list(session.scalars(select(Event).where(Event.ticket_id == ticket_id, Event.kind == kind)))


def run_out(store: Store, ticket_id: int, page: Page) -> None:
    """The claim's time runs out without the test waiting for it: its expiry moves into the past in the database,
    and the page's clock (installed by `ticking`) moves past it, as if the minutes had gone by."""
    with store.transaction() as session:
        session.execute(update(Claim).where(Claim.ticket_id == ticket_id)
                        .values(expires_at=utcnow() - timedelta(seconds=EXPIRY_MARGIN)))
    page.clock.fast_forward(int((SHORT_TTL + EXPIRY_MARGIN) * 1000))


def ticking(page: Page) -> Page:
    """The page with a clock the test moves (Playwright's clock), installed before the ticket page loads."""
    page.clock.install()
    return page


def post_from_page(page: Page, path: str, fields: dict[str, str]) -> tuple[int, str]:
    """A hand-made form POST from inside this operator's page: its cookies, its origin."""
    return page.evaluate(
        """async ([path, fields]) => {
               const answer = await fetch(path, {method: "POST", body: new URLSearchParams(fields),
                                                 credentials: "same-origin", redirect: "manual"});
               return [answer.status, await answer.text()];
           }""",
        [path, fields],
    )


def test_two_operators_cannot_answer_the_same_ticket(store, serve_app, operator_page):
    ticket_id = make_ticket(store, subject="Order 1234 never arrived", message_id="story@customer.example")
    make_operator(store, "ana", name="Ana")
    make_operator(store, "bruno", name="Bruno")
    base_url = serve_app(browser_settings(), store)
    ana = operator_page(base_url, "ana")
    bruno = operator_page(base_url, "bruno")

    ana.goto(f"/tickets/{ticket_id}")
    expect(ana.locator("#claim-banner")).to_have_text("Not claimed")
    claim_ticket(ana, ticket_id, "Ana")
    before = ticket_state(store, ticket_id)
    assert before["claim"][0] is not None

    bruno.goto(f"/tickets/{ticket_id}")
    expect(bruno.locator("#claim-banner")).to_have_text(banner("Ana"))
    expect(bruno.locator("#reply-form")).to_have_count(0)
    expect(bruno.locator("#reply-send")).to_have_count(0)

    # His reply screen is locked: it says who answers, and offers no "Claim" button that could only fail.
    expect(bruno.locator("#reply-lock")).to_have_text(re.compile(r"^Ana is answering \(until \d\d?:\d\d [AP]M\)$"))
    expect(bruno.locator("#claim-button")).to_have_count(0)
    # A hand-made claim is refused all the same, and says who holds the ticket.
    csrf = bruno.locator("#note-form input[name=csrf_token]").input_value()
    status, answer = post_from_page(bruno, f"/tickets/{ticket_id}/claim", {"csrf_token": csrf})
    assert status == 409 and re.search(r"Claimed by Ana until \d\d?:\d\d [AP]M", answer)

    # Hand-made replies with his own valid CSRF token: no claim token, a made-up one, and even Ana's real one.
    for token in ("", "made-up-token", before["claim"][1]):
        status, answer = post_from_page(bruno, f"/tickets/{ticket_id}/reply",
                                        {"csrf_token": csrf, "claim_token": token, "body": "Bruno's answer"})
        # (A status of 0 is the opaque answer to a redirect: the reply was accepted.)
        assert 400 <= status < 500, (token, status)
        # Refused by the claim check, not by the CSRF check: the token above was good.
        assert "Not sent" in answer and "CSRF" not in answer, (token, answer)
    assert outbound(store, ticket_id) == []
    assert ticket_state(store, ticket_id) == before

    # Ana, who holds the claim, answers; hers is the only reply, and the ticket is free again.
    ana.fill("#reply-body", "Your parcel is on its way.")
    ana.click("#reply-send")
    expect(ana.locator("#flash")).to_contain_text("Reply queued")
    assert [(text, status) for text, _, status in outbound(store, ticket_id)] == [
        ("Your parcel is on its way.", "queued")]
    bruno.goto(f"/tickets/{ticket_id}")
    expect(bruno.locator("#claim-banner")).to_have_text("Not claimed")


def test_an_expired_claim_refuses_the_send_and_keeps_the_typed_text(sqlite_store, serve_app, operator_page):
    store = sqlite_store
    ticket_id = make_ticket(store, message_id="expiry@customer.example")
    make_operator(store, "ana", name="Ana")
    make_operator(store, "bruno", name="Bruno")
    base_url = serve_app(browser_settings(ttl=SHORT_TTL), store)
    # Bruno works on a second instance of the app on the same database, whose claims last the usual
    # 15 minutes: his takeover cannot lapse while the test looks at Ana's page.
    bruno_url = serve_app(browser_settings(), store)
    ana = ticking(operator_page(base_url, "ana"))
    bruno = operator_page(bruno_url, "bruno")

    claim_ticket(ana, ticket_id, "Ana")
    ana.fill("#reply-body", TYPED_TEXT)
    run_out(store, ticket_id, ana)
    # The page itself says so before the operator even tries, takes its Send button away and keeps the text.
    expect(ana.locator("#claim-warning")).to_contain_text("Nobody holds the claim now")
    expect(ana.locator("#reply-send")).to_be_hidden()
    expect(ana.locator("#reply-body")).to_have_value(TYPED_TEXT)

    # Posted all the same (as a page without the script would), the reply is refused with the reason.
    ana.evaluate("document.getElementById('reply-form').requestSubmit()")
    expect(ana.locator("#flash-error")).to_contain_text("Not sent: your claim has expired")
    expect(ana.locator("#reply-body")).to_have_value(TYPED_TEXT)
    expect(ana.locator("#reply-send")).to_have_count(0)
    expect(ana.locator("#reclaim-button")).to_be_visible()
    assert outbound(store, ticket_id) == []

    # The claim is free: Bruno takes it over.
    bruno.goto(f"/tickets/{ticket_id}")
    expect(bruno.locator("#claim-banner")).to_have_text("Not claimed")
    bruno.click("#claim-button")
    expect(bruno.locator("#flash")).to_contain_text("Claimed until")
    expect(bruno.locator("#claim-banner")).to_have_text(banner("Bruno"))
    expect(bruno.locator("#reply-form")).to_be_visible()
    assert [e.detail for e in events(store, ticket_id, "expired")] == ["taken over by bruno"]

    # Ana, still on her refused page, tries to claim again: told Bruno has it, and her text is still there.
    ana.click("#reclaim-button")
    expect(ana.locator("#flash-error")).to_have_text(banner("Bruno"))
    expect(ana.locator("#claim-banner")).to_have_text(banner("Bruno"))
    expect(ana.locator("#reply-not-held")).to_contain_text("Bruno holds the claim now")
    expect(ana.locator("#reply-body")).to_have_value(TYPED_TEXT)
    expect(ana.locator("#reply-send")).to_have_count(0)
    expect(ana.locator("#reclaim-button")).to_have_count(0)
    # A fresh look at the ticket shows Bruno's claim, and her text kept as her draft, which cannot be sent.
    ana.goto(f"/tickets/{ticket_id}")
    expect(ana.locator("#claim-banner")).to_have_text(banner("Bruno"))
    expect(ana.locator("#reply-lock")).to_contain_text("Bruno is answering")
    expect(ana.locator("#reply-body")).to_have_value(TYPED_TEXT)
    expect(ana.locator("#reply-send")).to_have_count(0)
    assert outbound(store, ticket_id) == []


def test_a_refused_operator_can_claim_again_and_send_the_kept_text(sqlite_store, serve_app, operator_page):
    store = sqlite_store
    ticket_id = make_ticket(store, message_id="reclaim@customer.example")
    ana_id = make_operator(store, "ana", name="Ana")
    base_url = serve_app(browser_settings(ttl=SHORT_TTL), store)
    ana = ticking(operator_page(base_url, "ana"))

    claim_ticket(ana, ticket_id, "Ana")
    ana.fill("#reply-body", TYPED_TEXT)
    run_out(store, ticket_id, ana)
    expect(ana.locator("#claim-warning")).to_contain_text("Nobody holds the claim now")

    # "Claim to reply", offered as soon as the claim ran out, posts the text with it.
    ana.click("#claim-button")
    expect(ana.locator("#claim-banner")).to_have_text(banner("Ana"))
    expect(ana.locator("#flash-error")).to_have_count(0)
    expect(ana.locator("#reply-body")).to_have_value(TYPED_TEXT)
    ana.click("#reply-send")
    expect(ana.locator("#flash")).to_contain_text("Reply queued")
    expect(ana.locator("#claim-banner")).to_have_text("Not claimed")

    assert outbound(store, ticket_id) == [(TYPED_TEXT, ana_id, "queued")]
    with store.reading() as session:
        assert session.scalar(select(Ticket.waiting_since).where(Ticket.id == ticket_id)) is None


def test_the_heartbeat_keeps_the_claim_alive_while_the_form_is_open(sqlite_store, serve_app, operator_page):
    store = sqlite_store
    ticket_id = make_ticket(store, message_id="heartbeat@customer.example")
    ana_id = make_operator(store, "ana", name="Ana")
    make_operator(store, "bruno", name="Bruno")
    base_url = serve_app(browser_settings(ttl=HEARTBEAT_TTL, heartbeat=HEARTBEAT), store)
    ana = operator_page(base_url, "ana")
    bruno = operator_page(base_url, "bruno")

    claim_ticket(ana, ticket_id, "Ana")
    first_expiry = claim_row(store, ticket_id).expires_at
    countdown = ana.locator("#claim-countdown")
    expect(countdown).to_have_text(re.compile(r"^Your claim expires in [01]:\d\d\.$"))
    ana.fill("#reply-body", "Thanks for waiting, here is the answer.")

    # The page renews the claim every HEARTBEAT seconds while the form is open.
    deadline = time.monotonic() + PATIENCE
    while len(events(store, ticket_id, "renewed")) < 3:
        assert time.monotonic() < deadline, "the page did not renew its claim"
        time.sleep(0.05)

    # Each renewal moved the expiry on: when the first expiry comes, the claim-expiry job leaves it alone.
    claim = claim_row(store, ticket_id)
    assert claim.operator_id == ana_id and claim.expires_at > first_expiry
    with store.transaction() as session:
        assert expire_claims(session, now=first_expiry + timedelta(milliseconds=1)) == 0
    assert claim_row(store, ticket_id).operator_id == ana_id
    expect(countdown).to_have_text(re.compile(r"^Your claim expires in [01]:\d\d\.$"))
    expect(ana.locator("#claim-warning")).to_be_hidden()
    bruno.goto(f"/tickets/{ticket_id}")
    expect(bruno.locator("#claim-banner")).to_have_text(banner("Ana"))

    ana.click("#reply-send")
    expect(ana.locator("#flash")).to_contain_text("Reply queued")
    assert outbound(store, ticket_id) == [("Thanks for waiting, here is the answer.", ana_id, "queued")]


HOSTILE_SUBJECT = "<img src=x onerror=alert(1)> help"
HOSTILE_NAME = "<script>alert(1)</script>"
MARK = "MT-PWNED"
# The mail's links are on screen once its text is; a click that waits longer found the frame gone.
CLICK_TIMEOUT_MS = 2_000
HOSTILE_HTML = """\
<html><head>
<meta http-equiv="refresh" content="0;url={L}/meta-refresh">
<base href="{L}/base/">
<link rel="stylesheet" href="{L}/link.css">
<link rel="preconnect" href="{L}">
<style>@import url({L}/import.css); body {{ background: url({L}/css-leak) }}</style>
<script>window.parent.pwned = 1; window.top.pwned = 1; document.title = "{MARK}"; console.log("{MARK}-script");
new Image().src = "{L}/script-image"; alert("{MARK}");</script>
<script src="{L}/remote.js"></script>
</head>
<body background="{L}/body-background.png" onload="console.log('{MARK}-onload'); window.top.pwned = 1">
<p style="background-image: url({L}/inline-style.png)">Hello, I cannot log in to my account.</p>
<img src="{L}/remote.png" alt="tracking pixel">
<img src="//{HOST}/protocol-relative.png">
<img src="x" onerror="console.log('{MARK}-onerror'); window.top.pwned = 1">
<img srcset="{L}/srcset.png 1x">
<img src="data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg'><image href='{L}/svg-in-data.png'/></svg>">
<picture><source srcset="{L}/picture.png"><img src="cid:nothing"></picture>
<video poster="{L}/poster.png" src="{L}/video.mp4" autoplay></video>
<audio src="{L}/audio.mp3" autoplay></audio>
<object data="{L}/object"></object><embed src="{L}/embed">
<iframe src="{L}/iframe"></iframe>
<svg><image href="{L}/svg-image.png"/><script>console.log("{MARK}-svg")</script></svg>
<math><mtext><table><mglyph><style><img src="{L}/mxss.png" onerror="console.log('{MARK}-mxss')">
</style></mglyph></table></mtext></math>
<table background="{L}/table.png"><tr><td background="{L}/cell.png">a table cell</td></tr></table>
<form action="{L}/form" method="post"><input name="q" value="x"><input type="image" src="{L}/input.png">
<button type="submit">Submit this form</button></form>
<p><a href="javascript:console.log('{MARK}-js-link'); window.top.pwned = 1">a javascript link</a></p>
<p><a href="jav&#x09;ascript:alert('{MARK}')">an obfuscated link</a></p>
<p><a href="data:text/html,<script>alert('{MARK}')</script>">a data link</a></p>
<p><a href="http://127.0.0.1:1/" ping="{L}/ping" target="_top">a link that pings</a></p>
</body></html>
"""


def hostile_mail(recorder_host: str, recorder_port: int) -> bytes:
    mail = EmailMessage()
    mail["From"] = f'"{HOSTILE_NAME}" <mallory@attacker.example>'
    mail["To"] = SUPPORT
    mail["Subject"] = HOSTILE_SUBJECT
    mail["Message-ID"] = "<hostile@attacker.example>"
    mail["Date"] = "Mon, 02 Nov 2026 10:00:00 +0000"
    mail.set_content("Hello, I cannot log in to my account.")
    recorder = f"{recorder_host}:{recorder_port}"
    mail.add_alternative(HOSTILE_HTML.format(L=f"http://{recorder}", HOST=recorder, MARK=MARK), subtype="html")
    return mail.as_bytes(policy=SMTP)


@pytest.mark.parametrize("csp", ["enforced", "bypassed"])
def test_hostile_html_mail_executes_nothing_and_loads_nothing(
        csp, sqlite_store, serve_app, operator_page, request_recorder):
    """Sanitiser and sandbox must hold on their own: with the CSP bypassed too, nothing runs, nothing loads."""
    store = sqlite_store
    with store.transaction() as session:
        ticket_id = ingest(session, hostile_mail(request_recorder.host, request_recorder.port), settings=SETTINGS,
                           received_at=T0, now=T0, mailbox="support").ticket_id
    make_operator(store, "ana", name="Ana")
    base_url = serve_app(browser_settings(), store)
    page = operator_page(base_url, "ana", bypass_csp=csp == "bypassed")
    dialogs, console, requests, popups = [], [], [], []
    page.context.on("request", lambda request: requests.append(request.url))
    page.context.on("page", lambda popup: popups.append(popup.url))
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("console", lambda message: console.append(message.text))
    page.on("pageerror", lambda error: console.append(str(error)))

    page.goto(f"/tickets/{ticket_id}")
    frame = page.frame_locator("iframe.mail-html")
    expect(frame.get_by_text("Hello, I cannot log in to my account.")).to_be_visible()
    # The hostile header fields are shown as text.
    expect(page.locator("h1")).to_contain_text(HOSTILE_SUBJECT)
    expect(page.locator("article.message .from")).to_have_text(HOSTILE_NAME)
    mail_frame = next(f for f in page.frames if f.parent_frame is page.main_frame)
    navigations = []
    page.on("framenavigated", lambda f: navigations.append(f.url) if f is mail_frame else None)
    frame_state = mail_frame.evaluate("() => [location.href, window.pwned, document.title, document.scripts.length]")
    unclickable = []
    for text in ("a javascript link", "an obfuscated link", "a data link", "Submit this form"):
        try:
            frame.get_by_text(text).click(no_wait_after=True, timeout=CLICK_TIMEOUT_MS)
        except PlaywrightTimeoutError:  # an earlier click led the frame away: reported below with the rest
            unclickable.append(text)
    # Last: a real link, whose ping would tell the sender the mail was read. The sanitiser makes every
    # link open in a new tab (never in the mail frame, whatever target the mail asked for), with no ping.
    with page.context.expect_page() as opened:
        frame.get_by_text("a link that pings").click(no_wait_after=True)
    opened.value.wait_for_load_state()
    link_tab = opened.value.url
    mail_frame.wait_for_load_state("networkidle")

    recorder = f"{request_recorder.host}:{request_recorder.port}"
    observed = {
        "mail frame (url, pwned, title, scripts)": frame_state,
        "links that could not be clicked": unclickable,
        "mail frame navigations": navigations,
        "dialogs": dialogs,
        "new tabs": len(popups),
        "the link's tab": link_tab in ("http://127.0.0.1:1/", "chrome-error://chromewebdata/"),
        "operator's window (pwned, title hijacked)": page.evaluate(
            "() => [window.pwned, document.title.includes('PWNED')]"),
        "console lines with the marker": [text for text in console if MARK in text],
        "browser requests to the recorder": [url for url in requests if recorder in url],
        "what reached the recorder": request_recorder.seen(),
        # Not even blocked by the CSP: the sanitiser removed every remote reference (a CSP refusal is logged).
        "console lines naming the recorder": [text for text in console if recorder in text],
    }
    assert observed == {
        "mail frame (url, pwned, title, scripts)": ["about:srcdoc", None, "", 0],
        "mail frame navigations": [],
        "links that could not be clicked": [],
        "dialogs": [],
        # Only the real link's tab, on its closed port.
        "new tabs": 1,
        "the link's tab": True,
        "operator's window (pwned, title hijacked)": [None, False],
        "console lines with the marker": [],
        "browser requests to the recorder": [],
        "what reached the recorder": [],
        "console lines naming the recorder": [],
    }


@pytest.mark.parametrize("tampering", ["removed", "altered"])
def test_a_form_post_without_the_csrf_token_is_refused(tampering, sqlite_store, serve_app, operator_page):
    store = sqlite_store
    ticket_id = make_ticket(store, message_id="csrf@customer.example")
    make_operator(store, "ana", name="Ana")
    base_url = serve_app(browser_settings(), store)
    ana = operator_page(base_url, "ana")
    ana.goto(f"/tickets/{ticket_id}")
    before = ticket_state(store, ticket_id)

    ana.evaluate(
        """(tampering) => {
               const field = document.querySelector("#claim-form input[name=csrf_token]");
               if (tampering === "removed") { field.remove(); } else { field.value = field.value.slice(0, -2) + "xx"; }
           }""",
        tampering,
    )
    with ana.expect_response(f"{base_url}/tickets/{ticket_id}/claim") as answer:
        ana.click("#claim-button")
    assert answer.value.status == 403
    expect(ana.locator("#error-page h1")).to_contain_text("Not allowed")
    expect(ana.locator("#error-message")).to_have_text("invalid or missing CSRF token")
    assert ticket_state(store, ticket_id) == before
    assert events(store, ticket_id, "claimed") == []

    # The same click with the page's own token works: the token alone made the difference.
    claim_ticket(ana, ticket_id, "Ana")


def test_the_queue_shows_who_holds_each_claim(sqlite_store, serve_app, operator_page):
    store = sqlite_store
    ana_ticket = make_ticket(store, sender="one@customer.example", subject="Refund please", message_id="q1@c.example")
    bruno_ticket = make_ticket(store, sender="two@customer.example", subject="Wrong size", message_id="q2@c.example")
    free_ticket = make_ticket(store, sender="three@customer.example", subject="Invoice", message_id="q3@c.example")
    make_operator(store, "ana", name="Ana Lima")
    make_operator(store, "bruno", name="Bruno")
    make_operator(store, "carla", name="Carla")
    base_url = serve_app(browser_settings(), store)
    ana = operator_page(base_url, "ana")
    bruno = operator_page(base_url, "bruno")
    carla = operator_page(base_url, "carla")

    claim_ticket(ana, ana_ticket, "Ana Lima")
    claim_ticket(bruno, bruno_ticket, "Bruno")

    carla.goto("/")
    until = r" until \d\d?:\d\d [AP]M$"
    expect(carla.locator(f"#ticket-row-{ana_ticket} td.claim")).to_have_text(re.compile(r"^Ana Lima" + until))
    expect(carla.locator(f"#ticket-row-{bruno_ticket} td.claim")).to_have_text(re.compile(r"^Bruno" + until))
    expect(carla.locator(f"#ticket-row-{free_ticket} td.claim")).to_have_text("free")
    expect(carla.locator(f"#ticket-row-{ana_ticket}")).to_have_class(re.compile(r"\bclaimed\b"))
    expect(carla.locator(f"#ticket-row-{free_ticket}")).not_to_have_class(re.compile(r"\bclaimed\b"))

    # Released by a reply, the ticket shows as free.
    ana.fill("#reply-body", "Refund on its way.")
    ana.click("#reply-send")
    expect(ana.locator("#flash")).to_contain_text("Reply queued")
    carla.goto("/?view=all")
    expect(carla.locator(f"#ticket-row-{ana_ticket} td.claim")).to_have_text("free")
    expect(carla.locator(f"#ticket-row-{bruno_ticket} td.claim")).to_have_text(re.compile(r"^Bruno" + until))


def test_an_operator_finds_a_ticket_by_a_portuguese_word_typed_without_accents(sqlite_store, serve_app,
                                                                                operator_page):
    store = sqlite_store
    wanted = make_ticket(store, sender="maria@customer.example", subject="Pedido 4411",
                         body="Quero fazer a devolução do tênis, veio com defeito.", message_id="s1@c.example")
    other = make_ticket(store, sender="joao@customer.example", subject="Pedido 4412",
                        body="Quando chega o meu pedido?", message_id="s2@c.example")
    make_operator(store, "ana", name="Ana Lima")
    ana = operator_page(serve_app(browser_settings(), store), "ana")
    ana.goto("/")
    ana.fill("#top-search-q", "devolucao tenis")
    ana.press("#top-search-q", "Enter")
    expect(ana.locator(f"#search-row-{wanted}")).to_be_visible()
    expect(ana.locator(f"#search-row-{other}")).to_have_count(0)
    ana.click(f"#search-row-{wanted} td.subject a")
    expect(ana.locator("h1")).to_contain_text("Pedido 4411")
