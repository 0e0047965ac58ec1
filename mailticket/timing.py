"""Business-hours arithmetic, SLA clocks with pauses, SLA matching and the SPEC §7 time figures; `now` is passed in."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

from mailticket.config import BusinessHoursSettings, SlaSettings

UTC = timezone.utc
ONE_DAY = timedelta(days=1)
ONE_WEEK = timedelta(days=7)
DAYS_PER_WEEK = 7
SECONDS_PER_MINUTE = 60
DST_CACHE_SIZE = 256  # (zone, hours, year) entries
OFFSET_SAMPLE_DAYS = 5  # how often the UTC offset is sampled when looking for DST changes (see _dst_days)

# Opening hours per weekday (0 = Monday) as (start, end) minutes after local midnight; 1440 = "24:00".
Spans = tuple[tuple[tuple[int, int], ...], ...]


def _minutes(clock: str) -> int:
    """'09:30' -> 570; '24:00' (end of day) -> 1440."""
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def _aware(at: datetime, name: str) -> datetime:
    # A naive datetime would be read in the host's zone by astimezone(): refuse it rather than guess.
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, not naive {at.isoformat()}")
    return at.astimezone(UTC)


def _seconds(since: datetime, until: datetime) -> float:
    return (until - since).total_seconds()


def _instant(zone: tzinfo, midnight: datetime, minutes: int) -> datetime:
    # Wall time first, then the zone: "24:00" becomes the next midnight. Converted to UTC because
    # subtracting two datetimes that share a tzinfo ignores their offsets (wall-clock difference).
    return (midnight + timedelta(minutes=minutes)).replace(tzinfo=zone).astimezone(UTC)


def _offset(zone: tzinfo, day: date) -> timedelta | None:
    return datetime.combine(day, time(), zone).utcoffset()


@lru_cache(maxsize=DST_CACHE_SIZE)
def _dst_days(zone: tzinfo, spans: Spans, year: int) -> tuple[tuple[date, float], ...]:
    """The dates of `year` whose real opening time differs from their wall-clock hours (a UTC offset change
    inside opening hours), each with real minus wall seconds. Kept across calendars: it is the slow part.

    The offset is sampled every OFFSET_SAMPLE_DAYS and checked day by day only where it changed: two
    changes within one sample could cancel out unseen, and the closest pair in tzdata since 1990 is
    six days apart (Brazil, October 2000).
    """
    found, day, end = [], date(year, 1, 1), date(year + 1, 1, 1)
    before = _offset(zone, day)
    while day < end:
        following = min(day + timedelta(days=OFFSET_SAMPLE_DAYS), end)
        if (after := _offset(zone, following)) != before:
            for n in range((following - day).days):
                changed = day + n * ONE_DAY
                if _offset(zone, changed) != _offset(zone, changed + ONE_DAY):
                    midnight = datetime.combine(changed, time())
                    # A period wholly skipped by the clock change can come out negative: it lasts 0.
                    extra = sum(max(0.0, _seconds(_instant(zone, midnight, a), _instant(zone, midnight, b)))
                                - SECONDS_PER_MINUTE * (b - a) for a, b in spans[changed.weekday()])
                    if extra:
                        found.append((changed, extra))
        day, before = following, after
    return tuple(found)


class BusinessCalendar:
    """When SLA clocks run: weekly opening hours in one time zone, minus holidays; no settings means 24/7.

    Opening hours are wall-clock times in the configured zone, so they follow DST changes; every
    duration is real elapsed time (a 00:00-24:00 day lasts 23 h on the spring-forward date). A wall
    time that DST skips or repeats resolves as zoneinfo does with fold=0 (the offset before the change).
    """

    def __init__(self, settings: BusinessHoursSettings | None = None) -> None:
        self.always_open = settings is None
        self.zone: tzinfo = ZoneInfo(settings.timezone) if settings else UTC
        weekly = settings.weekly if settings else {}
        self._spans = tuple(tuple(sorted((_minutes(a), _minutes(b)) for a, b in weekly.get(day, ())))
                            for day in range(DAYS_PER_WEEK))
        self._holidays = tuple(sorted({date.fromisoformat(day) for day in (settings.holidays if settings else ())}))
        self._holiday_set = frozenset(self._holidays)
        # Wall-clock seconds per weekday: the real length of that day whenever no offset change falls in it.
        self._nominal = tuple(SECONDS_PER_MINUTE * sum(end - start for start, end in spans) for spans in self._spans)
        self._week = float(sum(self._nominal))
        if settings is not None and not self._week:
            raise ValueError("business hours are open on no day of the week")

    # -- public -------------------------------------------------------------------------------------

    def business_seconds(self, start: datetime, end: datetime) -> float:
        """Business seconds between two aware instants; 0.0 when end is not after start."""
        start, end = _aware(start, "start"), _aware(end, "end")
        if end <= start:
            return 0.0
        if self.always_open:
            return _seconds(start, end)
        first, last = self._local_date(start), self._local_date(end)
        if first == last:
            return self._clipped(first, start, end)
        return (self._clipped(first, start, end) + self._whole_days(first + ONE_DAY, last)
                + self._clipped(last, start, end))

    def add_business_seconds(self, start: datetime, seconds: float) -> datetime:
        """The earliest instant by which `seconds` of business time have passed since `start` (a due time).

        A target that ends exactly at closing time is due at closing time, not at the next opening.
        The answer is in start's time zone.
        """
        at = _aware(start, "start")
        if seconds <= 0 or self.always_open:
            return (at + timedelta(seconds=max(seconds, 0.0))).astimezone(start.tzinfo)
        first = day = self._local_date(at)
        left = float(seconds)
        while True:
            # Whole weeks at once (never the partial first day): a two-month target takes about nine steps.
            while day != first and (week := self._whole_days(day, day + ONE_WEEK)) < left:
                left, day = left - week, day + ONE_WEEK
            for opens, closes in self._windows(day):
                opens = max(opens, at)
                if closes <= opens:
                    continue
                length = _seconds(opens, closes)
                if left <= length:
                    return (opens + timedelta(seconds=left)).astimezone(start.tzinfo)
                left -= length
            day += ONE_DAY

    def is_open(self, at: datetime) -> bool:
        """Whether the SLA clock runs at this instant (opening hours, not a holiday)."""
        at = _aware(at, "at")
        return self.always_open or any(opens <= at < closes for opens, closes in self._windows(self._local_date(at)))

    # -- internals ----------------------------------------------------------------------------------

    def _local_date(self, at: datetime) -> date:
        return at.astimezone(self.zone).date()

    def _periods(self, day: date) -> list[tuple[datetime, datetime]]:
        """The weekday hours of one local date as UTC instants, holiday or not."""
        midnight = datetime.combine(day, time())
        return [(_instant(self.zone, midnight, start), _instant(self.zone, midnight, end))
                for start, end in self._spans[day.weekday()]]

    def _windows(self, day: date) -> list[tuple[datetime, datetime]]:
        """The open periods of one local date; none on a holiday."""
        return [] if day in self._holiday_set else self._periods(day)

    def _clipped(self, day: date, start: datetime, end: datetime) -> float:
        return sum(max(0.0, _seconds(max(opens, start), min(closes, end))) for opens, closes in self._windows(day))

    def _whole_days(self, first: date, stop: date) -> float:
        """Business seconds of the whole local dates first .. stop - 1, by arithmetic: whole weeks times the
        weekly hours, the leftover weekdays, minus holidays, plus the real-time difference on DST dates."""
        if stop <= first:
            return 0.0
        weeks, extra = divmod((stop - first).days, DAYS_PER_WEEK)
        total = weeks * self._week + sum(self._nominal[(first.weekday() + n) % DAYS_PER_WEEK] for n in range(extra))
        low, high = bisect_left(self._holidays, first), bisect_left(self._holidays, stop)
        total -= sum(self._nominal[day.weekday()] for day in self._holidays[low:high])
        for year in range(first.year, (stop - ONE_DAY).year + 1):
            # A holiday has no open time, so no DST difference either.
            total += sum(extra for day, extra in _dst_days(self.zone, self._spans, year)
                         if first <= day < stop and day not in self._holiday_set)
        return total


def _domain(value: str | None) -> str | None:
    """'Ana@Shop.Example.' or '@shop.example' -> 'shop.example'; an address gives its domain."""
    if value is None:
        return None
    return value.rpartition("@")[2].strip().rstrip(".").lower() or None


def domain_matches(domain: str | None, wanted: str) -> bool:
    """Case-insensitive: the domain itself or any subdomain of it (mail.partner.example fits partner.example).

    Subdomains fit because marketplaces relay from per-region hosts; a lookalike such as
    evilpartner.example does not fit, since the match is on whole labels.
    """
    domain, wanted = _domain(domain), _domain(wanted)
    return domain is not None and wanted is not None and (domain == wanted or domain.endswith("." + wanted))


def match_sla(policies: Sequence[SlaSettings], *, queue: str | None, priority: str | None,
              sender_domain: str | None) -> SlaSettings | None:
    """The first policy, in file order, whose given match keys all fit; one without keys fits every ticket.

    queue and priority compare exactly; sender_domain as in domain_matches (an address is accepted too).
    """
    for policy in policies:
        if policy.queue is not None and policy.queue != queue:
            continue
        if policy.priority is not None and policy.priority != priority:
            continue
        if policy.sender_domain is not None and not domain_matches(sender_domain, policy.sender_domain):
            continue
        return policy
    return None


# The figures of SPEC §7, in wall-clock seconds (SLA clocks count business time: service/sla.py). A negative span
# is clamped to 0: INTERNALDATE comes from the IMAP server's clock and reply times from ours, and a
# skew between the two must not produce a negative time.

def _span(since: datetime | None, until: datetime | None) -> float | None:
    if since is None or until is None:
        return None
    return max(0.0, _seconds(_aware(since, "since"), _aware(until, "until")))


def first_response_seconds(first_inbound_at: datetime, first_reply_sent_at: datetime | None) -> float | None:
    """From the first inbound message (as the IMAP server received it) to the first operator reply sent;
    None while nobody has replied."""
    return _span(first_inbound_at, first_reply_sent_at)


def resolution_seconds(first_inbound_at: datetime, resolved_at: datetime | None) -> float | None:
    """From the first inbound message to resolution; None while unresolved."""
    return _span(first_inbound_at, resolved_at)
