"""Decoding of raw mail text: charsets with fallbacks, RFC 2047 words, ids, dates (addresses: mail/address.py)."""

from __future__ import annotations

import binascii
import codecs
import functools
import re
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

MAX_ID_LENGTH = 998  # RFC 5322 line limit; anything longer is garbage, not an id
# Ids kept from one header: the first (a thread's root) and the newest; a hostile References can carry thousands.
MAX_IDS = 100

# Charsets tried, in order, after the declared one fails: most mislabelled mail is UTF-8 or
# Windows-1252; Latin-1 maps every byte, so the chain always ends with text.
FALLBACK_CHARSETS = ("utf-8", "cp1252")
LAST_RESORT_CHARSET = "latin-1"
# Labels that real mail uses but Python does not know, or knows more narrowly than senders mean
# (WHATWG's rule: "iso-8859-1" mail is really Windows-1252, gb2312 really GBK).
CHARSET_ALIASES = {
    "iso-8859-1": "cp1252", "iso_8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252",
    "gb2312": "gbk", "iso-8859-8-i": "iso-8859-8", "ks_c_5601-1987": "cp949",
    "unicode-1-1-utf-7": "utf-7", "x-unknown": None, "unknown-8bit": None, "x-user-defined": None,
}

# Python codecs that are no mail charset; a sender naming one gets the fallbacks (the escape codecs
# would interpret backslashes, punycode is slow pure Python, "undefined" always fails).
NOT_CHARSETS = frozenset({"punycode", "idna", "unicode-escape", "raw-unicode-escape", "undefined"})

MOSTLY_UTF8_RATIO = 8  # at most one broken sequence per 8 non-ASCII bytes
ASCII_BYTES = bytes(range(128))
# Labels under which senders often send UTF-8: text that is valid UTF-8 is read as such, since
# Windows-1252 text with non-ASCII letters is practically never valid UTF-8 by accident.
UTF8_FIRST = frozenset({"ascii", "cp1252", "iso8859-15"})  # Python codec names
ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")
NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/]")
ANGLE_ID = re.compile(r"<([^<>]*)>")
ID_SEPARATORS = re.compile(r"[\s,]+")


@functools.lru_cache(maxsize=256)
def codec(label: str) -> str | None:
    """The Python codec for a charset label, None when unknown or not a text charset."""
    label = CHARSET_ALIASES.get(label, label)
    try:
        info = codecs.lookup(label) if label else None
    except (LookupError, ValueError):  # ValueError: labels with NUL and the like
        return None
    return info.name if info and info._is_text_encoding and info.name not in NOT_CHARSETS else None


def decode_bytes(data: bytes, declared: str | None, defects: list[str]) -> str:
    """Text of `data`: the declared charset if it works, then the fallbacks; never raises."""
    label = (declared or "").strip().strip("\"'").lower()
    first = codec(label)
    chain = ("utf-8", first, *FALLBACK_CHARSETS) if first in UTF8_FIRST else (first, *FALLBACK_CHARSETS)
    if label and not first:
        defects.append(f"unknown charset {label}")
    for charset in dict.fromkeys(filter(None, chain)):
        try:
            text = data.decode(charset)
        except Exception:  # unknown label, non-text codec or invalid bytes: try the next one
            if charset == "utf-8" and (text := _mostly_utf8(data)) is not None:
                defects.append(f"charset {label or 'none'} declared, decoded as utf-8 with replacements")
                return text
            continue
        if charset == "utf-7":
            text = scrub(text)  # UTF-7 can smuggle lone surrogates, which no database or sanitiser takes
        # Plain ASCII read as UTF-8 under an ASCII-compatible label is no news.
        if first and charset != first and not (first in UTF8_FIRST and text.isascii()):
            defects.append(f"charset {label} declared, decoded as {charset}")
        return text
    defects.append(f"charset {label or 'none'} declared, decoded as {LAST_RESORT_CHARSET}")
    return data.decode(LAST_RESORT_CHARSET)


def scrub(text: str) -> str:
    """`text` with lone surrogates (not encodable as UTF-8) replaced by "?"."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _mostly_utf8(data: bytes) -> str | None:
    """`data` as UTF-8 with replacement characters, if only a few bytes are broken.

    UTF-8 cut mid-character (Yahoo truncates long file names) or with one stray byte is still UTF-8;
    Windows-1252 text read as UTF-8 breaks at nearly every non-ASCII byte.
    """
    text = data.decode("utf-8", "replace")
    broken = text.count("\ufffd")
    return text if broken * MOSTLY_UTF8_RATIO < len(data.translate(None, ASCII_BYTES)) else None


def unfold(value: str) -> str:
    """A header value on one line: folding (CRLF before whitespace) removed, as RFC 5322 §2.2.3 says."""
    return value.replace("\r", "").replace("\n", "") if "\n" in value or "\r" in value else value


def header_text(value: str, charset: str | None = None) -> str:
    """A raw header value (8-bit bytes carried as surrogate escapes) as real text: UTF-8 (RFC 6532) when it is,
    else `charset` (what the message declares or what its bytes look like), else the fallbacks."""
    if value.isascii():
        return value
    try:
        data = value.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:  # already real text, not escaped bytes
        return value
    if charset:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return decode_bytes(data, charset, [])


def is_raw_8bit(value: str) -> bool:
    """Whether a raw header value carries 8-bit bytes that are no UTF-8: only then does its charset matter."""
    if value.isascii():
        return False
    try:
        value.encode("ascii", "surrogateescape").decode("utf-8")
    except UnicodeEncodeError:  # already real text
        return False
    except UnicodeDecodeError:
        return True
    return False


def _decode_word(charset: str, encoding: str, payload: str) -> bytes | None:
    try:
        if encoding in "bB":
            cleaned = NOT_BASE64.sub("", payload)
            if len(cleaned) % 4 == 1:  # one stray character cannot carry a byte; drop it
                cleaned = cleaned[:-1]
            return binascii.a2b_base64(cleaned + "=" * (-len(cleaned) % 4))
        if not payload.isascii():
            # Raw 8-bit text inside a Q word (Eudora did this): it was written in the word's charset.
            try:
                return binascii.a2b_qp(payload.encode(codec(charset) or LAST_RESORT_CHARSET), header=True)
            except Exception:
                pass
        return binascii.a2b_qp(payload.encode("utf-8", "surrogatepass"), header=True)
    except Exception:
        return None


def decode_words(value: str) -> str:
    """RFC 2047 encoded words decoded, including the usual breakage (spaces inside a word, words
    glued to text, a multi-byte character split across two words, a wrong charset label)."""
    if "=?" not in value:
        return value
    out: list[str] = []
    pending = bytearray()
    pending_charset = ""
    last_end = 0

    def flush() -> None:
        nonlocal pending_charset
        if pending_charset:
            out.append(decode_bytes(bytes(pending), pending_charset, []))
            pending.clear()
            pending_charset = ""

    for match in ENCODED_WORD.finditer(value):
        gap = value[last_end : match.start()]
        # Whitespace between two encoded words is folding, not content (RFC 2047 §6.2).
        if not (pending_charset and not gap.strip()):
            flush()
            out.append(gap)
        charset = match.group(1).split("*", 1)[0].lower()  # drop an RFC 2231 language tag
        data = _decode_word(charset, match.group(2), match.group(3))
        if data is None:
            flush()
            out.append(match.group(0))
        else:
            # Adjacent words in one charset are joined as bytes: senders split characters across them.
            if charset != pending_charset:
                flush()
                pending_charset = charset
            pending.extend(data)
        last_end = match.end()
    flush()
    out.append(value[last_end:])
    return "".join(out)


def message_ids(value: str | None, bare_needs_at: bool = True) -> list[str]:
    """Message ids in a header, without brackets, deduplicated in order."""
    if not value:
        return []
    tokens = ANGLE_ID.findall(value)
    if not tokens and "<" not in value:
        # Ids written without brackets; in References/In-Reply-To only tokens that look like ids,
        # so that "your message of Tue, 1 Oct" yields nothing.
        tokens = [t for t in ID_SEPARATORS.split(value) if t and (not bare_needs_at or "@" in t)]
    if len(tokens) > MAX_IDS:
        tokens = [tokens[0], *tokens[-(MAX_IDS - 1):]]
    seen: set[str] = set()
    ids = []
    for token in tokens:
        token = "".join(token.split())  # folding inside an id
        # Control characters and brackets in an id would break the header we write it into when we answer.
        if (token and len(token) <= MAX_ID_LENGTH and token.isprintable() and "<" not in token and ">" not in token
                and token not in seen):
            seen.add(token)
            ids.append(token)
    return ids


def parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        date = parsedate_to_datetime(value)
    except Exception:
        return None
    # "-0000" means "local time unknown" (RFC 5322 §3.3); UTC is the only honest reading.
    return date if date.tzinfo else date.replace(tzinfo=timezone.utc)


def return_path(value: str | None) -> str | None:
    if value is None:
        return None
    match = ANGLE_ID.search(value)
    return "".join((match.group(1) if match else value).split()).lower()
