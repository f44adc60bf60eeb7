"""Prometheus metrics for HTTP requests, Celery tasks and result caches.

With `PROMETHEUS_MULTIPROC_DIR` set (it must be set before this module is imported, and the
folder emptied when the stack starts), every process writes its samples to files there and
`/metrics` aggregates them, so one scrape sees all web workers and the Celery worker on this
machine. Without it, each process reports only itself.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)

logger = logging.getLogger(__name__)

REQUEST_LATENCY = Histogram(
    "crm_http_request_duration_seconds",
    "Time from request to response, by view.",
    ["view", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5, 10, 30),
)
RESPONSES = Counter(
    "crm_http_responses_total", "HTTP responses by view and status class.", ["view", "status"]
)
EXCEPTIONS = Counter(
    "crm_http_exceptions_total", "Unhandled exceptions raised by views.", ["view", "exception"]
)
TASKS = Counter("crm_celery_tasks_total", "Celery tasks finished, by state.", ["task", "state"])
TASK_DURATION = Histogram(
    "crm_celery_task_duration_seconds",
    "Celery task run time.",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300),
)
# Caches of computed results (the mail list's hot pages, `mailsync.cache`): `result` is hit,
# miss (computed and stored), bypass (the request cannot be cached) or error (the cache did
# not answer; the result was computed).
CACHE_LOOKUPS = Counter(
    "crm_cache_lookups_total", "Lookups in caches of computed results.", ["cache", "result"]
)


def registry() -> CollectorRegistry:
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return REGISTRY
    combined = CollectorRegistry()
    multiprocess.MultiProcessCollector(combined)
    return combined


def metrics_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)


def _view_name(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "<unresolved>"
    return match.view_name or match._func_path


class RequestMetricsMiddleware:
    """Times every request; labels by URL name so cardinality stays bounded."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        view = _view_name(request)
        REQUEST_LATENCY.labels(view, request.method).observe(elapsed)
        RESPONSES.labels(view, f"{response.status_code // 100}xx").inc()
        # Server time for browsers' dev tools and for bench/, which reports it separately.
        response["Server-Timing"] = f"app;dur={elapsed * 1000:.1f}"
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        EXCEPTIONS.labels(_view_name(request), type(exception).__name__).inc()


_task_started: dict[str, float] = {}


def _task_prerun(task_id: str, **kwargs: object) -> None:
    _task_started[task_id] = time.perf_counter()


def _task_postrun(task_id: str, task: object, state: str | None = None, **kwargs: object) -> None:
    name = getattr(task, "name", "unknown")
    started = _task_started.pop(task_id, None)
    if started is not None:
        TASK_DURATION.labels(name).observe(time.perf_counter() - started)
    TASKS.labels(name, state or "UNKNOWN").inc()


def _serve_worker_metrics(**kwargs: object) -> None:
    port = settings.CELERY_METRICS_PORT
    if port:
        start_http_server(port, registry=registry())
        logger.info("worker metrics on port %s", port)


def connect_celery_signals() -> None:
    from celery import signals

    signals.task_prerun.connect(_task_prerun, weak=False)
    signals.task_postrun.connect(_task_postrun, weak=False)
    signals.worker_ready.connect(_serve_worker_metrics, weak=False)
