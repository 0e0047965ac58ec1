"""The ticket-matching rules of SPEC §5 as pure functions over what the store knows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

# matched_by values, in rule order.
DUPLICATE = "duplicate"
IN_REPLY_TO = "in-reply-to"
REFERENCES = "references"
SUBJECT_TAG = "subject-tag"
SUBJECT = "subject"
NEW = "new"


class Lookup(Protocol):
    """What the matching rules may ask the store."""

    def message_exists(self, message_id: str) -> bool: ...

    def ticket_of_message(self, message_id: str) -> int | None:
        """The ticket holding a stored message (inbound or outbound) with this id."""

    def takes_part(self, ticket_id: int, address: str) -> bool:
        """Whether the ticket exists and `address` sent or received one of its messages."""

    def ticket_by_subject(self, address: str, subject_key: str, since: datetime) -> int | None:
        """The newest ticket of `address` with this normalised subject and a message after `since`."""


@dataclass(frozen=True)
class Match:
    rule: str  # one of the constants above
    ticket_id: int | None  # None for DUPLICATE and NEW


def subject_key(subject: str) -> str:
    """The subject without reply/forward prefixes, list tags and ticket tags, case-folded."""
    raise NotImplementedError


def match(
    *,
    message_id: str,
    in_reply_to: Sequence[str],
    references: Sequence[str],
    from_addr: str,
    subject: str,
    lookup: Lookup,
    tag: "TicketTag",
    now: datetime,
    subject_threading_days: float,
) -> Match:
    raise NotImplementedError


class TicketTag:
    """The ticket tag in subjects, from a template such as "[#{id}]"."""

    def __init__(self, template: str = "[#{id}]") -> None:
        raise NotImplementedError

    def render(self, ticket_id: int) -> str: ...

    def find(self, subject: str) -> int | None: ...

    def strip(self, subject: str) -> str: ...


def follow_up(status: str, resolved_at: datetime | None, now: datetime, reopen_days: float) -> str:
    """For mail matched to a ticket: "append", "reopen" (resolved within reopen_days) or "new-linked"."""
    raise NotImplementedError
