"""Claim use cases: each change is one conditional statement whose row count says who won (SPEC §6)."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta

from sqlalchemy import bindparam, or_, select, text, update
from sqlalchemy.orm import Session

from mailticket.claims import ClaimConflict, ClaimView, NotHolder, conflict, held_by_other, lost
from mailticket.db.models import Claim, Operator, Ticket, UtcDateTime
from mailticket.db.store import db_now
from mailticket.service.history import record
from mailticket.service.tickets import TicketNotFound

log = logging.getLogger(__name__)

# A claim lost to a concurrent writer between our read and our write is looked at again this often.
CLAIM_ATTEMPTS = 3

# The statements are built once, with bound parameters, so that each is compiled once: claims sit on the
# hot path of every operator's click.
READ_CLAIM = (
    select(Claim.ticket_id, Claim.operator_id, Operator.name, Operator.username, Claim.token, Claim.fence,
           Claim.claimed_at, Claim.expires_at)
    .outerjoin(Operator, Operator.id == Claim.operator_id)
    .where(Claim.ticket_id == bindparam("t"))
)
# Locked on PostgreSQL, so that a claim taken meanwhile waits for the change that read it free.
READ_CLAIM_LOCKED = READ_CLAIM.with_for_update(of=Claim)
TICKET_EXISTS = select(Ticket.id).where(Ticket.id == bindparam("t"))
# The common case in one statement: a ticket nobody holds. Its first claim inserts the row (the primary key
# lets exactly one of several concurrent inserts through); a later one takes the free row. It returns the new
# fence, or nothing for a held or expired claim or an unknown ticket, which take the slower path below.
# Text rather than a dialect insert: SQLAlchemy compiles those anew on every call (they are never cached),
# and this upsert is the same SQL on SQLite and PostgreSQL.
TAKE_FREE_CLAIM = text(
    "INSERT INTO claims (ticket_id, operator_id, token, fence, claimed_at, expires_at) "
    "SELECT id, :op, :tok, 1, :now, :expires FROM tickets WHERE id = :t "
    "ON CONFLICT (ticket_id) DO UPDATE SET operator_id = excluded.operator_id, token = excluded.token, "
    "fence = claims.fence + 1, claimed_at = excluded.claimed_at, expires_at = excluded.expires_at "
    "WHERE claims.operator_id IS NULL RETURNING fence"
).bindparams(bindparam("now", type_=UtcDateTime()), bindparam("expires", type_=UtcDateTime()))
_CLAIM_VALUES = dict(operator_id=bindparam("op"), token=bindparam("tok"), claimed_at=bindparam("now"),
                     expires_at=bindparam("expires"))
# An expired claim (or a free one another caller changed meanwhile): taken only as we saw it (same fence).
TAKE_CLAIM = (
    update(Claim)
    .where(Claim.ticket_id == bindparam("t"), Claim.fence == bindparam("f"),
           or_(Claim.operator_id.is_(None), Claim.expires_at <= bindparam("now")))
    .values(fence=bindparam("next_fence"), **_CLAIM_VALUES)
    .returning(Claim.ticket_id)
)
RENEW = (
    update(Claim)
    .where(Claim.ticket_id == bindparam("t"), Claim.operator_id == bindparam("op"), Claim.token == bindparam("tok"),
           Claim.expires_at > bindparam("now"))
    .values(expires_at=bindparam("expires"))
)
END = (
    update(Claim)
    .where(Claim.ticket_id == bindparam("t"), Claim.fence == bindparam("f"), Claim.operator_id.is_not(None))
    .values(operator_id=None, token=None, claimed_at=None, expires_at=None)
)
RESTART_PERIOD = (
    update(Claim)
    .where(Claim.ticket_id == bindparam("t"), Claim.fence == bindparam("f"), Claim.expires_at > bindparam("now"))
    .values(claimed_at=bindparam("now"))
)
ADD_HANDLE_TIME = (
    update(Ticket).where(Ticket.id == bindparam("t")).values(handle_seconds=Ticket.handle_seconds + bindparam("s"))
)
DUE_FOR_EXPIRY = (
    select(Claim.ticket_id, Claim.fence, Claim.expires_at, Operator.username)
    .join(Operator, Operator.id == Claim.operator_id)
    .where(Claim.operator_id.is_not(None), Claim.expires_at <= bindparam("now"))
)
EXPIRE = (
    update(Claim)
    .where(Claim.ticket_id == bindparam("t"), Claim.fence == bindparam("f"), Claim.operator_id.is_not(None),
           Claim.expires_at <= bindparam("now"))
    .values(operator_id=None, token=None, claimed_at=None, expires_at=None)
)


def read_claim(session: Session, ticket_id: int, *, locked: bool = False) -> ClaimView | None:
    row = session.connection().execute(READ_CLAIM_LOCKED if locked else READ_CLAIM, {"t": ticket_id}).one_or_none()
    if row is None:
        return None
    return ClaimView(row.ticket_id, row.operator_id, row.name or row.username, row.token, row.fence,
                     row.claimed_at, row.expires_at)


def require_ticket(session: Session, ticket_id: int) -> None:
    if session.connection().execute(TICKET_EXISTS, {"t": ticket_id}).first() is None:
        raise TicketNotFound(ticket_id)


def only_the_holder(session: Session, ticket_id: int, operator: Operator | None, now: datetime | None = None) -> None:
    """A ticket with a live claim is changed (status, queue, priority, merge) by its holder only; everyone else,
    admins too, is refused with the holder's name (an admin breaks the claim first). SPEC §13. `operator` None is
    someone who holds no claim (the command line)."""
    now = now or db_now(session)
    view = read_claim(session, ticket_id, locked=True)
    if view is not None and view.live(now) and (operator is None or view.holder_id != operator.id):
        raise held_by_other(view)


def claim(session: Session, ticket_id: int, operator: Operator, ttl: float, now: datetime | None = None) -> ClaimView:
    """Takes the ticket for `operator`; raises ClaimConflict naming the holder when someone else has it."""
    now = now or db_now(session)
    expires = now + timedelta(seconds=ttl)
    token = secrets.token_urlsafe(24)
    params = dict(t=ticket_id, op=operator.id, tok=token, now=now, expires=expires)
    for _ in range(CLAIM_ATTEMPTS):
        fence = session.connection().execute(TAKE_FREE_CLAIM, params).scalar()
        if fence is not None:
            return _granted(session, ticket_id, operator, token, fence, now, expires)
        # Held, expired, or no such ticket: look at it.
        view = read_claim(session, ticket_id)
        if view is None:
            require_ticket(session, ticket_id)
            continue
        if view.live(now):
            if view.holder_id == operator.id:
                return renew(session, ticket_id, operator, view.token, ttl, now)
            raise conflict(view)
        if session.connection().execute(TAKE_CLAIM, dict(params, f=view.fence, next_fence=view.fence + 1)).first() is not None:
            if view.expired(now):
                record(session, ticket_id, "expired", view.expires_at, view.holder_name,
                       f"taken over by {operator.username}")
            return _granted(session, ticket_id, operator, token, view.fence + 1, now, expires)
        # Another process got there first: look again, and report whoever holds it now.
    view = read_claim(session, ticket_id)
    if view is not None and view.live(now):
        raise conflict(view)
    raise ClaimConflict("the ticket is being claimed by someone else right now; try again")


def _granted(session: Session, ticket_id: int, operator: Operator, token: str, fence: int, now: datetime,
             expires: datetime) -> ClaimView:
    record(session, ticket_id, "claimed", now, operator.username, f"until {expires.isoformat()}")
    return ClaimView(ticket_id, operator.id, operator.display_name, token, fence, now, expires)


def renew(session: Session, ticket_id: int, operator: Operator, token: str | None, ttl: float,
          now: datetime | None = None) -> ClaimView:
    """Extends a live claim held with `token`; raises ClaimLost when it is gone."""
    now = now or db_now(session)
    expires = now + timedelta(seconds=ttl)
    params = dict(t=ticket_id, op=operator.id, tok=token, now=now, expires=expires)
    if session.connection().execute(RENEW, params).rowcount != 1:
        view = read_claim(session, ticket_id)
        if view is None:
            require_ticket(session, ticket_id)
        raise lost(view, operator.id, now)
    record(session, ticket_id, "renewed", now, operator.username, f"until {expires.isoformat()}")
    return read_claim(session, ticket_id)


def release(session: Session, ticket_id: int, operator: Operator, *, now: datetime | None = None,
            kind: str = "released", token: str | None = None) -> None:
    """Ends the caller's live claim (held with `token`, when given) and adds its period to the handle time;
    NotHolder when it is not theirs."""
    now = now or db_now(session)
    view = read_claim(session, ticket_id)
    if view is None or not view.held_by(operator.id, now, token):
        if view is None:
            require_ticket(session, ticket_id)
        raise NotHolder("you do not hold a claim on this ticket", holder=view.holder_name if view else None,
                        expires_at=view.expires_at if view else None)
    if not _end(session, view):
        raise lost(read_claim(session, ticket_id), operator.id, now)
    _add_handle_time(session, ticket_id, view.claimed_at, now)
    record(session, ticket_id, kind, now, operator.username)


def break_claim(session: Session, ticket_id: int, admin: Operator, now: datetime | None = None) -> None:
    """An admin ends someone's claim; the broken period is not handle time (no reply or release ended it)."""
    now = now or db_now(session)
    if not admin.is_admin:
        raise NotHolder("only an admin may break another operator's claim")
    view = read_claim(session, ticket_id)
    if view is None or view.holder_id is None:
        if view is None:
            require_ticket(session, ticket_id)
        return
    if _end(session, view):
        record(session, ticket_id, "broken", now, admin.username, f"claim of {view.holder_name}")
        log.info("ticket %d: %s broke the claim of %s", ticket_id, admin.username, view.holder_name)


def take_for_reply(session: Session, ticket_id: int, operator: Operator, token: str | None, *, keep: bool,
                   now: datetime | None = None) -> None:
    """The fencing check of a reply, in the reply's transaction: the live claim held with this token.

    Ends the claim (or restarts its period when the operator keeps it) and books the handle time;
    the caller records the reply and the release in the history, in that order.
    """
    now = now or db_now(session)
    view = read_claim(session, ticket_id)
    if view is None or not token or not view.held_by(operator.id, now, token):
        raise lost(view, operator.id, now)
    if keep:
        won = session.connection().execute(RESTART_PERIOD, dict(t=ticket_id, f=view.fence, now=now)).rowcount == 1
    else:
        won = _end(session, view)
    if not won:
        raise lost(read_claim(session, ticket_id), operator.id, now)
    _add_handle_time(session, ticket_id, view.claimed_at, now)


def expire_claims(session: Session, now: datetime | None = None) -> int:
    """Frees every claim past its expiry and records it; run by the scheduler."""
    now = now or db_now(session)
    expired = 0
    for row in session.connection().execute(DUE_FOR_EXPIRY, {"now": now}).all():
        if session.connection().execute(EXPIRE, dict(t=row.ticket_id, f=row.fence, now=now)).rowcount == 1:
            record(session, row.ticket_id, "expired", row.expires_at, row.username)
            expired += 1
        # else: another process renewed, released or expired it first.
    return expired


def _end(session: Session, view: ClaimView) -> bool:
    return session.connection().execute(END, dict(t=view.ticket_id, f=view.fence)).rowcount == 1


def _add_handle_time(session: Session, ticket_id: int, since: datetime | None, now: datetime) -> None:
    if since is not None:
        seconds = max(0.0, (now - since).total_seconds())
        session.connection().execute(ADD_HANDLE_TIME, dict(t=ticket_id, s=seconds))
