"""Business-time arithmetic for SLA targets: weekly hours in a time zone, minus holidays and pauses.

Pure Python (no ORM), because the SLA clock recomputes every open case's deadline in bulk and
must stay within microseconds per call; the models and admin build on it.

How a calendar is read (each rule is deliberate; tests/cases/test_business_hours.py holds them):

- **Intervals are local wall-clock times of one weekday.** ``end <= start`` means the interval
  runs past midnight into the next day (Fri 22:00-06:00 covers Sat 00:00-06:00); ``00:00-00:00``
  is the whole day. Any other ``start == end`` is an error (zero length).
- **A midnight-spanning interval belongs to the day it starts on** (it is one shift). A holiday
  cancels every interval that starts on it, including the part after midnight; the part of an
  interval that started on the working day before and runs into the holiday still counts.
- **Business time is real elapsed time.** Wall-clock endpoints are turned into instants and the
  time between them counts, so a 00:00-06:00 interval is 5 real hours in the spring-forward night
  and 7 in the fall-back night, while 08:00-17:00 stays 9 hours on both days. An endpoint that the
  spring-forward jump skips (02:30 in Europe/Berlin on the last Sunday of March) means the moment
  of the jump; an endpoint that the fall-back hour repeats means its first occurrence. Both rules
  keep the wall-to-instant mapping monotonic, so intervals that touch or are apart on the wall
  clock never overlap in real time.
- **A deadline is the earliest moment** the amount of business time has elapsed: 8 business hours
  from Friday 09:00 are due Friday 17:00, not Monday 09:00. ``add(start, 0)`` is ``start``.
- **Pauses** (a case waiting on the customer) are subtracted as they are: they may overlap, come
  unsorted, or be open (end ``None``: still paused), in which case ``add`` answers ``None``
  because no deadline runs while the clock is stopped indefinitely.

Speed: per calendar the business intervals are laid out once per local year as sorted UTC
instants (integer microseconds) with running totals, so ``add`` and ``elapsed`` are a few
binary searches. Calendars are immutable and hashable; ``cached_calendar`` hands out one shared
instance per definition so the layout is built once per process.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MAX_INTERVALS_PER_DAY = 6
# A calendar with no business time this long after a moment has none at all, for our purposes.
SEARCH_HORIZON_DAYS = 400
# The layout is built per year; this bounds the work a wild date (year 9000) could cause.
MIN_YEAR = 1900
MAX_YEAR = 2199
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

DAY_SECONDS = 86_400
WEEK_SECONDS = 7 * DAY_SECONDS
US = 1_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HORIZON_US = SEARCH_HORIZON_DAYS * DAY_SECONDS * US
_OPEN = 2**62  # the end of a pause that has not ended


class Interval(NamedTuple):
    """Business hours on one weekday, as local wall-clock times (see the module docstring)."""

    start: time
    end: time


WeeklyHours = Mapping[int, Sequence[Interval | tuple[time, time]]]
Pause = tuple[datetime, datetime | None]
Shifts = tuple[tuple[tuple[int, int], ...], ...]


class InvalidScheduleError(ValueError):
    """A calendar was built from weekly hours or a time zone that do not validate."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__(" ".join(messages))
        self.messages = messages


class NoBusinessTimeError(ValueError):
    """The calendar has no business time for ``SEARCH_HORIZON_DAYS`` days: no deadline exists."""


# --- validation ---------------------------------------------------------------------------------


def _clock(value: time) -> str:
    return value.strftime("%H:%M:%S" if value.second else "%H:%M")


def _label(day: int, start: time, end: time) -> str:
    return f"{WEEKDAY_NAMES[day]} {_clock(start)}-{_clock(end)}"


def _seconds(value: time) -> int:
    return value.hour * 3600 + value.minute * 60 + value.second


def _interval_errors(day: int, interval: object) -> list[str]:
    """What is wrong with one interval on its own (shape, time zone, zero length)."""
    name = WEEKDAY_NAMES[day]
    if not (
        isinstance(interval, tuple | list)
        and len(interval) == 2
        and all(isinstance(value, time) for value in interval)
    ):
        return [f"{name}: every interval needs a start time and an end time."]
    start, end = interval
    if start.tzinfo is not None or end.tzinfo is not None:
        return [
            f"{_label(day, start, end)}: give wall-clock times without a time zone "
            "(the calendar's time zone applies)."
        ]
    if start.microsecond or end.microsecond:
        return [f"{_label(day, start, end)}: times cannot have fractions of a second."]
    if start == end and _seconds(start) != 0:
        return [f"{_label(day, start, end)} has zero length (use 00:00-00:00 for the whole day)."]
    return []


def _overlap_errors(spans: list[tuple[int, int, str]]) -> list[str]:
    """Overlaps on the circular week, so Sunday 22:00-06:00 collides with Monday 05:00-...."""
    errors = []
    for i, (start_a, end_a, label_a) in enumerate(spans):
        for start_b, end_b, label_b in spans[i + 1 :]:
            for shift in (-WEEK_SECONDS, 0, WEEK_SECONDS):
                if start_a < end_b + shift and start_b + shift < end_a:
                    errors.append(f"{label_a} overlaps {label_b}.")
                    break
    return errors


def validate_weekly_hours(
    weekly: WeeklyHours, *, max_per_day: int = MAX_INTERVALS_PER_DAY
) -> list[str]:
    """Every problem with a weekly schedule, as messages an admin form can show; never raises.

    An empty list means the schedule is usable. Messages name the weekday and the interval so
    that the admin can find it among several days.
    """
    errors: list[str] = []
    for key in weekly:
        if not (isinstance(key, int) and 0 <= key <= 6):
            errors.append(f"Unknown weekday {key!r}: use 0 (Monday) to 6 (Sunday).")
    spans: list[tuple[int, int, str]] = []
    for day in range(7):
        intervals = weekly.get(day) or ()
        if len(intervals) > max_per_day:
            errors.append(
                f"{WEEKDAY_NAMES[day]} has {len(intervals)} intervals; "
                f"at most {max_per_day} are allowed."
            )
        for interval in intervals:
            problems = _interval_errors(day, interval)
            errors.extend(problems)
            if problems:
                continue
            start, end = _seconds(interval[0]), _seconds(interval[1])
            if end <= start:
                end += DAY_SECONDS
            origin = day * DAY_SECONDS
            spans.append((origin + start, origin + end, _label(day, *interval)))
    if not spans and not errors:
        errors.append("No business hours: add at least one interval to one weekday.")
    errors.extend(_overlap_errors(spans))
    return errors


def _shifts(weekly: WeeklyHours) -> Shifts:
    """Per weekday, (start, end) in seconds after that day's local midnight; end may pass 86400."""
    days = []
    for day in range(7):
        spans = []
        for start_time, end_time in weekly.get(day) or ():
            start, end = _seconds(start_time), _seconds(end_time)
            spans.append((start, end + DAY_SECONDS if end <= start else end))
        days.append(tuple(sorted(spans)))
    return tuple(days)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidScheduleError([f"Unknown time zone {name!r}."]) from None


# --- instants as integer microseconds -----------------------------------------------------------


def _to_us(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone; business time needs aware datetimes.")
    delta = moment - EPOCH
    return (delta.days * DAY_SECONDS + delta.seconds) * US + delta.microseconds


def _from_us(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def _merged_pauses(pauses: Sequence[Pause], after: int) -> list[tuple[int, int]]:
    """Pauses as sorted, disjoint (start, end) microseconds, dropping those over by ``after``."""
    spans = []
    for start, end in pauses:
        start_us = _to_us(start)
        end_us = _OPEN if end is None else _to_us(end)
        if end_us < start_us:
            raise ValueError(f"A pause cannot end ({end}) before it starts ({start}).")
        if end_us > after and end_us > start_us:
            spans.append((start_us, end_us))
    spans.sort()
    merged: list[list[int]] = []
    for start_us, end_us in spans:
        if merged and start_us <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end_us)
        else:
            merged.append([start_us, end_us])
    return [(start_us, end_us) for start_us, end_us in merged]


# --- the layout: business intervals as UTC instants with running totals ------------------------


_FIRST_US = (date(MIN_YEAR, 1, 2).toordinal() - date(1970, 1, 1).toordinal()) * DAY_SECONDS * US
_LAST_US = (date(MAX_YEAR, 12, 31).toordinal() - date(1970, 1, 1).toordinal()) * DAY_SECONDS * US


class _Layout(NamedTuple):
    """Business intervals of local years ``first_year``..``end_year - 1``, read-only once built.

    ``cum_start[i]`` is the business time before ``starts[i]`` on a scale that never shifts when
    years are added on either side, so totals read from different layouts can be subtracted.
    Totals are exact for instants in ``[low, high)``.
    """

    first_year: int
    end_year: int
    low: int
    high: int
    starts: list[int]
    ends: list[int]
    cum_start: list[int]
    cum_end: list[int]
    cum_first: int  # the total before the first interval (or everywhere, when there is none)


class _Timeline:
    """One calendar's layout, extended a year at a time as instants outside it are asked for."""

    def __init__(self, zone: ZoneInfo, shifts: Shifts, holidays: frozenset[date]) -> None:
        self._zone = zone
        self._shifts = shifts
        self._holidays = holidays
        self._layout: _Layout | None = None
        self._lock = threading.Lock()

    # Wall-clock to instant, by the module docstring's rules.
    def _wall_us(self, wall: datetime) -> int:
        instant = wall.replace(tzinfo=self._zone).astimezone(UTC)  # fold=0: first occurrence
        if instant.astimezone(self._zone).replace(tzinfo=None) != wall:
            instant = self._jump(wall)
        return _to_us(instant)

    def _jump(self, wall: datetime) -> datetime:
        """The instant the clocks jumped over ``wall`` (a wall time that does not exist).

        PEP 495 maps a skipped time to one instant before the jump (fold=1) and one after
        (fold=0); the jump is the first whole second between them with the later offset.
        """
        low = _to_us(wall.replace(tzinfo=self._zone, fold=1)) // US
        high = _to_us(wall.replace(tzinfo=self._zone, fold=0)) // US
        offset = _from_us(high * US).astimezone(self._zone).utcoffset()
        while high - low > 1:
            middle = (low + high) // 2
            if _from_us(middle * US).astimezone(self._zone).utcoffset() == offset:
                high = middle
            else:
                low = middle
        return _from_us(high * US)

    def _midnight_us(self, year: int) -> int:
        return self._wall_us(datetime(year, 1, 1))  # noqa: DTZ001 - a wall-clock time

    def _intervals(self, first: date, end: date) -> list[tuple[int, int]]:
        """Merged business intervals of the shifts starting on local days ``first``..``end``-1."""
        spans: list[tuple[int, int]] = []
        for ordinal in range(first.toordinal(), end.toordinal()):
            day = date.fromordinal(ordinal)
            if day in self._holidays:
                continue
            midnight = datetime(day.year, day.month, day.day)  # noqa: DTZ001 - wall clock
            for start, stop in self._shifts[day.weekday()]:
                low = self._wall_us(midnight + timedelta(seconds=start))
                high = self._wall_us(midnight + timedelta(seconds=stop))
                if high <= low:
                    continue
                if spans and low <= spans[-1][1]:
                    spans[-1] = (spans[-1][0], max(spans[-1][1], high))
                else:
                    spans.append((low, high))
        return spans

    def _build(self, first_year: int, end_year: int) -> _Layout:
        """A fresh layout, or the current one grown to cover ``first_year``..``end_year``-1."""
        if first_year < MIN_YEAR or end_year > MAX_YEAR + 1:
            raise ValueError(
                f"Business time is computed for the years {MIN_YEAR}-{MAX_YEAR} only "
                f"(asked for {first_year if first_year < MIN_YEAR else end_year - 1})."
            )
        old = self._layout
        if old is None:
            first_day = date(first_year, 1, 1) - timedelta(days=1)
            spans = self._intervals(first_day, date(end_year, 1, 1))
            return self._assemble(first_year, end_year, [spans], 0)
        first_year, end_year = min(first_year, old.first_year), max(end_year, old.end_year)
        day_before = timedelta(days=1)
        before = self._intervals(
            date(first_year, 1, 1) - day_before, date(old.first_year, 1, 1) - day_before
        )
        after = self._intervals(date(old.end_year, 1, 1), date(end_year, 1, 1))
        kept = list(zip(old.starts, old.ends, strict=True))
        cum_first = old.cum_first - sum(high - low for low, high in before)
        return self._assemble(first_year, end_year, [before, kept, after], cum_first)

    def _assemble(
        self,
        first_year: int,
        end_year: int,
        parts: list[list[tuple[int, int]]],
        cum_first: int,
    ) -> _Layout:
        """Concatenate interval lists (in order) with running totals starting at ``cum_first``."""
        starts: list[int] = []
        ends: list[int] = []
        cum_start: list[int] = []
        cum_end: list[int] = []
        total = cum_first
        for part in parts:
            for low, high in part:
                starts.append(low)
                ends.append(high)
                cum_start.append(total)
                total += high - low
                cum_end.append(total)
        return _Layout(
            first_year,
            end_year,
            self._midnight_us(first_year),
            self._midnight_us(end_year),
            starts,
            ends,
            cum_start,
            cum_end,
            cum_first,
        )

    def _grow(self, first_year: int, end_year: int) -> _Layout:
        with self._lock:
            layout = self._layout
            if layout is None or first_year < layout.first_year or end_year > layout.end_year:
                layout = self._layout = self._build(first_year, end_year)
            return layout

    def _covering(self, instant: int) -> _Layout:
        layout = self._layout
        if layout is not None and layout.low <= instant < layout.high:
            return layout
        if not _FIRST_US <= instant < _LAST_US:
            raise ValueError(
                f"{_from_us(instant).isoformat()} is outside the years {MIN_YEAR}-{MAX_YEAR} "
                "for which business time is computed."
            )
        year = _from_us(instant).astimezone(self._zone).year
        return self._grow(year, year + 1)

    def cum(self, instant: int) -> int:
        """Business time before ``instant`` on the layout's fixed scale."""
        layout = self._covering(instant)
        i = bisect_right(layout.starts, instant) - 1
        if i < 0:
            return layout.cum_first
        return layout.cum_start[i] + min(instant, layout.ends[i]) - layout.starts[i]

    def inv(self, total: int, since: int) -> int:
        """The earliest instant by which the business time ``total`` has accrued.

        The caller knows ``cum(since) < total``. Grows the layout forward until it holds that
        instant. Raises ``NoBusinessTimeError`` when no business time starts within
        ``SEARCH_HORIZON_DAYS`` of ``since`` (or of the last business time before the target),
        which also makes sure a calendar without hours never loops.
        """
        layout = self._covering(since)
        while True:
            last = since
            following = bisect_right(layout.ends, since)  # the first interval ending after since
            if following < len(layout.ends) and layout.starts[following] < layout.high:
                if layout.starts[following] - since > _HORIZON_US:
                    raise self._nothing_after(since)
                j = bisect_left(layout.cum_end, total)
                if j < len(layout.cum_end) and layout.starts[j] < layout.high:
                    return layout.starts[j] + total - layout.cum_start[j]
                last = layout.ends[-1]
            if layout.high - last > _HORIZON_US:
                raise self._nothing_after(last)
            layout = self._grow(layout.first_year, layout.end_year + 1)

    @staticmethod
    def _nothing_after(instant: int) -> NoBusinessTimeError:
        return NoBusinessTimeError(
            f"No business hours in the {SEARCH_HORIZON_DAYS} days after "
            f"{_from_us(instant).isoformat()}: check the weekly hours and holidays."
        )

    def contains(self, instant: int) -> bool:
        layout = self._covering(instant)
        i = bisect_right(layout.starts, instant) - 1
        return i >= 0 and instant < layout.ends[i]


class _Always:
    """The timeline of calendar time: every instant is business time."""

    @staticmethod
    def cum(instant: int) -> int:
        return instant

    @staticmethod
    def inv(total: int, since: int) -> int:
        return total

    @staticmethod
    def contains(instant: int) -> bool:
        return True


# --- the calendar --------------------------------------------------------------------------------


class BusinessCalendar:
    """Weekly business hours in a time zone, minus holidays (whole local days); immutable.

    ``shifts`` holds the weekly hours per weekday as (start, end) seconds after that day's local
    midnight, the end past 86400 for intervals that run past midnight.

    Equal definitions compare and hash equal, so a calendar can key a cache. Use
    ``cached_calendar`` to share one instance (and its layout) per definition.
    """

    __slots__ = ("tz", "shifts", "holidays", "always_open", "_key", "_timeline")

    def __init__(
        self,
        tz: str,
        weekly: WeeklyHours,
        holidays: Iterable[date] = (),
        *,
        _always_open: bool = False,
    ) -> None:
        zone = _zone(tz)
        if not _always_open:
            errors = validate_weekly_hours(weekly)
            if errors:
                raise InvalidScheduleError(errors)
        days = frozenset(holidays)
        if any(isinstance(day, datetime) or not isinstance(day, date) for day in days):
            raise TypeError("Holidays are dates (whole local days), not datetimes.")
        shifts = _shifts(weekly)
        set_ = object.__setattr__
        set_(self, "tz", tz)
        set_(self, "shifts", shifts)
        set_(self, "holidays", days)
        set_(self, "always_open", _always_open)
        set_(self, "_key", (tz, shifts, days, _always_open))
        set_(self, "_timeline", _Always() if _always_open else _Timeline(zone, shifts, days))

    @classmethod
    def calendar_time(cls, tz: str = "UTC") -> BusinessCalendar:
        """A 24x7 calendar without holidays, for targets counted in calendar time.

        Pauses still stop its clock, which is why it shares the API rather than being plain
        datetime arithmetic.
        """
        return cls(tz, {}, (), _always_open=True)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("BusinessCalendar is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BusinessCalendar) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        if self.always_open:
            return "BusinessCalendar.calendar_time()"
        hours = sum(stop - start for day in self.shifts for start, stop in day) / 3600
        return f"<BusinessCalendar {self.tz} {hours:g} h/week, {len(self.holidays)} holidays>"

    def add(self, start: datetime, seconds: int, pauses: Sequence[Pause] = ()) -> datetime | None:
        """When ``seconds`` of business time outside ``pauses`` have elapsed since ``start`` (UTC).

        ``None`` when an open pause (end ``None``) stops the clock before that: no deadline runs
        while a case waits indefinitely. Raises ``NoBusinessTimeError`` when the calendar has no
        business time for ``SEARCH_HORIZON_DAYS`` days.
        """
        if seconds < 0:
            raise ValueError(f"Cannot add a negative amount of business time ({seconds} s).")
        instant = _to_us(start)
        if seconds == 0:
            return _from_us(instant)
        result = self._add_us(instant, seconds * US, _merged_pauses(pauses, instant))
        return None if result is None else _from_us(result)

    def _add_us(self, instant: int, need: int, pauses: list[tuple[int, int]]) -> int | None:
        timeline = self._timeline
        accrued = timeline.cum(instant)
        for pause_start, pause_end in pauses:
            if pause_start > instant:
                before_pause = timeline.cum(pause_start) - accrued
                if before_pause >= need:
                    break
                need -= before_pause
            if pause_end == _OPEN:
                return None
            instant = max(instant, pause_end)
            accrued = timeline.cum(instant)
        return timeline.inv(accrued + need, instant)

    def elapsed(self, start: datetime, end: datetime, pauses: Sequence[Pause] = ()) -> int:
        """Whole seconds of business time from ``start`` to ``end`` outside ``pauses``.

        0 when ``end`` is not after ``start``. An open pause counts as paused until ``end``.
        ``elapsed(start, add(start, s, p), p) == s``; the other way round,
        ``add(start, elapsed(start, end, p), p)`` is ``end`` when ``end`` is business time
        (whole seconds after ``start``), else the last moment business time accrued before it.
        """
        low, high = _to_us(start), _to_us(end)
        if high <= low:
            return 0
        cum = self._timeline.cum
        total = cum(high) - cum(low)
        for pause_start, pause_end in _merged_pauses(pauses, low):
            if pause_start >= high:
                break
            total -= cum(min(pause_end, high)) - cum(max(pause_start, low))
        return total // US

    def is_open(self, moment: datetime) -> bool:
        """Whether business time accrues at ``moment`` (pauses aside)."""
        return self._timeline.contains(_to_us(moment))


CALENDAR_TIME = BusinessCalendar.calendar_time()


@lru_cache(maxsize=256)
def _cached(tz: str, weekly: tuple, holidays: frozenset[date]) -> BusinessCalendar:
    return BusinessCalendar(tz, dict(enumerate(weekly)), holidays)


def cached_calendar(
    tz: str, weekly: WeeklyHours, holidays: Iterable[date] = ()
) -> BusinessCalendar:
    """One shared calendar per definition, so its layout is built once per process.

    The SLA clock should call this (or keep its own cache keyed by the calendar row's id and
    modification time) rather than building a calendar per case.
    """
    if any(day not in range(7) for day in weekly):
        return BusinessCalendar(tz, weekly, holidays)  # raises InvalidScheduleError
    key = tuple(tuple(tuple(interval) for interval in weekly.get(day) or ()) for day in range(7))
    return _cached(tz, key, frozenset(holidays))
