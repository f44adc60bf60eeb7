"""Running the rules: events are written with the change, rules run right after it commits.

1. **Recording.** A case service that changed something calls `workflow_record` inside its
   transaction. When no active rule answers that trigger, nothing is written (the common case
   costs a dictionary lookup). Otherwise a `WorkflowEvent` row is inserted, so the event
   commits or rolls back with the change, and its processing is scheduled after commit.
2. **Processing.** `workflow_process_event` claims the event (`FOR UPDATE SKIP LOCKED` and
   `processed_at`, so the request and the worker's sweep never both run it), locks the case
   and runs the trigger's rules in order: each rule whose conditions hold fires its actions
   in order, each action in a savepoint of its own. A failing action is undone alone and
   logged; it never undoes the change that triggered the rule, which committed before.
3. **Chains and loops.** Actions change the case through the services, which record new
   events; those belong to the first event's chain (`root`, `depth`) and are processed in the
   same transaction, round after round. A rule fires at most once per chain, and a chain
   stops after `MAX_DEPTH` rounds, which is logged on the case.
4. **The log.** Every firing writes a `WorkflowRun` (unique per rule and event) with each
   action's outcome, and one timeline entry on the case.

A dry run (`workflow_dry_run`) runs the same code for one case inside a transaction that is
rolled back, processing the whole chain at once, and reports what fired and what changed.
Nothing leaves the machine: emails and webhooks are only ever sent after commit.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.db import transaction
from django.utils import timezone

from cases.choices import RuleTrigger, TimelineKind
from cases.errors import CaseError
from cases.models import Case, WorkflowEvent, WorkflowRun
from cases.services.timeline import timeline_record
from cases.workflow.actions import Context, run_action
from cases.workflow.compiled import Rule, active_rules
from cases.workflow.fields import Subject
from crm.models import User

logger = logging.getLogger(__name__)

MAX_DEPTH = 5  # rounds of rules set off by one change, the first included
STALE_AFTER = timedelta(seconds=30)  # an unprocessed event this old lost its after-commit run

_state = threading.local()  # .event: the event whose rules run now; .chain: events to run


# --- recording -----------------------------------------------------------------------------


def workflow_record(
    *,
    case: Case,
    trigger: str,
    actor: User | None = None,
    changes: dict[str, list[Any]] | None = None,
    message_id: int | None = None,
    data: dict[str, Any] | None = None,
) -> WorkflowEvent | None:
    """Record that `trigger` happened to `case`, if any active rule answers it.

    Precondition: inside the transaction of the change (services call it last). `changes`
    maps a field to [old, new] in the canonical values conditions compare (ids for relations).
    """
    if not active_rules().wants(trigger):
        return None
    parent: WorkflowEvent | None = getattr(_state, "event", None)
    depth = parent.depth + 1 if parent is not None else 0
    if parent is not None and depth >= MAX_DEPTH:
        _log_loop_cut(case=case, trigger=trigger, parent=parent)
        return None
    event = WorkflowEvent.objects.create(
        case_id=case.pk,
        trigger=trigger,
        actor=actor,
        message_id=message_id,
        data={"changes": changes or {}, **(data or {})},
        root_id=(parent.root_id or parent.pk) if parent is not None else None,
        depth=depth,
    )
    chain: list[WorkflowEvent] | None = getattr(_state, "chain", None)
    if parent is not None and chain is not None:
        chain.append(event)  # a rule's consequence: the next round, in this transaction
    else:
        transaction.on_commit(partial(workflow_process_event, event_id=event.pk), robust=True)
    return event


def workflow_record_sla(*, case_ids: list[int], metric: str, state: str) -> None:
    """SLA targets of these cases moved to at risk or breached (the `sla_transition` seam,
    after the tick's commit): one event each, processed in the worker in chunks."""
    trigger = RuleTrigger.SLA_BREACHED if state == "breached" else RuleTrigger.SLA_AT_RISK
    if not case_ids or not active_rules().wants(trigger):
        return
    from cases.tasks import workflow_process

    events = WorkflowEvent.objects.bulk_create(
        WorkflowEvent(case_id=pk, trigger=trigger, data={"changes": {}, "metric": metric})
        for pk in case_ids
    )
    ids = [event.pk for event in events]
    for start in range(0, len(ids), 100):
        chunk = ids[start : start + 100]
        transaction.on_commit(partial(workflow_process.delay, chunk), robust=True)


def _log_loop_cut(*, case: Case, trigger: str, parent: WorkflowEvent) -> None:
    summary = (
        f"Rules stopped: “{RuleTrigger(trigger).label}” would start round {MAX_DEPTH + 1} of "
        "rules set off by one change (a loop between rules?)"
    )
    WorkflowRun.objects.create(
        rule=None,
        rule_name="(loop stopped)",
        case_id=case.pk,
        event=parent,
        trigger=trigger,
        actions=[{"kind": "loop_cut", "summary": summary, "ok": False, "error": summary}],
        errors=1,
    )
    timeline_record(case=case, kind=TimelineKind.RULE_FIRED, actor=None, summary=summary)
    logger.warning("workflow: case %s: %s", case.pk, summary)


# --- processing ----------------------------------------------------------------------------


@dataclass
class Fired:
    """A rule that fired for an event, as the log and the dry run report it."""

    rule_id: int
    rule_name: str
    trigger: str
    actions: list[dict[str, Any]]
    run_id: int

    @property
    def errors(self) -> int:
        return sum(1 for action in self.actions if not action["ok"])


def workflow_process_event(*, event_id: int) -> list[Fired]:
    """Run the rules of one recorded event, once; returns what fired."""
    with transaction.atomic():
        event = (
            WorkflowEvent.objects.select_for_update(skip_locked=True)
            .filter(pk=event_id, processed_at__isnull=True)
            .first()
        )
        if event is None:  # done already, being done, or rolled back
            return []
        return _run_chain([event])[0]


def _run_chain(chain: list[WorkflowEvent]) -> tuple[list[Fired], int]:
    """Process the events and, round after round, the events their rules' actions record,
    in the caller's transaction: one commit for a change's consequences, however many
    rounds. Returns what fired and how many rounds there were."""
    fired: list[Fired] = []
    rounds = 0
    outer, _state.chain = getattr(_state, "chain", None), chain
    try:
        while chain:
            event = chain.pop(0)
            rounds = max(rounds, event.depth + 1)
            fired += _process(event)
    finally:
        _state.chain = outer
    return fired, rounds


def workflow_process_stale(*, limit: int = 500, now: datetime | None = None) -> int:
    """Process events whose after-commit run was lost (a crash, a killed worker); bounded."""
    before = (now or timezone.now()) - STALE_AFTER
    ids = list(
        WorkflowEvent.objects.filter(processed_at__isnull=True, created_at__lt=before)
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    for event_id in ids:
        workflow_process_event(event_id=event_id)
    return len(ids)


def _process(event: WorkflowEvent) -> list[Fired]:
    """Precondition: the caller holds the event's row lock (or runs a dry run)."""
    case = (
        Case.objects.select_for_update(of=("self",))
        .select_related("customer", "organization", "team")
        .filter(pk=event.case_id)
        .first()
    )
    fired: list[Fired] = []
    if case is not None:
        subject = Subject(
            case=case,
            changes=event.data.get("changes", {}),
            message_id=event.message_id,
            data=event.data,
        )
        already = _fired_in_chain(event)
        previous, _state.event = getattr(_state, "event", None), event
        try:
            for rule in active_rules().for_event(event.trigger, rule_id=event.rule_id):
                if rule.id in already or not _matches(rule, subject):
                    continue
                fired.append(_fire(rule, event, subject))
                if rule.stop_processing:
                    break
        finally:
            _state.event = previous
    event.processed_at = timezone.now()
    event.save(update_fields=["processed_at"])
    return fired


def _fired_in_chain(event: WorkflowEvent) -> set[int]:
    if event.depth == 0:
        return set()
    root = event.root_id or event.pk
    # Two index lookups; one OR across the join made PostgreSQL scan both tables (52 ms at
    # 100k runs, found by the benchmark).
    chain = [root, *WorkflowEvent.objects.filter(root_id=root).values_list("pk", flat=True)]
    runs = WorkflowRun.objects.filter(event_id__in=chain, rule__isnull=False)
    return set(runs.values_list("rule_id", flat=True))


def _matches(rule: Rule, subject: Subject) -> bool:
    try:
        return rule.matches(subject)
    except Exception:  # a condition must never stop the others (or the change)
        logger.exception("workflow rule %r: a condition failed on case %s", rule.name,
                         subject.case.pk)  # fmt: skip
        return False


def _fire(rule: Rule, event: WorkflowEvent, subject: Subject) -> Fired:
    case = subject.case
    run = WorkflowRun.objects.create(
        rule_id=rule.id, rule_name=rule.name, case=case, event=event, trigger=event.trigger
    )
    entry = timeline_record(
        case=case,
        kind=TimelineKind.RULE_FIRED,
        actor=None,
        summary=f"Rule “{rule.name}” fired",
        rule=rule.id,
        run=run.pk,
    )
    outcomes = [_act(action, Context(subject, event, run, i)) for i, action in
                enumerate(rule.actions)]  # fmt: skip
    run.actions = outcomes
    run.errors = sum(1 for outcome in outcomes if not outcome["ok"])
    run.save(update_fields=["actions", "errors"])
    entry.summary = _summary(rule.name, outcomes)[:500]
    entry.data["errors"] = run.errors
    entry.save(update_fields=["summary", "data"])
    return Fired(rule.id, rule.name, event.trigger, outcomes, run.pk)


def _act(action: Any, ctx: Context) -> dict[str, Any]:
    try:
        with transaction.atomic():
            summary = run_action(action, ctx)
    except CaseError as exc:
        return _failed(action, ctx, exc.message)
    except Exception as exc:  # noqa: BLE001 - logged with its traceback; the rule goes on
        logger.exception("workflow action %s failed on case %s", action.kind, ctx.case.pk)
        return _failed(action, ctx, f"{type(exc).__name__}: {exc}")
    return {"kind": action.kind, "summary": summary, "ok": True, "error": ""}


def _failed(action: Any, ctx: Context, error: str) -> dict[str, Any]:
    # The savepoint undid the action's rows; the instance may hold its half-made change.
    ctx.case.refresh_from_db()
    ctx.subject.forget_tags()
    label = action.get_kind_display()
    return {"kind": action.kind, "summary": label, "ok": False, "error": error[:300]}


def _summary(name: str, outcomes: list[dict[str, Any]]) -> str:
    parts = [o["summary"] if o["ok"] else f"{o['summary']} failed: {o['error']}" for o in outcomes]
    return f"Rule “{name}”: " + ("; ".join(parts) if parts else "no actions")


# --- dry run -------------------------------------------------------------------------------


@dataclass
class DryRun:
    """What rules would do to a case for a trigger: what fired, in order, and the changes."""

    case: Case
    trigger: str
    fired: list[Fired] = field(default_factory=list)
    changes: dict[str, list[Any]] = field(default_factory=dict)
    rounds: int = 0


def workflow_dry_run(
    *, case: Case, trigger: str, message_id: int | None = None, now: datetime | None = None
) -> DryRun:
    """Run the rules for `case` as if `trigger` happened now, then roll everything back.

    A time-based dry run considers each time-based rule whose time has come for the case
    (ignoring whether it fired for this moment already, which is what one asks a dry run).
    """
    from cases.workflow.timed import time_events_for_case

    result = DryRun(case=case, trigger=trigger)
    before = case_facts(case.pk)
    with transaction.atomic():
        try:
            if trigger == RuleTrigger.TIME:
                first = time_events_for_case(case=case, now=now or timezone.now())
            else:
                first = [
                    WorkflowEvent.objects.create(
                        case_id=case.pk,
                        trigger=trigger,
                        message_id=message_id,
                        data={"changes": {}, "dry_run": True},
                    )
                ]
            result.fired, result.rounds = _run_chain(first)
            after = case_facts(case.pk)
        finally:
            transaction.set_rollback(True)
    result.changes = {k: [before[k], after[k]] for k in before if before[k] != after[k]}
    return result


def case_facts(case_id: int) -> dict[str, Any]:
    """What a dry run compares before and after: the case's fields as people read them."""
    case = Case.objects.select_related("team", "assignee", "category").get(pk=case_id)
    return {
        "status": case.get_status_display(),
        "priority": case.get_priority_display(),
        "type": case.get_type_display(),
        "team": str(case.team),
        "assignee": str(case.assignee) if case.assignee else "",
        "category": str(case.category) if case.category else "",
        "tags": ", ".join(sorted(case.tags.values_list("name", flat=True))),
        "tasks": case.tasks.count(),
        "notes": case.notes.count(),
        "watchers": case.watchers.count(),
    }
