"""The customer page: their tickets and the notes operators keep about them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Path, Request

from mailticket.service import actions
from mailticket.web import reads
from mailticket.web.auth import Posting, SignedIn
from mailticket.web.core import flash, local_path, redirect, web
from mailticket.web.pages import MAX_ID, MAX_TEXT_CHARS

CustomerId = Annotated[int, Path(ge=1, le=MAX_ID)]

router = APIRouter(include_in_schema=False)


@router.get("/customers/{customer_id}")
def customer_page(request: Request, customer_id: CustomerId, me: SignedIn):
    app = web(request)
    with app.store.reading() as session:
        customer = reads.customer(session, customer_id)
        if customer is None:
            raise HTTPException(404, f"no customer {customer_id}")
        tickets = reads.customer_tickets(session, customer_id)
    return app.render(request, "customer.html", customer=customer, tickets=tickets)


@router.post("/customers/{customer_id}/notes")
def customer_notes(request: Request, customer_id: CustomerId, me: Posting,
                   notes: Annotated[str, Form(max_length=MAX_TEXT_CHARS)] = "", next: Annotated[str, Form()] = ""):
    try:
        with web(request).store.transaction() as session:
            actions.set_customer_notes(session, customer_id, notes)
    except actions.ActionError as refused:
        raise HTTPException(404, str(refused)) from None
    flash(request, "Customer notes saved")
    return redirect(local_path(next, f"/customers/{customer_id}"))
