"""Mail that cannot become a ticket: why (`unusable`), and keeping its bytes with the reason (`quarantine`)."""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailticket.config import Settings
from mailticket.db.models import Quarantine
from mailticket.mail.parse import INVALID_SENDER, Inbound

# Defects after which the message body cannot be trusted to be what the sender wrote.
FATAL_DEFECTS = ("StartBoundaryNotFoundDefect", "MultipartInvariantViolationDefect")
MAX_SHORT_REASON = 500

log = logging.getLogger(__name__)


def unusable(raw: bytes, msg: Inbound | None, settings: Settings, size: int | None = None) -> str | None:
    """Why a message must be quarantined instead of stored, or None; `size` is its size in the mailbox when `raw`
    holds only its head."""
    limit = settings.limits.max_message_bytes
    size = len(raw) if size is None else size
    if size > limit:
        kept = "" if len(raw) >= size else f"; its first {len(raw)} bytes are kept here, all of it stays in the mailbox"
        return f"message of {size} bytes exceeds limits.max_message_bytes ({limit}){kept}"
    if msg is None:
        return None
    invalid_sender = next((d for d in msg.defects if d.startswith(INVALID_SENDER)), None)
    if invalid_sender is not None:
        # Answering it could send mail to whatever the address smuggles in (a list of others, a header).
        return f"the sender address is not a valid e-mail address ({invalid_sender.partition(': ')[2]})"
    if not msg.headers or not (msg.from_addr or msg.header("message-id") or msg.header("date")):
        return "no usable header fields (no From, Message-ID or Date): not an e-mail message"
    fatal = [d for d in msg.defects if any(name in d for name in FATAL_DEFECTS)]
    if fatal:
        return "broken MIME structure: " + "; ".join(fatal)
    return None


def quarantine(
    session: Session, raw: bytes, reason: str, *, mailbox: str | None, folder: str | None, uid: int | None,
    received_at: datetime | None, now: datetime, size: int | None = None,
) -> None:
    """Keeps the bytes with the reason, in a savepoint of its own; the same bytes quarantined again are stored once.

    Should the database refuse the row as it is, it is written again with nothing but the bytes and a short
    reason: a message must never be lost because its quarantine entry could not be written.
    """
    values = dict(
        sha256=hashlib.sha256(raw).hexdigest(), mailbox=mailbox, folder=folder, uid=uid, reason=reason,
        size=len(raw) if size is None else size, received_at=received_at, created_at=now, raw=raw,
    )
    try:
        with session.begin_nested():
            conn = session.connection()
            conn.execute(_insert_ignore(conn).values(**values))
    except Exception:  # noqa: BLE001 - written again below, with only what cannot be refused
        log.exception("quarantine entry refused; keeping the bytes with a short reason")
        with session.begin_nested():
            conn = session.connection()
            conn.execute(_insert_ignore(conn).values(
                **dict(values, mailbox=None, folder=None, reason=reason[:MAX_SHORT_REASON])))


def _insert_ignore(conn):
    # The same bytes quarantined again (refetched after a crash, a UIDVALIDITY change) are one entry.
    insert_for = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    return insert_for(Quarantine).on_conflict_do_nothing(index_elements=["sha256"])
