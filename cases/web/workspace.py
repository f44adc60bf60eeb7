"""The case workspace: one case, its conversation, notes, tasks and timeline.

Everything is read through `cases.selectors` and written through `cases.services`, with the
checks the API adds on top (`cases/api/cases.py`): a case the agent cannot see is a 404, a
case moves only to one of the agent's own teams unless they are an admin, and an assignee
must be an active member of the case's team. Service errors come back as messages next to
the field or form that caused them.

Layout and choices:

- The header edits in place: each field is a small form that htmx posts to
  `cases/<number>/fields/<field>`; the answer is the header again (with the error, if the
  service refused) and, out of band, the timeline and the task list, which an edit may change.
- The conversation runs oldest first, as mail is read. HTML bodies are never put in the page:
  each is served by `cases/<number>/messages/<id>/body` (sanitized by `cases.web.sanitize`,
  with its own strict CSP) into an `<iframe sandbox>`; remote images load only when the agent
  asks for that message (`?images=1`).
- The timeline is a panel of its own, newest first, and not interleaved with the
  conversation: the thread reads as a conversation, and the timeline answers "what changed
  lately", so the latest event belongs at the top. It shows the latest `TIMELINE_LIMIT`.
- The page costs the same number of queries whatever the number of messages, notes, tasks
  and events (prefetching, and no per-row lookups in templates), which the tests assert.
- A merged case keeps its own page (its messages stay with it) under a banner that names and
  links the case it went into.
- Next/previous case links are not offered: the queue owns its filters and order. The page
  passes the queue's query string (`?from=`) through to its "Back to queue" link.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import datetime

from csp.constants import NONE, SELF, UNSAFE_INLINE
from csp.decorators import csp
from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Prefetch, Q, QuerySet
from django.db.models.functions import Coalesce
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    QueryDict,
)
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET, require_POST

from cases import selectors, services
from cases.choices import (
    CASE_TRANSITIONS,
    TASK_TRANSITIONS,
    CaseStatus,
    CaseType,
    Priority,
    TaskStatus,
)
from cases.models import Case, CaseLink, CaseMessage, ChecklistItem, Task
from cases.web.mail_render import message_document, message_view
from cases.web.queues import queue_neighbours
from crm import selectors as crm_selectors
from crm.errors import ServiceError
from crm.models import Team, TeamMembership, User
from crm.selectors import agent_timezone
from mailsync.models import Attachment, Message
from mailsync.services.attachments import attachment_content_ensure

TIMELINE_LIMIT = 100
OTHER_CASES_LIMIT = 10
MAX_TAGS = 30
MAX_CHECKLIST_ITEMS = 100
# Types a browser shows as a picture and cannot run: SVG (which can carry script) is not one.
INLINE_IMAGE_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/avif"}
)
TAG_SEPARATORS = re.compile(r"[,\s]+")
WORKSPACE_CASE_RELATIONS = (
    "team",
    "assignee",
    "customer__organization",
    "organization",
    "parent",
    "merged_into",
)
ATTACHMENT_POLICY = {"default-src": [NONE], "sandbox": [True]}


class InvalidInput(ServiceError):
    """What the agent typed or picked cannot be used (before any service is asked)."""

    code = "invalid_input"


# A service refuses with a ServiceError; a model's own validation (full_clean inside a
# service) with a ValidationError. Both are the agent's to read, neither is a 500.
REFUSALS = (ServiceError, ValidationError)


def refusal_text(error: ServiceError | ValidationError) -> str:
    if isinstance(error, ServiceError):
        return error.message
    return " ".join(error.messages)


# --- helpers shared by the views ---------------------------------------------------------------


def _render(
    request: HttpRequest, template: str, context: dict, *, status: int = 200
) -> HttpResponse:
    """Render a page or partial (times are in the agent's zone: crm.middleware)."""
    return render(request, template, context, status=status)


def case_queryset(user: User) -> QuerySet[Case]:
    return (
        selectors.case_list(user=user)
        .select_related(*WORKSPACE_CASE_RELATIONS)
        .prefetch_related("tags", "customer__emails")
    )


def case_or_404(request: HttpRequest, number: str) -> Case:
    """The visible case with exactly this number. A merged case is shown as itself (under a
    banner), unlike the API's by-number lookup, because its messages stay with it."""
    case = case_queryset(request.user).filter(number=number.strip().upper()).first()
    if case is None:
        raise Http404("No such case.")
    return case


def _case_url(case: Case) -> str:
    return reverse("web:case", kwargs={"number": case.number})


def _respond_or_redirect(
    request: HttpRequest, case: Case, partial: Callable[[], HttpResponse], error: str | None
) -> HttpResponse:
    """htmx gets the partial; a plain form post gets the page again, with the error flashed."""
    if request.htmx:
        return partial()
    if error:
        flash.error(request, error)
    return redirect(_case_url(case))


def _queue_query(request: HttpRequest) -> str:
    """The queue's query string the agent came from, re-encoded so it cannot be anything else."""
    raw = request.GET.get("from", "")
    return QueryDict(raw).urlencode() if raw else ""


def _queue_context(request: HttpRequest, case: Case) -> dict[str, str]:
    """The way back to the queue the agent came from, and its cases either side of this one."""
    query = _queue_query(request)
    if not query:
        return {"queue_query": ""}
    previous, following = queue_neighbours(user=request.user, query_string=query, case=case)
    return {"queue_query": query, "previous_case": previous, "next_case": following}


# --- the page ----------------------------------------------------------------------------------


@login_required
@require_GET
def case_detail(request: HttpRequest, number: str) -> HttpResponse:
    case = case_or_404(request, number)
    context = {
        "area": "queues",
        **_queue_context(request, case),
        **case_parts_context(request, case),
        **_customer_context(request, case),
        **_relations_context(request, case),
    }
    return _render(request, "cases/case_detail.html", context)


def case_parts_context(request: HttpRequest, case: Case) -> dict:
    """The parts a change may alter (header, conversation, notes, tasks, timeline): the page,
    the composer's answer to a send and live refreshes all draw them from here."""
    header = header_context(request, case)
    return {
        "case": case,
        **header,
        **conversation_context(case),
        **notes_context(case),
        **tasks_context(case, members=header["members"]),
        **timeline_context(request, case),
    }


def _team_members(team: Team) -> list[User]:
    return list(
        User.objects.filter(memberships__team=team, is_active=True).order_by(
            "first_name", "last_name", "email"
        )
    )


def _teams_for(user: User, case: Case) -> list[Team]:
    """Teams the agent may move the case to (as the API's `_check_team`), and its own."""
    teams = Team.objects.order_by("name")
    if not crm_selectors.user_is_admin(user):
        teams = teams.filter(pk__in=crm_selectors.user_team_ids(user) | {case.team_id})
    return list(teams)


def header_context(request: HttpRequest, case: Case, error: str = "", field: str = "") -> dict:
    members = _team_members(case.team)
    member_ids = {member.pk for member in members}
    return {
        "members": members,
        "assignee_outside_team": case.assignee is not None and case.assignee_id not in member_ids,
        "teams": _teams_for(request.user, case),
        "statuses": _status_choices(case),
        "priorities": Priority.choices,
        "types": CaseType.choices,
        "tag_names": [tag.name for tag in case.tags.all()],
        "can_take": request.user.pk in member_ids and case.assignee_id != request.user.pk,
        "header_error": error,
        "error_field": field,
    }


def _status_choices(case: Case) -> list[tuple[str, str]]:
    """The case's status and those it may move to (the service still has the last word)."""
    allowed = CASE_TRANSITIONS[case.status] | {case.status}
    return [(value, label) for value, label in CaseStatus.choices if value in allowed]


def _inline_attachments(message: Message) -> dict[str, Attachment]:
    return {
        attachment.content_id.strip().strip("<>").lower(): attachment
        for attachment in message.attachments.all()
        if attachment.content_id
    }


def _listed_attachments(message: Message) -> list[Attachment]:
    """Attachments to offer as downloads: an HTML body shows its inline images itself."""
    attachments = list(message.attachments.all())
    if not message.body_html.strip():
        return attachments
    return [a for a in attachments if not (a.is_inline and a.content_id)]


def conversation_context(case: Case) -> dict:
    links = (
        selectors.case_messages(case=case)
        .defer("message__headers", "message__parse_problems")
        .order_by(
            Coalesce("message__received_at", "message__sent_at", "created_at").asc(),
            "pk",
        )
    )
    thread = [message_view(link, visible_attachments=_listed_attachments) for link in links]
    return {"thread": thread}


def notes_context(case: Case) -> dict:
    return {"notes": list(case.notes.select_related("author").order_by("-created_at", "-pk"))}


def _task_queryset(case: Case) -> QuerySet[Task]:
    return (
        case.tasks.select_related("assignee")
        .prefetch_related(
            Prefetch("checklist", queryset=ChecklistItem.objects.order_by("position", "pk"))
        )
        .order_by(F("completed_at").asc(nulls_first=True), F("due_at").asc(nulls_last=True), "pk")
    )


def _task_view(task: Task) -> dict:
    allowed = TASK_TRANSITIONS[task.status] | {task.status}
    statuses = [(value, label) for value, label in TaskStatus.choices if value in allowed]
    items = list(task.checklist.all())
    return {
        "task": task,
        "statuses": statuses,
        "items": items,
        "done_count": sum(item.done for item in items),
    }


def tasks_context(case: Case, members: list[User] | None = None) -> dict:
    return {
        "tasks": [_task_view(task) for task in _task_queryset(case)],
        "task_assignees": members if members is not None else _team_members(case.team),
    }


def timeline_context(request: HttpRequest, case: Case) -> dict:
    events = list(
        selectors.timeline_for(user=request.user, case=case).order_by("-created_at", "-pk")[
            : TIMELINE_LIMIT + 1
        ]
    )
    return {"events": events[:TIMELINE_LIMIT], "timeline_truncated": len(events) > TIMELINE_LIMIT}


def _customer_context(request: HttpRequest, case: Case) -> dict:
    if case.customer is None:
        return {"customer": None, "other_cases": []}
    other_cases = (
        selectors.case_list(user=request.user)
        .filter(customer=case.customer)
        .exclude(pk=case.pk)
        .order_by("-updated_at", "-pk")[:OTHER_CASES_LIMIT]
    )
    return {"customer": case.customer, "other_cases": list(other_cases)}


def _relations_context(request: HttpRequest, case: Case) -> dict:
    """Linked cases, parent, children and cases merged into this one, each only if visible."""
    visible = selectors.case_list(user=request.user)
    links = list(
        CaseLink.objects.filter(Q(from_case=case) | Q(to_case=case))
        .filter(Q(from_case__in=visible) & Q(to_case__in=visible))
        .select_related("from_case", "to_case")
        .order_by("pk")
    )
    linked = [
        {"case": link.to_case if link.from_case_id == case.pk else link.from_case, "link": link}
        for link in links
    ]
    named = [pk for pk in (case.parent_id, case.merged_into_id) if pk is not None]
    related = visible.filter(Q(parent=case) | Q(merged_into=case) | Q(pk__in=named))
    children, merged_in, visible_ids = [], [], set()
    for other in related.order_by("number"):
        visible_ids.add(other.pk)
        if other.parent_id == case.pk:
            children.append(other)
        elif other.merged_into_id == case.pk:
            merged_in.append(other)
    parent_visible = case.parent_id in visible_ids
    merged_into_visible = case.merged_into_id in visible_ids
    return {
        "linked": linked,
        "children": children,
        "merged_in": merged_in,
        "parent_visible": parent_visible,
        "merged_into_visible": merged_into_visible,
    }


# --- the header: fields edited in place --------------------------------------------------------


def _choice(value: str, choices: list[tuple[str, str]], label: str) -> str:
    if value not in {v for v, _ in choices}:
        raise InvalidInput(f"“{value}” is not a {label}.", field=label)
    return value


def active_user(raw: str) -> User | None:
    if raw == "":
        return None
    if not raw.isdigit():
        raise InvalidInput("Choose an agent from the list.", field="assignee")
    user = User.objects.filter(pk=int(raw), is_active=True).first()
    if user is None:
        raise InvalidInput("That agent does not exist or is deactivated.", field="assignee")
    return user


def _edit_title(request: HttpRequest, case: Case, value: str) -> None:
    title = value.strip()
    if not title:
        raise InvalidInput("A case needs a title.", field="title")
    if len(title) > Case._meta.get_field("title").max_length:
        raise InvalidInput("The title is too long (300 characters at most).", field="title")
    services.case_update(actor=request.user, case=case, title=title)


def _edit_priority(request: HttpRequest, case: Case, value: str) -> None:
    priority = _choice(value, Priority.choices, "priority")
    services.case_update(actor=request.user, case=case, priority=priority)


def _edit_type(request: HttpRequest, case: Case, value: str) -> None:
    case_type = _choice(value, CaseType.choices, "type")
    services.case_update(actor=request.user, case=case, type=case_type)


def _edit_status(request: HttpRequest, case: Case, value: str) -> None:
    services.case_change_status(actor=request.user, case=case, status=value)


def _edit_assignee(request: HttpRequest, case: Case, value: str) -> None:
    services.case_assign(actor=request.user, case=case, assignee=active_user(value))


def _edit_team(request: HttpRequest, case: Case, value: str) -> None:
    """Move the case; its assignee stays if they are a member of the new team (otherwise the
    case arrives there unassigned). Only the agent's own teams, unless admin, as in the API."""
    team = Team.objects.filter(pk=int(value)).first() if value.isdigit() else None
    if team is None:
        raise InvalidInput("Choose a team from the list.", field="team")
    user = request.user
    if not crm_selectors.user_is_admin(user) and team.pk not in crm_selectors.user_team_ids(user):
        raise InvalidInput("You are not a member of this team.", field="team")
    assignee = case.assignee
    if (
        assignee is not None
        and not TeamMembership.objects.filter(team=team, user=assignee).exists()
    ):
        assignee = None
    services.case_assign(actor=user, case=case, assignee=assignee, team=team)


def _edit_tags(request: HttpRequest, case: Case, value: str) -> None:
    names = [name for name in TAG_SEPARATORS.split(value) if name]
    if len(names) > MAX_TAGS:
        raise InvalidInput(f"A case has {MAX_TAGS} tags at most.", field="tags")
    services.case_set_tags(actor=request.user, case=case, names=names)


FIELD_EDITORS: dict[str, Callable[[HttpRequest, Case, str], None]] = {
    "title": _edit_title,
    "status": _edit_status,
    "priority": _edit_priority,
    "type": _edit_type,
    "assignee": _edit_assignee,
    "team": _edit_team,
    "tags": _edit_tags,
}


def _header_response(
    request: HttpRequest, case: Case, error: str = "", field: str = ""
) -> HttpResponse:
    """The header again; after a change, the timeline and tasks too (out of band)."""
    case = case_queryset(request.user).get(pk=case.pk)
    header = header_context(request, case, error=error, field=field)
    context = {
        "case": case,
        **header,
        "oob": not error,
        **(
            {
                **timeline_context(request, case),
                **tasks_context(case, members=header["members"]),
            }
            if not error
            else {}
        ),
    }
    return _render(request, "cases/workspace/header_response.html", context)


@login_required
@require_POST
def edit_field(request: HttpRequest, number: str, field: str) -> HttpResponse:
    case = case_or_404(request, number)
    editor = FIELD_EDITORS.get(field)
    if editor is None:
        raise Http404("No such field.")
    error = ""
    try:
        editor(request, case, request.POST.get("value", ""))
    except REFUSALS as exc:
        error = refusal_text(exc)
    return _respond_or_redirect(
        request, case, lambda: _header_response(request, case, error, field), error
    )


@login_required
@require_POST
def assign_to_me(request: HttpRequest, number: str) -> HttpResponse:
    case = case_or_404(request, number)
    error = ""
    try:
        services.case_assign(actor=request.user, case=case, assignee=request.user)
    except REFUSALS as exc:
        error = refusal_text(exc)
    return _respond_or_redirect(
        request, case, lambda: _header_response(request, case, error, "assignee"), error
    )


# --- notes -------------------------------------------------------------------------------------


def _form_error(request: HttpRequest, target: str, error: str) -> HttpResponse:
    """An htmx answer that puts `error` into the form's error slot instead of the list."""
    response = _render(request, "cases/workspace/form_error.html", {"error": error})
    response["HX-Retarget"] = target
    response["HX-Reswap"] = "innerHTML"
    return response


def _refused(request: HttpRequest, case: Case, slot: str, error: str) -> HttpResponse:
    return _respond_or_redirect(request, case, lambda: _form_error(request, slot, error), error)


@login_required
@require_POST
def add_note(request: HttpRequest, number: str) -> HttpResponse:
    case = case_or_404(request, number)
    try:
        services.case_add_note(actor=request.user, case=case, body=request.POST.get("body", ""))
    except REFUSALS as exc:
        return _refused(request, case, "#note-form-error", refusal_text(exc))
    return _respond_or_redirect(
        request,
        case,
        lambda: _render(
            request,
            "cases/workspace/notes_response.html",
            {"case": case, **notes_context(case), **timeline_context(request, case)},
        ),
        None,
    )


# --- tasks -------------------------------------------------------------------------------------


def _due_at(request: HttpRequest, raw: str) -> datetime | None:
    """A `datetime-local` value, read in the agent's time zone."""
    if not raw.strip():
        return None
    try:
        parsed = parse_datetime(raw.strip())
    except ValueError:
        parsed = None
    if parsed is None:
        raise InvalidInput("Give the due date as a date and time.", field="due_at")
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, agent_timezone(request.user))
    return parsed


def _checklist_lines(raw: str) -> list[str]:
    lines = [line.strip()[:300] for line in raw.splitlines() if line.strip()]
    if len(lines) > MAX_CHECKLIST_ITEMS:
        raise InvalidInput(
            f"A checklist has {MAX_CHECKLIST_ITEMS} items at most.", field="checklist"
        )
    return lines


def _tasks_response(request: HttpRequest, case: Case) -> HttpResponse:
    context = {"case": case, **tasks_context(case), **timeline_context(request, case)}
    return _render(request, "cases/workspace/tasks_response.html", context)


@login_required
@require_POST
def add_task(request: HttpRequest, number: str) -> HttpResponse:
    case = case_or_404(request, number)
    try:
        with transaction.atomic():
            services.task_create(
                actor=request.user,
                case=case,
                subject=request.POST.get("subject", "")[:300],
                assignee=active_user(request.POST.get("assignee", "")),
                due_at=_due_at(request, request.POST.get("due_at", "")),
                checklist=_checklist_lines(request.POST.get("checklist", "")),
            )
    except REFUSALS as exc:
        return _refused(request, case, "#task-form-error", refusal_text(exc))
    return _respond_or_redirect(request, case, lambda: _tasks_response(request, case), None)


def _task_or_404(case: Case, task_id: int, *, lock: bool = False) -> Task:
    tasks = case.tasks.select_for_update() if lock else case.tasks
    task = tasks.filter(pk=task_id).first()
    if task is None:
        raise Http404("No such task on this case.")
    return task


def _one_task_response(
    request: HttpRequest, case: Case, task: Task, error: str = ""
) -> HttpResponse:
    fresh = _task_queryset(case).get(pk=task.pk)
    context = {
        "case": case,
        "t": _task_view(fresh),
        "task_error": error,
        "oob_timeline": not error,
        **(timeline_context(request, case) if not error else {}),
    }
    return _render(request, "cases/workspace/task_response.html", context)


@login_required
@require_POST
def change_task_status(request: HttpRequest, number: str, task_id: int) -> HttpResponse:
    case = case_or_404(request, number)
    task = _task_or_404(case, task_id)
    error = ""
    try:
        services.task_change_status(
            actor=request.user, task=task, status=request.POST.get("status", "")
        )
    except REFUSALS as exc:
        error = refusal_text(exc)
    return _respond_or_redirect(
        request, case, lambda: _one_task_response(request, case, task, error), error
    )


@login_required
@require_POST
def tick_checklist_item(
    request: HttpRequest, number: str, task_id: int, item_id: int
) -> HttpResponse:
    """Tick or untick one item. The service replaces the whole list, so the task is locked
    while the list is read and written: two agents ticking at once both count."""
    case = case_or_404(request, number)
    done = request.POST.get("done") in {"1", "on", "true"}
    with transaction.atomic():
        task = _task_or_404(case, task_id, lock=True)
        items = list(task.checklist.order_by("position", "pk"))
        if not any(item.pk == item_id for item in items):
            raise Http404("No such checklist item.")
        services.task_set_checklist(
            actor=request.user,
            task=task,
            items=[(item.text, done if item.pk == item_id else item.done) for item in items],
        )
    return _respond_or_redirect(
        request, case, lambda: _one_task_response(request, case, task), None
    )


@login_required
@require_POST
def add_checklist_item(request: HttpRequest, number: str, task_id: int) -> HttpResponse:
    case = case_or_404(request, number)
    text = request.POST.get("text", "").strip()
    error = ""
    with transaction.atomic():
        task = _task_or_404(case, task_id, lock=True)
        items = [(item.text, item.done) for item in task.checklist.order_by("position", "pk")]
        if not text:
            error = "Write what the item is."
        elif len(items) >= MAX_CHECKLIST_ITEMS:
            error = f"A checklist has {MAX_CHECKLIST_ITEMS} items at most."
        else:
            services.task_set_checklist(
                actor=request.user, task=task, items=[*items, (text[:300], False)]
            )
    return _respond_or_redirect(
        request, case, lambda: _one_task_response(request, case, task, error), error
    )


# --- message bodies and attachments ------------------------------------------------------------


def case_message_or_404(case: Case, message_id: int) -> CaseMessage:
    link = selectors.case_messages(case=case).filter(message_id=message_id).first()
    if link is None:
        raise Http404("No such message in this case.")
    return link


def body_policy(*, remote_images: bool) -> dict[str, list]:
    """The CSP of a message body: nothing runs, nothing is fetched but its own attachments
    (and remote images once the agent asked), and only the workspace may frame it."""
    images = [SELF, "data:"] + (["https:", "http:"] if remote_images else [])
    return {
        "default-src": [NONE],
        "style-src": [UNSAFE_INLINE],
        "img-src": images,
        "form-action": [NONE],
        "base-uri": [NONE],
        "frame-ancestors": [SELF],
        "sandbox": ["allow-same-origin", "allow-popups", "allow-popups-to-escape-sandbox"],
    }


def _with_policy(response: HttpResponseBase, policy: dict[str, list]) -> HttpResponseBase:
    """Give one response its own CSP through django-csp's decorator (the policy differs per
    request, so the decorator is applied here rather than on the view)."""
    return csp(policy)(lambda: response)()


@login_required
@require_GET
@xframe_options_sameorigin
def message_body(request: HttpRequest, number: str, message_id: int) -> HttpResponseBase:
    case = case_or_404(request, number)
    message = case_message_or_404(case, message_id).message
    remote_images = request.GET.get("images") == "1"
    inline = _inline_attachments(message)

    def inline_image_url(content_id: str) -> str | None:
        attachment = inline.get(content_id.lower())
        if attachment is None:
            return None
        return reverse(
            "web:case-attachment-inline",
            kwargs={
                "number": case.number,
                "message_id": message.pk,
                "attachment_id": attachment.pk,
            },
        )

    body = message_document(message, remote_images=remote_images, inline_image_url=inline_image_url)
    response = _render(request, "cases/workspace/message_body.html", {"body": body})
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "private, no-store"
    return _with_policy(response, body_policy(remote_images=remote_images))


def _safe_filename(name: str) -> str:
    """A filename for Content-Disposition: no control characters or path separators."""
    cleaned = "".join(
        " " if unicodedata.category(ch).startswith("C") or ch in "/\\" else ch for ch in name
    ).strip(" .")
    return cleaned[:200] or "attachment"


def _serve_attachment(
    request: HttpRequest, number: str, message_id: int, attachment_id: int, *, inline: bool
) -> HttpResponseBase:
    case = case_or_404(request, number)
    attachment = (
        Attachment.objects.filter(
            pk=attachment_id, message_id=message_id, message__case_link__case=case
        )
        .select_related("message__mailbox")
        .first()
    )
    if attachment is None:
        raise Http404("No such attachment.")
    try:
        attachment = attachment_content_ensure(attachment=attachment)
        content = attachment.content.open("rb")
    except REFUSALS as exc:
        return _render(
            request,
            "cases/workspace/attachment_unavailable.html",
            {"case": case, "error": refusal_text(exc), "area": "queues"},
            status=502,
        )
    except OSError:
        return _render(
            request,
            "cases/workspace/attachment_unavailable.html",
            {"case": case, "error": "The file is missing from storage.", "area": "queues"},
            status=404,
        )
    content_type = attachment.served_content_type()
    show_inline = inline and content_type in INLINE_IMAGE_TYPES
    response = FileResponse(
        content,
        as_attachment=not show_inline,
        filename=_safe_filename(attachment.name),
        content_type=content_type if show_inline else "application/octet-stream",
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, max-age=3600"
    return _with_policy(response, ATTACHMENT_POLICY)


@login_required
@require_GET
def attachment_download(
    request: HttpRequest, number: str, message_id: int, attachment_id: int
) -> HttpResponseBase:
    return _serve_attachment(request, number, message_id, attachment_id, inline=False)


@login_required
@require_GET
def attachment_inline(
    request: HttpRequest, number: str, message_id: int, attachment_id: int
) -> HttpResponseBase:
    """An inline image of a message body, shown in its iframe (raster images only)."""
    return _serve_attachment(request, number, message_id, attachment_id, inline=True)


CASE = "cases/<str:number>/"
MESSAGE = CASE + "messages/<int:message_id>/"
TASK = CASE + "tasks/<int:task_id>/"

urlpatterns = [
    path(CASE, case_detail, name="case"),
    path(CASE + "fields/<slug:field>", edit_field, name="case-field"),
    path(CASE + "assign-to-me", assign_to_me, name="case-assign-to-me"),
    path(CASE + "notes", add_note, name="case-note-add"),
    path(CASE + "tasks", add_task, name="case-task-add"),
    path(TASK + "status", change_task_status, name="case-task-status"),
    path(TASK + "checklist", add_checklist_item, name="case-checklist-add"),
    path(TASK + "checklist/<int:item_id>", tick_checklist_item, name="case-checklist-tick"),
    path(MESSAGE + "body", message_body, name="case-message-body"),
    path(
        MESSAGE + "attachments/<int:attachment_id>",
        attachment_download,
        name="case-attachment",
    ),
    path(
        MESSAGE + "attachments/<int:attachment_id>/inline",
        attachment_inline,
        name="case-attachment-inline",
    ),
]
