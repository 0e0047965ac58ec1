"""What every web page shares: the app's context (settings, store, clock, templates), rendering, flashes, filters."""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import jinja2
from jinja2.runtime import Context
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse

from mailticket import durations, i18n
from mailticket.config import Settings
from mailticket.db.store import Store
from mailticket.localtime import DEFAULT_LANGUAGE, local_clock, local_day, local_time
from mailticket.web import labels

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
        lang = self.language(request)
        page = self.templates.get_template(template).render(
            request=request,
            me=getattr(request.state, "operator", None),
            csrf_token=csrf_token(request) if "session" in request.scope else "",
            flashes=flashes,
            now=self.clock(),
            lang=lang,
            tz=self.timezone(request),
            **i18n.gettext_callables(lang),  # _(), {% trans %}, ngettext() in the page's language
            **context,
        )
        return HTMLResponse(page, status_code=status_code)

    def language(self, request: Request) -> str:
        """The page's language: as set for this request, else the operator's choice, the browser's (Accept-Language),
        [web] language (mailticket.i18n.negotiate)."""
        chosen = getattr(request.state, "language", None)
        if chosen:
            return chosen
        operator = getattr(request.state, "operator", None)
        return i18n.negotiate(getattr(operator, "language", None), request.headers.get("accept-language"),
                              self.settings.web.language)

    def timezone(self, request: Request) -> str:
        """Where the page's times are shown: the operator's own zone when they chose one, else [web] timezone."""
        return getattr(getattr(request.state, "operator", None), "timezone", None) or self.settings.web.timezone

    def clock_text(self, request: Request, value: datetime | None) -> str:
        """A time of today's reach for a message on this request's page: '00:22' (pt-BR), '12:22 AM' (en)."""
        return local_clock(value, self.language(request), self.timezone(request))


def csrf_token(request: Request) -> str:
    """This session's CSRF token, made on first use; every form carries it back (checked in auth)."""
    token = request.session.get(CSRF_KEY)
    if not token:
        token = request.session[CSRF_KEY] = secrets.token_urlsafe(32)
    return token


def web(request: Request) -> Web:
    return request.app.state.web


def t(request: Request, message: str, /, **values: Any) -> str:
    """`message` in this request's page language, its %(name)s placeholders filled (N_ marks one kept for later)."""
    return i18n.translate(web(request).language(request), message, **values)


def tn(request: Request, singular: str, plural: str, n: int, /, **values: Any) -> str:
    """The form of `singular`/`plural` for `n` in this request's page language (%(num)s is n)."""
    return i18n.translate_plural(web(request).language(request), singular, plural, n, **values)


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


# Jinja filters: times in the page's language (`lang`) and time zone (`tz`), which Web.render puts in every page.
@jinja2.pass_context
def format_time(context: Context, value: datetime | None) -> str:
    """'29/11/2026 00:22' (pt-BR), 'Nov 29, 2026, 12:22 AM' (en)."""
    return local_time(value, context.get("lang"), context.get("tz"))


@jinja2.pass_context
def format_clock(context: Context, value: datetime | None) -> str:
    """'00:22' (pt-BR), '12:22 AM' (en), for the expiry of a claim (always within the day's reach)."""
    return local_clock(value, context.get("lang"), context.get("tz"))


@jinja2.pass_context
def format_day(context: Context, value: date | None) -> str:
    """'29/11/2026' (pt-BR), 'Nov 29, 2026' (en)."""
    return local_day(value, context.get("lang"))


def format_duration(seconds: float | None) -> str:
    """'2 d 5 h', '3 h 5 min', '12 min': the compact form of tables, the same in every language."""
    return durations.compact(seconds)


@jinja2.pass_context
def format_duration_prose(context: Context, seconds: float | None) -> str:
    """'2 dias e 5 horas' (pt-BR), '2 days and 5 hours' (en): a duration inside a sentence."""
    return durations.prose(seconds, context.get("lang") or DEFAULT_LANGUAGE)


def waiting(since: datetime | None, now: datetime) -> str:
    return format_duration((now - since).total_seconds()) if since is not None else "—"


def format_size(size: int) -> str:
    for unit in ("bytes", "KB", "MB"):
        if size < 1000 or unit == "MB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return str(size)


# An ISO time as the service writes it into history details: "2026-11-02T10:15:00.123+00:00".
_ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:[+-]\d\d:\d\d|Z)")


@jinja2.pass_context
def readable(context: Context, text: str) -> str:
    """History details with their ISO times shown like the rest of the page (local time, the page's language)."""
    return _ISO_TIME.sub(lambda m: _readable_time(m.group(0), context.get("lang"), context.get("tz")), text)


def _readable_time(iso: str, lang: str | None, tz: str | None) -> str:
    try:
        return local_time(datetime.fromisoformat(iso), lang, tz)
    except ValueError:  # such as a 25th hour: left as written
        return iso


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
        extensions=["jinja2.ext.i18n"],
    )
    # English where a render brings no gettext of its own (Web.render brings the page language's); newstyle: _()
    # and {% trans %} fill %(name)s and escape the values; trimmed: a {% trans %} block's line breaks are spaces.
    env.install_null_translations(newstyle=True)
    env.policies["ext.i18n.trimmed"] = True
    env.filters.update(time=format_time, clock=format_clock, day=format_day, duration=format_duration,
                       duration_prose=format_duration_prose, size=format_size, srcdoc=srcdoc, readable=readable)
    env.globals.update(waiting=waiting)
    # Stored values and history details in the page's language (web/labels.py).
    env.filters.update(label=labels.label, detail=labels.detail)
    return env
