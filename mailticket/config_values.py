"""The kinds of value the TOML file holds: each takes a raw value and returns the setting, or raises Invalid saying
what is wrong in words that follow the key ("must be ...")."""

from __future__ import annotations

import datetime
import json
import re
import zoneinfo
from collections.abc import Callable
from typing import Any, NamedTuple

from mailticket.mail import address

DURATION_HINT = 'a duration string like "90s", "15m", "4h", "2d" or "1h30m"'
DURATION = re.compile(r"(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?")
UNIT_SECONDS = (86400, 3600, 60, 1)
# Sizes: a bare integer is bytes; kB/MB/GB are powers of 1000, KiB/MiB/GiB powers of 1024.
SIZE = re.compile(r"(\d+)\s*([a-z]*)", re.IGNORECASE)
SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
DOMAIN = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)+")
LISTEN = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):(\d{1,5})")
BASE_URL = re.compile(r"https?://[^\s/]+(/\S*)?")
DB_URL = re.compile(r"(sqlite|postgresql)(\+\w+)?://")
HOURS_SPAN = re.compile(r"\s*([01]\d|2[0-3]):([0-5]\d)\s*-\s*(\d\d):([0-5]\d)\s*")
ISO_DATE = re.compile(r"\d{4}-\d\d-\d\d")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = datetime.weekday()
SECURITY_MODES = ("tls", "starttls", "none")
IMAP_PORTS = {"tls": 993, "starttls": 143, "none": 143}  # when [[mailbox]] port is absent
SMTP_PORTS = {"tls": 465, "starttls": 587, "none": 25}  # when [smtp] port is absent
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
PRIORITIES = ("low", "normal", "high", "urgent")
LANGUAGES = ("pt-BR", "en")  # of the pages and of what customers receive
MIN_SECRET_KEY_LENGTH = 16


class Invalid(Exception):
    """What is wrong with one value, phrased to follow its key: 'must be ...'."""


def ensure(ok: Any, problem: str) -> None:
    if not ok:
        raise Invalid(problem)


def shown(value: Any) -> str:
    """A value as the admin wrote it in TOML."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return str(value).lower() if isinstance(value, bool) else str(value)


def type_name(value: Any) -> str:
    kinds = ((bool, "a boolean"), (int, "an integer"), (float, "a float"), (str, "a string"),
             (list, "an array"), (dict, "a table"))
    return next((name for kind, name in kinds if isinstance(value, kind)), "a date/time")


def expect(value: Any, kinds: type | tuple[type, ...], wanted: str) -> None:
    # TOML booleans are Python ints; a `true` where a number belongs is still a type error.
    if not isinstance(value, kinds) or (isinstance(value, bool) and kinds is not bool):
        given = "" if isinstance(value, (dict, list)) else f" ({shown(value)})"
        raise Invalid(f"must be {wanted}, not {type_name(value)}{given}")


def duration_seconds(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise Invalid(f"must be {DURATION_HINT}, not the bare number {value} (write the unit)")
    expect(value, str, DURATION_HINT)
    match = DURATION.fullmatch(value.strip())
    ensure(value.strip() and match, f"must be {DURATION_HINT}, not {shown(value)}")
    seconds = sum(int(n) * unit for n, unit in zip(match.groups(), UNIT_SECONDS) if n)
    ensure(seconds > 0, f"must be longer than zero, not {shown(value)}")
    return float(seconds)


# Value kinds: each takes a raw TOML value and returns the setting, or raises Invalid.
def one_line(value: Any) -> str:
    expect(value, str, "a string")
    ensure(value.strip(), "must not be empty")
    # A line break in a name or an address would end the mail header it is written into.
    ensure(not address.CONTROL.search(value), f"must be one line without control characters, not {shown(value)}")
    return value


def boolean(value: Any) -> bool:
    expect(value, bool, "true or false")
    return value


def integer_between(low: int, high: int | None = None) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        expect(value, int, "an integer")
        ensure(low <= value <= (high or value), f"must be between {low} and {high}, not {value}" if high
                else f"must be at least {low}, not {value}")
        return value
    return check


def day_count(value: Any) -> float:
    expect(value, (int, float), "a number of days")
    ensure(value >= 0, f"must be 0 or more, not {value}")
    return float(value)


def positive_days(value: Any) -> float:
    days = day_count(value)
    ensure(days > 0, f"must be more than 0 days, not {value}")
    return days


def one_of(*allowed: str) -> Callable[[Any], str]:
    by_lower = {name.lower(): name for name in allowed}  # any case given; the canonical one ("pt-BR") kept

    def check(value: Any) -> str:
        expect(value, str, "one of " + ", ".join(allowed))
        ensure(value.lower() in by_lower, f"must be one of {', '.join(allowed)}, not {shown(value)}")
        return by_lower[value.lower()]
    return check


def matching(pattern: re.Pattern[str], wanted: str, *, lower: bool = False) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        text = one_line(value).strip().lower().lstrip("@") if lower else one_line(value).strip()
        ensure(pattern.fullmatch(text), f"must be {wanted}, not {shown(value)}")
        return text
    return check


def email_address(wanted: str, *, lower: bool = False) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        text = one_line(value).strip()
        text = text.lower() if lower else text
        problem = address.problem(text)
        ensure(problem is None, f"must be {wanted}, not {shown(value)}: {problem}")
        return text
    return check


def byte_size(value: Any) -> int:
    expect(value, (int, str), 'a size: bytes as an integer, or a string like "25MB" or "10MiB"')
    match = SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
    ensure(isinstance(value, int) or (match and match[2].lower() in SIZE_UNITS),
            f'must be a size like "25MB" (10^6 bytes) or "10MiB" (2^20 bytes), not {shown(value)}')
    size = value if isinstance(value, int) else int(match[1]) * SIZE_UNITS[match[2].lower()]
    ensure(size >= 1, f"must be at least 1 byte, not {shown(value)}")
    return size


def listen_address(value: Any) -> str:
    text = matching(LISTEN, 'HOST:PORT, like "127.0.0.1:8025" or "[::1]:8025"')(value)
    ensure(1 <= int(LISTEN.fullmatch(text)[2]) <= 65535, f"has a port outside 1-65535: {shown(value)}")
    return text


def base_url(value: Any) -> str:
    return matching(BASE_URL, 'an http:// or https:// URL, like "https://support.example.com"')(value).rstrip("/")


def database_url(value: str) -> str:
    # The URL may hold a password, so the problem is described without echoing it.
    ensure(not value.startswith("postgres://"), "must start with postgresql:// (SQLAlchemy refuses postgres://)")
    ensure(DB_URL.match(value), 'must be an SQLAlchemy URL starting with "sqlite:///" or "postgresql://"')
    return value


def secret_key(value: str) -> str:
    ensure(len(value) >= MIN_SECRET_KEY_LENGTH,
            f"must be at least {MIN_SECRET_KEY_LENGTH} characters long (try `openssl rand -hex 32`)")
    return value


def subject_tag(value: Any) -> str:
    tag = one_line(value)
    ensure(tag.count("{id}") == 1, f'must contain {{id}} exactly once, like "[#{{id}}]", not {shown(value)}')
    rest = tag.replace("{id}", "")
    ensure("{" not in rest and "}" not in rest, f"must not contain braces other than {{id}}: {shown(value)}")
    # A bare number would make any number in a subject look like a ticket tag.
    ensure(rest.strip(), f'needs text around {{id}}, like "[#{{id}}]", not {shown(value)}')
    return tag


def time_zone(value: Any) -> str:
    try:
        zoneinfo.ZoneInfo(one_line(value))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise Invalid(f'must be an IANA time zone name like "America/Sao_Paulo", not {shown(value)}') from None
    return value


def opening_hours(value: Any) -> tuple[tuple[str, str], ...]:
    wanted = 'an array of "HH:MM-HH:MM" strings, like ["09:00-12:00", "13:00-18:00"] ([] = closed)'
    expect(value, list, wanted)
    spans = []
    for item in value:
        match = HOURS_SPAN.fullmatch(item) if isinstance(item, str) else None
        ensure(match, f"must be {wanted}, and {shown(item)} is not one")
        start, end = int(match[1]) * 60 + int(match[2]), int(match[3]) * 60 + int(match[4])
        ensure(start < end <= 24 * 60, f"has {shown(item)}, which does not end after it starts on the same "
                "day (up to 24:00; split hours that cross midnight across two days)")
        spans.append((start, end, "{}:{}-{}:{}".format(*match.groups())))
    spans.sort()
    for before, after in zip(spans, spans[1:]):
        ensure(after[0] >= before[1], f"has overlapping hours: {before[2]} and {after[2]}")
    return tuple(tuple(span[2].split("-")) for span in spans)


def holidays(value: Any) -> tuple[str, ...]:
    expect(value, list, 'an array of dates, like [2025-12-25] or ["2025-12-25"]')
    days = set()
    for item in value:
        # TOML has a native date type; a "YYYY-MM-DD" string is accepted too.
        day = item if type(item) is datetime.date else None
        if isinstance(item, str) and ISO_DATE.fullmatch(item):
            try:
                day = datetime.date.fromisoformat(item)
            except ValueError:
                pass
        ensure(day, f"must list dates as YYYY-MM-DD, and {shown(item)} is not a valid date")
        days.add(day.isoformat())
    return tuple(sorted(days))


def keywords(value: Any) -> tuple[str, ...]:
    wanted = 'an array of words or phrases, like ["devolução", "troca"]'
    expect(value, list, wanted)
    ensure(value, "must not be empty: list at least one keyword, or leave the key out")
    for item in value:
        ensure(isinstance(item, str) and item.strip(), f"must be {wanted}, and {shown(item)} is not one")
    return tuple(item.strip() for item in value)


class Key(NamedTuple):
    """One TOML key: how to check its value, whether it must be given, and whether it is a secret
    (then KEY, KEY_env and KEY_file are its three forms, at most one of them given)."""
    kind: Callable[[Any], Any]
    required: bool = False
    secret: bool = False


SECURITY = one_of(*SECURITY_MODES)
PORT = integer_between(1, 65535)
DURATION_KEY = Key(duration_seconds)


def any_secret(value: str) -> str:
    return value
