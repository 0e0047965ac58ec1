"""One mail to the admins for each OAuth2 authorization that was lost, sent when due and retried until it goes."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from sqlalchemy import select, update

from mailticket import smtp
from mailticket.config import Settings
from mailticket.db.models import OAuthToken, Operator
from mailticket.db.store import Store
from mailticket.i18n import negotiate, translate
from mailticket.mail import address, compose
from mailticket.service import tokens
from mailticket.service.sla import AUTO_GENERATED

log = logging.getLogger(__name__)

SENDER_NAME = "mailticket"
NO_TICKET = 0  # the loop-guard header still marks it as ours; it belongs to no ticket


def label_in(language: str, auth: tokens.Authorization) -> str:
    """`auth.label` in `language`: "mailbox 'support'", "the SMTP relay"."""
    kind, _, mailbox = auth.name.partition(":")
    if kind == "mailbox":
        return translate(language, "mailbox %(name)s", name=repr(mailbox))
    return translate(language, "the SMTP relay")


def notice_subject(auth: tokens.Authorization, language: str = "en") -> str:
    return translate(language, "mailticket: %(mailbox)s needs authorization again", mailbox=label_in(language, auth))


def notice_text(settings: Settings, auth: tokens.Authorization, error: str, language: str = "en") -> str:
    """The admins' mail, in `language` (the operator pages' catalog: they read it as they read the pages)."""
    page = f"{settings.web.base_url.rstrip('/')}/admin/mailboxes"
    return "\n".join([
        translate(language, "mailticket can no longer log in to %(mailbox)s (%(user)s): the provider refused to renew "
                            "its access.", mailbox=label_in(language, auth), user=auth.username),
        "",
        translate(language, "The provider said: %(error)s", error=error),
        "",
        translate(language, "This happens after a password reset, a change of multi-factor authentication, a revoked "
                            "consent, or, with Google, an app left in \"Testing\" mode (its tokens last 7 days)."),
        translate(language, "Until it is authorized again, no mail is read from it; nothing is lost, the mail waits in "
                            "the mailbox."),
        translate(language, "The other mailboxes go on being read."),
        "",
        translate(language, "To authorize it again, open %(page)s and press Re-authorize, or run on the server:",
                  page=page),
        f"    {auth.command}",
    ]) + "\n"


def send_due(store: Store, settings: Settings, now: datetime) -> int:
    """Tells the admins about each lost authorization not told yet. The row is claimed before the mail goes (so two
    instances never both send) and given back if it could not go. Returns the number of mails sent."""
    known = tokens.authorizations(settings)
    if not known:
        return 0
    with store.transaction() as session:
        due = session.execute(
            update(OAuthToken)
            .where(OAuthToken.name.in_(known), OAuthToken.state == tokens.NEEDS_AUTHORIZATION,
                   OAuthToken.notice_sent_at.is_(None))
            .values(notice_sent_at=now).returning(OAuthToken.name, OAuthToken.error)
        ).all()
    sent = 0
    for name, error in due:
        if _tell_admins(store, settings, known[name], error, now):
            sent += 1
        elif settings.smtp.authorization != name:  # the relay may work next time; it cannot on its own lost token
            with store.transaction() as session:
                session.execute(update(OAuthToken).where(OAuthToken.name == name).values(notice_sent_at=None))
    return sent


def _sender(settings: Settings) -> str:
    """An address the relay lets us send as: the mailbox whose login it shares, or its own user name."""
    relay = settings.smtp
    if relay.authorization and relay.authorization.startswith("mailbox:"):
        return settings.mailbox(relay.authorization.partition(":")[2]).address
    if relay.username and address.is_valid(relay.username):
        return relay.username
    return settings.address_of(None)


def _tell_admins(store: Store, settings: Settings, auth: tokens.Authorization, error: str, now: datetime) -> bool:
    with store.reading() as session:
        found = session.execute(select(Operator.email, Operator.language).where(Operator.is_admin.is_(True),
                                                                                Operator.disabled.is_(False)))
        # Each admin in the pages' language they chose, else [web] language.
        languages = {a.strip().lower(): negotiate(language, None, settings.web.language)
                     for a, language in found if a and address.is_valid(a.strip())}
        admins = list(languages)
    if not admins:
        log.error("%s needs authorization again, and no admin has an e-mail address to be told", auth.label)
        return True  # nobody to tell: trying again would not change that
    if settings.smtp.authorization == auth.name:
        log.error("%s needs authorization again; the admins cannot be mailed, since the relay logs in with it",
                  auth.label)
        return False
    sender = _sender(settings)
    try:
        relay_token = None
        if settings.smtp.authorization:
            relay_token = tokens.access_token(store, settings, settings.smtp.authorization)
        for language in sorted(set(languages.values())):  # one mail per language
            readers = [a for a in admins if languages[a] == language]
            mail = compose.build(from_address=sender, from_name=SENDER_NAME, to=readers,
                                 subject=notice_subject(auth, language),
                                 body=notice_text(settings, auth, error, language), date=now, ticket_id=NO_TICKET,
                                 auto_submitted=AUTO_GENERATED)
            asyncio.run(smtp.send(settings.smtp, mail.raw, sender, readers, access_token=relay_token))
    except (tokens.TokenError, smtp.SmtpFailure) as exc:
        log.error("%s needs authorization again; the admins could not be mailed: %s", auth.label, exc)
        return False
    log.info("%s needs authorization again; told %s", auth.label, ", ".join(admins))
    return True
