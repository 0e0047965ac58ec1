"""Search: full-text, accent-insensitive, newest first, on SQLite and PostgreSQL, everywhere it shows."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, text, update

from mailticket.db.migrate import upgrade
from mailticket.db.models import Message, Operator
from mailticket.db.store import Store
from mailticket.service import actions
from mailticket.service.search import fts5_query, snippet, tsquery
from mailticket.service.tickets import search_tickets as search
from tests.factories import T0, make_operator, make_ticket
from tests.test_api import Caller, make_app, token_for
from tests.test_cli import config_file, run
from tests.test_upgrade import insert, stamp
from tests.test_web import signed_in

HTML_ONLY = (
    b"From: Bea Lima <bea@cliente.example>\r\nTo: support@shop.example\r\nSubject: Pedido\r\n"
    b"Message-ID: <html-only@cliente.example>\r\nDate: Mon, 02 Nov 2026 10:00:00 +0000\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    + "<html><body><p>O meu <b>guarda-chuva</b> chegou partido.</p></body></html>\r\n".encode()
)
HOSTILE = ('"', '""', "*", "AND", "OR", "NOT", "-", ":", "a:b", "subject:x", "NEAR(a b)", "(", ")", "^x", "x*",
           "'", "''", "\\", "!", "&", "|", "<->", "a & | b", "'':*", "%", "_", "{", "}", "+-", "\x00", "   ",
           "🙂", "💥 AND \"", "a\"b", "x" * 200, " ".join(["w"] * 100), "ção", "#", "#0", "9" * 30, "@", "a@", "@@")


def ids(found: list[dict]) -> list[int]:
    return [t["id"] for t in found]


def find(store: Store, q: str, **kw) -> list[int]:
    with store.reading() as session:
        return ids(search(session, q, **kw))


def ingest_raw(store: Store, raw: bytes, at=T0) -> int:
    from mailticket.service.ingest import ingest
    from tests.factories import SETTINGS

    with store.transaction() as session:
        return ingest(session, raw, settings=SETTINGS, received_at=at, now=at, mailbox="support").ticket_id


def test_it_finds_a_word_of_an_html_only_mail(store):
    ticket = ingest_raw(store, HTML_ONLY)
    assert find(store, "partido") == [ticket]
    assert find(store, "guarda-chuva") == [ticket]
    with store.reading() as session:
        [found] = search(session, "partido")
    assert "chegou partido" in found["snippet"]


def test_a_portuguese_word_typed_without_accents_finds_the_accented_one(store):
    ticket = make_ticket(store, subject="Devolução", body="Quero a devolução do valor, não gostei do calçado.")
    make_ticket(store, message_id="other@x.example", subject="Outro", body="Nada a ver.")
    assert find(store, "devolucao") == [ticket]
    assert find(store, "DEVOLUÇÃO") == [ticket]
    assert find(store, "calcado nao") == [ticket]
    with store.reading() as session:
        assert "devolução" in search(session, "devolucao")[0]["snippet"]


def test_it_finds_by_customer_address_name_and_ticket_number(store):
    first = make_ticket(store, sender="Joana Prado <joana@cliente.example>", message_id="a@x.example")
    second = make_ticket(store, sender="rui@outro.example", message_id="b@x.example", subject="Troca")
    assert find(store, "joana@cliente.example") == [first]
    assert find(store, "JOANA@cliente.example") == [first]
    assert find(store, "Prado") == [first]
    assert find(store, str(second)) == [second] and find(store, f"#{first}") == [first]
    # A number is the ticket with that id, exactly, not every id containing its digits.
    assert find(store, f"{second}0") == []


def test_notes_and_replies_are_searched_too(store):
    ticket = make_ticket(store)
    operator_id = make_operator(store, "ana")
    with store.transaction() as session:
        operator = session.get(Operator, operator_id)
        actions.add_note(session, ticket, operator, "Cliente ligou: quer reembolso por transferência.")
    assert find(store, "transferencia") == [ticket]


def test_results_are_newest_first_and_can_be_filtered_by_status(store):
    old = make_ticket(store, message_id="old@x.example", body="Caixa amassada.", at=T0)
    new = make_ticket(store, message_id="new@x.example", sender="b@x.example", body="Caixa molhada.",
                      at=T0 + timedelta(days=1))
    assert find(store, "caixa") == [new, old]
    assert find(store, "caixa", limit=1) == [new]
    assert find(store, "caixa", status="resolved") == [] and find(store, "caixa", status="open") == [new, old]


def test_moved_and_deleted_messages_follow_the_index(store):
    ticket = make_ticket(store, message_id="m@x.example", body="Etiqueta rasgada.")
    other = make_ticket(store, message_id="n@x.example", sender="b@x.example", body="Nada.")
    with store.transaction() as session:
        # A merge moves the messages: the search then finds the surviving ticket.
        session.execute(update(Message).where(Message.ticket_id == ticket).values(ticket_id=other))
    assert find(store, "rasgada") == [other]
    with store.transaction() as session:
        session.execute(update(Message).where(Message.ticket_id == other).values(text="Etiqueta nova."))
    assert find(store, "rasgada") == [] and find(store, "nova") == [other]
    with store.transaction() as session:
        session.execute(delete(Message).where(Message.ticket_id == other))
    assert find(store, "etiqueta") == []


@pytest.mark.parametrize("q", HOSTILE)
def test_hostile_query_strings_give_no_error(store, q):
    make_ticket(store)
    with store.reading() as session:
        search(session, q)


def test_query_syntax_is_always_quoted():
    assert fts5_query('a" OR b* NEAR(c') == '"a" "OR" "b" "NEAR c"'
    assert tsquery("a'b & c:*") == "('a' <-> 'b') & ('c')"
    assert fts5_query("*:-") is None and tsquery("!&|") is None


def test_a_snippet_is_cut_around_the_first_hit():
    body = "x " * 200 + "a devolução chegou" + " y" * 200
    cut = snippet(body, ["devolucao"])
    assert cut.startswith("…") and cut.endswith("…") and "a devolução chegou" in cut


def test_the_api_and_the_cli_search_full_text(store, tmp_path):
    ticket = make_ticket(store, body="O reembolso não caiu na conta.")
    make_ticket(store, message_id="o@x.example", sender="b@x.example", body="Outra coisa.")
    make_operator(store, "ana")
    caller = Caller(TestClient(make_app(store)), token_for(store, "ana"))
    answer = caller.get("/tickets", params={"q": "reembolso nao"})
    assert answer.status_code == 200 and [t["id"] for t in answer.json()] == [ticket]
    for q in HOSTILE[:20]:
        assert caller.get("/tickets", params={"q": q}).status_code == 200, q
    listed = run("-c", config_file(tmp_path, store.url), "ticket", "list", "--search", "reembolso", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [t["id"] for t in json.loads(listed.stdout)] == [ticket]
    table = run("-c", config_file(tmp_path, store.url), "ticket", "list", "--search", '"AND*')
    assert table.returncode == 0 and "Traceback" not in table.stderr


def test_the_search_page_shows_the_results(app, store):  # noqa: F811 - `app` is the fixture imported above
    ticket = ingest_raw(store, HTML_ONLY)
    browser = signed_in(app, store, "ana")
    assert 'action="/search"' in browser.get("/").text
    page = browser.get("/search", params={"q": "guarda chuva"})
    assert page.status_code == 200 and f'id="search-row-{ticket}"' in page.text and "chegou partido" in page.text
    empty = browser.get("/search", params={"q": 'nada" AND <script>'})
    assert empty.status_code == 200 and 'id="search-empty"' in empty.text and "<script>" not in empty.text


def test_the_migration_indexes_the_messages_already_there(empty_url):  # noqa: F811 - a fixture
    store = Store(empty_url)
    try:
        upgrade(store.engine, "0005")
        with store.engine.begin() as conn:  # plain SQL: today's ingest expects today's tables
            customer = insert(conn, "customers", dict(address="joao@cliente.example", name="", notes="",
                                                      created_at=stamp(store, T0)))
            ticket = insert(conn, "tickets", dict(
                subject="Fatura", subject_key="fatura", status="open", queue="default", priority="normal",
                mailbox="support", customer_id=customer, created_at=stamp(store, T0), updated_at=stamp(store, T0),
                last_message_at=stamp(store, T0), waiting_since=stamp(store, T0), handle_seconds=0.0))
            insert(conn, "messages", dict(
                ticket_id=ticket, direction="in", message_id="old@cliente.example", in_reply_to="", references="",
                from_addr="joao@cliente.example", from_name="", to_addrs="support@shop.example", subject="Fatura",
                received_at=stamp(store, T0), text="Mensagem antiga sobre a fatura.", matched_by="new",
                mailbox="support", defects=""))
        store.migrate()
        assert find(store, "fatura") != []
    finally:
        store.dispose()


def test_postgresql_answers_from_the_index(pg_database):
    # PostgreSQL only: the GIN index is its own (SQLite searches its FTS5 table).
    store = Store(pg_database)
    make_ticket(store, body="Um pedido qualquer.")
    with store.reading() as session:
        session.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(session.execute(text(
            "EXPLAIN SELECT id FROM messages WHERE mailticket_search_document(subject, text, from_addr, from_name) "
            "@@ to_tsquery('simple'::regconfig, mailticket_search_fold(:q))"), {"q": "'pedido'"}).scalars())
    assert "ix_messages_search" in plan
