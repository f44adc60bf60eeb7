"""Kernel read queries."""

from __future__ import annotations

from django.db.models import QuerySet
from django.utils import timezone

from crm.models import ApiToken, Heartbeat, Team, User


def team_list(*, user: User) -> QuerySet[Team]:
    """Teams visible to `user`. Every authenticated agent may see every team's name."""
    return Team.objects.all()


def api_token_get_active(*, digest: str) -> ApiToken | None:
    now = timezone.now()
    token = (
        ApiToken.objects.select_related("user")
        .filter(digest=digest, revoked_at__isnull=True)
        .first()
    )
    if token is None or (token.expires_at is not None and token.expires_at <= now):
        return None
    return token


def heartbeat_get(*, name: str) -> Heartbeat | None:
    return Heartbeat.objects.filter(name=name).first()
