"""The live pages' server side over real HTTP: the change stream across two app instances on one database (SQLite
and PostgreSQL), its resumption, presence, drafts, holder-only changes and a reply held back by a newer message."""

from __future__ import annotations

import dataclasses
import json
import queue
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select

from mailticket.clock import utcnow
from mailticket.config import ClaimSettings, WebSettings
from mailticket.db.models import Event, Operator, Outbox, Presence, ReplyDraft, Ticket
from mailticket.db.store import Store
from mailticket.service import claims as claim_service
from mailticket.service import history, operators, presence
from mailticket.service.ingest import ingest
from mailticket.web import feed as feed_module
from mailticket.web.app import create_app
from tests.browser import running_app
from tests.conftest import _empty_pg
from tests.factories import PASSWORD, SETTINGS, make_operator, make_ticket
from tests.mails import make_mail
from tests.test_web import Browser, reply_text, signed_in
from tests.test_web import claim_token as claim_token_of

LIVE_SETTINGS = dataclasses.replace(SETTINGS, web=WebSettings(secret_key="live-test-secret-key"),
                                    claims=ClaimSettings(ttl=900.0, heartbeat=0.0))
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
# A change made anywhere reaches a stream within the feed's poll interval; this bound is only hit by a bug.
PATIENCE = 5.0


# The streams of the running test: closed before its servers stop, which would otherwise wait for them.
_streams: list[Stream] = []


@contextmanager
def served(store: Store) -> Iterator[str]:
    with running_app(LIVE_SETTINGS, store) as base_url:
        try:
            yield base_url
        finally:
            while _streams:
                _streams[-1].close()


def logged_in(base_url: str, username: str) -> httpx.Client:
    client = httpx.Client(base_url=base_url, follow_redirects=False)
    token = CSRF_FIELD.search(client.get("/login").text).group(1)
    assert client.post("/login", data={"username": username, "password": PASSWORD,
                                       "csrf_token": token}).status_code == 303
    client.headers["X-CSRF-Token"] = CSRF_FIELD.search(client.get("/").text).group(1)
    return client


def newest_event(store: Store) -> int:
    with store.reading() as session:
        return history.newest_id(session)


class Stream:
    """One open /live stream, read by a thread of its own into a queue of (event, id, data); like a page, it starts
    from the newest event when it is opened unless told otherwise. A plain socket, so that closing it (the page
    goes away) ends the connection at once, whichever thread is reading it."""

    def __init__(self, client: httpx.Client, path: str, headers: dict[str, str] | None = None,
                 store: Store | None = None) -> None:
        if store is not None:
            path += ("&" if "?" in path else "?") + f"after={newest_event(store)}"
        self.events: queue.Queue = queue.Queue()
        _streams.append(self)
        url = httpx.URL(str(client.base_url))
        self._socket = socket.create_connection((url.host, url.port), timeout=PATIENCE)
        cookies = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
        lines = [f"GET {path} HTTP/1.1", f"Host: {url.host}:{url.port}", "Accept: text/event-stream",
                 f"Cookie: {cookies}", *(f"{k}: {v}" for k, v in (headers or {}).items()), "", ""]
        self._socket.sendall("\r\n".join(lines).encode())
        self._file = self._socket.makefile("rb")
        self.status = int(self._file.readline().split()[1])
        while self._file.readline() not in (b"\r\n", b""):
            pass  # the response's headers
        self._socket.settimeout(None)
        threading.Thread(target=self._read, daemon=True).start()

    def _body_lines(self) -> Iterator[str]:
        """The chunked body's lines."""
        pending = b""
        while True:
            size = int(self._file.readline().strip() or b"0", 16)
            if size == 0:
                return
            pending += self._file.read(size)
            self._file.readline()
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line.rstrip(b"\r").decode()

    def _read(self) -> None:
        kind, event_id, data = "message", None, ""
        try:
            for line in self._body_lines():
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("id:"):
                    event_id = int(line[3:].strip())
                elif line.startswith("data:"):
                    data = line[5:].strip()
                elif line == "" and data:
                    # A change event carries one poll's changes: queued one by one, each with the event's id.
                    for item in json.loads(data)["changes"] if kind == "change" else [json.loads(data)]:
                        self.events.put((kind, event_id, item))
                    kind, event_id, data = "message", None, ""
        except (OSError, ValueError):
            pass
        finally:
            self.events.put(("closed", None, None))

    def next(self, kind: str, matching=lambda data: True, timeout: float = PATIENCE) -> tuple[int | None, dict]:
        """The next event of this kind whose data matches; fails after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no {kind} event within {timeout} s"
            try:
                got, event_id, data = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if got == kind and matching(data):
                return event_id, data

    def close(self) -> None:
        """The page goes away: its connection closes (once)."""
        if self in _streams:
            _streams.remove(self)
        try:
            self._socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # the server closed it first (a logout)
        self._socket.close()

    def changes_now(self) -> list[tuple[int | None, dict]]:
        """The change events received so far."""
        found = []
        while not self.events.empty():
            kind, event_id, data = self.events.get_nowait()
            if kind == "change":
                found.append((event_id, data))
        return found


def claim(store: Store, ticket_id: int, username: str):
    with store.transaction() as session:
        holder = session.scalar(select(Operator).where(Operator.username == username))
        return claim_service.claim(session, ticket_id, holder, 900)


@contextmanager
def two_instances(store: Store) -> Iterator[tuple[str, Store]]:
    """Instance A serving on loopback, and instance B's own store (its own pool) on the same database."""
    other = Store(store.url)
    try:
        with served(store) as base_url:
            yield base_url, other
    finally:
        other.dispose()


def test_a_claim_made_through_another_instance_reaches_an_open_ticket_stream(store):
    ticket = make_ticket(store)
    make_operator(store, "ana", name="Ana Souza")
    make_operator(store, "bruno")
    with two_instances(store) as (base_url, other):
        bruno = logged_in(base_url, "bruno")
        stream = Stream(bruno, f"/live?ticket={ticket}", store=store)
        assert stream.status == 200
        started = time.monotonic()
        claim(other, ticket, "ana")
        event_id, data = stream.next("change", lambda d: d["kind"] == "claimed")
        assert time.monotonic() - started < 2.0
        assert data == {"ticket": ticket, "kind": "claimed"}
        assert event_id == newest_event(other)


def test_a_ticket_stream_carries_only_its_tickets_changes_and_the_queue_stream_all(store):
    first, second = make_ticket(store), make_ticket(store, message_id="two@customer.example", subject="Refund")
    make_operator(store, "ana")
    with two_instances(store) as (base_url, other):
        client = logged_in(base_url, "ana")
        one = Stream(client, f"/live?ticket={first}", store=store)
        everything = Stream(client, "/live", store=store)
        claim(other, second, "ana")
        claim(other, first, "ana")
        assert everything.next("change", lambda d: d["ticket"] == second)[1]["kind"] == "claimed"
        assert everything.next("change", lambda d: d["ticket"] == first)[1]["kind"] == "claimed"
        # The ticket page's stream got the claim of its ticket and nothing of the other.
        assert one.next("change")[1] == {"ticket": first, "kind": "claimed"}
        assert one.changes_now() == []


def test_a_reconnecting_stream_gets_the_changes_it_missed_from_its_last_event_id(store):
    ticket = make_ticket(store)
    make_operator(store, "ana")
    with two_instances(store) as (base_url, other):
        client = logged_in(base_url, "ana")
        last_seen = newest_event(other)
        claim(other, ticket, "ana")  # while the page was away
        with other.transaction() as session:
            claim_service.release(session, ticket, session.scalar(select(Operator)))
        stream = Stream(client, f"/live?ticket={ticket}", headers={"Last-Event-ID": str(last_seen)})
        kinds = [stream.next("change")[1]["kind"], stream.next("change")[1]["kind"]]
        assert kinds == ["claimed", "released"]


def test_a_stream_too_far_behind_is_told_to_fetch_everything_again(store, monkeypatch):
    ticket = make_ticket(store)
    make_operator(store, "ana")
    monkeypatch.setattr(feed_module, "BATCH", 3)
    with two_instances(store) as (base_url, other):
        client = logged_in(base_url, "ana")
        for _ in range(2):
            claim(other, ticket, "ana")  # claimed, then renewed
            with other.transaction() as session:
                claim_service.release(session, ticket, session.scalar(select(Operator)))
        stream = Stream(client, f"/live?ticket={ticket}&after=0")
        stream.next("reset")


def test_an_event_committed_late_with_a_lower_id_still_reaches_the_stream(pg_database):
    """PostgreSQL hands out ids before commit: the feed reads the last seconds' ids again (feed.RECHECK)."""
    _empty_pg(pg_database)
    store = Store(pg_database)
    try:
        ticket = make_ticket(store)
        make_operator(store, "ana")
        with two_instances(store) as (base_url, other):
            stream = Stream(logged_in(base_url, "ana"), "/live", store=store)
            with other.engine.connect() as slow:
                transaction = slow.begin()
                slow.execute(insert(Event).values(ticket_id=ticket, at=utcnow(), kind="note", actor="slow", detail=""))
                claim(other, ticket, "ana")  # a higher id, committed first
                stream.next("change", lambda d: d["kind"] == "claimed")
                transaction.commit()
            stream.next("change", lambda d: d["kind"] == "note")
    finally:
        store.dispose()


def test_the_stream_needs_a_signed_in_operator(store):
    ticket = make_ticket(store)
    with running_app(LIVE_SETTINGS, store) as base_url:
        answer = httpx.get(f"{base_url}/live?ticket={ticket}", headers={"Accept": "text/event-stream"})
        assert answer.status_code in (303, 401)
        assert "text/event-stream" not in answer.headers.get("content-type", "")


@pytest.mark.parametrize("page", ["ticket", "queue"])
def test_a_logout_ends_an_open_stream_even_while_changes_keep_coming(store, monkeypatch, page):
    ticket = make_ticket(store)
    make_operator(store, "ana")
    monkeypatch.setattr(presence, "REFRESH", timedelta(seconds=0.5))
    with served(store) as base_url:
        client = logged_in(base_url, "ana")
        stream = Stream(client, f"/live?ticket={ticket}" if page == "ticket" else "/live")
        client.post("/logout", data={"csrf_token": client.headers["X-CSRF-Token"]})
        # A busy desk: a change every 0.1 s, more often than the stream's checks come due.
        busy = threading.Event()

        def desk() -> None:
            while not busy.is_set():
                claim(store, ticket, "ana")
                with store.transaction() as session:
                    claim_service.release(session, ticket, session.scalar(select(Operator)))
                time.sleep(0.1)

        worker = threading.Thread(target=desk)
        worker.start()
        try:
            stream.next("ended")
            stream.next("closed")  # fails unless the stream ends by itself
        finally:
            busy.set()
            worker.join()


def test_each_viewer_of_a_ticket_is_told_who_else_has_it_open_and_when_they_leave(store):
    ticket = make_ticket(store)
    make_operator(store, "ana", name="Ana Souza")
    make_operator(store, "bruno", name="Bruno Lima")
    with two_instances(store) as (base_url, other):
        with served(other) as other_url:
            ana = Stream(logged_in(base_url, "ana"), f"/live?ticket={ticket}")
            bruno = Stream(logged_in(other_url, "bruno"), f"/live?ticket={ticket}")
            both = ["Ana Souza", "Bruno Lima"]
            ana.next("viewers", lambda d: [v["name"] for v in d["viewers"]] == both)
            bruno.next("viewers", lambda d: [v["name"] for v in d["viewers"]] == both)
            bruno.close()
            ana.next("viewers", lambda d: [v["name"] for v in d["viewers"]] == ["Ana Souza"])


def test_a_viewer_who_stays_longer_than_the_age_out_is_still_listed(store, monkeypatch):
    ticket = make_ticket(store)
    make_operator(store, "ana", name="Ana Souza")
    make_operator(store, "bruno", name="Bruno Lima")
    monkeypatch.setattr(presence, "REFRESH", timedelta(seconds=0.3))
    monkeypatch.setattr(presence, "AGE_OUT", timedelta(seconds=1))
    with served(store) as base_url:
        ana = Stream(logged_in(base_url, "ana"), f"/live?ticket={ticket}")
        Stream(logged_in(base_url, "bruno"), f"/live?ticket={ticket}")
        ana.next("viewers", lambda d: len(d["viewers"]) == 2)
        time.sleep(3)  # three times the age-out: only the feed's refreshes keep the rows
        with store.reading() as session:
            assert len(presence.viewers(session, utcnow())[ticket]) == 2
        assert all(len(data["viewers"]) == 2 for kind, _, data in list(ana.events.queue) if kind == "viewers")


# The draft, holder-only and held-reply rules through the pages and the API, in-process.

@pytest.fixture
def app(store):
    return create_app(LIVE_SETTINGS, store)


def post(browser: Browser, path: str, **fields):
    return browser.post(path, fields)


def seen_message(page: str) -> str:
    return re.search(r'name="seen_message" value="([^"]*)"', page).group(1)


def test_a_draft_is_kept_per_operator_shown_again_and_cleared_by_the_sent_reply(app, store):
    ticket = make_ticket(store)
    ana, bruno = signed_in(app, store, "ana"), signed_in(app, store, "bruno")
    text = "Olá Ana,\n  seu pedido saiu hoje — código BR123.\n"
    saved = ana.put(f"/tickets/{ticket}/draft", json={"body": text, "cc": "chefe@loja.example"})
    assert saved.status_code == 200
    page = ana.get(f"/tickets/{ticket}").text
    assert reply_text(page) == text and 'value="chefe@loja.example"' in page
    assert 'id="reply-form"' not in bruno.get(f"/tickets/{ticket}").text  # Ana's draft is hers
    assert post(ana, f"/tickets/{ticket}/claim").status_code == 303
    page = ana.get(f"/tickets/{ticket}").text
    sent = post(ana, f"/tickets/{ticket}/reply", body=reply_text(page), claim_token=claim_token_of(page),
                seen_message=seen_message(page))
    assert sent.status_code == 303
    with store.reading() as session:
        assert session.scalar(select(func.count()).select_from(ReplyDraft)) == 0


def test_a_draft_needs_the_csrf_token_and_a_known_ticket_and_an_empty_one_is_removed(app, store):
    ticket = make_ticket(store)
    ana = signed_in(app, store, "ana")
    assert ana.put(f"/tickets/{ticket}/draft", json={"body": "x"}, csrf=False).status_code == 403
    assert ana.put("/tickets/999/draft", json={"body": "x"}).status_code == 404
    assert ana.put(f"/tickets/{ticket}/draft", json={"body": 5}).status_code == 422
    # What the reply form sends: the body, the To it proposes, the Cc.
    typed = {"body": "x", "to": "carla@customer.example", "cc": ""}
    assert ana.put(f"/tickets/{ticket}/draft", json=typed).status_code == 200
    with store.reading() as session:
        assert session.scalar(select(func.count()).select_from(ReplyDraft)) == 1
    ana.put(f"/tickets/{ticket}/draft", json={**typed, "body": "  "})
    with store.reading() as session:
        assert session.scalar(select(func.count()).select_from(ReplyDraft)) == 0


def test_the_release_button_keeps_the_posted_text_as_the_draft(app, store):
    ticket = make_ticket(store)
    ana = signed_in(app, store, "ana")
    post(ana, f"/tickets/{ticket}/claim")
    assert post(ana, f"/tickets/{ticket}/release", body="meio escrito", to="ana@customer.example").status_code == 303
    page = ana.get(f"/tickets/{ticket}").text
    assert "Not claimed" in page and reply_text(page) == "meio escrito"


def test_releasing_with_nothing_typed_keeps_no_draft(app, store):
    ticket = make_ticket(store)
    ana = signed_in(app, store, "ana")
    post(ana, f"/tickets/{ticket}/claim")
    assert post(ana, f"/tickets/{ticket}/release", body="", to="carla@customer.example", cc="").status_code == 303
    page = ana.get(f"/tickets/{ticket}").text
    assert "Not claimed" in page and 'id="reply-form"' not in page and 'id="reclaim-button"' not in page


def test_a_ticket_stream_tells_its_page_the_id_of_its_presence(store):
    ticket = make_ticket(store)
    make_operator(store, "ana")
    with served(store) as base_url:
        stream = Stream(logged_in(base_url, "ana"), f"/live?ticket={ticket}")
        page_id = stream.next("page")[1]["page"]
        with store.reading() as session:
            assert session.get(Presence, page_id).ticket_id == ticket


def test_a_closing_pages_release_leaves_the_claim_to_the_operators_other_open_page(app, store):
    ticket = make_ticket(store)
    ana = signed_in(app, store, "ana")
    post(ana, f"/tickets/{ticket}/claim")
    token = claim_token_of(ana.get(f"/tickets/{ticket}").text)
    with store.transaction() as session:
        ana_id = session.scalar(select(Operator.id))
        for tab in ("tab-1", "tab-2"):
            presence.enter(session, tab, ticket, ana_id, utcnow())
    # Tab 1 closes: tab 2 still shows the ticket, and keeps the claim.
    assert post(ana, f"/tickets/{ticket}/release", claim_token=token, page="tab-1").status_code == 204
    assert 'data-state="mine"' in ana.get(f"/tickets/{ticket}").text
    # Tab 2 closes too (tab 1's row is gone): the claim ends.
    with store.transaction() as session:
        presence.leave(session, "tab-1", utcnow())
    assert post(ana, f"/tickets/{ticket}/release", claim_token=token, page="tab-2").status_code == 303
    assert "Not claimed" in ana.get(f"/tickets/{ticket}").text


def test_a_release_with_another_pages_token_leaves_the_claim_alone(app, store):
    ticket = make_ticket(store)
    ana = signed_in(app, store, "ana")
    post(ana, f"/tickets/{ticket}/claim")
    assert post(ana, f"/tickets/{ticket}/release", claim_token="an-older-tab").status_code == 409
    assert 'data-state="mine"' in ana.get(f"/tickets/{ticket}").text


@pytest.mark.parametrize("field, value", [("status", "pending"), ("priority", "high"), ("queue", "billing")])
def test_only_the_holder_changes_a_claimed_ticket_on_the_page(app, store, field, value):
    ticket = make_ticket(store)
    ana, bruno = signed_in(app, store, "ana", name="Ana Souza"), signed_in(app, store, "bruno")
    post(ana, f"/tickets/{ticket}/claim")
    refused = post(bruno, f"/tickets/{ticket}/{field}", **{field: value})
    assert refused.status_code == 409
    assert re.search(r"Ana Souza is answering this ticket \(until \d\d?:\d\d [AP]M\): only they can change it",
                     refused.text)
    with store.reading() as session:
        assert getattr(session.get(Ticket, ticket), field) != value
    assert post(ana, f"/tickets/{ticket}/{field}", **{field: value}).status_code == 303


def test_a_non_holders_api_status_change_is_409_with_the_holder_until_an_admin_breaks_the_claim(app, store):
    ticket = make_ticket(store)
    ana, boss = signed_in(app, store, "ana", name="Ana Souza"), signed_in(app, store, "boss", admin=True)
    make_operator(store, "bruno")
    with store.transaction() as session:
        token = operators.new_token(session, "bruno")
    post(ana, f"/tickets/{ticket}/claim")
    api = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    refused = api.post(f"/api/v1/tickets/{ticket}/status", json={"status": "resolved"})
    assert refused.status_code == 409
    assert refused.json()["holder"] == "Ana Souza" and refused.json()["expires_at"]
    assert post(boss, f"/tickets/{ticket}/status", status="resolved").status_code == 409  # admins too
    assert post(boss, f"/tickets/{ticket}/break").status_code == 303
    assert api.post(f"/api/v1/tickets/{ticket}/status", json={"status": "resolved"}).json()["status"] == "resolved"
    with store.reading() as session:
        kinds = list(session.scalars(select(Event.kind).where(Event.ticket_id == ticket).order_by(Event.id)))
    assert kinds[-2:] == ["broken", "status"]


def customer_writes_again(store: Store, ticket: int) -> None:
    with store.transaction() as session:
        ingest(session, make_mail(subject=f"Re: Where is my order? [#{ticket}]", message_id="again@customer.example",
                                  body="Still nothing!"), settings=SETTINGS, received_at=utcnow(), now=utcnow(),
               mailbox="support")


def test_a_reply_written_before_the_customers_new_message_is_held_once_on_the_page(app, store):
    ticket = make_ticket(store)
    ana = signed_in(app, store, "ana")
    post(ana, f"/tickets/{ticket}/claim")
    page = ana.get(f"/tickets/{ticket}").text
    customer_writes_again(store, ticket)
    held = post(ana, f"/tickets/{ticket}/reply", body="Saiu hoje.", claim_token=claim_token_of(page),
                seen_message=seen_message(page))
    assert held.status_code == 409
    assert "the customer sent a new message while you were writing" in held.text
    assert reply_text(held.text) == "Saiu hoje." and 'is-fresh' in held.text and "Still nothing!" in held.text
    sent = post(ana, f"/tickets/{ticket}/reply", body="Saiu hoje.", claim_token=claim_token_of(held.text),
                seen_message=seen_message(held.text))
    assert sent.status_code == 303
    with store.reading() as session:
        assert session.scalar(select(func.count()).select_from(Outbox)) == 1


def test_an_api_reply_naming_an_older_message_is_409_unless_confirmed(app, store):
    ticket = make_ticket(store)
    make_operator(store, "ana")
    with store.transaction() as session:
        token = operators.new_token(session, "ana")
    api = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    seen = api.get(f"/api/v1/tickets/{ticket}").json()["messages"][-1]["id"]
    claim_token = api.post(f"/api/v1/tickets/{ticket}/claim").json()["token"]
    customer_writes_again(store, ticket)
    held = api.post(f"/api/v1/tickets/{ticket}/reply",
                    json={"body": "Saiu hoje.", "claim_token": claim_token, "seen_message_id": seen})
    assert held.status_code == 409
    newest = api.get(f"/api/v1/tickets/{ticket}").json()["messages"][-1]["id"]
    assert held.json()["newer_message_ids"] == [newest]
    sent = api.post(f"/api/v1/tickets/{ticket}/reply", json={"body": "Saiu hoje.", "claim_token": claim_token,
                                                             "seen_message_id": seen, "confirm_newer": True})
    assert sent.status_code == 202
