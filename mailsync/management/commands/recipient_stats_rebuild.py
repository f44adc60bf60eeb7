"""`manage.py recipient_stats_rebuild [--mailbox ADDRESS]`: sent-mail recipient statistics
rebuilt from Sent Items, for one mailbox or every one."""

from django.core.management.base import BaseCommand, CommandError

from mailsync import services
from mailsync.models import Mailbox, RecipientStat


class Command(BaseCommand):
    help = (
        "Rebuild the sent-mail recipient statistics from each mailbox's Sent Items (or one "
        "mailbox's, by address or id); the incremental updates continue from there."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--mailbox", help="The mailbox's address or id (default: all).")

    def handle(self, *args, mailbox: str | None, **options) -> None:
        mailboxes = Mailbox.objects.order_by("pk")
        if mailbox:
            key = mailbox.strip()
            mailboxes = (
                mailboxes.filter(pk=int(key))
                if key.isascii() and key.isdigit() and len(key) <= 18
                else mailboxes.filter(address__iexact=key)
            )
            if not mailboxes:
                raise CommandError(f"No mailbox {mailbox} is connected.")
        for found in mailboxes:
            rows = services.recipient_stats_rebuild(mailbox_id=found.pk)
            recipients = RecipientStat.objects.filter(mailbox=found).count()
            self.stdout.write(f"{found.address}: {rows} recipient rows, {recipients} recipients")
