"""Kernel Celery tasks: thin wrappers over services (DESIGN.md habit 4)."""

import smtplib

from celery import shared_task

from crm import alerts, services
from crm.graph import subscriptions


@shared_task(name="crm.tasks.heartbeat", ignore_result=True)
def heartbeat() -> None:
    services.heartbeat_record(name="beat")


@shared_task(name="crm.tasks.subscription_lifecycle", ignore_result=True)
def subscription_lifecycle(subscription_id: int, event: str) -> None:
    """A Graph lifecycle event for one subscription (reauthorize, recreate, or a round)."""
    subscriptions.lifecycle_handle(subscription_id=subscription_id, event=event)


@shared_task(name="crm.tasks.subscriptions_renew", ignore_result=True)
def subscriptions_renew() -> None:
    """Beat, every 12 hours: renew Graph subscriptions that expire within a day."""
    subscriptions.subscriptions_renew_due()


@shared_task(name="crm.tasks.subscriptions_repair", ignore_result=True)
def subscriptions_repair() -> None:
    """Beat, hourly: recreate Graph subscriptions that expired or keep failing."""
    subscriptions.subscriptions_repair()


@shared_task(
    name="crm.tasks.app_secrets_check",
    ignore_result=True,
    autoretry_for=(smtplib.SMTPException, OSError),
    retry_backoff=60,
    retry_backoff_max=3600,
    max_retries=6,
)
def app_secrets_check() -> None:
    """Beat, daily: email admins about app secrets that expire soon or expired (each once).

    Retried when the mail server fails: a missed day could be the last warning before expiry.
    """
    alerts.app_secrets_warn_due()
