"""The public satisfaction-survey page (no login): `GET /csat/{token}` shows the form, `POST` records the answer.

The signed token in the address is the capability (mailticket.service.csat): no session and no cookie. The form
repeats the token in a hidden field, and the POST must carry the very token of its address, from a page of this
site (the Origin check of the operator forms), so another site cannot post an answer for a customer. The page is in
the language of the ticket's mailbox and carries the shop's name (mailticket.letters).
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse

from mailticket import letters
from mailticket.service import csat
from mailticket.web.auth import check_origin
from mailticket.web.core import web

# A token is ~40 characters; anything far longer is not one of ours.
MAX_TOKEN_CHARS = 200
TOKEN_REFUSED = "this form does not belong to this survey link"

router = APIRouter(include_in_schema=False)


def _page(request: Request, status: int = 200, *, ticket: csat.SurveyTicket | None = None, **context: Any
          ) -> HTMLResponse:
    # Rendered without the operator context: no session, so a customer's visit sets no cookie. In the language of
    # the ticket's mailbox; a link that names no ticket gets the first mailbox's.
    settings = web(request).settings
    context = {"refused": None, "thanked": False, "error": None, "answer": None, "token": "", **context}
    page = letters.render_survey_page(
        settings, letters.language_of(settings, ticket.mailbox if ticket else None), ticket=ticket,
        ratings=csat.RATINGS, max_comment=csat.MAX_COMMENT_CHARS, status=status, **context,
    )
    return HTMLResponse(page, status_code=status, headers={"Cache-Control": "no-store"})


def _ticket_id(request: Request, token: str) -> int | HTMLResponse:
    """The ticket of a valid link, or the refusal page: 400 forged, 410 expired."""
    app = web(request)
    try:
        if len(token) > MAX_TOKEN_CHARS:
            raise csat.BadToken("this survey link is not valid")
        return csat.read_token(app.settings.web.secret_key, token, valid_days=app.settings.csat.valid_days,
                               now=app.clock())
    except csat.ExpiredToken as expired:
        with app.store.reading() as session:
            ticket = csat.find_survey_ticket(session, app.settings, expired.ticket_id)
        return _page(request, 410, ticket=ticket, refused="expired")
    except csat.BadToken:
        return _page(request, 400, refused="invalid")


@router.get("/csat/{token}")
def survey(request: Request, token: str):
    ticket_id = _ticket_id(request, token)
    if isinstance(ticket_id, HTMLResponse):
        return ticket_id
    app = web(request)
    with app.store.reading() as session:
        try:
            ticket = csat.survey_ticket(session, app.settings, ticket_id)
        except csat.BadToken:
            return _page(request, 400, refused="invalid")
        answer = csat.rating(session, ticket_id)
    return _page(request, ticket=ticket, answer=answer, token=token)


@router.post("/csat/{token}")
def answer(
    request: Request, token: str,
    rating: Annotated[str, Form(max_length=8)] = "",
    comment: Annotated[str, Form(max_length=csat.MAX_COMMENT_CHARS * 2)] = "",
    form_token: Annotated[str, Form(alias="token", max_length=MAX_TOKEN_CHARS)] = "",
):
    check_origin(request)
    if not hmac.compare_digest(form_token.encode(), token.encode()):
        raise HTTPException(403, TOKEN_REFUSED)
    ticket_id = _ticket_id(request, token)
    if isinstance(ticket_id, HTMLResponse):
        return ticket_id
    app = web(request)
    # "²" is a digit to str.isdigit() but no number to int(): only ASCII digits are a rating.
    value = int(rating) if rating.strip().isascii() and rating.strip().isdecimal() else 0
    try:
        with app.store.transaction() as session:
            csat.answer(session, ticket_id, value, comment, app.clock())
    except csat.BadToken:
        return _page(request, 400, refused="invalid")
    except csat.BadAnswer:
        with app.store.reading() as session:
            ticket = csat.survey_ticket(session, app.settings, ticket_id)
        # The comment typed is shown again; only the rating is missing.
        return _page(request, 422, ticket=ticket, answer=csat.Answer(0, comment), token=token, error="bad_rating")
    with app.store.reading() as session:
        ticket = csat.survey_ticket(session, app.settings, ticket_id)
        saved = csat.rating(session, ticket_id)
    return _page(request, ticket=ticket, answer=saved, token=token, thanked=True)
