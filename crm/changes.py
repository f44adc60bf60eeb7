"""Change numbers: how every sync consumer sees what changed (DESIGN.md "Change numbers").

Every syncable row carries `change_container` and `change_seq`; an item that leaves a container
(deleted, or moved to another) leaves a `Tombstone` there. A consumer remembers the last number
it saw and reads `change_seq > N` in order. Numbers are allocated per container under a row lock
held until the writing transaction ends, so a reader never sees N+1 before N is committed.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models, transaction
from django.db.models import QuerySet

from crm.choices import ContainerKind
from crm.models import ChangeContainer, Tombstone


def container_key(kind: str, object_id: int | None = None) -> str:
    return kind if object_id is None else f"{kind}:{object_id}"


def container_get(*, kind: str, object_id: int | None = None) -> ChangeContainer:
    """The container for `kind` (and the user, mailbox or calendar id), created on first use."""
    key = container_key(kind, object_id)
    container = ChangeContainer.objects.filter(key=key).first()
    if container is None:
        container, _ = ChangeContainer.objects.get_or_create(key=key, defaults={"kind": kind})
    return container


def customer_book() -> ChangeContainer:
    return container_get(kind=ContainerKind.CUSTOMER_BOOK)


def task_list(user_id: int) -> ChangeContainer:
    return container_get(kind=ContainerKind.TASK_LIST, object_id=user_id)


def change_seq_allocate(container: ChangeContainer) -> int:
    """Take the container's next number.

    Precondition: the caller is inside the transaction that writes the change
    (`transaction.atomic`). The UPDATE takes the container row's lock and holds it until that
    transaction ends, so a second writer waits for the first to commit: within a container,
    numbers become visible in order.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("change_seq_allocate must run inside the writing transaction")
    return _advance(container, 1)


def change_seq_allocate_many(container: ChangeContainer, count: int) -> list[int]:
    """Take the container's next `count` numbers in one statement (bulk writers: a sync page).

    Same precondition and guarantee as `change_seq_allocate`.
    """
    if count <= 0:
        return []
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("change_seq_allocate_many must run inside the writing transaction")
    last = _advance(container, count)
    return list(range(last - count + 1, last + 1))


def _advance(container: ChangeContainer, count: int) -> int:
    """Advance the container's counter by `count` in one statement; returns the new value.

    UPDATE ... RETURNING (PostgreSQL, and SQLite since 3.35) takes the row lock and reads the
    number in one round trip.
    """
    table = ChangeContainer._meta.db_table
    with transaction.get_connection().cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET last_seq = last_seq + %s WHERE id = %s RETURNING last_seq",  # noqa: S608 - our own table name
            [count, container.pk],
        )
        container.last_seq = cursor.fetchone()[0]
    return container.last_seq


def item_touch(item: models.Model, container: ChangeContainer | None) -> None:
    """Give `item` a new number in `container`; if it was in another one, tombstone it there.

    Sets `change_container` and `change_seq` on the instance; the caller saves it. Precondition
    as for `change_seq_allocate`.
    """
    previous_id = item.change_container_id
    if previous_id is not None and (container is None or previous_id != container.pk):
        item_leave(item, ChangeContainer.objects.get(pk=previous_id))
    item.change_container = container
    item.change_seq = change_seq_allocate(container) if container is not None else None


def item_leave(item: models.Model, container: ChangeContainer) -> Tombstone:
    """Record that `item` is gone from `container` (deleted or moved). Same precondition."""
    return Tombstone.objects.create(
        container=container,
        item_type=item._meta.label_lower,
        item_id=item.pk,
        change_seq=change_seq_allocate(container),
    )


@dataclass(frozen=True)
class Changes:
    """What changed in a container after a number: current items and departures, in order."""

    items: list[models.Model]
    tombstones: list[Tombstone]
    last_seq: int


def changes_since(
    *, container: ChangeContainer, since: int, items: QuerySet, limit: int = 500
) -> Changes:
    """Items of `items` (one model) and tombstones numbered after `since`, oldest first.

    `last_seq` is the highest number returned, so the next call continues from it; at most
    `limit` changes are returned, so a consumer far behind catches up in bounded batches.
    """
    changed = list(
        items.filter(change_container=container, change_seq__gt=since).order_by("change_seq")[
            :limit
        ]
    )
    gone = list(
        container.tombstones.filter(
            change_seq__gt=since, item_type=items.model._meta.label_lower
        ).order_by("change_seq")[:limit]
    )
    merged = sorted(
        [(item.change_seq, item) for item in changed] + [(t.change_seq, t) for t in gone],
        key=lambda pair: pair[0],
    )[:limit]
    return Changes(
        items=[obj for _, obj in merged if not isinstance(obj, Tombstone)],
        tombstones=[obj for _, obj in merged if isinstance(obj, Tombstone)],
        last_seq=merged[-1][0] if merged else since,
    )


class ChangeTracked(models.Model):
    """Abstract base for syncable rows: the container they are in and their latest number."""

    change_container = models.ForeignKey(
        ChangeContainer, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    change_seq = models.PositiveBigIntegerField(null=True, blank=True, editable=False)

    class Meta:
        abstract = True
        indexes = [models.Index(fields=["change_container", "change_seq"])]
