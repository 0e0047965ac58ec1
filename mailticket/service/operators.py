"""Operator accounts: argon2 passwords, login throttling, API tokens stored as hashes and shown once."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import NamedTuple

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from mailticket.db.fast import FastConnection
from mailticket.db.models import Operator

# After this many failed logins in a row the account waits LOCKOUT before the next try.
MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=5)
TOKEN_PREFIX = "mt_"

_hasher = PasswordHasher()


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
                        is_admin=admin, disabled=False, failed_logins=0, created_at=now)
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
    # The token goes too, so that nothing signed in before keeps working.
    operator.token_hash = None
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


# What an API call needs of its caller, read with Core on every request: cheaper than loading the entity.
CALLER_BY_TOKEN = select(Operator.id, Operator.username, Operator.name, Operator.email, Operator.is_admin).where(
    Operator.token_hash == bindparam("h"), Operator.disabled.is_(False)
)


class Caller(NamedTuple):
    """An API caller as the claim calls need them: the fields of CALLER_BY_TOKEN, without building an entity."""

    id: int
    username: str
    name: str
    email: str
    is_admin: bool

    @property
    def display_name(self) -> str:
        return self.name or self.username


# Whoever acts on a claim: a logged-in operator, or an API caller known by token.
Actor = Operator | Caller


def caller_by_token(conn: Connection | FastConnection, token: str) -> Caller | None:
    """The enabled operator holding this API token; None for an unknown token or a disabled operator."""
    if not token:
        return None
    row = conn.execute(CALLER_BY_TOKEN, {"h": hash_token(token)}).first()
    return None if row is None else Caller(row.id, row.username, row.name, row.email, row.is_admin)


def by_token(conn: Connection | FastConnection, token: str) -> Operator | None:
    """`caller_by_token` as a detached Operator, for calls that hand the caller on to the ORM."""
    caller = caller_by_token(conn, token)
    if caller is None:
        return None
    return Operator(id=caller.id, username=caller.username, name=caller.name, email=caller.email,
                    is_admin=caller.is_admin, disabled=False)


def authenticate(session: Session, username: str, password: str, now: datetime) -> Operator | None:
    """The operator when the password is right; counts failures and locks out a guessing attacker for a while."""
    operator = by_username(session, username)
    if operator is None or operator.disabled:
        # Spend the same time as a real check, so timing does not tell which user names exist.
        _hasher.hash(password)
        return None
    if operator.locked_until is not None and operator.locked_until > now:
        return None
    try:
        _hasher.verify(operator.password_hash, password)
    except (VerificationError, InvalidHashError):
        operator.failed_logins += 1
        if operator.failed_logins >= MAX_FAILED_LOGINS:
            operator.locked_until, operator.failed_logins = now + LOCKOUT, 0
        return None
    operator.failed_logins, operator.locked_until = 0, None
    if _hasher.check_needs_rehash(operator.password_hash):
        operator.password_hash = _hasher.hash(password)
    return operator


def locked(operator: Operator | None, now: datetime) -> bool:
    return operator is not None and operator.locked_until is not None and operator.locked_until > now
