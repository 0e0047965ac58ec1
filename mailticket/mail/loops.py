"""Classifies inbound mail that must never get an automatic answer: auto-replies, bulk, bounces, our own."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from mailticket.mail.parse import Inbound

# Header carried by every message we send, so that our own mail coming back is recognised.
LOOP_HEADER = "X-Mailticket-Loop"

OWN = "own"
BOUNCE = "bounce"
AUTO_REPLY = "auto-reply"
BULK = "bulk"

# Bounces: the null reverse path of RFC 5321 §4.5.5, the mail system's own senders, and DSNs.
BOUNCE_SENDER = re.compile(r"^(mailer-daemon|postmaster)(@|$)", re.IGNORECASE)
REPORT_TYPE = re.compile(r"report-type\s*=\s*\"?([\w-]+)", re.IGNORECASE)
# A report without a report-type is taken for a delivery report: that is what nearly all of them are.
DELIVERY_REPORT_TYPES = frozenset({"", "delivery-status", "global-delivery-status"})
DELIVERY_STATUS_PARTS = frozenset({"message/delivery-status", "message/global-delivery-status"})

# Auto-replies: RFC 3834 Auto-Submitted, and the vendor headers that predate it.
AUTO_SUBMITTED_HEADER = "auto-submitted"
AUTOREPLY_HEADERS = ("x-autoreply", "x-autorespond")
AUTO_RESPONSE_SUPPRESS_HEADER = "x-auto-response-suppress"
# Exchange marks its own out-of-office replies with these; other tokens (DR, RN...) say nothing.
SUPPRESS_MEANS_AUTOREPLY = re.compile(r"\b(oof|all)\b", re.IGNORECASE)
# Out-of-office subjects of clients that send no header at all, as they begin the subject.
OUT_OF_OFFICE_SUBJECT = re.compile(
    r"^\W*(out of (the )?office|automatic reply|auto[- ]?reply|autosvar|abwesenheitsnotiz"
    r"|automatische antwort|automatisch antwoord|r[ée]ponse automatique|resposta autom[áa]tica"
    r"|respuesta autom[áa]tica|risposta automatica)\b",
    re.IGNORECASE,
)

# Bulk: list and marketing mail.
PRECEDENCE_HEADER = "precedence"
BULK_PRECEDENCE = re.compile(r"^\s*(bulk|junk|list)\b", re.IGNORECASE)
AUTO_REPLY_PRECEDENCE = re.compile(r"^\s*auto[_-]reply\b", re.IGNORECASE)
LIST_HEADERS = ("list-id", "list-unsubscribe")


def _is_own(msg: Inbound, own: set[str]) -> bool:
    return msg.from_addr in own or msg.header(LOOP_HEADER) is not None


def _is_delivery_report(msg: Inbound) -> bool:
    if BOUNCE_SENDER.match(msg.from_addr or msg.from_name):
        return True
    if msg.content_type == "multipart/report":
        report = REPORT_TYPE.search(msg.header("content-type") or "")
        if (report.group(1).lower() if report else "") in DELIVERY_REPORT_TYPES:
            return True
    return any(part.content_type in DELIVERY_STATUS_PARTS for part in msg.attachments)


def _is_auto_reply(msg: Inbound) -> bool:
    auto_submitted = msg.header(AUTO_SUBMITTED_HEADER)
    # RFC 3834 §5: any value but "no" (parameters such as "; owner-email=" may follow).
    if auto_submitted is not None and auto_submitted.split(";")[0].strip().lower() != "no":
        return True
    if any(msg.header(name) is not None for name in AUTOREPLY_HEADERS):
        return True
    if SUPPRESS_MEANS_AUTOREPLY.search(msg.header(AUTO_RESPONSE_SUPPRESS_HEADER) or ""):
        return True
    if AUTO_REPLY_PRECEDENCE.match(msg.header(PRECEDENCE_HEADER) or ""):
        return True
    # Read receipts and abuse reports are reports too, but not about delivery.
    if msg.content_type == "multipart/report":
        return True
    return bool(OUT_OF_OFFICE_SUBJECT.match(msg.subject))


def _is_bulk(msg: Inbound) -> bool:
    if BULK_PRECEDENCE.match(msg.header(PRECEDENCE_HEADER) or ""):
        return True
    return any(msg.header(name) is not None for name in LIST_HEADERS)


def classify(msg: Inbound, own_addresses: Iterable[str] = ()) -> str | None:
    """None for ordinary customer mail, else a short reason: "auto-reply", "bulk", "bounce", "own"."""
    own = {address.strip().lower() for address in own_addresses} - {""}
    if _is_own(msg, own):
        return OWN
    if _is_delivery_report(msg):
        return BOUNCE
    # RFC 3834 asks auto-responders to send from the null path too, so their own headers decide first.
    if _is_auto_reply(msg):
        return AUTO_REPLY
    if msg.return_path == "":
        return BOUNCE
    if _is_bulk(msg):
        return BULK
    return None


# Parts of a delivery report that carry the original message or its headers.
ORIGINAL_MESSAGE_PARTS = frozenset({"message/rfc822", "text/rfc822-headers", "message/rfc822-headers",
                                    "message/global", "message/global-headers"})
MESSAGE_ID_LINE = re.compile(rb"^message-id:\s*<([^>\s]+)>", re.IGNORECASE | re.MULTILINE)
# The original's headers sit at the top of its part; its body is not read for ids.
ORIGINAL_HEADER_BYTES = 64 * 1024


def bounced_message_ids(msg: Inbound) -> tuple[str, ...]:
    """The Message-IDs of the original mail a bounce reports on, as found in its attached original or headers."""
    found: list[str] = [*msg.in_reply_to, *msg.references]
    for part in msg.attachments:
        if part.content_type in ORIGINAL_MESSAGE_PARTS:
            found.extend(m.decode("ascii", "replace") for m in MESSAGE_ID_LINE.findall(part.data[:ORIGINAL_HEADER_BYTES]))
    # Some servers quote the original's headers in the text of the report instead.
    found.extend(m.decode("ascii", "replace") for m in MESSAGE_ID_LINE.findall(msg.text.encode("utf-8", "replace")))
    return tuple(i for i in dict.fromkeys(found) if i != msg.message_id)


# A delivery-status part (RFC 3464): a block per recipient, with its address and what became of the message.
RECIPIENT_FIELD = re.compile(r"^(?:final|original)-recipient:\s*(?:[\w-]+\s*;)?\s*<?([^\s<>;]+@[^\s<>;]+)>?",
                             re.IGNORECASE | re.MULTILINE)
ACTION_FIELD = re.compile(r"^action:\s*([\w-]+)", re.IGNORECASE | re.MULTILINE)
STATUS_LINE = re.compile(r"^(?:status|diagnostic-code):.*$", re.IGNORECASE | re.MULTILINE)
# Only the head of a report is read: real ones are small, and a forged one must not cost more.
REPORT_BYTES = 64 * 1024
MAX_REASON = 500


@dataclass(frozen=True)
class DeliveryFailure:
    """What a report of failed delivery says: the Message-IDs it reports on, the recipients it says failed for
    good (None when it has no per-recipient status, as old plain-text bounces), its words, and its text (in which
    such a bounce names the recipient)."""

    message_ids: tuple[str, ...]
    failed: frozenset[str] | None
    reason: str
    text: str

    def names(self, recipient: str) -> bool:
        """Whether the report says delivery to `recipient` failed."""
        recipient = recipient.lower()
        return recipient in self.failed if self.failed is not None else recipient in self.text


def delivery_failure(msg: Inbound) -> DeliveryFailure | None:
    """The report, when `msg` is a genuine report that delivery failed; None for anything else.

    Genuine: it comes the way mail systems send reports (the null return path of RFC 5321 §4.5.5, or from
    MAILER-DAEMON/postmaster), and, when it has a delivery-status part, that part says "Action: failed" for a
    recipient: a delay ("delayed") or a success notice ("delivered", "relayed") fails nothing. The caller still
    checks that the report names one of our Message-IDs and that message's recipient: a stranger knows neither.
    """
    if not (msg.return_path == "" or BOUNCE_SENDER.match(msg.from_addr or msg.from_name)):
        return None
    text = msg.text[:REPORT_BYTES].lower()
    statuses = [part.data[:REPORT_BYTES].decode("utf-8", "replace") for part in msg.attachments
                if part.content_type in DELIVERY_STATUS_PARTS]
    failed: frozenset[str] | None = None
    reason = ""
    if statuses:
        found = set()
        for status in statuses:
            # Blocks are separated by blank lines; the first is about the reporting MTA, not a recipient.
            for block in re.split(r"\r?\n\s*\r?\n", status):
                action = ACTION_FIELD.search(block)
                recipient = RECIPIENT_FIELD.search(block)
                if action and recipient and action.group(1).lower() == "failed":
                    found.add(recipient.group(1).lower())
            reason = reason or "; ".join(line.strip() for line in STATUS_LINE.findall(status))
        if not found:
            return None
        failed = frozenset(found)
    ids = bounced_message_ids(msg)
    if not ids:
        return None
    return DeliveryFailure(ids, failed, (reason or msg.subject or "delivery failed")[:MAX_REASON], text)
