"""Celery tasks of the cases app: thin wrappers over services (DESIGN.md habit 4)."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from cases.services.intake import message_intake


@shared_task(
    name="cases.tasks.intake_message",
    ignore_result=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
)
def intake_message(message_id: int) -> None:
    """Thread one stored message into its case. Idempotent: a message already decided is left
    as it is, so a redelivered or retried task changes nothing."""
    message_intake(message_id=message_id)
