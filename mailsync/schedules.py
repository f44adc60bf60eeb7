"""Periodic tasks of the mail app (installed on `migrate`, editable in admin)."""

from __future__ import annotations

from django.conf import settings

from crm.schedules import ScheduleSpec


def default_schedules() -> list[ScheduleSpec]:
    return [
        ScheduleSpec(
            name="mailsync: sync mailboxes",
            task="mailsync.tasks.sync_all_mailboxes",
            every_seconds=settings.MAIL_SYNC_INTERVAL_SECONDS,
            description="A Graph delta round for every enabled Microsoft 365 mailbox.",
        ),
        ScheduleSpec(
            name="mailsync: poll folders without notifications",
            task="mailsync.tasks.poll_folders",
            every_seconds=settings.GRAPH_POLL_INTERVAL_SECONDS,
            description="A round for each synced folder that no working change-notification "
            "subscription covers (all of them without PUBLIC_BASE_URL).",
        ),
        ScheduleSpec(
            name="mailsync: sweep the write-back outbox",
            task="mailsync.tasks.sweep_operations",
            every_seconds=60,
            description="Queues the mailboxes whose changes for Microsoft 365 still wait "
            "(a task lost with a crashed worker).",
        ),
        ScheduleSpec(
            name="mailsync: relay queued outbound mail",
            task="mailsync.tasks.sweep_outbound",
            every_seconds=60,
            description="Hands queued mail of local mailboxes to the SMTP relay when its next "
            "attempt is due (retries after a temporary failure, tasks lost with a worker).",
        ),
        ScheduleSpec(
            name="mailsync: check mailbox health",
            task="mailsync.tasks.check_mailbox_health",
            every_seconds=300,
            description="Redeems agents' refresh tokens once a day (finds revoked ones early) "
            "and emails admins about mailboxes that stopped syncing.",
        ),
        ScheduleSpec(
            name="mailsync: requeue spooled mail",
            task="mailsync.tasks.requeue_inbound",
            every_seconds=60,
            description="Queues again the mail the SMTP listener accepted and no worker has "
            "delivered for a minute (a lost task or a crashed worker).",
        ),
        ScheduleSpec(
            name="mailsync: sweep recipient statistics",
            task="mailsync.tasks.sweep_recipient_stats",
            every_seconds=120,
            description="Updates the sent-mail recipient statistics of mailboxes with changes "
            "they have not seen (sync rounds and local delivery update them at once).",
        ),
    ]
