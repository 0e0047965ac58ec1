"""Canned replies: the admin page (list, add, edit, delete) in-process on SQLite and PostgreSQL, the reply form's
Insert without JavaScript, and the whole story in Chromium: an admin writes one, an operator inserts, edits, sends."""

from __future__ import annotations

import dataclasses
import html
import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from mailticket.config import ClaimSettings, WebSettings
from mailticket.db.models import OUT, CannedReply, Message, Outbox
from mailticket.db.store import Store
from mailticket.service import canned
from tests.factories import SETTINGS, make_operator, make_ticket
from tests.test_web import claim_token, element, reply_text, signed_in

pytestmark = pytest.mark.usefixtures("fast_passwords")

CUSTOMER = "Ana Souza <ana@customer.example>"
TEMPLATE = "Hello {customer_name},\n\nyour ticket {ticket_number} is on its way.\n\nBest, {operator_name}"


def filled(ticket: int, operator: str) -> str:
    return f"Hello Ana Souza,\n\nyour ticket {ticket} is on its way.\n\nBest, {operator}"


def stored(store: Store) -> list[tuple[str, str]]:
    with store.reading() as session:
        return [(r.title, r.body) for r in session.scalars(select(CannedReply).order_by(CannedReply.title))]


def add(admin, title: str, body: str):
    return admin.post("/admin/canned", {"title": title, "body": body})


# Filling placeholders (pure)

def test_placeholders_are_filled_and_other_braces_are_left_as_written():
    text = canned.fill("{customer_name} / {ticket_number} / {operator_name} / {unknown} {", customer_name="Ana",
                       ticket_number="7", operator_name="Olga")
    assert text == "Ana / 7 / Olga / {unknown} {"


# The admin page

def test_an_admin_adds_edits_and_deletes_canned_replies(app, store):
    admin = signed_in(app, store, "boss", admin=True)
    assert admin.get("/admin").text.count('href="/admin/canned"') == 1
    assert "No canned replies yet" in admin.get("/admin/canned").text

    assert add(admin, "  Shipping   delay ", "It ships {ticket_number}.").status_code == 303
    assert add(admin, "Refund", "Refunded.").status_code == 303
    assert stored(store) == [("Refund", "Refunded."), ("Shipping delay", "It ships {ticket_number}.")]
    listing = admin.get("/admin/canned").text
    assert "Shipping delay" in element(listing, "canned-list") and "Canned reply &#39;Refund&#39; saved" in listing

    with store.reading() as session:
        shipping = session.scalar(select(CannedReply.id).where(CannedReply.title == "Shipping delay"))
    editing = admin.get(f"/admin/canned/{shipping}").text
    assert f'action="/admin/canned/{shipping}"' in editing and "It ships {ticket_number}." in editing
    assert admin.post(f"/admin/canned/{shipping}", {"title": "Late parcel", "body": "Sorry!"}).status_code == 303
    assert stored(store) == [("Late parcel", "Sorry!"), ("Refund", "Refunded.")]

    assert admin.post(f"/admin/canned/{shipping}/delete").status_code == 303
    assert stored(store) == [("Refund", "Refunded.")]
    assert admin.post(f"/admin/canned/{shipping}/delete").status_code == 404


@pytest.mark.parametrize(("title", "body", "reason"), [
    ("", "text", "the title is empty"),
    ("Title", "   ", "the text is empty"),
    ("Refund", "another", "already called"),
])
def test_a_bad_canned_reply_is_refused_and_the_typed_text_kept(app, store, title, body, reason):
    admin = signed_in(app, store, "boss", admin=True)
    add(admin, "Refund", "Refunded.")
    refused = add(admin, title, body)
    assert refused.status_code == 422 and reason in html.unescape(refused.text)
    assert body.strip() in html.unescape(element(refused.text, "canned-body"))
    assert stored(store) == [("Refund", "Refunded.")]


def test_operators_cannot_see_or_change_canned_replies_and_forms_need_the_csrf_token(app, store):
    operator = signed_in(app, store, "olga")
    assert operator.get("/admin/canned").status_code == 403
    assert add(operator, "Sneaky", "text").status_code == 403
    admin = signed_in(app, store, "boss", admin=True)
    assert admin.client.post("/admin/canned", data={"title": "No token", "body": "x"}).status_code == 403
    assert stored(store) == []


# The reply form without JavaScript

def test_insert_without_javascript_appends_the_filled_reply_to_the_typed_text(app, store):
    ticket = make_ticket(store, sender=CUSTOMER)
    admin = signed_in(app, store, "boss", admin=True)
    add(admin, "Shipping", TEMPLATE)
    olga = signed_in(app, store, "olga")
    assert olga.post(f"/tickets/{ticket}/claim").status_code == 303
    page = olga.get(f"/tickets/{ticket}").text
    select_box = element(page, "canned-select")
    assert ">Shipping</option>" in select_box
    option_id = re.search(r'<option value="(\d+)"', select_box).group(1)

    answer = olga.post(f"/tickets/{ticket}/canned", {"body": "Dear customer,", "canned_id": option_id,
                                                     "claim_token": claim_token(page), "keep_claim": "true",
                                                     "status": "pending"})
    assert answer.status_code == 200
    assert reply_text(answer.text) == "Dear customer,\n\n" + filled(ticket, "Olga")
    assert 'id="reply-keep-claim" checked' in answer.text
    assert '<option value="pending" selected' in answer.text
    # Then sent as edited.
    sent = olga.post(f"/tickets/{ticket}/reply", {"body": reply_text(answer.text) + "\nPS",
                                                  "claim_token": claim_token(answer.text)})
    assert sent.status_code == 303
    with store.reading() as session:
        assert session.scalar(select(Message.text).where(Message.direction == OUT)) == (
            "Dear customer,\n\n" + filled(ticket, "Olga") + "\nPS")

    nothing_chosen = olga.post(f"/tickets/{ticket}/canned", {"body": "kept", "canned_id": ""})
    assert nothing_chosen.status_code == 422 and reply_text(nothing_chosen.text) == "kept"


def test_the_reply_form_has_no_canned_select_when_there_are_none(app, store):
    ticket = make_ticket(store)
    olga = signed_in(app, store, "olga")
    olga.post(f"/tickets/{ticket}/claim")
    assert element(olga.get(f"/tickets/{ticket}").text, "canned-select") is None


# In Chromium

def test_in_chromium_an_operator_inserts_a_canned_reply_edits_it_and_sends_it(sqlite_url, serve_app, operator_page):
    store = Store(sqlite_url)
    try:
        settings = dataclasses.replace(SETTINGS, web=WebSettings(secret_key="canned-browser-secret-key"),
                                       claims=ClaimSettings(ttl=900, heartbeat=0))
        ticket = make_ticket(store, sender=CUSTOMER)
        make_operator(store, "boss", admin=True, name="The Boss")
        make_operator(store, "olga", name="Olga Lima")
        base_url = serve_app(settings, store)

        admin = operator_page(base_url, "boss")
        admin.goto("/admin")
        admin.click("#admin-canned-link")
        admin.fill("#canned-title", "Shipping")
        admin.fill("#canned-body", TEMPLATE)
        admin.click("#canned-save")
        expect(admin.locator("#canned-list")).to_contain_text("Shipping")

        page = operator_page(base_url, "olga")
        page.goto(f"/tickets/{ticket}")
        page.click("#claim-button")
        expect(page.locator("#reply-form")).to_be_visible()
        body = page.locator("#reply-body")
        body.fill("Dear customer,\n\n")
        page.evaluate("window.notReloaded = true")
        page.select_option("#canned-select", label="Shipping")
        page.click("#canned-insert")
        expect(body).to_have_value("Dear customer,\n\n" + filled(ticket, "Olga Lima"))
        assert page.evaluate("window.notReloaded") is True  # inserted by the script, no round trip

        # The operator edits the inserted text: a word changed, a line added at the end.
        body.fill(body.input_value().replace("on its way", "already on its way"))
        body.press("Control+End")
        body.type("\nPS: tracking 1234")
        page.click("#reply-send")
        expect(page.locator("#flash")).to_contain_text("Reply queued")

        expected = ("Dear customer,\n\n" + filled(ticket, "Olga Lima").replace("on its way", "already on its way")
                    + "\nPS: tracking 1234")
        with store.reading() as session:
            text, kind, status = session.execute(
                select(Message.text, Outbox.kind, Outbox.status).join(Outbox, Outbox.message_id == Message.id)
                .where(Message.ticket_id == ticket, Message.direction == OUT)
            ).one()
        assert (text.replace("\r\n", "\n"), kind, status) == (expected, "reply", "queued")
    finally:
        store.dispose()
