"""What customers receive, in the language of the mailbox they wrote to: the mail templates and the survey page.

Templates are the shipped ones in templates/ unless `[templates] dir` holds a file of the same name, which wins.
A mail template may begin with a line `Subject: ...`: that is the mail's subject, and the blank lines after it are
not part of the body; without one, the subject is the reply subject ("Re: Order 77 is late [#12]"). The customers'
pages and mail carry the shop's name (`[web] shop_name`, else `[smtp] from_name`), never "mailticket".
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from babel.dates import format_datetime
from babel.numbers import format_decimal

from mailticket.config import Settings
from mailticket.mail import compose
from mailticket.resources import resource_dir

DEFAULT_LANGUAGE = "en"
# A language's templates end in its suffix (ack_pt.txt, resolved_en.txt); Babel knows it by its locale.
SUFFIXES = {"pt-BR": "pt", "en": "en"}
# What a template may name its language by in the `moment` filter: as in the config, or as its file suffix.
LANGUAGE_NAMES = {**{language: language for language in SUFFIXES}, **{suffix: l for l, suffix in SUFFIXES.items()}}
LOCALES = {"pt-BR": "pt_BR", "en": "en"}
# The first-response promise, a moment the customer reads at a glance: "segunda-feira, 30/11, às 18:00".
PROMISE_FORMATS = {"pt-BR": "EEEE, dd/MM, 'às' HH:mm", "en": "EEEE, d MMMM, HH:mm"}
NO_SUBJECT = {"pt-BR": "(sem assunto)", "en": "(no subject)"}
SUBJECT_LINE = "Subject:"
SURVEY_PAGE = "csat.html"
ONE_MINUTE = timedelta(minutes=1)

# The survey page's words. `{ticket}` is the tag and the subject, `{tag}` the tag alone.
SURVEY_TEXT: dict[str, dict[str, str]] = {
    "en": {
        "heading": "How did we do?",
        "resolved": "Ticket {ticket} is resolved. Please rate our help.",
        "previous": "Your earlier answer: {rating}/5. A new answer replaces it.",
        "thanks": "Thank you for your answer!",
        "rated": "You rated ticket {tag} {rating}/5. You may change your answer below; the newest one counts.",
        "legend": "Your rating, from 1 (very unhappy) to 5 (very happy)",
        "comment": "Comment (optional)",
        "send": "Send",
        "expired_title": "This link has expired",
        "invalid_title": "This link is not valid",
        "still_need_help": "If you still need help, simply reply to our last e-mail.",
        "invalid": "This survey link is not valid: it may have been mistyped or cut short.",
        "expired": "This survey link has expired: it was valid for {days} days.",
        "bad_rating": "Choose a rating from 1 (very unhappy) to 5 (very happy).",
    },
    "pt-BR": {
        "heading": "Como foi o nosso atendimento?",
        "resolved": "O ticket {ticket} foi resolvido. Por favor, avalie o nosso atendimento.",
        "previous": "Sua resposta anterior: {rating}/5. Uma nova resposta substitui a anterior.",
        "thanks": "Obrigado pela sua resposta!",
        "rated": "Você deu nota {rating}/5 ao ticket {tag}. Pode mudar a sua resposta abaixo; vale a mais recente.",
        "legend": "Sua nota, de 1 (muito insatisfeito) a 5 (muito satisfeito)",
        "comment": "Comentário (opcional)",
        "send": "Enviar",
        "expired_title": "Este link expirou",
        "invalid_title": "Este link não é válido",
        "still_need_help": "Se ainda precisar de ajuda, basta responder ao nosso último e-mail.",
        "invalid": "Este link de avaliação não é válido: pode ter sido digitado errado ou estar incompleto.",
        "expired": "Este link de avaliação expirou: ele era válido por {days} dias.",
        "bad_rating": "Escolha uma nota de 1 (muito insatisfeito) a 5 (muito satisfeito).",
    },
}


@dataclass(frozen=True)
class Letter:
    """A rendered mail template: its subject and its body."""

    subject: str
    body: str


def language_of(settings: Settings, mailbox: str | None) -> str:
    """The customers' language of a mailbox ("pt-BR" or "en"); for mail that came through none we know, the first
    mailbox's; "en" without mailboxes."""
    boxes = [box for box in settings.mailboxes if box.name == mailbox] or list(settings.mailboxes[:1])
    language = boxes[0].language if boxes else DEFAULT_LANGUAGE
    return language if language in SUFFIXES else DEFAULT_LANGUAGE


def languages(settings: Settings) -> tuple[str, ...]:
    """Every language the configured mailboxes write to customers in."""
    return tuple(dict.fromkeys(language_of(settings, box.name) for box in settings.mailboxes)) or (DEFAULT_LANGUAGE,)


def shop_name(settings: Settings) -> str:
    return settings.web.shop_name or settings.smtp.from_name


def ack_template(settings: Settings, language: str) -> str:
    """`[autoreply] template` when the file sets it (it then serves every mailbox), else ack_pt.txt / ack_en.txt."""
    return settings.autoreply.template or f"ack_{SUFFIXES[language]}.txt"


def resolved_template(language: str) -> str:
    return f"resolved_{SUFFIXES[language]}.txt"


def template_dirs(settings: Settings) -> tuple[str, ...]:
    """Where templates are looked for, first match wins: `[templates] dir` (a relative path starts at the config
    file's folder), then the shipped ones."""
    shipped = str(resource_dir("templates"))
    own = settings.templates.dir
    if not own:
        return (shipped,)
    folder = Path(own).expanduser()
    if not folder.is_absolute() and settings.path is not None:
        folder = settings.path.parent / folder
    return (str(folder), shipped)


def environment(settings: Settings, *, html: bool = False) -> jinja2.Environment:
    return _environment(template_dirs(settings), html)


@functools.cache
def _environment(folders: tuple[str, ...], html: bool) -> jinja2.Environment:
    # Mail is plain text: nothing to escape; the survey page is HTML: everything escaped. A variable the template
    # names but is not given is an error, not a blank.
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(list(folders)), autoescape=html, undefined=jinja2.StrictUndefined,
        keep_trailing_newline=not html, trim_blocks=True, lstrip_blocks=True,
    )
    env.filters["moment"] = _moment_filter
    return env


def tagged_subject(subject: str, tag: str, language: str) -> str:
    """The ticket's subject with its tag: "Pedido 77 atrasado [#12]"; "(sem assunto) [#12]" for none."""
    subject = " ".join((subject or "").split()) or NO_SUBJECT[language]
    return subject if tag in subject else f"{subject} {tag}"


def reply_subject(subject: str, tag: str, language: str) -> str:
    """What threads under the customer's message: "Re: Pedido 77 atrasado [#12]"."""
    return compose.reply_subject(tagged_subject(subject, tag, language), tag)


def render_mail(env: jinja2.Environment, name: str, *, reply_subject: str, **context: Any) -> Letter:
    """Renders a mail template (which sees reply_subject too); its subject is its Subject line, else reply_subject.
    jinja2.TemplateError (TemplateNotFound included) when it cannot be rendered."""
    text = env.get_template(name).render(reply_subject=reply_subject, **context)
    first, _, rest = text.partition("\n")
    if not first.startswith(SUBJECT_LINE):
        return Letter(reply_subject, text)
    subject = " ".join(first[len(SUBJECT_LINE):].split())
    if not subject:
        raise jinja2.TemplateError(f"{name}: its Subject line is empty")
    return Letter(subject, rest.lstrip("\r\n"))


def local_zone(settings: Settings) -> ZoneInfo | timezone:
    """The zone of the times customers read: `[web] timezone` (by default the business hours' zone, else UTC)."""
    name = settings.web.timezone
    return timezone.utc if name in ("", "UTC") else ZoneInfo(name)


def promise(due: datetime, language: str) -> str:
    """A due time as the customer reads it, "segunda-feira, 30/11, às 13:00" or "Monday, 30 November, 13:00", in
    the zone `due` is in (see local_zone). Rounded up to the minute: the promise is never earlier than the clock."""
    if due.tzinfo is None:
        raise ValueError(f"a promised moment must be an aware datetime, not naive {due.isoformat()}")
    if due.second or due.microsecond:
        due = due.replace(second=0, microsecond=0) + ONE_MINUTE
    return format_datetime(due, PROMISE_FORMATS[language], locale=LOCALES[language])


def _moment_filter(due: datetime, language: str = DEFAULT_LANGUAGE) -> str:
    """`first_response_due | moment("pt-BR")` (or "pt", "en") in a template: see promise."""
    if language not in LANGUAGE_NAMES:
        raise ValueError(f"moment: no language {language!r}; known: {', '.join(LANGUAGE_NAMES)}")
    return promise(due, LANGUAGE_NAMES[language])


def survey_text(language: str, *, valid_days: float) -> dict[str, str]:
    text = dict(SURVEY_TEXT[language])
    text["expired"] = text["expired"].format(days=format_decimal(valid_days, locale=LOCALES[language]))
    return text


def render_survey_page(settings: Settings, language: str, **context: Any) -> str:
    """The survey page (templates/csat.html) in `language`, with the shop's name. The caller gives ticket, answer,
    token, status, refused (a SURVEY_TEXT key or None), thanked, error (one or None), ratings and max_comment."""
    return environment(settings, html=True).get_template(SURVEY_PAGE).render(
        language=language, text=survey_text(language, valid_days=settings.csat.valid_days),
        shop=shop_name(settings), **context,
    )
