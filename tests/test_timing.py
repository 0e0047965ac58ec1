"""Business-hours arithmetic, SLA clocks with pauses, SLA matching and the SPEC §7 figures (mailticket.timing)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from mailticket.config import BusinessHoursSettings, SlaSettings
from mailticket.timing import (
    BusinessCalendar,
    domain_matches,
    first_response_seconds,
    match_sla,
    resolution_seconds,
)

UTC = timezone.utc
LISBON = ZoneInfo("Europe/Lisbon")
HOUR = 3600.0
OFFICE = (("09:00", "18:00"),)
CHRISTMAS = "2025-12-25"
# Weekdays 09:00-18:00 in Lisbon (WET in winter, WEST from the last Sunday of March), Christmas off.
WORKWEEK = BusinessCalendar(BusinessHoursSettings("Europe/Lisbon", {day: OFFICE for day in range(5)}, (CHRISTMAS,)))
# Open around the clock, but as wall-clock hours in Lisbon: a day lasts as long as the clock says.
WALL_CLOCK = BusinessCalendar(BusinessHoursSettings("Europe/Lisbon", {day: (("00:00", "24:00"),) for day in range(7)}))
ALWAYS = BusinessCalendar(None)


def lisbon(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=LISBON)


# 2025-03-07 is a Friday; the clocks in Lisbon go forward on Sunday 2025-03-30 and back on 2025-10-26.
FRIDAY = lisbon(2025, 3, 7)
MONDAY = lisbon(2025, 3, 10)


def test_a_weekend_counts_only_the_hours_on_either_side():
    assert WORKWEEK.business_seconds(FRIDAY.replace(hour=17), MONDAY.replace(hour=10)) == 2 * HOUR


def test_time_inside_one_opening_period_counts_in_full_and_closed_time_not_at_all():
    assert WORKWEEK.business_seconds(MONDAY.replace(hour=10), MONDAY.replace(hour=11, minute=30)) == 1.5 * HOUR
    assert WORKWEEK.business_seconds(MONDAY.replace(hour=18), MONDAY.replace(hour=23)) == 0.0
    assert WORKWEEK.business_seconds(lisbon(2025, 3, 8, 9), lisbon(2025, 3, 9, 17)) == 0.0


def test_end_before_start_counts_nothing():
    assert WORKWEEK.business_seconds(MONDAY.replace(hour=12), MONDAY.replace(hour=10)) == 0.0


def test_a_holiday_is_skipped_like_a_weekend():
    # Wednesday 24th 17:00-18:00, Christmas closed, Friday 26th 09:00-10:00.
    assert WORKWEEK.business_seconds(lisbon(2025, 12, 24, 17), lisbon(2025, 12, 26, 10)) == 2 * HOUR
    assert not WORKWEEK.is_open(lisbon(2025, 12, 25, 11))


def test_opening_hours_follow_the_local_clock_across_the_spring_dst_change():
    # Friday 17:00 WET (17:00 UTC) to Monday 10:00 WEST (09:00 UTC): still one hour on each side.
    assert WORKWEEK.business_seconds(lisbon(2025, 3, 28, 17), lisbon(2025, 3, 31, 10)) == 2 * HOUR
    assert WORKWEEK.is_open(datetime(2025, 3, 31, 8, 30, tzinfo=UTC))  # 09:30 in Lisbon
    assert not WORKWEEK.is_open(datetime(2025, 3, 31, 7, 30, tzinfo=UTC))  # 08:30 in Lisbon


def test_a_day_open_around_the_clock_lasts_23_hours_in_spring_and_25_in_autumn():
    assert WALL_CLOCK.business_seconds(lisbon(2025, 3, 30), lisbon(2025, 3, 31)) == 23 * HOUR
    assert WALL_CLOCK.business_seconds(lisbon(2025, 10, 26), lisbon(2025, 10, 27)) == 25 * HOUR
    # Over whole years too, where the week arithmetic carries the DST corrections.
    start, end = lisbon(2024, 1, 3, 10), lisbon(2026, 7, 5, 15)
    assert WALL_CLOCK.business_seconds(start, end) == (end.astimezone(UTC) - start.astimezone(UTC)).total_seconds()


def test_without_business_hours_the_clock_runs_around_the_clock():
    start = datetime(2025, 3, 8, 23, 0, tzinfo=UTC)  # a Saturday night
    assert ALWAYS.business_seconds(start, start + timedelta(days=2)) == 48 * HOUR
    assert ALWAYS.add_business_seconds(start, 90) == start + timedelta(seconds=90)
    assert ALWAYS.is_open(start)


def reference_seconds(settings: BusinessHoursSettings, start: datetime, end: datetime) -> float:
    """A slow, obvious count: every local date, every opening period, clipped; no week arithmetic."""
    zone, holidays, total = ZoneInfo(settings.timezone), {date.fromisoformat(h) for h in settings.holidays}, 0.0
    day = start.astimezone(zone).date() - timedelta(days=1)
    while day <= end.astimezone(zone).date():
        for opens, closes in settings.weekly.get(day.weekday(), ()) if day not in holidays else ():
            bounds = []
            for clock in (opens, closes):
                hours, minutes = map(int, clock.split(":"))
                local = datetime.combine(day, time()) + timedelta(hours=hours, minutes=minutes)
                bounds.append(local.replace(tzinfo=zone).astimezone(UTC))
            total += max(0.0, (min(bounds[1], end) - max(bounds[0], start)).total_seconds())
        day += timedelta(days=1)
    return total


# Lisbon changes at 01:00/02:00 on Sundays; São Paulo (DST until 2019) changed at midnight, Saturday to Sunday.
@pytest.mark.parametrize("zone", ["Europe/Lisbon", "America/Sao_Paulo"])
def test_the_week_arithmetic_agrees_with_counting_day_by_day_over_two_years(zone):
    settings = BusinessHoursSettings(
        zone,
        {0: OFFICE, 1: (("00:00", "12:00"), ("13:00", "24:00")), 3: OFFICE, 4: (("08:00", "12:00"),),
         5: (("20:00", "24:00"),), 6: (("00:30", "03:30"),)},  # the weekend nights span the DST changes
        ("2018-04-25", "2018-12-25", "2019-03-31", "2019-06-10", "2019-12-25"),
    )
    calendar = BusinessCalendar(settings)
    starts = [datetime(*wall, tzinfo=ZoneInfo(zone)) for wall in ((2018, 1, 3, 10), (2018, 3, 25, 2), (2018, 11, 4, 1))]
    ends = [datetime(*wall, tzinfo=ZoneInfo(zone)) for wall in ((2019, 2, 16, 23, 30), (2019, 10, 27, 1), (2020, 1, 6))]
    for start in starts:
        for end in ends:
            assert calendar.business_seconds(start, end) == reference_seconds(settings, start, end)


INVERSE_CASES = (
    (FRIDAY.replace(hour=17), 2 * HOUR),  # across a weekend
    (FRIDAY.replace(hour=20), 30 * 60),  # starting while closed
    (MONDAY.replace(hour=9), 9 * HOUR),  # exactly one full day
    (lisbon(2025, 12, 24, 16), 5 * HOUR),  # across Christmas
    (lisbon(2025, 3, 28, 12), 12 * HOUR),  # across the spring DST change
    (lisbon(2025, 10, 24, 12), 12 * HOUR),  # across the autumn DST change
    (lisbon(2025, 1, 2, 11, 17), 400 * HOUR + 123.5),  # ten weeks, skipped a week at a time
)


@pytest.mark.parametrize(("start", "seconds"), INVERSE_CASES)
def test_adding_business_seconds_is_the_inverse_of_counting_them(start, seconds):
    due = WORKWEEK.add_business_seconds(start, seconds)
    assert WORKWEEK.business_seconds(start, due) == pytest.approx(seconds, abs=1e-6)
    # And the earliest such instant: a second earlier, the target is not yet reached.
    assert WORKWEEK.business_seconds(start, due - timedelta(seconds=1)) < seconds
    # The other way round, from any instant in opening hours.
    assert WORKWEEK.add_business_seconds(start, WORKWEEK.business_seconds(start, due)) == due


def test_a_due_time_at_closing_time_stays_at_closing_time():
    assert WORKWEEK.add_business_seconds(FRIDAY.replace(hour=17), HOUR) == FRIDAY.replace(hour=18)
    assert WORKWEEK.add_business_seconds(FRIDAY.replace(hour=17), HOUR + 1) == MONDAY.replace(hour=9, second=1)


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="aware"):
        WORKWEEK.business_seconds(datetime(2025, 3, 10, 9), MONDAY)


POLICIES = (
    SlaSettings("vip billing", first_response=HOUR, queue="billing", priority="high"),
    SlaSettings("marketplace", first_response=4 * HOUR, sender_domain="partner.example"),
    SlaSettings("billing", first_response=8 * HOUR, queue="billing"),
    SlaSettings("everyone else", first_response=24 * HOUR),
)


def names(**ticket) -> str | None:
    policy = match_sla(POLICIES, **{"queue": "default", "priority": "normal", "sender_domain": None, **ticket})
    return policy.name if policy else None


def test_the_first_policy_whose_keys_all_fit_wins_in_file_order():
    assert names(queue="billing", priority="high", sender_domain="partner.example") == "vip billing"
    assert names(queue="billing", priority="normal", sender_domain="partner.example") == "marketplace"
    assert names(queue="billing", priority="normal") == "billing"


def test_a_policy_without_match_keys_applies_to_every_ticket():
    assert names(queue="shipping", priority="low", sender_domain="gmail.com") == "everyone else"
    assert match_sla(POLICIES[:3], queue="shipping", priority="low", sender_domain="gmail.com") is None


def test_sender_domain_matches_case_insensitively_and_its_subdomains_but_not_lookalikes():
    assert names(sender_domain="Partner.EXAMPLE") == "marketplace"
    assert names(sender_domain="eu.mail.partner.example") == "marketplace"
    assert names(sender_domain="seller@partner.example") == "marketplace"
    assert names(sender_domain="evilpartner.example") == "everyone else"
    assert names(sender_domain="partner.example.evil") == "everyone else"
    assert not domain_matches(None, "partner.example")


def test_first_response_and_resolution_run_from_the_first_inbound_message():
    received = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
    assert first_response_seconds(received, received + timedelta(minutes=25)) == 1500.0
    assert first_response_seconds(received, None) is None
    assert resolution_seconds(received, received + timedelta(days=1)) == 24 * HOUR
    assert resolution_seconds(received, None) is None


def test_a_reply_clock_behind_the_imap_server_gives_zero_not_a_negative_time():
    received = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
    assert first_response_seconds(received, received - timedelta(seconds=5)) == 0.0
