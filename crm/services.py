"""Kernel write operations (DESIGN.md "Inside an app": one transaction each)."""

from __future__ import annotations

import hashlib
import secrets
import socket
from collections.abc import Iterable
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from crm.choices import Role
from crm.errors import ServiceError
from crm.models import AgentProfile, ApiToken, Heartbeat, Team, TeamMembership, User
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


@transaction.atomic
def agent_upsert(
    *,
    email: str,
    password: str | None = None,
    team: Team | None = None,
    role: str = Role.AGENT,
    first_name: str = "",
    last_name: str = "",
) -> tuple[User, bool]:
    """Create or update an agent who can sign in at once.

    The address is verified for allauth (no confirmation mail), MFA is left to the agent.
    Leads and admins get Django admin access: admins as superusers, leads through the "Leads"
    group, which the restricted admin scopes to the teams they lead. Returns (user, created).
    """
    from allauth.account.models import EmailAddress
    from django.contrib.auth.models import Group

    if role not in Role.values:
        raise ValueError(f"Unknown role {role!r}; choose one of {', '.join(Role.values)}.")
    user = User.objects.filter(email__iexact=email).first()
    created = user is None
    if created:
        user = User.objects.create_user(email=email, first_name=first_name, last_name=last_name)
    elif first_name or last_name:
        user.first_name, user.last_name = first_name or user.first_name, last_name or user.last_name
    if password:
        user.set_password(password)
    user.is_staff = role in (Role.LEAD, Role.ADMIN)
    user.is_superuser = role == Role.ADMIN
    user.save()
    AgentProfile.objects.update_or_create(user=user, defaults={"role": role})
    leads_group, _ = Group.objects.get_or_create(name=LEADS_GROUP)
    if role == Role.LEAD:
        user.groups.add(leads_group)
    else:
        user.groups.remove(leads_group)
    EmailAddress.objects.filter(user=user).exclude(email__iexact=user.email).update(primary=False)
    EmailAddress.objects.update_or_create(
        user=user, email=user.email, defaults={"verified": True, "primary": True}
    )
    if team is not None:
        team_membership_set(team=team, user=user, is_lead=role == Role.LEAD)
    return user, created


LEADS_GROUP = "Leads"


@transaction.atomic
def team_membership_set(*, team: Team, user: User, is_lead: bool = False) -> TeamMembership:
    membership, _ = TeamMembership.objects.update_or_create(
        team=team, user=user, defaults={"is_lead": is_lead}
    )
    return membership


def team_membership_remove(*, team: Team, user: User) -> None:
    TeamMembership.objects.filter(team=team, user=user).delete()


def agent_set_paused(*, agent: User, paused: bool) -> AgentProfile:
    """A lead pauses or resumes an agent for round-robin."""
    profile, _ = AgentProfile.objects.update_or_create(user=agent, defaults={"paused": paused})
    return profile


PROFILE_FIELDS_AGENTS_SET = (
    "signature",
    "timezone",
    "availability",
    "notify_assigned",
    "notify_mentioned",
    "notify_customer_reply",
    "notify_sla_risk",
)


@transaction.atomic
def agent_profile_update(*, profile: AgentProfile, **changes: object) -> AgentProfile:
    """Change what an agent may set on their own profile (their profile page).

    Role, pause and capacity are a lead's or an admin's to set, so they are refused here. An
    agent created without a profile gets one on their first save.
    """
    unknown = set(changes) - set(PROFILE_FIELDS_AGENTS_SET)
    if unknown:
        raise ServiceError(f"Cannot change {', '.join(sorted(unknown))} here.")
    for field, value in changes.items():
        setattr(profile, field, value)
    try:
        profile.full_clean(exclude=["user"])
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        raise ServiceError(" ".join(messages), field=field) from exc
    if profile.pk is None:
        profile.save()
    elif changes:
        # Only these columns: a lead may be pausing the agent at this very moment.
        profile.save(update_fields=list(changes))
    return profile


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
