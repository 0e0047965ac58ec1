"""Routing: [[route]] rules in order, accent- and case-insensitive keywords, check-config, and ingest."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
import tomllib
from datetime import timedelta

import pytest
from sqlalchemy import select

from mailticket.config import ConfigError, RouteSettings, SlaSettings, load
from mailticket.db.models import Event, Ticket
from mailticket.routing import fold, route
from mailticket.service.ingest import ingest
from mailticket.service.intake import APPENDED, CREATED
from tests.mails import SUPPORT, make_mail
from tests.test_config import EXAMPLE
from tests.test_ingest import SETTINGS, T0

RETURNS = RouteSettings("returns", subject_keywords=("devolução", "troca"), queue="trocas")
MARKETPLACE = RouteSettings("marketplace", from_domain="marketplace-partner.example", queue="marketplace",
                            priority="high")
RULES = (RETURNS, MARKETPLACE)


def routed(rules=RULES, *, to=(SUPPORT,), sender="ana@customer.example", subject="", body=""):
    rule = route(rules, to_addrs=to, from_addr=sender, subject=subject, body=body)
    return rule.name if rule else None


# fold and keywords

def test_fold_drops_accents_and_case():
    assert fold("Devolução DA Troca") == "devolucao da troca"
    assert fold("Straße ÉLAN ﬁm") == "strasse elan fim"
    assert fold("plain ascii") == "plain ascii"


def test_a_keyword_with_accents_matches_the_word_typed_without_them():
    assert routed(subject="Quero fazer uma devolucao") == "returns"
    assert routed(subject="DEVOLUCAO do pedido 1234") == "returns"


def test_a_keyword_typed_without_accents_matches_the_word_written_with_them():
    rules = (RouteSettings("returns", subject_keywords=("devolucao",), queue="trocas"),)
    assert routed(rules, subject="Devolução do pedido") == "returns"
    assert routed(rules, subject="DEVOLUÇÃO") == "returns"


def test_keywords_match_whole_words_only():
    assert routed(subject="Troca de tamanho") == "returns"
    assert routed(subject="troca!") == "returns"
    assert routed(subject="Recebi o valor trocado") is None
    assert routed(subject="destroca") is None


def test_a_keyword_phrase_matches_across_any_whitespace():
    rules = (RouteSettings("invoice", body_keywords=("nota fiscal",), queue="billing"),)
    assert routed(rules, body="Preciso da NOTA\n  fiscal do pedido") == "invoice"
    assert routed(rules, body="nota, fiscal") is None


def test_body_keywords_are_looked_for_in_the_message_text():
    rules = (RouteSettings("returns", body_keywords=("reembolso",), queue="trocas"),)
    assert routed(rules, subject="Pedido 1234", body="Olá,\nquero o Reembolso, por favor.") == "returns"
    assert routed(rules, subject="reembolso", body="nada aqui") is None


# order and match keys

def test_the_first_rule_that_fits_wins():
    # A partner writing about a return fits both rules; the one written first decides.
    mail = dict(sender="orders@marketplace-partner.example", subject="Devolução do pedido 77")
    assert routed(RULES, **mail) == "returns"
    assert routed((MARKETPLACE, RETURNS), **mail) == "marketplace"


def test_a_rule_fits_only_when_all_of_its_match_keys_fit():
    rules = (RouteSettings("partner returns", from_domain="marketplace-partner.example",
                           subject_keywords=("devolução",), priority="urgent"),)
    assert routed(rules, sender="x@marketplace-partner.example", subject="devolucao") == "partner returns"
    assert routed(rules, sender="x@marketplace-partner.example", subject="pedido") is None
    assert routed(rules, sender="ana@customer.example", subject="devolucao") is None


def test_a_sender_domain_matches_its_subdomains_but_not_lookalikes():
    assert routed(sender="orders@marketplace-partner.example") == "marketplace"
    assert routed(sender="Orders@EU.Mail.Marketplace-Partner.EXAMPLE") == "marketplace"
    assert routed(sender="x@evilmarketplace-partner.example") is None
    assert routed(sender="x@marketplace-partner.example.evil") is None
    assert routed(sender="") is None


def test_a_recipient_rule_matches_any_to_or_cc_address():
    rules = (RouteSettings("returns desk", to="trocas@shop.example", queue="trocas"),)
    assert routed(rules, to=(SUPPORT, "Trocas@Shop.Example")) == "returns desk"
    assert routed(rules, to=(SUPPORT,)) is None


def test_a_sender_rule_matches_the_address_whatever_its_case():
    rules = (RouteSettings("boss", from_addr="ceo@shop.example", priority="urgent"),)
    assert routed(rules, sender="CEO@shop.example") == "boss"
    assert routed(rules, sender="ceo@shop.example.org") is None


def test_no_rules_or_no_fitting_rule_routes_nothing():
    assert routed((), subject="devolução") is None
    assert routed(subject="Where is my order?") is None


def test_routing_a_message_costs_microseconds():
    rules = (*RULES, *(RouteSettings(f"rule {n}", subject_keywords=(f"palavra{n}", "outra coisa"),
                                     body_keywords=(f"corpo{n}",), queue=f"q{n}") for n in range(10)))
    body = "Olá, não recebi o meu pedido ainda, podem verificar? " * 40  # about 2 kB, with accents
    route(rules, to_addrs=(SUPPORT,), from_addr="ana@customer.example", subject="Pedido", body=body)
    count = 2000
    started = time.perf_counter()
    for _ in range(count):
        route(rules, to_addrs=(SUPPORT,), from_addr="ana@customer.example", subject="Pedido atrasado", body=body)
    per_message = (time.perf_counter() - started) / count
    # Ingest runs over 1,000 messages a second; routing must be a small part of each millisecond.
    assert per_message < 200e-6, f"{per_message * 1e6:.0f} µs per message"


# check-config

ROUTE = """
[[route]]
name = "returns"
subject_keywords = ["devolução", "troca"]
queue = "trocas"
"""


def load_text(tmp_path, text):
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return load(path, env={})


def refused(tmp_path, text, *fragments):
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, text)
    message = str(caught.value)
    assert "config.toml" in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_route_rules_load_in_file_order(tmp_path):
    text = ROUTE + """
[[route]]
name = "marketplace"
from = "Orders@Marketplace-Partner.example"
from_domain = "@Marketplace-Partner.example"
to = "Trocas@Shop.example"
body_keywords = ["nota fiscal"]
queue = "marketplace"
priority = "HIGH"
"""
    settings = load_text(tmp_path, text)
    assert settings.routes == (
        RouteSettings("returns", subject_keywords=("devolução", "troca"), queue="trocas"),
        RouteSettings("marketplace", to="trocas@shop.example", from_addr="orders@marketplace-partner.example",
                      from_domain="marketplace-partner.example", body_keywords=("nota fiscal",),
                      queue="marketplace", priority="high"),
    )


def test_the_example_config_routes_returns_and_the_marketplace():
    # The example's secrets are systemd credentials; tests/test_config.py loads it whole. Here, only its rules.
    rules = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))["route"]
    assert [(r["name"], r.get("queue"), r.get("priority")) for r in rules] == [
        ("returns", "trocas", None), ("marketplace", "marketplace", "high")]


def test_an_unknown_route_key_is_named(tmp_path):
    refused(tmp_path, ROUTE + 'queues = "x"\n', 'unknown key route "returns".queues', "subject_keywords")


def test_a_bad_priority_is_named(tmp_path):
    refused(tmp_path, ROUTE + 'priority = "asap"\n',
            'route "returns".priority must be one of low, normal, high, urgent, not "asap"')


def test_an_empty_keyword_list_is_refused(tmp_path):
    refused(tmp_path, ROUTE.replace('["devolução", "troca"]', "[]"), 'route "returns".subject_keywords must not be empty')
    refused(tmp_path, ROUTE + 'body_keywords = ["ok", " "]\n', 'route "returns".body_keywords must be an array')
    refused(tmp_path, ROUTE + 'body_keywords = "reembolso"\n', 'route "returns".body_keywords must be an array')


def test_a_rule_without_an_action_is_refused(tmp_path):
    refused(tmp_path, ROUTE.replace('queue = "trocas"\n', ""), 'route "returns" needs an action: queue, priority')


def test_a_rule_without_a_match_key_is_refused(tmp_path):
    refused(tmp_path, '[[route]]\nname = "everything"\nqueue = "x"\n',
            'route "everything" needs at least one match key: to, from, from_domain')


def test_route_names_are_required_and_unique(tmp_path):
    refused(tmp_path, '[[route]]\nqueue = "x"\nto = "a@b.example"\n', "route[1].name is required")
    refused(tmp_path, ROUTE + ROUTE, 'route "returns".name is used by more than one [[route]]')


def test_route_addresses_and_domains_are_checked(tmp_path):
    refused(tmp_path, ROUTE + 'to = "trocas"\n', 'route "returns".to must be an e-mail address')
    refused(tmp_path, ROUTE + 'from_domain = "not a domain"\n', 'route "returns".from_domain must be a domain')


def test_check_config_refuses_a_bad_rule_and_names_it(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path}/x.db"\n' + ROUTE + 'priority = "asap"\n',
                    encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "mailticket", "-c", str(path), "check-config"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert 'route "returns".priority' in result.stderr and "Traceback" not in result.stderr


# ingest, on SQLite and PostgreSQL

PARTNER_SLA = SlaSettings("marketplace", first_response=3600.0, queue="marketplace", priority="high")
ROUTED = dataclasses.replace(SETTINGS, routes=RULES, sla=(PARTNER_SLA,))


def put(store, raw, at=T0, settings=ROUTED):
    with store.transaction() as session:
        return ingest(session, raw, settings=settings, received_at=at, now=at, mailbox="support")


def history(store, ticket_id):
    with store.reading() as session:
        return [(e.kind, e.detail) for e in session.scalars(
            select(Event).where(Event.ticket_id == ticket_id).order_by(Event.id))]


def test_a_new_ticket_takes_the_queue_of_the_first_fitting_rule_and_its_history_names_it(store):
    outcome = put(store, make_mail(subject="DEVOLUCAO do pedido 1234"))
    assert outcome.result == CREATED
    with store.reading() as session:
        ticket = session.get(Ticket, outcome.ticket_id)
        assert (ticket.queue, ticket.priority, ticket.routed_by) == ("trocas", "normal", "returns")
        assert ticket.sla_name is None
    events = history(store, outcome.ticket_id)
    assert [kind for kind, _ in events] == ["created", "routed"]
    assert "returns" in events[1][1] and "trocas" in events[1][1]


def test_a_routed_ticket_gets_the_sla_of_its_routed_queue_and_priority(store):
    outcome = put(store, make_mail(sender="orders@eu.marketplace-partner.example", subject="Pedido 77"))
    with store.reading() as session:
        ticket = session.get(Ticket, outcome.ticket_id)
        assert (ticket.queue, ticket.priority, ticket.routed_by) == ("marketplace", "high", "marketplace")
        assert ticket.sla_name == "marketplace"
        assert ticket.first_response_due_at.replace(tzinfo=T0.tzinfo) == T0 + timedelta(hours=1)
    assert [kind for kind, _ in history(store, outcome.ticket_id)] == ["created", "routed", "sla"]


def test_a_ticket_no_rule_fits_stays_in_the_mailbox_queue_unrouted(store):
    outcome = put(store, make_mail(subject="Where is my order?"))
    with store.reading() as session:
        ticket = session.get(Ticket, outcome.ticket_id)
        assert (ticket.queue, ticket.priority, ticket.routed_by) == ("default", "normal", None)
    assert "routed" not in [kind for kind, _ in history(store, outcome.ticket_id)]


def test_only_new_tickets_are_routed_not_the_mail_that_follows(store):
    first = put(store, make_mail(subject="Where is my order?"))
    reply = make_mail(subject="Re: Devolução", body="Quero a devolução.", message_id="m2@customer.example",
                      in_reply_to="m1@customer.example")
    assert put(store, reply, T0 + timedelta(minutes=5)).result == APPENDED
    with store.reading() as session:
        ticket = session.get(Ticket, first.ticket_id)
        assert (ticket.queue, ticket.routed_by) == ("default", None)
