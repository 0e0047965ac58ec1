"""Loads the one TOML file into frozen settings; every error names the file, the key and the problem."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


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
    secret_key: str = ""


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


def parse_duration(text: str, *, key: str = "duration", path: str = "<config>") -> float:
    """'90s', '15m', '4h', '2d' (also combined, '1h30m') -> seconds."""
    raise NotImplementedError


def load(path: str | Path) -> Settings:
    raise NotImplementedError
