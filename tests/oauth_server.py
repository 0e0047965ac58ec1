"""A real OAuth2 authorization server on loopback (Authlib's Flask endpoints, in-memory), for XOAUTH2 tests."""

from __future__ import annotations

import hmac
import html
import ipaddress
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from authlib.common.security import generate_token
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, InvalidRequestError, OAuth2Error, TokenMixin, UnauthorizedClientError
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc8628 import DeviceAuthorizationEndpoint, DeviceCodeGrant, DeviceCredentialDict
from flask import Flask, jsonify, request
from werkzeug.serving import make_server

from tests.dovecot import Dovecot

HOST = "127.0.0.1"
DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
ALL_GRANTS = (DEVICE_CODE, "authorization_code", "refresh_token", "client_credentials")
SECRET_METHODS = ("client_secret_basic", "client_secret_post")
ANY_CLIENT = [*SECRET_METHODS, "none"]
CODE_LIFETIME = 600  # seconds an authorization code or a device code stays usable


@dataclass
class Client(ClientMixin):
    client_id: str
    secret: str | None
    redirect_uris: tuple[str, ...]
    grants: tuple[str, ...]
    scope: str
    app_username: str | None

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope):
        if not scope:
            return self.scope
        allowed = set(self.scope.split())
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, redirect_uri):
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret):
        return self.secret is not None and hmac.compare_digest(self.secret, client_secret)

    def check_endpoint_auth_method(self, method, endpoint):
        # A public client has nothing to prove; a confidential one may send its secret either way.
        return method == "none" if self.secret is None else method in SECRET_METHODS

    def check_response_type(self, response_type):
        return response_type == "code" and "authorization_code" in self.grants

    def check_grant_type(self, grant_type):
        return grant_type in self.grants


@dataclass
class Token(TokenMixin):
    access_token: str
    refresh_token: str | None
    client_id: str
    username: str
    scope: str
    expires_at: float
    revoked: bool = False
    refresh_revoked: bool = False

    def check_client(self, client):
        return self.client_id == client.get_client_id()

    def get_scope(self):
        return self.scope

    def get_expires_in(self):
        return max(0, int(self.expires_at - time.time()))

    def is_expired(self):
        return time.time() >= self.expires_at

    def is_revoked(self):
        return self.revoked

    def get_user(self):
        return self.username

    def get_client(self):
        return None


@dataclass
class AuthCode:
    code: str
    client_id: str
    redirect_uri: str | None
    scope: str
    username: str
    code_challenge: str
    code_challenge_method: str
    expires_at: float = field(default_factory=lambda: time.time() + CODE_LIFETIME)

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope


# -- Authlib's grants and endpoints, backed by the AuthServer's dicts (reached as server.store) ----------


class _DeviceAuthorization(DeviceAuthorizationEndpoint):
    EXPIRES_IN = CODE_LIFETIME

    @property
    def INTERVAL(self):  # noqa: N802 - Authlib reads the class constant; tests change it per server
        return self.server.store.device_interval

    def get_verification_uri(self):
        return f"{self.server.store.url}/device"

    def save_device_credential(self, client_id, scope, data):
        credential = DeviceCredentialDict(client_id=client_id, scope=scope,
                                          expires_at=time.time() + self.EXPIRES_IN, **data)
        self.server.store._devices[data["device_code"]] = credential


class _DeviceCode(DeviceCodeGrant):
    def query_device_credential(self, device_code):
        return self.server.store._devices.get(device_code)

    def query_user_grant(self, user_code):
        return self.server.store._device_grants.get(user_code)

    def should_slow_down(self, credential):
        return False

    def create_token_response(self):
        answer = super().create_token_response()
        # A device code gives tokens once; polling again with it is an error, as at real servers.
        self.server.store._devices.pop(self.request.payload.data["device_code"], None)
        return answer


class _AuthorizationCode(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ANY_CLIENT

    def save_authorization_code(self, code, request):
        data = request.payload.data
        self.server.store._codes[code] = AuthCode(
            code, request.client.get_client_id(), request.payload.redirect_uri, request.scope, request.user,
            data["code_challenge"], data["code_challenge_method"])

    def query_authorization_code(self, code, client):
        found = self.server.store._codes.get(code)
        if found and found.client_id == client.get_client_id() and found.expires_at > time.time():
            return found
        return None

    def delete_authorization_code(self, authorization_code):
        self.server.store._codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code):
        return authorization_code.username


class _RequiredS256(CodeChallenge):
    """PKCE with S256 on every authorization request.

    Authlib's CodeChallenge(required=True) only demands a code_verifier from public clients at the
    token endpoint; an authorization request without code_challenge still gets a code. Refuse it here.
    """

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant, redirect_uri):
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: missing 'code_challenge'")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("PKCE is required with code_challenge_method=S256")
        super().validate_code_challenge(grant, redirect_uri)


class _RefreshToken(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ANY_CLIENT

    def authenticate_refresh_token(self, refresh_token):
        found = self.server.store._refresh.get(refresh_token)
        return found if found and not found.refresh_revoked else None

    def authenticate_user(self, refresh_token):
        return refresh_token.username

    def issue_token(self, user, refresh_token):
        rotate = self.server.store.rotate_refresh_tokens
        return self.generate_token(user=user, scope=self.request.payload.scope or refresh_token.get_scope(),
                                   include_refresh_token=rotate)

    def revoke_old_credential(self, refresh_token):
        if self.server.store.rotate_refresh_tokens:
            refresh_token.refresh_revoked = True


class _ClientCredentials(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = list(SECRET_METHODS)

    def validate_token_request(self):
        super().validate_token_request()
        # Dovecot needs a mailbox user behind every token; an app-only token borrows the client's.
        if not self.request.client.app_username:
            raise UnauthorizedClientError("client_credentials needs the client's app_username")


class _Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = list(SECRET_METHODS)

    def authenticate_endpoint_client(self, oauth_request):
        # Dovecot posts just token=...; a loopback caller without credentials is trusted like a resource server.
        sent = extract_basic_authorization(oauth_request.headers)[0] or oauth_request.form.get("client_id")
        if not sent and ipaddress.ip_address(request.remote_addr).is_loopback:
            oauth_request.client = None
            return None
        return super().authenticate_endpoint_client(oauth_request)

    def query_token(self, token_string, token_type_hint):
        # Only access tokens: a refresh token must never pass as a bearer token for IMAP or SMTP.
        return self.server.store._access.get(token_string)

    def check_permission(self, token, client, request):
        return True

    def introspect_token(self, token):
        return {"active": True, "username": token.username, "sub": token.username, "scope": token.scope,
                "client_id": token.client_id, "token_type": "Bearer", "exp": int(token.expires_at)}


# -- the server ----------------------------------------------------------------------------------------


DEVICE_PAGE = """<!doctype html>
<title>Device sign-in</title>
<p>{message}</p>
<form method="post" action="/device">
  <label>Code <input name="user_code" id="user_code" value="{user_code}"></label>
  <label>User <input name="username" id="username" value=""></label>
  <button type="submit" id="approve">Approve</button>
</form>
"""

CONSENT_PAGE = """<!doctype html>
<title>Allow access</title>
<p>{message}</p>
<p>{client} asks for: {scope}</p>
<form method="post">
  <label>User <input name="username" id="username" value=""></label>
  <button type="submit" id="allow">Allow</button>
</form>
"""


class AuthServer:
    """OAuth2 server with test controls: `expire_access_tokens()`, `revoke(user)`, `fail_token_requests(n)`."""

    def __init__(self) -> None:
        self.access_token_lifetime = 3600
        self.device_interval = 1
        self.rotate_refresh_tokens = True
        self.token_requests: list[dict] = []
        self.introspections = 0
        # One lock for everything: a /token call runs whole under it, so two processes refreshing with
        # the same refresh token at once get one success and one invalid_grant, never two.
        self._lock = threading.RLock()
        self._clients: dict[str, Client] = {}
        self._users: set[str] = set()
        self._devices: dict[str, DeviceCredentialDict] = {}
        self._device_grants: dict[str, tuple[str | None, bool]] = {}
        self._codes: dict[str, AuthCode] = {}
        self._access: dict[str, Token] = {}
        self._refresh: dict[str, Token] = {}
        self._issued_refresh: dict[str, list[str]] = {}
        self._failures: tuple[int, int] = (0, 503)  # (requests left to fail, status)
        self._http = None
        self._thread: threading.Thread | None = None
        self.app = self._make_app()

    # -- lifecycle

    def start(self) -> "AuthServer":
        self._http = make_server(HOST, 0, self.app, threaded=True)
        # A short poll interval: stop() waits for it, once per test.
        self._thread = threading.Thread(target=self._http.serve_forever, args=(0.05,), name="oauth-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._thread.join()
            self._http.server_close()
            self._http = None

    def __enter__(self) -> "AuthServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._http is not None, "AuthServer is not started"
        return f"http://{HOST}:{self._http.server_port}"

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    @property
    def device_authorization_url(self) -> str:
        return f"{self.url}/device_authorization"

    @property
    def authorization_url(self) -> str:
        return f"{self.url}/authorize"

    @property
    def introspection_url(self) -> str:
        return f"{self.url}/introspect"

    # -- set-up

    def add_client(self, client_id: str, *, secret: str | None = None, redirect_uris=(), grants=ALL_GRANTS,
                   scope: str = "imap smtp offline_access", app_username: str | None = None) -> Client:
        client = Client(client_id, secret, tuple(redirect_uris), tuple(grants), scope, app_username)
        with self._lock:
            self._clients[client_id] = client
        return client

    def add_user(self, username: str) -> None:
        with self._lock:
            self._users.add(username)

    # -- what a person does in the browser

    def approve_device(self, user_code: str, username: str) -> None:
        user_code = user_code.strip().upper()
        with self._lock:
            if username not in self._users:
                raise ValueError(f"unknown user {username!r}")
            if not any(c["user_code"] == user_code for c in self._devices.values()):
                raise ValueError(f"unknown user code {user_code!r}")
            self._device_grants[user_code] = (username, True)

    def deny_device(self, user_code: str) -> None:
        with self._lock:
            self._device_grants[user_code.strip().upper()] = (None, False)

    # -- test controls

    def expire_access_tokens(self) -> None:
        now = time.time()
        with self._lock:
            for token in self._access.values():
                token.expires_at = min(token.expires_at, now)

    def revoke(self, username: str) -> None:
        with self._lock:
            for token in self._access.values():
                if token.username == username:
                    token.revoked = token.refresh_revoked = True

    def fail_token_requests(self, n: int, status: int = 503) -> None:
        with self._lock:
            self._failures = (n, status)

    def issued_refresh_tokens(self, username: str) -> list[str]:
        with self._lock:
            return list(self._issued_refresh.get(username, ()))

    # -- Authlib glue

    def _query_client(self, client_id: str) -> Client | None:
        return self._clients.get(client_id)

    def _save_token(self, token: dict, req) -> None:
        client = req.client
        username = req.user or client.app_username
        record = Token(token["access_token"], token.get("refresh_token"), client.get_client_id(), username,
                       token.get("scope", ""), time.time() + token.get("expires_in", 0))
        self._access[record.access_token] = record
        if record.refresh_token:
            self._refresh[record.refresh_token] = record
            self._issued_refresh.setdefault(username, []).append(record.refresh_token)

    def _expires_in(self, client, grant_type) -> int:
        return self.access_token_lifetime

    def _make_app(self) -> Flask:
        app = Flask(__name__)
        server = AuthorizationServer(app, query_client=self._query_client, save_token=self._save_token)
        server.store = self
        server.register_token_generator("default", BearerTokenGenerator(
            lambda **_: generate_token(42), lambda **_: generate_token(48), self._expires_in))
        server.register_grant(_DeviceCode)
        server.register_grant(_AuthorizationCode, [_RequiredS256(required=True)])
        server.register_grant(_RefreshToken)
        server.register_grant(_ClientCredentials)
        server.register_endpoint(_DeviceAuthorization)
        server.register_endpoint(_Introspection)

        @app.post("/device_authorization")
        def device_authorization():
            with self._lock:
                return server.create_endpoint_response("device_authorization")

        @app.post("/token")
        def token():
            return self._token(server)

        @app.post("/introspect")
        def introspect():
            with self._lock:
                self.introspections += 1
                return server.create_endpoint_response("introspection")

        @app.route("/device", methods=["GET", "POST"])
        def device():
            user_code = request.values.get("user_code", "")
            if request.method == "GET":
                return DEVICE_PAGE.format(message="Enter the code shown on your device.",
                                          user_code=html.escape(user_code))
            try:
                self.approve_device(user_code, request.form.get("username", ""))
            except ValueError as error:
                return DEVICE_PAGE.format(message=html.escape(str(error)), user_code=html.escape(user_code)), 400
            return "<!doctype html><title>Approved</title><p>Device approved. You can close this page.</p>"

        @app.route("/authorize", methods=["GET", "POST"])
        def authorize():
            with self._lock:
                try:
                    grant = server.get_consent_grant(end_user=None)
                except OAuth2Error as error:
                    return server.handle_error_response(None, error)
                page = dict(client=html.escape(grant.client.get_client_id()), scope=html.escape(grant.request.scope))
                if request.method == "GET":
                    return CONSENT_PAGE.format(message="Sign in to allow access.", **page)
                username = request.form.get("username", "")
                if username not in self._users:
                    return CONSENT_PAGE.format(message=f"Unknown user {html.escape(username)}.", **page), 400
                return server.create_authorization_response(grant_user=username, grant=grant)

        return app

    def _token(self, server: AuthorizationServer):
        grant_type = request.form.get("grant_type", "")
        client_id = extract_basic_authorization(request.headers)[0] or request.form.get("client_id")
        with self._lock:
            left, status = self._failures
            if left > 0:
                self._failures = (left - 1, status)
                response = jsonify(error="temporarily_unavailable", error_description="simulated outage")
                response.status_code = status
            else:
                response = server.create_token_response()
            self.token_requests.append(dict(grant_type=grant_type, client_id=client_id, at=time.monotonic(),
                                            success=response.status_code == 200, status=response.status_code))
        return response


@pytest.fixture
def auth_server() -> Iterator[AuthServer]:
    """A started AuthServer with no clients and no users."""
    with AuthServer() as server:
        yield server


@pytest.fixture
def oauth_dovecot(auth_server: AuthServer) -> Iterator[Dovecot]:
    """A private Dovecot that checks XOAUTH2/OAUTHBEARER tokens against `auth_server` and keeps password users."""
    with Dovecot(oauth2_introspection_url=auth_server.introspection_url) as server:
        yield server
