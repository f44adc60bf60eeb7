"""Periodic work: default schedules installed on migrate, and the heartbeat run by a real worker."""

import time

import pytest
from celery.contrib.testing.worker import start_worker
from django_celery_beat.models import PeriodicTask

from crm.celery import app
from crm.models import Heartbeat
from crm.tasks import heartbeat


@pytest.mark.django_db
def test_migrate_installs_the_heartbeat_schedule_due_at_once():
    task = PeriodicTask.objects.get(name="crm: heartbeat")

    assert task.task == "crm.tasks.heartbeat"
    assert task.enabled is True
    assert task.interval.every == 60
    assert task.start_time is not None


@pytest.mark.django_db
def test_installing_again_keeps_an_admins_edits():
    from crm.schedules import default_schedules
    from crm.services import periodic_tasks_install

    PeriodicTask.objects.filter(name="crm: heartbeat").update(enabled=False)

    created = periodic_tasks_install(specs=default_schedules())

    assert created == 0
    assert PeriodicTask.objects.get(name="crm: heartbeat").enabled is False


@pytest.mark.django_db
def test_heartbeat_task_counts_its_runs():
    heartbeat.apply()
    heartbeat.apply()

    beat = Heartbeat.objects.get(name="beat")
    assert beat.runs == 2
    assert beat.hostname


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_on_redis_runs_the_heartbeat():
    assert app.conf.broker_url.startswith("redis://")

    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        heartbeat.delay()
        deadline = time.monotonic() + 30
        while not Heartbeat.objects.filter(name="beat").exists():
            assert time.monotonic() < deadline, "the worker never ran the heartbeat"
            time.sleep(0.1)

    assert Heartbeat.objects.get(name="beat").runs >= 1
