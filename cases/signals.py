"""Seams of the cases app that other parts fill in.

`sla_transition` is sent after commit when SLA targets of cases moved into at risk or
breached (`case_ids`, `metric`, `state`). The workflow rules hook in here; until a receiver
claims it, `notify_assignees` tells each case's assignee by email (if they want SLA mail).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mass_mail
from django.dispatch import Signal

logger = logging.getLogger(__name__)

sla_transition = Signal()


def notify_assignees(*, case_ids: list[int], metric: str, state: str, **kwargs: object) -> None:
    """Email the assignees who asked for SLA warnings (profile: "SLA at risk on my case")."""
    from cases.choices import SlaMetric
    from cases.models import Case

    cases = (
        Case.objects.filter(
            pk__in=case_ids,
            assignee__is_active=True,
            assignee__profile__notify_sla_risk=True,
        )
        .exclude(assignee__email="")
        .select_related("assignee")
        .only("number", "title", "assignee__email", f"sla_{metric}_due")
    )
    target = SlaMetric(metric).label.lower()
    verb = "breached" if state == "breached" else "at risk"
    messages = [
        (
            f"{settings.EMAIL_SUBJECT_PREFIX}{case.number}: SLA {target} {verb}",
            f"The SLA target for {target} of {case.number} “{case.title}” is {verb}.\n"
            f"Due: {getattr(case, f'sla_{metric}_due')}\n\n"
            f"{settings.PUBLIC_BASE_URL}/cases/{case.number}/",
            settings.DEFAULT_FROM_EMAIL,
            [case.assignee.email],
        )
        for case in cases
    ]
    if messages:
        send_mass_mail(messages, fail_silently=False)


sla_transition.connect(notify_assignees, dispatch_uid="cases.sla.notify_assignees")
