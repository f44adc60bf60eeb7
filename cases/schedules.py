"""Periodic tasks of the cases app (installed on `migrate`, editable in admin)."""

from __future__ import annotations

from crm.schedules import ScheduleSpec


def default_schedules() -> list[ScheduleSpec]:
    return [
        ScheduleSpec(
            name="cases: SLA tick",
            task="cases.tasks.sla_tick",
            every_seconds=60,
            description="Moves SLA targets whose time came to at risk or breached, records "
            "each transition on the case and tells the workflow rules (or the assignee).",
        ),
        ScheduleSpec(
            name="cases: workflow sweep",
            task="cases.tasks.workflow_sweep",
            every_seconds=60,
            description="Runs time-based workflow rules and overdue-task rules in bounded "
            "batches, and any rule event whose after-commit run was lost.",
        ),
        ScheduleSpec(
            name="cases: webhook deliveries",
            task="cases.tasks.webhooks_sweep",
            every_seconds=30,
            description="Retries outgoing webhook deliveries whose next attempt is due.",
        ),
        ScheduleSpec(
            name="cases: analytics warm-up",
            task="cases.tasks.analytics_warm",
            every_seconds=300,
            description="Recomputes the dashboard and first report of agents who signed in "
            "recently whose figures changes have moved, so their pages rarely wait.",
        ),
    ]
