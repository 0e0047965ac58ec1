"""The browser authorization (code + PKCE): started on the admin page, finished by the same session, state used once."""

from __future__ import annotations

from datetime import datetime, timedelta

from cryptography.fernet import InvalidToken
from sqlalchemy import delete

from mailticket import oauth
from mailticket.config import Settings
from mailticket.config_oauth import BROWSER
from mailticket.db.models import OAuthPending
from mailticket.db.store import Store
from mailticket.service import tokens
from mailticket.service.errors import ActionError
from mailticket.service.operators import hash_token

CALLBACK_PATH = "/oauth/callback"
PENDING_LIFETIME = timedelta(minutes=15)


def redirect_uri(settings: Settings) -> str:
    """Where the provider sends the admin back; register exactly this address with the app."""
    return settings.web.base_url.rstrip("/") + CALLBACK_PATH


def by_mailbox(settings: Settings, mailbox: str) -> tokens.Authorization:
    """The authorization of a mailbox name as the admin page names it ("support", or "smtp" for the relay)."""
    found = tokens.authorizations(settings).get("smtp" if mailbox == "smtp" else f"mailbox:{mailbox}")
    if found is None:
        raise ActionError(f"{mailbox!r} is not a mailbox with auth = \"oauth2\"")
    return found


def start(store: Store, settings: Settings, mailbox: str, session_token: str, now: datetime) -> str:
    """The provider's authorization address to send the admin to; the state and verifier wait in the database."""
    auth = by_mailbox(settings, mailbox)
    if auth.settings.flow != BROWSER:
        raise ActionError(f"{auth.label} uses the {auth.settings.flow.replace('_', ' ')} flow: run `{auth.command}` "
                          "on the server instead")
    state, verifier = oauth.new_pkce()
    with store.transaction() as session:
        session.execute(delete(OAuthPending).where(OAuthPending.created_at < now - PENDING_LIFETIME))
        session.add(OAuthPending(state=state, authorization=auth.name, session_id=hash_token(session_token),
                                 verifier=tokens.cipher(settings.web.secret_key).encrypt(verifier.encode()).decode(),
                                 created_at=now))
    return oauth.authorization_url(auth.settings, redirect_uri(settings), state, verifier, auth.username)


def cancel(store: Store, state: str, session_token: str) -> bool:
    """The provider said no: spends the state; True when it was this session's (only then are its words shown)."""
    with store.transaction() as session:
        pending = session.get(OAuthPending, state, with_for_update=True) if state else None
        if pending is None or pending.session_id != hash_token(session_token):
            return False
        session.delete(pending)
    return True


def finish(store: Store, settings: Settings, state: str, code: str, session_token: str,
           now: datetime) -> tokens.Authorization:
    """Exchanges the code for tokens and stores them; the state is spent whatever happens."""
    with store.transaction() as session:
        pending = session.get(OAuthPending, state, with_for_update=True) if state else None
        if pending is not None:
            session.delete(pending)
    if pending is None:
        raise ActionError("this authorization is unknown or was already used; start it again from the admin page")
    if pending.session_id != hash_token(session_token):
        # Consent given in another browser session (another admin, another tab signed in as someone else).
        raise ActionError("this authorization was started in another session; start it again from this browser")
    if pending.created_at < now - PENDING_LIFETIME:
        raise ActionError("this authorization took longer than 15 minutes; start it again")
    auth = tokens.authorizations(settings).get(pending.authorization)
    if auth is None:
        raise ActionError("the mailbox of this authorization is no longer in the config")
    box = tokens.cipher(settings.web.secret_key)
    try:
        verifier = box.decrypt(pending.verifier.encode()).decode()
    except InvalidToken:  # web.secret_key changed since it started
        raise ActionError("this authorization was started before web.secret_key changed; start it again") from None
    try:
        got = oauth.exchange_code(auth.settings, redirect_uri(settings), code, verifier, now)
    except (oauth.OAuthFailure, oauth.Unavailable) as exc:
        raise ActionError(f"{auth.label} was not authorized: {exc}") from None
    if not got.refresh_token:
        raise ActionError(f"the provider gave no refresh token for {auth.label}; the app must ask for offline "
                          "access")
    tokens.save(store, box, auth.name, got, now, authorized=True)
    return auth
