"""`mailticket backup PATH [--force]`: a consistent copy of the database, taken while the service runs.

SQLite: SQLite's online backup API copies the configured database file into PATH in one step, inside one read
snapshot, so writers go on meanwhile and the copy is the database as of one moment. The copy is a single file
(rollback journal, no -wal beside it), checked with PRAGMA integrity_check, and only then put at PATH.
PostgreSQL: the database server has its own tool; the command prints the pg_dump line to run (never the password).
Only the [database] settings are read: a backup works from a shell where the mail secrets cannot be read.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from mailticket.cli_common import EXIT_OK, UsageError, load_settings

# How long the copy waits for a writer's lock before it gives up (it seldom waits at all: WAL readers do not).
BUSY_TIMEOUT_SECONDS = 30.0


class BackupFailed(RuntimeError):
    """The copy was made but is not sound (a runtime failure, exit 1); nothing was left at PATH."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int


def add_commands(commands: argparse._SubParsersAction) -> None:
    backup = commands.add_parser(
        "backup", help="copy the database while the service runs (SQLite), or print the pg_dump command (PostgreSQL)")
    backup.add_argument("path", metavar="PATH", help="the file to write the copy to")
    backup.add_argument("--force", action="store_true", help="replace PATH if it exists")
    backup.set_defaults(run=cmd_backup)


def cmd_backup(args: argparse.Namespace) -> int:
    url = make_url(load_settings(args).database.url)
    backend = url.get_backend_name()
    if backend == "postgresql":
        print(pg_dump_advice(url, args.path))
        return EXIT_OK
    if backend != "sqlite":
        raise UsageError(f"backup knows SQLite and PostgreSQL, not {backend} ([database] url)")
    source = sqlite_file(url)
    result = backup_sqlite(source, Path(args.path), force=args.force)
    print(f"backup of {source} written to {result.path} ({result.size} bytes, integrity ok)")
    return EXIT_OK


def sqlite_file(url: URL) -> Path:
    if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
        raise UsageError(f"[database] url {url.render_as_string(hide_password=True)} names no database file to copy")
    return Path(url.database)


def backup_sqlite(source: Path, target: Path, *, force: bool = False) -> BackupResult:
    """Copies the SQLite database at `source` into the new file `target`; refuses an existing one unless `force`."""
    if not source.is_file():
        raise UsageError(f"no SQLite database at {source} (see [database] url)")
    if target.is_dir():
        raise UsageError(f"{target} is a directory; give the name of the file to write")
    if target.resolve() in {source.resolve(), *(Path(f"{source.resolve()}{end}") for end in ("-wal", "-shm"))}:
        raise UsageError(f"{target} is the database itself; write the backup somewhere else")
    if (target.exists() or target.is_symlink()) and not force:
        raise UsageError(f"{target} exists; pass --force to replace it")
    if not target.parent.is_dir():
        raise UsageError(f"{target.parent} is not a directory")
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    os.close(handle)
    partial = Path(name)
    try:
        _copy(source, partial)
        _sync(partial)
        _put_in_place(partial, target, force=force)
    finally:
        for leftover in (partial, Path(f"{partial}-journal"), Path(f"{partial}-wal"), Path(f"{partial}-shm")):
            leftover.unlink(missing_ok=True)
    _sync(target.parent)
    return BackupResult(target, target.stat().st_size)


def _copy(source: Path, partial: Path) -> None:
    # mode=rw: a source that vanished is an error here, never a new empty database.
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=rw", uri=True, timeout=BUSY_TIMEOUT_SECONDS)
    try:
        dst = sqlite3.connect(partial, timeout=BUSY_TIMEOUT_SECONDS)
        try:
            # pages=-1: every page in one step, inside one read snapshot of the source (consistent while others
            # write); a copy in steps would restart each time another process writes.
            src.backup(dst, pages=-1)
            # The copy is one self-contained file: no WAL beside it that a restore could forget.
            dst.execute("PRAGMA journal_mode=DELETE").fetchall()
            check = [row[0] for row in dst.execute("PRAGMA integrity_check").fetchall()]
            if check != ["ok"]:
                raise BackupFailed(f"the copy failed PRAGMA integrity_check: {'; '.join(check[:5])}")
        finally:
            dst.close()
    finally:
        src.close()


def _put_in_place(partial: Path, target: Path, *, force: bool) -> None:
    if force:
        os.replace(partial, target)
        return
    try:
        # A hard link fails if the target appeared meanwhile: never replaces a file without --force.
        os.link(partial, target)
    except FileExistsError:
        raise UsageError(f"{target} exists; pass --force to replace it") from None
    except OSError:
        if target.exists():
            raise UsageError(f"{target} exists; pass --force to replace it") from None
        os.replace(partial, target)  # a file system without hard links


def _sync(path: Path) -> None:
    """Flushes the file (or the directory's new entry) to disk, as far as the platform allows."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def pg_dump_advice(url: URL, path: str) -> str:
    """The pg_dump (and pg_restore) command lines for this database: host, port, user and name, never the password."""
    connection = []
    host = url.host or _query(url, "host")
    port = url.port or _query(url, "port")
    for flag, value in (("--host", host), ("--port", port), ("--username", url.username)):
        if value:
            connection.append(f"{flag}={shlex.quote(str(value))}")
    env = [f"PGSSLMODE={shlex.quote(sslmode)}"] if (sslmode := _query(url, "sslmode")) else []
    database = shlex.quote(url.database or "postgres")
    dump = [*env, "pg_dump", "--format=custom", f"--file={shlex.quote(path)}", *connection, database]
    restore = [*env, "pg_restore", "--clean", "--if-exists", "--no-owner", *connection, f"--dbname={database}",
               shlex.quote(path)]
    return "\n".join([
        "The database is PostgreSQL: back it up with pg_dump, which copies it consistently while the service runs.",
        "pg_dump reads the password from ~/.pgpass or PGPASSWORD; it is never printed here. Run:",
        "",
        "  " + " ".join(dump),
        "",
        "To restore: stop the service, then run",
        "  " + " ".join(restore),
        "and `mailticket migrate` before starting the service again.",
    ])


def _query(url: URL, key: str) -> str | None:
    value = url.query.get(key)
    if isinstance(value, tuple):
        value = value[0] if value else None
    return value or None
