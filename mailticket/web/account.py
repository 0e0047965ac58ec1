"""My account: every signed-in operator changes their own password (the current one asked), language and time
zone.

The current password is checked like a login: through the login gate (its limits and its one hashing thread),
outside every transaction, so that a stolen session cannot guess it at full speed.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.concurrency import run_in_threadpool

from mailticket.i18n import N_
from mailticket.localtime import zone_names
from mailticket.service import operators
from mailticket.service.operators import OperatorError
from mailticket.web.auth import MAX_PASSWORD_CHARS, SESSION_KEY, Posting, SignedIn, client_address
from mailticket.web.core import flash, redirect, t, tn, web
from mailticket.web.throttle import Busy

router = APIRouter(include_in_schema=False)
PAGE = "/account"
PasswordField = Annotated[str, Form(max_length=MAX_PASSWORD_CHARS * 2)]
# The choices of the language menu: the value stored, and its name. "" is "not chosen" (translated where shown);
# each language is named in its own words, so that anyone finds theirs whatever the page's language.
LANGUAGE_CHOICES = (("", N_("Browser default")), ("pt-BR", "Português (Brasil)"), ("en", "English"))
NO_STORE = {"Cache-Control": "no-store"}


def _page(request: Request, status: int = 200, *, error: str | None = None, new_password: str = "",
          new_password_again: str = ""):
    app = web(request)
    page = app.render(request, "account.html", status, error=error, languages=LANGUAGE_CHOICES,
                      zones=zone_names(), default_zone=app.settings.web.timezone,
                      new_password=new_password, new_password_again=new_password_again)
    page.headers.update(NO_STORE)  # a refused form comes back with the new password typed: never kept in a cache
    return page


@router.get(PAGE)
def account_page(request: Request, me: SignedIn):
    return _page(request)


@router.post(PAGE + "/password")
async def change_password(request: Request, me: Posting, current_password: PasswordField = "",
                          new_password: PasswordField = "", new_password_again: PasswordField = ""):
    app, gate = web(request), request.app.state.login_gate
    client = client_address(request)

    def refused(status: int, error: str, *, keep_typed: bool = True):
        # The new password as typed comes back (the operator retypes only what was wrong); the current one never.
        typed = (new_password, new_password_again) if keep_typed else ("", "")
        return _page(request, status, error=t(request, "Password not changed: %(reason)s", reason=error),
                     new_password=typed[0],
                     new_password_again=typed[1])

    if new_password != new_password_again:
        return refused(400, t(request, "the two new passwords differ"), keep_typed=False)
    try:
        operators.check_password(new_password)
    except OperatorError as bad:
        return refused(400, str(bad), keep_typed=False)
    if not gate.may_try(client, me.username):
        return refused(429, t(request, "too many attempts from here; try again in a few minutes"))
    try:
        new_hash = await gate.run(_checked_new_hash, me.password_hash, current_password, new_password)
    except Busy:
        return refused(503, t(request, "the server is busy checking logins; try again in a moment"))
    if new_hash is None:
        gate.failed(client, me.username)
        return refused(400, t(request, "the current password is wrong"))
    ended = await run_in_threadpool(_save, app, me.username, new_hash, request.session.get(SESSION_KEY))
    flash(request, tn(request, "Password changed; your %(num)s other session(s) were ended",
                      "Password changed; your %(num)s other session(s) were ended", ended) if ended
          else t(request, "Password changed"))
    return redirect(PAGE)


def _checked_new_hash(current_hash: str, current_password: str, new_password: str) -> str | None:
    """The new password's hash when the current password is right, else None."""
    if not operators.verify_password(current_hash, current_password):
        return None
    return operators.new_password_hash(new_password)


def _save(app, username: str, new_hash: str, keep: str | None) -> int:
    with app.store.transaction() as session:
        return operators.set_password_hash(session, username, new_hash, keep_session=keep)


@router.post(PAGE + "/language")
def choose_language(request: Request, me: Posting, language: Annotated[str, Form(max_length=20)] = ""):
    try:
        with web(request).store.transaction() as session:
            operators.set_language(session, me.username, language)
    except OperatorError as bad:
        return _page(request, 400, error=t(request, "Language not saved: %(reason)s", reason=bad))
    me.language = language or None  # this answer already speaks the language chosen (or the browser's)
    name = t(request, LANGUAGE_CHOICES[0][1]) if not language else dict(LANGUAGE_CHOICES)[language]
    flash(request, t(request, "Language saved: %(language)s", language=name))
    return redirect(PAGE)


@router.post(PAGE + "/timezone")
def choose_timezone(request: Request, me: Posting, timezone: Annotated[str, Form(max_length=80)] = ""):
    try:
        with web(request).store.transaction() as session:
            operators.set_timezone(session, me.username, timezone)
    except OperatorError as bad:
        return _page(request, 400, error=t(request, "Time zone not saved: %(reason)s", reason=bad))
    if timezone:
        flash(request, t(request, "Time zone saved: %(zone)s", zone=timezone))
    else:
        flash(request, t(request, "Time zone saved: the default, %(zone)s", zone=web(request).settings.web.timezone))
    return redirect(PAGE)
