"""Odd mail parsed as the best parsers do: raw 8-bit headers in Chinese and Japanese charsets, Outlook's winmail.dat,
a bare MAILER-DAEMON, a multipart with no boundary, inline cid: images; polled from a real Dovecot, shown in Chromium."""

from __future__ import annotations

import base64
import struct
import zlib

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from mailticket.config import AutoreplySettings, MailboxSettings, Settings, WebSettings
from mailticket.db.models import IN, Message, Outbox, Quarantine, Ticket
from mailticket.db.store import Store
from mailticket.mail.parse import parse
from mailticket.service.ingest import ingest
from mailticket.service.poll import poll_mailbox
from tests.browser import login
from tests.factories import T0, make_operator
from tests.mails import SUPPORT


def raw_mail(*, sender: bytes, subject: bytes, body: bytes, content_type: bytes | None = None,
             message_id: str = "odd@customer.example") -> bytes:
    """A message as some mail programs write it: header bytes as they are, no RFC 2047 words."""
    head = [b"From: " + sender, b"To: " + SUPPORT.encode(), b"Subject: " + subject,
            b"Date: Mon, 02 Nov 2026 10:00:00 +0000", f"Message-ID: <{message_id}>".encode()]
    if content_type:
        head += [b"MIME-Version: 1.0", b"Content-Type: " + content_type]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def gbk_mail(message_id: str = "gbk@customer.cn") -> bytes:
    return raw_mail(sender="王小明 <wang@customer.cn>".encode("gbk"), subject="关于订单的问题".encode("gbk"),
                    body="你好，我的订单还没有到。".encode("gbk"), content_type=b"text/plain; charset=gb2312",
                    message_id=message_id)


def sjis_mail(message_id: str = "sjis@customer.jp") -> bytes:
    """Shift_JIS everywhere and declared nowhere: only detection can read it."""
    return raw_mail(sender="山田太郎 <yamada@customer.jp>".encode("shift_jis"), subject="返品のお願い".encode("shift_jis"),
                    body="商品が届きましたが、壊れていました。返品できますか。".encode("shift_jis"), message_id=message_id)


def tnef_attribute(level: int, attribute: int, data: bytes) -> bytes:
    return struct.pack("<BII", level, attribute, len(data)) + data + struct.pack("<H", sum(data) & 0xFFFF)


def winmail_dat(files: list[tuple[str, bytes]]) -> bytes:
    """A TNEF blob as Outlook writes it: version, code page, then per file its start, title and data."""
    blob = struct.pack("<IH", 0x223E9F78, 0x0101)
    blob += tnef_attribute(1, 0x00089006, struct.pack("<I", 0x00010000))  # attTnefVersion
    blob += tnef_attribute(1, 0x00069007, struct.pack("<II", 1252, 0))  # attOemCodepage
    for name, data in files:
        blob += tnef_attribute(2, 0x00069002, b"\x01\x00" + b"\xff" * 4 + b"\x00" * 8)  # attAttachRendData
        blob += tnef_attribute(2, 0x00018010, name.encode("cp1252") + b"\x00")  # attAttachTitle
        blob += tnef_attribute(2, 0x0006800F, data)  # attAttachData
    return blob


def with_part(body_text: str, part_headers: str, part: bytes, message_id: str, boundary: str = "b1") -> bytes:
    return (f"From: Ana <ana@customer.example>\r\nTo: {SUPPORT}\r\nSubject: Fotos do produto\r\n"
            f"Date: Mon, 02 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{message_id}>\r\nMIME-Version: 1.0\r\n"
            f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
            f"--{boundary}\r\n{body_text}\r\n--{boundary}\r\n{part_headers}\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            f"{base64.encodebytes(part).decode()}\r\n--{boundary}--\r\n").encode()


def winmail_mail(message_id: str = "winmail@customer.example") -> bytes:
    blob = winmail_dat([("nota-fiscal.pdf", b"%PDF-1.4 nota"), ("foto-caixa.jpg", b"\xff\xd8\xff\xe0 foto")])
    return with_part("Content-Type: text/plain; charset=utf-8\r\n\r\nSeguem os arquivos.",
                     'Content-Type: application/ms-tnef; name="winmail.dat"\r\n'
                     'Content-Disposition: attachment; filename="winmail.dat"', blob, message_id)


def png(width: int = 3, height: int = 2) -> bytes:
    """A real PNG, solid red, so that a browser can decode it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def cid_mail(message_id: str = "cid@customer.example") -> bytes:
    html = ('Content-Type: text/html; charset=utf-8\r\n\r\n'
            '<p>Veja a caixa:</p><img src="cid:caixa.123@customer.example" alt="caixa">')
    return with_part(html, 'Content-Type: image/png; name="caixa.png"\r\nContent-ID: <caixa.123@customer.example>\r\n'
                     'Content-Disposition: inline; filename="caixa.png"', png(), message_id).replace(
        b"multipart/mixed", b"multipart/related")


# Parsing


def test_raw_gbk_headers_are_read_in_the_charset_the_message_declares():
    msg = parse(gbk_mail())
    assert (msg.subject, msg.from_name, msg.from_addr) == ("关于订单的问题", "王小明", "wang@customer.cn")
    assert msg.text == "你好，我的订单还没有到。"


def test_raw_shift_jis_headers_with_no_charset_anywhere_are_detected():
    msg = parse(sjis_mail())
    assert (msg.subject, msg.from_name) == ("返品のお願い", "山田太郎")
    assert msg.text.startswith("商品が届きましたが")


def test_raw_windows_1252_portuguese_headers_stay_portuguese():
    msg = parse(raw_mail(sender="João Conceição <joao@customer.example>".encode("cp1252"),
                         subject="Devolução do pedido".encode("cp1252"), body="Não recebi.".encode("cp1252")))
    assert (msg.subject, msg.from_name, msg.text) == ("Devolução do pedido", "João Conceição", "Não recebi.")


def test_raw_utf8_headers_are_utf8_whatever_the_body_declares():
    msg = parse(raw_mail(sender=b"Ana <ana@customer.example>", subject="Pedido não chegou 订单".encode(),
                         body="你好".encode("gbk"), content_type=b"text/plain; charset=gbk"))
    assert msg.subject == "Pedido não chegou 订单"
    assert msg.text == "你好"


@pytest.mark.parametrize("sender, name", [
    ("MAILER-DAEMON", ""), ("Mail Delivery Subsystem <MAILER-DAEMON>", "Mail Delivery Subsystem"),
    ("postmaster", ""),
])
def test_a_bare_mailer_daemon_is_kept_as_the_sender(sender, name):
    msg = parse(raw_mail(sender=sender.encode(), subject=b"Undelivered Mail Returned to Sender", body=b"x"))
    assert (msg.from_addr, msg.from_name) == (sender.rpartition("<")[2].rstrip(">").lower(), name)
    assert not any("invalid sender" in d for d in msg.defects)


def test_a_winmail_dat_is_unpacked_into_the_files_inside_it():
    msg = parse(winmail_mail())
    assert [(a.filename, a.content_type, a.data) for a in msg.attachments] == [
        ("nota-fiscal.pdf", "application/pdf", b"%PDF-1.4 nota"), ("foto-caixa.jpg", "image/jpeg", b"\xff\xd8\xff\xe0 foto")]
    assert msg.text == "Seguem os arquivos."


def test_a_winmail_dat_that_cannot_be_read_stays_as_it_came():
    raw = with_part("Content-Type: text/plain\r\n\r\nAnexo.", 'Content-Type: application/ms-tnef; name="winmail.dat"',
                    b"not TNEF at all", "broken-tnef@customer.example")
    msg = parse(raw)
    assert [(a.filename, a.data) for a in msg.attachments] == [("winmail.dat", b"not TNEF at all")]
    assert "unreadable TNEF: ValueError" in msg.defects


def test_a_winmail_dat_with_no_files_inside_stays_as_it_came():
    blob = winmail_dat([])
    msg = parse(with_part("Content-Type: text/plain\r\n\r\nOi.", 'Content-Type: application/ms-tnef; name="winmail.dat"',
                          blob, "empty-tnef@customer.example"))
    assert [(a.filename, a.data) for a in msg.attachments] == [("winmail.dat", blob)]


# From a real Dovecot into tickets, on SQLite and PostgreSQL


@pytest.fixture
def settings(dovecot, mailbox_user) -> Settings:
    user, password = mailbox_user
    box = MailboxSettings(name="support", host=dovecot.host, port=dovecot.port, security="none", username=user,
                          password=password, address=SUPPORT)
    return Settings(mailboxes=(box,), autoreply=AutoreplySettings(enabled=True, template="ack_en.txt"))


def test_odd_mail_polled_from_dovecot_becomes_readable_tickets_and_nothing_is_lost(store, dovecot, settings):
    # Cut off in its first part: no closing boundary, the photo that should follow missing.
    broken = (f"From: Ana <ana@customer.example>\r\nTo: {SUPPORT}\r\nSubject: Cortada\r\n"
              "Message-ID: <cut@customer.example>\r\nMIME-Version: 1.0\r\n"
              'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n'
              "\r\nOlá, segue a foto\r\n--b1\r\nContent-Type: image/jpeg\r\nContent-Transfer-Encoding: base64\r\n").encode()
    bounce = raw_mail(sender=b"MAILER-DAEMON", subject=b"Undelivered Mail Returned to Sender", body=b"gone",
                      message_id="bounce@mx.customer.example")
    mails = [gbk_mail(), sjis_mail(), winmail_mail(), bounce, broken]
    box = settings.mailboxes[0]
    dovecot.deliver(box.username, mails)
    counts = poll_mailbox(store, settings, box, clock=lambda: T0)

    with store.reading() as session:
        stored = session.scalar(select(func.count()).select_from(Message).where(Message.direction == IN))
        quarantined = session.scalar(select(func.count()).select_from(Quarantine))
        assert counts.fetched == len(mails) == stored + quarantined and quarantined == 0
        tickets = {t.subject: t for t in session.scalars(select(Ticket))}
        first = {m.ticket_id: m for m in session.scalars(
            select(Message).where(Message.direction == IN).options(selectinload(Message.attachments)))}
        assert tickets["关于订单的问题"].customer.name == "王小明"
        assert tickets["返品のお願い"].customer.name == "山田太郎"
        assert [a.filename for a in first[tickets["Fotos do produto"].id].attachments] == [
            "nota-fiscal.pdf", "foto-caixa.jpg"]
        cut = first[tickets["Cortada"].id]
        assert (cut.text, [a.size for a in cut.attachments]) == ("Olá, segue a foto", [0])  # the photo's place, empty
        daemon = tickets["Undelivered Mail Returned to Sender"]
        assert daemon.customer.address == "mailer-daemon" and daemon.automatic
        # Acknowledgements went to the three customers who wrote, none to the mail system.
        acknowledged = sorted(address for (recipients,) in session.execute(select(Outbox.recipients))
                              for address in recipients)
        assert acknowledged == ["ana@customer.example", "ana@customer.example", "wang@customer.cn", "yamada@customer.jp"]


# In the browser


def test_in_chromium_an_inline_image_shows_inside_the_html_message(sqlite_url, serve_app, new_context, fast_passwords):
    store = Store(sqlite_url)
    with store.transaction() as session:
        outcome = ingest(session, cid_mail(), settings=Settings(), received_at=T0, now=T0, mailbox="support")
    make_operator(store, "olga", name="Olga")
    base_url = serve_app(Settings(web=WebSettings(secret_key="odd-mail-test-secret-key-01")), store)
    page = login(new_context(base_url), base_url, "olga")
    page.goto(f"{base_url}/tickets/{outcome.ticket_id}")
    photo = page.frame_locator("iframe.mail-html").locator("img[alt=caixa]")
    expect(photo).to_be_visible()
    photo.evaluate("img => img.complete || new Promise(done => img.addEventListener('load', done))")
    assert photo.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [3, 2]
    store.dispose()
