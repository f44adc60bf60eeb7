"""Seams of the cases app that other parts fill in.

`sla_transition` is sent after commit when SLA targets of cases moved into at risk or
breached (`case_ids`, `metric`, `state`). Two receivers: `notify_assignees` tells each case's
assignee through crm.notifications (under the bell always, by email if their profile asks for
SLA warnings), and `tell_workflow_rules` records the "SLA at risk/breached" rule triggers.
"""

from __future__ import annotations

import logging

from django.dispatch import Signal

from crm.models import NotificationKind
from crm.notifications import Draft, notify_many

logger = logging.getLogger(__name__)

sla_transition = Signal()


def notify_assignees(*, case_ids: list[int], metric: str, state: str, **kwargs: object) -> None:
    """Notify the active assignees of the cases (kind sla_at_risk or sla_breached).

    Called after commit: the notifications' own transaction is autocommit, so their rows are
    written here and their emails sent at once. One query for the cases, one for the
    recipients, one insert, one email batch, however many cases moved.
    """
    from cases.choices import SlaMetric
    from cases.models import Case
    from cases.services.cases import case_url

    cases = (
        Case.objects.filter(pk__in=case_ids, assignee__is_active=True)
        .only("number", "title", "assignee_id", f"sla_{metric}_due")
        .order_by("pk")
    )
    target = SlaMetric(metric).label.lower()
    breached = state == "breached"
    verb = "breached" if breached else "at risk"
    kind = NotificationKind.SLA_BREACHED if breached else NotificationKind.SLA_AT_RISK
    notify_many(
        drafts=[
            Draft(
                recipient=case.assignee_id,
                kind=kind,
                title=f"{case.number}: SLA {target} {verb}",
                body=f"The SLA target for {target} of {case.number} “{case.title}” is {verb}. "
                f"Due: {getattr(case, f'sla_{metric}_due')}",
                url=case_url(case),
            )
            for case in cases
        ]
    )


def tell_workflow_rules(*, case_ids: list[int], metric: str, state: str, **kwargs: object) -> None:
    """The "SLA at risk" and "SLA breached" triggers of the workflow rules."""
    from cases.workflow.engine import workflow_record_sla

    workflow_record_sla(case_ids=case_ids, metric=metric, state=state)


sla_transition.connect(notify_assignees, dispatch_uid="cases.sla.notify_assignees")
sla_transition.connect(tell_workflow_rules, dispatch_uid="cases.sla.workflow")
