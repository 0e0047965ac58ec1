"""The customer page: their tickets and the notes operators keep about them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Path, Request

from mailticket.service import actions
from mailticket.service.errors import ActionError
from mailticket.service import customers as customer_service
from mailticket.db.store import db_now
from mailticket.web import reads
from mailticket.web.auth import Posting, SignedIn
from mailticket.web.core import flash, local_path, redirect, t, web
from mailticket.web.pages import MAX_ID, MAX_TEXT_CHARS

CustomerId = Annotated[int, Path(ge=1, le=MAX_ID)]

router = APIRouter(include_in_schema=False)


def render_customer(request: Request, customer_id: int, status: int = 200, *, error: str | None = None,
                    address_draft: str = ""):
    app = web(request)
    with app.store.reading() as session:
        customer = reads.customer(session, customer_id)
        if customer is None:
            raise HTTPException(404, t(request, "no customer %(id)s", id=customer_id))
        tickets = reads.customer_tickets(session, customer_id)
        addresses = customer_service.addresses(session, customer_id)
        ticket_notes = reads.customer_ticket_notes(session, customer_id)
    return app.render(request, "customer.html", status, customer=customer, tickets=tickets, addresses=addresses,
                      ticket_notes=ticket_notes, error=error, address_draft=address_draft)


@router.get("/customers/{customer_id}")
def customer_page(request: Request, customer_id: CustomerId, me: SignedIn):
    return render_customer(request, customer_id)


@router.post("/customers/{customer_id}/addresses")
def add_address(request: Request, customer_id: CustomerId, me: Posting,
                address: Annotated[str, Form(max_length=1000)] = ""):
    """Mail from the added address belongs to this customer from now on."""
    try:
        with web(request).store.transaction() as session:
            added = customer_service.add_address(session, customer_id, address, db_now(session))
    except ActionError as refused:
        # An unknown customer is a 404 from render_customer itself.
        return render_customer(request, customer_id, 422, error=t(request, "Address not added: %(reason)s", reason=refused),
                               address_draft=address)
    flash(request, t(request, "Address %(address)s added", address=added))
    return redirect(f"/customers/{customer_id}")


@router.post("/customers/{customer_id}/notes")
def customer_notes(request: Request, customer_id: CustomerId, me: Posting,
                   notes: Annotated[str, Form(max_length=MAX_TEXT_CHARS)] = "", next: Annotated[str, Form()] = ""):
    try:
        with web(request).store.transaction() as session:
            actions.set_customer_notes(session, customer_id, notes)
    except ActionError as refused:
        raise HTTPException(404, str(refused)) from None
    flash(request, t(request, "Customer notes saved"))
    return redirect(local_path(next, f"/customers/{customer_id}"))
