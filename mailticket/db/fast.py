"""Statements built with SQLAlchemy, run straight on the SQLite driver: the claim calls' hot path, without the
per-call machinery (about 60 µs a statement on our VM, against 6 µs for the driver itself)."""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.selectable import Select, TextualSelect

Processor = Callable[[Any], Any] | None


class Prepared:
    """One statement compiled once for one dialect and one set of parameter names, with the type conversions
    SQLAlchemy would apply to its parameters and to the columns it returns."""

    def __init__(self, statement: ClauseElement, dialect: Dialect, keys: Sequence[str]) -> None:
        self.statement = statement  # see FastConnection.execute
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
        if getattr(compiled, "insert_prefetch", None) or getattr(compiled, "update_prefetch", None):
            # Python-side column defaults are computed by SQLAlchemy's execution, which this bypasses.
            raise ValueError(f"pass every column explicitly to run {statement} on the driver")
        self.sql = compiled.string
        self.names = tuple(compiled.positiontup or ())
        binds = [compiled.binds[name] for name in self.names]
        if any(bind.expanding for bind in binds):
            raise ValueError(f"{statement} has an IN list, which only SQLAlchemy's execution expands")
        # The dialect's own form of each type (SQLite's DATETIME, say), as SQLAlchemy's execution uses.
        processors = [bind.type.dialect_impl(dialect).bind_processor(dialect) for bind in binds]
        # The values the statement carries itself (the 1 of `fence + 1`); a missing parameter is a KeyError.
        fixed = compiled.construct_params(_check=False)
        self.binds = [(name, bind.required, fixed.get(name), process)
                      for name, bind, process in zip(self.names, binds, processors)]
        columns = _returned_columns(statement)
        labels = [column.key for column in columns]
        if len(set(labels)) != len(labels):
            raise ValueError(f"label the columns of {statement}: two share a name")
        self.row = namedtuple("Row", labels) if labels else None
        self.result_processors: list[Processor] = [column.type.dialect_impl(dialect).result_processor(dialect, None)
                                                   for column in columns]

    def parameters(self, params: Mapping[str, Any]) -> list[Any]:
        values = []
        for name, required, fixed, process in self.binds:
            value = params[name] if required or name in params else fixed
            values.append(value if process is None or value is None else process(value))
        return values

    def rows(self, raw: list[tuple]) -> list[Any]:
        if self.row is None:
            return raw
        processors = self.result_processors
        return [self.row(*(value if process is None or value is None else process(value)
                           for value, process in zip(row, processors))) for row in raw]


def _returned_columns(statement: ClauseElement) -> list[Any]:
    if isinstance(statement, (Select, TextualSelect)):
        return list(statement.selected_columns)
    if isinstance(statement, UpdateBase) and statement._returning:
        return list(statement.exported_columns)
    return []  # a textual statement without declared columns: values as the driver gives them


class Result:
    """The part of SQLAlchemy's result the hot path uses: every row is fetched at once."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows, self.rowcount = rows, rowcount

    def all(self) -> list[Any]:
        return self._rows

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def one_or_none(self) -> Any:
        if len(self._rows) > 1:
            raise LookupError("more than one row where at most one was expected")
        return self.first()

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None


class FastConnection:
    """A SQLite driver connection inside a transaction, executing prepared statements (see `Prepared`)."""

    def __init__(self, driver: sqlite3.Connection, dialect: Dialect, cache: dict[tuple, Prepared]) -> None:
        self.driver, self.dialect, self._cache = driver, dialect, cache

    def execute(self, statement: ClauseElement, params: Mapping[str, Any] | None = None) -> Result:
        params = params or {}
        # By identity: the hot path's statements are module constants, built once; the cache keeps each one
        # alive, so that its id is never another's.
        key = (id(statement), tuple(params))
        prepared = self._cache.get(key)
        if prepared is None:
            prepared = self._cache[key] = Prepared(statement, self.dialect, list(params))
        cursor = self.driver.execute(prepared.sql, prepared.parameters(params))
        rows = prepared.rows(cursor.fetchall())
        return Result(rows, cursor.rowcount)
