"""Shared fixtures: a migrated store on real SQLite and real PostgreSQL, settings, raw-mail builders."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from mailticket.db.models import Base
from mailticket.db.store import Store
from mailticket.web.app import create_app
from tests.factories import NOW, WEB_SETTINGS

pytest_plugins = ["tests.dovecot", "tests.browser", "tests.smtp_sink", "tests.oauth_server"]

# The administrative PostgreSQL URL; tests create and drop their own databases there.
PG_ADMIN_URL = os.environ.get("MAILTICKET_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """A migrated SQLite file that each test copies, so migrations run once per session."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    store = Store(f"sqlite:///{path}")
    store.migrate()
    store.dispose()
    return path


@contextlib.contextmanager
def fresh_pg_database(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database (no tables), dropped afterwards; yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session, dropped at the end."""
    with fresh_pg_database("mailticket_test") as url:
        store = Store(url)
        store.migrate()
        store.dispose()
        yield url


def _empty_pg(url: str) -> None:
    engine = create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def sqlite_url(sqlite_template, tmp_path) -> str:
    path = tmp_path / "mailticket.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=BACKENDS)
def db_url(request) -> str:
    """A migrated, empty database URL, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    url = request.getfixturevalue("pg_database")
    _empty_pg(url)
    return url


@pytest.fixture(params=BACKENDS)
def empty_url(request, tmp_path) -> Iterator[str]:
    """A database with no tables at all, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/upgrade.db"
        return
    with fresh_pg_database("mailticket_upgrade") as url:
        yield url


@pytest.fixture
def app(store):
    """The web app on `store`, its clock stopped at NOW."""
    return create_app(WEB_SETTINGS, store, clock=lambda: NOW)


@pytest.fixture
def store(db_url) -> Iterator[Store]:
    store = Store(db_url)
    yield store
    store.dispose()
