"""Mail that cannot become a ticket: why (`unusable`), and keeping its bytes with the reason (`quarantine`); and the
note on a ticket whose message was too big to read whole (`oversize_note`)."""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime

from sqlalchemy.orm import Session

from mailticket.db.models import Quarantine
from mailticket.db.store import insert_for
from mailticket.mail.parse import INVALID_SENDER, Inbound

MAX_SHORT_REASON = 500

log = logging.getLogger(__name__)


def unusable(msg: Inbound) -> str | None:
    """Why a parsed message must be quarantined instead of stored, or None. Broken MIME is no reason: such mail is
    stored with what could be read (its headers, whatever text there is), and its raw bytes stay with it."""
    invalid_sender = next((d for d in msg.defects if d.startswith(INVALID_SENDER)), None)
    if invalid_sender is not None:
        # Answering it could send mail to whatever the address smuggles in (a list of others, a header).
        return f"the sender address is not a valid e-mail address ({invalid_sender.partition(': ')[2]})"
    if not msg.headers or not (msg.from_addr or msg.header("message-id") or msg.header("date")):
        return "no usable header fields (no From, Message-ID or Date): not an e-mail message"
    return None


def oversize_note(size: int, limit: int, held_back: tuple[tuple[str, int], ...], *, mailbox: str | None,
                  folder: str | None, uid: int | None) -> str:
    """The note on the ticket of a message over `limits.max_message_bytes`, of which only the head was read."""
    parts = ", ".join(f"{name} ({_megabytes(size)})" for name, size in held_back) or "its attachments"
    where = f"mailbox {mailbox or '?'}, folder {folder or '?'}" + (f", UID {uid}" if uid is not None else "")
    return (f"This message is {_megabytes(size)}, over limits.max_message_bytes ({_megabytes(limit)}): only its "
            f"beginning was read. Held back: {parts}. The whole message stays in {where}.")


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


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
    return insert_for(conn)(Quarantine).on_conflict_do_nothing(index_elements=["sha256"])
