"""Changes to messages, made in the CRM and, for Microsoft 365 mailboxes, in Graph too.

These services are the only way to change a message (the API, the UI and ActiveSync call
them). Each changes the row at once (with a new change number, so sync consumers see it) and,
for a Microsoft 365 message, writes a `MailOperation` to the outbox in the same transaction;
the worker applies the outbox in order (`operations_apply`). When Graph refuses an operation
for good (the message is gone, access denied, a bad request), the operation is marked failed
and the row is read back from Graph, so the CRM shows what Microsoft 365 has.

The next delta round brings our own change back; the sync merges only properties that
differ, so it finds nothing to change: no second change number, no flip-flop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from crm.changes import item_leave, item_touch
from crm.db import lease_give_back, lease_renew, lease_take
from crm.graph.client import GraphClient
from crm.graph.errors import GraphError, GraphNotFound, GraphThrottled, GraphUnavailable
from crm.models import User
from mailsync.choices import (
    FlagStatus,
    MailboxKind,
    OperationKind,
    OperationStatus,
    WellKnownFolder,
)
from mailsync.errors import MailboxError
from mailsync.models import Mailbox, MailFolder, MailOperation, Message

logger = logging.getLogger(__name__)

MAX_CATEGORIES = 25
TRANSIENT = (GraphThrottled, GraphUnavailable)
LEASE = "outbox_lease"  # Mailbox.outbox_lease_owner / outbox_lease_expires_at


# --- the services ---------------------------------------------------------------------------


def message_set_read(*, message: Message, read: bool, actor: User | None = None) -> Message:
    return _change(message, actor, OperationKind.READ, {"isRead": read}, is_read=read)


def message_set_flag(*, message: Message, status: str, actor: User | None = None) -> Message:
    if status not in FlagStatus.values:
        raise MailboxError(f"“{status}” is not a flag status.", field="flag")
    return _change(
        message, actor, OperationKind.FLAG, {"flag": {"flagStatus": status}}, flag_status=status
    )


def message_set_categories(
    *, message: Message, categories: Iterable[str], actor: User | None = None
) -> Message:
    names = list(dict.fromkeys(name.strip() for name in categories if name and name.strip()))
    if len(names) > MAX_CATEGORIES or any(len(name) > 255 for name in names):
        raise MailboxError(
            f"At most {MAX_CATEGORIES} categories of 255 characters.", field="categories"
        )
    return _change(
        message, actor, OperationKind.CATEGORIES, {"categories": names}, categories=names
    )


def message_move(*, message: Message, folder: MailFolder, actor: User | None = None) -> Message:
    if folder.mailbox_id != message.mailbox_id:
        raise MailboxError("A message moves only within its mailbox.", field="folder")
    return _change(
        message, actor, OperationKind.MOVE, {"destinationId": folder.graph_id}, folder=folder
    )


def message_delete(*, message: Message, actor: User | None = None) -> Message | None:
    """To Deleted Items; from there (or without that folder), for good. None when it is gone."""
    deleted_items = message.mailbox.folders.filter(well_known=WellKnownFolder.DELETED).first()
    if deleted_items is not None and message.folder_id != deleted_items.pk:
        return message_move(message=message, folder=deleted_items, actor=actor)
    with transaction.atomic():
        locked = _locked(message)
        _queue(locked, actor, OperationKind.DELETE, {})
        item_leave(locked, locked.mailbox.container)
        locked.delete()
    return None


# --- the outbox --------------------------------------------------------------------------------


def _locked(message: Message) -> Message:
    return Message.objects.select_for_update().select_related("mailbox").get(pk=message.pk)


@transaction.atomic
def _change(message: Message, actor, kind: str, payload: dict, **fields) -> Message:
    """Change the row (and give it a new number) and queue the same change for Graph."""
    locked = _locked(message)
    if all(getattr(locked, name) == value for name, value in fields.items()):
        return locked
    for name, value in fields.items():
        setattr(locked, name, value)
    item_touch(locked, locked.mailbox.container)
    locked.save()
    _queue(locked, actor, kind, payload)
    return locked


def _queue(message: Message, actor, kind: str, payload: dict) -> None:
    if message.mailbox.kind != MailboxKind.M365:
        return  # a local mailbox's row is the message
    MailOperation.objects.create(
        mailbox=message.mailbox, message=message, graph_id=message.graph_id, kind=kind,
        payload=payload, actor=actor,
    )  # fmt: skip
    mailbox_id = message.mailbox_id
    transaction.on_commit(lambda: _schedule(mailbox_id))


def _schedule(mailbox_id: int) -> None:
    from mailsync.tasks import apply_operations

    apply_operations.delay(mailbox_id)


def operations_apply(*, mailbox_id: int, client: GraphClient | None = None) -> int:
    """Apply the mailbox's pending operations in order; returns how many were applied.

    One process at a time per mailbox (a lease on the mailbox row): every change queues a
    task, and two workers draining the same outbox would send each operation twice and could
    reorder them. A task that finds the lease taken returns at once; the holder looks for
    operations that arrived meanwhile after giving the lease back, so none waits for beat's
    sweep. A crashed holder's lease runs out after MAIL_OUTBOX_LEASE_SECONDS.

    Raises the transient Graph error (throttling, an outage) that stopped it, leaving that
    operation and the ones after it pending for the task's retry: order matters (a move
    after a flag), so nothing overtakes a waiting operation.
    """
    applied = 0
    while True:
        lease = lease_take(Mailbox, mailbox_id, seconds=_lease_seconds(), prefix=LEASE)
        if not lease:
            return applied
        try:
            applied += _drain(mailbox_id, lease, client)
        finally:
            lease_give_back(Mailbox, mailbox_id, lease, prefix=LEASE)
        if not _pending(mailbox_id).exists():
            return applied


def _drain(mailbox_id: int, lease: str, client: GraphClient | None) -> int:
    applied = 0
    while (operation := _pending(mailbox_id).select_related("mailbox").first()) is not None:
        if not lease_renew(Mailbox, mailbox_id, lease, seconds=_lease_seconds(), prefix=LEASE):
            logger.warning("write-back: mailbox %s: lease lost, stopping", mailbox_id)
            break
        client = client or GraphClient(mailbox=operation.mailbox.address)
        try:
            _send(client, operation)
        except TRANSIENT as exc:
            MailOperation.objects.filter(pk=operation.pk).update(
                attempts=operation.attempts + 1, last_error=str(exc)[:2000]
            )
            raise
        except GraphNotFound as exc:
            if operation.kind == OperationKind.DELETE:
                _done(operation)  # gone already: a delete repeated after a lost answer
            else:
                _refused(client, operation, exc)
        except GraphError as exc:
            _refused(client, operation, exc)
        else:
            _done(operation)
        applied += 1
    return applied


def _lease_seconds() -> float:
    return settings.MAIL_OUTBOX_LEASE_SECONDS


def mailboxes_with_pending_operations() -> list[int]:
    return list(
        MailOperation.objects.filter(status=OperationStatus.PENDING)
        .values_list("mailbox_id", flat=True)
        .distinct()
    )


def _pending(mailbox_id: int) -> QuerySet[MailOperation]:
    return MailOperation.objects.filter(
        mailbox_id=mailbox_id, status=OperationStatus.PENDING
    ).order_by("pk")


def _send(client: GraphClient, operation: MailOperation) -> None:
    path = f"users/{operation.mailbox.address}/messages/{operation.graph_id}"
    if operation.kind == OperationKind.MOVE:
        client.request_json("POST", f"{path}/move", json=operation.payload)
    elif operation.kind == OperationKind.DELETE:
        client.request("DELETE", path)
    else:
        client.request_json("PATCH", path, json=operation.payload)


def _done(operation: MailOperation) -> None:
    MailOperation.objects.filter(pk=operation.pk).update(
        status=OperationStatus.DONE, attempts=operation.attempts + 1, applied_at=timezone.now()
    )


def _refused(client: GraphClient, operation: MailOperation, exc: GraphError) -> None:
    """Graph said no for good: record it, and make the row say what Microsoft 365 has."""
    logger.warning("write-back refused: %s: %s", operation, exc)
    MailOperation.objects.filter(pk=operation.pk).update(
        status=OperationStatus.FAILED,
        attempts=operation.attempts + 1,
        last_error=str(exc)[:2000],
        applied_at=timezone.now(),
    )
    if operation.message_id is None:
        return
    path = f"users/{operation.mailbox.address}/messages/{operation.graph_id}"
    try:
        remote = client.request_json(
            "GET", path, params={"$select": "isRead,flag,categories,parentFolderId"}
        )
    except GraphNotFound:
        remote = None
    except GraphError:
        return  # the next delta round settles it
    _correct(operation, remote)


@transaction.atomic
def _correct(operation: MailOperation, remote: dict | None) -> None:
    message = (
        Message.objects.select_for_update()
        .select_related("mailbox")
        .filter(pk=operation.message_id)
        .first()
    )
    if message is None:
        return
    if remote is None:  # gone in Microsoft 365: gone here
        item_leave(message, message.mailbox.container)
        message.delete()
        return
    message.is_read = bool(remote.get("isRead", message.is_read))
    message.flag_status = (remote.get("flag") or {}).get("flagStatus", message.flag_status)
    message.categories = remote.get("categories", message.categories)
    folder = message.mailbox.folders.filter(graph_id=remote.get("parentFolderId")).first()
    if folder is not None:
        message.folder = folder
    item_touch(message, message.mailbox.container)
    message.save()
