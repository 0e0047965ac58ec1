"""`mailticket ticket list`: every ticket by default (read in chunks), or one page with `--limit N [--after ID]`.

A list never stops silently: when more tickets follow, standard error says how to get them ("more: --after ID"),
and standard output stays what scripts read (the table, or one plain JSON array).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from mailticket.cli_common import EXIT_OK, UsageError, load_settings, open_store, shown

# `ticket list --search` shows at most this many tickets, newest first (--limit changes it).
CLI_SEARCH_LIMIT = 500


def add_arguments(ticket_list: argparse.ArgumentParser) -> None:
    ticket_list.add_argument("--status", choices=("open", "pending", "resolved"))
    ticket_list.add_argument("--json", action="store_true")
    ticket_list.add_argument("--search", metavar="TEXT",
                             help="full-text search (subject, messages, addresses, names, ticket number), newest "
                                  f"first; at most {CLI_SEARCH_LIMIT} tickets unless --limit says otherwise")
    ticket_list.add_argument("--limit", type=_positive, metavar="N",
                             help="show at most N tickets; standard error then says how to get the next ones "
                                  "(default: all tickets)")
    ticket_list.add_argument("--after", type=_not_negative, default=0, metavar="ID",
                             help="continue after the ticket with this id (as the 'more: --after ID' hint says)")
    ticket_list.set_defaults(run=cmd_ticket_list)


def _positive(text: str) -> int:
    value = _not_negative(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {text}")
    return value


def _not_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def cmd_ticket_list(args: argparse.Namespace) -> int:
    from mailticket.service.ticket_pages import every_ticket, ticket_page
    from mailticket.service.tickets import search_tickets

    if args.search and args.after:
        raise UsageError("--after pages the ticket list by id, and a --search list is newest first: "
                         "add words to narrow the search, or raise --limit")
    store = open_store(load_settings(args))
    with store.reading() as session:
        if args.search:
            limit = args.limit or CLI_SEARCH_LIMIT
            rows = search_tickets(session, args.search, status=args.status, limit=limit + 1)
            more = len(rows) > limit
            write_tickets(rows[:limit], as_json=args.json)
            if more:
                print(f"mailticket: only the newest {limit} matching tickets are shown; add words to narrow the "
                      "search, or raise --limit", file=sys.stderr)
        elif args.limit:
            page = ticket_page(session, limit=args.limit, after=args.after, status=args.status)
            write_tickets(page.tickets, as_json=args.json)
            if page.next_after is not None:
                print(f"{len(page.tickets)} tickets shown; more: --after {page.next_after}", file=sys.stderr)
        else:
            write_tickets(every_ticket(session, after=args.after, status=args.status), as_json=args.json)
    return EXIT_OK


def write_tickets(rows: Iterable[dict[str, Any]], *, as_json: bool, out: TextIO | None = None) -> None:
    """The tickets as the table or as one JSON array, written as they come (the whole list is never held)."""
    out = out or sys.stdout
    if as_json:
        for part in json_array(rows):
            out.write(part)
        return
    out.write(f"{'ID':>6}  {'STATUS':<9} {'QUEUE':<12} {'CUSTOMER':<32} SUBJECT\n")
    for row in rows:
        out.write(shown(f"{row['id']:>6}  {row['status']:<9} {row['queue'][:12]:<12} {row['customer'][:32]:<32} "
                        f"{row['subject']}") + "\n")


def json_array(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """The text of json.dumps(list(rows), indent=2) plus a newline, one item at a time."""
    first = True
    for row in rows:
        # JSON strings hold no raw "\n", so indenting after each one indents only the structure (not splitlines:
        # it would also split at U+2028 and the like, which ensure_ascii=False leaves raw inside strings).
        item = "  " + json.dumps(row, indent=2, ensure_ascii=False).replace("\n", "\n  ")
        yield ("[\n" if first else ",\n") + item
        first = False
    yield "[]\n" if first else "\n]\n"
