"""Micro-benchmark of business-time arithmetic (cases/sla/hours.py); prints, asserts nothing.

The SLA budget: recomputing the deadlines of 100,000 open cases must take at most 60 s on two
cores, each deadline computed from the case's pauses. This measures the arithmetic alone (no
database) per call, and one single-core pass over 100,000 synthetic cases that do what the
clock does per case: one `add` for the deadline and one `elapsed` for the time spent so far.

Run: `.venv/bin/python bench/business_hours.py` (no database or Redis needed).
"""

from __future__ import annotations

import platform
import random
import sys
import time as clock
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cases.sla.hours import (  # noqa: E402
    CALENDAR_TIME,
    BusinessCalendar,
    Interval,
    cached_calendar,
)

HOUR = 3600
CASES = 100_000
GERMAN_HOLIDAYS_2026 = [
    date(2026, 1, 1),
    date(2026, 4, 3),
    date(2026, 4, 6),
    date(2026, 5, 1),
    date(2026, 5, 14),
    date(2026, 5, 25),
    date(2026, 10, 3),
    date(2026, 12, 24),
    date(2026, 12, 25),
    date(2026, 12, 26),
    date(2026, 12, 31),
]


def calendars() -> dict[str, BusinessCalendar]:
    weekdays = dict.fromkeys(range(5), [Interval(time(9), time(17))])
    split = dict.fromkeys(range(5), [Interval(time(8), time(12)), Interval(time(13), time(18))])
    return {
        "berlin 9-17 + holidays": cached_calendar("Europe/Berlin", weekdays, GERMAN_HOLIDAYS_2026),
        "new york split day": cached_calendar("America/New_York", split),
        "night support 22-06": cached_calendar(
            "Europe/Berlin", dict.fromkeys(range(5), [Interval(time(22), time(6))])
        ),
        "calendar time": CALENDAR_TIME,
    }


def random_case(rng: random.Random, now: datetime) -> tuple[datetime, int, list]:
    """A case opened in the last 60 days with a target of 8 business hours to 5 days."""
    start = now - timedelta(seconds=rng.randrange(60 * 24 * HOUR))
    target = rng.choice([8, 16, 24, 40]) * HOUR
    pauses = []
    for _ in range(rng.choice([0, 0, 1, 2, 3, 5])):
        begin = start + timedelta(seconds=rng.randrange(20 * 24 * HOUR))
        length = rng.randrange(4 * 24 * HOUR)
        pauses.append((begin, None if rng.random() < 0.05 else begin + timedelta(seconds=length)))
    return start, target, pauses


def per_call(label: str, function, repeat: int = 50_000) -> None:
    began = clock.perf_counter()
    for _ in range(repeat):
        function()
    took = (clock.perf_counter() - began) / repeat * 1e6
    print(f"  {label:<44} {took:7.2f} µs/call")


def micro(calendar: BusinessCalendar) -> None:
    start = datetime(2026, 3, 25, 11, tzinfo=UTC)
    end = start + timedelta(days=6)
    pauses = [
        (start + timedelta(hours=3), start + timedelta(hours=20)),
        (start + timedelta(hours=10), start + timedelta(hours=30)),
        (start + timedelta(days=2), start + timedelta(days=2, hours=1)),
    ]
    calendar.add(start, 1)  # the layout of 2026 is built once per calendar, not per call
    per_call("add 8 h, no pauses", lambda: calendar.add(start, 8 * HOUR))
    per_call("add 5 business days (40 h), no pauses", lambda: calendar.add(start, 40 * HOUR))
    per_call("add 40 h, 3 overlapping pauses", lambda: calendar.add(start, 40 * HOUR, pauses))
    per_call("elapsed over 6 days, no pauses", lambda: calendar.elapsed(start, end))
    per_call("elapsed over 6 days, 3 pauses", lambda: calendar.elapsed(start, end, pauses))


def bulk(calendar_list: list[BusinessCalendar]) -> float:
    rng = random.Random(11)
    now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    cases = [(rng.choice(calendar_list), *random_case(rng, now)) for _ in range(CASES)]
    began = clock.perf_counter()
    for calendar, start, target, pauses in cases:
        calendar.add(start, target, pauses)
        calendar.elapsed(start, now, pauses)
    return clock.perf_counter() - began


def layout_build() -> float:
    """The one-off cost a calendar pays for a year it has not seen (first call in that year)."""
    weekdays = dict.fromkeys(range(5), [Interval(time(9), time(17))])
    fresh = BusinessCalendar("Europe/Berlin", weekdays, GERMAN_HOLIDAYS_2026)
    began = clock.perf_counter()
    fresh.add(datetime(2026, 6, 1, tzinfo=UTC), 1)
    return (clock.perf_counter() - began) * 1e3


def main() -> None:
    print(f"Python {platform.python_version()} on {platform.machine()}, one core\n")
    known = calendars()
    for name, calendar in known.items():
        print(name)
        micro(calendar)
    print(f"\nfirst call in a new year (builds that year's layout): {layout_build():.1f} ms")
    took = bulk(list(known.values()))
    print(
        f"{CASES:,} cases, add + elapsed each with 0-5 pauses: {took:.2f} s on one core "
        f"({took / CASES * 1e6:.1f} µs per case; budget 60 s on two cores)"
    )


if __name__ == "__main__":
    main()
