"""GET /metrics: the Prometheus text format, gauges read from the database, counters fed by the daemon's jobs."""

from __future__ import annotations

from dataclasses import replace

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from mailticket.config import AutoreplySettings, MailboxSettings, Settings, WebSettings
from mailticket.db.models import Operator, Ticket
from mailticket.db.store import Store
from mailticket.scheduler import Jobs
from mailticket.service import actions
from mailticket.service.status import change_status
from mailticket.service.claims import claim
from mailticket.web.app import create_app
from tests.dovecot import free_port
from tests.factories import SETTINGS, T0, make_operator, make_ticket
from tests.mails import SUPPORT, make_mail
from tests.smtp_sink import TEMPORARY
from tests.test_api import Caller, token_for
from tests.test_web import signed_in

# Acknowledgements would fill the outbox on every new ticket; these tests count the outbox themselves.
QUIET = replace(SETTINGS, web=WebSettings(secret_key="metrics-test-secret-key"),
                autoreply=AutoreplySettings(enabled=False))
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
EXPECTED_FAMILIES = {
    "mailticket_messages_ingested", "mailticket_messages_quarantined", "mailticket_tickets_open",
    "mailticket_claim_conflicts", "mailticket_outbox_depth", "mailticket_smtp_failures",
    "mailticket_poll_duration_seconds", "mailticket_sla_breached_tickets", "mailticket_database_up",
}


def scrape(client: TestClient) -> dict[tuple[str, tuple], float]:
    """Every sample of one scrape, keyed by (sample name, sorted labels)."""
    answer = client.get("/metrics")
    assert answer.status_code == 200, answer.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(answer.text) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def client_for(store: Store, settings: Settings = QUIET) -> TestClient:
    return TestClient(create_app(settings, store), follow_redirects=False)


def queue_reply(store: Store, ticket: int, operator_id: int) -> None:
    with store.transaction() as session:
        operator = session.get(Operator, operator_id)
        view = claim(session, ticket, operator, QUIET.claims.ttl)
        actions.reply(session, QUIET, ticket, operator, "It ships today.", view.token)


@pytest.fixture
def box(dovecot, mailbox_user) -> MailboxSettings:
    user, password = mailbox_user
    return MailboxSettings(name="support", host=dovecot.host, port=dovecot.port, security="none",
                           username=user, password=password, address=SUPPORT)


def test_metrics_answer_without_a_login_in_the_prometheus_text_format(sqlite_url):
    answer = client_for(Store(sqlite_url)).get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == CONTENT_TYPE
    families = {family.name for family in text_string_to_metric_families(answer.text)}
    assert EXPECTED_FAMILIES <= families, EXPECTED_FAMILIES - families
    assert "process_resident_memory_bytes" in answer.text


def test_open_tickets_outbox_depth_and_sla_breaches_are_read_from_the_database_at_each_scrape(store):
    client = client_for(store)
    before = scrape(client)
    assert value(before, "mailticket_tickets_open") == 0 and value(before, "mailticket_outbox_depth") == 0
    olga = make_operator(store, "olga")
    t1, t2, t3, t4 = (make_ticket(store, settings=QUIET, message_id=f"g{n}@customer.example",
                                  sender=f"g{n}@customer.example", subject=f"Order {n}") for n in range(4))
    queue_reply(store, t1, olga)
    with store.transaction() as session:
        for ticket, status in ((t1, "open"), (t2, "pending"), (t3, "resolved"), (t4, "open")):
            change_status(session, ticket, status, actor=None, at=T0, settings=QUIET)
        session.execute(update(Ticket).where(Ticket.id == t4).values(first_response_breached=True))
        # A resolved ticket's breach is history: only unresolved tickets count.
        session.execute(update(Ticket).where(Ticket.id.in_((t2, t3))).values(resolution_breached=True))
    after = scrape(client)
    assert value(after, "mailticket_tickets_open") == 2
    assert value(after, "mailticket_tickets_pending") == 1
    assert value(after, "mailticket_outbox_depth") == 1
    assert value(after, "mailticket_sla_breached_tickets", target="first_response") == 1
    assert value(after, "mailticket_sla_breached_tickets", target="resolution") == 1
    assert value(after, "mailticket_database_up") == 1


def test_a_database_that_does_not_answer_reads_as_down_and_the_scrape_still_answers():
    unreachable = Store(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere")
    samples = scrape(client_for(unreachable))
    assert value(samples, "mailticket_database_up") == 0
    assert ("mailticket_tickets_open", ()) not in samples


def test_a_claim_refused_through_the_api_counts_as_a_claim_conflict(sqlite_url):
    store = Store(sqlite_url)
    ticket = make_ticket(store, settings=QUIET)
    for name in ("ana", "bob"):
        make_operator(store, name)
    client = client_for(store)
    ana, bob = (Caller(client, token_for(store, name)) for name in ("ana", "bob"))
    before = scrape(client)
    assert ana.post(f"/tickets/{ticket}/claim").status_code == 200
    assert bob.post(f"/tickets/{ticket}/claim").status_code == 409
    assert bob.post(f"/tickets/{ticket}/reply", {"body": "Mine!", "claim_token": "made-up"}).status_code == 409
    after = scrape(client)
    assert value(after, "mailticket_claim_conflicts_total", kind="held") == \
        value(before, "mailticket_claim_conflicts_total", kind="held") + 1
    assert value(after, "mailticket_claim_conflicts_total", kind="lost") == \
        value(before, "mailticket_claim_conflicts_total", kind="lost") + 1


def test_a_claim_refused_in_the_operator_form_counts_as_a_claim_conflict(sqlite_url):
    store = Store(sqlite_url)
    ticket = make_ticket(store, settings=QUIET)
    app = create_app(QUIET, store)
    ana, bob = signed_in(app, store, "ana"), signed_in(app, store, "bob")
    before = scrape(bob.client)
    ana.post(f"/tickets/{ticket}/claim")
    assert bob.post(f"/tickets/{ticket}/claim").status_code == 409
    assert bob.post(f"/tickets/{ticket}/reply", {"body": "Mine!", "claim_token": "made-up"}).status_code == 409
    after = scrape(bob.client)
    for kind in ("held", "lost"):
        assert value(after, "mailticket_claim_conflicts_total", kind=kind) == \
            value(before, "mailticket_claim_conflicts_total", kind=kind) + 1, kind


def test_a_poll_pass_counts_ingested_and_quarantined_messages_and_its_duration(sqlite_url, dovecot, box):
    store = Store(sqlite_url)
    settings = replace(QUIET, mailboxes=(box,))
    client = client_for(store, settings)
    first = make_mail(message_id="p1@customer.example", subject="Order 1")
    answer = make_mail(message_id="p2@customer.example", subject="Re: Order 1", in_reply_to="p1@customer.example",
                       references=["p1@customer.example"])
    other = make_mail(message_id="p3@customer.example", sender="bea@customer.example", subject="Refund")
    garbage = b"\x00\x01 no headers at all " * 100 + b"\r\n"
    dovecot.deliver(box.username, [first, answer, garbage, other])
    before = scrape(client)
    Jobs(settings, store).poll_one(box)
    after = scrape(client)

    def grew(name: str, **labels) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("mailticket_messages_ingested_total", mailbox="support", result="created") == 2
    assert grew("mailticket_messages_ingested_total", mailbox="support", result="appended") == 1
    assert grew("mailticket_messages_quarantined_total", mailbox="support") == 1
    assert grew("mailticket_poll_duration_seconds_count", mailbox="support") == 1
    assert grew("mailticket_poll_duration_seconds_sum", mailbox="support") > 0
    assert value(after, "mailticket_tickets_open") == 2


def test_a_failing_poll_counts_as_a_poll_error(sqlite_url, dovecot, box):
    store = Store(sqlite_url)
    box = replace(box, password="wrong password")
    settings = replace(QUIET, mailboxes=(box,))
    client = client_for(store, settings)
    before = scrape(client)
    Jobs(settings, store).poll_one(box)
    after = scrape(client)
    assert value(after, "mailticket_poll_errors_total", mailbox="support") == \
        value(before, "mailticket_poll_errors_total", mailbox="support") + 1


def test_an_outbox_pass_counts_sent_mail_and_smtp_failures(sqlite_url, smtp_sink):
    store = Store(sqlite_url)
    settings = replace(QUIET, smtp=smtp_sink.settings())
    olga = make_operator(store, "olga")
    for n in range(2):
        queue_reply(store, make_ticket(store, settings=settings, message_id=f"o{n}@customer.example",
                                       sender=f"o{n}@customer.example", subject=f"Order {n}"), olga)
    client = client_for(store, settings)
    before = scrape(client)
    assert value(before, "mailticket_outbox_depth") == 2
    smtp_sink.refuse(TEMPORARY, times=1)
    Jobs(settings, store).outbox()
    after = scrape(client)

    def grew(name: str, **labels) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("mailticket_outbox_messages_total", outcome="sent") == 1
    assert grew("mailticket_outbox_messages_total", outcome="retried") == 1
    assert grew("mailticket_smtp_failures_total") == 1
    assert value(after, "mailticket_outbox_depth") == 1
