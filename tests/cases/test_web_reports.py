"""The reports (`/reports/`) through HTTP: each report for a lead and an admin, who sees which
cases, 403 for agents, the period and grouping controls, CSV downloads that match the tables,
links into the queues, and a constant number of queries, cold cache or warm.

Cases are made through the factories and services, then backdated with a queryset update so
every bucket and duration is known exactly (March 2025, a custom period).
"""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import UTC, date, datetime, timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from cases import services
from cases.models import Case
from crm.choices import Role
from tests.cases.factories import CaseFactory, OrganizationFactory, TeamFactory, make_agent

pytestmark = pytest.mark.django_db

URL = "/reports/"
MARCH = {"period": "custom", "start": "2025-03-01", "until": "2025-03-31"}
MAR = datetime(2025, 3, 3, 9, tzinfo=UTC)  # a Monday
HOUR = timedelta(hours=1)
REPORTS = {
    "sla": ["sla-trend", "sla-groups", "sla-counts"],
    "times": ["times-first-response", "times-resolution", "times-percentiles"],
    "volume": ["volume-trend", "volume-groups"],
    "agents": ["agents-work", "agents-times"],
}


@pytest.fixture
def alpha():
    return TeamFactory(name="Alpha")


@pytest.fixture
def bravo():
    return TeamFactory(name="Bravo")


@pytest.fixture
def lead(alpha, bravo):
    """Leads Alpha; a plain member of Bravo (whose figures a report must still leave out)."""
    user = make_agent(team=alpha, role=Role.LEAD, first_name="Lena", last_name="Lead")
    services_add_member(bravo, user)
    return user


def services_add_member(team, user) -> None:
    from crm.models import TeamMembership

    TeamMembership.objects.create(team=team, user=user, is_lead=False)


@pytest.fixture
def admin():
    return make_agent(role=Role.ADMIN, first_name="Ada", last_name="Admin")


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def make_case(*, team, created: datetime, first_response=None, resolved=None, **fields) -> Case:
    """A case resolved (if `resolved`) through the services, then backdated."""
    case = CaseFactory(team=team, **fields)
    if resolved is not None:
        services.case_change_status(actor=None, case=case, status="resolved")
    Case.objects.filter(pk=case.pk).update(
        created_at=created,
        first_response_at=created + first_response if first_response else None,
        resolved_at=created + resolved if resolved else None,
    )
    return case


def page(client: Client, status: int = 200, **params) -> str:
    response = client.get(URL, params)
    assert response.status_code == status, response.content[:800]
    return response.content.decode()


def chart_rows(body: str, chart_id: str) -> list[tuple[str, str | None, list[str]]]:
    """(label, link, formatted values) per row of a chart's table."""
    found = re.search(rf'<figure class="chart" id="{chart_id}">.*?</figure>', body, re.S)
    assert found, f"no chart {chart_id}"
    rows = []
    for row in re.findall(r'<tr><th scope="row">(.*?)</tr>', found.group(0), re.S):
        link = re.search(r'<a href="([^"]*)">([^<]*)</a>', row)
        label = link.group(2) if link else re.match(r"([^<]*)</th>", row).group(1)
        values = re.findall(r'<td class="num">([^<]*)</td>', row)
        rows.append((html.unescape(label), html.unescape(link.group(1)) if link else None, values))
    return rows


def csv_link(body: str, chart_id: str) -> str:
    found = re.search(rf'href="(\?[^"]*chart={chart_id})" download', body)
    assert found, f"no CSV link for {chart_id}"
    return URL + html.unescape(found.group(1))


def labels(body: str, chart_id: str) -> list[str]:
    return [label for label, _, _ in chart_rows(body, chart_id)]


# --- who sees what ------------------------------------------------------------------------


def test_a_plain_agent_gets_a_clear_403(alpha):
    agent = make_agent(team=alpha)

    response = signed_in(agent).get(URL, {"report": "volume"})

    assert response.status_code == 403
    assert "Reports are for team leads and admins." in response.content.decode()


def test_signed_out_visitors_are_sent_to_sign_in():
    response = Client().get(URL)

    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


@pytest.mark.parametrize("report", REPORTS)
@pytest.mark.parametrize("who", ["lead", "admin"])
def test_every_report_renders_its_charts_for_leads_and_admins(report, who, request, alpha):
    case = make_case(team=alpha, created=MAR, first_response=HOUR, resolved=5 * HOUR)
    Case.objects.filter(pk=case.pk).update(sla_first_response_due=MAR + 2 * HOUR)
    viewer = request.getfixturevalue(who)

    body = page(signed_in(viewer), report=report, **MARCH)

    assert 'aria-current="page">' in body
    for chart_id in REPORTS[report]:
        assert f'id="{chart_id}"' in body
        assert f"chart={chart_id}" in body  # its CSV link
    assert 'data-chart="' in body  # something to draw


def test_a_lead_sees_only_the_teams_they_lead(lead, admin, alpha, bravo):
    make_case(team=alpha, created=MAR, channel="email")
    make_case(team=bravo, created=MAR, channel="phone", assignee=lead)  # Bravo, theirs even
    make_case(team=bravo, created=MAR, channel="chat")

    lead_body = page(signed_in(lead), report="volume", group_by="team", **MARCH)
    admin_body = page(signed_in(admin), report="volume", group_by="team", **MARCH)

    assert labels(lead_body, "volume-groups") == ["Alpha"]
    assert [(r[0], r[2]) for r in chart_rows(admin_body, "volume-groups")] == [
        ("Alpha", ["1", "0"]),
        ("Bravo", ["2", "0"]),
    ]
    by_channel = page(signed_in(lead), report="volume", group_by="channel", **MARCH)
    assert labels(by_channel, "volume-groups") == ["Email"]
    # The team filter offers the led team only, and refuses another.
    assert f'<option value="{alpha.pk}">Alpha</option>' in lead_body
    assert f'<option value="{bravo.pk}">' not in lead_body
    refused = page(signed_in(lead), 400, report="volume", team=bravo.pk, **MARCH)
    assert "Select a valid choice" in refused
    assert "volume-groups" not in refused


def test_a_lead_never_sees_another_teams_agents_or_sla_figures(lead, alpha, bravo):
    other = make_agent(team=bravo, first_name="Otto", last_name="Other")
    mine = make_agent(team=alpha, first_name="Mia", last_name="Mine")
    make_case(team=alpha, created=MAR, resolved=HOUR, assignee=mine)
    make_case(team=bravo, created=MAR, resolved=HOUR, assignee=other)
    client = signed_in(lead)

    agents = page(client, report="agents", **MARCH)
    sla = page(client, report="sla", group_by="agent", **MARCH)

    assert labels(agents, "agents-work") == ["Mia Mine"]
    assert "Otto" not in agents
    assert "Otto" not in sla


# --- the figures ----------------------------------------------------------------------------


def test_volume_by_channel_links_each_bar_to_the_queue_of_the_counted_cases(lead, alpha):
    email = [make_case(team=alpha, created=MAR + i * HOUR, channel="email") for i in range(2)]
    make_case(team=alpha, created=MAR, channel="phone", resolved=2 * HOUR)
    make_case(team=alpha, created=datetime(2025, 2, 27, tzinfo=UTC), channel="phone")  # before
    client = signed_in(lead)

    body = page(client, report="volume", group_by="channel", **MARCH)

    rows = chart_rows(body, "volume-groups")
    assert [(label, values) for label, _, values in rows] == [
        ("Email", ["2", "0"]),
        ("Phone", ["1", "1"]),
    ]
    queue = client.get(rows[0][1]).content.decode()
    assert sorted(re.findall(r'<span class="number">(CASE-\d+)</span>', queue)) == sorted(
        case.number for case in email
    )


def test_volume_trend_per_day_week_and_month(lead, alpha):
    make_case(team=alpha, created=datetime(2025, 1, 10, tzinfo=UTC))
    make_case(team=alpha, created=datetime(2025, 3, 3, tzinfo=UTC), resolved=HOUR)
    client = signed_in(lead)
    quarter = {"period": "custom", "start": "2025-01-01", "until": "2025-03-31"}

    monthly = chart_rows(page(client, report="volume", interval="month", **quarter), "volume-trend")
    weekly = labels(page(client, report="volume", interval="week", **MARCH), "volume-trend")
    daily = labels(page(client, report="volume", interval="day", **MARCH), "volume-trend")

    assert [(label, values) for label, _, values in monthly] == [
        ("2025-01", ["1", "0", "1"]),
        ("2025-02", ["0", "0", "1"]),
        ("2025-03", ["1", "1", "1"]),
    ]
    assert weekly[0] == "Week of 2025-02-24"
    assert weekly[-1] == "Week of 2025-03-31"
    assert daily[0] == "2025-03-01"
    assert len(daily) == 31


def test_volume_by_organization_sums_up_the_quiet_ones(admin, alpha):
    big = OrganizationFactory(name="Big Corp")
    for _ in range(3):
        make_case(team=alpha, created=MAR, organization=big)
    for i in range(16):
        make_case(team=alpha, created=MAR, organization=OrganizationFactory(name=f"Small {i:02}"))
    make_case(team=alpha, created=MAR)

    rows = chart_rows(
        page(signed_in(admin), report="volume", group_by="organization", **MARCH), "volume-groups"
    )

    assert rows[0][0] == "Big Corp"
    assert rows[0][2] == ["3", "0"]
    assert f"organization={big.pk}" in rows[0][1]
    assert len(rows) == 16  # the 15 busiest, then the rest in one row
    assert rows[-1][0] == "3 other organizations"
    assert rows[-1][2] == ["3", "0"]
    assert rows[-1][1] is None
    assert "No organization" in [row[0] for row in rows]


def test_the_api_groups_performance_by_organization_too(admin, alpha):
    org = OrganizationFactory(name="Acme")
    make_case(team=alpha, created=MAR, organization=org)
    make_case(team=alpha, created=MAR)
    client = signed_in(admin)

    body = client.get(
        "/api/v1/analytics/performance",
        {"group_by": "organization", "from": "2025-03-01", "to": "2025-04-01"},
    ).json()

    assert [(row["key"], row["label"], row["created"]) for row in body["rows"]] == [
        (org.pk, "Acme", 1),
        (None, "No organization", 1),
    ]


def test_sla_compliance_per_bucket_and_group(lead, alpha):
    met = make_case(team=alpha, created=MAR, first_response=HOUR)
    late = make_case(team=alpha, created=MAR + timedelta(days=1), first_response=3 * HOUR)
    Case.objects.filter(pk=met.pk).update(sla_first_response_due=MAR + 2 * HOUR)
    Case.objects.filter(pk=late.pk).update(sla_first_response_due=MAR + timedelta(days=1, hours=2))

    body = page(signed_in(lead), report="sla", group_by="team", interval="week", **MARCH)

    assert chart_rows(body, "sla-groups") == [("Alpha", None, ["50.0 %", "–", "–"])]
    assert chart_rows(body, "sla-counts") == [("Alpha", None, ["1", "1"])]
    trend = {label: values for label, _, values in chart_rows(body, "sla-trend")}
    assert trend["Week of 2025-03-03"] == ["50.0 %", "50.0 %", "–", "–"]
    assert trend["Week of 2025-03-10"] == ["–", "–", "–", "–"]


def test_times_histogram_and_percentiles(lead, alpha):
    for minutes in (10, 20, 90):
        make_case(
            team=alpha, created=MAR, first_response=timedelta(minutes=minutes), resolved=2 * HOUR
        )

    body = page(signed_in(lead), report="times", **MARCH)

    first = {label: values for label, _, values in chart_rows(body, "times-first-response")}
    assert first["< 15 min"] == ["1"]
    assert first["15 min – 30 min"] == ["1"]
    assert first["1 h – 2 h"] == ["1"]
    percentiles = chart_rows(body, "times-percentiles")
    assert percentiles[0] == ("Median (p50)", None, ["0.3 h", "2.0 h"])


def test_agent_performance_links_agents_to_their_cases(lead, alpha):
    mia = make_agent(team=alpha, first_name="Mia", last_name="Mine")
    case = make_case(team=alpha, created=MAR, first_response=HOUR, resolved=3 * HOUR, assignee=mia)
    make_case(team=alpha, created=MAR)
    client = signed_in(lead)

    body = page(client, report="agents", **MARCH)

    rows = chart_rows(body, "agents-work")
    assert [(label, values) for label, _, values in rows] == [
        ("Mia Mine", ["1", "1", "1", "0"]),
        ("Unassigned", ["1", "0", "0", "0"]),
    ]
    assert chart_rows(body, "agents-times")[0][2] == ["1.0 h", "1.0 h", "3.0 h", "3.0 h"]
    queue = client.get(rows[0][1]).content.decode()
    assert re.findall(r'<span class="number">(CASE-\d+)</span>', queue) == [case.number]


# --- CSV ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("report", "chart_id", "params"),
    [
        ("volume", "volume-groups", {"group_by": "type"}),
        ("volume", "volume-trend", {"interval": "week"}),
        ("agents", "agents-times", {}),
        ("sla", "sla-trend", {"interval": "month"}),
        ("times", "times-percentiles", {}),
    ],
)
def test_the_csv_holds_exactly_the_figures_of_the_table(lead, alpha, report, chart_id, params):
    mia = make_agent(team=alpha, first_name="=Mia", last_name="Mine")
    for i in range(3):
        case = make_case(
            team=alpha,
            created=MAR + i * HOUR,
            first_response=(i + 1) * HOUR,
            resolved=(i + 2) * HOUR,
            assignee=mia,
            type=["question", "problem", "question"][i],
        )
        Case.objects.filter(pk=case.pk).update(sla_first_response_due=MAR + (i + 2) * HOUR)
    client = signed_in(lead)
    body = page(client, report=report, **MARCH, **params)

    response = client.get(csv_link(body, chart_id))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    header, *rows = list(csv.reader(io.StringIO(response.content.decode())))
    table = chart_rows(body, chart_id)
    assert len(header) == 1 + len(table[0][2])
    assert [row[0].lstrip("'") for row in rows] == [label for label, _, _ in table]
    for row, (_, _, shown) in zip(rows, table, strict=True):
        assert [_as_shown(cell, header) for cell in row[1:]] == [
            value.replace(",", "").removesuffix(" %").removesuffix(" h") for value in shown
        ]


def _as_shown(cell: str, header: list[str]) -> str:
    if cell == "":
        return "–"
    if any(name.endswith(("(%)", "(h)")) for name in header[1:]):
        return f"{float(cell):.1f}"
    return cell


def test_csv_of_an_unknown_chart_or_bad_period_is_a_400(lead):
    client = signed_in(lead)

    unknown = client.get(URL, {"report": "volume", "format": "csv", "chart": "nope", **MARCH})
    backwards = {"period": "custom", "start": "2025-03-05", "until": "2025-03-01"}
    bad = client.get(
        URL, {"report": "volume", "format": "csv", "chart": "volume-trend", **backwards}
    )

    assert unknown.status_code == 400
    assert b"volume-groups" in unknown.content
    assert bad.status_code == 400
    assert b"must be earlier" in bad.content


# --- controls -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"period": "custom", "start": "2025-03-05", "until": "2025-03-01"}, "must be earlier"),
        ({"period": "custom", "start": "2024-01-01", "until": "2025-03-01"}, "longer than 366"),
        ({"period": "custom", "start": "2025-13-01", "until": "2025-03-01"}, "Enter a valid date"),
        ({"period": "custom", "until": "2025-03-01"}, "Give a date for a custom period"),
        ({"period": "custom", "start": "0001-01-01", "until": "0001-01-02"}, "between 1970"),
        ({"period": "custom", "start": "9999-12-30", "until": "9999-12-31"}, "between 1970"),
        ({"period": "fortnight"}, "Select a valid choice"),
        ({"interval": "year"}, "Select a valid choice"),
        ({"group_by": "mood"}, "Select a valid choice"),
        ({"team": "abc"}, "Select a valid choice"),
        ({"report": "nope"}, "There is no report called"),
    ],
)
def test_bad_controls_are_form_errors_on_the_page(lead, params, message):
    body = page(signed_in(lead), 400, **{"report": "volume", **params})

    assert message in body
    assert 'role="alert"' in body
    assert "<canvas" not in body


def test_presets_cover_whole_utc_days_up_to_today(lead):
    from django.utils import timezone

    today = timezone.now().astimezone(UTC).date()
    client = signed_in(lead)

    last_7 = page(client, report="volume", period="7d")
    last_month = page(client, report="volume", period="last_month")
    this_month = page(client, report="volume", period="this_month")

    first = today.replace(day=1)
    previous = (first - timedelta(days=1)).replace(day=1)
    assert _shown(last_7) == (today - timedelta(days=6), today)
    assert _shown(last_month) == (previous, first - timedelta(days=1))
    assert _shown(this_month) == (first, today)


def _shown(body: str):
    found = re.search(r'<p class="period-shown">([^<]*) – ([^<]*)</p>', body)
    assert found
    return tuple(
        datetime.strptime(part, "%d %b %Y").replace(tzinfo=UTC).date() for part in found.groups()
    )


def test_a_bookmarked_range_without_a_preset_is_a_custom_period(lead):
    body = page(signed_in(lead), report="volume", start="2025-03-01", until="2025-03-31")

    assert _shown(body) == (date(2025, 3, 1), date(2025, 3, 31))


# --- cache and queries ----------------------------------------------------------------------


def test_figures_follow_changes_to_cases(lead, alpha, django_capture_on_commit_callbacks):
    client = signed_in(lead)
    params = {"report": "volume", "group_by": "channel", "period": "7d"}
    before = page(client, **params)
    assert "volume-groups" in before

    with django_capture_on_commit_callbacks(execute=True):
        CaseFactory(team=alpha, channel="chat")

    assert labels(page(client, **params), "volume-groups") == ["Chat"]


def without_csrf(body: str) -> str:
    return re.sub(r'(X-CSRFToken": |csrfmiddlewaretoken" value=)"[^"]*"', "", body)


def _populate(team, agents, n: int) -> None:
    orgs = [OrganizationFactory() for _ in range(3)]
    for i in range(n):
        case = make_case(
            team=team,
            created=MAR + i * HOUR,
            first_response=timedelta(minutes=5 + i),
            resolved=(i + 1) * HOUR if i % 2 else None,
            assignee=agents[i % len(agents)],
            channel=["email", "phone", "chat"][i % 3],
            organization=orgs[i % 3],
        )
        Case.objects.filter(pk=case.pk).update(sla_first_response_due=MAR + i * HOUR + HOUR)


@pytest.mark.parametrize("report", REPORTS)
@pytest.mark.parametrize("role", [Role.LEAD, Role.ADMIN])
def test_a_report_costs_the_same_queries_cold_or_warm_for_few_cases_or_many(
    report, role, alpha, django_assert_num_queries
):
    viewer = make_agent(team=alpha, role=role)
    params = {"report": report, **MARCH}
    if report in ("sla", "volume"):
        params["group_by"] = {"sla": "agent", "volume": "organization"}[report]
    _populate(alpha, [viewer], 2)
    client = signed_in(viewer)
    page(client, **params)  # the session and the change-number counters exist from here on
    cache.clear()
    with CaptureQueriesContext(connection) as cold:
        page(client, **params)
    with CaptureQueriesContext(connection) as warm:
        page(client, **params)
    assert len(warm) < len(cold)

    _populate(alpha, [viewer, *(make_agent(team=alpha) for _ in range(4))], 25)
    cache.clear()
    with django_assert_num_queries(len(cold)):
        body = page(client, **params)
    with django_assert_num_queries(len(warm)):
        assert without_csrf(page(client, **params)) == without_csrf(body)
    assert len(warm) <= 8
