"""Customers, organizations and tasks: lists and detail pages.

Lists page by keyset (the sort values of the row a page ends on, in a signed cursor), never by
offset: page 400 costs what page 1 does, and rows that arrive meanwhile do not shift the page
under the agent. Per-row counts (open cases, customers) come from one grouped query for the
rows of the page, so a page costs the same number of queries whatever its length.

What an agent may see and change is what the API lets them: the same selectors
(`customer_list`, `organization_list`, `case_list`, `task_list`) and the same services.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import (
    BooleanField,
    Count,
    ExpressionWrapper,
    FloatField,
    Prefetch,
    Q,
    QuerySet,
)
from django.db.models.functions import Cast
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from cases import selectors, services
from cases.choices import (
    OPEN_CASE_STATUSES,
    OPEN_TASK_STATUSES,
    TASK_TRANSITIONS,
    OrganizationTier,
    Priority,
    TaskStatus,
)
from cases.models import Case, Customer, CustomerEmail, Organization, OrganizationDomain, Task
from cases.web.keyset import Key, Keyset, first_page_url, paginate
from crm import selectors as crm_selectors
from crm.errors import ServiceError
from crm.models import User
from crm.selectors import agent_timezone

PAGE_SIZE = 50
DETAIL_PAGE_SIZE = 25
SUGGESTIONS = 15
DONE_TASK_STATUSES = (TaskStatus.RESOLVED, TaskStatus.CLOSED)


# --- shared -------------------------------------------------------------------------------


def open_case_counts(user: User, *, field: str, ids: Iterable[int]) -> dict[int, int]:
    """Open cases the agent can see, per customer or organization id, in one grouped query."""
    ids = list(ids)
    if not ids:
        return {}
    rows = (
        selectors.case_list(user=user)
        .filter(**{f"{field}__in": ids}, status__in=OPEN_CASE_STATUSES, merged_into__isnull=True)
        .order_by()
        .values_list(field)
        .annotate(n=Count("pk"))
    )
    return dict(rows)


def visible_cases(user: User, **where: object) -> QuerySet[Case]:
    """Cases the agent can see, open ones marked so the list can put them first."""
    is_open = ExpressionWrapper(Q(status__in=OPEN_CASE_STATUSES), output_field=BooleanField())
    return (
        selectors.case_list(user=user)
        .filter(merged_into__isnull=True, **where)
        .annotate(open_first=is_open)
        .select_related("team", "assignee")
    )


CASES_OPEN_FIRST = Keyset(
    "cases",
    (
        Key("open_first", descending=True),
        Key("created_at", descending=True),
        Key("pk", descending=True),
    ),
    size=DETAIL_PAGE_SIZE,
)


def valid_filters(form: forms.Form) -> dict:
    """The filters that are valid: a bad value is reported on the page and left out, while
    the others still apply."""
    form.is_valid()
    return form.cleaned_data


def show_service_error(form: forms.Form, error: ServiceError | ValidationError) -> None:
    """A service's refusal becomes an error on the field it names (or on the whole form)."""
    if isinstance(error, ValidationError):
        for field, errors in error.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
        return
    form.add_error(error.field if error.field in form.fields else None, error.message)


class PlainForm(forms.Form):
    """Labels without Django's trailing colon, as everywhere else in the product."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


# --- customers ----------------------------------------------------------------------------

VIP_CHOICES = [("", "Anyone"), ("yes", "VIP only"), ("no", "Not VIP")]


class CustomerFilterForm(PlainForm):
    q = forms.CharField(required=False, max_length=200, label="Search")
    org = forms.CharField(required=False, max_length=200, label="Organization")
    organization = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    vip = forms.ChoiceField(required=False, choices=VIP_CHOICES, label="VIP")


CUSTOMERS_BY_NAME = Keyset("customers", (Key("name"), Key("pk")))
CUSTOMERS_BY_RELEVANCE = Keyset(
    "customers-search", (Key("relevance", descending=True), Key("name"), Key("pk"))
)


def ranked(customers: QuerySet[Customer]) -> tuple[QuerySet[Customer], Keyset]:
    """Search results best match first (when the database ranks them); otherwise by name.

    The rank is PostgreSQL's `real` similarity widened to double precision: a `real` comes
    back as a rounded decimal that no longer equals itself in the next page's comparison.
    """
    if "similarity" not in customers.query.annotations:
        return customers, CUSTOMERS_BY_NAME
    return customers.annotate(relevance=Cast("similarity", FloatField())), CUSTOMERS_BY_RELEVANCE


def customers_matching(user: User, filters: dict) -> QuerySet[Customer]:
    query = (filters.get("q") or "").strip()
    customers = (
        selectors.customer_search(user=user, query=query)
        if query
        else selectors.customer_list(user=user)
    )
    if filters.get("organization"):
        customers = customers.filter(organization_id=filters["organization"])
    if filters.get("org"):
        customers = customers.filter(organization__name__icontains=filters["org"].strip())
    if filters.get("vip"):
        customers = customers.filter(is_vip=filters["vip"] == "yes")
    return customers.select_related("organization").prefetch_related(
        Prefetch("emails", queryset=CustomerEmail.objects.order_by("-is_primary", "email"))
    )


def with_open_case_counts(user: User, rows: list, *, field: str) -> list:
    counts = open_case_counts(user, field=field, ids=(row.pk for row in rows))
    for row in rows:
        row.open_cases = counts.get(row.pk, 0)
    return rows


@login_required
@require_GET
def customers(request: HttpRequest) -> HttpResponse:
    form = CustomerFilterForm(request.GET)
    filters = valid_filters(form)
    rows, keyset = ranked(customers_matching(request.user, filters))
    pager = paginate(request, keyset, rows)
    with_open_case_counts(request.user, pager.rows, field="customer_id")
    organization = None
    if filters.get("organization"):
        organization = (
            selectors.organization_list(user=request.user)
            .filter(pk=filters["organization"])
            .first()
        )
    context = {
        "area": "customers",
        "form": form,
        "pager": pager,
        "organization": organization,
        "without_organization_url": first_page_url(request, "organization"),
    }
    return render(request, "cases/directory/customer_list.html", context)


class CustomerForm(PlainForm):
    """The basic fields of a customer; the organization is named (names are unique)."""

    name = forms.CharField(max_length=200)
    organization = forms.CharField(
        required=False,
        max_length=200,
        help_text="Type to pick one; leave empty for none.",
    )
    is_vip = forms.BooleanField(required=False, label="VIP")
    notes = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 4}))

    def __init__(self, *args: object, organizations: QuerySet[Organization], **kwargs: object):
        super().__init__(*args, **kwargs)
        self.organizations = organizations

    def clean_notes(self) -> str:
        """Browsers send a textarea's lines with CRLF; store them as the API does."""
        return self.cleaned_data["notes"].replace("\r\n", "\n")

    def clean_organization(self) -> Organization | None:
        name = self.cleaned_data["organization"].strip()
        if not name:
            return None
        organization = self.organizations.filter(name__iexact=name).first()
        if organization is None:
            raise ValidationError(f"There is no organization named “{name}”.")
        return organization


def customer_or_404(user: User, pk: int) -> Customer:
    customer = (
        selectors.customer_list(user=user)
        .select_related("organization")
        .prefetch_related("emails", "phones")
        .filter(pk=pk)
        .first()
    )
    if customer is None:
        raise Http404("No such customer.")
    return customer


def customer_initial(customer: Customer) -> dict:
    return {
        "name": customer.name,
        "organization": customer.organization.name if customer.organization else "",
        "is_vip": customer.is_vip,
        "notes": customer.notes,
    }


@login_required
@require_http_methods(["GET", "POST"])
def customer_detail(request: HttpRequest, pk: int) -> HttpResponse:
    customer = customer_or_404(request.user, pk)
    organizations = selectors.organization_list(user=request.user)
    if request.method == "POST":
        form = CustomerForm(request.POST, organizations=organizations)
        if form.is_valid() and customer_saved(customer, form):
            messages.success(request, f"Saved {customer.name}.")
            return redirect("web:customer", pk=customer.pk)
        customer = customer_or_404(request.user, pk)
    else:
        form = CustomerForm(initial=customer_initial(customer), organizations=organizations)
    cases = paginate(
        request, CASES_OPEN_FIRST, visible_cases(request.user, customer=customer), "cases"
    )
    context = {
        "area": "customers",
        "customer": customer,
        "form": form,
        "cases": cases,
        "tz": agent_timezone(request.user),
    }
    status = 400 if form.is_bound else 200
    return render(request, "cases/directory/customer_detail.html", context, status=status)


def customer_saved(customer: Customer, form: CustomerForm) -> bool:
    """Apply the form through `customer_update`; a refusal lands on the form."""
    try:
        services.customer_update(customer=customer, **form.cleaned_data)
    except (ServiceError, ValidationError) as error:
        show_service_error(form, error)
        return False
    return True


@login_required
@require_GET
def organization_suggestions(request: HttpRequest) -> HttpResponse:
    """`<option>`s for the organization field's datalist, as the agent types."""
    term = request.GET.get("organization", "").strip()[:200]
    names = []
    if term:
        names = list(
            selectors.organization_list(user=request.user)
            .filter(name__icontains=term)
            .order_by("name")
            .values_list("name", flat=True)[:SUGGESTIONS]
        )
    return render(request, "cases/directory/_organization_options.html", {"names": names})


# --- organizations ------------------------------------------------------------------------

TIER_CHOICES = [("", "Any tier"), *OrganizationTier.choices]
ORGANIZATIONS = Keyset("organizations", (Key("name"), Key("pk")))
ORGANIZATION_CUSTOMERS = Keyset(
    "organization-customers", (Key("name"), Key("pk")), DETAIL_PAGE_SIZE
)


class OrganizationFilterForm(PlainForm):
    q = forms.CharField(required=False, max_length=200, label="Search")
    tier = forms.ChoiceField(required=False, choices=TIER_CHOICES)


def organizations_matching(user: User, filters: dict) -> QuerySet[Organization]:
    """Every word must appear in the name or one of the domains."""
    organizations = selectors.organization_list(user=user)
    for term in (filters.get("q") or "").split():
        by_domain = OrganizationDomain.objects.filter(domain__icontains=term)
        organizations = organizations.filter(
            Q(name__icontains=term) | Q(pk__in=by_domain.values("organization_id"))
        )
    if filters.get("tier"):
        organizations = organizations.filter(tier=filters["tier"])
    return organizations.prefetch_related("domains")


def with_customer_counts(user: User, rows: list) -> list:
    counts = dict(
        selectors.customer_list(user=user)
        .filter(organization_id__in=[row.pk for row in rows])
        .order_by()
        .values_list("organization_id")
        .annotate(n=Count("pk"))
    )
    for row in rows:
        row.customer_count = counts.get(row.pk, 0)
    return rows


@login_required
@require_GET
def organizations(request: HttpRequest) -> HttpResponse:
    form = OrganizationFilterForm(request.GET)
    filters = valid_filters(form)
    pager = paginate(request, ORGANIZATIONS, organizations_matching(request.user, filters))
    if pager.rows:
        with_customer_counts(request.user, pager.rows)
        with_open_case_counts(request.user, pager.rows, field="organization_id")
    context = {"area": "organizations", "form": form, "pager": pager}
    return render(request, "cases/directory/organization_list.html", context)


@login_required
@require_GET
def organization_detail(request: HttpRequest, pk: int) -> HttpResponse:
    organization = (
        selectors.organization_list(user=request.user)
        .prefetch_related("domains")
        .filter(pk=pk)
        .first()
    )
    if organization is None:
        raise Http404("No such organization.")
    people = (
        selectors.customer_list(user=request.user)
        .filter(organization=organization)
        .prefetch_related("emails")
    )
    customers_pager = paginate(request, ORGANIZATION_CUSTOMERS, people, "customers")
    with_open_case_counts(request.user, customers_pager.rows, field="customer_id")
    cases = visible_cases(request.user, organization=organization).select_related("customer")
    context = {
        "area": "organizations",
        "organization": organization,
        "customers": customers_pager,
        "cases": paginate(request, CASES_OPEN_FIRST, cases, "cases"),
        "customers_url": f"{reverse('web:customers')}?organization={organization.pk}",
        "tz": agent_timezone(request.user),
    }
    return render(request, "cases/directory/organization_detail.html", context)


# --- tasks --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskView:
    """A built-in task list: whose tasks, in which statuses, in which order by default."""

    label: str
    statuses: tuple[str, ...]
    scope: Callable[[QuerySet[Task], User], QuerySet[Task]]
    sort: str = "due"


TASK_VIEWS: dict[str, TaskView] = {
    "mine": TaskView("Mine", OPEN_TASK_STATUSES, lambda tasks, user: tasks.filter(assignee=user)),
    "teams": TaskView(
        "My teams",
        OPEN_TASK_STATUSES,
        lambda tasks, user: tasks.filter(case__team_id__in=crm_selectors.user_team_ids(user)),
    ),
    "overdue": TaskView(
        "Overdue", OPEN_TASK_STATUSES, lambda tasks, user: tasks.filter(due_at__lt=timezone.now())
    ),
    "open": TaskView("All open", OPEN_TASK_STATUSES, lambda tasks, user: tasks),
    "done": TaskView("Done", DONE_TASK_STATUSES, lambda tasks, user: tasks, sort="-updated"),
}

TASK_SORTS: dict[str, tuple[str, Keyset]] = {
    "due": (
        "Due date, soonest first",
        Keyset("tasks-due", (Key("due_at", nullable=True), Key("pk"))),
    ),
    "-due": (
        "Due date, latest first",
        Keyset(
            "tasks-due-desc",
            (Key("due_at", descending=True, nullable=True), Key("pk", descending=True)),
        ),
    ),
    "-updated": (
        "Recently updated",
        Keyset("tasks-updated", (Key("updated_at", descending=True), Key("pk", descending=True))),
    ),
}


def status_label(value: str) -> str:
    return TaskStatus(value).label


class TaskFilters(PlainForm):
    """The filters the task list and the board share: priority, assignee, due range."""

    priority = forms.ChoiceField(required=False, choices=[("", "Any priority"), *Priority.choices])
    assignee = forms.ChoiceField(required=False)
    due_from = forms.DateField(
        required=False, label="Due from", widget=forms.DateInput(attrs={"type": "date"})
    )
    due_to = forms.DateField(
        required=False, label="Due until", widget=forms.DateInput(attrs={"type": "date"})
    )

    def __init__(self, *args: object, agents: Iterable[User], **kwargs: object):
        super().__init__(*args, **kwargs)
        people = [(str(agent.pk), agent.get_full_name() or agent.email) for agent in agents]
        self.fields["assignee"].choices = [
            ("", "Anyone"),
            ("me", "Me"),
            ("none", "Unassigned"),
            *people,
        ]

    def clean(self) -> dict:
        data = super().clean()
        start, end = data.get("due_from"), data.get("due_to")
        if start and end and start > end:
            self.add_error("due_to", "The end of the due range is before its start.")
        return data


class TaskFilterForm(TaskFilters):
    field_order = ["view", "status", "priority", "assignee", "due_from", "due_to", "sort"]

    view = forms.ChoiceField(
        required=False,
        choices=[(k, v.label) for k, v in TASK_VIEWS.items()],
        widget=forms.HiddenInput,
    )
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *TaskStatus.choices])
    sort = forms.ChoiceField(
        required=False, choices=[(k, label) for k, (label, _) in TASK_SORTS.items()]
    )

    def __init__(self, *args: object, agents: Iterable[User], view: str, **kwargs: object):
        super().__init__(*args, agents=agents, **kwargs)
        statuses = TASK_VIEWS[view].statuses
        self.fields["status"].choices = [("", "Any status")] + [
            (value, status_label(value)) for value in statuses
        ]


def filter_tasks(
    tasks: QuerySet[Task], *, user: User, filters: dict, tz: zoneinfo.ZoneInfo
) -> QuerySet[Task]:
    """Apply the shared filters (`TaskFilters`' cleaned data); due days in the agent's zone."""
    if filters.get("priority"):
        tasks = tasks.filter(priority=filters["priority"])
    assignee = filters.get("assignee")
    if assignee == "me":
        tasks = tasks.filter(assignee=user)
    elif assignee == "none":
        tasks = tasks.filter(assignee__isnull=True)
    elif assignee:
        tasks = tasks.filter(assignee_id=int(assignee))
    if filters.get("due_from"):
        tasks = tasks.filter(due_at__gte=start_of_day(filters["due_from"], tz))
    if filters.get("due_to"):
        tasks = tasks.filter(due_at__lt=start_of_day(filters["due_to"] + timedelta(days=1), tz))
    return tasks


def chosen_view(request: HttpRequest) -> str:
    view = request.GET.get("view", "")
    return view if view in TASK_VIEWS else "mine"


def start_of_day(day: date, tz: zoneinfo.ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=tz)


def tasks_matching(user: User, view: TaskView, filters: dict, tz: zoneinfo.ZoneInfo) -> QuerySet:
    tasks = view.scope(selectors.task_list(user=user), user)
    status = filters.get("status")
    tasks = tasks.filter(status__in=[status] if status else view.statuses)
    tasks = filter_tasks(tasks, user=user, filters=filters, tz=tz)
    return tasks.select_related("case", "assignee")


def prepare_task_rows(tasks: Iterable[Task]) -> None:
    """Give each row its link and the statuses the task may move to from where it is (the
    quick-change menu offers only those)."""
    for task in tasks:
        allowed = {task.status, *TASK_TRANSITIONS[task.status]}
        task.status_choices = [(v, label) for v, label in TaskStatus.choices if v in allowed]
        task.case_url = reverse("web:case", args=[task.case.number]) if task.case_id else ""


def task_row_context(request: HttpRequest, task: Task, error: str = "") -> dict:
    return {
        "task": task,
        "error": error,
        "now": timezone.now(),
        "open_statuses": OPEN_TASK_STATUSES,
        "tz": agent_timezone(request.user),
        "back": request.get_full_path(),
    }


def active_agents() -> QuerySet[User]:
    return User.objects.filter(is_active=True).order_by("first_name", "last_name", "email")


@login_required
@require_GET
def tasks(request: HttpRequest) -> HttpResponse:
    view_name = chosen_view(request)
    view = TASK_VIEWS[view_name]
    form = TaskFilterForm(request.GET, agents=active_agents(), view=view_name)
    filters = valid_filters(form)
    tz = agent_timezone(request.user)
    sort = filters.get("sort") or view.sort
    rows = tasks_matching(request.user, view, filters, tz)
    pager = paginate(request, TASK_SORTS[sort][1], rows)
    prepare_task_rows(pager.rows)
    context = {
        "area": "tasks",
        "form": form,
        "pager": pager,
        "views": [(name, v.label) for name, v in TASK_VIEWS.items()],
        "view": view_name,
        "sort": sort,
        "now": timezone.now(),
        "open_statuses": OPEN_TASK_STATUSES,
        "tz": tz,
        "back": request.get_full_path(),
    }
    return render(request, "cases/directory/task_list.html", context)


def task_or_404(user: User, pk: int) -> Task:
    task = selectors.task_list(user=user).select_related("case", "assignee").filter(pk=pk).first()
    if task is None:
        raise Http404("No such task.")
    return task


def safe_next(request: HttpRequest) -> str:
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("web:tasks")


@login_required
@require_POST
def task_status(request: HttpRequest, pk: int) -> HttpResponse:
    """Quick status change from the list: answers htmx with the task's row, redrawn."""
    task = task_or_404(request.user, pk)
    error = ""
    try:
        services.task_change_status(
            actor=request.user, task=task, status=request.POST.get("status", "")
        )
    except ServiceError as exc:
        error = exc.message
    if not request.htmx:
        if error:
            messages.error(request, error)
        else:
            messages.success(request, f"“{task.subject}” is now {status_label(task.status)}.")
        return redirect(safe_next(request))
    task = task_or_404(request.user, pk)
    prepare_task_rows([task])
    context = task_row_context(request, task, error)
    context["back"] = request.POST.get("next", "")
    return render(request, "cases/directory/_task_row.html", context)


urlpatterns = [
    path("customers/", customers, name="customers"),
    path("customers/<int:pk>/", customer_detail, name="customer"),
    path("organizations/", organizations, name="organizations"),
    path("organizations/<int:pk>/", organization_detail, name="organization"),
    path("organizations/suggestions/", organization_suggestions, name="organization_suggestions"),
    path("tasks/", tasks, name="tasks"),
    path("tasks/<int:pk>/status/", task_status, name="task_status"),
]
