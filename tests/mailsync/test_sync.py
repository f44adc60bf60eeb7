"""Delta sync against the Graph simulator: nothing lost, nothing duplicated, partial updates
merged, moves recognised in either order, expired state resynced, crashes resumed."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from crm.models import Tombstone
from mailsync import services
from mailsync.choices import RoundKind, RoundStatus
from mailsync.models import Attachment, MailFolder, Message, SyncRound
from mailsync.signals import message_ingested
from tests.mailsync.conftest import graph_message

pytestmark = pytest.mark.django_db


def sync(mailbox, **kwargs):
    result = services.mailbox_sync(mailbox=mailbox, **kwargs)
    assert not result.failed, [r.errors for r in result.rounds]
    return result


def stored(mailbox, folder=None):
    messages = Message.objects.filter(mailbox=mailbox, folder__isnull=False)
    if folder:
        messages = messages.filter(folder__well_known=folder)
    return messages


def test_first_round_brings_the_folder_tree_and_inbox_and_sent_items(mailbox, remote):
    remote.add_folder("Escalations", parent_id=remote.folder("inbox").id)
    for n in range(25):
        remote.add_message("inbox", **graph_message(n))
    remote.add_message("sentitems", **graph_message(99, subject="RE: Invoice"))
    remote.add_message("archive", **graph_message(98))

    result = sync(mailbox)

    roles = dict(
        MailFolder.objects.filter(mailbox=mailbox).values_list("display_name", "well_known")
    )
    assert roles["Inbox"] == "inbox"
    assert roles["Sent Items"] == "sentitems"
    assert roles["Escalations"] == ""
    synced = set(mailbox.folders.filter(sync_enabled=True).values_list("well_known", flat=True))
    assert synced == {"inbox", "sentitems"}
    assert stored(mailbox, "inbox").count() == 25
    assert stored(mailbox, "sentitems").count() == 1
    assert not stored(mailbox, "archive").exists()  # opt-in only
    inbox_round = next(r for r in result.rounds if r.folder and r.folder.well_known == "inbox")
    assert (inbox_round.kind, inbox_round.status) == (RoundKind.FULL, RoundStatus.OK)
    assert (inbox_round.pages, inbox_round.added) == (3, 25)
    assert inbox_round.requests >= 3
    assert inbox_round.finished_at is not None


def test_a_message_is_stored_with_everything_threading_and_intake_need(mailbox, remote):
    remote.add_message("inbox", **graph_message(1, importance="high", categories=["VIP"]))

    sync(mailbox)

    message = stored(mailbox).get()
    assert message.subject == "Invoice 1 is wrong"
    assert (message.from_name, message.from_address) == ("Anna Berg", "anna.berg@nordwind.example")
    assert message.to == [{"name": "Support", "address": "support@contoso.example"}]
    assert message.cc == [{"name": "Jon", "address": "jon@nordwind.example"}]
    assert message.body_html.startswith("<p>Hello,</p>")
    assert message.body_text == "Hello,\n\nthe invoice lists two"
    assert message.internet_message_id.startswith("<q1.")
    assert message.in_reply_to == "<earlier@contoso.example>"
    assert message.references == "<first@contoso.example> <earlier@contoso.example>"
    assert "x-mailer" not in message.headers
    assert message.headers["message-id"]
    assert (message.importance, message.categories, message.is_read) == ("high", ["VIP"], False)
    assert message.received_at.isoformat() == "2026-11-11T09:01:00+00:00"
    assert message.change_container_id == mailbox.container_id
    assert message.change_seq


def test_each_new_message_is_announced_once_after_commit(
    mailbox, remote, django_capture_on_commit_callbacks
):
    announced = []

    def receiver(**kwargs):
        announced.append((kwargs["message_id"], kwargs["folder_role"]))

    message_ingested.connect(receiver)
    try:
        remote.add_message("inbox", **graph_message(1))
        with django_capture_on_commit_callbacks(execute=True):
            sync(mailbox)
        remote.update_message(next(iter(remote.messages)), isRead=True)
        with django_capture_on_commit_callbacks(execute=True):
            sync(mailbox)
    finally:
        message_ingested.disconnect(receiver)

    assert announced == [(stored(mailbox).get().pk, "inbox")]


def test_partial_updates_merge_and_never_null_what_is_absent(mailbox, remote):
    graph_id = remote.add_message("inbox", **graph_message(1))
    sync(mailbox)
    before = stored(mailbox).get()

    remote.update_message(graph_id, isRead=True, flag={"flagStatus": "flagged"})
    sync(mailbox)

    after = stored(mailbox).get()
    assert (after.is_read, after.flag_status) == (True, "flagged")
    assert after.subject == before.subject
    assert after.body_html == before.body_html
    assert after.in_reply_to == before.in_reply_to
    assert after.to == before.to
    assert after.change_seq > before.change_seq


def test_a_round_without_changes_changes_nothing(mailbox, remote, graph):
    for n in range(12):
        remote.add_message("inbox", **graph_message(n))
    sync(mailbox)
    last_seq = mailbox.container.__class__.objects.get(pk=mailbox.container_id).last_seq
    graph.repeat_items = True
    graph.empty_pages = True

    sync(mailbox)

    assert mailbox.container.__class__.objects.get(pk=mailbox.container_id).last_seq == last_seq
    assert stored(mailbox).count() == 12


def test_repeated_items_and_empty_pages_in_a_round_neither_duplicate_nor_end_it(
    mailbox, remote, graph
):
    graph.repeat_items = True
    graph.empty_pages = True
    for n in range(35):
        remote.add_message("inbox", **graph_message(n))

    sync(mailbox)

    assert stored(mailbox, "inbox").count() == 35


@pytest.mark.parametrize("order", ["target_first", "source_first"])
def test_a_move_between_synced_folders_is_the_same_row_in_either_order(mailbox, remote, order):
    graph_id = remote.add_message("inbox", **graph_message(1))
    sync(mailbox)
    original = stored(mailbox).get()
    inbox = mailbox.folders.get(well_known="inbox")
    sent = mailbox.folders.get(well_known="sentitems")

    remote.move_message(graph_id, "sentitems")
    folders = [sent, inbox] if order == "target_first" else [inbox, sent]
    for folder in folders:  # one folder round at a time, as notifications would trigger them
        services.folder_sync(folder=folder)
    services.orphans_settle(mailbox=mailbox)

    moved = Message.objects.get(mailbox=mailbox)
    assert moved.pk == original.pk
    assert moved.folder == sent
    assert moved.orphaned_at is None
    assert not Tombstone.objects.filter(container=mailbox.container).exists()


def test_a_message_moved_out_of_every_synced_folder_is_deleted_with_a_tombstone(mailbox, remote):
    moved = remote.add_message("inbox", **graph_message(1))
    deleted = remote.add_message("inbox", **graph_message(2))
    kept = remote.add_message("inbox", **graph_message(3))
    sync(mailbox)
    pks = dict(Message.objects.values_list("graph_id", "pk"))

    remote.move_message(moved, "archive")
    remote.delete_message(deleted)
    first = sync(mailbox)
    # Left their folder; settled once every synced folder had a round after that.
    second = sync(mailbox)

    assert first.deleted + second.deleted == 2
    assert list(Message.objects.values_list("graph_id", flat=True)) == [kept]
    tombstones = Tombstone.objects.filter(container=mailbox.container, item_type="mailsync.message")
    assert sorted(tombstones.values_list("item_id", flat=True)) == sorted(
        [pks[moved], pks[deleted]]
    )


def test_an_opted_in_folder_claims_a_message_moved_there(mailbox, remote):
    graph_id = remote.add_message("inbox", **graph_message(1))
    sync(mailbox)
    original = Message.objects.get()
    services.folder_sync_set(folder=mailbox.folders.get(well_known="archive"), enabled=True)

    remote.move_message(graph_id, "archive")
    sync(mailbox)
    sync(mailbox)

    assert Message.objects.get().pk == original.pk
    assert Message.objects.get().folder.well_known == "archive"


def test_expired_delta_state_resyncs_the_folder_without_duplicates(mailbox, remote):
    ids = [remote.add_message("inbox", **graph_message(n)) for n in range(15)]
    sync(mailbox)
    remote.delete_message(ids[0])
    remote.update_message(ids[1], subject="Changed while we were away")
    new = remote.add_message("inbox", **graph_message(50))
    remote.expire_sync_state("inbox")

    result = sync(mailbox)
    sync(mailbox)  # settles what vanished

    inbox_rounds = [r for r in result.rounds if r.folder and r.folder.well_known == "inbox"]
    assert [r.kind for r in inbox_rounds] == [RoundKind.FULL]
    failed = SyncRound.objects.filter(folder__well_known="inbox", status=RoundStatus.FAILED)
    assert failed.get().errors.startswith("Delta state expired")
    graph_ids = set(stored(mailbox, "inbox").values_list("graph_id", flat=True))
    assert graph_ids == {*ids[1:], new}
    assert stored(mailbox, "inbox").count() == 15
    assert stored(mailbox).get(graph_id=ids[1]).subject == "Changed while we were away"


def test_a_round_that_fails_halfway_resumes_after_the_last_committed_page(
    mailbox, remote, graph, settings
):
    for n in range(30):
        remote.add_message("inbox", **graph_message(n))
    sync(mailbox, folders=[])  # the folder tree only
    inbox = mailbox.folders.get(well_known="inbox")
    settings.GRAPH_MAX_RETRIES = 0
    # Page 1 and its $batch pass, then page 2's connection drops: the round stops there.
    graph.script_faults(("ok", None), ("ok", None), ("drop", None))

    failed = services.folder_sync(folder=inbox)

    inbox.refresh_from_db()
    assert failed.status == RoundStatus.FAILED
    assert failed.pages == 1
    assert stored(mailbox).count() == 10
    assert inbox.resume_link
    assert not inbox.delta_link
    settings.GRAPH_MAX_RETRIES = 3

    resumed = services.folder_sync(folder=inbox)

    assert resumed.status == RoundStatus.OK
    assert resumed.pages == 2
    assert stored(mailbox).count() == 30
    assert Message.objects.values("graph_id").distinct().count() == 30


def test_one_sync_per_folder_at_a_time(mailbox, remote):
    sync(mailbox, folders=[])
    inbox = mailbox.folders.get(well_known="inbox")
    MailFolder.objects.filter(pk=inbox.pk).update(
        lease_owner="other-worker", lease_expires_at="2999-01-01T00:00:00Z"
    )

    result = services.mailbox_sync(mailbox=mailbox)

    assert any("being synced by another process" in line for line in result.skipped)
    assert not SyncRound.objects.filter(folder=inbox).exists()


def test_folder_renames_additions_and_deletions_follow_the_tree(mailbox, remote):
    projects = remote.add_folder("Projects", parent_id=remote.folder("inbox").id)
    old = remote.add_folder("Old", parent_id=remote.folder("inbox").id)
    sync(mailbox)

    remote.rename_folder(projects.id, "Customer projects")
    remote.delete_folder(old.id)
    remote.add_folder("Later", parent_id=projects.id)
    sync(mailbox)

    names = {f.display_name: f for f in mailbox.folders.all()}
    assert "Old" not in names
    assert "Projects" not in names
    assert names["Later"].parent == names["Customer projects"]
    assert names["Customer projects"].parent == names["Inbox"]


def test_attachment_metadata_syncs_and_bytes_come_on_first_use(mailbox, remote):
    graph_id = remote.add_message("inbox", **graph_message(1))
    remote.add_attachment(graph_id, name="invoice.pdf", content=b"%PDF-1.7 ...",
                          content_type="application/pdf")  # fmt: skip
    sync(mailbox)
    attachment = Attachment.objects.get()
    assert (attachment.name, attachment.size, attachment.content_type) == (
        "invoice.pdf", 12, "application/pdf"
    )  # fmt: skip
    assert not attachment.content

    from mailsync.services.attachments import attachment_content_ensure

    fetched = attachment_content_ensure(attachment=attachment)

    assert fetched.content.read() == b"%PDF-1.7 ..."
    assert Attachment.objects.get().fetched_at is not None


def test_odd_messages_are_stored_not_fatal(mailbox, remote):
    crowd = [{"emailAddress": {"name": f"P{i}", "address": f"p{i}@x.example"}} for i in range(500)]
    remote.add_message("inbox", **graph_message(1, subject=None, toRecipients=crowd))
    text_body = {"contentType": "text", "content": "Ünïcode"}
    remote.add_message(
        "inbox", **graph_message(2, subject="Grüße – 請求書 🚀 مرحبا", body=text_body)
    )
    odd = {"internetMessageHeaders": [], "sender": None, "receivedDateTime": "x", "flag": "odd"}
    remote.add_message("inbox", **graph_message(3, **odd))
    remote.add_message("inbox", **graph_message(4, subject="NUL\x00 inside", bodyPreview="\x00"))

    sync(mailbox)

    by_n = {m.conversation_id: m for m in stored(mailbox)}
    assert by_n["conv-1"].subject == ""
    assert len(by_n["conv-1"].to) == 500
    assert by_n["conv-2"].subject == "Grüße – 請求書 🚀 مرحبا"
    assert by_n["conv-2"].body_text == "Ünïcode"
    assert by_n["conv-2"].body_html == ""
    assert by_n["conv-3"].received_at is not None
    assert by_n["conv-3"].flag_status == "notFlagged"
    assert by_n["conv-4"].subject == "NUL inside"  # PostgreSQL refuses NUL in text


def test_page_queries_do_not_grow_with_the_page(mailbox, remote, settings):
    remote.add_message("inbox", **graph_message(100))
    sync(mailbox)
    inbox = mailbox.folders.get(well_known="inbox")
    for n in range(5):
        remote.add_message("inbox", **graph_message(n))
    with CaptureQueriesContext(connection) as small:
        services.folder_sync(folder=inbox)
    for n in range(5, 50):
        remote.add_message("inbox", **graph_message(n))
    settings.MAIL_DELTA_PAGE_SIZE = 100

    with CaptureQueriesContext(connection) as large:
        services.folder_sync(folder=inbox)

    assert len(large.captured_queries) == len(small.captured_queries)


def test_a_page_that_does_not_parse_is_retried_and_then_recorded_not_half_written(
    mailbox, remote, graph, settings
):
    for n in range(25):
        remote.add_message("inbox", **graph_message(n))
    sync(mailbox, folders=[])
    inbox = mailbox.folders.get(well_known="inbox")
    settings.GRAPH_MAX_RETRIES = 1
    # The first page arrives truncated once (retried), then page 2 twice (retries spent).
    graph.script_faults(("garbage", None), ("ok", None), ("ok", None),
                        ("garbage", None), ("garbage", None))  # fmt: skip

    failed = services.folder_sync(folder=inbox)

    assert failed.status == RoundStatus.FAILED
    assert "did not parse" in failed.errors
    assert failed.retries >= 1
    assert stored(mailbox).count() == 10  # page 1 whole, page 2 not at all

    resumed = services.folder_sync(folder=inbox)

    assert resumed.status == RoundStatus.OK
    assert stored(mailbox).count() == 25


def test_nothing_is_deleted_while_a_synced_folder_has_yet_to_complete_a_round(
    mailbox, remote, graph, settings
):
    graph_id = remote.add_message("inbox", **graph_message(1))
    sync(mailbox)
    archive = mailbox.folders.get(well_known="archive")
    services.folder_sync_set(folder=archive, enabled=True)
    remote.move_message(graph_id, "archive")
    for _ in range(2):  # the others' rounds now all started after the message left the Inbox
        services.folder_sync(folder=mailbox.folders.get(well_known="inbox"))
        services.folder_sync(folder=mailbox.folders.get(well_known="sentitems"))

    assert services.orphans_settle(mailbox=mailbox) == 0  # Archive has not had a round yet

    services.folder_sync(folder=archive)
    assert Message.objects.get().folder == archive
