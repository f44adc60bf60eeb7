"""Probes: /healthz says the process is alive, /readyz says its dependencies answer."""

import pytest
from django.test import override_settings

from crm import services


def test_healthz_answers_without_touching_dependencies(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_readyz_reports_every_check_with_timings_against_postgres_and_redis(client):
    services.heartbeat_record(name="beat", hostname="worker-1")

    response = client.get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    checks = body["checks"]
    assert checks["database"]["ok"] is True
    assert checks["database"]["vendor"] == "postgresql"
    assert checks["cache"]["backend"] == "RedisCache"
    assert checks["broker"]["transport"] == "redis"
    for name in ("database", "cache", "broker"):
        assert checks[name]["ms"] >= 0
    assert checks["beat_heartbeat"]["ok"] is True
    assert checks["beat_heartbeat"]["hostname"] == "worker-1"
    assert checks["beat_heartbeat"]["age_seconds"] < 60


@pytest.mark.django_db
def test_readyz_without_heartbeat_is_still_ready_but_says_so(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["checks"]["beat_heartbeat"] == {
        "ok": False,
        "age_seconds": None,
        "detail": "no heartbeat recorded yet",
    }


@pytest.mark.django_db
@override_settings(CELERY_BROKER_URL="redis://127.0.0.1:9/0")
def test_readyz_answers_503_naming_the_broker_when_it_is_down(client):
    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["checks"]["broker"]["ok"] is False
    assert "Error" in body["checks"]["broker"]["error"]
    assert body["checks"]["database"]["ok"] is True


@pytest.mark.django_db
@override_settings(
    CACHES={
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",
        }
    }
)
def test_readyz_answers_503_when_the_cache_is_down(client):
    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["cache"]["ok"] is False
