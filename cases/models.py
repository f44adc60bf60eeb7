"""Customers, organizations, cases, tasks, notes and the case timeline."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.db.models import F
from django.db.models.functions import Lower

from cases.choices import (
    OPEN_CASE_STATUSES,
    CaseStatus,
    CaseType,
    Channel,
    IntakeOutcome,
    LinkKind,
    MessageDirection,
    OrganizationTier,
    PhoneKind,
    Priority,
    Sentiment,
    TaskStatus,
    TimelineKind,
)
from crm.changes import ChangeTracked

USER = settings.AUTH_USER_MODEL

# Priorities as numbers, most urgent highest: text does not sort by urgency. The queue sorts
# by this very expression, so that the `case_priority` index serves it.
PRIORITY_RANK = models.Case(
    *(
        models.When(priority=value, then=models.Value(rank))
        for rank, value in enumerate(Priority.values)
    ),
    default=models.Value(0),
    output_field=models.IntegerField(),
)


class WithoutSearchVector(models.Manager):
    """Leaves the tsvector out of ordinary reads: only the database's search uses it, and
    fetching it with every row made a page of cases several times larger."""

    def get_queryset(self) -> models.QuerySet:
        return super().get_queryset().defer("search_vector")


class Organization(models.Model):
    """A customer company. Its email domains match senders to it; its tier selects SLAs."""

    name = models.CharField(max_length=200, unique=True)
    tier = models.CharField(
        max_length=20, choices=OrganizationTier.choices, default=OrganizationTier.STANDARD
    )
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class OrganizationDomain(models.Model):
    """An email domain (`example.com`) owned by one organization, stored lower-case."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="domains")
    domain = models.CharField(max_length=253, unique=True)

    class Meta:
        ordering = ["domain"]

    def __str__(self) -> str:
        return self.domain


class Customer(ChangeTracked):
    """A person who writes to support. Visible to every agent; synced as a contact."""

    name = models.CharField(max_length=200)
    organization = models.ForeignKey(
        Organization, null=True, blank=True, on_delete=models.SET_NULL, related_name="customers"
    )
    is_vip = models.BooleanField("VIP", default=False)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    search_vector = SearchVectorField(
        null=True, editable=False, help_text="Kept current by a PostgreSQL trigger."
    )

    objects = WithoutSearchVector()

    class Meta(ChangeTracked.Meta):
        ordering = ["name", "pk"]
        indexes = [
            *ChangeTracked.Meta.indexes,
            models.Index(fields=["name", "id"], name="customer_name"),  # the customer list
        ]

    def __str__(self) -> str:
        return self.name


class CustomerEmail(models.Model):
    """One of a customer's addresses. Unique case-insensitively: a sender is one customer."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="emails")
    email = models.EmailField()
    is_primary = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("email"), name="cases_customer_email_ci_unique")
        ]
        ordering = ["-is_primary", "email"]

    def __str__(self) -> str:
        return self.email


class CustomerPhone(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="phones")
    number = models.CharField(max_length=40)
    kind = models.CharField(max_length=10, choices=PhoneKind.choices, default=PhoneKind.WORK)

    def __str__(self) -> str:
        return f"{self.number} ({self.kind})"


class Tag(models.Model):
    name = models.SlugField(max_length=50, unique=True, allow_unicode=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Case(models.Model):
    """A customer's matter, owned by a team, worked by an assignee, told by its timeline."""

    number = models.CharField(max_length=20, unique=True, editable=False)
    title = models.CharField(max_length=300)
    description = models.TextField(blank=True)
    type = models.CharField(max_length=20, choices=CaseType.choices, default=CaseType.QUESTION)
    status = models.CharField(max_length=20, choices=CaseStatus.choices, default=CaseStatus.NEW)
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.NORMAL)
    sentiment = models.CharField(
        max_length=10, choices=Sentiment.choices, default=Sentiment.UNKNOWN
    )
    channel = models.CharField(max_length=20, choices=Channel.choices, default=Channel.EMAIL)
    team = models.ForeignKey("crm.Team", on_delete=models.PROTECT, related_name="cases")
    assignee = models.ForeignKey(
        USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="assigned_cases"
    )
    customer = models.ForeignKey(
        Customer, null=True, blank=True, on_delete=models.SET_NULL, related_name="cases"
    )
    organization = models.ForeignKey(
        Organization, null=True, blank=True, on_delete=models.SET_NULL, related_name="cases"
    )
    tags = models.ManyToManyField(Tag, blank=True, related_name="cases")
    watchers = models.ManyToManyField(USER, blank=True, related_name="watched_cases")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="merged_cases"
    )
    first_response_at = models.DateTimeField(null=True, blank=True)
    waiting_since = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The oldest customer message not yet answered (the next-response clock).",
    )
    last_inbound_at = models.DateTimeField(null=True, blank=True)
    last_outbound_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_by = models.ForeignKey(
        USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    search_vector = SearchVectorField(
        null=True, editable=False, help_text="Kept current by a PostgreSQL trigger."
    )

    objects = WithoutSearchVector()

    class Meta:
        ordering = ["-updated_at", "-pk"]
        indexes = [
            # A team's queue in update order, whatever statuses are filtered on top.
            models.Index(fields=["team", "-updated_at"], name="case_team_updated"),
            models.Index(fields=["team", "status", "-updated_at"], name="case_team_status_upd"),
            models.Index(fields=["assignee", "status", "-updated_at"], name="case_assignee_status"),
            models.Index(fields=["-updated_at", "-id"], name="case_updated"),
            # The queue's "by priority" order, read in index order like the one above.
            models.Index(
                PRIORITY_RANK.desc(), F("updated_at").desc(), F("id").desc(), name="case_priority"
            ),
            # Analytics: periods select on these, and open cases are counted from a small
            # partial index instead of the whole table.
            models.Index(fields=["resolved_at"], name="case_resolved_at"),
            models.Index(fields=["first_response_at"], name="case_first_response_at"),
            models.Index(
                fields=["team", "status", "priority", "assignee"],
                condition=models.Q(status__in=OPEN_CASE_STATUSES, merged_into__isnull=True),
                name="case_open_team",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.number} {self.title}"

    @property
    def is_open(self) -> bool:
        return self.status not in (CaseStatus.RESOLVED, CaseStatus.CLOSED)


class CaseLink(models.Model):
    """A relation between two cases, stored once (from the case that made it)."""

    from_case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="links_out")
    to_case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="links_in")
    kind = models.CharField(max_length=20, choices=LinkKind.choices, default=LinkKind.RELATED)
    created_by = models.ForeignKey(
        USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["from_case", "to_case"], name="cases_link_unique"),
            models.CheckConstraint(
                condition=~models.Q(from_case=models.F("to_case")), name="cases_link_not_self"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.from_case_id} {self.kind} {self.to_case_id}"


class CaseNote(models.Model):
    """An internal note on a case; @mentions notify the agents named."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(USER, null=True, on_delete=models.SET_NULL, related_name="+")
    body = models.TextField()
    mentions = models.ManyToManyField(USER, blank=True, related_name="mentioned_in_notes")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"Note on {self.case_id} by {self.author_id}"


class Task(ChangeTracked):
    """A piece of work, on a case or on its own; synced to its assignee's task list."""

    case = models.ForeignKey(
        Case, null=True, blank=True, on_delete=models.CASCADE, related_name="tasks"
    )
    subject = models.CharField(max_length=300)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=20, choices=TaskStatus.choices, default=TaskStatus.NEW)
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.NORMAL)
    category = models.CharField(max_length=100, blank=True)
    assignee = models.ForeignKey(
        USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="assigned_tasks"
    )
    due_at = models.DateTimeField(null=True, blank=True)
    remind_at = models.DateTimeField(null=True, blank=True)
    summary = models.TextField(blank=True)
    action_required = models.TextField(blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    search_vector = SearchVectorField(
        null=True, editable=False, help_text="Kept current by a PostgreSQL trigger."
    )

    objects = WithoutSearchVector()

    class Meta(ChangeTracked.Meta):
        ordering = ["due_at", "pk"]
        indexes = [
            *ChangeTracked.Meta.indexes,
            models.Index(fields=["assignee", "status", "due_at"], name="task_assignee_status_due"),
            models.Index(fields=["due_at", "id"], name="task_due"),  # the task list
        ]

    def __str__(self) -> str:
        return self.subject


class ChecklistItem(models.Model):
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="checklist")
    text = models.CharField(max_length=300)
    done = models.BooleanField(default=False)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "pk"]

    def __str__(self) -> str:
        return f"[{'x' if self.done else ' '}] {self.text}"


class TimelineEvent(models.Model):
    """Append-only history of a case, written explicitly by the services (DESIGN.md habit 5).

    `data` holds what the event needs to be shown: field, old and new values, ids.
    """

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="timeline")
    kind = models.CharField(max_length=30, choices=TimelineKind.choices)
    actor = models.ForeignKey(
        USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    summary = models.CharField(max_length=500)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["case", "created_at"], name="timeline_case_time")]

    def __str__(self) -> str:
        return self.summary


class CaseMessage(models.Model):
    """A mail message's place in the CRM: the case it belongs to (if any) and what intake
    decided. One row per message, which is what makes intake idempotent."""

    message = models.OneToOneField(
        "mailsync.Message", on_delete=models.CASCADE, related_name="case_link"
    )
    case = models.ForeignKey(
        Case, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    direction = models.CharField(max_length=10, choices=MessageDirection.choices)
    outcome = models.CharField(max_length=20, choices=IntakeOutcome.choices)
    sender = models.CharField(max_length=320, blank=True, help_text="Lowercased address.")
    reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["case", "created_at"], name="casemessage_case_time"),
            models.Index(
                fields=["sender", "outcome", "created_at"], name="casemessage_sender_rate"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_outcome_display()}: message {self.message_id}"


class CaseMessageId(models.Model):
    """Message-IDs that belong to a case (every message of it, and what we send), so that
    `In-Reply-To` and `References` thread a reply in one indexed lookup."""

    message_id = models.CharField(max_length=998)
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="message_ids")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["message_id", "case"], name="casemessageid_unique")
        ]
        indexes = [models.Index(fields=["message_id"], name="casemessageid_lookup")]

    def __str__(self) -> str:
        return f"{self.message_id} → {self.case_id}"


class SavedView(models.Model):
    """A queue an agent saved: a name and the query string of the queue page's filters.

    The built-in views (mine, unassigned, my teams, awaiting customer, all) live in code
    (`cases.web.queues.BUILT_IN_VIEWS`); these are each agent's own.
    """

    owner = models.ForeignKey(USER, on_delete=models.CASCADE, related_name="saved_views")
    name = models.CharField(max_length=80)
    query = models.CharField(max_length=2000, blank=True, help_text="The queue's query string.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="savedview_owner_name_unique")
        ]

    def __str__(self) -> str:
        return self.name
