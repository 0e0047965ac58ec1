"""Named leases in the database: which instance polls a mailbox, and which one runs a periodic job this period."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, or_
from sqlalchemy.orm import Session

from mailticket.db.models import Lease
from mailticket.db.store import insert_for


def acquire(session: Session, name: str, holder: str, ttl: float, now: datetime) -> bool:
    """Takes or extends the lease; one conditional upsert, and only a free, expired or own lease is taken."""
    expires = now + timedelta(seconds=ttl)
    stmt = insert_for(session)(Lease).values(name=name, holder=holder, expires_at=expires)
    stmt = stmt.on_conflict_do_update(
        index_elements=[Lease.name],
        set_={"holder": holder, "expires_at": expires},
        where=or_(Lease.expires_at <= now, Lease.holder == holder),
    ).returning(Lease.name)
    # No row back: another instance holds it and it has not expired.
    return session.execute(stmt).first() is not None


def release(session: Session, name: str, holder: str) -> None:
    """Gives the lease up early, so that another instance need not wait for its expiry."""
    session.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder))
