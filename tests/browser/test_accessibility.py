"""Accessibility and responsiveness of the agent UI in a real Chromium.

- Every main page, filled with demo-like data, passes an axe-core scan with no "serious" or
  "critical" violation (tests/browser/axe.py).
- Every page fits a phone (375 px), 200% zoom and WCAG's 320 px reflow: the page body never
  scrolls sideways (wide tables scroll in their own box), axe still passes, and the top
  navigation stays on the first screen.
- On every page, every Tab stop shows where the focus is; the queue and the workspace are
  worked with the keyboard alone (filter, open a case, write and send a note).

A new page joins all of this by being added to PAGES.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from playwright.sync_api import expect

from cases import services
from cases.models import Case, CaseNote, Customer, Organization, SlaPolicy, SlaTarget
from cases.services.sla import sla_config_changed
from crm.choices import Role
from crm.models import NotificationKind, User
from crm.notifications import notify
from tests.browser.axe import axe_violations, describe, scan_context
from tests.browser.helpers import sign_in
from tests.browser.test_workspace import deliver
from tests.cases.factories import (
    CaseFactory,
    CustomerFactory,
    OrganizationFactory,
    TaskFactory,
    TeamFactory,
    make_agent,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@dataclass
class Demo:
    """What the pages show: an agent of a team with a busy case and its surroundings."""

    agent: User
    case: Case
    customer: Customer
    organization: Organization


def make_demo() -> Demo:
    """A small desk like the demo's: SLA targets (so clocks and badges show), a VIP customer
    of a gold organization, a case with a plain and an HTML mail, a note with a mention,
    tasks (one overdue, one with a checklist), more cases in other states, and unread
    notifications."""
    policy = SlaPolicy.objects.create(name="Standard", is_default=True)
    for priority in ("low", "normal", "high", "urgent"):
        for metric, minutes in (("first_response", 60), ("resolution", 600)):
            SlaTarget.objects.create(
                policy=policy,
                priority=priority,
                metric=metric,
                minutes=minutes,
                business_time=False,
            )
    sla_config_changed()
    team = TeamFactory(name="Billing")
    agent = make_agent(  # the team's lead, so the reports are scanned as well
        team=team,
        email="robin@support.example",
        first_name="Robin",
        last_name="Meyer",
        role=Role.LEAD,
    )
    colleague = make_agent(team=team, email="sam@support.example", first_name="Sam")
    organization = OrganizationFactory(
        name="Nordwind GmbH", domains=["nordwind.example"], tier="gold"
    )
    customer = CustomerFactory(
        name="Anna Berg", emails=["anna@nordwind.example"], organization=organization, is_vip=True
    )
    case = CaseFactory(
        team=team,
        title="Invoice shows the wrong VAT",
        customer=customer,
        priority="high",
        assignee=agent,
        tags=["billing", "vat"],
    )
    deliver(case, text="Our March invoice charges 21%.\n\nOn Mon, Anna wrote:\n> earlier mail")
    deliver(case, html="<p>Any news? <b>Anna</b></p>")
    services.case_add_note(actor=colleague, case=case, body="Finance says 19%. @robin")
    TaskFactory(
        case=case,
        subject="Check the VAT rate",
        assignee=agent,
        checklist=["Find invoice", "Fix rate"],
        due_at=timezone.now() + timedelta(days=1),
    )
    TaskFactory(
        case=case,
        subject="Call Anna back",
        priority="urgent",
        due_at=timezone.now() - timedelta(hours=2),
    )
    others = [
        CaseFactory(team=team, title="Refund for the kettle", priority="low", customer=customer),
        CaseFactory(team=team, title="Login fails on Safari", priority="urgent"),
        CaseFactory(team=team, title="Where is my parcel?", assignee=colleague),
    ]
    services.case_change_status(actor=None, case=others[2], status="in_progress")
    with transaction.atomic():
        notify(
            recipients=[agent],
            kind=NotificationKind.ASSIGNED,
            title=f"{case.number} is yours",
            url=f"/cases/{case.number}/",
        )
        notify(
            recipients=[agent],
            kind=NotificationKind.MENTIONED,
            title="Sam mentioned you",
            body="Finance says 19%.",
            url=f"/cases/{case.number}/",
        )
    return Demo(agent=agent, case=case, customer=customer, organization=organization)


@dataclass(frozen=True)
class Screen:
    """One page of the scan: where it is and what to wait for (or do) before scanning."""

    name: str
    path: Callable[[Demo], str]
    ready: Callable[[object], None] = lambda page: None
    signed_in: bool = True


def _queue_ready(page) -> None:
    expect(page.locator("table.cases tbody tr")).to_have_count(4)
    expect(page.locator("#count-all")).not_to_be_empty()
    page.locator("summary", has_text="Filters").click()  # scan the filter form too


def _workspace_ready(page) -> None:
    expect(page.locator("#composer-body")).to_be_editable()  # the composer is open
    expect(page.locator("section.thread article")).to_have_count(2)
    page.locator("article iframe.mail-body").first.wait_for()


def shows(selector: str = "", *, text: str = "", role: str = "") -> Callable[[object], None]:
    """Ready when this is on the page: an element (CSS), a text, or a role containing text."""

    def ready(page) -> None:
        if role:
            expect(page.get_by_role(role).first).to_contain_text(text)
        elif text:
            expect(page.get_by_text(text).first).to_be_visible()
        else:
            expect(page.locator(selector).first).to_be_visible()

    return ready


# The lead adds new pages (dashboard, reports) here; every test below goes through them all.
PAGES = [
    Screen("sign-in", lambda demo: "/accounts/login/", shows("#id_login"), signed_in=False),
    Screen("queue", lambda demo: "/cases/?view=all", _queue_ready),
    Screen(
        "queue, refused filter",
        lambda demo: "/cases/?view=all&updated_after=someday",
        shows(role="alert", text="valid date"),
    ),
    Screen("workspace", lambda demo: f"/cases/{demo.case.number}/", _workspace_ready),
    Screen("tasks", lambda demo: "/tasks/?view=all", shows("table.list")),
    Screen("task board", lambda demo: "/tasks/board", shows(".board-card")),
    Screen("customers", lambda demo: "/customers/", shows(text="Anna Berg")),
    Screen("customer", lambda demo: f"/customers/{demo.customer.pk}/", shows(text="Anna Berg")),
    Screen("organizations", lambda demo: "/organizations/", shows(text="Nordwind GmbH")),
    Screen(
        "organization",
        lambda demo: f"/organizations/{demo.organization.pk}/",
        shows(text="Nordwind GmbH"),
    ),
    Screen("profile", lambda demo: "/profile/", shows("h1")),
    Screen("dashboard", lambda demo: "/dashboard/", shows("canvas[data-drawn]")),
    Screen("report: SLA", lambda demo: "/reports/?report=sla", shows("figure.chart")),
    Screen(
        "report: volume by organization",
        lambda demo: "/reports/?report=volume&group_by=organization",
        shows("canvas[data-drawn]"),
    ),
    Screen("report: agents", lambda demo: "/reports/?report=agents", shows("h1")),
    Screen("notifications", lambda demo: "/notifications/", shows(text="Sam mentioned you")),
]


def open_screen(page, base: str, demo: Demo, screen: Screen) -> None:
    """Sign in (unless the page is for signed-out visitors), go to the page, wait till ready."""
    if screen.signed_in:
        sign_in(page, base, demo.agent.email)
    page.goto(f"{base}{screen.path(demo)}")
    screen.ready(page)


@pytest.mark.parametrize("screen", PAGES, ids=[screen.name for screen in PAGES])
def test_no_serious_accessibility_violations(browser, asgi_server, screen):
    demo = make_demo()
    context = scan_context(browser)
    page = context.new_page()
    try:
        open_screen(page, asgi_server, demo, screen)
        violations = axe_violations(page)
        assert not violations, f"{screen.name}:\n{describe(violations)}"
    finally:
        context.close()


# --- small screens -----------------------------------------------------------------------------

SMALL_SCREENS = {
    "phone": {
        "viewport": {"width": 375, "height": 800},
        "device_scale_factor": 3,
        "is_mobile": True,
        "has_touch": True,
    },  # fmt: skip
    # A 1440×900 window at 200% zoom lays out like a 720×450 one at twice the pixel density.
    "zoom-200": {"viewport": {"width": 720, "height": 450}, "device_scale_factor": 2},
    # WCAG's reflow case: 1280 px at 400%, content in one column without sideways scrolling.
    "reflow-320": {"viewport": {"width": 320, "height": 256}, "device_scale_factor": 4},
}

WIDER_THAN_THE_SCREEN = """() => {
    const width = document.documentElement.clientWidth;
    return [...document.querySelectorAll("body *")]
        .filter((el) => el.getBoundingClientRect().right > width + 1)
        .slice(0, 8).map((el) => `${el.tagName}.${el.getAttribute("class") || ""}`);
}"""


def body_scrolls_sideways(page) -> bool:
    """Wider than the screen? Measured against the viewport we asked for: with mobile
    emulation `innerWidth` itself grows to fit a page that is too wide."""
    width = page.viewport_size["width"]
    return page.evaluate(
        "(width) => document.documentElement.scrollWidth > Math.min(width, window.innerWidth)",
        width,
    )


def small_screen_problems(page, screen: Screen, size: str) -> list[str]:
    """What is wrong with the page as shown now: sideways scrolling of the body, axe
    violations, the top navigation off the first screen."""
    problems = []
    if body_scrolls_sideways(page):
        wide = page.evaluate(WIDER_THAN_THE_SCREEN)
        problems.append(f"{screen.name} at {size} scrolls sideways: {wide}")
    if violations := axe_violations(page):
        problems.append(f"{screen.name} at {size}:\n{describe(violations)}")
    if screen.signed_in:
        page.evaluate("() => window.scrollTo(0, 0)")
        nav = page.get_by_role("navigation", name="Workspace")
        for name in ("Cases", "Tasks", "Customers", "Organizations"):
            link = nav.get_by_role("link", name=name, exact=True)
            if not link.is_visible() or not link.evaluate(IN_VIEWPORT):
                problems.append(f"{screen.name} at {size}: the {name} link is off the screen")
    return problems


IN_VIEWPORT = """(el) => {
    const box = el.getBoundingClientRect();
    return box.width > 0 && box.left >= 0 && box.right <= document.documentElement.clientWidth
        && box.top >= 0 && box.bottom <= window.innerHeight;
}"""


@pytest.mark.parametrize("size", SMALL_SCREENS, ids=list(SMALL_SCREENS))
def test_every_page_fits_a_phone_and_200_percent_zoom(browser, asgi_server, size):
    """One context per size goes through every page of the scan (signed out ones first)."""
    demo = make_demo()
    context = scan_context(browser, **SMALL_SCREENS[size])
    page = context.new_page()
    problems: list[str] = []
    try:
        for screen in sorted(PAGES, key=lambda screen: screen.signed_in):
            if screen.signed_in and "sessionid" not in {c["name"] for c in context.cookies()}:
                sign_in(page, asgi_server, demo.agent.email)
            page.goto(f"{asgi_server}{screen.path(demo)}")
            screen.ready(page)
            problems += small_screen_problems(page, screen, size)
        # the stacked navigation still works
        page.get_by_role("navigation", name="Workspace").get_by_role(
            "link", name="Organizations", exact=True
        ).click()
        page.wait_for_url(f"{asgi_server}/organizations/")
    finally:
        context.close()
    assert not problems, "\n".join(problems)


# --- the keyboard alone ------------------------------------------------------------------------

FOCUS_STATE = """() => {
    let el = document.activeElement;
    // into the (same-origin) mail frames: what is focused is inside them
    while (el && el.tagName === "IFRAME" && el.contentDocument) {
        el = el.contentDocument.activeElement;
    }
    if (!el || (el === document.body && el.ownerDocument === document)) return null;
    const style = el.ownerDocument.defaultView.getComputedStyle(el);
    return {
        tag: el.tagName, id: el.id,
        text: (el.innerText || el.value || el.ariaLabel || "").trim().slice(0, 40),
        // Chromium focuses a date input's inner field, and the document inside a frame
        focusVisible: el.matches(":focus-visible") || (el.matches(":focus-within")
            && el.matches("input[type=date], input[type=datetime-local]")),
        outline: style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2,
        shadow: style.boxShadow !== "none",
    };
}"""


def tab_to(page, matches: Callable[[dict], bool], *, limit: int = 80, back: bool = False) -> dict:
    """Press Tab (or Shift+Tab) until the focused element matches, checking at every step
    that the focus is visible: `:focus-visible` applies and draws an outline or a ring."""
    for _ in range(limit):
        page.keyboard.press("Shift+Tab" if back else "Tab")
        state = page.evaluate(FOCUS_STATE)
        if state is None:
            continue
        assert state["focusVisible"], f"focus is not :focus-visible on {state}"
        assert state["outline"] or state["shadow"], f"focus draws nothing on {state}"
        if matches(state):
            return state
    raise AssertionError(f"never reached the element after {limit} presses")


def focus_problems(page, screen: Screen, *, limit: int = 300) -> list[str]:
    """Tab through the whole page once; every stop where the focus cannot be seen."""
    problems, seen = [], []
    for _ in range(limit):
        page.keyboard.press("Tab")
        state = page.evaluate(FOCUS_STATE)
        if state is None:
            if seen:
                break  # past the last element
            continue
        key = (state["tag"], state["id"], state["text"])
        if seen and key == seen[0]:
            break  # round again
        seen.append(key)
        if not (state["focusVisible"] and (state["outline"] or state["shadow"])):
            problems.append(f"{screen.name}: focus cannot be seen on {state}")
    return problems


def test_focus_is_visible_at_every_stop_of_every_page(browser, asgi_server):
    demo = make_demo()
    context = browser.new_context()
    page = context.new_page()
    problems: list[str] = []
    try:
        for screen in sorted(PAGES, key=lambda screen: screen.signed_in):
            if screen.signed_in and "sessionid" not in {c["name"] for c in context.cookies()}:
                sign_in(page, asgi_server, demo.agent.email)
            page.goto(f"{asgi_server}{screen.path(demo)}")
            screen.ready(page)
            page.evaluate("() => { window.scrollTo(0, 0); document.activeElement?.blur(); }")
            problems += focus_problems(page, screen)
    finally:
        context.close()
    assert not problems, "\n".join(problems)


def test_queue_and_workspace_work_with_the_keyboard_alone(page, asgi_server):
    demo = make_demo()
    case = demo.case
    sign_in(page, asgi_server, demo.agent.email)
    page.goto(f"{asgi_server}/cases/?view=all")
    expect(page.locator("table.cases tbody tr")).to_have_count(4)

    # the skip link comes first and moves focus to the content
    tab_to(page, lambda s: s["text"] == "Skip to content", limit=1)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile("#main$"))

    # the filters open with the keyboard, and a checkbox ticks with Space
    tab_to(page, lambda s: s["tag"] == "SUMMARY")
    page.keyboard.press("Enter")
    tab_to(page, lambda s: s["tag"] == "INPUT" and s["id"] == "" and s["text"] == "high")
    page.keyboard.press("Space")
    page.wait_for_url(re.compile(r"priority=high"))
    expect(page.locator("table.cases tbody tr")).to_have_count(1)

    # open the case from the queue with Enter on its link
    tab_to(page, lambda s: s["tag"] == "A" and case.number in s["text"])
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(rf"/cases/{case.number}/"))
    expect(page.locator("#composer-body")).to_be_editable()

    # reach the composer, switch it to a note with the arrow keys, write and send it
    tab_to(page, lambda s: s["id"].startswith("composer-tab-"))
    page.keyboard.press("ArrowLeft")  # the tabs wrap round: Note is the last one
    expect(page.locator("#composer-tab-note")).to_be_focused()
    expect(page.locator("#composer-tab-note")).to_have_attribute("aria-selected", "true")
    tab_to(page, lambda s: s["id"] == "composer-body")
    page.keyboard.type("Called Anna: a corrected invoice goes out today.")
    tab_to(page, lambda s: s["tag"] == "BUTTON" and s["text"] == "Add note")
    page.keyboard.press("Enter")
    expect(page.locator("#note-list")).to_contain_text(
        "a corrected invoice goes out today", timeout=15000
    )
    assert CaseNote.objects.filter(case=case, body__contains="corrected invoice").exists()

    # and back to the queue through the top navigation, still by keyboard
    tab_to(page, lambda s: s["tag"] == "A" and s["text"] == "Cases", back=True, limit=200)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/cases/"))
    assert page.console_errors == []
