"""One change feed per process: reads the ticket history (and who is viewing what) that every process and instance
writes to the database, and hands each change to the live pages (web/live.py) of this process."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import anyio
from sqlalchemy import bindparam, select

from mailticket.clock import utcnow
from mailticket.db.models import Event
from mailticket.db.store import Store, db_now
from mailticket.service import history, operators, presence

log = logging.getLogger(__name__)

# How often the history is read: a change made anywhere reaches the pages within about this plus a page fetch.
INTERVAL = 0.25
PRESENCE_INTERVAL = 1.0
BATCH = 1000
# PostgreSQL hands out event ids before commit, so a transaction may commit an id lower than one already read:
# ids of the last RECHECK seconds are read again; a transaction holds an event that long before committing very
# rarely (SQLite's one writer commits them in order).
RECHECK = 1.0
# A page that falls this many polls behind (a stalled connection) is told to refresh itself instead.
QUEUE_SIZE = 100
NEWER = select(Event.id, Event.ticket_id, Event.kind).where(Event.id > bindparam("after")).order_by(Event.id)


@dataclass(frozen=True)
class Change:
    """A ticket's history grew: the pages showing it fetch it again."""

    id: int
    ticket_id: int
    kind: str


@dataclass(frozen=True)
class Viewers:
    """Who has the ticket's page open now: (operator id, name) pairs."""

    ticket_id: int
    people: tuple[tuple[int, str], ...]


class Signal:
    """RESET: changes were lost on the way to this page (it fell behind), it should fetch everything again.
    ENDED: the page's session ended (logged out, expired, operator disabled)."""


RESET, ENDED = Signal(), Signal()
# A listener is handed, per poll, the changes it follows together (one wake-up however many there are).
Item = tuple[Change, ...] | Viewers | Signal


@dataclass(frozen=True)
class Listener:
    ticket_id: int | None  # None: every ticket (the queue page)
    page_id: str | None  # its presence row (ticket pages)
    session_token: str


class Feed:
    """Started by the first page that listens; each listener has a queue of Items: the changes of its ticket (or
    of all tickets, for the queue page) and who views its ticket."""

    def __init__(self, store: Store, clock: Callable[[], datetime] = utcnow, interval: float = INTERVAL) -> None:
        self.store, self.clock, self.interval = store, clock, interval
        self.listeners: dict[asyncio.Queue[Item], Listener] = {}
        self.viewers: dict[int, tuple[tuple[int, str], ...]] = {}
        self._floor: int | None = None  # every id up to here is handed out
        self._recent: dict[int, float] = {}  # ids above the floor handed out, and when
        self._task: asyncio.Task | None = None
        self._presence_read = 0.0
        self._checked = time.monotonic()
        self._start = threading.Lock()

    def listen(self, listener: Listener) -> asyncio.Queue[Item]:
        queue: asyncio.Queue[Item] = asyncio.Queue(QUEUE_SIZE)
        self.listeners[queue] = listener
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="change-feed")
        return queue

    def stop_listening(self, queue: asyncio.Queue[Item]) -> None:
        self.listeners.pop(queue, None)

    def since(self, after: int, ticket_id: int | None) -> list[Change] | None:
        """The changes after event `after` (of one ticket, or all), for a page that reconnects; None: too many."""
        query = NEWER if ticket_id is None else NEWER.where(Event.ticket_id == ticket_id)
        with self.store.read_connection() as conn:
            rows = conn.execute(query.limit(BATCH + 1), {"after": after}).all()
        return None if len(rows) > BATCH else [Change(*row) for row in rows]

    def prime(self) -> None:
        """Fixes where the feed starts (the newest event now), if it has not started: a listener that reads the
        history up to now after this misses nothing between that read and the feed."""
        with self._start:
            if self._floor is None:
                self._floor = self.newest()

    def newest(self) -> int:
        with self.store.read_connection() as conn:
            return history.newest_id(conn)

    async def _run(self) -> None:
        while self.listeners:
            try:
                changes, people = await anyio.to_thread.run_sync(self._read)
            except Exception:  # the database went away for a moment: the pages keep what they show
                log.warning("the change feed could not read the database; trying again", exc_info=True)
                await asyncio.sleep(1.0)
                continue
            if changes:
                self._hand_out_changes(changes)
            if people is not None:
                for ticket_id in set(people) | set(self.viewers):
                    if people.get(ticket_id, ()) != self.viewers.get(ticket_id, ()):
                        self._hand_out(Viewers(ticket_id, people.get(ticket_id, ())))
                self.viewers = people
            if time.monotonic() - self._checked >= presence.REFRESH.total_seconds():
                await self._check()
            if len(changes) < BATCH:
                await asyncio.sleep(self.interval)
        # Nobody listens: the next listener starts from the newest change then, not from a backlog.
        self._task, self._floor, self.viewers = None, None, {}
        self._recent.clear()

    def _read(self) -> tuple[list[Change], dict | None]:
        """New changes (in a worker thread), and every PRESENCE_INTERVAL who is viewing what."""
        self.prime()
        with self.store.read_connection() as conn:
            rows = conn.execute(NEWER.limit(BATCH), {"after": self._floor}).all()
        now = time.monotonic()
        changes = [Change(*row) for row in rows if row.id not in self._recent]
        for change in changes:
            self._recent[change.id] = now
        window = RECHECK if self.store.dialect == "postgresql" else 0.0
        for event_id, seen in list(self._recent.items()):
            if now - seen >= window:
                del self._recent[event_id]
                self._floor = max(self._floor, event_id)
        people = None
        if now - self._presence_read >= PRESENCE_INTERVAL:
            self._presence_read = now
            with self.store.reading() as session:
                people = presence.viewers(session, db_now(session))
        return changes, people

    async def _check(self) -> None:
        """Every presence.REFRESH, for all the pages at once: they are still open (presence), and their sessions
        still live; a page whose session ended is told so."""
        self._checked = time.monotonic()
        listeners = list(self.listeners.items())
        try:
            alive = await anyio.to_thread.run_sync(self._still_here, listeners)
        except Exception:  # checked again next time
            log.warning("the change feed could not check its pages' sessions", exc_info=True)
            return
        for queue, listener in listeners:
            if listener.session_token not in alive:
                _put(queue, ENDED)

    def _still_here(self, listeners: list[tuple[asyncio.Queue[Item], Listener]]) -> set[str]:
        pages = [listener.page_id for _, listener in listeners if listener.page_id is not None]
        if pages:
            with self.store.transaction() as session:
                presence.touch(session, pages, db_now(session))
        with self.store.reading() as session:
            return operators.live_sessions(session, {listener.session_token for _, listener in listeners},
                                           self.clock())

    def _hand_out_changes(self, changes: list[Change]) -> None:
        by_ticket: dict[int, list[Change]] = {}
        for change in changes:
            by_ticket.setdefault(change.ticket_id, []).append(change)
        everything = tuple(changes)
        for queue, listener in list(self.listeners.items()):
            batch = everything if listener.ticket_id is None else tuple(by_ticket.get(listener.ticket_id, ()))
            if batch:
                _put(queue, batch)

    def _hand_out(self, item: Viewers) -> None:
        for queue, listener in list(self.listeners.items()):
            if listener.ticket_id == item.ticket_id:
                _put(queue, item)


def _put(queue: asyncio.Queue[Item], item: Item) -> None:
    try:
        queue.put_nowait(item)
    except asyncio.QueueFull:
        # This page lost changes: it is told once, when it catches up, to fetch everything again.
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(RESET)
