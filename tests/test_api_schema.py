"""Schemathesis against the JSON API on SQLite: no request the OpenAPI document allows, or nearly allows, is a 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from tests.factories import make_operator, make_ticket
from tests.test_api import make_app, token_for

# Bounded so that the whole run stays well under a minute: every operation, a few dozen cases each.
MAX_EXAMPLES = 25


@pytest.fixture
def seeded_store(sqlite_url):
    from mailticket.db.store import Store

    store = Store(sqlite_url)
    for n in range(3):
        make_ticket(store, sender=f"customer{n}@example.com", subject=f"Order {n} is late",
                    message_id=f"seed{n}@example.com")
    make_operator(store, "ana", admin=True)
    yield store
    store.dispose()


@pytest.fixture
def auth_headers(seeded_store) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(seeded_store, 'ana')}"}


@pytest.fixture
def api_schema(seeded_store):
    app = make_app(seeded_store)
    # The document also lists the HTML pages; only the JSON API is under test here.
    return schemathesis.openapi.from_asgi("/api/openapi.json", app).include(path_regex="^/api/v1/")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_makes_the_api_fail_with_a_server_error(case, auth_headers):
    case.call_and_validate(headers=auth_headers, checks=[not_a_server_error])
