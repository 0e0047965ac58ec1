"""The OAuth2 test parts together: the Authlib server, Dovecot's oauth2 passdb and the XOAUTH2 SMTP sink."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import aiosmtplib
import httpx
import pytest
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from tests.dovecot import Dovecot
from tests.smtp_sink import CLIENT_TIMEOUT, HOST, SmtpSink

if TYPE_CHECKING:
    from tests.oauth_server import AuthServer

# The fixtures auth_server and oauth_dovecot; importing the module here instead would cost it pytest's assert rewriting.

DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
ALICE = "alice@shop.example"
APP = "shared@shop.example"
REDIRECT = "http://127.0.0.1:8765/callback"
MESSAGE = b"From: c@example.com\r\nTo: alice@shop.example\r\nSubject: Order 1234\r\n\r\nWhere is it?\r\n"


@pytest.fixture
def server(auth_server: AuthServer) -> AuthServer:
    """The auth server with a public app, a confidential one and the user Alice."""
    auth_server.device_interval = 0
    auth_server.add_client("desktop", redirect_uris=[REDIRECT])
    auth_server.add_client("daemon", secret="s3cret", redirect_uris=[REDIRECT], app_username=APP)
    auth_server.add_user(ALICE)
    return auth_server


@pytest.fixture
def xoauth2_sink(server: AuthServer) -> Iterator[SmtpSink]:
    sink = SmtpSink(xoauth2_introspection_url=server.introspection_url)
    sink.start()
    yield sink
    sink.stop()


def post_token(server: AuthServer, **form) -> httpx.Response:
    return httpx.post(server.token_url, data=form)


def device_tokens(server: AuthServer, username: str = ALICE, client_id: str = "desktop") -> dict:
    """RFC 8628 end to end: ask for a code, see it pending, approve it, poll again."""
    start = httpx.post(server.device_authorization_url,
                       data={"client_id": client_id, "scope": "imap smtp offline_access"})
    assert start.status_code == 200, start.text
    codes = start.json()
    poll = dict(grant_type=DEVICE_CODE, device_code=codes["device_code"], client_id=client_id)
    assert post_token(server, **poll).json()["error"] == "authorization_pending"
    server.approve_device(codes["user_code"], username)
    answer = post_token(server, **poll)
    assert answer.status_code == 200, answer.text
    return answer.json()


def refresh(server: AuthServer, refresh_token: str, client_id: str = "desktop") -> httpx.Response:
    return post_token(server, grant_type="refresh_token", refresh_token=refresh_token, client_id=client_id)


def imap_login(dovecot: Dovecot, user: str, token: str) -> IMAPClient:
    client = IMAPClient(dovecot.host, dovecot.port, ssl=False, timeout=10)
    try:
        client.oauth2_login(user, token)
    except BaseException:
        client.shutdown()
        raise
    return client


def imap_refused(dovecot: Dovecot, user: str, token: str) -> bool:
    try:
        imap_login(dovecot, user, token).logout()
    except LoginError:
        return True
    return False


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_params(challenge: str | None, state: str = "st4te") -> dict:
    params = dict(response_type="code", client_id="desktop", redirect_uri=REDIRECT, scope="imap smtp", state=state)
    if challenge:
        params |= dict(code_challenge=challenge, code_challenge_method="S256")
    return params


def redirected_query(answer: httpx.Response) -> dict[str, str]:
    assert answer.status_code == 302, answer.text
    location = answer.headers["Location"]
    assert location.startswith(REDIRECT)
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def introspect(server: AuthServer, token: str) -> dict:
    return httpx.post(server.introspection_url, data={"token": token}).json()


# -- the authorization server on its own ------------------------------------------------------------------


def test_the_device_flow_with_plain_http_gives_bearer_tokens_for_the_approving_user(server):
    tokens = device_tokens(server)

    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 3600
    assert tokens["refresh_token"] and tokens["scope"] == "imap smtp offline_access"
    info = introspect(server, tokens["access_token"])
    assert info["active"] is True and info["username"] == ALICE and info["client_id"] == "desktop"
    assert info["exp"] > time.time() + 3000


def test_the_device_page_lets_a_person_approve_the_code_in_a_form(server):
    codes = httpx.post(server.device_authorization_url, data={"client_id": "desktop"}).json()
    assert codes["verification_uri"] == f"{server.url}/device"

    page = httpx.get(codes["verification_uri_complete"])
    assert page.status_code == 200 and codes["user_code"] in page.text and 'name="username"' in page.text
    assert httpx.post(codes["verification_uri"], data={"user_code": codes["user_code"], "username": "mallory"}
                      ).status_code == 400
    approved = httpx.post(codes["verification_uri"], data={"user_code": codes["user_code"], "username": ALICE})

    assert approved.status_code == 200 and "approved" in approved.text
    answer = post_token(server, grant_type=DEVICE_CODE, device_code=codes["device_code"], client_id="desktop")
    assert answer.status_code == 200 and introspect(server, answer.json()["access_token"])["username"] == ALICE


def test_a_denied_device_code_gives_access_denied(server):
    codes = httpx.post(server.device_authorization_url, data={"client_id": "desktop"}).json()
    server.deny_device(codes["user_code"])

    answer = post_token(server, grant_type=DEVICE_CODE, device_code=codes["device_code"], client_id="desktop")

    assert answer.status_code == 400 and answer.json()["error"] == "access_denied"


def test_a_refresh_rotates_the_refresh_token_and_the_old_one_gives_invalid_grant(server):
    first = device_tokens(server)

    second = refresh(server, first["refresh_token"])
    assert second.status_code == 200, second.text
    new = second.json()
    assert new["refresh_token"] != first["refresh_token"] and new["access_token"] != first["access_token"]

    again = refresh(server, first["refresh_token"])
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert refresh(server, new["refresh_token"]).status_code == 200
    assert server.issued_refresh_tokens(ALICE)[:2] == [first["refresh_token"], new["refresh_token"]]
    refreshes = [r for r in server.token_requests if r["grant_type"] == "refresh_token"]
    assert [r["success"] for r in refreshes] == [True, False, True]


def test_without_rotation_the_same_refresh_token_keeps_working(server):
    server.rotate_refresh_tokens = False
    tokens = device_tokens(server)

    answers = [refresh(server, tokens["refresh_token"]) for _ in range(2)]

    assert [a.status_code for a in answers] == [200, 200]
    assert all("refresh_token" not in a.json() for a in answers)


def test_two_refreshes_at_once_with_one_refresh_token_give_one_success_and_one_invalid_grant(server):
    tokens = device_tokens(server)
    answers: list[httpx.Response] = []
    start = threading.Barrier(2)

    def race() -> None:
        start.wait()
        answers.append(refresh(server, tokens["refresh_token"]))

    threads = [threading.Thread(target=race) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(a.status_code for a in answers) == [200, 400]


def test_client_credentials_with_basic_or_post_auth_give_a_token_for_the_app_username(server):
    basic = httpx.post(server.token_url, data={"grant_type": "client_credentials"}, auth=("daemon", "s3cret"))
    post = post_token(server, grant_type="client_credentials", client_id="daemon", client_secret="s3cret")
    wrong = post_token(server, grant_type="client_credentials", client_id="daemon", client_secret="nope")
    public = post_token(server, grant_type="client_credentials", client_id="desktop")

    assert basic.status_code == post.status_code == 200
    assert "refresh_token" not in basic.json()
    assert introspect(server, basic.json()["access_token"])["username"] == APP
    assert wrong.json()["error"] == public.json()["error"] == "invalid_client"


def test_authorization_code_with_pkce_s256_gives_tokens(server):
    verifier, challenge = pkce_pair()

    page = httpx.get(server.authorization_url, params=authorize_params(challenge))
    assert page.status_code == 200 and 'id="username"' in page.text and 'id="allow"' in page.text
    query = redirected_query(httpx.post(server.authorization_url, params=authorize_params(challenge),
                                        data={"username": ALICE}))
    assert query["state"] == "st4te"
    answer = post_token(server, grant_type="authorization_code", code=query["code"], redirect_uri=REDIRECT,
                        client_id="desktop", code_verifier=verifier)

    assert answer.status_code == 200, answer.text
    assert introspect(server, answer.json()["access_token"])["username"] == ALICE
    reused = post_token(server, grant_type="authorization_code", code=query["code"], redirect_uri=REDIRECT,
                        client_id="desktop", code_verifier=verifier)
    assert reused.json()["error"] == "invalid_grant"


def test_an_authorization_request_without_an_s256_code_challenge_is_refused(server):
    without = redirected_query(httpx.post(server.authorization_url, params=authorize_params(None),
                                          data={"username": ALICE}))
    plain = authorize_params(None) | dict(code_challenge="x" * 43, code_challenge_method="plain")
    with_plain = redirected_query(httpx.post(server.authorization_url, params=plain, data={"username": ALICE}))

    assert without["error"] == with_plain["error"] == "invalid_request" and "code" not in without
    assert without["state"] == "st4te"


def test_a_wrong_code_verifier_gives_invalid_grant(server):
    _, challenge = pkce_pair()
    query = redirected_query(httpx.post(server.authorization_url, params=authorize_params(challenge),
                                        data={"username": ALICE}))

    answer = post_token(server, grant_type="authorization_code", code=query["code"], redirect_uri=REDIRECT,
                        client_id="desktop", code_verifier=pkce_pair()[0])

    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


def test_a_simulated_outage_answers_the_given_status_then_the_server_recovers(server):
    tokens = device_tokens(server)
    server.fail_token_requests(2, status=503)

    statuses = [refresh(server, tokens["refresh_token"]).status_code for _ in range(3)]

    assert statuses == [503, 503, 200]
    assert [r["success"] for r in server.token_requests[-3:]] == [False, False, True]


def test_an_access_token_past_its_lifetime_is_reported_inactive(server):
    server.access_token_lifetime = 1
    tokens = device_tokens(server)

    assert tokens["expires_in"] == 1
    wait_until(lambda: introspect(server, tokens["access_token"]) == {"active": False})


def test_unknown_tokens_and_refresh_tokens_do_not_introspect_as_active(server):
    tokens = device_tokens(server)

    assert introspect(server, "no-such-token") == {"active": False}
    assert introspect(server, tokens["refresh_token"]) == {"active": False}


# -- Dovecot checking the tokens --------------------------------------------------------------------------


def test_an_oauth_user_logs_in_with_xoauth2_and_sees_a_delivered_message(server, oauth_dovecot):
    [uid] = oauth_dovecot.deliver(ALICE, [MESSAGE])
    tokens = device_tokens(server)

    client = imap_login(oauth_dovecot, ALICE, tokens["access_token"])
    try:
        assert client.select_folder("INBOX")[b"EXISTS"] == 1
        assert b"Order 1234" in client.fetch([uid], ["RFC822"])[uid][b"RFC822"]
    finally:
        client.logout()
    assert server.introspections >= 1


def test_oauthbearer_works_as_well_as_xoauth2(server, oauth_dovecot):
    tokens = device_tokens(server)
    client = IMAPClient(oauth_dovecot.host, oauth_dovecot.port, ssl=False, timeout=10)

    client.oauthbearer_login(ALICE, tokens["access_token"])

    client.logout()


def test_a_password_user_logs_in_on_the_same_server(server, oauth_dovecot):
    oauth_dovecot.add_user("agent", "pw-agent")

    client = oauth_dovecot.client("agent")

    assert client.select_folder("INBOX")[b"EXISTS"] == 0
    client.logout()


def test_a_token_for_another_user_is_refused(server, oauth_dovecot):
    server.add_user("bob@shop.example")
    tokens = device_tokens(server, "bob@shop.example")

    assert imap_refused(oauth_dovecot, ALICE, tokens["access_token"])


def test_after_revoke_the_imap_login_is_refused_and_refresh_gives_invalid_grant(server, oauth_dovecot):
    tokens = device_tokens(server)
    imap_login(oauth_dovecot, ALICE, tokens["access_token"]).logout()

    server.revoke(ALICE)

    assert imap_refused(oauth_dovecot, ALICE, tokens["access_token"])
    assert refresh(server, tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_after_expiry_the_imap_login_is_refused_until_a_refresh(server, oauth_dovecot):
    tokens = device_tokens(server)

    server.expire_access_tokens()

    assert imap_refused(oauth_dovecot, ALICE, tokens["access_token"])
    fresh = refresh(server, tokens["refresh_token"]).json()
    imap_login(oauth_dovecot, ALICE, fresh["access_token"]).logout()


def test_a_client_credentials_token_logs_in_as_the_app_username(server, oauth_dovecot):
    oauth_dovecot.deliver(APP, [MESSAGE])
    token = post_token(server, grant_type="client_credentials", client_id="daemon",
                       client_secret="s3cret").json()["access_token"]

    client = imap_login(oauth_dovecot, APP, token)

    assert client.select_folder("INBOX")[b"EXISTS"] == 1
    client.logout()


# -- the SMTP sink checking the tokens --------------------------------------------------------------------


async def send_with_xoauth2(sink: SmtpSink, user: str, token: str) -> None:
    async with aiosmtplib.SMTP(hostname=HOST, port=sink.port, start_tls=False, timeout=CLIENT_TIMEOUT) as smtp:
        await smtp.auth_xoauth2(user, token)
        await smtp.sendmail(user, ["customer@example.com"], MESSAGE)


def test_smtp_xoauth2_then_sendmail_is_received_with_the_login(server, xoauth2_sink):
    tokens = device_tokens(server)

    asyncio.run(send_with_xoauth2(xoauth2_sink, ALICE, tokens["access_token"]))

    [received] = xoauth2_sink.messages
    assert received.login == ALICE and received.recipients == ("customer@example.com",)


def test_smtp_refuses_a_bad_token_with_535_and_mail_without_login_with_530(server, xoauth2_sink):
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
        asyncio.run(send_with_xoauth2(xoauth2_sink, ALICE, "not-a-token"))
    assert refused.value.code == 535

    async def send_anonymously() -> None:
        async with aiosmtplib.SMTP(hostname=HOST, port=xoauth2_sink.port, start_tls=False) as smtp:
            await smtp.sendmail(ALICE, ["customer@example.com"], MESSAGE)

    with pytest.raises(aiosmtplib.SMTPResponseException) as anonymous:
        asyncio.run(send_anonymously())
    assert anonymous.value.code == 530
    assert xoauth2_sink.messages == []
