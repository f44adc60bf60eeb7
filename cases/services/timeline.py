"""Writing the case timeline. Only services call this; nothing relies on signals."""

from __future__ import annotations

from typing import Any

from cases.models import Case, TimelineEvent
from crm.models import User


def timeline_record(
    *, case: Case, kind: str, actor: User | None, summary: str, **data: Any
) -> TimelineEvent:
    return TimelineEvent.objects.create(
        case=case, kind=kind, actor=actor, summary=summary[:500], data=data
    )


def display(value: object) -> str:
    """How a field value reads in a timeline summary."""
    if value is None or value == "":
        return "—"
    return str(value)
