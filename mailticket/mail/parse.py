"""Turns raw message bytes into an `Inbound` value; never raises on bad mail, records defects instead."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes
    content_id: str | None = None
    inline: bool = False


@dataclass(frozen=True)
class Inbound:
    # Message-ID without angle brackets; synthetic ("<sha256-hex>@synthetic.mailticket") when missing,
    # derived from the raw bytes so that a re-fetch of the same bytes yields the same id.
    message_id: str
    synthetic_id: bool
    in_reply_to: tuple[str, ...]  # ids without angle brackets
    references: tuple[str, ...]  # oldest first, as in the header, without angle brackets
    from_addr: str  # lower-cased addr-spec, "" when none could be found
    from_name: str
    to_addrs: tuple[str, ...]  # lower-cased addr-specs of To and Cc
    reply_to: str | None
    return_path: str | None  # "" for the null return path <>, None when absent
    subject: str  # decoded, unfolded, stripped
    date: datetime | None  # timezone-aware, from the Date header
    text: str  # plain text (derived from HTML when the mail is HTML-only)
    html: str | None  # sanitised HTML, None when the mail has no HTML part
    attachments: tuple[Attachment, ...]
    headers: tuple[tuple[str, str], ...]  # (lower-cased name, decoded value), in order
    content_type: str  # of the top-level part, e.g. "multipart/report"
    size: int  # len(raw)
    defects: tuple[str, ...] = field(default=())

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None


def parse(raw: bytes) -> Inbound:
    raise NotImplementedError
