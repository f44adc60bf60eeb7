"""SLA compliance reports: read queries, selectors-style, for the API and the admin report page.

Every function takes the caller and starts from `cases.selectors.case_list(user=...)`, so a figure
only ever counts cases the caller may see; merged duplicates are left out, as in
`cases.analytics`, whose conventions hold here too (UTC day/week buckets, half-open periods).
All counting happens in the database with a fixed number of queries per report (seven on
PostgreSQL, nine on SQLite), however many cases there are; Python only adds up per-group and
per-bucket rows.

When a target counts, and in which period (each choice deliberate):

- **A target counts once, when it concludes.** It is *met* when the team got there in time,
  counted at that moment; it is *breached* when its deadline passed first, counted at the
  deadline. A first response two hours late is one breach, on the day of the deadline; the
  late answer does not count again.
- **First response and resolution** compare the case's timestamp with its deadline, as the
  SLA clock (`cases.services.sla`) does: met when `first_response_at` (`resolved_at`) is at
  or before `sla_first_response_due` (`sla_resolution_due`); breached when it is later, or
  when it is still missing once the deadline has passed (and the clock is not paused).
  Resolving a case nobody answered concludes its first response too, at `resolved_at`. The
  clock keeps a concluded target's deadline on the case, which is what makes this possible.
- **Next response** recurs, so it is read from the timeline: each `sla_breached` event for
  `next_response` is a breach; a *met* next response is a team answer (a `message_sent`
  event other than an automatic acknowledgement, and not the case's first answer) to a
  customer message received since the previous answer, with no next-response breach in
  between, on a case whose policy has a next-response target for its priority. (A case
  resolved while the customer waits concludes that wait without an answer; it counts only
  if it breached before.)
- **Now** looks at open cases only: a target is *breached now* when its deadline has passed
  and it is still outstanding (no first response yet; a customer message waiting for the
  next response; the case not resolved), *at risk now* when its risk moment has passed but
  not its deadline. Paused targets are neither. A case with a breached target counts as
  breached, else as at risk when one of its targets is.
- **Groups** are the case's current policy, team, assignee or priority.
- **Distributions** are wall-clock seconds (`first_response_at - created_at`,
  `resolved_at - created_at`) of the cases first answered or resolved in the period,
  whatever their policy: business time would need every case's calendar in Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db import models
from django.db.models import (
    Count,
    DateTimeField,
    DurationField,
    Exists,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    When,
    Window,
)
from django.db.models.functions import Coalesce, RowNumber
from django.utils import timezone

from cases.analytics import (
    TRUNCATE,
    PercentileCont,
    Period,
    TrendGrouping,
    trend_bucket_starts,
)
from cases.choices import (
    OPEN_CASE_STATUSES,
    IntakeOutcome,
    Priority,
    SlaMetric,
    SlaState,
    TimelineKind,
)
from cases.models import Case, SlaTarget, TimelineEvent
from cases.selectors import case_list
from crm.db import is_postgresql
from crm.models import User

PERCENTILES = (0.5, 0.75, 0.9, 0.95)
MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
# Histogram edges for both first-response and resolution times: minutes to days.
HISTOGRAM_EDGES = (
    15 * MINUTE,
    30 * MINUTE,
    HOUR,
    2 * HOUR,
    4 * HOUR,
    8 * HOUR,
    DAY,
    2 * DAY,
    5 * DAY,
    10 * DAY,
)


class SlaGrouping(models.TextChoices):
    POLICY = "policy", "Policy"
    TEAM = "team", "Team"
    AGENT = "agent", "Agent"
    PRIORITY = "priority", "Priority"


@dataclass
class Tally:
    """Targets concluded: met and breached, and the share met (None when there were none)."""

    met: int = 0
    breached: int = 0

    @property
    def compliance_percent(self) -> float | None:
        total = self.met + self.breached
        return round(100 * self.met / total, 1) if total else None

    def add(self, other: Tally) -> None:
        self.met += other.met
        self.breached += other.breached


@dataclass
class ComplianceRow:
    group: int | str | None
    label: str
    met: int
    breached: int
    compliance_percent: float | None


@dataclass
class TrendBucket:
    period_start: date
    met: int
    breached: int
    compliance_percent: float | None
    metrics: dict[str, Tally]


@dataclass
class NowCounts:
    at_risk: int = 0
    breached: int = 0


@dataclass
class NowTeamRow:
    team: int
    label: str
    at_risk: int
    breached: int


@dataclass
class NowFigures:
    at_risk: int
    breached: int
    by_metric: dict[str, NowCounts]
    by_team: list[NowTeamRow]


@dataclass
class HistogramBucket:
    label: str
    lower_seconds: int | None
    upper_seconds: int | None
    count: int


@dataclass
class Distribution:
    count: int
    percentiles: dict[str, float | None]
    histogram: list[HistogramBucket]


@dataclass
class SlaReport:
    period: Period
    group_by: str
    interval: str
    compliance: dict[str, list[ComplianceRow]]
    totals: dict[str, Tally]
    trends: list[TrendBucket]
    now: NowFigures
    distributions: dict[str, Distribution]
    as_of: datetime = field(default_factory=timezone.now)


# --- which targets concluded how ----------------------------------------------------------------


@dataclass(frozen=True)
class _CaseTarget:
    """A target read from the case's own columns: first response or resolution."""

    done: str  # the alias (see `with_done`) of the moment that concludes it
    concluded_by: tuple[str, ...]  # the columns that moment is the first non-null of
    due: str
    state: str

    def with_done(self, cases: QuerySet[Case]) -> QuerySet[Case]:
        columns = [F(name) for name in self.concluded_by]
        return cases.alias(**{self.done: Coalesce(*columns) if len(columns) > 1 else columns[0]})

    def met(self) -> Q:
        # NULL on either side is not met: a missing deadline means no target.
        return Q(**{f"{self.done}__lte": F(self.due)})

    def breached(self, now: datetime) -> Q:
        late = Q(**{f"{self.done}__gt": F(self.due)})
        missing = Q(**{f"{self.done}__isnull": True, f"{self.due}__lt": now}) & ~Q(
            **{self.state: SlaState.PAUSED}
        )
        return late | missing

    def concluded_at(self, now: datetime) -> models.Case:
        return models.Case(
            When(self.met(), then=F(self.done)),
            When(self.breached(now), then=F(self.due)),
            default=None,
            output_field=DateTimeField(),
        )

    def touches(self, period: Period) -> Q:
        """A necessary condition for concluding in `period`, which the indexes can serve."""
        condition = period.contains(self.due)
        for name in self.concluded_by:
            condition |= period.contains(name)
        return condition


CASE_TARGETS = {
    # Resolving a case that was never answered concludes its first response too (as the
    # SLA clock has it): in time if before the deadline.
    SlaMetric.FIRST_RESPONSE: _CaseTarget(
        "first_response_done",
        ("first_response_at", "resolved_at"),
        "sla_first_response_due",
        "sla_first_response_state",
    ),
    SlaMetric.RESOLUTION: _CaseTarget(
        "resolution_done", ("resolved_at",), "sla_resolution_due", "sla_resolution_state"
    ),
}


def _team_answers() -> Q:
    """Timeline events that are the team answering (automatic acknowledgements are not)."""
    return Q(kind=TimelineKind.MESSAGE_SENT) & (
        Q(data__outcome__isnull=True) | ~Q(data__outcome=IntakeOutcome.AUTO_ACK)
    )


def _next_response_breach() -> Q:
    return Q(kind=TimelineKind.SLA_BREACHED, data__metric=SlaMetric.NEXT_RESPONSE)


def _next_response_events(cases: QuerySet[Case], period: Period) -> QuerySet[TimelineEvent]:
    """The timeline events of `period` that conclude a next-response target, annotated with
    `nr_met` (a team answer in time) and `nr_breached` (a breach event).

    Per answer three correlated subqueries, each served by the (case, created_at) index:
    the previous answer, whether a customer message came in since, and whether a
    next-response breach was recorded since.
    """
    same_case = {"case": OuterRef("case")}
    previous_answer = Subquery(
        TimelineEvent.objects.filter(_team_answers(), **same_case)
        .filter(created_at__lt=OuterRef("created_at"))
        .order_by("-created_at", "-pk")
        .values("created_at")[:1]
    )
    since_previous = {
        "created_at__gt": OuterRef("previous_answer"),
        "created_at__lte": OuterRef("created_at"),
    }
    events = (
        TimelineEvent.objects.filter(case__in=cases)
        .filter(period.contains("created_at"))
        .filter(_team_answers() | _next_response_breach())
        .annotate(previous_answer=previous_answer)
        .annotate(
            waited=Exists(
                TimelineEvent.objects.filter(
                    kind=TimelineKind.MESSAGE_RECEIVED, **same_case, **since_previous
                )
            ),
            late=Exists(
                TimelineEvent.objects.filter(_next_response_breach(), **same_case, **since_previous)
            ),
            targeted=Exists(
                SlaTarget.objects.filter(
                    policy=OuterRef("case__sla_policy"),
                    priority=OuterRef("case__priority"),
                    metric=SlaMetric.NEXT_RESPONSE,
                )
            ),
        )
    )
    return events.order_by()


def _next_response_counts() -> dict[str, Count]:
    met = _team_answers() & Q(waited=True, late=False, targeted=True)
    return {
        "nr_met": Count("pk", filter=met),
        "nr_breached": Count("pk", filter=_next_response_breach()),
    }


# --- groups -------------------------------------------------------------------------------------

_GROUP_COLUMNS: dict[str, tuple[str, tuple[str, ...]]] = {
    SlaGrouping.POLICY: ("sla_policy_id", ("sla_policy__name",)),
    SlaGrouping.TEAM: ("team_id", ("team__name",)),
    SlaGrouping.AGENT: (
        "assignee_id",
        ("assignee__first_name", "assignee__last_name", "assignee__email"),
    ),
    SlaGrouping.PRIORITY: ("priority", ()),
}


def _group_values(group_by: str, prefix: str = "") -> dict[str, F]:
    """The group's key and label columns under fixed names (`group`, `label0`...), whether
    read from the case or, with `prefix="case__"`, from a timeline event."""
    key, labels = _GROUP_COLUMNS[group_by]
    columns = {"group": F(f"{prefix}{key}")}
    columns |= {f"label{i}": F(f"{prefix}{name}") for i, name in enumerate(labels)}
    return columns


def _label(group_by: str, row: dict[str, Any]) -> str:
    if group_by == SlaGrouping.PRIORITY:
        value = row["group"]
        return str(Priority(value).label) if value in Priority.values else str(value)
    if row["group"] is None:
        return {SlaGrouping.POLICY: "No policy", SlaGrouping.AGENT: "Unassigned"}.get(group_by, "—")
    if group_by == SlaGrouping.AGENT:
        name = f"{row['label0'] or ''} {row['label1'] or ''}".strip()
        return name or row["label2"]
    return row["label0"]


def _sort_key(group_by: str, row: ComplianceRow) -> tuple[Any, ...]:
    """Priorities in their declared order, names alphabetically, "no policy"/"unassigned"
    last."""
    if group_by == SlaGrouping.PRIORITY:
        values = Priority.values
        return (0, values.index(row.group) if row.group in values else len(values), "")
    return (row.group is None, row.label.casefold(), row.group or 0)


# --- the report -----------------------------------------------------------------------------------


def _visible(*, user: User, team_id: int | None) -> QuerySet[Case]:
    cases = case_list(user=user).filter(merged_into__isnull=True)
    if team_id is not None:
        cases = cases.filter(team_id=team_id)
    return cases.order_by()


def sla_report(
    *,
    user: User,
    period: Period,
    group_by: str = SlaGrouping.POLICY,
    interval: str = TrendGrouping.DAY,
    team_id: int | None = None,
    now: datetime | None = None,
) -> SlaReport:
    """Compliance per group and metric, its trend per day or week, what is at risk or
    breached now, and the first-response and resolution time distributions."""
    if group_by not in SlaGrouping.values:
        raise ValueError(f"Cannot group SLA compliance by {group_by!r}.")
    if interval not in TrendGrouping.values:
        raise ValueError(f"Cannot bucket SLA trends by {interval!r}.")
    now = now or timezone.now()
    cases = _visible(user=user, team_id=team_id)
    compliance = sla_compliance(cases=cases, period=period, group_by=group_by, now=now)
    totals = {metric: Tally() for metric in SlaMetric.values}
    for metric, rows in compliance.items():
        for row in rows:
            totals[metric].add(Tally(row.met, row.breached))
    return SlaReport(
        period=period,
        group_by=group_by,
        interval=interval,
        compliance=compliance,
        totals=totals,
        trends=sla_trends(cases=cases, period=period, interval=interval, now=now),
        now=sla_now(cases=cases, now=now),
        distributions=sla_distributions(cases=cases, period=period),
        as_of=now,
    )


def sla_compliance(
    *, cases: QuerySet[Case], period: Period, group_by: str, now: datetime
) -> dict[str, list[ComplianceRow]]:
    """Per metric, one row per group with targets concluded in `period`. Two queries: the
    case columns (first response, resolution) and the timeline (next response)."""
    counts: dict[str, Any] = {}
    relevant = Q()
    for metric, target in CASE_TARGETS.items():
        counts[f"{metric}_met"] = Count("pk", filter=target.met() & period.contains(target.done))
        counts[f"{metric}_breached"] = Count(
            "pk", filter=target.breached(now) & period.contains(target.due)
        )
        relevant |= target.touches(period)
    for target in CASE_TARGETS.values():
        cases = target.with_done(cases)
    case_rows = list(
        cases.filter(relevant).values(**_group_values(group_by)).annotate(**counts).order_by()
    )
    event_rows = list(
        _next_response_events(cases, period)
        .values(**_group_values(group_by, prefix="case__"))
        .annotate(**_next_response_counts())
        .order_by()
    )
    found: dict[str, list[ComplianceRow]] = {metric: [] for metric in SlaMetric.values}
    for metric in CASE_TARGETS:
        for row in case_rows:
            tally = Tally(row[f"{metric}_met"], row[f"{metric}_breached"])
            if tally.met or tally.breached:
                found[metric].append(_row(group_by, row, tally))
    for row in event_rows:
        tally = Tally(row["nr_met"], row["nr_breached"])
        if tally.met or tally.breached:
            found[SlaMetric.NEXT_RESPONSE].append(_row(group_by, row, tally))
    return {
        metric: sorted(rows, key=lambda row: _sort_key(group_by, row))
        for metric, rows in found.items()
    }


def _row(group_by: str, row: dict[str, Any], tally: Tally) -> ComplianceRow:
    return ComplianceRow(
        group=row["group"],
        label=_label(group_by, row),
        met=tally.met,
        breached=tally.breached,
        compliance_percent=tally.compliance_percent,
    )


def sla_trends(
    *, cases: QuerySet[Case], period: Period, interval: str, now: datetime
) -> list[TrendBucket]:
    """Targets met and breached per UTC day, week or month (`analytics.Interval`) of
    `period`, all metrics together and per metric. Three queries (one per metric)."""
    trunc = TRUNCATE[interval]
    per_metric: dict[str, dict[date, Tally]] = {}
    for metric, target in CASE_TARGETS.items():
        rows = (
            target.with_done(cases)
            .filter(target.touches(period))
            .annotate(concluded=target.concluded_at(now))
            .filter(period.contains("concluded"))
            .annotate(bucket=trunc("concluded", output_field=models.DateField(), tzinfo=UTC))
            .values("bucket")
            .annotate(
                met=Count("pk", filter=target.met()),
                breached=Count("pk", filter=target.breached(now)),
            )
            .values_list("bucket", "met", "breached")
            .order_by()
        )
        per_metric[metric] = {bucket: Tally(met, breached) for bucket, met, breached in rows}
    rows = (
        _next_response_events(cases, period)
        .annotate(bucket=trunc("created_at", output_field=models.DateField(), tzinfo=UTC))
        .values("bucket")
        .annotate(**_next_response_counts())
        .values_list("bucket", "nr_met", "nr_breached")
        .order_by()
    )
    per_metric[SlaMetric.NEXT_RESPONSE] = {
        bucket: Tally(met, breached) for bucket, met, breached in rows
    }
    buckets = []
    for start in trend_bucket_starts(period=period, group_by=interval):
        metrics = {metric: per_metric[metric].get(start, Tally()) for metric in SlaMetric.values}
        total = Tally()
        for tally in metrics.values():
            total.add(tally)
        buckets.append(
            TrendBucket(
                period_start=start,
                met=total.met,
                breached=total.breached,
                compliance_percent=total.compliance_percent,
                metrics=metrics,
            )
        )
    return buckets


def _outstanding(metric: str) -> tuple[Q, str, str]:
    """(the target still runs, its deadline column, its risk column) for an open case."""
    prefix = {
        SlaMetric.FIRST_RESPONSE: "sla_first_response",
        SlaMetric.NEXT_RESPONSE: "sla_next_response",
        SlaMetric.RESOLUTION: "sla_resolution",
    }[metric]
    due, risk_at, state = f"{prefix}_due", f"{prefix}_risk_at", f"{prefix}_state"
    running = Q(**{f"{due}__isnull": False}) & ~Q(**{state: SlaState.PAUSED})
    if metric == SlaMetric.FIRST_RESPONSE:
        running &= Q(first_response_at__isnull=True)
    elif metric == SlaMetric.NEXT_RESPONSE:
        running &= Q(first_response_at__isnull=False, waiting_since__isnull=False)
    return running, due, risk_at


def sla_now(*, cases: QuerySet[Case], now: datetime) -> NowFigures:
    """Open cases with a target at risk or breached at `now`, per team and metric. One
    query (grouped by team; the totals are the teams' sums, as every case has one team)."""
    breached_any, at_risk_any = Q(pk__in=[]), Q(pk__in=[])
    counts: dict[str, Any] = {}
    for metric in SlaMetric.values:
        running, due, risk_at = _outstanding(metric)
        breached = running & Q(**{f"{due}__lte": now})
        at_risk = running & Q(**{f"{risk_at}__lte": now, f"{due}__gt": now})
        counts[f"{metric}_breached"] = Count("pk", filter=breached)
        counts[f"{metric}_at_risk"] = Count("pk", filter=at_risk)
        breached_any |= breached
        at_risk_any |= at_risk
    counts["breached"] = Count("pk", filter=breached_any)
    counts["at_risk_too"] = Count("pk", filter=at_risk_any)
    counts["at_risk_and_breached"] = Count("pk", filter=at_risk_any & breached_any)
    rows = list(
        cases.filter(status__in=OPEN_CASE_STATUSES)
        .filter(breached_any | at_risk_any)
        .values("team_id", "team__name")
        .annotate(**counts)
        .order_by("team__name", "team_id")
    )
    by_metric = {metric: NowCounts() for metric in SlaMetric.values}
    by_team = []
    for row in rows:
        for metric, tally in by_metric.items():
            tally.at_risk += row[f"{metric}_at_risk"]
            tally.breached += row[f"{metric}_breached"]
        by_team.append(
            NowTeamRow(
                team=row["team_id"],
                label=row["team__name"],
                at_risk=row["at_risk_too"] - row["at_risk_and_breached"],
                breached=row["breached"],
            )
        )
    return NowFigures(
        at_risk=sum(row.at_risk for row in by_team),
        breached=sum(row.breached for row in by_team),
        by_metric=by_metric,
        by_team=by_team,
    )


# --- distributions ----------------------------------------------------------------------------


def _percentile_name(fraction: float) -> str:
    return f"p{round(fraction * 100)}"


def _histogram_labels() -> list[tuple[str, timedelta | None, timedelta | None]]:
    def short(value: timedelta) -> str:
        if value < HOUR:
            return f"{value // MINUTE} min"
        if value < DAY:
            return f"{value // HOUR} h"
        return f"{value // DAY} d"

    edges: list[timedelta | None] = [None, *HISTOGRAM_EDGES, None]
    labels = []
    for low, high in zip(edges, edges[1:], strict=False):
        if low is None:
            text = f"< {short(high)}"
        elif high is None:
            text = f"≥ {short(low)}"
        else:
            text = f"{short(low)} – {short(high)}"
        labels.append((text, low, high))
    return labels


def sla_distributions(*, cases: QuerySet[Case], period: Period) -> dict[str, Distribution]:
    """First-response and resolution times of the cases first answered or resolved in
    `period`, in wall-clock seconds: count, percentiles and histogram. One query on
    PostgreSQL (`percentile_cont`), one more per metric elsewhere (`_ranked_percentiles`)."""
    timed = {
        SlaMetric.FIRST_RESPONSE: ("first_response_at", period.contains("first_response_at")),
        SlaMetric.RESOLUTION: ("resolved_at", period.contains("resolved_at")),
    }
    buckets = _histogram_labels()
    postgres = is_postgresql()
    figures: dict[str, Any] = {}
    for metric, (done, condition) in timed.items():
        figures[f"{metric}_count"] = Count("pk", filter=condition)
        for i, (_, low, high) in enumerate(buckets):
            within = condition
            if low is not None:
                within &= Q(**{f"{done}__gte": F("created_at") + low})
            if high is not None:
                within &= Q(**{f"{done}__lt": F("created_at") + high})
            figures[f"{metric}_bucket{i}"] = Count("pk", filter=within)
        if postgres:
            for fraction in PERCENTILES:
                figures[f"{metric}_{_percentile_name(fraction)}"] = PercentileCont(
                    F(done) - F("created_at"),
                    fraction=fraction,
                    filter=condition,
                    output_field=DurationField(),
                )
    relevant = Q()
    for _, condition in timed.values():
        relevant |= condition
    totals = cases.filter(relevant).aggregate(**figures)
    result = {}
    for metric, (done, condition) in timed.items():
        count = totals[f"{metric}_count"]
        if postgres:
            found = {f: totals[f"{metric}_{_percentile_name(f)}"] for f in PERCENTILES}
        else:
            found = _ranked_percentiles(cases.filter(condition), done=done, count=count)
        result[metric] = Distribution(
            count=count,
            percentiles={_percentile_name(f): _seconds(found.get(f)) for f in PERCENTILES},
            histogram=[
                HistogramBucket(
                    label=label,
                    lower_seconds=None if low is None else int(low.total_seconds()),
                    upper_seconds=None if high is None else int(high.total_seconds()),
                    count=totals[f"{metric}_bucket{i}"],
                )
                for i, (label, low, high) in enumerate(buckets)
            ],
        )
    return result


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else round(value.total_seconds(), 3)


def _ranked_percentiles(cases: QuerySet[Case], *, done: str, count: int) -> dict[float, timedelta]:
    """Continuous percentiles where the database has no `percentile_cont` (SQLite, the
    embedded default): the durations are numbered in order and only the (at most two per
    fraction) ranks around `(count - 1) * fraction` come back; Python interpolates linearly
    between them, exactly as `percentile_cont` does."""
    if not count:
        return {}
    positions = {fraction: (count - 1) * fraction for fraction in PERCENTILES}
    ranks = {math.floor(p) + 1 for p in positions.values()}
    ranks |= {math.ceil(p) + 1 for p in positions.values()}
    ranked = (
        cases.annotate(duration=F(done) - F("created_at"))
        .annotate(rank=Window(RowNumber(), order_by=[F("duration").asc(), F("pk").asc()]))
        .filter(rank__in=sorted(ranks))
        .values_list("rank", "duration")
    )
    by_rank = dict(ranked)
    result = {}
    for fraction, position in positions.items():
        low = by_rank[math.floor(position) + 1]
        high = by_rank[math.ceil(position) + 1]
        result[fraction] = low + (high - low) * (position - math.floor(position))
    return result
