"""OAuth2 client adapter (Authlib over httpx2): device, code + PKCE, client credentials, refresh; three kinds of failure."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx2
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import OAuth2Client

from mailticket.config_oauth import OAuth2Settings

TIMEOUT = 10.0  # seconds for each step (connect, send, each read) of one call to the authorization server
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# The token may not outlive the call that uses it: it is renewed this long before the server says it expires.
EXPIRY_MARGIN = timedelta(seconds=120)
DEFAULT_LIFETIME = 3600  # seconds, when the server does not say (RFC 6749 leaves expires_in optional)
# Answers that mean the person's consent or the refresh token is gone: only a new authorization helps.
LOST = {"invalid_grant", "access_denied", "expired_token", "consent_required", "interaction_required"}
# The server's own "try later" answers (RFC 6749 §5.2 and §4.1.2.1): an outage, not a fault in the setup.
BUSY = {"temporarily_unavailable", "server_error"}
# RFC 8628 §3.5: keep polling (slow_down: and wait 5 s longer each time).
PENDING, SLOW_DOWN = "authorization_pending", "slow_down"


class OAuthFailure(Exception):
    """Something the admin must fix in the provider's setup or the config (a wrong client id or secret, a scope
    not granted); retrying as it is will fail the same way."""


class AuthorizationLost(OAuthFailure):
    """The refresh token or the consent is gone (password reset, MFA change, consent revoked, a Google app in
    "Testing" after 7 days): someone must authorize the mailbox again."""


class Unavailable(Exception):
    """The authorization server could not be reached or answered 5xx: worth another try later."""


@dataclass(frozen=True)
class Tokens:
    access_token: str
    expires_at: datetime  # already less the margin: use the token until then
    refresh_token: str | None  # None when the server sent none (client credentials; or it keeps the old one)

    def __repr__(self) -> str:
        return f"Tokens(expires_at={self.expires_at.isoformat()}, refresh_token={'yes' if self.refresh_token else 'no'})"


@dataclass(frozen=True)
class DeviceCode:
    device_code: str
    user_code: str
    verification_uri: str
    expires_at: float  # time.monotonic()
    interval: float

    def __repr__(self) -> str:
        return f"DeviceCode(user_code={self.user_code!r}, verification_uri={self.verification_uri!r})"


def _client(settings: OAuth2Settings, *, redirect_uri: str | None = None) -> OAuth2Client:
    return OAuth2Client(
        settings.client_id, settings.client_secret, scope=" ".join(settings.scopes), redirect_uri=redirect_uri,
        # A public client (no secret) proves itself with the device code or the PKCE verifier instead.
        token_endpoint_auth_method="client_secret_post" if settings.client_secret else "none",
        code_challenge_method="S256", timeout=TIMEOUT)


def _call(fn, *args, **kwargs) -> dict:
    """Runs one token request; its failure comes out as one of the three kinds."""
    try:
        return fn(*args, **kwargs)
    except (OAuthError, httpx2.HTTPError, ValueError) as exc:
        raise _failure(exc) from None


def _failure(exc: Exception) -> Exception:
    """The kind of a failed token request, in the server's words; never the request, which holds secrets."""
    if isinstance(exc, OAuthError):
        text = f"{exc.error}: {exc.description}" if exc.description else str(exc.error)
        if exc.error in BUSY:
            return Unavailable(f"the authorization server is busy: {text}")
        return (AuthorizationLost if exc.error in LOST else OAuthFailure)(text)
    if isinstance(exc, httpx2.HTTPStatusError):
        status = exc.response.status_code
        kind = Unavailable if status >= 500 or status == 429 else OAuthFailure
        return kind(f"the authorization server answered HTTP {status}")
    # Unreachable, timed out, TLS, or an answer that is not JSON.
    return Unavailable(f"the authorization server could not be reached: {type(exc).__name__}: {exc}")


def _tokens(answer: dict, now: datetime) -> Tokens:
    if not answer.get("access_token"):
        raise OAuthFailure("the authorization server sent no access token")
    try:
        lifetime = int(answer.get("expires_in") or DEFAULT_LIFETIME)
    except (TypeError, ValueError):
        lifetime = DEFAULT_LIFETIME
    # A short-lived token is still used for half its life rather than never.
    margin = min(EXPIRY_MARGIN, timedelta(seconds=lifetime / 2))
    return Tokens(answer["access_token"], now + timedelta(seconds=lifetime) - margin, answer.get("refresh_token"))


def refresh(settings: OAuth2Settings, refresh_token: str, now: datetime) -> Tokens:
    with _client(settings) as client:
        return _tokens(_call(client.refresh_token, settings.token_url, refresh_token=refresh_token), now)


def client_credentials(settings: OAuth2Settings, now: datetime) -> Tokens:
    with _client(settings) as client:
        return _tokens(_call(client.fetch_token, settings.token_url, grant_type="client_credentials"), now)


def start_device(settings: OAuth2Settings) -> DeviceCode:
    """RFC 8628 §3.1: asks for a code the person types at the verification address."""
    with _client(settings) as client:
        answer = _call(_device_authorization, client, settings)
    try:
        return DeviceCode(answer["device_code"], answer["user_code"],
                          answer.get("verification_uri_complete") or answer.get("verification_uri")
                          or answer["verification_url"],  # Google's older name
                          time.monotonic() + float(answer.get("expires_in", 900)),
                          float(answer.get("interval", 5)))
    except (KeyError, TypeError, ValueError):
        raise OAuthFailure("the device authorization answer lacks device_code, user_code or "
                           "verification_uri") from None


def _device_authorization(client: OAuth2Client, settings: OAuth2Settings) -> dict:
    data = {"client_id": settings.client_id, "scope": " ".join(settings.scopes)}
    if settings.client_secret:
        data["client_secret"] = settings.client_secret
    response = client.request("POST", settings.device_authorization_url, data=data, withhold_token=True)
    if response.status_code >= 500:
        response.raise_for_status()
    answer = response.json()
    if not isinstance(answer, dict):
        raise ValueError("not a JSON object")
    if "error" in answer:
        raise OAuthError(error=answer["error"], description=answer.get("error_description"))
    response.raise_for_status()
    return answer


def wait_for_device(settings: OAuth2Settings, code: DeviceCode, now, sleep=time.sleep) -> Tokens:
    """Polls the token endpoint until the person approved (RFC 8628 §3.4); `now` gives the time tokens are
    stamped with. Raises AuthorizationLost when they refused or the code expired."""
    interval = max(code.interval, 0.2)
    with _client(settings) as client:
        while time.monotonic() < code.expires_at:
            try:
                answer = client.fetch_token(settings.token_url, grant_type=DEVICE_GRANT, device_code=code.device_code)
            except OAuthError as exc:
                if exc.error in (PENDING, SLOW_DOWN):
                    interval += 5 if exc.error == SLOW_DOWN else 0
                    sleep(interval)
                    continue
                raise _failure(exc) from None
            except (httpx2.HTTPError, ValueError):
                sleep(interval)  # a blip while the person types: keep waiting until the code expires
                continue
            return _tokens(answer, now())
    raise AuthorizationLost("the code expired before it was entered; run the command again")


def new_pkce() -> tuple[str, str]:
    """(state, code verifier) for one browser authorization: 43+ random characters each (RFC 7636 §4.1)."""
    return generate_token(32), generate_token(64)


def authorization_url(settings: OAuth2Settings, redirect_uri: str, state: str, verifier: str, login_hint: str) -> str:
    with _client(settings, redirect_uri=redirect_uri) as client:
        url, _ = client.create_authorization_url(settings.authorization_url, state=state, code_verifier=verifier,
                                                 login_hint=login_hint, **dict(settings.authorization_params))
    return url


def exchange_code(settings: OAuth2Settings, redirect_uri: str, code: str, verifier: str, now: datetime) -> Tokens:
    with _client(settings, redirect_uri=redirect_uri) as client:
        return _tokens(_call(client.fetch_token, settings.token_url, grant_type="authorization_code", code=code,
                             code_verifier=verifier), now)
