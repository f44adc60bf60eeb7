"""Working a queue in Chromium: filters, search, keyboard, bulk assign, saved views, CSV."""

from __future__ import annotations

import csv
import io
import re

import pytest
from playwright.sync_api import expect

from cases.models import Case
from tests.browser.helpers import sign_in
from tests.cases.factories import CaseFactory, CustomerFactory, TeamFactory, make_agent

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def case_numbers(page) -> list[str]:
    return page.locator("table.cases .number").all_inner_texts()


def test_an_agent_filters_searches_and_bulk_assigns_a_queue(page, asgi_server):
    team = TeamFactory(name="Billing")
    agent = make_agent(team=team, email="robin@example.com")
    customer = CustomerFactory(name="Ada Lovelace", emails=["ada@engine.example"])
    urgent = CaseFactory(team=team, title="Invoice doubled", priority="urgent", customer=customer)
    CaseFactory(team=team, title="Refund for the kettle", priority="low")
    CaseFactory(team=TeamFactory(name="Sales"), title="Invoice of another team")

    sign_in(page, asgi_server, agent.email)
    assert page.get_by_role("heading", level=1).inner_text() == "Cases · Mine"
    expect(page.locator("#count-unassigned")).to_have_text("2")

    page.get_by_role("link", name=re.compile("^Unassigned")).click()
    assert sorted(case_numbers(page)) == sorted(
        Case.objects.filter(team=team).values_list("number", flat=True)
    )

    # filter by priority: htmx swaps the results and pushes the URL
    page.locator("summary", has_text="Filters").click()
    page.get_by_label("Urgent").check()
    page.wait_for_url(re.compile(r"priority=urgent"))
    page.wait_for_function("document.querySelectorAll('table.cases tbody tr').length === 1")
    assert case_numbers(page) == [urgent.number]
    assert "priority=urgent" in page.get_by_role("link", name="Export CSV").get_attribute("href")
    expect(page.locator("#queue-head")).to_contain_text("1 case")

    # search from the top bar: matches are marked
    page.keyboard.press("Escape")
    page.locator("h1").click()
    page.keyboard.press("/")
    page.keyboard.type("invoice")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"q=invoice"))
    assert case_numbers(page) == [urgent.number]
    assert page.locator("mark").first.inner_text().lower() == "invoice"

    # bulk: tick with the keyboard (j, x), assign to me
    page.goto(f"{asgi_server}/cases/?view=unassigned")
    expect(page.get_by_role("button", name="Assign", exact=True)).to_be_hidden()
    page.locator("h1").click()
    page.keyboard.press("j")
    page.keyboard.press("x")
    page.keyboard.press("j")
    page.keyboard.press("x")
    assert page.locator("[data-selected-count]").inner_text() == "2 selected"
    page.get_by_role("button", name="Assign", exact=True).click()
    page.get_by_text("Assigned to").wait_for()
    assert Case.objects.filter(team=team, assignee=agent).count() == 2
    assert page.console_errors == []


def test_keyboard_help_saved_view_and_csv_export(page, asgi_server):
    team = TeamFactory(name="Billing")
    agent = make_agent(team=team)
    for i in range(3):
        CaseFactory(team=team, title=f"Shipping delay {i}", assignee=agent, tags=["shipping"])

    sign_in(page, asgi_server, agent.email)
    page.locator("h1").click()
    page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    assert dialog.is_visible()
    assert "Next / previous row" in dialog.inner_text()
    page.keyboard.press("Escape")

    # o opens the current row
    page.keyboard.press("j")
    page.keyboard.press("o")
    page.wait_for_url(re.compile(r"/cases/CASE-\d+/"))
    page.go_back()

    page.goto(f"{asgi_server}/cases/?view=all&tag=shipping")
    page.get_by_label("Save this queue as").fill("Shipping")
    page.get_by_role("button", name="Save view").click()
    page.get_by_text("Saved the view").wait_for()
    assert (
        page.get_by_role("link", name="Shipping", exact=True).get_attribute("aria-current")
        == "page"
    )

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export CSV").click()
    download = download_info.value
    rows = list(csv.reader(io.StringIO(open(download.path(), encoding="utf-8").read())))
    assert len(rows) == 4
    assert {row[1] for row in rows[1:]} == {f"Shipping delay {i}" for i in range(3)}
    assert page.console_errors == []
