"""Intake end to end: Microsoft 365 mail synced from the Graph simulator reaches the worker
through the `message_ingested` seam and lands threaded, one case per conversation."""

from __future__ import annotations

import pytest

from cases.models import Case, CaseMessage
from graphsim.seed import seed_mailbox
from mailsync import services as mail
from mailsync.models import Message

pytestmark = pytest.mark.django_db


def test_synced_threads_become_one_case_each(graph_simulator, settings, team, eager_celery,
                                             django_capture_on_commit_callbacks):  # fmt: skip
    settings.GRAPH_RETRY_BASE_SECONDS = 0.01
    remote = graph_simulator.add_mailbox("support@contoso.example")
    seed_mailbox(remote, threads=12, seed=3)
    conversations = {m["conversationId"] for m in remote.messages.values()}
    mailbox = mail.mailbox_connect(address="support@contoso.example", team=team)

    with django_capture_on_commit_callbacks(execute=True):
        mail.mailbox_sync(mailbox=mailbox)

    synced = Message.objects.filter(mailbox=mailbox, folder__isnull=False)
    assert CaseMessage.objects.count() == synced.count() > 12
    threaded = CaseMessage.objects.filter(case__isnull=False)
    cases = Case.objects.all()
    assert cases.count() == len(conversations) == 12
    for case in cases:  # every message of a case is of one conversation
        conversation_ids = set(threaded.filter(case=case).values_list(
            "message__conversation_id", flat=True))  # fmt: skip
        assert len(conversation_ids) == 1
    assert all(
        case.first_response_at for case in cases if case.messages.filter(direction="outbound")
    )
