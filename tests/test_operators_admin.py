"""Operators and accounts: `mailticket operator set|enable|password`, the service rules (the last enabled admin
stays, a new password ends the other sessions), /admin/operators and /account in-process and in Chromium, on real
SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import logging
import threading
import time
from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from mailticket.db.models import Operator, WebSession
from mailticket.db.store import Store
from mailticket.service import operators
from mailticket.service.operators import LastAdmin, OperatorError, UnknownOperator
from tests.browser import login
from tests.factories import PASSWORD, T0, WEB_SETTINGS, make_operator
from tests.test_cli import config_file
from tests.test_cli import operator as run_operator
from tests.test_web import Browser, signed_in

NEW_PASSWORD = "bruno's very own password"
LIFETIME = timedelta(days=7)


def account(store: Store, username: str) -> Operator:
    with store.reading() as session:
        found = operators.by_username(session, username)
        session.expunge(found)
        return found


def sessions_of(store: Store, username: str) -> int:
    with store.reading() as session:
        return session.scalar(select(func.count()).select_from(WebSession).join(Operator).where(
            Operator.username == username))


def start_sessions(store: Store, username: str, count: int) -> list[str]:
    with store.transaction() as session:
        operator_id = operators.by_username(session, username).id
        return [operators.start_session(session, operator_id, T0, LIFETIME) for _ in range(count)]


def live(store: Store, token: str) -> bool:
    with store.reading() as session:
        return operators.session_operator(session, token, T0) is not None


def session_cookie_payload(cookie: str) -> str:
    """What Starlette's signed session cookie carries, readable (it is signed, not encrypted)."""
    payload = cookie.split(".")[0]
    return base64.b64decode(payload + "=" * (-len(payload) % 4)).decode()


# -- the command line ----------------------------------------------------------------------------------------------

def test_operator_set_changes_name_email_role_and_language_and_refuses_bad_usage_with_exit_2(tmp_path, db_url):
    path = config_file(tmp_path, db_url)
    store = Store(db_url)
    make_operator(store, "ana", admin=True)
    make_operator(store, "bruno")

    changed = run_operator(path, "set", "bruno", "--name", "Bruno Lima", "--email", "bruno@shop.example", "--admin",
                           "--language", "pt-BR")
    assert changed.returncode == 0, changed.stderr
    assert "Bruno Lima" in changed.stdout and "language pt-BR" in changed.stdout
    bruno = account(store, "bruno")
    assert (bruno.name, bruno.email, bruno.is_admin, bruno.language) == (
        "Bruno Lima", "bruno@shop.example", True, "pt-BR")

    bad = run_operator(path, "set", "bruno", "--email", "bruno at shop", "--name", "Someone Else")
    assert bad.returncode == 2 and "invalid e-mail address 'bruno at shop'" in bad.stderr
    assert "Traceback" not in bad.stderr and bad.stderr.count("\n") == 1
    assert (account(store, "bruno").email, account(store, "bruno").name) == ("bruno@shop.example", "Bruno Lima")

    unknown = run_operator(path, "set", "nobody", "--name", "X")
    assert unknown.returncode == 2 and "no operator 'nobody'" in unknown.stderr
    nothing = run_operator(path, "set", "bruno")
    assert nothing.returncode == 2 and "nothing to change" in nothing.stderr
    assert run_operator(path, "set", "bruno", "--language", "fr").returncode == 2  # argparse's own refusal

    assert run_operator(path, "set", "bruno", "--language", "browser", "--email", "").returncode == 0
    assert (account(store, "bruno").language, account(store, "bruno").email) == (None, "")
    assert run_operator(path, "set", "bruno", "--no-admin").returncode == 0
    last = run_operator(path, "set", "ana", "--no-admin")
    assert last.returncode == 2 and "'ana' is the last enabled admin" in last.stderr
    assert account(store, "ana").is_admin and not account(store, "bruno").is_admin
    store.dispose()


def test_operator_enable_lets_a_disabled_operator_in_again_and_the_last_admin_is_never_disabled(tmp_path,
                                                                                                sqlite_url):
    path = config_file(tmp_path, sqlite_url)
    store = Store(sqlite_url)
    make_operator(store, "ana", admin=True)
    make_operator(store, "bruno")
    assert run_operator(path, "disable", "bruno").returncode == 0
    assert account(store, "bruno").disabled
    enabled = run_operator(path, "enable", "bruno")
    assert enabled.returncode == 0 and "operator bruno enabled" in enabled.stdout
    assert not account(store, "bruno").disabled

    refused = run_operator(path, "disable", "ana")
    assert refused.returncode == 2 and "last enabled admin" in refused.stderr and "Traceback" not in refused.stderr
    assert not account(store, "ana").disabled
    unknown = run_operator(path, "enable", "nobody")
    assert unknown.returncode == 2 and "no operator 'nobody'" in unknown.stderr
    store.dispose()


def test_operator_password_reads_the_new_password_from_stdin_and_ends_the_operators_sessions(tmp_path, db_url):
    path = config_file(tmp_path, db_url)
    store = Store(db_url)
    make_operator(store, "bruno")
    tokens = start_sessions(store, "bruno", 2)

    changed = run_operator(path, "password", "bruno", "--password-stdin", stdin=NEW_PASSWORD + "\n")
    assert changed.returncode == 0, changed.stderr
    assert "2 browser session(s) ended" in changed.stdout and NEW_PASSWORD not in changed.stdout + changed.stderr
    stored = account(store, "bruno").password_hash
    assert operators.verify_password(stored, NEW_PASSWORD) and not operators.verify_password(stored, PASSWORD)
    assert not any(live(store, token) for token in tokens) and sessions_of(store, "bruno") == 0

    short = run_operator(path, "password", "bruno", "--password-stdin", stdin="short\n")
    assert short.returncode == 2 and "at least 8 characters" in short.stderr
    unknown = run_operator(path, "password", "nobody", "--password-stdin", stdin=NEW_PASSWORD + "\n")
    assert unknown.returncode == 2 and "no operator 'nobody'" in unknown.stderr
    # Never from the command line: without --password-stdin the command is refused before anything is read.
    on_argv = run_operator(path, "password", "bruno", "secret-on-argv")
    assert on_argv.returncode == 2 and "--password-stdin" in on_argv.stderr
    assert account(store, "bruno").password_hash == stored
    store.dispose()


# -- the service rules ---------------------------------------------------------------------------------------------

def test_the_last_enabled_admin_can_be_neither_demoted_nor_disabled(store):
    make_operator(store, "ana", admin=True)
    make_operator(store, "bruno")
    make_operator(store, "carla", admin=True)
    with store.transaction() as session:
        operators.disable(session, "carla")  # ana is still there
    for change in (lambda s: operators.set_admin(s, "ana", False), lambda s: operators.disable(s, "ana"),
                   lambda s: operators.set_fields(s, "ana", name="Ana S.", admin=False)):
        with pytest.raises(LastAdmin, match="'ana' is the last enabled admin.*make another operator admin first"):
            with store.transaction() as session:
                change(session)
    # A disabled admin does not count; the refused change changed nothing, not even the name given with it.
    ana = account(store, "ana")
    assert (ana.is_admin, ana.disabled, ana.name) == (True, False, "Ana")

    with store.transaction() as session:
        operators.set_admin(session, "bruno", True)
    with store.transaction() as session:
        operators.set_admin(session, "ana", False)
    with pytest.raises(LastAdmin):
        with store.transaction() as session:
            operators.disable(session, "bruno")
    with store.transaction() as session:
        operators.disable(session, "ana")  # no longer an admin: nothing to keep
    assert account(store, "ana").disabled and account(store, "bruno").is_admin


def test_two_admins_removing_each_other_at_once_leave_one_admin(store):
    make_operator(store, "ana", admin=True)
    make_operator(store, "bruno", admin=True)
    outcome: list[object] = []

    def bruno_demotes_ana() -> None:
        try:
            with store.transaction() as session:
                operators.set_admin(session, "ana", False)
            outcome.append("done")
        except OperatorError as refused:
            outcome.append(refused)

    with store.transaction() as session:
        operators.set_admin(session, "bruno", False)
        other = threading.Thread(target=bruno_demotes_ana)
        other.start()
        time.sleep(0.5)
        assert other.is_alive()  # waits for this transaction: the admins' rows are locked (one writer on SQLite)
    other.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], LastAdmin)
    assert (account(store, "ana").is_admin, account(store, "bruno").is_admin) == (True, False)


def test_a_new_or_reset_password_ends_the_other_sessions_and_keeps_the_api_token(store, fast_passwords):
    make_operator(store, "bruno")
    with store.transaction() as session:
        token = operators.new_token(session, "bruno")
    here, elsewhere = start_sessions(store, "bruno", 2)
    with store.transaction() as session:
        assert operators.set_password(session, "bruno", NEW_PASSWORD, keep_session=here) == 1
    assert live(store, here) and not live(store, elsewhere)

    with store.transaction() as session:
        temporary = operators.reset_password(session, "bruno")
    assert len(temporary) == 16 and temporary != NEW_PASSWORD
    stored = account(store, "bruno").password_hash
    assert temporary not in stored and operators.verify_password(stored, temporary)
    assert not live(store, here) and sessions_of(store, "bruno") == 0
    with store.reading() as session:
        assert operators.by_token(session.connection(), token).username == "bruno"

    with pytest.raises(OperatorError, match="at least 8 characters"):
        with store.transaction() as session:
            operators.set_password(session, "bruno", "short")
    with pytest.raises(UnknownOperator, match="no operator 'nobody'"):
        with store.transaction() as session:
            operators.reset_password(session, "nobody")


def test_refused_values_change_nothing(store):
    make_operator(store, "bruno")
    for fields, reason in (({"email": "bruno@", "name": "B"}, "invalid e-mail address"),
                           ({"language": "fr", "name": "B"}, "unknown language 'fr'"),
                           ({"name": "Bruno\nBcc: x@evil.example"}, "one line"),
                           ({"name": "B" * 201}, "at most 200 characters")):
        with pytest.raises(OperatorError, match=reason):
            with store.transaction() as session:
                operators.set_fields(session, "bruno", **fields)
    bruno = account(store, "bruno")
    assert (bruno.name, bruno.email, bruno.language) == ("Bruno", "", None)
    with store.transaction() as session:
        operators.set_language(session, "bruno", "en")
    assert account(store, "bruno").language == "en"
    with store.transaction() as session:
        operators.set_language(session, "bruno", None)
    assert account(store, "bruno").language is None


# -- the pages, in-process -----------------------------------------------------------------------------------------

def test_the_operators_page_is_for_admins_only(app, store):
    make_operator(store, "ana", admin=True)
    bruno = signed_in(app, store, "bruno")
    assert bruno.get("/admin/operators").status_code == 403
    for action in ("", "/disable", "/enable", "/make-admin", "/remove-admin", "/reset-password"):
        refused = bruno.post("/admin/operators" + action, {"username": "bruno", "password": PASSWORD * 2})
        assert refused.status_code == 403, action
    assert not account(store, "bruno").is_admin and sessions_of(store, "bruno") == 1
    assert 'id="admin-link"' not in bruno.get("/").text and 'id="account-link"' in bruno.get("/").text


def test_bad_input_on_the_operators_page_comes_back_with_the_reason_never_a_500(app, store):
    ana = signed_in(app, store, "ana", admin=True)
    page = ana.get("/admin/operators")
    assert page.status_code == 200 and 'id="operator-ana"' in page.text
    assert page.headers["cache-control"] == "no-store"

    bad_email = ana.post("/admin/operators", {"username": "bruno", "name": "Bruno Lima", "email": "bruno at shop",
                                              "admin": "on", "password": PASSWORD})
    assert bad_email.status_code == 400
    assert "Not added: invalid e-mail address" in bad_email.text
    assert 'value="Bruno Lima"' in bad_email.text and PASSWORD not in bad_email.text  # kept, but the password
    for fields, status, reason in (
            ({"username": "bruno", "password": "short"}, 400, "at least 8 characters"),
            ({"username": "no spaces", "password": PASSWORD}, 400, "invalid user name"),
            ({"username": "ana", "password": PASSWORD}, 400, "already exists"),
            ({"username": "x" * 200, "password": PASSWORD}, 422, "invalid input")):
        answer = ana.post("/admin/operators", fields)
        assert (answer.status_code, reason in answer.text) == (status, True), (fields, answer.text[:300])
    assert ana.post("/admin/operators/disable", {"username": "nobody"}).status_code == 404
    last = ana.post("/admin/operators/remove-admin", {"username": "ana"})
    assert last.status_code == 409 and "the last enabled admin" in last.text
    assert account(store, "ana").is_admin
    assert ana.client.post("/admin/operators/disable", data={"username": "ana"}).status_code == 403  # no CSRF

    added = ana.post("/admin/operators", {"username": "bruno", "name": "Bruno", "email": "bruno@shop.example",
                                          "password": PASSWORD})
    assert added.status_code == 303 and "Operator bruno added" in ana.get("/admin/operators").text
    assert Browser(app).log_in("bruno").status_code == 303


def test_a_reset_password_is_shown_once_in_the_page_and_nowhere_else(app, store, caplog, fast_passwords):
    ana = signed_in(app, store, "ana", admin=True)
    bruno = signed_in(app, store, "bruno")
    caplog.set_level(logging.DEBUG)
    reset = ana.post("/admin/operators/reset-password", {"username": "bruno"})
    assert reset.status_code == 200 and reset.headers["cache-control"] == "no-store"
    temporary = reset.text.split('<code id="temporary-password-value">')[1].split("</code>")[0]
    assert len(temporary) == 16
    assert temporary not in session_cookie_payload(ana.client.cookies["mailticket_session"])
    assert temporary not in caplog.text
    assert temporary not in ana.get("/admin/operators").text  # once
    assert bruno.get("/").status_code == 303  # his session ended
    assert Browser(app).log_in("bruno").status_code == 401
    assert Browser(app).log_in("bruno", temporary).status_code == 303

    # An admin resetting their own password keeps this session; their others end.
    laptop = Browser(app)
    assert laptop.log_in("ana").status_code == 303
    mine = ana.post("/admin/operators/reset-password", {"username": "ana"})
    assert mine.status_code == 200 and 'id="temporary-password"' in mine.text
    assert ana.get("/admin/operators").status_code == 200 and laptop.get("/").status_code == 303


def test_my_account_checks_the_current_password_and_saves_the_language(app, store, fast_passwords):
    bruno = signed_in(app, store, "bruno")
    page = bruno.get("/account")
    assert page.status_code == 200 and 'id="password-form"' in page.text and "Browser default" in page.text

    differ = bruno.post("/account/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD,
                                              "new_password_again": NEW_PASSWORD + "!"})
    assert differ.status_code == 400 and "the two new passwords differ" in differ.text
    wrong = bruno.post("/account/password", {"current_password": "not my password", "new_password": NEW_PASSWORD,
                                             "new_password_again": NEW_PASSWORD})
    assert wrong.status_code == 400 and "the current password is wrong" in wrong.text
    assert wrong.text.count(f'value="{NEW_PASSWORD}"'.replace("'", "&#39;")) == 2
    assert wrong.headers["cache-control"] == "no-store"
    assert operators.verify_password(account(store, "bruno").password_hash, PASSWORD)

    other = Browser(app)
    assert other.log_in("bruno").status_code == 303
    changed = bruno.post("/account/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD,
                                               "new_password_again": NEW_PASSWORD})
    assert changed.status_code == 303 and changed.headers["location"] == "/account"
    assert "Password changed; your 1 other session(s) were ended" in bruno.get("/account").text
    assert other.get("/").status_code == 303 and bruno.get("/").status_code == 200
    assert Browser(app).log_in("bruno", NEW_PASSWORD).status_code == 303

    assert bruno.post("/account/language", {"language": "pt-BR"}).status_code == 303
    assert account(store, "bruno").language == "pt-BR"
    assert '<option value="pt-BR" selected>' in bruno.get("/account").text
    refused = bruno.post("/account/language", {"language": "klingon"})
    assert refused.status_code == 400 and "unknown language" in refused.text
    assert bruno.post("/account/language", {"language": ""}).status_code == 303
    assert account(store, "bruno").language is None
    assert bruno.client.post("/account/language", data={"language": "en"}).status_code == 403  # no CSRF


# -- in Chromium ---------------------------------------------------------------------------------------------------

def test_in_chromium_an_admin_resets_brunos_password_and_bruno_chooses_his_own_on_my_account(
        store, serve_app, new_context, operator_page, fast_passwords):
    make_operator(store, "dona", admin=True)
    make_operator(store, "bruno")
    base_url = serve_app(WEB_SETTINGS, store)
    dona = operator_page(base_url, "dona")
    bruno_before = operator_page(base_url, "bruno")

    dona.click("#admin-link")
    dona.click("#admin-operators-link")
    dona.wait_for_url(f"{base_url}/admin/operators")
    dona.click("#operator-bruno .reset-button")
    expect(dona.locator("#temporary-password")).to_contain_text("Temporary password for bruno")
    temporary = dona.locator("#temporary-password-value").inner_text()
    assert len(temporary) == 16
    [cookie] = [c["value"] for c in dona.context.cookies() if c["name"] == "mailticket_session"]
    assert temporary not in cookie and temporary not in session_cookie_payload(cookie)
    dona.goto(f"{base_url}/admin/operators")
    expect(dona.locator("#temporary-password")).to_have_count(0)

    bruno_before.reload()  # the session he had before the reset has ended
    bruno_before.wait_for_url(f"{base_url}/login?next=%2F")

    bruno = login(new_context(base_url), base_url, "bruno", temporary)
    bruno_phone = login(new_context(base_url), base_url, "bruno", temporary)
    bruno.click("#account-link")
    bruno.wait_for_url(f"{base_url}/account")
    bruno.fill("#current-password", "not the temporary one")
    bruno.fill("#new-password", NEW_PASSWORD)
    bruno.fill("#new-password-again", NEW_PASSWORD)
    bruno.click("#password-save")
    expect(bruno.locator("#flash-error")).to_contain_text("Password not changed: the current password is wrong")
    expect(bruno.locator("#new-password")).to_have_value(NEW_PASSWORD)
    expect(bruno.locator("#new-password-again")).to_have_value(NEW_PASSWORD)
    expect(bruno.locator("#current-password")).to_have_value("")
    assert operators.verify_password(account(store, "bruno").password_hash, temporary)

    bruno.fill("#current-password", temporary)
    bruno.click("#password-save")
    expect(bruno.locator("#flash")).to_contain_text("Password changed; your 1 other session(s) were ended")
    bruno.goto(f"{base_url}/")
    expect(bruno.locator("#logout-button")).to_be_visible()  # this session goes on
    bruno_phone.reload()
    bruno_phone.wait_for_url(f"{base_url}/login?next=%2F")

    refused = new_context(base_url).new_page()
    refused.goto(f"{base_url}/login")
    refused.fill("#username", "bruno")
    refused.fill("#password", temporary)
    refused.click("#login-button")
    expect(refused.locator("#flash-error")).to_contain_text("wrong user name or password")
    login(refused, base_url, "bruno", NEW_PASSWORD)


def test_in_chromium_an_admin_promotes_bruno_who_then_sees_the_admin_link(store, serve_app, operator_page,
                                                                          fast_passwords):
    make_operator(store, "dona", admin=True)
    make_operator(store, "bruno")
    base_url = serve_app(WEB_SETTINGS, store)
    dona, bruno = operator_page(base_url, "dona"), operator_page(base_url, "bruno")
    expect(bruno.locator("#admin-link")).to_have_count(0)
    assert bruno.goto(f"{base_url}/admin/operators").status == 403

    dona.goto(f"{base_url}/admin/operators")
    dona.click("#operator-bruno .make-admin-button")
    expect(dona.locator("#flash")).to_contain_text("Operator bruno is an admin now")
    expect(dona.locator("#operator-bruno .operator-role")).to_have_text("admin")

    bruno.goto(f"{base_url}/")
    bruno.click("#admin-link")
    bruno.wait_for_url(f"{base_url}/admin")
    bruno.click("#admin-operators-link")
    expect(bruno.locator("#operator-dona .operator-role")).to_have_text("admin")

    # Bruno takes the admin role back from Dona; the last admin (Bruno) cannot drop his own.
    bruno.click("#operator-dona .remove-admin-button")
    expect(bruno.locator("#flash")).to_contain_text("Operator dona is no longer an admin")
    bruno.click("#operator-bruno .remove-admin-button")
    expect(bruno.locator("#flash-error")).to_contain_text("'bruno' is the last enabled admin")
    expect(bruno.locator("#operator-bruno .operator-role")).to_have_text("admin")
    dona.goto(f"{base_url}/")
    expect(dona.locator("#admin-link")).to_have_count(0)


def test_in_chromium_a_disabled_operators_open_session_is_refused_on_its_next_request(store, serve_app,
                                                                                      operator_page, new_context,
                                                                                      fast_passwords):
    make_operator(store, "dona", admin=True)
    make_operator(store, "bruno")
    base_url = serve_app(WEB_SETTINGS, store)
    dona, bruno = operator_page(base_url, "dona"), operator_page(base_url, "bruno")
    bruno.click("#account-link")
    bruno.wait_for_url(f"{base_url}/account")

    dona.goto(f"{base_url}/admin/operators")
    dona.click("#operator-bruno .disable-button")
    expect(dona.locator("#flash")).to_contain_text("Operator bruno disabled")
    expect(dona.locator("#operator-bruno .operator-state")).to_have_text("disabled")

    # His page is still open; the next thing he does is refused: a form post, then any page.
    bruno.select_option("#language", "en")
    bruno.click("#language-save")
    expect(bruno.locator("main")).to_contain_text("you are not logged in (or your session has ended)")
    assert account(store, "bruno").language is None
    bruno.goto(f"{base_url}/")
    bruno.wait_for_url(f"{base_url}/login?next=%2F")
    bruno.fill("#username", "bruno")
    bruno.fill("#password", PASSWORD)
    bruno.click("#login-button")
    expect(bruno.locator("#flash-error")).to_contain_text("wrong user name or password")

    dona.click("#operator-bruno .enable-button")
    expect(dona.locator("#operator-bruno .operator-state")).to_have_text("active")
    login(new_context(base_url), base_url, "bruno")
