"""Leases on real SQLite and PostgreSQL: one holder at a time, taken over after expiry."""

from __future__ import annotations

from datetime import timedelta

from mailticket.service.leases import acquire, release
from tests.factories import T0


def take(store, holder: str, at, ttl: float = 60) -> bool:
    with store.transaction() as session:
        return acquire(session, "poll:support", holder, ttl, at)


def test_a_held_lease_is_refused_to_another_instance(store):
    assert take(store, "a", T0)
    assert not take(store, "b", T0 + timedelta(seconds=30))


def test_the_holder_can_extend_its_lease(store):
    assert take(store, "a", T0)
    assert take(store, "a", T0 + timedelta(seconds=50))
    assert not take(store, "b", T0 + timedelta(seconds=100))


def test_an_expired_lease_is_taken_over(store):
    assert take(store, "a", T0)
    assert take(store, "b", T0 + timedelta(seconds=60))
    assert not take(store, "a", T0 + timedelta(seconds=61))


def test_a_released_lease_is_free_at_once(store):
    assert take(store, "a", T0)
    with store.transaction() as session:
        release(session, "poll:support", "a")
    assert take(store, "b", T0 + timedelta(seconds=1))
