"""SLA clocks: which policy applies to a case, each target's deadline and its state.

A case's targets follow from four things only: the policy that matches it now, the policy's
calendar, the case's timestamps (created, first response, waiting since, resolved) and its
status history (`CaseStatusPeriod`, from which the pauses are derived). So any change to a
policy, a calendar or the case itself is handled the same way: compute again (`sla_refresh`
for one case, `sla_recompute_all` for every open one) - there is no clock state to repair.

- **First response** runs from creation to the team's first answer.
- **Next response** runs from the oldest unanswered customer message (`waiting_since`) after
  the first response, to the next answer; it starts again with each customer message.
- **Resolution** runs from creation to resolution.
- All three stop when the case is resolved; a target concluded on time is `met`, late
  `breached`. While the case is in a status its policy pauses on (awaiting customer, awaiting
  vendor) running targets are `paused` and have no deadline; the time spent there is not
  counted once they resume.
- A running target is `at_risk` once `at_risk_percent` of its time is used, `breached` once
  due. The state is computed on every change; the beat tick (`sla_tick`) moves running
  targets forward as time passes, with set-based queries over partial indexes. Each move to
  at risk or breached records one timeline event and announces `sla_transition`, the seam the
  workflow rules use (until they exist, the assignee is told by email).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from cases.analytics_cache import analytics_bump
from cases.choices import (
    SLA_RUNNING_STATES,
    CaseStatus,
    SlaMetric,
    SlaState,
    TimelineKind,
    VipCondition,
)
from cases.models import (
    BusinessCalendar,
    Case,
    CaseStatusPeriod,
    Holiday,
    SlaPolicy,
    TimelineEvent,
)
from cases.signals import sla_transition
from cases.sla.holidays import Holiday as ParsedHoliday
from cases.sla.hours import CALENDAR_TIME, Interval, NoBusinessTimeError, cached_calendar
from cases.sla.hours import BusinessCalendar as Hours
from crm.db import is_postgresql
from crm.snapshots import Snapshot

logger = logging.getLogger(__name__)

METRICS = (SlaMetric.FIRST_RESPONSE, SlaMetric.NEXT_RESPONSE, SlaMetric.RESOLUTION)
PAUSING = {"pause_awaiting_customer": CaseStatus.AWAITING_CUSTOMER,
           "pause_awaiting_vendor": CaseStatus.AWAITING_VENDOR}  # fmt: skip
RECOMPUTE_BATCH = 2000
TICK_BATCH = 5000
# The columns of one target on the case: f"sla_{metric}_{part}".
PARTS = ("due", "state", "risk_at")
SLA_FIELDS = [f"sla_{m}_{p}" for m in METRICS for p in PARTS] + ["sla_policy_id", "sla_due"]
# What a computation reads of the case.
CASE_FIELDS = ("pk", "status", "priority", "type", "channel", "team_id", "customer_id",
               "organization_id", "created_at", "first_response_at", "waiting_since",
               "resolved_at", "merged_into_id", *SLA_FIELDS)  # fmt: skip


# --- the configuration, kept per process -----------------------------------------------------


@dataclass(frozen=True)
class Target:
    seconds: int
    hours: Hours


@dataclass(frozen=True)
class Policy:
    id: int
    name: str
    is_default: bool
    priorities: frozenset[str]
    types: frozenset[str]
    channels: frozenset[str]
    tiers: frozenset[str]
    vip: str
    team_ids: frozenset[int]
    tag_ids: frozenset[int]
    paused_statuses: frozenset[str]
    at_risk: float
    targets: dict[tuple[str, str], Target] = field(default_factory=dict)

    def matches(self, facts: Facts) -> bool:
        return (
            (not self.priorities or facts.priority in self.priorities)
            and (not self.types or facts.type in self.types)
            and (not self.channels or facts.channel in self.channels)
            and (not self.team_ids or facts.team_id in self.team_ids)
            and (not self.tiers or facts.tier in self.tiers)
            and (not self.vip or (facts.vip == (self.vip == VipCondition.VIP)))
            and (not self.tag_ids or not self.tag_ids.isdisjoint(facts.tag_ids))
        )


@dataclass(frozen=True)
class Config:
    policies: tuple[Policy, ...]  # active, in order, the default last
    needs_tags: bool
    needs_customer: bool

    def policy_for(self, facts: Facts) -> Policy | None:
        return next((p for p in self.policies if p.matches(facts)), None)


def _load_config() -> Config:
    calendars = {c.pk: _hours_of(c) for c in _calendars()}
    default_calendar = next(
        (hours for pk, hours in calendars.items() if _default_calendar_id() == pk), None
    )
    policies = []
    rows = (
        SlaPolicy.objects.filter(active=True)
        .prefetch_related("targets", "teams", "tags")
        .order_by("is_default", "order", "pk")
    )
    for row in rows:
        business = calendars.get(row.calendar_id) or default_calendar
        targets = {}
        for target in row.targets.all():
            hours = business if target.business_time and business is not None else None
            targets[(target.metric, target.priority)] = Target(
                seconds=target.minutes * 60, hours=hours or CALENDAR_TIME
            )
        policies.append(_policy(row, targets))
    return Config(
        policies=tuple(policies),
        needs_tags=any(p.tag_ids for p in policies),
        needs_customer=any(p.vip or p.tiers for p in policies),
    )


def _calendars() -> Iterable[BusinessCalendar]:
    return BusinessCalendar.objects.prefetch_related("hours", "holidays")


def _default_calendar_id() -> int | None:
    return BusinessCalendar.objects.filter(is_default=True).values_list("pk", flat=True).first()


def calendar_hours(calendar_id: int | None) -> Hours:
    """The business hours of a calendar (None: the default one); calendar time when there is
    no such calendar or it is unusable. For workflow rules that count business hours."""
    calendars = _calendars()
    row = (
        calendars.filter(pk=calendar_id).first()
        if calendar_id is not None
        else calendars.filter(is_default=True).first()
    )
    return (_hours_of(row) if row is not None else None) or CALENDAR_TIME


def _hours_of(calendar: BusinessCalendar) -> Hours | None:
    weekly: dict[int, list[Interval]] = defaultdict(list)
    for row in calendar.hours.all():
        weekly[row.weekday].append(Interval(row.start, row.end))
    try:
        return cached_calendar(calendar.timezone, weekly, [h.date for h in calendar.holidays.all()])
    except ValueError as exc:  # written around the admin's validation
        logger.warning("SLA: calendar %s is unusable (%s); its targets count calendar time",
                       calendar, exc)  # fmt: skip
        return None


def _policy(row: SlaPolicy, targets: dict[tuple[str, str], Target]) -> Policy:
    return Policy(
        id=row.pk, name=row.name, is_default=row.is_default,
        priorities=frozenset(row.priorities or ()), types=frozenset(row.types or ()),
        channels=frozenset(row.channels or ()), tiers=frozenset(row.tiers or ()),
        vip=row.vip, team_ids=frozenset(t.pk for t in row.teams.all()),
        tag_ids=frozenset(t.pk for t in row.tags.all()),
        paused_statuses=frozenset(s for flag, s in PAUSING.items() if getattr(row, flag)),
        at_risk=row.at_risk_percent / 100, targets=targets,
    )  # fmt: skip


_config = Snapshot("cases:sla:config-version", _load_config)


def sla_config_changed() -> None:
    """A policy, target, calendar, business hours or holiday changed: every process reloads
    the configuration, and every open case's deadlines are recomputed in the worker after
    commit."""
    from cases.tasks import sla_recompute

    _config.changed()
    transaction.on_commit(lambda: sla_recompute.delay())


# --- what a case is, for matching and computing ------------------------------------------------


@dataclass(frozen=True)
class Facts:
    priority: str
    type: str
    channel: str
    team_id: int
    tier: str = ""
    vip: bool = False
    tag_ids: frozenset[int] = frozenset()


def _facts(case: Case, config: Config, tags: dict | None = None, people: dict | None = None):
    tier, vip = "", False
    if config.needs_customer:
        tier, vip = (people or _people([case])).get(case.pk, ("", False))
    tag_ids = frozenset()
    if config.needs_tags:
        tag_ids = (tags or _tags([case.pk])).get(case.pk, frozenset())
    return Facts(case.priority, case.type, case.channel, case.team_id, tier, vip, tag_ids)


def _tags(case_ids: Sequence[int]) -> dict[int, frozenset[int]]:
    found: dict[int, set[int]] = defaultdict(set)
    through = Case.tags.through.objects.filter(case_id__in=case_ids)
    for case_id, tag_id in through.values_list("case_id", "tag_id"):
        found[case_id].add(tag_id)
    return {k: frozenset(v) for k, v in found.items()}


def _people(cases: Sequence[Case]) -> dict[int, tuple[str, bool]]:
    rows = Case.objects.filter(pk__in=[c.pk for c in cases]).values_list(
        "pk", "organization__tier", "customer__is_vip"
    )
    return {pk: (tier or "", bool(vip)) for pk, tier, vip in rows}


def _periods(case_ids: Sequence[int]) -> dict[int, list[tuple[str, datetime, datetime | None]]]:
    found: dict[int, list] = defaultdict(list)
    rows = CaseStatusPeriod.objects.filter(case_id__in=case_ids).order_by("case_id", "started_at")
    for case_id, status, start, end in rows.values_list(
        "case_id", "status", "started_at", "ended_at"
    ):
        found[case_id].append((status, start, end))
    return found


# --- computing --------------------------------------------------------------------------------


@dataclass
class Computed:
    policy_id: int | None
    values: dict[str, Any]  # the SLA_FIELDS

    def state(self, metric: str) -> str:
        return self.values[f"sla_{metric}_state"]


def sla_compute(
    case: Case,
    policy: Policy | None,
    periods: Sequence[tuple[str, datetime, datetime | None]],
    now: datetime,
) -> Computed:
    """The SLA columns of `case` under `policy` at `now` (pure: no queries)."""
    values: dict[str, Any] = {"sla_policy_id": policy.id if policy else None}
    pauses = _pauses(policy, periods)
    stopped = case.resolved_at if case.status in (CaseStatus.RESOLVED, CaseStatus.CLOSED) else None
    dues = []
    for metric in METRICS:
        target = policy.targets.get((metric, case.priority)) if policy else None
        due, state, risk_at = _target(case, metric, target, policy, pauses, stopped, now)
        values[f"sla_{metric}_due"] = due
        values[f"sla_{metric}_state"] = state
        values[f"sla_{metric}_risk_at"] = risk_at
        if due is not None and state in (*SLA_RUNNING_STATES, SlaState.BREACHED):
            dues.append(due)
    values["sla_due"] = min(dues) if dues else None
    return Computed(values["sla_policy_id"], values)


def _pauses(policy: Policy | None, periods) -> list[tuple[datetime, datetime | None]]:
    if policy is None or not policy.paused_statuses:
        return []
    return [(start, end) for status, start, end in periods if status in policy.paused_statuses]


def _target(case, metric, target, policy, pauses, stopped, now):
    """(due, state, risk_at) of one target."""
    if target is None:
        return None, "", None
    start, concluded = _span(case, metric, stopped)
    if start is None:
        return None, "", None
    try:
        due = target.hours.add(start, target.seconds, pauses)
        risk_at = target.hours.add(start, int(target.seconds * policy.at_risk), pauses)
    except NoBusinessTimeError:
        return None, "", None
    if concluded is not None:
        if due is None:  # concluded while paused for good: it was never late
            return None, SlaState.MET, None
        return due, (SlaState.MET if concluded <= due else SlaState.BREACHED), None
    if due is None:
        return None, SlaState.PAUSED, None
    if now >= due:
        return due, SlaState.BREACHED, risk_at
    if risk_at is not None and now >= risk_at:
        return due, SlaState.AT_RISK, risk_at
    return due, SlaState.ON_TRACK, risk_at


def _span(case: Case, metric: str, stopped: datetime | None):
    """(start, concluded) of a target's clock; start None: the target does not apply now."""
    if metric == SlaMetric.FIRST_RESPONSE:
        return case.created_at, case.first_response_at or stopped
    if metric == SlaMetric.RESOLUTION:
        return case.created_at, stopped
    if case.first_response_at is None or case.waiting_since is None:
        return None, None  # nothing to answer (or the first response target covers it)
    return case.waiting_since, stopped


# --- keeping one case current -----------------------------------------------------------------


def sla_refresh(*, case: Case, now: datetime | None = None, new: bool = False) -> Computed:
    """Compute the case's SLA columns from its current row and history and write them;
    transitions into at risk or breached are recorded. Precondition: inside the caller's
    transaction, after the change that prompted it. `new`: the instance was just inserted
    (it is the row, and its one status period began at creation), which spares two queries
    on intake's hot path."""
    now = now or timezone.now()
    config = _config.get()
    if new:
        row, periods = case, [(case.status, case.created_at, None)]
    else:
        row = Case.objects.only(*CASE_FIELDS).get(pk=case.pk)
        periods = _periods([row.pk]).get(row.pk, [])
    computed = sla_compute(row, config.policy_for(_facts(row, config)), periods, now)
    if any(getattr(row, name) != value for name, value in computed.values.items()):
        Case.objects.filter(pk=row.pk).update(**computed.values)
        _record_transitions([(row, computed)])
    for name, value in computed.values.items():
        setattr(case, name, value)
    return computed


def status_period_open(*, case: Case, status: str, at: datetime) -> None:
    """The case entered `status` at `at`: end the current period, start the next."""
    CaseStatusPeriod.objects.filter(case=case, ended_at__isnull=True).update(ended_at=at)
    CaseStatusPeriod.objects.create(case=case, status=status, started_at=at)


# --- every open case --------------------------------------------------------------------------


def sla_recompute_all(*, now: datetime | None = None, batch: int = RECOMPUTE_BATCH) -> int:
    """Recompute the SLA columns of every open case (after a policy or calendar change), in
    batches, each its own transaction; returns how many cases changed."""
    _config.forget()
    now = now or timezone.now()
    config = _config.get()
    changed, last = 0, 0
    open_cases = Case.objects.filter(merged_into__isnull=True).exclude(
        status__in=(CaseStatus.RESOLVED, CaseStatus.CLOSED)
    )
    while True:
        rows = list(open_cases.filter(pk__gt=last).only(*CASE_FIELDS).order_by("pk")[:batch])
        if not rows:
            return changed
        last = rows[-1].pk
        changed += _recompute_batch(rows, config, now)


def _recompute_batch(rows: list[Case], config: Config, now: datetime) -> int:
    ids = [row.pk for row in rows]
    periods = _periods(ids)
    tags = _tags(ids) if config.needs_tags else {}
    people = _people(rows) if config.needs_customer else {}
    results = []
    for row in rows:
        policy = config.policy_for(_facts(row, config, tags, people))
        computed = sla_compute(row, policy, periods.get(row.pk, []), now)
        if any(getattr(row, name) != value for name, value in computed.values.items()):
            results.append((row, computed))
    if results:
        with transaction.atomic():
            _write(results)
            _record_transitions(results)
    return len(results)


def _write(results: list[tuple[Case, Computed]]) -> None:
    if not is_postgresql():
        for row, computed in results:
            Case.objects.filter(pk=row.pk).update(**computed.values)
        return
    columns = SLA_FIELDS
    casts = {name: _sql_type(name) for name in columns}
    values_sql = ", ".join(
        "(" + ", ".join(["%s::bigint"] + [f"%s::{casts[c]}" for c in columns]) + ")"
        for _ in results
    )
    params: list[Any] = []
    for row, computed in results:
        params.append(row.pk)
        params.extend(computed.values[c] for c in columns)
    assignments = ", ".join(f"{c} = v.{c}" for c in columns)
    names = ", ".join(["id", *columns])
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE cases_case AS c SET {assignments} FROM (VALUES {values_sql}) "  # noqa: S608
            f"AS v({names}) WHERE c.id = v.id",
            params,
        )


def _sql_type(column: str) -> str:
    if column == "sla_policy_id":
        return "bigint"
    return "text" if column.endswith("_state") else "timestamptz"


# --- the beat tick ---------------------------------------------------------------------------


@dataclass
class TickResult:
    at_risk: int = 0
    breached: int = 0


def sla_tick(*, now: datetime | None = None, batch: int = TICK_BATCH) -> TickResult:
    """Move running targets whose time has come: on track to at risk, on track or at risk to
    breached. Set-based (partial indexes hold only running targets), in batches; each
    transition records one timeline event and is announced once."""
    now = now or timezone.now()
    result = TickResult()
    for metric in METRICS:
        state_col, due_col, risk_col = (f"sla_{metric}_{p}" for p in ("state", "due", "risk_at"))
        result.breached += _advance(
            metric, Q(**{f"{state_col}__in": SLA_RUNNING_STATES, f"{due_col}__lte": now}),
            SlaState.BREACHED, batch,
        )  # fmt: skip
        result.at_risk += _advance(
            metric, Q(**{state_col: SlaState.ON_TRACK, f"{risk_col}__lte": now}),
            SlaState.AT_RISK, batch,
        )  # fmt: skip
    return result


def _advance(metric: str, condition: Q, state: str, batch: int) -> int:
    moved = 0
    while True:
        with transaction.atomic():
            cases = list(
                Case.objects.filter(condition)
                .select_for_update(skip_locked=True, of=("self",))
                .order_by()
                .values_list("pk", f"sla_{metric}_due")[:batch]
            )
            if not cases:
                return moved
            Case.objects.filter(pk__in=[pk for pk, _ in cases]).update(
                **{f"sla_{metric}_state": state}
            )
            _events(cases, metric, state)
        moved += len(cases)
        if len(cases) < batch:
            return moved


def _record_transitions(results: Iterable[tuple[Case, Computed]]) -> None:
    """Events for targets that a computation (not the tick) moved into at risk or breached;
    leaving breached for at risk (a deadline moved out) is no new warning."""
    moves: dict[tuple[str, str], list[tuple[int, datetime | None]]] = defaultdict(list)
    for row, computed in results:
        for metric in METRICS:
            old, new = getattr(row, f"sla_{metric}_state"), computed.state(metric)
            if new in (SlaState.AT_RISK, SlaState.BREACHED) and old not in (new, SlaState.BREACHED):
                moves[(metric, new)].append((row.pk, computed.values[f"sla_{metric}_due"]))
    for (metric, state), cases in moves.items():
        _events(cases, metric, state)


def _events(cases: list[tuple[int, datetime | None]], metric: str, state: str) -> None:
    """One timeline event per (case id, due), announced after commit; the figures cached for
    the cases' teams and assignees are stale from then on (`cases.analytics_cache`)."""
    kind = TimelineKind.SLA_BREACHED if state == SlaState.BREACHED else TimelineKind.SLA_AT_RISK
    verb = "breached" if state == SlaState.BREACHED else "at risk"
    summary = f"SLA {SlaMetric(metric).label.lower()} {verb}"
    TimelineEvent.objects.bulk_create(
        TimelineEvent(
            case_id=pk, kind=kind, summary=summary, data={"metric": metric, "due": _iso(due)}
        )  # fmt: skip
        for pk, due in cases
    )
    ids = [pk for pk, _ in cases]
    owners = list(Case.objects.filter(pk__in=ids).values_list("team_id", "assignee_id"))
    analytics_bump(team_ids={t for t, _ in owners}, user_ids={u for _, u in owners})
    transaction.on_commit(
        lambda: sla_transition.send(sender=Case, case_ids=ids, metric=metric, state=state),
        robust=True,
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


# --- holidays -----------------------------------------------------------------------------


def holidays_merge(
    *, calendar: BusinessCalendar, holidays: list[ParsedHoliday]
) -> tuple[int, int, int]:
    """Merge imported holidays into `calendar`: new days are added, days it has already take
    the imported name (the file is the authority on the days it lists), other days are kept
    (holidays entered by hand stay). Returns (days imported, added, renamed). One upsert, so
    a concurrent import of the same day cannot fail on the unique (calendar, date)
    constraint."""
    names = {holiday.date: holiday.name[:200] for holiday in holidays}
    existing = dict(
        Holiday.objects.filter(calendar=calendar, date__in=list(names)).values_list("date", "name")
    )
    Holiday.objects.bulk_create(
        [Holiday(calendar=calendar, date=day, name=name) for day, name in names.items()],
        update_conflicts=True,
        unique_fields=["calendar", "date"],
        update_fields=["name"],
        batch_size=500,
    )
    added = len(names) - len(existing)
    renamed = sum(1 for day, name in existing.items() if names[day] != name)
    return len(names), added, renamed


# --- what the API shows -----------------------------------------------------------------------


def sla_summary(case: Case, *, now: datetime | None = None) -> dict[str, Any]:
    """Per target `{"due_at", "state", "remaining_seconds"}` (None where the case has no such
    target); remaining time counts as the target does (business hours or around the clock),
    negative once breached, None when met or paused."""
    now = now or timezone.now()
    config = _config.get()
    policy = next((p for p in config.policies if p.id == case.sla_policy_id), None)
    summary: dict[str, Any] = {"policy": policy.name if policy else None}
    for metric in METRICS:
        state = getattr(case, f"sla_{metric}_state")
        due = getattr(case, f"sla_{metric}_due")
        if not state:
            summary[metric] = None
            continue
        target = policy.targets.get((metric, case.priority)) if policy else None
        summary[metric] = {
            "due_at": due,
            "state": state,
            "remaining_seconds": _remaining(target, state, due, now),
        }
    return summary


def _remaining(target: Target | None, state: str, due: datetime | None, now: datetime):
    if due is None or state not in (*SLA_RUNNING_STATES, SlaState.BREACHED):
        return None
    hours = target.hours if target else CALENDAR_TIME
    if now <= due:
        return hours.elapsed(now, due)
    return -hours.elapsed(due, now)
