"""The one way to write a duration for people: compact in tables, a phrase in sentences.

compact(seconds)       '2 d 7 h', '3 h 5 min', '45 min' — the same in every language (tables, charts, CLI).
prose(seconds, lang)   '2 dias e 7 horas' / '2 days and 7 hours' — where the duration is part of a sentence.

Both show the largest unit and the next one when it is not 0 (`most` changes how many), rounded down to the
minute (a waiting time is never overstated; `up` rounds up, for a promise never shorter than the policy), and
never a negative time. Words and plurals are CLDR's (Babel). Pure: no settings, no clock.
"""

from __future__ import annotations

import math

from babel.lists import format_list
from babel.units import format_unit

from mailticket.localtime import babel_locale

MISSING = "—"  # no duration: not happened yet, or nothing to count
SECONDS_PER_MINUTE = 60
MINUTES_PER_HOUR = 60
MINUTES_PER_DAY = 24 * MINUTES_PER_HOUR
UNITS = ("duration-day", "duration-hour", "duration-minute")  # CLDR unit names, largest first
COMPACT_UNITS = {"duration-day": "d", "duration-hour": "h", "duration-minute": "min"}
COMPACT_UNDER_A_MINUTE = "< 1 min"
# Under a minute (but more than none): said rather than shown as "0 min"; by primary language subtag.
UNDER_A_MINUTE = {"pt": "menos de um minuto", "en": "less than a minute"}
# CLDR's Portuguese says "0 minuto" (0 takes the singular there); people write the plural.
NO_MINUTES = {"pt": "0 minutos", "en": "0 minutes"}


def parts(seconds: float, *, up: bool = False, days: bool = True) -> tuple[int, int, int]:
    """(days, hours, minutes) of `seconds` in whole minutes (rounded down, or up); 0 for a negative time.
    Without `days` the hours run on: (0, 26, 0)."""
    minutes = max(0, math.ceil(seconds / SECONDS_PER_MINUTE) if up else int(seconds // SECONDS_PER_MINUTE))
    whole_days, minutes = divmod(minutes, MINUTES_PER_DAY) if days else (0, minutes)
    hours, minutes = divmod(minutes, MINUTES_PER_HOUR)
    return whole_days, hours, minutes


def _units(seconds: float, most: int, up: bool, days: bool) -> list[tuple[int, str]]:
    """From the largest unit that is not 0, `most` units, without the ones that are 0: (amount, unit) pairs."""
    amounts = list(zip(parts(seconds, up=up, days=days), UNITS))
    first = next((i for i, (amount, _) in enumerate(amounts) if amount), len(UNITS) - 1)
    return [amounts[first], *((amount, unit) for amount, unit in amounts[first + 1:first + most] if amount)]


def _under_a_minute(seconds: float, up: bool) -> bool:
    return not up and 0 < seconds < SECONDS_PER_MINUTE


def compact(seconds: float | None, missing: str = MISSING, *, most: int = 2) -> str:
    """'2 d 7 h', '3 h 5 min', '3 h', '45 min', '< 1 min', '0 min'; `missing` for None."""
    if seconds is None:
        return missing
    if _under_a_minute(seconds, False):
        return COMPACT_UNDER_A_MINUTE
    return " ".join(f"{amount} {COMPACT_UNITS[unit]}" for amount, unit in _units(seconds, most, False, True))


def _primary(lang: str | None) -> str:
    return (lang or "en").split("-")[0].lower()


def prose(seconds: float | None, lang: str | None = "en", missing: str = MISSING, *, most: int = 2,
          up: bool = False, days: bool = True) -> str:
    """'2 days and 7 hours', '1 hour', '45 minutes' (en); '2 dias e 7 horas', '1 hora', '45 minutos' (pt-BR);
    with most=3, '1 day, 1 hour and 1 minute'. `lang` is a language tag Babel knows (English otherwise)."""
    if seconds is None:
        return missing
    if _under_a_minute(seconds, up):
        return UNDER_A_MINUTE.get(_primary(lang), UNDER_A_MINUTE["en"])
    units = _units(seconds, most, up, days)
    if units == [(0, UNITS[-1])]:
        return NO_MINUTES.get(_primary(lang), NO_MINUTES["en"])
    locale = babel_locale(lang)
    words = [format_unit(amount, unit, length="long", locale=locale) for amount, unit in units]
    return format_list(words, locale=locale).replace("\u00a0", " ")
