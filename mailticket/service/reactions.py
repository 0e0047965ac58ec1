"""Everything that follows an event, listed once (in the style of Mailman's app/events.py): the places where things
happen only announce them, in the caller's transaction."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from mailticket.config import Settings
from mailticket.service import csat, responses
from mailticket.service.events import Event

Reaction = Callable[[Session, Settings, Event], None]

REACTIONS: list[Reaction] = [
    responses.on_reply_sent,  # first response, first responder, reply count, first-response SLA verdict
    csat.on_resolved,  # the survey mail, once per ticket an operator answered
]


def announce(session: Session, settings: Settings, event: Event) -> None:
    for reaction in REACTIONS:
        reaction(session, settings, event)
