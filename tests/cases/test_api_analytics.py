"""/api/v1/analytics/...: dashboard, trends, performance and reports, as integrations use them.

Cases are made through the factories and services, then backdated with a queryset update so
that every duration and bucket is known exactly.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from cases import services
from cases.models import Case
from tests.cases.factories import CaseFactory, TeamFactory, make_agent

pytestmark = pytest.mark.django_db

HOUR = timedelta(hours=1)
MONDAY = datetime(2025, 3, 3, tzinfo=UTC)
ENDPOINTS = ["dashboard", "trends", "performance", "reports"]


@pytest.fixture
def alpha():
    return TeamFactory(name="Alpha")


@pytest.fixture
def bravo():
    return TeamFactory(name="Bravo")


@pytest.fixture
def ada(alpha):
    return make_agent(team=alpha, first_name="Ada", last_name="Lovelace")


@pytest.fixture
def bob(bravo):
    return make_agent(team=bravo, first_name="Bob", last_name="Builder")


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def api(ada):
    return client_for(ada)


def get(client: APIClient, endpoint: str, **params):
    return client.get(f"/api/v1/analytics/{endpoint}", params)


def make_case(
    *,
    team,
    created: datetime,
    status: str | None = None,
    first_response: timedelta | None = None,
    resolved: datetime | timedelta | None = None,
    **fields,
) -> Case:
    """A case moved to `status` through the services, then backdated: created at `created`,
    first answered `first_response` later, resolved at `resolved` (or that long after)."""
    case = CaseFactory(team=team, **fields)
    if status:
        services.case_change_status(actor=None, case=case, status=status)
    if isinstance(resolved, timedelta):
        resolved = created + resolved
    Case.objects.filter(pk=case.pk).update(
        created_at=created,
        first_response_at=created + first_response if first_response else None,
        resolved_at=resolved,
    )
    return case


def reopen_and_resolve(case: Case) -> None:
    services.case_change_status(actor=None, case=case, status="resolved")
    services.case_change_status(actor=None, case=case, status="in_progress")
    services.case_change_status(actor=None, case=case, status="resolved")


# Dashboard --------------------------------------------------------------------------------


def test_dashboard_counts_open_cases_and_the_flow_of_today_this_week_and_the_period(
    api, alpha, bravo, ada
):
    now = timezone.now()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    week = today - timedelta(days=today.weekday())
    urgent = make_case(team=alpha, created=today, priority="urgent")
    make_case(team=alpha, created=now - timedelta(days=40), status="in_progress", assignee=ada)
    make_case(team=alpha, created=now - timedelta(days=10), status="awaiting_customer")
    make_case(team=alpha, created=now - timedelta(days=10), status="resolved", resolved=today)
    make_case(
        team=alpha,
        created=now - timedelta(days=50),
        status="closed",
        resolved=now - timedelta(days=45),
    )
    earlier_this_week = today > week  # on a Monday there is no "this week but not today"
    if earlier_this_week:
        make_case(team=alpha, created=week, status="resolved", resolved=week + HOUR)
    make_case(team=bravo, created=today, priority="urgent")
    duplicate = make_case(team=alpha, created=today)
    services.case_merge(actor=None, source=duplicate, target=urgent)

    response = get(api, "dashboard")

    assert response.status_code == 200, response.json()
    body = response.json()
    extra = int(earlier_this_week)
    assert body["open"] == 3
    assert body["unassigned"] == 2
    assert body["open_by_status"] == {
        "new": 1,
        "in_progress": 1,
        "awaiting_customer": 1,
        "awaiting_vendor": 0,
    }
    assert body["open_by_priority"] == {"low": 0, "normal": 2, "high": 0, "urgent": 1}
    assert body["open_by_team"] == [{"id": alpha.pk, "name": "Alpha", "open": 3}]
    assert body["today"] == {
        "start": today.isoformat().replace("+00:00", "Z"),
        "created": 1,
        "resolved": 1,
    }
    assert body["this_week"]["start"] == week.isoformat().replace("+00:00", "Z")
    assert (body["this_week"]["created"], body["this_week"]["resolved"]) == (1 + extra, 1 + extra)
    assert body["period"] == {"created": 3 + extra, "resolved": 1 + extra}
    assert body["team"] is None
    tomorrow = today + timedelta(days=1)
    assert datetime.fromisoformat(body["to"]) == tomorrow
    assert datetime.fromisoformat(body["from"]) == tomorrow - timedelta(days=30)


def test_dashboard_team_filter_and_admin_sees_every_team(alpha, bravo, ada, bob):
    now = timezone.now()
    make_case(team=alpha, created=now)
    make_case(team=bravo, created=now, assignee=bob)
    make_case(team=bravo, created=now)
    admin = client_for(make_agent(role="admin"))

    everything = get(admin, "dashboard").json()
    only_bravo = get(admin, "dashboard", team=bravo.pk).json()

    assert everything["open"] == 3
    assert everything["open_by_team"] == [
        {"id": alpha.pk, "name": "Alpha", "open": 1},
        {"id": bravo.pk, "name": "Bravo", "open": 2},
    ]
    assert only_bravo["open"] == 2
    assert only_bravo["unassigned"] == 1
    assert only_bravo["team"] == bravo.pk
    assert [t["name"] for t in only_bravo["open_by_team"]] == ["Bravo"]


# Trends -----------------------------------------------------------------------------------


@pytest.fixture
def early_march(alpha, bravo):
    """Two cases from before 3 March (one resolved on the 2nd), then a week and a bit."""
    opened_before = make_case(team=alpha, created=datetime(2025, 3, 1, tzinfo=UTC))
    make_case(
        team=alpha,
        created=datetime(2025, 2, 20, tzinfo=UTC),
        status="resolved",
        resolved=datetime(2025, 3, 2, tzinfo=UTC),
    )
    make_case(
        team=alpha,
        created=MONDAY + 10 * HOUR,
        status="resolved",
        resolved=datetime(2025, 3, 4, 9, tzinfo=UTC),
    )
    make_case(team=alpha, created=datetime(2025, 3, 3, 23, 59, 59, tzinfo=UTC))
    make_case(team=alpha, created=datetime(2025, 3, 5, tzinfo=UTC))
    Case.objects.filter(pk=opened_before.pk).update(
        status="resolved", resolved_at=datetime(2025, 3, 5, 12, tzinfo=UTC)
    )
    make_case(team=alpha, created=datetime(2025, 3, 6, tzinfo=UTC))
    make_case(team=alpha, created=datetime(2025, 3, 12, tzinfo=UTC))
    for day in (3, 4, 5, 12):  # another team's cases, never counted for Ada
        make_case(team=bravo, created=datetime(2025, 3, day, tzinfo=UTC))


def test_trends_per_day_with_backlog_at_the_end_of_each_day(api, early_march):
    response = get(api, "trends", **{"from": "2025-03-03", "to": "2025-03-06"})

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["group_by"] == "day"
    assert body["from"] == "2025-03-03T00:00:00Z"
    assert body["to"] == "2025-03-06T00:00:00Z"
    assert body["buckets"] == [
        {"start": "2025-03-03", "created": 2, "resolved": 0, "backlog": 3},
        {"start": "2025-03-04", "created": 0, "resolved": 1, "backlog": 2},
        {"start": "2025-03-05", "created": 1, "resolved": 1, "backlog": 2},
    ]


def test_trends_per_week(api, early_march):
    body = get(api, "trends", group_by="week", **{"from": "2025-03-03", "to": "2025-03-17"}).json()

    assert body["buckets"] == [
        {"start": "2025-03-03", "created": 4, "resolved": 2, "backlog": 3},
        {"start": "2025-03-10", "created": 1, "resolved": 0, "backlog": 4},
    ]


def test_trends_first_week_starts_on_the_monday_before_a_midweek_from(api, early_march):
    body = get(api, "trends", group_by="week", **{"from": "2025-03-05", "to": "2025-03-10"}).json()

    # Before the 5th: four created, two resolved. The bucket is named after its Monday but
    # counts only from the 5th.
    assert body["buckets"] == [
        {"start": "2025-03-03", "created": 2, "resolved": 1, "backlog": 3},
    ]


# Performance ------------------------------------------------------------------------------


@pytest.fixture
def worked(alpha, bravo, ada, bob):
    """Ada answered four cases in 1h, 2h, 3h and 4h and resolved them in 10h to 40h; one of
    them was reopened. One unassigned case was answered in 30 minutes. Bob (Bravo) resolved
    one case in 5h. One old case lies before the period."""
    cases = []
    for hours in (1, 2, 3, 4):
        case = CaseFactory(team=alpha, assignee=ada, priority="high")
        if hours == 2:
            reopen_and_resolve(case)
        else:
            services.case_change_status(actor=None, case=case, status="resolved")
        cases.append(case)
        Case.objects.filter(pk=case.pk).update(
            created_at=MONDAY,
            first_response_at=MONDAY + hours * HOUR,
            resolved_at=MONDAY + 10 * hours * HOUR,
        )
    make_case(team=alpha, created=MONDAY + HOUR, first_response=timedelta(minutes=30))
    make_case(
        team=bravo,
        created=MONDAY,
        status="resolved",
        first_response=HOUR,
        resolved=5 * HOUR,
        assignee=bob,
    )
    make_case(
        team=alpha,
        created=MONDAY - timedelta(days=20),
        status="resolved",
        first_response=HOUR,
        resolved=2 * HOUR,
        assignee=ada,
    )
    return cases


WEEK = {"from": "2025-03-03", "to": "2025-03-10"}
ADA_ROW = {
    "label": "Ada Lovelace",
    "created": 4,
    "first_responses": 4,
    "first_response_median_seconds": 2.5 * 3600,
    "first_response_p90_seconds": 3.7 * 3600,
    "handled": 4,
    "resolution_median_seconds": 25 * 3600,
    "resolution_p90_seconds": 37 * 3600,
    "reopened": 1,
    "reopen_rate": 0.25,
}
UNASSIGNED_ROW = {
    "key": None,
    "label": "Unassigned",
    "created": 1,
    "first_responses": 1,
    "first_response_median_seconds": 1800.0,
    "first_response_p90_seconds": 1800.0,
    "handled": 0,
    "resolution_median_seconds": None,
    "resolution_p90_seconds": None,
    "reopened": 0,
    "reopen_rate": None,
}


def test_performance_per_agent_median_p90_and_reopen_rate(api, ada, worked):
    response = get(api, "performance", **WEEK)

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["group_by"] == "agent"
    assert body["rows"] == [{"key": ada.pk, **ADA_ROW}, UNASSIGNED_ROW]


def test_performance_per_team_and_priority_for_an_admin(alpha, bravo, worked):
    admin = client_for(make_agent(role="admin"))

    by_team = get(admin, "performance", group_by="team", **WEEK).json()["rows"]
    by_priority = get(admin, "performance", group_by="priority", **WEEK).json()["rows"]

    assert [(r["key"], r["label"], r["created"], r["handled"]) for r in by_team] == [
        (alpha.pk, "Alpha", 5, 4),
        (bravo.pk, "Bravo", 1, 1),
    ]
    alpha_row = by_team[0]
    assert alpha_row["first_response_median_seconds"] == 2 * 3600  # 0.5h, 1h, 2h, 3h, 4h
    assert alpha_row["first_response_p90_seconds"] == pytest.approx(3.6 * 3600)
    assert alpha_row["resolution_median_seconds"] == 25 * 3600
    assert by_team[1]["resolution_median_seconds"] == 5 * 3600
    assert [(r["key"], r["label"], r["created"]) for r in by_priority] == [
        ("normal", "Normal", 2),
        ("high", "High", 4),
    ]


def test_performance_counts_only_what_the_caller_may_see(ada, bob, worked, bravo):
    bobs = get(client_for(bob), "performance", **WEEK).json()["rows"]
    ada_asks_for_bravo = get(client_for(ada), "performance", team=bravo.pk, **WEEK)

    assert [(r["key"], r["created"], r["handled"]) for r in bobs] == [(bob.pk, 1, 1)]
    assert bobs[0]["resolution_median_seconds"] == 5 * 3600
    assert ada_asks_for_bravo.status_code == 200
    assert ada_asks_for_bravo.json()["rows"] == []


# Reports ----------------------------------------------------------------------------------


def test_report_as_json_is_the_performance_or_trends_body(api, ada, worked, early_march):
    performance = get(api, "reports", group_by="agent", **WEEK)
    trends = get(api, "reports", group_by="day", **{"from": "2025-03-03", "to": "2025-03-04"})

    assert performance.status_code == 200
    assert performance.json() == get(api, "performance", group_by="agent", **WEEK).json()
    assert trends.json()["buckets"] == [
        {"start": "2025-03-03", "created": 7, "resolved": 2, "backlog": 6},
    ]


def test_report_as_csv_download(api, ada, alpha, worked):
    response = get(api, "reports", format="csv", **WEEK)

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        'attachment; filename="analytics-team-20250303T0000-20250310T0000.csv"'
    )
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows == [
        [
            "key",
            "label",
            "created",
            "first_responses",
            "first_response_median_seconds",
            "first_response_p90_seconds",
            "handled",
            "resolution_median_seconds",
            "resolution_p90_seconds",
            "reopened",
            "reopen_rate",
        ],
        [str(alpha.pk), "Alpha", "5", "5", "7200.0", "12960.0", "4", "90000.0", "133200.0"]
        + ["1", "0.25"],
    ]


def test_report_csv_of_daily_trends_for_one_team(api, alpha, early_march):
    period = {"from": "2025-03-04", "to": "2025-03-07"}
    response = get(api, "reports", format="csv", group_by="day", team=alpha.pk, **period)

    assert response["Content-Disposition"] == (
        f'attachment; filename="analytics-day-team{alpha.pk}-20250304T0000-20250307T0000.csv"'
    )
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows == [
        ["start", "created", "resolved", "backlog"],
        ["2025-03-04", "0", "1", "2"],
        ["2025-03-05", "1", "1", "2"],
        ["2025-03-06", "1", "0", "3"],
    ]


def test_report_csv_defuses_spreadsheet_formulas_in_names(alpha):
    sneaky = make_agent(team=alpha, first_name="=HYPERLINK(1)", last_name="")
    make_case(team=alpha, created=MONDAY, assignee=sneaky)

    response = get(client_for(sneaky), "reports", format="csv", group_by="agent", **WEEK)

    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[1][:3] == [str(sneaky.pk), "'=HYPERLINK(1)", "1"]


# Visibility -------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_an_agent_never_sees_another_teams_numbers(endpoint, alpha, bravo, bob):
    for day in (3, 4):
        make_case(
            team=bravo,
            created=datetime(2025, 3, day, tzinfo=UTC),
            status="resolved",
            first_response=HOUR,
            resolved=2 * HOUR,
            assignee=bob,
        )
    ada = make_agent(team=alpha)
    params = {**WEEK, "group_by": "day"} if endpoint == "trends" else WEEK

    for team in (None, bravo.pk):
        query = params if team is None else {**params, "team": team}
        body = get(client_for(ada), endpoint, **query).json()
        assert body.get("open", 0) == 0
        assert body.get("period", {}).get("resolved", 0) == 0
        assert body.get("open_by_team", []) == []
        assert body.get("rows", []) == []
        assert {b["created"] for b in body.get("buckets", [])} <= {0}
        assert {b["backlog"] for b in body.get("buckets", [])} <= {0}
    bobs = get(client_for(bob), endpoint, **params).json()
    if endpoint == "dashboard":
        assert bobs["period"] == {"created": 2, "resolved": 2}
    elif endpoint == "trends":
        assert sum(b["created"] for b in bobs["buckets"]) == 2
    else:
        assert [(r["label"], r["handled"]) for r in bobs["rows"]] == [
            ("Bravo" if endpoint == "reports" else "Bob Builder", 2)
        ]


def test_signing_in_is_required():
    assert APIClient().get("/api/v1/analytics/dashboard").status_code in (401, 403)


# Bad parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "params", "bad"),
    [
        ("dashboard", {"from": "yesterday"}, {"from"}),
        ("trends", {"to": "2025-13-01"}, {"to"}),
        ("trends", {"from": "2025-03-10", "to": "2025-03-01"}, {"from"}),
        ("trends", {"from": "2025-03-01", "to": "2025-03-01"}, {"from"}),
        ("performance", {"from": "2024-01-01", "to": "2025-03-01"}, {"from"}),
        ("reports", {"from": "2030-01-01"}, {"from"}),
        ("dashboard", {"from": "0001-01-01", "to": "0001-01-05"}, {"from", "to"}),
        ("dashboard", {"to": "9999-12-31T23:59:59-14:00"}, {"to"}),
        ("dashboard", {"from": "2025-03-01T10:00:00 02:00"}, {"from"}),
        ("trends", {"group_by": "month"}, {"group_by"}),
        ("trends", {"group_by": "agent"}, {"group_by"}),
        ("performance", {"group_by": "day"}, {"group_by"}),
        ("performance", {"team": "abc"}, {"team"}),
        ("performance", {"team": "0"}, {"team"}),
        ("dashboard", {"team": "999999"}, {"team"}),
        ("dashboard", {"team": "99999999999999999999999"}, {"team"}),
        ("dashboard", {"to": "2025-02-30"}, {"to"}),
        ("dashboard", {"to": "2025-03-01T25:00"}, {"to"}),
        ("dashboard", {"from": "\x00"}, {"from"}),
        ("reports", {"format": "xml"}, {"format"}),
        ("reports", {"format": "csv", "group_by": "year", "to": "x"}, {"group_by", "to"}),
    ],
)
def test_bad_parameters_answer_400_naming_each_parameter(api, endpoint, params, bad):
    response = get(api, endpoint, **params)

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == bad
    assert all(isinstance(m, str) and m for messages in body.values() for m in messages)


def test_a_period_of_exactly_366_days_and_datetimes_with_offsets_are_fine(api):
    whole_year = get(api, "trends", **{"from": "2024-01-01", "to": "2025-01-01"})
    offset = get(api, "dashboard", **{"from": "2025-03-01T10:00:00+02:00", "to": "2025-03-02"})

    assert whole_year.status_code == 200
    assert len(whole_year.json()["buckets"]) == 366
    assert offset.status_code == 200
    assert offset.json()["from"] == "2025-03-01T08:00:00Z"


# Query counts -----------------------------------------------------------------------------


def _populate(count: int, *, team, agents) -> None:
    priorities = ["low", "normal", "high", "urgent"]
    for i in range(count):
        created = MONDAY + timedelta(hours=i)
        case = make_case(
            team=team,
            created=created,
            status="resolved" if i % 3 else None,
            first_response=timedelta(minutes=10 + i),
            resolved=timedelta(hours=1 + i) if i % 3 else None,
            assignee=agents[i % len(agents)],
            priority=priorities[i % 4],
        )
        if i % 5 == 0 and i % 3:
            services.case_change_status(actor=None, case=case, status="in_progress")


@pytest.mark.parametrize(
    ("endpoint", "params"),
    [
        ("dashboard", {}),
        ("trends", {"group_by": "day"}),
        ("trends", {"group_by": "week"}),
        ("performance", {"group_by": "agent"}),
        ("performance", {"group_by": "team"}),
        ("reports", {"group_by": "priority"}),
        ("reports", {"group_by": "channel", "format": "csv"}),
        ("reports", {"group_by": "week", "format": "csv"}),
    ],
)
def test_queries_do_not_grow_with_the_number_of_cases(endpoint, params, alpha):
    agents = [make_agent(team=alpha) for _ in range(3)]
    api = client_for(agents[0])
    query = {"from": "2025-03-01", "to": "2025-04-01", "team": alpha.pk, **params}
    get(api, endpoint, **query)  # the caller's teams are read once per request user

    _populate(10, team=alpha, agents=agents)
    with CaptureQueriesContext(connection) as ten:
        assert get(api, endpoint, **query).status_code == 200
    _populate(40, team=alpha, agents=agents)
    with CaptureQueriesContext(connection) as fifty:
        assert get(api, endpoint, **query).status_code == 200

    assert len(ten) == len(fifty)
    assert len(ten) <= 6
