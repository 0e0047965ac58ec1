"""The claim lock on real SQLite and PostgreSQL: exclusivity, expiry, renewal, fencing, history, handle time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from mailticket.claims import ClaimConflict, ClaimLost, NotHolder
from mailticket.db.models import Event, Message, Operator, Outbox, Ticket
from mailticket.service import actions
from mailticket.service import claims as svc
from tests.factories import SETTINGS, T0, make_operator, make_ticket

TTL = 900


@pytest.fixture
def world(store):
    ticket = make_ticket(store)
    ana = make_operator(store, "ana")
    bob = make_operator(store, "bob")
    boss = make_operator(store, "boss", admin=True)
    return store, ticket, ana, bob, boss


def op(session, operator_id) -> Operator:
    return session.get(Operator, operator_id)


def history(store, ticket) -> list[tuple[str, str]]:
    with store.reading() as session:
        return [(e.kind, e.actor) for e in session.scalars(select(Event).where(Event.ticket_id == ticket).order_by(Event.id))
                if e.kind not in ("created",)]


def test_a_second_claim_is_refused_and_names_the_holder(world):
    store, ticket, ana, bob, _ = world
    with store.transaction() as s:
        svc.claim(s, ticket, op(s, ana), TTL, now=T0)
    with pytest.raises(ClaimConflict) as refused, store.transaction() as s:
        svc.claim(s, ticket, op(s, bob), TTL, now=T0 + timedelta(minutes=1))
    assert refused.value.holder == "Ana"
    assert refused.value.expires_at == T0 + timedelta(seconds=TTL)
    assert "claimed by Ana until 10:15" in str(refused.value)


def test_an_expired_claim_can_be_taken_over_and_both_are_recorded(world):
    store, ticket, ana, bob, _ = world
    with store.transaction() as s:
        first = svc.claim(s, ticket, op(s, ana), TTL, now=T0)
    with store.transaction() as s:
        second = svc.claim(s, ticket, op(s, bob), TTL, now=T0 + timedelta(seconds=TTL + 1))
    assert second.holder_name == "Bob" and second.fence == first.fence + 1
    assert history(store, ticket) == [("claimed", "ana"), ("expired", "Ana"), ("claimed", "bob")]


def test_renewal_extends_a_live_claim_and_fails_once_it_is_lost(world):
    store, ticket, ana, bob, _ = world
    with store.transaction() as s:
        mine = svc.claim(s, ticket, op(s, ana), TTL, now=T0)
    with store.transaction() as s:
        renewed = svc.renew(s, ticket, op(s, ana), mine.token, TTL, now=T0 + timedelta(minutes=10))
    assert renewed.expires_at == T0 + timedelta(minutes=10, seconds=TTL)
    with store.transaction() as s:
        svc.claim(s, ticket, op(s, bob), TTL, now=T0 + timedelta(minutes=10, seconds=TTL + 1))
    with pytest.raises(ClaimLost, match="claimed by Bob"), store.transaction() as s:
        svc.renew(s, ticket, op(s, ana), mine.token, TTL, now=T0 + timedelta(minutes=40))


def test_a_reply_needs_the_current_token_of_a_live_claim(world):
    store, ticket, ana, bob, _ = world
    with store.transaction() as s:
        old = svc.claim(s, ticket, op(s, ana), TTL, now=T0)
    with store.transaction() as s:
        svc.release(s, ticket, op(s, ana), now=T0 + timedelta(minutes=1))
        svc.claim(s, ticket, op(s, ana), TTL, now=T0 + timedelta(minutes=2))
    with pytest.raises(ClaimLost), store.transaction() as s:
        actions.reply(s, SETTINGS, ticket, op(s, ana), "Hello", old.token, now=T0 + timedelta(minutes=3))
    with store.reading() as s:
        assert s.scalar(select(Outbox)) is None


def test_an_operator_cannot_release_or_reply_on_anothers_claim(world):
    store, ticket, ana, bob, _ = world
    with store.transaction() as s:
        mine = svc.claim(s, ticket, op(s, ana), TTL, now=T0)
    with pytest.raises(NotHolder), store.transaction() as s:
        svc.release(s, ticket, op(s, bob), now=T0 + timedelta(minutes=1))
    with pytest.raises(ClaimLost), store.transaction() as s:
        actions.reply(s, SETTINGS, ticket, op(s, bob), "Hi", mine.token, now=T0 + timedelta(minutes=1))
    with pytest.raises(NotHolder), store.transaction() as s:
        svc.break_claim(s, ticket, op(s, bob), now=T0 + timedelta(minutes=1))


def test_an_admin_can_break_a_claim(world):
    store, ticket, ana, _, boss = world
    with store.transaction() as s:
        svc.claim(s, ticket, op(s, ana), TTL, now=T0)
    with store.transaction() as s:
        svc.break_claim(s, ticket, op(s, boss), now=T0 + timedelta(minutes=1))
    with store.reading() as s:
        assert svc.read_claim(s, ticket).holder_id is None
    assert history(store, ticket)[-1] == ("broken", "boss")


def test_a_reply_queues_an_outbound_message_releases_the_claim_and_books_handle_time(world):
    store, ticket, ana, _, _ = world
    with store.transaction() as s:
        mine = svc.claim(s, ticket, op(s, ana), TTL, now=T0)
    with store.transaction() as s:
        message = actions.reply(s, SETTINGS, ticket, op(s, ana), "It ships today.", mine.token,
                                now=T0 + timedelta(minutes=4))
        message_id = message.message_id
    with store.reading() as s:
        outbox = s.scalar(select(Outbox))
        assert outbox.status == "queued"
        assert s.get(Message, outbox.message_id).message_id == message_id
        t = s.get(Ticket, ticket)
        assert t.handle_seconds == 240 and t.waiting_since is None
        assert svc.read_claim(s, ticket).holder_id is None
    assert [k for k, _ in history(store, ticket)] == ["claimed", "replied", "released"]


def test_the_expiry_job_frees_claims_past_their_time_and_records_it(world):
    store, ticket, ana, _, _ = world
    with store.transaction() as s:
        svc.claim(s, ticket, op(s, ana), TTL, now=T0)
    with store.transaction() as s:
        assert svc.expire_claims(s, now=T0 + timedelta(seconds=TTL - 1)) == 0
    with store.transaction() as s:
        assert svc.expire_claims(s, now=T0 + timedelta(seconds=TTL)) == 1
    with store.reading() as s:
        assert svc.read_claim(s, ticket).holder_id is None
        assert s.get(Ticket, ticket).handle_seconds == 0
    assert history(store, ticket)[-1] == ("expired", "ana")
