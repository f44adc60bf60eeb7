"""`manage.py airtable_export [--config NAME] [--full]`: run Airtable exports now, with a
progress bar (every enabled export without --config)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from cases.airtable.choices import RunStatus
from cases.airtable.services import AirtableExportBusy, airtable_export_run
from cases.models import AirtableExport


class Command(BaseCommand):
    help = "Send the recipient statistics that changed to Airtable, now."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--config", metavar="NAME", help="Only this export (by name).")
        parser.add_argument(
            "--full", action="store_true",
            help="Send every record, changed or not (after the table was emptied).",
        )  # fmt: skip
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args, config: str | None, full: bool, no_progress: bool, **options) -> None:
        if config:
            exports = list(AirtableExport.objects.filter(name=config))
            if not exports:
                names = ", ".join(AirtableExport.objects.values_list("name", flat=True))
                raise CommandError(
                    f"No Airtable export named “{config}” (exports: {names or 'none'})."
                )
        else:
            exports = list(AirtableExport.objects.filter(enabled=True))
            if not exports:
                raise CommandError("No enabled Airtable export.")
        failed = []
        for export in exports:
            run = self._run(export, full=full, show=not no_progress)
            if run is None or run.status != RunStatus.SUCCEEDED:
                failed.append(export.name)
        if failed:
            raise CommandError(f"Failed: {', '.join(failed)}.")

    def _run(self, export: AirtableExport, *, full: bool, show: bool):
        bar = tqdm(desc=export.name, unit="record", disable=not show, file=self.stderr._out)

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        try:
            run = airtable_export_run(config_id=export.pk, full=full, progress=progress)
        except AirtableExportBusy as exc:
            self.stderr.write(exc.message)
            return None
        finally:
            bar.close()
        summary = (
            f"{export.name}: {run.get_status_display().lower()}; created {run.created:,}, "
            f"updated {run.updated:,}, unchanged {run.unchanged:,}; {run.requests:,} "
            f"request(s), {run.throttled:,} 429(s), {run.errors:,} error(s)"
        )
        if run.status == RunStatus.SUCCEEDED:
            self.stdout.write(summary)
        else:
            self.stderr.write(f"{summary}\n  {run.error_message}")
        return run
