"""Addresses: address lists read in one linear pass, and the one rule for an address we store or send to
(an RFC 5322 addr-spec that SMTP can carry, nothing else)."""

from __future__ import annotations

import re
from typing import NamedTuple

# RFC 5321 §4.5.3.1: a path is at most 256 octets with its angle brackets, so an address at most 254.
MAX_ADDRESS_CHARS = 254
MAX_DOMAIN_CHARS = 253
MAX_LABEL_CHARS = 63
# RFC 5322 atext, plus any non-ASCII character (RFC 6531 internationalised addresses). Dots separate atoms.
DOT_ATOM_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\U0010ffff-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~"
                            r"\u0080-\U0010ffff-]+)*")
# A quoted local part is kept only when it holds printable characters that separate nothing: quoting commas,
# semicolons, angle brackets or spaces is how one "address" smuggles a list of them.
QUOTED_LOCAL = re.compile(r'"[A-Za-z0-9!#$%&\'*+/=?^_`{|}~.\u0080-\U0010ffff-]+"')
LABEL = re.compile(r"[A-Za-z0-9\u0080-\U0010ffff](?:[A-Za-z0-9\u0080-\U0010ffff-]*[A-Za-z0-9\u0080-\U0010ffff])?")
DOMAIN_LITERAL = re.compile(r"\[[0-9A-Fa-f:.]{2,45}\]|\[IPv6:[0-9A-Fa-f:.]{2,45}\]")
# Characters that end a line somewhere: CR and LF, and the ones Python's str.splitlines() also breaks on
# (the stdlib's compat32 mail classes use it), plus every other control character.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# ASCII control characters but tab: in a header they were put there to split something. (C1 characters are no
# sign of that: raw 8-bit names decoded as Latin-1 as the last resort hold them; `problem` still refuses them
# in an address.)
ASCII_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Invisible reordering marks (the right-to-left override that shows "gpj.exe" as "exe.jpg").
BIDI_CONTROLS = re.compile(r"[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# Mail systems that sign a bounce "From: MAILER-DAEMON", with no domain: still the sender, and a bounce by its name.
BARE_SYSTEM_SENDERS = frozenset({"mailer-daemon", "postmaster"})


def problem(address: str) -> str | None:
    """Why `address` is not an address we accept, in words; None when it is one."""
    if not address:
        return "it is empty"
    if len(address) > MAX_ADDRESS_CHARS:
        return f"it is longer than {MAX_ADDRESS_CHARS} characters"
    if CONTROL.search(address) or BIDI_CONTROLS.search(address):
        return "it holds control characters"
    local, at, domain = address.rpartition("@")
    if not at or not local:
        return "it has no local part and domain separated by @"
    if not (DOT_ATOM_LOCAL.fullmatch(local) or QUOTED_LOCAL.fullmatch(local)):
        return "its local part holds characters an address cannot have unquoted (spaces, commas, quotes...)"
    if DOMAIN_LITERAL.fullmatch(domain):
        return None
    if len(domain) > MAX_DOMAIN_CHARS:
        return f"its domain is longer than {MAX_DOMAIN_CHARS} characters"
    labels = domain.split(".")
    if not all(len(label) <= MAX_LABEL_CHARS and LABEL.fullmatch(label) for label in labels):
        return "its domain is not a host name"
    return None


def is_valid(address: str) -> bool:
    return problem(address) is None


def checked(address: str) -> str:
    """`address` itself when valid; ValueError naming the problem otherwise (for mail we are about to send)."""
    reason = problem(address)
    if reason is not None:
        raise ValueError(f"refused address {address[:80]!r}: {reason}")
    return address


# -- reading address lists ----------------------------------------------------------------------------------------

# Only this much of one header is read: a To line naming a few hundred people fits; a megabyte of separators
# is an attack, and each token costs a step of the loop below.
MAX_HEADER_CHARS = 32 * 1024
# Mailboxes taken from one message's headers at most (each becomes a participant row of its ticket).
MAX_MAILBOXES = 100

# Each token is told by its first character, and none of these patterns can fail once started, so the scan never
# backtracks: an unterminated quote, comment or angle runs to the end of the value.
_QUOTED = re.compile(r'"((?:[^"\\]|\\.?)*)"?', re.DOTALL)
_ANGLE = re.compile(r"<([^>]*)>?")
_COMMENT_STEP = re.compile(r"[()\\]")
# Folding whitespace only: other control characters are part of the word they sit in, which `problem` refuses.
FOLDING_SPACE = " \t\r\n"
_SPACE = re.compile(r"[ \t\r\n]+")
_ATOM = re.compile(r'[^ \t\r\n"(),:;<>]+|.', re.DOTALL)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)


class Mailbox(NamedTuple):
    """One mailbox of a header: its display name (as written, not RFC 2047-decoded), its address (lower-cased,
    "" when the header names nobody), and why that address is refused (None when it is valid)."""

    name: str
    address: str
    problem: str | None


def _comment(value: str, pos: int) -> tuple[str, int]:
    """The text of the (possibly nested) comment opening at `pos`, and where it ends."""
    depth, start, pos = 0, pos + 1, pos
    while True:
        found = _COMMENT_STEP.search(value, pos)
        if found is None:
            return value[start:], len(value)
        char, pos = found.group(), found.end()
        if char == "\\":
            pos += 1
        elif char == "(":
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return value[start:pos - 1], pos


class _MailboxTokens:
    """The tokens of one mailbox so far; `mailbox()` turns them into (name, addr-spec) and starts over."""

    def __init__(self) -> None:
        self.chunks: list[list[str]] = []  # runs of words not separated by whitespace
        self.comments: list[str] = []
        self.angle: str | None = None
        self.joined = False  # the next word continues the last chunk

    def word(self, text: str) -> None:
        if self.joined and self.chunks:
            self.chunks[-1].append(text)
        else:
            self.chunks.append([text])
        self.joined = True

    def mailbox(self) -> tuple[str, str] | None:
        chunks = ["".join(chunk) for chunk in self.chunks]
        comments, angle = self.comments, self.angle
        self.__init__()
        if angle is not None:
            # A source route ("<@relay,@other:ana@x>") is obsolete; the address is what follows its colon. Only a
            # route starts with "@": any other colon stays, for the address rule to refuse.
            if angle.lstrip().startswith("@"):
                angle = angle.partition(":")[2]
            return " ".join(chunks), "".join(angle.split())
        if not chunks:
            return None
        with_at = [c for c in chunks if "@" in c]
        if len(with_at) == 1:
            name = [c for c in chunks if c is not with_at[0]] or comments
            return " ".join(name), with_at[0]
        # No address ("From: Whomever"), or words that are no single address: kept as written.
        return " ".join(comments) if not with_at else "", " ".join(chunks)


def mailboxes(value: str) -> list[tuple[str, str]]:
    """(display name, address as written) of each mailbox of an address-list header, in one linear pass.

    Groups are flattened ("team: a@x, b@x;"), quoted names unescaped, comments kept as the name of a bare address.
    """
    value = value[:MAX_HEADER_CHARS]
    found: list[tuple[str, str]] = []
    reader = _MailboxTokens()
    pos, end = 0, len(value)
    while pos < end and len(found) < MAX_MAILBOXES:
        char = value[pos]
        if char in FOLDING_SPACE:
            pos = _SPACE.match(value, pos).end()
            reader.joined = False
        elif char == '"':
            match = _QUOTED.match(value, pos)
            # Kept quoted inside an addr-spec ('"x"@y'), unquoted in a display name; mailbox() decides which.
            reader.word(match.group(0) if value.startswith("@", match.end()) else _QUOTED_PAIR.sub(r"\1", match[1]))
            pos = match.end()
        elif char == "(":
            text, pos = _comment(value, pos)
            reader.comments.append(text.strip())
            reader.joined = False
        elif char == "<":
            match = _ANGLE.match(value, pos)
            reader.angle, pos = match[1], match.end()
        elif char in ",;":
            if (mailbox := reader.mailbox()) is not None:
                found.append(mailbox)
            pos += 1
        elif char == ":" and reader.angle is None:
            reader.__init__()  # what came before names a group, not a mailbox
            pos += 1
        else:
            match = _ATOM.match(value, pos)
            reader.word(match.group())
            pos = match.end()
    if len(found) < MAX_MAILBOXES and (mailbox := reader.mailbox()) is not None:
        found.append(mailbox)
    return found


def read(values: list[str]) -> list[Mailbox]:
    """The mailboxes of raw header values, each address lower-cased and judged by `problem`."""
    result = []
    for value in values:
        # An ASCII control character anywhere in the header taints all of it.
        tainted = ASCII_CONTROL.search(value) is not None
        for name, written in mailboxes(value):
            if tainted:
                result.append(Mailbox(name, written.strip().lower(), "the header holds control characters"))
                continue
            if written.strip().lower() in BARE_SYSTEM_SENDERS:
                result.append(Mailbox(name, written.strip().lower(), None))
                continue
            if "@" not in written:
                # "From: Whomever" (RFC 2046's examples, "undisclosed-recipients:;") names nobody we can answer.
                if written or name:
                    result.append(Mailbox(name or written, "", None))
                continue
            address = written.strip().lower()
            result.append(Mailbox(name, address, problem(address)))
    return result[:MAX_MAILBOXES]
