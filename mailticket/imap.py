"""imapclient adapter: UIDVALIDITY/UID watermark, batched BODY.PEEK fetches, move or flag after commit."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from mailticket.config import MailboxSettings


@dataclass(frozen=True)
class Fetched:
    uid: int
    internaldate: datetime  # timezone-aware UTC: when the IMAP server received the message
    raw: bytes


class MailboxConnection:
    """One logged-in IMAP connection to one mailbox folder."""

    def __init__(self, settings: MailboxSettings, *, timeout: float = 30.0) -> None:
        raise NotImplementedError

    def __enter__(self) -> "MailboxConnection": ...

    def __exit__(self, *exc) -> None: ...

    def select(self) -> int:
        """Selects the folder (read-write) and returns its UIDVALIDITY."""

    def batches(self, after_uid: int, *, batch_size: int, max_batch_bytes: int) -> Iterator[list[Fetched]]:
        """Messages with UID > after_uid, ascending, in batches: one FETCH round trip per batch."""

    def finish(self, uids: Sequence[int]) -> None:
        """After the commit: move to processed_folder when set, else set \\Seen."""
