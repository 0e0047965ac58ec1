"""One change feed per process: reads the ticket history (and who is viewing what) that every process and instance
writes to the database, and hands each change to the live pages (web/live.py) of this process."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass

import anyio
from sqlalchemy import bindparam, select

from mailticket.db.models import Event
from mailticket.db.store import Store, db_now
from mailticket.service import presence

log = logging.getLogger(__name__)

# How often the history is read: a change made anywhere reaches the pages within about this plus a page fetch.
INTERVAL = 0.25
PRESENCE_INTERVAL = 1.0
BATCH = 1000
# PostgreSQL hands out event ids before commit, so a transaction may commit an id lower than one already read:
# ids of the last RECHECK seconds are read again (SQLite's one writer commits them in order).
RECHECK = 3.0
# A page that falls this far behind (a stalled connection) is told to refresh itself instead.
QUEUE_SIZE = 1000
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


class Reset:
    """Changes were lost on the way to this page (it fell behind): it should fetch everything again."""


RESET = Reset()
Item = Change | Viewers | Reset


class Feed:
    """Started by the first page that listens; each listener has a queue of Items."""

    def __init__(self, store: Store, interval: float = INTERVAL) -> None:
        self.store = store
        self.interval = interval
        self.listeners: set[asyncio.Queue[Item]] = set()
        self.viewers: dict[int, tuple[tuple[int, str], ...]] = {}
        self._floor: int | None = None  # every id up to here is handed out
        self._recent: dict[int, float] = {}  # ids above the floor handed out, and when
        self._task: asyncio.Task | None = None
        self._presence_read = 0.0
        self._start = threading.Lock()

    def listen(self) -> asyncio.Queue[Item]:
        queue: asyncio.Queue[Item] = asyncio.Queue(QUEUE_SIZE)
        self.listeners.add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="change-feed")
        return queue

    def stop_listening(self, queue: asyncio.Queue[Item]) -> None:
        self.listeners.discard(queue)

    def since(self, after: int, ticket_id: int | None) -> list[Change] | None:
        """The changes after event `after` (of one ticket, or all), for a page that reconnects; None: too many."""
        limit = BATCH
        query = NEWER if ticket_id is None else NEWER.where(Event.ticket_id == ticket_id)
        with self.store.read_connection() as conn:
            rows = conn.execute(query.limit(limit + 1), {"after": after}).all()
        return None if len(rows) > limit else [Change(*row) for row in rows]

    def prime(self) -> None:
        """Fixes where the feed starts (the newest event now), if it has not started: a listener that reads the
        history up to now after this misses nothing between that read and the feed."""
        with self._start:
            if self._floor is None:
                self._floor = self.newest()

    def newest(self) -> int:
        with self.store.read_connection() as conn:
            return conn.execute(select(Event.id).order_by(Event.id.desc()).limit(1)).scalar() or 0

    async def _run(self) -> None:
        while self.listeners:
            try:
                changes, people = await anyio.to_thread.run_sync(self._read)
            except Exception:  # the database went away for a moment: the pages keep what they show
                log.warning("the change feed could not read the database; trying again", exc_info=True)
                await asyncio.sleep(1.0)
                continue
            for change in changes:
                self._hand_out(change)
            if people is not None:
                for ticket_id in set(people) | set(self.viewers):
                    if people.get(ticket_id, ()) != self.viewers.get(ticket_id, ()):
                        self._hand_out(Viewers(ticket_id, people.get(ticket_id, ())))
                self.viewers = people
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

    def _hand_out(self, item: Item) -> None:
        for queue in list(self.listeners):
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:
                # This page lost changes: it is told once, when it catches up, to fetch everything again.
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(RESET)
