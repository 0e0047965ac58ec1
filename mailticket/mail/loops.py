"""Classifies inbound mail that must never get an automatic answer: auto-replies, bulk, bounces, our own."""

from __future__ import annotations

from collections.abc import Iterable

from mailticket.mail.parse import Inbound

# Header carried by every message we send, so that our own mail coming back is recognised.
LOOP_HEADER = "X-Mailticket-Loop"


def classify(msg: Inbound, own_addresses: Iterable[str] = ()) -> str | None:
    """None for ordinary customer mail, else a short reason: "auto-reply", "bulk", "bounce", "own"."""
    raise NotImplementedError
