"""Claim rules of SPEC §6, pure: who may claim, renew, release or break, given the claim as stored and `now`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ClaimView:
    """A claim as read from the store; holder None means the ticket is free."""

    ticket_id: int
    holder_id: int | None
    holder_name: str | None
    token: str | None
    fence: int
    claimed_at: datetime | None
    expires_at: datetime | None

    def live(self, now: datetime) -> bool:
        return self.holder_id is not None and self.expires_at is not None and self.expires_at > now

    def expired(self, now: datetime) -> bool:
        """Held on paper but past its expiry: anyone may take it over."""
        return self.holder_id is not None and not self.live(now)

    def held_by(self, operator_id: int, now: datetime, token: str | None = None) -> bool:
        """The fencing check: a live claim of this operator, and with this token when one is given."""
        return self.live(now) and self.holder_id == operator_id and (token is None or token == self.token)


class ClaimError(Exception):
    """A claim operation lost: the message says why, in words for the operator."""

    def __init__(self, message: str, *, holder: str | None = None, expires_at: datetime | None = None) -> None:
        super().__init__(message)
        self.holder = holder
        self.expires_at = expires_at


class ClaimConflict(ClaimError):
    """Someone else holds a live claim."""


class ClaimLost(ClaimError):
    """The caller's claim expired, was broken, or was taken over."""


class HeldByOther(ClaimConflict):
    """Someone else holds a live claim, so the caller may not change the ticket (SPEC §13)."""


class NotHolder(ClaimError):
    """The caller does not hold the claim and may not break it."""


def conflict(view: ClaimView) -> ClaimConflict:
    until = view.expires_at.strftime("%H:%M UTC") if view.expires_at else "?"
    return ClaimConflict(
        f"claimed by {view.holder_name} until {until}", holder=view.holder_name, expires_at=view.expires_at
    )


def held_by_other(view: ClaimView) -> HeldByOther:
    until = view.expires_at.strftime("%H:%M UTC") if view.expires_at else "?"
    return HeldByOther(
        f"{view.holder_name} is answering this ticket (claimed until {until}): only they can change it now; "
        "an admin can break the claim first", holder=view.holder_name, expires_at=view.expires_at)


def lost(view: ClaimView | None, operator_id: int, now: datetime) -> ClaimLost:
    """Why the caller's claim is gone, as precisely as the current state tells."""
    if view is None or view.holder_id is None:
        reason = "your claim has expired or was released; claim the ticket again to send"
    elif view.holder_id == operator_id and not view.live(now):
        reason = "your claim has expired; claim the ticket again to send"
    elif view.holder_id == operator_id:
        reason = "this form's claim was replaced by a newer claim of yours; reload the ticket"
    elif view.live(now):
        reason = f"the ticket is claimed by {view.holder_name}; you do not hold it"
    else:
        reason = "your claim has expired; claim the ticket again to send"
    return ClaimLost(reason, holder=view.holder_name if view else None, expires_at=view.expires_at if view else None)
