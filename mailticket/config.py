"""Loads the one TOML file into frozen settings; every error names the file, the key and the problem.

The file is checked against SCHEMA (section -> key -> kind). Errors read `FILE: KEY problem.`, where
KEY is dotted: `claims.ttl`, `mailbox "support".port`, or `mailbox[2].port` (counting from 1) when an
entry has no usable name. config.example.toml documents every key.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from mailticket import config_oauth
from mailticket.config_oauth import AUTH_MODES, OAUTH2, PASSWORD, OAuth2Settings  # noqa: F401 - re-exported
from mailticket.config_values import (
    DOMAIN,
    DURATION_KEY,
    IMAP_PORTS,
    LANGUAGES,
    LOG_LEVELS,
    PORT,
    PRIORITIES,
    SECURITY,
    SMTP_PORTS,
    WEEKDAYS,
    Invalid,
    Key,
    any_secret,
    base_url,
    boolean,
    byte_size,
    database_url,
    day_count,
    duration_seconds,
    email_address,
    ensure,
    holidays,
    integer_between,
    keywords,
    listen_address,
    matching,
    one_line,
    one_of,
    opening_hours,
    positive_days,
    secret_key,
    subject_tag,
    time_zone,
    type_name,
)
from mailticket.config_settings import (  # the settings live there; this module reads the file into them
    FALLBACK_FROM_ADDRESS,  # noqa: F401 - re-exported
    NOT_READ,
    ConfigError,
    DatabaseSettings,
    MailboxSettings,
    SmtpSettings,
    WebSettings,
    TicketSettings,
    ClaimSettings,
    SchedulerSettings,
    SlaSettings,
    RouteSettings,
    BusinessHoursSettings,
    AutoreplySettings,
    CsatSettings,
    LimitSettings,
    Settings,
    TemplateSettings,
)


DEFAULT_CONFIG_PATH = Path("/etc/mailticket/config.toml")
CONFIG_PATH_ENV = "MAILTICKET_CONFIG"
def parse_duration(text: str, *, key: str = "duration", path: str = "<config>") -> float:
    """'90s', '15m', '4h', '2d' (also combined, '1h30m') -> seconds."""
    try:
        return duration_seconds(text)
    except Invalid as problem:
        raise ConfigError(f"{path}: {key} {problem}.") from None


# The whole file. Key names are the dataclass field names, except [business_hours] mon..sun
# (-> weekly), [log] level (-> Settings.log_level) and [[route]] from (-> RouteSettings.from_addr).
SCHEMA: dict[str, dict[str, Key]] = {
    "database": {"url": Key(database_url, secret=True)},
    "mailbox": {
        "name": Key(one_line, True), "host": Key(one_line, True), "port": Key(PORT), "security": Key(SECURITY),
        "username": Key(one_line, True), "password": Key(any_secret, secret=True), "folder": Key(one_line),
        "processed_folder": Key(one_line), "queue": Key(one_line), "batch_size": Key(integer_between(1, 10_000)),
        "spam_headers": Key(boolean), "auth": Key(one_of(*AUTH_MODES)), "language": Key(one_of(*LANGUAGES)),
        "address": Key(email_address('an e-mail address like "support@example.com"'), True),
    },
    "smtp": {"host": Key(one_line), "port": Key(PORT), "security": Key(SECURITY), "username": Key(one_line),
             "password": Key(any_secret, secret=True), "from_name": Key(one_line), "timeout": DURATION_KEY,
             "auth": Key(one_of(*AUTH_MODES)), "mailbox": Key(one_line)},
    "web": {"listen": Key(listen_address), "base_url": Key(base_url), "secret_key": Key(secret_key, secret=True),
            "session_cookie_secure": Key(boolean), "language": Key(one_of(*LANGUAGES)), "timezone": Key(time_zone),
            "shop_name": Key(one_line)},
    "tickets": {"subject_tag": Key(subject_tag), "reopen_days": Key(day_count), "subject_threading_days": Key(day_count)},
    "claims": {"ttl": DURATION_KEY, "heartbeat": DURATION_KEY, "idle_after": DURATION_KEY},
    "scheduler": {f.name: DURATION_KEY for f in fields(SchedulerSettings)},
    "sla": {"name": Key(one_line, True), "first_response": DURATION_KEY, "resolution": DURATION_KEY,
            "queue": Key(one_line), "priority": Key(one_of(*PRIORITIES)),
            "sender_domain": Key(matching(DOMAIN, 'a domain like "partner.example"', lower=True))},
    "route": {"name": Key(one_line, True),
              "to": Key(email_address('an e-mail address like "trocas@shop.example"', lower=True)),
              "from": Key(email_address('an e-mail address like "orders@partner.example"', lower=True)),
              "from_domain": Key(matching(DOMAIN, 'a domain like "partner.example"', lower=True)),
              "subject_keywords": Key(keywords), "body_keywords": Key(keywords),
              "queue": Key(one_line), "priority": Key(one_of(*PRIORITIES))},
    "business_hours": {"timezone": Key(time_zone), **{day: Key(opening_hours) for day in WEEKDAYS},
                       "holidays": Key(holidays)},
    "autoreply": {"enabled": Key(boolean), "template": Key(one_line), "max_per_sender_per_hour": Key(integer_between(0))},
    "limits": {"max_message_bytes": Key(byte_size), "max_attachment_bytes": Key(byte_size)},
    "csat": {"enabled": Key(boolean), "valid_days": Key(positive_days)},
    "log": {"level": Key(one_of(*LOG_LEVELS))},
    "templates": {"dir": Key(one_line)},
}
# Tables inside a section's table: [mailbox.oauth2] and [smtp.oauth2].
SUBTABLES: dict[str, dict[str, Key]] = {"oauth2": config_oauth.SCHEMA}
NESTED = {"mailbox": ("oauth2",), "smtp": ("oauth2",)}
ARRAY_SECTIONS = ("mailbox", "sla", "route")  # written [[mailbox]], [[sla]], [[route]]: one block per entry
ROUTE_MATCH_KEYS = ("to", "from", "from_domain", "subject_keywords", "body_keywords")
ROUTE_ACTIONS = ("queue", "priority")


def allowed_keys(section: str) -> list[str]:
    """Every key a section accepts, secrets in all three forms."""
    return [form for name, key in _schema(section).items()
            for form in ((name, f"{name}_env", f"{name}_file") if key.secret else (name,))] + list(NESTED.get(section, ()))


def _schema(section: str) -> dict[str, Key]:
    return SCHEMA[section] if section in SCHEMA else SUBTABLES[section]


def default_config_path(env: Mapping[str, str] = os.environ) -> Path:
    """$MAILTICKET_CONFIG if set, else /etc/mailticket/config.toml (SPEC §3)."""
    return Path(env[CONFIG_PATH_ENV]) if env.get(CONFIG_PATH_ENV) else DEFAULT_CONFIG_PATH


class _Reader:
    """Checks one parsed file against SCHEMA; every error it raises names the file and the key."""

    def __init__(self, path: Path, env: Mapping[str, str], reveal: Collection[str] | None = None):
        self.path, self.env = path, env
        # The sections whose secrets are read now (None: all). An admin command reads only what it uses, so that
        # the secret files that exist only inside the running service (systemd credentials) do not stop it.
        self.reveal = reveal

    def error(self, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: {message}.")

    def table(self, raw: Any, where: str, section: str) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise self.error(f"{where} must be a table, not {type_name(raw)}")
        allowed = allowed_keys(section)
        for name in raw:
            if name not in allowed:
                raise self.error(f"unknown key {where}.{name}; [{section}] accepts {', '.join(allowed)}")
        values = {name: self.table(raw[name], f"{where}.{name}", name)
                  for name in NESTED.get(section, ()) if name in raw}
        for name, key in _schema(section).items():
            form = self.secret_form(raw, where, name) if key.secret else name
            try:
                if form in raw and key.secret and self.reveal is not None and section not in self.reveal:
                    values[name] = NOT_READ
                elif form in raw:
                    values[name] = key.kind(self.secret(form, raw[form]) if key.secret else raw[form])
                elif key.required:
                    raise Invalid("is required" + (f" (as {name}, {name}_env or {name}_file)" if key.secret else ""))
            except Invalid as problem:
                raise self.error(f"{where}.{form} {problem}") from None
        return values

    def secret_form(self, raw: dict[str, Any], where: str, name: str) -> str:
        given = [form for form in (name, f"{name}_env", f"{name}_file") if form in raw]
        if len(given) > 1:
            raise self.error(f"{where} sets both {given[0]} and {given[1]}; give only one of "
                             f"{name}, {name}_env or {name}_file")
        return given[0] if given else name

    def secret(self, form: str, value: Any) -> str:
        """The secret itself, from the value, the environment variable or the file it names."""
        # Never echo the value: it may be the secret itself.
        ensure(isinstance(value, str), f"must be a string, not {type_name(value)}")
        ensure(value, "must not be empty")
        origin: Any = None
        if form.endswith("_env"):
            ensure(value in self.env, f"names the environment variable {value}, which is not set")
            secret, origin = self.env[value], f"the environment variable {value}"
        elif form.endswith("_file"):
            origin = self.path.parent / value  # a relative path starts at the config file's folder
            try:
                secret = origin.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as err:
                raise Invalid(f"names {origin}, which cannot be read ({getattr(err, 'strerror', 0) or err})") from None
            # Drop one newline, as `echo secret > file` leaves it (CRLF too).
            secret = secret.removesuffix("\n").removesuffix("\r") if secret.endswith("\n") else secret
        else:
            secret = value
        ensure(secret, f"names {origin}, which is empty")
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


def load(path: str | Path, *, env: Mapping[str, str] | None = None, reveal: Collection[str] | None = None) -> Settings:
    """Reads and checks the TOML file at `path` (secrets from `env`, default os.environ). With `reveal`, only the
    secrets of those sections are read; the others are checked for their form and hold NOT_READ."""
    path = Path(path)
    reader = _Reader(path, os.environ if env is None else env, reveal)
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
        config_oauth.check_mailbox(where, box, reader.error)
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
    config_oauth.check_smtp(smtp, {box["name"]: box for _, box in sections["mailbox"]}, reader.error)
    if (smtp.get("auth") == OAUTH2 or any(box.get("auth") == OAUTH2 for _, box in sections["mailbox"])) \
            and "secret_key" not in web:
        raise reader.error('web.secret_key is required when a mailbox or [smtp] uses auth = "oauth2": '
                           "the tokens are stored encrypted with it")
    web.setdefault("session_cookie_secure", web.get("base_url", WebSettings.base_url).startswith("https://"))
    web.setdefault("timezone", hours.get("timezone", WebSettings.timezone))
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
        csat=CsatSettings(**sections["csat"]), templates=TemplateSettings(**sections["templates"]),
        log_level=sections["log"].get("level", Settings.log_level),
    )
