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
