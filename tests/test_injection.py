"""Senders that try to make the shop send mail for them: one smuggling a list of recipients in a quoted address,
others breaking header lines with control characters. Read, acknowledged and answered through a real aiosmtpd
sink: every message the sink receives has one recipient and our header block only."""

from __future__ import annotations

import email
import email.policy
from dataclasses import replace
from datetime import timedelta

import pytest

from mailticket.config import AutoreplySettings
from mailticket.service import actions
from mailticket.service import claims as claim_service
from mailticket.service.ingest import ingest
from mailticket.service.intake import QUARANTINED
from mailticket.service.outbox import flush_sync
from mailticket.db.models import Operator
from tests.factories import SETTINGS, T0, make_operator
from tests.mails import SUPPORT

SPAM = "YOUR REFUND IS READY - log in at http://evil.example/refund"
SMUGGLED = ",".join(f"v{i}@v.io" for i in range(100))
# The header names any mail we send may carry, each at most once.
OUR_HEADERS = {"from", "to", "subject", "date", "message-id", "in-reply-to", "references", "auto-submitted",
               "x-mailticket-loop", "mime-version", "content-type", "content-transfer-encoding"}


def hostile(sender: str, n: int, subject: str = SPAM) -> bytes:
    return (f"From: {sender}\r\nTo: {SUPPORT}\r\nSubject: {subject}\r\nMessage-ID: <hostile{n}@attacker.test>\r\n"
            f"Date: Mon, 2 Nov 2026 10:00:00 +0000\r\n\r\nHello\r\n").encode("utf-8", "surrogateescape")


SENDERS = [f'"x,{SMUGGLED},y"@attacker.test', f'Nice Name <"x,{SMUGGLED},y"@attacker.test>'] + [
    f"a@attacker.test{c}{SPAM}" for c in "\x0b\x0c\x1c\x1d\x1e"] + [
    f"<a@attacker.test{c}Bcc: v1@v.io>" for c in "\x0b\x0c\x1c\x1d\x1e"]


def test_hostile_senders_get_nothing_sent_and_are_quarantined_while_a_customer_still_is_answered(store, smtp_sink):
    settings = replace(SETTINGS, smtp=smtp_sink.settings(from_name="Shop"),
                       autoreply=AutoreplySettings(enabled=True, template="ack_en.txt", max_per_sender_per_hour=5))
    outcomes = []
    with store.transaction() as session:
        for n, sender in enumerate(SENDERS):
            outcomes.append(ingest(session, hostile(sender, n), settings=settings, received_at=T0, now=T0))
        customer = ingest(session, hostile("Ana <ana@customer.example>", 99, "Where is my order?"),
                          settings=settings, received_at=T0, now=T0)
    assert [o.result for o in outcomes] == [QUARANTINED] * len(SENDERS)
    olga_id = make_operator(store, "olga")
    with store.transaction() as session:
        olga = session.get(Operator, olga_id)
        view = claim_service.claim(session, customer.ticket_id, olga, 900, now=T0)
        actions.reply(session, settings, customer.ticket_id, olga, "We are on it.", view.token, now=T0)
    flush_sync(store, settings, now=T0 + timedelta(minutes=1))

    received = smtp_sink.messages
    assert len(received) == 2  # the customer's acknowledgement and reply, nothing for the others
    for mail in received:
        assert mail.recipients == ("ana@customer.example",)
        parsed = email.message_from_bytes(mail.raw, policy=email.policy.compat32)
        names = [name.lower() for name in parsed.keys()]
        assert set(names) <= OUR_HEADERS and len(names) == len(set(names)), names
        assert parsed["To"] == "ana@customer.example"
        assert "evil" not in parsed.get_payload(decode=True).decode()


@pytest.mark.parametrize("breaker", ["\r\n", "\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028"])
def test_compose_refuses_a_value_that_would_break_its_header_line(breaker):
    from mailticket.mail import compose

    common = dict(from_address=SUPPORT, from_name="Shop", to=["ana@customer.example"], subject="Hi", body="x",
                  date=T0, ticket_id=1)
    for change in (dict(to=[f"ana@customer.example{breaker}Bcc: v@v.io"]),
                   dict(from_name=f"Shop{breaker}Bcc: v@v.io"),
                   dict(in_reply_to=f"id@x{breaker}Bcc: v@v.io"),
                   dict(references=[f"id@x{breaker}Bcc: v@v.io"])):
        with pytest.raises(ValueError):
            compose.build(**{**common, **change})
    # A subject is text: its breaks become spaces, never a header of their own.
    raw = compose.build(**{**common, "subject": f"Hi{breaker}Bcc: v@v.io"}).raw
    assert b"\r\nBcc:" not in raw and b"\nBcc:" not in raw
