"""The tasks board: the tasks an agent can see in one column per status, dragged (or moved with
a status menu, for the keyboard) from one column to another; and "make a task" from a message
of a case.

What an agent sees and changes is what the task list and the API let them: the tasks come from
`selectors.task_list`, statuses change through `services.task_change_status` (which says no to
a transition it does not allow, and the card goes back to where it was), and a task made from
a message goes through `services.task_from_message` on a case the agent can see.

Layout and choices:

- A column shows at most `COLUMN_LIMIT` cards and counts all of its tasks; "more…" leads to
  the task list, which pages. The board costs one query per column plus one for the counts,
  whatever the number of tasks (checklist progress is counted in the column's query).
- Closed tasks pile up for ever, so the closed column shows those closed in the last
  `CLOSED_DAYS` days; older ones are in the task list's "Done" view.
- The status endpoint answers with the card, redrawn from the database: board.js puts it in
  the column its status names, which is how a refused move goes back (with the reason on
  it). Without JavaScript the card's menu is a plain form that comes back to the board.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, F, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from cases import selectors, services
from cases.choices import OPEN_TASK_STATUSES, TASK_TRANSITIONS, TaskStatus
from cases.models import Case, Task
from cases.web.directory import (
    TaskFilters,
    active_agents,
    filter_tasks,
    prepare_task_rows,
    safe_next,
    status_label,
    valid_filters,
)
from cases.web.workspace import (
    REFUSALS,
    active_user,
    case_message_or_404,
    case_or_404,
    refusal_text,
    tasks_context,
    timeline_context,
)
from crm import selectors as crm_selectors
from crm.models import User
from crm.selectors import agent_timezone

COLUMN_LIMIT = 25
CLOSED_DAYS = 7


# --- which tasks ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BoardScope:
    """Whose tasks the board shows, and the task list view that shows the same ones."""

    label: str
    list_view: str
    narrow: Callable[[QuerySet[Task], User], QuerySet[Task]]


BOARD_SCOPES: dict[str, BoardScope] = {
    "mine": BoardScope("Mine", "mine", lambda tasks, user: tasks.filter(assignee=user)),
    "teams": BoardScope(
        "My teams",
        "teams",
        lambda tasks, user: tasks.filter(case__team_id__in=crm_selectors.user_team_ids(user)),
    ),
    "all": BoardScope("All I can see", "open", lambda tasks, user: tasks),
}


class BoardFilterForm(TaskFilters):
    field_order = ["view", "assignee", "priority", "due_from", "due_to", "overdue"]

    view = forms.ChoiceField(
        required=False,
        choices=[(k, v.label) for k, v in BOARD_SCOPES.items()],
        widget=forms.HiddenInput,
    )
    overdue = forms.BooleanField(required=False, label="Overdue only")


def chosen_scope(request: HttpRequest) -> str:
    scope = request.GET.get("view", "")
    return scope if scope in BOARD_SCOPES else "mine"


def board_tasks(*, user: User, scope: str, filters: dict, tz: zoneinfo.ZoneInfo) -> QuerySet[Task]:
    """The tasks of the board before they are split by status: visible, scoped, filtered, and
    closed ones only when recent."""
    tasks = BOARD_SCOPES[scope].narrow(selectors.task_list(user=user), user)
    recent = timezone.now() - timedelta(days=CLOSED_DAYS)
    tasks = tasks.exclude(status=TaskStatus.CLOSED, completed_at__lt=recent)
    tasks = tasks.exclude(status=TaskStatus.CLOSED, completed_at__isnull=True)
    tasks = filter_tasks(tasks, user=user, filters=filters, tz=tz)
    if filters.get("overdue"):
        tasks = tasks.filter(status__in=OPEN_TASK_STATUSES, due_at__lt=timezone.now())
    return tasks


def with_card_data(tasks: QuerySet[Task]) -> QuerySet[Task]:
    """What a card shows, in the column's own query: case, assignee, checklist progress."""
    return tasks.select_related("case", "assignee").annotate(
        checklist_total=Count("checklist"),
        checklist_done=Count("checklist", filter=Q(checklist__done=True)),
    )


def column_order(status: str) -> tuple:
    """Open work by what is due first; finished work by what finished last."""
    if status in OPEN_TASK_STATUSES:
        return (F("due_at").asc(nulls_last=True), "pk")
    return (F("completed_at").desc(nulls_last=True), "-pk")


def prepare_cards(tasks: list[Task], *, now) -> list[Task]:
    """Give each card what its template needs without a query: its menu of statuses (those
    the task may move to from where it is), its link, whether it is overdue."""
    prepare_task_rows(tasks)
    for task in tasks:
        task.allowed_moves = " ".join(sorted(TASK_TRANSITIONS[task.status]))
        task.overdue = bool(task.due_at and task.due_at < now and task.status in OPEN_TASK_STATUSES)
    return tasks


def more_url(*, scope: str, status: str, filters: dict) -> str:
    """The task list with the same tasks of one status (it pages where the board stops)."""
    done = status not in OPEN_TASK_STATUSES
    query = {"view": "done" if done else BOARD_SCOPES[scope].list_view, "status": status}
    if done and scope == "mine" and not filters.get("assignee"):
        query["assignee"] = "me"
    for name in ("assignee", "priority", "due_from", "due_to"):
        if filters.get(name):
            query[name] = str(filters[name])
    return f"{reverse('web:tasks')}?{urlencode(query)}"


def board_columns(*, tasks: QuerySet[Task], scope: str, filters: dict) -> list[dict]:
    """The columns, each with its first `COLUMN_LIMIT` cards and its count: one query for the
    counts and one per column, however many tasks there are."""
    counts = dict(tasks.order_by().values_list("status").annotate(n=Count("pk")))
    now = timezone.now()
    columns = []
    for status, label in TaskStatus.choices:
        cards = list(
            with_card_data(tasks.filter(status=status)).order_by(*column_order(status))[
                :COLUMN_LIMIT
            ]
        )
        count = counts.get(status, 0)
        columns.append(
            {
                "status": status,
                "label": label,
                "cards": prepare_cards(cards, now=now),
                "count": count,
                "more": count - len(cards),
                "more_url": more_url(scope=scope, status=status, filters=filters),
                "note": f"last {CLOSED_DAYS} days" if status == TaskStatus.CLOSED else "",
            }
        )
    return columns


# --- the board ------------------------------------------------------------------------------


@login_required
@require_GET
def task_board(request: HttpRequest) -> HttpResponse:
    scope = chosen_scope(request)
    form = BoardFilterForm(request.GET, agents=active_agents())
    filters = valid_filters(form)
    tz = agent_timezone(request.user)
    tasks = board_tasks(user=request.user, scope=scope, filters=filters, tz=tz)
    context = {
        "area": "tasks",
        "form": form,
        "scope": scope,
        "scopes": [(name, s.label) for name, s in BOARD_SCOPES.items()],
        "list_url": f"{reverse('web:tasks')}?view={BOARD_SCOPES[scope].list_view}",
        "columns": board_columns(tasks=tasks, scope=scope, filters=filters),
        "tz": tz,
        "back": request.get_full_path(),
    }
    return render(request, "cases/board/board.html", context)


def card_or_404(user: User, pk: int) -> Task:
    task = with_card_data(selectors.task_list(user=user)).filter(pk=pk).first()
    if task is None:
        raise Http404("No such task.")
    return task


@login_required
@require_POST
def task_board_status(request: HttpRequest, pk: int) -> HttpResponse:
    """Move a card: the answer is the card as it now is, with the reason when the move was
    refused (a 200 like every htmx answer here: the card's own status tells board.js where it
    belongs); a plain form post comes back to the board."""
    task = card_or_404(request.user, pk)
    error = ""
    try:
        services.task_change_status(
            actor=request.user, task=task, status=request.POST.get("status", "")
        )
    except REFUSALS as exc:
        error = refusal_text(exc)
    if not request.htmx:
        if error:
            messages.error(request, error)
        else:
            messages.success(request, f"“{task.subject}” is now {status_label(task.status)}.")
        return redirect(safe_next(request))
    task = prepare_cards([card_or_404(request.user, pk)], now=timezone.now())[0]
    context = {"task": task, "error": error, "back": request.POST.get("next", "")}
    return render(request, "cases/board/card.html", context)


# --- a task from a message ------------------------------------------------------------------


def _message_task_response(request: HttpRequest, case: Case, task: Task) -> HttpResponse:
    context = {
        "case": case,
        "made": task,
        **tasks_context(case),
        **timeline_context(request, case),
    }
    return render(request, "cases/board/message_task_response.html", context)


@login_required
@require_POST
def task_from_message(request: HttpRequest, number: str, message_id: int) -> HttpResponse:
    """ "Make a task" on a message: the task lands on the message's case (one the agent can
    see), the case's task panel and timeline are redrawn, and the message says so."""
    case = case_or_404(request, number)
    link = case_message_or_404(case, message_id)
    raw = request.POST.get("assignee", "")
    try:
        assignee = request.user if raw == "me" else active_user(raw)
        task = services.task_from_message(
            actor=request.user, message=link.message, assignee=assignee
        )
    except REFUSALS as exc:
        error = refusal_text(exc)
        if not request.htmx:
            messages.error(request, error)
            return redirect("web:case", number=case.number)
        # htmx swaps only a 2xx answer: the reason goes into the message's note slot.
        return render(request, "cases/workspace/form_error.html", {"error": error})
    if not request.htmx:
        messages.success(request, f"Task “{task.subject}” added to {case.number}.")
        return redirect("web:case", number=case.number)
    return _message_task_response(request, case, task)


urlpatterns = [
    path("tasks/board", task_board, name="task-board"),
    path("tasks/board/<int:pk>/status", task_board_status, name="task-board-status"),
    path(
        "cases/<str:number>/messages/<int:message_id>/task",
        task_from_message,
        name="case-message-task",
    ),
]
