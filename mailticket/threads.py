"""The ticket-matching rules of SPEC §5 as pure functions over what the store knows."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

# matched_by values, in rule order.
DUPLICATE = "duplicate"
IN_REPLY_TO = "in-reply-to"
REFERENCES = "references"
SUBJECT_TAG = "subject-tag"
SUBJECT = "subject"
NEW = "new"

# follow_up() answers.
APPEND = "append"
REOPEN = "reopen"
NEW_LINKED = "new-linked"
RESOLVED = "resolved"

# Each id is one store query. A long thread's References grows by one id per
# message, and a hostile message can carry thousands; the newest ids are the
# ones most likely to be stored, so at most this many ids are looked up in all.
MAX_ID_LOOKUPS = 20

# Reply and forward prefixes, case-folded, as mail clients write them in many
# languages (Outlook, Gmail, Thunderbird, Apple Mail and their translations).
REPLY_PREFIXES = (
    "re", "res", "sv", "antw", "antwort", "antwoord", "ref", "réf", "réponse", "aw",
    "απ", "השב", "vá", "r", "rif", "bls", "odp", "odg", "ynt", "atb", "ats", "رد",
    "回复", "回覆", "答复", "返信", "답장",
)
FORWARD_PREFIXES = (
    "fwd", "fw", "rv", "enc", "vs", "doorst", "vl", "tr", "wg", "πρθ", "הועבר",
    "továbbítás", "i", "fs", "trs", "vb", "pd", "i̇lt", "ilt", "yml", "pārs", "pers",
    "إعادة توجيه", "转发", "轉寄", "転送", "전달",
)
# Trailers such as "hello (fwd)" that some clients append instead of a prefix.
TRAILER_WORDS = frozenset(
    ("fwd", "fw", "wg", "doorst", "tr", "rv", "enc", "vs", "vl", "pd", "fs", "vb", "trs",
     "转发", "轉寄", "回覆")
)
_PREFIX_WORDS = "|".join(
    re.escape(word) for word in sorted(REPLY_PREFIXES + FORWARD_PREFIXES, key=len, reverse=True)
)
# "Re:", "RE :", "Re[2]:", "Fwd[a]:", "Re(2):", "Re^2:"; full-width colons are
# folded to ":" by NFKC before this runs.
PREFIX_RE = re.compile(rf"(?:{_PREFIX_WORDS})\s?(?:\[[^\[\]]*\]|\(\d+\)|\^\d+)?\s?:\s?")
# A leading "[list-name]" tag, or a "[Fwd: original subject]" wrapper.
BRACKET_RE = re.compile(r"\[([^\[\]]*)\]\s?")
# Any ticket tag in the style of "[#123]", "[Ticket #123]" or "[ACME#123]",
# so that tags of other systems (or of an older template) do not split keys.
GENERIC_TICKET_TAG_RE = re.compile(r"\[[^\[\]#]*#\s*\d+\s*\]")
WHITESPACE_RE = re.compile(r"\s+")
NON_WORD_RE = re.compile(r"[\W_]+")

# Only the head of a subject is examined, so a megabyte-long subject costs no more
# than a normal one; the key itself fits tickets.subject_key (String(255)), so the
# key looked up is the key that was stored.
MAX_SUBJECT_CHARS = 2000
MAX_KEY_CHARS = 255

# Subjects that many unrelated conversations share. Threading on them would merge
# a customer's separate requests into one ticket, so rule 4 never applies to them.
# Compared after dropping punctuation: "Help!" and "(no subject)" are caught too.
GENERIC_SUBJECTS = frozenset((
    "", "hello", "hi", "hey", "hallo", "hola", "oi", "olá", "ola", "bom dia", "boa tarde",
    "help", "ajuda", "question", "dúvida", "duvida", "order", "pedido", "info", "information",
    "informação", "support", "suporte", "contact", "contato", "urgent", "urgente", "test",
    "teste", "no subject", "sem assunto", "untitled", "sin asunto", "kein betreff",
))

# Ticket ids are database integers; a longer run of digits is not one of our tags.
MAX_TICKET_ID_DIGITS = 18


class Lookup(Protocol):
    """What the matching rules may ask the store."""

    def message_exists(self, message_id: str) -> bool: ...

    def ticket_of_message(self, message_id: str) -> int | None:
        """The ticket holding a stored message (inbound or outbound) with this id."""

    def takes_part(self, ticket_id: int, address: str) -> bool:
        """Whether the ticket exists and `address` sent or received one of its messages."""

    def ticket_by_subject(self, address: str, subject_key: str, since: datetime) -> int | None:
        """The newest ticket of `address` with this normalised subject and a message after `since`."""


@dataclass(frozen=True)
class Match:
    rule: str  # one of the constants above
    ticket_id: int | None  # None for DUPLICATE and NEW


def _trim_trailers(text: str) -> str:
    """`text` without trailing "(fwd)"-like trailers and surrounding spaces."""
    text = text.strip()
    while text.endswith(")"):
        start = text.rfind("(")
        if start < 0 or text[start + 1 : -1].strip() not in TRAILER_WORDS:
            break
        text = text[:start].rstrip()
    return text


def subject_key(subject: str, *, tag: TicketTag | None = None) -> str:
    """The subject without reply/forward prefixes, list tags and ticket tags, case-folded.

    `tag` also removes the configured ticket tag when its template is not "[#…]"-like.
    """
    text = subject[:MAX_SUBJECT_CHARS]
    if tag is not None:
        text = tag.strip(text)
    # NFKC folds full-width colons and brackets and composes accents, so "Ｒｅ：" and
    # a decomposed "Vá" are recognised like their plain forms.
    text = unicodedata.normalize("NFKC", text).casefold()
    text = GENERIC_TICKET_TAG_RE.sub(" ", text)
    text = WHITESPACE_RE.sub(" ", text).strip()

    pos = after_prefixes = 0
    wrapped = None  # the inside of a "[Fwd: subject]" wrapper, if one was seen
    while pos < len(text):
        if prefix := PREFIX_RE.match(text, pos):
            pos = after_prefixes = prefix.end()
        elif bracket := BRACKET_RE.match(text, pos):
            inside = bracket.group(1).strip()
            if wrapped is None and PREFIX_RE.match(inside):
                wrapped = inside
            pos = bracket.end()
        else:
            break
    key = _trim_trailers(text[pos:])
    # When only tags were left, they were the subject itself: "[Fwd: hello]" is
    # "hello", and "Re: [hello world]" is "[hello world]", not nothing.
    if not key and wrapped is not None:
        key = subject_key(wrapped)
    if not key:
        key = _trim_trailers(text[after_prefixes:])
    return key[:MAX_KEY_CHARS].rstrip()


def is_generic_subject(key: str) -> bool:
    """Whether a subject key is too common (or empty) to thread on."""
    return NON_WORD_RE.sub(" ", key).strip() in GENERIC_SUBJECTS


def _referenced_ids(
    message_id: str, in_reply_to: Sequence[str], references: Sequence[str]
) -> Iterator[tuple[str, str]]:
    """(rule, id) to look up: In-Reply-To first, then References newest first."""
    # The message's own id is skipped so that a References loop naming the message
    # cannot match it to itself; repeated ids would only repeat a query.
    seen = {message_id.strip()}
    budget = MAX_ID_LOOKUPS
    candidates = [(IN_REPLY_TO, i) for i in in_reply_to]
    candidates += [(REFERENCES, r) for r in reversed(references)]
    for rule, ref in candidates:
        ref = ref.strip()
        if not ref or ref in seen:
            continue
        if budget == 0:
            return
        seen.add(ref)
        budget -= 1
        yield rule, ref


def match(
    *,
    message_id: str,
    in_reply_to: Sequence[str],
    references: Sequence[str],
    from_addr: str,
    subject: str,
    lookup: Lookup,
    tag: TicketTag,
    now: datetime,
    subject_threading_days: float,
) -> Match:
    """The first rule of SPEC §5 that applies; the store is asked only as far as needed."""
    # A missing Message-ID identifies nothing: asking the store about "" could call
    # an unrelated id-less message a duplicate and drop this one.
    if message_id.strip() and lookup.message_exists(message_id):
        return Match(DUPLICATE, None)

    for rule, ref in _referenced_ids(message_id, in_reply_to, references):
        ticket_id = lookup.ticket_of_message(ref)
        if ticket_id is not None:
            return Match(rule, ticket_id)

    # A stranger who quotes a tag (a forwarded thread, a guessed number) must not
    # get into that ticket, so the tag counts only for its participants.
    tagged = tag.find(subject)
    if tagged is not None and from_addr and lookup.takes_part(tagged, from_addr):
        return Match(SUBJECT_TAG, tagged)

    # Without a sender, or with a subject like "Hello", rule 4 would merge
    # unrelated conversations; a window of zero days switches the rule off.
    key = subject_key(subject, tag=tag)
    if from_addr and subject_threading_days > 0 and not is_generic_subject(key):
        since = now - timedelta(days=subject_threading_days)
        ticket_id = lookup.ticket_by_subject(from_addr, key, since=since)
        if ticket_id is not None:
            return Match(SUBJECT, ticket_id)

    return Match(NEW, None)


class TicketTag:
    """The ticket tag in subjects, from a template such as "[#{id}]"."""

    PLACEHOLDER = "{id}"

    def __init__(self, template: str = "[#{id}]") -> None:
        count = template.count(self.PLACEHOLDER)
        if count != 1:
            raise ValueError(
                f"ticket tag template {template!r} must contain {self.PLACEHOLDER} exactly once, "
                f"found {count}"
            )
        before, after = template.split(self.PLACEHOLDER)
        # A bare "{id}" would read every number in a subject ("Order 12345") as a tag.
        if not (before.strip() or after.strip()):
            raise ValueError(
                f"ticket tag template {template!r} needs text around {self.PLACEHOLDER}, "
                'such as "[#{id}]"'
            )
        self.template = template
        self._pattern = re.compile(
            rf"{re.escape(before)}([0-9]{{1,{MAX_TICKET_ID_DIGITS}}})(?![0-9]){re.escape(after)}",
            re.IGNORECASE,
        )

    def __repr__(self) -> str:
        return f"TicketTag({self.template!r})"

    def render(self, ticket_id: int) -> str:
        return self.template.replace(self.PLACEHOLDER, str(int(ticket_id)))

    def find(self, subject: str) -> int | None:
        """The ticket id of the first tag in `subject`, or None."""
        found = self._pattern.search(subject)
        return int(found.group(1)) if found else None

    def strip(self, subject: str) -> str:
        """`subject` without its tags, spaces tidied."""
        return WHITESPACE_RE.sub(" ", self._pattern.sub(" ", subject)).strip()


def follow_up(status: str, resolved_at: datetime | None, now: datetime, reopen_days: float) -> str:
    """For mail matched to a ticket: "append", "reopen" (resolved within reopen_days) or "new-linked"."""
    if status != RESOLVED:
        return APPEND
    # A resolved ticket without a resolution time cannot be shown to be recent;
    # a new linked ticket keeps the history without reviving an old case.
    if resolved_at is not None and now - resolved_at <= timedelta(days=reopen_days):
        return REOPEN
    return NEW_LINKED
