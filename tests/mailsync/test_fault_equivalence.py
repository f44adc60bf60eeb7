"""Through 10% injected faults (429 with Retry-After, 503, 504, dropped connections, truncated
bodies) a sync ends in the same database as without them: seeded realistic threads first,
then scripted mutations (reads, flags, categories, moves, deletions, replies)."""

from __future__ import annotations

import pytest
from django.db.models import Sum

from graphsim.seed import mutate, seed_mailbox
from mailsync import services
from mailsync.models import Attachment, Message, SyncRound

pytestmark = pytest.mark.django_db

CLEAN, NOISY = "clean@contoso.example", "noisy@contoso.example"


def fingerprint(mailbox) -> list[str]:
    """Everything synced about each message, independent of ids and of the mailbox address."""
    local, _ = mailbox.address.split("@")
    rows = []
    for m in Message.objects.filter(mailbox=mailbox).select_related("folder"):
        rows.append(
            (
                m.internet_message_id, m.folder.display_name if m.folder else None,
                m.orphaned_at is not None, m.subject, m.from_address, m.to, m.cc, m.bcc,
                m.body_html, m.body_text, m.in_reply_to, m.references, m.conversation_id,
                m.is_read, m.flag_status, m.categories, m.importance, m.received_at,
                m.has_attachments, sorted(Attachment.objects.filter(message=m)
                                          .values_list("name", "size", "content_type")),
            )
        )  # fmt: skip
    anonymous = (repr(row).replace(mailbox.address, "MAILBOX") for row in rows)
    return sorted(row.replace(f"Contoso {local.title()}", "NAME") for row in anonymous)


def sync_until_settled(mailbox) -> None:
    """What beat does: rounds until one succeeds everywhere (a fault may fail a round)."""
    for _ in range(10):
        result = services.mailbox_sync(mailbox=mailbox)
        if not result.failed:
            return
    raise AssertionError("the sync never succeeded through 10% faults")


def test_ten_percent_faults_end_in_the_same_database(graph, team, settings):
    settings.MAIL_DELTA_PAGE_SIZE = 7
    settings.GRAPH_BREAKER_THRESHOLD = 1000  # this test is about retries, not the breaker
    remotes = {address: graph.add_mailbox(address) for address in (CLEAN, NOISY)}
    for remote in remotes.values():
        remote_user_folder = remote.add_folder("Projects", parent_id=remote.folder("inbox").id)
        assert remote_user_folder
        seed_mailbox(remote, threads=60, seed=5)
    mailboxes = {a: services.mailbox_connect(address=a, team=team) for a in remotes}
    for mailbox in mailboxes.values():
        services.mailbox_sync(mailbox=mailbox)  # the folder tree, to opt a folder in
        archive = mailbox.folders.get(well_known="archive")
        services.folder_sync_set(folder=archive, enabled=True)

    sync_until_settled(mailboxes[CLEAN])
    graph.set_fault_rate(0.10, seed=11)
    sync_until_settled(mailboxes[NOISY])

    assert Message.objects.filter(mailbox=mailboxes[CLEAN]).count() > 60
    assert fingerprint(mailboxes[NOISY]) == fingerprint(mailboxes[CLEAN])

    for remote in remotes.values():
        mutate(remote, changes=80, seed=9)
    graph.set_fault_rate(0.0)
    sync_until_settled(mailboxes[CLEAN])
    sync_until_settled(mailboxes[CLEAN])  # settles what left the synced folders
    graph.set_fault_rate(0.10, seed=12)
    sync_until_settled(mailboxes[NOISY])
    sync_until_settled(mailboxes[NOISY])

    retried = SyncRound.objects.filter(mailbox=mailboxes[NOISY]).aggregate(n=Sum("retries"))
    assert retried["n"] >= 5  # the faults really hit the noisy mailbox's sync
    assert fingerprint(mailboxes[NOISY]) == fingerprint(mailboxes[CLEAN])
    clean = Message.objects.filter(mailbox=mailboxes[CLEAN], folder__isnull=False)
    expected = {
        m["internetMessageId"]
        for m in remotes[CLEAN].messages.values()
        if remotes[CLEAN].folders[remotes[CLEAN].location[m["id"]]].well_known
        in ("inbox", "sentitems", "archive")
    }
    assert set(clean.values_list("internet_message_id", flat=True)) == expected
