"""The JSON API's request and response bodies (SPEC §8), as the OpenAPI document shows them."""

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from mailticket.service.actions import MAX_BODY_CHARS

# Claim tokens are secrets.token_urlsafe: nothing outside this alphabet can ever match one.
TOKEN_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"

Status = Literal["open", "pending", "resolved"]


def _without_nul(value: str) -> str:
    # PostgreSQL text refuses NUL; drop it as the service layer does. (Lone surrogates such as "\ud800" never
    # get this far: pydantic refuses them in any length-constrained string, and every request string is one.)
    return value.replace("\x00", "")


Body = Annotated[str, Field(min_length=1, max_length=MAX_BODY_CHARS), AfterValidator(_without_nul)]
Address = Annotated[str, Field(min_length=3, max_length=254, description="an e-mail address")]
ClaimToken = Annotated[str, Field(pattern=TOKEN_PATTERN, description="the token returned by the claim call")]
# The read side hands out ISO 8601 strings with offset (SPEC §9); they are passed through, not re-parsed.
Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]


class StrictModel(BaseModel):
    """Request bodies refuse fields they do not know, so that a typo is an error and not silence."""

    model_config = ConfigDict(extra="forbid")


class RenewRequest(StrictModel):
    claim_token: ClaimToken


class ReplyRequest(StrictModel):
    body: Body
    claim_token: ClaimToken
    keep_claim: bool = Field(False, description="keep the claim after sending (it is released by default)")
    status: Status | None = Field(None, description="set the ticket's status together with the reply")
    to: list[Address] | None = Field(None, max_length=50, description="the recipients; by default the Reply-To, "
                                                                       "else the From, of the customer's newest mail")
    cc: list[Address] = Field([], max_length=50, description="copies")
    reply_all: bool = Field(False, description="also Cc everyone else the customer's newest mail went to")
    seen_message_id: int | None = Field(None, ge=1, le=2**31 - 1, description=(
        "the `id` of the newest message the writer saw: a customer's message newer than it holds the reply back "
        "(409 with `newer_message_ids`) unless `confirm_newer` is true"))
    confirm_newer: bool = Field(False, description="send even though the customer wrote after `seen_message_id`")


class NoteRequest(StrictModel):
    body: Body


class StatusRequest(StrictModel):
    status: Status
    notify: bool = Field(True, description="false resolves without telling the customer: no survey mail")


class Error(BaseModel):
    detail: str


class ClaimConflictError(Error):
    holder: str | None
    expires_at: Timestamp | None


class ReplyConflictError(Error):
    newer_message_ids: list[int] | None = Field(None, description="the customer's messages newer than "
                                                                  "`seen_message_id`, when they held the reply back")


class ClaimGranted(BaseModel):
    token: str
    holder: str
    expires_at: Timestamp


class ClaimRenewed(BaseModel):
    expires_at: Timestamp


class ClaimState(BaseModel):
    holder: str
    expires_at: Timestamp


class ReplyQueued(BaseModel):
    message_id: str


class NoteCreated(BaseModel):
    id: int


class AttachmentOut(BaseModel):
    id: int
    name: str
    content_type: str
    size: int


class MessageOut(BaseModel):
    id: int
    direction: Literal["in", "out", "note"]
    message_id: str
    from_: str = Field(alias="from")
    from_name: str
    to: str
    subject: str
    date: Timestamp | None
    received_at: Timestamp
    text: str
    attachments: list[AttachmentOut]
    matched_by: str | None = Field(description="the SPEC §5 rule that put an inbound message in this ticket")
    autoreply: bool = Field(description="true for auto-replies, bulk mail and bounces")
    loop: str | None


class TicketSummary(BaseModel):
    id: int
    subject: str
    status: Status
    queue: str
    priority: str
    customer: str = Field(description="the customer's address")
    created_at: Timestamp
    last_message_at: Timestamp
    waiting_since: Timestamp | None
    first_response_at: Timestamp | None
    first_response_seconds: float | None
    handle_seconds: float
    resolved_at: Timestamp | None
    follows_ticket: int | None


class TicketListItem(TicketSummary):
    claim: ClaimState | None = Field(description="the live claim, null when the ticket is free or its claim expired")


class TicketDetail(TicketListItem):
    messages: list[MessageOut]
