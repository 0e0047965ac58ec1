"""The operators admin page: the list, adding one, and per operator disable or enable, admin role, password reset.

A reset's temporary password is shown once, in the answer to the reset itself: never in a flash (it would travel
in the session cookie), never in a log.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request

from mailticket.service import operators
from mailticket.service.operators import LastAdmin, OperatorError, UnknownOperator
from mailticket.web.auth import MAX_NAME_CHARS, MAX_PASSWORD_CHARS, SESSION_KEY, Admin, AdminPosting
from mailticket.web.core import flash, redirect, t, web

router = APIRouter(include_in_schema=False)
PAGE = "/admin/operators"
# Form values are cut to twice what the service accepts, so that it says what is wrong (and 422 is kept for
# garbage) while nothing large is read.
UsernameField = Annotated[str, Form(max_length=MAX_NAME_CHARS * 2)]
NameField = Annotated[str, Form(max_length=operators.MAX_NAME_CHARS * 2)]
EmailField = Annotated[str, Form(max_length=640)]
PasswordField = Annotated[str, Form(max_length=MAX_PASSWORD_CHARS * 2)]
NO_STORE = {"Cache-Control": "no-store"}


def _status(refused: OperatorError) -> int:
    if isinstance(refused, UnknownOperator):
        return 404
    return 409 if isinstance(refused, LastAdmin) else 400


def _page(request: Request, status: int = 200, *, error: str | None = None, draft: dict | None = None,
          temporary: tuple[str, str] | None = None):
    app = web(request)
    with app.store.reading() as session:
        people = operators.list_operators(session)
    page = app.render(request, "operators.html", status, operators=people, error=error, temporary=temporary,
                      draft=draft or {"username": "", "name": "", "email": "", "admin": False})
    page.headers.update(NO_STORE)
    return page


@router.get(PAGE)
def operators_page(request: Request, me: Admin):
    return _page(request)


@router.post(PAGE)
def add(request: Request, me: AdminPosting, username: UsernameField = "", name: NameField = "",
        email: EmailField = "", admin: Annotated[str, Form(max_length=10)] = "", password: PasswordField = ""):
    app = web(request)
    try:
        with app.store.transaction() as session:
            added = operators.add_operator(session, username, password, name=name, email=email, admin=bool(admin),
                                           now=app.clock())
            shown_name = added.username
    except OperatorError as refused:
        # The page again with what was typed, but the password.
        return _page(request, _status(refused), error=t(request, "Not added: %(reason)s", reason=refused),
                     draft={"username": username, "name": name, "email": email, "admin": bool(admin)})
    flash(request, t(request, "Operator %(name)s added (admin)", name=shown_name) if admin
          else t(request, "Operator %(name)s added", name=shown_name))
    return redirect(PAGE)


def _change(request: Request, me, username: str, change, done: str, *, ends_own_access: bool = False):
    """Runs one change of `username`; refused: the page again with the reason. `ends_own_access`: when the admin
    changed themselves out of the admin pages, they go to the queue (or the login page) instead of a 403."""
    try:
        with web(request).store.transaction() as session:
            change(session, username)
    except OperatorError as refused:
        return _page(request, _status(refused), error=t(request, "Not changed: %(reason)s", reason=refused))
    flash(request, done)
    return redirect("/" if ends_own_access and username == me.username else PAGE)


@router.post(PAGE + "/disable")
def disable(request: Request, me: AdminPosting, username: UsernameField = ""):
    return _change(request, me, username, operators.disable,
                   t(request, "Operator %(name)s disabled: their sessions and API token stopped working", name=username),
                   ends_own_access=True)


@router.post(PAGE + "/enable")
def enable(request: Request, me: AdminPosting, username: UsernameField = ""):
    return _change(request, me, username, operators.enable, t(request, "Operator %(name)s enabled", name=username))


@router.post(PAGE + "/make-admin")
def make_admin(request: Request, me: AdminPosting, username: UsernameField = ""):
    return _change(request, me, username, lambda session, name: operators.set_admin(session, name, True),
                   t(request, "Operator %(name)s is an admin now", name=username))


@router.post(PAGE + "/remove-admin")
def remove_admin(request: Request, me: AdminPosting, username: UsernameField = ""):
    return _change(request, me, username, lambda session, name: operators.set_admin(session, name, False),
                   t(request, "Operator %(name)s is no longer an admin", name=username), ends_own_access=True)


@router.post(PAGE + "/reset-password")
def reset_password(request: Request, me: AdminPosting, username: UsernameField = ""):
    # An admin resetting their own password stays signed in here; every other session of theirs ends.
    keep = request.session.get(SESSION_KEY) if username == me.username else None
    try:
        with web(request).store.transaction() as session:
            temporary = operators.reset_password(session, username, keep_session=keep)
    except OperatorError as refused:
        return _page(request, _status(refused), error=t(request, "Password not reset: %(reason)s", reason=refused))
    return _page(request, temporary=(username, temporary))
