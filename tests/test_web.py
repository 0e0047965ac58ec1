"""The operator pages in-process (TestClient) on real SQLite and PostgreSQL: login, CSRF, queue, claims, replies."""

from __future__ import annotations

import dataclasses
import html
import re
from datetime import timedelta
from email.message import EmailMessage

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from mailticket.config import WebSettings
from mailticket.db.models import NOTE, Attachment, Message, Operator, Outbox, Ticket
from mailticket.db.store import Store
from mailticket.service import actions, operators
from mailticket.service.status import change_status
from mailticket.service import claims as claim_service
from mailticket.service.ingest import ingest
from mailticket.web.app import create_app
from tests.factories import PASSWORD, SETTINGS, T0, WEB_SETTINGS, make_operator, make_ticket
from tests.mails import SUPPORT
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


class Browser:
    """One operator's browser: its own cookies and CSRF token."""

    def __init__(self, app) -> None:
        self.client = TestClient(app, follow_redirects=False)
        self.csrf = ""

    def get(self, path: str, **kwargs):
        return self.client.get(path, **kwargs)

    def post(self, path: str, data: dict | None = None, **kwargs):
        return self.client.post(path, data={"csrf_token": self.csrf, **(data or {})}, **kwargs)

    def put(self, path: str, json, *, csrf: bool = True):
        """A JSON PUT, as the page's script sends it: the CSRF token in X-CSRF-Token (unless `csrf` is False)."""
        return self.client.put(path, json=json, headers={"X-CSRF-Token": self.csrf} if csrf else {})

    def fresh_token(self, path: str = "/login") -> str:
        self.csrf = CSRF_FIELD.search(self.get(path).text).group(1)
        return self.csrf

    def log_in(self, username: str, password: str = PASSWORD):
        self.fresh_token("/login")
        answer = self.post("/login", {"username": username, "password": password})
        if answer.status_code == 303:
            self.fresh_token("/")
        return answer


def signed_in(app, store, username: str, *, admin: bool = False, name: str = "") -> Browser:
    make_operator(store, username, admin=admin, name=name)
    browser = Browser(app)
    assert browser.log_in(username).status_code == 303
    return browser


def element(page: str, element_id: str) -> str | None:
    """The opening tag and content of the element with this id (to its first closing tag)."""
    found = re.search(rf'<(\w+)[^>]*\bid="{element_id}"[^>]*>.*?</\1>', page, re.S)
    return found.group(0) if found else None


def reply_text(page: str) -> str:
    found = re.search(r'<textarea id="reply-body"[^>]*>\n?(.*?)</textarea>', page, re.S)
    assert found, "no reply form on the page"
    return html.unescape(found.group(1))


def claim_token(page: str) -> str:
    return re.search(r'name="claim_token" value="([^"]*)"', page).group(1)


def count(store, query) -> int:
    with store.reading() as session:
        return session.scalar(query)


def ingest_raw(store, raw: bytes) -> int:
    with store.transaction() as session:
        return ingest(session, raw, settings=SETTINGS, received_at=T0, now=T0, mailbox="support").ticket_id


def test_login_with_a_wrong_password_is_refused(app, store):
    make_operator(store, "ana")
    browser = Browser(app)
    answer = browser.log_in("ana", "not the password")
    assert answer.status_code == 401
    assert "wrong user name or password" in answer.text
    assert browser.get("/").headers["location"] == "/login?next=%2F"
    assert browser.log_in("ana").status_code == 303
    assert browser.get("/").status_code == 200


def test_a_form_post_without_the_csrf_token_is_refused(app, store):
    ticket = make_ticket(store)
    ana = signed_in(app, store, "ana")
    notes = select(func.count()).select_from(Message).where(Message.direction == NOTE)
    for refused in (
        ana.client.post(f"/tickets/{ticket}/note", data={"body": "no token"}),
        ana.client.post(f"/tickets/{ticket}/note", data={"body": "wrong token", "csrf_token": "x" * 43}),
        ana.post(f"/tickets/{ticket}/note", {"body": "other site"}, headers={"Origin": "https://evil.example"}),
        ana.client.post("/logout"),
    ):
        assert refused.status_code == 403
        assert "invalid or missing CSRF token" in refused.text
    assert count(store, notes) == 0
    assert ana.post(f"/tickets/{ticket}/note", {"body": "with the token"}).status_code == 303
    # With "Referrer-Policy: no-referrer" browsers send "Origin: null" from our own pages; the token decides.
    from_browser = ana.post(f"/tickets/{ticket}/note", {"body": "from a browser"}, headers={"Origin": "null"})
    assert from_browser.status_code == 303
    assert ana.post(f"/tickets/{ticket}/note", {"body": "same site"},
                    headers={"Origin": "http://testserver"}).status_code == 303
    assert count(store, notes) == 3


def test_the_queue_shows_only_tickets_that_need_an_answer_oldest_first(app, store):
    late = make_ticket(store, sender="c@customer.example", subject="Late question", at=T0 + timedelta(hours=2))
    early = make_ticket(store, sender="a@customer.example", subject="Early question", at=T0)
    middle = make_ticket(store, sender="b@customer.example", subject="Middle question", at=T0 + timedelta(hours=1))
    solved = make_ticket(store, sender="d@customer.example", subject="Solved long ago", at=T0 - timedelta(hours=5))
    answered = make_ticket(store, sender="e@customer.example", subject="Answered already", at=T0 - timedelta(hours=4))
    boss = make_operator(store, "boss")
    with store.transaction() as session:
        operator = session.get(Operator, boss)
        change_status(session, solved, "resolved", actor=operator, at=T0, settings=SETTINGS)
        held = claim_service.claim(session, answered, operator, 900)
        actions.reply(session, SETTINGS, answered, operator, "Done.", held.token)
    ana = signed_in(app, store, "ana")

    page = ana.get("/").text
    rows = re.findall(r'id="ticket-row-(\d+)"', page)
    assert rows == [str(early), str(middle), str(late)]
    assert "Solved long ago" not in page and "Answered already" not in page
    assert ">3 h</td>" in element(page, f"ticket-row-{early}")
    assert re.findall(r'id="ticket-row-(\d+)"', ana.get("/?view=resolved").text) == [str(solved)]
    assert str(answered) in re.findall(r'id="ticket-row-(\d+)"', ana.get("/?view=all").text)


def test_the_queue_shows_who_holds_each_claim(app, store):
    claimed = make_ticket(store, sender="a@customer.example", subject="Claimed one", at=T0)
    free = make_ticket(store, sender="b@customer.example", subject="Free one", at=T0 + timedelta(minutes=5))
    ana = signed_in(app, store, "ana")
    assert ana.post(f"/tickets/{claimed}/claim").status_code == 303
    bob = signed_in(app, store, "bob")

    page = bob.get("/").text
    row = element(page, f"ticket-row-{claimed}")
    assert re.search(r"Ana</span> until \d\d?:\d\d [AP]M", row)
    assert "free" in element(page, f"ticket-row-{free}")
    assert re.findall(r'id="ticket-row-(\d+)"', ana.get("/?view=mine").text) == [str(claimed)]


def test_a_second_operator_sees_the_claim_banner_and_no_reply_form(app, store):
    ticket = make_ticket(store)
    ana = signed_in(app, store, "ana")
    bob = signed_in(app, store, "bob")
    assert "Not claimed" in element(bob.get(f"/tickets/{ticket}").text, "claim-banner")

    ana.post(f"/tickets/{ticket}/claim")
    mine = ana.get(f"/tickets/{ticket}").text
    assert 'id="reply-form"' in mine and 'id="reply-send"' in mine and 'id="release-button"' in mine

    theirs = bob.get(f"/tickets/{ticket}").text
    assert re.search(r"Claimed by Ana until \d\d?:\d\d", element(theirs, "claim-banner"))
    # Locked for bob: who answers, and no button that could only fail.
    assert re.search(r"Ana is answering \(until \d\d?:\d\d [AP]M\)", element(theirs, "reply-lock"))
    assert 'id="claim-button"' not in theirs
    assert 'id="reply-form"' not in theirs and 'id="reply-body"' not in theirs
    assert 'id="break-button"' not in theirs  # bob is no admin
    refused = bob.post(f"/tickets/{ticket}/claim")
    assert refused.status_code == 409
    assert re.search(r"Claimed by Ana until \d\d?:\d\d", element(refused.text, "flash-error"))


def test_a_hand_made_reply_post_by_another_operator_is_refused(app, store):
    ticket = make_ticket(store)
    ana = signed_in(app, store, "ana")
    ana.post(f"/tickets/{ticket}/claim")
    stolen = claim_token(ana.get(f"/tickets/{ticket}").text)
    bob = signed_in(app, store, "bob")

    for token in ("", "made-up", stolen):
        refused = bob.post(f"/tickets/{ticket}/reply", {"body": "Bob's answer", "claim_token": token})
        assert refused.status_code == 409
        assert "Not sent" in element(refused.text, "flash-error")
        assert 'id="reply-send"' not in refused.text
    assert count(store, select(func.count()).select_from(Outbox)) == 0
    assert 'id="reply-send"' in ana.get(f"/tickets/{ticket}").text


def test_a_refused_reply_keeps_the_typed_text(app, store):
    ticket = make_ticket(store)
    ana = signed_in(app, store, "ana")
    boss = signed_in(app, store, "boss", admin=True)
    typed = 'Dear customer,\n\n<b>not markup</b> & "quotes" stay as typed.\n'
    ana.post(f"/tickets/{ticket}/claim")
    token = claim_token(ana.get(f"/tickets/{ticket}").text)
    assert 'id="break-button"' in boss.get(f"/tickets/{ticket}").text
    assert boss.post(f"/tickets/{ticket}/break").status_code == 303

    refused = ana.post(f"/tickets/{ticket}/reply", {"body": typed, "claim_token": token, "keep_claim": "true"})
    assert refused.status_code == 409
    assert "claim" in element(refused.text, "flash-error")
    assert reply_text(refused.text) == typed
    assert 'id="reclaim-button"' in refused.text and 'id="reply-send"' not in refused.text
    # The banner's claim button posts the reply form as well, so whichever is clicked, the text comes back.
    assert 'form="reply-form"' in element(refused.text, "claim-button")
    assert count(store, select(func.count()).select_from(Outbox)) == 0

    # "Claim again" posts the whole reply form to the claim address: the text comes back with the new claim.
    again = ana.post(f"/tickets/{ticket}/claim", {"body": typed, "claim_token": token, "keep_claim": "true"})
    assert again.status_code == 200
    assert reply_text(again.text) == typed
    assert 'id="reply-send"' in again.text and 'checked' in element(again.text, "reply-form")
    sent = ana.post(f"/tickets/{ticket}/reply",
                    {"body": reply_text(again.text), "claim_token": claim_token(again.text)})
    assert sent.status_code == 303
    assert "Reply queued" in ana.get(sent.headers["location"]).text
    assert count(store, select(func.count()).select_from(Outbox)) == 1


def test_a_disabled_operators_session_stops_working_at_once(app, store):
    ticket = make_ticket(store)
    ana = signed_in(app, store, "ana")
    assert ana.get("/").status_code == 200
    with store.transaction() as session:
        operators.disable(session, "ana")
    assert ana.get("/").headers["location"] == "/login?next=%2F"
    assert ana.get(f"/tickets/{ticket}").status_code == 303
    assert ana.post(f"/tickets/{ticket}/note", {"body": "still here?"}).status_code == 401
    assert count(store, select(func.count()).select_from(Message).where(Message.direction == NOTE)) == 0


def test_attachments_download_as_attachments(app, store):
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "ana@customer.example", SUPPORT, "Invoice attached"
    mail["Message-ID"] = "<invoice@customer.example>"
    mail.set_content("See the attachments.")
    mail.add_attachment(b"%PDF-1.4 not really", maintype="application", subtype="pdf", filename="Rechnung März.pdf")
    mail.add_attachment(b"<script>alert(1)</script>", maintype="text", subtype="html", filename="page.html")
    ticket = ingest_raw(store, bytes(mail))
    with store.reading() as session:
        ids = {a.filename: a.id for a in session.scalars(select(Attachment))}
    ana = signed_in(app, store, "ana")
    page = ana.get(f"/tickets/{ticket}").text
    assert f'href="/attachments/{ids["Rechnung März.pdf"]}"' in page

    pdf = ana.get(f"/attachments/{ids['Rechnung März.pdf']}")
    assert pdf.status_code == 200 and pdf.content == b"%PDF-1.4 not really"
    assert pdf.headers["content-disposition"].startswith("attachment;")
    assert "filename*=UTF-8''Rechnung%20M%C3%A4rz.pdf" in pdf.headers["content-disposition"]
    assert pdf.headers["x-content-type-options"] == "nosniff"
    page_html = ana.get(f"/attachments/{ids['page.html']}")
    assert page_html.headers["content-disposition"].startswith("attachment;")
    assert "sandbox" in page_html.headers["content-security-policy"]
    assert Browser(app).get(f"/attachments/{ids['page.html']}").status_code == 303
    assert ana.get("/attachments/99999").status_code == 404


def test_unknown_ticket_is_a_404_page(app, store):
    ana = signed_in(app, store, "ana")
    missing = ana.get("/tickets/99999")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("text/html")
    assert "there is no ticket 99999" in missing.text.lower()
    assert ana.post("/tickets/99999/note", {"body": "hello"}).status_code == 404
    assert ana.post("/tickets/99999/claim").status_code == 404


def test_bad_input_is_a_4xx_page_with_the_reason_never_a_500(app, store):
    ticket = make_ticket(store)
    ana = signed_in(app, store, "ana")
    for path in ("/tickets/abc", "/tickets/99999999999999999999", "/?view=everything", "/?page=0"):
        answer = ana.get(path)
        assert answer.status_code == 422, path
        assert "invalid input" in answer.text and "<html" in answer.text
    bad_status = ana.post(f"/tickets/{ticket}/status", {"status": "lost"})
    assert bad_status.status_code == 422 and "unknown status" in element(bad_status.text, "flash-error")
    empty_note = ana.post(f"/tickets/{ticket}/note", {"body": "   "})
    assert empty_note.status_code == 422 and "the note is empty" in empty_note.text
    assert ana.get("/no/such/page").status_code == 404
    assert ana.post(f"/tickets/{ticket}/note", {"body": "x" * (5 * 1024 * 1024)}).status_code == 413


def test_healthz_answers_when_the_database_does(app, store):
    answer = Browser(app).get("/healthz")
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}
    unreachable = Store("postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2")
    try:
        down = TestClient(create_app(WEB_SETTINGS, unreachable)).get("/healthz")
    finally:
        unreachable.dispose()
    assert down.status_code == 503


def test_html_mail_is_shown_in_a_sandboxed_frame_without_scripts(app, store):
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "ana@customer.example", SUPPORT, "Styled mail"
    mail["Message-ID"] = "<styled@customer.example>"
    mail.set_content("Hello there, plain version.")
    mail.add_alternative(
        '<p>Hello <b>there</b>, "quoted" &amp; more</p><script>alert("x")</script>'
        '<img src="https://tracker.example/pixel.gif" onerror="alert(1)">'
        '<a href="javascript:alert(2)" onclick="alert(3)">click</a></p>', subtype="html")
    ticket = ingest_raw(store, bytes(mail))
    ana = signed_in(app, store, "ana")
    answer = ana.get(f"/tickets/{ticket}")
    page = answer.text

    frame = re.search(r"<iframe[^>]*>", page).group(0)
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in frame
    assert "allow-scripts" not in page and "allow-same-origin" not in page
    srcdoc = re.search(r'srcdoc="([^"]*)"', frame).group(1)
    assert "<" not in srcdoc  # escaped into the attribute, never markup of our page
    shown = html.unescape(srcdoc)
    assert "<b>there</b>" in shown
    for banned in ("<script", "alert(", "onerror", "onclick", "javascript:", "tracker.example"):
        assert banned not in shown
    assert page.count("<script") == 1 and '<script src="/static/app.js"' in page
    assert "script-src 'self'" in answer.headers["content-security-policy"]


def test_every_page_has_the_security_headers_and_a_safe_session_cookie(app, store):
    make_operator(store, "ana")
    browser = Browser(app)
    login = browser.get("/login")
    assert login.headers["x-frame-options"] == "DENY"
    assert login.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors" not in login.headers["content-security-policy"]
    assert "object-src 'none'" in login.headers["content-security-policy"]
    cookie = login.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    secure = dataclasses.replace(WEB_SETTINGS, web=dataclasses.replace(WEB_SETTINGS.web,
                                                                        base_url="https://support.example"))
    assert "secure" in TestClient(create_app(secure, store)).get("/login").headers["set-cookie"].lower()
    assert Browser(app).get("/static/app.js").status_code == 200


def test_the_app_refuses_an_empty_secret_key(store):
    with pytest.raises(ValueError, match="secret_key"):
        create_app(dataclasses.replace(SETTINGS, web=WebSettings(secret_key="")), store)


def test_the_script_renews_the_claim_until_it_is_lost(app, store):
    ticket = make_ticket(store)
    ana = signed_in(app, store, "ana")
    boss = signed_in(app, store, "boss", admin=True)
    ana.post(f"/tickets/{ticket}/claim")
    page = ana.get(f"/tickets/{ticket}").text
    assert 'data-heartbeat="0"' in element(page, "reply-form") and 'id="claim-countdown"' in page
    body = {"claim_token": claim_token(page)}
    renewed = ana.client.post(f"/tickets/{ticket}/claim/renew", json=body, headers={"X-CSRF-Token": ana.csrf})
    assert renewed.status_code == 200 and renewed.json()["expires_at"]
    assert ana.client.post(f"/tickets/{ticket}/claim/renew", json=body).status_code == 403
    boss.post(f"/tickets/{ticket}/break")
    lost = ana.client.post(f"/tickets/{ticket}/claim/renew", json=body, headers={"X-CSRF-Token": ana.csrf})
    assert lost.status_code == 409 and "claim" in lost.json()["detail"]


def test_only_an_admin_may_break_a_claim(app, store):
    ticket = make_ticket(store)
    ana = signed_in(app, store, "ana")
    bob = signed_in(app, store, "bob")
    ana.post(f"/tickets/{ticket}/claim")
    assert bob.post(f"/tickets/{ticket}/break").status_code == 403
    assert bob.get("/admin").status_code == 403
    boss = signed_in(app, store, "boss", admin=True)
    assert f"/tickets/{ticket}/break" in boss.get("/admin").text
    assert boss.post(f"/tickets/{ticket}/break", {"next": "/admin"}).headers["location"] == "/admin"
    assert "Not claimed" in element(ana.get(f"/tickets/{ticket}").text, "claim-banner")


def test_customer_notes_and_ticket_fields_are_saved_from_the_ticket_page(app, store):
    ticket = make_ticket(store)
    ana = signed_in(app, store, "ana")
    with store.reading() as session:
        customer = session.get(Ticket, ticket).customer_id
    saved = ana.post(f"/customers/{customer}/notes", {"notes": "Prefers phone calls", "next": f"/tickets/{ticket}"})
    assert saved.headers["location"] == f"/tickets/{ticket}"
    assert ana.post(f"/tickets/{ticket}/priority", {"priority": "urgent"}).status_code == 303
    assert ana.post(f"/tickets/{ticket}/queue", {"queue": "billing"}).status_code == 303
    assert ana.post(f"/tickets/{ticket}/status", {"status": "pending"}).status_code == 303
    page = ana.get(f"/tickets/{ticket}").text
    assert "Prefers phone calls" in element(page, "customer-notes")
    assert 'id="ticket-status">pending' in page and "urgent" in page and 'value="billing"' in page
    assert "Prefers phone calls" in ana.get(f"/customers/{customer}").text
    assert ana.post("/customers/99999/notes", {"notes": "x"}).status_code == 404
