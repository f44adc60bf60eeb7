"""Agents answer from the case (API), through Graph for Microsoft 365 mailboxes and through the
outbound queue and a real SMTP relay (aiosmtpd, STARTTLS and AUTH) for local ones; the
customer's answer threads back; new cases are acknowledged once."""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from django.test import Client
from django.utils import timezone

from cases import services
from cases.choices import IntakeOutcome, MessageDirection
from cases.models import AutoAcknowledgement, AutoAckSent, Case, CaseMessage
from cases.tasks import intake_message
from crm.models import AgentProfile
from mailsync import services as mail
from mailsync.choices import OutboundStatus
from mailsync.models import Message, OutboundMessage, SmtpRelay
from tests.crm.factories import UserFactory
from tests.mailsync.conftest import graph_message

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_celery")]

LOCAL = "help@crm.example"
GRAPH = "support@contoso.example"
CUSTOMER = "anna.berg@nordwind.example"


# --- a real SMTP relay ---------------------------------------------------------------------------


class RelayHandler:
    """Keeps what it accepts; answers `refuse` addresses with their code."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []
        self.refuse: dict[str, str] = {}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Queued"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def relay(graph_pki, settings):
    """A relay on loopback that requires STARTTLS and AUTH, configured as the default."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(graph_pki.server_cert, graph_pki.server_key)
    handler = RelayHandler()

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login, auth_data.password) == (b"crm", b"relay-secret")  # fmt: skip
        return AuthResult(success=ok, handled=False)

    controller = Controller(
        handler, hostname="127.0.0.1", port=_free_port(), tls_context=context,
        require_starttls=True, authenticator=authenticate, auth_required=True,
    )  # fmt: skip
    controller.start()
    settings.SMTP_RELAY_CA_BUNDLE = str(graph_pki.ca_cert)
    SmtpRelay.objects.create(
        name="ISP", host="127.0.0.1", port=controller.port, username="crm",
        password="relay-secret", is_default=True,
    )  # fmt: skip
    handler.port = controller.port
    yield handler
    controller.stop()


# --- cases opened by mail ------------------------------------------------------------------------


@pytest.fixture
def local_mailbox(team):
    return mail.mailbox_connect(address=LOCAL, team=team, local=True)


def customer_writes(mailbox, *, subject="Printer on fire", sender=CUSTOMER, **extra) -> Case:
    """The customer's message arrives in the mailbox through the SMTP listener's spool."""
    raw = (
        f"From: Anna Berg <{sender}>\r\nTo: {mailbox.address}\r\nSubject: {subject}\r\n"
        f"Message-ID: <q{timezone.now().timestamp()}@nordwind.example>\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in extra.items())
        + "\r\nIt prints only black pages.\r\n"
    ).encode()
    inbound = mail.inbound_receive(raw=raw, mail_from=sender, rcpt_tos=[mailbox.address])
    [message] = mail.inbound_deliver(inbound_id=inbound.pk)
    intake_message(message.pk)
    link = CaseMessage.objects.get(message=message)
    return link.case


def test_a_reply_through_the_relay_threads_back_into_the_case(
    local_mailbox, relay, api, agent, django_capture_on_commit_callbacks
):
    AgentProfile.objects.filter(user=agent).update(signature="Dana\nBilling team")
    case = customer_writes(local_mailbox)

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            f"/api/v1/cases/{case.pk}/reply",
            {"text": "Hello Anna,\n\nplease try a new cartridge."},
            format="json",
        )

    assert response.status_code == 201, response.content
    assert response.json()["direction"] == "outbound"
    [(mail_from, rcpt_tos, raw)] = relay.received
    assert (mail_from, rcpt_tos) == (LOCAL, [CUSTOMER])
    sent = email.message_from_bytes(raw, policy=email.policy.default)
    opening = CaseMessage.objects.filter(case=case, direction="inbound").get().message
    assert sent["Subject"] == f"Re: Printer on fire [{case.number}]"
    assert sent["In-Reply-To"] == opening.internet_message_id
    assert opening.internet_message_id in sent["References"]
    assert "Billing team" in sent.get_body(("plain",)).get_content()
    outbound = OutboundMessage.objects.get()
    assert outbound.status == OutboundStatus.SENT
    assert outbound.message.folder.well_known == "sentitems"
    case.refresh_from_db()
    assert case.first_response_at is not None
    link = CaseMessage.objects.get(message=outbound.message)
    assert (link.case, link.outcome) == (case, IntakeOutcome.AGENT_REPLY)

    # The customer answers their mail program's way: In-Reply-To our Message-ID, no number
    answer = customer_writes(
        local_mailbox, subject="Re: Printer on fire", **{"In-Reply-To": sent["Message-ID"]}
    )
    assert answer == case


def test_a_reply_through_graph_is_sent_the_outlook_way_and_counts_once(
    graph_simulator, settings, team, api, eager_celery, django_capture_on_commit_callbacks
):
    settings.GRAPH_RETRY_BASE_SECONDS = 0.01
    remote = graph_simulator.add_mailbox(GRAPH)
    remote.add_message("inbox", **graph_message(1))
    mailbox = mail.mailbox_connect(address=GRAPH, team=team)
    with django_capture_on_commit_callbacks(execute=True):
        mail.mailbox_sync(mailbox=mailbox)
    case = Case.objects.get()

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            f"/api/v1/cases/{case.pk}/reply",
            {"body": "<p>Fixed.</p><script>alert(1)</script>", "mode": "reply_all"},
            format="json",
        )

    assert response.status_code == 201, response.content
    [sent] = graph_simulator.sent_messages
    assert sent["subject"] == f"Re: Invoice 1 is wrong [{case.number}]"
    assert "<script>" not in sent["body"]["content"]
    recipients = {r["emailAddress"]["address"].lower() for r in sent["toRecipients"]}
    assert "anna.berg@nordwind.example" in recipients
    with django_capture_on_commit_callbacks(execute=True):
        mail.mailbox_sync(mailbox=mailbox)  # the sent copy comes back from Sent Items
    links = CaseMessage.objects.filter(case=case, direction=MessageDirection.OUTBOUND)
    assert links.count() == 1
    assert Message.objects.filter(mailbox=mailbox, folder__well_known="sentitems").count() == 1


def test_forwarding_with_an_attachment_and_bad_requests(
    local_mailbox, relay, api, django_capture_on_commit_callbacks
):
    case = customer_writes(local_mailbox)
    upload = _file("report.pdf", b"%PDF-1.4 tiny")

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            f"/api/v1/cases/{case.pk}/forward",
            {"text": "FYI", "to": "vendor@printers.example", "attachments": upload},
            format="multipart",
        )

    assert response.status_code == 201, response.content
    [(_, rcpt_tos, raw)] = relay.received
    assert rcpt_tos == ["vendor@printers.example"]
    sent = email.message_from_bytes(raw, policy=email.policy.default)
    assert sent["Subject"] == f"Fw: Printer on fire [{case.number}]"
    assert [part.get_filename() for part in sent.iter_attachments()] == ["report.pdf"]
    assert sent["In-Reply-To"] is None

    assert api.post(f"/api/v1/cases/{case.pk}/forward", {"text": "x"}, format="json").json() == {
        "to": ["This field is required."]
    }
    bad = api.post(f"/api/v1/cases/{case.pk}/reply", {"text": " "}, format="json")
    assert bad.status_code == 400
    assert "body" in bad.json()
    wrong = api.post(f"/api/v1/cases/{case.pk}/reply", {"text": "x", "message": 999999},
                     format="json")  # fmt: skip
    assert wrong.json() == {"message": ["No such message in this case."]}


def test_attachments_over_the_limit_are_refused_before_anything_is_sent(
    local_mailbox, relay, api, settings
):
    settings.MAIL_SEND_MAX_BYTES = 10
    case = customer_writes(local_mailbox)
    response = api.post(
        f"/api/v1/cases/{case.pk}/reply",
        {"text": "see attached", "attachments": _file("big.bin", b"x" * 11)},
        format="multipart",
    )
    assert response.status_code == 400
    assert "attachments" in response.json()
    assert not OutboundMessage.objects.exists()


def test_a_case_you_may_not_see_cannot_be_answered(local_mailbox, relay):
    case = customer_writes(local_mailbox)
    stranger = Client()
    stranger.force_login(UserFactory())
    response = stranger.post(
        f"/api/v1/cases/{case.pk}/reply", {"text": "hi"}, content_type="application/json"
    )
    assert response.status_code == 404
    assert not relay.received


def test_the_relay_retries_temporary_failures_and_records_permanent_ones(
    local_mailbox, relay, api, django_capture_on_commit_callbacks
):
    case = customer_writes(local_mailbox)
    relay.refuse[CUSTOMER] = "451 4.7.1 Greylisted, try again later"

    with django_capture_on_commit_callbacks(execute=True):
        api.post(f"/api/v1/cases/{case.pk}/reply", {"text": "hi"}, format="json")

    outbound = OutboundMessage.objects.get()
    assert outbound.status == OutboundStatus.QUEUED
    assert outbound.attempts == 1
    assert outbound.next_attempt_at > timezone.now()
    assert "451" in outbound.refused[CUSTOMER]
    assert mail.outbound_due() == []

    OutboundMessage.objects.update(next_attempt_at=timezone.now())
    del relay.refuse[CUSTOMER]
    assert mail.outbound_due() == [outbound.pk]
    assert mail.outbound_relay(outbound_id=outbound.pk) == OutboundStatus.SENT
    assert len(relay.received) == 1

    relay.refuse[CUSTOMER] = "550 5.1.1 No such user"
    with django_capture_on_commit_callbacks(execute=True):
        api.post(f"/api/v1/cases/{case.pk}/reply", {"text": "again"}, format="json")
    failed = OutboundMessage.objects.latest("pk")
    assert failed.status == OutboundStatus.FAILED
    assert "550" in failed.refused[CUSTOMER]


def test_without_a_relay_mail_to_other_domains_is_refused_with_a_clear_error(local_mailbox, api):
    case = customer_writes(local_mailbox)
    response = api.post(f"/api/v1/cases/{case.pk}/reply", {"text": "hi"}, format="json")
    assert response.status_code == 400
    assert "No SMTP relay is configured" in response.json()["mailbox"][0]
    assert not CaseMessage.objects.filter(direction="outbound").exists()


def test_the_outbound_queue_in_admin(local_mailbox, relay, api, django_capture_on_commit_callbacks):
    case = customer_writes(local_mailbox)
    relay.refuse[CUSTOMER] = "550 5.1.1 No such user"
    with django_capture_on_commit_callbacks(execute=True):
        api.post(f"/api/v1/cases/{case.pk}/reply", {"text": "hi"}, format="json")
    admin = Client()
    admin.force_login(UserFactory(is_staff=True, is_superuser=True))

    page = admin.get("/admin/mailsync/outboundmessage/").content.decode()
    assert CUSTOMER in page
    assert "Failed" in page
    del relay.refuse[CUSTOMER]
    outbound = OutboundMessage.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        admin.post(
            "/admin/mailsync/outboundmessage/",
            {"action": "retry_now", "_selected_action": [outbound.pk]},
        )
    outbound.refresh_from_db()
    assert outbound.status == OutboundStatus.SENT
    relay_page = admin.get(f"/admin/mailsync/smtprelay/{SmtpRelay.objects.get().pk}/change/")
    assert b"relay-secret" not in relay_page.content


# --- automatic acknowledgement -------------------------------------------------------------------


@pytest.fixture
def acknowledging(team):
    return AutoAcknowledgement.objects.create(team=team)


def test_a_new_case_is_acknowledged_once_without_counting_as_the_response(
    local_mailbox, relay, acknowledging, eager_celery, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        case = customer_writes(local_mailbox)

    [(_, rcpt_tos, raw)] = relay.received
    sent = email.message_from_bytes(raw, policy=email.policy.default)
    assert rcpt_tos == [CUSTOMER]
    assert sent["Subject"] == f"We received your request [{case.number}]"
    assert sent["Auto-Submitted"] == "auto-replied"
    assert case.number in sent.get_body(("plain",)).get_content()
    assert "Printer on fire" in sent.get_body(("plain",)).get_content()
    case.refresh_from_db()
    assert case.first_response_at is None
    assert AutoAckSent.objects.get().case == case
    assert services.auto_ack_send(case_id=case.pk) is None  # never twice for one case
    assert len(relay.received) == 1


def test_acknowledgements_respect_the_hourly_limit_auto_replies_and_our_addresses(
    local_mailbox, relay, acknowledging, team, eager_celery, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        customer_writes(local_mailbox, subject="First")
        second = customer_writes(local_mailbox, subject="Second, a minute later")
        customer_writes(
            local_mailbox, subject="Out of office", **{"Auto-Submitted": "auto-replied"}
        )
    assert len(relay.received) == 1
    assert not AutoAckSent.objects.filter(case=second).exists()

    AutoAckSent.objects.update(sent_at=timezone.now() - timedelta(hours=2))
    with django_capture_on_commit_callbacks(execute=True):
        customer_writes(local_mailbox, subject="Third, next morning")
    assert len(relay.received) == 2

    opened_by_hand = Case.objects.create(number="X-1", title="By phone", team=team)
    assert services.auto_ack_send(case_id=opened_by_hand.pk) is None


def test_a_team_that_turned_it_off_sends_nothing(
    local_mailbox, relay, acknowledging, eager_celery, django_capture_on_commit_callbacks
):
    AutoAcknowledgement.objects.update(enabled=False)
    with django_capture_on_commit_callbacks(execute=True):
        customer_writes(local_mailbox)
    assert relay.received == []


def test_the_template_is_checked_and_previewed_in_admin(local_mailbox, relay, acknowledging, team):
    customer_writes(local_mailbox)
    admin = Client()
    admin.force_login(UserFactory(is_staff=True, is_superuser=True))
    url = f"/admin/cases/autoacknowledgement/{acknowledging.pk}/change/"

    broken = admin.post(url, {"team": team.pk, "enabled": "on", "subject": "Hi {% if %}",
                              "body": "{{ case.number"})  # fmt: skip
    page = admin.get(url).content.decode()

    assert broken.status_code == 200
    assert "This template does not parse" in broken.content.decode()
    assert "We received your request [" in page


def _file(name: str, content: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, content, content_type="application/octet-stream")


def test_an_answer_from_the_case_meets_the_first_response_target(
    local_mailbox, relay, api, django_capture_on_commit_callbacks
):
    from cases.models import SlaPolicy, SlaTarget
    from cases.services.sla import sla_config_changed

    policy = SlaPolicy.objects.create(name="Around the clock", is_default=True)
    for metric, minutes in (("first_response", 60), ("next_response", 120), ("resolution", 600)):
        SlaTarget.objects.create(policy=policy, priority="normal", metric=metric,
                                 minutes=minutes, business_time=False)  # fmt: skip
    sla_config_changed()
    case = customer_writes(local_mailbox, subject="Printer still dead")
    api.patch(f"/api/v1/cases/{case.pk}", {"priority": "normal"}, format="json")
    case.refresh_from_db()
    assert case.sla_first_response_state == "on_track"

    with django_capture_on_commit_callbacks(execute=True):
        api.post(f"/api/v1/cases/{case.pk}/reply", {"text": "On it."}, format="json")

    case.refresh_from_db()
    assert case.sla_first_response_state == "met"
    body = api.get(f"/api/v1/cases/{case.pk}").json()["sla"]
    assert body["first_response"]["state"] == "met"
    assert body["resolution"]["state"] == "on_track"


# --- workflow rules that write to the customer ----------------------------------------------------


def test_a_rule_answers_with_a_canned_response_through_the_relay(
    local_mailbox, relay, team, eager_celery, django_capture_on_commit_callbacks
):
    from cases.choices import RuleTrigger
    from cases.models import CannedResponse, WorkflowRun
    from tests.cases.factories import make_rule

    macro = CannedResponse.objects.create(
        name="Out of office",
        subject="About {{ case.title }}",
        body="Dear {{ customer.first_name }}, we are closed until Monday.",
        set_status="awaiting_customer",
        add_tags=["ooo"],
    )
    make_rule("Weekend answer", trigger=RuleTrigger.CUSTOMER_MESSAGE,
              actions=[{"kind": "email_customer", "canned_response": macro}])  # fmt: skip

    with django_capture_on_commit_callbacks(execute=True):
        case = customer_writes(local_mailbox)

    [(_, rcpt_tos, raw)] = relay.received
    sent = email.message_from_bytes(raw, policy=email.policy.default)
    assert rcpt_tos == [CUSTOMER]
    assert sent["Subject"] == f"About Printer on fire [{case.number}]"
    assert sent["Auto-Submitted"] == "auto-replied"
    assert "Dear Anna, we are closed until Monday." in sent.get_body(("plain",)).get_content()
    case.refresh_from_db()
    assert case.status == "awaiting_customer"
    assert set(case.tags.values_list("name", flat=True)) == {"ooo"}
    assert case.first_response_at is None  # the machine wrote, not the team
    link = CaseMessage.objects.get(case=case, direction=MessageDirection.OUTBOUND)
    assert link.outcome == IntakeOutcome.AUTOMATED
    [run] = WorkflowRun.objects.filter(case=case)
    assert run.errors == 0
    assert run.actions[0]["summary"] == "email to the customer sent"


def test_a_rule_email_that_cannot_be_sent_is_logged_on_the_run(
    local_mailbox, team, eager_celery, django_capture_on_commit_callbacks
):
    """No relay for the customer's domain: the run says why, the case is untouched."""
    from cases.choices import RuleTrigger
    from cases.models import WorkflowRun
    from tests.cases.factories import make_rule

    make_rule(
        "Answer",
        trigger=RuleTrigger.CUSTOMER_MESSAGE,
        actions=[{"kind": "email_customer", "body": "Thanks, {{ customer.name }}."}],
    )
    with django_capture_on_commit_callbacks(execute=True):
        case = customer_writes(local_mailbox)

    [run] = WorkflowRun.objects.filter(case=case)
    assert run.errors == 1
    assert "No SMTP relay" in run.actions[0]["error"]
    assert not CaseMessage.objects.filter(case=case, direction=MessageDirection.OUTBOUND).exists()
