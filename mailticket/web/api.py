"""JSON API under /api/v1 (SPEC §8): bearer-token auth, ticket list and detail, claims, replies, notes, status."""

# No `from __future__ import annotations`: FastAPI must see the dependencies bound inside build_router.
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from mailticket import metrics
from mailticket.claims import ClaimConflict, ClaimLost, NotHolder
from mailticket.config import Settings
from mailticket.db.models import Operator
from mailticket.db.store import Store
from mailticket.service import actions, operators, recipients
from mailticket.service import claims as claim_service
from mailticket.service.actions import NewerMessage
from mailticket.service.errors import ActionError
from mailticket.db.store import db_now
from mailticket.service.status import change_status
from mailticket.service.ticket_pages import ticket_page
from mailticket.service.tickets import TicketNotFound, get_ticket, iso, ticket_detail, ticket_summary
from mailticket.web.api_models import (ClaimConflictError, ClaimGranted, ClaimRenewed, Error, NoteCreated,
                                       NoteRequest, RenewRequest, ReplyConflictError, ReplyQueued, ReplyRequest,
                                       Status, StatusRequest, TicketDetail, TicketListItem, TicketSummary)

PREFIX = "/api/v1"
# Ticket ids are 32-bit integers on PostgreSQL; a larger id names no ticket, and must not reach the driver.
MAX_TICKET_ID = 2**31 - 1
MAX_LIST_LIMIT = 500
DEFAULT_LIST_LIMIT = 100
# The list's body stays the plain array of SPEC §8; where the next page starts travels in headers.
NEXT_AFTER = "X-Next-After"
PAGE_HEADERS = {
    NEXT_AFTER: {"description": "present when more tickets follow: the `after` value of the next page; "
                                "absent on the last page", "schema": {"type": "integer"}},
    "Link": {"description": 'present when more tickets follow: `<URL of the next page>; rel="next"` (RFC 8288)',
             "schema": {"type": "string"}},
}
MAX_QUERY_CHARS = 200
WWW_AUTHENTICATE = {"WWW-Authenticate": "Bearer"}

class ApiError(Exception):
    """An answer other than success, rendered as {"detail": ...} plus any extra fields."""

    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers, self.extra = status, detail, headers, extra


def _as_error(exc: Exception) -> ApiError | None:
    """The API answer for a refusal from the service layer, None for anything that is a real fault."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, TicketNotFound):
        return ApiError(404, "no such ticket")
    if isinstance(exc, ClaimConflict):
        metrics.claim_conflict(metrics.CLAIM_HELD)  # metrics hook
        return ApiError(409, str(exc), holder=exc.holder, expires_at=iso(exc.expires_at))
    if isinstance(exc, ClaimLost):
        metrics.claim_conflict(metrics.CLAIM_LOST)  # metrics hook
        return ApiError(409, str(exc))
    if isinstance(exc, NotHolder):
        return ApiError(403, str(exc))
    if isinstance(exc, NewerMessage):
        return ApiError(409, str(exc), newer_message_ids=exc.newer)
    if isinstance(exc, ActionError):
        return ApiError(422, str(exc))
    if isinstance(exc, RequestValidationError):
        return ApiError(422, _validation_reason(exc.errors()))
    if isinstance(exc, StarletteHTTPException) and exc.status_code == 400:
        # FastAPI's answer to a body it cannot decode (not UTF-8, say): an invalid body like any other, so 422.
        return ApiError(422, "body: invalid JSON (cannot be decoded)")
    if isinstance(exc, StarletteHTTPException):
        return ApiError(exc.status_code, str(exc.detail), headers=exc.headers)
    return None


def _validation_reason(errors: Any) -> str:
    """FastAPI's error list as one sentence naming each wrong field, e.g. "body.claim_token: field required"."""
    reasons = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        if error.get("type") == "json_invalid":
            # The location of a JSON syntax error is a character offset, not a field.
            reasons.append(f"body: invalid JSON ({error.get('ctx', {}).get('error', 'cannot be parsed')})")
            continue
        message = str(error.get("msg", "is invalid"))
        if error.get("type") == "model_attributes_type" or error.get("type") == "dict_type":
            message = "expected a JSON object sent as Content-Type: application/json"
        where = ".".join(loc) or "request"
        reasons.append(f"{where}: {message[:1].lower()}{message[1:]}")
    return "; ".join(reasons) or "invalid request"


def _error_response(error: ApiError) -> JSONResponse:
    return JSONResponse({"detail": error.detail, **error.extra}, status_code=error.status, headers=error.headers)


class ApiRoute(APIRoute):
    """Answers every refusal of an API route as JSON here, whatever exception handlers the HTML app installs."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                error = _as_error(exc)
                if error is None:
                    raise
                return _error_response(error)

        return guarded


def _errors(*statuses: int, conflict: type[BaseModel] = Error) -> dict[int | str, dict[str, Any]]:
    described = {401: "missing, unknown or disabled API token", 403: "the caller may not do this",
                 404: "no such ticket", 409: "the claim is held by someone else or was lost",
                 422: "invalid request: the detail names the field"}
    return {s: {"model": conflict if s == 409 else Error, "description": described[s]} for s in statuses}


async def valid_ticket_id(ticket_id: Annotated[int, Path(description="the ticket's number", examples=[1])]) -> int:
    # async only so that FastAPI calls it in place rather than in a worker thread.
    if not 1 <= ticket_id <= MAX_TICKET_ID:
        raise ApiError(404, "no such ticket")
    return ticket_id


TicketId = Annotated[int, Depends(valid_ticket_id)]
bearer = HTTPBearer(auto_error=False, scheme_name="bearer",
                    description="an API token printed by `mailticket operator token USER`")


async def bearer_token(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
    if credentials is None:
        raise ApiError(401, "missing bearer token", headers=WWW_AUTHENTICATE)
    return credentials.credentials


def authorized(operator: Operator | None) -> Operator:
    # The token read refuses disabled operators, so disabling one stops their token on the next request.
    if operator is None:
        raise ApiError(401, "unknown or disabled API token", headers=WWW_AUTHENTICATE)
    return operator


def build_router(settings: Settings, store: Store) -> APIRouter:
    """The /api/v1 routes bound to one store; kept in a function so that each app (and test) has its own."""
    def current_operator(token: Annotated[str, Depends(bearer_token)]) -> Operator:
        # A read, before any write transaction begins: a caller with a bad token never waits for the write lock.
        with store.read_connection() as conn:
            return authorized(operators.by_token(conn, token))

    Me = Annotated[Operator, Depends(current_operator)]
    ttl = settings.claims.ttl
    router = APIRouter(prefix=PREFIX, tags=["tickets"], route_class=ApiRoute, responses=_errors(401))

    @router.get("/tickets", response_model=list[TicketListItem],
                responses={200: {"description": "one page of tickets", "headers": PAGE_HEADERS}, **_errors(422)})
    def list_tickets(
        me: Me,
        request: Request,
        response: Response,
        status: Annotated[Status | None, Query(description="only tickets with this status")] = None,
        q: Annotated[str | None, Query(max_length=MAX_QUERY_CHARS,
                                       description="words of the subject, message text, sender address or name, "
                                                   "or the ticket number (full-text, accents ignored)")] = None,
        after: Annotated[int, Query(ge=0, description="only tickets with a greater id: pass the last id seen "
                                                      "to fetch the next page")] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT, description="tickets per page")] = DEFAULT_LIST_LIMIT,
    ) -> list[dict[str, Any]]:
        """Ticket summaries with their live claims, in ticket order, one page at a time: while more follow, the
        X-Next-After header holds the `after` of the next page (and Link its URL)."""
        q = q.replace("\x00", "").strip() if q else None
        with store.reading() as session:
            page = ticket_page(session, status=status, q=q, after=min(after, MAX_TICKET_ID), limit=limit)
        if page.next_after is not None:
            following = request.url.include_query_params(after=page.next_after)
            response.headers[NEXT_AFTER] = str(page.next_after)
            response.headers["Link"] = f'<{following.path}?{following.query}>; rel="next"'
        return page.tickets

    @router.get("/tickets/{ticket_id}", response_model=TicketDetail, responses=_errors(404, 422))
    def show_ticket(me: Me, ticket_id: TicketId) -> dict[str, Any]:
        """The ticket as `ticket show --json` prints it (SPEC §9), with its live claim."""
        with store.reading() as session:
            detail = ticket_detail(session, ticket_id)
            if detail is None:
                raise TicketNotFound(ticket_id)
        return detail

    @router.post("/tickets/{ticket_id}/claim", response_model=ClaimGranted,
                 responses=_errors(404, 409, 422, conflict=ClaimConflictError))
    def claim(me: Me, ticket_id: TicketId) -> dict[str, Any]:
        """Claims the ticket (or renews the caller's own live claim); 409 names whoever holds it."""
        with store.transaction() as session:
            view = claim_service.claim(session, ticket_id, me, ttl)
        return {"token": view.token, "holder": view.holder_name, "expires_at": iso(view.expires_at)}

    @router.post("/tickets/{ticket_id}/claim/renew", response_model=ClaimRenewed, responses=_errors(404, 409, 422))
    def renew(me: Me, ticket_id: TicketId, request: RenewRequest) -> dict[str, Any]:
        """Extends the caller's live claim held with this token; 409 when it was lost."""
        with store.transaction() as session:
            # Renewing on an unknown ticket would read as a lost claim; say what is really wrong.
            claim_service.require_ticket(session, ticket_id)
            view = claim_service.renew(session, ticket_id, me, request.claim_token, ttl)
        return {"expires_at": iso(view.expires_at)}

    @router.delete("/tickets/{ticket_id}/claim", status_code=204, response_class=Response,
                   responses=_errors(403, 404, 422))
    def release(me: Me, ticket_id: TicketId) -> Response:
        """Releases the caller's claim; an admin breaks another operator's claim."""
        with store.transaction() as session:
            view = claim_service.read_claim(session, ticket_id)
            if me.is_admin and view is not None and view.holder_id not in (None, me.id):
                claim_service.break_claim(session, ticket_id, me)
            else:
                claim_service.release(session, ticket_id, me)
        return Response(status_code=204)

    @router.post("/tickets/{ticket_id}/reply", status_code=202, response_model=ReplyQueued,
                 responses=_errors(404, 409, 422, conflict=ReplyConflictError))
    def reply(me: Me, ticket_id: TicketId, request: ReplyRequest) -> dict[str, Any]:
        """Queues a reply; accepted only with the token of the caller's live claim (fencing)."""
        with store.transaction() as session:
            chosen = recipients.for_reply(session, settings, ticket_id, to=request.to, cc=request.cc,
                                          reply_all=request.reply_all)
            message = actions.reply(session, settings, ticket_id, me, request.body, request.claim_token,
                                    keep_claim=request.keep_claim, status=request.status, recipients=chosen,
                                    seen_message_id=request.seen_message_id, confirm_newer=request.confirm_newer)
        return {"message_id": message.message_id}

    @router.post("/tickets/{ticket_id}/notes", status_code=201, response_model=NoteCreated,
                 responses=_errors(404, 422))
    def add_note(me: Me, ticket_id: TicketId, request: NoteRequest) -> dict[str, Any]:
        """Adds an internal note; it is never sent to the customer."""
        with store.transaction() as session:
            note = actions.add_note(session, ticket_id, me, request.body)
            session.flush()
            return {"id": note.id}

    @router.post("/tickets/{ticket_id}/status", response_model=TicketSummary,
                 responses=_errors(404, 409, 422, conflict=ClaimConflictError))
    def set_status(me: Me, ticket_id: TicketId, request: StatusRequest) -> dict[str, Any]:
        """Sets the ticket's status and answers with its summary; 409 names the holder of someone else's live claim."""
        with store.transaction() as session:
            change_status(session, ticket_id, request.status, actor=me, at=db_now(session), settings=settings,
                          notify_customer=request.notify)
            return ticket_summary(get_ticket(session, ticket_id))

    return router


def install(app: FastAPI, settings: Settings, store: Store) -> None:
    """Mounts the JSON API on the app; the app itself serves the OpenAPI document at /api/openapi.json."""
    app.include_router(build_router(settings, store))
