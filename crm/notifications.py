"""Notifications: tell agents what concerns them, under the bell in the web UI and by email.

Apps call `notify` (or `notify_many` for several different messages at once) from their
services, inside the transaction of the change they report; they pass what to say and to whom,
and this module decides how it is delivered:

- **In app, always.** Every active recipient except the actor gets a `Notification` row. The
  profile's preferences ("Email me when …") govern email only: the bell costs the agent
  nothing, and an agent who turned email off still needs to find out that a case was given
  to them.
- **By email, per preference.** Those whose profile asks for that kind are emailed after the
  transaction commits (`transaction.on_commit`), in one `send_mass_mail` batch; a failure is
  logged and leaves `emailed_at` empty, never undoing or failing the change that notified.
- **Live, to open pages.** After commit the recipient's sockets hear the new unread count and
  the newest title (`crm.live`: the bell and a toast); marking read sends the count alone.

The selectors at the end are the only way entry points (API, web, the bell) read them.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Literal

from django.conf import settings
from django.core.mail import send_mass_mail
from django.db import transaction
from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone

from crm import live
from crm.models import AgentProfile, Notification, NotificationKind, User

logger = logging.getLogger(__name__)

# Which profile switch decides whether a kind is emailed. Both SLA kinds follow "SLA at risk".
EMAIL_PREFERENCE = {
    NotificationKind.ASSIGNED: "notify_assigned",
    NotificationKind.MENTIONED: "notify_mentioned",
    NotificationKind.CUSTOMER_REPLY: "notify_customer_reply",
    NotificationKind.SLA_AT_RISK: "notify_sla_risk",
    NotificationKind.SLA_BREACHED: "notify_sla_risk",
}
TITLE_MAX = Notification._meta.get_field("title").max_length
BODY_MAX = Notification._meta.get_field("body").max_length
URL_MAX = Notification._meta.get_field("url").max_length


@dataclass(frozen=True)
class Draft:
    """One notification for one recipient, before delivery. `recipient` is a user or their id."""

    recipient: User | int
    kind: str
    title: str
    body: str = ""
    url: str = ""


def notify(
    *,
    recipients: Iterable[User | int],
    kind: str,
    title: str,
    body: str = "",
    url: str = "",
    actor: User | None = None,
) -> list[Notification]:
    """Tell each recipient the same thing. See the module docstring for how it is delivered.

    Precondition: called inside the transaction of the change it reports (or in autocommit,
    after it), so the rows commit or roll back with it. Costs no query with no recipients left.
    """
    drafts = [Draft(recipient=r, kind=kind, title=title, body=body, url=url) for r in recipients]
    return notify_many(drafts=drafts, actor=actor)


def notify_many(*, drafts: Iterable[Draft], actor: User | None = None) -> list[Notification]:
    """Deliver several different notifications in one insert and one email batch.

    Inactive users and the actor (nobody is told about their own action) are skipped; one
    query loads the recipients with their preferences, one inserts the rows.
    """
    actor_id = actor.pk if actor is not None else None
    drafts = [d for d in drafts if _user_id(d.recipient) not in (None, actor_id)]
    if not drafts:
        return []
    users = {
        user.pk: user
        for user in User.objects.filter(
            pk__in={_user_id(d.recipient) for d in drafts}, is_active=True
        ).select_related("profile")
    }
    rows = [
        Notification(
            recipient=users[_user_id(d.recipient)],
            kind=d.kind,
            title=_clip(d.title, TITLE_MAX),
            body=_clip(d.body, BODY_MAX),
            url=d.url[:URL_MAX],
        )
        for d in drafts
        if _user_id(d.recipient) in users
    ]
    if not rows:
        return []
    Notification.objects.bulk_create(rows)
    transaction.on_commit(lambda: live.notifications_publish(rows=rows), robust=True)
    to_email = [row for row in rows if row.recipient.email and _wants_email(row)]
    if to_email:
        transaction.on_commit(lambda: _send_emails(to_email), robust=True)
    return rows


def notifications_mark_read(*, user: User, ids: Collection[int] | Literal["all"]) -> int:
    """Mark the user's own unread notifications read: those listed, or all of them.

    Ids of other users' notifications are ignored, never an error (nothing about them is
    revealed). Returns how many changed.
    """
    unread = Notification.objects.filter(recipient=user, read_at__isnull=True)
    if ids != "all":
        if not ids:
            return 0
        unread = unread.filter(pk__in=ids)
    changed = unread.update(read_at=timezone.now())
    if changed:
        transaction.on_commit(
            lambda: live.unread_publish(user_id=user.pk, unread=unread_count(user)), robust=True
        )
    return changed


def _user_id(recipient: User | int | None) -> int | None:
    return recipient if isinstance(recipient, int) or recipient is None else recipient.pk


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _wants_email(row: Notification) -> bool:
    """An agent without a profile (a bare superuser) gets the defaults, which are on."""
    field = EMAIL_PREFERENCE.get(row.kind)
    if field is None:
        return False
    try:
        profile = row.recipient.profile
    except AgentProfile.DoesNotExist:
        return AgentProfile._meta.get_field(field).default
    return getattr(profile, field)


def _send_emails(rows: list[Notification]) -> None:
    """After commit: one batch over one connection; failures are logged, not raised."""
    try:
        messages = [
            (
                f"{settings.EMAIL_SUBJECT_PREFIX}{row.title}",
                _email_text(row),
                settings.DEFAULT_FROM_EMAIL,
                [row.recipient.email],
            )
            for row in rows
        ]
        send_mass_mail(messages, fail_silently=False)
    except Exception:
        logger.exception("notifications: could not email %d notification(s)", len(rows))
        return
    Notification.objects.filter(pk__in=[row.pk for row in rows]).update(emailed_at=timezone.now())


def _email_text(row: Notification) -> str:
    parts = [row.body, f"{settings.PUBLIC_BASE_URL}{row.url}" if row.url else ""]
    parts.append(
        "You receive this because of your notification settings: "
        f"{settings.PUBLIC_BASE_URL}{reverse('web:profile')}"
    )
    return "\n\n".join(part for part in parts if part) + "\n"


# --- selectors -------------------------------------------------------------------------------


def notifications_for(user: User, *, unread_only: bool = False) -> QuerySet[Notification]:
    """The user's own notifications, newest first; nobody ever reads another's."""
    notifications = Notification.objects.filter(recipient_id=user.pk)
    if unread_only:
        notifications = notifications.filter(read_at__isnull=True)
    return notifications.order_by("-created_at", "-pk")


def unread_count(user: User) -> int:
    """What the bell shows: one indexed count."""
    if not user.is_authenticated:
        return 0
    return Notification.objects.filter(recipient_id=user.pk, read_at__isnull=True).count()
