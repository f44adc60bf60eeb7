"""Celery tasks of the mail app: thin wrappers over services (DESIGN.md habit 4)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from crm.graph import subscriptions
from crm.graph.errors import GraphThrottled, GraphUnavailable
from mailsync import services
from mailsync.choices import MailboxKind
from mailsync.errors import SyncBusy
from mailsync.models import Mailbox, MailFolder, SyncRound

logger = logging.getLogger(__name__)


@shared_task(name="mailsync.tasks.sync_all_mailboxes", ignore_result=True)
def sync_all_mailboxes() -> None:
    """Beat's entry point: one task per enabled Microsoft 365 mailbox, so they run in parallel
    across workers and one slow mailbox does not hold up the others."""
    for mailbox_id in services.mailboxes_to_sync().values_list("pk", flat=True):
        sync_mailbox.delay(mailbox_id)


@shared_task(name="mailsync.tasks.sync_mailbox", ignore_result=True)
def sync_mailbox(mailbox_id: int) -> None:
    """A round for one mailbox. Idempotent: a folder another worker is syncing is skipped, and
    what fails is recorded on its round and retried by the next scheduled round (the delta link
    only moves after a committed page)."""
    mailbox = Mailbox.objects.filter(pk=mailbox_id, kind=MailboxKind.M365).first()
    if mailbox is None:
        return
    try:
        result = services.mailbox_sync(mailbox=mailbox)
    except SyncBusy as exc:
        logger.info("mail sync: %s", exc)
        return
    for line in result.skipped:
        logger.info("mail sync: %s", line)
    if result.deleted or any(_changed(r) for r in result.rounds):
        services.recipient_stats_soon(mailbox_id=mailbox_id)


def _changed(sync_round: SyncRound) -> bool:
    return bool(sync_round.added or sync_round.updated or sync_round.removed)


@shared_task(
    name="mailsync.tasks.deliver_inbound",
    ignore_result=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=5,
)
def deliver_inbound(inbound_id: int) -> None:
    """Deliver one message the SMTP listener accepted. Idempotent: a message delivered
    already, or being delivered by another worker, is skipped. A database that is away is
    retried here; any other failure is recorded on the spooled row, which beat's sweep queues
    again until it has failed too often (then an admin sees it as failed)."""
    try:
        services.inbound_deliver(inbound_id=inbound_id)
    except Exception as exc:
        services.inbound_delivery_failed(
            inbound_id=inbound_id, problem=f"{type(exc).__name__}: {exc}"
        )
        raise


@shared_task(name="mailsync.tasks.requeue_inbound", ignore_result=True)
def requeue_inbound() -> None:
    """Beat's safety net for the spool: pending messages older than a minute are queued again
    (a task lost with a killed worker or a broker outage loses no mail)."""
    services.inbound_requeue_stale()


@shared_task(
    name="mailsync.tasks.sync_folder",
    bind=True,
    ignore_result=True,
    max_retries=20,
)
def sync_folder(self, folder_id: int, *, when_busy: str = "retry") -> None:
    """One delta round of one folder: what a change notification (or a poll) asks for.

    The coalescing mark goes first, so a notification arriving while this round reads starts
    another round. A folder another worker is syncing is retried shortly when a notification
    asked (its change may be after that round's read), skipped when a poll did.
    """
    folder = (
        MailFolder.objects.filter(pk=folder_id, sync_enabled=True, mailbox__kind=MailboxKind.M365)
        .select_related("mailbox")
        .first()
    )
    if folder is None:
        return
    subscriptions.round_starting(kind=services.SUBSCRIPTION_KIND, target_id=folder_id)
    try:
        sync_round = services.folder_sync(folder=folder)
    except SyncBusy as exc:
        if when_busy == "retry":
            raise self.retry(countdown=5) from exc
        logger.info("mail sync: %s", exc)
        return
    folder.refresh_from_db(fields=["delta_link", "graph_id"])
    services.folder_subscription_ensure(folder=folder)
    if _changed(sync_round):
        services.recipient_stats_soon(mailbox_id=folder.mailbox_id)


@shared_task(name="mailsync.tasks.poll_folders", ignore_result=True)
def poll_folders() -> None:
    """Beat: a round for every synced folder that no working subscription covers (all of
    them while the CRM has no public address), so mail arrives without notifications too."""
    for folder_id in services.folders_to_poll():
        sync_folder.apply_async((folder_id,), kwargs={"when_busy": "skip"})


def schedule_folder_round(folder_id: int) -> None:
    """What a change notification does for a folder (see crm.graph.subscriptions)."""
    sync_folder.apply_async((folder_id,), countdown=settings.GRAPH_NOTIFICATION_COALESCE_SECONDS)


def folder_exists(folder_id: int) -> bool:
    return MailFolder.objects.filter(pk=folder_id, sync_enabled=True).exists()


@shared_task(
    name="mailsync.tasks.apply_operations",
    bind=True,
    ignore_result=True,
    max_retries=None,
)
def apply_operations(self, mailbox_id: int) -> None:
    """Apply a mailbox's write-back outbox in order. Throttling or an outage leaves the rest
    pending and retries with backoff (capped at ten minutes); a worker that dies mid-way
    leaves the operation pending, so the next run (or beat's sweep) applies it."""
    try:
        services.operations_apply(mailbox_id=mailbox_id)
    except (GraphThrottled, GraphUnavailable) as exc:
        raise self.retry(countdown=min(600, 5 * 2 ** min(self.request.retries, 7))) from exc


@shared_task(name="mailsync.tasks.sweep_operations", ignore_result=True)
def sweep_operations() -> None:
    """Beat: queue the mailboxes whose outbox has pending operations (a task lost with a
    crashed worker loses no change)."""
    for mailbox_id in services.mailboxes_with_pending_operations():
        apply_operations.delay(mailbox_id)


@shared_task(name="mailsync.tasks.check_mailbox_health", ignore_result=True)
def check_mailbox_health() -> None:
    """Keep agents' sign-ins alive (and find revoked ones), then tell the admins about
    mailboxes that stopped syncing."""
    refreshed = services.grants_keep_fresh()
    reported = services.mailboxes_alert_stale()
    if refreshed or reported:
        logger.info(
            "mail health: %d sign-ins refreshed, %d mailboxes reported", refreshed, reported
        )


@shared_task(name="mailsync.tasks.relay_outbound", ignore_result=True)
def relay_outbound(outbound_id: int) -> None:
    """Hand a queued message to the SMTP relay; a temporary failure sets its next attempt,
    which beat's sweep picks up (so retries survive a worker restart)."""
    services.outbound_relay(outbound_id=outbound_id)


@shared_task(name="mailsync.tasks.sweep_outbound", ignore_result=True)
def sweep_outbound() -> None:
    """Beat: queue the outbound messages whose next attempt is due."""
    for outbound_id in services.outbound_due():
        relay_outbound.delay(outbound_id)


@shared_task(
    name="mailsync.tasks.update_recipient_stats",
    ignore_result=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=5,
)
def update_recipient_stats(mailbox_id: int) -> None:
    """Bring a mailbox's sent-mail recipient statistics up to its latest change, a bounded
    number of batches at a time (queued again while more wait). Idempotent; concurrent runs
    take turns on the mailbox's cursor row."""
    progress = services.recipient_stats_update(mailbox_id=mailbox_id)
    if progress.more:
        update_recipient_stats.delay(mailbox_id)


@shared_task(
    name="mailsync.tasks.rebuild_recipient_stats",
    ignore_result=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=5,
    max_retries=3,
)
def rebuild_recipient_stats(mailbox_id: int) -> None:
    """Rebuild one mailbox's recipient statistics from its Sent Items (admin's action)."""
    services.recipient_stats_rebuild(mailbox_id=mailbox_id)


@shared_task(name="mailsync.tasks.sweep_recipient_stats", ignore_result=True)
def sweep_recipient_stats() -> None:
    """Beat: queue an update for every mailbox with changes its statistics have not seen
    (what an agent moved or deleted in the CRM, a task lost with a worker)."""
    for mailbox_id in services.mailboxes_behind_recipient_stats():
        update_recipient_stats.delay(mailbox_id)
