"""What ingest takes (a fetched message) and gives back (the outcome of each, the counts of a pass): plain values."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mailticket.mail.loops import DeliveryFailure

CREATED, APPENDED, DUPLICATE, QUARANTINED = "created", "appended", "duplicate", "quarantined"


@dataclass
class PollCounts:
    """What one polling pass did (SPEC §3 poll-once)."""

    fetched: int = 0
    created: int = 0
    appended: int = 0
    duplicates: int = 0
    autoreplies: int = 0
    quarantined: int = 0
    spam: int = 0

    def add(self, other: "PollCounts") -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True)
class Outcome:
    result: str  # CREATED, APPENDED, DUPLICATE or QUARANTINED
    ticket_id: int | None = None
    reason: str = ""
    autoreply: bool = False
    spam: bool = False
    failure: DeliveryFailure | None = None  # a report that one of our messages could not be delivered


@dataclass(frozen=True)
class Fetched:
    """One message to ingest: its bytes, when the server received it, and where it came from; `size` is its size in
    the mailbox when `raw` holds only its head (a message over the limit is fetched no further), and `held_back`
    the (file name, size) of the parts left there."""

    raw: bytes
    received_at: datetime
    uid: int | None = None
    size: int | None = None
    held_back: tuple[tuple[str, int], ...] = ()
