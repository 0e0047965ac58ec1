"""Who is signed in: login and logout, the operator of the session read from the database on every request, CSRF
checks."""

from __future__ import annotations

import hmac
from datetime import timedelta
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from mailticket.db.models import Operator
from mailticket.i18n import N_
from mailticket.service import operators
from mailticket.web.core import CSRF_KEY, LoginRequired, csrf_token, local_path, redirect, t, web
from mailticket.web.throttle import Busy

# Cookie key of the session's token (its hash is a web_sessions row; the row going ends the session).
SESSION_KEY = "session"
# A session lasts a working week at most; logging out, or being disabled, ends it at once.
SESSION_LIFETIME = timedelta(days=7)
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
# HTTPException details marked N_: the error page translates them, the JSON API keeps them English.
CSRF_REFUSED = N_("invalid or missing CSRF token")
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
    """The operator of this session, read from the database now: logged out, expired or disabled ends it at once."""
    token = request.session.get(SESSION_KEY)
    operator = None
    if isinstance(token, str):
        app = web(request)
        with app.store.reading() as session:
            operator = operators.session_operator(session, token, app.clock())
    if operator is None:
        if token is not None:
            request.session.pop(SESSION_KEY, None)
        raise LoginRequired()
    request.state.operator = operator
    return operator


async def posting(request: Request, operator: Annotated[Operator, Depends(signed_in)]) -> Operator:
    """A signed-in operator whose form carries this session's CSRF token."""
    await check_csrf(request)
    return operator


def admin(operator: Annotated[Operator, Depends(signed_in)]) -> Operator:
    if not operator.is_admin:
        raise HTTPException(403, N_("this page is for admins only"))
    return operator


def admin_posting(operator: Annotated[Operator, Depends(posting)]) -> Operator:
    return admin(operator)


SignedIn = Annotated[Operator, Depends(signed_in)]
Posting = Annotated[Operator, Depends(posting)]
Admin = Annotated[Operator, Depends(admin)]
AdminPosting = Annotated[Operator, Depends(admin_posting)]


@router.get("/login")
def login_page(request: Request, next: str = "/"):
    if isinstance(request.session.get(SESSION_KEY), str):
        try:
            signed_in(request)
            return redirect(local_path(next, "/"))
        except LoginRequired:
            pass
    return web(request).render(request, "login.html", next=local_path(next, "/"), username="", error=None)


def client_address(request: Request) -> str:
    """The client's address; behind a reverse proxy on this host, uvicorn takes it from X-Forwarded-For."""
    return request.client.host if request.client else "unknown"


@router.post("/login", dependencies=[Depends(check_csrf)])
async def login(
    request: Request,
    username: Annotated[str, Form(max_length=MAX_NAME_CHARS)] = "",
    password: Annotated[str, Form(max_length=MAX_PASSWORD_CHARS)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
):
    app, gate = web(request), request.app.state.login_gate
    username, client, target = username.strip(), client_address(request), local_path(next, "/")

    def refused(status: int, error: str):
        return app.render(request, "login.html", status, next=target, username=username, error=error)

    if not gate.may_try(client, username):
        # The same answer for every user name, known or not: it tells nobody which names exist.
        return refused(429, t(request, "too many login attempts from here; try again in a few minutes"))
    try:
        # Outside every transaction, in the gate's own thread: a flood of logins holds no lock and no shared worker
        # thread that anyone else waits for.
        operator_id, new_hash = await gate.run(_check_password, app, username, password)
    except Busy:
        return refused(503, t(request, "the server is busy checking other logins; try again in a moment"))
    if operator_id is None:
        gate.failed(client, username)
        return refused(401, t(request, "wrong user name or password"))
    token = await run_in_threadpool(_start_session, app, operator_id, new_hash)
    # A new session on login: nothing an attacker planted before (a token, a flash) survives it.
    request.session.clear()
    request.session[SESSION_KEY] = token
    csrf_token(request)
    return redirect(target)


def _check_password(app, username: str, password: str) -> tuple[int | None, str | None]:
    """The operator's id when the password is right (None otherwise), and a new hash when the old one's
    parameters are outdated. An unknown name costs the same as a wrong password."""
    with app.store.read_connection() as conn:
        candidate = operators.login_candidate(conn, username)
    if not operators.verify_password(candidate[1] if candidate else None, password):
        return None, None
    return candidate[0], operators.hash_password(password) if operators.needs_rehash(candidate[1]) else None


def _start_session(app, operator_id: int, new_hash: str | None) -> str:
    with app.store.transaction() as session:
        if new_hash is not None:
            session.get(Operator, operator_id).password_hash = new_hash
        return operators.start_session(session, operator_id, app.clock(), SESSION_LIFETIME)


@router.post("/logout", dependencies=[Depends(check_csrf)])
def logout(request: Request):
    token = request.session.get(SESSION_KEY)
    if isinstance(token, str):
        with web(request).store.transaction() as session:
            operators.end_session(session, token)
    request.session.clear()
    return redirect("/login")


@router.post("/logout/everywhere")
def logout_everywhere(request: Request, me: Annotated[Operator, Depends(posting)]):
    """Ends every session of the operator, on every browser (a lost laptop, a cookie seen by someone else)."""
    with web(request).store.transaction() as session:
        operators.end_all_sessions(session, me.id)
    request.session.clear()
    return redirect("/login")
