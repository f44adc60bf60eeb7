"""Mail still arrives without change notifications: beat polls the folders no working
subscription covers, through the same folder round a notification schedules."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from crm.choices import SubscriptionState
from crm.graph import subscriptions
from crm.models import GraphSubscription
from mailsync import services, tasks
from mailsync.models import Message
from tests.mailsync.conftest import graph_message

pytestmark = pytest.mark.django_db


@pytest.fixture
def synced(mailbox, remote):
    remote.add_message("inbox", **graph_message(1))
    services.mailbox_sync(mailbox=mailbox)
    return mailbox


def inbox_of(mailbox):
    return mailbox.folders.get(well_known="inbox")


def test_without_a_public_address_every_synced_folder_is_polled(synced, settings):
    settings.PUBLIC_BASE_URL = ""

    polled = services.folders_to_poll()

    assert sorted(polled) == sorted(
        synced.folders.filter(sync_enabled=True).values_list("pk", flat=True)
    )
    assert not GraphSubscription.objects.exists()  # nothing subscribed without an address


def test_a_folder_with_a_working_subscription_is_not_polled_a_failing_one_is(synced, settings):
    settings.PUBLIC_BASE_URL = "https://crm.example.com"
    inbox = inbox_of(synced)
    subscription = GraphSubscription.objects.create(
        kind="mail_folder", target_id=inbox.pk, resource="r", graph_id="g",
        state=SubscriptionState.ACTIVE, expires_at=timezone.now() + timedelta(days=3),
    )  # fmt: skip

    assert inbox.pk not in services.folders_to_poll()

    subscription.state = SubscriptionState.FAILING
    subscription.save()
    assert inbox.pk in services.folders_to_poll()

    subscription.state = SubscriptionState.ACTIVE
    subscription.expires_at = timezone.now() - timedelta(minutes=1)
    subscription.save()
    assert inbox.pk in services.folders_to_poll()


def test_the_poll_runs_a_round_that_stores_new_mail(synced, remote, eager_celery, settings):
    settings.PUBLIC_BASE_URL = ""
    remote.add_message("inbox", **graph_message(2, subject="Arrived between rounds"))

    tasks.poll_folders.delay()

    assert Message.objects.filter(subject="Arrived between rounds").count() == 1


def test_a_folder_round_clears_the_coalescing_mark_first(synced, eager_celery):
    inbox = inbox_of(synced)
    cache.set(subscriptions.pending_key("mail_folder", inbox.pk), 1)

    tasks.sync_folder.delay(inbox.pk)

    assert cache.get(subscriptions.pending_key("mail_folder", inbox.pk)) is None


def test_a_folder_opted_out_loses_its_subscription(synced, django_capture_on_commit_callbacks):
    inbox = inbox_of(synced)
    GraphSubscription.objects.create(kind="mail_folder", target_id=inbox.pk, resource="r")

    with django_capture_on_commit_callbacks(execute=True):
        services.folder_sync_set(folder=inbox, enabled=False)

    assert not GraphSubscription.objects.filter(target_id=inbox.pk).exists()


def test_migrate_installs_the_poll_renewal_and_repair_schedules():
    every = dict(PeriodicTask.objects.values_list("name", "interval__every"))

    assert every["mailsync: poll folders without notifications"] == 60
    assert every["crm: renew Graph subscriptions"] == 12 * 3600
    assert every["crm: repair Graph subscriptions"] == 3600
