"""Attachments uploaded in the reply form: sent with the mail, listed on the ticket page, refused when too big."""

from __future__ import annotations

import dataclasses
import re

import pytest
from sqlalchemy import func, select

from mailticket.db.models import OUT, Attachment, Message, Outbox
from mailticket.mail.parse import parse
from mailticket.web.app import create_app
from tests.factories import make_ticket
from tests.factories import NOW, WEB_SETTINGS
from tests.test_web import claim_token, count, element, reply_text, signed_in

PDF = b"%PDF-1.4 the quote\n\x00\xff binary too"


def claimed(browser, ticket: int) -> str:
    """Claims the ticket; the reply form's claim token."""
    assert browser.post(f"/tickets/{ticket}/claim").status_code == 303
    page = browser.get(f"/tickets/{ticket}").text
    return claim_token(page)


def test_the_reply_form_uploads_files(app, store):
    ticket = make_ticket(store)
    ana = signed_in(app, store, "ana")
    claimed(ana, ticket)
    form = element(ana.get(f"/tickets/{ticket}").text, "reply-form")
    assert 'enctype="multipart/form-data"' in form
    assert re.search(r'<input type="file" id="reply-attachments" name="attachments" multiple>', form)


def test_a_reply_with_files_sends_and_lists_them(app, store):
    ticket = make_ticket(store)
    ana = signed_in(app, store, "ana")
    token = claimed(ana, ticket)

    sent = ana.post(f"/tickets/{ticket}/reply", {"body": "The quote is attached.", "claim_token": token},
                    files=[("attachments", ("Angebot März.pdf", PDF, "application/pdf")),
                           ("attachments", ("notes.txt", b"line one\n", "text/plain"))])
    assert sent.status_code == 303

    with store.reading() as session:
        message = session.scalars(select(Message).where(Message.direction == OUT)).one()
        raw = message.raw
        rows = {a.filename: (a.id, a.content_type, a.size, a.inline) for a in message.attachments}
        assert session.scalar(select(func.count()).select_from(Outbox).where(Outbox.message_id == message.id)) == 1
    mail = parse(raw)
    assert "The quote is attached." in mail.text
    parts = {a.filename: (a.content_type, a.data) for a in mail.attachments}
    assert parts == {"Angebot März.pdf": ("application/pdf", PDF), "notes.txt": ("text/plain", b"line one\n")}
    assert rows["Angebot März.pdf"][1:] == ("application/pdf", len(PDF), False)

    page = ana.get(f"/tickets/{ticket}").text
    pdf_id = rows["Angebot März.pdf"][0]
    assert f'href="/attachments/{pdf_id}"' in page and "Angebot März.pdf" in page
    download = ana.get(f"/attachments/{pdf_id}")
    assert download.status_code == 200 and download.content == PDF
    assert download.headers["content-disposition"].startswith("attachment;")


def test_an_empty_file_input_sends_no_attachment(app, store):
    ticket = make_ticket(store)
    ana = signed_in(app, store, "ana")
    token = claimed(ana, ticket)
    # What a browser posts for a file input left empty: one part named "" without content.
    fields = {"csrf_token": ana.csrf, "body": "No files.", "claim_token": token}
    raw = b"".join(f'--B\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                   for k, v in fields.items())
    raw += (b'--B\r\nContent-Disposition: form-data; name="attachments"; filename=""\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n\r\n--B--\r\n")
    sent = ana.client.post(f"/tickets/{ticket}/reply", content=raw,
                           headers={"content-type": "multipart/form-data; boundary=B"})
    assert sent.status_code == 303
    assert count(store, select(func.count()).select_from(Attachment)) == 0
    with store.reading() as session:
        raw = session.scalars(select(Message.raw).where(Message.direction == OUT)).one()
    assert parse(raw).attachments == ()


def test_an_oversized_upload_is_refused_and_the_typed_text_kept(store):
    settings = dataclasses.replace(WEB_SETTINGS, limits=dataclasses.replace(WEB_SETTINGS.limits,
                                                                            max_attachment_bytes=1000))
    app = create_app(settings, store, clock=lambda: NOW)
    ticket = make_ticket(store)
    ana = signed_in(app, store, "ana")
    token = claimed(ana, ticket)
    typed = 'Dear customer,\n\nthe <b>big</b> file & "this text" must survive.\n'

    refused = ana.post(f"/tickets/{ticket}/reply", {"body": typed, "claim_token": token, "keep_claim": "true"},
                       files=[("attachments", ("a.bin", b"x" * 600, "application/octet-stream")),
                              ("attachments", ("b.bin", b"y" * 600, "application/octet-stream"))])
    assert refused.status_code == 422
    assert "too big" in element(refused.text, "flash-error")
    assert reply_text(refused.text) == typed
    assert 'id="reply-send"' in refused.text
    assert count(store, select(func.count()).select_from(Outbox)) == 0
    assert count(store, select(func.count()).select_from(Attachment)) == 0

    # Within the limit it goes.
    sent = ana.post(f"/tickets/{ticket}/reply", {"body": typed, "claim_token": claim_token(refused.text)},
                    files=[("attachments", ("a.bin", b"x" * 1000, "application/octet-stream"))])
    assert sent.status_code == 303
    assert count(store, select(func.count()).select_from(Attachment)) == 1


@pytest.mark.parametrize("button", ["canned", "claim"])
def test_the_other_buttons_of_the_reply_form_still_read_the_multipart_form(app, store, button):
    ticket = make_ticket(store)
    ana = signed_in(app, store, "ana")
    token = claimed(ana, ticket)
    typed = "Typed before the other button.\n"
    answer = ana.post(f"/tickets/{ticket}/{button}", {"body": typed, "claim_token": token, "canned_id": "x"},
                      files=[("attachments", ("a.txt", b"hello", "text/plain"))])
    assert answer.status_code in (200, 422)
    assert reply_text(answer.text).startswith(typed.rstrip("\n"))
    assert count(store, select(func.count()).select_from(Outbox)) == 0
