"""Periodic tasks the kernel installs by default (django-celery-beat rows, editable in admin).

Each app that needs schedules keeps a module like this one and installs it from its own
`post_migrate` handler through `crm.services.periodic_tasks_install`.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    task: str
    every_seconds: int
    description: str = ""


def default_schedules() -> list[ScheduleSpec]:
    return [
        ScheduleSpec(
            name="crm: heartbeat",
            task="crm.tasks.heartbeat",
            every_seconds=settings.HEARTBEAT_INTERVAL_SECONDS,
            description="Proves beat and a worker are alive; /readyz shows its age.",
        ),
        ScheduleSpec(
            name="crm: renew Graph subscriptions",
            task="crm.tasks.subscriptions_renew",
            every_seconds=12 * 3600,
            description="Renews change-notification subscriptions expiring within a day.",
        ),
        ScheduleSpec(
            name="crm: repair Graph subscriptions",
            task="crm.tasks.subscriptions_repair",
            every_seconds=3600,
            description="Recreates subscriptions that expired, were removed or keep failing.",
        ),
        ScheduleSpec(
            name="crm: warn before app secrets expire",
            task="crm.tasks.app_secrets_check",
            every_seconds=24 * 3600,
            description="Emails admins at APP_SECRET_WARN_DAYS before a recorded Microsoft "
            "365 app secret expires, and once when it has.",
        ),
    ]
