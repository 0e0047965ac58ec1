"""Loads the one TOML file into frozen settings; every error names the file, the key and the problem."""

from __future__ import annotations

import datetime
import os
import re
import tomllib
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple


class ConfigError(Exception):
    """A config problem, in one sentence naming file and key; the CLI prints it and exits 2."""


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite:////var/lib/mailticket/mailticket.db"


@dataclass(frozen=True)
class MailboxSettings:
    name: str
    host: str
    username: str
    password: str
    address: str  # the support address customers write to
    port: int = 993
    security: str = "tls"  # tls | starttls | none
    folder: str = "INBOX"
    processed_folder: str | None = None
    queue: str = "default"
    batch_size: int = 100


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "localhost"
    port: int = 587
    security: str = "starttls"
    username: str | None = None
    password: str | None = None
    from_name: str = "Support"
    timeout: float = 30.0


@dataclass(frozen=True)
class WebSettings:
    listen: str = "127.0.0.1:8025"
    base_url: str = "http://127.0.0.1:8025"
    secret_key: str = ""  # empty: `serve` refuses to start; config loading does not invent one
    session_cookie_secure: bool = False  # when absent from the file: True iff base_url is https


@dataclass(frozen=True)
class TicketSettings:
    subject_tag: str = "[#{id}]"
    reopen_days: float = 14.0
    subject_threading_days: float = 7.0


@dataclass(frozen=True)
class ClaimSettings:
    ttl: float = 900.0  # seconds
    heartbeat: float = 60.0


@dataclass(frozen=True)
class SchedulerSettings:
    poll_interval: float = 60.0
    outbox_interval: float = 10.0
    claim_expiry_interval: float = 30.0
    sla_interval: float = 60.0


@dataclass(frozen=True)
class SlaSettings:
    name: str
    first_response: float | None = None  # seconds
    resolution: float | None = None
    queue: str | None = None
    priority: str | None = None
    sender_domain: str | None = None


@dataclass(frozen=True)
class BusinessHoursSettings:
    timezone: str = "UTC"
    # weekday (0 = Monday) -> list of (start, end) as "HH:MM" strings
    weekly: dict[int, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    holidays: tuple[str, ...] = ()  # ISO dates


@dataclass(frozen=True)
class AutoreplySettings:
    enabled: bool = True
    template: str = "ack_en.txt"
    max_per_sender_per_hour: int = 5


@dataclass(frozen=True)
class LimitSettings:
    max_message_bytes: int = 25 * 1024 * 1024
    max_attachment_bytes: int = 20 * 1024 * 1024


@dataclass(frozen=True)
class Settings:
    path: Path | None = None
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    mailboxes: tuple[MailboxSettings, ...] = ()
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    web: WebSettings = field(default_factory=WebSettings)
    tickets: TicketSettings = field(default_factory=TicketSettings)
    claims: ClaimSettings = field(default_factory=ClaimSettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    sla: tuple[SlaSettings, ...] = ()
    business_hours: BusinessHoursSettings | None = None
    autoreply: AutoreplySettings = field(default_factory=AutoreplySettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    log_level: str = "info"

    def mailbox(self, name: str) -> MailboxSettings:
        for box in self.mailboxes:
            if box.name == name:
                return box
        raise ConfigError(f"{self.path}: no [[mailbox]] named {name!r}")

    @property
    def own_addresses(self) -> tuple[str, ...]:
        return tuple(box.address.lower() for box in self.mailboxes)


DEFAULT_CONFIG_PATH = Path("/etc/mailticket/config.toml")
CONFIG_PATH_ENV = "MAILTICKET_CONFIG"

DURATION_HINT = 'a duration string like "90s", "15m", "4h", "2d" or "1h30m"'
_DURATION = re.compile(r"(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?")
_UNIT_SECONDS = (86400, 3600, 60, 1)
# Sizes: a bare integer is bytes; with a unit, kB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024.
_SIZE = re.compile(r"(\d+)\s*([a-z]*)", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9,
               "kib": 2**10, "mib": 2**20, "gib": 2**30}
_EMAIL = re.compile(r"[^@\s<>\",;]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_DOMAIN = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)+")
_LISTEN = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):(\d+)")
_BASE_URL = re.compile(r"https?://[^\s/]+(/\S*)?")
_DB_URL = re.compile(r"(sqlite|postgresql)(\+\w+)?://")
_HOURS_SPAN = re.compile(r"\s*(\d\d):(\d\d)\s*-\s*(\d\d):(\d\d)\s*")
_ISO_DATE = re.compile(r"\d{4}-\d\d-\d\d")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = datetime.weekday()
SECURITY_MODES = ("tls", "starttls", "none")
IMAP_PORTS = {"tls": 993, "starttls": 143, "none": 143}
SMTP_PORTS = {"tls": 465, "starttls": 587, "none": 25}
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
MIN_SECRET_KEY_LENGTH = 16


class _Invalid(Exception):
    """What is wrong with one value, phrased to follow its key: 'must be ...'."""


def _show(value: Any) -> str:
    """A value as the admin wrote it in TOML, for error messages."""
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    return str(value).lower() if isinstance(value, bool) else str(value)


def _type_name(value: Any) -> str:
    for kind, name in ((bool, "a boolean"), (int, "an integer"), (float, "a float"), (str, "a string"),
                       (list, "an array"), (dict, "a table")):
        if isinstance(value, kind):
            return name
    return "a date/time"


def _expect(value: Any, kinds: type | tuple[type, ...], wanted: str) -> None:
    # TOML booleans are Python ints; a `true` where a number belongs is still a type error.
    if not isinstance(value, kinds) or (isinstance(value, bool) and kinds is not bool):
        shown = f" ({_show(value)})" if not isinstance(value, (dict, list)) else ""
        raise _Invalid(f"must be {wanted}, not {_type_name(value)}{shown}")


def _duration_seconds(value: Any) -> float:
    if not isinstance(value, str):
        kind = "bare number" if isinstance(value, (int, float)) and not isinstance(value, bool) else _type_name(value)
        raise _Invalid(f"must be {DURATION_HINT}, not {kind} {_show(value)} (the unit must be written)")
    match = _DURATION.fullmatch(value.strip())
    if not value.strip() or not match:
        raise _Invalid(f"must be {DURATION_HINT}, not {_show(value)}")
    seconds = sum(int(n) * unit for n, unit in zip(match.groups(), _UNIT_SECONDS) if n)
    if seconds <= 0:
        raise _Invalid(f"must be longer than zero, not {_show(value)}")
    return float(seconds)


def parse_duration(text: str, *, key: str = "duration", path: str = "<config>") -> float:
    """'90s', '15m', '4h', '2d' (also combined, '1h30m') -> seconds."""
    try:
        return _duration_seconds(text)
    except _Invalid as problem:
        raise ConfigError(f"{path}: {key} {problem}.") from None


# Value kinds: each takes the raw TOML value and returns the setting, or raises _Invalid.
def _text(value: Any) -> str:
    _expect(value, str, "a string")
    if not value.strip():
        raise _Invalid("must not be empty")
    return value


def _bool(value: Any) -> bool:
    _expect(value, bool, "true or false")
    return value


def _integer(low: int, high: int | None = None) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        _expect(value, int, "an integer")
        if value < low or (high is not None and value > high):
            raise _Invalid(f"must be between {low} and {high}, not {value}" if high is not None
                           else f"must be at least {low}, not {value}")
        return value
    return check


def _days(value: Any) -> float:
    _expect(value, (int, float), "a number of days")
    if value < 0:
        raise _Invalid(f"must be 0 or more, not {value}")
    return float(value)


def _choice(*allowed: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        _expect(value, str, "one of " + ", ".join(allowed))
        if value.lower() not in allowed:
            raise _Invalid(f"must be one of {', '.join(allowed)}, not {_show(value)}")
        return value.lower()
    return check


def _matching(pattern: re.Pattern[str], wanted: str, *, lower: bool = False) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        text = _text(value).strip()
        text = text.lower().lstrip("@") if lower else text
        if not pattern.fullmatch(text):
            raise _Invalid(f"must be {wanted}, not {_show(value)}")
        return text
    return check


def _size(value: Any) -> int:
    _expect(value, (int, str), 'a size: bytes as an integer, or a string like "25MB" or "10MiB"')
    match = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
    if isinstance(value, str) and not (match and match[2].lower() in _SIZE_UNITS):
        raise _Invalid(f'must be a size like "25MB" (10^6 bytes) or "10MiB" (2^20 bytes), not {_show(value)}')
    size = value if isinstance(value, int) else int(match[1]) * _SIZE_UNITS[match[2].lower()]
    if size < 1:
        raise _Invalid(f"must be at least 1 byte, not {_show(value)}")
    return size


def _listen(value: Any) -> str:
    text = _matching(_LISTEN, 'HOST:PORT, like "127.0.0.1:8025" or "[::1]:8025"')(value)
    if not 1 <= int(_LISTEN.fullmatch(text)[2]) <= 65535:
        raise _Invalid(f"has a port outside 1-65535: {_show(value)}")
    return text


def _base_url(value: Any) -> str:
    return _matching(_BASE_URL, 'an http:// or https:// URL, like "https://support.example.com"')(value).rstrip("/")


def _database_url(value: str) -> str:
    # The URL may hold a password, so the problem is described without echoing it.
    if value.startswith("postgres://"):
        raise _Invalid("must start with postgresql:// (SQLAlchemy does not accept postgres://)")
    if not _DB_URL.match(value):
        raise _Invalid('must be an SQLAlchemy URL starting with "sqlite:///" or "postgresql://"')
    return value


def _secret_key(value: str) -> str:
    if len(value) < MIN_SECRET_KEY_LENGTH:
        raise _Invalid(f"must be at least {MIN_SECRET_KEY_LENGTH} characters long (try `openssl rand -hex 32`)")
    return value


def _subject_tag(value: Any) -> str:
    tag = _text(value)
    if tag.count("{id}") != 1:
        raise _Invalid(f'must contain {{id}} exactly once, like "[#{{id}}]", not {_show(value)}')
    rest = tag.replace("{id}", "")
    if "{" in rest or "}" in rest:
        raise _Invalid(f"must not contain braces other than {{id}}: {_show(value)}")
    if not rest.strip():
        # A bare number would make any number in a subject look like a ticket tag.
        raise _Invalid(f'needs text around {{id}}, like "[#{{id}}]", not {_show(value)}')
    return tag


def _timezone(value: Any) -> str:
    name = _text(value)
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise _Invalid(f'must be an IANA time zone name like "America/Sao_Paulo", not {_show(value)}') from None
    return name


def _hours(value: Any) -> tuple[tuple[str, str], ...]:
    wanted = 'an array of "HH:MM-HH:MM" strings, like ["09:00-12:00", "13:00-18:00"] ([] = closed)'
    _expect(value, list, wanted)
    spans = []
    for item in value:
        match = _HOURS_SPAN.fullmatch(item) if isinstance(item, str) else None
        h1, m1, h2, m2 = map(int, match.groups()) if match else (99, 0, 0, 0)
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if h1 > 23 or m1 > 59 or m2 > 59 or not start < end <= 24 * 60:
            raise _Invalid(f"must be {wanted}, each ending after it starts on the same day "
                           f"(split overnight hours across two days), and {_show(item)} is not")
        spans.append((start, end, f"{h1:02}:{m1:02}", f"{h2:02}:{m2:02}"))
    spans.sort()
    for before, after in zip(spans, spans[1:]):
        if after[0] < before[1]:
            raise _Invalid(f"has overlapping hours: {before[2]}-{before[3]} and {after[2]}-{after[3]}")
    return tuple((span[2], span[3]) for span in spans)


def _holidays(value: Any) -> tuple[str, ...]:
    _expect(value, list, 'an array of dates, like [2025-12-25] or ["2025-12-25"]')
    days = set()
    for item in value:
        # TOML has a native date type; a "YYYY-MM-DD" string is accepted too.
        day = item if type(item) is datetime.date else None
        if isinstance(item, str) and _ISO_DATE.fullmatch(item):
            try:
                day = datetime.date.fromisoformat(item)
            except ValueError:
                pass
        if day is None:
            raise _Invalid(f"must list dates as YYYY-MM-DD, and {_show(item)} is not a valid date")
        days.add(day.isoformat())
    return tuple(sorted(days))


_SECURITY = _choice(*SECURITY_MODES)


class Key(NamedTuple):
    """One TOML key: how to check its value, whether it must be given, and whether it is a secret
    (then KEY, KEY_env and KEY_file are its three forms, at most one of them given)."""
    kind: Callable[[Any], Any]
    required: bool = False
    secret: bool = False


def _reveal(value: str) -> str:
    return value


# The whole file: section -> key -> kind. Key names are the dataclass field names, except
# [business_hours] mon..sun (-> weekly) and [log] level (-> Settings.log_level).
SCHEMA: dict[str, dict[str, Key]] = {
    "database": {"url": Key(_database_url, secret=True)},
    "mailbox": {
        "name": Key(_text, True), "host": Key(_text, True), "port": Key(_integer(1, 65535)),
        "security": Key(_SECURITY), "username": Key(_text, True), "password": Key(_reveal, True, True),
        "folder": Key(_text), "processed_folder": Key(_text),
        "address": Key(_matching(_EMAIL, 'an e-mail address like "support@example.com"'), True),
        "queue": Key(_text), "batch_size": Key(_integer(1, 10_000)),
    },
    "smtp": {
        "host": Key(_text), "port": Key(_integer(1, 65535)), "security": Key(_SECURITY),
        "username": Key(_text), "password": Key(_reveal, secret=True), "from_name": Key(_text),
        "timeout": Key(_duration_seconds),
    },
    "web": {
        "listen": Key(_listen), "base_url": Key(_base_url), "secret_key": Key(_secret_key, secret=True),
        "session_cookie_secure": Key(_bool),
    },
    "tickets": {"subject_tag": Key(_subject_tag), "reopen_days": Key(_days), "subject_threading_days": Key(_days)},
    "claims": {"ttl": Key(_duration_seconds), "heartbeat": Key(_duration_seconds)},
    "scheduler": {f.name: Key(_duration_seconds) for f in fields(SchedulerSettings)},
    "sla": {
        "name": Key(_text, True), "first_response": Key(_duration_seconds), "resolution": Key(_duration_seconds),
        "queue": Key(_text), "priority": Key(_text),
        "sender_domain": Key(_matching(_DOMAIN, 'a domain like "partner.example"', lower=True)),
    },
    "business_hours": {"timezone": Key(_timezone), **{day: Key(_hours) for day in WEEKDAYS},
                       "holidays": Key(_holidays)},
    "autoreply": {"enabled": Key(_bool), "template": Key(_text), "max_per_sender_per_hour": Key(_integer(0))},
    "limits": {"max_message_bytes": Key(_size), "max_attachment_bytes": Key(_size)},
    "log": {"level": Key(_choice(*LOG_LEVELS))},
}
ARRAY_SECTIONS = ("mailbox", "sla")  # written [[mailbox]], [[sla]]: one block per entry


def allowed_keys(section: str) -> list[str]:
    """Every key a section accepts, secrets in all three forms."""
    return [form for name, key in SCHEMA[section].items()
            for form in ((name, f"{name}_env", f"{name}_file") if key.secret else (name,))]


def default_config_path(env: Mapping[str, str] = os.environ) -> Path:
    """$MAILTICKET_CONFIG if set, else /etc/mailticket/config.toml (SPEC §3)."""
    return Path(env[CONFIG_PATH_ENV]) if env.get(CONFIG_PATH_ENV) else DEFAULT_CONFIG_PATH


class _Reader:
    """Checks one parsed file against SCHEMA; every error it raises names the file and the key."""

    def __init__(self, path: Path, env: Mapping[str, str]):
        self.path, self.env = path, env

    def error(self, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: {message}.")

    def table(self, raw: Any, where: str, section: str) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise self.error(f"{where} must be a table, not {_type_name(raw)}")
        allowed = allowed_keys(section)
        for name in raw:
            if name not in allowed:
                raise self.error(f"unknown key {where}.{name}; [{section}] accepts {', '.join(allowed)}")
        values = {}
        for name, key in SCHEMA[section].items():
            value = self.secret(raw, where, name, key.kind) if key.secret else raw.get(name, _ABSENT)
            if value is _ABSENT:
                if key.required:
                    forms = f" (as {name}, {name}_env or {name}_file)" if key.secret else ""
                    raise self.error(f"{where}.{name} is required{forms}")
                continue
            try:
                values[name] = value if key.secret else key.kind(value)
            except _Invalid as problem:
                raise self.error(f"{where}.{name} {problem}") from None
        return values

    def secret(self, raw: dict[str, Any], where: str, name: str, kind: Callable[[str], str]) -> Any:
        given = [form for form in (name, f"{name}_env", f"{name}_file") if form in raw]
        if len(given) > 1:
            raise self.error(f"{where} sets both {given[0]} and {given[1]}; give only one of "
                             f"{name}, {name}_env or {name}_file")
        if not given:
            return _ABSENT
        form, key = given[0], f"{where}.{given[0]}"
        value = raw[form]
        if not isinstance(value, str) or not value:
            # Never echo the value: it may be the secret itself.
            raise self.error(f"{key} must be a non-empty string, not {_type_name(value)}")
        if form.endswith("_env"):
            if value not in self.env:
                raise self.error(f"{key} names the environment variable {value}, which is not set")
            secret, origin = self.env[value], f"the environment variable {value}"
        elif form.endswith("_file"):
            file = self.path.parent / value  # relative paths start at the config file's folder
            try:
                secret = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as err:
                raise self.error(f"{key} names {file}, which cannot be read "
                                 f"({getattr(err, 'strerror', None) or err})") from None
            secret = secret[:-1] if secret.endswith("\n") else secret  # one newline, as `echo` leaves it
            secret, origin = secret[:-1] if secret.endswith("\r") else secret, f"the file {file}"
        else:
            secret, origin = value, "it"
        if not secret:
            raise self.error(f"{key} names {origin}, which is empty" if origin != "it" else f"{key} is empty")
        try:
            return kind(secret)
        except _Invalid as problem:
            raise self.error(f"{key} {problem}") from None

    def entries(self, raw: Any, section: str) -> list[tuple[str, dict[str, Any]]]:
        if not isinstance(raw, list) or not all(isinstance(entry, dict) for entry in raw):
            raise self.error(f"{section} must be written as [[{section}]] blocks, one per entry")
        result, seen = [], set()
        for number, entry in enumerate(raw, 1):
            name = entry.get("name")
            # Named entries are named in errors; unnamed ones by position, counting from 1.
            where = f'{section} "{name}"' if isinstance(name, str) and name.strip() else f"{section}[{number}]"
            values = self.table(entry, where, section)
            if values["name"] in seen:
                raise self.error(f"{where}.name is used by more than one [[{section}]]; names must be unique")
            seen.add(values["name"])
            result.append((where, values))
        return result


_ABSENT = object()


def load(path: str | Path, *, env: Mapping[str, str] | None = None) -> Settings:
    """Reads and checks the TOML file at `path`; raises ConfigError naming file, key and problem."""
    path = Path(path)
    reader = _Reader(path, os.environ if env is None else env)
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except tomllib.TOMLDecodeError as err:
        raise reader.error(f"is not valid TOML: {err}") from None
    except UnicodeDecodeError:
        raise reader.error("is not valid TOML: the file is not UTF-8 text") from None
    except OSError as err:
        raise reader.error(f"cannot read the config file ({err.strerror or err})") from None
    for name in raw:
        if name not in SCHEMA:
            raise reader.error(f"unknown section or key {name} at the top level; sections are "
                               + ", ".join(f"[[{s}]]" if s in ARRAY_SECTIONS else f"[{s}]" for s in SCHEMA))
    tables = {name: reader.table(raw[name], name, name) if name in raw else {}
              for name in SCHEMA if name not in ARRAY_SECTIONS}

    mailboxes = []
    for where, box in reader.entries(raw.get("mailbox", []), "mailbox"):
        box.setdefault("port", IMAP_PORTS[box.get("security", "tls")])
        if "processed_folder" in box and box["processed_folder"] == box.get("folder", "INBOX"):
            raise reader.error(f"{where}.processed_folder must differ from the folder it reads")
        mailboxes.append(MailboxSettings(**box))

    slas = []
    for where, sla in reader.entries(raw.get("sla", []), "sla"):
        if "first_response" not in sla and "resolution" not in sla:
            raise reader.error(f"{where} needs first_response, resolution or both")
        slas.append(SlaSettings(**sla))

    smtp = tables["smtp"]
    smtp.setdefault("port", SMTP_PORTS[smtp.get("security", "starttls")])
    if ("username" in smtp) != ("password" in smtp):
        raise reader.error("smtp.username and smtp.password (or password_env/password_file) "
                           "must be given together or not at all")

    web = tables["web"]
    web.setdefault("session_cookie_secure", web.get("base_url", WebSettings.base_url).startswith("https://"))

    claims = ClaimSettings(**tables["claims"])
    if claims.heartbeat >= claims.ttl:
        raise reader.error(f"claims.heartbeat ({claims.heartbeat:g}s) must be shorter than "
                           f"claims.ttl ({claims.ttl:g}s), or claims expire while being renewed")

    hours = None
    if "business_hours" in raw:
        table = tables["business_hours"]
        weekly = {day: table.pop(name) for day, name in enumerate(WEEKDAYS) if table.get(name)}
        for name in WEEKDAYS:
            table.pop(name, None)
        if not weekly:
            raise reader.error("business_hours needs opening hours on at least one day (mon ... sun)")
        hours = BusinessHoursSettings(weekly=weekly, **table)

    return Settings(
        path=path, database=DatabaseSettings(**tables["database"]), mailboxes=tuple(mailboxes),
        smtp=SmtpSettings(**smtp), web=WebSettings(**web), tickets=TicketSettings(**tables["tickets"]),
        claims=claims, scheduler=SchedulerSettings(**tables["scheduler"]), sla=tuple(slas),
        business_hours=hours, autoreply=AutoreplySettings(**tables["autoreply"]),
        limits=LimitSettings(**tables["limits"]), log_level=tables["log"].get("level", Settings.log_level),
    )
