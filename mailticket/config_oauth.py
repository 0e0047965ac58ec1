"""[mailbox.oauth2] and [smtp.oauth2]: OAuth2 settings, with Microsoft's and Google's endpoints and scopes filled in."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mailticket.config_values import Invalid, Key, any_secret, ensure, expect, one_line, one_of, shown

PASSWORD, OAUTH2 = "password", "oauth2"
AUTH_MODES = (PASSWORD, OAUTH2)
PROVIDERS = ("microsoft", "google", "custom")
DEVICE, BROWSER, CLIENT_CREDENTIALS = "device", "browser", "client_credentials"
FLOWS = (DEVICE, BROWSER, CLIENT_CREDENTIALS)
HTTP_URL = re.compile(r"https?://[^\s/]+(/\S*)?")
MICROSOFT = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/"
# Delegated access: reading as the signed-in user, sending as them, and a refresh token (offline_access).
MICROSOFT_DELEGATED = ("https://outlook.office.com/IMAP.AccessAsUser.All", "https://outlook.office.com/SMTP.Send",
                       "offline_access")
# App-only access (client credentials): whatever the app was granted on Exchange Online.
MICROSOFT_APP_ONLY = ("https://outlook.office365.com/.default",)
GOOGLE_AUTHORIZATION = "https://accounts.google.com/o/oauth2/v2/auth"
GOOGLE_TOKEN = "https://oauth2.googleapis.com/token"
GOOGLE_SCOPES = ("https://mail.google.com/",)
# Google gives a refresh token only when asked for offline access, and again on a later consent only with
# prompt=consent: without both, a re-authorization leaves the mailbox with no refresh token at all.
GOOGLE_AUTHORIZATION_PARAMS = (("access_type", "offline"), ("prompt", "consent"))


@dataclass(frozen=True)
class OAuth2Settings:
    provider: str
    flow: str
    client_id: str
    token_url: str
    scopes: tuple[str, ...]
    client_secret: str | None = None
    device_authorization_url: str | None = None
    authorization_url: str | None = None
    authorization_params: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:  # the client secret must never reach a log line or a traceback
        return f"OAuth2Settings(provider={self.provider!r}, flow={self.flow!r}, client_id={self.client_id!r})"


def http_url(value: Any) -> str:
    expect(value, str, 'a URL like "https://login.example.com/token"')
    ensure(HTTP_URL.fullmatch(value.strip()), f'must be a URL like "https://login.example.com/token", not {shown(value)}')
    return value.strip()


def scope_list(value: Any) -> tuple[str, ...]:
    expect(value, list, 'an array of scopes like ["imap", "offline_access"]')
    ensure(value, "must name at least one scope")
    for scope in value:
        expect(scope, str, "an array of strings")
        ensure(scope.strip() and not any(c.isspace() for c in scope.strip()),
               f"must hold scopes without spaces, not {shown(scope)}")
    return tuple(scope.strip() for scope in value)


Error = Callable[[str], Exception]  # makes the config error naming the file: raise error("key problem")
SCHEMA: dict[str, Key] = {
    "provider": Key(one_of(*PROVIDERS), True), "flow": Key(one_of(*FLOWS), True), "client_id": Key(one_line, True),
    "client_secret": Key(any_secret, secret=True), "tenant": Key(one_line), "token_url": Key(http_url),
    "device_authorization_url": Key(http_url), "authorization_url": Key(http_url), "scopes": Key(scope_list),
}
CUSTOM_ONLY = ("token_url", "device_authorization_url", "authorization_url", "scopes")


def resolve(values: dict[str, Any]) -> OAuth2Settings:
    """The checked table with the provider's endpoints and scopes filled in; Invalid starts with the key at fault."""
    provider, flow = values["provider"], values["flow"]
    if provider != "custom":
        for key in CUSTOM_ONLY:
            if key in values:
                raise Invalid(f'{key} is set by provider "{provider}"; give it only with provider = "custom"')
    if provider == "microsoft":
        base = MICROSOFT.format(tenant=values.get("tenant", "organizations"))
        if flow == CLIENT_CREDENTIALS and "tenant" not in values:
            raise Invalid('tenant is required for flow = "client_credentials" (the tenant\'s domain or id)')
        endpoints = dict(token_url=base + "token", device_authorization_url=base + "devicecode",
                         authorization_url=base + "authorize",
                         scopes=MICROSOFT_APP_ONLY if flow == CLIENT_CREDENTIALS else MICROSOFT_DELEGATED)
    elif provider == "google":
        if flow != BROWSER:
            # Google's device flow does not grant mail scopes, and it has no app-only access to Gmail.
            raise Invalid(f'flow must be "browser" for provider "google" (Google grants mail access only that way), '
                          f"not {shown(flow)}")
        endpoints = dict(token_url=GOOGLE_TOKEN, authorization_url=GOOGLE_AUTHORIZATION, scopes=GOOGLE_SCOPES,
                         authorization_params=GOOGLE_AUTHORIZATION_PARAMS)
    else:
        needed = ["token_url", "scopes"] + {DEVICE: ["device_authorization_url"],
                                            BROWSER: ["authorization_url"]}.get(flow, [])
        for key in needed:
            if key not in values:
                raise Invalid(f'{key} is required with provider = "custom" and flow = {shown(flow)}')
        endpoints = {key: values[key] for key in CUSTOM_ONLY if key in values}
    if flow == CLIENT_CREDENTIALS and "client_secret" not in values:
        raise Invalid('client_secret (or client_secret_env / client_secret_file) is required for flow = '
                      '"client_credentials"')
    return OAuth2Settings(provider=provider, flow=flow, client_id=values["client_id"],
                          client_secret=values.get("client_secret"), **endpoints)


def _resolved(where: str, values: dict[str, Any], error: Error) -> OAuth2Settings:
    try:
        return resolve(values)
    except Invalid as problem:
        raise error(f"{where}.oauth2.{problem}") from None


def check_mailbox(where: str, box: dict[str, Any], error: Error) -> None:
    """A password login needs its password; an OAuth2 one its [mailbox.oauth2] table, and no password."""
    if box.get("auth", PASSWORD) == PASSWORD:
        if "oauth2" in box:
            raise error(f'{where}.oauth2 is given but auth is not "oauth2"; add auth = "oauth2"')
        if "password" not in box:
            raise error(f"{where}.password is required (as password, password_env or password_file), "
                               'or auth = "oauth2" with a [mailbox.oauth2] table')
        return
    if "password" in box:
        raise error(f'{where}.password is not used with auth = "oauth2"; remove it')
    if box["name"] == "smtp":
        raise error(f'{where}.name "smtp" is taken by the relay\'s own authorization; pick another name')
    if "oauth2" not in box:
        raise error(f'{where}.oauth2 is required with auth = "oauth2": a [mailbox.oauth2] table '
                           "right after this [[mailbox]]")
    box["oauth2"] = _resolved(where, box["oauth2"], error)


def check_smtp(smtp: dict[str, Any], boxes: dict[str, dict[str, Any]], error: Error) -> None:
    """[smtp] logs in with a password, with its own [smtp.oauth2], or with a mailbox's authorization."""
    if smtp.get("auth", PASSWORD) == PASSWORD:
        for key in ("oauth2", "mailbox"):
            if key in smtp:
                raise error(f'smtp.{key} is given but smtp.auth is not "oauth2"; add auth = "oauth2"')
        if ("username" in smtp) != ("password" in smtp):
            raise error("smtp.username and smtp.password (or password_env/password_file) "
                               "must be given together or not at all")
        return
    if "password" in smtp:
        raise error('smtp.password is not used with auth = "oauth2"; remove it')
    if ("oauth2" in smtp) == ("mailbox" in smtp):
        raise error('smtp.auth = "oauth2" needs either an [smtp.oauth2] table or mailbox = "NAME" '
                           "(to send with that mailbox's authorization), not both")
    if "mailbox" in smtp:
        name = smtp.pop("mailbox")
        box = boxes.get(name)
        if box is None or box.get("auth") != OAUTH2:
            raise error(f"smtp.mailbox names {name!r}, which is not a [[mailbox]] with auth = \"oauth2\"")
        smtp.update(oauth2=box["oauth2"], authorization=f"mailbox:{name}")
        smtp.setdefault("username", box["username"])
        return
    if "username" not in smtp:
        raise error('smtp.username is required with auth = "oauth2": the address it sends as')
    smtp.update(oauth2=_resolved("smtp", smtp["oauth2"], error), authorization="smtp")
