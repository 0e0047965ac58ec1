"""Replies reach the right people, on SQLite and PostgreSQL and through a real aiosmtpd sink: the customer's
Reply-To, the others they wrote to as Cc when the operator replies to all, edited To and Cc checked."""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import replace

from fastapi.testclient import TestClient
from sqlalchemy import select

from mailticket.db.models import Operator, Outbox
from mailticket.service import actions, operators
from mailticket.service.claims import claim
from mailticket.service.outbox import flush_sync
from mailticket.web.app import create_app
from tests.factories import T0, WEB_SETTINGS, make_operator, make_ticket
from tests.test_web import Browser, reply_text

HEADERS = {"Reply-To": "orders@customer.example", "Cc": "boss@customer.example, support@shop.example"}


def asked(store) -> int:
    """A ticket whose mail asks for answers at another address, with a colleague and our mailbox in Cc."""
    return make_ticket(store, sender="ana@customer.example", headers=HEADERS)


def browser(store, username: str = "olga") -> Browser:
    make_operator(store, username)
    page = Browser(create_app(WEB_SETTINGS, store, clock=lambda: T0))
    assert page.log_in(username).status_code == 303
    return page


def claimed(page: Browser, ticket: int) -> str:
    assert page.post(f"/tickets/{ticket}/claim").status_code == 303
    return re.search(r'name="claim_token" value="([^"]+)"', page.get(f"/tickets/{ticket}").text).group(1)


def sent_to(store) -> list[list[str]]:
    with store.reading() as session:
        return session.scalars(select(Outbox.recipients).order_by(Outbox.id)).all()


def test_the_reply_goes_to_the_reply_to_and_the_form_offers_the_others_as_cc(store):
    ticket = asked(store)
    olga = browser(store)
    token = claimed(olga, ticket)
    page = olga.get(f"/tickets/{ticket}").text
    assert 'value="orders@customer.example"' in page
    assert "Reply to all: Cc ana@customer.example, boss@customer.example" in page  # never our own mailbox
    assert olga.post(f"/tickets/{ticket}/reply", {"body": "It ships today.", "claim_token": token}).status_code == 303
    assert sent_to(store) == [["orders@customer.example"]]


def test_reply_to_all_copies_the_others_and_the_sink_gets_the_cc_header(store, smtp_sink):
    ticket = asked(store)
    olga = browser(store)
    token = claimed(olga, ticket)
    assert olga.post(f"/tickets/{ticket}/reply", {"body": "It ships today.", "claim_token": token,
                                                  "to": "orders@customer.example", "reply_all": "true"}
                     ).status_code == 303
    assert sent_to(store) == [["orders@customer.example", "ana@customer.example", "boss@customer.example"]]
    settings = replace(WEB_SETTINGS, smtp=smtp_sink.settings())
    assert flush_sync(store, settings).sent == 1
    [mail] = smtp_sink.messages
    parsed = email.message_from_bytes(mail.raw, policy=email.policy.default)
    assert parsed["To"] == "orders@customer.example"
    assert parsed["Cc"] == "ana@customer.example, boss@customer.example"
    assert sorted(mail.recipients) == ["ana@customer.example", "boss@customer.example", "orders@customer.example"]


def test_a_bad_address_typed_into_to_or_cc_is_refused_and_the_text_is_kept(store):
    ticket = asked(store)
    olga = browser(store)
    token = claimed(olga, ticket)
    for fields, field in (({"to": "orders@customer.example, not an address"}, "To"),
                          ({"cc": '"x,y"@evil.example'}, "Cc")):
        refused = olga.post(f"/tickets/{ticket}/reply", {"body": "Kept text.", "claim_token": token, **fields})
        assert refused.status_code == 422 and f"Not sent: {field}:" in refused.text
        assert reply_text(refused.text).strip() == "Kept text."
    assert sent_to(store) == []


def test_the_api_takes_to_and_cc_and_refuses_more_than_fifty(store):
    client = TestClient(create_app(WEB_SETTINGS, store, clock=lambda: T0))
    ticket = asked(store)
    make_operator(store, "ana")
    with store.transaction() as session:
        headers = {"Authorization": f"Bearer {operators.new_token(session, 'ana')}"}
    claim_token = client.post(f"/api/v1/tickets/{ticket}/claim", headers=headers).json()["token"]
    many = [f"c{n}@customer.example" for n in range(51)]
    too_many = client.post(f"/api/v1/tickets/{ticket}/reply", headers=headers,
                           json={"body": "Hi", "claim_token": claim_token, "cc": many})
    assert too_many.status_code == 422
    answer = client.post(f"/api/v1/tickets/{ticket}/reply", headers=headers,
                         json={"body": "Hi", "claim_token": claim_token, "to": ["ana@customer.example"],
                               "cc": ["accounts@customer.example"]})
    assert answer.status_code == 202, answer.text
    assert sent_to(store) == [["ana@customer.example", "accounts@customer.example"]]


def test_without_a_reply_to_the_reply_goes_to_the_sender(store):
    ticket = make_ticket(store, sender="bob@customer.example")
    operator = make_operator(store, "olga")
    with store.transaction() as session:
        olga = session.get(Operator, operator)
        view = claim(session, ticket, olga, 900, now=T0)
        actions.reply(session, WEB_SETTINGS, ticket, olga, "Hello Bob.", view.token, now=T0)
    assert sent_to(store) == [["bob@customer.example"]]


def test_forwarding_sends_the_conversation_with_its_attachments_and_notes_it(store, smtp_sink):
    from email.message import EmailMessage

    from mailticket.db.models import Event, Message
    from mailticket.service.ingest import ingest
    from tests.factories import SETTINGS

    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "ana@customer.example", "support@shop.example", "Broken vase"
    mail["Message-ID"] = "<vase@customer.example>"
    mail.set_content("It arrived broken, photo attached.")
    mail.add_attachment(b"\xff\xd8photo", maintype="image", subtype="jpeg", filename="vase.jpg")
    with store.transaction() as session:
        ticket = ingest(session, mail.as_bytes(), settings=SETTINGS, received_at=T0, now=T0).ticket_id
    olga = browser(store)
    refused = olga.post(f"/tickets/{ticket}/forward", {"to": "not an address"})
    assert refused.status_code == 422 and "Not forwarded: To:" in refused.text
    assert olga.post(f"/tickets/{ticket}/forward", {"to": "claims@carrier.example",
                                                    "note": "Please open a claim."}).status_code == 303
    assert flush_sync(store, replace(WEB_SETTINGS, smtp=smtp_sink.settings())).sent == 1
    [sent] = smtp_sink.messages
    assert sent.recipients == ("claims@carrier.example",)
    parsed = email.message_from_bytes(sent.raw, policy=email.policy.default)
    text = parsed.get_body(("plain",)).get_content()
    assert "Please open a claim." in text and "It arrived broken, photo attached." in text
    assert [part.get_filename() for part in parsed.iter_attachments()] == ["vase.jpg"]
    with store.reading() as session:
        assert "to claims@carrier.example" in session.scalar(select(Event.detail).where(Event.kind == "forwarded"))
        assert session.scalar(select(Message.direction).where(Message.subject.startswith("Fwd:"))) == "note"
