"""The dashboard (`/dashboard/`) through HTTP: each panel's figures for an agent, a lead and an
admin, what each sees, links that open queues showing exactly the counted cases, the cache,
and a constant number of queries."""

from __future__ import annotations

import html
import re
import zoneinfo
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from cases import services
from cases.choices import CaseStatus, TaskStatus
from cases.models import Case
from crm.choices import Role
from tests.cases.factories import CaseFactory, TaskFactory, TeamFactory, make_agent

pytestmark = pytest.mark.django_db

URL = "/dashboard/"


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page(client: Client, url: str = URL) -> str:
    response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def panel(body: str, name: str) -> str:
    """The HTML of one panel (`<section id="panel-<name>">`)."""
    found = re.search(
        rf'<section class="dash-panel[^"]*" id="panel-{name}".*?</section>', body, re.S
    )
    assert found, f"no panel {name}"
    return found.group(0)


def figure(body: str, name: str) -> tuple[str, str | None]:
    """(the text of a `data-figure` element, its link if it is one)."""
    found = re.search(rf'<(a|span) (?:href="([^"]*)" )?(?:class="[^"]*" )?data-figure="{name}">'
                      r"([^<]*)<", body)  # fmt: skip
    assert found, f"no figure {name}"
    return found.group(3).strip(), html.unescape(found.group(2)) if found.group(2) else None


def case_numbers(body: str) -> list[str]:
    """Case numbers listed on a queue page, in order."""
    return re.findall(r'<span class="number">(CASE-\d+)</span>', body)


def queue_numbers(client: Client, url: str) -> list[str]:
    assert url.startswith("/cases/?"), url
    return case_numbers(page(client, url))


def chart_rows(body: str, chart_id: str) -> list[tuple[str, str | None, list[str]]]:
    """(label, link, values) per row of a chart's table."""
    found = re.search(rf'<figure class="chart" id="{chart_id}">.*?</figure>', body, re.S)
    assert found, f"no chart {chart_id}"
    rows = []
    for row in re.findall(r"<tr><th scope=\"row\">(.*?)</tr>", found.group(0), re.S):
        link = re.search(r'<a href="([^"]*)">([^<]*)</a>', row)
        label = link.group(2) if link else re.match(r"([^<]*)</th>", row).group(1)
        values = re.findall(r'<td class="num">([^<]*)</td>', row)
        rows.append((html.unescape(label), html.unescape(link.group(1)) if link else None, values))
    return rows


def set_sla(case: Case, *, minutes: int, **states: str) -> None:
    """Give a case SLA states (as the SLA clock and tick would) and its nearest deadline."""
    columns = {f"sla_{metric}_state": state for metric, state in states.items()}
    Case.objects.filter(pk=case.pk).update(
        sla_due=timezone.now() + timedelta(minutes=minutes), **columns
    )


def resolve(case: Case) -> None:
    services.case_change_status(actor=None, case=case, status=CaseStatus.RESOLVED)


@pytest.fixture
def billing():
    return TeamFactory(name="Billing")


@pytest.fixture
def sales():
    return TeamFactory(name="Sales")


@pytest.fixture
def ada(billing):
    return make_agent(team=billing, first_name="Ada", last_name="Lovelace")


@pytest.fixture
def bob(billing):
    return make_agent(team=billing, first_name="Bob", last_name="Builder")


@pytest.fixture
def sam(sales):
    return make_agent(team=sales, first_name="Sam", last_name="Seller")


# --- my open cases -----------------------------------------------------------------------------


def test_my_open_cases_are_counted_and_the_ten_most_urgent_listed_as_the_mine_queue_shows_them(
    billing, sales, ada, bob
):
    mine = [CaseFactory(team=billing, assignee=ada, title=f"Mine {i}") for i in range(12)]
    for minutes, case in zip([90, 5, 60, 30], mine, strict=False):  # the rest have no deadline
        set_sla(case, minutes=minutes, first_response="on_track")
    resolve(CaseFactory(team=billing, assignee=ada, title="Mine but resolved"))
    CaseFactory(team=billing, assignee=bob, title="Bob's")
    CaseFactory(team=billing, title="Nobody's")
    client = signed_in(ada)

    body = panel(page(client), "mine")

    count, link = figure(body, "mine")
    assert count == "12"
    assert link == "/cases/?view=mine&sort=sla"
    listed = case_numbers(body)
    by_deadline = [mine[1], mine[3], mine[2], mine[0]]
    assert listed[:4] == [c.number for c in by_deadline]
    assert len(listed) == 10
    # The link opens the Mine queue in the same order: exactly these cases, then the rest.
    in_queue = queue_numbers(client, link)
    assert in_queue[:10] == listed
    assert sorted(in_queue) == sorted(c.number for c in mine)


# --- my tasks due ------------------------------------------------------------------------------


def _zone_near_noon() -> str:
    """A fixed-offset time zone where it is now about midday, so "due today" an hour from now
    is still today whenever the test runs."""
    now = timezone.now()
    return min(
        (f"Etc/GMT{offset:+d}" if offset else "UTC" for offset in range(-12, 13)),
        key=lambda name: abs(now.astimezone(zoneinfo.ZoneInfo(name)).hour - 12),
    )


def test_my_tasks_due_counts_overdue_and_due_today_and_links_to_the_task_list_showing_them(
    billing,
):
    ada = make_agent(team=billing, timezone=_zone_near_noon())
    bob = make_agent(team=billing)
    case = CaseFactory(team=billing, assignee=ada)
    now = timezone.now()
    overdue = TaskFactory(
        case=case, assignee=ada, subject="Call back", due_at=now - timedelta(hours=3)
    )
    today = TaskFactory(assignee=ada, subject="Send the quote", due_at=now + timedelta(hours=1))
    TaskFactory(assignee=ada, subject="Tomorrow's", due_at=now + timedelta(days=1, hours=1))
    TaskFactory(assignee=ada, subject="No due date")
    done = TaskFactory(assignee=ada, subject="Done late", due_at=now - timedelta(hours=2))
    services.task_change_status(actor=None, task=done, status=TaskStatus.RESOLVED)
    TaskFactory(case=case, assignee=bob, subject="Bob's", due_at=now - timedelta(hours=1))
    client = signed_in(ada)

    body = panel(page(client), "tasks")

    assert figure(body, "tasks-due")[0] == "2"
    assert figure(body, "tasks-overdue")[0] == "1 overdue"
    assert figure(body, "tasks-today")[0] == "1"
    assert "Call back" in body
    assert "Send the quote" in body
    assert body.index("Call back") < body.index("Send the quote")  # soonest first
    assert "Tomorrow" not in body
    assert "Done late" not in body
    assert "Bob" not in body
    # Each link opens the task list showing exactly those tasks.
    tasks_page = page(client, figure(body, "tasks-due")[1])
    shown = re.findall(r'<tr id="task-(\d+)"', tasks_page)
    assert sorted(shown) == sorted([str(overdue.pk), str(today.pk)])
    overdue_page = page(client, figure(body, "tasks-overdue")[1])
    assert re.findall(r'<tr id="task-(\d+)"', overdue_page) == [str(overdue.pk)]


# --- SLA at risk and breached --------------------------------------------------------------


def test_cases_at_risk_and_breached_of_my_teams_link_to_the_queue_showing_exactly_them(
    billing, sales, ada, sam
):
    breached = CaseFactory(team=billing, title="Breached in Billing")
    set_sla(breached, minutes=-30, first_response="breached")
    both = CaseFactory(team=billing, assignee=ada, title="Both")
    set_sla(both, minutes=-5, first_response="breached", resolution="at_risk")
    at_risk = CaseFactory(team=billing, title="At risk in Billing")
    set_sla(at_risk, minutes=20, resolution="at_risk")
    on_track = CaseFactory(team=billing, title="On track")
    set_sla(on_track, minutes=200, resolution="on_track")
    closed = CaseFactory(team=billing, title="Breached but resolved")
    resolve(closed)
    set_sla(closed, minutes=-60, resolution="breached")
    elsewhere = CaseFactory(team=sales, title="Breached in Sales")
    set_sla(elsewhere, minutes=-10, first_response="breached")
    client = signed_in(ada)

    body = panel(page(client), "sla")

    count, link = figure(body, "breached")
    assert count == "2"
    assert case_numbers(body)[:2] == [breached.number, both.number]  # deadline order
    assert sorted(queue_numbers(client, link)) == sorted([breached.number, both.number])
    count, link = figure(body, "at-risk")
    assert count == "2"
    assert sorted(queue_numbers(client, link)) == sorted([both.number, at_risk.number])
    assert "Sales" not in body
    assert "resolved" not in body

    # Sam, in Sales, sees only Sales' breach.
    sam_body = panel(page(signed_in(sam)), "sla")
    assert figure(sam_body, "breached")[0] == "1"
    assert figure(sam_body, "at-risk")[0] == "0"
    assert case_numbers(sam_body) == [elsewhere.number]


# --- workload --------------------------------------------------------------------------------


def test_workload_counts_open_cases_per_agent_and_each_bar_opens_that_agents_queue(
    billing, sales, ada, bob, sam
):
    lead = make_agent(team=billing, role=Role.LEAD, first_name="Lee", last_name="Lead")
    ada_cases = [CaseFactory(team=billing, assignee=ada) for _ in range(3)]
    bob_case = CaseFactory(team=billing, assignee=bob)
    resolve(CaseFactory(team=billing, assignee=bob))
    unassigned = [CaseFactory(team=billing) for _ in range(2)]
    CaseFactory(team=sales, assignee=sam)
    CaseFactory(team=sales)
    client = signed_in(lead)

    rows = chart_rows(page(client), "chart-workload")

    assert [(label, values) for label, _, values in rows] == [
        ("Ada Lovelace", ["3"]),
        ("Unassigned", ["2"]),
        ("Bob Builder", ["1"]),
        ("Lee Lead", ["0"]),
    ]
    links = {label: link for label, link, _ in rows}
    assert sorted(queue_numbers(client, links["Ada Lovelace"])) == sorted(
        c.number for c in ada_cases
    )
    assert queue_numbers(client, links["Bob Builder"]) == [bob_case.number]
    assert sorted(queue_numbers(client, links["Unassigned"])) == sorted(
        c.number for c in unassigned
    )
    assert queue_numbers(client, links["Lee Lead"]) == []


def test_an_admin_sees_every_team_with_links_to_the_all_queue(billing, sales, ada, sam):
    admin = make_agent(role=Role.ADMIN, first_name="Root", last_name="Admin")
    CaseFactory(team=billing, assignee=ada)
    sales_case = CaseFactory(team=sales, assignee=sam)
    set_sla(sales_case, minutes=-10, first_response="breached")
    billing_breach = CaseFactory(team=billing)
    set_sla(billing_breach, minutes=-20, resolution="breached")
    client = signed_in(admin)

    body = page(client)

    assert "All teams" in body
    count, link = figure(panel(body, "sla"), "breached")
    assert count == "2"
    assert link.startswith("/cases/?view=all&is_open=true&sla=breached")
    assert sorted(queue_numbers(client, link)) == sorted([sales_case.number, billing_breach.number])
    rows = {label: (link, values) for label, link, values in chart_rows(body, "chart-workload")}
    assert rows["Ada Lovelace"][1] == ["1"]
    assert rows["Sam Seller"][1] == ["1"]
    assert rows["Unassigned"][1] == ["1"]
    assert queue_numbers(client, rows["Sam Seller"][0]) == [sales_case.number]


# --- trends ----------------------------------------------------------------------------------


def test_created_and_resolved_today_and_compliance_with_a_link_to_the_days_cases(billing, ada):
    made = [CaseFactory(team=billing, assignee=ada) for _ in range(3)]
    resolve(made[0])
    met = made[1]
    Case.objects.filter(pk=met.pk).update(
        sla_first_response_due=timezone.now() + timedelta(hours=1),
        first_response_at=timezone.now(),
        sla_first_response_state="met",
    )
    client = signed_in(ada)

    body = page(client)

    assert figure(body, "created")[0] == "3"
    assert figure(body, "resolved")[0] == "1"
    assert figure(body, "backlog")[0] == "2"
    rows = chart_rows(body, "chart-created-resolved")
    assert len(rows) == 30
    label, link, values = rows[-1]
    assert values == ["3", "1"]
    assert sorted(queue_numbers(client, link)) == sorted(c.number for c in made)
    assert chart_rows(body, "chart-backlog")[-1][2] == ["2"]
    assert figure(body, "compliance")[0] == "100.0 %"
    assert chart_rows(body, "chart-sla-compliance")[-1][2] == ["100.0 %"]


def test_trends_by_week_and_a_bad_interval_is_a_form_error(billing, ada):
    CaseFactory(team=billing, assignee=ada)
    client = signed_in(ada)

    body = page(client, f"{URL}?interval=week")
    assert chart_rows(body, "chart-created-resolved")[-1][0].startswith("Week of ")

    response = client.get(f"{URL}?interval=fortnight")
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert len(chart_rows(response.content.decode(), "chart-created-resolved")) == 30


def test_the_dashboard_needs_a_signed_in_agent():
    response = Client().get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


# --- the cache -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # change numbers move when a transaction commits
def test_cached_team_figures_move_on_when_a_case_changes(billing, ada, bob):
    case = CaseFactory(team=billing, assignee=ada)
    client = signed_in(ada)
    before = {label: values for label, _, values in chart_rows(page(client), "chart-workload")}
    assert before["Ada Lovelace"] == ["1"]
    assert before["Bob Builder"] == ["0"]

    services.case_assign(actor=ada, case=case, assignee=bob)

    after = {label: values for label, _, values in chart_rows(page(client), "chart-workload")}
    assert after["Ada Lovelace"] == ["0"]
    assert after["Bob Builder"] == ["1"]
    assert figure(panel(page(client), "mine"), "mine")[0] == "0"


# --- queries ---------------------------------------------------------------------------------


def _populate(billing, agents, n: int) -> None:
    for i in range(n):
        case = CaseFactory(team=billing, assignee=agents[i % len(agents)])
        set_sla(case, minutes=-i, first_response="breached" if i % 2 else "at_risk")
        TaskFactory(case=case, assignee=agents[0], due_at=timezone.now() - timedelta(minutes=i))
    resolve(CaseFactory(team=billing, assignee=agents[0]))


@pytest.mark.parametrize("role", [Role.AGENT, Role.ADMIN])
def test_the_page_costs_the_same_queries_cold_or_warm_for_one_case_or_many(
    billing, role, django_assert_num_queries, django_assert_max_num_queries
):
    viewer = make_agent(team=billing, role=role)
    _populate(billing, [viewer], 1)
    client = signed_in(viewer)
    client.get(URL)  # the session and the change-number counters exist from here on
    cache.clear()
    with django_assert_max_num_queries(60) as cold:
        page(client)
    with django_assert_max_num_queries(60) as warm:
        page(client)
    assert len(warm.captured_queries) < len(cold.captured_queries)

    _populate(billing, [viewer, *(make_agent(team=billing) for _ in range(5))], 30)
    cache.clear()
    with django_assert_num_queries(len(cold.captured_queries)):
        body = page(client)
    with django_assert_num_queries(len(warm.captured_queries)):
        page(client)
    assert len(case_numbers(panel(body, "sla"))) == 10  # five breached, five at risk
