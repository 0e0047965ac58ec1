"""Times for people: in a time zone and in the way of a language (Babel's CLDR formats). Pure: no settings.

pages (pt-BR)   29/11/2026 00:22          clock 00:22         day 29/11/2026
pages (en)      Nov 29, 2026, 12:22 AM    clock 12:22 AM      day Nov 29, 2026
command line    2026-11-29 00:22 -03      (sortable, with the zone's abbreviation or offset)

What machines read (the JSON API, history details, CSV seconds) stays ISO 8601 and is never made here.
"""

from __future__ import annotations

from datetime import date, datetime, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from babel import Locale
from babel.dates import format_date, format_time

LANGUAGES = ("pt-BR", "en")
DEFAULT_LANGUAGE = "en"
UTC_NAME = "UTC"
NO_TIME, NO_CLOCK = "—", "?"
# CLDR styles per language: pt-BR writes 29/11/2026 (short), en Nov 29, 2026 (medium: 11/29/26 is ambiguous).
DATE_STYLE = {"pt-BR": "short", "en": "medium"}
TIME_STYLE = "short"
CLI_FORMAT = "%Y-%m-%d %H:%M %Z"
# Recent CLDR puts a narrow no-break space before AM/PM and in some dates: written as a plain space, so that
# the text is the same whether it is read, searched or copied.
_SPACES = str.maketrans({"\u202f": " ", "\u00a0": " "})
ZONE_CACHE_SIZE = 64


@lru_cache(maxsize=16)
def babel_locale(lang: str | None) -> Locale:
    """The Babel locale of a language tag ("pt-BR", "en", "pt", "es"); English for none or an unknown one."""
    try:
        return Locale.parse((lang or DEFAULT_LANGUAGE).replace("-", "_"))
    except (ValueError, TypeError, LookupError):
        return Locale.parse(DEFAULT_LANGUAGE)


def is_zone(name: str | None) -> bool:
    """Whether `name` is an IANA time zone this machine knows, such as "America/Sao_Paulo"."""
    if not name or len(name) > 64 or name != name.strip():
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


@lru_cache(maxsize=ZONE_CACHE_SIZE)
def zone(name: str | None) -> tzinfo:
    """The zone named `name`; UTC for none or an unknown name (settings and operators are checked on input)."""
    return ZoneInfo(name) if is_zone(name) else timezone.utc


@lru_cache(maxsize=1)
def zone_names() -> tuple[str, ...]:
    """The IANA zones to choose from (Area/City names and UTC), sorted."""
    names = {name for name in available_timezones() if "/" in name and not name.startswith(("Etc/", "SystemV/"))}
    return tuple(sorted(names | {UTC_NAME}))


def _language(lang: str | None) -> str:
    """One of LANGUAGES: "pt" and "pt-PT" are written as in Brazil, anything else in English."""
    if lang in LANGUAGES:
        return lang
    return "pt-BR" if (lang or "").lower().startswith("pt") else DEFAULT_LANGUAGE


def local_time(value: datetime | None, lang: str | None = DEFAULT_LANGUAGE, tz: str | None = UTC_NAME) -> str:
    """'29/11/2026 00:22' (pt-BR) or 'Nov 29, 2026, 12:22 AM' (en) in the zone `tz`; '—' for None."""
    if value is None:
        return NO_TIME
    lang = _language(lang)
    locale = babel_locale(lang)
    local = value.astimezone(zone(tz))
    pattern = locale.datetime_formats[DATE_STYLE[lang]]
    text = pattern.format(format_time(local, TIME_STYLE, locale=locale), format_date(local, DATE_STYLE[lang],
                                                                                       locale=locale))
    return text.translate(_SPACES)


def local_clock(value: datetime | None, lang: str | None = DEFAULT_LANGUAGE, tz: str | None = UTC_NAME) -> str:
    """'00:22' (pt-BR) or '12:22 AM' (en) in the zone `tz`, for a time within the day's reach; '?' for None."""
    if value is None:
        return NO_CLOCK
    return format_time(value.astimezone(zone(tz)), TIME_STYLE, locale=babel_locale(_language(lang))).translate(_SPACES)


def local_day(value: date | None, lang: str | None = DEFAULT_LANGUAGE) -> str:
    """A calendar day: '29/11/2026' (pt-BR) or 'Nov 29, 2026' (en)."""
    if value is None:
        return NO_TIME
    lang = _language(lang)
    return format_date(value, DATE_STYLE[lang], locale=babel_locale(lang)).translate(_SPACES)


def cli_time(value: datetime | None, tz: str | None = UTC_NAME, missing: str = "-") -> str:
    """For terminals and logs: '2026-11-29 00:22 -03', '2026-11-02 10:00 UTC' (sortable, the zone named)."""
    if value is None:
        return missing
    return value.astimezone(zone(tz)).strftime(CLI_FORMAT)
