"""Registering mailboxes, and the folder tree of mailboxes the CRM hosts itself."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction

from crm.changes import item_touch
from crm.choices import ContainerKind
from crm.graph import subscriptions
from crm.models import ChangeContainer, Team, User, normalize_email
from mailsync.choices import DEFAULT_SYNCED_FOLDERS, MailboxKind, WellKnownFolder
from mailsync.errors import MailboxError
from mailsync.models import Mailbox, MailFolder


@transaction.atomic
def mailbox_connect(
    *,
    address: str,
    team: Team | None = None,
    owner: User | None = None,
    local: bool = False,
    display_name: str = "",
) -> Mailbox:
    """Register a mailbox for a team or an agent (not both). Microsoft 365 mailboxes get their
    folders from the first sync; local ones get the well-known tree at once."""
    address = normalize_email(address)
    try:
        validate_email(address)
    except ValidationError:
        raise MailboxError(f"'{address}' is not an email address.", field="address") from None
    if (team is None) == (owner is None):
        raise MailboxError("A mailbox belongs to a team or to an agent: give exactly one.")
    if Mailbox.objects.filter(address__iexact=address).exists():
        raise MailboxError(f"The mailbox {address} is already connected.", field="address")
    mailbox = Mailbox(
        address=address,
        team=team,
        owner=owner,
        kind=MailboxKind.LOCAL if local else MailboxKind.M365,
        display_name=display_name,
        container=ChangeContainer.objects.create(kind=ContainerKind.MAILBOX, key=f"new:{address}"),
    )
    mailbox.save()
    # The container's key names the mailbox's id, known only now.
    ChangeContainer.objects.filter(pk=mailbox.container_id).update(
        key=f"{ContainerKind.MAILBOX}:{mailbox.pk}"
    )
    if local:
        _create_local_folders(mailbox)
    return mailbox


def mailbox_disconnect(*, mailbox: Mailbox) -> None:
    """Remove a mailbox and everything synced from it; Graph stops notifying its folders
    (the subscriptions are deleted there once the rows are gone)."""
    folder_ids = list(mailbox.folders.values_list("pk", flat=True))
    with transaction.atomic():
        mailbox.delete()
        transaction.on_commit(
            lambda: subscriptions.subscriptions_delete_for(
                kind="mail_folder", target_ids=folder_ids
            )
        )


def _create_local_folders(mailbox: Mailbox) -> None:
    for role in WellKnownFolder:
        folder = MailFolder(
            mailbox=mailbox,
            display_name=role.label,
            well_known=role.value,
            sync_enabled=role in DEFAULT_SYNCED_FOLDERS,
        )
        item_touch(folder, mailbox.container)
        folder.save()


@transaction.atomic
def folder_sync_set(*, folder: MailFolder, enabled: bool) -> MailFolder:
    """Opt a folder in or out of sync.

    Out: its messages leave it (they are deleted when the mailbox's rounds settle, unless they
    turn up in a synced folder) and its delta state is forgotten, so opting in again starts
    with a full round instead of a delta that assumes what is no longer stored.
    """
    from mailsync.services.sync import messages_orphan

    folder = MailFolder.objects.select_for_update().get(pk=folder.pk)
    if folder.sync_enabled == enabled:
        return folder
    folder.sync_enabled = enabled
    if not enabled:
        gone = [folder.pk]
        transaction.on_commit(
            lambda: subscriptions.subscriptions_delete_for(kind="mail_folder", target_ids=gone)
        )
    if not enabled:
        messages_orphan(mailbox=folder.mailbox, messages=list(folder.messages.all()))
        folder.delta_link = folder.resume_link = ""
    item_touch(folder, folder.mailbox.container)
    folder.save()
    return folder
