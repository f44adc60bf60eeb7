"""Reports for team leads and admins: SLA compliance, first-response and resolution time
distributions, volume (by channel, type, team, organization) and agent performance.

One URL, `/reports/`, with the whole state in its query string (`report`, the period, the
grouping, the team), so every report can be bookmarked and shared. Each report is a few
charts (`cases.web.charts`) with their tables; `format=csv&chart=<id>` downloads the figures
of one chart, exactly as its table shows them.

Who sees what: admins every case; a team lead the cases of the teams they lead (not other
teams they are only a member of, nor cases assigned to them elsewhere); anyone else gets a
403 page. The figures come from the selectors in `cases.analytics` and `cases.sla_reports`
through `analytics_cached`, so a page view costs a constant number of queries and, while no
case of the viewer's scope changed, none for the figures at all.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar
from urllib.parse import urlencode

from django import forms
from django.contrib.auth.decorators import login_required
from django.db import models
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from cases import analytics, sla_reports
from cases.analytics import Interval, Period, PeriodError, VolumeGrouping, period_between
from cases.analytics_cache import analytics_cached
from cases.choices import CaseType, Channel, Priority, SlaMetric
from cases.sla_reports import SlaGrouping
from cases.web.charts import Chart, Series
from crm import selectors as crm_selectors
from crm.exports import spreadsheet_cell
from crm.models import Team, User

T = TypeVar("T")
FORBIDDEN = "Reports are for team leads and admins."
TOP_GROUPS = 15  # organizations beyond these are summed up in one row


class Preset(models.TextChoices):
    LAST_7 = "7d", "Last 7 days"
    LAST_30 = "30d", "Last 30 days"
    LAST_90 = "90d", "Last 90 days"
    THIS_MONTH = "this_month", "This month"
    LAST_MONTH = "last_month", "Last month"
    CUSTOM = "custom", "Custom: from – to"


def preset_period(preset: str, *, now: datetime) -> Period:
    """A preset's whole UTC days; "last N days" and "this month" include today."""
    today = now.astimezone(UTC).date()
    tomorrow = today + timedelta(days=1)
    first = today.replace(day=1)
    if preset == Preset.THIS_MONTH:
        return _days(first, tomorrow)
    if preset == Preset.LAST_MONTH:
        return _days((first - timedelta(days=1)).replace(day=1), first)
    days = {Preset.LAST_7: 7, Preset.LAST_90: 90}.get(preset, 30)
    return _days(tomorrow - timedelta(days=days), tomorrow)


def _days(start: date, end: date) -> Period:
    """`[start, end)` as UTC midnights."""
    return Period(
        start=datetime.combine(start, time.min, tzinfo=UTC),
        end=datetime.combine(end, time.min, tzinfo=UTC),
    )


# --- who may see what ----------------------------------------------------------------------


@dataclass(frozen=True)
class Audience:
    """The reader of a report: `team_ids` None means every case (an admin)."""

    user: User
    team_ids: frozenset[int] | None

    def teams(self) -> list[tuple[int, str]]:
        """The teams the team filter offers: all for admins, the led ones for leads."""
        teams = Team.objects.order_by("name", "pk")
        if self.team_ids is not None:
            teams = teams.filter(pk__in=sorted(self.team_ids))
        return list(teams.values_list("pk", "name"))


def report_audience(user: User) -> Audience | None:
    """None for users who may not see reports (neither admin nor lead of a team)."""
    if crm_selectors.user_is_admin(user):
        return Audience(user=user, team_ids=None)
    led = crm_selectors.user_led_team_ids(user)
    return Audience(user=user, team_ids=frozenset(led)) if led else None


# --- the form ------------------------------------------------------------------------------


class ReportForm(forms.Form):
    """The period (a preset or whole UTC days, both inclusive), trend interval, grouping and
    team of one report. Fields a report does not use are removed."""

    period = forms.ChoiceField(choices=Preset.choices, label="Period")
    start = forms.DateField(
        label="From", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        label="To (inclusive)", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    interval = forms.ChoiceField(choices=Interval.choices, label="Trend per")
    group_by = forms.ChoiceField(choices=(), label="Group by")
    team = forms.TypedChoiceField(choices=(), coerce=int, required=False, label="Team")

    def __init__(self, data: QueryDict, *, report: Report, audience: Audience) -> None:
        values = {"period": Preset.LAST_30, "interval": Interval.DAY}
        if report.groupings:
            values["group_by"] = report.groupings[0][0]
        if data.get("start") or data.get("until"):
            values["period"] = Preset.CUSTOM  # a bookmarked range names no preset
        values.update({key: value for key, value in data.items() if value != ""})
        super().__init__(values, label_suffix="")
        self.fields["team"].choices = [
            ("", "All teams" if audience.team_ids is None else "All my teams"),
            *audience.teams(),
        ]
        if report.groupings:
            self.fields["group_by"].choices = report.groupings
        else:
            del self.fields["group_by"]
        if not report.has_interval:
            del self.fields["interval"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("period") != Preset.CUSTOM:
            return data
        start, until = data.get("start"), data.get("until")
        for name, value in (("start", start), ("until", until)):
            if name not in self.errors and value is None:
                self.add_error(name, "Give a date for a custom period.")
            elif value is not None and not 1970 <= value.year < 9000:
                self.add_error(name, "Choose a date between 1970 and 8999.")
        if not self.errors and start and until:
            days = _days(start, until + timedelta(days=1))
            try:
                period_between(start=days.start, end=days.end)
            except PeriodError as exc:
                self.add_error("until", str(exc))
        return data

    def chosen_period(self, *, now: datetime) -> Period:
        data = self.cleaned_data
        if data["period"] == Preset.CUSTOM:
            return _days(data["start"], data["until"] + timedelta(days=1))
        return preset_period(data["period"], now=now)


# --- reports -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """Everything a report's figures depend on besides the reader."""

    audience: Audience
    period: Period
    interval: str
    group_by: str
    team_id: int | None

    def scope(self) -> dict[str, Any]:
        """The selectors' keyword arguments that choose the cases."""
        return {"team_id": self.team_id, "team_ids": self.audience.team_ids}

    def cases(self) -> Any:
        return analytics.visible_cases(user=self.audience.user, **self.scope())

    def cached(self, figure: str, compute: Callable[[], T], *, by: tuple[str, ...] = ()) -> T:
        """`compute()` through `analytics_cached`, keyed on the period, the team filter and
        scope, and the fields of `by` (`interval`, `group_by`): each figure is cached on its
        own, so choosing another grouping leaves the report's trend in the cache."""
        team_ids = self.audience.team_ids
        params = {
            "from": self.period.start.isoformat(),
            "to": self.period.end.isoformat(),
            "team": self.team_id,
            "teams": None if team_ids is None else sorted(team_ids),
            **{name: getattr(self, name) for name in by},
        }
        return analytics_cached(
            f"report:{figure}", user=self.audience.user, params=params, compute=compute
        )


@dataclass
class Section:
    """A chart on the page: the chart, its table's first column heading, its CSV link."""

    chart: Chart
    heading: str
    csv_url: str = ""


@dataclass(frozen=True)
class Report:
    slug: str
    title: str
    description: str
    groupings: list[tuple[str, str]]
    has_interval: bool
    compute: Callable[[Query], Any]
    charts: Callable[[Query, Any], list[Section]]


def _queue_url(query: Query, **filters: Any) -> str:
    """The case queue of the cases a bar stands for: the filters plus the report's team
    (the chosen one, or the lead's only team)."""
    params = dict(filters)
    team_ids = query.audience.team_ids
    if query.team_id is not None:
        params["team"] = query.team_id
    elif team_ids is not None and len(team_ids) == 1:
        params["team"] = next(iter(team_ids))
    return f"{reverse('web:queue')}?{urlencode(params)}"


def _created_in(period: Period) -> dict[str, str]:
    return {"created_after": period.start.isoformat(), "created_before": period.end.isoformat()}


def _bucket_label(start: date, interval: str) -> str:
    if interval == Interval.MONTH:
        return start.strftime("%Y-%m")
    if interval == Interval.WEEK:
        return f"Week of {start.isoformat()}"
    return start.isoformat()


def _bucket_period(start: date, interval: str, period: Period) -> Period:
    """A bucket's own span, cut by the report's period."""
    bucket = _days(start, analytics.next_bucket_start(start, interval))
    return Period(start=max(bucket.start, period.start), end=min(bucket.end, period.end))


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 3600, 1)


# SLA compliance ----------------------------------------------------------------------------

METRIC_LABELS = {metric: str(SlaMetric(metric).label) for metric in SlaMetric.values}


def _sla_compute(query: Query) -> tuple[dict[str, list[Any]], list[Any]]:
    common = {"cases": query.cases(), "period": query.period, "now": timezone.now()}
    compliance = query.cached(
        "sla-compliance",
        lambda: sla_reports.sla_compliance(group_by=query.group_by, **common),
        by=("group_by",),
    )
    trends = query.cached(
        "sla-trends",
        lambda: sla_reports.sla_trends(interval=query.interval, **common),
        by=("interval",),
    )
    return compliance, trends


def _sla_charts(query: Query, figures: Any) -> list[Section]:
    compliance, trends = figures
    labels = [_bucket_label(bucket.period_start, query.interval) for bucket in trends]
    trend = Chart(
        id="sla-trend",
        title=f"SLA compliance per {query.interval}",
        kind="line",
        labels=labels,
        series=[
            Series("All targets", [b.compliance_percent for b in trends]),
            *(
                Series(label, [b.metrics[metric].compliance_percent for b in trends])
                for metric, label in METRIC_LABELS.items()
            ),
        ],
        value_format="percent",
        description="Share of SLA targets met among those concluded in each bucket: met "
        "when answered or resolved in time, breached at the deadline.",
    )
    groups = _sla_groups(query.group_by, compliance)
    grouping = str(SlaGrouping(query.group_by).label)
    by_group = Chart(
        id="sla-groups",
        title=f"SLA compliance by {grouping.lower()}",
        kind="horizontal",
        labels=[label for _, label in groups],
        series=[
            Series(
                label, [_find(compliance[metric], key, "compliance_percent") for key, _ in groups]
            )
            for metric, label in METRIC_LABELS.items()
        ],
        value_format="percent",
    )
    counts = Chart(
        id="sla-counts",
        title=f"SLA targets met and breached by {grouping.lower()}",
        kind="stacked",
        labels=[label for _, label in groups],
        series=[
            Series(
                name.capitalize(),
                [
                    sum(_find(compliance[metric], key, name) or 0 for metric in METRIC_LABELS)
                    for key, _ in groups
                ],
            )
            for name in ("met", "breached")
        ],
        description="All three targets (first response, next response, resolution) together.",
    )
    return [Section(trend, "Bucket"), Section(by_group, grouping), Section(counts, grouping)]


def _sla_groups(group_by: str, compliance: dict[str, list[Any]]) -> list[tuple[Any, str]]:
    """Every group that concluded a target of any metric, in the selectors' order."""
    found: dict[Any, str] = {}
    for rows in compliance.values():
        for row in rows:
            found.setdefault(row.group, row.label)
    if group_by == SlaGrouping.PRIORITY:
        order = Priority.values
        return sorted(found.items(), key=lambda item: order.index(item[0]))
    return sorted(found.items(), key=lambda item: (item[0] is None, item[1].casefold()))


def _percent(rows: list[Any], group: Any) -> float | None:
    return _find(rows, group, "compliance_percent")


def _find(rows: list[Any], group: Any, attribute: str) -> Any:
    return next((getattr(row, attribute) for row in rows if row.group == group), None)


# Response and resolution times ------------------------------------------------------------


def _times_compute(query: Query) -> dict[str, Any]:
    return query.cached(
        "times",
        lambda: sla_reports.sla_distributions(cases=query.cases(), period=query.period),
    )


def _times_charts(query: Query, distributions: Any) -> list[Section]:
    sections = []
    for metric, title in (
        (SlaMetric.FIRST_RESPONSE, "First-response times"),
        (SlaMetric.RESOLUTION, "Resolution times"),
    ):
        found = distributions[metric]
        chart = Chart(
            id=f"times-{metric.replace('_', '-')}",
            title=title,
            kind="bar",
            labels=[bucket.label for bucket in found.histogram],
            series=[Series("Cases", [bucket.count for bucket in found.histogram])],
            description=(
                "Cases first answered in the period, by the time from creation to the first "
                "answer (wall clock)."
                if metric == SlaMetric.FIRST_RESPONSE
                else "Cases resolved in the period, by the time from creation to resolution "
                "(wall clock)."
            ),
        )
        sections.append(Section(chart, "Time taken"))
    names = ["p50", "p75", "p90", "p95"]
    percentiles = Chart(
        id="times-percentiles",
        title="Percentiles",
        kind="bar",
        labels=["Median (p50)", "p75", "p90", "p95"],
        series=[
            Series(label, [_hours(distributions[metric].percentiles.get(n)) for n in names])
            for metric, label in (
                (SlaMetric.FIRST_RESPONSE, "First response"),
                (SlaMetric.RESOLUTION, "Resolution"),
            )
        ],
        value_format="hours",
        description="Half of the cases took at most the median, 90 % at most the p90.",
    )
    sections.append(Section(percentiles, "Percentile"))
    return sections


# Volume -------------------------------------------------------------------------------------

VOLUME_FILTERS = {
    VolumeGrouping.CHANNEL: ("channel", Channel.values),
    VolumeGrouping.TYPE: ("type", CaseType.values),
    VolumeGrouping.TEAM: ("team", None),
    VolumeGrouping.ORGANIZATION: ("organization", None),
}


def _volume_compute(query: Query) -> tuple[list[Any], list[Any]]:
    common = {"user": query.audience.user, "period": query.period, **query.scope()}
    trend = query.cached(
        "volume-trend",
        lambda: analytics.trends(group_by=query.interval, **common),
        by=("interval",),
    )
    groups = query.cached(
        "volume-groups",
        lambda: analytics.volume(group_by=query.group_by, **common),
        by=("group_by",),
    )
    return trend, groups


def _volume_charts(query: Query, figures: Any) -> list[Section]:
    trend, groups = figures
    over_time = Chart(
        id="volume-trend",
        title=f"Cases created and resolved per {query.interval}",
        kind="line",
        labels=[_bucket_label(bucket.start, query.interval) for bucket in trend],
        series=[
            Series("Created", [bucket.created for bucket in trend]),
            Series("Resolved", [bucket.resolved for bucket in trend]),
            Series("Open at the end", [bucket.backlog for bucket in trend]),
        ],
        links=[
            _queue_url(query, **_created_in(_bucket_period(b.start, query.interval, query.period)))
            for b in trend
        ],
        description="A bucket's link opens the cases created in it.",
    )
    rows = _top(groups) if query.group_by == VolumeGrouping.ORGANIZATION else groups
    grouping = str(VolumeGrouping(query.group_by).label)
    by_group = Chart(
        id="volume-groups",
        title=f"Cases by {grouping.lower()}",
        kind="horizontal",
        labels=[row.label for row in rows],
        series=[
            Series("Created", [row.created for row in rows]),
            Series("Resolved", [row.resolved for row in rows]),
        ],
        links=[_volume_link(query, row.key) for row in rows],
        description="Created or resolved in the period. A link opens the cases created in "
        "the period.",
    )
    return [Section(over_time, "Bucket"), Section(by_group, grouping)]


OTHERS = "__others__"


def _top(rows: list[analytics.VolumeRow]) -> list[analytics.VolumeRow]:
    """The TOP_GROUPS busiest groups, the rest summed up in one row."""
    if len(rows) <= TOP_GROUPS:
        return rows
    busiest = sorted(rows, key=lambda row: (-row.created, -row.resolved, row.label.casefold()))
    rest = busiest[TOP_GROUPS:]
    other = analytics.VolumeRow(
        key=OTHERS,
        label=f"{len(rest)} other organizations",
        created=sum(row.created for row in rest),
        resolved=sum(row.resolved for row in rest),
    )
    return [*busiest[:TOP_GROUPS], other]


def _volume_link(query: Query, key: Any) -> str | None:
    name, known = VOLUME_FILTERS[VolumeGrouping(query.group_by)]
    if key is None or key == OTHERS or (known is not None and key not in known):
        return None
    return _queue_url(query, **{name: key}, **_created_in(query.period))


# Agent performance ------------------------------------------------------------------------


def _agents_compute(query: Query) -> list[Any]:
    return query.cached(
        "agents",
        lambda: analytics.performance(
            user=query.audience.user,
            period=query.period,
            group_by=analytics.PerformanceGrouping.AGENT,
            **query.scope(),
        ),
    )


def _agents_charts(query: Query, rows: Any) -> list[Section]:
    labels = [row.label for row in rows]
    links = [
        _queue_url(
            query,
            **({"unassigned": "true"} if row.key is None else {"assignee": row.key}),
            **_created_in(query.period),
        )
        for row in rows
    ]
    work = Chart(
        id="agents-work",
        title="Cases per agent",
        kind="horizontal",
        labels=labels,
        series=[
            Series("Created", [row.created for row in rows]),
            Series("First responses", [row.first_responses for row in rows]),
            Series("Resolved", [row.handled for row in rows]),
            Series("Reopened", [row.reopened for row in rows]),
        ],
        links=links,
        description="Per current assignee: cases created, first answered and resolved in the "
        "period, and how many of the resolved ones were ever reopened. A link opens the "
        "agent's cases created in the period.",
    )
    times = Chart(
        id="agents-times",
        title="Response and resolution times per agent",
        kind="horizontal",
        labels=labels,
        series=[
            Series(
                "First response, median", [_hours(r.first_response_median_seconds) for r in rows]
            ),
            Series("First response, p90", _each(rows, "first_response_p90_seconds")),
            Series("Resolution, median", _each(rows, "resolution_median_seconds")),
            Series("Resolution, p90", _each(rows, "resolution_p90_seconds")),
        ],
        links=links,
        value_format="hours",
        description="Wall-clock hours from creation, of the cases first answered or resolved "
        "in the period.",
    )
    return [Section(work, "Agent"), Section(times, "Agent")]


def _each(rows: list[Any], seconds: str) -> list[float | None]:
    return [_hours(getattr(row, seconds)) for row in rows]


REPORTS = {
    report.slug: report
    for report in (
        Report(
            slug="sla",
            title="SLA compliance",
            description="Targets met and breached, per bucket and per group.",
            groupings=SlaGrouping.choices,
            has_interval=True,
            compute=_sla_compute,
            charts=_sla_charts,
        ),
        Report(
            slug="times",
            title="Response and resolution times",
            description="How long first answers and resolutions took: distribution and "
            "percentiles.",
            groupings=[],
            has_interval=False,
            compute=_times_compute,
            charts=_times_charts,
        ),
        Report(
            slug="volume",
            title="Volume",
            description="Cases created and resolved over time and by channel, type, team or "
            "organization.",
            groupings=VolumeGrouping.choices,
            has_interval=True,
            compute=_volume_compute,
            charts=_volume_charts,
        ),
        Report(
            slug="agents",
            title="Agent performance",
            description="Work done and times taken per agent (current assignee).",
            groupings=[],
            has_interval=False,
            compute=_agents_compute,
            charts=_agents_charts,
        ),
    )
}
DEFAULT_REPORT = "sla"


# --- the page ------------------------------------------------------------------------------


@login_required
@require_GET
def reports_page(request: HttpRequest) -> HttpResponse:
    audience = report_audience(request.user)
    if audience is None:
        return render(
            request,
            "cases/reports/forbidden.html",
            {"area": "reports", "message": FORBIDDEN},
            status=403,
        )
    slug = request.GET.get("report") or DEFAULT_REPORT
    report = REPORTS.get(slug)
    known = report is not None
    report = report or REPORTS[DEFAULT_REPORT]
    form = ReportForm(request.GET, report=report, audience=audience)
    valid = form.is_valid() and known
    wants_csv = request.GET.get("format") == "csv"
    if not valid:
        problems = _problems(form, known=known, slug=slug)
        if wants_csv:
            return HttpResponse("\n".join(problems), status=400, content_type="text/plain")
        context = _context(request, report, form, audience, sections=[], problems=problems)
        return render(request, "cases/reports/page.html", context, status=400)
    query = _query(form, audience, now=timezone.now())
    figures = report.compute(query)
    sections = report.charts(query, figures)
    if form.cleaned_data["period"] != Preset.CUSTOM:
        # Shown in From and To, so switching to "Custom" starts from the period on screen.
        form.data["start"] = query.period.start.date().isoformat()
        form.data["until"] = (query.period.end - timedelta(days=1)).date().isoformat()
    if wants_csv:
        return _csv(request, query, sections)
    # The download names the dates on screen, so a preset cannot move on past midnight
    # between the page and the click.
    base = request.GET.copy()
    base.pop("chart", None)
    base["period"] = Preset.CUSTOM
    base["start"], base["until"] = form.data["start"], form.data["until"]
    for section in sections:
        section.csv_url = "?" + _with(base, format="csv", chart=section.chart.id)
    context = _context(request, report, form, audience, sections=sections, problems=[])
    context["period"] = query.period
    context["last_day"] = (query.period.end - timedelta(days=1)).date()
    return render(request, "cases/reports/page.html", context)


def _query(form: ReportForm, audience: Audience, *, now: datetime) -> Query:
    return Query(
        audience=audience,
        period=form.chosen_period(now=now),
        interval=form.cleaned_data.get("interval", ""),
        group_by=form.cleaned_data.get("group_by", ""),
        team_id=form.cleaned_data.get("team") or None,
    )


def reports_warm(user: User, *, now: datetime) -> bool:
    """Compute the figures of the report `/reports/` opens with, for `user`, as the page
    would (`cases.tasks.analytics_warm`). False for users who may not see reports."""
    audience = report_audience(user)
    if audience is None:
        return False
    report = REPORTS[DEFAULT_REPORT]
    form = ReportForm(QueryDict(), report=report, audience=audience)
    if not form.is_valid():
        return False
    report.compute(_query(form, audience, now=now))
    return True


def _problems(form: ReportForm, *, known: bool, slug: str) -> list[str]:
    problems = [] if known else [f"There is no report called “{slug}”."]
    for name, errors in form.errors.items():
        label = form.fields[name].label if name in form.fields else ""
        problems += [f"{label}: {error}" if label else str(error) for error in errors]
    return problems


def _with(params: QueryDict, **values: str) -> str:
    params = params.copy()
    for key, value in values.items():
        params[key] = value
    return params.urlencode()


def _context(
    request: HttpRequest,
    report: Report,
    form: ReportForm,
    audience: Audience,
    *,
    sections: list[Section],
    problems: list[str],
) -> dict[str, Any]:
    # The tabs keep the period and the team; grouping differs per report.
    kept = QueryDict(mutable=True)
    for key in ("period", "start", "until", "team"):
        if request.GET.get(key):
            kept[key] = request.GET[key]
    return {
        "area": "reports",
        "title": report.title,
        "report": report,
        "tabs": [(r, "?" + _with(kept, report=r.slug)) for r in REPORTS.values()],
        "form": form,
        "sections": sections,
        "problems": problems,
        "scope": "all teams" if audience.team_ids is None else "the teams you lead",
    }


def _csv(request: HttpRequest, query: Query, sections: list[Section]) -> HttpResponse:
    """One chart's figures (`chart=<id>`) as its table shows them, unformatted."""
    wanted = request.GET.get("chart", "")
    section = next((s for s in sections if s.chart.id == wanted), None)
    if section is None:
        known = ", ".join(s.chart.id for s in sections)
        return HttpResponse(f"chart: choose one of {known}.", status=400, content_type="text/plain")
    chart = section.chart
    unit = {"percent": " (%)", "hours": " (h)"}.get(chart.value_format, "")
    filename = (
        f"{chart.id}-{query.period.start:%Y%m%d}-{query.period.end - timedelta(days=1):%Y%m%d}.csv"
    )
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow([section.heading, *(f"{s.label}{unit}" for s in chart.series)])
    for index, label in enumerate(chart.labels):
        writer.writerow(
            [spreadsheet_cell(label), *(spreadsheet_cell(s.values[index]) for s in chart.series)]
        )
    return response


urlpatterns = [
    path("reports/", reports_page, name="reports"),
]
