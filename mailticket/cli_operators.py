"""`mailticket operator add|list|set|enable|disable|password|token`: the operators' accounts, from the server."""

from __future__ import annotations

import argparse
import sys

from mailticket.cli_common import EXIT_OK, UsageError, change, load_settings, open_store, shown

# `operator set --language browser`: no language chosen, the pages follow the browser's.
BROWSER_LANGUAGE = "browser"
# `operator set --timezone default`: no zone chosen, the pages show [web] timezone.
DEFAULT_ZONE = "default"


def add_commands(commands) -> None:
    operator = commands.add_parser("operator", help="manage operators").add_subparsers(dest="operator_command",
                                                                                       required=True)
    add = operator.add_parser("add", help="create an operator (password read from standard input)")
    add.add_argument("username")
    add.add_argument("--name", default="")
    add.add_argument("--email", default="")
    add.add_argument("--admin", action="store_true")
    _password_stdin(add)
    add.set_defaults(run=cmd_operator_add)
    operator.add_parser("list").set_defaults(run=cmd_operator_list)

    change = operator.add_parser("set", help="change an operator's name, e-mail, admin role, language or time zone")
    change.add_argument("username")
    change.add_argument("--name")
    change.add_argument("--email", help='the address ("" for none)')
    change.add_argument("--admin", dest="admin", action="store_true", default=None, help="make them an admin")
    change.add_argument("--no-admin", dest="admin", action="store_false",
                        help="make them an operator only (refused for the last enabled admin)")
    change.add_argument("--language", choices=("pt-BR", "en", BROWSER_LANGUAGE),
                        help=f"the pages' language ({BROWSER_LANGUAGE}: as the browser asks)")
    change.add_argument("--timezone", metavar="ZONE", type=_zone,
                        help=f"the time zone of the pages' times, such as America/Sao_Paulo ({DEFAULT_ZONE}: "
                             "[web] timezone)")
    change.set_defaults(run=cmd_operator_set)

    enable = operator.add_parser("enable", help="let a disabled operator log in again (with their password)")
    enable.add_argument("username")
    enable.set_defaults(run=cmd_operator_enable)
    disable = operator.add_parser("disable", help="disable an operator: sessions and token stop working at once")
    disable.add_argument("username")
    disable.set_defaults(run=cmd_operator_disable)
    password = operator.add_parser("password", help="set a new password (read from standard input); the "
                                                    "operator's browser sessions end")
    password.add_argument("username")
    _password_stdin(password)
    password.set_defaults(run=cmd_operator_password)
    token = operator.add_parser("token", help="print a new API token (replaces the old one)")
    token.add_argument("username")
    token.set_defaults(run=cmd_operator_token)


def _password_stdin(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--password-stdin", action="store_true", required=True,
                        help="read the password from standard input (never from the command line)")


def _zone(text: str) -> str:
    """An IANA time zone (checked with zoneinfo before the config and database are read), or "default"."""
    from mailticket.localtime import is_zone

    if text != DEFAULT_ZONE and not is_zone(text):
        raise argparse.ArgumentTypeError(f"unknown time zone {text[:64]!r}: use an IANA name such as "
                                         f"America/Sao_Paulo or UTC, or {DEFAULT_ZONE}")
    return text


def _read_password() -> str:
    return sys.stdin.readline().rstrip("\r\n")


def cmd_operator_add(args: argparse.Namespace) -> int:
    from mailticket.clock import utcnow
    from mailticket.service.operators import add_operator

    password = _read_password()
    change(load_settings(args), lambda session: add_operator(
        session, args.username, password, name=args.name, email=args.email, admin=args.admin, now=utcnow()))
    print(f"operator {args.username} added{' (admin)' if args.admin else ''}")
    return EXIT_OK


def cmd_operator_list(args: argparse.Namespace) -> int:
    from mailticket.service.operators import list_operators

    store = open_store(load_settings(args))
    with store.reading() as session:
        operators = list_operators(session)
        print(f"{'USER':<20} {'NAME':<24} {'ROLE':<9} {'STATE':<9} TOKEN")
        for op in operators:
            print(shown(f"{op.username:<20} {op.name[:24]:<24} {'admin' if op.is_admin else 'operator':<9} "
                        f"{'disabled' if op.disabled else 'active':<9} {'yes' if op.token_hash else 'no'}"))
    return EXIT_OK


def cmd_operator_set(args: argparse.Namespace) -> int:
    from mailticket.service.operators import set_fields

    changes = {key: value for key, value in (("name", args.name), ("email", args.email), ("admin", args.admin),
                                             ("language", args.language), ("timezone", args.timezone))
               if value is not None}
    if not changes:
        raise UsageError("nothing to change: give --name, --email, --admin or --no-admin, --language or --timezone")
    if changes.get("language") == BROWSER_LANGUAGE:
        changes["language"] = ""
    if changes.get("timezone") == DEFAULT_ZONE:
        changes["timezone"] = ""
    change(load_settings(args), lambda session: set_fields(session, args.username, **changes))
    print(f"operator {args.username}: {', '.join(_described(key, value) for key, value in changes.items())}")
    return EXIT_OK


def _described(key: str, value: object) -> str:
    if key == "admin":
        return "admin" if value else "not admin"
    if key == "language":
        return f"language {value or BROWSER_LANGUAGE}"
    if key == "timezone":
        return f"time zone {value or DEFAULT_ZONE}"
    return shown(f"{key} {value!r}" if value else f"{key} cleared")


def cmd_operator_enable(args: argparse.Namespace) -> int:
    from mailticket.service.operators import enable

    change(load_settings(args), lambda session: enable(session, args.username))
    print(f"operator {args.username} enabled")
    return EXIT_OK


def cmd_operator_disable(args: argparse.Namespace) -> int:
    from mailticket.service.operators import disable

    change(load_settings(args), lambda session: disable(session, args.username))
    print(f"operator {args.username} disabled")
    return EXIT_OK


def cmd_operator_password(args: argparse.Namespace) -> int:
    from mailticket.service.operators import check_password, set_password

    password = _read_password()
    try:
        check_password(password)  # before the config and database: a bad password is told at once
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    ended = change(load_settings(args), lambda session: set_password(session, args.username, password))
    print(f"password of operator {args.username} changed; {ended} browser session(s) ended")
    return EXIT_OK


def cmd_operator_token(args: argparse.Namespace) -> int:
    from mailticket.service.operators import new_token

    print(change(load_settings(args), lambda session: new_token(session, args.username)))
    return EXIT_OK
