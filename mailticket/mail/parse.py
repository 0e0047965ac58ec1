"""Turns raw message bytes into an `Inbound` value; never raises on bad mail, records defects instead."""

from __future__ import annotations

import binascii
import hashlib
import mimetypes
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.generator import BytesGenerator
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from email.policy import Compat32
from email.utils import collapse_rfc2231_value, getaddresses, parsedate_to_datetime
from io import BytesIO

from mailticket.mail import html as html_mail


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes
    content_id: str | None = None
    inline: bool = False


@dataclass(frozen=True)
class Inbound:
    # Message-ID without angle brackets; synthetic ("<sha256-hex>@synthetic.mailticket") when missing,
    # derived from the raw bytes so that a re-fetch of the same bytes yields the same id.
    message_id: str
    synthetic_id: bool
    in_reply_to: tuple[str, ...]  # ids without angle brackets
    references: tuple[str, ...]  # oldest first, as in the header, without angle brackets
    from_addr: str  # lower-cased addr-spec, "" when none could be found
    from_name: str
    to_addrs: tuple[str, ...]  # lower-cased addr-specs of To and Cc
    reply_to: str | None
    return_path: str | None  # "" for the null return path <>, None when absent
    subject: str  # decoded, unfolded, stripped
    date: datetime | None  # timezone-aware, from the Date header
    text: str  # plain text (derived from HTML when the mail is HTML-only)
    html: str | None  # sanitised HTML, None when the mail has no HTML part
    attachments: tuple[Attachment, ...]
    headers: tuple[tuple[str, str], ...]  # (lower-cased name, decoded value), in order
    content_type: str  # of the top-level part, e.g. "multipart/report"
    size: int  # len(raw)
    defects: tuple[str, ...] = field(default=())

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None


SYNTHETIC_ID_DOMAIN = "synthetic.mailticket"
MAX_ID_LENGTH = 998  # RFC 5322 line limit; anything longer is garbage, not an id
MAX_MIME_DEPTH = 40  # deeper nesting is an attack or a loop, not a message a person wrote
MAX_FILENAME_LENGTH = 255
BODY_TYPES = ("text/plain", "text/html")

# Charsets tried, in order, after the declared one fails: most mislabelled mail is UTF-8 or
# Windows-1252; Latin-1 maps every byte, so the chain always ends with text.
FALLBACK_CHARSETS = ("utf-8", "cp1252")
LAST_RESORT_CHARSET = "latin-1"
# Labels that real mail uses but Python does not know, or knows more narrowly than senders mean
# (WHATWG's rule: "iso-8859-1" and "us-ascii" mail is really Windows-1252, gb2312 really GBK).
CHARSET_ALIASES = {
    "iso-8859-1": "cp1252", "latin1": "cp1252", "us-ascii": "cp1252", "ascii": "cp1252",
    "gb2312": "gbk", "iso-8859-8-i": "iso-8859-8", "ks_c_5601-1987": "cp949",
    "unicode-1-1-utf-7": "utf-7", "x-unknown": None, "unknown-8bit": None, "x-user-defined": None,
}

ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")
NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/]")
ANGLE_ID = re.compile(r"<([^<>]*)>")
ID_SEPARATORS = re.compile(r"[\s,]+")
# One mailbox of an address list in the shapes nearly all mail uses: "Name" <a@b>, Name <a@b>, a@b.
# Anything else (comments, groups, routes, odd quoting) goes to the stdlib parser, which is slower.
SIMPLE_MAILBOX = re.compile(
    r'\s*(?:(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<name>[^",<>;:@()\\]*?))\s*<(?P<angle>[^<>\s"]*)>'
    r'|(?P<bare>[^\s",<>;:()\\]+@[^\s",<>;:()\\]+))\s*(?:,|$)'
)
QUOTED_PAIR = re.compile(r"\\(.)")
BARE_ADDRESS = re.compile(r"[^\s<>,;:\"()\[\]]+@[^\s<>,;:\"()\[\]]+")
PATH_SEPARATORS = re.compile(r".*[/\\]")
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
# RFC 5322 §4.5 obsolete syntax: whitespace between a field name and its colon ("Subject :").
# Python's feed parser takes such a line for the start of the body, losing every header after it.
OBS_FIELD_NAME = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]+:", re.MULTILINE)
HEADER_END = re.compile(rb"\r?\n\r?\n")
META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([\w.:-]+)""", re.IGNORECASE)
META_SNIFF_BYTES = 2048


def _decode_bytes(data: bytes, declared: str | None, defects: list[str]) -> str:
    """Text of `data`: the declared charset if it works, then the fallbacks; never raises."""
    label = (declared or "").strip().strip("\"'").lower()
    first = CHARSET_ALIASES.get(label, label) or None
    for charset in (first, *FALLBACK_CHARSETS):
        if not charset:
            continue
        try:
            text = data.decode(charset)
        except Exception:  # unknown label, non-text codec or invalid bytes: try the next one
            continue
        if first and charset != first:
            defects.append(f"charset {label} failed, used {charset}")
        return text
    defects.append(f"charset {label or 'none'} failed, used {LAST_RESORT_CHARSET}")
    return data.decode(LAST_RESORT_CHARSET)


def _unfold(value: str) -> str:
    """A header value on one line: folding (CRLF before whitespace) removed, as RFC 5322 §2.2.3 says."""
    return value.replace("\r", "").replace("\n", "") if "\n" in value or "\r" in value else value


def _unicode(value: str) -> str:
    """A raw header value (8-bit bytes carried as surrogate escapes) as real text."""
    if value.isascii():
        return value
    try:
        data = value.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:  # already real text, not escaped bytes
        return value
    return _decode_bytes(data, None, [])


class _TolerantPolicy(Compat32):
    """compat32 parsing, but header values come back as unfolded text instead of `Header` objects.

    policy.default re-parses Content-Type through the header registry every time the feed parser
    asks for it, which costs ~2.5 ms for a 5 KB message; compat32 builds the same MIME tree in
    ~0.3 ms and we decode headers ourselves (RFC 2047, 8-bit raw headers) in one pass.
    """

    def header_fetch_parse(self, name: str, value: str) -> str:
        return _unfold(_unicode(value)).strip()


POLICY = _TolerantPolicy()


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
                return binascii.a2b_qp(payload.encode(CHARSET_ALIASES.get(charset, charset) or "latin-1"), header=True)
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
            out.append(_decode_bytes(bytes(pending), pending_charset, []))
            pending.clear()
            pending_charset = ""

    for match in ENCODED_WORD.finditer(value):
        gap = value[last_end : match.start()]
        # Whitespace between two encoded words is folding, not content (RFC 2047 §6.2).
        if not (pending_charset and gap.isspace()):
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


def _ids(value: str | None, bare_needs_at: bool = True) -> list[str]:
    """Message ids in a header, without brackets, deduplicated in order."""
    if not value:
        return []
    tokens = ANGLE_ID.findall(value)
    if not tokens and "<" not in value:
        # Ids written without brackets; in References/In-Reply-To only tokens that look like ids,
        # so that "your message of Tue, 1 Oct" yields nothing.
        tokens = [t for t in ID_SEPARATORS.split(value) if t and (not bare_needs_at or "@" in t)]
    seen: set[str] = set()
    ids = []
    for token in tokens:
        token = "".join(token.split())  # folding inside an id
        if token and len(token) <= MAX_ID_LENGTH and token not in seen:
            seen.add(token)
            ids.append(token)
    return ids


def _simple_addresses(value: str) -> list[tuple[str, str]] | None:
    """(name, address) pairs when the value is a plain list of simple mailboxes, else None."""
    pairs = []
    pos, end = 0, len(value.rstrip())
    while pos < end:
        match = SIMPLE_MAILBOX.match(value, pos)
        if match is None or match.end() == pos:
            return None
        if match["bare"]:
            pairs.append(("", match["bare"]))
        else:
            name = QUOTED_PAIR.sub(r"\1", match["quoted"]) if match["quoted"] is not None else match["name"]
            pairs.append((name, match["angle"]))
        pos = match.end()
    return pairs


def _addresses(values: list[str]) -> list[tuple[str, str]]:
    """(decoded display name, lower-cased addr-spec) pairs from raw address header values."""
    found: list[tuple[str, str]] = []
    for value in values:
        if "@" not in value and "<" not in value:
            # "From: Whomever" (RFC 2046's examples, "undisclosed-recipients:;") names nobody we can answer.
            if value.strip():
                found.append((decode_words(value).strip(), ""))
            continue
        pairs = _simple_addresses(value)
        if pairs is None:
            try:
                pairs = getaddresses([value])
            except Exception:
                pairs = []
        pairs = [(decode_words(name).strip(), addr.strip().lower()) for name, addr in pairs if addr.strip()]
        # When the address parser gives up, salvage anything shaped like an address.
        found.extend(pairs or [("", addr.lower()) for addr in BARE_ADDRESS.findall(value)])
    return found


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        date = parsedate_to_datetime(value)
    except Exception:
        return None
    # "-0000" means "local time unknown" (RFC 5322 §3.3); UTC is the only honest reading.
    return date if date.tzinfo else date.replace(tzinfo=timezone.utc)


def _return_path(value: str | None) -> str | None:
    if value is None:
        return None
    match = ANGLE_ID.search(value)
    return "".join((match.group(1) if match else value).split()).lower()


def _payload_bytes(part: Message, defects: list[str]) -> bytes:
    try:
        if part.is_multipart():
            # message/rfc822 and message/delivery-status hold parsed messages; write them back out.
            out = BytesIO()
            generator = BytesGenerator(out, mangle_from_=False, policy=POLICY)
            for inner in part.get_payload():
                generator.flatten(inner)
            return out.getvalue()
        data = part.get_payload(decode=True)
        return data if isinstance(data, bytes) else b""
    except Exception as exc:
        defects.append(f"undecodable part: {type(exc).__name__}")
        payload = part._payload if isinstance(part._payload, str) else ""
        return payload.encode("ascii", "surrogateescape")


def _part_text(part: Message, defects: list[str]) -> str:
    data = _payload_bytes(part, defects)
    try:
        charset = part.get_param("charset")
        charset = collapse_rfc2231_value(charset) if charset else None
    except Exception:
        charset = None
    if not charset and part.get_content_type() == "text/html":
        match = META_CHARSET.search(data, 0, META_SNIFF_BYTES)
        charset = match.group(1).decode("ascii") if match else None
    return _decode_bytes(data, charset, defects).replace("\r\n", "\n").replace("\r", "\n")


def _safe_filename(name: str) -> str:
    """A display name for a download: decoded, no directories, no control characters."""
    name = CONTROL_CHARS.sub("", PATH_SEPARATORS.sub("", decode_words(_unicode(name)))).strip()
    if name in (".", ".."):
        return ""
    if len(name) > MAX_FILENAME_LENGTH:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: MAX_FILENAME_LENGTH - len(ext) - 1] + dot + ext) if dot and len(ext) < 16 else name[:MAX_FILENAME_LENGTH]
    return name


def _subject(value: str | None) -> str:
    return " ".join(decode_words(value).replace("\x00", "").split()) if value else ""


def _filename(part: Message) -> str:
    params = (part.get("content-disposition") or "") + (part.get("content-type") or "")
    if "name" not in params.lower():  # the common case; get_filename() parses both headers twice
        return ""
    try:
        return _safe_filename(part.get_filename() or "")
    except Exception:  # a parameter list too broken to read names no file
        return ""


class _Walk:
    """One pass over the MIME tree collecting body text, HTML and attachments."""

    def __init__(self) -> None:
        self.attachments: list[Attachment] = []
        self.defects: list[str] = []

    def part(self, part: Message, depth: int = 0) -> tuple[list[str], list[str]]:
        """(plain texts, HTML texts) of the body parts under `part`, in order."""
        self.defects.extend(type(defect).__name__ for defect in part.defects)
        if depth > MAX_MIME_DEPTH:
            self.defects.append("MIME nesting too deep")
            return [], []
        ctype = part.get_content_type()
        maintype = ctype.partition("/")[0]
        if maintype == "multipart" and part.is_multipart():
            children = [self.part(child, depth + 1) for child in part.get_payload() if isinstance(child, Message)]
            if ctype == "multipart/alternative":
                # Alternatives are the same content twice: plain from the plain branch, HTML from the richest.
                plain = next((texts for texts, _ in children if texts), [])
                html = next((htmls for _, htmls in reversed(children) if htmls), [])
                return plain, html
            return [t for texts, _ in children for t in texts], [h for _, htmls in children for h in htmls]
        if maintype == "multipart":
            # A multipart without a usable boundary is one opaque body; show it as text.
            self.defects.append("multipart without parts")
            ctype = "text/plain"
        disposition = self._disposition(part)
        filename = _filename(part)
        if ctype in BODY_TYPES and disposition != "attachment" and not filename:
            text = _part_text(part, self.defects)
            if not text.strip():  # an empty part must not hide a sibling alternative that has content
                return [], []
            return ([text], []) if ctype == "text/plain" else ([], [text])
        self.attachments.append(self._attachment(part, ctype, disposition, filename))
        return [], []

    @staticmethod
    def _disposition(part: Message) -> str:
        try:
            return part.get_content_disposition() or ""
        except Exception:
            return ""

    def _attachment(self, part: Message, ctype: str, disposition: str, filename: str) -> Attachment:
        if not filename and ctype == "message/rfc822":
            inner = part.get_payload(0) if part.is_multipart() and part.get_payload() else None
            subject = _subject(inner.get("subject")) if inner is not None else ""
            filename = (_safe_filename(subject.replace("/", "-")) or "message") + ".eml"
        if not filename:
            filename = "attachment" + (mimetypes.guess_extension(ctype) or ".bin")
        content_id = next(iter(_ids(part.get("content-id"), bare_needs_at=False)), None)
        return Attachment(
            filename=filename,
            content_type=ctype,
            data=_payload_bytes(part, self.defects),
            content_id=content_id,
            inline=content_id is not None and disposition != "attachment",
        )


def _repair_field_names(raw: bytes) -> bytes:
    end = HEADER_END.search(raw)
    split = end.start() if end else len(raw)
    if OBS_FIELD_NAME.search(raw, 0, split) is None:
        return raw
    return OBS_FIELD_NAME.sub(rb"\1:", raw[:split]) + raw[split:]


def _parse_tree(raw: bytes, defects: list[str]) -> Message:
    raw = _repair_field_names(raw)
    try:
        return BytesParser(policy=POLICY).parsebytes(raw)
    except Exception as exc:  # e.g. RecursionError on absurd nesting: keep the headers, drop the body
        defects.append(f"unparseable MIME structure: {type(exc).__name__}")
    try:
        return BytesHeaderParser(policy=POLICY).parsebytes(raw)
    except Exception as exc:
        defects.append(f"unparseable headers: {type(exc).__name__}")
        return Message(policy=POLICY)


def parse(raw: bytes) -> Inbound:
    """Everything we need from one raw message; never raises, whatever the bytes."""
    raw = bytes(raw)
    defects: list[str] = []
    message = _parse_tree(raw, defects)

    headers: list[tuple[str, str]] = []
    first_raw: dict[str, str] = {}  # unfolded but not RFC 2047-decoded: address parsing needs the quoting
    raw_values: dict[str, list[str]] = {}
    for name, value in message.raw_items():
        name = str(name).lower()
        # NUL cannot be stored in PostgreSQL text and never means anything in a header.
        value = _unfold(_unicode(str(value))).replace("\x00", "")
        headers.append((name, decode_words(value)))
        first_raw.setdefault(name, value)
        raw_values.setdefault(name, []).append(value)

    message_ids = _ids(first_raw.get("message-id"), bare_needs_at=False)[:1]
    if message_ids:
        message_id, synthetic = message_ids[0], False
    else:
        defects.append("missing Message-ID")
        message_id, synthetic = f"{hashlib.sha256(raw).hexdigest()}@{SYNTHETIC_ID_DOMAIN}", True
    # A message that names itself as its own parent would thread onto itself.
    in_reply_to = tuple(i for i in _ids(first_raw.get("in-reply-to")) if i != message_id)
    references = tuple(i for i in _ids(first_raw.get("references")) if i != message_id)

    senders = _addresses(raw_values.get("from", [])[:1])
    from_name, from_addr = senders[0] if senders else ("", "")
    recipients = _addresses(raw_values.get("to", []) + raw_values.get("cc", []))
    reply_to = _addresses(raw_values.get("reply-to", [])[:1])
    # Some broken mail repeats Date; the first one that parses wins.
    date = next(filter(None, map(_date, raw_values.get("date", []))), None)
    if "date" in raw_values and date is None:
        defects.append("unparseable Date")

    walk = _Walk()
    try:
        plain, htmls = walk.part(message)
    except Exception as exc:  # a bug or a shape we never saw must not lose the message
        defects.append(f"body walk failed: {type(exc).__name__}")
        plain, htmls = [], []
    defects.extend(walk.defects)
    raw_html = "\n".join(htmls).replace("\x00", "") if htmls else None
    text = "\n".join(plain) if plain else html_mail.to_text(raw_html) if raw_html else ""

    try:
        content_type = message.get_content_type()
    except Exception:
        content_type = "text/plain"
    return Inbound(
        message_id=message_id,
        synthetic_id=synthetic,
        in_reply_to=in_reply_to,
        references=references,
        from_addr=from_addr,
        from_name=from_name,
        to_addrs=tuple(dict.fromkeys(addr for _, addr in recipients)),
        reply_to=reply_to[0][1] if reply_to else None,
        return_path=_return_path(first_raw.get("return-path")),
        subject=_subject(first_raw.get("subject")),
        date=date,
        text=text.replace("\x00", ""),
        html=html_mail.sanitize(raw_html) if raw_html is not None else None,
        attachments=tuple(walk.attachments),
        headers=tuple(headers),
        content_type=content_type,
        size=len(raw),
        defects=tuple(dict.fromkeys(defects)),
    )
