"""SQLAlchemy statements run straight on the SQLite driver (db/fast.py): the same answers, or a loud refusal."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import bindparam, insert, select, text

from mailticket.db.fast import FastConnection, Prepared
from mailticket.db.models import Event, Operator
from mailticket.db.store import Store
from mailticket.service import claims, operators
from mailticket.service.history import INSERT_EVENT
from tests.factories import T0, make_operator, make_ticket

EVENTS_OF = select(Event.kind, Event.at, Event.actor).where(Event.ticket_id == bindparam("t")).order_by(Event.id)


@pytest.fixture
def sqlite_store(sqlite_url) -> Iterator[Store]:
    store = Store(sqlite_url)
    yield store
    store.dispose()


def both_ways(store: Store, statement, params: dict) -> tuple[list, list]:
    """The rows SQLAlchemy gives, and the rows the driver gives through FastConnection."""
    with store.engine.connect() as conn:
        through_sqlalchemy = [tuple(row) for row in conn.execute(statement, params).all()]
    with store.core_transaction() as fast:
        assert isinstance(fast, FastConnection)
        through_driver = [tuple(row) for row in fast.execute(statement, params).all()]
    return through_sqlalchemy, through_driver


def test_the_driver_gives_the_rows_and_types_sqlalchemy_gives(sqlite_store):
    ticket = make_ticket(sqlite_store)
    make_operator(sqlite_store, "ana", name="Ana")
    with sqlite_store.transaction() as session:
        token = operators.new_token(session, "ana")
        ana = operators.by_username(session, "ana")
        claims.claim(session, ticket, ana, 600, now=T0)

    sqlalchemy_rows, driver_rows = both_ways(sqlite_store, claims.READ_CLAIM, {"t": ticket})
    assert driver_rows == sqlalchemy_rows
    [row] = driver_rows
    assert row[2] == "Ana" and row[7] == T0 + timedelta(seconds=600)  # an aware UTC datetime, as SQLAlchemy's
    assert row[7].utcoffset() == timedelta(0)

    sqlalchemy_rows, driver_rows = both_ways(sqlite_store, operators.CALLER_BY_TOKEN,
                                             {"h": operators.hash_token(token)})
    assert driver_rows == sqlalchemy_rows and driver_rows[0][4] is False  # a boolean, not SQLite's 0
    assert both_ways(sqlite_store, EVENTS_OF, {"t": ticket})[1][-1][0] == "claimed"


def test_rows_are_named_like_sqlalchemys(sqlite_store):
    ticket = make_ticket(sqlite_store)
    with sqlite_store.core_transaction() as fast:
        row = fast.execute(claims.READ_CLAIM, {"t": ticket}).one_or_none()
    assert row is None  # never claimed
    with sqlite_store.core_transaction() as fast:
        fast.execute(INSERT_EVENT, dict(ticket_id=ticket, at=T0, kind="noted", actor="ana", detail="x"))
        [event] = fast.execute(EVENTS_OF, {"t": ticket}).all()[-1:]
    assert (event.kind, event.at, event.actor) == ("noted", T0, "ana")


def test_a_missing_parameter_is_an_error_not_a_null(sqlite_store):
    with sqlite_store.core_transaction() as fast, pytest.raises(KeyError, match="'t'"):
        fast.execute(claims.READ_CLAIM, {})


def test_a_statement_relying_on_a_python_side_default_is_refused(sqlite_store):
    # Event.detail defaults to "" in Python: only SQLAlchemy's own execution would fill it in.
    with pytest.raises(ValueError, match="pass every column"):
        Prepared(insert(Event), sqlite_store.engine.dialect, ["ticket_id", "at", "kind", "actor"])
    with pytest.raises(ValueError, match="IN list"):
        Prepared(select(Operator.id).where(Operator.id.in_([1, 2])), sqlite_store.engine.dialect, [])


def kinds(store: Store, ticket: int) -> list[str]:
    with store.core_transaction() as fast:
        return [row.kind for row in fast.execute(EVENTS_OF, {"t": ticket}).all()]


def test_a_claim_transaction_that_raises_leaves_nothing_behind(sqlite_store):
    ticket = make_ticket(sqlite_store)
    before = kinds(sqlite_store, ticket)
    with pytest.raises(RuntimeError), sqlite_store.core_transaction() as fast:
        fast.execute(INSERT_EVENT, dict(ticket_id=ticket, at=T0, kind="noted", actor=None, detail=""))
        raise RuntimeError("the caller changed its mind")
    assert kinds(sqlite_store, ticket) == before


def test_after_a_database_error_the_next_claim_transaction_works(sqlite_store):
    ticket = make_ticket(sqlite_store)
    before = kinds(sqlite_store, ticket)
    with pytest.raises(sqlite3.OperationalError), sqlite_store.core_transaction() as fast:
        fast.execute(INSERT_EVENT, dict(ticket_id=ticket, at=T0, kind="lost", actor=None, detail=""))
        fast.execute(text("INSERT INTO no_such_table VALUES (1)"))
    with sqlite_store.core_transaction() as fast:
        fast.execute(INSERT_EVENT, dict(ticket_id=ticket, at=T0, kind="noted", actor=None, detail=""))
    assert kinds(sqlite_store, ticket) == before + ["noted"]
