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
from mailticket.localtime import is_zone
from mailticket.mail import address

TOKEN_PREFIX = "mt_"
# The pages' languages an operator may choose; None (not chosen) leaves it to the browser.
LANGUAGES = ("pt-BR", "en")
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024
MAX_NAME_CHARS = 200
# A reset password: secrets.token_urlsafe of this many bytes, 16 characters, shown once to the admin.
TEMPORARY_PASSWORD_BYTES = 12

_hasher = PasswordHasher()
# Checked when the user name is unknown, so that an unknown name costs the same time as a wrong password.
_DUMMY_HASH = _hasher.hash("no operator has this password")


class OperatorError(ValueError):
    """A refused operator change, with the reason in words."""


class UnknownOperator(OperatorError):
    """No operator has this user name."""


class LastAdmin(OperatorError):
    """The change would leave no enabled admin, and nobody to use the admin pages."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_operator(session: Session, username: str, password: str, *, name: str = "", email: str = "",
                 admin: bool = False, now: datetime) -> Operator:
    username = username.strip()
    if not username or len(username) > 64 or not username.replace(".", "").replace("-", "").replace("_", "").isalnum():
        raise OperatorError(f"invalid user name {username!r}: use letters, digits, '.', '-' or '_'")
    check_password(password)
    name, email = checked_name(name), checked_email(email)
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


def operator_named(session: Session, username: str) -> Operator:
    """The operator with this user name; UnknownOperator when there is none."""
    operator = by_username(session, username)
    if operator is None:
        raise UnknownOperator(f"no operator {username!r}")
    return operator


def disable(session: Session, username: str) -> Operator:
    """Refused for the last enabled admin (LastAdmin)."""
    operator = operator_named(session, username)
    _keep_an_admin(session, operator, "disabling them")
    operator.disabled = True
    # The token and the browser sessions go too, so that nothing signed in before keeps working.
    operator.token_hash = None
    end_all_sessions(session, operator.id)
    return operator


def new_token(session: Session, username: str) -> str:
    """A fresh API token for the operator, replacing the old one; only its hash is stored."""
    operator = operator_named(session, username)
    if operator.disabled:
        raise OperatorError(f"operator {username!r} is disabled")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    operator.token_hash = hash_token(token)
    return token


# -- account changes: fields, role, enabling, passwords ---------------------------------------------------------

def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise OperatorError(f"the password must have at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise OperatorError(f"the password must have at most {MAX_PASSWORD_CHARS} characters")


def checked_name(name: str) -> str:
    name = name.strip()
    if len(name) > MAX_NAME_CHARS:
        raise OperatorError(f"the name must have at most {MAX_NAME_CHARS} characters")
    if address.CONTROL.search(name) or address.BIDI_CONTROLS.search(name):
        raise OperatorError("the name must be one line of plain text")
    return name


def checked_email(email: str) -> str:
    """The address, trimmed; "" (no address) is allowed."""
    email = email.strip()
    if email and (reason := address.problem(email)) is not None:
        raise OperatorError(f"invalid e-mail address {email[:80]!r}: {reason}")
    return email


def checked_language(language: str | None) -> str | None:
    """"pt-BR" or "en"; None or "" is "not chosen"."""
    if not language:
        return None
    if language not in LANGUAGES:
        raise OperatorError(f"unknown language {language[:20]!r}: use {' or '.join(LANGUAGES)}")
    return language


def checked_timezone(zone: str | None) -> str | None:
    """An IANA time zone such as "America/Sao_Paulo"; None or "" is "not chosen" ([web] timezone)."""
    if not zone:
        return None
    if not is_zone(zone):
        raise OperatorError(f"unknown time zone {zone[:64]!r}: use an IANA name such as America/Sao_Paulo or UTC")
    return zone


def set_fields(session: Session, username: str, *, name: str | None = None, email: str | None = None,
               admin: bool | None = None, language: str | None = None, timezone: str | None = None) -> Operator:
    """Changes the fields given (None: left as they are; language or timezone "" goes back to "not chosen"). All or
    nothing: a refused value (or removing the last enabled admin) changes none of them."""
    operator = operator_named(session, username)
    name = None if name is None else checked_name(name)
    email = None if email is None else checked_email(email)
    chosen = None if language is None else checked_language(language)
    zone = None if timezone is None else checked_timezone(timezone)
    if admin is not None:
        set_admin(session, username, admin)
    if name is not None:
        operator.name = name
    if email is not None:
        operator.email = email
    if language is not None:
        operator.language = chosen
    if timezone is not None:
        operator.timezone = zone
    return operator


def set_language(session: Session, username: str, language: str | None) -> Operator:
    return set_fields(session, username, language=language or "")


def set_timezone(session: Session, username: str, zone: str | None) -> Operator:
    return set_fields(session, username, timezone=zone or "")


def set_admin(session: Session, username: str, admin: bool) -> Operator:
    """Makes the operator an admin, or an operator only; removing the last enabled admin is refused (LastAdmin)."""
    operator = operator_named(session, username)
    if not admin:
        _keep_an_admin(session, operator, "removing their admin role")
    operator.is_admin = admin
    return operator


def enable(session: Session, username: str) -> Operator:
    """Lets a disabled operator log in again, with their password (their API token was dropped: a new one is made
    with `operator token`)."""
    operator = operator_named(session, username)
    operator.disabled = False
    return operator


def _keep_an_admin(session: Session, operator: Operator, change: str) -> None:
    """Refuses a change that leaves no enabled admin. The enabled admins' rows are locked (on PostgreSQL; SQLite
    writes one at a time anyway), so two admins removing each other at once cannot both succeed."""
    if not operator.is_admin or operator.disabled:
        return
    admins = session.scalars(select(Operator.id).where(Operator.is_admin.is_(True), Operator.disabled.is_(False))
                             .with_for_update()).all()
    if set(admins) <= {operator.id}:
        raise LastAdmin(f"{operator.username!r} is the last enabled admin: {change} would leave nobody to manage "
                        "operators; make another operator admin first")


def new_password_hash(password: str) -> str:
    """The hash of a new password that passes the rules; pure CPU, so callers may run it outside transactions."""
    check_password(password)
    return _hasher.hash(password)


def set_password(session: Session, username: str, password: str, *, keep_session: str | None = None) -> int:
    """A new password; the operator's browser sessions end (but `keep_session`, the token of the one making the
    change). Returns how many sessions ended. The API token is a credential of its own and stays."""
    return set_password_hash(session, username, new_password_hash(password), keep_session=keep_session)


def set_password_hash(session: Session, username: str, password_hash: str, *,
                      keep_session: str | None = None) -> int:
    operator = operator_named(session, username)
    operator.password_hash = password_hash
    return end_other_sessions(session, operator.id, keep_session)


def reset_password(session: Session, username: str, *, keep_session: str | None = None) -> str:
    """A new temporary password, returned once (to show to the admin, never stored but as a hash); the operator's
    sessions end as with set_password."""
    temporary = secrets.token_urlsafe(TEMPORARY_PASSWORD_BYTES)
    set_password(session, username, temporary, keep_session=keep_session)
    return temporary


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


def live_sessions(session: Session, tokens: set[str], now: datetime) -> set[str]:
    """Which of these session tokens still sign an enabled operator in (one query for all)."""
    by_hash = {hash_token(token): token for token in tokens}
    alive = session.scalars(
        select(WebSession.id).join(Operator, Operator.id == WebSession.operator_id)
        .where(WebSession.id.in_(by_hash), WebSession.expires_at > now, Operator.disabled.is_(False)))
    return {by_hash[h] for h in alive}


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


def end_other_sessions(session: Session, operator_id: int, keep_token: str | None) -> int:
    """Logs the operator out everywhere but in the session of `keep_token` (None: everywhere)."""
    ending = delete(WebSession).where(WebSession.operator_id == operator_id)
    if keep_token:
        ending = ending.where(WebSession.id != hash_token(keep_token))
    return session.execute(ending).rowcount
