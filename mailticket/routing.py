"""Routing rules: which [[route]] rule, if any, sets the queue and priority of a new ticket.

Pure: the caller passes the rules and the message's addresses and text. Rules are compiled once per tuple of
settings (keywords folded and joined into one regex per rule and field), so a message costs a few dict and regex
look-ups, and the body is folded at most once, and only when some rule reads it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from mailticket.config import RouteSettings

# How much of the message text body keywords are looked for in: a keyword that matters is near the top, and a
# pasted log file must not cost milliseconds per message.
BODY_SCAN_CHARS = 20_000
# Settings objects remembered compiled; a reload makes a new tuple, and the old one ages out.
COMPILED_CACHE_SIZE = 8
# A keyword starts and ends on a word boundary; the spaces of a phrase match any run of whitespace.
_WORD_BEFORE, _WORD_AFTER = r"(?<!\w)", r"(?!\w)"
_SPACES = re.compile(r"\s+")


def fold(text: str) -> str:
    """Text for comparing: accents dropped (NFKD without combining marks) and case folded."""
    if text.isascii():
        return text.casefold()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def _keyword_pattern(keywords: Iterable[str]) -> re.Pattern[str] | None:
    phrases = [r"\s+".join(map(re.escape, _SPACES.split(fold(k).strip()))) for k in keywords]
    phrases = [p for p in phrases if p]
    if not phrases:
        return None
    # Longest first, so that a phrase is not cut short by a keyword that begins it.
    alternatives = "|".join(sorted(set(phrases), key=len, reverse=True))
    return re.compile(f"{_WORD_BEFORE}(?:{alternatives}){_WORD_AFTER}")


def _domain(value: str) -> str:
    return value.rsplit("@", 1)[-1].strip().lower().rstrip(".")


@dataclass(frozen=True)
class _Rule:
    settings: RouteSettings
    to: str | None
    from_addr: str | None
    from_domain: str | None
    subject: re.Pattern[str] | None
    body: re.Pattern[str] | None

    def fits(self, to_addrs: frozenset[str], from_addr: str, subject: _Lazy, body: _Lazy) -> bool:
        # Cheapest tests first: every match key given must fit.
        if self.to is not None and self.to not in to_addrs:
            return False
        if self.from_addr is not None and self.from_addr != from_addr:
            return False
        if self.from_domain is not None:
            domain = _domain(from_addr) if "@" in from_addr else ""
            if not (domain == self.from_domain or domain.endswith("." + self.from_domain)):
                return False
        if self.subject is not None and not self.subject.search(subject.folded()):
            return False
        return self.body is None or self.body.search(body.folded()) is not None


class _Lazy:
    """Text folded on first use, once, however many rules read it."""

    __slots__ = ("text", "_folded")

    def __init__(self, text: str) -> None:
        self.text, self._folded = text, None

    def folded(self) -> str:
        if self._folded is None:
            self._folded = fold(self.text)
        return self._folded


@lru_cache(maxsize=COMPILED_CACHE_SIZE)
def compile_rules(routes: tuple[RouteSettings, ...]) -> tuple[_Rule, ...]:
    """The rules ready to match, in file order."""
    return tuple(
        _Rule(settings=r, to=r.to.lower() if r.to else None, from_addr=r.from_addr.lower() if r.from_addr else None,
              from_domain=_domain(r.from_domain) if r.from_domain else None,
              subject=_keyword_pattern(r.subject_keywords), body=_keyword_pattern(r.body_keywords))
        for r in routes
    )


def route(routes: tuple[RouteSettings, ...], *, to_addrs: Iterable[str], from_addr: str, subject: str,
          body: str) -> RouteSettings | None:
    """The first rule, in file order, whose match keys all fit the message; None when none does."""
    if not routes:
        return None
    recipients = frozenset(a.lower() for a in to_addrs)
    sender = (from_addr or "").strip().lower()
    subject_text, body_text = _Lazy(subject or ""), _Lazy((body or "")[:BODY_SCAN_CHARS])
    for rule in compile_rules(tuple(routes)):
        if rule.fits(recipients, sender, subject_text, body_text):
            return rule.settings
    return None
