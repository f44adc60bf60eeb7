"""Celery tasks of the mail app: thin wrappers over services (DESIGN.md habit 4)."""

from __future__ import annotations

import logging

from celery import shared_task

from mailsync import services
from mailsync.choices import MailboxKind
from mailsync.errors import SyncBusy
from mailsync.models import Mailbox

logger = logging.getLogger(__name__)


@shared_task(name="mailsync.tasks.sync_all_mailboxes", ignore_result=True)
def sync_all_mailboxes() -> None:
    """Beat's entry point: one task per enabled Microsoft 365 mailbox, so they run in parallel
    across workers and one slow mailbox does not hold up the others."""
    ids = Mailbox.objects.filter(kind=MailboxKind.M365, sync_enabled=True).values_list(
        "pk", flat=True
    )
    for mailbox_id in ids:
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
