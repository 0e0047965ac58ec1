"""The operator pages' languages: gettext catalogs read from their .po at first use, and which language a request gets."""

from __future__ import annotations

import threading
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup

from mailticket.config_values import LANGUAGES

# The language of the msgids: it needs no catalog.
SOURCE_LANGUAGE = "en"
DOMAIN = "messages"
LOCALES = Path(__file__).resolve().parent / "locales"
# An Accept-Language header longer than this, or with more entries, is read only that far.
MAX_HEADER_CHARS = 1000
MAX_HEADER_ENTRIES = 30
# The languages a browser may name (its primary subtag), and the page language each one gets.
BROWSER_LANGUAGES = {"pt": "pt-BR", "en": "en"}

_lock = threading.Lock()
_catalogs: dict[str, NullTranslations] = {}
_template_callables: dict[str, dict[str, Any]] = {}


def N_(message: str) -> str:  # noqa: N802 (the name xgettext and Babel know)
    """Marks a message for the catalog where it is defined; it is translated where it is shown."""
    return message


def catalog_path(language: str) -> Path:
    """mailticket/locales/pt_BR/LC_MESSAGES/messages.po for "pt-BR"."""
    return LOCALES / str(Locale.parse(language, sep="-")) / "LC_MESSAGES" / f"{DOMAIN}.po"


def _compile(language: str) -> NullTranslations:
    """The language's .po compiled in memory (its fuzzy entries left out, as msgfmt does)."""
    with catalog_path(language).open("rb") as po:
        catalog = read_po(po, locale=Locale.parse(language, sep="-"), domain=DOMAIN)
    mo = BytesIO()
    write_mo(mo, catalog)
    mo.seek(0)
    return Translations(mo, domain=DOMAIN)


def translations(language: str) -> NullTranslations:
    """The catalog of `language` (one of LANGUAGES), read once; English, the msgids' language, translates nothing."""
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}: use {' or '.join(LANGUAGES)}")
    found = _catalogs.get(language)
    if found is None:
        with _lock:
            found = _catalogs.get(language)
            if found is None:
                found = NullTranslations() if language == SOURCE_LANGUAGE else _compile(language)
                _catalogs[language] = found
    return found


def translate(language: str, message: str, /, **values: Any) -> str:
    """`message` in `language`, its %(name)s placeholders filled (a literal % is written %%, as in templates)."""
    return translations(language).gettext(message) % values


def translate_plural(language: str, singular: str, plural: str, n: int, /, **values: Any) -> str:
    """The form for `n`, placeholders filled; %(num)s is `n` unless given."""
    values.setdefault("num", n)
    return translations(language).ngettext(singular, plural, n) % values


def _accepted(header: str) -> list[str]:
    """The language tags of an Accept-Language header, most wanted first (q=0 means "not this one")."""
    ranked: list[tuple[float, int, str]] = []
    for position, entry in enumerate(header[:MAX_HEADER_CHARS].split(",")[:MAX_HEADER_ENTRIES]):
        tag, *params = (part.strip() for part in entry.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if tag and quality > 0:
            ranked.append((-quality, position, tag.lower().replace("_", "-")))
    return [tag for _, _, tag in sorted(ranked)]


def negotiate(operator_language: str | None, accept_language: str | None, default: str | None) -> str:
    """The language of a page: the operator's own choice, else the first language the browser asks for that the
    pages have ("pt", "pt-BR", "pt-PT": pt-BR; "en-*": en), else `default` ([web] language), else English."""
    if operator_language in LANGUAGES:
        return operator_language
    for tag in _accepted(accept_language or ""):
        found = BROWSER_LANGUAGES.get(tag.split("-")[0])
        if found is not None:
            return found
    return default if default in LANGUAGES else SOURCE_LANGUAGE


def gettext_callables(language: str) -> dict[str, Any]:
    """The `gettext` and `ngettext` of a page's render context in `language`: what Jinja's i18n extension (newstyle)
    calls for `_()`, `{% trans %}` and `ngettext()`. Made once per language; the shared Environment keeps English."""
    found = _template_callables.get(language)
    if found is None:
        catalog = translations(language)
        found = {"gettext": _gettext(catalog.gettext), "ngettext": _ngettext(catalog.ngettext)}
        _template_callables[language] = found
    return found


def _gettext(lookup: Callable[[str], str]) -> Callable[..., str]:
    @pass_context
    def gettext(context: Context, message: str, /, **values: Any) -> str:
        text = lookup(message)
        # Autoescaped pages: the translation is markup, the values filled into it are escaped.
        return (Markup(text) if context.eval_ctx.autoescape else text) % values

    return gettext


def _ngettext(lookup: Callable[[str, str, int], str]) -> Callable[..., str]:
    @pass_context
    def ngettext(context: Context, singular: str, plural: str, n: int, /, **values: Any) -> str:
        values.setdefault("num", n)
        text = lookup(singular, plural, n)
        return (Markup(text) if context.eval_ctx.autoescape else text) % values

    return ngettext
