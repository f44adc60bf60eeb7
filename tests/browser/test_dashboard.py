"""The dashboard in a real Chromium (uvicorn, PostgreSQL): its charts are drawn by the vendored
Chart.js and drawn again when the queues change, and a bar of the workload chart, or the same
figure in its table by keyboard, opens the queue of exactly that agent's cases."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import sign_in
from tests.cases.factories import CaseFactory, TeamFactory, make_agent

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHARTS = ("chart-workload", "chart-created-resolved", "chart-backlog")


@pytest.fixture
def team():
    return TeamFactory(name="Billing")


@pytest.fixture
def agent(team):
    return make_agent(team=team, email="robin@support.example", first_name="Robin")


def bar_position(page, chart_id: str, index: int) -> dict:
    """Where Chart.js drew bar `index` of the chart's first series, in the viewport (scrolled
    into it)."""
    page.locator(f"#{chart_id} canvas").scroll_into_view_if_needed()
    return page.evaluate(
        """([id, index]) => {
            const canvas = document.querySelector(`#${id} canvas`);
            const element = window.Chart.getChart(canvas).getDatasetMeta(0).data[index];
            const bar = element.getProps(["x", "y", "base"], true);  // where animation ends
            const box = canvas.getBoundingClientRect();
            // Horizontal bars run from the axis (base) to x; aim at their middle.
            return {x: box.left + (bar.base + bar.x) / 2, y: box.top + bar.y};
        }""",
        [chart_id, index],
    )


def test_the_dashboard_draws_its_charts_and_a_bar_opens_that_agents_queue(
    page, asgi_server, agent, team
):
    kim = make_agent(team=team, first_name="Kim", last_name="Busy")
    kims = [CaseFactory(team=team, assignee=kim, title=f"Kim's case {i}") for i in range(3)]
    CaseFactory(team=team, assignee=agent, title="Robin's case")
    sign_in(page, asgi_server, agent.email)

    page.goto(f"{asgi_server}/dashboard/")

    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
    for chart_id in CHARTS:
        expect(page.locator(f"#{chart_id} canvas")).to_have_attribute("data-drawn", "1")
    drawn = page.evaluate(
        "ids => ids.map(id => !!window.Chart.getChart(document.querySelector(`#${id} canvas`)))",
        list(CHARTS),
    )
    assert drawn == [True, True, True]
    expect(page.locator("#panel-mine [data-figure=mine]")).to_have_text("1")

    # When the queues change (live.js says so), the panels are fetched again and redrawn.
    kims.append(CaseFactory(team=team, assignee=kim, title="Kim's new case"))
    page.evaluate("document.dispatchEvent(new CustomEvent('crm:queue-changed'))")
    expect(page.locator("#chart-workload tbody tr").first.locator("td")).to_have_text("4")
    expect(page.locator("#chart-workload canvas")).to_have_attribute("data-drawn", "1")

    # Kim has the most open cases: the first bar.
    position = bar_position(page, "chart-workload", 0)
    page.mouse.click(position["x"], position["y"])

    page.wait_for_url(re.compile(r"/cases/\?view=team&assignee=\d+$"))
    rows = page.locator("table.cases tbody tr")
    expect(rows).to_have_count(4)
    for case in kims:
        expect(page.get_by_text(case.number)).to_be_visible()
    assert page.console_errors == [], page.console_errors


def test_keyboard_users_reach_the_same_queue_through_the_charts_table(
    page, asgi_server, agent, team
):
    mine = CaseFactory(team=team, assignee=agent, title="The one I hold")
    CaseFactory(team=team, title="Nobody's yet")
    sign_in(page, asgi_server, agent.email)
    page.goto(f"{asgi_server}/dashboard/")

    figures = page.locator("#chart-workload details.chart-data")
    figures.locator("summary").focus()
    page.keyboard.press("Enter")
    expect(figures).to_have_attribute("open", "")
    link = figures.get_by_role("link", name="Robin Tester")
    link.focus()
    page.keyboard.press("Enter")

    page.wait_for_url(re.compile(r"/cases/\?view=team&assignee=\d+$"))
    expect(page.locator("table.cases tbody tr")).to_have_count(1)
    expect(page.get_by_text(mine.number)).to_be_visible()
    assert page.console_errors == [], page.console_errors
