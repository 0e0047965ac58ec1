"""OAuth2 settings: Microsoft's and Google's endpoints and scopes filled in, custom servers, and clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mailticket.config_oauth import GOOGLE_SCOPES, MICROSOFT_APP_ONLY, MICROSOFT_DELEGATED
from tests.test_config import load_text, refused

WEB = '[web]\nsecret_key = "a-long-enough-secret-value"\n'
BOX = """
[[mailbox]]
name = "support"
host = "outlook.office365.com"
username = "atendimento@loja.com.br"
address = "atendimento@loja.com.br"
auth = "oauth2"
[mailbox.oauth2]
"""
MICROSOFT = 'provider = "microsoft"\nflow = "device"\nclient_id = "app-id"\ntenant = "loja.onmicrosoft.com"\n'


def test_microsoft_fills_in_the_endpoints_and_the_delegated_scopes(tmp_path):
    box = load_text(tmp_path, WEB + BOX + MICROSOFT, env={}).mailbox("support")
    o = box.oauth2
    assert box.auth == "oauth2" and box.authorization == "mailbox:support" and box.password == ""
    assert o.token_url == "https://login.microsoftonline.com/loja.onmicrosoft.com/oauth2/v2.0/token"
    assert o.device_authorization_url.endswith("/loja.onmicrosoft.com/oauth2/v2.0/devicecode")
    assert o.scopes == MICROSOFT_DELEGATED and "offline_access" in o.scopes and o.client_secret is None


def test_microsoft_app_only_access_asks_for_the_default_scope_and_needs_tenant_and_secret(tmp_path):
    text = WEB + BOX + MICROSOFT.replace('"device"', '"client_credentials"') + 'client_secret_env = "SECRET"\n'
    o = load_text(tmp_path, text, env={"SECRET": "s3cret"}).mailbox("support").oauth2
    assert o.scopes == MICROSOFT_APP_ONLY and o.client_secret == "s3cret"
    refused(tmp_path, text.replace('client_secret_env = "SECRET"\n', ""), 'mailbox "support".oauth2.client_secret')
    refused(tmp_path, text.replace('tenant = "loja.onmicrosoft.com"\n', ""), 'mailbox "support".oauth2.tenant is required',
            env={"SECRET": "x"})


def test_google_is_a_browser_flow_that_asks_for_offline_access(tmp_path):
    text = WEB + BOX + 'provider = "google"\nflow = "browser"\nclient_id = "x.apps.googleusercontent.com"\n'
    o = load_text(tmp_path, text, env={}).mailbox("support").oauth2
    assert o.scopes == GOOGLE_SCOPES and dict(o.authorization_params) == {"access_type": "offline", "prompt": "consent"}
    refused(tmp_path, text.replace('"browser"', '"device"'), 'mailbox "support".oauth2.flow must be "browser"')


def test_a_custom_server_needs_its_endpoints_and_scopes(tmp_path):
    custom = 'provider = "custom"\nflow = "device"\nclient_id = "c"\ntoken_url = "http://127.0.0.1:9/token"\n'
    refused(tmp_path, WEB + BOX + custom, 'mailbox "support".oauth2.scopes is required')
    refused(tmp_path, WEB + BOX + custom + 'scopes = ["imap"]\n', "oauth2.device_authorization_url is required")
    o = load_text(tmp_path, WEB + BOX + custom + 'scopes = ["imap"]\ndevice_authorization_url = "http://127.0.0.1:9/d"\n',
                  env={}).mailbox("support").oauth2
    assert (o.token_url, o.scopes) == ("http://127.0.0.1:9/token", ("imap",))
    refused(tmp_path, WEB + BOX + MICROSOFT + 'token_url = "https://x.example/t"\n', "token_url is set by provider")


@pytest.mark.parametrize("text, fragment", [
    (WEB + BOX.replace('auth = "oauth2"\n[mailbox.oauth2]\n', ""), 'mailbox "support".password is required'),
    (WEB + BOX.replace("[mailbox.oauth2]\n", ""), 'mailbox "support".oauth2 is required with auth = "oauth2"'),
    (WEB + BOX.replace('auth = "oauth2"\n', 'password = "x"\n') + MICROSOFT, 'oauth2 is given but auth is not'),
    (WEB + BOX.replace('auth = "oauth2"\n', 'auth = "oauth2"\npassword = "x"\n') + MICROSOFT,
     "password is not used with auth"),
    (WEB + BOX + MICROSOFT + 'colour = "blue"\n', 'unknown key mailbox "support".oauth2.colour'),
    (WEB + BOX + MICROSOFT.replace('"microsoft"', '"yahoo"'), 'oauth2.provider must be one of microsoft, google'),
    (BOX + MICROSOFT, "web.secret_key is required when a mailbox or [smtp] uses auth"),
    (WEB + BOX + MICROSOFT + '[smtp]\nauth = "oauth2"\nmailbox = "sales"\n', "smtp.mailbox names 'sales'"),
    (WEB + BOX + MICROSOFT + '[smtp]\nauth = "oauth2"\n', 'needs either an [smtp.oauth2] table or mailbox'),
    (WEB + BOX + MICROSOFT + '[smtp]\nmailbox = "support"\n', 'smtp.mailbox is given but smtp.auth is not'),
    (WEB + BOX.replace('name = "support"', 'name = "smtp"') + MICROSOFT, 'name "smtp" is taken by the relay'),
])
def test_a_wrong_oauth2_setting_names_its_key(tmp_path, text, fragment):
    refused(tmp_path, text, fragment)


def test_smtp_shares_a_mailbox_authorization_or_has_its_own(tmp_path):
    shared = load_text(tmp_path, WEB + BOX + MICROSOFT + '[smtp]\nauth = "oauth2"\nmailbox = "support"\n', env={})
    assert shared.smtp.authorization == "mailbox:support" and shared.smtp.username == "atendimento@loja.com.br"
    own = load_text(tmp_path, WEB + BOX + MICROSOFT + '[smtp]\nauth = "oauth2"\nusername = "envios@loja.com.br"\n'
                    '[smtp.oauth2]\n' + MICROSOFT, env={})
    assert own.smtp.authorization == "smtp" and own.smtp.oauth2.token_url.endswith("/token")


def test_check_config_never_prints_the_client_secret(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(WEB + BOX + MICROSOFT + 'client_secret = "do-not-print-me"\nscopes = ["x"]\n', encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "mailticket", "-c", str(path), "check-config"], capture_output=True,
                          text=True)
    assert done.returncode == 2 and "scopes is set by provider" in done.stderr
    assert "do-not-print-me" not in done.stdout + done.stderr
    assert "do-not-print-me" not in repr(load_text(tmp_path, WEB + BOX + MICROSOFT + 'client_secret = "do-not-print-me"\n',
                                                   env={}))
