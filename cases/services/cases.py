"""Case services: create, change, assign, merge, link, note. Each writes its timeline events."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from cases import selectors
from cases.choices import (
    CASE_TRANSITIONS,
    OPEN_CASE_STATUSES,
    CaseStatus,
    LinkKind,
    RuleTrigger,
    TimelineKind,
    a_or_an,
)
from cases.errors import (
    CaseError,
    InvalidAssignee,
    InvalidLink,
    InvalidMerge,
    InvalidTransition,
    NoAgentAvailable,
    ReopenWindowPassed,
)
from cases.models import Case, CaseLink, CaseNote, Category, Customer, Organization, Tag
from cases.services.sla import sla_refresh, status_period_open
from cases.services.tasks import tasks_release_outside_team
from cases.services.timeline import display, timeline_record
from cases.services.triage import (
    Suggestion,
    triage_prefill,
    triage_record_overrides,
    triage_schedule_llm,
)
from cases.workflow.engine import workflow_record
from crm import notifications as crm_notifications
from crm import selectors as crm_selectors
from crm.db import reserve_ids
from crm.models import NotificationKind, Team, TeamMembership, User

CASE_NUMBER_FORMAT = "CASE-{:06d}"
UPDATABLE_FIELDS = ("title", "description", "type", "priority", "sentiment", "channel", "summary")
RELATION_FIELDS = ("customer", "organization", "category")
# Fields SLA policies match on: a change may select another policy or target.
SLA_INPUTS = {"type", "priority", "channel", "customer", "organization"}
CASE_RELATIONS = (
    "team",
    "assignee",
    "customer",
    "organization",
    "parent",
    "category",
    "created_by",
    "updated_by",
)
MENTION = re.compile(r"(?<![\w.])@([\w.+-]+@[\w-]+(?:\.[\w-]+)+|[\w][\w.+-]*)")


def case_url(case: Case) -> str:
    """The case's page in the web UI, as notifications link to it."""
    return reverse("web:case", kwargs={"number": case.number})


def format_case_number(pk: int) -> str:
    return CASE_NUMBER_FORMAT.format(pk)


def validate_assignee(*, team: Team, assignee: User | None) -> None:
    """An assignee must be an active member of the case's team."""
    if assignee is None:
        return
    if not assignee.is_active:
        raise InvalidAssignee(f"{assignee} is deactivated.", field="assignee")
    if not TeamMembership.objects.filter(team=team, user=assignee).exists():
        raise InvalidAssignee(f"{assignee} is not a member of team {team}.", field="assignee")


def validate_transition(*, case: Case, status: str, now: datetime | None = None) -> None:
    """Raise unless `case` may move from its status to `status` (the table in one place)."""
    if status not in CaseStatus.values:
        raise InvalidTransition(f"“{status}” is not a case status.", field="status")
    if status == case.status:
        return
    if status not in CASE_TRANSITIONS[case.status]:
        raise InvalidTransition(
            f"{a_or_an(CaseStatus(case.status).label.lower())} case cannot become "
            f"{CaseStatus(status).label.lower()}.",
            field="status",
        )
    if case.status == CaseStatus.CLOSED and case.closed_at is not None:
        window = timedelta(days=case.team.reopen_window_days)
        if (now or timezone.now()) - case.closed_at > window:
            raise ReopenWindowPassed(
                f"{case.number} was closed more than {case.team.reopen_window_days} days ago; "
                "open a follow-up case instead.",
                field="status",
            )


def _lock(case: Case) -> Case:
    """Lock the case row for this transaction and refresh the instance from it."""
    locked = Case.objects.select_for_update().get(pk=case.pk)
    for field in locked._meta.concrete_fields:
        setattr(case, field.attname, getattr(locked, field.attname))
    return case


def _save(case: Case, actor: User | None, fields: Iterable[str]) -> None:
    case.updated_by = actor
    case.save(update_fields=[*fields, "updated_by", "updated_at"])


@transaction.atomic
def case_create(
    *,
    actor: User | None,
    title: str,
    team: Team,
    description: str = "",
    type: str = "question",  # noqa: A002 - the field's name
    priority: str = "normal",
    sentiment: str = "unknown",
    channel: str = "email",
    customer: Customer | None = None,
    organization: Organization | None = None,
    assignee: User | None = None,
    tags: Iterable[str] = (),
    parent: Case | None = None,
    category: Category | None = None,
    summary: str = "",
    triage: Suggestion | None = None,
) -> Case:
    """Open a case. With `triage` (intake's built-in suggestion) its priority, sentiment,
    category and summary start from the suggestion, in the same INSERT, and the language
    model's triage is queued after commit when one is configured."""
    if not title.strip():
        raise CaseError("A case needs a title.", field="title")
    validate_assignee(team=team, assignee=assignee)
    if organization is None and customer is not None:
        organization = customer.organization
    case = Case(
        title=title.strip(),
        description=description,
        type=type,
        priority=priority,
        sentiment=sentiment,
        channel=channel,
        team=team,
        assignee=assignee,
        customer=customer,
        organization=organization,
        parent=parent,
        category=category,
        summary=summary,
        created_by=actor,
        updated_by=actor,
    )
    if triage is not None:
        triage_prefill(case, triage)
    # The related rows came in as instances the caller loaded: checking that each exists
    # would cost a query apiece on intake's hot path.
    case.full_clean(exclude=["number", *CASE_RELATIONS], validate_unique=False)
    _insert_numbered(case)
    timeline_record(
        case=case,
        kind=TimelineKind.CREATED,
        actor=actor,
        summary=f"Case {case.number} created in {team}",
        team=team.pk,
        assignee=assignee.pk if assignee else None,
    )
    status_period_open(case=case, status=case.status, at=case.created_at)
    if not (tags and _set_tags(actor=actor, case=case, names=tags)):
        sla_refresh(case=case, new=True)
    if triage is not None:
        triage_schedule_llm(case=case)
    if assignee is not None:  # notifications (issue 12)
        _notify_assigned(actor=actor, case=case, assignee=assignee)
    workflow_record(case=case, trigger=RuleTrigger.CASE_CREATED, actor=actor)
    return case


def _insert_numbered(case: Case) -> None:
    """Insert the case with its number, which derives from its key.

    On PostgreSQL the key is drawn from the sequence first and the row goes in complete;
    elsewhere it is inserted under a placeholder number and numbered at once (an UPDATE of
    a row with two dozen indexes, which PostgreSQL is spared).
    """
    reserved = reserve_ids(Case, 1)
    if reserved:
        case.pk = reserved[0]
        case.number = format_case_number(case.pk)
        case.save(force_insert=True)
        return
    case.number = f"new-{uuid.uuid4().hex[:16]}"
    case.save()
    case.number = format_case_number(case.pk)
    case.save(update_fields=["number"])


@transaction.atomic
def case_update(*, actor: User | None, case: Case, **changes: object) -> Case:
    """Change plain fields and the customer, organization or category; one timeline event per
    change. A field triage had set becomes the agent's (`triage_record_overrides`)."""
    unknown = set(changes) - set(UPDATABLE_FIELDS) - set(RELATION_FIELDS)
    if unknown:
        raise CaseError(f"Use the dedicated services for: {', '.join(sorted(unknown))}.")
    _lock(case)
    if "customer" in changes and "organization" not in changes and changes["customer"]:
        changes["organization"] = changes["customer"].organization or case.organization
    changed = []
    for field, new in changes.items():
        old = getattr(case, field)
        if old == new:
            continue
        setattr(case, field, new)
        changed.append((field, old, new))
    if not changed:
        return case
    case.full_clean(exclude=["number"], validate_unique=False)
    overridden = triage_record_overrides(case=case, actor=actor, changes=changed)
    _save(case, actor, [field for field, _, _ in changed] + (["triage"] if overridden else []))
    if {field for field, _, _ in changed} & SLA_INPUTS:
        sla_refresh(case=case)
    for field, old, new in changed:
        label = Case._meta.get_field(field).verbose_name
        timeline_record(
            case=case,
            kind=TimelineKind.FIELD_CHANGED,
            actor=actor,
            summary=f"{label.capitalize()}: {display(old)} → {display(new)}",
            field=field,
            old=getattr(old, "pk", old),
            new=getattr(new, "pk", new),
        )
    workflow_record(
        case=case,
        trigger=RuleTrigger.CASE_UPDATED,
        actor=actor,
        changes={field: [_canonical(old), _canonical(new)] for field, old, new in changed},
    )
    return case


def _canonical(value: object) -> object:
    """A value as rule conditions compare it (and JSON holds it): relations by id."""
    return getattr(value, "pk", value)


@transaction.atomic
def case_change_status(
    *, actor: User | None, case: Case, status: str, now: datetime | None = None
) -> Case:
    _lock(case)
    validate_transition(case=case, status=status, now=now)
    if status == case.status:
        return case
    now = now or timezone.now()
    old = case.status
    case.status = status
    if status == CaseStatus.RESOLVED:
        case.resolved_at = now
    elif status == CaseStatus.CLOSED:
        case.closed_at = now
        case.resolved_at = case.resolved_at or now
    elif old in (CaseStatus.RESOLVED, CaseStatus.CLOSED):
        case.resolved_at = case.closed_at = None
    _save(case, actor, ["status", "resolved_at", "closed_at"])
    status_period_open(case=case, status=status, at=now)
    sla_refresh(case=case, now=now)
    reopened = old in (CaseStatus.RESOLVED, CaseStatus.CLOSED) and status in OPEN_CASE_STATUSES
    timeline_record(
        case=case,
        kind=TimelineKind.STATUS_CHANGED,
        actor=actor,
        summary=f"{'Reopened: ' if reopened else 'Status: '}"
        f"{CaseStatus(old).label} → {CaseStatus(status).label}",
        old=old,
        new=status,
        reopened=reopened,
    )
    workflow_record(
        case=case,
        trigger=RuleTrigger.STATUS_CHANGED,
        actor=actor,
        changes={"status": [old, status]},
    )
    return case


@transaction.atomic
def case_assign(
    *, actor: User | None, case: Case, assignee: User | None, team: Team | None = None
) -> Case:
    """Give the case to `assignee` (or nobody), optionally moving it to `team` as well.

    The assignee must be an active member of the case's (new) team; to move a case to a team
    without choosing anyone there, pass `assignee=None`.
    """
    _lock(case)
    old_team, old_assignee = case.team, case.assignee
    new_team = team or old_team
    validate_assignee(team=new_team, assignee=assignee)
    if new_team == old_team and assignee == old_assignee:
        return case
    case.team, case.assignee = new_team, assignee
    _save(case, actor, ["team", "assignee"])
    parts = []
    if new_team != old_team:
        parts.append(f"team {old_team} → {new_team}")
    if assignee != old_assignee:
        parts.append(f"assignee {display(old_assignee)} → {display(assignee)}")
    timeline_record(
        case=case,
        kind=TimelineKind.ASSIGNED,
        actor=actor,
        summary="Assigned: " + ", ".join(parts),
        old_team=old_team.pk,
        new_team=new_team.pk,
        old_assignee=old_assignee.pk if old_assignee else None,
        new_assignee=assignee.pk if assignee else None,
    )
    if new_team != old_team:
        tasks_release_outside_team(actor=actor, case=case)
        sla_refresh(case=case)
    if assignee is not None and assignee != old_assignee:  # notifications (issue 12)
        _notify_assigned(actor=actor, case=case, assignee=assignee)
    changes = {}
    if new_team != old_team:
        changes["team"] = [old_team.pk, new_team.pk]
    if assignee != old_assignee:
        changes["assignee"] = [_canonical(old_assignee), _canonical(assignee)]
    workflow_record(case=case, trigger=RuleTrigger.ASSIGNED, actor=actor, changes=changes)
    return case


def _notify_assigned(*, actor: User | None, case: Case, assignee: User) -> None:
    """Tell the new assignee, unless they took the case themselves (notify skips the actor)."""
    who = f"{actor} assigned you" if actor else "You were assigned"
    crm_notifications.notify(
        recipients=[assignee],
        kind=NotificationKind.ASSIGNED,
        title=f"{case.number} assigned to you: {case.title}",
        body=f"{who} {case.number} “{case.title}” in {case.team}.",
        url=case_url(case),
        actor=actor,
    )


@transaction.atomic
def case_assign_round_robin(*, actor: User | None, case: Case) -> Case:
    """Assign to the team member who waited longest for a case, among those who take work.

    Skips agents who are away, paused by a lead, or at capacity (open cases assigned). The
    team's membership rows are locked in primary-key order, so two concurrent round-robins
    cannot pick the same agent for the same turn.
    """
    list(TeamMembership.objects.select_for_update().filter(team=case.team).order_by("pk"))
    candidates = list(crm_selectors.team_members_taking_work(team=case.team))
    open_counts = dict(
        Case.objects.filter(
            assignee_id__in=[m.user_id for m in candidates], status__in=OPEN_CASE_STATUSES
        )
        .exclude(pk=case.pk)
        .values_list("assignee_id")
        .annotate(n=Count("pk"))
    )
    for membership in candidates:
        if open_counts.get(membership.user_id, 0) < membership.user.profile.capacity:
            membership.last_assigned_at = timezone.now()
            membership.save(update_fields=["last_assigned_at"])
            return case_assign(actor=actor, case=case, assignee=membership.user)
    raise NoAgentAvailable(
        f"No agent in {case.team} is available with free capacity.", field="assignee"
    )


def _resolve_merge_target(case: Case) -> Case:
    return case if case.merged_into_id is None else case.merged_into


@transaction.atomic
def case_merge(*, actor: User | None, source: Case, target: Case) -> Case:
    """Merge `source` into `target`: its tasks, notes, timeline, links, children and watchers
    move; `source` is closed and its number resolves to `target` from then on."""
    if source.pk == target.pk:
        raise InvalidMerge("A case cannot be merged into itself.", field="target")
    for case in sorted((source, target), key=lambda c: c.pk):
        _lock(case)
    if source.merged_into_id is not None:
        raise InvalidMerge(f"{source.number} is already merged.", field="source")
    if target.merged_into_id is not None:
        raise InvalidMerge(
            f"{target.number} was merged into another case; merge into that one instead.",
            field="target",
        )
    source.tasks.update(case=target)
    if source.team_id != target.team_id:
        tasks_release_outside_team(actor=actor, case=target)
    source.notes.update(case=target)
    source.timeline.update(case=target)
    Case.objects.filter(parent=source).exclude(pk=target.pk).update(parent=target)
    Case.objects.filter(merged_into=source).update(merged_into=target)
    _move_links(source=source, target=target)
    target.watchers.add(*source.watchers.all())
    target.tags.add(*source.tags.all())
    now = timezone.now()
    source.merged_into = target
    source.status = CaseStatus.CLOSED
    source.closed_at = now
    source.resolved_at = source.resolved_at or now
    _save(source, actor, ["merged_into", "status", "closed_at", "resolved_at"])
    _save(target, actor, [])
    timeline_record(
        case=source,
        kind=TimelineKind.MERGED_INTO,
        actor=actor,
        summary=f"Merged into {target.number}",
        target=target.pk,
    )
    timeline_record(
        case=target,
        kind=TimelineKind.MERGED_FROM,
        actor=actor,
        summary=f"{source.number} merged into this case",
        source=source.pk,
    )
    return target


def _move_links(*, source: Case, target: Case) -> None:
    """Re-point the source's links to the target, dropping ones that would duplicate or loop."""
    existing = set(
        CaseLink.objects.filter(Q(from_case=target) | Q(to_case=target)).values_list(
            "from_case_id", "to_case_id"
        )
    )
    linked_to_target = {a for pair in existing for a in pair} - {target.pk}
    for link in CaseLink.objects.filter(Q(from_case=source) | Q(to_case=source)):
        other = link.to_case_id if link.from_case_id == source.pk else link.from_case_id
        if other == target.pk or other in linked_to_target:
            link.delete()
            continue
        if link.from_case_id == source.pk:
            link.from_case = target
        else:
            link.to_case = target
        link.save(update_fields=["from_case", "to_case"])
        linked_to_target.add(other)


@transaction.atomic
def case_link(
    *, actor: User | None, case: Case, other: Case, kind: str = LinkKind.RELATED
) -> CaseLink:
    if case.pk == other.pk:
        raise InvalidLink("A case cannot be linked to itself.", field="other")
    if kind not in LinkKind.values:
        raise InvalidLink(f"“{kind}” is not a kind of link.", field="kind")
    other = _resolve_merge_target(other)
    if CaseLink.objects.filter(
        Q(from_case=case, to_case=other) | Q(from_case=other, to_case=case)
    ).exists():
        raise InvalidLink(f"{case.number} and {other.number} are already linked.", field="other")
    link = CaseLink.objects.create(from_case=case, to_case=other, kind=kind, created_by=actor)
    label = LinkKind(kind).label.lower()
    for here, there in ((case, other), (other, case)):
        timeline_record(
            case=here,
            kind=TimelineKind.LINKED,
            actor=actor,
            summary=f"Linked ({label}) with {there.number}",
            other=there.pk,
            link_kind=kind,
        )
    return link


@transaction.atomic
def case_unlink(*, actor: User | None, case: Case, other: Case) -> None:
    deleted, _ = CaseLink.objects.filter(
        Q(from_case=case, to_case=other) | Q(from_case=other, to_case=case)
    ).delete()
    if not deleted:
        raise InvalidLink(f"{case.number} and {other.number} are not linked.", field="other")
    for here, there in ((case, other), (other, case)):
        timeline_record(
            case=here,
            kind=TimelineKind.UNLINKED,
            actor=actor,
            summary=f"Unlinked from {there.number}",
            other=there.pk,
        )


@transaction.atomic
def case_set_parent(*, actor: User | None, case: Case, parent: Case | None) -> Case:
    """Make `case` a child of `parent` (or of nothing); cycles are refused."""
    _lock(case)
    ancestor = parent
    while ancestor is not None:
        if ancestor.pk == case.pk:
            raise InvalidLink("A case cannot be its own ancestor.", field="parent")
        ancestor = ancestor.parent
    if case.parent_id == (parent.pk if parent else None):
        return case
    old = case.parent
    case.parent = parent
    _save(case, actor, ["parent"])
    timeline_record(
        case=case,
        kind=TimelineKind.FIELD_CHANGED,
        actor=actor,
        summary=f"Parent case: {display(old and old.number)} → {display(parent and parent.number)}",
        field="parent",
        old=old.pk if old else None,
        new=parent.pk if parent else None,
    )
    return case


def mentioned_agents(body: str) -> list[User]:
    """Agents named in `body` as @email or @local-part (the part before their address's @)."""
    tokens = {token.rstrip(".").lower() for token in MENTION.findall(body)}
    if not tokens:
        return []
    emails = {t for t in tokens if "@" in t}
    local_parts = tokens - emails
    query = Q(email__in=emails)
    for local in local_parts:
        query |= Q(email__istartswith=f"{local}@")
    agents = User.objects.filter(query, is_active=True, memberships__isnull=False).distinct()
    return list(agents.order_by("email"))


def _may_see(user: User, case: Case) -> bool:
    return selectors.case_list(user=user).filter(pk=case.pk).exists()


@transaction.atomic
def case_add_note(*, actor: User | None, case: Case, body: str) -> CaseNote:
    if not body.strip():
        raise CaseError("A note cannot be empty.", field="body")
    note = CaseNote.objects.create(case=case, author=actor, body=body)
    mentions = mentioned_agents(body)
    note.mentions.set(mentions)
    _save(case, actor, [])
    timeline_record(
        case=case,
        kind=TimelineKind.NOTE_ADDED,
        actor=actor,
        summary="Internal note"
        + (f" mentioning {', '.join(map(str, mentions))}" if mentions else ""),
        note=note.pk,
        mentions=[user.pk for user in mentions],
    )
    # Only agents who may see the case hear of it (a note names the case and quotes itself).
    readers = [user for user in mentions if _may_see(user, case)]
    if readers:  # notifications (issue 12); notify skips the author mentioning themselves
        crm_notifications.notify(
            recipients=readers,
            kind=NotificationKind.MENTIONED,
            title=f"{actor or 'Someone'} mentioned you on {case.number}",
            body=body,
            url=case_url(case),
            actor=actor,
        )
    return note


@transaction.atomic
def case_add_watcher(*, actor: User | None, case: Case, watcher: User) -> None:
    if case.watchers.filter(pk=watcher.pk).exists():
        return
    case.watchers.add(watcher)
    timeline_record(
        case=case,
        kind=TimelineKind.WATCHER_ADDED,
        actor=actor,
        summary=f"{watcher} watches this case",
        watcher=watcher.pk,
    )


@transaction.atomic
def case_remove_watcher(*, actor: User | None, case: Case, watcher: User) -> None:
    if not case.watchers.filter(pk=watcher.pk).exists():
        return
    case.watchers.remove(watcher)
    timeline_record(
        case=case,
        kind=TimelineKind.WATCHER_REMOVED,
        actor=actor,
        summary=f"{watcher} no longer watches this case",
        watcher=watcher.pk,
    )


def normalize_tag(name: str) -> str:
    return slugify(name.strip(), allow_unicode=True)[:50]


@transaction.atomic
def case_set_tags(*, actor: User | None, case: Case, names: Iterable[str]) -> list[str]:
    """Make the case's tags exactly `names` (normalised); returns them sorted."""
    current = sorted(case.tags.values_list("name", flat=True))
    wanted = _set_tags(actor=actor, case=case, names=names, current=set(current))
    if wanted != current:
        workflow_record(
            case=case, trigger=RuleTrigger.CASE_UPDATED, actor=actor,
            changes={"tags": [current, wanted]},
        )  # fmt: skip
    return wanted


def _set_tags(
    *, actor: User | None, case: Case, names: Iterable[str], current: set[str] | None = None
) -> list[str]:
    """Set the tags and write the timeline (a new case's tags come with its creation event)."""
    wanted = {normalize_tag(name) for name in names} - {""}
    if current is None:
        current = set(case.tags.values_list("name", flat=True))
    if wanted == current:
        return sorted(current)
    tags = [Tag.objects.get_or_create(name=name)[0] for name in sorted(wanted)]
    case.tags.set(tags)
    added, removed = sorted(wanted - current), sorted(current - wanted)
    _save(case, actor, [])
    sla_refresh(case=case)
    summary = ", ".join([*(f"+{name}" for name in added), *(f"−{name}" for name in removed)])
    timeline_record(
        case=case,
        kind=TimelineKind.TAGS_CHANGED,
        actor=actor,
        summary=f"Tags: {summary}",
        added=added,
        removed=removed,
    )
    return sorted(wanted)


@transaction.atomic
def case_delete(*, actor: User | None, case: Case) -> None:
    """Delete a case and its tasks; synced task lists get tombstones for the tasks."""
    from crm import changes

    _lock(case)
    if case.merged_cases.exists():
        raise CaseError(
            f"Other cases were merged into {case.number}; their numbers resolve to it.",
            field="case",
        )
    for task in case.tasks.select_related("change_container"):
        if task.change_container is not None:
            changes.item_leave(task, task.change_container)
    case.delete()
