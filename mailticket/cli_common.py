"""What every command shares: exit codes, the usage error, the settings and store of `-c CONFIG`, terminal-safe text."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path

from mailticket import config as config_module
from mailticket.config import Settings

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments that argparse cannot see (an unknown mailbox, a missing ticket)."""


# Most commands need only the database: they do not read the mailbox, relay or web secrets, which may exist only
# inside the running service (systemd credentials). The commands that talk to mail servers read them all.
DATABASE_ONLY = ("database",)
EVERY_SECRET = None


def load_settings(args: argparse.Namespace, *, secrets: tuple[str, ...] | None = DATABASE_ONLY) -> Settings:
    path = Path(args.config) if args.config else config_module.default_config_path()
    return config_module.load(path, reveal=secrets)


def change(settings: Settings, work: Callable):
    """Runs `work(session)` in one transaction; a refused change (a ValueError the service raises with its reason,
    such as ActionError or OperatorError) is a usage error: one line, exit 2."""
    store = open_store(settings)
    try:
        with store.transaction() as session:
            return work(session)
    except ValueError as refused:
        raise UsageError(str(refused)) from None
    finally:
        store.dispose()


def open_store(settings: Settings):
    from mailticket.db.store import Store

    return Store(settings.database.url)


# What mail may carry that a terminal would obey instead of show: escape sequences and other control characters
# (not tab and newline), and the marks that reorder a line ("gpj.exe" shown as "exe.jpg").
TERMINAL_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069]")


def shown(text: str) -> str:
    """Text from mail as a terminal shows it harmlessly: each unsafe character written as its escape (\\x1b)."""
    return TERMINAL_UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
