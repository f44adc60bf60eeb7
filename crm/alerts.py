"""Alerts to the people who run the CRM: emails to admins and notices on the admin index.

`email_admins` is the one way the kernel and the apps (mailbox sync health, app secrets) mail
the admins. Admin-index notices come from providers registered with `admin_notice_provider`,
so an app can add its own without touching the template (`templates/admin/index.html`).

App-secret expiry lives here too: Microsoft Entra ID client secrets expire and nothing tells
the CRM, so admins record each secret's expiry (`GraphAppSecret`) and a daily job emails them
at the thresholds of `APP_SECRET_WARN_DAYS`, each once per expiry, and once when it expired.
"""

from __future__ import annotations

import enum
import functools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from crm.models import GraphAppSecret, User

logger = logging.getLogger(__name__)


# --- email to admins ----------------------------------------------------------------------------


def _admins_setting() -> list[str]:
    """Addresses of settings.ADMINS, which Django 5.2 spells as (name, address) pairs and 6.0
    as plain addresses; both are accepted so an upgrade does not silence alerts."""
    addresses = []
    for entry in settings.ADMINS:
        address = entry if isinstance(entry, str) else entry[1]
        if address:
            addresses.append(address)
    return addresses


def admin_recipients() -> list[str]:
    """Every active superuser with an address, then settings.ADMINS; each address once,
    compared case-insensitively (the first spelling wins)."""
    superusers = (
        User.objects.filter(is_active=True, is_superuser=True)
        .exclude(email="")
        .order_by("pk")
        .values_list("email", flat=True)
    )
    recipients: list[str] = []
    seen: set[str] = set()
    for address in [*superusers, *_admins_setting()]:
        address = address.strip()
        if address and address.lower() not in seen:
            seen.add(address.lower())
            recipients.append(address)
    return recipients


def email_admins(subject: str, body: str) -> int:
    """Send one email to all admins; returns how many recipients it had.

    Like Django's `mail_admins` (subject prefixed with EMAIL_SUBJECT_PREFIX) but it also
    reaches superusers, who are the CRM's admins far more often than settings.ADMINS is set.
    With nobody to write to it logs a warning and returns 0 instead of failing, so a caller can
    decide whether an alert nobody received counts as sent. Errors of the mail server
    propagate: callers are tasks that retry.
    """
    recipients = admin_recipients()
    subject = " ".join(f"{settings.EMAIL_SUBJECT_PREFIX}{subject}".split())  # no header breaks
    if not recipients:
        logger.warning("No admin has an email address; alert not sent: %s", subject)
        return 0
    connection = get_connection(timeout=settings.EMAIL_TIMEOUT)
    message = EmailMessage(
        subject=subject,
        body=body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
        connection=connection,
    )
    message.send()
    return len(recipients)


# --- app secrets --------------------------------------------------------------------------------


class SecretState(enum.StrEnum):
    OK = "ok"
    EXPIRES_SOON = "expires soon"
    EXPIRED = "expired"


def warn_days() -> list[int]:
    """The warning thresholds in days, largest first; zero and negative values are ignored."""
    return sorted(
        {int(days) for days in settings.APP_SECRET_WARN_DAYS if int(days) > 0}, reverse=True
    )


def app_secret_state(*, expires_at: datetime, now: datetime | None = None) -> SecretState:
    """Expired, within the first (largest) warning threshold, or fine."""
    remaining = expires_at - (now or timezone.now())
    if remaining <= timedelta(0):
        return SecretState.EXPIRED
    thresholds = warn_days()
    if thresholds and remaining <= timedelta(days=thresholds[0]):
        return SecretState.EXPIRES_SOON
    return SecretState.OK


def days_left(*, expires_at: datetime, now: datetime | None = None) -> int:
    """Whole days until expiry (negative once expired), as the admin list shows them."""
    return (expires_at - (now or timezone.now())).days


@transaction.atomic
def app_secret_save(*, secret: GraphAppSecret) -> GraphAppSecret:
    """Create or update a secret's record (validated by the caller, e.g. the admin form).

    A changed expiry is a different secret (the next rotation, or a corrected date the last
    emails got wrong), so the warnings already sent are forgotten and the new expiry is warned
    about from its first threshold on.
    """
    if secret.pk is not None:
        stored = GraphAppSecret.objects.select_for_update().filter(pk=secret.pk).first()
        if stored is not None and stored.expires_at != secret.expires_at:
            secret.warned_days = []
            secret.expired_warned_at = None
    secret.save()
    return secret


def _due_warning(secret: GraphAppSecret, *, now: datetime) -> int | SecretState | None:
    """What to warn about now: SecretState.EXPIRED, the smallest threshold crossed and not
    warned about yet, or None. Crossing several thresholds between two runs gives one email."""
    remaining = secret.expires_at - now
    if remaining <= timedelta(0):
        return SecretState.EXPIRED if secret.expired_warned_at is None else None
    crossed = [days for days in warn_days() if remaining <= timedelta(days=days)]
    if not crossed or min(crossed) in secret.warned_days:
        return None
    return min(crossed)


def _in_words(remaining: timedelta) -> str:
    if remaining >= timedelta(days=2):
        return f"in {remaining.days} days"
    if remaining >= timedelta(days=1):
        return "in 1 day"
    hours = int(remaining.total_seconds() // 3600)
    return f"in {hours} hours" if hours >= 2 else "within the hour"


def _admin_url(secret: GraphAppSecret) -> str:
    path = reverse("admin:crm_graphappsecret_change", args=[secret.pk])
    return f"{settings.PUBLIC_BASE_URL}{path}"


def _utc(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def app_secret_warning_email(secret: GraphAppSecret, *, now: datetime) -> tuple[str, str]:
    """Subject and body of the warning: which app and secret, when, and what to do."""
    remaining = secret.expires_at - now
    if remaining <= timedelta(0):
        subject = f"Microsoft 365 app secret “{secret.label}” has expired"
        when = f"expired on {_utc(secret.expires_at)}"
        impact = (
            "The CRM can no longer sign in to Microsoft Graph with it: mail sync, calendars "
            "and sign-in with Microsoft fail until a new secret is in place."
        )
    else:
        subject = f"Microsoft 365 app secret “{secret.label}” expires {_in_words(remaining)}"
        when = f"expires {_in_words(remaining)}, on {_utc(secret.expires_at)}"
        impact = (
            "When it expires the CRM can no longer sign in to Microsoft Graph: mail sync, "
            "calendars and sign-in with Microsoft stop."
        )
    stored = f" (stored: {secret.note.strip()})" if secret.note.strip() else ""
    body = (
        f"The client secret “{secret.label}” of the Microsoft Entra app registration "
        f"{secret.client_id} {when}.\n{impact}\n\n"
        "What to do:\n"
        "1. In the Microsoft Entra admin center open Entra ID > App registrations > "
        f"{secret.client_id} > Certificates & secrets and create a new client secret.\n"
        f"2. Put its value in MS_CLIENT_SECRET{stored} and restart the web and worker "
        "processes.\n"
        f"3. Enter the new secret's expiry here: {_admin_url(secret)}\n"
        "   (the warnings start again for the new date).\n"
        "4. Once the CRM works with the new secret, delete the old one in Entra ID.\n"
    )
    return subject, body


def app_secret_warn(*, secret_id: int, now: datetime | None = None) -> bool:
    """Email the admins about one secret if a warning is due; True when one went out.

    Takes the row with `select_for_update(skip_locked=True)` so two workers never both send;
    the email goes out while the row is locked and is recorded only after it was sent, so a
    failing mail server means a retry, never a lost warning. A warning nobody could receive
    (no admin address) is not recorded either: the next run tries again and logs again.
    """
    now = now or timezone.now()
    with transaction.atomic():
        secret = (
            GraphAppSecret.objects.select_for_update(skip_locked=True).filter(pk=secret_id).first()
        )
        if secret is None:
            return False
        due = _due_warning(secret, now=now)
        if due is None:
            return False
        if not email_admins(*app_secret_warning_email(secret, now=now)):
            return False
        if due == SecretState.EXPIRED:
            secret.expired_warned_at = now
        else:
            crossed = [days for days in warn_days() if days >= due]
            secret.warned_days = sorted({*secret.warned_days, *crossed}, reverse=True)
        secret.last_warned_at = now
        secret.save(update_fields=["warned_days", "expired_warned_at", "last_warned_at"])
    logger.info("Warned admins about app secret %s: %s", secret_id, due)
    return True


def app_secrets_warn_due(*, now: datetime | None = None) -> int:
    """Warn about every secret that has a warning due (beat, daily); returns emails sent.

    Idempotent: each secret is handled in its own transaction, so a retry after a failure
    sends only what was not recorded yet.
    """
    now = now or timezone.now()
    horizon = now + timedelta(days=max(warn_days(), default=0))
    candidates = (
        GraphAppSecret.objects.filter(expires_at__lte=horizon, expired_warned_at__isnull=True)
        .order_by("expires_at")
        .values_list("pk", flat=True)
    )
    return sum(app_secret_warn(secret_id=pk, now=now) for pk in list(candidates))


def app_secrets_report(*, now: datetime | None = None) -> dict[str, Any]:
    """A summary for `/readyz`: counts by state and the next expiry, no labels or client ids
    (the probe is public). `ok` is false once a secret has expired."""
    now = now or timezone.now()
    expiries = list(GraphAppSecret.objects.values_list("expires_at", flat=True))
    states = [app_secret_state(expires_at=expires_at, now=now) for expires_at in expiries]
    upcoming = [expires_at for expires_at in expiries if expires_at > now]
    report: dict[str, Any] = {
        "ok": SecretState.EXPIRED not in states,
        "recorded": len(expiries),
        "expired": states.count(SecretState.EXPIRED),
        "expiring_soon": states.count(SecretState.EXPIRES_SOON),
        "next_expiry": min(upcoming).isoformat() if upcoming else None,
        "days_left": days_left(expires_at=min(upcoming), now=now) if upcoming else None,
    }
    if not expiries and settings.MS_CLIENT_SECRET:
        report["detail"] = "MS_CLIENT_SECRET is set but its expiry is not recorded in admin"
    return report


# --- notices on the admin index -----------------------------------------------------------------


@dataclass(frozen=True)
class AdminNotice:
    """One line of the notice box above the admin index's app list."""

    level: str  # a class of Django admin's message list: "warning" or "error"
    text: str
    url: str = ""
    link_text: str = ""


NoticeProvider = Callable[[HttpRequest], Iterable[AdminNotice]]
NOTICE_PROVIDERS: list[NoticeProvider] = []


def admin_notice_provider(provider: NoticeProvider) -> NoticeProvider:
    """Register a function that returns the notices a request's user should see."""
    NOTICE_PROVIDERS.append(provider)
    return provider


def collect_admin_notices(request: HttpRequest) -> list[AdminNotice]:
    return [notice for provider in NOTICE_PROVIDERS for notice in provider(request)]


def admin_notices(request: HttpRequest) -> dict[str, object]:
    """Context processor: `crm_admin_notices` is a callable, so the template engine runs the
    queries only where a template uses it (the admin index); other pages pay nothing."""
    return {"crm_admin_notices": functools.partial(collect_admin_notices, request)}


@admin_notice_provider
def app_secret_notices(request: HttpRequest) -> list[AdminNotice]:
    """Secrets that expired or expire within the first threshold, for those who may see them."""
    if not request.user.has_perm("crm.view_graphappsecret"):
        return []
    now = timezone.now()
    horizon = now + timedelta(days=max(warn_days(), default=0))
    notices = []
    for secret in GraphAppSecret.objects.filter(expires_at__lte=horizon).order_by("expires_at"):
        remaining = secret.expires_at - now
        when = timezone.localtime(secret.expires_at).strftime("%Y-%m-%d %H:%M %Z")
        if remaining <= timedelta(0):
            level = "error"
            text = (
                f"The Microsoft 365 app secret “{secret.label}” (app {secret.client_id}) expired "
                f"on {when}: Graph mail sync and sign-in with Microsoft fail until a new secret "
                "is in MS_CLIENT_SECRET."
            )
        else:
            level = "warning"
            text = (
                f"The Microsoft 365 app secret “{secret.label}” (app {secret.client_id}) expires "
                f"{_in_words(remaining)}, on {when}: create a new one in Entra ID > App "
                "registrations > Certificates & secrets and put it in MS_CLIENT_SECRET."
            )
        url = reverse("admin:crm_graphappsecret_change", args=[secret.pk])
        notices.append(AdminNotice(level, text, url, "Enter the new expiry"))
    return notices
