"""Polling use case: fetch what is new in a mailbox, ingest it batch by batch, and only then flag or move it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select

from mailticket import imap
from mailticket.clock import utcnow
from mailticket.config import MailboxSettings, Settings
from mailticket.db.models import MailboxState
from mailticket.db.store import Store
from mailticket.service import mailboxes
from mailticket.service.ingest import ingest_batch
from mailticket.service.intake import APPENDED, CREATED, DUPLICATE, QUARANTINED, Fetched, Outcome, PollCounts
from mailticket.service.undelivered import apply_bounces

log = logging.getLogger(__name__)

# Bytes fetched in one round trip at most, so memory does not grow with the mailbox.
MAX_BATCH_BYTES = 32 * 1024 * 1024


class Stopping(Exception):
    """Raised between batches when the daemon shuts down."""


def poll_mailbox(
    store: Store, settings: Settings, box: MailboxSettings, *,
    connect: Callable[[MailboxSettings], imap.MailboxConnection] | None = None,
    clock: Callable[[], datetime] = utcnow,
    between_batches: Callable[[], None] | None = None,
) -> PollCounts:
    """One pass over one mailbox; safe to interrupt anywhere, since the watermark commits with the messages.

    `between_batches` runs after each committed batch: the daemon renews its mailbox lease there, and
    raises to stop early when it is shutting down. The pass's outcome is kept for `mailbox status`.
    """
    try:
        counts = _pass(store, settings, box, connect or mailboxes.connector(store, settings), clock, between_batches)
    except Stopping:
        raise
    except Exception as exc:
        mailboxes.record_failure(store, settings, box, exc, clock())
        raise
    mailboxes.record_ok(store, box, clock())
    return counts


def _pass(store: Store, settings: Settings, box: MailboxSettings,
          connect: Callable[[MailboxSettings], imap.MailboxConnection], clock: Callable[[], datetime],
          between_batches: Callable[[], None] | None) -> PollCounts:
    counts = PollCounts()
    with connect(box) as conn:
        uidvalidity = conn.select()
        last_uid = _watermark(store, box, uidvalidity, clock())
        # Messages committed by a pass that died before flagging or moving them.
        conn.finish_leftovers(last_uid)
        for batch in conn.batches(last_uid, batch_size=box.batch_size, max_batch_bytes=MAX_BATCH_BYTES,
                                  max_message_bytes=settings.limits.max_message_bytes):
            batch_counts = PollCounts(fetched=len(batch))
            with store.transaction() as session:
                now = clock()
                items = [Fetched(f.raw, f.internaldate, f.uid, f.size, f.held_back) for f in batch]
                outcomes = ingest_batch(session, items, settings=settings, now=now, mailbox=box.name,
                                        folder=box.folder, queue=box.queue)
                for outcome in outcomes:
                    _count(batch_counts, outcome)
                # Reports that our mail could not be delivered, once their messages are stored.
                apply_bounces(session, [o.failure for o in outcomes if o.failure], now, settings)
                state = session.scalar(
                    select(MailboxState).where(MailboxState.mailbox == box.name, MailboxState.folder == box.folder)
                )
                state.last_uid = max(state.last_uid, max(f.uid for f in batch))
                state.updated_at = now
            # Only now that the batch is committed may the messages leave the inbox.
            conn.finish([f.uid for f in batch])
            counts.add(batch_counts)
            if between_batches is not None:
                between_batches()
    # An empty pass is not news: at info the journal gets a line only when mail came.
    log.log(logging.INFO if counts.fetched else logging.DEBUG, "polled mailbox %s: %s", box.name, counts)
    return counts


def _watermark(store: Store, box: MailboxSettings, uidvalidity: int, now: datetime) -> int:
    """The last UID ingested; a new UIDVALIDITY starts over (duplicates are then found by Message-ID)."""
    with store.transaction() as session:
        state = session.scalar(
            select(MailboxState).where(MailboxState.mailbox == box.name, MailboxState.folder == box.folder)
        )
        if state is None:
            state = MailboxState(mailbox=box.name, folder=box.folder, uidvalidity=uidvalidity, last_uid=0,
                                 updated_at=now)
            session.add(state)
        elif state.uidvalidity != uidvalidity:
            log.warning("mailbox %s folder %s: UIDVALIDITY changed from %s to %s, fetching everything again",
                        box.name, box.folder, state.uidvalidity, uidvalidity)
            state.uidvalidity, state.last_uid, state.updated_at = uidvalidity, 0, now
        return state.last_uid


def _count(counts: PollCounts, outcome: Outcome) -> None:
    if outcome.result == CREATED:
        counts.created += 1
    elif outcome.result == APPENDED:
        counts.appended += 1
    elif outcome.result == DUPLICATE:
        counts.duplicates += 1
    elif outcome.result == QUARANTINED:
        counts.quarantined += 1
    if outcome.result in (CREATED, APPENDED):
        counts.autoreplies += outcome.autoreply
        counts.spam += outcome.spam
