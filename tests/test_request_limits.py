"""Request bodies against a real uvicorn: a body over the limit is refused as soon as it passes it, whatever its
framing, and a reply may carry the attachments `limits.max_attachment_bytes` allows."""

from __future__ import annotations

import dataclasses
import select as sockets
import socket
from urllib.parse import urlsplit

import httpx
from playwright.sync_api import expect
from sqlalchemy import select

from mailticket.config import LimitSettings
from mailticket.db.models import Attachment
from mailticket.db.store import Store
from mailticket.web.app import MAX_FORM_BYTES
from tests.browser import running_app
from tests.factories import WEB_SETTINGS, make_operator, make_ticket
from tests.browser import claim_ticket, outbound
from tests.test_web import CSRF_FIELD

CHUNK = b"x" * (1024 * 1024)
STALL_SECONDS = 5  # a send blocked this long means the server stopped reading
ATTEMPTED = 50  # MB


def chunked_post(base: str, path: str, chunks: int) -> tuple[bytes, int]:
    """POSTs a file of `chunks` MB with Transfer-Encoding: chunked (no length announced); returns the server's answer
    and how many MB it took before answering."""
    host, port = urlsplit(base).hostname, urlsplit(base).port
    sent = 0
    with socket.create_connection((host, port), timeout=STALL_SECONDS) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nTransfer-Encoding: chunked\r\n"
                     "Content-Type: multipart/form-data; boundary=b\r\n\r\n".encode())
        # One file part: files are what a server spools to disk, field values are capped by the form parser.
        head = b'--b\r\nContent-Disposition: form-data; name="upload"; filename="big.bin"\r\n\r\n'
        sock.sendall(b"%x\r\n%s\r\n" % (len(head), head))
        try:
            for _ in range(chunks):
                if sockets.select([sock], [], [], 0)[0]:
                    break  # the server has answered: it takes no more
                sock.sendall(b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK))
                sent += 1
            else:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the server answered and closed, or stopped reading: the rest was never taken
        answer = b""
        try:
            while not answer.endswith(b"\r\n\r\n") or b"content-length" not in answer.lower():
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return answer, sent


def test_a_chunked_body_of_50_mb_is_refused_without_being_read_to_the_end(store):
    with running_app(WEB_SETTINGS, store) as base:
        answer, sent = chunked_post(base, "/login", ATTEMPTED)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"too large" in answer
        # The server stopped taking bytes soon after the limit; the socket buffers hold a few MB more at most.
        assert sent < ATTEMPTED
        assert httpx.get(f"{base}/healthz").status_code == 200


def test_a_reply_carries_attachments_up_to_the_configured_limit(store):
    settings = dataclasses.replace(WEB_SETTINGS, limits=LimitSettings(max_attachment_bytes=8 * 1024 * 1024))
    ticket = make_ticket(store)
    make_operator(store, "ana")
    picture = bytes(range(256)) * (6 * 1024 * 1024 // 256)  # 6 MiB: over the 4 MiB of any other form
    assert len(picture) > MAX_FORM_BYTES
    with running_app(settings, store) as base, httpx.Client(base_url=base, timeout=60) as client:
        csrf = CSRF_FIELD.search(client.get("/login").text).group(1)
        assert client.post("/login", data={"csrf_token": csrf, "username": "ana", "password": "correct horse battery"}
                           ).status_code == 303
        csrf = CSRF_FIELD.search(client.get("/").text).group(1)  # a new session has a new token
        assert client.post(f"/tickets/{ticket}/claim", data={"csrf_token": csrf}).status_code == 303
        page = client.get(f"/tickets/{ticket}").text
        token = page.split('name="claim_token" value="')[1].split('"')[0]
        sent = client.post(f"/tickets/{ticket}/reply", data={"csrf_token": csrf, "claim_token": token,
                                                             "body": "The photo you asked for."},
                           files={"attachments": ("photo.bin", picture, "application/octet-stream")})
        assert sent.status_code == 303, sent.text[:300]
    with store.reading() as session:
        assert session.scalar(select(Attachment.size)) == len(picture)


def test_in_chromium_attachments_over_the_limit_are_refused_before_posting_and_the_text_stays(
        sqlite_url, serve_app, operator_page, tmp_path):
    store = Store(sqlite_url)
    settings = dataclasses.replace(WEB_SETTINGS, limits=LimitSettings(max_attachment_bytes=1024 * 1024))
    ticket_id = make_ticket(store, message_id="big@customer.example")
    make_operator(store, "ana", name="Ana")
    base_url = serve_app(settings, store)
    ana = operator_page(base_url, "ana")
    claim_ticket(ana, ticket_id, "Ana")
    big = tmp_path / "photo.jpg"
    big.write_bytes(b"\xff" * (2 * 1024 * 1024))
    ana.fill("#reply-body", "Here is the photo of the label.")
    ana.set_input_files("#reply-attachments", str(big))
    posted: list[str] = []
    ana.on("request", lambda request: posted.append(request.url) if request.method == "POST" else None)
    ana.click("#reply-send")
    expect(ana.locator("#claim-warning")).to_contain_text("the attachments are too big")
    expect(ana.locator("#reply-body")).to_have_value("Here is the photo of the label.")
    assert posted == []
    assert outbound(store, ticket_id) == []
