"""Words for the stored values a page shows (statuses, priorities, history entries, mailbox states): the value is the
English word, marked here for the catalog and translated where shown (`{{ t.status|label("status") }}`).

Form values stay the stored values; only what a person reads is translated. A value not listed is shown as it is.
"""

from __future__ import annotations

import re

from jinja2 import pass_context
from jinja2.runtime import Context

from mailticket.i18n import N_, SOURCE_LANGUAGE, translate

# "pgettext"-free: each word has one meaning across the pages (the catalog names where it is used).
LABELS: dict[str, frozenset[str]] = {
    "status": frozenset({N_("open"), N_("pending"), N_("resolved"), N_("spam")}),
    "priority": frozenset({N_("low"), N_("normal"), N_("high"), N_("urgent")}),
    # What the reply's outbox row is doing.
    "delivery": frozenset({N_("queued"), N_("sending"), N_("sent"), N_("failed")}),
    # Why a message is no customer's own mail (mailticket.mail.loops).
    "loop": frozenset({N_("auto-reply"), N_("bulk"), N_("bounce"), N_("own")}),
    # The ticket's history (service/history.py and the others that record).
    "event": frozenset({
        N_("created"), N_("claimed"), N_("renewed"), N_("released"), N_("expired"), N_("broken"), N_("replied"),
        N_("note"), N_("status"), N_("priority"), N_("queue"), N_("forwarded"), N_("merged"), N_("blocked"),
        N_("unblocked"), N_("sla-breach"), N_("escalated"), N_("bounced"), N_("undelivered"), N_("survey-sent"),
        N_("survey-answered"), N_("received"),
    }),
    # The mailboxes page: how each mailbox logs in, and how that goes.
    "mailbox_state": frozenset({N_("ok"), N_("needs-authorization"), N_("error")}),
    "auth": frozenset({N_("password"), N_("oauth2")}),
    "flow": frozenset({N_("device"), N_("browser"), N_("client_credentials")}),
}


def label_in(language: str, value: str | None, kind: str) -> str:
    """`value` (of the `kind` of LABELS) in `language`; a value not listed (or None: "") as it is."""
    if value is None:
        return ""
    return translate(language, value) if value in LABELS[kind] else value


@pass_context
def label(context: Context, value: str | None, kind: str) -> str:
    """The template filter: the page's language is the render context's `lang`."""
    return label_in(context.get("lang") or SOURCE_LANGUAGE, value, kind)


def _details(*pairs: tuple[str, str]) -> tuple[tuple[re.Pattern[str], str], ...]:
    return tuple((re.compile(pattern), message) for pattern, message in pairs)


# A history entry's detail is stored in English, as the service wrote it: shown in the page's language by these
# patterns (per event kind). A detail that matches none is shown as it is.
UNTIL = (r"until (?P<time>\S+)", N_("until %(time)s"))
MESSAGE_TO = (r"message (?P<id>\S+) to (?P<to>.+)", N_("message %(id)s to %(to)s"))
DETAILS: dict[str, tuple[tuple[re.Pattern[str], str], ...]] = {
    "claimed": _details(UNTIL),
    "renewed": _details(UNTIL),
    "released": _details((r"after reply", N_("after reply"))),
    "expired": _details((r"taken over by (?P<name>.+)", N_("taken over by %(name)s"))),
    "broken": _details((r"claim of (?P<name>.+)", N_("claim of %(name)s"))),
    "created": _details((r"from (?P<customer>.+)", N_("from %(customer)s"))),
    "received": _details((r"from (?P<customer>.+)", N_("from %(customer)s"))),
    "replied": _details((r"message (?P<id>\S+)", N_("message %(id)s"))),
    "forwarded": _details(MESSAGE_TO),
    "survey-sent": _details(MESSAGE_TO),
    "survey-answered": _details((r"rating (?P<rating>\d+)/5", N_("rating %(rating)s/5"))),
    "merged": _details((r"merged into #(?P<id>\d+)", N_("merged into #%(id)s")),
                       (r"#(?P<id>\d+) merged into this ticket", N_("#%(id)s merged into this ticket"))),
    "blocked": _details((r"mail from (?P<pattern>.+) goes to Spam", N_("mail from %(pattern)s goes to Spam"))),
    "unblocked": _details((r"mail from (?P<pattern>.+) is read again", N_("mail from %(pattern)s is read again"))),
}
# "open -> resolved (marked as spam)": a change of a field, and why.
CHANGE = re.compile(r"(?P<old>.*?) -> (?P<new>.*?)(?: \((?P<reason>[^()]*)\))?")
CHANGED_FIELDS = ("status", "priority", "queue")
REASONS = frozenset({N_("closed without notifying"), N_("merged"), N_("marked as spam"), N_("not spam"),
                     N_("a reply could not be delivered")})


def detail_in(language: str, detail: str, kind: str) -> str:
    """A history entry's `detail` (of event `kind`) in `language`."""
    if language == SOURCE_LANGUAGE or not detail:
        return detail
    if kind in CHANGED_FIELDS and (change := CHANGE.fullmatch(detail)):
        old, new, reason = change["old"], change["new"], change["reason"]
        if kind != "queue":  # queue names are the shop's own words
            old, new = label_in(language, old, kind), label_in(language, new, kind)
        why = f" ({translate(language, reason) if reason in REASONS else reason})" if reason else ""
        return f"{old} -> {new}{why}"
    for pattern, message in DETAILS.get(kind, ()):
        if found := pattern.fullmatch(detail):
            return translate(language, message, **found.groupdict())
    return detail


@pass_context
def detail(context: Context, text: str, kind: str) -> str:
    """The template filter for history details: `{{ e.detail|detail(e.kind)|readable }}`."""
    return detail_in(context.get("lang") or SOURCE_LANGUAGE, text, kind)
