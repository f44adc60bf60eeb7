"""Kernel Celery tasks: thin wrappers over services (DESIGN.md habit 4)."""

from celery import shared_task

from crm import services
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
