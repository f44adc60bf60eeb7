"""Read queries of the mail app: who sees which mailbox, and the messages in them.

Agents see their own mailboxes and their teams' mailboxes; admins see all. Messages waiting to
be settled after leaving a folder (no folder) are not listed anywhere.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q, QuerySet
from django.db.models.functions import Lower
from django.utils import timezone

from crm import selectors as crm_selectors
from crm.models import User
from mailsync.choices import MailboxKind, WellKnownFolder
from mailsync.models import Mailbox, MailFolder, Message


def mailbox_list(*, user: User) -> QuerySet[Mailbox]:
    if not user.is_authenticated or not user.is_active:
        return Mailbox.objects.none()
    if crm_selectors.user_is_admin(user):
        return Mailbox.objects.all()
    return Mailbox.objects.filter(Q(owner=user) | Q(team_id__in=crm_selectors.user_team_ids(user)))


def mailbox_find(*, user: User, key: str) -> Mailbox | None:
    """By id or address, among the mailboxes `user` sees."""
    mailboxes = mailbox_list(user=user)
    if key.isdigit():
        return mailboxes.filter(pk=int(key)).first()
    return mailboxes.filter(address__iexact=key.strip()).first()


def folder_find(*, mailbox: Mailbox, key: str) -> MailFolder | None:
    """By id, Graph id, or well-known name (`inbox`, `sentitems`...)."""
    folders = mailbox.folders.all()
    if key.lower() in WellKnownFolder.values:
        return folders.filter(well_known=key.lower()).first()
    if key.isdigit():
        return folders.filter(pk=int(key)).first()
    return folders.filter(graph_id=key).first()


def message_list(*, user: User) -> QuerySet[Message]:
    return Message.objects.filter(mailbox__in=mailbox_list(user=user), folder__isnull=False)


def local_mailboxes_for(*, addresses: list[str]) -> QuerySet[Mailbox]:
    """The CRM-hosted mailboxes among these addresses (compared case-insensitively)."""
    wanted = {address.strip().lower() for address in addresses if address}
    return (
        Mailbox.objects.filter(kind=MailboxKind.LOCAL)
        .alias(address_ci=Lower("address"))
        .filter(address_ci__in=wanted)
    )


def local_addresses() -> list[str]:
    """Every address the SMTP listener accepts mail for, lowercased."""
    return [
        address.lower()
        for address in Mailbox.objects.filter(kind=MailboxKind.LOCAL).values_list(
            "address", flat=True
        )
    ]


def local_sender_mailbox(*, user: User, address: str) -> Mailbox | None:
    """The local mailbox `user` may send as: one they see (their own or a team's)."""
    return (
        mailbox_list(user=user)
        .filter(kind=MailboxKind.LOCAL, address__iexact=address.strip())
        .first()
    )


def mailboxes_stale(*, now: datetime | None = None) -> QuerySet[Mailbox]:
    """Enabled Microsoft 365 mailboxes without a clean round for MAILBOX_SYNC_ALERT_MINUTES
    (a new mailbox counts from when it was connected)."""
    threshold = (now or timezone.now()) - timedelta(minutes=settings.MAILBOX_SYNC_ALERT_MINUTES)
    return Mailbox.objects.filter(kind=MailboxKind.M365, sync_enabled=True).filter(
        Q(last_clean_sync_at__lt=threshold)
        | Q(last_clean_sync_at__isnull=True, created_at__lt=threshold)
    )


def mailboxes_owned(*, user: User) -> QuerySet[Mailbox]:
    """An agent's own mailboxes with their connection health, for their profile."""
    return Mailbox.objects.filter(owner=user).select_related("grant").order_by("address")
