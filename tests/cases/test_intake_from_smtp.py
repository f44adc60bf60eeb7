"""Intake end to end from the CRM's own SMTP listener: a customer's mail to a local mailbox
becomes a case, and their answer to our reply lands in the same case."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

import pytest

from cases.models import Case, CaseMessage
from crm.celery import app
from mailsync import services as mail
from mailsync import smtp
from mailsync.models import InboundMessage
from tests.conftest import free_port

pytestmark = pytest.mark.django_db(transaction=True)
HELP = "help@crm.example"


def customer_mail(subject: str, **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Anna Berg <anna@nordwind.example>"
    message["To"] = HELP
    message["Subject"] = subject
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content("Grüße, the invoice is wrong.\n")
    return message


def work_off_the_spool() -> None:
    """What the worker does: deliver what the listener spooled; intake follows (eager here,
    in this thread, not in the listener's)."""
    app.conf.task_always_eager = True
    try:
        for inbound in InboundMessage.objects.filter(status="pending").order_by("pk"):
            mail.inbound_deliver(inbound_id=inbound.pk)
    finally:
        app.conf.task_always_eager = False


def test_mail_to_a_local_mailbox_opens_a_case_and_the_answer_threads(team, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    mail.mailbox_connect(address=HELP, team=team, local=True)
    port = free_port()
    controller = smtp.build_controller(host="127.0.0.1", port=port)
    controller.start()
    try:
        first = customer_mail("Invoice 4711 is wrong", Message_ID="<q1@nordwind.example>")
        with smtplib.SMTP("127.0.0.1", port) as client:
            client.send_message(first)
        work_off_the_spool()
        case = CaseMessage.objects.get(message__internet_message_id="<q1@nordwind.example>").case
        answer = customer_mail(f"RE: Invoice 4711 [{case.number}]",
                               Message_ID="<q2@nordwind.example>",
                               In_Reply_To="<q1@nordwind.example>")  # fmt: skip
        ooo = customer_mail("Automatic reply: Invoice", Auto_Submitted="auto-replied")
        with smtplib.SMTP("127.0.0.1", port) as client:
            client.send_message(answer)
            client.send_message(ooo)
        work_off_the_spool()
    finally:
        controller.stop()

    assert InboundMessage.objects.filter(status="delivered").count() == 3
    assert Case.objects.count() == 1
    outcomes = sorted(CaseMessage.objects.values_list("outcome", flat=True))
    assert outcomes == ["auto_reply", "new_case", "threaded"]
    assert case.customer.emails.get().email == "anna@nordwind.example"
    assert (
        CaseMessage.objects.get(message__internet_message_id="<q2@nordwind.example>").case == case
    )
