"""Turns raw message bytes into an `Inbound` value; never raises on bad mail, records defects instead."""

from __future__ import annotations

import hashlib
import mimetypes
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.generator import BytesGenerator
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from email.policy import Compat32
from email.utils import collapse_rfc2231_value
from io import BytesIO

from mailticket.mail import address
from mailticket.mail import headers as header_block
from mailticket.mail import html as html_mail
from mailticket.mail import detect, tnef
from mailticket.mail.decode import (
    decode_bytes,
    decode_words,
    header_text,
    message_ids,
    parse_date,
    return_path,
    scrub,
    unfold,
)


@dataclass(frozen=True)
class AttachedPart:
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
    attachments: tuple[AttachedPart, ...]
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
# The defect recorded when From holds something that is no valid address: such mail is quarantined.
INVALID_SENDER = "invalid sender address"
MAX_MIME_DEPTH = 40  # deeper nesting is an attack or a loop, not a message a person wrote
MAX_FILENAME_LENGTH = 255
BODY_TYPES = ("text/plain", "text/html")

# A file name is read from at most this much of its (encoded) parameter: 255 characters, RFC 2047-encoded.
MAX_RAW_FILENAME_CHARS = 2000
# Header values are cut here: a header longer than this is an attack, not something a person wrote.
MAX_HEADER_CHARS = 64 * 1024
# The headers whose parameters the stdlib parses on each access, in time that grows with the square of the
# number of parameters: a real Content-Type or Content-Disposition is far shorter.
PARAMETER_HEADERS = frozenset({"content-type", "content-disposition"})
MAX_PARAMETER_HEADER_CHARS = 8 * 1024
# Parts kept as attachments of one message; the rest stays readable in the raw message.
MAX_ATTACHMENTS = 250
# A Content-ID only names a part for cid: links; a longer one names nothing real (attachments.content_id).
MAX_CONTENT_ID_CHARS = 255
CONTAINER_TYPES = ("multipart", "message")
# A cheap look at the raw header block, so that multipart mail is not parsed twice; a folded
# Content-Type that slips past it is caught by the parsed header and only costs a second parse.
CONTAINER_CONTENT_TYPE = re.compile(rb"^content-type:\s*(multipart|message)/", re.IGNORECASE | re.MULTILINE)
META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([\w.:-]+)""", re.IGNORECASE)
META_SNIFF_BYTES = 2048


class _TolerantPolicy(Compat32):
    """compat32 parsing, but header values come back as unfolded text instead of `Header` objects.

    policy.default re-parses Content-Type through the header registry every time the feed parser
    asks for it, which costs ~2.5 ms for a 5 KB message; compat32 builds the same MIME tree in
    ~0.3 ms and we decode headers ourselves (RFC 2047, 8-bit raw headers) in one pass.
    """

    def header_fetch_parse(self, name: str, value: str) -> str:
        limit = MAX_PARAMETER_HEADER_CHARS if name.lower() in PARAMETER_HEADERS else MAX_HEADER_CHARS
        return unfold(header_text(value[:limit])).strip()


POLICY = _TolerantPolicy()
# Enclosed messages are written back out as .eml files, with the line ends of the wire.
EML_POLICY = POLICY.clone(linesep="\r\n")


def _payload_bytes(part: Message, defects: list[str]) -> bytes:
    try:
        if part.is_multipart():
            # message/rfc822 and message/delivery-status hold parsed messages; write them back out.
            out = BytesIO()
            generator = BytesGenerator(out, mangle_from_=False, policy=EML_POLICY)
            for inner in part.get_payload():
                generator.flatten(inner)
            return out.getvalue()
        data = part.get_payload(decode=True)
        return data if isinstance(data, bytes) else b""
    except Exception as exc:  # e.g. RecursionError writing out an absurdly nested enclosed message
        defects.append(f"undecodable part: {type(exc).__name__}")
        return b""


def _part_text(part: Message, defects: list[str], default_charset: str | None) -> str:
    data = _payload_bytes(part, defects)
    try:
        charset = part.get_param("charset")
        charset = collapse_rfc2231_value(charset) if charset else None
    except Exception:
        charset = None
    if not charset and part.get_content_type() == "text/html":
        match = META_CHARSET.search(data, 0, META_SNIFF_BYTES)
        charset = match.group(1).decode("ascii") if match else None
    return decode_bytes(data, charset or default_charset, defects).replace("\r\n", "\n").replace("\r", "\n")


def _safe_filename(name: str) -> str:
    """A display name for a download: decoded, no directories, no control characters."""
    name = scrub(decode_words(header_text(name[:MAX_RAW_FILENAME_CHARS])))
    name = name.replace("\\", "/").rpartition("/")[2]
    # Control characters, and the invisible marks that show "gpj.exe" as "exe.jpg", are no part of a name.
    name = address.BIDI_CONTROLS.sub("", address.CONTROL.sub("", name)).strip()
    if name in (".", ".."):
        return ""
    if len(name) > MAX_FILENAME_LENGTH:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: MAX_FILENAME_LENGTH - len(ext) - 1] + dot + ext) if dot and len(ext) < 16 else name[:MAX_FILENAME_LENGTH]
    return name


def _bounded(name: str, value: str) -> str:
    """At most MAX_HEADER_CHARS of a header; of References the end too, where the newest ids are."""
    if len(value) <= MAX_HEADER_CHARS:
        return value
    if name == "references":
        head = MAX_HEADER_CHARS // 16
        return value[:head] + " " + value[-(MAX_HEADER_CHARS - head):]
    return value[:MAX_HEADER_CHARS]


def _display_name(name: str) -> str:
    return " ".join(address.CONTROL.sub(" ", decode_words(name)).split())


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


_Chunk = tuple[bool, str]  # (is HTML, decoded text of one body part)


def _sanitized(html: str, defects: list[str]) -> str:
    try:
        return html_mail.sanitize(html)
    except html_mail.TooComplex as exc:
        defects.append(f"{exc}: shown as text")
        return html_mail.from_text(html_mail.strip_tags(html))
    except Exception as exc:  # the sanitiser refusing input must not lose the message: show it as text
        defects.append(f"unsanitisable HTML: {type(exc).__name__}")
        return html_mail.from_text(html_mail.to_text(html))


def _pick(views: list[list[_Chunk]], want_html: bool) -> list[_Chunk]:
    """The first view holding a part of the wanted kind, else the first that holds anything."""
    views = [view for view in views if view]
    return next((v for v in views if any(is_html == want_html for is_html, _ in v)), views[0] if views else [])


def _text_view(chunks: list[_Chunk]) -> str:
    return "\n".join(html_mail.to_text(text) if is_html else text for is_html, text in chunks)


def _html_view(chunks: list[_Chunk]) -> str | None:
    """The HTML to show, None when no body part is HTML; plain parts among HTML ones become <pre>."""
    if not any(is_html for is_html, _ in chunks):
        return None
    return "\n".join(text if is_html else html_mail.from_text(text) for is_html, text in chunks)


class _Walk:
    """One pass over the MIME tree collecting body text, HTML and attachments."""

    def __init__(self, default_charset: str | None) -> None:
        self.default_charset = default_charset  # for text parts that declare none: the charset of the headers
        self.attachments: list[AttachedPart] = []
        self.defects: list[str] = []

    def part(self, part: Message, depth: int = 0) -> tuple[list[_Chunk], list[_Chunk]]:
        """The body parts under `part`, in order: those to read as text, and those to show as HTML.

        Outside multipart/alternative every body part belongs to both views (as in JMAP, RFC 8621
        §4.1.4): a mailing list's plain footer under an HTML-only message is part of both.
        """
        self.defects.extend(type(defect).__name__ for defect in part.defects)
        if depth > MAX_MIME_DEPTH:
            self.defects.append("MIME nesting too deep")
            return [], []
        ctype = part.get_content_type()
        maintype = ctype.partition("/")[0]
        if maintype == "multipart" and part.is_multipart():
            children = [self.part(child, depth + 1) for child in part.get_payload() if isinstance(child, Message)]
            if ctype == "multipart/alternative":
                # Alternatives are the same content twice: text from the plain branch, HTML from the richest.
                return (
                    _pick([texts for texts, _ in children], want_html=False),
                    _pick([htmls for _, htmls in reversed(children)], want_html=True),
                )
            return [t for texts, _ in children for t in texts], [h for _, htmls in children for h in htmls]
        if maintype == "multipart":
            # A multipart without a usable boundary is one opaque body; show it as text.
            self.defects.append("multipart without parts")
            ctype = "text/plain"
        disposition = self._disposition(part)
        filename = _filename(part)
        if ctype in BODY_TYPES and disposition != "attachment" and not filename:
            text = _part_text(part, self.defects, self.default_charset)
            if not text.strip():  # an empty part must not hide a sibling alternative that has content
                return [], []
            chunk = (ctype == "text/html", text)
            return [chunk], [chunk]
        if len(self.attachments) >= MAX_ATTACHMENTS:
            self.defects.append(f"more than {MAX_ATTACHMENTS} attachments: the others stay in the raw message")
            return [], []
        attachment = self._attachment(part, ctype, disposition, filename)
        if tnef.is_tnef(ctype, attachment.filename):
            self.attachments.extend(self._unpacked(attachment))
        else:
            self.attachments.append(attachment)
        return [], []

    def _unpacked(self, winmail: AttachedPart) -> list[AttachedPart]:
        """The files inside a winmail.dat; the blob itself when they cannot be read."""
        try:
            files = tnef.unpacked(winmail.data)
        except ValueError as exc:
            self.defects.append(str(exc))
            return [winmail]
        if not files:  # only Outlook's formatting inside: keep the blob, it is still what the customer sent
            return [winmail]
        room = max(0, MAX_ATTACHMENTS - len(self.attachments))
        return [AttachedPart(_safe_filename(name) or "attachment", ctype, data) for name, ctype, data in files][:room]

    @staticmethod
    def _disposition(part: Message) -> str:
        try:
            return part.get_content_disposition() or ""
        except Exception:
            return ""

    def _attachment(self, part: Message, ctype: str, disposition: str, filename: str) -> AttachedPart:
        if not filename and ctype == "message/rfc822":
            inner = part.get_payload(0) if part.is_multipart() and part.get_payload() else None
            subject = _subject(inner.get("subject")) if inner is not None else ""
            # Slashes in a subject are text, not directories.
            filename = (_safe_filename(subject.replace("/", "-").replace("\\", "-")) or "message") + ".eml"
        if not filename:
            filename = "attachment" + (mimetypes.guess_extension(ctype) or ".bin")
        content_id = next(iter(message_ids(part.get("content-id"), bare_needs_at=False)), None)
        if content_id is not None and len(content_id) > MAX_CONTENT_ID_CHARS:
            self.defects.append("Content-ID too long: left out")
            content_id = None
        return AttachedPart(
            filename=filename,
            content_type=ctype,
            data=_payload_bytes(part, self.defects),
            content_id=content_id,
            inline=content_id is not None and disposition != "attachment",
        )


def _parse_tree(raw: bytes, defects: list[str]) -> Message:
    raw = header_block.neutralise_line_breakers(raw, defects)
    raw, body_start = header_block.repair(raw, defects)
    try:
        if body_start is not None and not CONTAINER_CONTENT_TYPE.search(raw, 0, body_start):
            message = BytesHeaderParser(policy=POLICY).parsebytes(raw[:body_start])
            if message.get_content_maintype() not in CONTAINER_TYPES:
                # A single part needs no line-by-line boundary scan (~40% of the parse): its body is
                # everything after the blank line, as the feed parser would have found it.
                message.set_payload(raw[body_start:].decode("ascii", "surrogateescape"))
                return message
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
    items = [(str(name).lower(), _bounded(str(name).lower(), str(value))) for name, value in message.raw_items()]
    charset = detect.header_charset(raw, message, [value for _, value in items])
    for name, value in items:
        # NUL cannot be stored in PostgreSQL text and never means anything in a header.
        value = unfold(header_text(value, charset)).replace("\x00", "")
        headers.append((name, decode_words(value)))
        first_raw.setdefault(name, value)
        raw_values.setdefault(name, []).append(value)

    own_ids = message_ids(first_raw.get("message-id"), bare_needs_at=False)
    if own_ids:
        message_id, synthetic = own_ids[0], False
    else:
        defects.append("missing Message-ID")
        message_id, synthetic = f"{hashlib.sha256(raw).hexdigest()}@{SYNTHETIC_ID_DOMAIN}", True
    # A message that names itself as its own parent would thread onto itself.
    in_reply_to = tuple(i for i in message_ids(first_raw.get("in-reply-to")) if i != message_id)
    references = tuple(i for i in message_ids(first_raw.get("references")) if i != message_id)

    sender = next(iter(address.read(raw_values.get("from", [])[:1])), None)
    from_name = _display_name(sender.name) if sender else ""
    from_addr = sender.address if sender is not None and sender.problem is None else ""
    if sender is not None and sender.problem is not None:
        defects.append(f"{INVALID_SENDER}: {sender.problem}")
    recipients = [m for m in address.read(raw_values.get("to", []) + raw_values.get("cc", [])) if m.address]
    if any(m.problem for m in recipients):
        defects.append("invalid recipient addresses left out")
    reply_to = [m.address for m in address.read(raw_values.get("reply-to", [])[:1]) if m.address and not m.problem]
    # Some broken mail repeats Date; the first one that parses wins.
    date = next(filter(None, map(parse_date, raw_values.get("date", []))), None)
    if "date" in raw_values and date is None:
        defects.append("unparseable Date")

    walk = _Walk(charset)
    try:
        text_chunks, html_chunks = walk.part(message)
    except Exception as exc:  # a bug or a shape we never saw must not lose the message
        defects.append(f"body walk failed: {type(exc).__name__}")
        text_chunks, html_chunks = [], []
    defects.extend(walk.defects)
    html = _html_view(html_chunks)
    if html is not None:
        html = _sanitized(html.replace("\x00", ""), defects)

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
        to_addrs=tuple(dict.fromkeys(m.address for m in recipients if m.problem is None)),
        reply_to=reply_to[0] if reply_to else None,
        return_path=return_path(first_raw.get("return-path")),
        subject=_subject(first_raw.get("subject")),
        date=date,
        text=_text_view(text_chunks).replace("\x00", ""),
        html=html,
        attachments=tuple(walk.attachments),
        headers=tuple(headers),
        content_type=content_type,
        size=len(raw),
        defects=tuple(dict.fromkeys(defects)),
    )
