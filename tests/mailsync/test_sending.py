"""Sending through Graph as Outlook does: replies thread, the sent copy is recognised, files
go inline or through an upload session."""

from __future__ import annotations

import pytest

from mailsync import services
from mailsync.errors import MailboxError
from mailsync.models import Message
from tests.mailsync.conftest import graph_message

pytestmark = pytest.mark.django_db


@pytest.fixture
def synced(mailbox, remote):
    remote.add_message("inbox", **graph_message(1))
    services.mailbox_sync(mailbox=mailbox)
    return mailbox


def customer_mail(mailbox) -> Message:
    return mailbox.messages.get(folder__well_known="inbox")


def test_a_reply_threads_and_its_sent_copy_is_not_ingested_again(synced, graph, remote):
    original = customer_mail(synced)

    sent = services.send_message(
        mailbox=synced, mode="reply", original=original, body_html="<p>We fixed it.</p>"
    )

    out = graph.sent_messages[-1]
    assert out["subject"].startswith("RE: ")
    assert [r["emailAddress"]["address"].lower() for r in out["toRecipients"]] == [
        "anna.berg@nordwind.example"
    ]
    headers = {h["name"].lower(): h["value"] for h in out.get("internetMessageHeaders", [])}
    assert original.internet_message_id in headers.get("in-reply-to", "")
    assert "We fixed it." in out["body"]["content"]
    assert sent.folder.well_known == "sentitems"
    assert sent.internet_message_id == out["internetMessageId"]

    services.mailbox_sync(mailbox=synced)

    copies = Message.objects.filter(internet_message_id=sent.internet_message_id)
    assert copies.count() == 1


def test_a_new_message_with_a_small_and_a_large_file(synced, graph):
    small = services.OutgoingFile("invoice.pdf", b"%PDF-1.7 small", "application/pdf")
    large = services.OutgoingFile("logs.zip", b"z" * (3 * 1024 * 1024 + 10), "application/zip")

    services.send_message(
        mailbox=synced, to=["ada@customer.example"], subject="Your files",
        body_html="<p>Attached.</p>", attachments=[small, large],
    )  # fmt: skip

    out = graph.sent_messages[-1]
    assert out["subject"] == "Your files"
    names = sorted(attachment["name"] for attachment in out["attachments"])
    assert names == ["invoice.pdf", "logs.zip"]
    assert graph.write_counts["createUploadSession"] == 1
    assert graph.write_counts["addAttachment"] == 1


def test_sending_needs_recipients_a_known_mode_and_the_mailboxs_own_message(synced, team, remote):
    with pytest.raises(MailboxError, match="recipient"):
        services.send_message(mailbox=synced, body_html="x", subject="No one")
    with pytest.raises(MailboxError, match="not a way to send"):
        services.send_message(mailbox=synced, body_html="x", to=["a@b.example"], mode="shout")
    other = services.mailbox_connect(address="other@contoso.example", team=team)
    with pytest.raises(MailboxError, match="this mailbox"):
        services.send_message(
            mailbox=other, body_html="x", mode="reply", original=customer_mail(synced)
        )


def test_local_mailboxes_cannot_send_before_the_relay_exists(team):
    local = services.mailbox_connect(address="desk@crm.example", team=team, local=True)

    with pytest.raises(MailboxError, match="relay"):
        services.send_message(mailbox=local, body_html="x", to=["a@b.example"], subject="Hi")


def test_a_draft_saved_in_the_crm_is_an_outlook_draft_until_sent(synced, graph, remote):
    draft = services.draft_save(
        mailbox=synced, to=["ada@customer.example"], subject="First words", body_html="<p>Hi</p>"
    )
    drafts = synced.folders.get(well_known="drafts")
    assert (draft.is_draft, draft.folder_id) == (True, drafts.pk)
    there = remote.messages[remote.resolve_message_id(draft.graph_id)]
    assert (there["isDraft"], there["parentFolderId"]) == (True, drafts.graph_id)

    edited = services.draft_save(
        mailbox=synced, draft=draft, subject="Better words", body_html="<p>Hello Ada</p>"
    )
    assert remote.messages[remote.resolve_message_id(draft.graph_id)]["subject"] == "Better words"

    sent = services.draft_send(draft=edited)

    assert sent.pk == draft.pk
    assert (sent.is_draft, sent.folder.well_known) == (False, "sentitems")
    assert graph.sent_messages[-1]["subject"] == "Better words"
    with pytest.raises(MailboxError, match="sent already"):
        services.draft_send(draft=sent)
    with pytest.raises(MailboxError, match="Only a draft"):
        services.draft_save(mailbox=synced, draft=sent, body_html="<p>late</p>")
