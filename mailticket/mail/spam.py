"""The spam verdict a mailbox's own mail server wrote into a message's headers. Anyone can write such headers, so
it counts only for a mailbox whose admin trusts them (`[[mailbox]] spam_headers = true`)."""

from __future__ import annotations

import re

from mailticket.mail.parse import Inbound

# SpamAssassin: "X-Spam-Flag: YES", "X-Spam-Status: Yes, score=9.1 ...".
SPAM_FLAG = re.compile(r"^\s*yes\b", re.IGNORECASE)
# rspamd: "X-Spamd-Result: default: True [15.20 / 15.00]"; "X-Rspamd-Action: add header" (or reject, rewrite subject).
RSPAMD_RESULT = re.compile(r"^\s*default\s*:\s*true\b", re.IGNORECASE)
RSPAMD_SPAM_ACTIONS = frozenset({"reject", "add header", "rewrite subject", "soft reject"})
# Microsoft 365 / Exchange: a spam confidence level of 5 or more is spam.
SCL_SPAM = 5


def verdict(msg: Inbound) -> str | None:
    """The header that says the message is spam, as "Name: value"; None when none says so."""
    for name, test in (("x-spam-flag", SPAM_FLAG.match), ("x-spam-status", SPAM_FLAG.match),
                       ("x-spamd-result", RSPAMD_RESULT.match),
                       ("x-rspamd-action", lambda v: v.strip().lower() in RSPAMD_SPAM_ACTIONS),
                       ("x-ms-exchange-organization-scl", _scl_spam)):
        value = msg.header(name)
        if value is not None and test(value):
            return f"{name}: {value.strip()[:100]}"
    return None


def _scl_spam(value: str) -> bool:
    value = value.strip()
    return value.isascii() and value.isdecimal() and int(value) >= SCL_SPAM
