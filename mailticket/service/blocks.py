"""Blocked senders: addresses and whole domains whose mail goes straight to Spam."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mailticket.config_values import DOMAIN
from mailticket.db.models import BlockedSender
from mailticket.mail import address
from mailticket.service.errors import ActionError


def pattern_of(text: str) -> str:
    """An address or a domain as it is kept: lower case; ActionError when it is neither."""
    pattern = text.strip().lower().lstrip("@")
    if "@" in pattern:
        if (problem := address.problem(pattern)) is not None:
            raise ActionError(f"{text[:80]!r} is no address to block: {problem}")
    elif not DOMAIN.fullmatch(pattern):
        raise ActionError(f"{text[:80]!r} is neither an address nor a domain like spam.example")
    return pattern


def block(session: Session, text: str, *, by: str | None, now: datetime) -> str:
    """Blocks an address or a domain (again is no error); returns it as kept."""
    pattern = pattern_of(text)
    if session.get(BlockedSender, pattern) is None:
        session.add(BlockedSender(pattern=pattern, created_at=now, created_by=by))
        session.flush()
    return pattern


def unblock(session: Session, text: str) -> bool:
    """Lifts a block; False when the address or domain was not blocked."""
    return session.execute(delete(BlockedSender).where(BlockedSender.pattern == pattern_of(text))).rowcount > 0


def blocked(session: Session) -> list[BlockedSender]:
    return list(session.scalars(select(BlockedSender).order_by(BlockedSender.pattern)))


def patterns(session: Session) -> frozenset[str]:
    return frozenset(session.scalars(select(BlockedSender.pattern)))


def matching(blocked_patterns: frozenset[str], sender: str) -> str | None:
    """The block that covers `sender`: the address itself, its domain or a domain above it; None when none does."""
    sender = sender.lower()
    if not sender or not blocked_patterns:
        return None
    if sender in blocked_patterns:
        return sender
    labels = sender.rpartition("@")[2].split(".")
    return next((".".join(labels[i:]) for i in range(len(labels) - 1) if ".".join(labels[i:]) in blocked_patterns),
                None)
