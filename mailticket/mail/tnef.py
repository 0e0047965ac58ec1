"""Outlook's winmail.dat (TNEF, application/ms-tnef): the files inside it, unpacked with tnefparse, so that operators
get the customer's attachments and not a file nothing but Outlook opens."""

from __future__ import annotations

import mimetypes

from tnefparse import TNEF

TNEF_TYPES = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})


def is_tnef(content_type: str, filename: str) -> bool:
    return content_type in TNEF_TYPES or filename.lower() == "winmail.dat"


def unpacked(data: bytes) -> list[tuple[str, str, bytes]]:
    """(file name, content type, bytes) of each file in the TNEF blob; ValueError when it is no TNEF at all."""
    try:
        attachments = TNEF(data).attachments
    except Exception as exc:  # tnefparse raises what its reader meets: a broken blob is just that
        raise ValueError(f"unreadable TNEF: {type(exc).__name__}") from None
    files = []
    for attachment in attachments:
        name = attachment.long_filename() or attachment.name or "attachment"
        name = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
        files.append((name, mimetypes.guess_type(name)[0] or "application/octet-stream", bytes(attachment.data)))
    return files
