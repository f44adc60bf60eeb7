"""Example workflow rules for the demo: each shows one kind of trigger, so a newcomer finds
working rules to read and copy in admin. Created with the demo data only, never over rules
an admin wrote."""

from __future__ import annotations

from django.db import transaction

from cases.choices import ActionKind, RuleTrigger, TimeAnchor
from cases.models import TaskTemplate, WorkflowRule
from cases.workflow.rules import workflow_rule_create


@transaction.atomic
def demo_rules_create() -> int:
    """The example rules, unless any rule exists; returns how many were made."""
    if WorkflowRule.objects.exists():
        return 0
    call = TaskTemplate.objects.get_or_create(
        name="Call the customer back",
        defaults={
            "subject": "Call {{ customer.name }} about {{ case.number }}",
            "description": "The customer reported an outage: call within the hour.",
            "priority": "urgent",
            "due_in_hours": 1,
            "checklist": "Confirm the impact\nAgree on the next update",
        },
    )[0]
    _rule(
        "Outages are urgent", RuleTrigger.CASE_CREATED, order=10,
        conditions=[("case.title", "matches", r"\b(outage|down|not working|ausfall)\b")],
        actions=[(ActionKind.SET_PRIORITY, {"value": "urgent"}),
                 (ActionKind.ADD_TAG, {"value": "outage"}),
                 (ActionKind.CREATE_TASK, {"task_template": call})],
    )  # fmt: skip
    _rule(
        "Resolve after a week without an answer", RuleTrigger.TIME, order=20, active=False,
        description="Switch on to try it: it would resolve the demo's old waiting cases at once.",
        time_anchor=TimeAnchor.STATUS_SINCE, time_hours=50, time_business=True,
        conditions=[("case.status", "is", "awaiting_customer")],
        actions=[(ActionKind.ADD_NOTE, {"body": "Resolved automatically: no answer from "
                                                "{{ customer.name }} for five business days."}),
                 (ActionKind.SET_STATUS, {"value": "resolved"})],
    )  # fmt: skip
    _rule(
        "Watchers hear of breaches",
        RuleTrigger.SLA_BREACHED,
        order=30,
        actions=[(ActionKind.NOTIFY_WATCHERS, {"subject": "SLA breached ({{ case.priority }})"})],
    )
    return 3


def _rule(name: str, trigger: str, *, conditions=(), actions=(), **fields) -> WorkflowRule:  # noqa: ANN001
    return workflow_rule_create(
        name=name,
        trigger=trigger,
        conditions=conditions,
        actions=[{"kind": kind, **columns} for kind, columns in actions],
        **fields,
    )
