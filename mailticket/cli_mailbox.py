"""`mailticket mailbox authorize|status` and `poll-once`: logging in to the mailboxes and how their polling goes."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from mailticket import oauth
from mailticket.cli_common import EVERY_SECRET, EXIT_FAILURE, EXIT_OK, UsageError, load_settings, open_store, shown
from mailticket.clock import utcnow
from mailticket.config_oauth import BROWSER, CLIENT_CREDENTIALS
from mailticket.localtime import cli_time
from mailticket.service import auth_notice, mailboxes, tokens


def add_commands(commands) -> None:
    poll = commands.add_parser("poll-once", help="one polling pass over the mailboxes")
    poll.add_argument("--mailbox", help="only this [[mailbox]] name")
    poll.add_argument("--json", action="store_true")
    poll.set_defaults(run=cmd_poll_once)

    mailbox = commands.add_parser("mailbox", help="log in to the mailboxes (OAuth2) and see how they are doing")
    mailbox_commands = mailbox.add_subparsers(dest="mailbox_command", required=True)
    authorize = mailbox_commands.add_parser(
        "authorize", help='authorize a mailbox with auth = "oauth2" (NAME of a [[mailbox]], or "smtp")')
    authorize.add_argument("name")
    authorize.set_defaults(run=cmd_mailbox_authorize)
    status = mailbox_commands.add_parser("status", help="each mailbox: its login, its state, the last poll")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=cmd_mailbox_status)


def cmd_poll_once(args: argparse.Namespace) -> int:
    """Polls every mailbox even when one fails; exits 1 naming those that failed."""
    from mailticket.service.intake import PollCounts
    from mailticket.service.poll import poll_mailbox

    settings = load_settings(args, secrets=EVERY_SECRET)
    boxes = [settings.mailbox(args.mailbox)] if args.mailbox else list(settings.mailboxes)
    if not boxes:
        raise UsageError(f"{settings.path}: no [[mailbox]] is configured")
    store = open_store(settings)
    total, failed = PollCounts(), []
    for box in boxes:
        try:
            total.add(poll_mailbox(store, settings, box))
        except Exception as exc:  # noqa: BLE001 - recorded in words by poll_mailbox; the next mailbox goes on
            failed.append(box.name)
            print(f"mailticket: mailbox {box.name!r}: {shown(str(exc))}", file=sys.stderr)
    if args.json:
        print(json.dumps(asdict(total)))
    else:
        print("  ".join(f"{name} {value}" for name, value in asdict(total).items()))
    auth_notice.send_due(store, settings, utcnow())
    if failed:
        print(f"mailticket: polling failed for {', '.join(failed)}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def cmd_mailbox_authorize(args: argparse.Namespace) -> int:
    settings = load_settings(args, secrets=EVERY_SECRET)
    name = "smtp" if args.name == "smtp" else f"mailbox:{args.name}"
    known = tokens.authorizations(settings)
    if name not in known:
        oauth_boxes = [n.partition(":")[2] or n for n in known]
        raise UsageError(f"{settings.path}: {args.name!r} is not a [[mailbox]] (or [smtp]) with auth = \"oauth2\"; "
                         f"those are: {', '.join(oauth_boxes) or 'none'}")
    auth = known[name]
    store = open_store(settings)
    flow = auth.settings.flow
    try:
        if flow == BROWSER:
            print(f"{auth.label} is authorized in the browser: open {settings.web.base_url.rstrip('/')}/admin/mailboxes "
                  "as an admin and press Connect (the provider sends you back to /oauth/callback).")
            return EXIT_OK
        if flow == CLIENT_CREDENTIALS:
            tokens.save(store, tokens.cipher(settings.web.secret_key), name,
                        oauth.client_credentials(auth.settings, utcnow()), utcnow(), authorized=True)
            print(f"{auth.label}: the app's credentials work; a token was issued for {auth.username}.")
            return _checked(store, settings, auth)
        code = oauth.start_device(auth.settings)
        print(f"To authorize {auth.label} ({auth.username}), open\n\n    {code.verification_uri}\n\n"
              f"and enter the code\n\n    {code.user_code}\n\nSign in as {auth.username}. Waiting…", flush=True)
        got = oauth.wait_for_device(auth.settings, code, utcnow)
    except (oauth.OAuthFailure, oauth.Unavailable) as exc:
        print(f"mailticket: {auth.label} was not authorized: {shown(str(exc))}", file=sys.stderr)
        return EXIT_FAILURE
    if not got.refresh_token:
        print(f"mailticket: the provider gave no refresh token for {auth.label}: the scopes must include "
              "offline_access (Microsoft) or the app must ask for offline access", file=sys.stderr)
        return EXIT_FAILURE
    tokens.save(store, tokens.cipher(settings.web.secret_key), name, got, utcnow(), authorized=True)
    return _checked(store, settings, auth)


def _checked(store, settings, auth: tokens.Authorization) -> int:
    if (problem := mailboxes.check_login(store, settings, auth.name)) is not None:
        print(f"mailticket: {auth.label} was authorized, but its server refused the login: {shown(problem)}\n"
              f"Sign in as {auth.username} (not as yourself) and run `{auth.command}` again.", file=sys.stderr)
        return EXIT_FAILURE
    print(f"{auth.label} is authorized; mail is read from it at the next poll.")
    return EXIT_OK


def cmd_mailbox_status(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    found = mailboxes.health(open_store(settings), settings)
    if args.json:
        print(json.dumps([{**asdict(h), "last_ok_at": _iso(h.last_ok_at), "last_error_at": _iso(h.last_error_at)}
                          for h in found], indent=2, ensure_ascii=False))
        return EXIT_OK
    print(f"{'MAILBOX':<16} {'AUTH':<9} {'STATE':<20} {'LAST POLL':<22} LAST ERROR")
    for h in found:
        last = cli_time(h.last_ok_at, settings.web.timezone, missing="never")
        print(f"{shown(h.mailbox):<16} {h.auth:<9} {h.state:<20} {last:<22} {shown(h.last_error)}")
    return EXIT_OK


def _iso(value):
    return value.isoformat() if value else None
