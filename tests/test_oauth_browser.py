"""The browser authorization (code + PKCE) of an OAuth2 mailbox, in Chromium: an admin presses Connect on the
mailboxes page, consents at a real authorization server (Authlib, in tests/oauth_server.py) and comes back to
/oauth/callback; the mailbox is then read over XOAUTH2 from a real Dovecot. The state is bound to the admin's web
session and spent once. On SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
from urllib.parse import parse_qs, urlencode, urlsplit

from playwright.sync_api import ConsoleMessage, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from sqlalchemy import func, select

from mailticket.config import AutoreplySettings, MailboxSettings, Settings, WebSettings
from mailticket.config_oauth import GOOGLE_AUTHORIZATION_PARAMS, OAuth2Settings
from mailticket.db.models import OAuthPending, OAuthToken
from mailticket.service.poll import poll_mailbox
from tests.factories import make_operator
from tests.mails import make_mail
from tests.oauth_server import AuthServer
from tests.test_oauth_mailboxes import (
    CLIENT_SECRET,
    SECRET_KEY,
    USER,
    stored_refresh_token,
    tickets,
)

CLIENT_ID = "mailticket"
CALLBACK = "/oauth/callback"
AUTHORIZED = "mailbox 'support' is authorized; mail is read from it at the next poll"
ANOTHER_SESSION = "Not authorized: this authorization was started in another session;"
ALREADY_USED = "Not authorized: this authorization is unknown or was already used"


def browser_settings(dovecot, server: AuthServer) -> Settings:
    """One mailbox set up the way Google's are: a confidential web client (it has a secret, and PKCE on top),
    asked for offline access with a consent prompt so that a refresh token comes back every time."""
    box = MailboxSettings(
        name="support", host=dovecot.host, port=dovecot.port, security="none", username=USER,
        address="support@shop.example", auth="oauth2",
        oauth2=OAuth2Settings(provider="custom", flow="browser", client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                              token_url=server.token_url, authorization_url=server.authorization_url,
                              scopes=("imap", "smtp", "offline_access"),
                              authorization_params=GOOGLE_AUTHORIZATION_PARAMS))
    return Settings(mailboxes=(box,), web=WebSettings(secret_key=SECRET_KEY),
                    autoreply=AutoreplySettings(enabled=False))


def served(serve_app, store, settings: Settings, server: AuthServer) -> tuple[str, Settings]:
    """Starts the app, then registers the client with exactly the redirect address the app announces (the
    server compares it character for character); returns the base URL and the settings as served."""
    base_url = serve_app(settings, store)
    settings = dataclasses.replace(settings, web=dataclasses.replace(settings.web, base_url=base_url))
    server.add_client(CLIENT_ID, secret=CLIENT_SECRET, redirect_uris=(base_url + CALLBACK,))
    server.add_user(USER)
    return base_url, settings


def stored_tokens(store) -> int:
    with store.reading() as session:
        return session.scalar(select(func.count()).select_from(OAuthToken))


def pending(store) -> int:
    with store.reading() as session:
        return session.scalar(select(func.count()).select_from(OAuthPending))


def mailbox_row(page: Page):
    return page.locator("#mailbox-support")


def press_connect(page: Page, base_url: str, server: AuthServer, label: str = "Connect") -> str:
    """Opens the mailboxes page, presses the mailbox's button; returns the provider's consent page address.

    When the browser does not get there (a Content-Security-Policy refusing the redirect, say), the failure
    names where it stayed and what the browser's console said, rather than only a timeout.
    """
    console: list[str] = []

    def heard(message: ConsoleMessage) -> None:
        console.append(f"{message.type}: {message.text}")

    page.goto(f"{base_url}/admin/mailboxes")
    button = page.locator("#authorize-support")
    expect(button).to_have_text(label)
    page.on("console", heard)
    try:
        button.click()
        page.wait_for_url(f"{server.authorization_url}?**")
    except PlaywrightTimeout:
        raise AssertionError(f"pressing {label} did not reach the provider's consent page; the browser is at "
                             f"{page.url}; its console said: {console}") from None
    finally:
        page.remove_listener("console", heard)
    expect(page.locator("#allow")).to_be_visible()
    return page.url


def consent(page: Page, user: str = USER) -> str:
    """Signs in at the provider and allows; returns the callback address the provider sent the browser to."""
    page.fill("#username", user)
    with page.expect_request(lambda request: urlsplit(request.url).path == CALLBACK) as sent:
        page.click("#allow")
    return sent.value.url


def test_an_admin_connects_a_google_style_mailbox_in_the_browser_and_it_is_polled(
        store, oauth_dovecot, auth_server, serve_app, operator_page, fast_passwords):
    make_operator(store, "dona", admin=True)
    base_url, settings = served(serve_app, store, browser_settings(oauth_dovecot, auth_server), auth_server)
    page = operator_page(base_url, "dona")

    page.goto(f"{base_url}/admin/mailboxes")
    expect(mailbox_row(page).locator(".mailbox-state")).to_have_text("needs-authorization")
    expect(mailbox_row(page).locator(".mailbox-error")).to_have_text("never authorized")
    expect(page.locator("#callback-url")).to_have_text(base_url + CALLBACK)

    provider_url = press_connect(page, base_url, auth_server)
    asked = {key: values[0] for key, values in parse_qs(urlsplit(provider_url).query).items()}
    assert asked["response_type"] == "code" and asked["client_id"] == CLIENT_ID
    assert asked["redirect_uri"] == base_url + CALLBACK and asked["login_hint"] == USER
    assert asked["scope"] == "imap smtp offline_access"
    assert (asked["access_type"], asked["prompt"]) == ("offline", "consent")  # Google's refresh-token rules
    assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) == 43
    assert CLIENT_SECRET not in provider_url and pending(store) == 1

    callback_url = consent(page)
    assert parse_qs(urlsplit(callback_url).query)["state"] == [asked["state"]]
    page.wait_for_url(f"{base_url}/admin/mailboxes")
    expect(page.locator("#flash")).to_contain_text(AUTHORIZED)
    expect(mailbox_row(page).locator(".mailbox-state")).to_have_text("ok")
    expect(mailbox_row(page).locator(".mailbox-error")).to_have_text("")
    expect(page.locator("#authorize-support")).to_have_text("Re-authorize")

    # One token request: the code, with the PKCE verifier (the server takes no code without one) and the secret.
    assert [(r["grant_type"], r["client_id"], r["success"]) for r in auth_server.token_requests] == [
        ("authorization_code", CLIENT_ID, True)]
    assert stored_refresh_token(store) == auth_server.issued_refresh_tokens(USER)[-1]
    assert pending(store) == 0  # the state is spent

    oauth_dovecot.deliver(USER, [make_mail(message_id="web@customer.example", subject="Pedido 456 veio errado")])
    counts = poll_mailbox(store, settings, settings.mailboxes[0])
    assert counts.fetched == 1 and tickets(store) == ["Pedido 456 veio errado"]
    # The access token from the browser sign-in was used as it was: no renewal was needed.
    assert [r["grant_type"] for r in auth_server.token_requests] == ["authorization_code"]
    page.reload()
    expect(mailbox_row(page).locator(".mailbox-state")).to_have_text("ok")
    expect(mailbox_row(page).locator("td").nth(3)).not_to_have_text("never")


def test_a_callback_in_another_session_stores_nothing(store, oauth_dovecot, auth_server, serve_app, operator_page,
                                                      fast_passwords):
    make_operator(store, "dona", admin=True)
    make_operator(store, "bruno", admin=True)
    make_operator(store, "olga")
    base_url, _settings = served(serve_app, store, browser_settings(oauth_dovecot, auth_server), auth_server)
    dona, bruno = operator_page(base_url, "dona"), operator_page(base_url, "bruno")

    # Dona starts; the consent happens in Bruno's browser, so the provider sends Bruno's session back.
    provider_url = press_connect(dona, base_url, auth_server)
    bruno.goto(provider_url)
    callback_url = consent(bruno)
    bruno.wait_for_url(f"{base_url}/admin/mailboxes")
    expect(bruno.locator("#flash")).to_contain_text(ANOTHER_SESSION)
    expect(mailbox_row(bruno).locator(".mailbox-state")).to_have_text("needs-authorization")
    assert stored_tokens(store) == 0 and auth_server.token_requests == []  # the code was never exchanged

    # The same callback again, now in the session that started it: the state was spent by the first try.
    dona.goto(callback_url)
    dona.wait_for_url(f"{base_url}/admin/mailboxes")
    expect(dona.locator("#flash")).to_contain_text(ALREADY_USED)
    expect(mailbox_row(dona).locator(".mailbox-state")).to_have_text("needs-authorization")
    assert stored_tokens(store) == 0 and auth_server.token_requests == [] and pending(store) == 0

    # The admin declines (or the provider refuses): the provider's words, nothing stored.
    provider_url = press_connect(dona, base_url, auth_server)
    state = parse_qs(urlsplit(provider_url).query)["state"][0]
    dona.goto(f"{base_url}{CALLBACK}?" + urlencode({"error": "access_denied", "state": state}))
    dona.wait_for_url(f"{base_url}/admin/mailboxes")
    expect(dona.locator("#flash")).to_contain_text("Not authorized: access_denied")
    assert stored_tokens(store) == 0 and auth_server.token_requests == []

    # None of that got in the way: started and finished in one session, it works.
    press_connect(dona, base_url, auth_server)
    consent(dona)
    dona.wait_for_url(f"{base_url}/admin/mailboxes")
    expect(dona.locator("#flash")).to_contain_text(AUTHORIZED)
    expect(mailbox_row(dona).locator(".mailbox-state")).to_have_text("ok")
    assert stored_tokens(store) == 1
    assert [(r["grant_type"], r["success"]) for r in auth_server.token_requests] == [("authorization_code", True)]

    # An operator who is not an admin: refused, never a server error, and nothing started or changed.
    olga = operator_page(base_url, "olga")
    assert olga.goto(f"{base_url}/admin/mailboxes").status == 403
    expect(olga.locator("main")).to_contain_text("this page is for admins only")
    for query in ({"code": "x", "state": state}, {"error": "access_denied"}, {}):
        assert olga.goto(f"{base_url}{CALLBACK}?{urlencode(query)}").status == 403
    olga.goto(f"{base_url}/")
    csrf = olga.locator("input[name=csrf_token]").first.input_value()
    refused = olga.request.post(f"{base_url}/admin/mailboxes/authorize",
                                form={"csrf_token": csrf, "mailbox": "support"}, max_redirects=0)
    assert refused.status == 403
    assert stored_tokens(store) == 1 and len(auth_server.token_requests) == 1
