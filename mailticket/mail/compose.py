"""Builds outbound mail (replies, acknowledgements, notifications) with a fixed Message-ID, threading headers and the
ticket tag; refuses any header value that could break out of its line."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email import encoders
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import format_datetime, formataddr

from mailticket.mail import address
from mailticket.mail.loops import LOOP_HEADER

# References keeps the thread's root and the newest ids; long chains break some servers' header limits.
MAX_REFERENCES = 10
REPLY_PREFIX = "Re: "
# UTF-8 bodies as quoted-printable: readable in the raw message, safe for 7-bit relays.
UTF8 = Charset("utf-8")
UTF8.body_encoding = QP
WIRE = compat32.clone(linesep="\r\n")
# A word longer than this cannot be folded onto lines of RFC 5322's 78 characters: such a subject is written as
# RFC 2047 encoded words, which can be cut anywhere (a relay refuses a line over 998 characters outright).
LONGEST_FOLDABLE_WORD = 60


@dataclass(frozen=True)
class Outgoing:
    message_id: str  # without angle brackets
    subject: str
    raw: bytes
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    from_address: str = ""
    text: str = ""  # the plain-text body
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()


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
    cc: Sequence[str] = (),
) -> Outgoing:
    """A complete message; its bytes are stored, so that every retry sends the very same message.

    Raises ValueError for an address that is not one (see mail.address) and for a name or id holding a character
    that would end its header line: such a value is refused, never split into headers of its own.
    Built with the stdlib's compat32 classes: the modern EmailMessage API costs about 3 ms a message,
    which acknowledgements of a big batch of new tickets would pay on the ingest path.
    """
    to = tuple(address.checked(a) for a in to)
    cc = tuple(address.checked(a) for a in cc)
    if not to:
        raise ValueError("a message needs at least one recipient")
    address.checked(from_address)
    _one_line("the sender's name", from_name)
    for message_id in (in_reply_to or "", *references):
        _one_line("a Message-ID", message_id)
        if any(c.isspace() or c in "<>" for c in message_id):
            raise ValueError(f"refused Message-ID {message_id[:80]!r}: spaces or angle brackets")
    # A subject is text: its line breaks and tabs are spaces, not headers of their own.
    subject = " ".join(subject.split())
    message_id = new_message_id(from_address)
    # SMTP ends the data with a line break; stored bytes end with one too, so they equal the bytes sent.
    text, body = body, body if body.endswith("\n") else body + "\n"
    msg: Message = MIMEText(body, "plain", UTF8)
    if html:
        alternative = MIMEMultipart("alternative")
        alternative.attach(msg)
        alternative.attach(MIMEText(html, "html", UTF8))
        msg = alternative
    if attachments:
        mixed = MIMEMultipart("mixed")
        mixed.attach(msg)
        for filename, content_type, data in attachments:
            maintype, _, subtype = content_type.partition("/")
            part = MIMEBase(maintype or "application", subtype or "octet-stream")
            part.set_payload(data)
            encoders.encode_base64(part)
            part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", filename))
            mixed.attach(part)
        msg = mixed
    msg["From"] = formataddr((from_name, from_address), charset="utf-8")
    msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Subject"] = _subject_header(subject)
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
    # CRLF as on the wire, so that the stored bytes are exactly the bytes sent.
    return Outgoing(message_id, subject, msg.as_bytes(policy=WIRE), to=to, cc=cc, from_address=from_address,
                    text=text, in_reply_to=in_reply_to, references=tuple(refs))


def _one_line(what: str, value: str) -> None:
    # CONTROL covers CR and LF and every other character str.splitlines() breaks on (compat32 folds with it).
    if address.CONTROL.search(value):
        raise ValueError(f"refused {what} {value[:80]!r}: it holds a line break or another control character")


def _subject_header(subject: str) -> str | Header:
    if subject.isascii() and all(len(word) <= LONGEST_FOLDABLE_WORD for word in subject.split()):
        return subject
    return Header(subject, "utf-8")
