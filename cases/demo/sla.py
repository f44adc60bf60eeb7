"""The SLA configuration a new installation starts with: a default business calendar and a
catch-all policy, so that a new case gets deadlines out of the box.

`seed_demo` calls `sla_defaults_create` on every run (with or without demo data: it is
configuration, not demo content). It never changes what an admin configured: an existing
default calendar or default policy is left as it is. The one thing a later run adds is the
German public holidays of a year the seeded calendar has none for yet (this year and next),
so a long-running installation keeps its holidays current without an iCalendar feed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, time, timedelta

from dateutil.easter import easter
from django.db import transaction
from django.utils import timezone

from cases.choices import Priority, SlaMetric
from cases.models import BusinessCalendar, BusinessHours, Holiday, SlaPolicy, SlaTarget

CALENDAR_NAME = "Business hours"
CALENDAR_TIMEZONE = "Europe/Berlin"
OPENS, CLOSES = time(8), time(18)
POLICY_NAME = "Standard"

H = 60  # minutes
# A business day of the calendar above is 10 hours (08:00-18:00): targets in business days
# are stored as that many business hours.
BUSINESS_DAY = 10 * H
# (first response, next response, resolution), all in business time.
TARGETS: dict[str, tuple[int, int, int]] = {
    Priority.URGENT: (1 * H, 2 * H, 8 * H),
    Priority.HIGH: (4 * H, 8 * H, 2 * BUSINESS_DAY),
    Priority.NORMAL: (8 * H, 1 * BUSINESS_DAY, 5 * BUSINESS_DAY),
    Priority.LOW: (2 * BUSINESS_DAY, 3 * BUSINESS_DAY, 10 * BUSINESS_DAY),
}


@dataclass(frozen=True)
class SlaDefaults:
    calendar: BusinessCalendar | None
    policy: SlaPolicy | None
    calendar_created: bool
    policy_created: bool
    holidays_added: int

    @property
    def changed(self) -> bool:
        return self.calendar_created or self.policy_created or bool(self.holidays_added)


def german_public_holidays(year: int) -> list[tuple[date, str]]:
    """The public holidays of all German states in `year` (the nationwide ones)."""
    sunday = easter(year)
    return sorted(
        [
            (date(year, 1, 1), "Neujahr"),
            (sunday - timedelta(days=2), "Karfreitag"),
            (sunday + timedelta(days=1), "Ostermontag"),
            (date(year, 5, 1), "Tag der Arbeit"),
            (sunday + timedelta(days=39), "Christi Himmelfahrt"),
            (sunday + timedelta(days=50), "Pfingstmontag"),
            (date(year, 10, 3), "Tag der Deutschen Einheit"),
            (date(year, 12, 25), "1. Weihnachtstag"),
            (date(year, 12, 26), "2. Weihnachtstag"),
        ]
    )


def sla_defaults_create(*, today: date | None = None) -> SlaDefaults:
    """Make sure a default calendar and a default (catch-all) policy exist; idempotent, in
    one transaction. Two runs at once cannot double them: both rows are found or created by
    their unique names."""
    today = today or timezone.localdate()
    with transaction.atomic():
        calendar, calendar_created = _default_calendar()
        holidays_added = _holidays(calendar, years=(today.year, today.year + 1))
        policy, policy_created = _default_policy()
    return SlaDefaults(calendar, policy, calendar_created, policy_created, holidays_added)


def _default_calendar() -> tuple[BusinessCalendar | None, bool]:
    """The default calendar; created when there is none and the name is free (a calendar
    of that name that is not the default is an admin's, and stays as it is)."""
    existing = BusinessCalendar.objects.filter(is_default=True).first()
    if existing is not None:
        return existing, False
    calendar, created = BusinessCalendar.objects.get_or_create(
        name=CALENDAR_NAME, defaults={"timezone": CALENDAR_TIMEZONE, "is_default": True}
    )
    if not created:
        return (calendar if calendar.is_default else None), False
    BusinessHours.objects.bulk_create(
        BusinessHours(calendar=calendar, weekday=day, start=OPENS, end=CLOSES) for day in range(5)
    )
    return calendar, True


def _holidays(calendar: BusinessCalendar | None, *, years: tuple[int, ...]) -> int:
    """German holidays for each of `years` the seeded calendar has none in (an admin's own
    calendar, or one in another time zone, is left alone)."""
    if calendar is None or (calendar.name, calendar.timezone) != (CALENDAR_NAME, CALENDAR_TIMEZONE):
        return 0
    rows = [
        Holiday(calendar=calendar, date=day, name=name)
        for year in years
        if not calendar.holidays.filter(date__year=year).exists()
        for day, name in german_public_holidays(year)
    ]
    Holiday.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def _default_policy() -> tuple[SlaPolicy | None, bool]:
    """The default policy; created (with its targets) like the calendar above."""
    existing = SlaPolicy.objects.filter(is_default=True).first()
    if existing is not None:
        return existing, False
    policy, created = SlaPolicy.objects.get_or_create(
        name=POLICY_NAME, defaults={"order": 1000, "is_default": True}
    )
    if not created:
        return (policy if policy.is_default else None), False
    metrics = (SlaMetric.FIRST_RESPONSE, SlaMetric.NEXT_RESPONSE, SlaMetric.RESOLUTION)
    SlaTarget.objects.bulk_create(
        SlaTarget(policy=policy, priority=priority, metric=metric, minutes=minutes)
        for priority, minutes_per_metric in TARGETS.items()
        for metric, minutes in zip(metrics, minutes_per_metric, strict=True)
    )
    return policy, True
