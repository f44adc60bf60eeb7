"""Creating a rule with its rows outside the admin (demo data, tests, benchmarks, scripts):
every row is checked exactly as the admin form checks it, and every process picks the rule up."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction

from cases.models import RuleAction, RuleCondition, WorkflowRule
from cases.workflow.actions import action_problems
from cases.workflow.compiled import rules_changed
from cases.workflow.fields import RuleError, compile_condition


@transaction.atomic
def workflow_rule_create(
    *,
    name: str,
    trigger: str,
    conditions: Iterable[tuple[str, ...]] = (),
    actions: Iterable[dict[str, Any]] = (),
    **fields: Any,
) -> WorkflowRule:
    """A rule, its conditions ((field, operator, value[, group])) and its actions (the
    columns of `RuleAction`), in order. RuleError names the first row that does not validate;
    then nothing is saved."""
    rule = WorkflowRule.objects.create(name=name, trigger=trigger, **fields)
    for position, (field, operator, value, *group) in enumerate(conditions):
        compile_condition(field_key=field, operator=operator, value=value)
        RuleCondition.objects.create(
            rule=rule, field=field, operator=operator, value=value,
            group=group[0] if group else "all", position=position,
        )  # fmt: skip
    for position, columns in enumerate(actions):
        action = RuleAction(rule=rule, position=position, **columns)
        problems = action_problems(action)
        if problems:
            raise RuleError(f"Action {position + 1} of “{name}”: {'; '.join(problems.values())}")
        action.save()
    rules_changed()
    return rule
