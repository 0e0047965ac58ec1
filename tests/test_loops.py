"""Loop protection: which inbound mail must never get an automatic answer, and why."""

from __future__ import annotations

import pytest

from mailticket.mail.loops import LOOP_HEADER, classify
from mailticket.mail.parse import parse

OWN = ("support@shop.example", "Billing@Shop.example")


def mail(*headers: str, subject: str = "Where is my order?", body: str = "Hello"):
    lines = ("From: Ana <ana@customer.example>", "To: support@shop.example", f"Subject: {subject}", *headers)
    return parse(("\r\n".join(lines) + "\r\n\r\n" + body).encode())


def test_ordinary_customer_mail_is_not_classified():
    assert classify(mail("Return-Path: <ana@customer.example>"), OWN) is None


@pytest.mark.parametrize("value", ["auto-replied", "auto-generated", "auto-notified", "Auto-Replied; owner-email=x@y"])
def test_auto_submitted_other_than_no_is_an_auto_reply(value):
    assert classify(mail(f"Auto-Submitted: {value}"), OWN) == "auto-reply"


def test_auto_submitted_no_is_ordinary_mail():
    assert classify(mail("Auto-Submitted: no"), OWN) is None


@pytest.mark.parametrize("header", ["X-Autoreply: yes", "X-Autorespond: Thanks for your mail"])
def test_vendor_autoreply_headers_mark_an_auto_reply(header):
    assert classify(mail(header), OWN) == "auto-reply"


@pytest.mark.parametrize("value", ["OOF", "All", "DR, OOF, AutoReply"])
def test_exchange_suppressing_oof_or_all_marks_an_auto_reply(value):
    assert classify(mail(f"X-Auto-Response-Suppress: {value}"), OWN) == "auto-reply"


def test_exchange_suppressing_only_receipts_is_ordinary_mail():
    assert classify(mail("X-Auto-Response-Suppress: DR, RN, NRN"), OWN) is None


@pytest.mark.parametrize(
    "subject",
    [
        "Out of Office: Where is my order?",
        "Automatic reply: Where is my order? [#12]",
        "=?utf-8?q?Resposta_autom=C3=A1tica=3A_Pedido?=",
        "Abwesenheitsnotiz: Ihre Bestellung",
        "=?utf-8?q?R=C3=A9ponse_automatique_=3A_Commande?=",
        "[Out of office] until Monday",
    ],
)
def test_out_of_office_subjects_in_common_languages_are_auto_replies(subject):
    assert classify(mail(subject=subject), OWN) == "auto-reply"


def test_a_customer_mentioning_being_out_of_office_is_ordinary_mail():
    assert classify(mail(subject="I was out of office, is my order lost?"), OWN) is None


@pytest.mark.parametrize("value", ["bulk", "junk", "list", "Bulk"])
def test_precedence_bulk_junk_or_list_is_bulk(value):
    assert classify(mail(f"Precedence: {value}"), OWN) == "bulk"


@pytest.mark.parametrize("header", ["List-Id: <shop-news.example.com>", "List-Unsubscribe: <mailto:leave@example.com>"])
def test_list_headers_mark_bulk(header):
    assert classify(mail(header), OWN) == "bulk"


def test_a_null_return_path_is_a_bounce():
    assert classify(mail("Return-Path: <>"), OWN) == "bounce"


@pytest.mark.parametrize(
    "sender",
    ["Mail Delivery System <MAILER-DAEMON@mx.example.com>", "postmaster@example.com", "MAILER-DAEMON"],
)
def test_mail_from_the_mail_system_is_a_bounce(sender):
    msg = parse(f"From: {sender}\r\nSubject: Undeliverable\r\n\r\nSorry".encode())
    assert classify(msg, OWN) == "bounce"


def test_a_delivery_status_report_is_a_bounce():
    msg = mail(
        'Content-Type: multipart/report; report-type=delivery-status; boundary="r"',
        body="--r\r\nContent-Type: text/plain\r\n\r\nFailed\r\n"
        "--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.com\r\n\r\n"
        "Final-Recipient: rfc822; x@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n--r--\r\n",
    )
    assert classify(msg, OWN) == "bounce"


def test_a_read_receipt_is_an_auto_reply_not_a_bounce():
    msg = mail(
        'Content-Type: multipart/report; report-type=disposition-notification; boundary="r"',
        body="--r\r\nContent-Type: text/plain\r\n\r\nRead\r\n--r--\r\n",
    )
    assert classify(msg, OWN) == "auto-reply"


def test_mail_from_one_of_our_addresses_is_own_whatever_the_case():
    msg = parse(b"From: BILLING@shop.example\r\nSubject: Re: [#1]\r\n\r\nHi")
    assert classify(msg, OWN) == "own"


def test_our_loop_header_marks_own_mail_from_any_address():
    assert classify(mail(f"{LOOP_HEADER}: ticket-12"), OWN) == "own"


def test_without_own_addresses_nothing_is_own():
    msg = parse(b"From: support@shop.example\r\nSubject: hi\r\n\r\nHi")
    assert classify(msg) is None


def test_own_wins_over_bounce_which_wins_over_auto_reply_which_wins_over_bulk():
    report = "Content-Type: multipart/report; report-type=delivery-status; boundary=b"
    everything = (report, "Auto-Submitted: auto-replied", "Precedence: bulk")
    assert classify(mail(f"{LOOP_HEADER}: 1", *everything), OWN) == "own"
    assert classify(mail(*everything), OWN) == "bounce"
    assert classify(mail(*everything[1:]), OWN) == "auto-reply"
    assert classify(mail(*everything[2:]), OWN) == "bulk"


def test_an_out_of_office_reply_from_the_null_path_is_an_auto_reply_not_a_bounce():
    assert classify(mail("Return-Path: <>", "Auto-Submitted: auto-replied"), OWN) == "auto-reply"
    assert classify(mail("Return-Path: <>"), OWN) == "bounce"
