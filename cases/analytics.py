"""Analytics of the cases app: the dashboard, trends and performance figures.

Read queries, selectors-style (DESIGN.md): every function takes the caller and starts from
`cases.selectors.case_list(user=...)`, so a figure only ever counts cases the caller may see.
All counting happens in the database with a fixed number of queries per call, however many
cases there are; Python only adds up per-bucket totals (at most 367 buckets) and interpolates
percentiles from at most two values per group.

Conventions every figure follows:

- Time is UTC: day and week buckets are `TruncDay`/`TruncWeek` in UTC (weeks start on
  Monday); "today" and "this week" are the UTC day and week.
- A period is half-open, `[start, end)`.
- Cases merged into another case are duplicates and are left out: a merge closes them, which
  would otherwise count as a resolution of the same matter twice.
- "Resolved" means `resolved_at` is set (resolving or closing sets it, reopening clears it).
  History is read from these current timestamps, so a case that was reopened and is open again
  counts as open since its creation.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db import models
from django.db.models import (
    Aggregate,
    Count,
    DurationField,
    Exists,
    F,
    OuterRef,
    Q,
    QuerySet,
    Window,
)
from django.db.models.functions import Ceil, Floor, RowNumber, TruncDay, TruncMonth, TruncWeek
from django.utils import timezone

from cases.choices import OPEN_CASE_STATUSES, CaseType, Channel, Priority, TimelineKind
from cases.models import Case, TimelineEvent
from cases.selectors import case_list
from crm.db import is_postgresql
from crm.models import User

DEFAULT_PERIOD_DAYS = 30
MAX_PERIOD_DAYS = 366
PERCENTILES = (0.5, 0.9)


class TrendGrouping(models.TextChoices):
    """The API's trend buckets."""

    DAY = "day", "Day"
    WEEK = "week", "Week"


class Interval(models.TextChoices):
    """Trend buckets the selectors can count in: the API's (`TrendGrouping`) and calendar
    months, which the web reports offer for long periods (a year by day is 366 points)."""

    DAY = "day", "Day"
    WEEK = "week", "Week"
    MONTH = "month", "Month"


TRUNCATE = {Interval.DAY: TruncDay, Interval.WEEK: TruncWeek, Interval.MONTH: TruncMonth}


class PerformanceGrouping(models.TextChoices):
    AGENT = "agent", "Agent"
    TEAM = "team", "Team"
    PRIORITY = "priority", "Priority"
    TYPE = "type", "Type"
    CHANNEL = "channel", "Channel"
    ORGANIZATION = "organization", "Organization"


class VolumeGrouping(models.TextChoices):
    """What the volume report breaks cases down by (a subset of `PerformanceGrouping`)."""

    CHANNEL = "channel", "Channel"
    TYPE = "type", "Type"
    TEAM = "team", "Team"
    ORGANIZATION = "organization", "Organization"


@dataclass(frozen=True)
class Period:
    """A half-open span of time `[start, end)` in UTC."""

    start: datetime
    end: datetime

    @classmethod
    def default(cls, *, now: datetime | None = None) -> Period:
        """The last 30 UTC days including today: whole days, so day buckets are never partial."""
        end = _day_start(now or timezone.now()) + timedelta(days=1)
        return cls(start=end - timedelta(days=DEFAULT_PERIOD_DAYS), end=end)

    def contains(self, field_name: str) -> Q:
        return Q(**{f"{field_name}__gte": self.start, f"{field_name}__lt": self.end})


class PeriodError(ValueError):
    """A period no report can be made for; the message says why, in words for people."""


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def period_between(
    *, start: datetime | None = None, end: datetime | None = None, now: datetime | None = None
) -> Period:
    """The period `[start, end)` every analytics entry point (API, web reports) accepts.

    Missing bounds take the defaults (`end`: the end of today, UTC; `start`: 30 days before
    `end`). Raises `PeriodError` unless `start` is before `end` and the period spans at most
    `MAX_PERIOD_DAYS` days: longer ones would mean more day buckets than a chart or a
    response should carry. (Each entry point keeps its dates between `EARLIEST` and
    `LATEST` as it parses them.)
    """
    if end is None:
        end = Period.default(now=now).end
    if start is None:
        start = end - timedelta(days=DEFAULT_PERIOD_DAYS)
    if start >= end:
        raise PeriodError(
            f"The start ({start.isoformat()}) must be earlier than the end ({end.isoformat()})."
        )
    if end - start > timedelta(days=MAX_PERIOD_DAYS):
        raise PeriodError(
            f"The period from {start.isoformat()} to {end.isoformat()} is longer than "
            f"{MAX_PERIOD_DAYS} days; choose a shorter one."
        )
    return Period(start=start, end=end)


@dataclass
class Dashboard:
    open: int
    unassigned: int
    open_by_status: dict[str, int]
    open_by_priority: dict[str, int]
    open_by_team: list[dict[str, Any]]
    today: dict[str, Any]
    this_week: dict[str, Any]
    period: dict[str, int]


@dataclass
class TrendBucket:
    start: date
    created: int
    resolved: int
    backlog: int


@dataclass
class PerformanceRow:
    key: int | str | None
    label: str
    created: int
    first_responses: int
    first_response_median_seconds: float | None
    first_response_p90_seconds: float | None
    handled: int
    resolution_median_seconds: float | None
    resolution_p90_seconds: float | None
    reopened: int
    reopen_rate: float | None


class PercentileCont(Aggregate):
    """PostgreSQL's `percentile_cont(f) WITHIN GROUP (ORDER BY expr)`: the continuous
    percentile, interpolated linearly between the two nearest values.

    The fraction is written into the SQL as a literal, which is why it must be a float in
    [0, 1]; `filter=` becomes `FILTER (WHERE ...)`, which ordered-set aggregates accept.
    """

    function = "PERCENTILE_CONT"
    name = "PercentileCont"
    template = "%(function)s(%(fraction)r) WITHIN GROUP (ORDER BY %(expressions)s)"

    def __init__(self, expression: Any, *, fraction: float, **extra: Any) -> None:
        fraction = float(fraction)
        if not 0.0 <= fraction <= 1.0:
            raise ValueError("A percentile fraction lies between 0 and 1.")
        super().__init__(expression, fraction=fraction, **extra)


def _day_start(moment: datetime) -> datetime:
    return datetime.combine(moment.astimezone(UTC).date(), time.min, tzinfo=UTC)


def visible_cases(
    *, user: User, team_id: int | None = None, team_ids: Collection[int] | None = None
) -> QuerySet[Case]:
    """The caller's cases (optionally one team's, or only those of `team_ids`: the teams a
    lead's reports cover), merged duplicates left out, unordered so that grouping is by the
    asked-for columns only."""
    cases = case_list(user=user).filter(merged_into__isnull=True)
    if team_id is not None:
        cases = cases.filter(team_id=team_id)
    if team_ids is not None:
        cases = cases.filter(team_id__in=sorted(team_ids))
    return cases.order_by()


def dashboard(
    *, user: User, period: Period, team_id: int | None = None, now: datetime | None = None
) -> Dashboard:
    """What is open now (by status, priority and team, and unassigned), and what was created
    and resolved today, this week and in `period`. Two queries."""
    now = now or timezone.now()
    today = _day_start(now)
    week = today - timedelta(days=today.weekday())
    tomorrow = today + timedelta(days=1)
    is_open = Q(status__in=OPEN_CASE_STATUSES)
    cases = visible_cases(user=user, team_id=team_id)
    windows = {
        "today": Period(today, tomorrow),
        "week": Period(week, tomorrow),
        "period": period,
    }
    counts: dict[str, Any] = {
        "open": Count("pk", filter=is_open),
        "unassigned": Count("pk", filter=is_open & Q(assignee__isnull=True)),
    }
    for status in OPEN_CASE_STATUSES:
        counts[f"status_{status}"] = Count("pk", filter=Q(status=status))
    for priority in Priority.values:
        counts[f"priority_{priority}"] = Count("pk", filter=is_open & Q(priority=priority))
    for name, window in windows.items():
        counts[f"{name}_created"] = Count("pk", filter=window.contains("created_at"))
        counts[f"{name}_resolved"] = Count("pk", filter=window.contains("resolved_at"))
    # Every counted row is open or has an event in one of the windows; saying so lets the
    # database read the open-case index and the date indexes instead of every visible case.
    relevant = is_open
    for window in windows.values():
        relevant |= window.contains("created_at") | window.contains("resolved_at")
    totals = cases.filter(relevant).aggregate(**counts)
    by_team = (
        cases.filter(is_open)
        .values("team_id", "team__name")
        .annotate(open=Count("pk"))
        .order_by("team__name", "team_id")
    )
    return Dashboard(
        open=totals["open"],
        unassigned=totals["unassigned"],
        open_by_status={str(s): totals[f"status_{s}"] for s in OPEN_CASE_STATUSES},
        open_by_priority={p: totals[f"priority_{p}"] for p in Priority.values},
        open_by_team=[
            {"id": row["team_id"], "name": row["team__name"], "open": row["open"]}
            for row in by_team
        ],
        today={
            "start": today,
            "created": totals["today_created"],
            "resolved": totals["today_resolved"],
        },
        this_week={
            "start": week,
            "created": totals["week_created"],
            "resolved": totals["week_resolved"],
        },
        period={"created": totals["period_created"], "resolved": totals["period_resolved"]},
    )


def trend_bucket_starts(*, period: Period, group_by: str) -> list[date]:
    """The UTC dates on which the day, week or month buckets covering `period` start (the
    first and last may be cut by the period's bounds)."""
    first = period.start.astimezone(UTC).date()
    if group_by == Interval.WEEK:
        first -= timedelta(days=first.weekday())
    elif group_by == Interval.MONTH:
        first = first.replace(day=1)
    starts = []
    current = first
    while datetime.combine(current, time.min, tzinfo=UTC) < period.end:
        starts.append(current)
        current = next_bucket_start(current, group_by)
    return starts


def next_bucket_start(start: date, group_by: str) -> date:
    """Where the day, week or month bucket after the one starting on `start` starts."""
    if group_by == Interval.MONTH:
        return date(start.year + start.month // 12, start.month % 12 + 1, 1)
    return start + timedelta(days=7 if group_by == Interval.WEEK else 1)


def trends(
    *,
    user: User,
    period: Period,
    group_by: str,
    team_id: int | None = None,
    team_ids: Collection[int] | None = None,
) -> list[TrendBucket]:
    """Cases created and resolved per day, week or month, and the backlog (cases open) at the
    end of each bucket. Three queries.

    Backlog at the end of a bucket is "created before then minus resolved before then": one
    count gives the backlog when the period starts, two grouped counts give the per-bucket
    figures, and Python keeps the running sum over the buckets (never over cases).
    """
    if group_by not in Interval.values:
        raise ValueError(f"Cannot group trends by {group_by!r}.")
    trunc = TRUNCATE[group_by]
    cases = visible_cases(user=user, team_id=team_id, team_ids=team_ids)
    # Open when the period starts: created before it and not resolved before it. (A case is
    # never resolved before it was created, so this equals created-before minus
    # resolved-before, but reads only the open and recently resolved cases through the
    # resolved_at index instead of every case ever created.)
    open_at_start = cases.filter(
        Q(created_at__lt=period.start)
        & (Q(resolved_at__isnull=True) | Q(resolved_at__gte=period.start))
    ).count()

    def per_bucket(field_name: str) -> dict[date, int]:
        rows = (
            cases.filter(period.contains(field_name))
            .annotate(bucket=trunc(field_name, output_field=models.DateField(), tzinfo=UTC))
            .values("bucket")
            .annotate(n=Count("pk"))
            .values_list("bucket", "n")
        )
        return dict(rows)

    created, resolved = per_bucket("created_at"), per_bucket("resolved_at")
    backlog = open_at_start
    buckets = []
    for start in trend_bucket_starts(period=period, group_by=group_by):
        backlog += created.get(start, 0) - resolved.get(start, 0)
        buckets.append(
            TrendBucket(
                start=start,
                created=created.get(start, 0),
                resolved=resolved.get(start, 0),
                backlog=backlog,
            )
        )
    return buckets


_GROUP_COLUMNS: dict[str, tuple[str, tuple[str, ...]]] = {
    PerformanceGrouping.AGENT: (
        "assignee_id",
        ("assignee__first_name", "assignee__last_name", "assignee__email"),
    ),
    PerformanceGrouping.TEAM: ("team_id", ("team__name",)),
    PerformanceGrouping.PRIORITY: ("priority", ()),
    PerformanceGrouping.TYPE: ("type", ()),
    PerformanceGrouping.CHANNEL: ("channel", ()),
    PerformanceGrouping.ORGANIZATION: ("organization_id", ("organization__name",)),
}
_CHOICES: dict[str, type[models.TextChoices]] = {
    PerformanceGrouping.PRIORITY: Priority,
    PerformanceGrouping.TYPE: CaseType,
    PerformanceGrouping.CHANNEL: Channel,
}


def _first_response_time() -> Any:
    return F("first_response_at") - F("created_at")


def _resolution_time() -> Any:
    return F("resolved_at") - F("created_at")


def performance(
    *,
    user: User,
    period: Period,
    group_by: str,
    team_id: int | None = None,
    team_ids: Collection[int] | None = None,
) -> list[PerformanceRow]:
    """Per agent, team, priority, type, channel or organization: how fast and how well cases
    were handled.

    Each figure looks at the cases whose own event fell in `period`:

    - `created`: cases created in the period;
    - `first_responses` and the first-response median and p90: cases first answered in the
      period, timed `first_response_at - created_at`;
    - `handled` and the resolution median and p90: cases resolved (or closed) in the period,
      timed `resolved_at - created_at`;
    - `reopened` / `reopen_rate`: how many of the handled cases were ever reopened (a
      `status_changed` timeline event with `data.reopened`), as a share of `handled`.

    Agents are the cases' current assignees; `key` None is "unassigned" (for organizations:
    cases of no organization). Percentiles are
    `percentile_cont` on PostgreSQL (one query in all) and `_window_percentiles` on SQLite
    (three queries in all); both give the same, exact, linearly interpolated values.
    """
    if group_by not in PerformanceGrouping.values:
        raise ValueError(f"Cannot group performance by {group_by!r}.")
    key, label_columns = _GROUP_COLUMNS[group_by]
    responded, resolved = period.contains("first_response_at"), period.contains("resolved_at")
    reopened = Exists(
        TimelineEvent.objects.filter(
            case=OuterRef("pk"), kind=TimelineKind.STATUS_CHANGED, data__reopened=True
        )
    )
    figures: dict[str, Any] = {
        "created": Count("pk", filter=period.contains("created_at")),
        "first_responses": Count("pk", filter=responded),
        "handled": Count("pk", filter=resolved),
        "reopened": Count("pk", filter=resolved & Q(reopened)),
    }
    timed = {
        "first_response": (_first_response_time, responded),
        "resolution": (_resolution_time, resolved),
    }
    postgres = is_postgresql()
    if postgres:
        for name, (duration, condition) in timed.items():
            for fraction in PERCENTILES:
                figures[f"{name}_{_suffix(fraction)}"] = PercentileCont(
                    duration(), fraction=fraction, filter=condition, output_field=DurationField()
                )
    cases = visible_cases(user=user, team_id=team_id, team_ids=team_ids).filter(
        period.contains("created_at") | responded | resolved
    )
    rows = list(cases.values(key, *label_columns).annotate(**figures))
    if not postgres:
        for name, (duration, condition) in timed.items():
            found = _window_percentiles(
                cases.filter(condition), key=key, duration=duration(), fractions=PERCENTILES
            )
            for row in rows:
                for fraction in PERCENTILES:
                    row[f"{name}_{_suffix(fraction)}"] = found.get(row[key], {}).get(fraction)
    result = [
        PerformanceRow(
            key=row[key],
            label=_label(group_by, row),
            created=row["created"],
            first_responses=row["first_responses"],
            first_response_median_seconds=_seconds(row["first_response_median"]),
            first_response_p90_seconds=_seconds(row["first_response_p90"]),
            handled=row["handled"],
            resolution_median_seconds=_seconds(row["resolution_median"]),
            resolution_p90_seconds=_seconds(row["resolution_p90"]),
            reopened=row["reopened"],
            reopen_rate=round(row["reopened"] / row["handled"], 4) if row["handled"] else None,
        )
        for row in rows
    ]
    return sorted(result, key=lambda row: _sort_key(group_by, row))


@dataclass
class VolumeRow:
    key: int | str | None
    label: str
    created: int
    resolved: int


def volume(
    *,
    user: User,
    period: Period,
    group_by: str,
    team_id: int | None = None,
    team_ids: Collection[int] | None = None,
) -> list[VolumeRow]:
    """Cases created and cases resolved in `period` per channel, type, team or organization
    (`key` None: no organization). One query; lighter than `performance`, which times every
    case too."""
    if group_by not in VolumeGrouping.values:
        raise ValueError(f"Cannot group volume by {group_by!r}.")
    key, label_columns = _GROUP_COLUMNS[group_by]
    created, resolved = period.contains("created_at"), period.contains("resolved_at")
    rows = (
        visible_cases(user=user, team_id=team_id, team_ids=team_ids)
        .filter(created | resolved)
        .values(key, *label_columns)
        .annotate(created=Count("pk", filter=created), resolved=Count("pk", filter=resolved))
    )
    result = [
        VolumeRow(
            key=row[key],
            label=_label(group_by, row),
            created=row["created"],
            resolved=row["resolved"],
        )
        for row in rows
    ]
    return sorted(result, key=lambda row: _sort_key(group_by, row))


def _suffix(fraction: float) -> str:
    return "median" if fraction == 0.5 else f"p{round(fraction * 100)}"


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else round(value.total_seconds(), 3)


def _label(group_by: str, row: dict[str, Any]) -> str:
    if group_by == PerformanceGrouping.AGENT:
        if row["assignee_id"] is None:
            return "Unassigned"
        name = f"{row['assignee__first_name']} {row['assignee__last_name']}".strip()
        return name or row["assignee__email"]
    if group_by == PerformanceGrouping.TEAM:
        return row["team__name"]
    if group_by == PerformanceGrouping.ORGANIZATION:
        return row["organization__name"] or "No organization"
    value = row[_GROUP_COLUMNS[group_by][0]]
    choices = _CHOICES[group_by]
    return str(choices(value).label) if value in choices.values else value


def _sort_key(group_by: str, row: PerformanceRow | VolumeRow) -> tuple[Any, ...]:
    """Choices in their declared order (low before urgent), names alphabetically, the
    unassigned last."""
    if group_by in _CHOICES:
        values = _CHOICES[group_by].values
        return (0, values.index(row.key) if row.key in values else len(values), str(row.key))
    return (row.key is None, row.label.casefold(), row.key or 0)


def _window_percentiles(
    cases: QuerySet[Case], *, key: str, duration: Any, fractions: Iterable[float]
) -> dict[Hashable, dict[float, timedelta]]:
    """Exact continuous percentiles per group where the database has no `percentile_cont`
    (SQLite, the embedded default): one query, bounded to at most two rows per group and
    fraction.

    Window functions number each group's durations in order (`ROW_NUMBER`) and count them;
    only the rows at the two ranks around `(n - 1) * fraction` come back, and Python
    interpolates between them linearly, exactly as `percentile_cont` does. No per-case list
    ever leaves the database.
    """
    fractions = tuple(fractions)
    ranked = cases.annotate(duration=duration).annotate(
        rank=Window(RowNumber(), partition_by=[F(key)], order_by=[F("duration").asc()]),
        size=Window(Count("pk"), partition_by=[F(key)]),
    )
    wanted = Q()
    for fraction in fractions:
        position = (F("size") - 1) * fraction
        wanted |= Q(rank__gte=Floor(position) + 1, rank__lte=Ceil(position) + 1)
    values: dict[Hashable, dict[int, timedelta]] = {}
    sizes: dict[Hashable, int] = {}
    for group, rank, size, value in ranked.filter(wanted).values_list(
        key, "rank", "size", "duration"
    ):
        values.setdefault(group, {})[rank] = value
        sizes[group] = size
    result: dict[Hashable, dict[float, timedelta]] = {}
    for group, by_rank in values.items():
        for fraction in fractions:
            position = (sizes[group] - 1) * fraction
            low, high = by_rank[math.floor(position) + 1], by_rank[math.ceil(position) + 1]
            result.setdefault(group, {})[fraction] = low + (high - low) * (
                position - math.floor(position)
            )
    return result
