"""Builds small raw messages for tests."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from datetime import datetime, timezone

SUPPORT = "support@shop.example"


def make_mail(
    *,
    sender: str = "ana@customer.example",
    subject: str = "Where is my order?",
    body: str = "Hello, my order 1234 has not arrived.",
    message_id: str | None = "m1@customer.example",
    in_reply_to: str | None = None,
    references: list[str] | None = None,
    to: str = SUPPORT,
    date: datetime | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or datetime(2026, 11, 2, 10, 0, tzinfo=timezone.utc))
    if message_id:
        msg["Message-ID"] = f"<{message_id}>"
    if in_reply_to:
        msg["In-Reply-To"] = f"<{in_reply_to}>"
    if references:
        msg["References"] = " ".join(f"<{ref}>" for ref in references)
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes(policy=SMTP)
