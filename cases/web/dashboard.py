"""The agent's dashboard (`/dashboard/`): what needs them now, and how their teams are doing.

Panels, each with a link to the queue or task list that shows exactly what it counts:

- **My open cases**: how many, and the ten most urgent (nearest SLA deadline first, the queue's
  "SLA deadline" order), linking to the *Mine* queue in that order.
- **My tasks due**: my open tasks that are overdue or due today (the agent's time zone), linking
  to the task list filtered to them.
- **SLA at risk / breached**: open cases of my teams with a target in that state, counted and
  the first few listed, linking to the queue's SLA filter.
- **Workload**: open cases per assignee in my teams (bar chart, each bar to that assignee's
  queue), unassigned included.
- **SLA compliance** per day or week of the last 30 days (line) and **created vs resolved**
  with the backlog (bars and a line), from `cases.analytics` and `cases.sla_reports`.

"My teams" is the queue's *My teams* view; for admins it is every team (the *All* queue, open
cases). Every case panel is built from the queue's own queryset (`queues.queue_queryset` with
the parameters of its link), and the task panel from the task list's (`tasks_matching`), so a
figure and the page its link opens cannot disagree.

Speed at a million cases: the per-agent lists (my cases, my tasks) are indexed queries and
stay live. Team aggregates go through `cases.analytics_cache`: workload and the trends are
invalidated by the change numbers of the agent's scope, which the SLA tick moves too when a
target turns at risk or breached.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from cases.analytics import Period, TrendGrouping, trends
from cases.analytics_cache import analytics_cached
from cases.choices import SlaState
from cases.models import Case
from cases.selectors import case_list
from cases.sla_reports import sla_trends
from cases.web.charts import Chart, Series
from cases.web.directory import TASK_SORTS, TASK_VIEWS, tasks_matching
from cases.web.queues import COUNT_CAP, SORTS, capped_count, queue_queryset
from crm import selectors as crm_selectors
from crm.models import Team, User
from crm.selectors import agent_timezone

URGENT_ROWS = 10
TASK_ROWS = 10
SLA_ROWS = 5
WORKLOAD_BARS = 20
STATE_COLUMNS = ("sla_first_response_state", "sla_next_response_state", "sla_resolution_state")


class TrendsForm(forms.Form):
    """The one control of the page: trends by day or by week."""

    interval = forms.ChoiceField(
        label="Trends by", required=False, choices=TrendGrouping.choices, initial="day"
    )


@dataclass(frozen=True)
class QueueLink:
    """A queue URL's parameters: its link, and the queue's own queryset for the figures."""

    params: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, **params: str) -> QueueLink:
        return cls(tuple(params.items()))

    @property
    def url(self) -> str:
        return f"{reverse('web:queue')}?{urlencode(self.params)}"

    def cases(self, user: User) -> QuerySet[Case]:
        cases, _, _ = queue_queryset(user=user, params=QueryDict(urlencode(self.params)))
        return cases


def team_queue(user: User, **filters: str) -> QueueLink:
    """The queue of open cases of the user's teams (every team for admins), filtered more."""
    if crm_selectors.user_is_admin(user):
        return QueueLink.of(view="all", is_open="true", **filters)
    return QueueLink.of(view="team", **filters)


# --- the page ------------------------------------------------------------------------------


@login_required
@require_GET
def dashboard_page(request: HttpRequest) -> HttpResponse:
    """The whole page (also what dashboard.js fetches to refresh its panels). An unknown
    `interval` is a form error (400) and the trends fall back to days."""
    user = request.user
    form = TrendsForm(request.GET or None)
    interval = form.cleaned_data["interval"] if form.is_valid() else ""
    interval = interval or TrendGrouping.DAY
    now = timezone.now()
    context = {
        "area": "dashboard",
        "title": "Dashboard",
        "form": form,
        "interval": interval,
        "is_admin": crm_selectors.user_is_admin(user),
        "team_names": _team_names(user),
        "mine": my_open_cases(user),
        "tasks": my_tasks_due(user, now=now),
        "sla": sla_now_panel(user, now=now),
        **team_charts(user, interval=interval, now=now),
        "cap": COUNT_CAP,
    }
    return render(request, "cases/dashboard/page.html", context, status=400 if form.errors else 200)


def _team_names(user: User) -> list[str]:
    if crm_selectors.user_is_admin(user):
        return []
    team_ids = crm_selectors.user_team_ids(user)
    if not team_ids:
        return []
    return list(
        Team.objects.filter(pk__in=team_ids).order_by("name").values_list("name", flat=True)
    )


# --- my cases and tasks (live: indexed, per agent) -------------------------------------------


def my_open_cases(user: User) -> dict[str, Any]:
    """The count of my open cases (capped like the queue's) and the most urgent ones, in the
    order of the *Mine* queue sorted by SLA deadline."""
    link = QueueLink.of(view="mine", sort="sla")
    cases = link.cases(user)
    order = [key.order(reverse=False) for key in SORTS["sla"][1].keys]
    rows = list(cases.select_related("customer").order_by(*order)[:URGENT_ROWS])
    return {
        "count": capped_count(cases),
        "rows": rows,
        "url": link.url,
        "from": urlencode(link.params),
    }


def my_tasks_due(user: User, *, now: datetime) -> dict[str, Any]:
    """My open tasks due by the end of today in my time zone (overdue ones included), as the
    task list shows them with `view=mine&due_to=<today>`."""
    tz = agent_timezone(user)
    today = timezone.localtime(now, tz).date()
    tasks = tasks_matching(user, TASK_VIEWS["mine"], {"due_to": today}, tz)
    totals = tasks.order_by().aggregate(
        due=Count("pk"), overdue=Count("pk", filter=Q(due_at__lt=now))
    )
    order = [key.order(reverse=False) for key in TASK_SORTS["due"][1].keys]
    rows = list(tasks.order_by(*order)[:TASK_ROWS])
    tasks_url = reverse("web:tasks")
    return {
        "due": totals["due"],
        "overdue": totals["overdue"],
        "today": totals["due"] - totals["overdue"],
        "rows": rows,
        "now": now,
        "tz": tz,
        "url": f"{tasks_url}?{urlencode({'view': 'mine', 'due_to': today.isoformat()})}",
        "overdue_url": f"{tasks_url}?{urlencode({'view': 'overdue', 'assignee': 'me'})}",
    }


# --- SLA now --------------------------------------------------------------------------------


def sla_now_panel(user: User, *, now: datetime) -> dict[str, Any]:
    """Open cases of my teams with a target at risk, and with one breached, as the queue's SLA
    filter selects them (a case with one target at risk and another breached is in both)."""
    links = {state: team_queue(user, sla=state, sort="sla") for state in ("at_risk", "breached")}

    def compute() -> dict[str, Any]:
        figures = {}
        order = [key.order(reverse=False) for key in SORTS["sla"][1].keys]
        for state, link in links.items():
            cases = link.cases(user)
            rows = cases.order_by(*order).values(
                "number", "title", "team__name", "sla_due", *STATE_COLUMNS
            )[:SLA_ROWS]
            figures[state] = {
                "count": capped_count(cases),
                "rows": [{**row, "flag": _flag(row)} for row in rows],
            }
        return figures

    # Tens of milliseconds at a million cases, and listed next to live case lists: recomputed
    # while the page waits once a change moved it, never shown stale.
    figures = analytics_cached(
        "dashboard.sla_now", user=user, params={}, compute=compute, background=False
    )
    return {
        state: {**figures[state], "url": link.url, "from": urlencode(link.params)}
        for state, link in links.items()
    }


def _flag(row: dict[str, Any]) -> str:
    """The most pressing state of a case's targets (as `Case.sla_flag`)."""
    states = {row[column] for column in STATE_COLUMNS}
    return next((s for s in (SlaState.BREACHED, SlaState.AT_RISK) if s in states), "")


# --- team charts (cached by change numbers) ---------------------------------------------------


def dashboard_warm(user: User, *, now: datetime) -> None:
    """Compute the cached figures of the dashboard as `user` first sees it (by day), as the
    page would (`cases.tasks.analytics_warm`)."""
    team_charts(user, interval=TrendGrouping.DAY, now=now)
    sla_now_panel(user, now=now)


def team_charts(user: User, *, interval: str, now: datetime) -> dict[str, Any]:
    """Workload, created/resolved/backlog and SLA compliance over the last 30 UTC days, from
    one cache entry per scope, interval and period (bounds are whole days, so the key moves on
    at midnight UTC)."""
    period = Period.default(now=now)
    params = {
        "interval": interval,
        "start": period.start.isoformat(),
        "end": period.end.isoformat(),
    }
    figures = analytics_cached(
        "dashboard.teams",
        user=user,
        params=params,
        compute=lambda: _team_figures(user, period=period, interval=interval, now=now),
    )
    return {
        "period": period,
        "workload": _workload_chart(user, figures["workload"]),
        "workload_more": figures["workload_more"],
        "unassigned_url": team_queue(user, assignee="none").url,
        "workload_url": team_queue(user).url,
        **_trend_charts(figures["trends"], interval=interval),
        **_compliance_chart(figures["compliance"], interval=interval),
        "breached_url": QueueLink.of(view="all", sla="breached").url,
    }


def _team_figures(user: User, *, period: Period, interval: str, now: datetime) -> dict[str, Any]:
    """Plain data (what the cache keeps): workload rows, and per-bucket trend figures."""
    workload, more = _workload(user)
    visible = case_list(user=user).filter(merged_into__isnull=True).order_by()
    return {
        "workload": workload,
        "workload_more": more,
        "trends": [
            {"start": b.start, "created": b.created, "resolved": b.resolved, "backlog": b.backlog}
            for b in trends(user=user, period=period, group_by=interval)
        ],
        "compliance": [
            {"start": b.period_start, "met": b.met, "breached": b.breached}
            for b in sla_trends(cases=visible, period=period, interval=interval, now=now)
        ],
    }


def _workload(user: User) -> tuple[list[dict[str, Any]], int]:
    """Open cases per assignee among my teams' open cases (the team queue's own queryset), the
    busiest WORKLOAD_BARS first, and how many more there are. Members of my teams (of any team
    for admins) without open cases show with 0: free hands are workload news too. A bar links
    to the queue filtered by its assignee where the queue can filter by them (its assignee
    choices: active members of my teams; any active agent for admins). Two queries."""
    admin = crm_selectors.user_is_admin(user)
    team_ids = crm_selectors.user_team_ids(user)
    members = User.objects.filter(is_active=True)
    members = (
        members.filter(memberships__isnull=False)
        if admin
        else members.filter(memberships__team_id__in=team_ids)
    )
    cases = team_queue(user).cases(user).filter(merged_into__isnull=True)  # merged are closed
    counts = cases.order_by().values(
        "assignee_id",
        "assignee__first_name",
        "assignee__last_name",
        "assignee__email",
        "assignee__is_active",
    )
    member_rows = list(members.distinct().values("pk", "first_name", "last_name", "email"))
    member_ids = {member["pk"] for member in member_rows}
    rows: dict[int | None, dict[str, Any]] = {}
    for row in counts.annotate(open=Count("pk")):
        assignee = row["assignee_id"]
        rows[assignee] = {
            "assignee": assignee,
            "label": _name(row) if assignee else "Unassigned",
            "open": row["open"],
            "linked": assignee is None
            or (row["assignee__is_active"] and (admin or assignee in member_ids)),
        }
    for member in member_rows:
        rows.setdefault(
            member["pk"],
            {
                "assignee": member["pk"],
                "label": _name(member, prefix=""),
                "open": 0,
                "linked": True,
            },
        )
    ordered = sorted(rows.values(), key=lambda r: (-r["open"], r["label"].casefold()))
    return ordered[:WORKLOAD_BARS], max(0, len(ordered) - WORKLOAD_BARS)


def _name(row: dict[str, Any], prefix: str = "assignee__") -> str:
    name = f"{row[prefix + 'first_name'] or ''} {row[prefix + 'last_name'] or ''}".strip()
    return name or row[prefix + "email"]


def _workload_chart(user: User, rows: list[dict[str, Any]]) -> Chart:
    links = []
    for row in rows:
        if not row["linked"]:
            links.append(None)
        elif row["assignee"] is None:
            links.append(team_queue(user, assignee="none").url)
        else:
            links.append(team_queue(user, assignee=str(row["assignee"])).url)
    return Chart(
        id="chart-workload",
        title="Open cases per agent",
        kind="horizontal",
        labels=[row["label"] for row in rows],
        series=[Series("Open cases", [row["open"] for row in rows])],
        links=links,
        description="Select a bar or a name to open that agent's queue.",
    )


def _bucket_label(start: date, interval: str) -> str:
    text = f"{start.day} {start:%b}"
    return f"Week of {text}" if interval == TrendGrouping.WEEK else text


def _trend_charts(buckets: list[dict[str, Any]], *, interval: str) -> dict[str, Any]:
    """Created and resolved per bucket (each label links to the cases created then), and the
    backlog at the end of each bucket."""
    labels = [_bucket_label(b["start"], interval) for b in buckets]
    step = timedelta(days=7 if interval == TrendGrouping.WEEK else 1)
    links = []
    for bucket in buckets:
        start = datetime.combine(bucket["start"], time.min, tzinfo=UTC)
        links.append(
            QueueLink.of(
                view="all",
                created_after=start.isoformat(),
                created_before=(start + step).isoformat(),
            ).url
        )
    created = Chart(
        id="chart-created-resolved",
        title="Cases created and resolved",
        kind="bar",
        labels=labels,
        series=[
            Series("Created", [b["created"] for b in buckets]),
            Series("Resolved", [b["resolved"] for b in buckets]),
        ],
        links=links,
        description="Days in UTC. Select a bar or a date to open the cases created then.",
    )
    backlog = Chart(
        id="chart-backlog",
        title="Backlog (open cases at the end of each "
        + ("week" if interval == TrendGrouping.WEEK else "day")
        + ")",
        kind="line",
        labels=labels,
        series=[Series("Open cases", [b["backlog"] for b in buckets])],
    )
    return {
        "created_chart": created,
        "backlog_chart": backlog,
        "created_total": sum(b["created"] for b in buckets),
        "resolved_total": sum(b["resolved"] for b in buckets),
        "backlog_now": buckets[-1]["backlog"] if buckets else 0,
    }


def _compliance_chart(buckets: list[dict[str, Any]], *, interval: str) -> dict[str, Any]:
    def percent(met: int, breached: int) -> float | None:
        return round(100 * met / (met + breached), 1) if met + breached else None

    met = sum(b["met"] for b in buckets)
    breached = sum(b["breached"] for b in buckets)
    chart = Chart(
        id="chart-sla-compliance",
        title="SLA targets met",
        kind="line",
        labels=[_bucket_label(b["start"], interval) for b in buckets],
        series=[Series("Met", [percent(b["met"], b["breached"]) for b in buckets])],
        value_format="percent",
        description="Share of SLA targets (first response, next response, resolution) met, "
        "of those concluded in each "
        + ("week" if interval == TrendGrouping.WEEK else "day")
        + " (UTC); gaps are days without one.",
    )
    return {
        "compliance_chart": chart,
        "compliance": {"met": met, "breached": breached, "percent": percent(met, breached)},
    }


urlpatterns = [
    path("dashboard/", dashboard_page, name="dashboard"),
]
