"""Operator accounts: argon2 passwords, browser sessions kept on the server, API tokens stored as hashes and shown
once."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, bindparam, delete, select
from sqlalchemy.orm import Session

from mailticket.db.models import Operator, WebSession

TOKEN_PREFIX = "mt_"

_hasher = PasswordHasher()
# Checked when the user name is unknown, so that an unknown name costs the same time as a wrong password.
_DUMMY_HASH = _hasher.hash("no operator has this password")


class OperatorError(ValueError):
    """A refused operator change, with the reason in words."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_operator(session: Session, username: str, password: str, *, name: str = "", email: str = "",
                 admin: bool = False, now: datetime) -> Operator:
    username = username.strip()
    if not username or len(username) > 64 or not username.replace(".", "").replace("-", "").replace("_", "").isalnum():
        raise OperatorError(f"invalid user name {username!r}: use letters, digits, '.', '-' or '_'")
    if len(password) < 8:
        raise OperatorError("the password must have at least 8 characters")
    if session.scalar(select(Operator.id).where(Operator.username == username)) is not None:
        raise OperatorError(f"operator {username!r} already exists")
    operator = Operator(username=username, name=name, email=email, password_hash=_hasher.hash(password),
                        is_admin=admin, disabled=False, created_at=now)
    session.add(operator)
    session.flush()
    return operator


def by_username(session: Session, username: str) -> Operator | None:
    return session.scalar(select(Operator).where(Operator.username == username))


def list_operators(session: Session) -> list[Operator]:
    return list(session.scalars(select(Operator).order_by(Operator.username)))


def disable(session: Session, username: str) -> Operator:
    operator = by_username(session, username)
    if operator is None:
        raise OperatorError(f"no operator {username!r}")
    operator.disabled = True
    # The token and the browser sessions go too, so that nothing signed in before keeps working.
    operator.token_hash = None
    end_all_sessions(session, operator.id)
    return operator


def new_token(session: Session, username: str) -> str:
    """A fresh API token for the operator, replacing the old one; only its hash is stored."""
    operator = by_username(session, username)
    if operator is None:
        raise OperatorError(f"no operator {username!r}")
    if operator.disabled:
        raise OperatorError(f"operator {username!r} is disabled")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    operator.token_hash = hash_token(token)
    return token


# An API caller, read with Core on every request: cheaper than loading the entity through the ORM.
CALLER_BY_TOKEN = select(Operator.id, Operator.username, Operator.name, Operator.email, Operator.is_admin).where(
    Operator.token_hash == bindparam("h"), Operator.disabled.is_(False)
)


def by_token(conn: Connection, token: str) -> Operator | None:
    """The enabled operator holding this API token, as a detached entity; None for an unknown token or a disabled
    operator."""
    if not token:
        return None
    row = conn.execute(CALLER_BY_TOKEN, {"h": hash_token(token)}).first()
    if row is None:
        return None
    return Operator(id=row.id, username=row.username, name=row.name, email=row.email, is_admin=row.is_admin,
                    disabled=False)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches; pure CPU (tens of milliseconds), so callers run it outside any transaction."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


LOGIN_CANDIDATE = select(Operator.id, Operator.password_hash).where(
    Operator.username == bindparam("u"), Operator.disabled.is_(False))


def login_candidate(conn: Connection, username: str) -> tuple[int, str] | None:
    """The id and password hash of the enabled operator with this user name (a read: no lock taken)."""
    row = conn.execute(LOGIN_CANDIDATE, {"u": username}).first()
    return None if row is None else (row.id, row.password_hash)


# -- browser sessions: the cookie carries a random token, the table its hash ----------------------------------------

SESSION_OPERATOR = (
    select(Operator).join(WebSession, WebSession.operator_id == Operator.id)
    .where(WebSession.id == bindparam("h"), WebSession.expires_at > bindparam("now"), Operator.disabled.is_(False))
)


def start_session(session: Session, operator_id: int, now: datetime, lifetime: timedelta) -> str:
    """A new signed-in session; returns its token, for the cookie. The operator's expired sessions are swept."""
    session.execute(delete(WebSession).where(WebSession.operator_id == operator_id, WebSession.expires_at <= now))
    token = secrets.token_urlsafe(32)
    session.add(WebSession(id=hash_token(token), operator_id=operator_id, created_at=now, expires_at=now + lifetime))
    return token


def session_operator(session: Session, token: str, now: datetime) -> Operator | None:
    """The enabled operator of a live session, None when the session ended (logged out, expired, disabled)."""
    if not token:
        return None
    return session.scalar(SESSION_OPERATOR, {"h": hash_token(token), "now": now})


def end_session(session: Session, token: str) -> None:
    session.execute(delete(WebSession).where(WebSession.id == hash_token(token)))


def end_all_sessions(session: Session, operator_id: int) -> int:
    """Logs the operator out everywhere; returns how many sessions ended."""
    return session.execute(delete(WebSession).where(WebSession.operator_id == operator_id)).rowcount
