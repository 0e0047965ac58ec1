"""Upgrades: a database made at the first migration and filled, upgraded to head, keeps every row and value."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect, select, text

from mailticket.config import AutoreplySettings
from mailticket.db.migrate import current, head, upgrade
from mailticket.db.models import Attachment, Message, Outbox, Quarantine, Ticket
from mailticket.db.store import Store
from mailticket.service.ingest import ingest
from tests.factories import SETTINGS
from tests.mails import make_mail

FIRST = "0001"
T0 = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=timezone.utc)
EVERY_BYTE = bytes(range(256))
# Raw mail as stored: 8-bit bytes that are not UTF-8 at all, and a NUL.
RAW = b"From: Jo\xe3o <joao@cliente.example>\r\nSubject: =?utf-8?q?Troca_de_tamanho?=\r\n\r\nOl\xe1,\x00 tamanho 42\r\n"
# Columns added to the tables of the first migration since then, and the value old rows must get. A migration
# that adds a column to one of these tables must say here what existing rows hold afterwards.
NEW_COLUMNS = {
    "tickets": {
        "resolution_seconds": None, "reply_count": 0, "reopen_count": 0, "first_responder_id": None,
        "sla_name": None, "first_response_due_at": None, "resolution_due_at": None, "sla_paused_since": None,
        "sla_paused_seconds": 0, "first_response_breached": None, "resolution_breached": None,
        "escalated_at": None, "sla_check_at": None, "merged_into_id": None, "routed_by": None,
        "survey_sent_at": None, "automatic": False,
    },
    "messages": {"operator_id": None, "reply_to": None},
}
FIRST_TABLES = ("customers", "tickets", "messages", "attachments", "participants", "quarantine", "events",
                "mailbox_state")
KEYS = {"participants": ("ticket_id", "address")}


def stamp(store: Store, at: datetime | None):
    """A time as the app stores it: naive UTC text on SQLite (SQLAlchemy's format), timestamptz on PostgreSQL."""
    if at is None or store.dialect == "postgresql":
        return at
    return at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def insert(conn, table: str, row: dict, *, returning: bool = True) -> int | None:
    columns = ", ".join(f'"{c}"' for c in row)
    values = ", ".join(f":{c}" for c in row)
    sql = f'INSERT INTO "{table}" ({columns}) VALUES ({values})' + (" RETURNING id" if returning else "")
    result = conn.execute(text(sql), row)
    return result.scalar_one() if returning else None


def fill(store: Store) -> dict[str, list[dict]]:
    """Rows in every table of the first migration, through plain SQL; returns what was written, by table."""
    s = lambda at: stamp(store, at)  # noqa: E731 - a short alias keeps the rows below readable
    written: dict[str, list[dict]] = {table: [] for table in FIRST_TABLES}

    def put(conn, table: str, row: dict) -> int | None:
        new_id = insert(conn, table, row, returning=table not in KEYS)
        written[table].append(row if new_id is None else {"id": new_id, **row})
        return new_id

    with store.engine.begin() as conn:
        joao = put(conn, "customers", dict(address="joao@cliente.example", name="João Ávila", notes="VIP ✓",
                                           created_at=s(T0)))
        ana = put(conn, "customers", dict(address="ana@customer.example", name="", notes="", created_at=s(T0)))
        first = put(conn, "tickets", dict(
            subject="Troca de tamanho", subject_key="troca de tamanho", status="resolved", queue="trocas",
            priority="high", mailbox="support", customer_id=joao, follows_ticket_id=None, created_at=s(T0),
            updated_at=s(T0 + timedelta(hours=2)), last_message_at=s(T0 + timedelta(hours=1)), waiting_since=None,
            first_response_at=s(T0 + timedelta(minutes=42)), first_response_seconds=2520.5, handle_seconds=300.25,
            resolved_at=s(T0 + timedelta(hours=2))))
        second = put(conn, "tickets", dict(
            subject="Where is my order?", subject_key="where is my order?", status="open", queue="default",
            priority="normal", mailbox=None, customer_id=ana, follows_ticket_id=first, created_at=s(T0),
            updated_at=s(T0), last_message_at=s(T0), waiting_since=s(T0), first_response_at=None,
            first_response_seconds=None, handle_seconds=0.0, resolved_at=None))
        inbound = put(conn, "messages", dict(
            ticket_id=first, direction="in", message_id="troca-1@cliente.example", in_reply_to="", references="",
            from_addr="joao@cliente.example", from_name="João", to_addrs="support@shop.example",
            subject="Troca de tamanho", date=s(T0 - timedelta(minutes=3)), received_at=s(T0),
            text="Olá, quero trocar o tamanho 42 pelo 43. Obrigado! 👟", html="<p>Olá</p>", matched_by="new",
            loop=None, mailbox="support", defects="", raw=RAW))
        put(conn, "messages", dict(
            ticket_id=first, direction="out", message_id="reply-1@shop.example", in_reply_to="troca-1@cliente.example",
            references="troca-1@cliente.example", from_addr="support@shop.example", from_name="Support",
            to_addrs="joao@cliente.example", subject="Re: Troca de tamanho [#1]", date=s(T0 + timedelta(minutes=42)),
            received_at=s(T0 + timedelta(minutes=42)), text="Claro!", html=None, matched_by=None, loop=None,
            mailbox=None, defects="", raw=b"Subject: Re\r\n\r\nClaro!\r\n"))
        put(conn, "messages", dict(
            ticket_id=second, direction="in", message_id="order-1@customer.example", in_reply_to="", references="",
            from_addr="ana@customer.example", from_name="", to_addrs="support@shop.example",
            subject="Where is my order?", date=None, received_at=s(T0), text="", html=None, matched_by="new",
            loop="auto-reply", mailbox="support", defects="missing Date header", raw=None))
        put(conn, "attachments", dict(message_id=inbound, filename="nota fiscal.pdf", content_type="application/pdf",
                                      size=len(EVERY_BYTE), content_id=None, inline=False, data=EVERY_BYTE))
        put(conn, "attachments", dict(message_id=inbound, filename="foto.png", content_type="image/png", size=3,
                                      content_id="img1@cliente.example", inline=True, data=b"\x89PN"))
        for ticket, address in ((first, "joao@cliente.example"), (first, "support@shop.example"),
                                (second, "ana@customer.example")):
            put(conn, "participants", dict(ticket_id=ticket, address=address))
        put(conn, "quarantine", dict(sha256="ab" * 32, mailbox="support", folder="INBOX", uid=4_294_967_295,
                                     reason="no header could be read", size=len(RAW) + 1,
                                     received_at=s(T0), created_at=s(T0), raw=RAW + b"\xff"))
        for kind, actor, detail in (("created", None, "from joao@cliente.example"), ("claimed", "olga", "until 10:00"),
                                    ("resolved", "olga", "")):
            put(conn, "events", dict(ticket_id=first, at=s(T0), kind=kind, actor=actor, detail=detail))
        put(conn, "mailbox_state", dict(mailbox="support", folder="INBOX", uidvalidity=4_294_967_295,
                                        last_uid=9_000_000_000, updated_at=s(T0)))
    return written


def read(store: Store, table: str, columns) -> list[dict]:
    keys = KEYS.get(table, ("id",))
    listed = ", ".join(f'"{c}"' for c in columns)
    order = ", ".join(f'"{k}"' for k in keys)
    with store.engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(text(f'SELECT {listed} FROM "{table}" ORDER BY {order}'))]


def columns_by_table(store: Store) -> dict[str, set[str]]:
    inspector = inspect(store.engine)
    return {table: {c["name"] for c in inspector.get_columns(table)} for table in inspector.get_table_names()}


@pytest.fixture
def filled(empty_url):
    """A database made at the first migration and filled: (store, written, rows as read, columns by table)."""
    store = Store(empty_url)
    upgrade(store.engine, FIRST)
    assert current(store.engine) == FIRST
    written = fill(store)
    first_columns = columns_by_table(store)
    before = {table: read(store, table, first_columns[table]) for table in FIRST_TABLES}
    yield store, written, before, first_columns
    store.dispose()


def to_head(store: Store) -> None:
    """What `mailticket migrate` does, on the store's own engine (on SQLite: with foreign keys enforced)."""
    store.migrate()
    assert current(store.engine) == head()


def test_every_row_and_value_of_the_first_schema_is_intact_after_upgrading_to_head(filled):
    store, written, before, first_columns = filled
    to_head(store)
    for table in FIRST_TABLES:
        after = read(store, table, first_columns[table])
        assert len(after) == len(written[table]), table
        assert after == before[table], f"{table} changed in the upgrade"
        for row, wrote in zip(after, written[table]):
            for column, value in wrote.items():
                if isinstance(value, str) and isinstance(row[column], datetime):
                    continue  # PostgreSQL hands times back as datetimes; the ORM check below compares them
                assert row[column] == value, (table, column)


def test_old_rows_get_the_defaults_of_the_columns_added_since(filled):
    store, _written, _before, first_columns = filled
    to_head(store)
    now = columns_by_table(store)
    added = {table: now[table] - first_columns[table] for table in FIRST_TABLES if now[table] - first_columns[table]}
    assert added == {table: set(values) for table, values in NEW_COLUMNS.items()}, \
        "a migration added columns to old tables: say in NEW_COLUMNS what old rows hold"
    for table, defaults in NEW_COLUMNS.items():
        for row in read(store, table, defaults):
            assert row == defaults, table


def test_the_app_reads_the_old_rows_and_goes_on_threading_into_them(filled):
    store, written, _before, _columns = filled
    to_head(store)
    first, second = (row["id"] for row in written["tickets"])
    with store.reading() as session:
        ticket = session.get(Ticket, first)
        assert (ticket.customer.name, ticket.status, ticket.queue) == ("João Ávila", "resolved", "trocas")
        assert ticket.created_at == T0 and ticket.first_response_at == T0 + timedelta(minutes=42)
        assert ticket.first_response_seconds == 2520.5 and ticket.handle_seconds == 300.25
        assert (ticket.reply_count, ticket.reopen_count, ticket.sla_paused_seconds) == (0, 0, 0.0)
        assert session.get(Ticket, second).follows_ticket_id == first
        message = session.scalar(select(Message).where(Message.message_id == "troca-1@cliente.example"))
        assert message.raw == RAW and message.html == "<p>Olá</p>" and message.text.endswith("👟")
        assert [(a.filename, a.data, a.inline) for a in message.attachments] == [
            ("nota fiscal.pdf", EVERY_BYTE, False), ("foto.png", b"\x89PN", True)]
        assert session.scalar(select(Quarantine.raw)) == RAW + b"\xff"
        assert session.scalar(select(Attachment.data).where(Attachment.content_id.is_not(None))) == b"\x89PN"
    settings = replace(SETTINGS, autoreply=AutoreplySettings(enabled=False))
    later = T0 + timedelta(hours=3)
    with store.transaction() as session:
        answer = make_mail(message_id="troca-2@cliente.example", sender="joao@cliente.example",
                           subject="Re: Troca de tamanho", in_reply_to="troca-1@cliente.example",
                           references=["troca-1@cliente.example"])
        threaded = ingest(session, answer, settings=settings, received_at=later, now=later, mailbox="support")
        fresh = ingest(session, make_mail(message_id="new-1@customer.example", sender="bea@customer.example",
                                          subject="Refund"), settings=settings, received_at=later, now=later,
                       mailbox="support")
    # The reply joins the old ticket (the unique Message-ID index still finds it); new ids follow the old ones.
    assert threaded.ticket_id == first
    assert fresh.ticket_id > second


def test_outbox_recipients_become_lists_and_old_tickets_get_their_reply_counts(empty_url):
    store = Store(empty_url)
    upgrade(store.engine, FIRST)
    written = fill(store)
    upgrade(store.engine, "0007")  # outbox rows as 0002 to 0007 wrote them: recipients in one string
    strings = ("ana@customer.example", "ana@customer.example, boss@shop.example;x@y.example")
    with store.engine.begin() as conn:
        for message, recipients in zip(written["messages"], strings):
            insert(conn, "outbox", dict(message_id=message["id"], ticket_id=message["ticket_id"], kind="reply",
                                        status="sent", recipients=recipients, attempts=1,
                                        next_attempt_at=stamp(store, T0), last_error="", created_at=stamp(store, T0)))
    to_head(store)
    with store.reading() as session:
        lists = session.scalars(select(Outbox.recipients).order_by(Outbox.id)).all()
        counts = dict(session.execute(select(Ticket.id, Ticket.reply_count)).all())
    assert lists == [["ana@customer.example"], ["ana@customer.example", "boss@shop.example", "x@y.example"]]
    # Reply counts were never written before 0009: they are counted from the replies delivered.
    delivered = [m["ticket_id"] for m in written["messages"][:2]]
    assert counts == {ticket: delivered.count(ticket) for ticket in counts}
    store.dispose()
