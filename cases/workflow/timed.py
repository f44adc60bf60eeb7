"""Rules that fire because time passed: time-based rules and overdue tasks (the worker's
sweep, every minute, in bounded batches).

A time-based rule measures from an anchor moment of each case (entering its status, its
creation, the customer's last message…) and fires once the rule's hours have passed, in
calendar time or in a calendar's business hours. It fires once per case and anchor: the
event row is unique on (rule, case, anchor), so a rerun, a second worker or a crash halfway
cannot fire it twice, and it fires again only when the anchor moves (the case left the status
and came back).

The database does the heavy part: the rule's "all" conditions on case columns, the calendar-
time bound (business hours are never fewer than calendar hours) and "not fired for this
anchor yet" (an anti-join) are one query; only business hours are counted in Python, on the
candidates that query leaves (2–8 µs a case). A newly created rule applies to every case that
qualifies, as a helpdesk admin expects ("close what waited 7 days for the customer").

Overdue tasks: a task on a case whose due time passed while it was open is one event per task
and due time. Only tasks falling due after the first overdue rule was created count, so that
creating the rule does not fire for every task forgotten in the past.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Exists, F, OuterRef, Subquery
from django.db.models.expressions import BaseExpression
from django.utils import timezone

from cases.choices import OPEN_TASK_STATUSES, RuleTrigger, TimeAnchor
from cases.models import Case, CaseStatusPeriod, Task, WorkflowEvent
from cases.workflow.compiled import Rule, active_rules
from cases.workflow.engine import workflow_process_event

BATCH = 1000  # events made and processed per sweep; the task re-enqueues itself for more
SCAN_CHUNK = 2000


def _anchor(kind: str) -> BaseExpression:
    if kind == TimeAnchor.STATUS_SINCE:
        current = CaseStatusPeriod.objects.filter(case=OuterRef("pk"), ended_at__isnull=True)
        return Subquery(current.order_by("-started_at").values("started_at")[:1])
    column = {
        TimeAnchor.CREATED: "created_at",
        TimeAnchor.UPDATED: "updated_at",
        TimeAnchor.LAST_CUSTOMER_MESSAGE: "last_inbound_at",
        TimeAnchor.LAST_AGENT_REPLY: "last_outbound_at",
    }[kind]
    return F(column)


@dataclass
class Swept:
    events: int = 0
    more: bool = False


def workflow_run_timed(*, now: datetime | None = None, batch: int = BATCH) -> Swept:
    """Make and process the events whose time came, at most `batch`; `more` when some wait."""
    now = now or timezone.now()
    rules = active_rules()
    swept = Swept()
    for rule in rules.timed:
        if swept.events >= batch:
            swept.more = True  # rules not looked at yet wait for the next call
            return swept
        ids, more = _time_events(rule, now=now, limit=batch - swept.events)
        swept.events += _process(ids)
        swept.more |= more
    if rules.wants(RuleTrigger.TASK_OVERDUE) and swept.events < batch:
        ids, more = _overdue_events(rules, now=now, limit=batch - swept.events)
        swept.events += _process(ids)
        swept.more |= more
    elif rules.wants(RuleTrigger.TASK_OVERDUE):
        swept.more = True
    return swept


def _process(ids: list[int]) -> int:
    for event_id in ids:
        workflow_process_event(event_id=event_id)
    return len(ids)


# --- time-based rules ------------------------------------------------------------------------


def _candidates(rule: Rule, *, now: datetime, cases=None):  # noqa: ANN202 - a queryset
    """(pk, anchor) of the cases past the rule's calendar-time bound, not fired yet."""
    cutoff = now - timedelta(seconds=rule.time_seconds)
    fired = WorkflowEvent.objects.filter(
        rule_id=rule.id, case_id=OuterRef("pk"), anchor_at=OuterRef("anchor")
    )
    return (
        (cases if cases is not None else Case.objects)
        .filter(rule.query(), merged_into__isnull=True)
        .annotate(anchor=_anchor(rule.time_anchor))
        .filter(anchor__lte=cutoff)
        .exclude(Exists(fired))
        .order_by("pk")
        .values_list("pk", "anchor")
    )


def _due(rule: Rule, now: datetime):  # noqa: ANN202 - a predicate
    if not rule.time_business:
        return lambda anchor: True
    from cases.services.sla import calendar_hours

    hours = calendar_hours(rule.calendar_id)
    return lambda anchor: hours.elapsed(anchor, now) >= rule.time_seconds


def _time_events(rule: Rule, *, now: datetime, limit: int) -> tuple[list[int], bool]:
    due = _due(rule, now)
    found: list[tuple[int, datetime]] = []
    more = False
    for pk, anchor in _candidates(rule, now=now).iterator(chunk_size=SCAN_CHUNK):
        if not due(anchor):
            continue
        if len(found) == limit:
            more = True
            break
        found.append((pk, anchor))
    if not found:
        return [], more
    WorkflowEvent.objects.bulk_create(
        [
            WorkflowEvent(
                case_id=pk,
                trigger=RuleTrigger.TIME,
                rule_id=rule.id,
                anchor_at=anchor,
                data={"changes": {}, "anchor": anchor.isoformat(), "anchor_kind": rule.time_anchor},
            )
            for pk, anchor in found
        ],
        ignore_conflicts=True,  # another sweep made some of them: it processes those
    )
    ids = WorkflowEvent.objects.filter(
        rule_id=rule.id, processed_at__isnull=True, case_id__in=[pk for pk, _ in found]
    ).order_by("pk")
    return list(ids.values_list("pk", flat=True)), more


def time_events_for_case(*, case: Case, now: datetime) -> list[WorkflowEvent]:
    """For a dry run: one event per time-based rule whose time has come for `case` (fired
    before or not). Made without an anchor, so they never collide with real ones."""
    events = []
    for rule in active_rules().timed:
        cutoff = now - timedelta(seconds=rule.time_seconds)
        row = (
            Case.objects.filter(pk=case.pk)
            .annotate(anchor=_anchor(rule.time_anchor))
            .filter(anchor__lte=cutoff)
            .values_list("anchor", flat=True)
            .first()
        )
        if row is not None and _due(rule, now)(row):
            events.append(
                WorkflowEvent.objects.create(
                    case_id=case.pk,
                    trigger=RuleTrigger.TIME,
                    rule_id=rule.id,
                    data={"changes": {}, "dry_run": True, "anchor": row.isoformat()},
                )  # fmt: skip
            )
    return events


# --- overdue tasks ---------------------------------------------------------------------------


def _overdue_events(rules, *, now: datetime, limit: int) -> tuple[list[int], bool]:  # noqa: ANN001
    overdue_rules = rules.by_trigger.get(RuleTrigger.TASK_OVERDUE, [])
    since = min(rule.created_at for rule in overdue_rules if rule.created_at is not None)
    made = WorkflowEvent.objects.filter(
        trigger=RuleTrigger.TASK_OVERDUE, task_id=OuterRef("pk"), anchor_at=OuterRef("due_at")
    )
    tasks = list(
        Task.objects.filter(
            case__isnull=False,
            status__in=OPEN_TASK_STATUSES,
            due_at__lte=now,
            due_at__gt=since,
        )
        .exclude(Exists(made))
        .order_by("due_at", "pk")
        .values_list("pk", "case_id", "due_at")[: limit + 1]
    )
    more = len(tasks) > limit
    tasks = tasks[:limit]
    if not tasks:
        return [], more
    WorkflowEvent.objects.bulk_create(
        [
            WorkflowEvent(
                case_id=case_id,
                trigger=RuleTrigger.TASK_OVERDUE,
                task_id=pk,
                anchor_at=due_at,
                data={"changes": {}, "task": pk},
            )
            for pk, case_id, due_at in tasks
        ],
        ignore_conflicts=True,
    )
    ids = WorkflowEvent.objects.filter(
        trigger=RuleTrigger.TASK_OVERDUE,
        processed_at__isnull=True,
        task_id__in=[pk for pk, _, _ in tasks],
    ).order_by("pk")
    return list(ids.values_list("pk", flat=True)), more
