"""Kernel Celery tasks: thin wrappers over services (DESIGN.md habit 4)."""

from celery import shared_task

from crm import services


@shared_task(name="crm.tasks.heartbeat", ignore_result=True)
def heartbeat() -> None:
    services.heartbeat_record(name="beat")
