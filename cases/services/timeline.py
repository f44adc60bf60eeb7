"""Writing the case timeline. Only services call this; nothing relies on signals.

Every change of a case passes through `timeline_record`, which makes it the one seam for live
updates too: after the transaction commits, the case's viewers and the queues of its team(s)
and assignee(s) hear "this case changed" (`crm.live`; one event per case per transaction), and
the change numbers of cached analytics move on (`cases.analytics_cache`).
"""

from __future__ import annotations

from typing import Any

from cases.analytics_cache import analytics_bump
from cases.models import Case, TimelineEvent
from crm import live
from crm.models import User


def timeline_record(
    *, case: Case, kind: str, actor: User | None, summary: str, **data: Any
) -> TimelineEvent:
    event = TimelineEvent.objects.create(
        case=case, kind=kind, actor=actor, summary=summary[:500], data=data
    )
    _publish_case_changed(case=case, event=event, data=data)
    analytics_bump(
        team_ids=(case.team_id, data.get("old_team")),
        user_ids=(case.assignee_id, data.get("old_assignee")),
    )
    return event


def _publish_case_changed(*, case: Case, event: TimelineEvent, data: dict[str, Any]) -> None:
    """Announce the change after commit; no query, only what the case row already holds.

    The team and assignee the case had before (an assignment's `old_team`, `old_assignee`)
    hear it as well: the case leaves their queues.
    """
    teams = {case.team_id, data.get("old_team")}
    users = {case.assignee_id, data.get("old_assignee")}
    groups = [
        live.case_group(case.pk),
        *(live.team_group(t) for t in sorted(t for t in teams if isinstance(t, int))),
        *(live.user_group(u) for u in sorted(u for u in users if isinstance(u, int))),
    ]
    live.publish_on_commit(
        groups=groups,
        event=case_changed_event(
            case_id=case.pk,
            number=case.number,
            team_id=case.team_id,
            assignee_id=case.assignee_id,
            kind=event.kind,
            summary=event.summary,
        ),
        key=f"case:{case.pk}",
        published=[("timeline", event.pk)],
    )


def case_changed_event(
    *,
    case_id: int,
    number: str,
    team_id: int | None,
    assignee_id: int | None,
    kind: str,
    summary: str,
) -> dict[str, Any]:
    """The channel-layer message of a changed case; `cases.consumers` decides who hears it."""
    return {
        "type": "live.case",
        "id": live.new_event_id(),
        "case_id": case_id,
        "case": number,
        "team_id": team_id,
        "assignee_id": assignee_id,
        "kind": kind,
        "summary": summary,
    }


def display(value: object) -> str:
    """How a field value reads in a timeline summary."""
    if value is None or value == "":
        return "—"
    return str(value)
