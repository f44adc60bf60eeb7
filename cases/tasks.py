"""Celery tasks of the cases app: thin wrappers over services (DESIGN.md habit 4)."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from cases.choices import IntakeOutcome
from cases.services.intake import message_intake
from cases.services.replies import auto_ack_send
from cases.services.triage import triage_with_llm


@shared_task(
    name="cases.tasks.intake_message",
    ignore_result=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
)
def intake_message(message_id: int) -> None:
    """Thread one stored message into its case. Idempotent: a message already decided is left
    as it is, so a redelivered or retried task changes nothing. A new case is acknowledged to
    its customer in a task of its own (sending may wait on Graph or the relay)."""
    record = message_intake(message_id=message_id)
    if record is not None and record.outcome == IntakeOutcome.NEW_CASE:
        send_auto_ack.delay(record.case_id)


@shared_task(name="cases.tasks.send_auto_ack", ignore_result=True, max_retries=3)
def send_auto_ack(case_id: int) -> None:
    """The team's acknowledgement of a new case; sent at most once (see the service)."""
    auto_ack_send(case_id=case_id)


@shared_task(
    name="cases.tasks.triage_llm",
    ignore_result=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
)
def triage_llm(case_id: int) -> None:
    """The language model's triage of a new case (queued after commit by `case_create`).
    Idempotent; the model's failures are recorded on the case, not retried: the built-in
    result stands."""
    triage_with_llm(case_id=case_id)


@shared_task(name="cases.tasks.sla_recompute", ignore_result=True)
def sla_recompute() -> None:
    """Recompute every open case's SLA deadlines (after a policy or calendar change)."""
    from cases.services.sla import sla_recompute_all

    sla_recompute_all()


@shared_task(name="cases.tasks.sla_tick", ignore_result=True)
def sla_tick() -> None:
    """Beat, every minute: SLA targets whose time came move to at risk or breached."""
    from cases.services.sla import sla_tick as tick

    tick()


# --- workflow rules (cases.workflow) -------------------------------------------------------------


@shared_task(
    name="cases.tasks.workflow_process",
    ignore_result=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
)
def workflow_process(event_ids: list[int]) -> None:
    """Run the rules for recorded events (SLA transitions, overdue tasks, time-based rules).
    Idempotent: an event already processed is skipped."""
    from cases.workflow.engine import workflow_process_event

    for event_id in event_ids:
        workflow_process_event(event_id=event_id)


@shared_task(name="cases.tasks.workflow_sweep", ignore_result=True)
def workflow_sweep() -> None:
    """Beat, every minute: events whose after-commit run was lost (a crashed process) run now;
    time-based rules and overdue tasks are checked, in bounded batches."""
    from cases.workflow.engine import workflow_process_stale
    from cases.workflow.timed import workflow_run_timed

    workflow_process_stale()
    if workflow_run_timed().more:
        workflow_sweep.apply_async(countdown=1)


@shared_task(
    name="cases.tasks.workflow_email_customer",
    ignore_result=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
)
def workflow_email_customer(run_id: int, position: int, subject: str, body_html: str) -> None:
    """A rule's email to the customer, sent after the rule's transaction (sending may wait on
    Graph or the relay); the outcome is written into the rule's execution log."""
    from cases.workflow.actions import email_customer_send

    email_customer_send(run_id=run_id, position=position, subject=subject, body_html=body_html)


@shared_task(name="cases.tasks.webhook_deliver", ignore_result=True)
def webhook_deliver(delivery_id: int) -> None:
    """One attempt at a webhook delivery; a failure schedules the next attempt (backoff), which
    `webhooks_sweep` makes."""
    from cases.workflow.webhooks import webhook_deliver as deliver

    deliver(delivery_id=delivery_id)


@shared_task(name="cases.tasks.webhooks_sweep", ignore_result=True)
def webhooks_sweep() -> None:
    """Beat, every 30 seconds: webhook deliveries whose next attempt is due."""
    from cases.workflow.webhooks import webhooks_deliver_due

    webhooks_deliver_due()


# --- Airtable export (cases.airtable) ------------------------------------------------------------


@shared_task(name="cases.tasks.airtable_export", ignore_result=True)
def airtable_export(export_id: int, full: bool = False) -> None:
    """Beat (every export's own schedule) or "Export now" in admin: one run of the export.
    Not retried: a failed run is recorded with its reason and the next run resumes where it
    stopped; a run already going for the export makes this one a no-op."""
    import logging

    from cases.airtable.services import AirtableExportBusy, airtable_export_run
    from cases.models import AirtableExport

    try:
        airtable_export_run(config_id=export_id, full=full)
    except AirtableExportBusy as exc:
        logging.getLogger(__name__).info("%s", exc.message)
    except AirtableExport.DoesNotExist:
        return


@shared_task(name="cases.tasks.analytics_warm", ignore_result=True)
def analytics_warm() -> None:
    # Imported here: the figures are the pages' (cases.web), which the worker need not load
    # for its other tasks.
    from cases.web.warmup import analytics_warm_recent

    analytics_warm_recent()
