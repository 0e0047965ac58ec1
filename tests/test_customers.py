"""The customer's history on real SQLite and PostgreSQL: their tickets, notes and further addresses."""

from __future__ import annotations

import html
from datetime import timedelta

from sqlalchemy import select

from mailticket.db.models import CustomerAddress, Operator, Ticket
from mailticket.service import actions
from mailticket.service.status import change_status
from mailticket.service.ingest import ingest
from mailticket.service.intake import APPENDED, CREATED
from tests.factories import SETTINGS, T0, make_operator, make_ticket
from tests.mails import make_mail
from tests.test_web import element, signed_in

ANA = "ana@customer.example"
ANA_AT_WORK = "ana.silva@work.example"


def put(store, at, **mail):
    with store.transaction() as session:
        return ingest(session, make_mail(**mail), settings=SETTINGS, received_at=at, now=at, mailbox="support")


def customer_of(store, ticket_id: int) -> int:
    with store.reading() as session:
        return session.get(Ticket, ticket_id).customer_id


def test_the_customer_page_lists_their_tickets_with_times_and_their_notes(app, store):
    answered = make_ticket(store, sender=ANA, subject="Order 1234 never arrived", message_id="a@c.example", at=T0)
    waiting = make_ticket(store, sender=ANA, subject="Invoice please", message_id="b@c.example",
                          at=T0 + timedelta(hours=1))
    someone_else = make_ticket(store, sender="bo@customer.example", subject="Not Ana's", message_id="c@c.example")
    bob = make_operator(store, "bob")
    with store.transaction() as session:
        operator = session.get(Operator, bob)
        actions.add_note(session, answered, operator, "Carrier lost the parcel", now=T0 + timedelta(minutes=5))
        actions.add_note(session, someone_else, operator, "Other customer's note", now=T0 + timedelta(minutes=5))
        change_status(session, answered, "resolved", actor=operator, at=T0 + timedelta(hours=2), settings=SETTINGS)
        ticket = session.get(Ticket, answered)
        ticket.first_response_seconds, ticket.handle_seconds = 2700.0, 900.0
    customer = customer_of(store, answered)
    ana = signed_in(app, store, "ana")
    ana.post(f"/customers/{customer}/notes", {"notes": "Prefers Portuguese"})

    page = ana.get(f"/customers/{customer}").text
    rows = element(page, "customer-tickets")
    assert rows.index(f"#{waiting}") < rows.index(f"#{answered}")  # newest first
    assert "Not Ana&#39;s" not in rows and "Not Ana's" not in rows
    assert "status-resolved" in rows and "status-open" in rows
    assert "45 min" in rows and "15 min" in rows  # first response and handle time of the answered one
    assert "Carrier lost the parcel" in element(page, "customer-ticket-notes")
    assert "Other customer" not in page
    assert "Prefers Portuguese" in element(page, "customer-notes")
    assert ANA in element(page, "customer-addresses")


def test_mail_from_an_added_address_joins_that_customers_record(app, store):
    first = make_ticket(store, sender=ANA, subject="Order 1234 never arrived", message_id="a@c.example", at=T0)
    customer = customer_of(store, first)
    ana = signed_in(app, store, "ana")
    added = ana.post(f"/customers/{customer}/addresses", {"address": "  Ana.Silva@Work.example "})
    assert added.status_code == 303 and added.headers["location"] == f"/customers/{customer}"
    page = ana.get(f"/customers/{customer}").text
    assert f"Address {ANA_AT_WORK} added" in element(page, "flash")
    assert ANA_AT_WORK in element(page, "customer-addresses")

    later = put(store, T0 + timedelta(hours=1), sender=ANA_AT_WORK, subject="Return label", message_id="w1@w.example")
    assert later.result == CREATED and customer_of(store, later.ticket_id) == customer
    # Her follow-up from the same address threads by subject as any customer's does.
    again = put(store, T0 + timedelta(hours=2), sender=ANA_AT_WORK, subject="Re: Return label",
                message_id="w2@w.example")
    assert (again.result, again.ticket_id) == (APPENDED, later.ticket_id)
    rows = element(ana.get(f"/customers/{customer}").text, "customer-tickets")
    assert f"#{first}" in rows and f"#{later.ticket_id}" in rows


def test_an_address_is_refused_when_invalid_or_someone_elses(app, store):
    ours = customer_of(store, make_ticket(store, sender=ANA, message_id="a@c.example"))
    theirs = customer_of(store, make_ticket(store, sender="bo@customer.example", message_id="b@c.example"))
    ana = signed_in(app, store, "ana")
    assert ana.post(f"/customers/{theirs}/addresses", {"address": ANA_AT_WORK}).status_code == 303
    for address, reason in (
        ("not an address", "is not an e-mail address"),
        ("bo@customer.example", "belongs to another customer: bo@customer.example"),
        (ANA_AT_WORK, "belongs to another customer: bo@customer.example"),
        (ANA, "is already an address of this customer"),
    ):
        refused = ana.post(f"/customers/{ours}/addresses", {"address": address})
        assert refused.status_code == 422, address
        assert reason in html.unescape(element(refused.text, "flash-error")), address
        # What was typed is shown again.
        assert f'value="{html.escape(address)}"' in refused.text.replace("&#34;", "&quot;").replace("&#39;", "'")
    assert ana.post("/customers/99999/addresses", {"address": "x@y.example"}).status_code == 404
    assert ana.client.post(f"/customers/{ours}/addresses", data={"address": "z@y.example"}).status_code == 403
    with store.reading() as session:
        assert list(session.scalars(select(CustomerAddress.address).where(CustomerAddress.customer_id == ours))) == []
