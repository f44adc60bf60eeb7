"""Liveness and readiness probes.

`/healthz` says only that the process answers. `/readyz` answers 200 when the database, the
cache and the Celery broker answer, 503 otherwise; it also reports the age of the last beat
heartbeat, which does not decide readiness (a web process can serve while beat is down) but
tells an operator at a glance whether scheduled work is running.

It also summarises the Microsoft 365 app secrets whose expiry admins recorded
(`crm.alerts.app_secrets_report`): `ok` turns false once one has expired, yet readiness never
depends on it. Taking the web process out of a load balancer would not bring the secret back;
it would only add an outage of the agents' UI to the outage of Graph sync. The report names no
secret and no client id, because the probe answers without authentication.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from kombu import Connection

from crm import alerts, selectors

CHECK_TIMEOUT_SECONDS = 3


def _check_database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"vendor": connection.vendor}


def _check_cache() -> dict[str, Any]:
    value = secrets.token_hex(8)
    cache.set("readyz:probe", value, timeout=30)
    if cache.get("readyz:probe") != value:
        raise RuntimeError("cache did not return the value just written")
    return {"backend": settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]}


def _check_broker() -> dict[str, Any]:
    url = settings.CELERY_BROKER_URL
    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {})
    with Connection(url, connect_timeout=CHECK_TIMEOUT_SECONDS, transport_options=options) as conn:
        conn.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_SECONDS)
        transport = conn.transport_cls
    return {"transport": str(transport)}


CHECKS: dict[str, Callable[[], dict[str, Any]]] = {
    "database": _check_database,
    "cache": _check_cache,
    "broker": _check_broker,
}


def _run(check: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        result = {"ok": True, **check()}
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", reported as text
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    result["ms"] = round((time.perf_counter() - started) * 1000, 2)
    return result


def _heartbeat_report() -> dict[str, Any]:
    try:
        beat = selectors.heartbeat_get(name="beat")
    except Exception as exc:  # noqa: BLE001 - the database check reports the cause
        return {"ok": False, "error": type(exc).__name__}
    if beat is None:
        return {"ok": False, "age_seconds": None, "detail": "no heartbeat recorded yet"}
    age = (timezone.now() - beat.last_run_at).total_seconds()
    return {
        "ok": age <= 3 * settings.HEARTBEAT_INTERVAL_SECONDS,
        "age_seconds": round(age, 1),
        "last_run_at": beat.last_run_at.isoformat(),
        "hostname": beat.hostname,
        "runs": beat.runs,
    }


def _app_secrets_report() -> dict[str, Any]:
    try:
        return alerts.app_secrets_report()
    except Exception as exc:  # noqa: BLE001 - the database check reports the cause
        return {"ok": False, "error": type(exc).__name__}


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    checks = {name: _run(check) for name, check in CHECKS.items()}
    ready = all(result["ok"] for result in checks.values())
    checks["beat_heartbeat"] = _heartbeat_report()
    checks["app_secrets"] = _app_secrets_report()
    body = {"status": "ok" if ready else "fail", "checks": checks}
    return JsonResponse(body, status=200 if ready else 503)
