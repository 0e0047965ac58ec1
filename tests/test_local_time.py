"""Times and durations for people: in the shop's (or the operator's own) time zone and in the page's language;
machines (the JSON API, history details) keep ISO 8601."""

from __future__ import annotations

import dataclasses
import re
from datetime import date, datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient

from mailticket.charts import bar_chart
from mailticket.config import WebSettings
from mailticket.db.store import Store
from mailticket.durations import compact, prose
from mailticket.localtime import cli_time, is_zone, local_clock, local_day, local_time
from mailticket.resources import resource_dir
from mailticket.service import operators
from mailticket.web.app import create_app
from mailticket.web.core import make_templates
from tests.factories import NOW, T0, WEB_SETTINGS, make_operator, make_ticket
from tests.test_cli import config_file, run
from tests.test_cli import operator as run_operator
from tests.test_web import Browser, signed_in

SAO_PAULO = "America/Sao_Paulo"
AT = datetime(2026, 11, 29, 3, 22, tzinfo=timezone.utc)  # 00:22 in São Paulo (UTC-3)
ISO_WITH_OFFSET = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)$")


def settings_in(language: str, zone: str):
    return dataclasses.replace(WEB_SETTINGS, web=dataclasses.replace(WEB_SETTINGS.web, language=language,
                                                                     timezone=zone))


# -- formatting units ----------------------------------------------------------------------------------------------

def test_a_utc_time_of_03_22_shows_as_00_22_in_sao_paulo_in_each_language():
    assert local_time(AT, "pt-BR", SAO_PAULO) == "29/11/2026 00:22"
    assert local_time(AT, "en", SAO_PAULO) == "Nov 29, 2026, 12:22 AM"
    assert local_clock(AT, "pt-BR", SAO_PAULO) == "00:22"
    assert local_clock(AT, "en", SAO_PAULO) == "12:22 AM"


def test_the_same_instant_reads_differently_in_other_zones_and_across_midnight():
    assert local_time(AT, "pt-BR", "UTC") == "29/11/2026 03:22"
    assert local_time(AT, "pt-BR", "America/Manaus") == "28/11/2026 23:22"  # the evening before
    assert local_time(AT, "en", "Asia/Kolkata") == "Nov 29, 2026, 8:52 AM"  # half-hour offset
    # Summer time where it still exists: Lisbon is UTC+1 in July, UTC+0 in November.
    assert local_time(datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc), "pt-BR", "Europe/Lisbon") == "01/07/2026 13:00"
    assert local_time(AT, "pt-BR", "Europe/Lisbon") == "29/11/2026 03:22"


def test_no_language_or_zone_means_english_and_utc_and_no_time_is_a_dash():
    assert local_time(AT, None, None) == "Nov 29, 2026, 3:22 AM"
    assert local_time(AT, "fr", "Not/AZone") == "Nov 29, 2026, 3:22 AM"
    assert local_time(AT, "pt", SAO_PAULO) == "29/11/2026 00:22"  # any Portuguese is written as in Brazil
    assert local_time(None, "pt-BR", SAO_PAULO) == "—"
    assert local_clock(None, "en", "UTC") == "?"


def test_days_are_written_in_the_language_of_the_page():
    assert local_day(date(2026, 11, 2), "pt-BR") == "02/11/2026"
    assert local_day(date(2026, 11, 2), "en") == "Nov 2, 2026"


def test_the_command_line_shows_local_time_with_the_zones_abbreviation():
    assert cli_time(AT, SAO_PAULO) == "2026-11-29 00:22 -03"
    assert cli_time(AT, "UTC") == "2026-11-29 03:22 UTC"
    assert cli_time(AT, "Europe/Lisbon") == "2026-11-29 03:22 WET"
    assert cli_time(None, SAO_PAULO) == "-"


def test_only_real_iana_zones_are_zones():
    assert is_zone(SAO_PAULO) and is_zone("UTC") and is_zone("Asia/Kolkata")
    assert not any(is_zone(name) for name in ("", None, "Mars/Olympus", "../etc/passwd", " UTC", "x" * 100))


def test_the_page_filters_read_lang_and_tz_from_the_render_context():
    env = make_templates(str(resource_dir("templates")))
    page = env.from_string("{{ at|time }} | {{ at|clock }} | {{ day|day }} | {{ 198000|duration_prose }} | "
                           "{{ detail|readable }}")
    values = dict(at=AT, day=date(2026, 11, 2), detail="until 2026-11-29T03:22:00.123+00:00")
    assert page.render(lang="pt-BR", tz=SAO_PAULO, **values) == (
        "29/11/2026 00:22 | 00:22 | 02/11/2026 | 2 dias e 7 horas | until 29/11/2026 00:22")
    # A render without them (a template rendered outside Web.render): English, UTC.
    assert page.render(**values) == (
        "Nov 29, 2026, 3:22 AM | 3:22 AM | Nov 2, 2026 | 2 days and 7 hours | until Nov 29, 2026, 3:22 AM")


def test_the_filters_are_the_same_inside_a_macro_of_the_page():
    env = make_templates(str(resource_dir("templates")))
    page = env.from_string("{% macro shown(x) %}{{ x|time }}{% endmacro %}{{ shown(at) }}")
    assert page.render(at=AT, lang="pt-BR", tz=SAO_PAULO) == "29/11/2026 00:22"


# -- durations -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seconds, table, pt, en", [
    (2 * 86400 + 7 * 3600 + 59, "2 d 7 h", "2 dias e 7 horas", "2 days and 7 hours"),
    (45 * 60, "45 min", "45 minutos", "45 minutes"),
    (3 * 3600 + 5 * 60 + 59, "3 h 5 min", "3 horas e 5 minutos", "3 hours and 5 minutes"),
    (3600, "1 h", "1 hora", "1 hour"),
    (86400 + 60, "1 d", "1 dia", "1 day"),  # two units at most: the minute after a whole day is left out
    (61, "1 min", "1 minuto", "1 minute"),
    (30, "< 1 min", "menos de um minuto", "less than a minute"),
    (0, "0 min", "0 minutos", "0 minutes"),
    (-500, "0 min", "0 minutos", "0 minutes"),  # a clock a little ahead never shows a negative wait
])
def test_a_duration_is_compact_in_tables_and_a_phrase_in_sentences(seconds, table, pt, en):
    assert compact(seconds) == table
    assert (prose(seconds, "pt-BR"), prose(seconds, "en")) == (pt, en)


def test_no_duration_is_a_dash_or_what_the_caller_shows_for_none():
    assert compact(None) == prose(None, "pt-BR") == "—"
    assert compact(None, "-") == "-"


def test_a_promise_rounds_up_and_may_name_three_units_or_run_the_hours_on():
    assert prose(30, "en", up=True) == "1 minute"
    assert prose(86400 + 3660, "pt-BR", most=3, up=True) == "1 dia, 1 hora e 1 minuto"
    assert prose(2 * 86400, "en", days=False) == "48 hours"


def test_the_report_chart_writes_its_durations_like_the_tables():
    svg = bar_chart("Median first response per queue", ["billing", "shipping"], [1800.0, 3 * 3600 + 300.0],
                    shown=compact)
    assert 'aria-label="Median first response per queue. billing: 30 min; shipping: 3 h 5 min"' in svg


# -- pages ---------------------------------------------------------------------------------------------------------

def ticket_page(store: Store, settings, username: str = "ana") -> tuple[Browser, str, int]:
    ticket = make_ticket(store, subject="Entrega atrasada", at=T0)  # 2026-11-02 10:00 UTC, 07:00 in São Paulo
    browser = signed_in(create_app(settings, store, clock=lambda: NOW), store, username)
    page = browser.get(f"/tickets/{ticket}")
    assert page.status_code == 200
    return browser, page.text, ticket


def test_a_ticket_page_shows_its_time_in_the_configured_zone_and_the_pages_language(store):
    _, page, _ = ticket_page(store, settings_in("pt-BR", SAO_PAULO))
    shown = re.sub(r"<[^>]+>", " ", page)  # what a reader sees, without the tags' machine-readable attributes
    assert "02/11/2026 07:00" in shown
    assert "10:00" not in shown and "UTC" not in shown


def test_an_english_page_writes_the_same_time_the_english_way(store):
    _, page, ticket = ticket_page(store, settings_in("en", SAO_PAULO))
    assert "Nov 2, 2026, 7:00 AM" in page
    # The machine-readable attribute stays ISO 8601 with its offset.
    assert re.search(r'<time datetime="2026-11-02T\d\d:\d\d:\d\d[^"]*\+00:00">Nov 2, 2026, 7:00 AM</time>', page)


def test_the_queue_shows_its_times_in_the_configured_zone(store):
    browser, _, ticket = ticket_page(store, settings_in("pt-BR", SAO_PAULO))
    row = re.search(rf'<tr id="ticket-row-{ticket}".*?</tr>', browser.get("/").text, re.S).group(0)
    assert 'title="' in row and "02/11/2026 07:00" in row
    assert ">3 h</td>" in row  # waiting since T0, the page's clock at T0 + 3 h


def test_an_operators_own_time_zone_wins_over_the_configured_one(store):
    settings = settings_in("pt-BR", SAO_PAULO)
    browser, _, ticket = ticket_page(store, settings)
    with store.transaction() as session:
        operators.set_timezone(session, "ana", "Asia/Tokyo")
    assert "02/11/2026 19:00" in browser.get(f"/tickets/{ticket}").text
    # Someone else, with no zone of their own, still sees São Paulo.
    bob = signed_in(create_app(settings, store, clock=lambda: NOW), store, "bob")
    assert "02/11/2026 07:00" in bob.get(f"/tickets/{ticket}").text


def test_my_account_saves_the_time_zone_and_refuses_one_that_does_not_exist(store):
    browser, _, ticket = ticket_page(store, settings_in("en", SAO_PAULO))
    account = browser.get("/account").text
    assert 'id="timezone-form"' in account and f"({SAO_PAULO})" in account
    assert '<option value="Europe/Lisbon">' in account

    assert browser.post("/account/timezone", {"timezone": "Europe/Lisbon"}).status_code == 303
    assert '<option value="Europe/Lisbon" selected>' in browser.get("/account").text
    assert "Nov 2, 2026, 10:00 AM" in browser.get(f"/tickets/{ticket}").text

    refused = browser.post("/account/timezone", {"timezone": "Mars/Olympus"})
    assert refused.status_code == 400 and "Mars/Olympus" in refused.text
    assert "Nov 2, 2026, 10:00 AM" in browser.get(f"/tickets/{ticket}").text  # unchanged

    assert browser.post("/account/timezone", {"timezone": ""}).status_code == 303  # back to the default
    assert "Nov 2, 2026, 7:00 AM" in browser.get(f"/tickets/{ticket}").text


def test_the_json_api_keeps_iso_8601_with_the_offset(store):
    settings = settings_in("pt-BR", SAO_PAULO)
    ticket = make_ticket(store, subject="Entrega atrasada", at=T0)
    make_operator(store, "ana")
    with store.transaction() as session:
        operators.set_timezone(session, "ana", "Asia/Tokyo")
        token = operators.new_token(session, "ana")
    shown = TestClient(create_app(settings, store)).get(f"/api/v1/tickets/{ticket}", headers={"Authorization": f"Bearer {token}"}).json()
    assert ISO_WITH_OFFSET.match(shown["created_at"]) and shown["created_at"].startswith("2026-11-02T10:00:00")
    assert all(ISO_WITH_OFFSET.match(m["date"]) for m in shown["messages"])


# -- the command line ----------------------------------------------------------------------------------------------

def test_operator_set_timezone_checks_the_zone_and_default_clears_it(tmp_path, sqlite_url):
    path = config_file(tmp_path, sqlite_url)
    store = Store(sqlite_url)
    make_operator(store, "bruno")
    changed = run_operator(path, "set", "bruno", "--timezone", SAO_PAULO)
    assert changed.returncode == 0, changed.stderr
    assert f"time zone {SAO_PAULO}" in changed.stdout

    bad = run_operator(path, "set", "bruno", "--timezone", "Mars/Olympus")
    assert bad.returncode == 2 and "unknown time zone 'Mars/Olympus'" in bad.stderr and "Traceback" not in bad.stderr
    with store.reading() as session:
        assert operators.by_username(session, "bruno").timezone == SAO_PAULO

    assert run_operator(path, "set", "bruno", "--timezone", "default").returncode == 0
    with store.reading() as session:
        assert operators.by_username(session, "bruno").timezone is None
    store.dispose()


def test_ticket_show_writes_times_in_the_web_time_zone_with_its_abbreviation(tmp_path, sqlite_url):
    ticket = make_ticket(Store(sqlite_url), subject="Entrega atrasada", at=T0)
    path = config_file(tmp_path, sqlite_url, f'[web]\ntimezone = "{SAO_PAULO}"\n')
    result = run("-c", path, "ticket", "show", str(ticket))
    assert result.returncode == 0, result.stderr
    assert "created 2026-11-02 07:00 -03" in result.stdout
    assert re.search(r"--- in 2026-11-0\d \d\d:\d\d -03 from", result.stdout)
    # --json is for machines: ISO 8601 in UTC, as before.
    shown = run("-c", path, "ticket", "show", str(ticket), "--json")
    assert '"created_at": "2026-11-02T10:00:00+00:00"' in shown.stdout


def test_a_time_a_minute_before_midnight_utc_is_the_day_before_in_sao_paulo_on_the_command_line():
    assert cli_time(datetime(2026, 11, 3, 2, 59, tzinfo=timezone.utc), SAO_PAULO) == "2026-11-02 23:59 -03"
    assert cli_time(T0 + timedelta(hours=14), SAO_PAULO) == "2026-11-02 21:00 -03"
    assert WebSettings().timezone == "UTC"
