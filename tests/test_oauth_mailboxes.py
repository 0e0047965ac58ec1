"""OAuth2 mailboxes end to end: a real Dovecot checking XOAUTH2 tokens against a real authorization server, aiosmtpd
checking the relay's, the CLI as an admin runs it, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from mailticket.clock import utcnow
from mailticket.config import load
from mailticket.db.models import OAuthToken, Outbox, Ticket
from mailticket.service import tokens
from mailticket.web.app import create_app
from tests.mails import make_mail
from tests.oauth_server import AuthServer
from tests.smtp_sink import SmtpSink

USER = "atendimento@shop.example"
SALES_USER, SALES_PASSWORD = "vendas", "vendas-password"
ADMIN_EMAIL = "dona@shop.example"
SECRET_KEY = "oauth-test-secret-key-0123456789"
CLIENT_SECRET = "the-client-secret-never-shown"
CODE = re.compile(r"enter the code\s+(\S+)")


def config(tmp_path: Path, store, dovecot, server: AuthServer, *, flow: str = "device", sales: bool = False,
           smtp: SmtpSink | None = None, relay_oauth: bool = False, acks: bool = False,
           web: str = "", scheduler: str = "") -> Path:
    secret = f'client_secret = "{CLIENT_SECRET}"\n' if flow == "client_credentials" else ""
    text = f"""
[database]
url = "{store.url}"
[web]
secret_key = "{SECRET_KEY}"
{web}
[scheduler]
{scheduler}
[autoreply]
enabled = {"true" if acks else "false"}
[[mailbox]]
name = "support"
host = "{dovecot.host}"
port = {dovecot.port}
security = "none"
username = "{USER}"
address = "support@shop.example"
auth = "oauth2"
[mailbox.oauth2]
provider = "custom"
flow = "{flow}"
client_id = "mailticket"
{secret}token_url = "{server.token_url}"
device_authorization_url = "{server.device_authorization_url}"
authorization_url = "{server.authorization_url}"
scopes = ["imap", "smtp", "offline_access"]
"""
    if sales:
        text += f"""
[[mailbox]]
name = "sales"
host = "{dovecot.host}"
port = {dovecot.port}
security = "none"
username = "{SALES_USER}"
password = "{SALES_PASSWORD}"
address = "vendas@shop.example"
"""
    if smtp is not None:
        # The relay logs in with the support mailbox's token, or takes mail without a login.
        login = 'auth = "oauth2"\nmailbox = "support"\n' if relay_oauth else ""
        text += f"""
[smtp]
host = "127.0.0.1"
port = {smtp.port}
security = "none"
timeout = "10s"
{login}"""
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def cli(path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mailticket", "-c", str(path), *args], capture_output=True, text=True,
                          timeout=120)


def authorize_with_device(path: Path, server: AuthServer, user: str = USER) -> str:
    """`mailbox authorize support` as an admin runs it: read the code it prints, approve it, wait for exit 0."""
    proc = subprocess.Popen([sys.executable, "-m", "mailticket", "-c", str(path), "mailbox", "authorize", "support"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    shown = ""
    try:
        while not (found := CODE.search(shown)):
            line = proc.stdout.readline()
            assert line, f"authorize ended before printing a code: {shown}{proc.stderr.read()}"
            shown += line
        assert server.device_authorization_url.rsplit("/", 1)[0] in shown  # the verification address
        server.approve_device(found.group(1), user)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    return shown + out


def setup_server(server: AuthServer, *, secret: str | None = None) -> None:
    server.device_interval = 0
    server.add_client("mailticket", secret=secret, app_username=USER if secret else None,
                      redirect_uris=("http://127.0.0.1/oauth/callback",))
    server.add_user(USER)


def tickets(store) -> list[str]:
    with store.reading() as session:
        return list(session.scalars(select(Ticket.subject).order_by(Ticket.id)))


def age_tokens(store, server: AuthServer) -> None:
    """Time passes: the access token has expired on both sides, as between two polls an hour apart."""
    server.expire_access_tokens()
    with store.transaction() as session:
        session.execute(update(OAuthToken).values(expires_at=utcnow()))


def stored_refresh_token(store) -> str:
    with store.reading() as session:
        row = session.get(OAuthToken, "mailbox:support")
    return tokens.cipher(SECRET_KEY).decrypt(row.refresh_token.encode()).decode()


def status(path: Path) -> dict[str, dict]:
    done = cli(path, "mailbox", "status", "--json")
    assert done.returncode == 0, done.stderr
    return {row["mailbox"]: row for row in json.loads(done.stdout)}


def test_a_mailbox_authorized_with_the_device_flow_is_polled_over_xoauth2(tmp_path, store, oauth_dovecot,
                                                                         auth_server):
    setup_server(auth_server)
    path = config(tmp_path, store, oauth_dovecot, auth_server)
    assert status(path)["support"]["state"] == "needs-authorization"
    refused = cli(path, "poll-once")
    assert refused.returncode == 1 and "mailbox 'support'" in refused.stderr and "mailbox authorize support" in refused.stderr
    assert "Traceback" not in refused.stderr

    shown = authorize_with_device(path, auth_server)
    assert "is authorized" in shown
    oauth_dovecot.deliver(USER, [make_mail(message_id="a@customer.example", subject="Pedido 123 não chegou")])
    polled = cli(path, "poll-once", "--json")
    assert polled.returncode == 0, polled.stderr
    assert json.loads(polled.stdout)["created"] == 1 and tickets(store) == ["Pedido 123 não chegou"]
    row = status(path)["support"]
    assert (row["auth"], row["state"], row["last_error"]) == ("oauth2", "ok", "") and row["last_ok_at"]
    # The refresh token is stored encrypted: not as the server issued it.
    with store.reading() as session:
        kept = session.get(OAuthToken, "mailbox:support")
    issued = auth_server.issued_refresh_tokens(USER)[-1]
    assert issued not in (kept.refresh_token or "") and stored_refresh_token(store) == issued


def test_an_access_token_that_expires_between_polls_is_renewed_without_a_failed_login(tmp_path, store, oauth_dovecot,
                                                                                      auth_server):
    setup_server(auth_server)
    path = config(tmp_path, store, oauth_dovecot, auth_server)
    authorize_with_device(path, auth_server)
    first_refresh = stored_refresh_token(store)
    age_tokens(store, auth_server)
    oauth_dovecot.deliver(USER, [make_mail(message_id="b@customer.example", subject="Troca de tamanho")])
    polled = cli(path, "poll-once")
    assert polled.returncode == 0, polled.stderr
    assert tickets(store) == ["Troca de tamanho"]
    refreshes = [r for r in auth_server.token_requests if r["grant_type"] == "refresh_token"]
    assert [r["success"] for r in refreshes] == [True]
    # The rotated refresh token replaced the old one at once; the old one is spent.
    assert stored_refresh_token(store) == auth_server.issued_refresh_tokens(USER)[-1] != first_refresh
    assert status(path)["support"]["last_error"] == ""  # no login was refused on the way
    assert "auth failed" not in oauth_dovecot.log()


def test_an_unreachable_authorization_server_is_retried_and_loses_nothing(tmp_path, store, oauth_dovecot, auth_server):
    setup_server(auth_server)
    path = config(tmp_path, store, oauth_dovecot, auth_server)
    authorize_with_device(path, auth_server)
    age_tokens(store, auth_server)
    auth_server.fail_token_requests(1, status=503)
    oauth_dovecot.deliver(USER, [make_mail(message_id="c@customer.example", subject="Nota fiscal")])
    failed = cli(path, "poll-once")
    assert failed.returncode == 1 and "HTTP 503" in failed.stderr and "Traceback" not in failed.stderr
    row = status(path)["support"]
    assert row["state"] == "error" and "503" in row["last_error"]  # a failure, not a lost authorization
    again = cli(path, "poll-once")
    assert again.returncode == 0, again.stderr
    assert tickets(store) == ["Nota fiscal"] and status(path)["support"]["state"] == "ok"


def test_a_revoked_authorization_stops_only_its_mailbox_until_it_is_authorized_again(
        tmp_path, store, oauth_dovecot, auth_server, caplog):
    setup_server(auth_server)
    sink = SmtpSink()
    sink.start()
    try:
        oauth_dovecot.add_user(SALES_USER, SALES_PASSWORD)
        path = config(tmp_path, store, oauth_dovecot, auth_server, sales=True, smtp=sink)
        with_admin(path)
        authorize_with_device(path, auth_server)
        oauth_dovecot.deliver(USER, [make_mail(message_id="d1@customer.example", subject="Antes da revogação")])
        assert cli(path, "poll-once").returncode == 0

        auth_server.revoke(USER)
        age_tokens(store, auth_server)
        oauth_dovecot.deliver(USER, [make_mail(message_id="d2@customer.example", subject="Durante a revogação")])
        oauth_dovecot.deliver(SALES_USER, [make_mail(message_id="s1@customer.example", subject="Orçamento")])
        for _ in range(2):
            failed = cli(path, "poll-once")
            assert failed.returncode == 1 and "polling failed for support" in failed.stderr
            assert "Traceback" not in failed.stderr
        assert tickets(store) == ["Antes da revogação", "Orçamento"]  # the password mailbox went on
        health = status(path)
        assert health["support"]["state"] == "needs-authorization" and "invalid_grant" in health["support"]["last_error"]
        assert health["sales"]["state"] == "ok"
        scrape = TestClient(create_app(load(path), store)).get("/metrics").text
        assert 'mailticket_mailbox_auth_ok{mailbox="support"} 0.0' in scrape
        assert 'mailticket_mailbox_auth_ok{mailbox="sales"} 1.0' in scrape
        # The admins are told once (two failed polls, one mail), through a relay that does not need the lost token.
        assert [m.recipients for m in sink.messages] == [(ADMIN_EMAIL,)]
        notice = sink.messages[0].raw.decode()
        assert "needs authorization again" in notice and "mailticket mailbox authorize support" in notice

        authorize_with_device(path, auth_server)
        assert cli(path, "poll-once").returncode == 0
        assert tickets(store) == ["Antes da revogação", "Orçamento", "Durante a revogação"]
        assert cli(path, "poll-once").returncode == 0  # nothing fetched twice
        assert len(tickets(store)) == 3 and status(path)["support"]["state"] == "ok"
    finally:
        sink.stop()


def with_admin(path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "mailticket", "-c", str(path), "operator", "add", "dona",
                           "--email", ADMIN_EMAIL, "--admin", "--password-stdin"],
                          input="a-long-password-for-dona\n", capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_client_credentials_need_no_authorize_step(tmp_path, store, oauth_dovecot, auth_server):
    setup_server(auth_server, secret=CLIENT_SECRET)
    path = config(tmp_path, store, oauth_dovecot, auth_server, flow="client_credentials")
    oauth_dovecot.deliver(USER, [make_mail(message_id="e@customer.example", subject="Caixa compartilhada")])
    polled = cli(path, "poll-once")
    assert polled.returncode == 0, polled.stderr
    assert tickets(store) == ["Caixa compartilhada"]
    assert [r["grant_type"] for r in auth_server.token_requests] == ["client_credentials"]
    proved = cli(path, "mailbox", "authorize", "support")
    assert proved.returncode == 0 and "credentials work" in proved.stdout
    assert CLIENT_SECRET not in proved.stdout + proved.stderr


def test_consent_given_by_the_wrong_account_is_caught_at_once(tmp_path, store, oauth_dovecot, auth_server):
    setup_server(auth_server)
    auth_server.add_user("dona@shop.example")  # the admin signs in as herself, not as the support mailbox
    path = config(tmp_path, store, oauth_dovecot, auth_server)
    proc = subprocess.Popen([sys.executable, "-m", "mailticket", "-c", str(path), "mailbox", "authorize", "support"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    shown = ""
    while not (found := CODE.search(shown)):
        shown += proc.stdout.readline()
    auth_server.approve_device(found.group(1), "dona@shop.example")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and f"Sign in as {USER}" in err and "Traceback" not in err


def test_a_refused_client_secret_shows_as_an_error_and_in_the_metrics(tmp_path, store, oauth_dovecot, auth_server):
    auth_server.add_client("mailticket", secret="the-real-secret", app_username=USER)
    path = config(tmp_path, store, oauth_dovecot, auth_server, flow="client_credentials")  # CLIENT_SECRET: wrong
    failed = cli(path, "poll-once")
    assert failed.returncode == 1 and "invalid_client" in failed.stderr and "[mailbox.oauth2] of mailbox" in failed.stderr
    assert status(path)["support"]["state"] == "error"
    scrape = TestClient(create_app(load(path), store)).get("/metrics").text
    assert 'mailticket_mailbox_auth_ok{mailbox="support"} 0.0' in scrape


def test_the_relay_logs_in_with_the_mailbox_token_and_holds_the_mail_once_it_is_revoked(
        tmp_path, store, oauth_dovecot, auth_server):
    setup_server(auth_server)
    sink = SmtpSink(xoauth2_introspection_url=auth_server.introspection_url)
    sink.start()
    try:
        path = config(tmp_path, store, oauth_dovecot, auth_server, smtp=sink, relay_oauth=True, acks=True)
        authorize_with_device(path, auth_server)
        assert load(path).smtp.authorization == "mailbox:support"
        oauth_dovecot.deliver(USER, [make_mail(message_id="f@customer.example", subject="Quero cancelar")])
        assert cli(path, "poll-once").returncode == 0
        flushed = cli(path, "outbox", "flush", "--json")
        assert flushed.returncode == 0, flushed.stderr
        assert json.loads(flushed.stdout)["sent"] == 1  # the acknowledgement, over XOAUTH2
        assert [m.login for m in sink.messages] == [USER]

        oauth_dovecot.deliver(USER, [make_mail(message_id="g@customer.example", subject="Outro pedido")])
        assert cli(path, "poll-once").returncode == 0  # its acknowledgement waits in the outbox
        auth_server.revoke(USER)
        age_tokens(store, auth_server)
        held = cli(path, "outbox", "flush", "--json")
        assert held.returncode == 0 and json.loads(held.stdout)["sent"] == 0
        assert len(sink.messages) == 1
        with store.reading() as session:
            assert session.scalar(select(func.count()).select_from(Outbox).where(Outbox.status == "queued")) == 1
        assert status(path)["support"]["state"] == "needs-authorization"
    finally:
        sink.stop()


RENEW = """
import sys, time, pathlib
from mailticket.config import load
from mailticket.db.store import Store
from mailticket.service import tokens
from mailticket.web.app import create_app
settings = load(sys.argv[1])
store = Store(settings.database.url)
flag = pathlib.Path(sys.argv[2])
while not flag.exists():  # every process starts renewing at the same moment
    time.sleep(0.005)
print(tokens.access_token(store, settings, "mailbox:support"))
"""


def test_instances_renewing_at_the_same_moment_make_one_renewal_and_share_its_token(tmp_path, store, oauth_dovecot,
                                                                                     auth_server):
    setup_server(auth_server)
    path = config(tmp_path, store, oauth_dovecot, auth_server)
    authorize_with_device(path, auth_server)
    age_tokens(store, auth_server)
    flag = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", RENEW, str(path), str(flag)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    flag.touch()
    results = [proc.communicate(timeout=120) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), [err for _, err in results]
    assert len({out.strip() for out, _ in results}) == 1  # one token for all four
    refreshes = [r for r in auth_server.token_requests if r["grant_type"] == "refresh_token"]
    # With rotation, a second renewal with the same refresh token would have been refused (invalid_grant).
    assert [r["success"] for r in refreshes] == [True]
    assert stored_refresh_token(store) == auth_server.issued_refresh_tokens(USER)[-1]


def test_a_token_revoked_before_its_time_is_renewed_at_the_next_poll(tmp_path, store, oauth_dovecot, auth_server):
    setup_server(auth_server)
    path = config(tmp_path, store, oauth_dovecot, auth_server)
    authorize_with_device(path, auth_server)
    auth_server.expire_access_tokens()  # the server drops it; mailticket still thinks it has an hour
    oauth_dovecot.deliver(USER, [make_mail(message_id="h@customer.example", subject="Boleto vencido")])
    refused = cli(path, "poll-once")
    assert refused.returncode == 1 and "login refused" in refused.stderr
    assert cli(path, "poll-once").returncode == 0
    assert tickets(store) == ["Boleto vencido"] and status(path)["support"]["state"] == "ok"


def test_secrets_never_reach_logs_commands_metrics_or_pages(tmp_path, store, oauth_dovecot, auth_server, caplog):
    import base64
    import logging

    from mailticket.service.poll import poll_mailbox

    setup_server(auth_server)
    path = config(tmp_path, store, oauth_dovecot, auth_server)
    authorize_with_device(path, auth_server)
    age_tokens(store, auth_server)
    settings = load(path)
    oauth_dovecot.deliver(USER, [make_mail(message_id="i@customer.example", subject="Segredo")])
    with caplog.at_level(logging.DEBUG):
        assert poll_mailbox(store, settings, settings.mailbox("support")).created == 1
    with store.reading() as session:
        row = session.get(OAuthToken, "mailbox:support")
    box = tokens.cipher(SECRET_KEY)
    access = box.decrypt(row.access_token.encode()).decode()
    secrets = [access, *auth_server.issued_refresh_tokens(USER), SECRET_KEY]
    xoauth2 = base64.b64encode(f"user={USER}\x01auth=Bearer {access}\x01\x01".encode()).decode()
    # What the test's own authorization server logs (it runs in this process, in its request threads) is not ours.
    ours = [r for r in caplog.records if r.threadName == "MainThread"]
    assert {r.name.split(".")[0] for r in ours} >= {"mailticket", "imapclient", "httpx2"}  # debug logs included
    shown = [logging.Formatter("%(name)s %(message)s").format(r) for r in ours]
    for args in (("ticket", "show", "1"), ("ticket", "show", "1", "--json"), ("mailbox", "status"),
                 ("mailbox", "status", "--json"), ("check-config",), ("poll-once",)):
        done = cli(path, *args)
        shown.append(done.stdout + done.stderr)
    client = TestClient(create_app(settings, store))
    shown.append(client.get("/metrics").text)
    assert 'mailticket_mailbox_auth_ok{mailbox="support"} 1.0' in shown[-1]
    for page in ("/oauth/callback?state=s&code=c", "/admin/mailboxes", "/no-such-page"):
        shown.append(client.get(page).text)
    everything = "\n".join(shown)
    for secret in secrets:
        assert secret not in everything
    assert xoauth2 not in everything


def test_serve_reads_an_oauth2_mailbox_through_idle_and_says_in_one_line_when_it_is_lost(
        tmp_path, store, oauth_dovecot, auth_server):
    import queue
    import signal
    import threading

    from tests.dovecot import free_port
    from tests.test_idle import POLL_INTERVAL, READY_LINE, _read_lines, read_until, wait_for_tickets
    from tests.test_serve import start, wait_for

    setup_server(auth_server)
    port = free_port()
    path = config(tmp_path, store, oauth_dovecot, auth_server, web=f'listen = "127.0.0.1:{port}"',
                  scheduler=f'poll_interval = "{POLL_INTERVAL}"')
    authorize_with_device(path, auth_server)
    proc = start(str(path))
    lines: queue.Queue[str] = queue.Queue()
    output: list[str] = []
    threading.Thread(target=_read_lines, args=(proc, lines), daemon=True).start()

    def wait_for_line(text: str) -> None:
        read_until(lines, output, text)

    try:
        assert wait_for(f"http://127.0.0.1:{port}/healthz", proc) == 200
        wait_for_line(READY_LINE)
        oauth_dovecot.deliver(USER, [make_mail(message_id="j@customer.example", subject="Via IDLE")])
        wait_for_tickets(store, 1)
        auth_server.revoke(USER)
        age_tokens(store, auth_server)
        oauth_dovecot.kill_connections(USER)  # the watcher logs in again, and the renewal is refused
        wait_for_line("needs authorization again")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    while not lines.empty():
        output.append(lines.get())
    out = "".join(output)
    assert code == 0, out
    assert "Traceback" not in out and tickets(store) == ["Via IDLE"]
