"""Write-back: what agents change on messages reaches Microsoft 365 through the outbox, in
order, and the CRM and the (simulated) mailbox agree afterwards."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from crm.graph.errors import GraphThrottled
from mailsync import services, tasks
from mailsync.choices import OperationKind, OperationStatus
from mailsync.errors import MailboxError
from mailsync.models import MailOperation, Message
from tests.cases.factories import TeamFactory, make_agent
from tests.mailsync.conftest import graph_message

pytestmark = pytest.mark.django_db


@pytest.fixture
def synced(mailbox, remote):
    remote.add_message("inbox", **graph_message(1))
    remote.add_message("inbox", **graph_message(2))
    services.mailbox_sync(mailbox=mailbox)
    return mailbox


def first_message(mailbox) -> Message:
    return mailbox.messages.order_by("pk").first()


def remote_message(remote, message: Message) -> dict:
    return remote.messages[remote.resolve_message_id(message.graph_id)]


def test_a_change_is_local_at_once_and_queued_for_graph(synced, django_capture_on_commit_callbacks):
    message = first_message(synced)
    before = message.change_seq

    with django_capture_on_commit_callbacks() as queued:
        changed = services.message_set_read(message=message, read=True)

    assert changed.is_read is True
    assert changed.change_seq > before
    operation = MailOperation.objects.get()
    assert (operation.kind, operation.status) == (OperationKind.READ, OperationStatus.PENDING)
    assert operation.payload == {"isRead": True}
    assert len(queued) == 1  # the worker is asked after commit


def test_an_unchanged_value_queues_nothing(synced):
    message = first_message(synced)

    services.message_set_flag(message=message, status="notFlagged")

    assert not MailOperation.objects.exists()


def test_bad_values_are_refused_before_anything_changes(synced):
    message = first_message(synced)

    with pytest.raises(MailboxError):
        services.message_set_flag(message=message, status="purple")
    with pytest.raises(MailboxError):
        services.message_set_categories(message=message, categories=["x" * 300])

    assert not MailOperation.objects.exists()


def worker_runs(mailbox) -> int:
    """What `mailsync.tasks.apply_operations` does for the mailbox after the commit."""
    return services.operations_apply(mailbox_id=mailbox.pk)


def test_operations_reach_graph_in_order_and_the_next_round_changes_nothing(synced, remote):
    message = first_message(synced)
    archive = synced.folders.get(well_known="archive")

    services.message_set_read(message=message, read=True)
    services.message_set_flag(message=message, status="flagged")
    services.message_set_categories(message=message, categories=["Billing", "VIP"])
    services.message_move(message=message, folder=archive)
    assert worker_runs(synced) == 4

    assert set(MailOperation.objects.values_list("status", flat=True)) == {OperationStatus.DONE}
    there = remote_message(remote, message)
    assert there["isRead"] is True
    assert there["flag"]["flagStatus"] == "flagged"
    assert there["categories"] == ["Billing", "VIP"]
    assert there["parentFolderId"] == archive.graph_id
    seq = Message.objects.get(pk=message.pk).change_seq

    services.mailbox_sync(mailbox=synced)

    after = Message.objects.get(pk=message.pk)
    assert after.change_seq == seq  # our own change came back: nothing to merge
    assert after.folder_id == archive.pk
    assert after.is_read
    assert after.categories == ["Billing", "VIP"]


def test_delete_goes_to_deleted_items_then_for_good(synced, remote):
    message = first_message(synced)
    deleted_items = synced.folders.get(well_known="deleteditems")

    moved = services.message_delete(message=message)
    worker_runs(synced)
    assert moved.folder_id == deleted_items.pk
    assert remote_message(remote, message)["parentFolderId"] == deleted_items.graph_id

    assert services.message_delete(message=moved) is None
    worker_runs(synced)
    assert not Message.objects.filter(pk=message.pk).exists()
    with pytest.raises(KeyError):
        remote.resolve_message_id(message.graph_id)


def test_a_message_gone_in_graph_fails_its_operation_and_leaves_the_crm(synced, remote):
    message = first_message(synced)
    remote.delete_message(remote.resolve_message_id(message.graph_id))

    services.message_set_read(message=message, read=True)
    worker_runs(synced)

    operation = MailOperation.objects.get()
    assert operation.status == OperationStatus.FAILED
    assert "404" in operation.last_error
    assert not Message.objects.filter(pk=message.pk).exists()


def test_throttling_leaves_the_outbox_pending_in_order(synced, graph, remote, settings):
    message = first_message(synced)
    services.message_set_read(message=message, read=True)
    services.message_set_flag(message=message, status="flagged")
    settings.GRAPH_MAX_RETRIES = 2
    graph.script_faults(*[("429", "0")] * 3)  # the first try and both retries

    with pytest.raises(GraphThrottled):
        services.operations_apply(mailbox_id=synced.pk)

    assert list(MailOperation.objects.order_by("pk").values_list("status", flat=True)) == [
        OperationStatus.PENDING,
        OperationStatus.PENDING,
    ]
    assert services.operations_apply(mailbox_id=synced.pk) == 2
    assert remote_message(remote, message)["flag"]["flagStatus"] == "flagged"


def test_local_mailboxes_change_without_an_outbox(team):
    mailbox = services.mailbox_connect(address="desk@crm.example", team=team, local=True)
    inbox = mailbox.folders.get(well_known="inbox")
    message = Message.objects.create(
        mailbox=mailbox, folder=inbox, subject="Local", change_container=mailbox.container
    )

    services.message_set_read(message=message, read=True)

    assert Message.objects.get(pk=message.pk).is_read
    assert not MailOperation.objects.exists()


def test_a_round_before_the_outbox_runs_does_not_undo_the_change(synced, remote):
    message = first_message(synced)
    archive = synced.folders.get(well_known="archive")
    services.message_set_read(message=message, read=True)
    services.message_move(message=message, folder=archive)
    remote.update_message(remote.resolve_message_id(message.graph_id), subject="Edited there")

    services.mailbox_sync(mailbox=synced)  # Graph still says unread, in the Inbox

    kept = Message.objects.get(pk=message.pk)
    assert kept.is_read is True
    assert kept.folder_id == archive.pk
    assert kept.subject == "Edited there"  # what we did not change still merges


# --- through the mail API ---------------------------------------------------------------------


def test_the_api_changes_a_message_through_the_services(synced, agent_client):
    message = first_message(synced)
    url = f"/api/v1/mail/message/{message.pk}"

    response = agent_client.patch(
        url, {"isRead": True, "flag": "flagged", "categories": ["VIP"], "folder": "archive"},
        format="json",
    )  # fmt: skip

    assert response.status_code == 200
    stored = Message.objects.get(pk=message.pk)
    assert (stored.is_read, stored.flag_status, stored.categories) == (True, "flagged", ["VIP"])
    assert stored.folder.well_known == "archive"
    assert list(MailOperation.objects.order_by("pk").values_list("kind", flat=True)) == [
        "read", "flag", "categories", "move",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"flag": "purple"}, "flag"),
        ({"folder": "nowhere"}, "folder"),
        ({"isRead": "maybe"}, "isRead"),
    ],
)
def test_the_api_refuses_bad_changes_with_the_field_named(synced, agent_client, body, field):
    message = first_message(synced)

    response = agent_client.patch(f"/api/v1/mail/message/{message.pk}", body, format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert not MailOperation.objects.exists()


def test_the_api_deletes_and_hides_other_teams_messages(synced, agent_client):
    message = first_message(synced)

    stranger = APIClient()
    stranger.force_authenticate(make_agent(team=TeamFactory(name="Elsewhere")))
    assert stranger.delete(f"/api/v1/mail/message/{message.pk}").status_code == 404

    assert agent_client.delete(f"/api/v1/mail/message/{message.pk}").status_code == 204
    assert Message.objects.get(pk=message.pk).folder.well_known == "deleteditems"


def test_the_sweep_applies_what_a_crashed_worker_left(synced, remote, eager_celery):
    message = first_message(synced)
    services.message_set_read(message=message, read=True)  # its task died with the worker
    assert MailOperation.objects.get().status == OperationStatus.PENDING

    tasks.sweep_operations.delay()

    assert MailOperation.objects.get().status == OperationStatus.DONE
    assert remote_message(remote, message)["isRead"] is True


def test_access_denied_fails_the_operation_and_restores_what_graph_has(synced, graph, remote):
    message = first_message(synced)
    graph.refuse_writes(remote.resolve_message_id(message.graph_id), status=403)

    services.message_set_flag(message=message, status="flagged")
    worker_runs(synced)

    operation = MailOperation.objects.get()
    assert operation.status == OperationStatus.FAILED
    assert "403" in operation.last_error
    assert Message.objects.get(pk=message.pk).flag_status == "notFlagged"  # what Graph has


def test_after_mixed_operations_and_a_round_the_crm_and_the_mailbox_agree(synced, remote):
    messages = list(synced.messages.order_by("pk"))
    archive = synced.folders.get(well_known="archive")
    services.message_set_read(message=messages[0], read=True)
    services.message_set_categories(message=messages[0], categories=["Red"])
    services.message_move(message=messages[1], folder=archive)
    services.message_set_flag(message=Message.objects.get(pk=messages[1].pk), status="complete")
    worker_runs(synced)
    services.mailbox_sync(mailbox=synced)

    stored_messages = Message.objects.filter(mailbox=synced, folder__isnull=False)
    assert stored_messages.count() == 2
    for stored in stored_messages:
        there = remote_message(remote, stored)
        assert stored.is_read == there.get("isRead", False)
        assert stored.flag_status == there.get("flag", {}).get("flagStatus", "notFlagged")
        assert stored.categories == there.get("categories", [])
        assert stored.folder.graph_id == there["parentFolderId"]
