"""Engine and sessions: SQLite (WAL, foreign keys, busy timeout) or PostgreSQL; the caller owns the transaction."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from datetime import datetime

from sqlalchemy import Connection, Engine, create_engine, event, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from mailticket.clock import utcnow

log = logging.getLogger(__name__)

# How long a SQLite writer waits for another writer before giving up (ms).
SQLITE_BUSY_TIMEOUT_MS = 30_000
READONLY = "mailticket_readonly"
# A server checkpoints SQLite's WAL this often in a thread of its own: a checkpoint syncs the database file,
# tens of milliseconds on a slow disk, which would otherwise land on the request whose commit triggers it.
CHECKPOINT_INTERVAL_SECONDS = 1.0
# ...and commits still checkpoint when the WAL passes this many pages (about 40 MB), should that thread lag.
WAL_SAFETY_PAGES = 10_000


def make_engine(url: str, *, background_checkpoints: bool = False) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        # psycopg 3 is the driver we ship; plain postgresql:// would ask for psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy's events, not the driver, decide where transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        if background_checkpoints:
            cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_SAFETY_PAGES}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # Writers take the write lock up front: a deferred transaction that later upgrades
        # to a writer fails at once with "database is locked" instead of waiting its turn.
        statement = "BEGIN" if conn.get_execution_options().get(READONLY) else "BEGIN IMMEDIATE"
        # Straight to the driver: this runs at the start of every transaction, and needs none of the
        # statement machinery.
        conn.connection.driver_connection.execute(statement)

    return engine


def insert_for(db: Session | Connection):
    """The database's own INSERT, the one with ON CONFLICT (PostgreSQL's and SQLite's are written alike)."""
    dialect = db.dialect if isinstance(db, Connection) else db.get_bind().dialect
    return postgresql.insert if dialect.name == "postgresql" else sqlite.insert


def db_now(session: Session) -> datetime:
    """The one clock claims and leases are judged by: the database's on PostgreSQL (shared by every host), else ours."""
    if session.get_bind().dialect.name == "postgresql":
        return session.scalar(select(func.now()))
    return utcnow()


class Store:
    """The database: `transaction()` for work that writes, `reading()` for pages and reports, `read_connection()`
    for one or two Core reads."""

    def __init__(self, url: str, *, background_checkpoints: bool = False) -> None:
        """`background_checkpoints` (for the long-running server): SQLite's WAL is copied back into the
        database by a thread of its own, not by whichever request's commit crosses the WAL's size limit."""
        self.url = url
        self.engine = make_engine(url, background_checkpoints=background_checkpoints)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._read_engine = self.engine.execution_options(**{READONLY: True})
        self._read_sessions = sessionmaker(self._read_engine, expire_on_commit=False)
        # SQLite has one writer at a time. Its busy handler makes waiting writers sleep in growing steps
        # (up to 100 ms), so threads of one process queue here instead and take turns at once. This only
        # orders the writers: every rule (claims, outbox picks) is still enforced by the database, which
        # also guards against other processes.
        self._write_turn = threading.RLock() if self.dialect == "sqlite" else contextlib.nullcontext()
        self._stop_checkpoints = threading.Event()
        if background_checkpoints and self.dialect == "sqlite":
            threading.Thread(target=self._checkpoint_loop, daemon=True, name="wal-checkpoint").start()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: committed when the block ends, rolled back if it raises."""
        with self._write_turn, self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        with self._read_sessions() as session, session.begin():
            yield session

    @contextmanager
    def read_connection(self) -> Iterator[Connection]:
        """A bare connection for one or two Core reads: cheaper than a session on a hot path."""
        with self._read_engine.connect() as conn, conn.begin():
            yield conn

    def _checkpoint_loop(self) -> None:
        while not self._stop_checkpoints.wait(CHECKPOINT_INTERVAL_SECONDS):
            try:
                conn = self.engine.raw_connection()
                try:
                    # PASSIVE: copies what no reader still needs, never waits for or blocks a writer.
                    conn.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                finally:
                    conn.close()
            except Exception:  # noqa: BLE001 - the next round tries again; the safety limit bounds the WAL
                log.warning("WAL checkpoint failed", exc_info=True)

    def ping(self) -> bool:
        try:
            # A reader: on SQLite a writer's connection would wait behind a long write, and /healthz and the
            # systemd watchdog would take a busy database for a dead one.
            with self.read_connection() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - any failure means "not reachable" for /healthz
            return False

    def migrate(self, revision: str = "head") -> None:
        from mailticket.db.migrate import upgrade

        upgrade(self.engine, revision)

    def dispose(self) -> None:
        self._stop_checkpoints.set()
        self.engine.dispose()
