"""Mailbox logins and health: a token source for OAuth2, and each poll's outcome for status, admin page and metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from mailticket import imap
from mailticket.config import OAUTH2, MailboxSettings, Settings
from mailticket.config_oauth import CLIENT_CREDENTIALS
from mailticket.db.models import MailboxStatus
from mailticket.db.store import Store
from mailticket.service import tokens

log = logging.getLogger(__name__)

OK, NEEDS_AUTHORIZATION, ERROR = tokens.OK, tokens.NEEDS_AUTHORIZATION, tokens.ERROR
MAX_ERROR_CHARS = 500


def token_source(store: Store, settings: Settings, box: MailboxSettings) -> Callable[[], str] | None:
    if box.auth != OAUTH2:
        return None
    return lambda: tokens.access_token(store, settings, box.authorization)


def connector(store: Store, settings: Settings) -> Callable[[MailboxSettings], imap.MailboxConnection]:
    """connect(box): a logged-in connection, with the mailbox's own token when it uses OAuth2."""
    return lambda box: imap.connect_with_backoff(box, access_token=token_source(store, settings, box))


def check_login(store: Store, settings: Settings, name: str) -> str | None:
    """After an authorization: does the token open the mailbox? The words of the refusal, or None. Catches a
    consent given by the wrong account (login_hint is only a hint), which would fail on every poll."""
    box = next((b for b in settings.mailboxes if b.authorization == name), None)
    if box is None:
        return None  # the relay's own authorization: it is tried at the next send
    try:
        with imap.MailboxConnection(box, access_token=token_source(store, settings, box)):
            return None
    except (imap.MailboxError, tokens.TokenError) as exc:
        return str(exc)


def record_ok(store: Store, box: MailboxSettings, now: datetime) -> None:
    with store.transaction() as session:
        row = _row(session, box.name)
        row.last_ok_at, row.login_refused = now, False


def record_failure(store: Store, settings: Settings, box: MailboxSettings, exc: BaseException, now: datetime) -> str:
    """Keeps the failure in words for `mailbox status`; a refused OAuth2 login gets its token renewed next time.
    Returns the words."""
    text = str(exc) or type(exc).__name__
    refused = isinstance(exc, imap.MailboxError) and exc.login_refused
    if refused and box.authorization:
        tokens.expire_now(store, box.authorization, now)  # revoked before its time: the next pass renews it
    try:
        with store.transaction() as session:
            row = _row(session, box.name)
            row.last_error, row.last_error_at = text[:MAX_ERROR_CHARS], now
            row.login_refused = refused or (isinstance(exc, tokens.TokenError) and exc.lost)
    except Exception:  # noqa: BLE001 - the database may be what failed; the poll's own error is what counts
        log.warning("mailbox %s: could not record the failure", box.name, exc_info=True)
    return text


def _row(session, name: str) -> MailboxStatus:
    row = session.get(MailboxStatus, name, with_for_update=True)
    if row is None:
        row = MailboxStatus(mailbox=name, last_ok_at=None, last_error="", last_error_at=None, login_refused=False)
        session.add(row)
    return row


@dataclass(frozen=True)
class Health:
    mailbox: str
    auth: str  # password | oauth2
    flow: str | None
    state: str  # ok | needs-authorization | error
    last_ok_at: datetime | None
    last_error: str  # empty when the last pass worked
    last_error_at: datetime | None
    login_refused: bool  # the last pass failed at the login
    token_ok: bool = True  # OAuth2: its tokens are usable (not lost, not refused by the provider)

    @property
    def auth_ok(self) -> bool:
        return self.token_ok and self.state != NEEDS_AUTHORIZATION and not self.login_refused


def health(store: Store, settings: Settings) -> list[Health]:
    """Each configured mailbox: whether it can log in and how its last passes went."""
    with store.reading() as session:
        polled = {row.mailbox: row for row in session.scalars(select(MailboxStatus))}
    held = tokens.states(store)
    found = []
    for box in settings.mailboxes:
        row = polled.get(box.name)
        last_ok = row.last_ok_at if row else None
        failed_at = row.last_error_at if row else None
        failing = failed_at is not None and (last_ok is None or failed_at > last_ok)
        error = row.last_error if row and failing else ""
        state, token_ok = ERROR if failing else OK, True
        if box.auth == OAUTH2:
            state, error, token_ok = _token_state(held.get(box.authorization), box.oauth2.flow, state, error)
        found.append(Health(box.name, box.auth, box.oauth2.flow if box.oauth2 else None, state, last_ok, error,
                            failed_at, bool(failing and row.login_refused), token_ok))
    if settings.smtp.authorization == "smtp":  # the relay's own authorization: nobody else would show it
        state, error, token_ok = _token_state(held.get("smtp"), settings.smtp.oauth2.flow, OK, "")
        found.append(Health("smtp", OAUTH2, settings.smtp.oauth2.flow, state, None, error, None, False, token_ok))
    return found


def _token_state(token, flow: str, state: str, error: str) -> tuple[str, str, bool]:
    """(state, error, tokens usable) of an OAuth2 login, from its token row and how its last pass went."""
    if (token is None and flow != CLIENT_CREDENTIALS) or (token is not None and token.state == NEEDS_AUTHORIZATION):
        return NEEDS_AUTHORIZATION, (token.error if token else "") or error or "never authorized", False
    if token is not None and token.state == ERROR:
        return ERROR, token.error, False
    return state, error, True
