"""Live updates between two agents in two browser contexts (two sessions, two sockets), with
the production configuration: uvicorn, the Redis channel layer, events sent after commit.

Robin (A) and Ben (B) work in the same team. What the worker would do (intake of a customer's
email) is done here in the test process, committed; it reaches the browser through Redis."""

from __future__ import annotations

import itertools
import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from cases import services
from mailsync.models import Mailbox, Message
from mailsync.services import mailbox_connect
from tests.browser.helpers import sign_in
from tests.cases.factories import CaseFactory, CustomerFactory, TeamFactory, make_agent

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WAIT = 10_000  # ms an expectation may wait for a live update
_ids = itertools.count(1)


@pytest.fixture
def contexts(browser):
    """Two independent browser contexts (separate cookies: two agents)."""
    opened = []

    def new_page():
        context = browser.new_context()
        opened.append(context)
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.console_errors = errors
        return page

    yield new_page
    for context in opened:
        context.close()


@pytest.fixture
def team():
    return TeamFactory(name="Billing")


@pytest.fixture
def robin(team):
    return make_agent(
        team=team, email="robin@support.example", first_name="Robin", last_name="Agent"
    )


@pytest.fixture
def ben(team):
    return make_agent(team=team, email="ben@support.example", first_name="Ben", last_name="Agent")


@pytest.fixture
def case(team):
    customer = CustomerFactory(name="Anna Berg", emails=["anna@nordwind.example"])
    return CaseFactory(team=team, title="Invoice shows the wrong VAT", customer=customer)


def open_case(page, base: str, email: str, number: str) -> None:
    """Sign in, open the case, and wait until its socket has subscribed to it."""
    sign_in(page, base, email)
    page.goto(f"{base}/cases/{number}/")
    expect(page.locator(f"html[data-live-case='{number}']")).to_have_count(1, timeout=WAIT)


def customer_writes(case, text: str) -> Message:
    """A customer's email stored in the team's mailbox and taken in, as the worker does it."""
    address = f"help{case.team_id}@live.example"
    mailbox = Mailbox.objects.filter(address=address).first() or mailbox_connect(
        address=address, team=case.team, local=True
    )
    message = Message.objects.create(
        mailbox=mailbox,
        folder=mailbox.folders.get(well_known="inbox"),
        subject=f"Re: [{case.number}] {case.title}",
        from_address="anna@nordwind.example",
        from_name="Anna Berg",
        to=[{"name": "Support", "address": mailbox.address}],
        body_text=text,
        internet_message_id=f"<live{next(_ids)}.{case.pk}@nordwind.example>",
        received_at=timezone.now(),
    )
    link = services.message_intake(message_id=message.pk)
    assert link is not None
    assert link.case_id == case.pk
    return message


def test_a_customer_email_appears_in_the_open_case_without_reload(
    contexts, asgi_server, case, robin
):
    a = contexts()
    open_case(a, asgi_server, robin.email, case.number)
    expect(a.locator("section.thread")).to_contain_text("No messages yet")
    a.locator("#note-body").fill("Half-written note that must survive")

    message = customer_writes(case, "The VAT on invoice 2024-117 is still 21%.")

    expect(a.locator(f"#message-{message.pk}")).to_contain_text(
        "The VAT on invoice 2024-117 is still 21%.", timeout=WAIT
    )
    expect(a.locator("#thread-title .count")).to_have_text("1")
    expect(a.locator("#timeline")).to_contain_text("Email from anna@nordwind.example", timeout=WAIT)
    message_two = customer_writes(case, "Any news?")
    expect(a.locator(f"#message-{message_two.pk}")).to_contain_text("Any news?", timeout=WAIT)
    expect(a.locator("#thread-title .count")).to_have_text("2")
    # Added after the first one: the conversation runs oldest first.
    ids = a.locator("section.thread article.message").evaluate_all("els => els.map(e => e.id)")
    assert ids == [f"message-{message.pk}", f"message-{message_two.pk}"]
    expect(a.locator("#note-body")).to_have_value("Half-written note that must survive")
    assert a.console_errors == []


def test_an_edit_by_one_agent_appears_for_the_other(contexts, asgi_server, case, robin, ben):
    a, b = contexts(), contexts()
    open_case(a, asgi_server, robin.email, case.number)
    open_case(b, asgi_server, ben.email, case.number)
    events = a.evaluate_handle(
        """() => { const seen = [];
          document.addEventListener("crm:case-changed", (e) => seen.push(e.detail.case));
          return seen; }"""
    )

    b.locator("#field-priority").select_option("urgent")
    expect(b.locator("#case-header .badge.priority-urgent")).to_be_visible()

    expect(a.locator("#case-header .badge.priority-urgent")).to_be_visible(timeout=WAIT)
    expect(a.locator("#field-priority")).to_have_value("urgent")
    expect(a.locator("#timeline")).to_contain_text("Priority", timeout=WAIT)
    assert case.number in events.json_value()

    # A refreshed header works like the original: A edits it in turn, and B sees that.
    a.locator("#field-status").select_option("in_progress")
    expect(b.locator("#case-header .badge.status-in_progress")).to_be_visible(timeout=WAIT)

    # A note by B shows up in A's list.
    b.locator("#note-body").fill("Finance confirmed the rate")
    b.get_by_role("button", name="Add note").click()
    expect(a.locator("#note-list")).to_contain_text("Finance confirmed the rate", timeout=WAIT)
    assert a.console_errors == []
    assert b.console_errors == []


def test_presence_shows_who_views_and_who_replies(contexts, asgi_server, case, robin, ben):
    a, b = contexts(), contexts()
    open_case(a, asgi_server, robin.email, case.number)
    expect(a.locator("#presence")).to_have_text("")  # never yourself

    open_case(b, asgi_server, ben.email, case.number)
    expect(a.locator("#presence")).to_have_text("Ben Agent is viewing", timeout=WAIT)
    expect(b.locator("#presence")).to_have_text("Robin Agent is viewing", timeout=WAIT)

    # Ben writes in the composer, which says so ("crm:composing", the composer's contract).
    b.locator("#composer-body").fill("Dear Anna, thank you for")
    expect(a.locator("#presence")).to_have_text("Ben Agent is replying…", timeout=WAIT)
    # The composer says "stopped" after 30 s idle, on sending or discarding; said here at once.
    b.evaluate(
        """() => document.dispatchEvent(new CustomEvent("crm:composing",
        {detail: {case: document.getElementById("presence").dataset.case, active: false}}))"""
    )
    expect(a.locator("#presence")).to_have_text("Ben Agent is viewing", timeout=WAIT)

    b.goto(f"{asgi_server}/cases/")
    expect(a.locator("#presence")).to_have_text("", timeout=WAIT)
    assert a.console_errors == []
    assert b.console_errors == []


def test_the_bell_rises_live_when_an_agent_is_assigned_a_case(
    contexts, asgi_server, case, robin, ben
):
    a, b = contexts(), contexts()
    sign_in(a, asgi_server, robin.email)  # A is on the queue page
    expect(a.locator("html[data-live-queue='subscribed']")).to_have_count(1, timeout=WAIT)
    bell = a.locator("[data-live-bell]")
    expect(bell.locator("[data-unread-count]")).to_have_text("0")

    open_case(b, asgi_server, ben.email, case.number)
    b.locator("#field-assignee").select_option(str(robin.pk))
    expect(b.locator("#field-assignee")).to_have_value(str(robin.pk))

    expect(bell.locator("[data-unread-count]")).to_have_text("1", timeout=WAIT)
    expect(bell).to_have_attribute("aria-label", "Notifications, 1 unread")
    expect(bell).to_have_class(re.compile(r"\bhas-unread\b"))
    toast = a.get_by_role("status").locator(".live-toast")
    expect(toast).to_contain_text(f"{case.number} assigned to you", timeout=WAIT)
    # A's queue ("Mine") shows the case now, without a reload.
    expect(a.locator("table.cases")).to_contain_text(case.number, timeout=WAIT)
    assert a.console_errors == []
    assert b.console_errors == []
