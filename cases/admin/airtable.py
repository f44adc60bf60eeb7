"""Airtable exports in the admin: the configuration with its column mapping, and the runs.

Superusers only, like outgoing webhooks: an export's token and table decide where customer
data goes. The token is write-only (never shown back; left empty it keeps the stored one).
The mapping is checked as a run will check it (`airtable_columns_validate`). Saving keeps the
export's beat task in step (`airtable_export_saved`). Actions: "Export now" (queued for a
worker), "Export now, every record" and "Test connection" (reads one page of the table, here
and now, and says what Airtable answered).

The run list shows each run's progress (records sent of those to send) and reloads itself
every few seconds while a run is going.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Model, OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse

from cases.admin.webhooks import SuperuserOnlyAdminMixin
from cases.airtable.choices import RunStatus
from cases.airtable.client import AirtableError
from cases.airtable.services import (
    AirtableConfigError,
    airtable_columns_validate,
    airtable_export_delete,
    airtable_export_saved,
    airtable_export_test_connection,
)
from cases.models import AirtableExport, AirtableExportColumn, AirtableExportRun

REFRESH_SECONDS = 5


class AirtableExportForm(forms.ModelForm):
    token = forms.CharField(
        label="Personal access token",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted and never shown again; needs data.records:read and "
        "data.records:write on this base. Leave empty to keep the current token.",
    )

    class Meta:
        model = AirtableExport
        fields = ["name", "base_id", "table_name", "token", "merge_column", "mailboxes",
                  "enabled", "every_minutes"]  # fmt: skip

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initial.pop("token", None)

    def clean_token(self) -> str:
        token = self.cleaned_data["token"] or (self.instance.token if self.instance.pk else "")
        if not token:
            raise ValidationError("Enter the personal access token.")
        return token

    def clean_base_id(self) -> str:
        base_id = self.cleaned_data["base_id"].strip()
        if not (base_id.startswith("app") and base_id[3:].isalnum()):
            raise ValidationError("A base id starts with “app” (see the base's URL).")
        return base_id


class ColumnFormSet(forms.BaseInlineFormSet):
    """The mapping as a whole: names unique, the merge column mapped from the address."""

    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        columns = [
            (form.cleaned_data["column"], form.cleaned_data["source"])
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE")
        ]
        try:
            airtable_columns_validate(
                columns=columns, merge_column=(self.data.get("merge_column") or "").strip()
            )
        except AirtableConfigError as exc:
            raise ValidationError(exc.message) from None


class ColumnInline(admin.TabularInline):
    model = AirtableExportColumn
    formset = ColumnFormSet
    extra = 1
    fields = ["column", "source"]


@admin.register(AirtableExport)
class AirtableExportAdmin(SuperuserOnlyAdminMixin, admin.ModelAdmin):
    form = AirtableExportForm
    inlines = [ColumnInline]
    list_display = ["name", "base_id", "table_name", "enabled", "every_minutes", "token_set",
                    "last_run_status", "last_run_at"]  # fmt: skip
    list_filter = ["enabled"]
    search_fields = ["name", "base_id", "table_name"]
    filter_horizontal = ["mailboxes"]
    actions = ["export_now", "export_now_full", "test_connection"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[AirtableExport]:
        last = AirtableExportRun.objects.filter(export=OuterRef("pk")).order_by(
            "-started_at", "-pk"
        )
        return (
            super()
            .get_queryset(request)
            .annotate(
                last_status=Subquery(last.values("status")[:1]),
                last_started=Subquery(last.values("started_at")[:1]),
            )
        )

    @admin.display(description="Token", boolean=True)
    def token_set(self, export: AirtableExport) -> bool:
        return bool(export.token)

    @admin.display(description="Last run")
    def last_run_status(self, export: AirtableExport) -> str:
        status = getattr(export, "last_status", None)
        return RunStatus(status).label if status else "-"

    @admin.display(description="Last run started")
    def last_run_at(self, export: AirtableExport) -> Any:
        return getattr(export, "last_started", None)

    def save_model(
        self, request: HttpRequest, obj: AirtableExport, form: Any, change: bool
    ) -> None:
        # Read before saving: afterwards the form no longer knows what changed.
        form.target_changed = change and bool({"base_id", "table_name"} & set(form.changed_data))
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        airtable_export_saved(
            export=form.instance, target_changed=getattr(form, "target_changed", False)
        )

    def delete_model(self, request: HttpRequest, obj: AirtableExport) -> None:
        airtable_export_delete(export=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[AirtableExport]) -> None:
        for export in queryset:
            airtable_export_delete(export=export)

    @admin.action(description="Export now")
    def export_now(self, request: HttpRequest, queryset: QuerySet[AirtableExport]) -> None:
        self._queue(request, queryset, full=False)

    @admin.action(description="Export now, every record (full)")
    def export_now_full(self, request: HttpRequest, queryset: QuerySet[AirtableExport]) -> None:
        self._queue(request, queryset, full=True)

    def _queue(
        self, request: HttpRequest, queryset: QuerySet[AirtableExport], *, full: bool
    ) -> None:
        from cases.tasks import airtable_export

        ids = list(queryset.order_by("pk").values_list("pk", flat=True))
        for export_id in ids:
            transaction.on_commit(lambda e=export_id: airtable_export.delay(e, full))
        self.message_user(
            request,
            f"{len(ids)} export(s) queued; their runs appear under Airtable export runs.",
            messages.SUCCESS,
        )

    @admin.action(description="Test connection (reads one page of the table)")
    def test_connection(self, request: HttpRequest, queryset: QuerySet[AirtableExport]) -> None:
        for export in queryset.order_by("pk"):
            try:
                answer = airtable_export_test_connection(export=export)
            except (AirtableError, AirtableConfigError) as exc:
                self.message_user(request, f"{export.name}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"{export.name}: {answer}", messages.SUCCESS)


@admin.register(AirtableExportRun)
class AirtableExportRunAdmin(SuperuserOnlyAdminMixin, admin.ModelAdmin):
    """Read-only: what each run did, with its progress while it runs."""

    list_display = ["pk", "export", "status", "full", "started_at", "finished_at", "progress",
                    "created", "updated", "unchanged", "requests", "throttled", "errors",
                    "short_error"]  # fmt: skip
    list_display_links = ["pk", "export"]
    list_filter = ["status", "export", "full"]
    list_select_related = ["export"]
    date_hierarchy = "started_at"
    fields = ["export", "status", "full", "started_at", "finished_at", "progress",
              "records_total", "records_done", "created", "updated", "unchanged", "requests",
              "throttled", "errors", "error_message"]  # fmt: skip
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    @admin.display(description="Progress")
    def progress(self, run: AirtableExportRun) -> str:
        return f"{run.records_done:,} / {run.records_total:,}"

    @admin.display(description="Error")
    def short_error(self, run: AirtableExportRun) -> str:
        return run.error_message[:120]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        running = AirtableExportRun.objects.filter(status=RunStatus.RUNNING).exists()
        extra = {**(extra_context or {}), "refresh_seconds": REFRESH_SECONDS if running else 0}
        return super().changelist_view(request, extra_context=extra)
