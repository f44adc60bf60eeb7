"""Change notifications end to end: the simulated Graph subscribes our webhooks over HTTPS
(uvicorn, the ASGI fast path), posts notifications and lifecycle events, and a real Celery
worker on Redis runs the rounds they schedule."""

from __future__ import annotations

import html
import time
from datetime import timedelta

import pytest
from celery.contrib.testing.worker import start_worker
from django.utils import timezone

from crm.celery import app
from crm.choices import SubscriptionState
from crm.graph import subscriptions
from crm.models import GraphSubscription
from mailsync import services
from mailsync.models import Message
from tests.mailsync.conftest import graph_message

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def notifying(graph, graph_pki, https_asgi_server, settings):
    """The simulator trusts our server's certificate; the CRM has a public https address."""
    graph.notification_ca_file = str(graph_pki.ca_cert)
    settings.PUBLIC_BASE_URL = https_asgi_server
    settings.GRAPH_NOTIFICATION_COALESCE_SECONDS = 0.2
    subscriptions._known.clear()
    return graph


@pytest.fixture
def subscribed(notifying, mailbox, remote):
    remote.add_message("inbox", **graph_message(1))
    services.mailbox_sync(mailbox=mailbox)
    return mailbox


@pytest.fixture
def worker():
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        yield


def inbox_subscription(mailbox) -> GraphSubscription:
    inbox = mailbox.folders.get(well_known="inbox")
    return GraphSubscription.objects.get(kind="mail_folder", target_id=inbox.pk)


def eventually(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.1)


def test_each_synced_folder_is_subscribed_after_its_first_round(subscribed, notifying):
    rows = GraphSubscription.objects.filter(kind="mail_folder")

    assert rows.count() == subscribed.folders.filter(sync_enabled=True).count()
    inbox = inbox_subscription(subscribed)
    assert inbox.state == SubscriptionState.ACTIVE
    assert inbox.resource.endswith(
        f"mailFolders('{subscribed.folders.get(well_known='inbox').graph_id}')/messages"
    )
    assert inbox.expires_at > timezone.now() + timedelta(days=6)
    assert {s.id for s in notifying.subscriptions.all()} == set(
        rows.values_list("graph_id", flat=True)
    )


def test_new_mail_arrives_by_notification_and_a_burst_is_one_round(
    subscribed, notifying, remote, worker
):
    rounds_before = subscribed.folders.get(well_known="inbox").rounds.count()

    remote.add_message("inbox", **graph_message(2, subject="Arrived by notification"))
    eventually(
        lambda: Message.objects.filter(subject="Arrived by notification").exists(),
        "the notified message stored",
    )

    assert notifying.notifications_sent >= 1
    assert inbox_subscription(subscribed).last_notification_at is not None
    inbox = subscribed.folders.get(well_known="inbox")
    eventually(lambda: inbox.rounds.count() == rounds_before + 1, "one round")


def test_lifecycle_removed_recreates_and_missed_runs_a_round(subscribed, notifying, remote, worker):
    old = inbox_subscription(subscribed)

    notifying.send_lifecycle_event(old.graph_id, "subscriptionRemoved")
    eventually(
        lambda: inbox_subscription(subscribed).graph_id not in (None, old.graph_id),
        "a new subscription",
    )
    assert inbox_subscription(subscribed).state == SubscriptionState.ACTIVE

    notifying.pause_notifications()  # the message arrives, its notification is "missed"
    remote.add_message("inbox", **graph_message(3, subject="Missed then fetched"))
    notifying.send_lifecycle_event(inbox_subscription(subscribed).graph_id, "missed")
    eventually(
        lambda: Message.objects.filter(subject="Missed then fetched").exists(),
        "the missed message fetched",
    )


def test_renewal_extends_and_a_vanished_subscription_is_recreated(subscribed, notifying):
    subscription = inbox_subscription(subscribed)
    GraphSubscription.objects.filter(pk=subscription.pk).update(
        expires_at=timezone.now() + timedelta(hours=2)
    )

    assert subscriptions.subscriptions_renew_due() >= 1
    renewed = inbox_subscription(subscribed)
    assert renewed.expires_at > timezone.now() + timedelta(days=6)
    assert renewed.graph_id == subscription.graph_id

    notifying.expire_subscription(renewed.graph_id)
    GraphSubscription.objects.filter(pk=renewed.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    subscriptions.subscriptions_repair()
    repaired = inbox_subscription(subscribed)
    assert repaired.state == SubscriptionState.ACTIVE
    assert repaired.graph_id != renewed.graph_id


def test_opting_a_folder_out_deletes_its_subscription_in_graph(subscribed, notifying):
    subscription = inbox_subscription(subscribed)

    services.folder_sync_set(folder=subscribed.folders.get(well_known="inbox"), enabled=False)

    assert not GraphSubscription.objects.filter(pk=subscription.pk).exists()
    assert subscription.graph_id not in {s.id for s in notifying.subscriptions.all()}


def test_without_a_reachable_webhook_the_folder_stays_polled(notifying, mailbox, remote, graph):
    graph.notification_ca_file = None  # the simulator no longer trusts our certificate
    remote.add_message("inbox", **graph_message(1))

    services.mailbox_sync(mailbox=mailbox)

    inbox = mailbox.folders.get(well_known="inbox")
    assert inbox.pk in services.folders_to_poll()
    row = GraphSubscription.objects.get(target_id=inbox.pk)
    assert row.state == SubscriptionState.INACTIVE
    assert "validation" in row.last_error.lower()


def test_removing_the_mailbox_deletes_its_subscriptions_in_graph(subscribed, notifying):
    graph_ids = set(GraphSubscription.objects.values_list("graph_id", flat=True))
    assert graph_ids

    services.mailbox_disconnect(mailbox=subscribed)

    assert not GraphSubscription.objects.exists()
    assert not graph_ids & {s.id for s in notifying.subscriptions.all()}


def test_admin_lists_subscriptions_and_renews_recreates_and_deletes_them(
    subscribed, notifying, admin_client
):
    inbox = inbox_subscription(subscribed)

    page = admin_client.get("/admin/crm/graphsubscription/").content.decode()
    assert html.escape(inbox.resource) in page
    assert "Active" in page

    changelist = "/admin/crm/graphsubscription/"
    picked = {"_selected_action": [inbox.pk]}
    admin_client.post(changelist, {**picked, "action": "renew"})
    assert inbox_subscription(subscribed).last_renewed_at > inbox.last_renewed_at
    admin_client.post(changelist, {**picked, "action": "recreate"})
    assert inbox_subscription(subscribed).graph_id != inbox.graph_id
    recreated = inbox_subscription(subscribed).graph_id
    admin_client.post(changelist, {**picked, "action": "delete_in_graph"})
    assert not GraphSubscription.objects.filter(pk=inbox.pk).exists()
    assert recreated not in {s.id for s in notifying.subscriptions.all()}


def test_a_failing_subscription_is_not_retried_on_every_round(notifying, mailbox, remote, graph):
    graph.notification_ca_file = None  # the handshake fails
    remote.add_message("inbox", **graph_message(1))
    services.mailbox_sync(mailbox=mailbox)
    inbox = mailbox.folders.get(well_known="inbox")
    attempts = GraphSubscription.objects.get(target_id=inbox.pk).failures

    services.mailbox_sync(mailbox=mailbox)  # a minute later, the poll's round

    assert GraphSubscription.objects.get(target_id=inbox.pk).failures == attempts
    GraphSubscription.objects.filter(target_id=inbox.pk).update(
        updated_at=timezone.now() - timedelta(minutes=5)
    )
    services.mailbox_sync(mailbox=mailbox)  # after the wait: tried (and failed) again

    assert GraphSubscription.objects.get(target_id=inbox.pk).failures == attempts + 1
