"""Local delivery from the SMTP spool: the same Message columns Graph sync fills, change
numbers, announcements, attachments in storage, and no loss or duplicate whatever fails."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailsync import services
from mailsync.models import Attachment, InboundMessage, Message
from mailsync.services import local
from mailsync.services.inbound import MAX_DELIVERY_ATTEMPTS
from mailsync.signals import message_ingested
from mailsync.tasks import deliver_inbound
from tests.cases.factories import TeamFactory, make_agent
from tests.mailsync import mime_samples as samples
from tests.mailsync.test_mime import messages

pytestmark = pytest.mark.django_db


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def help_box(team, media):
    return services.mailbox_connect(address="help@crm.example", team=team, local=True)


@pytest.fixture
def sales_box(media):
    team = TeamFactory(name="Sales")
    return services.mailbox_connect(address="sales@crm.example", team=team, local=True)


def receive(raw: bytes, *, rcpt=("help@crm.example",), mail_from="anna.berg@nordwind.example",
            user=None) -> InboundMessage:  # fmt: skip
    return services.inbound_receive(
        raw=raw, mail_from=mail_from, rcpt_tos=list(rcpt), peer="192.0.2.7",
        helo="mx.nordwind.example", user_id=user.pk if user else None,
    )  # fmt: skip


def files_in(root) -> list:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture
def announced():
    seen: list[tuple[int, int, str]] = []

    def receiver(**kwargs):
        seen.append((kwargs["message_id"], kwargs["mailbox_id"], kwargs["folder_role"]))

    message_ingested.connect(receiver)
    yield seen
    message_ingested.disconnect(receiver)


def test_delivery_fills_the_columns_graph_sync_fills(help_box):
    inbound = receive(samples.ALTERNATIVE)

    [message] = services.inbound_deliver(inbound_id=inbound.pk)

    message.refresh_from_db()
    assert (message.mailbox, message.folder.well_known) == (help_box, "inbox")
    assert message.subject == "Re: Invoice 1043"
    assert (message.from_name, message.from_address) == ("Berg, Anna", "anna.berg@nordwind.example")
    assert message.sender_address == "mailer@nordwind.example"
    assert message.to[1] == {"name": "Jon Ek", "address": "jon@nordwind.example"}
    assert message.cc == [{"name": "Jörg Müller", "address": "jorg@nordwind.example"}]
    assert message.reply_to == [{"name": "", "address": "tickets@nordwind.example"}]
    assert message.bcc == []
    assert message.internet_message_id == "<reply2@nordwind.example>"
    assert message.in_reply_to == "<ours1@crm.example>"
    assert message.references == "<first@nordwind.example> <ours1@crm.example>"
    assert message.body_text.startswith("Hello,\nthe invoice lists two licences")
    assert "<p>Hello,</p>" in message.body_html
    assert message.preview == "Hello, the invoice lists two licences – we have one."
    assert message.headers["auto-submitted"] == "no"
    assert message.headers["return-path"] == "<anna.berg@nordwind.example>"
    assert message.headers["content-type"].startswith("multipart/alternative")
    assert message.headers_fetched is True
    assert message.conversation_id == ""
    assert message.importance == "high"
    assert message.is_read is False
    assert message.sent_at is not None
    assert message.received_at == inbound.received_at
    assert message.parse_problems == []
    assert message.is_bounce is False
    assert (message.inbound_id, message.sent_copy, message.graph_id) == (inbound.pk, False, "")
    assert message.change_container_id == help_box.container_id
    assert message.change_seq
    inbound.refresh_from_db()
    assert (inbound.status, inbound.attempts, inbound.problem) == ("delivered", 1, "")
    assert inbound.delivered_at is not None


def test_each_delivered_message_is_announced_after_commit(
    help_box, announced, django_capture_on_commit_callbacks
):
    inbound = receive(samples.plain())

    with django_capture_on_commit_callbacks(execute=True):
        [message] = services.inbound_deliver(inbound_id=inbound.pk)
        assert announced == []  # not before the commit

    assert announced == [(message.pk, help_box.pk, "inbox")]


def test_attachments_and_inline_images_are_saved_to_storage(help_box, media):
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 40
    [with_pdf] = services.inbound_deliver(inbound_id=receive(samples.mixed_with_pdf(pdf)).pk)
    [with_image] = services.inbound_deliver(inbound_id=receive(samples.RELATED_INLINE_IMAGE).pk)

    attachment = Attachment.objects.get(message=with_pdf)
    assert (attachment.name, attachment.content_type, attachment.size) == (
        "invoice 1043.pdf", "application/pdf", len(pdf))  # fmt: skip
    assert attachment.content.read() == pdf
    assert attachment.fetched_at is not None
    assert attachment.content.name.endswith(".pdf")
    assert "1043" not in attachment.content.name
    assert with_pdf.has_attachments is True
    image = Attachment.objects.get(message=with_image)
    assert (image.is_inline, image.content_id) == (True, "shot1@nordwind.example")
    assert image.content.read() == samples.PNG
    assert with_image.has_attachments is False
    assert len(files_in(media)) == 2


def test_a_file_name_is_never_used_as_a_path(help_box, media):
    message = samples.raw(
        """
From: a@b.example
To: help@crm.example
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="x"

--x
Content-Type: text/plain

hi
--x
Content-Type: application/octet-stream
Content-Disposition: attachment; filename="../../../etc/cron.d/evil"

boom
--x--
"""
    )

    services.inbound_deliver(inbound_id=receive(message).pk)

    attachment = Attachment.objects.get()
    assert attachment.name == "../../../etc/cron.d/evil"
    [stored] = files_in(media)
    assert media in stored.parents
    assert "evil" not in str(stored)


def test_every_local_recipient_gets_a_copy_and_unknown_ones_none(help_box, sales_box):
    recipients = ["Help@CRM.example", "sales@crm.example", "nobody@x.example", "help@crm.example"]
    inbound = receive(samples.plain(), rcpt=recipients)

    delivered = services.inbound_deliver(inbound_id=inbound.pk)

    assert sorted(m.mailbox.address for m in delivered) == ["help@crm.example",
                                                             "sales@crm.example"]  # fmt: skip
    for message in delivered:
        assert message.change_container_id == message.mailbox.container_id
        assert message.folder.well_known == "inbox"


def test_delivering_twice_delivers_once(help_box):
    inbound = receive(samples.plain())

    first = services.inbound_deliver(inbound_id=inbound.pk)
    second = services.inbound_deliver(inbound_id=inbound.pk)

    assert len(first) == 1
    assert second == []
    assert Message.objects.count() == 1
    inbound.refresh_from_db()
    assert inbound.attempts == 1  # a delivered message is not even counted again


def test_the_database_refuses_a_second_copy_of_the_same_delivery(help_box):
    inbound = receive(samples.plain())
    [message] = services.inbound_deliver(inbound_id=inbound.pk)

    message.pk = None
    with pytest.raises(IntegrityError), transaction.atomic():
        message.save()


class Crash(Exception):
    """A worker dying at this point of the delivery."""


@pytest.mark.parametrize("step", ["parse_message", "_attachment", "_create_messages", "_finish",
                                  "_announce"])  # fmt: skip
def test_a_crash_at_any_step_loses_nothing_and_the_retry_delivers_once(
    step, help_box, sales_box, media, monkeypatch, django_capture_on_commit_callbacks
):
    inbound = receive(samples.mixed_with_pdf(), rcpt=["help@crm.example", "sales@crm.example"])
    original = getattr(local, step)

    def crash_after(*args, **kwargs):
        original(*args, **kwargs)
        raise Crash(step)

    monkeypatch.setattr(local, step, crash_after)
    if step == "_announce":  # after the commit: delivered, only the announcement failed
        with django_capture_on_commit_callbacks(execute=True):
            services.inbound_deliver(inbound_id=inbound.pk)
        assert Message.objects.count() == 2
        return
    with pytest.raises(Crash):
        services.inbound_deliver(inbound_id=inbound.pk)

    inbound.refresh_from_db()
    assert inbound.status == "pending"  # the task records the failed attempt (test below)
    assert Message.objects.count() == 0
    assert Attachment.objects.count() == 0
    assert files_in(media) == []  # files written before the failure were removed

    monkeypatch.setattr(local, step, original)
    delivered = services.inbound_deliver(inbound_id=inbound.pk)

    assert len(delivered) == 2
    assert Message.objects.count() == 2
    assert Attachment.objects.count() == 2
    assert len(files_in(media)) == 2
    inbound.refresh_from_db()
    assert (inbound.status, inbound.attempts) == ("delivered", 1)


def test_the_task_records_a_failure_and_gives_up_after_too_many(help_box, monkeypatch):
    inbound = receive(samples.plain())

    def broken(raw):
        raise ValueError("the parser broke")

    monkeypatch.setattr(local, "parse_message", broken)
    deliver_inbound.apply(args=[inbound.pk])

    inbound.refresh_from_db()
    assert (inbound.status, inbound.attempts) == ("pending", 1)
    assert inbound.problem == "ValueError: the parser broke"

    InboundMessage.objects.filter(pk=inbound.pk).update(attempts=MAX_DELIVERY_ATTEMPTS - 1)
    deliver_inbound.apply(args=[inbound.pk])

    inbound.refresh_from_db()
    assert (inbound.status, inbound.attempts) == ("failed", MAX_DELIVERY_ATTEMPTS)

    assert services.inbound_redeliver(inbound=inbound) is True
    monkeypatch.undo()
    deliver_inbound.apply(args=[inbound.pk])
    inbound.refresh_from_db()
    assert inbound.status == "delivered"
    assert Message.objects.count() == 1


def test_a_message_whose_recipients_are_gone_fails_with_the_reason(help_box):
    inbound = receive(samples.plain(), rcpt=["gone@crm.example"])

    assert services.inbound_deliver(inbound_id=inbound.pk) == []

    inbound.refresh_from_db()
    assert inbound.status == "failed"
    assert "local mailbox" in inbound.problem


def test_the_sweep_queues_again_what_nobody_delivered(help_box, django_capture_on_commit_callbacks):
    stale = receive(samples.plain(message_id="<stale@x>"))
    fresh = receive(samples.plain(message_id="<fresh@x>"))
    done = receive(samples.plain(message_id="<done@x>"))
    hopeless = receive(samples.plain(message_id="<hopeless@x>"))
    services.inbound_deliver(inbound_id=done.pk)
    long_ago = timezone.now() - timedelta(minutes=5)
    InboundMessage.objects.exclude(pk=fresh.pk).update(received_at=long_ago)
    InboundMessage.objects.filter(pk=hopeless.pk).update(attempts=MAX_DELIVERY_ATTEMPTS)

    with django_capture_on_commit_callbacks() as queued:
        assert services.inbound_requeue_stale() == 1
    with django_capture_on_commit_callbacks() as queued_again:
        assert services.inbound_requeue_stale() == 0  # queued a moment ago: not again yet

    assert len(queued) == 1
    assert queued_again == []
    stale.refresh_from_db()
    assert stale.enqueued_at is not None
    assert stale.attempts == 1
    hopeless.refresh_from_db()
    assert hopeless.status == "failed"
    assert "Gave up" in hopeless.problem


def test_an_agent_submission_lands_in_sent_items_and_in_the_recipients_inbox(
    team, help_box, sales_box, announced, django_capture_on_commit_callbacks
):
    agent = make_agent(team=team)
    raw = samples.plain(sender="Support <help@crm.example>", to="sales@crm.example",
                        message_id="<out1@crm.example>")  # fmt: skip
    inbound = receive(raw, rcpt=["sales@crm.example", "boss@crm.example"],
                      mail_from="help@crm.example", user=agent)  # fmt: skip

    with django_capture_on_commit_callbacks(execute=True):
        delivered = services.inbound_deliver(inbound_id=inbound.pk)

    by_box = {m.mailbox.address: m for m in delivered}
    sent, received = by_box["help@crm.example"], by_box["sales@crm.example"]
    assert (sent.folder.well_known, sent.sent_copy, sent.is_read) == ("sentitems", True, True)
    assert sent.bcc == [{"name": "", "address": "boss@crm.example"}]  # only the sender sees it
    assert (received.folder.well_known, received.sent_copy, received.bcc) == ("inbox", False, [])
    assert sorted(role for _, _, role in announced) == ["inbox", "sentitems"]


def test_sending_to_oneself_gives_a_sent_copy_and_an_inbox_copy(team, help_box):
    agent = make_agent(team=team)
    inbound = receive(samples.plain(sender="help@crm.example", to="help@crm.example"),
                      mail_from="help@crm.example", user=agent)  # fmt: skip

    delivered = services.inbound_deliver(inbound_id=inbound.pk)

    assert sorted(m.folder.well_known for m in delivered) == ["inbox", "sentitems"]
    numbers = sorted(m.change_seq for m in delivered)
    assert numbers[1] == numbers[0] + 1


def test_no_sent_copy_for_a_mailbox_the_agent_does_not_see(help_box, sales_box):
    outsider = make_agent(team=TeamFactory(name="Elsewhere"))
    inbound = receive(samples.plain(), rcpt=["sales@crm.example"], mail_from="help@crm.example",
                      user=outsider)  # fmt: skip

    delivered = services.inbound_deliver(inbound_id=inbound.pk)

    assert [(m.mailbox.address, m.folder.well_known) for m in delivered] == [
        ("sales@crm.example", "inbox")]  # fmt: skip


def test_a_bounce_is_delivered_marked_with_the_message_it_returns(help_box):
    inbound = receive(samples.bounce(), mail_from="")

    [message] = services.inbound_deliver(inbound_id=inbound.pk)

    assert message.is_bounce is True
    assert message.bounce_of_message_id == "<case42.reply@crm.example>"
    assert message.headers["return-path"] == "<>"
    assert message.has_attachments is True


def test_malformed_headers_are_delivered_with_their_problems(help_box):
    raw = samples.plain(to="=?utf-8?q?Eve=0D=0ABcc:_x@y?= <help@crm.example>",
                        subject="=?utf-8?q?caf=C3=A9?=\x00")  # fmt: skip

    [message] = services.inbound_deliver(inbound_id=receive(raw).pk)

    assert message.to == [{"name": "", "address": "help@crm.example"}]
    assert message.parse_problems
    assert message.subject == "café"


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=messages(), rcpt=st.sampled_from([["help@crm.example"], ["HELP@crm.example", "x@y"]]))
def test_whatever_arrives_is_stored_in_postgresql(help_box, data, rcpt):
    inbound = receive(data, rcpt=rcpt)

    delivered = services.inbound_deliver(inbound_id=inbound.pk)

    assert len(delivered) == 1
    inbound.refresh_from_db()
    assert inbound.status == "delivered"


@pytest.fixture
def admin_client(client):
    admin = make_agent(email="root@support.example", role="admin")
    admin.is_staff = admin.is_superuser = True
    admin.save()
    client.force_login(admin)
    return client


def test_admin_lists_the_spool_and_delivers_failed_messages_again(
    admin_client, help_box, django_capture_on_commit_callbacks
):
    from crm.celery import app

    inbound = receive(samples.plain(), rcpt=["help@crm.example"])
    InboundMessage.objects.filter(pk=inbound.pk).update(status="failed", problem="disk full")

    listing = admin_client.get("/admin/mailsync/inboundmessage/")
    detail = admin_client.get(f"/admin/mailsync/inboundmessage/{inbound.pk}/change/")
    app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = admin_client.post(
                "/admin/mailsync/inboundmessage/",
                {"action": "deliver_again", "_selected_action": [inbound.pk]},
            )
    finally:
        app.conf.task_always_eager = False

    assert listing.status_code == detail.status_code == 200
    assert "anna.berg@nordwind.example" in listing.content.decode()
    assert response.status_code == 302
    assert InboundMessage.objects.get().status == "delivered"
    assert Message.objects.count() == 1
