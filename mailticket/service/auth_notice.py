"""One mail to the admins when a mailbox's OAuth2 authorization is lost, sent at once (it belongs to no ticket)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from sqlalchemy import select

from mailticket import smtp
from mailticket.config import Settings
from mailticket.db.models import Operator
from mailticket.db.store import Store
from mailticket.mail import address, compose
from mailticket.service.sla import AUTO_GENERATED
from mailticket.service import tokens

log = logging.getLogger(__name__)

SENDER_NAME = "mailticket"
NO_TICKET = 0  # the loop-guard header still marks it as ours; it belongs to no ticket


def notice_text(settings: Settings, auth: tokens.Authorization, error: str) -> str:
    page = f"{settings.web.base_url.rstrip('/')}/admin/mailboxes"
    return "\n".join([
        f"mailticket can no longer log in to {auth.label} ({auth.username}): the provider refused to renew its "
        "access.",
        "",
        f"The provider said: {error}",
        "",
        "This happens after a password reset, a change of multi-factor authentication, a revoked consent, or, "
        "with Google, an app left in \"Testing\" mode (its tokens last 7 days).",
        "Until it is authorized again, no mail is read from it; nothing is lost, the mail waits in the mailbox.",
        "The other mailboxes go on being read.",
        "",
        f"To authorize it again, open {page} and press Re-authorize, or run on the server:",
        f"    {auth.command}",
    ]) + "\n"


def tell_admins(store: Store, settings: Settings, auth: tokens.Authorization, error: str, now: datetime) -> bool:
    """Sends the notice to every admin with an address; False (and a log line) when it could not be sent."""
    with store.reading() as session:
        admins = [a.strip().lower() for a in session.scalars(
            select(Operator.email).where(Operator.is_admin.is_(True), Operator.disabled.is_(False)))
            if a and address.is_valid(a.strip())]
    admins = list(dict.fromkeys(admins))
    if not admins:
        log.error("%s needs authorization again, and no admin has an e-mail address to be told", auth.label)
        return False
    sender = settings.mailboxes[0].address if settings.mailboxes else settings.address_of(None)
    mail = compose.build(from_address=sender, from_name=SENDER_NAME, to=admins,
                         subject=f"mailticket: {auth.label} needs authorization again", body=notice_text(settings, auth, error),
                         date=now, ticket_id=NO_TICKET, auto_submitted=AUTO_GENERATED)
    try:
        relay_token = None
        if settings.smtp.authorization:
            relay_token = tokens.access_token(store, settings, settings.smtp.authorization)
        asyncio.run(smtp.send(settings.smtp, mail.raw, sender, admins, access_token=relay_token))
    except (tokens.TokenError, smtp.SmtpFailure) as exc:
        log.error("%s needs authorization again; the admins could not be mailed: %s", auth.label, exc)
        return False
    log.info("%s needs authorization again; told %s", auth.label, ", ".join(admins))
    return True
