"""`manage.py sync_mail [ADDRESS]`: a sync round now, with progress; non-zero if it failed."""

from django.core.management.base import BaseCommand, CommandError

from crm.errors import ServiceError
from mailsync import services
from mailsync.choices import MailboxKind
from mailsync.models import Mailbox


class Command(BaseCommand):
    help = (
        "Run a Microsoft Graph sync round now for one mailbox (or every enabled Microsoft 365 "
        "mailbox), print progress and what changed; exit status 1 if a round failed."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("address", nargs="?")
        parser.add_argument("--quiet-pages", action="store_true", help="No per-page progress.")

    def handle(self, *args, address: str | None, quiet_pages: bool, **options) -> None:
        mailboxes = Mailbox.objects.filter(kind=MailboxKind.M365).order_by("address")
        if address:
            mailboxes = mailboxes.filter(address__iexact=address.strip())
            if not mailboxes:
                raise CommandError(f"No Microsoft 365 mailbox {address} is connected.")
        else:
            mailboxes = mailboxes.filter(sync_enabled=True)
        failed = False
        for mailbox in mailboxes:
            failed |= self._sync(mailbox, quiet_pages)
        if failed:
            raise CommandError("A sync round failed (see above and the rounds in admin).")

    def _sync(self, mailbox: Mailbox, quiet_pages: bool) -> bool:
        self.stdout.write(f"{mailbox.address}:")
        progress = None if quiet_pages else (lambda line: self.stdout.write(f"  {line}"))
        try:
            result = services.mailbox_sync(mailbox=mailbox, progress=progress)
        except ServiceError as exc:  # e.g. Microsoft 365 not configured
            self.stderr.write(f"  failed: {exc.message}")
            return True
        for sync_round in result.rounds:
            where = sync_round.folder.display_name if sync_round.folder else "folder tree"
            line = (
                f"  {where}: {sync_round.get_kind_display().lower()} {sync_round.status}, "
                f"{sync_round.pages} pages, +{sync_round.added} ~{sync_round.updated} "
                f"-{sync_round.removed}, {sync_round.requests} requests, "
                f"{sync_round.throttled} throttled"
            )
            self.stdout.write(line)
            if sync_round.errors:
                self.stderr.write(f"    {sync_round.errors}")
        for message in result.skipped:
            self.stdout.write(f"  skipped: {message}")
        if result.deleted:
            self.stdout.write(f"  deleted {result.deleted} messages that left their folders")
        return result.failed
