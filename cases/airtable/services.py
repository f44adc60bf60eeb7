"""Airtable export services: a run, the schedule, the connection test, the column checks.

A run (`airtable_export_run`):

1. takes the export's lease (`crm.db.lease_take`), so two runs of one export never overlap,
   whichever process starts them; a run whose worker died is closed as failed by the next;
2. reads the recipient statistics of the export's mailboxes (`mailsync.selectors
   .recipient_stats`) with the customer and organization behind each address, maps them to
   the columns and hashes each record's values;
3. sends only the records whose hash differs from the one stored after their last successful
   upsert (all of them with `full`), ten per upsert on the merge column;
4. after each upsert, in one transaction, stores the ten hashes and the run's progress, so a
   run that fails halfway leaves a record saying why and the next one resumes with the rest:
   nothing is sent twice for a record whose upsert succeeded, and an upsert whose answer was
   lost is sent again as the same upsert, which cannot duplicate a row.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.functions import Lower
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from cases.airtable.choices import MERGE_SOURCES, STAT_SOURCES, ExportSource, RunStatus
from cases.airtable.client import MAX_RECORDS_PER_REQUEST, AirtableClient, AirtableError
from cases.airtable.models import (
    AirtableExport,
    AirtableExportedRecord,
    AirtableExportRun,
)
from cases.errors import CaseError
from crm.db import lease_give_back, lease_renew, lease_take

logger = logging.getLogger(__name__)

TASK_NAME = "cases.tasks.airtable_export"
READ_BATCH = 1000
LEASE = "lease"  # AirtableExport.lease_owner / lease_expires_at

Progress = Callable[[int, int], None]


class AirtableConfigError(CaseError):
    """The export's configuration cannot work (no token, no columns, a bad merge column)."""

    code = "airtable_config"


class AirtableExportBusy(CaseError):
    """Another run of the export holds its lease."""

    code = "airtable_export_busy"


# --- configuration ---------------------------------------------------------------------------


def airtable_columns_validate(*, columns: Sequence[tuple[str, str]], merge_column: str) -> str:
    """Check a mapping of (column, source) pairs and name its merge column (the one filled
    with the address when `merge_column` is empty). Raises `AirtableConfigError` naming the
    form field at fault."""
    if not columns:
        raise AirtableConfigError("Map at least one column.", field="columns")
    names = [column.strip() for column, _ in columns]
    if any(not name for name in names):
        raise AirtableConfigError("Every mapped column needs a name.", field="columns")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise AirtableConfigError(
            f"Each column may be filled once; “{duplicates[0]}” is mapped twice.", field="columns"
        )
    unknown = [source for _, source in columns if source not in ExportSource.values]
    if unknown:
        raise AirtableConfigError(f"Unknown source: {unknown[0]}.", field="columns")
    sources = dict(zip(names, (source for _, source in columns), strict=True))
    if not merge_column:
        merge_column = next(
            (name for name, source in sources.items() if source in MERGE_SOURCES), ""
        )
        if not merge_column:
            raise AirtableConfigError(
                "Map the recipient address to a column: records are matched on it.",
                field="merge_column",
            )
    if merge_column not in sources:
        raise AirtableConfigError(
            f"The merge column “{merge_column}” is not one of the mapped columns.",
            field="merge_column",
        )
    if sources[merge_column] not in MERGE_SOURCES:
        raise AirtableConfigError(
            f"The merge column must be filled with the recipient address (one record per "
            f"address), not with {ExportSource(sources[merge_column]).label.lower()}.",
            field="merge_column",
        )
    return merge_column


@transaction.atomic
def airtable_export_saved(*, export: AirtableExport, target_changed: bool) -> None:
    """After the export's configuration was saved: keep its beat task in step, and when it
    now points at another base or table, forget what was exported (the new table has none
    of it, so the next run sends every record)."""
    if target_changed:
        AirtableExportedRecord.objects.filter(export=export).delete()
    airtable_export_schedule(export=export)


def airtable_export_schedule(*, export: AirtableExport) -> PeriodicTask | None:
    """Create, update or remove the export's django-celery-beat task: it runs every
    `every_minutes` while the export is enabled, and does not exist otherwise."""
    task = (
        PeriodicTask.objects.filter(pk=export.periodic_task_id).first()
        if export.periodic_task_id
        else None
    )
    if not (export.enabled and export.every_minutes):
        if task is not None:
            task.delete()
        AirtableExport.objects.filter(pk=export.pk).update(periodic_task=None)
        export.periodic_task = None
        return None
    interval, _ = IntervalSchedule.objects.get_or_create(
        every=export.every_minutes, period=IntervalSchedule.MINUTES
    )
    if task is None:
        task = PeriodicTask(start_time=timezone.now())
    task.name = f"cases: Airtable export {export.pk} ({export.name})"[:200]
    task.task = TASK_NAME
    task.args = json.dumps([export.pk])
    task.interval = interval
    task.enabled = True
    task.description = "Sends the recipient statistics that changed to Airtable."
    task.save()
    if export.periodic_task_id != task.pk:
        AirtableExport.objects.filter(pk=export.pk).update(periodic_task=task)
        export.periodic_task = task
    return task


@transaction.atomic
def airtable_export_delete(*, export: AirtableExport) -> None:
    """Delete the export with its beat task (which would otherwise run a missing export)."""
    if export.periodic_task_id:
        PeriodicTask.objects.filter(pk=export.periodic_task_id).delete()
    export.delete()


def airtable_export_test_connection(*, export: AirtableExport) -> str:
    """Read the first page of the table (one request); raises `AirtableError` with
    Airtable's reason when that fails."""
    client = AirtableClient(
        token=_token_of(export), base_id=export.base_id, table_name=export.table_name
    )
    try:
        records = client.first_page()
    finally:
        client.close()
    return (
        f"Connected: “{export.table_name}” in base {export.base_id} answered with "
        f"{len(records)} record(s) on its first page."
    )


# --- a run -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingRecord:
    merge_value: str
    values_hash: str
    fields: dict[str, Any]


def airtable_export_run(
    *, config_id: int, full: bool = False, progress: Progress | None = None
) -> AirtableExportRun:
    """Run the export once (see the module's docstring) and return its run record, succeeded
    or failed. Raises `AirtableExportBusy` when another run holds the export, and
    `AirtableExport.DoesNotExist`; an unexpected error is recorded on the run and raised."""
    export = AirtableExport.objects.get(pk=config_id)
    lease = lease_take(AirtableExport, export.pk, seconds=_lease_seconds(), prefix=LEASE)
    if not lease:
        raise AirtableExportBusy(f"The export “{export.name}” is already running.")
    try:
        _close_abandoned_runs(export)
        run = AirtableExportRun.objects.create(export=export, full=full)
        _run(export, run, lease=lease, progress=progress)
        return run
    finally:
        lease_give_back(AirtableExport, export.pk, lease, prefix=LEASE)


def _run(
    export: AirtableExport, run: AirtableExportRun, *, lease: str, progress: Progress | None
) -> None:
    client: AirtableClient | None = None
    try:
        columns = [(c.column, c.source) for c in export.columns.all()]
        merge_column = airtable_columns_validate(columns=columns, merge_column=export.merge_column)
        token = _token_of(export)
        pending, unchanged = _pending_records(export, columns, merge_column, full=run.full)
        run.records_total, run.unchanged = len(pending), unchanged
        run.save(update_fields=["records_total", "unchanged"])
        if progress:
            progress(0, run.records_total)
        client = AirtableClient(token=token, base_id=export.base_id, table_name=export.table_name)
        for chunk in batched(pending, MAX_RECORDS_PER_REQUEST):
            result = client.upsert([record.fields for record in chunk], merge_on=merge_column)
            with transaction.atomic():
                _remember(export, chunk)
                run.records_done += len(chunk)
                run.created += result.created
                run.updated += result.updated
                _copy_stats(run, client)
                run.save(update_fields=_PROGRESS_FIELDS)
            if not lease_renew(AirtableExport, export.pk, lease, seconds=_lease_seconds(),
                               prefix=LEASE):  # fmt: skip
                raise AirtableConfigError(
                    "The run stopped: it held the export longer than AIRTABLE_LEASE_SECONDS "
                    "without renewing it, so another run may have started."
                )
            if progress:
                progress(run.records_done, run.records_total)
    except (AirtableError, AirtableConfigError) as exc:
        _finish(run, client, RunStatus.FAILED, str(exc.message))
        logger.warning("Airtable export %s failed: %s", export.pk, exc.message)
    except Exception as exc:
        _finish(run, client, RunStatus.FAILED, f"Unexpected error: {type(exc).__name__}: {exc}")
        raise
    else:
        _finish(run, client, RunStatus.SUCCEEDED, "")


_PROGRESS_FIELDS = ["records_done", "created", "updated", "requests", "throttled", "errors"]


def _copy_stats(run: AirtableExportRun, client: AirtableClient | None) -> None:
    if client is not None:
        run.requests = client.stats.requests
        run.throttled = client.stats.throttled
        run.errors = client.stats.errors


def _finish(
    run: AirtableExportRun, client: AirtableClient | None, status: str, message: str
) -> None:
    _copy_stats(run, client)
    if client is not None:
        client.close()
    run.status, run.error_message, run.finished_at = status, message, timezone.now()
    run.save(update_fields=[*_PROGRESS_FIELDS, "status", "error_message", "finished_at"])


def _close_abandoned_runs(export: AirtableExport) -> None:
    """Runs still marked running while we hold the lease lost their worker (it died, or the
    lease ran out): say so, so the admin does not show them running forever."""
    AirtableExportRun.objects.filter(export=export, status=RunStatus.RUNNING).update(
        status=RunStatus.FAILED,
        finished_at=timezone.now(),
        error_message="The process running it stopped before it finished; the next run "
        "resumed where it left off.",
    )


def _lease_seconds() -> float:
    return float(settings.AIRTABLE_LEASE_SECONDS)


def _token_of(export: AirtableExport) -> str:
    if not export.token:
        raise AirtableConfigError(
            "No personal access token is stored for this export (or FIELD_ENCRYPTION_KEY "
            "changed and it cannot be read): enter it again.",
            field="token",
        )
    return export.token


def _remember(export: AirtableExport, chunk: Iterable[PendingRecord]) -> None:
    now = timezone.now()
    AirtableExportedRecord.objects.bulk_create(
        [
            AirtableExportedRecord(
                export=export,
                merge_value=r.merge_value,
                values_hash=r.values_hash,
                exported_at=now,
            )  # fmt: skip
            for r in chunk
        ],
        update_conflicts=True,
        unique_fields=["export", "merge_value"],
        update_fields=["values_hash", "exported_at"],
    )


# --- what to send ----------------------------------------------------------------------------


def _pending_records(
    export: AirtableExport, columns: list[tuple[str, str]], merge_column: str, *, full: bool
) -> tuple[list[PendingRecord], int]:
    """The records whose mapped values changed since their last successful upsert (every
    record with `full`), in address order, and how many did not change."""
    known: dict[str, str] = {}
    if not full:
        known = dict(
            AirtableExportedRecord.objects.filter(export=export).values_list(
                "merge_value", "values_hash"
            )
        )
    pending, unchanged = [], 0
    for fields in _mapped_rows(export, columns):
        merge_value = str(fields[merge_column])
        values_hash = _hash(fields)
        if known.get(merge_value) == values_hash:
            unchanged += 1
        else:
            pending.append(PendingRecord(merge_value, values_hash, fields))
    return pending, unchanged


def _mapped_rows(export: AirtableExport, columns: list[tuple[str, str]]) -> Iterator[dict]:
    from mailsync.models import Mailbox
    from mailsync.selectors import recipient_stats

    mailbox_ids = list(export.mailboxes.values_list("pk", flat=True)) or list(
        Mailbox.objects.values_list("pk", flat=True)
    )
    wants_crm = any(source not in STAT_SOURCES for _, source in columns)
    rows = recipient_stats(mailbox_ids=mailbox_ids).iterator(chunk_size=2 * READ_BATCH)
    for batch in batched(rows, READ_BATCH):
        crm = _crm_values([row["address"] for row in batch]) if wants_crm else {}
        for row in batch:
            values = {**row, **crm.get(row["address"].lower(), _NO_CUSTOMER)}
            yield {column: _cell(values.get(str(source))) for column, source in columns}


_NO_CUSTOMER: dict[str, Any] = {}


def _crm_values(addresses: list[str]) -> dict[str, dict[str, Any]]:
    """The customer behind each address (matched case-insensitively, as intake does) and
    that customer's organization, as export sources; one query per batch of addresses."""
    from cases.models import CustomerEmail

    emails = (
        CustomerEmail.objects.annotate(address=Lower("email"))
        .filter(address__in=[address.lower() for address in addresses])
        .select_related("customer__organization")
        .only(
            "email",
            "customer__id",
            "customer__name",
            "customer__is_vip",
            "customer__organization__id",
            "customer__organization__name",
            "customer__organization__tier",
        )  # fmt: skip
    )
    found = {}
    for email in emails:
        customer, organization = email.customer, email.customer.organization
        found[email.address] = {
            # Plain strings: an enum member hashes by its name, not its value.
            "customer_id": customer.pk,
            "customer_name": customer.name,
            "customer_vip": customer.is_vip,
            "organization_id": organization.pk if organization else None,
            "organization_name": organization.name if organization else None,
            "organization_tier": organization.tier if organization else None,
        }
    return found


def _cell(value: Any) -> Any:
    """A value as Airtable takes it in JSON: moments in UTC ISO 8601, the rest as is."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return value


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """`itertools.batched` of Python 3.12."""
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _hash(fields: dict[str, Any]) -> str:
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
