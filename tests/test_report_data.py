"""The timing report over a real store (SQLite and PostgreSQL): figures read in one query, `mailticket report` as
table, JSON and CSV with every number worked out by hand, and the web report page with its SVG charts."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from argon2 import PasswordHasher
from sqlalchemy import event, select

from mailticket.config import RouteSettings, SlaSettings
from mailticket.db.models import Operator, Ticket
from mailticket.reports import CSV_HEADER
from mailticket.service import actions, operators
from mailticket.service.claims import claim
from mailticket.service.outbox import flush_sync
from mailticket.service.report_data import BadPeriod, figures, parse_period
from mailticket.service.status import change_status
from tests.factories import SETTINGS, WEB_SETTINGS, make_operator, make_ticket
from tests.test_web import Browser, element

UTC = timezone.utc
PERIOD = ("--since", "2026-11-02", "--until", "2026-11-05")


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, second, tzinfo=UTC)


# The dataset: six tickets as operators really handle them (claim, reply, the outbox sending the reply, resolve,
# reopen), at the times that give these figures (seconds from the ticket's creation; None = never happened):
#   queue       first responder  created (UTC)  1st resp handle resolution  1st-resp SLA    resolution SLA  replies reopens
#                                                                           breached        breached
TICKETS = [
    ("billing", "ana", at(2, 10), 600, 300, 3600, False, False, 1, 0),
    ("billing", "ana", at(2, 15), 1800, 900, 7200, False, True, 2, 0),
    ("billing", "bob", at(3, 9), 3600, 1200, None, True, None, 1, 0),
    ("shipping", "bob", at(3, 12), 300, 120, 1800, False, False, 1, 1),
    ("shipping", None, at(5, 8), None, 0, None, None, None, 0, 0),
    ("shipping", "ana", at(5, 16), 900, 600, 900, None, False, 1, 0),
]
# Just outside 2026-11-02 .. 2026-11-05 in UTC; the second is still 2026-11-05 in São Paulo (UTC-3).
BEFORE, AFTER = at(1, 23, 59, 59), at(6, 0)
# The verdicts above follow from these policies: 50 min to answer and about 83 min to resolve, and for urgent
# shipping (the last ticket) only a resolution deadline of about 17 min. Routes put the tickets in their queues.
SLA = (SlaSettings(name="urgent", queue="shipping", priority="high", resolution=1000),
       SlaSettings(name="everyone", first_response=3000, resolution=5000))
ROUTES = (RouteSettings(name="urgent", subject_keywords=("urgent",), queue="shipping", priority="high"),
          RouteSettings(name="billing", subject_keywords=("billing",), queue="billing"),
          RouteSettings(name="shipping", subject_keywords=("shipping",), queue="shipping"))
DATASET_SETTINGS = dataclasses.replace(SETTINGS, sla=SLA, routes=ROUTES)


@pytest.fixture(autouse=True)
def fast_passwords(monkeypatch):
    # The cheapest argon2: the login still checks a real hash, in milliseconds.
    monkeypatch.setattr(operators, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


class Desk:
    """An operator's desk on one ticket: claims and replies at seconds after the ticket's creation, the outbox
    sending each reply as it is written, and the status changes."""

    def __init__(self, store, sink, ticket: int, created: datetime) -> None:
        self.store, self.ticket, self.created = store, ticket, created
        self.settings = dataclasses.replace(DATASET_SETTINGS, smtp=sink.settings())

    def reply(self, operator_id: int, claimed: float, sent: float, status: str | None = None) -> None:
        with self.store.transaction() as session:
            operator = session.get(Operator, operator_id)
            view = claim(session, self.ticket, operator, 3600, now=self.created + timedelta(seconds=claimed))
            actions.reply(session, self.settings, self.ticket, operator, "Here you are.", view.token,
                          now=self.created + timedelta(seconds=sent), status=status)
        assert flush_sync(self.store, self.settings, now=self.created + timedelta(seconds=sent)).sent == 1

    def status(self, status: str, at: float) -> None:
        with self.store.transaction() as session:
            change_status(session, self.ticket, status, actor=None, at=self.created + timedelta(seconds=at),
                          settings=self.settings)


@pytest.fixture
def dataset(store, smtp_sink) -> list[int]:
    """The six tickets of TICKETS, handled as the table says, and one ticket on each side of the period."""
    ana, bob = make_operator(store, "ana"), make_operator(store, "bob")
    subjects = ["billing", "billing", "billing", "shipping", "shipping", "urgent shipping"]
    made = []
    for n, ((_queue, _who, created, *_figures), subject) in enumerate(zip(TICKETS, subjects), start=1):
        made.append(make_ticket(store, settings=DATASET_SETTINGS, at=created, subject=f"Order {n} {subject}",
                                sender=f"customer{n}@customer.example", message_id=f"report-{n}@customer.example"))
    desks = [Desk(store, smtp_sink, ticket, row[2]) for ticket, row in zip(made, TICKETS)]
    desks[0].reply(ana, 300, 600)
    desks[0].status("resolved", 3600)
    desks[1].reply(ana, 1200, 1800)
    desks[1].reply(ana, 2000, 2300)
    desks[1].status("resolved", 7200)
    desks[2].reply(bob, 2400, 3600)
    desks[3].reply(bob, 180, 300)
    desks[3].status("resolved", 1000)
    desks[3].status("open", 1200)
    desks[3].status("resolved", 1800)
    desks[5].reply(ana, 300, 900, status="resolved")
    for name, created in (("before", BEFORE), ("after", AFTER)):
        make_ticket(store, at=created, sender=f"{name}@customer.example", subject=f"Edge {name}",
                    message_id=f"report-{name}@customer.example")
    return made


def test_the_columns_the_report_reads_were_written_by_the_work_itself(store, dataset):
    with store.reading() as session:
        rows = session.execute(select(
            Ticket.queue, Operator.username, Ticket.created_at, Ticket.first_response_seconds, Ticket.handle_seconds,
            Ticket.resolution_seconds, Ticket.first_response_breached, Ticket.resolution_breached,
            Ticket.reply_count, Ticket.reopen_count)
            .outerjoin(Operator, Operator.id == Ticket.first_responder_id)
            .where(Ticket.id.in_(dataset)).order_by(Ticket.id)).all()
    assert [tuple(row) for row in rows] == TICKETS


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mailticket", *args], capture_output=True, text=True, timeout=120)


def config_file(tmp_path, db_url: str, extra: str = "") -> str:
    path = tmp_path / "config.toml"
    path.write_text(f'[database]\nurl = "{db_url}"\n{extra}')
    return str(path)


def report_json(tmp_path, db_url: str, *period: str, extra: str = "") -> dict:
    result = run("-c", config_file(tmp_path, db_url, extra), "report", *period, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def times(count, mean=None, median=None, p90=None) -> dict:
    return {"count": count, "mean": mean, "median": median, "p90": p90}


def rate(hits, total, percent) -> dict:
    return {"hits": hits, "total": total, "percent": percent}


def group(kind, name, tickets, first_response, handle, resolution, sla_first_response, sla_resolution, fcr) -> dict:
    return {"kind": kind, "name": name, "tickets": tickets, "first_response": first_response, "handle": handle,
            "resolution": resolution, "sla_first_response": sla_first_response, "sla_resolution": sla_resolution,
            "first_contact_resolution": fcr, "csat": {"count": 0, "average": None}}


NOTHING = rate(0, 0, None)
# Worked out by hand from TICKETS. Medians of an even count are the mean of the two middle values; p90 is the
# nearest rank (ceil(0.9 n)-th smallest). Handle time counts only tickets someone worked on (> 0). A breached
# flag False is a deadline met; None (no SLA or no verdict) is left out. First-contact resolution: resolved
# tickets with exactly one reply and never reopened.
EXPECTED_OVERALL = group(
    "overall", None, 6,
    times(5, 1440.0, 900.0, 3600.0),   # 600 1800 3600 300 900
    times(5, 624.0, 600.0, 1200.0),    # 300 900 1200 120 600
    times(4, 3375.0, 2700.0, 7200.0),  # 3600 7200 1800 900
    rate(3, 4, 75.0), rate(3, 4, 75.0), rate(2, 4, 50.0))
EXPECTED_QUEUES = [
    group("queue", "billing", 3, times(3, 2000.0, 1800.0, 3600.0), times(3, 800.0, 900.0, 1200.0),
          times(2, 5400.0, 5400.0, 7200.0), rate(2, 3, 200 / 3), rate(1, 2, 50.0), rate(1, 2, 50.0)),
    group("queue", "shipping", 3, times(2, 600.0, 600.0, 900.0), times(2, 360.0, 360.0, 600.0),
          times(2, 1350.0, 1350.0, 1800.0), rate(1, 1, 100.0), rate(2, 2, 100.0), rate(1, 2, 50.0)),
]
EXPECTED_OPERATORS = [
    group("operator", "Ana", 3, times(3, 1100.0, 900.0, 1800.0), times(3, 600.0, 600.0, 900.0),
          times(3, 3900.0, 3600.0, 7200.0), rate(2, 2, 100.0), rate(2, 3, 200 / 3), rate(2, 3, 200 / 3)),
    group("operator", "Bob", 2, times(2, 1950.0, 1950.0, 3600.0), times(2, 660.0, 660.0, 1200.0),
          times(1, 1800.0, 1800.0, 1800.0), rate(1, 2, 50.0), rate(1, 1, 100.0), rate(0, 1, 0.0)),
    # Nobody answered ticket 5 yet: it counts, but it has no times and no verdicts.
    group("operator", None, 1, times(0), times(0), times(0), NOTHING, NOTHING, NOTHING),
]


# -- reading the store -----------------------------------------------------------------------------------

def test_figures_map_the_recorded_columns_and_turn_breaches_into_deadlines_met(store, dataset):
    with store.reading() as session:
        rows = figures(session, at(2, 0), at(6, 0))
    assert [row.ticket_id for row in rows] == dataset
    third, fourth, fifth = rows[2], rows[3], rows[4]
    assert (third.operator, third.sla_first_response_met, third.sla_resolution_met) == ("Bob", False, None)
    assert (fourth.sla_first_response_met, fourth.reopened, fourth.replies_before_resolution) == (True, True, 1)
    assert (fifth.operator, fifth.first_response_seconds, fifth.handle_seconds, fifth.csat) == (None, None, 0, None)
    assert third.created_at == at(3, 9)


def test_figures_cost_one_query_however_many_tickets_and_operators(store, dataset):
    statements = []

    def record(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        with store.reading() as session:
            rows = figures(session, at(2, 0), at(6, 0))
    finally:
        event.remove(store.engine, "before_cursor_execute", record)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(rows) == 6 and len(selects) == 1, statements


def test_a_period_includes_its_first_instant_and_excludes_its_end(store, dataset):
    with store.reading() as session:
        assert len(figures(session, BEFORE, AFTER)) == 7
        assert len(figures(session, BEFORE + timedelta(seconds=1), AFTER + timedelta(seconds=1))) == 7
        assert len(figures(session, at(2, 0), AFTER)) == 6


# -- mailticket report -------------------------------------------------------------------------------------

def test_report_json_gives_the_figures_worked_out_by_hand(tmp_path, db_url, dataset):
    shown = report_json(tmp_path, db_url, *PERIOD)
    assert (shown["since"], shown["until"], shown["timezone"]) == ("2026-11-02", "2026-11-05", "UTC")
    assert shown["overall"] == EXPECTED_OVERALL
    assert shown["queues"] == EXPECTED_QUEUES
    assert shown["operators"] == EXPECTED_OPERATORS
    assert shown["per_day"] == [{"date": "2026-11-02", "tickets": 2}, {"date": "2026-11-03", "tickets": 2},
                                {"date": "2026-11-04", "tickets": 0}, {"date": "2026-11-05", "tickets": 2}]


def test_report_days_are_the_days_of_the_business_time_zone(tmp_path, db_url, dataset):
    sao_paulo = '[business_hours]\ntimezone = "America/Sao_Paulo"\nmon = ["09:00-18:00"]\n'
    shown = report_json(tmp_path, db_url, *PERIOD, extra=sao_paulo)
    # 2026-11-06 00:00 UTC is 2026-11-05 21:00 in São Paulo: the seventh ticket falls inside the period there.
    assert shown["timezone"] == "America/Sao_Paulo"
    assert shown["overall"]["tickets"] == 7
    assert [day["tickets"] for day in shown["per_day"]] == [2, 2, 0, 3]


def test_report_csv_has_the_header_and_one_row_per_group(tmp_path, db_url, dataset):
    result = run("-c", config_file(tmp_path, db_url), "report", *PERIOD, "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        ",".join(CSV_HEADER),
        "overall,,6,5,1440.0,900.0,3600.0,5,624.0,600.0,1200.0,4,3375.0,2700.0,7200.0,3,4,75.0,3,4,75.0,2,4,50.0,0,",
        "queue,billing,3,3,2000.0,1800.0,3600.0,3,800.0,900.0,1200.0,2,5400.0,5400.0,7200.0,2,3,66.7,1,2,50.0,1,2,50.0,0,",
        "queue,shipping,3,2,600.0,600.0,900.0,2,360.0,360.0,600.0,2,1350.0,1350.0,1800.0,1,1,100.0,2,2,100.0,1,2,50.0,0,",
        "operator,Ana,3,3,1100.0,900.0,1800.0,3,600.0,600.0,900.0,3,3900.0,3600.0,7200.0,2,2,100.0,2,3,66.7,2,3,66.7,0,",
        "operator,Bob,2,2,1950.0,1950.0,3600.0,2,660.0,660.0,1200.0,1,1800.0,1800.0,1800.0,1,2,50.0,1,1,100.0,0,1,0.0,0,",
        "operator,(none),1,0,,,,0,,,,0,,,,0,0,,0,0,,0,0,,0,",
    ]


def test_report_table_is_the_default_format_with_one_line_per_group(tmp_path, db_url, dataset):
    result = run("-c", config_file(tmp_path, db_url), "report", *PERIOD)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "tickets created 2026-11-02 to 2026-11-05 (UTC)"
    assert [line.split("  ")[0] for line in lines[3:]] == [
        "overall", "queue billing", "queue shipping", "operator Ana", "operator Bob", "operator (none)"]
    overall = re.split(r"\s{2,}", lines[3].strip())
    # tickets, median and p90 of the first response, handle median, then the resolution's and the rates.
    assert overall[1:5] == ["6", "15 min", "1 h", "10 min"]
    assert "75% (3/4)" in lines[3] and "50% (2/4)" in lines[3]


@pytest.mark.parametrize("args, reason", [
    (("--since", "2026-13-01"), "--since: 2026-13-01 is not a day of the calendar"),
    (("--since", "yesterday"), "--since: 'yesterday' is not a date; write it as YYYY-MM-DD"),
    (("--since", "2026-11-05", "--until", "2026-11-01"), "--since 2026-11-05 is after --until 2026-11-01"),
])
def test_a_bad_since_exits_2_with_the_reason(tmp_path, args, reason):
    result = run("-c", config_file(tmp_path, f"sqlite:///{tmp_path}/r.db"), "report", *args)
    assert result.returncode == 2
    assert reason in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_the_default_period_is_the_last_thirty_days_today_included():
    period = parse_period(None, None, today=at(5, 12).date(), zone="UTC")
    assert (period.first.isoformat(), period.last.isoformat(), period.days) == ("2026-10-07", "2026-11-05", 30)
    assert parse_period(None, "2026-11-05", today=at(20, 0).date(), zone="UTC").first.isoformat() == "2026-10-07"
    with pytest.raises(BadPeriod, match="out of range"):
        parse_period("0001-01-01", None, today=at(5, 12).date(), zone="UTC")


# -- the web page ------------------------------------------------------------------------------------------

@pytest.fixture
def browser(store, dataset) -> Browser:
    from mailticket.web.app import create_app

    browser = Browser(create_app(WEB_SETTINGS, store, clock=lambda: at(5, 12)))
    assert browser.log_in("ana").status_code == 303
    return browser


def text_of(page: str, element_id: str) -> str:
    found = element(page, element_id)
    assert found is not None, f"no #{element_id} on the page"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found)).strip()


def test_the_report_page_shows_the_figures_and_the_charts_as_inline_svg(browser):
    answer = browser.get("/report?since=2026-11-02&until=2026-11-05")
    assert answer.status_code == 200
    page = answer.text
    assert text_of(page, "report-period") == "tickets created Nov 2, 2026 to Nov 5, 2026 (UTC)"
    assert text_of(page, "summary-tickets") == "6"
    assert text_of(page, "summary-first-response") == "15 min"
    assert text_of(page, "summary-sla-first-response") == "75%"
    assert text_of(page, "summary-sla-resolution") == "75%"
    assert text_of(page, "summary-fcr") == "50%"
    assert text_of(page, "summary-csat") == "—"
    # Billing: first response 600, 1800, 3600 s (mean 33 min 20 s); handle 300, 900, 1200; resolution 3600, 7200.
    queues = element(page, "queue-times")
    billing = re.search(r"<th scope=\"row\">billing</th>(.*?)</tr>", queues, re.S).group(1)
    assert re.findall(r">([^<>]+)</td>", billing) == [
        "3", "3", "33 min", "30 min", "1 h", "3", "13 min", "15 min", "20 min", "2", "1 h 30 min", "1 h 30 min",
        "2 h"]
    levels = text_of(page, "queue-levels")
    assert "billing 3 67% 2/3 50% 1/2 50% 1/2 —" in levels
    assert "All tickets 6 75% 3/4 75% 3/4 50% 2/4 —" in levels
    assert "Bob 2 50% 1/2 100% 1/1 0% 0/1 —" in text_of(page, "operator-levels")
    assert "nobody yet 1 0 — — — 0 — — — 0 — — —" in text_of(page, "operator-times")

    per_day = element(page, "chart-per-day")
    assert "<svg" in per_day and per_day.count("<circle") == 4
    assert 'aria-label="Tickets per day. 4 points from Nov 2, 2026 to Nov 5, 2026; total 6' in per_day
    first_response = element(page, "chart-first-response")
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in first_response
    assert 'aria-label="Median first response per queue. billing: 30 min; shipping: 10 min"' in first_response


def test_the_report_page_needs_nothing_the_content_security_policy_forbids(browser):
    answer = browser.get("/report?since=2026-11-02&until=2026-11-05")
    assert "default-src 'self'" in answer.headers["content-security-policy"]
    page = answer.text
    assert " style=" not in page and "<style" not in page
    assert re.findall(r"<script[^>]*>", page) == ['<script src="/static/app.js" defer>']
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert '<a href="/report">Report</a>' in page


def test_the_report_page_defaults_to_the_last_thirty_days(browser):
    page = browser.get("/report").text
    assert text_of(page, "report-period") == "tickets created Oct 7, 2026 to Nov 5, 2026 (UTC)"
    assert text_of(page, "summary-tickets") == "7"  # the one just before 2026-11-02 too
    assert element(page, "chart-per-day").count("<circle") == 30


@pytest.mark.parametrize("query, reason", [
    ("since=2026-02-30", "since: 2026-02-30 is not a day of the calendar"),
    ("since=02/11/2026", "since: &#39;02/11/2026&#39; is not a date; write it as YYYY-MM-DD"),
    ("since=2026-11-05&until=2026-11-01", "since 2026-11-05 is after until 2026-11-01"),
])
def test_bad_dates_on_the_report_page_answer_422_with_the_reason(browser, query, reason):
    answer = browser.get(f"/report?{query}")
    assert answer.status_code == 422
    assert reason in element(answer.text, "flash-error")
    assert element(answer.text, "report-summary") is None
    assert element(answer.text, "report-form") is not None  # the form stays, to correct the date


def test_the_report_page_asks_for_a_login(store):
    from mailticket.web.app import create_app

    answer = Browser(create_app(WEB_SETTINGS, store)).get("/report?since=2026-11-02")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Freport%3Fsince%3D2026-11-02"


def test_a_period_without_tickets_says_so(browser):
    page = browser.get("/report?since=2026-01-01&until=2026-01-31").text
    assert text_of(page, "summary-tickets") == "0"
    assert text_of(page, "report-empty") == "No ticket was created in this period."
