"""Test data made through the real use cases: tickets from mail, operators with passwords."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

from mailticket.config import AutoreplySettings, ClaimSettings, MailboxSettings, Settings, WebSettings
from mailticket.db.store import Store
from mailticket.service.ingest import ingest
from mailticket.service.operators import add_operator
from tests.mails import SUPPORT, make_mail

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=timezone.utc)
PASSWORD = "correct horse battery"
# Acknowledgements off: tests of other things count outbound mail; tests/test_acks.py turns them on.
SETTINGS = Settings(
    mailboxes=(MailboxSettings(name="support", host="localhost", username="u", password="p", address=SUPPORT),),
    autoreply=AutoreplySettings(enabled=False),
)
# The web tests' settings. Heartbeat 0: the page's script renews nothing, so tests decide when claims change.
WEB_SETTINGS = dataclasses.replace(
    SETTINGS, web=WebSettings(secret_key="test-secret-key-for-the-web-tests"),
    claims=ClaimSettings(ttl=900, heartbeat=0),
)
# The web tests' display clock: waiting times are counted up to here.
NOW = T0 + timedelta(hours=3)


def make_ticket(store: Store, *, settings: Settings = SETTINGS, at: datetime = T0, **mail) -> int:
    mail.setdefault("message_id", f"{id(mail)}-{at.timestamp()}@customer.example")
    with store.transaction() as session:
        return ingest(session, make_mail(**mail), settings=settings, received_at=at, now=at, mailbox="support").ticket_id


def make_operator(store: Store, username: str, *, admin: bool = False, name: str = "") -> int:
    with store.transaction() as session:
        return add_operator(session, username, PASSWORD, name=name or username.title(), admin=admin, now=T0).id
