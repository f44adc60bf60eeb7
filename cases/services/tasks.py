"""Task services. A task lives in its assignee's task list (a change-number container)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from cases.choices import TASK_TRANSITIONS, TaskStatus, TimelineKind, a_or_an
from cases.errors import CaseError, InvalidAssignee, InvalidTransition
from cases.models import Case, CaseMessage, ChecklistItem, Task
from cases.services.timeline import display, timeline_record
from crm import changes
from crm.models import TeamMembership, User
from mailsync.models import Message

UPDATABLE_FIELDS = (
    "subject",
    "description",
    "priority",
    "category",
    "due_at",
    "remind_at",
    "summary",
    "action_required",
)


def validate_task_assignee(*, case: Case | None, assignee: User | None) -> None:
    """A task on a case goes to a member of the case's team; any active agent otherwise."""
    if assignee is None:
        return
    if not assignee.is_active:
        raise InvalidAssignee(f"{assignee} is deactivated.", field="assignee")
    if (
        case is not None
        and not TeamMembership.objects.filter(team_id=case.team_id, user=assignee).exists()
    ):
        raise InvalidAssignee(
            f"{assignee} is not a member of team {case.team}, which owns {case.number}.",
            field="assignee",
        )


def _container_for(assignee: User | None):
    return changes.task_list(assignee.pk) if assignee is not None else None


def _save(task: Task, fields: Iterable[str]) -> None:
    """Save with a fresh change number, so the assignee's devices see the change."""
    changes.item_touch(task, _container_for(task.assignee))
    task.save(update_fields=[*fields, "change_container", "change_seq", "updated_at"])


def _record_on_case(task: Task, actor: User | None, kind: str, summary: str, **data) -> None:
    if task.case_id is not None:
        timeline_record(
            case=task.case, kind=kind, actor=actor, summary=summary, task=task.pk, **data
        )


@transaction.atomic
def task_create(
    *,
    actor: User | None,
    subject: str,
    case: Case | None = None,
    assignee: User | None = None,
    description: str = "",
    priority: str = "normal",
    category: str = "",
    due_at: datetime | None = None,
    remind_at: datetime | None = None,
    summary: str = "",
    action_required: str = "",
    checklist: Iterable[str] = (),
) -> Task:
    if not subject.strip():
        raise CaseError("A task needs a subject.", field="subject")
    validate_task_assignee(case=case, assignee=assignee)
    task = Task(
        case=case,
        subject=subject.strip(),
        description=description,
        priority=priority,
        category=category,
        assignee=assignee,
        due_at=due_at,
        remind_at=remind_at,
        summary=summary,
        action_required=action_required,
        created_by=actor,
    )
    task.full_clean()
    changes.item_touch(task, _container_for(assignee))
    task.save()
    ChecklistItem.objects.bulk_create(
        ChecklistItem(task=task, text=text, position=i) for i, text in enumerate(checklist)
    )
    _record_on_case(
        task,
        actor,
        TimelineKind.TASK_ADDED,
        f"Task added: {task.subject}" + (f" (for {assignee})" if assignee else ""),
    )
    return task


def _lock(task: Task) -> Task:
    locked = Task.objects.select_for_update().get(pk=task.pk)
    for field in locked._meta.concrete_fields:
        setattr(task, field.attname, getattr(locked, field.attname))
    return task


@transaction.atomic
def task_update(*, actor: User | None, task: Task, **changes_: object) -> Task:
    unknown = set(changes_) - set(UPDATABLE_FIELDS)
    if unknown:
        raise CaseError(f"Use the dedicated services for: {', '.join(sorted(unknown))}.")
    _lock(task)
    changed = [(f, getattr(task, f), v) for f, v in changes_.items() if getattr(task, f) != v]
    if not changed:
        return task
    for field, _, new in changed:
        setattr(task, field, new)
    task.full_clean()
    _save(task, [field for field, _, _ in changed])
    _record_on_case(
        task,
        actor,
        TimelineKind.TASK_CHANGED,
        f"Task “{task.subject}”: "
        + "; ".join(f"{f.replace('_', ' ')} {display(o)} → {display(n)}" for f, o, n in changed),
        fields=[field for field, _, _ in changed],
    )
    return task


def validate_task_transition(*, task: Task, status: str) -> None:
    """Raise unless the task may move from its status to `status` (admin forms ask first)."""
    if status not in TaskStatus.values:
        raise InvalidTransition(f"“{status}” is not a task status.", field="status")
    if status != task.status and status not in TASK_TRANSITIONS[task.status]:
        raise InvalidTransition(
            f"{a_or_an(TaskStatus(task.status).label.lower())} task cannot become "
            f"{TaskStatus(status).label.lower()}.",
            field="status",
        )


@transaction.atomic
def task_change_status(*, actor: User | None, task: Task, status: str) -> Task:
    _lock(task)
    validate_task_transition(task=task, status=status)
    if status == task.status:
        return task
    old = task.status
    task.status = status
    done = status in (TaskStatus.RESOLVED, TaskStatus.CLOSED)
    task.completed_at = (task.completed_at or timezone.now()) if done else None
    _save(task, ["status", "completed_at"])
    _record_on_case(
        task,
        actor,
        TimelineKind.TASK_CHANGED,
        f"Task “{task.subject}”: {TaskStatus(old).label} → {TaskStatus(status).label}",
        old=old,
        new=status,
    )
    return task


@transaction.atomic
def task_assign(*, actor: User | None, task: Task, assignee: User | None) -> Task:
    """Move the task to another agent's list: it leaves a tombstone in the old one."""
    _lock(task)
    validate_task_assignee(case=task.case, assignee=assignee)
    if task.assignee_id == (assignee.pk if assignee else None):
        return task
    old = task.assignee
    task.assignee = assignee
    _save(task, ["assignee"])
    _record_on_case(
        task,
        actor,
        TimelineKind.TASK_CHANGED,
        f"Task “{task.subject}” assigned: {display(old)} → {display(assignee)}",
        old_assignee=old.pk if old else None,
        new_assignee=assignee.pk if assignee else None,
    )
    return task


def tasks_release_outside_team(*, actor: User | None, case: Case) -> list[Task]:
    """Unassign the case's tasks whose assignee is not in the case's (new) team.

    Called when a case moves to another team or is merged into another team's case: a task
    must go to a member of the team that owns its case. The tasks leave their old assignee's
    task list (a tombstone there) and the case's timeline says so. Precondition: inside the
    transaction that moved the case.
    """
    members = TeamMembership.objects.filter(team_id=case.team_id).values("user_id")
    stray = list(
        case.tasks.select_for_update()
        .filter(assignee__isnull=False)
        .exclude(assignee_id__in=members)
        .select_related("assignee")
        .order_by("pk")
    )
    for task in stray:
        old = task.assignee
        task.assignee = None
        _save(task, ["assignee"])
        _record_on_case(
            task,
            actor,
            TimelineKind.TASK_CHANGED,
            f"Task “{task.subject}” unassigned: {old} is not in team {case.team}",
            old_assignee=old.pk,
            new_assignee=None,
        )
    return stray


@transaction.atomic
def task_set_checklist(
    *, actor: User | None, task: Task, items: Iterable[tuple[str, bool]]
) -> list[ChecklistItem]:
    _lock(task)
    task.checklist.all().delete()
    created = ChecklistItem.objects.bulk_create(
        ChecklistItem(task=task, text=text, done=done, position=i)
        for i, (text, done) in enumerate(items)
    )
    _save(task, [])
    return created


@transaction.atomic
def task_delete(*, actor: User | None, task: Task) -> None:
    _lock(task)
    if task.change_container_id is not None:
        changes.item_leave(task, task.change_container)
    _record_on_case(task, actor, TimelineKind.TASK_CHANGED, f"Task deleted: {task.subject}")
    task.delete()


@transaction.atomic
def task_from_message(
    *, actor: User | None, message: Message, assignee: User | None = None
) -> Task:
    """Turn a mail message into a task on the message's case (an agent's "make this a task",
    later a workflow action): the message's subject and text become the task's."""
    link = CaseMessage.objects.filter(message=message).select_related("case").first()
    if link is None or link.case is None:
        raise CaseError("This message is not part of a case.", field="message")
    return task_create(
        actor=actor,
        subject=(message.subject or "(no subject)")[:300],
        case=link.case,
        assignee=assignee,
        description=message.body_text[:20_000],
    )
