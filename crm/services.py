"""Kernel write operations (DESIGN.md "Inside an app": one transaction each)."""

from __future__ import annotations

import hashlib
import secrets
import socket
from collections.abc import Iterable
from datetime import datetime

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from crm.models import ApiToken, Heartbeat, Team, User
from crm.schedules import ScheduleSpec

API_TOKEN_BYTES = 32


def api_token_digest(key: str) -> str:
    """Keys are 256 random bits, so a plain SHA-256 is as good as a slow hash and far cheaper."""
    return hashlib.sha256(key.encode()).hexdigest()


@transaction.atomic
def api_token_create(
    *, user: User, name: str, expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """Create a token and return it with its key; the key is shown once and never stored."""
    key = secrets.token_urlsafe(API_TOKEN_BYTES)
    token = ApiToken.objects.create(
        user=user, name=name, prefix=key[:8], digest=api_token_digest(key), expires_at=expires_at
    )
    return token, key


def api_token_revoke(*, token: ApiToken) -> None:
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def api_token_touch(*, token: ApiToken, now: datetime) -> None:
    """Record use at most once a minute, so authenticating does not write on every request."""
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() >= 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now


@transaction.atomic
def team_create(*, name: str, email: str = "") -> Team:
    team, _ = Team.objects.get_or_create(name=name, defaults={"email": email})
    return team


def heartbeat_record(*, name: str, hostname: str | None = None) -> Heartbeat:
    """Note that the periodic job `name` ran now. Idempotent apart from the run counter."""
    now = timezone.now()
    host = hostname or socket.gethostname()
    with transaction.atomic():
        updated = Heartbeat.objects.filter(name=name).update(
            last_run_at=now, hostname=host, runs=F("runs") + 1
        )
        if not updated:
            Heartbeat.objects.get_or_create(
                name=name, defaults={"last_run_at": now, "hostname": host, "runs": 1}
            )
    return Heartbeat.objects.get(name=name)


@transaction.atomic
def periodic_tasks_install(*, specs: Iterable[ScheduleSpec], using: str = "default") -> int:
    """Create the periodic tasks that do not exist yet; existing ones keep an admin's edits.

    A new task starts now, so beat runs it at once instead of one interval later.
    """
    created = 0
    for spec in specs:
        interval, _ = IntervalSchedule.objects.using(using).get_or_create(
            every=spec.every_seconds, period=IntervalSchedule.SECONDS
        )
        _, was_created = PeriodicTask.objects.using(using).get_or_create(
            name=spec.name,
            defaults={
                "task": spec.task,
                "interval": interval,
                "description": spec.description,
                "start_time": timezone.now(),
            },
        )
        created += was_created
    return created
