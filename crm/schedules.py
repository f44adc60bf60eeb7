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
        )
    ]
