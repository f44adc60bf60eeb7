"""Kernel models: the user, teams, API tokens, the beat heartbeat and notifications.

The access model (agent profile, memberships) grows here in the CRM core issue; it lives in the
kernel because every app scopes its data by it.
"""

from __future__ import annotations

import zoneinfo

from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Lower

from crm.choices import Availability, ContainerKind, Role, SubscriptionState


def normalize_email(email: str) -> str:
    """Addresses compare case-insensitively everywhere (allauth lowercases them too)."""
    return email.strip().lower()


class UserManager(BaseUserManager["User"]):
    """Users are identified by email address; there is no username."""

    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra: object) -> User:
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=normalize_email(email), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def get_by_natural_key(self, username: str | None) -> User:
        """Sign-in matches the address however the agent capitalises it."""
        return self.get(email__iexact=username)

    def create_user(self, email: str, password: str | None = None, **extra: object) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: object) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self._create_user(email, password, **extra)


class User(AbstractUser):
    """A person who signs in: agent, lead or admin. Identified by a case-insensitive email."""

    username = None
    email = models.EmailField("email address", unique=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()

    class Meta:
        constraints = [models.UniqueConstraint(Lower("email"), name="crm_user_email_ci_unique")]

    def clean(self) -> None:
        super().clean()
        self.email = normalize_email(self.email)

    def __str__(self) -> str:
        return self.get_full_name() or self.email


class Team(models.Model):
    """A queue of work shared by a group of agents; some members lead it."""

    name = models.CharField(max_length=100, unique=True)
    email = models.EmailField(blank=True, help_text="The address customers write to, if any.")
    members = models.ManyToManyField(
        "User", through="TeamMembership", related_name="teams", blank=True
    )
    reopen_window_days = models.PositiveIntegerField(
        default=14,
        help_text="A closed case may be reopened this many days after closing; "
        "later, a customer's message starts a follow-up case.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TeamMembership(models.Model):
    """An agent's place in a team. `last_assigned_at` is the round-robin pointer."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey("User", on_delete=models.CASCADE, related_name="memberships")
    is_lead = models.BooleanField(default=False)
    last_assigned_at = models.DateTimeField(null=True, blank=True)
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="crm_membership_unique")
        ]
        ordering = ["team__name", "user__email"]

    def __str__(self) -> str:
        return f"{self.user} in {self.team}{' (lead)' if self.is_lead else ''}"


def validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"“{value}” is not a known time zone.")


class AgentProfile(models.Model):
    """What the CRM knows about a user as an agent: role, time zone, signature, workload."""

    user = models.OneToOneField("User", on_delete=models.CASCADE, related_name="profile")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.AGENT)
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    signature = models.TextField(blank=True)
    availability = models.CharField(
        max_length=10, choices=Availability.choices, default=Availability.AVAILABLE
    )
    paused = models.BooleanField(
        default=False, help_text="Set by a lead: round-robin skips a paused agent."
    )
    capacity = models.PositiveIntegerField(
        default=20, help_text="Open cases round-robin may give this agent at most."
    )
    # What the agent wants to be emailed about (their profile page); senders check these.
    notify_assigned = models.BooleanField("a case is assigned to me", default=True)
    notify_mentioned = models.BooleanField("someone mentions me in a note", default=True)
    notify_customer_reply = models.BooleanField("a customer replies on my case", default=True)
    notify_sla_risk = models.BooleanField(
        "one of my cases is at risk of missing its SLA", default=True
    )

    def __str__(self) -> str:
        return f"{self.user} ({self.get_role_display()})"

    @property
    def takes_new_work(self) -> bool:
        return self.availability == Availability.AVAILABLE and not self.paused


class ChangeContainer(models.Model):
    """A container of syncable items whose changes are numbered in commit order.

    `last_seq` is only ever advanced under `SELECT ... FOR UPDATE` on this row inside the
    writing transaction (crm.changes), so within one container numbers become visible in order.
    """

    kind = models.CharField(max_length=20, choices=ContainerKind.choices)
    key = models.CharField(
        max_length=64, unique=True, help_text="kind, and the id of what it belongs to if any."
    )
    last_seq = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.key} @ {self.last_seq}"


class Tombstone(models.Model):
    """An item that left a container (deleted, or moved elsewhere), with the number it left at."""

    container = models.ForeignKey(
        ChangeContainer, on_delete=models.CASCADE, related_name="tombstones"
    )
    item_type = models.CharField(max_length=50, help_text="app_label.model of the item.")
    item_id = models.PositiveBigIntegerField()
    change_seq = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["container", "change_seq"], name="crm_tombstone_seq_idx")]

    def __str__(self) -> str:
        return f"{self.item_type}#{self.item_id} left {self.container_id} @ {self.change_seq}"


class ApiToken(models.Model):
    """A named, revocable API key for another system. Only a SHA-256 digest is stored."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=8, help_text="First characters, to recognise a key.")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class Heartbeat(models.Model):
    """When a periodic job last ran, so `/readyz` can tell whether beat and worker are alive."""

    name = models.CharField(max_length=50, unique=True)
    last_run_at = models.DateTimeField()
    hostname = models.CharField(max_length=255, blank=True)
    runs = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} @ {self.last_run_at:%Y-%m-%d %H:%M:%S}"


class GraphSubscription(models.Model):
    """A Microsoft Graph change-notification subscription on one resource the CRM syncs.

    Resource-agnostic: `kind` names the app's handler (`crm.graph.subscriptions.register`)
    and `target_id` the row it syncs (a mail folder, a calendar). The `clientState` secret is
    kept only as its SHA-256, enough to verify what Graph sends back.
    """

    kind = models.CharField(max_length=40)
    target_id = models.PositiveBigIntegerField()
    resource = models.CharField(max_length=1000)
    change_type = models.CharField(max_length=100, default="created,updated,deleted")
    limiter_key = models.CharField(
        max_length=320, blank=True, help_text="The mailbox whose Graph request slots it uses."
    )
    graph_id = models.CharField(max_length=100, null=True, blank=True, unique=True)
    client_state_hash = models.CharField(max_length=64, blank=True)
    state = models.CharField(
        max_length=10, choices=SubscriptionState.choices, default=SubscriptionState.PENDING
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    last_notification_at = models.DateTimeField(null=True, blank=True)
    last_renewed_at = models.DateTimeField(null=True, blank=True)
    failures = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "target_id"], name="graphsub_one_per_target")
        ]
        indexes = [models.Index(fields=["state", "expires_at"], name="graphsub_state_expiry")]

    def __str__(self) -> str:
        return f"{self.kind} {self.target_id}: {self.resource}"


def default_client_id() -> str:
    """The app registration the CRM signs in with; a callable so migrations do not freeze it."""
    from django.conf import settings

    return settings.MS_CLIENT_ID


class GraphAppSecret(models.Model):
    """When a client secret of the Microsoft Entra app registration expires.

    Entra ID secrets expire (two years at most in the portal) and nothing tells the CRM; when
    one does, mail sync, calendars and sign-in with Microsoft stop at once. An admin records
    the expiry here (never the secret: that stays in MS_CLIENT_SECRET) and
    `crm.alerts.app_secrets_warn_due` emails admins before it runs out. `warned_days` and
    `expired_warned_at` remember what was sent so each warning goes out once; a new expiry
    (the next rotation) forgets them (`crm.alerts.app_secret_save`).
    """

    client_id = models.CharField(
        "application (client) ID",
        max_length=100,
        blank=True,
        default=default_client_id,
        help_text="Entra ID > App registrations > the app > Overview. Defaults to MS_CLIENT_ID.",
    )
    label = models.CharField(
        max_length=200,
        help_text="Which secret, e.g. “CRM production secret” (its Description in Entra ID).",
    )
    expires_at = models.DateTimeField(
        help_text="The Expires date in Entra ID > App registrations > Certificates & secrets."
    )
    note = models.TextField(
        blank=True, help_text="Optional: where the secret is stored (vault, server, .env)."
    )
    warned_days = models.JSONField(
        default=list,
        blank=True,
        editable=False,
        help_text="Warning thresholds (days before expiry) already emailed for this expiry.",
    )
    expired_warned_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_warned_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "Microsoft 365 app secret"
        ordering = ["expires_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["client_id", "label"],
                name="crm_appsecret_unique_label",
                violation_error_message="This app registration has a secret with this label.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.label} ({self.client_id})"

    def clean(self) -> None:
        """Blank is allowed on the field only so that this message, naming the setting, shows."""
        super().clean()
        self.client_id = self.client_id.strip()
        if not self.client_id:
            raise ValidationError(
                {
                    "client_id": "Enter the application (client) ID of the app registration: "
                    "MS_CLIENT_ID is not set, so there is no default."
                }
            )
        if any(char.isspace() for char in self.client_id):
            raise ValidationError({"client_id": "An application (client) ID has no spaces."})


class NotificationKind(models.TextChoices):
    """What a notification is about; `crm.notifications.EMAIL_PREFERENCE` maps each kind to
    the profile switch that decides whether it is also emailed."""

    ASSIGNED = "assigned", "Assigned to me"
    MENTIONED = "mentioned", "Mentioned in a note"
    CUSTOMER_REPLY = "customer_reply", "Customer replied"
    SLA_AT_RISK = "sla_at_risk", "SLA at risk"
    SLA_BREACHED = "sla_breached", "SLA breached"
    WORKFLOW = "workflow", "Workflow rule"


class Notification(models.Model):
    """Something an agent should know about, shown under the bell until they read it.

    Written by `crm.notifications.notify` (one row per recipient); `emailed_at` records that
    the same news also went out by email, which the agent's profile preferences decide.
    """

    recipient = models.ForeignKey(User, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=20, choices=NotificationKind.choices)
    title = models.CharField(max_length=200)
    body = models.CharField(max_length=500, blank=True)
    url = models.CharField(max_length=500, blank=True, help_text="A path in the web UI.")
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["recipient", "read_at", "-created_at"], name="crm_notif_inbox_idx")
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for {self.recipient_id}: {self.title}"
