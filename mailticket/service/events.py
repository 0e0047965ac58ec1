"""What happened to a ticket, as the reactions (service/reactions.py) are told: plain values, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class StatusChanged:
    """A ticket's status changed (service/status.py is the only place that says so)."""

    ticket_id: int
    old: str
    new: str
    at: datetime
    operator_id: int | None  # who changed it; None for the system (a customer's mail, a bounce)
    # False resolves without telling the customer (a merged duplicate): no survey mail.
    notify_customer: bool = True


@dataclass(frozen=True)
class ReplySent:
    """The relay accepted an operator's reply: the response the customer waited for (SPEC §7)."""

    ticket_id: int
    operator_id: int | None
    at: datetime


Event = StatusChanged | ReplySent
