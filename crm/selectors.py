"""Kernel read queries."""

from __future__ import annotations

import zoneinfo

from django.db import models
from django.db.models import QuerySet
from django.utils import timezone

from crm.choices import Role
from crm.models import AgentProfile, ApiToken, Heartbeat, Team, TeamMembership, User


def team_list(*, user: User) -> QuerySet[Team]:
    """Teams visible to `user`. Every authenticated agent may see every team's name."""
    return Team.objects.all()


def user_is_admin(user: User) -> bool:
    """Admins (role admin, or Django superusers) see and manage everything."""
    if not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    try:
        return user.profile.role == Role.ADMIN
    except AgentProfile.DoesNotExist:
        return False


def user_team_ids(user: User) -> set[int]:
    """Teams the user is a member of, memoised on the user object for the request."""
    cached = getattr(user, "_crm_team_ids", None)
    if cached is None:
        rows = TeamMembership.objects.filter(user_id=user.pk).values_list("team_id", "is_lead")
        cached = dict(rows)
        user._crm_team_ids = cached
    return set(cached)


def user_led_team_ids(user: User) -> set[int]:
    """Teams the user leads (a member with `is_lead`)."""
    user_team_ids(user)
    return {team_id for team_id, is_lead in user._crm_team_ids.items() if is_lead}


def team_members_taking_work(*, team: Team) -> QuerySet[TeamMembership]:
    """Members round-robin may choose: available, not paused; least recently assigned first."""
    return (
        TeamMembership.objects.filter(
            team=team,
            user__is_active=True,
            user__profile__availability="available",
            user__profile__paused=False,
        )
        .select_related("user__profile")
        .order_by(models.F("last_assigned_at").asc(nulls_first=True), "user_id")
    )


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


def agent_timezone(user: User) -> zoneinfo.ZoneInfo:
    """The agent's own time zone (their profile): pages show times in it and read typed times
    in it. UTC for users without a profile, or with a zone this system does not know."""
    try:
        return zoneinfo.ZoneInfo(user.profile.timezone or "UTC")
    except (AgentProfile.DoesNotExist, zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")
