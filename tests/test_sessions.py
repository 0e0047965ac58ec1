"""Logins and sessions against hostile clients: throttled per client address, same answer for every user name,
sessions ended on the server by logging out."""

from __future__ import annotations

from fastapi.testclient import TestClient

from mailticket.service import operators
from tests.factories import make_operator
from tests.test_web import Browser, signed_in

TOO_MANY = "too many login attempts from here; try again in a few minutes"


class From(Browser):
    """A browser at a client address of its own."""

    def __init__(self, app, address: str) -> None:
        super().__init__(app)
        self.client = TestClient(app, follow_redirects=False, client=(address, 50000))


def test_five_failures_refuse_that_name_from_that_address_known_or_not(app, store):
    make_operator(store, "ana")
    attacker = From(app, "203.0.113.7")
    for name in ("ana", "nobody"):
        answers = [attacker.log_in(name, f"guess {n}") for n in range(5)]
        assert [a.status_code for a in answers] == [401] * 5
        refused = attacker.log_in(name)  # even the right password now
        assert (refused.status_code, TOO_MANY in refused.text) == (429, True)
    # Ana herself, at her own desk, is not locked out by the attacker.
    assert From(app, "198.51.100.20").log_in("ana").status_code == 303


def test_a_client_trying_many_names_is_stopped_whatever_the_names(app, store):
    attacker = From(app, "203.0.113.8")
    statuses = [attacker.log_in(f"user{n}", "guess").status_code for n in range(25)]
    assert statuses[:20] == [401] * 20
    assert set(statuses[20:]) == {429}


def test_a_copied_session_cookie_is_refused_after_logout(app, store):
    ana = signed_in(app, store, "ana")
    copied = TestClient(app, follow_redirects=False, cookies=dict(ana.client.cookies))
    assert copied.get("/").status_code == 200
    assert ana.post("/logout").status_code == 303
    assert copied.get("/").headers["location"] == "/login?next=%2F"
    assert ana.get("/").status_code == 303


def test_logging_out_everywhere_ends_the_sessions_of_every_browser(app, store):
    ana = signed_in(app, store, "ana")
    laptop = Browser(app)
    assert laptop.log_in("ana").status_code == 303
    assert laptop.get("/").status_code == 200
    assert ana.post("/logout/everywhere").status_code == 303
    assert laptop.get("/").status_code == 303
    assert ana.get("/").status_code == 303


def test_disabling_an_operator_ends_their_sessions_at_once(app, store):
    ana = signed_in(app, store, "ana")
    with store.transaction() as session:
        operators.disable(session, "ana")
    assert ana.get("/").status_code == 303
    assert ana.log_in("ana").status_code == 401
