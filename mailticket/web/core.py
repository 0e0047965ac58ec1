"""What every web page shares: the app's context (settings, store, clock, templates), rendering, flashes, filters."""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote, urlsplit

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse

from mailticket.config import Settings
from mailticket.db.store import Store

# Session keys: messages for the next page, and the session's CSRF token.
FLASH_KEY = "flash"
CSRF_KEY = "csrf"
# A redirect target must be a path on this site: "//host" and "/\host" are other sites to a browser.
_LOCAL_PATH_PREFIXES_REFUSED = ("//", "/\\")
# An image's cid: link as the sanitiser writes it (always in double quotes).
CID_SOURCE = re.compile(r'src="cid:([^"]*)"', re.IGNORECASE)

# No inline script or style anywhere: the templates load /static/app.css and /static/app.js.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'"
)


class LoginRequired(Exception):
    """No signed-in, enabled operator: a redirect to /login for pages, 401 for posts and JSON."""


@dataclass(frozen=True)
class Web:
    """The app's context, kept on app.state.web and reached through `web(request)`."""

    settings: Settings
    store: Store
    clock: Callable[[], datetime]
    templates: jinja2.Environment

    def render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        flashes = request.session.pop(FLASH_KEY, []) if "session" in request.scope else []
        page = self.templates.get_template(template).render(
            request=request,
            me=getattr(request.state, "operator", None),
            csrf_token=csrf_token(request) if "session" in request.scope else "",
            flashes=flashes,
            now=self.clock(),
            **context,
        )
        return HTMLResponse(page, status_code=status_code)


def csrf_token(request: Request) -> str:
    """This session's CSRF token, made on first use; every form carries it back (checked in auth)."""
    token = request.session.get(CSRF_KEY)
    if not token:
        token = request.session[CSRF_KEY] = secrets.token_urlsafe(32)
    return token


def web(request: Request) -> Web:
    return request.app.state.web


def flash(request: Request, message: str) -> None:
    """A message shown once, on the next page this browser renders."""
    request.session[FLASH_KEY] = [*request.session.get(FLASH_KEY, []), message]


def redirect(url: str) -> RedirectResponse:
    # 303: the browser follows a POST's answer with a GET, so a reload never posts twice.
    return RedirectResponse(url, status_code=303)


def local_path(target: str | None, default: str) -> str:
    """`target` when it is a path on this site, else `default` (no open redirects)."""
    if not target or not target.startswith("/") or target.startswith(_LOCAL_PATH_PREFIXES_REFUSED):
        return default
    parts = urlsplit(target)
    return default if parts.scheme or parts.netloc else target


def wants_json(request: Request) -> bool:
    """The JSON API and the script's renew call get JSON errors; everything else an HTML page."""
    path = request.url.path
    return path.startswith("/api/") or path.endswith("/claim/renew") or path == "/healthz"


# Jinja filters.
def format_time(value: datetime | None) -> str:
    """'2026-11-02 14:32 UTC'."""
    if value is None:
        return "—"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def format_clock(value: datetime | None) -> str:
    """'14:32 UTC', for the expiry of a claim (always within the day's reach)."""
    if value is None:
        return "?"
    return value.astimezone(timezone.utc).strftime("%H:%M UTC")


def format_duration(seconds: float | None) -> str:
    """'2 h 5 min', '3 d 4 h', '12 min'; never negative."""
    if seconds is None:
        return "—"
    minutes = max(0, int(seconds // 60))
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min"


def waiting(since: datetime | None, now: datetime) -> str:
    return format_duration((now - since).total_seconds()) if since is not None else "—"


def format_size(size: int) -> str:
    for unit in ("bytes", "KB", "MB"):
        if size < 1000 or unit == "MB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return str(size)


# An ISO time as the service writes it into history details: "2026-11-02T10:15:00.123+00:00".
_ISO_UTC = re.compile(r"(\d{4}-\d\d-\d\d)T(\d\d:\d\d)(?::\d\d(?:\.\d+)?)?(?:\+00:00|Z)")


def readable(text: str) -> str:
    """History details with their ISO UTC times shown like the rest of the page."""
    return _ISO_UTC.sub(r"\1 \2 UTC", text)


def srcdoc(sanitised_html: str, images: dict[str, str] | None = None) -> str:
    """A whole document around a message's sanitised HTML, for a sandboxed iframe's srcdoc, its cid: images
    replaced by the data: URLs in `images` (by Content-ID).

    The frame has an opaque origin and may run nothing; it only gets our style sheet for a readable font.
    """
    if images:
        sanitised_html = CID_SOURCE.sub(lambda m: _inline(m, images), sanitised_html)
    return ('<!doctype html><html><head><meta charset="utf-8"><link rel="stylesheet" href="/static/app.css">'
            f'</head><body class="mail-doc">{sanitised_html}</body></html>')


def _inline(match: re.Match, images: dict[str, str]) -> str:
    content_id = unquote(html.unescape(match.group(1)))  # RFC 2392: the cid: URL is the Content-ID, %-encoded
    found = images.get(content_id)
    return f'src="{found}"' if found else match.group(0)


def make_templates(folder: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        # Every value is escaped unless a template says otherwise, and none does.
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(time=format_time, clock=format_clock, duration=format_duration, size=format_size,
                       srcdoc=srcdoc, readable=readable)
    env.globals.update(waiting=waiting)
    return env
