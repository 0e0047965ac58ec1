"""Who is signed in: login and logout, the operator loaded from the database on every request, CSRF checks."""

from __future__ import annotations

import hmac
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, HTTPException, Request

from mailticket.db.models import Operator
from mailticket.service import operators
from mailticket.service.claims import db_now
from mailticket.web.core import CSRF_KEY, LoginRequired, csrf_token, local_path, redirect, web

# Session key of the signed-in operator's id.
OPERATOR_KEY = "operator"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
CSRF_REFUSED = "invalid or missing CSRF token"
MAX_NAME_CHARS = 64
MAX_PASSWORD_CHARS = 1024

router = APIRouter(include_in_schema=False)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def check_origin(request: Request) -> None:
    """A browser names the page a POST comes from; a page of another site is refused.

    The site's own origin is the configured base_url, or the host this request was sent to
    (a browser always sends the host it talks to, so another site cannot forge it).
    """
    origin = request.headers.get("origin")
    # Under our "Referrer-Policy: no-referrer" a browser sends "Origin: null" even for our own forms,
    # so "null" tells nothing either way: the CSRF token alone decides then.
    if origin is None or origin == "null":
        return
    host = request.headers.get("host", "")
    own = {_origin(web(request).settings.web.base_url), f"{request.url.scheme}://{host}".lower()}
    if origin.lower() not in own:
        raise HTTPException(403, CSRF_REFUSED)


def _same_token(given: object, request: Request) -> bool:
    expected = request.session.get(CSRF_KEY)
    return (isinstance(given, str) and bool(expected)
            and hmac.compare_digest(given.encode(), str(expected).encode()))


async def check_csrf(request: Request) -> None:
    """The form's hidden token (or the script's header) must be this session's token."""
    check_origin(request)
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        given = (await request.form()).get(CSRF_FIELD)
    if not _same_token(given, request):
        raise HTTPException(403, CSRF_REFUSED)


def signed_in(request: Request) -> Operator:
    """The operator of this session, read from the database now: a disabled one is logged out at once."""
    operator_id = request.session.get(OPERATOR_KEY)
    operator = None
    if isinstance(operator_id, int):
        with web(request).store.reading() as session:
            operator = session.get(Operator, operator_id)
    if operator is None or operator.disabled:
        if operator_id is not None:
            request.session.pop(OPERATOR_KEY, None)
        raise LoginRequired()
    request.state.operator = operator
    return operator


async def posting(request: Request, operator: Annotated[Operator, Depends(signed_in)]) -> Operator:
    """A signed-in operator whose form carries this session's CSRF token."""
    await check_csrf(request)
    return operator


def admin(operator: Annotated[Operator, Depends(signed_in)]) -> Operator:
    if not operator.is_admin:
        raise HTTPException(403, "this page is for admins only")
    return operator


SignedIn = Annotated[Operator, Depends(signed_in)]
Posting = Annotated[Operator, Depends(posting)]
Admin = Annotated[Operator, Depends(admin)]


@router.get("/login")
def login_page(request: Request, next: str = "/"):
    if isinstance(request.session.get(OPERATOR_KEY), int):
        try:
            signed_in(request)
            return redirect(local_path(next, "/"))
        except LoginRequired:
            pass
    return web(request).render(request, "login.html", next=local_path(next, "/"), username="", error=None)


@router.post("/login", dependencies=[Depends(check_csrf)])
def login(
    request: Request,
    username: Annotated[str, Form(max_length=MAX_NAME_CHARS)] = "",
    password: Annotated[str, Form(max_length=MAX_PASSWORD_CHARS)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
):
    app = web(request)
    with app.store.transaction() as session:
        now = db_now(session)
        username = username.strip()
        operator = operators.authenticate(session, username, password, now)
        refused_for_a_while = operator is None and operators.locked(operators.by_username(session, username), now)
        operator_id = operator.id if operator is not None else None
    if operator_id is None:
        if refused_for_a_while:
            error, status = "too many failed logins, try again in a few minutes", 429
        else:
            error, status = "wrong user name or password", 401
        return app.render(request, "login.html", status, next=local_path(next, "/"), username=username, error=error)
    # A new session on login: nothing an attacker planted before (a token, a flash) survives it.
    request.session.clear()
    request.session[OPERATOR_KEY] = operator_id
    csrf_token(request)
    return redirect(local_path(next, "/"))


@router.post("/logout", dependencies=[Depends(check_csrf)])
def logout(request: Request):
    request.session.clear()
    return redirect("/login")
