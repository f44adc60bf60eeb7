"""Customers, tasks and the profile in a real browser (uvicorn, PostgreSQL, Chromium)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from cases.choices import TaskStatus
from cases.models import Customer, Task
from crm.models import AgentProfile
from tests.browser.helpers import sign_in
from tests.cases.factories import (
    CaseFactory,
    CustomerFactory,
    OrganizationFactory,
    TaskFactory,
    TeamFactory,
    make_agent,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def team():
    return TeamFactory(name="Billing")


@pytest.fixture
def agent(team):
    return make_agent(team=team, email="robin@support.example")


def test_search_customers_open_one_and_see_their_cases(page, asgi_server, agent, team):
    dana = CustomerFactory(name="Dana Scully", emails=["dana@fbi.example"])
    CustomerFactory(name="Fox Mulder", emails=["fox@fbi.example"])
    case = CaseFactory(team=team, customer=dana, title="Printer on fire")
    hidden = CaseFactory(team=TeamFactory(name="Sales"), customer=dana, title="Not for Billing")
    sign_in(page, asgi_server, agent.email)

    page.get_by_role("link", name="Customers").click()
    page.get_by_label("Search", exact=True).fill("scully")
    page.get_by_label("Search", exact=True).press("Enter")

    rows = page.locator("table.list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("dana@fbi.example")
    page.keyboard.press("j")  # keyboard navigation: select the row, open it
    page.keyboard.press("Enter")
    page.wait_for_url(f"{asgi_server}/customers/{dana.pk}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Dana Scully")
    expect(page.get_by_role("link", name=case.number)).to_be_visible()
    expect(page.get_by_text("Printer on fire")).to_be_visible()
    expect(page.get_by_text(hidden.title)).to_have_count(0)

    page.get_by_role("link", name=case.number).click()
    page.wait_for_url(f"{asgi_server}/cases/{case.number}/")
    assert page.console_errors == []


def test_edit_a_customer_picking_the_organization_from_suggestions(page, asgi_server, agent):
    OrganizationFactory(name="Acme Corporation")
    OrganizationFactory(name="Globex")
    dana = CustomerFactory(name="Dana")
    sign_in(page, asgi_server, agent.email)

    page.goto(f"{asgi_server}/customers/{dana.pk}/")
    page.keyboard.press("e")  # opens the edit section
    page.get_by_label("Name", exact=True).fill("Dana Scully")
    page.get_by_label("Organization").press_sequentially("acm")
    expect(page.locator('#organization-options option[value="Acme Corporation"]')).to_have_count(1)
    page.get_by_label("Organization").fill("Acme Corporation")
    page.get_by_label("VIP", exact=True).check()
    page.get_by_role("button", name="Save customer").click()

    expect(page.get_by_text("Saved Dana Scully.")).to_be_visible()
    dana = Customer.objects.select_related("organization").get(pk=dana.pk)
    assert (dana.name, dana.organization.name, dana.is_vip) == (
        "Dana Scully",
        "Acme Corporation",
        True,
    )
    assert page.console_errors == []


def test_filter_tasks_and_change_a_status_in_place(page, asgi_server, agent, team):
    case = CaseFactory(team=team)
    urgent = TaskFactory(
        case=case,
        assignee=agent,
        subject="Call the customer back",
        priority="urgent",
        due_at=timezone.now() + timedelta(hours=2),
    )
    TaskFactory(case=case, assignee=agent, subject="Tidy the notes", priority="low")
    sign_in(page, asgi_server, agent.email)

    page.get_by_role("link", name="Tasks").click()
    page.get_by_label("Priority", exact=True).select_option("urgent")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Call the customer back")

    page.evaluate("window.stillTheSamePage = true")
    page.get_by_label("Status of “Call the customer back”").select_option("in_progress")

    expect(page.locator(f"#task-{urgent.pk} select.status-in_progress")).to_have_count(1)
    assert page.evaluate("window.stillTheSamePage") is True  # swapped by htmx, not reloaded
    assert Task.objects.get(pk=urgent.pk).status == TaskStatus.IN_PROGRESS
    page.get_by_label("Status of “Call the customer back”").select_option("resolved")
    expect(page.locator(f"#task-{urgent.pk} select.status-resolved")).to_have_count(1)
    assert Task.objects.get(pk=urgent.pk).status == TaskStatus.RESOLVED
    assert page.console_errors == []


def test_edit_the_profile_signature_and_time_zone(page, asgi_server, agent):
    sign_in(page, asgi_server, agent.email)

    page.get_by_role("link", name=agent.email).click()
    page.get_by_label("Signature").fill("Robin\nBilling support")
    page.get_by_label("Time zone").select_option("Europe/Berlin")
    page.get_by_label("someone mentions me in a note", exact=False).uncheck()
    page.get_by_role("button", name="Save profile").click()

    expect(page.get_by_text("Your profile is saved.")).to_be_visible()
    expect(page.get_by_label("Time zone")).to_have_value("Europe/Berlin")
    profile = AgentProfile.objects.get(user=agent)
    assert profile.signature == "Robin\nBilling support"
    assert profile.timezone == "Europe/Berlin"
    assert profile.notify_mentioned is False
    assert page.console_errors == []
