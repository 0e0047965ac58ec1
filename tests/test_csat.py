"""The satisfaction survey on real SQLite and PostgreSQL: the resolution mail and its signed link, the public page
(one answer per ticket, a later one replaces it), forged and expired links refused, the figure on the ticket and in
the report; and a survey mail is never the first response."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import undefer

from mailticket.config import CsatSettings, WebSettings
from mailticket.db.models import Csat, Message, Operator, Outbox, Ticket
from mailticket.service import actions, csat, operators, outbound
from mailticket.service.claims import claim
from mailticket.service.status import change_status
from mailticket.service.outbox import SendCounts, flush_sync
from mailticket.service.report_data import figures
from mailticket.web.app import create_app
from tests.factories import SETTINGS, T0, make_operator, make_ticket
from tests.test_web import Browser, element

SECRET = "csat-test-secret-key-0123456789"
BASE_URL = "https://support.shop.example"
SURVEY_SETTINGS = dataclasses.replace(
    SETTINGS, web=WebSettings(secret_key=SECRET, base_url=BASE_URL), csat=CsatSettings(enabled=True, valid_days=14),
)
RESOLVED_AT = T0 + timedelta(hours=2)
# The page's clock: a day after the resolution, well within the link's 14 days.
ANSWERED_AT = RESOLVED_AT + timedelta(days=1)
LINK = re.compile(re.escape(BASE_URL) + r"/csat/([A-Za-z0-9_.\-]+)")


@pytest.fixture(autouse=True)
def fast_passwords(monkeypatch):
    monkeypatch.setattr(operators, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


def resolve(store, ticket_id: int, *, settings=SURVEY_SETTINGS, at=RESOLVED_AT, answer: bool = True) -> None:
    """An operator answers the ticket (unless `answer` is false), then resolves it at `at`."""
    operator_id = make_operator(store, f"op{ticket_id}")
    with store.transaction() as session:
        operator = session.get(Operator, operator_id)
        if answer:
            view = claim(session, ticket_id, operator, 900, now=at - timedelta(minutes=10))
            actions.reply(session, settings, ticket_id, operator, "It ships today.", view.token,
                          now=at - timedelta(minutes=5))
        change_status(session, ticket_id, "resolved", actor=operator, at=at, settings=settings)


def survey_mails(store, ticket_id: int) -> list[tuple[Outbox, Message]]:
    with store.reading() as session:
        return session.execute(
            select(Outbox, Message).join(Message, Message.id == Outbox.message_id)
            .where(Outbox.ticket_id == ticket_id, Outbox.kind == outbound.NOTIFICATION).options(undefer(Message.raw))
        ).all()


def token_of(store, ticket_id: int) -> str:
    [(_row, message)] = survey_mails(store, ticket_id)
    return LINK.search(message.text).group(1)


def client(store, *, now=ANSWERED_AT, settings=SURVEY_SETTINGS) -> TestClient:
    return TestClient(create_app(settings, store, clock=lambda: now), follow_redirects=False)


def answers(store) -> list[tuple[int, int, str]]:
    with store.reading() as session:
        return [(r.ticket_id, r.rating, r.comment) for r in session.scalars(select(Csat).order_by(Csat.ticket_id))]


# The resolution mail

def test_resolving_queues_the_resolution_mail_with_a_signed_link(store):
    ticket = make_ticket(store, sender="ana@customer.example", subject="Where is my order?")
    resolve(store, ticket)

    [(row, message)] = survey_mails(store, ticket)
    assert (row.status, row.recipients, row.next_attempt_at) == ("queued", ["ana@customer.example"], RESOLVED_AT)
    assert message.direction == "out" and message.operator_id is None
    assert "[#%d]" % ticket in message.subject
    assert b"Auto-Submitted: auto-generated" in message.raw
    token = LINK.search(message.text).group(1)
    assert csat.read_token(SECRET, token, valid_days=14, now=ANSWERED_AT) == ticket


def test_no_resolution_mail_when_the_survey_is_off(store):
    ticket = make_ticket(store)
    resolve(store, ticket, settings=dataclasses.replace(SURVEY_SETTINGS, csat=CsatSettings(enabled=False)))
    assert survey_mails(store, ticket) == []


def test_the_survey_mail_is_not_a_response(store, smtp_sink):
    ticket = make_ticket(store)
    resolve(store, ticket)
    sent_at = RESOLVED_AT + timedelta(minutes=1)
    assert flush_sync(store, dataclasses.replace(SURVEY_SETTINGS, smtp=smtp_sink.settings()),
                      now=sent_at) == SendCounts(sent=2)  # the reply and the survey
    with store.reading() as session:
        sent = session.get(Ticket, ticket)
        # One reply counted, by its operator: the survey mail counts for nothing.
        assert (sent.reply_count, sent.first_response_at) == (1, sent_at)


def test_resolving_a_ticket_twice_sends_one_survey(store):
    ticket = make_ticket(store)
    resolve(store, ticket)
    with store.transaction() as session:
        change_status(session, ticket, "open", actor=None, at=RESOLVED_AT + timedelta(hours=1),
                      settings=SURVEY_SETTINGS)
        change_status(session, ticket, "resolved", actor=None, at=RESOLVED_AT + timedelta(hours=2),
                      settings=SURVEY_SETTINGS)
    assert len(survey_mails(store, ticket)) == 1
    with store.reading() as session:
        assert session.get(Ticket, ticket).survey_sent_at == RESOLVED_AT


def test_a_ticket_nobody_answered_gets_no_survey_when_resolved(store):
    ticket = make_ticket(store)
    resolve(store, ticket, answer=False)
    assert survey_mails(store, ticket) == []


def answered(store, ticket_id: int) -> int:
    """An operator claims and answers the ticket, leaving it open; returns the operator's id."""
    operator_id = make_operator(store, f"op{ticket_id}")
    with store.transaction() as session:
        operator = session.get(Operator, operator_id)
        view = claim(session, ticket_id, operator, 900, now=RESOLVED_AT - timedelta(minutes=10))
        actions.reply(session, SURVEY_SETTINGS, ticket_id, operator, "It ships today.", view.token,
                      now=RESOLVED_AT - timedelta(minutes=5))
    return operator_id


def status_of(store, ticket_id: int) -> str:
    with store.reading() as session:
        return session.get(Ticket, ticket_id).status


def test_closing_without_notifying_from_the_ticket_page_resolves_and_sends_no_survey(store):
    ticket = make_ticket(store)
    answered(store, ticket)
    operator = Browser(create_app(SURVEY_SETTINGS, store, clock=lambda: RESOLVED_AT))
    # The survey settings serve https://: the session cookie is only sent there.
    operator.client = TestClient(operator.client.app, base_url=BASE_URL, follow_redirects=False)
    assert operator.log_in(f"op{ticket}").status_code == 303
    assert operator.post(f"/tickets/{ticket}/close").status_code == 303
    assert (status_of(store, ticket), survey_mails(store, ticket)) == ("resolved", [])


def test_closing_without_notifying_through_the_api_sends_no_survey(store):
    ticket = make_ticket(store)
    answered(store, ticket)
    with store.transaction() as session:
        token = operators.new_token(session, f"op{ticket}")
    answer = client(store).post(f"/api/v1/tickets/{ticket}/status", json={"status": "resolved", "notify": False},
                                headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and answer.json()["status"] == "resolved"
    assert survey_mails(store, ticket) == []


def close_from_the_command_line(tmp_path, store, ticket: int) -> subprocess.CompletedProcess:
    """`mailticket ticket close`, with surveys on."""
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "{store.url}"\n[web]\nsecret_key = "{SECRET}"\n[csat]\nenabled = true\n')
    return subprocess.run([sys.executable, "-m", "mailticket", "-c", str(config), "ticket", "close", str(ticket)],
                          capture_output=True, text=True, timeout=120)


def test_closing_without_notifying_from_the_command_line_sends_no_survey(tmp_path, store):
    ticket = make_ticket(store)
    answered(store, ticket)
    done = close_from_the_command_line(tmp_path, store, ticket)
    assert done.returncode == 0, done.stderr
    assert (status_of(store, ticket), survey_mails(store, ticket)) == ("resolved", [])


def test_closing_from_the_command_line_waits_for_the_operator_answering_the_ticket(tmp_path, store):
    ticket = make_ticket(store)
    make_operator(store, "ana", name="Ana Souza")
    with store.transaction() as session:
        claim(session, ticket, session.scalar(select(Operator).where(Operator.username == "ana")), 900)
    done = close_from_the_command_line(tmp_path, store, ticket)
    assert done.returncode == 2 and "Ana Souza is answering this ticket" in done.stderr
    assert status_of(store, ticket) == "open"


# The public page

def test_a_valid_link_records_once_and_a_second_answer_replaces_it(store):
    ticket = make_ticket(store, subject="Broken lid")
    resolve(store, ticket)
    token = token_of(store, ticket)
    page = client(store)

    form = page.get(f"/csat/{token}")
    assert form.status_code == 200 and 'id="csat-form"' in form.text and "Broken lid" in form.text
    assert "set-cookie" not in form.headers  # no session for the customer

    first = page.post(f"/csat/{token}", data={"token": token, "rating": "4", "comment": "Quick, thanks"})
    assert first.status_code == 200 and 'id="csat-thanks"' in first.text
    assert answers(store) == [(ticket, 4, "Quick, thanks")]

    again = page.post(f"/csat/{token}", data={"token": token, "rating": "2", "comment": ""})
    assert again.status_code == 200
    assert answers(store) == [(ticket, 2, "")]
    with store.reading() as session:
        assert session.get(Csat, ticket).answered_at == ANSWERED_AT


@pytest.mark.parametrize("forge", [
    lambda token: token[:-2] + ("AA" if not token.endswith("AA") else "BB"),  # a changed signature
    lambda token: csat.make_token("another-secret-key-entirely", 1, RESOLVED_AT),  # signed with another key
    lambda token: "not-a-token",
])
def test_a_forged_link_is_refused_with_400(store, forge):
    ticket = make_ticket(store)
    resolve(store, ticket)
    forged = forge(token_of(store, ticket))
    page = client(store)

    shown = page.get(f"/csat/{forged}")
    assert shown.status_code == 400 and "not valid" in element(shown.text, "csat-refused")
    posted = page.post(f"/csat/{forged}", data={"token": forged, "rating": "5"})
    assert posted.status_code == 400
    assert answers(store) == []


def test_an_expired_link_is_refused_with_410(store):
    ticket = make_ticket(store)
    resolve(store, ticket)
    token = token_of(store, ticket)
    late = client(store, now=RESOLVED_AT + timedelta(days=14, seconds=1))

    shown = late.get(f"/csat/{token}")
    assert shown.status_code == 410 and "expired" in element(shown.text, "csat-refused")
    assert late.post(f"/csat/{token}", data={"token": token, "rating": "5"}).status_code == 410
    assert answers(store) == []
    # The last moment of its 14 days it still works.
    assert client(store, now=RESOLVED_AT + timedelta(days=14)).get(f"/csat/{token}").status_code == 200


def test_the_expiry_follows_the_configured_days(store):
    ticket = make_ticket(store)
    resolve(store, ticket)
    token = token_of(store, ticket)
    with pytest.raises(csat.ExpiredToken):
        csat.read_token(SECRET, token, valid_days=1, now=RESOLVED_AT + timedelta(days=2))
    assert csat.read_token(SECRET, token, valid_days=3, now=RESOLVED_AT + timedelta(days=2)) == ticket


def test_a_form_whose_hidden_token_differs_from_the_link_is_refused(store):
    first = make_ticket(store, message_id="a@x.example", sender="a@x.example", subject="First")
    second = make_ticket(store, message_id="b@x.example", sender="b@x.example", subject="Second")
    assert first != second
    resolve(store, first)
    resolve(store, second)
    page = client(store)
    refused = page.post(f"/csat/{token_of(store, first)}", data={"token": token_of(store, second), "rating": "1"})
    assert refused.status_code == 403
    cross_site = page.post(f"/csat/{token_of(store, first)}", headers={"Origin": "https://evil.example"},
                           data={"token": token_of(store, first), "rating": "1"})
    assert cross_site.status_code == 403
    assert answers(store) == []


@pytest.mark.parametrize("rating", ["0", "6", "", "five", "-1", "²", "٣", "¹⁰"])
def test_a_rating_outside_one_to_five_shows_the_form_again(store, rating):
    ticket = make_ticket(store)
    resolve(store, ticket)
    token = token_of(store, ticket)
    answer = client(store).post(f"/csat/{token}", data={"token": token, "rating": rating, "comment": "kept"})
    assert answer.status_code == 422 and "rating from 1" in answer.text and "kept</textarea>" in answer.text
    assert answers(store) == []


# The figure on the ticket and in the report

def answer_survey(store, ticket: int, rating: int) -> None:
    token = token_of(store, ticket)
    assert client(store).post(f"/csat/{token}", data={"token": token, "rating": str(rating)}).status_code == 200


def test_the_ticket_page_and_the_report_show_the_csat(store):
    tickets = [make_ticket(store, sender=f"c{n}@customer.example", message_id=f"r{n}@customer.example",
                           subject=f"Order {n}") for n in range(3)]
    for ticket, rating in zip(tickets[:2], (5, 4)):
        resolve(store, ticket)
        answer_survey(store, ticket, rating)

    with store.reading() as session:
        assert [f.csat for f in figures(session, T0, T0 + timedelta(days=1))] == [5, 4, None]

    make_operator(store, "ana")
    # Over plain http: the operators' session cookie of an https base_url would not come back to the test client.
    plain = dataclasses.replace(SURVEY_SETTINGS, web=WebSettings(secret_key=SECRET))
    browser = Browser(create_app(plain, store, clock=lambda: ANSWERED_AT))
    assert browser.log_in("ana").status_code == 303
    ticket_page = browser.get(f"/tickets/{tickets[1]}").text
    assert re.sub(r"<[^>]+>", "", element(ticket_page, "ticket-csat")) == "4/5"
    assert element(browser.get(f"/tickets/{tickets[2]}").text, "ticket-csat") is None
    report = browser.get("/report?since=2026-11-02&until=2026-11-03").text
    assert re.sub(r"<[^>]+>", "", element(report, "summary-csat")).strip() == "4.5"


# Configuration

def test_the_csat_section_is_read_and_checked(tmp_path):
    from mailticket.config import ConfigError, load

    path = tmp_path / "config.toml"
    assert load(_write(path, "")).csat == CsatSettings(enabled=True, valid_days=14.0)
    assert load(_write(path, "[csat]\nenabled = false\nvalid_days = 3\n")).csat == CsatSettings(False, 3.0)
    for bad, reason in (("valid_days = 0", "csat.valid_days must be more than 0 days"),
                        ('enabled = "yes"', "csat.enabled must be true or false"),
                        ("days = 3", "unknown key csat.days")):
        with pytest.raises(ConfigError, match=re.escape(reason)):
            load(_write(path, f"[csat]\n{bad}\n"))


def _write(path, text: str):
    path.write_text(text)
    return path
