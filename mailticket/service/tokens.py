"""OAuth2 tokens in the database: encrypted, renewed before they expire by one instance at a time, kept at once."""

from __future__ import annotations

import base64
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select

from mailticket import oauth
from mailticket.clock import utcnow
from mailticket.config import Settings
from mailticket.config_oauth import CLIENT_CREDENTIALS, OAuth2Settings
from mailticket.db.models import OAuthToken
from mailticket.db.store import Store
from mailticket.service import leases

log = logging.getLogger(__name__)

OK, NEEDS_AUTHORIZATION, ERROR = "ok", "needs-authorization", "error"
# One instance renews a token at a time; the lease outlasts the longest renewal (one call, each of its steps
# bounded by oauth.TIMEOUT). Should it still run out, a second renewal cannot mark a good token lost (see mark()).
RENEWAL_LEASE_SECONDS = 6 * oauth.TIMEOUT
WAIT_STEP_SECONDS = 0.5  # how often an instance waiting for another's renewal looks again
KEY_INFO = b"mailticket oauth2 tokens"


class TokenError(Exception):
    """No access token now, in words naming the mailbox and what to do; `transient` when a later try may work."""

    def __init__(self, message: str, *, transient: bool = False, lost: bool = False) -> None:
        super().__init__(message)
        self.transient, self.lost = transient, lost


@dataclass(frozen=True)
class Authorization:
    """One set of tokens: its name ("mailbox:support", "smtp"), its settings, and the account it logs in as."""

    name: str
    settings: OAuth2Settings
    username: str

    @property
    def label(self) -> str:
        kind, _, mailbox = self.name.partition(":")
        return f"mailbox {mailbox!r}" if kind == "mailbox" else "the SMTP relay"

    @property
    def table(self) -> str:
        """Where its settings are in the config file."""
        kind, _, mailbox = self.name.partition(":")
        return f'[mailbox.oauth2] of mailbox "{mailbox}"' if kind == "mailbox" else "[smtp.oauth2]"

    @property
    def command(self) -> str:
        """What an admin runs (or clicks) to authorize it again."""
        mailbox = self.name.partition(":")[2] or "smtp"
        return f"mailticket mailbox authorize {mailbox}"


def authorizations(settings: Settings) -> dict[str, Authorization]:
    """Every OAuth2 authorization the config uses, by name; [smtp] sharing a mailbox's adds none of its own."""
    found = {box.authorization: Authorization(box.authorization, box.oauth2, box.username)
             for box in settings.mailboxes if box.authorization}
    smtp = settings.smtp
    if smtp.authorization and smtp.authorization not in found:
        found[smtp.authorization] = Authorization(smtp.authorization, smtp.oauth2, smtp.username or "")
    return found


def cipher(secret_key: str) -> Fernet:
    """Fernet with a key derived from web.secret_key: a copy of the database alone does not give the tokens."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=KEY_INFO).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def _fresh(row: OAuthToken | None, now: datetime) -> bool:
    return row is not None and row.state == OK and row.access_token is not None and row.expires_at is not None \
        and row.expires_at > now


def _read(store: Store, name: str) -> OAuthToken | None:
    with store.reading() as session:
        row = session.get(OAuthToken, name)
        if row is not None:
            session.expunge(row)
        return row


def access_token(store: Store, settings: Settings, name: str, *, holder: str | None = None,
                 clock: Callable[[], datetime] = utcnow, sleep: Callable[[float], None] = time.sleep) -> str:
    """A valid access token for the authorization `name`, renewed first if it is about to expire.

    Raises TokenError. Renewal takes the lease oauth:NAME, so that two instances never renew at once: the
    second one waits and then uses the token the first one stored.
    """
    auth = authorizations(settings)[name]
    holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    box = cipher(settings.web.secret_key)
    row = _read(store, name)
    if _fresh(row, clock()):
        return _decrypt(box, row.access_token, auth, store)
    if auth.settings.flow != CLIENT_CREDENTIALS and (row is None or row.state == NEEDS_AUTHORIZATION
                                                     or row.refresh_token is None):
        raise _needs(auth, row)
    deadline = time.monotonic() + RENEWAL_LEASE_SECONDS
    while not _lease(store, name, holder, clock()):
        if time.monotonic() > deadline:
            raise TokenError(f"{auth.label}: another instance has been renewing its token for "
                             f"{RENEWAL_LEASE_SECONDS:g} s; trying again later", transient=True)
        sleep(WAIT_STEP_SECONDS)
        if _fresh(row := _read(store, name), clock()):
            return _decrypt(box, row.access_token, auth, store)
    try:
        row = _read(store, name)  # the instance that held the lease may have just renewed it
        if _fresh(row, clock()):
            return _decrypt(box, row.access_token, auth, store)
        return _renew(store, box, auth, row, clock)
    finally:
        with store.transaction() as session:
            leases.release(session, f"oauth:{name}", holder)


def _lease(store: Store, name: str, holder: str, now: datetime) -> bool:
    with store.transaction() as session:
        return leases.acquire(session, f"oauth:{name}", holder, RENEWAL_LEASE_SECONDS, now)


def _renew(store: Store, box: Fernet, auth: Authorization, row: OAuthToken | None,
           clock: Callable[[], datetime]) -> str:
    try:
        if auth.settings.flow == CLIENT_CREDENTIALS:
            tokens = oauth.client_credentials(auth.settings, clock())
        elif row is None or row.refresh_token is None or row.state == NEEDS_AUTHORIZATION:
            raise _needs(auth, row)
        else:
            tokens = oauth.refresh(auth.settings, _decrypt(box, row.refresh_token, auth, store), clock())
    except oauth.AuthorizationLost as lost:
        if not mark(store, auth, NEEDS_AUTHORIZATION, str(lost), clock(), used=row):
            raise TokenError(f"{auth.label}: its tokens changed during the renewal; trying again", transient=True) \
                from None
        raise TokenError(f"{auth.label} needs authorization again ({lost}): run `{auth.command}` or use "
                         "Re-authorize on the admin page", lost=True) from None
    except oauth.OAuthFailure as failed:
        mark(store, auth, ERROR, str(failed), clock(), used=row)
        raise TokenError(f"{auth.label}: the authorization server refused the token request ({failed}); "
                         f"check {auth.table} and the app's registration with the provider") from None
    except oauth.Unavailable as down:
        log.warning("%s: token renewal failed, will retry: %s", auth.label, down)
        raise TokenError(f"{auth.label}: {down}; retried at the next attempt", transient=True) from None
    save(store, box, auth.name, tokens, clock())
    log.info("%s: access token renewed", auth.label)
    return tokens.access_token


def _needs(auth: Authorization, row: OAuthToken | None) -> TokenError:
    why = f" ({row.error})" if row is not None and row.error else ""
    return TokenError(f"{auth.label} is not authorized{why}: run `{auth.command}` or use Connect on the admin "
                      "page", lost=True)


def _decrypt(box: Fernet, value: str, auth: Authorization, store: Store | None = None) -> str:
    try:
        return box.decrypt(value.encode()).decode()
    except InvalidToken:
        # web.secret_key changed since the tokens were stored: they cannot be read, only replaced.
        why = "the stored tokens cannot be decrypted (was web.secret_key changed?)"
        if store is not None:
            mark(store, auth, NEEDS_AUTHORIZATION, why, utcnow())
        raise TokenError(f"{auth.label}: {why}; run `{auth.command}`", lost=True) from None


def save(store: Store, box: Fernet, name: str, tokens: oauth.Tokens, now: datetime, *,
         authorized: bool = False) -> None:
    """Stores new tokens at once; a server that sent no new refresh token keeps the old one valid."""
    with store.transaction() as session:
        row = session.get(OAuthToken, name, with_for_update=True)
        if row is None:
            row = OAuthToken(name=name, refresh_token=None, authorized_at=None)
            session.add(row)
        row.access_token = box.encrypt(tokens.access_token.encode()).decode()
        row.expires_at = tokens.expires_at
        if tokens.refresh_token:
            row.refresh_token = box.encrypt(tokens.refresh_token.encode()).decode()
        row.state, row.error, row.updated_at = OK, "", now
        row.notice_sent_at = None  # a later loss is told again
        if authorized:
            row.authorized_at = now


def mark(store: Store, auth: Authorization, state: str, error: str, now: datetime, *,
         used: OAuthToken | None = None) -> bool:
    """Records a failed renewal, unless the tokens it `used` were replaced meanwhile (by another instance's
    renewal, or a new authorization): those are good, and stay. Returns whether it was recorded."""
    with store.transaction() as session:
        row = session.scalar(select(OAuthToken).where(OAuthToken.name == auth.name).with_for_update())
        if row is None:
            row = OAuthToken(name=auth.name, state=OK, notice_sent_at=None)
            session.add(row)
        elif used is not None and row.refresh_token != used.refresh_token:
            return False
        became_lost = state == NEEDS_AUTHORIZATION and row.state != NEEDS_AUTHORIZATION
        row.state, row.error, row.updated_at = state, error[:500], now
        if state == NEEDS_AUTHORIZATION:
            row.access_token = row.refresh_token = row.expires_at = None  # of no use any more
    if became_lost:
        log.error("%s needs authorization again: %s", auth.label, error)
    return True


def expire_now(store: Store, name: str, now: datetime) -> None:
    """The server refused a token it gave us (revoked before its time): the next use renews it."""
    with store.transaction() as session:
        row = session.get(OAuthToken, name)
        if row is not None and row.expires_at is not None and row.expires_at > now:
            row.expires_at = now


def states(store: Store) -> dict[str, OAuthToken]:
    with store.reading() as session:
        rows = list(session.scalars(select(OAuthToken)))
        for row in rows:
            session.expunge(row)
    return {row.name: row for row in rows}
