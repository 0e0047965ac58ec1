"""Alembic environment: uses the engine mailticket hands over, or a URL for `alembic` on the command line."""

from __future__ import annotations

import os

from alembic import context

from mailticket.db.models import Base
from mailticket.db.store import make_engine

config = context.config


def _render_item(type_, obj, autogen_context):
    # Migrations spell the column type plainly, so they never import the application's models.
    if type_ == "type" and obj.__class__.__name__ == "UtcDateTime":
        return "sa.DateTime(timezone=True)"
    return False


def _engine():
    engine = config.attributes.get("engine")
    if engine is not None:
        return engine
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get("MAILTICKET_DATABASE_URL")
    if not url:
        raise SystemExit("give the database with `alembic -x url=...` or MAILTICKET_DATABASE_URL")
    return make_engine(url)


def run_migrations() -> None:
    engine = _engine()
    with engine.connect() as connection:
        # Batch mode rebuilds a SQLite table by copying it and dropping the original, which the foreign keys of
        # other tables' rows would refuse. The pragma is ignored inside a transaction, so it is set on the
        # driver's connection before one begins, and the keys are checked once at the end instead.
        sqlite = connection.dialect.name == "sqlite"
        driver = connection.connection.driver_connection
        if sqlite:
            driver.execute("PRAGMA foreign_keys=OFF")
        try:
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
                render_as_batch=True,
                compare_type=True,
                render_item=_render_item,
            )
            with context.begin_transaction():
                context.run_migrations()
                if sqlite and (broken := connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()):
                    raise RuntimeError(f"the migration left rows whose foreign keys point nowhere: {broken[:5]}")
            connection.commit()
        finally:
            if sqlite:
                driver.execute("PRAGMA foreign_keys=ON")


run_migrations()
