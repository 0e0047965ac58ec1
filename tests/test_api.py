"""The JSON API of SPEC §8 through an in-process client, on real SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from mailticket.config import WebSettings
from mailticket.db.models import Message, Outbox
from mailticket.service import operators
from mailticket.web.app import create_app
from tests.factories import SETTINGS, make_operator, make_ticket

API = "/api/v1"
API_SETTINGS = replace(SETTINGS, web=WebSettings(secret_key="test"))
HUGE_IDS = (2**31, 2**63, 10**30, 0, -1)


def make_app(store) -> FastAPI:
    """The real web app: the API must work behind the HTML app's middleware and error pages."""
    return create_app(API_SETTINGS, store)


def token_for(store, username: str) -> str:
    with store.transaction() as session:
        return operators.new_token(session, username)


class Caller:
    """One operator's view of the API: every call carries their bearer token."""

    def __init__(self, client: TestClient, token: str) -> None:
        self.client, self.headers = client, {"Authorization": f"Bearer {token}"}

    def get(self, path: str, **kw):
        return self.client.get(API + path, headers=self.headers, **kw)

    def post(self, path: str, json=None, **kw):
        return self.client.post(API + path, headers=self.headers, json=json, **kw)

    def post_raw(self, path: str, content: bytes, content_type: str):
        return self.client.post(API + path, headers={**self.headers, "Content-Type": content_type}, content=content)

    def delete(self, path: str, **kw):
        return self.client.delete(API + path, headers=self.headers, **kw)


@pytest.fixture
def api(store):
    """A ticket, an app, and callers for two operators (Ana, Bob) and an admin (Boss)."""
    ticket = make_ticket(store, sender="carla@customer.example", subject="Where is my order?")
    for username, admin in (("ana", False), ("bob", False), ("boss", True)):
        make_operator(store, username, admin=admin)
    client = TestClient(make_app(store))
    callers = {name: Caller(client, token_for(store, name)) for name in ("ana", "bob", "boss")}
    return store, ticket, client, callers


def assert_error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def test_a_missing_token_is_401(api):
    _, ticket, client, _ = api
    for response in (client.get(f"{API}/tickets"),
                     client.get(f"{API}/tickets/{ticket}", headers={"Authorization": "Bearer mt_not-a-token"}),
                     client.post(f"{API}/tickets/{ticket}/claim", headers={"Authorization": "Basic YTpi"}),
                     # Authentication comes first: a stranger learns nothing about ids or bodies.
                     client.post(f"{API}/tickets/{2**63}/reply", json={"cc": 1}),
                     client.post(f"{API}/tickets/{ticket}/notes", content=b"{")):
        assert_error(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"


def test_a_disabled_operators_token_stops_working_at_once(api):
    store, ticket, _, callers = api
    assert callers["ana"].get("/tickets").status_code == 200
    assert callers["ana"].post(f"/tickets/{ticket}/claim").status_code == 200
    with store.transaction() as session:
        operators.disable(session, "ana")
    assert_error(callers["ana"].get("/tickets"), 401)
    # Claim and release look the token up in their own transaction: the same answer there.
    assert_error(callers["ana"].delete(f"/tickets/{ticket}/claim"), 401)
    assert_error(callers["ana"].post(f"/tickets/{ticket + 1}/claim"), 401)
    assert callers["bob"].get("/tickets").status_code == 200


def test_a_claim_is_200_with_a_token_and_the_holder(api):
    _, ticket, _, callers = api
    response = callers["ana"].post(f"/tickets/{ticket}/claim")
    assert response.status_code == 200, response.text
    granted = response.json()
    assert set(granted) == {"token", "holder", "expires_at"}
    assert granted["holder"] == "Ana" and granted["token"]
    assert datetime.fromisoformat(granted["expires_at"]).utcoffset() is not None


def test_a_second_claim_is_409_with_the_holder(api):
    _, ticket, _, callers = api
    granted = callers["ana"].post(f"/tickets/{ticket}/claim").json()
    refused = assert_error(callers["bob"].post(f"/tickets/{ticket}/claim"), 409)
    assert refused["holder"] == "Ana"
    assert datetime.fromisoformat(refused["expires_at"]) == datetime.fromisoformat(granted["expires_at"])
    assert "Ana" in refused["detail"]


def test_renew_after_losing_the_claim_is_409(api):
    _, ticket, _, callers = api
    granted = callers["ana"].post(f"/tickets/{ticket}/claim").json()
    renewed = callers["ana"].post(f"/tickets/{ticket}/claim/renew", {"claim_token": granted["token"]})
    assert renewed.status_code == 200, renewed.text
    assert datetime.fromisoformat(renewed.json()["expires_at"]) >= datetime.fromisoformat(granted["expires_at"])
    assert callers["boss"].delete(f"/tickets/{ticket}/claim").status_code == 204
    lost = assert_error(callers["ana"].post(f"/tickets/{ticket}/claim/renew", {"claim_token": granted["token"]}), 409)
    assert "claim" in lost["detail"]


def test_delete_by_a_non_holder_is_403_and_an_admin_may_break(api):
    _, ticket, _, callers = api
    assert_error(callers["bob"].delete(f"/tickets/{ticket}/claim"), 403)  # nobody holds it
    callers["ana"].post(f"/tickets/{ticket}/claim")
    assert_error(callers["bob"].delete(f"/tickets/{ticket}/claim"), 403)
    assert callers["ana"].get(f"/tickets/{ticket}").json()["claim"]["holder"] == "Ana"
    broken = callers["boss"].delete(f"/tickets/{ticket}/claim")
    assert broken.status_code == 204 and broken.content == b""
    assert callers["ana"].get(f"/tickets/{ticket}").json()["claim"] is None
    callers["bob"].post(f"/tickets/{ticket}/claim")
    assert callers["bob"].delete(f"/tickets/{ticket}/claim").status_code == 204
    assert callers["bob"].get(f"/tickets/{ticket}").json()["claim"] is None


def test_a_reply_with_a_stale_token_is_409(api):
    store, ticket, _, callers = api
    stale = callers["ana"].post(f"/tickets/{ticket}/claim").json()["token"]
    callers["boss"].delete(f"/tickets/{ticket}/claim")
    fresh = callers["ana"].post(f"/tickets/{ticket}/claim").json()["token"]
    assert fresh != stale
    assert_error(callers["ana"].post(f"/tickets/{ticket}/reply", {"body": "Hello", "claim_token": stale}), 409)
    # Bob holds no claim at all: Ana's live token does not let him send either.
    assert_error(callers["bob"].post(f"/tickets/{ticket}/reply", {"body": "Hello", "claim_token": fresh}), 409)
    with store.reading() as session:
        assert session.scalars(select(Outbox)).all() == []
    assert callers["ana"].get(f"/tickets/{ticket}").json()["claim"]["holder"] == "Ana"


def test_a_reply_is_202_and_queued(api):
    store, ticket, _, callers = api
    token = callers["ana"].post(f"/tickets/{ticket}/claim").json()["token"]
    response = callers["ana"].post(f"/tickets/{ticket}/reply",
                                   {"body": "It ships today.", "claim_token": token, "keep_claim": True})
    assert response.status_code == 202, response.text
    first = response.json()["message_id"]
    assert callers["ana"].get(f"/tickets/{ticket}").json()["claim"]["holder"] == "Ana"  # kept
    response = callers["ana"].post(f"/tickets/{ticket}/reply",
                                   {"body": "Tracking: 42.", "claim_token": token, "status": "pending"})
    assert response.status_code == 202, response.text
    shown = callers["ana"].get(f"/tickets/{ticket}").json()
    assert shown["claim"] is None and shown["status"] == "pending"
    outs = [m for m in shown["messages"] if m["direction"] == "out"]
    assert [m["message_id"] for m in outs] == [first, response.json()["message_id"]]
    with store.reading() as session:
        queued = session.scalars(select(Message.message_id).join(Outbox, Outbox.message_id == Message.id)
                                 .where(Outbox.status == "queued")).all()
    assert sorted(queued) == sorted([first, response.json()["message_id"]])


def test_a_note_is_201_and_a_status_change_is_200(api):
    _, ticket, _, callers = api
    created = callers["bob"].post(f"/tickets/{ticket}/notes", {"body": "Customer\x00 called."})
    assert created.status_code == 201, created.text
    assert isinstance(created.json()["id"], int)
    changed = callers["bob"].post(f"/tickets/{ticket}/status", {"status": "resolved"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["status"] == "resolved" and changed.json()["resolved_at"]
    notes = [m for m in callers["bob"].get(f"/tickets/{ticket}").json()["messages"] if m["direction"] == "note"]
    assert [n["text"] for n in notes] == ["Customer called."]


def test_the_list_filters_by_status_and_searches_subject_and_customer(api):
    store, ticket, _, callers = api
    # The search is full-text over the messages too, so this body must not say "order".
    other = make_ticket(store, sender="dave@elsewhere.example", subject="Refund 100% please",
                        body="Please pay it back.", message_id="other@elsewhere.example")
    callers["ana"].post(f"/tickets/{other}/status", {"status": "resolved"})
    ids = lambda **params: [t["id"] for t in callers["ana"].get("/tickets", params=params).json()]  # noqa: E731
    assert ids() == [ticket, other]
    assert ids(status="open") == [ticket] and ids(status="resolved") == [other]
    assert ids(q="ORDER") == [ticket] and ids(q="elsewhere") == [other]
    assert ids(q="100%") == [other] and ids(q="0%p") == [] and ids(q="o_der") == []
    assert ids(limit=1) == [ticket] and ids(after=ticket) == [other] and ids(after=2**40) == []
    callers["bob"].post(f"/tickets/{ticket}/claim")
    listed = callers["ana"].get("/tickets").json()
    assert listed[0]["claim"]["holder"] == "Bob" and listed[1]["claim"] is None
    assert callers["ana"].get("/tickets", params={"q": "a\x00b"}).status_code == 200


def test_unknown_ticket_is_404(api):
    _, _, _, callers = api
    ana = callers["ana"]
    for response in (ana.get("/tickets/999"), ana.post("/tickets/999/claim"),
                     ana.post("/tickets/999/claim/renew", {"claim_token": "abc"}), ana.delete("/tickets/999/claim"),
                     ana.post("/tickets/999/reply", {"body": "Hi", "claim_token": "abc"}),
                     ana.post("/tickets/999/notes", {"body": "Hi"}),
                     ana.post("/tickets/999/status", {"status": "open"})):
        assert_error(response, 404)


def test_a_huge_ticket_id_is_404_not_500(api):
    _, _, _, callers = api
    ana = callers["ana"]
    for huge in HUGE_IDS:
        assert_error(ana.get(f"/tickets/{huge}"), 404)
        assert_error(ana.post(f"/tickets/{huge}/claim"), 404)
        assert_error(ana.post(f"/tickets/{huge}/notes", {"body": "Hi"}), 404)
        assert_error(ana.delete(f"/tickets/{huge}/claim"), 404)
    assert_error(ana.get("/tickets/twelve"), 422)
    for response in (ana.post("/tickets/twelve/claim"), ana.delete("/tickets/1e3/claim"),
                     ana.post("/tickets/%C2%B2/claim")):  # "²" is a digit to str.isdigit, not to int()
        assert "path.ticket_id: input should be a valid integer" in assert_error(response, 422)["detail"]


def test_an_invalid_body_is_422_with_a_reason(api):
    _, ticket, _, callers = api
    ana = callers["ana"]
    token = ana.post(f"/tickets/{ticket}/claim").json()["token"]
    reply = f"/tickets/{ticket}/reply"
    cases = {
        "body.claim_token: field required": ana.post(reply, {"body": "Hi"}),
        "body.body: string should have at least 1 character": ana.post(reply, {"body": "", "claim_token": token}),
        "the reply is empty": ana.post(reply, {"body": "  \n ", "claim_token": token}),
        "body.bcc: extra inputs are not permitted": ana.post(reply, {"body": "Hi", "claim_token": token, "bcc": "x"}),
        "body.status: input should be 'open', 'pending' or 'resolved'":
            ana.post(reply, {"body": "Hi", "claim_token": token, "status": "closed"}),
        "body.claim_token: string should match pattern": ana.post(reply, {"body": "Hi", "claim_token": "a\x00b"}),
        "body.body: input should be a valid string":
            ana.post_raw(reply, b'{"body": "\\ud800", "claim_token": "abc"}', "application/json"),
        "body: invalid JSON": ana.post_raw(reply, b'{"body": ', "application/json"),
        "body: invalid JSON (cannot be decoded)": ana.post_raw(reply, b'{"body": "Hi"}\xff', "application/json"),
        "body: expected a JSON object": ana.post_raw(reply, b"body=Hi", "text/plain"),
        "body: field required": ana.post(f"/tickets/{ticket}/notes"),
        "query.limit: input should be less than or equal to 500": ana.get("/tickets", params={"limit": 501}),
        "query.status: input should be": ana.get("/tickets", params={"status": "closed"}),
    }
    for reason, response in cases.items():
        assert reason in assert_error(response, 422)["detail"], reason
    # Nothing was sent, and the claim is still Ana's to use.
    assert ana.post(reply, {"body": "Hi", "claim_token": token}).status_code == 202


def test_ticket_show_has_the_spec_shape(api):
    _, ticket, _, callers = api
    callers["ana"].post(f"/tickets/{ticket}/claim")
    shown = callers["bob"].get(f"/tickets/{ticket}")
    assert shown.status_code == 200, shown.text
    detail = shown.json()
    spec_keys = {"id", "subject", "status", "queue", "priority", "customer", "created_at", "first_response_at",
                 "first_response_seconds", "handle_seconds", "resolved_at", "claim", "messages"}
    assert spec_keys <= set(detail)
    assert detail["id"] == ticket and detail["status"] == "open" and detail["customer"] == "carla@customer.example"
    assert detail["subject"] == "Where is my order?"
    assert set(detail["claim"]) == {"holder", "expires_at"} and detail["claim"]["holder"] == "Ana"
    assert datetime.fromisoformat(detail["created_at"]).utcoffset() is not None
    assert datetime.fromisoformat(detail["claim"]["expires_at"]).utcoffset() is not None
    [message] = detail["messages"]
    assert {"direction", "message_id", "from", "subject", "date", "text", "attachments", "matched_by",
            "autoreply"} <= set(message)
    assert message["direction"] == "in" and message["from"] == "carla@customer.example"
    assert message["autoreply"] is False and message["attachments"] == []
    assert datetime.fromisoformat(message["date"]).utcoffset() is not None


def test_the_openapi_document_describes_the_api(api):
    _, _, client, _ = api
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    paths, schemas = doc["paths"], doc["components"]["schemas"]
    assert {"get"} <= set(paths[f"{API}/tickets"]) and {"get"} <= set(paths[f"{API}/tickets/{{ticket_id}}"])
    assert {"post", "delete"} <= set(paths[f"{API}/tickets/{{ticket_id}}/claim"])
    for path in ("claim/renew", "reply", "notes", "status"):
        assert "post" in paths[f"{API}/tickets/{{ticket_id}}/{path}"], path
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "an API token printed by `mailticket operator token USER`"}
    reply = paths[f"{API}/tickets/{{ticket_id}}/reply"]["post"]
    assert reply["security"] == [{"bearer": []}]
    assert set(reply["responses"]) == {"202", "401", "404", "409", "422"}
    for status in ("401", "404", "422"):
        assert reply["responses"][status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"}
    # A reply held back by a newer customer message names those messages.
    assert reply["responses"]["409"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ReplyConflictError"}
    status_409 = paths[f"{API}/tickets/{{ticket_id}}/status"]["post"]["responses"]["409"]
    assert status_409["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ClaimConflictError"}
    claim_409 = paths[f"{API}/tickets/{{ticket_id}}/claim"]["post"]["responses"]["409"]
    assert claim_409["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ClaimConflictError"}
    assert "403" in paths[f"{API}/tickets/{{ticket_id}}/claim"]["delete"]["responses"]
    request = schemas["ReplyRequest"]
    assert request["additionalProperties"] is False and set(request["required"]) == {"body", "claim_token"}
    assert request["properties"]["body"]["maxLength"] == 100_000
    assert request["properties"]["status"]["anyOf"][0]["enum"] == ["open", "pending", "resolved"]
    assert {"claim", "messages"} <= set(schemas["TicketDetail"]["properties"])
    assert "from" in schemas["MessageOut"]["properties"]
    assert schemas["Error"]["properties"] == {"detail": {"type": "string", "title": "Detail"}}
    for path, operations in paths.items():
        if path.startswith(API):
            for operation in operations.values():
                assert operation["security"] == [{"bearer": []}], path
                for status, response in operation["responses"].items():
                    if status.startswith("4"):
                        assert response["content"]["application/json"]["schema"]["$ref"] in (
                            "#/components/schemas/Error", "#/components/schemas/ClaimConflictError",
                            "#/components/schemas/ReplyConflictError"), (path, status)
