"""The active rules as the engine runs them, built once per process.

Case services ask `wants(trigger)` on every change and the engine evaluates every rule of a
trigger per event, so neither may query the rule tables: a `crm.snapshots.Snapshot` holds the
compiled rules and is rebuilt when an admin saves one (`rules_changed`). A rule whose
conditions no longer compile (its team was renamed, say) is left out and logged; admin shows
why on the rule.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db.models import Q

from cases.choices import UPDATE_TRIGGERS, ConditionGroup, RuleTrigger
from cases.models import RuleAction, WorkflowRule
from cases.workflow.actions import action_problems
from cases.workflow.fields import Compiled, RuleError, Subject, compile_condition
from crm.snapshots import Snapshot

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rule:
    id: int
    name: str
    trigger: str
    stop_processing: bool
    all_of: tuple[Compiled, ...]
    any_of: tuple[Compiled, ...]
    actions: tuple[RuleAction, ...]
    time_anchor: str = ""
    time_seconds: int = 0
    time_business: bool = False
    calendar_id: int | None = None
    position: tuple[int, int] = (0, 0)
    created_at: datetime | None = None

    def matches(self, subject: Subject) -> bool:
        if not all(condition.test(subject) for condition in self.all_of):
            return False
        return not self.any_of or any(condition.test(subject) for condition in self.any_of)

    def query(self) -> Q:
        """The part of the "all" conditions the database can check (time-based rules)."""
        q = Q()
        for condition in self.all_of:
            if condition.q is not None:
                q &= condition.q
        return q


@dataclass
class Rules:
    by_trigger: dict[str, list[Rule]] = field(default_factory=dict)
    broken: dict[int, str] = field(default_factory=dict)

    def wants(self, trigger: str) -> bool:
        """Whether any rule answers `trigger` (services skip recording events otherwise)."""
        if self.by_trigger.get(trigger):
            return True
        return trigger in UPDATE_TRIGGERS and bool(self.by_trigger.get(RuleTrigger.CASE_UPDATED))

    def for_event(self, trigger: str, *, rule_id: int | None = None) -> list[Rule]:
        """The rules an event runs, in order. A time-based event runs only its own rule."""
        if rule_id is not None:
            return [r for r in self.by_trigger.get(RuleTrigger.TIME, []) if r.id == rule_id]
        rules = list(self.by_trigger.get(trigger, []))
        if trigger in UPDATE_TRIGGERS and trigger != RuleTrigger.CASE_UPDATED:
            rules += self.by_trigger.get(RuleTrigger.CASE_UPDATED, [])
            rules.sort(key=lambda r: r.position)
        return rules

    @property
    def timed(self) -> list[Rule]:
        return self.by_trigger.get(RuleTrigger.TIME, [])


def compile_rule(row: WorkflowRule, actions: list[RuleAction] | None = None) -> Rule:
    """One rule ready to run; RuleError for the first condition or action that is invalid."""
    groups: dict[str, list[Compiled]] = defaultdict(list)
    for condition in row.conditions.all():
        try:
            compiled = compile_condition(
                field_key=condition.field, operator=condition.operator, value=condition.value
            )
        except RuleError as exc:
            raise RuleError(f"Condition “{condition}”: {exc.message}") from exc
        groups[condition.group].append(compiled)
    actions = list(row.actions.all()) if actions is None else actions
    for action in actions:
        problems = action_problems(action)
        if problems:
            raise RuleError(f"Action “{action}”: {'; '.join(problems.values())}")
    hours = row.time_hours or Decimal(0)
    return Rule(
        id=row.pk,
        name=row.name,
        trigger=row.trigger,
        stop_processing=row.stop_processing,
        all_of=tuple(groups[ConditionGroup.ALL]),
        any_of=tuple(groups[ConditionGroup.ANY]),
        actions=tuple(actions),
        time_anchor=row.time_anchor,
        time_seconds=int(hours * 3600),
        time_business=row.time_business,
        calendar_id=row.calendar_id,
        position=(row.order, row.pk),
        created_at=row.created_at,
    )


def _load() -> Rules:
    rules = Rules()
    rows = (
        WorkflowRule.objects.filter(active=True)
        .prefetch_related("conditions", "actions__agent")
        .order_by("order", "pk")
    )
    by_trigger: dict[str, list[Rule]] = defaultdict(list)
    for row in rows:
        try:
            rule = compile_rule(row)
        except RuleError as exc:
            logger.warning("workflow rule %r is left out: %s", row.name, exc.message)
            rules.broken[row.pk] = exc.message
            continue
        by_trigger[row.trigger].append(rule)
    rules.by_trigger = dict(by_trigger)
    return rules


_rules = Snapshot("cases:workflow:rules-version", _load)


def active_rules() -> Rules:
    return _rules.get()


def rules_changed() -> None:
    """A rule, condition or action changed: every process reloads them before its next use."""
    _rules.changed()
