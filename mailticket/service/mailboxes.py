"""Mailbox logins and health: an OAuth2 mailbox's token source, and each polling pass's outcome, kept for
`mailbox status`, the admin page and /metrics."""

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


def record_ok(store: Store, box: MailboxSettings, now: datetime) -> None:
    with store.transaction() as session:
        row = _row(session, box.name)
        row.last_ok_at, row.login_refused = now, False


def record_failure(store: Store, settings: Settings, box: MailboxSettings, exc: BaseException, now: datetime) -> str:
    """Keeps the failure in words for `mailbox status`; a refused OAuth2 login gets its token renewed next time,
    and an authorization found lost just now is told to the admins, once. Returns the words."""
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
    if isinstance(exc, tokens.TokenError) and exc.newly_lost and exc.auth is not None:
        from mailticket.service.auth_notice import tell_admins  # sends mail: only on this rare path

        tell_admins(store, settings, exc.auth, text, now)
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

    @property
    def auth_ok(self) -> bool:
        return self.state != NEEDS_AUTHORIZATION and not self.login_refused


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
        state = ERROR if failing else OK
        if box.auth == OAUTH2:
            token = held.get(box.authorization)
            never = token is None and box.oauth2.flow != CLIENT_CREDENTIALS
            if never or (token is not None and token.state == NEEDS_AUTHORIZATION):
                state = NEEDS_AUTHORIZATION
                error = (token.error if token else "") or error or "never authorized"
            elif token is not None and token.state == ERROR:
                state, error = ERROR, token.error
        found.append(Health(box.name, box.auth, box.oauth2.flow if box.oauth2 else None, state, last_ok, error,
                            failed_at, bool(failing and row.login_refused)))
    return found
