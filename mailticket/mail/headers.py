"""A raw message's header block made readable: lines Python's parser would misread are mended or made harmless
before it sees them."""

from __future__ import annotations

import re

# Header-block lines Python's feed parser does not accept; at the first one it starts the body,
# losing every header after it. Real mail has them: "Subject :" (RFC 5322 §4.5 obsolete syntax),
# a stray word line between two headers, an indented first line.
ODD_HEADER_LINE = re.compile(rb"^(?![\x21-\x39\x3b-\x7e]+:|[ \t]|From (?![ \t]*:)|\r?$)", re.MULTILINE)
OBS_FIELD_NAME = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]+:")
FIELD_LINE = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")
COMMON_FIELDS = frozenset(
    b"from to cc subject date message-id in-reply-to references reply-to return-path sender "
    b"mime-version content-type content-transfer-encoding content-disposition".split()
)
LINE_BREAKING_CONTROLS = re.compile(rb"[\x0b\x0c\x1c\x1d\x1e]")
NEUTRALISED = bytes.maketrans(b"\x0b\x0c\x1c\x1d\x1e", b"\x1a\x1a\x1a\x1a\x1a")


def header_end(raw: bytes) -> tuple[int, int | None]:
    """(index of the newline ending the last header line, index where the body starts or None)."""
    if raw.startswith((b"\n", b"\r\n")):
        return 0, None
    # str.find, not a regex: a regex with optional \r scans ~30x slower.
    ends = [(i, i + size) for i, size in ((raw.find(b"\n\n"), 2), (raw.find(b"\n\r\n"), 3)) if i >= 0]
    return min(ends) if ends else (len(raw), None)


def repair(raw: bytes, defects: list[str]) -> tuple[bytes, int | None]:
    """The raw message with header lines mended that would otherwise end the header block early,
    and the index where its body starts (None when the header block has no end)."""
    split, body_start = header_end(raw)
    if raw[:1] not in b" \t" and ODD_HEADER_LINE.search(raw, 0, split) is None:
        return raw, body_start
    head = raw[:split]
    lines = head.split(b"\n")
    # An indented first line would be taken for a continuation of nothing; a blank one for the body.
    lines[0] = lines[0].lstrip(b" \t")
    if lines[0] in (b"", b"\r") and len(lines) > 1:
        del lines[0]
    for i, line in enumerate(lines):
        if ODD_HEADER_LINE.match(line) is None:
            continue
        # Only lines with headers after them are mended: "Hello :)" may open a body that lost its blank line.
        more_headers = i + 1 < len(lines) and FIELD_LINE.match(lines[i + 1]) is not None
        obsolete = OBS_FIELD_NAME.match(line)
        if obsolete and (more_headers or obsolete.group(1).lower() in COMMON_FIELDS):
            lines[i] = obsolete.group(1) + line[obsolete.end() - 1 :]
        elif i > 0 and more_headers:
            lines[i] = b" " + line  # a stray line between two headers: keep it, as a continuation
        else:
            # The body starts here without its blank line; the full parser knows how to handle that.
            return raw if b"\n".join(lines) == head else b"\n".join(lines) + raw[split:], None
    repaired = b"\n".join(lines)
    if repaired == head:
        return raw, body_start
    defects.append("repaired header block")
    return repaired + raw[split:], body_start and body_start + len(repaired) - len(head)


def neutralise_line_breakers(raw: bytes, defects: list[str]) -> bytes:
    """The header block with the control characters Python's parser takes for line ends made harmless.

    The stdlib splits lines with str.splitlines(), which also breaks at VT, FF and the separators 0x1C-0x1E: a
    sender's "a@x<VT>Bcc: b@y" would become two header fields. They are replaced with SUB (0x1A), which ends no
    line, so that such a value stays one value, and one that the address rule refuses.
    """
    split, _ = header_end(raw)
    if not LINE_BREAKING_CONTROLS.search(raw, 0, split):
        return raw
    defects.append("control characters in the header block")
    return raw[:split].translate(NEUTRALISED) + raw[split:]
