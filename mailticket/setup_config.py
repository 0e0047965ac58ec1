"""The first config file: the answers of `mailticket init` written as TOML, with each provider's servers filled in."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date

MICROSOFT, GOOGLE, IMAP = "microsoft", "google", "imap"
PROVIDERS = (MICROSOFT, GOOGLE, IMAP)
# (host, port, security) of IMAP and of SMTP for the providers whose servers are known.
SERVERS = {
    MICROSOFT: (("outlook.office365.com", 993, "tls"), ("smtp.office365.com", 587, "starttls")),
    GOOGLE: (("imap.gmail.com", 993, "tls"), ("smtp.gmail.com", 465, "tls")),
}
SUPPORT_NAMES = {"pt-BR": "Atendimento", "en": "Support"}
OPENING_HOURS = "09:00-18:00"  # Monday to Friday, a shop's usual support hours: edit in the file


@dataclass(frozen=True)
class Answers:
    shop_name: str
    provider: str
    address: str  # the support address customers write to; also the mailbox's login
    language: str
    timezone: str
    base_url: str
    listen: str
    database_url: str
    secrets_dir: str  # where the secret files are, as the config names them
    imap: tuple[str, int, str] | None = None  # for IMAP: (host, port, security)
    smtp: tuple[str, int, str] | None = None
    client_id: str = ""  # for Microsoft and Google
    tenant: str = ""  # for Microsoft
    has_client_secret: bool = False


def servers(answers: Answers) -> tuple[tuple[str, int, str], tuple[str, int, str]]:
    if answers.provider in SERVERS:
        return SERVERS[answers.provider]
    return answers.imap, answers.smtp


def _q(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a TOML basic string is a JSON string


def render(answers: Answers, today: date) -> str:
    """The config file's text: the mailbox (its language picks what customers receive), the relay, the web and the
    hours."""
    (imap_host, imap_port, imap_security), (smtp_host, smtp_port, smtp_security) = servers(answers)
    secret = lambda name: _q(f"{answers.secrets_dir.rstrip('/')}/{name}")  # noqa: E731 - a short local helper
    lines = [
        f"# Written by `mailticket init` on {today.isoformat()}.",
        "# config.example.toml documents every key; `mailticket check-config` checks this file.",
        "",
        "[database]",
        f"url = {_q(answers.database_url)}",
        "",
        "[web]",
        f"listen = {_q(answers.listen)}",
        f"base_url = {_q(answers.base_url)}",
        f"secret_key_file = {secret('web-secret')}",
        f"language = {_q(answers.language)}",
        f"timezone = {_q(answers.timezone)}",
        f"shop_name = {_q(answers.shop_name)}",
        "",
        "[[mailbox]]",
        'name = "support"',
        f"host = {_q(imap_host)}",
        f"port = {imap_port}",
        f"security = {_q(imap_security)}",
        f"username = {_q(answers.address)}",
        f"address = {_q(answers.address)}",
        f"language = {_q(answers.language)}",
    ]
    if answers.provider == IMAP:
        lines.append(f"password_file = {secret('imap-support')}")
    else:
        lines += ['auth = "oauth2"', "[mailbox.oauth2]", f"provider = {_q(answers.provider)}",
                  f'flow = "{"device" if answers.provider == MICROSOFT else "browser"}"',
                  f"client_id = {_q(answers.client_id)}"]
        if answers.tenant:
            lines.append(f"tenant = {_q(answers.tenant)}")
        if answers.has_client_secret:
            lines.append(f"client_secret_file = {secret('oauth-client-secret')}")
    lines += ["", "[smtp]", f"host = {_q(smtp_host)}", f"port = {smtp_port}", f"security = {_q(smtp_security)}",
              f"from_name = {_q(f'{answers.shop_name} {SUPPORT_NAMES[answers.language]}')}"]
    if answers.provider == IMAP:
        # Hosting providers use the mailbox's own login for sending.
        lines += [f"username = {_q(answers.address)}", f"password_file = {secret('imap-support')}"]
    else:
        lines += ['auth = "oauth2"', 'mailbox = "support"  # one consent for reading and sending']
    lines += ["", "[business_hours]", f"timezone = {_q(answers.timezone)}",
              *(f"{day} = [{_q(OPENING_HOURS)}]" for day in ("mon", "tue", "wed", "thu", "fri")), ""]
    return "\n".join(lines)
