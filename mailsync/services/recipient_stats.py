"""Sent-mail recipient statistics: who each mailbox writes to, how often, first and last.

`SentRecipient` holds a row per (message, address, kind) of every message in a mailbox's Sent
Items that is not a draft; `RecipientStat` sums them per (mailbox, address). Both follow the
mailbox's change numbers (DESIGN.md "Change numbers"), never a scan of the mailbox:

- `recipient_stats_update` reads the changes after the mailbox's cursor in bounded batches.
  For each changed message it compares the rows the message should have now (none once it
  left Sent Items, became a draft or was deleted: its tombstone) with the rows it has, writes
  the difference, and recomputes the statistics of just the addresses that difference
  touched with one GROUP BY. Running it twice, or concurrently, changes nothing more: the
  cursor row is locked for each batch and the difference of an applied change is empty.
- `recipient_stats_rebuild` starts over for a mailbox: on PostgreSQL one INSERT ... SELECT
  over `jsonb_array_elements` of To, Cc and Bcc; on SQLite (the embedded default) the same
  rows computed in Python in chunks. The statistics are then one INSERT ... SELECT of a
  GROUP BY on both. The cursor moves to the container's number read before the rows were.

A mailbox with no cursor yet is rebuilt on its first update instead of replaying its whole
history one batch at a time.

Addresses are trimmed and lower-cased (sync and local delivery store them that way already);
an entry without an `@` (an Exchange legacy DN, a name alone) is not a recipient here. A row's
time is the message's sent time, else its received time, else when it was stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Exists, F, Max, Min, OuterRef, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from crm.changes import changes_since
from crm.db import bulk_insert, is_postgresql
from crm.models import ChangeContainer
from mailsync.choices import RecipientKind, WellKnownFolder
from mailsync.models import (
    Mailbox,
    MailFolder,
    Message,
    RecipientStat,
    RecipientStatCursor,
    SentRecipient,
)

BATCH_SIZE = 500  # changes read per transaction
MAX_BATCHES = 20  # per call; the task queues itself again when more wait
ADDRESS_CHUNK = 500  # addresses per recomputing statement (SQLite's variable limit)
REBUILD_CHUNK = 2_000  # messages per step of the Python rebuild
WHITESPACE = " \t\r\n"
ADDRESS_LENGTH = 320

# (message id, address, kind, domain, sent at)
Row = tuple[int, str, str, str, Any]


@dataclass(frozen=True)
class StatsProgress:
    """What an update did: changes read, rows written and removed, addresses recomputed, and
    whether changes still wait (the caller runs it again)."""

    changes: int = 0
    added: int = 0
    removed: int = 0
    addresses: int = 0
    more: bool = False
    rebuilt: bool = False


def recipient_address(value: Any) -> tuple[str, str] | None:
    """(address, domain) of a recipient entry's address, or None if it is not one.

    Must agree with the rebuild's SQL (`_PG_REBUILD`): trim, lower-case, cut to 320
    characters, then an `@` with something after the last one."""
    if not isinstance(value, str):
        return None
    address = value.strip(WHITESPACE).lower()[:ADDRESS_LENGTH]
    local, at, domain = address.rpartition("@")
    if not at or not domain:
        return None
    return address, domain


def message_recipient_rows(
    *, message_id: int, to: Any, cc: Any, bcc: Any, sent_at: Any
) -> set[Row]:
    """The rows a sent message gives: one per distinct (address, kind)."""
    rows: set[Row] = set()
    for kind, entries in ((RecipientKind.TO, to), (RecipientKind.CC, cc), (RecipientKind.BCC, bcc)):
        for entry in entries if isinstance(entries, list) else []:
            found = recipient_address(entry.get("address")) if isinstance(entry, dict) else None
            if found is not None:
                rows.add((message_id, found[0], kind.value, found[1], sent_at))
    return rows


def _sent_at(message: Message | dict[str, Any]) -> Any:
    get = message.get if isinstance(message, dict) else lambda name: getattr(message, name)
    return get("sent_at") or get("received_at") or get("created_at")


# --- incremental -----------------------------------------------------------------------------

MESSAGE_COLUMNS = ["id", "mailbox_id", "folder_id", "is_draft", "to", "cc", "bcc", "sent_at",
                   "received_at", "created_at", "change_container_id", "change_seq"]  # fmt: skip


def recipient_stats_update(
    *, mailbox_id: int, batch_size: int = BATCH_SIZE, max_batches: int = MAX_BATCHES
) -> StatsProgress:
    """Apply the mailbox's changes after its cursor to the rows and statistics, at most
    `max_batches` transactions of `batch_size` changes; `more` says whether changes remain.

    Idempotent and safe to run concurrently (each batch locks the cursor row). A mailbox
    without a cursor is rebuilt instead."""
    if not RecipientStatCursor.objects.filter(mailbox_id=mailbox_id).exists():
        if not Mailbox.objects.filter(pk=mailbox_id).exists():
            return StatsProgress()
        _rebuild_one(mailbox_id)
        return StatsProgress(rebuilt=True)
    total = StatsProgress()
    for _ in range(max_batches):
        step = _update_batch(mailbox_id, batch_size)
        total = StatsProgress(
            changes=total.changes + step.changes,
            added=total.added + step.added,
            removed=total.removed + step.removed,
            addresses=total.addresses + step.addresses,
            more=step.more,
        )
        if not step.more:
            return total
    return total


def _update_batch(mailbox_id: int, batch_size: int) -> StatsProgress:
    with transaction.atomic():
        cursor = RecipientStatCursor.objects.select_for_update().filter(mailbox_id=mailbox_id)
        cursor = cursor.first()
        if cursor is None:  # the mailbox went meanwhile
            return StatsProgress()
        container = ChangeContainer.objects.get(mailbox__pk=mailbox_id)
        changes = changes_since(
            container=container,
            since=cursor.last_seq,
            items=Message.objects.only(*MESSAGE_COLUMNS),
            limit=batch_size,
        )
        count = len(changes.items) + len(changes.tombstones)
        if not count:
            return StatsProgress()
        added, removed, touched = _apply(mailbox_id, changes.items, changes.tombstones)
        _stats_recompute(mailbox_id, touched)
        cursor.last_seq = changes.last_seq
        cursor.updated_at = timezone.now()
        cursor.save(update_fields=["last_seq", "updated_at"])
    return StatsProgress(count, added, removed, len(touched), more=count >= batch_size)


def _apply(mailbox_id: int, messages: list[Message], tombstones: list) -> tuple[int, int, set]:
    """Make the rows of the changed messages what they should be now; returns how many were
    added and removed and the addresses whose statistics changed.

    Precondition: the caller holds the lock on the mailbox's cursor row."""
    sent_folder = _sent_folder_id(mailbox_id)
    wanted: set[Row] = set()
    for message in messages:
        if sent_folder is not None and message.folder_id == sent_folder and not message.is_draft:
            wanted |= message_recipient_rows(
                message_id=message.pk, to=message.to, cc=message.cc, bcc=message.bcc,
                sent_at=_sent_at(message),
            )  # fmt: skip
    ids = [m.pk for m in messages] + [t.item_id for t in tombstones]
    existing: dict[Row, int] = {}
    for chunk in _chunks(ids, ADDRESS_CHUNK):
        rows = SentRecipient.objects.filter(mailbox_id=mailbox_id, message_id__in=chunk)
        for pk, *row in rows.values_list(
            "pk", "message_id", "address", "kind", "domain", "sent_at"
        ):
            existing[tuple(row)] = pk
    stale = [pk for row, pk in existing.items() if row not in wanted]
    new = [row for row in wanted if row not in existing]
    for chunk in _chunks(stale, ADDRESS_CHUNK):
        SentRecipient.objects.filter(pk__in=chunk).delete()
    bulk_insert(
        SentRecipient,
        [SentRecipient(mailbox_id=mailbox_id, message_id=message_id, address=address, kind=kind,
                       domain=domain, sent_at=sent_at)
         for message_id, address, kind, domain, sent_at in new],
    )  # fmt: skip
    touched = {row[1] for row in new} | {row[1] for row in existing if row not in wanted}
    return len(new), len(stale), touched


def _sent_folder_id(mailbox_id: int) -> int | None:
    return (
        MailFolder.objects.filter(mailbox_id=mailbox_id, well_known=WellKnownFolder.SENT)
        .values_list("pk", flat=True)
        .first()
    )


AGGREGATED = [
    "mailbox_id",
    "address",
    "domain",
    "n_to",
    "n_cc",
    "n_bcc",
    "n_total",
    "first",
    "last",
]


def _aggregated(rows: QuerySet[SentRecipient]) -> QuerySet:
    """Per (mailbox, address): the statistics' columns, in `STAT_COLUMNS` order."""
    return (
        rows.values("mailbox_id", "address", "domain")
        .annotate(
            n_to=Count("pk", filter=Q(kind=RecipientKind.TO)),
            n_cc=Count("pk", filter=Q(kind=RecipientKind.CC)),
            n_bcc=Count("pk", filter=Q(kind=RecipientKind.BCC)),
            n_total=Count("pk"),
            first=Min("sent_at"),
            last=Max("sent_at"),
        )
        .values_list(*AGGREGATED)
        .order_by()
    )


STAT_COLUMNS = ["mailbox_id", "address", "domain", "to_count", "cc_count", "bcc_count",
                "total_count", "first_sent", "last_sent"]  # fmt: skip


def _stats_recompute(mailbox_id: int, addresses: Iterable[str]) -> None:
    """The statistics of these addresses of the mailbox, from their rows: per chunk of
    addresses one INSERT ... SELECT of the GROUP BY that updates what exists, and one DELETE
    of the statistics of addresses left without rows.

    Precondition: the caller holds the lock on the mailbox's cursor row."""
    for chunk in _chunks(sorted(addresses), ADDRESS_CHUNK):
        _stats_insert(SentRecipient.objects.filter(mailbox_id=mailbox_id, address__in=chunk))
        RecipientStat.objects.filter(mailbox_id=mailbox_id, address__in=chunk).exclude(
            Exists(
                SentRecipient.objects.filter(
                    mailbox_id=OuterRef("mailbox_id"), address=OuterRef("address")
                )
            )
        ).delete()


def _stats_insert(rows: QuerySet[SentRecipient]) -> None:
    """INSERT ... SELECT of the GROUP BY of `rows`, replacing the statistics of the same
    (mailbox, address). The SELECT is compiled by the ORM and `ON CONFLICT ... DO UPDATE`
    is understood by PostgreSQL and SQLite alike, so it runs on both."""
    select, params = _aggregated(rows).query.sql_with_params()
    quote = connection.ops.quote_name
    column = {name: quote(RecipientStat._meta.get_field(name).column) for name in STAT_COLUMNS}
    updates = ", ".join(f"{column[name]} = excluded.{column[name]}" for name in STAT_COLUMNS[2:])
    sql = (
        f"INSERT INTO {quote(RecipientStat._meta.db_table)} ({', '.join(column.values())}) "
        f"{select} ON CONFLICT ({column['mailbox_id']}, {column['address']}) "
        f"DO UPDATE SET {updates}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _chunks(values: list, size: int) -> Iterator[list]:
    iterator = iter(values)
    while chunk := list(islice(iterator, size)):
        yield chunk


# --- from scratch ----------------------------------------------------------------------------


def recipient_stats_rebuild(*, mailbox_id: int | None = None) -> int:
    """Rebuild the rows and statistics of one mailbox (or of each, one transaction each)
    from its Sent Items; returns the number of rows written."""
    ids = (
        [mailbox_id]
        if mailbox_id is not None
        else list(Mailbox.objects.order_by("pk").values_list("pk", flat=True))
    )
    return sum(_rebuild_one(pk) for pk in ids)


def _rebuild_one(mailbox_id: int) -> int:
    with transaction.atomic():
        RecipientStatCursor.objects.get_or_create(mailbox_id=mailbox_id)
        cursor = RecipientStatCursor.objects.select_for_update().get(mailbox_id=mailbox_id)
        # Read before the messages: every change up to this number is committed and will be
        # seen below; later ones may be seen too, and the next update finds nothing to do
        # for them.
        last_seq = ChangeContainer.objects.get(mailbox__pk=mailbox_id).last_seq
        SentRecipient.objects.filter(mailbox_id=mailbox_id).delete()
        RecipientStat.objects.filter(mailbox_id=mailbox_id).delete()
        sent_folder = _sent_folder_id(mailbox_id)
        written = 0
        if sent_folder is not None:
            if is_postgresql():
                written = _rebuild_rows_sql(mailbox_id, sent_folder)
            else:
                written = _rebuild_rows_python(mailbox_id, sent_folder)
        _rebuild_stats(mailbox_id)
        cursor.last_seq, cursor.rebuilt_at = last_seq, timezone.now()
        cursor.updated_at = cursor.rebuilt_at
        cursor.save(update_fields=["last_seq", "rebuilt_at", "updated_at"])
    return written


_PG_REBUILD = """
WITH recipients AS (
    SELECT m.id AS message_id, lists.kind,
           left(lower(btrim(entry ->> 'address', %(space)s)), %(length)s) AS address,
           COALESCE(m.sent_at, m.received_at, m.created_at) AS sent_at
    FROM mailsync_message m
    CROSS JOIN LATERAL (VALUES ('to', m."to"), ('cc', m.cc), ('bcc', m.bcc))
        AS lists(kind, entries)
    CROSS JOIN LATERAL jsonb_array_elements(
        CASE jsonb_typeof(lists.entries) WHEN 'array' THEN lists.entries ELSE '[]'::jsonb END
    ) AS entry
    WHERE jsonb_typeof(entry -> 'address') = 'string'
      AND m.mailbox_id = %(mailbox)s AND m.folder_id = %(folder)s AND NOT m.is_draft
)
INSERT INTO mailsync_sentrecipient (mailbox_id, message_id, address, domain, kind, sent_at)
SELECT %(mailbox)s, message_id, address, substring(address from '@([^@]*)$'), kind, sent_at
FROM recipients
WHERE strpos(address, '@') > 0 AND right(address, 1) <> '@'
ON CONFLICT (message_id, address, kind) DO NOTHING
"""


def _rebuild_rows_sql(mailbox_id: int, sent_folder: int) -> int:
    """PostgreSQL: every recipient row of the mailbox's Sent Items in one statement."""
    with connection.cursor() as cursor:
        cursor.execute(
            _PG_REBUILD,
            {"mailbox": mailbox_id, "folder": sent_folder, "space": WHITESPACE,
             "length": ADDRESS_LENGTH},
        )  # fmt: skip
        return cursor.rowcount


def _rebuild_rows_python(mailbox_id: int, sent_folder: int) -> int:
    """Elsewhere (SQLite): the same rows, computed by `message_recipient_rows` in chunks."""
    messages = (
        Message.objects.filter(mailbox_id=mailbox_id, folder_id=sent_folder, is_draft=False)
        .values("id", "to", "cc", "bcc", "sent_at", "received_at", "created_at")
        .order_by("pk")
    )
    written = 0
    batch: list[SentRecipient] = []
    for message in messages.iterator(chunk_size=REBUILD_CHUNK):
        rows = message_recipient_rows(
            message_id=message["id"], to=message["to"], cc=message["cc"], bcc=message["bcc"],
            sent_at=_sent_at(message),
        )  # fmt: skip
        batch += [
            SentRecipient(mailbox_id=mailbox_id, message_id=message_id, address=address,
                          kind=kind, domain=domain, sent_at=sent_at)
            for message_id, address, kind, domain, sent_at in rows
        ]  # fmt: skip
        if len(batch) >= REBUILD_CHUNK:
            SentRecipient.objects.bulk_create(batch)
            written, batch = written + len(batch), []
    SentRecipient.objects.bulk_create(batch)
    return written + len(batch)


def _rebuild_stats(mailbox_id: int) -> None:
    _stats_insert(SentRecipient.objects.filter(mailbox_id=mailbox_id))


# --- scheduling ------------------------------------------------------------------------------


def recipient_stats_soon(*, mailbox_id: int) -> None:
    """Queue an update of the mailbox's statistics once the current transaction commits (at
    once outside one)."""

    def enqueue() -> None:
        from mailsync.tasks import update_recipient_stats

        update_recipient_stats.delay(mailbox_id)

    transaction.on_commit(enqueue, robust=True)


def mailboxes_behind_recipient_stats() -> list[int]:
    """Mailboxes with changes the statistics have not seen (beat's sweep queues them)."""
    return list(
        Mailbox.objects.annotate(seen=Coalesce(F("recipient_stat_cursor__last_seq"), 0))
        .filter(container__last_seq__gt=F("seen"))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
