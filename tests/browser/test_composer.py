"""The composer in a real Chromium: a reply in progress survives a reload, Send waits for
Undo, the sent reply reaches a real SMTP relay (aiosmtpd on loopback) threaded to the
customer's message and shows in the conversation; a forward carries files from the picker
and from a drop; a canned response arrives with the case's values filled in.

The web process (uvicorn) queues the relay's message as in production; no Celery worker
runs here, so the test does the worker's part (`outbound_relay`) itself."""

from __future__ import annotations

import email
import email.policy

import pytest
from playwright.sync_api import expect

from cases.choices import MessageDirection
from cases.models import CannedResponse, Case, CaseMessage, ReplyDraft
from cases.tasks import intake_message
from mailsync import services as mail
from mailsync.models import Message, OutboundMessage
from tests.browser.helpers import sign_in
from tests.cases import test_replies
from tests.cases.factories import TeamFactory, make_agent
from tests.cases.test_replies import CUSTOMER, LOCAL

relay = test_replies.relay  # a real SMTP relay on loopback (aiosmtpd, STARTTLS and AUTH)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("eager_celery"),
]


def customer_writes(mailbox) -> Case:
    """The customer's mail arrives through the SMTP listener's spool. Outside a test
    transaction the spool delivers (and intake runs) on commit already, so this only makes
    sure both happened."""
    message_id = "<printer-on-fire@nordwind.example>"
    raw = (
        f"From: Anna Berg <{CUSTOMER}>\r\nTo: {mailbox.address}\r\nSubject: Printer on fire\r\n"
        f"Message-ID: {message_id}\r\n\r\nIt prints only black pages.\r\n"
    ).encode()
    inbound = mail.inbound_receive(raw=raw, mail_from=CUSTOMER, rcpt_tos=[mailbox.address])
    mail.inbound_deliver(inbound_id=inbound.pk)
    message = Message.objects.get(mailbox=mailbox, internet_message_id=message_id)
    if not CaseMessage.objects.filter(message=message).exists():
        intake_message(message.pk)
    return CaseMessage.objects.get(message=message).case


@pytest.fixture
def desk(relay):
    """A team with a local mailbox, an agent of it, and a case the customer opened by mail."""
    team = TeamFactory(name="Billing")
    agent = make_agent(team=team, email="robin@support.example")
    mailbox = mail.mailbox_connect(address=LOCAL, team=team, local=True)
    case = customer_writes(mailbox)
    return {"team": team, "agent": agent, "case": case, "relay": relay}


def relayed(relay_handler) -> list[email.message.EmailMessage]:
    """Do the worker's part: hand every queued message to the relay; return what it got."""
    for outbound in OutboundMessage.objects.filter(status="queued"):
        mail.outbound_relay(outbound_id=outbound.pk)
    return [
        email.message_from_bytes(raw, policy=email.policy.default)
        for _, _, raw in relay_handler.received
    ]


def open_case(page, base: str, case) -> None:
    page.goto(f"{base}/cases/{case.number}/")
    expect(page.locator("#composer-body")).to_be_editable()


def test_a_reply_survives_a_reload_waits_for_undo_and_arrives_threaded(page, asgi_server, desk):
    case = desk["case"]
    sign_in(page, asgi_server, desk["agent"].email)
    open_case(page, asgi_server, case)
    page.evaluate(
        "window.composing = []; document.addEventListener('crm:composing',"
        " (e) => window.composing.push(e.detail))"
    )
    expect(page.locator("#composer-to")).to_have_value(CUSTOMER)

    page.locator("#composer-body").fill("Hello Anna,\n\na new cartridge is on its way.")
    expect(page.locator("[data-draft-state]")).to_have_text("Draft saved")
    assert page.evaluate("window.composing") == [{"case": case.number, "active": True}]

    page.reload()
    expect(page.locator("#composer-body")).to_have_value(
        "Hello Anna,\n\na new cartridge is on its way."
    )
    expect(page.locator("[data-restored-note]")).to_be_visible()

    page.get_by_role("button", name="Send").click()
    expect(page.locator("[data-countdown]")).to_contain_text("Sending in")
    page.get_by_role("button", name="Undo").click()
    expect(page.locator("[data-countdown]")).to_be_hidden()
    expect(page.locator("#composer-status")).to_contain_text("Not sent")
    page.wait_for_timeout(6500)  # longer than the undo window: still nothing may go out
    assert not OutboundMessage.objects.exists()
    assert not CaseMessage.objects.filter(case=case, direction=MessageDirection.OUTBOUND).exists()

    page.locator("#composer-body").press("Control+Enter")
    expect(page.locator("[data-countdown]")).to_be_visible()
    expect(page.locator("#composer-status")).to_contain_text(f"Sent to {CUSTOMER}.", timeout=15000)
    expect(page.locator("section.thread .count")).to_have_text("2")
    ours = page.frame_locator("section.thread article.outbound iframe.mail-body")
    expect(ours.locator("body")).to_contain_text("a new cartridge is on its way.")
    expect(page.locator("#composer-body")).to_have_value("")

    [sent] = relayed(desk["relay"])
    opening = CaseMessage.objects.get(case=case, direction=MessageDirection.INBOUND).message
    assert sent["To"] == CUSTOMER
    assert sent["Subject"] == f"Re: Printer on fire [{case.number}]"
    assert sent["In-Reply-To"] == opening.internet_message_id
    assert opening.internet_message_id in sent["References"]
    assert "a new cartridge is on its way." in sent.get_body(("plain",)).get_content()
    assert not ReplyDraft.objects.exists()

    page.reload()
    expect(page.locator("#composer-body")).to_have_value("")
    assert page.console_errors == []


def test_a_forward_with_picked_and_dropped_files_and_a_canned_response(page, asgi_server, desk):
    case = desk["case"]
    CannedResponse.objects.create(
        name="Vendor handover",
        body="Hi, our customer {{ customer.name }} reports {{ case.number }}: {{ case.title }}.",
        add_tags=["vendor"],
    )
    sign_in(page, asgi_server, desk["agent"].email)
    open_case(page, asgi_server, case)

    page.get_by_role("tab", name="Forward").click()
    expect(page.locator("#composer-to")).to_have_value("")
    page.locator("#composer-to").fill("vendor@printers.example")
    page.get_by_label("Canned response").select_option(label="Vendor handover")
    page.get_by_role("button", name="Insert").click()
    expect(page.locator("#composer-body")).to_have_value(
        f"Hi, our customer Anna Berg reports {case.number}: Printer on fire."
    )
    expect(page.locator("[data-apply-macro]")).to_contain_text("add tags vendor")
    page.get_by_label("Also apply its actions").check()

    page.locator("#composer-files").set_input_files(
        files=[{"name": "report.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4 x"}]
    )
    dropped = page.evaluate_handle(
        "() => { const dt = new DataTransfer();"
        " dt.items.add(new File(['dropped text'], 'dropped.txt', {type: 'text/plain'}));"
        " return dt; }"
    )
    page.dispatch_event("[data-drop-zone]", "drop", {"dataTransfer": dropped})
    files = page.locator("[data-file-list] li")
    expect(files).to_have_count(2)
    expect(files.nth(1)).to_contain_text("dropped.txt")

    page.get_by_role("button", name="Send").click()
    expect(page.locator("#composer-status")).to_contain_text(
        "Forwarded to vendor@printers.example.", timeout=15000
    )
    [sent] = relayed(desk["relay"])
    assert sent["To"] == "vendor@printers.example"
    assert sent["Subject"] == f"Fw: Printer on fire [{case.number}]"
    attached = {part.get_filename(): part.get_content() for part in sent.iter_attachments()}
    assert attached == {"report.pdf": b"%PDF-1.4 x", "dropped.txt": "dropped text"}
    assert "Anna Berg reports" in sent.get_body(("plain",)).get_content()
    assert list(case.tags.values_list("name", flat=True)) == ["vendor"]
    expect(page.locator("#case-header")).to_contain_text("vendor")
    assert page.console_errors == []
