"""The mailboxes admin page: each mailbox's login and last poll; Connect and Re-authorize, back at /oauth/callback."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse

from mailticket.config_oauth import BROWSER
from mailticket.service import auth_notice, mailboxes, oauth_browser, tokens
from mailticket.service.errors import ActionError
from mailticket.web.auth import SESSION_KEY, Admin, AdminPosting
from mailticket.i18n import N_
from mailticket.web.core import CONTENT_SECURITY_POLICY, flash, redirect, t, web

router = APIRouter(include_in_schema=False)
PAGE = "/admin/mailboxes"


@router.get(PAGE)
def mailboxes_page(request: Request, me: Admin):
    app = web(request)
    found = mailboxes.health(app.store, app.settings)
    connectable = {name.partition(":")[2] or name: auth for name, auth in
                   tokens.authorizations(app.settings).items()}
    page = app.render(request, "mailboxes.html", mailboxes=found, connectable=connectable,
                      callback=oauth_browser.redirect_uri(app.settings))
    # Browsers hold the redirects after a form to form-action too: Connect's 303 must be let through to the
    # provider's sign-in page, and only to the providers this config names.
    providers = sorted({_origin(a.settings.authorization_url) for a in connectable.values()
                        if a.settings.flow == BROWSER and a.settings.authorization_url})
    page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY.replace(
        "form-action 'self'", " ".join(["form-action 'self'", *providers]))
    return page


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@router.post(PAGE + "/authorize")
def authorize(request: Request, me: AdminPosting, mailbox: Annotated[str, Form(max_length=200)] = ""):
    app = web(request)
    try:
        url = oauth_browser.start(app.store, app.settings, mailbox, request.session[SESSION_KEY], app.clock())
    except ActionError as refused:
        flash(request, t(request, "Not started: %(reason)s", reason=refused))
        return redirect(PAGE)
    # 303 to the provider: its sign-in and consent page, which sends the admin back to the callback.
    return RedirectResponse(url, status_code=303)


@router.get(oauth_browser.CALLBACK_PATH)
def callback(request: Request, me: Admin, state: str = "", code: str = "", error: str = "",
             error_description: str = ""):
    app = web(request)
    if error:  # the admin declined, or the provider refused (say, a scope the tenant does not allow)
        if not oauth_browser.cancel(app.store, state[:200], request.session[SESSION_KEY]):
            # Not an answer to this session's request: its words are nobody's to show.
            raise HTTPException(400, N_("this authorization is unknown or was already used; start it again"))
        said = error[:100] + (f" ({error_description[:300]})" if error_description else "")
        flash(request, t(request, "Not authorized: %(reason)s", reason=said))
        return redirect(PAGE)
    if not code or not state:
        raise HTTPException(400, N_("the provider's answer lacks its code or state; start again from the admin page"))
    try:
        auth = oauth_browser.finish(app.store, app.settings, state[:200], code[:4000], request.session[SESSION_KEY],
                                    app.clock())
    except ActionError as refused:
        flash(request, t(request, "Not authorized: %(reason)s", reason=refused))
        return redirect(PAGE)
    problem = mailboxes.check_login(app.store, app.settings, auth.name)
    label = auth_notice.label_in(app.language(request), auth)
    if problem is not None:
        flash(request, t(request, "%(mailbox)s was authorized, but its server refused the login (%(problem)s); sign in "
                                  "as %(user)s, not as yourself, and press Re-authorize", mailbox=label,
                         problem=problem, user=auth.username))
        return redirect(PAGE)
    flash(request, t(request, "%(mailbox)s is authorized; mail is read from it at the next poll", mailbox=label))
    return redirect(PAGE)
