"""Choices of the kernel (DESIGN.md habit 6)."""

from django.db import models


class Role(models.TextChoices):
    AGENT = "agent", "Agent"
    LEAD = "lead", "Lead"
    ADMIN = "admin", "Admin"


class Availability(models.TextChoices):
    AVAILABLE = "available", "Available"
    AWAY = "away", "Away"
    OFFLINE = "offline", "Offline"


class ContainerKind(models.TextChoices):
    """What a change-number container holds; each kind has its own sync consumers."""

    CUSTOMER_BOOK = "customer_book", "Customer book"
    TASK_LIST = "task_list", "Task list"
    MAILBOX = "mailbox", "Mailbox"
    CALENDAR = "calendar", "Calendar"


class SubscriptionState(models.TextChoices):
    """Where a Graph change-notification subscription stands (crm.graph.subscriptions)."""

    PENDING = "pending", "Pending (not created in Graph yet)"
    ACTIVE = "active", "Active"
    FAILING = "failing", "Failing (polled meanwhile)"
    INACTIVE = "inactive", "Inactive (expired or removed; recreated by the hourly job)"
