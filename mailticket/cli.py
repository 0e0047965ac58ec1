"""The command line: `mailticket [-c CONFIG] COMMAND`; exit 0 ok, 1 runtime failure, 2 bad usage or config."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import datetime

from mailticket import __version__, cli_backup, cli_init, cli_inbox, cli_list, cli_mailbox, cli_operators
from mailticket.cli_common import (EVERY_SECRET, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError, load_settings,
                                   open_store, shown)
from mailticket.config import ConfigError
from mailticket.demo import features as demo_features


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailticket", description="E-mail ticketing daemon.")
    parser.add_argument("--version", action="version", version=f"mailticket {__version__}")
    parser.add_argument("-c", "--config", help="config file (default: $MAILTICKET_CONFIG, then /etc/mailticket/config.toml)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("check-config", help="validate the config file and exit").set_defaults(run=cmd_check_config)
    commands.add_parser("migrate", help="upgrade the database schema (safe to repeat)").set_defaults(run=cmd_migrate)
    cli_backup.add_commands(commands)

    cli_init.add_commands(commands)
    cli_mailbox.add_commands(commands)

    ticket = commands.add_parser("ticket", help="list or show tickets").add_subparsers(dest="ticket_command", required=True)
    # --status, --json, --search, --limit, --after: mailticket/cli_list.py.
    cli_list.add_arguments(ticket.add_parser("list", help="the tickets, all of them unless --limit N"))
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
    report = commands.add_parser("report", help="timing report (first response, handle and resolution times) of the tickets created in a period")
    report.add_argument("--since", metavar="YYYY-MM-DD", help="first day (default: 29 days before --until)")
    report.add_argument("--until", metavar="YYYY-MM-DD", help="last day, included (default: today)")
    report.add_argument("--format", choices=("table", "json", "csv"), default="table")
    report.set_defaults(run=cmd_report)

    commands.add_parser("serve", help="run the daemon: web, poller, outbox, scheduler").set_defaults(run=cmd_serve)
    demo = commands.add_parser("demo", help="the whole product with sample mail, no config and no outside servers")
    demo.add_argument("--port", type=int, default=8025,
                      help="web port on 127.0.0.1 (default 8025; 0 picks a free one)")
    demo.add_argument("--language", choices=demo_features.LANGUAGES, default=demo_features.DEFAULT_LANGUAGE,
                      help="the pages' and the customer mail's language (default: pt-BR, as the sample shop's)")
    demo.set_defaults(run=cmd_demo)

    cli_operators.add_commands(commands)
    return parser


def cmd_check_config(args: argparse.Namespace) -> int:
    from mailticket.service.letter_check import problems

    settings = load_settings(args, secrets=EVERY_SECRET)
    if found := problems(settings):  # the customers' templates: each one used exists and renders
        raise ConfigError("\n".join(f"{settings.path}: {problem}." for problem in found))
    print(f"{settings.path}: ok ({len(settings.mailboxes)} mailbox(es), database {_safe_url(settings.database.url)})")
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    from mailticket.db.migrate import current

    store = open_store(load_settings(args))
    store.migrate()
    print(f"database at revision {current(store.engine)}")
    return EXIT_OK


def cmd_ticket_show(args: argparse.Namespace) -> int:
    from mailticket.localtime import cli_time
    from mailticket.service.tickets import ticket_detail

    settings = load_settings(args)
    with open_store(settings).reading() as session:
        detail = ticket_detail(session, args.id)
    if detail is None:
        raise UsageError(f"no ticket {args.id}")
    if args.json:
        print(json.dumps(detail, indent=2, ensure_ascii=False))
        return EXIT_OK
    print(shown(f"#{detail['id']} [{detail['status']}] {detail['subject']}"))
    print(shown(f"customer {detail['customer']}  queue {detail['queue']}  priority {detail['priority']}  "
                f"created {cli_time(_parsed(detail['created_at']), settings.web.timezone)}"))
    for message in detail["messages"]:
        flag = " (auto)" if message["autoreply"] else ""
        print(shown(f"\n--- {message['direction']} {cli_time(_parsed(message['date']), settings.web.timezone)} "
                    f"from {message['from']}{flag} "
                    f"[{message['matched_by']}]"))
        print(shown(message["subject"]))
        print(shown(message["text"].strip()))
        for attachment in message["attachments"]:
            print(shown(f"  [attachment] {attachment['name']} ({attachment['content_type']}, "
                        f"{attachment['size']} bytes)"))
    return EXIT_OK


def _parsed(iso: str | None) -> datetime | None:
    return datetime.fromisoformat(iso) if iso else None


def cmd_ticket_close(args: argparse.Namespace) -> int:
    from mailticket.claims import HeldByOther
    from mailticket.db.models import RESOLVED
    from mailticket.db.store import db_now
    from mailticket.service.claims import only_the_holder
    from mailticket.service.status import change_status
    from mailticket.service.tickets import TicketNotFound

    settings = load_settings(args)
    store = open_store(settings)
    try:
        with store.transaction() as session:
            now = db_now(session)
            only_the_holder(session, args.id, None, now)  # as on the pages: the one answering it changes it
            changed = change_status(session, args.id, RESOLVED, actor=None, at=now, settings=settings,
                                    reason="closed without notifying", notify_customer=False)
    except TicketNotFound:
        raise UsageError(f"no ticket {args.id}") from None
    except HeldByOther as refused:
        raise UsageError(f"ticket {args.id}: {refused}") from None
    print(f"ticket {args.id} closed without notifying the customer" if changed else f"ticket {args.id} was resolved")
    return EXIT_OK


def cmd_outbox_flush(args: argparse.Namespace) -> int:
    from mailticket.service.outbox import flush_sync

    settings = load_settings(args, secrets=EVERY_SECRET)
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

    return serve(load_settings(args, secrets=EVERY_SECRET))


def cmd_demo(args: argparse.Namespace) -> int:
    from mailticket.demo.run import main as demo_main

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is not a port number (0 to 65535)")
    return demo_main(args.port, args.language)


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
