"""The Airtable export's tables. Imported by `cases.models`; see `cases.airtable` for the
moving parts."""

from __future__ import annotations

from django.db import models

from cases.airtable.choices import ExportSource, RunStatus
from crm.fields import EncryptedTextField


class AirtableExport(models.Model):
    """Where the recipient statistics of some mailboxes go: one Airtable table, one record per
    recipient address, matched on `merge_column` (upserts, so a retry never duplicates).

    Columns and what fills them are `AirtableExportColumn` rows. `every_minutes` is kept in
    step with a django-celery-beat task (`periodic_task`) by `airtable_export_save`.
    """

    name = models.CharField(max_length=100, unique=True)
    base_id = models.CharField(
        "base id", max_length=32, help_text="From the base's URL: app followed by 14 characters."
    )
    table_name = models.CharField(
        max_length=255, help_text="The table's name or id (tbl...) as Airtable shows it."
    )
    token = EncryptedTextField(
        "personal access token",
        help_text="Needs the scopes data.records:read and data.records:write on this base.",
    )
    merge_column = models.CharField(
        max_length=255,
        blank=True,
        help_text="The column that identifies a record (Airtable's fieldsToMergeOn). Empty: "
        "the column filled with the recipient address.",
    )
    mailboxes = models.ManyToManyField(
        "mailsync.Mailbox",
        blank=True,
        related_name="+",
        help_text="Whose sent mail is counted. None chosen: every mailbox.",
    )
    enabled = models.BooleanField(default=True)
    every_minutes = models.PositiveIntegerField(
        default=60, help_text="How often the scheduler runs it; 0: only when asked."
    )
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        null=True,
        blank=True,
        editable=False,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    lease_owner = models.CharField(max_length=64, blank=True, editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "Airtable export"

    def __str__(self) -> str:
        return self.name


class AirtableExportColumn(models.Model):
    """One column of the Airtable table and what fills it."""

    export = models.ForeignKey(AirtableExport, on_delete=models.CASCADE, related_name="columns")
    column = models.CharField(max_length=255, help_text="The field's name in Airtable.")
    source = models.CharField(max_length=30, choices=ExportSource.choices)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(fields=["export", "column"], name="airtable_column_unique")
        ]

    def __str__(self) -> str:
        return f"{self.column} ← {self.get_source_display()}"


class AirtableExportedRecord(models.Model):
    """What the last successful upsert sent for one record (by its merge value): a hash of the
    mapped values, column names included. A record is sent again only when its hash changes,
    so an unchanged recipient costs no request. Written chunk by chunk as each upsert
    succeeds, so a run that fails halfway resumes where it stopped."""

    export = models.ForeignKey(
        AirtableExport, on_delete=models.CASCADE, related_name="exported_records"
    )
    merge_value = models.CharField(max_length=320)
    values_hash = models.CharField(max_length=64)
    exported_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["export", "merge_value"], name="airtable_exported_record_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.merge_value} in {self.export_id}"


class AirtableExportRun(models.Model):
    """One run of an export, written while it runs (`records_done` of `records_total`) and
    closed as succeeded or failed with Airtable's own message."""

    export = models.ForeignKey(AirtableExport, on_delete=models.CASCADE, related_name="runs")
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.RUNNING)
    full = models.BooleanField(
        default=False, help_text="Every record sent, changed or not (after a table was emptied)."
    )
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    records_total = models.PositiveIntegerField(default=0, help_text="Records to send.")
    records_done = models.PositiveIntegerField(default=0, help_text="Records sent so far.")
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0, help_text="Not sent: nothing changed.")
    requests = models.PositiveIntegerField(default=0, help_text="HTTP requests, retries included.")
    throttled = models.PositiveIntegerField("429s", default=0)
    errors = models.PositiveIntegerField(
        default=0, help_text="Requests that failed (dropped, 5xx, refused), retried or not."
    )
    error_message = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-pk"]
        indexes = [models.Index(fields=["export", "-started_at"], name="airtable_run_export")]

    def __str__(self) -> str:
        return f"{self.export} at {self.started_at:%Y-%m-%d %H:%M} ({self.status})"
