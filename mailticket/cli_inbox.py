"""The commands that keep an inbox clean: blocked senders (`block`) and quarantined mail (`quarantine`)."""

from __future__ import annotations

import argparse
import json

from mailticket.cli_common import EXIT_FAILURE, EXIT_OK, UsageError, change, load_settings, open_store, shown
from mailticket.service.errors import ActionError


def add_commands(commands) -> None:
    block = commands.add_parser("block", help="senders whose mail goes straight to Spam").add_subparsers(
        dest="block_command", required=True)
    block.add_parser("list", help="the blocked addresses and domains").set_defaults(run=cmd_block_list)
    block_add = block.add_parser("add", help="block an address or a whole domain")
    block_add.add_argument("pattern", metavar="ADDRESS_OR_DOMAIN")
    block_add.set_defaults(run=cmd_block_add)
    block_remove = block.add_parser("remove", help="lift a block")
    block_remove.add_argument("pattern", metavar="ADDRESS_OR_DOMAIN")
    block_remove.set_defaults(run=cmd_block_remove)

    quarantine = commands.add_parser("quarantine", help="mail that could not become a ticket").add_subparsers(
        dest="quarantine_command", required=True)
    quarantine_list = quarantine.add_parser("list", help="every quarantined message, newest first")
    quarantine_list.add_argument("--json", action="store_true")
    quarantine_list.set_defaults(run=cmd_quarantine_list)
    for name, run, text in (("show", cmd_quarantine_show, "a message's reason and headers"),
                            ("release", cmd_quarantine_release, "read it again; into a ticket if it passes now"),
                            ("delete", cmd_quarantine_delete, "delete it for good")):
        command = quarantine.add_parser(name, help=text)
        command.add_argument("id", type=int)
        command.set_defaults(run=run)


def cmd_block_list(args: argparse.Namespace) -> int:
    from mailticket.localtime import cli_time
    from mailticket.service import blocks

    settings = load_settings(args)
    with open_store(settings).reading() as session:
        for blocked in blocks.blocked(session):
            print(shown(f"{blocked.pattern}  (by {blocked.created_by or '-'}, "
                        f"{cli_time(blocked.created_at, settings.web.timezone)})"))
    return EXIT_OK


def cmd_block_add(args: argparse.Namespace) -> int:
    from mailticket.clock import utcnow
    from mailticket.service import blocks

    pattern = change(load_settings(args), lambda session: blocks.block(session, args.pattern, by=None, now=utcnow()))
    print(f"mail from {pattern} goes to Spam from now on")
    return EXIT_OK


def cmd_block_remove(args: argparse.Namespace) -> int:
    from mailticket.service import blocks

    lifted = change(load_settings(args), lambda session: blocks.unblock(session, args.pattern))
    print(f"mail from {args.pattern.strip().lower()} is read again" if lifted else f"{args.pattern} was not blocked")
    return EXIT_OK if lifted else EXIT_FAILURE


def _quarantine_entry(entry) -> dict:
    return {"id": entry.id, "mailbox": entry.mailbox, "folder": entry.folder, "uid": entry.uid, "size": entry.size,
            "received_at": entry.received_at.isoformat() if entry.received_at else None,
            "quarantined_at": entry.created_at.isoformat(), "reason": entry.reason}


def cmd_quarantine_list(args: argparse.Namespace) -> int:
    from mailticket.service import quarantine_admin

    store = open_store(load_settings(args))
    with store.reading() as session:
        rows = [_quarantine_entry(entry) for entry in quarantine_admin.entries(session)]
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return EXIT_OK
    print(f"{'ID':>6}  {'RECEIVED':<16}  {'SIZE':>10}  REASON")
    for row in rows:
        print(shown(f"{row['id']:>6}  {(row['received_at'] or '')[:16]:<16}  {row['size']:>10}  {row['reason']}"))
    return EXIT_OK


def cmd_quarantine_show(args: argparse.Namespace) -> int:
    from mailticket.service import quarantine_admin

    store = open_store(load_settings(args))
    try:
        with store.reading() as session:
            entry = quarantine_admin.entry(session, args.id)
            row, headers = _quarantine_entry(entry), quarantine_admin.header_block(entry.raw)
    except ActionError as missing:
        raise UsageError(str(missing)) from None
    for key, value in row.items():
        print(shown(f"{key}: {value}"))
    print()
    print(shown(headers))
    return EXIT_OK


def cmd_quarantine_release(args: argparse.Namespace) -> int:
    from mailticket.clock import utcnow
    from mailticket.service import quarantine_admin

    settings = load_settings(args)
    released = change(settings, lambda session: quarantine_admin.release(session, args.id, settings, utcnow()))
    if released.still_quarantined:
        print(shown(f"still quarantined: {released.outcome.reason}"))
        return EXIT_FAILURE
    print(f"released: {released.outcome.result}, ticket {released.outcome.ticket_id}")
    return EXIT_OK


def cmd_quarantine_delete(args: argparse.Namespace) -> int:
    from mailticket.service import quarantine_admin

    change(load_settings(args), lambda session: quarantine_admin.remove(session, args.id))
    print(f"quarantined message {args.id} deleted")
    return EXIT_OK
