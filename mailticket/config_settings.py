"""The settings the TOML file becomes: frozen dataclasses, one per section, with their defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mailticket.config_oauth import OAUTH2, PASSWORD, OAuth2Settings


# The From address when no [[mailbox]] is configured (a web-only instance).
FALLBACK_FROM_ADDRESS = "support@localhost"
# What a secret that a command did not read holds: empty, so that every "is it set?" guard says no.
NOT_READ = ""


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
    address: str  # the support address customers write to
    password: str = field(default="", repr=False)  # with auth = "password"; never in a log line
    port: int = 993
    security: str = "tls"  # tls | starttls | none
    folder: str = "INBOX"
    processed_folder: str | None = None
    queue: str = "default"
    batch_size: int = 100
    # Trust the spam verdict headers this mailbox's own mail server adds (anyone can write them otherwise).
    spam_headers: bool = False
    auth: str = PASSWORD  # password | oauth2
    oauth2: OAuth2Settings | None = None
    language: str = "en"  # what customers receive from this mailbox: pt-BR | en

    @property
    def authorization(self) -> str | None:
        """The name its OAuth2 tokens are kept under; None for a password login."""
        return f"mailbox:{self.name}" if self.auth == OAUTH2 else None


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "localhost"
    port: int = 587
    security: str = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    from_name: str = "Support"
    timeout: float = 30.0
    auth: str = "password"  # password | oauth2
    oauth2: OAuth2Settings | None = None
    # Whose tokens: "smtp" for its own [smtp.oauth2], "mailbox:NAME" when it shares that mailbox's consent.
    authorization: str | None = None


@dataclass(frozen=True)
class WebSettings:
    listen: str = "127.0.0.1:8025"
    base_url: str = "http://127.0.0.1:8025"
    secret_key: str = field(default="", repr=False)  # empty: `serve` refuses to start; config loading does not invent one
    session_cookie_secure: bool = False  # when absent from the file: True iff base_url is https
    language: str = "en"  # the pages' language when neither the operator nor the browser says: pt-BR | en
    timezone: str = "UTC"  # when absent from the file: [business_hours] timezone, else UTC
    shop_name: str = ""  # the name customers see (survey page and mails); empty: the mailbox's from_name


@dataclass(frozen=True)
class TicketSettings:
    subject_tag: str = "[#{id}]"
    reopen_days: float = 14.0
    subject_threading_days: float = 7.0


@dataclass(frozen=True)
class ClaimSettings:
    ttl: float = 900.0  # seconds
    heartbeat: float = 60.0
    # The reply form renews its claim only while the operator was active (typing, focus) this recently.
    idle_after: float = 600.0


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
    """One [[route]] rule: every match key given must fit; the actions set queue and priority."""
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
    template: str | None = None  # None: ack_pt.txt or ack_en.txt, by the mailbox's language (mailticket.letters)
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
class TemplateSettings:
    dir: str | None = None  # a shop's own templates; a file here overrides the shipped one of the same name


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
    templates: TemplateSettings = field(default_factory=TemplateSettings)
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
