"""Outbox use case: lease due mail, send it over a few SMTP sessions, record each outcome in its own transaction."""

# Delivery is at least once, never "at most once": the one window that cannot be closed is a relay that accepted
# a message (250 after DATA) while this process died before committing "sent". The row stays `sending` until its
# lease runs out, and the next pass, here or on another instance, sends it again. It sends the very bytes stored
# when the operator replied, with the same Message-ID, so the customer's client shows one message (clients and
# most servers drop a repeated Message-ID): a harmless duplicate delivery, and no reply is ever lost. Everything
# else is fenced: a row is leased by one conditional UPDATE, and each outcome is written only by the sender that
# holds the lease (checked by the attempt number the lease was taken with).

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.orm import Session

from mailticket import smtp
from mailticket.config import Settings, SmtpSettings
from mailticket.db.models import FAILED, QUEUED, SENDING, SENT, Message, Outbox
from mailticket.db.store import Store, db_now
from mailticket.clock import utcnow
from mailticket.service import outbound, reactions, tokens
from mailticket.service.events import ReplySent
from mailticket.service.undelivered import undeliverable

log = logging.getLogger(__name__)

# Waits after the 1st, 2nd, ... temporary failure: 30 s, 1 m, 2 m, ... never more than an hour.
BACKOFF_BASE_SECONDS = 30.0
BACKOFF_FACTOR = 2.0
BACKOFF_CAP_SECONDS = 3600.0
# With the backoff above, about three hours of a relay refusing before a reply is given up and its ticket reopened.
MAX_ATTEMPTS = 10
# Parallel SMTP sessions per pass: enough for a shop's volume, few enough for any relay's per-client limit.
CONNECTIONS = 4
# Rows leased in one go: small, so that several instances share a backlog instead of one taking it all.
PICK_CHUNK = 4 * CONNECTIONS
# Rows per pass at most; the scheduler's next pass takes the rest.
DEFAULT_LIMIT = 1000
# A lease outlives the slowest sends a worker may start under it; a crashed sender's rows wait this long.
MIN_LEASE_SECONDS = 300.0
LEASE_SENDS = 3
SENT_, RETRIED, GAVE_UP, LOST = "sent", "retried", "failed", "lost"


@dataclass
class SendCounts:
    sent: int = 0
    retried: int = 0
    failed: int = 0


@dataclass(frozen=True)
class Picked:
    """A leased row with what it takes to send it; `attempts` (counting this one) fences the lease."""

    id: int
    ticket_id: int
    kind: str
    recipients: tuple[str, ...]
    attempts: int
    message_id: str
    sender: str
    raw: bytes
    operator_id: int | None  # who wrote it (a reply)


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th temporary failure."""
    return timedelta(seconds=min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * BACKOFF_FACTOR ** (attempts - 1)))


def lease_seconds(settings: SmtpSettings) -> float:
    return max(MIN_LEASE_SECONDS, LEASE_SENDS * smtp.longest_send(settings))


def pick(session: Session, now: datetime, limit: int, lease: float) -> list[Picked]:
    """Leases up to `limit` due rows: queued and due, or left `sending` by a sender whose lease ran out."""
    due = (Outbox.status.in_((QUEUED, SENDING)), Outbox.next_attempt_at <= now,
           or_(Outbox.lease_until.is_(None), Outbox.lease_until < now))
    # Rows another instance is leasing at this moment are passed over, not waited for. (SQLAlchemy leaves FOR UPDATE
    # out on SQLite, whose writers take the whole database at BEGIN.)
    candidates = (select(Outbox.id).where(*due).order_by(Outbox.next_attempt_at, Outbox.id).limit(limit)
                  .with_for_update(skip_locked=True))
    ids = session.scalars(candidates).all()
    if not ids:
        return []
    # The due conditions again, so the UPDATE alone decides: a row another sender leased since our SELECT is not
    # taken, and RETURNING says which rows are ours. (SQLite's BEGIN IMMEDIATE serialises pickers besides.)
    won = session.scalars(
        update(Outbox).where(Outbox.id.in_(ids), *due)
        .values(status=SENDING, lease_until=now + timedelta(seconds=lease), attempts=Outbox.attempts + 1)
        .returning(Outbox.id).execution_options(synchronize_session=False)
    ).all()
    rows = session.execute(
        select(Outbox.id, Outbox.ticket_id, Outbox.kind, Outbox.recipients, Outbox.attempts, Message.message_id,
               Message.from_addr, Message.raw, Message.operator_id)
        .join(Message, Message.id == Outbox.message_id).where(Outbox.id.in_(won))
        .order_by(Outbox.next_attempt_at, Outbox.id)
    ).all()
    return [Picked(r.id, r.ticket_id, r.kind, tuple(r.recipients or ()), r.attempts, r.message_id, r.from_addr,
                   r.raw, r.operator_id) for r in rows]


async def flush(store: Store, settings: Settings, *, now: datetime | None = None, limit: int = DEFAULT_LIMIT,
                connections: int = CONNECTIONS, stopping: Callable[[], bool] = lambda: False,
                tls_context: ssl.SSLContext | None = None) -> SendCounts:
    """One sending pass. `now` fixes the clock for the whole pass (tests); by default each step reads the DB's.

    Once `stopping()` is true (a shutdown), no new send starts: rows not yet sent are handed back at once.
    """
    token = None
    if settings.smtp.authorization:
        # Before any row is taken: without a token nothing can be sent, and no row should spend an attempt on it.
        try:
            token = await asyncio.to_thread(tokens.access_token, store, settings, settings.smtp.authorization)
        except tokens.TokenError as exc:
            log.warning("outbox: nothing sent in this pass: %s", exc)
            return SendCounts()
    run = _Pass(store, settings, now, tls_context, stopping, connections)
    run.token = token
    queue: asyncio.Queue[tuple[Picked, float] | None] = asyncio.Queue(maxsize=PICK_CHUNK)
    picked = 0
    with run.executor:
        workers = [asyncio.create_task(run.work(queue)) for _ in range(connections)]
        try:
            while picked < limit and not run.halted():
                started = time.monotonic()
                rows = await run.call(_pick, store, now, min(PICK_CHUNK, limit - picked), run.lease)
                if not rows:
                    break
                picked += len(rows)
                # A send that starts after this could still be running when the lease runs out.
                deadline = started + run.lease - smtp.longest_send(settings.smtp)
                for row in rows:
                    await queue.put((row, deadline))
        finally:
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
    if picked:
        log.info("outbox pass: %s", run.counts)
    return run.counts


def flush_sync(store: Store, settings: Settings, **kw) -> SendCounts:
    """`flush` for callers without an event loop: the CLI and the scheduler's worker threads."""
    return asyncio.run(flush(store, settings, **kw))


class _Pass:
    """One pass's state: counts, whether to stop, and the threads that talk to the store."""

    def __init__(self, store: Store, settings: Settings, now: datetime | None,
                 tls_context: ssl.SSLContext | None, stopping: Callable[[], bool], connections: int) -> None:
        self.store, self.settings, self.now, self.tls_context = store, settings, now, tls_context
        self.stopping = stopping
        self.lease = lease_seconds(settings.smtp)
        # SQLite has one writer: threads would only queue on its lock (and sleep in its busy handler). PostgreSQL
        # commits several transactions at once, and a commit there waits for the disk, so each worker gets one.
        threads = 1 if store.dialect == "sqlite" else connections + 1
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="outbox-db")
        self.counts = SendCounts()
        self.unavailable: smtp.RelayUnavailable | None = None
        self.token: str | None = None  # the relay's OAuth2 access token, fetched once per pass

    def halted(self) -> bool:
        return self.unavailable is not None or self.stopping()

    async def relay_token(self) -> str:
        return self.token or ""

    async def call(self, fn, *args):
        # The one crossing from the event loop to the (blocking) store.
        return await asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(fn, *args))

    async def work(self, queue: asyncio.Queue) -> None:
        async with smtp.Connection(self.settings.smtp, tls_context=self.tls_context,
                                   access_token=self.relay_token) as conn:
            while (item := await queue.get()) is not None:
                try:
                    await self._deliver(conn, *item)
                except Exception:  # noqa: BLE001 - one row's trouble (say, the DB gone) must not stop the others
                    log.exception("outbox row %s stays leased; it is tried again after its lease", item[0].id)

    async def _deliver(self, conn: smtp.Connection, row: Picked, deadline: float) -> None:
        if self.halted() or time.monotonic() > deadline:
            # Not tried in this pass: handed back as it was, due again at once.
            await self.call(_release, self.store, row)
            self.counts.retried += 1
            return
        error = ""
        try:
            refused = await conn.send(row.raw, row.sender, row.recipients)
        except smtp.PermanentFailure as exc:
            error = str(exc)
            outcome = await self.call(_give_up, self.store, row, error, self.now, self.settings)
        except smtp.TemporaryFailure as exc:
            if isinstance(exc, smtp.RelayUnavailable):
                self.unavailable = exc
            if isinstance(exc, smtp.LoginRefused) and self.settings.smtp.authorization:
                # A token the relay no longer takes (revoked before its time): the next pass renews it.
                await self.call(tokens.expire_now, self.store, self.settings.smtp.authorization, utcnow())
            error = str(exc)
            outcome = await self.call(_retry, self.store, row, error, self.now, self.settings)
        else:
            if refused:
                log.warning("message %s: accepted, but not for %s", row.message_id, refused)
            outcome = await self.call(_sent, self.store, row, refused, self.now, self.settings)
        if outcome != SENT_:
            log.warning("message %s to %s, attempt %d: %s (%s)", row.message_id, ", ".join(row.recipients),
                        row.attempts, outcome, error or "marked by another sender")
        if outcome != LOST:
            setattr(self.counts, outcome, getattr(self.counts, outcome) + 1)


def _pick(store: Store, now: datetime | None, limit: int, lease: float) -> list[Picked]:
    with store.transaction() as session:
        return pick(session, now or db_now(session), limit, lease)


# Statements built once, so that each is compiled once; bound names differ from column names (SQLAlchemy's rule).
_OURS = (Outbox.id == bindparam("row"), Outbox.status == SENDING, Outbox.attempts == bindparam("attempt"))
RELEASE = update(Outbox).where(*_OURS).values(status=QUEUED, lease_until=None, attempts=bindparam("attempt") - 1)
RETRY = update(Outbox).where(*_OURS).values(status=QUEUED, lease_until=None, next_attempt_at=bindparam("due"),
                                             last_error=bindparam("error"))
GIVE_UP = update(Outbox).where(*_OURS).values(status=FAILED, lease_until=None, last_error=bindparam("error"))
# Not fenced by the lease: whoever delivered the message may say so, even after another sender took the row over.
MARK_SENT = (update(Outbox).where(Outbox.id == bindparam("row"), Outbox.status.in_((QUEUED, SENDING)))
             .values(status=SENT, sent_at=bindparam("at"), lease_until=None, last_error=bindparam("error")))


def _fence(row: Picked) -> dict:
    # A sender that took the row over after our lease ran out counted one more attempt, so this no longer matches.
    return {"row": row.id, "attempt": row.attempts}


def _release(store: Store, row: Picked) -> None:
    with store.transaction() as session:
        session.connection().execute(RELEASE, _fence(row))


def _sent(store: Store, row: Picked, refused: dict[str, str], now: datetime | None, settings: Settings) -> str:
    with store.transaction() as session:
        conn, at = session.connection(), now or db_now(session)
        error = "; ".join(f"refused {address}: {why}" for address, why in refused.items())
        if conn.execute(MARK_SENT, {"row": row.id, "at": at, "error": error}).rowcount != 1:
            return LOST  # another sender marked it first
        if row.kind == outbound.REPLY:
            # Only a reply is a response (SPEC §7): acknowledgements and notifications are not. In a savepoint: a
            # reaction that fails must not undo "sent", or the very reply would go out again after its lease.
            try:
                with session.begin_nested():
                    reactions.announce(session, settings, ReplySent(row.ticket_id, row.operator_id, at))
            except Exception:  # noqa: BLE001 - the reply is delivered; only its figures are missing
                log.exception("reply %s to ticket %s was sent; recording its figures failed", row.message_id,
                              row.ticket_id)
        return SENT_


def _retry(store: Store, row: Picked, error: str, now: datetime | None, settings: Settings) -> str:
    if row.attempts >= MAX_ATTEMPTS:
        return _give_up(store, row, f"{error} (gave up after {row.attempts} attempts)", now, settings)
    with store.transaction() as session:
        due = (now or db_now(session)) + backoff(row.attempts)
        done = session.connection().execute(RETRY, {**_fence(row), "due": due, "error": error}).rowcount
        return RETRIED if done == 1 else LOST


def _give_up(store: Store, row: Picked, reason: str, now: datetime | None, settings: Settings) -> str:
    with store.transaction() as session:
        at = now or db_now(session)
        if session.connection().execute(GIVE_UP, {**_fence(row), "error": reason}).rowcount != 1:
            return LOST
        undeliverable(session, row.id, reason, at, event="undelivered", settings=settings)
        return GAVE_UP
