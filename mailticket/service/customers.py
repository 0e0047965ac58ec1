"""Customer use cases: further addresses of a customer, so that mail from any of them is theirs."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailticket.db.models import Customer, CustomerAddress
from mailticket.db.store import insert_for
from mailticket.service.actions import ActionError

# An addr-spec as mail parsing stores it (lower-cased, no display name): local@domain.tld, no spaces.
ADDRESS_RE = re.compile(r"[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[^@\s<>()\[\],;:\".]+")
MAX_ADDRESS_CHARS = 320


def normalise_address(text: str) -> str:
    """The address as ingest compares it (parse lower-cases every addr-spec); ActionError when it is none."""
    address = text.strip().lower()
    if len(address) > MAX_ADDRESS_CHARS or not ADDRESS_RE.fullmatch(address):
        raise ActionError(f"{text.strip()[:80]!r} is not an e-mail address such as name@example.com")
    return address


def owner_of(session: Session, address: str) -> Customer | None:
    """The customer whose primary or added address this is."""
    found = session.scalar(select(Customer).where(Customer.address == address))
    if found is None:
        row = session.get(CustomerAddress, address)
        found = session.get(Customer, row.customer_id) if row is not None else None
    return found


def add_address(session: Session, customer_id: int, text: str, now: datetime) -> str:
    """Adds an address to the customer; refused when it is not an address or belongs to a customer already."""
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise ActionError(f"no customer {customer_id}")
    address = normalise_address(text)
    owner = owner_of(session, address)
    if owner is not None:
        if owner.id == customer_id:
            raise ActionError(f"{address} is already an address of this customer")
        raise ActionError(f"{address} belongs to another customer: {_name(owner)} (#{owner.id})")
    added = session.connection().execute(
        insert_for(session)(CustomerAddress).values(address=address, customer_id=customer_id, created_at=now)
        .on_conflict_do_nothing(index_elements=["address"]).returning(CustomerAddress.address)
    ).first()
    if added is None:
        # Another operator added it a moment ago.
        raise ActionError(f"{address} was just added to a customer by someone else")
    return address


def addresses(session: Session, customer_id: int) -> list[CustomerAddress]:
    return list(session.scalars(
        select(CustomerAddress).where(CustomerAddress.customer_id == customer_id).order_by(CustomerAddress.address)
    ))


def _name(customer: Customer) -> str:
    return f"{customer.name} <{customer.address}>" if customer.name else customer.address
