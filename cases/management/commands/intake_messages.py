"""`manage.py intake_messages [--mailbox ADDRESS] [--limit N]`: run intake now for stored
messages it has not decided yet (after an outage of the worker, or to measure it)."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from cases.models import CaseMessage
from cases.services.intake import message_intake
from mailsync.models import Mailbox, Message

PROGRESS_EVERY = 5_000


class Command(BaseCommand):
    help = "Thread stored messages that intake has not decided yet, oldest first."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--mailbox", help="Only this mailbox's messages.")
        parser.add_argument("--limit", type=int, default=0, help="At most this many.")

    def handle(self, *args, mailbox: str | None, limit: int, **options) -> None:
        pending = Message.objects.filter(folder__isnull=False).exclude(
            pk__in=CaseMessage.objects.values("message_id")
        )
        if mailbox:
            found = Mailbox.objects.filter(address__iexact=mailbox.strip()).first()
            if found is None:
                raise CommandError(f"No mailbox {mailbox} is connected.")
            pending = pending.filter(mailbox=found)
        ids = list(pending.order_by("received_at", "pk").values_list("pk", flat=True))
        if limit:
            ids = ids[:limit]
        started = time.perf_counter()
        outcomes: dict[str, int] = {}
        for done, message_id in enumerate(ids, start=1):
            link = message_intake(message_id=message_id)
            if link is not None:
                outcomes[link.outcome] = outcomes.get(link.outcome, 0) + 1
            if done % PROGRESS_EVERY == 0:
                self.stdout.write(f"  {done:,} of {len(ids):,}")
        seconds = time.perf_counter() - started
        rate = len(ids) / seconds if seconds else 0.0
        summary = ", ".join(f"{name} {count:,}" for name, count in sorted(outcomes.items()))
        self.stdout.write(
            f"Decided {len(ids):,} messages in {seconds:.1f} s ({rate:,.0f}/s): {summary or '-'}"
        )
