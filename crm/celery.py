"""The Celery application.

Configuration comes from Django settings (`CELERY_*`). Every task is counted and timed in
Prometheus through the signal handlers in `crm.metrics`; with `CELERY_METRICS_PORT` set the
worker also serves those metrics itself (for deployments where the web process cannot read the
worker's multiprocess files).
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings")

app = Celery("crm")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def _connect_task_metrics(sender: Celery, **kwargs: object) -> None:
    from crm import metrics

    metrics.connect_celery_signals()
