"""Case queues: built-in and saved views, filters, search, keyset pages, bulk changes, CSV.

One URL (`/cases/`) with the whole state in its query string, so every queue can be
bookmarked, shared, saved as a view and exported as it is shown. The filters are the API's
(`cases.filters.CaseFilter`) over the same selector (`selectors.case_list`), so the page shows
exactly what the API would. Counts are capped (`COUNT_CAP`): an exact count of a million rows
costs a full scan, and "1,000+" tells an agent all they need.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, QueryDict, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from cases import selectors, services
from cases.choices import CaseStatus, CaseType, Channel, Priority, SlaState
from cases.errors import CaseError
from cases.exports import case_csv_lines, case_export_queryset
from cases.filters import CaseFilter
from cases.models import PRIORITY_RANK, Case, SavedView
from cases.web.keyset import Key, Keyset, paginate
from crm import selectors as crm_selectors
from crm.db import is_postgresql
from crm.errors import ServiceError
from crm.exports import streaming_csv
from crm.models import User

COUNT_CAP = 1000
MAX_BULK = 500
RELEVANCE_WINDOW = 1000


@dataclass(frozen=True)
class View:
    slug: str
    label: str
    shortcut: str


BUILT_IN_VIEWS = [
    View("mine", "Mine", "g m"),
    View("unassigned", "Unassigned", "g u"),
    View("team", "My teams", "g y"),
    View("awaiting", "Awaiting customer", "g w"),
    View("all", "All", "g a"),
]
DEFAULT_VIEW = "mine"
SLA_FILTERABLE = (SlaState.AT_RISK, SlaState.BREACHED, SlaState.PAUSED)


def _newest_first(name: str) -> Keyset:
    return Keyset(f"cases-{name}", (Key("updated_at", descending=True), Key("pk", descending=True)))


SORTS = {
    "updated": ("Recently updated", _newest_first("updated")),
    "oldest": (
        "Least recently updated",
        Keyset("cases-oldest", (Key("updated_at"), Key("pk"))),
    ),
    "priority": (
        "Priority",
        Keyset(
            "cases-priority",
            (
                Key("priority_rank", descending=True),
                Key("updated_at", descending=True),
                Key("pk", descending=True),
            ),
        ),
    ),
    "sla": (
        "SLA deadline",
        Keyset("cases-sla", (Key("sla_due", nullable=True), Key("pk"))),
    ),
    "created": (
        "Newest",
        Keyset("cases-created", (Key("created_at", descending=True), Key("pk", descending=True))),
    ),
    "relevance": (
        "Best match (recent 1,000)",
        Keyset(
            "cases-relevance",
            (
                Key("rank", descending=True),
                Key("similarity", descending=True),
                Key("updated_at", descending=True),
                Key("pk", descending=True),
            ),
        ),
    ),
}

# --- reading the query string -------------------------------------------------------------


def _view_slug(params: QueryDict) -> str:
    slug = params.get("view", "")
    known = {view.slug for view in BUILT_IN_VIEWS}
    if slug in known:
        return slug
    return "" if _has_filters(params) or slug else DEFAULT_VIEW


def _has_filters(params: QueryDict) -> bool:
    ignored = {"view", "cursor", "sort", "saved"}
    return any(value for key, value in params.items() if key not in ignored)


def _filter_data(params: QueryDict, user: User) -> QueryDict:
    """The CaseFilter's data: the view's implied filters plus the explicit ones, with the
    words an agent can type in a URL (`assignee=me`) turned into ids."""
    data = params.copy()
    slug = _view_slug(params)
    if slug == "mine":
        data.setdefault("assignee", str(user.pk))
        data.setdefault("is_open", "true")
    elif slug == "unassigned":
        data.setdefault("unassigned", "true")
        data.setdefault("is_open", "true")
    elif slug == "team":
        data.setdefault("is_open", "true")
    elif slug == "awaiting":
        data.setdefault("status", CaseStatus.AWAITING_CUSTOMER)
    if data.get("assignee") == "me":
        data["assignee"] = str(user.pk)
    if data.get("assignee") == "none":
        data.pop("assignee")
        data["unassigned"] = "true"
    return data


def _sort_key(params: QueryDict, searching: bool) -> str:
    wanted = params.get("sort", "")
    if wanted == "relevance" and not (searching and is_postgresql()):
        wanted = ""
    return wanted if wanted in SORTS else "updated"


def queue_queryset(*, user: User, params: QueryDict) -> tuple[QuerySet[Case], CaseFilter, str]:
    """The cases a queue URL names, for `user`: (queryset, filterset, search query)."""
    query = " ".join(params.get("q", "").split())[:200]
    cases = (
        selectors.case_search(user=user, query=query) if query else selectors.case_list(user=user)
    )
    if _view_slug(params) == "team":
        cases = cases.filter(team_id__in=crm_selectors.user_team_ids(user))
    filterset = CaseFilter(_filter_data(params, user), queryset=cases, request=None)
    filterset.form.fields["team"].queryset = crm_selectors.team_list(user=user)
    filterset.form.fields["assignee"].queryset = _assignable(user)
    return filterset.qs, filterset, query


def _assignable(user: User) -> QuerySet[User]:
    """Agents a queue can filter or bulk-assign by: members of the agent's teams (all teams
    for admins), active ones."""
    agents = User.objects.filter(is_active=True)
    if not crm_selectors.user_is_admin(user):
        agents = agents.filter(memberships__team_id__in=crm_selectors.user_team_ids(user))
    return agents.distinct().order_by("first_name", "last_name", "email")


def capped_count(queryset: QuerySet) -> int:
    """Count at most COUNT_CAP + 1 rows: enough to say "1,000+" without a full scan."""
    return queryset.order_by()[: COUNT_CAP + 1].count()


def _rows_queryset(cases: QuerySet[Case], sort: str) -> QuerySet[Case]:
    cases = cases.select_related("team", "assignee", "customer", "organization").prefetch_related(
        "tags"
    )
    if sort == "priority":
        cases = cases.annotate(priority_rank=PRIORITY_RANK)
    if sort == "relevance":
        # Ranking every match of a broad word across a million cases takes seconds; the
        # best matches among the most recent RELEVANCE_WINDOW are found through the update
        # index and ranked in milliseconds.
        recent = cases.order_by("-updated_at", "-pk").values("pk")[:RELEVANCE_WINDOW]
        cases = cases.filter(pk__in=recent)
    return cases


# --- the page --------------------------------------------------------------------------


@login_required
@require_GET
def queue(request: HttpRequest) -> HttpResponse:
    params = request.GET
    cases, filterset, query = queue_queryset(user=request.user, params=params)
    sort = _sort_key(params, bool(query))
    pager = paginate(request, SORTS[sort][1], _rows_queryset(cases, sort))
    if pager.error:
        messages.error(request, pager.error)
    context = {
        "area": "queues",
        "pager": pager,
        "filterset": filterset,
        "search_query": query,
        "search_terms": _terms(query),
        "sort": sort,
        "sorts": [(key, label) for key, (label, _) in SORTS.items() if key != "relevance" or query],
        "view_slug": _view_slug(params),
        "views": BUILT_IN_VIEWS,
        "saved_views": SavedView.objects.filter(owner=request.user),
        "current_query": _query_string(params, drop={"cursor"}),
        "choices": _choices(request.user),
        "title": _title(params, query),
    }
    # htmx asks for the results only; the head, the saved-view form and the title follow
    # out of band, so the count and the export link match the new filters.
    partial = bool(request.htmx) and not request.htmx.boosted
    context["oob"] = partial
    template = "cases/queue/results.html" if partial else "cases/queue/page.html"
    return render(request, template, context)


def _title(params: QueryDict, query: str) -> str:
    if query:
        return f"Search: {query}"
    slug = _view_slug(params)
    label = next((view.label for view in BUILT_IN_VIEWS if view.slug == slug), "")
    return f"Cases · {label}" if label else "Cases"


def _terms(query: str) -> list[str]:
    """Words of the search to mark in titles: quoted phrases and operators left out."""
    words = re.findall(r"[\w@.+-]{2,}", query)
    return [word for word in words if word.lower() not in {"or", "and", "not"}][:10]


def _query_string(params: QueryDict, *, drop: set[str] = frozenset(), **extra: str) -> str:
    pairs = [(key, value) for key, values in params.lists() if key not in drop for value in values]
    pairs += [(key, value) for key, value in extra.items() if value]
    return urlencode(pairs)


def _choices(user: User) -> dict[str, object]:
    return {
        "statuses": CaseStatus.choices,
        "priorities": Priority.choices,
        "sla_states": [(s, label) for s, label in SlaState.choices if s in SLA_FILTERABLE],
        "types": CaseType.choices,
        "channels": Channel.choices,
        "teams": list(crm_selectors.team_list(user=user).order_by("name")),
        "agents": list(_assignable(user)),
    }


@login_required
@require_GET
def view_counts(request: HttpRequest) -> HttpResponse:
    """The built-in views' counts, capped; loaded after the page so they never slow it."""
    counts = {}
    for view in BUILT_IN_VIEWS:
        cases, _, _ = queue_queryset(user=request.user, params=QueryDict(f"view={view.slug}"))
        counts[view.slug] = capped_count(cases)
    return render(
        request,
        "cases/queue/counts.html",
        {"counts": counts, "cap": COUNT_CAP, "views": BUILT_IN_VIEWS},
    )


@login_required
@require_GET
def result_count(request: HttpRequest) -> HttpResponse:
    cases, _, _ = queue_queryset(user=request.user, params=request.GET)
    return render(
        request, "cases/queue/count.html", {"count": capped_count(cases), "cap": COUNT_CAP}
    )


def queue_neighbours(*, user: User, query_string: str, case: Case) -> tuple[str, str]:
    """Numbers of the cases before and after `case` in the queue `query_string` names ("" at
    either end), for the workspace's previous/next links."""
    params = QueryDict(query_string)
    cases, _, query = queue_queryset(user=user, params=params)
    sort = _sort_key(params, bool(query))
    rows = _rows_queryset(cases, sort).prefetch_related(None).select_related(None)
    before, after = SORTS[sort][1].neighbours(
        rows.only("pk", "number", "updated_at", "created_at"), case.pk
    )
    return (before.number if before else "", after.number if after else "")


# --- export --------------------------------------------------------------------------------


@login_required
@require_GET
def export_csv(request: HttpRequest) -> StreamingHttpResponse:
    """Every case of the queue as shown (all pages), streamed."""
    cases, _, query = queue_queryset(user=request.user, params=request.GET)
    sort = _sort_key(request.GET, bool(query))
    keys = SORTS[sort][1].keys
    cases = _rows_queryset(cases, sort).order_by(*(key.order(reverse=False) for key in keys))
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    lines = case_csv_lines(case_export_queryset(cases))
    return streaming_csv(request, lines, filename=f"cases-{stamp}.csv")


# --- bulk changes ------------------------------------------------------------------------


@login_required
@require_POST
def bulk(request: HttpRequest) -> HttpResponse:
    """Assign, change status or add a tag on the ticked cases, each case on its own: one
    refused change (a transition the case cannot make) does not undo the others."""
    back = _back(request)
    ids = _ids(request.POST.getlist("ids"))
    if not ids:
        messages.error(request, "Tick the cases to change first.")
        return redirect(back)
    if len(ids) > MAX_BULK:
        messages.error(request, f"Change at most {MAX_BULK} cases at once.")
        return redirect(back)
    try:
        change, describe = _bulk_change(request)
    except CaseError as exc:
        messages.error(request, exc.message)
        return redirect(back)
    cases = (
        selectors.case_list(user=request.user).filter(pk__in=ids).select_related("team", "assignee")
    )
    done, failed = [], []
    for case in cases.order_by("pk"):
        try:
            with transaction.atomic():
                change(case)
        except ServiceError as exc:
            failed.append(f"{case.number}: {exc.message}")
        else:
            done.append(case.number)
    missing = len(ids) - len(done) - len(failed)
    if done:
        messages.success(request, f"{describe} on {len(done)} case{'s' if len(done) != 1 else ''}.")
    for failure in failed[:10]:
        messages.error(request, failure)
    if len(failed) > 10:
        messages.error(request, f"…and {len(failed) - 10} more not changed.")
    if missing:
        messages.error(request, f"{missing} of the ticked cases are gone or not yours to see.")
    return redirect(back)


def _bulk_change(request: HttpRequest):
    """(change(case), what it did) for the bulk form's action; CaseError when incomplete."""
    action, actor, post = request.POST.get("action"), request.user, request.POST
    if action == "assign":
        assignee = _bulk_assignee(request, post.get("assignee", ""))
        label = assignee.get_full_name() or assignee.email if assignee else "nobody"
        return (
            lambda case: services.case_assign(actor=actor, case=case, assignee=assignee),
            f"Assigned to {label}",
        )
    if action == "status":
        status = post.get("status", "")
        if status not in CaseStatus.values:
            raise CaseError("Choose a status.")
        return (
            lambda case: services.case_change_status(actor=actor, case=case, status=status),
            f"Status set to {CaseStatus(status).label.lower()}",
        )
    if action == "tag":
        tag = post.get("tag", "").strip()
        if not tag:
            raise CaseError("Type the tag to add.")
        return (
            lambda case: services.case_set_tags(
                actor=actor, case=case, names=[*case.tags.values_list("name", flat=True), tag]
            ),
            f"Tag “{tag}” added",
        )
    raise CaseError("Choose what to change.")


def _bulk_assignee(request: HttpRequest, value: str) -> User | None:
    if value == "none":
        return None
    if value == "me":
        return request.user
    agent = _assignable(request.user).filter(pk=value).first() if value.isdigit() else None
    if agent is None:
        raise CaseError("Choose an agent of your teams.")
    return agent


def _ids(values: list[str]) -> list[int]:
    return list(dict.fromkeys(int(value) for value in values if value.isdigit()))


def _back(request: HttpRequest) -> str:
    """Where a form sends the agent back to: the queue they came from, never another site."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, {request.get_host()}, request.is_secure()
    ):
        return target
    return reverse("web:queue")


# --- saved views ------------------------------------------------------------------------------


@login_required
@require_POST
def save_view(request: HttpRequest) -> HttpResponse:
    params = QueryDict(request.POST.get("query", ""))
    try:
        view = services.saved_view_save(
            owner=request.user, name=request.POST.get("name", ""), params=dict(params.lists())
        )
    except CaseError as exc:
        messages.error(request, exc.message)
        return redirect(_back(request))
    messages.success(request, f"Saved the view “{view.name}”.")
    return redirect(f"{reverse('web:queue')}?{view.query}&saved={view.pk}")


@login_required
@require_POST
def delete_view(request: HttpRequest, view_id: int) -> HttpResponse:
    if services.saved_view_delete(owner=request.user, view_id=view_id):
        messages.success(request, "View deleted.")
    else:
        messages.error(request, "That view is already gone.")
    return redirect(reverse("web:queue"))


urlpatterns = [
    path("cases/", queue, name="queue"),
    path("cases/counts", view_counts, name="queue-counts"),
    path("cases/count", result_count, name="queue-count"),
    path("cases/export.csv", export_csv, name="queue-export"),
    path("cases/bulk", bulk, name="queue-bulk"),
    path("views/", save_view, name="view-save"),
    path("views/<int:view_id>/delete", delete_view, name="view-delete"),
]
