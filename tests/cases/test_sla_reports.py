"""/api/v1/analytics/sla and the admin's SLA report page, as an integration and an admin use them.

The SLA clock is not what is under test: cases are made through the factories and their SLA
columns and timeline events are then set directly, so that every deadline, conclusion and
bucket is known exactly. March 2025 is the period; "now" figures use deadlines around the
real present.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from cases import services
from cases.choices import IntakeOutcome, TimelineKind
from cases.models import Case, SlaPolicy, SlaTarget, TimelineEvent
from tests.cases.factories import CaseFactory, TeamFactory, make_agent

pytestmark = pytest.mark.django_db

MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
MARCH = {"from": "2025-03-01", "to": "2025-04-01"}
URL = "/api/v1/analytics/sla"
REPORT_PAGE = "/admin/cases/slapolicy/report/"


def at(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2025, 3, day, hour, minute, tzinfo=UTC)


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


@pytest.fixture
def boss():
    return make_agent(role="admin", first_name="Grace", last_name="Hopper")


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def policy(name: str, *, default: bool = False, next_response_for: tuple[str, ...] = ()):
    made = SlaPolicy.objects.create(name=name, is_default=default, order=10)
    for priority in ("low", "normal", "high", "urgent"):
        SlaTarget.objects.create(policy=made, priority=priority, metric="first_response",
                                 minutes=60)  # fmt: skip
        SlaTarget.objects.create(policy=made, priority=priority, metric="resolution",
                                 minutes=480)  # fmt: skip
    for priority in next_response_for:
        SlaTarget.objects.create(policy=made, priority=priority, metric="next_response",
                                 minutes=120)  # fmt: skip
    return made


@pytest.fixture
def standard():
    return policy("Standard", default=True, next_response_for=("urgent", "normal"))


@pytest.fixture
def vip():
    return policy("VIP")


SLA_COLUMNS = {
    f"sla_{metric}_{part}": "" if part == "state" else None
    for metric in ("first_response", "next_response", "resolution")
    for part in ("due", "state", "risk_at")
}


def sla_case(*, team, sla_policy=None, created: datetime, status: str | None = None, **columns):
    """A case made by the services, then given exactly the SLA columns written here (whatever
    the SLA clock computed for it is overwritten: the report is under test, not the clock)."""
    extra = {key: columns.pop(key) for key in ("priority", "assignee") if key in columns}
    case = CaseFactory(team=team, **extra)
    if status:
        services.case_change_status(actor=None, case=case, status=status)
    Case.objects.filter(pk=case.pk).update(
        created_at=created, sla_policy=sla_policy, sla_due=None, **{**SLA_COLUMNS, **columns}
    )
    case.refresh_from_db()
    return case


def event(case: Case, kind: str, when: datetime, **data) -> TimelineEvent:
    made = TimelineEvent.objects.create(case=case, kind=kind, summary=kind, data=data)
    TimelineEvent.objects.filter(pk=made.pk).update(created_at=when)
    return made


@pytest.fixture
def march(alpha, bravo, ada, bob, standard, vip):
    """The month every compliance figure below is read from (see each case's comment)."""
    # Alpha, urgent: first response in time (3rd), resolution a day late (breached on the
    # 3rd, at its deadline); one next response in time, one late, an auto-ack in between.
    first = sla_case(
        team=alpha, sla_policy=standard, created=at(3, 9), priority="urgent", assignee=ada,
        status="resolved", first_response_at=at(3, 9, 30), sla_first_response_due=at(3, 10),
        resolved_at=at(4, 10), sla_resolution_due=at(3, 17),
    )  # fmt: skip
    event(first, TimelineKind.MESSAGE_RECEIVED, at(3, 9))
    event(first, TimelineKind.MESSAGE_SENT, at(3, 9, 30), outcome=IntakeOutcome.THREADED)
    event(first, TimelineKind.MESSAGE_RECEIVED, at(3, 11))
    event(first, TimelineKind.MESSAGE_SENT, at(3, 11, 30), outcome=IntakeOutcome.AGENT_REPLY)
    event(first, TimelineKind.MESSAGE_RECEIVED, at(3, 12))
    event(first, TimelineKind.SLA_BREACHED, at(3, 14), metric="next_response",
          due=at(3, 14).isoformat())  # fmt: skip
    event(first, TimelineKind.MESSAGE_SENT, at(3, 15), outcome=IntakeOutcome.AGENT_REPLY)
    event(first, TimelineKind.MESSAGE_RECEIVED, at(3, 16))
    event(first, TimelineKind.MESSAGE_SENT, at(3, 16, 1), outcome=IntakeOutcome.AUTO_ACK)
    # Alpha, normal, unassigned, still open: never answered (first response breached on the
    # 4th) and not resolved by the 10th (resolution breached on the 10th).
    sla_case(
        team=alpha, sla_policy=standard, created=at(4, 9), status="in_progress",
        sla_first_response_due=at(4, 17), sla_resolution_due=at(10, 12),
    )  # fmt: skip
    # Bravo, high, VIP policy: everything in time. Its policy has no next-response target,
    # so its answer to a second message counts for nothing.
    third = sla_case(
        team=bravo, sla_policy=vip, created=at(5, 8), priority="high", assignee=bob,
        status="resolved", first_response_at=at(5, 10), sla_first_response_due=at(5, 12),
        resolved_at=at(6, 9), sla_resolution_due=at(7, 9),
    )  # fmt: skip
    event(third, TimelineKind.MESSAGE_SENT, at(5, 10))
    event(third, TimelineKind.MESSAGE_RECEIVED, at(5, 11))
    event(third, TimelineKind.MESSAGE_SENT, at(5, 18))
    # Alpha, paused while awaiting the customer: its passed deadline is no breach.
    sla_case(
        team=alpha, sla_policy=standard, created=at(5, 9), status="awaiting_customer",
        sla_first_response_due=at(5, 10), sla_first_response_state="paused",
    )  # fmt: skip
    # Alpha, closed (spam) before its first-response deadline without an answer: resolving
    # concludes the first response, in time (met on the 6th), as the SLA clock has it.
    sla_case(
        team=alpha, sla_policy=standard, created=at(6, 9), status="closed",
        resolved_at=at(6, 9, 5), sla_first_response_due=at(6, 10),
    )  # fmt: skip
    # Alpha, concluded in February: outside the period.
    sla_case(
        team=alpha, sla_policy=standard, created=datetime(2025, 2, 20, 9, tzinfo=UTC),
        first_response_at=datetime(2025, 2, 20, 9, 5, tzinfo=UTC),
        sla_first_response_due=datetime(2025, 2, 20, 10, tzinfo=UTC),
    )  # fmt: skip
    # A duplicate merged into the first case: left out.
    duplicate = sla_case(
        team=alpha, sla_policy=standard, created=at(3, 9), first_response_at=at(3, 9, 5),
        sla_first_response_due=at(3, 10),
    )  # fmt: skip
    services.case_merge(actor=None, source=duplicate, target=first)


def rows(body: dict, metric: str) -> list[tuple]:
    return [
        (row["label"], row["met"], row["breached"], row["compliance_percent"])
        for row in body["compliance"][metric]
    ]


# Compliance -------------------------------------------------------------------------------


def test_compliance_per_team_counts_each_target_once_when_it_concludes(march, boss):
    response = client_for(boss).get(URL, {**MARCH, "group_by": "team"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["from"] == "2025-03-01T00:00:00Z"
    assert body["to"] == "2025-04-01T00:00:00Z"
    assert (body["group_by"], body["interval"]) == ("team", "day")
    assert rows(body, "first_response") == [("Alpha", 2, 1, 66.7), ("Bravo", 1, 0, 100.0)]
    assert rows(body, "resolution") == [("Alpha", 0, 2, 0.0), ("Bravo", 1, 0, 100.0)]
    assert rows(body, "next_response") == [("Alpha", 1, 1, 50.0)]
    assert body["totals"] == {
        "first_response": {"met": 3, "breached": 1, "compliance_percent": 75.0},
        "next_response": {"met": 1, "breached": 1, "compliance_percent": 50.0},
        "resolution": {"met": 1, "breached": 2, "compliance_percent": 33.3},
    }


@pytest.mark.parametrize(
    ("group_by", "first_response", "resolution"),
    [
        (
            "policy",
            [("Standard", 2, 1, 66.7), ("VIP", 1, 0, 100.0)],
            [("Standard", 0, 2, 0.0), ("VIP", 1, 0, 100.0)],
        ),
        (
            "agent",
            [
                ("Ada Lovelace", 1, 0, 100.0),
                ("Bob Builder", 1, 0, 100.0),
                ("Unassigned", 1, 1, 50.0),
            ],
            [("Ada Lovelace", 0, 1, 0.0), ("Bob Builder", 1, 0, 100.0), ("Unassigned", 0, 1, 0.0)],
        ),  # fmt: skip
        (
            "priority",
            [("Normal", 1, 1, 50.0), ("High", 1, 0, 100.0), ("Urgent", 1, 0, 100.0)],
            [("Normal", 0, 1, 0.0), ("High", 1, 0, 100.0), ("Urgent", 0, 1, 0.0)],
        ),
    ],
)
def test_compliance_per_policy_agent_and_priority(march, boss, group_by, first_response,
                                                  resolution):  # fmt: skip
    body = client_for(boss).get(URL, {**MARCH, "group_by": group_by}).json()

    assert rows(body, "first_response") == first_response
    assert rows(body, "resolution") == resolution


def test_group_keys_are_ids_or_priority_values(march, boss, standard, ada):
    by_policy = client_for(boss).get(URL, {**MARCH, "group_by": "policy"}).json()
    by_agent = client_for(boss).get(URL, {**MARCH, "group_by": "agent"}).json()
    by_priority = client_for(boss).get(URL, {**MARCH, "group_by": "priority"}).json()

    assert by_policy["compliance"]["first_response"][0]["group"] == standard.pk
    assert [row["group"] for row in by_agent["compliance"]["first_response"]] == [
        ada.pk,
        by_agent["compliance"]["first_response"][1]["group"],
        None,
    ]
    assert [row["group"] for row in by_priority["compliance"]["resolution"]] == [
        "normal",
        "high",
        "urgent",
    ]


def test_agents_see_only_their_teams_cases(march, ada):
    body = client_for(ada).get(URL, {**MARCH, "group_by": "team"}).json()

    assert rows(body, "first_response") == [("Alpha", 2, 1, 66.7)]
    assert rows(body, "resolution") == [("Alpha", 0, 2, 0.0)]
    assert body["totals"]["first_response"] == {
        "met": 2,
        "breached": 1,
        "compliance_percent": 66.7,
    }


def test_the_team_parameter_narrows_an_admins_report(march, boss, bravo):
    body = client_for(boss).get(URL, {**MARCH, "group_by": "team", "team": bravo.pk}).json()

    assert body["team"] == bravo.pk
    assert rows(body, "first_response") == [("Bravo", 1, 0, 100.0)]
    assert rows(body, "next_response") == []


def test_a_period_without_concluded_targets_has_no_rows_and_null_percentages(march, boss):
    body = client_for(boss).get(URL, {"from": "2024-01-01", "to": "2024-02-01"}).json()

    assert body["compliance"] == {"first_response": [], "next_response": [], "resolution": []}
    assert body["totals"]["resolution"] == {"met": 0, "breached": 0, "compliance_percent": None}
    assert {bucket["compliance_percent"] for bucket in body["trends"]} == {None}


# Trends -----------------------------------------------------------------------------------


def test_daily_trend_puts_met_targets_on_their_day_and_breaches_on_their_deadline(march, boss):
    body = client_for(boss).get(URL, {**MARCH, "interval": "day"}).json()

    trend = {bucket["period_start"]: bucket for bucket in body["trends"]}
    assert len(trend) == 31
    busy = {day: (b["met"], b["breached"]) for day, b in trend.items() if b["met"] or b["breached"]}
    assert busy == {
        "2025-03-03": (2, 2),  # first response and a next response met; resolution, next late
        "2025-03-04": (0, 1),  # never answered
        "2025-03-05": (1, 0),
        "2025-03-06": (2, 0),  # the spam case's first response, the third case's resolution
        "2025-03-10": (0, 1),  # the open case's resolution deadline
    }
    third = trend["2025-03-03"]
    assert third["compliance_percent"] == 50.0
    assert third["metrics"] == {
        "first_response": {"met": 1, "breached": 0, "compliance_percent": 100.0},
        "next_response": {"met": 1, "breached": 1, "compliance_percent": 50.0},
        "resolution": {"met": 0, "breached": 1, "compliance_percent": 0.0},
    }


def test_weekly_trend_buckets_start_on_monday(march, boss):
    body = client_for(boss).get(URL, {**MARCH, "interval": "week"}).json()

    weeks = [(b["period_start"], b["met"], b["breached"]) for b in body["trends"]]
    assert weeks[:3] == [("2025-02-24", 0, 0), ("2025-03-03", 5, 3), ("2025-03-10", 0, 1)]
    assert weeks[-1][0] == "2025-03-31"


# Now --------------------------------------------------------------------------------------


@pytest.fixture
def present(alpha, bravo, standard):
    """Open cases around the real present (created now, so they miss March entirely)."""
    now = timezone.now()
    # A first response overdue (and a resolution at risk): breached.
    sla_case(
        team=alpha, sla_policy=standard, created=now - 3 * HOUR,
        sla_first_response_due=now - HOUR, sla_first_response_risk_at=now - 2 * HOUR,
        sla_resolution_due=now + HOUR, sla_resolution_risk_at=now - MINUTE,
    )  # fmt: skip
    # A first response at risk.
    sla_case(
        team=alpha, sla_policy=standard, created=now - HOUR,
        sla_first_response_due=now + HOUR, sla_first_response_risk_at=now - 10 * MINUTE,
    )  # fmt: skip
    # A customer waiting past the next-response deadline.
    sla_case(
        team=bravo, sla_policy=standard, created=now - DAY, status="in_progress",
        first_response_at=now - 20 * HOUR, waiting_since=now - 5 * HOUR,
        sla_next_response_due=now - 3 * HOUR, sla_next_response_risk_at=now - 4 * HOUR,
    )  # fmt: skip
    # Answered since: the old next-response deadline no longer runs.
    sla_case(
        team=bravo, sla_policy=standard, created=now - DAY, status="in_progress",
        first_response_at=now - 20 * HOUR, waiting_since=None,
        sla_next_response_due=now - 3 * HOUR, sla_next_response_risk_at=now - 4 * HOUR,
    )  # fmt: skip
    # Paused, and resolved: neither counts.
    sla_case(
        team=alpha, sla_policy=standard, created=now - DAY, status="awaiting_customer",
        sla_resolution_due=now - HOUR, sla_resolution_state="paused",
    )  # fmt: skip
    sla_case(
        team=alpha, sla_policy=standard, created=now - DAY, status="resolved",
        resolved_at=now - 2 * HOUR, sla_resolution_due=now - HOUR,
    )  # fmt: skip


def test_now_counts_open_cases_at_risk_and_breached_per_team_and_metric(present, boss):
    body = client_for(boss).get(URL).json()

    assert body["now"] == {
        "at_risk": 1,
        "breached": 2,
        "by_metric": {
            "first_response": {"at_risk": 1, "breached": 1},
            "next_response": {"at_risk": 0, "breached": 1},
            "resolution": {"at_risk": 1, "breached": 0},
        },
        "by_team": [
            {"team": body["now"]["by_team"][0]["team"], "label": "Alpha", "at_risk": 1,
             "breached": 1},
            {"team": body["now"]["by_team"][1]["team"], "label": "Bravo", "at_risk": 0,
             "breached": 1},
        ],
    }  # fmt: skip


def test_now_is_scoped_to_the_callers_teams(present, ada):
    body = client_for(ada).get(URL).json()

    assert (body["now"]["at_risk"], body["now"]["breached"]) == (1, 1)
    assert [row["label"] for row in body["now"]["by_team"]] == ["Alpha"]


# Distributions ----------------------------------------------------------------------------


def test_first_response_and_resolution_time_distributions(alpha, boss):
    for minutes in (10, 20, 50, 180, 1800):
        sla_case(team=alpha, created=at(10, 8), first_response_at=at(10, 8) + minutes * MINUTE)
    sla_case(team=alpha, created=at(11, 8), status="resolved", resolved_at=at(14, 8))
    sla_case(team=alpha, created=at(11, 8), first_response_at=at(1, 1) - DAY)  # February

    body = client_for(boss).get(URL, MARCH).json()

    first = body["distributions"]["first_response"]
    assert first["count"] == 5
    assert first["percentiles"] == {"p50": 3000.0, "p75": 10800.0, "p90": 69120.0,
                                    "p95": 88560.0}  # fmt: skip
    counts = {bucket["label"]: bucket["count"] for bucket in first["histogram"]}
    assert counts == {
        "< 15 min": 1, "15 min – 30 min": 1, "30 min – 1 h": 1, "1 h – 2 h": 0, "2 h – 4 h": 1,
        "4 h – 8 h": 0, "8 h – 1 d": 0, "1 d – 2 d": 1, "2 d – 5 d": 0, "5 d – 10 d": 0,
        "≥ 10 d": 0,
    }  # fmt: skip
    assert first["histogram"][0] == {"label": "< 15 min", "lower_seconds": None,
                                     "upper_seconds": 900, "count": 1}  # fmt: skip
    resolution = body["distributions"]["resolution"]
    assert resolution["count"] == 1
    assert resolution["percentiles"] == dict.fromkeys(["p50", "p75", "p90", "p95"], 259200.0)
    assert [b["count"] for b in resolution["histogram"] if b["count"]] == [1]


# Bad input, access, cost ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"group_by": "customer"}, "group_by"),
        ({"interval": "month"}, "interval"),
        ({"from": "2025-13-01"}, "from"),
        ({"from": "2025-03-10", "to": "2025-03-01"}, "from"),
        ({"from": "2020-01-01", "to": "2025-01-01"}, "from"),
        ({"team": "abc"}, "team"),
        ({"team": "999999"}, "team"),
    ],
)
def test_bad_parameters_answer_400_naming_the_parameter(boss, params, parameter):
    response = client_for(boss).get(URL, params)

    assert response.status_code == 400
    assert list(response.json()) == [parameter]


def test_another_teams_filter_shows_an_agent_none_of_its_cases(march, ada, bravo):
    body = client_for(ada).get(URL, {**MARCH, "team": bravo.pk}).json()

    assert body["compliance"] == {"first_response": [], "next_response": [], "resolution": []}
    assert body["distributions"]["first_response"]["count"] == 0


def test_anonymous_callers_are_refused():
    assert APIClient().get(URL).status_code == 401


def _populate(count: int, *, team, policy_) -> None:
    for i in range(count):
        case = sla_case(
            team=team, sla_policy=policy_, created=at(12, 8), status="resolved",
            first_response_at=at(12, 9), sla_first_response_due=at(12, 8, i % 60),
            resolved_at=at(13, 8), sla_resolution_due=at(14, 8),
        )  # fmt: skip
        event(case, TimelineKind.MESSAGE_SENT, at(12, 9))
        event(case, TimelineKind.MESSAGE_RECEIVED, at(12, 10))
        event(case, TimelineKind.MESSAGE_SENT, at(12, 11))


@pytest.mark.parametrize("group_by", ["policy", "team", "agent", "priority"])
def test_the_number_of_queries_does_not_grow_with_the_cases(alpha, ada, standard, group_by):
    api = client_for(ada)
    query = {**MARCH, "group_by": group_by, "interval": "week"}
    _populate(3, team=alpha, policy_=standard)
    api.get(URL, query)  # the caller's teams are read once per request user
    with CaptureQueriesContext(connection) as few:
        assert api.get(URL, query).status_code == 200
    _populate(30, team=alpha, policy_=standard)
    with CaptureQueriesContext(connection) as many:
        body = api.get(URL, query).json()

    assert len(few) == len(many) <= 10
    assert body["totals"]["next_response"]["met"] == 33
    assert body["distributions"]["first_response"]["count"] == 33


def test_the_schema_documents_the_endpoint_and_its_parameters(boss):
    schema = client_for(boss).get("/api/schema/", {"format": "json"}).json()

    operation = schema["paths"]["/api/v1/analytics/sla"]["get"]
    names = {parameter["name"] for parameter in operation["parameters"]}
    assert {"from", "to", "team", "group_by", "interval"} <= names
    assert {"200", "400"} <= set(operation["responses"])


# The admin's report page ------------------------------------------------------------------


def admin_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_admin_report_shows_the_same_numbers_as_the_api(march, boss):
    query = {"start": "2025-03-01", "until": "2025-03-31", "group_by": "team", "interval": "week"}
    page = admin_client(boss).get(REPORT_PAGE, query)
    api = client_for(boss).get(URL, {**MARCH, "group_by": "team", "interval": "week"}).json()

    assert page.status_code == 200
    report = page.context["report"]
    assert report.totals["first_response"].met == api["totals"]["first_response"]["met"] == 3
    assert report.totals["resolution"].breached == api["totals"]["resolution"]["breached"] == 2
    html = page.content.decode()
    assert "66.7" in html
    assert "33.3" in html
    assert re.search(r"Alpha.*?50\.0", html, re.S)
    link = page.context["api_url"]
    assert link.startswith(f"{URL}?")
    assert "to=2025-04-01" in link
    assert "group_by=team" in link


def test_a_lead_sees_the_report_page_for_their_teams_only(march, alpha):
    lead = make_agent(team=alpha, role="lead")

    page = admin_client(lead).get(REPORT_PAGE, {"start": "2025-03-01", "until": "2025-03-31",
                                                "group_by": "team"})  # fmt: skip

    assert page.status_code == 200
    labels = [row.label for row in page.context["report"].compliance["first_response"]]
    assert labels == ["Alpha"]


def test_the_report_page_shows_form_errors_for_a_bad_period(boss):
    page = admin_client(boss).get(REPORT_PAGE, {"start": "2025-03-10", "until": "2025-03-01"})

    assert page.status_code == 200
    assert page.context["report"] is None
    assert "must not be before" in page.content.decode()


def test_plain_agents_do_not_enter_the_admin(ada):
    page = admin_client(ada).get(REPORT_PAGE)

    assert page.status_code == 302
    assert "/admin/login/" in page["Location"]
