"""`mailticket check-config`'s look at the customers' templates: every one the config uses exists and renders.

The templates used are the acknowledgement (when `[autoreply] enabled`), the resolution mail and the survey page
(when `[csat] enabled`), in each language the mailboxes speak, shipped or overridden in `[templates] dir`. Each is
rendered with sample values, along each of its branches the samples reach (with and without a promised time, the
survey page's form, thanks and refusals), so that a misspelt variable is found now, not when a customer writes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import jinja2

from mailticket import letters
from mailticket.config import Settings
from mailticket.service import acks, csat

# A sample ticket, and a due time on a Monday.
SAMPLE_DUE = datetime(2026, 11, 30, 16, 0, tzinfo=timezone.utc)
SAMPLE_TICKET = 12
SAMPLE_SUBJECT = "Pedido 1234 não chegou"
SAMPLE_CUSTOMER = ("ana@cliente.example", "Ana Souza")
SAMPLE_URL = "https://support.example/csat/sample-token"


def problems(settings: Settings) -> list[str]:
    """One sentence per template that is missing or does not render, naming its file; [] when all is well."""
    folders = letters.template_dirs(settings)
    if settings.templates.dir and not Path(folders[0]).is_dir():
        return [f"templates.dir names {folders[0]}, which is not a folder"]
    found: dict[str, None] = {}
    for language, mailbox in _mailboxes(settings):
        for what, name, render in _uses(settings, language, mailbox):
            try:
                render()
            except jinja2.TemplateNotFound as missing:
                where = (f"neither in {folders[0]} nor among the shipped templates" if len(folders) > 1
                         else f"not among the shipped templates ({folders[0]})")
                found[f"the template {missing.name} ({what}) is {where}"] = None
            except jinja2.TemplateSyntaxError as broken:
                found[f"{broken.filename or name}: line {broken.lineno}: {broken.message} ({what})"] = None
            except Exception as broken:  # noqa: BLE001 - a template is the shop's code: anything it raises is reported
                found[f"{_file(settings, name)}: cannot be rendered with sample values ({what}): "
                      f"{type(broken).__name__}: {broken}"] = None
    return list(found)


def _mailboxes(settings: Settings) -> list[tuple[str, str | None]]:
    """One mailbox for each language the mailboxes speak (none at all: English, through no mailbox)."""
    chosen: dict[str, str | None] = {}
    for box in settings.mailboxes:
        chosen.setdefault(letters.language_of(settings, box.name), box.name)
    return list(chosen.items()) or [(letters.DEFAULT_LANGUAGE, None)]


def _uses(settings: Settings, language: str, mailbox: str | None) -> list[tuple[str, str, Callable[[], object]]]:
    """(what it is for, template name, a render with sample values) for each template this language uses."""
    uses: list[tuple[str, str, Callable[[], object]]] = []
    subject, (customer, customer_name) = SAMPLE_SUBJECT, SAMPLE_CUSTOMER
    if settings.autoreply.enabled:
        name = letters.ack_template(settings, language)
        for due in (SAMPLE_DUE, None):
            what = "the acknowledgement" + ("" if settings.autoreply.template else f", {language}")
            uses.append((what, name, lambda due=due: acks.ack_letter(
                settings, ticket_id=SAMPLE_TICKET, subject=subject, queue="default", priority="normal",
                sender=customer, mailbox=mailbox, due=due)))
    if settings.csat.enabled:
        uses.append((f"the resolution mail, {language}", letters.resolved_template(language),
                     lambda: csat.survey_letter(settings, ticket_id=SAMPLE_TICKET, subject=subject, mailbox=mailbox,
                                                customer_name=customer_name, url=SAMPLE_URL)))
        ticket = csat.SurveyTicket(SAMPLE_TICKET, subject, f"[#{SAMPLE_TICKET}]", mailbox)
        states = (dict(status=200, ticket=ticket), dict(status=200, ticket=ticket, answer=csat.Answer(4, "")),
                  dict(status=200, ticket=ticket, answer=csat.Answer(5, "Obrigado"), thanked=True),
                  dict(status=422, ticket=ticket, answer=csat.Answer(0, "Rápido"), error="bad_rating"),
                  dict(status=400, ticket=None, refused="invalid"), dict(status=410, ticket=ticket, refused="expired"))
        for state in states:
            context = {"answer": None, "token": "sample-token", "refused": None, "thanked": False, "error": None,
                       **state}
            uses.append((f"the survey page, {language}", letters.SURVEY_PAGE,
                         lambda context=context: letters.render_survey_page(
                             settings, language, ratings=csat.RATINGS, max_comment=csat.MAX_COMMENT_CHARS,
                             **context)))
    return uses


def _file(settings: Settings, name: str) -> str:
    """The file a template name stands for: the shop's own when it has one, else the shipped one."""
    for folder in letters.template_dirs(settings):
        if (Path(folder) / name).is_file():
            return str(Path(folder) / name)
    return name
