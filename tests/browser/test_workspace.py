"""The case workspace in a real Chromium: fields edited in place, notes, checklists, and the
proof that hostile mail runs nothing and loads nothing until the agent asks for images."""

from __future__ import annotations

import base64
import re
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone
from playwright.sync_api import expect

from cases import services
from cases.choices import MessageDirection
from cases.models import Case
from mailsync.models import Attachment, Mailbox, Message
from mailsync.services import mailbox_connect
from tests.browser.helpers import sign_in
from tests.cases.factories import (
    CaseFactory,
    CustomerFactory,
    TeamFactory,
    make_agent,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def deliver(case: Case, *, html: str = "", text: str = "", inline: dict | None = None) -> Message:
    """A customer's message joined to `case` as intake does it (local mailbox of the team)."""
    address = f"help{case.team_id}@browser.example"
    mailbox = Mailbox.objects.filter(address=address).first() or mailbox_connect(
        address=address, team=case.team, local=True
    )
    message = Message.objects.create(
        mailbox=mailbox,
        folder=mailbox.folders.get(well_known="inbox"),
        subject="Please look at this",
        from_address="anna@nordwind.example",
        from_name="Anna Berg",
        to=[{"name": "Support", "address": mailbox.address}],
        body_html=html,
        body_text=text,
        internet_message_id=f"<browser{case.pk}.{timezone.now().timestamp()}@nordwind.example>",
        received_at=timezone.now(),
    )
    if inline:
        attachment = Attachment(message=message, is_inline=True, size=len(inline["content"]),
                                name=inline["name"], content_type=inline["content_type"],
                                content_id=inline["content_id"])  # fmt: skip
        attachment.content.save(inline["name"], ContentFile(inline["content"]), save=False)
        attachment.save()
    with transaction.atomic():
        services.case_message_received(
            case=case, message=message, direction=MessageDirection.INBOUND
        )
    return message


def test_an_agent_works_a_case_in_place(page, asgi_server):
    team = TeamFactory(name="Billing")
    agent = make_agent(team=team, email="robin@support.example")
    customer = CustomerFactory(name="Anna Berg", emails=["anna@nordwind.example"])
    case = CaseFactory(team=team, title="Invoice shows the wrong VAT", customer=customer)
    task = services.task_create(
        actor=None, case=case, subject="Check the VAT rate", checklist=["Find invoice", "Fix rate"]
    )
    deliver(case, text="Our March invoice charges 21%.\n\nOn Mon, Anna wrote:\n> earlier mail")
    sign_in(page, asgi_server, agent.email)

    page.goto(f"{asgi_server}/cases/{case.number}/")
    expect(page.locator("#field-title")).to_have_value("Invoice shows the wrong VAT")
    expect(page.get_by_text("Our March invoice charges 21%.")).to_be_visible()
    expect(page.get_by_text("> earlier mail")).to_be_hidden()  # folded quote

    page.locator("#field-status").select_option("in_progress")
    expect(page.locator("#case-header .badge.status-in_progress")).to_have_text("In progress")
    expect(page.locator("#timeline")).to_contain_text("Status: New → In progress")

    page.keyboard.press("Escape")  # leave the select, then the "a" shortcut: assign to me
    page.keyboard.press("a")
    expect(page.locator("#field-assignee")).to_have_value(str(agent.pk))
    expect(page.get_by_role("button", name="Assign to me")).to_have_count(0)

    page.locator("#field-tags").fill("VAT, billing")
    page.locator("#field-tags").press("Enter")
    expect(page.locator("#case-header .badge.tag")).to_have_text(["billing", "vat"])

    page.locator("#note-body").fill("Checked with finance, @robin follows up")
    page.get_by_role("button", name="Add note").click()
    expect(page.locator("#note-list")).to_contain_text("Checked with finance")
    expect(page.locator("#note-body")).to_have_value("")

    page.get_by_label("Find invoice").check()
    expect(page.locator(f"#task-{task.pk}")).to_contain_text("1/2 done")
    expect(page.get_by_label("Find invoice")).to_be_checked()

    page.locator("#field-status").select_option("awaiting_customer")
    expect(page.locator("#case-header .badge.status-awaiting_customer")).to_be_visible()

    case.refresh_from_db()
    assert (case.status, case.assignee) == ("awaiting_customer", agent)
    assert sorted(case.tags.values_list("name", flat=True)) == ["billing", "vat"]
    assert case.notes.get().body == "Checked with finance, @robin follows up"
    assert dict(task.checklist.values_list("text", "done")) == {
        "Find invoice": True,
        "Fix rate": False,
    }
    assert page.console_errors == []


def test_a_refused_transition_is_shown_next_to_the_field(page, asgi_server):
    team = TeamFactory(name="Billing")
    agent = make_agent(team=team)
    case = CaseFactory(team=team, title="Old matter")
    services.case_change_status(actor=None, case=case, status="closed")
    case.closed_at = timezone.now() - timedelta(days=60)
    case.save(update_fields=["closed_at"])
    sign_in(page, asgi_server, agent.email)

    page.goto(f"{asgi_server}/cases/{case.number}/")
    page.locator("#field-status").select_option("in_progress")

    expect(page.get_by_role("alert")).to_contain_text("open a follow-up case instead")
    expect(page.locator("#case-header .badge.status-closed")).to_be_visible()


class Trap:
    """A tiny web server on loopback that writes down every request it gets."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        trap = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                trap.paths.append(urlsplit(self.path).path)
                self.send_response(200)
                is_image = self.path.endswith(".png")
                self.send_header("Content-Type", "image/png" if is_image else "text/plain")
                self.end_headers()
                self.wfile.write(PIXEL if is_image else b"caught")

            do_POST = do_GET  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, path: str, *, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while path not in self.paths:
            if time.monotonic() > deadline:
                raise AssertionError(f"{path} was never requested; got {self.paths}")
            time.sleep(0.05)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def trap():
    server = Trap()
    yield server
    server.close()


def hostile_html(trap: str) -> str:
    """Every way we know for mail to run script or phone home; each would call the trap or
    retitle the agent's page."""
    retitle = "window.top.document.title="
    return f"""<html><head>
<meta http-equiv="refresh" content="0;url={trap}/meta-refresh">
<link rel="stylesheet" href="{trap}/link.css"><base href="{trap}/base/">
<style>@import url({trap}/import.css); body {{ background: url({trap}/style-bg.png) }}</style>
<script>{retitle}'pwned-script'; new Image().src = '{trap}/script';</script>
</head>
<body onload="{retitle}'pwned-onload'; fetch('{trap}/onload')">
<p id="hello">Hello from a stranger</p>
<img id="remote" src="{trap}/pixel.png" alt="remote pixel">
<img id="logo" src="cid:logo@nordwind" alt="inline logo">
<img src="nowhere" onerror="{retitle}'pwned-onerror'; fetch('{trap}/onerror')">
<a id="js-link" href="javascript:{retitle}'pwned-link';fetch('{trap}/js-link')">click me</a>
<form action="{trap}/form"><input name="q" value="stolen"><input type="submit" value="Go"></form>
<iframe src="{trap}/iframe"></iframe><object data="{trap}/object"></object>
<embed src="{trap}/embed"><video poster="{trap}/poster.png"></video>
<svg onload="{retitle}'pwned-svg'"><image href="{trap}/svg-image.png"/></svg>
<div style="background-image: url('{trap}/inline-style.png'); width: 20px; height: 20px">x</div>
<div style="background: u\\72l({trap}/escaped.png)">y</div>
<img srcset="{trap}/srcset.png 2x" alt="srcset"><table background="{trap}/table.png"><tr><td>t
</td></tr></table>
<details open ontoggle="{retitle}'pwned-toggle'"><summary>s</summary>d</details>
<a id="plain-link" href="{trap}/followed">a link the agent might click</a>
</body></html>"""


def test_hostile_mail_runs_nothing_and_loads_nothing_until_images_are_asked_for(
    page, asgi_server, trap
):
    team = TeamFactory(name="Billing")
    agent = make_agent(team=team)
    case = CaseFactory(team=team, title="A very suspicious message")
    message = deliver(
        case,
        html=hostile_html(trap.base),
        inline={"name": "logo.png", "content_type": "image/png", "content": PIXEL,
                "content_id": "<logo@nordwind>"},
    )  # fmt: skip
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    sign_in(page, asgi_server, agent.email)

    page.goto(f"{asgi_server}/cases/{case.number}/")
    title = page.title()
    body = page.frame_locator(f"#message-{message.pk}-body")
    expect(body.locator("#hello")).to_have_text("Hello from a stranger")
    frame = page.frame(url=re.compile(rf"/messages/{message.pk}/body$"))
    frame.wait_for_load_state("load")  # every subresource it was going to fetch has been tried
    # The inline image is the message's own attachment, served by the CRM: it shows.
    expect(body.locator("#logo")).to_have_js_property("naturalWidth", 1)
    expect(body.locator("#remote")).to_have_js_property("naturalWidth", 0)
    body.locator("#js-link").click()
    for found in (
        "script",
        "iframe",
        "object",
        "embed",
        "form",
        "svg",
        "meta[http-equiv]",
        "link",
        "body style",
        "base[href]",
        "[onload], [onerror], [ontoggle]",
    ):
        expect(body.locator(found)).to_have_count(0)  # fmt: skip

    assert trap.paths == []
    assert page.title() == title
    assert dialogs == []

    page.get_by_role("button", name="Load images").click()

    trap.wait_for("/pixel.png")  # the positive control: this test sees a request when one is made
    expect(body.locator("#remote")).to_have_js_property("naturalWidth", 1)
    frame = page.frame(url=re.compile(rf"/messages/{message.pk}/body\?images=1$"))
    frame.wait_for_load_state("load")
    assert trap.paths == ["/pixel.png"]
    assert page.title() == title
    assert dialogs == []
    assert page.url == f"{asgi_server}/cases/{case.number}/"
    message.attachments.get().content.delete()
