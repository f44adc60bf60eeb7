"""The tasks board, "make a task" and the SLA clocks in a real Chromium (uvicorn, PostgreSQL):
cards dragged or moved with the keyboard keep their new status, a refused move goes back, a
task made from a message shows up in the case's task panel, and the case header's clocks
count down with their state in words."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from playwright.sync_api import expect

from cases import services
from cases.choices import MessageDirection, SlaState, TaskStatus
from cases.models import Case, Task
from mailsync.models import Message
from mailsync.services import mailbox_connect
from tests.browser.helpers import sign_in
from tests.cases.factories import CaseFactory, TaskFactory, TeamFactory, make_agent

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def team():
    return TeamFactory(name="Billing")


@pytest.fixture
def agent(team):
    return make_agent(team=team, email="robin@support.example")


def card(page, task: Task):
    return page.locator(f"#board-task-{task.pk}")


def column(page, status: str):
    return page.locator(f'[data-column="{status}"]')


def test_drag_a_card_to_another_column_and_it_stays_there(page, asgi_server, agent, team):
    case = CaseFactory(team=team, title="Invoice shows the wrong VAT")
    task = TaskFactory(case=case, assignee=agent, subject="Check the VAT rate")
    started = TaskFactory(case=case, assignee=agent, subject="Call the customer")
    services.task_change_status(actor=None, task=started, status=TaskStatus.IN_PROGRESS)
    sign_in(page, asgi_server, agent.email)

    page.goto(f"{asgi_server}/tasks/")
    page.get_by_role("link", name="Board view").click()
    page.wait_for_url(f"{asgi_server}/tasks/board?view=mine")
    expect(column(page, "new").locator(".board-card")).to_have_count(1)
    expect(column(page, "new").locator("[data-column-count]")).to_have_text("1")

    card(page, task).drag_to(column(page, "in_progress"))

    expect(column(page, "in_progress").locator(f"#board-task-{task.pk}")).to_be_visible()
    expect(page.locator("#board-status")).to_have_text("“Check the VAT rate” is now In progress.")
    expect(column(page, "new").locator("[data-column-count]")).to_have_text("0")
    expect(column(page, "in_progress").locator("[data-column-count]")).to_have_text("2")
    page.reload()
    expect(column(page, "in_progress").locator(f"#board-task-{task.pk}")).to_be_visible()
    expect(column(page, "new").locator(".board-card")).to_have_count(0)
    assert Task.objects.get(pk=task.pk).status == TaskStatus.IN_PROGRESS

    # A move the service refuses (in progress cannot become new) puts the card back.
    card(page, started).drag_to(column(page, "new"))
    expect(card(page, started).get_by_role("alert")).to_contain_text("cannot become new")
    expect(column(page, "in_progress").locator(f"#board-task-{started.pk}")).to_be_visible()
    expect(column(page, "new").locator("[data-column-count]")).to_have_text("0")
    assert Task.objects.get(pk=started.pk).status == TaskStatus.IN_PROGRESS
    assert page.console_errors == [], page.console_errors


def test_the_keyboard_moves_a_card_through_its_status_menu(page, asgi_server, agent, team):
    case = CaseFactory(team=team)
    task = TaskFactory(case=case, assignee=agent, subject="Send the credit note")
    hasty = TaskFactory(case=case, assignee=agent, subject="Close the ticket")
    sign_in(page, asgi_server, agent.email)
    page.goto(f"{asgi_server}/tasks/board")

    menu = page.get_by_label("Status of “Send the credit note”")
    menu.focus()
    page.keyboard.press("ArrowDown")  # New -> In progress, without a mouse

    expect(page.locator("#board-status")).to_have_text("“Send the credit note” is now In progress.")
    expect(column(page, "in_progress").locator(f"#board-task-{task.pk}")).to_be_visible()
    expect(page.get_by_label("Status of “Send the credit note”")).to_be_focused()
    expect(page.get_by_label("Status of “Send the credit note”")).to_have_value("in_progress")
    page.keyboard.press("ArrowDown")  # In progress -> Resolved
    expect(page.locator("#board-status")).to_have_text("“Send the credit note” is now Resolved.")
    expect(column(page, "resolved").locator(f"#board-task-{task.pk}")).to_be_visible()
    page.reload()  # after the answer: the saved status, not the one on its way
    expect(column(page, "resolved").locator(f"#board-task-{task.pk}")).to_be_visible()
    assert Task.objects.get(pk=task.pk).status == TaskStatus.RESOLVED

    # Two steps before the first is saved: the second waits for the first answer.
    page.get_by_label("Status of “Close the ticket”").focus()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    expect(page.locator("#board-status")).to_have_text("“Close the ticket” is now Resolved.")
    expect(column(page, "resolved").locator(f"#board-task-{hasty.pk}")).to_be_visible()
    assert Task.objects.get(pk=hasty.pk).status == TaskStatus.RESOLVED
    assert page.console_errors == [], page.console_errors


def deliver(case: Case, subject: str) -> Message:
    mailbox = mailbox_connect(address="help@board.example", team=case.team, local=True)
    message = Message.objects.create(
        mailbox=mailbox,
        folder=mailbox.folders.get(well_known="inbox"),
        subject=subject,
        from_address="anna@nordwind.example",
        from_name="Anna Berg",
        to=[{"name": "Support", "address": mailbox.address}],
        body_text="Please send us a corrected invoice.",
        internet_message_id=f"<board-browser{case.pk}@nordwind.example>",
        received_at=timezone.now(),
    )
    with transaction.atomic():
        services.case_message_received(
            case=case, message=message, direction=MessageDirection.INBOUND
        )
    return message


def test_make_a_task_from_a_message_adds_it_to_the_case_tasks(page, asgi_server, agent, team):
    case = CaseFactory(team=team, title="Wrong invoice")
    message = deliver(case, "Corrected invoice, please")
    sign_in(page, asgi_server, agent.email)
    page.goto(f"{asgi_server}/cases/{case.number}/")
    expect(page.locator("#task-list")).to_contain_text("No tasks.")

    page.locator(f"#message-{message.pk}").get_by_role("button", name="Make a task").click()

    expect(page.locator(f"#message-{message.pk}")).to_contain_text(
        "Task “Corrected invoice, please” added"
    )
    expect(page.locator("#task-list .task-subject")).to_have_text(["Corrected invoice, please"])
    expect(page.locator("#timeline")).to_contain_text("Task added: Corrected invoice, please")
    assert case.tasks.get().subject == "Corrected invoice, please"
    assert page.console_errors == [], page.console_errors


def clock_text(page, metric: str) -> str:
    return page.locator(f'.sla-target[data-metric="{metric}"] .sla-clock').inner_text()


def test_the_sla_clocks_in_the_case_header_count_down(page, asgi_server, agent, team):
    now = timezone.now()
    at_risk = CaseFactory(team=team, title="Nearly late")
    Case.objects.filter(pk=at_risk.pk).update(
        sla_first_response_state=SlaState.AT_RISK,
        sla_first_response_due=now + timedelta(minutes=20),
        sla_resolution_state=SlaState.ON_TRACK,
        sla_resolution_due=now + timedelta(hours=30),
    )
    breached = CaseFactory(team=team, title="Late already")
    Case.objects.filter(pk=breached.pk).update(
        sla_first_response_state=SlaState.BREACHED,
        sla_first_response_due=now - timedelta(minutes=10),
        sla_due=now - timedelta(minutes=10),
    )
    sign_in(page, asgi_server, agent.email)

    page.goto(f"{asgi_server}/cases/{at_risk.number}/")
    clock = page.locator('.sla-target[data-metric="first_response"] .sla-clock')
    expect(clock).to_have_text(re.compile(r"^at risk: 1\d min \d\d s left$"))
    expect(clock).to_have_class(re.compile(r"\bsla-at_risk\b"))
    expect(clock).to_have_attribute("title", re.compile(r"^Due \w{3} \d"))
    first = clock_text(page, "first_response")
    expect(clock).not_to_have_text(first, timeout=5000)  # it counts down
    expect(page.locator('.sla-target[data-metric="resolution"] .sla-clock')).to_have_text(
        re.compile(r"^1 d \d+ h left$")
    )

    page.goto(f"{asgi_server}/cases/{breached.number}/")
    clock = page.locator('.sla-target[data-metric="first_response"] .sla-clock')
    expect(clock).to_have_text(re.compile(r"^breached 1\d min \d\d s ago$"))
    first = clock_text(page, "first_response")
    expect(clock).not_to_have_text(first, timeout=5000)
    expect(clock).to_have_class(re.compile(r"\bsla-breached\b"))

    # The queue's SLA column counts down too.
    page.goto(f"{asgi_server}/cases/?view=all")
    row_clock = page.locator("tr", has_text="Late already").locator(".sla-clock")
    expect(row_clock).to_have_text(re.compile(r"^breached 1\d min \d\d s ago$"))
    assert page.console_errors == [], page.console_errors
