"""Business-time arithmetic and holiday files (cases/sla), the ground the SLA clock stands on.

Times are written in the calendar's own zone and compared as instants, so every expectation
reads like the wall clock an agent would look at. DST dates used throughout:
Europe/Berlin springs forward 2026-03-29 and falls back 2026-10-25; America/New_York springs
forward 2026-03-08 and falls back 2026-11-01.
"""

from __future__ import annotations

import http.server
import socket
import threading
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cases.sla.holidays import MAX_ICS_BYTES, Holiday, HolidayFileError, fetch_ics, parse_ics
from cases.sla.hours import (
    CALENDAR_TIME,
    BusinessCalendar,
    Interval,
    InvalidScheduleError,
    NoBusinessTimeError,
    cached_calendar,
    validate_weekly_hours,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
HOUR = 3600
DAY_9_TO_17 = [Interval(time(9), time(17))]
WEEKDAYS_9_TO_17 = dict.fromkeys(range(5), DAY_9_TO_17)
# 22:00-06:00 shifts starting Monday to Friday: the Friday night shift ends Saturday 06:00.
NIGHT_SUPPORT = dict.fromkeys(range(5), [Interval(time(22), time(6))])
EVERY_NIGHT_0_TO_6 = dict.fromkeys(range(7), [Interval(time(0), time(6))])
ALL_DAY_EVERY_DAY = dict.fromkeys(range(7), [Interval(time(0), time(0))])

GERMAN_HOLIDAYS_ICS = b"""BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//support-crm tests//Feiertage DE//DE\r
BEGIN:VEVENT\r
UID:neujahr@test\r
DTSTART;VALUE=DATE:20250101\r
DTEND;VALUE=DATE:20250102\r
RRULE:FREQ=YEARLY\r
SUMMARY:Neujahr\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:karfreitag-2026@test\r
DTSTART;VALUE=DATE:20260403\r
SUMMARY:Karfreitag\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:ostermontag-2026@test\r
DTSTART;VALUE=DATE:20260406\r
DTEND;VALUE=DATE:20260407\r
SUMMARY:Ostermontag\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:tag-der-arbeit@test\r
DTSTART;VALUE=DATE:20250501\r
RRULE:FREQ=YEARLY;BYMONTH=5;BYMONTHDAY=1\r
SUMMARY:Tag der Arbeit\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:weihnachten@test\r
DTSTART;VALUE=DATE:20251225\r
DTEND;VALUE=DATE:20251227\r
RRULE:FREQ=YEARLY\r
SUMMARY:Weihnachten\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:heiligabend-outlook@test\r
DTSTART;TZID=Europe/Berlin:20261224T000000\r
DTEND;TZID=Europe/Berlin:20261225T000000\r
X-MICROSOFT-CDO-ALLDAYEVENT:TRUE\r
SUMMARY:Heiligabend (Betrieb geschlossen)\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:betriebsversammlung@test\r
DTSTART;TZID=Europe/Berlin:20260612T140000\r
DTEND;TZID=Europe/Berlin:20260612T160000\r
SUMMARY:Betriebsversammlung\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:abgesagt@test\r
DTSTART;VALUE=DATE:20260615\r
STATUS:CANCELLED\r
SUMMARY:Brueckentag (abgesagt)\r
END:VEVENT\r
END:VCALENDAR\r
"""


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


def new_york(*args: int) -> datetime:
    return datetime(*args, tzinfo=NEW_YORK)


def ics(*events: str) -> bytes:
    """A calendar around the given VEVENT bodies (lines without BEGIN/END)."""
    body = "".join(f"BEGIN:VEVENT\r\n{event.strip()}\r\nEND:VEVENT\r\n" for event in events)
    return (
        f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n{body}END:VCALENDAR\r\n".encode()
    )


@pytest.fixture(scope="module")
def german_holidays() -> list[date]:
    return [holiday.date for holiday in parse_ics(GERMAN_HOLIDAYS_ICS, years=range(2025, 2028))]


@pytest.fixture
def office(german_holidays) -> BusinessCalendar:
    """Mon-Fri 09:00-17:00 in Berlin with the German holidays from the .ics sample."""
    return BusinessCalendar("Europe/Berlin", WEEKDAYS_9_TO_17, german_holidays)


# --- adding business time ------------------------------------------------------------------------


def test_time_inside_one_working_day(office):
    assert office.add(berlin(2026, 6, 1, 10), 2 * HOUR) == berlin(2026, 6, 1, 12)


def test_the_deadline_is_the_earliest_moment_so_a_full_day_ends_at_closing(office):
    assert office.add(berlin(2026, 6, 5, 9), 8 * HOUR) == berlin(2026, 6, 5, 17)


def test_adding_across_a_weekend(office):
    assert office.add(berlin(2026, 6, 5, 15), 4 * HOUR) == berlin(2026, 6, 8, 11)


def test_adding_across_easter_skips_good_friday_and_easter_monday(office):
    # Thursday 16:00: one hour left that day, then Friday, the weekend and Monday are closed.
    assert office.add(berlin(2026, 4, 2, 16), 2 * HOUR) == berlin(2026, 4, 7, 10)


def test_a_recurring_holiday_from_the_file_applies_every_year(office):
    # Tag der Arbeit is a Friday in 2026 and a Saturday in 2027.
    assert office.add(berlin(2026, 4, 30, 17), 1 * HOUR) == berlin(2026, 5, 4, 10)
    assert office.add(berlin(2027, 4, 30, 16), 2 * HOUR) == berlin(2027, 5, 3, 10)


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (berlin(2026, 6, 1, 7), berlin(2026, 6, 1, 10)),  # before opening
        (berlin(2026, 6, 1, 18), berlin(2026, 6, 2, 10)),  # after closing
        (berlin(2026, 6, 6, 12), berlin(2026, 6, 8, 10)),  # Saturday
        (berlin(2026, 6, 1, 17), berlin(2026, 6, 2, 10)),  # exactly at closing
        (berlin(2026, 6, 1, 9), berlin(2026, 6, 1, 10)),  # exactly at opening
    ],
)
def test_a_start_outside_hours_starts_the_clock_at_the_next_opening(office, start, expected):
    assert office.add(start, HOUR) == expected


def test_adding_nothing_is_the_start_itself_even_outside_hours(office):
    assert office.add(berlin(2026, 6, 6, 12), 0) == berlin(2026, 6, 6, 12)


def test_results_are_utc_and_inputs_in_any_zone_mean_the_same_instant(office):
    result = office.add(datetime(2026, 6, 1, 8, tzinfo=UTC), HOUR)  # 10:00 in Berlin
    assert result.tzinfo is UTC
    assert result == datetime(2026, 6, 1, 9, tzinfo=UTC)


def test_seven_business_days_across_christmas_and_the_year_end(office):
    # Closed on the 24th (Outlook-style event), the 25th (yearly rule) and New Year (a Friday).
    start = berlin(2026, 12, 22, 12)
    assert office.add(start, 7 * 8 * HOUR) == berlin(2027, 1, 5, 12)


def test_naive_datetimes_and_negative_amounts_are_refused(office):
    with pytest.raises(ValueError, match="no time zone"):
        office.add(datetime(2026, 6, 1, 9), HOUR)  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError, match="negative"):
        office.add(berlin(2026, 6, 1, 9), -1)


# --- daylight saving time -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "friday", "monday", "monday_utc_hour"),
    [
        # Berlin springs forward on the Sunday in between: Monday 10:00 is CEST (UTC+2).
        ("Europe/Berlin", date(2026, 3, 27), date(2026, 3, 30), 8),
        # New York did so three weeks earlier; Berlin is still on CET that weekend.
        ("America/New_York", date(2026, 3, 6), date(2026, 3, 9), 14),
        ("Europe/Berlin", date(2026, 3, 6), date(2026, 3, 9), 9),
        # Fall back: Berlin goes to CET (UTC+1), New York to EST (UTC-5).
        ("Europe/Berlin", date(2026, 10, 23), date(2026, 10, 26), 9),
        ("America/New_York", date(2026, 10, 30), date(2026, 11, 2), 15),
    ],
)
def test_business_hours_follow_the_wall_clock_across_dst(zone, friday, monday, monday_utc_hour):
    calendar = BusinessCalendar(zone, WEEKDAYS_9_TO_17)
    start = datetime.combine(friday, time(16), tzinfo=ZoneInfo(zone))
    expected = datetime.combine(monday, time(monday_utc_hour), tzinfo=UTC)
    assert calendar.add(start, 2 * HOUR) == expected
    assert calendar.elapsed(start, expected) == 2 * HOUR


@pytest.mark.parametrize(
    ("zone", "day", "night_hours"),
    [
        ("Europe/Berlin", date(2026, 3, 29), 5),
        ("Europe/Berlin", date(2026, 10, 25), 7),
        ("America/New_York", date(2026, 3, 8), 5),
        ("America/New_York", date(2026, 11, 1), 7),
        ("Europe/Berlin", date(2026, 6, 7), 6),
    ],
)
def test_business_time_is_real_elapsed_time_on_dst_nights(zone, day, night_hours):
    tz = ZoneInfo(zone)
    midnight, noon = datetime.combine(day, time(0), tz), datetime.combine(day, time(12), tz)
    night = BusinessCalendar(zone, EVERY_NIGHT_0_TO_6)
    assert night.elapsed(midnight, noon) == night_hours * HOUR
    office_day = BusinessCalendar(zone, {day.weekday(): [Interval(time(8), time(17))]})
    end = datetime.combine(day, time(23), tz)
    assert office_day.elapsed(midnight, end) == 9 * HOUR


def test_an_interval_edge_skipped_by_spring_forward_means_the_moment_of_the_jump():
    # 02:30 does not exist on 2026-03-29 in Berlin: the clocks jump from 02:00 to 03:00 CEST.
    early = BusinessCalendar("Europe/Berlin", {6: [Interval(time(0), time(2, 30))]})
    late = BusinessCalendar("Europe/Berlin", {6: [Interval(time(2, 30), time(4))]})
    sunday = berlin(2026, 3, 29, 0)
    jump = datetime(2026, 3, 29, 1, tzinfo=UTC)
    assert early.elapsed(sunday, berlin(2026, 3, 29, 12)) == 2 * HOUR
    assert early.add(sunday, 2 * HOUR) == jump
    assert late.elapsed(sunday, berlin(2026, 3, 29, 12)) == 1 * HOUR
    assert late.add(sunday, 1) == jump + timedelta(seconds=1)


def test_an_interval_edge_repeated_by_fall_back_means_its_first_occurrence():
    # 02:30 happens twice on 2026-10-25 in Berlin: at 00:30 UTC (CEST) and 01:30 UTC (CET).
    calendar = BusinessCalendar("Europe/Berlin", {6: [Interval(time(2, 30), time(4))]})
    sunday = berlin(2026, 10, 25, 0)
    assert calendar.add(sunday, 1) == datetime(2026, 10, 25, 0, 30, 1, tzinfo=UTC)
    # From the first 02:30 (00:30 UTC) to 04:00 CET (03:00 UTC) is two and a half real hours.
    assert calendar.elapsed(sunday, berlin(2026, 10, 25, 12)) == 2 * HOUR + 30 * 60


# --- midnight-spanning hours, holidays, 24x7 -----------------------------------------------------


def test_a_night_shift_runs_past_midnight_into_the_next_day():
    night = BusinessCalendar("Europe/Berlin", NIGHT_SUPPORT)
    friday_late = berlin(2026, 6, 5, 23)
    assert night.add(friday_late, 7 * HOUR) == berlin(2026, 6, 6, 6)  # Saturday morning
    # No shift starts on Saturday or Sunday: the next one is Monday 22:00.
    assert night.add(friday_late, 8 * HOUR) == berlin(2026, 6, 8, 23)
    assert night.is_open(berlin(2026, 6, 6, 5))
    assert not night.is_open(berlin(2026, 6, 6, 23))


def test_sundays_night_shift_wraps_into_monday():
    calendar = BusinessCalendar("Europe/Berlin", {6: [Interval(time(22), time(6))]})
    assert calendar.elapsed(berlin(2026, 6, 8, 0), berlin(2026, 6, 8, 12)) == 6 * HOUR


def test_a_holiday_cancels_the_shift_that_starts_on_it_but_not_the_one_running_into_it():
    # Whit Monday 2026-05-25 as the holiday.
    night = BusinessCalendar("Europe/Berlin", NIGHT_SUPPORT, [date(2026, 5, 25)])
    # Sunday 22:00 -> Monday 22:00: no shift starts on Sunday, Monday's is cancelled.
    assert night.elapsed(berlin(2026, 5, 24, 22), berlin(2026, 5, 26, 0)) == 0
    # Friday 2026-05-22's shift runs into Saturday; a holiday on the Saturday leaves it alone.
    saturday_holiday = BusinessCalendar("Europe/Berlin", NIGHT_SUPPORT, [date(2026, 5, 23)])
    assert saturday_holiday.elapsed(berlin(2026, 5, 22, 22), berlin(2026, 5, 23, 12)) == 8 * HOUR


def test_calendar_time_counts_every_real_second_even_across_dst():
    start = berlin(2026, 3, 28, 12)
    assert CALENDAR_TIME.add(start, 24 * HOUR) == berlin(2026, 3, 29, 13)  # 23 h on the wall
    assert CALENDAR_TIME.elapsed(start, berlin(2026, 3, 29, 12)) == 23 * HOUR
    assert CALENDAR_TIME.add(start, HOUR, [(start, start + timedelta(minutes=30))]) == (
        start + timedelta(minutes=90)
    )


def test_a_whole_day_schedule_without_holidays_is_calendar_time():
    always = BusinessCalendar("America/New_York", ALL_DAY_EVERY_DAY)
    start = new_york(2026, 10, 30, 17, 45)
    for seconds in (1, HOUR, 3 * 24 * HOUR + 17, 40 * 24 * HOUR):
        assert always.add(start, seconds) == CALENDAR_TIME.add(start, seconds)


def test_two_calendars_in_different_zones_give_different_deadlines_for_one_start():
    start = datetime(2026, 6, 1, 8, tzinfo=UTC)  # 10:00 in Berlin, 04:00 in New York
    berlin_desk = BusinessCalendar("Europe/Berlin", WEEKDAYS_9_TO_17)
    new_york_desk = BusinessCalendar("America/New_York", WEEKDAYS_9_TO_17)
    assert berlin_desk.add(start, HOUR) == datetime(2026, 6, 1, 9, tzinfo=UTC)
    assert new_york_desk.add(start, HOUR) == datetime(2026, 6, 1, 14, tzinfo=UTC)


# --- pauses --------------------------------------------------------------------------------------


def test_overlapping_unsorted_pauses_count_once(office):
    monday = berlin(2026, 6, 1, 9)
    pauses = [
        (berlin(2026, 6, 1, 11), berlin(2026, 6, 1, 13)),
        (berlin(2026, 6, 1, 10), berlin(2026, 6, 1, 12)),
        (berlin(2026, 6, 1, 10, 30), berlin(2026, 6, 1, 11)),
    ]
    # 09-10 counts, 10-13 is paused, 13-16 counts.
    assert office.add(monday, 4 * HOUR, pauses) == berlin(2026, 6, 1, 16)
    assert office.elapsed(monday, berlin(2026, 6, 1, 16), pauses) == 4 * HOUR


def test_pauses_outside_hours_or_before_the_start_change_nothing(office):
    monday = berlin(2026, 6, 1, 9)
    pauses = [
        (berlin(2026, 5, 29, 10), berlin(2026, 5, 29, 12)),  # the Friday before
        (berlin(2026, 6, 1, 18), berlin(2026, 6, 2, 8)),  # overnight
    ]
    assert office.add(monday, 10 * HOUR, pauses) == office.add(monday, 10 * HOUR)


def test_a_pause_that_started_before_the_clock_holds_it_until_it_ends(office):
    pauses = [(berlin(2026, 6, 1, 8), berlin(2026, 6, 1, 12))]
    assert office.add(berlin(2026, 6, 1, 9), HOUR, pauses) == berlin(2026, 6, 1, 13)


def test_an_open_pause_means_no_deadline(office):
    monday = berlin(2026, 6, 1, 9)
    assert office.add(monday, 4 * HOUR, [(berlin(2026, 6, 1, 11), None)]) is None
    # ...unless the target was reached before the pause began.
    assert office.add(monday, HOUR, [(berlin(2026, 6, 1, 11), None)]) == berlin(2026, 6, 1, 10)
    # elapsed counts an open pause as paused until the end of the measurement.
    assert office.elapsed(monday, berlin(2026, 6, 1, 16), [(berlin(2026, 6, 1, 11), None)]) == (
        2 * HOUR
    )


def test_a_pause_ending_before_it_starts_is_refused(office):
    with pytest.raises(ValueError, match="cannot end"):
        office.add(berlin(2026, 6, 1, 9), HOUR, [(berlin(2026, 6, 1, 12), berlin(2026, 6, 1, 11))])


# --- elapsed --------------------------------------------------------------------------------------


def test_elapsed_counts_business_seconds_only(office):
    assert office.elapsed(berlin(2026, 6, 5, 16), berlin(2026, 6, 8, 10)) == 2 * HOUR
    assert office.elapsed(berlin(2026, 6, 6, 10), berlin(2026, 6, 6, 12)) == 0
    assert office.elapsed(berlin(2026, 6, 8, 10), berlin(2026, 6, 5, 16)) == 0  # backwards


def test_elapsed_over_years_adds_up_whichever_years_were_asked_first(german_holidays):
    # A fresh calendar asked about 2031 first, then 2024: its layout grows in both directions.
    calendar = BusinessCalendar("Europe/Berlin", WEEKDAYS_9_TO_17, german_holidays)
    late = calendar.elapsed(berlin(2027, 6, 1, 12), berlin(2031, 6, 1, 12))
    early = calendar.elapsed(berlin(2024, 6, 1, 12), berlin(2027, 6, 1, 12))
    assert calendar.elapsed(berlin(2024, 6, 1, 12), berlin(2031, 6, 1, 12)) == early + late
    weekdays = sum(
        1
        for n in range((date(2031, 6, 1) - date(2024, 6, 1)).days)
        if (date(2024, 6, 1) + timedelta(days=n)).weekday() < 5
    )
    holidays_on_weekdays = sum(
        1 for day in german_holidays if day.weekday() < 5 and date(2024, 6, 1) <= day
    )
    assert early + late == (weekdays - holidays_on_weekdays) * 8 * HOUR


# --- properties ----------------------------------------------------------------------------------

CALENDARS = {
    "berlin office": BusinessCalendar(
        "Europe/Berlin",
        WEEKDAYS_9_TO_17,
        [date(2026, 4, 3), date(2026, 4, 6), date(2026, 12, 25), date(2027, 1, 1)],
    ),
    "new york split day": BusinessCalendar(
        "America/New_York",
        dict.fromkeys(range(5), [Interval(time(8), time(12)), Interval(time(13), time(18))])
        | {5: [Interval(time(10), time(14))]},
    ),
    "berlin night support": BusinessCalendar("Europe/Berlin", NIGHT_SUPPORT),
    "sydney nights and weekends": BusinessCalendar(
        "Australia/Sydney",
        {0: [Interval(time(0), time(0))], 4: [Interval(time(20), time(2))]},
    ),
    "new york every night": BusinessCalendar("America/New_York", EVERY_NIGHT_0_TO_6),
    "calendar time": CALENDAR_TIME,
}
instants = st.datetimes(
    min_value=datetime(2025, 12, 1),  # noqa: DTZ001 - hypothesis wants naive bounds
    max_value=datetime(2027, 2, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
)


@st.composite
def pauses(draw, around: datetime) -> list[tuple[datetime, datetime | None]]:
    result = []
    for _ in range(draw(st.integers(0, 4))):
        start = around + timedelta(minutes=draw(st.integers(-3000, 15000)))
        length = draw(st.one_of(st.none(), st.integers(0, 5000)))
        result.append((start, None if length is None else start + timedelta(minutes=length)))
    return result


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(CALENDARS)),
    start=instants,
    seconds=st.integers(0, 6 * 24 * HOUR),
    data=st.data(),
)
def test_elapsed_undoes_add(name, start, seconds, data):
    calendar = CALENDARS[name]
    paused = data.draw(pauses(start))
    deadline = calendar.add(start, seconds, paused)
    if deadline is None:  # an open pause stopped the clock before the target
        assert any(end is None for _, end in paused)
        return
    assert deadline >= start
    assert calendar.elapsed(start, deadline, paused) == seconds
    later = calendar.add(start, seconds + 1, paused)
    assert later is None or later > deadline


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(CALENDARS)),
    start=instants,
    length=st.timedeltas(timedelta(0), timedelta(days=12)),
    data=st.data(),
)
def test_add_undoes_elapsed_up_to_the_last_moment_business_time_accrued(name, start, length, data):
    calendar = CALENDARS[name]
    end = start + length
    paused = data.draw(pauses(start))
    spent = calendar.elapsed(start, end, paused)
    reached = calendar.add(start, spent, paused)
    if reached is None:
        return
    assert start <= reached <= end
    assert calendar.elapsed(reached, end, paused) == 0


def wall_clock_count(calendar: BusinessCalendar, start: datetime, minutes: int) -> int:
    """An independent oracle: walk minute by minute and read the local wall clock.

    A minute counts when its wall time lies in a shift that started on that local day or in a
    midnight-spanning shift of the day before, and that day is no holiday.
    """
    zone = ZoneInfo(calendar.tz)
    count = 0
    for step in range(minutes):
        local = (start + timedelta(minutes=step)).astimezone(zone)
        second = local.hour * 3600 + local.minute * 60
        today, yesterday = local.date(), local.date() - timedelta(days=1)
        for day, offset in ((today, 0), (yesterday, 86_400)):
            if day in calendar.holidays:
                continue
            if any(s <= second + offset < e for s, e in calendar.shifts[day.weekday()]):
                count += 1
                break
    return count * 60


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(
        ["berlin office", "new york split day", "berlin night support", "new york every night"]
    ),
    day=st.sampled_from(
        [date(2026, 3, 6), date(2026, 3, 27), date(2026, 10, 23), date(2026, 10, 30)]
    ),  # the Fridays before a DST change in New York or Berlin
    offset_minutes=st.integers(0, 3 * 24 * 60),
    minutes=st.integers(0, 4 * 24 * 60),
)
def test_elapsed_agrees_with_reading_the_wall_clock_minute_by_minute_around_dst(
    name, day, offset_minutes, minutes
):
    calendar = CALENDARS[name]
    start = datetime.combine(day, time(0), UTC) + timedelta(minutes=offset_minutes)
    end = start + timedelta(minutes=minutes)
    assert calendar.elapsed(start, end) == wall_clock_count(calendar, start, minutes)


# --- calendars as values, and calendars without business time -----------------------------------


def test_calendars_are_values_and_cached_ones_are_shared():
    one = BusinessCalendar("Europe/Berlin", WEEKDAYS_9_TO_17, [date(2026, 4, 3)])
    two = BusinessCalendar("Europe/Berlin", dict(WEEKDAYS_9_TO_17), (date(2026, 4, 3),))
    assert one == two
    assert hash(one) == hash(two)
    assert one != BusinessCalendar("Europe/Berlin", WEEKDAYS_9_TO_17)
    assert cached_calendar("Europe/Berlin", WEEKDAYS_9_TO_17, [date(2026, 4, 3)]) is (
        cached_calendar("Europe/Berlin", WEEKDAYS_9_TO_17, {date(2026, 4, 3)})
    )
    with pytest.raises(AttributeError):
        one.tz = "UTC"


def test_a_calendar_without_business_time_for_400_days_says_so_instead_of_looping():
    mondays = [date(2026, 6, 1) + timedelta(weeks=n) for n in range(70)]
    calendar = BusinessCalendar("Europe/Berlin", {0: DAY_9_TO_17}, mondays)
    with pytest.raises(NoBusinessTimeError, match="No business hours in the 400 days after"):
        calendar.add(berlin(2026, 5, 30, 12), HOUR)
    # A start closer to the end of the holidays gets its deadline.
    assert calendar.add(berlin(2027, 6, 1, 12), HOUR) == berlin(2027, 10, 4, 10)


def test_dates_outside_the_supported_years_are_refused(office):
    with pytest.raises(ValueError, match="1900-2199"):
        office.add(datetime(2500, 1, 1, tzinfo=UTC), HOUR)


def test_bad_definitions_are_refused_when_building_a_calendar():
    with pytest.raises(InvalidScheduleError, match="Unknown time zone 'Mars/Olympus'"):
        BusinessCalendar("Mars/Olympus", WEEKDAYS_9_TO_17)
    with pytest.raises(InvalidScheduleError) as raised:
        BusinessCalendar("Europe/Berlin", {})
    assert raised.value.messages == ["No business hours: add at least one interval to one weekday."]
    with pytest.raises(TypeError, match="dates"):
        BusinessCalendar("Europe/Berlin", WEEKDAYS_9_TO_17, [berlin(2026, 4, 3)])


# --- validation ----------------------------------------------------------------------------------


def test_a_sensible_schedule_has_no_errors():
    assert validate_weekly_hours(WEEKDAYS_9_TO_17) == []
    assert validate_weekly_hours(ALL_DAY_EVERY_DAY) == []
    touching = {0: [Interval(time(9), time(12)), Interval(time(12), time(17))]}
    assert validate_weekly_hours(touching) == []
    # Friday's night shift ends at 06:00 Saturday, exactly when Saturday's hours start.
    assert validate_weekly_hours({4: [(time(22), time(6))], 5: [(time(6), time(12))]}) == []


@pytest.mark.parametrize(
    ("weekly", "message"),
    [
        ({}, "No business hours: add at least one interval to one weekday."),
        ({1: []}, "No business hours: add at least one interval to one weekday."),
        (
            {0: [(time(9), time(9))]},
            "Monday 09:00-09:00 has zero length (use 00:00-00:00 for the whole day).",
        ),
        (
            {0: [(time(9), time(13)), (time(12), time(17))]},
            "Monday 09:00-13:00 overlaps Monday 12:00-17:00.",
        ),
        (
            {4: [(time(22), time(6))], 5: [(time(5), time(12))]},
            "Friday 22:00-06:00 overlaps Saturday 05:00-12:00.",
        ),
        (
            {0: [(time(5), time(12))], 6: [(time(22), time(6))]},
            "Monday 05:00-12:00 overlaps Sunday 22:00-06:00.",
        ),
        (
            {2: [(time(9), time(17)), (time(9), time(17))]},
            "Wednesday 09:00-17:00 overlaps Wednesday 09:00-17:00.",
        ),
        (
            {0: [(time(h), time(h, 30)) for h in range(7)]},
            "Monday has 7 intervals; at most 6 are allowed.",
        ),
        ({7: [(time(9), time(17))]}, "Unknown weekday 7: use 0 (Monday) to 6 (Sunday)."),
        ({3: [(time(9),)]}, "Thursday: every interval needs a start time and an end time."),
        (
            {0: [(time(9, tzinfo=UTC), time(17))]},
            "Monday 09:00-17:00: give wall-clock times without a time zone "
            "(the calendar's time zone applies).",
        ),
    ],
)
def test_bad_schedules_get_clear_messages(weekly, message):
    assert message in validate_weekly_hours(weekly)


def test_validation_lists_every_problem_at_once():
    errors = validate_weekly_hours(
        {0: [(time(9), time(9))], 4: [(time(22), time(6))], 5: [(time(1), time(2))]}
    )
    assert errors == [
        "Monday 09:00-09:00 has zero length (use 00:00-00:00 for the whole day).",
        "Friday 22:00-06:00 overlaps Saturday 01:00-02:00.",
    ]


# --- holiday files -------------------------------------------------------------------------------


def test_the_german_sample_gives_each_holiday_of_2026_once():
    assert parse_ics(GERMAN_HOLIDAYS_ICS, years=range(2026, 2027)) == [
        Holiday(date(2026, 1, 1), "Neujahr"),
        Holiday(date(2026, 4, 3), "Karfreitag"),
        Holiday(date(2026, 4, 6), "Ostermontag"),
        Holiday(date(2026, 5, 1), "Tag der Arbeit"),
        Holiday(date(2026, 12, 24), "Heiligabend (Betrieb geschlossen)"),
        Holiday(date(2026, 12, 25), "Weihnachten"),
        Holiday(date(2026, 12, 26), "Weihnachten"),
    ]
    # The timed Betriebsversammlung (2026-06-12) and the cancelled 2026-06-15 are not holidays.


def test_yearly_rules_expand_over_the_years_asked_for_and_one_offs_stay_in_their_year():
    days = [holiday.date for holiday in parse_ics(GERMAN_HOLIDAYS_ICS, years=range(2027, 2029))]
    assert days == [
        date(2027, 1, 1),
        date(2027, 5, 1),
        date(2027, 12, 25),
        date(2027, 12, 26),
        date(2028, 1, 1),
        date(2028, 5, 1),
        date(2028, 12, 25),
        date(2028, 12, 26),
    ]
    assert parse_ics(GERMAN_HOLIDAYS_ICS, years=range(2000, 2001)) == []


def test_without_years_one_offs_stay_and_rules_run_from_their_start_into_the_next_years():
    days = {holiday.date for holiday in parse_ics(GERMAN_HOLIDAYS_ICS)}
    this_year = datetime.now(tz=UTC).year
    assert {date(2025, 1, 1), date(2026, 4, 3), date(this_year + 2, 12, 26)} <= days
    assert date(this_year + 3, 1, 1) not in days
    # A rule that starts beyond that window still gives its first year.
    future = ics("UID:f\r\nDTSTART;VALUE=DATE:20400301\r\nRRULE:FREQ=YEARLY\r\nSUMMARY:Jubilaeum")
    assert parse_ics(future) == [Holiday(date(2040, 3, 1), "Jubilaeum")]


def test_exceptions_extra_dates_moved_and_cancelled_occurrences():
    data = ics(
        "UID:company-day\r\nDTSTART;VALUE=DATE:20260710\r\nRRULE:FREQ=YEARLY;COUNT=4\r\n"
        "EXDATE;VALUE=DATE:20270710\r\nRDATE;VALUE=DATE:20270711\r\nSUMMARY:Betriebsausflug",
        # The 2028 occurrence moves to the 14th, the 2029 one is called off.
        "UID:company-day\r\nRECURRENCE-ID;VALUE=DATE:20280710\r\n"
        "DTSTART;VALUE=DATE:20280714\r\nSUMMARY:Betriebsausflug (verschoben)",
        "UID:company-day\r\nRECURRENCE-ID;VALUE=DATE:20290710\r\n"
        "DTSTART;VALUE=DATE:20290710\r\nSTATUS:CANCELLED\r\nSUMMARY:Betriebsausflug",
    )
    assert parse_ics(data, years=range(2026, 2031)) == [
        Holiday(date(2026, 7, 10), "Betriebsausflug"),
        Holiday(date(2027, 7, 11), "Betriebsausflug"),
        Holiday(date(2028, 7, 14), "Betriebsausflug (verschoben)"),
    ]


def test_multi_day_events_by_end_or_duration_and_names_of_shared_days_joined():
    data = ics(
        "UID:a\r\nDTSTART;VALUE=DATE:20261228\r\nDURATION:P3D\r\nSUMMARY:Betriebsferien",
        "UID:b\r\nDTSTART;VALUE=DATE:20261229\r\nDTEND;VALUE=DATE:20261229\r\nSUMMARY:Inventur",
    )
    assert parse_ics(data) == [
        Holiday(date(2026, 12, 28), "Betriebsferien"),
        Holiday(date(2026, 12, 29), "Betriebsferien / Inventur"),
        Holiday(date(2026, 12, 30), "Betriebsferien"),
    ]


def test_outlook_style_midnight_to_midnight_events_are_whole_days_in_their_own_zone():
    data = ics(
        "UID:a\r\nDTSTART;TZID=America/New_York:20261126T000000\r\n"
        "DTEND;TZID=America/New_York:20261128T000000\r\nSUMMARY:Thanksgiving",
    )
    assert [h.date for h in parse_ics(data)] == [date(2026, 11, 26), date(2026, 11, 27)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "The holiday file is empty."),
        (b"Neujahr;2026-01-01\nKarfreitag;2026-04-03\n", "This is not an iCalendar (.ics) file"),
        (b'{"holidays": ["2026-01-01"]}', "This is not an iCalendar (.ics) file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "This is not an iCalendar (.ics) file"),
        (GERMAN_HOLIDAYS_ICS[:300], "This is not an iCalendar (.ics) file"),
        (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n", "The file has no events"),
        (ics("UID:x\r\nDTSTART;VALUE=DATE:20261345\r\nSUMMARY:Kaputt"), "DTSTART is not valid"),
        (ics("UID:x\r\nDTSTART;VALUE=DATE:202602\r\nSUMMARY:Kurz"), "DTSTART is not a date"),
        (ics("UID:x\r\nSUMMARY:Ohne Datum"), "'Ohne Datum' has no start date (DTSTART)"),
        (
            ics("UID:x\r\nDTSTART;VALUE=DATE:20260101\r\nRRULE:FREQ=SOMETIMES\r\nSUMMARY:R"),
            "RRULE is not valid",
        ),
        (
            ics("UID:x\r\nDTSTART;VALUE=DATE:20260105\r\nDTEND;VALUE=DATE:20260101\r\nSUMMARY:Z"),
            "'Z' ends before it starts",
        ),
        (
            ics("UID:x\r\nDTSTART:20260612T140000Z\r\nDTEND:20260612T160000Z\r\nSUMMARY:Meeting"),
            "The file has no all-day events",
        ),
        (
            ics("UID:x\r\nDTSTART;VALUE=DATE:20260101\r\nRRULE:FREQ=DAILY\r\nSUMMARY:Immer"),
            "repeats more than 5000 times",
        ),
        (b"BEGIN:VCALENDAR\r\n" + b"X-PAD:" + b"a" * MAX_ICS_BYTES, "larger than 2 MB"),
    ],
)
def test_bad_holiday_files_raise_one_clear_error(data, message):
    with pytest.raises(HolidayFileError) as raised:
        parse_ics(data, years=range(2000, 2040))
    assert message in str(raised.value)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_are_a_holiday_file_error_or_holidays_never_a_crash(data):
    try:
        parse_ics(data, years=range(2026, 2027))
    except HolidayFileError:
        pass


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_a_damaged_sample_is_a_holiday_file_error_or_holidays_never_a_crash(data):
    damaged = bytearray(GERMAN_HOLIDAYS_ICS)
    for _ in range(data.draw(st.integers(1, 5))):
        at = data.draw(st.integers(0, len(damaged) - 1))
        action = data.draw(st.sampled_from(["replace", "delete", "insert"]))
        if action == "replace":
            damaged[at] = data.draw(st.integers(0, 255))
        elif action == "delete":
            del damaged[at : at + data.draw(st.integers(1, 12))]
        else:
            damaged[at:at] = data.draw(st.sampled_from([b":", b";", b"\r\n", b"0", b"T", b","]))
    try:
        result = parse_ics(bytes(damaged), years=range(2026, 2028))
    except HolidayFileError:
        return
    assert all(isinstance(holiday, Holiday) for holiday in result)


# --- fetching holiday files ----------------------------------------------------------------------


class _HolidayServer(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        try:
            self._answer()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up on a too-large body, as it should

    def _answer(self) -> None:
        status, headers, body = self.routes.get(self.path, (404, {}, b"not found"))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if "Content-Length" not in headers and "Transfer-Encoding" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if headers.get("Transfer-Encoding") == "chunked":
            for start in range(0, len(body), 65_536):
                piece = body[start : start + 65_536]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def holiday_server():
    _HolidayServer.routes = {
        "/feiertage.ics": (200, {"Content-Type": "text/calendar"}, GERMAN_HOLIDAYS_ICS),
        "/huge.ics": (200, {"Transfer-Encoding": "chunked"}, b"X" * (MAX_ICS_BYTES + 10)),
        "/declared-huge.ics": (200, {"Content-Length": str(MAX_ICS_BYTES + 1)}, b""),
        "/to-file": (302, {"Location": "file:///etc/passwd"}, b""),
        "/moved": (301, {"Location": "/feiertage.ics"}, b""),
    }
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HolidayServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_holiday_calendar_is_fetched_and_parsed(holiday_server):
    data = fetch_ics(f"{holiday_server}/moved")
    assert Holiday(date(2026, 4, 3), "Karfreitag") in parse_ics(data, years=range(2026, 2027))


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/missing.ics", "answered HTTP 404"),
        ("/huge.ics", "is larger than 2048 KB"),
        ("/declared-huge.ics", "is larger than 2048 KB"),
        ("/to-file", "Could not fetch"),
    ],
)
def test_fetch_failures_are_holiday_file_errors(holiday_server, path, message):
    with pytest.raises(HolidayFileError, match=message):
        fetch_ics(f"{holiday_server}{path}")


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.org/x.ics", "gopher://x", "/etc/hosts", "http://"]
)
def test_only_web_addresses_are_fetched(url):
    with pytest.raises(HolidayFileError, match=r"only be fetched from http:// or https://"):
        fetch_ics(url)


def test_a_server_that_never_answers_times_out():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # the kernel accepts the connection; nobody ever answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/x.ics"
        with pytest.raises(HolidayFileError, match=r"did not answer within 0.5 s"):
            fetch_ics(url, timeout=0.5)


def test_a_closed_port_is_a_refused_connection():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(HolidayFileError, match="refused"):
        fetch_ics(f"http://127.0.0.1:{port}/x.ics")
