"""Config loading: every key checked, every error naming the file, the key and the problem."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailticket.config import (
    SCHEMA,
    SUBTABLES,
    ConfigError,
    Settings,
    default_config_path,
    load,
    parse_duration,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
CREDENTIALS = "/run/credentials/mailticket.service/"

MAILBOX = """
[[mailbox]]
name = "support"
host = "imap.example.com"
username = "support@example.com"
password = "hunter2"
address = "support@example.com"
"""


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str, **kwargs) -> Settings:
    return load(write(tmp_path, text), **kwargs)


def refused(tmp_path: Path, text: str, *fragments: str, env: dict | None = None) -> str:
    """Loads `text`, expects a ConfigError naming the file and every fragment, returns the message."""
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, text, env=env or {})
    message = str(caught.value)
    assert "config.toml" in message
    for fragment in fragments:
        assert fragment in message
    return message


# The example file

def test_the_example_config_loads(tmp_path):
    # The example reads its secrets from systemd credentials; point them at temporary files.
    text = EXAMPLE.read_text(encoding="utf-8")
    for name in re.findall(re.escape(CREDENTIALS) + r'([\w.-]+)"', text):
        (tmp_path / name).write_text("a-long-enough-secret-value\n", encoding="utf-8")
    settings = load_text(tmp_path, text.replace(CREDENTIALS, f"{tmp_path}/"), env={})
    box = settings.mailbox("support")
    assert (box.host, box.port, box.security, box.password) == ("imap.example.com", 993, "tls",
                                                                "a-long-enough-secret-value")
    assert settings.smtp.password == "a-long-enough-secret-value"
    assert settings.web.secret_key == "a-long-enough-secret-value"
    assert settings.sla[0].sender_domain == "marketplace-partner.example"
    hours = settings.business_hours
    assert hours.timezone == "America/Sao_Paulo"
    assert hours.weekly == {day: (("09:00", "18:00"),) for day in range(5)}
    assert "2025-12-25" in hours.holidays


def test_the_example_without_secrets_names_the_first_missing_credential():
    with pytest.raises(ConfigError, match=r"config\.example\.toml: mailbox \"support\"\.password_file names "):
        load(EXAMPLE)


def test_the_example_documents_every_key():
    text = EXAMPLE.read_text(encoding="utf-8")
    for section, keys in SCHEMA.items():
        assert re.search(rf"^\[\[?{section}\]\]?$", text, re.M), section
        for key in keys:
            assert re.search(rf"^#? ?{key}(_file|_env)? =", text, re.M), f"{section}.{key}"
    for section, keys in SUBTABLES.items():
        assert re.search(rf"^#?\[mailbox\.{section}\]$", text, re.M), section
        for key in keys:
            assert re.search(rf"^#? ?{key}(_file|_env)? =", text, re.M), f"{section}.{key}"


# The file itself

def test_an_empty_file_gives_the_defaults(tmp_path):
    settings = load_text(tmp_path, "", env={})
    assert settings == Settings(path=tmp_path / "config.toml")
    assert settings.business_hours is None and settings.web.secret_key == ""


def test_settings_remember_their_path(tmp_path):
    path = write(tmp_path, MAILBOX)
    assert load(str(path)).path == path


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read the config file \(No such file"):
        load(tmp_path / "nope.toml")


def test_broken_toml_reports_the_line(tmp_path):
    refused(tmp_path, "[claims]\nttl = \"15m\"\nheartbeat = \n", "not valid TOML", "line 3")


def test_a_file_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "config.toml"
    path.write_bytes(b'[smtp]\nfrom_name = "\xff"\n')
    with pytest.raises(ConfigError, match="config.toml: is not valid TOML"):
        load(path)


def test_errors_are_one_sentence(tmp_path):
    message = refused(tmp_path, '[claims]\nttl = "soon"\n')
    assert message.count("\n") == 0 and message.endswith(".")


def test_the_config_path_comes_from_the_environment_first():
    assert default_config_path({"MAILTICKET_CONFIG": "/srv/mt.toml"}) == Path("/srv/mt.toml")
    assert default_config_path({}) == Path("/etc/mailticket/config.toml")
    assert default_config_path({"MAILTICKET_CONFIG": ""}) == Path("/etc/mailticket/config.toml")


# Unknown keys and wrong types

def test_an_unknown_key_is_named_in_the_error(tmp_path):
    message = refused(tmp_path, "[claims]\nttl = \"15m\"\ntimeout = \"1m\"\n", "unknown key claims.timeout")
    assert "ttl, heartbeat" in message  # the valid keys are listed


def test_an_sla_priority_that_no_ticket_can_have_is_refused(tmp_path):
    # A typo here would silently never match: the policy would never apply.
    refused(tmp_path, '[[sla]]\nname = "vip"\npriority = "urgnet"\nfirst_response = "1h"\n',
            'sla "vip".priority must be one of low, normal, high, urgent')


def test_an_unknown_section_is_named_in_the_error(tmp_path):
    refused(tmp_path, "[imap]\nhost = \"x\"\n", "unknown section or key imap", "[[mailbox]]")


def test_an_unknown_key_in_a_mailbox_names_the_mailbox(tmp_path):
    refused(tmp_path, MAILBOX + "prot = 993\n", 'unknown key mailbox "support".prot', "password_env")


def test_a_mailbox_without_a_name_is_counted_from_one(tmp_path):
    refused(tmp_path, MAILBOX + MAILBOX.replace('name = "support"', 'nme = "x"'), "unknown key mailbox[2].nme")


def test_a_top_level_key_meant_for_a_section_is_unknown(tmp_path):
    refused(tmp_path, 'log_level = "debug"\n', "unknown section or key log_level")


def test_a_mailbox_written_as_a_single_table_is_refused(tmp_path):
    refused(tmp_path, MAILBOX.replace("[[mailbox]]", "[mailbox]"), "mailbox must be written as [[mailbox]]")


def test_a_section_written_as_a_value_is_refused(tmp_path):
    refused(tmp_path, 'claims = "15m"\n', "claims must be a table, not a string")


def test_a_string_port_is_a_type_error(tmp_path):
    refused(tmp_path, MAILBOX + 'port = "993"\n', 'mailbox "support".port must be an integer, not a string ("993")')


def test_a_boolean_is_not_a_number(tmp_path):
    refused(tmp_path, "[autoreply]\nmax_per_sender_per_hour = true\n",
            "autoreply.max_per_sender_per_hour must be an integer, not a boolean")


def test_a_string_is_not_a_boolean(tmp_path):
    refused(tmp_path, '[autoreply]\nenabled = "yes"\n', "autoreply.enabled must be true or false")


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_a_port_out_of_range_is_refused(tmp_path, port):
    refused(tmp_path, f"[smtp]\nport = {port}\n", "smtp.port must be between 1 and 65535")


def test_an_unknown_security_mode_is_refused(tmp_path):
    refused(tmp_path, MAILBOX + 'security = "ssl"\n', 'mailbox "support".security must be one of tls, starttls, none')


def test_an_empty_required_string_is_refused(tmp_path):
    refused(tmp_path, MAILBOX.replace('host = "imap.example.com"', 'host = "  "'),
            'mailbox "support".host must not be empty')


def test_a_missing_required_key_is_named(tmp_path):
    refused(tmp_path, MAILBOX.replace('username = "support@example.com"\n', ""),
            'mailbox "support".username is required')


def test_a_bad_address_is_refused(tmp_path):
    refused(tmp_path, MAILBOX.replace('address = "support@example.com"', 'address = "support"'),
            'mailbox "support".address must be an e-mail address')


def test_mailbox_names_must_be_unique(tmp_path):
    refused(tmp_path, MAILBOX + MAILBOX, 'mailbox "support".name is used by more than one [[mailbox]]')


def test_the_processed_folder_must_differ_from_the_folder(tmp_path):
    refused(tmp_path, MAILBOX + 'processed_folder = "INBOX"\n', 'mailbox "support".processed_folder must differ')


def test_the_mailbox_port_follows_security(tmp_path):
    settings = load_text(tmp_path, MAILBOX + MAILBOX.replace('"support"\n', '"sales"\nsecurity = "starttls"\n', 1))
    assert [box.port for box in settings.mailboxes] == [993, 143]
    assert settings.mailbox("sales").security == "starttls"


def test_the_smtp_port_follows_security(tmp_path):
    assert load_text(tmp_path, "").smtp.port == 587
    assert load_text(tmp_path, '[smtp]\nsecurity = "tls"\n').smtp.port == 465
    assert load_text(tmp_path, '[smtp]\nsecurity = "none"\nport = 2525\n').smtp.port == 2525


def test_a_mailbox_is_not_required(tmp_path):
    assert load_text(tmp_path, '[web]\nlisten = "0.0.0.0:80"\n').mailboxes == ()


def test_own_addresses_come_from_the_mailboxes(tmp_path):
    text = MAILBOX.replace('address = "support@example.com"', 'address = "Support@Example.com"')
    assert load_text(tmp_path, text).own_addresses == ("support@example.com",)


# Durations

@pytest.mark.parametrize("text, seconds", [
    ("90s", 90), ("15m", 900), ("4h", 14400), ("2d", 172800), ("1h30m", 5400), ("1d 2h", 93600), (" 5m ", 300),
])
def test_durations_are_read_in_seconds(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "15", "1.5h", "15 minutes", "30m1h", "-5m", "5M", "0s"])
def test_a_bad_duration_string_is_refused(text):
    with pytest.raises(ConfigError, match=r"^x\.toml: claims\.ttl must be "):
        parse_duration(text, key="claims.ttl", path="x.toml")


def test_a_bad_duration_names_the_key(tmp_path):
    refused(tmp_path, '[scheduler]\npoll_interval = "1 minute"\n',
            'scheduler.poll_interval must be a duration string like "90s"', '"1 minute"')


def test_a_bare_number_is_not_a_duration(tmp_path):
    refused(tmp_path, "[claims]\nttl = 900\n", "claims.ttl must be a duration string", "bare number 900")


def test_durations_are_converted_to_seconds(tmp_path):
    settings = load_text(tmp_path, '[claims]\nttl = "10m"\nheartbeat = "30s"\nidle_after = "3s"\n'
                                   '[smtp]\ntimeout = "1m"\n')
    assert (settings.claims.ttl, settings.claims.heartbeat, settings.smtp.timeout) == (600, 30, 60)
    assert settings.claims.idle_after == 3


def test_an_idle_after_that_is_no_duration_is_refused_naming_the_key(tmp_path):
    refused(tmp_path, '[claims]\nidle_after = "soon"\n', "claims.idle_after must be a duration")


def test_the_heartbeat_must_be_shorter_than_the_ttl(tmp_path):
    refused(tmp_path, '[claims]\nttl = "1m"\nheartbeat = "1m"\n', "claims.heartbeat (60s) must be shorter than claims.ttl")


# Secrets

def test_an_inline_password_is_used(tmp_path):
    assert load_text(tmp_path, MAILBOX).mailbox("support").password == "hunter2"


def test_a_password_from_the_environment_is_used(tmp_path):
    text = MAILBOX.replace('password = "hunter2"', 'password_env = "IMAP_PW"')
    assert load_text(tmp_path, text, env={"IMAP_PW": "s3cret"}).mailbox("support").password == "s3cret"


def test_the_process_environment_is_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("MT_TEST_SECRET_KEY", "k" * 32)
    assert load_text(tmp_path, '[web]\nsecret_key_env = "MT_TEST_SECRET_KEY"\n').web.secret_key == "k" * 32


def test_a_missing_password_env_variable_is_named(tmp_path):
    refused(tmp_path, MAILBOX.replace('password = "hunter2"', 'password_env = "IMAP_PW"'),
            'mailbox "support".password_env names the environment variable IMAP_PW, which is not set')


def test_an_empty_password_env_variable_is_refused(tmp_path):
    refused(tmp_path, MAILBOX.replace('password = "hunter2"', 'password_env = "IMAP_PW"'),
            "environment variable IMAP_PW, which is empty", env={"IMAP_PW": ""})


def test_a_password_file_loses_one_trailing_newline(tmp_path):
    (tmp_path / "pw").write_text("s3cret\n\n", encoding="utf-8")
    text = MAILBOX.replace('password = "hunter2"', f'password_file = "{tmp_path / "pw"}"')
    assert load_text(tmp_path, text).mailbox("support").password == "s3cret\n"


def test_a_relative_password_file_starts_at_the_config_folder(tmp_path):
    (tmp_path / "smtp.pw").write_text("relay-pw\r\n", encoding="utf-8")
    text = '[smtp]\nusername = "u"\npassword_file = "smtp.pw"\n'
    assert load_text(tmp_path, text).smtp.password == "relay-pw"


def test_an_unreadable_password_file_is_named(tmp_path):
    missing = tmp_path / "no-such-secret"
    refused(tmp_path, MAILBOX.replace('password = "hunter2"', f'password_file = "{missing}"'),
            'mailbox "support".password_file names ', str(missing), "cannot be read")


def test_an_empty_password_file_is_refused(tmp_path):
    (tmp_path / "pw").write_text("\n", encoding="utf-8")
    refused(tmp_path, MAILBOX.replace('password = "hunter2"', 'password_file = "pw"'), "which is empty")


def test_two_password_forms_are_refused(tmp_path):
    refused(tmp_path, MAILBOX + 'password_env = "IMAP_PW"\n',
            'mailbox "support" sets both password and password_env', "give only one of")


def test_a_mailbox_needs_a_password(tmp_path):
    refused(tmp_path, MAILBOX.replace('password = "hunter2"\n', ""),
            'mailbox "support".password is required (as password, password_env or password_file)')


def test_a_wrongly_typed_password_is_not_echoed(tmp_path):
    message = refused(tmp_path, MAILBOX.replace('password = "hunter2"', "password = 8675309"),
                      'mailbox "support".password must be a string, not an integer')
    assert "8675309" not in message


def test_an_empty_inline_password_is_refused(tmp_path):
    refused(tmp_path, MAILBOX.replace('password = "hunter2"', 'password = ""'), 'mailbox "support".password must not be empty')


def test_smtp_username_and_password_go_together(tmp_path):
    refused(tmp_path, '[smtp]\nusername = "u"\n', "smtp.username and smtp.password")
    refused(tmp_path, '[smtp]\npassword = "p"\n', "smtp.username and smtp.password")


def test_the_database_url_can_come_from_a_file(tmp_path):
    (tmp_path / "db").write_text("postgresql+psycopg://mt:pw@db/mt\n", encoding="utf-8")
    assert load_text(tmp_path, '[database]\nurl_file = "db"\n').database.url == "postgresql+psycopg://mt:pw@db/mt"


def test_a_bad_database_url_is_refused_without_echoing_it(tmp_path):
    message = refused(tmp_path, '[database]\nurl = "mysql://root:topsecret@db/mt"\n', "database.url must be")
    assert "topsecret" not in message
    refused(tmp_path, '[database]\nurl = "postgres://db/mt"\n', "database.url must start with postgresql://")


def test_the_web_secret_key_defaults_to_empty(tmp_path):
    assert load_text(tmp_path, MAILBOX).web.secret_key == ""


def test_a_short_web_secret_key_is_refused(tmp_path):
    refused(tmp_path, '[web]\nsecret_key = "short"\n', "web.secret_key must be at least 16 characters")


# Web

def test_secure_cookies_follow_the_base_url(tmp_path):
    assert load_text(tmp_path, '[web]\nbase_url = "https://help.example.com/"\n').web.session_cookie_secure
    assert not load_text(tmp_path, "").web.session_cookie_secure
    text = '[web]\nbase_url = "https://x.example"\nsession_cookie_secure = false\n'
    assert not load_text(tmp_path, text).web.session_cookie_secure


def test_the_base_url_loses_its_trailing_slash(tmp_path):
    assert load_text(tmp_path, '[web]\nbase_url = "https://help.example.com/"\n').web.base_url == "https://help.example.com"


@pytest.mark.parametrize("listen", ["8025", "localhost:99999", "localhost:", ":8025"])
def test_a_bad_listen_address_is_refused(tmp_path, listen):
    refused(tmp_path, f'[web]\nlisten = "{listen}"\n', "web.listen ")


def test_an_ipv6_listen_address_is_accepted(tmp_path):
    assert load_text(tmp_path, '[web]\nlisten = "[::1]:8025"\n').web.listen == "[::1]:8025"


def test_a_base_url_without_a_scheme_is_refused(tmp_path):
    refused(tmp_path, '[web]\nbase_url = "support.example.com"\n', "web.base_url must be an http:// or https:// URL")


# Tickets

@pytest.mark.parametrize("tag, problem", [
    ("[#]", "must contain {id} exactly once"),
    ("[{id}-{id}]", "must contain {id} exactly once"),
    ("[#{id}] {x}", "must not contain braces"),
    ("{id}", "needs text around {id}"),
])
def test_a_bad_subject_tag_is_refused(tmp_path, tag, problem):
    refused(tmp_path, f'[tickets]\nsubject_tag = "{tag}"\n', "tickets.subject_tag " + problem)


def test_ticket_days_may_be_fractions_or_zero(tmp_path):
    tickets = load_text(tmp_path, "[tickets]\nreopen_days = 0.5\nsubject_threading_days = 0\n").tickets
    assert (tickets.reopen_days, tickets.subject_threading_days) == (0.5, 0.0)


def test_negative_ticket_days_are_refused(tmp_path):
    refused(tmp_path, "[tickets]\nreopen_days = -1\n", "tickets.reopen_days must be 0 or more")


def test_ticket_days_must_be_numbers(tmp_path):
    refused(tmp_path, '[tickets]\nreopen_days = "14d"\n', "tickets.reopen_days must be a number of days")


# SLA

def test_slas_are_read_in_order(tmp_path):
    text = ('[[sla]]\nname = "partner"\nsender_domain = "@Partner.Example"\nfirst_response = "4h"\n'
            '[[sla]]\nname = "rest"\npriority = "high"\nqueue = "vip"\nresolution = "2d"\n')
    partner, rest = load_text(tmp_path, text).sla
    assert (partner.name, partner.sender_domain, partner.first_response, partner.resolution) == \
        ("partner", "partner.example", 14400, None)
    assert (rest.priority, rest.queue, rest.resolution) == ("high", "vip", 172800)


def test_an_sla_needs_a_name(tmp_path):
    refused(tmp_path, '[[sla]]\nfirst_response = "4h"\n', "sla[1].name is required")


def test_an_sla_needs_a_target(tmp_path):
    refused(tmp_path, '[[sla]]\nname = "x"\nqueue = "q"\n', 'sla "x" needs first_response, resolution or both')


def test_an_sla_with_a_bad_duration_names_the_sla(tmp_path):
    refused(tmp_path, '[[sla]]\nname = "x"\nresolution = 2\n', 'sla "x".resolution must be a duration')


def test_an_sla_with_a_bad_domain_is_refused(tmp_path):
    refused(tmp_path, '[[sla]]\nname = "x"\nresolution = "2d"\nsender_domain = "partner"\n',
            'sla "x".sender_domain must be a domain')


def test_sla_names_must_be_unique(tmp_path):
    block = '[[sla]]\nname = "x"\nresolution = "2d"\n'
    refused(tmp_path, block + block, 'sla "x".name is used by more than one [[sla]]')


# Business hours

def test_business_hours_are_read_per_weekday(tmp_path):
    text = ('[business_hours]\ntimezone = "Europe/Berlin"\nmon = ["13:00-18:00", "08:00-12:00"]\n'
            'sat = ["10:00-24:00"]\nsun = []\nholidays = [2025-12-25, "2025-01-01", 2025-12-25]\n')
    hours = load_text(tmp_path, text).business_hours
    assert hours.timezone == "Europe/Berlin"
    assert hours.weekly == {0: (("08:00", "12:00"), ("13:00", "18:00")), 5: (("10:00", "24:00"),)}
    assert hours.holidays == ("2025-01-01", "2025-12-25")


def test_business_hours_default_to_utc(tmp_path):
    assert load_text(tmp_path, '[business_hours]\nfri = ["09:00-17:00"]\n').business_hours.timezone == "UTC"


def test_an_unknown_timezone_is_refused(tmp_path):
    refused(tmp_path, '[business_hours]\ntimezone = "Mars/Olympus"\nmon = ["09:00-18:00"]\n',
            "business_hours.timezone must be an IANA time zone name", "Mars/Olympus")


@pytest.mark.parametrize("span", ["9-18", "09:00", "25:00-26:00", "09:60-10:00", "9:00-18:00"])
def test_a_badly_written_opening_range_is_refused(tmp_path, span):
    refused(tmp_path, f'[business_hours]\nmon = ["{span}"]\n', 'business_hours.mon must be an array of "HH:MM-HH:MM"')


@pytest.mark.parametrize("span", ["18:00-09:00", "22:00-02:00", "09:00-09:00", "09:00-24:30"])
def test_an_opening_range_must_end_after_it_starts(tmp_path, span):
    refused(tmp_path, f'[business_hours]\nwed = ["{span}"]\n', f'business_hours.wed has "{span}", which does not end')


def test_overlapping_opening_ranges_are_refused(tmp_path):
    refused(tmp_path, '[business_hours]\ntue = ["09:00-13:00", "12:00-18:00"]\n',
            "business_hours.tue has overlapping hours: 09:00-13:00 and 12:00-18:00")


def test_an_unknown_weekday_is_refused(tmp_path):
    refused(tmp_path, '[business_hours]\nmonday = ["09:00-18:00"]\n', "unknown key business_hours.monday",
            "mon, tue, wed")


def test_business_hours_need_an_open_day(tmp_path):
    refused(tmp_path, '[business_hours]\ntimezone = "UTC"\nsun = []\n', "business_hours needs opening hours")


@pytest.mark.parametrize("day", ['"2025-02-30"', '"25/12/2025"', "2025-12-25T00:00:00", "20251225"])
def test_a_bad_holiday_is_refused(tmp_path, day):
    refused(tmp_path, f'[business_hours]\nmon = ["09:00-18:00"]\nholidays = [{day}]\n',
            "business_hours.holidays must list dates as YYYY-MM-DD")


# Autoreply, limits, log

def test_autoreply_settings_are_read(tmp_path):
    text = '[autoreply]\nenabled = false\ntemplate = "ack_pt.txt"\nmax_per_sender_per_hour = 0\n'
    autoreply = load_text(tmp_path, text).autoreply
    assert (autoreply.enabled, autoreply.template, autoreply.max_per_sender_per_hour) == (False, "ack_pt.txt", 0)


def test_a_negative_autoreply_limit_is_refused(tmp_path):
    refused(tmp_path, "[autoreply]\nmax_per_sender_per_hour = -1\n", "must be at least 0, not -1")


@pytest.mark.parametrize("size, expected", [
    ("1000", 1000), ('"25MB"', 25_000_000), ('"10MiB"', 10 * 2**20), ('"512 KiB"', 512 * 1024),
    ('"2gb"', 2 * 10**9), ('"300B"', 300),
])
def test_sizes_are_bytes_or_strings_with_a_unit(tmp_path, size, expected):
    assert load_text(tmp_path, f"[limits]\nmax_message_bytes = {size}\n").limits.max_message_bytes == expected


@pytest.mark.parametrize("size", ['"25 megs"', '"1.5MB"', "0", '"0MB"', "2.5", '""'])
def test_a_bad_size_is_refused(tmp_path, size):
    refused(tmp_path, f"[limits]\nmax_attachment_bytes = {size}\n", "limits.max_attachment_bytes must be")


def test_the_log_level_is_read_from_the_log_section(tmp_path):
    assert load_text(tmp_path, '[log]\nlevel = "DEBUG"\n').log_level == "debug"
    assert load_text(tmp_path, "").log_level == "info"


def test_an_unknown_log_level_is_refused(tmp_path):
    refused(tmp_path, '[log]\nlevel = "verbose"\n', "log.level must be one of debug, info, warning, error, critical")
