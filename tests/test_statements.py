"""The statements built once at import time are cached by SQLAlchemy: compiled once, not on every call."""

from __future__ import annotations

import importlib
import pkgutil

from sqlalchemy.sql.base import Executable

import mailticket


def prepared_statements() -> dict[str, Executable]:
    found = {}
    for module_info in pkgutil.walk_packages(mailticket.__path__, "mailticket."):
        if module_info.name.endswith("__main__"):
            continue
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            for key, statement in (value.items() if isinstance(value, dict) else [(None, value)]):
                if isinstance(statement, Executable):
                    found[f"{module_info.name}.{name}" + (f"[{key}]" if key else "")] = statement
    return found


def test_every_statement_built_at_import_has_a_cache_key():
    statements = prepared_statements()
    # The hot path's statements are among them (the walk found the modules).
    assert "mailticket.service.claims.TAKE_FREE_CLAIM" in statements
    assert "mailticket.service.operators.CALLER_BY_TOKEN" in statements
    # Without a cache key (a dialect's insert ... on conflict, say) a statement is compiled on every call.
    uncached = [name for name, statement in statements.items() if statement._generate_cache_key() is None]
    assert uncached == []
