"""The reports in a real browser (uvicorn, PostgreSQL, Chromium): charts drawn by the vendored
Chart.js, the period picker, the CSV download, and a phone's width with the keyboard alone."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from cases.models import Case
from crm.choices import Role
from tests.browser.axe import axe_violations, describe, scan_context
from tests.browser.helpers import sign_in
from tests.cases.factories import CaseFactory, TeamFactory, make_agent

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

MARCH = datetime(2025, 3, 3, 9, tzinfo=UTC)


@pytest.fixture
def team():
    return TeamFactory(name="Billing")


@pytest.fixture
def lead(team):
    return make_agent(team=team, role=Role.LEAD, email="lena@support.example")


def backdated(team, *, created: datetime, channel: str, resolved: timedelta | None = None):
    case = CaseFactory(team=team, channel=channel)
    Case.objects.filter(pk=case.pk).update(
        created_at=created, resolved_at=created + resolved if resolved else None
    )
    return case


def test_a_chart_is_drawn_and_follows_the_period(page, asgi_server, lead, team):
    now = datetime.now(UTC)
    backdated(team, created=now - timedelta(hours=2), channel="email")
    backdated(team, created=MARCH, channel="phone", resolved=timedelta(hours=3))
    backdated(team, created=MARCH + timedelta(days=1), channel="phone")
    sign_in(page, asgi_server, lead.email)

    page.get_by_role("navigation", name="Workspace").get_by_role("link", name="Reports").click()
    page.get_by_role("navigation", name="Reports").get_by_role("link", name="Volume").click()
    page.get_by_label("Group by").select_option("channel")
    page.get_by_role("button", name="Show").click()

    groups = page.locator("#volume-groups")
    expect(groups.locator("canvas[data-drawn='1']")).to_be_visible()
    groups.get_by_text("Figures as a table").click()
    expect(groups.locator("tbody tr")).to_have_count(1)
    expect(groups.locator("tbody tr").first).to_contain_text("Email")

    page.get_by_label("Period", exact=True).select_option("custom")
    page.get_by_label("From").fill("2025-03-01")
    page.get_by_label("To (inclusive)").fill("2025-03-31")
    page.get_by_role("button", name="Show").click()

    expect(page.locator(".period-shown")).to_have_text("1 Mar 2025 – 31 Mar 2025")
    groups = page.locator("#volume-groups")
    expect(groups.locator("canvas[data-drawn='1']")).to_be_visible()
    groups.get_by_text("Figures as a table").click()
    expect(groups.locator("tbody tr")).to_have_count(1)
    expect(groups.locator("tbody tr").first).to_contain_text("Phone")
    expect(groups.locator("tbody tr td").first).to_have_text("2")
    # The canvas really holds a drawing: some pixel is not transparent.
    painted = page.evaluate(
        """() => {
            const canvas = document.querySelector('#volume-groups canvas');
            const { width, height } = canvas;
            const data = canvas.getContext('2d').getImageData(0, 0, width, height).data;
            return data.some((value, index) => index % 4 === 3 && value > 0);
        }"""
    )
    assert painted
    assert page.console_errors == []


def test_the_csv_download_holds_the_table(page, asgi_server, lead, team):
    backdated(team, created=MARCH, channel="phone", resolved=timedelta(hours=3))
    backdated(team, created=MARCH, channel="email")
    sign_in(page, asgi_server, lead.email)
    page.goto(
        f"{asgi_server}/reports/?report=volume&group_by=channel"
        "&period=custom&start=2025-03-01&until=2025-03-31"
    )

    with page.expect_download() as info:
        page.get_by_role("link", name="Download “Cases by channel” as CSV").click()

    download = info.value
    assert download.suggested_filename == "volume-groups-20250301-20250331.csv"
    with open(download.path(), encoding="utf-8") as handle:
        rows = list(csv.reader(io.StringIO(handle.read())))
    assert rows == [["Channel", "Created", "Resolved"], ["Email", "1", "0"], ["Phone", "1", "1"]]


def test_a_phone_sized_screen_with_the_keyboard_alone(browser, asgi_server, lead, team):
    backdated(team, created=MARCH, channel="phone", resolved=timedelta(hours=3))
    context = scan_context(browser, viewport={"width": 360, "height": 740})
    page = context.new_page()
    try:
        sign_in(page, asgi_server, lead.email)
        page.goto(f"{asgi_server}/reports/?report=volume")

        # Keyboard only: typing dates chooses the custom period (static/js/reports.js).
        expect(page.get_by_label("Period", exact=True)).to_have_value("30d")
        page.get_by_label("From").focus()
        page.keyboard.type("03012025")
        page.get_by_label("To (inclusive)").focus()
        page.keyboard.type("03312025")
        page.keyboard.press("Tab")
        expect(page.get_by_label("Period", exact=True)).to_have_value("custom")
        page.get_by_role("button", name="Show").focus()
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline != "none"  # focus is visible
        page.keyboard.press("Enter")

        expect(page.locator(".period-shown")).to_have_text("1 Mar 2025 – 31 Mar 2025")
        expect(page.locator("#volume-trend canvas[data-drawn='1']")).to_be_visible()
        wide = page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
        assert not wide, "the page scrolls sideways at 360 px"
        violations = axe_violations(page)
        assert not violations, describe(violations)
    finally:
        context.close()
