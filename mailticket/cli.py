"""The command line of SPEC §3: `mailticket [-c CONFIG] COMMAND`; exit 0 ok, 1 runtime failure, 2 bad usage or config."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict

from mailticket import cli_inbox, cli_mailbox
from mailticket.cli_common import (EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError, load_settings, open_store,
                                   shown)
from mailticket.config import ConfigError

# `ticket list --search` shows at most this many tickets, newest first.
CLI_SEARCH_LIMIT = 500


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailticket", description="E-mail ticketing daemon.")
    parser.add_argument("-c", "--config", help="config file (default: $MAILTICKET_CONFIG, then /etc/mailticket/config.toml)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("check-config", help="validate the config file and exit").set_defaults(run=cmd_check_config)
    commands.add_parser("migrate", help="upgrade the database schema (safe to repeat)").set_defaults(run=cmd_migrate)

    cli_mailbox.add_commands(commands)

    ticket = commands.add_parser("ticket", help="list or show tickets").add_subparsers(dest="ticket_command", required=True)
    ticket_list = ticket.add_parser("list")
    ticket_list.add_argument("--status", choices=("open", "pending", "resolved"))
    ticket_list.add_argument("--json", action="store_true")
    ticket_list.add_argument("--search", metavar="TEXT",
                             help="full-text search (subject, messages, addresses, names, ticket number), newest first")
    ticket_list.set_defaults(run=cmd_ticket_list)
    ticket_show = ticket.add_parser("show")
    ticket_show.add_argument("id", type=int)
    ticket_show.add_argument("--json", action="store_true")
    ticket_show.set_defaults(run=cmd_ticket_show)
    ticket_close = ticket.add_parser("close", help="resolve a ticket without notifying the customer (no survey mail)")
    ticket_close.add_argument("id", type=int)
    ticket_close.set_defaults(run=cmd_ticket_close)

    cli_inbox.add_commands(commands)

    outbox = commands.add_parser("outbox", help="the outgoing mail queue").add_subparsers(dest="outbox_command", required=True)
    flush = outbox.add_parser("flush", help="one sending pass")
    flush.add_argument("--json", action="store_true")
    flush.set_defaults(run=cmd_outbox_flush)

    # The timing report.
    report = commands.add_parser("report", help="timing report (SPEC §7) of the tickets created in a period")
    report.add_argument("--since", metavar="YYYY-MM-DD", help="first day (default: 29 days before --until)")
    report.add_argument("--until", metavar="YYYY-MM-DD", help="last day, included (default: today)")
    report.add_argument("--format", choices=("table", "json", "csv"), default="table")
    report.set_defaults(run=cmd_report)

    commands.add_parser("serve", help="run the daemon: web, poller, outbox, scheduler").set_defaults(run=cmd_serve)
    demo = commands.add_parser("demo", help="the whole product with sample mail, no config and no outside servers")
    demo.add_argument("--port", type=int, default=8025,
                      help="web port on 127.0.0.1 (default 8025; 0 picks a free one)")
    demo.set_defaults(run=cmd_demo)

    operator = commands.add_parser("operator", help="manage operators").add_subparsers(dest="operator_command", required=True)
    add = operator.add_parser("add", help="create an operator (password read from standard input)")
    add.add_argument("username")
    add.add_argument("--name", default="")
    add.add_argument("--email", default="")
    add.add_argument("--admin", action="store_true")
    add.add_argument("--password-stdin", action="store_true", required=True,
                     help="read the password from standard input (never from the command line)")
    add.set_defaults(run=cmd_operator_add)
    operator.add_parser("list").set_defaults(run=cmd_operator_list)
    disable = operator.add_parser("disable", help="disable an operator: sessions and token stop working at once")
    disable.add_argument("username")
    disable.set_defaults(run=cmd_operator_disable)
    token = operator.add_parser("token", help="print a new API token (replaces the old one)")
    token.add_argument("username")
    token.set_defaults(run=cmd_operator_token)
    return parser


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    print(f"{settings.path}: ok ({len(settings.mailboxes)} mailbox(es), database {_safe_url(settings.database.url)})")
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    from mailticket.db.migrate import current

    store = open_store(load_settings(args))
    store.migrate()
    print(f"database at revision {current(store.engine)}")
    return EXIT_OK


def cmd_ticket_list(args: argparse.Namespace) -> int:
    from mailticket.service.tickets import find_tickets, search_tickets

    store = open_store(load_settings(args))
    with store.reading() as session:
        if args.search:
            rows = search_tickets(session, args.search, status=args.status, limit=CLI_SEARCH_LIMIT)
        else:
            rows = find_tickets(session, status=args.status)
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return EXIT_OK
    print(f"{'ID':>6}  {'STATUS':<9} {'QUEUE':<12} {'CUSTOMER':<32} SUBJECT")
    for row in rows:
        print(shown(f"{row['id']:>6}  {row['status']:<9} {row['queue'][:12]:<12} {row['customer'][:32]:<32} "
                    f"{row['subject']}"))
    return EXIT_OK


def cmd_ticket_show(args: argparse.Namespace) -> int:
    from mailticket.service.tickets import ticket_detail

    store = open_store(load_settings(args))
    with store.reading() as session:
        detail = ticket_detail(session, args.id)
    if detail is None:
        raise UsageError(f"no ticket {args.id}")
    if args.json:
        print(json.dumps(detail, indent=2, ensure_ascii=False))
        return EXIT_OK
    print(shown(f"#{detail['id']} [{detail['status']}] {detail['subject']}"))
    print(shown(f"customer {detail['customer']}  queue {detail['queue']}  priority {detail['priority']}  "
                f"created {detail['created_at']}"))
    for message in detail["messages"]:
        flag = " (auto)" if message["autoreply"] else ""
        print(shown(f"\n--- {message['direction']} {message['date']} from {message['from']}{flag} "
                    f"[{message['matched_by']}]"))
        print(shown(message["subject"]))
        print(shown(message["text"].strip()))
        for attachment in message["attachments"]:
            print(shown(f"  [attachment] {attachment['name']} ({attachment['content_type']}, "
                        f"{attachment['size']} bytes)"))
    return EXIT_OK


def cmd_ticket_close(args: argparse.Namespace) -> int:
    from mailticket.db.models import RESOLVED
    from mailticket.db.store import db_now
    from mailticket.service.status import change_status
    from mailticket.service.tickets import TicketNotFound

    settings = load_settings(args)
    store = open_store(settings)
    try:
        with store.transaction() as session:
            changed = change_status(session, args.id, RESOLVED, actor=None, at=db_now(session), settings=settings,
                                    reason="closed without notifying", notify_customer=False)
    except TicketNotFound:
        raise UsageError(f"no ticket {args.id}") from None
    print(f"ticket {args.id} closed without notifying the customer" if changed else f"ticket {args.id} was resolved")
    return EXIT_OK


def cmd_outbox_flush(args: argparse.Namespace) -> int:
    from mailticket.service.outbox import flush_sync

    settings = load_settings(args)
    counts = asdict(flush_sync(open_store(settings), settings))
    print(json.dumps(counts) if args.json else "  ".join(f"{name} {value}" for name, value in counts.items()))
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    """Days are whole days in the business-hours time zone (else UTC), both ends included."""
    from mailticket.clock import utcnow
    from mailticket.reports import as_csv, as_json, as_table
    from mailticket.service import report_data

    settings = load_settings(args)
    zone = report_data.report_timezone(settings)
    try:
        period = report_data.parse_period(args.since, args.until, today=report_data.local_today(utcnow(), zone),
                                          zone=zone, names=("--since", "--until"))
    except report_data.BadPeriod as bad:
        raise UsageError(str(bad)) from None
    with open_store(settings).reading() as session:
        report = report_data.report(session, period)
    if args.format == "json":
        shown = {"since": period.first.isoformat(), "until": period.last.isoformat(), **as_json(report)}
        print(json.dumps(shown, indent=2, ensure_ascii=False))
    elif args.format == "csv":
        sys.stdout.write(as_csv(report))
    else:
        print(f"tickets created {period.first} to {period.last} ({zone})\n")
        sys.stdout.write(as_table(report))
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from mailticket.daemon import serve

    return serve(load_settings(args))


def cmd_demo(args: argparse.Namespace) -> int:
    from mailticket.demo.run import main as demo_main

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is not a port number (0 to 65535)")
    return demo_main(args.port)


def _operator_change(args: argparse.Namespace, change: Callable) -> object:
    """Runs one operator change in a transaction; a refused change is a usage error (exit 2)."""
    from mailticket.service.operators import OperatorError

    store = open_store(load_settings(args))
    try:
        with store.transaction() as session:
            return change(session)
    except OperatorError as exc:
        raise UsageError(str(exc)) from None


def cmd_operator_add(args: argparse.Namespace) -> int:
    from mailticket.clock import utcnow
    from mailticket.service.operators import add_operator

    password = sys.stdin.readline().rstrip("\r\n")
    _operator_change(args, lambda session: add_operator(
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
            print(f"{op.username:<20} {op.name[:24]:<24} {'admin' if op.is_admin else 'operator':<9} "
                  f"{'disabled' if op.disabled else 'active':<9} {'yes' if op.token_hash else 'no'}")
    return EXIT_OK


def cmd_operator_disable(args: argparse.Namespace) -> int:
    from mailticket.service.operators import disable

    _operator_change(args, lambda session: disable(session, args.username))
    print(f"operator {args.username} disabled")
    return EXIT_OK


def cmd_operator_token(args: argparse.Namespace) -> int:
    from mailticket.service.operators import new_token

    print(_operator_change(args, lambda session: new_token(session, args.username)))
    return EXIT_OK


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except (ConfigError, UsageError) as exc:
        print(f"mailticket: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_FAILURE
    except Exception as exc:  # noqa: BLE001 - a runtime failure is one line, not a traceback
        logging.getLogger("mailticket").debug("failure", exc_info=True)
        print(f"mailticket: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    raise SystemExit(main())
