"""The one clock of the process: aware UTC now, passed into the rules rather than read inside them."""

from datetime import datetime, timezone


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
