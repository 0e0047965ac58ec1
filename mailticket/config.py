"""Loads the one TOML file into frozen settings; every error names the file, the key and the problem.

The file is checked against SCHEMA (section -> key -> kind). Errors read `FILE: KEY problem.`, where
KEY is dotted: `claims.ttl`, `mailbox "support".port`, or `mailbox[2].port` (counting from 1) when an
entry has no usable name. config.example.toml documents every key.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import tomllib
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

from mailticket.mail import address


# The From address when no [[mailbox]] is configured (a web-only instance).
FALLBACK_FROM_ADDRESS = "support@localhost"


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
class RouteSettings:
    """One [[route]] rule (issue 6): every match key given must fit; the actions set queue and priority."""
    name: str
    to: str | None = None  # a recipient address (To or Cc)
    from_addr: str | None = None  # TOML key `from`
    from_domain: str | None = None
    subject_keywords: tuple[str, ...] = ()
    body_keywords: tuple[str, ...] = ()
    queue: str | None = None
    priority: str | None = None


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
class CsatSettings:
    enabled: bool = True  # the resolution mail carries a satisfaction survey link
    valid_days: float = 14.0  # the link's lifetime


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
    routes: tuple[RouteSettings, ...] = ()
    business_hours: BusinessHoursSettings | None = None
    autoreply: AutoreplySettings = field(default_factory=AutoreplySettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    csat: CsatSettings = field(default_factory=CsatSettings)
    log_level: str = "info"

    def mailbox(self, name: str) -> MailboxSettings:
        for box in self.mailboxes:
            if box.name == name:
                return box
        raise ConfigError(f"{self.path}: no [[mailbox]] named {name!r}")

    def address_of(self, mailbox: str | None) -> str:
        """The address we write from for mail of this mailbox: the one the customer wrote to and will answer."""
        for box in self.mailboxes:
            if box.name == mailbox:
                return box.address
        return self.mailboxes[0].address if self.mailboxes else FALLBACK_FROM_ADDRESS

    @property
    def own_addresses(self) -> tuple[str, ...]:
        return tuple(box.address.lower() for box in self.mailboxes)


DEFAULT_CONFIG_PATH = Path("/etc/mailticket/config.toml")
CONFIG_PATH_ENV = "MAILTICKET_CONFIG"
DURATION_HINT = 'a duration string like "90s", "15m", "4h", "2d" or "1h30m"'
_DURATION = re.compile(r"(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?")
_UNIT_SECONDS = (86400, 3600, 60, 1)
# Sizes: a bare integer is bytes; kB/MB/GB are powers of 1000, KiB/MiB/GiB powers of 1024.
_SIZE = re.compile(r"(\d+)\s*([a-z]*)", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
_DOMAIN = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)+")
_LISTEN = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):(\d{1,5})")
_BASE_URL = re.compile(r"https?://[^\s/]+(/\S*)?")
_DB_URL = re.compile(r"(sqlite|postgresql)(\+\w+)?://")
_HOURS_SPAN = re.compile(r"\s*([01]\d|2[0-3]):([0-5]\d)\s*-\s*(\d\d):([0-5]\d)\s*")
_ISO_DATE = re.compile(r"\d{4}-\d\d-\d\d")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = datetime.weekday()
SECURITY_MODES = ("tls", "starttls", "none")
IMAP_PORTS = {"tls": 993, "starttls": 143, "none": 143}  # when [[mailbox]] port is absent
SMTP_PORTS = {"tls": 465, "starttls": 587, "none": 25}  # when [smtp] port is absent
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
PRIORITIES = ("low", "normal", "high", "urgent")
MIN_SECRET_KEY_LENGTH = 16


class _Invalid(Exception):
    """What is wrong with one value, phrased to follow its key: 'must be ...'."""


def _ensure(ok: Any, problem: str) -> None:
    if not ok:
        raise _Invalid(problem)


def _show(value: Any) -> str:
    """A value as the admin wrote it in TOML."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return str(value).lower() if isinstance(value, bool) else str(value)


def _type_name(value: Any) -> str:
    kinds = ((bool, "a boolean"), (int, "an integer"), (float, "a float"), (str, "a string"),
             (list, "an array"), (dict, "a table"))
    return next((name for kind, name in kinds if isinstance(value, kind)), "a date/time")


def _expect(value: Any, kinds: type | tuple[type, ...], wanted: str) -> None:
    # TOML booleans are Python ints; a `true` where a number belongs is still a type error.
    if not isinstance(value, kinds) or (isinstance(value, bool) and kinds is not bool):
        shown = "" if isinstance(value, (dict, list)) else f" ({_show(value)})"
        raise _Invalid(f"must be {wanted}, not {_type_name(value)}{shown}")


def _duration_seconds(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise _Invalid(f"must be {DURATION_HINT}, not the bare number {value} (write the unit)")
    _expect(value, str, DURATION_HINT)
    match = _DURATION.fullmatch(value.strip())
    _ensure(value.strip() and match, f"must be {DURATION_HINT}, not {_show(value)}")
    seconds = sum(int(n) * unit for n, unit in zip(match.groups(), _UNIT_SECONDS) if n)
    _ensure(seconds > 0, f"must be longer than zero, not {_show(value)}")
    return float(seconds)


def parse_duration(text: str, *, key: str = "duration", path: str = "<config>") -> float:
    """'90s', '15m', '4h', '2d' (also combined, '1h30m') -> seconds."""
    try:
        return _duration_seconds(text)
    except _Invalid as problem:
        raise ConfigError(f"{path}: {key} {problem}.") from None


# Value kinds: each takes a raw TOML value and returns the setting, or raises _Invalid.
def _text(value: Any) -> str:
    _expect(value, str, "a string")
    _ensure(value.strip(), "must not be empty")
    # A line break in a name or an address would end the mail header it is written into.
    _ensure(not address.CONTROL.search(value), f"must be one line without control characters, not {_show(value)}")
    return value


def _bool(value: Any) -> bool:
    _expect(value, bool, "true or false")
    return value


def _integer(low: int, high: int | None = None) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        _expect(value, int, "an integer")
        _ensure(low <= value <= (high or value), f"must be between {low} and {high}, not {value}" if high
                else f"must be at least {low}, not {value}")
        return value
    return check


def _days(value: Any) -> float:
    _expect(value, (int, float), "a number of days")
    _ensure(value >= 0, f"must be 0 or more, not {value}")
    return float(value)


def _positive_days(value: Any) -> float:
    days = _days(value)
    _ensure(days > 0, f"must be more than 0 days, not {value}")
    return days


def _choice(*allowed: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        _expect(value, str, "one of " + ", ".join(allowed))
        _ensure(value.lower() in allowed, f"must be one of {', '.join(allowed)}, not {_show(value)}")
        return value.lower()
    return check


def _matching(pattern: re.Pattern[str], wanted: str, *, lower: bool = False) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        text = _text(value).strip().lower().lstrip("@") if lower else _text(value).strip()
        _ensure(pattern.fullmatch(text), f"must be {wanted}, not {_show(value)}")
        return text
    return check


def _email(wanted: str, *, lower: bool = False) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        text = _text(value).strip()
        text = text.lower() if lower else text
        problem = address.problem(text)
        _ensure(problem is None, f"must be {wanted}, not {_show(value)}: {problem}")
        return text
    return check


def _size(value: Any) -> int:
    _expect(value, (int, str), 'a size: bytes as an integer, or a string like "25MB" or "10MiB"')
    match = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
    _ensure(isinstance(value, int) or (match and match[2].lower() in _SIZE_UNITS),
            f'must be a size like "25MB" (10^6 bytes) or "10MiB" (2^20 bytes), not {_show(value)}')
    size = value if isinstance(value, int) else int(match[1]) * _SIZE_UNITS[match[2].lower()]
    _ensure(size >= 1, f"must be at least 1 byte, not {_show(value)}")
    return size


def _listen(value: Any) -> str:
    text = _matching(_LISTEN, 'HOST:PORT, like "127.0.0.1:8025" or "[::1]:8025"')(value)
    _ensure(1 <= int(_LISTEN.fullmatch(text)[2]) <= 65535, f"has a port outside 1-65535: {_show(value)}")
    return text


def _base_url(value: Any) -> str:
    return _matching(_BASE_URL, 'an http:// or https:// URL, like "https://support.example.com"')(value).rstrip("/")


def _database_url(value: str) -> str:
    # The URL may hold a password, so the problem is described without echoing it.
    _ensure(not value.startswith("postgres://"), "must start with postgresql:// (SQLAlchemy refuses postgres://)")
    _ensure(_DB_URL.match(value), 'must be an SQLAlchemy URL starting with "sqlite:///" or "postgresql://"')
    return value


def _secret_key(value: str) -> str:
    _ensure(len(value) >= MIN_SECRET_KEY_LENGTH,
            f"must be at least {MIN_SECRET_KEY_LENGTH} characters long (try `openssl rand -hex 32`)")
    return value


def _subject_tag(value: Any) -> str:
    tag = _text(value)
    _ensure(tag.count("{id}") == 1, f'must contain {{id}} exactly once, like "[#{{id}}]", not {_show(value)}')
    rest = tag.replace("{id}", "")
    _ensure("{" not in rest and "}" not in rest, f"must not contain braces other than {{id}}: {_show(value)}")
    # A bare number would make any number in a subject look like a ticket tag.
    _ensure(rest.strip(), f'needs text around {{id}}, like "[#{{id}}]", not {_show(value)}')
    return tag


def _timezone(value: Any) -> str:
    try:
        zoneinfo.ZoneInfo(_text(value))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise _Invalid(f'must be an IANA time zone name like "America/Sao_Paulo", not {_show(value)}') from None
    return value


def _hours(value: Any) -> tuple[tuple[str, str], ...]:
    wanted = 'an array of "HH:MM-HH:MM" strings, like ["09:00-12:00", "13:00-18:00"] ([] = closed)'
    _expect(value, list, wanted)
    spans = []
    for item in value:
        match = _HOURS_SPAN.fullmatch(item) if isinstance(item, str) else None
        _ensure(match, f"must be {wanted}, and {_show(item)} is not one")
        start, end = int(match[1]) * 60 + int(match[2]), int(match[3]) * 60 + int(match[4])
        _ensure(start < end <= 24 * 60, f"has {_show(item)}, which does not end after it starts on the same "
                "day (up to 24:00; split hours that cross midnight across two days)")
        spans.append((start, end, "{}:{}-{}:{}".format(*match.groups())))
    spans.sort()
    for before, after in zip(spans, spans[1:]):
        _ensure(after[0] >= before[1], f"has overlapping hours: {before[2]} and {after[2]}")
    return tuple(tuple(span[2].split("-")) for span in spans)


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
        _ensure(day, f"must list dates as YYYY-MM-DD, and {_show(item)} is not a valid date")
        days.add(day.isoformat())
    return tuple(sorted(days))


def _keywords(value: Any) -> tuple[str, ...]:
    wanted = 'an array of words or phrases, like ["devolução", "troca"]'
    _expect(value, list, wanted)
    _ensure(value, "must not be empty: list at least one keyword, or leave the key out")
    for item in value:
        _ensure(isinstance(item, str) and item.strip(), f"must be {wanted}, and {_show(item)} is not one")
    return tuple(item.strip() for item in value)


class Key(NamedTuple):
    """One TOML key: how to check its value, whether it must be given, and whether it is a secret
    (then KEY, KEY_env and KEY_file are its three forms, at most one of them given)."""
    kind: Callable[[Any], Any]
    required: bool = False
    secret: bool = False


_SECURITY = _choice(*SECURITY_MODES)
_PORT = _integer(1, 65535)
_DURATION_KEY = Key(_duration_seconds)


def _any_secret(value: str) -> str:
    return value


# The whole file. Key names are the dataclass field names, except [business_hours] mon..sun
# (-> weekly), [log] level (-> Settings.log_level) and [[route]] from (-> RouteSettings.from_addr).
SCHEMA: dict[str, dict[str, Key]] = {
    "database": {"url": Key(_database_url, secret=True)},
    "mailbox": {
        "name": Key(_text, True), "host": Key(_text, True), "port": Key(_PORT), "security": Key(_SECURITY),
        "username": Key(_text, True), "password": Key(_any_secret, True, True), "folder": Key(_text),
        "processed_folder": Key(_text), "queue": Key(_text), "batch_size": Key(_integer(1, 10_000)),
        "address": Key(_email('an e-mail address like "support@example.com"'), True),
    },
    "smtp": {"host": Key(_text), "port": Key(_PORT), "security": Key(_SECURITY), "username": Key(_text),
             "password": Key(_any_secret, secret=True), "from_name": Key(_text), "timeout": _DURATION_KEY},
    "web": {"listen": Key(_listen), "base_url": Key(_base_url), "secret_key": Key(_secret_key, secret=True),
            "session_cookie_secure": Key(_bool)},
    "tickets": {"subject_tag": Key(_subject_tag), "reopen_days": Key(_days), "subject_threading_days": Key(_days)},
    "claims": {"ttl": _DURATION_KEY, "heartbeat": _DURATION_KEY},
    "scheduler": {f.name: _DURATION_KEY for f in fields(SchedulerSettings)},
    "sla": {"name": Key(_text, True), "first_response": _DURATION_KEY, "resolution": _DURATION_KEY,
            "queue": Key(_text), "priority": Key(_text),
            "sender_domain": Key(_matching(_DOMAIN, 'a domain like "partner.example"', lower=True))},
    "route": {"name": Key(_text, True),
              "to": Key(_email('an e-mail address like "trocas@shop.example"', lower=True)),
              "from": Key(_email('an e-mail address like "orders@partner.example"', lower=True)),
              "from_domain": Key(_matching(_DOMAIN, 'a domain like "partner.example"', lower=True)),
              "subject_keywords": Key(_keywords), "body_keywords": Key(_keywords),
              "queue": Key(_text), "priority": Key(_choice(*PRIORITIES))},
    "business_hours": {"timezone": Key(_timezone), **{day: Key(_hours) for day in WEEKDAYS},
                       "holidays": Key(_holidays)},
    "autoreply": {"enabled": Key(_bool), "template": Key(_text), "max_per_sender_per_hour": Key(_integer(0))},
    "limits": {"max_message_bytes": Key(_size), "max_attachment_bytes": Key(_size)},
    "csat": {"enabled": Key(_bool), "valid_days": Key(_positive_days)},
    "log": {"level": Key(_choice(*LOG_LEVELS))},
}
ARRAY_SECTIONS = ("mailbox", "sla", "route")  # written [[mailbox]], [[sla]], [[route]]: one block per entry
ROUTE_MATCH_KEYS = ("to", "from", "from_domain", "subject_keywords", "body_keywords")
ROUTE_ACTIONS = ("queue", "priority")


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
            form = self.secret_form(raw, where, name) if key.secret else name
            try:
                if form in raw:
                    values[name] = key.kind(self.reveal(form, raw[form]) if key.secret else raw[form])
                elif key.required:
                    raise _Invalid("is required" + (f" (as {name}, {name}_env or {name}_file)" if key.secret else ""))
            except _Invalid as problem:
                raise self.error(f"{where}.{form} {problem}") from None
        return values

    def secret_form(self, raw: dict[str, Any], where: str, name: str) -> str:
        given = [form for form in (name, f"{name}_env", f"{name}_file") if form in raw]
        if len(given) > 1:
            raise self.error(f"{where} sets both {given[0]} and {given[1]}; give only one of "
                             f"{name}, {name}_env or {name}_file")
        return given[0] if given else name

    def reveal(self, form: str, value: Any) -> str:
        """The secret itself, from the value, the environment variable or the file it names."""
        # Never echo the value: it may be the secret itself.
        _ensure(isinstance(value, str), f"must be a string, not {_type_name(value)}")
        _ensure(value, "must not be empty")
        origin: Any = None
        if form.endswith("_env"):
            _ensure(value in self.env, f"names the environment variable {value}, which is not set")
            secret, origin = self.env[value], f"the environment variable {value}"
        elif form.endswith("_file"):
            origin = self.path.parent / value  # a relative path starts at the config file's folder
            try:
                secret = origin.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as err:
                raise _Invalid(f"names {origin}, which cannot be read ({getattr(err, 'strerror', 0) or err})") from None
            # Drop one newline, as `echo secret > file` leaves it (CRLF too).
            secret = secret.removesuffix("\n").removesuffix("\r") if secret.endswith("\n") else secret
        else:
            secret = value
        _ensure(secret, f"names {origin}, which is empty")
        return secret

    def entries(self, raw: Any, section: str) -> list[tuple[str, dict[str, Any]]]:
        if not isinstance(raw, list) or not all(isinstance(entry, dict) for entry in raw):
            raise self.error(f"{section} must be written as [[{section}]] blocks, one per entry")
        result, seen = [], set()
        for number, entry in enumerate(raw, 1):
            name = entry.get("name")
            where = f'{section} "{name}"' if isinstance(name, str) and name.strip() else f"{section}[{number}]"
            values = self.table(entry, where, section)
            if values["name"] in seen:
                raise self.error(f"{where}.name is used by more than one [[{section}]]; names must be unique")
            seen.add(values["name"])
            result.append((where, values))
        return result


def load(path: str | Path, *, env: Mapping[str, str] | None = None) -> Settings:
    """Reads and checks the TOML file at `path` (secrets from `env`, default os.environ)."""
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

    sections: dict[str, Any] = {name: [] if name in ARRAY_SECTIONS else {} for name in SCHEMA}
    for name, value in raw.items():  # in file order, so the first problem in the file is reported
        if name not in SCHEMA:
            raise reader.error(f"unknown section or key {name} at the top level; sections are "
                               + ", ".join(f"[[{s}]]" if s in ARRAY_SECTIONS else f"[{s}]" for s in SCHEMA))
        sections[name] = reader.entries(value, name) if name in ARRAY_SECTIONS else reader.table(value, name, name)

    for where, box in sections["mailbox"]:
        box.setdefault("port", IMAP_PORTS[box.get("security", "tls")])
        if box.get("processed_folder", "") == box.get("folder", "INBOX"):
            raise reader.error(f"{where}.processed_folder must differ from the folder it reads")
    for where, sla in sections["sla"]:
        if "first_response" not in sla and "resolution" not in sla:
            raise reader.error(f"{where} needs first_response, resolution or both")
    for where, rule in sections["route"]:
        if not any(key in rule for key in ROUTE_MATCH_KEYS):
            raise reader.error(f"{where} needs at least one match key: {', '.join(ROUTE_MATCH_KEYS)}")
        if not any(key in rule for key in ROUTE_ACTIONS):
            raise reader.error(f"{where} needs an action: queue, priority or both")
        if "from" in rule:  # `from` is a Python keyword
            rule["from_addr"] = rule.pop("from")
    smtp, web, claims, hours = sections["smtp"], sections["web"], sections["claims"], sections["business_hours"]
    smtp.setdefault("port", SMTP_PORTS[smtp.get("security", "starttls")])
    if ("username" in smtp) != ("password" in smtp):
        raise reader.error("smtp.username and smtp.password (or password_env/password_file) "
                           "must be given together or not at all")
    web.setdefault("session_cookie_secure", web.get("base_url", WebSettings.base_url).startswith("https://"))
    ttl, heartbeat = claims.get("ttl", ClaimSettings.ttl), claims.get("heartbeat", ClaimSettings.heartbeat)
    if heartbeat >= ttl:
        raise reader.error(f"claims.heartbeat ({heartbeat:g}s) must be shorter than claims.ttl ({ttl:g}s), "
                           "or claims expire while being renewed")
    weekly = {day: hours.pop(name) for day, name in enumerate(WEEKDAYS) if name in hours}
    if "business_hours" in raw and not any(weekly.values()):
        raise reader.error("business_hours needs opening hours on at least one day (mon ... sun)")

    return Settings(
        path=path, database=DatabaseSettings(**sections["database"]),
        mailboxes=tuple(MailboxSettings(**box) for _, box in sections["mailbox"]),
        smtp=SmtpSettings(**smtp), web=WebSettings(**web), tickets=TicketSettings(**sections["tickets"]),
        claims=ClaimSettings(**claims), scheduler=SchedulerSettings(**sections["scheduler"]),
        sla=tuple(SlaSettings(**sla) for _, sla in sections["sla"]),
        routes=tuple(RouteSettings(**rule) for _, rule in sections["route"]),
        business_hours=BusinessHoursSettings(weekly={d: h for d, h in weekly.items() if h}, **hours)
        if "business_hours" in raw else None,
        autoreply=AutoreplySettings(**sections["autoreply"]), limits=LimitSettings(**sections["limits"]),
        csat=CsatSettings(**sections["csat"]),
        log_level=sections["log"].get("level", Settings.log_level),
    )
