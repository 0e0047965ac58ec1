"""Merging a duplicate ticket on real SQLite and PostgreSQL: what moves, later mail, refusals, the web form."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from mailticket.claims import HeldByOther
from mailticket.db.models import NOTE, OUT, RESOLVED, Event, Message, Operator, Outbox, Participant, Ticket
from mailticket.db.store import Store
from mailticket.service import actions
from mailticket.service import claims as claim_service
from mailticket.service.tickets import TicketNotFound
from mailticket.service.ingest import ingest
from mailticket.service.intake import APPENDED
from mailticket.service.merge import MergeError, merge
from tests.factories import SETTINGS, T0, make_operator, make_ticket
from tests.mails import make_mail
from tests.factories import WEB_SETTINGS
from tests.test_web import element, signed_in

ANA = "ana@customer.example"
LATER = T0 + timedelta(hours=2)


def put(store: Store, at=LATER, **mail):
    with store.transaction() as session:
        return ingest(session, make_mail(**mail), settings=SETTINGS, received_at=at, now=at, mailbox="support")


def do_merge(store: Store, duplicate: int, into: int, admin_id: int, at=LATER) -> None:
    with store.transaction() as session:
        merge(session, duplicate, into, session.get(Operator, admin_id), at, SETTINGS)


def messages_of(store: Store, ticket_id: int) -> list[tuple[str, str]]:
    with store.reading() as session:
        return [tuple(row) for row in session.execute(
            select(Message.direction, Message.message_id).where(Message.ticket_id == ticket_id).order_by(Message.id))]


def event_kinds(store: Store, ticket_id: int) -> list[str]:
    with store.reading() as session:
        return list(session.scalars(select(Event.kind).where(Event.ticket_id == ticket_id).order_by(Event.id)))


def two_tickets(store: Store) -> tuple[int, int]:
    """The survivor, opened first, and a duplicate the same customer sent a while later."""
    survivor = make_ticket(store, sender=ANA, subject="Order 1234 never arrived", message_id="first@customer.example",
                           at=T0)
    duplicate = make_ticket(store, sender=ANA, subject="Where is order 1234??", message_id="dup@customer.example",
                            at=T0 + timedelta(minutes=30))
    return survivor, duplicate


def test_merge_keeps_every_message_note_and_history_event(store):
    survivor, duplicate = two_tickets(store)
    boss = make_operator(store, "boss", admin=True)
    ana = make_operator(store, "ana")
    with store.transaction() as session:
        operator = session.get(Operator, ana)
        actions.add_note(session, duplicate, operator, "Same customer as the other ticket", now=T0 + timedelta(hours=1))
        held = claim_service.claim(session, duplicate, operator, 900, now=T0 + timedelta(hours=1))
        actions.reply(session, SETTINGS, duplicate, operator, "We are looking into it.", held.token,
                      now=T0 + timedelta(hours=1, minutes=10))
        actions.add_note(session, survivor, operator, "Called the carrier", now=T0 + timedelta(hours=1))
        # The duplicate's reply went out first (as the outbox would have recorded it), and work was done on both.
        dup = session.get(Ticket, duplicate)
        dup.first_response_at = T0 + timedelta(hours=1, minutes=11)
        dup.first_response_seconds = 2460.0
        dup.handle_seconds = 600.0
        session.get(Ticket, survivor).handle_seconds = 120.0
    before = messages_of(store, survivor) + messages_of(store, duplicate)
    events_before = len(event_kinds(store, survivor)) + len(event_kinds(store, duplicate))

    do_merge(store, duplicate, survivor, boss)

    assert sorted(messages_of(store, survivor)) == sorted(before)
    assert [d for d, _ in messages_of(store, survivor)].count(NOTE) == 2
    assert [d for d, _ in messages_of(store, survivor)].count(OUT) == 1
    assert messages_of(store, duplicate) == []
    survivor_events, duplicate_events = event_kinds(store, survivor), event_kinds(store, duplicate)
    # Every earlier event moved; the duplicate keeps only the record of its resolution and of the merge.
    assert duplicate_events == ["status", "merged"]
    assert len(survivor_events) == events_before + 1 and survivor_events[-1] == "merged"
    with store.reading() as session:
        kept, gone = session.get(Ticket, survivor), session.get(Ticket, duplicate)
        assert (gone.status, gone.merged_into_id) == (RESOLVED, survivor)
        assert kept.merged_into_id is None and kept.status == "open"
        assert kept.handle_seconds == 720.0
        assert kept.created_at == T0
        assert kept.first_response_at == T0 + timedelta(hours=1, minutes=11)
        # Counted again from the survivor's (earlier) start.
        assert kept.first_response_seconds == 4260.0
        assert session.scalar(select(func.count()).select_from(Outbox).where(Outbox.ticket_id == survivor)) == 1
        assert list(session.scalars(select(Participant.address).where(Participant.ticket_id == survivor))) == [ANA]
        assert session.scalar(select(func.count()).select_from(Participant)
                              .where(Participant.ticket_id == duplicate)) == 0
        detail = session.scalar(select(Event.detail).where(Event.ticket_id == survivor, Event.kind == "merged"))
        assert detail == f"#{duplicate} merged into this ticket"


def test_later_mail_by_the_merged_tickets_tag_or_message_ids_lands_in_the_survivor(store):
    survivor, duplicate = two_tickets(store)
    boss = make_operator(store, "boss", admin=True)
    do_merge(store, duplicate, survivor, boss)

    by_tag = put(store, sender=ANA, subject=f"Re: [#{duplicate}] Where is order 1234??", message_id="tag@c.example")
    by_reply = put(store, sender=ANA, subject="still waiting", message_id="reply@c.example",
                   in_reply_to="dup@customer.example")
    by_subject = put(store, sender=ANA, subject="Re: Where is order 1234??", message_id="subject@c.example")
    assert [(o.result, o.ticket_id) for o in (by_tag, by_reply, by_subject)] == [(APPENDED, survivor)] * 3
    # A stranger quoting the merged ticket's tag still gets a ticket of their own.
    stranger = put(store, sender="eve@elsewhere.example", subject=f"[#{duplicate}] hello", message_id="eve@e.example")
    assert stranger.ticket_id not in (survivor, duplicate)
    with store.reading() as session:
        assert session.get(Ticket, duplicate).status == RESOLVED


def test_mail_follows_a_chain_of_merges(store):
    first, second = two_tickets(store)
    third = make_ticket(store, sender=ANA, subject="Order 1234 again", message_id="third@customer.example",
                        at=T0 + timedelta(hours=1))
    boss = make_operator(store, "boss", admin=True)
    do_merge(store, second, first, boss)
    do_merge(store, first, third, boss)
    outcome = put(store, sender=ANA, subject=f"[#{second}] any news?", message_id="chain@c.example")
    assert (outcome.result, outcome.ticket_id) == (APPENDED, third)
    assert len(messages_of(store, third)) == 4


def test_merge_refuses_what_it_must(store):
    survivor, duplicate = two_tickets(store)
    other = make_ticket(store, sender="bo@customer.example", subject="Refund", message_id="other@customer.example")
    boss = make_operator(store, "boss", admin=True)
    ana = make_operator(store, "ana")

    def refusal(dup: int, into: int, who: int = boss, why: type[Exception] = MergeError) -> str:
        with pytest.raises(why) as refused:
            do_merge(store, dup, into, who)
        return str(refused.value)

    assert refusal(duplicate, survivor, ana) == "only an admin may merge tickets"
    assert refusal(duplicate, duplicate) == f"ticket #{duplicate} cannot be merged into itself"
    with pytest.raises(TicketNotFound):
        do_merge(store, duplicate, 99999, boss)
    with store.transaction() as session:
        claim_service.claim(session, duplicate, session.get(Operator, ana), 900, now=LATER - timedelta(minutes=1))
    assert refusal(duplicate, survivor, why=HeldByOther).startswith("Ana is answering this ticket")
    # Nothing moved on any refusal.
    assert [d for d, _ in messages_of(store, duplicate)] == ["in"]
    with store.transaction() as session:
        claim_service.release(session, duplicate, session.get(Operator, ana), now=LATER - timedelta(seconds=30))
    do_merge(store, duplicate, survivor, boss)
    assert refusal(other, duplicate) == f"ticket #{duplicate} was merged into #{survivor}; merge into that one"
    assert refusal(duplicate, other) == f"ticket #{duplicate} was already merged into #{survivor}"


def test_an_admin_merges_from_the_ticket_page(app, store):
    survivor, duplicate = two_tickets(store)
    ana = signed_in(app, store, "ana")
    boss = signed_in(app, store, "boss", admin=True)
    assert 'id="merge-form"' not in ana.get(f"/tickets/{duplicate}").text
    assert ana.post(f"/tickets/{duplicate}/merge", {"into": str(survivor)}).status_code == 403
    assert 'id="merge-form"' in boss.get(f"/tickets/{duplicate}").text
    assert boss.client.post(f"/tickets/{duplicate}/merge", data={"into": str(survivor)}).status_code == 403

    for into, reason in (("abc", "give the number"), (str(duplicate), "into itself"), ("424242", "no ticket #424242")):
        refused = boss.post(f"/tickets/{duplicate}/merge", {"into": into})
        assert refused.status_code in (409, 422) and reason in element(refused.text, "flash-error")

    merged = boss.post(f"/tickets/{duplicate}/merge", {"into": f"#{survivor}"})
    assert merged.status_code == 303 and merged.headers["location"] == f"/tickets/{survivor}"
    page = boss.get(f"/tickets/{survivor}").text
    assert f"Ticket #{duplicate} merged into #{survivor}" in element(page, "flash")
    assert "Where is order 1234??" in page and "Order 1234 never arrived" in page
    old = boss.get(f"/tickets/{duplicate}").text
    assert f'Merged into <a href="/tickets/{survivor}">#{survivor}</a>' in element(old, "merged-into")
    assert 'id="merge-form"' not in old


@pytest.mark.usefixtures("fast_passwords")
def test_an_admin_merges_a_duplicate_in_the_browser(sqlite_store, serve_app, operator_page):
    store = sqlite_store
    survivor, duplicate = two_tickets(store)
    make_operator(store, "boss", admin=True, name="Boss")
    base_url = serve_app(WEB_SETTINGS, store)
    page = operator_page(base_url, "boss")

    page.goto(f"/tickets/{duplicate}")
    page.fill("#merge-into", str(survivor))
    page.click("#merge-button")
    page.wait_for_url(f"{base_url}/tickets/{survivor}")
    expect(page.locator("#flash")).to_contain_text(f"Ticket #{duplicate} merged into #{survivor}")
    expect(page.locator("#thread article.message-in")).to_have_count(2)
    page.goto(f"/tickets/{duplicate}")
    expect(page.locator("#merged-into")).to_contain_text(f"Merged into #{survivor}")
    page.click("#merged-into a")
    page.wait_for_url(f"{base_url}/tickets/{survivor}")
    assert put(store, sender=ANA, subject=f"Re: [#{duplicate}] thanks", message_id="after@c.example").ticket_id \
        == survivor
