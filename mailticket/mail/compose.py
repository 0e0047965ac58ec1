"""Builds outbound mail (replies, acknowledgements) with a fixed Message-ID, threading headers and the ticket tag."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr

from mailticket.mail.loops import LOOP_HEADER

# References keeps the thread's root and the newest ids; long chains break some servers' header limits.
MAX_REFERENCES = 10
REPLY_PREFIX = "Re: "


@dataclass(frozen=True)
class Outgoing:
    message_id: str  # without angle brackets
    subject: str
    raw: bytes


def new_message_id(from_address: str) -> str:
    domain = from_address.rpartition("@")[2] or "mailticket.invalid"
    return f"{secrets.token_hex(12)}@{domain}"


def trim_references(chain: Sequence[str]) -> list[str]:
    chain = list(dict.fromkeys(chain))  # keeps order, drops repeats
    if len(chain) <= MAX_REFERENCES:
        return chain
    return [chain[0], *chain[-(MAX_REFERENCES - 1):]]


def reply_subject(subject: str, tag: str) -> str:
    subject = subject.strip() or "(no subject)"
    if tag not in subject:
        subject = f"{subject} {tag}"
    lowered = subject.lower()
    if not (lowered.startswith("re:") or lowered.startswith("re ")):
        subject = REPLY_PREFIX + subject
    return subject


def build(
    *,
    from_address: str,
    from_name: str,
    to: Sequence[str],
    subject: str,
    body: str,
    date: datetime,
    ticket_id: int,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    auto_submitted: str | None = None,
    html: str | None = None,
    attachments: Sequence[tuple[str, str, bytes]] = (),
) -> Outgoing:
    """A complete message; its bytes are stored, so that every retry sends the very same message."""
    message_id = new_message_id(from_address)
    msg = EmailMessage()
    msg["From"] = formataddr((from_name, from_address))
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = f"<{message_id}>"
    if in_reply_to:
        msg["In-Reply-To"] = f"<{in_reply_to}>"
    refs = trim_references([*references, *([in_reply_to] if in_reply_to else [])])
    if refs:
        msg["References"] = " ".join(f"<{ref}>" for ref in refs)
    if auto_submitted:
        msg["Auto-Submitted"] = auto_submitted
    msg[LOOP_HEADER] = str(ticket_id)
    msg.set_content(body)
    if html:
        msg.add_alternative(html, subtype="html")
    for filename, content_type, data in attachments:
        maintype, _, subtype = content_type.partition("/")
        msg.add_attachment(data, maintype=maintype or "application", subtype=subtype or "octet-stream",
                           filename=filename)
    # CRLF as on the wire, so that the stored bytes are exactly the bytes sent.
    return Outgoing(message_id, subject, msg.as_bytes(policy=SMTP))
